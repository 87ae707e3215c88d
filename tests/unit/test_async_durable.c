/*
 * test_async_durable.c -- writes that do not wait for the disk: shoal_write_options
 * on_durable returns SHOAL_PENDING and reports durability once, from the log's thread;
 * shoal_write_options.mark returns SHOAL_PENDING with the record's place in the log, and
 * one shoal_notify_durable per stream reports a whole run of such writes.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shoal.h"

struct waiter {
    sem_t done;
    _Atomic int calls;
    _Atomic int err;
};

static void on_durable(void *ctx, int err)
{
    struct waiter *w = ctx;
    atomic_store(&w->err, err);
    atomic_fetch_add(&w->calls, 1);
    sem_post(&w->done);
}

static char *temp_dir(void)
{
    char *dir = strdup("/tmp/shoal-async-XXXXXX");
    assert_non_null(mkdtemp(dir));
    return dir;
}

static void remove_dir(const char *dir)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

/* Reopens dir and checks that namespace "a" holds k0..k<count-1> (and also, if given). */
static void reopen_expect_keys(const char *dir, const shoal_options *o, int count,
                               const char *also)
{
    shoal_db *db;
    shoal_ns *ns;
    assert_int_equal(shoal_open(dir, o, &db), 0);
    assert_int_equal(shoal_ns_open(db, "a", NULL, &ns), 0);
    for (int i = 0; i < count; i++) {
        char key[16];
        int n = snprintf(key, sizeof key, "k%d", i);
        assert_int_equal(shoal_exists(ns, NULL, key, (size_t)n), 1);
    }
    if (also != NULL)
        assert_int_equal(shoal_exists(ns, NULL, also, strlen(also)), 1);
    shoal_ns_close(ns);
    assert_int_equal(shoal_close(db), 0);
}

/* Opens dir with 8 shards over 2 log streams under sync; *o is for reopening, then freeing. */
static shoal_db *open_two_streams(const char *dir, shoal_sync sync, shoal_options **o)
{
    assert_int_equal(shoal_options_new(o), 0);
    assert_int_equal(shoal_options_set(*o, SHOAL_OPT_SYNC, sync), 0);
    assert_int_equal(shoal_options_set(*o, SHOAL_OPT_SHARDS, 8), 0);
    assert_int_equal(shoal_options_set(*o, SHOAL_OPT_LOG_STREAMS, 2), 0);
    shoal_db *db;
    assert_int_equal(shoal_open(dir, *o, &db), 0);
    return db;
}

/* Puts k0..k<count-1> under the database's policy, none of them waiting for the log here
 * (sync none). */
static void put_keys(shoal_ns *ns, int count)
{
    for (int i = 0; i < count; i++) {
        char key[16];
        int n = snprintf(key, sizeof key, "k%d", i);
        assert_int_equal(shoal_put(ns, key, (size_t)n, "v", 1, NULL), 0);
    }
}

/* Under sync=always every write through on_durable is pending and reported exactly once;
 * after reopening, all of them are there. */
static void test_pending_then_durable(void **state)
{
    (void)state;
    char *dir = temp_dir();
    shoal_options *o;
    assert_int_equal(shoal_options_new(&o), 0);
    assert_int_equal(shoal_options_set(o, SHOAL_OPT_SYNC, SHOAL_SYNC_ALWAYS), 0);
    shoal_db *db;
    assert_int_equal(shoal_open(dir, o, &db), 0);
    shoal_ns_config cfg = {.kind = SHOAL_KIND_KV, .placement = SHOAL_PLACE_SPREAD};
    shoal_ns *ns;
    assert_int_equal(shoal_ns_open(db, "a", &cfg, &ns), 0);
    enum { WRITES = 200 };
    static struct waiter waiters[WRITES];
    for (int i = 0; i < WRITES; i++) {
        sem_init(&waiters[i].done, 0, 0);
        atomic_store(&waiters[i].calls, 0);
        shoal_write_options wo = {.on_durable = on_durable, .ctx = &waiters[i]};
        char key[16];
        int n = snprintf(key, sizeof key, "k%d", i);
        assert_int_equal(shoal_put(ns, key, (size_t)n, "v", 1, &wo), SHOAL_PENDING);
    }
    for (int i = 0; i < WRITES; i++) {
        sem_wait(&waiters[i].done);
        assert_int_equal(atomic_load(&waiters[i].err), 0);
    }
    /* A batch commit reports the same way. */
    struct waiter batch_waiter = {0};
    sem_init(&batch_waiter.done, 0, 0);
    shoal_batch *b;
    assert_int_equal(shoal_batch_new(db, &b), 0);
    assert_int_equal(shoal_batch_put(b, ns, "x", 1, "1", 1), 0);
    assert_int_equal(shoal_batch_put(b, ns, "y", 1, "2", 1), 0);
    shoal_write_options wo = {.on_durable = on_durable, .ctx = &batch_waiter};
    assert_int_equal(shoal_batch_commit(b, &wo, NULL), SHOAL_PENDING);
    sem_wait(&batch_waiter.done);
    assert_int_equal(atomic_load(&batch_waiter.err), 0);
    shoal_batch_free(b);
    shoal_ns_close(ns);
    assert_int_equal(shoal_close(db), 0);
    for (int i = 0; i < WRITES; i++)
        assert_int_equal(atomic_load(&waiters[i].calls), 1);
    assert_int_equal(atomic_load(&batch_waiter.calls), 1);

    reopen_expect_keys(dir, o, WRITES, "y");
    shoal_options_free(o);
    remove_dir(dir);
    free(dir);
}

/* Writes given a mark are pending and say where their records lie; one notification per
 * stream, for the largest mark, reports all of them once; after reopening, all are there.
 * Marks the database never gave, and policies that wait for nothing, are refused. */
static void test_marks_then_one_notification_per_stream(void **state)
{
    (void)state;
    char *dir = temp_dir();
    shoal_options *o;
    shoal_db *db = open_two_streams(dir, SHOAL_SYNC_ALWAYS, &o);
    shoal_ns_config cfg = {.kind = SHOAL_KIND_KV, .placement = SHOAL_PLACE_SPREAD};
    shoal_ns *ns;
    assert_int_equal(shoal_ns_open(db, "a", &cfg, &ns), 0);

    enum { WRITES = 300 };
    shoal_log_mark last[2] = {{0}};
    int per_stream[2] = {0};
    for (int i = 0; i < WRITES; i++) {
        shoal_log_mark mark = {.stream = 99};
        shoal_write_options wo = {.mark = &mark};
        char key[16];
        int n = snprintf(key, sizeof key, "k%d", i);
        assert_int_equal(shoal_put(ns, key, (size_t)n, "v", 1, &wo), SHOAL_PENDING);
        assert_true(mark.stream < 2);
        assert_int_equal(mark.sync, SHOAL_SYNC_ALWAYS); /* the database's, resolved */
        assert_true(mark.lsn > last[mark.stream].lsn); /* one writer: lsns ascend */
        last[mark.stream] = mark;
        per_stream[mark.stream]++;
    }
    assert_true(per_stream[0] > 0 && per_stream[1] > 0);

    /* Refused, and never called back: no callback, a stream the database lacks, an lsn
     * not appended yet, a policy that waits for nothing. */
    struct waiter never = {0};
    shoal_log_mark bad = last[0];
    assert_int_equal(shoal_notify_durable(db, &bad, NULL, NULL), SHOAL_EINVAL);
    bad.stream = 2;
    assert_int_equal(shoal_notify_durable(db, &bad, on_durable, &never), SHOAL_EINVAL);
    bad = last[0];
    bad.lsn += 1000;
    assert_int_equal(shoal_notify_durable(db, &bad, on_durable, &never), SHOAL_EINVAL);
    bad = last[0];
    bad.sync = SHOAL_SYNC_NONE;
    assert_int_equal(shoal_notify_durable(db, &bad, on_durable, &never), SHOAL_EINVAL);
    assert_int_equal(shoal_notify_durable(db, NULL, on_durable, &never), SHOAL_EINVAL);

    /* A write under sync none waits for nothing: 0, and the mark is left alone. */
    shoal_log_mark untouched = {.stream = 7, .lsn = 12345};
    shoal_write_options none = {.sync = SHOAL_SYNC_NONE, .mark = &untouched};
    assert_int_equal(shoal_put(ns, "n", 1, "v", 1, &none), 0);
    assert_int_equal(untouched.stream, 7);
    assert_true(untouched.lsn == 12345);

    static struct waiter waiters[2];
    for (int s = 0; s < 2; s++) {
        sem_init(&waiters[s].done, 0, 0);
        atomic_store(&waiters[s].calls, 0);
        atomic_store(&waiters[s].err, -1);
        assert_int_equal(shoal_notify_durable(db, &last[s], on_durable, &waiters[s]), 0);
    }
    for (int s = 0; s < 2; s++) {
        sem_wait(&waiters[s].done);
        assert_int_equal(atomic_load(&waiters[s].err), 0);
    }
    shoal_ns_close(ns);
    assert_int_equal(shoal_close(db), 0);
    for (int s = 0; s < 2; s++)
        assert_int_equal(atomic_load(&waiters[s].calls), 1);
    assert_int_equal(atomic_load(&never.calls), 0);

    reopen_expect_keys(dir, o, WRITES, NULL);
    shoal_options_free(o);
    remove_dir(dir);
    free(dir);
}

/* shoal_log_end: the end of every stream, at sync always. Under sync none, notifying its
 * marks makes the log sync what no write waited for. */
static void test_log_end_barrier(void **state)
{
    (void)state;
    char *dir = temp_dir();
    shoal_options *o;
    shoal_db *db = open_two_streams(dir, SHOAL_SYNC_NONE, &o);
    shoal_log_mark marks[SHOAL_MAX_LOG_STREAMS];
    unsigned streams = 0;
    assert_int_equal(shoal_log_end(db, NULL, &streams), SHOAL_EINVAL);
    assert_int_equal(shoal_log_end(db, marks, NULL), SHOAL_EINVAL);
    assert_int_equal(shoal_log_end(db, marks, &streams), 0);
    assert_int_equal(streams, 2);
    assert_true(marks[0].lsn == 0 && marks[1].lsn == 0); /* nothing logged yet */
    shoal_ns_config cfg = {.kind = SHOAL_KIND_KV, .placement = SHOAL_PLACE_SPREAD};
    shoal_ns *ns;
    assert_int_equal(shoal_ns_open(db, "a", &cfg, &ns), 0);
    put_keys(ns, 100);
    shoal_db_stats before;
    assert_int_equal(shoal_stats(db, &before), 0);
    assert_int_equal(shoal_log_end(db, marks, &streams), 0);
    static struct waiter waiters[2];
    for (unsigned s = 0; s < streams; s++) {
        assert_int_equal(marks[s].stream, s);
        assert_int_equal(marks[s].sync, SHOAL_SYNC_ALWAYS);
        assert_true(marks[s].lsn > 0); /* 100 spread keys reach both streams */
        sem_init(&waiters[s].done, 0, 0);
        assert_int_equal(shoal_notify_durable(db, &marks[s], on_durable, &waiters[s]), 0);
    }
    for (unsigned s = 0; s < streams; s++) {
        sem_wait(&waiters[s].done);
        assert_int_equal(atomic_load(&waiters[s].err), 0);
    }
    shoal_db_stats after;
    assert_int_equal(shoal_stats(db, &after), 0);
    assert_true(after.log_syncs > before.log_syncs);
    shoal_ns_close(ns);
    assert_int_equal(shoal_close(db), 0);
    shoal_options_free(o);
    remove_dir(dir);
    free(dir);
}

/* shoal_wait_durable: the caller syncs the stream itself and returns once the mark is on
 * disk. Under sync none nothing else syncs, so the log's sync count tells. */
static void test_wait_durable_syncs_here(void **state)
{
    (void)state;
    char *dir = temp_dir();
    shoal_options *o;
    shoal_db *db = open_two_streams(dir, SHOAL_SYNC_NONE, &o);
    shoal_ns_config cfg = {.kind = SHOAL_KIND_KV, .placement = SHOAL_PLACE_SPREAD};
    shoal_ns *ns;
    assert_int_equal(shoal_ns_open(db, "a", &cfg, &ns), 0);
    put_keys(ns, 100);
    shoal_log_mark marks[SHOAL_MAX_LOG_STREAMS];
    unsigned streams = 0;
    assert_int_equal(shoal_log_end(db, marks, &streams), 0);
    assert_int_equal(streams, 2);

    /* Refused: no mark, a stream the database lacks, an lsn not appended yet, a policy
     * that waits for nothing. */
    shoal_log_mark bad = marks[0];
    assert_int_equal(shoal_wait_durable(db, NULL), SHOAL_EINVAL);
    assert_int_equal(shoal_wait_durable(NULL, &bad), SHOAL_EINVAL);
    bad.stream = 2;
    assert_int_equal(shoal_wait_durable(db, &bad), SHOAL_EINVAL);
    bad = marks[0];
    bad.lsn += 1000;
    assert_int_equal(shoal_wait_durable(db, &bad), SHOAL_EINVAL);
    bad = marks[0];
    bad.sync = SHOAL_SYNC_NONE;
    assert_int_equal(shoal_wait_durable(db, &bad), SHOAL_EINVAL);

    shoal_db_stats before, after;
    assert_int_equal(shoal_stats(db, &before), 0);
    for (unsigned s = 0; s < streams; s++)
        assert_int_equal(shoal_wait_durable(db, &marks[s]), 0);
    assert_int_equal(shoal_stats(db, &after), 0);
    assert_true(after.log_syncs >= before.log_syncs + 2); /* one per stream, at least */
    /* Covered already: returns at once, no sync. */
    assert_int_equal(shoal_wait_durable(db, &marks[0]), 0);
    shoal_db_stats again;
    assert_int_equal(shoal_stats(db, &again), 0);
    assert_true(again.log_syncs == after.log_syncs);
    shoal_ns_close(ns);
    assert_int_equal(shoal_close(db), 0);
    reopen_expect_keys(dir, o, 100, NULL);
    shoal_options_free(o);
    remove_dir(dir);
    free(dir);
}

/* In memory mode nothing waits: the write returns 0 and the callback never runs. */
static void test_memory_mode_never_pending(void **state)
{
    (void)state;
    shoal_db *db;
    assert_int_equal(shoal_open(NULL, NULL, &db), 0);
    shoal_ns_config cfg = {.kind = SHOAL_KIND_KV};
    shoal_ns *ns;
    assert_int_equal(shoal_ns_open(db, "a", &cfg, &ns), 0);
    struct waiter w = {0};
    shoal_write_options wo = {.sync = SHOAL_SYNC_ALWAYS, .on_durable = on_durable, .ctx = &w};
    assert_int_equal(shoal_put(ns, "k", 1, "v", 1, &wo), 0);
    assert_int_equal(shoal_delete(ns, "k", 1, &wo), 0);
    assert_int_equal(atomic_load(&w.calls), 0);
    /* Nor does a write given a mark, and there is no log to be notified by. */
    shoal_log_mark mark = {.stream = 3, .lsn = 77};
    shoal_write_options marked = {.sync = SHOAL_SYNC_ALWAYS, .mark = &mark};
    assert_int_equal(shoal_put(ns, "k", 1, "v", 1, &marked), 0);
    assert_true(mark.stream == 3 && mark.lsn == 77);
    mark = (shoal_log_mark){.stream = 0, .sync = SHOAL_SYNC_ALWAYS, .lsn = 1};
    assert_int_equal(shoal_notify_durable(db, &mark, on_durable, &w), SHOAL_EINVAL);
    unsigned streams;
    assert_int_equal(shoal_log_end(db, &mark, &streams), SHOAL_EINVAL);
    assert_int_equal(shoal_wait_durable(db, &mark), SHOAL_EINVAL);
    shoal_ns_close(ns);
    shoal_close(db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pending_then_durable),
        cmocka_unit_test(test_marks_then_one_notification_per_stream),
        cmocka_unit_test(test_log_end_barrier),
        cmocka_unit_test(test_wait_durable_syncs_here),
        cmocka_unit_test(test_memory_mode_never_pending),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
