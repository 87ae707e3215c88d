/*
 * test_cache_lines.c -- writers on different shards write no common cache line through the
 * structures of the write path (ARCHITECTURE.md invariant 6, for the memory system: two
 * writers in namespaces on different shards never wait on the same lock, and should not
 * wait on the same line either).
 *
 * What is pinned here, after two threads wrote into pinned namespaces of two tenants on
 * different shards:
 *   1. Every shard's struct and segment allocator start a cache line; the allocators of
 *      two shards are on different lines.
 *   2. Every part of a namespace (one per shard, written on every write of that shard)
 *      fills a cache line of its own, apart from the namespace's header.
 *   3. A tenant's usage counters (written by its writers) start a line apart from its
 *      limits (read by its writers), and two tenants share no line.
 *   4. The global seq is alone on its line: nothing else written or read per write sits
 *      there.
 *   5. Each thread's state starts a line, and the reading flags are alone on theirs.
 *
 * The checks are on addresses and layouts, not on timings: a regression (a calloc back in
 * place of the aligned allocation, a counter added next to seq) fails here on any machine.
 * How much each shared line costs is measured by shoal-bench's disjoint line
 * (docs/BENCHMARKS.md), never asserted.
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

#include "core/internal.h"
#include "test_util.h"

#define WRITES 1000

static uintptr_t line_of(const void *p)
{
    return (uintptr_t)p / CACHE_LINE;
}

static bool line_aligned(const void *p)
{
    return (uintptr_t)p % CACHE_LINE == 0;
}

struct writer {
    shoal_ns *ns;
    int rc;
};

static void *writer_run(void *arg)
{
    struct writer *w = arg;
    for (int i = 0; i < WRITES && w->rc == 0; i++) {
        char key[16];
        snprintf(key, sizeof key, "k%d", i);
        w->rc = shoal_put(w->ns, key, strlen(key), "value", 5, NULL);
    }
    return NULL;
}

static void test_disjoint_writers_share_no_line(void **state)
{
    (void)state;
    shoal_db *db;
    assert_ok(shoal_open(NULL, NULL, &db));
    shoal_quota quota;
    shoal_quota_unlimited(&quota);
    uint32_t tenants[2];
    assert_ok(shoal_tenant_create(db, "one", &quota, &tenants[0]));
    assert_ok(shoal_tenant_create(db, "two", &quota, &tenants[1]));
    shoal_ns *ns[2];
    for (int i = 0; i < 2; i++) {
        shoal_ns_config config = {.kind = SHOAL_KIND_KV, .placement = SHOAL_PLACE_PINNED,
                                  .tenant = tenants[i]};
        char name[16];
        snprintf(name, sizeof name, "ns%d", i);
        assert_ok(shoal_ns_open(db, name, &config, &ns[i]));
    }
    if (db->config.shards < 2) {
        /* One shard: nothing to keep apart (the default is 4 per core, at least 4). */
        shoal_ns_close(ns[0]);
        shoal_ns_close(ns[1]);
        assert_ok(shoal_close(db));
        skip();
    }
    assert_int_not_equal(ns[0]->ns->shard, ns[1]->ns->shard);

    struct writer writers[2] = {{ns[0], 0}, {ns[1], 0}};
    pthread_t threads[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&threads[i], NULL, writer_run, &writers[i]), 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_join(threads[i], NULL), 0);
    assert_ok(writers[0].rc);
    assert_ok(writers[1].rc);

    /* 1. Shards and their allocators. */
    struct shard *shards[2];
    for (int i = 0; i < 2; i++) {
        shards[i] = atomic_load(&db->shards[ns[i]->ns->shard]);
        assert_non_null(shards[i]);
        assert_true(line_aligned(shards[i]));
        assert_int_equal(sizeof(struct shard) % CACHE_LINE, 0);
        assert_true(line_aligned(shards[i]->segments));
    }
    assert_true(line_of(shards[0]->segments) != line_of(shards[1]->segments));

    /* 2. Namespace parts: a line each, none shared with the header. */
    assert_int_equal(sizeof(struct ns_part), CACHE_LINE);
    assert_int_equal(offsetof(struct namespace, parts) % CACHE_LINE, 0);
    for (int i = 0; i < 2; i++) {
        struct namespace *n = ns[i]->ns;
        assert_true(line_aligned(n));
        for (unsigned s = 0; s < db->config.shards; s++)
            assert_true(line_aligned(&n->parts[s]));
        assert_int_equal(atomic_load(&n->parts[n->shard].keys), WRITES);
    }

    /* 3. Tenants: usage apart from limits, and from each other. */
    struct tenant *t[2] = {ns[0]->ns->tenant, ns[1]->ns->tenant};
    assert_ptr_not_equal(t[0], t[1]);
    for (int i = 0; i < 2; i++) {
        assert_true(line_aligned(t[i]));
        assert_true(line_aligned(&t[i]->keys));
        assert_true(line_of(&t[i]->max_ops) != line_of(&t[i]->keys));
        assert_int_equal(atomic_load(&t[i]->keys), WRITES);
    }

    /* 4. seq alone on its line. */
    assert_true(line_aligned(&db->seq));
    assert_true(line_of(&db->snapshots_open) != line_of(&db->seq));
    assert_true(line_of(&db->shard_mask) != line_of(&db->seq));
    assert_int_equal(atomic_load(&db->seq), 2 * WRITES);

    /* 5. Thread states. */
    unsigned threads_seen = 0;
    for (unsigned i = 0; i < MAX_THREAD_STATES; i++) {
        struct thread_state *ts = db_thread_at(db, i);
        if (!ts)
            continue;
        threads_seen++;
        assert_true(line_aligned(ts));
        assert_true(line_of(&ts->db) != line_of(ts->reading));
    }
    /* The second thread may have taken the state the first one left. */
    assert_true(threads_seen >= 1);

    shoal_ns_close(ns[0]);
    shoal_ns_close(ns[1]);
    assert_ok(shoal_close(db));
}

/* Allocators made one after another (as two shards' are when first used) each start a
 * line of their own even when the heap would have put them side by side. */
static void test_allocators_line_aligned(void **state)
{
    (void)state;
    struct segment_allocator *sa[8];
    for (int i = 0; i < 8; i++) {
        sa[i] = segment_new();
        assert_non_null(sa[i]);
        assert_true(line_aligned(sa[i]));
        for (int j = 0; j < i; j++)
            assert_true(line_of(sa[i]) != line_of(sa[j]));
    }
    for (int i = 0; i < 8; i++)
        segment_destroy(sa[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_disjoint_writers_share_no_line),
        cmocka_unit_test(test_allocators_line_aligned),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
