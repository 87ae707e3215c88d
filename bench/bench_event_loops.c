/*
 * bench_event_loops.c -- the measurement behind shoal-server's choice of plain epoll over
 * libuv: one minimal Redis-protocol PING server written twice, once on epoll as
 * shoal-server's loops are written (network.c), once on libuv as a libuv server would be.
 *
 * Both answer every request they find in the byte stream (inline or multibulk, framed as
 * RESP frames them; redis-benchmark -t ping_mbulk sends PING) with "+PONG\r\n",
 * with N loop threads each owning a listening socket on the same port (SO_REUSEPORT, as
 * shoal-server does), and reply to everything one read brought in with one write. The
 * only difference is the event-loop layer, which is what the comparison is about:
 *
 *   epoll: epoll_wait, read into the connection's buffer, write; EPOLLOUT only when a
 *          write was short.
 *   uv:    uv_read_start with an allocation callback handing out the connection's buffer,
 *          uv_try_write first (no request object when the socket takes everything), then
 *          uv_write with a heap request for the rest.
 *
 * Usage: bench-event-loops epoll|uv PORT [THREADS]; then redis-benchmark against it
 * (bench/bench_event_loops.sh runs both, alternating, median of 3).
 * Not a test and not part of any build target: bench_event_loops.sh compiles it with gcc.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdbool.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#define BUFFER_SIZE (64 * 1024)

static const char pong[] = "+PONG\r\n";
static int port_number;

/* Where a connection is in the request stream: requests are counted by their framing
 * (an inline line, or "*N" followed by N "$len" and data lines), so any command, PING or
 * the CONFIG GET redis-benchmark sends first, gets one reply. */
typedef struct request_state {
    long lines_left; /* lines still to come in the current multibulk request */
    long number;     /* the count on a "*N" header line */
    char first;      /* the first byte of the current line, 0 at a line start */
    char previous;
} request_state;

/* Counts the requests completed by data. */
static size_t count_requests(const char *data, size_t length, request_state *s)
{
    size_t found = 0;
    for (size_t i = 0; i < length; i++) {
        char byte = data[i];
        if (byte == '\n' && s->previous == '\r') {
            if (s->lines_left > 0) {
                if (--s->lines_left == 0)
                    found++;
            } else if (s->first == '*' && s->number > 0) {
                s->lines_left = 2 * s->number;
            } else {
                found++; /* an inline request, or an empty multibulk */
            }
            s->first = 0;
            s->number = 0;
        } else if (byte != '\r') {
            if (s->first == 0)
                s->first = byte;
            else if (s->first == '*' && byte >= '0' && byte <= '9' && s->lines_left == 0)
                s->number = s->number * 10 + (byte - '0');
        }
        s->previous = byte;
    }
    return found;
}

static int listen_socket(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    struct sockaddr_in address = {.sin_family = AF_INET,
                                  .sin_port = htons((uint16_t)port_number),
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(fd, (struct sockaddr *)&address, sizeof(address)) != 0 || listen(fd, 511) != 0) {
        perror("bind/listen");
        exit(1);
    }
    return fd;
}

/* Fills out with count replies; returns the byte count. out holds BUFFER_SIZE bytes. */
static size_t make_replies(char *out, size_t count)
{
    size_t length = 0;
    for (size_t i = 0; i < count && length + sizeof(pong) - 1 <= BUFFER_SIZE; i++) {
        memcpy(out + length, pong, sizeof(pong) - 1);
        length += sizeof(pong) - 1;
    }
    return length;
}

/* ---- epoll ----------------------------------------------------------------------------- */

typedef struct epoll_connection {
    int fd;
    request_state state;
    char in[BUFFER_SIZE];
    char out[BUFFER_SIZE];
    size_t out_start, out_length;
} epoll_connection;

static void *epoll_loop(void *unused)
{
    (void)unused;
    int listener = listen_socket();
    int epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event event = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(epoll_fd, EPOLL_CTL_ADD, listener, &event);
    struct epoll_event events[256];
    for (;;) {
        int count = epoll_wait(epoll_fd, events, 256, -1);
        for (int i = 0; i < count; i++) {
            epoll_connection *c = events[i].data.ptr;
            if (c == NULL) {
                int fd;
                while ((fd = accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    int one = 1;
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                    epoll_connection *fresh = calloc(1, sizeof(*fresh));
                    fresh->fd = fd;
                    struct epoll_event add = {.events = EPOLLIN, .data.ptr = fresh};
                    epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &add);
                }
                continue;
            }
            bool closed = false;
            if ((events[i].events & EPOLLIN) && c->out_length == 0) {
                ssize_t n = read(c->fd, c->in, sizeof(c->in));
                if (n == 0 || (n < 0 && errno != EAGAIN)) {
                    closed = true;
                } else if (n > 0) {
                    c->out_length =
                        make_replies(c->out, count_requests(c->in, (size_t)n, &c->state));
                    c->out_start = 0;
                }
            }
            while (!closed && c->out_length > 0) {
                ssize_t n = write(c->fd, c->out + c->out_start, c->out_length);
                if (n < 0) {
                    if (errno != EAGAIN)
                        closed = true;
                    break;
                }
                c->out_start += (size_t)n;
                c->out_length -= (size_t)n;
            }
            if (closed) {
                epoll_ctl(epoll_fd, EPOLL_CTL_DEL, c->fd, NULL);
                close(c->fd);
                free(c);
                continue;
            }
            struct epoll_event modify = {.events = c->out_length ? EPOLLOUT : EPOLLIN,
                                         .data.ptr = c};
            if ((events[i].events & EPOLLOUT) || c->out_length)
                epoll_ctl(epoll_fd, EPOLL_CTL_MOD, c->fd, &modify);
        }
    }
    return NULL;
}

/* ---- libuv ----------------------------------------------------------------------------- */

typedef struct uv_connection {
    uv_tcp_t handle;
    request_state state;
    char in[BUFFER_SIZE];
} uv_connection;

typedef struct uv_reply {
    uv_write_t request;
    char data[BUFFER_SIZE];
} uv_reply;

static void uv_on_close(uv_handle_t *handle)
{
    free(handle->data);
}

static void uv_on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buffer)
{
    (void)suggested;
    uv_connection *c = handle->data;
    *buffer = uv_buf_init(c->in, sizeof(c->in));
}

static void uv_on_written(uv_write_t *request, int status)
{
    (void)status;
    free(request);
}

static void uv_on_read(uv_stream_t *stream, ssize_t n, const uv_buf_t *buffer)
{
    (void)buffer;
    uv_connection *c = stream->data;
    if (n < 0) {
        uv_close((uv_handle_t *)stream, uv_on_close);
        return;
    }
    if (n == 0)
        return;
    char out[BUFFER_SIZE];
    size_t length = make_replies(out, count_requests(c->in, (size_t)n, &c->state));
    if (length == 0)
        return;
    uv_buf_t reply = uv_buf_init(out, (unsigned)length);
    int written = uv_try_write(stream, &reply, 1);
    if (written == (int)length)
        return;
    if (written < 0)
        written = 0;
    uv_reply *rest = malloc(sizeof(*rest));
    memcpy(rest->data, out + written, length - (size_t)written);
    uv_buf_t pending = uv_buf_init(rest->data, (unsigned)(length - (size_t)written));
    uv_write(&rest->request, stream, &pending, 1, uv_on_written);
}

static void uv_on_connection(uv_stream_t *server, int status)
{
    if (status < 0)
        return;
    uv_connection *c = calloc(1, sizeof(*c));
    uv_tcp_init(server->loop, &c->handle);
    c->handle.data = c;
    if (uv_accept(server, (uv_stream_t *)&c->handle) != 0) {
        uv_close((uv_handle_t *)&c->handle, uv_on_close);
        return;
    }
    uv_tcp_nodelay(&c->handle, 1);
    uv_read_start((uv_stream_t *)&c->handle, uv_on_alloc, uv_on_read);
}

static void *uv_loop_main(void *unused)
{
    (void)unused;
    uv_loop_t loop;
    uv_loop_init(&loop);
    uv_tcp_t server;
    uv_tcp_init(&loop, &server);
    /* libuv 1.44 has no SO_REUSEPORT flag: open the socket ourselves, as servers do. */
    uv_tcp_open(&server, listen_socket());
    uv_listen((uv_stream_t *)&server, 511, uv_on_connection);
    uv_run(&loop, UV_RUN_DEFAULT);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 3 || (strcmp(argv[1], "epoll") != 0 && strcmp(argv[1], "uv") != 0)) {
        fprintf(stderr, "usage: %s epoll|uv PORT [THREADS]\n", argv[0]);
        return 2;
    }
    port_number = atoi(argv[2]);
    int threads = argc > 3 ? atoi(argv[3]) : (int)sysconf(_SC_NPROCESSORS_ONLN);
    signal(SIGPIPE, SIG_IGN);
    pthread_t ids[256];
    for (int i = 0; i < threads && i < 256; i++)
        pthread_create(&ids[i], NULL, strcmp(argv[1], "uv") == 0 ? uv_loop_main : epoll_loop, NULL);
    for (int i = 0; i < threads && i < 256; i++)
        pthread_join(ids[i], NULL);
    return 0;
}
