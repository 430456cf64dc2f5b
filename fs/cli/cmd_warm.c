/* quantfs warm [-j N] [-q] PATH...: read virtual files through a mounted quantfs so that
 * the daemon quantizes them and its cache holds every chunk before the first real use.
 *
 * PATH is a file inside a quantfs mount, or a directory of one: its virtual files with
 * tensors and those of the loadable directories in it (told apart by the extended
 * attributes the mount gives them, fs/serve/namespace.h; a file shown twice, as
 * <model>.awq.safetensors and <model>.awq/model.safetensors, is read once).  N
 * reader threads (default 4) each take a whole file and read it from start to end with
 * O_DIRECT, so every byte is asked of the daemon (not of the page cache) in order, and
 * the daemon's prefetch quantizes ahead of the reader.  Progress goes to stderr: a bar
 * redrawn in place on a terminal (MB done/total, MB/s, ETA), a plain line every few
 * seconds and one per finished file otherwise.  Exit status: 0, 1 when a file could not
 * be read (the error is printed), 2 on a usage error. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "../../util/log.h"
#include "commands.h"

#define FUSE_MAGIC 0x65735546
#define READ_SIZE (1u << 20)
#define DEFAULT_JOBS 4
#define LOG_EVERY_MS 5000

struct wfile {
    char *path;
    uint64_t size;
    _Atomic uint64_t done; /* bytes read */
    int err;               /* errno of the failure, 0 */
    _Atomic int finished;
};

struct warm {
    struct wfile *f;
    int n;
    _Atomic int next;     /* the next file to take */
    _Atomic uint64_t bytes;
    _Atomic int running;
};

static int64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void usage(FILE *out)
{
    fprintf(out, "usage: quantfs warm [-j N] [-q] PATH...\n"
                 "Read virtual files of a mounted quantfs (or every virtual file of a\n"
                 "directory of one, with those of its loadable directories) from start to\n"
                 "end, so that the daemon's cache holds them.\n"
                 "  -j N   reader threads, one file each at a time (default %d)\n"
                 "  -q     no progress output\n",
                 DEFAULT_JOBS);
}

static int add_file(struct warm *w, int *cap, const char *path, uint64_t size)
{
    if (w->n == *cap) {
        int c = *cap ? 2 * *cap : 16;
        void *p = realloc(w->f, (size_t)c * sizeof *w->f);
        if (!p)
            return -ENOMEM;
        w->f = p;
        *cap = c;
    }
    struct wfile *f = &w->f[w->n];
    memset(f, 0, sizeof *f);
    if (!(f->path = strdup(path)))
        return -ENOMEM;
    f->size = size;
    w->n++;
    return 0;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Extended attribute name of path (malloc'd, NUL-terminated), or NULL. */
static char *xattr_of(const char *path, const char *name)
{
    ssize_t n = getxattr(path, name, NULL, 0);
    if (n < 0 || n > 65536)
        return NULL;
    char *v = malloc((size_t)n + 1);
    if (!v)
        return NULL;
    ssize_t m = getxattr(path, name, v, (size_t)n);
    if (m < 0 || m > n) {
        free(v);
        return NULL;
    }
    v[m] = 0;
    return v;
}

/* Append "dir/name" to *names.  0 or -ENOMEM. */
static int push_name(char ***names, int *n, int *cap, const char *dir, const char *name)
{
    if (*n == *cap) {
        int c = *cap ? 2 * *cap : 16;
        char **p = realloc(*names, (size_t)c * sizeof *p);
        if (!p)
            return -ENOMEM;
        *names = p;
        *cap = c;
    }
    if (asprintf(&(*names)[*n], "%s/%s", dir, name) < 0)
        return -ENOMEM;
    (*n)++;
    return 0;
}

/* The entries of dir, as paths, unsorted.  0 or negative errno (printed unless -ENOMEM);
 * *names is set either way. */
static int list_dir(const char *dir, char ***names, int *n)
{
    *names = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) {
        int rc = -errno;
        fprintf(stderr, "quantfs warm: %s: %s\n", dir, strerror(errno));
        return rc;
    }
    int cap = 0, rc = 0;
    struct dirent *de = NULL;
    errno = 0;
    while (rc == 0 && (de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            rc = push_name(names, n, &cap, dir, de->d_name);
    if (rc == 0 && !de && errno) {
        rc = -errno;
        fprintf(stderr, "quantfs warm: %s: %s\n", dir, strerror(errno));
    }
    closedir(d);
    return rc;
}

/* The virtual file ids already taken (user.quantfs.file), to read each once. */
struct seen {
    char **id;
    int n, cap;
};

static bool seen_add(struct seen *s, char *id)
{
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->id[i], id)) {
            free(id);
            return false;
        }
    if (s->n == s->cap) {
        int c = s->cap ? 2 * s->cap : 32;
        char **p = realloc(s->id, (size_t)c * sizeof *p);
        if (!p) {
            free(id);
            return false;
        }
        s->id = p;
        s->cap = c;
    }
    s->id[s->n++] = id;
    return true;
}

/* The virtual files of dir with tensors, in name order, then (depth 0) those of the
 * loadable directories in it.  0 or negative errno (printed). */
static int add_dir_at(struct warm *w, int *cap, const char *dir, struct seen *seen, int depth)
{
    char **names;
    int n, rc = list_dir(dir, &names, &n);
    if (n > 1)
        qsort(names, (size_t)n, sizeof *names, name_cmp);
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < n && rc == 0; i++) {
            struct stat st;
            if (stat(names[i], &st) != 0)
                continue;
            if (pass == 0 && S_ISREG(st.st_mode)) {
                char *v = xattr_of(names[i], "user.quantfs.variant");
                char *id = v ? xattr_of(names[i], "user.quantfs.file") : NULL;
                if (id && seen_add(seen, id))
                    rc = add_file(w, cap, names[i], (uint64_t)st.st_size);
                free(v);
            } else if (pass == 1 && S_ISDIR(st.st_mode) && depth == 0) {
                char *f = xattr_of(names[i], "user.quantfs.format");
                if (f)
                    rc = add_dir_at(w, cap, names[i], seen, 1);
                free(f);
            }
        }
    }
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
    if (rc == -ENOMEM)
        fprintf(stderr, "quantfs warm: out of memory\n");
    return rc;
}

static int add_dir(struct warm *w, int *cap, const char *dir)
{
    struct seen seen = {0};
    int rc = add_dir_at(w, cap, dir, &seen, 0);
    for (int i = 0; i < seen.n; i++)
        free(seen.id[i]);
    free(seen.id);
    return rc;
}

/* Read f from start to end.  0 or an errno. */
static int read_file(struct warm *w, struct wfile *f, uint8_t *buf)
{
    int fd = open(f->path, O_RDONLY | O_DIRECT | O_CLOEXEC);
    if (fd < 0 && errno == EINVAL)
        fd = open(f->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno;
    int err = 0;
    uint64_t off = 0;
    for (;;) {
        ssize_t r = pread(fd, buf, READ_SIZE, (off_t)off);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            err = errno;
            break;
        }
        if (r == 0)
            break;
        off += (uint64_t)r;
        atomic_fetch_add(&f->done, (uint64_t)r);
        atomic_fetch_add(&w->bytes, (uint64_t)r);
    }
    close(fd);
    if (!err && off != f->size)
        err = EIO; /* the file changed size while it was read */
    return err;
}

static void *reader_main(void *arg)
{
    struct warm *w = arg;
    uint8_t *buf = NULL;
    if (posix_memalign((void **)&buf, 4096, READ_SIZE) != 0)
        buf = NULL;
    for (;;) {
        int i = atomic_fetch_add(&w->next, 1);
        if (i >= w->n)
            break;
        struct wfile *f = &w->f[i];
        f->err = buf ? read_file(w, f, buf) : ENOMEM;
        atomic_store(&f->finished, 1);
    }
    free(buf);
    atomic_fetch_sub(&w->running, 1);
    return NULL;
}

static void fmt_eta(double secs, char *out, size_t n)
{
    if (secs < 0 || secs > 99 * 3600) {
        snprintf(out, n, "--:--");
        return;
    }
    unsigned s = (unsigned)(secs + 0.5);
    if (s >= 3600)
        snprintf(out, n, "%u:%02u:%02u", s / 3600, s / 60 % 60, s % 60);
    else
        snprintf(out, n, "%u:%02u", s / 60, s % 60);
}

static const char *base(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

int qfs_cmd_warm(int argc, char **argv)
{
    int jobs = DEFAULT_JOBS, quiet = 0, argi = 1;
    for (; argi < argc && argv[argi][0] == '-' && argv[argi][1]; argi++) {
        const char *a = argv[argi];
        if (!strcmp(a, "--")) {
            argi++;
            break;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "-q")) {
            quiet = 1;
        } else if (!strncmp(a, "-j", 2)) {
            const char *v = a[2] ? a + 2 : argi + 1 < argc ? argv[++argi] : "";
            char *end;
            long j = strtol(v, &end, 10);
            if (!*v || *end || j < 1 || j > 256) {
                fprintf(stderr, "quantfs warm: -j: expected a thread count from 1 to 256\n");
                return 2;
            }
            jobs = (int)j;
        } else {
            fprintf(stderr, "quantfs warm: unknown option %s\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (argi >= argc) {
        usage(stderr);
        return 2;
    }

    struct warm w = {0};
    int cap = 0, status = 0;
    for (int i = argi; i < argc; i++) {
        const char *p = argv[i];
        struct stat st;
        struct statfs sf;
        if (stat(p, &st) < 0) {
            fprintf(stderr, "quantfs warm: %s: %s\n", p, strerror(errno));
            status = 1;
            continue;
        }
        if (statfs(p, &sf) == 0 && sf.f_type != FUSE_MAGIC) {
            fprintf(stderr, "quantfs warm: %s: not inside a quantfs mount\n", p);
            status = 1;
            continue;
        }
        int rc = S_ISDIR(st.st_mode) ? add_dir(&w, &cap, p)
                 : S_ISREG(st.st_mode) ? add_file(&w, &cap, p, (uint64_t)st.st_size)
                                       : (fprintf(stderr, "quantfs warm: %s: not a file\n", p), -EINVAL);
        if (rc == -ENOMEM)
            goto out;
        if (rc < 0)
            status = 1;
    }
    if (w.n == 0) {
        if (!status)
            fprintf(stderr, "quantfs warm: no virtual file to read\n");
        status = 1;
        goto out;
    }

    uint64_t total = 0;
    for (int i = 0; i < w.n; i++)
        total += w.f[i].size;
    int nthreads = jobs < w.n ? jobs : w.n;
    pthread_t *th = calloc((size_t)nthreads, sizeof *th);
    if (!th) {
        fprintf(stderr, "quantfs warm: out of memory\n");
        status = 1;
        goto out;
    }
    const bool tty = isatty(STDERR_FILENO);
    int64_t t0 = now_ms(), last_log = t0;
    if (!quiet && !tty)
        fprintf(stderr, "warm: %d file%s, %.1f MB, %d reader%s\n", w.n, w.n == 1 ? "" : "s",
                (double)total / 1e6, nthreads, nthreads == 1 ? "" : "s");
    int started = 0;
    atomic_store(&w.running, nthreads);
    for (; started < nthreads; started++)
        if (pthread_create(&th[started], NULL, reader_main, &w) != 0)
            break;
    atomic_fetch_sub(&w.running, nthreads - started);
    if (started == 0) {
        fprintf(stderr, "quantfs warm: cannot start a reader thread\n");
        free(th);
        status = 1;
        goto out;
    }

    bool *reported = calloc((size_t)w.n, sizeof *reported);
    for (;;) {
        bool over = atomic_load(&w.running) == 0;
        int64_t now = now_ms();
        uint64_t done = atomic_load(&w.bytes);
        double secs = (double)(now - t0) / 1000.0;
        double rate = secs > 0 ? (double)done / 1e6 / secs : 0;
        char eta[32];
        fmt_eta(rate > 0 ? (double)(total - (done < total ? done : total)) / 1e6 / rate : -1,
                eta, sizeof eta);
        int files_done = 0;
        for (int i = 0; i < w.n; i++) {
            if (!atomic_load(&w.f[i].finished))
                continue;
            files_done++;
            if (reported && !reported[i]) {
                char shown[4 * PATH_MAX]; /* names come from the source: one line each */
                reported[i] = true;
                if (w.f[i].err)
                    fprintf(stderr, "%squantfs warm: %s: %s\n", tty && !quiet ? "\r\033[K" : "",
                            qfs_log_escape(w.f[i].path, shown, sizeof shown),
                            strerror(w.f[i].err));
                else if (!quiet && !tty)
                    fprintf(stderr, "warm: %s: done (%.1f MB)\n",
                            qfs_log_escape(base(w.f[i].path), shown, sizeof shown),
                            (double)w.f[i].size / 1e6);
            }
        }
        if (!quiet && tty) {
            int pct = total ? (int)(done * 100 / total) : 100, width = 30;
            int fill = pct * width / 100;
            char bar[64];
            memset(bar, '#', (size_t)fill);
            memset(bar + fill, '.', (size_t)(width - fill));
            bar[width] = '\0';
            fprintf(stderr, "\r\033[K[%s] %3d%%  %.0f/%.0f MB  %.1f MB/s  ETA %s  (%d/%d files)",
                    bar, pct, (double)done / 1e6, (double)total / 1e6, rate, eta, files_done, w.n);
            fflush(stderr);
        } else if (!quiet && now - last_log >= LOG_EVERY_MS && !over) {
            fprintf(stderr, "warm: %d%% (%.1f/%.1f MB), %.1f MB/s, ETA %s, %d/%d files\n",
                    total ? (int)(done * 100 / total) : 100, (double)done / 1e6,
                    (double)total / 1e6, rate, eta, files_done, w.n);
            last_log = now;
        }
        if (over)
            break;
        struct timespec ts = {0, 250 * 1000000L};
        nanosleep(&ts, NULL);
    }
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    free(th);
    free(reported);
    int failed = 0;
    for (int i = 0; i < w.n; i++)
        failed += w.f[i].err != 0 || !atomic_load(&w.f[i].finished);
    double secs = (double)(now_ms() - t0) / 1000.0;
    uint64_t done = atomic_load(&w.bytes);
    if (!quiet) {
        if (tty)
            fputc('\n', stderr);
        fprintf(stderr, "warm: %d of %d file%s read, %.1f MB in %.1f s (%.1f MB/s)\n",
                w.n - failed, w.n, w.n == 1 ? "" : "s", (double)done / 1e6, secs,
                secs > 0 ? (double)done / 1e6 / secs : 0.0);
    }
    if (failed)
        status = 1;
out:
    for (int i = 0; i < w.n; i++)
        free(w.f[i].path);
    free(w.f);
    return status;
}
