/* The read path of a virtual file: [off, off+len) maps onto the file's segments.
 *
 *   [0, head_len)                 generated header bytes (vf->head)
 *   tensor t: [offset, +nbytes)   row chunks, each fetched through the chunk cache
 *   everything else               zeros (alignment padding between tensors, tail)
 *
 * A read that quantizes a chunk (or waits for one being quantized, or enters a cached
 * chunk at its start) queues the next chunks of the same tensor on the prefetch pool
 * (prefetch.h), if the context has one.
 *
 * No FUSE here: a test can call qfs_read_vfile on a model and a memory-only cache. */
#ifndef QFS_FS_READ_H
#define QFS_FS_READ_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct qfs_cache;
struct qfs_model;
struct qfs_prefetch;
struct qfs_vfile;
struct qfs_vtensor;

/* Per virtual file, shared by every reader thread; relaxed atomics (statistics only). */
struct qfs_read_stats {
    _Atomic uint64_t chunks_quantized; /* chunks produced by this process, by a read or a
                                          prefetch job (counted before publication) */
    _Atomic uint64_t cache_hits;       /* reads' memory, disk or waited-for chunks (outcomes
                                          0, 1, 3); prefetch jobs count none */
    _Atomic uint64_t bytes_served;
    _Atomic uint64_t reads;
    _Atomic uint64_t quantize_ns;      /* time spent producing those chunks (monotonic
                                          clock, around qfs_vtensor_produce) */
    /* The description the file belongs to (set once, before any reader): each chunk key
     * and each produced chunk is checked against its source files' identity
     * (qfs_model_check_source); a mismatch is EIO and a rescan.  NULL: not checked. */
    struct qfs_model *model;
};

struct qfs_read_ctx {
    struct qfs_cache *cache;       /* never NULL */
    struct qfs_read_stats *stats;  /* may be NULL */
    struct qfs_prefetch *prefetch; /* may be NULL: no prefetch */
    bool stream;                   /* a page-cache reader (not O_DIRECT): prefetch may run
                                      on into the next tensors, as its readahead will */
};

/* Copy bytes [off, off+len) of vf into buf, clamped at EOF.  Returns the number of
 * bytes written (0 at or past EOF) or a negative errno from the cache or the codec;
 * on error nothing useful is in buf. */
ssize_t qfs_read_vfile(const struct qfs_read_ctx *ctx, const struct qfs_vfile *vf,
                       uint64_t off, size_t len, uint8_t *buf);

/* A prefetch job: make chunk `chunk` of t present in the cache (fill it if needed,
 * counting chunks_quantized on stats, which may be NULL).  0 or negative errno. */
int qfs_read_prefetch_chunk(struct qfs_cache *cache, struct qfs_read_stats *stats,
                            const struct qfs_vfile *vf, const struct qfs_vtensor *t,
                            int64_t chunk);

/* Failures of the read path since start, by kind (relaxed counters, never reset). */
struct qfs_read_errors {
    uint64_t reads;          /* qfs_read_vfile calls that failed */
    uint64_t source_changed; /* a source file found changed under its description */
};
void qfs_read_get_errors(struct qfs_read_errors *e);

/* Total row chunks of vf (for the status file).  Cannot fail. */
uint64_t qfs_vfile_chunks_total(const struct qfs_vfile *vf);

#endif
