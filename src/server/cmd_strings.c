/*
 * cmd_strings.c -- the string commands: GET SET (NX XX GET EX PX EXAT PXAT KEEPTTL) SETNX
 * SETEX PSETEX GETSET GETDEL GETEX MGET MSET MSETNX APPEND STRLEN GETRANGE SETRANGE INCR
 * INCRBY INCRBYFLOAT DECR DECRBY (the bitmap commands are in cmd_bits.c).
 *
 * Every handler follows Redis 7's semantics and error texts. Handlers that read before
 * they write do so through key_read inside the command's store_txn attempt (the command
 * is flagged CMD_WRITE), so the read-modify-write is atomic against other clients: a
 * concurrent write to the key makes the commit fail and the dispatcher runs the handler
 * again (command.c). Invariant: a handler writes only replies and the txn's batch.
 * Tested by tests/integration/test_server.py, and by test_compat.py, which sends random
 * sequences of these commands to Debian's redis-server too and requires the same replies.
 */
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "text.h"

#define STRING_MAX_SIZE (512ll * 1024 * 1024)

COMMAND_HANDLER(cmd_get)
{
    shoal_ns *ns = client_namespace(c);
    store_value v;
    if (ns == NULL || key_read(c, ns, c->argv[1], c->lengths[1], false, &v) != 0)
        return;
    reply_value(c, &v);
    store_value_release(&v);
}

/* Parses an expiry argument into absolute milliseconds; replies Redis's error. */
static bool string_expiry(client *c, size_t i, long long unit_ms, bool absolute,
                          const char *command, int64_t *out)
{
    long long value;
    if (!arg_long_long(c, i, &value))
        return false;
    if (value <= 0 || (unit_ms == 1000 && value > LLONG_MAX / 1000)) {
        resp_add_errorf(&c->out, "ERR invalid expire time in '%s' command", command);
        return false;
    }
    long long ms = value * unit_ms;
    if (!absolute) {
        int64_t now = command_now_ms(c);
        if (ms > LLONG_MAX - now) {
            resp_add_errorf(&c->out, "ERR invalid expire time in '%s' command", command);
            return false;
        }
        ms += now;
    }
    *out = ms;
    return true;
}

enum { SET_NX = 1, SET_XX = 2, SET_GET = 4, SET_KEEPTTL = 8, SET_EXPIRY = 16 };

/* The common core of SET and its variants. Replies itself. */
static void string_set(client *c, int flags, int64_t expire_ms, bool reply_integer)
{
    shoal_ns *ns = client_namespace(c);
    if (ns == NULL)
        return;
    const char *key = c->argv[1];
    size_t key_length = c->lengths[1];
    const char *value = c->argv[2];
    size_t value_length = c->lengths[2];
    store_value old = {0};
    bool need_read = (flags & (SET_NX | SET_XX | SET_GET | SET_KEEPTTL)) != 0;
    if (need_read && key_read(c, ns, key, key_length, !(flags & SET_GET), &old) != 0)
        return;
    if (old.found && old.foreign && (flags & SET_GET)) {
        resp_add_error(&c->out, "WRONGTYPE Operation against a key holding the wrong kind of value");
        store_value_release(&old);
        return;
    }
    bool refused = ((flags & SET_NX) && old.found) || ((flags & SET_XX) && !old.found);
    if (!refused) {
        if (flags & SET_KEEPTTL)
            expire_ms = old.found ? old.expire_ms : VALUE_NO_EXPIRY;
        int result = store_txn_put(&c->txn, ns, key, key_length, VALUE_TYPE_STRING, expire_ms,
                                   value, value_length);
        if (result != 0) {
            store_value_release(&old);
            reply_engine_error(c, result);
            return;
        }
    }
    if (flags & SET_GET)
        reply_value(c, &old);
    else if (reply_integer)
        resp_add_integer(&c->out, refused ? 0 : 1);
    else if (refused)
        resp_add_null(&c->out);
    else
        resp_add_ok(&c->out);
    store_value_release(&old);
}

/* SET's options are all checked before its time is read, as in Redis (SET k v EX x
 * KEEPTTL is a syntax error, not a bad integer). */
COMMAND_HANDLER(cmd_set)
{
    int flags = 0;
    int64_t expire_ms = VALUE_NO_EXPIRY;
    size_t time_argument = 0;
    bool seconds = false, absolute = false;
    for (size_t i = 3; i < c->argc; i++) {
        bool has_next = i + 1 < c->argc;
        if (arg_is(c, i, "NX") && !(flags & SET_XX)) {
            flags |= SET_NX;
        } else if (arg_is(c, i, "XX") && !(flags & SET_NX)) {
            flags |= SET_XX;
        } else if (arg_is(c, i, "GET")) {
            flags |= SET_GET;
        } else if (arg_is(c, i, "KEEPTTL") && !(flags & SET_EXPIRY)) {
            flags |= SET_KEEPTTL;
        } else if (has_next && !(flags & (SET_EXPIRY | SET_KEEPTTL)) &&
                   (arg_is(c, i, "EX") || arg_is(c, i, "PX") || arg_is(c, i, "EXAT") ||
                    arg_is(c, i, "PXAT"))) {
            seconds = arg_is(c, i, "EX") || arg_is(c, i, "EXAT");
            absolute = arg_is(c, i, "EXAT") || arg_is(c, i, "PXAT");
            time_argument = ++i;
            flags |= SET_EXPIRY;
        } else {
            resp_add_error(&c->out, "ERR syntax error");
            return;
        }
    }
    if (time_argument != 0 &&
        !string_expiry(c, time_argument, seconds ? 1000 : 1, absolute, "set", &expire_ms))
        return;
    string_set(c, flags, expire_ms, false);
}

COMMAND_HANDLER(cmd_setnx)
{
    string_set(c, SET_NX, VALUE_NO_EXPIRY, true);
}

static void string_setex(client *c, long long unit_ms, const char *name)
{
    int64_t expire_ms;
    if (!string_expiry(c, 2, unit_ms, false, name, &expire_ms))
        return;
    /* SETEX key seconds value: move the value into place for string_set. */
    char *value = c->argv[3];
    size_t value_length = c->lengths[3];
    char *saved = c->argv[2];
    size_t saved_length = c->lengths[2];
    c->argv[2] = value;
    c->lengths[2] = value_length;
    string_set(c, 0, expire_ms, false);
    c->argv[2] = saved;
    c->lengths[2] = saved_length;
}

COMMAND_HANDLER(cmd_setex)
{
    string_setex(c, 1000, "setex");
}

COMMAND_HANDLER(cmd_psetex)
{
    string_setex(c, 1, "psetex");
}

COMMAND_HANDLER(cmd_getset)
{
    string_set(c, SET_GET, VALUE_NO_EXPIRY, false);
}

COMMAND_HANDLER(cmd_getdel)
{
    shoal_ns *ns = client_namespace(c);
    store_value v;
    if (ns == NULL || key_read(c, ns, c->argv[1], c->lengths[1], false, &v) != 0)
        return;
    if (v.found) {
        int result = store_txn_delete(&c->txn, ns, c->argv[1], c->lengths[1]);
        if (result != 0) {
            store_value_release(&v);
            reply_engine_error(c, result);
            return;
        }
    }
    reply_value(c, &v);
    store_value_release(&v);
}

/* GETEX key [EX|PX|EXAT|PXAT time | PERSIST]: the options' syntax is checked first, the
 * time only once the key is found (a missing key answers nil whatever it is), as Redis. */
COMMAND_HANDLER(cmd_getex)
{
    bool persist = false, change = false, seconds = false, absolute = false;
    size_t time_argument = 0;
    for (size_t i = 2; i < c->argc; i++) {
        if (arg_is(c, i, "PERSIST") && !change) {
            persist = change = true;
        } else if (i + 1 < c->argc && !change &&
                   (arg_is(c, i, "EX") || arg_is(c, i, "PX") || arg_is(c, i, "EXAT") ||
                    arg_is(c, i, "PXAT"))) {
            seconds = arg_is(c, i, "EX") || arg_is(c, i, "EXAT");
            absolute = arg_is(c, i, "EXAT") || arg_is(c, i, "PXAT");
            time_argument = ++i;
            change = true;
        } else {
            resp_add_error(&c->out, "ERR syntax error");
            return;
        }
    }
    shoal_ns *ns = client_namespace(c);
    store_value v;
    if (ns == NULL || key_read(c, ns, c->argv[1], c->lengths[1], false, &v) != 0)
        return;
    int64_t expire_ms = VALUE_NO_EXPIRY;
    if (v.found && time_argument != 0 &&
        !string_expiry(c, time_argument, seconds ? 1000 : 1, absolute, "getex", &expire_ms)) {
        store_value_release(&v);
        return;
    }
    if (v.found && change && !(persist && v.expire_ms == VALUE_NO_EXPIRY)) {
        bool past = !persist && expire_ms <= command_now_ms(c); /* deleted, as in Redis */
        int result = past ? store_txn_delete(&c->txn, ns, c->argv[1], c->lengths[1])
                          : store_txn_put(&c->txn, ns, c->argv[1], c->lengths[1],
                                          VALUE_TYPE_STRING, persist ? VALUE_NO_EXPIRY
                                                                     : expire_ms,
                                          v.data, v.length);
        if (result != 0) {
            store_value_release(&v);
            reply_engine_error(c, result);
            return;
        }
    }
    reply_value(c, &v);
    store_value_release(&v);
}

COMMAND_HANDLER(cmd_mget)
{
    shoal_ns *ns = client_namespace(c);
    if (ns == NULL)
        return;
    /* One snapshot for all the keys, so MGET sees one state, as on Redis. */
    shoal_snapshot *snap = NULL;
    if (!c->txn.active) {
        int result = shoal_snapshot_take(server.db, &snap);
        if (result != 0) {
            reply_engine_error(c, result);
            return;
        }
    }
    resp_add_array(&c->out, (long long)c->argc - 1);
    int64_t now = command_now_ms(c);
    for (size_t i = 1; i < c->argc; i++) {
        store_value v;
        int result = c->txn.active
                         ? store_txn_read(&c->txn, ns, c->argv[i], c->lengths[i], false, &v)
                         : store_read(ns, snap, c->argv[i], c->lengths[i], false, now, &v);
        if (result == SHOAL_EDROPPED || result == SHOAL_ECONFLICT) {
            reply_engine_error(c, result);
            break;
        }
        if (result != 0 || v.foreign)
            v.found = false; /* MGET answers nil for what it cannot read as a string */
        reply_value(c, &v);
        store_value_release(&v);
    }
    shoal_snapshot_release(snap);
}

static void string_mset(client *c, bool only_if_none)
{
    if (c->argc % 2 == 0) {
        resp_add_errorf(&c->out, "ERR wrong number of arguments for '%s' command",
                        only_if_none ? "msetnx" : "mset");
        return;
    }
    shoal_ns *ns = client_namespace(c);
    if (ns == NULL)
        return;
    if (only_if_none) {
        for (size_t i = 1; i < c->argc; i += 2) {
            store_value v;
            if (key_read(c, ns, c->argv[i], c->lengths[i], true, &v) != 0)
                return;
            if (v.found) {
                resp_add_integer(&c->out, 0);
                return;
            }
        }
    }
    for (size_t i = 1; i < c->argc; i += 2) {
        int result = store_txn_put(&c->txn, ns, c->argv[i], c->lengths[i], VALUE_TYPE_STRING,
                                   VALUE_NO_EXPIRY, c->argv[i + 1], c->lengths[i + 1]);
        if (result != 0) {
            reply_engine_error(c, result);
            return;
        }
    }
    if (only_if_none)
        resp_add_integer(&c->out, 1);
    else
        resp_add_ok(&c->out);
}

COMMAND_HANDLER(cmd_mset)
{
    string_mset(c, false);
}

COMMAND_HANDLER(cmd_msetnx)
{
    string_mset(c, true);
}

/* Reads the key for a read-modify-write; replies WRONGTYPE for foreign bytes. Returns
 * false when the handler must stop. */
bool string_read_for_update(client *c, shoal_ns *ns, store_value *v)
{
    if (key_read(c, ns, c->argv[1], c->lengths[1], false, v) != 0)
        return false;
    if (v->found && v->foreign) {
        resp_add_error(&c->out, "WRONGTYPE Operation against a key holding the wrong kind of value");
        store_value_release(v);
        return false;
    }
    return true;
}

int string_write_at(client *c, shoal_ns *ns, store_value *v, size_t offset, const char *data,
                    size_t data_length)
{
    size_t old_length = v->found ? v->length : 0;
    size_t needed = offset + data_length;
    size_t length = needed > old_length ? needed : old_length;
    char *updated = length <= STORE_MAX_PAYLOAD ? calloc(1, length ? length : 1) : NULL;
    int result = length > STORE_MAX_PAYLOAD ? SHOAL_ETOOBIG : updated ? 0 : SHOAL_ENOMEM;
    if (result == 0) {
        if (old_length > 0)
            memcpy(updated, v->data, old_length);
        memcpy(updated + offset, data, data_length);
        result = store_txn_put(&c->txn, ns, c->argv[1], c->lengths[1], VALUE_TYPE_STRING,
                               v->found ? v->expire_ms : VALUE_NO_EXPIRY, updated, length);
    }
    free(updated);
    store_value_release(v);
    return result;
}

/* APPEND and SETRANGE: string_write_at, replying the new length or the error. */
static void string_splice(client *c, shoal_ns *ns, store_value *v, size_t offset,
                          const char *data, size_t data_length)
{
    size_t old_length = v->found ? v->length : 0;
    size_t length = offset + data_length > old_length ? offset + data_length : old_length;
    int result = string_write_at(c, ns, v, offset, data, data_length);
    if (result != 0)
        reply_engine_error(c, result);
    else
        resp_add_integer(&c->out, (long long)length);
}

COMMAND_HANDLER(cmd_append)
{
    shoal_ns *ns = client_namespace(c);
    store_value v;
    if (ns == NULL || !string_read_for_update(c, ns, &v))
        return;
    size_t old_length = v.found ? v.length : 0;
    if ((long long)(old_length + c->lengths[2]) > STRING_MAX_SIZE) {
        store_value_release(&v);
        resp_add_error(&c->out, "ERR string exceeds maximum allowed size (proto-max-bulk-len)");
        return;
    }
    string_splice(c, ns, &v, old_length, c->argv[2], c->lengths[2]);
}

COMMAND_HANDLER(cmd_strlen)
{
    shoal_ns *ns = client_namespace(c);
    store_value v;
    if (ns == NULL || key_read(c, ns, c->argv[1], c->lengths[1], true, &v) != 0)
        return;
    if (v.found && v.foreign)
        resp_add_error(&c->out, "WRONGTYPE Operation against a key holding the wrong kind of value");
    else
        resp_add_integer(&c->out, v.found ? (long long)v.length : 0);
    store_value_release(&v);
}

COMMAND_HANDLER(cmd_getrange)
{
    long long start, end;
    if (!arg_long_long(c, 2, &start) || !arg_long_long(c, 3, &end))
        return;
    shoal_ns *ns = client_namespace(c);
    store_value v;
    if (ns == NULL || !string_read_for_update(c, ns, &v))
        return;
    long long length = v.found ? (long long)v.length : 0;
    if (start < 0 && end < 0 && start > end) {
        resp_add_bulk(&c->out, "", 0);
        store_value_release(&v);
        return;
    }
    if (start < 0)
        start += length;
    if (end < 0)
        end += length;
    if (start < 0)
        start = 0;
    if (end < 0)
        end = 0;
    if (end >= length)
        end = length - 1;
    if (length == 0 || start > end)
        resp_add_bulk(&c->out, "", 0);
    else
        resp_add_bulk(&c->out, v.data + start, (size_t)(end - start + 1));
    store_value_release(&v);
}

COMMAND_HANDLER(cmd_setrange)
{
    long long offset;
    if (!arg_long_long(c, 2, &offset))
        return;
    if (offset < 0) {
        resp_add_error(&c->out, "ERR offset is out of range");
        return;
    }
    shoal_ns *ns = client_namespace(c);
    store_value v;
    if (ns == NULL || !string_read_for_update(c, ns, &v))
        return;
    size_t old_length = v.found ? v.length : 0;
    if (c->lengths[3] == 0) { /* writes nothing, so no offset is too far (Redis) */
        resp_add_integer(&c->out, (long long)old_length);
        store_value_release(&v);
        return;
    }
    if (offset > STRING_MAX_SIZE - (long long)c->lengths[3]) { /* a huge offset: no overflow */
        store_value_release(&v);
        resp_add_error(&c->out, "ERR string exceeds maximum allowed size (proto-max-bulk-len)");
        return;
    }
    string_splice(c, ns, &v, (size_t)offset, c->argv[3], c->lengths[3]);
}

static void string_increment(client *c, long long delta)
{
    shoal_ns *ns = client_namespace(c);
    store_value v;
    if (ns == NULL || !string_read_for_update(c, ns, &v))
        return;
    long long current = 0;
    if (v.found && !text_to_long_long(v.data, v.length, &current)) {
        store_value_release(&v);
        resp_add_error(&c->out, "ERR value is not an integer or out of range");
        return;
    }
    if ((delta < 0 && current < 0 && delta < LLONG_MIN - current) ||
        (delta > 0 && current > 0 && delta > LLONG_MAX - current)) {
        store_value_release(&v);
        resp_add_error(&c->out, "ERR increment or decrement would overflow");
        return;
    }
    current += delta;
    char text[32];
    size_t length = text_from_long_long(current, text, sizeof(text));
    int result = store_txn_put(&c->txn, ns, c->argv[1], c->lengths[1], VALUE_TYPE_STRING,
                               v.found ? v.expire_ms : VALUE_NO_EXPIRY, text, length);
    store_value_release(&v);
    if (result != 0) {
        reply_engine_error(c, result);
        return;
    }
    resp_add_integer(&c->out, current);
}

COMMAND_HANDLER(cmd_incr)
{
    string_increment(c, 1);
}

COMMAND_HANDLER(cmd_decr)
{
    string_increment(c, -1);
}

COMMAND_HANDLER(cmd_incrby)
{
    long long delta;
    if (arg_long_long(c, 2, &delta))
        string_increment(c, delta);
}

COMMAND_HANDLER(cmd_decrby)
{
    long long delta;
    if (!arg_long_long(c, 2, &delta))
        return;
    if (delta == LLONG_MIN) {
        resp_add_error(&c->out, "ERR decrement would overflow");
        return;
    }
    string_increment(c, -delta);
}

COMMAND_HANDLER(cmd_incrbyfloat)
{
    long double delta;
    if (!text_to_long_double(c->argv[2], c->lengths[2], &delta)) {
        resp_add_error(&c->out, "ERR value is not a valid float");
        return;
    }
    shoal_ns *ns = client_namespace(c);
    store_value v;
    if (ns == NULL || !string_read_for_update(c, ns, &v))
        return;
    long double current = 0;
    if (v.found && !text_to_long_double(v.data, v.length, &current)) {
        store_value_release(&v);
        resp_add_error(&c->out, "ERR value is not a valid float");
        return;
    }
    current += delta;
    if (isnan(current) || isinf(current)) {
        store_value_release(&v);
        resp_add_error(&c->out, "ERR increment would produce NaN or Infinity");
        return;
    }
    char text[5 * 1024]; /* Redis's MAX_LONG_DOUBLE_CHARS: every finite long double, in
                            full, as Redis prints it (1e400 is 401 digits) */
    size_t length = text_from_long_double(current, text, sizeof(text));
    int result = store_txn_put(&c->txn, ns, c->argv[1], c->lengths[1], VALUE_TYPE_STRING,
                               v.found ? v.expire_ms : VALUE_NO_EXPIRY, text, length);
    store_value_release(&v);
    if (result != 0) {
        reply_engine_error(c, result);
        return;
    }
    resp_add_bulk(&c->out, text, length);
}

/* ---------------------------------------------------------------------------------------
 * LCS key1 key2 [LEN] [IDX] [MINMATCHLEN len] [WITHMATCHLEN]
 *
 * The classic dynamic programme: cell (i, j) of a (|a|+1) x (|b|+1) table holds the length
 * of the longest common subsequence of a's first i bytes and b's first j. The answer is
 * read back from the last cell towards the first, taking a byte wherever the two agree
 * and otherwise stepping towards the larger neighbour (a's side when it is strictly
 * larger, as Redis does, so both pick the same subsequence among equals). The walk meets
 * the matched bytes last to first; runs of them that are consecutive in both strings are
 * IDX's ranges, listed in that order. The table is transient memory, refused above
 * proto-max-bulk-len as in Redis.
 * ------------------------------------------------------------------------------------- */

typedef struct lcs_range {
    size_t a_start, a_end, b_start, b_end;
} lcs_range;

static bool lcs_options(client *c, bool *want_length, bool *want_index, long long *min_length,
                        bool *with_length)
{
    for (size_t i = 3; i < c->argc; i++) {
        if (arg_is(c, i, "LEN")) {
            *want_length = true;
        } else if (arg_is(c, i, "IDX")) {
            *want_index = true;
        } else if (arg_is(c, i, "WITHMATCHLEN")) {
            *with_length = true;
        } else if (arg_is(c, i, "MINMATCHLEN") && i + 1 < c->argc) {
            if (!arg_long_long(c, ++i, min_length))
                return false;
            if (*min_length < 0)
                *min_length = 0;
        } else {
            resp_add_error(&c->out, "ERR syntax error");
            return false;
        }
    }
    if (*want_length && *want_index) {
        resp_add_error(&c->out,
                       "ERR If you want both the length and indexes, please just use IDX.");
        return false;
    }
    return true;
}

static void lcs_reply_ranges(client *c, const lcs_range *ranges, size_t count,
                             bool with_length, size_t total)
{
    resp_add_map(&c->out, 2);
    resp_add_bulk_cstring(&c->out, "matches");
    resp_add_array(&c->out, (long long)count);
    for (size_t r = 0; r < count; r++) {
        resp_add_array(&c->out, with_length ? 3 : 2);
        resp_add_array(&c->out, 2);
        resp_add_integer(&c->out, (long long)ranges[r].a_start);
        resp_add_integer(&c->out, (long long)ranges[r].a_end);
        resp_add_array(&c->out, 2);
        resp_add_integer(&c->out, (long long)ranges[r].b_start);
        resp_add_integer(&c->out, (long long)ranges[r].b_end);
        if (with_length)
            resp_add_integer(&c->out, (long long)(ranges[r].a_end - ranges[r].a_start + 1));
    }
    resp_add_bulk_cstring(&c->out, "len");
    resp_add_integer(&c->out, (long long)total);
}

/* Walks the table back from its last cell: fills common (the subsequence, if asked) and
 * the ranges of at least min_length bytes (if asked). Returns false when out of memory. */
static bool lcs_walk(const uint32_t *table, const char *a, size_t a_length, const char *b,
                     size_t b_length, char *common, lcs_range **ranges, size_t *range_count,
                     size_t min_length)
{
    size_t columns = b_length + 1, left = table[a_length * columns + b_length];
    size_t capacity = 0;
    bool open = false;
    lcs_range current = {0};
    size_t i = a_length, j = b_length;
    for (;;) {
        bool match = i > 0 && j > 0 && a[i - 1] == b[j - 1];
        if (match && open && current.a_start == i && current.b_start == j) {
            current.a_start = i - 1; /* the run goes on backwards */
            current.b_start = j - 1;
        }
        if (open && (!match || current.a_start != i - 1)) {
            /* The run ended: keep it if long enough. */
            open = false;
            if (ranges != NULL && current.a_end - current.a_start + 1 >= min_length) {
                if (*range_count == capacity) {
                    capacity = capacity ? capacity * 2 : 16;
                    lcs_range *grown = realloc(*ranges, capacity * sizeof(**ranges));
                    if (grown == NULL)
                        return false;
                    *ranges = grown;
                }
                (*ranges)[(*range_count)++] = current;
            }
        }
        if (i == 0 || j == 0)
            return true;
        if (match) {
            if (!open) {
                current = (lcs_range){i - 1, i - 1, j - 1, j - 1};
                open = true;
            }
            if (common != NULL)
                common[--left] = a[i - 1];
            i--;
            j--;
        } else if (table[(i - 1) * columns + j] > table[i * columns + j - 1]) {
            i--;
        } else {
            j--;
        }
    }
}

COMMAND_HANDLER(cmd_lcs)
{
    bool want_length = false, want_index = false, with_length = false;
    long long min_length = 0;
    if (!lcs_options(c, &want_length, &want_index, &min_length, &with_length))
        return;
    shoal_ns *ns = client_namespace(c);
    if (ns == NULL)
        return;
    store_value values[2] = {{0}};
    bool ok = true;
    for (int k = 0; ok && k < 2; k++) {
        ok = key_read(c, ns, c->argv[1 + k], c->lengths[1 + k], false, &values[k]) == 0;
        if (ok && values[k].found && values[k].foreign) {
            resp_add_error(&c->out,
                           "WRONGTYPE Operation against a key holding the wrong kind of value");
            ok = false;
        }
    }
    const char *a = values[0].found ? values[0].data : "";
    const char *b = values[1].found ? values[1].data : "";
    size_t a_length = values[0].found ? values[0].length : 0;
    size_t b_length = values[1].found ? values[1].length : 0;
    uint32_t *table = NULL;
    if (ok) {
        /* Cells as Redis counts them, against the same limit. */
        unsigned long long cells = (unsigned long long)(a_length + 1) * (b_length + 1);
        unsigned long long limit =
            (unsigned long long)atomic_load(&server.config.proto_max_bulk_len);
        if (a_length >= UINT32_MAX || b_length >= UINT32_MAX ||
            cells > limit / sizeof(uint32_t)) {
            resp_add_error(&c->out, "ERR Insufficient memory, transient memory for LCS exceeds "
                                    "proto-max-bulk-len");
            ok = false;
        } else if ((table = malloc((size_t)cells * sizeof(uint32_t))) == NULL) {
            reply_engine_error(c, SHOAL_ENOMEM);
            ok = false;
        }
    }
    if (!ok) {
        store_value_release(&values[0]);
        store_value_release(&values[1]);
        return;
    }
    size_t columns = b_length + 1;
    for (size_t i = 0; i <= a_length; i++) {
        for (size_t j = 0; j <= b_length; j++) {
            uint32_t *cell = &table[i * columns + j];
            if (i == 0 || j == 0)
                *cell = 0;
            else if (a[i - 1] == b[j - 1])
                *cell = table[(i - 1) * columns + j - 1] + 1;
            else {
                uint32_t up = table[(i - 1) * columns + j], back = table[i * columns + j - 1];
                *cell = up > back ? up : back;
            }
        }
    }
    size_t total = table[a_length * columns + b_length];
    if (want_length) {
        resp_add_integer(&c->out, (long long)total);
    } else {
        char *common = want_index ? NULL : malloc(total + 1);
        lcs_range *ranges = NULL;
        size_t range_count = 0;
        if ((!want_index && common == NULL) ||
            !lcs_walk(table, a, a_length, b, b_length, common, want_index ? &ranges : NULL,
                      &range_count, (size_t)min_length)) {
            reply_engine_error(c, SHOAL_ENOMEM);
        } else if (want_index) {
            lcs_reply_ranges(c, ranges, range_count, with_length, total);
        } else {
            resp_add_bulk(&c->out, common, total);
        }
        free(common);
        free(ranges);
    }
    free(table);
    store_value_release(&values[0]);
    store_value_release(&values[1]);
}
