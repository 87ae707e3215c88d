/*
 * cmd_bits.c -- the bitmap commands on strings: SETBIT GETBIT BITCOUNT BITPOS BITOP.
 *
 * A string is a bitmap whose bit 0 is the most significant bit of byte 0, as in Redis.
 * Semantics and error texts follow Redis 7 (BYTE and BIT units for BITCOUNT and BITPOS
 * included). Like the other string commands, a handler that reads before it writes does
 * so through key_read inside the command's store_txn attempt, so SETBIT and BITOP are
 * atomic against other clients (command.c reruns a handler whose commit conflicts), and
 * SETBIT keeps the key's expiry; BITOP's destination gets none, as in Redis.
 *
 * Tested by tests/integration/test_bits.py: random sequences of these commands sent to
 * shoal-server and to Debian's redis-server side by side must get the same replies.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "text.h"

/* Bits addressable in a string of the largest size (512 MiB). */
#define BITS_MAX_OFFSET ((4ll << 30) - 1)

/* Parses argument i as a bit offset 0..2^32-1; replies Redis's error. */
static bool bits_offset(client *c, size_t i, long long *offset)
{
    if (!text_to_long_long(c->argv[i], c->lengths[i], offset) || *offset < 0 ||
        *offset > BITS_MAX_OFFSET) {
        resp_add_error(&c->out, "ERR bit offset is not an integer or out of range");
        return false;
    }
    return true;
}

static int bits_get(const char *data, size_t length, long long bit)
{
    size_t byte = (size_t)(bit >> 3);
    return byte < length && ((unsigned char)data[byte] >> (7 - (bit & 7))) & 1;
}

COMMAND_HANDLER(cmd_setbit)
{
    long long offset, bit;
    if (!bits_offset(c, 2, &offset))
        return;
    if (!text_to_long_long(c->argv[3], c->lengths[3], &bit) || (bit != 0 && bit != 1)) {
        resp_add_error(&c->out, "ERR bit is not an integer or out of range");
        return;
    }
    shoal_ns *ns = client_namespace(c);
    store_value v;
    if (ns == NULL || !string_read_for_update(c, ns, &v))
        return;
    size_t byte = (size_t)(offset >> 3);
    int previous = v.found ? bits_get(v.data, v.length, offset) : 0;
    if (v.found && byte < v.length && previous == bit) {
        /* Nothing changes, so nothing is written: a WATCH of the key holds (Redis 7). */
        store_value_release(&v);
        resp_add_integer(&c->out, previous);
        return;
    }
    unsigned char mask = (unsigned char)(0x80u >> (offset & 7));
    unsigned char old = v.found && byte < v.length ? (unsigned char)v.data[byte] : 0;
    char updated = (char)(bit ? old | mask : old & (unsigned char)~mask);
    int result = string_write_at(c, ns, &v, byte, &updated, 1);
    if (result != 0)
        reply_engine_error(c, result);
    else
        resp_add_integer(&c->out, previous);
}

COMMAND_HANDLER(cmd_getbit)
{
    long long offset;
    if (!bits_offset(c, 2, &offset))
        return;
    shoal_ns *ns = client_namespace(c);
    store_value v;
    if (ns == NULL || !string_read_for_update(c, ns, &v))
        return;
    resp_add_integer(&c->out, v.found ? bits_get(v.data, v.length, offset) : 0);
    store_value_release(&v);
}

/* Reads the BYTE or BIT argument at index i, if the command has one. */
static bool bits_unit(client *c, size_t i, bool *in_bits)
{
    *in_bits = false;
    if (c->argc <= i)
        return true;
    *in_bits = arg_is(c, i, "BIT");
    if (*in_bits || arg_is(c, i, "BYTE"))
        return true;
    resp_add_error(&c->out, "ERR syntax error");
    return false;
}

/* A range [*start, *end] of BITCOUNT or BITPOS, in bits: the start at argument index
 * first, the end after it if end_given, then BYTE or BIT; negative indexes count from the
 * end and the range is clamped to the string of length bytes, as Redis does. Redis 7.0
 * parses them in a different order for each command (which decides which error a bad
 * request gets), and BITCOUNT alone answers an empty range at once when both indexes are
 * negative and the start is after the end. Returns false after replying an error;
 * *empty when the range holds nothing. */
static bool bits_range(client *c, size_t first, bool end_given, bool bitcount, size_t length,
                       long long *start, long long *end, bool *empty)
{
    size_t unit = first + (end_given ? 2 : 1);
    bool in_bits;
    if (c->argc > unit + 1 || (!end_given && c->argc > first + 1)) {
        resp_add_error(&c->out, "ERR syntax error");
        return false;
    }
    if (!arg_long_long(c, first, start))
        return false;
    if (!bitcount && !bits_unit(c, unit, &in_bits))
        return false;
    if (end_given && !arg_long_long(c, first + 1, end))
        return false;
    *empty = bitcount && *start < 0 && *end < 0 && *start > *end;
    if (*empty)
        return true;
    if (bitcount && !bits_unit(c, unit, &in_bits))
        return false;
    long long total = (long long)length * (in_bits ? 8 : 1);
    if (!end_given)
        *end = total - 1;
    if (*start < 0)
        *start += total;
    if (*end < 0)
        *end += total;
    if (*start < 0)
        *start = 0;
    if (*end < 0)
        *end = 0;
    if (*end >= total)
        *end = total - 1;
    *empty = total == 0 || *start > *end;
    if (!in_bits) {
        *start *= 8;
        *end = *end * 8 + 7;
    }
    return true;
}

/* Set bits among bits [start, end] of data. */
static long long bits_count(const unsigned char *data, long long start, long long end)
{
    long long count = 0;
    while (start <= end && (start & 7) != 0)
        count += bits_get((const char *)data, SIZE_MAX, start++);
    for (; start + 63 <= end; start += 64) {
        uint64_t word;
        memcpy(&word, data + (start >> 3), sizeof(word));
        count += __builtin_popcountll(word);
    }
    while (start <= end)
        count += bits_get((const char *)data, SIZE_MAX, start++);
    return count;
}

/* BITCOUNT key [start end [BYTE|BIT]] */
COMMAND_HANDLER(cmd_bitcount)
{
    shoal_ns *ns = client_namespace(c);
    store_value v;
    if (ns == NULL || !string_read_for_update(c, ns, &v))
        return;
    if (!v.found) {
        resp_add_integer(&c->out, 0); /* whatever the range, as Redis 7.0 */
        return;
    }
    size_t length = v.length;
    long long start = 0, end = (long long)length * 8 - 1;
    bool empty = length == 0;
    if (c->argc == 3) {
        resp_add_error(&c->out, "ERR syntax error");
    } else if (c->argc == 2 || bits_range(c, 2, true, true, length, &start, &end, &empty)) {
        resp_add_integer(&c->out,
                         empty ? 0 : bits_count((const unsigned char *)v.data, start, end));
    }
    store_value_release(&v);
}

/* BITPOS key bit [start [end [BYTE|BIT]]]: looking for a 0 with no end given, a string of
 * ones answers the first bit past it, as if zeros followed (Redis's rule). */
COMMAND_HANDLER(cmd_bitpos)
{
    long long bit;
    if (!arg_long_long(c, 2, &bit))
        return;
    if (bit != 0 && bit != 1) {
        resp_add_error(&c->out, "ERR The bit argument must be 1 or 0.");
        return;
    }
    shoal_ns *ns = client_namespace(c);
    store_value v;
    if (ns == NULL || !string_read_for_update(c, ns, &v))
        return;
    if (!v.found) {
        resp_add_integer(&c->out, bit ? -1 : 0); /* endless zeros, whatever the range */
        return;
    }
    size_t length = v.length;
    long long start = 0, end = (long long)length * 8 - 1;
    bool empty = length == 0, end_given = c->argc > 4;
    if (c->argc > 3 && !bits_range(c, 3, end_given, false, length, &start, &end, &empty)) {
        store_value_release(&v);
        return;
    }
    const unsigned char skip = bit ? 0x00 : 0xff; /* a byte holding no bit sought */
    long long found = -1;
    for (long long i = start; !empty && i <= end && found < 0;) {
        if ((i & 7) == 0 && i + 7 <= end && (unsigned char)v.data[i >> 3] == skip)
            i += 8;
        else if (bits_get(v.data, length, i) == bit)
            found = i;
        else
            i++;
    }
    if (found < 0 && bit == 0 && !end_given && !empty)
        found = end + 1;
    resp_add_integer(&c->out, found);
    store_value_release(&v);
}

/* BITOP AND|OR|XOR|NOT destkey key [key ...]: missing keys read as empty strings, shorter
 * ones as padded with zeros; an empty result deletes destkey. Replies the result's
 * length. */
COMMAND_HANDLER(cmd_bitop)
{
    enum { AND, OR, XOR, NOT } op;
    if (arg_is(c, 1, "AND"))
        op = AND;
    else if (arg_is(c, 1, "OR"))
        op = OR;
    else if (arg_is(c, 1, "XOR"))
        op = XOR;
    else if (arg_is(c, 1, "NOT"))
        op = NOT;
    else {
        resp_add_error(&c->out, "ERR syntax error");
        return;
    }
    if (op == NOT && c->argc != 4) {
        resp_add_error(&c->out, "ERR BITOP NOT must be called with a single source key.");
        return;
    }
    shoal_ns *ns = client_namespace(c);
    if (ns == NULL)
        return;
    size_t sources = c->argc - 3;
    store_value *values = calloc(sources, sizeof(*values));
    if (values == NULL) {
        reply_engine_error(c, SHOAL_ENOMEM);
        return;
    }
    size_t read = 0, length = 0;
    bool ok = true;
    for (; ok && read < sources; read++) {
        store_value *v = &values[read];
        ok = key_read(c, ns, c->argv[3 + read], c->lengths[3 + read], false, v) == 0;
        if (ok && v->found && v->foreign) {
            resp_add_error(&c->out,
                           "WRONGTYPE Operation against a key holding the wrong kind of value");
            ok = false;
        }
        if (ok && v->found && v->length > length)
            length = v->length;
    }
    unsigned char *out = ok && length > 0 ? malloc(length) : NULL;
    if (ok && length > 0 && out == NULL) {
        reply_engine_error(c, SHOAL_ENOMEM);
        ok = false;
    }
    for (size_t i = 0; ok && i < length; i++) {
        unsigned char byte = 0;
        for (size_t s = 0; s < sources; s++) {
            const store_value *v = &values[s];
            unsigned char in = v->found && i < v->length ? (unsigned char)v->data[i] : 0;
            if (s == 0)
                byte = op == NOT ? (unsigned char)~in : in;
            else if (op == AND)
                byte &= in;
            else if (op == OR)
                byte |= in;
            else
                byte ^= in;
        }
        out[i] = byte;
    }
    int result = 0;
    if (ok)
        result = length > 0 ? store_txn_put(&c->txn, ns, c->argv[2], c->lengths[2],
                                             VALUE_TYPE_STRING, VALUE_NO_EXPIRY, out, length)
                            : store_txn_delete(&c->txn, ns, c->argv[2], c->lengths[2]);
    if (ok && result != 0)
        reply_engine_error(c, result);
    else if (ok)
        resp_add_integer(&c->out, (long long)length);
    free(out);
    for (size_t i = 0; i < read; i++)
        store_value_release(&values[i]);
    free(values);
}
