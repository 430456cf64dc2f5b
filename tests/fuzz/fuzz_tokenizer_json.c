/* Fuzz target: tokenizer.json.  The reader's pieces on the parsed file (bpe_json.h: both
 * vocabulary builders, merges, pre-tokenizer), then qfs_tokenizer_to_gguf on it, by the
 * input's length mod 3: as a Qwen2 model (the GPT-2 path) without a config vocab_size or
 * with 300 (and 300 embedding rows), or as a Llama model (the llama-hf path when the file
 * looks like one). */
#include "codecs/gguf/gguf_kv.h"
#include "codecs/source/arch.h"
#include "codecs/source/bpe_json.h"
#include "codecs/source/tokenizer.h"
#include "fuzz_util.h"

FUZZ_INIT(NULL)

static void to_gguf(const char *arch, int64_t vocab, int64_t rows)
{
    struct qfs_hf_config cfg = {.arch = qfs_arch_find(arch), .vocab_size = vocab};
    struct qfs_kvs *kv = qfs_kvs_new();
    if (!kv || !cfg.arch)
        abort();
    if (qfs_tokenizer_to_gguf(fuzz_dir(), &cfg, kv, rows) == 0)
        (void)qfs_kvs_serialize(kv, NULL);
    qfs_kvs_free(kv);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = fuzz_write("tokenizer.json", data, size);
    json_t *root = NULL;
    if (qfs_bpe_json_load(p, &root) != 0)
        return 0;
    struct qfs_vocab v;
    if (qfs_bpe_json_vocab_gpt2(root, p, 0, &v) == 0)
        qfs_vocab_free(&v);
    if (qfs_bpe_json_vocab_llama_hf(root, p, NULL, NULL, 0, &v) == 0)
        qfs_vocab_free(&v);
    char **merges;
    size_t n;
    if (qfs_bpe_json_merges(root, p, &merges, &n) == 0)
        qfs_bpe_merges_free(merges, n);
    (void)qfs_bpe_json_pre(root);
    (void)qfs_bpe_json_is_llama_hf(root);
    json_decref(root);
    switch (size % 3) {
    case 0: to_gguf("Qwen2ForCausalLM", 0, 0); break;
    case 1: to_gguf("Qwen2ForCausalLM", 300, 300); break;
    default: to_gguf("LlamaForCausalLM", 0, 0); break;
    }
    return 0;
}
