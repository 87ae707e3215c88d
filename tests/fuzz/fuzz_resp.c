/*
 * fuzz_resp.c -- the RESP request parser against any bytes, whole and cut into pieces.
 *
 * The input's first two bytes choose the parser's settings (authenticated or not, a small
 * or the default bulk limit) and seed the cuts; the rest is a stream of requests, as a
 * client would send it. The stream is parsed twice, each time on a fresh copy (inline
 * requests are unquoted in place):
 *
 *   whole   the parser sees every byte at once: it returns each request, one after the
 *           other, then INCOMPLETE at the stream's end or ERROR at a malformed one;
 *   pieces  the bytes arrive a few at a time at pseudo-random cuts, as from a socket,
 *           and the parser is called again with the longer buffer after each INCOMPLETE.
 *
 * Both must see the same requests with the same arguments and end the same way (the same
 * error message), and every request must describe bytes inside what it consumed. Any
 * difference, an out-of-bounds access or undefined behaviour aborts the process.
 *
 * Built with libFuzzer by `make fuzz` (clang); tests/fuzz/replay.c runs the same function
 * over the seed corpus and its mutations in the default test tier.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/server/resp.c"
#include "../../src/server/text.c"

#include "fuzz.h"

/* What one parse of the stream saw: a digest of each request, then how it ended. */
struct resp_outcome {
    uint64_t digest; /* of every request's arguments, in order */
    size_t requests;
    size_t consumed; /* bytes of the stream the requests took */
    int end;         /* RESP_PARSE_INCOMPLETE or RESP_PARSE_ERROR */
    char error[96];
};

static uint64_t resp_digest_bytes(uint64_t digest, const void *data, size_t length)
{
    const unsigned char *bytes = data;
    for (size_t i = 0; i < length; i++)
        digest = (digest ^ bytes[i]) * 1099511628211ull;
    return digest;
}

/* Checks one finished request and folds its arguments into the outcome. */
static void resp_note_request(struct resp_outcome *out, const resp_parser *p, const char *at,
                              size_t available)
{
    FUZZ_CHECK(p->position > 0 && p->position <= available);
    uint64_t digest = resp_digest_bytes(out->digest, &p->argc, sizeof(p->argc));
    for (size_t i = 0; i < p->argc; i++) {
        const resp_arg *arg = &p->args[i];
        FUZZ_CHECK(arg->offset <= p->position && arg->length <= p->position - arg->offset);
        digest = resp_digest_bytes(digest, &arg->length, sizeof(arg->length));
        digest = resp_digest_bytes(digest, at + arg->offset, arg->length);
    }
    out->digest = digest;
    out->requests++;
    out->consumed += p->position;
}

static void resp_note_error(struct resp_outcome *out, const resp_parser *p)
{
    FUZZ_CHECK(p->error != NULL);
    out->end = RESP_PARSE_ERROR;
    snprintf(out->error, sizeof(out->error), "%s", p->error);
}

/* Runs the parser over stream[0..length), the bytes made available up to each of cuts[]
 * in turn (the last cut is length). */
static void resp_parse_stream(const uint8_t *settings, const uint8_t *stream, size_t length,
                              const size_t *cuts, size_t ncuts, struct resp_outcome *out)
{
    char *buffer = malloc(length + 1);
    FUZZ_CHECK(buffer != NULL);
    memcpy(buffer, stream, length);
    resp_parser p;
    resp_parser_init(&p);
    p.authenticated = (settings[0] & 1) == 0;
    if (settings[0] & 2)
        p.max_bulk = 1024;
    if (settings[0] & 4)
        p.max_args = 16;
    memset(out, 0, sizeof(*out));
    out->end = RESP_PARSE_INCOMPLETE;
    size_t start = 0;
    for (size_t c = 0; c < ncuts && out->end == RESP_PARSE_INCOMPLETE; c++) {
        size_t available = cuts[c];
        for (;;) {
            int result = resp_parse(&p, buffer + start, available - start);
            if (result == RESP_PARSE_DONE) {
                resp_note_request(out, &p, buffer + start, available - start);
                start += p.position;
                resp_parser_reset(&p);
                continue;
            }
            if (result == RESP_PARSE_ERROR)
                resp_note_error(out, &p);
            else
                FUZZ_CHECK(result == RESP_PARSE_INCOMPLETE);
            break;
        }
    }
    resp_parser_free(&p);
    free(buffer);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    const uint8_t *settings = data;
    const uint8_t *stream = data + 2;
    size_t length = size - 2;

    struct resp_outcome whole, pieces;
    resp_parse_stream(settings, stream, length, &length, 1, &whole);

    size_t *cuts = malloc((length + 1) * sizeof(*cuts));
    FUZZ_CHECK(cuts != NULL);
    size_t ncuts = 0;
    uint32_t state = settings[1] * 2654435761u + 1;
    for (size_t at = 0; at < length;) {
        state = state * 1103515245u + 12345u;
        at += 1 + (state >> 16) % 7; /* pieces of 1 to 7 bytes */
        cuts[ncuts++] = at < length ? at : length;
    }
    if (ncuts == 0)
        cuts[ncuts++] = 0;
    resp_parse_stream(settings, stream, length, cuts, ncuts, &pieces);
    free(cuts);

    FUZZ_CHECK(whole.requests == pieces.requests);
    FUZZ_CHECK(whole.digest == pieces.digest);
    FUZZ_CHECK(whole.consumed == pieces.consumed && whole.consumed <= length);
    FUZZ_CHECK(whole.end == pieces.end);
    FUZZ_CHECK(strcmp(whole.error, pieces.error) == 0);
    return 0;
}
