/*
 * network.c -- event loops, connections, reading requests and writing replies.
 *
 * Purpose
 * -------
 * shoal-server runs N event-loop threads (default: half the online cores, at least one).
 * Each loop has its own epoll instance and its own listening socket on the same port
 * (SO_REUSEPORT), so the kernel spreads new connections over the loops with no acceptor
 * thread and no hand-off. A connection stays on the loop that accepted it for its whole
 * life; that loop reads its requests, runs its commands directly on the engine (no
 * server-wide lock: the engine's shards do the locking) and writes its replies.
 * docs/OPERATIONS.md explains why plain epoll was chosen over libuv (measured).
 *
 * Life of a request
 * -----------------
 * readable -> network_read: read into the client's query buffer (growing it to the
 * exact size a large bulk argument announced, so a 100 MiB value is read in a few large
 * reads into one allocation) -> network_process: parse every complete request in the
 * buffer (pipelining) and dispatch each -> after the round's last event, network_flush:
 * writev the pending replies (all clients of the round together, network_flush_round);
 * if the socket is full, arm EPOLLOUT and continue when writable.
 *
 * In durable mode a write's reply is held until the log confirms it (pending.c): the
 * flush sends only up to pending_sendable, EPOLLOUT is armed only for sendable bytes, and
 * the loop's epoll set also watches the completion queue's eventfd (pending_drain, then
 * network_client_progress sends what became sendable); a round also drains between two
 * client events when the log has posted completions (network_round_run). A client that
 * goes away with writes in flight is freed except for its struct, which pending.c keeps
 * until the last completion. At shutdown a loop stops reading and accepting, waits
 * (bounded) for the writes in flight so their replies still go out, then closes its
 * clients.
 *
 * A request that needs a catalog change (a new database, a flush, ACL SETUSER) suspends
 * its client (catalog.c): network_process stops in front of it and keeps it, parsed, at
 * the front of the query buffer (request_held); input is still read, within the query
 * buffer limit, but nothing after it runs. The loop also watches the catalog queue's
 * eventfd (catalog_drain), and network_client_progress runs the held request again,
 * then the rest of the buffer.
 *
 * Invariants
 * ----------
 * 1. A client is touched only by its loop's thread, except for the fields server.h marks
 *    shared; another thread that wants it closed (CLIENT KILL, shutdown) sets
 *    kill_requested and wakes the loop through its eventfd.
 * 2. Memory per client is bounded: the query buffer by client-query-buffer-limit (and
 *    the parser's line and bulk limits), the output by client-output-buffer-limit. A
 *    client over a limit is closed; other clients are not affected.
 * 3. A protocol error is answered with "-ERR Protocol error: ..." and the connection is
 *    closed once that reply is sent; no further request of that client is run.
 * 4. A client is unlinked from the registry (under its lock) before it is freed, so a
 *    thread walking the registry never sees freed memory.
 * 5. A client closed during a round keeps its struct (descriptor -1) until the round
 *    ends, and no list of the loop names it by then: a later event of the round that
 *    names it finds it closed and is skipped (network_round_close frees it).
 *
 * Testing
 * -------
 * tests/integration/test_bad_clients.py: truncated and malformed frames, negative and
 * huge lengths, 1 GB without a newline, 10,000 connections opened and dropped, a client
 * that never reads; the server must keep serving others with bounded RSS.
 */
#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "catalog.h"
#include "log.h"
#include "monitor.h"
#include "pending.h"

/* epoll data for the loop's own descriptors; client pointers are never this small. */
#define NETWORK_TAG_WAKE 1u
#define NETWORK_TAG_DURABLE 2u
#define NETWORK_TAG_CATALOG 3u
#define NETWORK_TAG_MONITOR 4u
#define NETWORK_TAG_LISTEN_BASE 16u
#define NETWORK_TAG_LIMIT 4096u

#define NETWORK_READ_CHUNK (16u * 1024u)

/* At shutdown a loop waits at most this many rounds of NETWORK_DRAIN_ROUND_MS for the log
 * to confirm the writes in flight, so their replies can still be sent. */
#define NETWORK_DRAIN_ROUNDS 100
#define NETWORK_DRAIN_ROUND_MS 100

static long long network_now_ms(void)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

/* ---------------------------------------------------------------------------------------
 * Clients
 * ------------------------------------------------------------------------------------- */

static void network_format_address(const struct sockaddr_storage *sa, char *out, size_t size)
{
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (sa->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
        port = ntohs(in->sin_port);
        snprintf(out, size, "%s:%d", host, port);
    } else if (sa->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        port = ntohs(in6->sin6_port);
        snprintf(out, size, "%s:%d", host, port);
    } else {
        snprintf(out, size, "?:0");
    }
}

static client *network_client_new(event_loop *loop, int fd)
{
    client *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->fd = fd;
    c->loop = loop;
    c->id = atomic_fetch_add(&server.next_client_id, 1) + 1;
    c->created_ms = network_now_ms();
    atomic_store(&c->last_interaction_ms, c->created_ms);
    resp_parser_init(&c->parser);
    resp_buffer_init(&c->out);
    store_txn_init(&c->txn, server.db);
    c->authenticated = !acl_default_requires_auth();
    acl_default_identity(&c->identity);
    c->parser.authenticated = c->authenticated;
    c->db = 0;
    struct sockaddr_storage sa;
    socklen_t length = sizeof(sa);
    if (getpeername(fd, (struct sockaddr *)&sa, &length) == 0)
        network_format_address(&sa, c->address, sizeof(c->address));
    length = sizeof(sa);
    if (getsockname(fd, (struct sockaddr *)&sa, &length) == 0)
        network_format_address(&sa, c->local_address, sizeof(c->local_address));
    if (loop->client_count == loop->client_capacity) {
        size_t capacity = loop->client_capacity ? loop->client_capacity * 2 : 64;
        client **grown = realloc(loop->clients, capacity * sizeof(*grown));
        if (grown == NULL) {
            resp_parser_free(&c->parser);
            free(c);
            return NULL;
        }
        loop->clients = grown;
        loop->client_capacity = capacity;
    }
    loop->clients[loop->client_count++] = c;
    pthread_mutex_lock(&server.registry_lock);
    c->registry_next = server.registry_head;
    if (server.registry_head != NULL)
        server.registry_head->registry_previous = c;
    server.registry_head = c;
    pthread_mutex_unlock(&server.registry_lock);
    atomic_fetch_add(&server.connected_clients, 1);
    atomic_fetch_add(&server.total_connections, 1);
    return c;
}

/* Frees a closed client's struct, or, during a round, keeps it until the round's end
 * (network_round_close): an event of this round may still name it, and is then skipped. */
static void network_client_release(client *c)
{
    event_loop *loop = c->loop;
    if (!loop->in_round) {
        free(c);
        return;
    }
    c->freed_next = loop->freed;
    loop->freed = c;
}

static void network_client_free(client *c)
{
    event_loop *loop = c->loop;
    /* Invariant 4: unlink from the registry first. */
    pthread_mutex_lock(&server.registry_lock);
    if (c->registry_previous != NULL)
        c->registry_previous->registry_next = c->registry_next;
    else
        server.registry_head = c->registry_next;
    if (c->registry_next != NULL)
        c->registry_next->registry_previous = c->registry_previous;
    pthread_mutex_unlock(&server.registry_lock);
    for (size_t i = 0; i < loop->client_count; i++) {
        if (loop->clients[i] == c) {
            loop->clients[i] = loop->clients[--loop->client_count];
            break;
        }
    }
    epoll_ctl(loop->epoll_fd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    catalog_client_free(c); /* a catalog change in flight forgets the client (catalog.c) */
    monitor_remove(c);
    client_free_multi(c);
    client_unwatch(c);
    free(c->watched);
    free(c->queue);
    store_txn_free(&c->txn);
    resp_parser_free(&c->parser);
    resp_buffer_free(&c->out);
    free(c->query);
    free(c->argv);
    free(c->lengths);
    atomic_fetch_sub(&server.connected_clients, 1);
    if (c->pending_count > 0) {
        /* Writes of this client are still in the log: their callbacks come back through
         * the loop's queue, so the struct stays until the last one has (pending.c). */
        pending_adopt(c);
        return;
    }
    network_client_release(c);
}

/* The events the client needs: input unless it is paused (too many writes waiting for
 * the log, a reply that closes the connection, shutdown), output while some of its
 * pending bytes may be sent (held replies do not count: they wait for the log, and a
 * writable socket would wake the loop for nothing). */
static void network_update_interest(client *c)
{
    bool readable = !c->loop->draining && !c->close_after_reply && !c->input_ended &&
                    c->pending_count < PENDING_CLIENT_MAX;
    bool writable = resp_buffer_pending(&c->out) > 0 && c->out.sent < pending_sendable(c);
    uint32_t events = (readable ? (uint32_t)EPOLLIN : 0u) | (writable ? (uint32_t)EPOLLOUT : 0u);
    if (events == c->epoll_events)
        return;
    struct epoll_event event = {.events = events, .data.ptr = c};
    epoll_ctl(c->loop->epoll_fd, EPOLL_CTL_MOD, c->fd, &event);
    c->epoll_events = events;
}

/* Writes as much pending output as the socket takes, up to the replies that wait for the
 * log (pending.c, invariant 1). Returns -1 if the client must go. */
static int network_flush(client *c)
{
    uint64_t sendable = pending_sendable(c);
    while (resp_buffer_pending(&c->out) > 0 && c->out.sent < sendable) {
        struct iovec iov[64];
        int count = resp_buffer_iov(&c->out, iov, 64);
        uint64_t allowed = sendable - c->out.sent;
        for (int i = 0; i < count; i++) {
            if (iov[i].iov_len >= allowed) {
                iov[i].iov_len = (size_t)allowed;
                count = i + 1;
                break;
            }
            allowed -= iov[i].iov_len;
        }
        ssize_t written = writev(c->fd, iov, count);
        if (written < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            return -1;
        }
        resp_buffer_consume(&c->out, (uint64_t)written);
        atomic_fetch_add_explicit(&server.output_bytes, (uint64_t)written, memory_order_relaxed);
    }
    network_update_interest(c);
    atomic_store_explicit(&c->output_bytes_held, resp_buffer_pending(&c->out),
                          memory_order_relaxed);
    if (resp_buffer_pending(&c->out) == 0 && c->close_after_reply)
        return -1;
    return 0;
}

/* Invariant 2, output side: the hard limit closes at once; the soft limit after it has
 * been exceeded for the configured seconds. */
static bool network_output_over_limit(client *c, long long now_ms)
{
    uint64_t pending = resp_buffer_pending(&c->out);
    long long hard = atomic_load_explicit(&server.config.output_hard_limit, memory_order_relaxed);
    long long soft = atomic_load_explicit(&server.config.output_soft_limit, memory_order_relaxed);
    if (hard > 0 && pending > (uint64_t)hard)
        return true;
    if (soft > 0 && pending > (uint64_t)soft) {
        if (c->soft_limit_since_ms == 0)
            c->soft_limit_since_ms = now_ms;
        long long seconds = atomic_load_explicit(&server.config.output_soft_seconds,
                                                 memory_order_relaxed);
        if (now_ms - c->soft_limit_since_ms >= seconds * 1000)
            return true;
    } else {
        c->soft_limit_since_ms = 0;
    }
    return false;
}

static void network_protocol_error(client *c, const char *message)
{
    /* Under CLIENT REPLY OFF, or SKIP before the request that failed, Redis sends no error
     * either: the connection just closes. */
    c->out.muted = c->reply_off || c->reply_skip;
    resp_add_errorf(&c->out, "ERR Protocol error: %s", message);
    c->close_after_reply = true;
    atomic_fetch_add_explicit(&server.protocol_errors, 1, memory_order_relaxed);
    log_message(LOG_VERBOSE, "protocol error from client id=%llu addr=%s: %s",
                (unsigned long long)c->id, c->address, message);
}

/* Points the client's argv at the arguments the parser found in the request at base. */
static bool network_load_arguments(client *c, char *base)
{
    size_t argc = c->parser.argc;
    if (argc > c->argv_capacity) {
        size_t capacity = argc < 16 ? 16 : argc;
        char **argv = realloc(c->argv, capacity * sizeof(*argv));
        if (argv != NULL)
            c->argv = argv;
        size_t *lengths = realloc(c->lengths, capacity * sizeof(*lengths));
        if (lengths != NULL)
            c->lengths = lengths;
        if (argv == NULL || lengths == NULL)
            return false;
        c->argv_capacity = capacity;
    }
    for (size_t i = 0; i < argc; i++) {
        c->argv[i] = base + c->parser.args[i].offset;
        c->lengths[i] = c->parser.args[i].length;
    }
    c->argc = argc;
    return true;
}

/* Runs the parsed request at base. Returns false if it was suspended for a catalog change
 * (catalog.c): it then stays parsed, and the caller keeps it at the front of the buffer. */
static bool network_run_request(client *c, char *base)
{
    if (c->parser.argc == 0) {
        c->reply_skip = false; /* an empty request is the one CLIENT REPLY SKIP skipped */
        return true;
    }
    if (!network_load_arguments(c, base)) {
        c->close_now = true;
        return true;
    }
    bool skip = c->reply_skip; /* CLIENT REPLY: this request's reply is dropped */
    c->reply_skip = false;
    c->out.muted = c->reply_off || skip;
    command_dispatch(c);
    c->out.muted = c->reply_off;
    c->argc = 0;
    if (c->catalog_job != NULL) {
        c->reply_skip = skip; /* it runs again, still skipped */
        return false;
    }
    if (c->catalog_done != NULL)
        catalog_forget(c); /* the request that waited has completed */
    c->catalog_began_ns = 0;
    atomic_fetch_add_explicit(&c->commands_processed, 1, memory_order_relaxed);
    return true;
}

/* After a request has run: the parser starts afresh for the next one, and a client whose
 * output passed its limit is closed. Returns false when the client must stop. */
static bool network_request_done(client *c, long long now_ms)
{
    resp_parser_reset(&c->parser);
    c->parser.authenticated = c->authenticated;
    if (!network_output_over_limit(c, now_ms))
        return true;
    atomic_fetch_add(&server.output_limit_disconnections, 1);
    log_message(LOG_NOTICE, "closing client id=%llu addr=%s: output buffer limit",
                (unsigned long long)c->id, c->address);
    c->close_now = true;
    return false;
}

/* Runs every complete request in the query buffer: first the held request, if a catalog
 * change it waited for is done, then the others in order. A request that suspends stops
 * the client here, in front of everything after it (catalog.c, invariant 2). */
static void network_process(client *c)
{
    size_t start = 0;
    bool incomplete = false;
    /* One clock reading per batch of requests: precise enough for the soft limit, and the
     * start of the first command (the later ones start where the one before ended). */
    event_loop *loop = c->loop;
    loop->clock_ns = store_monotonic_ns();
    loop->clock_chain = true;
    long long now_ms = (long long)(loop->clock_ns / 1000000) + loop->wall_offset_ms;
    if (c->request_held) {
        /* Parsed at query[0] when it was suspended; the buffer may have moved since, the
         * offsets have not. It runs even when the loop is draining: it was accepted. */
        if (c->catalog_job != NULL || !network_run_request(c, c->query)) {
            loop->clock_chain = false;
            loop->clock_ns = 0;
            return;
        }
        c->request_held = false;
        start = c->parser.position;
        network_request_done(c, now_ms);
    }
    /* A client with PENDING_CLIENT_MAX writes waiting for the log stops here; the rest of
     * its input runs when some complete (network_client_progress). */
    while (!c->close_after_reply && !c->close_now && !c->loop->draining &&
           start < c->query_length && c->pending_count < PENDING_CLIENT_MAX) {
        int result = resp_parse(&c->parser, c->query + start, c->query_length - start);
        if (result == RESP_PARSE_INCOMPLETE) {
            incomplete = true;
            break;
        }
        if (result == RESP_PARSE_ERROR) {
            network_protocol_error(c, c->parser.error);
            break;
        }
        if (!network_run_request(c, c->query + start)) {
            c->request_held = true; /* moved to query[0] below, parser state kept */
            break;
        }
        start += c->parser.position;
        if (!network_request_done(c, now_ms))
            break;
    }
    loop->clock_chain = false;
    loop->clock_ns = 0;
    /* Input that ended closes the connection once its replies are out, when nothing it
     * sent is left to run: the rest is a request cut short, which no byte will complete. */
    if (c->input_ended && !c->request_held && (incomplete || start >= c->query_length))
        c->close_after_reply = true;
    if (start > 0) {
        memmove(c->query, c->query + start, c->query_length - start);
        c->query_length -= start;
    }
    /* A buffer that grew for one large request shrinks back once it is processed. */
    if (c->query_capacity > 4 * NETWORK_READ_CHUNK && c->query_length < NETWORK_READ_CHUNK &&
        c->parser.bytes_needed < NETWORK_READ_CHUNK) {
        char *smaller = realloc(c->query, 2 * NETWORK_READ_CHUNK);
        if (smaller != NULL) {
            c->query = smaller;
            c->query_capacity = 2 * NETWORK_READ_CHUNK;
        }
    }
    atomic_store_explicit(&c->query_bytes_held, c->query_capacity, memory_order_relaxed);
}

/* Reads what is available. Returns -1 if the client must go. */
static int network_read(client *c)
{
    size_t want = c->query_length + NETWORK_READ_CHUNK;
    if (c->parser.bytes_needed > want)
        want = c->parser.bytes_needed; /* a large bulk: make room for all of it at once */
    long long limit = atomic_load_explicit(&server.config.client_query_buffer_limit,
                                           memory_order_relaxed);
    if (want > (size_t)limit + NETWORK_READ_CHUNK) {
        atomic_fetch_add(&server.query_limit_disconnections, 1);
        log_message(LOG_NOTICE, "closing client id=%llu addr=%s: query buffer limit",
                    (unsigned long long)c->id, c->address);
        return -1;
    }
    if (want > c->query_capacity) {
        size_t capacity = c->query_capacity ? c->query_capacity : NETWORK_READ_CHUNK;
        while (capacity < want)
            capacity = capacity * 2 > want && want > 1024 * 1024 ? want : capacity * 2;
        char *grown = realloc(c->query, capacity);
        if (grown == NULL)
            return -1;
        c->query = grown;
        c->query_capacity = capacity;
    }
    ssize_t n = read(c->fd, c->query + c->query_length, c->query_capacity - c->query_length);
    if (n == 0) {
        /* The peer is done sending, perhaps only that (shutdown of its write side): what
         * it sent still runs and is answered, as Redis runs every request it has read;
         * network_process closes the connection once nothing of it is left to run. */
        c->input_ended = true;
        return 0;
    }
    if (n < 0)
        return (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) ? 0 : -1;
    c->query_length += (size_t)n;
    atomic_fetch_add_explicit(&server.input_bytes, (uint64_t)n, memory_order_relaxed);
    atomic_store_explicit(&c->last_interaction_ms, network_now_ms(), memory_order_relaxed);
    if (c->query_length > (size_t)limit) {
        atomic_fetch_add(&server.query_limit_disconnections, 1);
        log_message(LOG_NOTICE, "closing client id=%llu addr=%s: query buffer limit",
                    (unsigned long long)c->id, c->address);
        return -1;
    }
    return 0;
}

void network_client_write(client *c)
{
    if (network_flush(c) != 0)
        network_client_free(c);
}

void network_client_progress(client *c)
{
    if (c->zombie) {
        if (c->pending_count == 0)
            network_client_release(c); /* the rest went when it disconnected */
        return;
    }
    /* Input that stopped at PENDING_CLIENT_MAX waiting writes, or behind a request that
     * waited for a catalog change, runs now (while draining, only that request). */
    if (c->query_length > 0 && !c->close_after_reply && c->catalog_job == NULL &&
        c->pending_count < PENDING_CLIENT_MAX && (c->request_held || !c->loop->draining)) {
        network_process(c);
        if (c->close_now) {
            network_client_free(c);
            return;
        }
    }
    if (network_flush(c) != 0)
        network_client_free(c);
}

static void network_client_event(client *c, uint32_t events)
{
    if (c->fd < 0)
        return; /* closed earlier in this round (network_client_release) */
    if (events & (EPOLLERR | EPOLLHUP)) {
        if (!(events & EPOLLIN)) {
            network_client_free(c);
            return;
        }
    }
    if ((events & EPOLLIN) && !c->close_after_reply && !c->input_ended && !c->loop->draining &&
        c->pending_count < PENDING_CLIENT_MAX) {
        if (network_read(c) != 0) {
            network_client_free(c);
            return;
        }
        network_process(c);
        if (c->close_now) {
            network_client_free(c);
            return;
        }
    }
    c->loop->round_clients[c->loop->round_count++] = c; /* flushed by network_flush_round */
}

/* Writes the replies of the round's clients, all after the round's requests have run, as
 * Redis does before it sleeps. Flushing each client as soon as its requests ran woke the
 * client's process once per client: each reply reached it while it was back asleep after
 * the previous one, and every wake-up cost both sides a cross-core interrupt (under a
 * hypervisor, the dearest part of a reply). Written together, the replies of a round find
 * it awake. Nothing frees a listed client before this runs: a client is freed by its own
 * event (which then does not list it), or by the cron and the drains, which each come after
 * a flush of the round (a drain between two events too, network_round_run). */
static void network_flush_round(event_loop *loop)
{
    for (size_t i = 0; i < loop->round_count; i++) {
        client *c = loop->round_clients[i];
        if (network_flush(c) != 0)
            network_client_free(c);
    }
    loop->round_count = 0;
}

/* ---------------------------------------------------------------------------------------
 * Loops
 * ------------------------------------------------------------------------------------- */

static void network_accept(event_loop *loop, int listen_fd)
{
    /* Bounded per wake-up so that one loop busy accepting still serves its clients. */
    for (int accepted = 0; accepted < 256; accepted++) {
        int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        long long maxclients = atomic_load(&server.config.maxclients);
        if (atomic_load(&server.connected_clients) >= maxclients) {
            static const char refusal[] = "-ERR max number of clients reached\r\n";
            ssize_t ignored = write(fd, refusal, sizeof(refusal) - 1);
            (void)ignored;
            close(fd);
            atomic_fetch_add(&server.rejected_connections, 1);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        long long keepalive = atomic_load(&server.config.tcp_keepalive);
        if (keepalive > 0) {
            int interval = (int)keepalive;
            setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
            setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &interval, sizeof(interval));
        }
        client *c = network_client_new(loop, fd);
        if (c == NULL) {
            close(fd);
            continue;
        }
        struct epoll_event event = {.events = EPOLLIN, .data.ptr = c};
        c->epoll_events = EPOLLIN;
        if (epoll_ctl(loop->epoll_fd, EPOLL_CTL_ADD, fd, &event) != 0)
            network_client_free(c);
    }
}

/* Timeouts, kill requests and the soft output limit, a few times a second. */
static void network_cron(event_loop *loop, long long now_ms)
{
    long long timeout = atomic_load(&server.config.timeout);
    for (size_t i = 0; i < loop->client_count;) {
        client *c = loop->clients[i];
        bool go = atomic_load(&c->kill_requested);
        /* A client suspended for a catalog change is waiting for the server, not idle. */
        if (!go && timeout > 0 && !c->in_multi && c->catalog_job == NULL &&
            resp_buffer_pending(&c->out) == 0 &&
            now_ms - atomic_load(&c->last_interaction_ms) > timeout * 1000)
            go = true;
        if (!go && resp_buffer_pending(&c->out) > 0 && network_output_over_limit(c, now_ms)) {
            atomic_fetch_add(&server.output_limit_disconnections, 1);
            go = true;
        }
        if (go) {
            network_client_free(c); /* swaps the last client into slot i */
            continue;
        }
        i++;
    }
}

/* The wall clock minus the monotonic clock, in milliseconds. Commands derive their "now"
 * from their monotonic start time and this offset (command.c): one clock reading each. */
static int64_t network_wall_offset_ms(void)
{
    struct timespec wall, mono;
    clock_gettime(CLOCK_REALTIME, &wall);
    clock_gettime(CLOCK_MONOTONIC, &mono);
    return ((int64_t)wall.tv_sec - (int64_t)mono.tv_sec) * 1000 +
           ((int64_t)wall.tv_nsec - (int64_t)mono.tv_nsec) / 1000000;
}

/* One round of events. The wake eventfd (shutdown, CLIENT KILL) and the completion queue's
 * eventfd (pending.c) have their own tags; everything else is a client. Completions are
 * drained after the round's client events, and also between two of them as soon as the
 * log has posted some (a load check, no system call): a long round of pipelined clients
 * then releases the replies its syncs confirmed without waiting for its end. The replies
 * the round made so far are written first, so that a client freed by the drain is on no
 * list; one whose event is still to come in this round is skipped (its struct lives until
 * network_round_close). */
static void network_round_run(event_loop *loop, int wait_ms)
{
    struct epoll_event *events = loop->events;
    int count = loop->carried;
    loop->carried = 0;
    if (count == 0)
        count = epoll_wait(loop->epoll_fd, events, LOOP_EVENTS_MAX, wait_ms);
    bool completions = false, catalog = false, monitor = false;
    if (count > 0)
        loop->wall_offset_ms = network_wall_offset_ms();
    for (int i = 0; i < count; i++) {
        uint64_t tag = events[i].data.u64;
        if (tag == NETWORK_TAG_WAKE) {
            uint64_t value;
            ssize_t ignored = read(loop->wake_fd, &value, sizeof(value));
            (void)ignored;
            loop->last_cron_ms = 0; /* run the kill checks now */
        } else if (tag == NETWORK_TAG_DURABLE) {
            completions = true;
        } else if (tag == NETWORK_TAG_CATALOG) {
            catalog = true;
        } else if (tag == NETWORK_TAG_MONITOR) {
            monitor = true;
        } else if (tag >= NETWORK_TAG_LISTEN_BASE && tag < NETWORK_TAG_LIMIT) {
            if (!loop->draining)
                network_accept(loop, loop->listen_fds[tag - NETWORK_TAG_LISTEN_BASE]);
        } else {
            network_client_event(events[i].data.ptr, events[i].events);
            if (pending_ready(loop)) {
                network_flush_round(loop);
                pending_drain(loop);
            }
        }
    }
    network_flush_round(loop);
    if (completions)
        pending_drain(loop);
    if (catalog)
        catalog_drain(loop);
    if (monitor)
        monitor_drain(loop);
    /* The round's writes (including those of input a drain let run, or a resumed client's)
     * wait for the log as one group. */
    if (!pending_round_gathers(loop)) {
        pending_round_end(loop, false);
        return;
    }
    /* A small group, young yet: events ready now run first and join it; with none, the
     * loop has nothing to do but wait for the disk, and syncs the group itself. */
    int more = epoll_wait(loop->epoll_fd, loop->events, LOOP_EVENTS_MAX, 0);
    if (more > 0)
        loop->carried = more;
    else
        pending_round_end(loop, true);
}

/* Frees the clients closed during the round (network_client_release). */
static void network_round_close(event_loop *loop)
{
    loop->in_round = false;
    while (loop->freed != NULL) {
        client *c = loop->freed;
        loop->freed = c->freed_next;
        free(c);
    }
}

static void network_loop_events(event_loop *loop, int wait_ms)
{
    loop->in_round = true;
    network_round_run(loop, wait_ms);
    network_round_close(loop);
}

/* True while a client of the loop waits for the log or for the catalog worker. */
static bool network_loop_waiting(const event_loop *loop)
{
    for (size_t i = 0; i < loop->client_count; i++)
        if (loop->clients[i]->pending_count > 0 || loop->clients[i]->catalog_job != NULL)
            return true;
    return false;
}

static void *network_loop_main(void *argument)
{
    event_loop *loop = argument;
    char name[16]; /* named for top -H, perf and gdb */
    snprintf(name, sizeof(name), "shoal-loop-%d", loop->index);
    pthread_setname_np(pthread_self(), name);
    while (!atomic_load(&server.shutting_down)) {
        long long hz = atomic_load(&server.config.hz);
        int wait_ms = (int)(1000 / (hz > 0 ? hz : 10));
        network_loop_events(loop, wait_ms);
        long long now_ms = network_now_ms();
        /* Not with events carried over: the cron may free a client they name. */
        if (loop->carried == 0 && now_ms - loop->last_cron_ms >= wait_ms) {
            loop->last_cron_ms = now_ms;
            network_cron(loop, now_ms);
        }
    }
    /* Shutdown: no new connections or requests; writes already run still get their
     * replies once the log confirms them (bounded: the log normally answers within its
     * sync period). */
    loop->draining = true;
    for (size_t a = 0; a < loop->listen_count; a++)
        epoll_ctl(loop->epoll_fd, EPOLL_CTL_DEL, loop->listen_fds[a], NULL);
    for (size_t i = 0; i < loop->client_count; i++)
        network_update_interest(loop->clients[i]);
    for (int round = 0; round < NETWORK_DRAIN_ROUNDS && network_loop_waiting(loop);
         round++)
        network_loop_events(loop, NETWORK_DRAIN_ROUND_MS);
    /* Then send what can be sent without waiting, and close everything. */
    while (loop->client_count > 0) {
        client *c = loop->clients[loop->client_count - 1];
        network_flush(c);
        network_client_free(c);
    }
    return NULL;
}

/* SO_REUSEPORT lets any process of the same user join a port that is already listening,
 * and the kernel would then spread connections over two unrelated servers. Before the
 * loops bind their shared sockets, one plain socket (no SO_REUSEPORT) binds the address:
 * that fails with EADDRINUSE if anything listens there already, as Redis would. It is
 * closed at once; a second server started in the microseconds between this probe and the
 * loops' binds could still join, which only simultaneous starts on one port can hit. */
static int network_probe_port(const char *address, int port, char *error, size_t error_size)
{
    if (port == 0)
        return 0; /* the kernel picks a free port for the first real socket */
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICHOST};
    struct addrinfo *found;
    char port_text[16];
    snprintf(port_text, sizeof(port_text), "%d", port);
    int status = getaddrinfo(address, port_text, &hints, &found);
    if (status != 0) {
        snprintf(error, error_size, "bad bind address '%s': %s", address, gai_strerror(status));
        return -1;
    }
    int fd = socket(found->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int result = 0;
    if (fd >= 0) {
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (found->ai_family == AF_INET6)
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
        if (bind(fd, found->ai_addr, found->ai_addrlen) != 0) {
            snprintf(error, error_size, "cannot listen on %s:%d: %s", address, port,
                     strerror(errno));
            result = -1;
        }
        close(fd);
    }
    freeaddrinfo(found);
    return result;
}

static int network_listen(const char *address, int port, int backlog, char *error,
                          size_t error_size)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICHOST};
    struct addrinfo *found;
    char port_text[16];
    snprintf(port_text, sizeof(port_text), "%d", port);
    int status = getaddrinfo(address, port_text, &hints, &found);
    if (status != 0) {
        snprintf(error, error_size, "bad bind address '%s': %s", address, gai_strerror(status));
        return -1;
    }
    int fd = socket(found->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(error, error_size, "socket: %s", strerror(errno));
        freeaddrinfo(found);
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (found->ai_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, found->ai_addr, found->ai_addrlen) != 0 || listen(fd, backlog) != 0) {
        snprintf(error, error_size, "cannot listen on %s:%d: %s", address, port, strerror(errno));
        close(fd);
        freeaddrinfo(found);
        return -1;
    }
    freeaddrinfo(found);
    return fd;
}

int network_start(char *error, size_t error_size)
{
    long long threads = atomic_load(&server.config.threads);
    if (threads <= 0) {
        /* Half the cores: the kernel's network processing, the log's threads and, on a
         * small machine, the clients need the rest. On 2 cores one loop against two gave
         * Redis-or-better p99 at -P 1 instead of 2.6x worse (docs/BENCHMARKS.md). */
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        threads = cores > 1 ? cores / 2 : 1;
    }
    server.loop_count = (size_t)threads;
    server.loops = calloc(server.loop_count, sizeof(event_loop));
    if (server.loops == NULL) {
        snprintf(error, error_size, "out of memory");
        return -1;
    }
    char bind_list[CONFIG_STRING_MAX];
    snprintf(bind_list, sizeof(bind_list), "%s", server.config.bind);
    char *addresses[16];
    size_t address_count = 0;
    for (char *save = NULL, *word = strtok_r(bind_list, " ", &save);
         word != NULL && address_count < 16; word = strtok_r(NULL, " ", &save))
        addresses[address_count++] = word;
    if (address_count == 0) {
        snprintf(error, error_size, "no bind address");
        return -1;
    }
    int port = (int)atomic_load(&server.config.port);
    int backlog = (int)atomic_load(&server.config.tcp_backlog);
    for (size_t a = 0; a < address_count; a++) {
        if (network_probe_port(addresses[a], port, error, error_size) != 0)
            return -1;
    }
    for (size_t l = 0; l < server.loop_count; l++) {
        event_loop *loop = &server.loops[l];
        loop->index = (int)l;
        loop->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
        loop->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        loop->stats = calloc(command_count(), sizeof(command_stats));
        loop->listen_fds = calloc(address_count, sizeof(int));
        if (loop->epoll_fd < 0 || loop->wake_fd < 0 || loop->stats == NULL ||
            loop->listen_fds == NULL || pending_loop_init(loop) != 0 ||
            catalog_loop_init(loop) != 0 || monitor_loop_init(loop) != 0) {
            snprintf(error, error_size, "cannot create event loop: %s", strerror(errno));
            return -1;
        }
        struct epoll_event wake = {.events = EPOLLIN, .data.u64 = NETWORK_TAG_WAKE};
        epoll_ctl(loop->epoll_fd, EPOLL_CTL_ADD, loop->wake_fd, &wake);
        struct epoll_event durable = {.events = EPOLLIN, .data.u64 = NETWORK_TAG_DURABLE};
        epoll_ctl(loop->epoll_fd, EPOLL_CTL_ADD, pending_loop_fd(loop), &durable);
        struct epoll_event catalog = {.events = EPOLLIN, .data.u64 = NETWORK_TAG_CATALOG};
        epoll_ctl(loop->epoll_fd, EPOLL_CTL_ADD, catalog_loop_fd(loop), &catalog);
        struct epoll_event monitor = {.events = EPOLLIN, .data.u64 = NETWORK_TAG_MONITOR};
        epoll_ctl(loop->epoll_fd, EPOLL_CTL_ADD, monitor_loop_fd(loop), &monitor);
        for (size_t a = 0; a < address_count; a++) {
            int fd = network_listen(addresses[a], port, backlog, error, error_size);
            if (fd < 0)
                return -1;
            if (port == 0) {
                /* The first socket picked a free port; every other loop shares it. */
                struct sockaddr_storage sa;
                socklen_t length = sizeof(sa);
                getsockname(fd, (struct sockaddr *)&sa, &length);
                port = ntohs(sa.ss_family == AF_INET ? ((struct sockaddr_in *)&sa)->sin_port
                                                     : ((struct sockaddr_in6 *)&sa)->sin6_port);
            }
            loop->listen_fds[a] = fd;
            struct epoll_event listen_event = {.events = EPOLLIN,
                                               .data.u64 = NETWORK_TAG_LISTEN_BASE + a};
            epoll_ctl(loop->epoll_fd, EPOLL_CTL_ADD, fd, &listen_event);
        }
        loop->listen_count = address_count;
    }
    server.bound_port = port;
    for (size_t l = 0; l < server.loop_count; l++) {
        if (pthread_create(&server.loops[l].thread, NULL, network_loop_main, &server.loops[l]) != 0) {
            snprintf(error, error_size, "cannot start event loop thread");
            return -1;
        }
    }
    return 0;
}

void network_stop(void)
{
    atomic_store(&server.shutting_down, true);
    for (size_t l = 0; l < server.loop_count; l++) {
        uint64_t one = 1;
        ssize_t ignored = write(server.loops[l].wake_fd, &one, sizeof(one));
        (void)ignored;
    }
}

void network_wait(void)
{
    for (size_t l = 0; l < server.loop_count; l++) {
        event_loop *loop = &server.loops[l];
        if (loop->thread)
            pthread_join(loop->thread, NULL);
        loop->thread = 0;
        for (size_t a = 0; a < loop->listen_count; a++)
            close(loop->listen_fds[a]);
        loop->listen_count = 0;
        if (loop->epoll_fd > 0)
            close(loop->epoll_fd);
        loop->epoll_fd = -1;
    }
}

void network_free(void)
{
    for (size_t l = 0; l < server.loop_count; l++) {
        event_loop *loop = &server.loops[l];
        pending_loop_free(loop);
        catalog_loop_free(loop);
        monitor_loop_free(loop);
        if (loop->wake_fd > 0)
            close(loop->wake_fd);
        free(loop->listen_fds);
        free(loop->stats);
        free(loop->clients);
    }
    free(server.loops);
    server.loops = NULL;
    server.loop_count = 0;
}

static void network_request_kill(client *c)
{
    atomic_store(&c->kill_requested, true);
    uint64_t one = 1;
    ssize_t ignored = write(c->loop->wake_fd, &one, sizeof(one));
    (void)ignored;
}

bool network_kill_client(uint64_t id)
{
    return network_kill_matching(NULL, NULL, id, NULL) > 0;
}

size_t network_kill_matching(const char *address, const char *user, uint64_t id,
                             const client *except)
{
    size_t killed = 0;
    pthread_mutex_lock(&server.registry_lock);
    for (client *c = server.registry_head; c != NULL; c = c->registry_next) {
        if (c == except)
            continue;
        if (id != 0 && c->id != id)
            continue;
        if (address != NULL && strcmp(c->address, address) != 0)
            continue;
        if (user != NULL && strcmp(c->identity.user, user) != 0)
            continue;
        network_request_kill(c);
        killed++;
    }
    pthread_mutex_unlock(&server.registry_lock);
    return killed;
}

char *network_client_list(const client *only, size_t *length)
{
    size_t capacity = 4096, used = 0;
    char *text = malloc(capacity);
    if (text == NULL)
        return NULL;
    text[0] = '\0';
    long long now = network_now_ms();
    pthread_mutex_lock(&server.registry_lock);
    for (client *c = server.registry_head; c != NULL; c = c->registry_next) {
        if (only != NULL && c != only)
            continue;
        char line[1024];
        int n = snprintf(
            line, sizeof(line),
            "id=%llu addr=%s laddr=%s fd=%d name=%s age=%lld idle=%lld flags=%s db=%d "
            "sub=0 psub=0 ssub=0 multi=-1 qbuf=%llu qbuf-free=0 argv-mem=0 multi-mem=0 "
            "rbs=%llu rbp=0 obl=0 oll=0 omem=%llu tot-mem=%llu events=r cmd=%s user=%s "
            "redir=-1 resp=%d tenant=%s loop=%d\n",
            (unsigned long long)c->id, c->address, c->local_address, c->fd, c->name,
            (now - c->created_ms) / 1000,
            (now - atomic_load_explicit(&c->last_interaction_ms, memory_order_relaxed)) / 1000,
            "N", atomic_load_explicit(&c->db_shared, memory_order_relaxed), 0ull,
            (unsigned long long)atomic_load_explicit(&c->query_bytes_held, memory_order_relaxed),
            (unsigned long long)atomic_load_explicit(&c->output_bytes_held, memory_order_relaxed),
            (unsigned long long)(atomic_load_explicit(&c->query_bytes_held, memory_order_relaxed) +
                                 atomic_load_explicit(&c->output_bytes_held, memory_order_relaxed)),
            atomic_load(&c->last_command) ? atomic_load(&c->last_command) : "NULL",
            c->identity.user, atomic_load(&c->protocol_shared) ? atomic_load(&c->protocol_shared) : 2,
            c->identity.tenant_name, c->loop->index);
        if (used + (size_t)n + 1 > capacity) {
            capacity = (used + (size_t)n + 1) * 2;
            char *grown = realloc(text, capacity);
            if (grown == NULL)
                break;
            text = grown;
        }
        memcpy(text + used, line, (size_t)n);
        used += (size_t)n;
        text[used] = '\0';
    }
    pthread_mutex_unlock(&server.registry_lock);
    *length = used;
    return text;
}
