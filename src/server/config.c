/*
 * config.c -- shoal-server's settings.
 *
 * Purpose
 * -------
 * One table lists every setting: its name (as in redis.conf), its kind, where it lives in
 * server_config, its default, its bounds, and whether CONFIG SET may change it while the
 * server runs. The file reader, the flag reader, CONFIG GET, CONFIG SET and the
 * defaults listing all walk the same table, so a setting exists everywhere or nowhere.
 *
 * Format of the file (a subset of redis.conf)
 * -------------------------------------------
 *   # comment
 *   <name> <value>            e.g.  port 7000   maxmemory 2gb   bind "127.0.0.1"
 *   client-output-buffer-limit normal <hard> <soft> <seconds>
 *   user <name> <rule>...     handed to the ACL module (see acl.c)
 * Words may be double-quoted. Memory sizes accept b, k, kb, m, mb, g, gb like Redis.
 *
 * Precedence: defaults, then the config file, then the environment (SHOAL_PORT,
 * SHOAL_DIR, SHOAL_SHARDS, SHOAL_MODE, SHOAL_SYNC, SHOAL_THREADS), then command-line flags
 * (--<name> <value>, e.g. --port 7000 --shards 8 --sync always --config file).
 *
 * Redis's persistence words map onto durable mode: `appendfsync always|everysec|no` sets
 * sync always|periodic|none; `appendonly` and `save` are accepted and ignored (the log is
 * always on in durable mode, and checkpoints follow the log's size: checkpoint-log-bytes,
 * or the last checkpoint's size when larger).
 *
 * Invariants
 * ----------
 * 1. A setting refused by its bounds or its kind leaves the old value in place.
 * 2. Immutable settings change only at startup; CONFIG SET reports them as Redis does.
 * 3. Numeric settings are atomics: loops read them without a lock while CONFIG SET runs.
 *
 * Testing
 * -------
 * The integration suite starts servers with files, flags and environment, and checks
 * CONFIG GET/SET round trips and refusals.
 */
#include "config.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "text.h"

enum config_kind {
    CONFIG_INTEGER,
    CONFIG_MEMORY,
    CONFIG_BOOL,
    CONFIG_STRING,
};

#define CONFIG_IMMUTABLE 1u
#define CONFIG_SENSITIVE 2u /* never shown by CONFIG GET */

typedef struct config_entry {
    const char *name;
    enum config_kind kind;
    size_t offset;
    const char *default_text;
    long long minimum, maximum;
    unsigned flags;
    const char *choices; /* strings: allowed values separated by '|', or NULL */
    const char *meaning;
} config_entry;

#define NUMBER(name, kind, field, def, lo, hi, flags, meaning)                             \
    {name, kind, offsetof(server_config, field), def, lo, hi, flags, NULL, meaning}
#define STRING(name, field, def, flags, choices, meaning)                                  \
    {name, CONFIG_STRING, offsetof(server_config, field), def, 0, 0, flags, choices, meaning}

static const config_entry config_table[] = {
    NUMBER("port", CONFIG_INTEGER, port, "6379", 0, 65535, CONFIG_IMMUTABLE,
           "TCP port to listen on (0: pick a free one)"),
    STRING("bind", bind, "127.0.0.1", CONFIG_IMMUTABLE, NULL,
           "addresses to listen on, separated by blanks"),
    NUMBER("threads", CONFIG_INTEGER, threads, "0", 0, 256, CONFIG_IMMUTABLE,
           "event-loop threads; 0 = half the online cores (at least one)"),
    NUMBER("shards", CONFIG_INTEGER, shards, "0", 0, 64, CONFIG_IMMUTABLE,
           "engine shards (power of two); 0 = engine default (4 x cores, at most 64)"),
    STRING("mode", mode, "auto", CONFIG_IMMUTABLE, "auto|memory|durable",
           "auto: durable when dir is set, else memory; durable needs dir"),
    STRING("dir", dir, "", CONFIG_IMMUTABLE, NULL,
           "database directory (created if missing); selects durable mode"),
    STRING("sync", sync, "periodic", CONFIG_IMMUTABLE, "always|batch|periodic|none",
           "when a write is acknowledged (durable mode; see docs/OPERATIONS.md)"),
    NUMBER("sync-period-ms", CONFIG_INTEGER, sync_period_ms, "1000", 1, 3600000, CONFIG_IMMUTABLE,
           "sync periodic: the log is fdatasync'ed this often"),
    NUMBER("sync-window-us", CONFIG_INTEGER, sync_window_us, "2000", 0, 1000000, CONFIG_IMMUTABLE,
           "sync batch: longest wait to gather writes into one sync"),
    NUMBER("checkpoint-log-bytes", CONFIG_MEMORY, checkpoint_log_bytes, "64mb", 1024 * 1024,
           LLONG_MAX, CONFIG_IMMUTABLE,
           "log size that starts a checkpoint (or the last one's size)"),
    NUMBER("log-streams", CONFIG_INTEGER, log_streams, "0", 0, 64, CONFIG_IMMUTABLE,
           "log streams (parallel fdatasync); 0 = engine default (one per two cores)"),
    NUMBER("salvage", CONFIG_BOOL, salvage, "no", 0, 1, CONFIG_IMMUTABLE,
           "open a damaged directory anyway, keeping each log's longest valid prefix"),
    NUMBER("enable-debug-command", CONFIG_BOOL, enable_debug_command, "no", 0, 1, CONFIG_IMMUTABLE,
           "allow DEBUG (fault injection, for tests)"),
    NUMBER("maxclients", CONFIG_INTEGER, maxclients, "10000", 1, 1000000, 0,
           "most connected clients; more are refused with an error"),
    NUMBER("timeout", CONFIG_INTEGER, timeout, "0", 0, INT_MAX, 0,
           "close a client idle this many seconds; 0 = never"),
    NUMBER("tcp-backlog", CONFIG_INTEGER, tcp_backlog, "511", 1, 65535, CONFIG_IMMUTABLE,
           "listen backlog"),
    NUMBER("tcp-keepalive", CONFIG_INTEGER, tcp_keepalive, "300", 0, INT_MAX, 0,
           "TCP keepalive interval in seconds; 0 = off"),
    NUMBER("databases", CONFIG_INTEGER, databases, "16", 1, 1000000, CONFIG_IMMUTABLE,
           "logical databases per user (SELECT 0..n-1)"),
    NUMBER("maxmemory", CONFIG_MEMORY, maxmemory, "0", 0, LLONG_MAX, 0,
           "engine memory limit for stored data; 0 = none"),
    NUMBER("proto-max-bulk-len", CONFIG_MEMORY, proto_max_bulk_len, "512mb", 1024,
           512ll * 1024 * 1024, 0, "longest bulk argument a client may send"),
    NUMBER("proto-max-multibulk-len", CONFIG_INTEGER, proto_max_multibulk_len, "1048576", 1,
           INT_MAX, 0, "most arguments in one request"),
    NUMBER("client-query-buffer-limit", CONFIG_MEMORY, client_query_buffer_limit, "1gb",
           1024 * 1024, LLONG_MAX, 0, "largest unprocessed input of one client"),
    NUMBER("client-output-buffer-hard-limit", CONFIG_MEMORY, output_hard_limit, "1gb", 0, LLONG_MAX,
           0, "a client whose pending replies exceed this is closed; 0 = none"),
    NUMBER("client-output-buffer-soft-limit", CONFIG_MEMORY, output_soft_limit, "256mb", 0,
           LLONG_MAX, 0, "... or exceed this for the soft-seconds; 0 = none"),
    NUMBER("client-output-buffer-soft-seconds", CONFIG_INTEGER, output_soft_seconds, "60", 0,
           INT_MAX, 0, "how long the soft limit may be exceeded"),
    NUMBER("hz", CONFIG_INTEGER, hz, "10", 1, 500, 0,
           "background cycles per second (active expiry, timeouts)"),
    NUMBER("active-expire-keys", CONFIG_INTEGER, active_expire_keys, "200", 1, 1000000, 0,
           "keys active expiry examines before it decides whether to go on"),
    NUMBER("active-expire-effort", CONFIG_INTEGER, active_expire_effort, "1", 1, 10, 0,
           "1..10: share of a cycle active expiry may take, stale keys it accepts"),
    NUMBER("latency-tracking", CONFIG_BOOL, latency_tracking, "yes", 0, 1, 0,
           "record per-command latency for INFO latencystats"),
    NUMBER("loop-sync-max-us", CONFIG_INTEGER, loop_sync_max_us, "1000", 0, 60000000, 0,
           "loops sync small groups of held replies while syncs average less; 0 = never"),
    NUMBER("slowlog-log-slower-than", CONFIG_INTEGER, slowlog_log_slower_than, "10000", -1,
           LLONG_MAX, 0, "microseconds a command must run to enter the slow log; -1 = off"),
    NUMBER("slowlog-max-len", CONFIG_INTEGER, slowlog_max_len, "128", 0, LLONG_MAX, 0,
           "entries the slow log keeps"),
    NUMBER("acllog-max-len", CONFIG_INTEGER, acllog_max_len, "128", 0, LLONG_MAX, 0,
           "entries ACL LOG keeps"),
    STRING("loglevel", loglevel, "notice", 0, "debug|verbose|notice|warning|nothing",
           "how much is logged"),
    STRING("logfile", logfile, "", CONFIG_IMMUTABLE, NULL, "log file; empty = standard error"),
    STRING("pidfile", pidfile, "", CONFIG_IMMUTABLE, NULL, "file to write the process id to"),
    STRING("requirepass", requirepass, "", CONFIG_SENSITIVE, NULL,
           "password of the default user; empty = none"),
};

#define CONFIG_COUNT (sizeof(config_table) / sizeof(config_table[0]))

static const config_entry *config_find(const char *name)
{
    for (size_t i = 0; i < CONFIG_COUNT; i++)
        if (strcasecmp(config_table[i].name, name) == 0)
            return &config_table[i];
    return NULL;
}

static bool config_choice_allowed(const char *choices, const char *value)
{
    size_t length = strlen(value);
    const char *at = choices;
    while (*at) {
        const char *bar = strchr(at, '|');
        size_t word = bar ? (size_t)(bar - at) : strlen(at);
        if (word == length && strncasecmp(at, value, length) == 0)
            return true;
        if (bar == NULL)
            break;
        at = bar + 1;
    }
    return false;
}

static int config_apply(server_config *cfg, const config_entry *entry, const char *value,
                        char *error, size_t error_size)
{
    char *field = (char *)cfg + entry->offset;
    if (entry->kind == CONFIG_STRING) {
        if (strlen(value) >= (entry->offset == offsetof(server_config, mode) ||
                                      entry->offset == offsetof(server_config, sync) ||
                                      entry->offset == offsetof(server_config, loglevel)
                                  ? 16u
                                  : CONFIG_STRING_MAX)) {
            snprintf(error, error_size, "argument too long");
            return -1;
        }
        if (entry->choices != NULL && !config_choice_allowed(entry->choices, value)) {
            snprintf(error, error_size, "argument must be one of %s", entry->choices);
            return -1;
        }
        strcpy(field, value);
        if (entry->choices != NULL)
            for (char *c = field; *c; c++)
                *c = (char)(*c >= 'A' && *c <= 'Z' ? *c + 32 : *c);
        return 0;
    }
    long long number;
    if (entry->kind == CONFIG_BOOL) {
        if (!strcasecmp(value, "yes") || !strcmp(value, "1"))
            number = 1;
        else if (!strcasecmp(value, "no") || !strcmp(value, "0"))
            number = 0;
        else {
            snprintf(error, error_size, "argument must be 'yes' or 'no'");
            return -1;
        }
    } else if (entry->kind == CONFIG_MEMORY) {
        unsigned long long bytes;
        if (!text_to_memory(value, &bytes) || bytes > LLONG_MAX) {
            snprintf(error, error_size, "argument must be a memory value");
            return -1;
        }
        number = (long long)bytes;
    } else {
        if (!text_to_long_long(value, strlen(value), &number)) {
            snprintf(error, error_size, "argument couldn't be parsed into an integer");
            return -1;
        }
    }
    if (number < entry->minimum || number > entry->maximum) {
        snprintf(error, error_size, "argument must be between %lld and %lld inclusive",
                 entry->minimum, entry->maximum);
        return -1;
    }
    atomic_store((atomic_llong *)(void *)field, number);
    return 0;
}

void config_defaults(server_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    char error[128];
    for (size_t i = 0; i < CONFIG_COUNT; i++)
        config_apply(cfg, &config_table[i], config_table[i].default_text, error, sizeof(error));
}

/* client-output-buffer-limit <class> <hard> <soft> <seconds>: only the "normal" class is
 * meaningful here; the others are accepted and ignored, so redis.conf files load. */
static int config_set_output_limit(server_config *cfg, const char *value, char *error,
                                   size_t error_size)
{
    char class_name[32], hard[32], soft[32], seconds[32];
    if (sscanf(value, "%31s %31s %31s %31s", class_name, hard, soft, seconds) != 4) {
        snprintf(error, error_size, "wrong number of arguments");
        return -1;
    }
    unsigned long long hard_bytes, soft_bytes;
    long long soft_seconds;
    if (!text_to_memory(hard, &hard_bytes) || !text_to_memory(soft, &soft_bytes) ||
        !text_to_long_long(seconds, strlen(seconds), &soft_seconds) || soft_seconds < 0 ||
        hard_bytes > LLONG_MAX || soft_bytes > LLONG_MAX) {
        snprintf(error, error_size, "argument must be <class> <hard> <soft> <seconds>");
        return -1;
    }
    if (strcasecmp(class_name, "normal") != 0)
        return 0;
    atomic_store(&cfg->output_hard_limit, (long long)hard_bytes);
    atomic_store(&cfg->output_soft_limit, (long long)soft_bytes);
    atomic_store(&cfg->output_soft_seconds, soft_seconds);
    return 0;
}

int config_set(server_config *cfg, const char *name, const char *value, bool startup,
               char *error, size_t error_size)
{
    if (!strcasecmp(name, "client-output-buffer-limit"))
        return config_set_output_limit(cfg, value, error, error_size);
    if (!strcasecmp(name, "appendfsync")) {
        static const char *const words[][2] = {
            {"always", "always"}, {"everysec", "periodic"}, {"no", "none"}};
        for (size_t i = 0; i < 3; i++)
            if (!strcasecmp(value, words[i][0]))
                return config_set(cfg, "sync", words[i][1], startup, error, error_size);
        snprintf(error, error_size, "argument must be one of always|everysec|no");
        return -1;
    }
    if (!strcasecmp(name, "save") || !strcasecmp(name, "appendonly") ||
        !strcasecmp(name, "daemonize") || !strcasecmp(name, "protected-mode")) {
        /* Accepted so that redis.conf files and redis-benchmark's CONFIG SET load. */
        return 0;
    }
    const config_entry *entry = config_find(name);
    if (entry == NULL) {
        snprintf(error, error_size, "unknown setting '%s'", name);
        return -1;
    }
    if (!startup && (entry->flags & CONFIG_IMMUTABLE)) {
        snprintf(error, error_size, "can't set immutable config");
        return -1;
    }
    return config_apply(cfg, entry, value, error, error_size);
}

/* Splits a config line into at most max words, in place; double quotes group words.
 * Returns the number of words, or -1 on an unbalanced quote. */
static int config_split(char *line, char **words, int max)
{
    int count = 0;
    char *at = line;
    while (*at) {
        while (*at == ' ' || *at == '\t' || *at == '\r' || *at == '\n')
            at++;
        if (*at == '\0' || *at == '#')
            break;
        if (count == max)
            return count;
        if (*at == '"') {
            char *end = strchr(at + 1, '"');
            if (end == NULL)
                return -1;
            *end = '\0';
            words[count++] = at + 1;
            at = end + 1;
        } else {
            words[count++] = at;
            while (*at && *at != ' ' && *at != '\t' && *at != '\r' && *at != '\n')
                at++;
            if (*at)
                *at++ = '\0';
        }
    }
    return count;
}

static int config_load_file(server_config *cfg, const char *path, char *error,
                            size_t error_size)
{
    FILE *file = fopen(path, "r");
    if (file == NULL) {
        snprintf(error, error_size, "cannot open config file '%s'", path);
        return -1;
    }
    char line[4096];
    int line_number = 0;
    int result = 0;
    while (result == 0 && fgets(line, sizeof(line), file) != NULL) {
        line_number++;
        char original[4096];
        snprintf(original, sizeof(original), "%s", line);
        char *words[16];
        int count = config_split(line, words, 16);
        if (count == 0)
            continue;
        char reason[256];
        if (count < 0) {
            snprintf(reason, sizeof(reason), "unbalanced quotes");
            result = -1;
        } else if (!strcasecmp(words[0], "user")) {
            if (cfg->user_line_count == CONFIG_MAX_USER_LINES) {
                snprintf(reason, sizeof(reason), "too many users");
                result = -1;
            } else {
                /* Keep the line as written, less "user", for the ACL module. */
                char *rest = strstr(original, words[1] ? words[1] : "");
                char *copy = strdup(rest ? rest : "");
                if (copy == NULL) {
                    snprintf(reason, sizeof(reason), "out of memory");
                    result = -1;
                } else {
                    copy[strcspn(copy, "\r\n")] = '\0';
                    cfg->user_lines[cfg->user_line_count++] = copy;
                }
            }
        } else if (count < 2) {
            snprintf(reason, sizeof(reason), "missing value");
            result = -1;
        } else {
            char value[1024] = "";
            for (int i = 1; i < count; i++) {
                if (i > 1)
                    strncat(value, " ", sizeof(value) - strlen(value) - 1);
                strncat(value, words[i], sizeof(value) - strlen(value) - 1);
            }
            result = config_set(cfg, words[0], value, true, reason, sizeof(reason));
        }
        if (result != 0)
            snprintf(error, error_size, "%s:%d: '%s': %s", path, line_number, words[0] ? words[0] : "",
                     reason);
    }
    fclose(file);
    return result;
}

int config_load(server_config *cfg, int argc, char **argv, char *error, size_t error_size)
{
    /* The file first: a bare argument (as redis-server takes it) or --config. */
    const char *file = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--config") && i + 1 < argc)
            file = argv[++i];
        else if (argv[i][0] != '-' && i == 1)
            file = argv[i];
        else if (argv[i][0] == '-' && argv[i][1] == '-' && i + 1 < argc)
            i++;
    }
    if (file != NULL) {
        snprintf(cfg->config_file, sizeof(cfg->config_file), "%s", file);
        if (config_load_file(cfg, file, error, error_size) != 0)
            return -1;
    }
    static const struct {
        const char *variable, *setting;
    } environment[] = {
        {"SHOAL_PORT", "port"},   {"SHOAL_DIR", "dir"},         {"SHOAL_SHARDS", "shards"},
        {"SHOAL_MODE", "mode"},   {"SHOAL_SYNC", "sync"},       {"SHOAL_THREADS", "threads"},
    };
    for (size_t i = 0; i < sizeof(environment) / sizeof(environment[0]); i++) {
        const char *value = getenv(environment[i].variable);
        if (value == NULL || value[0] == '\0')
            continue;
        char reason[256];
        if (config_set(cfg, environment[i].setting, value, true, reason, sizeof(reason)) != 0) {
            snprintf(error, error_size, "%s=%s: %s", environment[i].variable, value, reason);
            return -1;
        }
    }
    for (int i = 1; i < argc; i++) {
        if (i == 1 && argv[i][0] != '-')
            continue;
        if (strncmp(argv[i], "--", 2) != 0) {
            snprintf(error, error_size, "unexpected argument '%s'", argv[i]);
            return -1;
        }
        const char *name = argv[i] + 2;
        if (!strcmp(name, "config")) {
            i++;
            continue;
        }
        if (i + 1 >= argc) {
            snprintf(error, error_size, "flag '%s' needs a value", argv[i]);
            return -1;
        }
        const char *value = argv[++i];
        char reason[256];
        if (!strcmp(name, "user")) {
            if (cfg->user_line_count == CONFIG_MAX_USER_LINES ||
                (cfg->user_lines[cfg->user_line_count] = strdup(value)) == NULL) {
                snprintf(error, error_size, "too many users");
                return -1;
            }
            cfg->user_line_count++;
            continue;
        }
        if (config_set(cfg, name, value, true, reason, sizeof(reason)) != 0) {
            snprintf(error, error_size, "--%s %s: %s", name, value, reason);
            return -1;
        }
    }
    return 0;
}

static void config_format(server_config *cfg, const config_entry *entry, char *out,
                          size_t size)
{
    const char *field = (const char *)cfg + entry->offset;
    if (entry->kind == CONFIG_STRING) {
        snprintf(out, size, "%s", field);
        return;
    }
    long long value = atomic_load((const atomic_llong *)(const void *)field);
    if (entry->kind == CONFIG_BOOL)
        snprintf(out, size, "%s", value ? "yes" : "no");
    else
        snprintf(out, size, "%lld", value);
}

int config_reply_get(server_config *cfg, resp_buffer *out, const char *const *patterns,
                     const size_t *pattern_lengths, size_t count)
{
    /* Each setting once, even when several patterns match it. */
    bool chosen[CONFIG_COUNT + 1];
    size_t matches = 0;
    for (size_t i = 0; i <= CONFIG_COUNT; i++) {
        const char *name = i < CONFIG_COUNT ? config_table[i].name : "client-output-buffer-limit";
        chosen[i] = false;
        if (i < CONFIG_COUNT && (config_table[i].flags & CONFIG_SENSITIVE))
            continue; /* passwords are never shown */
        for (size_t p = 0; p < count && !chosen[i]; p++)
            if (text_glob_match(patterns[p], pattern_lengths[p], name, strlen(name), true))
                chosen[i] = true;
        matches += chosen[i];
    }
    resp_add_map(out, (long long)matches);
    for (size_t i = 0; i <= CONFIG_COUNT; i++) {
        if (!chosen[i])
            continue;
        char value[CONFIG_STRING_MAX + 64];
        if (i == CONFIG_COUNT) {
            resp_add_bulk_cstring(out, "client-output-buffer-limit");
            snprintf(value, sizeof(value), "normal %lld %lld %lld replica 0 0 0 pubsub 0 0 0",
                     atomic_load(&cfg->output_hard_limit), atomic_load(&cfg->output_soft_limit),
                     atomic_load(&cfg->output_soft_seconds));
        } else {
            resp_add_bulk_cstring(out, config_table[i].name);
            config_format(cfg, &config_table[i], value, sizeof(value));
        }
        resp_add_bulk_cstring(out, value);
    }
    return 0;
}

void config_free(server_config *cfg)
{
    for (size_t i = 0; i < cfg->user_line_count; i++)
        free(cfg->user_lines[i]);
    cfg->user_line_count = 0;
}

void config_print_defaults(void)
{
    for (size_t i = 0; i < CONFIG_COUNT; i++)
        printf("  --%-34s %-12s %s%s\n", config_table[i].name,
               config_table[i].default_text[0] ? config_table[i].default_text : "\"\"",
               config_table[i].meaning,
               (config_table[i].flags & CONFIG_IMMUTABLE) ? " [startup only]" : "");
    printf("  --%-34s %-12s %s\n", "user", "", "\"<name> <rules>\" declares an ACL user");
    printf("  --%-34s %-12s %s\n", "config", "", "redis.conf-style file to read first");
}

const char *config_appendfsync_name(const char *sync)
{
    if (!strcmp(sync, "always") || !strcmp(sync, "batch"))
        return "always";
    if (!strcmp(sync, "none"))
        return "no";
    return "everysec";
}
