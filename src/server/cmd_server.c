/*
 * cmd_server.c -- connection and server commands: PING ECHO HELLO AUTH QUIT RESET SELECT
 * CLIENT INFO CONFIG SAVE BGSAVE LASTSAVE SHUTDOWN COMMAND TIME ACL.
 *
 * Identity changes (AUTH, HELLO AUTH, CLIENT SETNAME) are made under the registry lock,
 * because CLIENT LIST on other loops reads those fields (server.h). INFO shows a
 * non-admin user only its own tenant.
 *
 * Checkpoints: SAVE runs shoal_checkpoint on the caller's loop (blocking that loop and its
 * clients, as SAVE blocks Redis); BGSAVE runs it on a thread of its own, one at a time
 * (server.bgsave_lock guards the thread's handle and the in-progress and scheduled flags,
 * so a BGSAVE SCHEDULE is never lost between the thread's last check and its exit);
 * LASTSAVE is the newer of the last checkpoint the engine completed (on request or
 * because the log grew) and the startup time. In memory mode they answer that
 * checkpoints need a directory.
 * Tested by tests/integration/test_server.py, test_durable.py and the redis-cli smoke test.
 */
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "acllog.h"
#include "core/pages.h"
#include "catalog.h"
#include "commands.h"
#include "log.h"
#include "monitor.h"
#include "pending.h"
#include "slowlog.h"
#include "text.h"

COMMAND_HANDLER(cmd_ping)
{
    if (c->argc > 2) {
        resp_add_error(&c->out, "ERR wrong number of arguments for 'ping' command");
        return;
    }
    if (c->argc == 2)
        resp_add_bulk(&c->out, c->argv[1], c->lengths[1]);
    else
        resp_add_simple(&c->out, "PONG");
}

COMMAND_HANDLER(cmd_echo)
{
    resp_add_bulk(&c->out, c->argv[1], c->lengths[1]);
}

static void server_set_identity(client *c, const acl_identity *identity)
{
    pthread_mutex_lock(&server.registry_lock);
    c->identity = *identity;
    c->authenticated = true;
    pthread_mutex_unlock(&server.registry_lock);
    c->ns = NULL; /* another tenant: another namespace */
    c->parser.authenticated = true;
}

static bool server_authenticate(client *c, const char *user, size_t user_length,
                                const char *password, size_t password_length)
{
    acl_identity identity;
    if (acl_authenticate(user, user_length, password, password_length, &identity) != 0) {
        log_message(LOG_VERBOSE, "failed AUTH for user '%.*s' from %s", (int)user_length, user,
                    c->address);
        acllog_add(c, "auth", "AUTH", user, user_length);
        return false;
    }
    server_set_identity(c, &identity);
    return true;
}

COMMAND_HANDLER(cmd_auth)
{
    if (c->argc > 3) {
        resp_add_error(&c->out, "ERR syntax error");
        return;
    }
    const char *user = "default";
    size_t user_length = 7;
    size_t password_index = 1;
    if (c->argc == 3) {
        user = c->argv[1];
        user_length = c->lengths[1];
        password_index = 2;
    } else if (!acl_default_requires_auth()) {
        resp_add_error(&c->out, "ERR AUTH <password> called without any password configured "
                                "for the default user. Are you sure your configuration is "
                                "correct?");
        return;
    }
    if (!server_authenticate(c, user, user_length, c->argv[password_index],
                             c->lengths[password_index])) {
        resp_add_error(&c->out, "WRONGPASS invalid username-password pair or user is disabled.");
        return;
    }
    resp_add_ok(&c->out);
}

COMMAND_HANDLER(cmd_hello)
{
    long long version = c->out.protocol;
    size_t i = 1;
    if (c->argc >= 2) {
        if (!text_to_long_long(c->argv[1], c->lengths[1], &version)) {
            resp_add_error(&c->out, "ERR Protocol version is not an integer or out of range");
            return;
        }
        if (version < 2 || version > 3) {
            resp_add_error(&c->out, "NOPROTO unsupported protocol version");
            return;
        }
        i = 2;
    }
    const char *name = NULL;
    size_t name_length = 0;
    for (; i < c->argc; i++) {
        if (arg_is(c, i, "AUTH") && i + 2 < c->argc) {
            if (!server_authenticate(c, c->argv[i + 1], c->lengths[i + 1], c->argv[i + 2],
                                     c->lengths[i + 2])) {
                resp_add_error(&c->out,
                               "WRONGPASS invalid username-password pair or user is disabled.");
                return;
            }
            i += 2;
        } else if (arg_is(c, i, "SETNAME") && i + 1 < c->argc) {
            name = c->argv[i + 1];
            name_length = c->lengths[i + 1];
            i++;
        } else {
            resp_add_errorf(&c->out, "ERR Syntax error in HELLO option '%.*s'",
                            (int)c->lengths[i], c->argv[i]);
            return;
        }
    }
    if (!c->authenticated) {
        resp_add_error(&c->out, "NOAUTH HELLO must be called with the client already "
                                "authenticated, otherwise the HELLO <proto> AUTH <user> <pass> "
                                "option can be used to authenticate the client and select the "
                                "RESP protocol version at the same time");
        return;
    }
    if (name != NULL) {
        pthread_mutex_lock(&server.registry_lock);
        snprintf(c->name, sizeof(c->name), "%.*s",
                 (int)(name_length < CLIENT_NAME_MAX ? name_length : CLIENT_NAME_MAX - 1), name);
        pthread_mutex_unlock(&server.registry_lock);
    }
    c->out.protocol = (int)version;
    atomic_store(&c->protocol_shared, (int)version);
    resp_add_map(&c->out, 7);
    resp_add_bulk_cstring(&c->out, "server");
    resp_add_bulk_cstring(&c->out, "redis");
    resp_add_bulk_cstring(&c->out, "version");
    resp_add_bulk_cstring(&c->out, "7.0.0");
    resp_add_bulk_cstring(&c->out, "proto");
    resp_add_integer(&c->out, version);
    resp_add_bulk_cstring(&c->out, "id");
    resp_add_integer(&c->out, (long long)c->id);
    resp_add_bulk_cstring(&c->out, "mode");
    resp_add_bulk_cstring(&c->out, "standalone");
    resp_add_bulk_cstring(&c->out, "role");
    resp_add_bulk_cstring(&c->out, "master");
    resp_add_bulk_cstring(&c->out, "modules");
    resp_add_array(&c->out, 0);
}

COMMAND_HANDLER(cmd_quit)
{
    resp_add_ok(&c->out);
    c->close_after_reply = true;
}

COMMAND_HANDLER(cmd_reset)
{
    monitor_remove(c); /* RESET ends MONITOR mode, as in Redis */
    client_free_multi(c);
    client_unwatch(c);
    c->db = 0;
    c->ns = NULL;
    atomic_store(&c->db_shared, 0);
    c->out.protocol = 2;
    atomic_store(&c->protocol_shared, 2);
    acl_identity identity;
    acl_default_identity(&identity);
    pthread_mutex_lock(&server.registry_lock);
    c->identity = identity;
    c->authenticated = !acl_default_requires_auth();
    c->name[0] = '\0';
    pthread_mutex_unlock(&server.registry_lock);
    resp_add_simple(&c->out, "RESET");
}

COMMAND_HANDLER(cmd_select)
{
    int db;
    if (!arg_db(c, 1, &db))
        return;
    c->db = db;
    c->ns = NULL;
    atomic_store(&c->db_shared, db);
    resp_add_ok(&c->out);
}

COMMAND_HANDLER(cmd_time)
{
    struct timeval now;
    gettimeofday(&now, NULL);
    char text[32];
    resp_add_array(&c->out, 2);
    int n = snprintf(text, sizeof(text), "%ld", (long)now.tv_sec);
    resp_add_bulk(&c->out, text, (size_t)n);
    n = snprintf(text, sizeof(text), "%ld", (long)now.tv_usec);
    resp_add_bulk(&c->out, text, (size_t)n);
}

/* ---------------------------------------------------------------------------------------
 * CLIENT
 * ------------------------------------------------------------------------------------- */

#define SUBCOMMANDS(table) table, sizeof(table) / sizeof(table[0])

static const subcommand_def client_subcommands[] = {
    {"ID", 2, false},    {"SETNAME", 3, false}, {"GETNAME", 2, false}, {"LIST", -2, false},
    {"INFO", 2, false},  {"KILL", -3, true},    {"SETINFO", 4, false}, {"NO-EVICT", 3, false},
    {"REPLY", 3, false}, {"HELP", 2, false},
};

static const char *const client_help[] = {
    "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "ID",
    "    Return the ID of the current connection.",
    "SETNAME <name>",
    "    Assign the name <name> to the current connection.",
    "GETNAME",
    "    Return the name of the current connection.",
    "LIST",
    "    Return information about client connections (a user that is not an admin sees",
    "    its own connection only).",
    "INFO",
    "    Return information about the current client connection.",
    "KILL <ip:port>",
    "    Kill connection made from <ip:port>.",
    "KILL <option> <value> [<option> <value> [...]]",
    "    Kill connections. Options are: ID <client-id>, ADDR <ip:port>, USER <username>,",
    "    SKIPME (YES|NO) (default YES).",
    "SETINFO <LIB-NAME|LIB-VER> <value>",
    "    Accepted and ignored.",
    "NO-EVICT (ON|OFF)",
    "    Accepted: no client is ever evicted.",
    "REPLY (ON|OFF|SKIP)",
    "    Control the replies sent to the current connection.",
    "HELP",
    "    Prints this help.",
};

COMMAND_HANDLER(cmd_client)
{
    if (arg_is(c, 1, "HELP")) {
        REPLY_HELP(c, client_help);
    } else if (arg_is(c, 1, "REPLY")) {
        /* OFF and SKIP answer nothing themselves; ON answers OK (network.c mutes). */
        if (arg_is(c, 2, "ON")) {
            c->reply_off = false;
            c->out.muted = false;
            resp_add_ok(&c->out);
        } else if (arg_is(c, 2, "OFF")) {
            c->reply_off = c->out.muted = true;
        } else if (arg_is(c, 2, "SKIP")) {
            c->reply_skip = c->out.muted = true;
        } else {
            resp_add_error(&c->out, "ERR syntax error");
        }
    } else if (arg_is(c, 1, "NO-EVICT")) {
        /* Nothing evicts clients here (an output limit disconnects them, maxmemory refuses
         * writes): accepted as Redis accepts it. */
        if (arg_is(c, 2, "ON") || arg_is(c, 2, "OFF"))
            resp_add_ok(&c->out);
        else
            resp_add_error(&c->out, "ERR syntax error");
    } else if (arg_is(c, 1, "ID")) {
        resp_add_integer(&c->out, (long long)c->id);
    } else if (arg_is(c, 1, "SETNAME")) {
        for (size_t i = 0; i < c->lengths[2]; i++) {
            if (c->argv[2][i] <= ' ' || c->argv[2][i] > '~') {
                resp_add_error(&c->out, "ERR Client names cannot contain spaces, newlines or "
                                        "special characters.");
                return;
            }
        }
        pthread_mutex_lock(&server.registry_lock);
        snprintf(c->name, sizeof(c->name), "%.*s",
                 (int)(c->lengths[2] < CLIENT_NAME_MAX ? c->lengths[2] : CLIENT_NAME_MAX - 1),
                 c->argv[2]);
        pthread_mutex_unlock(&server.registry_lock);
        resp_add_ok(&c->out);
    } else if (arg_is(c, 1, "GETNAME")) {
        if (c->name[0] == '\0')
            resp_add_null(&c->out);
        else
            resp_add_bulk_cstring(&c->out, c->name);
    } else if ((arg_is(c, 1, "LIST") || arg_is(c, 1, "INFO"))) {
        bool info = arg_is(c, 1, "INFO");
        /* Non-admin users see their own connection only: other tenants' clients are
         * not theirs to know about. */
        size_t length;
        char *text = network_client_list(info || !c->identity.admin ? c : NULL, &length);
        if (text == NULL) {
            reply_engine_error(c, SHOAL_ENOMEM);
            return;
        }
        resp_add_verbatim(&c->out, text, length);
        free(text);
    } else if (arg_is(c, 1, "KILL")) {
        if (c->argc == 3) {
            char address[64];
            snprintf(address, sizeof(address), "%.*s", (int)c->lengths[2], c->argv[2]);
            if (network_kill_matching(address, NULL, 0, NULL) == 0) {
                resp_add_error(&c->out, "ERR No such client");
                return;
            }
            resp_add_ok(&c->out);
            return;
        }
        char address[64] = "", user[ACL_NAME_MAX] = "";
        long long id = 0;
        bool skip_me = true;
        for (size_t i = 2; i + 1 < c->argc; i += 2) {
            if (arg_is(c, i, "ID")) {
                if (!arg_long_long(c, i + 1, &id))
                    return;
            } else if (arg_is(c, i, "ADDR")) {
                snprintf(address, sizeof(address), "%.*s", (int)c->lengths[i + 1], c->argv[i + 1]);
            } else if (arg_is(c, i, "USER")) {
                snprintf(user, sizeof(user), "%.*s", (int)c->lengths[i + 1], c->argv[i + 1]);
            } else if (arg_is(c, i, "SKIPME")) {
                skip_me = !arg_is(c, i + 1, "no");
            } else {
                resp_add_error(&c->out, "ERR syntax error");
                return;
            }
        }
        if (c->argc % 2 != 0) {
            resp_add_error(&c->out, "ERR syntax error");
            return;
        }
        size_t killed = network_kill_matching(address[0] ? address : NULL, user[0] ? user : NULL,
                                              (uint64_t)id, skip_me ? c : NULL);
        resp_add_integer(&c->out, (long long)killed);
    } else { /* SETINFO: accepted, as Redis 7.2 does */
        resp_add_ok(&c->out);
    }
}

/* ---------------------------------------------------------------------------------------
 * INFO
 * ------------------------------------------------------------------------------------- */

typedef struct info_text {
    char *text;
    size_t length, capacity;
} info_text;

static void info_append(info_text *t, const char *format, ...) __attribute__((format(printf, 2, 3)));
static void info_append(info_text *t, const char *format, ...)
{
    va_list args;
    for (int pass = 0; pass < 2; pass++) {
        va_start(args, format);
        int n = vsnprintf(t->text ? t->text + t->length : NULL,
                          t->text ? t->capacity - t->length : 0, format, args);
        va_end(args);
        if (n < 0)
            return;
        if (t->text != NULL && t->length + (size_t)n < t->capacity) {
            t->length += (size_t)n;
            return;
        }
        size_t capacity = (t->capacity + (size_t)n + 1) * 2;
        char *grown = realloc(t->text, capacity);
        if (grown == NULL)
            return;
        t->text = grown;
        t->capacity = capacity;
    }
}

/* Error replies by their code (the first word: ERR, WRONGTYPE, NOAUTH...), for INFO
 * errorstats and total_error_replies. A code is added once, under the lock, and published
 * by the release store of the count; counting is a relaxed increment. Past
 * SERVER_ERROR_CODES codes, new ones are counted in the total only. */
#define SERVER_ERROR_CODES 128
#define SERVER_ERROR_CODE_MAX 32
static struct {
    pthread_mutex_t lock;
    char codes[SERVER_ERROR_CODES][SERVER_ERROR_CODE_MAX];
    atomic_ullong counts[SERVER_ERROR_CODES];
    atomic_size_t count;
    atomic_ullong total;
} server_errors = {.lock = PTHREAD_MUTEX_INITIALIZER};

void server_count_error(const char *text, size_t length)
{
    atomic_fetch_add_explicit(&server_errors.total, 1, memory_order_relaxed);
    size_t code_length = 0;
    while (code_length < length && code_length < SERVER_ERROR_CODE_MAX - 1 &&
           text[code_length] != ' ')
        code_length++;
    for (int attempt = 0; attempt < 2; attempt++) {
        size_t count = atomic_load_explicit(&server_errors.count, memory_order_acquire);
        for (size_t i = 0; i < count; i++) {
            if (strncmp(server_errors.codes[i], text, code_length) == 0 &&
                server_errors.codes[i][code_length] == '\0') {
                atomic_fetch_add_explicit(&server_errors.counts[i], 1, memory_order_relaxed);
                return;
            }
        }
        if (attempt == 1)
            return;
        pthread_mutex_lock(&server_errors.lock);
        count = atomic_load_explicit(&server_errors.count, memory_order_relaxed);
        bool known = false;
        for (size_t i = 0; i < count && !known; i++)
            known = strncmp(server_errors.codes[i], text, code_length) == 0 &&
                    server_errors.codes[i][code_length] == '\0';
        if (!known && count < SERVER_ERROR_CODES) {
            memcpy(server_errors.codes[count], text, code_length);
            server_errors.codes[count][code_length] = '\0';
            atomic_store_explicit(&server_errors.count, count + 1, memory_order_release);
        }
        pthread_mutex_unlock(&server_errors.lock);
    }
}

static void server_reset_errors(void)
{
    atomic_store(&server_errors.total, 0);
    size_t count = atomic_load_explicit(&server_errors.count, memory_order_acquire);
    for (size_t i = 0; i < count; i++)
        atomic_store(&server_errors.counts[i], 0);
}

static bool info_wanted(client *c, const char *section, bool by_default)
{
    if (c->argc < 2)
        return by_default;
    for (size_t i = 1; i < c->argc; i++) {
        if (arg_is(c, i, section) || arg_is(c, i, "all") || arg_is(c, i, "everything"))
            return true;
        if (arg_is(c, i, "default") && by_default)
            return true;
    }
    return false;
}

static uint64_t info_percentile_ns(const uint64_t *buckets, uint64_t total, double fraction)
{
    uint64_t target = (uint64_t)(fraction * (double)total);
    if (target == 0)
        target = 1;
    uint64_t seen = 0;
    for (unsigned b = 0; b < STATS_BUCKETS; b++) {
        seen += buckets[b];
        if (seen >= target)
            return stats_bucket_upper_ns(b);
    }
    return stats_bucket_upper_ns(STATS_BUCKETS - 1);
}

static void info_commands(info_text *t, bool commandstats, bool latencystats)
{
    if (commandstats)
        info_append(t, "# Commandstats\r\n");
    uint64_t *buckets = malloc(sizeof(uint64_t) * STATS_BUCKETS);
    if (buckets == NULL)
        return;
    info_text latency = {0};
    for (size_t i = 0; i < command_count(); i++) {
        uint64_t calls = 0, nanoseconds = 0, failed = 0, rejected = 0;
        memset(buckets, 0, sizeof(uint64_t) * STATS_BUCKETS);
        for (size_t l = 0; l < server.loop_count; l++) {
            command_stats *s = &server.loops[l].stats[i];
            calls += atomic_load_explicit(&s->calls, memory_order_relaxed);
            nanoseconds += atomic_load_explicit(&s->nanoseconds, memory_order_relaxed);
            failed += atomic_load_explicit(&s->failed, memory_order_relaxed);
            rejected += atomic_load_explicit(&s->rejected, memory_order_relaxed);
            for (unsigned b = 0; b < STATS_BUCKETS; b++)
                buckets[b] += atomic_load_explicit(&s->buckets[b], memory_order_relaxed);
        }
        if (calls == 0 && rejected == 0)
            continue;
        const char *name = command_at(i)->name;
        if (commandstats)
            info_append(t,
                        "cmdstat_%s:calls=%llu,usec=%llu,usec_per_call=%.2f,"
                        "rejected_calls=%llu,failed_calls=%llu\r\n",
                        name, (unsigned long long)calls, (unsigned long long)(nanoseconds / 1000),
                        calls ? (double)nanoseconds / 1000.0 / (double)calls : 0.0,
                        (unsigned long long)rejected, (unsigned long long)failed);
        uint64_t sampled = 0;
        for (unsigned b = 0; b < STATS_BUCKETS; b++)
            sampled += buckets[b];
        if (latencystats && sampled > 0)
            info_append(&latency, "latency_percentiles_usec_%s:p50=%.3f,p99=%.3f,p99.9=%.3f\r\n",
                        name, (double)info_percentile_ns(buckets, sampled, 0.50) / 1000.0,
                        (double)info_percentile_ns(buckets, sampled, 0.99) / 1000.0,
                        (double)info_percentile_ns(buckets, sampled, 0.999) / 1000.0);
    }
    if (latencystats) {
        if (commandstats)
            info_append(t, "\r\n");
        info_append(t, "# Latencystats\r\n%.*s", (int)latency.length,
                    latency.text ? latency.text : "");
    }
    free(latency.text);
    free(buckets);
}

static long info_rss_kb(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, resident = 0;
    if (f != NULL) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

/* Redis's bytesToHuman: "512B", "1.50K", "2.00M", ... (powers of 1024, two decimals). */
static void info_human_bytes(char *out, size_t capacity, unsigned long long bytes)
{
    static const char units[] = "KMGTP";
    if (bytes < 1024) {
        snprintf(out, capacity, "%lluB", bytes);
        return;
    }
    double value = (double)bytes / 1024;
    size_t unit = 0;
    while (value >= 1024 && unit + 1 < sizeof(units) - 1) {
        value /= 1024;
        unit++;
    }
    snprintf(out, capacity, "%.2f%c", value, units[unit]);
}

/* The highest used_memory seen: sampled by the main thread between signals (hz times a
 * second) and by every INFO. */
static _Atomic unsigned long long info_memory_peak;

static void info_note_memory(unsigned long long used)
{
    unsigned long long peak = atomic_load_explicit(&info_memory_peak, memory_order_relaxed);
    while (used > peak &&
           !atomic_compare_exchange_weak_explicit(&info_memory_peak, &peak, used,
                                                  memory_order_relaxed, memory_order_relaxed)) {
    }
}

void info_sample_memory(void)
{
    shoal_db_stats stats;
    memset(&stats, 0, sizeof(stats));
    if (shoal_stats(server.db, &stats) == 0)
        info_note_memory(stats.memory);
}

static unsigned long long info_system_memory(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), page_size = sysconf(_SC_PAGESIZE);
    return pages > 0 && page_size > 0 ? (unsigned long long)pages * (unsigned long long)page_size
                                      : 0;
}

/* The memory section: Redis's field names where Shoal has the quantity. used_memory is
 * the engine's memory (segments, object tables, indexes), of which maxmemory limits the
 * segments; the server's own buffers are in used_memory_rss only. */
static void info_memory(info_text *t, const shoal_db_stats *stats)
{
    unsigned long long used = stats->memory;
    info_note_memory(used);
    unsigned long long peak = atomic_load_explicit(&info_memory_peak, memory_order_relaxed);
    unsigned long long rss = (unsigned long long)info_rss_kb() * 1024;
    unsigned long long system = info_system_memory();
    long long maxmemory = atomic_load(&server.config.maxmemory);
    char used_human[32], rss_human[32], peak_human[32], system_human[32], max_human[32];
    info_human_bytes(used_human, sizeof(used_human), used);
    info_human_bytes(rss_human, sizeof(rss_human), rss);
    info_human_bytes(peak_human, sizeof(peak_human), peak);
    info_human_bytes(system_human, sizeof(system_human), system);
    info_human_bytes(max_human, sizeof(max_human), (unsigned long long)maxmemory);
    info_append(t,
                "used_memory:%llu\r\nused_memory_human:%s\r\nused_memory_rss:%llu\r\n"
                "used_memory_rss_human:%s\r\nused_memory_peak:%llu\r\n"
                "used_memory_peak_human:%s\r\nused_memory_peak_perc:%.2f%%\r\n"
                "used_memory_dataset:%llu\r\ntotal_system_memory:%llu\r\n"
                "total_system_memory_human:%s\r\nmaxmemory:%lld\r\nmaxmemory_human:%s\r\n"
                "maxmemory_policy:noeviction\r\nmem_fragmentation_ratio:%.2f\r\n"
                "mem_allocator:libc\r\nstored_keys:%llu\r\nstored_bytes:%llu\r\n",
                used, used_human, rss, rss_human, peak, peak_human,
                peak ? 100.0 * (double)used / (double)peak : 100.0,
                (unsigned long long)stats->bytes, system, system_human, maxmemory, max_human,
                used ? (double)rss / (double)used : 0.0, (unsigned long long)stats->keys,
                (unsigned long long)stats->bytes);
    /* The huge pages faulted in ahead for growing segments (core/pages.h): a miss is a
     * writer that faulted its own 2 MiB page, a latency spike under its shard lock. */
    struct pages_reserve_stats reserve;
    pages_reserve_stats(&reserve);
    info_append(t,
                "huge_reserve_spares:%u\r\nhuge_reserve_prefaulted:%llu\r\n"
                "huge_reserve_taken:%llu\r\nhuge_reserve_missed:%llu\r\n"
                "huge_reserve_dropped:%llu\r\n",
                reserve.spares, reserve.prefaulted, reserve.taken, reserve.missed, reserve.dropped);
}

/* Newest of the startup time, the last SAVE/BGSAVE and the engine's last checkpoint. */
static long long server_last_save(const shoal_db_stats *stats)
{
    long long last = atomic_load(&server.last_save_unix);
    return stats->checkpoint_unix > last ? (long long)stats->checkpoint_unix : last;
}

/* INFO persistence: Redis's field names where one means the same thing (a checkpoint is
 * an "rdb save", the log is the "aof"), then the engine's own figures. */
/* bgsave_in_progress was read before stats: a BGSAVE it reports finished is counted in
 * them (its thread counts the checkpoint, then clears the flag). */
static void info_persistence(info_text *t, const shoal_db_stats *stats, bool bgsave_in_progress)
{
    int bgsave_error = atomic_load(&server.last_bgsave_error);
    info_append(t,
                "loading:0\r\nasync_loading:0\r\nmode:%s\r\ndir:%s\r\nsync:%s\r\n"
                "aof_enabled:%d\r\nappendfsync:%s\r\nrdb_changes_since_last_save:%llu\r\n"
                "rdb_bgsave_in_progress:%d\r\nrdb_saves:%llu\r\nrdb_last_save_time:%lld\r\n"
                "rdb_last_bgsave_status:%s\r\nrdb_last_checkpoint_seq:%llu\r\n"
                "last_checkpoint_error:%s\r\naof_last_write_status:%s\r\n",
                server.durable ? "durable" : "memory", server.durable ? server.config.dir : "",
                server.durable ? server.config.sync : "", server.durable ? 1 : 0,
                server.durable ? config_appendfsync_name(server.config.sync) : "no",
                (unsigned long long)(server.durable && stats->seq > stats->checkpoint_seq
                                         ? stats->seq - stats->checkpoint_seq
                                         : 0),
                bgsave_in_progress ? 1 : 0, (unsigned long long)stats->checkpoints,
                server_last_save(stats),
                bgsave_error == 0 ? "ok" : "err", (unsigned long long)stats->checkpoint_seq,
                stats->last_checkpoint_error ? shoal_error_name(stats->last_checkpoint_error)
                                             : "none",
                stats->read_only ? "err" : "ok");
    double group = stats->group_commits > 0
                       ? (double)stats->group_waiters / (double)stats->group_commits
                       : 0.0;
    double sync_avg_us =
        stats->log_syncs > 0 ? (double)stats->log_sync_ns / (double)stats->log_syncs / 1e3 : 0.0;
    info_append(
        t,
        "log_streams:%u\r\nlog_bytes:%llu\r\nlog_syncs:%llu\r\nlog_sync_avg_us:%.1f\r\n"
        "group_commits:%llu\r\n"
        "group_commit_avg_size:%.2f\r\npending_durable_writes:%lld\r\n"
        "reply_groups_synced_on_loop:%llu\r\nreply_groups_handed_to_log:%llu\r\n"
        "durability_failures:%llu\r\nrecovery_time_ms:%lld\r\n"
        "recovered_checkpoint_keys:%llu\r\nrecovered_log_records:%llu\r\n"
        "recovered_torn_streams:%u\r\nrecovered_torn_bytes:%llu\r\n"
        "recovered_salvaged_bytes:%llu\r\nread_only:%d\r\nread_only_cause:%s\r\n",
        stats->log_streams, (unsigned long long)stats->log_bytes,
        (unsigned long long)stats->log_syncs, sync_avg_us, (unsigned long long)stats->group_commits,
        group, atomic_load(&server.pending_writes),
        (unsigned long long)atomic_load(&server.groups_synced_on_loop),
        (unsigned long long)atomic_load(&server.groups_handed_to_log),
        (unsigned long long)atomic_load(&server.durability_failures), server.recovery_ms,
        (unsigned long long)stats->recovered_keys, (unsigned long long)stats->recovered_records,
        stats->torn_streams, (unsigned long long)stats->torn_bytes,
        (unsigned long long)stats->salvaged_bytes, stats->read_only ? 1 : 0,
        stats->read_only_cause ? shoal_error_name(stats->read_only_cause) : "none");
}

COMMAND_HANDLER(cmd_info)
{
    info_text t = {0};
    long long now = store_now_ms();
    bool first = true;
#define SECTION(title)                                                                      \
    do {                                                                                    \
        info_append(&t, "%s# %s\r\n", first ? "" : "\r\n", title);                          \
        first = false;                                                                      \
    } while (0)
    if (info_wanted(c, "server", true)) {
        SECTION("Server");
        info_append(&t, "redis_version:7.0.0\r\nshoal_version:%d.%d\r\nredis_mode:standalone\r\n"
                        "os:Linux\r\narch_bits:64\r\nmultiplexing_api:epoll\r\nprocess_id:%d\r\n"
                        "run_id:%s\r\ntcp_port:%d\r\nserver_time_usec:%lld\r\n"
                        "uptime_in_seconds:%lld\r\nuptime_in_days:%lld\r\nhz:%lld\r\n"
                        "event_loops:%zu\r\nexecutable:shoal-server\r\nconfig_file:%s\r\n",
                    SHOAL_VERSION_MAJOR, SHOAL_VERSION_MINOR, (int)getpid(), server.run_id,
                    server.bound_port, now * 1000, (now - server.started_ms) / 1000,
                    (now - server.started_ms) / 86400000, atomic_load(&server.config.hz),
                    server.loop_count, server.config.config_file);
    }
    if (info_wanted(c, "clients", true)) {
        SECTION("Clients");
        info_append(&t, "connected_clients:%lld\r\nmaxclients:%lld\r\nblocked_clients:%lld\r\n",
                    atomic_load(&server.connected_clients), atomic_load(&server.config.maxclients),
                    (long long)atomic_load(&server.suspended_clients));
    }
    bool bgsave_in_progress = atomic_load(&server.bgsave_in_progress); /* before the stats */
    shoal_db_stats stats;
    memset(&stats, 0, sizeof(stats));
    shoal_stats(server.db, &stats);
    if (info_wanted(c, "memory", true)) {
        SECTION("Memory");
        info_memory(&t, &stats);
    }
    if (info_wanted(c, "persistence", true)) {
        SECTION("Persistence");
        info_persistence(&t, &stats, bgsave_in_progress);
    }
    if (info_wanted(c, "stats", true)) {
        SECTION("Stats");
        info_append(
            &t,
            "total_connections_received:%llu\r\ntotal_commands_processed:%llu\r\n"
            "total_net_input_bytes:%llu\r\ntotal_net_output_bytes:%llu\r\n"
            "rejected_connections:%llu\r\nexpired_keys:%llu\r\nevicted_keys:0\r\n"
            "keyspace_hits:%llu\r\nkeyspace_misses:%llu\r\n"
            "client_output_buffer_limit_disconnections:%llu\r\n"
            "client_query_buffer_limit_disconnections:%llu\r\ntotal_error_replies:%llu\r\n"
            "protocol_errors:%llu\r\nengine_seq:%llu\r\nengine_commits:%llu\r\n"
            "engine_quota_refusals:%llu\r\nengine_snapshots_open:%llu\r\n",
            (unsigned long long)atomic_load(&server.total_connections),
            (unsigned long long)atomic_load(&server.total_commands),
            (unsigned long long)atomic_load(&server.input_bytes),
            (unsigned long long)atomic_load(&server.output_bytes),
            (unsigned long long)atomic_load(&server.rejected_connections),
            (unsigned long long)atomic_load(&store_expired_keys),
            (unsigned long long)atomic_load(&server.keyspace_hits),
            (unsigned long long)atomic_load(&server.keyspace_misses),
            (unsigned long long)atomic_load(&server.output_limit_disconnections),
            (unsigned long long)atomic_load(&server.query_limit_disconnections),
            (unsigned long long)atomic_load(&server_errors.total),
            (unsigned long long)atomic_load(&server.protocol_errors),
            (unsigned long long)stats.seq, (unsigned long long)stats.commits,
            (unsigned long long)stats.quota_refusals, (unsigned long long)stats.snapshots_open);
    }
    if (info_wanted(c, "errorstats", true)) {
        SECTION("Errorstats");
        size_t codes = atomic_load_explicit(&server_errors.count, memory_order_acquire);
        for (size_t i = 0; i < codes; i++) {
            unsigned long long n = atomic_load(&server_errors.counts[i]);
            if (n > 0)
                info_append(&t, "errorstat_%s:count=%llu\r\n", server_errors.codes[i], n);
        }
    }
    bool commandstats = info_wanted(c, "commandstats", false);
    bool latencystats = info_wanted(c, "latencystats", false);
    if (commandstats || latencystats) {
        info_append(&t, "%s", first ? "" : "\r\n");
        first = false;
        info_commands(&t, commandstats, latencystats);
    }
    if (info_wanted(c, "keyspace", true)) {
        SECTION("Keyspace");
        long long databases = atomic_load(&server.config.databases);
        for (int db = 0; db < databases; db++) {
            uint64_t keys = 0, expires = 0, avg_ttl = 0;
            if (store_count(c->identity.tenant, db, &keys) != 0 || keys == 0)
                continue;
            store_expiry_counts(c->identity.tenant, db, &expires, &avg_ttl);
            info_append(&t, "db%d:keys=%llu,expires=%llu,avg_ttl=%llu\r\n", db,
                        (unsigned long long)keys, (unsigned long long)expires,
                        (unsigned long long)avg_ttl);
        }
    }
    if (info_wanted(c, "shards", false) && c->identity.admin) {
        SECTION("Shards");
        info_append(&t, "shards:%u\r\nactive_shards:%u\r\n", stats.shards, stats.active_shards);
        for (uint32_t s = 0; s < stats.shards; s++) {
            shoal_shard_stats shard;
            if (shoal_stats_shard(server.db, s, &shard) != 0 || !shard.active)
                continue;
            info_append(&t, "shard%u:gets=%llu,puts=%llu,deletes=%llu,commits=%llu,"
                            "lock_waits=%llu,lock_wait_us=%llu,objects=%llu,bytes=%llu\r\n",
                        s, (unsigned long long)shard.gets, (unsigned long long)shard.puts,
                        (unsigned long long)shard.deletes, (unsigned long long)shard.commits,
                        (unsigned long long)shard.lock_waits,
                        (unsigned long long)(shard.lock_wait_ns / 1000),
                        (unsigned long long)shard.objects, (unsigned long long)shard.bytes);
        }
    }
    if (info_wanted(c, "tenants", false)) {
        SECTION("Tenants");
        /* A non-admin user sees its own tenant only. */
        uint64_t count = c->identity.admin ? stats.tenants : 1;
        for (uint32_t id = 0, shown = 0; shown < count && id < 100000; id++) {
            if (!c->identity.admin && id != c->identity.tenant)
                continue;
            shoal_tenant_stats tenant;
            if (shoal_stats_tenant(server.db, id, &tenant) != 0)
                continue;
            shown++;
            info_append(&t, "tenant_%s:id=%u,keys=%llu,bytes=%llu,namespaces=%llu,ops=%llu,"
                            "quota_refusals=%llu\r\n",
                        tenant.name, tenant.id, (unsigned long long)tenant.keys,
                        (unsigned long long)tenant.bytes, (unsigned long long)tenant.namespaces,
                        (unsigned long long)tenant.ops, (unsigned long long)tenant.quota_refusals);
        }
    }
#undef SECTION
    resp_add_verbatim(&c->out, t.text ? t.text : "", t.length);
    free(t.text);
}

/* ---------------------------------------------------------------------------------------
 * CONFIG, checkpoints, SHUTDOWN
 * ------------------------------------------------------------------------------------- */

static const subcommand_def config_subcommands[] = {
    {"GET", -3, false},   {"SET", -4, true},  {"RESETSTAT", 2, true},
    {"REWRITE", 2, true}, {"HELP", 2, false},
};

static const char *const config_help[] = {
    "CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "GET <pattern> [<pattern> ...]",
    "    Return parameters matching the glob-like <pattern> and their values.",
    "SET <directive> <value> [<directive> <value> ...]",
    "    Set the configuration <directive> to <value> (admin users; the settings that",
    "    can change while the server runs, docs/OPERATIONS.md).",
    "RESETSTAT",
    "    Reset the statistics reported by the INFO command.",
    "REWRITE",
    "    Not supported: edit the configuration file.",
    "HELP",
    "    Prints this help.",
};

/* Copies CONFIG SET's pair at argv[i], argv[i + 1] into C strings. */
static void config_pair(const client *c, size_t i, char *name, size_t name_size, char *value,
                        size_t value_size)
{
    snprintf(name, name_size, "%.*s", (int)c->lengths[i], c->argv[i]);
    snprintf(value, value_size, "%.*s", (int)c->lengths[i + 1], c->argv[i + 1]);
}

/* CONFIG SET name value [name value ...], all or nothing, as Redis 7: the names are checked
 * first, in order (unknown, immutable, given twice), then every value on a copy of the
 * settings; only when all pass are they applied, so a bad pair changes nothing. */
static void config_set_all(client *c)
{
    char error[256];
    server_config *scratch = malloc(sizeof(*scratch));
    if (scratch == NULL) {
        resp_add_error(&c->out, "ERR out of memory");
        return;
    }
    memcpy(scratch, &server.config, sizeof(*scratch));
    char value_error[512] = "";
    for (size_t i = 2; i + 1 < c->argc; i += 2) {
        char name[128], value[CONFIG_STRING_MAX];
        config_pair(c, i, name, sizeof(name), value, sizeof(value));
        int result = strcasecmp(name, "requirepass") == 0
                         ? 0
                         : config_set(scratch, name, value, false, error, sizeof(error));
        if (result != 0 && strncmp(error, "unknown setting", 15) == 0) {
            resp_add_errorf(&c->out,
                            "ERR Unknown option or number of arguments for CONFIG SET "
                            "- '%s'",
                            name);
            free(scratch);
            return;
        }
        bool name_error = result != 0 && strncmp(error, "can't set immutable", 19) == 0;
        for (size_t j = 2; !name_error && j < i; j += 2) {
            if (c->lengths[j] == c->lengths[i] &&
                strncasecmp(c->argv[j], c->argv[i], c->lengths[i]) == 0) {
                snprintf(error, sizeof(error), "duplicate parameter");
                name_error = true;
            }
        }
        if (name_error || (result != 0 && value_error[0] == '\0'))
            snprintf(value_error, sizeof(value_error),
                     "ERR CONFIG SET failed (possibly related to argument '%s') - %s", name, error);
        if (name_error) {
            resp_add_error(&c->out, value_error);
            free(scratch);
            return;
        }
    }
    free(scratch);
    if (value_error[0] != '\0') {
        resp_add_error(&c->out, value_error);
        return;
    }
    for (size_t i = 2; i + 1 < c->argc; i += 2) {
        char name[128], value[CONFIG_STRING_MAX];
        config_pair(c, i, name, sizeof(name), value, sizeof(value));
        if (!strcasecmp(name, "requirepass")) {
            acl_set_requirepass(value);
            snprintf(server.config.requirepass, sizeof(server.config.requirepass), "%s", value);
            continue;
        }
        if (config_set(&server.config, name, value, false, error, sizeof(error)) != 0)
            continue; /* passed on the copy, so it cannot fail here */
        if (!strcasecmp(name, "loglevel"))
            log_set_level(value);
        if (!strcasecmp(name, "maxmemory"))
            shoal_set_memory_limit(server.db, (uint64_t)atomic_load(&server.config.maxmemory));
    }
    resp_add_ok(&c->out);
}

COMMAND_HANDLER(cmd_config)
{
    if (arg_is(c, 1, "HELP")) {
        REPLY_HELP(c, config_help);
        return;
    }
    if (arg_is(c, 1, "GET")) {
        const char *patterns[64];
        size_t lengths[64];
        size_t count = 0;
        for (size_t i = 2; i < c->argc && count < 64; i++) {
            patterns[count] = c->argv[i];
            lengths[count++] = c->lengths[i];
        }
        /* Settings Redis clients ask about that have no meaning here: answered as a
         * Redis without persistence would, so redis-benchmark and friends are content. */
        bool save = false, appendonly = false, appendfsync = false;
        for (size_t i = 0; i < count; i++) {
            save |= text_glob_match(patterns[i], lengths[i], "save", 4, true);
            appendonly |= text_glob_match(patterns[i], lengths[i], "appendonly", 10, true);
            appendfsync |= text_glob_match(patterns[i], lengths[i], "appendfsync", 11, true);
        }
        resp_buffer body;
        resp_buffer_init(&body);
        body.protocol = c->out.protocol;
        config_reply_get(&server.config, &body, patterns, lengths, count);
        /* Re-emit with the extra pairs: the pair count is in body's first line. */
        struct iovec iov[256];
        int pieces = resp_buffer_iov(&body, iov, 256);
        size_t total = 0;
        for (int p = 0; p < pieces; p++)
            total += iov[p].iov_len;
        char *flat = malloc(total + 1);
        if (flat == NULL) {
            resp_buffer_free(&body);
            reply_engine_error(c, SHOAL_ENOMEM);
            return;
        }
        size_t at = 0;
        for (int p = 0; p < pieces; p++) {
            memcpy(flat + at, iov[p].iov_base, iov[p].iov_len);
            at += iov[p].iov_len;
        }
        flat[total] = '\0';
        resp_buffer_free(&body);
        char *line_end = strstr(flat, "\r\n");
        long long pairs = strtoll(flat + 1, NULL, 10);
        if (flat[0] == '*')
            pairs /= 2;
        long long extra = (long long)save + (long long)appendonly + (long long)appendfsync;
        resp_add_map(&c->out, pairs + extra);
        if (line_end != NULL)
            resp_add_raw(&c->out, line_end + 2, total - (size_t)(line_end + 2 - flat));
        if (save) {
            resp_add_bulk_cstring(&c->out, "save");
            resp_add_bulk_cstring(&c->out, "");
        }
        if (appendonly) {
            resp_add_bulk_cstring(&c->out, "appendonly");
            resp_add_bulk_cstring(&c->out, server.durable ? "yes" : "no");
        }
        if (appendfsync) {
            resp_add_bulk_cstring(&c->out, "appendfsync");
            resp_add_bulk_cstring(&c->out, config_appendfsync_name(server.config.sync));
        }
        free(flat);
    } else if (arg_is(c, 1, "SET") && c->argc % 2 == 0) {
        config_set_all(c);
    } else if (arg_is(c, 1, "RESETSTAT")) {
        for (size_t l = 0; l < server.loop_count; l++)
            for (size_t i = 0; i < command_count(); i++) {
                command_stats *s = &server.loops[l].stats[i];
                atomic_store(&s->calls, 0);
                atomic_store(&s->nanoseconds, 0);
                atomic_store(&s->failed, 0);
                atomic_store(&s->rejected, 0);
                for (unsigned b = 0; b < STATS_BUCKETS; b++)
                    atomic_store(&s->buckets[b], 0);
            }
        server_reset_errors();
        resp_add_ok(&c->out);
    } else if (arg_is(c, 1, "REWRITE")) {
        resp_add_error(&c->out, "ERR CONFIG REWRITE is not supported; edit the config file");
    } else { /* SET with a parameter lacking its value: Redis 7.0's answer */
        resp_add_error(&c->out, "ERR syntax error");
    }
}

static void server_reply_checkpoint_error(client *c, int result)
{
    const char *detail = shoal_error_detail();
    if (result == SHOAL_EREADONLY || result == SHOAL_EFSYNC)
        resp_add_errorf(&c->out, "MISCONF checkpoint refused: %s", shoal_strerror(result));
    else
        resp_add_errorf(&c->out, "ERR checkpoint failed: %s%s%s", shoal_strerror(result),
                        detail[0] ? ": " : "", detail);
}

COMMAND_HANDLER(cmd_save)
{
    if (!server.durable) {
        resp_add_error(&c->out, "ERR SAVE: checkpoints are not available in memory mode "
                                "(start with --dir to use durable mode)");
        return;
    }
    if (atomic_load(&server.bgsave_in_progress)) {
        resp_add_error(&c->out, "ERR Background save already in progress");
        return;
    }
    int result = shoal_checkpoint(server.db);
    if (result != 0) {
        log_message(LOG_WARNING, "SAVE failed: %s", shoal_strerror(result));
        server_reply_checkpoint_error(c, result);
        return;
    }
    atomic_store(&server.last_save_unix, (long long)time(NULL));
    log_message(LOG_NOTICE, "DB saved on disk (checkpoint by SAVE)");
    resp_add_ok(&c->out);
}

/* The BGSAVE thread: one checkpoint, and another while BGSAVE SCHEDULE asked for one. */
static void *server_bgsave_main(void *unused)
{
    (void)unused;
    pthread_setname_np(pthread_self(), "shoal-bgsave");
    for (;;) {
        int result = shoal_checkpoint(server.db);
        atomic_store(&server.last_bgsave_error, result);
        if (result == 0) {
            atomic_store(&server.last_save_unix, (long long)time(NULL));
            log_message(LOG_NOTICE, "Background saving terminated with success (checkpoint)");
        } else {
            const char *detail = shoal_error_detail();
            log_message(LOG_WARNING, "Background saving failed: %s%s%s", shoal_strerror(result),
                        detail[0] ? ": " : "", detail);
        }
        pthread_mutex_lock(&server.bgsave_lock);
        bool again = atomic_load(&server.bgsave_scheduled) && !atomic_load(&server.shutting_down);
        atomic_store(&server.bgsave_scheduled, false);
        if (!again)
            atomic_store(&server.bgsave_in_progress, false);
        pthread_mutex_unlock(&server.bgsave_lock);
        if (!again)
            return NULL;
    }
}

COMMAND_HANDLER(cmd_bgsave)
{
    bool schedule = c->argc == 2 && arg_is(c, 1, "SCHEDULE");
    if (c->argc > 2 || (c->argc == 2 && !schedule)) {
        resp_add_error(&c->out, "ERR syntax error");
        return;
    }
    if (!server.durable) {
        resp_add_error(&c->out, "ERR BGSAVE: checkpoints are not available in memory mode "
                                "(start with --dir to use durable mode)");
        return;
    }
    pthread_mutex_lock(&server.bgsave_lock);
    if (atomic_load(&server.bgsave_in_progress)) {
        if (schedule)
            atomic_store(&server.bgsave_scheduled, true);
        pthread_mutex_unlock(&server.bgsave_lock);
        if (schedule)
            resp_add_simple(&c->out, "Background saving scheduled");
        else
            resp_add_error(&c->out, "ERR Background save already in progress");
        return;
    }
    /* A previous thread has finished (it cleared in_progress as its last step). */
    if (server.bgsave_joinable)
        pthread_join(server.bgsave_thread, NULL);
    server.bgsave_joinable = false;
    atomic_store(&server.bgsave_in_progress, true);
    if (pthread_create(&server.bgsave_thread, NULL, server_bgsave_main, NULL) != 0) {
        atomic_store(&server.bgsave_in_progress, false);
        pthread_mutex_unlock(&server.bgsave_lock);
        resp_add_error(&c->out, "ERR cannot start the background checkpoint thread");
        return;
    }
    server.bgsave_joinable = true;
    pthread_mutex_unlock(&server.bgsave_lock);
    log_message(LOG_NOTICE, "Background saving started (checkpoint) by client id=%llu",
                (unsigned long long)c->id);
    resp_add_simple(&c->out, "Background saving started");
}

COMMAND_HANDLER(cmd_lastsave)
{
    shoal_db_stats stats;
    memset(&stats, 0, sizeof(stats));
    shoal_stats(server.db, &stats);
    resp_add_integer(&c->out, server_last_save(&stats));
}

/* WAITAOF numlocal numreplicas timeout: with numlocal 1, the reply [1, 0] leaves once
 * every write logged so far (this client's among them) is on disk, whatever the sync
 * policy (pending_barrier). There are no replicas: numreplicas waits for nothing, and
 * the timeout is not needed, since the log's sync either completes or fails (MISCONF).
 * Inside EXEC it does not wait: it reports 1 only where every acknowledged write is
 * durable already (sync always). */
COMMAND_HANDLER(cmd_waitaof)
{
    long long local, replicas, timeout;
    if (!arg_long_long(c, 1, &local) || !arg_long_long(c, 2, &replicas) ||
        !arg_long_long(c, 3, &timeout))
        return;
    if (local < 0 || replicas < 0) {
        resp_add_error(&c->out, "ERR value is out of range, must be positive");
        return;
    }
    if (timeout < 0) {
        resp_add_error(&c->out, "ERR timeout is negative");
        return;
    }
    if (local > 0 && !server.durable) {
        resp_add_error(&c->out, "ERR WAITAOF cannot be used when numlocal is set but the "
                                "server runs in memory mode");
        return;
    }
    bool synced = server.durable && !strcmp(server.config.sync, "always");
    bool wait = local > 0 && !c->in_exec && !synced;
    uint64_t reply_start = resp_buffer_mark(&c->out);
    resp_add_array(&c->out, 2);
    resp_add_integer(&c->out, synced || wait);
    resp_add_integer(&c->out, 0);
    int result = wait ? pending_barrier(c, reply_start) : 0;
    if (result != 0) {
        resp_buffer_truncate(&c->out, reply_start);
        reply_engine_error(c, result);
    }
}

/* WAIT numreplicas timeout: there are no replicas to wait for, so 0 at once. */
COMMAND_HANDLER(cmd_wait)
{
    long long replicas, timeout;
    if (!arg_long_long(c, 1, &replicas) || !arg_long_long(c, 2, &timeout))
        return;
    if (timeout < 0) {
        resp_add_error(&c->out, "ERR timeout is negative");
        return;
    }
    resp_add_integer(&c->out, 0);
}

COMMAND_HANDLER(cmd_shutdown)
{
    bool save = false, nosave = false;
    for (size_t i = 1; i < c->argc; i++) {
        if (arg_is(c, i, "SAVE"))
            save = true;
        else if (arg_is(c, i, "NOSAVE"))
            nosave = true;
        else if (arg_is(c, i, "NOW") || arg_is(c, i, "FORCE") || arg_is(c, i, "ABORT"))
            continue;
        else {
            resp_add_error(&c->out, "ERR syntax error");
            return;
        }
    }
    if (save && nosave) {
        resp_add_error(&c->out, "ERR syntax error");
        return;
    }
    if (save && !server.durable) {
        resp_add_error(&c->out, "ERR Errors trying to SHUTDOWN: SAVE needs checkpoints, which "
                                "are not available in memory mode");
        return;
    }
    /* Durable mode: shoal_close always takes the closing checkpoint, so NOSAVE cannot skip
     * it; it would change nothing anyway, since every acknowledged write is in the log
     * and the next start replays it. */
    if (nosave && server.durable)
        log_message(LOG_NOTICE, "SHUTDOWN NOSAVE: the engine still takes its closing checkpoint "
                                "(the log holds every acknowledged write either way)");
    log_message(LOG_WARNING, "SHUTDOWN requested by client id=%llu addr=%s user=%s",
                (unsigned long long)c->id, c->address, c->identity.user);
    /* The main thread waits for this signal and stops every loop (main.c). */
    kill(getpid(), SIGTERM);
    c->close_after_reply = true;
}

/* ---------------------------------------------------------------------------------------
 * COMMAND
 * ------------------------------------------------------------------------------------- */

/* Redis's ACL categories, in Redis's order (ACL CAT). Shoal has strings and bitmaps only,
 * and its one permission is the admin right (acl.c), so the categories describe commands;
 * they grant nothing. */
static const char *const acl_categories[] = {
    "keyspace", "read",   "write",       "set",       "sortedset",  "list",        "hash",
    "string",   "bitmap", "hyperloglog", "geo",       "stream",     "pubsub",      "admin",
    "fast",     "slow",   "blocking",    "dangerous", "connection", "transaction", "scripting",
};

static bool command_named(const command_def *cmd, const char *const *names, size_t count)
{
    for (size_t i = 0; i < count; i++)
        if (strcmp(cmd->name, names[i]) == 0)
            return true;
    return false;
}

/* Whether the command is in the category, as Redis 7 files it: from the command's flags and
 * group, and a few names. A container (CONFIG, CLIENT, ...) is @slow only: in Redis its
 * subcommands carry the rest. */
static bool command_in_category(const command_def *cmd, const char *category)
{
    static const char *const keyspace_servers[] = {"dbsize", "flushdb", "flushall"};
    static const char *const not_keyspace[] = {"wait", "waitaof"};
    static const char *const admin_extra[] = {"lastsave", "role"};
    static const char *const dangerous[] = {"flushall", "flushdb",  "keys",
                                            "info",     "lastsave", "role"};
    static const char *const connection_extra[] = {"command", "wait"};
#define NAMED(list) command_named(cmd, list, sizeof(list) / sizeof(list[0]))
    bool container = cmd->flags & CMD_CONTAINER;
    bool admin = !container && ((cmd->flags & CMD_ADMIN) || NAMED(admin_extra));
    if (strcmp(category, "slow") == 0)
        return container || !(cmd->flags & CMD_FAST);
    if (container)
        return false;
    if (strcmp(category, "keyspace") == 0)
        return (strcmp(cmd->group, "generic") == 0 && !NAMED(not_keyspace)) ||
               NAMED(keyspace_servers);
    if (strcmp(category, "read") == 0)
        return cmd->flags & CMD_READONLY;
    if (strcmp(category, "write") == 0)
        return cmd->flags & CMD_WRITE;
    if (strcmp(category, "string") == 0 || strcmp(category, "bitmap") == 0)
        return strcmp(cmd->group, category) == 0;
    if (strcmp(category, "admin") == 0)
        return admin;
    if (strcmp(category, "fast") == 0)
        return cmd->flags & CMD_FAST;
    if (strcmp(category, "dangerous") == 0)
        return admin || NAMED(dangerous);
    if (strcmp(category, "connection") == 0)
        return (strcmp(cmd->group, "connection") == 0) || NAMED(connection_extra);
    if (strcmp(category, "transaction") == 0)
        return strcmp(cmd->group, "transactions") == 0;
    return false;
#undef NAMED
}

static void command_reply_categories(client *c, const command_def *cmd)
{
    const size_t total = sizeof(acl_categories) / sizeof(acl_categories[0]);
    long long count = 0;
    for (size_t i = 0; i < total; i++)
        count += command_in_category(cmd, acl_categories[i]);
    resp_add_set(&c->out, count);
    for (size_t i = 0; i < total; i++) {
        if (!command_in_category(cmd, acl_categories[i]))
            continue;
        char name[32];
        int n = snprintf(name, sizeof(name), "@%s", acl_categories[i]);
        (void)n;
        resp_add_simple(&c->out, name);
    }
}

/* Flags as Redis shows them; a container shows none (its subcommands have them). */
static void command_reply_flags(client *c, const command_def *cmd)
{
    const char *names[8];
    int count = 0;
    if (cmd->flags & CMD_CONTAINER) {
        resp_add_set(&c->out, 0);
        return;
    }
    if (cmd->flags & CMD_WRITE)
        names[count++] = "write";
    if (cmd->flags & CMD_READONLY)
        names[count++] = "readonly";
    if (cmd->flags & CMD_DENYOOM)
        names[count++] = "denyoom";
    if (cmd->flags & CMD_ADMIN)
        names[count++] = "admin";
    if (cmd->flags & CMD_NOAUTH)
        names[count++] = "no_auth";
    if (cmd->flags & CMD_FAST)
        names[count++] = "fast";
    if (cmd->flags & CMD_DENYMULTI)
        names[count++] = "no_multi";
    resp_add_set(&c->out, count);
    for (int i = 0; i < count; i++)
        resp_add_simple(&c->out, names[i]);
}

static void command_reply_info(client *c, const command_def *cmd)
{
    resp_add_array(&c->out, 10);
    resp_add_bulk_cstring(&c->out, cmd->name);
    resp_add_integer(&c->out, cmd->arity);
    command_reply_flags(c, cmd);
    /* A container's keys depend on its subcommand (MEMORY USAGE has one, MEMORY STATS
     * none): 0 0 0 here, as Redis (COMMAND GETKEYS still finds them). */
    bool container = (cmd->flags & CMD_CONTAINER) != 0;
    resp_add_integer(&c->out, container ? 0 : cmd->first_key);
    resp_add_integer(&c->out, container ? 0 : cmd->last_key);
    resp_add_integer(&c->out, container ? 0 : cmd->key_step);
    command_reply_categories(c, cmd);
    resp_add_set(&c->out, 0);
    resp_add_array(&c->out, 0);
    resp_add_array(&c->out, 0);
}

static void command_reply_docs(client *c, const command_def *cmd)
{
    resp_add_bulk_cstring(&c->out, cmd->name);
    resp_add_map(&c->out, 3);
    resp_add_bulk_cstring(&c->out, "summary");
    resp_add_bulk_cstring(&c->out, cmd->summary);
    resp_add_bulk_cstring(&c->out, "since");
    resp_add_bulk_cstring(&c->out, "1.0.0");
    resp_add_bulk_cstring(&c->out, "group");
    resp_add_bulk_cstring(&c->out, cmd->group);
}

static const subcommand_def command_subcommands[] = {
    {"COUNT", 2, false}, {"LIST", -2, false},    {"INFO", -2, false},
    {"DOCS", -2, false}, {"GETKEYS", -4, false}, {"HELP", 2, false},
};

static const char *const command_help[] = {
    "COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "(no subcommand)",
    "    Return details about all commands.",
    "COUNT",
    "    Return the total number of commands in this server.",
    "LIST",
    "    Return a list of all commands in this server.",
    "INFO [<command-name> ...]",
    "    Return details about multiple commands.",
    "    If no command names are given, documentation details for all",
    "    commands are returned.",
    "DOCS [<command-name> ...]",
    "    Return documentation details about multiple commands.",
    "    If no command names are given, documentation details for all",
    "    commands are returned.",
    "GETKEYS <full-command>",
    "    Return the keys from a full command.",
    "HELP",
    "    Prints this help.",
};

/* COMMAND GETKEYS command arg...: the key arguments, from the table's first key, last key
 * and step, as Redis finds them. */
static bool container_names(const char *container, client *c, size_t i);

static void command_reply_getkeys(client *c)
{
    const command_def *cmd = command_lookup(c->argv[2], c->lengths[2]);
    /* A container's subcommand is part of the command Redis looks up. */
    if (cmd == NULL || (c->argc > 3 && !container_names(cmd->name, c, 3))) {
        resp_add_error(&c->out, "ERR Invalid command specified");
        return;
    }
    /* OBJECT and MEMORY name their key after a subcommand, which Redis looks up first. */
    bool object = cmd->handler == cmd_object, memory = cmd->handler == cmd_memory;
    if ((object || memory) && c->argc > 3) {
        bool keyed = object ? arg_is(c, 3, "ENCODING") || arg_is(c, 3, "REFCOUNT") ||
                                  arg_is(c, 3, "FREQ") || arg_is(c, 3, "IDLETIME")
                            : arg_is(c, 3, "USAGE");
        if (!keyed && !arg_is(c, 3, "HELP")) {
            resp_add_error(&c->out, "ERR Invalid command specified");
            return;
        }
        if (!keyed) {
            resp_add_error(&c->out, "ERR The command has no key arguments");
            return;
        }
    }
    if (cmd->first_key == 0) {
        resp_add_error(&c->out, "ERR The command has no key arguments");
        return;
    }
    long long argc = (long long)c->argc - 2; /* the command's own argc */
    if ((cmd->arity > 0 && cmd->arity != argc) || argc < -cmd->arity) {
        resp_add_error(&c->out, "ERR Invalid number of arguments specified for command");
        return;
    }
    long long last = cmd->last_key < 0 ? argc + cmd->last_key : cmd->last_key;
    long long count = 0;
    for (long long i = cmd->first_key; i <= last && i < argc; i += cmd->key_step)
        count++;
    resp_add_array(&c->out, count);
    for (long long i = cmd->first_key; i <= last && i < argc; i += cmd->key_step)
        resp_add_bulk(&c->out, c->argv[2 + i], c->lengths[2 + i]);
}

COMMAND_HANDLER(cmd_command)
{
    size_t total = command_count();
    if (c->argc == 1) {
        resp_add_array(&c->out, (long long)total);
        for (size_t i = 0; i < total; i++)
            command_reply_info(c, command_at(i));
    } else if (arg_is(c, 1, "COUNT")) {
        resp_add_integer(&c->out, (long long)total);
    } else if (arg_is(c, 1, "LIST")) {
        resp_add_array(&c->out, (long long)total);
        for (size_t i = 0; i < total; i++)
            resp_add_bulk_cstring(&c->out, command_at(i)->name);
    } else if (arg_is(c, 1, "INFO")) {
        if (c->argc == 2) {
            resp_add_array(&c->out, (long long)total);
            for (size_t i = 0; i < total; i++)
                command_reply_info(c, command_at(i));
            return;
        }
        resp_add_array(&c->out, (long long)c->argc - 2);
        for (size_t i = 2; i < c->argc; i++) {
            const command_def *cmd = command_lookup(c->argv[i], c->lengths[i]);
            if (cmd == NULL)
                resp_add_null(&c->out); /* Redis's addReplyNull: $-1, not *-1 */
            else
                command_reply_info(c, cmd);
        }
    } else if (arg_is(c, 1, "GETKEYS")) {
        command_reply_getkeys(c);
    } else if (arg_is(c, 1, "HELP")) {
        REPLY_HELP(c, command_help);
    } else if (arg_is(c, 1, "DOCS")) {
        if (c->argc == 2) {
            resp_add_map(&c->out, (long long)total);
            for (size_t i = 0; i < total; i++)
                command_reply_docs(c, command_at(i));
            return;
        }
        long long found = 0;
        for (size_t i = 2; i < c->argc; i++)
            found += command_lookup(c->argv[i], c->lengths[i]) != NULL;
        resp_add_map(&c->out, found);
        for (size_t i = 2; i < c->argc; i++) {
            const command_def *cmd = command_lookup(c->argv[i], c->lengths[i]);
            if (cmd != NULL)
                command_reply_docs(c, cmd);
        }
    }
}

/* ---------------------------------------------------------------------------------------
 * SLOWLOG, ROLE
 * ------------------------------------------------------------------------------------- */

static const subcommand_def slowlog_subcommands[] = {
    {"GET", -2, false},
    {"LEN", 2, false},
    {"RESET", 2, false},
    {"HELP", 2, false},
};

COMMAND_HANDLER(cmd_slowlog)
{
    if (arg_is(c, 1, "GET")) {
        long long count = 10;
        if (c->argc > 3) { /* Redis's older wording, for this one case */
            resp_add_errorf(&c->out, "ERR unknown subcommand or wrong number of arguments for "
                                     "'%.*s'. Try SLOWLOG HELP.", (int)c->lengths[1], c->argv[1]);
            return;
        }
        /* Redis answers a count that is not a number with the same error. */
        if (c->argc == 3 && !text_to_long_long(c->argv[2], c->lengths[2], &count))
            count = -2;
        if (count < -1) {
            resp_add_error(&c->out, "ERR count should be greater than or equal to -1");
            return;
        }
        slowlog_reply_get(&c->out, count);
    } else if (arg_is(c, 1, "LEN")) {
        resp_add_integer(&c->out, (long long)slowlog_length());
    } else if (arg_is(c, 1, "RESET")) {
        slowlog_reset();
        resp_add_ok(&c->out);
    } else {
        static const char *const help[] = {
            "SLOWLOG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "GET [<count>]",
            "    The newest <count> entries (10 by default, -1 for all), newest first, each:",
            "    id, Unix time, microseconds, arguments, client address, client name.",
            "LEN",
            "    How many entries the slow log holds.",
            "RESET",
            "    Empties the slow log.",
            "HELP",
            "    Prints this help.",
        };
        REPLY_HELP(c, help);
    }
}

/* MONITOR: from now on the client receives a line per command run (monitor.c). */
COMMAND_HANDLER(cmd_monitor)
{
    resp_add_ok(&c->out);
    monitor_add(c);
}

/* No replication: every server is a master with no replicas at offset 0. */
COMMAND_HANDLER(cmd_role)
{
    resp_add_array(&c->out, 3);
    resp_add_bulk_cstring(&c->out, "master");
    resp_add_integer(&c->out, 0);
    resp_add_array(&c->out, 0);
}

/* ---------------------------------------------------------------------------------------
 * ACL
 * ------------------------------------------------------------------------------------- */

static const subcommand_def acl_subcommands[] = {
    {"WHOAMI", 2, false},   {"LIST", 2, true},     {"USERS", 2, true},   {"SETUSER", -3, true},
    {"GETUSER", 3, true},   {"DELUSER", -3, true}, {"DRYRUN", -4, true}, {"CAT", -2, false},
    {"GENPASS", -2, false}, {"LOG", -2, true},     {"HELP", 2, false},
};

static const char *const acl_help[] = {
    "ACL <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CAT [<category>]",
    "    List all commands that belong to <category>, or all command categories",
    "    when no category is specified.",
    "DELUSER <username> [<username> ...]",
    "    Delete a list of users.",
    "DRYRUN <username> <command> [<arg> ...]",
    "    Returns whether the user can execute the given command without executing the command.",
    "GETUSER <username>",
    "    Get the user's details.",
    "GENPASS [<bits>]",
    "    Generate a secure 256-bit user password. The optional `bits` argument can",
    "    be used to specify a different size.",
    "LIST",
    "    Show users details in config file format.",
    "LOG [<count> | RESET]",
    "    Show the ACL log entries.",
    "SETUSER <username> <attribute> [<attribute> ...]",
    "    Create or modify a user with the specified attributes (docs/OPERATIONS.md).",
    "USERS",
    "    List all the registered usernames.",
    "WHOAMI",
    "    Return the current connection username.",
    "HELP",
    "    Prints this help.",
};

/* ACL CAT [category]: the categories, or the commands in one (top-level names: Shoal's
 * subcommands have no categories of their own). */
static void acl_command_cat(client *c)
{
    const size_t total = sizeof(acl_categories) / sizeof(acl_categories[0]);
    if (c->argc == 2) {
        resp_add_array(&c->out, (long long)total);
        for (size_t i = 0; i < total; i++)
            resp_add_bulk_cstring(&c->out, acl_categories[i]);
        return;
    }
    const char *category = NULL;
    for (size_t i = 0; i < total && category == NULL; i++)
        if (arg_is(c, 2, acl_categories[i]))
            category = acl_categories[i];
    if (category == NULL) {
        int shown = c->lengths[2] < 128 ? (int)c->lengths[2] : 128;
        resp_add_errorf(&c->out, "ERR Unknown category '%.*s'", shown, c->argv[2]);
        return;
    }
    long long count = 0;
    for (size_t i = 0; i < command_count(); i++)
        count += command_in_category(command_at(i), category);
    resp_add_array(&c->out, count);
    for (size_t i = 0; i < command_count(); i++)
        if (command_in_category(command_at(i), category))
            resp_add_bulk_cstring(&c->out, command_at(i)->name);
}

static const subcommand_def *container_subcommand(const char *container, client *c, size_t i);

/* ACL DRYRUN user command [arg...]: whether the user may run the request, by the
 * dispatcher's own rule (command_admin_only), without running it; Redis's replies. */
static void acl_command_dryrun(client *c)
{
    acl_identity user;
    if (!acl_user_identity(c->argv[2], c->lengths[2], &user)) {
        resp_add_errorf(&c->out, "ERR User '%.*s' not found", (int)c->lengths[2], c->argv[2]);
        return;
    }
    const command_def *cmd = command_lookup(c->argv[3], c->lengths[3]);
    size_t argc = c->argc - 3;
    const subcommand_def *sub = NULL;
    if (cmd != NULL && argc > 1) {
        sub = container_subcommand(cmd->name, c, 4);
        if (sub == NULL && !container_names(cmd->name, c, 4))
            cmd = NULL; /* an unknown subcommand: Redis finds no command */
    }
    if (cmd == NULL) {
        resp_add_errorf(&c->out, "ERR Command '%.*s' not found", (int)c->lengths[3], c->argv[3]);
        return;
    }
    int arity = sub != NULL ? sub->arity : cmd->arity;
    if (arity > 0 ? argc != (size_t)arity : argc < (size_t)-arity) {
        char full[64], name[64];
        snprintf(full, sizeof(full), "%s%s%s", cmd->name, sub ? "|" : "", sub ? sub->name : "");
        command_case(name, sizeof(name), full, false);
        resp_add_errorf(&c->out, "ERR wrong number of arguments for '%s' command", name);
        return;
    }
    char object[64];
    if (!user.admin &&
        command_admin_only(cmd, c->argv + 3, c->lengths + 3, argc, object, sizeof(object))) {
        char text[128];
        snprintf(text, sizeof(text), "This user has no permissions to run the '%s' command",
                 object);
        resp_add_bulk_cstring(&c->out, text);
        return;
    }
    resp_add_ok(&c->out);
}

/* ACL GENPASS [bits]: that many random bits (256 by default) from OpenSSL's generator, in
 * hex, rounded up to a whole digit, as Redis gives them. */
static void acl_command_genpass(client *c)
{
    long long bits = 256;
    if (c->argc == 3 && !arg_long_long(c, 2, &bits))
        return;
    if (bits <= 0 || bits > 4096) {
        resp_add_error(&c->out, "ERR ACL GENPASS argument must be the number of bits for the "
                                "output password, a positive number up to 4096");
        return;
    }
    unsigned char random[512];
    char hex[1025];
    size_t digits = (size_t)(bits + 3) / 4;
    if (RAND_bytes(random, (int)((digits + 1) / 2)) != 1) {
        resp_add_error(&c->out, "ERR the random number generator failed");
        return;
    }
    static const char digit[] = "0123456789abcdef";
    for (size_t i = 0; i < digits; i++)
        hex[i] = digit[(random[i / 2] >> (i % 2 ? 0 : 4)) & 0xf];
    resp_add_bulk(&c->out, hex, digits);
}

/* ACL SETUSER and DELUSER run on the catalog worker (binding a tenant may write the
 * MANIFEST; DELUSER waits for a SETUSER under way) and the request runs again to answer
 * (catalog.c). Inside EXEC that would run EXEC again around a change already made, so
 * they are refused there. Returns true with the worker's *result (>= 0) once it is done;
 * false when the request was suspended or answered (refused, or the worker's error). */
static bool acl_catalog_step(client *c, catalog_kind kind, const char *name, int *result)
{
    if (c->in_exec) {
        resp_add_errorf(&c->out, "ERR ACL %s inside MULTI is not allowed", name);
        return false;
    }
    const char *error;
    if (!catalog_result(c, kind, c->db, result, &error)) {
        catalog_request(c, kind);
        return false;
    }
    if (*result < 0) {
        resp_add_error(&c->out, error);
        return false;
    }
    return true;
}

/* ACL DELUSER: the catalog worker removes the users (serialized with ACL SETUSER, which
 * may wait for the disk), then this loop disconnects every client authenticated as one of
 * them, as Redis does; the caller, if it is one, gets its reply first. */
static void acl_command_deluser(client *c)
{
    int result;
    if (!acl_catalog_step(c, CATALOG_DELUSER, "DELUSER", &result))
        return;
    bool self = false;
    for (size_t i = 2; i < c->argc; i++) {
        char user[ACL_NAME_MAX];
        if (c->lengths[i] >= sizeof(user))
            continue; /* no user has so long a name */
        memcpy(user, c->argv[i], c->lengths[i]);
        user[c->lengths[i]] = '\0';
        self |= strcmp(user, c->identity.user) == 0;
        network_kill_matching(NULL, user, 0, c);
    }
    resp_add_integer(&c->out, result);
    if (self)
        c->close_after_reply = true;
}

COMMAND_HANDLER(cmd_acl)
{
    bool cat = arg_is(c, 1, "CAT"), genpass = arg_is(c, 1, "GENPASS");
    if ((cat || genpass || arg_is(c, 1, "LOG")) && c->argc > 3) { /* Redis's older wording */
        resp_add_errorf(&c->out,
                        "ERR unknown subcommand or wrong number of arguments for "
                        "'%.*s'. Try ACL HELP.",
                        (int)c->lengths[1], c->argv[1]);
        return;
    }
    /* Who may run which was decided before (acl_subcommands' admin flags). */
    if (arg_is(c, 1, "WHOAMI")) {
        resp_add_bulk_cstring(&c->out, c->identity.user);
        return;
    } else if (cat) {
        acl_command_cat(c);
        return;
    } else if (genpass) {
        acl_command_genpass(c);
        return;
    } else if (arg_is(c, 1, "HELP")) {
        REPLY_HELP(c, acl_help);
        return;
    } else if (arg_is(c, 1, "DRYRUN")) {
        acl_command_dryrun(c);
        return;
    }
    if (arg_is(c, 1, "LOG")) {
        long long count = 10;
        if (c->argc == 3 && arg_is(c, 2, "RESET")) {
            acllog_reset();
            resp_add_ok(&c->out);
            return;
        }
        if (c->argc == 3 && !arg_long_long(c, 2, &count))
            return;
        acllog_reply(&c->out, count);
        return;
    }
    if (arg_is(c, 1, "LIST")) {
        acl_reply_list(&c->out);
    } else if (arg_is(c, 1, "USERS")) {
        acl_reply_users(&c->out);
    } else if (arg_is(c, 1, "GETUSER")) {
        if (!acl_reply_getuser(&c->out, c->argv[2], c->lengths[2]))
            resp_add_null(&c->out);
    } else if (arg_is(c, 1, "DELUSER")) {
        acl_command_deluser(c);
    } else if (arg_is(c, 1, "SETUSER")) {
        int result;
        if (acl_catalog_step(c, CATALOG_SETUSER, "SETUSER", &result))
            resp_add_ok(&c->out);
    }
}

/* ---------------------------------------------------------------------------------------
 * Subcommands, checked for every container before it runs
 * ------------------------------------------------------------------------------------- */

typedef struct container_def {
    const char *container;
    const subcommand_def *table;
    size_t count;
} container_def;

static const container_def containers[] = {
    {"client", SUBCOMMANDS(client_subcommands)},   {"config", SUBCOMMANDS(config_subcommands)},
    {"command", SUBCOMMANDS(command_subcommands)}, {"slowlog", SUBCOMMANDS(slowlog_subcommands)},
    {"acl", SUBCOMMANDS(acl_subcommands)},
};

static const container_def *container_find(const char *container)
{
    for (size_t i = 0; i < sizeof(containers) / sizeof(containers[0]); i++)
        if (strcmp(containers[i].container, container) == 0)
            return &containers[i];
    return NULL;
}

/* The entry of the container's table that arg[0..length) names, or NULL. */
static const subcommand_def *container_entry(const container_def *found, const char *arg,
                                             size_t length)
{
    for (size_t s = 0; found != NULL && s < found->count; s++)
        if (strlen(found->table[s].name) == length &&
            strncasecmp(found->table[s].name, arg, length) == 0)
            return &found->table[s];
    return NULL;
}

static const subcommand_def *container_subcommand(const char *container, client *c, size_t i)
{
    return container_entry(container_find(container), c->argv[i], c->lengths[i]);
}

static bool container_names(const char *container, client *c, size_t i)
{
    return container_find(container) == NULL || container_subcommand(container, c, i) != NULL;
}

bool container_subcommand_admin(const char *container, char **argv, const size_t *lengths,
                                size_t argc, size_t first, char *object, size_t object_size)
{
    if (argc <= first)
        return false;
    const subcommand_def *sub =
        container_entry(container_find(container), argv[first], lengths[first]);
    if (sub == NULL || !sub->admin)
        return false;
    snprintf(object, object_size, "%s|%s", container, sub->name);
    return true;
}

bool container_subcommand_ok(client *c, const char *container)
{
    const container_def *found = container_find(container);
    if (found == NULL || c->argc < 2)
        return true; /* COMMAND alone; the others' arity wants a subcommand */
    return arg_subcommand(c, container, found->table, found->count);
}
