/*
 * segment.c -- size-class allocator carving stored objects out of 2 MiB segments.
 *
 * Purpose
 * -------
 * Each shard stores millions of small objects (value versions of a few dozen to a few
 * hundred bytes, index nodes of a few KiB). The C heap spends 8-16 bytes of header per
 * object and keeps the shard's memory interleaved with everyone else's. This allocator
 * gives a shard its own memory, O(1) allocate and free, and no per-object header: for a
 * million 148-byte values it holds 152 MB (the class size) plus 16 bytes per 2 MiB segment.
 * It is not thread-safe; the shard's write lock serialises every call.
 *
 * Size classes
 * ------------
 * Classes 0..31 are 8 bytes apart: 8, 16, ..., 256. Above 256 bytes each power-of-two
 * range (2^k, 2^(k+1)] is split into four classes 2^(k-2) apart, for k = 8..14:
 * 320, 384, 448, 512, 640, 768, 896, 1024, ..., 20480, 24576, 28672, 32768. A class is at
 * most 25% (just above a power of two) and at least 12.5% (just below the next) larger than
 * the class before it, so the rounding loss is bounded by 25% and averages about 10%.
 * Requests above 32 KiB take the large path: malloc with a 32-byte header that links the
 * object into a list, so that segment_destroy() can release what callers never freed, and
 * names its owner; segment_adopt_large() moves it to another allocator's list in place.
 * segment_class_of() is a few shifts (no table, no loop).
 *
 * Segments
 * --------
 * A segment is a 2 MiB anonymous mapping (so its pages are zero and untouched until used),
 * aligned to 2 MiB; every segment after a shard's first is also advised for a huge page
 * (pages.h). Its first 16 bytes link it into the allocator's list of segments and name the
 * allocator that owns it; the remaining bytes are carved front to back by a bump pointer
 * shared by all classes. Because of the alignment, the segment of any small object is its
 * address rounded down to 2 MiB, and so its owner is one load away (segment_owner). When the current segment
 * cannot fit a request, its tail is cut into the largest classes that fit and pushed on
 * their free lists (so nothing is lost), and a fresh segment becomes current.
 *
 * Free slots are kept on one intrusive singly linked LIFO list per class: the first 8
 * bytes of a free slot point to the next free slot. Allocation pops from the list before
 * it bumps, so the most recently freed slot (likely still in cache) is reused first.
 *
 * Placement
 * ---------
 * The allocator itself is written on every allocation and free, by the writers of its
 * shard only. segment_new gives it whole cache lines of its own (aligned_alloc, the struct
 * padded to a multiple of 64 bytes, 576 bytes instead of 560). With calloc, the allocators
 * and namespaces of two shards came out of the heap side by side: in one run of
 * shoal-bench's disjoint benchmark the line holding shard 0's counters (small_bytes_in_use,
 * small_objects) also held the slot number of the namespace on shard 1, which the other
 * writer reads on every put, so the line moved between the two cores on every write.
 * Together with the namespace parts and tenants (internal.h I5), shoal-bench --only
 * disjoint's two writers went faster in 13 of 18 runs of old and new binaries alternated on
 * the shared 2-core machine (load 3 to 6), and its ratio to one writer from a median of
 * 1.25 to 1.39; the size of the gain is within that machine's noise (docs/BENCHMARKS.md).
 *
 * Invariants
 * ----------
 * 1. segment_class_size(size) >= size for every size, and class sizes grow strictly with
 *    the class number; every class size is a multiple of 8, so every small object (carved
 *    at 8-byte offsets from a page-aligned segment) is 8-byte aligned.
 * 2. A slot is on at most one free list, the list of its own class, and only while no
 *    caller holds it.
 * 3. bytes_in_use == sum of class sizes of live small objects + large_bytes, and
 *    bytes_reserved == segment_count * SEGMENT_BYTES + large_bytes, at every return.
 * 4. Segments are never unmapped before segment_destroy(), so a slot's memory stays
 *    mapped for the allocator's whole life (readers that race a free read stale bytes,
 *    never unmapped memory).
 * 5. Every segment starts at a multiple of SEGMENT_BYTES and its header names the
 *    allocator that mapped it; every large object's header names the allocator whose list
 *    holds it. So segment_owner(p) is the allocator whose statistics count p.
 *
 * Under AddressSanitizer, free slots and the unused part of a segment are poisoned, so a
 * use after free or an overflow into a neighbour is reported like a heap error.
 *
 * Testing: tests/unit/test_cache_lines.c checks that allocators made one after another
 * start lines of their own. tests/unit/test_segment.c checks the class table for every
 * size up to 64 KiB, allocation, LIFO reuse, the large path, exact statistics after mixed
 * operations, the memory overhead of a million 148-byte objects, and many segments;
 * test_compact.c checks segment_owner() and segment_adopt_large().
 */
#include "core/segment.h"

#include "core/pages.h"

#include <assert.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define SEGMENT_POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define SEGMENT_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define SEGMENT_POISON(p, n) ((void)(p), (void)(n))
#define SEGMENT_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

/* Bytes at the start of each segment that link it into the allocator's list and name its
 * owner: a multiple of 16, so that the first object starts at the alignment malloc gives. */
#define SEGMENT_HEADER_BYTES ((size_t)16)
/* Pages faulted in ahead of the bump pointer at a time (segment_populate). */
#define SEGMENT_POPULATE_BYTES ((size_t)128 << 10)
/* Header in front of each large object; a multiple of 16 keeps malloc's alignment. */
#define SEGMENT_LARGE_HEADER_BYTES ((size_t)32)
/* The classes 8 bytes apart end at this size. */
#define SEGMENT_FINE_LIMIT ((size_t)256)
#define SEGMENT_FINE_CLASSES 32u

struct segment_header {
    struct segment_header *next;
    struct segment_allocator *owner; /* invariant 5 */
};

struct segment_large_header {
    struct segment_large_header *prev;
    struct segment_large_header *next;
    size_t size;
    struct segment_allocator *owner; /* invariant 5 */
};

_Static_assert(sizeof(struct segment_header) <= SEGMENT_HEADER_BYTES,
               "the segment header fits in the bytes reserved for it");
_Static_assert(sizeof(struct segment_large_header) == SEGMENT_LARGE_HEADER_BYTES,
               "the large header keeps malloc's alignment");
_Static_assert(SEGMENT_BYTES == PAGES_HUGE_BYTES,
               "segments are mapped aligned to their own size");

struct segment_free_slot {
    struct segment_free_slot *next;
};

/* Shards' allocators are written on every write of their shard, by the writers of that
 * shard only; an allocator starts on a cache line of its own and is padded to whole lines,
 * so that no other shard's allocator or any other hot structure shares a line with it
 * (segment_new). */
#define SEGMENT_CACHE_LINE ((size_t)64)

struct segment_allocator {
    /* Invariant 2: one LIFO list of free slots per class. */
    _Alignas(SEGMENT_CACHE_LINE) struct segment_free_slot *free_lists[SEGMENT_CLASS_COUNT];
    /* The current segment's unused range [bump, bump_end). */
    char *bump;
    char *bump_end;
    char *populated_end; /* pages of the current segment faulted in ahead of the bump */
    struct segment_header *segments;
    struct segment_large_header *large_objects_list;
    size_t segment_count;
    size_t small_bytes_in_use;
    size_t small_objects;
    size_t large_objects;
    size_t large_bytes;
};

unsigned segment_class_of(size_t size)
{
    if (size <= SEGMENT_FINE_LIMIT)
        return size == 0 ? 0u : (unsigned)((size - 1) >> 3);
    if (size > SEGMENT_MAX_SMALL)
        return SEGMENT_LARGE;
    /* For size in (2^k, 2^(k+1)], size - 1 has its top bit at k, and the two bits below it
     * pick one of the four classes of that range. */
    size_t below = size - 1;
    unsigned top_bit = 63u - (unsigned)__builtin_clzll((unsigned long long)below);
    unsigned quarter = (unsigned)(below >> (top_bit - 2)) & 3u;
    return SEGMENT_FINE_CLASSES + (top_bit - 8u) * 4u + quarter;
}

/* The size of class class_number (which must be below SEGMENT_CLASS_COUNT). */
static size_t segment_size_of_class(unsigned class_number)
{
    assert(class_number < SEGMENT_CLASS_COUNT);
    if (class_number < SEGMENT_FINE_CLASSES)
        return ((size_t)class_number + 1) * 8;
    unsigned coarse = class_number - SEGMENT_FINE_CLASSES;
    unsigned power = 8u + coarse / 4u;
    return ((size_t)1 << power) + ((size_t)(coarse % 4u) + 1) * ((size_t)1 << (power - 2));
}

size_t segment_class_size(size_t size)
{
    unsigned class_number = segment_class_of(size);
    if (class_number == SEGMENT_LARGE)
        return size;
    return segment_size_of_class(class_number);
}

_Static_assert(sizeof(struct segment_allocator) % SEGMENT_CACHE_LINE == 0,
               "an allocator fills whole cache lines");

struct segment_allocator *segment_new(void)
{
    /* calloc would place two shards' allocators (made one after the other when their shards
     * are first used) next to each other, and a line holding the counters at the end of one
     * and the free lists at the start of the next would bounce between their writers. */
    struct segment_allocator *sa =
        aligned_alloc(SEGMENT_CACHE_LINE, sizeof(struct segment_allocator));
    if (sa != NULL)
        memset(sa, 0, sizeof(*sa));
    return sa;
}

void segment_destroy(struct segment_allocator *sa)
{
    if (sa == NULL)
        return;
    struct segment_header *segment = sa->segments;
    while (segment != NULL) {
        struct segment_header *next = segment->next;
        /* A later mapping at the same address must not inherit the poison. */
        SEGMENT_UNPOISON(segment, SEGMENT_BYTES);
        pages_unmap(segment, SEGMENT_BYTES);
        segment = next;
    }
    struct segment_large_header *large = sa->large_objects_list;
    while (large != NULL) {
        struct segment_large_header *next = large->next;
        free(large);
        large = next;
    }
    free(sa);
}

static void segment_push_free(struct segment_allocator *sa, unsigned class_number, void *p)
{
    struct segment_free_slot *slot = p;
    SEGMENT_UNPOISON(slot, sizeof(*slot));
    slot->next = sa->free_lists[class_number];
    sa->free_lists[class_number] = slot;
    SEGMENT_POISON(slot, segment_size_of_class(class_number));
}

/* Cuts the current segment's unused tail into the largest classes that fit and frees them,
 * so that retiring a segment loses nothing but a remainder below 8 bytes (there is none:
 * every offset is a multiple of 8). Each piece is at least 4/5 of what remains, so the loop
 * runs a handful of times. */
static void segment_recycle_tail(struct segment_allocator *sa)
{
    size_t remaining = (size_t)(sa->bump_end - sa->bump);
    while (remaining >= 8) {
        unsigned class_number = segment_class_of(remaining < SEGMENT_MAX_SMALL
                                                     ? remaining
                                                     : SEGMENT_MAX_SMALL);
        if (segment_size_of_class(class_number) > remaining)
            class_number--;
        size_t piece = segment_size_of_class(class_number);
        segment_push_free(sa, class_number, sa->bump);
        sa->bump += piece;
        remaining -= piece;
    }
    sa->bump = sa->bump_end = NULL;
}

/* Faults in the next SEGMENT_POPULATE_BYTES of the current segment with one call
 * (MADV_POPULATE_WRITE) instead of one page fault per 4 KiB page: page faults take
 * process-wide kernel locks, and writers of different shards faulting page by page
 * serialized on them. At most one step per shard is faulted in before it is used. Kernels
 * without the advice fault page by page as before. */
static void segment_populate(struct segment_allocator *sa)
{
    char *from = sa->populated_end;
    char *to = from + SEGMENT_POPULATE_BYTES;
    if (to > sa->bump_end)
        to = sa->bump_end;
    while (to < sa->bump)
        to += SEGMENT_POPULATE_BYTES;
    if (to > sa->bump_end)
        to = sa->bump_end;
#ifdef MADV_POPULATE_WRITE
    if (to > from)
        madvise(from, (size_t)(to - from), MADV_POPULATE_WRITE);
#endif
    sa->populated_end = to;
}

/* Maps a fresh segment and makes it current. Returns false when out of memory. */
static bool segment_grow(struct segment_allocator *sa)
{
    /* The first segment stays on small pages so that a shard holding a few keys costs
     * a few pages; later ones go on huge pages (pages.h). */
    void *mapping = pages_map_aligned(SEGMENT_BYTES, sa->segment_count > 0);
    if (mapping == NULL)
        return false;
    if (sa->bump != NULL)
        segment_recycle_tail(sa);
    struct segment_header *segment = mapping;
    segment->next = sa->segments;
    segment->owner = sa;
    sa->segments = segment;
    sa->segment_count++;
    sa->bump = (char *)mapping + SEGMENT_HEADER_BYTES;
    sa->bump_end = (char *)mapping + SEGMENT_BYTES;
    sa->populated_end = (char *)mapping;
    SEGMENT_POISON(sa->bump, (size_t)(sa->bump_end - sa->bump));
    return true;
}

/* Puts a large object's header at the front of sa's list and counts it there. */
static void segment_large_link(struct segment_allocator *sa, struct segment_large_header *header)
{
    header->prev = NULL;
    header->next = sa->large_objects_list;
    header->owner = sa;
    if (sa->large_objects_list != NULL)
        sa->large_objects_list->prev = header;
    sa->large_objects_list = header;
    sa->large_objects++;
    sa->large_bytes += header->size;
}

/* Takes a large object's header out of sa's list and counts. */
static void segment_large_unlink(struct segment_allocator *sa,
                                 struct segment_large_header *header)
{
    assert(header->owner == sa);
    if (header->prev != NULL)
        header->prev->next = header->next;
    else
        sa->large_objects_list = header->next;
    if (header->next != NULL)
        header->next->prev = header->prev;
    sa->large_objects--;
    sa->large_bytes -= header->size;
}

static void *segment_alloc_large(struct segment_allocator *sa, size_t size)
{
    if (size > SIZE_MAX - SEGMENT_LARGE_HEADER_BYTES)
        return NULL;
    struct segment_large_header *header = malloc(SEGMENT_LARGE_HEADER_BYTES + size);
    if (header == NULL)
        return NULL;
    header->size = size;
    segment_large_link(sa, header);
    return (char *)header + SEGMENT_LARGE_HEADER_BYTES;
}

static struct segment_large_header *segment_large_header_of(const void *p)
{
    return (struct segment_large_header *)((char *)p - SEGMENT_LARGE_HEADER_BYTES);
}

static void segment_free_large(struct segment_allocator *sa, void *p, size_t size)
{
    struct segment_large_header *header = segment_large_header_of(p);
    assert(header->size == size);
    segment_large_unlink(sa, header);
    free(header);
}

void segment_adopt_large(struct segment_allocator *to, void *p, size_t size)
{
    struct segment_large_header *header = segment_large_header_of(p);
    assert(size > SEGMENT_MAX_SMALL && header->size == size);
    if (header->owner == to)
        return;
    segment_large_unlink(header->owner, header);
    segment_large_link(to, header);
}

struct segment_allocator *segment_owner(const void *p, size_t size)
{
    if (size > SEGMENT_MAX_SMALL)
        return segment_large_header_of(p)->owner;
    const struct segment_header *segment =
        (const struct segment_header *)((uintptr_t)p & ~(uintptr_t)(SEGMENT_BYTES - 1));
    return segment->owner;
}

void *segment_alloc(struct segment_allocator *sa, size_t size)
{
    unsigned class_number = segment_class_of(size);
    if (class_number == SEGMENT_LARGE)
        return segment_alloc_large(sa, size);
    size_t class_bytes = segment_size_of_class(class_number);
    struct segment_free_slot *slot = sa->free_lists[class_number];
    if (slot != NULL) {
        SEGMENT_UNPOISON(slot, class_bytes);
        sa->free_lists[class_number] = slot->next;
    } else {
        if ((size_t)(sa->bump_end - sa->bump) < class_bytes && !segment_grow(sa))
            return NULL;
        slot = (struct segment_free_slot *)sa->bump;
        sa->bump += class_bytes;
        if (sa->bump > sa->populated_end)
            segment_populate(sa);
        SEGMENT_UNPOISON(slot, class_bytes);
    }
    sa->small_objects++;
    sa->small_bytes_in_use += class_bytes;
    return slot;
}

void segment_free(struct segment_allocator *sa, void *p, size_t size)
{
    if (p == NULL)
        return;
    unsigned class_number = segment_class_of(size);
    if (class_number == SEGMENT_LARGE) {
        segment_free_large(sa, p, size);
        return;
    }
    assert(((uintptr_t)p & 7u) == 0);
    assert(sa->small_objects > 0);
    assert(segment_owner(p, size) == sa);
    segment_push_free(sa, class_number, p);
    sa->small_objects--;
    sa->small_bytes_in_use -= segment_size_of_class(class_number);
}

void segment_stats(const struct segment_allocator *sa, struct segment_stats *out)
{
    memset(out, 0, sizeof(*out));
    out->bytes_in_use = sa->small_bytes_in_use + sa->large_bytes;
    out->bytes_reserved = sa->segment_count * SEGMENT_BYTES + sa->large_bytes;
    out->objects = sa->small_objects + sa->large_objects;
    out->large_objects = sa->large_objects;
    out->large_bytes = sa->large_bytes;
}
