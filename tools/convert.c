/* qfs-convert: write one virtual file of a model to a regular file, without mounting.
 * The same code path as a read through the mount, minus FUSE and the cache:
 * for tests and for debugging a model. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codecs/source/model.h"
#include "util/log.h"

static int write_all(FILE *f, const void *p, size_t n)
{
    return fwrite(p, 1, n, f) == n ? 0 : -EIO;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: qfs-convert MODEL_DIR TYPE OUT\n"
                        "  TYPE: the part of a virtual file name before .gguf: F16, Q8_0, Q4_K_M...\n");
        return 2;
    }
    struct qfs_model *m;
    int rc = qfs_model_open(argv[1], NULL, &m);
    if (rc < 0) {
        fprintf(stderr, "qfs-convert: %s: %s\n", argv[1], strerror(-rc));
        return 1;
    }
    char *want = NULL;
    if (asprintf(&want, "%s.%s.gguf", m->name, argv[2]) < 0)
        return 1;
    const struct qfs_vfile *vf = qfs_model_file(m, want);
    free(want);
    if (!vf) {
        fprintf(stderr, "qfs-convert: %s: type %s is not offered for this model\n", argv[1], argv[2]);
        qfs_model_close(m);
        return 1;
    }
    FILE *f = fopen(argv[3], "wb");
    if (!f) {
        perror(argv[3]);
        qfs_model_close(m);
        return 1;
    }
    static const uint8_t zeros[64];
    uint64_t pos = 0;
    uint8_t *head = malloc(vf->head_len ? vf->head_len : 1);
    if (head) {
        qfs_vfile_head_read(vf, 0, vf->head_len, head);
        rc = write_all(f, head, vf->head_len);
        free(head);
    } else {
        rc = -ENOMEM;
    }
    pos = vf->head_len;
    for (int i = 0; i < vf->n_tensors && rc == 0; i++) {
        const struct qfs_vtensor *t = &vf->tensors[i];
        while (pos < t->offset && rc == 0) {
            size_t n = t->offset - pos < sizeof zeros ? (size_t)(t->offset - pos) : sizeof zeros;
            rc = write_all(f, zeros, n);
            pos += n;
        }
        for (int64_t c = 0; c < t->n_chunks && rc == 0; c++) {
            uint64_t n = qfs_vtensor_chunk_bytes(t, c);
            uint8_t *buf = malloc(n);
            if (!buf) {
                rc = -ENOMEM;
                break;
            }
            rc = qfs_vtensor_produce(t, c, buf);
            if (rc == 0)
                rc = write_all(f, buf, n);
            free(buf);
            pos += n;
        }
    }
    while (pos < vf->size && rc == 0) {
        size_t n = vf->size - pos < sizeof zeros ? (size_t)(vf->size - pos) : sizeof zeros;
        rc = write_all(f, zeros, n);
        pos += n;
    }
    if (fclose(f) != 0 && rc == 0)
        rc = -EIO;
    qfs_model_close(m);
    if (rc < 0) {
        fprintf(stderr, "qfs-convert: %s\n", strerror(-rc));
        return 1;
    }
    return 0;
}
