/*  =========================================================================
    zq_msg - one message: envelope (id, subject, time, attempt, headers)
    and a msgpack body: construction, copies and fields. The wire codec
    is in src/zq_msg_envelope.c and src/zq_msg_io.c (doc/PROTOCOL.md,
    version 1); src/zq_msg_internal.h lists the files.

    One allocation holds a message with a short subject and a small body,
    and each thread keeps a few freed message structures for reuse
    (src/zq_msg_cache.c). A received message keeps the libzmq frame that
    carries its body and points into it, so the body is never copied on
    receive; a large body leaves on its own frame, handed to libzmq without
    a copy.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "zq_msg_internal.h"

//  ---- Construction -------------------------------------------------------

zq_msg_t *
zqi_msg_alloc (void)
{
    zq_msg_t *self = zqi_msg_struct_new ();
    if (self)
        zqi_msg_init (self);
    return self;
}

//  Stores a copy of size bytes as the subject. Returns 0 or -1 (ENOMEM).
static int
s_store_subject (zq_msg_t *self, const char *subject, size_t size)
{
    if (size < ZQI_MSG_SUBJECT_INLINE_SIZE) {
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
    if (self->body_store == ZQI_MSG_BODY_HEAP)
        free (self->body_heap);
    else if (self->body_store == ZQI_MSG_BODY_FRAME)
        zmq_msg_close (&self->frame);
    self->body_heap = NULL;
    self->body_store = ZQI_MSG_BODY_INLINE;
}

//  Replaces the body with a copy of size bytes (already checked).
//  Returns 0 or -1 (ENOMEM, body unchanged).
int
zqi_msg_store_body (zq_msg_t *self, const void *data, size_t size)
{
    if (size <= ZQI_MSG_BODY_INLINE_SIZE) {
        if (self->body_store == ZQI_MSG_BODY_INLINE)
            memmove (self->body_inline, data, size);
        else {
            memcpy (self->body_inline, data, size);
            s_release_body (self);
        }
        self->body_store = ZQI_MSG_BODY_INLINE;
        self->body = self->body_inline;
    } else {
        void *copy = malloc (size);
        if (!copy)
            return zqi_fail (ENOMEM);
        memcpy (copy, data, size);
        s_release_body (self);
        self->body_store = ZQI_MSG_BODY_HEAP;
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
    zq_msg_t *self = zqi_msg_alloc ();
    if (!self)
        return NULL;
    if (s_store_subject (self, subject, size)) {
        zqi_msg_struct_free (self);
        return NULL;
    }
    uint64_t now_ms = (uint64_t)zqi_msg_now_ms ();
    self->created_ms = (int64_t)now_ms;
    zqi_msg_id_new (self->id, now_ms);
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
    zqi_msg_struct_free (self);
    *self_p = NULL;
}

//  Appends a header (no checks but capacity). Returns 0 or -1 (ENOMEM).
static int
s_append_header (zq_msg_t *self, const char *name, size_t name_size, const char *value,
                 size_t value_size)
{
    if (self->header_count == self->header_capacity) {
        uint32_t capacity = self->header_capacity ? self->header_capacity * 2 : 4;
        zqi_msg_header_t *headers =
            (zqi_msg_header_t *)realloc (self->headers, capacity * sizeof (zqi_msg_header_t));
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
    zqi_msg_header_t *header = &self->headers[self->header_count++];
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
    zq_msg_t *copy = zqi_msg_alloc ();
    if (!copy)
        return NULL;
    memcpy (copy->id, self->id, ZQ_MSG_ID_SIZE);
    copy->created_ms = self->created_ms;
    copy->attempt = self->attempt;
    if (s_store_subject (copy, self->subject, self->subject_size) ||
        zqi_msg_store_body (copy, self->body, self->body_size))
        goto failed;
    for (uint32_t index = 0; index < self->header_count; index++) {
        const zqi_msg_header_t *header = &self->headers[index];
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

static zqi_msg_header_t *
s_find_header (const zq_msg_t *self, const char *name, size_t name_size)
{
    for (uint32_t index = 0; index < self->header_count; index++) {
        zqi_msg_header_t *header = &self->headers[index];
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
    zqi_msg_header_t *header = s_find_header (self, name, name_size);
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
    zqi_msg_header_t *header = s_find_header (self, name, strlen (name));
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
    return zqi_msg_store_body (self, data, size);
}

void
zqi_msg_take_body (zq_msg_t *self, void *data, size_t size)
{
    ZQ_ASSERT (self && data && size > 0);
    s_release_body (self);
    self->body_store = ZQI_MSG_BODY_HEAP;
    self->body_heap = data;
    self->body = (const uint8_t *)data;
    self->body_size = size;
}

//  ---- From a parsed envelope --------------------------------------------

int
zqi_msg_fill (zq_msg_t *self, const zqi_envelope_t *envelope)
{
    memcpy (self->id, envelope->id, ZQ_MSG_ID_SIZE);
    self->created_ms = (int64_t)envelope->created_ms;
    self->attempt = (uint32_t)envelope->attempt;
    if (envelope->subject_size < ZQI_MSG_SUBJECT_INLINE_SIZE) {
        memcpy (self->subject_inline, envelope->subject, envelope->subject_size);
        self->subject_inline[envelope->subject_size] = 0;
        self->subject_size = envelope->subject_size;
    } else if (s_store_subject (self, envelope->subject, envelope->subject_size))
        return zqi_fail (ENOMEM);
    if (envelope->header_count) {
        self->headers =
            (zqi_msg_header_t *)malloc (envelope->header_count * sizeof (zqi_msg_header_t));
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

zq_msg_t *
zqi_msg_build (const zqi_envelope_t *envelope)
{
    zq_msg_t *self = zqi_msg_alloc ();
    if (self && zqi_msg_fill (self, envelope)) {
        zq_msg_destroy (&self);
        errno = ENOMEM;
    }
    return self;
}
