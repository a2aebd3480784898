/*  =========================================================================
    zq_batch - batch frames: several envelopes in one ZeroMQ frame.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "zq_batch.h"

//  The start of every block: libzmq frees the block through it once the
//  frame is sent; a send that failed sets cancelled around closing its
//  frame, so the block stays the batch's.
typedef struct {
    bool cancelled;
} s_holder_t;

//  Room for the holder, rounded so the octets after it stay aligned.
#define S_HOLDER_SIZE 16
//  Where elements start in a block.
#define S_ELEMENTS (S_HOLDER_SIZE + ZQI_BATCH_PREFIX_MAX)
//  A block's first capacity (elements only), unless the last frame sent
//  was larger; it doubles from there.
#define S_FIRST_CAPACITY 4096

//  Octets of the array marker and tag for count elements.
static size_t
s_prefix_size (uint32_t count)
{
    return (count + 1 <= 15 ? 1 : 3) + 3;
}

static size_t
s_bin_header_size (size_t size)
{
    return size < 256 ? 2 : size < 65536 ? 3 : 5;
}

size_t
zqi_batch_element_size (size_t size)
{
    return s_bin_header_size (size) + size;
}

size_t
zqi_batch_frame_size (uint32_t count, size_t elements_size)
{
    return s_prefix_size (count) + elements_size;
}

size_t
zqi_batch_size_with (const zqi_batch_t *self, size_t element_size)
{
    return zqi_batch_frame_size (self->count + 1,
                                 self->size + zqi_batch_element_size (element_size));
}

//  Gives the block room for capacity octets of elements. Returns 0, or
//  -1 with errno ENOMEM (nothing changed).
static int
s_resize (zqi_batch_t *self, size_t capacity)
{
    uint8_t *block = (uint8_t *)realloc (self->block, S_ELEMENTS + capacity);
    if (!block)
        return zqi_fail (ENOMEM);
    self->block = block;
    self->capacity = capacity;
    return 0;
}

//  Makes the block hold at least needed octets of elements, doubling from
//  its capacity (or, for a new block, from the last frame's size). As
//  s_resize.
static int
s_grow (zqi_batch_t *self, size_t needed)
{
    if (needed <= self->capacity)
        return 0;
    size_t capacity = self->capacity;
    if (!capacity)
        capacity = self->last_size > S_FIRST_CAPACITY ? self->last_size : S_FIRST_CAPACITY;
    while (capacity < needed)
        capacity *= 2;
    return s_resize (self, capacity);
}

int
zqi_batch_expect (zqi_batch_t *self, size_t size)
{
    return size <= self->capacity ? 0 : s_resize (self, size);
}

uint8_t *
zqi_batch_reserve (zqi_batch_t *self, size_t size, size_t max_bytes)
{
    if (self->count >= ZQI_BATCH_MAX_COUNT || size > UINT32_MAX ||
        zqi_batch_size_with (self, size) > max_bytes) {
        errno = EAGAIN;
        return NULL;
    }
    size_t header_size = s_bin_header_size (size);
    size_t needed = self->size + header_size + size;
    if (s_grow (self, needed))
        return NULL;
    uint8_t *out = self->block + S_ELEMENTS + self->size;
    if (header_size == 2) {
        out[0] = 0xc4;
        out[1] = (uint8_t)size;
    } else if (header_size == 3) {
        out[0] = 0xc5;
        out[1] = (uint8_t)(size >> 8);
        out[2] = (uint8_t)size;
    } else {
        out[0] = 0xc6;
        for (int index = 0; index < 4; index++)
            out[1 + index] = (uint8_t)(size >> (24 - 8 * index));
    }
    self->size = needed;
    self->count++;
    return out + header_size;
}

int
zqi_batch_add_msg (zqi_batch_t *self, const zq_msg_t *msg, size_t max_bytes)
{
    size_t size = zqi_msg_wire_size (msg);
    uint8_t *out = zqi_batch_reserve (self, size, max_bytes);
    if (!out)
        return -1;
    zqi_msg_wire_write (msg, out);
    return 0;
}

static void
s_block_free (void *data, void *hint)
{
    (void)data;
    s_holder_t *holder = (s_holder_t *)hint;
    if (!holder->cancelled)
        free (holder);
}

int
zqi_batch_send (zqi_batch_t *self, void *handle, int flags)
{
    ZQ_ASSERT (self->count > 0 && self->block);
    uint8_t *start;
    size_t size;
    if (self->count == 1) {
        //  One element goes as itself, which every receiver reads.
        uint8_t marker = self->block[S_ELEMENTS];
        size_t header_size = marker == 0xc4 ? 2 : marker == 0xc5 ? 3 : 5;
        start = self->block + S_ELEMENTS + header_size;
        size = self->size - header_size;
    } else {
        size_t prefix_size = s_prefix_size (self->count);
        start = self->block + S_ELEMENTS - prefix_size;
        size = prefix_size + self->size;
        uint8_t *out = start;
        uint32_t elements = self->count + 1;
        if (elements <= 15)
            *out++ = (uint8_t)(0x90 | elements);
        else {
            *out++ = 0xdc;
            *out++ = (uint8_t)(elements >> 8);
            *out++ = (uint8_t)elements;
        }
        *out++ = 0xcd;
        *out++ = (uint8_t)(ZQI_BATCH_TAG >> 8);
        *out++ = (uint8_t)(ZQI_BATCH_TAG & 0xff);
    }

    s_holder_t *holder = (s_holder_t *)self->block;
    holder->cancelled = false;
    zmq_msg_t frame;
    if (zmq_msg_init_data (&frame, start, size, s_block_free, holder))
        return zqi_fail (ENOMEM);
    int rc;
    while ((rc = zmq_msg_send (&frame, handle, flags)) == -1 && errno == EINTR)
        ;
    if (rc == -1) {
        int saved_errno = errno;
        holder->cancelled = true;
        zmq_msg_close (&frame); //  s_block_free leaves the block alone
        holder->cancelled = false;
        return zqi_fail (saved_errno);
    }
    self->last_size = self->size;
    self->block = NULL;
    self->size = 0;
    self->capacity = 0;
    self->count = 0;
    return 0;
}

size_t
zqi_batch_discard (zqi_batch_t *self)
{
    size_t count = self->count;
    size_t last_size = self->last_size;
    free (self->block);
    memset (self, 0, sizeof *self);
    self->last_size = last_size;
    return count;
}

bool
zqi_batch_is (const uint8_t *data, size_t size)
{
    if (size < 2)
        return false;
    size_t marker_size;
    if ((data[0] & 0xf0) == 0x90)
        marker_size = 1;
    else if (data[0] == 0xdc)
        marker_size = 3;
    else if (data[0] == 0xdd)
        marker_size = 5;
    else
        return false;
    if (size <= marker_size)
        return false;
    zqi_cursor_t cursor = {data + marker_size, data + size};
    uint64_t tag;
    return zqi_mp_read_uint (&cursor, &tag) == 0 && tag == ZQI_BATCH_TAG;
}

int
zqi_batch_open (zqi_batch_reader_t *self, zmq_msg_t *frame, size_t max_size)
{
    ZQ_ASSERT (!self->open);
    zmq_msg_init (&self->frame);
    zmq_msg_move (&self->frame, frame);
    const uint8_t *data = (const uint8_t *)zmq_msg_data (&self->frame);
    size_t size = zmq_msg_size (&self->frame);
    int error = 0;
    zqi_cursor_t cursor = {data, data + size};
    uint32_t elements = 0;
    uint64_t tag = 0;
    if (size > max_size)
        error = ZQ_ETOOBIG;
    else if (zqi_mp_read_array (&cursor, &elements) || elements < 2 ||
             elements - 1 > ZQI_BATCH_MAX_COUNT || zqi_mp_read_uint (&cursor, &tag) ||
             tag != ZQI_BATCH_TAG)
        error = ZQ_EPROTO;
    else {
        //  Every element a bin within the frame, nothing after the last.
        zqi_cursor_t walk = cursor;
        for (uint32_t index = 1; index < elements && !error; index++) {
            const uint8_t *element;
            uint32_t element_size;
            if (zqi_mp_read_bin (&walk, &element, &element_size))
                error = ZQ_EPROTO;
        }
        if (!error && walk.pos != walk.end)
            error = ZQ_EPROTO;
    }
    if (error) {
        zmq_msg_close (&self->frame);
        return zqi_fail (error);
    }
    self->cursor = cursor;
    self->left = elements - 1;
    self->open = true;
    return 0;
}

int
zqi_batch_next (zqi_batch_reader_t *self, const uint8_t **data_p, size_t *size_p)
{
    if (!self->open || self->left == 0) {
        zqi_batch_close (self);
        return zqi_fail (EAGAIN);
    }
    const uint8_t *data;
    uint32_t size;
    //  zqi_batch_open checked every element: this cannot fail.
    int rc = zqi_mp_read_bin (&self->cursor, &data, &size);
    ZQ_ASSERT (rc == 0);
    self->left--;
    *data_p = data;
    *size_p = size;
    return 0;
}

uint32_t
zqi_batch_close (zqi_batch_reader_t *self)
{
    uint32_t left = 0;
    if (self->open) {
        left = self->left;
        zmq_msg_close (&self->frame);
        self->open = false;
        self->left = 0;
    }
    return left;
}

//  The next element of the batch being split, decoded as a message.
static zq_msg_t *
s_next_msg (zqi_batch_reader_t *self, size_t max_size)
{
    const uint8_t *data;
    size_t size;
    if (zqi_batch_next (self, &data, &size))
        return NULL;
    const void *frames[1] = {data};
    zq_msg_t *msg = zq_msg_decode_buffers (frames, &size, 1, max_size);
    int saved_errno = errno;
    if (self->left == 0)
        zqi_batch_close (self);
    errno = saved_errno;
    return msg;
}

zq_msg_t *
zqi_batch_recv_msg (zqi_batch_reader_t *self, void *handle, int flags, size_t max_size)
{
    if (max_size == 0)
        max_size = ZQ_MSG_MAX_SIZE_DEFAULT;
    if (zqi_batch_left (self))
        return s_next_msg (self, max_size);
    zmq_msg_t frame;
    zmq_msg_init (&frame);
    if (zmq_msg_recv (&frame, handle, flags) == -1) {
        int saved_errno = errno;
        zmq_msg_close (&frame);
        errno = saved_errno;
        return NULL;
    }
    zq_msg_t *msg = NULL;
    if (!zmq_msg_more (&frame) &&
        zqi_batch_is ((const uint8_t *)zmq_msg_data (&frame), zmq_msg_size (&frame))) {
        if (zqi_batch_open (self, &frame, max_size) == 0)
            msg = s_next_msg (self, max_size);
    } else
        msg = zqi_msg_from_frame (&frame, handle, flags, max_size);
    int saved_errno = errno;
    zmq_msg_close (&frame);
    errno = saved_errno;
    return msg;
}
