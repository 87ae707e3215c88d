/*
 * object_table.c -- NodeID -> address, with tags, retire epochs and progressive activation.
 *
 * Purpose
 * -------
 * Every stored object is named by a NodeID (see object_table.h for its bit layout). The
 * table turns a NodeID into the object's current address without a lock, lets objects move
 * (ot_set_address), detects stale NodeIDs by their tag, and queues retired objects until no
 * snapshot can see them. One ot_part serves one shard; struct object_table groups up to 64
 * parts and picks a part for callers that do not name a shard.
 *
 * Format of a part (in memory only; checkpoints persist objects, not this table)
 * -----------------------------------------------------------------------------
 * A part is a two-level array of 8-byte entries. The directory has 2^16 slots, each NULL
 * or a pointer to a chunk of 2^16 entries, so a part holds at most 2^32 entries (the NodeID
 * index field could address 2^42; a part never needs that many, and a fixed directory is
 * what lets readers go without a lock). The directory (512 KiB of address space, of which
 * only the first page is touched below 33 million entries) and the chunks (512 KiB each)
 * are anonymous mappings, zero until written. An entry is one of:
 *
 *     never used   0
 *     live         address << 16 | tag            (address even, non-zero, below 2^48)
 *     free         (next + 1) << 17 | 1 << 16 | tag
 *
 * Bit 16, the lowest address bit, marks a free entry; that is why addresses must be even.
 * A free entry's upper bits link it to the next free index (0: end of list), so the free
 * list costs no memory of its own and freeing never allocates. The list is FIFO: a freed
 * index waits behind every index freed before it, which spreads tag bumps over all free
 * entries and makes the 16-bit tag of any one entry wrap as late as possible.
 *
 * Invariants
 * ----------
 * 1. An entry's tag changes only when its object is freed (by ot_free or by reclaim), and
 *    then by exactly one step of node_id_tag_next(): 1, 2, ..., 65535, 1, ... A NodeID is
 *    issued with the entry's current tag, which is never 0, so NODE_ID_NONE never resolves.
 * 2. A part's directory pointer, and each directory slot, goes from NULL to a mapping
 *    once (release store) and never changes again until the part is released; chunks
 *    never move. Entries are read with acquire loads and written with release stores, so
 *    a reader that resolves a NodeID also sees the object's contents as they were when it
 *    was allocated or moved.
 * 3. Every index below next_fresh is either live or on the free list, exactly once; every
 *    index at or above it is never used. free_count is the length of the free list.
 * 4. All writes to entries, the free list, the retire queue and the counters happen under
 *    the part's lock. Readers (resolve, validate) take no lock.
 * 5. The retire queue holds (id, epoch) in retire order. While `retire_unordered` is false
 *    its epochs never decrease, so the reclaimable entries are a prefix.
 *
 * The lock
 * --------
 * Each part has a test-and-test-and-set spinlock: one atomic exchange to take it, a plain
 * release store to drop it. A waiter spins on a read for a bounded number of pauses and
 * then yields the processor, so a holder that was preempted gets to run. Critical sections
 * are a few dozen instructions (the exception, a fresh 512 KiB chunk, happens once per
 * 65536 allocations). Measured on the 2-core test machine (shared with other work, so the
 * figures are medians of interleaved blocks): an uncontended alloc + free pair costs about
 * 26 ns with this lock, 35 ns with pthread_mutex_t and 48 ns with a futex lock (which needs
 * a second atomic read-modify-write to release); with 2 and 4 threads hammering one part
 * the spinlock also gave the most pairs per second (47 and 60 ns per pair against 70-78).
 * Acquisitions that find the lock held are counted per part: that count is the load signal
 * of progressive activation and appears in ot_stats.contended.
 *
 * Reclaim
 * -------
 * ot_reclaim_before_epoch takes up to 256 reclaimable entries off the queue under the lock
 * and drops the ones that no longer validate. Then, without the lock, for each one that
 * still validates right now, it runs the callback and frees the entry (a short lock of its
 * own). The callback may thus unlink index nodes and free or allocate other entries of this
 * part, and a NodeID queued twice is reclaimed once: its second copy no longer validates.
 * Entries whose epoch is later stay queued, in order.
 *
 * Progressive activation
 * ----------------------
 * ot_alloc_auto sends everything to shard 0 until contention says more shards pay off.
 * Each thread keeps, per table instance, a thread-local state: the part it allocates into,
 * a countdown to its next check, its ticket (the order in which it first used the table)
 * and the part's contention count at its last check. The fast path is a compare of the
 * table's instance id with the thread's and a decrement of the countdown: no atomics beyond
 * the part's lock. (The instance id and the countdown share one 64-bit word, so the test
 * is one subtract and one compare.) Every activation_step allocations the thread checks
 * the rule:
 *
 *     if, since the thread's last check, its part's lock was found held at least
 *     max(1, activation_step / 32) times, double the active shards (up to nshards).
 *
 * Then it (re)joins shard ticket & (active - 1), so threads spread over the active shards
 * in the order they arrived and the first thread stays on shard 0. A single thread never
 * contends with itself, so it stays on shard 0 for good, which keeps its objects together
 * and its cost within 1% of a bare part. Shards are never deactivated: handles already
 * carry their shard, and a shrink would only move new allocations back.
 *
 * The thread-local state belongs to one table instance at a time. Each table draws a
 * process-unique instance id at creation (not its address, which a later table may reuse);
 * a thread that meets a table other than the one its state describes resets the state (new
 * ticket, new part, full countdown). Two tables used alternately by one thread thus never
 * see each other's state, at the price of a slow path at each switch.
 *
 * Testing: tests/unit/test_object_table.c covers the handle encoding, ABA (stale ids after
 * reuse), the tag arithmetic and its wrap, retire/reclaim horizons and order, batches,
 * directory growth past one chunk, lock-free resolve racing writers on 4 threads (run under
 * TSan too), progressive activation driven by ot_part_note_contention(), two tables used
 * alternately by one thread, and a window used up in one table not borrowing its way into
 * a neighbour's. bench/bench_ot.c measures the sharded fast path against a bare part.
 */
#include "core/object_table.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define OT_CHUNK_BITS 16u
#define OT_CHUNK_ENTRIES ((uint64_t)1 << OT_CHUNK_BITS)
#define OT_CHUNK_MASK (OT_CHUNK_ENTRIES - 1)
#define OT_DIRECTORY_SLOTS ((size_t)1 << 16)
#define OT_CHUNK_BYTES (OT_CHUNK_ENTRIES * sizeof(ot_entry))
#define OT_DIRECTORY_BYTES (OT_DIRECTORY_SLOTS * sizeof(ot_chunk_pointer))
#define OT_PAGE_BYTES ((size_t)4096)

#define OT_ENTRY_TAG_MASK ((uint64_t)0xffff)
#define OT_ENTRY_FREE ((uint64_t)1 << 16)
#define OT_ENTRY_ADDRESS_SHIFT 16u
#define OT_ENTRY_NEXT_SHIFT 17u
/* Addresses must fit in the 48 bits above the tag. */
#define OT_ADDRESS_LIMIT ((uintptr_t)1 << 48)

#define OT_RECLAIM_BATCH 256u
#define OT_RETIRE_INITIAL_CAPACITY 64u
/* An empty retire queue above this capacity is released rather than kept for reuse. */
#define OT_RETIRE_KEEP_CAPACITY 4096u

#define OT_SPIN_BEFORE_YIELD 128u
#define OT_CACHE_LINE 64

typedef _Atomic uint64_t ot_entry;
typedef _Atomic(ot_entry *) ot_chunk_pointer;

struct ot_retired {
    node_id id;
    uint64_t epoch;
};

struct ot_part {
    /* The only fields lock-free readers touch besides the directory slots and entries.
     * shard never changes; directory goes from NULL to its mapping once (release store),
     * when the part is set up, and stays until the part is released. */
    _Atomic(ot_chunk_pointer *) directory;
    unsigned shard;

    /* Everything below is written under the lock (invariant 4), on its own cache line so
     * that writers do not disturb readers' line. */
    alignas(OT_CACHE_LINE) atomic_uint lock;
    /* Acquisitions that found the lock held; read without the lock by activation. */
    _Atomic uint64_t contended;
    /* Free list (invariant 3): indexes + 1, 0 meaning none. */
    uint64_t free_head;
    uint64_t free_tail;
    uint64_t free_count;
    uint64_t next_fresh;
    /* Chunks mapped, and one past the highest directory slot in use. */
    uint64_t chunk_count;
    uint64_t directory_high;
    /* Retire queue (invariant 5): a ring of retire_capacity (a power of two or 0) slots. */
    struct ot_retired *retire_ring;
    size_t retire_capacity;
    size_t retire_head;
    size_t retire_count;
    uint64_t retire_last_epoch;
    bool retire_unordered;
    /* Counters for ot_part_stats. */
    uint64_t allocated;
    uint64_t freed;
    uint64_t retired;
    uint64_t reclaimed;
};

struct object_table {
    /* Read-only after ot_new; read on every ot_alloc_auto. */
    uint64_t instance;
    unsigned shard_count;
    unsigned activation_step;
    unsigned contention_threshold;

    /* Written at activation checks only. */
    alignas(OT_CACHE_LINE) atomic_uint active;
    atomic_uint next_ticket;
    pthread_mutex_t create_lock;

    /* All 64 part descriptors live in the table, so routing a NodeID to its part is address
     * arithmetic (no load in front of the lock: measured, a dependent load of a part pointer
     * cost ~10% of an alloc + free pair). A part's memory (directory, chunks) is mapped
     * when the part is first used; parts at or above shard_count are never set up, so a
     * NodeID naming them resolves to NULL and frees nothing. */
    struct ot_part parts[NODE_ID_MAX_SHARDS];
};

/* A thread's window word: the table's instance id above OT_WINDOW_BITS, the allocations
 * left before the thread's next check below. Decrementing it when the countdown is 0
 * borrows from the instance id, so one subtract and one compare test both "is this my
 * table" and "is the window still open" on the fast path. Instance ids are even and
 * non-zero, so a borrowed id (odd) never equals any table's, and neither does the all-ones
 * word a never-used state (0) turns into. */
#define OT_WINDOW_BITS 24u
#define OT_WINDOW_MASK ((UINT64_C(1) << OT_WINDOW_BITS) - 1)
/* The largest activation_step the countdown can hold. */
#define OT_MAX_ACTIVATION_STEP ((unsigned)OT_WINDOW_MASK)
/* Instance ids have 40 bits; a process would need to create 2^39 tables to wrap them. */
#define OT_INSTANCE_MASK ((UINT64_C(1) << (64u - OT_WINDOW_BITS)) - 1)

/* One thread's view of the table it last used through ot_alloc_auto. */
struct ot_thread_state {
    uint64_t window;
    struct ot_part *part;
    uint64_t contended_seen;
    uint32_t ticket;
};

/* initial-exec: the library is linked into the program (or loaded with it), and this model
 * makes the access one %fs-relative load instead of a call to __tls_get_addr. */
static _Thread_local struct ot_thread_state ot_thread_state
    __attribute__((tls_model("initial-exec")));

/* Counts tables created; a table's instance id is twice its count (see the window word). */
static _Atomic uint64_t ot_instance_counter;

/* ---------------------------------------------------------------------------------------
 * The part lock.
 * ------------------------------------------------------------------------------------- */

/* Tells the processor this is a spin-wait loop (saves power, frees the sibling thread). */
static inline void ot_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static void ot_lock_wait(struct ot_part *p)
{
    atomic_fetch_add_explicit(&p->contended, 1, memory_order_relaxed);
    unsigned spins = 0;
    for (;;) {
        while (atomic_load_explicit(&p->lock, memory_order_relaxed) != 0) {
            if (spins < OT_SPIN_BEFORE_YIELD) {
                spins++;
                ot_cpu_relax();
            } else {
                sched_yield();
            }
        }
        if (atomic_exchange_explicit(&p->lock, 1, memory_order_acquire) == 0)
            return;
    }
}

static inline void ot_lock(struct ot_part *p)
{
    if (__builtin_expect(atomic_exchange_explicit(&p->lock, 1, memory_order_acquire) == 0, 1))
        return;
    ot_lock_wait(p);
}

static inline void ot_unlock(struct ot_part *p)
{
    atomic_store_explicit(&p->lock, 0, memory_order_release);
}

/* ---------------------------------------------------------------------------------------
 * Entries.
 * ------------------------------------------------------------------------------------- */

static inline bool ot_address_ok(const void *addr)
{
    uintptr_t bits = (uintptr_t)addr;
    return bits != 0 && (bits & 1u) == 0 && bits < OT_ADDRESS_LIMIT;
}

static inline uint64_t ot_entry_live(const void *addr, uint16_t tag)
{
    return ((uint64_t)(uintptr_t)addr << OT_ENTRY_ADDRESS_SHIFT) | tag;
}

/* True when entry holds a live object whose tag is tag (never for tag 0: invariant 1). */
static inline bool ot_entry_holds(uint64_t entry, uint16_t tag)
{
    return tag != 0 && (entry & (OT_ENTRY_FREE | OT_ENTRY_TAG_MASK)) == tag;
}

/* The entry of index, or NULL when its chunk does not exist. Any thread. */
static inline ot_entry *ot_entry_find(const struct ot_part *p, uint64_t index)
{
    ot_chunk_pointer *directory = atomic_load_explicit(&p->directory, memory_order_acquire);
    if (directory == NULL || index >= OT_PART_MAX_ENTRIES)
        return NULL;
    ot_entry *chunk = atomic_load_explicit(&directory[index >> OT_CHUNK_BITS], memory_order_acquire);
    if (chunk == NULL)
        return NULL;
    return &chunk[index & OT_CHUNK_MASK];
}

/* The entry of an index below next_fresh (whose chunk exists: invariant 3). Lock held. */
static inline ot_entry *ot_entry_at(struct ot_part *p, uint64_t index)
{
    ot_chunk_pointer *directory = atomic_load_explicit(&p->directory, memory_order_relaxed);
    ot_entry *chunk =
        atomic_load_explicit(&directory[index >> OT_CHUNK_BITS], memory_order_relaxed);
    return &chunk[index & OT_CHUNK_MASK];
}

/* Maps the chunk for directory slot `slot` if it is missing. Lock held. */
static bool ot_chunk_ensure(struct ot_part *p, uint64_t slot)
{
    ot_chunk_pointer *directory = atomic_load_explicit(&p->directory, memory_order_relaxed);
    if (atomic_load_explicit(&directory[slot], memory_order_relaxed) != NULL)
        return true;
    void *chunk = mmap(NULL, OT_CHUNK_BYTES, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (chunk == MAP_FAILED)
        return false;
    /* Invariant 2: readers that see the pointer see the zeroed chunk. */
    atomic_store_explicit(&directory[slot], (ot_entry *)chunk, memory_order_release);
    p->chunk_count++;
    if (slot + 1 > p->directory_high)
        p->directory_high = slot + 1;
    return true;
}

/* Takes an index off the free list or the fresh range and makes it hold addr. The caller
 * checked addr. Lock held. */
static inline int ot_alloc_locked(struct ot_part *p, void *addr, node_id *out)
{
    uint64_t index;
    uint16_t tag;
    ot_entry *entry;
    if (p->free_head != 0) {
        index = p->free_head - 1;
        entry = ot_entry_at(p, index);
        uint64_t old = atomic_load_explicit(entry, memory_order_relaxed);
        assert(old & OT_ENTRY_FREE);
        tag = (uint16_t)(old & OT_ENTRY_TAG_MASK);
        p->free_head = old >> OT_ENTRY_NEXT_SHIFT;
        if (p->free_head == 0)
            p->free_tail = 0;
        p->free_count--;
    } else {
        index = p->next_fresh;
        if (__builtin_expect((index & OT_CHUNK_MASK) == 0, 0)) {
            if (index >= OT_PART_MAX_ENTRIES || !ot_chunk_ensure(p, index >> OT_CHUNK_BITS))
                return -ENOMEM;
        }
        p->next_fresh = index + 1;
        entry = ot_entry_at(p, index);
        tag = 1;
    }
    atomic_store_explicit(entry, ot_entry_live(addr, tag), memory_order_release);
    p->allocated++;
    *out = node_id_make(p->shard, index, tag);
    return 0;
}

/* Frees id's entry if it still holds id: bumps the tag once and appends the index to the
 * free list. Returns whether it freed. Lock held. */
static inline bool ot_free_locked(struct ot_part *p, node_id id)
{
    uint64_t index = node_id_index(id);
    if (node_id_shard(id) != p->shard || index >= p->next_fresh)
        return false;
    ot_entry *entry = ot_entry_at(p, index);
    uint16_t tag = node_id_tag(id);
    if (!ot_entry_holds(atomic_load_explicit(entry, memory_order_relaxed), tag))
        return false;
    atomic_store_explicit(entry, OT_ENTRY_FREE | node_id_tag_next(tag), memory_order_release);
    if (p->free_tail != 0) {
        ot_entry *tail = ot_entry_at(p, p->free_tail - 1);
        uint64_t link = atomic_load_explicit(tail, memory_order_relaxed);
        atomic_store_explicit(tail, link | ((index + 1) << OT_ENTRY_NEXT_SHIFT),
                              memory_order_relaxed);
    } else {
        p->free_head = index + 1;
    }
    p->free_tail = index + 1;
    p->free_count++;
    p->freed++;
    return true;
}

/* ---------------------------------------------------------------------------------------
 * Parts.
 * ------------------------------------------------------------------------------------- */

/* Sets up a zeroed descriptor (see ot_part_zero): maps its directory and publishes it.
 * Returns false when out of memory (the descriptor stays as it was). Readers may already
 * look at p; only the directory pointer changes. */
static bool ot_part_setup(struct ot_part *p)
{
    void *directory = mmap(NULL, OT_DIRECTORY_BYTES, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (directory == MAP_FAILED)
        return false;
    atomic_store_explicit(&p->directory, (ot_chunk_pointer *)directory, memory_order_release);
    return true;
}

/* Releases what a part holds, not its descriptor. A part never set up holds nothing. */
static void ot_part_release(struct ot_part *p)
{
    ot_chunk_pointer *directory = atomic_load_explicit(&p->directory, memory_order_relaxed);
    if (directory == NULL)
        return;
    for (uint64_t slot = 0; slot < p->directory_high; slot++) {
        ot_entry *chunk = atomic_load_explicit(&directory[slot], memory_order_relaxed);
        if (chunk != NULL)
            munmap(chunk, OT_CHUNK_BYTES);
    }
    munmap(directory, OT_DIRECTORY_BYTES);
    free(p->retire_ring);
}

/* Zeroes a descriptor for shard: no directory yet, nothing allocated, lock free. */
static void ot_part_zero(struct ot_part *p, unsigned shard)
{
    memset(p, 0, sizeof(*p));
    atomic_init(&p->directory, NULL);
    atomic_init(&p->lock, 0);
    atomic_init(&p->contended, 0);
    p->shard = shard;
}

struct ot_part *ot_part_new(unsigned shard)
{
    if (shard >= NODE_ID_MAX_SHARDS)
        return NULL;
    size_t bytes = (sizeof(struct ot_part) + OT_CACHE_LINE - 1) & ~(size_t)(OT_CACHE_LINE - 1);
    struct ot_part *p = aligned_alloc(OT_CACHE_LINE, bytes);
    if (p == NULL)
        return NULL;
    ot_part_zero(p, shard);
    if (!ot_part_setup(p)) {
        free(p);
        return NULL;
    }
    return p;
}

void ot_part_free(struct ot_part *p)
{
    if (p == NULL)
        return;
    ot_part_release(p);
    free(p);
}

static inline int ot_alloc_one(struct ot_part *p, void *addr, node_id *out)
{
    if (__builtin_expect(!ot_address_ok(addr), 0)) {
        assert(!"ot_alloc: address must be non-NULL, even and below 2^48");
        return -EINVAL;
    }
    ot_lock(p);
    int result = ot_alloc_locked(p, addr, out);
    ot_unlock(p);
    return result;
}

static inline void ot_free_one(struct ot_part *p, node_id id)
{
    ot_lock(p);
    ot_free_locked(p, id);
    ot_unlock(p);
}

/* noinline: ot_alloc_auto and ot_table_free end in a tail call to ot_alloc and ot_free.
 * Inlined there instead (as GCC does with hidden visibility), the larger body makes the
 * compiler save six registers up front, stores the lock's exchange must wait for: measured
 * +10% per alloc + free pair. A tail call keeps the sharded path within noise of a bare
 * part. */
__attribute__((noinline)) int ot_alloc(struct ot_part *p, void *addr, node_id *out)
{
    return ot_alloc_one(p, addr, out);
}

int ot_alloc_batch(struct ot_part *p, void *const *addrs, size_t n, node_id *out)
{
    for (size_t i = 0; i < n; i++) {
        if (!ot_address_ok(addrs[i])) {
            assert(!"ot_alloc_batch: address must be non-NULL, even and below 2^48");
            return -EINVAL;
        }
    }
    if (n == 0)
        return 0;
    ot_lock(p);
    /* All or nothing: make sure every entry the batch needs exists before taking any. */
    uint64_t fresh_needed = n > p->free_count ? (uint64_t)n - p->free_count : 0;
    if (fresh_needed > OT_PART_MAX_ENTRIES - p->next_fresh) {
        ot_unlock(p);
        return -ENOMEM;
    }
    if (fresh_needed > 0) {
        uint64_t first_slot = p->next_fresh >> OT_CHUNK_BITS;
        uint64_t last_slot = (p->next_fresh + fresh_needed - 1) >> OT_CHUNK_BITS;
        for (uint64_t slot = first_slot; slot <= last_slot; slot++) {
            /* Chunks mapped before a failure stay: they are empty and harmless. */
            if (!ot_chunk_ensure(p, slot)) {
                ot_unlock(p);
                return -ENOMEM;
            }
        }
    }
    for (size_t i = 0; i < n; i++) {
        int result = ot_alloc_locked(p, addrs[i], &out[i]);
        assert(result == 0);
        (void)result;
    }
    ot_unlock(p);
    return 0;
}

void *ot_resolve(const struct ot_part *p, node_id id)
{
    if (node_id_shard(id) != p->shard)
        return NULL;
    ot_entry *entry = ot_entry_find(p, node_id_index(id));
    if (entry == NULL)
        return NULL;
    uint64_t value = atomic_load_explicit(entry, memory_order_acquire);
    if (!ot_entry_holds(value, node_id_tag(id)))
        return NULL;
    return (void *)(uintptr_t)(value >> OT_ENTRY_ADDRESS_SHIFT);
}

void ot_prefetch(const struct ot_part *p, node_id id)
{
    if (node_id_shard(id) != p->shard)
        return;
    ot_entry *entry = ot_entry_find(p, node_id_index(id));
    if (entry != NULL)
        __builtin_prefetch(entry, 1, 3);
}

bool ot_validate(const struct ot_part *p, node_id id)
{
    return ot_resolve(p, id) != NULL;
}

void ot_set_address(struct ot_part *p, node_id id, void *addr)
{
    if (!ot_address_ok(addr)) {
        assert(!"ot_set_address: address must be non-NULL, even and below 2^48");
        return;
    }
    ot_lock(p);
    uint64_t index = node_id_index(id);
    if (node_id_shard(id) == p->shard && index < p->next_fresh) {
        ot_entry *entry = ot_entry_at(p, index);
        uint16_t tag = node_id_tag(id);
        if (ot_entry_holds(atomic_load_explicit(entry, memory_order_relaxed), tag))
            atomic_store_explicit(entry, ot_entry_live(addr, tag), memory_order_release);
    }
    ot_unlock(p);
}

/* noinline: see ot_alloc. */
__attribute__((noinline)) void ot_free(struct ot_part *p, node_id id)
{
    ot_free_one(p, id);
}

/* ---------------------------------------------------------------------------------------
 * Retire and reclaim.
 * ------------------------------------------------------------------------------------- */

/* Makes room for one more retired entry. Returns false when out of memory. Lock held. */
static bool ot_retire_reserve(struct ot_part *p)
{
    if (p->retire_count < p->retire_capacity)
        return true;
    size_t capacity = p->retire_capacity ? p->retire_capacity * 2 : OT_RETIRE_INITIAL_CAPACITY;
    struct ot_retired *ring = malloc(capacity * sizeof(*ring));
    if (ring == NULL)
        return false;
    /* Unroll the old ring so that the queue starts at slot 0 again. */
    size_t mask = p->retire_capacity - 1;
    for (size_t i = 0; i < p->retire_count; i++)
        ring[i] = p->retire_ring[(p->retire_head + i) & mask];
    free(p->retire_ring);
    p->retire_ring = ring;
    p->retire_capacity = capacity;
    p->retire_head = 0;
    return true;
}

int ot_retire(struct ot_part *p, node_id id, uint64_t retire_epoch)
{
    ot_lock(p);
    if (!ot_validate(p, id)) {
        ot_unlock(p);
        return 0;
    }
    if (!ot_retire_reserve(p)) {
        ot_unlock(p);
        return -ENOMEM;
    }
    size_t mask = p->retire_capacity - 1;
    p->retire_ring[(p->retire_head + p->retire_count) & mask] =
        (struct ot_retired){.id = id, .epoch = retire_epoch};
    if (p->retire_count == 0)
        p->retire_unordered = false;
    else if (retire_epoch < p->retire_last_epoch)
        p->retire_unordered = true;
    if (p->retire_count == 0 || retire_epoch > p->retire_last_epoch)
        p->retire_last_epoch = retire_epoch;
    p->retire_count++;
    p->retired++;
    ot_unlock(p);
    return 0;
}

/* Moves up to OT_RECLAIM_BATCH reclaimable entries (epoch <= safe_epoch) that still
 * validate into items, in retire order, and drops the stale ones. Sets *more when
 * reclaimable entries were left behind because items was full. Lock held. */
static size_t ot_retire_take(struct ot_part *p, uint64_t safe_epoch,
                             node_id *items, bool *more)
{
    size_t taken = 0;
    size_t mask = p->retire_capacity - 1;
    *more = false;
    if (!p->retire_unordered) {
        /* Invariant 5: the reclaimable entries are a prefix of the queue. */
        while (p->retire_count > 0) {
            struct ot_retired *oldest = &p->retire_ring[p->retire_head];
            if (oldest->epoch > safe_epoch)
                break;
            if (taken == OT_RECLAIM_BATCH) {
                *more = true;
                break;
            }
            if (ot_validate(p, oldest->id))
                items[taken++] = oldest->id;
            p->retire_head = (p->retire_head + 1) & mask;
            p->retire_count--;
        }
        return taken;
    }
    /* Epochs arrived out of order: one pass takes what it can and compacts the rest in
     * place, keeping their order, and finds out whether the rest is ordered again. */
    size_t kept = 0;
    bool unordered = false;
    uint64_t last_epoch = 0;
    for (size_t i = 0; i < p->retire_count; i++) {
        struct ot_retired entry = p->retire_ring[(p->retire_head + i) & mask];
        if (entry.epoch <= safe_epoch) {
            if (taken < OT_RECLAIM_BATCH) {
                if (ot_validate(p, entry.id))
                    items[taken++] = entry.id;
                continue;
            }
            *more = true;
        }
        if (kept > 0 && entry.epoch < last_epoch)
            unordered = true;
        if (kept == 0 || entry.epoch > last_epoch)
            last_epoch = entry.epoch;
        p->retire_ring[(p->retire_head + kept) & mask] = entry;
        kept++;
    }
    p->retire_count = kept;
    p->retire_unordered = unordered;
    p->retire_last_epoch = last_epoch;
    return taken;
}

/* Releases a large retire queue once it is empty. Lock held. */
static void ot_retire_shrink(struct ot_part *p)
{
    if (p->retire_count == 0 && p->retire_capacity > OT_RETIRE_KEEP_CAPACITY) {
        free(p->retire_ring);
        p->retire_ring = NULL;
        p->retire_capacity = 0;
        p->retire_head = 0;
    }
}

size_t ot_reclaim_before_epoch(struct ot_part *p, uint64_t safe_epoch,
                               void (*reclaim)(void *ctx, node_id id, void *addr), void *ctx)
{
    node_id items[OT_RECLAIM_BATCH];
    size_t total = 0;
    bool more = true;
    while (more) {
        ot_lock(p);
        size_t taken = p->retire_count > 0 ? ot_retire_take(p, safe_epoch, items, &more) : 0;
        if (p->retire_count == 0)
            more = false;
        ot_retire_shrink(p);
        ot_unlock(p);
        for (size_t i = 0; i < taken; i++) {
            /* Validate again right before the callback: an earlier callback of this batch
             * may have freed it, or it was queued twice and its first copy just went. The
             * address is re-read too, in case the object moved since it was taken. */
            void *address = ot_resolve(p, items[i]);
            if (address == NULL)
                continue;
            if (reclaim != NULL)
                reclaim(ctx, items[i], address);
            ot_lock(p);
            if (ot_free_locked(p, items[i]))
                p->reclaimed++;
            ot_unlock(p);
            total++;
        }
    }
    return total;
}

size_t ot_retired_count(const struct ot_part *p)
{
    /* The lock is the one mutable member of a part a const caller may still take. */
    struct ot_part *mutable_part = (struct ot_part *)p;
    ot_lock(mutable_part);
    size_t count = p->retire_count;
    ot_unlock(mutable_part);
    return count;
}

void ot_part_stats(const struct ot_part *p, struct ot_stats *out)
{
    struct ot_part *mutable_part = (struct ot_part *)p;
    memset(out, 0, sizeof(*out));
    ot_lock(mutable_part);
    out->live = p->allocated - p->freed;
    out->allocated = p->allocated;
    out->freed = p->freed;
    out->retired = p->retired;
    out->reclaimed = p->reclaimed;
    size_t directory_touched =
        ((size_t)p->directory_high * sizeof(ot_chunk_pointer) + OT_PAGE_BYTES - 1) &
        ~(OT_PAGE_BYTES - 1);
    out->memory = sizeof(struct ot_part) + directory_touched +
                  (size_t)p->chunk_count * OT_CHUNK_BYTES +
                  p->retire_capacity * sizeof(struct ot_retired);
    ot_unlock(mutable_part);
    out->contended = atomic_load_explicit(&p->contended, memory_order_relaxed);
}

void ot_part_note_contention(struct ot_part *p, uint64_t times)
{
    atomic_fetch_add_explicit(&p->contended, times, memory_order_relaxed);
}

/* ---------------------------------------------------------------------------------------
 * The sharded table.
 * ------------------------------------------------------------------------------------- */

struct object_table *ot_new(unsigned nshards, unsigned activation_step)
{
    if (nshards == 0 || nshards > NODE_ID_MAX_SHARDS || (nshards & (nshards - 1)) != 0)
        return NULL;
    struct object_table *t = aligned_alloc(OT_CACHE_LINE, (sizeof(*t) + OT_CACHE_LINE - 1) &
                                                              ~(size_t)(OT_CACHE_LINE - 1));
    if (t == NULL)
        return NULL;
    memset(t, 0, sizeof(*t));
    if (pthread_mutex_init(&t->create_lock, NULL) != 0) {
        free(t);
        return NULL;
    }
    t->instance =
        ((atomic_fetch_add_explicit(&ot_instance_counter, 1, memory_order_relaxed) + 1) << 1) &
        OT_INSTANCE_MASK;
    if (t->instance == 0)
        t->instance = 2;
    t->shard_count = nshards;
    t->activation_step = activation_step ? activation_step : OT_DEFAULT_ACTIVATION_STEP;
    if (t->activation_step > OT_MAX_ACTIVATION_STEP)
        t->activation_step = OT_MAX_ACTIVATION_STEP;
    t->contention_threshold = t->activation_step / 32 ? t->activation_step / 32 : 1;
    atomic_init(&t->active, 1);
    atomic_init(&t->next_ticket, 0);
    for (unsigned i = 0; i < NODE_ID_MAX_SHARDS; i++)
        ot_part_zero(&t->parts[i], i);
    /* Part 0 is always set up: ot_alloc_auto falls back to it when another part cannot be. */
    if (!ot_part_setup(&t->parts[0])) {
        pthread_mutex_destroy(&t->create_lock);
        free(t);
        return NULL;
    }
    return t;
}

void ot_destroy(struct object_table *t)
{
    if (t == NULL)
        return;
    for (unsigned i = 0; i < NODE_ID_MAX_SHARDS; i++)
        ot_part_release(&t->parts[i]);
    pthread_mutex_destroy(&t->create_lock);
    free(t);
}

struct ot_part *ot_part(struct object_table *t, unsigned shard)
{
    if (shard >= t->shard_count)
        return NULL;
    struct ot_part *p = &t->parts[shard];
    if (__builtin_expect(atomic_load_explicit(&p->directory, memory_order_acquire) != NULL, 1))
        return p;
    pthread_mutex_lock(&t->create_lock);
    bool ready = atomic_load_explicit(&p->directory, memory_order_relaxed) != NULL ||
                 ot_part_setup(p);
    pthread_mutex_unlock(&t->create_lock);
    return ready ? p : NULL;
}

int ot_alloc_in(struct object_table *t, unsigned shard, void *addr, node_id *out)
{
    if (shard >= t->shard_count)
        return -EINVAL;
    struct ot_part *p = ot_part(t, shard);
    if (p == NULL)
        return -ENOMEM;
    return ot_alloc_one(p, addr, out);
}

/* Doubles the active shards unless another thread already did or all are active. */
static void ot_activate_more(struct object_table *t, unsigned seen_active)
{
    if (seen_active >= t->shard_count)
        return;
    unsigned expected = seen_active;
    atomic_compare_exchange_strong_explicit(&t->active, &expected, seen_active * 2,
                                            memory_order_acq_rel, memory_order_relaxed);
}

/* The slow path of ot_alloc_auto: first use of this table by this thread, or the end of
 * the thread's window of activation_step allocations. */
static __attribute__((noinline)) int
ot_alloc_auto_check(struct object_table *t, struct ot_thread_state *state, void *addr,
                    node_id *out)
{
    unsigned active = atomic_load_explicit(&t->active, memory_order_acquire);
    if ((state->window >> OT_WINDOW_BITS) != t->instance) {
        /* Another table's state (or none): start afresh for this one. */
        state->ticket = atomic_fetch_add_explicit(&t->next_ticket, 1, memory_order_relaxed);
        state->part = NULL;
    } else {
        uint64_t contended = atomic_load_explicit(&state->part->contended, memory_order_relaxed);
        if (contended - state->contended_seen >= t->contention_threshold) {
            ot_activate_more(t, active);
            active = atomic_load_explicit(&t->active, memory_order_acquire);
        }
    }
    struct ot_part *p = ot_part(t, state->ticket & (active - 1));
    if (p == NULL)
        p = &t->parts[0];
    state->part = p;
    state->contended_seen = atomic_load_explicit(&p->contended, memory_order_relaxed);
    /* This allocation opens the window; the check after it comes activation_step later. */
    state->window = (t->instance << OT_WINDOW_BITS) | (t->activation_step - 1);
    return ot_alloc_one(p, addr, out);
}

int ot_alloc_auto(struct object_table *t, void *addr, node_id *out)
{
    struct ot_thread_state *state = &ot_thread_state;
    uint64_t window = state->window - 1;
    if (__builtin_expect((window >> OT_WINDOW_BITS) == t->instance, 1)) {
        state->window = window;
        return ot_alloc(state->part, addr, out);
    }
    return ot_alloc_auto_check(t, state, addr, out);
}

void *ot_table_resolve(const struct object_table *t, node_id id)
{
    return ot_resolve(&t->parts[node_id_shard(id)], id);
}

void ot_table_free(struct object_table *t, node_id id)
{
    /* A part never set up has next_fresh == 0, so ot_free_locked frees nothing there. This
     * is a tail call (see ot_alloc for why it must stay one). */
    ot_free(&t->parts[node_id_shard(id)], id);
}

unsigned ot_active_shards(const struct object_table *t)
{
    return atomic_load_explicit(&((struct object_table *)t)->active, memory_order_relaxed);
}
