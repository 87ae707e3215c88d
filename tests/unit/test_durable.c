/*
 * test_durable.c -- durable mode through the public API and through the fault-injecting
 * I/O table: what survives a failure, what a reopen finds, and who may open a directory.
 *
 * What is tested and why:
 *
 *   1. Fault injection (durable_open with a struct io_faults table, docs: io.h). A failed
 *      fdatasync of the log fails the write that waited for it with SHOAL_EFSYNC and every
 *      later write too, even though the next fdatasync would succeed (architecture
 *      invariant 8: never retry and then acknowledge); the statistics say read-only and
 *      why; a reopen with a clean table finds every write acknowledged before the failure.
 *      The same with several threads in one group commit, with ENOSPC on a log write, with
 *      a short write (completed by the engine, not an error), and with a torn write (a
 *      crash in the middle of a write: the reopen cuts the torn tail and keeps a clean
 *      prefix). Each: a clear error, no acknowledged data lost.
 *   2. Catalog changes under faults. A namespace or tenant creation, a drop or a quota
 *      change whose MANIFEST replacement fails at its temporary file or its rename is an
 *      error and leaves nothing behind, in memory and after a reopen. A failure of the
 *      final fsync of the directory (the rename may or may not be durable) must leave the
 *      database read-only, so that no write is acknowledged that a crash could lose: the
 *      test crashes a child process after such a failure and checks its acknowledgements.
 *   3. Checkpoints racing log rolls: a child writes into small segments while another
 *      thread takes checkpoints in a loop, then leaves without closing; every write must
 *      be found by a reopen. Under ThreadSanitizer the child's race reports fail the test.
 *   4. Recovery equals the model. Random puts, deletes, batches (some deleting a whole
 *      namespace first), namespace creations and drops, tenants and quota changes run against the engine and, in step, against a
 *      plain model that predicts every result (including SHOAL_EQUOTA refusals), with
 *      checkpoints sprinkled in. After each round the database is closed and reopened, or
 *      the round ran in a child process that _exits without closing (a crash: sync=always
 *      made everything durable); then every namespace's full content, its counts, the
 *      tenants, their quotas and usage are compared with the model, and the next round's
 *      quota predictions test the usage that recovery rebuilt. Reopens alternate between
 *      1, 4, 2 and 8 recovery threads: a thread per stream, and the replay pipeline.
 *   4b. One stream, many threads: ~50 MB of overwrites, deletes, a batch that writes one
 *      key twice and a value larger than a replay block, all in one log stream, replayed
 *      with 1, 2, 3 and 8 threads: each gives the history's final state.
 *   5. shoal_persist: a memory database with data made durable in a directory while a
 *      writer thread keeps writing, more writes, close, reopen: everything is there.
 *      Persisting twice, or into a directory that holds a database, is refused.
 *   6. One open per directory: a second shoal_open of an open directory gives SHOAL_EBUSY,
 *      in the same process and from another process (this program re-executed in its
 *      "--try-open DIR" mode, whose exit status is the negated result).
 *
 * Every test works in a fresh mkdtemp() directory under $TMPDIR (default /tmp) and removes
 * it. Loops are bounded by counts; nothing asserts on time. SHOAL_TEST_SEED replaces the
 * model test's seed; counts shrink in sanitizer builds (SHOAL_SANITIZED).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>

#include "core/durable.h"
#include "durability/io.h"
#include "durability_testing.h"
#include "test_util.h"

/* The path of this program, for re-executing it in a child mode. */
static char self_path[4096];

/* ------------------------------------------------------------------------------------
 * Small helpers.
 * ---------------------------------------------------------------------------------- */

static const shoal_write_options always = {.sync = SHOAL_SYNC_ALWAYS};

/* The directories a test made, removed by its teardown even when an assertion ended it
 * early (a passing test removes them itself; removing twice is harmless). */
static char made_dirs[16][4096];
static unsigned made_count;

static void make_dir(char *dir, size_t cap)
{
    assert_int_equal(testing_make_dir(dir, cap, "durable"), 0);
    if (made_count < sizeof made_dirs / sizeof made_dirs[0])
        snprintf(made_dirs[made_count++], sizeof made_dirs[0], "%s", dir);
}

static int remove_made_dirs(void **state)
{
    (void)state;
    for (unsigned i = 0; i < made_count; i++)
        testing_remove_tree(made_dirs[i]);
    made_count = 0;
    return 0;
}

/* Options of a durable database: shards, log streams, sync policy. */
static shoal_options *durable_options(uint64_t shards, uint64_t streams, shoal_sync sync)
{
    shoal_options *opts = NULL;
    assert_ok(shoal_options_new(&opts));
    assert_ok(shoal_options_set(opts, SHOAL_OPT_SHARDS, shards));
    assert_ok(shoal_options_set(opts, SHOAL_OPT_LOG_STREAMS, streams));
    assert_ok(shoal_options_set(opts, SHOAL_OPT_SYNC, sync));
    return opts;
}

/* Opens dir with I/O through the fault injector f (NULL: plain POSIX). */
static shoal_db *open_dir(const char *dir, const shoal_options *opts, struct io_faults *f)
{
    shoal_db *db = NULL;
    int err = durable_open(dir, opts, f ? &f->io : NULL, &db);
    if (err)
        print_error("durable_open(%s): %s; detail: %s\n", dir, shoal_error_name(err),
                    shoal_error_detail());
    assert_ok(err);
    assert_non_null(db);
    return db;
}

/* The key and value of item i of a test: "key-<i>" and a pattern whose length and bytes
 * depend on i, so a reopen can check any item without keeping copies. */
static size_t item_key(unsigned i, char *key)
{
    return (size_t)sprintf(key, "key-%05u", i);
}

static size_t item_value(unsigned i, uint8_t *value)
{
    size_t len = 1 + (i * 37u) % 300u;
    test_fill_pattern(value, len, 0xD00D0000u + i);
    return len;
}

static int item_put(shoal_ns *ns, unsigned i)
{
    char key[32];
    uint8_t value[320];
    size_t klen = item_key(i, key);
    return shoal_put(ns, key, klen, value, item_value(i, value), &always);
}

static void item_expect(shoal_ns *ns, unsigned i)
{
    char key[32];
    uint8_t value[320];
    size_t klen = item_key(i, key);
    test_expect(ns, NULL, key, klen, value, item_value(i, value));
}

static void item_expect_absent(shoal_ns *ns, unsigned i)
{
    char key[32];
    test_expect_absent(ns, NULL, key, item_key(i, key));
}

/* An item whose write failed with an unknown outcome: absent, or present with its value. */
static void item_expect_either(shoal_ns *ns, unsigned i)
{
    char key[32];
    size_t klen = item_key(i, key);
    if (shoal_exists(ns, NULL, key, klen) == 1)
        item_expect(ns, i);
}

static shoal_ns *ns_get(shoal_db *db, const char *name)
{
    shoal_ns *ns = NULL;
    int err = shoal_ns_open(db, name, NULL, &ns);
    if (err)
        print_error("namespace %s: %s\n", name, shoal_error_name(err));
    assert_ok(err);
    return ns;
}

/* Runs fn(ctx) in a forked child that leaves with _exit(fn's result), without closing
 * anything: a crash as far as the database is concerned. Returns the exit status (0..255),
 * 128 + the signal if it died of one, or -1. Unlike test_in_child, the status is kept
 * whole, so a child can report several facts in its bits. fn must not use cmocka's
 * assertions. */
static int run_child(int (*fn)(void *ctx), void *ctx)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0)
        _exit(fn(ctx) & 0xff);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -1;
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

static void expect_read_only(shoal_db *db, int cause)
{
    shoal_db_stats st;
    assert_ok(shoal_stats(db, &st));
    assert_true(st.durable);
    assert_true(st.read_only);
    assert_code(st.read_only_cause, cause);
}

static void expect_writable(shoal_db *db)
{
    shoal_db_stats st;
    assert_ok(shoal_stats(db, &st));
    assert_false(st.read_only);
    assert_int_equal(st.read_only_cause, 0);
}

/* Every kind of write fails with err once the log has failed. */
static void expect_writes_fail(shoal_db *db, shoal_ns *ns, int err)
{
    assert_code(item_put(ns, 90000), err);
    assert_code(shoal_delete(ns, "key-00000", 9, &always), err);
    shoal_batch *b = NULL;
    assert_ok(shoal_batch_new(db, &b));
    assert_ok(shoal_batch_put(b, ns, "batch-a", 7, "1", 1));
    assert_ok(shoal_batch_put(b, ns, "batch-b", 7, "2", 1));
    assert_code(shoal_batch_commit(b, &always, NULL), err);
    shoal_batch_free(b);
    assert_code(shoal_checkpoint(db), SHOAL_EREADONLY);
}

/* ------------------------------------------------------------------------------------
 * 1. Faults of the log.
 * ---------------------------------------------------------------------------------- */

static void test_fsync_failure_is_sticky(void **state)
{
    (void)state;
    char dir[4096];
    make_dir(dir, sizeof dir);
    struct io_faults f;
    io_faults_init(&f, NULL);
    shoal_options *opts = durable_options(4, 2, SHOAL_SYNC_ALWAYS);
    shoal_db *db = open_dir(dir, opts, &f);
    shoal_ns *ns = test_ns(db, "data", SHOAL_PLACE_SPREAD, 0);
    for (unsigned i = 0; i < 40; i++)
        assert_ok(item_put(ns, i));

    /* The next fdatasync fails; the one after would succeed. */
    io_faults_fail(&f, IO_OP_SYNC, io_faults_count(&f, IO_OP_SYNC) + 1, EIO, false);
    assert_code(item_put(ns, 40), SHOAL_EFSYNC);
    assert_int_equal(atomic_load(&f.injected), 1);
    uint64_t syncs = io_faults_count(&f, IO_OP_SYNC);
    expect_read_only(db, SHOAL_EFSYNC);
    expect_writes_fail(db, ns, SHOAL_EFSYNC);
    shoal_ns *other = NULL;
    shoal_ns_config cfg = {.kind = SHOAL_KIND_KV};
    assert_code(shoal_ns_open(db, "after", &cfg, &other), SHOAL_EFSYNC);
    uint32_t tenant;
    assert_code(shoal_tenant_create(db, "after", NULL, &tenant), SHOAL_EFSYNC);
    /* Never retried: no fdatasync was even attempted for the refused writes. */
    assert_int_equal(io_faults_count(&f, IO_OP_SYNC), syncs);
    /* Reads go on. */
    item_expect(ns, 0);
    item_expect(ns, 39);
    shoal_ns_close(ns);
    assert_code(shoal_close(db), SHOAL_EFSYNC);

    db = open_dir(dir, opts, NULL);
    expect_writable(db);
    ns = ns_get(db, "data");
    for (unsigned i = 0; i < 40; i++)
        item_expect(ns, i);
    item_expect_either(ns, 40);
    item_expect_absent(ns, 90000);
    test_expect_absent_str(ns, NULL, "batch-a");
    assert_code(shoal_ns_open(db, "after", NULL, &other), SHOAL_ENOTFOUND);
    assert_code(shoal_tenant_find(db, "after", &tenant), SHOAL_ENOTFOUND);
    assert_ok(item_put(ns, 41)); /* the reopened database writes again */
    shoal_ns_close(ns);
    assert_ok(shoal_close(db));

    db = open_dir(dir, opts, NULL);
    ns = ns_get(db, "data");
    item_expect(ns, 41);
    shoal_ns_close(ns);
    assert_ok(shoal_close(db));
    shoal_options_free(opts);
    testing_remove_tree(dir);
}

/* A log segment a checkpoint fails to unlink (EIO) is no error of the checkpoint. It stays
 * on disk, older than segments that were deleted after it; every later open must accept
 * that gap (wal.c invariant 8h: the missing segments are covered by the checkpoint) and
 * find every item, and the next checkpoints must go on working. */
static void test_failed_segment_unlink(void **state)
{
    (void)state;
    char dir[4096];
    make_dir(dir, sizeof dir);
    struct io_faults f;
    io_faults_init(&f, NULL);
    shoal_options *opts = durable_options(4, 1, SHOAL_SYNC_ALWAYS);
    assert_ok(shoal_options_set(opts, SHOAL_OPT_LOG_SEGMENT_BYTES, 64 << 10));
    shoal_db *db = open_dir(dir, opts, &f);
    shoal_ns *ns = test_ns(db, "data", SHOAL_PLACE_SPREAD, 0);
    const unsigned first = 2000, more = 500;
    for (unsigned i = 0; i < first; i++)
        assert_ok(item_put(ns, i));
    /* Several segments are ended by now; the checkpoint's first unlink fails, the rest
     * succeed. */
    uint64_t unlinks = io_faults_count(&f, IO_OP_UNLINK);
    io_faults_fail(&f, IO_OP_UNLINK, unlinks + 1, EIO, false);
    assert_ok(shoal_checkpoint(db));
    assert_int_equal(atomic_load(&f.injected), 1);
    /* Later segments were unlinked after the one that failed: the gap is there. */
    assert_true(io_faults_count(&f, IO_OP_UNLINK) >= unlinks + 3);
    expect_writable(db);
    for (unsigned i = first; i < first + more; i++)
        assert_ok(item_put(ns, i));
    shoal_ns_close(ns);
    assert_ok(shoal_close(db));

    for (int round = 0; round < 2; round++) {
        db = open_dir(dir, opts, NULL);
        ns = ns_get(db, "data");
        for (unsigned i = 0; i < first + more; i++)
            item_expect(ns, i);
        assert_ok(item_put(ns, first + more + (unsigned)round));
        assert_ok(shoal_checkpoint(db));
        shoal_ns_close(ns);
        assert_ok(shoal_close(db));
    }
    db = open_dir(dir, opts, NULL);
    ns = ns_get(db, "data");
    item_expect(ns, first + more);
    item_expect(ns, first + more + 1);
    shoal_ns_close(ns);
    assert_ok(shoal_close(db));
    shoal_options_free(opts);
    testing_remove_tree(dir);
}

struct group_writer {
    pthread_t thread;
    shoal_ns *ns;
    unsigned first, count; /* items first .. first + count - 1 */
    unsigned acked;        /* items acknowledged, in order */
    int error;             /* the first error */
};

static void *group_writer_main(void *arg)
{
    struct group_writer *w = arg;
    for (unsigned i = 0; i < w->count; i++) {
        int err = item_put(w->ns, w->first + i);
        if (err) {
            w->error = err;
            break;
        }
        w->acked = i + 1;
    }
    return NULL;
}

/* Several threads in group commits when one fdatasync fails: whoever waited for it and
 * whoever comes later fails; what was acknowledged before is on disk. */
static void test_fsync_failure_in_group_commit(void **state)
{
    (void)state;
    enum { WRITERS = 4, PER_WRITER = 400 };
    char dir[4096];
    make_dir(dir, sizeof dir);
    struct io_faults f;
    io_faults_init(&f, NULL);
    shoal_options *opts = durable_options(4, 1, SHOAL_SYNC_ALWAYS);
    shoal_db *db = open_dir(dir, opts, &f);
    shoal_ns *ns = test_ns(db, "data", SHOAL_PLACE_SPREAD, 0);
    assert_ok(item_put(ns, 99999)); /* the stream's first segment exists now */
    io_faults_fail(&f, IO_OP_SYNC, io_faults_count(&f, IO_OP_SYNC) + 25, EIO, false);
    struct group_writer w[WRITERS];
    for (unsigned t = 0; t < WRITERS; t++) {
        w[t] = (struct group_writer){.ns = ns, .first = t * 1000, .count = PER_WRITER};
        assert_int_equal(pthread_create(&w[t].thread, NULL, group_writer_main, &w[t]), 0);
    }
    for (unsigned t = 0; t < WRITERS; t++)
        pthread_join(w[t].thread, NULL);
    assert_int_equal(atomic_load(&f.injected), 1);
    for (unsigned t = 0; t < WRITERS; t++) {
        assert_true(w[t].acked < PER_WRITER);
        assert_code(w[t].error, SHOAL_EFSYNC);
    }
    expect_read_only(db, SHOAL_EFSYNC);
    shoal_ns_close(ns);
    assert_code(shoal_close(db), SHOAL_EFSYNC);

    db = open_dir(dir, opts, NULL);
    ns = ns_get(db, "data");
    item_expect(ns, 99999);
    for (unsigned t = 0; t < WRITERS; t++) {
        for (unsigned i = 0; i < w[t].acked; i++)
            item_expect(ns, w[t].first + i);
        item_expect_either(ns, w[t].first + w[t].acked);
        for (unsigned i = w[t].acked + 1; i < PER_WRITER; i++)
            item_expect_absent(ns, w[t].first + i);
    }
    shoal_ns_close(ns);
    assert_ok(shoal_close(db));
    shoal_options_free(opts);
    testing_remove_tree(dir);
}

static void test_enospc_on_log_write(void **state)
{
    (void)state;
    char dir[4096];
    make_dir(dir, sizeof dir);
    struct io_faults f;
    io_faults_init(&f, NULL);
    shoal_options *opts = durable_options(2, 2, SHOAL_SYNC_ALWAYS);
    shoal_db *db = open_dir(dir, opts, &f);
    shoal_ns *ns = test_ns(db, "data", SHOAL_PLACE_SPREAD, 0);
    for (unsigned i = 0; i < 30; i++)
        assert_ok(item_put(ns, i));
    io_faults_fail(&f, IO_OP_WRITE, io_faults_count(&f, IO_OP_WRITE) + 1, ENOSPC, false);
    assert_code(item_put(ns, 30), SHOAL_ENOSPC);
    assert_int_equal(atomic_load(&f.injected), 1);
    expect_read_only(db, SHOAL_ENOSPC);
    expect_writes_fail(db, ns, SHOAL_ENOSPC);
    item_expect(ns, 29);
    shoal_ns_close(ns);
    assert_code(shoal_close(db), SHOAL_ENOSPC);

    db = open_dir(dir, opts, NULL);
    expect_writable(db);
    ns = ns_get(db, "data");
    for (unsigned i = 0; i < 30; i++)
        item_expect(ns, i);
    item_expect_absent(ns, 30); /* its bytes never reached the file */
    item_expect_absent(ns, 90000);
    shoal_ns_close(ns);
    assert_ok(shoal_close(db));
    shoal_options_free(opts);
    testing_remove_tree(dir);
}

static void test_short_write_is_completed(void **state)
{
    (void)state;
    char dir[4096];
    make_dir(dir, sizeof dir);
    struct io_faults f;
    io_faults_init(&f, NULL);
    shoal_options *opts = durable_options(2, 1, SHOAL_SYNC_ALWAYS);
    shoal_db *db = open_dir(dir, opts, &f);
    shoal_ns *ns = test_ns(db, "data", SHOAL_PLACE_PINNED, 0);
    for (unsigned i = 0; i < 10; i++)
        assert_ok(item_put(ns, i));
    /* Several writes in a row come back short: the log loops until each is whole. */
    for (unsigned i = 10; i < 20; i++) {
        io_faults_short_write(&f, io_faults_count(&f, IO_OP_WRITE) + 1, 1 + i % 7);
        assert_ok(item_put(ns, i));
    }
    assert_true(atomic_load(&f.injected) >= 10);
    expect_writable(db);
    shoal_ns_close(ns);
    assert_ok(shoal_close(db));

    db = open_dir(dir, opts, NULL);
    shoal_db_stats st;
    assert_ok(shoal_stats(db, &st));
    assert_int_equal(st.torn_streams, 0);
    ns = ns_get(db, "data");
    for (unsigned i = 0; i < 20; i++)
        item_expect(ns, i);
    shoal_ns_close(ns);
    assert_ok(shoal_close(db));
    shoal_options_free(opts);
    testing_remove_tree(dir);
}

/* A write torn after `keep` bytes (0: half), as a crash in the middle of it would leave
 * the file; then a reopen with a clean table. The database is never closed cleanly after
 * the tear, because a clean close would not leave a torn tail: the writes run in a child
 * process that exits without closing. */
struct torn_case {
    char dir[4096];
    size_t keep;
    unsigned acked; /* items acknowledged before the torn one */
};

static int torn_child(void *ctx)
{
    struct torn_case *c = ctx;
    struct io_faults f;
    io_faults_init(&f, NULL);
    shoal_options *opts = NULL;
    shoal_options_new(&opts);
    shoal_options_set(opts, SHOAL_OPT_SHARDS, 2);
    shoal_options_set(opts, SHOAL_OPT_LOG_STREAMS, 1);
    shoal_options_set(opts, SHOAL_OPT_SYNC, SHOAL_SYNC_ALWAYS);
    shoal_db *db = NULL;
    if (durable_open(c->dir, opts, &f.io, &db) != 0)
        return 1;
    shoal_ns *ns = NULL;
    shoal_ns_config cfg = {.kind = SHOAL_KIND_KV, .placement = SHOAL_PLACE_SPREAD};
    if (shoal_ns_open(db, "data", &cfg, &ns) != 0)
        return 2;
    for (unsigned i = 0; i < c->acked; i++)
        if (item_put(ns, i) != 0)
            return 3;
    io_faults_tear_write(&f, io_faults_count(&f, IO_OP_WRITE) + 1, c->keep);
    if (item_put(ns, c->acked) != SHOAL_EIO)
        return 4;
    if (item_put(ns, c->acked + 1) != SHOAL_EIO)
        return 5;
    shoal_db_stats st;
    if (shoal_stats(db, &st) != 0 || !st.read_only || st.read_only_cause != SHOAL_EIO)
        return 6;
    return 0; /* the caller _exits: no close, no checkpoint */
}

static void test_torn_write_leaves_clean_prefix(void **state)
{
    (void)state;
    static const size_t keeps[] = {0, 1, 4, 19, 21, 40};
    shoal_options *opts = durable_options(2, 1, SHOAL_SYNC_ALWAYS);
    for (size_t k = 0; k < sizeof keeps / sizeof keeps[0]; k++) {
        struct torn_case c = {.keep = keeps[k], .acked = 25};
        make_dir(c.dir, sizeof c.dir);
        int status = run_child(torn_child, &c);
        if (status != 0)
            print_error("keep %zu: the writing child failed at step %d\n", c.keep, status);
        assert_int_equal(status, 0);

        shoal_db *db = open_dir(c.dir, opts, NULL);
        shoal_db_stats st;
        assert_ok(shoal_stats(db, &st));
        assert_int_equal(st.torn_streams, 1);
        assert_true(st.torn_bytes > 0);
        expect_writable(db);
        shoal_ns *ns = ns_get(db, "data");
        for (unsigned i = 0; i < c.acked; i++)
            item_expect(ns, i);
        item_expect_absent(ns, c.acked);
        item_expect_absent(ns, c.acked + 1);
        assert_int_equal(test_count_keys(ns, NULL), c.acked);
        /* The cut tail is gone for good: more writes, a clean close, a clean reopen. */
        assert_ok(item_put(ns, 500));
        shoal_ns_close(ns);
        assert_ok(shoal_close(db));
        db = open_dir(c.dir, opts, NULL);
        assert_ok(shoal_stats(db, &st));
        assert_int_equal(st.torn_streams, 0);
        ns = ns_get(db, "data");
        for (unsigned i = 0; i < c.acked; i++)
            item_expect(ns, i);
        item_expect(ns, 500);
        assert_int_equal(test_count_keys(ns, NULL), c.acked + 1);
        shoal_ns_close(ns);
        assert_ok(shoal_close(db));
        testing_remove_tree(c.dir);
    }
    shoal_options_free(opts);
}

/* ------------------------------------------------------------------------------------
 * 2. Catalog changes under faults.
 * ---------------------------------------------------------------------------------- */

/* The steps of a MANIFEST replacement before its rename, each failed in turn. */
struct catalog_fault {
    const char *name;
    enum io_op op;
    int error;
};

static const struct catalog_fault catalog_faults[] = {
    {"open of MANIFEST.tmp", IO_OP_OPEN, EIO},
    {"write of MANIFEST.tmp", IO_OP_WRITE, EIO},
    {"write of MANIFEST.tmp (full disk)", IO_OP_WRITE, ENOSPC},
    {"fsync of MANIFEST.tmp", IO_OP_SYNC, EIO},
    {"rename over MANIFEST", IO_OP_RENAME, EIO},
};

static void arm(struct io_faults *f, const struct catalog_fault *c)
{
    io_faults_fail(f, c->op, io_faults_count(f, c->op) + 1, c->error, false);
}

static void test_catalog_changes_under_faults(void **state)
{
    (void)state;
    shoal_options *opts = durable_options(4, 2, SHOAL_SYNC_ALWAYS);
    for (size_t k = 0; k < sizeof catalog_faults / sizeof catalog_faults[0]; k++) {
        const struct catalog_fault *c = &catalog_faults[k];
        char dir[4096];
        make_dir(dir, sizeof dir);
        struct io_faults f;
        io_faults_init(&f, NULL);
        shoal_db *db = open_dir(dir, opts, &f);
        uint32_t tenant;
        shoal_quota q = {
            .max_keys = 100, .max_bytes = 100000, .max_ops_per_second = SHOAL_UNLIMITED};
        assert_ok(shoal_tenant_create(db, "owner", &q, &tenant));
        shoal_ns *keep = test_ns(db, "keep", SHOAL_PLACE_PINNED, tenant);
        shoal_ns *doomed = test_ns(db, "doomed", SHOAL_PLACE_SPREAD, 0);
        for (unsigned i = 0; i < 10; i++) {
            assert_ok(item_put(keep, i));
            assert_ok(item_put(doomed, i));
        }

        /* A namespace creation that fails: not there, not listed. */
        arm(&f, c);
        shoal_ns *fresh = NULL;
        shoal_ns_config cfg = {.kind = SHOAL_KIND_KV, .placement = SHOAL_PLACE_SPREAD};
        int err = shoal_ns_open(db, "fresh", &cfg, &fresh);
        if (err == 0)
            print_error("%s: namespace creation succeeded\n", c->name);
        assert_true(err < 0);
        assert_null(fresh);
        assert_code(shoal_ns_open(db, "fresh", NULL, &fresh), SHOAL_ENOTFOUND);
        size_t count = 0;
        assert_ok(shoal_ns_list(db, UINT32_MAX, NULL, 0, &count));
        assert_int_equal(count, 2);

        /* A tenant creation that fails. */
        arm(&f, c);
        uint32_t other;
        assert_true(shoal_tenant_create(db, "other", NULL, &other) < 0);
        assert_code(shoal_tenant_find(db, "other", &other), SHOAL_ENOTFOUND);

        /* A quota change that fails keeps the old quota. */
        arm(&f, c);
        shoal_quota lower = {
            .max_keys = 5, .max_bytes = 500, .max_ops_per_second = SHOAL_UNLIMITED};
        assert_true(shoal_tenant_set_quota(db, tenant, &lower) < 0);
        shoal_quota got;
        assert_ok(shoal_tenant_get_quota(db, tenant, &got));
        assert_int_equal(got.max_keys, 100);
        assert_int_equal(got.max_bytes, 100000);

        /* A drop that fails: the namespace and its data stay. */
        arm(&f, c);
        assert_true(shoal_ns_drop(db, "doomed") < 0);
        item_expect(doomed, 3);
        io_faults_clear(&f);
        shoal_ns_close(keep);
        shoal_ns_close(doomed);
        shoal_close(db); /* a failed fsync may leave it read-only: its result may be an error */

        db = open_dir(dir, opts, NULL);
        assert_code(shoal_ns_open(db, "fresh", NULL, &fresh), SHOAL_ENOTFOUND);
        assert_code(shoal_tenant_find(db, "other", &other), SHOAL_ENOTFOUND);
        assert_ok(shoal_tenant_find(db, "owner", &other));
        assert_int_equal(other, tenant);
        assert_ok(shoal_tenant_get_quota(db, tenant, &got));
        assert_int_equal(got.max_keys, 100);
        assert_int_equal(got.max_bytes, 100000);
        keep = ns_get(db, "keep");
        doomed = ns_get(db, "doomed");
        for (unsigned i = 0; i < 10; i++) {
            item_expect(keep, i);
            item_expect(doomed, i);
        }
        assert_ok(shoal_ns_list(db, UINT32_MAX, NULL, 0, &count));
        assert_int_equal(count, 2);
        /* The catalog works again: the same changes now succeed and survive. */
        fresh = test_ns(db, "fresh", SHOAL_PLACE_SPREAD, 0);
        assert_ok(item_put(fresh, 1));
        assert_ok(shoal_ns_drop(db, "doomed"));
        shoal_ns_close(fresh);
        shoal_ns_close(keep);
        shoal_ns_close(doomed);
        assert_ok(shoal_close(db));
        db = open_dir(dir, opts, NULL);
        fresh = ns_get(db, "fresh");
        item_expect(fresh, 1);
        assert_code(shoal_ns_open(db, "doomed", NULL, &doomed), SHOAL_ENOTFOUND);
        shoal_ns_close(fresh);
        assert_ok(shoal_close(db));
        testing_remove_tree(dir);
    }
    shoal_options_free(opts);
}

/* The last step of a MANIFEST replacement, the fsync of the directory after the rename,
 * fails: the new MANIFEST may or may not be durable, and here (the rename did happen) it
 * is on disk. Whatever the call reports, no write acknowledged afterwards may be lost by a
 * crash (architecture invariants 3 and 8). A child process makes one catalog change under
 * that fault, then writes with sync=always, then exits without closing (a crash right
 * after, before any later catalog change could rewrite the MANIFEST). Its exit status says
 * what it was told: bit 0 the change failed, bit 1 the write afterwards was acknowledged;
 * 64 and up: the child could not run its steps. */
enum dir_sync_change {
    DIR_SYNC_DROP,   /* drop "data", then write to "data" through the open handle */
    DIR_SYNC_CREATE, /* create "fresh", then write to "data" */
};

struct dir_sync_case {
    char dir[4096];
    enum dir_sync_change change;
};

static int dir_sync_child(void *ctx)
{
    struct dir_sync_case *c = ctx;
    struct io_faults f;
    io_faults_init(&f, NULL);
    shoal_options *opts = NULL;
    shoal_options_new(&opts);
    shoal_options_set(opts, SHOAL_OPT_SHARDS, 4);
    shoal_options_set(opts, SHOAL_OPT_LOG_STREAMS, 2);
    shoal_options_set(opts, SHOAL_OPT_SYNC, SHOAL_SYNC_ALWAYS);
    shoal_db *db = NULL;
    if (durable_open(c->dir, opts, &f.io, &db) != 0)
        return 64;
    shoal_ns *ns = NULL, *fresh = NULL;
    shoal_ns_config cfg = {.kind = SHOAL_KIND_KV, .placement = SHOAL_PLACE_SPREAD};
    if (shoal_ns_open(db, "data", &cfg, &ns) != 0)
        return 65;
    for (unsigned i = 0; i < 10; i++)
        if (item_put(ns, i) != 0)
            return 66;
    int status = 0;
    io_faults_fail(&f, IO_OP_DIR_SYNC, io_faults_count(&f, IO_OP_DIR_SYNC) + 1, EIO, false);
    int err = c->change == DIR_SYNC_DROP ? shoal_ns_drop(db, "data")
                                         : shoal_ns_open(db, "fresh", &cfg, &fresh);
    io_faults_clear(&f);
    if (err != 0)
        status |= 1;
    if (item_put(ns, 10) == 0)
        status |= 2;
    return status; /* run_child _exits: a crash, no close */
}

static void dir_sync_check(enum dir_sync_change change)
{
    const char *what = change == DIR_SYNC_DROP ? "drop" : "create";
    shoal_options *opts = durable_options(4, 2, SHOAL_SYNC_ALWAYS);
    struct dir_sync_case c = {.change = change};
    make_dir(c.dir, sizeof c.dir);
    int status = run_child(dir_sync_child, &c);
    assert_true(status >= 0 && status < 64);
    bool failed = status & 1, acked = status & 2;

    /* Gather the facts, clean up, then judge: a failure leaves nothing behind. */
    shoal_db *db = open_dir(c.dir, opts, NULL);
    shoal_ns *ns = NULL, *fresh = NULL;
    int found = shoal_ns_open(db, "data", NULL, &ns);
    unsigned items = 0;
    bool ack_present = false;
    if (found == 0) {
        for (unsigned i = 0; i < 11; i++) {
            char key[32];
            uint8_t value[320], got[320];
            size_t klen = item_key(i, key), vlen = item_value(i, value), got_len = 0;
            bool same = shoal_get_into(ns, NULL, key, klen, got, sizeof got, &got_len) == 0 &&
                        got_len == vlen && memcmp(got, value, vlen) == 0;
            items += i < 10 && same;
            ack_present |= i == 10 && same;
        }
    }
    int phantom = shoal_ns_open(db, "fresh", NULL, &fresh);
    shoal_ns_close(fresh);
    shoal_ns_close(ns);
    assert_ok(shoal_close(db));
    shoal_options_free(opts);
    testing_remove_tree(c.dir);

    if (change == DIR_SYNC_DROP && !failed)
        assert_code(found, SHOAL_ENOTFOUND); /* a drop that succeeded is durable */
    if (acked && !ack_present)
        print_error("%s failed with the directory's fsync, a later write was acknowledged "
                    "under sync=always, and after a crash it is gone (namespace: %s)\n",
                    what, shoal_error_name(found));
    assert_false(acked && !ack_present);
    if (found == 0)
        assert_int_equal(items, 10);
    /* Reported as not created, the namespace must not appear after the crash either,
     * unless the failure also made the database refuse writes (an outcome it then
     * reported as unknown). */
    if (change == DIR_SYNC_CREATE && failed && phantom == 0 && acked)
        print_error("create failed with the directory's fsync, the database went on "
                    "acknowledging writes, and after a crash the namespace it reported as "
                    "not created exists\n");
    assert_false(change == DIR_SYNC_CREATE && failed && phantom == 0 && acked);
}

static void test_catalog_dir_fsync_failure_drop(void **state)
{
    (void)state;
    dir_sync_check(DIR_SYNC_DROP);
}

static void test_catalog_dir_fsync_failure_create(void **state)
{
    (void)state;
    dir_sync_check(DIR_SYNC_CREATE);
}

/* A catalog change does not hold the catalog lock while its MANIFEST is written
 * (internal.h C1). The database runs on an I/O table whose fsync, once armed, waits at a
 * gate: a namespace's drop, a namespace's creation and a tenant's creation are each left
 * inside their MANIFEST's fsync while a helper thread reads the catalog (shoal_stats,
 * shoal_ns_list, the lookup of an existing namespace). Those reads must all return while
 * the change is still held at the gate; with the lock held across the write they would
 * wait for it, and the bounded wait below reports that as a failure instead of hanging.
 * Meanwhile what is being dropped or created is invisible; afterwards each change is
 * durable across a reopen. */
struct gated_io {
    struct shoal_io io; /* first: the engine passes &io to the hooks */
    const struct shoal_io *base;
    pthread_mutex_t mutex;
    pthread_cond_t changed;
    bool armed;
    unsigned waiting; /* fsyncs held at the gate */
};

static int gated_fsync(const struct shoal_io *io, int fd)
{
    struct gated_io *g = (struct gated_io *)io;
    pthread_mutex_lock(&g->mutex);
    g->waiting++;
    pthread_cond_broadcast(&g->changed);
    while (g->armed)
        pthread_cond_wait(&g->changed, &g->mutex);
    g->waiting--;
    pthread_mutex_unlock(&g->mutex);
    return g->base->fsync(g->base, fd);
}

static void gate_set(struct gated_io *g, bool armed)
{
    pthread_mutex_lock(&g->mutex);
    g->armed = armed;
    pthread_cond_broadcast(&g->changed);
    pthread_mutex_unlock(&g->mutex);
}

/* Waits, at most 30 s, until `what` holds, re-checked whenever the gate changes. */
static bool gate_wait_for(struct gated_io *g, bool (*what)(void *), void *ctx)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 30;
    pthread_mutex_lock(&g->mutex);
    bool ok = what(ctx);
    while (!ok && pthread_cond_timedwait(&g->changed, &g->mutex, &deadline) == 0)
        ok = what(ctx);
    ok = ok || what(ctx);
    pthread_mutex_unlock(&g->mutex);
    return ok;
}

static bool gate_has_waiter(void *ctx)
{
    return ((struct gated_io *)ctx)->waiting > 0;
}

enum catalog_job_kind { JOB_DROP, JOB_CREATE, JOB_TENANT, JOB_READ };

struct catalog_job {
    pthread_t thread;
    struct gated_io *gate;
    shoal_db *db;
    enum catalog_job_kind kind;
    int result;
    bool done;              /* under gate->mutex */
    shoal_db_stats stats;   /* JOB_READ */
    size_t listed;          /* JOB_READ: namespaces shoal_ns_list returned */
    int lookup;             /* JOB_READ: shoal_ns_open of "keep" */
};

static void *catalog_job_main(void *arg)
{
    struct catalog_job *job = arg;
    int result = 0;
    if (job->kind == JOB_DROP) {
        result = shoal_ns_drop(job->db, "gone");
    } else if (job->kind == JOB_TENANT) {
        uint32_t id;
        result = shoal_tenant_create(job->db, "held", NULL, &id);
    } else if (job->kind == JOB_CREATE) {
        shoal_ns_config cfg = {.kind = SHOAL_KIND_KV, .placement = SHOAL_PLACE_SPREAD};
        shoal_ns *ns = NULL;
        result = shoal_ns_open(job->db, "new", &cfg, &ns);
        shoal_ns_close(ns);
    } else {
        shoal_ns_info infos[8];
        shoal_ns *ns = NULL;
        result = shoal_stats(job->db, &job->stats);
        if (result == 0)
            result = shoal_ns_list(job->db, UINT32_MAX, infos, 8, &job->listed);
        job->lookup = shoal_ns_open(job->db, "keep", NULL, &ns);
        shoal_ns_close(ns);
    }
    pthread_mutex_lock(&job->gate->mutex);
    job->result = result;
    job->done = true;
    pthread_cond_broadcast(&job->gate->changed);
    pthread_mutex_unlock(&job->gate->mutex);
    return NULL;
}

static bool catalog_job_done(void *ctx)
{
    return ((struct catalog_job *)ctx)->done;
}

static void catalog_job_start(struct catalog_job *job, struct gated_io *g, shoal_db *db,
                              enum catalog_job_kind kind)
{
    *job = (struct catalog_job){.gate = g, .db = db, .kind = kind};
    assert_int_equal(pthread_create(&job->thread, NULL, catalog_job_main, job), 0);
}

/* With a change held at the gate: a reader gets its answers while the change still waits;
 * `namespaces` is what it must count (the held namespace not among them). */
static void expect_reader_free(struct gated_io *g, shoal_db *db, uint64_t namespaces)
{
    struct catalog_job reader;
    catalog_job_start(&reader, g, db, JOB_READ);
    bool answered = gate_wait_for(g, catalog_job_done, &reader);
    pthread_mutex_lock(&g->mutex);
    bool change_still_held = g->waiting > 0;
    pthread_mutex_unlock(&g->mutex);
    if (!answered)
        gate_set(g, false); /* let both finish, then fail */
    pthread_join(reader.thread, NULL);
    assert_true(answered);
    assert_true(change_still_held);
    assert_ok(reader.result);
    assert_int_equal(reader.stats.namespaces, namespaces);
    assert_int_equal(reader.listed, namespaces);
    assert_ok(reader.lookup);
}

static void test_catalog_change_leaves_readers_free(void **state)
{
    (void)state;
    char dir[4096];
    make_dir(dir, sizeof dir);
    struct gated_io g = {.base = io_posix()};
    g.io = *g.base;
    g.io.fsync = gated_fsync;
    pthread_mutex_init(&g.mutex, NULL);
    pthread_cond_init(&g.changed, NULL);
    shoal_options *opts = durable_options(4, 1, SHOAL_SYNC_ALWAYS);
    shoal_db *db = NULL;
    assert_ok(durable_open(dir, opts, &g.io, &db));
    shoal_ns *keep = test_ns(db, "keep", SHOAL_PLACE_SPREAD, 0);
    shoal_ns *gone = test_ns(db, "gone", SHOAL_PLACE_PINNED, 0);
    for (unsigned i = 0; i < 20; i++) {
        assert_ok(item_put(keep, i));
        assert_ok(item_put(gone, i));
    }
    shoal_ns_close(gone);

    /* A drop held inside its MANIFEST's fsync. */
    gate_set(&g, true);
    struct catalog_job change;
    catalog_job_start(&change, &g, db, JOB_DROP);
    assert_true(gate_wait_for(&g, gate_has_waiter, &g));
    expect_reader_free(&g, db, 1);
    gate_set(&g, false);
    pthread_join(change.thread, NULL);
    assert_ok(change.result);

    /* A create held the same way: "new" cannot be opened by name until it is durable. */
    gate_set(&g, true);
    catalog_job_start(&change, &g, db, JOB_CREATE);
    assert_true(gate_wait_for(&g, gate_has_waiter, &g));
    expect_reader_free(&g, db, 1);
    shoal_ns *early = NULL;
    int early_open = shoal_ns_open(db, "new", NULL, &early);
    gate_set(&g, false);
    pthread_join(change.thread, NULL);
    assert_ok(change.result);
    assert_code(early_open, SHOAL_ENOTFOUND);
    assert_null(early);

    /* A new tenant held the same way: not found by name until it is durable. */
    gate_set(&g, true);
    catalog_job_start(&change, &g, db, JOB_TENANT);
    assert_true(gate_wait_for(&g, gate_has_waiter, &g));
    expect_reader_free(&g, db, 2);
    uint32_t tenant;
    int early_find = shoal_tenant_find(db, "held", &tenant);
    gate_set(&g, false);
    pthread_join(change.thread, NULL);
    assert_ok(change.result);
    assert_code(early_find, SHOAL_ENOTFOUND);
    assert_ok(shoal_tenant_find(db, "held", &tenant));

    shoal_ns_close(keep);
    assert_ok(shoal_close(db));
    db = open_dir(dir, opts, NULL);
    shoal_ns *ns = NULL;
    assert_code(shoal_ns_open(db, "gone", NULL, &ns), SHOAL_ENOTFOUND);
    assert_ok(shoal_ns_open(db, "new", NULL, &ns));
    shoal_ns_close(ns);
    assert_ok(shoal_tenant_find(db, "held", &tenant));
    assert_ok(shoal_ns_open(db, "keep", NULL, &ns));
    for (unsigned i = 0; i < 20; i++)
        item_expect(ns, i);
    shoal_ns_close(ns);
    assert_ok(shoal_close(db));
    shoal_options_free(opts);
    pthread_cond_destroy(&g.changed);
    pthread_mutex_destroy(&g.mutex);
}

/* ------------------------------------------------------------------------------------
 * 3. Checkpoints racing log rolls.
 * ---------------------------------------------------------------------------------- */

/* Checkpoints while the log rolls segments. The checkpointer's wal_delete_before edits a
 * stream's list of segments while that stream's flusher may be appending a new segment to
 * it (a roll), so the two must not touch the list at once. A child process writes from two
 * threads into 64 KiB segments (a roll every hundred writes or so) while a third thread
 * takes checkpoints in a loop, then leaves without closing. Every write returned before
 * (sync=periodic: handed to write(2), so it survives the end of the process) must be
 * found by a reopen: a segment deleted while it still held live records would lose some.
 * In a ThreadSanitizer build the child leaves through exit() instead of _exit(), so a race
 * it reports makes its exit status non-zero and fails the test. */
enum { ROLL_WRITERS = 2, ROLL_KEYS = 300 };

struct roll_case {
    char dir[4096];
    unsigned writes; /* per writer */
};

struct roll_writer {
    pthread_t thread;
    shoal_ns *ns;
    unsigned index, writes;
    int error;
};

/* Writer w's key k holds item w * 100000 + (the last i < writes with i % ROLL_KEYS == k). */
static unsigned roll_item(unsigned w, unsigned i)
{
    return w * 100000 + i;
}

static size_t roll_key(unsigned w, unsigned k, char *key)
{
    return (size_t)sprintf(key, "roll-%u-%03u", w, k);
}

static void *roll_writer_main(void *arg)
{
    struct roll_writer *rw = arg;
    for (unsigned i = 0; i < rw->writes && rw->error == 0; i++) {
        char key[32];
        uint8_t value[320];
        size_t klen = roll_key(rw->index, i % ROLL_KEYS, key);
        size_t vlen = item_value(roll_item(rw->index, i), value);
        rw->error = shoal_put(rw->ns, key, klen, value, vlen, NULL);
    }
    return NULL;
}

struct roll_checkpointer {
    pthread_t thread;
    shoal_db *db;
    atomic_bool stop;
    unsigned done;
    int error;
};

static void *roll_checkpointer_main(void *arg)
{
    struct roll_checkpointer *rc = arg;
    for (unsigned i = 0; i < 100000 && !atomic_load(&rc->stop) && rc->error == 0; i++) {
        rc->error = shoal_checkpoint(rc->db);
        rc->done++;
    }
    return NULL;
}

static int roll_child(void *ctx)
{
    struct roll_case *c = ctx;
    shoal_options *opts = NULL;
    shoal_options_new(&opts);
    shoal_options_set(opts, SHOAL_OPT_SHARDS, 4);
    shoal_options_set(opts, SHOAL_OPT_LOG_STREAMS, 1);
    shoal_options_set(opts, SHOAL_OPT_SYNC, SHOAL_SYNC_PERIODIC);
    shoal_options_set(opts, SHOAL_OPT_LOG_SEGMENT_BYTES, 64 << 10);
    shoal_db *db = NULL;
    if (shoal_open(c->dir, opts, &db) != 0)
        return 64;
    shoal_ns *ns = NULL;
    shoal_ns_config cfg = {.kind = SHOAL_KIND_KV, .placement = SHOAL_PLACE_SPREAD};
    if (shoal_ns_open(db, "data", &cfg, &ns) != 0)
        return 65;
    struct roll_checkpointer rc = {.db = db};
    struct roll_writer rw[ROLL_WRITERS];
    if (pthread_create(&rc.thread, NULL, roll_checkpointer_main, &rc) != 0)
        return 66;
    for (unsigned w = 0; w < ROLL_WRITERS; w++) {
        rw[w] = (struct roll_writer){.ns = ns, .index = w, .writes = c->writes};
        if (pthread_create(&rw[w].thread, NULL, roll_writer_main, &rw[w]) != 0)
            return 66;
    }
    for (unsigned w = 0; w < ROLL_WRITERS; w++)
        pthread_join(rw[w].thread, NULL);
    atomic_store(&rc.stop, true);
    pthread_join(rc.thread, NULL);
    for (unsigned w = 0; w < ROLL_WRITERS; w++)
        if (rw[w].error)
            return 67;
    if (rc.error)
        return 68;
    if (rc.done < 2)
        return 69; /* no checkpoint ran beside the writers: the case did not happen */
#ifdef __SANITIZE_THREAD__
    exit(0); /* ThreadSanitizer sets the status at exit if it reported a race */
#else
    return 0; /* run_child _exits: a crash, no close */
#endif
}

static void test_checkpoints_racing_log_rolls(void **state)
{
    (void)state;
    struct roll_case c = {.writes = SHOAL_TEST_SCALE(6000, 2500)};
    make_dir(c.dir, sizeof c.dir);
    int status = run_child(roll_child, &c);
    if (status != 0)
        print_error("the writing child ended with status %d (66 from ThreadSanitizer: a data "
                    "race; 64-69: a step of the child failed)\n",
                    status);
    assert_int_equal(status, 0);
    shoal_db *db = open_dir(c.dir, NULL, NULL);
    shoal_ns *ns = ns_get(db, "data");
    for (unsigned w = 0; w < ROLL_WRITERS; w++) {
        for (unsigned k = 0; k < ROLL_KEYS; k++) {
            unsigned last = (c.writes - 1) - ((c.writes - 1 - k) % ROLL_KEYS);
            char key[32];
            uint8_t value[320];
            size_t klen = roll_key(w, k, key);
            test_expect(ns, NULL, key, klen, value, item_value(roll_item(w, last), value));
        }
    }
    assert_int_equal(test_count_keys(ns, NULL), ROLL_WRITERS * ROLL_KEYS);
    shoal_ns_close(ns);
    assert_ok(shoal_close(db));
    testing_remove_tree(c.dir);
}

/* ------------------------------------------------------------------------------------
 * 4. Recovery equals the model.
 * ---------------------------------------------------------------------------------- */

enum {
    MODEL_NS = 6,
    MODEL_KEYS = 48,
    MODEL_TENANTS = 4,
    MODEL_VALUE_MAX = 300,
    MODEL_BATCH_MAX = 6,
};

struct model_value {
    bool present;
    uint32_t len;
    uint64_t seed; /* the bytes are test_fill_pattern(len, seed) */
};

struct model_ns {
    bool exists;
    shoal_placement placement;
    uint32_t tenant;
    struct model_value values[MODEL_KEYS];
};

struct model {
    struct model_ns ns[MODEL_NS];
    uint32_t tenants; /* including tenant 0, "default" */
    shoal_quota quota[MODEL_TENANTS];
    int64_t keys[MODEL_TENANTS], bytes[MODEL_TENANTS]; /* usage of tenants 1.. */
    uint64_t next_seed;
    /* What the runs exercised, so the test can show it reached every path. */
    unsigned refusals, creates, drops, tenant_changes, batches, clears;
};

/* One run of operations, against the model alone (db NULL) or the engine and the model. */
struct model_run {
    struct model *m;
    struct test_rng *rng;
    shoal_db *db;
    shoal_ns *handles[MODEL_NS];
    char why[512];
};

static void model_ns_name(unsigned slot, char *name)
{
    sprintf(name, "ns%u", slot);
}

static void model_tenant_name(uint32_t id, char *name)
{
    sprintf(name, "tenant%u", id);
}

/* Keys of several shapes, so the order of scans is not the order of indexes. */
static size_t model_key(unsigned k, uint8_t *key)
{
    int n;
    switch (k % 4) {
    case 0:
        n = sprintf((char *)key, "k%u", k);
        break;
    case 1:
        n = sprintf((char *)key, "key:%06u", k);
        break;
    case 2:
        n = sprintf((char *)key, "%u/a/longer/key/with/a/path", k);
        break;
    default:
        n = sprintf((char *)key, "_%02u", k);
        key[0] = 0xff; /* a byte above every ASCII key */
        break;
    }
    return (size_t)n;
}

static int model_key_index(const uint8_t *key, size_t klen)
{
    uint8_t buf[64];
    for (unsigned k = 0; k < MODEL_KEYS; k++)
        if (model_key(k, buf) == klen && memcmp(buf, key, klen) == 0)
            return (int)k;
    return -1;
}

static int model_fail(struct model_run *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int model_fail(struct model_run *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->why, sizeof r->why, fmt, ap);
    va_end(ap);
    return -1;
}

static int model_check_code(struct model_run *r, const char *what, int got, int expected)
{
    if (got == expected)
        return 0;
    return model_fail(r, "%s returned %s, the model expected %s", what, shoal_error_name(got),
                      shoal_error_name(expected));
}

/* Does the tenant's quota admit these deltas? (kv.c: a delta that does not grow a usage
 * always passes; otherwise usage + delta must stay within the maximum.) */
static bool model_admits(const struct model *m, uint32_t t, int64_t dkeys, int64_t dbytes)
{
    if (t == 0)
        return true;
    const shoal_quota *q = &m->quota[t];
    if (dkeys > 0 && q->max_keys != SHOAL_UNLIMITED && (uint64_t)(m->keys[t] + dkeys) > q->max_keys)
        return false;
    if (dbytes > 0 && q->max_bytes != SHOAL_UNLIMITED &&
        (uint64_t)(m->bytes[t] + dbytes) > q->max_bytes)
        return false;
    return true;
}

static int64_t model_entry_bytes(unsigned k, const struct model_value *v)
{
    uint8_t key[64];
    return v->present ? (int64_t)(model_key(k, key) + v->len) : 0;
}

/* Sets slot/key to v (present or not), keeping the tenant's usage. */
static void model_set(struct model *m, unsigned slot, unsigned k, struct model_value v)
{
    struct model_ns *ns = &m->ns[slot];
    struct model_value *old = &ns->values[k];
    uint32_t t = ns->tenant;
    m->keys[t] += (int64_t)v.present - (int64_t)old->present;
    m->bytes[t] += model_entry_bytes(k, &v) - model_entry_bytes(k, old);
    *old = v;
}

static int model_pick_existing(struct model_run *r)
{
    unsigned start = (unsigned)test_rng_below(r->rng, MODEL_NS);
    for (unsigned i = 0; i < MODEL_NS; i++) {
        unsigned slot = (start + i) % MODEL_NS;
        if (r->m->ns[slot].exists)
            return (int)slot;
    }
    return -1;
}

static struct model_value model_new_value(struct model_run *r)
{
    struct model_value v = {.present = true};
    v.len = (uint32_t)test_rng_below(r->rng, MODEL_VALUE_MAX + 1);
    v.seed = r->m->next_seed++;
    return v;
}

static int model_op_put(struct model_run *r)
{
    int slot = model_pick_existing(r);
    unsigned k = (unsigned)test_rng_below(r->rng, MODEL_KEYS);
    struct model_value v = model_new_value(r);
    if (slot < 0)
        return 0;
    struct model *m = r->m;
    struct model_value *old = &m->ns[slot].values[k];
    int64_t dkeys = old->present ? 0 : 1;
    int64_t dbytes = model_entry_bytes(k, &v) - model_entry_bytes(k, old);
    int expected = model_admits(m, m->ns[slot].tenant, dkeys, dbytes) ? 0 : SHOAL_EQUOTA;
    if (r->db) {
        uint8_t key[64], value[MODEL_VALUE_MAX];
        size_t klen = model_key(k, key);
        test_fill_pattern(value, v.len, v.seed);
        int err = shoal_put(r->handles[slot], key, klen, value, v.len, &always);
        if (model_check_code(r, "put", err, expected))
            return -1;
    }
    if (expected == 0)
        model_set(m, (unsigned)slot, k, v);
    else
        m->refusals++;
    return 0;
}

static int model_op_delete(struct model_run *r)
{
    int slot = model_pick_existing(r);
    unsigned k = (unsigned)test_rng_below(r->rng, MODEL_KEYS);
    if (slot < 0)
        return 0;
    struct model *m = r->m;
    int expected = m->ns[slot].values[k].present ? 0 : SHOAL_ENOTFOUND;
    if (r->db) {
        uint8_t key[64];
        size_t klen = model_key(k, key);
        if (model_check_code(r, "delete", shoal_delete(r->handles[slot], key, klen, &always),
                             expected))
            return -1;
    }
    model_set(m, (unsigned)slot, k, (struct model_value){0});
    return 0;
}

static int model_op_batch(struct model_run *r)
{
    struct model *m = r->m;
    unsigned n = 2 + (unsigned)test_rng_below(r->rng, MODEL_BATCH_MAX - 1);
    int slots[MODEL_BATCH_MAX];
    unsigned keys[MODEL_BATCH_MAX];
    struct model_value values[MODEL_BATCH_MAX];
    for (unsigned i = 0; i < n; i++) {
        slots[i] = model_pick_existing(r);
        keys[i] = (unsigned)test_rng_below(r->rng, MODEL_KEYS);
        bool put = test_rng_percent(r->rng, 75);
        values[i] = model_new_value(r);
        values[i].present = put;
        /* One operation per key: a repeated key is dropped from the batch. */
        for (unsigned j = 0; j < i; j++)
            if (slots[j] == slots[i] && keys[j] == keys[i])
                slots[i] = -1;
    }
    if (model_pick_existing(r) < 0)
        return 0;
    /* Net deltas per tenant, as kv.c sums them. */
    int64_t dkeys[MODEL_TENANTS] = {0}, dbytes[MODEL_TENANTS] = {0};
    unsigned changes = 0;
    for (unsigned i = 0; i < n; i++) {
        if (slots[i] < 0)
            continue;
        struct model_ns *ns = &m->ns[slots[i]];
        struct model_value *old = &ns->values[keys[i]];
        dkeys[ns->tenant] += (int64_t)values[i].present - (int64_t)old->present;
        dbytes[ns->tenant] +=
            model_entry_bytes(keys[i], &values[i]) - model_entry_bytes(keys[i], old);
        changes += values[i].present || old->present;
    }
    bool admitted = true;
    for (uint32_t t = 1; t < m->tenants; t++)
        admitted = admitted && model_admits(m, t, dkeys[t], dbytes[t]);
    int expected = admitted ? 0 : SHOAL_EQUOTA;
    if (r->db) {
        shoal_batch *b = NULL;
        if (shoal_batch_new(r->db, &b) != 0)
            return model_fail(r, "batch_new failed");
        for (unsigned i = 0; i < n; i++) {
            if (slots[i] < 0)
                continue;
            uint8_t key[64], value[MODEL_VALUE_MAX];
            size_t klen = model_key(keys[i], key);
            int err;
            if (values[i].present) {
                test_fill_pattern(value, values[i].len, values[i].seed);
                err = shoal_batch_put(b, r->handles[slots[i]], key, klen, value, values[i].len);
            } else {
                err = shoal_batch_delete(b, r->handles[slots[i]], key, klen);
            }
            if (err) {
                shoal_batch_free(b);
                return model_fail(r, "batch_put/delete: %s", shoal_error_name(err));
            }
        }
        uint64_t before = shoal_last_seq(r->db), seq = 0;
        int err = shoal_batch_commit(b, &always, &seq);
        shoal_batch_free(b);
        if (model_check_code(r, "batch commit", err, expected))
            return -1;
        /* A batch that changes something draws a seq; one that changes nothing none. */
        if (err == 0 && (changes > 0) != (seq > before))
            return model_fail(r, "batch of %u changes: seq %" PRIu64 " after %" PRIu64, changes,
                              seq, before);
    }
    m->batches++;
    m->refusals += !admitted;
    if (admitted)
        for (unsigned i = 0; i < n; i++)
            if (slots[i] >= 0)
                model_set(m, (unsigned)slots[i], keys[i], values[i]);
    return 0;
}

/* A batch that deletes every key of a namespace, then puts one key back into it. */
static int model_op_clear(struct model_run *r)
{
    struct model *m = r->m;
    int slot = model_pick_existing(r);
    unsigned k = (unsigned)test_rng_below(r->rng, MODEL_KEYS);
    struct model_value v = model_new_value(r);
    if (slot < 0)
        return 0;
    struct model_ns *ns = &m->ns[slot];
    int64_t dkeys = 1, dbytes = model_entry_bytes(k, &v);
    for (unsigned i = 0; i < MODEL_KEYS; i++) {
        dkeys -= ns->values[i].present;
        dbytes -= model_entry_bytes(i, &ns->values[i]);
    }
    bool admitted = model_admits(m, ns->tenant, dkeys, dbytes);
    if (r->db) {
        uint8_t key[64], value[MODEL_VALUE_MAX];
        size_t klen = model_key(k, key);
        test_fill_pattern(value, v.len, v.seed);
        shoal_batch *b = NULL;
        if (shoal_batch_new(r->db, &b) != 0)
            return model_fail(r, "batch_new failed");
        int err = shoal_batch_delete_all(b, r->handles[slot]);
        if (!err)
            err = shoal_batch_put(b, r->handles[slot], key, klen, value, v.len);
        if (!err)
            err = shoal_batch_commit(b, &always, NULL);
        shoal_batch_free(b);
        if (model_check_code(r, "delete_all batch", err, admitted ? 0 : SHOAL_EQUOTA))
            return -1;
    }
    m->clears += admitted;
    m->refusals += !admitted;
    if (admitted) {
        for (unsigned i = 0; i < MODEL_KEYS; i++)
            model_set(m, (unsigned)slot, i, (struct model_value){0});
        model_set(m, (unsigned)slot, k, v);
    }
    return 0;
}

static int model_op_ns_create(struct model_run *r)
{
    struct model *m = r->m;
    unsigned slot = (unsigned)test_rng_below(r->rng, MODEL_NS);
    shoal_placement placement =
        test_rng_percent(r->rng, 50) ? SHOAL_PLACE_PINNED : SHOAL_PLACE_SPREAD;
    uint32_t tenant = (uint32_t)test_rng_below(r->rng, m->tenants);
    if (m->ns[slot].exists)
        return 0;
    if (r->db) {
        char name[16];
        model_ns_name(slot, name);
        shoal_ns_config cfg = {.kind = SHOAL_KIND_KV, .placement = placement, .tenant = tenant};
        int err = shoal_ns_open(r->db, name, &cfg, &r->handles[slot]);
        if (model_check_code(r, "namespace create", err, 0))
            return -1;
    }
    m->ns[slot] = (struct model_ns){.exists = true, .placement = placement, .tenant = tenant};
    m->creates++;
    return 0;
}

static int model_op_ns_drop(struct model_run *r)
{
    struct model *m = r->m;
    int slot = model_pick_existing(r);
    if (slot < 0)
        return 0;
    if (r->db) {
        char name[16];
        model_ns_name((unsigned)slot, name);
        if (model_check_code(r, "namespace drop", shoal_ns_drop(r->db, name), 0))
            return -1;
        shoal_ns_close(r->handles[slot]);
        r->handles[slot] = NULL;
    }
    for (unsigned k = 0; k < MODEL_KEYS; k++)
        model_set(m, (unsigned)slot, k, (struct model_value){0});
    m->ns[slot].exists = false;
    m->drops++;
    return 0;
}

static shoal_quota model_random_quota(struct model_run *r)
{
    shoal_quota q = {.max_ops_per_second = SHOAL_UNLIMITED};
    q.max_keys = 10 + test_rng_below(r->rng, 50);
    q.max_bytes = 1000 + test_rng_below(r->rng, 8000);
    if (test_rng_percent(r->rng, 20))
        q.max_bytes = SHOAL_UNLIMITED;
    return q;
}

static int model_op_tenant_create(struct model_run *r)
{
    struct model *m = r->m;
    shoal_quota q = model_random_quota(r);
    if (m->tenants == MODEL_TENANTS)
        return 0;
    uint32_t id = m->tenants;
    if (r->db) {
        char name[32];
        model_tenant_name(id, name);
        uint32_t got = 0;
        if (model_check_code(r, "tenant create", shoal_tenant_create(r->db, name, &q, &got), 0))
            return -1;
        if (got != id)
            return model_fail(r, "tenant id %u, the model expected %u", got, id);
    }
    m->quota[id] = q;
    m->tenants++;
    m->tenant_changes++;
    return 0;
}

static int model_op_quota_set(struct model_run *r)
{
    struct model *m = r->m;
    shoal_quota q = model_random_quota(r);
    uint32_t id = (uint32_t)test_rng_below(r->rng, MODEL_TENANTS);
    if (id == 0 || id >= m->tenants)
        return 0;
    if (r->db && model_check_code(r, "quota set", shoal_tenant_set_quota(r->db, id, &q), 0))
        return -1;
    m->quota[id] = q;
    m->tenant_changes++;
    return 0;
}

static int model_op_get(struct model_run *r)
{
    int slot = model_pick_existing(r);
    unsigned k = (unsigned)test_rng_below(r->rng, MODEL_KEYS);
    if (slot < 0 || !r->db)
        return 0;
    const struct model_value *v = &r->m->ns[slot].values[k];
    uint8_t key[64], value[MODEL_VALUE_MAX], got[MODEL_VALUE_MAX];
    size_t klen = model_key(k, key), got_len = 0;
    int err = shoal_get_into(r->handles[slot], NULL, key, klen, got, sizeof got, &got_len);
    if (model_check_code(r, "get", err, v->present ? 0 : SHOAL_ENOTFOUND))
        return -1;
    if (v->present) {
        test_fill_pattern(value, v->len, v->seed);
        if (got_len != v->len || memcmp(got, value, v->len) != 0)
            return model_fail(r, "get ns%d key %u: wrong value", slot, k);
    }
    return 0;
}

/* Runs count random operations. The random numbers drawn do not depend on whether db is
 * set, so a run against the model alone follows a run against the engine step by step. */
static int model_run_ops(struct model_run *r, unsigned count)
{
    for (unsigned i = 0; i < count; i++) {
        unsigned dice = (unsigned)test_rng_below(r->rng, 100);
        int err;
        if (dice < 44)
            err = model_op_put(r);
        else if (dice < 58)
            err = model_op_delete(r);
        else if (dice < 76)
            err = model_op_batch(r);
        else if (dice < 80)
            err = model_op_ns_create(r);
        else if (dice < 82)
            err = model_op_ns_drop(r);
        else if (dice < 84)
            err = model_op_tenant_create(r);
        else if (dice < 87)
            err = model_op_quota_set(r);
        else if (dice < 89) {
            err = 0;
            if (r->db) {
                int rc = shoal_checkpoint(r->db);
                if (rc)
                    err = model_fail(r, "checkpoint: %s (%s)", shoal_error_name(rc),
                                     shoal_error_detail());
            }
        } else if (dice < 90)
            err = model_op_clear(r);
        else
            err = model_op_get(r);
        if (err) {
            size_t len = strlen(r->why);
            snprintf(r->why + len, sizeof r->why - len, " (operation %u)", i);
            return err;
        }
    }
    return 0;
}

static int model_open_handles(struct model_run *r)
{
    for (unsigned slot = 0; slot < MODEL_NS; slot++) {
        r->handles[slot] = NULL;
        if (!r->m->ns[slot].exists)
            continue;
        char name[16];
        model_ns_name(slot, name);
        int err = shoal_ns_open(r->db, name, NULL, &r->handles[slot]);
        if (err)
            return model_fail(r, "open of %s: %s", name, shoal_error_name(err));
    }
    return 0;
}

static void model_close_handles(struct model_run *r)
{
    for (unsigned slot = 0; slot < MODEL_NS; slot++) {
        shoal_ns_close(r->handles[slot]);
        r->handles[slot] = NULL;
    }
}

/* Compares everything the database holds with the model. */
static int model_compare(struct model_run *r)
{
    struct model *m = r->m;
    shoal_ns_info infos[MODEL_NS + 4];
    size_t count = 0;
    int err = shoal_ns_list(r->db, UINT32_MAX, infos, MODEL_NS + 4, &count);
    if (err)
        return model_fail(r, "ns_list: %s", shoal_error_name(err));
    unsigned expected_count = 0;
    for (unsigned slot = 0; slot < MODEL_NS; slot++)
        expected_count += m->ns[slot].exists;
    if (count != expected_count)
        return model_fail(r, "%zu namespaces, the model has %u", count, expected_count);
    for (size_t i = 0; i < count; i++) {
        unsigned slot;
        if (sscanf(infos[i].name, "ns%u", &slot) != 1 || slot >= MODEL_NS || !m->ns[slot].exists)
            return model_fail(r, "namespace %s is not in the model", infos[i].name);
        const struct model_ns *ns = &m->ns[slot];
        if (infos[i].placement != ns->placement || infos[i].tenant != ns->tenant ||
            infos[i].kind != SHOAL_KIND_KV)
            return model_fail(r, "namespace %s: placement %d tenant %u, the model %d %u",
                              infos[i].name, infos[i].placement, infos[i].tenant, ns->placement,
                              ns->tenant);
        uint64_t keys = 0, bytes = 0;
        for (unsigned k = 0; k < MODEL_KEYS; k++) {
            keys += ns->values[k].present;
            bytes += (uint64_t)model_entry_bytes(k, &ns->values[k]);
        }
        if (infos[i].keys != keys || infos[i].bytes != bytes)
            return model_fail(r,
                              "namespace %s counts %" PRIu64 " keys %" PRIu64
                              " bytes, the model %" PRIu64 " %" PRIu64,
                              infos[i].name, infos[i].keys, infos[i].bytes, keys, bytes);
    }
    for (unsigned slot = 0; slot < MODEL_NS; slot++) {
        const struct model_ns *ns = &m->ns[slot];
        if (!ns->exists)
            continue;
        shoal_iter *it = NULL;
        if ((err = shoal_iter_new(r->handles[slot], NULL, &it)) != 0)
            return model_fail(r, "iter ns%u: %s", slot, shoal_error_name(err));
        bool seen[MODEL_KEYS] = {false};
        uint8_t last[64];
        size_t last_len = 0, found = 0;
        int more;
        while ((more = shoal_iter_next(it)) == 1) {
            size_t klen, vlen;
            const uint8_t *key = shoal_iter_key(it, &klen);
            const uint8_t *value = shoal_iter_value(it, &vlen);
            int k = model_key_index(key, klen);
            if (k < 0 || seen[k] || !ns->values[k].present) {
                shoal_iter_free(it);
                return model_fail(r, "ns%u holds key '%.*s' that the model does not", slot,
                                  (int)klen, (const char *)key);
            }
            if (found > 0 && test_key_compare(last, last_len, key, klen) >= 0) {
                shoal_iter_free(it);
                return model_fail(r, "ns%u: keys out of order", slot);
            }
            memcpy(last, key, klen);
            last_len = klen;
            seen[k] = true;
            found++;
            uint8_t expected[MODEL_VALUE_MAX];
            test_fill_pattern(expected, ns->values[k].len, ns->values[k].seed);
            if (vlen != ns->values[k].len || memcmp(value, expected, vlen) != 0) {
                shoal_iter_free(it);
                return model_fail(r, "ns%u key %d: a value the model did not write", slot, k);
            }
        }
        shoal_iter_free(it);
        if (more != 0)
            return model_fail(r, "iter_next ns%u: %s", slot, shoal_error_name(more));
        for (unsigned k = 0; k < MODEL_KEYS; k++)
            if (ns->values[k].present && !seen[k])
                return model_fail(r, "ns%u lost key %u", slot, k);
    }
    for (uint32_t t = 1; t < MODEL_TENANTS; t++) {
        char name[32];
        model_tenant_name(t, name);
        uint32_t id = 0;
        err = shoal_tenant_find(r->db, name, &id);
        if (t >= m->tenants) {
            if (err != SHOAL_ENOTFOUND)
                return model_fail(r, "tenant %s exists, the model has none", name);
            continue;
        }
        if (err || id != t)
            return model_fail(r, "tenant %s: %s, id %u", name, shoal_error_name(err), id);
        shoal_quota q;
        shoal_tenant_stats ts;
        if (shoal_tenant_get_quota(r->db, t, &q) != 0 || shoal_stats_tenant(r->db, t, &ts) != 0)
            return model_fail(r, "tenant %s: no quota or statistics", name);
        if (q.max_keys != m->quota[t].max_keys || q.max_bytes != m->quota[t].max_bytes ||
            q.max_ops_per_second != m->quota[t].max_ops_per_second)
            return model_fail(r, "tenant %s: quota differs from the model", name);
        if (ts.keys != (uint64_t)m->keys[t] || ts.bytes != (uint64_t)m->bytes[t])
            return model_fail(r,
                              "tenant %s: usage %" PRIu64 " keys %" PRIu64
                              " bytes, the model %" PRId64 " %" PRId64,
                              name, ts.keys, ts.bytes, m->keys[t], m->bytes[t]);
    }
    return 0;
}

struct model_crash {
    const char *dir;
    const shoal_options *opts;
    struct model m;
    struct test_rng rng;
    unsigned ops;
};

/* The child of a crash round: runs the round against the engine and leaves without
 * closing (stderr says why if the engine disagreed with the model). */
static int model_crash_child(void *ctx)
{
    struct model_crash *c = ctx;
    struct model_run r = {.m = &c->m, .rng = &c->rng};
    int err = shoal_open(c->dir, c->opts, &r.db);
    if (err) {
        fprintf(stderr, "child: open: %s (%s)\n", shoal_error_name(err), shoal_error_detail());
        return 1;
    }
    if (model_open_handles(&r) || model_run_ops(&r, c->ops)) {
        fprintf(stderr, "child: %s\n", r.why);
        return 1;
    }
    return 0; /* run_child _exits: no close, no closing checkpoint */
}

static uint64_t checkpoints_done(shoal_db *db)
{
    shoal_db_stats st;
    assert_ok(shoal_stats(db, &st));
    return st.checkpoints;
}

/* Puts count values of 1 KiB under "k<i>", i from 0: overwrites when they exist. */
static void put_kib_values(shoal_ns *ns, unsigned count, uint8_t fill)
{
    uint8_t value[1024];
    memset(value, fill, sizeof value);
    char key[32];
    for (unsigned i = 0; i < count; i++) {
        snprintf(key, sizeof key, "k%05u", i);
        assert_ok(shoal_put(ns, key, strlen(key), value, sizeof value, NULL));
    }
}

/* The background checkpointer waits for a log as large as the current checkpoint when
 * that is more than SHOAL_OPT_CHECKPOINT_LOG_BYTES (durable.c, checkpoint_due_bytes): 4 MiB
 * of data checkpointed, then 2 MiB of overwrites (past the 1 MiB threshold) start no
 * checkpoint; 3 MiB more do; after a reopen the checkpoint loaded sets the wait. */
static void test_checkpoint_waits_for_its_size_in_log(void **state)
{
    (void)state;
    char dir[4096];
    make_dir(dir, sizeof dir);
    shoal_options *opts = durable_options(2, 1, SHOAL_SYNC_NONE);
    assert_ok(shoal_options_set(opts, SHOAL_OPT_CHECKPOINT_LOG_BYTES, 1 << 20));
    assert_ok(shoal_options_set(opts, SHOAL_OPT_LOG_SEGMENT_BYTES, 256 << 10));
    shoal_db *db = open_dir(dir, opts, NULL);
    shoal_ns *ns = test_ns(db, "sized", SHOAL_PLACE_SPREAD, 0);
    put_kib_values(ns, 4096, 'a');
    assert_ok(shoal_checkpoint(db)); /* about 4 MiB of entries, the log cut to nothing */
    uint64_t before = checkpoints_done(db);
    put_kib_values(ns, 2048, 'b');
    for (int i = 0; i < 10; i++) /* ten of the checkpointer's 100 ms polls */
        test_sleep_ms(100);
    assert_int_equal(checkpoints_done(db), before);
    put_kib_values(ns, 3072, 'c');
    uint64_t deadline = test_deadline(30);
    while (checkpoints_done(db) == before && test_before(deadline))
        test_sleep_ms(20);
    assert_true(checkpoints_done(db) > before);
    shoal_ns_close(ns);
    assert_ok(shoal_close(db));
    /* Reopened: the last checkpoint and the log after it give every key its last value. */
    db = open_dir(dir, opts, NULL);
    ns = test_ns(db, "sized", SHOAL_PLACE_SPREAD, 0);
    uint8_t value[1024];
    memset(value, 'c', sizeof value);
    test_expect(ns, NULL, "k03071", 6, value, sizeof value);
    memset(value, 'a', sizeof value);
    test_expect(ns, NULL, "k04095", 6, value, sizeof value);
    /* The checkpoint loaded at open counts as the current one: 2 MiB start nothing. */
    put_kib_values(ns, 2048, 'd');
    for (int i = 0; i < 10; i++)
        test_sleep_ms(100);
    assert_int_equal(checkpoints_done(db), 0);
    shoal_ns_close(ns);
    assert_ok(shoal_close(db));
    shoal_options_free(opts);
}

static void test_recovery_equals_model(void **state)
{
    (void)state;
    const unsigned rounds = SHOAL_TEST_SCALE(16, 6);
    const unsigned ops = SHOAL_TEST_SCALE(500, 150);
    char dir[4096];
    make_dir(dir, sizeof dir);
    shoal_options *opts = durable_options(8, 3, SHOAL_SYNC_ALWAYS);
    assert_ok(shoal_options_set(opts, SHOAL_OPT_LOG_SEGMENT_BYTES, 64 << 10));
    assert_ok(shoal_options_set(opts, SHOAL_OPT_CHECKPOINT_LOG_BYTES, 1 << 20));
    uint64_t seed = test_seed(0x5EED0001);
    struct test_rng rng;
    test_rng_init(&rng, seed);
    static struct model m;
    memset(&m, 0, sizeof m);
    m.tenants = 1;
    m.next_seed = 1;
    /* Two namespaces to begin with, so the first round has somewhere to write. */
    {
        struct model_run r = {.m = &m, .rng = &rng};
        shoal_db *db = open_dir(dir, opts, NULL);
        r.db = db;
        m.ns[0] = (struct model_ns){.exists = true, .placement = SHOAL_PLACE_PINNED};
        m.ns[1] = (struct model_ns){.exists = true, .placement = SHOAL_PLACE_SPREAD};
        r.handles[0] = test_ns(db, "ns0", SHOAL_PLACE_PINNED, 0);
        r.handles[1] = test_ns(db, "ns1", SHOAL_PLACE_SPREAD, 0);
        model_close_handles(&r);
        assert_ok(shoal_close(db));
    }
    for (unsigned round = 0; round < rounds; round++) {
        bool crash = round % 2 == 1;
        struct model_run r = {.m = &m, .rng = &rng};
        if (crash) {
            static struct model_crash c;
            c.dir = dir;
            c.opts = opts;
            c.m = m;
            c.rng = rng;
            c.ops = ops;
            int status = run_child(model_crash_child, &c);
            if (status != 0)
                print_error("seed %#" PRIx64 " round %u: the crashing child failed (%d)\n", seed,
                            round, status);
            assert_int_equal(status, 0);
            /* The same round against the model alone. */
            assert_int_equal(model_run_ops(&r, ops), 0);
        } else {
            r.db = open_dir(dir, opts, NULL);
            if (model_open_handles(&r) || model_run_ops(&r, ops)) {
                print_error("seed %#" PRIx64 " round %u: %s\n", seed, round, r.why);
                fail();
            }
            model_close_handles(&r);
            assert_ok(shoal_close(r.db));
        }
        /* Replay by stream threads (1, 2 threads for 3 streams) and by the pipeline (4, 8). */
        static const uint64_t recovery_threads[] = {1, 4, 2, 8};
        assert_ok(shoal_options_set(opts, SHOAL_OPT_RECOVERY_THREADS,
                                    recovery_threads[round % 4]));
        r.db = open_dir(dir, opts, NULL);
        if (model_open_handles(&r) || model_compare(&r)) {
            print_error("seed %#" PRIx64 " round %u (%s): after reopen: %s\n", seed, round,
                        crash ? "crash" : "close", r.why);
            fail();
        }
        model_close_handles(&r);
        assert_ok(shoal_close(r.db));
    }
    /* The runs reached every kind of change (the counts follow from the seed). */
    print_message("model: %u quota refusals, %u creates, %u drops, %u tenant changes, "
                  "%u batches, %u whole-namespace deletes\n",
                  m.refusals, m.creates, m.drops, m.tenant_changes, m.batches, m.clears);
    assert_true(m.refusals > 0);
    assert_true(m.creates > 0);
    assert_true(m.drops > 0);
    assert_true(m.tenant_changes > 0);
    assert_true(m.batches > 0);
    assert_true(m.clears > 0);
    shoal_options_free(opts);
    testing_remove_tree(dir);
}

/* ------------------------------------------------------------------------------------
 * One log stream replayed by several threads (durable.c, "one stream on several cores").
 * ---------------------------------------------------------------------------------- */

#define SPREAD_KEYS 4000u
#define SPREAD_ROUNDS 4u
#define SPREAD_HUGE (6u << 20) /* one value larger than a replay block (4 MiB) */

/* The value of key i after round r: lengths up to 6 KB, so the log fills many blocks. */
static size_t spread_value(unsigned i, unsigned r, uint8_t *value)
{
    size_t len = 1 + (i * 131u + r * 977u) % 6000u;
    test_fill_pattern(value, len, 0x5B0000u + i * 8u + r);
    return len;
}

/* What the history below leaves for key i of namespace n: the round of its last put, or
 * -1 when its last operation deleted it. */
static int spread_expected_round(unsigned n, unsigned i)
{
    if (i % 7 == 3)
        return i % 21 == 3 ? (int)SPREAD_ROUNDS : -1; /* deleted, every third put back */
    return (int)SPREAD_ROUNDS - 1 - (n == 1 && i % 5 == 0);
}

/* What both children of the test get: the directory and the options to open it with. */
struct spread_run {
    const char *dir;
    const shoal_options *opts;
};

/* Writes the history and leaves without closing, so that all of it is in the log: rounds
 * of overwrites in both namespaces (the pinned one skips its last round for every fifth
 * key), deletes, a cross-namespace batch that puts some of them back, and one value
 * larger than a replay block. */
static int spread_history_child(void *ctx)
{
    const struct spread_run *h = ctx;
    shoal_db *db = NULL;
    if (shoal_open(h->dir, h->opts, &db) != 0)
        return 1;
    shoal_ns *ns[2] = {test_ns(db, "spread", SHOAL_PLACE_SPREAD, 0),
                       test_ns(db, "pinned", SHOAL_PLACE_PINNED, 0)};
    static uint8_t value[SPREAD_HUGE];
    char key[32];
    for (unsigned r = 0; r < SPREAD_ROUNDS; r++)
        for (unsigned i = 0; i < SPREAD_KEYS; i++)
            for (unsigned n = 0; n < 2; n++) {
                if (n == 1 && r == SPREAD_ROUNDS - 1 && i % 5 == 0)
                    continue;
                size_t klen = item_key(i, key);
                if (shoal_put(ns[n], key, klen, value, spread_value(i, r, value), NULL) != 0)
                    return 2;
            }
    for (unsigned i = 3; i < SPREAD_KEYS; i += 7)
        for (unsigned n = 0; n < 2; n++)
            if (shoal_delete(ns[n], key, item_key(i, key), NULL) != 0)
                return 3;
    shoal_batch *b = NULL;
    if (shoal_batch_new(db, &b) != 0)
        return 4;
    for (unsigned i = 3; i < SPREAD_KEYS; i += 21)
        for (unsigned n = 0; n < 2; n++) {
            size_t klen = item_key(i, key);
            if (shoal_batch_put(b, ns[n], key, klen, value,
                                spread_value(i, SPREAD_ROUNDS, value)) != 0)
                return 5;
        }
    /* One key twice in the batch: both versions share its seq, the later one wins. */
    if (shoal_batch_put(b, ns[1], "twice", 5, "first", 5) != 0 ||
        shoal_batch_put(b, ns[1], "twice", 5, "second", 6) != 0)
        return 5;
    if (shoal_batch_commit(b, NULL, NULL) != 0)
        return 6;
    shoal_batch_free(b);
    test_fill_pattern(value, SPREAD_HUGE, 0x5B5B5Bu);
    if (shoal_put(ns[0], "huge", 4, value, SPREAD_HUGE, &always) != 0)
        return 7;
    return 0; /* run_child _exits: no close, no closing checkpoint */
}

/* Opens the directory, checks every key against spread_expected_round and leaves without
 * closing (a close would checkpoint, and the next check must replay the log again).
 * Exit 0 when everything matched. */
static int spread_check_child(void *ctx)
{
    const struct spread_run *c = ctx;
    shoal_db *db = NULL;
    if (shoal_open(c->dir, c->opts, &db) != 0) {
        fprintf(stderr, "spread check: open: %s\n", shoal_error_detail());
        return 1;
    }
    shoal_db_stats st;
    if (shoal_stats(db, &st) != 0 || st.recovered_keys != 0 || st.recovered_records == 0)
        return 2; /* everything must come from the log */
    shoal_ns *ns[2] = {test_ns(db, "spread", SHOAL_PLACE_SPREAD, 0),
                       test_ns(db, "pinned", SHOAL_PLACE_PINNED, 0)};
    static uint8_t got[SPREAD_HUGE], want[SPREAD_HUGE];
    char key[32];
    for (unsigned n = 0; n < 2; n++) {
        uint64_t live = 0;
        for (unsigned i = 0; i < SPREAD_KEYS; i++) {
            size_t klen = item_key(i, key), len = 0;
            int err = shoal_get_into(ns[n], NULL, key, klen, got, sizeof got, &len);
            int round = spread_expected_round(n, i);
            if (round < 0 && err == SHOAL_ENOTFOUND)
                continue;
            size_t want_len = round < 0 ? 0 : spread_value(i, (unsigned)round, want);
            if (round < 0 || err != 0 || len != want_len || memcmp(got, want, len) != 0) {
                fprintf(stderr, "spread check: ns %u key %u: %s, %zu bytes (round %d)\n", n, i,
                        shoal_error_name(err), len, round);
                return 3;
            }
            live++;
        }
        shoal_ns_info info;
        if (shoal_ns_info_get(ns[n], &info) != 0 || info.keys != live + 1)
            return 4; /* and "huge" or "twice" */
    }
    size_t len = 0;
    if (shoal_get_into(ns[1], NULL, "twice", 5, got, sizeof got, &len) != 0 || len != 6 ||
        memcmp(got, "second", 6) != 0)
        return 6;
    test_fill_pattern(want, SPREAD_HUGE, 0x5B5B5Bu);
    if (shoal_get_into(ns[0], NULL, "huge", 4, got, sizeof got, &len) != 0 || len != SPREAD_HUGE ||
        memcmp(got, want, len) != 0)
        return 5;
    return 0;
}

/* A one-stream log of ~50 MB (a ring of replay blocks wraps several times), replayed with
 * 1 thread (direct), 2, 3 (shards split unevenly between appliers) and 8 threads: every
 * replay gives the history's final state. */
static void test_one_stream_many_threads(void **state)
{
    (void)state;
    char dir[4096];
    make_dir(dir, sizeof dir);
    shoal_options *opts = durable_options(8, 1, SHOAL_SYNC_NONE);
    assert_ok(shoal_options_set(opts, SHOAL_OPT_CHECKPOINT_LOG_BYTES, 1ull << 40));
    struct spread_run h = {dir, opts};
    assert_int_equal(run_child(spread_history_child, &h), 0);
    static const uint64_t threads[] = {1, 2, 3, 8, 2};
    for (size_t t = 0; t < sizeof threads / sizeof threads[0]; t++) {
        assert_ok(shoal_options_set(opts, SHOAL_OPT_RECOVERY_THREADS, threads[t]));
        struct spread_run c = {dir, opts};
        int status = run_child(spread_check_child, &c);
        if (status != 0)
            print_error("recovery with %" PRIu64 " threads: check failed (%d)\n", threads[t],
                        status);
        assert_int_equal(status, 0);
    }
    shoal_options_free(opts);
}

/* ------------------------------------------------------------------------------------
 * 5. shoal_persist.
 * ---------------------------------------------------------------------------------- */

struct persist_writer {
    pthread_t thread;
    shoal_ns *ns;
    atomic_bool stop;
    _Atomic unsigned written; /* items 100000 .. 100000 + written - 1 were put */
    _Atomic int error;
};

static void *persist_writer_main(void *arg)
{
    struct persist_writer *w = arg;
    for (unsigned i = 0; i < 20000 && !atomic_load(&w->stop); i++) {
        char key[32];
        uint8_t value[320];
        size_t klen = item_key(100000 + i, key);
        int err = shoal_put(w->ns, key, klen, value, item_value(100000 + i, value), NULL);
        if (err) {
            atomic_store(&w->error, err);
            break;
        }
        atomic_store(&w->written, i + 1);
    }
    return NULL;
}

static void test_persist(void **state)
{
    (void)state;
    char dir[4096];
    make_dir(dir, sizeof dir);
    shoal_db *db = test_open(4, 0);
    uint32_t tenant;
    shoal_quota q = {
        .max_keys = 1000, .max_bytes = SHOAL_UNLIMITED, .max_ops_per_second = SHOAL_UNLIMITED};
    assert_ok(shoal_tenant_create(db, "owner", &q, &tenant));
    shoal_ns *pinned = test_ns(db, "pinned", SHOAL_PLACE_PINNED, tenant);
    shoal_ns *spread = test_ns(db, "spread", SHOAL_PLACE_SPREAD, 0);
    shoal_ns *gone = test_ns(db, "gone", SHOAL_PLACE_SPREAD, 0);
    for (unsigned i = 0; i < 300; i++) {
        assert_ok(item_put(pinned, i));
        assert_ok(item_put(spread, i));
        assert_ok(item_put(gone, i));
    }
    assert_ok(shoal_ns_drop(db, "gone"));
    shoal_ns_close(gone);
    for (unsigned i = 0; i < 300; i += 3) {
        char key[32];
        assert_ok(shoal_delete(spread, key, item_key(i, key), NULL));
    }

    /* Persist while another thread keeps writing. */
    struct persist_writer w = {.ns = spread};
    assert_int_equal(pthread_create(&w.thread, NULL, persist_writer_main, &w), 0);
    /* Bounded: the writer stops by itself after 20000 puts. */
    while (atomic_load(&w.written) < 200 && atomic_load(&w.error) == 0)
        test_sleep_ms(1);
    assert_ok(shoal_persist(db, dir));
    test_sleep_ms(20);
    atomic_store(&w.stop, true);
    pthread_join(w.thread, NULL);
    assert_ok(atomic_load(&w.error));
    assert_code(shoal_persist(db, dir), SHOAL_EINVAL); /* already durable */
    shoal_db_stats st;
    assert_ok(shoal_stats(db, &st));
    assert_true(st.durable);
    assert_true(st.checkpoints >= 1);
    shoal_db *second = NULL;
    assert_code(shoal_open(dir, NULL, &second), SHOAL_EBUSY);
    assert_null(second);

    /* More writes after persisting: a new namespace, overwrites, deletes, a batch. */
    shoal_ns *later = test_ns(db, "later", SHOAL_PLACE_PINNED, 0);
    for (unsigned i = 300; i < 400; i++) {
        assert_ok(item_put(pinned, i));
        assert_ok(item_put(later, i));
    }
    for (unsigned i = 0; i < 50; i++) {
        char key[32];
        assert_ok(shoal_delete(pinned, key, item_key(i, key), NULL));
    }
    shoal_batch *b = NULL;
    assert_ok(shoal_batch_new(db, &b));
    assert_ok(shoal_batch_put(b, pinned, "batch", 5, "one", 3));
    assert_ok(shoal_batch_put(b, later, "batch", 5, "two", 3));
    assert_ok(shoal_batch_commit(b, NULL, NULL));
    shoal_batch_free(b);
    shoal_ns_close(pinned);
    shoal_ns_close(spread);
    shoal_ns_close(later);
    assert_ok(shoal_close(db));

    /* A directory that holds a database cannot receive another one. */
    shoal_db *memory = test_open(2, 0);
    assert_code(shoal_persist(memory, dir), SHOAL_EEXIST);
    assert_ok(shoal_close(memory));

    db = open_dir(dir, NULL, NULL);
    assert_ok(shoal_tenant_find(db, "owner", &tenant));
    shoal_quota got;
    assert_ok(shoal_tenant_get_quota(db, tenant, &got));
    assert_int_equal(got.max_keys, 1000);
    pinned = ns_get(db, "pinned");
    spread = ns_get(db, "spread");
    later = ns_get(db, "later");
    shoal_ns *none = NULL;
    assert_code(shoal_ns_open(db, "gone", NULL, &none), SHOAL_ENOTFOUND);
    for (unsigned i = 0; i < 400; i++) {
        if (i < 50)
            item_expect_absent(pinned, i);
        else
            item_expect(pinned, i);
        if (i < 300 && i % 3 == 0)
            item_expect_absent(spread, i);
        else if (i < 300)
            item_expect(spread, i);
        if (i >= 300)
            item_expect(later, i);
    }
    for (unsigned i = 0; i < w.written; i++)
        item_expect(spread, 100000 + i);
    assert_int_equal(test_count_keys(spread, NULL), 200 + w.written);
    test_expect_str(pinned, NULL, "batch", "one");
    test_expect_str(later, NULL, "batch", "two");
    shoal_tenant_stats ts;
    assert_ok(shoal_stats_tenant(db, tenant, &ts));
    assert_int_equal(ts.keys, 351);
    shoal_ns_close(pinned);
    shoal_ns_close(spread);
    shoal_ns_close(later);
    assert_ok(shoal_close(db));
    testing_remove_tree(dir);
}

/* ------------------------------------------------------------------------------------
 * 6. One open per directory.
 * ---------------------------------------------------------------------------------- */

/* Runs this program as "--try-open DIR" and returns the result of its shoal_open (0 or a
 * SHOAL_E* code), or 1 when the child did not run. */
static int try_open_elsewhere(const char *dir)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return 1;
    if (pid == 0) {
        execl(self_path, self_path, "--try-open", dir, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return 1;
    if (!WIFEXITED(status) || WEXITSTATUS(status) > 100)
        return 1;
    return -WEXITSTATUS(status);
}

static int try_open_main(const char *dir)
{
    shoal_db *db = NULL;
    int err = shoal_open(dir, NULL, &db);
    if (err == 0)
        err = shoal_close(db);
    return -err;
}

static void test_second_open_is_busy(void **state)
{
    (void)state;
    char dir[4096];
    make_dir(dir, sizeof dir);
    shoal_db *db = NULL;
    assert_ok(shoal_open(dir, NULL, &db));
    shoal_ns *ns = test_ns(db, "data", SHOAL_PLACE_SPREAD, 0);
    assert_ok(item_put(ns, 1));
    shoal_db *second = (shoal_db *)1;
    assert_code(shoal_open(dir, NULL, &second), SHOAL_EBUSY);
    assert_null(second);
    assert_code(try_open_elsewhere(dir), SHOAL_EBUSY);
    /* Refused opens changed nothing: the first handle still works. */
    assert_ok(item_put(ns, 2));
    shoal_ns_close(ns);
    assert_ok(shoal_close(db));
    /* Closed: another process may open it now, and then this one again. */
    assert_code(try_open_elsewhere(dir), 0);
    db = open_dir(dir, NULL, NULL);
    ns = ns_get(db, "data");
    item_expect(ns, 1);
    item_expect(ns, 2);
    shoal_ns_close(ns);
    assert_ok(shoal_close(db));
    testing_remove_tree(dir);
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--try-open") == 0)
        return try_open_main(argv[2]);
    ssize_t n = readlink("/proc/self/exe", self_path, sizeof self_path - 1);
    if (n <= 0)
        snprintf(self_path, sizeof self_path, "%s", argv[0]);
    else
        self_path[n] = 0;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_fsync_failure_is_sticky, remove_made_dirs),
        cmocka_unit_test_teardown(test_failed_segment_unlink, remove_made_dirs),
        cmocka_unit_test_teardown(test_fsync_failure_in_group_commit, remove_made_dirs),
        cmocka_unit_test_teardown(test_enospc_on_log_write, remove_made_dirs),
        cmocka_unit_test_teardown(test_short_write_is_completed, remove_made_dirs),
        cmocka_unit_test_teardown(test_torn_write_leaves_clean_prefix, remove_made_dirs),
        cmocka_unit_test_teardown(test_catalog_changes_under_faults, remove_made_dirs),
        cmocka_unit_test_teardown(test_catalog_dir_fsync_failure_drop, remove_made_dirs),
        cmocka_unit_test_teardown(test_catalog_dir_fsync_failure_create, remove_made_dirs),
        cmocka_unit_test_teardown(test_catalog_change_leaves_readers_free, remove_made_dirs),
        cmocka_unit_test_teardown(test_checkpoints_racing_log_rolls, remove_made_dirs),
        cmocka_unit_test_teardown(test_recovery_equals_model, remove_made_dirs),
        cmocka_unit_test_teardown(test_checkpoint_waits_for_its_size_in_log, remove_made_dirs),
        cmocka_unit_test_teardown(test_one_stream_many_threads, remove_made_dirs),
        cmocka_unit_test_teardown(test_persist, remove_made_dirs),
        cmocka_unit_test_teardown(test_second_open_is_busy, remove_made_dirs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
