/*
 * stats.c -- `shoal stats DIR`: opens a durable database and prints what the engine knows
 * about it, for a person: the database as a whole (shoal_stats), every shard
 * (shoal_stats_shard), every tenant with its quota (shoal_stats_tenant) and every namespace
 * (shoal_ns_list).
 *
 * Opening is the engine's own (recovery included: a torn log tail is cut, as at any open),
 * so the figures are those a program opening DIR would see. The counters of operations
 * count since this open, so they are near zero; the contents (keys, bytes, memory,
 * namespaces) and the durable state (checkpoint, log, what recovery did) are the point.
 *
 * Invariants:
 *   1. Only a directory that holds a database (a MANIFEST) is opened: stats never creates
 *      one (cli_open_existing, dump.c).
 *   2. Every line is computed from one call of the public API; nothing is estimated here.
 *
 * How it is tested: tests/cli/cli_durable.sh loads a known number of keys and checks that
 * the "keys" line of `shoal stats` shows it.
 */
#include "cli.h"

#include "shoal.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Formats a quota limit: "-" for unlimited, the number otherwise. */
static const char *cli_stats_limit(uint64_t value, char *buffer, size_t cap)
{
    if (value == SHOAL_UNLIMITED)
        snprintf(buffer, cap, "-");
    else
        snprintf(buffer, cap, "%llu", (unsigned long long)value);
    return buffer;
}

static void cli_stats_latency(const char *name, const shoal_latency *l)
{
    if (l->count == 0)
        return;
    printf("  %-7s latency: %llu sampled, p50 %.1f us, p99 %.1f us, p99.9 %.1f us, max %.1f us\n",
           name, (unsigned long long)l->count, l->p50_ns / 1e3, l->p99_ns / 1e3, l->p999_ns / 1e3,
           l->max_ns / 1e3);
}

static int cli_stats_database(shoal_db *db, const char *dir, shoal_db_stats *s)
{
    int rc = shoal_stats(db, s);
    if (rc != 0)
        return rc;
    printf("database %s\n", dir);
    printf("  seq %llu, %u shards (%u active), %llu namespace(s), %llu tenant(s)\n",
           (unsigned long long)s->seq, s->shards, s->active_shards,
           (unsigned long long)s->namespaces, (unsigned long long)s->tenants);
    printf("  keys %llu, key+value bytes %llu, engine memory %llu bytes\n",
           (unsigned long long)s->keys, (unsigned long long)s->bytes,
           (unsigned long long)s->memory);
    printf("  since open: %llu gets, %llu puts, %llu deletes, %llu batch commits, %llu scans; "
           "%llu snapshots open\n",
           (unsigned long long)s->gets, (unsigned long long)s->puts, (unsigned long long)s->deletes,
           (unsigned long long)s->commits, (unsigned long long)s->scans,
           (unsigned long long)s->snapshots_open);
    printf("  versions retired %llu, reclaimed %llu; quota refusals %llu\n",
           (unsigned long long)s->versions_retired, (unsigned long long)s->versions_reclaimed,
           (unsigned long long)s->quota_refusals);
    cli_stats_latency("get", &s->get);
    cli_stats_latency("put", &s->put);
    cli_stats_latency("commit", &s->commit);
    if (s->read_only)
        printf("  READ-ONLY after a failure: %s\n", shoal_strerror(s->read_only_cause));
    if (!s->durable)
        return 0;
    printf("durability\n");
    printf("  %u log stream(s), %llu bytes in live log segments, %llu fdatasync(s) since open\n",
           s->log_streams, (unsigned long long)s->log_bytes, (unsigned long long)s->log_syncs);
    if (s->checkpoint_seq) {
        char when[64] = "before this open";
        if (s->checkpoint_unix) {
            time_t t = (time_t)s->checkpoint_unix;
            struct tm tm;
            if (localtime_r(&t, &tm))
                strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
        }
        printf("  checkpoint at seq %llu (completed %s); %llu checkpoint(s) since open\n",
               (unsigned long long)s->checkpoint_seq, when, (unsigned long long)s->checkpoints);
    } else {
        printf("  no checkpoint yet\n");
    }
    if (s->last_checkpoint_error)
        printf("  the last checkpoint failed: %s\n", shoal_strerror(s->last_checkpoint_error));
    printf("  recovery at open: %llu key(s) from the checkpoint, %llu log record(s) replayed\n",
           (unsigned long long)s->recovered_keys, (unsigned long long)s->recovered_records);
    if (s->torn_streams)
        printf("  a torn tail was cut off %u stream(s): %llu byte(s)\n", s->torn_streams,
               (unsigned long long)s->torn_bytes);
    if (s->salvaged_bytes)
        printf("  salvage dropped %llu byte(s)\n", (unsigned long long)s->salvaged_bytes);
    return 0;
}

static int cli_stats_shards(shoal_db *db, uint32_t shards)
{
    printf("shards\n  %5s %6s %10s %12s %7s %9s %9s %9s %11s\n", "shard", "active", "objects",
           "bytes", "indexes", "puts", "deletes", "gets", "lock waits");
    for (uint32_t i = 0; i < shards; i++) {
        shoal_shard_stats s;
        int rc = shoal_stats_shard(db, i, &s);
        if (rc != 0)
            return rc;
        printf("  %5u %6s %10llu %12llu %7llu %9llu %9llu %9llu %11llu\n", s.shard,
               s.active ? "yes" : "no", (unsigned long long)s.objects, (unsigned long long)s.bytes,
               (unsigned long long)s.indexes, (unsigned long long)s.puts,
               (unsigned long long)s.deletes, (unsigned long long)s.gets,
               (unsigned long long)s.lock_waits);
    }
    return 0;
}

static int cli_stats_tenants(shoal_db *db, uint64_t tenants)
{
    printf("tenants (quota '-' = unlimited)\n  %4s %-20s %10s %12s %6s %12s %14s %10s\n", "id",
           "name", "keys", "bytes", "ns", "max keys", "max bytes", "max ops/s");
    for (uint32_t id = 0; id < tenants; id++) {
        shoal_tenant_stats t;
        int rc = shoal_stats_tenant(db, id, &t);
        if (rc != 0)
            return rc;
        char keys[32], bytes[32], ops[32];
        printf("  %4u %-20s %10llu %12llu %6llu %12s %14s %10s\n", t.id, t.name,
               (unsigned long long)t.keys, (unsigned long long)t.bytes,
               (unsigned long long)t.namespaces,
               cli_stats_limit(t.quota.max_keys, keys, sizeof keys),
               cli_stats_limit(t.quota.max_bytes, bytes, sizeof bytes),
               cli_stats_limit(t.quota.max_ops_per_second, ops, sizeof ops));
    }
    return 0;
}

static int cli_stats_namespaces(shoal_db *db)
{
    size_t count = 0;
    int rc = shoal_ns_list(db, UINT32_MAX, NULL, 0, &count);
    if (rc != 0 || count == 0) {
        if (rc == 0)
            printf("namespaces: none\n");
        return rc;
    }
    shoal_ns_info *list = calloc(count, sizeof *list);
    if (!list)
        return SHOAL_ENOMEM;
    size_t again = 0;
    rc = shoal_ns_list(db, UINT32_MAX, list, count, &again);
    if (rc == 0) {
        if (again < count)
            count = again;
        printf("namespaces\n  %-24s %5s %4s %-6s %6s %5s %10s %12s\n", "name", "id", "kind",
               "place", "tenant", "shard", "keys", "bytes");
        for (size_t i = 0; i < count; i++) {
            const shoal_ns_info *n = &list[i];
            char shard[16];
            if (n->placement == SHOAL_PLACE_PINNED)
                snprintf(shard, sizeof shard, "%u", n->shard);
            else
                snprintf(shard, sizeof shard, "all");
            printf("  %-24s %5u %4s %-6s %6u %5s %10llu %12llu\n", n->name, n->id,
                   n->kind == SHOAL_KIND_KV ? "kv" : "?",
                   n->placement == SHOAL_PLACE_PINNED ? "pinned" : "spread", n->tenant, shard,
                   (unsigned long long)n->keys, (unsigned long long)n->bytes);
        }
    }
    free(list);
    return rc;
}

int cli_stats(int argc, char **argv)
{
    if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        printf("usage: shoal stats DIR\n"
               "  Opens the durable database in DIR and prints its statistics: the database,\n"
               "  each shard, each tenant with its quota, each namespace.\n");
        return 0;
    }
    if (argc != 2 || argv[1][0] == '-') {
        fprintf(stderr, "usage: shoal stats DIR\n");
        return 2;
    }
    shoal_db *db;
    int status = cli_open_existing("stats", argv[1], &db);
    if (status != 0)
        return status;
    shoal_db_stats s;
    int rc = cli_stats_database(db, argv[1], &s);
    if (rc == 0)
        rc = cli_stats_shards(db, s.shards);
    if (rc == 0)
        rc = cli_stats_tenants(db, s.tenants);
    if (rc == 0)
        rc = cli_stats_namespaces(db);
    if (rc != 0)
        fprintf(stderr, "shoal stats: %s: %s\n", argv[1], shoal_strerror(rc));
    int closed = shoal_close(db);
    if (closed != 0)
        fprintf(stderr, "shoal stats: closing %s: %s\n", argv[1], shoal_strerror(closed));
    return rc != 0 || closed != 0 ? 1 : 0;
}
