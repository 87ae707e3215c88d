/*
 * anchor_rocksdb.c -- RocksDB as a benchmark anchor (Debian's librocksdb, C API rocksdb/c.h).
 *
 * Configuration, the usual fast settings for a dataset that fits in memory:
 *   - writes with sync = false and the write-ahead log on (the default): a write reaches the
 *     log in the page cache, never waits for the disk;
 *   - increase_parallelism(online cores) for the background flushes and compactions;
 *   - no compression (the values are random bytes; compressing them only costs CPU);
 *   - block-based tables with a 512 MiB LRU block cache (the whole dataset fits) and a bloom
 *     filter of 10 bits per key;
 *   - everything else as RocksDB ships it (64 MiB memtables, level-style compaction).
 *
 * What each call does:
 *   fill      a rocksdb_writebatch of batch keys per rocksdb_write.
 *   settle    flushes the memtable and compacts the whole key range (untimed), so the reads
 *             find RocksDB in its best shape and no compaction competes with them.
 *   get       rocksdb_get_pinned per key: the value is read in place, without a copy.
 *   scan      one iterator, seek_to_first, next to the end.
 *   snapshot  rocksdb_create_snapshot + rocksdb_release_snapshot per pair.
 *
 * Invariants:
 *   1. Every error string RocksDB allocates is printed and freed; every object created is
 *      destroyed on every path.
 *
 * How it is tested: `shoal-bench --selftest` (see bench.h).
 */
#include "bench.h"

#include <rocksdb/c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct anchor_rocksdb_handle {
    rocksdb_t *db;
    rocksdb_options_t *options;
    rocksdb_block_based_table_options_t *table_options;
    rocksdb_cache_t *cache;
    rocksdb_writeoptions_t *write_options;
    rocksdb_readoptions_t *read_options;
} anchor_rocksdb_handle;

/* Reports and frees an error string; returns -1 if there was one, else 0. */
static int anchor_rocksdb_check(const char *what, char *error)
{
    if (!error)
        return 0;
    fprintf(stderr, "# rocksdb: %s: %s\n", what, error);
    rocksdb_free(error);
    return -1;
}

static void anchor_rocksdb_close(void *handle)
{
    anchor_rocksdb_handle *h = handle;
    if (!h)
        return;
    if (h->db)
        rocksdb_close(h->db);
    if (h->read_options)
        rocksdb_readoptions_destroy(h->read_options);
    if (h->write_options)
        rocksdb_writeoptions_destroy(h->write_options);
    if (h->options)
        rocksdb_options_destroy(h->options);
    if (h->table_options)
        rocksdb_block_based_options_destroy(h->table_options);
    if (h->cache)
        rocksdb_cache_destroy(h->cache);
    free(h);
}

static int anchor_rocksdb_open(const char *dir, size_t expected_keys, void **out)
{
    (void)expected_keys;
    anchor_rocksdb_handle *h = calloc(1, sizeof *h);
    if (!h) {
        fprintf(stderr, "# rocksdb: out of memory\n");
        return -1;
    }
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    h->options = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(h->options, 1);
    rocksdb_options_increase_parallelism(h->options, cores > 0 ? (int)cores : 1);
    rocksdb_options_set_compression(h->options, rocksdb_no_compression);
    h->cache = rocksdb_cache_create_lru((size_t)512 << 20);
    h->table_options = rocksdb_block_based_options_create();
    rocksdb_block_based_options_set_block_cache(h->table_options, h->cache);
    rocksdb_block_based_options_set_filter_policy(h->table_options,
                                                  rocksdb_filterpolicy_create_bloom(10));
    rocksdb_options_set_block_based_table_factory(h->options, h->table_options);
    h->write_options = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(h->write_options, 0);
    h->read_options = rocksdb_readoptions_create();

    char *error = NULL;
    h->db = rocksdb_open(h->options, dir, &error);
    if (anchor_rocksdb_check("open", error) != 0 || !h->db) {
        h->db = NULL;
        anchor_rocksdb_close(h);
        return -1;
    }
    *out = h;
    return 0;
}

static int anchor_rocksdb_fill(void *handle, const bench_dataset *d, size_t first, size_t count,
                               size_t batch)
{
    anchor_rocksdb_handle *h = handle;
    rocksdb_writebatch_t *write_batch = rocksdb_writebatch_create();
    size_t end = first + count;
    int rc = 0;
    for (size_t i = first; i < end && rc == 0;) {
        size_t stop = (end - i > batch) ? i + batch : end;
        for (; i < stop; i++)
            rocksdb_writebatch_put(write_batch, (const char *)bench_key(d, i), BENCH_KEY_SIZE,
                                   (const char *)bench_value(d, i), BENCH_VALUE_SIZE);
        char *error = NULL;
        rocksdb_write(h->db, h->write_options, write_batch, &error);
        rc = anchor_rocksdb_check("write", error);
        rocksdb_writebatch_clear(write_batch);
    }
    rocksdb_writebatch_destroy(write_batch);
    return rc;
}

static int anchor_rocksdb_settle(void *handle)
{
    anchor_rocksdb_handle *h = handle;
    rocksdb_flushoptions_t *flush = rocksdb_flushoptions_create();
    rocksdb_flushoptions_set_wait(flush, 1);
    char *error = NULL;
    rocksdb_flush(h->db, flush, &error);
    rocksdb_flushoptions_destroy(flush);
    if (anchor_rocksdb_check("flush", error) != 0)
        return -1;
    rocksdb_compact_range(h->db, NULL, 0, NULL, 0);
    return 0;
}

static int anchor_rocksdb_get(void *handle, const bench_dataset *d, const uint32_t *order,
                              size_t count, bench_reads *r)
{
    anchor_rocksdb_handle *h = handle;
    for (size_t i = 0; i < count; i++) {
        size_t index = order[i];
        uint8_t key[BENCH_KEY_SIZE];
        bench_key_make(d->seed, index, key);
        char *error = NULL;
        rocksdb_pinnableslice_t *slice = rocksdb_get_pinned(
            h->db, h->read_options, (const char *)key, BENCH_KEY_SIZE, &error);
        if (anchor_rocksdb_check("get", error) != 0)
            return -1;
        if (!slice) {
            r->bad++;
            continue;
        }
        size_t vlen;
        const char *value = rocksdb_pinnableslice_value(slice, &vlen);
        bench_reads_add(r, value, vlen, bench_value_first(d->seed, index));
        rocksdb_pinnableslice_destroy(slice);
    }
    return 0;
}

static int anchor_rocksdb_scan(void *handle, bool check_order, bench_reads *r)
{
    anchor_rocksdb_handle *h = handle;
    rocksdb_iterator_t *it = rocksdb_create_iterator(h->db, h->read_options);
    uint8_t previous[BENCH_KEY_SIZE];
    bool have_previous = false;
    for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t vlen;
        const char *value = rocksdb_iter_value(it, &vlen);
        bench_reads_add(r, value, vlen, -1);
        if (check_order) {
            size_t klen;
            const char *key = rocksdb_iter_key(it, &klen);
            if (klen != BENCH_KEY_SIZE ||
                (have_previous && memcmp(previous, key, BENCH_KEY_SIZE) >= 0))
                r->bad++;
            else
                memcpy(previous, key, BENCH_KEY_SIZE);
            have_previous = true;
        }
    }
    char *error = NULL;
    rocksdb_iter_get_error(it, &error);
    rocksdb_iter_destroy(it);
    return anchor_rocksdb_check("iterator", error);
}

static int anchor_rocksdb_snapshot_pairs(void *handle, size_t pairs)
{
    anchor_rocksdb_handle *h = handle;
    for (size_t i = 0; i < pairs; i++) {
        const rocksdb_snapshot_t *snap = rocksdb_create_snapshot(h->db);
        if (!snap) {
            fprintf(stderr, "# rocksdb: create_snapshot failed\n");
            return -1;
        }
        rocksdb_release_snapshot(h->db, snap);
    }
    return 0;
}

const bench_engine anchor_rocksdb = {
    .name = "rocksdb",
    .needs_dir = true,
    .open = anchor_rocksdb_open,
    .fill = anchor_rocksdb_fill,
    .settle = anchor_rocksdb_settle,
    .get = anchor_rocksdb_get,
    .scan = anchor_rocksdb_scan,
    .snapshot_pairs = anchor_rocksdb_snapshot_pairs,
    .close = anchor_rocksdb_close,
};
