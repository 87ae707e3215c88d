/*
 * anchor_redis.c -- Redis as the memory anchor: how many resident bytes per key a Redis 7
 * server needs for the same keys and values that Shoal stores.
 *
 * Procedure (one call, one fresh server):
 *   1. Find redis-server on PATH (absent: return 1, the caller skips the comparison).
 *   2. Pick a free port: bind a socket to 127.0.0.1 port 0, read the port the kernel chose,
 *      close the socket.
 *   3. Start `redis-server --port P --bind 127.0.0.1 --save "" --appendonly no` in a
 *      temporary directory (no persistence at all, so nothing but the dataset grows), and
 *      wait until it answers PING (bounded: 10 s).
 *   4. Read its resident set from /proc/<pid>/statm (the baseline), fill it with the dataset
 *      through hiredis pipelining (batch SETs sent, then batch replies read), check DBSIZE,
 *      read the resident set again. bytes per key = (after - baseline) / keys, the same
 *      growth-per-key measure that engine_shoal_memory uses.
 *   5. Stop the server by its PID (SIGTERM, then SIGKILL if it has not exited within 5 s)
 *      and remove the directory.
 *
 * Invariants:
 *   1. A server this module started is stopped on every path, including the watchdog's
 *      (bench_set_child names it while it runs).
 *   2. Nothing is written to stdout.
 *
 * How it is tested: `shoal-bench --selftest` runs this procedure on a small dataset and
 * checks that every key arrived (DBSIZE) and that the growth is positive.
 */
#include "bench.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Returns true when an executable named name is on PATH. */
static bool anchor_redis_on_path(const char *name)
{
    const char *path = getenv("PATH");
    if (!path)
        path = "/usr/local/bin:/usr/bin:/bin";
    char candidate[4096];
    while (*path) {
        size_t length = strcspn(path, ":");
        if (length > 0 && length + strlen(name) + 2 < sizeof candidate) {
            memcpy(candidate, path, length);
            candidate[length] = '/';
            strcpy(candidate + length + 1, name);
            if (access(candidate, X_OK) == 0)
                return true;
        }
        path += length;
        if (*path == ':')
            path++;
    }
    return false;
}

/* Asks the kernel for a free TCP port on 127.0.0.1. Returns the port or -1. */
static int anchor_redis_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in address;
    memset(&address, 0, sizeof address);
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = 0;
    socklen_t length = sizeof address;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&address, sizeof address) == 0 &&
        getsockname(fd, (struct sockaddr *)&address, &length) == 0)
        port = ntohs(address.sin_port);
    close(fd);
    return port;
}

static void anchor_redis_sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Starts the server; returns its pid or -1. */
static pid_t anchor_redis_start(const char *dir, int port)
{
    char port_text[16], log_path[256];
    snprintf(port_text, sizeof port_text, "%d", port);
    snprintf(log_path, sizeof log_path, "%s/redis.log", dir);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "# redis: fork: %s\n", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        /* Only async-signal-safe calls between fork and exec. */
        int devnull = open("/dev/null", O_RDWR);
        if (devnull >= 0) {
            dup2(devnull, STDIN_FILENO);
            dup2(devnull, STDOUT_FILENO);
        }
        char *argv[] = {"redis-server", "--port",      port_text, "--bind",
                        "127.0.0.1",    "--save",      "",        "--appendonly",
                        "no",           "--daemonize", "no",      "--dir",
                        (char *)dir,    "--logfile",   log_path,  "--loglevel",
                        "warning",      NULL};
        execvp("redis-server", argv);
        _exit(127);
    }
    bench_set_child(pid);
    return pid;
}

static void anchor_redis_stop(pid_t pid)
{
    /* Already reaped (it exited at start) or already gone: nothing to stop. */
    if (waitpid(pid, NULL, WNOHANG) != 0) {
        bench_set_child(0);
        return;
    }
    kill(pid, SIGTERM);
    for (int i = 0; i < 250; i++) {
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            bench_set_child(0);
            return;
        }
        anchor_redis_sleep_ms(20);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    bench_set_child(0);
}

/* Connects and waits for PING to answer; returns the context or NULL. */
static redisContext *anchor_redis_connect(pid_t pid, int port)
{
    for (int attempt = 0; attempt < 200; attempt++) {
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            bench_set_child(0);
            fprintf(stderr, "# redis: redis-server exited at start\n");
            return NULL;
        }
        struct timeval timeout = {1, 0};
        redisContext *c = redisConnectWithTimeout("127.0.0.1", port, timeout);
        if (c && !c->err) {
            redisReply *reply = redisCommand(c, "PING");
            bool ok = reply && reply->type == REDIS_REPLY_STATUS && strcmp(reply->str, "PONG") == 0;
            if (reply)
                freeReplyObject(reply);
            if (ok)
                return c;
        }
        if (c)
            redisFree(c);
        anchor_redis_sleep_ms(50);
    }
    fprintf(stderr, "# redis: no answer on port %d\n", port);
    return NULL;
}

/* Sends the dataset as pipelined SETs, batch at a time. Returns 0 or -1. */
static int anchor_redis_fill(redisContext *c, const bench_dataset *d, size_t batch)
{
    for (size_t i = 0; i < d->count;) {
        size_t stop = (d->count - i > batch) ? i + batch : d->count;
        size_t sent = 0;
        for (size_t j = i; j < stop; j++, sent++) {
            if (redisAppendCommand(c, "SET %b %b", bench_key(d, j), (size_t)BENCH_KEY_SIZE,
                                   bench_value(d, j), (size_t)BENCH_VALUE_SIZE) != REDIS_OK) {
                fprintf(stderr, "# redis: append: %s\n", c->errstr);
                return -1;
            }
        }
        for (size_t j = 0; j < sent; j++) {
            redisReply *reply = NULL;
            if (redisGetReply(c, (void **)&reply) != REDIS_OK || !reply) {
                fprintf(stderr, "# redis: reply: %s\n", c->errstr);
                return -1;
            }
            bool ok = reply->type == REDIS_REPLY_STATUS;
            if (!ok)
                fprintf(stderr, "# redis: SET answered %s\n",
                        reply->type == REDIS_REPLY_ERROR ? reply->str : "something else");
            freeReplyObject(reply);
            if (!ok)
                return -1;
        }
        i = stop;
    }
    return 0;
}

static long long anchor_redis_dbsize(redisContext *c)
{
    redisReply *reply = redisCommand(c, "DBSIZE");
    long long size = -1;
    if (reply && reply->type == REDIS_REPLY_INTEGER)
        size = reply->integer;
    if (reply)
        freeReplyObject(reply);
    return size;
}

int anchor_redis_memory(const bench_dataset *d, size_t batch, double *bytes_per_key)
{
    if (!anchor_redis_on_path("redis-server")) {
        fprintf(stderr, "# redis: redis-server is not installed; skipping\n");
        return 1;
    }
    char dir[64];
    if (bench_temp_dir(dir, sizeof dir) != 0)
        return -1;
    int rc = -1;
    int port = anchor_redis_free_port();
    pid_t pid = port > 0 ? anchor_redis_start(dir, port) : -1;
    if (port <= 0)
        fprintf(stderr, "# redis: no free port\n");
    redisContext *c = pid > 0 ? anchor_redis_connect(pid, port) : NULL;
    if (c) {
        uint64_t before = bench_rss_bytes(pid);
        uint64_t start = bench_now_ns();
        if (anchor_redis_fill(c, d, batch) == 0) {
            double seconds = (double)(bench_now_ns() - start) / 1e9;
            uint64_t after = bench_rss_bytes(pid);
            long long keys = anchor_redis_dbsize(c);
            if (keys != (long long)d->count) {
                fprintf(stderr, "# redis: DBSIZE %lld, expected %zu\n", keys, d->count);
            } else if (before == 0 || after <= before) {
                fprintf(stderr, "# redis: resident set did not grow (%llu -> %llu)\n",
                        (unsigned long long)before, (unsigned long long)after);
            } else {
                *bytes_per_key = (double)(after - before) / (double)d->count;
                fprintf(stderr,
                        "# redis: port %d, rss %.1f MB -> %.1f MB, %.1f bytes/key, pipelined "
                        "fill %.0f keys/s\n",
                        port, before / 1e6, after / 1e6, *bytes_per_key,
                        (double)d->count / seconds);
                rc = 0;
            }
        }
        redisFree(c);
    }
    if (pid > 0)
        anchor_redis_stop(pid);
    bench_remove_tree(dir);
    return rc;
}
