/* The FUSE-free front: build a namespace over a generated model, then check that
 * qfs_read_vfile gives the same bytes at any offset and length as one full read, and
 * that with prefetch on (within a tensor, or across tensors for page-cache readers),
 * sequential and concurrent readers get the same bytes while
 * every chunk is quantized exactly once, and a direct reader quantizes nothing past the
 * tensors it read. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache/cache.h"
#include "codecs/source/model.h"
#include "codecs/vfile.h"
#include "fs/serve/namespace.h"
#include "fs/serve/prefetch.h"
#include "fs/serve/read.h"
#include "fs/serve/status.h"

static int fails;
#define CHECK(c, ...)                                                                      \
    do {                                                                                   \
        if (!(c)) {                                                                        \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                           \
            fprintf(stderr, __VA_ARGS__);                                                  \
            fputc('\n', stderr);                                                           \
            fails++;                                                                       \
        }                                                                                  \
    } while (0)

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void diff_entry(void *arg, uint64_t dir, const char *name)
{
    (void)arg;
    fprintf(stderr, "diff: entry %s in %llu\n", name, (unsigned long long)dir);
}

static void diff_dir(void *arg, uint64_t dir)
{
    (void)arg;
    fprintf(stderr, "diff: directory %llu\n", (unsigned long long)dir);
}

static void check_file(struct qfs_cache *cache, const struct qfs_node *n)
{
    const struct qfs_vfile *vf = n->vf;
    struct qfs_read_ctx ctx = {.cache = cache, .stats = n->stats};
    uint64_t size = vf->size;
    uint8_t *full = malloc(size + 64), *part = malloc(size + 64);
    if (!full || !part)
        abort();
    ssize_t got = qfs_read_vfile(&ctx, vf, 0, size + 64, full);
    CHECK(got == (ssize_t)size, "%s: full read %zd of %llu", vf->name, got,
          (unsigned long long)size);
    size_t nl = strlen(vf->name);
    if (nl > 12 && !strcmp(vf->name + nl - 12, ".safetensors"))
        CHECK(size >= 9 && full[8] == '{', "%s: no safetensors header", vf->name);
    else if (vf->n_tensors > 0)
        CHECK(size >= 4 && !memcmp(full, "GGUF", 4), "%s: no GGUF magic", vf->name);
    else /* header-only (the AWQ directory's config.json) */
        CHECK(!memcmp(full, vf->head, size), "%s: not its header bytes", vf->name);
    CHECK(qfs_read_vfile(&ctx, vf, size, 10, part) == 0, "%s: read at EOF", vf->name);
    /* Sequential, odd step. */
    for (uint64_t off = 0; off < size; off += 4097) {
        got = qfs_read_vfile(&ctx, vf, off, 4097, part);
        uint64_t want = size - off < 4097 ? size - off : 4097;
        CHECK(got == (ssize_t)want && !memcmp(part, full + off, want), "%s: step read at %llu",
              vf->name, (unsigned long long)off);
    }
    /* Random slices, some crossing the end. */
    for (int i = 0; i < 300; i++) {
        uint64_t off = next() % size, len = 1 + next() % (i % 3 ? 300 : 70000);
        got = qfs_read_vfile(&ctx, vf, off, len, part);
        uint64_t want = size - off < len ? size - off : len;
        CHECK(got == (ssize_t)want && !memcmp(part, full + off, want),
              "%s: slice [%llu, +%llu)", vf->name, (unsigned long long)off,
              (unsigned long long)len);
    }
    /* Every tensor boundary, one byte either side. */
    for (int t = 0; t < vf->n_tensors; t++) {
        uint64_t b = vf->tensors[t].offset;
        if (b == 0)
            continue;
        got = qfs_read_vfile(&ctx, vf, b - 1, 2, part);
        CHECK(got == 2 && !memcmp(part, full + b - 1, 2), "%s: boundary of %s", vf->name,
              vf->tensors[t].name);
    }
    CHECK(atomic_load(&n->stats->reads) > 0 && atomic_load(&n->stats->bytes_served) >= size,
          "%s: counters", vf->name);
    free(full);
    free(part);
}

static void reset_stats(struct qfs_read_stats *st)
{
    atomic_store(&st->chunks_quantized, 0);
    atomic_store(&st->cache_hits, 0);
    atomic_store(&st->bytes_served, 0);
    atomic_store(&st->reads, 0);
}

/* Sequential reads of step bytes from off0 to the end (or to stop). */
static int read_seq(const struct qfs_read_ctx *ctx, const struct qfs_vfile *vf, uint64_t off0,
                    uint64_t stop, size_t step, uint8_t *out)
{
    for (uint64_t off = off0; off < stop; off += step) {
        size_t n = stop - off < step ? (size_t)(stop - off) : step;
        if (qfs_read_vfile(ctx, vf, off, n, out + off) != (ssize_t)n)
            return -1;
    }
    return 0;
}

struct conc_reader {
    struct qfs_read_ctx ctx;
    const struct qfs_vfile *vf;
    size_t step;
    uint8_t *buf;
    int rc;
};

static void *conc_main(void *p)
{
    struct conc_reader *r = p;
    r->rc = read_seq(&r->ctx, r->vf, 0, r->vf->size, r->step, r->buf);
    return NULL;
}

/* One virtual file with prefetch on against the bytes read without it. */
static void check_prefetch_file(const struct qfs_node *n)
{
    const struct qfs_vfile *vf = n->vf;
    uint64_t size = vf->size, total = qfs_vfile_chunks_total(vf);
    uint8_t *ref = malloc(size), *got = malloc(size);
    struct qfs_cache *c0 = NULL, *c1 = NULL;
    struct qfs_prefetch *pf = NULL;
    if (!ref || !got || qfs_cache_open(NULL, 256u << 20, &c0) < 0)
        abort();
    struct qfs_read_ctx ctx = {.cache = c0, .stats = n->stats};
    reset_stats(n->stats);
    CHECK(qfs_read_vfile(&ctx, vf, 0, size, ref) == (ssize_t)size, "%s: plain read", vf->name);
    /* Chunks of equal content (e.g. norms of all ones) share a key: the distinct ones. */
    uint64_t distinct = atomic_load(&n->stats->chunks_quantized);
    CHECK(distinct > 0 && distinct <= total, "%s: plain read quantized %llu of %llu", vf->name,
          (unsigned long long)distinct, (unsigned long long)total);
    qfs_cache_close(c0);

    /* 1. Sequential reader in readahead-sized steps, prefetch on. */
    if (qfs_cache_open(NULL, 256u << 20, &c1) < 0 || qfs_prefetch_start(c1, 2, 4, &pf) < 0 || !pf)
        abort();
    reset_stats(n->stats);
    /* a page-cache reader: prefetch runs on across tensors */
    ctx = (struct qfs_read_ctx){.cache = c1, .stats = n->stats, .prefetch = pf, .stream = true};
    memset(got, 0xa5, size);
    CHECK(read_seq(&ctx, vf, 0, size, 128 * 1024, got) == 0 && !memcmp(ref, got, size),
          "%s: sequential read with prefetch differs", vf->name);
    qfs_prefetch_wait_idle(pf);
    struct qfs_cache_stats cs;
    qfs_cache_get_stats(c1, &cs);
    uint64_t q = atomic_load(&n->stats->chunks_quantized);
    CHECK(q == distinct && cs.fills == distinct, "%s: %llu chunks, quantized %llu, fills %llu",
          vf->name, (unsigned long long)distinct, (unsigned long long)q,
          (unsigned long long)cs.fills);
    struct qfs_prefetch_stats ps;
    qfs_prefetch_get_stats(pf, &ps);
    CHECK(ps.failed == 0, "%s: prefetch jobs failed", vf->name);
    int multi = 0;
    for (int i = 0; i < vf->n_tensors; i++)
        multi += vf->tensors[i].n_chunks > 1;
    if (multi)
        CHECK(ps.queued > 0, "%s: nothing prefetched", vf->name);
    qfs_prefetch_stop(pf);
    qfs_cache_close(c1);

    /* 2. The header and the first multi-chunk tensor: exactly its chunks, none of the
     * next tensor's (prefetch never crosses a tensor). */
    int ti = 0;
    while (ti < vf->n_tensors && vf->tensors[ti].n_chunks < 2)
        ti++;
    if (ti < vf->n_tensors) {
        const struct qfs_vtensor *t = &vf->tensors[ti];
        uint64_t stop = t->offset + t->nbytes;
        /* The same reads without prefetch give the expected count. */
        if (qfs_cache_open(NULL, 256u << 20, &c0) < 0)
            abort();
        reset_stats(n->stats);
        ctx = (struct qfs_read_ctx){.cache = c0, .stats = n->stats};
        CHECK(read_seq(&ctx, vf, 0, stop, 64 * 1024, got) == 0, "%s: plain partial", vf->name);
        uint64_t want = atomic_load(&n->stats->chunks_quantized);
        CHECK(want >= (uint64_t)t->n_chunks, "%s: %s chunks", vf->name, t->name);
        qfs_cache_close(c0);
        if (qfs_cache_open(NULL, 256u << 20, &c1) < 0 || qfs_prefetch_start(c1, 2, 8, &pf) < 0)
            abort();
        reset_stats(n->stats);
        ctx = (struct qfs_read_ctx){.cache = c1, .stats = n->stats, .prefetch = pf};
        CHECK(read_seq(&ctx, vf, 0, stop, 64 * 1024, got) == 0 && !memcmp(ref, got, stop),
              "%s: read up to %s", vf->name, t->name);
        qfs_prefetch_wait_idle(pf);
        q = atomic_load(&n->stats->chunks_quantized);
        CHECK(q == want, "%s: up to %s: quantized %llu, want %llu", vf->name, t->name,
              (unsigned long long)q, (unsigned long long)want);
        qfs_prefetch_stop(pf);
        qfs_cache_close(c1);
        /* The same reads as a page-cache reader: the window runs on into the next
         * tensors, at most 8 chunks past what was read. */
        const struct qfs_vtensor *next = NULL;
        for (int j = ti + 1; j < vf->n_tensors && !next; j++)
            if (vf->tensors[j].n_chunks > 0)
                next = &vf->tensors[j];
        if (qfs_cache_open(NULL, 256u << 20, &c1) < 0 || qfs_prefetch_start(c1, 2, 8, &pf) < 0)
            abort();
        reset_stats(n->stats);
        ctx = (struct qfs_read_ctx){.cache = c1, .stats = n->stats, .prefetch = pf, .stream = true};
        CHECK(read_seq(&ctx, vf, 0, stop, 64 * 1024, got) == 0 && !memcmp(ref, got, stop),
              "%s: streamed up to %s", vf->name, t->name);
        qfs_prefetch_wait_idle(pf);
        q = atomic_load(&n->stats->chunks_quantized);
        CHECK(next ? q > want && q <= want + 8 : q == want,
              "%s: streamed up to %s: quantized %llu, %llu read (prefetch across tensors)",
              vf->name, t->name, (unsigned long long)q, (unsigned long long)want);
        qfs_prefetch_stop(pf);
        qfs_cache_close(c1);
    }

    /* 3. Four concurrent sequential readers (different steps), prefetch on. */
    enum { NR = 4 };
    if (qfs_cache_open(NULL, 256u << 20, &c1) < 0 || qfs_prefetch_start(c1, 3, 6, &pf) < 0)
        abort();
    reset_stats(n->stats);
    struct conc_reader r[NR];
    pthread_t th[NR];
    const size_t steps[NR] = {4096, 65536, 131072, 1 << 20};
    for (int i = 0; i < NR; i++) {
        r[i] = (struct conc_reader){{c1, n->stats, pf, i % 2 == 1}, vf, steps[i], malloc(size), -1};
        if (!r[i].buf)
            abort();
        pthread_create(&th[i], NULL, conc_main, &r[i]);
    }
    for (int i = 0; i < NR; i++) {
        pthread_join(th[i], NULL);
        CHECK(r[i].rc == 0 && !memcmp(r[i].buf, ref, size), "%s: concurrent reader %d",
              vf->name, i);
        free(r[i].buf);
    }
    qfs_prefetch_wait_idle(pf);
    q = atomic_load(&n->stats->chunks_quantized);
    CHECK(q == distinct, "%s: concurrent: quantized %llu of %llu", vf->name,
          (unsigned long long)q, (unsigned long long)distinct);
    /* Stopping with work queued is clean: queued jobs are dropped. */
    qfs_prefetch_after(pf, vf, &vf->tensors[0], 0, false, n->stats);
    qfs_prefetch_after(pf, vf, &vf->tensors[vf->n_tensors - 1], 0, true, n->stats);
    qfs_prefetch_stop(pf);
    qfs_cache_close(c1);
    reset_stats(n->stats);
    free(ref);
    free(got);
}

/* <m>.awq/ of model directory m: config.json (header only), model.safetensors (the AWQ
 * file itself, its counters), the tokenizer and generation files passed through; its
 * entries keep their inode numbers in a rebuild of an unchanged source. */
static void test_awq_dir(struct qfs_ns *ns, struct qfs_cache *cache, const struct qfs_node *m)
{
    const struct qfs_node *d = NULL, *cfg = NULL, *wts = NULL, *awq = NULL, *tok = NULL, *x;
    CHECK(qfs_ns_lookup(ns, m, "m.awq", &d) == 0 && d->kind == QFS_NODE_DIR &&
              d->dir == QFS_DIR_VIRT && d->model == m->model && !d->relpath,
          "m.awq is the virtual AWQ directory");
    CHECK(qfs_ns_lookup(ns, m, "m.awq.safetensors", &awq) == 0 && awq->kind == QFS_NODE_VFILE,
          "m.awq.safetensors");
    if (!d || !awq)
        return;
    const char *want[] = {"config.json", "generation_config.json", "model.safetensors",
                          "tokenizer.model", "tokenizer_config.json"};
    CHECK(d->n_children == 5, "m.awq/ has %u entries", d->n_children);
    for (uint32_t i = 0; i < d->n_children && i < 5; i++)
        CHECK(!strcmp(ns->nodes[d->first_child + i].name, want[i]), "m.awq/ entry %u: %s", i,
              ns->nodes[d->first_child + i].name);
    CHECK(qfs_ns_lookup(ns, d, "config.json", &cfg) == 0 && cfg->kind == QFS_NODE_VFILE &&
              !cfg->vf->listed && !cfg->vf->variant && cfg->vf->n_tensors == 0 && cfg->stats &&
              cfg->stats != awq->stats && (uint64_t)cfg->st.st_size == cfg->vf->size,
          "m.awq/config.json: the header-only file");
    CHECK(qfs_ns_lookup(ns, d, "model.safetensors", &wts) == 0 && wts->vf == awq->vf &&
              wts->stats == awq->stats && wts->st.st_size == awq->st.st_size &&
              wts->st.st_ino != awq->st.st_ino,
          "m.awq/model.safetensors: the AWQ file, its counters, its own inode");
    CHECK(qfs_ns_lookup(ns, d, "tokenizer.model", &tok) == 0 && tok->kind == QFS_NODE_FILE &&
              tok->relpath && !strcmp(tok->relpath, "m/tokenizer.model"),
          "m.awq/tokenizer.model: passed through");
    CHECK(qfs_ns_lookup(ns, d, "m.Q8_0.gguf", &x) == -ENOENT, "m.awq/ has no GGUF file");
    if (cfg) {
        check_file(cache, cfg);
        char *text = malloc(cfg->vf->size + 1);
        struct qfs_read_ctx ctx = {.cache = cache, .stats = cfg->stats};
        CHECK(text && qfs_read_vfile(&ctx, cfg->vf, 0, cfg->vf->size, (uint8_t *)text) ==
                          (ssize_t)cfg->vf->size,
              "config.json read");
        if (text) {
            text[cfg->vf->size] = '\0';
            CHECK(strstr(text, "\"quantization_config\"") && strstr(text, "\"awq\""),
                  "config.json has quantization_config");
        }
        free(text);
    }
    if (tok) {
        int fd = qfs_ns_open_file(ns, tok);
        CHECK(fd >= 0, "open m.awq/tokenizer.model: %s", strerror(fd < 0 ? -fd : 0));
        if (fd >= 0)
            close(fd);
    }
    /* An unchanged source: the same numbers, nothing to invalidate. */
    struct qfs_ns *next = NULL;
    int rc = qfs_ns_rebuild(ns, NULL, &next);
    CHECK(rc == 0, "rebuild: %s", strerror(-rc));
    if (rc)
        return;
    const struct qfs_node *nroot = qfs_ns_node(next, 1), *nm = NULL, *nd = NULL;
    CHECK(nroot && qfs_ns_lookup(next, nroot, "m", &nm) == 0 &&
              qfs_ns_lookup(next, nm, "m.awq", &nd) == 0 && nd->st.st_ino == d->st.st_ino &&
              nd->n_children == d->n_children,
          "rebuild: m.awq/ keeps its number");
    for (uint32_t i = 0; nd && i < nd->n_children && i < d->n_children; i++)
        CHECK(next->nodes[nd->first_child + i].st.st_ino == ns->nodes[d->first_child + i].st.st_ino,
              "rebuild: m.awq/%s keeps its number", ns->nodes[d->first_child + i].name);
    unsigned calls = qfs_ns_diff(ns, next, &(struct qfs_ns_diff_cb){diff_entry, diff_dir, NULL});
    CHECK(calls == 0, "rebuild: %u differences", calls);
    qfs_ns_destroy(next);
}

/* A model whose tensors span several 1 MiB chunks, read with prefetch on. */
static void test_prefetch(const char *genmodel, const char *top)
{
    char cmd[8192], dir[2048];
    snprintf(dir, sizeof dir, "%.2000s/pf", top);
    mkdir(dir, 0755);
    snprintf(cmd, sizeof cmd,
             "'%s' --out '%s/m' --layers 1 --hidden 256 --heads 4 --kv-heads 2 --ff 1536 "
             "--vocab 6000 --seed 5 >/dev/null", genmodel, dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "FAIL: %s\n", cmd);
        fails++;
        return;
    }
    struct qfs_ns *ns = NULL;
    int rc = qfs_ns_build(dir, NULL, &ns);
    CHECK(rc == 0, "prefetch model: qfs_ns_build: %s", strerror(-rc));
    if (rc)
        return;
    const struct qfs_node *root = qfs_ns_node(ns, 1), *m = NULL;
    CHECK(qfs_ns_lookup(ns, root, "m", &m) == 0 && m->model, "prefetch model: lookup m");
    int nv = 0, multi = 0;
    for (uint32_t i = 0; m && i < m->n_children; i++) {
        const struct qfs_node *n = &ns->nodes[m->first_child + i];
        if (n->kind != QFS_NODE_VFILE)
            continue;
        for (int j = 0; j < n->vf->n_tensors; j++)
            multi += n->vf->tensors[j].n_chunks > 1;
        check_prefetch_file(n);
        nv++;
    }
    CHECK(nv > 0 && multi > 0, "prefetch model: %d files, %d multi-chunk tensors", nv, multi);
    printf("%d virtual files checked with prefetch (%d multi-chunk tensors)\n", nv, multi);
    qfs_ns_destroy(ns);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s QFS_GENMODEL\n", argv[0]);
        return 2;
    }
    char tmpl[] = "/tmp/qfs-test-read.XXXXXX", cmd[4096];
    if (!mkdtemp(tmpl))
        return 1;
    snprintf(cmd, sizeof cmd, "'%s' --out '%s/m' --layers 2 --hidden 64 >/dev/null", argv[1], tmpl);
    if (system(cmd) != 0) {
        fprintf(stderr, "FAIL: %s\n", cmd);
        return 1;
    }
    snprintf(cmd, sizeof cmd, "%s/plain", tmpl);
    mkdir(cmd, 0755);

    struct qfs_ns *ns = NULL;
    struct qfs_cache *cache = NULL;
    int rc = qfs_ns_build(tmpl, NULL, &ns);
    CHECK(rc == 0, "qfs_ns_build: %s", strerror(-rc));
    if (rc)
        goto out;
    CHECK(ns->n_models == 1, "models: %d", ns->n_models);
    CHECK(ns->n_skips == 1, "skipped: %d", ns->n_skips);
    const struct qfs_node *root = qfs_ns_node(ns, 1), *m = NULL, *st = NULL, *x = NULL;
    CHECK(root && root->kind == QFS_NODE_DIR, "root");
    CHECK(qfs_ns_lookup(ns, root, "m", &m) == 0 && m->model, "lookup m");
    CHECK(qfs_ns_lookup(ns, root, "nope", &x) == -ENOENT, "negative lookup");
    CHECK(qfs_ns_lookup(ns, root, ".quantfs", &x) == 0 &&
              qfs_ns_lookup(ns, x, "status", &st) == 0 && st->kind == QFS_NODE_STATUS,
          "/.quantfs/status");
    CHECK(qfs_ns_node(ns, 0) == NULL && qfs_ns_node(ns, ns->n_nodes + 1) == NULL, "ino range");
    rc = qfs_cache_open(NULL, 64u << 20, &cache);
    CHECK(rc == 0, "qfs_cache_open: %s", strerror(-rc));
    if (rc || !m)
        goto out;
    int nv = 0;
    for (uint32_t i = 0; i < m->n_children; i++) {
        const struct qfs_node *n = &ns->nodes[m->first_child + i], *back = NULL;
        CHECK(qfs_ns_node(ns, qfs_ns_ino(ns, n)) == n, "ino round trip");
        CHECK(qfs_ns_lookup(ns, m, n->name, &back) == 0 && back == n, "lookup %s", n->name);
        if (i > 0)
            CHECK(strcmp(ns->nodes[m->first_child + i - 1].name, n->name) < 0, "sorted");
        if (n->kind != QFS_NODE_VFILE)
            continue;
        CHECK((uint64_t)n->st.st_size == n->vf->size, "%s: st_size", n->name);
        check_file(cache, n);
        nv++;
    }
    CHECK(nv > 0, "no virtual files");
    test_awq_dir(ns, cache, m);
    struct qfs_status_info info = {.mountpoint = "/mnt", .cache_dir = NULL};
    char *text = NULL;
    size_t len = 0;
    CHECK(qfs_status_render(ns, cache, &info, &text, &len) == 0 && len == strlen(text),
          "status render");
    CHECK(text && strstr(text, "\"chunks_quantized\""), "status content");
    CHECK(text && strstr(text, "\"m.awq.safetensors\"") && !strstr(text, "\"config.json\"") &&
              !strstr(text, "\"model.safetensors\"") && strstr(text, "\"awq_group\": 128"),
          "status: the model directory's virtual files only");
    free(text);
    printf("%d virtual files checked\n", nv);
    test_prefetch(argv[1], tmpl);
out:
    qfs_cache_close(cache);
    qfs_ns_destroy(ns);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpl);
    if (system(cmd) != 0)
        fails++;
    if (fails)
        fprintf(stderr, "%d failures\n", fails);
    return fails ? 1 : 0;
}
