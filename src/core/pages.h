/*
 * pages.h -- anonymous memory for the engine's own allocators, on huge pages where it pays.
 *
 * A random read of a version or an index leaf costs a cache miss, and on 4 KiB pages also a
 * TLB miss: a page walk that is itself one or two more misses. Mapping the big, long-lived
 * regions (value segments, index node chunks) on 2 MiB transparent huge pages removes most
 * of those walks; `make bench` measured random gets 1.2-1.35x faster and scans 1.3-1.45x.
 *
 * Small databases must stay small, so the callers ask for huge pages only once a structure
 * has grown past its first region; a huge page is faulted in whole on first touch.
 * Where the kernel has transparent huge pages off (or the advice is unknown) the regions
 * are plain pages and everything works the same, only slower.
 *
 * Segments are mapped aligned to 2 MiB whether or not they are advised, so that the segment
 * holding any small object is found by rounding its address down (segment.h,
 * segment_owner): pages_map_aligned gives the alignment without the advice.
 *
 * The reserve: huge pages faulted in ahead. The first touch of a huge page zeroes 2 MiB at
 * once, and on a virtual machine whose host hands the guest fresh memory lazily that took
 * 4 to 5 ms (clear_page_erms under the fault): a writer that crossed into a new segment
 * stalled for that long, under its shard lock, and the server's event loop with it (its
 * p99 under pipelined SETs of new keys was 2.5x its p50). So while a database is open, one
 * background thread keeps PAGES_RESERVE_SPARES huge pages mapped, advised and faulted in,
 * and a request for exactly one huge page takes one of them (and asks for a replacement)
 * instead of faulting its own. When none is ready the caller maps and faults its own, as
 * before. At most PAGES_RESERVE_SPARES * 2 MiB are held beyond what the databases use, only
 * while they grow (spares untaken for PAGES_RESERVE_IDLE_MS are unmapped); they are not
 * counted in any allocator's bytes_reserved (nor in a memory limit), and are unmapped when
 * the last database closes.
 *
 * Thread-safety: pages_map*, pages_unmap and the reserve's functions may be called from any
 * thread; the reserve's state is behind its own mutex.
 */
#ifndef SHOAL_CORE_PAGES_H
#define SHOAL_CORE_PAGES_H

#include <stdbool.h>
#include <stddef.h>

/* The huge page size the mappings are aligned to. */
#define PAGES_HUGE_BYTES ((size_t)2 << 20)

/* Maps `bytes` of zeroed anonymous memory (bytes a multiple of 4 KiB). With `huge`, the
 * mapping is aligned to PAGES_HUGE_BYTES and advised for transparent huge pages (bytes
 * should then be a multiple of PAGES_HUGE_BYTES). Returns NULL when out of memory. */
void *pages_map(size_t bytes, bool huge);

/* Maps `bytes` of zeroed anonymous memory aligned to PAGES_HUGE_BYTES (bytes a multiple of
 * PAGES_HUGE_BYTES), advised for transparent huge pages only with `huge`. Returns NULL when
 * out of memory. */
void *pages_map_aligned(size_t bytes, bool huge);

/* Unmaps what pages_map or pages_map_aligned returned, with the same byte count. */
void pages_unmap(void *memory, size_t bytes);

/* Huge pages the reserve keeps faulted in while the databases grow. Shards filled by
 * uniformly spread keys cross into new segments at nearly the same moment: with 8 shards
 * under pipelined SETs, 1 spare left 20 of 40 requests to fault their own page, 2 left 9,
 * 4 left 2. A miss costs what every request cost before. */
#define PAGES_RESERVE_SPARES 4u
/* Spares nobody took for this long are unmapped until the next request for a huge page. */
#define PAGES_RESERVE_IDLE_MS 1000u

/* A database joins the reserve when it is created and leaves it when it is destroyed
 * (db.c). Requests made while no database is joined map their own pages. */
void pages_reserve_join(void);
void pages_reserve_leave(void);

/* Counters since the process started: spares faulted in by the reserve's thread, requests
 * for a huge page it served, requests it could not serve (none was ready), times it
 * unmapped idle spares, and the spares it holds now. */
struct pages_reserve_stats {
    unsigned long long prefaulted, taken, missed, dropped;
    unsigned spares;
};
void pages_reserve_stats(struct pages_reserve_stats *out);

#endif
