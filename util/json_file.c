/* Bounded JSON file reading (contract: json_file.h). */
#include "json_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

/* An integer literal beyond int64 at s[0..n): more than 18 digits and out of range. */
static bool too_big(const char *s, size_t n)
{
    size_t d = n - (s[0] == '-');
    if (d <= 18)
        return false;
    if (d > 19)
        return true;
    const char *lim = s[0] == '-' ? "9223372036854775808" : "9223372036854775807";
    return memcmp(s + (s[0] == '-'), lim, 19) > 0;
}

/* One pass over buf: every too-big integer literal outside strings gets ".0" appended.
 * o NULL: only count; else the result is written to o.  Returns the output length.  The
 * same walk for counting and copying, so that the copy fits what was counted. */
static size_t widen_pass(const char *buf, size_t len, char *o)
{
    size_t k = 0;
    bool in_str = false;
#define EMIT(ch) do { if (o) o[k] = (ch); k++; } while (0) /* ch: no side effects */
    for (size_t i = 0; i < len; i++) {
        char c = buf[i];
        if (in_str) {
            EMIT(c);
            if (c == '\\' && i + 1 < len) {
                i++;
                EMIT(buf[i]);
            } else if (c == '"') {
                in_str = false;
            }
            continue;
        }
        if (c == '"') {
            in_str = true;
            EMIT(c);
        } else if (c == '-' || (c >= '0' && c <= '9')) {
            size_t j = i + 1; /* end of the digits */
            while (j < len && buf[j] >= '0' && buf[j] <= '9')
                j++;
            const bool real = j < len && (buf[j] == '.' || buf[j] == 'e' || buf[j] == 'E');
            size_t e = j; /* end of the whole literal (fraction, exponent) */
            while (e < len && ((buf[e] >= '0' && buf[e] <= '9') || buf[e] == '.' ||
                               buf[e] == 'e' || buf[e] == 'E' || buf[e] == '+' || buf[e] == '-'))
                e++;
            for (size_t x = i; x < j; x++)
                EMIT(buf[x]);
            if (!real && too_big(buf + i, j - i)) {
                EMIT('.');
                EMIT('0');
            }
            for (size_t x = j; x < e; x++)
                EMIT(buf[x]);
            i = e - 1;
        } else {
            EMIT(c);
        }
    }
#undef EMIT
    return k;
}

/* Copy of buf with every too-big integer literal outside strings turned into a real
 * (".0" appended), or NULL when there is none (*changed false) or on ENOMEM. */
static char *widen_big_ints(const char *buf, size_t len, size_t *out_len, bool *changed)
{
    *changed = false;
    const size_t n = widen_pass(buf, len, NULL);
    if (n == len)
        return NULL;
    char *o = malloc(n + 1);
    if (!o)
        return NULL;
    widen_pass(buf, len, o);
    o[n] = 0;
    *out_len = n;
    *changed = true;
    return o;
}

json_t *qfs_json_loadb(const char *buf, size_t len, size_t flags, json_error_t *err)
{
    size_t wl;
    bool changed;
    char *w = widen_big_ints(buf, len, &wl, &changed);
    json_t *j = json_loadb(changed ? w : buf, changed ? wl : len, flags, err);
    free(w);
    return j;
}

int qfs_json_load(const char *path, size_t max_bytes, size_t flags, json_t **out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    int rc = 0;
    char *buf = NULL;
    if (fstat(fd, &st) < 0) {
        rc = -errno;
        qfs_err("%s: fstat: %s", path, strerror(-rc));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        qfs_err("%s: not a regular file", path);
        rc = -EINVAL;
        goto out;
    }
    if ((uint64_t)st.st_size > max_bytes) {
        qfs_err("%s: %lld bytes, more than the %zu bytes a JSON file of a model may have",
                path, (long long)st.st_size, max_bytes);
        rc = -EFBIG;
        goto out;
    }
    size_t len = (size_t)st.st_size, got = 0;
    buf = malloc(len + 1);
    if (!buf) {
        rc = -ENOMEM;
        qfs_err("%s: out of memory", path);
        goto out;
    }
    while (got < len) {
        ssize_t r = read(fd, buf + got, len - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            rc = r < 0 ? -errno : -EIO;
            qfs_err("%s: read: %s", path, r < 0 ? strerror(errno) : "file shrank while read");
            goto out;
        }
        got += (size_t)r;
    }
    json_error_t jerr;
    json_t *j = qfs_json_loadb(buf, len, flags, &jerr);
    if (!j) {
        qfs_err("%s: invalid JSON: %s (line %d, column %d)", path, jerr.text, jerr.line,
                jerr.column);
        rc = -EINVAL;
        goto out;
    }
    *out = j;
out:
    free(buf);
    close(fd);
    return rc;
}
