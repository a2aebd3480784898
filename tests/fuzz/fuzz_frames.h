/*  =========================================================================
    fuzz_frames - what the reliable protocol's fuzz targets (fuzz_reliable,
    fuzz_client) share: an input read as frames, each a 2-byte big-endian
    word and its bytes; and a socket's messages read and dropped.

    The word: bit 15, the frame ends a message; bit 14, so does it, and
    the target lets what it drives work until idle before the next one;
    the low length_bits bits, its length (cut to what remains); the bits
    between are the target's own.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#ifndef ZQ_FUZZ_FRAMES_H_INCLUDED
#define ZQ_FUZZ_FRAMES_H_INCLUDED

#include "zq.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

//  Frames one input may send; the rest of the input is ignored.
#define FUZZ_MAX_FRAMES 64

//  One frame of an input.
typedef struct {
    const uint8_t *data;
    size_t size;
    unsigned bits; //  the word's bits between bit 14 and the length
    bool ends;     //  it ends a message (the word says so, or no frame follows)
    bool pause;    //  bit 14: work until idle after it
} fuzz_frame_t;

//  Reads the next frame of the input at *data_p (*size_p octets left)
//  into frame, moving past it. Frame number frames (from 0) of at most
//  max_frames ends a message if it is the last one there can be. Returns
//  false, reading nothing, when no frame is left.
static inline bool
fuzz_next_frame (const uint8_t **data_p, size_t *size_p, unsigned length_bits, size_t frames,
                 size_t max_frames, fuzz_frame_t *frame)
{
    const uint8_t *data = *data_p;
    size_t size = *size_p;
    if (size < 2 || frames >= max_frames)
        return false;
    unsigned word = (unsigned)data[0] << 8 | data[1];
    unsigned length_mask = (1u << length_bits) - 1;
    size_t length = word & length_mask;
    data += 2;
    size -= 2;
    if (length > size)
        length = size;
    frame->data = data;
    frame->size = length;
    frame->bits = (word & 0x3fff) >> length_bits;
    frame->pause = (word & 0x4000) != 0;
    frame->ends =
        frame->pause || (word & 0x8000) != 0 || size - length < 2 || frames + 1 == max_frames;
    *data_p = data + length;
    *size_p = size - length;
    return true;
}

//  Reads and drops every message waiting on handle (at most 100000).
//  Returns true if match (when not NULL) was true of the first frame of
//  one of them.
static inline bool
fuzz_drop_messages (void *handle, bool (*match) (const uint8_t *data, size_t size))
{
    bool matched = false;
    for (int message = 0; message < 100000; message++) {
        zmq_msg_t frame;
        zmq_msg_init (&frame);
        if (zmq_msg_recv (&frame, handle, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close (&frame);
            break;
        }
        if (match && match ((const uint8_t *)zmq_msg_data (&frame), zmq_msg_size (&frame)))
            matched = true;
        while (zmq_msg_more (&frame)) {
            zmq_msg_close (&frame);
            zmq_msg_init (&frame);
            if (zmq_msg_recv (&frame, handle, 0) < 0)
                break;
        }
        zmq_msg_close (&frame);
    }
    return matched;
}

#endif
