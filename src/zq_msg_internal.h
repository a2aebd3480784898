/*  =========================================================================
    zq_msg_internal - the message structure and what the files of zq_msg
    share. Internal, never installed.

        src/zq_msg.c           construction, copies and fields
        src/zq_msg_cache.c     per-thread structure cache and id generator
        src/zq_msg_envelope.c  the envelope header: writing and parsing
        src/zq_msg_io.c        frames: send, receive, encode, decode

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#ifndef ZQ_MSG_INTERNAL_H_INCLUDED
#define ZQ_MSG_INTERNAL_H_INCLUDED

#include "zq_internal.h"

//  Subjects shorter than this, and bodies up to this size, live inside the
//  message structure itself.
#define ZQI_MSG_SUBJECT_INLINE_SIZE 48
#define ZQI_MSG_BODY_INLINE_SIZE    160

//  Extension elements beyond the six this version defines may appear in a
//  header up to this count (doc/PROTOCOL.md).
#define ZQI_MSG_HEADER_ELEMENTS_MIN 6
#define ZQI_MSG_HEADER_ELEMENTS_MAX 16

typedef struct {
    char *name; //  one allocation: name, NUL, value, NUL
    char *value;
    uint32_t name_size;
    uint32_t value_size;
} zqi_msg_header_t;

typedef enum {
    ZQI_MSG_BODY_INLINE, //  in body_inline
    ZQI_MSG_BODY_HEAP,   //  in body_heap, from malloc
    ZQI_MSG_BODY_FRAME   //  inside frame, at body_offset
} zqi_msg_body_store_t;

struct _zq_msg_t {
    uint8_t id[ZQ_MSG_ID_SIZE];
    int64_t created_ms;
    uint32_t attempt;
    uint32_t subject_size;
    char *subject; //  subject_inline or from malloc; NUL-terminated
    zqi_msg_header_t *headers;
    uint32_t header_count;
    uint32_t header_capacity;
    zqi_msg_body_store_t body_store;
    const uint8_t *body;
    size_t body_size;
    void *body_heap;
    size_t body_offset;
    zmq_msg_t frame;       //  initialised only while body_store is ZQI_MSG_BODY_FRAME
    zq_msg_t *next_cached; //  while in a thread's cache: the next one there
    char subject_inline[ZQI_MSG_SUBJECT_INLINE_SIZE];
    uint8_t body_inline[ZQI_MSG_BODY_INLINE_SIZE];
};

//  ---- zq_msg_cache.c ---------------------------------------------------------

//  Returns a message structure from the thread's cache or from malloc, or
//  NULL (ENOMEM). Its fields are not initialised.
zq_msg_t *zqi_msg_struct_new (void);
//  Gives a structure whose contents are released back to the thread's
//  cache, or to free.
void zqi_msg_struct_free (zq_msg_t *self);
//  Wall-clock milliseconds since the Unix epoch (0 before it).
int64_t zqi_msg_now_ms (void);
//  Writes a new id for a message created at now_ms: ids of one thread
//  sort strictly by creation.
void zqi_msg_id_new (uint8_t *id, uint64_t now_ms);

//  ---- zq_msg.c ---------------------------------------------------------------

//  Sets the fields of a new message: no subject, time, attempt or
//  headers, a nil body.
static inline void
zqi_msg_init (zq_msg_t *self)
{
    self->created_ms = 0;
    self->attempt = 0;
    self->subject_size = 0;
    self->subject = self->subject_inline;
    self->subject_inline[0] = 0;
    self->headers = NULL;
    self->header_count = 0;
    self->header_capacity = 0;
    self->body_store = ZQI_MSG_BODY_INLINE;
    self->body_inline[0] = 0xc0; //  nil
    self->body = self->body_inline;
    self->body_size = 1;
    self->body_heap = NULL;
    self->body_offset = 0;
}

//  A new message (zqi_msg_struct_new, then zqi_msg_init), or NULL (ENOMEM).
zq_msg_t *zqi_msg_alloc (void);
//  Replaces the body with a copy of size bytes (already checked).
//  Returns 0 or -1 (ENOMEM, body unchanged).
int zqi_msg_store_body (zq_msg_t *self, const void *data, size_t size);
//  Sets the envelope's fields in self, a message just initialised (nil
//  body). Returns 0, or -1 with errno ENOMEM (the fields copied so far
//  stay, for zq_msg_destroy to release).
int zqi_msg_fill (zq_msg_t *self, const zqi_envelope_t *envelope);
//  Makes a message of the envelope's fields, with a nil body; NULL (ENOMEM).
zq_msg_t *zqi_msg_build (const zqi_envelope_t *envelope);

//  ---- zq_msg_envelope.c ------------------------------------------------------

//  Size of self's envelope header, and writing it at out (that many
//  bytes); returns the position after it.
size_t zqi_msg_header_size (const zq_msg_t *self);
uint8_t *zqi_msg_header_write (const zq_msg_t *self, uint8_t *out);

#endif
