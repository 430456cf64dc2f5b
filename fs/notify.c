#include "notify.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../cache/cache.h"
#include "../util/human.h"
#include "../util/log.h"
#include "ll.h"
#include "serve/namespace.h"
#include "serve/rescan.h"

extern char **environ;

int qfs_notify_send(const char *msg)
{
    const char *e = getenv("NOTIFY_SOCKET");
    if (!e || !*e)
        return 0;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t n = strlen(e);
    if (e[0] != '/' && e[0] != '@')
        return -EAFNOSUPPORT; /* vsock: and other forms are not supported */
    if (n >= sizeof sa.sun_path)
        return -ENAMETOOLONG;
    memcpy(sa.sun_path, e, n);
    if (sa.sun_path[0] == '@')
        sa.sun_path[0] = '\0'; /* abstract: the length below counts no terminating NUL */
    socklen_t salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int rc = 0;
    if (sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&sa, salen) < 0)
        rc = -errno;
    close(fd);
    return rc;
}

struct qfs_notify {
    struct qfs_notify_cfg cfg;
    char *mnt;       /* owned copy of cfg.mountpoint */
    int pipe[2];     /* 's': stop requested (signal handler), 'q': loop over (main) */
    pthread_t thread;
    bool stopping;   /* STOPPING=1 sent; supervisor thread only, read after the join */
};

static void send_logged(const char *msg)
{
    int rc = qfs_notify_send(msg);
    if (rc < 0)
        qfs_warn("notify %s: %s", msg, strerror(-rc));
}

void qfs_notify_describe(const struct qfs_ll *ll, char *buf, size_t n)
{
    struct qfs_ns *ns = qfs_live_acquire(ll->live); /* the current generation */
    uint64_t served = 0;
    int files = 0;
    for (int i = 0; i < ns->n_models; i++) {
        const struct qfs_ns_model *m = &ns->models[i];
        for (uint32_t j = m->first_vnode; j < m->end_vnode; j++) {
            const struct qfs_node *nd = &ns->nodes[j];
            if (nd->kind != QFS_NODE_VFILE)
                continue;
            files++;
            served += atomic_load_explicit(&nd->stats->bytes_served, memory_order_relaxed);
        }
    }
    struct qfs_cache_stats s;
    memset(&s, 0, sizeof s);
    if (ll->cache)
        qfs_cache_get_stats(ll->cache, &s);
    uint64_t hits = s.mem_hits + s.disk_hits, all = hits + s.fills;
    char mem[32], max[32], srv[32];
    qfs_human_bytes(s.mem_bytes, mem, sizeof mem);
    qfs_human_bytes(ll->info.cache_mem_max, max, sizeof max);
    qfs_human_bytes(served, srv, sizeof srv);
    char src[512]; /* one line: the notify message is newline-separated assignments */
    snprintf(buf, n, "%d model%s (%d files) from %s; cache %s/%s in memory%s, hit rate %.0f%%; "
             "%s served; device cpu",
             ns->n_models, ns->n_models == 1 ? "" : "s", files,
             qfs_log_escape(ns->source, src, sizeof src), mem, max,
             ll->info.cache_dir ? " + disk" : "", all ? 100.0 * (double)hits / (double)all : 0.0,
             srv);
    qfs_live_release(ll->live, ns);
}

static void send_status(struct qfs_notify *n)
{
    char line[1024];
    memcpy(line, "STATUS=", 7);
    qfs_notify_describe(n->cfg.ll, line + 7, sizeof line - 7);
    send_logged(line);
}

/* The mount answers when its root can be listed through it.  0 or -errno. */
static int probe(const char *mnt)
{
    DIR *d = opendir(mnt);
    if (!d)
        return -errno;
    errno = 0;
    int rc = readdir(d) ? 0 : (errno ? -errno : -ENOENT);
    closedir(d);
    return rc;
}

/* A non-lazy unmount: -EBUSY while a file of the mount is open, mapped or a cwd. */
static int try_unmount(const char *mnt)
{
    if (geteuid() == 0)
        return umount2(mnt, UMOUNT_NOFOLLOW) < 0 ? -errno : 0;
    pid_t pid;
    char *argv[] = {"fusermount3", "-u", "-q", (char *)mnt, NULL};
    int rc = posix_spawnp(&pid, "fusermount3", NULL, NULL, argv, environ), st;
    if (rc)
        return -rc;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -errno;
    /* fusermount3 does not say why it failed: treat it as busy until the timeout. */
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -EBUSY;
}

/* Wait up to ms (-1: forever) for a command byte; 0 on timeout. */
static int wait_cmd(struct qfs_notify *n, int ms)
{
    struct pollfd p = {.fd = n->pipe[0], .events = POLLIN};
    int rc = poll(&p, 1, ms);
    char c;
    if (rc <= 0 || read(n->pipe[0], &c, 1) != 1)
        return 0;
    return c;
}

static int64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Graceful stop: returns once the mount is gone or the loop was told to end. */
static void drain(struct qfs_notify *n)
{
    n->stopping = true;
    send_logged("STOPPING=1\nSTATUS=stopping: waiting for open files to close");
    qfs_info("stopping: unmounting %s once no file is open (up to %u s)", n->mnt,
             n->cfg.stop_timeout);
    int64_t deadline = now_ms() + (int64_t)n->cfg.stop_timeout * 1000;
    bool logged_busy = false;
    for (;;) {
        int rc = try_unmount(n->mnt);
        if (rc == 0) {
            qfs_info("stopping: unmounted %s", n->mnt);
            return; /* the request loop ends by itself (the connection is gone) */
        }
        if (rc != -EBUSY) {
            qfs_warn("stopping: unmount %s: %s; ending now", n->mnt, strerror(-rc));
            break;
        }
        if (!logged_busy) {
            qfs_info("stopping: files are still open on %s, waiting", n->mnt);
            logged_busy = true;
        }
        int64_t left = deadline - now_ms();
        if (left <= 0) {
            qfs_warn("stopping: files still open after %u s; unmounting lazily",
                     n->cfg.stop_timeout);
            break;
        }
        int c = wait_cmd(n, left < 200 ? (int)left : 200);
        if (c == 'q')
            return; /* unmounted from outside meanwhile */
        if (c == 's') {
            qfs_info("stopping: second signal, not waiting any longer");
            break;
        }
    }
    n->cfg.force_exit(n->cfg.arg);
}

static void *supervisor_main(void *arg)
{
    struct qfs_notify *n = arg;
    int rc = probe(n->mnt);
    if (rc == 0) {
        qfs_debug("%s answers", n->mnt);
        send_logged("READY=1");
        send_status(n);
    } else {
        qfs_err("mount %s does not answer: %s", n->mnt, strerror(-rc));
    }
    int interval = n->cfg.status_interval ? (int)n->cfg.status_interval * 1000 : -1;
    for (;;) {
        int c = wait_cmd(n, interval);
        if (c == 'q')
            break;
        if (c == 's') {
            drain(n);
            while (wait_cmd(n, -1) != 'q')
                ;
            break;
        }
        send_status(n);
    }
    return NULL;
}

int qfs_notify_start(const struct qfs_notify_cfg *cfg, struct qfs_notify **out)
{
    struct qfs_notify *n = calloc(1, sizeof *n);
    int rc;
    if (!n)
        return -ENOMEM;
    n->cfg = *cfg;
    n->pipe[0] = n->pipe[1] = -1;
    if (!(n->mnt = strdup(cfg->mountpoint))) {
        rc = -ENOMEM;
        goto fail;
    }
    if (pipe2(n->pipe, O_CLOEXEC) < 0) {
        rc = -errno;
        goto fail;
    }
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = -pthread_create(&n->thread, NULL, supervisor_main, n);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc)
        goto fail;
    *out = n;
    return 0;
fail:
    if (n->pipe[0] >= 0) {
        close(n->pipe[0]);
        close(n->pipe[1]);
    }
    free(n->mnt);
    free(n);
    return rc;
}

void qfs_notify_request_stop(struct qfs_notify *n)
{
    if (n) {
        int saved = errno;
        ssize_t r = write(n->pipe[1], "s", 1);
        (void)r;
        errno = saved;
    }
}

void qfs_notify_stop(struct qfs_notify *n)
{
    if (!n)
        return;
    ssize_t r = write(n->pipe[1], "q", 1);
    (void)r;
    pthread_join(n->thread, NULL);
    if (!n->stopping)
        send_logged("STOPPING=1");
    close(n->pipe[0]);
    close(n->pipe[1]);
    free(n->mnt);
    free(n);
}
