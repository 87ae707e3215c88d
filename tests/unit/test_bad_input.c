/*
 * test_bad_input.c -- every public function against bad input: NULL handles and pointers,
 * oversized and empty keys, bad options, bad directories, reserved kinds, handles used after
 * their namespace was dropped, snapshots of another database, and the names and messages
 * of every result code.
 *
 * Durable databases appear only where a directory is bad input: paths that cannot be a
 * database's directory, a directory another handle holds, durable-only calls on a memory
 * database. Their own behaviour is tested with the durability layer.
 *
 * The rule checked (shoal.h): a bad call returns a clear error (SHOAL_EINVAL unless a more
 * precise code applies) and changes nothing; the free, close and release functions accept
 * NULL and do nothing. After each group of bad calls the database is checked unchanged:
 * same latest seq, same keys, same values.
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

#include "durability_testing.h"
#include "test_util.h"

/* The state every test starts from and must end with: one namespace, one key. */
struct fixture {
    shoal_db *db;
    shoal_ns *ns;
    uint64_t seq;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    if (shoal_open(NULL, NULL, &f->db) != 0)
        return -1;
    shoal_ns_config cfg = {.kind = SHOAL_KIND_KV};
    if (shoal_ns_open(f->db, "ns", &cfg, &f->ns) != 0)
        return -1;
    if (shoal_put(f->ns, "key", 3, "value", 5, NULL) != 0)
        return -1;
    f->seq = shoal_last_seq(f->db);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    shoal_ns_close(f->ns);
    shoal_close(f->db);
    free(f);
    return 0;
}

/* Nothing changed: the seq, the one key and its value. */
static void expect_unchanged(struct fixture *f)
{
    assert_int_equal(shoal_last_seq(f->db), f->seq);
    test_expect_str(f->ns, NULL, "key", "value");
    assert_int_equal(test_count_keys(f->ns, NULL), 1);
}

static int callback(void *ctx, const void *value, size_t vlen)
{
    (void)ctx;
    (void)value;
    (void)vlen;
    fail_msg("get_with called its callback for a bad call");
    return 0;
}

static void test_null_options_and_open(void **state)
{
    (void)state;
    assert_code(shoal_options_new(NULL), SHOAL_EINVAL);
    assert_code(shoal_options_set(NULL, SHOAL_OPT_SHARDS, 4), SHOAL_EINVAL);
    uint64_t v;
    assert_code(shoal_options_get(NULL, SHOAL_OPT_SHARDS, &v), SHOAL_EINVAL);
    shoal_options *opts = NULL;
    assert_ok(shoal_options_new(&opts));
    assert_code(shoal_options_get(opts, SHOAL_OPT_SHARDS, NULL), SHOAL_EINVAL);
    shoal_options_free(opts);
    shoal_options_free(NULL);
    assert_code(shoal_open(NULL, NULL, NULL), SHOAL_EINVAL);
    assert_ok(shoal_close(NULL));
}

/* Options: shards must be a power of two in 1..64; snapshot slots at least 1; unknown
 * option numbers are refused by set and get; a refused set changes nothing. */
static void test_bad_options(void **state)
{
    (void)state;
    shoal_options *opts = NULL;
    assert_ok(shoal_options_new(&opts));
    uint64_t shards = 0;
    assert_ok(shoal_options_get(opts, SHOAL_OPT_SHARDS, &shards));
    assert_true(shards >= 1 && shards <= SHOAL_MAX_SHARDS && (shards & (shards - 1)) == 0);
    static const uint64_t bad_shards[] = {0, 3, 5, 6, 48, 63, 65, 96, 128, 256, UINT64_MAX};
    for (size_t i = 0; i < sizeof bad_shards / sizeof bad_shards[0]; i++)
        assert_code(shoal_options_set(opts, SHOAL_OPT_SHARDS, bad_shards[i]), SHOAL_EINVAL);
    uint64_t now = 0;
    assert_ok(shoal_options_get(opts, SHOAL_OPT_SHARDS, &now));
    assert_int_equal(now, shards);
    for (uint64_t good = 1; good <= 64; good *= 2) {
        assert_ok(shoal_options_set(opts, SHOAL_OPT_SHARDS, good));
        assert_ok(shoal_options_get(opts, SHOAL_OPT_SHARDS, &now));
        assert_int_equal(now, good);
    }
    assert_code(shoal_options_set(opts, SHOAL_OPT_SNAPSHOT_SLOTS, 0), SHOAL_EINVAL);
    assert_code(shoal_options_set(opts, SHOAL_OPT_SYNC, 0), SHOAL_EINVAL);
    assert_code(shoal_options_set(opts, SHOAL_OPT_SYNC, 5), SHOAL_EINVAL);
    assert_code(shoal_options_set(opts, SHOAL_OPT_SALVAGE, 2), SHOAL_EINVAL);
    assert_code(shoal_options_set(opts, SHOAL_OPT_ACTIVATION_STEP, 0), SHOAL_EINVAL);
    assert_code(shoal_options_set(opts, SHOAL_OPT_RECOVERY_THREADS, 0), SHOAL_EINVAL);
    assert_code(shoal_options_set(opts, SHOAL_OPT_RECOVERY_THREADS, 65), SHOAL_EINVAL);
    static const int unknown[] = {0, 13, 14, 99, -1, 1000000};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        assert_code(shoal_options_set(opts, (shoal_option)unknown[i], 1), SHOAL_EINVAL);
        assert_code(shoal_options_get(opts, (shoal_option)unknown[i], &now), SHOAL_EINVAL);
    }
    /* A database opened with the options has what they said. */
    assert_ok(shoal_options_set(opts, SHOAL_OPT_SHARDS, 2));
    shoal_db *db = NULL;
    assert_ok(shoal_open(NULL, opts, &db));
    shoal_options_free(opts); /* copied by shoal_open */
    shoal_db_stats st;
    assert_ok(shoal_stats(db, &st));
    assert_int_equal(st.shards, 2);
    shoal_close(db);
}

/* Directories a durable database cannot live in are refused with *out NULL; a directory
 * another handle holds is SHOAL_EBUSY; the durable-only calls refuse a memory database
 * and NULL handles. */
static void test_bad_directories(void **state)
{
    (void)state;
    shoal_db *db = (shoal_db *)1;
    int r = shoal_open("/dev/null/not-a-directory", NULL, &db);
    assert_true(r < 0);
    assert_null(db);
    assert_non_null(shoal_error_detail());

    char dir[4096], file[4200];
    assert_int_equal(testing_make_dir(dir, sizeof dir, "bad-input"), 0);
    snprintf(file, sizeof file, "%s/plain-file", dir);
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    fputs("not a database", f);
    fclose(f);
    db = (shoal_db *)1;
    r = shoal_open(file, NULL, &db);
    assert_true(r < 0);
    assert_null(db);

    char home[4300];
    snprintf(home, sizeof home, "%s/db", dir);
    shoal_db *first = NULL;
    assert_ok(shoal_open(home, NULL, &first));
    shoal_db *second = (shoal_db *)1;
    assert_code(shoal_open(home, NULL, &second), SHOAL_EBUSY);
    assert_null(second);
    assert_code(shoal_persist(first, dir), SHOAL_EINVAL); /* already durable */
    assert_ok(shoal_close(first));
    assert_ok(shoal_open(home, NULL, &second)); /* free again once closed */
    assert_ok(shoal_close(second));

    shoal_db *memory = test_open(2, 0);
    assert_code(shoal_checkpoint(memory), SHOAL_ENOTSUP);
    assert_code(shoal_checkpoint(NULL), SHOAL_EINVAL);
    assert_code(shoal_persist(NULL, dir), SHOAL_EINVAL);
    assert_code(shoal_persist(memory, NULL), SHOAL_EINVAL);
    assert_code(shoal_persist(memory, home), SHOAL_EEXIST); /* holds a database */
    shoal_close(memory);
    testing_remove_tree(dir);
}

static void test_null_handles_everywhere(void **state)
{
    struct fixture *f = *state;
    void *value = NULL;
    size_t vlen = 0;
    uint64_t seq = 0;
    uint32_t id = 0;
    shoal_quota q;
    shoal_quota_unlimited(&q);
    char buf[16];

    /* Tenants. */
    assert_code(shoal_tenant_create(NULL, "t", NULL, &id), SHOAL_EINVAL);
    assert_code(shoal_tenant_create(f->db, NULL, NULL, &id), SHOAL_EINVAL);
    assert_code(shoal_tenant_create(f->db, "t", NULL, NULL), SHOAL_EINVAL);
    assert_code(shoal_tenant_find(NULL, "default", &id), SHOAL_EINVAL);
    assert_code(shoal_tenant_find(f->db, NULL, &id), SHOAL_EINVAL);
    assert_code(shoal_tenant_find(f->db, "default", NULL), SHOAL_EINVAL);
    assert_code(shoal_tenant_set_quota(NULL, 1, &q), SHOAL_EINVAL);
    assert_code(shoal_tenant_get_quota(NULL, 0, &q), SHOAL_EINVAL);
    assert_code(shoal_tenant_get_quota(f->db, 0, NULL), SHOAL_EINVAL);
    shoal_quota_unlimited(NULL);
    assert_code(shoal_tenant_find(f->db, "t", &id), SHOAL_ENOTFOUND); /* none was made */
    uint32_t real;
    assert_ok(shoal_tenant_create(f->db, "real", NULL, &real));
    assert_code(shoal_tenant_set_quota(f->db, real, NULL), SHOAL_EINVAL);

    /* Namespaces. */
    shoal_ns_config cfg = {.kind = SHOAL_KIND_KV};
    shoal_ns *ns = (shoal_ns *)1;
    assert_code(shoal_ns_open(NULL, "x", &cfg, &ns), SHOAL_EINVAL);
    assert_null(ns);
    assert_code(shoal_ns_open(f->db, NULL, &cfg, &ns), SHOAL_EINVAL);
    assert_code(shoal_ns_open(f->db, "x", &cfg, NULL), SHOAL_EINVAL);
    assert_code(shoal_ns_open(f->db, "", &cfg, &ns), SHOAL_EINVAL);
    shoal_ns_close(NULL);
    assert_code(shoal_ns_drop(NULL, "ns"), SHOAL_EINVAL);
    assert_code(shoal_ns_drop(f->db, NULL), SHOAL_EINVAL);
    shoal_ns_info info;
    assert_code(shoal_ns_info_get(NULL, &info), SHOAL_EINVAL);
    assert_code(shoal_ns_info_get(f->ns, NULL), SHOAL_EINVAL);
    size_t count = 0;
    assert_code(shoal_ns_list(NULL, UINT32_MAX, &info, 1, &count), SHOAL_EINVAL);
    assert_code(shoal_ns_list(f->db, UINT32_MAX, &info, 1, NULL), SHOAL_EINVAL);
    assert_code(shoal_ns_list(f->db, UINT32_MAX, NULL, 1, &count), SHOAL_EINVAL);

    /* Snapshots. */
    shoal_snapshot *snap = (shoal_snapshot *)1;
    assert_code(shoal_snapshot_take(NULL, &snap), SHOAL_EINVAL);
    assert_code(shoal_snapshot_take(f->db, NULL), SHOAL_EINVAL);
    shoal_snapshot_release(NULL);
    assert_int_equal(shoal_snapshot_seq(NULL), 0);
    assert_int_equal(shoal_last_seq(NULL), 0);

    /* Reads and writes with a NULL namespace. */
    assert_code(shoal_put(NULL, "key", 3, "v", 1, NULL), SHOAL_EINVAL);
    assert_code(shoal_get(NULL, NULL, "key", 3, &value, &vlen), SHOAL_EINVAL);
    assert_code(shoal_get_into(NULL, NULL, "key", 3, buf, sizeof buf, &vlen), SHOAL_EINVAL);
    assert_code(shoal_get_with(NULL, NULL, "key", 3, callback, NULL), SHOAL_EINVAL);
    assert_code(shoal_delete(NULL, "key", 3, NULL), SHOAL_EINVAL);
    assert_code(shoal_exists(NULL, NULL, "key", 3), SHOAL_EINVAL);
    assert_code(shoal_key_seq(NULL, NULL, "key", 3, &seq), SHOAL_EINVAL);

    /* NULL keys, empty keys, NULL outputs. */
    assert_code(shoal_put(f->ns, NULL, 3, "v", 1, NULL), SHOAL_EINVAL);
    assert_code(shoal_put(f->ns, "key", 0, "v", 1, NULL), SHOAL_EINVAL);
    assert_code(shoal_put(f->ns, NULL, 0, "v", 1, NULL), SHOAL_EINVAL);
    assert_code(shoal_put(f->ns, "key", 3, NULL, 1, NULL), SHOAL_EINVAL);
    assert_code(shoal_get(f->ns, NULL, NULL, 3, &value, &vlen), SHOAL_EINVAL);
    assert_code(shoal_get(f->ns, NULL, "key", 0, &value, &vlen), SHOAL_EINVAL);
    assert_code(shoal_get(f->ns, NULL, "key", 3, NULL, &vlen), SHOAL_EINVAL);
    assert_code(shoal_get(f->ns, NULL, "key", 3, &value, NULL), SHOAL_EINVAL);
    assert_code(shoal_get_into(f->ns, NULL, NULL, 3, buf, sizeof buf, &vlen), SHOAL_EINVAL);
    assert_code(shoal_get_into(f->ns, NULL, "key", 3, buf, sizeof buf, NULL), SHOAL_EINVAL);
    assert_code(shoal_get_into(f->ns, NULL, "key", 3, NULL, 16, &vlen), SHOAL_EINVAL);
    assert_code(shoal_get_with(f->ns, NULL, "key", 3, NULL, NULL), SHOAL_EINVAL);
    assert_code(shoal_get_with(f->ns, NULL, NULL, 3, callback, NULL), SHOAL_EINVAL);
    assert_code(shoal_delete(f->ns, NULL, 3, NULL), SHOAL_EINVAL);
    assert_code(shoal_delete(f->ns, "key", 0, NULL), SHOAL_EINVAL);
    assert_code(shoal_exists(f->ns, NULL, NULL, 3), SHOAL_EINVAL);
    assert_code(shoal_exists(f->ns, NULL, "key", 0), SHOAL_EINVAL);
    assert_code(shoal_key_seq(f->ns, NULL, NULL, 3, &seq), SHOAL_EINVAL);
    assert_code(shoal_key_seq(f->ns, NULL, "key", 3, NULL), SHOAL_EINVAL);
    shoal_free(NULL);

    /* Batches. */
    shoal_batch *b = (shoal_batch *)1;
    assert_code(shoal_batch_new(NULL, &b), SHOAL_EINVAL);
    assert_code(shoal_batch_new(f->db, NULL), SHOAL_EINVAL);
    assert_ok(shoal_batch_new(f->db, &b));
    assert_code(shoal_batch_put(NULL, f->ns, "k", 1, "v", 1), SHOAL_EINVAL);
    assert_code(shoal_batch_put(b, NULL, "k", 1, "v", 1), SHOAL_EINVAL);
    assert_code(shoal_batch_put(b, f->ns, NULL, 1, "v", 1), SHOAL_EINVAL);
    assert_code(shoal_batch_put(b, f->ns, "k", 0, "v", 1), SHOAL_EINVAL);
    assert_code(shoal_batch_put(b, f->ns, "k", 1, NULL, 1), SHOAL_EINVAL);
    assert_code(shoal_batch_delete(NULL, f->ns, "k", 1), SHOAL_EINVAL);
    assert_code(shoal_batch_delete(b, NULL, "k", 1), SHOAL_EINVAL);
    assert_code(shoal_batch_delete(b, f->ns, NULL, 1), SHOAL_EINVAL);
    assert_code(shoal_batch_delete(b, f->ns, "k", 0), SHOAL_EINVAL);
    assert_code(shoal_batch_delete_all(NULL, f->ns), SHOAL_EINVAL);
    assert_code(shoal_batch_delete_all(b, NULL), SHOAL_EINVAL);
    assert_code(shoal_batch_require(NULL, f->ns, "k", 1, 0), SHOAL_EINVAL);
    assert_code(shoal_batch_require(b, NULL, "k", 1, 0), SHOAL_EINVAL);
    assert_code(shoal_batch_require(b, f->ns, NULL, 1, 0), SHOAL_EINVAL);
    assert_int_equal(shoal_batch_count(b), 0);
    assert_int_equal(shoal_batch_count(NULL), 0);
    assert_code(shoal_batch_commit(NULL, NULL, &seq), SHOAL_EINVAL);
    assert_ok(shoal_batch_commit(b, NULL, NULL)); /* still empty: commits nothing */
    shoal_batch_clear(NULL);
    shoal_batch_free(b);
    shoal_batch_free(NULL);

    /* Iterators. */
    shoal_iter *it = (shoal_iter *)1;
    assert_code(shoal_iter_new(NULL, NULL, &it), SHOAL_EINVAL);
    assert_code(shoal_iter_new(f->ns, NULL, NULL), SHOAL_EINVAL);
    shoal_iter_options o = {.start = NULL, .start_len = 3};
    assert_code(shoal_iter_new(f->ns, &o, &it), SHOAL_EINVAL);
    o = (shoal_iter_options){.end = NULL, .end_len = 1};
    assert_code(shoal_iter_new(f->ns, &o, &it), SHOAL_EINVAL);
    o = (shoal_iter_options){.prefix = NULL, .prefix_len = 2};
    assert_code(shoal_iter_new(f->ns, &o, &it), SHOAL_EINVAL);
    assert_code(shoal_iter_next(NULL), SHOAL_EINVAL);
    size_t klen = 77;
    assert_null(shoal_iter_key(NULL, &klen));
    assert_null(shoal_iter_value(NULL, &klen));
    shoal_iter_free(NULL);

    /* Statistics. */
    shoal_db_stats st;
    shoal_shard_stats ss;
    shoal_tenant_stats ts;
    assert_code(shoal_stats(NULL, &st), SHOAL_EINVAL);
    assert_code(shoal_stats(f->db, NULL), SHOAL_EINVAL);
    assert_code(shoal_stats_shard(NULL, 0, &ss), SHOAL_EINVAL);
    assert_code(shoal_stats_shard(f->db, 0, NULL), SHOAL_EINVAL);
    assert_code(shoal_stats_shard(f->db, SHOAL_MAX_SHARDS, &ss), SHOAL_EINVAL);
    assert_code(shoal_stats_shard(f->db, UINT32_MAX, &ss), SHOAL_EINVAL);
    assert_code(shoal_stats_tenant(NULL, 0, &ts), SHOAL_EINVAL);
    assert_code(shoal_stats_tenant(f->db, 0, NULL), SHOAL_EINVAL);
    assert_code(shoal_stats_tenant(f->db, 12345, &ts), SHOAL_ENOTFOUND);

    expect_unchanged(f);
}

/* Keys one byte over the limit are SHOAL_ETOOBIG on every path; values over the limit are
 * refused from their length (the buffer behind the pointer is 8 bytes). */
static void test_oversized(void **state)
{
    struct fixture *f = *state;
    size_t big = (size_t)SHOAL_MAX_KEY + 1;
    uint8_t *key = calloc(1, big);
    assert_non_null(key);
    uint8_t small[8] = {0};
    void *value;
    size_t vlen;
    uint64_t seq;
    char buf[8];
    assert_code(shoal_put(f->ns, key, big, "v", 1, NULL), SHOAL_ETOOBIG);
    assert_code(shoal_get(f->ns, NULL, key, big, &value, &vlen), SHOAL_ETOOBIG);
    assert_code(shoal_get_into(f->ns, NULL, key, big, buf, sizeof buf, &vlen), SHOAL_ETOOBIG);
    assert_code(shoal_get_with(f->ns, NULL, key, big, callback, NULL), SHOAL_ETOOBIG);
    assert_code(shoal_delete(f->ns, key, big, NULL), SHOAL_ETOOBIG);
    assert_code(shoal_exists(f->ns, NULL, key, big), SHOAL_ETOOBIG);
    assert_code(shoal_key_seq(f->ns, NULL, key, big, &seq), SHOAL_ETOOBIG);
    assert_code(shoal_put(f->ns, "key", 3, small, (size_t)SHOAL_MAX_VALUE + 1, NULL),
                SHOAL_ETOOBIG);
    assert_code(shoal_put(f->ns, "key", 3, small, SIZE_MAX, NULL), SHOAL_ETOOBIG);

    shoal_batch *b = NULL;
    assert_ok(shoal_batch_new(f->db, &b));
    assert_code(shoal_batch_put(b, f->ns, key, big, "v", 1), SHOAL_ETOOBIG);
    assert_code(shoal_batch_delete(b, f->ns, key, big), SHOAL_ETOOBIG);
    assert_code(shoal_batch_require(b, f->ns, key, big, 0), SHOAL_ETOOBIG);
    assert_code(shoal_batch_put(b, f->ns, "key", 3, small, (size_t)SHOAL_MAX_VALUE + 1),
                SHOAL_ETOOBIG);
    assert_int_equal(shoal_batch_count(b), 0);
    assert_ok(shoal_batch_commit(b, NULL, NULL));
    shoal_batch_free(b);

    /* Iterator bounds longer than any key are legal bounds, not errors: all 0xff, this
     * one lies past every key. */
    memset(key, 0xff, big);
    shoal_iter_options o = {.start = key, .start_len = big};
    shoal_iter *it = NULL;
    assert_ok(shoal_iter_new(f->ns, &o, &it));
    assert_int_equal(shoal_iter_next(it), 0);
    shoal_iter_free(it);
    free(key);
    expect_unchanged(f);
}

/* Names: empty and too long names are refused; kinds other than kv are not supported
 * yet; unknown kinds and placements are invalid. */
static void test_bad_namespaces(void **state)
{
    struct fixture *f = *state;
    shoal_ns *ns = (shoal_ns *)1;
    shoal_ns_config vector = {.kind = SHOAL_KIND_VECTOR};
    shoal_ns_config series = {.kind = SHOAL_KIND_TIMESERIES};
    shoal_ns_config none = {.kind = 0};
    shoal_ns_config weird = {.kind = 42};
    shoal_ns_config bad_place = {.kind = SHOAL_KIND_KV, .placement = 9};
    assert_code(shoal_ns_open(f->db, "v", &vector, &ns), SHOAL_ENOTSUP);
    assert_null(ns);
    assert_code(shoal_ns_open(f->db, "t", &series, &ns), SHOAL_ENOTSUP);
    assert_code(shoal_ns_open(f->db, "n", &none, &ns), SHOAL_EINVAL);
    assert_code(shoal_ns_open(f->db, "w", &weird, &ns), SHOAL_EINVAL);
    assert_code(shoal_ns_open(f->db, "p", &bad_place, &ns), SHOAL_EINVAL);
    /* A vector config for an existing kv namespace: still not supported. */
    assert_code(shoal_ns_open(f->db, "ns", &vector, &ns), SHOAL_ENOTSUP);

    char name[SHOAL_MAX_NAME + 2];
    memset(name, 'a', sizeof name);
    name[SHOAL_MAX_NAME + 1] = 0;
    shoal_ns_config kv = {.kind = SHOAL_KIND_KV};
    assert_code(shoal_ns_open(f->db, name, &kv, &ns), SHOAL_EINVAL);
    assert_code(shoal_ns_drop(f->db, name), SHOAL_EINVAL);
    name[SHOAL_MAX_NAME] = 0;
    assert_ok(shoal_ns_open(f->db, name, &kv, &ns)); /* exactly the limit */
    shoal_ns_info info;
    assert_ok(shoal_ns_info_get(ns, &info));
    assert_string_equal(info.name, name);
    shoal_ns_close(ns);
    assert_ok(shoal_ns_drop(f->db, name));
    assert_code(shoal_ns_drop(f->db, "never existed"), SHOAL_ENOTFOUND);
    size_t count = 0;
    shoal_ns_info infos[4];
    assert_ok(shoal_ns_list(f->db, UINT32_MAX, infos, 4, &count));
    assert_int_equal(count, 1);
    expect_unchanged(f);
}

/* After a drop, every call through an old handle is SHOAL_EDROPPED and changes nothing;
 * a batch holding an operation on it fails whole. */
static void test_use_after_drop(void **state)
{
    struct fixture *f = *state;
    shoal_ns *doomed = test_ns(f->db, "doomed", SHOAL_PLACE_SPREAD, 0);
    test_put(doomed, "a", "1");
    shoal_batch *early = NULL;
    assert_ok(shoal_batch_new(f->db, &early));
    assert_ok(shoal_batch_put(early, f->ns, "key", 3, "overwritten", 11));
    assert_ok(shoal_batch_put(early, doomed, "b", 1, "2", 1));
    shoal_iter *it = NULL;
    assert_ok(shoal_iter_new(doomed, NULL, &it));
    f->seq = shoal_last_seq(f->db);

    assert_ok(shoal_ns_drop(f->db, "doomed"));
    void *value;
    size_t vlen;
    uint64_t seq;
    char buf[8];
    shoal_ns_info info;
    assert_code(shoal_put(doomed, "a", 1, "x", 1, NULL), SHOAL_EDROPPED);
    assert_code(shoal_get(doomed, NULL, "a", 1, &value, &vlen), SHOAL_EDROPPED);
    assert_code(shoal_get_into(doomed, NULL, "a", 1, buf, sizeof buf, &vlen), SHOAL_EDROPPED);
    assert_code(shoal_get_with(doomed, NULL, "a", 1, callback, NULL), SHOAL_EDROPPED);
    assert_code(shoal_delete(doomed, "a", 1, NULL), SHOAL_EDROPPED);
    assert_code(shoal_exists(doomed, NULL, "a", 1), SHOAL_EDROPPED);
    assert_code(shoal_key_seq(doomed, NULL, "a", 1, &seq), SHOAL_EDROPPED);
    assert_code(shoal_ns_info_get(doomed, &info), SHOAL_EDROPPED);
    shoal_iter *late = NULL;
    assert_code(shoal_iter_new(doomed, NULL, &late), SHOAL_EDROPPED);
    /* The iterator made before the drop either fails or had already copied its only key. */
    int r = shoal_iter_next(it);
    assert_true(r == SHOAL_EDROPPED || r == 1);
    shoal_iter_free(it);

    shoal_batch *b = NULL;
    assert_ok(shoal_batch_new(f->db, &b));
    assert_code(shoal_batch_put(b, doomed, "a", 1, "x", 1), SHOAL_EDROPPED);
    assert_code(shoal_batch_delete(b, doomed, "a", 1), SHOAL_EDROPPED);
    assert_code(shoal_batch_require(b, doomed, "a", 1, 0), SHOAL_EDROPPED);
    assert_code(shoal_batch_delete_all(b, doomed), SHOAL_EDROPPED);
    assert_int_equal(shoal_batch_count(b), 0);
    shoal_batch_free(b);
    assert_code(shoal_batch_commit(early, NULL, NULL), SHOAL_EDROPPED);
    shoal_batch_free(early);
    shoal_ns_close(doomed);
    expect_unchanged(f);
}

/* A namespace dropped while other threads use it through their own handles: each of them
 * (writer, reader, scanner, batch writer) gets SHOAL_EDROPPED and nothing else, nothing
 * is left behind on the shards, and the name opens again as an empty namespace. */
struct drop_worker {
    shoal_db *db;
    shoal_ns *ns; /* the worker's own handle, opened before the thread starts */
    int kind;
    int other_errors;
    bool saw_dropped;
};

static void *drop_worker_main(void *arg)
{
    struct drop_worker *w = arg;
    shoal_ns *ns = w->ns;
    shoal_batch *b = NULL;
    if (shoal_batch_new(w->db, &b) != 0)
        w->other_errors++;
    char key[32];
    for (int i = 0; i < 5000000 && b; i++) {
        snprintf(key, sizeof key, "k%d", i % 3000);
        int r;
        if (w->kind == 0) {
            r = shoal_put(ns, key, strlen(key), "value", 5, NULL);
        } else if (w->kind == 1) {
            void *v;
            size_t vlen;
            r = shoal_get(ns, NULL, key, strlen(key), &v, &vlen);
            if (r == 0)
                shoal_free(v);
            if (r == SHOAL_ENOTFOUND)
                r = 0;
        } else if (w->kind == 2) {
            shoal_iter *it = NULL;
            r = shoal_iter_new(ns, NULL, &it);
            for (int steps = 0; r == 0 && steps < 100000; steps++) {
                int n = shoal_iter_next(it);
                if (n <= 0) {
                    r = n;
                    break;
                }
            }
            shoal_iter_free(it);
        } else {
            shoal_batch_clear(b);
            r = shoal_batch_put(b, ns, key, strlen(key), "v", 1);
            if (r == 0)
                r = shoal_batch_delete(b, ns, "k1", 2);
            if (r == 0)
                r = shoal_batch_commit(b, NULL, NULL);
        }
        if (r == SHOAL_EDROPPED) {
            w->saw_dropped = true;
            break;
        }
        if (r != 0) {
            w->other_errors++;
            break;
        }
    }
    shoal_batch_free(b);
    return NULL;
}

static void test_drop_while_in_use(void **state)
{
    (void)state;
    for (int round = 0; round < SHOAL_TEST_SCALE(20, 6); round++) {
        shoal_db *db = test_open(8, 0);
        shoal_ns *ns = test_ns(db, "victim", round % 2 ? SHOAL_PLACE_SPREAD : SHOAL_PLACE_PINNED,
                               0);
        /* Half the rounds start empty, so that writers create the namespace's indexes on
         * the shards while the drop runs. */
        for (int i = 0; i < (round % 4 < 2 ? 500 : 0); i++) {
            char key[32];
            snprintf(key, sizeof key, "k%d", i);
            test_put(ns, key, "seed");
        }
        shoal_snapshot *snap = NULL; /* some rounds keep versions retired */
        if (round % 3 == 0)
            assert_ok(shoal_snapshot_take(db, &snap));
        struct drop_worker workers[4];
        pthread_t ids[4];
        for (int k = 0; k < 4; k++) {
            shoal_ns *handle = NULL;
            assert_ok(shoal_ns_open(db, "victim", NULL, &handle));
            workers[k] = (struct drop_worker){.db = db, .ns = handle, .kind = k};
            assert_int_equal(pthread_create(&ids[k], NULL, drop_worker_main, &workers[k]), 0);
        }
        /* A pause, not a handshake: the drop must not be ordered after the workers' first
         * writes by any synchronization of the test's own (TSan sees what the engine
         * orders, and nothing else). */
        test_sleep_ms((unsigned)(round % 5));
        assert_ok(shoal_ns_drop(db, "victim"));
        for (int k = 0; k < 4; k++) {
            pthread_join(ids[k], NULL);
            shoal_ns_close(workers[k].ns);
            assert_int_equal(workers[k].other_errors, 0);
            assert_true(workers[k].saw_dropped);
        }
        shoal_snapshot_release(snap);
        shoal_ns *fresh = test_ns(db, "victim", SHOAL_PLACE_SPREAD, 0);
        assert_int_equal(test_count_keys(fresh, NULL), 0);
        test_put(fresh, "x", "y"); /* a write on some shard lets it reclaim */
        uint64_t objects = 0;
        for (uint32_t s = 0; s < 8; s++) {
            shoal_shard_stats ss;
            assert_ok(shoal_stats_shard(db, s, &ss));
            objects += ss.objects;
        }
        assert_int_equal(objects, 1); /* only "x": the dropped namespace left nothing */
        shoal_db_stats st;
        assert_ok(shoal_stats(db, &st));
        assert_int_equal(st.keys, 1);
        shoal_ns_close(fresh);
        shoal_ns_close(ns);
        shoal_close(db);
    }
}

/* A snapshot belongs to its database: using it with another database's namespace is
 * SHOAL_EINVAL on every read path and for iterators. */
static void test_snapshot_of_another_database(void **state)
{
    struct fixture *f = *state;
    shoal_db *other = test_open(2, 0);
    shoal_snapshot *foreign = NULL;
    assert_ok(shoal_snapshot_take(other, &foreign));
    void *value;
    size_t vlen;
    uint64_t seq;
    char buf[8];
    assert_code(shoal_get(f->ns, foreign, "key", 3, &value, &vlen), SHOAL_EINVAL);
    assert_code(shoal_get_into(f->ns, foreign, "key", 3, buf, sizeof buf, &vlen),
                SHOAL_EINVAL);
    assert_code(shoal_get_with(f->ns, foreign, "key", 3, callback, NULL), SHOAL_EINVAL);
    assert_code(shoal_exists(f->ns, foreign, "key", 3), SHOAL_EINVAL);
    assert_code(shoal_key_seq(f->ns, foreign, "key", 3, &seq), SHOAL_EINVAL);
    shoal_iter_options o = {.snap = foreign};
    shoal_iter *it = (shoal_iter *)1;
    assert_code(shoal_iter_new(f->ns, &o, &it), SHOAL_EINVAL);
    shoal_snapshot_release(foreign);
    shoal_close(other);
    expect_unchanged(f);
}

/* Every code of the list has its own name and message; 0 is "OK"; anything else is
 * "UNKNOWN" with a message that is never NULL. */
static void test_error_names(void **state)
{
    (void)state;
    static const struct {
        int code;
        const char *name;
        const char *message;
    } codes[] = {
#define SHOAL_TEST_CODE(name, code, message) {code, #name, message},
        SHOAL_ERRORS(SHOAL_TEST_CODE)
#undef SHOAL_TEST_CODE
    };
    size_t n = sizeof codes / sizeof codes[0];
    assert_true(n >= 20);
    for (size_t i = 0; i < n; i++) {
        assert_true(codes[i].code < 0);
        assert_string_equal(shoal_error_name(codes[i].code), codes[i].name);
        assert_string_equal(shoal_strerror(codes[i].code), codes[i].message);
        for (size_t j = 0; j < i; j++) {
            assert_true(codes[i].code != codes[j].code);
            assert_true(strcmp(shoal_strerror(codes[i].code), shoal_strerror(codes[j].code)));
        }
    }
    assert_int_equal(SHOAL_EQUOTA, -7);
    assert_string_equal(shoal_error_name(SHOAL_ENOSLOT), "ENOSLOT");
    assert_string_equal(shoal_error_name(0), "OK");
    assert_non_null(shoal_strerror(0));
    static const int unknown[] = {2, 5, -999, -100000, INT32_MIN, INT32_MAX};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        assert_string_equal(shoal_error_name(unknown[i]), "UNKNOWN");
        const char *m = shoal_strerror(unknown[i]);
        assert_non_null(m);
        assert_true(strlen(m) > 0);
        for (size_t j = 0; j < n; j++)
            assert_true(strcmp(m, codes[j].message) != 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_null_options_and_open),
        cmocka_unit_test(test_bad_options),
        cmocka_unit_test(test_bad_directories),
        cmocka_unit_test_setup_teardown(test_null_handles_everywhere, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oversized, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_namespaces, setup, teardown),
        cmocka_unit_test_setup_teardown(test_use_after_drop, setup, teardown),
        cmocka_unit_test(test_drop_while_in_use),
        cmocka_unit_test_setup_teardown(test_snapshot_of_another_database, setup, teardown),
        cmocka_unit_test(test_error_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
