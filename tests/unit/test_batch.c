/*
 * test_batch.c -- atomic batches (shoal_batch_*): puts and deletes across namespaces and
 * shards committed with one seq, all or nothing.
 *
 * What is pinned here:
 *   1. A batch over pinned and spread namespaces on many shards commits every write with
 *      one seq: shoal_key_seq of each key is the commit's seq, a snapshot taken before
 *      sees none of it and one taken after sees all of it.
 *   2. Several operations on one key inside a batch apply in order (the last wins): put
 *      then put, put then delete, delete then put, put-delete-put, delete-delete; with no
 *      snapshot open (versions freed at once) and with one open (versions retired), and
 *      again after the snapshot is released and reclaim has run (ASan watches the frees).
 *   3. Conditions: a require that holds lets the batch commit; one that does not gives
 *      SHOAL_ECONFLICT and changes nothing (values, counts, seq); 0 means "no record".
 *   4. An empty batch commits nothing and reports the latest seq; a batch keeps its
 *      contents after a commit or a failure, and clear makes it reusable.
 *   5. A batch whose namespace was dropped fails whole with SHOAL_EDROPPED, even when the
 *      handle that added its operations was closed before the drop.
 *   6. shoal_batch_delete_all deletes every key of its namespace, stored or put earlier in
 *      the batch, and nothing of the others; later operations apply after it; snapshots
 *      before it see everything, after it nothing; with a failing condition it changes
 *      nothing; on an empty namespace it draws no seq.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"

static shoal_batch *new_batch(shoal_db *db)
{
    shoal_batch *b = NULL;
    assert_ok(shoal_batch_new(db, &b));
    assert_non_null(b);
    assert_int_equal(shoal_batch_count(b), 0);
    return b;
}

static void batch_put_str(shoal_batch *b, shoal_ns *ns, const char *key, const char *value)
{
    assert_ok(shoal_batch_put(b, ns, key, strlen(key), value, strlen(value)));
}

static void batch_delete_str(shoal_batch *b, shoal_ns *ns, const char *key)
{
    assert_ok(shoal_batch_delete(b, ns, key, strlen(key)));
}

static uint64_t key_seq_str(shoal_ns *ns, const shoal_snapshot *snap, const char *key)
{
    uint64_t seq = UINT64_MAX;
    assert_ok(shoal_key_seq(ns, snap, key, strlen(key), &seq));
    return seq;
}

/* 1: one seq for every write of a batch over three namespaces and many shards. */
static void test_cross_shard_batch_one_seq(void **state)
{
    (void)state;
    shoal_db *db = test_open(16, 0);
    shoal_ns *a = test_ns(db, "a", SHOAL_PLACE_PINNED, 0);
    shoal_ns *b = test_ns(db, "b", SHOAL_PLACE_PINNED, 0);
    shoal_ns *c = test_ns(db, "c", SHOAL_PLACE_SPREAD, 0);
    shoal_ns_info ia, ib;
    assert_ok(shoal_ns_info_get(a, &ia));
    assert_ok(shoal_ns_info_get(b, &ib));
    assert_true(ia.shard != ib.shard);
    test_put(a, "doomed", "old");
    test_put(c, "c007", "old");

    shoal_snapshot *before = NULL;
    assert_ok(shoal_snapshot_take(db, &before));
    shoal_batch *batch = new_batch(db);
    char key[32], value[32];
    for (int i = 0; i < 50; i++) {
        snprintf(key, sizeof key, "c%03d", i);
        snprintf(value, sizeof value, "v%03d", i);
        batch_put_str(batch, c, key, value);
    }
    for (int i = 0; i < 5; i++) {
        snprintf(key, sizeof key, "a%d", i);
        batch_put_str(batch, a, key, "in a");
        snprintf(key, sizeof key, "b%d", i);
        batch_put_str(batch, b, key, "in b");
    }
    batch_delete_str(batch, a, "doomed");
    assert_int_equal(shoal_batch_count(batch), 61);
    uint64_t seq = 0;
    assert_ok(shoal_batch_commit(batch, NULL, &seq));
    assert_int_equal(seq, shoal_last_seq(db));
    assert_true(seq > shoal_snapshot_seq(before));

    shoal_snapshot *after = NULL;
    assert_ok(shoal_snapshot_take(db, &after));
    for (int i = 0; i < 50; i++) {
        snprintf(key, sizeof key, "c%03d", i);
        snprintf(value, sizeof value, "v%03d", i);
        assert_int_equal(key_seq_str(c, NULL, key), seq);
        test_expect_str(c, after, key, value);
        if (i == 7)
            test_expect_str(c, before, key, "old");
        else
            test_expect_absent_str(c, before, key);
    }
    for (int i = 0; i < 5; i++) {
        snprintf(key, sizeof key, "a%d", i);
        assert_int_equal(key_seq_str(a, NULL, key), seq);
        test_expect_str(a, after, key, "in a");
        test_expect_absent_str(a, before, key);
        snprintf(key, sizeof key, "b%d", i);
        assert_int_equal(key_seq_str(b, NULL, key), seq);
        test_expect_str(b, after, key, "in b");
        test_expect_absent_str(b, before, key);
    }
    test_expect_absent_str(a, after, "doomed");
    test_expect_str(a, before, "doomed", "old");
    assert_int_equal(key_seq_str(a, NULL, "doomed"), seq); /* a snapshot keeps the delete */
    assert_int_equal(test_count_keys(c, before), 1);
    assert_int_equal(test_count_keys(c, after), 50);
    assert_int_equal(test_count_keys(a, after), 5);

    /* The batch touched several shards, and each counts one commit. */
    unsigned shards_with_commits = 0;
    for (uint32_t s = 0; s < 16; s++) {
        shoal_shard_stats ss;
        assert_ok(shoal_stats_shard(db, s, &ss));
        assert_true(ss.commits <= 1);
        shards_with_commits += ss.commits == 1;
    }
    assert_true(shards_with_commits >= 3);

    uint64_t keys, bytes;
    test_ns_counts(a, &keys, &bytes);
    assert_int_equal(keys, 5);
    test_ns_counts(c, &keys, &bytes);
    assert_int_equal(keys, 50);
    assert_int_equal(bytes, 50 * 8);

    shoal_snapshot_release(before);
    shoal_snapshot_release(after);
    shoal_batch_free(batch);
    shoal_ns_close(a);
    shoal_ns_close(b);
    shoal_ns_close(c);
    shoal_close(db);
}

/* 2: repeated keys inside one batch. Each case starts from a key that holds "old" (or
 * nothing), runs a sequence of operations on it in one batch and names the outcome. */
struct repeat_case {
    const char *name;
    bool existed;
    const char *ops; /* 'p' put (value "p<position>"), 'd' delete */
    const char *expected; /* NULL: absent */
};

static const struct repeat_case repeat_cases[] = {
    {"put-put", true, "pp", "p1"},
    {"put-put-new", false, "pp", "p1"},
    {"put-delete", true, "pd", NULL},
    {"put-delete-new", false, "pd", NULL},
    {"delete-put", true, "dp", "p1"},
    {"delete-put-new", false, "dp", "p1"},
    {"put-delete-put", true, "pdp", "p2"},
    {"delete-put-delete", true, "dpd", NULL},
    {"delete-delete", true, "dd", NULL},
    {"delete-delete-new", false, "dd", NULL},
    {"put-put-put-delete-put", false, "pppdp", "p4"},
};
#define REPEAT_CASES (sizeof repeat_cases / sizeof repeat_cases[0])

static void run_repeated_keys(bool snapshot_open, shoal_placement placement)
{
    shoal_db *db = test_open(8, 0);
    shoal_ns *ns = test_ns(db, "repeat", placement, 0);
    shoal_ns *other = test_ns(db, "other", SHOAL_PLACE_SPREAD, 0);
    for (size_t i = 0; i < REPEAT_CASES; i++)
        if (repeat_cases[i].existed)
            test_put(ns, repeat_cases[i].name, "old");
    shoal_snapshot *snap = NULL;
    if (snapshot_open)
        assert_ok(shoal_snapshot_take(db, &snap));

    /* Every case in one batch, interleaved key by key, plus writes elsewhere. */
    shoal_batch *b = new_batch(db);
    size_t longest = 0;
    for (size_t i = 0; i < REPEAT_CASES; i++)
        if (strlen(repeat_cases[i].ops) > longest)
            longest = strlen(repeat_cases[i].ops);
    for (size_t step = 0; step < longest; step++) {
        for (size_t i = 0; i < REPEAT_CASES; i++) {
            const struct repeat_case *rc = &repeat_cases[i];
            if (step >= strlen(rc->ops))
                continue;
            if (rc->ops[step] == 'p') {
                char value[32];
                snprintf(value, sizeof value, "p%zu", step);
                batch_put_str(b, ns, rc->name, value);
            } else {
                batch_delete_str(b, ns, rc->name);
            }
        }
        batch_put_str(b, other, "elsewhere", "x");
    }
    uint64_t seq = 0;
    assert_ok(shoal_batch_commit(b, NULL, &seq));

    /* Three checks of the same outcome: at once, at a snapshot after the commit, and after
     * the snapshot is gone and later writes have reclaimed what it kept. */
    for (int round = 0; round < 3; round++) {
        shoal_snapshot *now = NULL;
        if (round == 1)
            assert_ok(shoal_snapshot_take(db, &now));
        uint64_t live = 0;
        for (size_t i = 0; i < REPEAT_CASES; i++) {
            const struct repeat_case *rc = &repeat_cases[i];
            if (rc->expected) {
                test_expect_str(ns, now, rc->name, rc->expected);
                assert_int_equal(key_seq_str(ns, now, rc->name), seq);
                live++;
            } else {
                test_expect_absent_str(ns, now, rc->name);
            }
            if (snap) {
                if (rc->existed)
                    test_expect_str(ns, snap, rc->name, "old");
                else
                    test_expect_absent_str(ns, snap, rc->name);
            }
        }
        uint64_t keys, bytes;
        test_ns_counts(ns, &keys, &bytes);
        assert_int_equal(keys, live);
        assert_int_equal(test_count_keys(ns, now), live);
        shoal_snapshot_release(now);
        if (round == 1 && snap) {
            shoal_snapshot_release(snap);
            snap = NULL;
            /* Writes to the namespace's shards let reclaim run there. */
            char key[32];
            for (int k = 0; k < 64; k++) {
                snprintf(key, sizeof key, "filler%d", k);
                test_put(ns, key, "f");
                assert_ok(shoal_delete(ns, key, strlen(key), NULL));
            }
        }
    }
    if (snapshot_open) {
        shoal_db_stats st;
        assert_ok(shoal_stats(db, &st));
        assert_true(st.versions_retired > 0);
        assert_true(st.versions_reclaimed > 0);
    }
    test_expect_str(other, NULL, "elsewhere", "x");
    shoal_batch_free(b);
    shoal_ns_close(ns);
    shoal_ns_close(other);
    shoal_close(db);
}

static void test_repeated_keys_without_snapshot(void **state)
{
    (void)state;
    run_repeated_keys(false, SHOAL_PLACE_PINNED);
    run_repeated_keys(false, SHOAL_PLACE_SPREAD);
}

static void test_repeated_keys_with_snapshot(void **state)
{
    (void)state;
    run_repeated_keys(true, SHOAL_PLACE_PINNED);
    run_repeated_keys(true, SHOAL_PLACE_SPREAD);
}

/* 3: conditions. */
static void test_require(void **state)
{
    (void)state;
    shoal_db *db = test_open(8, 0);
    shoal_ns *ns = test_ns(db, "accounts", SHOAL_PLACE_SPREAD, 0);
    shoal_ns *log = test_ns(db, "log", SHOAL_PLACE_PINNED, 0);
    test_put(ns, "alice", "100");
    test_put(ns, "bob", "50");
    uint64_t alice_seq = key_seq_str(ns, NULL, "alice");
    uint64_t bob_seq = key_seq_str(ns, NULL, "bob");
    assert_true(alice_seq > 0 && bob_seq > alice_seq);

    /* Holds: both seqs current, a key that was never written required absent (0). */
    shoal_batch *b = new_batch(db);
    assert_ok(shoal_batch_require(b, ns, "alice", 5, alice_seq));
    assert_ok(shoal_batch_require(b, ns, "bob", 3, bob_seq));
    assert_ok(shoal_batch_require(b, log, "entry1", 6, 0));
    assert_int_equal(shoal_batch_count(b), 0); /* requires are not writes */
    batch_put_str(b, ns, "alice", "90");
    batch_put_str(b, ns, "bob", "60");
    batch_put_str(b, log, "entry1", "alice->bob 10");
    assert_int_equal(shoal_batch_count(b), 3);
    uint64_t seq = 0;
    assert_ok(shoal_batch_commit(b, NULL, &seq));
    test_expect_str(ns, NULL, "alice", "90");
    test_expect_str(ns, NULL, "bob", "60");
    test_expect_str(log, NULL, "entry1", "alice->bob 10");

    /* Does not hold: the same batch again (alice's seq moved on). Nothing changes. */
    test_put(ns, "carol", "1");
    test_put(log, "entry9", "x");
    uint64_t last = shoal_last_seq(db);
    shoal_batch_clear(b);
    assert_ok(shoal_batch_require(b, ns, "alice", 5, alice_seq)); /* stale */
    batch_put_str(b, ns, "alice", "0");
    batch_put_str(b, ns, "dave", "new key");
    batch_delete_str(b, ns, "carol");
    batch_delete_str(b, log, "entry9");
    shoal_db_stats st_before, st_after;
    assert_ok(shoal_stats(db, &st_before));
    uint64_t unchanged = 12345;
    assert_code(shoal_batch_commit(b, NULL, &unchanged), SHOAL_ECONFLICT);
    assert_int_equal(shoal_last_seq(db), last);
    assert_ok(shoal_stats(db, &st_after));
    assert_int_equal(st_after.keys, st_before.keys);
    assert_int_equal(st_after.bytes, st_before.bytes);
    test_expect_str(ns, NULL, "alice", "90");
    test_expect_absent_str(ns, NULL, "dave");
    test_expect_str(ns, NULL, "carol", "1");
    test_expect_str(log, NULL, "entry9", "x");
    assert_int_equal(key_seq_str(ns, NULL, "alice"), seq);
    assert_int_equal(shoal_batch_count(b), 4); /* the batch keeps its contents */

    /* A require at the end of the batch counts as much as one at the start. */
    shoal_batch_clear(b);
    batch_put_str(b, ns, "dave", "new key");
    assert_ok(shoal_batch_require(b, ns, "carol", 5, 0)); /* carol exists: not 0 */
    assert_code(shoal_batch_commit(b, NULL, NULL), SHOAL_ECONFLICT);
    test_expect_absent_str(ns, NULL, "dave");

    /* The seq a snapshot read is what optimistic read-modify-write requires. */
    shoal_snapshot *snap = NULL;
    assert_ok(shoal_snapshot_take(db, &snap));
    uint64_t carol_seq = key_seq_str(ns, snap, "carol");
    shoal_batch_clear(b);
    assert_ok(shoal_batch_require(b, ns, "carol", 5, carol_seq));
    batch_put_str(b, ns, "carol", "2");
    assert_ok(shoal_batch_commit(b, NULL, &seq));
    /* A second run of the same batch now conflicts: carol's seq is the first run's. */
    assert_code(shoal_batch_commit(b, NULL, NULL), SHOAL_ECONFLICT);
    assert_int_equal(key_seq_str(ns, NULL, "carol"), seq);
    assert_int_equal(key_seq_str(ns, snap, "carol"), carol_seq);
    shoal_snapshot_release(snap);

    /* After a delete, the seq key_seq reports is the one to require. */
    assert_ok(shoal_delete(ns, "carol", 5, NULL));
    uint64_t deleted_seq = key_seq_str(ns, NULL, "carol");
    shoal_batch_clear(b);
    assert_ok(shoal_batch_require(b, ns, "carol", 5, deleted_seq));
    batch_put_str(b, ns, "carol", "back");
    assert_ok(shoal_batch_commit(b, NULL, NULL));
    test_expect_str(ns, NULL, "carol", "back");

    shoal_batch_free(b);
    shoal_ns_close(ns);
    shoal_ns_close(log);
    shoal_close(db);
}

/* 4: empty batches, reuse, recommit. */
static void test_empty_batch_and_reuse(void **state)
{
    (void)state;
    shoal_db *db = test_open(4, 0);
    shoal_ns *ns = test_ns(db, "reuse", SHOAL_PLACE_SPREAD, 0);
    shoal_batch *b = new_batch(db);
    uint64_t seq = 999;
    assert_ok(shoal_batch_commit(b, NULL, &seq));
    assert_int_equal(seq, 0);
    test_put(ns, "x", "1");
    assert_ok(shoal_batch_commit(b, NULL, &seq));
    assert_int_equal(seq, 1);
    assert_int_equal(shoal_last_seq(db), 1);

    batch_put_str(b, ns, "first", "1");
    batch_put_str(b, ns, "second", "2");
    assert_ok(shoal_batch_commit(b, NULL, &seq));
    assert_int_equal(seq, 2);
    /* Still holding its contents: committing again writes them again, with a new seq. */
    assert_int_equal(shoal_batch_count(b), 2);
    assert_ok(shoal_delete(ns, "first", 5, NULL));
    assert_ok(shoal_batch_commit(b, NULL, &seq));
    assert_int_equal(seq, 4);
    test_expect_str(ns, NULL, "first", "1");
    assert_int_equal(key_seq_str(ns, NULL, "second"), 4);

    /* Cleared, it is empty, and only what is added next is committed. */
    shoal_batch_clear(b);
    assert_int_equal(shoal_batch_count(b), 0);
    assert_ok(shoal_delete(ns, "first", 5, NULL));
    assert_ok(shoal_batch_commit(b, NULL, &seq));
    assert_int_equal(seq, shoal_last_seq(db));
    test_expect_absent_str(ns, NULL, "first");
    /* Reuse with much more data than before (the arena grows, old offsets must not
     * leak into new operations). */
    uint8_t value[5000];
    for (int i = 0; i < 300; i++) {
        char key[32];
        snprintf(key, sizeof key, "bulk%03d", i);
        test_fill_pattern(value, sizeof value, (uint64_t)i);
        assert_ok(shoal_batch_put(b, ns, key, strlen(key), value, sizeof value));
    }
    assert_ok(shoal_batch_commit(b, NULL, &seq));
    for (int i = 0; i < 300; i++) {
        char key[32];
        snprintf(key, sizeof key, "bulk%03d", i);
        test_fill_pattern(value, sizeof value, (uint64_t)i);
        test_expect(ns, NULL, key, strlen(key), value, sizeof value);
    }
    test_expect_absent_str(ns, NULL, "first");
    shoal_batch_clear(b);
    batch_put_str(b, ns, "small", "s");
    assert_ok(shoal_batch_commit(b, NULL, NULL));
    test_expect_str(ns, NULL, "small", "s");
    assert_int_equal(test_count_keys(ns, NULL), 300 + 3);

    /* A batch of deletes of absent keys commits and changes no key. */
    shoal_batch_clear(b);
    batch_delete_str(b, ns, "nobody");
    batch_delete_str(b, ns, "nobody either");
    assert_int_equal(shoal_batch_count(b), 2);
    assert_ok(shoal_batch_commit(b, NULL, NULL));
    assert_int_equal(test_count_keys(ns, NULL), 300 + 3);

    shoal_batch_free(b);
    shoal_ns_close(ns);
    shoal_close(db);
}

/* 5: dropped namespaces and foreign handles. */
static void test_batch_dropped_and_foreign(void **state)
{
    (void)state;
    shoal_db *db = test_open(4, 0);
    shoal_db *other_db = test_open(4, 0);
    shoal_ns *keep = test_ns(db, "keep", SHOAL_PLACE_SPREAD, 0);
    shoal_ns *gone = test_ns(db, "gone", SHOAL_PLACE_PINNED, 0);
    shoal_ns *foreign = test_ns(other_db, "keep", SHOAL_PLACE_SPREAD, 0);
    test_put(keep, "k", "before");

    shoal_batch *b = new_batch(db);
    assert_code(shoal_batch_put(b, foreign, "k", 1, "v", 1), SHOAL_EINVAL);
    assert_code(shoal_batch_delete(b, foreign, "k", 1), SHOAL_EINVAL);
    assert_code(shoal_batch_require(b, foreign, "k", 1, 0), SHOAL_EINVAL);
    assert_int_equal(shoal_batch_count(b), 0);

    batch_put_str(b, keep, "k", "after");
    batch_put_str(b, gone, "g", "v");
    assert_ok(shoal_ns_drop(db, "gone"));
    uint64_t last = shoal_last_seq(db);
    assert_code(shoal_batch_commit(b, NULL, NULL), SHOAL_EDROPPED);
    assert_int_equal(shoal_last_seq(db), last);
    test_expect_str(keep, NULL, "k", "before");
    assert_code(shoal_batch_put(b, gone, "g", 1, "v", 1), SHOAL_EDROPPED);

    shoal_batch_free(b);
    shoal_ns_close(keep);
    shoal_ns_close(gone);
    shoal_ns_close(foreign);
    shoal_close(db);
    shoal_close(other_db);
}

/* A batch keeps what it needs of the namespaces it names: closing the handle used to add
 * an operation and dropping the namespace before the commit must give SHOAL_EDROPPED,
 * not a read of freed memory. Run in a child process: under ASan the failure is an abort
 * (heap-use-after-free in commit_ops), and the other tests should still run. */
static int commit_after_drop(void *ctx)
{
    shoal_db *db = ctx;
    shoal_ns_config cfg = {.kind = SHOAL_KIND_KV, .placement = SHOAL_PLACE_PINNED};
    shoal_ns *ns = NULL;
    shoal_batch *b = NULL;
    if (shoal_ns_open(db, "short-lived", &cfg, &ns) != 0 || shoal_batch_new(db, &b) != 0 ||
        shoal_batch_put(b, ns, "k", 1, "v", 1) != 0)
        return 1;
    shoal_ns_close(ns);
    if (shoal_ns_drop(db, "short-lived") != 0)
        return 2;
    int r = shoal_batch_commit(b, NULL, NULL);
    shoal_batch_free(b);
    return r == SHOAL_EDROPPED ? 0 : 3;
}

static void test_batch_outlives_its_namespace(void **state)
{
    (void)state;
    shoal_db *db = test_open(4, 0);
    int child = test_in_child(commit_after_drop, db);
    shoal_close(db);
    assert_int_equal(child, 0);
}

/* A large batch over every shard of a 64-shard database, mixing new keys, overwrites
 * and deletes, commits whole. */
static void test_large_batch(void **state)
{
    (void)state;
    shoal_db *db = test_open(64, 0);
    shoal_ns *ns = test_ns(db, "wide", SHOAL_PLACE_SPREAD, 0);
    int n = SHOAL_TEST_SCALE(20000, 5000);
    char key[32], value[32];
    for (int i = 0; i < n; i += 3) {
        snprintf(key, sizeof key, "k%06d", i);
        test_put(ns, key, "old");
    }
    shoal_snapshot *snap = NULL;
    assert_ok(shoal_snapshot_take(db, &snap));
    shoal_batch *b = new_batch(db);
    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof key, "k%06d", i);
        if (i % 6 == 0) {
            batch_delete_str(b, ns, key);
        } else {
            snprintf(value, sizeof value, "new%d", i);
            batch_put_str(b, ns, key, value);
        }
    }
    uint64_t seq;
    assert_ok(shoal_batch_commit(b, NULL, &seq));
    size_t live = 0;
    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof key, "k%06d", i);
        if (i % 6 == 0) {
            test_expect_absent_str(ns, NULL, key);
        } else {
            snprintf(value, sizeof value, "new%d", i);
            test_expect_str(ns, NULL, key, value);
            live++;
        }
    }
    assert_int_equal(test_count_keys(ns, NULL), live);
    assert_int_equal(test_count_keys(ns, snap), (size_t)(n + 2) / 3);
    unsigned active = 0;
    for (uint32_t s = 0; s < 64; s++) {
        shoal_shard_stats ss;
        assert_ok(shoal_stats_shard(db, s, &ss));
        active += ss.commits > 0;
    }
    assert_int_equal(active, 64);
    shoal_snapshot_release(snap);
    shoal_batch_free(b);
    shoal_ns_close(ns);
    shoal_close(db);
}

/* 6: a delete of a whole namespace inside a batch. */
static void run_delete_all(shoal_placement placement, bool snapshot_open)
{
    shoal_db *db = test_open(8, 0);
    shoal_ns *ns = test_ns(db, "cleared", placement, 0);
    shoal_ns *other = test_ns(db, "other", SHOAL_PLACE_SPREAD, 0);
    char key[32];
    for (int i = 0; i < 300; i++) {
        snprintf(key, sizeof key, "k%03d", i);
        test_put(ns, key, "old");
        test_put(other, key, "kept");
    }
    assert_ok(shoal_delete(ns, "k007", 4, NULL)); /* a tombstone among the keys */
    shoal_snapshot *before = NULL;
    assert_ok(shoal_snapshot_take(db, &before));
    shoal_snapshot *held = NULL;
    if (snapshot_open)
        assert_ok(shoal_snapshot_take(db, &held));

    /* A condition that fails: nothing changes. */
    shoal_batch *b = new_batch(db);
    batch_put_str(b, ns, "early", "x");
    assert_ok(shoal_batch_delete_all(b, ns));
    assert_ok(shoal_batch_require(b, other, "k001", 4, 1));
    assert_int_equal(shoal_batch_count(b), 2);
    uint64_t latest = shoal_last_seq(db);
    assert_code(shoal_batch_commit(b, NULL, NULL), SHOAL_ECONFLICT);
    assert_int_equal(shoal_last_seq(db), latest);
    assert_int_equal(test_count_keys(ns, NULL), 299);
    test_expect_absent_str(ns, NULL, "early");

    /* Earlier puts (of new keys and of stored ones) are deleted too; later ones stay. */
    shoal_batch_clear(b);
    batch_put_str(b, ns, "early", "x");
    batch_put_str(b, ns, "k010", "new");
    batch_put_str(b, other, "k011", "changed");
    assert_ok(shoal_batch_delete_all(b, ns));
    batch_put_str(b, ns, "late", "y");
    batch_put_str(b, ns, "k020", "again");
    uint64_t seq = 0;
    assert_ok(shoal_batch_commit(b, NULL, &seq));
    assert_int_equal(seq, latest + 1);
    assert_int_equal(test_count_keys(ns, NULL), 2);
    test_expect_str(ns, NULL, "late", "y");
    test_expect_str(ns, NULL, "k020", "again");
    test_expect_absent_str(ns, NULL, "early");
    test_expect_absent_str(ns, NULL, "k010");
    assert_int_equal(key_seq_str(ns, NULL, "late"), seq);
    uint64_t keys, bytes;
    test_ns_counts(ns, &keys, &bytes);
    assert_int_equal(keys, 2);
    assert_int_equal(bytes, strlen("late") + 1 + strlen("k020") + 5);
    assert_int_equal(test_count_keys(other, NULL), 300);
    test_expect_str(other, NULL, "k011", "changed");
    test_expect_str(other, NULL, "k012", "kept");
    assert_int_equal(test_count_keys(ns, before), 299);
    test_expect_str(ns, before, "k010", "old");
    test_expect_absent_str(ns, before, "k007");

    /* Nothing left to delete and nothing else: no seq drawn. */
    shoal_batch_clear(b);
    assert_ok(shoal_delete(ns, "late", 4, NULL));
    assert_ok(shoal_delete(ns, "k020", 4, NULL));
    latest = shoal_last_seq(db);
    assert_ok(shoal_batch_delete_all(b, ns));
    assert_ok(shoal_batch_commit(b, NULL, &seq));
    assert_int_equal(seq, latest);
    assert_int_equal(shoal_last_seq(db), latest);

    shoal_batch_free(b);
    shoal_snapshot_release(before);
    if (held)
        shoal_snapshot_release(held);
    shoal_compact_result compacted;
    assert_ok(shoal_compact(db, &compacted)); /* reclaims what the snapshots kept */
    assert_int_equal(test_count_keys(ns, NULL), 0);
    shoal_ns_close(ns);
    shoal_ns_close(other);
    shoal_close(db);
}

static void test_delete_all(void **state)
{
    (void)state;
    run_delete_all(SHOAL_PLACE_SPREAD, false);
    run_delete_all(SHOAL_PLACE_SPREAD, true);
    run_delete_all(SHOAL_PLACE_PINNED, false);
    run_delete_all(SHOAL_PLACE_PINNED, true);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cross_shard_batch_one_seq),
        cmocka_unit_test(test_repeated_keys_without_snapshot),
        cmocka_unit_test(test_repeated_keys_with_snapshot),
        cmocka_unit_test(test_require),
        cmocka_unit_test(test_empty_batch_and_reuse),
        cmocka_unit_test(test_batch_dropped_and_foreign),
        cmocka_unit_test(test_large_batch),
        cmocka_unit_test(test_batch_outlives_its_namespace),
        cmocka_unit_test(test_delete_all),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
