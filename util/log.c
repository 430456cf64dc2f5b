#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static enum qfs_log_level max_level = QFS_LOG_INFO;

void qfs_log_set_level(enum qfs_log_level lvl) { max_level = lvl; }

void qfs_log(enum qfs_log_level lvl, const char *fmt, ...)
{
    if (lvl > max_level)
        return;
    static const char *names[8] = {"", "", "", "error", "warning", "", "info", "debug"};
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* journald parses "<N>" as the priority; a terminal gets the level name. */
    if (isatty(STDERR_FILENO))
        fprintf(stderr, "quantfs: %s: %s\n", names[lvl], msg);
    else
        fprintf(stderr, "<%d>quantfs: %s: %s\n", (int)lvl, names[lvl], msg);
}
