/* Fuzz target: a SentencePiece tokenizer.model: qfs_sp_parse on the bytes, then the whole
 * SentencePiece vocabulary path of qfs_tokenizer_to_gguf (LlamaForCausalLM) for the file,
 * by the input's length: with no config vocab_size (the pieces), or padded 3 past them
 * (as many embedding rows). */
#include "codecs/gguf/gguf_kv.h"
#include "codecs/source/arch.h"
#include "codecs/source/sentencepiece.h"
#include "codecs/source/tokenizer.h"
#include "fuzz_util.h"

FUZZ_INIT(NULL)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct qfs_sp_model sp;
    size_t n_pieces = 0;
    if (qfs_sp_parse(data, size, "tokenizer.model", &sp) == 0) {
        n_pieces = sp.n_pieces;
        qfs_sp_free(&sp);
    }
    fuzz_write("tokenizer.model", data, size);
    if (n_pieces == 0)
        return 0; /* the converter fails as the parser did */
    const int64_t vocab = size & 1 ? (int64_t)n_pieces + 3 : 0;
    struct qfs_hf_config cfg = {.arch = qfs_arch_find("LlamaForCausalLM"), .vocab_size = vocab};
    struct qfs_kvs *kv = qfs_kvs_new();
    if (!kv)
        abort();
    if (qfs_tokenizer_to_gguf(fuzz_dir(), &cfg, kv, vocab) == 0)
        (void)qfs_kvs_serialize(kv, NULL);
    qfs_kvs_free(kv);
    return 0;
}
