/*
 * pages.c -- anonymous mappings, 2 MiB-aligned and advised for huge pages on request, and
 * the reserve of huge pages faulted in ahead of need.
 *
 * An aligned mapping is made by mapping one huge page more than asked and unmapping the
 * misaligned head and the leftover tail, so the kernel can back the whole range with huge
 * pages. The advice is a hint: a kernel without it, or with THP set to "never", ignores it.
 * Alignment and advice are separate choices (pages_map_aligned): a shard's first segment is
 * aligned, so its objects can name their segment, but not advised, so a small shard stays
 * small.
 *
 * The reserve (pages.h). One per process, shared by its open databases (they join and
 * leave it; the last to leave stops its thread and unmaps what it holds). Guarded by
 * reserve.mutex: the spares, the thread's state and the counters. reserve.users also
 * changes only under reserve.life, which is held across the thread's start and join so that
 * a database opening while the last one closes never sees a half-stopped thread.
 * Invariants: 1. every spare is a PAGES_HUGE_BYTES mapping, aligned, advised, faulted in
 * and never written by the engine (so still zero); 2. count <= PAGES_RESERVE_SPARES;
 * 3. the thread runs only while users > 0 (started by the first huge mapping asked for,
 * not at open: a database that never grows past its first segments costs no thread);
 * 4. spares nobody took for PAGES_RESERVE_IDLE_MS are unmapped, and refilled at the next
 * request (a database that stopped growing holds none).
 *
 * Tested by tests/unit/test_pages.c and through the callers (test_segment, test_btree);
 * measured by `make bench` and `make bench-server` (docs/BENCHMARKS.md, "Huge pages
 * faulted in ahead").
 */
#include "core/pages.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/mman.h>
#include <time.h>

static void *pages_reserve_take(void);

/* Maps bytes, aligned to a huge page when `align`, advised for huge pages when `huge`. */
static void *pages_map_fresh(size_t bytes, bool align, bool huge)
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

/* A single huge page comes from the reserve when it has one; anything else, and a request
 * the reserve had no spare for, is mapped here and faulted in by its caller's first write.
 * (Mapping a miss on small pages instead, to spare the caller the huge fault, measured
 * worse: where writers keep both cores busy the reserve misses often, and a fill whose
 * segments were on small pages ran 30% slower.) */
static void *pages_map_with(size_t bytes, bool align, bool huge)
{
    if (huge && bytes == PAGES_HUGE_BYTES) {
        void *spare = pages_reserve_take();
        if (spare != NULL)
            return spare;
    }
    return pages_map_fresh(bytes, align, huge);
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

/* ---- the reserve ----------------------------------------------------------------------- */

static struct {
    pthread_mutex_t life;  /* held across users changes, the thread's start and its join */
    pthread_mutex_t mutex; /* everything below */
    pthread_cond_t wanted; /* a spare was taken, or stop was set */
    unsigned users;        /* databases joined */
    bool running;          /* the thread was started and not yet told to stop */
    bool stop;
    pthread_t thread;
    void *spares[PAGES_RESERVE_SPARES];
    unsigned count;
    struct pages_reserve_stats stats;
} reserve = {
    .life = PTHREAD_MUTEX_INITIALIZER,
    .mutex = PTHREAD_MUTEX_INITIALIZER,
    .wanted = PTHREAD_COND_INITIALIZER,
};

/* Maps one huge page and faults it in whole by writing a zero to each of its 4 KiB pages
 * (a huge page is taken at the first write; the others then cost a store each). Not
 * MADV_POPULATE_WRITE: that holds the process's mmap lock for the whole fault, 4-5 ms when
 * the host's memory is fresh, and every mmap or munmap of the writers (a new segment, an
 * index chunk, an object-table chunk) waited behind it; a fault by a write takes only the
 * mapping's own lock on current kernels. Measured: rounds of the server's loop over 4 ms,
 * 3 runs each, 6 / 3 / 2 with MADV_POPULATE_WRITE, 0 / 0 / 0 with the writes. */
static void *pages_prefault(void)
{
    char *p = pages_map_fresh(PAGES_HUGE_BYTES, true, true);
    if (p == NULL)
        return NULL;
    for (size_t off = 0; off < PAGES_HUGE_BYTES; off += 4096)
        ((volatile char *)p)[off] = 0;
    return p;
}

/* Unmaps the spares (mutex held): nothing asked for a huge page for PAGES_RESERVE_IDLE_MS,
 * so the databases have stopped growing and need not pay for the reserve meanwhile. */
static void pages_reserve_drop(void)
{
    while (reserve.count > 0)
        pages_unmap(reserve.spares[--reserve.count], PAGES_HUGE_BYTES);
}

/* Requests for a huge page so far, served or not (mutex held): the thread watches it. */
static unsigned long long pages_reserve_asked(void)
{
    return reserve.stats.taken + reserve.stats.missed;
}

/* Waits (mutex held) for a take or stop, at most PAGES_RESERVE_IDLE_MS (the realtime clock
 * of the static condition variable: a clock step only moves when idle spares go). True if
 * a take or stop came. */
static bool pages_reserve_wait_idle(void)
{
    unsigned long long asked = pages_reserve_asked();
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += PAGES_RESERVE_IDLE_MS / 1000;
    until.tv_nsec += (long)(PAGES_RESERVE_IDLE_MS % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    while (!reserve.stop && pages_reserve_asked() == asked)
        if (pthread_cond_timedwait(&reserve.wanted, &reserve.mutex, &until) == ETIMEDOUT)
            break;
    return reserve.stop || pages_reserve_asked() != asked;
}

static void *pages_reserve_main(void *unused)
{
    (void)unused;
    pthread_setname_np(pthread_self(), "shoal-pages");
    pthread_mutex_lock(&reserve.mutex);
    while (!reserve.stop) {
        if (reserve.count == PAGES_RESERVE_SPARES) {
            if (!pages_reserve_wait_idle()) {
                pages_reserve_drop();
                reserve.stats.dropped++;
                /* Until the next request for a huge page. */
                unsigned long long asked = pages_reserve_asked();
                while (!reserve.stop && pages_reserve_asked() == asked)
                    pthread_cond_wait(&reserve.wanted, &reserve.mutex);
            }
            continue;
        }
        pthread_mutex_unlock(&reserve.mutex);
        void *p = pages_prefault();
        pthread_mutex_lock(&reserve.mutex);
        if (p == NULL) {
            /* Out of memory: the callers' own mappings will say so; wait for a take. */
            pthread_cond_wait(&reserve.wanted, &reserve.mutex);
            continue;
        }
        reserve.spares[reserve.count++] = p;
        reserve.stats.prefaulted++;
    }
    pthread_mutex_unlock(&reserve.mutex);
    return NULL;
}

/* A spare, or NULL (none ready, or no database joined); asks the thread for another. */
static void *pages_reserve_take(void)
{
    void *p = NULL;
    pthread_mutex_lock(&reserve.mutex);
    if (reserve.users > 0) {
        if (reserve.count > 0) {
            p = reserve.spares[--reserve.count];
            reserve.stats.taken++;
        } else {
            reserve.stats.missed++;
        }
        if (!reserve.running && !reserve.stop &&
            pthread_create(&reserve.thread, NULL, pages_reserve_main, NULL) == 0)
            reserve.running = true;
        pthread_cond_signal(&reserve.wanted);
    }
    pthread_mutex_unlock(&reserve.mutex);
    return p;
}

void pages_reserve_join(void)
{
    pthread_mutex_lock(&reserve.life);
    pthread_mutex_lock(&reserve.mutex);
    reserve.users++;
    pthread_mutex_unlock(&reserve.mutex);
    pthread_mutex_unlock(&reserve.life);
}

void pages_reserve_leave(void)
{
    pthread_mutex_lock(&reserve.life);
    pthread_mutex_lock(&reserve.mutex);
    bool last = --reserve.users == 0;
    bool running = last && reserve.running;
    if (running) {
        reserve.stop = true;
        reserve.running = false;
        pthread_cond_signal(&reserve.wanted);
    }
    pthread_mutex_unlock(&reserve.mutex);
    if (running)
        pthread_join(reserve.thread, NULL);
    if (last) {
        pthread_mutex_lock(&reserve.mutex);
        pages_reserve_drop();
        reserve.stop = false;
        pthread_mutex_unlock(&reserve.mutex);
    }
    pthread_mutex_unlock(&reserve.life);
}

void pages_reserve_stats(struct pages_reserve_stats *out)
{
    pthread_mutex_lock(&reserve.mutex);
    *out = reserve.stats;
    out->spares = reserve.count;
    pthread_mutex_unlock(&reserve.mutex);
}
