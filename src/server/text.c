/*
 * text.c -- the text forms Redis uses for numbers and patterns.
 *
 * Purpose
 * -------
 * Clients see the exact same acceptance rules as Redis: "INCRBY k 1.0" and "EXPIRE k 01"
 * are errors there and must be errors here, and "KEYS a[bc]*" must match the same keys.
 * These routines are small ports of Redis's util.c behaviour, written fresh.
 *
 * Invariants
 * ----------
 * 1. Integer parsing accepts exactly what Redis's string2ll accepts (no blanks, no '+', no
 *    leading zeros, in range of long long).
 * 2. Float parsing rejects blanks and NaN, as string2ld does, so a stored float is always
 *    a number that formats back to a parsable string.
 * 3. Glob matching terminates on every pattern, and soon: its recursion is bounded (depth
 *    1000, beyond which a pattern does not match), and a '*' whose rest of the pattern
 *    matched nowhere in the rest of the string ends the whole search, since an earlier '*'
 *    taking more of the string could only leave less of it for that same rest (Redis's
 *    skipLongerMatches, its fix of CVE-2022-36021). Without that, "*a*a*a*a*a*a*b"
 *    against one key of 60 "a"s took 3.5 s of an event loop, and each "*a" more ~70x
 *    that; with it, O(pattern x string) per '*'. Patterns come from clients.
 *
 * Testing
 * -------
 * Exercised through the commands that use it by the integration suite (INCR*, EXPIRE*,
 * KEYS and SCAN MATCH), which compare replies with Redis's.
 */
#include "text.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

bool text_to_long_long(const char *text, size_t length, long long *out)
{
    if (length == 0 || length > 20)
        return false;
    size_t i = 0;
    bool negative = false;
    if (text[0] == '-') {
        negative = true;
        i = 1;
        if (length == 1)
            return false;
    }
    if (text[i] == '0' && (negative || length - i > 1))
        return false; /* no leading zeros and no "-0", as Redis's string2ll */
    unsigned long long value = 0;
    for (; i < length; i++) {
        if (text[i] < '0' || text[i] > '9')
            return false;
        unsigned digit = (unsigned)(text[i] - '0');
        if (value > (ULLONG_MAX - digit) / 10)
            return false;
        value = value * 10 + digit;
    }
    if (negative) {
        if (value > (unsigned long long)LLONG_MAX + 1)
            return false;
        *out = value == (unsigned long long)LLONG_MAX + 1 ? LLONG_MIN : -(long long)value;
    } else {
        if (value > (unsigned long long)LLONG_MAX)
            return false;
        *out = (long long)value;
    }
    return true;
}

bool text_to_long_double(const char *text, size_t length, long double *out)
{
    char buffer[5 * 1024 + 1];
    if (length == 0 || length >= sizeof(buffer))
        return false;
    memcpy(buffer, text, length);
    buffer[length] = '\0';
    if (isspace((unsigned char)buffer[0]))
        return false;
    errno = 0;
    char *end;
    long double value = strtold(buffer, &end);
    if ((size_t)(end - buffer) != length || isnan(value))
        return false;
    /* Redis's string2ld: out of range means overflow (HUGE_VALL) or underflow to zero. */
    if (errno == ERANGE && (value == HUGE_VALL || value == -HUGE_VALL || value == 0))
        return false;
    *out = value;
    return true;
}

bool text_to_double(const char *text, size_t length, double *out)
{
    char buffer[5 * 1024 + 1];
    if (length == 0 || length >= sizeof(buffer))
        return false;
    memcpy(buffer, text, length);
    buffer[length] = '\0';
    if (isspace((unsigned char)buffer[0]))
        return false;
    errno = 0;
    char *end;
    double value = strtod(buffer, &end);
    if ((size_t)(end - buffer) != length || isnan(value))
        return false;
    if (errno == ERANGE && (value == HUGE_VAL || value == -HUGE_VAL || value == 0))
        return false;
    *out = value;
    return true;
}

size_t text_from_long_double(long double value, char *out, size_t capacity)
{
    if (isinf(value)) {
        return (size_t)snprintf(out, capacity, "%s", value > 0 ? "inf" : "-inf");
    }
    int n = snprintf(out, capacity, "%.17Lf", value);
    if (n < 0 || (size_t)n >= capacity)
        n = snprintf(out, capacity, "%.17Lg", value);
    if (n < 0)
        return 0;
    size_t length = (size_t)n;
    if (memchr(out, '.', length) != NULL && memchr(out, 'e', length) == NULL) {
        while (length > 0 && out[length - 1] == '0')
            length--;
        if (length > 0 && out[length - 1] == '.')
            length--;
        out[length] = '\0';
    }
    if (length == 2 && memcmp(out, "-0", 2) == 0) {
        out[0] = '0';
        out[1] = '\0';
        length = 1;
    }
    return length;
}

size_t text_from_long_long(long long value, char *out, size_t capacity)
{
    int n = snprintf(out, capacity, "%lld", value);
    return n < 0 ? 0 : (size_t)n;
}

bool text_equals_word(const char *text, size_t length, const char *word)
{
    size_t word_length = strlen(word);
    return length == word_length && strncasecmp(text, word, length) == 0;
}

static int text_fold(int c, bool nocase)
{
    return nocase ? tolower(c) : c;
}

/* *give_up is set when a '*' found no place in the string from which the rest of the
 * pattern matches: every enclosing '*' then fails at once (invariant 3). give_up NULL
 * searches without that pruning, for the fuzz target that checks it changes nothing. */
static bool text_glob(const char *pattern, size_t plen, const char *string, size_t slen,
                      bool nocase, int depth, bool *give_up)
{
    if (depth > 1000)
        return false; /* invariant 3 */
    while (plen > 0 && slen > 0) {
        switch (pattern[0]) {
        case '*':
            while (plen > 1 && pattern[1] == '*') {
                pattern++;
                plen--;
            }
            if (plen == 1)
                return true;
            while (slen > 0) {
                if (text_glob(pattern + 1, plen - 1, string, slen, nocase, depth + 1, give_up))
                    return true;
                if (give_up != NULL && *give_up)
                    return false;
                string++;
                slen--;
            }
            if (give_up != NULL)
                *give_up = true;
            return false;
        case '?':
            string++;
            slen--;
            break;
        case '[': {
            pattern++;
            plen--;
            bool negate = plen > 0 && pattern[0] == '^';
            if (negate) {
                pattern++;
                plen--;
            }
            bool matched = false;
            for (;;) {
                if (plen == 0)
                    break;
                if (pattern[0] == '\\' && plen >= 2) {
                    pattern++;
                    plen--;
                    if (pattern[0] == string[0])
                        matched = true;
                } else if (pattern[0] == ']') {
                    break;
                } else if (plen >= 3 && pattern[1] == '-') {
                    int start = text_fold((unsigned char)pattern[0], nocase);
                    int end = text_fold((unsigned char)pattern[2], nocase);
                    int c = text_fold((unsigned char)string[0], nocase);
                    if (start > end) {
                        int swap = start;
                        start = end;
                        end = swap;
                    }
                    pattern += 2;
                    plen -= 2;
                    if (c >= start && c <= end)
                        matched = true;
                } else if (text_fold((unsigned char)pattern[0], nocase) ==
                           text_fold((unsigned char)string[0], nocase)) {
                    matched = true;
                }
                pattern++;
                plen--;
            }
            if (plen == 0) {
                /* An unterminated class: Redis treats the rest as consumed. */
                pattern--;
                plen++;
            }
            if (negate)
                matched = !matched;
            if (!matched)
                return false;
            string++;
            slen--;
            break;
        }
        case '\\':
            if (plen >= 2) {
                pattern++;
                plen--;
            }
            /* fall through */
        default:
            if (text_fold((unsigned char)pattern[0], nocase) !=
                text_fold((unsigned char)string[0], nocase))
                return false;
            string++;
            slen--;
            break;
        }
        pattern++;
        plen--;
        if (slen == 0) {
            while (plen > 0 && pattern[0] == '*') {
                pattern++;
                plen--;
            }
            break;
        }
    }
    return plen == 0 && slen == 0;
}

bool text_glob_match(const char *pattern, size_t pattern_length, const char *string,
                     size_t string_length, bool nocase)
{
    if (string_length == 0) {
        for (size_t i = 0; i < pattern_length; i++)
            if (pattern[i] != '*')
                return false;
        return true;
    }
    bool give_up = false;
    return text_glob(pattern, pattern_length, string, string_length, nocase, 0, &give_up);
}

bool text_to_memory(const char *text, unsigned long long *out)
{
    char *end;
    errno = 0;
    if (text[0] == '-' || text[0] == '\0')
        return false;
    unsigned long long value = strtoull(text, &end, 10);
    if (errno != 0 || end == text)
        return false;
    unsigned long long multiplier = 1;
    if (*end == '\0')
        multiplier = 1;
    else if (!strcasecmp(end, "b"))
        multiplier = 1;
    else if (!strcasecmp(end, "k"))
        multiplier = 1000;
    else if (!strcasecmp(end, "kb"))
        multiplier = 1024;
    else if (!strcasecmp(end, "m"))
        multiplier = 1000ull * 1000;
    else if (!strcasecmp(end, "mb"))
        multiplier = 1024ull * 1024;
    else if (!strcasecmp(end, "g"))
        multiplier = 1000ull * 1000 * 1000;
    else if (!strcasecmp(end, "gb"))
        multiplier = 1024ull * 1024 * 1024;
    else
        return false;
    if (value > ULLONG_MAX / multiplier)
        return false;
    *out = value * multiplier;
    return true;
}
