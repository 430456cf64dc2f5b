#include "read.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#include "../../cache/cache.h"
#include "../../codecs/source/model.h"
#include "../../codecs/vfile.h"
#include "../../util/log.h"
#include "prefetch.h"
#include "rescan.h"

static _Atomic uint64_t err_reads, err_source_changed;

void qfs_read_get_errors(struct qfs_read_errors *e)
{
    e->reads = atomic_load_explicit(&err_reads, memory_order_relaxed);
    e->source_changed = atomic_load_explicit(&err_source_changed, memory_order_relaxed);
}

static uint64_t mono_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

struct chunk_fill {
    const struct qfs_vfile *vf;
    const struct qfs_vtensor *t;
    int64_t chunk;
    struct qfs_read_stats *stats;  /* may be NULL */
    struct qfs_prefetch *prefetch; /* a reader's fill: queue the next chunks; jobs: NULL */
    bool stream;                   /* the reader's qfs_read_ctx.stream */
};

/* The source file of t still what model m was described from?  0, or -EIO (a rescan is
 * requested: the model must be described again).  m NULL: not checked (tests, tools). */
static int source_check(struct qfs_model *m, const struct qfs_vtensor *t)
{
    (void)t;
    if (!m || qfs_model_check_sources(m) == 0)
        return 0;
    atomic_fetch_add_explicit(&err_source_changed, 1, memory_order_relaxed);
    qfs_live_poke();
    return -EIO;
}

/* A mapped page of the source vanished under a reader (the file was truncated). */
static int source_vanished(struct qfs_model *m)
{
    if (m)
        qfs_model_mark_stale(m);
    atomic_fetch_add_explicit(&err_source_changed, 1, memory_order_relaxed);
    qfs_live_poke();
    return -EIO;
}

/* The chunk's key.  The key hashes the source tensor on first use: it is taken only while
 * the source is the described file, so that a hash never covers changed bytes (a
 * description found stale answers EIO for every chunk, cached or not: its hashes may
 * be of changed bytes).  0 or negative errno. */
static int chunk_key(struct qfs_read_stats *stats, const struct qfs_vfile *vf,
                     const struct qfs_vtensor *t, int64_t chunk, struct qfs_cache_key *key)
{
    struct qfs_model *m = stats ? stats->model : NULL;
    int rc = source_check(m, t);
    if (rc < 0)
        return rc;
    qfs_guard_begin();
    rc = qfs_vtensor_key(vf, t, chunk, key);
    if (qfs_guard_end())
        return source_vanished(m);
    if (rc == 0)
        rc = source_check(m, t);
    return rc;
}

/* A chunk being quantized: the source of the one HINT_AHEAD chunks further (past the
 * prefetch window) starts coming from the disk, so that neither its hash nor its rows
 * wait on page faults one read at a time.  Into the next tensors too: a prefetch job
 * does not know whether its reader streams. */
#define HINT_AHEAD 8

static void hint_ahead(const struct qfs_vfile *vf, const struct qfs_vtensor *t, int64_t c)
{
    for (int k = 0; k < HINT_AHEAD; k++)
        if (!qfs_vfile_next_chunk(vf, &t, &c, true))
            return;
    qfs_vtensor_hint(t, c);
}

/* A chunk that came from its disk entry: the entry of the one HINT_AHEAD chunks further
 * in the same tensor and group starts coming from the disk.  Its key needs no source
 * access (the group's hash was taken for this chunk's key), so it is computed without
 * chunk_key's source checks: a changed source is found, and counted once, by the read
 * of that chunk. */
static void hint_cached_ahead(struct qfs_cache *cache, const struct qfs_vfile *vf,
                              const struct qfs_vtensor *t, int64_t chunk)
{
    const int64_t c = chunk + HINT_AHEAD;
    if (t->ops || c >= t->n_chunks || t->group_rows <= 0)
        return;
    int64_t r0, r1;
    qfs_vtensor_chunk_rows(t, chunk, &r0);
    qfs_vtensor_chunk_rows(t, c, &r1);
    if (r0 / t->group_rows != r1 / t->group_rows)
        return;
    struct qfs_cache_key key;
    if (qfs_vtensor_key(vf, t, c, &key) == 0)
        qfs_cache_hint(cache, &key);
}

/* Cache fill callback: quantize one chunk (no cache lock is held here).  A chunk is
 * counted here, before the cache publishes it, so a reader woken by it (or a status
 * read after that reader's reply) already sees the count. */
static int fill_chunk(void *arg, uint8_t *dst, uint64_t len)
{
    const struct chunk_fill *f = arg;
    if (len != qfs_vtensor_chunk_bytes(f->t, f->chunk))
        return -EINVAL;
    /* A reader about to quantize: the pool starts on the following chunks meanwhile. */
    qfs_prefetch_after(f->prefetch, f->vf, f->t, f->chunk, f->stream, f->stats);
    hint_ahead(f->vf, f->t, f->chunk);
    struct qfs_model *m = f->stats ? f->stats->model : NULL;
    int rc = source_check(m, f->t);
    if (rc < 0)
        return rc;
    const uint64_t t0 = f->stats ? mono_ns() : 0;
    qfs_guard_begin();
    rc = qfs_vtensor_produce(f->t, f->chunk, dst);
    if (qfs_guard_end())
        rc = source_vanished(m);
    /* The rows read are the described ones only if the file is still that file. */
    if (rc == 0)
        rc = source_check(m, f->t);
    if (rc == 0 && f->stats) {
        atomic_fetch_add_explicit(&f->stats->quantize_ns, mono_ns() - t0, memory_order_relaxed);
        atomic_fetch_add_explicit(&f->stats->chunks_quantized, 1, memory_order_relaxed);
    }
    return rc;
}

int qfs_read_prefetch_chunk(struct qfs_cache *cache, struct qfs_read_stats *stats,
                            const struct qfs_vfile *vf, const struct qfs_vtensor *t,
                            int64_t chunk)
{
    struct qfs_cache_key key;
    int rc = chunk_key(stats, vf, t, chunk, &key);
    if (rc < 0)
        return rc;
    struct chunk_fill f = {.vf = vf, .t = t, .chunk = chunk, .stats = stats};
    const struct qfs_cache_entry *e = NULL;
    int outcome = -1;
    rc = qfs_cache_get_tagged(cache, &key, qfs_vfile_cache_tag(vf),
                              qfs_vtensor_chunk_bytes(t, chunk), fill_chunk, &f, &e, &outcome);
    if (rc < 0)
        return rc;
    qfs_cache_put(cache, e);
    if (outcome == 1)
        hint_cached_ahead(cache, vf, t, chunk);
    return 0;
}

/* First tensor whose end lies past pos (tensors are sorted by offset), or NULL. */
static const struct qfs_vtensor *tensor_at(const struct qfs_vfile *vf, uint64_t pos)
{
    int lo = 0, hi = vf->n_tensors;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        const struct qfs_vtensor *t = &vf->tensors[mid];
        if (t->offset + t->nbytes <= pos)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < vf->n_tensors ? &vf->tensors[lo] : NULL;
}

/* Copy part of one chunk: [pos, pos+n) lies inside chunk `chunk` of t. */
static int copy_chunk(const struct qfs_read_ctx *ctx, const struct qfs_vfile *vf,
                      const struct qfs_vtensor *t, int64_t chunk, uint64_t skip, uint64_t n,
                      uint8_t *dst)
{
    struct qfs_cache_key key;
    int rc = chunk_key(ctx->stats, vf, t, chunk, &key);
    if (rc < 0)
        return rc; /* a stale source was logged once, by the model */
    struct chunk_fill f = {.vf = vf, .t = t, .chunk = chunk, .stats = ctx->stats,
                           .prefetch = ctx->prefetch, .stream = ctx->stream};
    uint64_t clen = qfs_vtensor_chunk_bytes(t, chunk);
    const struct qfs_cache_entry *e = NULL;
    int outcome = -1;
    rc = qfs_cache_get_tagged(ctx->cache, &key, qfs_vfile_cache_tag(vf),
                              clen, fill_chunk, &f, &e, &outcome);
    if (rc < 0) {
        qfs_err("%s: tensor %s chunk %lld: %s", vf->name, t->name, (long long)chunk,
                strerror(-rc));
        return rc;
    }
    if (e->len < skip + n) {
        qfs_cache_put(ctx->cache, e);
        qfs_err("%s: tensor %s chunk %lld: cache entry of %llu bytes, expected %llu",
                vf->name, t->name, (long long)chunk, (unsigned long long)e->len,
                (unsigned long long)clen);
        return -EIO;
    }
    memcpy(dst, e->data + skip, n);
    qfs_cache_put(ctx->cache, e);
    /* Outcome 2 (filled here) was counted, and prefetch queued, by fill_chunk.  Waiting
     * for a fill, or entering a cached chunk at its start, keeps the window moving. */
    if (outcome == 3 || (outcome != 2 && skip == 0))
        qfs_prefetch_after(ctx->prefetch, vf, t, chunk, ctx->stream, ctx->stats);
    if (outcome == 1)
        hint_cached_ahead(ctx->cache, vf, t, chunk);
    if (ctx->stats && outcome != 2)
        atomic_fetch_add_explicit(&ctx->stats->cache_hits, 1, memory_order_relaxed);
    return 0;
}

ssize_t qfs_read_vfile(const struct qfs_read_ctx *ctx, const struct qfs_vfile *vf,
                       uint64_t off, size_t len, uint8_t *buf)
{
    if (off >= vf->size || len == 0)
        return 0;
    uint64_t end = vf->size - off < len ? vf->size : off + len;
    uint64_t pos = off;
    while (pos < end) {
        uint8_t *dst = buf + (pos - off);
        if (pos < vf->head_len) {
            uint64_t n = (end < vf->head_len ? end : vf->head_len) - pos;
            qfs_vfile_head_read(vf, pos, n, dst);
            pos += n;
            continue;
        }
        const struct qfs_vtensor *t = tensor_at(vf, pos);
        if (!t || pos < t->offset) {
            /* Gap: padding before the next tensor, or the tail. */
            uint64_t stop = t && t->offset < end ? t->offset : end;
            memset(dst, 0, stop - pos);
            pos = stop;
            continue;
        }
        uint64_t rel = pos - t->offset, cstart;
        if (t->rows_per_chunk <= 0 || t->row_bytes == 0) {
            atomic_fetch_add_explicit(&err_reads, 1, memory_order_relaxed);
            return -EIO;
        }
        int64_t chunk = qfs_vtensor_chunk_at(t, rel, &cstart);
        uint64_t skip = rel - cstart;
        uint64_t clen = qfs_vtensor_chunk_bytes(t, chunk);
        if (skip >= clen) {
            atomic_fetch_add_explicit(&err_reads, 1, memory_order_relaxed);
            return -EIO; /* inconsistent layout: never loop forever */
        }
        uint64_t n = clen - skip;
        if (n > end - pos)
            n = end - pos;
        int rc = copy_chunk(ctx, vf, t, chunk, skip, n, dst);
        if (rc < 0) {
            atomic_fetch_add_explicit(&err_reads, 1, memory_order_relaxed);
            return rc;
        }
        pos += n;
    }
    uint64_t got = end - off;
    if (ctx->stats) {
        atomic_fetch_add_explicit(&ctx->stats->reads, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&ctx->stats->bytes_served, got, memory_order_relaxed);
    }
    return (ssize_t)got;
}

uint64_t qfs_vfile_chunks_total(const struct qfs_vfile *vf)
{
    uint64_t n = 0;
    for (int i = 0; i < vf->n_tensors; i++)
        n += (uint64_t)vf->tensors[i].n_chunks;
    return n;
}
