/* GGUF virtual files: tensor naming, the per-tensor type plan of each output type and
 * the byte layout.  Metadata only: no tensor data is read here. */
#include "gguf_file.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../../util/log.h"
#include "gguf_plan.h"
#include "../format.h"

extern const struct qfs_format qfs_format_gguf;

/* Output chunks of about this many bytes: big enough to amortize a cache entry, small
 * enough that a reader touching one page waits little.  Part of the chunk keys. */
#define CHUNK_TARGET (1u << 20)

static uint64_t align_up(uint64_t x) { return (x + QFS_GGUF_ALIGN - 1) / QFS_GGUF_ALIGN * QFS_GGUF_ALIGN; }

/* The tensors cmp_quant_order sorts indices of (qsort has no context argument; builds of
 * one model's files run on one thread, and the comparison reads only names). */
static _Thread_local const struct qfs_arch_tensors *sort_gt;

static int block_of(const char *name)
{
    if (strncmp(name, "blk.", 4) != 0)
        return -1;
    return atoi(name + 4);
}

/* llama-quantize writes non-block tensors first, then block by block, by name within. */
static int cmp_quant_order(const void *a, const void *b)
{
    const struct qfs_mtensor *x = &sort_gt->t[*(const int *)a], *y = &sort_gt->t[*(const int *)b];
    int bx = block_of(x->name), by = block_of(y->name);
    if (bx != by)
        return bx < by ? -1 : 1;
    return strcmp(x->name, y->name);
}

static void put(uint8_t **p, const void *src, size_t n)
{
    memcpy(*p, src, n);
    *p += n;
}

static void put_u32(uint8_t **p, uint32_t v) { put(p, &v, 4); }
static void put_u64(uint8_t **p, uint64_t v) { put(p, &v, 8); }

/* The keys llama-quantize's tool records about the imatrix.  The file is recorded by its
 * name, not the path llama-quantize was given: the bytes must not depend on where the
 * source is mounted. */
static int imatrix_metadata(struct qfs_kvs *kv, const struct qfs_imatrix *im)
{
    int rc = qfs_kvs_set_str(kv, "quantize.imatrix.file", im->file_name);
    if (rc == 0 && im->dataset)
        rc = qfs_kvs_set_str(kv, "quantize.imatrix.dataset", im->dataset);
    if (rc == 0)
        rc = qfs_kvs_set_u32(kv, "quantize.imatrix.entries_count", (uint32_t)im->n_entries);
    if (rc == 0 && im->chunk_count > 0)
        rc = qfs_kvs_set_u32(kv, "quantize.imatrix.chunks_count", (uint32_t)im->chunk_count);
    return rc;
}

int qfs_gguf_build(const struct qfs_model *m, const char *type_name, struct qfs_vfile **out)
{
    const struct qfs_gguf_mix *mix = qfs_gguf_mix_find(type_name);
    if (!mix)
        return -EINVAL;

    int rc = -ENOMEM;
    struct qfs_kvs *kv = NULL, *tail = NULL;
    int *order = NULL;
    struct qfs_vfile *vf = calloc(1, sizeof *vf);
    if (!vf)
        return -ENOMEM;
    vf->fmt = &qfs_format_gguf;
    vf->codec_version = QFS_GGUF_CODEC_VERSION;
    vf->cache_codec = QFS_CODEC_GGUF;
    if (asprintf(&vf->name, "%s.%s.gguf", m->name, mix->name) < 0) {
        vf->name = NULL;
        goto fail;
    }
    if (!(vf->variant = strdup(mix->name)))
        goto fail;
    vf->tensors = calloc((size_t)m->gt.n + 1, sizeof *vf->tensors);
    order = malloc(((size_t)m->gt.n + 1) * sizeof *order);
    if (!vf->tensors || !order)
        goto fail;

    /* llama-quantize works on the converter's F16 file (its BF16 file for a BF16 source:
     * we quantize the exact values, which that path keeps); tensors it does not quantize
     * keep the type they have there. */
    const struct qfs_hf_config *c = &m->cfg;
    const struct qfs_mtensor *embd = NULL;
    for (int i = 0; i < m->gt.n && !embd; i++)
        if (!strcmp(m->gt.t[i].name, "token_embd.weight"))
            embd = &m->gt.t[i];
    const enum qfs_type stored =
        mix->converter ? mix->base
        : embd && embd->src.dtype == QFS_DT_BF16 ? QFS_TYPE_BF16 : QFS_TYPE_F16;
    /* The converter's order, or llama-quantize's (blocks in order, names within). */
    for (int i = 0; i < m->gt.n; i++)
        order[i] = i;
    if (!mix->converter) {
        sort_gt = &m->gt;
        qsort(order, (size_t)m->gt.n, sizeof *order, cmp_quant_order);
    }
    for (int i = 0; i < m->gt.n; i++) {
        const struct qfs_mtensor *mt = &m->gt.t[order[i]];
        struct qfs_vtensor *t = &vf->tensors[vf->n_tensors++];
        if (!(t->name = strdup(mt->name)))
            goto fail;
        t->vs = &mt->src;
        t->n_dims = mt->n_dims;
        memcpy(t->ne, mt->ne, sizeof t->ne);
        t->nrows = 1;
        for (int d = 1; d < 4; d++)
            t->nrows *= t->ne[d];
        t->row_elems = t->ne[0];
        t->group_rows = mt->src.rows;
        t->type = mt->f32 ? QFS_TYPE_F32 : stored; /* the plan may change it */
    }

    int64_t n_expert = 0;
    for (int i = 0; i < m->gt.n; i++)
        if (m->gt.t[i].src.n > 1)
            n_expert = m->gt.t[i].src.n;
    const struct qfs_arch *a = c->arch;
    const struct qfs_plan_model pm = {
        .n_layers = c->n_layers,
        .n_head = c->n_heads,
        .n_head_kv = c->n_kv_heads,
        .n_expert = n_expert,
        .is_70b = a->layers_70b && c->n_layers == a->layers_70b &&
                  (!a->need_gqa_70b || c->n_heads != c->n_kv_heads),
        .has_imatrix = m->imatrix != NULL,
    };
    const char *why = NULL;
    if (!mix->converter && (rc = qfs_gguf_plan(mix, &pm, vf->tensors, vf->n_tensors, &why)) < 0) {
        qfs_info("%s: not offering %s: %s (llama-quantize refuses it too)", m->dir, mix->name,
                 why ? why : strerror(-rc));
        goto fail;
    }

    /* llama-quantize passes the importance weights to the tensors it quantizes (type changed
     * from the F16 file's), when the imatrix has an entry for them. */
    for (int i = 0; i < vf->n_tensors && m->imatrix && !mix->converter; i++) {
        struct qfs_vtensor *t = &vf->tensors[i];
        const enum qfs_type was = m->gt.t[order[i]].f32 ? QFS_TYPE_F32 : stored;
        const int64_t groups = t->nrows / t->group_rows;
        const struct qfs_imatrix_entry *e = qfs_imatrix_find(m->imatrix, t->name);
        if (t->type != was && e && e->n == t->row_elems * (t->n_dims > 2 ? groups : 1)) {
            t->imatrix = e->values;
            qfs_hash128(e->values, (size_t)e->n * sizeof *e->values, &t->imatrix_hash);
        }
    }

    /* The metadata: the model's keys (kv, a copy of m->kv, edited), its tokenizer keys
     * (m->tok_kv, shared), then this file's (tail): what one list with these edits would
     * hold, a key set anew going to the end. */
    rc = -ENOMEM;
    kv = qfs_kvs_dup(m->kv);
    tail = qfs_kvs_new();
    if (!kv || !tail)
        goto fail;
    if (mix->converter) {
        if ((rc = qfs_kvs_set_u32(qfs_kvs_has(kv, "general.file_type") ? kv : tail,
                                  "general.file_type", mix->file_type)) < 0)
            goto fail;
    } else {
        /* llama-quantize re-sets these two, which moves them to the end */
        qfs_kvs_remove(kv, "general.quantization_version");
        qfs_kvs_remove(kv, "general.file_type");
        if ((rc = qfs_kvs_set_u32(tail, "general.quantization_version", 2)) < 0 ||
            (rc = qfs_kvs_set_u32(tail, "general.file_type", mix->file_type)) < 0)
            goto fail;
        if (m->imatrix && (rc = imatrix_metadata(tail, m->imatrix)) < 0)
            goto fail;
    }

    /* Sizes, offsets, chunks. */
    uint64_t info_bytes = 0, data = 0;
    for (int i = 0; i < vf->n_tensors; i++) {
        struct qfs_vtensor *t = &vf->tensors[i];
        t->row_bytes = qfs_row_size(t->type, t->row_elems);
        if (t->row_bytes == 0) {
            qfs_err("%s: tensor %s: rows of %" PRId64 " cannot be stored as %s", m->dir, t->name,
                    t->row_elems, qfs_type_info(t->type) ? qfs_type_info(t->type)->name : "?");
            rc = -ENOTSUP;
            goto fail;
        }
        t->nbytes = t->row_bytes * (uint64_t)t->nrows;
        t->offset = data; /* relative for now */
        data = align_up(data + t->nbytes);
        qfs_vtensor_set_chunks(t, (int64_t)(CHUNK_TARGET / t->row_bytes));
        info_bytes += 8 + strlen(t->name) + 4 + 8 * (uint64_t)t->n_dims + 4 + 8;
    }
    const size_t kv_bytes = qfs_kvs_serialize(kv, NULL), tail_bytes = qfs_kvs_serialize(tail, NULL);
    const uint64_t head_used = 4 + 4 + 8 + 8 + kv_bytes + m->tok_kv_len + tail_bytes + info_bytes;
    vf->head_len = align_up(head_used);
    vf->size = vf->head_len + data;
    vf->head_shared = m->tok_kv;
    vf->head_shared_at = 4 + 4 + 8 + 8 + kv_bytes;
    vf->head_shared_len = m->tok_kv_len;
    vf->head = calloc(1, vf->head_len - m->tok_kv_len);
    if (!vf->head) {
        rc = -ENOMEM;
        goto fail;
    }
    uint8_t *p = vf->head;
    put(&p, "GGUF", 4);
    put_u32(&p, 3);
    put_u64(&p, (uint64_t)vf->n_tensors);
    put_u64(&p, qfs_kvs_count(kv) + m->tok_kv_count + qfs_kvs_count(tail));
    p += qfs_kvs_serialize(kv, p);
    /* (the shared tokenizer keys come here) */
    p += qfs_kvs_serialize(tail, p);
    for (int i = 0; i < vf->n_tensors; i++) {
        struct qfs_vtensor *t = &vf->tensors[i];
        put_u64(&p, strlen(t->name));
        put(&p, t->name, strlen(t->name));
        put_u32(&p, (uint32_t)t->n_dims);
        for (int d = 0; d < t->n_dims; d++)
            put_u64(&p, (uint64_t)t->ne[d]);
        put_u32(&p, (uint32_t)t->type);
        put_u64(&p, t->offset);
        t->offset += vf->head_len;
    }
    qfs_kvs_free(kv);
    qfs_kvs_free(tail);
    free(order);
    *out = vf;
    return 0;
fail:
    qfs_kvs_free(kv);
    qfs_kvs_free(tail);
    free(order);
    qfs_vfile_free(vf);
    return rc;
}

/* One <model>.<TYPE>.gguf per mix llama-quantize would accept (the imatrix-only ones with an
 * importance matrix).  0 or -ENOMEM. */
static int gguf_offer(struct qfs_model *m, int group)
{
    (void)group;
    for (int i = 0; i < qfs_gguf_n_mixes; i++) {
        struct qfs_vfile *vf;
        if (qfs_gguf_mixes[i].imatrix_only && !m->imatrix)
            continue; /* offered with an importance matrix only */
        int rc = qfs_gguf_build(m, qfs_gguf_mixes[i].name, &vf);
        if (rc == -ENOMEM)
            return rc;
        if (rc < 0)
            continue; /* this type only; logged */
        if ((rc = qfs_model_add_file(m, vf, true)) < 0)
            return rc;
    }
    return 0;
}

static bool gguf_variant_ok(const char *name, size_t n)
{
    for (int i = 0; i < qfs_gguf_n_mixes; i++)
        if (strlen(qfs_gguf_mixes[i].name) == n && !strncmp(qfs_gguf_mixes[i].name, name, n))
            return true;
    return false;
}

const struct qfs_format qfs_format_gguf = {
    .name = "gguf",
    .what = "<model>.<TYPE>.gguf, every type llama-quantize accepts (llama.cpp, Ollama)",
    .cache_codec = QFS_CODEC_GGUF,
    .version = QFS_GGUF_CODEC_VERSION,
    .default_on = true,
    .offer = gguf_offer,
    .variant_ok = gguf_variant_ok,
    .variants = "F32, F16, BF16, Q8_0, Q6_K, Q4_K_M, ... (the GGUF types)",
};
