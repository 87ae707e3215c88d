/*
 * anchor_leveldb.c -- LevelDB as a benchmark anchor (Debian's libleveldb, C API leveldb/c.h).
 *
 * Configuration, the usual fast settings for a dataset that fits in memory:
 *   - writes with sync = false and the log on (LevelDB's default; it cannot be turned off);
 *   - a 64 MiB write buffer (memtable) instead of the default 4 MiB;
 *   - no compression (the values are random bytes);
 *   - a 512 MiB LRU block cache (the whole dataset fits) and a bloom filter of 10 bits
 *     per key.
 *
 * What each call does:
 *   fill      a leveldb_writebatch of batch keys per leveldb_write.
 *   settle    compacts the whole key range (untimed), so the reads find LevelDB in its best
 *             shape and no compaction competes with them.
 *   get       leveldb_get per key. The C API offers only a malloc'ed copy of the value,
 *             which is freed at once; that copy is part of what a LevelDB user pays.
 *   scan      one iterator, seek_to_first, next to the end.
 *   snapshot  not compared (the issue compares LMDB and RocksDB).
 *
 * Invariants:
 *   1. Every error string LevelDB allocates is printed and freed; every object created is
 *      destroyed on every path, the filter policy and the cache after the database.
 *
 * How it is tested: `shoal-bench --selftest` (see bench.h).
 */
#include "bench.h"

#include <leveldb/c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct anchor_leveldb_handle {
    leveldb_t *db;
    leveldb_options_t *options;
    leveldb_cache_t *cache;
    leveldb_filterpolicy_t *filter;
    leveldb_writeoptions_t *write_options;
    leveldb_readoptions_t *read_options;
} anchor_leveldb_handle;

/* Reports and frees an error string; returns -1 if there was one, else 0. */
static int anchor_leveldb_check(const char *what, char *error)
{
    if (!error)
        return 0;
    fprintf(stderr, "# leveldb: %s: %s\n", what, error);
    leveldb_free(error);
    return -1;
}

static void anchor_leveldb_close(void *handle)
{
    anchor_leveldb_handle *h = handle;
    if (!h)
        return;
    if (h->db)
        leveldb_close(h->db);
    if (h->read_options)
        leveldb_readoptions_destroy(h->read_options);
    if (h->write_options)
        leveldb_writeoptions_destroy(h->write_options);
    if (h->options)
        leveldb_options_destroy(h->options);
    if (h->filter)
        leveldb_filterpolicy_destroy(h->filter);
    if (h->cache)
        leveldb_cache_destroy(h->cache);
    free(h);
}

static int anchor_leveldb_open(const char *dir, size_t expected_keys, void **out)
{
    (void)expected_keys;
    anchor_leveldb_handle *h = calloc(1, sizeof *h);
    if (!h) {
        fprintf(stderr, "# leveldb: out of memory\n");
        return -1;
    }
    h->options = leveldb_options_create();
    leveldb_options_set_create_if_missing(h->options, 1);
    leveldb_options_set_write_buffer_size(h->options, (size_t)64 << 20);
    leveldb_options_set_compression(h->options, leveldb_no_compression);
    h->cache = leveldb_cache_create_lru((size_t)512 << 20);
    leveldb_options_set_cache(h->options, h->cache);
    h->filter = leveldb_filterpolicy_create_bloom(10);
    leveldb_options_set_filter_policy(h->options, h->filter);
    h->write_options = leveldb_writeoptions_create();
    leveldb_writeoptions_set_sync(h->write_options, 0);
    h->read_options = leveldb_readoptions_create();

    char *error = NULL;
    h->db = leveldb_open(h->options, dir, &error);
    if (anchor_leveldb_check("open", error) != 0 || !h->db) {
        h->db = NULL;
        anchor_leveldb_close(h);
        return -1;
    }
    *out = h;
    return 0;
}

static int anchor_leveldb_fill(void *handle, const bench_dataset *d, size_t first, size_t count,
                               size_t batch)
{
    anchor_leveldb_handle *h = handle;
    leveldb_writebatch_t *write_batch = leveldb_writebatch_create();
    size_t end = first + count;
    int rc = 0;
    for (size_t i = first; i < end && rc == 0;) {
        size_t stop = (end - i > batch) ? i + batch : end;
        for (; i < stop; i++)
            leveldb_writebatch_put(write_batch, (const char *)bench_key(d, i), BENCH_KEY_SIZE,
                                   (const char *)bench_value(d, i), BENCH_VALUE_SIZE);
        char *error = NULL;
        leveldb_write(h->db, h->write_options, write_batch, &error);
        rc = anchor_leveldb_check("write", error);
        leveldb_writebatch_clear(write_batch);
    }
    leveldb_writebatch_destroy(write_batch);
    return rc;
}

static int anchor_leveldb_settle(void *handle)
{
    anchor_leveldb_handle *h = handle;
    leveldb_compact_range(h->db, NULL, 0, NULL, 0);
    return 0;
}

static int anchor_leveldb_get(void *handle, const bench_dataset *d, const uint32_t *order,
                              size_t count, bench_reads *r)
{
    anchor_leveldb_handle *h = handle;
    for (size_t i = 0; i < count; i++) {
        size_t index = order[i];
        uint8_t key[BENCH_KEY_SIZE];
        bench_key_make(d->seed, index, key);
        char *error = NULL;
        size_t vlen = 0;
        char *value = leveldb_get(h->db, h->read_options, (const char *)key,
                                  BENCH_KEY_SIZE, &vlen, &error);
        if (anchor_leveldb_check("get", error) != 0) {
            leveldb_free(value);
            return -1;
        }
        if (!value) {
            r->bad++;
            continue;
        }
        bench_reads_add(r, value, vlen, bench_value_first(d->seed, index));
        leveldb_free(value);
    }
    return 0;
}

static int anchor_leveldb_scan(void *handle, bool check_order, bench_reads *r)
{
    anchor_leveldb_handle *h = handle;
    leveldb_iterator_t *it = leveldb_create_iterator(h->db, h->read_options);
    uint8_t previous[BENCH_KEY_SIZE];
    bool have_previous = false;
    for (leveldb_iter_seek_to_first(it); leveldb_iter_valid(it); leveldb_iter_next(it)) {
        size_t vlen;
        const char *value = leveldb_iter_value(it, &vlen);
        bench_reads_add(r, value, vlen, -1);
        if (check_order) {
            size_t klen;
            const char *key = leveldb_iter_key(it, &klen);
            if (klen != BENCH_KEY_SIZE ||
                (have_previous && memcmp(previous, key, BENCH_KEY_SIZE) >= 0))
                r->bad++;
            else
                memcpy(previous, key, BENCH_KEY_SIZE);
            have_previous = true;
        }
    }
    char *error = NULL;
    leveldb_iter_get_error(it, &error);
    leveldb_iter_destroy(it);
    return anchor_leveldb_check("iterator", error);
}

const bench_engine anchor_leveldb = {
    .name = "leveldb",
    .needs_dir = true,
    .open = anchor_leveldb_open,
    .fill = anchor_leveldb_fill,
    .settle = anchor_leveldb_settle,
    .get = anchor_leveldb_get,
    .scan = anchor_leveldb_scan,
    .snapshot_pairs = NULL,
    .close = anchor_leveldb_close,
};
