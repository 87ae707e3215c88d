/*
 * log.c -- the server's log.
 *
 * Each line is formatted whole in a local buffer and written with one write(2), so lines
 * from different loops never interleave. Format, as Redis: "<pid>:M <date> <mark> text",
 * where the mark is '.' debug, '-' verbose, '*' notice, '#' warning.
 *
 * Invariants: 1. logging never blocks on a lock and never allocates. 2. A line is at most
 * 1024 bytes; longer ones are cut.
 * Testing: the integration tests read the log of the servers they start when they fail.
 */
#include "log.h"

#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static atomic_int log_level = LOG_NOTICE;
static int log_fd = 2;

void log_set_level(const char *level_name)
{
    int level = LOG_NOTICE;
    if (!strcasecmp(level_name, "debug"))
        level = LOG_DEBUG;
    else if (!strcasecmp(level_name, "verbose"))
        level = LOG_VERBOSE;
    else if (!strcasecmp(level_name, "warning"))
        level = LOG_WARNING;
    else if (!strcasecmp(level_name, "nothing"))
        level = LOG_WARNING + 1;
    atomic_store(&log_level, level);
}

int log_open(const char *path, const char *level_name)
{
    log_set_level(level_name);
    if (path == NULL || path[0] == '\0')
        return 0;
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    log_fd = fd;
    return 0;
}

void log_message(int level, const char *format, ...)
{
    if (level < atomic_load_explicit(&log_level, memory_order_relaxed))
        return;
    char line[1024];
    struct timeval now;
    gettimeofday(&now, NULL);
    struct tm parts;
    localtime_r(&now.tv_sec, &parts);
    int n = snprintf(line, sizeof(line), "%d:M ", (int)getpid());
    n += (int)strftime(line + n, sizeof(line) - (size_t)n, "%d %b %Y %H:%M:%S", &parts);
    n += snprintf(line + n, sizeof(line) - (size_t)n, ".%03d %c ", (int)(now.tv_usec / 1000),
                  ".-*#"[level < 0 ? 0 : level > 3 ? 3 : level]);
    va_list args;
    va_start(args, format);
    int body = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, format, args);
    va_end(args);
    if (body > 0)
        n += body;
    if ((size_t)n > sizeof(line) - 2)
        n = (int)sizeof(line) - 2;
    line[n++] = '\n';
    ssize_t ignored = write(log_fd, line, (size_t)n);
    (void)ignored;
}
