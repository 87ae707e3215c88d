/*
 * dump.c -- `shoal dump DIR` and `shoal load DIR`: a database's logical contents (tenants
 * with their quotas, namespaces, every key and value) in a portable, versioned file, and
 * back.
 *
 * Purpose. The files under DIR are the engine's working format: sharded, compressed, tied
 * to a shard count and to the log. A dump is the interchange format: independent of shards,
 * streams and seqs, readable on any machine, checked end to end, and a function of the
 * contents alone, so two databases that hold the same tenants, namespaces and keys give
 * byte-identical dumps (a dump, a load and a second dump compare equal).
 *
 * Format, version 1 (docs/FORMAT.md, "Dump format", has the tables). All integers
 * little-endian. A 16-byte header: magic "SHOALDMP", u32 version (1), u32 flags (0). Then
 * records, each: u8 type, u32 payload length, the payload, u32 masked CRC-32C of the type,
 * the length and the payload. Types:
 *   1 tenant     u16 name length, name, u64 max keys, u64 max bytes, u64 max ops per second
 *   2 namespace  u32 tenant (index among the file's tenant records), u8 kind, u8 placement,
 *                u16 name length, name
 *   3 entry      u32 namespace (index among the file's namespace records), u32 key length,
 *                key, value (the rest of the payload)
 *   4 end        u64 tenants, u64 namespaces, u64 entries
 * Tenants come first, then namespaces, then entries grouped by namespace in index order and
 * in strictly ascending key order within a namespace (memcmp order, a prefix first), then one
 * end record, then nothing.
 *
 * Invariants:
 *   1. dump reads one snapshot: the file is a consistent image of the database at one seq.
 *   2. load validates the whole file (every checksum, every rule above, the end record's
 *      counts) before it opens the database; a malformed file changes nothing and exits 1
 *      with the offset and the rule it breaks.
 *   3. load refuses, before writing anything, a namespace that exists in DIR with another
 *      tenant or kind than the file gives it.
 *   4. While loading, the file's tenants have no limits (a rate or key quota cannot stop a
 *      load halfway, and no one else can use the directory: load holds it open); their
 *      quotas from the file are set after the last key. The default tenant has no limits
 *      by definition: a file that gives it some is malformed.
 *   5. Keys are written in atomic batches (CLI_DUMP_BATCH_KEYS keys or CLI_DUMP_BATCH_BYTES
 *      bytes). A failure while writing (a disk error, say) leaves the batches before it;
 *      loading the same file again is idempotent (every key is overwritten with its value).
 *
 * How it is tested: tests/cli/cli_durable.sh loads a generated file with several tenants,
 * quotas and namespaces, dumps it, loads the dump into a new directory, dumps again and
 * compares the two dumps byte for byte; it also feeds load a truncated file, a file with a
 * flipped byte and one with keys out of order, and checks each is refused with exit 1 and
 * that the target directory gained nothing.
 */
#include "cli.h"

#include "shoal.h"

#include "durability/crc32c.h"
#include "durability/encoding.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CLI_DUMP_MAGIC "SHOALDMP"
#define CLI_DUMP_VERSION 1u
#define CLI_DUMP_HEADER_SIZE 16u
#define CLI_DUMP_RECORD_OVERHEAD 9u /* type, length, CRC */

enum cli_dump_type {
    CLI_DUMP_TENANT = 1,
    CLI_DUMP_NAMESPACE = 2,
    CLI_DUMP_ENTRY = 3,
    CLI_DUMP_END = 4,
};

/* The largest payload any record can have: an entry with the largest key and value. */
#define CLI_DUMP_MAX_PAYLOAD ((uint64_t)8 + SHOAL_MAX_KEY + SHOAL_MAX_VALUE)
#define CLI_DUMP_BATCH_KEYS 1000u
#define CLI_DUMP_BATCH_BYTES (4u * 1024 * 1024)
/* The rate the engine accepts at most (db.c, quota_valid); beyond it only "unlimited". */
#define CLI_DUMP_MAX_RATE (UINT64_MAX / 2000000000ull)

/* ---- writing -------------------------------------------------------------------------------- */

typedef struct cli_dump_writer {
    FILE *file;
    const char *name;
    bool failed;
} cli_dump_writer;

static void cli_dump_write_bytes(cli_dump_writer *w, const void *data, size_t len)
{
    if (!w->failed && len && fwrite(data, 1, len, w->file) != len)
        w->failed = true;
}

/* Writes one record whose payload is the concatenation of up to three parts (an entry's
 * fixed fields, its key and its value go straight from the engine's memory). */
static void cli_dump_write_record(cli_dump_writer *w, uint8_t type, const void *a, size_t a_len,
                                  const void *b, size_t b_len, const void *c, size_t c_len)
{
    uint8_t head[5];
    head[0] = type;
    encoding_put_u32(head + 1, (uint32_t)(a_len + b_len + c_len));
    uint32_t crc = crc32c_extend(0, head, sizeof head);
    crc = crc32c_extend(crc, a, a_len);
    crc = crc32c_extend(crc, b, b_len);
    crc = crc32c_extend(crc, c, c_len);
    uint8_t tail[4];
    encoding_put_u32(tail, crc32c_mask(crc));
    cli_dump_write_bytes(w, head, sizeof head);
    cli_dump_write_bytes(w, a, a_len);
    cli_dump_write_bytes(w, b, b_len);
    cli_dump_write_bytes(w, c, c_len);
    cli_dump_write_bytes(w, tail, sizeof tail);
}

static void cli_dump_write_tenant(cli_dump_writer *w, const shoal_tenant_stats *t)
{
    uint8_t payload[2 + SHOAL_MAX_NAME + 24];
    size_t len = strlen(t->name);
    encoding_put_u16(payload, (uint16_t)len);
    memcpy(payload + 2, t->name, len);
    encoding_put_u64(payload + 2 + len, t->quota.max_keys);
    encoding_put_u64(payload + 10 + len, t->quota.max_bytes);
    encoding_put_u64(payload + 18 + len, t->quota.max_ops_per_second);
    cli_dump_write_record(w, CLI_DUMP_TENANT, payload, 26 + len, NULL, 0, NULL, 0);
}

static void cli_dump_write_namespace(cli_dump_writer *w, const shoal_ns_info *info)
{
    uint8_t payload[8 + SHOAL_MAX_NAME];
    size_t len = strlen(info->name);
    encoding_put_u32(payload, info->tenant);
    payload[4] = (uint8_t)info->kind;
    payload[5] = (uint8_t)info->placement;
    encoding_put_u16(payload + 6, (uint16_t)len);
    memcpy(payload + 8, info->name, len);
    cli_dump_write_record(w, CLI_DUMP_NAMESPACE, payload, 8 + len, NULL, 0, NULL, 0);
}

/* Writes every key of one namespace at snap; adds them to *entries. */
static int cli_dump_namespace_entries(cli_dump_writer *w, shoal_db *db, const shoal_snapshot *snap,
                                      const shoal_ns_info *info, uint32_t index, uint64_t *entries)
{
    shoal_ns *ns;
    int rc = shoal_ns_open(db, info->name, NULL, &ns);
    if (rc != 0)
        return rc;
    shoal_iter_options o = {.snap = snap};
    shoal_iter *it;
    rc = shoal_iter_new(ns, &o, &it);
    if (rc != 0) {
        shoal_ns_close(ns);
        return rc;
    }
    while (!w->failed && (rc = shoal_iter_next(it)) == 1) {
        size_t klen, vlen;
        const void *key = shoal_iter_key(it, &klen);
        const void *value = shoal_iter_value(it, &vlen);
        uint8_t fixed[8];
        encoding_put_u32(fixed, index);
        encoding_put_u32(fixed + 4, (uint32_t)klen);
        cli_dump_write_record(w, CLI_DUMP_ENTRY, fixed, sizeof fixed, key, klen, value, vlen);
        (*entries)++;
    }
    shoal_iter_free(it);
    shoal_ns_close(ns);
    return rc < 0 ? rc : 0;
}

/* Writes the whole dump of db (invariant 1). Returns 0 or a SHOAL_E* code; write errors
 * are left in w->failed. */
static int cli_dump_database(cli_dump_writer *w, shoal_db *db)
{
    uint8_t header[CLI_DUMP_HEADER_SIZE];
    memcpy(header, CLI_DUMP_MAGIC, 8);
    encoding_put_u32(header + 8, CLI_DUMP_VERSION);
    encoding_put_u32(header + 12, 0);
    cli_dump_write_bytes(w, header, sizeof header);

    shoal_snapshot *snap;
    int rc = shoal_snapshot_take(db, &snap);
    if (rc != 0)
        return rc;
    shoal_db_stats stats;
    uint64_t tenants = 0, namespaces = 0, entries = 0;
    rc = shoal_stats(db, &stats);
    /* Tenant ids are 0 .. tenants - 1 (tenants are never dropped), so a tenant's id is its
     * index in the file. */
    for (uint32_t id = 0; rc == 0 && id < stats.tenants; id++) {
        shoal_tenant_stats t;
        rc = shoal_stats_tenant(db, id, &t);
        if (rc == 0) {
            cli_dump_write_tenant(w, &t);
            tenants++;
        }
    }
    size_t count = 0;
    shoal_ns_info *list = NULL;
    if (rc == 0)
        rc = shoal_ns_list(db, UINT32_MAX, NULL, 0, &count);
    if (rc == 0 && count) {
        list = calloc(count, sizeof *list);
        size_t again = 0;
        rc = list ? shoal_ns_list(db, UINT32_MAX, list, count, &again) : SHOAL_ENOMEM;
        if (rc == 0 && again != count)
            rc = SHOAL_EBUSY; /* nothing else has the database open: cannot happen */
    }
    for (size_t i = 0; rc == 0 && i < count; i++) {
        cli_dump_write_namespace(w, &list[i]);
        namespaces++;
    }
    for (size_t i = 0; rc == 0 && !w->failed && i < count; i++)
        rc = cli_dump_namespace_entries(w, db, snap, &list[i], (uint32_t)i, &entries);
    free(list);
    shoal_snapshot_release(snap);
    if (rc == 0) {
        uint8_t end[24];
        encoding_put_u64(end, tenants);
        encoding_put_u64(end + 8, namespaces);
        encoding_put_u64(end + 16, entries);
        cli_dump_write_record(w, CLI_DUMP_END, end, sizeof end, NULL, 0, NULL, 0);
        fprintf(stderr, "shoal dump: %llu tenant(s), %llu namespace(s), %llu key(s)\n",
                (unsigned long long)tenants, (unsigned long long)namespaces,
                (unsigned long long)entries);
    }
    return rc;
}

/* True when dir holds a database (a MANIFEST), so that dump and stats never create one. */
static bool cli_dump_is_database(const char *dir)
{
    char path[4200];
    struct stat st;
    snprintf(path, sizeof path, "%s/MANIFEST", dir);
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int cli_open_existing(const char *tool, const char *dir, shoal_db **db)
{
    *db = NULL;
    if (!cli_dump_is_database(dir)) {
        fprintf(stderr, "shoal %s: %s: not a Shoal database (no MANIFEST)\n", tool, dir);
        return 2;
    }
    int rc = shoal_open(dir, NULL, db);
    if (rc == SHOAL_EBUSY) {
        fprintf(stderr, "shoal %s: %s: in use (another process has it open)\n", tool, dir);
        return 2;
    }
    if (rc != 0) {
        const char *detail = shoal_error_detail();
        fprintf(stderr, "shoal %s: %s: %s%s%s\n", tool, dir, shoal_strerror(rc),
                detail[0] ? ": " : "", detail);
        return rc == SHOAL_ECORRUPT ? 1 : 2;
    }
    return 0;
}

static void cli_dump_usage(FILE *out)
{
    fprintf(out, "usage: shoal dump DIR [--out FILE]\n"
                 "  Writes the database in DIR (tenants, quotas, namespaces, every key and\n"
                 "  value, at one snapshot) in the portable dump format (docs/FORMAT.md) to\n"
                 "  FILE, or to standard output when it is not a terminal.\n");
}

int cli_dump(int argc, char **argv)
{
    const char *dir = NULL, *out_path = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            cli_dump_usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--out") == 0 && i + 1 < argc && !out_path) {
            out_path = argv[++i];
        } else if (argv[i][0] != '-' && !dir) {
            dir = argv[i];
        } else {
            fprintf(stderr, "shoal dump: bad argument '%s'\n", argv[i]);
            cli_dump_usage(stderr);
            return 2;
        }
    }
    if (!dir) {
        cli_dump_usage(stderr);
        return 2;
    }
    if (!out_path && isatty(STDOUT_FILENO)) {
        fprintf(stderr, "shoal dump: refusing to write a binary dump to a terminal; use --out "
                        "FILE or redirect standard output\n");
        return 2;
    }
    shoal_db *db;
    int status = cli_open_existing("dump", dir, &db);
    if (status != 0)
        return status;
    cli_dump_writer w = {.file = stdout, .name = "standard output"};
    if (out_path) {
        w.file = fopen(out_path, "wb");
        w.name = out_path;
        if (!w.file) {
            fprintf(stderr, "shoal dump: %s: %s\n", out_path, strerror(errno));
            shoal_close(db);
            return 2;
        }
    }
    int rc = cli_dump_database(&w, db);
    if (rc != 0)
        fprintf(stderr, "shoal dump: %s: %s\n", dir, shoal_strerror(rc));
    if (fflush(w.file) != 0 || (out_path && fsync(fileno(w.file)) != 0))
        w.failed = true;
    if (out_path && fclose(w.file) != 0)
        w.failed = true;
    if (w.failed)
        fprintf(stderr, "shoal dump: writing %s failed: %s\n", w.name, strerror(errno));
    int closed = shoal_close(db);
    if (closed != 0)
        fprintf(stderr, "shoal dump: closing %s: %s\n", dir, shoal_strerror(closed));
    if (rc != 0 || w.failed) {
        if (out_path)
            unlink(out_path); /* never leave a partial dump that looks whole */
        return 1;
    }
    return 0;
}

/* ---- reading --------------------------------------------------------------------------------- */

typedef struct cli_dump_reader {
    FILE *file;
    uint64_t offset; /* of the next record */
    uint8_t *payload;
    size_t cap;
    char error[512];
} cli_dump_reader;

static int cli_dump_malformed(cli_dump_reader *r, uint64_t offset, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int cli_dump_malformed(cli_dump_reader *r, uint64_t offset, const char *fmt, ...)
{
    int n = snprintf(r->error, sizeof r->error, "at offset %llu: ", (unsigned long long)offset);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->error + n, sizeof r->error - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

static int cli_dump_read_header(cli_dump_reader *r)
{
    uint8_t header[CLI_DUMP_HEADER_SIZE];
    size_t got = fread(header, 1, sizeof header, r->file);
    if (got != sizeof header || memcmp(header, CLI_DUMP_MAGIC, 8) != 0)
        return cli_dump_malformed(r, 0, "not a Shoal dump (no SHOALDMP header)");
    uint32_t version = encoding_get_u32(header + 8);
    if (version != CLI_DUMP_VERSION)
        return cli_dump_malformed(r, 8, "dump format version %u; this tool reads version %u",
                                  version, CLI_DUMP_VERSION);
    if (encoding_get_u32(header + 12) != 0)
        return cli_dump_malformed(r, 12, "unknown flags");
    r->offset = CLI_DUMP_HEADER_SIZE;
    return 0;
}

/* Reads the next record and verifies its checksum. Returns 1 with the record, 0 at the end
 * of the file exactly between records, or -1 (r->error says why). */
static int cli_dump_read_record(cli_dump_reader *r, uint8_t *type, const uint8_t **payload,
                                size_t *len)
{
    uint8_t head[5];
    size_t got = fread(head, 1, sizeof head, r->file);
    if (got == 0 && feof(r->file))
        return 0;
    if (got != sizeof head)
        return cli_dump_malformed(r, r->offset, "the file ends inside a record header");
    uint32_t length = encoding_get_u32(head + 1);
    if (head[0] < CLI_DUMP_TENANT || head[0] > CLI_DUMP_END)
        return cli_dump_malformed(r, r->offset, "unknown record type %u", head[0]);
    if (length > CLI_DUMP_MAX_PAYLOAD)
        return cli_dump_malformed(r, r->offset, "record length %u is beyond any record's", length);
    if (length + 1u > r->cap) {
        size_t cap = r->cap ? r->cap : 4096;
        while (cap < length + 1u)
            cap *= 2;
        uint8_t *grown = realloc(r->payload, cap);
        if (!grown)
            return cli_dump_malformed(r, r->offset, "out of memory for a %u-byte record", length);
        r->payload = grown;
        r->cap = cap;
    }
    uint8_t tail[4];
    if (fread(r->payload, 1, length, r->file) != length ||
        fread(tail, 1, sizeof tail, r->file) != sizeof tail)
        return cli_dump_malformed(r, r->offset, "the file ends inside a record");
    uint32_t crc = crc32c_extend(crc32c_extend(0, head, sizeof head), r->payload, length);
    if (crc32c_unmask(encoding_get_u32(tail)) != crc)
        return cli_dump_malformed(r, r->offset, "checksum mismatch (the record is damaged)");
    *type = head[0];
    *payload = r->payload;
    *len = length;
    r->offset += CLI_DUMP_RECORD_OVERHEAD + (uint64_t)length;
    return 1;
}

/* What the validation pass learns: the catalog part of the file and its counts. */
typedef struct cli_load_tenant {
    char name[SHOAL_MAX_NAME + 1];
    shoal_quota quota;
    uint32_t id; /* in the target database, once created or found */
} cli_load_tenant;

typedef struct cli_load_namespace {
    char name[SHOAL_MAX_NAME + 1];
    uint32_t tenant;
    shoal_ns_kind kind;
    shoal_placement placement;
    shoal_ns *handle;
} cli_load_namespace;

typedef struct cli_load_plan {
    cli_load_tenant *tenants;
    size_t tenant_count, tenant_cap;
    cli_load_namespace *namespaces;
    size_t namespace_count, namespace_cap;
    uint64_t entries, bytes;
} cli_load_plan;

static void cli_load_plan_free(cli_load_plan *p)
{
    for (size_t i = 0; i < p->namespace_count; i++)
        shoal_ns_close(p->namespaces[i].handle);
    free(p->tenants);
    free(p->namespaces);
}

/* Grows an array of size elements to hold one more. */
static bool cli_load_reserve(void **array, size_t *cap, size_t count, size_t size)
{
    if (count < *cap)
        return true;
    size_t grown_cap = *cap ? *cap * 2 : 16;
    void *grown = realloc(*array, grown_cap * size);
    if (!grown)
        return false;
    *array = grown;
    *cap = grown_cap;
    return true;
}

static bool cli_load_name(const uint8_t *p, size_t len, char *out)
{
    if (len == 0 || len > SHOAL_MAX_NAME || memchr(p, 0, len))
        return false;
    memcpy(out, p, len);
    out[len] = 0;
    return true;
}

static int cli_load_tenant_record(cli_dump_reader *r, cli_load_plan *p, uint64_t at,
                                  const uint8_t *payload, size_t len)
{
    if (p->namespace_count || p->entries)
        return cli_dump_malformed(r, at, "a tenant record after the namespaces or entries");
    size_t name_len = len >= 2 ? encoding_get_u16(payload) : 0;
    if (len < 2 || len != 2 + name_len + 24)
        return cli_dump_malformed(r, at, "a tenant record of the wrong length");
    if (!cli_load_reserve((void **)&p->tenants, &p->tenant_cap, p->tenant_count,
                          sizeof *p->tenants))
        return cli_dump_malformed(r, at, "out of memory");
    cli_load_tenant *t = &p->tenants[p->tenant_count];
    memset(t, 0, sizeof *t);
    if (!cli_load_name(payload + 2, name_len, t->name))
        return cli_dump_malformed(r, at, "a tenant name must be 1..%d bytes without NUL",
                                  SHOAL_MAX_NAME);
    t->quota.max_keys = encoding_get_u64(payload + 2 + name_len);
    t->quota.max_bytes = encoding_get_u64(payload + 10 + name_len);
    t->quota.max_ops_per_second = encoding_get_u64(payload + 18 + name_len);
    if (t->quota.max_ops_per_second != SHOAL_UNLIMITED &&
        t->quota.max_ops_per_second > CLI_DUMP_MAX_RATE)
        return cli_dump_malformed(r, at, "tenant \"%s\": an operation rate beyond the largest",
                                  t->name);
    if (strcmp(t->name, "default") == 0 &&
        (t->quota.max_keys != SHOAL_UNLIMITED || t->quota.max_bytes != SHOAL_UNLIMITED ||
         t->quota.max_ops_per_second != SHOAL_UNLIMITED))
        return cli_dump_malformed(r, at, "the default tenant cannot have limits");
    for (size_t i = 0; i < p->tenant_count; i++)
        if (strcmp(p->tenants[i].name, t->name) == 0)
            return cli_dump_malformed(r, at, "tenant \"%s\" appears twice", t->name);
    p->tenant_count++;
    return 0;
}

static int cli_load_namespace_record(cli_dump_reader *r, cli_load_plan *p, uint64_t at,
                                     const uint8_t *payload, size_t len)
{
    if (p->entries)
        return cli_dump_malformed(r, at, "a namespace record after the entries");
    size_t name_len = len >= 8 ? encoding_get_u16(payload + 6) : 0;
    if (len < 8 || len != 8 + name_len)
        return cli_dump_malformed(r, at, "a namespace record of the wrong length");
    if (!cli_load_reserve((void **)&p->namespaces, &p->namespace_cap, p->namespace_count,
                          sizeof *p->namespaces))
        return cli_dump_malformed(r, at, "out of memory");
    cli_load_namespace *ns = &p->namespaces[p->namespace_count];
    memset(ns, 0, sizeof *ns);
    ns->tenant = encoding_get_u32(payload);
    ns->kind = (shoal_ns_kind)payload[4];
    ns->placement = (shoal_placement)payload[5];
    if (!cli_load_name(payload + 8, name_len, ns->name))
        return cli_dump_malformed(r, at, "a namespace name must be 1..%d bytes without NUL",
                                  SHOAL_MAX_NAME);
    if (ns->tenant >= p->tenant_count)
        return cli_dump_malformed(r, at, "namespace \"%s\" names tenant %u of %zu", ns->name,
                                  ns->tenant, p->tenant_count);
    if (ns->kind != SHOAL_KIND_KV)
        return cli_dump_malformed(r, at, "namespace \"%s\": unknown kind %u", ns->name, payload[4]);
    if (ns->placement != SHOAL_PLACE_PINNED && ns->placement != SHOAL_PLACE_SPREAD)
        return cli_dump_malformed(r, at, "namespace \"%s\": unknown placement %u", ns->name,
                                  payload[5]);
    p->namespace_count++;
    return 0;
}

static int cli_load_compare_names(const void *a, const void *b)
{
    return strcmp(((const cli_load_namespace *)a)->name, ((const cli_load_namespace *)b)->name);
}

/* Entry order: namespace index nondecreasing, keys strictly ascending within one. */
typedef struct cli_load_order {
    uint32_t ns;
    uint8_t *key;
    size_t klen;
    bool any;
} cli_load_order;

static int cli_load_entry_record(cli_dump_reader *r, cli_load_plan *p, cli_load_order *order,
                                 uint64_t at, const uint8_t *payload, size_t len)
{
    if (len < 8)
        return cli_dump_malformed(r, at, "an entry record of the wrong length");
    uint32_t ns = encoding_get_u32(payload);
    uint32_t klen = encoding_get_u32(payload + 4);
    if (ns >= p->namespace_count)
        return cli_dump_malformed(r, at, "an entry of namespace %u of %zu", ns, p->namespace_count);
    if (klen == 0 || klen > SHOAL_MAX_KEY || klen > len - 8)
        return cli_dump_malformed(r, at, "an entry's key length %u is out of range", klen);
    size_t vlen = len - 8 - klen;
    if (vlen > SHOAL_MAX_VALUE)
        return cli_dump_malformed(r, at, "an entry's value is longer than the largest");
    const uint8_t *key = payload + 8;
    if (order->any && ns < order->ns)
        return cli_dump_malformed(r, at, "entries are not grouped by namespace in order");
    if (order->any && ns == order->ns) {
        size_t common = order->klen < klen ? order->klen : klen;
        int cmp = memcmp(order->key, key, common);
        if (cmp > 0 || (cmp == 0 && order->klen >= klen))
            return cli_dump_malformed(r, at,
                                      "keys of namespace \"%s\" are not in strictly ascending "
                                      "order (a key out of order or repeated)",
                                      p->namespaces[ns].name);
    }
    memcpy(order->key, key, klen);
    order->klen = klen;
    order->ns = ns;
    order->any = true;
    p->entries++;
    p->bytes += (uint64_t)klen + vlen;
    return 0;
}

static int cli_load_end_record(cli_dump_reader *r, cli_load_plan *p, uint64_t at,
                               const uint8_t *payload, size_t len)
{
    if (len != 24)
        return cli_dump_malformed(r, at, "an end record of the wrong length");
    uint64_t tenants = encoding_get_u64(payload), namespaces = encoding_get_u64(payload + 8),
             entries = encoding_get_u64(payload + 16);
    if (tenants != p->tenant_count || namespaces != p->namespace_count || entries != p->entries)
        return cli_dump_malformed(r, at,
                                  "the end record counts %llu tenants, %llu namespaces and %llu "
                                  "entries; the file holds %zu, %zu and %llu",
                                  (unsigned long long)tenants, (unsigned long long)namespaces,
                                  (unsigned long long)entries, p->tenant_count, p->namespace_count,
                                  (unsigned long long)p->entries);
    return 0;
}

/* Invariant 2: reads the whole file and checks every rule. Returns 0 or -1 (r->error). */
static int cli_load_validate(cli_dump_reader *r, cli_load_plan *p)
{
    if (cli_dump_read_header(r) != 0)
        return -1;
    cli_load_order order = {.key = malloc(SHOAL_MAX_KEY)};
    if (!order.key)
        return cli_dump_malformed(r, 0, "out of memory");
    bool ended = false, sorted = false;
    int rc;
    uint8_t type;
    const uint8_t *payload;
    size_t len;
    while ((rc = cli_dump_read_record(r, &type, &payload, &len)) == 1) {
        uint64_t at = r->offset - CLI_DUMP_RECORD_OVERHEAD - len;
        if (ended) {
            rc = cli_dump_malformed(r, at, "records after the end record");
            break;
        }
        if (type != CLI_DUMP_TENANT && type != CLI_DUMP_NAMESPACE && !sorted) {
            /* The catalog part is complete: names must be unique. */
            sorted = true;
            cli_load_namespace *copy = malloc((p->namespace_count + 1) * sizeof *copy);
            if (!copy) {
                rc = cli_dump_malformed(r, at, "out of memory");
                break;
            }
            if (p->namespace_count > 1) {
                memcpy(copy, p->namespaces, p->namespace_count * sizeof *copy);
                qsort(copy, p->namespace_count, sizeof *copy, cli_load_compare_names);
            }
            for (size_t i = 1; rc == 1 && i < p->namespace_count; i++)
                if (strcmp(copy[i - 1].name, copy[i].name) == 0)
                    rc = cli_dump_malformed(r, CLI_DUMP_HEADER_SIZE,
                                            "namespace \"%s\" appears twice", copy[i].name);
            free(copy);
            if (rc != 1)
                break;
        }
        switch (type) {
        case CLI_DUMP_TENANT:
            rc = cli_load_tenant_record(r, p, at, payload, len);
            break;
        case CLI_DUMP_NAMESPACE:
            rc = cli_load_namespace_record(r, p, at, payload, len);
            break;
        case CLI_DUMP_ENTRY:
            rc = cli_load_entry_record(r, p, &order, at, payload, len);
            break;
        default:
            rc = cli_load_end_record(r, p, at, payload, len);
            ended = true;
            break;
        }
        if (rc != 0)
            break;
    }
    free(order.key);
    if (rc < 0)
        return -1;
    if (ferror(r->file))
        return cli_dump_malformed(r, r->offset, "read error: %s", strerror(errno));
    if (!ended)
        return cli_dump_malformed(r, r->offset,
                                  "the file ends without its end record (it is cut short)");
    return 0;
}

/* ---- loading --------------------------------------------------------------------------------- */

static int cli_load_fail(const char *what, const char *name, int rc)
{
    fprintf(stderr, "shoal load: %s \"%s\": %s\n", what, name, shoal_strerror(rc));
    return -1;
}

/* Invariant 3, then tenants and namespaces (tenants without limits for now: invariant 4). */
static int cli_load_catalog(shoal_db *db, cli_load_plan *p)
{
    for (size_t i = 0; i < p->tenant_count; i++) {
        cli_load_tenant *t = &p->tenants[i];
        int rc = shoal_tenant_find(db, t->name, &t->id);
        if (rc == SHOAL_ENOTFOUND)
            t->id = UINT32_MAX; /* created below */
        else if (rc != 0)
            return cli_load_fail("tenant", t->name, rc);
    }
    for (size_t i = 0; i < p->namespace_count; i++) {
        cli_load_namespace *ns = &p->namespaces[i];
        shoal_ns *handle;
        int rc = shoal_ns_open(db, ns->name, NULL, &handle);
        if (rc == SHOAL_ENOTFOUND)
            continue;
        if (rc != 0)
            return cli_load_fail("namespace", ns->name, rc);
        shoal_ns_info info;
        rc = shoal_ns_info_get(handle, &info);
        shoal_ns_close(handle);
        if (rc != 0)
            return cli_load_fail("namespace", ns->name, rc);
        uint32_t tenant = p->tenants[ns->tenant].id;
        if (info.kind != ns->kind || tenant == UINT32_MAX || info.tenant != tenant) {
            fprintf(stderr,
                    "shoal load: namespace \"%s\" exists in the database with another tenant or "
                    "kind than the file gives it; nothing was loaded\n",
                    ns->name);
            return -1;
        }
        if (info.placement != ns->placement)
            fprintf(stderr,
                    "shoal load: namespace \"%s\" exists with another placement; its keys are "
                    "loaded into it as it is\n",
                    ns->name);
    }
    for (size_t i = 0; i < p->tenant_count; i++) {
        cli_load_tenant *t = &p->tenants[i];
        if (t->id != UINT32_MAX) {
            if (t->id == 0)
                continue;
            shoal_quota unlimited;
            shoal_quota_unlimited(&unlimited);
            int rc = shoal_tenant_set_quota(db, t->id, &unlimited);
            if (rc != 0)
                return cli_load_fail("tenant", t->name, rc);
            continue;
        }
        int rc = shoal_tenant_create(db, t->name, NULL, &t->id);
        if (rc != 0)
            return cli_load_fail("tenant", t->name, rc);
    }
    for (size_t i = 0; i < p->namespace_count; i++) {
        cli_load_namespace *ns = &p->namespaces[i];
        shoal_ns_config cfg = {
            .kind = ns->kind, .placement = ns->placement, .tenant = p->tenants[ns->tenant].id};
        int rc = shoal_ns_open(db, ns->name, &cfg, &ns->handle);
        if (rc != 0)
            return cli_load_fail("namespace", ns->name, rc);
    }
    return 0;
}

static int cli_load_quotas(shoal_db *db, const cli_load_plan *p)
{
    for (size_t i = 0; i < p->tenant_count; i++) {
        const cli_load_tenant *t = &p->tenants[i];
        if (t->id == 0)
            continue;
        int rc = shoal_tenant_set_quota(db, t->id, &t->quota);
        if (rc != 0)
            return cli_load_fail("quota of tenant", t->name, rc);
    }
    return 0;
}

/* Second pass over the validated file: the entries, in batches (invariant 5). */
static int cli_load_entries(shoal_db *db, cli_dump_reader *r, cli_load_plan *p)
{
    if (fseeko(r->file, 0, SEEK_SET) != 0 || cli_dump_read_header(r) != 0) {
        fprintf(stderr, "shoal load: cannot read the file again: %s\n", strerror(errno));
        return -1;
    }
    shoal_batch *batch;
    int rc = shoal_batch_new(db, &batch);
    if (rc != 0)
        return cli_load_fail("batch", "new", rc);
    shoal_write_options wo = {.sync = SHOAL_SYNC_NONE}; /* closing syncs and checkpoints */
    size_t pending_bytes = 0;
    uint64_t loaded = 0;
    uint8_t type;
    const uint8_t *payload;
    size_t len;
    int got = 0;
    while (rc == 0 && (got = cli_dump_read_record(r, &type, &payload, &len)) == 1) {
        if (type != CLI_DUMP_ENTRY)
            continue;
        uint32_t ns = encoding_get_u32(payload), klen = encoding_get_u32(payload + 4);
        rc = shoal_batch_put(batch, p->namespaces[ns].handle, payload + 8, klen, payload + 8 + klen,
                             len - 8 - klen);
        pending_bytes += len;
        if (rc == 0 && (shoal_batch_count(batch) >= CLI_DUMP_BATCH_KEYS ||
                        pending_bytes >= CLI_DUMP_BATCH_BYTES)) {
            loaded += shoal_batch_count(batch);
            rc = shoal_batch_commit(batch, &wo, NULL);
            shoal_batch_clear(batch);
            pending_bytes = 0;
        }
    }
    if (rc == 0 && shoal_batch_count(batch)) {
        loaded += shoal_batch_count(batch);
        rc = shoal_batch_commit(batch, &wo, NULL);
    }
    shoal_batch_free(batch);
    if (rc != 0) {
        fprintf(stderr,
                "shoal load: writing failed after %llu of %llu keys: %s (loading the same file "
                "again completes it)\n",
                (unsigned long long)loaded, (unsigned long long)p->entries, shoal_strerror(rc));
        return -1;
    }
    if (got < 0) {
        fprintf(stderr, "shoal load: the file changed while loading: %s\n", r->error);
        return -1;
    }
    return 0;
}

static void cli_load_usage(FILE *out)
{
    fprintf(out,
            "usage: shoal load DIR [--in FILE] [--shards N]\n"
            "  Loads a dump (docs/FORMAT.md, \"Dump format\") from FILE or standard input into\n"
            "  the database in DIR (created if missing; --shards sets a new one's shard count).\n"
            "  Tenants and namespaces are created as needed. The whole file is validated\n"
            "  before anything is written: a malformed file changes nothing (exit 1).\n");
}

/* Copies a stream that cannot be read twice (a pipe) into an anonymous temporary file. */
static FILE *cli_load_spool(FILE *in)
{
    FILE *copy = tmpfile();
    if (!copy)
        return NULL;
    char buffer[65536];
    size_t n;
    while ((n = fread(buffer, 1, sizeof buffer, in)) > 0)
        if (fwrite(buffer, 1, n, copy) != n) {
            fclose(copy);
            return NULL;
        }
    if (ferror(in) || fflush(copy) != 0 || fseeko(copy, 0, SEEK_SET) != 0) {
        fclose(copy);
        return NULL;
    }
    return copy;
}

int cli_load(int argc, char **argv)
{
    const char *dir = NULL, *in_path = NULL;
    uint64_t shards = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            cli_load_usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--in") == 0 && i + 1 < argc && !in_path) {
            in_path = argv[++i];
        } else if (strcmp(argv[i], "--shards") == 0 && i + 1 < argc) {
            char *end;
            errno = 0;
            shards = strtoull(argv[++i], &end, 10);
            if (errno || *end || shards == 0 || shards > SHOAL_MAX_SHARDS ||
                (shards & (shards - 1))) {
                fprintf(stderr, "shoal load: --shards wants a power of two, 1..%d\n",
                        SHOAL_MAX_SHARDS);
                return 2;
            }
        } else if (argv[i][0] != '-' && !dir) {
            dir = argv[i];
        } else {
            fprintf(stderr, "shoal load: bad argument '%s'\n", argv[i]);
            cli_load_usage(stderr);
            return 2;
        }
    }
    if (!dir) {
        cli_load_usage(stderr);
        return 2;
    }
    FILE *in = in_path ? fopen(in_path, "rb") : stdin;
    if (!in) {
        fprintf(stderr, "shoal load: %s: %s\n", in_path, strerror(errno));
        return 2;
    }
    struct stat st;
    if (fstat(fileno(in), &st) != 0 || !S_ISREG(st.st_mode)) {
        FILE *copy = cli_load_spool(in);
        if (in != stdin)
            fclose(in);
        if (!copy) {
            fprintf(stderr, "shoal load: cannot keep a copy of the input: %s\n", strerror(errno));
            return 2;
        }
        in = copy;
    }
    const char *name = in_path ? in_path : "standard input";

    cli_dump_reader r = {.file = in};
    cli_load_plan plan = {0};
    int status = 1;
    shoal_db *db = NULL;
    if (cli_load_validate(&r, &plan) != 0) {
        fprintf(stderr, "shoal load: %s is not a valid dump %s; nothing was loaded\n", name,
                r.error);
        goto out;
    }
    shoal_options *opts = NULL;
    int rc = shoal_options_new(&opts);
    if (rc == 0 && shards)
        rc = shoal_options_set(opts, SHOAL_OPT_SHARDS, shards);
    if (rc == 0)
        rc = shoal_open(dir, opts, &db);
    shoal_options_free(opts);
    if (rc != 0) {
        const char *detail = shoal_error_detail();
        fprintf(stderr, "shoal load: %s: %s%s%s\n", dir,
                rc == SHOAL_EBUSY ? "in use (another process has it open)" : shoal_strerror(rc),
                detail[0] ? ": " : "", detail);
        status = 2;
        goto out;
    }
    if (cli_load_catalog(db, &plan) == 0 && cli_load_entries(db, &r, &plan) == 0 &&
        cli_load_quotas(db, &plan) == 0) {
        status = 0;
        fprintf(stderr, "shoal load: %zu tenant(s), %zu namespace(s), %llu key(s) into %s\n",
                plan.tenant_count, plan.namespace_count, (unsigned long long)plan.entries, dir);
    }
out:
    cli_load_plan_free(&plan);
    if (db) {
        rc = shoal_close(db);
        if (rc != 0) {
            fprintf(stderr, "shoal load: closing %s: %s\n", dir, shoal_strerror(rc));
            status = 1;
        }
    }
    free(r.payload);
    if (in != stdin)
        fclose(in);
    return status;
}
