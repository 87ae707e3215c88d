/*
 * main.c -- shoal-server: reads the configuration, opens the engine, declares the users,
 * starts the event loops, runs active expiry, and shuts down cleanly on SIGTERM, SIGINT
 * or SHUTDOWN.
 *
 * Threads: the main thread blocks SIGTERM/SIGINT/SIGUSR1 in every thread (the mask is
 * inherited by the loops), then waits for them with sigtimedwait; between signals it
 * runs the active-expiry cycle hz times a second. On a signal it stops the loops, waits
 * for them, closes the namespaces and the engine, and exits 0.
 *
 * Invariants: 1. durable mode is refused with a clear message until durability exists;
 * 2. the process exits 0 after a requested shutdown and non-zero after a startup error.
 * Tested by every integration test, which starts the real binary and stops it by PID.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "commands.h"
#include "log.h"

server_state server = {.registry_lock = PTHREAD_MUTEX_INITIALIZER};

static void main_usage(void)
{
    printf("Usage: shoal-server [config-file] [--<setting> <value>]...\n\n"
           "Speaks the Redis protocol over the Shoal engine. Settings (flag, default):\n");
    config_print_defaults();
    printf("\nEnvironment: SHOAL_PORT SHOAL_DIR SHOAL_SHARDS SHOAL_MODE=memory|durable "
           "SHOAL_THREADS\n(file < environment < flags). See docs/OPERATIONS.md.\n");
}

/* Enough descriptors for maxclients plus the loops' own; lowered maxclients if the hard
 * limit does not allow it, as Redis does. */
static void main_raise_file_limit(void)
{
    long long wanted = atomic_load(&server.config.maxclients) + 64;
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) != 0)
        return;
    if ((long long)limit.rlim_cur >= wanted)
        return;
    rlim_t target = (rlim_t)wanted;
    if (limit.rlim_max != RLIM_INFINITY && target > limit.rlim_max)
        target = limit.rlim_max;
    limit.rlim_cur = target;
    setrlimit(RLIMIT_NOFILE, &limit);
    if ((long long)target < wanted) {
        atomic_store(&server.config.maxclients, (long long)target - 64);
        log_message(LOG_WARNING, "open file limit %llu: maxclients lowered to %lld",
                    (unsigned long long)target, (long long)target - 64);
    }
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            main_usage();
            return 0;
        }
        if (!strcmp(argv[i], "--version") || !strcmp(argv[i], "-v")) {
            printf("shoal-server %d.%d (Redis protocol 7.0 compatible)\n", SHOAL_VERSION_MAJOR,
                   SHOAL_VERSION_MINOR);
            return 0;
        }
    }
    /* Block (first of all: the engine may start threads too) the signals before any thread starts, so only sigtimedwait receives them. */
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &signals, NULL);
    config_defaults(&server.config);
    char error[512];
    if (config_load(&server.config, argc, argv, error, sizeof(error)) != 0) {
        fprintf(stderr, "shoal-server: %s\n", error);
        return 1;
    }
    if (log_open(server.config.logfile, server.config.loglevel) != 0) {
        fprintf(stderr, "shoal-server: cannot open log file '%s'\n", server.config.logfile);
        return 1;
    }
    if (strcmp(server.config.mode, "durable") == 0 || server.config.dir[0] != '\0') {
        fprintf(stderr, "shoal-server: durable mode (mode durable / dir) is not available in "
                        "this version: the engine runs in memory mode only. Start without "
                        "--dir and with mode memory.\n");
        return 1;
    }

    shoal_options *options;
    if (shoal_options_new(&options) != 0) {
        fprintf(stderr, "shoal-server: out of memory\n");
        return 1;
    }
    long long shards = atomic_load(&server.config.shards);
    int result = 0;
    if (shards > 0)
        result = shoal_options_set(options, SHOAL_OPT_SHARDS, (uint64_t)shards);
    if (result == 0 && atomic_load(&server.config.maxmemory) > 0)
        result = shoal_options_set(options, SHOAL_OPT_MEMORY_LIMIT,
                                   (uint64_t)atomic_load(&server.config.maxmemory));
    if (result == 0)
        result = shoal_options_set(options, SHOAL_OPT_SNAPSHOT_SLOTS, 4096);
    if (result != 0) {
        fprintf(stderr, "shoal-server: invalid engine setting (shards must be a power of two "
                        "1..64): %s\n", shoal_strerror(result));
        shoal_options_free(options);
        return 1;
    }
    result = shoal_open(NULL, options, &server.db);
    shoal_options_free(options);
    if (result != 0) {
        fprintf(stderr, "shoal-server: cannot open the engine: %s\n", shoal_strerror(result));
        return 1;
    }
    store_init(server.db);
    if (acl_init(server.db, server.config.requirepass, server.config.user_lines,
                 server.config.user_line_count, error, sizeof(error)) != 0) {
        fprintf(stderr, "shoal-server: %s\n", error);
        shoal_close(server.db);
        return 1;
    }
    command_table_init();
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    for (size_t i = 0; i < 40; i++)
        server.run_id[i] = "0123456789abcdef"[rand() % 16];
    server.started_ms = store_now_ms();

    signal(SIGPIPE, SIG_IGN);
    main_raise_file_limit();

    if (network_start(error, sizeof(error)) != 0) {
        fprintf(stderr, "shoal-server: %s\n", error);
        network_stop();
        network_wait();
        store_shutdown();
        acl_shutdown();
        shoal_close(server.db);
        return 1;
    }
    if (server.config.pidfile[0] != '\0') {
        FILE *f = fopen(server.config.pidfile, "w");
        if (f != NULL) {
            fprintf(f, "%d\n", (int)getpid());
            fclose(f);
        }
    }
    log_message(LOG_NOTICE, "shoal-server ready: port %d, %zu event loops, mode memory, "
                            "bind %s", server.bound_port, server.loop_count, server.config.bind);

    int received = 0;
    while (received == 0) {
        long long hz = atomic_load(&server.config.hz);
        long long period_ns = 1000000000ll / (hz > 0 ? hz : 10);
        struct timespec wait = {.tv_sec = period_ns / 1000000000ll,
                                .tv_nsec = period_ns % 1000000000ll};
        int signal_number = sigtimedwait(&signals, NULL, &wait);
        if (signal_number > 0) {
            received = signal_number;
            break;
        }
        store_active_expire((size_t)atomic_load(&server.config.active_expire_keys));
    }
    log_message(LOG_NOTICE, "received %s, shutting down", received == SIGINT ? "SIGINT" : "SIGTERM");
    network_stop();
    network_wait();
    store_shutdown();
    acl_shutdown();
    shoal_close(server.db);
    config_free(&server.config);
    if (server.config.pidfile[0] != '\0')
        unlink(server.config.pidfile);
    log_message(LOG_NOTICE, "shoal-server stopped");
    return 0;
}
