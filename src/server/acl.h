/*
 * acl.h -- users: passwords, the tenant each acts as, its quotas, admin rights.
 * See acl.c for the rule syntax.
 */
#ifndef SHOAL_SERVER_ACL_H
#define SHOAL_SERVER_ACL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "resp.h"
#include "shoal.h"

#define ACL_NAME_MAX 128

/* What a connection acts as, copied at authentication. */
typedef struct acl_identity {
    char user[ACL_NAME_MAX];
    char tenant_name[SHOAL_MAX_NAME + 1];
    uint32_t tenant;
    bool admin;
} acl_identity;

/* Creates the default user (password requirepass, or none when empty) and the users of
 * the config lines ("<name> <rule>..."). Returns 0, or -1 with a message in error. */
int acl_init(shoal_db *db, const char *requirepass, char *const *lines, size_t count,
             char *error, size_t error_size);
void acl_shutdown(void);
/* The named user's identity, as AUTH would give it (ACL DRYRUN); false if there is none. */
bool acl_user_identity(const char *name, size_t length, acl_identity *out);
/* True if a new connection must AUTH before running commands (the default user has a
 * password or is off). */
bool acl_default_requires_auth(void);
/* The default user's identity (for connections that need no AUTH). */
void acl_default_identity(acl_identity *out);
/* Checks user/password. Returns 0 and fills out, or -1 (wrong pair or disabled user). */
int acl_authenticate(const char *user, size_t user_length, const char *password,
                     size_t password_length, acl_identity *out);
/* ACL SETUSER name rule...: creates or changes a user. Returns 0, or -1 with Redis's error
 * text (without "-") in error. Binding a new tenant or quota rewrites the engine's
 * MANIFEST, so this may block on the disk: the server calls it on the catalog worker
 * (catalog.c) and at startup, never on an event loop. Thread-safety: any thread; calls
 * run one at a time, and AUTH elsewhere never waits for the disk meanwhile. */
int acl_setuser(const char *name, size_t name_length, const char *const *rules,
                const size_t *rule_lengths, size_t count, char *error, size_t error_size);
/* ACL LIST and ACL USERS replies. */
void acl_reply_list(resp_buffer *out);
void acl_reply_users(resp_buffer *out);
/* ACL GETUSER's reply for the user, as Redis's fields (flags, passwords as SHA-256 hex,
 * commands, keys, channels, selectors) and then tenant and quotas; false (nothing added)
 * if there is no such user. */
bool acl_reply_getuser(resp_buffer *out, const char *name, size_t name_length);
/* ACL DELUSER name...: removes the named users that exist, *deleted of them; -1 with
 * Redis's error (nothing removed) when one of them is "default". Serialized with
 * acl_setuser (it waits for one under way, which may be waiting for the disk), so the
 * server calls it on the catalog worker. Clients authenticated as a removed user are the
 * caller's to disconnect. */
int acl_deluser(const char *const *names, const size_t *lengths, size_t count,
                size_t *deleted, char *error, size_t error_size);
/* Sets the default user's password (CONFIG SET requirepass); empty means none. */
void acl_set_requirepass(const char *password);

#endif /* SHOAL_SERVER_ACL_H */
