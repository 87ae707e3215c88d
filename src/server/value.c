/*
 * value.c -- the header shoal-server keeps in front of every stored value.
 *
 * Purpose
 * -------
 * The engine stores bytes; Redis semantics need a type (for TYPE, SCAN TYPE and
 * WRONGTYPE) and an expiry (for EXPIRE, TTL and lazy and active expiry). Both travel
 * with the value, in front of it, so that one engine write changes value and metadata
 * together and a snapshot or a batch sees them together.
 *
 * Format (version 1)
 * ------------------
 *   byte 0        (version << 4) | type        version 1; type 1 = string
 *   byte 1        flags                        bit 0: an expiry follows; others 0
 *   bytes 2..9    expiry, if flag bit 0        Unix time in milliseconds, int64,
 *                                              little-endian
 *   then          the payload (the Redis value's bytes)
 *
 * A string without expiry costs 2 bytes; with one, 10.
 *
 * Invariants
 * ----------
 * 1. value_decode accepts exactly what value_encode_header writes: any other version,
 *    type or flag bit, or a value shorter than its header, is refused, so a value written
 *    through the C API by another program is never misread as a server value.
 * 2. The expiry is absolute, so it means the same after a restart or on another node.
 *
 * Testing
 * -------
 * Every command of the integration suite goes through it; TTL, PERSIST, EXPIRE and SET
 * KEEPTTL tests check the expiry field round-trips.
 */
#include "value.h"

#include <string.h>

size_t value_encode_header(unsigned char out[VALUE_HEADER_MAX], int type, int64_t expire_ms)
{
    out[0] = (unsigned char)((VALUE_VERSION << 4) | (type & 0x0f));
    if (expire_ms == VALUE_NO_EXPIRY) {
        out[1] = 0;
        return 2;
    }
    out[1] = 1;
    uint64_t bits = (uint64_t)expire_ms;
    for (int i = 0; i < 8; i++)
        out[2 + i] = (unsigned char)(bits >> (8 * i));
    return 10;
}

bool value_decode(const void *raw, size_t length, value_meta *out)
{
    const unsigned char *bytes = raw;
    if (length < 2 || (bytes[0] >> 4) != VALUE_VERSION)
        return false;
    int type = bytes[0] & 0x0f;
    if (type != VALUE_TYPE_STRING || (bytes[1] & ~1u) != 0)
        return false;
    out->type = type;
    if (bytes[1] & 1u) {
        if (length < 10)
            return false;
        uint64_t bits = 0;
        for (int i = 0; i < 8; i++)
            bits |= (uint64_t)bytes[2 + i] << (8 * i);
        out->expire_ms = (int64_t)bits;
        out->header_length = 10;
    } else {
        out->expire_ms = VALUE_NO_EXPIRY;
        out->header_length = 2;
    }
    return true;
}
