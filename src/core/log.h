/*
 * log.h -- the payloads of log records: every commit's record is encoded here, and
 * recovery decodes it here (durable.c).
 *
 * Record payloads (the bytes inside a log record's frame, see docs/FORMAT.md), all
 * integers little-endian:
 *
 *   LOG_PUT    ns_id u32, klen u32, vlen u32, key, value
 *   LOG_DELETE ns_id u32, klen u32, key
 *   LOG_BATCH  count u32, then count operations, each: op u8 (1 put, 2 delete),
 *              ns_id u32, klen u32, [vlen u32 for a put], key, [value]
 *
 * The types 4..7 are reserved for catalog records; the catalog itself lives in the
 * MANIFEST (durable.c). durable_append encodes a commit's record only in durable mode.
 *
 * Tested by tests/unit/test_log_record.c (encode/decode round trips, truncated input).
 */
#ifndef SHOAL_CORE_LOG_H
#define SHOAL_CORE_LOG_H

#include <stddef.h>
#include <stdint.h>

#include "core/internal.h"

enum log_record_type {
    LOG_PUT = 1,
    LOG_DELETE = 2,
    LOG_BATCH = 3,
    LOG_NS_CREATE = 4,
    LOG_NS_DROP = 5,
    LOG_TENANT_CREATE = 6,
    LOG_QUOTA_SET = 7,
};

/* One decoded operation of a record. Pointers point into the record's payload. */
struct log_op {
    uint8_t type; /* WRITE_PUT or WRITE_DELETE */
    uint32_t ns_id;
    const uint8_t *key;
    uint32_t klen;
    const uint8_t *value;
    uint32_t vlen;
};

/* The bytes log_encode will produce for ops (requires skipped). Sets *type. */
size_t log_encoded_size(const struct write_op *ops, size_t n, uint8_t *type);
/* Encodes ops into buf (log_encoded_size bytes). */
void log_encode(const struct write_op *ops, size_t n, uint8_t *buf);
/* Decodes a payload of the given type, calling fn for each operation. Returns 0,
 * SHOAL_ECORRUPT when the payload is malformed (nothing is called for a malformed
 * payload: it is checked whole first), or fn's non-zero result. */
int log_decode(uint8_t type, const uint8_t *payload, size_t len,
               int (*fn)(void *ctx, const struct log_op *op), void *ctx);

#endif
