/*
 * text.h -- the text forms Redis uses for numbers and patterns: strict integer and float
 * parsing, float formatting, glob matching. See text.c.
 * Thread-safety: every function is pure and may be called from any thread.
 */
#ifndef SHOAL_SERVER_TEXT_H
#define SHOAL_SERVER_TEXT_H

#include <stdbool.h>
#include <stddef.h>

/* Parses text[0..length) as a decimal long long exactly as Redis's string2ll: optional '-',
 * digits, no blanks, no leading zeros, no '+'. Returns false if it is not one. */
bool text_to_long_long(const char *text, size_t length, long long *out);
/* Parses a finite or infinite long double as Redis's string2ld (no blanks, no NaN). */
bool text_to_long_double(const char *text, size_t length, long double *out);
/* Parses a double as Redis's string2d (no blanks, no NaN). */
bool text_to_double(const char *text, size_t length, double *out);
/* Formats a long double in the human-friendly form of INCRBYFLOAT ("%.17Lf" without
 * trailing zeros). Returns the length written into out (capacity at least 64). */
size_t text_from_long_double(long double value, char *out, size_t capacity);
/* Formats a long long; returns the length. */
size_t text_from_long_long(long long value, char *out, size_t capacity);
/* Case-insensitive comparison of text[0..length) with a NUL-terminated word. */
bool text_equals_word(const char *text, size_t length, const char *word);
/* Redis's glob matching (stringmatchlen): * ? [abc] [^a-z] and \ escapes; nocase folds
 * ASCII case. The recursion depth is bounded, so hostile patterns cannot exhaust the
 * stack. */
bool text_glob_match(const char *pattern, size_t pattern_length, const char *string,
                     size_t string_length, bool nocase);
/* Parses a memory size as redis.conf does: "100", "10kb", "1k" (1000), "5mb", "2gb"...
 * Returns false on anything else. */
bool text_to_memory(const char *text, unsigned long long *out);

#endif /* SHOAL_SERVER_TEXT_H */
