/* Leveled logging to stderr, journal-friendly ("<N>" syslog prefixes when
 * stderr is not a terminal).  Thread-safe: one fprintf per line.
 *
 * One call is always exactly one output line: the formatted message is escaped
 * (qfs_log_escape), so a name from the source (a directory called "x\n<3>...")
 * can neither end the line nor start a forged one. */
#ifndef QFS_LOG_H
#define QFS_LOG_H

#include <stddef.h>

enum qfs_log_level { QFS_LOG_ERR = 3, QFS_LOG_WARN = 4, QFS_LOG_INFO = 6, QFS_LOG_DEBUG = 7 };

void qfs_log_set_level(enum qfs_log_level max_level);
void qfs_log(enum qfs_log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Copy s to out (outlen > 0 bytes, always NUL-terminated; cut before an escape that
 * would not fit) with every byte that could end, rewrite or hide part of a line
 * escaped: \n \r \t as such, a backslash as \\, other bytes below 0x20, 0x7f, the C1
 * controls (UTF-8 c2 80..c2 9f) and bytes that are not valid UTF-8 as \xHH.  Valid
 * UTF-8 otherwise stays as it is.  Returns out.  Cannot fail. */
char *qfs_log_escape(const char *s, char *out, size_t outlen);

#define qfs_err(...)   qfs_log(QFS_LOG_ERR, __VA_ARGS__)
#define qfs_warn(...)  qfs_log(QFS_LOG_WARN, __VA_ARGS__)
#define qfs_info(...)  qfs_log(QFS_LOG_INFO, __VA_ARGS__)
#define qfs_debug(...) qfs_log(QFS_LOG_DEBUG, __VA_ARGS__)

#endif
