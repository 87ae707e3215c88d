/*
 * test_object_table.c -- NodeID encoding, tags (ABA), retire/reclaim, batches, directory
 * growth, lock-free resolve under concurrent writers, and progressive activation.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/object_table.h"

/* cmocka's assertions must not fail on another thread (they jump to the main thread's
 * stack); worker threads count failures here and the test asserts the count is 0. */
static atomic_int test_thread_failures;

#define THREAD_CHECK(condition)                                                            \
    do {                                                                                   \
        if (!(condition)) {                                                                \
            fprintf(stderr, "%s:%d: thread check failed: %s\n", __FILE__, __LINE__,         \
                    #condition);                                                           \
            atomic_fetch_add(&test_thread_failures, 1);                                    \
        }                                                                                  \
    } while (0)

/* Objects only need distinct, even addresses; their contents are never read. */
static _Alignas(16) uint64_t test_objects[4096];

static void *test_object(size_t i)
{
    return &test_objects[i % 4096];
}

/* ---------------------------------------------------------------------------------------
 * Encoding and tags.
 * ------------------------------------------------------------------------------------- */

static void test_node_id_round_trips(void **state)
{
    (void)state;
    const unsigned shards[] = {0, 1, 31, 62, 63};
    const uint64_t indexes[] = {0,
                                1,
                                0xffff,
                                0x10000,
                                (UINT64_C(1) << 32) - 1,
                                UINT64_C(1) << 32,
                                (UINT64_C(1) << 41),
                                (UINT64_C(1) << 42) - 1};
    const uint16_t tags[] = {0, 1, 2, 0x7fff, 0x8000, 0xfffe, 0xffff};
    for (size_t s = 0; s < sizeof(shards) / sizeof(shards[0]); s++)
        for (size_t i = 0; i < sizeof(indexes) / sizeof(indexes[0]); i++)
            for (size_t t = 0; t < sizeof(tags) / sizeof(tags[0]); t++) {
                node_id id = node_id_make(shards[s], indexes[i], tags[t]);
                assert_int_equal(node_id_shard(id), shards[s]);
                assert_int_equal(node_id_index(id), indexes[i]);
                assert_int_equal(node_id_tag(id), tags[t]);
            }
    /* The fields sit exactly where the layout says and do not bleed into each other. */
    assert_int_equal(node_id_make(0, 0, 0), 0);
    assert_int_equal(node_id_make(63, (UINT64_C(1) << 42) - 1, 0xffff), UINT64_MAX);
    assert_int_equal(node_id_make(63, 0, 0), UINT64_C(0xfc00000000000000));
    assert_int_equal(node_id_make(0, (UINT64_C(1) << 42) - 1, 0), UINT64_C(0x03ffffffffff0000));
    assert_int_equal(node_id_make(0, 0, 0xffff), UINT64_C(0xffff));
    assert_int_equal(node_id_make(5, 1, 1), (UINT64_C(5) << 58) | (UINT64_C(1) << 16) | 1);
    /* An index beyond 42 bits is cut, not carried into the shard. */
    assert_int_equal(node_id_shard(node_id_make(2, UINT64_C(1) << 42, 0)), 2);
    assert_int_equal(node_id_index(node_id_make(2, UINT64_C(1) << 42, 0)), 0);
}

static void test_tag_arithmetic(void **state)
{
    (void)state;
    assert_int_equal(node_id_tag_next(1), 2);
    assert_int_equal(node_id_tag_next(0x7fff), 0x8000);
    assert_int_equal(node_id_tag_next(0xfffe), 0xffff);
    assert_int_equal(node_id_tag_next(0xffff), 1); /* skips 0 */
    /* 65535 steps visit every non-zero tag once and come back. */
    uint16_t tag = 1;
    for (unsigned i = 0; i < 65535; i++) {
        tag = node_id_tag_next(tag);
        assert_int_not_equal(tag, 0);
        if (i < 65534)
            assert_int_not_equal(tag, 1);
    }
    assert_int_equal(tag, 1);
}

static void test_aba_and_single_tag_bump(void **state)
{
    (void)state;
    struct ot_part *p = ot_part_new(3);
    assert_non_null(p);
    node_id first, second, third;
    assert_int_equal(ot_alloc(p, test_object(1), &first), 0);
    assert_int_equal(node_id_shard(first), 3);
    assert_int_equal(node_id_index(first), 0);
    assert_int_equal(node_id_tag(first), 1); /* tags start at 1 */
    assert_ptr_equal(ot_resolve(p, first), test_object(1));
    assert_true(ot_validate(p, first));

    ot_free(p, first);
    assert_false(ot_validate(p, first));
    assert_null(ot_resolve(p, first));

    /* The same index comes back with the next tag; the old NodeID stays dead. */
    assert_int_equal(ot_alloc(p, test_object(2), &second), 0);
    assert_int_equal(node_id_index(second), node_id_index(first));
    assert_int_equal(node_id_tag(second), 2);
    assert_false(ot_validate(p, first));
    assert_null(ot_resolve(p, first));
    assert_ptr_equal(ot_resolve(p, second), test_object(2));

    /* Freeing a stale NodeID does nothing: no second bump, the live object survives. */
    ot_free(p, first);
    assert_ptr_equal(ot_resolve(p, second), test_object(2));
    /* A double free bumps once. */
    ot_free(p, second);
    ot_free(p, second);
    assert_int_equal(ot_alloc(p, test_object(3), &third), 0);
    assert_int_equal(node_id_index(third), node_id_index(first));
    assert_int_equal(node_id_tag(third), 3);

    struct ot_stats stats;
    ot_part_stats(p, &stats);
    assert_int_equal(stats.allocated, 3);
    assert_int_equal(stats.freed, 2);
    assert_int_equal(stats.live, 1);

    /* Never-issued NodeIDs: tag 0, other shards, unused indexes, beyond the directory. */
    assert_false(ot_validate(p, NODE_ID_NONE));
    assert_false(ot_validate(p, node_id_make(3, 0, 0)));
    assert_false(ot_validate(p, node_id_make(4, 0, 3)));
    assert_false(ot_validate(p, node_id_make(3, 1, 1)));
    assert_false(ot_validate(p, node_id_make(3, 70000, 1)));
    assert_false(ot_validate(p, node_id_make(3, UINT64_C(1) << 40, 1)));
    ot_free(p, node_id_make(3, 999, 1)); /* harmless */
    ot_part_free(p);
    ot_part_free(NULL);
}

static void test_tag_wraps_past_zero(void **state)
{
    (void)state;
    struct ot_part *p = ot_part_new(0);
    node_id very_first, id;
    assert_int_equal(ot_alloc(p, test_object(0), &very_first), 0);
    ot_free(p, very_first);
    uint16_t expected = node_id_tag_next(1);
    /* One index cycled 65535 times: each free bumps once, 0xffff is followed by 1. */
    for (unsigned cycle = 1; cycle < 65535; cycle++) {
        assert_int_equal(ot_alloc(p, test_object(cycle), &id), 0);
        assert_int_equal(node_id_index(id), 0);
        assert_int_equal(node_id_tag(id), expected);
        if (cycle == 65534)
            assert_int_equal(node_id_tag(id), 0xffff);
        ot_free(p, id);
        expected = node_id_tag_next(expected);
    }
    assert_int_equal(expected, 1);
    /* After exactly 65535 frees the tag is back at 1: the documented limit of ABA safety. */
    assert_int_equal(ot_alloc(p, test_object(7), &id), 0);
    assert_int_equal(id, very_first);
    ot_part_free(p);
}

static void test_set_address(void **state)
{
    (void)state;
    struct ot_part *p = ot_part_new(1);
    node_id id, other;
    assert_int_equal(ot_alloc(p, test_object(10), &id), 0);
    assert_int_equal(ot_alloc(p, test_object(11), &other), 0);
    ot_set_address(p, id, test_object(20));
    assert_ptr_equal(ot_resolve(p, id), test_object(20));
    assert_ptr_equal(ot_resolve(p, other), test_object(11));
    /* Moving does not change the tag; a stale NodeID cannot move the new object. */
    ot_free(p, id);
    node_id reused;
    assert_int_equal(ot_alloc(p, test_object(30), &reused), 0);
    assert_int_equal(node_id_index(reused), node_id_index(id));
    ot_set_address(p, id, test_object(40));
    assert_ptr_equal(ot_resolve(p, reused), test_object(30));
    ot_part_free(p);
}

/* A prefetch is only a hint: for live, stale, foreign and never-allocated handles it
 * changes nothing and touches nothing it must not (the sanitizer builds would say). */
static void test_prefetch_changes_nothing(void **state)
{
    (void)state;
    struct ot_part *p = ot_part_new(1);
    node_id live, freed;
    assert_int_equal(ot_alloc(p, test_object(50), &live), 0);
    assert_int_equal(ot_alloc(p, test_object(51), &freed), 0);
    ot_free(p, freed);
    ot_prefetch(p, live);
    ot_prefetch(p, freed);
    ot_prefetch(p, node_id_make(2, node_id_index(live), node_id_tag(live))); /* other shard */
    ot_prefetch(p, node_id_make(1, 1000000, 1));                              /* no chunk yet */
    ot_prefetch(p, node_id_make(1, ((uint64_t)1 << NODE_ID_INDEX_BITS) - 1, 1)); /* the last */
    assert_ptr_equal(ot_resolve(p, live), test_object(50));
    assert_null(ot_resolve(p, freed));
    node_id next;
    assert_int_equal(ot_alloc(p, test_object(52), &next), 0);
    assert_int_equal(node_id_index(next), node_id_index(freed)); /* the free list is intact */
    ot_part_free(p);
}

/* ---------------------------------------------------------------------------------------
 * Retire and reclaim.
 * ------------------------------------------------------------------------------------- */

struct test_reclaim_log {
    size_t count;
    node_id ids[2048];
    void *addresses[2048];
    struct ot_part *part;
    bool allocate_inside;
};

static void test_reclaim_callback(void *ctx, node_id id, void *addr)
{
    struct test_reclaim_log *log = ctx;
    assert_true(log->count < 2048);
    /* The entry is still live while the callback runs. */
    if (log->part != NULL)
        assert_ptr_equal(ot_resolve(log->part, id), addr);
    if (log->allocate_inside) {
        /* The callback runs without the part's lock: it may use the part. */
        node_id scratch;
        assert_int_equal(ot_alloc(log->part, test_object(4000), &scratch), 0);
        ot_free(log->part, scratch);
    }
    log->ids[log->count] = id;
    log->addresses[log->count] = addr;
    log->count++;
}

static void test_retire_reclaim_horizons(void **state)
{
    (void)state;
    struct ot_part *p = ot_part_new(2);
    struct test_reclaim_log *log = calloc(1, sizeof(*log));
    log->part = p;
    node_id ids[10];
    const uint64_t epochs[10] = {1, 2, 2, 3, 5, 5, 6, 8, 9, 12};
    for (int i = 0; i < 10; i++) {
        assert_int_equal(ot_alloc(p, test_object(100 + i), &ids[i]), 0);
        assert_int_equal(ot_retire(p, ids[i], epochs[i]), 0);
    }
    assert_int_equal(ot_retired_count(p), 10);
    /* Nothing is visible below the oldest epoch. */
    assert_int_equal(ot_reclaim_before_epoch(p, 0, test_reclaim_callback, log), 0);
    assert_int_equal(log->count, 0);

    /* Horizon 5: epochs 1, 2, 2, 3, 5, 5 go, in retire order; 6 and later stay. */
    assert_int_equal(ot_reclaim_before_epoch(p, 5, test_reclaim_callback, log), 6);
    assert_int_equal(log->count, 6);
    for (int i = 0; i < 6; i++) {
        assert_int_equal(log->ids[i], ids[i]);
        assert_ptr_equal(log->addresses[i], test_object(100 + i));
        assert_false(ot_validate(p, ids[i]));
    }
    for (int i = 6; i < 10; i++)
        assert_true(ot_validate(p, ids[i]));
    assert_int_equal(ot_retired_count(p), 4);
    /* The same horizon again finds nothing new. */
    assert_int_equal(ot_reclaim_before_epoch(p, 5, test_reclaim_callback, log), 0);
    assert_int_equal(ot_reclaim_before_epoch(p, 7, test_reclaim_callback, log), 1);
    assert_int_equal(log->ids[6], ids[6]);
    /* A NULL callback just frees. */
    assert_int_equal(ot_reclaim_before_epoch(p, 100, NULL, NULL), 3);
    assert_int_equal(ot_retired_count(p), 0);
    for (int i = 0; i < 10; i++)
        assert_false(ot_validate(p, ids[i]));

    /* Each reclaim bumped each tag exactly once: the indexes come back with tag 2. */
    for (int i = 0; i < 10; i++) {
        node_id again;
        assert_int_equal(ot_alloc(p, test_object(200 + i), &again), 0);
        assert_int_equal(node_id_tag(again), 2);
    }
    struct ot_stats stats;
    ot_part_stats(p, &stats);
    assert_int_equal(stats.retired, 10);
    assert_int_equal(stats.reclaimed, 10);
    assert_int_equal(stats.freed, 10);
    assert_int_equal(stats.allocated, 20);
    assert_int_equal(stats.live, 10);
    free(log);
    ot_part_free(p);
}

static void test_reclaim_skips_stale_entries(void **state)
{
    (void)state;
    struct ot_part *p = ot_part_new(0);
    struct test_reclaim_log *log = calloc(1, sizeof(*log));
    log->part = p;
    node_id a, b, c, reused;
    assert_int_equal(ot_alloc(p, test_object(1), &a), 0);
    assert_int_equal(ot_alloc(p, test_object(2), &b), 0);
    assert_int_equal(ot_alloc(p, test_object(3), &c), 0);
    assert_int_equal(ot_retire(p, a, 1), 0);
    assert_int_equal(ot_retire(p, b, 2), 0);
    assert_int_equal(ot_retire(p, c, 3), 0);
    assert_int_equal(ot_retire(p, c, 4), 0); /* retired twice: reclaimed once */
    /* b is freed by other means and its index reused by a new object. */
    ot_free(p, b);
    assert_int_equal(ot_alloc(p, test_object(9), &reused), 0);
    assert_int_equal(node_id_index(reused), node_id_index(b));
    /* Retiring a NodeID that no longer validates queues nothing. */
    assert_int_equal(ot_retire(p, b, 2), 0);
    assert_int_equal(ot_retired_count(p), 4);

    assert_int_equal(ot_reclaim_before_epoch(p, 10, test_reclaim_callback, log), 2);
    assert_int_equal(log->count, 2);
    assert_int_equal(log->ids[0], a);
    assert_int_equal(log->ids[1], c);
    /* The new object in b's old entry was not touched. */
    assert_ptr_equal(ot_resolve(p, reused), test_object(9));
    assert_int_equal(ot_retired_count(p), 0);
    /* c's tag moved once: its index comes back with tag 2. */
    node_id after;
    assert_int_equal(ot_alloc(p, test_object(4), &after), 0);
    assert_int_equal(ot_alloc(p, test_object(5), &after), 0);
    assert_int_equal(node_id_index(after), node_id_index(c));
    assert_int_equal(node_id_tag(after), 2);
    struct ot_stats stats;
    ot_part_stats(p, &stats);
    assert_int_equal(stats.reclaimed, 2);
    assert_int_equal(stats.retired, 4);
    free(log);
    ot_part_free(p);
}

static void test_reclaim_out_of_order_epochs(void **state)
{
    (void)state;
    struct ot_part *p = ot_part_new(0);
    struct test_reclaim_log *log = calloc(1, sizeof(*log));
    log->part = p;
    log->allocate_inside = true;
    enum { COUNT = 1000 };
    node_id ids[COUNT];
    uint64_t epochs[COUNT];
    for (int i = 0; i < COUNT; i++) {
        /* A permutation of 0..999: epochs arrive out of order. */
        epochs[i] = ((uint64_t)i * 7919) % COUNT;
        assert_int_equal(ot_alloc(p, test_object(i), &ids[i]), 0);
        assert_int_equal(ot_retire(p, ids[i], epochs[i]), 0);
    }
    /* Horizon 499: exactly the 500 entries with epoch <= 499, in retire order, across
     * several batches of the reclaim loop. */
    assert_int_equal(ot_reclaim_before_epoch(p, 499, test_reclaim_callback, log), 500);
    size_t seen = 0;
    for (int i = 0; i < COUNT; i++) {
        if (epochs[i] <= 499) {
            assert_int_equal(log->ids[seen], ids[i]);
            seen++;
            assert_false(ot_validate(p, ids[i]));
        } else {
            assert_true(ot_validate(p, ids[i]));
        }
    }
    assert_int_equal(seen, 500);
    assert_int_equal(ot_retired_count(p), 500);
    /* The rest keep their retire order. */
    assert_int_equal(ot_reclaim_before_epoch(p, 999, test_reclaim_callback, log), 500);
    for (int i = 0; i < COUNT; i++) {
        if (epochs[i] > 499) {
            assert_int_equal(log->ids[seen], ids[i]);
            seen++;
        }
    }
    assert_int_equal(ot_retired_count(p), 0);
    free(log);
    ot_part_free(p);
}

static void test_reclaim_in_order_many_batches(void **state)
{
    (void)state;
    struct ot_part *p = ot_part_new(0);
    struct test_reclaim_log *log = calloc(1, sizeof(*log));
    log->part = p;
    enum { COUNT = 2000 };
    static node_id ids[COUNT];
    for (int i = 0; i < COUNT; i++) {
        assert_int_equal(ot_alloc(p, test_object(i), &ids[i]), 0);
        assert_int_equal(ot_retire(p, ids[i], (uint64_t)i / 2), 0);
    }
    /* Epochs 0..699 cover the first 1400 entries: more than five batches. */
    assert_int_equal(ot_reclaim_before_epoch(p, 699, test_reclaim_callback, log), 1400);
    for (int i = 0; i < 1400; i++)
        assert_int_equal(log->ids[i], ids[i]);
    assert_true(ot_validate(p, ids[1400]));
    assert_int_equal(ot_retired_count(p), 600);
    assert_int_equal(ot_reclaim_before_epoch(p, UINT64_MAX, NULL, NULL), 600);
    free(log);
    ot_part_free(p);
}

/* ---------------------------------------------------------------------------------------
 * Batches and directory growth.
 * ------------------------------------------------------------------------------------- */

static void test_batch_allocation(void **state)
{
    (void)state;
    struct ot_part *p = ot_part_new(7);
    enum { COUNT = 1000 };
    void *addrs[COUNT];
    node_id ids[COUNT];
    for (int i = 0; i < COUNT; i++)
        addrs[i] = test_object(i);
    assert_int_equal(ot_alloc_batch(p, addrs, COUNT, ids), 0);
    for (int i = 0; i < COUNT; i++) {
        assert_int_equal(node_id_shard(ids[i]), 7);
        assert_int_equal(node_id_index(ids[i]), (uint64_t)i);
        assert_ptr_equal(ot_resolve(p, ids[i]), addrs[i]);
    }
    assert_int_equal(ot_alloc_batch(p, addrs, 0, ids), 0);
    /* Free 50; the next batch reuses them first, oldest free first, then fresh ones. */
    for (int i = 0; i < 50; i++)
        ot_free(p, ids[i * 3]);
    node_id more[100];
    assert_int_equal(ot_alloc_batch(p, addrs, 100, more), 0);
    for (int i = 0; i < 50; i++) {
        assert_int_equal(node_id_index(more[i]), (uint64_t)i * 3);
        assert_int_equal(node_id_tag(more[i]), 2);
    }
    for (int i = 50; i < 100; i++)
        assert_int_equal(node_id_index(more[i]), (uint64_t)(COUNT + i - 50));
    struct ot_stats stats;
    ot_part_stats(p, &stats);
    assert_int_equal(stats.live, COUNT + 50);
    ot_part_free(p);
}

static void test_directory_growth(void **state)
{
    (void)state;
    struct ot_part *p = ot_part_new(0);
    enum { COUNT = 3 * 65536 + 17 };
    node_id *ids = malloc(COUNT * sizeof(node_id));
    struct ot_stats before;
    ot_part_stats(p, &before);
    /* Half one at a time, half in one batch that spans a chunk boundary. */
    for (int i = 0; i < COUNT / 2; i++)
        assert_int_equal(ot_alloc(p, test_object(i), &ids[i]), 0);
    void **addrs = malloc((COUNT - COUNT / 2) * sizeof(void *));
    for (int i = COUNT / 2; i < COUNT; i++)
        addrs[i - COUNT / 2] = test_object(i);
    assert_int_equal(ot_alloc_batch(p, addrs, COUNT - COUNT / 2, &ids[COUNT / 2]), 0);
    for (int i = 0; i < COUNT; i++) {
        assert_int_equal(node_id_index(ids[i]), (uint64_t)i);
        assert_ptr_equal(ot_resolve(p, ids[i]), test_object(i));
    }
    struct ot_stats stats;
    ot_part_stats(p, &stats);
    assert_int_equal(stats.live, COUNT);
    /* Four chunks of 2^16 entries of 8 bytes. */
    assert_true(stats.memory >= before.memory + 4 * 65536 * 8);
    for (int i = 0; i < COUNT; i++)
        ot_free(p, ids[i]);
    for (int i = 0; i < COUNT; i++)
        assert_false(ot_validate(p, ids[i]));
    ot_part_stats(p, &stats);
    assert_int_equal(stats.live, 0);
    free(addrs);
    free(ids);
    ot_part_free(p);
}

/* ---------------------------------------------------------------------------------------
 * Lock-free resolve racing writers.
 * ------------------------------------------------------------------------------------- */

enum { RACE_SLOTS = 256, RACE_WRITER_ROUNDS = 20000, RACE_READER_ROUNDS = 200000 };

struct race {
    struct ot_part *part;
    struct object_table *table;
    /* Each slot holds the NodeID of the object whose home is test_objects[slot] (or its
     * moved copy test_objects[slot + RACE_SLOTS]), or 0. */
    _Atomic node_id slots[RACE_SLOTS];
    atomic_ulong resolved;
    atomic_int writers_done;
};

struct race_worker {
    struct race *race;
    unsigned id;
};

static void *race_writer(void *arg)
{
    struct race_worker *worker = arg;
    struct race *race = worker->race;
    uint64_t random = 0x12345 + worker->id;
    for (unsigned round = 0; round < RACE_WRITER_ROUNDS; round++) {
        random = random * 6364136223846793005ull + 1442695040888963407ull;
        /* Writers own alternate slots, so a slot has one writer. */
        unsigned slot = (unsigned)((random >> 33) % (RACE_SLOTS / 2)) * 2 + worker->id;
        node_id id = atomic_load_explicit(&race->slots[slot], memory_order_relaxed);
        if (id != 0) {
            if (round % 3 == 0) {
                ot_set_address(race->part, id, &test_objects[slot + RACE_SLOTS]);
                continue;
            }
            atomic_store_explicit(&race->slots[slot], 0, memory_order_release);
            ot_free(race->part, id);
        } else {
            int result = ot_alloc(race->part, &test_objects[slot], &id);
            THREAD_CHECK(result == 0);
            atomic_store_explicit(&race->slots[slot], id, memory_order_release);
        }
    }
    atomic_fetch_add(&race->writers_done, 1);
    return NULL;
}

static void *race_reader(void *arg)
{
    struct race_worker *worker = arg;
    struct race *race = worker->race;
    node_id remembered[RACE_SLOTS];
    memset(remembered, 0, sizeof(remembered));
    unsigned long resolved = 0;
    /* At least RACE_READER_ROUNDS, and on until both writers are done (bounded), so that a
     * reader scheduled before the writers still meets their objects. */
    for (unsigned round = 0;
         round < RACE_READER_ROUNDS ||
         (atomic_load(&race->writers_done) < 2 && round < 100u * RACE_READER_ROUNDS);
         round++) {
        unsigned slot = (round * 31 + worker->id * 7) % RACE_SLOTS;
        node_id id = atomic_load_explicit(&race->slots[slot], memory_order_acquire);
        /* Check both the current NodeID and one seen earlier (likely stale by now): either
         * resolves to NULL or to that slot's object, never to another object. */
        node_id candidates[2] = {id, remembered[slot]};
        for (int c = 0; c < 2; c++) {
            if (candidates[c] == 0)
                continue;
            void *addr = ot_resolve(race->part, candidates[c]);
            if (addr != NULL) {
                THREAD_CHECK(addr == &test_objects[slot] ||
                             addr == &test_objects[slot + RACE_SLOTS]);
                resolved++;
            }
            if (ot_validate(race->part, candidates[c]))
                resolved++;
        }
        if (id != 0)
            remembered[slot] = id;
    }
    atomic_fetch_add(&race->resolved, resolved);
    return NULL;
}

static void test_lock_free_resolve_races_writers(void **state)
{
    (void)state;
    struct race *race = calloc(1, sizeof(*race));
    race->part = ot_part_new(0);
    pthread_t threads[4];
    struct race_worker workers[4];
    for (unsigned i = 0; i < 4; i++) {
        workers[i] = (struct race_worker){.race = race, .id = i % 2};
        assert_int_equal(
            pthread_create(&threads[i], NULL, i < 2 ? race_writer : race_reader, &workers[i]),
            0);
    }
    for (unsigned i = 0; i < 4; i++)
        pthread_join(threads[i], NULL);
    assert_int_equal(atomic_load(&test_thread_failures), 0);
    /* Every published NodeID still resolves to its slot's object; the counts add up. */
    uint64_t live = 0;
    for (unsigned slot = 0; slot < RACE_SLOTS; slot++) {
        node_id id = atomic_load(&race->slots[slot]);
        if (id == 0)
            continue;
        live++;
        void *addr = ot_resolve(race->part, id);
        assert_true(addr == &test_objects[slot] || addr == &test_objects[slot + RACE_SLOTS]);
    }
    struct ot_stats stats;
    ot_part_stats(race->part, &stats);
    assert_int_equal(stats.live, live);
    assert_true(stats.allocated > 0);
    /* The readers did look at live objects, not only at empty slots. */
    assert_true(atomic_load(&race->resolved) > 0);
    ot_part_free(race->part);
    free(race);
}

/* Four threads allocate through progressive activation and free through the table while
 * resolving each other's NodeIDs. */
enum { TABLE_RACE_ROUNDS = 20000 };

static void *table_race_worker(void *arg)
{
    struct race_worker *worker = arg;
    struct race *race = worker->race;
    for (unsigned round = 0; round < TABLE_RACE_ROUNDS; round++) {
        unsigned slot = (round * 4 + worker->id) % RACE_SLOTS; /* own slots: id mod 4 */
        node_id id = atomic_load_explicit(&race->slots[slot], memory_order_relaxed);
        if (id != 0) {
            THREAD_CHECK(ot_table_resolve(race->table, id) == &test_objects[slot]);
            atomic_store_explicit(&race->slots[slot], 0, memory_order_release);
            ot_table_free(race->table, id);
            THREAD_CHECK(ot_table_resolve(race->table, id) == NULL);
        } else {
            THREAD_CHECK(ot_alloc_auto(race->table, &test_objects[slot], &id) == 0);
            THREAD_CHECK(node_id_shard(id) < 4);
            atomic_store_explicit(&race->slots[slot], id, memory_order_release);
        }
        /* Look at a neighbour's slot: NULL or its object. */
        unsigned other = (slot + 1) % RACE_SLOTS;
        node_id seen = atomic_load_explicit(&race->slots[other], memory_order_acquire);
        if (seen != 0) {
            void *addr = ot_table_resolve(race->table, seen);
            THREAD_CHECK(addr == NULL || addr == &test_objects[other]);
        }
    }
    return NULL;
}

static void test_table_concurrent_auto_allocation(void **state)
{
    (void)state;
    struct race *race = calloc(1, sizeof(*race));
    race->table = ot_new(4, 8);
    assert_non_null(race->table);
    pthread_t threads[4];
    struct race_worker workers[4];
    for (unsigned i = 0; i < 4; i++) {
        workers[i] = (struct race_worker){.race = race, .id = i};
        assert_int_equal(pthread_create(&threads[i], NULL, table_race_worker, &workers[i]), 0);
    }
    for (unsigned i = 0; i < 4; i++)
        pthread_join(threads[i], NULL);
    assert_int_equal(atomic_load(&test_thread_failures), 0);
    uint64_t live = 0, parts_live = 0;
    for (unsigned slot = 0; slot < RACE_SLOTS; slot++) {
        node_id id = atomic_load(&race->slots[slot]);
        if (id != 0) {
            live++;
            assert_ptr_equal(ot_table_resolve(race->table, id), &test_objects[slot]);
        }
    }
    for (unsigned shard = 0; shard < 4; shard++) {
        struct ot_stats stats;
        ot_part_stats(ot_part(race->table, shard), &stats);
        parts_live += stats.live;
    }
    assert_int_equal(parts_live, live);
    unsigned active = ot_active_shards(race->table);
    assert_true(active >= 1 && active <= 4 && (active & (active - 1)) == 0);
    ot_destroy(race->table);
    free(race);
}

/* ---------------------------------------------------------------------------------------
 * Progressive activation.
 * ------------------------------------------------------------------------------------- */

struct auto_request {
    struct object_table *table;
    void *addr;
    node_id id;
    int result;
};

static void *auto_once(void *arg)
{
    struct auto_request *request = arg;
    request->result = ot_alloc_auto(request->table, request->addr, &request->id);
    return NULL;
}

/* Allocates once from a fresh thread (which draws the next ticket) and returns the id. */
static node_id auto_from_new_thread(struct object_table *t, void *addr)
{
    struct auto_request request = {.table = t, .addr = addr};
    pthread_t thread;
    assert_int_equal(pthread_create(&thread, NULL, auto_once, &request), 0);
    pthread_join(thread, NULL);
    assert_int_equal(request.result, 0);
    return request.id;
}

static void test_progressive_activation(void **state)
{
    (void)state;
    /* Step 16: threshold max(1, 16 / 32) = 1 contended acquisition per window. */
    struct object_table *t = ot_new(8, 16);
    assert_non_null(t);
    assert_int_equal(ot_active_shards(t), 1);
    node_id id;
    /* A lone thread never contends: 1000 allocations stay on shard 0. */
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(ot_alloc_auto(t, test_object(i), &id), 0);
        assert_int_equal(node_id_shard(id), 0);
        ot_table_free(t, id);
    }
    assert_int_equal(ot_active_shards(t), 1);
    /* Calls 1..1000 were made; checks come at calls 1, 17, ..., 993, then 1009. */
    for (int i = 1000; i < 1008; i++) {
        assert_int_equal(ot_alloc_auto(t, test_object(i), &id), 0);
        ot_table_free(t, id);
    }
    /* Contention appears; nothing changes until this thread's next check. */
    ot_part_note_contention(ot_part(t, 0), 1);
    assert_int_equal(ot_active_shards(t), 1);
    assert_int_equal(ot_alloc_auto(t, test_object(1), &id), 0); /* call 1009: the check */
    assert_int_equal(ot_active_shards(t), 2);
    /* This thread (ticket 0) stays on shard 0; the next thread (ticket 1) takes shard 1. */
    assert_int_equal(node_id_shard(id), 0);
    node_id other = auto_from_new_thread(t, test_object(2));
    assert_int_equal(node_id_shard(other), 1);
    assert_ptr_equal(ot_table_resolve(t, other), test_object(2));

    /* Without new contention the next windows leave it at 2. */
    for (int i = 0; i < 64; i++)
        assert_int_equal(ot_alloc_auto(t, test_object(3), &id), 0);
    assert_int_equal(ot_active_shards(t), 2);
    /* Each window with contention doubles once, up to nshards. */
    unsigned expected = 2;
    for (int window = 0; window < 5; window++) {
        ot_part_note_contention(ot_part(t, 0), 1);
        for (int i = 0; i < 16; i++)
            assert_int_equal(ot_alloc_auto(t, test_object(4), &id), 0);
        expected = expected * 2 > 8 ? 8 : expected * 2;
        assert_int_equal(ot_active_shards(t), expected);
    }
    /* Tickets 2 and 3 land on shards 2 and 3 of the 8 now active. */
    assert_int_equal(node_id_shard(auto_from_new_thread(t, test_object(5))), 2);
    assert_int_equal(node_id_shard(auto_from_new_thread(t, test_object(6))), 3);
    ot_destroy(t);
}

static void test_activation_threshold(void **state)
{
    (void)state;
    /* Step 64: the rule needs 2 contended acquisitions in a window. */
    struct object_table *t = ot_new(2, 64);
    node_id id;
    assert_int_equal(ot_alloc_auto(t, test_object(0), &id), 0); /* first call: the reset */
    ot_part_note_contention(ot_part(t, 0), 1);
    for (int i = 0; i < 64; i++)
        assert_int_equal(ot_alloc_auto(t, test_object(0), &id), 0);
    assert_int_equal(ot_active_shards(t), 1);
    ot_part_note_contention(ot_part(t, 0), 2);
    for (int i = 0; i < 64; i++)
        assert_int_equal(ot_alloc_auto(t, test_object(0), &id), 0);
    assert_int_equal(ot_active_shards(t), 2);
    /* Never beyond nshards. */
    ot_part_note_contention(ot_part(t, 0), 1000);
    for (int i = 0; i < 256; i++)
        assert_int_equal(ot_alloc_auto(t, test_object(0), &id), 0);
    assert_int_equal(ot_active_shards(t), 2);
    ot_destroy(t);
}

static void test_thread_state_is_per_instance(void **state)
{
    (void)state;
    struct object_table *a = ot_new(8, 4);
    struct object_table *b = ot_new(8, 4);
    node_id id;
    /* Make this thread's state in a point at a part other than 0: a helper takes ticket 0,
     * this thread ticket 1, and contention activates 2 shards. */
    (void)auto_from_new_thread(a, test_object(0));
    assert_int_equal(ot_alloc_auto(a, test_object(1), &id), 0);
    ot_part_note_contention(ot_part(a, 0), 1);
    ot_part_note_contention(ot_part(a, 1), 1);
    for (int i = 0; i < 4; i++)
        assert_int_equal(ot_alloc_auto(a, test_object(1), &id), 0);
    assert_int_equal(ot_active_shards(a), 2);
    assert_int_equal(node_id_shard(id), 1);

    /* Alternate between the tables: each allocation lands in its own table. */
    enum { ROUNDS = 200 };
    static node_id a_ids[ROUNDS], b_ids[ROUNDS];
    for (int i = 0; i < ROUNDS; i++) {
        assert_int_equal(ot_alloc_auto(b, test_object(1000 + i), &b_ids[i]), 0);
        assert_int_equal(ot_alloc_auto(a, test_object(2000 + i), &a_ids[i]), 0);
        /* b has one active shard whatever a's state says. */
        assert_int_equal(node_id_shard(b_ids[i]), 0);
        assert_true(node_id_shard(a_ids[i]) < 2);
    }
    for (int i = 0; i < ROUNDS; i++) {
        assert_ptr_equal(ot_table_resolve(b, b_ids[i]), test_object(1000 + i));
        assert_ptr_equal(ot_table_resolve(a, a_ids[i]), test_object(2000 + i));
    }
    struct ot_stats stats;
    ot_part_stats(ot_part(b, 0), &stats);
    assert_int_equal(stats.live, ROUNDS);
    assert_int_equal(ot_active_shards(b), 1);
    uint64_t a_live = 0;
    for (unsigned shard = 0; shard < 2; shard++) {
        ot_part_stats(ot_part(a, shard), &stats);
        a_live += stats.live;
    }
    assert_int_equal(a_live, 1 + 1 + 4 + ROUNDS);

    /* A table created after another is destroyed (possibly at the same address) gets a
     * fresh state: its first allocation goes to its own shard 0. */
    ot_destroy(a);
    struct object_table *c = ot_new(8, 4);
    assert_int_equal(ot_alloc_auto(c, test_object(7), &id), 0);
    assert_int_equal(node_id_shard(id), 0);
    assert_ptr_equal(ot_table_resolve(c, id), test_object(7));
    ot_destroy(c);
    ot_destroy(b);
}

static void test_exhausted_window_does_not_leak_into_another_table(void **state)
{
    (void)state;
    /* Two tables created one after the other have neighbouring instance ids. A thread that
     * used up its window in the second (countdown 0) and then allocates in the first must
     * take the slow path, not borrow its way into a match with the other table's state. */
    struct object_table *first = ot_new(2, 4);
    struct object_table *second = ot_new(2, 4);
    node_id id;
    for (int i = 0; i < 4; i++) /* the reset, then 3 more: the countdown is now 0 */
        assert_int_equal(ot_alloc_auto(second, test_object(1), &id), 0);
    assert_int_equal(ot_alloc_auto(first, test_object(2), &id), 0);
    assert_ptr_equal(ot_table_resolve(first, id), test_object(2));
    struct ot_stats stats;
    ot_part_stats(ot_part(second, 0), &stats);
    assert_int_equal(stats.live, 4);
    ot_part_stats(ot_part(first, 0), &stats);
    assert_int_equal(stats.live, 1);
    /* And the other way round. */
    for (int i = 0; i < 3; i++)
        assert_int_equal(ot_alloc_auto(first, test_object(3), &id), 0);
    assert_int_equal(ot_alloc_auto(second, test_object(4), &id), 0);
    assert_ptr_equal(ot_table_resolve(second, id), test_object(4));
    ot_part_stats(ot_part(second, 0), &stats);
    assert_int_equal(stats.live, 5);
    ot_destroy(first);
    ot_destroy(second);
}

static void test_table_routing_and_limits(void **state)
{
    (void)state;
    assert_null(ot_new(0, 0));
    assert_null(ot_new(3, 0));
    assert_null(ot_new(65, 0));
    assert_null(ot_new(128, 0));
    ot_destroy(NULL);
    struct object_table *t = ot_new(4, 0);
    assert_non_null(t);
    assert_null(ot_part(t, 4));
    assert_non_null(ot_part(t, 3));
    assert_ptr_equal(ot_part(t, 3), ot_part(t, 3));
    node_id id;
    assert_int_equal(ot_alloc_in(t, 4, test_object(0), &id), -EINVAL);
    assert_int_equal(ot_alloc_in(t, 2, test_object(5), &id), 0);
    assert_int_equal(node_id_shard(id), 2);
    assert_ptr_equal(ot_table_resolve(t, id), test_object(5));
    assert_ptr_equal(ot_resolve(ot_part(t, 2), id), test_object(5));
    /* The same index and tag in another shard is another NodeID. */
    node_id elsewhere = node_id_make(1, node_id_index(id), node_id_tag(id));
    assert_null(ot_table_resolve(t, elsewhere));
    /* NodeIDs naming parts never used or beyond nshards resolve to nothing, free nothing. */
    assert_null(ot_table_resolve(t, node_id_make(40, 0, 1)));
    ot_table_free(t, node_id_make(40, 0, 1));
    ot_table_free(t, node_id_make(1, 0, 1));
    ot_table_free(t, id);
    assert_null(ot_table_resolve(t, id));
    /* The default activation step: the first 1024 calls of a thread make one check. */
    for (int i = 0; i < 1024; i++) {
        assert_int_equal(ot_alloc_auto(t, test_object(i), &id), 0);
        ot_table_free(t, id);
    }
    ot_part_note_contention(ot_part(t, 0), 32);
    assert_int_equal(ot_alloc_auto(t, test_object(0), &id), 0);
    assert_int_equal(ot_active_shards(t), 2);
    ot_destroy(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_node_id_round_trips),
        cmocka_unit_test(test_tag_arithmetic),
        cmocka_unit_test(test_aba_and_single_tag_bump),
        cmocka_unit_test(test_tag_wraps_past_zero),
        cmocka_unit_test(test_set_address),
        cmocka_unit_test(test_prefetch_changes_nothing),
        cmocka_unit_test(test_retire_reclaim_horizons),
        cmocka_unit_test(test_reclaim_skips_stale_entries),
        cmocka_unit_test(test_reclaim_out_of_order_epochs),
        cmocka_unit_test(test_reclaim_in_order_many_batches),
        cmocka_unit_test(test_batch_allocation),
        cmocka_unit_test(test_directory_growth),
        cmocka_unit_test(test_lock_free_resolve_races_writers),
        cmocka_unit_test(test_table_concurrent_auto_allocation),
        cmocka_unit_test(test_progressive_activation),
        cmocka_unit_test(test_activation_threshold),
        cmocka_unit_test(test_thread_state_is_per_instance),
        cmocka_unit_test(test_exhausted_window_does_not_leak_into_another_table),
        cmocka_unit_test(test_table_routing_and_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
