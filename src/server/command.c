/*
 * command.c -- the command table and the dispatcher: lookup, arity, authentication,
 * permissions, MULTI queueing, optimistic retries, statistics; and MULTI/EXEC/WATCH.
 *
 * Purpose
 * -------
 * The table is data, as in Redis: one row per command (name, handler, arity, flags,
 * first/last/step key positions, documentation group, summary). Adding a command is one
 * row in COMMAND_TABLE and one handler in a cmd_*.c file. Everything a command needs
 * around its handler (errors for unknown commands and wrong arity, NOAUTH, NOPERM,
 * QUEUED, retries after conflicts, statistics) happens here, once.
 *
 * Retries
 * -------
 * A command flagged CMD_WRITE or CMD_TXN runs as an attempt of the client's store_txn
 * (store.c): reads at a snapshot recording key seqs, writes into a batch, commit with
 * the reads as conditions. When the commit reports SHOAL_ECONFLICT (another client wrote
 * a key this one read) or a namespace was dropped under it (FLUSHDB elsewhere), the
 * replies of the attempt are truncated from the output buffer and the handler runs
 * again. Handlers therefore never write anything but replies and the txn's batch.
 *
 * EXEC runs the queued commands as ONE attempt in multi mode: all their writes go into
 * one batch, committed atomically with one seq, conditioned on every key read by any of
 * them and on the WATCHed keys' seqs at WATCH time. A change to a watched key aborts
 * (null reply); a conflict on a read key reruns the whole transaction.
 *
 * Catalog changes
 * ---------------
 * A handler that needs one (client_namespace finding no namespace yet, FLUSHDB,
 * FLUSHALL, ACL SETUSER) asks catalog.c for it and returns without a reply; the
 * dispatcher discards the attempt and suspends the client, and the request runs again
 * once the catalog worker is done. Its statistics are counted once, for the run that
 * completes, with the latency since the first. EXEC gives up its attempt the same way
 * when a queued command needs a new namespace, keeping its queue, and runs again whole.
 *
 * Invariants
 * ----------
 * 1. A handler's replies reach the client only from its committed attempt.
 * 2. Commands queued after MULTI are checked (existence, arity, permission) at queue time;
 *    one refused there makes EXEC fail with EXECABORT, as in Redis.
 * 3. Retries are bounded (COMMAND_MAX_ATTEMPTS); past that the client gets an error and
 *    nothing of the command is applied.
 *
 * Testing
 * -------
 * test_server.py checks Redis's exact error texts, MULTI/EXEC/DISCARD/WATCH semantics,
 * and that concurrent INCR and WATCH-based increments from many connections lose nothing.
 */
#include "server.h"

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "catalog.h"
#include "commands.h"
#include "acllog.h"
#include "monitor.h"
#include "pending.h"
#include "slowlog.h"
#include "text.h"

#define COMMAND_MAX_ATTEMPTS 100000

#define W CMD_WRITE
#define R CMD_READONLY
#define F CMD_FAST
#define A CMD_ADMIN
#define N CMD_NOAUTH
#define M CMD_NOMULTI
#define T CMD_TXN
#define D CMD_DENYMULTI
#define S CMD_CONTAINER
#define U CMD_SUBCOMMANDS
#define O CMD_DENYOOM

/* name, handler, arity, flags, first key, last key, step, group, summary */
#define COMMAND_TABLE(X)                                                                           \
    X("ping", cmd_ping, -1, F, 0, 0, 0, "connection", "Returns the server's liveliness")           \
    X("echo", cmd_echo, 2, F, 0, 0, 0, "connection", "Returns the given string")                   \
    X("hello", cmd_hello, -1, N | F, 0, 0, 0, "connection", "Handshakes: protocol, auth")          \
    X("auth", cmd_auth, -2, N | F, 0, 0, 0, "connection", "Authenticates the connection")          \
    X("quit", cmd_quit, -1, N | F | M, 0, 0, 0, "connection", "Closes the connection")             \
    X("reset", cmd_reset, 1, N | F | M, 0, 0, 0, "connection", "Resets the connection")            \
    X("select", cmd_select, 2, F, 0, 0, 0, "connection", "Changes the logical database")           \
    X("client", cmd_client, -2, S | U, 0, 0, 0, "connection", "Client connection commands")        \
    X("get", cmd_get, 2, R | F, 1, 1, 1, "string", "Returns the value of a key")                   \
    X("set", cmd_set, -3, W | O, 1, 1, 1, "string", "Sets a key's value, options NX XX GET EX")    \
    X("setnx", cmd_setnx, 3, W | O | F, 1, 1, 1, "string", "Sets a key only if it is absent")      \
    X("setex", cmd_setex, 4, W | O, 1, 1, 1, "string", "Sets a value and its expiry (seconds)")    \
    X("psetex", cmd_psetex, 4, W | O, 1, 1, 1, "string", "Sets a value and its expiry (ms)")       \
    X("getset", cmd_getset, 3, W | O | F, 1, 1, 1, "string", "Sets a value, returns the old")      \
    X("getdel", cmd_getdel, 2, W | F, 1, 1, 1, "string", "Returns a value, deletes the key")       \
    X("getex", cmd_getex, -2, W | F, 1, 1, 1, "string", "Returns a value, changes expiry")         \
    X("mget", cmd_mget, -2, R | F, 1, -1, 1, "string", "Returns the values of keys")               \
    X("mset", cmd_mset, -3, W | O, 1, -1, 2, "string", "Sets several keys atomically")             \
    X("msetnx", cmd_msetnx, -3, W | O, 1, -1, 2, "string", "Sets keys only if none exists")        \
    X("append", cmd_append, 3, W | O | F, 1, 1, 1, "string", "Appends to a value")                 \
    X("strlen", cmd_strlen, 2, R | F, 1, 1, 1, "string", "Returns a value's length")               \
    X("getrange", cmd_getrange, 4, R, 1, 1, 1, "string", "Returns a substring")                    \
    X("substr", cmd_getrange, 4, R, 1, 1, 1, "string", "Returns a substring (old name)")           \
    X("setrange", cmd_setrange, 4, W | O, 1, 1, 1, "string", "Overwrites part of a value")         \
    X("lcs", cmd_lcs, -3, R, 1, 2, 1, "string", "Longest common subsequence of two keys")          \
    X("setbit", cmd_setbit, 4, W | O, 1, 1, 1, "bitmap", "Sets or clears one bit")                 \
    X("getbit", cmd_getbit, 3, R | F, 1, 1, 1, "bitmap", "Returns one bit")                        \
    X("bitcount", cmd_bitcount, -2, R, 1, 1, 1, "bitmap", "Counts set bits in a range")            \
    X("bitpos", cmd_bitpos, -3, R, 1, 1, 1, "bitmap", "Finds the first 0 or 1 bit")                \
    X("bitop", cmd_bitop, -4, W | O, 2, -1, 1, "bitmap", "Combines strings bit by bit")            \
    X("incr", cmd_incr, 2, W | O | F, 1, 1, 1, "string", "Adds one to an integer value")           \
    X("decr", cmd_decr, 2, W | O | F, 1, 1, 1, "string", "Subtracts one")                          \
    X("incrby", cmd_incrby, 3, W | O | F, 1, 1, 1, "string", "Adds an integer")                    \
    X("decrby", cmd_decrby, 3, W | O | F, 1, 1, 1, "string", "Subtracts an integer")               \
    X("incrbyfloat", cmd_incrbyfloat, 3, W | O | F, 1, 1, 1, "string", "Adds a float")             \
    X("del", cmd_del, -2, W, 1, -1, 1, "generic", "Deletes keys")                                  \
    X("unlink", cmd_del, -2, W | F, 1, -1, 1, "generic", "Deletes keys")                           \
    X("exists", cmd_exists, -2, R | F, 1, -1, 1, "generic", "Counts existing keys")                \
    X("type", cmd_type, 2, R | F, 1, 1, 1, "generic", "Returns a key's type")                      \
    X("object", cmd_object, -2, R | S, 2, 2, 1, "generic", "Inspects a key's value")               \
    X("memory", cmd_memory, -2, R | S, 2, 2, 1, "server", "Reports the bytes a key takes")         \
    X("rename", cmd_rename, 3, W, 1, 2, 1, "generic", "Renames a key")                             \
    X("copy", cmd_copy, -3, W | O, 1, 2, 1, "generic", "Copies a key, to another db if asked")     \
    X("move", cmd_move, 3, W | F, 1, 1, 1, "generic", "Moves a key to another db")                 \
    X("renamenx", cmd_renamenx, 3, W | F, 1, 2, 1, "generic", "Renames if the new is free")        \
    X("keys", cmd_keys, 2, R, 0, 0, 0, "generic", "Returns keys matching a pattern")               \
    X("scan", cmd_scan, -2, R, 0, 0, 0, "generic", "Iterates over keys")                           \
    X("randomkey", cmd_randomkey, 1, R, 0, 0, 0, "generic", "Returns a random key")                \
    X("dbsize", cmd_dbsize, 1, R | F, 0, 0, 0, "server", "Counts keys")                            \
    X("flushdb", cmd_flushdb, -1, W, 0, 0, 0, "server", "Deletes every key of the db")             \
    X("flushall", cmd_flushall, -1, W, 0, 0, 0, "server", "Deletes every key of the user")         \
    X("touch", cmd_touch, -2, R | F, 1, -1, 1, "generic", "Counts existing keys")                  \
    X("expire", cmd_expire, -3, W | F, 1, 1, 1, "generic", "Sets expiry in seconds")               \
    X("pexpire", cmd_pexpire, -3, W | F, 1, 1, 1, "generic", "Sets expiry in ms")                  \
    X("expireat", cmd_expireat, -3, W | F, 1, 1, 1, "generic", "Sets expiry time (s)")             \
    X("pexpireat", cmd_pexpireat, -3, W | F, 1, 1, 1, "generic", "Sets expiry time (ms)")          \
    X("ttl", cmd_ttl, 2, R | F, 1, 1, 1, "generic", "Returns time to live in seconds")             \
    X("pttl", cmd_pttl, 2, R | F, 1, 1, 1, "generic", "Returns time to live in ms")                \
    X("expiretime", cmd_expiretime, 2, R | F, 1, 1, 1, "generic", "Returns expiry (s)")            \
    X("pexpiretime", cmd_pexpiretime, 2, R | F, 1, 1, 1, "generic", "Returns expiry (ms)")         \
    X("persist", cmd_persist, 2, W | F, 1, 1, 1, "generic", "Removes the expiry")                  \
    X("multi", cmd_multi, 1, F | M, 0, 0, 0, "transactions", "Starts a transaction")               \
    X("exec", cmd_exec, 1, M, 0, 0, 0, "transactions", "Runs the queued commands")                 \
    X("discard", cmd_discard, 1, F | M, 0, 0, 0, "transactions", "Drops the queue")                \
    X("watch", cmd_watch, -2, F | M | D, 1, -1, 1, "transactions", "Watches keys")                 \
    X("unwatch", cmd_unwatch, 1, F, 0, 0, 0, "transactions", "Forgets watched keys")               \
    X("info", cmd_info, -1, 0, 0, 0, 0, "server", "Returns information and statistics")            \
    X("config", cmd_config, -2, S | U, 0, 0, 0, "server", "CONFIG GET, SET, RESETSTAT")            \
    X("save", cmd_save, 1, A, 0, 0, 0, "server", "Takes a checkpoint")                             \
    X("bgsave", cmd_bgsave, -1, A, 0, 0, 0, "server", "Takes a checkpoint in background")          \
    X("lastsave", cmd_lastsave, 1, F, 0, 0, 0, "server", "Time of the last checkpoint")            \
    X("waitaof", cmd_waitaof, 4, 0, 0, 0, 0, "generic", "Waits until writes are on disk")          \
    X("wait", cmd_wait, 3, 0, 0, 0, 0, "generic", "Waits for replicas: there are none")            \
    X("shutdown", cmd_shutdown, -1, A | M, 0, 0, 0, "server", "Stops the server")                  \
    X("command", cmd_command, -1, U, 0, 0, 0, "server", "Describes commands")                      \
    X("time", cmd_time, 1, F, 0, 0, 0, "server", "Returns the server time")                        \
    X("acl", cmd_acl, -2, S | U, 0, 0, 0, "server", "Users: WHOAMI LIST USERS GETUSER SETUSER")    \
    X("monitor", cmd_monitor, 1, A | D, 0, 0, 0, "server", "Streams every command run")            \
    X("slowlog", cmd_slowlog, -2, A | S | U, 0, 0, 0, "server", "The slow log: GET LEN RESET")     \
    X("role", cmd_role, 1, F, 0, 0, 0, "server", "Replication role: always master")                \
    X("debug", cmd_debug, -2, A, 0, 0, 0, "server", "Fault injection for tests")

#define COMMAND_ROW(name, handler, arity, flags, first, last, step, group, summary)         \
    {name, handler, arity, flags, first, last, step, group, summary, 0},
static command_def command_table[] = {COMMAND_TABLE(COMMAND_ROW)};
#undef COMMAND_ROW

#define COMMAND_TOTAL (sizeof(command_table) / sizeof(command_table[0]))

/* The rows by name: an open-addressed table of COMMAND_SLOTS, hashed over the lowercase
 * name (FNV-1a), probed linearly. Filled once at start; the binary search it replaced made
 * seven strcmp calls per request, about 1% of the loop's time under pipelined SETs. */
#define COMMAND_SLOTS 512u
_Static_assert(COMMAND_SLOTS >= 2 * COMMAND_TOTAL, "the name table stays at most half full");
static const command_def *command_slots[COMMAND_SLOTS];
static uint8_t command_slot_lengths[COMMAND_SLOTS];

static uint32_t command_hash_step(uint32_t hash, char lower)
{
    return (hash ^ (uint8_t)lower) * 16777619u;
}

#define COMMAND_HASH_SEED 2166136261u

void command_table_init(void)
{
    memset(command_slots, 0, sizeof(command_slots));
    memset(command_slot_lengths, 0, sizeof(command_slot_lengths));
    for (size_t i = 0; i < COMMAND_TOTAL; i++) {
        command_def *cmd = &command_table[i];
        cmd->index = (uint32_t)i;
        uint32_t hash = COMMAND_HASH_SEED;
        for (const char *at = cmd->name; *at != '\0'; at++)
            hash = command_hash_step(hash, *at);
        uint32_t slot = hash & (COMMAND_SLOTS - 1);
        while (command_slots[slot] != NULL)
            slot = (slot + 1) & (COMMAND_SLOTS - 1);
        command_slots[slot] = cmd;
        command_slot_lengths[slot] = (uint8_t)strlen(cmd->name);
    }
}

size_t command_count(void)
{
    return COMMAND_TOTAL;
}

const command_def *command_at(size_t index)
{
    return index < COMMAND_TOTAL ? &command_table[index] : NULL;
}

const command_def *command_lookup(const char *name, size_t length)
{
    if (length == 0 || length > 32)
        return NULL;
    char lower[32];
    uint32_t hash = COMMAND_HASH_SEED;
    for (size_t i = 0; i < length; i++) {
        lower[i] = (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] + 32 : name[i]);
        hash = command_hash_step(hash, lower[i]);
    }
    for (uint32_t slot = hash & (COMMAND_SLOTS - 1); command_slots[slot] != NULL;
         slot = (slot + 1) & (COMMAND_SLOTS - 1)) {
        if (command_slot_lengths[slot] == length &&
            memcmp(command_slots[slot]->name, lower, length) == 0)
            return command_slots[slot];
    }
    return NULL;
}

/* ---------------------------------------------------------------------------------------
 * Statistics
 * ------------------------------------------------------------------------------------- */

/* Log-linear buckets: 8 per power of two of nanoseconds, so a percentile read from the
 * histogram is within about 9% of the true value. */
unsigned stats_bucket(uint64_t nanoseconds)
{
    if (nanoseconds < 8)
        return (unsigned)nanoseconds;
    unsigned power = 63u - (unsigned)__builtin_clzll(nanoseconds);
    unsigned fraction = (unsigned)((nanoseconds >> (power - 3)) & 7u);
    unsigned bucket = (power - 2) * 8 + fraction;
    return bucket < STATS_BUCKETS ? bucket : STATS_BUCKETS - 1;
}

uint64_t stats_bucket_upper_ns(unsigned bucket)
{
    if (bucket < 8)
        return bucket + 1;
    unsigned power = bucket / 8 + 2;
    uint64_t fraction = bucket % 8;
    return ((8 + fraction + 1) << (power - 3));
}

static void command_record(client *c, const command_def *cmd, uint64_t elapsed_ns, bool failed,
                           bool rejected)
{
    command_stats *s = &c->loop->stats[cmd->index];
    /* Only this loop writes these counters: relaxed increments never contend. */
    if (rejected) {
        atomic_fetch_add_explicit(&s->rejected, 1, memory_order_relaxed);
        return;
    }
    atomic_fetch_add_explicit(&s->calls, 1, memory_order_relaxed);
    /* Summed in ns: a call's own microseconds, rounded down, are 0 for most commands. */
    atomic_fetch_add_explicit(&s->nanoseconds, elapsed_ns, memory_order_relaxed);
    if (failed)
        atomic_fetch_add_explicit(&s->failed, 1, memory_order_relaxed);
    if (atomic_load_explicit(&server.config.latency_tracking, memory_order_relaxed))
        atomic_fetch_add_explicit(&s->buckets[stats_bucket(elapsed_ns)], 1, memory_order_relaxed);
}

/* ---------------------------------------------------------------------------------------
 * Errors and namespaces
 * ------------------------------------------------------------------------------------- */

void reply_engine_error(client *c, int error)
{
    switch (error) {
    case SHOAL_ECONFLICT:
    case SHOAL_EDROPPED:
        /* Not the client's business: the dispatcher runs the command again. */
        c->retry = true;
        c->ns = NULL;
        store_txn_abort(&c->txn);
        return;
    case SHOAL_EMEMLIMIT:
        resp_add_error(&c->out, "OOM command not allowed when used memory > 'maxmemory'.");
        return;
    case SHOAL_EQUOTA:
        resp_add_errorf(&c->out, "OOM command not allowed: tenant '%s' is over its quota "
                                 "(max-keys or max-bytes)", c->identity.tenant_name);
        return;
    case SHOAL_ERATE:
        resp_add_errorf(&c->out, "ERR tenant '%s' is over its operation rate (max-ops), "
                                 "retry later", c->identity.tenant_name);
        return;
    case SHOAL_ETOOBIG:
        resp_add_error(&c->out, "ERR string exceeds maximum allowed size (key or value too large)");
        return;
    case SHOAL_ENOMEM:
        resp_add_error(&c->out, "OOM command not allowed: the server is out of memory");
        return;
    case SHOAL_EREADONLY:
    case SHOAL_EFSYNC:
    case SHOAL_EIO:
    case SHOAL_ENOSPC: {
        /* Redis answers writes with MISCONF once it cannot write its files; the engine is
         * read-only for writes after a failed log write or sync (invariant 8). */
        shoal_db_stats stats;
        int cause = error;
        if (shoal_stats(server.db, &stats) == 0 && stats.read_only_cause != 0)
            cause = stats.read_only_cause;
        resp_add_errorf(&c->out, "MISCONF Errors writing to the log (%s): writes are refused "
                                 "until the server is restarted; reads still work",
                        shoal_strerror(cause));
        return;
    }
    case SHOAL_ENOSLOT:
        resp_add_error(&c->out, "BUSY too many open snapshots, retry later");
        return;
    default:
        resp_add_errorf(&c->out, "ERR %s", shoal_strerror(error));
        return;
    }
}

shoal_ns *client_namespace_of(client *c, int db)
{
    shoal_ns *ns;
    if (store_namespace_lookup(c->identity.tenant, db, &ns) == 0)
        return ns;
    /* Not created yet (or being flushed): creating it may write the MANIFEST, so the
     * catalog worker does it and the request runs again when it is done (catalog.c). A
     * creation that failed for this request is answered as the engine's error. */
    int failure = catalog_namespace_failure(c, db);
    if (failure != 0)
        reply_engine_error(c, failure);
    else
        catalog_request_db(c, CATALOG_NAMESPACE, db);
    return NULL;
}

shoal_ns *client_namespace(client *c)
{
    if (c->ns == NULL)
        c->ns = client_namespace_of(c, c->db);
    return c->ns;
}

/* ---------------------------------------------------------------------------------------
 * Helpers shared by the handlers
 * ------------------------------------------------------------------------------------- */

int key_read(client *c, shoal_ns *ns, const char *key, size_t key_length, bool header_only,
             store_value *out)
{
    int result = c->txn.active
                     ? store_txn_read(&c->txn, ns, key, key_length, header_only, out)
                     : store_read(ns, NULL, key, key_length, header_only, command_now_ms(c), out);
    if (result != 0)
        reply_engine_error(c, result);
    else if (out->found)
        atomic_fetch_add_explicit(&server.keyspace_hits, 1, memory_order_relaxed);
    else
        atomic_fetch_add_explicit(&server.keyspace_misses, 1, memory_order_relaxed);
    return result;
}

int64_t command_now_ms(client *c)
{
    return c->txn.active ? c->txn.now_ms : c->loop->command_now_ms;
}

/* Starts timing a command and sets the loop's "now" for it from the same reading: the
 * end of the command before it in the same batch of requests when there is one (its time
 * then counts the parsing of its request, tens of nanoseconds), else a fresh one. */
static uint64_t command_start(client *c)
{
    uint64_t begin = c->loop->clock_ns ? c->loop->clock_ns : store_monotonic_ns();
    c->loop->clock_ns = 0;
    c->loop->command_now_ms = (int64_t)(begin / 1000000) + c->loop->wall_offset_ms;
    return begin;
}

bool arg_long_long(client *c, size_t i, long long *out)
{
    if (!text_to_long_long(c->argv[i], c->lengths[i], out)) {
        resp_add_error(&c->out, "ERR value is not an integer or out of range");
        return false;
    }
    return true;
}

bool arg_db(client *c, size_t i, int *db)
{
    long long value;
    if (!arg_long_long(c, i, &value))
        return false;
    if (value < 0 || value >= atomic_load(&server.config.databases)) {
        resp_add_error(&c->out, "ERR DB index is out of range");
        return false;
    }
    *db = (int)value;
    return true;
}

void command_case(char *out, size_t size, const char *name, bool upper)
{
    size_t n = strlen(name) < size - 1 ? strlen(name) : size - 1;
    for (size_t i = 0; i < n; i++) {
        char ch = name[i];
        if (upper && ch >= 'a' && ch <= 'z')
            ch = (char)(ch - 32);
        else if (!upper && ch >= 'A' && ch <= 'Z')
            ch = (char)(ch + 32);
        out[i] = ch;
    }
    out[n] = '\0';
}

bool arg_subcommand(client *c, const char *container, const subcommand_def *table,
                    size_t count)
{
    char outer[32], inner[32];
    for (size_t i = 0; i < count; i++) {
        if (!arg_is(c, 1, table[i].name))
            continue;
        int arity = table[i].arity;
        if (arity > 0 ? c->argc == (size_t)arity : c->argc >= (size_t)-arity)
            return true;
        command_case(outer, sizeof(outer), container, false);
        command_case(inner, sizeof(inner), table[i].name, false);
        resp_add_errorf(&c->out, "ERR wrong number of arguments for '%s|%s' command", outer, inner);
        return false;
    }
    command_case(outer, sizeof(outer), container, true);
    int shown = c->lengths[1] < 128 ? (int)c->lengths[1] : 128;
    resp_add_errorf(&c->out, "ERR unknown subcommand '%.*s'. Try %s HELP.", shown, c->argv[1],
                    outer);
    return false;
}

bool command_admin_only(const command_def *cmd, char **argv, const size_t *lengths, size_t argc,
                        char *object, size_t object_size)
{
    char name[64];
    if (cmd->flags & CMD_ADMIN) {
        /* Redis names the subcommand even where all of the container is refused. */
        if ((cmd->flags & CMD_SUBCOMMANDS) && argc > 1)
            snprintf(name, sizeof(name), "%s|%.*s", cmd->name, (int)lengths[1], argv[1]);
        else
            snprintf(name, sizeof(name), "%s", cmd->name);
    } else if (!(cmd->flags & CMD_SUBCOMMANDS) ||
               !container_subcommand_admin(cmd->name, argv, lengths, argc, 1, name, sizeof(name))) {
        return false;
    }
    command_case(object, object_size, name, false); /* "config|set", as Redis writes it */
    return true;
}

void reply_help(client *c, const char *const *lines, size_t count)
{
    resp_add_array(&c->out, (long long)count);
    for (size_t i = 0; i < count; i++)
        resp_add_simple(&c->out, lines[i]);
}

bool arg_is(client *c, size_t i, const char *word)
{
    return i < c->argc && text_equals_word(c->argv[i], c->lengths[i], word);
}

static void reply_release_value(void *owner)
{
    shoal_free(owner);
}

void reply_value(client *c, store_value *v)
{
    if (!v->found) {
        resp_add_null(&c->out);
        return;
    }
    if (v->raw != NULL && v->length >= 16 * 1024) {
        void *raw = v->raw;
        v->raw = NULL;
        resp_add_bulk_owned(&c->out, v->data, v->length, raw, reply_release_value);
        return;
    }
    resp_add_bulk(&c->out, v->data, v->length);
}

bool command_reply_starts_with_error(const resp_buffer *b, uint64_t position)
{
    int byte = resp_buffer_byte_at(b, position);
    return byte == '-';
}

/* ---------------------------------------------------------------------------------------
 * Dispatch
 * ------------------------------------------------------------------------------------- */

static void command_reply_unknown(client *c)
{
    char args[256] = "";
    size_t used = 0;
    for (size_t i = 1; i < c->argc && used < 128; i++) {
        int n = snprintf(args + used, sizeof(args) - used, "'%.*s' ",
                         (int)(c->lengths[i] > 128 ? 128 : c->lengths[i]), c->argv[i]);
        if (n < 0 || (size_t)n >= sizeof(args) - used)
            break;
        used += (size_t)n;
    }
    resp_add_errorf(&c->out, "ERR unknown command '%.*s', with args beginning with: %s",
                    (int)(c->lengths[0] > 128 ? 128 : c->lengths[0]), c->argv[0], args);
}

static bool command_arity_ok(const command_def *cmd, size_t argc)
{
    return cmd->arity > 0 ? argc == (size_t)cmd->arity : argc >= (size_t)-cmd->arity;
}

static void command_queue(client *c, const command_def *cmd)
{
    if (c->queue_count == c->queue_capacity) {
        size_t capacity = c->queue_capacity ? c->queue_capacity * 2 : 8;
        queued_command *grown = realloc(c->queue, capacity * sizeof(*grown));
        if (grown == NULL) {
            resp_add_error(&c->out, "OOM command not allowed: cannot queue");
            c->multi_dirty = true;
            return;
        }
        c->queue = grown;
        c->queue_capacity = capacity;
    }
    queued_command *q = &c->queue[c->queue_count];
    q->command = cmd;
    q->argc = c->argc;
    q->argv = calloc(c->argc, sizeof(char *));
    q->lengths = calloc(c->argc, sizeof(size_t));
    bool ok = q->argv != NULL && q->lengths != NULL;
    for (size_t i = 0; ok && i < c->argc; i++) {
        q->argv[i] = malloc(c->lengths[i] + 1);
        ok = q->argv[i] != NULL;
        if (ok) {
            memcpy(q->argv[i], c->argv[i], c->lengths[i]);
            q->argv[i][c->lengths[i]] = '\0';
            q->lengths[i] = c->lengths[i];
        }
    }
    c->queue_count++;
    if (!ok) {
        resp_add_error(&c->out, "OOM command not allowed: cannot queue");
        c->multi_dirty = true;
        return;
    }
    resp_add_simple(&c->out, "QUEUED");
}

/* Runs a command with retries (invariant 1 and 3). */
static void command_execute(client *c, const command_def *cmd)
{
    uint64_t mark = resp_buffer_mark(&c->out);
    bool transactional = (cmd->flags & (CMD_WRITE | CMD_TXN)) != 0;
    for (long attempt = 0;; attempt++) {
        c->retry = false;
        if (transactional)
            store_txn_begin(&c->txn, false, c->loop->command_now_ms);
        cmd->handler(c);
        if (c->catalog_asked != NULL) {
            /* The request waits for a catalog change and runs again after it: this
             * attempt leaves nothing behind (catalog.c). */
            if (transactional)
                store_txn_abort(&c->txn);
            c->retry = false;
            resp_buffer_truncate(&c->out, mark);
            return;
        }
        if (transactional) {
            if (c->retry) {
                store_txn_abort(&c->txn);
            } else {
                /* In durable mode the reply just written is held until the log confirms
                 * the commit (pending.c); the loop goes on with the next request. */
                shoal_write_options options;
                pending_write *w = pending_begin(c, &options, mark);
                int result = store_txn_commit(&c->txn, w != NULL ? &options : NULL);
                result = pending_end(c, w, result);
                if (result != 0) {
                    resp_buffer_truncate(&c->out, mark);
                    reply_engine_error(c, result);
                }
            }
        }
        if (!c->retry)
            return;
        resp_buffer_truncate(&c->out, mark);
        if (attempt + 1 >= COMMAND_MAX_ATTEMPTS) {
            resp_add_error(&c->out, "ERR the command conflicted with others too many times, "
                                    "nothing was changed; retry");
            return;
        }
        if (attempt >= 8)
            sched_yield(); /* let the writers we keep colliding with finish */
    }
}

/* A request refused before it runs (Redis's rejectCommand): its error, and inside MULTI
 * the transaction is marked to fail at EXEC. A refused EXEC aborts the transaction
 * instead: "EXECABORT ... because of: <the error>", the queue and the watches dropped. */
static void command_reject(client *c, const command_def *cmd, const char *error)
{
    command_record(c, cmd, 0, false, true);
    if (cmd->handler == cmd_exec) {
        const char *cause = strncmp(error, "ERR ", 4) == 0 ? error + 4 : error;
        resp_add_errorf(&c->out, "EXECABORT Transaction discarded because of: %s", cause);
        if (c->in_multi)
            client_free_multi(c);
        client_unwatch(c);
        return;
    }
    resp_add_error(&c->out, error);
    if (c->in_multi)
        c->multi_dirty = true;
}

/* The arguments that may carry passwords, which the slow log and monitors show as
 * "(redacted)": AUTH's and the pair after HELLO's AUTH, as Redis hides them; every argument
 * of ACL and CONFIG, where Redis hides only the passwords among them. */
static redaction command_redaction(client *c, const command_def *cmd)
{
    if (cmd->handler == cmd_hello) {
        for (size_t i = 2; i + 2 < c->argc; i++)
            if (arg_is(c, i, "AUTH"))
                return (redaction){.from = i + 1, .count = 2};
        return (redaction){0};
    }
    if (cmd->handler == cmd_auth || cmd->handler == cmd_acl || cmd->handler == cmd_config)
        return (redaction){.from = 1, .count = SIZE_MAX};
    return (redaction){0};
}

void command_dispatch(client *c)
{
    const command_def *cmd = command_lookup(c->argv[0], c->lengths[0]);
    if (cmd == NULL) {
        command_reply_unknown(c);
        if (c->in_multi)
            c->multi_dirty = true;
        return;
    }
    atomic_store_explicit(&c->last_command, cmd->name, memory_order_relaxed);
    char error[256];
    if (!command_arity_ok(cmd, c->argc)) {
        snprintf(error, sizeof(error), "ERR wrong number of arguments for '%s' command",
                 cmd->name);
        command_reject(c, cmd, error);
        return;
    }
    if ((cmd->flags & CMD_SUBCOMMANDS) && !container_subcommand_ok(c, cmd->name)) {
        command_record(c, cmd, 0, false, true);
        if (c->in_multi)
            c->multi_dirty = true;
        return;
    }
    if (!c->authenticated && !(cmd->flags & CMD_NOAUTH)) {
        command_reject(c, cmd, "NOAUTH Authentication required.");
        return;
    }
    char object[64];
    if (!c->identity.admin &&
        command_admin_only(cmd, c->argv, c->lengths, c->argc, object, sizeof(object))) {
        snprintf(error, sizeof(error),
                 "NOPERM this user has no permissions to run the '%s' command", object);
        acllog_add(c, "command", object, c->identity.user, strlen(c->identity.user));
        command_reject(c, cmd, error);
        return;
    }
    if (c->in_multi && (cmd->flags & CMD_DENYMULTI)) {
        char upper[32]; /* Redis names the command in capitals here */
        command_case(upper, sizeof(upper), cmd->name, true);
        /* An error in its place; the transaction stays valid (Redis's WATCH does so). */
        resp_add_errorf(&c->out, "ERR %s inside MULTI is not allowed", upper);
        return;
    }
    redaction redact = command_redaction(c, cmd);
    if (c->in_multi && !(cmd->flags & CMD_NOMULTI)) {
        if (monitor_active() && !(cmd->flags & CMD_ADMIN))
            monitor_feed(c, redact); /* shown as queued: Redis shows them at EXEC */
        command_queue(c, cmd);
        return;
    }
    uint64_t begin = command_start(c);
    uint64_t mark = resp_buffer_mark(&c->out);
    command_execute(c, cmd);
    if (c->catalog_asked != NULL) {
        /* Suspended until the catalog worker is done; counted when it runs again, with
         * its latency from now. */
        if (c->catalog_began_ns == 0)
            c->catalog_began_ns = begin;
        catalog_submit(c);
        return;
    }
    if (c->catalog_began_ns != 0) {
        begin = c->catalog_began_ns;
        c->catalog_began_ns = 0;
    }
    atomic_fetch_add_explicit(&server.total_commands, 1, memory_order_relaxed);
    /* A reply that starts with '-' is a failed call, as Redis counts them. */
    bool failed = false;
    if (resp_buffer_mark(&c->out) > mark)
        failed = command_reply_starts_with_error(&c->out, mark);
    uint64_t end = store_monotonic_ns();
    if (c->loop->clock_chain)
        c->loop->clock_ns = end; /* the next request's start (command_start) */
    uint64_t elapsed_ns = end - begin;
    command_record(c, cmd, elapsed_ns, failed, false);
    slowlog_consider(c->argv, c->lengths, c->argc, redact, elapsed_ns / 1000, c->address, c->name);
    if (monitor_active() && !(cmd->flags & CMD_ADMIN)) /* as Redis: admin ones are not */
        monitor_feed(c, redact);
}

/* ---------------------------------------------------------------------------------------
 * MULTI / EXEC / DISCARD / WATCH / UNWATCH
 * ------------------------------------------------------------------------------------- */

void client_free_multi(client *c)
{
    for (size_t i = 0; i < c->queue_count; i++) {
        for (size_t a = 0; a < c->queue[i].argc; a++)
            free(c->queue[i].argv ? c->queue[i].argv[a] : NULL);
        free(c->queue[i].argv);
        free(c->queue[i].lengths);
    }
    c->queue_count = 0;
    c->in_multi = false;
    c->multi_dirty = false;
}

void client_unwatch(client *c)
{
    for (size_t i = 0; i < c->watched_count; i++)
        free(c->watched[i].key);
    c->watched_count = 0;
}

COMMAND_HANDLER(cmd_multi)
{
    if (c->in_multi) {
        resp_add_error(&c->out, "ERR MULTI calls can not be nested");
        return;
    }
    c->in_multi = true;
    c->multi_dirty = false;
    resp_add_ok(&c->out);
}

COMMAND_HANDLER(cmd_discard)
{
    if (!c->in_multi) {
        resp_add_error(&c->out, "ERR DISCARD without MULTI");
        return;
    }
    client_free_multi(c);
    client_unwatch(c);
    resp_add_ok(&c->out);
}

COMMAND_HANDLER(cmd_watch)
{
    shoal_ns *ns = client_namespace(c);
    if (ns == NULL)
        return;
    for (size_t i = 1; i < c->argc; i++) {
        uint64_t seq;
        int result = store_key_seq(ns, c->argv[i], c->lengths[i], &seq);
        if (result != 0) {
            reply_engine_error(c, result);
            return;
        }
        if (c->watched_count == c->watched_capacity) {
            size_t capacity = c->watched_capacity ? c->watched_capacity * 2 : 8;
            watched_key *grown = realloc(c->watched, capacity * sizeof(*grown));
            if (grown == NULL) {
                resp_add_error(&c->out, "OOM command not allowed: cannot watch");
                return;
            }
            c->watched = grown;
            c->watched_capacity = capacity;
        }
        watched_key *w = &c->watched[c->watched_count];
        w->key = malloc(c->lengths[i] ? c->lengths[i] : 1);
        if (w->key == NULL) {
            resp_add_error(&c->out, "OOM command not allowed: cannot watch");
            return;
        }
        memcpy(w->key, c->argv[i], c->lengths[i]);
        w->key_length = c->lengths[i];
        w->db = c->db;
        w->seq = seq;
        c->watched_count++;
    }
    resp_add_ok(&c->out);
}

/* Queued inside MULTI, as in Redis; run by EXEC it changes nothing, since EXEC has made
 * its watches conditions of the attempt and keeps them for a rerun (Redis has dropped them
 * by then). */
COMMAND_HANDLER(cmd_unwatch)
{
    if (!c->in_exec)
        client_unwatch(c);
    resp_add_ok(&c->out);
}

/* True if a watched key changed since WATCH (checked against the latest state). WATCH
 * created its database, so a lookup that fails means a flush is emptying it, which
 * changes the key. */
static bool command_watch_broken(client *c)
{
    for (size_t i = 0; i < c->watched_count; i++) {
        watched_key *w = &c->watched[i];
        shoal_ns *ns;
        if (store_namespace_lookup(c->identity.tenant, w->db, &ns) != 0)
            return true;
        uint64_t seq;
        if (store_key_seq(ns, w->key, w->key_length, &seq) != 0 || seq != w->seq)
            return true;
    }
    return false;
}

COMMAND_HANDLER(cmd_exec)
{
    if (!c->in_multi) {
        resp_add_error(&c->out, "ERR EXEC without MULTI");
        return;
    }
    if (c->multi_dirty) {
        resp_add_error(&c->out, "EXECABORT Transaction discarded because of previous errors.");
        client_free_multi(c);
        client_unwatch(c);
        return;
    }
    /* Keep the request's own arguments; each queued command borrows argc/argv. */
    size_t saved_argc = c->argc;
    char **saved_argv = c->argv;
    size_t *saved_lengths = c->lengths;
    int saved_db = c->db;
    uint64_t mark = resp_buffer_mark(&c->out);
    c->in_multi = false;
    c->in_exec = true;
    for (long attempt = 0;; attempt++) {
        c->retry = false;
        c->db = saved_db;
        c->ns = NULL;
        if (command_watch_broken(c)) {
            resp_add_null_array(&c->out);
            break;
        }
        store_txn_begin(&c->txn, true, command_now_ms(c));
        /* Conditions on the watched keys: a write between the check above and the
         * commit makes the commit fail, and the next attempt sees the change. */
        bool watch_broken = false;
        for (size_t i = 0; i < c->watched_count && !watch_broken; i++) {
            shoal_ns *ns;
            if (store_namespace_lookup(c->identity.tenant, c->watched[i].db, &ns) == 0)
                store_txn_require(&c->txn, ns, c->watched[i].key, c->watched[i].key_length,
                                  c->watched[i].seq);
            else
                watch_broken = true; /* flushed since the check just made */
        }
        if (watch_broken) {
            store_txn_abort(&c->txn);
            resp_add_null_array(&c->out);
            break;
        }
        resp_add_array(&c->out, (long long)c->queue_count);
        for (size_t i = 0; i < c->queue_count && !c->retry; i++) {
            queued_command *q = &c->queue[i];
            c->argc = q->argc;
            c->argv = q->argv;
            c->lengths = q->lengths;
            atomic_fetch_add_explicit(&server.total_commands, 1, memory_order_relaxed);
            uint64_t begin = command_start(c);
            q->command->handler(c);
            if (c->catalog_asked != NULL)
                break; /* it needs a new namespace: see below */
            command_record(c, q->command, store_monotonic_ns() - begin, false, false);
            if (c->txn.failure == SHOAL_ECONFLICT || c->txn.failure == SHOAL_EDROPPED)
                c->retry = true;
        }
        c->argc = saved_argc;
        c->argv = saved_argv;
        c->lengths = saved_lengths;
        if (c->catalog_asked != NULL) {
            /* A queued command needs a namespace that does not exist yet: nothing of this
             * attempt is committed, and EXEC runs again from the start, queue and watches
             * kept, once the catalog worker has created it (catalog.c, MULTI/EXEC). */
            store_txn_abort(&c->txn);
            resp_buffer_truncate(&c->out, mark);
            c->db = saved_db;
            c->ns = NULL;
            c->retry = false;
            c->in_exec = false;
            c->in_multi = true;
            return;
        }
        if (!c->retry) {
            /* One batch, one commit, one pending write: the whole EXEC reply waits for it. */
            shoal_write_options options;
            pending_write *w = pending_begin(c, &options, mark);
            int result = pending_end(c, w, store_txn_commit(&c->txn, w != NULL ? &options : NULL));
            if (result == 0)
                break;
            resp_buffer_truncate(&c->out, mark);
            reply_engine_error(c, result);
            if (!c->retry)
                break;
        } else {
            store_txn_abort(&c->txn);
        }
        resp_buffer_truncate(&c->out, mark);
        if (attempt + 1 >= COMMAND_MAX_ATTEMPTS) {
            resp_add_error(&c->out, "ERR the transaction conflicted with others too many "
                                    "times, nothing was changed; retry");
            break;
        }
        if (attempt >= 8)
            sched_yield();
    }
    c->retry = false;
    c->in_exec = false;
    atomic_store(&c->db_shared, c->db);
    client_free_multi(c);
    client_unwatch(c);
}
