/*  =========================================================================
    reliable_wire - the reliable pattern's command frames and a parser of
    envelope headers that allocates nothing (doc/PROTOCOL.md, "reliable").

    The server reads the envelope of every PUT to learn its id, queue,
    attempt and reserved headers, and stores the frame as it came; so the
    envelope is checked here by the same rules zq_msg's decoder applies
    (doc/PROTOCOL.md sections 6 to 9), without building a message.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "reliable.h"

//  Parses a header value as a decimal integer >= 0; -1 if it is not one.
static int64_t
s_decimal (const char *text, uint32_t size)
{
    if (size == 0 || size > 18)
        return -1;
    int64_t value = 0;
    for (uint32_t i = 0; i < size; i++) {
        if (text[i] < '0' || text[i] > '9')
            return -1;
        value = value * 10 + (text[i] - '0');
    }
    return value;
}

//  ---- Commands -----------------------------------------------------------

int
zqi_r_command_parse (const uint8_t *data, size_t size, zqi_r_command_t *command)
{
    memset (command, 0, sizeof *command);
    zqi_cursor_t cursor = {data, data + size};
    uint32_t elements;
    if (zqi_wire_command_read (&cursor, ZQI_R_VERSION, &elements, &command->kind))
        return -1;
    uint32_t used = 2;
    const uint8_t *bin;
    uint32_t bin_size;
    uint64_t value;
    switch (command->kind) {
        case ZQI_R_PUT:
        case ZQI_R_PING:
            break;
        case ZQI_R_CONFIRM:
        case ZQI_R_ACK:
        case ZQI_R_REFUSE:
        case ZQI_R_NACK:
        case ZQI_R_TOUCH:
            if (elements < 3 || zqi_mp_read_bin (&cursor, &bin, &bin_size) || bin_size == 0 ||
                bin_size % ZQ_MSG_ID_SIZE)
                return zqi_fail (ZQ_EPROTO);
            command->ids = bin;
            command->id_count = bin_size / ZQ_MSG_ID_SIZE;
            used = 3;
            if (command->kind == ZQI_R_REFUSE) {
                if (elements < 5 || zqi_mp_read_uint (&cursor, &command->code) ||
                    zqi_mp_read_str (&cursor, &command->text, &command->text_size))
                    return zqi_fail (ZQ_EPROTO);
                used = 5;
            } else if (command->kind == ZQI_R_NACK) {
                if (elements < 4 || zqi_mp_read_int (&cursor, &command->number))
                    return zqi_fail (ZQ_EPROTO);
                used = 4;
            } else if (command->kind == ZQI_R_TOUCH) {
                //  Any uint: the server clamps it (max_delay_ms).
                if (elements < 4 || zqi_mp_read_uint (&cursor, &value))
                    return zqi_fail (ZQ_EPROTO);
                command->number = value > INT64_MAX ? INT64_MAX : (int64_t)value;
                used = 4;
            }
            break;
        case ZQI_R_LEAVE:
            if (elements >= 3) {
                if (zqi_mp_read_bin (&cursor, &bin, &bin_size) || bin_size % ZQ_MSG_ID_SIZE)
                    return zqi_fail (ZQ_EPROTO);
                command->ids = bin;
                command->id_count = bin_size / ZQ_MSG_ID_SIZE;
                used = 3;
            }
            break;
        case ZQI_R_CONSUME:
        case ZQI_R_CANCEL:
            if (elements < 3 || zqi_mp_read_str (&cursor, &command->text, &command->text_size))
                return zqi_fail (ZQ_EPROTO);
            used = 3;
            if (command->kind == ZQI_R_CONSUME) {
                if (elements < 4 || zqi_mp_read_uint (&cursor, &value) || value > 1000000)
                    return zqi_fail (ZQ_EPROTO);
                command->number = (int64_t)value;
                used = 4;
                //  Element 5 (doc/PROTOCOL.md 19.7): any uint, the server
                //  cuts it to its own limit.
                if (elements >= 5) {
                    if (zqi_mp_read_uint (&cursor, &command->batch_bytes))
                        return zqi_fail (ZQ_EPROTO);
                    used = 5;
                }
            }
            break;
        case ZQI_R_DELIVER:
            if (elements < 3 || zqi_mp_read_uint (&cursor, &value) || value > INT32_MAX)
                return zqi_fail (ZQ_EPROTO);
            command->number = (int64_t)value;
            used = 3;
            break;
        case ZQI_R_PONG:
            if (elements < 4 || zqi_mp_read_bin (&cursor, &bin, &bin_size) ||
                bin_size != ZQI_R_INSTANCE_SIZE || zqi_mp_read_uint (&cursor, &value))
                return zqi_fail (ZQ_EPROTO);
            command->instance = bin;
            command->number = (int64_t)(value & 0xffff);
            used = 4;
            break;
        case ZQI_R_ERROR:
            if (elements < 4 || zqi_mp_read_uint (&cursor, &command->code) ||
                zqi_mp_read_str (&cursor, &command->text, &command->text_size))
                return zqi_fail (ZQ_EPROTO);
            used = 4;
            break;
        default:
            //  Unknown: the caller answers it; the rest is not looked at.
            return 0;
    }
    return zqi_wire_command_end (&cursor, used, elements, ZQ_MSG_MAX_DEPTH);
}

//  ---- Envelope -----------------------------------------------------------

void
zqi_r_envelope_times (const zqi_envelope_t *envelope, int64_t *ttl_ms, int64_t *not_before_ms)
{
    *ttl_ms = -1;
    *not_before_ms = -1;
    for (uint32_t index = 0; index < envelope->header_count; index++) {
        const char *name = envelope->headers[index].name;
        uint32_t name_size = envelope->headers[index].name_size;
        if (name_size == 9 && memcmp (name, "zq-ttl-ms", 9) == 0)
            *ttl_ms =
                s_decimal (envelope->headers[index].value, envelope->headers[index].value_size);
        else if (name_size == 16 && memcmp (name, "zq-not-before-ms", 16) == 0)
            *not_before_ms =
                s_decimal (envelope->headers[index].value, envelope->headers[index].value_size);
    }
}

//  ---- Frames -------------------------------------------------------------

int
zqi_r_recv_frame (void *handle, zmq_msg_t *frame)
{
    zmq_msg_init (frame);
    if (zmq_msg_recv (frame, handle, ZMQ_DONTWAIT) >= 0)
        return 0;
    int saved = errno;
    zmq_msg_close (frame);
    zmq_msg_init (frame);
    return zqi_fail (saved);
}

int
zqi_r_code_errno (uint64_t code)
{
    switch (code) {
        case ZQI_R_CODE_FULL:
            return ZQ_EFULL;
        case ZQI_R_CODE_INVALID:
            return EINVAL;
        case ZQI_R_CODE_FAILED:
            return EIO;
        case ZQI_R_CODE_VERSION:
            return ZQ_EVERSION;
        case ZQI_R_CODE_CONFLICT:
            return EEXIST;
        case ZQI_R_CODE_LIMIT:
            return ZQ_ELIMIT;
        case ZQI_R_CODE_BUSY:
            return EBUSY; //  the server's descriptors, not ours: not EMFILE
        case ZQI_R_CODE_DENIED:
            return EACCES;
        case ZQI_R_CODE_NO_SPACE:
            return ENOSPC;
        case ZQI_R_CODE_DELETED:
            return ZQ_ENOTFOUND;
        default:
            return ZQ_EPROTO;
    }
}
