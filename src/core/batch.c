/*
 * batch.c -- atomic batches: a list of puts, deletes, deletes of a whole namespace and
 * conditions across any namespaces and shards, committed by commit_ops() (kv.c) under one
 * seq, all or nothing.
 *
 * Keys and values are copied into one growing arena; operations keep offsets into it
 * (the arena may move while it grows) and become pointers only at commit.
 *
 * Tested by tests/unit/test_batch.c, the model test and the snapshot-isolation test.
 */
#include "core/internal.h"

#include <stdlib.h>
#include <string.h>

struct batch_entry {
    size_t key_offset, value_offset;
};

struct shoal_batch {
    struct shoal_db *db;
    /* The namespaces the batch names, each holding one reference until the batch is
     * cleared or freed, so a handle closed and a namespace dropped before the commit
     * leave the batch with EDROPPED rather than freed memory. */
    struct namespace **held;
    size_t held_count, held_cap;
    struct write_op *ops;
    struct batch_entry *entries;
    size_t count, cap, writes;
    uint8_t *arena;
    size_t used, arena_cap;
};

SHOAL_API int shoal_batch_new(shoal_db *db, shoal_batch **out)
{
    if (!db || !out)
        return SHOAL_EINVAL;
    *out = calloc(1, sizeof **out);
    if (!*out)
        return SHOAL_ENOMEM;
    (*out)->db = db;
    return 0;
}

static void batch_release_namespaces(shoal_batch *b)
{
    for (size_t i = 0; i < b->held_count; i++)
        namespace_release(b->held[i]);
    b->held_count = 0;
}

/* Holds a reference on ns for the batch; the last one added is checked first. */
static int batch_hold(shoal_batch *b, struct namespace *ns)
{
    for (size_t i = b->held_count; i-- > 0;)
        if (b->held[i] == ns)
            return 0;
    if (b->held_count == b->held_cap) {
        size_t cap = b->held_cap ? b->held_cap * 2 : 4;
        struct namespace **held = realloc(b->held, cap * sizeof *held);
        if (!held)
            return SHOAL_ENOMEM;
        b->held = held;
        b->held_cap = cap;
    }
    atomic_fetch_add(&ns->refs, 1);
    b->held[b->held_count++] = ns;
    return 0;
}

SHOAL_API void shoal_batch_clear(shoal_batch *b)
{
    if (!b)
        return;
    batch_release_namespaces(b);
    b->count = b->used = b->writes = 0;
}

SHOAL_API void shoal_batch_free(shoal_batch *b)
{
    if (!b)
        return;
    batch_release_namespaces(b);
    free(b->held);
    free(b->ops);
    free(b->entries);
    free(b->arena);
    free(b);
}

SHOAL_API size_t shoal_batch_count(const shoal_batch *b)
{
    return b ? b->writes : 0;
}

/* Makes room for one more operation and len more arena bytes. */
static int batch_reserve(shoal_batch *b, size_t len)
{
    if (b->count == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 16;
        struct write_op *ops = realloc(b->ops, cap * sizeof *ops);
        if (!ops)
            return SHOAL_ENOMEM;
        b->ops = ops;
        struct batch_entry *entries = realloc(b->entries, cap * sizeof *entries);
        if (!entries)
            return SHOAL_ENOMEM;
        b->entries = entries;
        b->cap = cap;
    }
    if (b->arena_cap - b->used < len) {
        size_t cap = b->arena_cap ? b->arena_cap : 4096;
        while (cap - b->used < len)
            cap *= 2;
        uint8_t *arena = realloc(b->arena, cap);
        if (!arena)
            return SHOAL_ENOMEM;
        b->arena = arena;
        b->arena_cap = cap;
    }
    return 0;
}

static int batch_add(shoal_batch *b, uint8_t type, shoal_ns *h, const void *key, size_t klen,
                     const void *value, size_t vlen, uint64_t required_seq)
{
    if (!b || !h || h->db != b->db || !key || klen == 0 || (!value && vlen))
        return SHOAL_EINVAL;
    if (klen > SHOAL_MAX_KEY || vlen > SHOAL_MAX_VALUE)
        return SHOAL_ETOOBIG;
    if (atomic_load_explicit(&h->ns->dropped, memory_order_relaxed))
        return SHOAL_EDROPPED;
    int err = batch_reserve(b, klen + vlen);
    if (!err)
        err = batch_hold(b, h->ns);
    if (err)
        return err;
    struct batch_entry *e = &b->entries[b->count];
    e->key_offset = b->used;
    memcpy(b->arena + b->used, key, klen);
    b->used += klen;
    e->value_offset = b->used;
    if (vlen)
        memcpy(b->arena + b->used, value, vlen);
    b->used += vlen;
    b->ops[b->count++] = (struct write_op){
        .type = type, .ns = h->ns, .klen = (uint32_t)klen, .vlen = (uint32_t)vlen,
        .required_seq = required_seq, .shard = ns_route(h->ns, key, klen)};
    if (type != WRITE_REQUIRE)
        b->writes++;
    return 0;
}

SHOAL_API int shoal_batch_put(shoal_batch *b, shoal_ns *ns, const void *key, size_t klen,
                              const void *value, size_t vlen)
{
    return batch_add(b, WRITE_PUT, ns, key, klen, value, vlen, 0);
}

SHOAL_API int shoal_batch_delete(shoal_batch *b, shoal_ns *ns, const void *key, size_t klen)
{
    return batch_add(b, WRITE_DELETE, ns, key, klen, NULL, 0, 0);
}

SHOAL_API int shoal_batch_delete_all(shoal_batch *b, shoal_ns *h)
{
    if (!b || !h || h->db != b->db)
        return SHOAL_EINVAL;
    if (atomic_load_explicit(&h->ns->dropped, memory_order_relaxed))
        return SHOAL_EDROPPED;
    int err = batch_reserve(b, 0);
    if (!err)
        err = batch_hold(b, h->ns);
    if (err)
        return err;
    b->entries[b->count] = (struct batch_entry){.key_offset = b->used, .value_offset = b->used};
    /* The first of its shards: the commit locks them all (kv.c, ops_shard_mask). */
    b->ops[b->count++] = (struct write_op){
        .type = WRITE_CLEAR, .ns = h->ns,
        .shard = h->ns->placement == SHOAL_PLACE_PINNED ? h->ns->shard : 0};
    b->writes++;
    return 0;
}

SHOAL_API int shoal_batch_require(shoal_batch *b, shoal_ns *ns, const void *key, size_t klen,
                                  uint64_t seq)
{
    return batch_add(b, WRITE_REQUIRE, ns, key, klen, NULL, 0, seq);
}

SHOAL_API int shoal_batch_commit(shoal_batch *b, const shoal_write_options *wo, uint64_t *seq)
{
    if (!b)
        return SHOAL_EINVAL;
    if (b->count == 0) {
        if (seq)
            *seq = atomic_load(&b->db->seq);
        return 0;
    }
    for (size_t i = 0; i < b->count; i++) {
        b->ops[i].key = b->arena + b->entries[i].key_offset;
        b->ops[i].value = b->arena + b->entries[i].value_offset;
    }
    struct thread_state *t = db_thread(b->db);
    uint64_t start = clock_ns();
    int err = commit_ops(b->db, b->ops, b->count, wo, seq);
    counter_add(&t->commits, 1);
    hist_record(&t->commit_latency, clock_ns() - start);
    return err;
}
