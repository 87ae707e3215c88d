/*
 * durability_testing.h -- small helpers shared by the durability unit tests: temporary
 * directories, whole-file reads and writes, a deterministic random generator.
 *
 * Everything is static so each test program carries its own copy; nothing here is part of
 * the library. Temporary directories go under $TMPDIR (default /tmp) and are removed by
 * the test that made them, so a passing run leaves nothing behind.
 */
#ifndef SHOAL_TESTS_DURABILITY_TESTING_H
#define SHOAL_TESTS_DURABILITY_TESTING_H

#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Creates a fresh directory and writes its path into out (at least 4096 bytes). Returns 0
 * or -1. */
static inline int testing_make_dir(char *out, size_t cap, const char *tag)
{
    const char *base = getenv("TMPDIR");
    if (base == NULL || base[0] == '\0')
        base = "/tmp";
    if (snprintf(out, cap, "%s/shoal-%s-XXXXXX", base, tag) >= (int)cap)
        return -1;
    return mkdtemp(out) != NULL ? 0 : -1;
}

static int testing_remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Removes a directory tree (bounded by its size, no symlinks followed). */
static inline void testing_remove_tree(const char *path)
{
    nftw(path, testing_remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Reads a whole file into a malloc'd buffer; *len is its size. Returns NULL on failure. */
static inline uint8_t *testing_read_file(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return NULL;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return NULL;
    }
    uint8_t *buf = malloc((size_t)st.st_size + 1);
    size_t done = 0;
    while (buf != NULL && done < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + done, (size_t)st.st_size - done);
        if (n <= 0)
            break;
        done += (size_t)n;
    }
    close(fd);
    if (buf != NULL && done != (size_t)st.st_size) {
        free(buf);
        return NULL;
    }
    *len = done;
    return buf;
}

/* Replaces a file's contents with buf[0..len). Returns 0 or -1. */
static inline int testing_write_file(const char *path, const void *buf, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return -1;
    const uint8_t *p = buf;
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(fd, p + done, len - done);
        if (n <= 0)
            break;
        done += (size_t)n;
    }
    close(fd);
    return done == len ? 0 : -1;
}

/* Size of a file in bytes, or -1. */
static inline long long testing_file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

/* xorshift64*: the same sequence on every run, so a failure reproduces. */
static inline uint64_t testing_random(uint64_t *state)
{
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return *state * 2685821657736338717ull;
}

#endif /* SHOAL_TESTS_DURABILITY_TESTING_H */
