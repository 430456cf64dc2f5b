/* Output formats: the one interface between what a model is (codecs/source) and what the
 * mount shows of it.  Every format is one entry of the registry (codecs/registry.c):
 *   - its name ("gguf", "awq", ...), used by options, status and the cache commands;
 *   - a frozen cache codec id and an algorithm version (both enter every chunk's cache tag
 *     and key: a new version never reuses an old entry);
 *   - the group sizes it can be asked for (-o <name>_group=N) and its default;
 *   - offer(): the files and loadable directories it adds to a model (qfs_model_add_file,
 *     qfs_model_add_dir), each a virtual file whose chunks its own code produces and keys
 *     (codecs/vfile.h qfs_vtensor_ops, or the GGUF path);
 *   - its variants: the names -o prewarm= and status use for its files ("Q4_K_M", "AWQ").
 * fs/ never names a format: it lists what the model offers, and asks the registry. */
#ifndef QFS_CODECS_FORMAT_H
#define QFS_CODECS_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct qfs_model;

struct qfs_format {
    const char *name;      /* lower case, a file name suffix where it names a directory */
    const char *what;      /* one line for --help */
    uint32_t cache_codec;  /* frozen: never reused for another format */
    uint32_t version;      /* bumped whenever any output byte could change */
    const int *groups;     /* accepted group sizes, 0-terminated; NULL: no group option */
    int default_group;
    bool default_on;
    /* Add the format's outputs for m with group size `group` (0 when it has none).
     * 0 (a model the format cannot serve gets nothing and one log line), or -ENOMEM. */
    int (*offer)(struct qfs_model *m, int group);
    /* Is name[0, n) one of its variants (case-sensitive)?  NULL: its only variant is its
     * name in upper case ("AWQ"). */
    bool (*variant_ok)(const char *name, size_t n);
    const char *variants;  /* for --help: "Q4_K_M, Q8_0, ..." */
};

extern const struct qfs_format *const qfs_formats[]; /* NULL-terminated, in listing order */
#define QFS_MAX_FORMATS 16

/* What a mount offers: which formats, with which group sizes. */
struct qfs_format_set {
    bool on[QFS_MAX_FORMATS];
    int group[QFS_MAX_FORMATS];
};

/* Every format at its default.  Cannot fail. */
void qfs_format_set_init(struct qfs_format_set *fs);
/* One -o option, if it is a format's: "formats=LIST" (exactly these), "no<name>",
 * "<name>_group=N".  1 consumed, 0 not a format option, -EINVAL (err: what is allowed). */
int qfs_format_parse_opt(struct qfs_format_set *fs, const char *opt, char *err, size_t errlen);
/* Is name[0, n) a variant of some format (a -o prewarm= name)?  Case-sensitive. */
bool qfs_format_variant_ok(const char *name, size_t n);
/* The format whose chunks carry cache codec `codec`, or NULL. */
const struct qfs_format *qfs_format_by_codec(uint32_t codec);
/* The format called name, or NULL. */
const struct qfs_format *qfs_format_find(const char *name);
/* Index of f in qfs_formats. */
int qfs_format_index(const struct qfs_format *f);
/* --help text for the format options (static storage). */
const char *qfs_format_help(void);

/* Files a loadable directory passes through from its model directory: what loaders read
 * besides config.json and the weights (tokenizer, chat template, generation defaults). */
bool qfs_format_passthrough(const char *name);

#endif
