/*
 * cmd_keys.c -- the key-space commands: DEL UNLINK EXISTS TYPE MEMORY OBJECT RENAME
 * RENAMENX COPY MOVE KEYS SCAN RANDOMKEY DBSIZE FLUSHDB FLUSHALL TOUCH, and expiry: EXPIRE
 * PEXPIRE EXPIREAT PEXPIREAT TTL PTTL EXPIRETIME PEXPIRETIME PERSIST.
 *
 * Every command sees only the client's tenant: keys are read through the namespace of
 * (tenant, database), so no command here can name, list, count or flush another
 * tenant's keys (the tenant is fixed at AUTH). Expiry changes rewrite the value with a
 * new header (value.h), in the command's transaction. SCAN walks keys in order and its
 * cursor names the last key returned (store.c), so a key present for the whole scan is
 * returned exactly once, whatever is written meanwhile.
 * Tested by tests/integration/test_server.py, test_tenants.py and test_compat.py (random
 * sequences against Debian's redis-server, replies compared).
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog.h"
#include "commands.h"
#include "text.h"

typedef struct keys_argument {
    const char *key;
    size_t length, index;
} keys_argument;

static int keys_argument_order(const void *a, const void *b)
{
    const keys_argument *x = a, *y = b;
    size_t common = x->length < y->length ? x->length : y->length;
    int order = common ? memcmp(x->key, y->key, common) : 0;
    if (order == 0)
        order = x->length < y->length ? -1 : x->length > y->length;
    return order != 0 ? order : x->index < y->index ? -1 : 1;
}

/* Which arguments from 1 on repeat an earlier one: a malloc'd array of argc flags, NULL
 * for none (one key) or out of memory (then *failed). Sorting costs O(n log n) where
 * comparing each key with the ones before it would be quadratic in a long DEL. */
static bool *keys_repeats(client *c, bool *failed)
{
    *failed = false;
    if (c->argc <= 2)
        return NULL;
    size_t n = c->argc - 1;
    keys_argument *sorted = malloc(n * sizeof(*sorted));
    bool *repeats = calloc(c->argc, sizeof(*repeats));
    if (sorted == NULL || repeats == NULL) {
        free(sorted);
        free(repeats);
        *failed = true;
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        sorted[i] = (keys_argument){c->argv[i + 1], c->lengths[i + 1], i + 1};
    qsort(sorted, n, sizeof(*sorted), keys_argument_order);
    for (size_t i = 1; i < n; i++)
        repeats[sorted[i].index] = sorted[i].length == sorted[i - 1].length &&
                                   !memcmp(sorted[i].key, sorted[i - 1].key, sorted[i].length);
    free(sorted);
    return repeats;
}

/* DEL and UNLINK: a key named twice is deleted, and counted, once (as in Redis; the
 * command's reads do not see its own deletes outside EXEC). */
COMMAND_HANDLER(cmd_del)
{
    shoal_ns *ns = client_namespace(c);
    if (ns == NULL)
        return;
    bool failed;
    bool *repeats = keys_repeats(c, &failed);
    if (failed) {
        reply_engine_error(c, SHOAL_ENOMEM);
        return;
    }
    long long deleted = 0;
    for (size_t i = 1; i < c->argc; i++) {
        if (repeats != NULL && repeats[i])
            continue;
        store_value v;
        if (key_read(c, ns, c->argv[i], c->lengths[i], true, &v) != 0) {
            free(repeats);
            return;
        }
        if (!v.found)
            continue;
        int result = store_txn_delete(&c->txn, ns, c->argv[i], c->lengths[i]);
        if (result != 0) {
            free(repeats);
            reply_engine_error(c, result);
            return;
        }
        deleted++;
    }
    free(repeats);
    resp_add_integer(&c->out, deleted);
}

/* EXISTS and TOUCH: counts existing keys, repeated keys counting again, at one snapshot. */
static void keys_count_existing(client *c)
{
    shoal_ns *ns = client_namespace(c);
    if (ns == NULL)
        return;
    shoal_snapshot *snap = NULL;
    if (!c->txn.active && shoal_snapshot_take(server.db, &snap) != 0)
        snap = NULL;
    long long count = 0;
    int64_t now = command_now_ms(c);
    for (size_t i = 1; i < c->argc; i++) {
        store_value v;
        int result = c->txn.active
                         ? store_txn_read(&c->txn, ns, c->argv[i], c->lengths[i], true, &v)
                         : store_read(ns, snap, c->argv[i], c->lengths[i], true, now, &v);
        if (result != 0) {
            shoal_snapshot_release(snap);
            reply_engine_error(c, result);
            return;
        }
        count += v.found;
    }
    shoal_snapshot_release(snap);
    resp_add_integer(&c->out, count);
}

COMMAND_HANDLER(cmd_exists)
{
    keys_count_existing(c);
}

COMMAND_HANDLER(cmd_touch)
{
    keys_count_existing(c);
}

COMMAND_HANDLER(cmd_type)
{
    shoal_ns *ns = client_namespace(c);
    store_value v;
    if (ns == NULL || key_read(c, ns, c->argv[1], c->lengths[1], true, &v) != 0)
        return;
    resp_add_simple(&c->out, !v.found ? "none" : v.foreign ? "unknown" : "string");
}

/* MEMORY USAGE key [SAMPLES n]: a string has one allocation to sample, so n is checked
 * and otherwise unused. A key only this transaction wrote counts its key and value. */
COMMAND_HANDLER(cmd_memory)
{
    static const char *const help[] = {
        "MEMORY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "USAGE <key> [SAMPLES <count>]",
        "    Return memory in bytes used by <key> and its value.",
        "HELP",
        "    Prints this help.",
    };
    long long samples;
    if (arg_is(c, 1, "HELP") && c->argc == 2) {
        REPLY_HELP(c, help);
        return;
    }
    if (!arg_is(c, 1, "USAGE") || (c->argc != 3 && c->argc != 5)) {
        resp_add_errorf(&c->out, "ERR unknown subcommand or wrong number of arguments for "
                                 "'%.*s'. Try MEMORY HELP.", (int)c->lengths[1], c->argv[1]);
        return;
    }
    if (c->argc == 5 && !arg_is(c, 3, "SAMPLES")) {
        resp_add_error(&c->out, "ERR syntax error");
        return;
    }
    if (c->argc == 5 && !arg_long_long(c, 4, &samples))
        return;
    shoal_ns *ns = client_namespace(c);
    store_value v;
    if (ns == NULL || key_read(c, ns, c->argv[2], c->lengths[2], true, &v) != 0)
        return;
    if (!v.found) {
        resp_add_null(&c->out);
        return;
    }
    uint64_t bytes;
    int result = store_key_memory(ns, c->argv[2], c->lengths[2], &bytes);
    if (result == SHOAL_ENOTFOUND) {
        bytes = c->lengths[2] + v.length;
        result = 0;
    }
    store_value_release(&v);
    if (result != 0)
        reply_engine_error(c, result);
    else
        resp_add_integer(&c->out, (long long)bytes);
}

/* How Redis would encode a string value: "int" for a canonical 64-bit integer, "embstr"
 * up to 44 bytes, "raw" beyond (clients and tools read this; Shoal stores all alike). */
static const char *keys_string_encoding(const store_value *v)
{
    long long number;
    char canonical[32];
    if (!v->foreign && v->length <= 20 && text_to_long_long(v->data, v->length, &number) &&
        (size_t)snprintf(canonical, sizeof(canonical), "%lld", number) == v->length &&
        !memcmp(canonical, v->data, v->length))
        return "int";
    return v->length <= 44 ? "embstr" : "raw";
}

/* OBJECT ENCODING|REFCOUNT|FREQ|IDLETIME key. Shoal keeps no access times or counts, so
 * the last two answer an error, as Redis does when its eviction policy tracks neither. */
COMMAND_HANDLER(cmd_object)
{
    static const char *const help[] = {
        "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "ENCODING <key>",
        "    Return the kind of internal representation the Redis object stored at <key> is "
        "using.",
        "REFCOUNT <key>",
        "    Return the reference count of the object stored at <key>.",
        "FREQ <key>, IDLETIME <key>",
        "    Not tracked: an error.",
        "HELP",
        "    Prints this help.",
    };
    if (arg_is(c, 1, "HELP") && c->argc == 2) {
        REPLY_HELP(c, help);
        return;
    }
    bool encoding = arg_is(c, 1, "ENCODING");
    if (c->argc != 3 || !(encoding || arg_is(c, 1, "REFCOUNT") || arg_is(c, 1, "FREQ") ||
                          arg_is(c, 1, "IDLETIME"))) {
        resp_add_errorf(&c->out, "ERR unknown subcommand or wrong number of arguments for "
                                 "'%.*s'. Try OBJECT HELP.", (int)c->lengths[1], c->argv[1]);
        return;
    }
    shoal_ns *ns = client_namespace(c);
    store_value v;
    if (ns == NULL || key_read(c, ns, c->argv[2], c->lengths[2], !encoding, &v) != 0)
        return;
    if (!v.found)
        resp_add_null(&c->out);
    else if (encoding)
        resp_add_bulk_cstring(&c->out, keys_string_encoding(&v));
    else if (arg_is(c, 1, "REFCOUNT"))
        resp_add_integer(&c->out, 1);
    else if (arg_is(c, 1, "FREQ"))
        resp_add_error(&c->out, "ERR An LFU maxmemory policy is not selected, access "
                                "frequency not tracked.");
    else
        resp_add_error(&c->out, "ERR idle time is not tracked by this server.");
    store_value_release(&v);
}

static void keys_rename(client *c, bool only_if_free)
{
    shoal_ns *ns = client_namespace(c);
    if (ns == NULL)
        return;
    store_value source;
    if (key_read(c, ns, c->argv[1], c->lengths[1], false, &source) != 0)
        return;
    if (!source.found) {
        resp_add_error(&c->out, "ERR no such key");
        return;
    }
    bool same = c->lengths[1] == c->lengths[2] && !memcmp(c->argv[1], c->argv[2], c->lengths[1]);
    if (only_if_free) {
        store_value target;
        if (key_read(c, ns, c->argv[2], c->lengths[2], true, &target) != 0) {
            store_value_release(&source);
            return;
        }
        if (target.found) {
            store_value_release(&source);
            resp_add_integer(&c->out, 0);
            return;
        }
    }
    if (!same) {
        int result = store_txn_delete(&c->txn, ns, c->argv[1], c->lengths[1]);
        if (result == 0)
            result = store_txn_put(&c->txn, ns, c->argv[2], c->lengths[2], source.type,
                                   source.expire_ms, source.data, source.length);
        if (result != 0) {
            store_value_release(&source);
            reply_engine_error(c, result);
            return;
        }
    }
    store_value_release(&source);
    if (only_if_free)
        resp_add_integer(&c->out, 1);
    else
        resp_add_ok(&c->out);
}

COMMAND_HANDLER(cmd_rename)
{
    keys_rename(c, false);
}

COMMAND_HANDLER(cmd_renamenx)
{
    keys_rename(c, true);
}

/* COPY and MOVE: the value of argv[1] in from written as argv[key] in to, with its type
 * and expiry (and deleted from from, to move it); only over an existing key if replace.
 * Replies 1 if it was written, 0 if the source is absent or the target taken. */
static void keys_transfer(client *c, shoal_ns *from, shoal_ns *to, size_t key, bool replace,
                          bool move)
{
    store_value source;
    if (key_read(c, from, c->argv[1], c->lengths[1], false, &source) != 0)
        return;
    bool write = source.found;
    if (write && !replace) {
        store_value target;
        if (key_read(c, to, c->argv[key], c->lengths[key], true, &target) != 0) {
            store_value_release(&source);
            return;
        }
        write = !target.found;
        store_value_release(&target);
    }
    int result = 0;
    if (write && move)
        result = store_txn_delete(&c->txn, from, c->argv[1], c->lengths[1]);
    if (write && result == 0)
        result = store_txn_put(&c->txn, to, c->argv[key], c->lengths[key], source.type,
                               source.expire_ms, source.data, source.length);
    store_value_release(&source);
    if (result != 0)
        reply_engine_error(c, result);
    else
        resp_add_integer(&c->out, write);
}

/* COPY source destination [DB destination-db] [REPLACE] */
COMMAND_HANDLER(cmd_copy)
{
    int db = c->db;
    bool replace = false;
    for (size_t i = 3; i < c->argc; i++) {
        if (arg_is(c, i, "REPLACE")) {
            replace = true;
        } else if (arg_is(c, i, "DB") && i + 1 < c->argc) {
            if (!arg_db(c, ++i, &db))
                return;
        } else {
            resp_add_error(&c->out, "ERR syntax error");
            return;
        }
    }
    if (db == c->db && c->lengths[1] == c->lengths[2] &&
        !memcmp(c->argv[1], c->argv[2], c->lengths[1])) {
        resp_add_error(&c->out, "ERR source and destination objects are the same");
        return;
    }
    shoal_ns *from = client_namespace(c);
    shoal_ns *to = from == NULL || db == c->db ? from : client_namespace_of(c, db);
    if (to != NULL)
        keys_transfer(c, from, to, 2, replace, false);
}

/* MOVE key db */
COMMAND_HANDLER(cmd_move)
{
    int db;
    if (!arg_db(c, 2, &db))
        return;
    if (db == c->db) {
        resp_add_error(&c->out, "ERR source and destination objects are the same");
        return;
    }
    shoal_ns *from = client_namespace(c);
    shoal_ns *to = from == NULL ? NULL : client_namespace_of(c, db);
    if (to != NULL)
        keys_transfer(c, from, to, 1, false, true);
}

/* Collected keys of KEYS and SCAN. */
typedef struct keys_collect {
    char **keys;
    size_t *lengths;
    size_t count, capacity;
    const char *pattern;
    size_t pattern_length;
    bool match_all;
    int type; /* 0: any; -1: a type no key has */
    bool out_of_memory;
} keys_collect;

static bool keys_collect_one(void *context, const char *key, size_t key_length,
                             const value_meta *meta, size_t payload_length)
{
    (void)payload_length;
    keys_collect *k = context;
    if (k->type != 0 && meta->type != k->type)
        return true;
    if (!k->match_all && !text_glob_match(k->pattern, k->pattern_length, key, key_length, false))
        return true;
    if (k->count == k->capacity) {
        size_t capacity = k->capacity ? k->capacity * 2 : 64;
        char **keys = realloc(k->keys, capacity * sizeof(*keys));
        if (keys != NULL)
            k->keys = keys;
        size_t *lengths = realloc(k->lengths, capacity * sizeof(*lengths));
        if (lengths != NULL)
            k->lengths = lengths;
        if (keys == NULL || lengths == NULL) {
            k->out_of_memory = true;
            return false;
        }
        k->capacity = capacity;
    }
    char *copy = malloc(key_length ? key_length : 1);
    if (copy == NULL) {
        k->out_of_memory = true;
        return false;
    }
    memcpy(copy, key, key_length);
    k->keys[k->count] = copy;
    k->lengths[k->count] = key_length;
    k->count++;
    return true;
}

static void keys_collect_reply_and_free(client *c, keys_collect *k)
{
    resp_add_array(&c->out, (long long)k->count);
    for (size_t i = 0; i < k->count; i++) {
        resp_add_bulk(&c->out, k->keys[i], k->lengths[i]);
        free(k->keys[i]);
    }
    free(k->keys);
    free(k->lengths);
}

/* Whether the command runs inside EXEC, where it must see the writes queued before it. */
static bool keys_in_exec(const client *c)
{
    return c->txn.active && c->txn.multi;
}

/* store_scan as the client sees the database: inside EXEC with the writes queued before
 * the command (store_txn_scan), otherwise as committed. */
static int keys_scan(client *c, shoal_ns *ns, const char *after, size_t after_length,
                     bool has_after, size_t limit, store_scan_fn fn, void *context,
                     bool *finished, char **last_key, size_t *last_key_length)
{
    if (keys_in_exec(c))
        return store_txn_scan(&c->txn, ns, after, after_length, has_after, limit, fn, context,
                              finished, last_key, last_key_length);
    return store_scan(ns, after, after_length, has_after, limit, command_now_ms(c), fn,
                      context, finished, last_key, last_key_length);
}

COMMAND_HANDLER(cmd_keys)
{
    shoal_ns *ns = client_namespace(c);
    if (ns == NULL)
        return;
    keys_collect k = {.pattern = c->argv[1], .pattern_length = c->lengths[1]};
    k.match_all = c->lengths[1] == 1 && c->argv[1][0] == '*';
    bool finished;
    char *last;
    size_t last_length;
    int result = keys_scan(c, ns, NULL, 0, false, SIZE_MAX, keys_collect_one, &k, &finished,
                           &last, &last_length);
    free(last);
    if (result != 0 || k.out_of_memory) {
        for (size_t i = 0; i < k.count; i++)
            free(k.keys[i]);
        free(k.keys);
        free(k.lengths);
        reply_engine_error(c, result != 0 ? result : SHOAL_ENOMEM);
        return;
    }
    keys_collect_reply_and_free(c, &k);
}

COMMAND_HANDLER(cmd_scan)
{
    long long cursor_signed;
    unsigned long long cursor;
    char *end;
    char text[32];
    if (c->lengths[1] == 0 || c->lengths[1] >= sizeof(text)) {
        resp_add_error(&c->out, "ERR invalid cursor");
        return;
    }
    memcpy(text, c->argv[1], c->lengths[1]);
    text[c->lengths[1]] = '\0';
    cursor = strtoull(text, &end, 10);
    if (*end != '\0' || text[0] == '-') {
        resp_add_error(&c->out, "ERR invalid cursor");
        return;
    }
    keys_collect k = {.match_all = true};
    long long count = 10;
    for (size_t i = 2; i < c->argc; i++) {
        if (arg_is(c, i, "MATCH") && i + 1 < c->argc) {
            k.pattern = c->argv[i + 1];
            k.pattern_length = c->lengths[i + 1];
            k.match_all = k.pattern_length == 1 && k.pattern[0] == '*';
            i++;
        } else if (arg_is(c, i, "COUNT") && i + 1 < c->argc) {
            if (!arg_long_long(c, i + 1, &count))
                return;
            if (count < 1) {
                resp_add_error(&c->out, "ERR syntax error");
                return;
            }
            i++;
        } else if (arg_is(c, i, "TYPE") && i + 1 < c->argc) {
            k.type = arg_is(c, i + 1, "string") ? VALUE_TYPE_STRING : -1;
            i++;
        } else {
            resp_add_error(&c->out, "ERR syntax error");
            return;
        }
    }
    (void)cursor_signed;
    shoal_ns *ns = client_namespace(c);
    if (ns == NULL)
        return;
    char *after = NULL;
    size_t after_length = 0;
    if (cursor != 0 && !store_cursor_load(cursor, c->identity.tenant, c->db, &after, &after_length)) {
        resp_add_error(&c->out, "ERR invalid cursor");
        return;
    }
    bool finished;
    char *last;
    size_t last_length;
    int result = keys_scan(c, ns, after, after_length, cursor != 0, (size_t)count,
                           keys_collect_one, &k, &finished, &last, &last_length);
    free(after);
    if (result != 0 || k.out_of_memory) {
        free(last);
        for (size_t i = 0; i < k.count; i++)
            free(k.keys[i]);
        free(k.keys);
        free(k.lengths);
        reply_engine_error(c, result != 0 ? result : SHOAL_ENOMEM);
        return;
    }
    uint64_t next = 0;
    if (!finished && last != NULL)
        next = store_cursor_save(c->identity.tenant, c->db, last, last_length);
    free(last);
    resp_add_array(&c->out, 2);
    int n = snprintf(text, sizeof(text), "%llu", (unsigned long long)next);
    resp_add_bulk(&c->out, text, (size_t)n);
    keys_collect_reply_and_free(c, &k);
}

static bool keys_first(void *context, const char *key, size_t key_length,
                       const value_meta *meta, size_t payload_length)
{
    (void)meta;
    (void)payload_length;
    keys_collect *k = context;
    keys_collect_one(k, key, key_length, meta, 0);
    return false;
}

COMMAND_HANDLER(cmd_randomkey)
{
    shoal_ns *ns = client_namespace(c);
    if (ns == NULL)
        return;
    /* Start at random bytes and take the first live key after them, wrapping around once;
     * keys are ordered, so this favours keys after large gaps. Expired keys (and, inside
     * EXEC, deleted ones) are stepped over however many there are: nil means none lives. */
    char start[8];
    for (size_t i = 0; i < sizeof(start); i++)
        start[i] = (char)(rand() & 0xff);
    keys_collect k = {.match_all = true};
    int result = 0;
    for (int pass = 0; pass < 2 && k.count == 0 && result == 0; pass++) {
        char *after = NULL;
        size_t after_length = 0;
        bool finished = false;
        while (!finished && k.count == 0) {
            char *last = NULL;
            size_t last_length = 0;
            bool has_after = pass == 0 || after != NULL;
            result = keys_scan(c, ns, after ? after : start,
                               after ? after_length : sizeof(start), has_after, 1000, keys_first,
                               &k, &finished, &last, &last_length);
            free(after);
            after = last;
            after_length = last_length;
            if (result != 0)
                break;
            /* The second pass ends where the first began. */
            if (pass == 1 && after != NULL &&
                memcmp(after, start, after_length < sizeof(start) ? after_length
                                                                  : sizeof(start)) >= 0)
                break;
        }
        free(after);
    }
    if (result != 0)
        reply_engine_error(c, result);
    else if (k.count == 0)
        resp_add_null(&c->out);
    else
        resp_add_bulk(&c->out, k.keys[0], k.lengths[0]);
    for (size_t i = 0; i < k.count; i++)
        free(k.keys[i]);
    free(k.keys);
    free(k.lengths);
}

COMMAND_HANDLER(cmd_dbsize)
{
    uint64_t keys;
    int result = store_count(c->identity.tenant, c->db, &keys);
    if (result != 0) {
        reply_engine_error(c, result);
        return;
    }
    if (keys_in_exec(c)) {
        /* Inside EXEC: the count as the writes queued before DBSIZE leave it. */
        shoal_ns *ns;
        int64_t delta = 0;
        if (store_namespace_lookup(c->identity.tenant, c->db, &ns) == 0)
            result = store_txn_count_delta(&c->txn, ns, &delta);
        if (result != 0) {
            reply_engine_error(c, result);
            return;
        }
        keys = delta < 0 && (uint64_t)-delta > keys ? 0 : keys + (uint64_t)delta;
    }
    resp_add_integer(&c->out, (long long)keys);
}

static bool keys_flush_arguments_ok(client *c)
{
    if (c->argc > 2 || (c->argc == 2 && !arg_is(c, 1, "ASYNC") && !arg_is(c, 1, "SYNC"))) {
        resp_add_error(&c->out, "ERR syntax error");
        return false;
    }
    return true;
}

/* Inside EXEC: a delete of every key of the database joins the transaction's batch, so it
 * is atomic and ordered with the other commands (store_txn_flush). A database this tenant
 * never used has nothing to delete, and none can become usable (and be written) before
 * the commit (store_txn_hold_catalog). */
static int keys_flush_in_exec(client *c, int db)
{
    store_txn_hold_catalog(&c->txn); /* no database becomes usable until the commit */
    shoal_ns *ns;
    if (store_namespace_lookup(c->identity.tenant, db, &ns) != 0)
        return 0;
    return store_txn_flush(&c->txn, ns);
}

/* Outside a transaction a flush drops the namespace and creates a new one, which frees
 * its memory at once but means two MANIFEST writes in durable mode: the catalog worker
 * makes them while the client waits, and the request runs again to answer (catalog.c).
 * Inside EXEC it deletes every key as part of the transaction (keys_flush_in_exec). */
COMMAND_HANDLER(cmd_flushdb)
{
    if (!keys_flush_arguments_ok(c))
        return;
    int result;
    if (keys_in_exec(c)) {
        if ((result = keys_flush_in_exec(c, c->db)) != 0)
            reply_engine_error(c, result);
        else
            resp_add_ok(&c->out);
        return;
    }
    if (!catalog_result(c, CATALOG_FLUSHDB, c->db, &result, NULL)) {
        catalog_request(c, CATALOG_FLUSHDB);
        return;
    }
    c->ns = NULL;
    if (result != 0) {
        reply_engine_error(c, result);
        return;
    }
    resp_add_ok(&c->out);
}

/* Every database of the caller's tenant, and only those (catalog.c, catalog_run). */
COMMAND_HANDLER(cmd_flushall)
{
    if (!keys_flush_arguments_ok(c))
        return;
    int result = 0;
    if (keys_in_exec(c)) {
        long long databases = atomic_load(&server.config.databases);
        for (int db = 0; db < databases && result == 0; db++)
            result = keys_flush_in_exec(c, db);
        if (result != 0)
            reply_engine_error(c, result);
        else
            resp_add_ok(&c->out);
        return;
    }
    if (!catalog_result(c, CATALOG_FLUSHALL, c->db, &result, NULL)) {
        catalog_request(c, CATALOG_FLUSHALL);
        return;
    }
    c->ns = NULL;
    if (result != 0) {
        reply_engine_error(c, result);
        return;
    }
    resp_add_ok(&c->out);
}

/* ---------------------------------------------------------------------------------------
 * Expiry
 * ------------------------------------------------------------------------------------- */

static void keys_expire(client *c, long long unit_ms, bool absolute)
{
    const char *name = c->argv[0];
    char lower[16];
    size_t n = c->lengths[0] < sizeof(lower) - 1 ? c->lengths[0] : sizeof(lower) - 1;
    for (size_t i = 0; i < n; i++)
        lower[i] = (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] + 32 : name[i]);
    lower[n] = '\0';
    bool nx = false, xx = false, gt = false, lt = false; /* read before the time, as Redis */
    for (size_t i = 3; i < c->argc; i++) {
        if (arg_is(c, i, "NX"))
            nx = true;
        else if (arg_is(c, i, "XX"))
            xx = true;
        else if (arg_is(c, i, "GT"))
            gt = true;
        else if (arg_is(c, i, "LT"))
            lt = true;
        else {
            resp_add_errorf(&c->out, "ERR Unsupported option %.*s", (int)c->lengths[i], c->argv[i]);
            return;
        }
    }
    if (nx && (xx || gt || lt)) {
        resp_add_error(&c->out, "ERR NX and XX, GT or LT options at the same time are not compatible");
        return;
    }
    if (gt && lt) {
        resp_add_error(&c->out, "ERR GT and LT options at the same time are not compatible");
        return;
    }
    long long value;
    if (!arg_long_long(c, 2, &value))
        return;
    int64_t now = command_now_ms(c);
    long long when;
    if ((unit_ms == 1000 && (value > LLONG_MAX / 1000 || value < LLONG_MIN / 1000))) {
        resp_add_errorf(&c->out, "ERR invalid expire time in '%s' command", lower);
        return;
    }
    when = value * unit_ms;
    if (!absolute) {
        if ((when > 0 && when > LLONG_MAX - now)) {
            resp_add_errorf(&c->out, "ERR invalid expire time in '%s' command", lower);
            return;
        }
        when += now;
    }
    shoal_ns *ns = client_namespace(c);
    store_value v;
    if (ns == NULL || key_read(c, ns, c->argv[1], c->lengths[1], false, &v) != 0)
        return;
    if (!v.found) {
        resp_add_integer(&c->out, 0);
        return;
    }
    bool has = v.expire_ms != VALUE_NO_EXPIRY;
    bool refused = (nx && has) || (xx && !has) || (gt && (!has || when <= v.expire_ms)) ||
                   (lt && has && when >= v.expire_ms);
    if (refused) {
        store_value_release(&v);
        resp_add_integer(&c->out, 0);
        return;
    }
    int result = when <= now
                     ? store_txn_delete(&c->txn, ns, c->argv[1], c->lengths[1])
                     : store_txn_put(&c->txn, ns, c->argv[1], c->lengths[1], v.type, when,
                                     v.data, v.length);
    store_value_release(&v);
    if (result != 0) {
        reply_engine_error(c, result);
        return;
    }
    resp_add_integer(&c->out, 1);
}

COMMAND_HANDLER(cmd_expire)
{
    keys_expire(c, 1000, false);
}

COMMAND_HANDLER(cmd_pexpire)
{
    keys_expire(c, 1, false);
}

COMMAND_HANDLER(cmd_expireat)
{
    keys_expire(c, 1000, true);
}

COMMAND_HANDLER(cmd_pexpireat)
{
    keys_expire(c, 1, true);
}

enum { TTL_REMAINING_S, TTL_REMAINING_MS, TTL_ABSOLUTE_S, TTL_ABSOLUTE_MS };

static void keys_ttl(client *c, int form)
{
    shoal_ns *ns = client_namespace(c);
    store_value v;
    if (ns == NULL || key_read(c, ns, c->argv[1], c->lengths[1], true, &v) != 0)
        return;
    if (!v.found) {
        resp_add_integer(&c->out, -2);
        return;
    }
    if (v.expire_ms == VALUE_NO_EXPIRY) {
        resp_add_integer(&c->out, -1);
        return;
    }
    long long remaining = v.expire_ms - command_now_ms(c);
    if (remaining < 0)
        remaining = 0;
    switch (form) {
    case TTL_REMAINING_S:
        resp_add_integer(&c->out, (remaining + 500) / 1000);
        break;
    case TTL_REMAINING_MS:
        resp_add_integer(&c->out, remaining);
        break;
    case TTL_ABSOLUTE_S:
        resp_add_integer(&c->out, v.expire_ms / 1000);
        break;
    default:
        resp_add_integer(&c->out, v.expire_ms);
        break;
    }
}

COMMAND_HANDLER(cmd_ttl)
{
    keys_ttl(c, TTL_REMAINING_S);
}

COMMAND_HANDLER(cmd_pttl)
{
    keys_ttl(c, TTL_REMAINING_MS);
}

COMMAND_HANDLER(cmd_expiretime)
{
    keys_ttl(c, TTL_ABSOLUTE_S);
}

COMMAND_HANDLER(cmd_pexpiretime)
{
    keys_ttl(c, TTL_ABSOLUTE_MS);
}

COMMAND_HANDLER(cmd_persist)
{
    shoal_ns *ns = client_namespace(c);
    store_value v;
    if (ns == NULL || key_read(c, ns, c->argv[1], c->lengths[1], false, &v) != 0)
        return;
    if (!v.found || v.expire_ms == VALUE_NO_EXPIRY) {
        store_value_release(&v);
        resp_add_integer(&c->out, 0);
        return;
    }
    int result = store_txn_put(&c->txn, ns, c->argv[1], c->lengths[1], v.type, VALUE_NO_EXPIRY,
                               v.data, v.length);
    store_value_release(&v);
    if (result != 0) {
        reply_engine_error(c, result);
        return;
    }
    resp_add_integer(&c->out, 1);
}
