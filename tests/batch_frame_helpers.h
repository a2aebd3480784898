/*  =========================================================================
    batch_frame_helpers - writing a batch frame (doc/PROTOCOL.md 19), the
    form PUT and DELIVER batches take on the wire, for tests that speak
    the reliable protocol raw.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#ifndef BATCH_FRAME_HELPERS_H_INCLUDED
#define BATCH_FRAME_HELPERS_H_INCLUDED

#include <msgpack.h>

//  The tag a batch frame's array starts with.
#define BATCH_FRAME_TAG 0x5A42

//  A batch frame being written: its bytes are buffer.data, buffer.size.
typedef struct {
    msgpack_sbuffer buffer;
    msgpack_packer packer;
} batch_frame_t;

//  Starts a batch frame of elements elements (the count the frame says;
//  the test adds that many, or not).
static inline void
batch_frame_start (batch_frame_t *self, uint32_t elements)
{
    msgpack_sbuffer_init (&self->buffer);
    msgpack_packer_init (&self->packer, &self->buffer, msgpack_sbuffer_write);
    msgpack_pack_array (&self->packer, elements + 1);
    msgpack_pack_uint16 (&self->packer, BATCH_FRAME_TAG);
}

//  Adds an element of size bytes.
static inline void
batch_frame_bin (batch_frame_t *self, const void *data, size_t size)
{
    msgpack_pack_bin (&self->packer, size);
    msgpack_pack_bin_body (&self->packer, data, size);
}

//  Frees what the frame's bytes took.
static inline void
batch_frame_free (batch_frame_t *self)
{
    msgpack_sbuffer_destroy (&self->buffer);
}

#endif
