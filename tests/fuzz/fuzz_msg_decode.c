/*  =========================================================================
    fuzz_msg_decode - libFuzzer target for the envelope decoder.

    Input layout: byte 0 picks the frame count (low 2 bits: 0..3) and the
    size limit (bit 7 set: a 64-byte limit, else the default); every frame
    but the last is preceded by a 2-byte big-endian length (cut to what
    remains); the last frame takes the rest. A message that decodes must
    survive a round trip through zq_msg_encode / zq_msg_decode unchanged,
    and its body must convert to JSON or fail cleanly.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "zq.h"
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static void
s_check_round_trip (const zq_msg_t *msg)
{
    zq_msg_t *copy = zq_msg_dup (msg);
    if (!copy)
        return;
    zmsg_t *frames = zmsg_new ();
    if (zq_msg_encode (&copy, frames) != 0) {
        zq_msg_destroy (&copy);
        zmsg_destroy (&frames);
        return;
    }
    zq_msg_t *again = zq_msg_decode (frames, 0);
    zmsg_destroy (&frames);
    if (!again)
        abort (); //  what zq wrote, zq must read back
    size_t size_a, size_b;
    const void *body_a = zq_msg_body (msg, &size_a);
    const void *body_b = zq_msg_body (again, &size_b);
    if (memcmp (zq_msg_id (msg), zq_msg_id (again), ZQ_MSG_ID_SIZE) != 0 ||
        strcmp (zq_msg_subject (msg), zq_msg_subject (again)) != 0 ||
        zq_msg_created_ms (msg) != zq_msg_created_ms (again) ||
        zq_msg_attempt (msg) != zq_msg_attempt (again) ||
        zq_msg_header_count (msg) != zq_msg_header_count (again) || size_a != size_b ||
        memcmp (body_a, body_b, size_a) != 0)
        abort ();
    for (size_t index = 0; index < zq_msg_header_count (msg); index++) {
        const char *value_a, *value_b;
        const char *name_a = zq_msg_header_at (msg, index, &value_a);
        const char *name_b = zq_msg_header_at (again, index, &value_b);
        if (strcmp (name_a, name_b) != 0 || strcmp (value_a, value_b) != 0)
            abort ();
    }
    zq_msg_destroy (&again);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t count = data[0] & 3;
    size_t max_size = (data[0] & 0x80) ? 64 : 0;
    data++;
    size--;

    const void *frames[3];
    size_t sizes[3];
    for (size_t index = 0; index < count; index++) {
        size_t length = size;
        if (index + 1 < count) {
            length = size >= 2 ? (size_t)data[0] << 8 | data[1] : 0;
            size_t header = size >= 2 ? 2 : size;
            data += header;
            size -= header;
            if (length > size)
                length = size;
        }
        frames[index] = data;
        sizes[index] = length;
        data += length;
        size -= length;
    }
    zq_msg_t *msg = zq_msg_decode_buffers (frames, sizes, count, max_size);
    if (!msg)
        return 0;
    s_check_round_trip (msg);
    char *json = zq_msg_body_json (msg);
    free (json);
    zq_msg_destroy (&msg);
    return 0;
}
