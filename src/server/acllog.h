/*
 * acllog.h -- ACL LOG: the authentications that failed and the commands refused for want
 * of a permission, as Redis 7.0 keeps them.
 *
 * An entry is (reason, context, object, username), its count, when it was last met and the
 * client it was last met from (a CLIENT LIST line). The same four met again within 60 s
 * count on the entry, which moves to the front; otherwise a new entry goes in front, and the
 * oldest past acllog-max-len are dropped (as in Redis, only when an entry is added).
 * Thread-safety: any thread (one mutex).
 */
#ifndef SHOAL_SERVER_ACLLOG_H
#define SHOAL_SERVER_ACLLOG_H

#include <stddef.h>

#include "resp.h"
#include "server.h"

/* reason "auth" (object "AUTH", username the one tried) or "command" (object the command's
 * name, "acl|list" for a subcommand); context "toplevel", or "multi" inside MULTI. */
void acllog_add(const client *c, const char *reason, const char *object, const char *username,
                size_t username_length);
/* ACL LOG [count]: the newest count entries (10 by default), newest first, each as Redis's
 * map (count, reason, context, object, username, age-seconds, client-info). */
void acllog_reply(resp_buffer *out, long long count);
void acllog_reset(void);

#endif /* SHOAL_SERVER_ACLLOG_H */
