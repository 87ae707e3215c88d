/*
 * object_table.h -- stable 64-bit handles (NodeIDs) for every stored object.
 *
 * A NodeID names an object for its whole life, even when the object moves: the object
 * table maps it to the object's current address. Its tag makes stale handles detectable:
 * freeing an object bumps the tag of its entry exactly once, so a NodeID kept after the
 * free no longer validates, even once the entry holds a new object (ABA safety).
 *
 * NodeID layout (64 bits):
 *
 *     63      58 57                                        16 15            0
 *    +----------+--------------------------------------------+---------------+
 *    |  shard   |               index within the shard       |      tag      |
 *    +----------+--------------------------------------------+---------------+
 *
 * Tags start at 1 and skip 0 when they wrap, so the NodeID 0 is never valid and can mean
 * "no object". The encoding allows 2^42 indexes per shard; an ot_part holds at most
 * OT_PART_MAX_ENTRIES (2^32) of them, the limit of its directory.
 *
 * Threads: every function may be called from any thread unless it says otherwise.
 * ot_resolve(), ot_validate() and ot_table_resolve() take no lock and never wait; the
 * others take the part's lock for a few instructions. An address returned by a resolve
 * stays valid only as long as the caller's epoch protocol (snapshots, retire epochs) keeps
 * the object from being reclaimed; the table itself only guarantees that a stale NodeID
 * never resolves to a newer object (except after 65535 frees of the same entry).
 *
 * Errors are 0 or a negative errno value (-ENOMEM, -EINVAL), as internal modules use.
 */
#ifndef SHOAL_CORE_OBJECT_TABLE_H
#define SHOAL_CORE_OBJECT_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef uint64_t node_id;

#define NODE_ID_SHARD_BITS 6
#define NODE_ID_INDEX_BITS 42
#define NODE_ID_TAG_BITS 16
#define NODE_ID_SHARD_SHIFT (NODE_ID_INDEX_BITS + NODE_ID_TAG_BITS)
#define NODE_ID_INDEX_SHIFT NODE_ID_TAG_BITS
#define NODE_ID_MAX_SHARDS (1u << NODE_ID_SHARD_BITS)
#define NODE_ID_INDEX_MASK ((UINT64_C(1) << NODE_ID_INDEX_BITS) - 1)
#define NODE_ID_TAG_MASK ((UINT64_C(1) << NODE_ID_TAG_BITS) - 1)
/* The NodeID that never names an object. */
#define NODE_ID_NONE ((node_id)0)

/* Entries one part can hold: its directory has 2^16 chunks of 2^16 entries. */
#define OT_PART_MAX_ENTRIES (UINT64_C(1) << 32)
/* The default number of allocations a thread makes between activation checks. */
#define OT_DEFAULT_ACTIVATION_STEP 1024u

/* Builds a NodeID; shard must be < 64 and index < 2^42 (higher bits are cut off). */
static inline node_id node_id_make(unsigned shard, uint64_t index, uint16_t tag)
{
    return ((node_id)(shard & (NODE_ID_MAX_SHARDS - 1)) << NODE_ID_SHARD_SHIFT) |
           ((index & NODE_ID_INDEX_MASK) << NODE_ID_INDEX_SHIFT) | (node_id)tag;
}

static inline unsigned node_id_shard(node_id id)
{
    return (unsigned)(id >> NODE_ID_SHARD_SHIFT);
}

static inline uint64_t node_id_index(node_id id)
{
    return (id >> NODE_ID_INDEX_SHIFT) & NODE_ID_INDEX_MASK;
}

static inline uint16_t node_id_tag(node_id id)
{
    return (uint16_t)(id & NODE_ID_TAG_MASK);
}

/* The tag an entry gets when the object holding tag is freed: tag + 1, skipping 0. */
static inline uint16_t node_id_tag_next(uint16_t tag)
{
    return tag == UINT16_MAX ? (uint16_t)1 : (uint16_t)(tag + 1);
}

/* ---------------------------------------------------------------------------------------
 * One part: the entries of one shard.
 * ------------------------------------------------------------------------------------- */

struct ot_part;

/* Counters of one part, exact at the time of the call.
 * - live: entries holding an object (allocated - freed).
 * - allocated, freed: entries handed out and released, by any path (ot_free, reclaim).
 * - retired: ot_retire() calls that queued an object; reclaimed: objects freed by
 *   ot_reclaim_before_epoch() (a subset of freed).
 * - contended: lock acquisitions that found the part's lock held (the load signal of
 *   progressive activation).
 * - memory: bytes the part holds: its descriptor, its chunks, the touched part of its
 *   directory and its retire queue. */
struct ot_stats {
    uint64_t live, allocated, freed, retired, reclaimed, contended;
    size_t memory;
};

/* Creates an empty part for shard (< 64); its NodeIDs carry that shard. No chunk is
 * allocated until the first allocation. Returns NULL when out of memory or shard >= 64. */
struct ot_part *ot_part_new(unsigned shard);

/* Releases the part and its entries (not the objects they point to). NULL is a no-op.
 * No other thread may use the part any more. */
void ot_part_free(struct ot_part *p);

/* Gives addr a new NodeID in *out. addr must be non-NULL, even, and below 2^48 (a
 * user-space pointer); objects from the segment allocator or malloc always are. A freed
 * index is reused before a fresh one, oldest free first. Returns 0, -ENOMEM (the part
 * holds OT_PART_MAX_ENTRIES or a chunk could not be allocated) or -EINVAL (bad addr). */
int ot_alloc(struct ot_part *p, void *addr, node_id *out);

/* ot_alloc() for n addresses under one acquisition of the lock: out[i] names addrs[i].
 * All or nothing: on -ENOMEM or -EINVAL nothing was allocated. n == 0 returns 0. */
int ot_alloc_batch(struct ot_part *p, void *const *addrs, size_t n, node_id *out);

/* Returns the address id names, or NULL when id is free, stale (its tag is not the
 * entry's), belongs to another shard or was never allocated. Lock-free. */
void *ot_resolve(const struct ot_part *p, node_id id);

/* Starts loading id's entry into the cache, for a free or change of it soon after (a
 * write that replaces a version frees the old one's handle at its end: the entry is
 * otherwise a cache miss of its own there). No effect on the table. Lock-free. */
void ot_prefetch(const struct ot_part *p, node_id id);

/* True when ot_resolve() would return an address. Lock-free. */
bool ot_validate(const struct ot_part *p, node_id id);

/* Records that the object id names moved to addr (same rules as in ot_alloc()). Readers
 * see the old or the new address, never a mix. Does nothing when id no longer validates. */
void ot_set_address(struct ot_part *p, node_id id, void *addr);

/* Frees id's entry at once: its tag is bumped and its index becomes reusable. Does nothing
 * when id no longer validates, so a double free cannot bump a tag twice. The object's
 * memory is the caller's to release. */
void ot_free(struct ot_part *p, node_id id);

/* Queues id for reclaim once no reader can see it: retire_epoch is the seq from which the
 * object is invisible. An id that no longer validates is ignored (returns 0). Returns 0 or
 * -ENOMEM (the queue could not grow; nothing was queued). */
int ot_retire(struct ot_part *p, node_id id, uint64_t retire_epoch);

/* For each retired object with retire_epoch <= safe_epoch, in retire order, that still
 * validates: calls reclaim(ctx, id, addr) (which unlinks it and releases its memory) and
 * then frees the entry (tag bump). Stale entries (already freed by other means) are skipped
 * silently. Returns the number reclaimed. Entries with a later epoch stay queued.
 * The callback runs WITHOUT the part's lock, so it may allocate, free and retire in this
 * part; it must not free the id it is given (the entry is freed right after it returns).
 * reclaim may be NULL (entries are just freed). Cost: O(reclaimed) while retire epochs
 * arrive in order; O(queue) per 256 reclaimed when they did not. */
size_t ot_reclaim_before_epoch(struct ot_part *p, uint64_t safe_epoch,
                               void (*reclaim)(void *ctx, node_id id, void *addr), void *ctx);

/* Objects queued by ot_retire() and not yet reclaimed or dropped as stale. */
size_t ot_retired_count(const struct ot_part *p);

void ot_part_stats(const struct ot_part *p, struct ot_stats *out);

/* ---------------------------------------------------------------------------------------
 * The sharded table: up to 64 parts created lazily, with progressive activation for
 * callers that give no shard.
 * ------------------------------------------------------------------------------------- */

struct object_table;

/* Creates a table of nshards parts (a power of two, 1..64); only part 0 holds memory at
 * first (the others are set up on first use). activation_step is how many ot_alloc_auto()
 * calls a thread makes between checks of the activation rule (0 means
 * OT_DEFAULT_ACTIVATION_STEP; values above 2^24 - 1 are capped there). Returns NULL when out
 * of memory or nshards is invalid. */
struct object_table *ot_new(unsigned nshards, unsigned activation_step);

/* Releases every part. No other thread may use the table any more. NULL is a no-op. */
void ot_destroy(struct object_table *t);

/* The part of shard (< nshards), set up on first use. NULL when out of memory or shard is
 * out of range. The part belongs to the table and lives until ot_destroy(); never pass it
 * to ot_part_free(). All ot_* part functions may be used on it. */
struct ot_part *ot_part(struct object_table *t, unsigned shard);

/* ot_alloc() in the part of shard. Returns 0, -ENOMEM, or -EINVAL (bad shard or addr). */
int ot_alloc_in(struct object_table *t, unsigned shard, void *addr, node_id *out);

/* ot_alloc() in the shard progressive activation picks for the calling thread: shard 0
 * until the rule (see object_table.c) activates more, then the thread's own shard among the
 * active ones. Costs one thread-local compare over ot_alloc() except every activation_step
 * calls. */
int ot_alloc_auto(struct object_table *t, void *addr, node_id *out);

/* ot_resolve() in the part named by node_id_shard(id); NULL when that part was never used
 * (or is beyond nshards). */
void *ot_table_resolve(const struct object_table *t, node_id id);

/* ot_free() in the part named by node_id_shard(id); nothing when that part was never used. */
void ot_table_free(struct object_table *t, node_id id);

/* Shards ot_alloc_auto() currently spreads over: 1 at first, doubling up to nshards. */
unsigned ot_active_shards(const struct object_table *t);

/* ---------------------------------------------------------------------------------------
 * Test support.
 * ------------------------------------------------------------------------------------- */

/* Counts times contended lock acquisitions on p as if they had happened, so tests can
 * drive the activation rule without depending on thread scheduling. */
void ot_part_note_contention(struct ot_part *p, uint64_t times);

#endif
