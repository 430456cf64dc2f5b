/* The one list of output formats (contract: format.h).  A new format is a folder under
 * codecs/ defining its struct qfs_format, and one line here. */
#include "format.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

extern const struct qfs_format qfs_format_gguf;
extern const struct qfs_format qfs_format_awq;
extern const struct qfs_format qfs_format_fp8;
extern const struct qfs_format qfs_format_w4a16;
extern const struct qfs_format qfs_format_gptq;
extern const struct qfs_format qfs_format_mlx;

/* Listing order; cache codec ids are the formats' own (frozen). */
const struct qfs_format *const qfs_formats[] = {
    &qfs_format_gguf,
    &qfs_format_awq,
    &qfs_format_fp8,
    &qfs_format_w4a16,
    &qfs_format_gptq,
    &qfs_format_mlx,
    NULL,
};

static int n_formats(void)
{
    int n = 0;
    while (qfs_formats[n])
        n++;
    return n;
}

int qfs_format_index(const struct qfs_format *f)
{
    for (int i = 0; qfs_formats[i]; i++)
        if (qfs_formats[i] == f)
            return i;
    return -1;
}

const struct qfs_format *qfs_format_find(const char *name)
{
    for (int i = 0; qfs_formats[i]; i++)
        if (!strcmp(qfs_formats[i]->name, name))
            return qfs_formats[i];
    return NULL;
}

const struct qfs_format *qfs_format_by_codec(uint32_t codec)
{
    for (int i = 0; qfs_formats[i]; i++)
        if (qfs_formats[i]->cache_codec == codec)
            return qfs_formats[i];
    return NULL;
}

void qfs_format_set_init(struct qfs_format_set *fs)
{
    memset(fs, 0, sizeof *fs);
    for (int i = 0; qfs_formats[i] && i < QFS_MAX_FORMATS; i++) {
        fs->on[i] = qfs_formats[i]->default_on;
        fs->group[i] = qfs_formats[i]->default_group;
    }
}

/* "a, b, c" of the format names (or, with groups, of one format's group sizes). */
static void list_names(char *buf, size_t n)
{
    size_t k = 0;
    buf[0] = 0;
    for (int i = 0; qfs_formats[i] && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%s", i ? ", " : "", qfs_formats[i]->name);
}

static void list_groups(const struct qfs_format *f, char *buf, size_t n)
{
    size_t k = 0;
    buf[0] = 0;
    for (int i = 0; f->groups && f->groups[i] && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%d", i ? ", " : "", f->groups[i]);
}

static int parse_formats(struct qfs_format_set *fs, const char *list, char *err, size_t errlen)
{
    bool on[QFS_MAX_FORMATS] = {0};
    const char *p = list;
    while (*p) {
        size_t len = strcspn(p, ":+");
        int found = -1;
        for (int i = 0; qfs_formats[i]; i++)
            if (strlen(qfs_formats[i]->name) == len && !strncmp(qfs_formats[i]->name, p, len))
                found = i;
        if (found < 0) {
            char names[256];
            list_names(names, sizeof names);
            snprintf(err, errlen, "unknown format '%.*s' in formats= (formats: %s; separate "
                     "them with ':' or '+')", (int)len, p, names);
            return -EINVAL;
        }
        on[found] = true;
        p += len;
        if (*p)
            p++;
    }
    memcpy(fs->on, on, sizeof on);
    return 1;
}

int qfs_format_parse_opt(struct qfs_format_set *fs, const char *opt, char *err, size_t errlen)
{
    if (!strncmp(opt, "formats=", 8))
        return parse_formats(fs, opt + 8, err, errlen);
    const int nf = n_formats();
    for (int i = 0; i < nf; i++) {
        const struct qfs_format *f = qfs_formats[i];
        const size_t nl = strlen(f->name);
        if (!strncmp(opt, "no", 2) && !strcmp(opt + 2, f->name)) {
            fs->on[i] = false;
            return 1;
        }
        if (strncmp(opt, f->name, nl) || strncmp(opt + nl, "_group=", 7))
            continue;
        char groups[128];
        list_groups(f, groups, sizeof groups);
        if (!f->groups) {
            snprintf(err, errlen, "format %s has no group size", f->name);
            return -EINVAL;
        }
        char *end;
        long g = strtol(opt + nl + 7, &end, 10);
        bool ok = *end == 0 && end != opt + nl + 7;
        for (int k = 0; ok && f->groups[k]; k++)
            if (f->groups[k] == g) {
                fs->group[i] = (int)g;
                fs->on[i] = true; /* asking for a group size asks for the format */
                return 1;
            }
        snprintf(err, errlen, "%s_group=%s: expected one of %s", f->name, opt + nl + 7, groups);
        return -EINVAL;
    }
    return 0;
}

/* The default variant of a format: its name in upper case ("awq" -> "AWQ"). */
static bool is_upper_name(const struct qfs_format *f, const char *name, size_t n)
{
    if (strlen(f->name) != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = f->name[i];
        if (name[i] != (c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c))
            return false;
    }
    return true;
}

bool qfs_format_variant_ok(const char *name, size_t n)
{
    for (int i = 0; qfs_formats[i]; i++) {
        const struct qfs_format *f = qfs_formats[i];
        if (f->variant_ok ? f->variant_ok(name, n) : is_upper_name(f, name, n))
            return true;
    }
    return false;
}

const char *qfs_format_help(void)
{
    static char buf[4096];
    if (buf[0])
        return buf;
    size_t k = 0;
    char names[256];
    list_names(names, sizeof names);
    k += (size_t)snprintf(buf + k, sizeof buf - k,
                          "     formats=A:B:...     offer exactly these formats (%s)\n", names);
    for (int i = 0; qfs_formats[i] && k < sizeof buf; i++) {
        const struct qfs_format *f = qfs_formats[i];
        k += (size_t)snprintf(buf + k, sizeof buf - k, "     no%-17s %s%s\n", f->name,
                              f->default_on ? "do not offer " : "(off by default) ", f->what);
        if (k < sizeof buf)
            k += (size_t)snprintf(buf + k, sizeof buf - k, "%-26s prewarm variants: %s\n", "",
                                  f->variants ? f->variants : f->name);
        if (f->groups && k < sizeof buf) {
            char groups[128];
            list_groups(f, groups, sizeof groups);
            char opt[64];
            snprintf(opt, sizeof opt, "%s_group=N", f->name);
            k += (size_t)snprintf(buf + k, sizeof buf - k,
                                  "     %-19s group size: %s (default %d)\n", opt, groups,
                                  f->default_group);
        }
    }
    return buf;
}

bool qfs_format_passthrough(const char *name)
{
    static const char *const prefixes[] = {
        "tokenizer", "special_tokens_map", "added_tokens", "vocab", "merges",
        "generation_config", "chat_template", "preprocessor_config",
    };
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++)
        if (!strncmp(name, prefixes[i], strlen(prefixes[i])))
            return true;
    return false;
}
