/* Fuzz target: config.json through qfs_hf_config_load (the architecture row's required
 * keys, every range check), then the typed accessors on a few keys. */
#include "codecs/source/hf_config.h"
#include "fuzz_util.h"

FUZZ_INIT(NULL)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_write("config.json", data, size);
    struct qfs_hf_config c;
    memset(&c, 0, sizeof c);
    if (qfs_hf_config_load(fuzz_dir(), &c) == 0) {
        static const char *const keys[] = {"rope_theta", "head_dim", "tie_word_embeddings",
                                           "num_experts", "factor"};
        for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
            bool found;
            int64_t iv;
            double dv;
            bool bv;
            (void)qfs_hf_int(&c, keys[i], &found, &iv);
            (void)qfs_hf_num(&c, keys[i], &found, &dv);
            (void)qfs_hf_bool(&c, keys[i], &found, &bv);
            (void)qfs_hf_rope_num(&c, keys[i], &found, &dv);
        }
        qfs_hf_config_free(&c);
    }
    return 0;
}
