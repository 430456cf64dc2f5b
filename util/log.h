/* Leveled logging to stderr, journal-friendly ("<N>" syslog prefixes when
 * stderr is not a terminal).  Thread-safe: one fprintf per line. */
#ifndef QFS_LOG_H
#define QFS_LOG_H

enum qfs_log_level { QFS_LOG_ERR = 3, QFS_LOG_WARN = 4, QFS_LOG_INFO = 6, QFS_LOG_DEBUG = 7 };

void qfs_log_set_level(enum qfs_log_level max_level);
void qfs_log(enum qfs_log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define qfs_err(...)   qfs_log(QFS_LOG_ERR, __VA_ARGS__)
#define qfs_warn(...)  qfs_log(QFS_LOG_WARN, __VA_ARGS__)
#define qfs_info(...)  qfs_log(QFS_LOG_INFO, __VA_ARGS__)
#define qfs_debug(...) qfs_log(QFS_LOG_DEBUG, __VA_ARGS__)

#endif
