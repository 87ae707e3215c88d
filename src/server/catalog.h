/*
 * catalog.h -- catalog changes off the event loops: creating a tenant's logical database,
 * FLUSHDB/FLUSHALL and ACL SETUSER rewrite the engine's MANIFEST (fsync), so they run on
 * the catalog worker thread while the client that asked is suspended. See catalog.c for
 * the design, the invariants and the tests.
 */
#ifndef SHOAL_SERVER_CATALOG_H
#define SHOAL_SERVER_CATALOG_H

#include <stdbool.h>

#include "server.h"

/* Starts the worker. Returns 0 or -1. Thread-safety: main, before network_start. */
int catalog_start(void);
/* Stops the worker: the job it is running finishes, jobs still queued are abandoned (they
 * complete with SHOAL_ECLOSED into their loop's queue, where catalog_loop_free frees
 * them). Only after the loops were joined (network_wait) and before store_shutdown,
 * acl_shutdown and shoal_close, which the jobs use. Safe if catalog_start failed or was
 * never called. */
void catalog_stop(void);

/* Creates the loop's completion queue and its eventfd (registered by the caller). Returns
 * 0 or -1. Thread-safety: at startup. */
int catalog_loop_init(event_loop *loop);
/* The eventfd the loop watches for finished jobs, or -1. */
int catalog_loop_fd(const event_loop *loop);
/* Frees the queue and every job still in it. After catalog_stop. */
void catalog_loop_free(event_loop *loop);

/* ---- Handlers (loop thread) ------------------------------------------------------------ */

/* Asks for a catalog change on behalf of the request being run: the job copies what it
 * needs (tenant, database, ACL SETUSER's arguments) now, so the worker never reads the
 * client. The handler then returns without a reply; the dispatcher suspends the client,
 * and once the change is made the request runs again from the start, when the handler
 * finds the outcome with catalog_result or catalog_namespace_failure. Returns false, with
 * an error reply written, if the job cannot be allocated. */
bool catalog_request(client *c, catalog_kind kind);
/* catalog_request for database db instead of the client's (CATALOG_NAMESPACE). */
bool catalog_request_db(client *c, catalog_kind kind, int db);
/* True if a change of this kind (FLUSHDB: of database db) finished for the request being
 * run; *result is 0 or a SHOAL_E* (ACL SETUSER: -1 with Redis's error text, without "-",
 * in *error_text, valid until the request completes). */
bool catalog_result(const client *c, catalog_kind kind, int db, int *result,
                    const char **error_text);
/* The SHOAL_E* with which creating database db of the client's tenant failed for the
 * request being run, or 0 (not tried, or created). */
int catalog_namespace_failure(const client *c, int db);

/* ---- The dispatcher and network.c (loop thread) ---------------------------------------- */

/* After a handler asked (c->catalog_asked): queues the job for the worker and suspends
 * the client (c->catalog_job). Never fails. */
void catalog_submit(client *c);
/* The held request completed: forgets the jobs that finished for it. */
void catalog_forget(client *c);
/* The client goes away: the job in flight, if any, is detached (it completes into the
 * loop's queue and is freed there), finished and unsubmitted jobs are freed. */
void catalog_client_free(client *c);
/* Runs on the loop thread when the queue's eventfd fired: hands each finished job to its
 * client (if it is still connected) and resumes it with network_client_progress. */
void catalog_drain(event_loop *loop);

#endif /* SHOAL_SERVER_CATALOG_H */
