/* Fuzz target: model.safetensors.index.json beside two small valid shards (written once at
 * start), through qfs_st_open.  A seed naming them: seeds/st_index/two-shards.json. */
#include "codecs/source/safetensors.h"
#include "fuzz_util.h"

static void make_shards(void)
{
    static const float f[4] = {1, 2, 3, 4};
    const struct qfs_st_wtensor s1[] = {
        {.name = "model.embed_tokens.weight", .dtype = QFS_DT_F32, .n_dims = 2, .shape = {2, 2}, .data = f},
        {.name = "model.norm.weight", .dtype = QFS_DT_F16, .n_dims = 1, .shape = {4}, .data = f},
    };
    const struct qfs_st_wtensor s2[] = {
        {.name = "lm_head.weight", .dtype = QFS_DT_BF16, .n_dims = 2, .shape = {2, 4}, .data = f},
    };
    if (qfs_st_write(fuzz_path("model-00001-of-00002.safetensors"), s1, 2) < 0 ||
        qfs_st_write(fuzz_path("model-00002-of-00002.safetensors"), s2, 1) < 0)
        abort();
}

FUZZ_INIT(make_shards)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_write("model.safetensors.index.json", data, size);
    struct qfs_st_model *m = NULL;
    if (qfs_st_open(fuzz_dir(), fuzz_dir(), &m) == 0) {
        for (int i = 0; i < m->n_tensors; i++)
            if (qfs_st_find(m, m->tensors[i].name) != &m->tensors[i])
                abort();
        qfs_st_close(m);
    }
    return 0;
}
