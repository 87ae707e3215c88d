/*
 * test_kv.c -- point operations of the key-value API (include/shoal.h): put, get,
 * get_into, get_with, delete, exists and key_seq; key and value limits; namespaces
 * (pinned and spread, list, info, drop); several shard counts; two databases in one
 * process; the statistics counters.
 *
 * Each behaviour is checked for 1, 2 and 64 shards and for both placements where the
 * placement could matter (routing, counts). The limit tests pass a pointer to a small
 * buffer with a huge length: the engine must refuse it before reading (ASan turns a read
 * into a failure). Memory figures are compared only in directions (goes down after a drop),
 * never against exact byte counts, which belong to the allocator's own tests.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"

static const uint64_t shard_counts[] = {1, 2, 64};
#define SHARD_COUNTS (sizeof shard_counts / sizeof shard_counts[0])
static const shoal_placement placements[] = {SHOAL_PLACE_PINNED, SHOAL_PLACE_SPREAD};

/* ---- get_with callbacks ---------------------------------------------------------------- */

struct seen_value {
    int calls;
    size_t len;
    uint8_t bytes[64];
    int result; /* what the callback returns */
};

static int remember_value(void *ctx, const void *value, size_t vlen)
{
    struct seen_value *s = ctx;
    s->calls++;
    s->len = vlen;
    assert_true(vlen <= sizeof s->bytes);
    if (vlen)
        memcpy(s->bytes, value, vlen);
    return s->result;
}

/* ---- tests ------------------------------------------------------------------------------- */

/* The basic life of a key, for every shard count and placement. */
static void test_point_operations(void **state)
{
    (void)state;
    for (size_t si = 0; si < SHARD_COUNTS; si++) {
        for (int pi = 0; pi < 2; pi++) {
            shoal_db *db = test_open(shard_counts[si], 0);
            shoal_ns *ns = test_ns(db, "points", placements[pi], 0);

            test_expect_absent_str(ns, NULL, "alpha");
            test_put(ns, "alpha", "one");
            uint64_t put_seq = shoal_last_seq(db);
            assert_true(put_seq > 0);
            test_expect_str(ns, NULL, "alpha", "one");
            assert_int_equal(shoal_exists(ns, NULL, "alpha", 5), 1);
            uint64_t seq = 0;
            assert_ok(shoal_key_seq(ns, NULL, "alpha", 5, &seq));
            assert_int_equal(seq, put_seq);

            /* get_into: exact fit, too small (ERANGE with the length, buffer untouched),
             * no buffer at all. */
            char buf[8];
            size_t vlen = 0;
            assert_ok(shoal_get_into(ns, NULL, "alpha", 5, buf, 3, &vlen));
            assert_int_equal(vlen, 3);
            assert_memory_equal(buf, "one", 3);
            memset(buf, 'x', sizeof buf);
            vlen = 0;
            assert_code(shoal_get_into(ns, NULL, "alpha", 5, buf, 2, &vlen), SHOAL_ERANGE);
            assert_int_equal(vlen, 3);
            assert_memory_equal(buf, "xxxxxxxx", 8);
            vlen = 0;
            assert_code(shoal_get_into(ns, NULL, "alpha", 5, NULL, 0, &vlen), SHOAL_ERANGE);
            assert_int_equal(vlen, 3);
            assert_code(shoal_get_into(ns, NULL, "missing", 7, buf, sizeof buf, &vlen),
                        SHOAL_ENOTFOUND);

            /* get_with: the callback sees the bytes; its negative result comes back, a
             * positive one is success. */
            struct seen_value seen = {0};
            assert_ok(shoal_get_with(ns, NULL, "alpha", 5, remember_value, &seen));
            assert_int_equal(seen.calls, 1);
            assert_int_equal(seen.len, 3);
            assert_memory_equal(seen.bytes, "one", 3);
            seen.result = -1234;
            assert_int_equal(shoal_get_with(ns, NULL, "alpha", 5, remember_value, &seen),
                             -1234);
            seen.result = 7;
            assert_ok(shoal_get_with(ns, NULL, "alpha", 5, remember_value, &seen));
            seen.calls = 0;
            assert_code(shoal_get_with(ns, NULL, "nothing", 7, remember_value, &seen),
                        SHOAL_ENOTFOUND);
            assert_int_equal(seen.calls, 0);

            /* Overwrite: a new value and a later seq. */
            test_put(ns, "alpha", "a longer second value");
            test_expect_str(ns, NULL, "alpha", "a longer second value");
            uint64_t seq2 = 0;
            assert_ok(shoal_key_seq(ns, NULL, "alpha", 5, &seq2));
            assert_true(seq2 > seq);
            assert_int_equal(seq2, shoal_last_seq(db));

            /* Delete: gone; a second delete is ENOTFOUND. */
            assert_ok(shoal_delete(ns, "alpha", 5, NULL));
            uint64_t delete_seq = shoal_last_seq(db);
            test_expect_absent_str(ns, NULL, "alpha");
            uint64_t seq3 = 99;
            assert_ok(shoal_key_seq(ns, NULL, "alpha", 5, &seq3));
            /* The delete is the latest write, or the key is forgotten entirely. */
            assert_true(seq3 == delete_seq || seq3 == 0);
            assert_code(shoal_delete(ns, "alpha", 5, NULL), SHOAL_ENOTFOUND);
            assert_code(shoal_delete(ns, "never", 5, NULL), SHOAL_ENOTFOUND);

            /* A key that was never written has no seq. */
            assert_ok(shoal_key_seq(ns, NULL, "never", 5, &seq3));
            assert_int_equal(seq3, 0);

            shoal_ns_close(ns);
            assert_ok(shoal_close(db));
        }
    }
}

/* A delete of an absent key returns SHOAL_ENOTFOUND and changes nothing (shoal.h) --
 * including the latest seq, which names the latest committed write. */
static void test_delete_absent_changes_nothing(void **state)
{
    (void)state;
    shoal_db *db = test_open(4, 0);
    shoal_ns *ns = test_ns(db, "d", SHOAL_PLACE_PINNED, 0);
    test_put(ns, "present", "v");
    uint64_t before = shoal_last_seq(db);
    shoal_db_stats st;
    assert_ok(shoal_stats(db, &st));
    int result = shoal_delete(ns, "absent", 6, NULL);
    uint64_t after_seq = shoal_last_seq(db);
    shoal_db_stats after;
    assert_ok(shoal_stats(db, &after));
    shoal_ns_close(ns);
    shoal_close(db);
    /* Checked after closing, so that a failure leaks nothing. */
    assert_code(result, SHOAL_ENOTFOUND);
    assert_int_equal(after.keys, st.keys);
    assert_int_equal(after_seq, before);
    assert_int_equal(after.seq, st.seq);
}

/* Zero-length values exist, read back as a non-NULL pointer and length 0. */
static void test_zero_length_values(void **state)
{
    (void)state;
    for (int pi = 0; pi < 2; pi++) {
        shoal_db *db = test_open(8, 0);
        shoal_ns *ns = test_ns(db, "empty", placements[pi], 0);
        assert_ok(shoal_put(ns, "k1", 2, NULL, 0, NULL));
        assert_ok(shoal_put(ns, "k2", 2, "ignored", 0, NULL));
        for (int k = 1; k <= 2; k++) {
            char key[3] = {'k', (char)('0' + k), 0};
            void *value = NULL;
            size_t vlen = 99;
            assert_ok(shoal_get(ns, NULL, key, 2, &value, &vlen));
            assert_non_null(value);
            assert_int_equal(vlen, 0);
            shoal_free(value);
            assert_int_equal(shoal_exists(ns, NULL, key, 2), 1);
            char buf[4];
            vlen = 99;
            assert_ok(shoal_get_into(ns, NULL, key, 2, buf, sizeof buf, &vlen));
            assert_int_equal(vlen, 0);
            struct seen_value seen = {.len = 99};
            assert_ok(shoal_get_with(ns, NULL, key, 2, remember_value, &seen));
            assert_int_equal(seen.calls, 1);
            assert_int_equal(seen.len, 0);
        }
        uint64_t keys, bytes;
        test_ns_counts(ns, &keys, &bytes);
        assert_int_equal(keys, 2);
        assert_int_equal(bytes, 4); /* key bytes only */
        assert_int_equal(test_count_keys(ns, NULL), 2);
        shoal_ns_close(ns);
        shoal_close(db);
    }
}

/* SHOAL_OPT_MEMORY_LIMIT: puts past the limit fail with SHOAL_EMEMLIMIT and store nothing;
 * deletes always work, even at the limit with a snapshot open (which makes them allocate
 * tombstones); what they free makes room for new puts. */
static void test_memory_limit(void **state)
{
    (void)state;
    shoal_options *opts = NULL;
    assert_ok(shoal_options_new(&opts));
    assert_ok(shoal_options_set(opts, SHOAL_OPT_SHARDS, 2));
    assert_ok(shoal_options_set(opts, SHOAL_OPT_MEMORY_LIMIT, 2u << 20));
    shoal_db *db = NULL;
    assert_ok(shoal_open(NULL, opts, &db));
    shoal_options_free(opts);
    shoal_ns *ns = test_ns(db, "bounded", SHOAL_PLACE_SPREAD, 0);
    uint8_t value[1000];
    test_fill_pattern(value, sizeof value, 6);
    char key[32];
    int stored = 0, r = 0;
    for (; stored < 100000; stored++) {
        snprintf(key, sizeof key, "k%06d", stored);
        r = shoal_put(ns, key, strlen(key), value, sizeof value, NULL);
        if (r != 0)
            break;
    }
    assert_code(r, SHOAL_EMEMLIMIT);
    assert_true(stored > 500 && stored < 2100); /* about 2 MiB of 1 KiB values */
    uint64_t seq = shoal_last_seq(db);
    test_expect_absent_str(ns, NULL, key);
    assert_int_equal(shoal_last_seq(db), seq);
    uint64_t keys, bytes;
    test_ns_counts(ns, &keys, &bytes);
    assert_int_equal(keys, (uint64_t)stored);
    /* A batch that would grow the data is refused whole. */
    shoal_batch *b = NULL;
    assert_ok(shoal_batch_new(db, &b));
    assert_ok(shoal_batch_delete(b, ns, "k000000", 7));
    assert_ok(shoal_batch_put(b, ns, "extra", 5, value, sizeof value));
    assert_code(shoal_batch_commit(b, NULL, NULL), SHOAL_EMEMLIMIT);
    test_expect(ns, NULL, "k000000", 7, value, sizeof value);
    shoal_batch_free(b);
    /* Deletes work at the limit, with a snapshot open too. */
    shoal_snapshot *snap = NULL;
    assert_ok(shoal_snapshot_take(db, &snap));
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof key, "k%06d", i);
        assert_ok(shoal_delete(ns, key, strlen(key), NULL));
    }
    test_expect(ns, snap, "k000000", 7, value, sizeof value);
    shoal_snapshot_release(snap);
    /* With the snapshot gone, what the deletes removed is garbage: the memory it holds must
     * not keep refusing puts (checked after closing, so that a failure leaks nothing). */
    int first = 0, refused = 0;
    for (int i = 0; i < 50; i++) {
        snprintf(key, sizeof key, "new%03d", i);
        r = shoal_put(ns, key, strlen(key), value, sizeof value, NULL);
        if (i == 0)
            first = r;
        refused += r != 0;
    }
    shoal_ns_close(ns);
    shoal_close(db);
    assert_code(first, 0);
    assert_int_equal(refused, 0);
}

/* shoal_set_memory_limit on an open database: a limit below what is stored refuses puts
 * and keeps every key; deletes still work; raising or removing the limit lets puts in. */
static void test_memory_limit_changed_while_open(void **state)
{
    (void)state;
    shoal_db *db = test_open(2, 0);
    shoal_ns *ns = test_ns(db, "changing", SHOAL_PLACE_SPREAD, 0);
    uint8_t value[1000];
    test_fill_pattern(value, sizeof value, 7);
    char key[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof key, "k%04d", i);
        assert_ok(shoal_put(ns, key, strlen(key), value, sizeof value, NULL));
    }
    shoal_db_stats stats;
    assert_ok(shoal_stats(db, &stats));
    assert_ok(shoal_set_memory_limit(db, stats.memory / 2));
    assert_code(shoal_put(ns, "more", 4, value, sizeof value, NULL), SHOAL_EMEMLIMIT);
    test_expect_absent_str(ns, NULL, "more");
    assert_int_equal(test_count_keys(ns, NULL), 1000);
    assert_ok(shoal_delete(ns, "k0000", 5, NULL));
    assert_ok(shoal_set_memory_limit(db, stats.memory * 4));
    assert_ok(shoal_put(ns, "more", 4, value, sizeof value, NULL));
    assert_ok(shoal_set_memory_limit(db, 1)); /* one byte: nothing more fits */
    assert_code(shoal_put(ns, "again", 5, value, sizeof value, NULL), SHOAL_EMEMLIMIT);
    assert_ok(shoal_set_memory_limit(db, 0)); /* none */
    assert_ok(shoal_put(ns, "again", 5, value, sizeof value, NULL));
    assert_int_equal(test_count_keys(ns, NULL), 1001);
    assert_code(shoal_set_memory_limit(NULL, 0), SHOAL_EINVAL);
    shoal_ns_close(ns);
    shoal_close(db);
}

/* Statistics read while writers run: every call succeeds and its figures are within what
 * the writers could have produced. Under TSan this also checks that reading them races
 * with nothing (the statistics are documented as callable from any thread). */
struct stats_writer {
    shoal_ns *ns;
    int index;
    _Atomic bool *stop;
    int errors;
};

static void *stats_writer_main(void *arg)
{
    struct stats_writer *w = arg;
    char key[32];
    for (int i = 0; i < 20000 && !atomic_load(w->stop); i++) {
        snprintf(key, sizeof key, "w%d-%d", w->index, i % 2000);
        if (shoal_put(w->ns, key, strlen(key), "value", 5, NULL) != 0)
            w->errors++;
        if (i % 3 == 0 && shoal_delete(w->ns, key, strlen(key), NULL) != 0)
            w->errors++;
    }
    return NULL;
}

static void test_stats_while_writing(void **state)
{
    (void)state;
    shoal_db *db = test_open(8, 0);
    shoal_ns *spread = test_ns(db, "spread", SHOAL_PLACE_SPREAD, 0);
    shoal_ns *pinned = test_ns(db, "pinned", SHOAL_PLACE_PINNED, 0);
    _Atomic bool stop = false;
    struct stats_writer writers[2] = {{.ns = spread, .index = 0, .stop = &stop},
                                      {.ns = pinned, .index = 1, .stop = &stop}};
    pthread_t ids[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&ids[i], NULL, stats_writer_main, &writers[i]), 0);
    uint64_t last_seq = 0;
    for (int round = 0; round < SHOAL_TEST_SCALE(2000, 300); round++) {
        shoal_db_stats st;
        assert_ok(shoal_stats(db, &st));
        assert_true(st.seq >= last_seq);
        last_seq = st.seq;
        assert_true(st.keys <= 4000);
        shoal_shard_stats ss;
        assert_ok(shoal_stats_shard(db, (uint32_t)round % 8, &ss));
        shoal_tenant_stats ts;
        assert_ok(shoal_stats_tenant(db, 0, &ts));
        assert_true(ts.keys <= 4000);
        shoal_ns_info infos[2];
        size_t count = 0;
        assert_ok(shoal_ns_list(db, UINT32_MAX, infos, 2, &count));
        assert_int_equal(count, 2);
    }
    atomic_store(&stop, true);
    for (int i = 0; i < 2; i++) {
        pthread_join(ids[i], NULL);
        assert_int_equal(writers[i].errors, 0);
    }
    shoal_db_stats st;
    assert_ok(shoal_stats(db, &st));
    assert_int_equal(st.keys, test_count_keys(spread, NULL) + test_count_keys(pinned, NULL));
    shoal_ns_close(spread);
    shoal_ns_close(pinned);
    shoal_close(db);
}

/* shoal_get_into accepts no buffer at all (NULL, capacity 0): a zero-length value fits
 * in it. Run in a child process because a failure here is undefined behaviour (memcpy to
 * NULL) that the sanitizer build turns into an abort. */
static int get_into_without_buffer(void *ctx)
{
    shoal_ns *ns = ctx;
    size_t vlen = 99;
    if (shoal_get_into(ns, NULL, "k", 1, NULL, 0, &vlen) != 0 || vlen != 0)
        return 1;
    return 0;
}

static void test_get_into_empty_value_without_buffer(void **state)
{
    (void)state;
    shoal_db *db = test_open(1, 0);
    shoal_ns *ns = test_ns(db, "empty", SHOAL_PLACE_PINNED, 0);
    assert_ok(shoal_put(ns, "k", 1, NULL, 0, NULL));
    int child = test_in_child(get_into_without_buffer, ns);
    shoal_ns_close(ns);
    shoal_close(db);
    assert_int_equal(child, 0);
}

/* Asking shoal_ns_list only for the count (no array, cap 0), as its contract suggests,
 * and listing an empty catalog. In a child for the same reason as above. */
static int list_count_only(void *ctx)
{
    shoal_db *db = ctx;
    size_t count = 99;
    if (shoal_ns_list(db, UINT32_MAX, NULL, 0, &count) != 0 || count != 2)
        return 1;
    shoal_ns_info info;
    if (shoal_ns_list(db, 12345, &info, 1, &count) != 0 || count != 0)
        return 2;
    return 0;
}

static void test_ns_list_count_only(void **state)
{
    (void)state;
    shoal_db *db = test_open(2, 0);
    shoal_ns *a = test_ns(db, "a", SHOAL_PLACE_PINNED, 0);
    shoal_ns *b = test_ns(db, "b", SHOAL_PLACE_SPREAD, 0);
    int child = test_in_child(list_count_only, db);
    shoal_ns_close(a);
    shoal_ns_close(b);
    shoal_close(db);
    assert_int_equal(child, 0);
}

/* Keys are byte strings: embedded NULs, 0xff bytes and prefixes of each other are all
 * distinct keys. */
static void test_binary_keys(void **state)
{
    (void)state;
    static const struct {
        const char *key;
        size_t len;
    } keys[] = {
        {"a", 1}, {"a\0", 2}, {"a\0b", 3}, {"a\0c", 3}, {"\0", 1}, {"\0\0", 2},
        {"\xff", 1}, {"\xff\xff", 2}, {"a\xff", 2}, {"ab", 2},
    };
    size_t n = sizeof keys / sizeof keys[0];
    for (size_t si = 0; si < SHARD_COUNTS; si++) {
        for (int pi = 0; pi < 2; pi++) {
            shoal_db *db = test_open(shard_counts[si], 0);
            shoal_ns *ns = test_ns(db, "binary", placements[pi], 0);
            for (size_t i = 0; i < n; i++) {
                char value[32];
                snprintf(value, sizeof value, "v%zu", i);
                assert_ok(shoal_put(ns, keys[i].key, keys[i].len, value, strlen(value), NULL));
            }
            for (size_t i = 0; i < n; i++) {
                char value[32];
                snprintf(value, sizeof value, "v%zu", i);
                test_expect(ns, NULL, keys[i].key, keys[i].len, value, strlen(value));
            }
            uint64_t count, bytes;
            test_ns_counts(ns, &count, &bytes);
            assert_int_equal(count, n);
            /* Deleting "a\0" leaves "a" and "a\0b" alone. */
            assert_ok(shoal_delete(ns, "a\0", 2, NULL));
            test_expect_absent(ns, NULL, "a\0", 2);
            test_expect(ns, NULL, "a", 1, "v0", 2);
            test_expect(ns, NULL, "a\0b", 3, "v2", 2);
            assert_int_equal(test_count_keys(ns, NULL), n - 1);
            shoal_ns_close(ns);
            shoal_close(db);
        }
    }
}

/* A key of SHOAL_MAX_KEY bytes works everywhere; one byte more is SHOAL_ETOOBIG
 * everywhere and stores nothing; the empty key is SHOAL_EINVAL. */
static void test_key_limits(void **state)
{
    (void)state;
    size_t max = SHOAL_MAX_KEY;
    uint8_t *key = malloc(max + 1);
    assert_non_null(key);
    test_fill_pattern(key, max + 1, 64);
    for (int pi = 0; pi < 2; pi++) {
        shoal_db *db = test_open(4, 0);
        shoal_ns *ns = test_ns(db, "limits", placements[pi], 0);
        assert_ok(shoal_put(ns, key, max, "big key", 7, NULL));
        test_expect(ns, NULL, key, max, "big key", 7);
        assert_int_equal(shoal_exists(ns, NULL, key, max), 1);
        shoal_iter *it = NULL;
        assert_ok(shoal_iter_new(ns, NULL, &it));
        assert_int_equal(shoal_iter_next(it), 1);
        size_t klen = 0;
        const void *k = shoal_iter_key(it, &klen);
        assert_int_equal(klen, max);
        assert_memory_equal(k, key, max);
        assert_int_equal(shoal_iter_next(it), 0);
        shoal_iter_free(it);

        uint64_t seq_before = shoal_last_seq(db);
        void *value;
        size_t vlen;
        uint64_t seq;
        assert_code(shoal_put(ns, key, max + 1, "x", 1, NULL), SHOAL_ETOOBIG);
        assert_code(shoal_get(ns, NULL, key, max + 1, &value, &vlen), SHOAL_ETOOBIG);
        assert_code(shoal_delete(ns, key, max + 1, NULL), SHOAL_ETOOBIG);
        assert_code(shoal_exists(ns, NULL, key, max + 1), SHOAL_ETOOBIG);
        assert_code(shoal_key_seq(ns, NULL, key, max + 1, &seq), SHOAL_ETOOBIG);
        assert_code(shoal_put(ns, key, 0, "x", 1, NULL), SHOAL_EINVAL);
        assert_code(shoal_put(ns, "", 0, "x", 1, NULL), SHOAL_EINVAL);
        assert_int_equal(shoal_last_seq(db), seq_before);
        uint64_t keys, bytes;
        test_ns_counts(ns, &keys, &bytes);
        assert_int_equal(keys, 1);
        assert_int_equal(bytes, max + 7);

        assert_ok(shoal_delete(ns, key, max, NULL));
        test_expect_absent(ns, NULL, key, max);
        shoal_ns_close(ns);
        shoal_close(db);
    }
    free(key);
}

/* A value one byte over SHOAL_MAX_VALUE is refused from its length alone: the pointer
 * given is a 16-byte buffer, so reading it would be an ASan error, and allocating it
 * would show in the statistics. */
static void test_value_limit_not_read(void **state)
{
    (void)state;
    uint8_t small[16] = {0};
    shoal_db *db = test_open(2, 0);
    shoal_ns *ns = test_ns(db, "huge", SHOAL_PLACE_SPREAD, 0);
    test_put(ns, "k", "before");
    shoal_db_stats before;
    assert_ok(shoal_stats(db, &before));
    assert_code(shoal_put(ns, "k", 1, small, (size_t)SHOAL_MAX_VALUE + 1, NULL), SHOAL_ETOOBIG);
    assert_code(shoal_put(ns, "k", 1, small, SIZE_MAX, NULL), SHOAL_ETOOBIG);
    assert_code(shoal_put(ns, "k", 1, small, (size_t)1 << 40, NULL), SHOAL_ETOOBIG);
    shoal_batch *b = NULL;
    assert_ok(shoal_batch_new(db, &b));
    assert_code(shoal_batch_put(b, ns, "k", 1, small, (size_t)SHOAL_MAX_VALUE + 1),
                SHOAL_ETOOBIG);
    assert_int_equal(shoal_batch_count(b), 0);
    shoal_batch_free(b);
    shoal_db_stats after;
    assert_ok(shoal_stats(db, &after));
    assert_int_equal(after.seq, before.seq);
    assert_int_equal(after.keys, before.keys);
    assert_int_equal(after.bytes, before.bytes);
    assert_int_equal(after.memory, before.memory);
    test_expect_str(ns, NULL, "k", "before");
    shoal_ns_close(ns);
    shoal_close(db);
}

/* A value of a few MiB round-trips through every read path, is replaced by a smaller
 * one, and its bytes are counted. */
static void test_large_value_round_trip(void **state)
{
    (void)state;
    size_t len = 4u << 20;
    uint8_t *value = malloc(len);
    uint8_t *copy = malloc(len);
    assert_non_null(value);
    assert_non_null(copy);
    test_fill_pattern(value, len, 4);
    for (int pi = 0; pi < 2; pi++) {
        shoal_db *db = test_open(4, 0);
        shoal_ns *ns = test_ns(db, "large", placements[pi], 0);
        assert_ok(shoal_put(ns, "big", 3, value, len, NULL));
        test_expect(ns, NULL, "big", 3, value, len);
        size_t vlen = 0;
        assert_ok(shoal_get_into(ns, NULL, "big", 3, copy, len, &vlen));
        assert_int_equal(vlen, len);
        assert_memory_equal(copy, value, len);
        assert_code(shoal_get_into(ns, NULL, "big", 3, copy, len - 1, &vlen), SHOAL_ERANGE);
        assert_int_equal(vlen, len);
        uint64_t keys, bytes;
        test_ns_counts(ns, &keys, &bytes);
        assert_int_equal(bytes, 3 + len);
        shoal_db_stats st;
        assert_ok(shoal_stats(db, &st));
        assert_true(st.memory >= len);

        /* Replace it with 3 MiB of different bytes. */
        test_fill_pattern(value, len, 5);
        assert_ok(shoal_put(ns, "big", 3, value, 3u << 20, NULL));
        test_expect(ns, NULL, "big", 3, value, 3u << 20);
        test_ns_counts(ns, &keys, &bytes);
        assert_int_equal(bytes, 3 + (3u << 20));
        assert_ok(shoal_delete(ns, "big", 3, NULL));
        test_ns_counts(ns, &keys, &bytes);
        assert_int_equal(keys, 0);
        assert_int_equal(bytes, 0);
        shoal_ns_close(ns);
        shoal_close(db);
        test_fill_pattern(value, len, 4);
    }
    free(value);
    free(copy);
}

/* The same key in different namespaces (pinned and spread, several of each) holds
 * different values; deletes and drops in one never touch another. */
static void test_namespaces_independent(void **state)
{
    (void)state;
    for (size_t si = 0; si < SHARD_COUNTS; si++) {
        shoal_db *db = test_open(shard_counts[si], 0);
        shoal_ns *ns[6];
        char name[32];
        for (int i = 0; i < 6; i++) {
            snprintf(name, sizeof name, "ns%d", i);
            ns[i] = test_ns(db, name, placements[i % 2], 0);
        }
        for (int k = 0; k < 200; k++) {
            char key[32], value[32];
            snprintf(key, sizeof key, "key%03d", k);
            for (int i = 0; i < 6; i++) {
                snprintf(value, sizeof value, "ns%d-key%03d", i, k);
                test_put(ns[i], key, value);
            }
        }
        for (int k = 0; k < 200; k += 2) {
            char key[32];
            snprintf(key, sizeof key, "key%03d", k);
            assert_ok(shoal_delete(ns[3], key, strlen(key), NULL));
        }
        assert_ok(shoal_ns_drop(db, "ns4"));
        for (int k = 0; k < 200; k++) {
            char key[32], value[32];
            snprintf(key, sizeof key, "key%03d", k);
            for (int i = 0; i < 6; i++) {
                if (i == 4)
                    continue;
                if (i == 3 && k % 2 == 0) {
                    test_expect_absent_str(ns[i], NULL, key);
                    continue;
                }
                snprintf(value, sizeof value, "ns%d-key%03d", i, k);
                test_expect_str(ns[i], NULL, key, value);
            }
        }
        for (int i = 0; i < 6; i++) {
            if (i == 4)
                continue;
            uint64_t keys, bytes;
            test_ns_counts(ns[i], &keys, &bytes);
            assert_int_equal(keys, i == 3 ? 100 : 200);
            assert_int_equal(test_count_keys(ns[i], NULL), keys);
        }
        for (int i = 0; i < 6; i++)
            shoal_ns_close(ns[i]);
        shoal_close(db);
    }
}

/* Opening: without a config the namespace must exist; with one it is created or must
 * match in kind and tenant. The list is sorted by name, counts every entry even past cap,
 * and filters by tenant. Info counts live keys and key + value bytes. */
static void test_namespace_catalog(void **state)
{
    (void)state;
    shoal_db *db = test_open(4, 0);
    shoal_ns *missing = (shoal_ns *)1;
    assert_code(shoal_ns_open(db, "zeta", NULL, &missing), SHOAL_ENOTFOUND);
    assert_null(missing);
    uint32_t tenant;
    assert_ok(shoal_tenant_create(db, "acme", NULL, &tenant));
    assert_true(tenant != 0);

    const char *names[] = {"zeta", "alpha", "mid", "beta", "omega"};
    shoal_ns *ns[5];
    for (int i = 0; i < 5; i++)
        ns[i] = test_ns(db, names[i], placements[i % 2], i == 4 ? tenant : 0);

    shoal_ns *again = NULL;
    assert_ok(shoal_ns_open(db, "zeta", NULL, &again));
    test_put(again, "k", "through the second handle");
    test_expect_str(ns[0], NULL, "k", "through the second handle");
    shoal_ns_close(again);
    shoal_ns_config other_tenant = {.kind = SHOAL_KIND_KV, .tenant = tenant};
    assert_code(shoal_ns_open(db, "zeta", &other_tenant, &again), SHOAL_EEXIST);
    shoal_ns_config same = {.kind = SHOAL_KIND_KV, .tenant = 0};
    assert_ok(shoal_ns_open(db, "zeta", &same, &again));
    shoal_ns_close(again);

    size_t count = 0;
    shoal_ns_info infos[8];
    memset(infos, 0, sizeof infos);
    assert_ok(shoal_ns_list(db, UINT32_MAX, infos, 2, &count));
    assert_int_equal(count, 5);
    assert_string_equal(infos[0].name, "alpha");
    assert_string_equal(infos[1].name, "beta");
    assert_string_equal(infos[2].name, ""); /* beyond cap: untouched */
    assert_ok(shoal_ns_list(db, UINT32_MAX, infos, 8, &count));
    const char *sorted[] = {"alpha", "beta", "mid", "omega", "zeta"};
    for (int i = 0; i < 5; i++)
        assert_string_equal(infos[i].name, sorted[i]);
    assert_ok(shoal_ns_list(db, tenant, infos, 8, &count));
    assert_int_equal(count, 1);
    assert_string_equal(infos[0].name, "omega");
    assert_int_equal(infos[0].tenant, tenant);
    assert_ok(shoal_ns_list(db, 0, infos, 8, &count));
    assert_int_equal(count, 4);

    /* Counts: puts, overwrites (bytes change, keys do not), deletes. */
    for (int k = 0; k < 50; k++) {
        char key[32];
        snprintf(key, sizeof key, "k%02d", k); /* 3 bytes */
        assert_ok(shoal_put(ns[1], key, 3, "0123456789", 10, NULL));
    }
    shoal_ns_info info;
    assert_ok(shoal_ns_info_get(ns[1], &info));
    assert_string_equal(info.name, "alpha");
    assert_int_equal(info.kind, SHOAL_KIND_KV);
    assert_int_equal(info.placement, SHOAL_PLACE_SPREAD);
    assert_int_equal(info.shard, 0);
    assert_int_equal(info.keys, 50);
    assert_int_equal(info.bytes, 50 * 13);
    for (int k = 0; k < 10; k++) {
        char key[32];
        snprintf(key, sizeof key, "k%02d", k);
        assert_ok(shoal_put(ns[1], key, 3, "01234", 5, NULL));
    }
    for (int k = 40; k < 50; k++) {
        char key[32];
        snprintf(key, sizeof key, "k%02d", k);
        assert_ok(shoal_delete(ns[1], key, 3, NULL));
    }
    assert_ok(shoal_ns_info_get(ns[1], &info));
    assert_int_equal(info.keys, 40);
    assert_int_equal(info.bytes, 10 * 8 + 30 * 13);
    assert_ok(shoal_ns_list(db, UINT32_MAX, infos, 8, &count));
    assert_int_equal(infos[0].keys, 40);
    assert_int_equal(infos[0].bytes, 10 * 8 + 30 * 13);
    assert_int_equal(infos[0].id, info.id);

    /* Pinned namespaces report their shard; ids are distinct. */
    for (int i = 0; i < 5; i++) {
        assert_ok(shoal_ns_info_get(ns[i], &info));
        if (info.placement == SHOAL_PLACE_PINNED)
            assert_true(info.shard < 4);
        for (int j = 0; j < i; j++) {
            shoal_ns_info other;
            assert_ok(shoal_ns_info_get(ns[j], &other));
            assert_true(other.id != info.id);
        }
    }
    for (int i = 0; i < 5; i++)
        shoal_ns_close(ns[i]);
    shoal_close(db);
}

/* Pinned namespaces get shards of their own while shards remain (db.c D3), so that
 * writers in different pinned namespaces never share a lock. */
static void test_pinned_spread_over_shards(void **state)
{
    (void)state;
    shoal_db *db = test_open(8, 0);
    shoal_ns *ns[8];
    bool used[8] = {false};
    for (int i = 0; i < 8; i++) {
        char name[32];
        snprintf(name, sizeof name, "p%d", i);
        ns[i] = test_ns(db, name, SHOAL_PLACE_PINNED, 0);
        shoal_ns_info info;
        assert_ok(shoal_ns_info_get(ns[i], &info));
        assert_true(info.shard < 8);
        assert_false(used[info.shard]);
        used[info.shard] = true;
    }
    for (int i = 0; i < 8; i++)
        shoal_ns_close(ns[i]);
    shoal_close(db);
}

/* Dropping frees: the keys leave the counts, memory goes down, the shard's objects are
 * released; open handles fail with SHOAL_EDROPPED; the name opens again as a new, empty
 * namespace. */
static void test_drop_frees_and_reopens_empty(void **state)
{
    (void)state;
    for (size_t si = 0; si < SHARD_COUNTS; si++) {
        for (int pi = 0; pi < 2; pi++) {
            shoal_db *db = test_open(shard_counts[si], 0);
            shoal_ns *keep = test_ns(db, "keep", placements[1 - pi], 0);
            test_put(keep, "stays", "here");
            shoal_ns *ns = test_ns(db, "doomed", placements[pi], 0);
            uint8_t value[200];
            test_fill_pattern(value, sizeof value, 9);
            shoal_db_stats empty;
            assert_ok(shoal_stats(db, &empty));
            for (int k = 0; k < 2000; k++) {
                char key[32];
                snprintf(key, sizeof key, "key%05d", k);
                assert_ok(shoal_put(ns, key, strlen(key), value, sizeof value, NULL));
            }
            shoal_db_stats full;
            assert_ok(shoal_stats(db, &full));
            assert_int_equal(full.keys, empty.keys + 2000);
            assert_true(full.memory > empty.memory + 2000 * sizeof value);
            assert_int_equal(full.namespaces, 2);

            assert_ok(shoal_ns_drop(db, "doomed"));
            shoal_db_stats dropped;
            assert_ok(shoal_stats(db, &dropped));
            assert_int_equal(dropped.keys, empty.keys);
            assert_int_equal(dropped.bytes, empty.bytes);
            assert_int_equal(dropped.namespaces, 1);
            assert_true(dropped.memory < full.memory - 2000 * sizeof value);
            uint64_t objects = 0;
            for (uint32_t s = 0; s < shard_counts[si]; s++) {
                shoal_shard_stats ss;
                assert_ok(shoal_stats_shard(db, s, &ss));
                objects += ss.objects;
            }
            assert_int_equal(objects, 1); /* "stays" */

            /* The old handle is dead; the survivor is untouched. */
            assert_code(shoal_put(ns, "k", 1, "v", 1, NULL), SHOAL_EDROPPED);
            void *v;
            size_t vlen;
            assert_code(shoal_get(ns, NULL, "key00001", 8, &v, &vlen), SHOAL_EDROPPED);
            shoal_ns_info info;
            assert_code(shoal_ns_info_get(ns, &info), SHOAL_EDROPPED);
            test_expect_str(keep, NULL, "stays", "here");
            assert_code(shoal_ns_drop(db, "doomed"), SHOAL_ENOTFOUND);
            shoal_ns *reopened = (shoal_ns *)1;
            assert_code(shoal_ns_open(db, "doomed", NULL, &reopened), SHOAL_ENOTFOUND);

            reopened = test_ns(db, "doomed", placements[pi], 0);
            test_expect_absent_str(reopened, NULL, "key00001");
            assert_int_equal(test_count_keys(reopened, NULL), 0);
            uint64_t keys, bytes;
            test_ns_counts(reopened, &keys, &bytes);
            assert_int_equal(keys, 0);
            assert_int_equal(bytes, 0);
            test_put(reopened, "key00001", "fresh");
            test_expect_str(reopened, NULL, "key00001", "fresh");
            /* The dropped handle still fails: it names the old namespace, not the name. */
            assert_code(shoal_get(ns, NULL, "key00001", 8, &v, &vlen), SHOAL_EDROPPED);
            shoal_ns_close(ns);
            shoal_ns_close(reopened);
            shoal_ns_close(keep);
            shoal_close(db);
        }
    }
}

/* Two databases in one process share nothing: names, keys, seqs, statistics. */
static void test_two_databases(void **state)
{
    (void)state;
    shoal_db *a = test_open(4, 0);
    shoal_db *b = test_open(16, 0);
    shoal_ns *na = test_ns(a, "same", SHOAL_PLACE_SPREAD, 0);
    shoal_ns *nb = test_ns(b, "same", SHOAL_PLACE_SPREAD, 0);
    for (int k = 0; k < 100; k++) {
        char key[32];
        snprintf(key, sizeof key, "k%d", k);
        test_put(na, key, "from a");
        if (k % 2)
            test_put(nb, key, "from b");
    }
    assert_int_equal(shoal_last_seq(a), 100);
    assert_int_equal(shoal_last_seq(b), 50);
    test_expect_str(na, NULL, "k1", "from a");
    test_expect_str(nb, NULL, "k1", "from b");
    test_expect_absent_str(nb, NULL, "k2");
    shoal_db_stats sa, sb;
    assert_ok(shoal_stats(a, &sa));
    assert_ok(shoal_stats(b, &sb));
    assert_int_equal(sa.keys, 100);
    assert_int_equal(sb.keys, 50);
    assert_int_equal(sa.puts, 100);
    assert_int_equal(sb.puts, 50);
    assert_int_equal(sa.shards, 4);
    assert_int_equal(sb.shards, 16);

    /* A snapshot of one is no snapshot of the other. */
    shoal_snapshot *snap_a = NULL;
    assert_ok(shoal_snapshot_take(a, &snap_a));
    void *v;
    size_t vlen;
    assert_code(shoal_get(nb, snap_a, "k1", 2, &v, &vlen), SHOAL_EINVAL);
    shoal_snapshot_release(snap_a);

    /* Closing one leaves the other working. */
    shoal_ns_close(na);
    assert_ok(shoal_close(a));
    test_put(nb, "after", "close of a");
    test_expect_str(nb, NULL, "after", "close of a");

    /* Databases opened and closed one after another, each used last by this thread (the
     * state cache of db_thread): each counts only its own operations, even one the
     * allocator places where the closed one was. */
    for (int round = 0; round < 8; round++) {
        shoal_db *c = test_open(4, 0);
        shoal_ns *nc = test_ns(c, "again", SHOAL_PLACE_SPREAD, 0);
        for (int k = 0; k <= round; k++)
            test_put(nc, "key", "value");
        shoal_db_stats sc;
        assert_ok(shoal_stats(c, &sc));
        assert_int_equal(sc.puts, round + 1);
        shoal_ns_close(nc);
        assert_ok(shoal_close(c));
    }
    assert_ok(shoal_stats(b, &sb));
    assert_int_equal(sb.puts, 51);
    assert_ok(shoal_ns_drop(b, "same"));
    shoal_ns_close(nb);
    assert_ok(shoal_close(b));
}

/* The statistics move with the operations they count. */
static void test_stats_counters(void **state)
{
    (void)state;
    shoal_db *db = test_open(4, 0);
    shoal_db_stats st;
    assert_ok(shoal_stats(db, &st));
    assert_int_equal(st.seq, 0);
    assert_int_equal(st.shards, 4);
    assert_int_equal(st.keys, 0);
    assert_int_equal(st.namespaces, 0);
    assert_int_equal(st.tenants, 1);
    assert_int_equal(st.snapshots_open, 0);
    assert_false(st.read_only);

    shoal_ns *ns = test_ns(db, "counted", SHOAL_PLACE_SPREAD, 0);
    for (int k = 0; k < 100; k++) {
        char key[32];
        snprintf(key, sizeof key, "k%02d", k);
        assert_ok(shoal_put(ns, key, 3, "value", 5, NULL));
    }
    for (int k = 0; k < 64; k++) {
        char key[32];
        snprintf(key, sizeof key, "k%02d", k);
        test_expect(ns, NULL, key, 3, "value", 5);
    }
    for (int k = 0; k < 10; k++) {
        char key[32];
        snprintf(key, sizeof key, "k%02d", k);
        assert_ok(shoal_delete(ns, key, 3, NULL));
    }
    shoal_batch *b = NULL;
    assert_ok(shoal_batch_new(db, &b));
    assert_ok(shoal_batch_put(b, ns, "b1", 2, "x", 1));
    assert_ok(shoal_batch_put(b, ns, "b2", 2, "y", 1));
    assert_ok(shoal_batch_commit(b, NULL, NULL));
    shoal_batch_free(b);
    assert_int_equal(test_count_keys(ns, NULL), 92);

    assert_ok(shoal_stats(db, &st));
    assert_int_equal(st.seq, 111);
    assert_int_equal(st.puts, 100);
    assert_int_equal(st.gets, 64);
    assert_int_equal(st.deletes, 10);
    assert_int_equal(st.commits, 1);
    assert_int_equal(st.scans, 1);
    assert_int_equal(st.keys, 92);
    assert_int_equal(st.bytes, 90 * 8 + 2 * 3);
    assert_int_equal(st.namespaces, 1);
    assert_true(st.active_shards >= 1 && st.active_shards <= 4);
    assert_true(st.memory > 0);
    /* Latencies are sampled (one operation in a few): some were, none beyond the count. */
    assert_true(st.put.count > 0 && st.put.count <= 110);
    assert_true(st.get.count > 0 && st.get.count <= 64);
    assert_int_equal(st.commit.count, 1);
    assert_true(st.put.p50_ns <= st.put.p99_ns && st.put.p99_ns <= st.put.max_ns);

    /* Shard statistics add up to the database's. */
    uint64_t puts = 0, deletes = 0, gets = 0, commits = 0, indexes = 0;
    for (uint32_t s = 0; s < 4; s++) {
        shoal_shard_stats ss;
        assert_ok(shoal_stats_shard(db, s, &ss));
        assert_int_equal(ss.shard, s);
        puts += ss.puts;
        deletes += ss.deletes;
        gets += ss.gets;
        commits += ss.commits;
        indexes += ss.indexes;
    }
    assert_int_equal(puts, 102); /* the batch's two puts count on their shards */
    assert_int_equal(deletes, 10);
    assert_int_equal(gets, 64);
    assert_true(commits >= 1 && commits <= 2);
    assert_int_equal(indexes, st.active_shards);
    shoal_shard_stats ss;
    assert_code(shoal_stats_shard(db, 4, &ss), SHOAL_EINVAL);

    shoal_tenant_stats ts;
    assert_ok(shoal_stats_tenant(db, 0, &ts));
    assert_string_equal(ts.name, "default");
    assert_int_equal(ts.keys, 92);
    assert_int_equal(ts.namespaces, 1);
    assert_true(ts.ops >= 174);
    shoal_ns_close(ns);
    shoal_close(db);
}

/* shoal_key_memory: every kept version, as allocated, and a share of the index. */
static void test_key_memory(void **state)
{
    (void)state;
    shoal_db *db = test_open(4, 0);
    shoal_ns *ns = test_ns(db, "m", SHOAL_PLACE_SPREAD, 0);
    uint64_t bytes = 1;
    assert_code(shoal_key_memory(ns, "k", 1, &bytes), SHOAL_ENOTFOUND);
    assert_int_equal(bytes, 0);
    assert_code(shoal_key_memory(ns, "k", 1, NULL), SHOAL_EINVAL);
    assert_code(shoal_key_memory(NULL, "k", 1, &bytes), SHOAL_EINVAL);
    assert_code(shoal_key_memory(ns, NULL, 1, &bytes), SHOAL_EINVAL);
    char key[16];
    for (int i = 0; i < 2000; i++) { /* the index's share of a key is about 20 bytes */
        snprintf(key, sizeof key, "other%04d", i);
        test_put(ns, key, "x");
    }
    test_put(ns, "k", "0123456789");
    assert_ok(shoal_key_memory(ns, "k", 1, &bytes));
    uint64_t small = bytes;
    assert_true(small > 11 && small < 400);
    static char big[100000];
    assert_ok(shoal_put(ns, "big", 3, big, sizeof big, NULL));
    assert_ok(shoal_key_memory(ns, "big", 3, &bytes));
    assert_true(bytes >= sizeof big + 3 && bytes < sizeof big + 8192);
    /* A snapshot keeps the replaced version: it counts until released and reclaimed. */
    shoal_snapshot *snap = NULL;
    assert_ok(shoal_snapshot_take(db, &snap));
    test_put(ns, "k", "another value, longer than the first");
    assert_ok(shoal_key_memory(ns, "k", 1, &bytes));
    assert_true(bytes > small + 36);
    uint64_t both = bytes;
    shoal_snapshot_release(snap);
    test_put(ns, "k", "0123456789"); /* a write reclaims what no snapshot needs */
    assert_ok(shoal_key_memory(ns, "k", 1, &bytes));
    assert_true(bytes < both);
    assert_ok(shoal_delete(ns, "k", 1, NULL));
    assert_code(shoal_key_memory(ns, "k", 1, &bytes), SHOAL_ENOTFOUND);
    shoal_ns_close(ns);
    shoal_close(db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_point_operations),
        cmocka_unit_test(test_delete_absent_changes_nothing),
        cmocka_unit_test(test_zero_length_values),
        cmocka_unit_test(test_binary_keys),
        cmocka_unit_test(test_key_limits),
        cmocka_unit_test(test_value_limit_not_read),
        cmocka_unit_test(test_large_value_round_trip),
        cmocka_unit_test(test_namespaces_independent),
        cmocka_unit_test(test_namespace_catalog),
        cmocka_unit_test(test_pinned_spread_over_shards),
        cmocka_unit_test(test_drop_frees_and_reopens_empty),
        cmocka_unit_test(test_two_databases),
        cmocka_unit_test(test_stats_counters),
        /* Before any test that starts threads: a sanitizer report in the parent would make
         * the children of these two exit with the sanitizer's status. */
        cmocka_unit_test(test_get_into_empty_value_without_buffer),
        cmocka_unit_test(test_ns_list_count_only),
        cmocka_unit_test(test_memory_limit),
        cmocka_unit_test(test_memory_limit_changed_while_open),
        cmocka_unit_test(test_stats_while_writing),
        cmocka_unit_test(test_key_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
