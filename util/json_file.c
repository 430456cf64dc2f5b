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

/* Copy of buf with every too-big integer literal outside strings turned into a real
 * (".0" appended), or NULL when there is none (*changed false) or on ENOMEM. */
static char *widen_big_ints(const char *buf, size_t len, size_t *out_len, bool *changed)
{
    *changed = false;
    size_t extra = 0;
    bool in_str = false;
    for (size_t i = 0; i < len; i++) {
        char c = buf[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = false;
            continue;
        }
        if (c == '"') {
            in_str = true;
        } else if (c == '-' || (c >= '0' && c <= '9')) {
            size_t j = i + 1;
            while (j < len && buf[j] >= '0' && buf[j] <= '9')
                j++;
            bool real = j < len && (buf[j] == '.' || buf[j] == 'e' || buf[j] == 'E');
            if (!real && too_big(buf + i, j - i))
                extra += 2;
            while (j < len && ((buf[j] >= '0' && buf[j] <= '9') || buf[j] == '.' ||
                               buf[j] == 'e' || buf[j] == 'E' || buf[j] == '+' || buf[j] == '-'))
                j++;
            i = j - 1;
        }
    }
    if (!extra)
        return NULL;
    char *o = malloc(len + extra + 1);
    if (!o)
        return NULL;
    size_t k = 0;
    in_str = false;
    for (size_t i = 0; i < len; i++) {
        char c = buf[i];
        if (in_str) {
            o[k++] = c;
            if (c == '\\' && i + 1 < len)
                o[k++] = buf[++i];
            else if (c == '"')
                in_str = false;
            continue;
        }
        if (c == '"') {
            in_str = true;
            o[k++] = c;
        } else if (c == '-' || (c >= '0' && c <= '9')) {
            size_t j = i + 1;
            while (j < len && buf[j] >= '0' && buf[j] <= '9')
                j++;
            bool real = j < len && (buf[j] == '.' || buf[j] == 'e' || buf[j] == 'E');
            memcpy(o + k, buf + i, j - i);
            k += j - i;
            if (!real && too_big(buf + i, j - i)) {
                o[k++] = '.';
                o[k++] = '0';
            }
            i = j - 1;
        } else {
            o[k++] = c;
        }
    }
    o[k] = 0;
    *out_len = k;
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
