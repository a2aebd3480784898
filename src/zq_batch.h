/*  =========================================================================
    zq_batch - batch frames: several envelopes in one ZeroMQ frame
    (doc/PROTOCOL.md section 19). Internal, never installed; part of the
    wire layer, it knows nothing of patterns.

    A batch frame is a msgpack array whose element 0 is the batch tag
    (ZQI_BATCH_TAG, which a version-1 receiver reads as an unknown
    version and rejects cleanly), followed by 1 to ZQI_BATCH_MAX_COUNT
    bins, each holding one element (for pipeline and pubsub, one envelope
    in the one-frame form).

    Sending: a zqi_batch_t gathers elements in one heap block; sending it
    hands that block to libzmq without copying. Receiving: a
    zqi_batch_reader_t holds one received batch frame, whose whole layout
    it checked before giving out the first element.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#ifndef ZQ_BATCH_H_INCLUDED
#define ZQ_BATCH_H_INCLUDED

#include "zq_internal.h"

//  Element 0 of a batch frame ("ZB"); any msgpack integer encoding of it.
#define ZQI_BATCH_TAG 0x5A42
//  Most elements one batch frame may carry (receivers reject more).
#define ZQI_BATCH_MAX_COUNT 1024
//  Octets a batch adds before its first element at most: an array16
//  marker and the tag as a uint16.
#define ZQI_BATCH_PREFIX_MAX 6
//  Octets a batch adds per element at most (a bin32 marker and length).
#define ZQI_BATCH_ELEMENT_OVERHEAD 5

//  ---- Sending ---------------------------------------------------------------

//  Elements gathered for one batch frame. Zero it to start; count 0
//  means empty (after a send no block is held; after zqi_batch_expect
//  one may be, which zqi_batch_discard frees). A batch kept
//  from frame to frame starts each block at the size of the last one it
//  sent, so that a steady stream's blocks grow once, not by doubling.
typedef struct {
    uint8_t *block; //  heap block: a small holder, then the frame's octets
    size_t size;    //  octets of elements written
    size_t capacity;
    uint32_t count;
    size_t last_size; //  octets of elements of the last frame sent
} zqi_batch_t;

//  The frame size a batch would have with one more element of
//  element_size octets.
size_t zqi_batch_size_with (const zqi_batch_t *self, size_t element_size);

//  Appends one element of size octets and returns where to write them
//  (the caller writes exactly size octets there before any other call on
//  the batch), or NULL with errno EAGAIN when the batch would exceed
//  max_bytes (the whole frame) or ZQI_BATCH_MAX_COUNT elements, or ENOMEM.
//  The first element always fits if max_bytes allows it alone.
uint8_t *zqi_batch_reserve (zqi_batch_t *self, size_t size, size_t max_bytes);

//  Makes room for elements of size octets in all, bin headers included
//  (zqi_batch_element_size each), so that a batch whose elements are
//  known before they are written grows once. Returns 0, or -1 with errno
//  ENOMEM (the batch unchanged; a reserve then grows it as needed).
int zqi_batch_expect (zqi_batch_t *self, size_t size);
//  Octets an element of size octets takes in a batch, its header included.
size_t zqi_batch_element_size (size_t size);
//  The size of a batch frame of count elements taking elements_size
//  octets in all (zqi_batch_element_size each).
size_t zqi_batch_frame_size (uint32_t count, size_t elements_size);

//  Appends msg (not taken) as one element: its one-frame wire form. As
//  zqi_batch_reserve: 0, or -1 with errno EAGAIN or ENOMEM.
int zqi_batch_add_msg (zqi_batch_t *self, const zq_msg_t *msg, size_t max_bytes);

//  Sends the batch as one frame on handle with flags (0 or ZMQ_DONTWAIT;
//  a batch frame is always the last frame of its message). A batch of
//  one element sends that element alone, as it is (for an envelope, the
//  one-frame form every receiver reads). On success the block belongs to libzmq and the batch is
//  empty again: returns 0. On failure the batch is unchanged: -1 with errno from libzmq (EAGAIN: no
//  room) or ENOMEM. Sending an empty batch is a bug.
int zqi_batch_send (zqi_batch_t *self, void *handle, int flags);

//  Frees what the batch holds (its block, even with no element); returns
//  how many elements it discarded. last_size stays.
size_t zqi_batch_discard (zqi_batch_t *self);

//  ---- Receiving -------------------------------------------------------------

//  True if data (one whole frame) starts as a batch frame does: an array
//  marker, then an integer equal to ZQI_BATCH_TAG. Reads at most the
//  first 12 octets; says nothing about the rest.
bool zqi_batch_is (const uint8_t *data, size_t size);

//  One batch frame being split. Zero it to start.
typedef struct {
    zmq_msg_t frame;
    bool open;
    zqi_cursor_t cursor; //  at the next element
    uint32_t left;       //  elements not yet taken
} zqi_batch_reader_t;

//  Takes *frame (moved: *frame is left empty, to be closed by the caller
//  as usual) and checks the whole layout of the batch before any element
//  is given out: frame size at most max_size (else ZQ_ETOOBIG), an array
//  of 2 to ZQI_BATCH_MAX_COUNT + 1 elements, the tag, then only bins, each
//  within the frame, and nothing after the last one (else ZQ_EPROTO).
//  Returns 0 with the reader open, or -1 with errno and the reader closed
//  (nothing of the batch is delivered). A reader must be closed (or
//  emptied) before it is opened again.
int zqi_batch_open (zqi_batch_reader_t *self, zmq_msg_t *frame, size_t max_size);

//  Gives the next element's octets (valid until the reader is closed or
//  opened again) and returns 0; when none is left, closes the reader and
//  returns -1 with errno EAGAIN. The octets are not checked: each element
//  is judged on its own by its consumer.
int zqi_batch_next (zqi_batch_reader_t *self, const uint8_t **data_p, size_t *size_p);

//  Elements not yet taken.
static inline uint32_t
zqi_batch_left (const zqi_batch_reader_t *self)
{
    return self->open ? self->left : 0;
}

//  Releases the frame; returns how many elements were not taken.
uint32_t zqi_batch_close (zqi_batch_reader_t *self);

//  Receives the next message from handle, a socket whose ZeroMQ messages
//  are each one envelope or one batch frame of envelopes (the pipeline's
//  wire): the next element of the batch self holds, else the next ZeroMQ
//  message (flags for its first frame). Returns the message, or NULL with
//  errno: from libzmq (EAGAIN...), or a malformed-input code for a bad
//  message, a bad batch (none of it given out) or a bad element (the
//  others still come, one per call); every frame of what was bad has been
//  read.
zq_msg_t *zqi_batch_recv_msg (zqi_batch_reader_t *self, void *handle, int flags, size_t max_size);

#endif
