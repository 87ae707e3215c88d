/*
 * log.h -- the one seam between the core and durability: every commit produces its log
 * record through log_commit().
 *
 * Record payloads (the bytes inside a log record's frame, see docs/FORMAT.md), all
 * integers little-endian:
 *
 *   LOG_PUT    ns_id u32, klen u32, vlen u32, key, value
 *   LOG_DELETE ns_id u32, klen u32, key
 *   LOG_BATCH  count u32, then count operations, each: op u8 (1 put, 2 delete),
 *              ns_id u32, klen u32, [vlen u32 for a put], key, [value]
 *
 * Catalog records (namespace and tenant changes, quota changes) are defined with the
 * durability layer. In memory mode (db->log NULL) log_commit returns at once without
 * encoding anything.
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

/* Hands a commit's record to the log (durable mode) and waits as the sync policy says;
 * called with the commit's shard locks held, so it never waits for the disk itself. */
int log_commit(struct shoal_db *db, const struct write_op *ops, size_t n, uint64_t seq,
               const shoal_write_options *wo);

#endif
