/*
 * snapshot.c -- O(1) snapshots in a fixed array of slots, and the reclaim horizon.
 *
 * A snapshot is a slot holding seq + 1 (0 = free). Taking one allocates nothing and takes
 * no lock, as LMDB's reader table does:
 *
 *     take:  CAS slot 0 -> PENDING; snapshots_open += 1; S = db.seq; slot = S + 1
 *     release: slot = 0; snapshots_open -= 1
 *
 * A thread starts its search at a slot derived from its thread index, so uncontended
 * threads find a free slot at the first try. Running out of slots is SHOAL_ENOSLOT.
 *
 * The horizon (snapshot_horizon) is the oldest seq an open snapshot may read:
 *
 *     H = min(db.seq read first, every published slot - 1, and for a PENDING slot the
 *             previously published horizon)
 *
 * Why a PENDING slot is safe to count as the old horizon: its taker reads db.seq after
 * marking the slot, so its S is at least db.seq at that moment, which is at least every
 * horizon published before. Why a slot that was still free when the scan passed it is safe:
 * the scan read db.seq before looking at the slot, and the taker reads db.seq only after
 * marking it, so the taker's S is at least the seq the scan started from. All these
 * accesses are sequentially consistent.
 *
 * The immediate-free rule of writers (internal.h I4) rests on snapshots_open: a writer
 * draws its seq, then reads snapshots_open; if it is 0, any snapshot taken later reads a
 * seq at least the writer's, so nothing can need the version the writer replaced.
 *
 * Tested by tests/unit/test_snapshot.c and by the snapshot-isolation test.
 */
#include "core/internal.h"

/* Finds a free slot, starting at the thread's own place, and marks it with value. */
static struct shoal_snapshot *slot_claim(struct shoal_db *db, uint64_t value)
{
    unsigned n = (unsigned)db->config.snapshot_slots;
    unsigned start = db_thread(db)->index % n;
    for (unsigned k = 0; k < n; k++) {
        unsigned i = start + k < n ? start + k : start + k - n;
        struct shoal_snapshot *slot = &db->slots[i];
        uint64_t expected = 0;
        if (atomic_load_explicit(&slot->value, memory_order_relaxed) != 0 ||
            !atomic_compare_exchange_strong(&slot->value, &expected, value))
            continue;
        unsigned high = atomic_load_explicit(&db->slots_high, memory_order_relaxed);
        while (high <= i && !atomic_compare_exchange_weak(&db->slots_high, &high, i + 1))
            ;
        return slot;
    }
    return NULL;
}

SHOAL_API int shoal_snapshot_take(shoal_db *db, shoal_snapshot **out)
{
    if (!db || !out)
        return SHOAL_EINVAL;
    struct shoal_snapshot *slot = slot_claim(db, SLOT_PENDING);
    *out = slot;
    if (!slot)
        return SHOAL_ENOSLOT;
    atomic_fetch_add(&db->snapshots_open, 1);
    uint64_t seq = atomic_load(&db->seq);
    /* A plain release store is enough: until it is seen, a scan finds PENDING and uses the
     * previous horizon, which is at most seq. */
    atomic_store_explicit(&slot->value, seq + 1, memory_order_release);
    return 0;
}

/* While another open snapshot holds seq, the horizon cannot pass it, so a second slot may
 * publish the same seq directly. */
int snapshot_pin(struct shoal_db *db, uint64_t seq, shoal_snapshot **out)
{
    atomic_fetch_add(&db->snapshots_open, 1);
    *out = slot_claim(db, seq + 1);
    if (*out)
        return 0;
    atomic_fetch_sub(&db->snapshots_open, 1);
    return SHOAL_ENOSLOT;
}

SHOAL_API void shoal_snapshot_release(shoal_snapshot *snap)
{
    if (!snap)
        return;
    struct shoal_db *db = snap->db;
    uint64_t seq = atomic_load_explicit(&snap->value, memory_order_relaxed) - 1;
    /* A scan that still sees the old value only reclaims later: release order is enough. */
    atomic_store_explicit(&snap->value, 0, memory_order_release);
    atomic_fetch_sub_explicit(&db->snapshots_open, 1, memory_order_release);
    /* Releasing the snapshot the horizon stopped at lets reclaim advance while others stay
     * open: tell the shards' next writers to try (kv.c shard_reclaim). When none is left
     * open, writers see snapshots_open == 0 themselves. */
    if (seq <= atomic_load_explicit(&db->horizon, memory_order_relaxed) &&
        atomic_load_explicit(&db->snapshots_open, memory_order_relaxed) != 0)
        atomic_fetch_add_explicit(&db->reclaim_generation, 1, memory_order_relaxed);
}

SHOAL_API uint64_t shoal_snapshot_seq(const shoal_snapshot *snap)
{
    if (!snap)
        return 0;
    return atomic_load_explicit((_Atomic uint64_t *)&snap->value, memory_order_relaxed) - 1;
}

SHOAL_API uint64_t shoal_last_seq(shoal_db *db)
{
    return db ? atomic_load(&db->seq) : 0;
}

uint64_t snapshot_horizon(struct shoal_db *db)
{
    uint64_t horizon = atomic_load(&db->seq);
    if (atomic_load(&db->snapshots_open) != 0) {
        uint64_t previous = atomic_load(&db->horizon);
        unsigned high = atomic_load(&db->slots_high);
        for (unsigned i = 0; i < high; i++) {
            uint64_t v = atomic_load(&db->slots[i].value);
            if (v == 0)
                continue;
            uint64_t s = v == SLOT_PENDING ? previous : v - 1;
            if (s < horizon)
                horizon = s;
        }
    }
    /* Publish the largest horizon computed so far (horizons only move forward). */
    uint64_t published = atomic_load(&db->horizon);
    while (published < horizon &&
           !atomic_compare_exchange_weak(&db->horizon, &published, horizon))
        ;
    return horizon;
}
