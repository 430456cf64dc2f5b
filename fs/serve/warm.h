/* Prewarm (-o prewarm=Q4_K_M,Q8_0,AWQ): the daemon fills the chunk cache for the virtual
 * files of those variants (codecs/format.h: a GGUF type, a format's name) of every model,
 * in background threads at the lowest CPU priority (nice 19), so that the first reader
 * finds the chunks quantized.
 *
 * The work is a plan: every virtual file of the current generation whose variant is listed,
 * of a model description not prewarmed yet, split into its chunks in file order.  The
 * workers take chunks from the plan one at a time (qfs_read_prefetch_chunk: the same
 * cache and single flight as reads, so a reader that reaches a chunk being prewarmed waits
 * for that chunk only, and prewarm never holds a lock while quantizing).  A new generation
 * (qfs_prewarm_kick, after a rescan) replaces the plan at the next chunk: new or
 * re-described models are prewarmed, chunks already cached cost a lookup.  A plan holds a
 * reference on its generation.  Progress is logged (every 10 % or 30 s) and shown in the
 * status file.  No FUSE here. */
#ifndef QFS_FS_WARM_H
#define QFS_FS_WARM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct qfs_cache;
struct qfs_live;
struct qfs_prewarm;

/* Is name[0..n) a prewarm type: a variant of some format (qfs_format_variant_ok)? */
bool qfs_prewarm_type_ok(const char *name, size_t n);

/* Is every comma-separated name in types an output type quantfs offers?  0, or -EINVAL
 * with *bad pointing at the first unknown name (its length in *bad_len). */
int qfs_prewarm_check_types(const char *types, const char **bad, int *bad_len);

/* Start `threads` workers (0: half the online CPUs, at least 1) prewarming `types` over
 * live's current generation.  0 or negative errno. */
int qfs_prewarm_start(struct qfs_live *live, struct qfs_cache *cache, const char *types,
                      unsigned threads, struct qfs_prewarm **out);
/* A new generation is current: plan again.  NULL: no-op. */
void qfs_prewarm_kick(struct qfs_prewarm *p);
/* Stop the workers (the chunk each is on finishes) and free.  NULL: no-op. */
void qfs_prewarm_stop(struct qfs_prewarm *p);

struct qfs_prewarm_stats {
    uint64_t chunks_total, chunks_done, chunks_failed; /* of the current plan */
    uint64_t bytes_total, bytes_done;
    int busy;          /* chunks remain or are being produced */
    uint64_t plans;    /* plans made so far */
};
void qfs_prewarm_get_stats(struct qfs_prewarm *p, struct qfs_prewarm_stats *s);

#endif
