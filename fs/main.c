/* quantfs [options] SOURCE MOUNTPOINT: parse, scan the source, open the cache, mount,
 * serve, and unwind in reverse order. */
#define FUSE_USE_VERSION 312
#include <errno.h>
#include <fuse_lowlevel.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../cache/cache.h"
#include "../util/log.h"
#include "commands.h"
#include "ll.h"
#include "namespace.h"
#include "options.h"
#include "prefetch.h"

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
    struct qfs_cache *cache = NULL;
    struct fuse_session *se = NULL;
    struct fuse_loop_config *lcfg = NULL;
    char *mnt_real = NULL;
    struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
    struct qfs_ll ll = {.max_read = o.max_read};

    if (check_paths(&o) < 0)
        goto out_opts;
    /* libfuse may rewrite args: give it its own copies. */
    for (int i = 0; i < o.fuse_argc; i++)
        if (fuse_opt_add_arg(&args, o.fuse_argv[i]) != 0)
            goto out_opts;
    if (absolutize(&o.cache_dir) < 0)
        goto out_opts;
    mnt_real = realpath(o.mountpoint, NULL);
    const struct qfs_ns_opts nso = {.imatrix = o.imatrix, .n_imatrix = o.n_imatrix};
    if (qfs_ns_build(o.source, &nso, &ns) < 0)
        goto out_opts;
    rc = qfs_cache_open(o.cache_dir, o.cache_mem, &cache);
    if (rc < 0) {
        fprintf(stderr, "quantfs: cache %s: %s\n", o.cache_dir ? o.cache_dir : "(memory)",
                strerror(-rc));
        goto out_ns;
    }
    ll.ns = ns;
    ll.cache = cache;
    ll.info.mountpoint = mnt_real ? mnt_real : o.mountpoint;
    ll.info.cache_dir = o.cache_dir;
    ll.info.cache_mem_max = o.cache_mem;

    se = fuse_session_new(&args, qfs_ll_ops(), sizeof(struct fuse_lowlevel_ops), &ll);
    if (!se) {
        fprintf(stderr, "quantfs: cannot create the FUSE session\n");
        goto out_cache;
    }
    if (fuse_set_signal_handlers(se) != 0)
        goto out_session;
    if (fuse_session_mount(se, o.mountpoint) != 0) {
        fprintf(stderr, "quantfs: cannot mount on %s\n", o.mountpoint);
        goto out_signals;
    }
    if (fuse_daemonize(o.foreground) != 0)
        goto out_unmount;

    /* Threads only after the fork of fuse_daemonize.  Without them reads still work. */
    unsigned pf_threads = o.prefetch_threads < 0 ? qfs_prefetch_default_threads()
                                                 : (unsigned)o.prefetch_threads;
    unsigned pf_window = o.prefetch_window < 0 ? 2 * pf_threads : (unsigned)o.prefetch_window;
    rc = qfs_prefetch_start(cache, pf_threads, pf_window, &ll.prefetch);
    if (rc < 0)
        qfs_warn("prefetch disabled: %s", strerror(-rc));
    if (ll.prefetch)
        qfs_info("prefetch: %u threads, %u chunks ahead", pf_threads, pf_window);

    qfs_info("serving %s on %s (%s)", ns->source, ll.info.mountpoint,
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
    /* 0, or the signal that ended the loop (SIGINT/SIGTERM/SIGHUP: a clean exit). */
    status = rc < 0 ? 1 : 0;
    if (rc < 0)
        qfs_err("request loop: %s", strerror(-rc));

    fuse_loop_cfg_destroy(lcfg);
out_unmount:
    /* No request runs any more: stop the jobs before the cache and namespace go. */
    qfs_prefetch_stop(ll.prefetch);
    ll.prefetch = NULL;
    fuse_session_unmount(se);
out_signals:
    fuse_remove_signal_handlers(se);
out_session:
    fuse_session_destroy(se);
out_cache:
    qfs_cache_close(cache);
out_ns:
    qfs_ns_destroy(ns);
out_opts:
    free(mnt_real);
    fuse_opt_free_args(&args);
    qfs_opts_free(&o);
    return status;
}
