/*  =========================================================================
    zq_msg_cache - per-thread state of zq_msg: a cache of freed message
    structures, and the generator of message ids.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "zq_msg_internal.h"
#include <pthread.h>
#include <sodium.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

//  ---- Per-thread state ---------------------------------------------------

//  Each thread keeps the state its ids need and a short list of message
//  structures it freed, which its next zq_msg_new, zq_msg_dup or receive
//  reuses instead of calling malloc. A message destroyed by another thread
//  than the one that made it joins the destroying thread's list. A list
//  holds at most S_CACHE_MAX structures (beyond that zq_msg_destroy frees
//  them) and is freed when its thread exits, by the destructor of one
//  process-wide pthread key: that key, made once, is zq_msg's only global
//  state. If no key can be made, structures are simply never cached.
#define S_CACHE_MAX 64

typedef enum {
    S_CACHE_UNSET,   //  the thread has not cached anything yet
    S_CACHE_ON,      //  the key's destructor will free the list
    S_CACHE_DISABLED //  no key, or the thread is exiting: free at once
} s_cache_state_t;

//  Ids of one thread sort strictly by creation (time, then sequence). The
//  random half is drawn afresh for every id, from a pool the thread fills
//  S_POOL_SIZE octets at a time with ChaCha20 (libsodium) under a 256-bit
//  key the thread takes from the kernel once: a system call per id, or
//  even per pool, costs several times the rest of zq_msg_new. A forked
//  child takes a key of its own (the check runs when the clock's
//  millisecond moves, not per message).
#define S_POOL_SIZE 256

typedef struct {
    bool seeded;
    pid_t pid;
    uint16_t sequence;
    uint16_t pool_used; //  octets of pool given out already
    uint64_t last_ms;
    uint64_t pool_block; //  ChaCha20 nonce of the next fill
    uint8_t key[crypto_stream_chacha20_KEYBYTES];
    uint8_t pool[S_POOL_SIZE];
    s_cache_state_t cache_state;
    uint32_t cached_count;
    zq_msg_t *cached; //  linked through next_cached
} s_thread_t;

//  The initial-exec model makes each access one instruction instead of a
//  call to __tls_get_addr; it takes sizeof (s_thread_t) bytes of the static
//  TLS reserve, which is there for libraries loaded with dlopen too.
static _Thread_local s_thread_t s_thread __attribute__ ((tls_model ("initial-exec")));

static pthread_once_t s_key_once = PTHREAD_ONCE_INIT;
static pthread_key_t s_key;
static bool s_key_made;

//  Runs at the exit of a thread that cached messages.
static void
s_thread_exit (void *arg)
{
    s_thread_t *thread = (s_thread_t *)arg;
    thread->cache_state = S_CACHE_DISABLED;
    while (thread->cached) {
        zq_msg_t *self = thread->cached;
        thread->cached = self->next_cached;
        free (self);
    }
    thread->cached_count = 0;
}

static void
s_key_make (void)
{
    s_key_made = pthread_key_create (&s_key, s_thread_exit) == 0;
}

//  If the library is unloaded, threads that live on must not call into it
//  when they exit; what they cached stays allocated.
__attribute__ ((destructor)) static void
s_key_unmake (void)
{
    if (s_key_made) {
        pthread_key_delete (s_key);
        s_key_made = false;
    }
}

//  Returns a message structure from the thread's list or from malloc, or
//  NULL (ENOMEM). Its fields are not initialised.
zq_msg_t *
zqi_msg_struct_new (void)
{
    s_thread_t *thread = &s_thread;
    zq_msg_t *self = thread->cached;
    if (self) {
        thread->cached = self->next_cached;
        thread->cached_count--;
        return self;
    }
    self = (zq_msg_t *)malloc (sizeof (zq_msg_t));
    if (!self)
        errno = ENOMEM;
    return self;
}

//  Gives a structure whose contents are released back to the thread's
//  list, or to free.
void
zqi_msg_struct_free (zq_msg_t *self)
{
    s_thread_t *thread = &s_thread;
    if (thread->cache_state == S_CACHE_UNSET) {
        pthread_once (&s_key_once, s_key_make);
        thread->cache_state =
            s_key_made && pthread_setspecific (s_key, thread) == 0 ? S_CACHE_ON : S_CACHE_DISABLED;
    }
    if (thread->cache_state == S_CACHE_ON && thread->cached_count < S_CACHE_MAX) {
        self->next_cached = thread->cached;
        thread->cached = self;
        thread->cached_count++;
    } else
        free (self);
}

//  ---- Ids ----------------------------------------------------------------

int64_t
zqi_msg_now_ms (void)
{
    struct timespec now;
    clock_gettime (CLOCK_REALTIME, &now);
    int64_t ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
    return ms < 0 ? 0 : ms;
}

static uint64_t
s_mix64 (uint64_t value)
{
    value += 0x9E3779B97F4A7C15ull;
    value = (value ^ (value >> 30)) * 0xBF58476D1CE4E5B9ull;
    value = (value ^ (value >> 27)) * 0x94D049BB133111EBull;
    return value ^ (value >> 31);
}

//  Takes a fresh key for the thread's pool from the kernel.
static void
s_key_new (s_thread_t *state)
{
    state->pool_block = 0;
    state->pool_used = S_POOL_SIZE;
    if (getrandom (state->key, sizeof state->key, GRND_NONBLOCK) == (ssize_t)sizeof state->key)
        return;
    //  No entropy yet (early boot) or no getrandom: mix what differs
    //  between threads, processes and calls (unique, but not secret).
    struct timespec now;
    clock_gettime (CLOCK_MONOTONIC, &now);
    uint64_t value;
    memcpy (&value, state->key, sizeof value);
    value = s_mix64 (value ^ (uint64_t)now.tv_nsec ^ ((uint64_t)now.tv_sec << 32));
    value = s_mix64 (value ^ (uint64_t)getpid ());
    value = s_mix64 (value ^ (uint64_t)(uintptr_t)state);
    for (size_t offset = 0; offset < sizeof state->key; offset += sizeof value) {
        value = s_mix64 (value);
        memcpy (state->key + offset, &value, sizeof value);
    }
}

//  Fills the thread's pool with the next block of its key stream.
static void
s_pool_fill (s_thread_t *state)
{
    uint8_t nonce[crypto_stream_chacha20_NONCEBYTES];
    uint64_t block = state->pool_block++;
    for (size_t index = 0; index < sizeof nonce; index++) {
        nonce[index] = (uint8_t)block;
        block >>= 8;
    }
    crypto_stream_chacha20 (state->pool, sizeof state->pool, nonce, state->key);
    state->pool_used = 0;
}

static void
s_id_seed (s_thread_t *state)
{
    //  Picks libsodium's fastest ChaCha20 for this processor (safe from
    //  several threads, and again); if it fails, the portable one stays.
    int picked = sodium_init ();
    (void)picked;
    s_key_new (state);
    state->pid = getpid ();
    state->seeded = true;
}

void
zqi_msg_id_new (uint8_t *id, uint64_t now_ms)
{
    s_thread_t *state = &s_thread;
    if (!state->seeded) {
        s_id_seed (state);
        state->last_ms = now_ms;
        state->sequence = 0;
    } else if (now_ms > state->last_ms) {
        if (getpid () != state->pid)
            s_id_seed (state);
        state->last_ms = now_ms;
        state->sequence = 0;
    } else if (state->sequence == UINT16_MAX) {
        //  Same millisecond (or the clock stepped back): keep order by
        //  moving the id's time forward.
        state->last_ms++;
        state->sequence = 0;
    } else
        state->sequence++;
    uint64_t ms = state->last_ms;
    for (int index = 5; index >= 0; index--) {
        id[index] = (uint8_t)ms;
        ms >>= 8;
    }
    id[6] = (uint8_t)(state->sequence >> 8);
    id[7] = (uint8_t)state->sequence;
    if (state->pool_used > sizeof state->pool - 8)
        s_pool_fill (state);
    memcpy (id + 8, state->pool + state->pool_used, 8);
    state->pool_used += 8;
}
