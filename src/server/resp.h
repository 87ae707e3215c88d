/*
 * resp.h -- the Redis serialization protocol (RESP2 and RESP3): a resumable request parser
 * and an output buffer that replies are appended to.
 *
 * See resp.c for the format, the invariants and how the module is tested.
 * Thread-safety: a parser and a buffer belong to one client, owned by one event loop.
 */
#ifndef SHOAL_SERVER_RESP_H
#define SHOAL_SERVER_RESP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* Largest inline command line and largest "*<count>" or "$<length>" header line, as Redis. */
#define RESP_MAX_INLINE (64u * 1024u)
/* Limits that apply before a client has authenticated, as Redis: a stranger may not make
 * the server reserve memory for a large request. */
#define RESP_UNAUTHENTICATED_MAX_ARGS 10
#define RESP_UNAUTHENTICATED_MAX_BULK 16384

/* ---------------------------------------------------------------------------------------
 * Request parser
 * ------------------------------------------------------------------------------------- */

enum resp_parse_result {
    RESP_PARSE_DONE = 1,       /* a whole request is described by the parser's args */
    RESP_PARSE_INCOMPLETE = 0, /* more bytes are needed; call again with the longer buffer */
    RESP_PARSE_ERROR = -1,     /* the request is malformed; error names the reason */
};

/* One argument: its bytes are buffer[offset .. offset + length) where buffer is the start
 * of the request (the pointer passed to resp_parse). */
typedef struct resp_arg {
    size_t offset;
    size_t length;
} resp_arg;

typedef struct resp_parser {
    /* Limits, set by the owner before parsing. */
    uint64_t max_bulk;      /* longest bulk argument */
    uint64_t max_args;      /* most arguments in one multibulk request */
    bool authenticated;     /* false: the tighter unauthenticated limits apply */

    /* Progress through the request being parsed; zeroed by resp_parser_reset. */
    size_t position;        /* bytes of the request consumed so far */
    long long args_expected; /* multibulk: arguments announced; -1 before the header */
    long long bulk_length;  /* multibulk: length of the pending bulk; -1 before its header */
    bool is_inline;         /* the request is an inline (telnet style) command */
    size_t bytes_needed;    /* when INCOMPLETE: the request needs at least this many bytes */
    size_t line_scanned;    /* bytes of the current header line known to hold no newline */

    /* The arguments found so far. args is owned by the parser. */
    resp_arg *args;
    size_t argc;
    size_t args_capacity;

    const char *error; /* when ERROR: Redis's message, without "-ERR Protocol error: " */
    char error_text[64];
} resp_parser;

/* Initialises a parser with Redis's default limits. */
void resp_parser_init(resp_parser *p);
/* Frees the parser's argument array. */
void resp_parser_free(resp_parser *p);
/* Forgets the request in progress, keeping the limits and the argument array's memory. */
void resp_parser_reset(resp_parser *p);

/* Parses the request that starts at buffer[0]; length bytes are available. The same
 * request must be passed again (with more bytes) after RESP_PARSE_INCOMPLETE: the parser
 * resumes where it stopped instead of scanning the bytes again. On RESP_PARSE_DONE,
 * p->position is the request's total length and p->args/p->argc its arguments; an empty
 * request (an empty inline line, "*0" or a negative count) is DONE with argc 0. Inline
 * requests are unquoted in place, which is why buffer is not const. Cost: linear in the
 * new bytes, never in the bytes already seen. */
int resp_parse(resp_parser *p, char *buffer, size_t length);

/* ---------------------------------------------------------------------------------------
 * Output buffer: a chain of small chunks, plus large values referenced where they lie.
 * ------------------------------------------------------------------------------------- */

typedef struct resp_block resp_block;

typedef struct resp_buffer {
    resp_block *head, *tail;
    uint64_t appended;   /* bytes ever appended; marks are in these units */
    uint64_t sent;       /* bytes ever consumed */
    int protocol;        /* 2 or 3: how nulls, maps, sets, doubles and booleans are written */
    bool muted;          /* CLIENT REPLY OFF or SKIP: appends are dropped (marks stay put) */
} resp_buffer;

void resp_buffer_init(resp_buffer *b);
/* Frees every block. The buffer may be reused after resp_buffer_init. */
void resp_buffer_free(resp_buffer *b);
/* Bytes waiting to be sent. */
static inline uint64_t resp_buffer_pending(const resp_buffer *b)
{
    return b->appended - b->sent;
}
/* A mark to come back to with resp_buffer_truncate: replies of a command that must be run
 * again are dropped. Only bytes not yet consumed can be dropped. */
static inline uint64_t resp_buffer_mark(const resp_buffer *b)
{
    return b->appended;
}
void resp_buffer_truncate(resp_buffer *b, uint64_t mark);
/* The pending byte at absolute position (mark units), or -1 if it is not pending. */
int resp_buffer_byte_at(const resp_buffer *b, uint64_t position);
/* Fills up to max iovecs with pending bytes; returns how many were filled. */
int resp_buffer_iov(const resp_buffer *b, struct iovec *iov, int max);
/* Drops n sent bytes from the front. */
void resp_buffer_consume(resp_buffer *b, uint64_t n);

/* Appenders. Each returns 0, or -1 when memory ran out (the buffer is then unchanged
 * except that a reply may be cut; the caller closes the connection). */
int resp_add_raw(resp_buffer *b, const void *data, size_t length);
int resp_add_simple(resp_buffer *b, const char *text);       /* +text */
/* Called with the text of every error reply added to any buffer (INFO errorstats); set
 * once at startup, before any loop runs. The observer must be thread-safe. */
typedef void (*resp_error_observer)(const char *text, size_t length);
void resp_set_error_observer(resp_error_observer observer);
int resp_add_error(resp_buffer *b, const char *text);        /* -text, text has its prefix */
int resp_add_errorf(resp_buffer *b, const char *format, ...)
    __attribute__((format(printf, 2, 3)));
int resp_add_ok(resp_buffer *b);
int resp_add_integer(resp_buffer *b, long long value);       /* :value */
int resp_add_bulk(resp_buffer *b, const void *data, size_t length);
int resp_add_bulk_cstring(resp_buffer *b, const char *text);
/* A bulk reply whose payload lies in memory the buffer takes over: data[0..length) is sent
 * from where it is and release(owner) is called once it has been sent or dropped. Used for
 * large values, so they are not copied again. */
int resp_add_bulk_owned(resp_buffer *b, const void *data, size_t length, void *owner,
                        void (*release)(void *owner));
int resp_add_null(resp_buffer *b);           /* RESP2 $-1, RESP3 _ */
int resp_add_null_array(resp_buffer *b);     /* RESP2 *-1, RESP3 _ */
int resp_add_array(resp_buffer *b, long long count);  /* *count */
int resp_add_map(resp_buffer *b, long long pairs);    /* RESP3 %pairs, RESP2 *(2 pairs) */
int resp_add_set(resp_buffer *b, long long count);    /* RESP3 ~count, RESP2 *count */
int resp_add_double(resp_buffer *b, double value);    /* RESP3 ,value, RESP2 bulk */
int resp_add_verbatim(resp_buffer *b, const char *data, size_t length); /* RESP3 =txt: */

#endif /* SHOAL_SERVER_RESP_H */
