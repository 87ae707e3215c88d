/*
 * bench_durable.c -- shoal-bench-durable: what durability costs, measured on Shoal and on
 * its anchors in the same run.
 *
 * Output: the BENCH lines of shoal-bench (docs/BENCHMARKS.md),
 *
 *     BENCH <name> shoal=<value> <anchor>=<value> ratio=<r> unit=<unit>
 *
 * each value the median of --runs runs (default 3); ratio > 1 means Shoal is better
 * (shoal/anchor for rates, anchor/shoal for times and sizes; checkpoint_p99 compares Shoal
 * with itself: idle/during). Everything else on stdout starts with '#'; progress goes to
 * stderr.
 *
 * The benchmarks:
 *   durable_commits_T  T writer threads (1, 4, 16, 64), each doing single puts of a 16-byte
 *                      key and a 100-byte value, every put acknowledged only once it is on
 *                      disk: Shoal with SHOAL_SYNC_ALWAYS, RocksDB and LevelDB with
 *                      WriteOptions.sync = true, LMDB with its default (a synced commit per
 *                      write transaction; one writer at a time by design). Against them, the
 *                      raw rate of this disk: one thread doing a 120-byte pwrite + fdatasync
 *                      into a preallocated file. Each point runs --seconds (default 1) on a
 *                      fresh database; commits/s. A "# group size" line follows: Shoal's
 *                      group_waiters / group_commits (how many commits one fdatasync made
 *                      durable).
 *   recovery_1m        a child fills a database with --keys keys (sync none): half in
 *                      batches of 1,000, then a checkpoint, then the other half as single
 *                      puts, and ends with _exit (no close: those live only in the log). A
 *                      fresh process then times shoal_open and checks every key count and
 *                      a sample of values. Redis: the same keys SET into redis-server,
 *                      SAVEd to an RDB, the server stopped and started again on that file,
 *                      timed from the start until PING answers PONG (Redis answers
 *                      -LOADING until the RDB is loaded); DBSIZE is checked. Seconds.
 *   checkpoint_p99     p99 latency of single puts (one writer, the default sync policy)
 *                      over a database of --keys keys, while shoal_checkpoint runs in
 *                      another thread, against the same number of puts just before without
 *                      it; ns.
 *   checkpoint_size    the bytes of that checkpoint's files per key, against the 116 bytes
 *                      of key and value per key (random values: incompressible).
 *
 * Invariants:
 *   1. Every engine does the same work on the same data in the same run; the engines of one
 *      point run one after another, never at the same time, each on a fresh directory
 *      under /tmp (a disk, not tmpfs, on the development machine) that is removed after.
 *   2. A figure is printed only if its work was verified: a failed put stops the point and
 *      suppresses its line; recovery checks the key count and values; Redis's DBSIZE must
 *      match. A failure makes the program exit 1.
 *   3. The run is bounded: --seconds, --runs and --keys have upper limits, and a watchdog
 *      stops the program (and a redis-server it started) after --time-limit seconds.
 *
 * How it is tested: the ctest test bench_durable_smoke runs `--quick` (small, short, every
 * engine) and expects exit 0, which the checks of invariant 2 make a correctness test.
 */
#include "bench.h"

#include "shoal.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <leveldb/c.h>
#include <lmdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <rocksdb/c.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DURABLE_MAX_RUNS 15
#define DURABLE_MAX_THREADS 64
#define DURABLE_THREAD_POINTS 4
#define DURABLE_RAW_BYTES (BENCH_KEY_SIZE + BENCH_VALUE_SIZE)
#define DURABLE_SEED 0xD0AB1Eull

static const unsigned durable_thread_counts[DURABLE_THREAD_POINTS] = {1, 4, 16, 64};

/* ---- settings ------------------------------------------------------------------------------ */

enum durable_engine { ENGINE_SHOAL, ENGINE_ROCKSDB, ENGINE_LEVELDB, ENGINE_LMDB, ENGINE_COUNT };

static const char *const durable_engine_names[ENGINE_COUNT] = {"shoal", "rocksdb", "leveldb",
                                                               "lmdb"};

typedef struct durable_settings {
    unsigned runs;
    double seconds;
    size_t keys;
    bool commits, recovery, checkpoint;
    bool anchors[ENGINE_COUNT]; /* ENGINE_SHOAL is always on */
    bool redis;
    unsigned time_limit;
    unsigned log_streams; /* Shoal's SHOAL_OPT_LOG_STREAMS; 0: the engine's default */
} durable_settings;

/* The log streams Shoal opens with (--log-streams); 0 keeps the engine's default. */
static unsigned durable_log_streams;

/* ---- small helpers ----------------------------------------------------------------------------
 */

static void durable_put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

/* A distinct key per (thread, index): the first 8 bytes mix both (a bijection), the last 8
 * are the index. */
static void durable_commit_key(uint8_t *key, unsigned thread, uint64_t i)
{
    durable_put_u64(key, bench_mix(((uint64_t)thread << 48) ^ i));
    durable_put_u64(key + 8, i);
}

static int durable_compare_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The median of n values (n >= 1); sorts them. */
static double durable_median(double *values, unsigned n)
{
    qsort(values, n, sizeof *values, durable_compare_double);
    return n % 2 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

static void durable_sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- durable commits: the driver
 * ------------------------------------------------------------------ */

/* One engine's side of the commit benchmark: put must make one key durable before it
 * returns (0, or -1 after saying why). */
typedef struct durable_writers {
    int (*put)(void *ctx, const uint8_t *key, const uint8_t *value);
    void *ctx;
    unsigned threads;
    pthread_barrier_t start;
    _Atomic int stop;
    _Atomic int failed;
    uint64_t commits[DURABLE_MAX_THREADS];
} durable_writers;

typedef struct durable_writer_arg {
    durable_writers *w;
    unsigned thread;
} durable_writer_arg;

static uint8_t durable_commit_value[BENCH_VALUE_SIZE];

static void *durable_writer_main(void *arg)
{
    durable_writer_arg *a = arg;
    durable_writers *w = a->w;
    uint8_t key[BENCH_KEY_SIZE];
    uint64_t i = 0;
    pthread_barrier_wait(&w->start);
    while (!atomic_load_explicit(&w->stop, memory_order_relaxed)) {
        durable_commit_key(key, a->thread, i);
        if (w->put(w->ctx, key, durable_commit_value) != 0) {
            atomic_store(&w->failed, 1);
            break;
        }
        i++;
    }
    w->commits[a->thread] = i;
    return NULL;
}

/* Runs threads writers for seconds; returns commits/s, or -1 when a put failed. */
/* CPU time of the whole process (every thread, user and system), in microseconds. */
static double durable_process_cpu_us(void)
{
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return (double)(u.ru_utime.tv_sec + u.ru_stime.tv_sec) * 1e6 +
           (double)(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

/* The process CPU per commit of the last durable_drive, in microseconds (engine threads
 * included: each point runs alone in this process). Steadier than commits/s on a shared
 * machine, where the disk's speed moves from one minute to the next. */
static double durable_last_cpu_per_commit;

static double durable_drive(int (*put)(void *, const uint8_t *, const uint8_t *), void *ctx,
                            unsigned threads, double seconds)
{
    durable_writers w;
    memset(&w, 0, sizeof w);
    w.put = put;
    w.ctx = ctx;
    w.threads = threads;
    pthread_barrier_init(&w.start, NULL, threads + 1);
    pthread_t ids[DURABLE_MAX_THREADS];
    durable_writer_arg args[DURABLE_MAX_THREADS];
    unsigned started = 0;
    for (; started < threads; started++) {
        args[started] = (durable_writer_arg){&w, started};
        if (pthread_create(&ids[started], NULL, durable_writer_main, &args[started]) != 0)
            break;
    }
    if (started < threads) {
        /* Release the ones that started: they pass the barrier only if all arrive. */
        fprintf(stderr, "# cannot start %u threads\n", threads);
        abort();
    }
    pthread_barrier_wait(&w.start);
    double cpu_begin = durable_process_cpu_us();
    uint64_t begin = bench_now_ns();
    while (bench_now_ns() - begin < (uint64_t)(seconds * 1e9) && !atomic_load(&w.failed))
        durable_sleep_ms(10);
    atomic_store(&w.stop, 1);
    for (unsigned i = 0; i < threads; i++)
        pthread_join(ids[i], NULL);
    uint64_t elapsed = bench_now_ns() - begin;
    double cpu = durable_process_cpu_us() - cpu_begin;
    pthread_barrier_destroy(&w.start);
    if (atomic_load(&w.failed))
        return -1;
    uint64_t total = 0;
    for (unsigned i = 0; i < threads; i++)
        total += w.commits[i];
    durable_last_cpu_per_commit = total ? cpu / (double)total : 0;
    return (double)total / ((double)elapsed / 1e9);
}

/* ---- durable commits: the engines
 * ------------------------------------------------------------------ */

typedef struct durable_shoal {
    shoal_db *db;
    shoal_ns *ns;
} durable_shoal;

static int durable_shoal_put(void *ctx, const uint8_t *key, const uint8_t *value)
{
    durable_shoal *s = ctx;
    int rc = shoal_put(s->ns, key, BENCH_KEY_SIZE, value, BENCH_VALUE_SIZE, NULL);
    if (rc != 0)
        fprintf(stderr, "# shoal: put: %s\n", shoal_strerror(rc));
    return rc == 0 ? 0 : -1;
}

/* Opens a durable database in dir with sync policy sync and a huge checkpoint threshold
 * (so no background checkpoint runs during a measurement), and a spread namespace. */
static int durable_shoal_open(const char *dir, shoal_sync sync, durable_shoal *s)
{
    shoal_options *opts;
    int rc = shoal_options_new(&opts);
    if (rc == 0)
        rc = shoal_options_set(opts, SHOAL_OPT_SYNC, sync);
    if (rc == 0)
        rc = shoal_options_set(opts, SHOAL_OPT_CHECKPOINT_LOG_BYTES, 1ull << 40);
    if (rc == 0 && durable_log_streams)
        rc = shoal_options_set(opts, SHOAL_OPT_LOG_STREAMS, durable_log_streams);
    if (rc == 0)
        rc = shoal_open(dir, opts, &s->db);
    shoal_options_free(opts);
    if (rc != 0) {
        fprintf(stderr, "# shoal: open %s: %s %s\n", dir, shoal_strerror(rc), shoal_error_detail());
        return -1;
    }
    shoal_ns_config cfg = {.kind = SHOAL_KIND_KV, .placement = SHOAL_PLACE_SPREAD};
    rc = shoal_ns_open(s->db, "bench", &cfg, &s->ns);
    if (rc != 0) {
        fprintf(stderr, "# shoal: ns_open: %s\n", shoal_strerror(rc));
        shoal_close(s->db);
        return -1;
    }
    return 0;
}

static void durable_shoal_close(durable_shoal *s)
{
    shoal_ns_close(s->ns);
    int rc = shoal_close(s->db);
    if (rc != 0)
        fprintf(stderr, "# shoal: close: %s\n", shoal_strerror(rc));
}

static double durable_commits_shoal(const char *dir, unsigned threads, double seconds,
                                    double *group_size)
{
    durable_shoal s;
    if (durable_shoal_open(dir, SHOAL_SYNC_ALWAYS, &s) != 0)
        return -1;
    double rate = durable_drive(durable_shoal_put, &s, threads, seconds);
    shoal_db_stats stats;
    if (shoal_stats(s.db, &stats) == 0 && stats.group_commits)
        *group_size = (double)stats.group_waiters / (double)stats.group_commits;
    durable_shoal_close(&s);
    return rate;
}

typedef struct durable_rocksdb {
    rocksdb_t *db;
    rocksdb_writeoptions_t *sync;
} durable_rocksdb;

static int durable_rocksdb_put(void *ctx, const uint8_t *key, const uint8_t *value)
{
    durable_rocksdb *r = ctx;
    char *error = NULL;
    rocksdb_put(r->db, r->sync, (const char *)key, BENCH_KEY_SIZE, (const char *)value,
                BENCH_VALUE_SIZE, &error);
    if (error) {
        fprintf(stderr, "# rocksdb: put: %s\n", error);
        rocksdb_free(error);
        return -1;
    }
    return 0;
}

/* RocksDB's defaults (create_if_missing) with sync writes: its write group commit batches
 * the writers that wait together, as Shoal's does. */
static double durable_commits_rocksdb(const char *dir, unsigned threads, double seconds)
{
    rocksdb_options_t *options = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(options, 1);
    char *error = NULL;
    durable_rocksdb r = {.db = rocksdb_open(options, dir, &error)};
    double rate = -1;
    if (error) {
        fprintf(stderr, "# rocksdb: open: %s\n", error);
        rocksdb_free(error);
    } else {
        r.sync = rocksdb_writeoptions_create();
        rocksdb_writeoptions_set_sync(r.sync, 1);
        rate = durable_drive(durable_rocksdb_put, &r, threads, seconds);
        rocksdb_writeoptions_destroy(r.sync);
        rocksdb_close(r.db);
    }
    rocksdb_options_destroy(options);
    return rate;
}

typedef struct durable_leveldb {
    leveldb_t *db;
    leveldb_writeoptions_t *sync;
} durable_leveldb;

static int durable_leveldb_put(void *ctx, const uint8_t *key, const uint8_t *value)
{
    durable_leveldb *l = ctx;
    char *error = NULL;
    leveldb_put(l->db, l->sync, (const char *)key, BENCH_KEY_SIZE, (const char *)value,
                BENCH_VALUE_SIZE, &error);
    if (error) {
        fprintf(stderr, "# leveldb: put: %s\n", error);
        leveldb_free(error);
        return -1;
    }
    return 0;
}

static double durable_commits_leveldb(const char *dir, unsigned threads, double seconds)
{
    leveldb_options_t *options = leveldb_options_create();
    leveldb_options_set_create_if_missing(options, 1);
    char *error = NULL;
    durable_leveldb l = {.db = leveldb_open(options, dir, &error)};
    double rate = -1;
    if (error) {
        fprintf(stderr, "# leveldb: open: %s\n", error);
        leveldb_free(error);
    } else {
        l.sync = leveldb_writeoptions_create();
        leveldb_writeoptions_set_sync(l.sync, 1);
        rate = durable_drive(durable_leveldb_put, &l, threads, seconds);
        leveldb_writeoptions_destroy(l.sync);
        leveldb_close(l.db);
    }
    leveldb_options_destroy(options);
    return rate;
}

typedef struct durable_lmdb {
    MDB_env *env;
    MDB_dbi dbi;
} durable_lmdb;

static int durable_lmdb_put(void *ctx, const uint8_t *key, const uint8_t *value)
{
    durable_lmdb *l = ctx;
    MDB_txn *txn;
    int rc = mdb_txn_begin(l->env, NULL, 0, &txn);
    if (rc == 0) {
        MDB_val k = {BENCH_KEY_SIZE, (void *)key}, v = {BENCH_VALUE_SIZE, (void *)value};
        rc = mdb_put(txn, l->dbi, &k, &v, 0);
        if (rc == 0)
            rc = mdb_txn_commit(txn);
        else
            mdb_txn_abort(txn);
    }
    if (rc != 0)
        fprintf(stderr, "# lmdb: put: %s\n", mdb_strerror(rc));
    return rc == 0 ? 0 : -1;
}

/* LMDB with its default flags: every write transaction's commit syncs before it returns. */
static double durable_commits_lmdb(const char *dir, unsigned threads, double seconds)
{
    durable_lmdb l = {0};
    int rc = mdb_env_create(&l.env);
    if (rc == 0)
        rc = mdb_env_set_mapsize(l.env, (size_t)4 << 30);
    if (rc == 0)
        rc = mdb_env_open(l.env, dir, 0, 0644);
    MDB_txn *txn = NULL;
    if (rc == 0)
        rc = mdb_txn_begin(l.env, NULL, 0, &txn);
    if (rc == 0) {
        rc = mdb_dbi_open(txn, NULL, 0, &l.dbi);
        if (rc == 0)
            rc = mdb_txn_commit(txn);
        else
            mdb_txn_abort(txn);
    }
    double rate = -1;
    if (rc != 0)
        fprintf(stderr, "# lmdb: open: %s\n", mdb_strerror(rc));
    else
        rate = durable_drive(durable_lmdb_put, &l, threads, seconds);
    if (l.env)
        mdb_env_close(l.env);
    return rate;
}

/* The disk's own rate: one thread, a 120-byte pwrite and an fdatasync, into a preallocated
 * file (so each sync writes data only, as a log segment's do). */
static double durable_raw_fdatasync(const char *dir, double seconds)
{
    char path[256];
    snprintf(path, sizeof path, "%s/raw", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        fprintf(stderr, "# raw: open %s: %s\n", path, strerror(errno));
        return -1;
    }
    double rate = -1;
    if (fallocate(fd, 0, 0, 256 << 20) != 0 || fsync(fd) != 0) {
        fprintf(stderr, "# raw: fallocate: %s\n", strerror(errno));
    } else {
        uint8_t record[120];
        memset(record, 'r', sizeof record);
        uint64_t syncs = 0, offset = 0, begin = bench_now_ns(), elapsed = 0;
        bool failed = false;
        while ((elapsed = bench_now_ns() - begin) < (uint64_t)(seconds * 1e9)) {
            if (pwrite(fd, record, sizeof record, (off_t)offset) != (ssize_t)sizeof record ||
                fdatasync(fd) != 0) {
                fprintf(stderr, "# raw: %s\n", strerror(errno));
                failed = true;
                break;
            }
            offset += sizeof record;
            syncs++;
        }
        if (!failed)
            rate = (double)syncs / ((double)elapsed / 1e9);
    }
    close(fd);
    unlink(path);
    return rate;
}

/* One point: a fresh directory, the engine, the directory removed. */
static double durable_commits_point(enum durable_engine e, unsigned threads, double seconds,
                                    double *group_size)
{
    char dir[64];
    if (bench_temp_dir(dir, sizeof dir) != 0)
        return -1;
    double rate = -1;
    switch (e) {
    case ENGINE_SHOAL:
        rate = durable_commits_shoal(dir, threads, seconds, group_size);
        break;
    case ENGINE_ROCKSDB:
        rate = durable_commits_rocksdb(dir, threads, seconds);
        break;
    case ENGINE_LEVELDB:
        rate = durable_commits_leveldb(dir, threads, seconds);
        break;
    default:
        rate = durable_commits_lmdb(dir, threads, seconds);
        break;
    }
    bench_remove_tree(dir);
    return rate;
}

/* ---- recovery ------------------------------------------------------------------------------- */

/* Child: fills dir (see the essay), then _exit without closing. Exit 0 on success. */
static void durable_recovery_fill(const char *dir, const bench_dataset *d)
{
    durable_shoal s;
    if (durable_shoal_open(dir, SHOAL_SYNC_NONE, &s) != 0)
        _exit(1);
    size_t half = d->count / 2;
    shoal_batch *batch;
    int rc = shoal_batch_new(s.db, &batch);
    for (size_t i = 0; rc == 0 && i < half;) {
        size_t stop = half - i > 1000 ? i + 1000 : half;
        for (; rc == 0 && i < stop; i++)
            rc = shoal_batch_put(batch, s.ns, bench_key(d, i), BENCH_KEY_SIZE, bench_value(d, i),
                                 BENCH_VALUE_SIZE);
        if (rc == 0)
            rc = shoal_batch_commit(batch, NULL, NULL);
        shoal_batch_clear(batch);
    }
    shoal_batch_free(batch);
    if (rc == 0)
        rc = shoal_checkpoint(s.db);
    /* The last 1,000 puts wait until their records are handed to write(2) (they touch every
     * shard, so every stream): what was appended before them is in the files then, and
     * survives the _exit below. */
    shoal_write_options written = {.sync = SHOAL_SYNC_PERIODIC};
    for (size_t i = half; rc == 0 && i < d->count; i++)
        rc = shoal_put(s.ns, bench_key(d, i), BENCH_KEY_SIZE, bench_value(d, i), BENCH_VALUE_SIZE,
                       d->count - i <= 1000 ? &written : NULL);
    if (rc != 0) {
        fprintf(stderr, "# recovery fill: %s\n", shoal_strerror(rc));
        _exit(1);
    }
    _exit(0);
}

typedef struct durable_recovery_result {
    double seconds;
    uint64_t keys, recovered_keys, recovered_records, wrong;
    int status;
} durable_recovery_result;

/* Child: times shoal_open of dir, then checks the keys; writes the result to fd. */
static void durable_recovery_open(const char *dir, const bench_dataset *d, int fd)
{
    durable_recovery_result r = {.status = -1};
    uint64_t begin = bench_now_ns();
    shoal_db *db;
    int rc = shoal_open(dir, NULL, &db);
    r.seconds = (double)(bench_now_ns() - begin) / 1e9;
    shoal_db_stats stats;
    if (rc == 0 && shoal_stats(db, &stats) == 0) {
        r.keys = stats.keys;
        r.recovered_keys = stats.recovered_keys;
        r.recovered_records = stats.recovered_records;
        shoal_ns *ns;
        if (shoal_ns_open(db, "bench", NULL, &ns) == 0) {
            uint8_t value[BENCH_VALUE_SIZE + 1];
            for (size_t i = 0; i < d->count; i += 997) {
                size_t vlen = 0;
                if (shoal_get_into(ns, NULL, bench_key(d, i), BENCH_KEY_SIZE, value, sizeof value,
                                   &vlen) != 0 ||
                    vlen != BENCH_VALUE_SIZE ||
                    memcmp(value, bench_value(d, i), BENCH_VALUE_SIZE) != 0)
                    r.wrong++;
            }
            r.status = 0;
        }
    } else {
        fprintf(stderr, "# recovery: open: %s %s\n", shoal_strerror(rc), shoal_error_detail());
    }
    ssize_t ignored = write(fd, &r, sizeof r);
    (void)ignored;
    _exit(0); /* no close: a closing checkpoint is not part of the measurement */
}

static int durable_wait_child(pid_t pid)
{
    int status = 0;
    if (waitpid(pid, &status, 0) != pid)
        return -1;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

/* One recovery run of Shoal; *seconds is the time of shoal_open. */
static int durable_recovery_shoal(const bench_dataset *d, double *seconds)
{
    char dir[64];
    if (bench_temp_dir(dir, sizeof dir) != 0)
        return -1;
    int result = -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0)
        durable_recovery_fill(dir, d);
    if (pid > 0 && durable_wait_child(pid) == 0) {
        int fds[2];
        if (pipe(fds) == 0) {
            pid = fork();
            if (pid == 0) {
                close(fds[0]);
                durable_recovery_open(dir, d, fds[1]);
            }
            close(fds[1]);
            durable_recovery_result r;
            bool got = pid > 0 && read(fds[0], &r, sizeof r) == (ssize_t)sizeof r;
            close(fds[0]);
            if (pid > 0)
                durable_wait_child(pid);
            if (!got || r.status != 0) {
                fprintf(stderr, "# recovery: the timing process failed\n");
            } else if (r.keys != d->count || r.wrong) {
                fprintf(stderr,
                        "# recovery: %llu keys after open (expected %zu), %llu of the "
                        "sampled values wrong\n",
                        (unsigned long long)r.keys, d->count, (unsigned long long)r.wrong);
            } else {
                fprintf(stderr,
                        "# recovery: shoal_open %.3f s: %llu keys from the checkpoint, %llu "
                        "log records replayed\n",
                        r.seconds, (unsigned long long)r.recovered_keys,
                        (unsigned long long)r.recovered_records);
                *seconds = r.seconds;
                result = 0;
            }
        }
    } else {
        fprintf(stderr, "# recovery: the filling process failed\n");
    }
    bench_remove_tree(dir);
    return result;
}

/* ---- Redis: an RDB of the same keys, loaded at start ----------------------------------------- */

static int durable_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in address;
    memset(&address, 0, sizeof address);
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof address;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&address, sizeof address) == 0 &&
        getsockname(fd, (struct sockaddr *)&address, &length) == 0)
        port = ntohs(address.sin_port);
    close(fd);
    return port;
}

/* Starts redis-server in dir on port, with no automatic saving and no AOF; it loads
 * dir/dump.rdb if there is one. Returns the pid or -1. */
static pid_t durable_redis_start(const char *dir, int port)
{
    char port_text[16], log_path[128];
    snprintf(port_text, sizeof port_text, "%d", port);
    snprintf(log_path, sizeof log_path, "%s/redis.log", dir);
    pid_t pid = fork();
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDWR);
        if (devnull >= 0) {
            dup2(devnull, STDIN_FILENO);
            dup2(devnull, STDOUT_FILENO);
        }
        char *argv[] = {"redis-server", "--port", port_text,      "--bind",       "127.0.0.1",
                        "--save",       "",       "--appendonly", "no",           "--daemonize",
                        "no",           "--dir",  (char *)dir,    "--dbfilename", "dump.rdb",
                        "--logfile",    log_path, "--loglevel",   "warning",      NULL};
        execvp("redis-server", argv);
        _exit(127);
    }
    if (pid > 0)
        bench_set_child(pid);
    return pid;
}

static void durable_redis_stop(pid_t pid)
{
    if (pid <= 0)
        return;
    if (waitpid(pid, NULL, WNOHANG) == 0) {
        kill(pid, SIGTERM);
        int i = 0;
        for (; i < 500 && waitpid(pid, NULL, WNOHANG) == 0; i++)
            durable_sleep_ms(10);
        if (i == 500) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
        }
    }
    bench_set_child(0);
}

/* Polls (every millisecond, at most 60 s) until PING answers PONG; returns the connection
 * or NULL. While Redis loads its RDB it answers -LOADING. */
static redisContext *durable_redis_ready(pid_t pid, int port)
{
    uint64_t begin = bench_now_ns();
    redisContext *c = NULL;
    while (bench_now_ns() - begin < 60000000000ull) {
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            bench_set_child(0);
            fprintf(stderr, "# redis: redis-server exited at start\n");
            return NULL;
        }
        if (!c) {
            struct timeval timeout = {5, 0};
            c = redisConnectWithTimeout("127.0.0.1", port, timeout);
            if (c && c->err) {
                redisFree(c);
                c = NULL;
            }
        }
        if (c) {
            redisReply *reply = redisCommand(c, "PING");
            bool pong =
                reply && reply->type == REDIS_REPLY_STATUS && strcmp(reply->str, "PONG") == 0;
            if (reply)
                freeReplyObject(reply);
            if (pong)
                return c;
            if (!reply) {
                redisFree(c);
                c = NULL;
            }
        }
        durable_sleep_ms(1);
    }
    if (c)
        redisFree(c);
    fprintf(stderr, "# redis: no PONG on port %d within 60 s\n", port);
    return NULL;
}

static long long durable_redis_integer(redisContext *c, const char *command)
{
    redisReply *reply = redisCommand(c, command);
    long long v = -1;
    if (reply && reply->type == REDIS_REPLY_INTEGER)
        v = reply->integer;
    if (reply && reply->type == REDIS_REPLY_STATUS && strcmp(reply->str, "OK") == 0)
        v = 0;
    if (reply)
        freeReplyObject(reply);
    return v;
}

static int durable_redis_fill(redisContext *c, const bench_dataset *d)
{
    for (size_t i = 0; i < d->count;) {
        size_t stop = d->count - i > 1000 ? i + 1000 : d->count;
        size_t sent = 0;
        for (size_t j = i; j < stop; j++, sent++)
            if (redisAppendCommand(c, "SET %b %b", bench_key(d, j), (size_t)BENCH_KEY_SIZE,
                                   bench_value(d, j), (size_t)BENCH_VALUE_SIZE) != REDIS_OK)
                return -1;
        for (size_t j = 0; j < sent; j++) {
            redisReply *reply = NULL;
            if (redisGetReply(c, (void **)&reply) != REDIS_OK || !reply)
                return -1;
            bool ok = reply->type == REDIS_REPLY_STATUS;
            freeReplyObject(reply);
            if (!ok)
                return -1;
        }
        i = stop;
    }
    return 0;
}

/* One recovery run of Redis; *seconds from the restart to the first PONG. Returns 0, -1, or
 * 1 when redis-server is not installed. */
static int durable_recovery_redis(const bench_dataset *d, double *seconds)
{
    if (system("command -v redis-server >/dev/null 2>&1") != 0) {
        fprintf(stderr, "# redis: redis-server is not installed; skipping\n");
        return 1;
    }
    char dir[64];
    if (bench_temp_dir(dir, sizeof dir) != 0)
        return -1;
    int result = -1;
    int port = durable_free_port();
    pid_t pid = port > 0 ? durable_redis_start(dir, port) : -1;
    redisContext *c = pid > 0 ? durable_redis_ready(pid, port) : NULL;
    bool saved = false;
    if (c) {
        if (durable_redis_fill(c, d) != 0)
            fprintf(stderr, "# redis: fill failed: %s\n", c->errstr);
        else if (durable_redis_integer(c, "SAVE") != 0)
            fprintf(stderr, "# redis: SAVE failed\n");
        else
            saved = true;
        redisFree(c);
    }
    durable_redis_stop(pid);
    if (saved) {
        port = durable_free_port();
        uint64_t begin = bench_now_ns();
        pid = port > 0 ? durable_redis_start(dir, port) : -1;
        c = pid > 0 ? durable_redis_ready(pid, port) : NULL;
        double elapsed = (double)(bench_now_ns() - begin) / 1e9;
        if (c) {
            long long keys = durable_redis_integer(c, "DBSIZE");
            if (keys != (long long)d->count) {
                fprintf(stderr, "# redis: DBSIZE %lld after the restart, expected %zu\n", keys,
                        d->count);
            } else {
                fprintf(stderr, "# redis: restart to PONG %.3f s with %lld keys from the RDB\n",
                        elapsed, keys);
                *seconds = elapsed;
                result = 0;
            }
            redisFree(c);
        }
        durable_redis_stop(pid);
    }
    bench_remove_tree(dir);
    return result;
}

/* ---- checkpoint latency and size ------------------------------------------------------------- */

static int durable_compare_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The latency at fraction q of the sorted array. */
static double durable_quantile(const uint64_t *sorted, size_t n, double q)
{
    size_t index = (size_t)((double)n * q);
    return (double)sorted[index < n ? index : n - 1];
}

/* Sorts latencies and returns their p99. */
static double durable_p99(uint64_t *latencies, size_t n)
{
    qsort(latencies, n, sizeof *latencies, durable_compare_u64);
    return durable_quantile(latencies, n, 0.99);
}

typedef struct durable_checkpointer {
    shoal_db *db;
    _Atomic int done;
    int rc;
} durable_checkpointer;

static void *durable_checkpointer_main(void *arg)
{
    durable_checkpointer *c = arg;
    c->rc = shoal_checkpoint(c->db);
    atomic_store(&c->done, 1);
    return NULL;
}

/* Times n overwrites of random keys of d (from *state) into lat; returns 0 or -1. */
static int durable_timed_puts(durable_shoal *s, const bench_dataset *d, uint64_t *state,
                              uint64_t *lat, size_t n, const _Atomic int *until_done)
{
    for (size_t i = 0; i < n; i++) {
        if (until_done && atomic_load_explicit(until_done, memory_order_relaxed))
            return (int)i;
        *state += 0x9E3779B97F4A7C15ull;
        size_t k = (size_t)(bench_mix(*state) % d->count);
        uint64_t begin = bench_now_ns();
        int rc = shoal_put(s->ns, bench_key(d, k), BENCH_KEY_SIZE, bench_value(d, k),
                           BENCH_VALUE_SIZE, NULL);
        lat[i] = bench_now_ns() - begin;
        if (rc != 0) {
            fprintf(stderr, "# checkpoint: put: %s\n", shoal_strerror(rc));
            return -1;
        }
    }
    return (int)n;
}

/* Sums the sizes of the files in dir/ckpt/<the only checkpoint>. */
static uint64_t durable_checkpoint_bytes(const char *dir, uint64_t seq)
{
    char path[256];
    snprintf(path, sizeof path, "%s/ckpt/%020llu", dir, (unsigned long long)seq);
    DIR *listing = opendir(path);
    if (!listing)
        return 0;
    uint64_t total = 0;
    struct dirent *e;
    while ((e = readdir(listing)) != NULL) {
        char file[512];
        struct stat st;
        snprintf(file, sizeof file, "%s/%s", path, e->d_name);
        if (e->d_name[0] != '.' && stat(file, &st) == 0 && S_ISREG(st.st_mode))
            total += (uint64_t)st.st_size;
    }
    closedir(listing);
    return total;
}

/* One run: fill, puts without a checkpoint, puts while one runs, its size. */
static int durable_checkpoint_run(const bench_dataset *d, double *p99_during, double *p99_idle,
                                  double *bytes_per_key, double *checkpoint_seconds)
{
    char dir[64];
    if (bench_temp_dir(dir, sizeof dir) != 0)
        return -1;
    durable_shoal s;
    if (durable_shoal_open(dir, SHOAL_SYNC_PERIODIC, &s) != 0) {
        bench_remove_tree(dir);
        return -1;
    }
    int result = -1;
    size_t cap = 4u << 20;
    uint64_t *during = malloc(cap * sizeof *during), *idle = malloc(cap * sizeof *idle);
    shoal_batch *batch = NULL;
    int rc = during && idle ? shoal_batch_new(s.db, &batch) : SHOAL_ENOMEM;
    shoal_write_options quick = {.sync = SHOAL_SYNC_NONE};
    for (size_t i = 0; rc == 0 && i < d->count;) {
        size_t stop = d->count - i > 1000 ? i + 1000 : d->count;
        for (; rc == 0 && i < stop; i++)
            rc = shoal_batch_put(batch, s.ns, bench_key(d, i), BENCH_KEY_SIZE, bench_value(d, i),
                                 BENCH_VALUE_SIZE);
        if (rc == 0)
            rc = shoal_batch_commit(batch, &quick, NULL);
        shoal_batch_clear(batch);
    }
    shoal_batch_free(batch);
    if (rc != 0) {
        fprintf(stderr, "# checkpoint: fill: %s\n", shoal_strerror(rc));
        goto out;
    }
    uint64_t state = DURABLE_SEED ^ bench_now_ns();
    /* During: as many puts as the checkpoint lasts. */
    durable_checkpointer c = {.db = s.db};
    pthread_t thread;
    uint64_t begin = bench_now_ns();
    if (pthread_create(&thread, NULL, durable_checkpointer_main, &c) != 0)
        goto out;
    int n_during = durable_timed_puts(&s, d, &state, during, cap, &c.done);
    pthread_join(thread, NULL);
    *checkpoint_seconds = (double)(bench_now_ns() - begin) / 1e9;
    if (n_during <= 0 || c.rc != 0) {
        fprintf(stderr, "# checkpoint: %s (%d puts during it)\n", shoal_strerror(c.rc), n_during);
        goto out;
    }
    /* Idle: the same number of puts right after, with nothing else running. */
    int n_idle = durable_timed_puts(&s, d, &state, idle, (size_t)n_during, NULL);
    if (n_idle != n_during)
        goto out;
    shoal_db_stats stats;
    if (shoal_stats(s.db, &stats) != 0 || stats.keys != d->count) {
        fprintf(stderr, "# checkpoint: %llu keys, expected %zu\n", (unsigned long long)stats.keys,
                d->count);
        goto out;
    }
    uint64_t bytes = durable_checkpoint_bytes(dir, stats.checkpoint_seq);
    if (bytes == 0) {
        fprintf(stderr, "# checkpoint: no checkpoint files found\n");
        goto out;
    }
    *bytes_per_key = (double)bytes / (double)d->count;
    *p99_during = durable_p99(during, (size_t)n_during);
    *p99_idle = durable_p99(idle, (size_t)n_idle);
    fprintf(stderr,
            "# checkpoint: %.3f s, %d puts during it (p50 %.0f, p90 %.0f, p99 %.0f ns), "
            "%d without (p50 %.0f, p90 %.0f, p99 %.0f ns), %.1f bytes/key\n",
            *checkpoint_seconds, n_during, durable_quantile(during, (size_t)n_during, 0.5),
            durable_quantile(during, (size_t)n_during, 0.9), *p99_during, n_idle,
            durable_quantile(idle, (size_t)n_idle, 0.5),
            durable_quantile(idle, (size_t)n_idle, 0.9), *p99_idle, *bytes_per_key);
    result = 0;
out:
    free(during);
    free(idle);
    durable_shoal_close(&s);
    bench_remove_tree(dir);
    return result;
}

/* ---- output --------------------------------------------------------------------------------- */

static void durable_line(const char *name, double ours, const char *anchor, double theirs,
                         bool higher_is_better, const char *format, const char *unit)
{
    char a[64], b[64];
    snprintf(a, sizeof a, format, ours);
    snprintf(b, sizeof b, format, theirs);
    double ratio = higher_is_better ? ours / theirs : theirs / ours;
    printf("BENCH %s shoal=%s %s=%s ratio=%.2f unit=%s\n", name, a, anchor, b, ratio, unit);
    fflush(stdout);
}

/* ---- the benchmarks ---------------------------------------------------------------------------
 */

static int durable_run_commits(const durable_settings *s)
{
    double rates[ENGINE_COUNT][DURABLE_THREAD_POINTS][DURABLE_MAX_RUNS];
    double groups[DURABLE_THREAD_POINTS][DURABLE_MAX_RUNS];
    double cpus[ENGINE_COUNT][DURABLE_THREAD_POINTS][DURABLE_MAX_RUNS];
    double raw[DURABLE_MAX_RUNS];
    unsigned done[ENGINE_COUNT][DURABLE_THREAD_POINTS] = {{0}}, raw_done = 0;
    int failures = 0;
    for (unsigned run = 0; run < s->runs; run++) {
        char dir[64];
        if (bench_temp_dir(dir, sizeof dir) == 0) {
            double rate = durable_raw_fdatasync(dir, s->seconds);
            bench_remove_tree(dir);
            if (rate > 0)
                raw[raw_done++] = rate;
            fprintf(stderr, "# run %u: raw fdatasync %.0f/s\n", run + 1, rate);
        }
        /* The engines of one thread count run back to back, so they see the same load. */
        for (unsigned t = 0; t < DURABLE_THREAD_POINTS; t++) {
            for (int e = 0; e < ENGINE_COUNT; e++) {
                if (!s->anchors[e])
                    continue;
                double group = 0;
                double rate = durable_commits_point((enum durable_engine)e,
                                                    durable_thread_counts[t], s->seconds, &group);
                fprintf(stderr, "# run %u: %-7s %2u threads %8.0f commits/s\n", run + 1,
                        durable_engine_names[e], durable_thread_counts[t], rate);
                if (rate <= 0) {
                    failures++;
                    continue;
                }
                cpus[e][t][done[e][t]] = durable_last_cpu_per_commit;
                rates[e][t][done[e][t]++] = rate;
                if (e == ENGINE_SHOAL)
                    groups[t][done[e][t] - 1] = group;
            }
        }
    }
    double raw_median = raw_done ? durable_median(raw, raw_done) : 0;
    double best_ratio[DURABLE_THREAD_POINTS] = {0};
    for (unsigned t = 0; t < DURABLE_THREAD_POINTS; t++) {
        if (done[ENGINE_SHOAL][t] != s->runs)
            continue;
        char name[64];
        snprintf(name, sizeof name, "durable_commits_%u", durable_thread_counts[t]);
        double ours = durable_median(rates[ENGINE_SHOAL][t], s->runs);
        if (raw_done)
            durable_line(name, ours, "fdatasync", raw_median, true, "%.0f", "commits/s");
        double best = 0;
        for (int e = 1; e < ENGINE_COUNT; e++) {
            if (!s->anchors[e] || done[e][t] != s->runs)
                continue;
            double theirs = durable_median(rates[e][t], s->runs);
            durable_line(name, ours, durable_engine_names[e], theirs, true, "%.0f", "commits/s");
            if (theirs > best)
                best = theirs;
        }
        if (best > 0)
            best_ratio[t] = ours / best;
        printf("# group size at %u thread%s: %.2f commits per fdatasync (group_waiters / "
               "group_commits, median of %u runs)\n",
               durable_thread_counts[t], durable_thread_counts[t] == 1 ? "" : "s",
               durable_median(groups[t], s->runs), s->runs);
        printf("# cpu per commit at %u thread%s (process user+sys / commits, median of %u "
               "runs):",
               durable_thread_counts[t], durable_thread_counts[t] == 1 ? "" : "s", s->runs);
        for (int e = 0; e < ENGINE_COUNT; e++)
            if (s->anchors[e] && done[e][t] == s->runs)
                printf(" %s %.1f us", durable_engine_names[e], durable_median(cpus[e][t], s->runs));
        printf("\n");
    }
    if (best_ratio[0] > 0)
        printf("# target: no worse than the best anchor at 1 thread: %.2fx (%s); >= 2x at 16: "
               "%.2fx (%s); >= 2x at 64: %.2fx (%s)\n",
               best_ratio[0], best_ratio[0] >= 1 ? "met" : "not met", best_ratio[2],
               best_ratio[2] >= 2 ? "met" : "not met", best_ratio[3],
               best_ratio[3] >= 2 ? "met" : "not met");
    return failures ? -1 : 0;
}

static int durable_run_recovery(const durable_settings *s, const bench_dataset *d)
{
    double ours[DURABLE_MAX_RUNS], theirs[DURABLE_MAX_RUNS];
    unsigned ours_done = 0, theirs_done = 0;
    int failures = 0;
    bool redis = s->redis;
    for (unsigned run = 0; run < s->runs; run++) {
        if (durable_recovery_shoal(d, &ours[ours_done]) == 0)
            ours_done++;
        else
            failures++;
        if (redis) {
            int rc = durable_recovery_redis(d, &theirs[theirs_done]);
            if (rc == 0)
                theirs_done++;
            else if (rc == 1)
                redis = false;
            else
                failures++;
        }
    }
    char name[64];
    if (d->count % 1000000 == 0)
        snprintf(name, sizeof name, "recovery_%zum", d->count / 1000000);
    else
        snprintf(name, sizeof name, "recovery_%zuk", d->count / 1000);
    if (ours_done == s->runs) {
        double median = durable_median(ours, ours_done);
        if (theirs_done == s->runs)
            durable_line(name, median, "redis", durable_median(theirs, theirs_done), false, "%.3f",
                         "s");
        else
            printf("# %s shoal=%.3f s (no Redis figure)\n", name, median);
        printf("# target: recovery under 0.5 s: %.3f s (%s)\n", median,
               median < 0.5 ? "met" : "not met");
    }
    return failures ? -1 : 0;
}

static int durable_run_checkpoint(const durable_settings *s, const bench_dataset *d)
{
    double during[DURABLE_MAX_RUNS], idle[DURABLE_MAX_RUNS], size[DURABLE_MAX_RUNS],
        seconds[DURABLE_MAX_RUNS];
    unsigned done = 0;
    for (unsigned run = 0; run < s->runs; run++)
        if (durable_checkpoint_run(d, &during[done], &idle[done], &size[done], &seconds[done]) == 0)
            done++;
    if (done != s->runs)
        return -1;
    double p99_during = durable_median(during, done), p99_idle = durable_median(idle, done);
    printf("BENCH checkpoint_p99 shoal=%.0f idle=%.0f ratio=%.2f unit=ns\n", p99_during, p99_idle,
           p99_idle / p99_during);
    printf("# target: checkpoint_p99 ratio >= 0.5: %s (checkpoint of %zu keys took %.3f s, "
           "median)\n",
           p99_idle / p99_during >= 0.5 ? "met" : "not met", d->count,
           durable_median(seconds, done));
    durable_line("checkpoint_size", durable_median(size, done), "raw", DURABLE_RAW_BYTES, false,
                 "%.1f", "bytes_per_key");
    return 0;
}

/* ---- options and main -------------------------------------------------------------------------
 */

static void durable_usage(FILE *out)
{
    fprintf(out,
            "usage: shoal-bench-durable [--quick] [--runs N] [--seconds S] [--keys N]\n"
            "                           [--only LIST] [--anchors LIST] [--time-limit S]\n"
            "  --quick         100,000 keys, 1 run, 0.3 s per commit point (a smoke run)\n"
            "  --runs N        runs per figure, the median is printed (default 3, 1..%d)\n"
            "  --seconds S     seconds per durable-commit point (default 1, 0.1..10)\n"
            "  --keys N        keys for recovery and checkpoints (default 1,000,000)\n"
            "  --only LIST     commits,recovery,checkpoint (default: all)\n"
            "  --anchors LIST  rocksdb,leveldb,lmdb,redis, or all (default) or none\n"
            "  --log-streams N Shoal's log streams (default: the engine's, one per two cores)\n"
            "  --time-limit S  stop everything after S seconds (default 900)\n",
            DURABLE_MAX_RUNS);
}

static bool durable_list_has(const char *list, const char *word)
{
    size_t n = strlen(word);
    for (const char *p = list; *p;) {
        size_t len = strcspn(p, ",");
        if (len == n && strncmp(p, word, n) == 0)
            return true;
        p += len;
        if (*p == ',')
            p++;
    }
    return false;
}

static int durable_parse(int argc, char **argv, durable_settings *s)
{
    *s = (durable_settings){.runs = 3,
                            .seconds = 1.0,
                            .keys = 1000000,
                            .commits = true,
                            .recovery = true,
                            .checkpoint = true,
                            .redis = true,
                            .time_limit = 900};
    for (int e = 0; e < ENGINE_COUNT; e++)
        s->anchors[e] = true;
    for (int i = 1; i < argc; i++) {
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            durable_usage(stdout);
            return 1;
        } else if (strcmp(argv[i], "--quick") == 0) {
            s->runs = 1;
            s->seconds = 0.3;
            s->keys = 100000;
        } else if (strcmp(argv[i], "--runs") == 0 && next) {
            unsigned long v = strtoul(next, &end, 10);
            if (*end || v < 1 || v > DURABLE_MAX_RUNS)
                return -1;
            s->runs = (unsigned)v;
            i++;
        } else if (strcmp(argv[i], "--seconds") == 0 && next) {
            double v = strtod(next, &end);
            if (*end || v < 0.1 || v > 10)
                return -1;
            s->seconds = v;
            i++;
        } else if (strcmp(argv[i], "--keys") == 0 && next) {
            unsigned long v = strtoul(next, &end, 10);
            if (*end || v < 2000 || v > 10000000)
                return -1;
            s->keys = v;
            i++;
        } else if (strcmp(argv[i], "--time-limit") == 0 && next) {
            unsigned long v = strtoul(next, &end, 10);
            if (*end || v < 10 || v > 86400)
                return -1;
            s->time_limit = (unsigned)v;
            i++;
        } else if (strcmp(argv[i], "--log-streams") == 0 && next) {
            unsigned long v = strtoul(next, &end, 10);
            if (*end || v < 1 || v > SHOAL_MAX_SHARDS)
                return -1;
            s->log_streams = (unsigned)v;
            i++;
        } else if (strcmp(argv[i], "--only") == 0 && next) {
            s->commits = durable_list_has(next, "commits");
            s->recovery = durable_list_has(next, "recovery");
            s->checkpoint = durable_list_has(next, "checkpoint");
            if (!s->commits && !s->recovery && !s->checkpoint)
                return -1;
            i++;
        } else if (strcmp(argv[i], "--anchors") == 0 && next) {
            bool all = strcmp(next, "all") == 0;
            for (int e = 1; e < ENGINE_COUNT; e++)
                s->anchors[e] = all || durable_list_has(next, durable_engine_names[e]);
            s->redis = all || durable_list_has(next, "redis");
            i++;
        } else {
            return -1;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    durable_settings s;
    int parsed = durable_parse(argc, argv, &s);
    if (parsed != 0) {
        if (parsed < 0)
            durable_usage(stderr);
        return parsed < 0 ? 2 : 0;
    }
    bench_watchdog(s.time_limit);
    durable_log_streams = s.log_streams;
    signal(SIGPIPE, SIG_IGN);
    for (size_t i = 0; i < BENCH_VALUE_SIZE; i++)
        durable_commit_value[i] = (uint8_t)(bench_mix(i + 11) >> 56);
    uint64_t begin = bench_now_ns();
    printf("# shoal-bench-durable: %u run(s) per figure (median), %.1f s per commit point, "
           "%zu keys for recovery and checkpoints, %ld cores, Shoal log streams: %s; files "
           "under /tmp\n",
           s.runs, s.seconds, s.keys, sysconf(_SC_NPROCESSORS_ONLN),
           s.log_streams ? (s.log_streams == 1 ? "1" : "as given") : "default");
    fflush(stdout);
    int failures = 0;
    if (s.commits && durable_run_commits(&s) != 0)
        failures++;
    bench_dataset d = {0};
    if ((s.recovery || s.checkpoint) && bench_dataset_make(&d, s.keys, DURABLE_SEED) != 0) {
        fprintf(stderr, "# out of memory for %zu keys\n", s.keys);
        return 1;
    }
    if (s.recovery && durable_run_recovery(&s, &d) != 0)
        failures++;
    if (s.checkpoint && durable_run_checkpoint(&s, &d) != 0)
        failures++;
    bench_dataset_free(&d);
    printf("# elapsed %.1f s%s\n", (double)(bench_now_ns() - begin) / 1e9,
           failures ? "; some figures failed (see stderr)" : "");
    return failures ? 1 : 0;
}
