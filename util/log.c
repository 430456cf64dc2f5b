#include "log.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static enum qfs_log_level max_level = QFS_LOG_INFO;

void qfs_log_set_level(enum qfs_log_level lvl) { max_level = lvl; }

/* Length of the valid UTF-8 sequence at p (1..4), or 0 when p does not start one
 * (overlong forms, surrogates and code points above U+10FFFF are not valid). */
static size_t utf8_len(const unsigned char *p)
{
    const unsigned c = p[0];
    size_t n;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80) /* also stops at the NUL */
            return 0;
        cp = cp << 6 | (p[i] & 0x3f);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

char *qfs_log_escape(const char *s, char *out, size_t outlen)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    size_t o = 0;
    while (*p) {
        char esc[8];
        size_t n = utf8_len(p), el = 0;
        const bool c1 = n == 2 && p[0] == 0xc2 && p[1] < 0xa0; /* U+0080..U+009F */
        const char *named = *p == '\n' ? "\\n" : *p == '\r' ? "\\r" : *p == '\t' ? "\\t"
                          : *p == '\\' ? "\\\\" : NULL;
        if (named) {
            el = 2;
            memcpy(esc, named, 2);
        } else if (n == 0 || c1 || (n == 1 && (*p < 0x20 || *p == 0x7f))) {
            n = c1 ? 2 : 1;
            for (size_t i = 0; i < n; i++) {
                esc[el++] = '\\';
                esc[el++] = 'x';
                esc[el++] = hex[p[i] >> 4];
                esc[el++] = hex[p[i] & 15];
            }
        } else {
            memcpy(esc, p, n);
            el = n;
        }
        if (o + el >= outlen)
            break;
        memcpy(out + o, esc, el);
        o += el;
        p += n;
    }
    out[o] = '\0';
    return out;
}

void qfs_log(enum qfs_log_level lvl, const char *fmt, ...)
{
    if (lvl > max_level)
        return;
    static const char *names[8] = {"", "", "", "error", "warning", "", "info", "debug"};
    char msg[2048];
    char line[4 * sizeof msg]; /* every byte escaped at most 4 times as long */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    qfs_log_escape(msg, line, sizeof line);
    /* journald parses "<N>" as the priority; a terminal gets the level name. */
    if (isatty(STDERR_FILENO))
        fprintf(stderr, "quantfs: %s: %s\n", names[lvl], line);
    else
        fprintf(stderr, "<%d>quantfs: %s: %s\n", (int)lvl, names[lvl], line);
}
