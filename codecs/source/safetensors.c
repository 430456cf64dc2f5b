/* Safetensors reader and writer.  Layout and contract: safetensors.h.
 *
 * Opening a model:
 *   1. pick the files: the shards named by model.safetensors.index.json, or the one *.safetensors;
 *   2. per file: realpath inside root, open, fstat, mmap the whole file read-only;
 *   3. parse the JSON header and validate every tensor (dtype, shape, offsets, sizes),
 *      then check that no two tensors overlap and that the data area holds them all;
 *   4. concatenate the shards' tensors (shards by file name, tensors by name) and
 *      build a by-name index for qfs_st_find.
 * qfs_st_open_file runs steps 2-4 on one given file (no root), with its flags passed down
 * to the dtype check of step 3: the validation code is the same.
 * Every failure logs one line naming the file and returns a negative errno. */
#include "safetensors.h"

#include "../../cache/cache.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../util/log.h"

#define INDEX_NAME "model.safetensors.index.json"
#define ST_SUFFIX ".safetensors"

/* The dtypes we read, their spelling in the header and element size.  need: the
 * qfs_st_open_file flag without which the dtype is refused (0: always accepted); only
 * rows with need == 0 are float source dtypes (dt meaningful). */
static const struct {
    const char *name;
    enum qfs_st_dtype st;
    enum qfs_dtype dt;
    uint64_t size;
    unsigned need;
} dtypes[] = {
    {"F32", QFS_ST_F32, QFS_DT_F32, 4, 0},
    {"F16", QFS_ST_F16, QFS_DT_F16, 2, 0},
    {"BF16", QFS_ST_BF16, QFS_DT_BF16, 2, 0},
    {"I32", QFS_ST_I32, QFS_DT_F32 /* not a float source: see safetensors.h */, 4,
     QFS_ST_ALLOW_I32},
};
#define N_DTYPES (sizeof dtypes / sizeof dtypes[0])
#define KNOWN_FLAGS QFS_ST_ALLOW_I32

/* The float row of dt (the writer's dtypes), or -1. */
static int dtype_index(enum qfs_dtype dt)
{
    for (size_t i = 0; i < N_DTYPES; i++)
        if (dtypes[i].need == 0 && dtypes[i].dt == dt)
            return (int)i;
    return -1;
}

/* Private part of the model, allocated in one block with the public struct. */
struct st_model {
    struct qfs_st_model pub;
    const struct qfs_st_tensor **by_name; /* n_tensors pointers, sorted by name */
};

/* One shard while it is being loaded: its tensors are owned here until they
 * are moved into the model. */
struct st_file {
    struct qfs_st_shard sh;
    struct qfs_st_tensor *t;
    int n;
};

static int cmp_name(const void *a, const void *b)
{
    const struct qfs_st_tensor *x = a, *y = b;
    return strcmp(x->name, y->name);
}

static int cmp_pname(const void *a, const void *b)
{
    const struct qfs_st_tensor *const *x = a, *const *y = b;
    return strcmp((*x)->name, (*y)->name);
}

static int cmp_begin(const void *a, const void *b)
{
    const struct qfs_st_tensor *const *x = a, *const *y = b;
    uint64_t bx = (*x)->file_offset, by = (*y)->file_offset;
    if (bx != by)
        return bx < by ? -1 : 1;
    if ((*x)->nbytes != (*y)->nbytes)
        return (*x)->nbytes < (*y)->nbytes ? -1 : 1;
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* dir + "/" + name, malloc'd; NULL on allocation failure (logged). */
static char *join(const char *dir, const char *name)
{
    char *p;
    if (asprintf(&p, "%s/%s", dir, name) < 0) {
        qfs_err("%s/%s: out of memory", dir, name);
        return NULL;
    }
    return p;
}

/* Resolve path and check it lies inside root_real (NULL: no check).
 * Returns the malloc'd real path in *real, or a negative errno (logged). */
static int resolve_inside(const char *path, const char *root_real, char **real)
{
    char *r = realpath(path, NULL);
    if (!r) {
        int e = errno;
        qfs_err("%s: %s", path, strerror(e));
        return -e;
    }
    if (root_real) {
        size_t n = strlen(root_real);
        bool inside = strncmp(r, root_real, n) == 0 &&
                      (r[n] == '/' || r[n] == '\0' || (n == 1 && root_real[0] == '/'));
        if (!inside) {
            qfs_err("%s: symlink points outside the source tree (%s is not under %s)", path, r,
                    root_real);
            free(r);
            return -EACCES;
        }
    }
    *real = r;
    return 0;
}

static void shard_release(struct qfs_st_shard *sh)
{
    if (sh->map)
        munmap(sh->map, sh->size);
    if (sh->fd >= 0)
        close(sh->fd);
    free(sh->path);
    sh->map = NULL;
    sh->fd = -1;
    sh->path = NULL;
}

static void file_release(struct st_file *f)
{
    for (int i = 0; i < f->n; i++)
        free(f->t[i].name);
    free(f->t);
    f->t = NULL;
    f->n = 0;
    shard_release(&f->sh);
}

/* Validate one tensor entry of the header and fill *t (name not set).  flags: those of
 * qfs_st_open_file (0 for model sources).  The range check against the data area is
 * done later for all tensors at once (truncation vs. bad offsets). */
static int parse_tensor(const char *path, const char *name, json_t *v, unsigned flags,
                        struct qfs_st_tensor *t)
{
    if (!json_is_object(v)) {
        qfs_err("%s: tensor %s: entry is not a JSON object", path, name);
        return -EINVAL;
    }
    json_t *jd = json_object_get(v, "dtype");
    json_t *js = json_object_get(v, "shape");
    json_t *jo = json_object_get(v, "data_offsets");
    if (!json_is_string(jd)) {
        qfs_err("%s: tensor %s: missing or non-string dtype", path, name);
        return -EINVAL;
    }
    int di = -1;
    for (size_t i = 0; i < N_DTYPES; i++)
        if (strcmp(json_string_value(jd), dtypes[i].name) == 0 &&
            (dtypes[i].need & flags) == dtypes[i].need)
            di = (int)i;
    if (di < 0) {
        qfs_err("%s: tensor %s: unsupported dtype %s (%s are)", path, name,
                json_string_value(jd),
                flags & QFS_ST_ALLOW_I32 ? "F16, BF16, F32 and I32" : "F16, BF16 and F32");
        return -ENOTSUP;
    }
    t->dtype = dtypes[di].dt;
    t->st_dtype = dtypes[di].st;

    if (!json_is_array(js)) {
        qfs_err("%s: tensor %s: missing or non-array shape", path, name);
        return -EINVAL;
    }
    size_t nd = json_array_size(js);
    if (nd > QFS_ST_MAX_DIMS) {
        qfs_err("%s: tensor %s: %zu dimensions (at most %d)", path, name, nd, QFS_ST_MAX_DIMS);
        return -EINVAL;
    }
    t->n_dims = (int)nd;
    uint64_t count = 1;
    for (size_t i = 0; i < nd; i++) {
        json_t *d = json_array_get(js, i);
        if (!json_is_integer(d) || json_integer_value(d) < 0) {
            qfs_err("%s: tensor %s: shape[%zu] is not a non-negative integer", path, name, i);
            return -EINVAL;
        }
        t->shape[i] = (int64_t)json_integer_value(d);
        if (__builtin_mul_overflow(count, (uint64_t)t->shape[i], &count)) {
            qfs_err("%s: tensor %s: shape product overflows", path, name);
            return -EINVAL;
        }
    }
    for (size_t i = nd; i < QFS_ST_MAX_DIMS; i++)
        t->shape[i] = 0;
    uint64_t nbytes;
    if (__builtin_mul_overflow(count, dtypes[di].size, &nbytes)) {
        qfs_err("%s: tensor %s: byte size overflows", path, name);
        return -EINVAL;
    }

    if (!json_is_array(jo) || json_array_size(jo) != 2 ||
        !json_is_integer(json_array_get(jo, 0)) || !json_is_integer(json_array_get(jo, 1))) {
        qfs_err("%s: tensor %s: data_offsets is not an array of two integers", path, name);
        return -EINVAL;
    }
    json_int_t b = json_integer_value(json_array_get(jo, 0));
    json_int_t e = json_integer_value(json_array_get(jo, 1));
    if (b < 0 || e < b) {
        qfs_err("%s: tensor %s: data_offsets [%lld,%lld] are not 0 <= begin <= end", path, name,
                (long long)b, (long long)e);
        return -EINVAL;
    }
    if ((uint64_t)(e - b) != nbytes) {
        qfs_err("%s: tensor %s: data_offsets [%lld,%lld] hold %llu bytes, shape and dtype %s "
                "need %" PRIu64,
                path, name, (long long)b, (long long)e, (unsigned long long)(e - b),
                dtypes[di].name, nbytes);
        return -EINVAL;
    }
    t->nbytes = nbytes;
    t->file_offset = (uint64_t)b; /* relative for now; made absolute by the caller */
    return 0;
}

static int check_metadata(const char *path, json_t *v)
{
    if (!json_is_object(v)) {
        qfs_err("%s: __metadata__ is not a JSON object", path);
        return -EINVAL;
    }
    const char *k;
    json_t *x;
    json_object_foreach(v, k, x) {
        if (!json_is_string(x)) {
            qfs_err("%s: __metadata__ value of %s is not a string", path, k);
            return -EINVAL;
        }
    }
    return 0;
}

/* Check the tensors of one file against each other and the data area. */
static int check_layout(const char *path, struct st_file *f, uint64_t data_size)
{
    int rc = 0;
    const struct qfs_st_tensor **by_begin = NULL;
    if (f->n == 0)
        return 0;
    by_begin = malloc((size_t)f->n * sizeof *by_begin);
    if (!by_begin) {
        qfs_err("%s: out of memory", path);
        return -ENOMEM;
    }
    for (int i = 0; i < f->n; i++)
        by_begin[i] = &f->t[i];
    qsort(by_begin, (size_t)f->n, sizeof *by_begin, cmp_begin);
    const struct qfs_st_tensor *prev = NULL; /* the non-empty tensor ending last so far */
    uint64_t max_end = 0;
    for (int i = 0; i < f->n; i++) {
        const struct qfs_st_tensor *t = by_begin[i];
        uint64_t b = t->file_offset, e = b + t->nbytes;
        if (t->nbytes == 0) {
            if (b > data_size) {
                qfs_err("%s: tensor %s: data_offsets [%" PRIu64 ",%" PRIu64
                        "] beyond the data area of %" PRIu64 " bytes",
                        path, t->name, b, e, data_size);
                rc = -EINVAL;
                goto out;
            }
            continue;
        }
        if (prev && b < prev->file_offset + prev->nbytes) {
            qfs_err("%s: tensor %s: data_offsets [%" PRIu64 ",%" PRIu64 "] overlap tensor %s",
                    path, t->name, b, e, prev->name);
            rc = -EINVAL;
            goto out;
        }
        if (e > max_end) {
            max_end = e;
            prev = t;
        }
    }
    if (max_end > data_size) {
        qfs_err("%s: truncated: tensor %s ends at data offset %" PRIu64
                " but the data area has %" PRIu64 " bytes",
                path, prev->name, max_end, data_size);
        rc = -EIO;
    }
out:
    free(by_begin);
    return rc;
}

/* Open, map and validate one safetensors file.  On error f is released. */
static int load_file(const char *path, const char *root_real, unsigned flags, struct st_file *f)
{
    int rc;
    json_t *root = NULL;
    struct stat st;
    memset(f, 0, sizeof *f);
    f->sh.fd = -1;

    rc = resolve_inside(path, root_real, &f->sh.path);
    if (rc)
        goto fail;
    f->sh.fd = open(f->sh.path, O_RDONLY | O_CLOEXEC);
    if (f->sh.fd < 0) {
        rc = -errno;
        qfs_err("%s: open: %s", path, strerror(-rc));
        goto fail;
    }
    if (fstat(f->sh.fd, &st) < 0) {
        rc = -errno;
        qfs_err("%s: fstat: %s", path, strerror(-rc));
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        qfs_err("%s: not a regular file", path);
        rc = -EINVAL;
        goto fail;
    }
    f->sh.dev = st.st_dev;
    f->sh.ino = st.st_ino;
    f->sh.mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
    f->sh.ctime_ns = (int64_t)st.st_ctim.tv_sec * 1000000000 + st.st_ctim.tv_nsec;
    if (st.st_size < 8) {
        qfs_err("%s: file size %lld is too short for the 8-byte header length", path,
                (long long)st.st_size);
        rc = -EINVAL;
        goto fail;
    }
    f->sh.size = (uint64_t)st.st_size;
    void *m = mmap(NULL, f->sh.size, PROT_READ, MAP_SHARED, f->sh.fd, 0);
    if (m == MAP_FAILED) {
        rc = -errno;
        qfs_err("%s: mmap: %s", path, strerror(-rc));
        goto fail;
    }
    f->sh.map = m;

    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | f->sh.map[i];
    if (hlen > QFS_ST_MAX_HEADER) {
        qfs_err("%s: header length %" PRIu64 " exceeds the limit of %u bytes", path, hlen,
                QFS_ST_MAX_HEADER);
        rc = -EFBIG;
        goto fail;
    }
    if (hlen > f->sh.size - 8) {
        qfs_err("%s: header length %" PRIu64 " beyond file size %" PRIu64, path, hlen,
                f->sh.size);
        rc = -EINVAL;
        goto fail;
    }
    uint64_t data_start = 8 + hlen, data_size = f->sh.size - data_start;

    json_error_t jerr;
    root = json_loadb((const char *)f->sh.map + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        qfs_err("%s: header JSON: %s (line %d, column %d)", path, jerr.text, jerr.line,
                jerr.column);
        rc = -EINVAL;
        goto fail;
    }
    if (!json_is_object(root)) {
        qfs_err("%s: header JSON is not an object", path);
        rc = -EINVAL;
        goto fail;
    }
    size_t cap = json_object_size(root);
    f->t = calloc(cap ? cap : 1, sizeof *f->t);
    if (!f->t) {
        qfs_err("%s: out of memory", path);
        rc = -ENOMEM;
        goto fail;
    }
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (strcmp(key, "__metadata__") == 0) {
            rc = check_metadata(path, val);
            if (rc)
                goto fail;
            continue;
        }
        if (key[0] == '\0') {
            qfs_err("%s: tensor with an empty name", path);
            rc = -EINVAL;
            goto fail;
        }
        struct qfs_st_tensor *t = &f->t[f->n];
        rc = parse_tensor(path, key, val, flags, t);
        if (rc)
            goto fail;
        t->name = strdup(key);
        if (!t->name) {
            qfs_err("%s: out of memory", path);
            rc = -ENOMEM;
            goto fail;
        }
        f->n++;
    }
    rc = check_layout(path, f, data_size);
    if (rc)
        goto fail;
    for (int i = 0; i < f->n; i++) {
        f->t[i].file_offset += data_start;
        f->t[i].data = f->sh.map + f->t[i].file_offset;
    }
    qsort(f->t, (size_t)f->n, sizeof *f->t, cmp_name);
    json_decref(root);
    return 0;
fail:
    json_decref(root);
    file_release(f);
    return rc;
}

/* The shard names of the index, sorted and unique, in *names / *n_names, and the
 * parsed index in *index (for the weight_map check).  Negative errno, logged. */
static int read_index(const char *path, const char *root_real, json_t **index, char ***names,
                      int *n_names)
{
    int rc, fd = -1, n = 0;
    char *real = NULL, **v = NULL;
    json_t *root = NULL;

    rc = resolve_inside(path, root_real, &real);
    if (rc)
        goto fail;
    fd = open(real, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = -errno;
        qfs_err("%s: open: %s", path, strerror(-rc));
        goto fail;
    }
    json_error_t jerr;
    root = json_loadfd(fd, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        qfs_err("%s: JSON: %s (line %d, column %d)", path, jerr.text, jerr.line, jerr.column);
        rc = -EINVAL;
        goto fail;
    }
    json_t *wm = json_object_get(root, "weight_map");
    if (!json_is_object(wm) || json_object_size(wm) == 0) {
        qfs_err("%s: weight_map is missing, not an object or empty", path);
        rc = -EINVAL;
        goto fail;
    }
    v = calloc(json_object_size(wm), sizeof *v);
    if (!v) {
        qfs_err("%s: out of memory", path);
        rc = -ENOMEM;
        goto fail;
    }
    const char *key;
    json_t *val;
    json_object_foreach(wm, key, val) {
        const char *s = json_string_value(val);
        if (!s) {
            qfs_err("%s: weight_map entry %s is not a string", path, key);
            rc = -EINVAL;
            goto fail;
        }
        if (s[0] == '\0' || strchr(s, '/') || strcmp(s, ".") == 0 || strcmp(s, "..") == 0) {
            qfs_err("%s: weight_map entry %s names shard \"%s\", not a plain file name", path,
                    key, s);
            rc = -EINVAL;
            goto fail;
        }
        v[n++] = (char *)s;
    }
    qsort(v, (size_t)n, sizeof *v, cmp_str);
    int u = 0;
    for (int i = 0; i < n; i++)
        if (u == 0 || strcmp(v[u - 1], v[i]) != 0)
            v[u++] = v[i];
    for (int i = 0; i < u; i++) {
        v[i] = strdup(v[i]);
        if (!v[i]) {
            for (int j = 0; j < i; j++)
                free(v[j]);
            n = 0;
            qfs_err("%s: out of memory", path);
            rc = -ENOMEM;
            goto fail;
        }
    }
    *index = root;
    *names = v;
    *n_names = u;
    close(fd);
    free(real);
    return 0;
fail:
    json_decref(root);
    free(v);
    if (fd >= 0)
        close(fd);
    free(real);
    return rc;
}

/* The single *.safetensors of dir (no index).  Negative errno, logged. */
static int find_single(const char *dir, char **name)
{
    int rc = 0;
    char *found = NULL;
    DIR *d = opendir(dir);
    if (!d) {
        rc = -errno;
        qfs_err("%s: opendir: %s", dir, strerror(-rc));
        return rc;
    }
    size_t sl = strlen(ST_SUFFIX);
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (!de) {
            if (errno) {
                rc = -errno;
                qfs_err("%s: readdir: %s", dir, strerror(-rc));
                goto fail;
            }
            break;
        }
        size_t l = strlen(de->d_name);
        if (l <= sl || strcmp(de->d_name + l - sl, ST_SUFFIX) != 0)
            continue;
        if (found) {
            qfs_err("%s: several .safetensors files (%s, %s) and no " INDEX_NAME, dir, found,
                    de->d_name);
            rc = -EINVAL;
            goto fail;
        }
        found = strdup(de->d_name);
        if (!found) {
            qfs_err("%s: out of memory", dir);
            rc = -ENOMEM;
            goto fail;
        }
    }
    if (!found) {
        qfs_err("%s: no .safetensors file and no " INDEX_NAME, dir);
        rc = -ENOENT;
        goto fail;
    }
    closedir(d);
    *name = found;
    return 0;
fail:
    free(found);
    closedir(d);
    return rc;
}

void qfs_st_close(struct qfs_st_model *m)
{
    if (!m)
        return;
    struct st_model *sm = (struct st_model *)m;
    for (int i = 0; i < m->n_tensors; i++)
        free(m->tensors[i].name);
    free(m->tensors);
    for (int i = 0; i < m->n_shards; i++)
        shard_release(&m->shards[i]);
    free(m->shards);
    free(sm->by_name);
    free(sm);
}

/* Move the loaded files into a new model: shards in the given order, their tensors
 * concatenated, the by-name index built; a name in two files is an error.  what: the
 * directory or file named in the log.  On success and on failure alike the moved parts of
 * files[] are left empty (file_release is still due on each); on failure nothing else is
 * kept.  0 or a negative errno (logged). */
static int make_model(const char *what, struct st_file *files, int n_files,
                      struct qfs_st_model **out)
{
    int rc;
    int64_t total = 0;
    for (int i = 0; i < n_files; i++)
        total += files[i].n;
    if (total > INT_MAX) {
        qfs_err("%s: too many tensors", what);
        return -EINVAL;
    }
    struct st_model *sm = calloc(1, sizeof *sm);
    if (!sm)
        goto nomem;
    struct qfs_st_model *m = &sm->pub;
    m->shards = calloc(n_files > 0 ? (size_t)n_files : 1, sizeof *m->shards);
    m->tensors = calloc(total ? (size_t)total : 1, sizeof *m->tensors);
    sm->by_name = calloc(total ? (size_t)total : 1, sizeof *sm->by_name);
    if (!m->shards || !m->tensors || !sm->by_name)
        goto nomem;
    for (int i = 0; i < n_files; i++) {
        for (int j = 0; j < files[i].n; j++) {
            struct qfs_st_tensor *t = &m->tensors[m->n_tensors++];
            *t = files[i].t[j];
            t->shard = i;
            files[i].t[j].name = NULL;
        }
        m->shards[i] = files[i].sh;
        m->n_shards++;
        files[i].sh.fd = -1;
        files[i].sh.map = NULL;
        files[i].sh.path = NULL;
    }
    for (int i = 0; i < m->n_tensors; i++)
        sm->by_name[i] = &m->tensors[i];
    qsort(sm->by_name, (size_t)m->n_tensors, sizeof *sm->by_name, cmp_pname);
    for (int i = 1; i < m->n_tensors; i++) {
        if (strcmp(sm->by_name[i - 1]->name, sm->by_name[i]->name) == 0) {
            qfs_err("%s: tensor %s is in both %s and %s", what, sm->by_name[i]->name,
                    m->shards[sm->by_name[i - 1]->shard].path,
                    m->shards[sm->by_name[i]->shard].path);
            rc = -EINVAL;
            goto fail;
        }
    }
    *out = m;
    return 0;
nomem:
    qfs_err("%s: out of memory", what);
    rc = -ENOMEM;
fail:
    if (sm)
        qfs_st_close(&sm->pub);
    return rc;
}

int qfs_st_open(const char *dir, const char *root, struct qfs_st_model **out)
{
    int rc, n_names = 0, n_files = 0;
    char *root_real = NULL, *index_path = NULL, **names = NULL, *path = NULL;
    json_t *index = NULL;
    struct st_file *files = NULL;

    if (root) {
        root_real = realpath(root, NULL);
        if (!root_real) {
            rc = -errno;
            qfs_err("%s: source root: %s", root, strerror(-rc));
            goto fail;
        }
    }
    index_path = join(dir, INDEX_NAME);
    if (!index_path) {
        rc = -ENOMEM;
        goto fail;
    }
    struct stat st;
    if (lstat(index_path, &st) == 0) {
        rc = read_index(index_path, root_real, &index, &names, &n_names);
        if (rc)
            goto fail;
    } else if (errno == ENOENT) {
        names = calloc(1, sizeof *names);
        if (!names) {
            qfs_err("%s: out of memory", dir);
            rc = -ENOMEM;
            goto fail;
        }
        rc = find_single(dir, &names[0]);
        if (rc)
            goto fail;
        n_names = 1;
    } else {
        rc = -errno;
        qfs_err("%s: %s", index_path, strerror(-rc));
        goto fail;
    }

    files = calloc((size_t)n_names, sizeof *files);
    if (!files) {
        qfs_err("%s: out of memory", dir);
        rc = -ENOMEM;
        goto fail;
    }
    for (int i = 0; i < n_names; i++) {
        path = join(dir, names[i]);
        if (!path) {
            rc = -ENOMEM;
            goto fail;
        }
        if (index && access(path, F_OK) != 0 && errno == ENOENT) {
            qfs_err("%s: index names missing shard %s", index_path, names[i]);
            rc = -ENOENT;
            goto fail;
        }
        rc = load_file(path, root_real, 0, &files[i]);
        if (rc)
            goto fail;
        n_files++;
        free(path);
        path = NULL;
    }

    /* Every weight_map entry must be in the shard it names. */
    if (index) {
        const char *key;
        json_t *val;
        json_object_foreach(json_object_get(index, "weight_map"), key, val) {
            char *const *pn = bsearch(&(const char *){json_string_value(val)}, names,
                                      (size_t)n_names, sizeof *names, cmp_str);
            struct st_file *f = &files[pn - names];
            struct qfs_st_tensor k = {.name = (char *)key};
            if (!bsearch(&k, f->t, (size_t)f->n, sizeof k, cmp_name)) {
                qfs_err("%s: weight_map tensor %s is not in shard %s", index_path, key, *pn);
                rc = -EINVAL;
                goto fail;
            }
        }
    }

    struct qfs_st_model *m = NULL;
    rc = make_model(dir, files, n_files, &m);
    if (rc)
        goto fail;

    for (int i = 0; i < n_files; i++)
        file_release(&files[i]);
    free(files);
    for (int i = 0; i < n_names; i++)
        free(names[i]);
    free(names);
    json_decref(index);
    free(index_path);
    free(root_real);
    *out = m;
    return 0;

fail:
    for (int i = 0; i < n_files; i++)
        file_release(&files[i]);
    free(files);
    free(path);
    if (names)
        for (int i = 0; i < n_names; i++)
            free(names[i]);
    free(names);
    json_decref(index);
    free(index_path);
    free(root_real);
    return rc;
}

int qfs_st_open_file(const char *path, unsigned flags, struct qfs_st_model **out)
{
    if (flags & ~KNOWN_FLAGS) {
        qfs_err("%s: qfs_st_open_file: unknown flags 0x%x", path, flags & ~KNOWN_FLAGS);
        return -EINVAL;
    }
    struct st_file f;
    int rc = load_file(path, NULL, flags, &f);
    if (rc)
        return rc;
    struct qfs_st_model *m = NULL;
    rc = make_model(path, &f, 1, &m);
    file_release(&f);
    if (rc)
        return rc;
    *out = m;
    return 0;
}

const struct qfs_st_tensor *qfs_st_find(const struct qfs_st_model *m, const char *name)
{
    if (!m || !name)
        return NULL;
    const struct st_model *sm = (const struct st_model *)m;
    struct qfs_st_tensor k = {.name = (char *)name};
    const struct qfs_st_tensor *kp = &k;
    const struct qfs_st_tensor **r =
        bsearch(&kp, sm->by_name, (size_t)m->n_tensors, sizeof *sm->by_name, cmp_pname);
    return r ? *r : NULL;
}

/* ---- writer ---- */

static int write_all(int fd, const void *buf, size_t n)
{
    const uint8_t *p = buf;
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Write the data of tensor i, sizes[i] bytes: t[i].data, or chunk-sized pieces from fill. */
static int write_data(int fd, const struct qfs_st_wtensor *t, int i, uint64_t size,
                      qfs_st_fill_fn fill, void *ctx, uint8_t *buf, size_t chunk)
{
    if (!fill)
        return size ? write_all(fd, t[i].data, (size_t)size) : 0;
    for (uint64_t off = 0; off < size;) {
        size_t len = size - off < chunk ? (size_t)(size - off) : chunk;
        int rc = fill(ctx, i, off, buf, len);
        if (rc)
            return rc;
        if ((rc = write_all(fd, buf, len)))
            return rc;
        off += len;
    }
    return 0;
}

static int st_write(const char *path, const struct qfs_st_wtensor *t, int n, qfs_st_fill_fn fill,
                    void *ctx, size_t chunk)
{
    int rc, fd = -1;
    char *hdr = NULL;
    uint8_t *buf = NULL;
    uint64_t *offs = NULL, *sizes = NULL;
    json_t *root = json_object();
    if (!root || n < 0 ||
        json_object_set_new(root, "__metadata__", json_pack("{s:s}", "format", "pt")) != 0)
        goto nomem;
    offs = calloc(n > 0 ? (size_t)n : 1, sizeof *offs);
    sizes = calloc(n > 0 ? (size_t)n : 1, sizeof *sizes);
    if (!offs || !sizes)
        goto nomem;
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        int di = dtype_index(t[i].dtype);
        if (di < 0 || !t[i].name || t[i].n_dims < 0 || t[i].n_dims > QFS_ST_MAX_DIMS) {
            qfs_err("%s: tensor %d: bad dtype, name or n_dims", path, i);
            rc = -EINVAL;
            goto fail;
        }
        uint64_t nbytes = dtypes[di].size;
        json_t *shape = json_array();
        if (!shape)
            goto nomem;
        for (int d = 0; d < t[i].n_dims; d++) {
            if (t[i].shape[d] < 0 ||
                __builtin_mul_overflow(nbytes, (uint64_t)t[i].shape[d], &nbytes) ||
                json_array_append_new(shape, json_integer(t[i].shape[d])) != 0) {
                json_decref(shape);
                qfs_err("%s: tensor %s: bad shape", path, t[i].name);
                rc = -EINVAL;
                goto fail;
            }
        }
        off = (off + 7) & ~(uint64_t)7;
        offs[i] = off;
        sizes[i] = nbytes;
        off += nbytes;
        /* "o" steals shape, also when json_pack fails */
        json_t *e = json_pack("{s:s,s:o,s:[I,I]}", "dtype", dtypes[di].name, "shape", shape,
                              "data_offsets", (json_int_t)offs[i], (json_int_t)off);
        if (!e || json_object_set_new(root, t[i].name, e) != 0) {
            qfs_err("%s: tensor %s: cannot add to the header (invalid UTF-8 name?)", path,
                    t[i].name);
            rc = -EINVAL;
            goto fail;
        }
        if (json_object_size(root) != (size_t)i + 2) {
            qfs_err("%s: tensor %s: duplicate name", path, t[i].name);
            rc = -EINVAL;
            goto fail;
        }
    }
    hdr = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS);
    if (!hdr || (fill && !(buf = malloc(chunk))))
        goto nomem;
    /* pad the header with spaces so that the data area starts 8-byte aligned */
    size_t hl = strlen(hdr), padded = (hl + 7) & ~(size_t)7;
    uint8_t len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = -errno;
        qfs_err("%s: open: %s", path, strerror(-rc));
        goto fail;
    }
    static const uint8_t zeros[8];
    static const char spaces[8] = "       ";
    rc = write_all(fd, len8, 8);
    if (!rc)
        rc = write_all(fd, hdr, hl);
    if (!rc)
        rc = write_all(fd, spaces, padded - hl);
    uint64_t pos = 0;
    for (int i = 0; i < n && !rc; i++) {
        rc = write_all(fd, zeros, (size_t)(offs[i] - pos));
        if (!rc)
            rc = write_data(fd, t, i, sizes[i], fill, ctx, buf, chunk);
        pos = offs[i] + sizes[i];
    }
    if (rc) {
        qfs_err("%s: write: %s", path, strerror(-rc));
        goto fail;
    }
    rc = close(fd);
    fd = -1;
    if (rc < 0) {
        rc = -errno;
        qfs_err("%s: close: %s", path, strerror(-rc));
        goto fail;
    }
    free(buf);
    free(hdr);
    free(offs);
    free(sizes);
    json_decref(root);
    return 0;
nomem:
    qfs_err("%s: out of memory", path);
    rc = -ENOMEM;
fail:
    if (fd >= 0)
        close(fd);
    free(buf);
    free(hdr);
    free(offs);
    free(sizes);
    json_decref(root);
    return rc;
}

int qfs_st_write(const char *path, const struct qfs_st_wtensor *t, int n)
{
    return st_write(path, t, n, NULL, NULL, 0);
}

int qfs_st_write_stream(const char *path, const struct qfs_st_wtensor *t, int n, size_t chunk,
                        qfs_st_fill_fn fill, void *ctx)
{
    if (!fill || chunk == 0) {
        qfs_err("%s: qfs_st_write_stream: no fill function or zero chunk", path);
        return -EINVAL;
    }
    return st_write(path, t, n, fill, ctx, chunk);
}

int qfs_st_identity_eq(const struct qfs_st_shard *sh, const struct stat *st)
{
    return st->st_dev == sh->dev && st->st_ino == sh->ino && (uint64_t)st->st_size == sh->size &&
           (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec == sh->mtime_ns &&
           (int64_t)st->st_ctim.tv_sec * 1000000000 + st->st_ctim.tv_nsec == sh->ctime_ns;
}

void qfs_st_file_id(const struct qfs_st_shard *sh, struct qfs_file_id *id)
{
    *id = (struct qfs_file_id){.dev = (uint64_t)sh->dev, .ino = (uint64_t)sh->ino,
                               .size = sh->size, .mtime_ns = sh->mtime_ns,
                               .ctime_ns = sh->ctime_ns};
}
