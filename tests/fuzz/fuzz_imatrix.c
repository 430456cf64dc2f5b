/* Fuzz target: an importance-matrix file, GGUF or legacy .dat (told apart by the magic, as
 * qfs_imatrix_load does), then the model check and look-ups on what loaded. */
#include "codecs/source/imatrix.h"
#include "fuzz_util.h"

FUZZ_INIT(NULL)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = fuzz_write("imatrix.dat", data, size);
    struct qfs_imatrix *im = NULL;
    if (qfs_imatrix_load(p, &im) == 0) {
        const char *names[2] = {"blk.0.attn_q.weight", "output.weight"};
        const int64_t ne0[2] = {64, 64};
        (void)qfs_imatrix_check(im, names, ne0, 2);
        volatile float sink = 0;
        for (int i = 0; i < im->n_entries; i++) {
            const struct qfs_imatrix_entry *e = qfs_imatrix_find(im, im->entries[i].name);
            if (e != &im->entries[i])
                abort();
            for (int64_t k = 0; k < e->n; k++)
                sink += e->values[k];
        }
        (void)sink;
        qfs_imatrix_free(im);
    }
    return 0;
}
