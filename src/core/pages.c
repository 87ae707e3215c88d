/*
 * pages.c -- anonymous mappings, 2 MiB-aligned and advised for huge pages on request.
 *
 * An aligned mapping is made by mapping one huge page more than asked and unmapping the
 * misaligned head and the leftover tail, so the kernel can back the whole range with huge
 * pages. The advice is a hint: a kernel without it, or with THP set to "never", ignores it.
 * Alignment and advice are separate choices (pages_map_aligned): a shard's first segment is
 * aligned, so its objects can name their segment, but not advised, so a small shard stays
 * small.
 *
 * Tested through its callers (test_segment, test_btree) and measured by `make bench`.
 */
#include "core/pages.h"

#include <stdint.h>
#include <sys/mman.h>

/* Maps bytes, aligned to a huge page when `align`, advised for huge pages when `huge`. */
static void *pages_map_with(size_t bytes, bool align, bool huge)
{
    size_t span = align ? bytes + PAGES_HUGE_BYTES : bytes;
    char *raw = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED)
        return NULL;
    if (!align)
        return raw;
    char *aligned = (char *)(((uintptr_t)raw + PAGES_HUGE_BYTES - 1) &
                             ~(uintptr_t)(PAGES_HUGE_BYTES - 1));
    if (aligned > raw)
        munmap(raw, (size_t)(aligned - raw));
    char *end = aligned + bytes;
    if (raw + span > end)
        munmap(end, (size_t)(raw + span - end));
#ifdef MADV_HUGEPAGE
    if (huge)
        madvise(aligned, bytes, MADV_HUGEPAGE);
#endif
    return aligned;
}

void *pages_map(size_t bytes, bool huge)
{
    return pages_map_with(bytes, huge, huge);
}

void *pages_map_aligned(size_t bytes, bool huge)
{
    return pages_map_with(bytes, true, huge);
}

void pages_unmap(void *memory, size_t bytes)
{
    if (memory != NULL)
        munmap(memory, bytes);
}
