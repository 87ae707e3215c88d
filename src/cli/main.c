/*
 * main.c -- the `shoal` command-line tool: finds the subcommand named by the first argument
 * in a table and runs it.
 *
 * The table is data, not a chain of comparisons: a subcommand is one row (its name, its
 * handler and a one-line description) plus a handler in its own file, declared in cli.h.
 * `shoal help` prints the rows, so the help can never disagree with what exists.
 *
 * Exit status: the subcommand's (0 success, 1 failure, 2 usage); `shoal` without a
 * subcommand, or with an unknown one, prints a message and exits 2.
 *
 * Invariants:
 *   1. Every row of the table has a handler and a description; names are unique.
 *   2. Usage errors go to stderr and exit 2; requested help goes to stdout and exits 0.
 *
 * How it is tested: ctest runs `shoal help`, an unknown subcommand (expecting exit 2) and a
 * small `shoal bench` (bench/CMakeLists.txt).
 */
#include "cli.h"

#include "shoal.h"

#include <stdio.h>
#include <string.h>

typedef struct cli_command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *help;
} cli_command;

static int cli_help(int argc, char **argv);

static const cli_command cli_commands[] = {
    {"bench", cli_bench, "measure the engine on a memory database (fill, gets, scan, snapshots)"},
    {"check", cli_check, "verify every checksum of a durable database, read-only (exit 1: damage)"},
    {"dump", cli_dump,
     "write a database's tenants, namespaces and keys in the portable dump format"},
    {"load", cli_load, "load a dump into a database, validating the whole file first"},
    {"stats", cli_stats, "print a durable database's statistics: shards, tenants, namespaces"},
    {"help", cli_help, "list the subcommands"},
};

#define CLI_COMMAND_COUNT (sizeof cli_commands / sizeof cli_commands[0])

static void cli_list(FILE *out)
{
    fprintf(out, "usage: shoal <subcommand> [options]   (shoal %d.%d)\n\nsubcommands:\n",
            SHOAL_VERSION_MAJOR, SHOAL_VERSION_MINOR);
    for (size_t i = 0; i < CLI_COMMAND_COUNT; i++)
        fprintf(out, "  %-10s %s\n", cli_commands[i].name, cli_commands[i].help);
    fprintf(out, "\n'shoal <subcommand> --help' describes a subcommand's options.\n");
}

static int cli_help(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    cli_list(stdout);
    return 0;
}

static const cli_command *cli_find(const char *name)
{
    for (size_t i = 0; i < CLI_COMMAND_COUNT; i++)
        if (strcmp(cli_commands[i].name, name) == 0)
            return &cli_commands[i];
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        cli_list(stderr);
        return 2;
    }
    const char *name = argv[1];
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0)
        name = "help";
    const cli_command *command = cli_find(name);
    if (!command) {
        fprintf(stderr, "shoal: unknown subcommand '%s'; 'shoal help' lists them\n", argv[1]);
        return 2;
    }
    return command->run(argc - 1, argv + 1);
}
