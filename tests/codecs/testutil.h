/* Small helpers shared by the codecs tests: checks, stderr capture, files. */
#ifndef QFS_TEST_CODECS_UTIL_H
#define QFS_TEST_CODECS_UTIL_H

#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int n_fail;

#define CHECK(c)                                                                     \
    do {                                                                             \
        if (!(c)) {                                                                  \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #c);    \
            n_fail++;                                                                \
        }                                                                            \
    } while (0)

/* Redirect stderr (fd 2) to a temp file between cap_begin and cap_end;
 * cap_end returns what was written (malloc'd, NUL-terminated).  Captures nest (up to
 * CAP_DEPTH): an inner capture takes what is written while it runs, the outer one the
 * rest. */
#define CAP_DEPTH 8
static int cap_saved[CAP_DEPTH], cap_fd[CAP_DEPTH], cap_depth;

static void cap_begin(void)
{
    char tmpl[] = "/tmp/qfs-test-stderr-XXXXXX";
    if (cap_depth == CAP_DEPTH) {
        fprintf(stderr, "cap_begin: captures nested too deep\n");
        exit(1);
    }
    fflush(stderr);
    int fd = mkstemp(tmpl);
    if (fd < 0) {
        perror("mkstemp");
        exit(1);
    }
    unlink(tmpl);
    int saved = dup(2);
    if (saved < 0 || dup2(fd, 2) < 0) {
        perror("dup");
        exit(1);
    }
    cap_saved[cap_depth] = saved;
    cap_fd[cap_depth] = fd;
    cap_depth++;
}

static char *cap_end(void)
{
    if (cap_depth == 0) {
        fprintf(stderr, "cap_end without cap_begin\n");
        exit(1);
    }
    cap_depth--;
    const int saved = cap_saved[cap_depth], fd = cap_fd[cap_depth];
    fflush(stderr);
    if (dup2(saved, 2) < 0) {
        perror("dup2");
        exit(1);
    }
    close(saved);
    off_t n = lseek(fd, 0, SEEK_END);
    char *s = malloc((size_t)(n > 0 ? n : 0) + 1);
    if (!s || pread(fd, s, (size_t)(n > 0 ? n : 0), 0) != (ssize_t)(n > 0 ? n : 0)) {
        perror("read back stderr");
        exit(1);
    }
    s[n > 0 ? n : 0] = '\0';
    close(fd);
    return s;
}

/* The captured log must contain every non-NULL needle; on failure print it. */
static void check_log_at(const char *file, int line, const char *log, const char *a,
                         const char *b)
{
    if ((a && !strstr(log, a)) || (b && !strstr(log, b))) {
        fprintf(stderr, "%s:%d: log lacks \"%s\" / \"%s\":\n%s\n", file, line, a ? a : "",
                b ? b : "", log);
        n_fail++;
    }
}
#define CHECK_LOG(log, a, b) check_log_at(__FILE__, __LINE__, log, a, b)

static char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xasprintf(const char *fmt, ...)
{
    va_list ap;
    char *s;
    va_start(ap, fmt);
    int r = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (r < 0) {
        perror("vasprintf");
        exit(1);
    }
    return s;
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

static char *make_tmpdir(void)
{
    char *d = xasprintf("/tmp/qfs-test-XXXXXX");
    if (!mkdtemp(d)) {
        perror("mkdtemp");
        exit(1);
    }
    return d;
}

/* rm -r dir, best effort (tests only create flat files and one level of subdirs) */
static void remove_tree(const char *dir)
{
    char *cmd = xasprintf("rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "warning: could not remove %s\n", dir);
    free(cmd);
}

#endif
