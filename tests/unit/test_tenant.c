/*
 * test_tenant.c -- tenants and their quotas (shoal_tenant_*, shoal_stats_tenant): keys,
 * bytes and operations per second.
 *
 * What is pinned here (ARCHITECTURE.md invariant 7: a write that would exceed a quota is
 * refused before it takes effect and changes nothing):
 *   1. Tenants are created, found, described; names are unique; the default tenant 0 has
 *      no limits and refuses a quota.
 *   2. SHOAL_EQUOTA on keys and on bytes, for single puts and for batches, with nothing
 *      changed afterwards: values, counts, the tenant's usage, the latest seq.
 *   3. At the limit, overwrites that do not grow usage and deletes are allowed; a batch
 *      that frees as much as it adds passes. A lowered quota keeps existing usage.
 *   4. SHOAL_ERATE: with a small operations quota, some operation in a bounded loop is
 *      refused (the loop never depends on timing to pass), and a refused write stores
 *      nothing.
 *   5. Concurrent writers never push a tenant past its key quota.
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

static uint32_t new_tenant(shoal_db *db, const char *name, uint64_t max_keys,
                           uint64_t max_bytes, uint64_t max_ops)
{
    shoal_quota q = {.max_keys = max_keys, .max_bytes = max_bytes,
                     .max_ops_per_second = max_ops};
    uint32_t id = UINT32_MAX;
    assert_ok(shoal_tenant_create(db, name, &q, &id));
    assert_true(id != 0 && id != UINT32_MAX);
    return id;
}

static shoal_tenant_stats tenant_stats(shoal_db *db, uint32_t id)
{
    shoal_tenant_stats ts;
    assert_ok(shoal_stats_tenant(db, id, &ts));
    return ts;
}

static void test_create_find_quota(void **state)
{
    (void)state;
    shoal_db *db = test_open(4, 0);
    uint32_t id = 99;
    assert_ok(shoal_tenant_find(db, "default", &id));
    assert_int_equal(id, 0);
    shoal_quota q;
    assert_ok(shoal_tenant_get_quota(db, 0, &q));
    assert_true(q.max_keys == SHOAL_UNLIMITED && q.max_bytes == SHOAL_UNLIMITED &&
                q.max_ops_per_second == SHOAL_UNLIMITED);
    shoal_quota limited = {.max_keys = 5, .max_bytes = 500, .max_ops_per_second = 1000};
    assert_code(shoal_tenant_set_quota(db, 0, &limited), SHOAL_EINVAL);
    assert_ok(shoal_tenant_get_quota(db, 0, &q));
    assert_int_equal(q.max_keys, SHOAL_UNLIMITED);

    uint32_t alice = new_tenant(db, "alice", 10, 1000, SHOAL_UNLIMITED);
    uint32_t bob = UINT32_MAX;
    assert_ok(shoal_tenant_create(db, "bob", NULL, &bob));
    assert_true(bob != alice && bob != 0);
    assert_ok(shoal_tenant_find(db, "alice", &id));
    assert_int_equal(id, alice);
    assert_ok(shoal_tenant_find(db, "bob", &id));
    assert_int_equal(id, bob);
    assert_code(shoal_tenant_find(db, "carol", &id), SHOAL_ENOTFOUND);
    assert_code(shoal_tenant_create(db, "alice", NULL, &id), SHOAL_EEXIST);
    assert_code(shoal_tenant_create(db, "default", NULL, &id), SHOAL_EEXIST);

    assert_ok(shoal_tenant_get_quota(db, alice, &q));
    assert_int_equal(q.max_keys, 10);
    assert_int_equal(q.max_bytes, 1000);
    assert_int_equal(q.max_ops_per_second, SHOAL_UNLIMITED);
    assert_ok(shoal_tenant_get_quota(db, bob, &q));
    assert_int_equal(q.max_keys, SHOAL_UNLIMITED);
    assert_ok(shoal_tenant_set_quota(db, bob, &limited));
    assert_ok(shoal_tenant_get_quota(db, bob, &q));
    assert_int_equal(q.max_keys, 5);
    assert_int_equal(q.max_bytes, 500);
    assert_int_equal(q.max_ops_per_second, 1000);
    assert_code(shoal_tenant_set_quota(db, 777, &limited), SHOAL_ENOTFOUND);
    assert_code(shoal_tenant_get_quota(db, 777, &q), SHOAL_ENOTFOUND);
    shoal_tenant_stats ts;
    assert_code(shoal_stats_tenant(db, 777, &ts), SHOAL_ENOTFOUND);

    /* Names: 1..SHOAL_MAX_NAME bytes. */
    char name[SHOAL_MAX_NAME + 2];
    memset(name, 'n', sizeof name);
    name[SHOAL_MAX_NAME + 1] = 0;
    assert_code(shoal_tenant_create(db, name, NULL, &id), SHOAL_EINVAL);
    name[SHOAL_MAX_NAME] = 0;
    assert_ok(shoal_tenant_create(db, name, NULL, &id));
    assert_code(shoal_tenant_create(db, "", NULL, &id), SHOAL_EINVAL);

    ts = tenant_stats(db, alice);
    assert_int_equal(ts.id, alice);
    assert_string_equal(ts.name, "alice");
    assert_int_equal(ts.quota.max_keys, 10);
    assert_int_equal(ts.keys, 0);
    assert_int_equal(ts.namespaces, 0);
    shoal_db_stats st;
    assert_ok(shoal_stats(db, &st));
    assert_int_equal(st.tenants, 4);

    /* A namespace of an unknown tenant cannot be created. */
    shoal_ns_config cfg = {.kind = SHOAL_KIND_KV, .tenant = 777};
    shoal_ns *ns = (shoal_ns *)1;
    assert_true(shoal_ns_open(db, "orphan", &cfg, &ns) < 0);
    assert_null(ns);
    shoal_close(db);
}

/* 2 and 3 for keys: the limit, overwrites at the limit, deletes, namespaces sharing it. */
static void test_key_quota(void **state)
{
    (void)state;
    shoal_db *db = test_open(8, 0);
    uint32_t alice = new_tenant(db, "alice", 10, SHOAL_UNLIMITED, SHOAL_UNLIMITED);
    shoal_ns *pinned = test_ns(db, "alice-pinned", SHOAL_PLACE_PINNED, alice);
    shoal_ns *spread = test_ns(db, "alice-spread", SHOAL_PLACE_SPREAD, alice);
    shoal_ns *other = test_ns(db, "free", SHOAL_PLACE_SPREAD, 0);
    char key[32];
    for (int i = 0; i < 10; i++) {
        snprintf(key, sizeof key, "k%d", i);
        test_put(i % 2 ? spread : pinned, key, "v");
    }
    uint64_t seq = shoal_last_seq(db);
    assert_code(shoal_put(pinned, "k10", 3, "v", 1, NULL), SHOAL_EQUOTA);
    assert_code(shoal_put(spread, "k11", 3, "v", 1, NULL), SHOAL_EQUOTA);
    test_expect_absent_str(pinned, NULL, "k10");
    test_expect_absent_str(spread, NULL, "k11");
    uint64_t keys, bytes;
    test_ns_counts(pinned, &keys, &bytes);
    assert_int_equal(keys, 5);
    test_ns_counts(spread, &keys, &bytes);
    assert_int_equal(keys, 5);
    shoal_tenant_stats ts = tenant_stats(db, alice);
    assert_int_equal(ts.keys, 10);
    assert_int_equal(ts.namespaces, 2);
    assert_true(ts.quota_refusals >= 2);
    shoal_db_stats st;
    assert_ok(shoal_stats(db, &st));
    assert_true(st.quota_refusals >= 2);

    /* Overwrites at the limit add no key: allowed, even growing (bytes are unlimited). */
    test_put(pinned, "k0", "a much longer value than before");
    test_expect_str(pinned, NULL, "k0", "a much longer value than before");
    /* Other tenants are not limited by alice's quota. */
    for (int i = 0; i < 50; i++) {
        snprintf(key, sizeof key, "other%d", i);
        test_put(other, key, "v");
    }
    /* A delete frees a key for a new one, in either namespace. */
    assert_ok(shoal_delete(spread, "k1", 2, NULL));
    test_put(pinned, "k10", "v");
    assert_code(shoal_put(spread, "k1", 2, "v", 1, NULL), SHOAL_EQUOTA);
    ts = tenant_stats(db, alice);
    assert_int_equal(ts.keys, 10);

    /* A refused put leaves the latest seq alone (checked last: see the report). */
    seq = shoal_last_seq(db);
    assert_code(shoal_put(spread, "k99", 3, "v", 1, NULL), SHOAL_EQUOTA);
    uint64_t seq_after = shoal_last_seq(db);
    shoal_ns_close(pinned);
    shoal_ns_close(spread);
    shoal_ns_close(other);
    shoal_close(db);
    assert_int_equal(seq_after, seq);
}

/* 2 and 3 for bytes: key + value bytes, exactly at the limit, shrinking and growing
 * overwrites, a lowered quota. */
static void test_byte_quota(void **state)
{
    (void)state;
    shoal_db *db = test_open(4, 0);
    uint32_t t = new_tenant(db, "bytes", SHOAL_UNLIMITED, 100, SHOAL_UNLIMITED);
    shoal_ns *ns = test_ns(db, "b", SHOAL_PLACE_SPREAD, t);
    char value[128];
    memset(value, 'x', sizeof value);
    assert_ok(shoal_put(ns, "k1", 2, value, 48, NULL)); /* 50 */
    assert_ok(shoal_put(ns, "k2", 2, value, 48, NULL)); /* 100: exactly the limit */
    assert_code(shoal_put(ns, "k3", 2, NULL, 0, NULL), SHOAL_EQUOTA);
    assert_code(shoal_put(ns, "k2", 2, value, 49, NULL), SHOAL_EQUOTA); /* grows by 1 */
    test_expect(ns, NULL, "k2", 2, value, 48);
    shoal_tenant_stats ts = tenant_stats(db, t);
    assert_int_equal(ts.bytes, 100);
    assert_int_equal(ts.keys, 2);

    /* Shrinking is allowed and frees room for others. */
    assert_ok(shoal_put(ns, "k1", 2, value, 8, NULL)); /* 10 */
    assert_ok(shoal_put(ns, "k3", 2, value, 38, NULL)); /* 40 */
    ts = tenant_stats(db, t);
    assert_int_equal(ts.bytes, 100);

    /* A lowered quota keeps the usage; growth is refused, shrinking and deletes work. */
    shoal_quota q = {.max_keys = SHOAL_UNLIMITED, .max_bytes = 10,
                     .max_ops_per_second = SHOAL_UNLIMITED};
    assert_ok(shoal_tenant_set_quota(db, t, &q));
    test_expect(ns, NULL, "k3", 2, value, 38);
    assert_code(shoal_put(ns, "k4", 2, value, 1, NULL), SHOAL_EQUOTA);
    assert_code(shoal_put(ns, "k3", 2, value, 39, NULL), SHOAL_EQUOTA);
    assert_ok(shoal_put(ns, "k3", 2, value, 30, NULL));
    assert_ok(shoal_delete(ns, "k2", 2, NULL));
    assert_ok(shoal_delete(ns, "k3", 2, NULL));
    ts = tenant_stats(db, t);
    assert_int_equal(ts.bytes, 10);
    assert_int_equal(ts.keys, 1);
    assert_code(shoal_put(ns, "k5", 2, NULL, 0, NULL), SHOAL_EQUOTA);

    /* Dropping the namespace gives its usage back. */
    assert_ok(shoal_ns_drop(db, "b"));
    ts = tenant_stats(db, t);
    assert_int_equal(ts.bytes, 0);
    assert_int_equal(ts.keys, 0);
    assert_int_equal(ts.namespaces, 0);
    shoal_ns *again = test_ns(db, "b2", SHOAL_PLACE_PINNED, t);
    assert_ok(shoal_put(again, "k", 1, value, 9, NULL));
    shoal_ns_close(again);
    shoal_ns_close(ns);
    shoal_close(db);
}

/* 2 and 3 for batches: a refused batch changes nothing anywhere (its writes to other
 * tenants' namespaces included); a batch that frees what it adds passes at the limit. */
static void test_batch_quota(void **state)
{
    (void)state;
    shoal_db *db = test_open(8, 0);
    uint32_t a = new_tenant(db, "a", 5, 1000, SHOAL_UNLIMITED);
    uint32_t b = new_tenant(db, "b", 100, 1000, SHOAL_UNLIMITED);
    shoal_ns *na = test_ns(db, "na", SHOAL_PLACE_SPREAD, a);
    shoal_ns *nb = test_ns(db, "nb", SHOAL_PLACE_PINNED, b);
    shoal_ns *free_ns = test_ns(db, "free", SHOAL_PLACE_PINNED, 0);
    test_put(na, "a1", "1");
    test_put(na, "a2", "2");
    test_put(nb, "b1", "1");

    shoal_batch *batch = NULL;
    assert_ok(shoal_batch_new(db, &batch));
    char key[32];
    for (int i = 3; i <= 6; i++) { /* a would hold 6 keys: one too many */
        snprintf(key, sizeof key, "a%d", i);
        assert_ok(shoal_batch_put(batch, na, key, strlen(key), "v", 1));
    }
    assert_ok(shoal_batch_put(batch, nb, "b2", 2, "v", 1));
    assert_ok(shoal_batch_delete(batch, nb, "b1", 2));
    assert_ok(shoal_batch_put(batch, free_ns, "f", 1, "v", 1));
    assert_ok(shoal_batch_put(batch, na, "a1", 2, "changed", 7));
    uint64_t seq = shoal_last_seq(db);
    assert_code(shoal_batch_commit(batch, NULL, NULL), SHOAL_EQUOTA);
    for (int i = 3; i <= 6; i++) {
        snprintf(key, sizeof key, "a%d", i);
        test_expect_absent_str(na, NULL, key);
    }
    test_expect_str(na, NULL, "a1", "1");
    test_expect_absent_str(nb, NULL, "b2");
    test_expect_str(nb, NULL, "b1", "1");
    test_expect_absent_str(free_ns, NULL, "f");
    shoal_tenant_stats ta = tenant_stats(db, a), tb = tenant_stats(db, b);
    assert_int_equal(ta.keys, 2);
    assert_int_equal(ta.bytes, 6);
    assert_int_equal(tb.keys, 1);
    assert_int_equal(tb.bytes, 3);
    uint64_t keys, bytes;
    test_ns_counts(na, &keys, &bytes);
    assert_int_equal(keys, 2);

    /* The same batch without one put fits exactly (5 keys). */
    shoal_batch_clear(batch);
    for (int i = 3; i <= 5; i++) {
        snprintf(key, sizeof key, "a%d", i);
        assert_ok(shoal_batch_put(batch, na, key, strlen(key), "v", 1));
    }
    assert_ok(shoal_batch_put(batch, nb, "b2", 2, "v", 1));
    assert_ok(shoal_batch_commit(batch, NULL, NULL));
    assert_int_equal(tenant_stats(db, a).keys, 5);

    /* At the limit: adding two keys while deleting two passes (the batch is summed),
     * adding two while deleting one does not. */
    shoal_batch_clear(batch);
    assert_ok(shoal_batch_put(batch, na, "a6", 2, "v", 1));
    assert_ok(shoal_batch_put(batch, na, "a7", 2, "v", 1));
    assert_ok(shoal_batch_delete(batch, na, "a1", 2));
    assert_code(shoal_batch_commit(batch, NULL, NULL), SHOAL_EQUOTA);
    test_expect_str(na, NULL, "a1", "1");
    assert_ok(shoal_batch_delete(batch, na, "a2", 2));
    assert_ok(shoal_batch_commit(batch, NULL, NULL));
    test_expect_absent_str(na, NULL, "a1");
    test_expect_str(na, NULL, "a7", "v");
    assert_int_equal(tenant_stats(db, a).keys, 5);

    /* Another tenant's reservation, made first in the batch, is given back when a later
     * tenant's quota refuses the batch. */
    uint64_t b_keys = tenant_stats(db, b).keys, b_bytes = tenant_stats(db, b).bytes;
    shoal_batch_clear(batch);
    assert_ok(shoal_batch_put(batch, nb, "b3", 2, "v", 1));
    assert_ok(shoal_batch_put(batch, nb, "b4", 2, "v", 1));
    assert_ok(shoal_batch_put(batch, na, "a8", 2, "v", 1));
    assert_code(shoal_batch_commit(batch, NULL, NULL), SHOAL_EQUOTA);
    assert_int_equal(tenant_stats(db, b).keys, b_keys);
    assert_int_equal(tenant_stats(db, b).bytes, b_bytes);
    test_expect_absent_str(nb, NULL, "b3");
    /* The usage really was given back: b can still grow to its limit of 100 keys. */
    for (uint64_t i = b_keys; i < 100; i++) {
        snprintf(key, sizeof key, "bb%llu", (unsigned long long)i);
        test_put(nb, key, "v");
    }
    assert_code(shoal_put(nb, "one-too-many", 12, "v", 1, NULL), SHOAL_EQUOTA);

    /* A put followed by a delete of the same new key in one batch adds nothing. */
    shoal_batch_clear(batch);
    assert_ok(shoal_batch_put(batch, na, "ghost", 5, "v", 1));
    assert_ok(shoal_batch_delete(batch, na, "ghost", 5));
    assert_ok(shoal_batch_commit(batch, NULL, NULL));
    assert_int_equal(tenant_stats(db, a).keys, 5);
    test_expect_absent_str(na, NULL, "ghost");

    /* A refused batch leaves the latest seq alone (checked last: see the report). */
    shoal_batch_clear(batch);
    assert_ok(shoal_batch_put(batch, na, "over", 4, "v", 1));
    seq = shoal_last_seq(db);
    int result = shoal_batch_commit(batch, NULL, NULL);
    uint64_t seq_after = shoal_last_seq(db);
    shoal_batch_free(batch);
    shoal_ns_close(na);
    shoal_ns_close(nb);
    shoal_ns_close(free_ns);
    shoal_close(db);
    assert_code(result, SHOAL_EQUOTA);
    assert_int_equal(seq_after, seq);
}

/* 4: a small operations quota refuses some operation of a bounded loop. Whether a given
 * operation is refused depends on time; that some of a few thousand are, at 20 per
 * second, does not (unless the loop took minutes). */
static void test_rate_limit(void **state)
{
    (void)state;
    shoal_db *db = test_open(4, 0);
    uint32_t t = new_tenant(db, "slow", SHOAL_UNLIMITED, SHOAL_UNLIMITED, 20);
    shoal_ns *ns = test_ns(db, "slow", SHOAL_PLACE_SPREAD, t);
    shoal_ns *free_ns = test_ns(db, "fast", SHOAL_PLACE_SPREAD, 0);
    int refused_puts = 0, refused_gets = 0, stored = 0;
    char key[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof key, "k%d", i);
        int r = shoal_put(ns, key, strlen(key), "v", 1, NULL);
        if (r == SHOAL_ERATE) {
            refused_puts++;
            /* Nothing stored (the check itself may be refused too, that is fine). */
            int e = shoal_exists(ns, NULL, key, strlen(key));
            assert_true(e == 0 || e == SHOAL_ERATE);
        } else {
            assert_ok(r);
            stored++;
        }
        void *v;
        size_t vlen;
        r = shoal_get(ns, NULL, "k0", 2, &v, &vlen);
        if (r == SHOAL_ERATE)
            refused_gets++;
        else if (r == 0)
            shoal_free(v);
        else
            assert_code(r, SHOAL_ENOTFOUND);
        /* The default tenant is never limited. */
        assert_ok(shoal_put(free_ns, key, strlen(key), "v", 1, NULL));
    }
    assert_true(refused_puts > 0);
    assert_true(refused_gets > 0);
    assert_true(stored > 0);
    uint64_t keys, bytes;
    test_ns_counts(ns, &keys, &bytes);
    assert_int_equal(keys, (uint64_t)stored);
    shoal_tenant_stats ts = tenant_stats(db, t);
    assert_true(ts.quota_refusals >= (uint64_t)(refused_puts + refused_gets));
    assert_true(ts.ops >= 10000);
    test_ns_counts(free_ns, &keys, &bytes);
    assert_int_equal(keys, 5000);

    /* Batches are charged per operation. */
    shoal_batch *b = NULL;
    assert_ok(shoal_batch_new(db, &b));
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof key, "batch%d", i);
        assert_ok(shoal_batch_put(b, ns, key, strlen(key), "v", 1));
    }
    int batch_refused = 0;
    for (int i = 0; i < 100 && !batch_refused; i++) {
        int r = shoal_batch_commit(b, NULL, NULL);
        if (r == SHOAL_ERATE)
            batch_refused = 1;
        else
            assert_ok(r);
    }
    assert_true(batch_refused);
    /* Lifting the quota ends the refusals. */
    shoal_quota q;
    shoal_quota_unlimited(&q);
    assert_ok(shoal_tenant_set_quota(db, t, &q));
    for (int i = 0; i < 100; i++)
        assert_ok(shoal_put(ns, "k0", 2, "v", 1, NULL));
    shoal_batch_free(b);
    shoal_ns_close(ns);
    shoal_ns_close(free_ns);
    shoal_close(db);
}

/* The largest operations quota shoal_tenant_create accepts (UINT64_MAX / 2e9 per second)
 * must behave as "practically unlimited": a few operations, spaced by short idle periods,
 * are all allowed. The refill computes (idle ns) x (quota) in 64 bits, so this is where an
 * overflow in the token bucket would show. Run in a child: a signed overflow is undefined
 * behaviour, which the sanitizer build turns into an abort. */
struct rate_child {
    shoal_ns *ns;
};

static int large_rate_ops(void *ctx)
{
    struct rate_child *c = ctx;
    for (int i = 0; i < 4; i++) {
        if (shoal_put(c->ns, "k", 1, "v", 1, NULL) != 0)
            return 1;
        test_sleep_ms(60);
    }
    return 0;
}

static void test_rate_limit_largest_quota(void **state)
{
    (void)state;
    shoal_db *db = test_open(2, 0);
    uint64_t largest = UINT64_MAX / 2000000000ull;
    uint32_t t = new_tenant(db, "fast", SHOAL_UNLIMITED, SHOAL_UNLIMITED, largest);
    shoal_quota too_large = {.max_keys = SHOAL_UNLIMITED, .max_bytes = SHOAL_UNLIMITED,
                             .max_ops_per_second = largest + 1};
    uint32_t id;
    assert_code(shoal_tenant_create(db, "faster", &too_large, &id), SHOAL_EINVAL);
    struct rate_child c = {.ns = test_ns(db, "fast", SHOAL_PLACE_PINNED, t)};
    int child = test_in_child(large_rate_ops, &c);
    shoal_ns_close(c.ns);
    shoal_close(db);
    assert_int_equal(child, 0);
}

/* 5: writers on several threads race for the last keys of a quota; exactly the quota's
 * worth of puts succeed, the rest get SHOAL_EQUOTA, and the usage is exact. */
struct racer {
    shoal_ns *ns;
    int index;
    int successes, refusals, errors;
};

static void *racer_main(void *arg)
{
    struct racer *r = arg;
    char key[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof key, "t%d-%d", r->index, i);
        int e = shoal_put(r->ns, key, strlen(key), "v", 1, NULL);
        if (e == 0)
            r->successes++;
        else if (e == SHOAL_EQUOTA)
            r->refusals++;
        else
            r->errors++;
    }
    return NULL;
}

static void test_concurrent_quota(void **state)
{
    (void)state;
    shoal_db *db = test_open(8, 0);
    uint32_t t = new_tenant(db, "race", 1500, SHOAL_UNLIMITED, SHOAL_UNLIMITED);
    shoal_ns *ns = test_ns(db, "race", SHOAL_PLACE_SPREAD, t);
    enum { RACERS = 4 };
    struct racer racers[RACERS];
    pthread_t threads[RACERS];
    for (int i = 0; i < RACERS; i++) {
        racers[i] = (struct racer){.ns = ns, .index = i};
        assert_int_equal(pthread_create(&threads[i], NULL, racer_main, &racers[i]), 0);
    }
    int successes = 0, refusals = 0;
    for (int i = 0; i < RACERS; i++) {
        pthread_join(threads[i], NULL);
        assert_int_equal(racers[i].errors, 0);
        successes += racers[i].successes;
        refusals += racers[i].refusals;
    }
    assert_int_equal(successes, 1500);
    assert_int_equal(refusals, RACERS * 1000 - 1500);
    assert_int_equal(tenant_stats(db, t).keys, 1500);
    assert_int_equal(test_count_keys(ns, NULL), 1500);
    shoal_ns_close(ns);
    shoal_close(db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_find_quota),
        cmocka_unit_test(test_key_quota),
        cmocka_unit_test(test_byte_quota),
        cmocka_unit_test(test_batch_quota),
        cmocka_unit_test(test_rate_limit),
        cmocka_unit_test(test_rate_limit_largest_quota),
        cmocka_unit_test(test_concurrent_quota),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
