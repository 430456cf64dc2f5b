/* Helpers shared by the fuzz targets (tests/fuzz/fuzz_*.c).
 *
 * The readers under test take paths, so each input is written to a file in a scratch
 * directory on tmpfs (/dev/shm, else $TMPDIR or /tmp), made once per process and removed
 * at exit (kept with QFS_FUZZ_KEEP=1).  Everything here aborts on a setup failure: that is a harness bug, not a finding.
 * A target is one LLVMFuzzerTestOneInput; tests/fuzz/replay.c runs it over saved inputs
 * in a build without libFuzzer. */
#ifndef QFS_FUZZ_UTIL_H
#define QFS_FUZZ_UTIL_H

#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char fuzz_dir_path[256];

static inline void fuzz_rm_dir(void)
{
    char cmd[300];
    if (!fuzz_dir_path[0] || getenv("QFS_FUZZ_KEEP")) /* kept for a look at what ran */
        return;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fuzz_dir_path);
    if (system(cmd) != 0)
        fprintf(stderr, "fuzz: could not remove %s\n", fuzz_dir_path);
}

/* The scratch directory (created on first use). */
static inline const char *fuzz_dir(void)
{
    if (fuzz_dir_path[0])
        return fuzz_dir_path;
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
    snprintf(fuzz_dir_path, sizeof fuzz_dir_path, "%s/qfs-fuzz.XXXXXX", base ? base : "/tmp");
    if (!mkdtemp(fuzz_dir_path)) {
        perror("fuzz: mkdtemp");
        abort();
    }
    atexit(fuzz_rm_dir);
    return fuzz_dir_path;
}

/* dir/name in a static buffer (one at a time). */
static inline const char *fuzz_path(const char *name)
{
    static char p[512];
    snprintf(p, sizeof p, "%s/%s", fuzz_dir(), name);
    return p;
}

/* Write data to the scratch file name (replacing it); returns its path. */
static inline const char *fuzz_write(const char *name, const void *data, size_t size)
{
    const char *p = fuzz_path(name);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) {
        perror(p);
        abort();
    }
    const uint8_t *b = data;
    while (size > 0) {
        ssize_t w = write(fd, b, size);
        if (w <= 0) {
            perror(p);
            abort();
        }
        b += w;
        size -= (size_t)w;
    }
    close(fd);
    return p;
}

static inline void fuzz_unlink(const char *name) { unlink(fuzz_path(name)); }

/* LLVMFuzzerInitialize for a target: log level (warnings and errors, so that the log
 * escaping runs too; QFS_FUZZ_QUIET=1: none), then setup(), which may be NULL. */
#define FUZZ_INIT(setup)                                                                  \
    int LLVMFuzzerInitialize(int *argc, char ***argv);                                   \
    int LLVMFuzzerInitialize(int *argc, char ***argv)                                    \
    {                                                                                    \
        (void)argc;                                                                      \
        (void)argv;                                                                      \
        qfs_log_set_level(getenv("QFS_FUZZ_QUIET") ? (enum qfs_log_level)0 : QFS_LOG_WARN); \
        void (*fn)(void) = (setup);                                                      \
        if (fn)                                                                          \
            fn();                                                                        \
        return 0;                                                                        \
    }

#endif
