#include "status.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../cache/cache.h"
#include "../../codecs/source/model.h"
#include "../../codecs/vfile.h"
#include "../../kernels/dispatch.h"
#include "namespace.h"
#include "rescan.h"
#include "warm.h"

#ifndef QFS_VERSION
#define QFS_VERSION "unknown"
#endif

/* json_object_set_new that remembers a failure instead of returning it at each call. */
static void put(json_t *o, const char *k, json_t *v, int *bad)
{
    if (!v || json_object_set_new(o, k, v) < 0)
        *bad = 1;
}

static void push(json_t *a, json_t *v, int *bad)
{
    if (!v || json_array_append_new(a, v) < 0)
        *bad = 1;
}

/* A JSON string of s; bytes that are not valid UTF-8 (a path may hold any) become '?'. */
static json_t *str(const char *s)
{
    json_t *j = json_string(s);
    if (j)
        return j;
    char *t = strdup(s);
    if (!t)
        return NULL;
    for (char *p = t; *p; p++)
        if ((unsigned char)*p >= 0x80)
            *p = '?';
    j = json_string(t);
    free(t);
    return j;
}

static json_t *u64(uint64_t v)
{
    return json_integer((json_int_t)v);
}

static json_t *cache_json(struct qfs_cache *cache, const struct qfs_status_info *info, int *bad)
{
    json_t *c = json_object();
    if (!c) {
        *bad = 1;
        return NULL;
    }
    put(c, "dir", info->cache_dir ? str(info->cache_dir) : json_null(), bad);
    put(c, "mem_max", u64(info->cache_mem_max), bad);
    put(c, "disk_max", u64(info->cache_max), bad);
    put(c, "shared_dir", info->cache_shared ? str(info->cache_shared) : json_null(), bad);
    put(c, "hmac", json_boolean(info->cache_hmac), bad);
    if (cache) {
        struct qfs_cache_stats s;
        memset(&s, 0, sizeof s);
        qfs_cache_get_stats(cache, &s);
        put(c, "mem_hits", u64(s.mem_hits), bad);
        put(c, "disk_hits", u64(s.disk_hits), bad);
        put(c, "fills", u64(s.fills), bad);
        put(c, "waits", u64(s.waits), bad);
        put(c, "disk_errors", u64(s.disk_errors), bad);
        put(c, "corrupt_dropped", u64(s.corrupt_dropped), bad);
        put(c, "mem_bytes", u64(s.mem_bytes), bad);
        put(c, "mem_entries", u64(s.mem_entries), bad);
        put(c, "shared_hits", u64(s.shared_hits), bad);
        put(c, "stale_dropped", u64(s.stale_dropped), bad);
        put(c, "unauthenticated_dropped", u64(s.unauth_dropped), bad);
        put(c, "disk_bytes", u64(s.disk_bytes), bad);
        put(c, "disk_evicted", u64(s.disk_evicted), bad);
        put(c, "disk_writes", u64(s.disk_writes), bad);
        put(c, "disk_writes_sync", u64(s.disk_writes_sync), bad);
        put(c, "write_queue_bytes", u64(s.write_queue_bytes), bad);
        put(c, "srchash_hits", u64(s.srchash_hits), bad);
        put(c, "srchash_stored", u64(s.srchash_stored), bad);
    }
    return c;
}

/* Where chunks were quantized (kernels/dispatch.h). */
static json_t *dev_json(int *bad)
{
    struct qfs_dev_stats ds;
    qfs_dev_get_stats(&ds);
    json_t *d = json_object();
    if (!d) {
        *bad = 1;
        return NULL;
    }
    put(d, "built", json_boolean(qfs_dev_built_with_cuda()), bad);
    put(d, "gpu_chunks", u64(ds.gpu_calls), bad);
    put(d, "gpu_rows", u64(ds.gpu_rows), bad);
    put(d, "cpu_chunks", u64(ds.cpu_calls), bad);
    put(d, "fallbacks", u64(ds.fallbacks), bad);
    return d;
}

static json_t *live_json(struct qfs_live *live, int *bad)
{
    struct qfs_live_stats ls;
    qfs_live_get_stats(live, &ls);
    json_t *r = json_object();
    if (!r) {
        *bad = 1;
        return NULL;
    }
    put(r, "generation", u64(ls.generation), bad);
    put(r, "rescans", u64(ls.rescans), bad);
    put(r, "swaps", u64(ls.swaps), bad);
    put(r, "live_generations", u64(ls.live_gens), bad);
    return r;
}

static json_t *prewarm_json(struct qfs_prewarm *p, int *bad)
{
    struct qfs_prewarm_stats ps;
    qfs_prewarm_get_stats(p, &ps);
    json_t *w = json_object();
    if (!w) {
        *bad = 1;
        return NULL;
    }
    put(w, "busy", json_boolean(ps.busy), bad);
    put(w, "chunks_total", u64(ps.chunks_total), bad);
    put(w, "chunks_done", u64(ps.chunks_done), bad);
    put(w, "chunks_failed", u64(ps.chunks_failed), bad);
    put(w, "bytes_total", u64(ps.bytes_total), bad);
    put(w, "bytes_done", u64(ps.bytes_done), bad);
    put(w, "plans", u64(ps.plans), bad);
    return w;
}

static json_t *model_json(const struct qfs_ns *ns, const struct qfs_ns_model *nm, int *bad)
{
    json_t *o = json_object(), *files = json_array();
    if (!o || !files) {
        json_decref(o);
        json_decref(files);
        *bad = 1;
        return NULL;
    }
    put(o, "name", str(nm->model->name ? nm->model->name : ""), bad);
    put(o, "dir", str(nm->model->dir ? nm->model->dir : ""), bad);
    put(o, "path", str(nm->path), bad);
    /* "<format>_group": the group size of each grouped format's files, null when the
     * format offers the model nothing; "formats": those that offer it something */
    json_t *fmts = json_array();
    if (!fmts)
        *bad = 1;
    for (int k = 0; qfs_formats[k]; k++) {
        const struct qfs_format *f = qfs_formats[k];
        bool has = false;
        for (int j = 0; j < nm->model->n_files && !has; j++)
            has = nm->model->files[j]->fmt == f;
        if (has && fmts && json_array_append_new(fmts, str(f->name)))
            *bad = 1;
        if (f->groups) {
            char key[64];
            snprintf(key, sizeof key, "%s_group", f->name);
            put(o, key, has ? json_integer(nm->model->formats.group[k]) : json_null(), bad);
        }
    }
    put(o, "formats", fmts, bad);
    for (uint32_t i = nm->first_vnode; i < nm->end_vnode; i++) {
        const struct qfs_node *n = &ns->nodes[i];
        if (n->kind != QFS_NODE_VFILE)
            continue;
        const struct qfs_read_stats *st = n->stats;
        json_t *f = json_object();
        if (!f) {
            *bad = 1;
            break;
        }
        put(f, "name", str(n->name), bad);
        put(f, "format", str(n->vf->fmt ? n->vf->fmt->name : ""), bad);
        put(f, "variant", n->vf->variant ? str(n->vf->variant) : json_null(), bad);
        put(f, "size", u64(n->vf->size), bad);
        put(f, "chunks_total", u64(qfs_vfile_chunks_total(n->vf)), bad);
        put(f, "chunks_quantized", u64(atomic_load_explicit(&st->chunks_quantized,
                                                            memory_order_relaxed)), bad);
        put(f, "cache_hits", u64(atomic_load_explicit(&st->cache_hits, memory_order_relaxed)), bad);
        put(f, "bytes_served", u64(atomic_load_explicit(&st->bytes_served,
                                                        memory_order_relaxed)), bad);
        put(f, "reads", u64(atomic_load_explicit(&st->reads, memory_order_relaxed)), bad);
        push(files, f, bad);
    }
    put(o, "files", files, bad);
    return o;
}

int qfs_status_render(const struct qfs_ns *ns, struct qfs_cache *cache,
                      const struct qfs_status_info *info, char **out, size_t *len)
{
    int bad = 0;
    json_t *root = json_object(), *models = json_array(), *skipped = json_array();
    if (!root || !models || !skipped) {
        json_decref(root);
        json_decref(models);
        json_decref(skipped);
        return -ENOMEM;
    }
    put(root, "version", json_string(QFS_VERSION), &bad);
    put(root, "source", str(ns->source), &bad);
    put(root, "mountpoint", info->mountpoint ? str(info->mountpoint) : json_null(), &bad);
    put(root, "device", str(qfs_dev_name()), &bad);
    if (qfs_dev_note())
        put(root, "device_note", str(qfs_dev_note()), &bad);
    put(root, "gpu", dev_json(&bad), &bad);
    put(root, "cache", cache_json(cache, info, &bad), &bad);
    put(root, "generation", u64(ns->generation), &bad);
    if (info->live)
        put(root, "rescan", live_json(info->live, &bad), &bad);
    if (info->prewarm)
        put(root, "prewarm", prewarm_json(info->prewarm, &bad), &bad);
    for (int i = 0; i < ns->n_models; i++)
        push(models, model_json(ns, &ns->models[i], &bad), &bad);
    put(root, "models", models, &bad);
    for (int i = 0; i < ns->n_skips; i++) {
        json_t *s = json_object();
        if (!s) {
            bad = 1;
            break;
        }
        put(s, "path", str(ns->skips[i].path), &bad);
        put(s, "reason", str(ns->skips[i].reason), &bad);
        push(skipped, s, &bad);
    }
    put(root, "skipped", skipped, &bad);
    char *text = bad ? NULL : json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (!text)
        return -ENOMEM;
    size_t n = strlen(text);
    /* One trailing newline, so `cat` output ends cleanly. */
    char *t = realloc(text, n + 2);
    if (!t) {
        free(text);
        return -ENOMEM;
    }
    t[n] = '\n';
    t[n + 1] = '\0';
    *out = t;
    *len = n + 1;
    return 0;
}
