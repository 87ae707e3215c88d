/*
 * log.c -- encoding and decoding of the core's log record payloads (formats in log.h).
 */
#include "core/log.h"

#include <string.h>

#include "durability/encoding.h"

static uint8_t *put_u32(uint8_t *p, uint32_t v)
{
    encoding_put_u32(p, v);
    return p + 4;
}

static size_t writes_in(const struct write_op *ops, size_t n, const struct write_op **only)
{
    size_t count = 0;
    for (size_t i = 0; i < n; i++) {
        if (ops[i].type != WRITE_REQUIRE) {
            count++;
            *only = &ops[i];
        }
    }
    return count;
}

static size_t op_size(const struct write_op *op)
{
    return 8 + op->klen + (op->type == WRITE_PUT ? 4 + (size_t)op->vlen : 0);
}

size_t log_encoded_size(const struct write_op *ops, size_t n, uint8_t *type)
{
    const struct write_op *only = NULL;
    size_t count = writes_in(ops, n, &only);
    if (count == 1) {
        *type = only->type == WRITE_PUT ? LOG_PUT : LOG_DELETE;
        return op_size(only);
    }
    *type = LOG_BATCH;
    size_t size = 4;
    for (size_t i = 0; i < n; i++)
        if (ops[i].type != WRITE_REQUIRE)
            size += 1 + op_size(&ops[i]);
    return size;
}

static uint8_t *encode_op(const struct write_op *op, uint8_t *p)
{
    p = put_u32(p, op->ns->id);
    p = put_u32(p, op->klen);
    if (op->type == WRITE_PUT)
        p = put_u32(p, op->vlen);
    memcpy(p, op->key, op->klen);
    p += op->klen;
    if (op->type == WRITE_PUT && op->vlen) {
        memcpy(p, op->value, op->vlen);
        p += op->vlen;
    }
    return p;
}

void log_encode(const struct write_op *ops, size_t n, uint8_t *buf)
{
    const struct write_op *only = NULL;
    size_t count = writes_in(ops, n, &only);
    if (count == 1) {
        encode_op(only, buf);
        return;
    }
    uint8_t *p = put_u32(buf, (uint32_t)count);
    for (size_t i = 0; i < n; i++) {
        if (ops[i].type == WRITE_REQUIRE)
            continue;
        *p++ = ops[i].type;
        p = encode_op(&ops[i], p);
    }
}

/* Reads one operation at *p (of type op_type) within end; returns false if it does not
 * fit. */
static bool decode_op(uint8_t op_type, const uint8_t **p, const uint8_t *end,
                      struct log_op *op)
{
    size_t fixed = op_type == WRITE_PUT ? 12 : 8;
    if ((size_t)(end - *p) < fixed)
        return false;
    op->type = op_type;
    op->ns_id = encoding_get_u32(*p);
    op->klen = encoding_get_u32(*p + 4);
    op->vlen = op_type == WRITE_PUT ? encoding_get_u32(*p + 8) : 0;
    *p += fixed;
    if (op->klen == 0 || op->klen > SHOAL_MAX_KEY || op->vlen > SHOAL_MAX_VALUE ||
        (size_t)(end - *p) < (size_t)op->klen + op->vlen)
        return false;
    op->key = *p;
    op->value = op_type == WRITE_PUT ? *p + op->klen : NULL;
    *p += op->klen + op->vlen;
    return true;
}

/* Walks the payload; with fn NULL it only validates. */
static int decode_walk(uint8_t type, const uint8_t *payload, size_t len,
                       int (*fn)(void *ctx, const struct log_op *op), void *ctx)
{
    const uint8_t *p = payload, *end = payload + len;
    struct log_op op;
    if (type == LOG_PUT || type == LOG_DELETE) {
        if (!decode_op(type == LOG_PUT ? WRITE_PUT : WRITE_DELETE, &p, end, &op) || p != end)
            return SHOAL_ECORRUPT;
        return fn ? fn(ctx, &op) : 0;
    }
    if (type != LOG_BATCH || len < 4)
        return SHOAL_ECORRUPT;
    uint32_t count = encoding_get_u32(p);
    p += 4;
    for (uint32_t i = 0; i < count; i++) {
        if (p == end || (*p != WRITE_PUT && *p != WRITE_DELETE))
            return SHOAL_ECORRUPT;
        uint8_t op_type = *p++;
        if (!decode_op(op_type, &p, end, &op))
            return SHOAL_ECORRUPT;
        int err = fn ? fn(ctx, &op) : 0;
        if (err)
            return err;
    }
    return p == end ? 0 : SHOAL_ECORRUPT;
}

int log_decode(uint8_t type, const uint8_t *payload, size_t len,
               int (*fn)(void *ctx, const struct log_op *op), void *ctx)
{
    int err = decode_walk(type, payload, len, NULL, NULL);
    return err ? err : decode_walk(type, payload, len, fn, ctx);
}
