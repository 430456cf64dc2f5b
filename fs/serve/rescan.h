/* Live source changes: namespace generations, the rescan thread, and the guard that keeps
 * a source file changing under its mapping from reaching a reader.
 *
 * Generations.  The mount serves one current namespace (namespace.h); a rescan builds the
 * next one beside it (qfs_ns_rebuild), swaps it in under the lock, and then tells the
 * kernel what changed (entries added, removed or bound to a new inode; directories whose
 * listing changed).  Each generation is refcounted: every FUSE operation holds one for
 * its duration (qfs_live_acquire/release), and every open handle holds one until it is
 * released, so a handle keeps reading the generation (and model description) it opened.
 * A generation that is no longer current is freed, by the reaper thread, once its count
 * is zero and no prefetch job is queued or running (jobs point into it).
 *
 * Triggers.  qfs_live_kick (SIGHUP), qfs_live_poke (a reader found its source changed), inotify
 * events on every directory of the current namespace (debounced: a rescan runs once the
 * events have been quiet for QFS_LIVE_QUIET_MS, or QFS_LIVE_MAX_DELAY_MS after the first),
 * and a periodic rescan every `interval` seconds (0: none).  A rescan that finds nothing
 * changed keeps the current generation.
 *
 * The source guard.  Sources are read through MAP_SHARED mappings; a file truncated or
 * rewritten in place raises SIGBUS on the pages it lost.  Between qfs_guard_begin and
 * qfs_guard_end, such a fault maps a page of zeros over the lost page and is reported by
 * qfs_guard_end; the caller discards what it computed (EIO).  Outside a guard a SIGBUS
 * keeps its default action.
 *
 * No FUSE here: the kernel notifications are callbacks that main.c provides. */
#ifndef QFS_FS_RESCAN_H
#define QFS_FS_RESCAN_H

#include <stdint.h>

struct qfs_ns;
struct qfs_node;
struct qfs_ns_opts;
struct qfs_prefetch;
struct qfs_live;

#define QFS_LIVE_QUIET_MS 500
#define QFS_LIVE_MAX_DELAY_MS 5000
#define QFS_LIVE_DEFAULT_INTERVAL 60 /* seconds */

struct qfs_live_cfg {
    const struct qfs_ns_opts *nso; /* kept: must outlive the manager; may be NULL */
    unsigned interval;             /* seconds between periodic rescans; 0: none */
    int watch;                     /* use inotify */
    struct qfs_prefetch *prefetch; /* the reaper waits until its jobs are done; may be NULL */
    /* Kernel cache invalidation (main.c: fuse_lowlevel_notify_inval_*); may be NULL. */
    void (*inval_entry)(void *arg, uint64_t dir_ino, const char *name);
    void (*inval_inode)(void *arg, uint64_t ino);
    /* After a new generation became current (warm.c's prewarm); may be NULL. */
    void (*swapped)(void *arg);
    void *arg;
};

/* A manager serving `initial` (ownership taken, even on failure).  No thread yet, so it
 * can be created before fuse_daemonize.  0 or -ENOMEM. */
int qfs_live_create(struct qfs_ns *initial, struct qfs_live **out);
/* Start the rescan and reaper threads (all signals but the synchronous ones blocked).
 * 0 or negative errno; on failure the manager still serves its generation. */
int qfs_live_start(struct qfs_live *l, const struct qfs_live_cfg *cfg);
/* Join the threads (no rescan after it returns).  Safe if never started. */
void qfs_live_stop(struct qfs_live *l);
/* Free every generation, whatever its count: only once no request can run and the
 * prefetch pool has stopped (qfs_live_stop first, then qfs_prefetch_stop, then this). */
void qfs_live_destroy(struct qfs_live *l);

/* The current generation, with a reference.  Cannot fail. */
struct qfs_ns *qfs_live_acquire(struct qfs_live *l);
/* The newest live generation that knows inode ino, with a reference, and *node; NULL
 * when none does (the caller answers ESTALE). */
struct qfs_ns *qfs_live_acquire_ino(struct qfs_live *l, uint64_t ino,
                                    const struct qfs_node **node);
void qfs_live_release(struct qfs_live *l, struct qfs_ns *ns);

/* Ask for a rescan now (SIGHUP).  Async-signal-safe; a no-op while no manager runs. */
void qfs_live_kick(void);
/* A source file changed under a reader: rescan once the source is quiet, as after an
 * inotify event (a file still being written would be described half written).  Same
 * properties as qfs_live_kick. */
void qfs_live_poke(void);
/* Rescan now, in the calling thread (tests).  1 swapped, 0 nothing changed, or negative
 * errno. */
int qfs_live_rescan(struct qfs_live *l);

struct qfs_live_stats {
    uint64_t generation; /* of the current namespace */
    uint64_t rescans;    /* completed, changed or not */
    uint64_t swaps;      /* rescans that made a new generation current */
    unsigned live_gens;  /* generations alive (current included) */
};
void qfs_live_get_stats(struct qfs_live *l, struct qfs_live_stats *s);

/* Install the SIGBUS handler of the guard (once per process).  0 or negative errno. */
int qfs_guard_install(void);
/* Guard the calling thread's mapped-source reads until qfs_guard_end, which returns 1 when
 * a mapped page vanished meanwhile (what was read is garbage), else 0.  Not nested. */
void qfs_guard_begin(void);
int qfs_guard_end(void);

#endif
