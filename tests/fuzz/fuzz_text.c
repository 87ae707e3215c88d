/*
 * fuzz_text.c -- the server's number parsing and glob matching against any text.
 *
 * The input's first byte picks the routine (and, for globs, the case folding); the second
 * is the pattern's length for globs; the rest is the text. Properties:
 *
 *   integers  text_to_long_long accepts exactly the canonical decimal forms (the bytes
 *             "%lld" prints for some long long: no '+', blanks or leading zeros, "-0"
 *             refused, as Redis's string2ll), and returns that value;
 *   floats    text_to_double and text_to_long_double never return NaN; an accepted
 *             long double formats (INCRBYFLOAT's form) into text that parses again;
 *   globs     the match with the pruning of text.c's invariant 3 is the match of the
 *             exhaustive search, on patterns and strings short enough for the latter to
 *             finish; a pattern without special bytes matches exactly itself.
 *
 * Built with libFuzzer by `make fuzz` (clang); tests/fuzz/replay.c runs the same function
 * over the seed corpus and its mutations in the default test tier.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/server/text.c"

#include "fuzz.h"

/* The exhaustive search takes time exponential in the pattern's stars. */
#define FUZZ_TEXT_GLOB_MAX 24

static void fuzz_integer(const char *text, size_t length)
{
    long long value;
    bool accepted = text_to_long_long(text, length, &value);
    /* Canonical: strtoll's value, printed back, is the text itself. */
    bool canonical = false;
    if (length > 0 && length < 32 && memchr(text, '\0', length) == NULL) {
        char copy[32], printed[32];
        memcpy(copy, text, length);
        copy[length] = '\0';
        char *end;
        errno = 0;
        long long parsed = strtoll(copy, &end, 10);
        snprintf(printed, sizeof(printed), "%lld", parsed);
        canonical = errno == 0 && *end == '\0' && strcmp(printed, copy) == 0;
        if (accepted)
            FUZZ_CHECK(value == parsed);
    }
    FUZZ_CHECK(accepted == canonical);
}

static void fuzz_float(const char *text, size_t length)
{
    double d;
    if (text_to_double(text, length, &d))
        FUZZ_CHECK(!isnan(d));
    long double ld;
    if (text_to_long_double(text, length, &ld)) {
        FUZZ_CHECK(!isnan(ld));
        if (!isinf(ld)) {
            char printed[5200];
            size_t n = text_from_long_double(ld, printed, sizeof(printed));
            FUZZ_CHECK(n > 0 && n < sizeof(printed));
            long double again;
            FUZZ_CHECK(text_to_long_double(printed, n, &again));
        }
    }
}

static bool fuzz_glob_special(const char *pattern, size_t length)
{
    for (size_t i = 0; i < length; i++)
        if (strchr("*?[\\", pattern[i]) != NULL && pattern[i] != '\0')
            return true;
    return false;
}

static void fuzz_glob(const char *pattern, size_t plen, const char *string, size_t slen,
                      bool nocase)
{
    bool pruned = text_glob_match(pattern, plen, string, slen, nocase);
    if (plen <= FUZZ_TEXT_GLOB_MAX && slen <= FUZZ_TEXT_GLOB_MAX && slen > 0) {
        bool exhaustive = text_glob(pattern, plen, string, slen, nocase, 0, NULL);
        FUZZ_CHECK(pruned == exhaustive);
    }
    if (!nocase && !fuzz_glob_special(pattern, plen))
        FUZZ_CHECK(pruned == (plen == slen && memcmp(pattern, string, plen) == 0));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    const char *text = (const char *)data + 2;
    size_t length = size - 2;
    switch (data[0] % 4) {
    case 0:
        fuzz_integer(text, length);
        break;
    case 1:
        fuzz_float(text, length);
        break;
    default: {
        size_t plen = data[1] < length ? data[1] : length;
        fuzz_glob(text, plen, text + plen, length - plen, data[0] % 4 == 3);
        break;
    }
    }
    return 0;
}
