/*  =========================================================================
    zq_sequence - the pubsub sequence frame (doc/PROTOCOL.md 16.1) and the
    gap rule of 16.3: one codec for the pubsub pattern, which writes and
    checks the frame, and the device's forward kind, which reads it to
    count what was lost before a message reached it. Internal, never
    installed; part of the wire layer, it knows nothing of patterns.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#ifndef ZQ_SEQUENCE_H_INCLUDED
#define ZQ_SEQUENCE_H_INCLUDED

#include "zq_internal.h"

//  Octets of a sequence frame: 8 of publisher id, 8 of sequence number.
#define ZQI_SEQUENCE_SIZE 16
//  Octets of the publisher id at its start.
#define ZQI_SEQUENCE_PUBLISHER_SIZE 8

//  Writes the frame for publisher (ZQI_SEQUENCE_PUBLISHER_SIZE opaque
//  octets) and number into out (ZQI_SEQUENCE_SIZE octets).
static inline void
zqi_sequence_write (uint8_t *out, const uint8_t *publisher, uint64_t number)
{
    memcpy (out, publisher, ZQI_SEQUENCE_PUBLISHER_SIZE);
    for (int index = 0; index < 8; index++)
        out[ZQI_SEQUENCE_PUBLISHER_SIZE + index] = (uint8_t)(number >> (56 - 8 * index));
}

//  Reads a sequence frame of size octets: stores where its publisher id
//  starts (8 octets inside data) and its number. Returns 0, or -1 with
//  errno ZQ_EPROTO (not 16 octets, or number 0).
static inline int
zqi_sequence_read (const void *data, size_t size, const uint8_t **publisher_p, uint64_t *number_p)
{
    if (size != ZQI_SEQUENCE_SIZE)
        return zqi_fail (ZQ_EPROTO);
    const uint8_t *bytes = (const uint8_t *)data;
    uint64_t number = 0;
    for (int index = 0; index < 8; index++)
        number = (number << 8) | bytes[ZQI_SEQUENCE_PUBLISHER_SIZE + index];
    if (number == 0)
        return zqi_fail (ZQ_EPROTO);
    *publisher_p = bytes;
    *number_p = number;
    return 0;
}

//  The gap rule (16.3): how many messages were lost before number on a
//  (publisher, subject) pair whose last number was last (seen false: the
//  pair is new, never a gap). A number at or below last is a restart.
static inline uint64_t
zqi_sequence_gap (bool seen, uint64_t last, uint64_t number)
{
    return seen && number > last + 1 ? number - last - 1 : 0;
}

#endif
