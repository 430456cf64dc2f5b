/* GGUF virtual files: tensor naming, the per-tensor type plan of each output type and
 * the byte layout.  Metadata only: no tensor data is read here. */
#include "gguf_file.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../util/log.h"
#include "gguf_plan.h"

/* Output chunks of about this many bytes: big enough to amortize a cache entry, small
 * enough that a reader touching one page waits little.  Part of the chunk keys. */
#define CHUNK_TARGET (1u << 20)

static const struct {
    const char *hf, *gguf;
} top_names[] = {
    {"model.embed_tokens.weight", "token_embd.weight"},
    {"model.norm.weight", "output_norm.weight"},
    {"lm_head.weight", "output.weight"},
};

static const struct {
    const char *hf, *gguf;
} block_names[] = {
    {"input_layernorm.weight", "attn_norm.weight"},
    {"post_attention_layernorm.weight", "ffn_norm.weight"},
    {"self_attn.q_proj.weight", "attn_q.weight"},
    {"self_attn.k_proj.weight", "attn_k.weight"},
    {"self_attn.v_proj.weight", "attn_v.weight"},
    {"self_attn.o_proj.weight", "attn_output.weight"},
    {"self_attn.q_proj.bias", "attn_q.bias"},
    {"self_attn.k_proj.bias", "attn_k.bias"},
    {"self_attn.v_proj.bias", "attn_v.bias"},
    {"mlp.gate_proj.weight", "ffn_gate.weight"},
    {"mlp.up_proj.weight", "ffn_up.weight"},
    {"mlp.down_proj.weight", "ffn_down.weight"},
};

char *qfs_gguf_tensor_name(const char *hf, int *skip)
{
    *skip = 0;
    size_t n = strlen(hf);
    if (n >= 20 && strcmp(hf + n - 20, "rotary_emb.inv_freq") == 0) {
        *skip = 1;
        return NULL;
    }
    for (size_t i = 0; i < sizeof top_names / sizeof top_names[0]; i++)
        if (strcmp(hf, top_names[i].hf) == 0)
            return strdup(top_names[i].gguf);
    const char *pre = "model.layers.";
    if (strncmp(hf, pre, strlen(pre)) != 0)
        return NULL;
    const char *p = hf + strlen(pre);
    char *end;
    if (*p < '0' || *p > '9')
        return NULL;
    unsigned long layer = strtoul(p, &end, 10);
    if (*end != '.' || layer > 1000000)
        return NULL;
    for (size_t i = 0; i < sizeof block_names / sizeof block_names[0]; i++) {
        if (strcmp(end + 1, block_names[i].hf) == 0) {
            char *out = NULL;
            if (asprintf(&out, "blk.%lu.%s", layer, block_names[i].gguf) < 0)
                return NULL;
            return out;
        }
    }
    return NULL;
}

static uint64_t align_up(uint64_t x) { return (x + QFS_GGUF_ALIGN - 1) / QFS_GGUF_ALIGN * QFS_GGUF_ALIGN; }

static int ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

static int block_of(const char *name)
{
    if (strncmp(name, "blk.", 4) != 0)
        return -1;
    return atoi(name + 4);
}

/* llama-quantize writes non-block tensors first, then block by block, by name within. */
static int cmp_quant_order(const void *a, const void *b)
{
    const struct qfs_vtensor *x = a, *y = b;
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
    struct qfs_kvs *kv = NULL;
    struct qfs_vfile *vf = calloc(1, sizeof *vf);
    if (!vf)
        return -ENOMEM;
    vf->codec_version = QFS_GGUF_CODEC_VERSION;
    if (asprintf(&vf->name, "%s.%s.gguf", m->name, mix->name) < 0) {
        vf->name = NULL;
        goto fail;
    }
    vf->tensors = calloc((size_t)m->st->n_tensors, sizeof *vf->tensors);
    if (!vf->tensors)
        goto fail;

    const struct qfs_hf_config *c = &m->cfg;
    const int permute = c->arch == QFS_ARCH_LLAMA || c->arch == QFS_ARCH_MISTRAL;
    for (int i = 0; i < m->st->n_tensors; i++) {
        const struct qfs_st_tensor *s = &m->st->tensors[i];
        int skip;
        char *name = qfs_gguf_tensor_name(s->name, &skip);
        if (!name) {
            if (skip)
                continue;
            qfs_err("%s: tensor %s has no GGUF name for %s", m->dir, s->name, c->arch_name);
            rc = -ENOTSUP;
            goto fail;
        }
        struct qfs_vtensor *t = &vf->tensors[vf->n_tensors++];
        t->name = name;
        t->src = s;
        t->memo = &m->memos[i];
        if (s->n_dims < 1 || s->n_dims > 4) {
            qfs_err("%s: tensor %s has %d dimensions", m->dir, s->name, s->n_dims);
            rc = -EINVAL;
            goto fail;
        }
        t->n_dims = s->n_dims;
        t->nrows = 1;
        for (int d = 0; d < 4; d++)
            t->ne[d] = d < s->n_dims ? s->shape[s->n_dims - 1 - d] : 1;
        for (int d = 1; d < 4; d++)
            t->nrows *= t->ne[d];
        t->row_elems = t->ne[0];
        if (permute && (ends_with(name, "attn_q.weight") || ends_with(name, "attn_k.weight"))) {
            t->xform = QFS_XF_PERMUTE_QK;
            t->xform_heads = ends_with(name, "attn_q.weight") ? c->n_heads : c->n_kv_heads;
            if (t->n_dims != 2 || t->xform_heads <= 0 || t->nrows % (2 * t->xform_heads) != 0) {
                qfs_err("%s: tensor %s: %" PRId64 " rows cannot be permuted for %" PRId64 " heads",
                        m->dir, s->name, t->nrows, t->xform_heads);
                rc = -EINVAL;
                goto fail;
            }
        } else if (permute && (ends_with(name, "attn_q.bias") || ends_with(name, "attn_k.bias"))) {
            qfs_err("%s: tensor %s: q/k biases of llama models are not supported", m->dir, s->name);
            rc = -ENOTSUP;
            goto fail;
        }
    }

    /* Types: the converter's, or llama-quantize's plan over the converter's F16 file in
     * llama-quantize's tensor order. */
    if (!mix->converter)
        qsort(vf->tensors, (size_t)vf->n_tensors, sizeof *vf->tensors, cmp_quant_order);
    const struct qfs_plan_model pm = {
        .n_layers = c->n_layers,
        .n_head = c->n_heads,
        .n_head_kv = c->n_kv_heads,
        .is_70b = permute && c->n_layers == 80 && c->n_heads != c->n_kv_heads,
        .has_imatrix = m->imatrix != NULL,
    };
    const char *why = NULL;
    if ((rc = qfs_gguf_plan(mix, &pm, vf->tensors, vf->n_tensors, &why)) < 0) {
        qfs_info("%s: not offering %s: %s (llama-quantize refuses it too)", m->dir, mix->name,
                 why ? why : strerror(-rc));
        goto fail;
    }

    /* llama-quantize passes the importance weights to the tensors it quantizes (type changed
     * from the F16 file's), when the imatrix has an entry for them. */
    for (int i = 0; i < vf->n_tensors && m->imatrix && !mix->converter; i++) {
        struct qfs_vtensor *t = &vf->tensors[i];
        const enum qfs_type stored = t->n_dims <= 1 ? QFS_TYPE_F32 : QFS_TYPE_F16;
        const struct qfs_imatrix_entry *e = qfs_imatrix_find(m->imatrix, t->name);
        if (t->type != stored && e && e->n == t->row_elems) {
            t->imatrix = e->values;
            qfs_hash128(e->values, (size_t)e->n * sizeof *e->values, &t->imatrix_hash);
        }
    }

    kv = qfs_kvs_dup(m->kv);
    if (!kv)
        goto fail;
    if (mix->converter) {
        if ((rc = qfs_kvs_set_u32(kv, "general.file_type", mix->file_type)) < 0)
            goto fail;
    } else {
        /* llama-quantize re-sets these two, which moves them to the end */
        qfs_kvs_remove(kv, "general.quantization_version");
        qfs_kvs_remove(kv, "general.file_type");
        if ((rc = qfs_kvs_set_u32(kv, "general.quantization_version", 2)) < 0 ||
            (rc = qfs_kvs_set_u32(kv, "general.file_type", mix->file_type)) < 0)
            goto fail;
        if (m->imatrix && (rc = imatrix_metadata(kv, m->imatrix)) < 0)
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
        t->rows_per_chunk = (int64_t)(CHUNK_TARGET / t->row_bytes);
        if (t->rows_per_chunk < 1)
            t->rows_per_chunk = 1;
        t->n_chunks = (t->nrows + t->rows_per_chunk - 1) / t->rows_per_chunk;
        info_bytes += 8 + strlen(t->name) + 4 + 8 * (uint64_t)t->n_dims + 4 + 8;
    }
    const size_t kv_bytes = qfs_kvs_serialize(kv, NULL);
    const uint64_t head_used = 4 + 4 + 8 + 8 + kv_bytes + info_bytes;
    vf->head_len = align_up(head_used);
    vf->size = vf->head_len + data;
    vf->head = calloc(1, vf->head_len);
    if (!vf->head)
        goto fail;
    uint8_t *p = vf->head;
    put(&p, "GGUF", 4);
    put_u32(&p, 3);
    put_u64(&p, (uint64_t)vf->n_tensors);
    put_u64(&p, qfs_kvs_count(kv));
    p += qfs_kvs_serialize(kv, p);
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
    *out = vf;
    return 0;
fail:
    qfs_kvs_free(kv);
    qfs_vfile_free(vf);
    return rc;
}
