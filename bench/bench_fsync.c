/*
 * bench_fsync.c -- how fast can this disk make log records durable?
 *
 * Measures, on the file system of the directory given (default: the current directory):
 *   1. raw fdatasync/s after a small append, into a preallocated file (fallocate) and into a
 *      growing one, with 1 and 2 files synced in parallel by 1 and 2 threads;
 *   2. the log's durable appends/s (wal_append + wal_wait under SHOAL_SYNC_ALWAYS, a 100-byte
 *      record each) with 1, 4, 16 and 64 writer threads, for both group commit schemes
 *      (leader/follower and flusher thread) and 1 and 2 log streams, with the average group
 *      size (waiters woken per sync) and the average fdatasync time.
 *   3. with -DBENCH_WITH_ROCKSDB, the anchor: RocksDB puts (16-byte key, 100-byte value) with
 *      WriteOptions.sync = true from the same thread counts, in the same run.
 * Each point runs for a fixed time (default 2 s; the first argument after the directory
 * overrides it in seconds). Nothing is asserted: it prints figures.
 *
 * Build and run (from the repository root; no build target needed):
 *   gcc -O2 -std=c11 -D_GNU_SOURCE -Iinclude -Isrc bench/bench_fsync.c src/durability/wal.c \
 *       src/durability/io.c src/durability/crc32c.c -pthread -o /tmp/bench_fsync
 *   (add -DBENCH_WITH_ROCKSDB ... -lrocksdb for the RocksDB anchor)
 *   /tmp/bench_fsync [dir] [seconds]
 *   /tmp/bench_fsync dir seconds 1,16,64 [streams]    (focused: leader scheme only, default
 *                                                      2 streams, no raw figures)
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "durability/io.h"
#include "durability/wal.h"
#include "shoal.h"

#ifdef BENCH_WITH_ROCKSDB
#include <rocksdb/c.h>
#endif

static double bench_seconds = 2.0;

static double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Removes the files a run left in a directory (one level: log streams are two). */
static void bench_clean(const char *dir)
{
    char command[4200];
    snprintf(command, sizeof command, "rm -rf '%s'/log '%s'/raw-*", dir, dir);
    if (system(command) != 0)
        fprintf(stderr, "cleanup of %s failed\n", dir);
}

/* ------------------------------------------------------------------------------------
 * Raw fdatasync.
 * ---------------------------------------------------------------------------------- */

struct raw_args {
    char path[4096];
    int preallocate;
    long syncs;
};

static void *raw_run(void *arg)
{
    struct raw_args *a = arg;
    int fd = open(a->path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        perror(a->path);
        return NULL;
    }
    if (a->preallocate && fallocate(fd, 0, 0, 256 << 20) != 0)
        perror("fallocate");
    fsync(fd);
    char record[120];
    memset(record, 'r', sizeof record);
    off_t offset = 0;
    double start = bench_now();
    long syncs = 0;
    while (bench_now() - start < bench_seconds) {
        if (pwrite(fd, record, sizeof record, offset) != (ssize_t)sizeof record) {
            perror("pwrite");
            break;
        }
        offset += sizeof record;
        if (fdatasync(fd) != 0) {
            perror("fdatasync");
            break;
        }
        syncs++;
    }
    a->syncs = syncs;
    close(fd);
    unlink(a->path);
    return NULL;
}

static void raw_point(const char *dir, int preallocate, int files)
{
    pthread_t threads[8];
    struct raw_args args[8];
    for (int i = 0; i < files; i++) {
        memset(&args[i], 0, sizeof args[i]);
        snprintf(args[i].path, sizeof args[i].path, "%s/raw-%d", dir, i);
        args[i].preallocate = preallocate;
        pthread_create(&threads[i], NULL, raw_run, &args[i]);
    }
    long total = 0;
    for (int i = 0; i < files; i++) {
        pthread_join(threads[i], NULL);
        total += args[i].syncs;
    }
    printf("  %-12s %d file%s  %8.0f fdatasync/s  (%.1f us each)\n",
           preallocate ? "preallocated" : "growing", files, files > 1 ? "s" : " ",
           (double)total / bench_seconds,
           total ? bench_seconds * 1e6 * files / (double)total : 0.0);
}

/* ------------------------------------------------------------------------------------
 * The log.
 * ---------------------------------------------------------------------------------- */

struct wal_bench {
    struct wal *wal;
    unsigned streams;
    _Atomic uint64_t next_seq;
    _Atomic int stop;
    _Atomic uint64_t commits;
    _Atomic int failures;
};

struct wal_thread {
    struct wal_bench *bench;
    unsigned index;
};

static void *wal_writer(void *arg)
{
    struct wal_thread *t = arg;
    struct wal_bench *b = t->bench;
    unsigned stream = t->index % b->streams;
    uint8_t payload[100];
    memset(payload, 'p', sizeof payload);
    uint64_t commits = 0;
    while (!atomic_load_explicit(&b->stop, memory_order_relaxed)) {
        uint64_t seq = atomic_fetch_add(&b->next_seq, 1);
        uint64_t lsn;
        if (wal_append(b->wal, stream, 1, seq, payload, sizeof payload, &lsn) != 0 ||
            wal_wait(b->wal, stream, lsn, SHOAL_SYNC_ALWAYS) != 0) {
            atomic_fetch_add(&b->failures, 1);
            break;
        }
        commits++;
    }
    atomic_fetch_add(&b->commits, commits);
    return NULL;
}

static void wal_point(const char *dir, int scheme, unsigned streams, unsigned threads)
{
    bench_clean(dir);
    struct wal_bench b;
    memset(&b, 0, sizeof b);
    atomic_init(&b.next_seq, 1);
    struct wal_options o = {
        .dir = dir,
        .streams = streams,
        .sync = SHOAL_SYNC_ALWAYS,
        .group_commit = scheme,
    };
    b.streams = streams;
    int rc = wal_open(&o, &b.wal);
    if (rc != 0) {
        fprintf(stderr, "wal_open: %d\n", rc);
        exit(1);
    }
    pthread_t *ids = calloc(threads, sizeof *ids);
    struct wal_thread *args = calloc(threads, sizeof *args);
    double start = bench_now();
    for (unsigned i = 0; i < threads; i++) {
        args[i] = (struct wal_thread){.bench = &b, .index = i};
        pthread_create(&ids[i], NULL, wal_writer, &args[i]);
    }
    while (bench_now() - start < bench_seconds)
        usleep(10000);
    atomic_store(&b.stop, 1);
    for (unsigned i = 0; i < threads; i++)
        pthread_join(ids[i], NULL);
    double elapsed = bench_now() - start;
    struct wal_stats stats;
    wal_stats(b.wal, &stats);
    wal_close(b.wal);
    free(ids);
    free(args);
    uint64_t commits = atomic_load(&b.commits);
    printf("  %-8s %u stream%s %3u threads  %8.0f commits/s  group %5.1f  sync %5.1f us%s\n",
           scheme == WAL_GROUP_LEADER ? "leader" : "flusher", streams, streams > 1 ? "s" : " ",
           threads, (double)commits / elapsed,
           stats.group_commits ? (double)stats.waiters_woken / (double)stats.group_commits : 0.0,
           stats.syncs ? (double)stats.sync_ns_total / 1e3 / (double)stats.syncs : 0.0,
           atomic_load(&b.failures) ? "  (failures!)" : "");
    fflush(stdout);
}

#ifdef BENCH_WITH_ROCKSDB
struct rocks_bench {
    rocksdb_t *db;
    rocksdb_writeoptions_t *sync;
    _Atomic int stop;
    _Atomic uint64_t commits;
    _Atomic uint64_t next_key;
};

static void *rocks_writer(void *arg)
{
    struct rocks_bench *b = arg;
    char value[100];
    memset(value, 'v', sizeof value);
    uint64_t commits = 0;
    while (!atomic_load_explicit(&b->stop, memory_order_relaxed)) {
        char key[17];
        snprintf(key, sizeof key, "%016" PRIx64, atomic_fetch_add(&b->next_key, 1));
        char *error = NULL;
        rocksdb_put(b->db, b->sync, key, 16, value, sizeof value, &error);
        if (error != NULL) {
            fprintf(stderr, "rocksdb_put: %s\n", error);
            free(error);
            break;
        }
        commits++;
    }
    atomic_fetch_add(&b->commits, commits);
    return NULL;
}

static void rocks_point(const char *dir, unsigned threads)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/rocksdb", dir);
    rocksdb_options_t *options = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(options, 1);
    char *error = NULL;
    struct rocks_bench b;
    memset(&b, 0, sizeof b);
    b.db = rocksdb_open(options, path, &error);
    if (error != NULL) {
        fprintf(stderr, "rocksdb_open: %s\n", error);
        exit(1);
    }
    b.sync = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(b.sync, 1);
    pthread_t *ids = calloc(threads, sizeof *ids);
    double start = bench_now();
    for (unsigned i = 0; i < threads; i++)
        pthread_create(&ids[i], NULL, rocks_writer, &b);
    while (bench_now() - start < bench_seconds)
        usleep(10000);
    atomic_store(&b.stop, 1);
    for (unsigned i = 0; i < threads; i++)
        pthread_join(ids[i], NULL);
    double elapsed = bench_now() - start;
    rocksdb_writeoptions_destroy(b.sync);
    rocksdb_close(b.db);
    rocksdb_destroy_db(options, path, &error);
    free(error);
    rocksdb_options_destroy(options);
    free(ids);
    printf("  rocksdb  sync=true %3u threads  %8.0f commits/s\n", threads,
           (double)atomic_load(&b.commits) / elapsed);
    fflush(stdout);
}
#endif

/* The points of a focused run (third argument): the leader scheme only, with the given
 * writer counts and stream count, and no raw figures. Short focused runs of two builds,
 * alternated, are how changes to the log are compared on a shared machine. */
static int bench_focused(const char *dir, const char *threads_list, unsigned streams)
{
    char copy[256];
    snprintf(copy, sizeof copy, "%s", threads_list);
    for (char *save = NULL, *item = strtok_r(copy, ",", &save); item != NULL;
         item = strtok_r(NULL, ",", &save)) {
        unsigned threads = (unsigned)atoi(item);
        if (threads == 0 || threads > 1024) {
            fprintf(stderr, "bad writer count %s\n", item);
            return 1;
        }
        wal_point(dir, WAL_GROUP_LEADER, streams, threads);
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *parent = argc > 1 ? argv[1] : ".";
    if (argc > 2)
        bench_seconds = atof(argv[2]);
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/bench_fsync-XXXXXX", parent);
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    printf("bench_fsync: %s, %.1f s per point\n", dir, bench_seconds);
    if (argc > 3) {
        int rc = bench_focused(dir, argv[3], argc > 4 ? (unsigned)atoi(argv[4]) : 2);
        bench_clean(dir);
        rmdir(dir);
        return rc;
    }

    printf("raw fdatasync after a 120-byte append:\n");
    raw_point(dir, 1, 1);
    raw_point(dir, 0, 1);
    raw_point(dir, 1, 2);
    raw_point(dir, 0, 2);

    /* The points of one thread count run back to back, so that they see the same disk and
     * the same load from whatever else the machine runs: compare within a group. */
    const unsigned thread_counts[] = {1, 4, 16, 64};
    const unsigned stream_counts[] = {1, 2};
    printf("durable commits (log: sync ALWAYS, 100-byte records):\n");
    for (size_t t = 0; t < 4; t++) {
#ifdef BENCH_WITH_ROCKSDB
        rocks_point(dir, thread_counts[t]);
#endif
        for (int scheme = WAL_GROUP_LEADER; scheme <= WAL_GROUP_FLUSHER; scheme++)
            for (size_t s = 0; s < 2; s++)
                wal_point(dir, scheme, stream_counts[s], thread_counts[t]);
    }
    bench_clean(dir);
    rmdir(dir);
    return 0;
}
