/* AWQ safetensors output (codecs/awq.c), checked from the outside and through the file as
 * a user reads it: every chunk of <model>.awq.safetensors is produced, the bytes are
 * written to a file and opened with qfs_st_open_file(QFS_ST_ALLOW_I32), so that the
 * reader's validation (dtypes, shapes, offsets, overlaps, truncation) is part of the test,
 * and everything below reads the tensors the reader returns:
 *   - header rules the reader does not enforce (sorted keys, 8-byte alignment, data back
 *     to back, __metadata__), parsed here with jansson, not with the codec's code;
 *   - the inventory: a decoder linear with in % g == 0 and out % 8 == 0 is exactly
 *     .qweight I32 [in, out/8], .qzeros I32 [in/g, out/8], .scales F16 [in/g, out]; any
 *     other decoder linear stays F16 under .weight and is listed in modules_to_not_convert
 *     of qfs_awq_config_json; every other tensor is F16 under its own name; nothing else;
 *   - a dequantizer written here from the format description (AutoAWQ GEMM: nibble i of
 *     word c is output column 8c + {0,2,4,6,1,3,5,7}[i]; w = (q - zero) * scale) and,
 *     element by element against the source weights:
 *       round-to-nearest (no importance matrix): every element within half a step of its
 *       group (plus the stretch the fp16 rounding of the scale gives the top of the
 *       range), every scale finite, > 0 and the fp16 rounding of the group's
 *       (max - min) / 15, every zero point clamp(-rint(min / scale), 0, 15), every other
 *       tensor the source's F16;
 *       activation-aware (with an importance matrix): the folding preserves the function.
 *       q/k/v read input_layernorm', so input_layernorm'[j] * W'[o][j] must equal
 *       input_layernorm[j] * W[o][j] within the group's bound times input_layernorm'[j];
 *       likewise post_attention_layernorm with gate/up.  v's rows carry 1/s of the v -> o
 *       group (when v and o have the same shape) and o's columns s; up's rows and down's
 *       columns likewise: for each channel c the test finds every factor s[c] for which
 *       the elements on the inner levels 2..13 of their groups (never clipped) are within
 *       their bounds, on v's row c and o's column c together, requires that set to be a
 *       non-empty interval, and then checks all elements with a factor from it.  The
 *       codec does not clip (its fit keeps each group's range): every element must be
 *       within half a step (the checker can tell clipped extremes, counted and then
 *       failed, from errors).  Linears kept F16 are checked the same way, within the fp16
 *       rounding.  The embeddings, the final
 *       norm and lm_head are the source's F16.
 *     Every scale is finite and > 0.  (Nibbles and zero points are 4-bit fields: 0..15
 *     by construction; what they encode is checked through the bounds.)
 *   - the same file as a model directory is refused by qfs_st_open (-ENOTSUP, I32);
 *   - the nibble order on a hand-made tensor (known values -> known words);
 *   - activation-aware bytes are deterministic and independent of chunk order/threads,
 *     keys depend on what they must.
 * Models: synthetic ones from qfs-genmodel (argv[1]; one with kv heads = heads, so the
 * v -> o pair is scaled, and one with grouped-query attention; linears whose in_features
 * is not a multiple of the group size), and the shared tinyllama-256 with llama.cpp's
 * importance matrix when QFS_SHARED has it.
 * Usage: test_awq QFS-GENMODEL
 *        test_awq dump MODEL_DIR GROUP IMATRIX|- OUT.safetensors [CONFIG_OUT]
 *        (writes the virtual file and its config.json, for experiments) */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>

#include "../../codecs/awq/awq.h"
#include "../../codecs/source/model.h"
#include "../../codecs/source/safetensors.h"
#include "testutil.h"

/* ---- helpers ---- */

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        perror("malloc");
        exit(1);
    }
    return p;
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) {
        perror("calloc");
        exit(1);
    }
    return p;
}

static uint8_t *vfile_bytes(const struct qfs_vfile *vf)
{
    uint8_t *b = xcalloc(1, vf->size + 1);
    qfs_vfile_head_read(vf, 0, vf->head_len, b);
    for (int i = 0; i < vf->n_tensors; i++) {
        const struct qfs_vtensor *t = &vf->tensors[i];
        uint64_t off = t->offset;
        for (int64_t c = 0; c < t->n_chunks; c++) {
            int rc = qfs_vtensor_produce(t, c, b + off);
            CHECK(rc == 0);
            off += qfs_vtensor_chunk_bytes(t, c);
        }
        CHECK(off == t->offset + t->nbytes);
    }
    return b;
}

static void write_file(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

static float h2f(uint16_t h)
{
    /* IEEE half -> float, written here (independent of kernels/) */
    int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    float v = e == 0 ? ldexpf((float)m, -24) : e == 31 ? (m ? NAN : INFINITY)
                                                       : ldexpf((float)(m | 1024), e - 25);
    return s ? -v : v;
}

static float rd_f16(const uint8_t *p)
{
    return h2f((uint16_t)(p[0] | p[1] << 8));
}

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* The float the converter writes for x: fp16 round to nearest even. */
static float f16_of(float x)
{
    return (float)(_Float16)x;
}

/* Header rules the reader does not enforce. */
static void check_header_rules(const uint8_t *b, uint64_t size)
{
    uint64_t n = 0;
    for (int i = 0; i < 8; i++)
        n |= (uint64_t)b[i] << (8 * i);
    CHECK((8 + n) % 8 == 0);
    CHECK(8 + n <= size);
    if (8 + n > size)
        return;
    char *txt = xmalloc(n + 1);
    memcpy(txt, b + 8, n);
    txt[n] = 0;
    size_t end = n;
    while (end > 0 && txt[end - 1] == ' ')
        end--;
    CHECK(end > 0 && txt[end - 1] == '}' && n - end < 8);
    json_error_t err;
    json_t *hdr = json_loadb(txt, end, JSON_REJECT_DUPLICATES, &err);
    CHECK(hdr != NULL);
    if (!hdr) {
        fprintf(stderr, "header: %s\n", err.text);
        free(txt);
        return;
    }
    /* keys in sorted order in the text (jansson keeps the file order of keys) */
    size_t n_keys = json_object_size(hdr);
    const char **keys = xcalloc(n_keys, sizeof *keys);
    size_t k = 0;
    const char *key;
    json_t *v;
    json_object_foreach(hdr, key, v) keys[k++] = key;
    for (size_t i = 0; i < n_keys; i++) {
        if (i > 0)
            CHECK(strcmp(keys[i - 1], keys[i]) < 0);
        char *needle = xasprintf("\"%s\":", keys[i]);
        CHECK(strstr(txt, needle) != NULL);
        free(needle);
    }
    CHECK(n_keys > 0 && strcmp(keys[0], "__metadata__") == 0);
    json_t *md = json_object_get(hdr, "__metadata__");
    CHECK(json_is_object(md) && json_object_size(md) == 1 &&
          json_is_string(json_object_get(md, "format")) &&
          strcmp(json_string_value(json_object_get(md, "format")), "pt") == 0);
    /* offsets aligned, data back to back, covering the data area */
    uint64_t *beg = xcalloc(n_keys, sizeof *beg), *fin = xcalloc(n_keys, sizeof *fin);
    size_t nt = 0;
    json_object_foreach(hdr, key, v) {
        if (!strcmp(key, "__metadata__"))
            continue;
        json_t *offs = json_object_get(v, "data_offsets");
        beg[nt] = (uint64_t)json_integer_value(json_array_get(offs, 0));
        fin[nt] = (uint64_t)json_integer_value(json_array_get(offs, 1));
        CHECK(beg[nt] % 8 == 0);
        nt++;
    }
    for (size_t i = 1; i < nt; i++) /* insertion sort by begin: small */
        for (size_t j = i; j > 0 && beg[j] < beg[j - 1]; j--) {
            uint64_t t = beg[j];
            beg[j] = beg[j - 1];
            beg[j - 1] = t;
            t = fin[j];
            fin[j] = fin[j - 1];
            fin[j - 1] = t;
        }
    uint64_t pos = 0;
    for (size_t i = 0; i < nt; i++) {
        CHECK(beg[i] == pos);
        pos = fin[i];
    }
    CHECK(8 + n + pos == size);
    free(beg);
    free(fin);
    free(keys);
    free(txt);
    json_decref(hdr);
}

static float *src_f32(const struct qfs_st_model *st, const char *name, int64_t *n)
{
    const struct qfs_st_tensor *t = qfs_st_find(st, name);
    if (!t)
        return NULL;
    CHECK(t->st_dtype != QFS_ST_I32); /* model sources are float (qfs_st_open) */
    int64_t e = 1;
    for (int d = 0; d < t->n_dims; d++)
        e *= t->shape[d];
    float *f = xmalloc((size_t)e * sizeof *f);
    qfs_to_f32(t->dtype, t->data, f, e);
    *n = e;
    return f;
}

enum { L_Q, L_K, L_V, L_O, L_GATE, L_UP, L_DOWN, N_LIN };
static const char *lin_names[N_LIN] = {"self_attn.q_proj", "self_attn.k_proj",
                                       "self_attn.v_proj", "self_attn.o_proj",
                                       "mlp.gate_proj",    "mlp.up_proj",
                                       "mlp.down_proj"};

/* "model.layers.<l>.<lin>.weight" -> 1 with *layer, *kind. */
static int parse_linear(const char *name, int *layer, int *kind)
{
    const char *pre = "model.layers.";
    if (strncmp(name, pre, strlen(pre)) != 0)
        return 0;
    const char *p = name + strlen(pre);
    if (*p < '0' || *p > '9')
        return 0;
    char *end;
    long l = strtol(p, &end, 10);
    if (*end != '.' || l > 1000000)
        return 0;
    for (int k = 0; k < N_LIN; k++) {
        size_t n = strlen(lin_names[k]);
        if (!strncmp(end + 1, lin_names[k], n) && !strcmp(end + 1 + n, ".weight")) {
            *layer = (int)l;
            *kind = k;
            return 1;
        }
    }
    return 0;
}

static struct qfs_model *open_model(const char *dir, int group, const char *imatrix)
{
    /* the AWQ format alone, at this group size */
    struct qfs_format_set fs;
    char opt[64], err[256];
    qfs_format_set_init(&fs);
    snprintf(opt, sizeof opt, "awq_group=%d", group ? group : 128);
    if (qfs_format_parse_opt(&fs, "formats=awq", err, sizeof err) != 1 ||
        qfs_format_parse_opt(&fs, opt, err, sizeof err) != 1) {
        fprintf(stderr, "format options: %s\n", err);
        exit(1);
    }
    struct qfs_model_opts o = {.formats = &fs, .imatrix = imatrix};
    struct qfs_model *m = NULL;
    int rc = qfs_model_open(dir, &o, &m);
    if (rc < 0) {
        fprintf(stderr, "qfs_model_open %s: %s\n", dir, strerror(-rc));
        exit(1);
    }
    return m;
}

static const struct qfs_vfile *awq_file(const struct qfs_model *m)
{
    char *name = xasprintf("%s.awq.safetensors", m->name);
    const struct qfs_vfile *vf = qfs_model_file(m, name);
    free(name);
    return vf;
}

/* ---- the file as a user reads it ---- */

struct rfile {
    char *dir, *path;
    struct qfs_st_model *rd; /* qfs_st_open_file(path, QFS_ST_ALLOW_I32) */
};

/* Changes bytes of a produced file (the test's own self-check: see mutations below). */
typedef void (*mutate_fn)(uint8_t *b, const struct qfs_vfile *vf);

/* Produce every chunk of vf, check the header rules, write the bytes (changed by mutate
 * unless NULL) to a file and open it with the reader; the reader's table must be vf's.
 * 0, or -1 (check failed). */
static int rfile_open(const struct qfs_vfile *vf, struct rfile *f, mutate_fn mutate)
{
    memset(f, 0, sizeof *f);
    uint8_t *b = vfile_bytes(vf);
    check_header_rules(b, vf->size);
    if (mutate)
        mutate(b, vf);
    f->dir = make_tmpdir();
    f->path = xasprintf("%s/model.safetensors", f->dir);
    write_file(f->path, b, vf->size);
    free(b);
    int rc = qfs_st_open_file(f->path, QFS_ST_ALLOW_I32, &f->rd);
    CHECK(rc == 0);
    if (rc != 0) {
        f->rd = NULL;
        return -1;
    }
    CHECK(f->rd->n_tensors == vf->n_tensors && f->rd->n_shards == 1 &&
          f->rd->shards[0].size == vf->size);
    for (int i = 0; i < vf->n_tensors; i++) {
        const struct qfs_vtensor *vt = &vf->tensors[i];
        const struct qfs_st_tensor *t = qfs_st_find(f->rd, vt->name);
        CHECK(t && t->file_offset == vt->offset && t->nbytes == vt->nbytes);
    }
    /* the same file as a model source: refused, I32 is no source dtype */
    struct qfs_st_model *x = NULL;
    cap_begin();
    rc = qfs_st_open(f->dir, NULL, &x);
    char *log = cap_end();
    CHECK(rc == -ENOTSUP && x == NULL);
    CHECK_LOG(log, f->path, "unsupported dtype I32");
    free(log);
    if (x)
        qfs_st_close(x);
    return 0;
}

static void rfile_close(struct rfile *f)
{
    qfs_st_close(f->rd);
    if (f->dir)
        remove_tree(f->dir);
    free(f->dir);
    free(f->path);
}

/* A reader tensor with the expected dtype and shape (d1 < 0: 1-D), else NULL (and a
 * failed check when it exists with another dtype or shape). */
static const struct qfs_st_tensor *rt_get(const struct qfs_st_model *rd, const char *name,
                                          enum qfs_st_dtype dt, int64_t d0, int64_t d1)
{
    const struct qfs_st_tensor *t = qfs_st_find(rd, name);
    if (!t)
        return NULL;
    int ok = t->st_dtype == dt && t->n_dims == (d1 < 0 ? 1 : 2) && t->shape[0] == d0 &&
             (d1 < 0 || t->shape[1] == d1);
    if (!ok) {
        fprintf(stderr, "%s: dtype %d, %d dims [%lld, %lld]; want %d [%lld, %lld]\n", name,
                (int)t->st_dtype, t->n_dims, (long long)t->shape[0],
                (long long)(t->n_dims > 1 ? t->shape[1] : -1), (int)dt, (long long)d0,
                (long long)d1);
        n_fail++;
        return NULL;
    }
    return t;
}

/* ---- dequantizer (from the format description) ---- */

/* Nibble of output column 8c + k inside word c: the inverse of {0,2,4,6,1,3,5,7}. */
static const int nib_of_col[8] = {0, 4, 1, 5, 2, 6, 3, 7};

static unsigned nibble(const uint8_t *packed, int64_t words_per_row, int64_t row, int64_t col)
{
    uint32_t w = rd32(packed + (row * words_per_row + col / 8) * 4);
    return (w >> (4 * nib_of_col[col % 8])) & 15u;
}

/* One decoder linear: the source and what the file holds for it. */
struct lin {
    int present;
    char *base;        /* "model.layers.<l>.<lin>" */
    int64_t out, in, g; /* g 0: kept F16 */
    float *w;          /* source [out][in] */
    float *d;          /* read back, dequantized or F16 [out][in] */
    uint8_t *q;        /* levels [out][in] (g > 0) */
    float *s;          /* group scales [out][in / g] */
    uint8_t *z;        /* zero points [out][in / g] */
};

static void lin_free(struct lin *L)
{
    free(L->base);
    free(L->w);
    free(L->d);
    free(L->q);
    free(L->s);
    free(L->z);
    memset(L, 0, sizeof *L);
}

/* Read linear `kind` of block `layer` from the source and the file.  The file must hold
 * it quantized exactly when in % group == 0 and out % 8 == 0. */
static void read_lin(const struct qfs_model *m, const struct qfs_st_model *rd, int layer,
                     int kind, int group, struct lin *L)
{
    memset(L, 0, sizeof *L);
    L->base = xasprintf("model.layers.%d.%s", layer, lin_names[kind]);
    char *wname = xasprintf("%s.weight", L->base), *nq = xasprintf("%s.qweight", L->base),
         *nz = xasprintf("%s.qzeros", L->base), *ns = xasprintf("%s.scales", L->base);
    const struct qfs_st_tensor *src = qfs_st_find(m->st, wname);
    if (!src || src->n_dims != 2)
        goto out;
    L->present = 1;
    const int64_t out = src->shape[0], in = src->shape[1];
    L->out = out;
    L->in = in;
    int64_t ne;
    L->w = src_f32(m->st, wname, &ne);
    L->d = xmalloc((size_t)(out * in) * sizeof *L->d);
    const int quantized = in % group == 0 && out % 8 == 0;
    const struct qfs_st_tensor *tw = qfs_st_find(rd, wname), *tq = qfs_st_find(rd, nq),
                               *tz = qfs_st_find(rd, nz), *ts = qfs_st_find(rd, ns);
    if (!quantized) {
        CHECK(!tq && !tz && !ts);
        tw = rt_get(rd, wname, QFS_ST_F16, out, in);
        CHECK(tw != NULL);
        for (int64_t i = 0; i < out * in; i++)
            L->d[i] = tw ? rd_f16(tw->data + 2 * i) : NAN;
        goto out;
    }
    CHECK(!tw);
    const int64_t ng = in / group, words = out / 8;
    tq = rt_get(rd, nq, QFS_ST_I32, in, words);
    tz = rt_get(rd, nz, QFS_ST_I32, ng, words);
    ts = rt_get(rd, ns, QFS_ST_F16, ng, out);
    CHECK(tq && tz && ts);
    if (!tq || !tz || !ts) {
        for (int64_t i = 0; i < out * in; i++)
            L->d[i] = NAN;
        goto out;
    }
    L->g = group;
    L->q = xmalloc((size_t)(out * in));
    L->s = xmalloc((size_t)(out * ng) * sizeof *L->s);
    L->z = xmalloc((size_t)(out * ng));
    int bad_scales = 0;
    for (int64_t k = 0; k < ng; k++)
        for (int64_t o = 0; o < out; o++) {
            const float s = rd_f16(ts->data + (k * out + o) * 2);
            bad_scales += !(isfinite(s) && s > 0.0f);
            L->s[o * ng + k] = s;
            L->z[o * ng + k] = (uint8_t)nibble(tz->data, words, k, o);
        }
    if (bad_scales)
        fprintf(stderr, "%s: %d scales not finite and > 0\n", L->base, bad_scales);
    CHECK(bad_scales == 0);
    for (int64_t j = 0; j < in; j++)
        for (int64_t o = 0; o < out; o++) {
            const unsigned q = nibble(tq->data, words, j, o);
            const int64_t gi = o * ng + j / group;
            L->q[o * in + j] = (uint8_t)q;
            L->d[o * in + j] = (float)((int)q - (int)L->z[gi]) * L->s[gi];
        }
out:
    free(wname);
    free(nq);
    free(nz);
    free(ns);
}

/* ---- bounds ---- */

struct stats {
    long n_elem;      /* elements checked */
    long n_fail;      /* elements outside their bound */
    long n_clipped;   /* clip-allowed elements beyond half a step (pulled in by clipping) */
    long n_scaled;    /* pair channels whose factor is certainly not 1 */
    long n_pairs;     /* pair channels */
    double worst;     /* quantized elements held to half a step (all but those on the
                         end levels of a clipped linear): largest error / bound */
    double pair_tol;  /* widest relative uncertainty of a pair channel's factor */
};

/* Half a step, stretched by the fp16 rounding of the scale at the top of the range
 * (15 * 2^-11 of a step; 16 for margin). */
#define HALF_STEP (0.5 + 16.0 / 2048.0)
#define FULL_STEP (1.0 + 16.0 / 2048.0)
#define CLIP_MAX 0.45 /* AutoAWQ's clipping shrinks a group's max by at most 45% */
#define REL_EPS 0x1p-20 /* float rounding of the codec's scaled weights, with margin */

static void report(struct stats *st, long *reported, const struct lin *L, int64_t o, int64_t j,
                   double t, const char *why)
{
    st->n_fail++;
    if ((*reported)++ < 5) {
        fprintf(stderr, "%s[%lld][%lld]: target %.9g, file %.9g", L->base, (long long)o,
                (long long)j, t, (double)L->d[o * L->in + j]);
        if (L->g) {
            const int64_t gi = o * (L->in / L->g) + j / L->g;
            fprintf(stderr, " (level %u, zero %u, scale %.9g)", (unsigned)L->q[o * L->in + j],
                    (unsigned)L->z[gi], (double)L->s[gi]);
        }
        fprintf(stderr, ": %s\n", why);
    }
}

/* Check every element of L against its target t = w[o][j] * cf[j] * rf[o] (NULL: 1; a
 * NaN factor skips the column or row), known to within the relative tolerance
 * ctol[j] + rtol[o].  Kept F16: |d - t| within the fp16 rounding.  Quantized: within
 * half a step; with clip set, elements on the two lowest/highest levels of their group
 * may come from values clipped before quantization: they must lie beyond their level minus
 * a step, and within CLIP_MAX of the group's largest |t| (plus half a step) of the grid's
 * end [lo, hi] = [-zero * scale, (15 - zero) * scale]. */
static void check_lin(const struct lin *L, const double *cf, const double *ctol, const double *rf,
                      const double *rtol, int clip, struct stats *st)
{
    const int64_t out = L->out, in = L->in, g = L->g ? L->g : in, ng = in / g;
    long reported = 0;
    for (int64_t o = 0; o < out; o++) {
        const double r = rf ? rf[o] : 1.0;
        if (isnan(r))
            continue;
        for (int64_t k = 0; k < ng; k++) {
            double amax = 0.0;
            for (int64_t j = k * g; j < (k + 1) * g; j++)
                if (!cf || !isnan(cf[j]))
                    amax = fmax(amax, fabs((double)L->w[o * in + j] * (cf ? cf[j] : 1.0) * r));
            for (int64_t j = k * g; j < (k + 1) * g; j++) {
                if (cf && isnan(cf[j]))
                    continue;
                const double t = (double)L->w[o * in + j] * (cf ? cf[j] : 1.0) * r;
                const double tol =
                    fabs(t) * ((ctol ? ctol[j] : 0.0) + (rtol ? rtol[o] : 0.0) + REL_EPS);
                const double d = L->d[o * in + j];
                st->n_elem++;
                if (!L->g) {
                    const double b = fmax(fabs(t) * 0x1p-11, 0x1p-25) + tol;
                    if (!(fabs(d - t) <= b))
                        report(st, &reported, L, o, j, t, "beyond the fp16 rounding");
                    continue;
                }
                const double s = L->s[o * ng + k];
                const unsigned q = L->q[o * in + j], z = L->z[o * ng + k];
                const double half = s * HALF_STEP + tol;
                if (!clip || (q >= 2 && q <= 13)) {
                    if (!(fabs(d - t) <= half))
                        report(st, &reported, L, o, j, t, "beyond half a step");
                    else if (fabs(d - t) / half > st->worst)
                        st->worst = fabs(d - t) / half;
                    continue;
                }
                if (fabs(d - t) <= half) /* an end level, not clipped */
                    continue;
                const double step = s * FULL_STEP + tol, reach = CLIP_MAX * amax + half;
                const double lo = -(double)z * s, hi = (15.0 - z) * s;
                int ok = q >= 14 ? t >= d - step && t <= hi + reach
                                 : t <= d + step && t >= lo - reach;
                if (!ok)
                    report(st, &reported, L, o, j, t, "a clipped value out of reach");
                else
                    st->n_clipped++;
            }
        }
    }
}

/* Round-to-nearest: every group's scale is the fp16 rounding of (max - min) / 15 (at least
 * 1e-5 / 15), its zero point clamp(-rint(min / scale), 0, 15): the grid spans the source's
 * range, stretched only by the fp16 rounding of the scale. */
static void check_rtn_groups(const struct lin *L, struct stats *st)
{
    const int64_t g = L->g, ng = L->in / g;
    long reported = 0;
    for (int64_t o = 0; o < L->out; o++)
        for (int64_t k = 0; k < ng; k++) {
            const float *v = L->w + o * L->in + k * g;
            float mn = v[0], mx = v[0];
            for (int64_t j = 1; j < g; j++) {
                mn = fminf(mn, v[j]);
                mx = fmaxf(mx, v[j]);
            }
            float range = mx - mn;
            if (!(range >= 1e-5f))
                range = 1e-5f;
            const float s0 = range / 15.0f, s = L->s[o * ng + k];
            float zf = -rintf(mn / s);
            zf = zf < 0.0f ? 0.0f : zf > 15.0f ? 15.0f : zf;
            const int ok_s = fabsf(s - s0) <= fmaxf(s0 * 0x1p-11f, 0x1p-25f);
            const int ok_z = L->z[o * ng + k] == (unsigned)zf;
            if (!ok_s || !ok_z) {
                st->n_fail++;
                if (reported++ < 5)
                    fprintf(stderr, "%s row %lld group %lld: min %g max %g: scale %.9g zero %u, "
                                    "want scale ~%.9g zero %g\n",
                            L->base, (long long)o, (long long)k, (double)mn, (double)mx,
                            (double)s, (unsigned)L->z[o * ng + k], (double)s0, (double)zf);
            }
        }
}

/* Feasible factors r > 0 of a pair channel: [lo, hi]. */
struct ival {
    double lo, hi;
};

/* Intersect with {r : |a * x - d| <= b}, x = r, or x = 1/r when recip. */
static void ival_cut(struct ival *iv, double a, double d, double b, int recip)
{
    if (a == 0.0) {
        if (!(fabs(d) <= b))
            iv->lo = INFINITY; /* no factor helps */
        return;
    }
    double x0 = (d - b) / a, x1 = (d + b) / a;
    if (x0 > x1) {
        double t = x0;
        x0 = x1;
        x1 = t;
    }
    double rlo, rhi;
    if (recip) {
        if (!(x1 > 0.0)) {
            iv->lo = INFINITY;
            return;
        }
        rlo = 1.0 / x1;
        rhi = x0 > 0.0 ? 1.0 / x0 : INFINITY;
    } else {
        rlo = x0;
        rhi = x1;
    }
    iv->lo = fmax(iv->lo, rlo);
    iv->hi = fmin(iv->hi, rhi);
}

/* The bound of element (o, j) of L for estimating a factor: only elements that cannot
 * have been clipped (inner levels 2..13, or kept F16).  0: do not use the element. */
static int inner_bound(const struct lin *L, int64_t o, int64_t j, double ctol, double *b)
{
    const double d = L->d[o * L->in + j];
    if (!L->g) {
        *b = fmax(fabs(d) * 0x1p-10, 0x1p-24) + fabs(d) * (ctol + REL_EPS);
        return 1;
    }
    const unsigned q = L->q[o * L->in + j];
    if (q < 2 || q > 13)
        return 0;
    const double s = L->s[o * (L->in / L->g) + j / L->g];
    *b = s * HALF_STEP + (fabs(d) + s) * (ctol + REL_EPS);
    return 1;
}

/* P's rows are divided by r[c] and N's columns multiplied by it (v -> o, up -> down);
 * P's columns carry cf (the folded norm's factor).  For each channel c, the factors for
 * which the inner elements of P's row c and N's column c are within their bounds must form
 * a non-empty interval; then every element is checked with its geometric middle, the
 * interval's width added to the tolerance. */
static void check_pair(const struct lin *P, const double *cfP, const double *ctolP,
                       const struct lin *N, struct stats *st)
{
    const int64_t n = P->out;
    double *rf = xmalloc((size_t)n * sizeof *rf), *rtol = xmalloc((size_t)n * sizeof *rtol);
    double *cfN = xmalloc((size_t)n * sizeof *cfN), *ctolN = xmalloc((size_t)n * sizeof *ctolN);
    long reported = 0;
    for (int64_t c = 0; c < n; c++) {
        struct ival iv = {0.0, INFINITY};
        double b;
        for (int64_t j = 0; j < P->in; j++) {
            if (cfP && isnan(cfP[j]))
                continue;
            if (inner_bound(P, c, j, cfP ? ctolP[j] : 0.0, &b))
                ival_cut(&iv, (double)P->w[c * P->in + j] * (cfP ? cfP[j] : 1.0),
                         P->d[c * P->in + j], b, 1);
        }
        for (int64_t i = 0; i < N->out; i++)
            if (inner_bound(N, i, c, 0.0, &b))
                ival_cut(&iv, N->w[i * N->in + c], N->d[i * N->in + c], b, 0);
        st->n_pairs++;
        if (!(iv.lo > 0.0 && iv.hi < INFINITY && iv.lo <= iv.hi)) {
            st->n_fail++;
            if (reported++ < 5)
                fprintf(stderr, "%s row %lld / %s column %lld: no common factor ([%g, %g])\n",
                        P->base, (long long)c, N->base, (long long)c, iv.lo, iv.hi);
            rf[c] = cfN[c] = NAN;
            rtol[c] = ctolN[c] = 0.0;
            continue;
        }
        const double r = sqrt(iv.lo * iv.hi), rel = iv.hi / iv.lo - 1.0 + REL_EPS;
        rf[c] = 1.0 / r;
        cfN[c] = r;
        rtol[c] = ctolN[c] = rel;
        st->pair_tol = fmax(st->pair_tol, rel);
        st->n_scaled += iv.lo > 1.0 || iv.hi < 1.0;
    }
    check_lin(P, cfP, ctolP, rf, rtol, 1, st);
    check_lin(N, cfN, ctolN, NULL, NULL, 1, st);
    free(rf);
    free(rtol);
    free(cfN);
    free(ctolN);
}

/* A norm of block l in the source (*n) and in the file (*n2, F16): their length, 0 when
 * the source has none. */
static int64_t read_norm(const struct qfs_model *m, const struct qfs_st_model *rd, int l,
                         const char *what, float **n, float **n2)
{
    char *name = xasprintf("model.layers.%d.%s", l, what);
    int64_t len = 0;
    *n = src_f32(m->st, name, &len);
    *n2 = NULL;
    if (*n) {
        const struct qfs_st_tensor *t = rt_get(rd, name, QFS_ST_F16, len, -1);
        CHECK(t != NULL);
        *n2 = xmalloc((size_t)len * sizeof **n2);
        for (int64_t j = 0; j < len; j++)
            (*n2)[j] = t ? rd_f16(t->data + 2 * j) : NAN;
    }
    free(name);
    return *n ? len : 0;
}

/* The column factor a folded norm implies: cf[j] = n[j] / n2[j] (n2: the file's norm,
 * n / s rounded to fp16), to within ctol[j] (that rounding); NaN where n2 is 0 (the column
 * drops out of the function: the source's n must be 0 too). */
static void fold_factors(const char *what, const float *n, const float *n2, int64_t len,
                         double *cf, double *ctol, long *changed)
{
    for (int64_t j = 0; j < len; j++) {
        *changed += n2[j] != f16_of(n[j]);
        if (n2[j] == 0.0f || !isfinite(n2[j])) {
            if (!(n2[j] == 0.0f && n[j] == 0.0f)) {
                fprintf(stderr, "%s[%lld]: %g folded into %g\n", what, (long long)j, (double)n[j],
                        (double)n2[j]);
                n_fail++;
            }
            cf[j] = NAN;
            ctol[j] = 0.0;
            continue;
        }
        cf[j] = (double)n[j] / (double)n2[j];
        ctol[j] = fabsf(n2[j]) >= 0x1p-14f ? 0x1p-10 : 0x1p-24 / fabs((double)n2[j]);
    }
}

/* Every linear of block l.  Round-to-nearest: against the source as it is.
 * Activation-aware: through the folds (see the top comment). */
static void check_block(const struct qfs_model *m, const struct qfs_st_model *rd, int l,
                        int group, int aware, struct stats *st, long *changed)
{
    struct lin L[N_LIN];
    for (int k = 0; k < N_LIN; k++)
        read_lin(m, rd, l, k, group, &L[k]);
    if (!aware) {
        for (int k = 0; k < N_LIN; k++) {
            if (!L[k].present)
                continue;
            check_lin(&L[k], NULL, NULL, NULL, NULL, 0, st);
            if (L[k].g)
                check_rtn_groups(&L[k], st);
        }
        for (int k = 0; k < N_LIN; k++)
            lin_free(&L[k]);
        return;
    }
    float *ni, *ni2, *np, *np2;
    const int64_t hi = read_norm(m, rd, l, "input_layernorm.weight", &ni, &ni2);
    const int64_t hp = read_norm(m, rd, l, "post_attention_layernorm.weight", &np, &np2);
    double *cfi = xmalloc((size_t)hi * sizeof *cfi), *ctoli = xmalloc((size_t)hi * sizeof *ctoli);
    double *cfp = xmalloc((size_t)hp * sizeof *cfp), *ctolp = xmalloc((size_t)hp * sizeof *ctolp);
    if (ni2)
        fold_factors("input_layernorm", ni, ni2, hi, cfi, ctoli, changed);
    if (np2)
        fold_factors("post_attention_layernorm", np, np2, hp, cfp, ctolp, changed);
    /* the input factors of a linear reading a norm (NULL when the sizes do not match:
     * then the linear is checked as unscaled and fails if it is not) */
#define IN_CF(k, h, cf) (L[k].in == (h) && (h) > 0 ? (cf) : NULL)
    for (int k = L_Q; k <= L_K; k++) /* q, k: not clipped */
        if (L[k].present)
            check_lin(&L[k], IN_CF(k, hi, cfi), IN_CF(k, hi, ctoli), NULL, NULL, 0, st);
    if (L[L_GATE].present)
        check_lin(&L[L_GATE], IN_CF(L_GATE, hp, cfp), IN_CF(L_GATE, hp, ctolp), NULL, NULL, 1,
                  st);
    /* v -> o: only when v and o have the same shape (AutoAWQ's rule) */
    if (L[L_V].present && L[L_O].present && L[L_V].out == L[L_O].out &&
        L[L_V].in == L[L_O].in) {
        check_pair(&L[L_V], IN_CF(L_V, hi, cfi), IN_CF(L_V, hi, ctoli), &L[L_O], st);
    } else {
        if (L[L_V].present)
            check_lin(&L[L_V], IN_CF(L_V, hi, cfi), IN_CF(L_V, hi, ctoli), NULL, NULL, 1, st);
        if (L[L_O].present)
            check_lin(&L[L_O], NULL, NULL, NULL, NULL, 1, st);
    }
    if (L[L_UP].present && L[L_DOWN].present && L[L_UP].out == L[L_DOWN].in) {
        check_pair(&L[L_UP], IN_CF(L_UP, hp, cfp), IN_CF(L_UP, hp, ctolp), &L[L_DOWN], st);
    } else {
        if (L[L_UP].present)
            check_lin(&L[L_UP], IN_CF(L_UP, hp, cfp), IN_CF(L_UP, hp, ctolp), NULL, NULL, 1, st);
        if (L[L_DOWN].present)
            check_lin(&L[L_DOWN], NULL, NULL, NULL, NULL, 1, st);
    }
#undef IN_CF
    free(ni), free(ni2), free(np), free(np2);
    free(cfi), free(ctoli), free(cfp), free(ctolp);
    for (int k = 0; k < N_LIN; k++)
        lin_free(&L[k]);
}

static int cmp_cstr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The whole AWQ file of model dir at group size `group`: inventory, config.json, values.
 * imx: activation-aware with that importance matrix, NULL: round-to-nearest.
 * expect_fold (aware only): 1 some norm must change, 0 none may, -1 either. */
static void check_file(const char *label, const char *dir, int group, const char *imx,
                       int expect_fold, mutate_fn mutate)
{
    struct qfs_model *m = open_model(dir, group, imx);
    const struct qfs_vfile *vf = awq_file(m);
    CHECK(vf != NULL);
    struct rfile f;
    if (!vf || rfile_open(vf, &f, mutate) != 0) {
        fprintf(stderr, "%s: no AWQ file to check\n", label);
        if (vf)
            rfile_close(&f);
        qfs_model_close(m);
        return;
    }
    CHECK(qfs_vfile_cache_tag(vf) == QFS_CACHE_TAG(QFS_CODEC_AWQ, vf->codec_version));
    const struct qfs_st_model *rd = f.rd;
    const int aware = imx != NULL;
    int n_layers = 0;

    /* inventory; tensors other than the decoder linears */
    long expect_tensors = 0, n_quant = 0, n_kept = 0, differ = 0;
    const char **skip = xcalloc((size_t)m->st->n_tensors, sizeof *skip);
    for (int i = 0; i < m->st->n_tensors; i++) {
        const struct qfs_st_tensor *s = &m->st->tensors[i];
        size_t nl = strlen(s->name);
        if (nl >= 19 && !strcmp(s->name + nl - 19, "rotary_emb.inv_freq")) {
            CHECK(qfs_st_find(rd, s->name) == NULL);
            continue;
        }
        int layer, kind;
        if (parse_linear(s->name, &layer, &kind) && s->n_dims == 2) {
            n_layers = layer + 1 > n_layers ? layer + 1 : n_layers;
            if (s->shape[1] % group == 0 && s->shape[0] % 8 == 0) {
                expect_tensors += 3;
                n_quant++;
            } else {
                expect_tensors++;
                skip[n_kept++] = s->name;
            }
            continue;
        }
        expect_tensors++;
        const struct qfs_st_tensor *t =
            rt_get(rd, s->name, QFS_ST_F16, s->n_dims > 0 ? s->shape[0] : 1,
                   s->n_dims == 2 ? s->shape[1] : -1);
        CHECK(t != NULL && s->n_dims >= 1 && s->n_dims <= 2);
        if (!t)
            continue;
        const int norm = !strncmp(s->name, "model.layers.", 13) &&
                         (strstr(s->name, ".input_layernorm.weight") ||
                          strstr(s->name, ".post_attention_layernorm.weight"));
        if (aware && norm)
            continue; /* folded: checked with the linears that read it */
        int64_t ne;
        float *src = src_f32(m->st, s->name, &ne);
        for (int64_t j = 0; j < ne; j++)
            differ += rd_f16(t->data + 2 * j) != f16_of(src[j]);
        free(src);
    }
    if (differ)
        fprintf(stderr, "%s: %ld elements of unquantized tensors differ from the source\n",
                label, differ);
    CHECK(differ == 0);
    CHECK(n_quant > 0);
    CHECK(rd->n_tensors == expect_tensors);

    /* config.json: modules_to_not_convert are exactly the linears kept F16 */
    char *cj = NULL;
    size_t cl = 0;
    CHECK(qfs_awq_config_json(m, group, &cj, &cl) == 0);
    json_error_t err;
    json_t *c = cj ? json_loadb(cj, cl, 0, &err) : NULL;
    json_t *qc = json_object_get(c, "quantization_config");
    json_t *mods = json_object_get(qc, "modules_to_not_convert");
    CHECK(qc && !strcmp(json_string_value(json_object_get(qc, "quant_method")), "awq"));
    CHECK(json_integer_value(json_object_get(qc, "bits")) == 4);
    CHECK(json_integer_value(json_object_get(qc, "group_size")) == group);
    CHECK(json_is_true(json_object_get(qc, "zero_point")));
    CHECK(json_is_string(json_object_get(qc, "version")) &&
          !strcmp(json_string_value(json_object_get(qc, "version")), "gemm"));
    CHECK(json_is_string(json_object_get(c, "torch_dtype")) &&
          !strcmp(json_string_value(json_object_get(c, "torch_dtype")), "float16"));
    CHECK(json_object_get(c, "num_hidden_layers") != NULL);
    CHECK(json_is_array(mods) && json_array_size(mods) == (size_t)n_kept);
    if (json_is_array(mods) && json_array_size(mods) == (size_t)n_kept) {
        const char **got = xcalloc((size_t)n_kept, sizeof *got);
        for (long i = 0; i < n_kept; i++) {
            got[i] = json_string_value(json_array_get(mods, (size_t)i));
            CHECK(got[i] != NULL);
            if (!got[i])
                got[i] = "";
        }
        qsort(got, (size_t)n_kept, sizeof *got, cmp_cstr);
        qsort(skip, (size_t)n_kept, sizeof *skip, cmp_cstr);
        for (long i = 0; i < n_kept; i++) {
            size_t bl = strlen(skip[i]) - strlen(".weight");
            CHECK(strlen(got[i]) == bl && !strncmp(got[i], skip[i], bl));
        }
        free(got);
    }
    json_decref(c);
    free(cj);
    free(skip);

    /* the values */
    struct stats st = {0};
    long changed = 0;
    for (int l = 0; l < n_layers; l++)
        check_block(m, rd, l, group, aware, &st, &changed);
    if (st.n_fail)
        fprintf(stderr, "%s: %ld elements or groups outside their bounds\n", label, st.n_fail);
    CHECK(st.n_fail == 0);
    CHECK(st.n_elem > 0);
    /* the codec never clips (its activation-aware fit keeps every group's range) */
    CHECK(st.n_clipped == 0);
    if (aware && expect_fold >= 0)
        CHECK(expect_fold ? changed > 0 : changed == 0);
    printf("# %s: %ld linears quantized, %ld kept F16, %llu bytes; %ld elements checked, "
           "%ld failures (worst error %.4f of its half-step bound)",
           label, n_quant, n_kept, (unsigned long long)vf->size, st.n_elem, st.n_fail,
           st.worst);
    if (aware)
        printf(", %ld clipped; %ld norm weights folded; %ld/%ld pair channels scaled "
               "(factor known to %.2g)",
               st.n_clipped, changed, st.n_scaled, st.n_pairs, st.pair_tol);
    printf("\n");
    rfile_close(&f);
    qfs_model_close(m);
}

/* ---- the checks catch what they must: mutated files ---- */

static uint8_t *vt_data(uint8_t *b, const struct qfs_vfile *vf, const char *name, int64_t *shape)
{
    for (int i = 0; i < vf->n_tensors; i++)
        if (!strcmp(vf->tensors[i].name, name)) {
            const struct qfs_vtensor *t = &vf->tensors[i];
            for (int d = 0; d < t->n_dims; d++) /* ne is innermost first */
                shape[d] = t->ne[t->n_dims - 1 - d];
            return b + t->offset;
        }
    fprintf(stderr, "mutation: no tensor %s\n", name);
    exit(1);
}

static void put_f16(uint8_t *p, float x)
{
    _Float16 h = (_Float16)x;
    memcpy(p, &h, 2);
}

/* Two columns' levels swapped in one word of layer 0's q_proj (a pack order mistake in
 * one place), in a word where they differ by at least 2 levels. */
static void mut_swap_nibbles(uint8_t *b, const struct qfs_vfile *vf)
{
    int64_t sh[2];
    uint8_t *q = vt_data(b, vf, "model.layers.0.self_attn.q_proj.qweight", sh);
    for (int64_t i = 0; i < sh[0] * sh[1]; i++) {
        uint32_t w = rd32(q + 4 * i), n0 = w & 15, n1 = (w >> 4) & 15;
        if (n0 + 2 <= n1 || n1 + 2 <= n0) {
            w = (w & ~0xffu) | n0 << 4 | n1;
            for (int k = 0; k < 4; k++)
                q[4 * i + k] = (uint8_t)(w >> (8 * k));
            return;
        }
    }
    fprintf(stderr, "mutation: no word to swap\n");
    exit(1);
}

/* One group scale of layer 0's v_proj 25% larger. */
static void mut_scale(uint8_t *b, const struct qfs_vfile *vf)
{
    int64_t sh[2];
    uint8_t *s = vt_data(b, vf, "model.layers.0.self_attn.v_proj.scales", sh);
    put_f16(s + 2 * 3, rd_f16(s + 2 * 3) * 1.25f);
}

/* input_layernorm of layer 1 twice as large at one column (a fold not compensated). */
static void mut_norm(uint8_t *b, const struct qfs_vfile *vf)
{
    int64_t sh[2];
    uint8_t *n = vt_data(b, vf, "model.layers.1.input_layernorm.weight", sh);
    put_f16(n + 2 * 5, rd_f16(n + 2 * 5) * 2.0f);
}

/* Every scale of output channel 7 of layer 0's v_proj doubled: v's row 7 then asks for
 * half the factor that o's column 7 asks for (a v -> o pair out of step). */
static void mut_pair(uint8_t *b, const struct qfs_vfile *vf)
{
    int64_t sh[2];
    uint8_t *s = vt_data(b, vf, "model.layers.0.self_attn.v_proj.scales", sh);
    for (int64_t k = 0; k < sh[0]; k++)
        put_f16(s + 2 * (k * sh[1] + 7), rd_f16(s + 2 * (k * sh[1] + 7)) * 2.0f);
}

/* One element of the embeddings off by one fp16 ulp. */
static void mut_embed(uint8_t *b, const struct qfs_vfile *vf)
{
    int64_t sh[2];
    uint8_t *e = vt_data(b, vf, "model.embed_tokens.weight", sh);
    e[2 * 11] ^= 1;
}

/* check_file on a mutated file must fail: its failed checks are counted and taken back. */
static void expect_caught(const char *label, const char *dir, int group, const char *imx,
                          mutate_fn mutate)
{
    const int before = n_fail;
    cap_begin();
    check_file(label, dir, group, imx, -1, mutate);
    char *log = cap_end();
    const int caught = n_fail - before;
    n_fail = before;
    if (caught == 0)
        fprintf(stderr, "%s: not caught\n", label);
    CHECK(caught > 0);
    const char *first = log; /* the first line that is not an info line */
    while (first[0] == '<' && strchr(first, '\n'))
        first = strchr(first, '\n') + 1;
    printf("# %s: caught (%d failed checks; first: %.*s)\n", label, caught,
           (int)strcspn(first, "\n"), first);
    free(log);
}

/* ---- nibble order: q_proj of layer 0 replaced by w[o][j] = (3o + j) % 16 ---- */

static void make_handmade(const char *gen_dir, const char *dir)
{
    struct qfs_st_model *st = NULL;
    if (qfs_st_open(gen_dir, NULL, &st) < 0)
        exit(1);
    struct qfs_st_wtensor *wt = xcalloc((size_t)st->n_tensors, sizeof *wt);
    uint16_t *hand = NULL;
    for (int i = 0; i < st->n_tensors; i++) {
        const struct qfs_st_tensor *t = &st->tensors[i];
        wt[i] = (struct qfs_st_wtensor){.name = t->name, .dtype = t->dtype, .n_dims = t->n_dims,
                                        .data = t->data};
        memcpy(wt[i].shape, t->shape, sizeof wt[i].shape);
        if (!strcmp(t->name, "model.layers.0.self_attn.q_proj.weight")) {
            CHECK(t->dtype == QFS_DT_F16);
            hand = xmalloc((size_t)(t->shape[0] * t->shape[1]) * 2);
            for (int64_t o = 0; o < t->shape[0]; o++)
                for (int64_t j = 0; j < t->shape[1]; j++) {
                    _Float16 h = (_Float16)(float)((3 * o + j) % 16);
                    memcpy(&hand[o * t->shape[1] + j], &h, 2);
                }
            wt[i].data = hand;
        }
    }
    char *p = xasprintf("%s/model.safetensors", dir);
    CHECK(qfs_st_write(p, wt, st->n_tensors) == 0);
    free(p);
    free(hand);
    free(wt);
    qfs_st_close(st);
    char *cmd = xasprintf("cp '%s'/*.json '%s'/ && cp '%s'/tokenizer* '%s'/ 2>/dev/null; true",
                          gen_dir, dir, gen_dir, dir);
    CHECK(system(cmd) == 0);
    free(cmd);
}

static void check_nibbles(const char *dir)
{
    struct qfs_model *m = open_model(dir, 32, NULL);
    const struct qfs_vfile *vf = awq_file(m);
    struct rfile f;
    CHECK(vf != NULL);
    if (!vf || rfile_open(vf, &f, NULL) != 0) {
        if (vf)
            rfile_close(&f);
        qfs_model_close(m);
        return;
    }
    const struct qfs_st_tensor *q = qfs_st_find(f.rd, "model.layers.0.self_attn.q_proj.qweight");
    const struct qfs_st_tensor *z = qfs_st_find(f.rd, "model.layers.0.self_attn.q_proj.qzeros");
    const struct qfs_st_tensor *s = qfs_st_find(f.rd, "model.layers.0.self_attn.q_proj.scales");
    CHECK(q && z && s && q->st_dtype == QFS_ST_I32 && z->st_dtype == QFS_ST_I32 &&
          s->st_dtype == QFS_ST_F16);
    if (q && z && s) {
        /* every group holds 0..15: scale 1, zero 0, q = w.  Row 0, word 0: columns
         * 0,2,4,6,1,3,5,7 in nibbles 0..7 -> values 0,6,12,2,3,9,15,5 */
        CHECK(rd32(q->data) == 0x5F932C60u);
        /* input row 1, word 0: (3o + 1) % 16 -> 1,7,13,3,4,10,0,6 */
        const int64_t words = q->shape[1];
        CHECK(rd32(q->data + words * 4) == 0x60A43D71u);
        for (int64_t i = 0; i < words; i++)
            CHECK(rd32(z->data + i * 4) == 0);
        CHECK(s->data[0] == 0x00 && s->data[1] == 0x3C); /* fp16 1.0 */
    }
    rfile_close(&f);
    qfs_model_close(m);
}

/* ---- activation-aware mode: determinism and keys ---- */

/* A legacy imatrix with an entry per linear: values 0.01 .. 10 (log-spread, fixed). */
static void write_imatrix(const char *path, int n_layers, int64_t hidden, int64_t ff)
{
    static const char *gg[7] = {"attn_q", "attn_k", "attn_v", "attn_output",
                                "ffn_gate", "ffn_up", "ffn_down"};
    FILE *f = fopen(path, "wb");
    int32_t n = n_layers * 7;
    int ok = f && fwrite(&n, 4, 1, f) == 1;
    for (int l = 0; ok && l < n_layers; l++)
        for (int k = 0; ok && k < 7; k++) {
            char *name = xasprintf("blk.%d.%s.weight", l, gg[k]);
            int32_t len = (int32_t)strlen(name), ncall = 1, nval = (int32_t)(k == 6 ? ff : hidden);
            ok = fwrite(&len, 4, 1, f) == 1 && fwrite(name, 1, (size_t)len, f) == (size_t)len &&
                 fwrite(&ncall, 4, 1, f) == 1 && fwrite(&nval, 4, 1, f) == 1;
            free(name);
            for (int32_t j = 0; ok && j < nval; j++) {
                /* the same values for q/k/v (one input), as a real imatrix has */
                int kk = k <= 2 ? 0 : k <= 5 && k >= 4 ? 4 : k;
                float v = powf(10.0f, (float)(((j * 37 + kk * 11 + l * 5) % 61) / 20.0 - 2.0));
                ok = fwrite(&v, 4, 1, f) == 1;
            }
        }
    if (!f || !ok || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

struct thr {
    const struct qfs_vfile *vf;
    uint8_t *b;
    int id, n;
    int fails;
};

static void *produce_some(void *arg)
{
    struct thr *a = arg;
    const struct qfs_vfile *vf = a->vf;
    int k = 0;
    for (int i = vf->n_tensors - 1; i >= 0; i--) { /* reverse order: o/down before q/up */
        const struct qfs_vtensor *t = &vf->tensors[i];
        for (int64_t c = t->n_chunks - 1; c >= 0; c--, k++) {
            if (k % a->n != a->id)
                continue;
            uint64_t off = t->offset + (uint64_t)c * (uint64_t)t->rows_per_chunk * t->row_bytes;
            if (qfs_vtensor_produce(t, c, a->b + off) != 0)
                a->fails++;
        }
    }
    return NULL;
}

static void check_determinism(const char *dir, const char *imx, int group)
{
    struct qfs_model *m = open_model(dir, group, imx);
    struct qfs_model *r = open_model(dir, group, NULL);
    const struct qfs_vfile *vf = awq_file(m), *vr = awq_file(r);
    CHECK(vf && vr && vf->size == vr->size && vf->head_len == vr->head_len &&
          memcmp(vf->head, vr->head, vf->head_len) == 0);
    if (!vf || !vr) {
        qfs_model_close(m);
        qfs_model_close(r);
        return;
    }
    uint8_t *b = vfile_bytes(vf);

    /* the same bytes from 4 threads in reverse chunk order on a fresh model */
    struct qfs_model *m2 = open_model(dir, group, imx);
    const struct qfs_vfile *vf2 = awq_file(m2);
    CHECK(vf2 && vf2->size == vf->size);
    uint8_t *b2 = xcalloc(1, vf->size);
    if (vf2 && vf2->size == vf->size) {
        qfs_vfile_head_read(vf2, 0, vf2->head_len, b2);
        pthread_t th[4];
        struct thr a[4];
        for (int i = 0; i < 4; i++) {
            a[i] = (struct thr){.vf = vf2, .b = b2, .id = i, .n = 4};
            if (pthread_create(&th[i], NULL, produce_some, &a[i]) != 0) {
                perror("pthread_create");
                exit(1);
            }
        }
        for (int i = 0; i < 4; i++) {
            CHECK(pthread_join(th[i], NULL) == 0);
            CHECK(a[i].fails == 0);
        }
        CHECK(memcmp(b, b2, vf->size) == 0);

        /* keys: per codec and group size, and the same on a fresh model */
        struct qfs_cache_key k1, k2;
        CHECK(qfs_vtensor_key(vf, &vf->tensors[0], 0, &k1) == 0);
        CHECK(qfs_vtensor_key(vf2, &vf2->tensors[0], 0, &k2) == 0);
        CHECK(memcmp(&k1, &k2, sizeof k1) == 0);
    }
    /* against RTN: a chunk whose bytes differ has another key (and an equal key means
     * equal bytes: embeddings, the final norm, lm_head, unquantized unscaled linears) */
    uint8_t *br = vfile_bytes(vr);
    int differ = 0;
    for (int i = 0; i < vf->n_tensors; i++) {
        const struct qfs_vtensor *t = &vf->tensors[i], *tr = &vr->tensors[i];
        CHECK(strcmp(t->name, tr->name) == 0 && t->offset == tr->offset);
        for (int64_t c = 0; c < t->n_chunks; c++) {
            struct qfs_cache_key k1, k3;
            CHECK(qfs_vtensor_key(vf, t, c, &k1) == 0);
            CHECK(qfs_vtensor_key(vr, tr, c, &k3) == 0);
            uint64_t off = t->offset + (uint64_t)c * (uint64_t)t->rows_per_chunk * t->row_bytes;
            int same_bytes = !memcmp(b + off, br + off, qfs_vtensor_chunk_bytes(t, c));
            int same_key = !memcmp(&k1, &k3, sizeof k1);
            CHECK(same_bytes || !same_key);
            differ += !same_key;
        }
    }
    CHECK(differ > 0);
    printf("# activation-aware g=%d: deterministic over threads and chunk order, %d chunk keys "
           "differ from round-to-nearest\n",
           group, differ);
    free(br);
    free(b);
    free(b2);
    qfs_model_close(m);
    qfs_model_close(m2);
    qfs_model_close(r);
}

static int dump(int argc, char **argv)
{
    if (argc < 6) {
        fprintf(stderr, "usage: test_awq dump MODEL_DIR GROUP IMATRIX|- OUT [CONFIG_OUT]\n");
        return 2;
    }
    struct qfs_model *m = open_model(argv[2], atoi(argv[3]),
                                     strcmp(argv[4], "-") ? argv[4] : NULL);
    const struct qfs_vfile *vf = awq_file(m);
    if (!vf) {
        qfs_model_close(m);
        return 1;
    }
    uint8_t *b = vfile_bytes(vf);
    write_file(argv[5], b, vf->size);
    free(b);
    if (argc > 6) {
        char *cj;
        size_t cl;
        if (qfs_awq_config_json(m, atoi(argv[3]), &cj, &cl) < 0) {
            qfs_model_close(m);
            return 1;
        }
        write_text(argv[6], cj);
        free(cj);
    }
    qfs_model_close(m);
    return n_fail ? 1 : 0;
}

static void genmodel(const char *exe, const char *out, const char *args)
{
    char *cmd = xasprintf("'%s' --out '%s' %s >/dev/null", exe, out, args);
    if (system(cmd) != 0) {
        fprintf(stderr, "failed: %s\n", cmd);
        exit(1);
    }
    free(cmd);
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "dump"))
        return dump(argc, argv);
    if (argc < 2) {
        printf("# no qfs-genmodel path given: skipped\n");
        return 77;
    }
    char *base = make_tmpdir();
    char *gen = xasprintf("%s/gen", base), *gen2 = xasprintf("%s/gen2", base),
         *gen3 = xasprintf("%s/gen3", base), *hand = xasprintf("%s/hand", base);
    /* gen: kv heads = heads, so v and o have the same shape and the v -> o scaling applies;
     * ff 192: down_proj's in_features is not a multiple of 128 (kept F16 there), but of
     * 64 and 32.  gen3: grouped-query attention (v [48, 96], o [96, 96]: no v -> o
     * scaling); in_features 96 of q/k/v/o/gate/up is not a multiple of 64: at g=64 only
     * down_proj is quantized, up_proj (kept F16) still takes down's 1/s on its rows. */
    genmodel(argv[1], gen, "--hidden 128 --layers 2 --heads 4 --kv-heads 4 --ff 192 "
                           "--vocab 320 --dtype bf16 --seed 7");
    genmodel(argv[1], gen3, "--hidden 96 --layers 2 --heads 4 --kv-heads 2 --ff 128 "
                            "--vocab 320 --dtype f16 --seed 11");
    char *imx = xasprintf("%s/gen.imatrix.dat", base);
    char *imx3 = xasprintf("%s/gen3.imatrix.dat", base);
    write_imatrix(imx, 2, 128, 192);
    write_imatrix(imx3, 2, 96, 128);

    check_file("gen RTN g=128", gen, 128, NULL, 0, NULL);
    check_file("gen RTN g=64", gen, 64, NULL, 0, NULL);
    check_file("gen RTN g=32", gen, 32, NULL, 0, NULL);
    check_file("gen3 RTN g=64", gen3, 64, NULL, 0, NULL);
    check_file("gen aware g=128", gen, 128, imx, 1, NULL);
    check_file("gen aware g=64", gen, 64, imx, 1, NULL);
    check_file("gen3 aware g=64", gen3, 64, imx3, 0, NULL);
    check_file("gen3 aware g=32", gen3, 32, imx3, 1, NULL);
    /* and they catch broken files */
    expect_caught("mutation: two nibbles swapped (RTN)", gen, 64, NULL, mut_swap_nibbles);
    expect_caught("mutation: two nibbles swapped (aware)", gen, 64, imx, mut_swap_nibbles);
    expect_caught("mutation: a scale 25% off (RTN)", gen, 64, NULL, mut_scale);
    expect_caught("mutation: a scale 25% off (aware)", gen, 64, imx, mut_scale);
    expect_caught("mutation: a norm weight doubled (aware)", gen, 64, imx, mut_norm);
    expect_caught("mutation: a v row out of step with o (aware)", gen, 64, imx, mut_pair);
    expect_caught("mutation: an embedding 1 ulp off (RTN)", gen, 64, NULL, mut_embed);

    genmodel(argv[1], gen2, "--hidden 64 --layers 1 --heads 4 --kv-heads 4 --ff 128 "
                            "--vocab 320 --dtype f16 --seed 3");
    if (mkdir(hand, 0755) != 0) {
        perror(hand);
        return 1;
    }
    make_handmade(gen2, hand);
    check_nibbles(hand);

    check_determinism(gen, imx, 64);
    check_determinism(gen, imx, 128);

    /* the shared fixture with llama.cpp's importance matrix */
    const char *shared = getenv("QFS_SHARED");
    char *tl = shared ? xasprintf("%s/models/tinyllama-256", shared) : NULL;
    char *tlimx = shared ? xasprintf("%s/reference/tinyllama-256/tinyllama-256.imatrix.gguf",
                                     shared)
                         : NULL;
    struct stat sb;
    if (tl && stat(tl, &sb) == 0 && stat(tlimx, &sb) == 0) {
        check_file("tinyllama-256 RTN g=128", tl, 128, NULL, 0, NULL);
        check_file("tinyllama-256 aware g=128", tl, 128, tlimx, -1, NULL);
        check_file("tinyllama-256 aware g=64", tl, 64, tlimx, -1, NULL);
    } else {
        printf("# QFS_SHARED/models/tinyllama-256 or its imatrix absent: fixture part skipped\n");
    }

    remove_tree(base);
    free(tl);
    free(tlimx);
    free(imx);
    free(imx3);
    free(gen);
    free(gen2);
    free(gen3);
    free(hand);
    free(base);
    if (n_fail)
        fprintf(stderr, "%d checks failed\n", n_fail);
    return n_fail ? 1 : 0;
}
