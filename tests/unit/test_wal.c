/*
 * test_wal.c -- log streams: round trips, segments, rotation, group commit, sticky errors,
 * torn writes, damage at every offset, salvage, async waits, the version 2 segment header
 * (the predecessor's seq bound, and a lost first segment told from a deleted one) and
 * segments of format version 1 made by hand.
 *
 * Every test works in its own temporary directory. Records carry a payload derived from
 * their seq (test_payload), so a replayed record can be checked byte for byte without
 * keeping copies.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "durability/crc32c.h"
#include "durability/encoding.h"
#include "durability/io.h"
#include "durability/wal.h"
#include "durability_testing.h"
#include "shoal.h"

/* ------------------------------------------------------------------------------------
 * Payloads and replay collection.
 * ---------------------------------------------------------------------------------- */

/* The payload of the record with this seq: its length varies with seq (0..max_len-1), and
 * its bytes are a function of seq and position. */
static size_t test_payload(uint64_t seq, uint8_t *out, size_t max_len)
{
    size_t len = (size_t)((seq * 7919u) % max_len);
    for (size_t i = 0; i < len; i++)
        out[i] = (uint8_t)((seq * 131u + i * 31u) ^ (i >> 3) ^ 0x5a);
    return len;
}

static uint8_t test_type(uint64_t seq)
{
    return (uint8_t)(1 + seq % 7);
}

struct collected {
    uint64_t *seqs;
    size_t count, cap;
    size_t max_len;    /* the max_len the payloads were made with */
    bool wrong_record; /* a replayed record did not match its seq's payload */
};

static int collect(void *ctx, uint8_t type, uint64_t seq, const void *payload, size_t len)
{
    struct collected *c = ctx;
    uint8_t expected[4096];
    size_t expected_len = test_payload(seq, expected, c->max_len);
    if (type != test_type(seq) || len != expected_len || memcmp(payload, expected, len) != 0)
        c->wrong_record = true;
    if (c->count == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 256;
        c->seqs = realloc(c->seqs, c->cap * sizeof *c->seqs);
        assert_non_null(c->seqs);
    }
    c->seqs[c->count++] = seq;
    return 0;
}

static void collected_reset(struct collected *c, size_t max_len)
{
    c->count = 0;
    c->max_len = max_len;
    c->wrong_record = false;
}

static void append_record(struct wal *w, unsigned stream, uint64_t seq, size_t max_len,
                          uint64_t *lsn)
{
    uint8_t payload[4096];
    size_t len = test_payload(seq, payload, max_len);
    assert_int_equal(wal_append(w, stream, test_type(seq), seq, payload, len, lsn), 0);
}

struct segment_names {
    uint64_t bases[256];
    size_t count;
};

static int collect_segment(void *ctx, const char *name)
{
    struct segment_names *n = ctx;
    uint64_t base;
    if (strlen(name) == 24 && sscanf(name, "%20" SCNu64, &base) == 1 && n->count < 256)
        n->bases[n->count++] = base;
    return 0;
}

static int compare_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void list_segments(const char *dir, unsigned stream, struct segment_names *n)
{
    char path[4096];
    int length = snprintf(path, sizeof path, "%s/log/%u", dir, stream);
    assert_true(length > 0 && (size_t)length < sizeof path);
    n->count = 0;
    io_posix()->list_dir(io_posix(), path, collect_segment, n);
    qsort(n->bases, n->count, sizeof n->bases[0], compare_u64);
}

static struct wal_options test_options(const char *dir, unsigned streams, int sync)
{
    struct wal_options o = {
        .dir = dir,
        .streams = streams,
        .segment_bytes = 4096,
        .sync = sync,
        .sync_period_ms = 20,
        .sync_window_us = 200,
    };
    return o;
}

/* Makes a fresh directory in dir and returns test_options for it with every I/O call going
 * through faults (initialized here, injecting nothing yet). */
static struct wal_options faulty_options(char *dir, size_t cap, struct io_faults *faults,
                                         unsigned streams, int sync)
{
    assert_int_equal(testing_make_dir(dir, cap, "wal"), 0);
    io_faults_init(faults, NULL);
    struct wal_options o = test_options(dir, streams, sync);
    o.io = &faults->io;
    return o;
}

/* ------------------------------------------------------------------------------------
 * Round trips.
 * ---------------------------------------------------------------------------------- */

static void round_trip(bool preallocate, int group_commit)
{
    char dir[4096];
    assert_int_equal(testing_make_dir(dir, sizeof dir, "wal"), 0);
    enum { STREAMS = 3, RECORDS = 600, MAX_LEN = 300 };
    struct wal_options o = test_options(dir, STREAMS, SHOAL_SYNC_PERIODIC);
    o.no_preallocate = !preallocate;
    o.group_commit = group_commit;
    struct wal *w = NULL;
    assert_int_equal(wal_open(&o, &w), 0);

    uint64_t lsn[STREAMS] = {0};
    for (uint64_t seq = 1; seq <= RECORDS; seq++) {
        unsigned stream = (unsigned)(seq % STREAMS);
        uint64_t got;
        append_record(w, stream, seq, MAX_LEN, &got);
        assert_int_equal(got, ++lsn[stream]);
        if (seq % 50 == 0)
            assert_int_equal(wal_wait(w, stream, got, SHOAL_SYNC_ALWAYS), 0);
        if (seq % 77 == 0)
            assert_int_equal(wal_wait(w, stream, got, SHOAL_SYNC_NONE), 0);
    }
    /* A record of exactly zero bytes and one larger than a segment. */
    assert_int_equal(wal_append(w, 0, 3, RECORDS + 1, NULL, 0, NULL), 0);
    static uint8_t big[10000];
    memset(big, 0xab, sizeof big);
    assert_int_equal(wal_append(w, 0, 3, RECORDS + 2, big, sizeof big, NULL), 0);
    assert_int_equal(wal_sync_all(w), 0);

    struct wal_stats stats;
    wal_stats(w, &stats);
    assert_int_equal(stats.appends, RECORDS + 2);
    assert_true(stats.syncs > 0);
    assert_true(wal_bytes(w) > stats.bytes / 2);
    assert_int_equal(wal_close(w), 0);

    unsigned streams = 0;
    assert_int_equal(wal_list_streams(dir, NULL, &streams), 0);
    assert_int_equal(streams, STREAMS);

    struct collected c = {0};
    for (unsigned stream = 0; stream < STREAMS; stream++) {
        struct segment_names names;
        list_segments(dir, stream, &names);
        assert_true(names.count >= 3); /* 4 KiB segments: the stream rolled several times */

        collected_reset(&c, MAX_LEN);
        struct wal_replay_report report;
        if (stream == 0) {
            /* Stream 0 also holds the two special records: check them by hand. */
            assert_int_equal(
                wal_replay(dir, stream, RECORDS, NULL, false, true, NULL, NULL, &report), 0);
            assert_int_equal(report.records, 2);
            assert_int_equal(report.last_seq, RECORDS + 2);
        }
        assert_int_equal(wal_replay(dir, stream, 0, NULL, false, false, collect, &c, &report), 0);
        size_t expected = RECORDS / STREAMS + (stream == 0 ? 2 : 0);
        assert_int_equal(c.count, expected);
        assert_int_equal(report.records, expected);
        assert_false(report.torn_tail);
        assert_false(report.salvaged);
        assert_int_equal(report.bytes_dropped, 0);
        size_t check = stream == 0 ? expected - 2 : expected;
        for (size_t i = 0; i < check; i++)
            assert_int_equal(c.seqs[i], stream + STREAMS * i + (stream == 0 ? STREAMS : 0));
        if (stream != 0)
            assert_false(c.wrong_record);

        /* after_seq filters, and the order is kept. */
        collected_reset(&c, MAX_LEN);
        assert_int_equal(
            wal_replay(dir, stream, RECORDS / 2, NULL, false, true, collect, &c, &report), 0);
        for (size_t i = 0; i < c.count; i++)
            assert_true(c.seqs[i] > RECORDS / 2);
        assert_true(c.count >= (RECORDS / 2) / STREAMS - 1);
    }
    free(c.seqs);
    testing_remove_tree(dir);
}

static void test_round_trip_preallocated(void **state)
{
    (void)state;
    round_trip(true, WAL_GROUP_LEADER);
}

static void test_round_trip_growing(void **state)
{
    (void)state;
    round_trip(false, WAL_GROUP_LEADER);
}

static void test_round_trip_flusher_thread(void **state)
{
    (void)state;
    round_trip(true, WAL_GROUP_FLUSHER);
}

static void test_invalid_arguments(void **state)
{
    (void)state;
    char dir[4096];
    assert_int_equal(testing_make_dir(dir, sizeof dir, "wal"), 0);
    struct wal *w = NULL;
    struct wal_options o = test_options(dir, 0, SHOAL_SYNC_ALWAYS);
    assert_int_equal(wal_open(&o, &w), SHOAL_EINVAL);
    assert_null(w);
    o.streams = 2;
    o.sync = 99;
    assert_int_equal(wal_open(&o, &w), SHOAL_EINVAL);
    o.sync = SHOAL_SYNC_ALWAYS;
    assert_int_equal(wal_open(&o, &w), 0);
    uint64_t lsn;
    assert_int_equal(wal_append(w, 2, 1, 1, "x", 1, &lsn), SHOAL_EINVAL);
    assert_int_equal(wal_append(w, 0, 0, 1, "x", 1, &lsn), SHOAL_EINVAL);
    assert_int_equal(wal_append(w, 0, 1, 1, NULL, 1, &lsn), SHOAL_EINVAL);
    assert_int_equal(wal_wait(w, 0, 1, SHOAL_SYNC_ALWAYS), SHOAL_EINVAL); /* not appended */
    assert_int_equal(wal_append(w, 0, 1, 1, "x", 1, &lsn), 0);
    assert_int_equal(wal_wait(w, 0, lsn, 42), SHOAL_EINVAL);
    assert_int_equal(wal_wait(w, 0, lsn, SHOAL_SYNC_DEFAULT), 0);
    assert_int_equal(wal_error(w), 0);
    assert_int_equal(wal_close(w), 0);
    assert_int_equal(wal_close(NULL), 0);
    testing_remove_tree(dir);
}

/* ------------------------------------------------------------------------------------
 * Reopen, rotation and deletion.
 * ---------------------------------------------------------------------------------- */

static void test_reopen_rotate_delete(void **state)
{
    (void)state;
    char dir[4096];
    assert_int_equal(testing_make_dir(dir, sizeof dir, "wal"), 0);
    enum { MAX_LEN = 100 };
    struct wal_options o = test_options(dir, 2, SHOAL_SYNC_ALWAYS);
    o.segment_bytes = 1 << 20;
    struct wal *w = NULL;
    assert_int_equal(wal_open(&o, &w), 0);
    uint64_t lsn;
    for (uint64_t seq = 1; seq <= 100; seq++)
        append_record(w, (unsigned)(seq % 2), seq, MAX_LEN, &lsn);
    assert_int_equal(wal_close(w), 0);

    /* Reopen: new records go to a new segment after the old one. The hint is what recovery
     * found; reopening without a hint scans the log and must reach the same names. */
    struct wal_replay_report report;
    assert_int_equal(wal_replay(dir, 0, 0, NULL, false, false, NULL, NULL, &report), 0);
    assert_int_equal(report.last_seq, 100);
    o.next_seq_hint = 0;
    assert_int_equal(wal_open(&o, &w), 0);
    for (uint64_t seq = 101; seq <= 200; seq++)
        append_record(w, (unsigned)(seq % 2), seq, MAX_LEN, &lsn);
    assert_int_equal(wal_sync_all(w), 0);
    struct segment_names names;
    list_segments(dir, 0, &names);
    assert_int_equal(names.count, 2);
    assert_true(names.bases[1] >= 101); /* named above every seq of the older segment */
    uint64_t bytes_before = wal_bytes(w);

    /* A checkpoint at 200: rotate, then delete what it covers. */
    assert_int_equal(wal_rotate(w, 201), 0);
    for (uint64_t seq = 201; seq <= 260; seq++)
        append_record(w, (unsigned)(seq % 2), seq, MAX_LEN, &lsn);
    assert_int_equal(wal_sync_all(w), 0);
    list_segments(dir, 0, &names);
    assert_int_equal(names.count, 3);
    assert_true(names.bases[2] >= 201);

    assert_int_equal(wal_delete_before(w, 99), 0); /* covers nothing whole */
    list_segments(dir, 0, &names);
    assert_int_equal(names.count, 3);
    assert_int_equal(wal_delete_before(w, 200), 0);
    list_segments(dir, 0, &names);
    assert_int_equal(names.count, 1);
    assert_true(wal_bytes(w) < bytes_before);
    /* The segment being written is never deleted, whatever the seq. */
    assert_int_equal(wal_delete_before(w, UINT64_MAX), 0);
    list_segments(dir, 0, &names);
    assert_int_equal(names.count, 1);
    assert_int_equal(wal_close(w), 0);

    struct collected c = {0};
    for (unsigned stream = 0; stream < 2; stream++) {
        collected_reset(&c, MAX_LEN);
        /* Replay starts after the checkpoint (200) that deleted the older segments. */
        assert_int_equal(wal_replay(dir, stream, 200, NULL, false, false, collect, &c, &report), 0);
        assert_int_equal(c.count, 30);
        assert_false(c.wrong_record);
        for (size_t i = 0; i < c.count; i++)
            assert_int_equal(c.seqs[i], 201 + (stream == 0 ? 1 : 0) + 2 * i);
    }

    /* Reopen with fewer streams: stream 1's directory is kept until a deletion covers it. */
    o.streams = 1;
    o.next_seq_hint = 261;
    assert_int_equal(wal_open(&o, &w), 0);
    append_record(w, 0, 261, MAX_LEN, &lsn);
    assert_int_equal(wal_wait(w, 0, lsn, SHOAL_SYNC_ALWAYS), 0);
    unsigned streams = 0;
    assert_int_equal(wal_list_streams(dir, NULL, &streams), 0);
    assert_int_equal(streams, 2);
    assert_int_equal(wal_delete_before(w, 250), 0);
    assert_int_equal(wal_list_streams(dir, NULL, &streams), 0);
    assert_int_equal(streams, 2);
    assert_int_equal(wal_delete_before(w, 260), 0);
    assert_int_equal(wal_list_streams(dir, NULL, &streams), 0);
    assert_int_equal(streams, 1);
    assert_int_equal(wal_close(w), 0);
    free(c.seqs);
    testing_remove_tree(dir);
}

/* ------------------------------------------------------------------------------------
 * Group commit.
 * ---------------------------------------------------------------------------------- */

enum { GROUP_THREADS = 8, GROUP_APPENDS = 40 };

struct group_test {
    struct wal *wal;
    _Atomic int in_flight; /* threads that appended and have not been acknowledged */
    _Atomic int active;    /* threads still appending */
    _Atomic uint64_t next_seq;
    uint64_t acked[GROUP_THREADS][GROUP_APPENDS];
    int failures;
};

/* Holds each sync until every active writer has a record waiting, so every sync after the
 * first finds a group. Bounded: after ~5 s it lets the sync through anyway (the assertions
 * on counts may then fail, but nothing hangs). */
static void group_before_sync(void *ctx, uint64_t nth)
{
    (void)nth;
    struct group_test *t = ctx;
    for (int i = 0; i < 50000; i++) {
        if (atomic_load(&t->in_flight) >= atomic_load(&t->active))
            return;
        usleep(100);
    }
}

struct group_thread {
    struct group_test *test;
    int index;
};

static void *group_writer(void *arg)
{
    struct group_thread *g = arg;
    struct group_test *t = g->test;
    uint8_t payload[4096];
    for (int i = 0; i < GROUP_APPENDS; i++) {
        uint64_t seq = atomic_fetch_add(&t->next_seq, 1);
        size_t len = test_payload(seq, payload, 200);
        uint64_t lsn;
        if (wal_append(t->wal, 0, test_type(seq), seq, payload, len, &lsn) != 0) {
            t->failures++;
            break;
        }
        atomic_fetch_add(&t->in_flight, 1);
        int rc = wal_wait(t->wal, 0, lsn, SHOAL_SYNC_ALWAYS);
        atomic_fetch_sub(&t->in_flight, 1);
        if (rc != 0) {
            t->failures++;
            break;
        }
        t->acked[g->index][i] = seq;
    }
    atomic_fetch_sub(&t->active, 1);
    return NULL;
}

static void group_commit(int scheme)
{
    char dir[4096];
    assert_int_equal(testing_make_dir(dir, sizeof dir, "wal"), 0);
    static struct group_test t;
    memset(&t, 0, sizeof t);
    atomic_init(&t.in_flight, 0);
    atomic_init(&t.active, GROUP_THREADS);
    atomic_init(&t.next_seq, 1);
    struct io_faults faults;
    io_faults_init(&faults, NULL);
    faults.before_sync = group_before_sync;
    faults.hook_ctx = &t;

    struct wal_options o = test_options(dir, 1, SHOAL_SYNC_ALWAYS);
    o.segment_bytes = 1 << 20;
    o.io = &faults.io;
    o.group_commit = scheme;
    assert_int_equal(wal_open(&o, &t.wal), 0);

    pthread_t threads[GROUP_THREADS];
    struct group_thread args[GROUP_THREADS];
    for (int i = 0; i < GROUP_THREADS; i++) {
        args[i] = (struct group_thread){.test = &t, .index = i};
        assert_int_equal(pthread_create(&threads[i], NULL, group_writer, &args[i]), 0);
    }
    for (int i = 0; i < GROUP_THREADS; i++)
        pthread_join(threads[i], NULL);
    assert_int_equal(t.failures, 0);

    struct wal_stats stats;
    wal_stats(t.wal, &stats);
    assert_int_equal(stats.appends, GROUP_THREADS * GROUP_APPENDS);
    assert_int_equal(stats.waiters_woken, GROUP_THREADS * GROUP_APPENDS);
    /* Group commit happened: fewer syncs that made records durable than waiters woken. */
    assert_true(stats.group_commits > 0);
    assert_true(stats.waiters_woken > stats.group_commits);
    /* Leaders waited for the writers a sync had released before syncing again. */
    if (scheme == WAL_GROUP_LEADER)
        assert_true(stats.gathers > 0);
    else
        assert_int_equal(stats.gathers, 0);
    print_message("group commit (%s): %" PRIu64 " waiters over %" PRIu64 " syncs\n",
                  scheme == WAL_GROUP_LEADER ? "leader" : "flusher thread", stats.waiters_woken,
                  stats.group_commits);
    assert_int_equal(wal_close(t.wal), 0);

    /* Every acknowledged record is in the replay, intact. */
    struct collected c = {0};
    collected_reset(&c, 200);
    struct wal_replay_report report;
    assert_int_equal(wal_replay(dir, 0, 0, NULL, false, true, collect, &c, &report), 0);
    assert_false(c.wrong_record);
    assert_int_equal(c.count, GROUP_THREADS * GROUP_APPENDS);
    qsort(c.seqs, c.count, sizeof c.seqs[0], compare_u64);
    for (int i = 0; i < GROUP_THREADS; i++)
        for (int j = 0; j < GROUP_APPENDS; j++)
            assert_non_null(
                bsearch(&t.acked[i][j], c.seqs, c.count, sizeof c.seqs[0], compare_u64));
    free(c.seqs);
    testing_remove_tree(dir);
}

static void test_group_commit_leader(void **state)
{
    (void)state;
    group_commit(WAL_GROUP_LEADER);
}

static void test_group_commit_flusher_thread(void **state)
{
    (void)state;
    group_commit(WAL_GROUP_FLUSHER);
}

/* ------------------------------------------------------------------------------------
 * Failures.
 * ---------------------------------------------------------------------------------- */

/* Appends and acknowledges records 1..count under ALWAYS. */
static void append_acked(struct wal *w, uint64_t first, uint64_t count, uint64_t *last_lsn)
{
    for (uint64_t seq = first; seq < first + count; seq++) {
        append_record(w, 0, seq, 100, last_lsn);
        assert_int_equal(wal_wait(w, 0, *last_lsn, SHOAL_SYNC_ALWAYS), 0);
    }
}

static void replay_contains_acked(const char *dir, uint64_t acked_through)
{
    struct collected c = {0};
    collected_reset(&c, 100);
    struct wal_replay_report report;
    assert_int_equal(wal_replay(dir, 0, 0, NULL, false, false, collect, &c, &report), 0);
    assert_false(c.wrong_record);
    assert_true(c.count >= acked_through);
    for (uint64_t i = 0; i < acked_through; i++)
        assert_int_equal(c.seqs[i], i + 1);
    free(c.seqs);
}

static void test_sticky_fsync_failure(void **state)
{
    (void)state;
    for (int scheme = WAL_GROUP_LEADER; scheme <= WAL_GROUP_FLUSHER; scheme++) {
        char dir[4096];
        struct io_faults faults;
        struct wal_options o = faulty_options(dir, sizeof dir, &faults, 1, SHOAL_SYNC_ALWAYS);
        o.group_commit = scheme;
        o.sync_period_ms = 100000; /* no background tick during the test */
        struct wal *w = NULL;
        assert_int_equal(wal_open(&o, &w), 0);
        uint64_t lsn = 0, old_lsn;
        append_acked(w, 1, 10, &lsn);
        old_lsn = lsn;

        io_faults_fail(&faults, IO_OP_SYNC, io_faults_count(&faults, IO_OP_SYNC) + 1, EIO, false);
        append_record(w, 0, 11, 100, &lsn);
        assert_int_equal(wal_wait(w, 0, lsn, SHOAL_SYNC_ALWAYS), SHOAL_EFSYNC);
        assert_int_equal(wal_error(w), SHOAL_EFSYNC);

        /* The fault is gone, but the log never retries and then acknowledges. */
        io_faults_clear(&faults);
        uint64_t syncs = io_faults_count(&faults, IO_OP_SYNC);
        assert_int_equal(wal_wait(w, 0, lsn, SHOAL_SYNC_ALWAYS), SHOAL_EFSYNC);
        assert_int_equal(wal_wait(w, 0, old_lsn, SHOAL_SYNC_ALWAYS), SHOAL_EFSYNC);
        assert_int_equal(wal_wait(w, 0, lsn, SHOAL_SYNC_NONE), SHOAL_EFSYNC);
        assert_int_equal(wal_append(w, 0, 1, 12, "x", 1, &lsn), SHOAL_EFSYNC);
        assert_int_equal(wal_sync_all(w), SHOAL_EFSYNC);
        assert_int_equal(wal_rotate(w, 100), SHOAL_EFSYNC);
        assert_int_equal(io_faults_count(&faults, IO_OP_SYNC), syncs);
        assert_int_equal(wal_close(w), SHOAL_EFSYNC);
        assert_int_equal(io_faults_count(&faults, IO_OP_SYNC), syncs);
        replay_contains_acked(dir, 10);
        testing_remove_tree(dir);
    }
}

static void test_write_failures(void **state)
{
    (void)state;
    const int errors[] = {ENOSPC, EIO};
    const int expected[] = {SHOAL_ENOSPC, SHOAL_EIO};
    for (int e = 0; e < 2; e++) {
        char dir[4096];
        struct io_faults faults;
        struct wal_options o = faulty_options(dir, sizeof dir, &faults, 1, SHOAL_SYNC_ALWAYS);
        o.sync_period_ms = 100000;
        struct wal *w = NULL;
        assert_int_equal(wal_open(&o, &w), 0);
        uint64_t lsn = 0;
        append_acked(w, 1, 5, &lsn);
        io_faults_fail(&faults, IO_OP_WRITE, io_faults_count(&faults, IO_OP_WRITE) + 1, errors[e],
                       true);
        append_record(w, 0, 6, 100, &lsn);
        assert_int_equal(wal_wait(w, 0, lsn, SHOAL_SYNC_PERIODIC), expected[e]);
        assert_int_equal(wal_error(w), expected[e]);
        assert_int_equal(wal_append(w, 0, 1, 7, "x", 1, &lsn), expected[e]);
        assert_int_equal(wal_close(w), expected[e]);
        replay_contains_acked(dir, 5);
        testing_remove_tree(dir);
    }
}

static void test_short_write(void **state)
{
    (void)state;
    char dir[4096];
    struct io_faults faults;
    struct wal_options o = faulty_options(dir, sizeof dir, &faults, 1, SHOAL_SYNC_ALWAYS);
    struct wal *w = NULL;
    assert_int_equal(wal_open(&o, &w), 0);
    uint64_t lsn = 0;
    append_acked(w, 1, 3, &lsn);
    /* The next write stops after 7 bytes; the log finishes it and nothing is lost. */
    io_faults_short_write(&faults, io_faults_count(&faults, IO_OP_WRITE) + 1, 7);
    append_acked(w, 4, 20, &lsn);
    assert_int_equal(atomic_load(&faults.injected), 1);
    assert_int_equal(wal_close(w), 0);
    struct collected c = {0};
    collected_reset(&c, 100);
    assert_int_equal(wal_replay(dir, 0, 0, NULL, false, true, collect, &c, NULL), 0);
    assert_int_equal(c.count, 23);
    assert_false(c.wrong_record);
    free(c.seqs);
    testing_remove_tree(dir);
}

static void torn_last_write(bool preallocate)
{
    char dir[4096];
    struct io_faults faults;
    struct wal_options o = faulty_options(dir, sizeof dir, &faults, 1, SHOAL_SYNC_ALWAYS);
    o.segment_bytes = 1 << 20;
    o.no_preallocate = !preallocate;
    o.sync_period_ms = 100000;
    struct wal *w = NULL;
    assert_int_equal(wal_open(&o, &w), 0);
    uint64_t lsn = 0;
    append_acked(w, 1, 10, &lsn);

    /* The 11th record's write reaches the disk only in part: its header and 10 bytes. */
    io_faults_tear_write(&faults, io_faults_count(&faults, IO_OP_WRITE) + 1,
                         WAL_RECORD_HEADER_SIZE + 10);
    uint8_t payload[100];
    memset(payload, 0x77, sizeof payload);
    assert_int_equal(wal_append(w, 0, 1, 11, payload, sizeof payload, &lsn), 0);
    assert_int_equal(wal_wait(w, 0, lsn, SHOAL_SYNC_ALWAYS), SHOAL_EIO);
    assert_int_equal(wal_close(w), SHOAL_EIO);

    struct segment_names names;
    list_segments(dir, 0, &names);
    assert_int_equal(names.count, 1);
    char path[4096];
    assert_int_equal(wal_segment_path(path, sizeof path, dir, 0, names.bases[0]), 0);
    long long size_before = testing_file_size(path);

    /* A read-only replay reports the torn tail and leaves the file alone. */
    struct collected c = {0};
    collected_reset(&c, 100);
    struct wal_replay_report report;
    assert_int_equal(wal_replay(dir, 0, 0, NULL, false, true, collect, &c, &report), 0);
    assert_int_equal(c.count, 10);
    assert_true(report.torn_tail);
    assert_false(report.salvaged);
    assert_int_equal(report.bytes_dropped, WAL_RECORD_HEADER_SIZE + 10);
    assert_string_equal(report.file, path);
    uint64_t cut = report.offset;
    assert_int_equal(testing_file_size(path), size_before);

    /* A writable replay cuts it; the next replay is clean. */
    collected_reset(&c, 100);
    assert_int_equal(wal_replay(dir, 0, 0, NULL, false, false, collect, &c, &report), 0);
    assert_true(report.torn_tail);
    assert_int_equal(report.offset, cut);
    assert_int_equal(testing_file_size(path), (long long)cut);
    collected_reset(&c, 100);
    assert_int_equal(wal_replay(dir, 0, 0, NULL, false, false, collect, &c, &report), 0);
    assert_false(report.torn_tail);
    assert_int_equal(c.count, 10);

    /* The log continues after the cut. */
    io_faults_init(&faults, NULL);
    o.next_seq_hint = report.last_seq + 1;
    assert_int_equal(wal_open(&o, &w), 0);
    append_acked(w, 11, 5, &lsn);
    assert_int_equal(wal_close(w), 0);
    replay_contains_acked(dir, 15);
    free(c.seqs);
    testing_remove_tree(dir);
}

static void test_torn_last_write_preallocated(void **state)
{
    (void)state;
    torn_last_write(true);
}

static void test_torn_last_write_growing(void **state)
{
    (void)state;
    torn_last_write(false);
}

/* ------------------------------------------------------------------------------------
 * Damage at every offset.
 * ---------------------------------------------------------------------------------- */

struct damage_fixture {
    char dir[4096];
    char paths[2][4096]; /* the two segments of stream 0 */
    uint8_t *images[2];  /* their original bytes */
    size_t sizes[2];
    /* Record starts: offsets[k][i] is where record i of segment k begins. */
    uint64_t offsets[2][64];
    size_t records[2];
    size_t total;
};

/* Two segments of about ten records each, written by the log itself. */
static void damage_setup(struct damage_fixture *f)
{
    assert_int_equal(testing_make_dir(f->dir, sizeof f->dir, "wal"), 0);
    struct wal_options o = test_options(f->dir, 1, SHOAL_SYNC_ALWAYS);
    o.segment_bytes = 800;
    o.no_preallocate = true;
    struct wal *w = NULL;
    assert_int_equal(wal_open(&o, &w), 0);
    uint64_t lsn;
    for (uint64_t seq = 1; seq <= 20; seq++) {
        append_record(w, 0, seq, 60, &lsn);
        assert_int_equal(wal_wait(w, 0, lsn, SHOAL_SYNC_ALWAYS), 0);
    }
    assert_int_equal(wal_close(w), 0);
    struct segment_names names;
    list_segments(f->dir, 0, &names);
    assert_int_equal(names.count, 2);
    f->total = 0;
    for (int k = 0; k < 2; k++) {
        assert_int_equal(
            wal_segment_path(f->paths[k], sizeof f->paths[k], f->dir, 0, names.bases[k]), 0);
        f->images[k] = testing_read_file(f->paths[k], &f->sizes[k]);
        assert_non_null(f->images[k]);
        f->records[k] = 0;
        uint64_t off = WAL_SEGMENT_HEADER_SIZE;
        while (off < f->sizes[k]) {
            f->offsets[k][f->records[k]++] = off;
            off += WAL_RECORD_HEADER_SIZE + encoding_get_u32(f->images[k] + off + 4);
        }
        assert_int_equal(off, f->sizes[k]);
        f->total += f->records[k];
    }
    assert_int_equal(f->total, 20);
    assert_true(f->records[0] >= 5 && f->records[1] >= 5);
}

static void damage_teardown(struct damage_fixture *f)
{
    free(f->images[0]);
    free(f->images[1]);
    testing_remove_tree(f->dir);
}

/* The index (over the whole stream) of the record containing byte off of segment k, or of
 * the segment's first record when off is in its header. */
static size_t damage_record_index(const struct damage_fixture *f, int k, uint64_t off)
{
    size_t index = k == 1 ? f->records[0] : 0;
    for (size_t i = 0; i < f->records[k]; i++)
        if (f->offsets[k][i] <= off)
            index = (k == 1 ? f->records[0] : 0) + i;
    return index;
}

static uint64_t damage_record_start(const struct damage_fixture *f, int k, uint64_t off)
{
    if (off < WAL_SEGMENT_HEADER_SIZE)
        return 0;
    uint64_t start = 0;
    for (size_t i = 0; i < f->records[k]; i++)
        if (f->offsets[k][i] <= off)
            start = f->offsets[k][i];
    return start;
}

/* The replayed seqs must be exactly 1..count: a prefix, in order, intact. */
static void assert_prefix(const struct collected *c, size_t count)
{
    assert_false(c->wrong_record);
    assert_int_equal(c->count, count);
    for (size_t i = 0; i < c->count; i++)
        assert_int_equal(c->seqs[i], i + 1);
}

static void test_bit_flips_everywhere(void **state)
{
    (void)state;
    struct damage_fixture f;
    damage_setup(&f);
    struct collected c = {0};
    for (int k = 0; k < 2; k++) {
        bool last = k == 1;
        for (uint64_t off = 0; off < f.sizes[k]; off++) {
            uint8_t *image = f.images[k];
            image[off] ^= (uint8_t)(1u << (off % 8));
            assert_int_equal(testing_write_file(f.paths[k], image, f.sizes[k]), 0);
            image[off] ^= (uint8_t)(1u << (off % 8));

            size_t index = damage_record_index(&f, k, off);
            uint64_t start = damage_record_start(&f, k, off);
            bool in_last_record = last && off >= f.offsets[1][f.records[1] - 1];
            struct wal_replay_report report;
            collected_reset(&c, 60);
            int rc = wal_replay(f.dir, 0, 0, NULL, false, true, collect, &c, &report);
            if (in_last_record) {
                /* Damage in the last record looks like a torn write: cut, not an error. */
                assert_int_equal(rc, 0);
                assert_true(report.torn_tail);
                assert_int_equal(report.offset, start);
                assert_string_equal(report.file, f.paths[k]);
                assert_prefix(&c, f.total - 1);
            } else {
                assert_int_equal(rc, SHOAL_ECORRUPT);
                assert_string_equal(report.file, f.paths[k]);
                assert_int_equal(report.offset, start);
                assert_prefix(&c, index);
            }

            /* Salvage keeps the same prefix and says what it dropped. */
            collected_reset(&c, 60);
            rc = wal_replay(f.dir, 0, 0, NULL, true, true, collect, &c, &report);
            assert_int_equal(rc, 0);
            assert_prefix(&c, in_last_record ? f.total - 1 : index);
            assert_true(report.salvaged || report.torn_tail);
            assert_true(report.bytes_dropped > 0);
        }
        assert_int_equal(testing_write_file(f.paths[k], f.images[k], f.sizes[k]), 0);
    }
    free(c.seqs);
    damage_teardown(&f);
}

static void test_truncations_everywhere(void **state)
{
    (void)state;
    struct damage_fixture f;
    damage_setup(&f);
    struct collected c = {0};
    for (int k = 0; k < 2; k++) {
        bool last = k == 1;
        for (uint64_t len = 0; len < f.sizes[k]; len++) {
            assert_int_equal(testing_write_file(f.paths[k], f.images[k], len), 0);
            /* Records wholly before the cut. */
            size_t whole = k == 1 ? f.records[0] : 0;
            uint64_t boundary = len < WAL_SEGMENT_HEADER_SIZE ? 0 : WAL_SEGMENT_HEADER_SIZE;
            for (size_t i = 0; i < f.records[k]; i++) {
                uint64_t end = i + 1 < f.records[k] ? f.offsets[k][i + 1] : f.sizes[k];
                if (end <= len) {
                    whole++;
                    boundary = end;
                }
            }
            struct wal_replay_report report;
            collected_reset(&c, 60);
            int rc = wal_replay(f.dir, 0, 0, NULL, false, true, collect, &c, &report);
            if (last) {
                /* A cut last segment is a torn tail (or a clean end at a boundary). */
                assert_int_equal(rc, 0);
                assert_prefix(&c, whole);
                assert_int_equal(report.torn_tail, len != boundary);
                if (report.torn_tail)
                    assert_int_equal(report.offset, boundary);
            } else {
                /* A cut earlier segment is damage, even at a record boundary: the next
                 * segment's header says how long its predecessor was. */
                assert_int_equal(rc, SHOAL_ECORRUPT);
                assert_string_equal(report.file, f.paths[k]);
                assert_int_equal(report.offset, boundary);
                assert_prefix(&c, whole);
            }
        }
        assert_int_equal(testing_write_file(f.paths[k], f.images[k], f.sizes[k]), 0);
    }

    /* Restored, the stream reads whole again. */
    collected_reset(&c, 60);
    assert_int_equal(wal_replay(f.dir, 0, 0, NULL, false, true, collect, &c, NULL), 0);
    assert_prefix(&c, f.total);
    free(c.seqs);
    damage_teardown(&f);
}

/* Copies a file (a "crash image" of a segment, or a backup to restore). */
static void copy_file(const char *from, const char *to)
{
    size_t len = 0;
    uint8_t *data = testing_read_file(from, &len);
    assert_non_null(data);
    assert_int_equal(testing_write_file(to, data, len), 0);
    free(data);
}

static void test_missing_segment(void **state)
{
    (void)state;
    char dir[4096];
    assert_int_equal(testing_make_dir(dir, sizeof dir, "wal"), 0);
    struct wal_options o = test_options(dir, 1, SHOAL_SYNC_ALWAYS);
    o.segment_bytes = 300;
    o.no_preallocate = true;
    struct wal *w = NULL;
    assert_int_equal(wal_open(&o, &w), 0);
    uint64_t lsn;
    for (uint64_t seq = 1; seq <= 20; seq++) {
        append_record(w, 0, seq, 60, &lsn);
        assert_int_equal(wal_wait(w, 0, lsn, SHOAL_SYNC_ALWAYS), 0);
    }
    assert_int_equal(wal_close(w), 0);
    struct segment_names names;
    list_segments(dir, 0, &names);
    assert_true(names.count >= 4);

    /* Remove the second segment: the third's header names it, so this is damage, reported
     * at the end of the first segment; salvage keeps the first segment only. */
    char first[4096], second[4096], saved[4096];
    assert_int_equal(wal_segment_path(first, sizeof first, dir, 0, names.bases[0]), 0);
    assert_int_equal(wal_segment_path(second, sizeof second, dir, 0, names.bases[1]), 0);
    assert_int_equal(io_path_join(saved, sizeof saved, dir, "saved"), 0);
    copy_file(second, saved);
    assert_int_equal(unlink(second), 0);

    struct collected c = {0};
    collected_reset(&c, 60);
    struct wal_replay_report report;
    assert_int_equal(wal_replay(dir, 0, 0, NULL, false, true, collect, &c, &report),
                     SHOAL_ECORRUPT);
    assert_string_equal(report.file, first);
    assert_int_equal(report.offset, testing_file_size(first));
    size_t in_first = c.count;
    assert_true(in_first > 0);
    assert_prefix(&c, in_first);

    collected_reset(&c, 60);
    assert_int_equal(wal_replay(dir, 0, 0, NULL, true, true, collect, &c, &report), 0);
    assert_true(report.salvaged);
    assert_prefix(&c, in_first);

    /* Deleting a prefix of segments (what wal_delete_before does after a checkpoint) is
     * no damage. */
    copy_file(saved, second);
    assert_int_equal(unlink(first), 0);
    collected_reset(&c, 60);
    assert_int_equal(wal_replay(dir, 0, in_first, NULL, false, true, collect, &c, &report), 0);
    assert_int_equal(c.count, 20 - in_first);
    assert_int_equal(c.seqs[0], in_first + 1);
    free(c.seqs);
    testing_remove_tree(dir);
}

/* ------------------------------------------------------------------------------------
 * Segment header format version 2: the predecessor's seq bound, and what replay makes of
 * a missing predecessor with it.
 * ---------------------------------------------------------------------------------- */

/* A segment header's fields, read by the byte layout of docs/FORMAT.md. */
struct header_fields {
    uint32_t version, stream;
    uint64_t base, prev_base, prev_bytes, prev_max_seq;
};

static void read_header(const char *dir, unsigned stream, uint64_t base, struct header_fields *h)
{
    char path[4096];
    assert_int_equal(wal_segment_path(path, sizeof path, dir, stream, base), 0);
    size_t len = 0;
    uint8_t *data = testing_read_file(path, &len);
    assert_non_null(data);
    assert_true(len >= 64);
    assert_memory_equal(data, "SHOALWAL", 8);
    assert_int_equal(crc32c_unmask(encoding_get_u32(data + 44)), crc32c(data, 44));
    assert_int_equal(crc32c_unmask(encoding_get_u32(data + 60)), crc32c(data, 60));
    assert_int_equal(encoding_get_u32(data + 40), 0); /* flags */
    assert_int_equal(encoding_get_u32(data + 56), 0); /* reserved */
    h->version = encoding_get_u32(data + 8);
    h->stream = encoding_get_u32(data + 12);
    h->base = encoding_get_u64(data + 16);
    h->prev_base = encoding_get_u64(data + 24);
    h->prev_bytes = encoding_get_u64(data + 32);
    h->prev_max_seq = encoding_get_u64(data + 48);
    free(data);
}

static long long segment_size(const char *dir, unsigned stream, uint64_t base)
{
    char path[4096];
    assert_int_equal(wal_segment_path(path, sizeof path, dir, stream, base), 0);
    return testing_file_size(path);
}

/* The bound a version 2 header carries is the number wal_delete_before compares with the
 * checkpoint seq: the largest seq written to the predecessor (a late record included), not
 * the base below the successor; and in a later session the bound deletion uses for a
 * loaded segment is never below it. */
static void test_header_v2_fields(void **state)
{
    (void)state;
    char dir[4096];
    assert_int_equal(testing_make_dir(dir, sizeof dir, "wal"), 0);
    struct wal_options o = test_options(dir, 1, SHOAL_SYNC_ALWAYS);
    o.segment_bytes = 1 << 20;
    struct wal *w = NULL;
    assert_int_equal(wal_open(&o, &w), 0);
    uint64_t lsn;
    static const uint64_t first[] = {1, 2, 3, 4, 5, 6, 7, 8, 10, 9}; /* 9 arrives late */
    for (size_t i = 0; i < sizeof first / sizeof first[0]; i++)
        append_record(w, 0, first[i], 60, &lsn);
    assert_int_equal(wal_sync_all(w), 0);
    assert_int_equal(wal_rotate(w, 100), 0); /* a checkpoint at 99 would do this */
    append_record(w, 0, 11, 60, &lsn);
    append_record(w, 0, 12, 60, &lsn);
    assert_int_equal(wal_sync_all(w), 0);

    struct segment_names names;
    list_segments(dir, 0, &names);
    assert_int_equal(names.count, 2);
    assert_int_equal(names.bases[0], 1);
    assert_int_equal(names.bases[1], 100);
    struct header_fields h;
    read_header(dir, 0, 1, &h);
    assert_int_equal(h.version, 2);
    assert_int_equal(h.stream, 0);
    assert_int_equal(h.base, 1);
    assert_int_equal(h.prev_base, 0); /* the first segment names none */
    assert_int_equal(h.prev_bytes, 0);
    assert_int_equal(h.prev_max_seq, 0);
    read_header(dir, 0, 100, &h);
    assert_int_equal(h.base, 100);
    assert_int_equal(h.prev_base, 1);
    assert_int_equal(h.prev_bytes, segment_size(dir, 0, 1));
    assert_int_equal(h.prev_max_seq, 10); /* not 99, the base below its successor */

    /* Deletion compares the same number: 9 keeps the segment, 10 deletes it. */
    assert_int_equal(wal_delete_before(w, 9), 0);
    list_segments(dir, 0, &names);
    assert_int_equal(names.count, 2);
    assert_int_equal(wal_delete_before(w, 10), 0);
    list_segments(dir, 0, &names);
    assert_int_equal(names.count, 1);

    append_record(w, 0, 13, 60, &lsn);
    assert_int_equal(wal_rotate(w, 200), 0);
    append_record(w, 0, 14, 60, &lsn);
    assert_int_equal(wal_close(w), 0);
    read_header(dir, 0, 200, &h);
    assert_int_equal(h.prev_base, 100);
    assert_int_equal(h.prev_bytes, segment_size(dir, 0, 100));
    assert_int_equal(h.prev_max_seq, 13);

    /* A later session: segment 100 is loaded with the bound 199 (the next base - 1, no
     * less than the 13 that 200's header records), the last one, 200, with the hint - 1,
     * which the new segment's header then records. */
    o.next_seq_hint = 15;
    assert_int_equal(wal_open(&o, &w), 0);
    append_record(w, 0, 15, 60, &lsn);
    assert_int_equal(wal_sync_all(w), 0);
    list_segments(dir, 0, &names);
    assert_int_equal(names.count, 3);
    assert_int_equal(names.bases[2], 201);
    read_header(dir, 0, 201, &h);
    assert_int_equal(h.prev_base, 200);
    assert_int_equal(h.prev_bytes, segment_size(dir, 0, 200));
    assert_int_equal(h.prev_max_seq, 14);
    assert_int_equal(wal_delete_before(w, 14), 0);
    list_segments(dir, 0, &names);
    assert_int_equal(names.count, 3);
    assert_int_equal(wal_delete_before(w, 199), 0);
    list_segments(dir, 0, &names);
    assert_int_equal(names.count, 1);
    assert_int_equal(wal_close(w), 0);

    /* Replay from a checkpoint at or above the bound: the deletion was legal. From one
     * below it: segment 200 held seq 14, which no checkpoint at 13 covers, so it was
     * lost. */
    struct collected c = {0};
    struct wal_replay_report report;
    collected_reset(&c, 60);
    assert_int_equal(
        wal_replay_from_checkpoint(dir, 0, 199, 14, NULL, false, true, collect, &c, &report), 0);
    assert_int_equal(c.count, 1);
    assert_int_equal(c.seqs[0], 15);
    collected_reset(&c, 60);
    assert_int_equal(
        wal_replay_from_checkpoint(dir, 0, 14, 14, NULL, false, true, collect, &c, &report), 0);
    assert_int_equal(c.count, 1);
    assert_int_equal(report.missing_base, 0);
    collected_reset(&c, 60);
    assert_int_equal(
        wal_replay_from_checkpoint(dir, 0, 13, 13, NULL, false, true, collect, &c, &report),
        SHOAL_ECORRUPT);
    assert_int_equal(c.count, 0);
    char path[4096];
    assert_int_equal(wal_segment_path(path, sizeof path, dir, 0, 201), 0);
    assert_string_equal(report.file, path);
    assert_int_equal(report.offset, 0);
    assert_int_equal(report.missing_base, 200);
    free(c.seqs);
    testing_remove_tree(dir);
}

/* A stream of single-record-per-segment size: returns the bases and, for each segment, the
 * seq bound its successor's header records (the last one's is unknown: 0). */
static void lost_setup(char *dir, size_t cap, struct segment_names *names, uint64_t *bounds)
{
    assert_int_equal(testing_make_dir(dir, cap, "wal"), 0);
    struct wal_options o = test_options(dir, 1, SHOAL_SYNC_ALWAYS);
    o.segment_bytes = 300;
    o.no_preallocate = true;
    struct wal *w = NULL;
    assert_int_equal(wal_open(&o, &w), 0);
    uint64_t lsn;
    for (uint64_t seq = 1; seq <= 20; seq++) {
        append_record(w, 0, seq, 60, &lsn);
        assert_int_equal(wal_wait(w, 0, lsn, SHOAL_SYNC_ALWAYS), 0);
    }
    assert_int_equal(wal_close(w), 0);
    list_segments(dir, 0, names);
    assert_true(names->count >= 4);
    for (size_t k = 0; k < names->count; k++) {
        bounds[k] = 0;
        if (k + 1 < names->count) {
            struct header_fields h;
            read_header(dir, 0, names->bases[k + 1], &h);
            assert_int_equal(h.prev_base, names->bases[k]);
            bounds[k] = h.prev_max_seq;
            /* Records 1..20 in order: the bound is the segment's last seq, one below the
             * next base. */
            assert_int_equal(bounds[k], names->bases[k + 1] - 1);
        }
    }
}

static void test_lost_first_segment(void **state)
{
    (void)state;
    char dir[4096];
    struct segment_names names;
    uint64_t bounds[256];
    lost_setup(dir, sizeof dir, &names, bounds);
    char first[4096], second[4096], saved[4096];
    assert_int_equal(wal_segment_path(first, sizeof first, dir, 0, names.bases[0]), 0);
    assert_int_equal(wal_segment_path(second, sizeof second, dir, 0, names.bases[1]), 0);
    assert_int_equal(io_path_join(saved, sizeof saved, dir, "saved"), 0);
    copy_file(first, saved);
    assert_int_equal(unlink(first), 0);
    long long rest = 0; /* the bytes of the segments left */
    for (size_t k = 1; k < names.count; k++)
        rest += segment_size(dir, 0, names.bases[k]);

    /* Checkpoint below the lost segment's bound: it held records only the log had. */
    uint64_t b0 = bounds[0];
    struct collected c = {0};
    struct wal_replay_report report;
    collected_reset(&c, 60);
    assert_int_equal(
        wal_replay_from_checkpoint(dir, 0, b0 - 1, b0 - 1, NULL, false, true, collect, &c, &report),
        SHOAL_ECORRUPT);
    assert_int_equal(c.count, 0);
    assert_string_equal(report.file, second);
    assert_int_equal(report.offset, 0);
    assert_int_equal(report.missing_base, names.bases[0]);
    /* A checker that wants every record (after_seq 0) gets the same verdict. */
    collected_reset(&c, 60);
    assert_int_equal(
        wal_replay_from_checkpoint(dir, 0, b0 - 1, 0, NULL, false, true, collect, &c, &report),
        SHOAL_ECORRUPT);
    assert_int_equal(c.count, 0);

    /* Checkpoint at the bound: a checkpoint deleted it, replay goes on. */
    collected_reset(&c, 60);
    assert_int_equal(
        wal_replay_from_checkpoint(dir, 0, b0, b0, NULL, false, true, collect, &c, &report), 0);
    assert_int_equal(c.count, 20 - b0);
    assert_int_equal(c.seqs[0], b0 + 1);
    assert_false(c.wrong_record);

    /* wal_replay does not know the checkpoint: the version 1 rule, replay from there. */
    collected_reset(&c, 60);
    assert_int_equal(wal_replay(dir, 0, 0, NULL, false, true, collect, &c, &report), 0);
    assert_int_equal(c.count, 20 - b0);

    /* Salvage keeps nothing of the stream (read-only: it only says so). */
    collected_reset(&c, 60);
    assert_int_equal(
        wal_replay_from_checkpoint(dir, 0, b0 - 1, b0 - 1, NULL, true, true, collect, &c, &report),
        0);
    assert_int_equal(c.count, 0);
    assert_true(report.salvaged);
    assert_int_equal(report.missing_base, names.bases[0]);
    assert_int_equal(report.bytes_dropped, rest);
    struct segment_names after;
    list_segments(dir, 0, &after);
    assert_int_equal(after.count, names.count - 1);

    /* A missing middle segment is judged by the same bound: covered by the checkpoint it is
     * no damage (power loss may make a deletion's unlinks durable out of order); not
     * covered, it is a gap at the end of the segment before. */
    copy_file(saved, first);
    char third[4096];
    assert_int_equal(wal_segment_path(third, sizeof third, dir, 0, names.bases[2]), 0);
    copy_file(third, saved);
    assert_int_equal(unlink(third), 0);
    uint64_t b2 = bounds[2];
    collected_reset(&c, 60);
    assert_int_equal(
        wal_replay_from_checkpoint(dir, 0, b2, b2, NULL, false, true, collect, &c, &report), 0);
    assert_int_equal(c.count, 20 - b2);
    assert_int_equal(c.seqs[0], b2 + 1);
    collected_reset(&c, 60);
    assert_int_equal(
        wal_replay_from_checkpoint(dir, 0, b2 - 1, b2 - 1, NULL, false, true, collect, &c, &report),
        SHOAL_ECORRUPT);
    assert_string_equal(report.file, second);
    assert_int_equal(report.offset, segment_size(dir, 0, names.bases[1]));
    assert_int_equal(report.missing_base, names.bases[2]);
    collected_reset(&c, 60);
    assert_int_equal(wal_replay(dir, 0, 0, NULL, false, true, collect, &c, &report),
                     SHOAL_ECORRUPT);
    assert_int_equal(report.missing_base, names.bases[2]);
    copy_file(saved, third);

    /* Salvage for real after a lost first segment: the stream's files go, and the log can
     * be opened and written again. */
    assert_int_equal(unlink(first), 0);
    collected_reset(&c, 60);
    assert_int_equal(
        wal_replay_from_checkpoint(dir, 0, b0 - 1, b0 - 1, NULL, true, false, collect, &c, &report),
        0);
    assert_true(report.salvaged);
    assert_int_equal(c.count, 0);
    list_segments(dir, 0, &after);
    assert_int_equal(after.count, 0);
    struct wal_options o = test_options(dir, 1, SHOAL_SYNC_ALWAYS);
    o.next_seq_hint = 21;
    struct wal *w = NULL;
    assert_int_equal(wal_open(&o, &w), 0);
    uint64_t lsn;
    append_record(w, 0, 21, 60, &lsn);
    assert_int_equal(wal_close(w), 0);
    collected_reset(&c, 60);
    assert_int_equal(
        wal_replay_from_checkpoint(dir, 0, b0 - 1, b0 - 1, NULL, false, true, collect, &c, &report),
        0);
    assert_int_equal(c.count, 1);
    assert_int_equal(c.seqs[0], 21);
    free(c.seqs);
    testing_remove_tree(dir);
}

/* Encodes the record of seq (docs/FORMAT.md, "Record") at out; returns its size. */
static size_t encode_record(uint8_t *out, uint64_t seq, size_t max_len)
{
    uint8_t payload[4096];
    size_t len = test_payload(seq, payload, max_len);
    encoding_put_u32(out + 4, (uint32_t)len);
    out[8] = 1; /* record format version */
    out[9] = test_type(seq);
    out[10] = out[11] = 0;
    encoding_put_u64(out + 12, seq);
    memcpy(out + WAL_RECORD_HEADER_SIZE, payload, len);
    encoding_put_u32(out, crc32c_mask(crc32c(out + 4, WAL_RECORD_HEADER_SIZE - 4 + len)));
    return WAL_RECORD_HEADER_SIZE + len;
}

/* Writes a segment by hand from the byte tables of docs/FORMAT.md: a header of format
 * version 1 (48 bytes) or 2 (64 bytes), then the records of seqs first..last. Returns the
 * file's size. */
static size_t write_segment_by_hand(const char *dir, unsigned stream, unsigned version,
                                    uint64_t base, uint64_t prev_base, uint64_t prev_bytes,
                                    uint64_t prev_max_seq, uint64_t first, uint64_t last)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/log", dir);
    assert_true(mkdir(path, 0755) == 0 || errno == EEXIST);
    snprintf(path, sizeof path, "%s/log/%u", dir, stream);
    assert_true(mkdir(path, 0755) == 0 || errno == EEXIST);
    static uint8_t data[64 + 64 * (WAL_RECORD_HEADER_SIZE + 60)];
    memset(data, 0, sizeof data);
    memcpy(data, "SHOALWAL", 8);
    encoding_put_u32(data + 8, version);
    encoding_put_u32(data + 12, stream);
    encoding_put_u64(data + 16, base);
    encoding_put_u64(data + 24, prev_base);
    encoding_put_u64(data + 32, prev_bytes);
    encoding_put_u32(data + 40, 0);
    encoding_put_u32(data + 44, crc32c_mask(crc32c(data, 44)));
    size_t len = 48;
    if (version == 2) {
        encoding_put_u64(data + 48, prev_max_seq);
        encoding_put_u32(data + 56, 0);
        encoding_put_u32(data + 60, crc32c_mask(crc32c(data, 60)));
        len = 64;
    }
    assert_true(last - first < 64);
    for (uint64_t seq = first; seq <= last; seq++)
        len += encode_record(data + len, seq, 60);
    assert_int_equal(wal_segment_path(path, sizeof path, dir, stream, base), 0);
    assert_int_equal(testing_write_file(path, data, len), 0);
    return len;
}

/* Segments of format version 1 are still read, beside version 2 ones that the log appends
 * after them; version 1 keeps its gap (a missing first predecessor is not judged). A
 * hand-made version 2 segment pins the byte layout of the documentation. */
static void test_version1_segments(void **state)
{
    (void)state;
    char dir[4096];
    assert_int_equal(testing_make_dir(dir, sizeof dir, "wal"), 0);
    size_t size1 = write_segment_by_hand(dir, 0, 1, 1, 0, 0, 0, 1, 5);
    write_segment_by_hand(dir, 0, 1, 6, 1, size1, 0, 6, 8);

    struct collected c = {0};
    struct wal_replay_report report;
    collected_reset(&c, 60);
    assert_int_equal(wal_replay(dir, 0, 0, NULL, false, true, collect, &c, &report), 0);
    assert_prefix(&c, 8);
    collected_reset(&c, 60);
    assert_int_equal(
        wal_replay_from_checkpoint(dir, 0, 0, 0, NULL, false, true, collect, &c, &report), 0);
    assert_prefix(&c, 8);
    assert_int_equal(report.last_seq, 8);

    /* The log appends a version 2 segment after them, naming the version 1 predecessor with
     * the bound it loaded it with (the hint - 1: the scan found seq 8). */
    struct wal_options o = test_options(dir, 1, SHOAL_SYNC_ALWAYS);
    struct wal *w = NULL;
    assert_int_equal(wal_open(&o, &w), 0);
    uint64_t lsn;
    append_record(w, 0, 9, 60, &lsn);
    assert_int_equal(wal_close(w), 0);
    struct segment_names names;
    list_segments(dir, 0, &names);
    assert_int_equal(names.count, 3);
    struct header_fields h;
    read_header(dir, 0, names.bases[2], &h);
    assert_int_equal(h.version, 2);
    assert_int_equal(h.prev_base, 6);
    assert_int_equal(h.prev_bytes, segment_size(dir, 0, 6));
    assert_int_equal(h.prev_max_seq, 8);
    collected_reset(&c, 60);
    assert_int_equal(
        wal_replay_from_checkpoint(dir, 0, 0, 0, NULL, false, true, collect, &c, &report), 0);
    assert_prefix(&c, 9);

    /* A cut version 1 segment is still found by its successor's length field. */
    char path[4096];
    assert_int_equal(wal_segment_path(path, sizeof path, dir, 0, 1), 0);
    size_t len = 0;
    uint8_t *bytes = testing_read_file(path, &len);
    assert_non_null(bytes);
    uint64_t cut = 48 + encode_record((uint8_t[4096]){0}, 1, 60);
    assert_int_equal(testing_write_file(path, bytes, (size_t)cut), 0);
    collected_reset(&c, 60);
    assert_int_equal(
        wal_replay_from_checkpoint(dir, 0, 0, 0, NULL, false, true, collect, &c, &report),
        SHOAL_ECORRUPT);
    assert_string_equal(report.file, path);
    assert_int_equal(report.offset, cut);
    assert_prefix(&c, 1);
    assert_int_equal(testing_write_file(path, bytes, len), 0);

    /* A version 1 first segment that names a missing predecessor replays, whatever the
     * checkpoint: version 1 cannot tell a lost predecessor from a deleted one. */
    write_segment_by_hand(dir, 1, 1, 50, 40, 500, 0, 50, 52);
    collected_reset(&c, 60);
    assert_int_equal(
        wal_replay_from_checkpoint(dir, 1, 0, 0, NULL, false, true, collect, &c, &report), 0);
    assert_int_equal(c.count, 3);

    /* The same by hand in version 2, with the bound 45: lost below checkpoint 45. */
    write_segment_by_hand(dir, 2, 2, 50, 40, 500, 45, 50, 52);
    collected_reset(&c, 60);
    assert_int_equal(
        wal_replay_from_checkpoint(dir, 2, 45, 0, NULL, false, true, collect, &c, &report), 0);
    assert_int_equal(c.count, 3);
    assert_false(c.wrong_record);
    collected_reset(&c, 60);
    assert_int_equal(
        wal_replay_from_checkpoint(dir, 2, 44, 0, NULL, false, true, collect, &c, &report),
        SHOAL_ECORRUPT);
    assert_int_equal(report.missing_base, 40);
    assert_int_equal(report.offset, 0);
    assert_int_equal(c.count, 0);

    /* Headers that no log writes: a predecessor bound or base not below the segment's
     * base (invariant 2) is damage, whatever the checkpoint. */
    write_segment_by_hand(dir, 2, 2, 50, 40, 500, 50, 50, 52);
    collected_reset(&c, 60);
    assert_int_equal(wal_replay_from_checkpoint(dir, 2, UINT64_MAX - 1, 0, NULL, false, true,
                                                collect, &c, &report),
                     SHOAL_ECORRUPT);
    assert_int_equal(report.offset, 0);
    write_segment_by_hand(dir, 2, 1, 50, 50, 500, 0, 50, 52);
    collected_reset(&c, 60);
    assert_int_equal(wal_replay(dir, 2, 0, NULL, false, true, collect, &c, &report),
                     SHOAL_ECORRUPT);

    /* A flipped bit in the version of a version 2 header is damage, not a newer format:
     * the prologue's CRC covers it. */
    write_segment_by_hand(dir, 2, 2, 50, 40, 500, 45, 50, 52);
    char path2[4096];
    assert_int_equal(wal_segment_path(path2, sizeof path2, dir, 2, 50), 0);
    size_t len2 = 0;
    uint8_t *bytes2 = testing_read_file(path2, &len2);
    assert_non_null(bytes2);
    bytes2[8] ^= 1; /* 2 -> 3 */
    assert_int_equal(testing_write_file(path2, bytes2, len2), 0);
    collected_reset(&c, 60);
    assert_int_equal(
        wal_replay_from_checkpoint(dir, 2, 45, 0, NULL, false, true, collect, &c, &report),
        SHOAL_ECORRUPT);
    assert_string_equal(report.file, path2);
    assert_int_equal(report.offset, 0);
    free(bytes2);
    free(bytes);
    free(c.seqs);
    testing_remove_tree(dir);
}

static int stop_after_five(void *ctx, uint8_t type, uint64_t seq, const void *payload, size_t len)
{
    (void)type;
    (void)payload;
    (void)len;
    int *seen = ctx;
    return ++*seen == 5 ? 1234 : 0;
}

static void test_replay_edges(void **state)
{
    (void)state;
    char dir[4096];
    assert_int_equal(testing_make_dir(dir, sizeof dir, "wal"), 0);
    struct wal_replay_report report;
    /* No log at all: nothing to replay, no error. */
    assert_int_equal(wal_replay(dir, 3, 0, NULL, false, false, collect, NULL, &report), 0);
    assert_int_equal(report.records, 0);
    unsigned streams = 9;
    assert_int_equal(wal_list_streams(dir, NULL, &streams), 0);
    assert_int_equal(streams, 0);

    struct wal_options o = test_options(dir, 1, SHOAL_SYNC_ALWAYS);
    o.segment_bytes = 1 << 20;
    struct wal *w = NULL;
    assert_int_equal(wal_open(&o, &w), 0);
    uint64_t lsn;
    for (uint64_t seq = 1; seq <= 10; seq++)
        append_record(w, 0, seq, 60, &lsn);
    assert_int_equal(wal_wait(w, 0, lsn, SHOAL_SYNC_ALWAYS), 0);

    /* A crash image: the segment as it is on disk while the log is open, with the zeros of
     * its reservation after the last record. */
    char crash[4096], crash_stream[4096], live[4096], image[4096];
    assert_int_equal(io_path_join(crash, sizeof crash, dir, "crash"), 0);
    assert_int_equal(io_path_join(crash_stream, sizeof crash_stream, crash, "log"), 0);
    assert_int_equal(mkdir(crash, 0755), 0);
    assert_int_equal(mkdir(crash_stream, 0755), 0);
    assert_int_equal(io_path_join(crash_stream, sizeof crash_stream, crash, "log/0"), 0);
    assert_int_equal(mkdir(crash_stream, 0755), 0);
    struct segment_names names;
    list_segments(dir, 0, &names);
    assert_int_equal(names.count, 1);
    assert_int_equal(wal_segment_path(live, sizeof live, dir, 0, names.bases[0]), 0);
    assert_int_equal(wal_segment_path(image, sizeof image, crash, 0, names.bases[0]), 0);
    copy_file(live, image);
    long long reserved = testing_file_size(image);
    assert_int_equal(wal_close(w), 0);
    long long used = testing_file_size(live); /* close trimmed the reservation */
    assert_true(used <= reserved);            /* equal only where fallocate is missing */

    struct collected c = {0};
    collected_reset(&c, 60);
    assert_int_equal(wal_replay(crash, 0, 0, NULL, false, false, collect, &c, &report), 0);
    assert_prefix(&c, 10);
    assert_false(report.torn_tail);
    assert_int_equal(report.bytes_dropped, 0);
    assert_int_equal(testing_file_size(image), used); /* the zeros were trimmed */

    /* Garbage after the records of a crash image is a torn tail, even with zeros after. */
    size_t len = 0;
    uint8_t *bytes = testing_read_file(live, &len);
    assert_non_null(bytes);
    uint8_t *longer = calloc(1, len + 4096);
    memcpy(longer, bytes, len);
    memset(longer + len, 0xee, 7);
    assert_int_equal(testing_write_file(image, longer, len + 4096), 0);
    collected_reset(&c, 60);
    assert_int_equal(wal_replay(crash, 0, 0, NULL, false, true, collect, &c, &report), 0);
    assert_prefix(&c, 10);
    assert_true(report.torn_tail);
    assert_int_equal(report.offset, len);
    assert_int_equal(report.bytes_dropped, 7);
    free(longer);

    /* fn stops the replay with its value. */
    int seen = 0;
    assert_int_equal(wal_replay(dir, 0, 0, NULL, false, false, stop_after_five, &seen, &report),
                     1234);
    assert_int_equal(seen, 5);

    /* A segment of a newer format is refused, not misread: its version is trusted because
     * the prologue (bytes 0..47) that holds it is intact. */
    bytes[8] = 3;
    uint32_t crc = crc32c(bytes, 44);
    encoding_put_u32(bytes + 44, crc32c_mask(crc));
    assert_int_equal(testing_write_file(live, bytes, len), 0);
    assert_int_equal(wal_replay(dir, 0, 0, NULL, false, true, collect, &c, &report), SHOAL_ENOTSUP);
    assert_string_equal(report.file, live);
    assert_int_equal(
        wal_replay_from_checkpoint(dir, 0, 0, 0, NULL, false, true, collect, &c, &report),
        SHOAL_ENOTSUP);
    free(bytes);
    free(c.seqs);
    testing_remove_tree(dir);
}

/* ------------------------------------------------------------------------------------
 * Zeros after the records: the reserved tail of a segment being written.
 * ---------------------------------------------------------------------------------- */

/* Replays a one-stream crash directory holding the given image of a segment, read-only. */
static int replay_image(const char *crash, const char *image, const uint8_t *bytes, size_t len,
                        struct collected *c, struct wal_replay_report *report)
{
    assert_int_equal(testing_write_file(image, bytes, len), 0);
    collected_reset(c, 4000);
    return wal_replay(crash, 0, 0, NULL, false, true, collect, c, report);
}

/* The offset of the record after the one at off in a segment image. */
static size_t next_record(const uint8_t *bytes, size_t off)
{
    return off + WAL_RECORD_HEADER_SIZE + encoding_get_u32(bytes + off + 4);
}

/* A crash image of a segment with a megabyte of records and zeros after them (the
 * reservation it is written into) replays exactly; a torn write into the zeros is a torn
 * tail; zeros in the middle followed by a valid record, and a flipped bit inside the
 * records, are damage. */
static void test_zeros_after_records(void **state)
{
    (void)state;
    char dir[4096];
    assert_int_equal(testing_make_dir(dir, sizeof dir, "wal"), 0);
    enum { RECORDS = 500, MAX_LEN = 4000 };
    struct wal_options o = test_options(dir, 1, SHOAL_SYNC_ALWAYS);
    o.segment_bytes = 16u << 20;
    o.sync_period_ms = 100000;
    struct wal *w = NULL;
    assert_int_equal(wal_open(&o, &w), 0);
    uint64_t lsn = 0, end = WAL_SEGMENT_HEADER_SIZE;
    uint8_t payload[MAX_LEN];
    for (uint64_t seq = 1; seq <= RECORDS; seq++) {
        size_t len = test_payload(seq, payload, MAX_LEN);
        assert_int_equal(wal_append(w, 0, test_type(seq), seq, payload, len, &lsn), 0);
        end += WAL_RECORD_HEADER_SIZE + len;
        if (seq % 50 == 0)
            assert_int_equal(wal_wait(w, 0, lsn, SHOAL_SYNC_ALWAYS), 0);
    }
    assert_int_equal(wal_wait(w, 0, lsn, SHOAL_SYNC_ALWAYS), 0);

    struct segment_names names;
    list_segments(dir, 0, &names);
    assert_int_equal(names.count, 1);
    char live[4096];
    assert_int_equal(wal_segment_path(live, sizeof live, dir, 0, names.bases[0]), 0);
    size_t disk_len = 0;
    uint8_t *disk = testing_read_file(live, &disk_len);
    assert_non_null(disk);
    assert_true(disk_len >= end);
    for (size_t i = end; i < disk_len; i++)
        assert_int_equal(disk[i], 0);
    assert_int_equal(wal_close(w), 0);
    assert_int_equal(testing_file_size(live), (long long)end); /* close trimmed the zeros */

    /* The image: the records, then a megabyte of zeros (what the file holds while it is
     * written into its reservation; built here too where fallocate is missing). */
    size_t len = end + (1u << 20);
    uint8_t *bytes = calloc(1, len);
    assert_non_null(bytes);
    memcpy(bytes, disk, end);
    free(disk);

    char crash[4096], sub[4096], image[4096];
    assert_int_equal(io_path_join(crash, sizeof crash, dir, "crash"), 0);
    assert_int_equal(mkdir(crash, 0755), 0);
    assert_int_equal(io_path_join(sub, sizeof sub, crash, "log"), 0);
    assert_int_equal(mkdir(sub, 0755), 0);
    assert_int_equal(io_path_join(sub, sizeof sub, crash, "log/0"), 0);
    assert_int_equal(mkdir(sub, 0755), 0);
    assert_int_equal(wal_segment_path(image, sizeof image, crash, 0, names.bases[0]), 0);
    struct collected c = {0};
    struct wal_replay_report report;

    /* It replays exactly: every record, no torn tail, nothing dropped; a writable replay
     * trims the zeros. */
    assert_int_equal(replay_image(crash, image, bytes, len, &c, &report), 0);
    assert_prefix(&c, RECORDS);
    assert_false(report.torn_tail);
    assert_int_equal(report.bytes_dropped, 0);
    collected_reset(&c, MAX_LEN);
    assert_int_equal(wal_replay(crash, 0, 0, NULL, false, false, collect, &c, &report), 0);
    assert_prefix(&c, RECORDS);
    assert_int_equal(testing_file_size(image), (long long)end);

    /* A torn write into the zeros (a record's header and part of its payload, zeros after)
     * is a torn tail at the end of the records. */
    uint8_t *torn = malloc(len);
    assert_non_null(torn);
    memcpy(torn, bytes, len);
    size_t last = WAL_SEGMENT_HEADER_SIZE;
    while (next_record(bytes, last) < end)
        last = next_record(bytes, last);
    memcpy(torn + end, bytes + last, WAL_RECORD_HEADER_SIZE + 10);
    encoding_put_u64(torn + end + 12, RECORDS + 1);
    assert_int_equal(replay_image(crash, image, torn, len, &c, &report), 0);
    assert_prefix(&c, RECORDS);
    assert_true(report.torn_tail);
    assert_int_equal(report.offset, end);
    assert_string_equal(report.file, image);

    /* Zeros in the middle of the reserved space, then a valid record: not a clean end, and
     * not a torn tail either (a valid record follows the bad spot), but damage. */
    memcpy(torn, bytes, len);
    size_t last_len = next_record(bytes, last) - last;
    size_t later = end + 4096;
    assert_true(later + last_len <= len);
    memcpy(torn + later, bytes + last, last_len);
    assert_int_equal(replay_image(crash, image, torn, len, &c, &report), SHOAL_ECORRUPT);
    assert_int_equal(report.offset, end);
    assert_prefix(&c, RECORDS);

    /* A flipped bit inside the records is damage, zeros after them or not. */
    memcpy(torn, bytes, len);
    size_t victim = WAL_SEGMENT_HEADER_SIZE;
    for (int i = 0; i < RECORDS / 2; i++)
        victim = next_record(bytes, victim);
    torn[victim + WAL_RECORD_HEADER_SIZE + 1] ^= 0x10;
    assert_int_equal(replay_image(crash, image, torn, len, &c, &report), SHOAL_ECORRUPT);
    assert_int_equal(report.offset, victim);
    assert_prefix(&c, RECORDS / 2);

    free(torn);
    free(bytes);
    free(c.seqs);
    testing_remove_tree(dir);
}

/* A reservation that fails (here: the disk is full when a segment is created) is no error:
 * the segment grows as it is written, and every acknowledged record is there. */
static void test_failed_reservation_grows(void **state)
{
    (void)state;
    char dir[4096];
    struct io_faults faults;
    struct wal_options o = faulty_options(dir, sizeof dir, &faults, 1, SHOAL_SYNC_ALWAYS);
    o.segment_bytes = 16u << 20;
    o.sync_period_ms = 100000;
    struct wal *w = NULL;
    assert_int_equal(wal_open(&o, &w), 0);
    io_faults_fail(&faults, IO_OP_ALLOCATE, 1, ENOSPC, true);
    uint64_t lsn = 0;
    append_acked(w, 1, 20, &lsn);
    assert_true(atomic_load(&faults.injected) >= 1);
    assert_int_equal(wal_error(w), 0);
    struct segment_names names;
    list_segments(dir, 0, &names);
    assert_int_equal(names.count, 1);
    char live[4096];
    assert_int_equal(wal_segment_path(live, sizeof live, dir, 0, names.bases[0]), 0);
    long long grown = testing_file_size(live);
    assert_true(grown > WAL_SEGMENT_HEADER_SIZE);
    assert_true(grown < 20 * (WAL_RECORD_HEADER_SIZE + 100) + WAL_SEGMENT_HEADER_SIZE + 1);
    assert_int_equal(wal_close(w), 0);
    replay_contains_acked(dir, 20);
    testing_remove_tree(dir);
}

/* An io table that passes everything to POSIX and records the cache_ahead calls by step. */
struct cache_spy {
    struct shoal_io io;
    unsigned asked[64]; /* times each WAL_CACHE_STEP of the file was asked in */
    bool misaligned;
};

static int spy_cache_ahead(const struct shoal_io *io, int fd, uint64_t offset, uint64_t length)
{
    struct cache_spy *spy = (struct cache_spy *)io;
    uint64_t step = offset / WAL_CACHE_STEP;
    if (offset % WAL_CACHE_STEP != 0 || length != WAL_CACHE_STEP || step >= 64)
        spy->misaligned = true;
    else
        spy->asked[step]++;
    return io_posix()->cache_ahead(io_posix(), fd, offset, length);
}

/* The reserved space WAL_CACHE_AHEAD past a segment's end is asked into the page cache once,
 * a step at a time, as the end moves; space that is not reserved never is. */
static void cached_ahead(bool preallocate)
{
    char dir[4096];
    assert_int_equal(testing_make_dir(dir, sizeof dir, "wal"), 0);
    struct cache_spy spy = {.io = *io_posix()};
    spy.io.cache_ahead = spy_cache_ahead;
    struct wal_options o = test_options(dir, 1, SHOAL_SYNC_NONE);
    o.segment_bytes = 1u << 20;
    o.io = &spy.io;
    o.no_preallocate = !preallocate;
    struct wal *w = NULL;
    assert_int_equal(wal_open(&o, &w), 0);
    uint64_t end = WAL_SEGMENT_HEADER_SIZE, lsn;
    for (uint64_t seq = 1; seq <= 3000; seq++) {
        uint8_t payload[4096];
        size_t len = test_payload(seq, payload, 100);
        assert_int_equal(wal_append(w, 0, test_type(seq), seq, payload, len, &lsn), 0);
        assert_int_equal(wal_wait(w, 0, lsn, SHOAL_SYNC_NONE), 0); /* written */
        end += WAL_RECORD_HEADER_SIZE + len;
    }
    assert_true(end > 2 * WAL_CACHE_STEP && end + WAL_CACHE_AHEAD < o.segment_bytes);
    assert_false(spy.misaligned);
    uint64_t bound =
        preallocate ? (end / WAL_CACHE_STEP * WAL_CACHE_STEP + WAL_CACHE_AHEAD) / WAL_CACHE_STEP
                    : 0;
    for (uint64_t step = 0; step < 64; step++)
        assert_int_equal(spy.asked[step], step < bound ? 1 : 0);
    assert_int_equal(wal_close(w), 0);
    replay_contains_acked(dir, 3000);
    testing_remove_tree(dir);
}

static void test_cached_ahead(void **state)
{
    (void)state;
    cached_ahead(true);
    cached_ahead(false);
}

/* An io table that passes everything to POSIX and checks every write_zeros call: the
 * zeros start where the last run of zeros ended (or, the first time, past every record
 * written), never below what pwrite has written. */
struct zero_spy {
    struct shoal_io io;
    uint64_t written_end; /* the furthest byte pwrite has written into the segment */
    uint64_t zeroed_end;  /* the end of the last run of zeros, 0 before the first */
    unsigned calls;
    bool overlapped;
};

static ssize_t zero_spy_pwrite(const struct shoal_io *io, int fd, const void *buf, size_t len,
                               uint64_t offset)
{
    struct zero_spy *spy = (struct zero_spy *)io;
    ssize_t n = io_posix()->pwrite(io_posix(), fd, buf, len, offset);
    if (n > 0 && offset + (uint64_t)n > spy->written_end)
        spy->written_end = offset + (uint64_t)n;
    return n;
}

static int zero_spy_write_zeros(const struct shoal_io *io, int fd, uint64_t offset, uint64_t length)
{
    struct zero_spy *spy = (struct zero_spy *)io;
    if (offset < spy->written_end || (spy->zeroed_end != 0 && offset != spy->zeroed_end))
        spy->overlapped = true;
    spy->zeroed_end = offset + length;
    spy->calls++;
    return io_posix()->write_zeros(io_posix(), fd, offset, length);
}

/* 1 if some extent of the file overlapping [0, end) is unwritten (fallocate'd, never
 * written), 0 if none is, -1 if the file system does not say (no FIEMAP). */
static int unwritten_below(const char *path, uint64_t end)
{
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    enum { EXTENTS = 64 };
    struct fiemap *map = calloc(1, sizeof *map + EXTENTS * sizeof(struct fiemap_extent));
    map->fm_start = 0;
    map->fm_length = end;
    map->fm_flags = FIEMAP_FLAG_SYNC;
    map->fm_extent_count = EXTENTS;
    int result = -1;
    if (ioctl(fd, FS_IOC_FIEMAP, map) == 0) {
        result = 0;
        for (unsigned i = 0; i < map->fm_mapped_extents; i++) {
            const struct fiemap_extent *e = &map->fm_extents[i];
            if ((e->fe_flags & FIEMAP_EXTENT_UNWRITTEN) && e->fe_logical < end)
                result = 1;
        }
    }
    free(map);
    close(fd);
    return result;
}

/* Appends groups of 8 records of up to 4 KiB from *seq on, waiting for each group as `sync`
 * says; *end grows by the bytes they take in the segment. */
static void append_groups(struct wal *w, int sync, unsigned groups, uint64_t *seq, uint64_t *end)
{
    uint64_t lsn = 0;
    for (unsigned g = 0; g < groups; g++) {
        for (int i = 0; i < 8; i++, (*seq)++) {
            uint8_t payload[4096];
            size_t len = test_payload(*seq, payload, sizeof payload);
            assert_int_equal(wal_append(w, 0, test_type(*seq), *seq, payload, len, &lsn), 0);
            *end += WAL_RECORD_HEADER_SIZE + len;
        }
        assert_int_equal(wal_wait(w, 0, lsn, sync), 0);
    }
}

/* A flush that syncs for waiters keeps WAL_ZERO_AHEAD past the segment's end written with
 * zeros, so that later syncs find written blocks (PREALLOCATION, "Zeroed ahead"); the zeros
 * never land on a record; flushes that do not sync, or sync for a periodic tick, write
 * none; a failing write_zeros only stops the zeroing. */
static void zeroed_ahead(int sync, bool fail_zeros)
{
    char dir[4096];
    assert_int_equal(testing_make_dir(dir, sizeof dir, "wal"), 0);
    struct zero_spy spy = {.io = *io_posix()};
    spy.io.pwrite = zero_spy_pwrite;
    spy.io.write_zeros = zero_spy_write_zeros;
    struct io_faults faults;
    io_faults_init(&faults, &spy.io);
    if (fail_zeros)
        io_faults_fail(&faults, IO_OP_ZERO, 1, EIO, true);
    struct wal_options o = test_options(dir, 1, sync);
    o.segment_bytes = 16u << 20;
    o.sync_period_ms = sync == SHOAL_SYNC_PERIODIC ? 1 : 100000; /* ticks sync, nobody waits */
    o.io = &faults.io;
    struct wal *w = NULL;
    assert_int_equal(wal_open(&o, &w), 0);
    uint64_t seq = 1, end = WAL_SEGMENT_HEADER_SIZE;
    for (int round = 0; round < 80; round++) {
        append_groups(w, sync, 2, &seq, &end);
        if (sync == SHOAL_SYNC_ALWAYS && !fail_zeros)
            assert_true(spy.zeroed_end >= end + WAL_ZERO_AHEAD);
    }
    assert_true(end > 2 * WAL_ZERO_STEP); /* the zeros moved on more than once */
    assert_false(spy.overlapped);
    assert_int_equal(wal_error(w), 0);
    if (sync != SHOAL_SYNC_ALWAYS || fail_zeros)
        assert_int_equal(spy.calls, 0);
    if (fail_zeros)
        assert_int_equal(atomic_load(&faults.injected), 1); /* tried once, then never again */

    struct segment_names names;
    list_segments(dir, 0, &names);
    assert_int_equal(names.count, 1);
    char live[4096];
    assert_int_equal(wal_segment_path(live, sizeof live, dir, 0, names.bases[0]), 0);
    /* Where the file system reports extents: none unwritten up to the zeros' end, while
     * without the zeros the reservation there still is (the control that the check sees). */
    int unwritten = unwritten_below(live, end + WAL_ZERO_AHEAD);
    if (unwritten >= 0)
        assert_int_equal(unwritten, sync == SHOAL_SYNC_ALWAYS && !fail_zeros ? 0 : 1);
    assert_int_equal(wal_close(w), 0);
    struct collected c = {0};
    collected_reset(&c, 4096);
    struct wal_replay_report report;
    assert_int_equal(wal_replay(dir, 0, 0, NULL, false, false, collect, &c, &report), 0);
    assert_prefix(&c, seq - 1);
    assert_false(report.torn_tail);
    free(c.seqs);
    testing_remove_tree(dir);
}

static void test_zeroed_ahead(void **state)
{
    (void)state;
    zeroed_ahead(SHOAL_SYNC_ALWAYS, false);
    zeroed_ahead(SHOAL_SYNC_NONE, false);
    zeroed_ahead(SHOAL_SYNC_PERIODIC, false);
    zeroed_ahead(SHOAL_SYNC_ALWAYS, true);
}

static void test_salvage_rewrites(void **state)
{
    (void)state;
    struct damage_fixture f;
    damage_setup(&f);
    /* Damage the third record of the first segment, then salvage for real. */
    uint64_t off = f.offsets[0][2] + WAL_RECORD_HEADER_SIZE - 1;
    f.images[0][off] ^= 0x40;
    assert_int_equal(testing_write_file(f.paths[0], f.images[0], f.sizes[0]), 0);

    struct collected c = {0};
    collected_reset(&c, 60);
    struct wal_replay_report report;
    assert_int_equal(wal_replay(f.dir, 0, 0, NULL, false, false, collect, &c, &report),
                     SHOAL_ECORRUPT);
    assert_int_equal(report.offset, f.offsets[0][2]);
    assert_true(testing_file_size(f.paths[1]) > 0); /* nothing changed without salvage */

    collected_reset(&c, 60);
    assert_int_equal(wal_replay(f.dir, 0, 0, NULL, true, false, collect, &c, &report), 0);
    assert_true(report.salvaged);
    assert_prefix(&c, 2);
    assert_int_equal(report.bytes_dropped, (f.sizes[0] - f.offsets[0][2]) + f.sizes[1]);
    assert_int_equal(testing_file_size(f.paths[0]), (long long)f.offsets[0][2]);
    assert_int_equal(testing_file_size(f.paths[1]), -1);

    /* The salvaged log is clean and can be appended to. */
    collected_reset(&c, 60);
    assert_int_equal(wal_replay(f.dir, 0, 0, NULL, false, false, collect, &c, &report), 0);
    assert_prefix(&c, 2);
    struct wal_options o = test_options(f.dir, 1, SHOAL_SYNC_ALWAYS);
    o.next_seq_hint = 3;
    struct wal *w = NULL;
    assert_int_equal(wal_open(&o, &w), 0);
    for (uint64_t seq = 3; seq <= 6; seq++) {
        uint64_t lsn;
        append_record(w, 0, seq, 60, &lsn);
        assert_int_equal(wal_wait(w, 0, lsn, SHOAL_SYNC_ALWAYS), 0);
    }
    assert_int_equal(wal_close(w), 0);
    collected_reset(&c, 60);
    assert_int_equal(wal_replay(f.dir, 0, 0, NULL, false, false, collect, &c, &report), 0);
    assert_prefix(&c, 6);
    free(c.seqs);
    damage_teardown(&f);
}

/* ------------------------------------------------------------------------------------
 * Async waits and policies.
 * ---------------------------------------------------------------------------------- */

struct async_result {
    _Atomic int calls;
    _Atomic int errors;
    _Atomic int last_error;
};

static void async_done(void *ctx, int err)
{
    struct async_result *r = ctx;
    if (err != 0) {
        atomic_fetch_add(&r->errors, 1);
        atomic_store(&r->last_error, err);
    }
    atomic_fetch_add(&r->calls, 1);
}

static void wait_for_calls(struct async_result *r, int calls)
{
    for (int i = 0; i < 100000 && atomic_load(&r->calls) < calls; i++)
        usleep(100);
}

static void test_async_waits(void **state)
{
    (void)state;
    char dir[4096];
    struct io_faults faults;
    struct wal_options o = faulty_options(dir, sizeof dir, &faults, 2, SHOAL_SYNC_PERIODIC);
    struct wal *w = NULL;
    assert_int_equal(wal_open(&o, &w), 0);

    static struct async_result result;
    atomic_init(&result.calls, 0);
    atomic_init(&result.errors, 0);
    atomic_init(&result.last_error, 0);
    const int policies[] = {SHOAL_SYNC_ALWAYS, SHOAL_SYNC_BATCH, SHOAL_SYNC_PERIODIC,
                            SHOAL_SYNC_NONE};
    int expected = 0;
    for (uint64_t seq = 1; seq <= 40; seq++) {
        uint64_t lsn;
        unsigned stream = (unsigned)(seq % 2);
        append_record(w, stream, seq, 100, &lsn);
        assert_int_equal(wal_wait_async(w, stream, lsn, policies[seq % 4], async_done, &result), 0);
        expected++;
    }
    wait_for_calls(&result, expected);
    assert_int_equal(atomic_load(&result.calls), expected);
    assert_int_equal(atomic_load(&result.errors), 0);
    assert_int_equal(wal_wait_async(w, 0, 1000, SHOAL_SYNC_ALWAYS, async_done, &result),
                     SHOAL_EINVAL);

    /* A failed sync reaches the async waiter as its error; later async waits are refused. */
    io_faults_fail(&faults, IO_OP_SYNC, 1, EIO, true);
    io_faults_reset_counts(&faults);
    uint64_t lsn;
    append_record(w, 0, 41, 100, &lsn);
    assert_int_equal(wal_wait_async(w, 0, lsn, SHOAL_SYNC_ALWAYS, async_done, &result), 0);
    expected++;
    wait_for_calls(&result, expected);
    assert_int_equal(atomic_load(&result.calls), expected);
    assert_int_equal(atomic_load(&result.errors), 1);
    assert_int_equal(atomic_load(&result.last_error), SHOAL_EFSYNC);
    assert_int_equal(wal_wait_async(w, 0, lsn, SHOAL_SYNC_ALWAYS, async_done, &result),
                     SHOAL_EFSYNC);
    assert_int_equal(wal_close(w), SHOAL_EFSYNC);
    assert_int_equal(atomic_load(&result.calls), expected);
    testing_remove_tree(dir);
}

static void test_periodic_and_batch(void **state)
{
    (void)state;
    char dir[4096];
    assert_int_equal(testing_make_dir(dir, sizeof dir, "wal"), 0);
    struct wal_options o = test_options(dir, 1, SHOAL_SYNC_PERIODIC);
    o.sync_period_ms = 5;
    struct wal *w = NULL;
    assert_int_equal(wal_open(&o, &w), 0);
    uint64_t lsn;
    append_record(w, 0, 1, 100, &lsn);
    /* No waiter: the background thread syncs it within a period or so (bounded poll). */
    struct wal_stats stats = {0};
    for (int i = 0; i < 20000 && stats.group_commits == 0; i++) {
        usleep(100);
        wal_stats(w, &stats);
    }
    assert_int_equal(stats.group_commits, 1);
    /* BATCH waits are acknowledged after a sync too. */
    for (uint64_t seq = 2; seq <= 10; seq++) {
        append_record(w, 0, seq, 100, &lsn);
        assert_int_equal(wal_wait(w, 0, lsn, SHOAL_SYNC_BATCH), 0);
    }
    wal_stats(w, &stats);
    assert_int_equal(stats.waiters_woken, 9);
    assert_int_equal(wal_close(w), 0);
    replay_contains_acked(dir, 10);
    testing_remove_tree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_preallocated),
        cmocka_unit_test(test_round_trip_growing),
        cmocka_unit_test(test_round_trip_flusher_thread),
        cmocka_unit_test(test_invalid_arguments),
        cmocka_unit_test(test_reopen_rotate_delete),
        cmocka_unit_test(test_group_commit_leader),
        cmocka_unit_test(test_group_commit_flusher_thread),
        cmocka_unit_test(test_sticky_fsync_failure),
        cmocka_unit_test(test_write_failures),
        cmocka_unit_test(test_short_write),
        cmocka_unit_test(test_torn_last_write_preallocated),
        cmocka_unit_test(test_torn_last_write_growing),
        cmocka_unit_test(test_bit_flips_everywhere),
        cmocka_unit_test(test_truncations_everywhere),
        cmocka_unit_test(test_cached_ahead),
        cmocka_unit_test(test_zeroed_ahead),
        cmocka_unit_test(test_salvage_rewrites),
        cmocka_unit_test(test_missing_segment),
        cmocka_unit_test(test_header_v2_fields),
        cmocka_unit_test(test_lost_first_segment),
        cmocka_unit_test(test_version1_segments),
        cmocka_unit_test(test_replay_edges),
        cmocka_unit_test(test_zeros_after_records),
        cmocka_unit_test(test_failed_reservation_grows),
        cmocka_unit_test(test_async_waits),
        cmocka_unit_test(test_periodic_and_batch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
