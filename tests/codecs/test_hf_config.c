/* config.json / generation_config.json parsing: defaults, every rejection (exact errno and a
 * log line naming the file), and the shared fixture. */
#include <errno.h>
#include <math.h>

#include "codecs/source/arch.h"
#include "codecs/source/hf_config.h"
#include "util/json_file.h"
#include "testutil.h"

static const char *base_dir;

/* A fresh model directory holding config.json = cfg (and generation_config.json = gen). */
static char *model_dir(const char *cfg, const char *gen)
{
    static int n;
    char *d = xasprintf("%s/m%d", base_dir, n++);
    if (mkdir(d, 0755) != 0) {
        perror(d);
        exit(1);
    }
    if (cfg) {
        char *p = xasprintf("%s/config.json", d);
        write_text(p, cfg);
        free(p);
    }
    if (gen) {
        char *p = xasprintf("%s/generation_config.json", d);
        write_text(p, gen);
        free(p);
    }
    return d;
}

/* Load; expect rc; on failure the log names `file` (relative to the dir) and has `what`. */
static void expect_load(int line, const char *dir, int rc, const char *file, const char *what,
                        struct qfs_hf_config *out)
{
    struct qfs_hf_config c;
    memset(&c, 0, sizeof c);
    cap_begin();
    int r = qfs_hf_config_load(dir, &c);
    char *log = cap_end();
    if (r != rc) {
        fprintf(stderr, "line %d: qfs_hf_config_load = %d, want %d\nlog: %s\n", line, r, rc,
                log);
        n_fail++;
    }
    if (rc) {
        char *path = xasprintf("%s/%s", dir, file);
        check_log_at(__FILE__, line, log, path, what);
        free(path);
    }
    free(log);
    if (r == 0 && out)
        *out = c;
    else if (r == 0)
        qfs_hf_config_free(&c);
}
#define EXPECT_LOAD(dir, rc, file, what, out) expect_load(__LINE__, dir, rc, file, what, out)

#define BASE                                                                             \
    "\"hidden_size\": 64, \"intermediate_size\": 128, \"num_hidden_layers\": 2,"         \
    "\"num_attention_heads\": 4, \"vocab_size\": 320, \"max_position_embeddings\": 256"

static void test_defaults(void)
{
    struct qfs_hf_config c;
    char *d = model_dir("{\"architectures\": [\"LlamaForCausalLM\"], " BASE "}", NULL);
    memset(&c, 0, sizeof c);
    EXPECT_LOAD(d, 0, NULL, NULL, &c);
    CHECK(c.arch == qfs_arch_find("LlamaForCausalLM") && strcmp(c.arch_name, "LlamaForCausalLM") == 0);
    CHECK(c.hidden_size == 64 && c.intermediate_size == 128 && c.n_layers == 2);
    CHECK(c.n_heads == 4 && c.n_kv_heads == 4 && c.head_dim == 16);
    CHECK(c.vocab_size == 320 && c.max_position_embeddings == 256);
    CHECK(c.rms_norm_eps == 1e-6 && !c.has_rope_theta && !c.tie_word_embeddings);
    CHECK(c.rope_scaling_type == NULL && c.rope_orig_ctx == 0 && c.sliding_window == 0);
    CHECK(c.bos_token_id == -1 && c.eos_token_id == -1);
    CHECK(strcmp(c.arch->gguf, "llama") == 0);
    qfs_hf_config_free(&c);
    free(d);
}

static void test_full(void)
{
    struct qfs_hf_config c;
    memset(&c, 0, sizeof c);
    /* explicit values; ids from generation_config.json (eos as a list) */
    char *d = model_dir("{\"architectures\": [\"MistralForCausalLM\"], " BASE
                        ", \"num_key_value_heads\": 2, \"head_dim\": 32, \"rms_norm_eps\": 1e-5,"
                        "\"rope_theta\": 1000000.0, \"tie_word_embeddings\": true,"
                        "\"sliding_window\": 4096, \"rope_scaling\": {\"type\": \"linear\","
                        "\"factor\": 4.0}}",
                        "{\"bos_token_id\": 7, \"eos_token_id\": [9, 10]}");
    EXPECT_LOAD(d, 0, NULL, NULL, &c);
    CHECK(c.arch == qfs_arch_find("MistralForCausalLM") && strcmp(c.arch->gguf, "llama") == 0);
    CHECK(c.n_kv_heads == 2 && c.head_dim == 32 && c.rms_norm_eps == 1e-5);
    CHECK(c.has_rope_theta && c.rope_theta == 1e6 && c.tie_word_embeddings);
    CHECK(c.sliding_window == 4096);
    CHECK(c.rope_scaling_type && strcmp(c.rope_scaling_type, "linear") == 0);
    CHECK(c.rope_scaling_factor == 4.0 && c.rope_orig_ctx == 0);
    CHECK(c.bos_token_id == 7 && c.eos_token_id == 9);
    qfs_hf_config_free(&c);
    CHECK(c.arch_name == NULL && c.rope_scaling_type == NULL);
    free(d);

    /* Qwen2: sliding window only when enabled; rope_type wins; config ids win */
    d = model_dir("{\"architectures\": [\"Qwen2ForCausalLM\"], " BASE
                  ", \"sliding_window\": 4096, \"use_sliding_window\": false,"
                  "\"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 2,"
                  "\"original_max_position_embeddings\": 128}, \"bos_token_id\": 3,"
                  "\"eos_token_id\": 4}",
                  "{\"bos_token_id\": 7, \"eos_token_id\": 9}");
    memset(&c, 0, sizeof c);
    EXPECT_LOAD(d, 0, NULL, NULL, &c);
    CHECK(c.arch == qfs_arch_find("Qwen2ForCausalLM") && strcmp(c.arch->gguf, "qwen2") == 0);
    CHECK(c.sliding_window == 0);
    CHECK(c.rope_scaling_type && strcmp(c.rope_scaling_type, "yarn") == 0);
    CHECK(c.rope_scaling_factor == 2.0 && c.rope_orig_ctx == 128);
    CHECK(c.bos_token_id == 3 && c.eos_token_id == 4);
    qfs_hf_config_free(&c);
    free(d);

    d = model_dir("{\"architectures\": [\"Qwen2ForCausalLM\"], " BASE
                  ", \"sliding_window\": 64, \"use_sliding_window\": true, \"rope_scaling\": null,"
                  "\"num_key_value_heads\": null, \"head_dim\": null, \"eos_token_id\": 5}",
                  NULL);
    memset(&c, 0, sizeof c);
    EXPECT_LOAD(d, 0, NULL, NULL, &c);
    CHECK(c.sliding_window == 64 && c.rope_scaling_type == NULL);
    CHECK(c.n_kv_heads == 4 && c.head_dim == 16);
    CHECK(c.bos_token_id == -1 && c.eos_token_id == 5);
    qfs_hf_config_free(&c);
    free(d);
}

struct bad_case {
    const char *cfg, *gen;
    int rc;
    const char *file, *what;
};

static void test_errors(void)
{
    static const struct bad_case cases[] = {
        {NULL, NULL, -ENOENT, "config.json", NULL},
        {"{\"architectures\": [\"LlamaForCausalLM\"], ", NULL, -EINVAL, "config.json",
         "invalid JSON"},
        {"[1]", NULL, -EINVAL, "config.json", "not a JSON object"},
        {"{\"architectures\": [\"GPT2LMHeadModel\"], " BASE "}", NULL, -ENOTSUP, "config.json",
         "GPT2LMHeadModel"},
        {"{" BASE "}", NULL, -EINVAL, "config.json", "architectures"},
        {"{\"architectures\": [], " BASE "}", NULL, -EINVAL, "config.json", "architectures"},
        {"{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 64,"
         "\"intermediate_size\": 128, \"num_hidden_layers\": 2, \"num_attention_heads\": 4,"
         "\"max_position_embeddings\": 256}",
         NULL, -EINVAL, "config.json", "vocab_size"},
        {"{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 64,"
         "\"intermediate_size\": 128, \"num_hidden_layers\": 2, \"num_attention_heads\": 4,"
         "\"vocab_size\": 320}",
         NULL, -EINVAL, "config.json", "max_position_embeddings"},
        {"{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": \"64\","
         "\"intermediate_size\": 128, \"num_hidden_layers\": 2, \"num_attention_heads\": 4,"
         "\"vocab_size\": 320, \"max_position_embeddings\": 256}",
         NULL, -EINVAL, "config.json", "hidden_size"},
        {"{\"architectures\": [\"LlamaForCausalLM\"], " BASE ", \"num_key_value_heads\": 3}",
         NULL, -EINVAL, "config.json", "num_key_value_heads"},
        {"{\"architectures\": [\"LlamaForCausalLM\"], " BASE ", \"num_key_value_heads\": 0}",
         NULL, -EINVAL, "config.json", "num_key_value_heads"},
        {"{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 0,"
         "\"intermediate_size\": 128, \"num_hidden_layers\": 2, \"num_attention_heads\": 4,"
         "\"vocab_size\": 320, \"max_position_embeddings\": 256}",
         NULL, -EINVAL, "config.json", "positive"},
        {"{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 66,"
         "\"intermediate_size\": 128, \"num_hidden_layers\": 2, \"num_attention_heads\": 4,"
         "\"vocab_size\": 320, \"max_position_embeddings\": 256}",
         NULL, -EINVAL, "config.json", "head_dim"},
        {"{\"architectures\": [\"LlamaForCausalLM\"], " BASE ", \"tie_word_embeddings\": 1}",
         NULL, -EINVAL, "config.json", "tie_word_embeddings"},
        {"{\"architectures\": [\"LlamaForCausalLM\"], " BASE ", \"rope_scaling\": 2}", NULL,
         -EINVAL, "config.json", "rope_scaling"},
        {"{\"architectures\": [\"LlamaForCausalLM\"], " BASE ", \"rope_scaling\": {}}", NULL,
         -EINVAL, "config.json", "rope_scaling"},
        {"{\"architectures\": [\"LlamaForCausalLM\"], " BASE ", \"rms_norm_eps\": \"x\"}",
         NULL, -EINVAL, "config.json", "rms_norm_eps"},
        {"{\"architectures\": [\"LlamaForCausalLM\"], " BASE ", \"bos_token_id\": \"x\"}",
         NULL, -EINVAL, "config.json", "bos_token_id"},
        {"{\"architectures\": [\"LlamaForCausalLM\"], " BASE ", \"hidden_size\": 64}", NULL,
         -EINVAL, "config.json", "duplicate"},
        {"{\"architectures\": [\"LlamaForCausalLM\"], " BASE "}", "{\"eos_token_id\": ", -EINVAL,
         "generation_config.json", "invalid JSON"},
        {"{\"architectures\": [\"LlamaForCausalLM\"], " BASE "}", "{\"eos_token_id\": 1.5}",
         -EINVAL, "generation_config.json", "eos_token_id"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *d = model_dir(cases[i].cfg, cases[i].gen);
        expect_load((int)(1000 + i), d, cases[i].rc, cases[i].file, cases[i].what, NULL);
        free(d);
    }
}

static void test_fixture(void)
{
    const char *shared = getenv("QFS_SHARED");
    char *dir = shared ? xasprintf("%s/models/tinyllama-256", shared) : NULL;
    struct stat st;
    if (!dir || stat(dir, &st) != 0) {
        printf("# fixture tinyllama-256 absent: skipped\n");
        free(dir);
        return;
    }
    struct qfs_hf_config c;
    memset(&c, 0, sizeof c);
    EXPECT_LOAD(dir, 0, NULL, NULL, &c);
    CHECK(c.arch == qfs_arch_find("LlamaForCausalLM") && c.hidden_size == 256 && c.intermediate_size == 768);
    CHECK(c.n_layers == 4 && c.n_heads == 8 && c.n_kv_heads == 4 && c.head_dim == 32);
    CHECK(c.vocab_size == 4096 && c.max_position_embeddings == 512);
    CHECK(c.rms_norm_eps == 1e-5 && c.has_rope_theta && c.rope_theta == 10000.0);
    CHECK(!c.tie_word_embeddings && c.bos_token_id == 1 && c.eos_token_id == 2);
    qfs_hf_config_free(&c);
    free(dir);
}

/* Integers beyond int64 become reals; nothing else changes: escapes inside strings, a
 * sign or exponent after the digits (the fuzzer's heap overflow: the counting and the
 * copying walks once split "1-99..." differently), numbers inside strings. */
static void test_big_ints(void)
{
    static const struct {
        const char *in, *key;
        double want; /* NAN: the value is a string */
    } cases[] = {
        {"{\"a\": \"x\\\"1\", \"n\": 1000000000000000019884624838656}", "n", 1e30},
        {"{\"a\": \"99999999999999999999\", \"n\": 5}", "a", NAN},
        {"{\"n\": -99999999999999999999}", "n", -1e20},
        {"{\"n\": 99999999999999999999e-2}", "n", 1e18},
        {"{\"s\": \"\\\\\", \"n\": 99999999999999999999}", "n", 1e20},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        json_error_t err;
        json_t *j = qfs_json_loadb(cases[i].in, strlen(cases[i].in), 0, &err);
        json_t *v = json_object_get(j, cases[i].key);
        CHECK(j != NULL);
        if (isnan(cases[i].want))
            CHECK(json_is_string(v));
        else
            CHECK(json_is_real(v) && fabs(json_real_value(v) / cases[i].want - 1) < 1e-9);
        json_decref(j);
    }
    /* invalid JSON where a sign follows the digits stays invalid, without overflow */
    static const char *const bad[] = {"[1-99999999999999999999]", "[0-1-99999999999999999999-]",
                                      "{\"a\": \"\\"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        json_error_t err;
        json_t *j = qfs_json_loadb(bad[i], strlen(bad[i]), 0, &err);
        CHECK(j == NULL);
        json_decref(j);
    }
}

int main(void)
{
    char *base = make_tmpdir();
    base_dir = base;
    test_defaults();
    test_full();
    test_errors();
    test_fixture();
    test_big_ints();
    remove_tree(base);
    free(base);
    printf("%s\n", n_fail ? "FAIL" : "PASS");
    return n_fail ? 1 : 0;
}
