/*
 * test_hiredis.c -- shoal-server driven by hiredis, the C client: commands, binary-safe
 * values, a pipeline of 10,000 commands, MULTI/EXEC, and error replies. Starts the server
 * binary given as argv[1] on a port it picks and stops it by PID (it must exit 0).
 */
#include <arpa/inet.h>
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

static int failures;
#define CHECK(condition)                                                                   \
    do {                                                                                   \
        if (!(condition)) {                                                                \
            fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #condition);          \
            failures++;                                                                    \
        }                                                                                  \
    } while (0)

static int pick_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t length = sizeof(address);
    bind(fd, (struct sockaddr *)&address, sizeof(address));
    getsockname(fd, (struct sockaddr *)&address, &length);
    close(fd);
    return ntohs(address.sin_port);
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    int port = pick_port();
    char port_text[16];
    snprintf(port_text, sizeof(port_text), "%d", port);
    pid_t pid = fork();
    if (pid == 0) {
        execl(argv[1], argv[1], "--port", port_text, "--bind", "127.0.0.1", (char *)NULL);
        _exit(127);
    }
    redisContext *c = NULL;
    for (int attempt = 0; attempt < 200; attempt++) { /* bounded: about 10 s */
        c = redisConnect("127.0.0.1", port);
        if (c != NULL && c->err == 0)
            break;
        redisFree(c);
        c = NULL;
        struct timespec pause = {0, 50 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    /* The picked port may have been taken by a parallel test before the server bound it;
     * the server then exits (it never shares a port) and the client must not talk to
     * whatever listens there. */
    int early_status;
    if (c != NULL && waitpid(pid, &early_status, WNOHANG) == pid) {
        fprintf(stderr, "the server exited at start (port %d taken?)\n", port);
        redisFree(c);
        return 1;
    }
    if (c == NULL) {
        kill(pid, SIGKILL);
        fprintf(stderr, "cannot connect\n");
        return 1;
    }
    redisReply *r = redisCommand(c, "PING");
    CHECK(r && r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0);
    freeReplyObject(r);
    const char value[] = "bin\0ary\r\nvalue";
    r = redisCommand(c, "SET %b %b", "k\0ey", (size_t)4, value, sizeof(value) - 1);
    CHECK(r && r->type == REDIS_REPLY_STATUS);
    freeReplyObject(r);
    r = redisCommand(c, "GET %b", "k\0ey", (size_t)4);
    CHECK(r && r->type == REDIS_REPLY_STRING && r->len == sizeof(value) - 1 &&
          memcmp(r->str, value, r->len) == 0);
    freeReplyObject(r);
    r = redisCommand(c, "GET missing");
    CHECK(r && r->type == REDIS_REPLY_NIL);
    freeReplyObject(r);
    for (int i = 0; i < 10000; i++)
        redisAppendCommand(c, "INCR counter");
    for (int i = 0; i < 10000; i++) {
        void *reply = NULL;
        CHECK(redisGetReply(c, &reply) == REDIS_OK);
        r = reply;
        CHECK(r && r->type == REDIS_REPLY_INTEGER && r->integer == i + 1);
        freeReplyObject(r);
    }
    redisAppendCommand(c, "MULTI");
    redisAppendCommand(c, "INCR counter");
    redisAppendCommand(c, "GET counter");
    redisAppendCommand(c, "EXEC");
    for (int i = 0; i < 4; i++) {
        void *reply = NULL;
        CHECK(redisGetReply(c, &reply) == REDIS_OK);
        r = reply;
        if (i == 3) {
            CHECK(r && r->type == REDIS_REPLY_ARRAY && r->elements == 2);
            CHECK(r && r->elements == 2 && r->element[0]->integer == 10001 &&
                  strcmp(r->element[1]->str, "10001") == 0);
        }
        freeReplyObject(r);
    }
    r = redisCommand(c, "INCR %s", "k\0ey");
    CHECK(r && r->type == REDIS_REPLY_INTEGER && r->integer == 1); /* "k" alone: a new key */
    freeReplyObject(r);
    r = redisCommand(c, "SET k v EX notanumber");
    CHECK(r && r->type == REDIS_REPLY_ERROR &&
          strcmp(r->str, "ERR value is not an integer or out of range") == 0);
    freeReplyObject(r);
    redisFree(c);
    kill(pid, SIGTERM);
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    printf("%d passed, %d failed\n", failures ? 0 : 1, failures ? 1 : 0);
    return failures ? 1 : 0;
}
