/*
 * make_db.c -- builds the durable database that tests/cli/cli_durable.sh checks, dumps and
 * loads: several tenants with quotas, pinned and spread namespaces (one left empty), binary
 * keys (0x00 and 0xff bytes), empty and large values, overwrites and deletes, a checkpoint
 * in the middle, and log records after it. It then ends with _exit, without closing, so the
 * writes after the checkpoint live only in the log (as after a crash), in several 64 KiB
 * segments per stream.
 *
 * Usage: make_db DIR. Prints "keys N" (the live keys it left) on stdout; exit 0 on success.
 *
 * Every write uses the default sync policy (periodic): a put returns once its record was
 * handed to write(2), so it survives the _exit of the process.
 */
#include "shoal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAKE_DB_CHECK(call)                                                                        \
    do {                                                                                           \
        int make_db_rc = (call);                                                                   \
        if (make_db_rc != 0) {                                                                     \
            fprintf(stderr, "make_db: %s: %s (%s)\n", #call, shoal_strerror(make_db_rc),           \
                    shoal_error_detail());                                                         \
            _exit(1);                                                                              \
        }                                                                                          \
    } while (0)

static void make_db_value(unsigned char *value, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++)
        value[i] = (unsigned char)((seed * 131u + i * 7u) >> (i % 3));
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: make_db DIR\n");
        return 2;
    }
    shoal_options *opts;
    MAKE_DB_CHECK(shoal_options_new(&opts));
    MAKE_DB_CHECK(shoal_options_set(opts, SHOAL_OPT_SHARDS, 4));
    MAKE_DB_CHECK(shoal_options_set(opts, SHOAL_OPT_LOG_STREAMS, 2));
    MAKE_DB_CHECK(shoal_options_set(opts, SHOAL_OPT_LOG_SEGMENT_BYTES, 64u << 10));
    shoal_db *db;
    MAKE_DB_CHECK(shoal_open(argv[1], opts, &db));
    shoal_options_free(opts);

    shoal_quota alpha_quota = {100000, 50u << 20, SHOAL_UNLIMITED};
    shoal_quota beta_quota = {SHOAL_UNLIMITED, SHOAL_UNLIMITED, 1000000};
    uint32_t alpha, beta;
    MAKE_DB_CHECK(shoal_tenant_create(db, "alpha", &alpha_quota, &alpha));
    MAKE_DB_CHECK(shoal_tenant_create(db, "beta", &beta_quota, &beta));

    shoal_ns_config users_cfg = {SHOAL_KIND_KV, SHOAL_PLACE_PINNED, alpha};
    shoal_ns_config events_cfg = {SHOAL_KIND_KV, SHOAL_PLACE_SPREAD, beta};
    shoal_ns_config blobs_cfg = {SHOAL_KIND_KV, SHOAL_PLACE_SPREAD, 0};
    shoal_ns_config empty_cfg = {SHOAL_KIND_KV, SHOAL_PLACE_PINNED, beta};
    shoal_ns *users, *events, *blobs, *empty;
    MAKE_DB_CHECK(shoal_ns_open(db, "users", &users_cfg, &users));
    MAKE_DB_CHECK(shoal_ns_open(db, "events", &events_cfg, &events));
    MAKE_DB_CHECK(shoal_ns_open(db, "blobs", &blobs_cfg, &blobs));
    MAKE_DB_CHECK(shoal_ns_open(db, "empty", &empty_cfg, &empty));

    static unsigned char value[100000];
    unsigned long live = 0;
    /* Before the checkpoint: 2,000 users in batches of 100, 1,000 events one by one. */
    shoal_batch *batch;
    MAKE_DB_CHECK(shoal_batch_new(db, &batch));
    for (unsigned i = 0; i < 2000; i++) {
        char key[32];
        int klen = snprintf(key, sizeof key, "user:%06u", i);
        make_db_value(value, 40 + i % 60, i);
        MAKE_DB_CHECK(shoal_batch_put(batch, users, key, (size_t)klen, value, 40 + i % 60));
        if (shoal_batch_count(batch) == 100) {
            MAKE_DB_CHECK(shoal_batch_commit(batch, NULL, NULL));
            shoal_batch_clear(batch);
        }
    }
    live += 2000;
    for (unsigned i = 0; i < 1000; i++) {
        unsigned char key[9] = {0,    0xff, (unsigned char)(i >> 8), (unsigned char)i, 0, 1, 2,
                                0xff, 0};
        make_db_value(value, 100, i + 7);
        MAKE_DB_CHECK(shoal_put(events, key, sizeof key, value, 100, NULL));
    }
    live += 1000;
    MAKE_DB_CHECK(shoal_checkpoint(db));

    /* After it: overwrites, deletes, new keys, an empty value and large ones, across a
     * batch that spans namespaces. */
    for (unsigned i = 0; i < 2000; i += 2) {
        char key[32];
        int klen = snprintf(key, sizeof key, "user:%06u", i);
        make_db_value(value, 120, i + 99);
        MAKE_DB_CHECK(shoal_put(users, key, (size_t)klen, value, 120, NULL));
    }
    for (unsigned i = 0; i < 1000; i += 5) {
        unsigned char key[9] = {0,    0xff, (unsigned char)(i >> 8), (unsigned char)i, 0, 1, 2,
                                0xff, 0};
        MAKE_DB_CHECK(shoal_delete(events, key, sizeof key, NULL));
        live--;
    }
    for (unsigned i = 0; i < 1500; i++) {
        char key[32];
        int klen = snprintf(key, sizeof key, "late:%u", i);
        make_db_value(value, 80, i + 5);
        MAKE_DB_CHECK(shoal_batch_put(batch, users, key, (size_t)klen, value, 80));
        MAKE_DB_CHECK(shoal_batch_put(batch, events, key, (size_t)klen, value, 30));
        if (shoal_batch_count(batch) >= 50) {
            MAKE_DB_CHECK(shoal_batch_commit(batch, NULL, NULL));
            shoal_batch_clear(batch);
        }
    }
    MAKE_DB_CHECK(shoal_batch_commit(batch, NULL, NULL));
    shoal_batch_clear(batch);
    live += 3000;
    MAKE_DB_CHECK(shoal_put(blobs, "empty-value", 11, "", 0, NULL));
    make_db_value(value, sizeof value, 3);
    MAKE_DB_CHECK(shoal_put(blobs, "large", 5, value, sizeof value, NULL));
    MAKE_DB_CHECK(shoal_put(blobs, "\xff\xff", 2, value, 70000, NULL));
    live += 3;
    shoal_batch_free(batch);

    printf("keys %lu\n", live);
    fflush(stdout);
    _exit(0); /* no close: what came after the checkpoint is in the log only */
}
