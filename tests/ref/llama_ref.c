// qfs-llama-ref: drives the llama.cpp libraries shipped in the npm package
// @node-llama-cpp/linux-x64@3.22.1 (llama.cpp source bundled as "v0.5.0", ggml 0.25.1)
// through dlopen/dlsym only, so that our GGUF files can be checked against llama.cpp itself.
//
// The structs below mirror the by-value ABI of include/llama.h at that revision; main()
// checks the library's default parameters against the values that revision is known to use
// before doing anything, so a layout mismatch fails loudly instead of corrupting memory.
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

// ---------------------------------------------------------------------------------------------
// ABI of the reference build (llama.h / ggml.h / gguf.h).

typedef int32_t llama_token;
typedef int32_t llama_pos;
typedef int32_t llama_seq_id;

struct llama_model;
struct llama_context;
struct llama_vocab;
struct llama_memory_i;
struct gguf_context;
struct ggml_context;

enum { LOG_LEVEL_NONE = 0, LOG_LEVEL_DEBUG = 1, LOG_LEVEL_INFO = 2, LOG_LEVEL_WARN = 3,
       LOG_LEVEL_ERROR = 4, LOG_LEVEL_CONT = 5 };
typedef void (*log_callback_fn)(int level, const char *text, void *user_data);

enum { LOAD_MODE_AUTO = -1, LOAD_MODE_NONE = 0, LOAD_MODE_MMAP = 1 };
enum { SPLIT_MODE_LAYER = 1 };
enum { LAZY_MODE_AUTO = 1 };
enum { FLASH_ATTN_AUTO = -1 };
enum { GGML_TYPE_F32 = 0, GGML_TYPE_F16 = 1, GGML_TYPE_COUNT = 43 };
enum { GGUF_TYPE_UINT32 = 4, GGUF_TYPE_STRING = 8, GGUF_TYPE_ARRAY = 9 };
enum { KV_OVERRIDE_INT = 0, KV_OVERRIDE_FLOAT = 1, KV_OVERRIDE_BOOL = 2, KV_OVERRIDE_STR = 3 };

struct ref_model_params {
    void *devices;
    const void *tensor_buft_overrides;
    int32_t n_gpu_layers;
    int split_mode;
    int load_mode;
    int lazy_mode;
    int32_t main_gpu;
    const float *tensor_split;
    bool (*progress_callback)(float progress, void *user_data);
    void *progress_callback_user_data;
    const void *kv_overrides;
    bool vocab_only;
    bool check_tensors;
    bool use_extra_bufts;
    bool no_host;
    bool no_alloc;
    bool load_mtp;
};

struct ref_context_params {
    uint32_t n_ctx;
    uint32_t n_batch;
    uint32_t n_ubatch;
    uint32_t n_seq_max;
    uint32_t n_rs_seq;
    uint32_t n_outputs_max;
    uint32_t n_outputs_max_per_seq;
    int32_t n_threads;
    int32_t n_threads_batch;
    int ctx_type;
    int rope_scaling_type;
    int pooling_type;
    int attention_type;
    int flash_attn_type;
    float rope_freq_base;
    float rope_freq_scale;
    float yarn_ext_factor;
    float yarn_attn_factor;
    float yarn_beta_fast;
    float yarn_beta_slow;
    uint32_t yarn_orig_ctx;
    float defrag_thold;
    void *cb_eval;
    void *cb_eval_user_data;
    int type_k;
    int type_v;
    void *abort_callback;
    void *abort_callback_data;
    bool embeddings;
    bool offload_kqv;
    bool no_perf;
    bool op_offload;
    bool swa_full;
    bool kv_unified;
    void *samplers;
    size_t n_samplers;
    struct llama_context *ctx_other;
};

struct ref_batch {
    int32_t n_tokens;
    llama_token *token;
    float *embd;
    llama_pos *pos;
    int32_t *n_seq_id;
    llama_seq_id **seq_id;
    int8_t *logits;
};

struct ref_kv_override {
    int tag;
    char key[128];
    union {
        int64_t val_i64;
        double val_f64;
        bool val_bool;
        char val_str[128];
    } v;
};

struct ref_imatrix_data {
    const char *name;
    const float *data;
    size_t size;
};

struct ref_quantize_params {
    int32_t nthread;
    int ftype;
    int output_tensor_type;
    int token_embedding_type;
    bool allow_requantize;
    bool quantize_output_tensor;
    bool only_copy;
    bool pure;
    bool keep_split;
    bool dry_run;
    const struct ref_imatrix_data *imatrix;
    const struct ref_kv_override *kv_overrides;
    const void *tt_overrides;
    const int32_t *prune_layers;
    size_t max_buf_size;
};

struct ref_gguf_init_params {
    bool no_alloc;
    struct ggml_context **ctx;
};

// ---------------------------------------------------------------------------------------------
// Symbols resolved at run time.

static struct {
    void (*ggml_log_set)(log_callback_fn, void *);
    void (*ggml_backend_load_all_from_path)(const char *);
    void *(*ggml_backend_load)(const char *);
    size_t (*ggml_backend_reg_count)(void);
    size_t (*ggml_backend_dev_count)(void);

    const char *(*llama_version)(void);
    void (*llama_log_set)(log_callback_fn, void *);
    void (*llama_backend_init)(void);
    void (*llama_backend_free)(void);
    struct ref_model_params (*llama_model_default_params)(void);
    struct ref_context_params (*llama_context_default_params)(void);
    struct ref_quantize_params (*llama_model_quantize_default_params)(void);
    struct llama_model *(*llama_model_load_from_file)(const char *, struct ref_model_params);
    void (*llama_model_free)(struct llama_model *);
    struct llama_context *(*llama_init_from_model)(struct llama_model *, struct ref_context_params);
    void (*llama_free)(struct llama_context *);
    const struct llama_vocab *(*llama_model_get_vocab)(const struct llama_model *);
    int32_t (*llama_vocab_n_tokens)(const struct llama_vocab *);
    uint64_t (*llama_model_n_params)(const struct llama_model *);
    uint64_t (*llama_model_size)(const struct llama_model *);
    bool (*llama_vocab_get_add_bos)(const struct llama_vocab *);
    bool (*llama_vocab_get_add_eos)(const struct llama_vocab *);
    llama_token (*llama_vocab_bos)(const struct llama_vocab *);
    int32_t (*llama_tokenize)(const struct llama_vocab *, const char *, int32_t, llama_token *,
                              int32_t, bool, bool);
    int32_t (*llama_detokenize)(const struct llama_vocab *, const llama_token *, int32_t, char *,
                                int32_t, bool, bool);
    struct ref_batch (*llama_batch_init)(int32_t, int32_t, int32_t);
    void (*llama_batch_free)(struct ref_batch);
    int32_t (*llama_decode)(struct llama_context *, struct ref_batch);
    float *(*llama_get_logits_ith)(struct llama_context *, int32_t);
    struct llama_memory_i *(*llama_get_memory)(const struct llama_context *);
    void (*llama_memory_clear)(struct llama_memory_i *, bool);
    uint32_t (*llama_model_quantize)(const char *, const char *, const struct ref_quantize_params *);

    struct gguf_context *(*gguf_init_from_file)(const char *, struct ref_gguf_init_params);
    void (*gguf_free)(struct gguf_context *);
    size_t (*gguf_get_data_offset)(const struct gguf_context *);
    int64_t (*gguf_find_key)(const struct gguf_context *, const char *);
    int (*gguf_get_kv_type)(const struct gguf_context *, int64_t);
    int (*gguf_get_arr_type)(const struct gguf_context *, int64_t);
    uint32_t (*gguf_get_val_u32)(const struct gguf_context *, int64_t);
    size_t (*gguf_get_arr_n)(const struct gguf_context *, int64_t);
    const char *(*gguf_get_arr_str)(const struct gguf_context *, int64_t, size_t);
    int64_t (*gguf_get_n_tensors)(const struct gguf_context *);
    size_t (*gguf_get_tensor_offset)(const struct gguf_context *, int64_t);
    const char *(*gguf_get_tensor_name)(const struct gguf_context *, int64_t);
    int (*gguf_get_tensor_type)(const struct gguf_context *, int64_t);
    size_t (*gguf_get_tensor_size)(const struct gguf_context *, int64_t);
} L;

static bool g_verbose;
static int g_threads = 2;
static int g_flash_attn = FLASH_ATTN_AUTO;

static void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("qfs-llama-ref: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

static void log_cb(int level, const char *text, void *user_data)
{
    (void)user_data;
    if (g_verbose || level == LOG_LEVEL_ERROR)
        fputs(text, stderr);
}

static void *open_lib(const char *dir, const char *name)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path)
        die("library path too long");
    void *h = dlopen(path, RTLD_NOW | RTLD_GLOBAL);
    if (!h)
        die("cannot load %s: %s (set QFS_LLAMA_LIB_DIR or --lib; tests/setup-ref.sh installs it)",
            path, dlerror());
    return h;
}

static void *sym(void *h, const char *name)
{
    void *p = dlsym(h, name);
    if (!p)
        die("symbol %s not found in the reference libraries", name);
    return p;
}

// Function pointers from dlsym: go through memcpy so -Wpedantic stays quiet about
// object-to-function pointer conversion.
#define BIND(h, f)                                  \
    do {                                            \
        void *p_ = sym((h), #f);                    \
        memcpy(&L.f, &p_, sizeof L.f);              \
    } while (0)

static void check_abi(void)
{
    struct ref_model_params mp = L.llama_model_default_params();
    if (mp.devices || mp.tensor_buft_overrides || mp.n_gpu_layers != -1 ||
        mp.split_mode != SPLIT_MODE_LAYER || mp.load_mode != LOAD_MODE_AUTO ||
        mp.lazy_mode != LAZY_MODE_AUTO || mp.main_gpu != 0 || mp.tensor_split ||
        mp.progress_callback || mp.kv_overrides || mp.vocab_only || mp.check_tensors ||
        !mp.use_extra_bufts || mp.no_host || mp.no_alloc || mp.load_mtp)
        die("llama_model_params layout does not match this build of libllama");

    struct ref_context_params cp = L.llama_context_default_params();
    if (cp.n_ctx != 512 || cp.n_batch != 2048 || cp.n_ubatch != 512 || cp.n_seq_max != 1 ||
        cp.n_rs_seq != 0 || cp.n_outputs_max != 0 || cp.n_outputs_max_per_seq != 1 ||
        cp.n_threads <= 0 || cp.n_threads_batch <= 0 || cp.ctx_type != 0 ||
        cp.rope_scaling_type != -1 || cp.pooling_type != -1 || cp.attention_type != -1 ||
        cp.flash_attn_type != FLASH_ATTN_AUTO || cp.rope_freq_base != 0.0f ||
        cp.yarn_ext_factor != -1.0f || cp.yarn_beta_slow != -1.0f || cp.yarn_orig_ctx != 0 ||
        cp.defrag_thold != -1.0f || cp.cb_eval || cp.type_k != GGML_TYPE_F16 ||
        cp.type_v != GGML_TYPE_F16 || cp.abort_callback || cp.embeddings || !cp.offload_kqv ||
        !cp.no_perf || !cp.op_offload || !cp.swa_full || cp.kv_unified || cp.samplers ||
        cp.n_samplers != 0 || cp.ctx_other)
        die("llama_context_params layout does not match this build of libllama");

    struct ref_quantize_params qp = L.llama_model_quantize_default_params();
    if (qp.nthread != 0 || qp.ftype != 7 || qp.output_tensor_type != GGML_TYPE_COUNT ||
        qp.token_embedding_type != GGML_TYPE_COUNT || qp.allow_requantize ||
        !qp.quantize_output_tensor || qp.only_copy || qp.pure || qp.keep_split || qp.dry_run ||
        qp.imatrix || qp.kv_overrides || qp.tt_overrides || qp.prune_layers ||
        qp.max_buf_size == 0)
        die("llama_model_quantize_params layout does not match this build of libllama");
}

static void load_libs(const char *dir)
{
    void *base = open_lib(dir, "libggml-base.so");
    void *ggml = open_lib(dir, "libggml.v0.5.0.so");
    void *llama = open_lib(dir, "libllama.v0.5.0.so");

    BIND(base, ggml_log_set);
    BIND(base, gguf_init_from_file);
    BIND(base, gguf_free);
    BIND(base, gguf_get_data_offset);
    BIND(base, gguf_find_key);
    BIND(base, gguf_get_kv_type);
    BIND(base, gguf_get_arr_type);
    BIND(base, gguf_get_val_u32);
    BIND(base, gguf_get_arr_n);
    BIND(base, gguf_get_arr_str);
    BIND(base, gguf_get_n_tensors);
    BIND(base, gguf_get_tensor_offset);
    BIND(base, gguf_get_tensor_name);
    BIND(base, gguf_get_tensor_type);
    BIND(base, gguf_get_tensor_size);
    BIND(ggml, ggml_backend_load_all_from_path);
    BIND(ggml, ggml_backend_load);
    BIND(ggml, ggml_backend_reg_count);
    BIND(ggml, ggml_backend_dev_count);
    BIND(llama, llama_version);
    BIND(llama, llama_log_set);
    BIND(llama, llama_backend_init);
    BIND(llama, llama_backend_free);
    BIND(llama, llama_model_default_params);
    BIND(llama, llama_context_default_params);
    BIND(llama, llama_model_quantize_default_params);
    BIND(llama, llama_model_load_from_file);
    BIND(llama, llama_model_free);
    BIND(llama, llama_init_from_model);
    BIND(llama, llama_free);
    BIND(llama, llama_model_get_vocab);
    BIND(llama, llama_vocab_n_tokens);
    BIND(llama, llama_model_n_params);
    BIND(llama, llama_model_size);
    BIND(llama, llama_vocab_get_add_bos);
    BIND(llama, llama_vocab_get_add_eos);
    BIND(llama, llama_vocab_bos);
    BIND(llama, llama_tokenize);
    BIND(llama, llama_detokenize);
    BIND(llama, llama_batch_init);
    BIND(llama, llama_batch_free);
    BIND(llama, llama_decode);
    BIND(llama, llama_get_logits_ith);
    BIND(llama, llama_get_memory);
    BIND(llama, llama_memory_clear);
    BIND(llama, llama_model_quantize);

    L.ggml_log_set(log_cb, NULL);
    L.llama_log_set(log_cb, NULL);
    check_abi();
    // QFS_LLAMA_CPU_VARIANT=haswell|x64|sse42|...: force one CPU backend instead of the best one.
    const char *variant = getenv("QFS_LLAMA_CPU_VARIANT");
    if (variant && *variant) {
        char path[PATH_MAX];
        if (snprintf(path, sizeof path, "%s/libggml-cpu-%s.so", dir, variant) >= (int)sizeof path)
            die("library path too long");
        if (!L.ggml_backend_load(path))
            die("cannot load CPU backend %s", path);
    } else {
        L.ggml_backend_load_all_from_path(dir);
    }
    if (L.ggml_backend_dev_count() == 0)
        die("no ggml backend device found in %s (missing libggml-cpu-*.so?)", dir);
    L.llama_backend_init();
    if (g_verbose)
        fprintf(stderr, "llama version %s, %zu backends, %zu devices\n", L.llama_version(),
                L.ggml_backend_reg_count(), L.ggml_backend_dev_count());
}

// ---------------------------------------------------------------------------------------------
// Helpers.

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static long parse_long(const char *s, const char *what, long lo, long hi)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        die("invalid %s '%s'", what, s);
    return v;
}

static struct llama_model *load_model(const char *path)
{
    struct ref_model_params mp = L.llama_model_default_params();
    mp.load_mode = LOAD_MODE_MMAP;
    mp.n_gpu_layers = 0;
    struct llama_model *m = L.llama_model_load_from_file(path, mp);
    if (!m)
        die("failed to load model %s (rerun with -v for llama.cpp's log)", path);
    return m;
}

static struct llama_context *new_context(struct llama_model *m, uint32_t n_ctx, uint32_t n_batch)
{
    struct ref_context_params cp = L.llama_context_default_params();
    cp.n_ctx = n_ctx;
    cp.n_batch = n_batch;
    cp.n_seq_max = 1;
    cp.n_threads = g_threads;
    cp.n_threads_batch = g_threads;
    cp.flash_attn_type = g_flash_attn;
    struct llama_context *c = L.llama_init_from_model(m, cp);
    if (!c)
        die("failed to create a llama context (n_ctx %u)", n_ctx);
    return c;
}

// common_tokenize's contract: size the buffer from the text, retry with the exact count.
static llama_token *tokenize(const struct llama_vocab *v, const char *text, size_t len,
                             bool add_special, int32_t *n_out)
{
    if (len > INT32_MAX - 2)
        die("text too long to tokenize");
    int32_t cap = (int32_t)len + 2;
    llama_token *t = malloc(sizeof *t * (size_t)cap);
    if (!t)
        die("out of memory");
    int32_t n = L.llama_tokenize(v, text, (int32_t)len, t, cap, add_special, false);
    if (n == INT32_MIN)
        die("tokenization overflow");
    if (n < 0) {
        cap = -n;
        free(t);
        t = malloc(sizeof *t * (size_t)cap);
        if (!t)
            die("out of memory");
        n = L.llama_tokenize(v, text, (int32_t)len, t, cap, add_special, false);
        if (n < 0)
            die("tokenization failed");
    }
    *n_out = n;
    return t;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        die("cannot open %s: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    if (!buf)
        die("out of memory");
    for (;;) {
        if (n + 1 >= cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            if (!buf)
                die("out of memory");
        }
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0)
            break;
    }
    if (ferror(f))
        die("read error on %s", path);
    fclose(f);
    buf[n] = 0;
    *len = n;
    return buf;
}

static int argmax(const float *x, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best])
            best = i;
    return best;
}

// ---------------------------------------------------------------------------------------------
// Subcommands.

static int cmd_load(const char *file)
{
    struct llama_model *m = load_model(file);
    const struct llama_vocab *v = L.llama_model_get_vocab(m);
    printf("n_vocab: %d\n", L.llama_vocab_n_tokens(v));
    printf("n_params: %llu\n", (unsigned long long)L.llama_model_n_params(m));
    printf("size: %llu\n", (unsigned long long)L.llama_model_size(m));
    L.llama_model_free(m);
    return 0;
}

static int cmd_tokenize(const char *file, const char *text)
{
    struct ref_model_params mp = L.llama_model_default_params();
    mp.vocab_only = true;
    mp.load_mode = LOAD_MODE_MMAP;
    struct llama_model *m = L.llama_model_load_from_file(file, mp);
    if (!m)
        die("failed to load vocabulary of %s", file);
    int32_t n;
    llama_token *t = tokenize(L.llama_model_get_vocab(m), text, strlen(text), true, &n);
    for (int32_t i = 0; i < n; i++)
        printf(i ? " %d" : "%d", t[i]);
    putchar('\n');
    free(t);
    L.llama_model_free(m);
    return 0;
}

static int cmd_generate(const char *file, int n_gen, const char *prompt)
{
    struct llama_model *m = load_model(file);
    const struct llama_vocab *v = L.llama_model_get_vocab(m);
    const int n_vocab = L.llama_vocab_n_tokens(v);
    int32_t n_prompt;
    llama_token *prompt_toks = tokenize(v, prompt, strlen(prompt), true, &n_prompt);
    if (n_prompt == 0) {
        // Nothing to condition on (empty prompt, vocab adds no BOS): start from BOS anyway.
        llama_token bos = L.llama_vocab_bos(v);
        if (bos < 0)
            die("empty prompt and the vocabulary has no BOS token");
        prompt_toks[0] = bos;
        n_prompt = 1;
    }
    uint32_t n_ctx = (uint32_t)n_prompt + (uint32_t)n_gen + 1;
    struct llama_context *c = new_context(m, n_ctx, n_ctx);
    struct ref_batch b = L.llama_batch_init((int32_t)n_ctx, 0, 1);
    llama_token *out = malloc(sizeof *out * (size_t)(n_gen + 1));
    if (!out)
        die("out of memory");

    b.n_tokens = n_prompt;
    for (int32_t i = 0; i < n_prompt; i++) {
        b.token[i] = prompt_toks[i];
        b.pos[i] = i;
        b.n_seq_id[i] = 1;
        b.seq_id[i][0] = 0;
        b.logits[i] = i == n_prompt - 1;
    }
    int pos = n_prompt;
    for (int g = 0; g < n_gen; g++) {
        if (L.llama_decode(c, b))
            die("llama_decode failed at position %d", pos);
        const float *lg = L.llama_get_logits_ith(c, -1);
        if (!lg)
            die("no logits");
        llama_token t = argmax(lg, n_vocab);
        out[g] = t;
        b.n_tokens = 1;
        b.token[0] = t;
        b.pos[0] = pos++;
        b.n_seq_id[0] = 1;
        b.seq_id[0][0] = 0;
        b.logits[0] = 1;
    }
    for (int g = 0; g < n_gen; g++)
        printf(g ? " %d" : "%d", out[g]);
    putchar('\n');
    int32_t cap = 64 + 64 * n_gen;
    char *text = malloc((size_t)cap);
    if (!text)
        die("out of memory");
    int32_t len = L.llama_detokenize(v, out, n_gen, text, cap, false, false);
    if (len < 0) {
        cap = -len;
        text = realloc(text, (size_t)cap);
        if (!text)
            die("out of memory");
        len = L.llama_detokenize(v, out, n_gen, text, cap, false, false);
        if (len < 0)
            die("detokenize failed");
    }
    fwrite(text, 1, (size_t)len, stdout);
    putchar('\n');
    free(text);
    free(out);
    free(prompt_toks);
    L.llama_batch_free(b);
    L.llama_free(c);
    L.llama_model_free(m);
    return 0;
}

// Window [0, n_ctx) of tokens as one sequence, logits for positions >= first, the first
// token replaced by bos when bos >= 0 (llama-perplexity's windows).
static void fill_window(struct ref_batch *b, const llama_token *tokens, int n_ctx, int first,
                        llama_token bos)
{
    b->n_tokens = n_ctx;
    for (int k = 0; k < n_ctx; k++) {
        b->token[k] = (k == 0 && bos >= 0) ? bos : tokens[k];
        b->pos[k] = k;
        b->n_seq_id[k] = 1;
        b->seq_id[k][0] = 0;
        b->logits[k] = k >= first;
    }
}

// llama-perplexity's default method (tools/perplexity/perplexity.cpp, perplexity()), with
// -b equal to -c so that every window is one sequence decoded in one batch.
static int cmd_perplexity(const char *file, const char *textfile, int n_ctx, int n_chunks_req)
{
    size_t len;
    char *text = read_file(textfile, &len);
    if (len && text[len - 1] == '\n') // as llama's -f: drop one trailing newline
        text[--len] = 0;

    struct llama_model *m = load_model(file);
    const struct llama_vocab *v = L.llama_model_get_vocab(m);
    const int n_vocab = L.llama_vocab_n_tokens(v);
    const bool add_bos = L.llama_vocab_get_add_bos(v);
    if (L.llama_vocab_get_add_eos(v))
        die("vocabularies that add EOS are not supported (llama-perplexity refuses them too)");

    double t0 = now_s();
    int32_t n_tok;
    llama_token *tokens = tokenize(v, text, len, true, &n_tok);
    if (n_tok < 2 * n_ctx)
        die("need at least %d tokens for a context of %d, %s has %d", 2 * n_ctx, n_ctx, textfile,
            n_tok);
    const int n_chunk_max = n_tok / n_ctx;
    const int n_chunk = n_chunks_req < 0 ? n_chunk_max
                        : (n_chunks_req < n_chunk_max ? n_chunks_req : n_chunk_max);
    const int first = n_ctx / 2;

    struct llama_context *c = new_context(m, (uint32_t)n_ctx, (uint32_t)n_ctx);
    struct ref_batch b = L.llama_batch_init(n_ctx, 0, 1);
    if (g_verbose)
        fprintf(stderr, "%d tokens, %d chunks of %d, scoring the last %d of each\n", n_tok, n_chunk,
                n_ctx, n_ctx - 1 - first);

    double nll = 0.0, nll2 = 0.0;
    long count = 0;
    for (int i = 0; i < n_chunk; i++) {
        const int start = i * n_ctx;
        L.llama_memory_clear(L.llama_get_memory(c), true);
        fill_window(&b, tokens + start, n_ctx, first, add_bos ? L.llama_vocab_bos(v) : -1);
        if (L.llama_decode(c, b))
            die("llama_decode failed on chunk %d", i);
        const float *all = L.llama_get_logits_ith(c, first);
        if (!all)
            die("no logits for chunk %d", i);
        const llama_token *tk = tokens + start + first;
        for (int j = 0; j < n_ctx - 1 - first; j++) {
            const float *lg = all + (size_t)j * (size_t)n_vocab;
            float mx = lg[0];
            for (int t = 1; t < n_vocab; t++)
                mx = fmaxf(mx, lg[t]);
            double sum = 0.0;
            for (int t = 0; t < n_vocab; t++)
                sum += expf(lg[t] - mx);
            const float d = lg[tk[j + 1]] - mx;
            const double lsm = (double)d - log(sum);
            nll += -lsm;
            nll2 += lsm * lsm;
        }
        count += n_ctx - first - 1;
        if (g_verbose)
            fprintf(stderr, "[%d]%.4f,%s", i + 1, exp(nll / (double)count),
                    (i + 1) % 10 == 0 || i + 1 == n_chunk ? "\n" : "");
    }
    const double mean = nll / (double)count;
    const double ppl = exp(mean);
    double var = nll2 / (double)count - mean * mean;
    double err = var > 0 ? sqrt(var / (double)(count - 1)) * ppl : 0.0;
    printf("ppl: %.4f\n", ppl);
    if (g_verbose)
        fprintf(stderr, "ppl (more digits): %.8f\n", ppl);
    printf("ppl_err: %.5f\n", err);
    printf("chunks: %d\n", n_chunk);
    if (g_verbose)
        fprintf(stderr, "%.2f s\n", now_s() - t0);

    L.llama_batch_free(b);
    L.llama_free(c);
    L.llama_model_free(m);
    free(tokens);
    free(text);
    return 0;
}

// How far each FILE's next-token distributions are from BASE's on the same windows (as
// llama-perplexity --kl-divergence measures quantization damage): the mean over scored
// tokens of KL(base || file) in nats, the share of tokens whose most likely next token is
// the same, both perplexities, and the paired difference of the mean token NLL
// (file - base) with its standard error.  KL and the paired difference are far less noisy
// than two perplexities compared by eye when both are close to the base's.  Windows as in
// cmd_perplexity; BASE is decoded once per window.
struct kld_acc {
    double kl, kl2, nll, dn2;
    long same_top;
};

static double log_softmax_at(const float *lg, int n, float *mx_out, double *lse_out, int t)
{
    float mx = lg[0];
    for (int k = 1; k < n; k++)
        mx = fmaxf(mx, lg[k]);
    double sum = 0.0;
    for (int k = 0; k < n; k++)
        sum += exp((double)(lg[k] - mx));
    *mx_out = mx;
    *lse_out = log(sum);
    return (double)(lg[t] - mx) - *lse_out;
}

static int cmd_kld(const char *base, char **files, int n_files, const char *textfile, int n_ctx,
                   int n_chunks_req)
{
    size_t len;
    char *text = read_file(textfile, &len);
    if (len && text[len - 1] == '\n')
        text[--len] = 0;
    struct llama_model *mb = load_model(base);
    const struct llama_vocab *v = L.llama_model_get_vocab(mb);
    const int n_vocab = L.llama_vocab_n_tokens(v);
    const bool add_bos = L.llama_vocab_get_add_bos(v);
    struct llama_model **mf = calloc((size_t)n_files, sizeof *mf);
    struct llama_context **cf = calloc((size_t)n_files, sizeof *cf);
    struct kld_acc *acc = calloc((size_t)n_files, sizeof *acc);
    if (!mf || !cf || !acc)
        die("out of memory");
    int32_t n_tok;
    llama_token *tokens = tokenize(v, text, len, true, &n_tok);
    if (n_tok < 2 * n_ctx)
        die("need at least %d tokens for a context of %d", 2 * n_ctx, n_ctx);
    const int n_chunk_max = n_tok / n_ctx;
    const int n_chunk = n_chunks_req < 0 ? n_chunk_max
                        : (n_chunks_req < n_chunk_max ? n_chunks_req : n_chunk_max);
    const int first = n_ctx / 2;
    struct llama_context *cb = new_context(mb, (uint32_t)n_ctx, (uint32_t)n_ctx);
    for (int f = 0; f < n_files; f++) {
        mf[f] = load_model(files[f]);
        if (L.llama_vocab_n_tokens(L.llama_model_get_vocab(mf[f])) != n_vocab)
            die("%s and %s have different vocabularies", base, files[f]);
        cf[f] = new_context(mf[f], (uint32_t)n_ctx, (uint32_t)n_ctx);
    }
    struct ref_batch b = L.llama_batch_init(n_ctx, 0, 1);
    double nll_b = 0.0;
    long count = 0;
    for (int i = 0; i < n_chunk; i++) {
        const int start = i * n_ctx;
        fill_window(&b, tokens + start, n_ctx, first, add_bos ? L.llama_vocab_bos(v) : -1);
        L.llama_memory_clear(L.llama_get_memory(cb), true);
        if (L.llama_decode(cb, b))
            die("llama_decode failed on chunk %d of %s", i, base);
        const float *ab = L.llama_get_logits_ith(cb, first);
        if (!ab)
            die("no logits for chunk %d", i);
        const llama_token *tk = tokens + start + first;
        const int n_scored = n_ctx - 1 - first;
        double *lpb = malloc((size_t)n_scored * sizeof *lpb);
        if (!lpb)
            die("out of memory");
        for (int j = 0; j < n_scored; j++) {
            float mx;
            double lse;
            lpb[j] = log_softmax_at(ab + (size_t)j * (size_t)n_vocab, n_vocab, &mx, &lse, tk[j + 1]);
            nll_b -= lpb[j];
        }
        for (int f = 0; f < n_files; f++) {
            L.llama_memory_clear(L.llama_get_memory(cf[f]), true);
            if (L.llama_decode(cf[f], b))
                die("llama_decode failed on chunk %d of %s", i, files[f]);
            const float *af = L.llama_get_logits_ith(cf[f], first);
            if (!af)
                die("no logits for chunk %d", i);
            struct kld_acc *A = &acc[f];
            for (int j = 0; j < n_scored; j++) {
                const float *lb = ab + (size_t)j * (size_t)n_vocab;
                const float *lf = af + (size_t)j * (size_t)n_vocab;
                float mxb, mxf;
                double lseb, lsef;
                (void)log_softmax_at(lb, n_vocab, &mxb, &lseb, 0);
                const double lpf = log_softmax_at(lf, n_vocab, &mxf, &lsef, tk[j + 1]);
                A->nll -= lpf;
                A->dn2 += (lpb[j] - lpf) * (lpb[j] - lpf);
                double d = 0.0;
                for (int t = 0; t < n_vocab; t++) {
                    const double pb = (double)(lb[t] - mxb) - lseb;
                    const double pf = (double)(lf[t] - mxf) - lsef;
                    d += exp(pb) * (pb - pf);
                }
                A->kl += d;
                A->kl2 += d * d;
                A->same_top += argmax(lb, n_vocab) == argmax(lf, n_vocab);
            }
        }
        free(lpb);
        count += n_scored;
    }
    printf("base: %s\nppl_base: %.4f\nchunks: %d\n", base, exp(nll_b / (double)count), n_chunk);
    for (int f = 0; f < n_files; f++) {
        const struct kld_acc *A = &acc[f];
        const double n = (double)count, kl = A->kl / n, klv = A->kl2 / n - kl * kl;
        const double dn = (A->nll - nll_b) / n, dnv = A->dn2 / n - dn * dn;
        printf("file: %s\n", files[f]);
        printf("kld: %.6f\nkld_err: %.6f\n", kl, klv > 0 ? sqrt(klv / (n - 1)) : 0.0);
        printf("same_top: %.4f\n", (double)A->same_top / n);
        printf("ppl: %.4f\n", exp(A->nll / n));
        printf("dnll: %.6f\ndnll_err: %.6f\n", dn, dnv > 0 ? sqrt(dnv / (n - 1)) : 0.0);
        L.llama_free(cf[f]);
        L.llama_model_free(mf[f]);
    }
    L.llama_batch_free(b);
    L.llama_free(cb);
    L.llama_model_free(mb);
    free(mf);
    free(cf);
    free(acc);
    free(tokens);
    free(text);
    return 0;
}

static const struct {
    const char *name;
    int ftype;
} k_ftypes[] = {
    {"F32", 0},       {"F16", 1},      {"Q4_0", 2},     {"Q4_1", 3},       {"Q8_0", 7},
    {"Q5_0", 8},      {"Q5_1", 9},     {"Q2_K", 10},    {"Q3_K_S", 11},    {"Q3_K_M", 12},
    {"Q3_K_L", 13},   {"Q4_K_S", 14},  {"Q4_K_M", 15},  {"Q5_K_S", 16},    {"Q5_K_M", 17},
    {"Q6_K", 18},     {"IQ2_XXS", 19}, {"IQ2_XS", 20},  {"Q2_K_S", 21},    {"IQ3_XS", 22},
    {"IQ3_XXS", 23},  {"IQ1_S", 24},   {"IQ4_NL", 25},  {"IQ3_S", 26},     {"IQ3_M", 27},
    {"IQ2_S", 28},    {"IQ2_M", 29},   {"IQ4_XS", 30},  {"IQ1_M", 31},     {"BF16", 32},
    {"TQ1_0", 36},    {"TQ2_0", 37},   {"MXFP4_MOE", 38}, {"NVFP4", 39},   {"Q1_0", 40},
    {"Q2_0", 41},
};

// An importance matrix in llama-imatrix's GGUF format (<tensor>.in_sum2 and <tensor>.counts,
// both F32), turned into the per-column means llama-quantize passes to llama_model_quantize.
struct imatrix {
    size_t n;
    struct ref_imatrix_data *entries; // n + 1, NULL-terminated
    char **names;
    float **data;
    char dataset[128];
    uint32_t chunk_count;
};

static bool strip_suffix(char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    if (a < b || strcmp(s + a - b, suf))
        return false;
    s[a - b] = 0;
    return true;
}

static float *read_f32_tensor(int fd, const struct gguf_context *g, int64_t id, size_t *n)
{
    if (L.gguf_get_tensor_type(g, id) != GGML_TYPE_F32)
        die("imatrix tensor %s is not F32", L.gguf_get_tensor_name(g, id));
    size_t bytes = L.gguf_get_tensor_size(g, id);
    off_t off = (off_t)(L.gguf_get_data_offset(g) + L.gguf_get_tensor_offset(g, id));
    float *buf = malloc(bytes ? bytes : 1);
    if (!buf)
        die("out of memory");
    if (pread(fd, buf, bytes, off) != (ssize_t)bytes)
        die("short read in imatrix file");
    *n = bytes / sizeof(float);
    return buf;
}

static void load_imatrix(const char *path, struct imatrix *im)
{
    struct ref_gguf_init_params gp = {.no_alloc = true, .ctx = NULL};
    struct gguf_context *g = L.gguf_init_from_file(path, gp);
    if (!g)
        die("cannot read imatrix %s (only the GGUF imatrix format is supported)", path);
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        die("cannot open %s: %s", path, strerror(errno));
    int64_t kd = L.gguf_find_key(g, "imatrix.datasets");
    int64_t kc = L.gguf_find_key(g, "imatrix.chunk_count");
    int64_t ks = L.gguf_find_key(g, "imatrix.chunk_size");
    if (kd < 0 || kc < 0 || ks < 0)
        die("missing imatrix metadata in %s", path);
    im->dataset[0] = 0;
    if (L.gguf_get_kv_type(g, kd) == GGUF_TYPE_ARRAY &&
        L.gguf_get_arr_type(g, kd) == GGUF_TYPE_STRING && L.gguf_get_arr_n(g, kd) > 0)
        snprintf(im->dataset, sizeof im->dataset, "%s", L.gguf_get_arr_str(g, kd, 0));
    im->chunk_count = L.gguf_get_val_u32(g, kc);

    int64_t nt = L.gguf_get_n_tensors(g);
    im->entries = calloc((size_t)nt + 1, sizeof *im->entries);
    im->names = calloc((size_t)nt + 1, sizeof *im->names);
    im->data = calloc((size_t)nt + 1, sizeof *im->data);
    if (!im->entries || !im->names || !im->data)
        die("out of memory");
    im->n = 0;
    for (int64_t i = 0; i < nt; i++) {
        char *name = strdup(L.gguf_get_tensor_name(g, i));
        if (!name)
            die("out of memory");
        if (!strip_suffix(name, ".in_sum2")) {
            free(name);
            continue;
        }
        char cname[512];
        snprintf(cname, sizeof cname, "%s.counts", name);
        int64_t ci = -1;
        for (int64_t j = 0; j < nt; j++)
            if (!strcmp(L.gguf_get_tensor_name(g, j), cname))
                ci = j;
        if (ci < 0)
            die("imatrix: no counts for %s", name);
        size_t nval, ncounts;
        float *sums = read_f32_tensor(fd, g, i, &nval);
        float *counts = read_f32_tensor(fd, g, ci, &ncounts);
        if (ncounts == 0 || nval % ncounts)
            die("imatrix: bad shape for %s", name);
        size_t ne0 = nval / ncounts;
        for (size_t j = 0; j < ncounts; j++) {
            const float cnt = (float)lroundf(counts[j]);
            for (size_t k = 0; k < ne0; k++)
                sums[j * ne0 + k] = cnt > 0.0f ? sums[j * ne0 + k] / cnt : 1.0f;
        }
        free(counts);
        im->names[im->n] = name;
        im->data[im->n] = sums;
        im->entries[im->n] = (struct ref_imatrix_data){name, sums, nval};
        im->n++;
    }
    close(fd);
    L.gguf_free(g);
    if (im->n == 0)
        die("no entries in imatrix %s", path);
}

static int cmd_quantize(const char *in, const char *out, const char *type, int nthread,
                        const char *imatrix_path, const char *imatrix_name)
{
    int ftype = -1;
    for (size_t i = 0; i < sizeof k_ftypes / sizeof k_ftypes[0]; i++)
        if (!strcasecmp(type, k_ftypes[i].name))
            ftype = k_ftypes[i].ftype;
    if (ftype < 0)
        die("unknown type %s", type);

    struct ref_quantize_params qp = L.llama_model_quantize_default_params();
    qp.nthread = nthread;
    qp.ftype = ftype;

    struct imatrix im = {0};
    struct ref_kv_override kv[5];
    memset(kv, 0, sizeof kv);
    if (imatrix_path) {
        // Same metadata as llama-quantize --imatrix FILE.
        load_imatrix(imatrix_path, &im);
        qp.imatrix = im.entries;
        int k = 0;
        kv[k].tag = KV_OVERRIDE_STR;
        snprintf(kv[k].key, sizeof kv[k].key, "quantize.imatrix.file");
        snprintf(kv[k].v.val_str, sizeof kv[k].v.val_str, "%s",
                 imatrix_name ? imatrix_name : imatrix_path);
        k++;
        if (im.dataset[0]) {
            kv[k].tag = KV_OVERRIDE_STR;
            snprintf(kv[k].key, sizeof kv[k].key, "quantize.imatrix.dataset");
            snprintf(kv[k].v.val_str, sizeof kv[k].v.val_str, "%s", im.dataset);
            k++;
        }
        kv[k].tag = KV_OVERRIDE_INT;
        snprintf(kv[k].key, sizeof kv[k].key, "quantize.imatrix.entries_count");
        kv[k].v.val_i64 = (int64_t)im.n;
        k++;
        if (im.chunk_count > 0) {
            kv[k].tag = KV_OVERRIDE_INT;
            snprintf(kv[k].key, sizeof kv[k].key, "quantize.imatrix.chunks_count");
            kv[k].v.val_i64 = im.chunk_count;
            k++;
        }
        kv[k].key[0] = 0;
        qp.kv_overrides = kv;
    }

    double t0 = now_s();
    if (L.llama_model_quantize(in, out, &qp))
        die("llama_model_quantize failed for %s -> %s (%s); rerun with -v", in, out, type);
    printf("quantized %s -> %s as %s (ftype %d) in %.2f s\n", in, out, type, ftype, now_s() - t0);
    for (size_t i = 0; i < im.n; i++) {
        free(im.names[i]);
        free(im.data[i]);
    }
    free(im.names);
    free(im.data);
    free(im.entries);
    return 0;
}

static void usage(FILE *f)
{
    fputs("usage: qfs-llama-ref [-v] [--lib DIR] [-t THREADS] [--fa on|off|auto] COMMAND ...\n"
          "  load FILE                                 load with mmap; print n_vocab, n_params\n"
          "  generate FILE N [PROMPT]                  greedy-generate N tokens\n"
          "  perplexity FILE TEXTFILE CTX CHUNKS [THREADS]\n"
          "                                            llama-perplexity's default method\n"
          "  kld TEXTFILE CTX CHUNKS BASE FILE...      per FILE: KL(BASE || FILE) per token, same\n"
          "                                            top token, perplexity, NLL difference\n"
          "  quantize IN OUT TYPE [NTHREAD] [IMATRIX [NAME]]\n"
          "                                            llama_model_quantize like llama-quantize\n"
          "                                            [--imatrix IMATRIX]; NAME is recorded as\n"
          "                                            quantize.imatrix.file instead of IMATRIX\n"
          "  tokenize FILE TEXT                        print token ids (with BOS as the vocab says)\n"
          "The llama.cpp libraries are taken from --lib DIR or $QFS_LLAMA_LIB_DIR.\n",
          f);
}

int main(int argc, char **argv)
{
    const char *lib = getenv("QFS_LLAMA_LIB_DIR");
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (!strcmp(argv[i], "-v")) {
            g_verbose = true;
        } else if (!strcmp(argv[i], "--lib") && i + 1 < argc) {
            lib = argv[++i];
        } else if (!strcmp(argv[i], "-t") && i + 1 < argc) {
            g_threads = (int)parse_long(argv[++i], "thread count", 1, 1024);
        } else if (!strcmp(argv[i], "--fa") && i + 1 < argc) {
            i++;
            g_flash_attn = !strcmp(argv[i], "on") ? 1 : !strcmp(argv[i], "off") ? 0 : !strcmp(argv[i], "auto") ? FLASH_ATTN_AUTO : -2;
            if (g_flash_attn == -2)
                die("--fa takes on, off or auto");
        } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (i >= argc) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[i++];
    int nargs = argc - i;
    char **a = argv + i;
    if (!lib || !*lib)
        die("no library directory: set QFS_LLAMA_LIB_DIR or pass --lib DIR");

    int rc;
    if (!strcmp(cmd, "load") && nargs == 1) {
        load_libs(lib);
        rc = cmd_load(a[0]);
    } else if (!strcmp(cmd, "tokenize") && nargs == 2) {
        load_libs(lib);
        rc = cmd_tokenize(a[0], a[1]);
    } else if (!strcmp(cmd, "generate") && (nargs == 2 || nargs == 3)) {
        int n = (int)parse_long(a[1], "token count", 0, 1 << 20);
        load_libs(lib);
        rc = cmd_generate(a[0], n, nargs == 3 ? a[2] : "");
    } else if (!strcmp(cmd, "perplexity") && (nargs == 4 || nargs == 5)) {
        int ctx = (int)parse_long(a[2], "context size", 4, 1 << 20);
        int chunks = (int)parse_long(a[3], "chunk count", -1, INT_MAX);
        if (nargs == 5)
            g_threads = (int)parse_long(a[4], "thread count", 1, 1024);
        load_libs(lib);
        rc = cmd_perplexity(a[0], a[1], ctx, chunks);
    } else if (!strcmp(cmd, "kld") && nargs >= 5) {
        // kld TEXTFILE CTX CHUNKS BASE FILE...
        int ctx = (int)parse_long(a[1], "context size", 4, 1 << 20);
        int chunks = (int)parse_long(a[2], "chunk count", -1, INT_MAX);
        load_libs(lib);
        rc = cmd_kld(a[3], a + 4, nargs - 4, a[0], ctx, chunks);
    } else if (!strcmp(cmd, "quantize") && nargs >= 3 && nargs <= 6) {
        int nthread = nargs >= 4 ? (int)parse_long(a[3], "thread count", 0, 1024) : 2;
        load_libs(lib);
        rc = cmd_quantize(a[0], a[1], a[2], nthread, nargs >= 5 ? a[4] : NULL,
                          nargs == 6 ? a[5] : NULL);
    } else {
        usage(stderr);
        return 2;
    }
    L.llama_backend_free();
    return rc;
}
