/*
 * debug.c -- DEBUG FAULT: makes the engine's file I/O fail on request, so that tests can
 * drive the server's answer to a failed log sync end to end.
 *
 * Purpose
 * -------
 * A failed fdatasync cannot be provoked from outside a process without privileges (a full
 * or broken disk). The engine routes all its file I/O through a table of functions and
 * ships a fault injector for that table (src/durability/io.h); this file opens the
 * durable database through that injector when `enable-debug-command yes` was set at
 * startup, and DEBUG FAULT arms it. Without the setting the database is opened with
 * shoal_open and DEBUG answers Redis's "not allowed" error, so production servers carry
 * no armed path.
 *
 * This is the one server file that reaches below include/shoal.h (durable_open and the
 * fault injector are the engine's internal test interfaces); nothing else in the server
 * includes engine internals.
 *
 *   DEBUG FAULT FSYNC              every later fsync/fdatasync of the engine fails with EIO
 *   DEBUG FAULT WRITE              every later file write of the engine fails with EIO
 *   DEBUG FAULT FSYNC-DELAY <ms>   every later fsync/fdatasync first sleeps ms (0: none),
 *                                  a slow disk: lets a test tell grouped syncs from
 *                                  one sync per write whatever the machine's speed
 *
 * Invariants: 1. no fault is armed unless enable-debug-command was set at startup;
 * 2. a failure, once armed, stays (the engine's failure is sticky anyway); 3. the delay
 * hook is installed before the engine starts, so log threads only ever read the delay,
 * an atomic.
 * Tested by tests/integration/test_durable.py (test_failed_sync_answers_misconf,
 * test_pipeline_replies_in_order_and_grouped).
 */
#include "debug.h"

#include <errno.h>
#include <stdatomic.h>
#include <time.h>

#include "commands.h"
#include "core/durable.h"
#include "durability/io.h"

static struct io_faults debug_faults;
static bool debug_faults_used;
static atomic_llong debug_sync_delay_ms;

/* before_sync hook of the fault injector: runs on the engine's thread about to sync. */
static void debug_delay_sync(void *context, uint64_t nth)
{
    (void)context;
    (void)nth;
    long long delay = atomic_load(&debug_sync_delay_ms);
    if (delay <= 0)
        return;
    struct timespec pause = {.tv_sec = delay / 1000, .tv_nsec = (delay % 1000) * 1000000};
    nanosleep(&pause, NULL);
}

int debug_open(const char *dir, const shoal_options *opts, bool faults, shoal_db **out)
{
    if (!faults)
        return shoal_open(dir, opts, out);
    io_faults_init(&debug_faults, NULL);
    debug_faults.before_sync = debug_delay_sync; /* invariant 3 */
    debug_faults_used = true;
    return durable_open(dir, opts, &debug_faults.io, out);
}

COMMAND_HANDLER(cmd_debug)
{
    if (!atomic_load(&server.config.enable_debug_command)) {
        resp_add_error(&c->out, "ERR DEBUG command not allowed. If the enable-debug-command "
                                "option is set to \"local\", you can run it from a local "
                                "connection, otherwise you need to set this option in the "
                                "configuration file, and then restart the server.");
        return;
    }
    if (arg_is(c, 1, "FAULT") && c->argc >= 3 && !debug_faults_used) {
        resp_add_error(&c->out, "ERR DEBUG FAULT needs durable mode");
        return;
    }
    if (arg_is(c, 1, "FAULT") && c->argc == 4 && arg_is(c, 2, "FSYNC-DELAY")) {
        long long delay;
        if (!arg_long_long(c, 3, &delay))
            return;
        if (delay < 0 || delay > 60000) {
            resp_add_error(&c->out, "ERR the delay must be 0..60000 ms");
            return;
        }
        atomic_store(&debug_sync_delay_ms, delay);
        resp_add_ok(&c->out);
        return;
    }
    if (arg_is(c, 1, "FAULT") && c->argc == 3) {
        enum io_op op;
        if (arg_is(c, 2, "FSYNC"))
            op = IO_OP_SYNC;
        else if (arg_is(c, 2, "WRITE"))
            op = IO_OP_WRITE;
        else {
            resp_add_error(&c->out, "ERR DEBUG FAULT FSYNC|WRITE|FSYNC-DELAY <ms>");
            return;
        }
        io_faults_fail(&debug_faults, op, io_faults_count(&debug_faults, op) + 1, EIO, true);
        resp_add_ok(&c->out);
        return;
    }
    resp_add_errorf(&c->out,
                    "ERR unknown subcommand '%.*s'. Try DEBUG FAULT FSYNC|WRITE|FSYNC-DELAY.",
                    (int)c->lengths[1], c->argv[1]);
}
