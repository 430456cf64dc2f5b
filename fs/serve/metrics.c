#include "metrics.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../cache/cache.h"
#include "../../codecs/format.h"
#include "../../codecs/source/model.h"
#include "../../codecs/vfile.h"
#include "../../kernels/dispatch.h"
#include "namespace.h"
#include "read.h"
#include "rescan.h"
#include "warm.h"

#ifndef QFS_VERSION
#define QFS_VERSION "unknown"
#endif

/* The text being written; a failed allocation is remembered (bad) and ends it. */
struct out {
    char *p;
    size_t len, cap;
    bool bad;
    const char *mnt; /* the mountpoint label of every sample, or NULL */
};

static void put(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(struct out *o, const char *fmt, ...)
{
    if (o->bad)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = o->cap - o->len;
        int n = vsnprintf(o->p ? o->p + o->len : NULL, o->p ? room : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            o->bad = true;
            return;
        }
        if (o->p && (size_t)n < room) {
            o->len += (size_t)n;
            return;
        }
        size_t cap = o->cap ? o->cap : 16384;
        while (cap - o->len <= (size_t)n)
            cap *= 2;
        char *q = realloc(o->p, cap);
        if (!q) {
            o->bad = true;
            return;
        }
        o->p = q;
        o->cap = cap;
    }
}

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 if none starts there. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    size_t len = s[0] < 0x80 ? 1 : (s[0] & 0xe0) == 0xc0 ? 2 : (s[0] & 0xf0) == 0xe0 ? 3
               : (s[0] & 0xf8) == 0xf0 ? 4 : 0;
    if (len == 0 || len > n)
        return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    uint32_t c = len == 1 ? s[0] : s[0] & (0x7f >> len);
    for (size_t i = 1; i < len; i++)
        c = (c << 6) | (s[i] & 0x3f);
    static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (c < min[len] || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
        return 0; /* overlong, beyond Unicode, a surrogate */
    return len;
}

/* A label value: \ " and newline escaped, every byte that is not valid UTF-8 a '?'. */
static void put_value(struct out *o, const char *v)
{
    const unsigned char *s = (const unsigned char *)v;
    size_t n = strlen(v);
    for (size_t i = 0; i < n && !o->bad;) {
        size_t l = utf8_len(s + i, n - i);
        if (l == 0) {
            put(o, "?");
            i++;
        } else if (s[i] == '\\' || s[i] == '"') {
            put(o, "\\%c", s[i]);
            i++;
        } else if (s[i] == '\n') {
            put(o, "\\n");
            i++;
        } else {
            put(o, "%.*s", (int)l, (const char *)s + i);
            i += l;
        }
    }
}

/* HELP and TYPE of a family (its help text needs no escaping). */
static void family(struct out *o, const char *name, const char *type, const char *help)
{
    put(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* One sample: name{mountpoint="...",k="v",...} value; labels: NULL-terminated name,
 * value pairs. */
static void sample(struct out *o, const char *name, const char *const *labels, double v)
{
    put(o, "%s", name);
    bool any = false;
    if (o->mnt) {
        put(o, "{mountpoint=\"");
        put_value(o, o->mnt);
        put(o, "\"");
        any = true;
    }
    for (int i = 0; labels && labels[i]; i += 2) {
        put(o, "%s%s=\"", any ? "," : "{", labels[i]);
        put_value(o, labels[i + 1]);
        put(o, "\"");
        any = true;
    }
    if (any)
        put(o, "}");
    /* counts exactly (below 2^53 a double holds every integer), seconds to the ns */
    if (v == (double)(int64_t)v && v < 9007199254740992.0 && v > -9007199254740992.0)
        put(o, " %" PRId64 "\n", (int64_t)v);
    else
        put(o, " %.9f\n", v);
}

static void one(struct out *o, const char *name, const char *type, const char *help, double v)
{
    family(o, name, type, help);
    sample(o, name, NULL, v);
}

/* ---- per (model, format, variant) ---- */

struct row {
    const char *model, *format, *variant;
    uint64_t bytes_served, reads, chunks_quantized, quantize_ns, cache_hits, chunks, size;
    uint32_t files;
};

static int row_cmp(const void *a, const void *b)
{
    const struct row *x = a, *y = b;
    int c = strcmp(x->model, y->model);
    if (!c)
        c = strcmp(x->format, y->format);
    if (!c)
        c = strcmp(x->variant, y->variant);
    return c;
}

static uint64_t ld(_Atomic uint64_t *v)
{
    return atomic_load_explicit(v, memory_order_relaxed);
}

/* One row per virtual file of every description (once, however many views show it),
 * sorted and with equal label sets summed.  NULL and *n 0 when there is none or on
 * allocation failure (*bad set). */
static struct row *file_rows(const struct qfs_ns *ns, int *n, bool *bad)
{
    size_t total = 0;
    for (int i = 0; i < ns->n_models; i++)
        total += (size_t)ns->models[i].model->n_files;
    *n = 0;
    if (total == 0)
        return NULL;
    struct row *r = calloc(total, sizeof *r);
    if (!r) {
        *bad = true;
        return NULL;
    }
    int k = 0;
    for (int i = 0; i < ns->n_models; i++) {
        struct qfs_ns_desc *d = ns->models[i].desc;
        bool seen = false;
        for (int j = 0; j < i && !seen; j++)
            seen = ns->models[j].desc == d;
        if (seen || !d)
            continue;
        const struct qfs_model *m = d->model;
        for (int f = 0; f < m->n_files; f++) {
            const struct qfs_vfile *vf = m->files[f];
            struct qfs_read_stats *st = &d->stats[f];
            r[k++] = (struct row){
                .model = d->label ? d->label : m->name,
                .format = vf->fmt ? vf->fmt->name : "",
                .variant = vf->variant ? vf->variant : "",
                .bytes_served = ld(&st->bytes_served), .reads = ld(&st->reads),
                .chunks_quantized = ld(&st->chunks_quantized),
                .quantize_ns = ld(&st->quantize_ns), .cache_hits = ld(&st->cache_hits),
                .chunks = qfs_vfile_chunks_total(vf), .size = vf->size, .files = 1};
        }
    }
    if (k > 1)
        qsort(r, (size_t)k, sizeof *r, row_cmp);
    int w = 0;
    for (int i = 0; i < k; i++) {
        if (w && row_cmp(&r[w - 1], &r[i]) == 0) {
            struct row *a = &r[w - 1];
            a->bytes_served += r[i].bytes_served;
            a->reads += r[i].reads;
            a->chunks_quantized += r[i].chunks_quantized;
            a->quantize_ns += r[i].quantize_ns;
            a->cache_hits += r[i].cache_hits;
            a->chunks += r[i].chunks;
            a->size += r[i].size;
            a->files += r[i].files;
            continue;
        }
        r[w++] = r[i];
    }
    *n = w;
    return r;
}

enum field { F_BYTES, F_READS, F_CHUNKS_Q, F_SECONDS, F_HITS, F_CHUNKS, F_SIZE, F_FILES };

static double field(const struct row *r, enum field f)
{
    switch (f) {
    case F_BYTES: return (double)r->bytes_served;
    case F_READS: return (double)r->reads;
    case F_CHUNKS_Q: return (double)r->chunks_quantized;
    case F_SECONDS: return (double)r->quantize_ns / 1e9;
    case F_HITS: return (double)r->cache_hits;
    case F_CHUNKS: return (double)r->chunks;
    case F_SIZE: return (double)r->size;
    case F_FILES: return (double)r->files;
    }
    return 0;
}

static void file_family(struct out *o, const struct row *r, int n, const char *name,
                        const char *type, const char *help, enum field f)
{
    family(o, name, type, help);
    for (int i = 0; i < n; i++) {
        const char *const l[] = {"model", r[i].model, "format", r[i].format,
                                 "variant", r[i].variant, NULL};
        sample(o, name, l, field(&r[i], f));
    }
}

/* ---- the cache ---- */

static void tier(struct out *o, const char *name, const char *tier, double v)
{
    const char *const l[] = {"tier", tier, NULL};
    sample(o, name, l, v);
}

static void cache_families(struct out *o, struct qfs_cache *cache,
                           const struct qfs_status_info *info)
{
    struct qfs_cache_stats s;
    memset(&s, 0, sizeof s);
    if (cache)
        qfs_cache_get_stats(cache, &s);
    const bool disk = info && info->cache_dir, shared = info && info->cache_shared;
    family(o, "quantfs_cache_hits_total", "counter",
           "Chunks found in the chunk cache, by tier (memory, disk, shared).");
    tier(o, "quantfs_cache_hits_total", "memory", (double)s.mem_hits);
    if (disk)
        tier(o, "quantfs_cache_hits_total", "disk", (double)s.disk_hits);
    if (shared)
        tier(o, "quantfs_cache_hits_total", "shared", (double)s.shared_hits);
    one(o, "quantfs_cache_fills_total", "counter",
        "Chunks produced for the cache by this process (reads and prefetch).", (double)s.fills);
    one(o, "quantfs_cache_waits_total", "counter",
        "Chunk requests that waited for another thread producing the same chunk.",
        (double)s.waits);
    family(o, "quantfs_cache_bytes", "gauge", "Bytes held by the chunk cache, by tier.");
    tier(o, "quantfs_cache_bytes", "memory", (double)s.mem_bytes);
    if (disk)
        tier(o, "quantfs_cache_bytes", "disk", (double)s.disk_bytes);
    family(o, "quantfs_cache_limit_bytes", "gauge",
           "Configured bound of the chunk cache, by tier (0: unbounded).");
    tier(o, "quantfs_cache_limit_bytes", "memory", info ? (double)info->cache_mem_max : 0);
    if (disk)
        tier(o, "quantfs_cache_limit_bytes", "disk", (double)info->cache_max);
    family(o, "quantfs_cache_entries", "gauge", "Entries held in memory by the chunk cache.");
    tier(o, "quantfs_cache_entries", "memory", (double)s.mem_entries);
    family(o, "quantfs_cache_evictions_total", "counter",
           "Entries evicted to stay within the cache bound, by tier.");
    tier(o, "quantfs_cache_evictions_total", "memory", (double)s.mem_evicted);
    if (disk)
        tier(o, "quantfs_cache_evictions_total", "disk", (double)s.disk_evicted);
    if (disk) {
        one(o, "quantfs_cache_disk_writes_total", "counter",
            "Entries written to the disk cache.", (double)s.disk_writes);
        one(o, "quantfs_cache_write_queue_bytes", "gauge",
            "Bytes queued or being written to the disk cache.", (double)s.write_queue_bytes);
    }
    one(o, "quantfs_source_hash_hits_total", "counter",
        "Source tensor content hashes recalled from the cache instead of computed.",
        (double)s.srchash_hits);

    struct qfs_read_errors re;
    qfs_read_get_errors(&re);
    struct qfs_dev_stats ds;
    qfs_dev_get_stats(&ds);
    family(o, "quantfs_errors_total", "counter", "Failures, by kind.");
    const struct {
        const char *kind;
        uint64_t v;
    } errs[] = {
        {"read", re.reads},                       /* reads of virtual files answered an error */
        {"source_changed", re.source_changed},    /* a source changed under its description */
        {"cache_disk", s.disk_errors},            /* disk cache I/O errors */
        {"cache_corrupt", s.corrupt_dropped},     /* disk entries failing verification */
        {"cache_unauthenticated", s.unauth_dropped}, /* entries without a valid HMAC */
        {"gpu_fallback", ds.fallbacks},           /* GPU errors answered on the CPU */
    };
    for (size_t i = 0; i < sizeof errs / sizeof *errs; i++) {
        const char *const l[] = {"kind", errs[i].kind, NULL};
        sample(o, "quantfs_errors_total", l, (double)errs[i].v);
    }
    family(o, "quantfs_device_chunks_total", "counter",
           "Quantization calls, by device (cpu, gpu).");
    const char *const cpu[] = {"device", "cpu", NULL}, *const gpu[] = {"device", "gpu", NULL};
    sample(o, "quantfs_device_chunks_total", cpu, (double)ds.cpu_calls);
    sample(o, "quantfs_device_chunks_total", gpu, (double)ds.gpu_calls);
}

int qfs_metrics_render(const struct qfs_ns *ns, struct qfs_cache *cache,
                       const struct qfs_status_info *info, char **out, size_t *len)
{
    struct out o = {.mnt = info ? info->mountpoint : NULL};
    family(&o, "quantfs_build_info", "gauge",
           "Always 1: the quantfs version and the device it quantizes on.");
    const char *const bl[] = {"version", QFS_VERSION, "device", qfs_dev_name(), NULL};
    sample(&o, "quantfs_build_info", bl, 1);
    one(&o, "quantfs_generation", "gauge",
        "Namespace generation served (0 at mount, +1 per rescan that changed it).",
        (double)ns->generation);
    if (info && info->live) {
        struct qfs_live_stats ls;
        qfs_live_get_stats(info->live, &ls);
        one(&o, "quantfs_rescans_total", "counter", "Rescans of the source, changed or not.",
            (double)ls.rescans);
        one(&o, "quantfs_generation_swaps_total", "counter",
            "Rescans that made a new generation current.", (double)ls.swaps);
        one(&o, "quantfs_live_generations", "gauge",
            "Generations alive (the current one and those open files still use).",
            (double)ls.live_gens);
    }
    one(&o, "quantfs_models", "gauge", "Model directories served.", (double)ns->n_models);
    one(&o, "quantfs_skipped_directories", "gauge",
        "Source directories not served as models (see the status file's skipped).",
        (double)ns->n_skips);

    int n = 0;
    struct row *r = file_rows(ns, &n, &o.bad);
    file_family(&o, r, n, "quantfs_bytes_served_total", "counter",
                "Bytes of virtual files read, by model, format and variant.", F_BYTES);
    file_family(&o, r, n, "quantfs_reads_total", "counter",
                "Read requests of virtual files, by model, format and variant.", F_READS);
    file_family(&o, r, n, "quantfs_chunks_quantized_total", "counter",
                "Chunks produced (quantized) by this process, by model, format and variant.",
                F_CHUNKS_Q);
    file_family(&o, r, n, "quantfs_quantize_seconds_total", "counter",
                "Seconds spent producing those chunks (summed over threads).", F_SECONDS);
    file_family(&o, r, n, "quantfs_chunk_cache_hits_total", "counter",
                "Chunks reads found in the cache (any tier) or waited for.", F_HITS);
    file_family(&o, r, n, "quantfs_chunks", "gauge",
                "Chunks of the virtual files, by model, format and variant.", F_CHUNKS);
    file_family(&o, r, n, "quantfs_file_size_bytes", "gauge",
                "Size of the virtual files, by model, format and variant.", F_SIZE);
    file_family(&o, r, n, "quantfs_virtual_files", "gauge",
                "Virtual files, by model, format and variant.", F_FILES);
    free(r);

    cache_families(&o, cache, info);
    if (info && info->prewarm) {
        struct qfs_prewarm_stats ps;
        qfs_prewarm_get_stats(info->prewarm, &ps);
        one(&o, "quantfs_prewarm_busy", "gauge", "1 while a prewarm runs.", ps.busy ? 1 : 0);
        one(&o, "quantfs_prewarm_plans_total", "counter", "Prewarm plans made.",
            (double)ps.plans);
        family(&o, "quantfs_prewarm_chunks", "gauge",
               "Chunks of the current prewarm plan, by state (total, done, failed).");
        const char *const tot[] = {"state", "total", NULL}, *const done[] = {"state", "done", NULL},
                          *const fail[] = {"state", "failed", NULL};
        sample(&o, "quantfs_prewarm_chunks", tot, (double)ps.chunks_total);
        sample(&o, "quantfs_prewarm_chunks", done, (double)ps.chunks_done);
        sample(&o, "quantfs_prewarm_chunks", fail, (double)ps.chunks_failed);
    }
    if (o.bad || !o.p) {
        free(o.p);
        return -ENOMEM;
    }
    *out = o.p;
    *len = o.len;
    return 0;
}
