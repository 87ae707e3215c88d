/*
 * bench_util.c -- small helpers of shoal-bench: the clock, resident set sizes, temporary
 * directories and the watchdog that bounds a run in time.
 *
 * Invariants:
 *   1. A temporary directory lives under /tmp, is created fresh (mkdtemp), and is removed
 *      by the code that created it; bench_remove_tree refuses any path outside
 *      /tmp/shoal-bench-, so a wrong argument can never remove anything else.
 *   2. When the watchdog fires, the child process registered with bench_set_child (a
 *      redis-server started by the benchmark) is stopped before the program exits, so a
 *      run that hangs leaves no server behind. The handler uses only async-signal-safe
 *      calls (kill, write, _exit).
 *
 * How it is tested: through `shoal-bench --selftest`, which makes and removes a directory
 * per anchor, and by every full run.
 */
#include "bench.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define BENCH_TEMP_PREFIX "/tmp/shoal-bench-"

uint64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t bench_rss_bytes(pid_t pid)
{
    char path[64];
    if (pid == 0)
        snprintf(path, sizeof path, "/proc/self/statm");
    else
        snprintf(path, sizeof path, "/proc/%ld/statm", (long)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    unsigned long size_pages = 0, resident_pages = 0;
    int fields = fscanf(f, "%lu %lu", &size_pages, &resident_pages);
    fclose(f);
    if (fields != 2)
        return 0;
    return (uint64_t)resident_pages * (uint64_t)sysconf(_SC_PAGESIZE);
}

int bench_temp_dir(char *buf, size_t cap)
{
    int n = snprintf(buf, cap, "%sXXXXXX", BENCH_TEMP_PREFIX);
    if (n < 0 || (size_t)n >= cap) {
        fprintf(stderr, "# temp dir: buffer too small\n");
        return -1;
    }
    if (!mkdtemp(buf)) {
        fprintf(stderr, "# temp dir: mkdtemp: %s\n", strerror(errno));
        return -1;
    }
    return 0;
}

static int bench_remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    int rc = (type == FTW_DP) ? rmdir(path) : unlink(path);
    if (rc != 0)
        fprintf(stderr, "# remove %s: %s\n", path, strerror(errno));
    return 0; /* keep going: remove as much as possible */
}

int bench_remove_tree(const char *dir)
{
    /* Invariant 1: only our own directories, and never a path that climbs out of them. */
    if (strncmp(dir, BENCH_TEMP_PREFIX, strlen(BENCH_TEMP_PREFIX)) != 0 || strstr(dir, "..") ||
        strchr(dir + strlen(BENCH_TEMP_PREFIX), '/')) {
        fprintf(stderr, "# refusing to remove %s\n", dir);
        return -1;
    }
    if (nftw(dir, bench_remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0) {
        fprintf(stderr, "# remove %s: %s\n", dir, strerror(errno));
        return -1;
    }
    return 0;
}

static volatile sig_atomic_t bench_child_pid;

void bench_set_child(pid_t pid)
{
    bench_child_pid = (sig_atomic_t)pid;
}

static void bench_watchdog_fire(int signo)
{
    (void)signo;
    static const char message[] = "# shoal-bench: time limit reached, stopping\n";
    pid_t child = (pid_t)bench_child_pid;
    if (child > 0)
        kill(child, SIGKILL);
    ssize_t ignored = write(STDERR_FILENO, message, sizeof message - 1);
    (void)ignored;
    _exit(3);
}

void bench_watchdog(unsigned seconds)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = bench_watchdog_fire;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL);
    alarm(seconds);
}

int bench_dataset_make(bench_dataset *d, size_t count, uint64_t seed)
{
    d->count = count;
    d->seed = seed;
    d->keys = malloc(count * BENCH_KEY_SIZE);
    d->values = malloc(count * BENCH_VALUE_SIZE);
    if (!d->keys || !d->values) {
        free(d->keys);
        free(d->values);
        fprintf(stderr, "# out of memory for the dataset\n");
        return -1;
    }
    for (size_t i = 0; i < count; i++) {
        bench_key_make(seed, i, d->keys + i * BENCH_KEY_SIZE);
        bench_value_make(seed, i, d->values + i * BENCH_VALUE_SIZE);
    }
    return 0;
}

void bench_dataset_free(bench_dataset *d)
{
    free(d->keys);
    free(d->values);
}

uint32_t *bench_order_make(size_t count, uint64_t seed)
{
    uint32_t *order = malloc(count * sizeof *order);
    if (!order) {
        fprintf(stderr, "# out of memory for a random order\n");
        return NULL;
    }
    for (size_t i = 0; i < count; i++)
        order[i] = (uint32_t)i;
    uint64_t draw = 0;
    for (size_t i = count - 1; i > 0; i--) {
        size_t j = (size_t)(((bench_word(seed, draw++) >> 32) * (uint64_t)(i + 1)) >> 32);
        uint32_t t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    return order;
}

double bench_memory_latency_ns(size_t bytes)
{
    /* One pointer per cache line, linked in a random cycle, so that every load depends on
     * the one before and the hardware prefetchers cannot guess the next line. */
    size_t lines = bytes / 64;
    size_t huge = (size_t)2 << 20;
    uint8_t *raw = mmap(NULL, bytes + huge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                        -1, 0);
    uint32_t *cycle = lines >= 2 ? bench_order_make(lines, 0x1A7E9C1Full) : NULL;
    if (raw == MAP_FAILED || !cycle) {
        if (raw != MAP_FAILED)
            munmap(raw, bytes + huge);
        free(cycle);
        return -1;
    }
    uint8_t *base = (uint8_t *)(((uintptr_t)raw + huge - 1) & ~(uintptr_t)(huge - 1));
#ifdef MADV_HUGEPAGE
    madvise(base, bytes, MADV_HUGEPAGE); /* as the engines' big regions are, where they ask */
#endif
    for (size_t i = 0; i < lines; i++)
        *(uint8_t **)(base + (size_t)cycle[i] * 64) = base + (size_t)cycle[(i + 1) % lines] * 64;
    free(cycle);
    const size_t loads = 2000000;
    uint8_t *p = base;
    for (size_t i = 0; i < loads / 4; i++) /* warm the page tables */
        p = *(uint8_t **)p;
    uint64_t start = bench_now_ns();
    for (size_t i = 0; i < loads; i++)
        p = *(uint8_t **)p;
    double ns = (double)(bench_now_ns() - start) / (double)loads;
    uint8_t *volatile sink = p;
    (void)sink;
    munmap(raw, bytes + huge);
    return ns;
}
