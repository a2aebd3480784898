/*  =========================================================================
    zq_text - text a peer chose, as zq shows it to a person: the one UTF-8
    decoder (zq_json checks strings with it) and the one escaping of a
    line that a log or a terminal gets (src/zq_internal.h).

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "zq_internal.h"

size_t
zqi_utf8_char (const uint8_t *data, size_t size, uint32_t *code_p)
{
    if (size == 0)
        return 0;
    uint8_t lead = data[0];
    size_t extra;
    uint32_t code;
    if (lead < 0x80) {
        extra = 0;
        code = lead;
    } else if (lead >= 0xc2 && lead <= 0xdf) {
        extra = 1;
        code = lead & 0x1f;
    } else if (lead >= 0xe0 && lead <= 0xef) {
        extra = 2;
        code = lead & 0x0f;
    } else if (lead >= 0xf0 && lead <= 0xf4) {
        extra = 3;
        code = lead & 0x07;
    } else
        return 0;
    if (size - 1 < extra)
        return 0;
    for (size_t offset = 1; offset <= extra; offset++) {
        uint8_t next = data[offset];
        if ((next & 0xc0) != 0x80)
            return 0;
        code = code << 6 | (next & 0x3f);
    }
    if ((extra == 2 && code < 0x800) || (extra == 3 && code < 0x10000) || code > 0x10ffff ||
        (code >= 0xd800 && code <= 0xdfff))
        return 0;
    if (code_p)
        *code_p = code;
    return 1 + extra;
}

bool
zqi_utf8_valid (const void *data, size_t size)
{
    const uint8_t *bytes = (const uint8_t *)data;
    size_t index = 0;
    while (index < size) {
        size_t length = zqi_utf8_char (bytes + index, size - index, NULL);
        if (length == 0)
            return false;
        index += length;
    }
    return true;
}

bool
zqi_text_control (uint32_t code)
{
    return code < 0x20 || (code >= 0x7f && code <= 0x9f);
}

void
zqi_text_escape (char *line, size_t size, const char *text)
{
    if (size == 0)
        return;
    size_t length = 0;
    size_t left = strlen (text);
    const uint8_t *at = (const uint8_t *)text;
    while (left) {
        uint32_t code = 0;
        size_t bytes = zqi_utf8_char (at, left, &code);
        //  A control character (C0, DEL, C1) or a byte outside UTF-8 is
        //  shown byte by byte as \xHH; any other character as it is.
        bool shown = bytes && !zqi_text_control (code);
        if (!bytes)
            bytes = 1;
        size_t needed = shown ? bytes : 4 * bytes;
        if (length + needed >= size)
            break;
        for (size_t index = 0; index < bytes; index++) {
            if (shown)
                line[length++] = (char)at[index];
            else
                length += (size_t)snprintf (line + length, size - length, "\\x%02x", at[index]);
        }
        at += bytes;
        left -= bytes;
    }
    line[length] = 0;
}

char *
zqi_text_escaped (const char *text)
{
    size_t size = 4 * strlen (text) + 1;
    char *line = (char *)malloc (size);
    if (line)
        zqi_text_escape (line, size, text);
    return line;
}
