/*
 * value.h -- the small header shoal-server keeps in front of every value it stores: the
 * value's type and its expiry. See value.c for the byte layout.
 * Thread-safety: pure functions, any thread.
 */
#ifndef SHOAL_SERVER_VALUE_H
#define SHOAL_SERVER_VALUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VALUE_VERSION 1
#define VALUE_TYPE_STRING 1
#define VALUE_HEADER_MAX 10
#define VALUE_NO_EXPIRY (-1)

typedef struct value_meta {
    int type;              /* VALUE_TYPE_* */
    int64_t expire_ms;     /* absolute Unix time in milliseconds, or VALUE_NO_EXPIRY */
    size_t header_length;  /* bytes before the payload */
} value_meta;

/* Writes the header for (type, expire_ms) into out; returns its length (2 or 10). */
size_t value_encode_header(unsigned char out[VALUE_HEADER_MAX], int type, int64_t expire_ms);
/* Reads the header of a stored value. Returns false when raw is not a value this server
 * wrote (too short, another version, an unknown type or flag). */
bool value_decode(const void *raw, size_t length, value_meta *out);
/* True when a value with this expiry is expired at now_ms. */
static inline bool value_expired(int64_t expire_ms, int64_t now_ms)
{
    return expire_ms != VALUE_NO_EXPIRY && expire_ms <= now_ms;
}

#endif /* SHOAL_SERVER_VALUE_H */
