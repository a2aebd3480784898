/*  =========================================================================
    zq_msg - one message: envelope (id, subject, time, attempt, headers)
    and a msgpack body, with its wire codec (doc/PROTOCOL.md, version 1).

    One allocation holds a message with a short subject and a small body,
    and each thread keeps a few freed message structures for reuse (see
    "Per-thread state"). A received message keeps the libzmq frame that
    carries its body and points into it, so the body is never copied on
    receive; a large body leaves on its own frame, handed to libzmq without
    a copy.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "zq_internal.h"
#include <pthread.h>
#include <sodium.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

//  Subjects shorter than this, and bodies up to this size, live inside the
//  message structure itself.
#define S_SUBJECT_INLINE_SIZE 48
#define S_BODY_INLINE_SIZE    160

//  Extension elements beyond the six this version defines may appear in a
//  header up to this count (doc/PROTOCOL.md).
#define S_HEADER_ELEMENTS_MIN 6
#define S_HEADER_ELEMENTS_MAX 16

typedef struct {
    char *name; //  one allocation: name, NUL, value, NUL
    char *value;
    uint32_t name_size;
    uint32_t value_size;
} s_header_t;

typedef enum {
    S_BODY_INLINE, //  in body_inline
    S_BODY_HEAP,   //  in body_heap, from malloc
    S_BODY_FRAME   //  inside frame, at body_offset
} s_body_store_t;

struct _zq_msg_t {
    uint8_t id[ZQ_MSG_ID_SIZE];
    int64_t created_ms;
    uint32_t attempt;
    uint32_t subject_size;
    char *subject; //  subject_inline or from malloc; NUL-terminated
    s_header_t *headers;
    uint32_t header_count;
    uint32_t header_capacity;
    s_body_store_t body_store;
    const uint8_t *body;
    size_t body_size;
    void *body_heap;
    size_t body_offset;
    zmq_msg_t frame;       //  initialised only while body_store is S_BODY_FRAME
    zq_msg_t *next_cached; //  while in a thread's cache: the next one there
    char subject_inline[S_SUBJECT_INLINE_SIZE];
    uint8_t body_inline[S_BODY_INLINE_SIZE];
};

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
static inline zq_msg_t *
s_struct_new (void)
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
static inline void
s_struct_free (zq_msg_t *self)
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

static int64_t
s_now_ms (void)
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

static void
s_id_new (uint8_t *id, uint64_t now_ms)
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

//  ---- Construction -------------------------------------------------------

//  Sets the fields of a new message: no subject, time, attempt or
//  headers, a nil body.
static inline void
s_init (zq_msg_t *self)
{
    self->created_ms = 0;
    self->attempt = 0;
    self->subject_size = 0;
    self->subject = self->subject_inline;
    self->subject_inline[0] = 0;
    self->headers = NULL;
    self->header_count = 0;
    self->header_capacity = 0;
    self->body_store = S_BODY_INLINE;
    self->body_inline[0] = 0xc0; //  nil
    self->body = self->body_inline;
    self->body_size = 1;
    self->body_heap = NULL;
    self->body_offset = 0;
}

static zq_msg_t *
s_alloc (void)
{
    zq_msg_t *self = s_struct_new ();
    if (self)
        s_init (self);
    return self;
}

//  Stores a copy of size bytes as the subject. Returns 0 or -1 (ENOMEM).
static int
s_store_subject (zq_msg_t *self, const char *subject, size_t size)
{
    if (size < S_SUBJECT_INLINE_SIZE) {
        //  memmove: subject may be the current inline subject itself
        memmove (self->subject_inline, subject, size);
        self->subject_inline[size] = 0;
        if (self->subject != self->subject_inline)
            free (self->subject);
        self->subject = self->subject_inline;
    } else {
        char *copy = (char *)malloc (size + 1);
        if (!copy)
            return zqi_fail (ENOMEM);
        memcpy (copy, subject, size);
        copy[size] = 0;
        if (self->subject != self->subject_inline)
            free (self->subject);
        self->subject = copy;
    }
    self->subject_size = (uint32_t)size;
    return 0;
}

//  Releases whatever holds the body, leaving the fields to be overwritten.
static void
s_release_body (zq_msg_t *self)
{
    if (self->body_store == S_BODY_HEAP)
        free (self->body_heap);
    else if (self->body_store == S_BODY_FRAME)
        zmq_msg_close (&self->frame);
    self->body_heap = NULL;
    self->body_store = S_BODY_INLINE;
}

//  Replaces the body with a copy of size bytes (already checked).
//  Returns 0 or -1 (ENOMEM, body unchanged).
static int
s_store_body (zq_msg_t *self, const void *data, size_t size)
{
    if (size <= S_BODY_INLINE_SIZE) {
        if (self->body_store == S_BODY_INLINE)
            memmove (self->body_inline, data, size);
        else {
            memcpy (self->body_inline, data, size);
            s_release_body (self);
        }
        self->body_store = S_BODY_INLINE;
        self->body = self->body_inline;
    } else {
        void *copy = malloc (size);
        if (!copy)
            return zqi_fail (ENOMEM);
        memcpy (copy, data, size);
        s_release_body (self);
        self->body_store = S_BODY_HEAP;
        self->body_heap = copy;
        self->body = (const uint8_t *)copy;
    }
    self->body_size = size;
    return 0;
}

zq_msg_t *
zq_msg_new (const char *subject)
{
    if (!subject)
        subject = "";
    size_t size = strlen (subject);
    if (size > ZQ_MSG_MAX_STRING) {
        errno = ZQ_ETOOBIG;
        return NULL;
    }
    zq_msg_t *self = s_alloc ();
    if (!self)
        return NULL;
    if (s_store_subject (self, subject, size)) {
        s_struct_free (self);
        return NULL;
    }
    uint64_t now_ms = (uint64_t)s_now_ms ();
    self->created_ms = (int64_t)now_ms;
    s_id_new (self->id, now_ms);
    return self;
}

void
zq_msg_destroy (zq_msg_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    zq_msg_t *self = *self_p;
    for (uint32_t index = 0; index < self->header_count; index++)
        free (self->headers[index].name);
    free (self->headers);
    if (self->subject != self->subject_inline)
        free (self->subject);
    s_release_body (self);
    s_struct_free (self);
    *self_p = NULL;
}

//  Appends a header (no checks but capacity). Returns 0 or -1 (ENOMEM).
static int
s_append_header (zq_msg_t *self, const char *name, size_t name_size, const char *value,
                 size_t value_size)
{
    if (self->header_count == self->header_capacity) {
        uint32_t capacity = self->header_capacity ? self->header_capacity * 2 : 4;
        s_header_t *headers = (s_header_t *)realloc (self->headers, capacity * sizeof (s_header_t));
        if (!headers)
            return zqi_fail (ENOMEM);
        self->headers = headers;
        self->header_capacity = capacity;
    }
    char *block = (char *)malloc (name_size + value_size + 2);
    if (!block)
        return zqi_fail (ENOMEM);
    memcpy (block, name, name_size);
    block[name_size] = 0;
    memcpy (block + name_size + 1, value, value_size);
    block[name_size + 1 + value_size] = 0;
    s_header_t *header = &self->headers[self->header_count++];
    header->name = block;
    header->value = block + name_size + 1;
    header->name_size = (uint32_t)name_size;
    header->value_size = (uint32_t)value_size;
    return 0;
}

zq_msg_t *
zq_msg_dup (const zq_msg_t *self)
{
    ZQ_ASSERT (self);
    zq_msg_t *copy = s_alloc ();
    if (!copy)
        return NULL;
    memcpy (copy->id, self->id, ZQ_MSG_ID_SIZE);
    copy->created_ms = self->created_ms;
    copy->attempt = self->attempt;
    if (s_store_subject (copy, self->subject, self->subject_size) ||
        s_store_body (copy, self->body, self->body_size))
        goto failed;
    for (uint32_t index = 0; index < self->header_count; index++) {
        const s_header_t *header = &self->headers[index];
        if (s_append_header (copy, header->name, header->name_size, header->value,
                             header->value_size))
            goto failed;
    }
    return copy;
failed:
    zq_msg_destroy (&copy);
    errno = ENOMEM;
    return NULL;
}

//  ---- Fields -------------------------------------------------------------

const uint8_t *
zq_msg_id (const zq_msg_t *self)
{
    ZQ_ASSERT (self);
    return self->id;
}

char *
zq_msg_id_hex (const zq_msg_t *self, char *hex)
{
    ZQ_ASSERT (self && hex);
    static const char digits[] = "0123456789abcdef";
    for (int index = 0; index < ZQ_MSG_ID_SIZE; index++) {
        hex[2 * index] = digits[self->id[index] >> 4];
        hex[2 * index + 1] = digits[self->id[index] & 0x0f];
    }
    hex[ZQ_MSG_ID_HEX_SIZE] = 0;
    return hex;
}

void
zq_msg_set_id (zq_msg_t *self, const uint8_t id[ZQ_MSG_ID_SIZE])
{
    ZQ_ASSERT (self && id);
    memmove (self->id, id, ZQ_MSG_ID_SIZE);
}

const char *
zq_msg_subject (const zq_msg_t *self)
{
    ZQ_ASSERT (self);
    return self->subject;
}

int
zq_msg_set_subject (zq_msg_t *self, const char *subject)
{
    ZQ_ASSERT (self);
    if (!subject)
        subject = "";
    size_t size = strlen (subject);
    if (size > ZQ_MSG_MAX_STRING)
        return zqi_fail (ZQ_ETOOBIG);
    return s_store_subject (self, subject, size);
}

int64_t
zq_msg_created_ms (const zq_msg_t *self)
{
    ZQ_ASSERT (self);
    return self->created_ms;
}

uint32_t
zq_msg_attempt (const zq_msg_t *self)
{
    ZQ_ASSERT (self);
    return self->attempt;
}

void
zq_msg_set_attempt (zq_msg_t *self, uint32_t attempt)
{
    ZQ_ASSERT (self);
    self->attempt = attempt;
}

static s_header_t *
s_find_header (const zq_msg_t *self, const char *name, size_t name_size)
{
    for (uint32_t index = 0; index < self->header_count; index++) {
        s_header_t *header = &self->headers[index];
        if (header->name_size == name_size && memcmp (header->name, name, name_size) == 0)
            return header;
    }
    return NULL;
}

int
zq_msg_set_header (zq_msg_t *self, const char *name, const char *value)
{
    ZQ_ASSERT (self);
    if (!name || !*name || !value)
        return zqi_fail (EINVAL);
    size_t name_size = strlen (name);
    size_t value_size = strlen (value);
    if (name_size > ZQ_MSG_MAX_STRING || value_size > ZQ_MSG_MAX_STRING)
        return zqi_fail (ZQ_ETOOBIG);
    s_header_t *header = s_find_header (self, name, name_size);
    if (!header) {
        if (self->header_count >= ZQ_MSG_MAX_HEADERS)
            return zqi_fail (ZQ_ETOOBIG);
        return s_append_header (self, name, name_size, value, value_size);
    }
    char *block = (char *)malloc (name_size + value_size + 2);
    if (!block)
        return zqi_fail (ENOMEM);
    memcpy (block, name, name_size + 1);
    memcpy (block + name_size + 1, value, value_size + 1);
    free (header->name);
    header->name = block;
    header->value = block + name_size + 1;
    header->value_size = (uint32_t)value_size;
    return 0;
}

const char *
zq_msg_header (const zq_msg_t *self, const char *name)
{
    ZQ_ASSERT (self);
    if (!name)
        return NULL;
    s_header_t *header = s_find_header (self, name, strlen (name));
    return header ? header->value : NULL;
}

size_t
zq_msg_header_count (const zq_msg_t *self)
{
    ZQ_ASSERT (self);
    return self->header_count;
}

const char *
zq_msg_header_at (const zq_msg_t *self, size_t index, const char **value_p)
{
    ZQ_ASSERT (self);
    if (index >= self->header_count)
        return NULL;
    if (value_p)
        *value_p = self->headers[index].value;
    return self->headers[index].name;
}

const void *
zq_msg_body (const zq_msg_t *self, size_t *size_p)
{
    ZQ_ASSERT (self);
    if (size_p)
        *size_p = self->body_size;
    return self->body;
}

int
zq_msg_set_body (zq_msg_t *self, const void *data, size_t size)
{
    ZQ_ASSERT (self);
    if (!data)
        return zqi_fail (ZQ_EPROTO);
    if (zqi_msgpack_check (data, size, NULL, ZQ_MSG_MAX_DEPTH))
        return -1;
    return s_store_body (self, data, size);
}

void
zqi_msg_take_body (zq_msg_t *self, void *data, size_t size)
{
    ZQ_ASSERT (self && data && size > 0);
    s_release_body (self);
    self->body_store = S_BODY_HEAP;
    self->body_heap = data;
    self->body = (const uint8_t *)data;
    self->body_size = size;
}

//  ---- Encoding -----------------------------------------------------------
//  The header is written by hand with the shortest encoding of each value.

static inline size_t
s_uint_size (uint64_t value)
{
    return value <= 0x7f         ? 1
           : value <= 0xff       ? 2
           : value <= 0xffff     ? 3
           : value <= 0xffffffff ? 5
                                 : 9;
}

static inline size_t
s_str_size (size_t size)
{
    return size + (size <= 31 ? 1 : size <= 0xff ? 2 : size <= 0xffff ? 3 : 5);
}

//  Stores value big-endian in width bytes (1, 2, 4 or 8).
static inline uint8_t *
s_put_be (uint8_t *out, uint64_t value, int width)
{
    if (width == 1)
        *out = (uint8_t)value;
    else if (width == 2) {
        out[0] = (uint8_t)(value >> 8);
        out[1] = (uint8_t)value;
    } else if (width == 4) {
        uint32_t word = (uint32_t)value;
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        word = __builtin_bswap32 (word);
#endif
        memcpy (out, &word, sizeof word);
    } else {
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        value = __builtin_bswap64 (value);
#endif
        memcpy (out, &value, sizeof value);
    }
    return out + width;
}

static inline uint8_t *
s_put_uint (uint8_t *out, uint64_t value)
{
    if (value <= 0x7f) {
        *out++ = (uint8_t)value;
        return out;
    }
    if (value <= 0xff) {
        *out++ = 0xcc;
        return s_put_be (out, value, 1);
    }
    if (value <= 0xffff) {
        *out++ = 0xcd;
        return s_put_be (out, value, 2);
    }
    if (value <= 0xffffffff) {
        *out++ = 0xce;
        return s_put_be (out, value, 4);
    }
    *out++ = 0xcf;
    return s_put_be (out, value, 8);
}

static inline uint8_t *
s_put_str (uint8_t *out, const char *str, size_t size)
{
    if (size <= 31)
        *out++ = (uint8_t)(0xa0 | size);
    else if (size <= 0xff) {
        *out++ = 0xd9;
        out = s_put_be (out, size, 1);
    } else if (size <= 0xffff) {
        *out++ = 0xda;
        out = s_put_be (out, size, 2);
    } else {
        *out++ = 0xdb;
        out = s_put_be (out, size, 4);
    }
    memcpy (out, str, size);
    return out + size;
}

static size_t
s_header_size (const zq_msg_t *self)
{
    size_t size = 1 + 1 + 2 + ZQ_MSG_ID_SIZE + s_str_size (self->subject_size) +
                  s_uint_size ((uint64_t)self->created_ms) + s_uint_size (self->attempt) +
                  (self->header_count <= 15 ? 1 : 3);
    for (uint32_t index = 0; index < self->header_count; index++)
        size += s_str_size (self->headers[index].name_size) +
                s_str_size (self->headers[index].value_size);
    return size;
}

//  Writes the header into out, which holds s_header_size bytes; returns
//  the position after it.
static uint8_t *
s_write_header (const zq_msg_t *self, uint8_t *out)
{
    static const uint8_t start[4] = {0x90 | S_HEADER_ELEMENTS_MIN, ZQ_PROTOCOL_VERSION, 0xc4,
                                     ZQ_MSG_ID_SIZE};
    memcpy (out, start, sizeof start);
    memcpy (out + sizeof start, self->id, ZQ_MSG_ID_SIZE);
    out += sizeof start + ZQ_MSG_ID_SIZE;
    out = s_put_str (out, self->subject, self->subject_size);
    out = s_put_uint (out, (uint64_t)self->created_ms);
    out = s_put_uint (out, self->attempt);
    if (self->header_count <= 15)
        *out++ = (uint8_t)(0x80 | self->header_count);
    else {
        *out++ = 0xde;
        out = s_put_be (out, self->header_count, 2);
    }
    for (uint32_t index = 0; index < self->header_count; index++) {
        const s_header_t *header = &self->headers[index];
        out = s_put_str (out, header->name, header->name_size);
        out = s_put_str (out, header->value, header->value_size);
    }
    return out;
}

size_t
zqi_msg_wire_size (const zq_msg_t *self)
{
    ZQ_ASSERT (self);
    return s_header_size (self) + self->body_size;
}

size_t
zqi_msg_wire_write (const zq_msg_t *self, uint8_t *out)
{
    ZQ_ASSERT (self && out);
    uint8_t *body = s_write_header (self, out);
    memcpy (body, self->body, self->body_size);
    return (size_t)(body - out) + self->body_size;
}

//  Accepts a libzmq socket, a zsock_t or a zactor_t.
static inline void *
s_resolve (void *socket)
{
    if (socket && zsock_is (socket))
        return zsock_resolve (socket);
    if (socket && zactor_is (socket))
        return zsock_resolve (socket);
    return socket;
}

//  A large body travels as a frame that points at the message's own body
//  buffer. The holder records who frees it; libzmq calls s_body_free when
//  the last reference to the frame goes, in whichever thread that is. A
//  frame built but never sent is closed with cancelled set, so the message
//  keeps its body.
typedef struct {
    bool cancelled;
    bool is_frame;   //  the body lives in frame (a received message)
    zmq_msg_t frame; //  when is_frame
} s_body_holder_t;

static void
s_body_free (void *data, void *hint)
{
    s_body_holder_t *holder = (s_body_holder_t *)hint;
    if (holder->cancelled)
        return;
    if (holder->is_frame)
        zmq_msg_close (&holder->frame);
    else
        free (data);
    free (holder);
}

//  Gives the body back to self after a failed send of its body frame.
static void
s_body_restore (zq_msg_t *self, s_body_holder_t *holder, zmq_msg_t *body_frame)
{
    int saved_errno = errno;
    holder->cancelled = true;
    zmq_msg_close (body_frame); //  runs s_body_free, which does nothing now
    if (holder->is_frame) {
        zmq_msg_init (&self->frame);
        zmq_msg_move (&self->frame, &holder->frame);
        zmq_msg_close (&holder->frame);
        self->body = (const uint8_t *)zmq_msg_data (&self->frame) + self->body_offset;
    }
    free (holder);
    errno = saved_errno;
}

static int
s_send_two_frames (zq_msg_t *self, void *handle, int flags, size_t header_size)
{
    ZQ_ASSERT (self->body_store != S_BODY_INLINE);
    s_body_holder_t *holder = (s_body_holder_t *)malloc (sizeof (s_body_holder_t));
    if (!holder)
        return zqi_fail (ENOMEM);
    zmq_msg_t header_frame, body_frame;
    if (zmq_msg_init_size (&header_frame, header_size)) {
        free (holder);
        return zqi_fail (ENOMEM);
    }
    s_write_header (self, (uint8_t *)zmq_msg_data (&header_frame));

    holder->cancelled = false;
    holder->is_frame = self->body_store == S_BODY_FRAME;
    if (holder->is_frame) {
        zmq_msg_init (&holder->frame);
        zmq_msg_move (&holder->frame, &self->frame);
    }
    void *body = holder->is_frame ? (uint8_t *)zmq_msg_data (&holder->frame) + self->body_offset
                                  : self->body_heap;
    if (zmq_msg_init_data (&body_frame, body, self->body_size, s_body_free, holder)) {
        //  no frame was made, so nothing will call s_body_free
        if (holder->is_frame) {
            zmq_msg_init (&self->frame);
            zmq_msg_move (&self->frame, &holder->frame);
            zmq_msg_close (&holder->frame);
        }
        free (holder);
        zmq_msg_close (&header_frame);
        return zqi_fail (ENOMEM);
    }
    if (zmq_msg_send (&header_frame, handle, flags | ZMQ_SNDMORE) == -1) {
        int saved_errno = errno;
        zmq_msg_close (&header_frame);
        s_body_restore (self, holder, &body_frame);
        return zqi_fail (saved_errno);
    }
    if (zmq_msg_send (&body_frame, handle, flags) == -1) {
        s_body_restore (self, holder, &body_frame);
        return -1;
    }
    //  libzmq owns the body now
    self->body_store = S_BODY_INLINE;
    self->body_heap = NULL;
    return 0;
}

int
zqi_msg_send_to (zq_msg_t **self_p, void *handle, int flags)
{
    ZQ_ASSERT (self_p && *self_p);
    zq_msg_t *self = *self_p;
    size_t header_size = s_header_size (self);
    if (self->body_size >= ZQ_MSG_ZEROCOPY_MIN) {
        if (s_send_two_frames (self, handle, flags, header_size))
            return -1;
    } else {
        zmq_msg_t frame;
        if (zmq_msg_init_size (&frame, header_size + self->body_size))
            return zqi_fail (ENOMEM);
        uint8_t *out = s_write_header (self, (uint8_t *)zmq_msg_data (&frame));
        memcpy (out, self->body, self->body_size);
        if (zmq_msg_send (&frame, handle, flags) == -1) {
            int saved_errno = errno;
            zmq_msg_close (&frame);
            return zqi_fail (saved_errno);
        }
    }
    zq_msg_destroy (self_p);
    return 0;
}

int
zq_msg_send (zq_msg_t **self_p, void *socket, int flags)
{
    ZQ_ASSERT (self_p && *self_p);
    return zqi_msg_send_to (self_p, s_resolve (socket), flags);
}

int
zq_msg_encode (zq_msg_t **self_p, zmsg_t *dest)
{
    ZQ_ASSERT (self_p && *self_p && dest);
    zq_msg_t *self = *self_p;
    size_t header_size = s_header_size (self);
    bool two_frames = self->body_size >= ZQ_MSG_ZEROCOPY_MIN;
    zframe_t *first = zframe_new (NULL, header_size + (two_frames ? 0 : self->body_size));
    zframe_t *second = two_frames ? zframe_new (self->body, self->body_size) : NULL;
    if (!first || (two_frames && !second)) {
        zframe_destroy (&first);
        zframe_destroy (&second);
        return zqi_fail (ENOMEM);
    }
    uint8_t *out = s_write_header (self, zframe_data (first));
    if (!two_frames)
        memcpy (out, self->body, self->body_size);
    zmsg_append (dest, &first);
    if (second)
        zmsg_append (dest, &second);
    zq_msg_destroy (self_p);
    return 0;
}

//  ---- Decoding -----------------------------------------------------------

//  Reads a str of the forms a header written by zq uses for names, values
//  and subjects up to 255 bytes (fixstr, str8). Returns false, pos
//  unchanged, for anything else.
static inline bool
s_fast_str (const uint8_t **pos_p, const uint8_t *end, const char **str_p, uint32_t *size_p)
{
    const uint8_t *pos = *pos_p;
    if (pos >= end)
        return false;
    uint32_t size;
    if ((*pos & 0xe0) == 0xa0) {
        size = *pos & 0x1f;
        pos += 1;
    } else if (*pos == 0xd9 && end - pos >= 2) {
        size = pos[1];
        pos += 2;
    } else
        return false;
    if (size > (size_t)(end - pos))
        return false;
    *str_p = (const char *)pos;
    *size_p = size;
    *pos_p = pos + size;
    return true;
}

//  Reads a positive fixint or a uint64 (the forms zq writes for small
//  attempts and for today's created_ms). Returns false, pos unchanged, for
//  anything else.
static inline bool
s_fast_uint (const uint8_t **pos_p, const uint8_t *end, uint64_t *value_p)
{
    const uint8_t *pos = *pos_p;
    if (pos >= end)
        return false;
    if (*pos <= 0x7f) {
        *value_p = *pos;
        *pos_p = pos + 1;
        return true;
    }
    if (*pos == 0xcf && end - pos >= 9) {
        uint64_t value;
        memcpy (&value, pos + 1, sizeof value);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        value = __builtin_bswap64 (value);
#endif
        *value_p = value;
        *pos_p = pos + 9;
        return true;
    }
    return false;
}

//  Parses the header in the forms zq itself writes for usual messages: six
//  elements, version 1, the id as bin8, str up to 255 bytes, created_ms
//  and attempt as fixint or uint64, up to 15 headers. Checks everything
//  the general parser checks for these forms. Returns true with the
//  envelope's header fields set, or false for any other input (which the
//  general parser then reads, and judges).
static bool
s_parse_header_fast (const uint8_t *first, size_t first_size, zqi_envelope_t *envelope)
{
    static const uint8_t start[4] = {0x90 | S_HEADER_ELEMENTS_MIN, ZQ_PROTOCOL_VERSION, 0xc4,
                                     ZQ_MSG_ID_SIZE};
    if (first_size < sizeof start + ZQ_MSG_ID_SIZE || memcmp (first, start, sizeof start) != 0)
        return false;
    const uint8_t *pos = first + sizeof start + ZQ_MSG_ID_SIZE;
    const uint8_t *end = first + first_size;
    envelope->id = first + sizeof start;
    if (!s_fast_str (&pos, end, &envelope->subject, &envelope->subject_size) ||
        !s_fast_uint (&pos, end, &envelope->created_ms) || envelope->created_ms > INT64_MAX)
        return false;
    envelope->attempt_offset = (size_t)(pos - first);
    if (!s_fast_uint (&pos, end, &envelope->attempt) || envelope->attempt > UINT32_MAX ||
        pos >= end || (*pos & 0xf0) != 0x80)
        return false;
    envelope->attempt_size = (size_t)(pos - first) - envelope->attempt_offset;
    uint32_t pairs = *pos++ & 0x0f;
    for (uint32_t index = 0; index < pairs; index++) {
        const char *name, *value;
        uint32_t name_size, value_size;
        if (!s_fast_str (&pos, end, &name, &name_size) || name_size == 0 ||
            !s_fast_str (&pos, end, &value, &value_size))
            return false;
        for (uint32_t other = 0; other < index; other++)
            if (envelope->headers[other].name_size == name_size &&
                memcmp (envelope->headers[other].name, name, name_size) == 0)
                return false;
        envelope->headers[index].name = name;
        envelope->headers[index].name_size = name_size;
        envelope->headers[index].value = value;
        envelope->headers[index].value_size = value_size;
    }
    envelope->header_count = pairs;
    envelope->header_size = (size_t)(pos - first);
    return true;
}

//  Parses and checks the header at the start of first, any valid encoding.
//  Returns 0 with the envelope's header fields set, or -1 with errno
//  ZQ_EPROTO, ZQ_EVERSION or ZQ_EDEPTH.
static int
s_parse_header (const uint8_t *first, size_t first_size, zqi_envelope_t *envelope)
{
    zqi_cursor_t cursor = {first, first + first_size};
    //  The array marker, then the version, whatever else follows.
    if (first_size == 0)
        return zqi_fail (ZQ_EPROTO);
    uint64_t elements;
    uint8_t marker = *cursor.pos;
    if (marker >= 0x90 && marker <= 0x9f) {
        elements = marker & 0x0f;
        cursor.pos += 1;
    } else if (marker == 0xdc && first_size >= 3) {
        elements = ((uint64_t)first[1] << 8) | first[2];
        cursor.pos += 3;
    } else if (marker == 0xdd && first_size >= 5) {
        elements = ((uint64_t)first[1] << 24) | ((uint64_t)first[2] << 16) |
                   ((uint64_t)first[3] << 8) | first[4];
        cursor.pos += 5;
    } else
        return zqi_fail (ZQ_EPROTO);
    uint64_t version;
    if (elements == 0 || zqi_mp_read_uint (&cursor, &version))
        return zqi_fail (ZQ_EPROTO);
    if (version != ZQ_PROTOCOL_VERSION)
        return zqi_fail (ZQ_EVERSION);
    if (elements < S_HEADER_ELEMENTS_MIN || elements > S_HEADER_ELEMENTS_MAX)
        return zqi_fail (ZQ_EPROTO);

    const uint8_t *id;
    uint32_t id_size;
    if (zqi_mp_read_bin (&cursor, &id, &id_size) || id_size != ZQ_MSG_ID_SIZE)
        return zqi_fail (ZQ_EPROTO);
    envelope->id = id;
    if (zqi_mp_read_str (&cursor, &envelope->subject, &envelope->subject_size) ||
        envelope->subject_size > ZQ_MSG_MAX_STRING)
        return zqi_fail (ZQ_EPROTO);
    if (zqi_mp_read_uint (&cursor, &envelope->created_ms) || envelope->created_ms > INT64_MAX)
        return zqi_fail (ZQ_EPROTO);
    envelope->attempt_offset = (size_t)(cursor.pos - first);
    if (zqi_mp_read_uint (&cursor, &envelope->attempt) || envelope->attempt > UINT32_MAX)
        return zqi_fail (ZQ_EPROTO);
    envelope->attempt_size = (size_t)(cursor.pos - first) - envelope->attempt_offset;
    uint32_t pairs;
    if (zqi_mp_read_map (&cursor, &pairs) || pairs > ZQ_MSG_MAX_HEADERS)
        return zqi_fail (ZQ_EPROTO);
    for (uint32_t index = 0; index < pairs; index++) {
        const char *name, *value;
        uint32_t name_size, value_size;
        if (zqi_mp_read_str (&cursor, &name, &name_size) || name_size == 0 ||
            name_size > ZQ_MSG_MAX_STRING || zqi_mp_read_str (&cursor, &value, &value_size) ||
            value_size > ZQ_MSG_MAX_STRING)
            return zqi_fail (ZQ_EPROTO);
        for (uint32_t other = 0; other < index; other++)
            if (envelope->headers[other].name_size == name_size &&
                memcmp (envelope->headers[other].name, name, name_size) == 0)
                return zqi_fail (ZQ_EPROTO);
        envelope->headers[index].name = name;
        envelope->headers[index].name_size = name_size;
        envelope->headers[index].value = value;
        envelope->headers[index].value_size = value_size;
    }
    envelope->header_count = pairs;
    //  Extension elements of later minor revisions: checked, skipped.
    for (uint64_t index = S_HEADER_ELEMENTS_MIN; index < elements; index++)
        if (zqi_mp_skip (&cursor, ZQ_MSG_MAX_DEPTH))
            return -1;
    envelope->header_size = (size_t)(cursor.pos - first);
    return 0;
}

int
zqi_envelope_parse (const uint8_t *first, size_t first_size, const uint8_t *second,
                    size_t second_size, bool check_body, zqi_envelope_t *envelope)
{
    if (!s_parse_header_fast (first, first_size, envelope) &&
        s_parse_header (first, first_size, envelope))
        return -1;
    if (second) {
        if (envelope->header_size != first_size)
            return zqi_fail (ZQ_EPROTO);
        envelope->body = second;
        envelope->body_size = second_size;
    } else {
        envelope->body = first + envelope->header_size;
        envelope->body_size = first_size - envelope->header_size;
    }
    if (!check_body)
        return envelope->body_size ? 0 : zqi_fail (ZQ_EPROTO);
    return zqi_msgpack_check (envelope->body, envelope->body_size, NULL, ZQ_MSG_MAX_DEPTH);
}

//  Sets the envelope's fields in self, a message just initialised (nil
//  body). Returns 0, or -1 with errno ENOMEM (the fields copied so far
//  stay, for zq_msg_destroy to release).
static int
s_fill (zq_msg_t *self, const zqi_envelope_t *envelope)
{
    memcpy (self->id, envelope->id, ZQ_MSG_ID_SIZE);
    self->created_ms = (int64_t)envelope->created_ms;
    self->attempt = (uint32_t)envelope->attempt;
    if (envelope->subject_size < S_SUBJECT_INLINE_SIZE) {
        memcpy (self->subject_inline, envelope->subject, envelope->subject_size);
        self->subject_inline[envelope->subject_size] = 0;
        self->subject_size = envelope->subject_size;
    } else if (s_store_subject (self, envelope->subject, envelope->subject_size))
        return zqi_fail (ENOMEM);
    if (envelope->header_count) {
        self->headers = (s_header_t *)malloc (envelope->header_count * sizeof (s_header_t));
        if (!self->headers)
            return zqi_fail (ENOMEM);
        self->header_capacity = envelope->header_count;
        for (uint32_t index = 0; index < envelope->header_count; index++)
            if (s_append_header (self, envelope->headers[index].name,
                                 envelope->headers[index].name_size, envelope->headers[index].value,
                                 envelope->headers[index].value_size))
                return zqi_fail (ENOMEM);
    }
    return 0;
}

//  Makes a message of the envelope's fields, with a nil body.
static zq_msg_t *
s_build (const zqi_envelope_t *envelope)
{
    zq_msg_t *self = s_alloc ();
    if (self && s_fill (self, envelope)) {
        zq_msg_destroy (&self);
        errno = ENOMEM;
    }
    return self;
}

zq_msg_t *
zq_msg_decode_buffers (const void *const *frames, const size_t *sizes, size_t count,
                       size_t max_size)
{
    if (max_size == 0)
        max_size = ZQ_MSG_MAX_SIZE_DEFAULT;
    if (count == 0 || count > 2 || !frames || !sizes) {
        errno = ZQ_EPROTO;
        return NULL;
    }
    size_t total = sizes[0];
    if (count == 2)
        total = total > SIZE_MAX - sizes[1] ? SIZE_MAX : total + sizes[1];
    if (total > max_size) {
        errno = ZQ_ETOOBIG;
        return NULL;
    }
    zqi_envelope_t envelope;
    if (zqi_envelope_parse ((const uint8_t *)frames[0], sizes[0],
                            count == 2 ? (const uint8_t *)frames[1] : NULL,
                            count == 2 ? sizes[1] : 0, true, &envelope))
        return NULL;
    zq_msg_t *self = s_build (&envelope);
    if (self && s_store_body (self, envelope.body, envelope.body_size)) {
        zq_msg_destroy (&self);
        errno = ENOMEM;
    }
    return self;
}

zq_msg_t *
zq_msg_decode (zmsg_t *src, size_t max_size)
{
    ZQ_ASSERT (src);
    size_t count = zmsg_size (src);
    zframe_t *first = zmsg_pop (src);
    zframe_t *second = zmsg_pop (src);
    while (zmsg_size (src) > 0) {
        zframe_t *frame = zmsg_pop (src);
        zframe_destroy (&frame);
    }
    zq_msg_t *self = NULL;
    if (count == 0 || count > 2)
        errno = ZQ_EPROTO;
    else {
        const void *buffers[2] = {zframe_data (first), second ? zframe_data (second) : NULL};
        size_t sizes[2] = {zframe_size (first), second ? zframe_size (second) : 0};
        self = zq_msg_decode_buffers (buffers, sizes, count, max_size);
    }
    int saved_errno = errno;
    zframe_destroy (&first);
    zframe_destroy (&second);
    errno = saved_errno;
    return self;
}

//  Receives one more frame into frame, retrying on EINTR: once the first
//  frame of a message has arrived, the rest are already there.
static int
s_recv_more (zmq_msg_t *frame, void *handle, int flags)
{
    int rc;
    while ((rc = zmq_msg_recv (frame, handle, flags)) == -1 && errno == EINTR)
        ;
    return rc;
}

//  Receives the frames after first (a frame with more to come) and decodes
//  the message: the two-frame form, or an error. Closes first.
static zq_msg_t *
s_recv_multipart (zmq_msg_t *first, void *handle, int flags, size_t max_size)
{
    zmq_msg_t frames[2];
    zmq_msg_init (&frames[0]);
    zmq_msg_move (&frames[0], first);
    zmq_msg_close (first);
    size_t count = 1;
    size_t total = zmq_msg_size (&frames[0]);
    int error = total > max_size ? ZQ_ETOOBIG : 0;
    bool more = true;
    //  Read every remaining frame of the message, keeping at most two
    //  and none once the message is known to be bad.
    while (more) {
        bool keep = count < 2 && !error;
        zmq_msg_t scratch;
        zmq_msg_t *frame = keep ? &frames[count] : &scratch;
        zmq_msg_init (frame);
        if (s_recv_more (frame, handle, flags) == -1) {
            int saved_errno = errno;
            zmq_msg_close (frame);
            for (size_t index = 0; index < count; index++)
                zmq_msg_close (&frames[index]);
            errno = saved_errno;
            return NULL;
        }
        more = zmq_msg_more (frame);
        size_t size = zmq_msg_size (frame);
        total = total > SIZE_MAX - size ? SIZE_MAX : total + size;
        if (!error && total > max_size)
            error = ZQ_ETOOBIG;
        if (keep)
            count++;
        else {
            zmq_msg_close (&scratch);
            if (!error)
                error = ZQ_EPROTO; //  a third frame
        }
    }
    zq_msg_t *self = NULL;
    zqi_envelope_t envelope;
    if (!error &&
        zqi_envelope_parse ((const uint8_t *)zmq_msg_data (&frames[0]), zmq_msg_size (&frames[0]),
                            (const uint8_t *)zmq_msg_data (&frames[1]), zmq_msg_size (&frames[1]),
                            true, &envelope))
        error = errno;
    if (!error && !(self = s_build (&envelope)))
        error = errno;
    if (!error) {
        //  Keep the frame that holds the body and point into it.
        zmq_msg_init (&self->frame);
        zmq_msg_move (&self->frame, &frames[1]);
        self->body_store = S_BODY_FRAME;
        self->body_offset = 0;
        self->body = (const uint8_t *)zmq_msg_data (&self->frame);
        self->body_size = envelope.body_size;
    }
    for (size_t index = 0; index < count; index++)
        zmq_msg_close (&frames[index]);
    if (error)
        errno = error;
    return self;
}

zq_msg_t *
zqi_msg_recv_from (void *handle, int flags, size_t max_size)
{
    zmq_msg_t first;
    zmq_msg_init (&first);
    if (zmq_msg_recv (&first, handle, flags) == -1) {
        int saved_errno = errno;
        zmq_msg_close (&first);
        errno = saved_errno;
        return NULL;
    }
    zq_msg_t *self = zqi_msg_from_frame (&first, handle, flags, max_size);
    int saved_errno = errno;
    zmq_msg_close (&first);
    errno = saved_errno;
    return self;
}

zq_msg_t *
zqi_msg_from_frame (zmq_msg_t *first, void *handle, int flags, size_t max_size)
{
    if (max_size == 0)
        max_size = ZQ_MSG_MAX_SIZE_DEFAULT;
    if (zmq_msg_more (first)) {
        zq_msg_t *self = s_recv_multipart (first, handle, flags, max_size);
        int saved_errno = errno;
        zmq_msg_init (first); //  closed there: leave it closable
        errno = saved_errno;
        return self;
    }
    //  A one-frame message keeps its frame and points into it.
    zq_msg_t *self = s_struct_new ();
    if (!self)
        return NULL;
    zmq_msg_init (&self->frame);
    zmq_msg_move (&self->frame, first);
    const uint8_t *data = (const uint8_t *)zmq_msg_data (&self->frame);
    size_t size = zmq_msg_size (&self->frame);
    zqi_envelope_t envelope;
    int error = 0;
    if (size > max_size)
        error = ZQ_ETOOBIG;
    else if (zqi_envelope_parse (data, size, NULL, 0, true, &envelope))
        error = errno;
    else {
        s_init (self);
        self->body_store = S_BODY_FRAME;
        self->body_offset = envelope.header_size;
        self->body = data + envelope.header_size;
        self->body_size = envelope.body_size;
        if (s_fill (self, &envelope) == 0)
            return self;
        zq_msg_destroy (&self); //  closes the frame
        errno = ENOMEM;
        return NULL;
    }
    zmq_msg_close (&self->frame);
    s_struct_free (self);
    errno = error;
    return NULL;
}

zq_msg_t *
zq_msg_recv (void *socket, int flags, size_t max_size)
{
    return zqi_msg_recv_from (s_resolve (socket), flags, max_size);
}
