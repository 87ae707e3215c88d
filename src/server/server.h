/*
 * server.h -- what the parts of shoal-server share: the server state, event loops,
 * clients, the command table's types and the command statistics.
 *
 * Ownership: a client belongs to exactly one event loop, whose thread alone reads its
 * input, runs its commands and writes its output. Other threads see a client only
 * through the registry (CLIENT LIST/KILL), which touches the fields marked "shared".
 * The engine's log threads never touch a client: they post completed durable writes to
 * the loop's pending_queue (pending.c), and the loop applies them to its clients. The
 * catalog worker never touches one either: it posts finished jobs to the loop's
 * catalog_queue (catalog.c).
 */
#ifndef SHOAL_SERVER_SERVER_H
#define SHOAL_SERVER_SERVER_H

#include <pthread.h>
#include <sys/epoll.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "acl.h"
#include "config.h"
#include "resp.h"
#include "shoal.h"
#include "store.h"

/* ---------------------------------------------------------------------------------------
 * Commands
 * ------------------------------------------------------------------------------------- */

typedef struct client client;

/* Command flags: what the dispatcher must do around the handler. */
#define CMD_WRITE 0x0001u     /* changes data: runs in a store_txn attempt */
#define CMD_READONLY 0x0002u
#define CMD_ADMIN 0x0004u     /* only users with the admin right */
#define CMD_NOAUTH 0x0008u    /* allowed before authentication */
#define CMD_NOMULTI 0x0010u   /* runs at once even inside MULTI (MULTI EXEC DISCARD...) */
#define CMD_FAST 0x0020u
#define CMD_TXN 0x0040u       /* reads and writes: needs a store_txn attempt */
#define CMD_NOSCRIPT 0x0080u
#define CMD_DENYMULTI 0x0100u /* refused inside MULTI (WATCH, SUBSCRIBE-like) */
#define CMD_CONTAINER 0x0200u /* has subcommands (CONFIG GET ...), which carry the flags */
/* argv[1] is checked against its table of subcommands, their arities and admin rights
 * (cmd_server.c, containers) */
#define CMD_SUBCOMMANDS 0x0400u
/* Reported only (COMMAND INFO's denyoom, as Redis marks the commands that can grow the
 * data); the memory limit itself is the engine's (SHOAL_EMEMLIMIT). */
#define CMD_DENYOOM 0x0800u

typedef struct command_def {
    const char *name;
    void (*handler)(client *c);
    int arity;                /* >0 exact argument count, <0 at least -arity */
    unsigned flags;
    int first_key, last_key, key_step;
    const char *group;        /* Redis's documentation group */
    const char *summary;
    uint32_t index;           /* position in the table, for statistics */
} command_def;

/* Looks a command up by name (case-insensitive); NULL if unknown. */
const command_def *command_lookup(const char *name, size_t length);
/* Sorts the table for lookup. Once, at startup. */
void command_table_init(void);
size_t command_count(void);
const command_def *command_at(size_t index);

/* ---------------------------------------------------------------------------------------
 * Statistics per command, kept per loop (no sharing on the hot path) and summed by INFO.
 * ------------------------------------------------------------------------------------- */

#define STATS_BUCKETS 192

typedef struct command_stats {
    atomic_ullong calls, nanoseconds, failed, rejected; /* nanoseconds: summed exact, shown in us */
    atomic_ullong buckets[STATS_BUCKETS]; /* latency histogram, log-linear in ns */
} command_stats;

/* Bucket of a latency in nanoseconds, and a bucket's upper bound. */
unsigned stats_bucket(uint64_t nanoseconds);
uint64_t stats_bucket_upper_ns(unsigned bucket);

/* ---------------------------------------------------------------------------------------
 * Event loops and clients
 * ------------------------------------------------------------------------------------- */

typedef struct event_loop event_loop;

/* Events one epoll_wait of a loop takes: its round (network.c). */
#define LOOP_EVENTS_MAX 256
typedef struct pending_write pending_write;
typedef struct pending_queue pending_queue;
typedef struct catalog_job catalog_job;
typedef struct catalog_queue catalog_queue;
typedef struct monitor_queue monitor_queue;

/* Catalog changes a command may need (catalog.c runs them on its worker thread). */
typedef enum catalog_kind {
    CATALOG_NAMESPACE = 1, /* create database db of the client's tenant */
    CATALOG_FLUSHDB = 2,   /* empty database db */
    CATALOG_FLUSHALL = 3,  /* empty every database of the tenant */
    CATALOG_SETUSER = 4,   /* ACL SETUSER with the request's arguments */
    CATALOG_DELUSER = 5,   /* ACL DELUSER with the request's arguments */
} catalog_kind;

typedef struct queued_command {
    const command_def *command;
    size_t argc;
    char **argv;
    size_t *lengths;
} queued_command;

typedef struct watched_key {
    int db;
    char *key;
    size_t key_length;
    uint64_t seq;
} watched_key;

#define CLIENT_NAME_MAX 128

struct client {
    uint64_t id;
    int fd;
    event_loop *loop;
    char address[64];       /* ip:port of the peer */
    char local_address[64];
    /* shared, under the registry lock */
    char name[CLIENT_NAME_MAX];
    _Atomic(const char *) last_command; /* name of the last command run */
    atomic_int protocol_shared;
    /* shared, atomics */
    atomic_bool kill_requested;
    atomic_llong last_interaction_ms;
    atomic_ullong commands_processed;
    atomic_ullong query_bytes_held, output_bytes_held;
    atomic_int db_shared;
    long long created_ms;

    acl_identity identity;
    bool authenticated;
    int db;
    shoal_ns *ns;           /* cached handle of (tenant, db) */

    char *query;            /* unprocessed input; the current request starts at 0 */
    size_t query_length, query_capacity;
    resp_parser parser;
    resp_buffer out;
    long long soft_limit_since_ms; /* 0: output under the soft limit */

    bool close_after_reply; /* QUIT, protocol error: send what is queued, then close */
    bool close_now;
    bool input_ended;       /* the peer shut its side: run what was read, reply, close */
    bool monitor;           /* MONITOR: receives every command's line (monitor.c) */
    uint32_t epoll_events;  /* the events registered with the loop's epoll */

    /* Writes whose log records are not durable yet, in the order they were run
     * (pending.c). Output from the first one's reply on is held until it is durable. */
    pending_write *pending_head, *pending_tail;
    size_t pending_count;
    bool pending_touched;   /* listed in the loop's drain, to be flushed once */
    bool durability_failed; /* its replies were cut after a failed sync: send all, close */
    bool reply_off;         /* CLIENT REPLY OFF: no reply is sent until CLIENT REPLY ON */
    bool reply_skip;        /* CLIENT REPLY SKIP: the next request's reply is not sent */
    bool zombie;            /* disconnected; freed when its last pending write completes */
    client *zombie_previous, *zombie_next;
    client *freed_next; /* closed during a round: freed at its end (network.c) */

    /* Catalog changes (catalog.c). A request that needs one is suspended: it waits,
     * parsed, at the front of the query buffer (request_held) and nothing after it runs
     * until the worker has made the change; then it runs again from the start. */
    catalog_job *catalog_asked; /* asked by the handler being run, not queued yet */
    catalog_job *catalog_job;   /* queued or running: the client is suspended */
    catalog_job *catalog_done;  /* finished for the held request, until it completes */
    bool request_held;
    uint64_t catalog_began_ns;  /* when the held request first ran: its latency */

    /* The request being run. */
    size_t argc;
    char **argv;
    size_t *lengths;
    size_t argv_capacity;

    /* MULTI/EXEC */
    bool in_multi, multi_dirty;
    bool in_exec;           /* EXEC is running the queued commands */
    queued_command *queue;
    size_t queue_count, queue_capacity;
    watched_key *watched;
    size_t watched_count, watched_capacity;

    store_txn txn;
    bool retry;             /* the attempt met a conflict or a dropped namespace */

    client *registry_previous, *registry_next;
};

struct event_loop {
    int index;
    pthread_t thread;
    int epoll_fd;
    int wake_fd;            /* eventfd: shutdown and CLIENT KILL wake the loop */
    pending_queue *pending; /* completions of durable writes, posted by the log (pending.c) */
    catalog_queue *catalog; /* finished catalog changes, posted by the worker (catalog.c) */
    monitor_queue *monitor; /* MONITOR lines from every loop, and this loop's monitors */
    bool draining;          /* shutting down: no more requests, waiting for the log */
    int *listen_fds;
    size_t listen_count;
    command_stats *stats;   /* one per command */
    client **clients;       /* this loop's clients, for timeouts and kills */
    size_t client_count, client_capacity;
    long long last_cron_ms;
    /* Wall clock minus monotonic clock in ms, read once per round of events, so that a
     * command's "now" comes from the one clock reading it already takes for its latency. */
    int64_t wall_offset_ms;
    int64_t command_now_ms; /* now of the command running on this loop */
    /* While network_process runs a client's requests (clock_chain), the monotonic reading
     * the next command starts from: the batch's first reading, then each command's end,
     * so that a pipelined command costs one clock reading instead of two (0: none; a
     * command takes it and reads the clock itself when there is none). */
    bool clock_chain;
    uint64_t clock_ns;
    /* Clients that had an event this round; their replies are written after the round's
     * last event (network_loop_events). epoll reports a descriptor once per wait, so the
     * list holds each client once and never more than LOOP_EVENTS_MAX. */
    client *round_clients[LOOP_EVENTS_MAX];
    size_t round_count;
    /* The round's events; carried > 0: the next round's, already taken (network.c). */
    struct epoll_event events[LOOP_EVENTS_MAX];
    int carried;
    /* While a round runs, a client closed in it (its descriptor -1) keeps its struct, on
     * this list, until the round ends: an event of the round may still name it. */
    bool in_round;
    client *freed;
};

typedef struct server_state {
    server_config config;
    shoal_db *db;
    event_loop *loops;
    size_t loop_count;
    atomic_bool shutting_down;
    atomic_int shutdown_exit_code;
    long long started_ms;
    char run_id[41];
    int bound_port;

    pthread_mutex_t registry_lock; /* clients list, names; never held while running commands */
    client *registry_head;
    atomic_ullong next_client_id;

    atomic_llong connected_clients;
    atomic_ullong total_connections, rejected_connections, total_commands;
    atomic_ullong input_bytes, output_bytes, evicted_clients, keyspace_hits, keyspace_misses;
    atomic_ullong output_limit_disconnections, query_limit_disconnections;
    atomic_ullong protocol_errors;
    atomic_llong suspended_clients; /* waiting for a catalog change (INFO blocked_clients) */
    atomic_llong last_save_unix;   /* startup time, then the last checkpoint's */

    /* Durable mode (main.c resolves mode and dir at startup). */
    bool durable;
    shoal_sync sync;                /* the database's policy */
    long long recovery_ms;          /* time shoal_open took to recover the directory */
    atomic_llong pending_writes;    /* writes whose replies wait for the log, all loops */
    /* Groups of durable replies synced by a loop itself, and handed to the log's thread. */
    atomic_ullong groups_synced_on_loop, groups_handed_to_log;
    atomic_ullong durability_failures; /* writes answered with an error after a failed sync */
    pthread_mutex_t bgsave_lock;    /* the BGSAVE thread's handle */
    pthread_t bgsave_thread;
    bool bgsave_joinable;
    atomic_bool bgsave_in_progress;
    atomic_bool bgsave_scheduled;   /* BGSAVE SCHEDULE during a checkpoint: run one more */
    atomic_int last_bgsave_error;   /* 0 or the SHOAL_E* of the last failed BGSAVE */
} server_state;

extern server_state server;

/* network.c */
int network_start(char *error, size_t error_size);
/* Joins the loop threads (after network_stop) and closes the sockets. The loops' completion
 * queues stay, because the log may still post to them until shoal_close returns. */
void network_wait(void);
/* After shoal_close: frees the loops, their queues and the clients that were waiting for
 * the log. */
void network_free(void);
void network_stop(void);
/* Called by pending.c on the loop thread after a client's pending writes advanced, and by
 * catalog.c after a catalog change it waited for was made: frees a disconnected client
 * that has no write left, otherwise runs input that was paused (the held request first)
 * and sends what became sendable. */
void network_client_progress(client *c);
/* Writes what c's output holds; disconnects (frees) c if the write fails or c was to close
 * after its reply. Loop thread. */
void network_client_write(client *c);
/* Asks the loop that owns client id to close it; returns true if found. */
bool network_kill_client(uint64_t id);
size_t network_kill_matching(const char *address, const char *user, uint64_t id,
                             const client *except);
/* Appends the CLIENT LIST text of every client (or one) to a malloc'd string. */
char *network_client_list(const client *only, size_t *length);

/* command.c */
/* Runs the client's current request (c->argc/argv). */
void command_dispatch(client *c);
/* Samples the engine's memory for INFO's used_memory_peak (the main thread, hz times a
 * second; cmd_server.c). */
void info_sample_memory(void);
/* Replies with the Redis form of an engine error, or marks the attempt for retry. */
void reply_engine_error(client *c, int error);
/* The client's namespace handle for its current database (refreshing if dropped). */
shoal_ns *client_namespace(client *c);
/* The handle for database db of the client's tenant; NULL when it must be created first
 * (the request is suspended and runs again, catalog.c) or its creation failed (replied). */
shoal_ns *client_namespace_of(client *c, int db);
void client_free_multi(client *c);
void client_unwatch(client *c);

/* Handlers live in cmd_*.c; the table in command.c lists them. */
#define COMMAND_HANDLER(name) void name(client *c)

#endif /* SHOAL_SERVER_SERVER_H */
