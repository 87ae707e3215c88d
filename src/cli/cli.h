/*
 * cli.h -- the subcommands of the `shoal` tool. main.c holds the table that names them;
 * each subcommand lives in its own file and is declared here.
 *
 * A subcommand receives its own argument vector (argv[0] is the subcommand's name) and
 * returns the process's exit status: 0 for success, 1 for a failure of the work, 2 for a
 * usage error. It prints results on stdout and diagnostics on stderr.
 */
#ifndef SHOAL_CLI_H
#define SHOAL_CLI_H

#include "shoal.h"

/* `shoal bench`: a short, self-explaining measurement on a memory database (bench.c). */
int cli_bench(int argc, char **argv);
/* `shoal check DIR`: verifies every checksum of a durable database, read-only (check.c). */
int cli_check(int argc, char **argv);
/* `shoal dump DIR` and `shoal load DIR`: the portable dump format, out and in (dump.c). */
int cli_dump(int argc, char **argv);
int cli_load(int argc, char **argv);
/* `shoal stats DIR`: the statistics of a durable database, for a person (stats.c). */
int cli_stats(int argc, char **argv);

/* Opens the durable database in dir for subcommand tool, refusing a directory that holds no
 * database (it never creates one). Returns 0 with *db open, or the exit status to return
 * (1 damaged, 2 not a database, in use or another error) after saying why on stderr
 * (dump.c). */
int cli_open_existing(const char *tool, const char *dir, shoal_db **db);

#endif /* SHOAL_CLI_H */
