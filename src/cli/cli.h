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

/* `shoal bench`: a short, self-explaining measurement on a memory database (bench.c). */
int cli_bench(int argc, char **argv);

#endif /* SHOAL_CLI_H */
