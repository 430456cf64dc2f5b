/* quantfs [options] SOURCE MOUNTPOINT: parse, scan the source, open the cache, mount,
 * serve, and unwind in reverse order. */
#define FUSE_USE_VERSION 312
#include <errno.h>
#include <fuse_lowlevel.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../cache/cache.h"
#include "../codecs/vfile.h"
#include "../kernels/dispatch.h"
#include "../util/log.h"
#include "cli/commands.h"
#include "ll.h"
#include "serve/namespace.h"
#include "notify.h"
#include "options.h"
#include "serve/prefetch.h"
#include "serve/rescan.h"
#include "serve/warm.h"

#ifndef QFS_VERSION
#define QFS_VERSION "unknown"
#endif

static int check_paths(const struct qfs_opts *o)
{
    struct stat st;
    if (stat(o->source, &st) < 0) {
        fprintf(stderr, "quantfs: source %s: %s\n", o->source, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        fprintf(stderr, "quantfs: source %s: not a directory\n", o->source);
        return -1;
    }
    if (stat(o->mountpoint, &st) < 0) {
        fprintf(stderr, "quantfs: mountpoint %s: %s\n", o->mountpoint, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        fprintf(stderr, "quantfs: mountpoint %s: not a directory\n", o->mountpoint);
        return -1;
    }
    return 0;
}

/* SIGTERM/SIGINT.  libfuse's handlers end the request loop at once, and its lazy unmount
 * then cuts off a reader in the middle of a file.  Ours ask the supervisor (notify.c) to
 * unmount once no file is open; a second signal, or stop_timeout, ends the loop now
 * (stop_force).  The loop ends, every reply sent, when the unmount succeeds. */
static struct fuse_session *stop_se;
static struct qfs_notify *_Atomic stop_notify;
static pthread_t main_thread;

static void on_stop_signal(int sig)
{
    (void)sig;
    struct qfs_notify *n = atomic_load(&stop_notify);
    if (n)
        qfs_notify_request_stop(n);
    else
        fuse_session_exit(stop_se);
}

/* From the supervisor thread: end the loop; the signal interrupts the main thread's
 * wait (no SA_RESTART) so that it sees the exit flag. */
static void stop_force(void *arg)
{
    fuse_session_exit(arg);
    pthread_kill(main_thread, SIGTERM);
}

static int set_stop_handlers(struct fuse_session *se)
{
    struct sigaction sa = {.sa_handler = on_stop_signal};
    sigemptyset(&sa.sa_mask);
    stop_se = se;
    main_thread = pthread_self();
    if (sigaction(SIGTERM, &sa, NULL) < 0 || sigaction(SIGINT, &sa, NULL) < 0) {
        fprintf(stderr, "quantfs: sigaction: %s\n", strerror(errno));
        return -1;
    }
    return 0;
}

/* SIGHUP: rescan the source (libfuse's handler would end the loop). */
static void on_hup(int sig)
{
    (void)sig;
    qfs_live_kick();
}

static int set_hup_handler(void)
{
    struct sigaction sa = {.sa_handler = on_hup, .sa_flags = SA_RESTART};
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGHUP, &sa, NULL) < 0) {
        fprintf(stderr, "quantfs: sigaction: %s\n", strerror(errno));
        return -1;
    }
    return 0;
}

/* Rescans (rescan.h) tell the kernel which names and directories changed, and the
 * prewarm to plan again. */
struct live_glue {
    struct fuse_session *se;
    struct qfs_prewarm *_Atomic prewarm;
};

static void glue_inval_entry(void *arg, uint64_t dir, const char *name)
{
    const struct live_glue *g = arg;
    int rc = fuse_lowlevel_notify_inval_entry(g->se, dir, name, strlen(name));
    if (rc < 0 && rc != -ENOENT)
        qfs_debug("invalidate entry %s in %llu: %s", name, (unsigned long long)dir,
                  strerror(-rc));
}

static void glue_inval_inode(void *arg, uint64_t ino)
{
    const struct live_glue *g = arg;
    int rc = fuse_lowlevel_notify_inval_inode(g->se, ino, 0, 0);
    if (rc < 0 && rc != -ENOENT)
        qfs_debug("invalidate inode %llu: %s", (unsigned long long)ino, strerror(-rc));
}

static void glue_swapped(void *arg)
{
    struct live_glue *g = arg;
    qfs_prewarm_kick(atomic_load(&g->prewarm));
}

/* fuse_daemonize changes to /: a relative cache directory is made absolute first. */
static int absolutize(char **path)
{
    char cwd[PATH_MAX], *p;
    if (!*path || (*path)[0] == '/')
        return 0;
    if (!getcwd(cwd, sizeof cwd) || asprintf(&p, "%s/%s", cwd, *path) < 0) {
        fprintf(stderr, "quantfs: cache %s: %s\n", *path, strerror(errno));
        return -1;
    }
    free(*path);
    *path = p;
    return 0;
}

int main(int argc, char **argv)
{
    const struct qfs_command *cmd = argc > 1 ? qfs_command_find(argv[1]) : NULL;
    if (cmd)
        return cmd->run(argc - 1, argv + 1);

    struct qfs_opts o;
    int rc = qfs_opts_parse(argc, argv, &o);
    if (rc)
        return rc;
    if (o.help) {
        qfs_opts_usage(argv[0]);
        qfs_commands_usage();
        printf("\nFUSE options:\n");
        fuse_lowlevel_help();
        qfs_opts_free(&o);
        return 0;
    }
    if (o.version) {
        printf("quantfs %s (libfuse %s)\n", QFS_VERSION, fuse_pkgversion());
        qfs_opts_free(&o);
        return 0;
    }
    if (o.debug)
        qfs_log_set_level(QFS_LOG_DEBUG);

    int status = 1;
    struct qfs_ns *ns = NULL;
    struct qfs_live *live = NULL;
    struct qfs_prewarm *prewarm = NULL;
    static struct live_glue glue;
    struct qfs_cache *cache = NULL;
    struct fuse_session *se = NULL;
    struct fuse_loop_config *lcfg = NULL;
    struct qfs_notify *notify = NULL;
    char *mnt_real = NULL;
    struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
    struct qfs_ll ll = {.max_read = o.max_read,
                        .readahead = o.readahead < 0 ? o.max_read : (uint64_t)o.readahead};

    if (check_paths(&o) < 0)
        goto out_opts;
    /* libfuse may rewrite args: give it its own copies. */
    for (int i = 0; i < o.fuse_argc; i++)
        if (fuse_opt_add_arg(&args, o.fuse_argv[i]) != 0)
            goto out_opts;
    if (absolutize(&o.cache_dir) < 0 || absolutize(&o.cache_shared) < 0)
        goto out_opts;
    mnt_real = realpath(o.mountpoint, NULL);
    const struct qfs_ns_opts nso = {.imatrix = o.imatrix, .n_imatrix = o.n_imatrix,
                                    .formats = &o.formats, .max_nodes = o.max_entries};
    if (qfs_ns_build(o.source, &nso, &ns) < 0)
        goto out_opts;
    /* From here the namespace generations belong to live (rescan.h). */
    if (qfs_live_create(ns, &live) < 0) {
        fprintf(stderr, "quantfs: out of memory\n");
        goto out_opts;
    }
    const struct qfs_cache_opts co = {.dir = o.cache_dir, .shared_dir = o.cache_shared,
                                      .mem_max = o.cache_mem, .disk_max = o.cache_max,
                                      .hmac_key_file = o.cache_hmac_key};
    rc = qfs_cache_open_opts(&co, &cache);
    if (rc < 0) {
        fprintf(stderr, "quantfs: cache %s: %s\n", o.cache_dir ? o.cache_dir : "(memory)",
                strerror(-rc));
        goto out_ns;
    }
    ll.live = live;
    ll.cache = cache;
    ll.info.mountpoint = mnt_real ? mnt_real : o.mountpoint;
    ll.info.cache_dir = o.cache_dir;
    ll.info.cache_mem_max = o.cache_mem;
    ll.info.cache_max = o.cache_max;
    ll.info.cache_shared = o.cache_shared;
    ll.info.cache_hmac = o.cache_hmac_key != NULL;
    qfs_vfile_set_hash_store(cache); /* source hashes remembered across mounts */

    se = fuse_session_new(&args, qfs_ll_ops(), sizeof(struct fuse_lowlevel_ops), &ll);
    if (!se) {
        fprintf(stderr, "quantfs: cannot create the FUSE session\n");
        goto out_cache;
    }
    if (fuse_set_signal_handlers(se) != 0)
        goto out_session;
    if (set_stop_handlers(se) < 0 || set_hup_handler() < 0)
        goto out_signals;
    if (fuse_session_mount(se, o.mountpoint) != 0) {
        fprintf(stderr, "quantfs: cannot mount on %s\n", o.mountpoint);
        goto out_signals;
    }
    if (fuse_daemonize(o.foreground) != 0)
        goto out_unmount;

    /* The device after the fork too (a CUDA context does not survive one).  Never
     * fails: without a usable GPU the CPU quantizes, and a log line says why. */
    struct qfs_dev_opts dev = {.mode = QFS_DEV_AUTO, .index = -1, .mem_max = o.gpu_mem};
    if (o.device)
        qfs_dev_parse(o.device, &dev); /* checked by qfs_opts_parse */
    qfs_dev_init(&dev);

    /* Threads only after the fork of fuse_daemonize.  Without them reads still work. */
    unsigned pf_threads = o.prefetch_threads < 0 ? qfs_prefetch_default_threads()
                                                 : (unsigned)o.prefetch_threads;
    unsigned pf_window = o.prefetch_window < 0 ? 2 * pf_threads : (unsigned)o.prefetch_window;
    rc = qfs_prefetch_start(cache, pf_threads, pf_window, &ll.prefetch);
    if (rc < 0)
        qfs_warn("prefetch disabled: %s", strerror(-rc));
    if (ll.prefetch)
        qfs_info("prefetch: %u threads, %u chunks ahead", pf_threads, pf_window);

    /* Live source changes and prewarm (rescan.h, warm.h): after the fork, like prefetch. */
    if ((rc = qfs_guard_install()) < 0)
        qfs_warn("no SIGBUS guard (%s): a source file truncated while read stops quantfs",
                 strerror(-rc));
    glue.se = se;
    const struct qfs_live_cfg lcfg_live = {
        .nso = &nso, .interval = o.rescan, .watch = !o.nowatch, .prefetch = ll.prefetch,
        .inval_entry = glue_inval_entry, .inval_inode = glue_inval_inode,
        .swapped = glue_swapped, .arg = &glue,
    };
    rc = qfs_live_start(live, &lcfg_live);
    if (rc < 0)
        qfs_warn("source changes are not followed: %s", strerror(-rc));
    else
        ll.info.live = live;
    if (o.prewarm) {
        rc = qfs_prewarm_start(live, cache, o.prewarm, 0, &prewarm);
        if (rc < 0)
            qfs_warn("prewarm disabled: %s", strerror(-rc));
        atomic_store(&glue.prewarm, prewarm);
        ll.info.prewarm = prewarm;
    }

    /* READY=1 once the mount answers, STATUS= lines, graceful stop (notify.h). */
    const struct qfs_notify_cfg ncfg = {
        .mountpoint = ll.info.mountpoint, .ll = &ll, .status_interval = 30,
        .stop_timeout = o.stop_timeout, .force_exit = stop_force, .arg = se,
    };
    rc = qfs_notify_start(&ncfg, &notify);
    if (rc < 0)
        qfs_warn("no readiness notification, SIGTERM stops at once: %s", strerror(-rc));
    atomic_store(&stop_notify, notify);

    qfs_info("serving %s on %s (%s)", o.source, ll.info.mountpoint,
             o.single_thread ? "single-threaded" : "multi-threaded");
    if (o.single_thread) {
        rc = fuse_session_loop(se);
    } else {
        lcfg = fuse_loop_cfg_create();
        if (!lcfg) {
            fprintf(stderr, "quantfs: out of memory\n");
            goto out_unmount;
        }
        fuse_loop_cfg_set_clone_fd(lcfg, 1);
        if (o.threads)
            fuse_loop_cfg_set_idle_threads(lcfg, o.threads);
        rc = fuse_session_loop_mt(se, lcfg);
    }
    /* 0, the signal that ended the loop (SIGINT/SIGTERM/SIGHUP: a clean exit), or
     * -EINTR when stop_force ended it. */
    status = rc < 0 && rc != -EINTR ? 1 : 0;
    if (status)
        qfs_err("request loop: %s", strerror(-rc));

    fuse_loop_cfg_destroy(lcfg);
out_unmount:
    /* No request runs any more: stop the jobs before the cache and namespace go. */
    atomic_store(&glue.prewarm, NULL);
    qfs_prewarm_stop(prewarm);
    ll.info.prewarm = NULL;
    qfs_live_stop(live); /* no rescan, no reaping (it waits on prefetch) from here */
    qfs_prefetch_stop(ll.prefetch);
    ll.prefetch = NULL;
    qfs_dev_shutdown(); /* no chunk is produced any more */
    fuse_session_unmount(se);
    /* After the unmount: a readiness probe still waiting on the mount returns now. */
    atomic_store(&stop_notify, NULL);
    qfs_notify_stop(notify);
out_signals:
    fuse_remove_signal_handlers(se);
out_session:
    fuse_session_destroy(se);
out_cache:
    qfs_vfile_set_hash_store(NULL);
    qfs_cache_close(cache);
out_ns:
    qfs_ll_drop_handles(&ll);
    qfs_live_destroy(live); /* every generation, the first (ns) included */
out_opts:
    free(mnt_real);
    fuse_opt_free_args(&args);
    qfs_opts_free(&o);
    return status;
}
