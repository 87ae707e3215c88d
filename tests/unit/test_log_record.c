/*
 * test_log_record.c -- the core's log record payloads (src/core/log.c): log_encode and
 * log_decode round trips, and malformed payloads.
 *
 * The payload formats are in log.h. What is pinned here:
 *   1. A single put or delete (requires around it do not count) encodes as LOG_PUT or
 *      LOG_DELETE; anything else as LOG_BATCH, with the requires left out.
 *   2. log_encoded_size is exactly the number of bytes log_encode writes (checked with a
 *      guard byte after the buffer).
 *   3. Decoding gives back every operation in order, with namespace ids, keys and values
 *      byte for byte; zero-length values and binary keys survive.
 *   4. Every truncation of a valid payload, every extension by one byte, a bad record
 *      type, a bad operation byte and a zero key length give SHOAL_ECORRUPT, and the
 *      callback is never called for a malformed payload (it is checked whole first).
 *   5. A callback's non-zero result stops the walk and is returned.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "core/log.h"
#include "test_util.h"

/* Namespaces the operations point at: only their id is read by the encoder. */
static struct namespace *ns_a, *ns_b;

static int setup_namespaces(void **state)
{
    (void)state;
    ns_a = calloc(1, sizeof *ns_a);
    ns_b = calloc(1, sizeof *ns_b);
    if (!ns_a || !ns_b)
        return -1;
    ns_a->id = 7;
    ns_b->id = 0xA1B2C3D4u;
    return 0;
}

static int teardown_namespaces(void **state)
{
    (void)state;
    free(ns_a);
    free(ns_b);
    return 0;
}

static struct write_op op_put(struct namespace *ns, const void *key, uint32_t klen,
                              const void *value, uint32_t vlen)
{
    return (struct write_op){.type = WRITE_PUT, .ns = ns, .key = key, .klen = klen,
                             .value = value, .vlen = vlen};
}

static struct write_op op_delete(struct namespace *ns, const void *key, uint32_t klen)
{
    return (struct write_op){.type = WRITE_DELETE, .ns = ns, .key = key, .klen = klen};
}

static struct write_op op_require(struct namespace *ns, const void *key, uint32_t klen,
                                  uint64_t seq)
{
    return (struct write_op){.type = WRITE_REQUIRE, .ns = ns, .key = key, .klen = klen,
                             .required_seq = seq};
}

/* What decoding saw: copies of up to 16 operations. */
struct decoded {
    size_t count;
    int fail_at; /* the callback returns -99 at this operation (-1: never) */
    struct log_op ops[16];
};

static int collect(void *ctx, const struct log_op *op)
{
    struct decoded *d = ctx;
    if ((int)d->count == d->fail_at)
        return -99;
    assert_true(d->count < 16);
    d->ops[d->count++] = *op;
    return 0;
}

static int never_called(void *ctx, const struct log_op *op)
{
    (void)ctx;
    (void)op;
    fail_msg("the callback ran for a malformed payload");
    return 0;
}

/* Encodes ops into a fresh buffer with a guard byte; checks that the size is exact. */
static uint8_t *encode(const struct write_op *ops, size_t n, uint8_t *type, size_t *len)
{
    *len = log_encoded_size(ops, n, type);
    uint8_t *buf = malloc(*len + 1);
    assert_non_null(buf);
    memset(buf, 0xA5, *len + 1);
    log_encode(ops, n, buf);
    assert_int_equal(buf[*len], 0xA5); /* nothing written past the size */
    return buf;
}

/* Decodes and compares with the expected writes (ops without the requires). */
static void expect_round_trip(const struct write_op *ops, size_t n, uint8_t expected_type)
{
    uint8_t type;
    size_t len;
    uint8_t *buf = encode(ops, n, &type, &len);
    assert_int_equal(type, expected_type);
    struct decoded d = {.fail_at = -1};
    assert_ok(log_decode(type, buf, len, collect, &d));
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (ops[i].type == WRITE_REQUIRE)
            continue;
        assert_true(k < d.count);
        const struct log_op *got = &d.ops[k++];
        assert_int_equal(got->type, ops[i].type);
        assert_int_equal(got->ns_id, ops[i].ns->id);
        assert_int_equal(got->klen, ops[i].klen);
        assert_memory_equal(got->key, ops[i].key, ops[i].klen);
        /* The decoded pointers point into the payload. */
        assert_true(got->key >= buf && got->key + got->klen <= buf + len);
        if (ops[i].type == WRITE_PUT) {
            assert_int_equal(got->vlen, ops[i].vlen);
            assert_non_null(got->value);
            if (ops[i].vlen)
                assert_memory_equal(got->value, ops[i].value, ops[i].vlen);
        } else {
            assert_int_equal(got->vlen, 0);
        }
    }
    assert_int_equal(d.count, k);
    free(buf);
}

/* Every proper prefix of the payload, and the payload plus one byte, is corrupt. */
static void expect_truncations_corrupt(const struct write_op *ops, size_t n)
{
    uint8_t type;
    size_t len;
    uint8_t *buf = encode(ops, n, &type, &len);
    for (size_t cut = 0; cut < len; cut++) {
        /* A copy of exactly cut bytes, so that reading past it is an ASan error. */
        uint8_t *part = malloc(cut ? cut : 1);
        assert_non_null(part);
        memcpy(part, buf, cut);
        int r = log_decode(type, part, cut, never_called, NULL);
        if (r != SHOAL_ECORRUPT) {
            print_error("type %u truncated to %zu of %zu bytes: %s\n", type, cut, len,
                        shoal_error_name(r));
            fail();
        }
        free(part);
    }
    uint8_t *longer = malloc(len + 1);
    assert_non_null(longer);
    memcpy(longer, buf, len);
    longer[len] = 0;
    assert_code(log_decode(type, longer, len + 1, never_called, NULL), SHOAL_ECORRUPT);
    free(longer);
    free(buf);
}

static void test_single_put(void **state)
{
    (void)state;
    struct write_op ops[] = {op_put(ns_a, "key", 3, "value", 5)};
    expect_round_trip(ops, 1, LOG_PUT);
    uint8_t type;
    assert_int_equal(log_encoded_size(ops, 1, &type), 12 + 3 + 5);
    expect_truncations_corrupt(ops, 1);
}

static void test_single_put_empty_value_binary_key(void **state)
{
    (void)state;
    static const uint8_t key[] = {0x00, 0xff, 0x00, 0x10};
    struct write_op ops[] = {op_put(ns_b, key, sizeof key, NULL, 0)};
    expect_round_trip(ops, 1, LOG_PUT);
    expect_truncations_corrupt(ops, 1);
}

static void test_single_delete(void **state)
{
    (void)state;
    struct write_op ops[] = {op_delete(ns_b, "gone", 4)};
    expect_round_trip(ops, 1, LOG_DELETE);
    uint8_t type;
    assert_int_equal(log_encoded_size(ops, 1, &type), 8 + 4);
    expect_truncations_corrupt(ops, 1);
}

/* Requires are conditions checked at commit: they are not logged, so a put among
 * requires is still a single-put record. */
static void test_requires_skipped(void **state)
{
    (void)state;
    struct write_op single[] = {
        op_require(ns_a, "r1", 2, 5),
        op_put(ns_a, "k", 1, "v", 1),
        op_require(ns_b, "r2", 2, 0),
    };
    expect_round_trip(single, 3, LOG_PUT);
    uint8_t type;
    assert_int_equal(log_encoded_size(single, 3, &type), 12 + 1 + 1);

    struct write_op batch[] = {
        op_require(ns_a, "r1", 2, 5),
        op_put(ns_a, "k1", 2, "v1", 2),
        op_require(ns_b, "r2", 2, 9),
        op_delete(ns_b, "k2", 2),
        op_put(ns_b, "k3", 2, "", 0),
    };
    expect_round_trip(batch, 5, LOG_BATCH);
    size_t expected = 4 + (1 + 12 + 2 + 2) + (1 + 8 + 2) + (1 + 12 + 2 + 0);
    assert_int_equal(log_encoded_size(batch, 5, &type), expected);
    assert_int_equal(type, LOG_BATCH);
    expect_truncations_corrupt(batch, 5);
}

static void test_batch_round_trip(void **state)
{
    (void)state;
    static uint8_t big_value[70000];
    static uint8_t big_key[SHOAL_MAX_KEY];
    test_fill_pattern(big_value, sizeof big_value, 1);
    test_fill_pattern(big_key, sizeof big_key, 2);
    struct write_op ops[] = {
        op_put(ns_a, "a", 1, "1", 1),
        op_delete(ns_a, "b", 1),
        op_put(ns_b, big_key, sizeof big_key, big_value, sizeof big_value),
        op_put(ns_a, "a", 1, "2", 1), /* the same key twice: both are logged, in order */
        op_delete(ns_b, "\x00\x00", 2),
    };
    expect_round_trip(ops, 5, LOG_BATCH);

    /* Two writes make a batch even when both are deletes. */
    struct write_op two[] = {op_delete(ns_a, "x", 1), op_delete(ns_a, "y", 1)};
    expect_round_trip(two, 2, LOG_BATCH);
    expect_truncations_corrupt(two, 2);
}

/* Damaged fields: an unknown record type, an operation byte that is neither put nor
 * delete, a zero key length, a key longer than the limit, a count larger than the ops. */
static void test_malformed_fields(void **state)
{
    (void)state;
    struct write_op ops[] = {op_put(ns_a, "k1", 2, "v1", 2), op_delete(ns_b, "k2", 2)};
    uint8_t type;
    size_t len;
    uint8_t *buf = encode(ops, 2, &type, &len);
    assert_int_equal(type, LOG_BATCH);

    assert_code(log_decode(0, buf, len, never_called, NULL), SHOAL_ECORRUPT);
    assert_code(log_decode(99, buf, len, never_called, NULL), SHOAL_ECORRUPT);
    assert_code(log_decode(LOG_PUT, buf, len, never_called, NULL), SHOAL_ECORRUPT);

    uint8_t *bad = malloc(len);
    assert_non_null(bad);

    memcpy(bad, buf, len);
    bad[4] = 3; /* the first operation's type byte: WRITE_REQUIRE is never logged */
    assert_code(log_decode(type, bad, len, never_called, NULL), SHOAL_ECORRUPT);

    memcpy(bad, buf, len);
    memset(bad + 4 + 1 + 4, 0, 4); /* the first key length */
    assert_code(log_decode(type, bad, len, never_called, NULL), SHOAL_ECORRUPT);

    memcpy(bad, buf, len);
    bad[0] = 3; /* count 3, but two operations follow */
    assert_code(log_decode(type, bad, len, never_called, NULL), SHOAL_ECORRUPT);

    memcpy(bad, buf, len);
    bad[0] = 1; /* count 1, and a whole operation left over */
    assert_code(log_decode(type, bad, len, never_called, NULL), SHOAL_ECORRUPT);

    memcpy(bad, buf, len);
    bad[0] = 0xff; /* a huge count */
    bad[1] = 0xff;
    bad[2] = 0xff;
    bad[3] = 0xff;
    assert_code(log_decode(type, bad, len, never_called, NULL), SHOAL_ECORRUPT);
    free(bad);
    free(buf);

    /* A single put whose key length is past SHOAL_MAX_KEY, and whose value length runs past
     * the payload, with the lengths otherwise consistent. */
    uint8_t single[12 + 4];
    memset(single, 0, sizeof single);
    uint32_t klen = SHOAL_MAX_KEY + 1;
    memcpy(single + 4, &klen, 4); /* the test machine is little-endian, as the format */
    assert_code(log_decode(LOG_PUT, single, sizeof single, never_called, NULL),
                SHOAL_ECORRUPT);
    klen = 4;
    uint32_t vlen = 1;
    memcpy(single + 4, &klen, 4);
    memcpy(single + 8, &vlen, 4);
    assert_code(log_decode(LOG_PUT, single, sizeof single, never_called, NULL),
                SHOAL_ECORRUPT);
    vlen = 0;
    memcpy(single + 8, &vlen, 4);
    struct decoded d = {.fail_at = -1};
    assert_ok(log_decode(LOG_PUT, single, sizeof single, collect, &d));
    assert_int_equal(d.count, 1);
    assert_int_equal(d.ops[0].klen, 4);
}

/* A callback's error stops the walk at once and comes back to the caller. */
static void test_callback_error_stops(void **state)
{
    (void)state;
    struct write_op ops[] = {op_put(ns_a, "1", 1, "a", 1), op_put(ns_a, "2", 1, "b", 1),
                             op_put(ns_a, "3", 1, "c", 1)};
    uint8_t type;
    size_t len;
    uint8_t *buf = encode(ops, 3, &type, &len);
    struct decoded d = {.fail_at = 1};
    assert_int_equal(log_decode(type, buf, len, collect, &d), -99);
    assert_int_equal(d.count, 1);
    assert_memory_equal(d.ops[0].key, "1", 1);
    struct decoded first = {.fail_at = 0};
    assert_int_equal(log_decode(type, buf, len, collect, &first), -99);
    assert_int_equal(first.count, 0);
    free(buf);
}

/* Random batches round-trip, and random single-byte damage never makes decoding read
 * outside the payload (ASan) nor call back for a payload it then calls corrupt. */
static void test_random_batches(void **state)
{
    (void)state;
    struct test_rng r;
    test_rng_init(&r, test_seed(0x10C));
    static uint8_t keys[16][40], values[16][300];
    int rounds = SHOAL_TEST_SCALE(2000, 300);
    for (int round = 0; round < rounds; round++) {
        struct write_op ops[16];
        size_t n = 1 + test_rng_below(&r, 16);
        for (size_t i = 0; i < n; i++) {
            uint32_t klen = 1 + (uint32_t)test_rng_below(&r, sizeof keys[i]);
            uint32_t vlen = (uint32_t)test_rng_below(&r, sizeof values[i]);
            test_rng_fill(&r, keys[i], klen);
            test_rng_fill(&r, values[i], vlen);
            struct namespace *ns = test_rng_percent(&r, 50) ? ns_a : ns_b;
            unsigned kind = (unsigned)test_rng_below(&r, 3);
            if (kind == 0)
                ops[i] = op_put(ns, keys[i], klen, values[i], vlen);
            else if (kind == 1)
                ops[i] = op_delete(ns, keys[i], klen);
            else
                ops[i] = op_require(ns, keys[i], klen, test_rng_next(&r));
        }
        /* One write (among any requires) is a single record, anything else a batch. */
        size_t writes = 0;
        uint8_t expected = LOG_BATCH;
        for (size_t i = 0; i < n; i++) {
            if (ops[i].type != WRITE_REQUIRE) {
                writes++;
                expected = ops[i].type == WRITE_PUT ? LOG_PUT : LOG_DELETE;
            }
        }
        if (writes != 1)
            expected = LOG_BATCH;
        expect_round_trip(ops, n, expected);
        uint8_t type;
        size_t len;
        uint8_t *buf = encode(ops, n, &type, &len);
        if (len > 0) {
            size_t at = test_rng_below(&r, len);
            buf[at] ^= (uint8_t)(1 + test_rng_below(&r, 255));
            struct decoded d = {.fail_at = -1};
            int result = log_decode(type, buf, len, collect, &d);
            if (result != 0) {
                assert_int_equal(result, SHOAL_ECORRUPT);
                assert_int_equal(d.count, 0);
            }
        }
        free(buf);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single_put),
        cmocka_unit_test(test_single_put_empty_value_binary_key),
        cmocka_unit_test(test_single_delete),
        cmocka_unit_test(test_requires_skipped),
        cmocka_unit_test(test_batch_round_trip),
        cmocka_unit_test(test_malformed_fields),
        cmocka_unit_test(test_callback_error_stops),
        cmocka_unit_test(test_random_batches),
    };
    return cmocka_run_group_tests(tests, setup_namespaces, teardown_namespaces);
}
