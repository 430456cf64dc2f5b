#include "readahead.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* mountinfo escapes space, tab, newline and backslash in paths as \ooo: undo it in
 * place. */
static void unescape(char *s)
{
    char *w = s;
    for (const char *r = s; *r; r++) {
        if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' &&
            r[3] >= '0' && r[3] <= '7') {
            *w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
            r += 3;
        } else {
            *w++ = *r;
        }
    }
    *w = '\0';
}

/* The sysfs file of the last mount on mountpoint (a later mount hides earlier ones):
 * a malloc'd path, or NULL with *err set. */
static char *bdi_file(const char *mountpoint, int *err)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    if (!f) {
        *err = -errno;
        return NULL;
    }
    char *line = NULL, *found = NULL;
    size_t cap = 0;
    *err = -ENOENT;
    while (getline(&line, &cap, f) > 0) {
        /* id parent MAJ:MIN root mountpoint ... */
        char *save = NULL, *fld[5];
        int n = 0;
        for (char *t = strtok_r(line, " ", &save); t && n < 5; t = strtok_r(NULL, " ", &save))
            fld[n++] = t;
        if (n < 5)
            continue;
        unescape(fld[4]);
        unsigned maj, min;
        char tail;
        if (strcmp(fld[4], mountpoint) || sscanf(fld[2], "%u:%u%c", &maj, &min, &tail) != 2)
            continue;
        free(found);
        found = NULL;
        if (asprintf(&found, "/sys/class/bdi/%u:%u/read_ahead_kb", maj, min) < 0) {
            found = NULL;
            *err = -ENOMEM;
            break;
        }
        *err = 0;
    }
    free(line);
    fclose(f);
    return found;
}

int qfs_readahead_set(const char *mountpoint, uint64_t bytes)
{
    int err;
    char *path = bdi_file(mountpoint, &err);
    if (!path)
        return err;
    FILE *f = fopen(path, "we");
    free(path);
    if (!f)
        return -errno;
    int rc = fprintf(f, "%" PRIu64 "\n", bytes / 1024) < 0 ? -EIO : 0;
    if (fclose(f) != 0 && rc == 0)
        rc = -errno;
    return rc;
}

int qfs_readahead_get(const char *mountpoint, uint64_t *kb)
{
    int err;
    char *path = bdi_file(mountpoint, &err);
    if (!path)
        return err;
    FILE *f = fopen(path, "re");
    free(path);
    if (!f)
        return -errno;
    int rc = fscanf(f, "%" SCNu64, kb) == 1 ? 0 : -EIO;
    fclose(f);
    return rc;
}
