/*
 * replay.c -- runs a fuzz target without libFuzzer: over its seed corpus, then over
 * mutations of the seeds drawn from a fixed-seed generator, so every run of the default
 * test tier checks the same inputs (and any compiler, sanitizer build included, can run
 * it). `make fuzz` runs the same targets under libFuzzer, which searches far wider; a
 * crash it finds is kept by adding the input to the target's corpus directory.
 *
 * Usage: fuzz-<target>-replay [--mutations N] corpus-dir-or-file...
 *   N mutated inputs per seed (default 2000). Exit 0 when every input passed. A failing
 *   check aborts the process; before it dies it names the seed and writes the input it
 *   was on to ./replay-failure-<pid>, which the target (libFuzzer build or this one) runs
 *   alone when given as the only file.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"

#define REPLAY_MAX_SEEDS 4096
#define REPLAY_MAX_INPUT (64u * 1024u)

struct replay_seed {
    uint8_t *bytes;
    size_t length;
    char *name;
};

static struct replay_seed replay_seeds[REPLAY_MAX_SEEDS];
static size_t replay_seed_count;

static void replay_fail(const char *what, const char *name)
{
    fprintf(stderr, "replay: %s: %s: %s\n", what, name, strerror(errno));
    exit(2);
}

static void replay_add_file(const char *path)
{
    FILE *file = fopen(path, "rb");
    if (file == NULL)
        replay_fail("cannot open", path);
    uint8_t *bytes = malloc(REPLAY_MAX_INPUT);
    if (bytes == NULL)
        replay_fail("out of memory", path);
    size_t length = fread(bytes, 1, REPLAY_MAX_INPUT, file);
    if (ferror(file))
        replay_fail("cannot read", path);
    fclose(file);
    if (replay_seed_count == REPLAY_MAX_SEEDS) {
        fprintf(stderr, "replay: more than %d seeds\n", REPLAY_MAX_SEEDS);
        exit(2);
    }
    replay_seeds[replay_seed_count++] =
        (struct replay_seed){.bytes = bytes, .length = length, .name = strdup(path)};
}

static int replay_compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Adds a file, or every regular file of a directory in name order. */
static void replay_add(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0)
        replay_fail("cannot stat", path);
    if (!S_ISDIR(st.st_mode)) {
        replay_add_file(path);
        return;
    }
    DIR *dir = opendir(path);
    if (dir == NULL)
        replay_fail("cannot open", path);
    char *names[REPLAY_MAX_SEEDS];
    size_t count = 0;
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL && count < REPLAY_MAX_SEEDS) {
        if (entry->d_name[0] == '.')
            continue;
        size_t length = strlen(path) + strlen(entry->d_name) + 2;
        names[count] = malloc(length);
        if (names[count] == NULL)
            replay_fail("out of memory", path);
        snprintf(names[count], length, "%s/%s", path, entry->d_name);
        count++;
    }
    closedir(dir);
    qsort(names, count, sizeof(names[0]), replay_compare_names);
    for (size_t i = 0; i < count; i++) {
        replay_add_file(names[i]);
        free(names[i]);
    }
}

static uint64_t replay_state = 0x9E3779B97F4A7C15ull;

static uint64_t replay_next(void)
{
    replay_state ^= replay_state << 13;
    replay_state ^= replay_state >> 7;
    replay_state ^= replay_state << 17;
    return replay_state;
}

static size_t replay_below(size_t bound)
{
    return bound ? (size_t)(replay_next() % bound) : 0;
}

/* Bytes that mean something to the formats under test. */
static const uint8_t replay_interesting[] = {0,   1,   0x7f, 0x80, 0xff, '\r', '\n', '*', '$',
                                             '-', '+', ':',  '"',  '\'', '\\', ' ',  '0', '9'};

/* One mutation of seed into out (capacity REPLAY_MAX_INPUT); returns the new length. */
static size_t replay_mutate(const struct replay_seed *seed, uint8_t *out)
{
    size_t length = seed->length;
    memcpy(out, seed->bytes, length);
    unsigned steps = 1 + (unsigned)replay_below(4);
    for (unsigned s = 0; s < steps; s++) {
        size_t at = replay_below(length + 1);
        switch (replay_below(7)) {
        case 0: /* flip a bit */
            if (length > 0)
                out[replay_below(length)] ^= (uint8_t)(1u << replay_below(8));
            break;
        case 1: /* a meaningful byte */
            if (length > 0)
                out[replay_below(length)] =
                    replay_interesting[replay_below(sizeof(replay_interesting))];
            break;
        case 2: /* insert a byte */
            if (length < REPLAY_MAX_INPUT) {
                memmove(out + at + 1, out + at, length - at);
                out[at] = replay_interesting[replay_below(sizeof(replay_interesting))];
                length++;
            }
            break;
        case 3: { /* delete a range */
            size_t n = replay_below(length - at + 1);
            memmove(out + at, out + at + n, length - at - n);
            length -= n;
            break;
        }
        case 4: { /* repeat a range */
            size_t n = replay_below(length - at + 1);
            if (length + n <= REPLAY_MAX_INPUT) {
                memmove(out + at + n, out + at, length - at);
                length += n;
            }
            break;
        }
        case 5: /* cut the end */
            length = at;
            break;
        default: { /* splice the start of another seed in */
            const struct replay_seed *other = &replay_seeds[replay_below(replay_seed_count)];
            size_t n = replay_below(other->length + 1);
            if (at + n <= REPLAY_MAX_INPUT) {
                memcpy(out + at, other->bytes, n);
                if (at + n > length)
                    length = at + n;
            }
            break;
        }
        }
    }
    return length;
}

/* The input being run, for the abort handler. */
static const char *replay_current_name;
static const uint8_t *replay_current_bytes;
static size_t replay_current_length;
/* Where the abort handler saves it, named in main. */
static char replay_failure_path[64];

static void replay_write_all(int fd, const void *data, size_t length)
{
    const char *at = data;
    while (length > 0) {
        ssize_t n = write(fd, at, length);
        if (n <= 0)
            return;
        at += n;
        length -= (size_t)n;
    }
}

/* On abort: names the input and saves it (only async-signal-safe calls). */
static void replay_on_abort(int signal_number)
{
    (void)signal_number;
    const char *path = replay_failure_path;
    static const char from[] = "replay: the failing input came from ";
    replay_write_all(2, from, sizeof(from) - 1);
    if (replay_current_name != NULL)
        replay_write_all(2, replay_current_name, strlen(replay_current_name));
    replay_write_all(2, "; saved as ./", 13);
    replay_write_all(2, path, strlen(path));
    replay_write_all(2, "\n", 1);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
        replay_write_all(fd, replay_current_bytes, replay_current_length);
        close(fd);
    }
    signal(SIGABRT, SIG_DFL);
    raise(SIGABRT);
}

static void replay_run(const char *name, const uint8_t *bytes, size_t length)
{
    replay_current_name = name;
    replay_current_bytes = bytes;
    replay_current_length = length;
    LLVMFuzzerTestOneInput(bytes, length);
}

int main(int argc, char **argv)
{
    snprintf(replay_failure_path, sizeof(replay_failure_path), "replay-failure-%ld",
             (long)getpid());
    signal(SIGABRT, replay_on_abort);
    unsigned long mutations = 2000;
    int first = 1;
    if (argc > 2 && strcmp(argv[1], "--mutations") == 0) {
        mutations = strtoul(argv[2], NULL, 10);
        first = 3;
    }
    if (first >= argc) {
        fprintf(stderr, "usage: %s [--mutations N] corpus-dir-or-file...\n", argv[0]);
        return 2;
    }
    for (int i = first; i < argc; i++)
        replay_add(argv[i]);
    if (replay_seed_count == 0) {
        fprintf(stderr, "replay: no seeds\n");
        return 2;
    }
    for (size_t i = 0; i < replay_seed_count; i++)
        replay_run(replay_seeds[i].name, replay_seeds[i].bytes, replay_seeds[i].length);
    uint8_t *buffer = malloc(REPLAY_MAX_INPUT);
    if (buffer == NULL)
        replay_fail("out of memory", "mutations");
    unsigned long long total = 0;
    for (size_t i = 0; i < replay_seed_count; i++) {
        for (unsigned long m = 0; m < mutations; m++) {
            size_t length = replay_mutate(&replay_seeds[i], buffer);
            /* An exact-size copy, so that a read past the input is an ASan error. */
            uint8_t *input = malloc(length ? length : 1);
            if (input == NULL)
                replay_fail("out of memory", "mutations");
            memcpy(input, buffer, length);
            replay_run(replay_seeds[i].name, input, length);
            free(input);
            total++;
        }
    }
    printf("replay: %zu seeds and %llu mutations passed\n", replay_seed_count, total);
    free(buffer);
    for (size_t i = 0; i < replay_seed_count; i++) {
        free(replay_seeds[i].bytes);
        free(replay_seeds[i].name);
    }
    return 0;
}
