/*
 * engine_shoal.c -- Shoal's side of shoal-bench: the engine every anchor is compared with,
 * and the two measurements only Shoal has (memory per key in a clean process, and the
 * scaling of writers on disjoint shards).
 *
 * Configuration: a memory database (shoal_open(NULL, NULL)) with every default, which means
 * the default shard count (4 x online cores, at most 64). The key-value benchmarks use one
 * namespace placed with SHOAL_PLACE_SPREAD, so its keys are hashed over all shards.
 *
 * What each call does:
 *   fill      one shoal_batch reused for every group of batch keys: shoal_batch_put each,
 *             shoal_batch_commit, shoal_batch_clear.
 *   settle    shoal_compact (untimed, after the fill, as the LSM anchors compact): each
 *             shard's versions are rewritten in key order, so the scan reads memory
 *             sequentially; no snapshot is open, so the old memory goes back at once.
 *   get       shoal_get_into with a buffer on the stack, latest state (no snapshot).
 *   scan      one shoal_iter over the whole namespace (its implicit snapshot included).
 *   snapshot  shoal_snapshot_take + shoal_snapshot_release per pair.
 *   memory    a forked child touches the dataset (so its pages are already resident),
 *             returns its free heap to the system (malloc_trim), reads its resident set,
 *             opens a database, fills it, reads the resident set again;
 *             the growth divided by the keys is sent to the parent through a pipe (the
 *             resident set after a shoal_compact is printed too, not counted). A child
 *             per measurement keeps earlier benchmarks' memory out of the figure.
 *   disjoint  two pinned namespaces on different shards (more namespaces are created until
 *             two land on different shards, at most 64), per_thread single shoal_put calls
 *             into each, by two threads at once or by one thread in turn.
 *
 * Invariants:
 *   1. Every handle opened is closed on every path (namespaces, batches, iterators,
 *      snapshots, the database), so a run under AddressSanitizer reports no leak.
 *   2. The forked child never returns into the caller: it leaves through _exit, so nothing
 *      the parent buffered is written twice.
 *
 * How it is tested: `shoal-bench --selftest` (see bench.h) runs every call on a small
 * dataset and checks the results exactly.
 */
#include "bench.h"

#include "core/pages.h"
#include "shoal.h"

#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct engine_shoal_handle {
    shoal_db *db;
    shoal_ns *ns;
} engine_shoal_handle;

static int engine_shoal_fail(const char *what, int rc)
{
    fprintf(stderr, "# shoal: %s: %s (%s)\n", what, shoal_strerror(rc), shoal_error_name(rc));
    return -1;
}

static void engine_shoal_close(void *handle)
{
    engine_shoal_handle *h = handle;
    if (!h)
        return;
    shoal_ns_close(h->ns);
    int rc = shoal_close(h->db);
    if (rc != 0)
        engine_shoal_fail("close", rc);
    free(h);
}

static int engine_shoal_open(const char *dir, size_t expected_keys, void **out)
{
    (void)dir;
    (void)expected_keys;
    engine_shoal_handle *h = calloc(1, sizeof *h);
    if (!h)
        return engine_shoal_fail("calloc", SHOAL_ENOMEM);
    int rc = shoal_open(NULL, NULL, &h->db);
    if (rc != 0) {
        free(h);
        return engine_shoal_fail("open", rc);
    }
    shoal_ns_config config = {.kind = SHOAL_KIND_KV, .placement = SHOAL_PLACE_SPREAD};
    rc = shoal_ns_open(h->db, "bench", &config, &h->ns);
    if (rc != 0) {
        h->ns = NULL;
        engine_shoal_close(h);
        return engine_shoal_fail("ns_open", rc);
    }
    *out = h;
    return 0;
}

/* Writes keys [first, first + count) into ns in batches of batch keys. */
static int engine_shoal_fill_ns(shoal_db *db, shoal_ns *ns, const bench_dataset *d, size_t first,
                                size_t count, size_t batch)
{
    shoal_batch *b;
    int rc = shoal_batch_new(db, &b);
    if (rc != 0)
        return engine_shoal_fail("batch_new", rc);
    size_t end = first + count;
    for (size_t i = first; i < end && rc == 0;) {
        size_t stop = (end - i > batch) ? i + batch : end;
        for (; i < stop && rc == 0; i++)
            rc = shoal_batch_put(b, ns, bench_key(d, i), BENCH_KEY_SIZE, bench_value(d, i),
                                 BENCH_VALUE_SIZE);
        if (rc != 0) {
            engine_shoal_fail("batch_put", rc);
            break;
        }
        rc = shoal_batch_commit(b, NULL, NULL);
        if (rc != 0)
            engine_shoal_fail("batch_commit", rc);
        shoal_batch_clear(b);
    }
    shoal_batch_free(b);
    return rc == 0 ? 0 : -1;
}

static int engine_shoal_fill(void *handle, const bench_dataset *d, size_t first, size_t count,
                             size_t batch)
{
    engine_shoal_handle *h = handle;
    return engine_shoal_fill_ns(h->db, h->ns, d, first, count, batch);
}

static int engine_shoal_settle(void *handle)
{
    engine_shoal_handle *h = handle;
    shoal_compact_result result;
    int rc = shoal_compact(h->db, &result);
    if (rc != 0)
        return engine_shoal_fail("compact", rc);
    fprintf(stderr,
            "# shoal settle: shoal_compact moved %llu versions (%.1f MB) on %u shards, "
            "released %.1f MB\n",
            (unsigned long long)result.versions_moved, result.bytes_moved / 1e6,
            result.shards_compacted, result.bytes_released / 1e6);
    return 0;
}

static int engine_shoal_get(void *handle, const bench_dataset *d, const uint32_t *order,
                            size_t count, bench_reads *r)
{
    engine_shoal_handle *h = handle;
    uint8_t buffer[BENCH_VALUE_SIZE];
    for (size_t i = 0; i < count; i++) {
        size_t index = order[i];
        uint8_t key[BENCH_KEY_SIZE];
        bench_key_make(d->seed, index, key);
        size_t vlen = 0;
        int rc = shoal_get_into(h->ns, NULL, key, BENCH_KEY_SIZE, buffer,
                                sizeof buffer, &vlen);
        if (rc == 0) {
            bench_reads_add(r, buffer, vlen, bench_value_first(d->seed, index));
        } else if (rc == SHOAL_ENOTFOUND || rc == SHOAL_ERANGE) {
            r->bad++;
        } else {
            return engine_shoal_fail("get_into", rc);
        }
    }
    return 0;
}

static int engine_shoal_scan(void *handle, bool check_order, bench_reads *r)
{
    engine_shoal_handle *h = handle;
    shoal_iter *it;
    int rc = shoal_iter_new(h->ns, NULL, &it);
    if (rc != 0)
        return engine_shoal_fail("iter_new", rc);
    uint8_t previous[BENCH_KEY_SIZE];
    bool have_previous = false;
    while ((rc = shoal_iter_next(it)) == 1) {
        size_t vlen;
        const void *value = shoal_iter_value(it, &vlen);
        bench_reads_add(r, value, vlen, -1);
        if (check_order) {
            size_t klen;
            const void *key = shoal_iter_key(it, &klen);
            if (klen != BENCH_KEY_SIZE ||
                (have_previous && memcmp(previous, key, BENCH_KEY_SIZE) >= 0))
                r->bad++;
            else
                memcpy(previous, key, BENCH_KEY_SIZE);
            have_previous = true;
        }
    }
    shoal_iter_free(it);
    if (rc < 0)
        return engine_shoal_fail("iter_next", rc);
    return 0;
}

static int engine_shoal_snapshot_pairs(void *handle, size_t pairs)
{
    engine_shoal_handle *h = handle;
    for (size_t i = 0; i < pairs; i++) {
        shoal_snapshot *snap;
        int rc = shoal_snapshot_take(h->db, &snap);
        if (rc != 0)
            return engine_shoal_fail("snapshot_take", rc);
        shoal_snapshot_release(snap);
    }
    return 0;
}

const bench_engine engine_shoal = {
    .name = "shoal",
    .needs_dir = false,
    .open = engine_shoal_open,
    .fill = engine_shoal_fill,
    .settle = engine_shoal_settle,
    .get = engine_shoal_get,
    .scan = engine_shoal_scan,
    .snapshot_pairs = engine_shoal_snapshot_pairs,
    .close = engine_shoal_close,
};

/* ---- memory per key ------------------------------------------------------------------- */

/* The child's half of engine_shoal_memory: returns bytes per key, or a negative number. */
static double engine_shoal_memory_child(const bench_dataset *d, size_t batch)
{
    /* Read one byte of every page of the dataset, so that its pages count in the resident
     * set before the first measurement whatever fork did with the page tables. */
    long page = sysconf(_SC_PAGESIZE);
    volatile uint8_t sink = 0;
    for (size_t i = 0; i < d->count * BENCH_KEY_SIZE; i += (size_t)page)
        sink ^= d->keys[i];
    for (size_t i = 0; i < d->count * BENCH_VALUE_SIZE; i += (size_t)page)
        sink ^= d->values[i];
    (void)sink;
    /* Give back what the heap holds free, so the engine's allocations need fresh pages and
     * show in the growth instead of reusing pages the parent had already touched. */
    malloc_trim(0);

    uint64_t before = bench_rss_bytes(0);
    void *handle;
    if (engine_shoal_open(NULL, d->count, &handle) != 0)
        return -1;
    engine_shoal_handle *h = handle;
    if (engine_shoal_fill(handle, d, 0, d->count, batch) != 0) {
        engine_shoal_close(handle);
        return -1;
    }
    /* Read once the database is idle: while it grows, the engine keeps a few huge pages
     * faulted in ahead (src/core/pages.h, the reserve), and unmaps them after
     * PAGES_RESERVE_IDLE_MS without growth; half as long again is waited here. The figure
     * is what holding the keys costs, as the Redis anchor's is read from a server done
     * loading. */
    unsigned long idle_ms = PAGES_RESERVE_IDLE_MS * 3 / 2;
    struct timespec idle = {.tv_sec = (time_t)(idle_ms / 1000),
                            .tv_nsec = (long)(idle_ms % 1000) * 1000000L};
    nanosleep(&idle, NULL);
    uint64_t after = bench_rss_bytes(0);
    shoal_ns_info info;
    shoal_db_stats stats;
    if (shoal_ns_info_get(h->ns, &info) == 0 && shoal_stats(h->db, &stats) == 0)
        fprintf(stderr,
                "# shoal memory: rss %.1f MB -> %.1f MB, %llu keys, engine reports %.1f MB "
                "(%.1f bytes/key) over %llu key+value bytes\n",
                before / 1e6, after / 1e6, (unsigned long long)info.keys, stats.memory / 1e6,
                (double)stats.memory / (double)d->count, (unsigned long long)stats.bytes);
    /* What the settle step does to it: shown, not part of the figure (which is the fill's,
     * as for the other engines). */
    if (shoal_compact(h->db, NULL) == 0 && shoal_stats(h->db, &stats) == 0)
        fprintf(stderr,
                "# shoal memory after shoal_compact: rss %.1f MB, engine reports %.1f MB "
                "(%.1f bytes/key)\n",
                bench_rss_bytes(0) / 1e6, stats.memory / 1e6,
                (double)stats.memory / (double)d->count);
    engine_shoal_close(handle);
    if (before == 0 || after <= before)
        return -1;
    return (double)(after - before) / (double)d->count;
}

int engine_shoal_memory(const bench_dataset *d, size_t batch, double *bytes_per_key)
{
    int fds[2];
    if (pipe(fds) != 0) {
        fprintf(stderr, "# shoal memory: pipe: %s\n", strerror(errno));
        return -1;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "# shoal memory: fork: %s\n", strerror(errno));
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        close(fds[0]);
        double result = engine_shoal_memory_child(d, batch);
        ssize_t written = write(fds[1], &result, sizeof result);
        _exit(written == (ssize_t)sizeof result ? 0 : 1);
    }
    bench_set_child(pid);
    close(fds[1]);
    double result = -1;
    ssize_t got;
    do {
        got = read(fds[0], &result, sizeof result);
    } while (got < 0 && errno == EINTR);
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    bench_set_child(0);
    if (got != (ssize_t)sizeof result || !WIFEXITED(status) || WEXITSTATUS(status) != 0 ||
        result < 0) {
        fprintf(stderr, "# shoal memory: the measuring process failed\n");
        return -1;
    }
    *bytes_per_key = result;
    return 0;
}

/* ---- disjoint scaling ------------------------------------------------------------------ */

typedef struct engine_shoal_writer {
    shoal_ns *ns;
    const bench_dataset *d;
    size_t first, count;
    pthread_barrier_t *start;
    int rc;
} engine_shoal_writer;

static void engine_shoal_writer_work(engine_shoal_writer *w)
{
    for (size_t i = w->first; i < w->first + w->count; i++) {
        int rc = shoal_put(w->ns, bench_key(w->d, i), BENCH_KEY_SIZE, bench_value(w->d, i),
                           BENCH_VALUE_SIZE, NULL);
        if (rc != 0) {
            w->rc = rc;
            return;
        }
    }
}

static void *engine_shoal_writer_thread(void *arg)
{
    engine_shoal_writer *w = arg;
    pthread_barrier_wait(w->start);
    engine_shoal_writer_work(w);
    return NULL;
}

/* Opens two pinned namespaces on different shards into ns[0] and ns[1]. */
static int engine_shoal_disjoint_namespaces(shoal_db *db, shoal_ns *ns[2])
{
    shoal_ns_config config = {.kind = SHOAL_KIND_KV, .placement = SHOAL_PLACE_PINNED};
    shoal_ns_info first, other;
    int rc = shoal_ns_open(db, "disjoint-0", &config, &ns[0]);
    if (rc != 0)
        return engine_shoal_fail("ns_open", rc);
    rc = shoal_ns_info_get(ns[0], &first);
    if (rc != 0)
        return engine_shoal_fail("ns_info_get", rc);
    for (int attempt = 1; attempt <= SHOAL_MAX_SHARDS; attempt++) {
        char name[32];
        snprintf(name, sizeof name, "disjoint-%d", attempt);
        rc = shoal_ns_open(db, name, &config, &ns[1]);
        if (rc != 0)
            return engine_shoal_fail("ns_open", rc);
        rc = shoal_ns_info_get(ns[1], &other);
        if (rc != 0)
            return engine_shoal_fail("ns_info_get", rc);
        if (other.shard != first.shard) {
            fprintf(stderr, "# disjoint: namespaces %s (shard %u) and %s (shard %u)\n", first.name,
                    first.shard, other.name, other.shard);
            return 0;
        }
        shoal_ns_close(ns[1]);
        ns[1] = NULL;
    }
    fprintf(stderr, "# disjoint: no two pinned namespaces landed on different shards\n");
    return -1;
}

int engine_shoal_disjoint(const bench_dataset *d, int threads, size_t per_thread,
                          double *ops_per_second)
{
    if ((threads != 1 && threads != 2) || per_thread * 2 > d->count) {
        fprintf(stderr, "# disjoint: bad arguments\n");
        return -1;
    }
    shoal_db *db;
    int rc = shoal_open(NULL, NULL, &db);
    if (rc != 0)
        return engine_shoal_fail("open", rc);
    shoal_ns *ns[2] = {NULL, NULL};
    int result = -1;
    if (engine_shoal_disjoint_namespaces(db, ns) != 0)
        goto out;

    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, (unsigned)threads + 1);
    engine_shoal_writer writers[2];
    for (int t = 0; t < 2; t++)
        writers[t] = (engine_shoal_writer){.ns = ns[t],
                                           .d = d,
                                           .first = (size_t)t * per_thread,
                                           .count = per_thread,
                                           .start = &start,
                                           .rc = 0};
    pthread_t ids[2];
    int started = 0;
    uint64_t begin = 0, end = 0;
    if (threads == 2) {
        for (; started < 2; started++)
            if (pthread_create(&ids[started], NULL, engine_shoal_writer_thread,
                               &writers[started]) != 0)
                break;
        if (started < 2) {
            /* The threads that did start are waiting at the barrier; it cannot open, so
             * this is unrecoverable in a benchmark. */
            fprintf(stderr, "# disjoint: pthread_create failed\n");
            exit(1);
        }
        pthread_barrier_wait(&start);
        begin = bench_now_ns();
        for (int t = 0; t < 2; t++)
            pthread_join(ids[t], NULL);
        end = bench_now_ns();
    } else {
        begin = bench_now_ns();
        engine_shoal_writer_work(&writers[0]);
        engine_shoal_writer_work(&writers[1]);
        end = bench_now_ns();
    }
    pthread_barrier_destroy(&start);
    if (writers[0].rc != 0 || writers[1].rc != 0) {
        engine_shoal_fail("put", writers[0].rc != 0 ? writers[0].rc : writers[1].rc);
        goto out;
    }
    *ops_per_second = (double)(2 * per_thread) / ((double)(end - begin) / 1e9);
    result = 0;
out:
    shoal_ns_close(ns[0]);
    shoal_ns_close(ns[1]);
    rc = shoal_close(db);
    if (rc != 0)
        engine_shoal_fail("close", rc);
    return result;
}
