/* Prefetch: a pool of worker threads that produce the row chunks following the one a
 * reader is at, so a sequential reader (cat, llama.cpp's mmap loader faulting pages in
 * order) finds them quantized, or being quantized, instead of quantizing each itself.
 *
 *   qfs_prefetch_after(p, vf, t, c, across, stats) queues the `window` chunks after
 *   chunk c of tensor t: within t only, so that reading one tensor never quantizes the
 *   next one's, unless `across` (a page-cache reader, whose kernel readahead reads on
 *   past the tensor's end anyway), when they continue into the following tensors.
 *
 * A job is qfs_read_prefetch_chunk (read.c): the chunk's key, qfs_cache_get with the
 * same fill as a read, qfs_cache_put.  The cache's single flight makes a reader that
 * reaches a chunk being prefetched wait for it rather than redo it.  The job queue is
 * bounded (a request that does not fit is dropped: prefetch is only a hint), and a small
 * direct-mapped set of recently queued chunks keeps one chunk from being queued twice.
 *
 * Jobs hold pointers (vf, t, stats) that must live until qfs_prefetch_stop returns: stop
 * the pool before freeing the namespace or closing the cache.  No FUSE here. */
#ifndef QFS_FS_PREFETCH_H
#define QFS_FS_PREFETCH_H

#include <stdbool.h>
#include <stdint.h>

struct qfs_cache;
struct qfs_vfile;
struct qfs_vtensor;
struct qfs_read_stats;
struct qfs_prefetch;

/* The number of online CPUs (at least 1): the default thread count. */
unsigned qfs_prefetch_default_threads(void);

/* Start `threads` workers over cache, prefetching `window` chunks ahead.  threads == 0
 * or window == 0: prefetch disabled, *out = NULL, returns 0.  Threads are created here
 * (after any fork, e.g. fuse_daemonize).  0 or negative errno. */
int qfs_prefetch_start(struct qfs_cache *cache, unsigned threads, unsigned window,
                       struct qfs_prefetch **out);

/* Discard queued jobs, wait for running ones, join the workers, free.  NULL: no-op. */
void qfs_prefetch_stop(struct qfs_prefetch *p);

/* Queue the chunks after `chunk` of t (in vf; across: into the next tensors too); stats
 * (may be NULL) gets the jobs' chunks_quantized.  Never blocks on a job.  p == NULL:
 * no-op. */
void qfs_prefetch_after(struct qfs_prefetch *p, const struct qfs_vfile *vf,
                        const struct qfs_vtensor *t, int64_t chunk, bool across,
                        struct qfs_read_stats *stats);

/* Wait until no job is queued or running (tests, statistics). */
void qfs_prefetch_wait_idle(struct qfs_prefetch *p);

struct qfs_prefetch_stats {
    uint64_t queued, done, failed, dropped_full, skipped_recent;
};
void qfs_prefetch_get_stats(struct qfs_prefetch *p, struct qfs_prefetch_stats *s);

#endif
