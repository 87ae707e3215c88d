/*
 * config.h -- shoal-server's settings: defaults, redis.conf-style file, environment,
 * command-line flags, and CONFIG GET/SET. See config.c.
 */
#ifndef SHOAL_SERVER_CONFIG_H
#define SHOAL_SERVER_CONFIG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "resp.h"

#define CONFIG_STRING_MAX 256
#define CONFIG_MAX_USER_LINES 1024

/* Every numeric setting is an atomic long long, so CONFIG SET on one loop and reads on the
 * others need no lock. String settings are fixed at startup except where noted. */
typedef struct server_config {
    atomic_llong port;
    atomic_llong threads;              /* event loops; 0 = one per online core */
    atomic_llong shards;               /* engine shards; 0 = engine default */
    atomic_llong maxclients;
    atomic_llong timeout;              /* idle seconds before a client is closed; 0 = never */
    atomic_llong tcp_backlog;
    atomic_llong tcp_keepalive;
    atomic_llong databases;
    atomic_llong maxmemory;            /* SHOAL_OPT_MEMORY_LIMIT; 0 = none */
    atomic_llong proto_max_bulk_len;
    atomic_llong proto_max_multibulk_len;
    atomic_llong client_query_buffer_limit;
    atomic_llong output_hard_limit;    /* client-output-buffer-limit normal <hard> ... */
    atomic_llong output_soft_limit;
    atomic_llong output_soft_seconds;
    atomic_llong hz;                   /* background cycles per second (active expiry) */
    atomic_llong active_expire_keys;   /* keys examined per namespace per chunk */
    atomic_llong active_expire_effort; /* 1..10: how hard active expiry works (Redis's) */
    atomic_llong latency_tracking;     /* bool */
    atomic_llong slowlog_log_slower_than;
    atomic_llong slowlog_max_len;        /* entries the slow log keeps */
    atomic_llong acllog_max_len;         /* entries ACL LOG keeps */
    atomic_llong loop_sync_max_us;       /* loops sync small groups while syncs average less */
    atomic_llong sync_period_ms;       /* durable: SHOAL_OPT_SYNC_PERIOD_MS */
    atomic_llong sync_window_us;       /* durable: SHOAL_OPT_SYNC_WINDOW_US */
    atomic_llong checkpoint_log_bytes; /* durable: SHOAL_OPT_CHECKPOINT_LOG_BYTES */
    atomic_llong log_streams;          /* durable: SHOAL_OPT_LOG_STREAMS; 0 = engine default */
    atomic_llong salvage;              /* bool: open a damaged directory anyway */
    atomic_llong enable_debug_command; /* bool: DEBUG (fault injection for tests) */
    char bind[CONFIG_STRING_MAX];
    char dir[CONFIG_STRING_MAX];
    char mode[16];                     /* auto | memory | durable */
    char sync[16];                     /* always | batch | periodic | none */
    char loglevel[16];
    char logfile[CONFIG_STRING_MAX];
    char pidfile[CONFIG_STRING_MAX];
    char config_file[CONFIG_STRING_MAX];
    char requirepass[CONFIG_STRING_MAX]; /* startup value; the live one is the default user's */
    /* "user ..." lines, handed to the ACL module at startup. */
    char *user_lines[CONFIG_MAX_USER_LINES];
    size_t user_line_count;
} server_config;

/* Fills every default. */
void config_defaults(server_config *cfg);
/* Applies, in order, the config file (the first argument that is not a flag, or --config),
 * the environment (SHOAL_PORT SHOAL_DIR SHOAL_SHARDS SHOAL_MODE SHOAL_SYNC SHOAL_THREADS)
 * and the
 * flags (--<setting> <value> for every setting). Returns 0, or -1 after writing a message
 * into error. */
int config_load(server_config *cfg, int argc, char **argv, char *error, size_t error_size);
/* Sets one setting from its text form. startup: immutable settings may be set too.
 * Returns 0, or -1 with a reason in error. */
int config_set(server_config *cfg, const char *name, const char *value, bool startup,
               char *error, size_t error_size);
/* CONFIG GET: appends the settings whose names match any of the glob patterns as a map. */
int config_reply_get(server_config *cfg, resp_buffer *out, const char *const *patterns,
                     const size_t *pattern_lengths, size_t count);
/* Frees the user lines. */
void config_free(server_config *cfg);
/* Prints every setting with its default, one per line (for --help and the docs). */
void config_print_defaults(void);
/* Redis's appendfsync word for a sync policy: always, everysec or no. */
const char *config_appendfsync_name(const char *sync);

#endif /* SHOAL_SERVER_CONFIG_H */
