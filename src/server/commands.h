/*
 * commands.h -- the command handlers (one per command, in cmd_*.c and command.c) and the
 * helpers they share: argument parsing with Redis's error texts, and key reads that go
 * through the client's transaction when one is active.
 */
#ifndef SHOAL_SERVER_COMMANDS_H
#define SHOAL_SERVER_COMMANDS_H

#include "server.h"

COMMAND_HANDLER(cmd_acl);
COMMAND_HANDLER(cmd_append);
COMMAND_HANDLER(cmd_auth);
COMMAND_HANDLER(cmd_bgsave);
COMMAND_HANDLER(cmd_client);
COMMAND_HANDLER(cmd_command);
COMMAND_HANDLER(cmd_config);
COMMAND_HANDLER(cmd_dbsize);
COMMAND_HANDLER(cmd_debug);
COMMAND_HANDLER(cmd_decr);
COMMAND_HANDLER(cmd_decrby);
COMMAND_HANDLER(cmd_del);
COMMAND_HANDLER(cmd_discard);
COMMAND_HANDLER(cmd_echo);
COMMAND_HANDLER(cmd_exec);
COMMAND_HANDLER(cmd_exists);
COMMAND_HANDLER(cmd_expire);
COMMAND_HANDLER(cmd_expireat);
COMMAND_HANDLER(cmd_expiretime);
COMMAND_HANDLER(cmd_flushall);
COMMAND_HANDLER(cmd_flushdb);
COMMAND_HANDLER(cmd_get);
COMMAND_HANDLER(cmd_getdel);
COMMAND_HANDLER(cmd_getex);
COMMAND_HANDLER(cmd_getrange);
COMMAND_HANDLER(cmd_getset);
COMMAND_HANDLER(cmd_hello);
COMMAND_HANDLER(cmd_incr);
COMMAND_HANDLER(cmd_incrby);
COMMAND_HANDLER(cmd_incrbyfloat);
COMMAND_HANDLER(cmd_info);
COMMAND_HANDLER(cmd_keys);
COMMAND_HANDLER(cmd_lastsave);
COMMAND_HANDLER(cmd_mget);
COMMAND_HANDLER(cmd_mset);
COMMAND_HANDLER(cmd_msetnx);
COMMAND_HANDLER(cmd_multi);
COMMAND_HANDLER(cmd_persist);
COMMAND_HANDLER(cmd_pexpire);
COMMAND_HANDLER(cmd_pexpireat);
COMMAND_HANDLER(cmd_pexpiretime);
COMMAND_HANDLER(cmd_ping);
COMMAND_HANDLER(cmd_psetex);
COMMAND_HANDLER(cmd_pttl);
COMMAND_HANDLER(cmd_quit);
COMMAND_HANDLER(cmd_randomkey);
COMMAND_HANDLER(cmd_rename);
COMMAND_HANDLER(cmd_setbit);
COMMAND_HANDLER(cmd_getbit);
COMMAND_HANDLER(cmd_bitcount);
COMMAND_HANDLER(cmd_bitpos);
COMMAND_HANDLER(cmd_bitop);
COMMAND_HANDLER(cmd_wait);
COMMAND_HANDLER(cmd_waitaof);
COMMAND_HANDLER(cmd_memory);
COMMAND_HANDLER(cmd_object);
COMMAND_HANDLER(cmd_copy);
COMMAND_HANDLER(cmd_move);
COMMAND_HANDLER(cmd_renamenx);
COMMAND_HANDLER(cmd_reset);
COMMAND_HANDLER(cmd_save);
COMMAND_HANDLER(cmd_scan);
COMMAND_HANDLER(cmd_select);
COMMAND_HANDLER(cmd_set);
COMMAND_HANDLER(cmd_setex);
COMMAND_HANDLER(cmd_setnx);
COMMAND_HANDLER(cmd_setrange);
COMMAND_HANDLER(cmd_shutdown);
COMMAND_HANDLER(cmd_strlen);
COMMAND_HANDLER(cmd_time);
/* Counts an error reply by its code, for INFO (the resp_error_observer, cmd_server.c). */
void server_count_error(const char *text, size_t length);
COMMAND_HANDLER(cmd_lcs);
COMMAND_HANDLER(cmd_slowlog);
COMMAND_HANDLER(cmd_monitor);
COMMAND_HANDLER(cmd_role);
COMMAND_HANDLER(cmd_touch);
COMMAND_HANDLER(cmd_ttl);
COMMAND_HANDLER(cmd_type);
COMMAND_HANDLER(cmd_unwatch);
COMMAND_HANDLER(cmd_watch);

/* Reads a key of the client's current database: through the transaction when one is
 * active (EXEC, write commands), else directly with lazy expiry. Returns 0, or replies
 * with the engine error (or marks a retry) and returns it. */
int key_read(client *c, shoal_ns *ns, const char *key, size_t key_length, bool header_only,
             store_value *out);
/* The time commands use: the attempt's clock reading in a transaction, else now. */
int64_t command_now_ms(client *c);
/* Parses argument i as a long long; replies "value is not an integer or out of range". */
bool arg_long_long(client *c, size_t i, long long *out);
/* Reads the string at argv[1] for a command that may change it (through the command's
 * transaction); false after replying an error (WRONGTYPE for a value of another kind). */
bool string_read_for_update(client *c, shoal_ns *ns, store_value *v);
/* Writes data at offset into the string v read for argv[1] (zero-filling any gap), keeping
 * its expiry, in the command's transaction; releases v. Returns 0 or SHOAL_E* (ETOOBIG
 * past STORE_MAX_PAYLOAD), without replying. */
int string_write_at(client *c, shoal_ns *ns, store_value *v, size_t offset, const char *data,
                    size_t data_length);
/* A subcommand of a container command (CONFIG GET), its arity, counted as Redis counts
 * it (the container's name included, >0 exact, <0 at least -arity), and whether only
 * admin users may run it. */
typedef struct subcommand_def {
    const char *name;
    int arity;
    bool admin;
} subcommand_def;
/* Checks argv[1] against the container's subcommands: true if it names one and has its
 * number of arguments; otherwise replies Redis's error ("unknown subcommand 'x'. Try
 * CONFIG HELP." or "wrong number of arguments for 'config|get' command"). */
bool arg_subcommand(client *c, const char *container, const subcommand_def *table,
                    size_t count);
/* For CLIENT, CONFIG, COMMAND, SLOWLOG and ACL: arg_subcommand against the container's
 * own table (true for any other command). The dispatcher calls it right after the arity
 * check, before authentication, permissions and MULTI's queue, which is where Redis looks
 * subcommands up: an unknown one is refused at once, even inside MULTI (EXECABORT). */
bool container_subcommand_ok(client *c, const char *container);
/* True if argv[first] names a subcommand of the container that only admins may run (CLIENT
 * KILL, CONFIG SET, ACL SETUSER...); "container|NAME" goes to object (command_admin_only
 * gives it in lower case, as ACL errors name it). */
bool container_subcommand_admin(const char *container, char **argv, const size_t *lengths,
                                size_t argc, size_t first, char *object, size_t object_size);
/* True if only admin users may run the request argv[0..argc) of cmd: an admin command, or
 * an admin subcommand of a container; object gets its name as NOPERM names it ("slowlog",
 * "config|set"). The one rule of permissions, for the dispatcher and ACL DRYRUN. */
bool command_admin_only(const command_def *cmd, char **argv, const size_t *lengths, size_t argc,
                        char *object, size_t object_size);
/* A HELP subcommand's reply: the lines as an array of simple strings, as Redis gives it. */
void reply_help(client *c, const char *const *lines, size_t count);
#define REPLY_HELP(c, lines) reply_help((c), (lines), sizeof(lines) / sizeof((lines)[0]))
/* name in capitals (upper) or small letters, cut to fit out. */
void command_case(char *out, size_t size, const char *name, bool upper);
/* Case-insensitive comparison of argument i with a word. */
bool arg_is(client *c, size_t i, const char *word);
/* Argument i as a database index (SELECT, MOVE, COPY ... DB), or replies Redis's error. */
bool arg_db(client *c, size_t i, int *db);
/* Replies with a value read by key_read, handing large values over without copying. */
void reply_value(client *c, store_value *v);
/* True if the byte at absolute output position is '-' (an error reply started there). */
bool command_reply_starts_with_error(const resp_buffer *b, uint64_t position);

#endif /* SHOAL_SERVER_COMMANDS_H */
