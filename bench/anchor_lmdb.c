/*
 * anchor_lmdb.c -- LMDB as a benchmark anchor (Debian's liblmdb).
 *
 * Configuration: the environment is opened with MDB_NOSYNC | MDB_WRITEMAP | MDB_NOMETASYNC
 * (no sync at commit; writes go straight into the shared memory map), a map size large
 * enough for the dataset several times over, and one unnamed database. This is how LMDB is
 * run when durability per commit is not wanted and the data fits in memory.
 *
 * What each call does:
 *   fill      one write transaction per batch of keys, mdb_put each, commit.
 *   get       one read-only transaction per calling thread for the whole pass, mdb_get per
 *             key; the value is read in place through the pointer LMDB hands out (no copy).
 *   scan      one read-only transaction and a cursor, MDB_FIRST then MDB_NEXT to the end.
 *   snapshot  mdb_txn_begin(MDB_RDONLY) + mdb_txn_abort per pair, as the issue asks.
 *             (mdb_txn_reset + mdb_txn_renew is cheaper and is what LMDB users do for
 *             repeated reads; the documentation says so.)
 *
 * Invariants:
 *   1. Every transaction begun is committed or aborted on every path, so the environment
 *      can always be closed.
 *   2. Read transactions are per call, hence per thread: LMDB's reader table binds a read
 *      transaction to its thread (no MDB_NOTLS).
 *
 * How it is tested: `shoal-bench --selftest` (see bench.h).
 */
#include "bench.h"

#include <errno.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct anchor_lmdb_handle {
    MDB_env *env;
    MDB_dbi dbi;
} anchor_lmdb_handle;

static int anchor_lmdb_fail(const char *what, int rc)
{
    fprintf(stderr, "# lmdb: %s: %s\n", what, mdb_strerror(rc));
    return -1;
}

static void anchor_lmdb_close(void *handle)
{
    anchor_lmdb_handle *h = handle;
    if (!h)
        return;
    if (h->env)
        mdb_env_close(h->env);
    free(h);
}

static int anchor_lmdb_open(const char *dir, size_t expected_keys, void **out)
{
    anchor_lmdb_handle *h = calloc(1, sizeof *h);
    if (!h)
        return anchor_lmdb_fail("calloc", ENOMEM);
    int rc = mdb_env_create(&h->env);
    if (rc != 0) {
        h->env = NULL;
        anchor_lmdb_close(h);
        return anchor_lmdb_fail("mdb_env_create", rc);
    }
    /* A generous map: about 1 KiB per key and at least 1 GiB. The file is sparse, so only
     * the pages written take space. */
    size_t map_size = expected_keys * 1024u;
    if (map_size < ((size_t)1 << 30))
        map_size = (size_t)1 << 30;
    rc = mdb_env_set_mapsize(h->env, map_size);
    if (rc == 0)
        rc = mdb_env_open(h->env, dir, MDB_NOSYNC | MDB_WRITEMAP | MDB_NOMETASYNC, 0644);
    if (rc != 0) {
        anchor_lmdb_close(h);
        return anchor_lmdb_fail("mdb_env_open", rc);
    }
    MDB_txn *txn;
    rc = mdb_txn_begin(h->env, NULL, 0, &txn);
    if (rc != 0) {
        anchor_lmdb_close(h);
        return anchor_lmdb_fail("mdb_txn_begin", rc);
    }
    rc = mdb_dbi_open(txn, NULL, 0, &h->dbi);
    if (rc == 0)
        rc = mdb_txn_commit(txn);
    else
        mdb_txn_abort(txn);
    if (rc != 0) {
        anchor_lmdb_close(h);
        return anchor_lmdb_fail("mdb_dbi_open", rc);
    }
    *out = h;
    return 0;
}

static int anchor_lmdb_fill(void *handle, const bench_dataset *d, size_t first, size_t count,
                            size_t batch)
{
    anchor_lmdb_handle *h = handle;
    size_t end = first + count;
    for (size_t i = first; i < end;) {
        MDB_txn *txn;
        int rc = mdb_txn_begin(h->env, NULL, 0, &txn);
        if (rc != 0)
            return anchor_lmdb_fail("mdb_txn_begin", rc);
        size_t stop = (end - i > batch) ? i + batch : end;
        for (; i < stop; i++) {
            MDB_val key = {BENCH_KEY_SIZE, (void *)bench_key(d, i)};
            MDB_val value = {BENCH_VALUE_SIZE, (void *)bench_value(d, i)};
            rc = mdb_put(txn, h->dbi, &key, &value, 0);
            if (rc != 0) {
                mdb_txn_abort(txn);
                return anchor_lmdb_fail("mdb_put", rc);
            }
        }
        rc = mdb_txn_commit(txn);
        if (rc != 0)
            return anchor_lmdb_fail("mdb_txn_commit", rc);
    }
    return 0;
}

static int anchor_lmdb_get(void *handle, const bench_dataset *d, const uint32_t *order,
                           size_t count, bench_reads *r)
{
    anchor_lmdb_handle *h = handle;
    MDB_txn *txn;
    int rc = mdb_txn_begin(h->env, NULL, MDB_RDONLY, &txn);
    if (rc != 0)
        return anchor_lmdb_fail("mdb_txn_begin(read)", rc);
    for (size_t i = 0; i < count; i++) {
        size_t index = order[i];
        uint8_t key[BENCH_KEY_SIZE];
        bench_key_make(d->seed, index, key);
        MDB_val k = {BENCH_KEY_SIZE, key};
        MDB_val value;
        rc = mdb_get(txn, h->dbi, &k, &value);
        if (rc == 0)
            bench_reads_add(r, value.mv_data, value.mv_size, bench_value_first(d->seed, index));
        else
            r->bad++;
    }
    mdb_txn_abort(txn);
    return 0;
}

static int anchor_lmdb_scan(void *handle, bool check_order, bench_reads *r)
{
    anchor_lmdb_handle *h = handle;
    MDB_txn *txn;
    int rc = mdb_txn_begin(h->env, NULL, MDB_RDONLY, &txn);
    if (rc != 0)
        return anchor_lmdb_fail("mdb_txn_begin(read)", rc);
    MDB_cursor *cursor;
    rc = mdb_cursor_open(txn, h->dbi, &cursor);
    if (rc != 0) {
        mdb_txn_abort(txn);
        return anchor_lmdb_fail("mdb_cursor_open", rc);
    }
    uint8_t previous[BENCH_KEY_SIZE];
    bool have_previous = false;
    MDB_val key, value;
    for (rc = mdb_cursor_get(cursor, &key, &value, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cursor, &key, &value, MDB_NEXT)) {
        bench_reads_add(r, value.mv_data, value.mv_size, -1);
        if (check_order) {
            if (key.mv_size != BENCH_KEY_SIZE ||
                (have_previous && memcmp(previous, key.mv_data, BENCH_KEY_SIZE) >= 0))
                r->bad++;
            else
                memcpy(previous, key.mv_data, BENCH_KEY_SIZE);
            have_previous = true;
        }
    }
    mdb_cursor_close(cursor);
    mdb_txn_abort(txn);
    if (rc != MDB_NOTFOUND)
        return anchor_lmdb_fail("mdb_cursor_get", rc);
    return 0;
}

static int anchor_lmdb_snapshot_pairs(void *handle, size_t pairs)
{
    anchor_lmdb_handle *h = handle;
    for (size_t i = 0; i < pairs; i++) {
        MDB_txn *txn;
        int rc = mdb_txn_begin(h->env, NULL, MDB_RDONLY, &txn);
        if (rc != 0)
            return anchor_lmdb_fail("mdb_txn_begin(read)", rc);
        mdb_txn_abort(txn);
    }
    return 0;
}

const bench_engine anchor_lmdb = {
    .name = "lmdb",
    .needs_dir = true,
    .open = anchor_lmdb_open,
    .fill = anchor_lmdb_fill,
    .settle = NULL,
    .get = anchor_lmdb_get,
    .scan = anchor_lmdb_scan,
    .snapshot_pairs = anchor_lmdb_snapshot_pairs,
    .close = anchor_lmdb_close,
};
