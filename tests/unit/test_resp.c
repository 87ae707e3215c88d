/*
 * test_resp.c -- unit tests of the RESP request parser and output buffer (src/server/resp.c).
 *
 * The server is an executable, not part of shoal_static, so the module is compiled in
 * directly. Each test states the behaviour of Redis 7 it pins: the same bytes must give
 * the same arguments or the same protocol error.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/server/resp.c"
#include "../../src/server/text.c"

/* Parses a whole buffer holding exactly one request; returns the parser's result. */
static int parse_all(resp_parser *p, const char *text, size_t length, char **copy_out)
{
    char *copy = malloc(length + 1);
    assert_non_null(copy);
    memcpy(copy, text, length);
    copy[length] = '\0';
    *copy_out = copy;
    return resp_parse(p, copy, length);
}

static void assert_arg(const resp_parser *p, const char *buffer, size_t index, const char *want,
                       size_t want_length)
{
    assert_true(index < p->argc);
    assert_int_equal(p->args[index].length, want_length);
    assert_memory_equal(buffer + p->args[index].offset, want, want_length);
}

static void test_multibulk_whole(void **state)
{
    (void)state;
    resp_parser p;
    resp_parser_init(&p);
    char *buffer;
    const char request[] = "*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n";
    assert_int_equal(parse_all(&p, request, sizeof(request) - 1, &buffer), RESP_PARSE_DONE);
    assert_int_equal(p.argc, 3);
    assert_int_equal(p.position, sizeof(request) - 1);
    assert_arg(&p, buffer, 0, "SET", 3);
    assert_arg(&p, buffer, 1, "key", 3);
    assert_arg(&p, buffer, 2, "value", 5);
    free(buffer);
    resp_parser_free(&p);
}

/* Binary payloads: the length decides, CR LF and NUL inside a bulk are data. */
static void test_multibulk_binary(void **state)
{
    (void)state;
    resp_parser p;
    resp_parser_init(&p);
    char *buffer;
    const char request[] = "*2\r\n$4\r\na\r\n\0\r\n$0\r\n\r\n";
    assert_int_equal(parse_all(&p, request, sizeof(request) - 1, &buffer), RESP_PARSE_DONE);
    assert_int_equal(p.argc, 2);
    assert_arg(&p, buffer, 0, "a\r\n\0", 4);
    assert_arg(&p, buffer, 1, "", 0);
    free(buffer);
    resp_parser_free(&p);
}

/* Split at every byte: each prefix is INCOMPLETE and the whole is DONE with the same
 * arguments, which is what a request arriving in many reads looks like. */
static void test_multibulk_split_everywhere(void **state)
{
    (void)state;
    const char request[] = "*3\r\n$3\r\nSET\r\n$10\r\n0123456789\r\n$2\r\nxy\r\n";
    size_t length = sizeof(request) - 1;
    for (size_t cut = 0; cut < length; cut++) {
        resp_parser p;
        resp_parser_init(&p);
        char buffer[sizeof(request)];
        memcpy(buffer, request, length);
        assert_int_equal(resp_parse(&p, buffer, cut), RESP_PARSE_INCOMPLETE);
        assert_true(p.bytes_needed > cut);
        /* Feed the rest one byte at a time, as the slowest client would. */
        int result = RESP_PARSE_INCOMPLETE;
        for (size_t have = cut + 1; have <= length && result == RESP_PARSE_INCOMPLETE; have++)
            result = resp_parse(&p, buffer, have);
        assert_int_equal(result, RESP_PARSE_DONE);
        assert_int_equal(p.argc, 3);
        assert_arg(&p, buffer, 1, "0123456789", 10);
        assert_arg(&p, buffer, 2, "xy", 2);
        assert_int_equal(p.position, length);
        resp_parser_free(&p);
    }
}

static void test_pipelined(void **state)
{
    (void)state;
    char buffer[] = "*1\r\n$4\r\nPING\r\nPING\r\n*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\n";
    size_t length = sizeof(buffer) - 1, offset = 0;
    resp_parser p;
    resp_parser_init(&p);
    const char *names[] = {"PING", "PING", "ECHO"};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(resp_parse(&p, buffer + offset, length - offset), RESP_PARSE_DONE);
        assert_arg(&p, buffer + offset, 0, names[i], 4);
        offset += p.position;
        resp_parser_reset(&p);
    }
    assert_int_equal(offset, length);
    assert_int_equal(resp_parse(&p, buffer + offset, 0), RESP_PARSE_INCOMPLETE);
    resp_parser_free(&p);
}

static void test_inline(void **state)
{
    (void)state;
    resp_parser p;
    resp_parser_init(&p);
    char *buffer;
    const char request[] = "  set \"a b\\x41\\n\" 'it\\'s'  plain\r\n";
    assert_int_equal(parse_all(&p, request, sizeof(request) - 1, &buffer), RESP_PARSE_DONE);
    assert_int_equal(p.argc, 4);
    assert_arg(&p, buffer, 0, "set", 3);
    assert_arg(&p, buffer, 1, "a bA\n", 5);
    assert_arg(&p, buffer, 2, "it's", 4);
    assert_arg(&p, buffer, 3, "plain", 5);
    free(buffer);

    resp_parser_reset(&p);
    assert_int_equal(parse_all(&p, "\r\n", 2, &buffer), RESP_PARSE_DONE);
    assert_int_equal(p.argc, 0);
    assert_int_equal(p.position, 2);
    free(buffer);

    resp_parser_reset(&p);
    assert_int_equal(parse_all(&p, "PING", 4, &buffer), RESP_PARSE_INCOMPLETE);
    free(buffer);
    resp_parser_free(&p);
}

static void assert_protocol_error(const char *request, size_t length, const char *message)
{
    resp_parser p;
    resp_parser_init(&p);
    char *buffer;
    assert_int_equal(parse_all(&p, request, length, &buffer), RESP_PARSE_ERROR);
    assert_string_equal(p.error, message);
    /* Invariant 3: the failed request stays failed, whatever follows. */
    assert_int_equal(resp_parse(&p, buffer, length), RESP_PARSE_ERROR);
    free(buffer);
    resp_parser_free(&p);
}

static void test_malformed(void **state)
{
    (void)state;
    assert_protocol_error("*x\r\n", 4, "invalid multibulk length");
    assert_protocol_error("*99999999999\r\n", 14, "invalid multibulk length");
    assert_protocol_error("*1\r\n+PING\r\n", 11, "expected '$', got '+'");
    assert_protocol_error("*1\r\n$-1\r\n", 9, "invalid bulk length");
    assert_protocol_error("*1\r\n$abc\r\n", 10, "invalid bulk length");
    assert_protocol_error("*1\r\n$536870913\r\n", 16, "invalid bulk length");
    assert_protocol_error("*1\r\n$99999999999999999999999\r\n", 30, "invalid bulk length");
    assert_protocol_error("set \"abc\n", 9, "unbalanced quotes in request");
    assert_protocol_error("get \"a\"b\n", 9, "unbalanced quotes in request");
}

/* Integers are read as Redis's string2ll reads them, in requests (lengths) and arguments. */
static void test_integers_as_redis(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        bool valid;
        long long value;
    } cases[] = {
        {"0", true, 0},
        {"7", true, 7},
        {"-7", true, -7},
        {"9223372036854775807", true, LLONG_MAX},
        {"-9223372036854775808", true, LLONG_MIN},
        {"9223372036854775808", false, 0},
        {"-0", false, 0},
        {"007", false, 0},
        {"-07", false, 0},
        {"+5", false, 0},
        {" 5", false, 0},
        {"5 ", false, 0},
        {"", false, 0},
        {"-", false, 0},
        {"1e3", false, 0},
        {"0x10", false, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        long long value = 12345;
        bool valid = text_to_long_long(cases[i].text, strlen(cases[i].text), &value);
        assert_int_equal(valid, cases[i].valid);
        if (valid)
            assert_int_equal(value, cases[i].value);
    }
    assert_protocol_error("*-0\r\n", 5, "invalid multibulk length");
    assert_protocol_error("*1\r\n$-0\r\n", 10, "invalid bulk length");
}

/* Negative and zero counts are empty requests, skipped as Redis does. */
static void test_empty_multibulk(void **state)
{
    (void)state;
    resp_parser p;
    resp_parser_init(&p);
    char *buffer;
    assert_int_equal(parse_all(&p, "*-5\r\n", 5, &buffer), RESP_PARSE_DONE);
    assert_int_equal(p.argc, 0);
    assert_int_equal(p.position, 5);
    free(buffer);
    resp_parser_reset(&p);
    assert_int_equal(parse_all(&p, "*0\r\n", 4, &buffer), RESP_PARSE_DONE);
    assert_int_equal(p.argc, 0);
    free(buffer);
    resp_parser_free(&p);
}

static void test_oversized_lines(void **state)
{
    (void)state;
    size_t length = RESP_MAX_INLINE + 10;
    char *line = malloc(length);
    assert_non_null(line);
    memset(line, 'a', length);
    resp_parser p;
    resp_parser_init(&p);
    assert_int_equal(resp_parse(&p, line, length), RESP_PARSE_ERROR);
    assert_string_equal(p.error, "too big inline request");
    resp_parser_free(&p);

    line[0] = '*';
    resp_parser_init(&p);
    assert_int_equal(resp_parse(&p, line, length), RESP_PARSE_ERROR);
    assert_string_equal(p.error, "too big mbulk count string");
    resp_parser_free(&p);

    memcpy(line, "*1\r\n$", 5);
    resp_parser_init(&p);
    assert_int_equal(resp_parse(&p, line, length), RESP_PARSE_ERROR);
    assert_string_equal(p.error, "too big bulk count string");
    resp_parser_free(&p);
    free(line);
}

/* A huge announced length costs nothing until the bytes come: the parser only says how
 * many it needs (invariant 2). */
static void test_large_bulk_needs(void **state)
{
    (void)state;
    resp_parser p;
    resp_parser_init(&p);
    char request[] = "*2\r\n$3\r\nSET\r\n$100000000\r\nabc";
    assert_int_equal(resp_parse(&p, request, sizeof(request) - 1), RESP_PARSE_INCOMPLETE);
    assert_int_equal(p.bytes_needed, 13 + 12 + 100000000 + 2);
    assert_int_equal(p.argc, 1);
    resp_parser_free(&p);
}

static void test_unauthenticated_limits(void **state)
{
    (void)state;
    resp_parser p;
    resp_parser_init(&p);
    p.authenticated = false;
    char many[] = "*11\r\n";
    assert_int_equal(resp_parse(&p, many, sizeof(many) - 1), RESP_PARSE_ERROR);
    assert_string_equal(p.error, "unauthenticated multibulk length");
    resp_parser_reset(&p);
    char big[] = "*1\r\n$16385\r\n";
    assert_int_equal(resp_parse(&p, big, sizeof(big) - 1), RESP_PARSE_ERROR);
    assert_string_equal(p.error, "unauthenticated bulk length");
    resp_parser_reset(&p);
    char huge[] = "*1\r\n$536870913\r\n"; /* invalid for anyone: that error comes first */
    assert_int_equal(resp_parse(&p, huge, sizeof(huge) - 1), RESP_PARSE_ERROR);
    assert_string_equal(p.error, "invalid bulk length");
    resp_parser_free(&p);
}

/* ---------------------------------------------------------------------------------------
 * Random streams: the same bytes give the same requests however they are cut
 * ------------------------------------------------------------------------------------- */

#define STREAM_MAX 4096
#define OUTCOME_MAX 64

/* What a connection makes of a stream: its requests' arguments in order, then an error or
 * a request still waiting for bytes. Arguments are kept joined, each as "<len>:<bytes>". */
typedef struct outcome {
    char text[OUTCOME_MAX * 512];
    size_t length;
    int requests;
    bool failed;
    char error[64]; /* when failed: the parser's message */
} outcome;

static void outcome_add(outcome *o, const void *data, size_t length)
{
    assert_true(o->length + length <= sizeof(o->text));
    memcpy(o->text + o->length, data, length);
    o->length += length;
}

static void outcome_request(outcome *o, const resp_parser *p, const char *request)
{
    char head[32];
    outcome_add(o, head, (size_t)snprintf(head, sizeof(head), "[%zu", p->argc));
    for (size_t i = 0; i < p->argc; i++) {
        outcome_add(o, head, (size_t)snprintf(head, sizeof(head), " %zu:", p->args[i].length));
        outcome_add(o, request + p->args[i].offset, p->args[i].length);
    }
    outcome_add(o, "]", 1);
    o->requests++;
}

/* Runs every complete request in query[0..*length) as the server's loop does: parse,
 * record, reset; what is consumed is moved out. Returns false once an error ended it. */
static bool drive(resp_parser *p, char *query, size_t *length, outcome *o)
{
    size_t start = 0;
    bool going = true;
    while (start < *length) {
        size_t available = *length - start;
        int result = resp_parse(p, query + start, available);
        if (result == RESP_PARSE_INCOMPLETE) {
            /* The caller is told to read at least one byte more than it has. */
            assert_true(p->bytes_needed > available);
            break;
        }
        if (result == RESP_PARSE_ERROR) {
            assert_non_null(p->error);
            o->failed = true;
            snprintf(o->error, sizeof(o->error), "%s", p->error);
            going = false;
            break;
        }
        assert_int_equal(result, RESP_PARSE_DONE);
        assert_true(p->position > 0 && p->position <= available);
        outcome_request(o, p, query + start);
        start += p->position;
        resp_parser_reset(p);
    }
    memmove(query, query + start, *length - start);
    *length -= start;
    return going;
}

/* Parses stream[0..length) delivered in pieces of at most max_piece bytes (all at once
 * when max_piece is 0). Every call sees a buffer of exactly the bytes that have arrived,
 * so a read past them is caught by the sanitizers. */
static void parse_stream(const char *stream, size_t length, size_t max_piece, bool authenticated,
                         unsigned *seed, outcome *o)
{
    memset(o, 0, sizeof(*o));
    resp_parser p;
    resp_parser_init(&p);
    p.authenticated = authenticated;
    p.max_bulk = 300;
    p.max_args = 20;
    char *query = NULL;
    size_t held = 0, sent = 0;
    while (sent < length) {
        size_t piece = length - sent;
        if (max_piece > 0 && piece > max_piece)
            piece = 1 + (size_t)rand_r(seed) % max_piece;
        char *grown = malloc(held + piece);
        assert_non_null(grown);
        if (held > 0)
            memcpy(grown, query, held);
        memcpy(grown + held, stream + sent, piece);
        free(query);
        query = grown;
        held += piece;
        sent += piece;
        if (!drive(&p, query, &held, o))
            break;
    }
    free(query);
    resp_parser_free(&p);
}

static const char stream_alphabet[] = "*$:+-\r\n\r\n 0123456789\"'\\xaZ\t\0";

static char stream_byte(unsigned *seed)
{
    return stream_alphabet[(size_t)rand_r(seed) % (sizeof(stream_alphabet) - 1)];
}

/* Appends one request, valid as generated; its expected outcome goes to expect. */
static size_t stream_request(char *out, size_t room, unsigned *seed, outcome *expect)
{
    char word[400];
    size_t at = 0;
    int form = rand_r(seed) % 8;
    if (form == 0) { /* inline: plain words */
        int words = rand_r(seed) % 4;
        char head[32];
        size_t want = (size_t)words;
        outcome_add(expect, head, (size_t)snprintf(head, sizeof(head), "[%zu", want));
        for (int w = 0; w < words; w++) {
            size_t length = 1 + (size_t)rand_r(seed) % 12;
            for (size_t i = 0; i < length; i++)
                word[i] = (char)('a' + rand_r(seed) % 26);
            at += (size_t)snprintf(out + at, room - at, w ? " %.*s" : "%.*s", (int)length, word);
            outcome_add(expect, head, (size_t)snprintf(head, sizeof(head), " %zu:", length));
            outcome_add(expect, word, length);
        }
        outcome_add(expect, "]", 1);
        at += (size_t)snprintf(out + at, room - at, rand_r(seed) % 2 ? "\r\n" : "\n");
        expect->requests++;
        return at;
    }
    int argc = rand_r(seed) % 6;
    char head[32];
    at += (size_t)snprintf(out + at, room - at, "*%d\r\n", argc);
    outcome_add(expect, head, (size_t)snprintf(head, sizeof(head), "[%d", argc));
    for (int a = 0; a < argc; a++) {
        size_t length = (size_t)rand_r(seed) % (rand_r(seed) % 8 ? 20 : 300);
        for (size_t i = 0; i < length; i++)
            word[i] = rand_r(seed) % 4 ? (char)(' ' + rand_r(seed) % 95) : stream_byte(seed);
        at += (size_t)snprintf(out + at, room - at, "$%zu\r\n", length);
        assert_true(at + length + 2 <= room);
        memcpy(out + at, word, length);
        at += length;
        memcpy(out + at, "\r\n", 2);
        at += 2;
        outcome_add(expect, head, (size_t)snprintf(head, sizeof(head), " %zu:", length));
        outcome_add(expect, word, length);
    }
    outcome_add(expect, "]", 1);
    expect->requests++;
    return at;
}

/* Streams of valid requests come out as generated, whole or in pieces of any size; damaged
 * streams (bytes changed, inserted, removed, quotes, cut short) come out the same whole as
 * in pieces: the same requests, then the same error or the same wait for more. */
static void test_random_streams(void **state)
{
    (void)state;
    static char stream[STREAM_MAX];
    static outcome expect, whole, pieces;
    unsigned seed = 20261207;
    for (int round = 0; round < 20000; round++) {
        memset(&expect, 0, sizeof(expect));
        size_t length = 0;
        int requests = 1 + rand_r(&seed) % 6;
        for (int r = 0; r < requests; r++)
            length += stream_request(stream + length, sizeof(stream) - length, &seed, &expect);
        bool damaged = round % 2 == 1;
        if (damaged) {
            int changes = 1 + rand_r(&seed) % 3;
            for (int c = 0; c < changes && length > 0; c++) {
                size_t at = (size_t)rand_r(&seed) % length;
                switch (rand_r(&seed) % 4) {
                case 0:
                    stream[at] = stream_byte(&seed);
                    break;
                case 1:
                    if (length < sizeof(stream)) {
                        memmove(stream + at + 1, stream + at, length - at);
                        stream[at] = stream_byte(&seed);
                        length++;
                    }
                    break;
                case 2:
                    memmove(stream + at, stream + at + 1, length - at - 1);
                    length--;
                    break;
                default:
                    length = at;
                    break;
                }
            }
        }
        bool authenticated = rand_r(&seed) % 4 != 0;
        parse_stream(stream, length, 0, authenticated, &seed, &whole);
        size_t max_piece = 1 + (size_t)rand_r(&seed) % (rand_r(&seed) % 2 ? 4 : 64);
        parse_stream(stream, length, max_piece, authenticated, &seed, &pieces);
        assert_int_equal(whole.requests, pieces.requests);
        assert_int_equal(whole.length, pieces.length);
        assert_memory_equal(whole.text, pieces.text, whole.length);
        assert_int_equal(whole.failed, pieces.failed);
        assert_string_equal(whole.error, pieces.error);
        if (!damaged && authenticated) {
            assert_false(whole.failed);
            assert_int_equal(whole.requests, expect.requests);
            assert_int_equal(whole.length, expect.length);
            assert_memory_equal(whole.text, expect.text, expect.length);
        }
    }
}

/* Collects the pending bytes of a buffer into one string. */
static char *buffer_text(const resp_buffer *b, size_t *length)
{
    struct iovec iov[64];
    int n = resp_buffer_iov(b, iov, 64);
    size_t total = 0;
    for (int i = 0; i < n; i++)
        total += iov[i].iov_len;
    char *text = malloc(total + 1);
    assert_non_null(text);
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        memcpy(text + at, iov[i].iov_base, iov[i].iov_len);
        at += iov[i].iov_len;
    }
    text[total] = '\0';
    *length = total;
    return text;
}

static void test_reply_forms(void **state)
{
    (void)state;
    resp_buffer b;
    resp_buffer_init(&b);
    resp_add_simple(&b, "OK");
    resp_add_errorf(&b, "ERR unknown command '%s'", "a\r\nb");
    resp_add_integer(&b, -42);
    resp_add_bulk(&b, "hi", 2);
    resp_add_null(&b);
    resp_add_null_array(&b);
    resp_add_map(&b, 1);
    resp_add_double(&b, 1.5);
    size_t length;
    char *text = buffer_text(&b, &length);
    assert_string_equal(text, "+OK\r\n-ERR unknown command 'a  b'\r\n:-42\r\n$2\r\nhi\r\n"
                              "$-1\r\n*-1\r\n*2\r\n$3\r\n1.5\r\n");
    free(text);
    resp_buffer_free(&b);

    resp_buffer_init(&b);
    b.protocol = 3;
    resp_add_null(&b);
    resp_add_map(&b, 2);
    resp_add_set(&b, 3);
    resp_add_double(&b, 1.5);
    resp_add_verbatim(&b, "abc", 3);
    text = buffer_text(&b, &length);
    assert_string_equal(text, "_\r\n%2\r\n~3\r\n,1.5\r\n=7\r\ntxt:abc\r\n");
    free(text);
    resp_buffer_free(&b);
}

static int released_count;
static void count_release(void *owner)
{
    free(owner);
    released_count++;
}

static void test_buffer_truncate_and_consume(void **state)
{
    (void)state;
    resp_buffer b;
    resp_buffer_init(&b);
    resp_add_simple(&b, "first");
    uint64_t mark = resp_buffer_mark(&b);
    /* A large owned value and plenty of chunk bytes after the mark. */
    size_t big = 100000;
    char *value = malloc(big);
    assert_non_null(value);
    memset(value, 'v', big);
    released_count = 0;
    assert_int_equal(resp_add_bulk_owned(&b, value, big, value, count_release), 0);
    for (int i = 0; i < 5000; i++)
        resp_add_integer(&b, i);
    assert_true(resp_buffer_pending(&b) > big);
    resp_buffer_truncate(&b, mark);
    assert_int_equal(released_count, 1);
    size_t length;
    char *text = buffer_text(&b, &length);
    assert_string_equal(text, "+first\r\n");
    free(text);

    /* Consume part, append, and check that what remains is the exact tail. */
    resp_buffer_consume(&b, 3);
    resp_add_integer(&b, 7);
    text = buffer_text(&b, &length);
    assert_string_equal(text, "rst\r\n:7\r\n");
    free(text);
    resp_buffer_consume(&b, length);
    assert_int_equal(resp_buffer_pending(&b), 0);

    value = malloc(big);
    assert_non_null(value);
    memset(value, 'w', big);
    assert_int_equal(resp_add_bulk_owned(&b, value, big, value, count_release), 0);
    resp_buffer_consume(&b, resp_buffer_pending(&b));
    assert_int_equal(released_count, 2);
    resp_buffer_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_multibulk_whole),
        cmocka_unit_test(test_multibulk_binary),
        cmocka_unit_test(test_multibulk_split_everywhere),
        cmocka_unit_test(test_pipelined),
        cmocka_unit_test(test_inline),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_empty_multibulk),
        cmocka_unit_test(test_integers_as_redis),
        cmocka_unit_test(test_oversized_lines),
        cmocka_unit_test(test_large_bulk_needs),
        cmocka_unit_test(test_unauthenticated_limits),
        cmocka_unit_test(test_random_streams),
        cmocka_unit_test(test_reply_forms),
        cmocka_unit_test(test_buffer_truncate_and_consume),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
