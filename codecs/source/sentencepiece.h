/* A minimal reader for SentencePiece's tokenizer.model (a protobuf ModelProto):
 * the pieces with their score and type, which is all llama.cpp's converter reads
 * from it for llama / mistral / qwen2 models. */
#ifndef QFS_SENTENCEPIECE_H
#define QFS_SENTENCEPIECE_H

#include <stddef.h>
#include <stdint.h>

/* SentencePiece.Type (sentencepiece_model.proto); the same numbers as GGUF token types. */
enum qfs_sp_type {
    QFS_SP_NORMAL = 1, QFS_SP_UNKNOWN = 2, QFS_SP_CONTROL = 3,
    QFS_SP_USER_DEFINED = 4, QFS_SP_UNUSED = 5, QFS_SP_BYTE = 6,
};

struct qfs_sp_piece {
    char *text;   /* NUL-terminated UTF-8, owned */
    float score;  /* 0 when absent, as protobuf's default */
    int type;     /* enum qfs_sp_type, NORMAL when absent */
};

struct qfs_sp_model {
    struct qfs_sp_piece *pieces;
    size_t n_pieces;
};

/* Parse a ModelProto held in buf.  name is only used in log lines.
 * 0, -EINVAL (malformed: bad varint/length, wrong wire type, NUL in a piece, no piece)
 * or -ENOMEM.  On error *m is left empty. */
int qfs_sp_parse(const uint8_t *buf, size_t len, const char *name, struct qfs_sp_model *m);

/* Read and parse path.  As qfs_sp_parse, plus -ENOENT (missing) and other errno from I/O. */
int qfs_sp_load(const char *path, struct qfs_sp_model *m);

void qfs_sp_free(struct qfs_sp_model *m);

#endif
