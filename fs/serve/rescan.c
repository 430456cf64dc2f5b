#include "rescan.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "../../util/log.h"
#include "namespace.h"
#include "prefetch.h"

#define MAX_WATCHES 4096
#define RESEND_MS 1000 /* invalidations are sent again after this (see resend) */
#define WATCH_MASK                                                                        \
    (IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_CLOSE_WRITE | IN_MODIFY |  \
     IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)
/* A directory whose files are written in place for long (a hub repository's blobs/ while
 * a download runs): only names appearing, vanishing or renamed. */
#define WATCH_NAMES_MASK                                                                  \
    (IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF | \
     IN_ONLYDIR)

struct qfs_live {
    /* lock protects cur, the list of generations (gens, newest first through ->older;
     * cur is its head), and every increment of a count from zero (acquire_ino) against
     * the reaper's unlinking.  Lock order: scan_lock, then lock; rlock alone. */
    pthread_mutex_t lock;
    struct qfs_ns *cur;
    struct qfs_ns *gens;

    pthread_mutex_t scan_lock; /* one rescan at a time; protects wds, resend_* */
    struct qfs_live_cfg cfg;
    int efd, ifd;            /* eventfd (kicks, stop), inotify (or -1) */
    int *wds;
    int n_wds;
    struct qfs_ns *resend_from, *resend_to; /* references held until the resend */
    int64_t resend_at;
    _Atomic int stop;
    int started;
    pthread_t thread, reaper;
    _Atomic uint64_t rescans, swaps;

    pthread_mutex_t rlock; /* protects reap, rstop */
    pthread_cond_t rcond;
    int reap, rstop;
};

static _Atomic int kick_fd = -1;
/* The eventfd counts kicks (low 32 bits: rescan now) and pokes (high bits: debounced). */
#define KICK_NOW 0xffffffffull
#define POKE (1ull << 32)

static int64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* ---- generations ---- */

int qfs_live_create(struct qfs_ns *initial, struct qfs_live **out)
{
    struct qfs_live *l = calloc(1, sizeof *l);
    if (!l) {
        qfs_ns_destroy(initial);
        return -ENOMEM;
    }
    pthread_mutex_init(&l->lock, NULL);
    pthread_mutex_init(&l->scan_lock, NULL);
    pthread_mutex_init(&l->rlock, NULL);
    pthread_cond_init(&l->rcond, NULL);
    l->efd = l->ifd = -1;
    atomic_store(&initial->refs, 1); /* the manager's: dropped when it stops being current */
    initial->older = NULL;
    l->cur = l->gens = initial;
    *out = l;
    return 0;
}

struct qfs_ns *qfs_live_acquire(struct qfs_live *l)
{
    pthread_mutex_lock(&l->lock);
    struct qfs_ns *ns = l->cur;
    atomic_fetch_add(&ns->refs, 1);
    pthread_mutex_unlock(&l->lock);
    return ns;
}

struct qfs_ns *qfs_live_acquire_ino(struct qfs_live *l, uint64_t ino,
                                    const struct qfs_node **node)
{
    struct qfs_ns *found = NULL;
    pthread_mutex_lock(&l->lock);
    for (struct qfs_ns *g = l->gens; g && !found; g = g->older) {
        const struct qfs_node *n = qfs_ns_node(g, ino);
        if (n) {
            atomic_fetch_add(&g->refs, 1);
            *node = n;
            found = g;
        }
    }
    pthread_mutex_unlock(&l->lock);
    return found;
}

static void reaper_wake(struct qfs_live *l)
{
    pthread_mutex_lock(&l->rlock);
    l->reap = 1;
    pthread_cond_signal(&l->rcond);
    pthread_mutex_unlock(&l->rlock);
}

void qfs_live_release(struct qfs_live *l, struct qfs_ns *ns)
{
    /* Only a generation that is no longer current can reach zero (the manager holds one
     * on the current); ns is not touched after the decrement. */
    if (ns && atomic_fetch_sub(&ns->refs, 1) == 1)
        reaper_wake(l);
}

/* Unlink the unreferenced old generations and free them once no prefetch job can point
 * into them.  Returns how many were freed. */
static int reap(struct qfs_live *l)
{
    struct qfs_ns *dead = NULL;
    pthread_mutex_lock(&l->lock);
    for (struct qfs_ns **pp = &l->gens; *pp;) {
        struct qfs_ns *g = *pp;
        if (g != l->cur && atomic_load(&g->refs) == 0) {
            *pp = g->older;
            g->older = dead;
            dead = g;
        } else {
            pp = &g->older;
        }
    }
    pthread_mutex_unlock(&l->lock);
    if (!dead)
        return 0;
    /* Unreachable and unreferenced: no reader can queue a job for it any more; wait for
     * the jobs queued before. */
    qfs_prefetch_wait_idle(l->cfg.prefetch);
    int n = 0;
    while (dead) {
        struct qfs_ns *g = dead;
        dead = g->older;
        qfs_debug("generation %llu freed", (unsigned long long)g->generation);
        qfs_ns_destroy(g);
        n++;
    }
    return n;
}

static void *reaper_main(void *arg)
{
    struct qfs_live *l = arg;
    pthread_mutex_lock(&l->rlock);
    for (;;) {
        while (!l->reap && !l->rstop)
            pthread_cond_wait(&l->rcond, &l->rlock);
        if (l->rstop)
            break;
        l->reap = 0;
        pthread_mutex_unlock(&l->rlock);
        reap(l);
        pthread_mutex_lock(&l->rlock);
    }
    pthread_mutex_unlock(&l->rlock);
    return NULL;
}

/* ---- kernel notifications ---- */

static void count_entry(void *arg, uint64_t dir, const char *name)
{
    (void)arg, (void)dir, (void)name;
}

static void count_dir(void *arg, uint64_t dir)
{
    (void)arg, (void)dir;
}

static void send_entry(void *arg, uint64_t dir, const char *name)
{
    const struct qfs_live *l = arg;
    if (l->cfg.inval_entry)
        l->cfg.inval_entry(l->cfg.arg, dir, name);
}

static void send_dir(void *arg, uint64_t dir)
{
    const struct qfs_live *l = arg;
    if (l->cfg.inval_inode)
        l->cfg.inval_inode(l->cfg.arg, dir);
}

/* A lookup answered from the old generation just before the swap can reach the kernel
 * after the invalidation and leave a stale entry: the same invalidations are sent once
 * more a moment later.  scan_lock held. */
static void resend(struct qfs_live *l)
{
    if (!l->resend_from)
        return;
    const struct qfs_ns_diff_cb cb = {.entry = send_entry, .dir = send_dir, .arg = l};
    qfs_ns_diff(l->resend_from, l->resend_to, &cb);
    qfs_live_release(l, l->resend_from);
    qfs_live_release(l, l->resend_to);
    l->resend_from = l->resend_to = NULL;
}

/* ---- inotify ---- */

static int int_cmp(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* Watch every directory of ns (its source directory nodes, then its watch list); drop
 * the watches of directories it no longer has.  scan_lock held. */
static void update_watches(struct qfs_live *l, const struct qfs_ns *ns)
{
    if (l->ifd < 0)
        return;
    int *w = malloc(MAX_WATCHES * sizeof *w), n = 0;
    if (!w)
        return;
    int warned = 0;
    for (uint64_t i = 0; i < (uint64_t)ns->n_nodes + (uint64_t)ns->n_watch; i++) {
        const char *rel;
        uint32_t mask = WATCH_MASK;
        if (i < ns->n_nodes) {
            const struct qfs_node *d = &ns->nodes[i];
            if (d->kind != QFS_NODE_DIR || d->dir != QFS_DIR_SOURCE)
                continue; /* /.quantfs and loadable directories have no source directory */
            rel = d->relpath;
        } else {
            const struct qfs_ns_watch *x = &ns->watch[i - ns->n_nodes];
            rel = x->relpath;
            if (x->names_only)
                mask = WATCH_NAMES_MASK;
        }
        if (n == MAX_WATCHES) {
            if (!warned++)
                qfs_warn("%s: more than %d directories: the others are rescanned "
                         "periodically only", ns->source, MAX_WATCHES);
            break;
        }
        char *path = NULL;
        if (asprintf(&path, "%s%s%s", ns->tree, *rel ? "/" : "", rel) < 0)
            break;
        int wd = inotify_add_watch(l->ifd, path, mask);
        if (wd >= 0)
            w[n++] = wd;
        else if (errno == ENOSPC && !warned++)
            qfs_warn("inotify: watch limit reached (fs.inotify.max_user_watches): %s and "
                     "others are rescanned periodically only", path);
        free(path);
    }
    qsort(w, (size_t)n, sizeof *w, int_cmp);
    for (int i = 0, j = 0; i < l->n_wds; i++) {
        while (j < n && w[j] < l->wds[i])
            j++;
        if (j == n || w[j] != l->wds[i])
            inotify_rm_watch(l->ifd, l->wds[i]);
    }
    free(l->wds);
    l->wds = w;
    l->n_wds = n;
}

/* Read every queued event.  1 when there was one. */
static int drain_inotify(int fd)
{
    char buf[8192] __attribute__((aligned(__alignof__(struct inotify_event))));
    int any = 0;
    for (;;) {
        ssize_t r = read(fd, buf, sizeof buf);
        if (r <= 0)
            return any;
        any = 1;
    }
}

/* ---- rescans ---- */

static int do_rescan(struct qfs_live *l)
{
    pthread_mutex_lock(&l->scan_lock);
    struct qfs_ns *cur = qfs_live_acquire(l), *next = NULL;
    int rc = qfs_ns_rebuild(cur, l->cfg.nso, &next);
    atomic_fetch_add(&l->rescans, 1);
    if (rc < 0) {
        qfs_warn("rescan of %s failed (%s); still serving generation %llu", cur->source,
                 strerror(-rc), (unsigned long long)cur->generation);
        qfs_live_release(l, cur);
        pthread_mutex_unlock(&l->scan_lock);
        return rc;
    }
    const struct qfs_ns_diff_cb counter = {.entry = count_entry, .dir = count_dir};
    unsigned changes = qfs_ns_diff(cur, next, &counter);
    if (changes == 0) {
        qfs_debug("rescan of %s: no change", cur->source);
        qfs_ns_destroy(next); /* shares cur's descriptions: drops only its references */
        qfs_live_release(l, cur);
        pthread_mutex_unlock(&l->scan_lock);
        return 0;
    }
    resend(l); /* a pending one goes first: it concerns the older change */

    atomic_store(&next->refs, 1);
    pthread_mutex_lock(&l->lock);
    next->older = l->gens;
    l->gens = next;
    l->cur = next;
    pthread_mutex_unlock(&l->lock);
    qfs_live_release(l, cur); /* the manager's reference on it */
    atomic_fetch_add(&l->swaps, 1);

    const struct qfs_ns_diff_cb cb = {.entry = send_entry, .dir = send_dir, .arg = l};
    qfs_ns_diff(cur, next, &cb);
    qfs_info("rescan of %s: generation %llu, %d model%s, %u change%s", next->source,
             (unsigned long long)next->generation, next->n_models,
             next->n_models == 1 ? "" : "s", changes, changes == 1 ? "" : "s");
    /* cur's reference (from acquire) moves to the resend; next gets one. */
    atomic_fetch_add(&next->refs, 1);
    l->resend_from = cur;
    l->resend_to = next;
    l->resend_at = now_ms() + RESEND_MS;
    update_watches(l, next);
    pthread_mutex_unlock(&l->scan_lock);
    if (l->cfg.swapped)
        l->cfg.swapped(l->cfg.arg);
    return 1;
}

int qfs_live_rescan(struct qfs_live *l)
{
    return do_rescan(l);
}

static void *rescan_main(void *arg)
{
    struct qfs_live *l = arg;
    const int64_t period = (int64_t)l->cfg.interval * 1000;
    int64_t next_periodic = period ? now_ms() + period : -1;
    int64_t first = 0, last = 0;
    int pending = 0, kicked = 0;
    while (!atomic_load(&l->stop)) {
        int64_t now = now_ms(), due = -1;
        if (pending) {
            due = last + QFS_LIVE_QUIET_MS;
            if (first + QFS_LIVE_MAX_DELAY_MS < due)
                due = first + QFS_LIVE_MAX_DELAY_MS;
        }
        if (next_periodic >= 0 && (due < 0 || next_periodic < due))
            due = next_periodic;
        pthread_mutex_lock(&l->scan_lock);
        if (l->resend_from && (due < 0 || l->resend_at < due))
            due = l->resend_at;
        pthread_mutex_unlock(&l->scan_lock);
        int timeout = due < 0 ? -1 : due <= now ? 0 : (int)(due - now);
        struct pollfd p[2] = {{.fd = l->efd, .events = POLLIN}, {.fd = l->ifd, .events = POLLIN}};
        int rc = poll(p, l->ifd >= 0 ? 2 : 1, timeout);
        if (rc < 0 && errno != EINTR) {
            qfs_err("rescan: poll: %s", strerror(errno));
            break;
        }
        if (atomic_load(&l->stop))
            break;
        now = now_ms();
        if (rc > 0 && (p[0].revents & POLLIN)) {
            uint64_t v;
            if (read(l->efd, &v, sizeof v) == sizeof v) {
                if (v & KICK_NOW)
                    kicked = 1;
                if (v & ~KICK_NOW) { /* a reader saw a changed source: like an event */
                    if (!pending)
                        first = now;
                    pending = 1;
                    last = now;
                }
            }
        }
        if (rc > 0 && l->ifd >= 0 && (p[1].revents & POLLIN) && drain_inotify(l->ifd)) {
            if (!pending)
                first = now;
            pending = 1;
            last = now;
        }
        pthread_mutex_lock(&l->scan_lock);
        if (l->resend_from && now >= l->resend_at)
            resend(l);
        pthread_mutex_unlock(&l->scan_lock);
        int quiet = pending && (now >= last + QFS_LIVE_QUIET_MS ||
                                now >= first + QFS_LIVE_MAX_DELAY_MS);
        int periodic = next_periodic >= 0 && now >= next_periodic;
        if (kicked || quiet || periodic) {
            if (kicked)
                qfs_info("rescan of the source requested");
            kicked = pending = 0;
            do_rescan(l);
            now = now_ms();
            if (period)
                next_periodic = now + period;
            struct qfs_ns *cur = qfs_live_acquire(l);
            if (cur->unsettled) { /* a model changed while read: look again when quiet */
                pending = 1;
                first = last = now;
            }
            qfs_live_release(l, cur);
        }
    }
    return NULL;
}

/* Threads of ours take no asynchronous signal; a fault must still reach its handler. */
static void block_signals(sigset_t *old)
{
    sigset_t all;
    sigfillset(&all);
    sigdelset(&all, SIGBUS);
    sigdelset(&all, SIGSEGV);
    sigdelset(&all, SIGFPE);
    sigdelset(&all, SIGILL);
    pthread_sigmask(SIG_SETMASK, &all, old);
}

int qfs_live_start(struct qfs_live *l, const struct qfs_live_cfg *cfg)
{
    l->cfg = *cfg;
    l->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (l->efd < 0)
        return -errno;
    if (cfg->watch) {
        l->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        if (l->ifd < 0)
            qfs_warn("inotify: %s: source changes are seen by periodic rescans and SIGHUP only",
                     strerror(errno));
        pthread_mutex_lock(&l->scan_lock);
        update_watches(l, l->cur);
        pthread_mutex_unlock(&l->scan_lock);
    }
    sigset_t old;
    block_signals(&old);
    int rc = pthread_create(&l->reaper, NULL, reaper_main, l);
    if (rc == 0) {
        rc = pthread_create(&l->thread, NULL, rescan_main, l);
        if (rc) {
            pthread_mutex_lock(&l->rlock);
            l->rstop = 1;
            pthread_cond_signal(&l->rcond);
            pthread_mutex_unlock(&l->rlock);
            pthread_join(l->reaper, NULL);
        }
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc) {
        if (l->ifd >= 0)
            close(l->ifd);
        close(l->efd);
        l->ifd = l->efd = -1;
        return -rc;
    }
    l->started = 1;
    atomic_store(&kick_fd, l->efd);
    return 0;
}

void qfs_live_stop(struct qfs_live *l)
{
    if (!l || !l->started)
        return;
    atomic_store(&kick_fd, -1);
    atomic_store(&l->stop, 1);
    uint64_t one = 1;
    if (write(l->efd, &one, sizeof one) < 0)
        qfs_warn("rescan: cannot wake the thread: %s", strerror(errno));
    pthread_join(l->thread, NULL);
    pthread_mutex_lock(&l->rlock);
    l->rstop = 1;
    pthread_cond_signal(&l->rcond);
    pthread_mutex_unlock(&l->rlock);
    pthread_join(l->reaper, NULL);
    l->started = 0;
    if (l->ifd >= 0)
        close(l->ifd);
    close(l->efd);
    l->ifd = l->efd = -1;
}

void qfs_live_destroy(struct qfs_live *l)
{
    if (!l)
        return;
    qfs_live_stop(l);
    l->resend_from = l->resend_to = NULL;
    for (struct qfs_ns *g = l->gens, *o; g; g = o) {
        o = g->older;
        qfs_ns_destroy(g);
    }
    free(l->wds);
    pthread_cond_destroy(&l->rcond);
    pthread_mutex_destroy(&l->rlock);
    pthread_mutex_destroy(&l->scan_lock);
    pthread_mutex_destroy(&l->lock);
    free(l);
}

static void kick_add(uint64_t v)
{
    int fd = atomic_load(&kick_fd);
    if (fd >= 0) {
        int saved = errno;
        ssize_t r = write(fd, &v, sizeof v);
        (void)r;
        errno = saved;
    }
}

void qfs_live_kick(void)
{
    kick_add(1);
}

void qfs_live_poke(void)
{
    kick_add(POKE);
}

void qfs_live_get_stats(struct qfs_live *l, struct qfs_live_stats *s)
{
    memset(s, 0, sizeof *s);
    s->rescans = atomic_load(&l->rescans);
    s->swaps = atomic_load(&l->swaps);
    pthread_mutex_lock(&l->lock);
    s->generation = l->cur->generation;
    for (struct qfs_ns *g = l->gens; g; g = g->older)
        s->live_gens++;
    pthread_mutex_unlock(&l->lock);
}

/* ---- the source guard ---- */

static _Thread_local volatile sig_atomic_t guard_on, guard_hit;
static uintptr_t page_mask;

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    if (guard_on && si->si_code == BUS_ADRERR) {
        /* A page of a mapped file that no longer exists (the file shrank): zeros in its
         * place, and the guarded computation is thrown away. */
        void *page = (void *)((uintptr_t)si->si_addr & ~page_mask);
        if (mmap(page, page_mask + 1, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) != MAP_FAILED) {
            guard_hit = 1;
            return;
        }
    }
    /* Not ours: the default action when the faulting access runs again. */
    signal(sig, SIG_DFL);
}

int qfs_guard_install(void)
{
    long ps = sysconf(_SC_PAGESIZE);
    page_mask = (uintptr_t)(ps > 0 ? ps : 4096) - 1;
    struct sigaction sa = {.sa_sigaction = on_sigbus, .sa_flags = SA_SIGINFO};
    sigemptyset(&sa.sa_mask);
    return sigaction(SIGBUS, &sa, NULL) < 0 ? -errno : 0;
}

void qfs_guard_begin(void)
{
    guard_hit = 0;
    guard_on = 1;
    atomic_signal_fence(memory_order_seq_cst);
}

int qfs_guard_end(void)
{
    atomic_signal_fence(memory_order_seq_cst);
    guard_on = 0;
    return guard_hit;
}
