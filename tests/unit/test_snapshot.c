/*
 * test_snapshot.c -- snapshots (shoal_snapshot_*): taking and releasing, their seq, the
 * fixed slot array (SHOAL_ENOSLOT, reuse), reads at a snapshot after overwrites and
 * deletes, the reclaiming of versions once no snapshot needs them, and many snapshots
 * taken and released by several threads while a writer runs.
 *
 * Reclaim is observed through the statistics (versions_retired, versions_reclaimed,
 * memory) and through ASan: a version freed while a snapshot could still read it is a
 * use after free in the reads that follow. Memory is compared in directions and with wide
 * margins, never against exact allocator figures.
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

static shoal_snapshot *take(shoal_db *db)
{
    shoal_snapshot *s = NULL;
    assert_ok(shoal_snapshot_take(db, &s));
    assert_non_null(s);
    return s;
}

static uint64_t snapshots_open(shoal_db *db)
{
    shoal_db_stats st;
    assert_ok(shoal_stats(db, &st));
    return st.snapshots_open;
}

static void test_take_release_seq(void **state)
{
    (void)state;
    shoal_db *db = test_open(4, 0);
    shoal_snapshot *empty = take(db);
    assert_int_equal(shoal_snapshot_seq(empty), 0);
    shoal_ns *ns = test_ns(db, "s", SHOAL_PLACE_SPREAD, 0);
    test_put(ns, "k", "1");
    test_put(ns, "k", "2");
    shoal_snapshot *two = take(db);
    assert_int_equal(shoal_snapshot_seq(two), 2);
    assert_int_equal(shoal_snapshot_seq(two), shoal_last_seq(db));
    assert_int_equal(snapshots_open(db), 2);
    test_expect_absent_str(ns, empty, "k");
    test_expect_str(ns, two, "k", "2");
    shoal_snapshot_release(empty);
    assert_int_equal(snapshots_open(db), 1);
    /* The other snapshot is unaffected by the release. */
    test_put(ns, "k", "3");
    test_expect_str(ns, two, "k", "2");
    test_expect_str(ns, NULL, "k", "3");
    shoal_snapshot_release(two);
    shoal_snapshot_release(NULL);
    assert_int_equal(snapshots_open(db), 0);
    shoal_ns_close(ns);
    shoal_close(db);
}

/* A small slot array runs out: the caller gets SHOAL_ENOSLOT (and NULL), not a wait; a
 * released slot is taken again; thousands of take/release cycles leak no slot. */
static void test_slots_run_out_and_are_reused(void **state)
{
    (void)state;
    for (uint64_t slots = 1; slots <= 8; slots *= 2) {
        shoal_db *db = test_open(2, slots);
        shoal_ns *ns = test_ns(db, "slots", SHOAL_PLACE_PINNED, 0);
        shoal_snapshot *held[8];
        for (uint64_t i = 0; i < slots; i++) {
            test_put(ns, "k", "v");
            held[i] = take(db);
            assert_int_equal(shoal_snapshot_seq(held[i]), i + 1);
        }
        shoal_snapshot *extra = (shoal_snapshot *)1;
        assert_code(shoal_snapshot_take(db, &extra), SHOAL_ENOSLOT);
        assert_null(extra);
        shoal_iter *it = (shoal_iter *)1;
        assert_code(shoal_iter_new(ns, NULL, &it), SHOAL_ENOSLOT);
        assert_int_equal(snapshots_open(db), slots);

        /* Release the middle one; the next take gets a slot with the latest seq. */
        uint64_t middle = slots / 2;
        shoal_snapshot_release(held[middle]);
        test_put(ns, "k", "w");
        held[middle] = take(db);
        assert_int_equal(shoal_snapshot_seq(held[middle]), shoal_last_seq(db));
        assert_code(shoal_snapshot_take(db, &extra), SHOAL_ENOSLOT);
        /* The others kept their seqs. */
        for (uint64_t i = 0; i < slots; i++)
            if (i != middle)
                assert_int_equal(shoal_snapshot_seq(held[i]), i + 1);
        for (uint64_t i = 0; i < slots; i++)
            shoal_snapshot_release(held[i]);
        assert_int_equal(snapshots_open(db), 0);

        for (int round = 0; round < 2000; round++) {
            shoal_snapshot *s = take(db);
            shoal_snapshot_release(s);
        }
        for (uint64_t i = 0; i < slots; i++)
            held[i] = take(db);
        for (uint64_t i = 0; i < slots; i++)
            shoal_snapshot_release(held[i]);
        assert_int_equal(snapshots_open(db), 0);
        shoal_ns_close(ns);
        shoal_close(db);
    }
}

/* Reads at a snapshot see the values of its seq after overwrites, deletes and new keys,
 * through every read path; releasing snapshots in any order keeps the others intact. */
static void check_generation(shoal_ns *ns, const shoal_snapshot *snap, int generation,
                             int keys)
{
    /* generation 1: every key "g1-<i>"; 2: every key "g2-<i>"; 3: odd keys deleted;
     * plus, from generation 3 on, keys "new<i>" that did not exist before. */
    size_t expected = 0;
    for (int i = 0; i < keys; i++) {
        char key[32], value[32];
        snprintf(key, sizeof key, "key%04d", i);
        if (generation >= 3 && i % 2) {
            test_expect_absent_str(ns, snap, key);
            continue;
        }
        snprintf(value, sizeof value, "g%d-%d", generation >= 2 ? 2 : 1, i);
        test_expect_str(ns, snap, key, value);
        char buf[32];
        size_t vlen = 0;
        assert_ok(shoal_get_into(ns, snap, key, strlen(key), buf, sizeof buf, &vlen));
        assert_int_equal(vlen, strlen(value));
        assert_int_equal(shoal_exists(ns, snap, key, strlen(key)), 1);
        uint64_t seq = 0;
        assert_ok(shoal_key_seq(ns, snap, key, strlen(key), &seq));
        assert_true(seq > 0 && seq <= (snap ? shoal_snapshot_seq(snap) : UINT64_MAX));
        expected++;
    }
    for (int i = 0; i < 10; i++) {
        char key[32];
        snprintf(key, sizeof key, "new%d", i);
        if (generation >= 3)
            test_expect_str(ns, snap, key, "new");
        else
            test_expect_absent_str(ns, snap, key);
    }
    if (generation >= 3)
        expected += 10;
    assert_int_equal(test_count_keys(ns, snap), expected);
}

static void test_reads_at_snapshots(void **state)
{
    (void)state;
    static const int orders[][3] = {{0, 1, 2}, {1, 0, 2}, {2, 1, 0}, {1, 2, 0}};
    for (int placement = 0; placement < 2; placement++) {
        for (size_t order = 0; order < 4; order++) {
            shoal_db *db = test_open(8, 0);
            shoal_ns *ns = test_ns(db, "gens",
                                   placement ? SHOAL_PLACE_SPREAD : SHOAL_PLACE_PINNED, 0);
            int keys = 300;
            char key[32], value[32];
            shoal_snapshot *snaps[3];
            for (int i = 0; i < keys; i++) {
                snprintf(key, sizeof key, "key%04d", i);
                snprintf(value, sizeof value, "g1-%d", i);
                test_put(ns, key, value);
            }
            snaps[0] = take(db);
            for (int i = 0; i < keys; i++) {
                snprintf(key, sizeof key, "key%04d", i);
                snprintf(value, sizeof value, "g2-%d", i);
                test_put(ns, key, value);
            }
            snaps[1] = take(db);
            for (int i = 1; i < keys; i += 2) {
                snprintf(key, sizeof key, "key%04d", i);
                assert_ok(shoal_delete(ns, key, strlen(key), NULL));
            }
            for (int i = 0; i < 10; i++) {
                snprintf(key, sizeof key, "new%d", i);
                test_put(ns, key, "new");
            }
            snaps[2] = take(db);
            for (int g = 0; g < 3; g++)
                check_generation(ns, snaps[g], g + 1, keys);
            /* Release one at a time; after each, churn the keys (which lets reclaim run)
             * and check the snapshots that remain. */
            bool released[3] = {false, false, false};
            for (int r = 0; r < 3; r++) {
                int victim = orders[order][r];
                shoal_snapshot_release(snaps[victim]);
                released[victim] = true;
                for (int i = 0; i < keys; i += 3) {
                    snprintf(key, sizeof key, "churn%d", i);
                    test_put(ns, key, "c");
                    assert_ok(shoal_delete(ns, key, strlen(key), NULL));
                }
                for (int g = 0; g < 3; g++)
                    if (!released[g])
                        check_generation(ns, snaps[g], g + 1, keys);
            }
            check_generation(ns, NULL, 3, keys);
            shoal_ns_close(ns);
            shoal_close(db);
        }
    }
}

/* Versions kept for a snapshot are retired when overwritten and reclaimed after the
 * release, once writers pass by their shards; the memory they held comes back. */
static void test_reclaim_after_release(void **state)
{
    (void)state;
    for (int placement = 0; placement < 2; placement++) {
        shoal_db *db = test_open(8, 0);
        shoal_ns *ns = test_ns(db, "reclaim",
                               placement ? SHOAL_PLACE_SPREAD : SHOAL_PLACE_PINNED, 0);
        int keys = 1000;
        uint8_t value[1000];
        char key[32];
        for (int i = 0; i < keys; i++) {
            snprintf(key, sizeof key, "key%04d", i);
            test_fill_pattern(value, sizeof value, (uint64_t)i);
            assert_ok(shoal_put(ns, key, strlen(key), value, sizeof value, NULL));
        }
        shoal_db_stats base;
        assert_ok(shoal_stats(db, &base));

        shoal_snapshot *snap = take(db);
        for (int round = 0; round < 3; round++) {
            for (int i = 0; i < keys; i++) {
                snprintf(key, sizeof key, "key%04d", i);
                test_fill_pattern(value, sizeof value, (uint64_t)(i + 10000 * (round + 1)));
                assert_ok(shoal_put(ns, key, strlen(key), value, sizeof value, NULL));
            }
        }
        shoal_db_stats held;
        assert_ok(shoal_stats(db, &held));
        assert_true(held.versions_retired >= base.versions_retired + 3 * (uint64_t)keys);
        assert_true(held.memory >= base.memory + 3 * (uint64_t)keys * sizeof value);
        assert_int_equal(held.keys, keys);
        /* The snapshot still reads generation 0 (ASan would flag a reclaimed version). */
        for (int i = 0; i < keys; i += 7) {
            snprintf(key, sizeof key, "key%04d", i);
            test_fill_pattern(value, sizeof value, (uint64_t)i);
            test_expect(ns, snap, key, strlen(key), value, sizeof value);
        }
        shoal_snapshot_release(snap);

        /* One more pass of writes lets every shard reclaim. */
        for (int i = 0; i < keys; i++) {
            snprintf(key, sizeof key, "key%04d", i);
            test_fill_pattern(value, sizeof value, (uint64_t)(i + 99999));
            assert_ok(shoal_put(ns, key, strlen(key), value, sizeof value, NULL));
        }
        shoal_db_stats after;
        assert_ok(shoal_stats(db, &after));
        /* Every shard was written after the release, found no snapshot open and emptied
         * its queue: each retired version is reclaimed, including the old versions of the
         * key whose write came first, which it freed at once with their newer one. */
        assert_true(after.versions_retired >= base.versions_retired + 3 * (uint64_t)keys);
        assert_int_equal(after.versions_reclaimed, after.versions_retired);
        /* Memory is back near one version per key: far below what the snapshot held. */
        assert_true(after.memory < held.memory - 2 * (uint64_t)keys * sizeof value);
        assert_true(after.memory <= base.memory + base.memory / 4 + 65536);
        uint64_t objects = 0;
        for (uint32_t s = 0; s < 8; s++) {
            shoal_shard_stats ss;
            assert_ok(shoal_stats_shard(db, s, &ss));
            objects += ss.objects;
        }
        assert_int_equal(objects, keys);
        for (int i = 0; i < keys; i += 7) {
            snprintf(key, sizeof key, "key%04d", i);
            test_fill_pattern(value, sizeof value, (uint64_t)(i + 99999));
            test_expect(ns, NULL, key, strlen(key), value, sizeof value);
        }
        shoal_ns_close(ns);
        shoal_close(db);
    }
}

/* Deletes seen by a snapshot leave tombstones; after the release they and the versions
 * they hid are reclaimed too, and the keys' records vanish. */
static void test_reclaim_of_deletes(void **state)
{
    (void)state;
    shoal_db *db = test_open(1, 0);
    shoal_ns *ns = test_ns(db, "tombs", SHOAL_PLACE_PINNED, 0);
    char key[32];
    for (int i = 0; i < 500; i++) {
        snprintf(key, sizeof key, "key%04d", i);
        test_put(ns, key, "some value");
    }
    shoal_snapshot *snap = take(db);
    for (int i = 0; i < 500; i++) {
        snprintf(key, sizeof key, "key%04d", i);
        assert_ok(shoal_delete(ns, key, strlen(key), NULL));
    }
    assert_int_equal(test_count_keys(ns, snap), 500);
    assert_int_equal(test_count_keys(ns, NULL), 0);
    shoal_db_stats held;
    assert_ok(shoal_stats(db, &held));
    shoal_snapshot_release(snap);
    test_put(ns, "trigger", "x");
    shoal_db_stats after;
    assert_ok(shoal_stats(db, &after));
    /* Each deleted key had a value and a tombstone retired. */
    assert_true(after.versions_reclaimed >= held.versions_reclaimed + 1000);
    shoal_shard_stats ss;
    assert_ok(shoal_stats_shard(db, 0, &ss));
    assert_int_equal(ss.objects, 1);
    uint64_t seq = 99;
    assert_ok(shoal_key_seq(ns, NULL, "key0001", 7, &seq));
    assert_int_equal(seq, 0);
    assert_int_equal(test_count_keys(ns, NULL), 1);
    shoal_ns_close(ns);
    shoal_close(db);
}

/* A value deleted while a snapshot is open, on a shard that sees no write after the
 * release: shoal_reclaim gives its memory back, and not while a snapshot can still read
 * it. */
static void test_reclaim_of_a_quiet_shard(void **state)
{
    (void)state;
    shoal_db *db = test_open(4, 0);
    shoal_ns *ns = test_ns(db, "quiet", SHOAL_PLACE_SPREAD, 0);
    size_t big = 4u << 20;
    char *value = malloc(big);
    assert_non_null(value);
    memset(value, 'v', big);
    assert_ok(shoal_put(ns, "big", 3, value, big, NULL));
    test_put(ns, "small", "x");
    shoal_db_stats before;
    assert_ok(shoal_stats(db, &before));

    shoal_snapshot *first = take(db);
    shoal_snapshot *second = take(db);
    assert_ok(shoal_delete(ns, "big", 3, NULL));
    shoal_snapshot_release(first);
    /* The second snapshot still reads the value: nothing may go. */
    assert_ok(shoal_reclaim(db));
    size_t length = 0;
    assert_ok(shoal_get_into(ns, second, "big", 3, value, big, &length));
    assert_int_equal(length, big);
    shoal_db_stats held;
    assert_ok(shoal_stats(db, &held));
    assert_true(held.memory >= before.memory);

    shoal_snapshot_release(second);
    shoal_db_stats quiet;
    assert_ok(shoal_stats(db, &quiet));
    assert_true(quiet.memory >= big); /* no write since: still held */
    assert_ok(shoal_reclaim(db));
    shoal_db_stats after;
    assert_ok(shoal_stats(db, &after));
    assert_true(after.memory + big / 2 < quiet.memory);
    assert_true(after.versions_reclaimed > quiet.versions_reclaimed);
    assert_int_equal(shoal_get_into(ns, NULL, "big", 3, value, big, &length), SHOAL_ENOTFOUND);
    test_expect_str(ns, NULL, "small", "x");
    assert_ok(shoal_reclaim(db)); /* nothing left: a no-op */
    assert_int_equal(shoal_reclaim(NULL), SHOAL_EINVAL);
    free(value);
    shoal_ns_close(ns);
    shoal_close(db);
}

/* One key overwritten many times under a long-lived snapshot keeps every version until
 * the release, then all but the newest go. */
static void test_long_lived_snapshot(void **state)
{
    (void)state;
    shoal_db *db = test_open(2, 0);
    shoal_ns *ns = test_ns(db, "hot", SHOAL_PLACE_PINNED, 0);
    test_put(ns, "hot", "original");
    shoal_snapshot *snap = take(db);
    int writes = SHOAL_TEST_SCALE(20000, 5000);
    char value[32];
    for (int i = 0; i < writes; i++) {
        snprintf(value, sizeof value, "v%d", i);
        test_put(ns, "hot", value);
        if (i % 1000 == 0)
            test_expect_str(ns, snap, "hot", "original");
    }
    shoal_shard_stats ss;
    shoal_ns_info info;
    assert_ok(shoal_ns_info_get(ns, &info));
    assert_ok(shoal_stats_shard(db, info.shard, &ss));
    assert_true(ss.objects >= (uint64_t)writes);
    test_expect_str(ns, snap, "hot", "original");
    shoal_snapshot_release(snap);
    test_put(ns, "hot", "final");
    assert_ok(shoal_stats_shard(db, info.shard, &ss));
    assert_int_equal(ss.objects, 1);
    test_expect_str(ns, NULL, "hot", "final");
    shoal_ns_close(ns);
    shoal_close(db);
}

/* The reclaim horizon's edge: a version replaced by the very next write after a
 * snapshot (retired at the snapshot's seq + 1) is exactly what the snapshot reads, and
 * must survive reclaim passes that run while the snapshot is open. An older snapshot
 * keeps earlier garbage queued; its release lets the next writes reclaim that garbage
 * (the statistics show the passes ran), up to the open snapshot and not one seq past. */
static void test_reclaim_horizon_edge(void **state)
{
    (void)state;
    for (int variant = 0; variant < 2; variant++) {
        shoal_db *db = test_open(1, 0);
        shoal_ns *ns = test_ns(db, "edge", SHOAL_PLACE_PINNED, 0);
        test_put(ns, "k", "old");
        test_put(ns, "filler", "start");
        shoal_snapshot *older = take(db);
        char value[32];
        for (int i = 0; i < 100; i++) { /* garbage once older is gone */
            snprintf(value, sizeof value, "early%d", i);
            test_put(ns, "filler", value);
        }
        shoal_snapshot *snap = take(db);
        if (variant == 1)
            test_put(ns, "k", "new"); /* retired at snap's seq + 1 */
        else
            assert_ok(shoal_delete(ns, "k", 1, NULL));
        shoal_db_stats st;
        assert_ok(shoal_stats(db, &st));
        uint64_t reclaimed_before = st.versions_reclaimed;
        shoal_snapshot_release(older);
        for (int i = 0; i < 1000; i++) {
            snprintf(value, sizeof value, "%d", i);
            test_put(ns, "filler", value);
        }
        assert_ok(shoal_stats(db, &st));
        assert_true(st.versions_reclaimed >= reclaimed_before + 99); /* passes did run */
        test_expect_str(ns, snap, "k", "old");
        test_expect_str(ns, snap, "filler", "early99");
        assert_int_equal(test_count_keys(ns, snap), 2);
        if (variant == 1)
            test_expect_str(ns, NULL, "k", "new");
        else
            test_expect_absent_str(ns, NULL, "k");
        shoal_snapshot_release(snap);
        shoal_ns_close(ns);
        shoal_close(db);
    }
}

/* ---- many snapshots from several threads ---------------------------------------------- */

struct threaded {
    shoal_db *db;
    shoal_ns *ns;
    int writes;
    uint64_t deadline;
    _Atomic bool writer_done;
    _Atomic uint64_t *seq_of; /* seq_of[i]: the seq at which "counter" became i */
    _Atomic uint64_t checks;
    _Atomic int failures;
};

static void *writer_main(void *arg)
{
    struct threaded *t = arg;
    char value[32];
    for (int i = 1; i <= t->writes && test_before(t->deadline); i++) {
        snprintf(value, sizeof value, "%d", i);
        if (shoal_put(t->ns, "counter", 7, value, strlen(value), NULL) != 0) {
            atomic_fetch_add(&t->failures, 1);
            break;
        }
        uint64_t seq = 0;
        if (shoal_key_seq(t->ns, NULL, "counter", 7, &seq) != 0)
            atomic_fetch_add(&t->failures, 1);
        atomic_store(&t->seq_of[i], seq);
    }
    atomic_store(&t->writer_done, true);
    return NULL;
}

/* Reads the counter at snap: its value, and the seq of the write that set it; 0 and 0
 * before the first write. */
static int read_counter(struct threaded *t, const shoal_snapshot *snap, long *value,
                        uint64_t *seq)
{
    char buf[32];
    size_t vlen = 0;
    int err = shoal_get_into(t->ns, snap, "counter", 7, buf, sizeof buf - 1, &vlen);
    if (err == SHOAL_ENOTFOUND) {
        *value = 0;
        *seq = 0;
        return 0;
    }
    if (err)
        return err;
    buf[vlen] = 0;
    *value = strtol(buf, NULL, 10);
    return shoal_key_seq(t->ns, snap, "counter", 7, seq);
}

/* Each reader holds up to eight snapshots at once, releasing them in a scrambled order;
 * at each it reads the counter twice (the same answer both times), checks that the
 * write it sees is at or before the snapshot's seq, and that later snapshots never see
 * an older counter. */
static void *reader_main(void *arg)
{
    struct threaded *t = arg;
    struct test_rng r;
    test_rng_init(&r, (uint64_t)(uintptr_t)&r ^ 0xABCDEF);
    shoal_snapshot *held[8] = {NULL};
    long held_value[8] = {0};
    long newest_seen = 0;
    int bad = 0;
    for (int round = 0; round < 200000 && !bad; round++) {
        if (atomic_load(&t->writer_done) || !test_before(t->deadline))
            break;
        int slot = (int)test_rng_below(&r, 8);
        if (held[slot]) {
            long value;
            uint64_t seq;
            if (read_counter(t, held[slot], &value, &seq) != 0 || value != held_value[slot] ||
                seq > shoal_snapshot_seq(held[slot]))
                bad = 1;
            shoal_snapshot_release(held[slot]);
            held[slot] = NULL;
            continue;
        }
        if (shoal_snapshot_take(t->db, &held[slot]) != 0) {
            bad = 2;
            break;
        }
        long value;
        uint64_t seq;
        if (read_counter(t, held[slot], &value, &seq) != 0) {
            bad = 3;
            break;
        }
        if (seq > shoal_snapshot_seq(held[slot]))
            bad = 4;
        if (value > 0 && value <= t->writes) {
            uint64_t recorded = atomic_load(&t->seq_of[value]);
            if (recorded != 0 && recorded != seq)
                bad = 5;
        }
        if (value < newest_seen)
            bad = 6; /* a later snapshot saw an older counter */
        newest_seen = value;
        held_value[slot] = value;
        atomic_fetch_add(&t->checks, 1);
    }
    for (int i = 0; i < 8; i++)
        shoal_snapshot_release(held[i]);
    if (bad) {
        fprintf(stderr, "reader failure %d\n", bad);
        atomic_fetch_add(&t->failures, 1);
    }
    return NULL;
}

static void test_many_snapshots_from_threads(void **state)
{
    (void)state;
    struct threaded t = {0};
    t.db = test_open(4, 64);
    t.ns = test_ns(t.db, "threads", SHOAL_PLACE_SPREAD, 0);
    t.writes = SHOAL_TEST_SCALE(100000, 20000);
    t.deadline = test_deadline(SHOAL_TEST_SCALE(20.0, 120.0));
    t.seq_of = calloc((size_t)t.writes + 1, sizeof *t.seq_of);
    assert_non_null(t.seq_of);
    enum { READERS = 4 };
    pthread_t writer, readers[READERS];
    assert_int_equal(pthread_create(&writer, NULL, writer_main, &t), 0);
    for (int i = 0; i < READERS; i++)
        assert_int_equal(pthread_create(&readers[i], NULL, reader_main, &t), 0);
    pthread_join(writer, NULL);
    for (int i = 0; i < READERS; i++)
        pthread_join(readers[i], NULL);
    assert_int_equal(atomic_load(&t.failures), 0);
    print_message("snapshots checked by the readers: %llu\n",
                  (unsigned long long)atomic_load(&t.checks));
    assert_true(atomic_load(&t.checks) > 0);
    assert_int_equal(snapshots_open(t.db), 0);

    /* Every kept version goes once the snapshots are gone and the shard sees a write. */
    test_put(t.ns, "counter", "last");
    uint64_t objects = 0;
    for (uint32_t s = 0; s < 4; s++) {
        shoal_shard_stats ss;
        assert_ok(shoal_stats_shard(t.db, s, &ss));
        objects += ss.objects;
    }
    assert_int_equal(objects, 1);
    free(t.seq_of);
    shoal_ns_close(t.ns);
    shoal_close(t.db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_take_release_seq),
        cmocka_unit_test(test_slots_run_out_and_are_reused),
        cmocka_unit_test(test_reads_at_snapshots),
        cmocka_unit_test(test_reclaim_after_release),
        cmocka_unit_test(test_reclaim_of_deletes),
        cmocka_unit_test(test_reclaim_of_a_quiet_shard),
        cmocka_unit_test(test_long_lived_snapshot),
        cmocka_unit_test(test_reclaim_horizon_edge),
        cmocka_unit_test(test_many_snapshots_from_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
