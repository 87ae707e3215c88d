/*
 * resp.c -- the Redis serialization protocol: a resumable request parser and the output
 * buffer replies are appended to.
 *
 * Purpose
 * -------
 * Clients send requests in one of two forms, and the server must read both exactly as
 * Redis 7 does, because redis-cli, redis-benchmark, hiredis and redis-py rely on it:
 *
 *   multibulk   "*<argc>\r\n" then argc times "$<length>\r\n<length bytes>\r\n"
 *   inline      one line of words separated by blanks, ended by "\n" (an optional "\r"
 *               before it is dropped); words may be quoted "..." with C escapes
 *               (\n \r \t \b \a \\ \" \xHH) or '...' with only \' as an escape
 *
 * A request that starts with '*' is multibulk, anything else is inline. Replies are
 * written in RESP2 (the default) or RESP3 (after HELLO 3); the two differ only in nulls,
 * maps, sets, doubles and verbatim strings, and the buffer's protocol field picks the form.
 *
 * Invariants
 * ----------
 * 1. The parser never reads past length and never scans a byte twice: header lines are
 *    searched from where the previous call stopped, bulk payloads are never scanned at
 *    all (their length is known), so a request arriving one byte at a time costs linear
 *    time in total.
 * 2. Nothing is allocated in proportion to what a request announces, only to what it
 *    has sent: a "*1000000" header alone reserves a small argument array, and a huge
 *    "$" length only tells the caller how many bytes to expect (bytes_needed).
 * 3. Malformed input yields RESP_PARSE_ERROR with Redis's exact message (the caller sends
 *    "-ERR Protocol error: <message>" and closes the connection); it never crashes and
 *    never leaves the parser in a state that accepts further bytes of that request.
 * 4. The output buffer's appended and sent counters only grow; a mark taken between them
 *    can always be truncated back to, which is how a command run again after an
 *    optimistic conflict drops the replies of its failed attempt.
 * 5. Every block handed over with resp_add_bulk_owned is released exactly once, when it
 *    has been sent, truncated away, or the buffer is freed.
 *
 * Testing
 * -------
 * tests/unit/test_resp.c compiles this file in directly and feeds the parser whole,
 * split at every byte, pipelined, inline and quoted requests, and every malformed form
 * (bad counts, negative and huge lengths, missing '$', unbalanced quotes, oversized
 * lines), then 20,000 random streams, valid and damaged, each parsed whole and in pieces
 * of random sizes that must give the same requests and the same error; it checks the
 * buffer's RESP2 and RESP3 forms, truncation and consumption. The integration tests drive
 * it with real clients, and test_compat_raw.py sends damaged streams to Redis as well.
 */
#include "resp.h"
#include "text.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------
 * Parser
 * ------------------------------------------------------------------------------------- */

void resp_parser_init(resp_parser *p)
{
    memset(p, 0, sizeof(*p));
    p->max_bulk = 512ull * 1024 * 1024;
    p->max_args = 1024ull * 1024;
    p->authenticated = true;
    resp_parser_reset(p);
}

void resp_parser_free(resp_parser *p)
{
    free(p->args);
    p->args = NULL;
    p->args_capacity = 0;
    p->argc = 0;
}

void resp_parser_reset(resp_parser *p)
{
    p->position = 0;
    p->args_expected = -1;
    p->bulk_length = -1;
    p->is_inline = false;
    p->bytes_needed = 0;
    p->argc = 0;
    p->error = NULL;
    p->line_scanned = 0;
}


static int resp_fail(resp_parser *p, const char *message)
{
    p->error = message;
    return RESP_PARSE_ERROR;
}

/* Finds the '\r' that ends the header line starting at p->position, resuming the search
 * where the last call stopped (invariant 1). Returns its offset, or -1 if the line is not
 * yet complete (the "\n" after "\r" must be there too). */
static long long resp_find_header_end(resp_parser *p, const char *buffer, size_t length)
{
    size_t from = p->position + p->line_scanned;
    if (from < length) {
        const char *cr = memchr(buffer + from, '\r', length - from);
        if (cr != NULL) {
            size_t at = (size_t)(cr - buffer);
            p->line_scanned = at - p->position;
            if (at + 1 >= length)
                return -1; /* the '\n' has not arrived */
            return (long long)at;
        }
        p->line_scanned = length - p->position;
    }
    return -1;
}

static bool resp_push_arg(resp_parser *p, size_t offset, size_t length)
{
    if (p->argc == p->args_capacity) {
        size_t capacity = p->args_capacity ? p->args_capacity * 2 : 8;
        resp_arg *grown = realloc(p->args, capacity * sizeof(*grown));
        if (grown == NULL)
            return false;
        p->args = grown;
        p->args_capacity = capacity;
    }
    p->args[p->argc].offset = offset;
    p->args[p->argc].length = length;
    p->argc++;
    return true;
}

static int resp_hex_digit(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Splits line[0..length) into words in place, as Redis's sdssplitargs. The unquoted form
 * of a word is never longer than its quoted form, so writing behind the read position is
 * safe. Returns false on unbalanced quotes (or a closing quote not followed by a blank). */
static bool resp_split_inline(resp_parser *p, char *line, size_t length, bool *out_of_memory)
{
    size_t read = 0;
    *out_of_memory = false;
    for (;;) {
        while (read < length && isspace((unsigned char)line[read]))
            read++;
        if (read >= length)
            return true;
        size_t start = read, write = read;
        bool in_double = false, in_single = false, done = false;
        while (!done) {
            if (in_double) {
                if (read >= length)
                    return false;
                char c = line[read];
                if (c == '\\' && read + 3 < length && line[read + 1] == 'x' &&
                    resp_hex_digit((unsigned char)line[read + 2]) >= 0 &&
                    resp_hex_digit((unsigned char)line[read + 3]) >= 0) {
                    line[write++] = (char)(resp_hex_digit((unsigned char)line[read + 2]) * 16 +
                                           resp_hex_digit((unsigned char)line[read + 3]));
                    read += 4;
                } else if (c == '\\' && read + 1 < length) {
                    char e = line[read + 1];
                    switch (e) {
                    case 'n': line[write++] = '\n'; break;
                    case 'r': line[write++] = '\r'; break;
                    case 't': line[write++] = '\t'; break;
                    case 'b': line[write++] = '\b'; break;
                    case 'a': line[write++] = '\a'; break;
                    default: line[write++] = e; break;
                    }
                    read += 2;
                } else if (c == '"') {
                    read++;
                    if (read < length && !isspace((unsigned char)line[read]))
                        return false;
                    done = true;
                } else {
                    line[write++] = c;
                    read++;
                }
            } else if (in_single) {
                if (read >= length)
                    return false;
                char c = line[read];
                if (c == '\\' && read + 1 < length && line[read + 1] == '\'') {
                    line[write++] = '\'';
                    read += 2;
                } else if (c == '\'') {
                    read++;
                    if (read < length && !isspace((unsigned char)line[read]))
                        return false;
                    done = true;
                } else {
                    line[write++] = c;
                    read++;
                }
            } else {
                if (read >= length) {
                    done = true;
                    break;
                }
                char c = line[read];
                if (isspace((unsigned char)c)) {
                    done = true;
                } else if (c == '"') {
                    in_double = true;
                    read++;
                } else if (c == '\'') {
                    in_single = true;
                    read++;
                } else {
                    line[write++] = c;
                    read++;
                }
            }
        }
        if (!resp_push_arg(p, start, write - start)) {
            *out_of_memory = true;
            return false;
        }
    }
}

static int resp_parse_inline(resp_parser *p, char *buffer, size_t length)
{
    size_t from = p->line_scanned;
    const char *newline = from < length ? memchr(buffer + from, '\n', length - from) : NULL;
    if (newline == NULL) {
        p->line_scanned = length;
        if (length > RESP_MAX_INLINE)
            return resp_fail(p, "too big inline request");
        p->bytes_needed = length + 1;
        return RESP_PARSE_INCOMPLETE;
    }
    size_t line_length = (size_t)(newline - buffer);
    if (line_length > RESP_MAX_INLINE)
        return resp_fail(p, "too big inline request");
    size_t content = line_length;
    if (content > 0 && buffer[content - 1] == '\r')
        content--;
    bool out_of_memory;
    p->argc = 0;
    if (!resp_split_inline(p, buffer, content, &out_of_memory)) {
        p->argc = 0;
        return resp_fail(p, out_of_memory ? "out of memory" : "unbalanced quotes in request");
    }
    p->position = line_length + 1;
    return RESP_PARSE_DONE;
}

static int resp_parse_multibulk(resp_parser *p, char *buffer, size_t length)
{
    if (p->args_expected < 0) {
        long long cr = resp_find_header_end(p, buffer, length);
        if (cr < 0) {
            if (length - p->position > RESP_MAX_INLINE)
                return resp_fail(p, "too big mbulk count string");
            p->bytes_needed = length + 1;
            return RESP_PARSE_INCOMPLETE;
        }
        if ((size_t)cr - p->position > RESP_MAX_INLINE)
            return resp_fail(p, "too big mbulk count string");
        long long count;
        if (!text_to_long_long(buffer + p->position + 1, (size_t)cr - p->position - 1, &count) ||
            count > INT_MAX)
            return resp_fail(p, "invalid multibulk length");
        if (count > 0 && !p->authenticated && count > RESP_UNAUTHENTICATED_MAX_ARGS)
            return resp_fail(p, "unauthenticated multibulk length");
        if (count > 0 && (unsigned long long)count > p->max_args)
            return resp_fail(p, "invalid multibulk length");
        p->position = (size_t)cr + 2;
        p->line_scanned = 0;
        if (count <= 0) {
            /* An empty request: Redis skips it silently, and so do we. */
            p->argc = 0;
            return RESP_PARSE_DONE;
        }
        p->args_expected = count;
        p->bulk_length = -1;
    }
    while ((long long)p->argc < p->args_expected) {
        if (p->bulk_length < 0) {
            /* The line must be whole before its first byte is judged, as Redis does: a
             * line that is not "$<length>" is an error only once its end has come. */
            long long cr = resp_find_header_end(p, buffer, length);
            if (cr < 0) {
                if (length - p->position > RESP_MAX_INLINE)
                    return resp_fail(p, "too big bulk count string");
                p->bytes_needed = length + 1;
                return RESP_PARSE_INCOMPLETE;
            }
            if (buffer[p->position] != '$') {
                snprintf(p->error_text, sizeof(p->error_text), "expected '$', got '%c'",
                         buffer[p->position]);
                return resp_fail(p, p->error_text);
            }
            if ((size_t)cr - p->position > RESP_MAX_INLINE)
                return resp_fail(p, "too big bulk count string");
            long long bulk;
            if (!text_to_long_long(buffer + p->position + 1, (size_t)cr - p->position - 1,
                                   &bulk) ||
                bulk < 0 || (unsigned long long)bulk > p->max_bulk)
                return resp_fail(p, "invalid bulk length");
            if (!p->authenticated && bulk > RESP_UNAUTHENTICATED_MAX_BULK)
                return resp_fail(p, "unauthenticated bulk length");
            p->position = (size_t)cr + 2;
            p->line_scanned = 0;
            p->bulk_length = bulk;
        }
        size_t want = p->position + (size_t)p->bulk_length + 2;
        if (length < want) {
            p->bytes_needed = want;
            return RESP_PARSE_INCOMPLETE;
        }
        if (!resp_push_arg(p, p->position, (size_t)p->bulk_length))
            return resp_fail(p, "out of memory");
        p->position = want;
        p->bulk_length = -1;
    }
    return RESP_PARSE_DONE;
}

int resp_parse(resp_parser *p, char *buffer, size_t length)
{
    if (p->error != NULL)
        return RESP_PARSE_ERROR; /* invariant 3: a failed request stays failed */
    if (length == 0) {
        p->bytes_needed = 1;
        return RESP_PARSE_INCOMPLETE;
    }
    if (p->args_expected < 0 && !p->is_inline && p->position == 0 && buffer[0] != '*')
        p->is_inline = true;
    int result = p->is_inline ? resp_parse_inline(p, buffer, length)
                              : resp_parse_multibulk(p, buffer, length);
    if (result == RESP_PARSE_DONE)
        p->bytes_needed = 0;
    return result;
}

/* ---------------------------------------------------------------------------------------
 * Output buffer
 * ------------------------------------------------------------------------------------- */

#define RESP_CHUNK_SIZE (16u * 1024u)

struct resp_block {
    resp_block *next;
    const char *data;   /* bytes of the block: chunk storage or an owned value */
    size_t start;       /* bytes already sent */
    size_t used;        /* bytes appended */
    size_t capacity;    /* chunk: storage size; owned: equal to used */
    void *owner;        /* owned blocks: what release frees */
    void (*release)(void *owner);
    char storage[];     /* chunk storage */
};

void resp_buffer_init(resp_buffer *b)
{
    b->head = b->tail = NULL;
    b->appended = 0;
    b->sent = 0;
    b->protocol = 2;
    b->muted = false;
}

static void resp_block_free(resp_block *block)
{
    if (block->release != NULL)
        block->release(block->owner);
    free(block);
}

void resp_buffer_free(resp_buffer *b)
{
    resp_block *block = b->head;
    while (block != NULL) {
        resp_block *next = block->next;
        resp_block_free(block);
        block = next;
    }
    b->head = b->tail = NULL;
    b->sent = b->appended;
}

static void resp_buffer_link(resp_buffer *b, resp_block *block)
{
    block->next = NULL;
    if (b->tail != NULL)
        b->tail->next = block;
    else
        b->head = block;
    b->tail = block;
}

int resp_add_raw(resp_buffer *b, const void *data, size_t length)
{
    if (length == 0 || b->muted)
        return 0;
    resp_block *tail = b->tail;
    size_t copied = 0;
    if (tail != NULL && tail->release == NULL && tail->capacity > tail->used) {
        size_t room = tail->capacity - tail->used;
        copied = room < length ? room : length;
        memcpy(tail->storage + tail->used, data, copied);
        tail->used += copied;
    }
    if (copied < length) {
        size_t rest = length - copied;
        size_t capacity = rest > RESP_CHUNK_SIZE ? rest : RESP_CHUNK_SIZE;
        resp_block *block = malloc(sizeof(*block) + capacity);
        if (block == NULL) {
            b->appended += copied;
            return -1;
        }
        block->data = block->storage;
        block->start = 0;
        block->used = rest;
        block->capacity = capacity;
        block->owner = NULL;
        block->release = NULL;
        memcpy(block->storage, (const char *)data + copied, rest);
        resp_buffer_link(b, block);
    }
    b->appended += length;
    return 0;
}

void resp_buffer_truncate(resp_buffer *b, uint64_t mark)
{
    if (mark >= b->appended)
        return;
    if (mark < b->sent)
        mark = b->sent; /* sent bytes cannot be taken back (invariant 4) */
    uint64_t keep = mark - b->sent;
    resp_block *previous = NULL, *block = b->head;
    while (block != NULL && keep >= block->used - block->start) {
        keep -= block->used - block->start;
        previous = block;
        block = block->next;
    }
    if (block == NULL)
        return;
    resp_block *drop = block->next;
    if (keep > 0 && block->release == NULL) {
        block->used = block->start + keep;
        block->next = NULL;
        b->tail = block;
    } else {
        /* The block goes whole: an owned value is never cut in the middle, because marks
         * are only taken between replies. */
        drop = block;
        if (previous != NULL)
            previous->next = NULL;
        else
            b->head = NULL;
        b->tail = previous;
    }
    while (drop != NULL) {
        resp_block *next = drop->next;
        resp_block_free(drop);
        drop = next;
    }
    b->appended = mark;
}

int resp_buffer_byte_at(const resp_buffer *b, uint64_t position)
{
    if (position < b->sent || position >= b->appended)
        return -1;
    uint64_t skip = position - b->sent;
    for (const resp_block *block = b->head; block != NULL; block = block->next) {
        size_t available = block->used - block->start;
        if (skip < available)
            return (unsigned char)block->data[block->start + skip];
        skip -= available;
    }
    return -1;
}

int resp_buffer_iov(const resp_buffer *b, struct iovec *iov, int max)
{
    int filled = 0;
    for (const resp_block *block = b->head; block != NULL && filled < max; block = block->next) {
        if (block->used == block->start)
            continue;
        iov[filled].iov_base = (void *)(block->data + block->start);
        iov[filled].iov_len = block->used - block->start;
        filled++;
    }
    return filled;
}

void resp_buffer_consume(resp_buffer *b, uint64_t n)
{
    b->sent += n;
    while (b->head != NULL) {
        resp_block *block = b->head;
        size_t available = block->used - block->start;
        if (n < available) {
            block->start += n;
            return;
        }
        n -= available;
        /* A chunk that still has room stays as the tail, emptied, for the next reply. */
        if (block->next == NULL && block->release == NULL) {
            block->start = block->used = 0;
            return;
        }
        b->head = block->next;
        if (b->head == NULL)
            b->tail = NULL;
        resp_block_free(block);
    }
}

int resp_add_simple(resp_buffer *b, const char *text)
{
    if (resp_add_raw(b, "+", 1) != 0 || resp_add_raw(b, text, strlen(text)) != 0)
        return -1;
    return resp_add_raw(b, "\r\n", 2);
}

int resp_add_ok(resp_buffer *b)
{
    return resp_add_raw(b, "+OK\r\n", 5);
}

/* Error texts may quote what a client sent; a CR or LF in them would end the reply early
 * and desynchronise the client, so they become blanks, as Redis does. */
static resp_error_observer resp_observer;

void resp_set_error_observer(resp_error_observer observer)
{
    resp_observer = observer;
}

static int resp_add_error_length(resp_buffer *b, const char *text, size_t length)
{
    if (resp_observer != NULL)
        resp_observer(text, length);
    char small[256];
    char *copy = length < sizeof(small) ? small : malloc(length + 1);
    if (copy == NULL)
        return -1;
    for (size_t i = 0; i < length; i++)
        copy[i] = (text[i] == '\r' || text[i] == '\n') ? ' ' : text[i];
    int result = resp_add_raw(b, "-", 1);
    if (result == 0)
        result = resp_add_raw(b, copy, length);
    if (result == 0)
        result = resp_add_raw(b, "\r\n", 2);
    if (copy != small)
        free(copy);
    return result;
}

int resp_add_error(resp_buffer *b, const char *text)
{
    return resp_add_error_length(b, text, strlen(text));
}

int resp_add_errorf(resp_buffer *b, const char *format, ...)
{
    char small[512];
    va_list args;
    va_start(args, format);
    int n = vsnprintf(small, sizeof(small), format, args);
    va_end(args);
    if (n < 0)
        return -1;
    if ((size_t)n < sizeof(small))
        return resp_add_error_length(b, small, (size_t)n);
    char *large = malloc((size_t)n + 1);
    if (large == NULL)
        return -1;
    va_start(args, format);
    vsnprintf(large, (size_t)n + 1, format, args);
    va_end(args);
    int result = resp_add_error_length(b, large, (size_t)n);
    free(large);
    return result;
}

static int resp_add_prefixed_number(resp_buffer *b, char prefix, long long value)
{
    char text[32];
    int n = snprintf(text, sizeof(text), "%c%lld\r\n", prefix, value);
    return resp_add_raw(b, text, (size_t)n);
}

int resp_add_integer(resp_buffer *b, long long value)
{
    return resp_add_prefixed_number(b, ':', value);
}

int resp_add_bulk(resp_buffer *b, const void *data, size_t length)
{
    if (resp_add_prefixed_number(b, '$', (long long)length) != 0 ||
        resp_add_raw(b, data, length) != 0)
        return -1;
    return resp_add_raw(b, "\r\n", 2);
}

int resp_add_bulk_cstring(resp_buffer *b, const char *text)
{
    if (text == NULL)
        return resp_add_null(b);
    return resp_add_bulk(b, text, strlen(text));
}

int resp_add_bulk_owned(resp_buffer *b, const void *data, size_t length, void *owner,
                        void (*release)(void *owner))
{
    if (length < RESP_CHUNK_SIZE || b->muted) {
        /* Small values are cheaper copied than linked (and a muted buffer drops them). */
        int result = resp_add_bulk(b, data, length);
        release(owner);
        return result;
    }
    resp_block *block = malloc(sizeof(*block));
    if (block == NULL || resp_add_prefixed_number(b, '$', (long long)length) != 0) {
        free(block);
        release(owner);
        return -1;
    }
    block->data = data;
    block->start = 0;
    block->used = length;
    block->capacity = length;
    block->owner = owner;
    block->release = release;
    resp_buffer_link(b, block);
    b->appended += length;
    return resp_add_raw(b, "\r\n", 2);
}

int resp_add_null(resp_buffer *b)
{
    return b->protocol >= 3 ? resp_add_raw(b, "_\r\n", 3) : resp_add_raw(b, "$-1\r\n", 5);
}

int resp_add_null_array(resp_buffer *b)
{
    return b->protocol >= 3 ? resp_add_raw(b, "_\r\n", 3) : resp_add_raw(b, "*-1\r\n", 5);
}

int resp_add_array(resp_buffer *b, long long count)
{
    return resp_add_prefixed_number(b, '*', count);
}

int resp_add_map(resp_buffer *b, long long pairs)
{
    return b->protocol >= 3 ? resp_add_prefixed_number(b, '%', pairs)
                            : resp_add_prefixed_number(b, '*', pairs * 2);
}

int resp_add_set(resp_buffer *b, long long count)
{
    return b->protocol >= 3 ? resp_add_prefixed_number(b, '~', count)
                            : resp_add_prefixed_number(b, '*', count);
}

int resp_add_double(resp_buffer *b, double value)
{
    char text[64];
    int n;
    if (isinf(value))
        n = snprintf(text, sizeof(text), "%s", value > 0 ? "inf" : "-inf");
    else if (isnan(value))
        n = snprintf(text, sizeof(text), "nan");
    else
        n = snprintf(text, sizeof(text), "%.17g", value);
    if (b->protocol >= 3) {
        if (resp_add_raw(b, ",", 1) != 0 || resp_add_raw(b, text, (size_t)n) != 0)
            return -1;
        return resp_add_raw(b, "\r\n", 2);
    }
    return resp_add_bulk(b, text, (size_t)n);
}

int resp_add_verbatim(resp_buffer *b, const char *data, size_t length)
{
    if (b->protocol < 3)
        return resp_add_bulk(b, data, length);
    if (resp_add_prefixed_number(b, '=', (long long)length + 4) != 0 ||
        resp_add_raw(b, "txt:", 4) != 0 || resp_add_raw(b, data, length) != 0)
        return -1;
    return resp_add_raw(b, "\r\n", 2);
}
