/*
 * acl.c -- users, as Redis ACL users, each acting as one engine tenant.
 *
 * Purpose
 * -------
 * A user is a name, passwords, on/off, an admin right, and the tenant it acts as. The
 * tenant owns the user's logical databases (namespaces "<tenant>/<n>") and carries the
 * quotas; several users may share a tenant. The "default" user acts as the "default"
 * tenant (engine tenant 0), is an admin, and has requirepass as its password (none when
 * requirepass is empty, so connections start authenticated, as in Redis).
 *
 * Rule syntax (config "user <name> <rule>..." and ACL SETUSER <name> <rule>...)
 * -----------------------------------------------------------------------------
 *   on | off               enabled or not (new users start off, as in Redis)
 *   ><password>            add a password          <<password>   remove one (it must exist)
 *   #<sha256 hex>          add a password by hash  !<sha256 hex> remove one by hash
 *   nopass | resetpass     any password works | forget every password (and nopass)
 *   tenant=<name>          the tenant it acts as (created on first use; no '/')
 *   max-keys=<n>           tenant quota: live keys           (or "unlimited")
 *   max-bytes=<size>       tenant quota: key + value bytes   (accepts 10mb etc.)
 *   max-ops=<n>            tenant quota: operations per second
 *   admin | +@all          may run administrative commands (CONFIG SET, ACL SETUSER,
 *                          SHUTDOWN, CLIENT KILL/LIST of others, INFO of all tenants)
 *   -@admin | -@all        may not
 *   reset                  off, no passwords, not admin, tenant = the user's own name
 *   ~* %RW~* &* allkeys allchannels allcommands +@<other> -@<other>   accepted, ignored
 *
 * Invariants
 * ----------
 * 1. A user's tenant is fixed in the connection at AUTH: a later ACL SETUSER never moves
 *    a live connection into another tenant's keys.
 * 2. Only the SHA-256 of a password is kept (as in Redis; ACL LIST and GETUSER show it in
 *    hex), and a given password's hash is compared with every stored one whole
 *    (CRYPTO_memcmp), in time independent of where they differ.
 * 3. A rule list is applied whole or not at all: on a bad rule the user is unchanged.
 * 4. The user table's lock is never held across an engine call: binding a tenant
 *    (shoal_tenant_create, shoal_tenant_set_quota) rewrites the engine's MANIFEST in
 *    durable mode, and AUTH on every event loop takes that lock. acl_setuser itself blocks
 *    on the disk, so the server calls it on the catalog worker (catalog.c), never on an
 *    event loop; a user becomes visible only once its tenant exists.
 *
 * Testing
 * -------
 * tests/integration/test_tenants.py declares users in a config file, authenticates as
 * each, and checks isolation and quota errors; ACL SETUSER/GETUSER/DELUSER/WHOAMI/LIST
 * are exercised there too, and compared with Redis's replies in test_compat_raw.py.
 */
#include "acl.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "text.h"

#define ACL_MAX_USERS 1024
#define ACL_MAX_PASSWORDS 8
#define ACL_PASSWORD_MAX 256
#define ACL_HASH_BYTES 32 /* SHA-256, as Redis keeps passwords */

typedef struct acl_user {
    char name[ACL_NAME_MAX];
    char tenant_name[SHOAL_MAX_NAME + 1];
    uint32_t tenant;
    bool enabled, nopass, admin;
    unsigned char passwords[ACL_MAX_PASSWORDS][ACL_HASH_BYTES]; /* SHA-256 of each */
    size_t password_count;
    shoal_quota quota;
    uint64_t version; /* bumped by every change, under the write lock */
} acl_user;

/* lock guards the users and is never held across an engine call; change_lock makes ACL
 * SETUSERs one at a time and is held across their tenant changes (lock order: change_lock
 * before lock). */
static struct {
    pthread_rwlock_t lock;
    pthread_mutex_t change_lock;
    shoal_db *db;
    acl_user *users;
    size_t count;
} acl_state = {.lock = PTHREAD_RWLOCK_INITIALIZER, .change_lock = PTHREAD_MUTEX_INITIALIZER};

static acl_user *acl_find_locked(const char *name, size_t length)
{
    for (size_t i = 0; i < acl_state.count; i++)
        if (strlen(acl_state.users[i].name) == length &&
            memcmp(acl_state.users[i].name, name, length) == 0)
            return &acl_state.users[i];
    return NULL;
}

/* Finds or creates the engine tenant and sets its quota. */
static int acl_bind_tenant(acl_user *u, char *error, size_t error_size)
{
    int result = shoal_tenant_find(acl_state.db, u->tenant_name, &u->tenant);
    if (result == SHOAL_ENOTFOUND)
        result = shoal_tenant_create(acl_state.db, u->tenant_name, &u->quota, &u->tenant);
    else if (result == 0 && u->tenant != 0)
        result = shoal_tenant_set_quota(acl_state.db, u->tenant, &u->quota);
    if (result != 0)
        snprintf(error, error_size, "ERR cannot use tenant '%s': %s", u->tenant_name,
                 shoal_strerror(result));
    return result == 0 ? 0 : -1;
}

static bool acl_parse_quota(const char *text, bool memory, uint64_t *out)
{
    if (!strcasecmp(text, "unlimited")) {
        *out = SHOAL_UNLIMITED;
        return true;
    }
    unsigned long long value;
    long long plain;
    if (memory) {
        if (!text_to_memory(text, &value))
            return false;
    } else {
        if (!text_to_long_long(text, strlen(text), &plain) || plain < 0)
            return false;
        value = (unsigned long long)plain;
    }
    *out = value;
    return true;
}

/* The SHA-256 of a password: what a user keeps of it, and what ACL LIST and ACL GETUSER
 * show (hex), as in Redis. */
static bool acl_hash(const void *password, size_t length, unsigned char out[ACL_HASH_BYTES])
{
    unsigned int written = 0;
    return EVP_Digest(password, length, out, &written, EVP_sha256(), NULL) == 1 &&
           written == ACL_HASH_BYTES;
}

/* Reads the 64 lowercase hex digits of a #<hash> or !<hash> rule. */
static bool acl_hash_parse(const char *hex, unsigned char out[ACL_HASH_BYTES])
{
    if (strlen(hex) != 2 * ACL_HASH_BYTES)
        return false;
    for (size_t i = 0; i < 2 * ACL_HASH_BYTES; i++) {
        char ch = hex[i];
        int digit = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
        if (digit < 0)
            return false;
        if (i % 2 == 0)
            out[i / 2] = (unsigned char)(digit << 4);
        else
            out[i / 2] |= (unsigned char)digit;
    }
    return true;
}

static void acl_hash_format(const unsigned char hash[ACL_HASH_BYTES],
                            char out[2 * ACL_HASH_BYTES + 1])
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < ACL_HASH_BYTES; i++) {
        out[2 * i] = digits[hash[i] >> 4];
        out[2 * i + 1] = digits[hash[i] & 15];
    }
    out[2 * ACL_HASH_BYTES] = '\0';
}

static const char acl_bad_hash[] = "The password hash must be exactly 64 characters and "
                                   "contain only lowercase hexadecimal characters";

/* Adds a password's hash (once); false when the user has ACL_MAX_PASSWORDS already. */
static bool acl_password_add(acl_user *u, const unsigned char hash[ACL_HASH_BYTES])
{
    for (size_t p = 0; p < u->password_count; p++)
        if (memcmp(u->passwords[p], hash, ACL_HASH_BYTES) == 0)
            return true;
    if (u->password_count == ACL_MAX_PASSWORDS)
        return false;
    memcpy(u->passwords[u->password_count++], hash, ACL_HASH_BYTES);
    return true;
}

/* Removes a password's hash; false when the user has no such password. */
static bool acl_password_remove(acl_user *u, const unsigned char hash[ACL_HASH_BYTES])
{
    for (size_t p = 0; p < u->password_count; p++) {
        if (memcmp(u->passwords[p], hash, ACL_HASH_BYTES) == 0) {
            memmove(u->passwords[p], u->passwords[u->password_count - 1], ACL_HASH_BYTES);
            u->password_count--;
            return true;
        }
    }
    return false;
}

/* Applies rules to a copy of the user; the caller installs the copy on success. */
static int acl_apply_rules(acl_user *u, const char *const *rules, const size_t *lengths,
                           size_t count, bool *tenant_changed, char *error, size_t error_size)
{
    for (size_t i = 0; i < count; i++) {
        const char *reason;
        /* A NUL-terminated copy; passwords (hashed at once) may be of any length. */
        char small[ACL_PASSWORD_MAX + 64];
        char *rule = lengths[i] < sizeof(small) ? small : malloc(lengths[i] + 1);
        if (rule == NULL) {
            snprintf(error, error_size, "ERR out of memory");
            return -1;
        }
        memcpy(rule, rules[i], lengths[i]);
        rule[lengths[i]] = '\0';
        if (!strcasecmp(rule, "on")) {
            u->enabled = true;
        } else if (!strcasecmp(rule, "off")) {
            u->enabled = false;
        } else if (strchr("><#!", rule[0]) != NULL && rule[0] != '\0') {
            /* A password by value (>, <) or by its hash (#, !), added or removed. */
            unsigned char hash[ACL_HASH_BYTES];
            bool by_value = rule[0] == '>' || rule[0] == '<';
            bool add = rule[0] == '>' || rule[0] == '#';
            if (by_value ? !acl_hash(rule + 1, lengths[i] - 1, hash)
                         : !acl_hash_parse(rule + 1, hash)) {
                reason = by_value ? "out of memory" : acl_bad_hash;
                goto refused;
            }
            if (add && !acl_password_add(u, hash)) {
                reason = "too many passwords";
                goto refused;
            }
            if (!add && !acl_password_remove(u, hash)) {
                reason = "The password you are trying to remove from the user does not exist";
                goto refused;
            }
            if (add)
                u->nopass = false;
        } else if (!strcasecmp(rule, "nopass")) {
            u->nopass = true;
            u->password_count = 0;
        } else if (!strcasecmp(rule, "resetpass")) {
            u->nopass = false;
            u->password_count = 0;
        } else if (!strncasecmp(rule, "tenant=", 7)) {
            const char *name = rule + 7;
            if (name[0] == '\0' || strchr(name, '/') != NULL || strlen(name) > 200) {
                snprintf(error, error_size, "ERR tenant names are 1..200 bytes without '/'");
                if (rule != small)
                    free(rule);
                return -1;
            }
            if (strcmp(u->tenant_name, name) != 0) {
                snprintf(u->tenant_name, sizeof(u->tenant_name), "%s", name);
                *tenant_changed = true;
            }
        } else if (!strncasecmp(rule, "max-keys=", 9)) {
            if (!acl_parse_quota(rule + 9, false, &u->quota.max_keys))
                goto syntax;
            *tenant_changed = true;
        } else if (!strncasecmp(rule, "max-bytes=", 10)) {
            if (!acl_parse_quota(rule + 10, true, &u->quota.max_bytes))
                goto syntax;
            *tenant_changed = true;
        } else if (!strncasecmp(rule, "max-ops=", 8)) {
            if (!acl_parse_quota(rule + 8, false, &u->quota.max_ops_per_second))
                goto syntax;
            *tenant_changed = true;
        } else if (!strcasecmp(rule, "admin") || !strcasecmp(rule, "+@all") ||
                   !strcasecmp(rule, "allcommands") || !strcasecmp(rule, "+@admin")) {
            u->admin = true;
        } else if (!strcasecmp(rule, "-@admin") || !strcasecmp(rule, "-@all") ||
                   !strcasecmp(rule, "nocommands")) {
            u->admin = false;
        } else if (!strcasecmp(rule, "reset")) {
            u->enabled = false;
            u->nopass = false;
            u->password_count = 0;
            u->admin = false;
        } else if (rule[0] == '~' || rule[0] == '%' || rule[0] == '&' || rule[0] == '+' ||
                   rule[0] == '-' || !strcasecmp(rule, "allkeys") ||
                   !strcasecmp(rule, "allchannels") || !strcasecmp(rule, "resetkeys") ||
                   !strcasecmp(rule, "resetchannels")) {
            /* Key, channel and command-category rules: every user has every key of its own
             * tenant and the non-admin commands, so these change nothing. */
        } else {
            goto syntax;
        }
        if (rule != small)
            free(rule);
        continue;
    syntax:
        reason = "Syntax error";
    refused:
        snprintf(error, error_size, "ERR Error in ACL SETUSER modifier '%.200s': %s", rule,
                 reason);
        if (rule != small)
            free(rule);
        return -1;
    }
    return 0;
}

/* Builds the user that ACL SETUSER name rules... makes, from the current one (or a new
 * one) into *candidate. The read lock is held. */
static int acl_prepare_locked(const char *name, size_t name_length, const char *const *rules,
                              const size_t *rule_lengths, size_t count, acl_user *candidate,
                              bool *tenant_changed, char *error, size_t error_size)
{
    if (name_length == 0 || name_length >= ACL_NAME_MAX || memchr(name, ' ', name_length)) {
        snprintf(error, error_size, "ERR Usernames can't contain spaces or null characters");
        return -1;
    }
    acl_user *existing = acl_find_locked(name, name_length);
    if (existing != NULL) {
        *candidate = *existing;
    } else {
        memset(candidate, 0, sizeof(*candidate));
        memcpy(candidate->name, name, name_length);
        candidate->name[name_length] = '\0';
        shoal_quota_unlimited(&candidate->quota);
        /* A user's tenant defaults to a tenant of its own name: isolation by default. */
        snprintf(candidate->tenant_name, sizeof(candidate->tenant_name), "%s", candidate->name);
        if (strchr(candidate->tenant_name, '/') != NULL)
            candidate->tenant_name[0] = '\0';
    }
    *tenant_changed = existing == NULL;
    if (acl_apply_rules(candidate, rules, rule_lengths, count, tenant_changed, error,
                        error_size) != 0)
        return -1;
    if (candidate->tenant_name[0] == '\0') {
        snprintf(error, error_size, "ERR user '%s' needs a tenant=<name> rule", candidate->name);
        return -1;
    }
    if (existing == NULL && acl_state.count == ACL_MAX_USERS) {
        snprintf(error, error_size, "ERR too many users");
        return -1;
    }
    return 0;
}

/* The engine's catalog may write its MANIFEST in acl_bind_tenant, so no lock of the user
 * table is held there (invariant 4): the candidate is built under the read lock, the
 * tenant bound with no lock, and the candidate installed under the write lock if the user
 * did not change meanwhile (only CONFIG SET requirepass can change it, since SETUSERs run
 * one at a time under change_lock); if it did, the whole change is made again. */
int acl_setuser(const char *name, size_t name_length, const char *const *rules,
                const size_t *rule_lengths, size_t count, char *error, size_t error_size)
{
    pthread_mutex_lock(&acl_state.change_lock);
    int result = -1;
    for (int attempt = 0; attempt < 100; attempt++) {
        acl_user candidate;
        bool tenant_changed = false;
        pthread_rwlock_rdlock(&acl_state.lock);
        result = acl_prepare_locked(name, name_length, rules, rule_lengths, count, &candidate,
                                    &tenant_changed, error, error_size);
        pthread_rwlock_unlock(&acl_state.lock);
        if (result != 0)
            break;
        if (tenant_changed && (result = acl_bind_tenant(&candidate, error, error_size)) != 0)
            break;
        pthread_rwlock_wrlock(&acl_state.lock);
        acl_user *existing = acl_find_locked(name, name_length);
        bool installed = true;
        if (existing == NULL)
            acl_state.users[acl_state.count++] = candidate; /* room checked, no other adder */
        else if (existing->version == candidate.version)
            *existing = candidate;
        else
            installed = false; /* changed meanwhile: build it again from the new state */
        if (installed) {
            acl_user *u = existing != NULL ? existing : &acl_state.users[acl_state.count - 1];
            u->version++;
        }
        pthread_rwlock_unlock(&acl_state.lock);
        if (installed)
            break;
        result = -1;
        snprintf(error, error_size, "ERR user '%.*s' kept changing, retry", (int)name_length,
                 name);
    }
    pthread_mutex_unlock(&acl_state.change_lock);
    return result;
}

int acl_init(shoal_db *db, const char *requirepass, char *const *lines, size_t count,
             char *error, size_t error_size)
{
    acl_state.db = db;
    acl_state.users = calloc(ACL_MAX_USERS, sizeof(acl_user));
    if (acl_state.users == NULL) {
        snprintf(error, error_size, "out of memory");
        return -1;
    }
    acl_user *d = &acl_state.users[acl_state.count++];
    snprintf(d->name, sizeof(d->name), "default");
    snprintf(d->tenant_name, sizeof(d->tenant_name), "default");
    d->tenant = 0;
    d->enabled = true;
    d->admin = true;
    shoal_quota_unlimited(&d->quota);
    d->nopass = requirepass[0] == '\0';
    if (!d->nopass) {
        if (!acl_hash(requirepass, strlen(requirepass), d->passwords[0])) {
            snprintf(error, error_size, "cannot hash the password");
            return -1;
        }
        d->password_count = 1;
    }
    for (size_t i = 0; i < count; i++) {
        char *copy = strdup(lines[i]);
        if (copy == NULL)
            return -1;
        const char *words[64];
        size_t lengths[64];
        size_t n = 0;
        for (char *save = NULL, *word = strtok_r(copy, " \t", &save); word != NULL && n < 64;
             word = strtok_r(NULL, " \t", &save)) {
            words[n] = word;
            lengths[n] = strlen(word);
            n++;
        }
        char reason[256] = "missing user name";
        int result = n == 0 ? -1
                            : acl_setuser(words[0], lengths[0],
                                          (const char *const *)words + 1, lengths + 1, n - 1,
                                          reason, sizeof(reason));
        if (result != 0)
            snprintf(error, error_size, "user %s: %s", lines[i], reason);
        free(copy);
        if (result != 0)
            return -1;
    }
    return 0;
}

void acl_shutdown(void)
{
    pthread_rwlock_wrlock(&acl_state.lock);
    free(acl_state.users);
    acl_state.users = NULL;
    acl_state.count = 0;
    pthread_rwlock_unlock(&acl_state.lock);
}

static void acl_identity_of(const acl_user *u, acl_identity *out)
{
    snprintf(out->user, sizeof(out->user), "%s", u->name);
    snprintf(out->tenant_name, sizeof(out->tenant_name), "%s", u->tenant_name);
    out->tenant = u->tenant;
    out->admin = u->admin;
}

bool acl_user_identity(const char *name, size_t length, acl_identity *out)
{
    pthread_rwlock_rdlock(&acl_state.lock);
    const acl_user *u = acl_find_locked(name, length);
    if (u != NULL)
        acl_identity_of(u, out);
    pthread_rwlock_unlock(&acl_state.lock);
    return u != NULL;
}

bool acl_default_requires_auth(void)
{
    pthread_rwlock_rdlock(&acl_state.lock);
    const acl_user *d = &acl_state.users[0];
    bool requires = !d->enabled || !d->nopass;
    pthread_rwlock_unlock(&acl_state.lock);
    return requires;
}

void acl_default_identity(acl_identity *out)
{
    pthread_rwlock_rdlock(&acl_state.lock);
    acl_identity_of(&acl_state.users[0], out);
    pthread_rwlock_unlock(&acl_state.lock);
}

int acl_authenticate(const char *user, size_t user_length, const char *password,
                     size_t password_length, acl_identity *out)
{
    unsigned char given[ACL_HASH_BYTES];
    if (!acl_hash(password, password_length, given))
        return -1;
    int result = -1;
    pthread_rwlock_rdlock(&acl_state.lock);
    const acl_user *u = acl_find_locked(user, user_length);
    if (u != NULL && u->enabled) {
        bool ok = u->nopass;
        /* Invariant 2: every stored hash is compared whole (CRYPTO_memcmp). */
        for (size_t p = 0; p < u->password_count; p++)
            ok |= CRYPTO_memcmp(u->passwords[p], given, ACL_HASH_BYTES) == 0;
        if (ok) {
            acl_identity_of(u, out);
            result = 0;
        }
    }
    pthread_rwlock_unlock(&acl_state.lock);
    return result;
}

static void acl_format_quota(char *out, size_t size, const char *name, uint64_t value)
{
    if (value == SHOAL_UNLIMITED)
        out[0] = '\0';
    else
        snprintf(out, size, " %s=%llu", name, (unsigned long long)value);
}

static int acl_name_order(const void *a, const void *b)
{
    const acl_user *const *x = a, *const *y = b;
    return strcmp((*x)->name, (*y)->name);
}

/* The users in name order, as Redis lists them: a malloc'd array of acl_state.count
 * pointers, or NULL when out of memory (then the table order). Lock held. */
static const acl_user **acl_by_name(void)
{
    const acl_user **sorted = malloc(acl_state.count * sizeof(*sorted) + 1);
    if (sorted == NULL)
        return NULL;
    for (size_t i = 0; i < acl_state.count; i++)
        sorted[i] = &acl_state.users[i];
    qsort(sorted, acl_state.count, sizeof(*sorted), acl_name_order);
    return sorted;
}

void acl_reply_list(resp_buffer *out)
{
    pthread_rwlock_rdlock(&acl_state.lock);
    const acl_user **sorted = acl_by_name();
    resp_add_array(out, (long long)acl_state.count);
    for (size_t i = 0; i < acl_state.count; i++) {
        const acl_user *u = sorted != NULL ? sorted[i] : &acl_state.users[i];
        char keys[64], bytes[64], ops[64], line[2048];
        acl_format_quota(keys, sizeof(keys), "max-keys", u->quota.max_keys);
        acl_format_quota(bytes, sizeof(bytes), "max-bytes", u->quota.max_bytes);
        acl_format_quota(ops, sizeof(ops), "max-ops", u->quota.max_ops_per_second);
        /* Passwords as Redis shows them: their SHA-256, never the password. */
        char passwords[ACL_MAX_PASSWORDS * (2 * ACL_HASH_BYTES + 2) + 8] = "";
        size_t used = 0;
        if (u->nopass)
            used += (size_t)snprintf(passwords, sizeof(passwords), " nopass");
        for (size_t p = 0; p < u->password_count; p++) {
            char hex[2 * ACL_HASH_BYTES + 1];
            acl_hash_format(u->passwords[p], hex);
            used += (size_t)snprintf(passwords + used, sizeof(passwords) - used, " #%s", hex);
        }
        snprintf(line, sizeof(line), "user %s %s%s ~* &* %s tenant=%s%s%s%s", u->name,
                 u->enabled ? "on" : "off", passwords, u->admin ? "+@all" : "+@all -@admin",
                 u->tenant_name, keys, bytes, ops);
        resp_add_bulk_cstring(out, line);
    }
    pthread_rwlock_unlock(&acl_state.lock);
    free(sorted);
}

void acl_reply_users(resp_buffer *out)
{
    pthread_rwlock_rdlock(&acl_state.lock);
    const acl_user **sorted = acl_by_name();
    resp_add_array(out, (long long)acl_state.count);
    for (size_t i = 0; i < acl_state.count; i++)
        resp_add_bulk_cstring(out, (sorted != NULL ? sorted[i] : &acl_state.users[i])->name);
    pthread_rwlock_unlock(&acl_state.lock);
    free(sorted);
}

bool acl_reply_getuser(resp_buffer *out, const char *name, size_t name_length)
{
    pthread_rwlock_rdlock(&acl_state.lock);
    const acl_user *u = acl_find_locked(name, name_length);
    if (u == NULL) {
        pthread_rwlock_unlock(&acl_state.lock);
        return false;
    }
    /* Redis's fields, then the tenant and its quotas (absent from Redis). */
    resp_add_map(out, 10);
    resp_add_bulk_cstring(out, "flags");
    resp_add_array(out, u->nopass ? 2 : 1);
    resp_add_bulk_cstring(out, u->enabled ? "on" : "off");
    if (u->nopass)
        resp_add_bulk_cstring(out, "nopass");
    resp_add_bulk_cstring(out, "passwords");
    resp_add_array(out, (long long)u->password_count);
    for (size_t p = 0; p < u->password_count; p++) {
        char hex[2 * ACL_HASH_BYTES + 1];
        acl_hash_format(u->passwords[p], hex);
        resp_add_bulk_cstring(out, hex);
    }
    resp_add_bulk_cstring(out, "commands");
    resp_add_bulk_cstring(out, u->admin ? "+@all" : "+@all -@admin");
    resp_add_bulk_cstring(out, "keys");
    resp_add_bulk_cstring(out, "~*");
    resp_add_bulk_cstring(out, "channels");
    resp_add_bulk_cstring(out, "&*");
    resp_add_bulk_cstring(out, "selectors");
    resp_add_array(out, 0);
    resp_add_bulk_cstring(out, "tenant");
    resp_add_bulk_cstring(out, u->tenant_name);
    const char *names[3] = {"max-keys", "max-bytes", "max-ops"};
    const uint64_t values[3] = {u->quota.max_keys, u->quota.max_bytes,
                                u->quota.max_ops_per_second};
    for (int q = 0; q < 3; q++) {
        resp_add_bulk_cstring(out, names[q]);
        if (values[q] == SHOAL_UNLIMITED)
            resp_add_bulk_cstring(out, "unlimited");
        else
            resp_add_integer(out, (long long)values[q]);
    }
    pthread_rwlock_unlock(&acl_state.lock);
    return true;
}

int acl_deluser(const char *const *names, const size_t *lengths, size_t count,
                size_t *deleted, char *error, size_t error_size)
{
    *deleted = 0;
    for (size_t i = 0; i < count; i++) {
        if (lengths[i] == 7 && memcmp(names[i], "default", 7) == 0) {
            snprintf(error, error_size, "ERR The 'default' user cannot be removed");
            return -1;
        }
    }
    /* change_lock: no ACL SETUSER is between building a user and installing it. */
    pthread_mutex_lock(&acl_state.change_lock);
    pthread_rwlock_wrlock(&acl_state.lock);
    for (size_t i = 0; i < count; i++) {
        acl_user *u = acl_find_locked(names[i], lengths[i]);
        if (u == NULL)
            continue;
        *u = acl_state.users[--acl_state.count]; /* the table's order is not its listing's */
        (*deleted)++;
    }
    pthread_rwlock_unlock(&acl_state.lock);
    pthread_mutex_unlock(&acl_state.change_lock);
    return 0;
}

void acl_set_requirepass(const char *password)
{
    pthread_rwlock_wrlock(&acl_state.lock);
    acl_user *d = &acl_state.users[0];
    d->password_count = 0;
    d->nopass = password[0] == '\0';
    if (!d->nopass && acl_hash(password, strlen(password), d->passwords[0]))
        d->password_count = 1;
    else
        d->nopass = true; /* not reached: hashing fails only without memory */
    d->version++;
    pthread_rwlock_unlock(&acl_state.lock);
}
