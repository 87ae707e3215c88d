/*
 * stats.c -- statistics of the database, its shards and its tenants.
 *
 * Counters live where they are cheapest to bump: per thread (operations and latency
 * histograms), per shard under its write lock (writes, lock waits), per namespace part
 * (live keys and bytes). Reading sums them; the sums are exact when the database is
 * quiet and approximate while other threads run.
 */
#include "core/durable.h"

#include <string.h>

static void latency_from(const struct histogram_sum *s, shoal_latency *out)
{
    out->count = s->total;
    out->p50_ns = hist_quantile(s, 0.50);
    out->p90_ns = hist_quantile(s, 0.90);
    out->p99_ns = hist_quantile(s, 0.99);
    out->p999_ns = hist_quantile(s, 0.999);
    out->max_ns = s->max;
}

SHOAL_API int shoal_stats(shoal_db *db, shoal_db_stats *out)
{
    if (!db || !out)
        return SHOAL_EINVAL;
    memset(out, 0, sizeof *out);
    out->seq = atomic_load(&db->seq);
    out->shards = (uint32_t)db->config.shards;
    out->snapshots_open = atomic_load(&db->snapshots_open);
    out->quota_refusals = atomic_load(&db->quota_refusals);
    out->compactions = atomic_load(&db->compactions);
    for (unsigned i = 0; i <= db->shard_mask; i++) {
        struct shard *s = atomic_load(&db->shards[i]);
        if (!s)
            continue;
        out->active_shards++;
        out->memory += counter_get(&s->memory);
        out->versions_retired += counter_get(&s->retired);
        out->versions_reclaimed += counter_get(&s->reclaimed);
        out->compact_versions_moved += counter_get(&s->compact_versions);
        out->compact_bytes_moved += counter_get(&s->compact_bytes);
        out->compact_bytes_released += counter_get(&s->compact_released);
        struct ot_stats ot;
        ot_part_stats(s->objects, &ot);
        out->memory += ot.memory;
    }
    pthread_mutex_lock(&db->catalog_lock);
    out->tenants = db->tenant_count;
    for (uint32_t slot = 0; slot < db->ns_high; slot++) {
        struct namespace *ns = db->namespaces[slot];
        if (!ns || atomic_load(&ns->dropped))
            continue;
        out->namespaces++;
        for (unsigned i = 0; i <= ns->shard_mask; i++) {
            out->keys += counter_get(&ns->parts[i].keys);
            out->bytes += counter_get(&ns->parts[i].bytes);
        }
    }
    /* Index memory changes under the shard locks: read it under them, a shard at a time
     * (catalog before shard is the lock order). */
    struct thread_state *self = db_thread(db);
    for (unsigned i = 0; i <= db->shard_mask; i++) {
        struct shard *s = atomic_load(&db->shards[i]);
        if (!s)
            continue;
        shard_read_lock(s, self);
        for (uint32_t slot = 0; slot < db->ns_high; slot++) {
            struct namespace *ns = db->namespaces[slot];
            if (ns && ns->parts[i].tree)
                out->memory += btree_memory(ns->parts[i].tree);
        }
        shard_read_unlock(s, self);
    }
    pthread_mutex_unlock(&db->catalog_lock);

    /* Histograms are large: merge them one kind at a time. */
    static __thread struct histogram_sum sum;
    unsigned threads = atomic_load(&db->thread_count);
    if (threads > MAX_THREAD_STATES)
        threads = MAX_THREAD_STATES;
    for (unsigned i = 0; i < threads; i++) {
        struct thread_state *t = db_thread_at(db, i);
        if (!t)
            continue;
        out->gets += counter_get(&t->gets);
        out->puts += counter_get(&t->puts);
        out->deletes += counter_get(&t->deletes);
        out->commits += counter_get(&t->commits);
        out->scans += counter_get(&t->scans);
    }
    size_t offsets[3] = {offsetof(struct thread_state, get_latency),
                         offsetof(struct thread_state, put_latency),
                         offsetof(struct thread_state, commit_latency)};
    shoal_latency *targets[3] = {&out->get, &out->put, &out->commit};
    for (int k = 0; k < 3; k++) {
        hist_sum_clear(&sum);
        for (unsigned i = 0; i < threads; i++) {
            const struct thread_state *t = db_thread_at(db, i);
            if (t)
                hist_sum_add(&sum, (const struct histogram *)((const char *)t + offsets[k]));
        }
        latency_from(&sum, targets[k]);
    }
    durable_stats(db, out);
    return 0;
}

SHOAL_API int shoal_stats_shard(shoal_db *db, uint32_t shard, shoal_shard_stats *out)
{
    if (!db || !out || shard > db->shard_mask)
        return SHOAL_EINVAL;
    memset(out, 0, sizeof *out);
    out->shard = shard;
    struct shard *s = atomic_load(&db->shards[shard]);
    if (!s)
        return 0;
    out->active = true;
    out->puts = counter_get(&s->puts);
    out->deletes = counter_get(&s->deletes);
    out->commits = counter_get(&s->commits);
    out->lock_waits = counter_get(&s->lock_waits);
    out->lock_wait_ns = counter_get(&s->lock_wait_ns);
    out->bytes = counter_get(&s->memory);
    out->indexes = counter_get(&s->indexes);
    struct ot_stats ot;
    ot_part_stats(s->objects, &ot);
    out->objects = ot.live;
    unsigned threads = atomic_load(&db->thread_count);
    if (threads > MAX_THREAD_STATES)
        threads = MAX_THREAD_STATES;
    for (unsigned i = 0; i < threads; i++)
        if (db_thread_at(db, i))
            out->gets += counter_get(&db_thread_at(db, i)->shard_gets[shard]);
    return 0;
}

SHOAL_API int shoal_stats_tenant(shoal_db *db, uint32_t tenant, shoal_tenant_stats *out)
{
    if (!db || !out)
        return SHOAL_EINVAL;
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&db->catalog_lock);
    if (tenant >= db->tenant_count) {
        pthread_mutex_unlock(&db->catalog_lock);
        return SHOAL_ENOTFOUND;
    }
    struct tenant *t = db->tenants[tenant];
    out->id = t->id;
    strcpy(out->name, t->name);
    out->quota.max_keys = atomic_load(&t->max_keys);
    out->quota.max_bytes = atomic_load(&t->max_bytes);
    out->quota.max_ops_per_second = atomic_load(&t->max_ops);
    out->quota_refusals = atomic_load(&t->refusals);
    out->ops = atomic_load(&t->ops);
    for (uint32_t slot = 0; slot < db->ns_high; slot++) {
        struct namespace *ns = db->namespaces[slot];
        if (!ns || ns->tenant != t || atomic_load(&ns->dropped))
            continue;
        out->namespaces++;
        for (unsigned i = 0; i <= ns->shard_mask; i++) {
            out->keys += counter_get(&ns->parts[i].keys);
            out->bytes += counter_get(&ns->parts[i].bytes);
        }
    }
    pthread_mutex_unlock(&db->catalog_lock);
    if (tenant == 0) {
        /* The default tenant's operations are the sum of every thread's (D2). */
        unsigned threads = atomic_load(&db->thread_count);
        if (threads > MAX_THREAD_STATES)
            threads = MAX_THREAD_STATES;
        for (unsigned i = 0; i < threads; i++) {
            struct thread_state *th = db_thread_at(db, i);
            if (!th)
                continue;
            out->ops += counter_get(&th->gets) + counter_get(&th->puts) +
                        counter_get(&th->deletes);
        }
    }
    return 0;
}
