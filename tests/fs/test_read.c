/* The FUSE-free front: build a namespace over a generated model, then check that
 * qfs_read_vfile gives the same bytes at any offset and length as one full read. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cache/cache.h"
#include "codecs/vfile.h"
#include "fs/namespace.h"
#include "fs/read.h"
#include "fs/status.h"

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
    CHECK(size >= 4 && !memcmp(full, "GGUF", 4), "%s: no GGUF magic", vf->name);
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
    int rc = qfs_ns_build(tmpl, &ns);
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
    struct qfs_status_info info = {.mountpoint = "/mnt", .cache_dir = NULL};
    char *text = NULL;
    size_t len = 0;
    CHECK(qfs_status_render(ns, cache, &info, &text, &len) == 0 && len == strlen(text),
          "status render");
    CHECK(text && strstr(text, "\"chunks_quantized\""), "status content");
    free(text);
    printf("%d virtual files checked\n", nv);
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
