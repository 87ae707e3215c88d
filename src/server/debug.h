/*
 * debug.h -- DEBUG, for tests: opening a durable database whose file I/O can be made to
 * fail on request. See debug.c.
 */
#ifndef SHOAL_SERVER_DEBUG_H
#define SHOAL_SERVER_DEBUG_H

#include <stdbool.h>

#include "shoal.h"

/* Opens the durable database in dir as shoal_open does; with faults true, its file I/O
 * goes through a fault injector that DEBUG FAULT arms. Returns as shoal_open. */
int debug_open(const char *dir, const shoal_options *opts, bool faults, shoal_db **out);

#endif /* SHOAL_SERVER_DEBUG_H */
