/*
 * segment.h -- the per-shard allocator for stored objects (values, versions, index nodes).
 *
 * One allocator per shard. It is NOT thread-safe: the caller holds the shard's write lock
 * for every call except segment_class_size() and segment_class_of(), which are pure.
 *
 * Small requests (1..SEGMENT_MAX_SMALL bytes) are rounded up to a size class and carved
 * from 2 MiB segments; they carry no header, so segment_free() must be given the size that
 * was passed to segment_alloc(). Larger requests take the large path (the C heap), counted
 * separately in the statistics. Every object is aligned to at least 8 bytes. See segment.c
 * for the class table and the invariants.
 *
 * Every object knows its allocator (segment_owner): a shard that is being compacted has two
 * allocators for a while, and a free must go to the one that owns the object. Segments are
 * mapped 2 MiB-aligned with the owner in their header; large objects carry it in theirs.
 */
#ifndef SHOAL_CORE_SEGMENT_H
#define SHOAL_CORE_SEGMENT_H

#include <stddef.h>

/* The largest request served from segments; anything larger takes the large path. */
#define SEGMENT_MAX_SMALL ((size_t)32768)
/* Bytes in one segment, including its small header. */
#define SEGMENT_BYTES ((size_t)2 << 20)
/* Number of small size classes: 32 classes 8 bytes apart up to 256, then 4 per power of
 * two from 256 to 32768 (7 doublings). */
#define SEGMENT_CLASS_COUNT 60u
/* The class number segment_class_of() gives a request above SEGMENT_MAX_SMALL. */
#define SEGMENT_LARGE SEGMENT_CLASS_COUNT

struct segment_allocator;

/* Counters of one allocator. Every field is exact at the time of the call.
 * - bytes_in_use: rounded class sizes of the live small objects plus the requested sizes of
 *   the live large objects (what the callers hold).
 * - bytes_reserved: bytes of all segments mapped so far plus large_bytes (what the process
 *   holds on the callers' behalf); bytes_reserved - bytes_in_use is the allocator's overhead
 *   including free slots waiting for reuse.
 * - objects: live objects, small and large.
 * - large_objects, large_bytes: the large path's share of objects and bytes_in_use. */
struct segment_stats {
    size_t bytes_in_use;
    size_t bytes_reserved;
    size_t objects;
    size_t large_objects;
    size_t large_bytes;
};

/* Creates an empty allocator; no segment is mapped until the first small allocation.
 * Returns NULL when out of memory. */
struct segment_allocator *segment_new(void);

/* Releases every segment and every live large object, then the allocator itself. Objects
 * still allocated become invalid. NULL is a no-op. */
void segment_destroy(struct segment_allocator *sa);

/* Returns size bytes aligned to at least 8, or NULL when out of memory. A size of 0 is
 * served as 1 byte (a distinct non-NULL pointer). Cost: O(1); a new segment is mapped once
 * per SEGMENT_BYTES of fresh small objects. */
void *segment_alloc(struct segment_allocator *sa, size_t size);

/* Returns p, obtained from segment_alloc(sa, size) with this same size, to the allocator.
 * A small slot goes to the front of its class's free list and is the next one handed out
 * for that class. NULL is a no-op. Cost: O(1). */
void segment_free(struct segment_allocator *sa, void *p, size_t size);

/* The number of bytes a request of size bytes really occupies: its class size for small
 * requests, size itself for large ones. Always >= size. Pure; any thread. */
size_t segment_class_size(size_t size);

/* The class number (0..SEGMENT_CLASS_COUNT-1) of a small request, SEGMENT_LARGE for a
 * request above SEGMENT_MAX_SMALL. Class numbers grow with size. Pure; any thread. */
unsigned segment_class_of(size_t size);

/* The allocator that owns p, an object of size bytes (the size given to segment_alloc) that
 * is still allocated: for a small object the header of the 2 MiB-aligned segment p lies in,
 * for a large one the object's own header. Cost: one load. Any thread that may read p; the
 * answer changes only through segment_adopt_large, under the owners' common lock. */
struct segment_allocator *segment_owner(const void *p, size_t size);

/* Moves the large object p (size > SEGMENT_MAX_SMALL, allocated and owned by another
 * allocator) into `to`: it leaves its owner's list and statistics, joins those of `to`, and
 * stays where it is (its address does not change). The caller holds the lock that covers
 * both allocators. Cost: O(1). */
void segment_adopt_large(struct segment_allocator *to, void *p, size_t size);

/* Fills *out with the allocator's counters. */
void segment_stats(const struct segment_allocator *sa, struct segment_stats *out);

#endif
