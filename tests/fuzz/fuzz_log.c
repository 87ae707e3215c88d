/*
 * fuzz_log.c -- the log record decoder against any payload.
 *
 * Recovery decodes every record whose frame checksum matched (src/core/log.c); a payload
 * the encoder never wrote must be refused whole (SHOAL_ECORRUPT, no operation reported),
 * never read past its end. The input's first byte is the record type, the rest its
 * payload. When the decoder accepts it, the operations it reported are encoded again and
 * decoded again: the second decode must report the same operations, and when the encoder
 * chose the same type, the bytes must be the input's (one encoding per record).
 *
 * Built with libFuzzer by `make fuzz` (clang); tests/fuzz/replay.c runs the same function
 * over the seed corpus and its mutations in the default test tier.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "core/log.h"
#include "shoal.h"

#include "fuzz.h"

struct log_seen {
    struct log_op *ops;
    size_t count, capacity;
    size_t payload_length;
    const uint8_t *payload;
};

static int log_collect(void *ctx, const struct log_op *op)
{
    struct log_seen *seen = ctx;
    FUZZ_CHECK(op->type == WRITE_PUT || op->type == WRITE_DELETE);
    /* Keys and values point into the payload, within its bounds. */
    const uint8_t *end = seen->payload + seen->payload_length;
    FUZZ_CHECK(op->key >= seen->payload && op->klen <= (size_t)(end - op->key));
    if (op->type == WRITE_PUT)
        FUZZ_CHECK(op->value >= seen->payload && op->vlen <= (size_t)(end - op->value));
    if (seen->count == seen->capacity) {
        size_t capacity = seen->capacity ? seen->capacity * 2 : 16;
        struct log_op *ops = realloc(seen->ops, capacity * sizeof(*ops));
        FUZZ_CHECK(ops != NULL);
        seen->ops = ops;
        seen->capacity = capacity;
    }
    seen->ops[seen->count++] = *op;
    return 0;
}

static int log_decode_all(uint8_t type, const uint8_t *payload, size_t length,
                          struct log_seen *seen)
{
    memset(seen, 0, sizeof(*seen));
    seen->payload = payload;
    seen->payload_length = length;
    return log_decode(type, payload, length, log_collect, seen);
}

static bool log_same_op(const struct log_op *a, const struct log_op *b)
{
    if (a->type != b->type || a->ns_id != b->ns_id || a->klen != b->klen)
        return false;
    if (memcmp(a->key, b->key, a->klen) != 0)
        return false;
    if (a->type == WRITE_DELETE)
        return true;
    return a->vlen == b->vlen && memcmp(a->value, b->value, a->vlen) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t type = data[0];
    /* A copy of exactly the payload's length, so that a read past it is an ASan error. */
    size_t length = size - 1;
    uint8_t *payload = malloc(length ? length : 1);
    FUZZ_CHECK(payload != NULL);
    memcpy(payload, data + 1, length);

    struct log_seen first;
    int result = log_decode_all(type, payload, length, &first);
    FUZZ_CHECK(result == 0 || result == SHOAL_ECORRUPT);
    if (result == SHOAL_ECORRUPT)
        FUZZ_CHECK(first.count == 0); /* checked whole before anything is reported */

    if (result == 0 && first.count > 0) {
        struct namespace *spaces = calloc(first.count, sizeof(*spaces));
        struct write_op *ops = calloc(first.count, sizeof(*ops));
        FUZZ_CHECK(spaces != NULL && ops != NULL);
        for (size_t i = 0; i < first.count; i++) {
            const struct log_op *op = &first.ops[i];
            spaces[i].id = op->ns_id;
            ops[i] = (struct write_op){.type = op->type,
                                       .ns = &spaces[i],
                                       .key = op->key,
                                       .klen = op->klen,
                                       .value = op->value,
                                       .vlen = op->vlen};
        }
        uint8_t again_type;
        size_t again_length = log_encoded_size(ops, first.count, &again_type);
        uint8_t *again = malloc(again_length);
        FUZZ_CHECK(again != NULL);
        log_encode(ops, first.count, again);
        if (again_type == type)
            FUZZ_CHECK(again_length == length && memcmp(again, payload, length) == 0);

        struct log_seen second;
        FUZZ_CHECK(log_decode_all(again_type, again, again_length, &second) == 0);
        FUZZ_CHECK(second.count == first.count);
        for (size_t i = 0; i < first.count; i++)
            FUZZ_CHECK(log_same_op(&first.ops[i], &second.ops[i]));
        free(second.ops);
        free(again);
        free(ops);
        free(spaces);
    }
    free(first.ops);
    free(payload);
    return 0;
}
