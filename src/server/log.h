/*
 * log.h -- the server's log: one line per event, with time, pid and level, to standard
 * error or the logfile setting. Thread-safety: any thread (one write per line).
 */
#ifndef SHOAL_SERVER_LOG_H
#define SHOAL_SERVER_LOG_H

enum log_level { LOG_DEBUG = 0, LOG_VERBOSE = 1, LOG_NOTICE = 2, LOG_WARNING = 3 };

/* Opens the log file (NULL or "" keeps standard error) and sets the level by its name. */
int log_open(const char *path, const char *level_name);
void log_set_level(const char *level_name);
void log_message(int level, const char *format, ...) __attribute__((format(printf, 2, 3)));

#endif /* SHOAL_SERVER_LOG_H */
