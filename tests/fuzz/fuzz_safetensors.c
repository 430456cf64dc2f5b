/* Fuzz target: one safetensors file (header and data), through qfs_st_open (a model
 * directory holding only that file; inputs of odd length) or qfs_st_open_file with I32
 * allowed (even length): the same validation, one of them per execution. */
#include "codecs/source/safetensors.h"
#include "fuzz_util.h"

FUZZ_INIT(NULL)

static void walk(const struct qfs_st_model *m)
{
    /* touch what a reader uses: every tensor's bytes, and a lookup by name */
    volatile uint8_t sink = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        const struct qfs_st_tensor *t = &m->tensors[i];
        if (t->nbytes)
            sink ^= t->data[0] ^ t->data[t->nbytes - 1];
        if (qfs_st_find(m, t->name) == NULL)
            abort();
    }
    (void)sink;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = fuzz_write("model.safetensors", data, size);
    struct qfs_st_model *m = NULL;
    int rc = size & 1 ? qfs_st_open(fuzz_dir(), fuzz_dir(), &m)
                      : qfs_st_open_file(p, QFS_ST_ALLOW_I32, &m);
    if (rc == 0) {
        walk(m);
        qfs_st_close(m);
    }
    return 0;
}
