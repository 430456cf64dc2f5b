/* SentencePiece tokenizer.model reader.
 *
 * On-disk layout (protobuf wire format, sentencepiece_model.proto):
 *  1. The file is one ModelProto message: a sequence of fields, each a varint key
 *     (field number << 3 | wire type) followed by its value.
 *  2. Wire types: 0 varint, 1 fixed 64-bit, 2 length-delimited (varint length + bytes),
 *     5 fixed 32-bit.  Groups (3, 4) are not used by SentencePiece and are rejected.
 *  3. ModelProto field 1 (length-delimited, repeated) is a SentencePiece message:
 *     field 1 piece (string), field 2 score (float, fixed32), field 3 type (enum, varint;
 *     NORMAL=1 UNKNOWN=2 CONTROL=3 USER_DEFINED=4 UNUSED=5 BYTE=6).
 *  4. Other ModelProto fields (trainer_spec 2, normalizer_spec 3, self_test_data 4,
 *     denormalizer_spec 5) are skipped: the converter reads nothing from them.
 * Every varint and length is bounds-checked against the enclosing message. */
#include "sentencepiece.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/log.h"

struct pb {
    const uint8_t *p, *end;
};

/* Read a varint; false when it runs past the end or is longer than 10 bytes. */
static bool pb_varint(struct pb *b, uint64_t *out)
{
    uint64_t v = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
        if (b->p >= b->end)
            return false;
        uint8_t c = *b->p++;
        v |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) {
            *out = v;
            return true;
        }
    }
    return false;
}

/* Read a length-delimited payload into *sub. */
static bool pb_bytes(struct pb *b, struct pb *sub)
{
    uint64_t n;
    if (!pb_varint(b, &n) || n > (uint64_t)(b->end - b->p))
        return false;
    sub->p = b->p;
    sub->end = b->p + n;
    b->p += n;
    return true;
}

/* Skip one field value of the given wire type. */
static bool pb_skip(struct pb *b, unsigned wt)
{
    uint64_t v;
    struct pb sub;
    switch (wt) {
    case 0: return pb_varint(b, &v);
    case 1: if (b->end - b->p < 8) return false; b->p += 8; return true;
    case 2: return pb_bytes(b, &sub);
    case 5: if (b->end - b->p < 4) return false; b->p += 4; return true;
    default: return false;
    }
}

/* Parse one SentencePiece message into *pc (text owned by the caller on success). */
static int parse_piece(struct pb *b, struct qfs_sp_piece *pc)
{
    pc->text = NULL;
    pc->score = 0.0f;
    pc->type = QFS_SP_NORMAL;
    while (b->p < b->end) {
        uint64_t key;
        if (!pb_varint(b, &key))
            goto bad;
        unsigned field = (unsigned)(key >> 3), wt = (unsigned)(key & 7);
        if (field == 1 && wt == 2) {
            struct pb s;
            if (!pb_bytes(b, &s))
                goto bad;
            size_t n = (size_t)(s.end - s.p);
            if (memchr(s.p, 0, n))
                goto bad;
            char *t = malloc(n + 1);
            if (!t) {
                free(pc->text);
                return -ENOMEM;
            }
            memcpy(t, s.p, n);
            t[n] = 0;
            free(pc->text); /* last one wins, as protobuf does */
            pc->text = t;
        } else if (field == 2 && wt == 5) {
            if (b->end - b->p < 4)
                goto bad;
            uint32_t u = (uint32_t)b->p[0] | (uint32_t)b->p[1] << 8 |
                         (uint32_t)b->p[2] << 16 | (uint32_t)b->p[3] << 24;
            memcpy(&pc->score, &u, sizeof u);
            b->p += 4;
        } else if (field == 3 && wt == 0) {
            uint64_t v;
            if (!pb_varint(b, &v))
                goto bad;
            pc->type = (v >= QFS_SP_NORMAL && v <= QFS_SP_BYTE) ? (int)v : QFS_SP_NORMAL;
        } else if (!pb_skip(b, wt)) {
            goto bad;
        }
    }
    if (!pc->text) {
        pc->text = strdup("");
        if (!pc->text)
            return -ENOMEM;
    }
    return 0;
bad:
    free(pc->text);
    pc->text = NULL;
    return -EINVAL;
}

int qfs_sp_parse(const uint8_t *buf, size_t len, const char *name, struct qfs_sp_model *m)
{
    struct pb b = { buf, buf + len };
    size_t cap = 0;
    int rc = 0;

    m->pieces = NULL;
    m->n_pieces = 0;
    while (b.p < b.end) {
        uint64_t key;
        if (!pb_varint(&b, &key)) {
            rc = -EINVAL;
            qfs_err("%s: truncated or malformed protobuf field key at byte %zu", name,
                    (size_t)(b.p - buf));
            goto fail;
        }
        unsigned field = (unsigned)(key >> 3), wt = (unsigned)(key & 7);
        if (field == 1 && wt == 2) {
            struct pb sub;
            if (!pb_bytes(&b, &sub)) {
                rc = -EINVAL;
                qfs_err("%s: piece %zu runs past the end of the file", name, m->n_pieces);
                goto fail;
            }
            if (m->n_pieces == cap) {
                size_t nc = cap ? cap * 2 : 256;
                struct qfs_sp_piece *np = realloc(m->pieces, nc * sizeof *np);
                if (!np) {
                    rc = -ENOMEM;
                    goto fail;
                }
                m->pieces = np;
                cap = nc;
            }
            rc = parse_piece(&sub, &m->pieces[m->n_pieces]);
            if (rc) {
                if (rc == -EINVAL)
                    qfs_err("%s: piece %zu is malformed", name, m->n_pieces);
                goto fail;
            }
            m->n_pieces++;
        } else if (field == 0 || !pb_skip(&b, wt)) {
            rc = -EINVAL;
            qfs_err("%s: malformed protobuf field %u (wire type %u)", name, field, wt);
            goto fail;
        }
    }
    if (m->n_pieces == 0) {
        qfs_err("%s: no SentencePiece pieces (not a tokenizer.model?)", name);
        rc = -EINVAL;
        goto fail;
    }
    return 0;
fail:
    qfs_sp_free(m);
    return rc;
}

int qfs_sp_load(const char *path, struct qfs_sp_model *m)
{
    m->pieces = NULL;
    m->n_pieces = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        if (e != ENOENT)
            qfs_err("%s: cannot open: %s", path, strerror(e));
        return -e;
    }
    struct stat st;
    uint8_t *buf = NULL;
    int rc;
    if (fstat(fd, &st) != 0) {
        rc = -errno;
        qfs_err("%s: stat: %s", path, strerror(-rc));
        goto out;
    }
    if (!S_ISREG(st.st_mode) || st.st_size <= 0) {
        qfs_err("%s: not a regular non-empty file", path);
        rc = -EINVAL;
        goto out;
    }
    size_t len = (size_t)st.st_size;
    buf = malloc(len);
    if (!buf) {
        rc = -ENOMEM;
        goto out;
    }
    for (size_t got = 0; got < len;) {
        ssize_t r = read(fd, buf + got, len - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            rc = r < 0 ? -errno : -EIO;
            qfs_err("%s: read failed: %s", path, strerror(-rc));
            goto out;
        }
        got += (size_t)r;
    }
    rc = qfs_sp_parse(buf, len, path, m);
out:
    free(buf);
    close(fd);
    return rc;
}

void qfs_sp_free(struct qfs_sp_model *m)
{
    for (size_t i = 0; i < m->n_pieces; i++)
        free(m->pieces[i].text);
    free(m->pieces);
    m->pieces = NULL;
    m->n_pieces = 0;
}
