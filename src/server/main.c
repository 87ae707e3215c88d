/*
 * main.c -- shoal-server: reads the configuration, opens the engine (recovering a durable
 * directory), declares the users, starts the event loops, runs active expiry, and shuts
 * down cleanly on SIGTERM, SIGINT or SHUTDOWN.
 *
 * Modes: `mode auto` (the default) is durable when `dir` is set and memory otherwise;
 * `mode durable` without a directory is refused. In durable mode shoal_open recovers the
 * directory (the latest checkpoint, then each log stream after it) before the port is
 * opened, so a client never sees a half-loaded database.
 *
 * Threads: the main thread blocks SIGTERM/SIGINT/SIGUSR1 in every thread (the mask is
 * inherited by the loops and the engine's threads), then waits for them with
 * sigtimedwait; between signals, hz times a second, it runs the active-expiry cycle, gives
 * back what released snapshots kept on shards no write has touched since (shoal_reclaim)
 * and samples the engine's memory for INFO's peak.
 *
 * Shutdown order, and why: (1) the loops stop taking requests and wait, bounded, for the
 * log to confirm the writes already run and for the catalog worker to finish the changes
 * their suspended clients wait for, so those clients still get the replies; (2) the
 * loops are joined (every client is gone); (3) a running BGSAVE is joined; (4) the
 * catalog worker is stopped: its current job finishes, queued ones are abandoned
 * (catalog.c); (5) the namespaces are closed; (6) shoal_close takes the final checkpoint
 * and closes the log, delivering any callback still outstanding; (7) only then are the
 * loops' completion queues freed (pending.c, invariant 3; catalog.c, invariant 3).
 *
 * Invariants: 1. the process exits 0 after a requested shutdown and non-zero after a
 * startup error (bad setting, port in use, a directory that cannot be opened);
 * 2. nothing is listening before recovery has finished.
 * Tested by every integration test, which starts the real binary and stops it by PID;
 * test_durable.py restarts it on the same directory after SIGTERM and after kill -9.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "catalog.h"
#include "commands.h"
#include "debug.h"
#include "log.h"
#include "pending.h"
#include "slowlog.h"

server_state server = {.registry_lock = PTHREAD_MUTEX_INITIALIZER,
                       .bgsave_lock = PTHREAD_MUTEX_INITIALIZER};

static void main_usage(void)
{
    printf("Usage: shoal-server [config-file] [--<setting> <value>]...\n\n"
           "Speaks the Redis protocol over the Shoal engine. Settings (flag, default):\n");
    config_print_defaults();
    printf("\nEnvironment: SHOAL_PORT SHOAL_DIR SHOAL_SHARDS SHOAL_MODE=memory|durable "
           "SHOAL_SYNC SHOAL_THREADS\n(file < environment < flags). See docs/OPERATIONS.md.\n");
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

/* Resolves the mode, sets the engine's options and opens it; in durable mode this is the
 * recovery. Returns 0, or -1 after printing why. */
static int main_open_engine(void)
{
    const char *mode = server.config.mode;
    const char *dir = server.config.dir;
    if (!strcmp(mode, "durable") && dir[0] == '\0') {
        fprintf(stderr, "shoal-server: mode durable needs a directory: --dir <path> (or dir in "
                        "the config file, or SHOAL_DIR)\n");
        return -1;
    }
    server.durable = !strcmp(mode, "durable") || (!strcmp(mode, "auto") && dir[0] != '\0');
    if (!server.durable && dir[0] != '\0')
        log_message(LOG_WARNING, "mode memory: the directory %s is not used", dir);
    static const struct {
        const char *name;
        shoal_sync sync;
    } policies[] = {{"always", SHOAL_SYNC_ALWAYS}, {"batch", SHOAL_SYNC_BATCH},
                    {"periodic", SHOAL_SYNC_PERIODIC}, {"none", SHOAL_SYNC_NONE}};
    server.sync = SHOAL_SYNC_PERIODIC;
    for (size_t i = 0; i < sizeof(policies) / sizeof(policies[0]); i++)
        if (!strcmp(server.config.sync, policies[i].name))
            server.sync = policies[i].sync;

    shoal_options *options;
    if (shoal_options_new(&options) != 0) {
        fprintf(stderr, "shoal-server: out of memory\n");
        return -1;
    }
    struct {
        shoal_option option;
        long long value;
        bool wanted;
    } settings[] = {
        {SHOAL_OPT_SHARDS, atomic_load(&server.config.shards), true},
        {SHOAL_OPT_MEMORY_LIMIT, atomic_load(&server.config.maxmemory), true},
        {SHOAL_OPT_SNAPSHOT_SLOTS, 4096, true},
        {SHOAL_OPT_SYNC, (long long)server.sync, server.durable},
        {SHOAL_OPT_SYNC_PERIOD_MS, atomic_load(&server.config.sync_period_ms), server.durable},
        {SHOAL_OPT_SYNC_WINDOW_US, atomic_load(&server.config.sync_window_us), server.durable},
        {SHOAL_OPT_CHECKPOINT_LOG_BYTES, atomic_load(&server.config.checkpoint_log_bytes),
         server.durable},
        {SHOAL_OPT_LOG_STREAMS, atomic_load(&server.config.log_streams), server.durable},
        {SHOAL_OPT_SALVAGE, atomic_load(&server.config.salvage), server.durable},
    };
    int result = 0;
    for (size_t i = 0; i < sizeof(settings) / sizeof(settings[0]) && result == 0; i++) {
        /* 0 keeps the engine's default, except where 0 is a meaningful value. */
        bool zero_meaningful = settings[i].option == SHOAL_OPT_SALVAGE ||
                               settings[i].option == SHOAL_OPT_SYNC_WINDOW_US;
        if (!settings[i].wanted || (settings[i].value == 0 && !zero_meaningful))
            continue;
        result = shoal_options_set(options, settings[i].option, (uint64_t)settings[i].value);
        if (result != 0)
            fprintf(stderr, "shoal-server: invalid engine setting %d = %lld (shards must be a "
                            "power of two 1..64): %s\n", (int)settings[i].option,
                    settings[i].value, shoal_strerror(result));
    }
    if (result != 0) {
        shoal_options_free(options);
        return -1;
    }
    if (!server.durable) {
        result = shoal_open(NULL, options, &server.db);
        shoal_options_free(options);
        if (result != 0) {
            fprintf(stderr, "shoal-server: cannot open the engine: %s\n", shoal_strerror(result));
            return -1;
        }
        pending_configure(false);
        return 0;
    }
    log_message(LOG_NOTICE, "opening %s (sync %s): loading the checkpoint and replaying the log",
                dir, server.config.sync);
    long long begin = store_now_ms();
    result = debug_open(dir, options, atomic_load(&server.config.enable_debug_command) != 0,
                        &server.db);
    shoal_options_free(options);
    if (result != 0) {
        const char *detail = shoal_error_detail();
        fprintf(stderr, "shoal-server: cannot open the database in %s: %s%s%s\n", dir,
                shoal_strerror(result), detail[0] ? ": " : "", detail);
        if (result == SHOAL_EBUSY)
            fprintf(stderr, "shoal-server: another process (or server) has %s open\n", dir);
        else if (result == SHOAL_ECORRUPT)
            fprintf(stderr, "shoal-server: `shoal check %s` describes the damage; --salvage yes "
                            "opens it keeping the longest valid prefix of each log\n", dir);
        return -1;
    }
    server.recovery_ms = store_now_ms() - begin;
    shoal_db_stats stats;
    if (shoal_stats(server.db, &stats) == 0) {
        log_message(LOG_NOTICE, "recovered %llu keys from the checkpoint at seq %llu and %llu log "
                                "records in %lld ms; now at seq %llu",
                    (unsigned long long)stats.recovered_keys,
                    (unsigned long long)stats.checkpoint_seq,
                    (unsigned long long)stats.recovered_records, server.recovery_ms,
                    (unsigned long long)stats.seq);
        if (stats.torn_streams > 0)
            log_message(LOG_WARNING, "cut a torn tail of %llu bytes from %u log streams (writes "
                                     "that were never acknowledged as durable)",
                        (unsigned long long)stats.torn_bytes, stats.torn_streams);
        if (stats.salvaged_bytes > 0)
            log_message(LOG_WARNING, "salvage dropped %llu damaged log bytes",
                        (unsigned long long)stats.salvaged_bytes);
    }
    /* Under sync none nothing waits; under the other policies every write's reply waits
     * for the log (pending.c). */
    pending_configure(server.sync != SHOAL_SYNC_NONE);
    return 0;
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
    if (main_open_engine() != 0)
        return 1;
    store_init(server.db);
    if (server.durable) {
        size_t opened = store_open_existing((int)atomic_load(&server.config.databases));
        if (opened > 0)
            log_message(LOG_VERBOSE, "%zu logical databases found in %s", opened,
                        server.config.dir);
    }
    if (acl_init(server.db, server.config.requirepass, server.config.user_lines,
                 server.config.user_line_count, error, sizeof(error)) != 0) {
        fprintf(stderr, "shoal-server: %s\n", error);
        shoal_close(server.db);
        return 1;
    }
    command_table_init();
    resp_set_error_observer(server_count_error);
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    for (size_t i = 0; i < 40; i++)
        server.run_id[i] = "0123456789abcdef"[rand() % 16];
    server.started_ms = store_now_ms();
    /* As Redis: LASTSAVE is the startup time until the first save of this run. */
    atomic_store(&server.last_save_unix, server.started_ms / 1000);

    signal(SIGPIPE, SIG_IGN);
    main_raise_file_limit();

    if (catalog_start() != 0)
        snprintf(error, sizeof(error), "cannot start the catalog thread");
    else
        error[0] = '\0';
    if (error[0] != '\0' || network_start(error, sizeof(error)) != 0) {
        fprintf(stderr, "shoal-server: %s\n", error);
        network_stop();
        network_wait();
        catalog_stop();
        store_shutdown();
        acl_shutdown();
        shoal_close(server.db);
        network_free();
        return 1;
    }
    if (server.config.pidfile[0] != '\0') {
        FILE *f = fopen(server.config.pidfile, "w");
        if (f != NULL) {
            fprintf(f, "%d\n", (int)getpid());
            fclose(f);
        }
    }
    if (server.durable)
        log_message(LOG_NOTICE, "shoal-server ready: port %d, %zu event loops, mode durable "
                                "(dir %s, sync %s), bind %s", server.bound_port,
                    server.loop_count, server.config.dir, server.config.sync, server.config.bind);
    else
        log_message(LOG_NOTICE, "shoal-server ready: port %d, %zu event loops, mode memory, "
                                "bind %s", server.bound_port, server.loop_count,
                    server.config.bind);

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
        store_active_expire((size_t)atomic_load(&server.config.active_expire_keys),
                            (int)atomic_load(&server.config.active_expire_effort),
                            (uint64_t)period_ns);
        shoal_reclaim(server.db); /* what the cycle's or a client's snapshot kept */
        info_sample_memory();
    }
    log_message(LOG_NOTICE, "received %s, shutting down", received == SIGINT ? "SIGINT" : "SIGTERM");
    network_stop();
    network_wait();
    /* A BGSAVE still running finishes first (its thread takes bgsave_lock as it ends, so
     * it is joined outside the lock; no loop is left to start another). */
    pthread_mutex_lock(&server.bgsave_lock);
    bool bgsave_running = server.bgsave_joinable;
    pthread_t bgsave_thread = server.bgsave_thread;
    server.bgsave_joinable = false;
    pthread_mutex_unlock(&server.bgsave_lock);
    if (bgsave_running)
        pthread_join(bgsave_thread, NULL);
    /* The catalog worker finishes its job (or abandons queued ones) before the namespaces
     * and users it changes go away; no loop is left to submit another. */
    catalog_stop();
    store_shutdown();
    acl_shutdown();
    slowlog_reset();
    if (server.durable)
        log_message(LOG_NOTICE, "closing the database: final checkpoint in %s", server.config.dir);
    int closed = shoal_close(server.db);
    if (closed != 0)
        log_message(LOG_WARNING, "closing the database: %s (what was acknowledged is in the "
                                 "log and is recovered at the next start)",
                    shoal_strerror(closed));
    network_free();
    config_free(&server.config);
    if (server.config.pidfile[0] != '\0')
        unlink(server.config.pidfile);
    log_message(LOG_NOTICE, "shoal-server stopped");
    return 0;
}
