/* quantfs status [--json] [-a] MOUNTPOINT: a readable summary of MOUNTPOINT/.quantfs/status
 * for operators.  Reads only the status file: works for any user who can read the mount,
 * and for a mount made by another quantfs version (missing fields print as "-"). */
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../util/human.h"
#include "../../util/log.h"
#include "commands.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: quantfs status [-a|--all] [--json] MOUNTPOINT\n"
               "  -a, --all   list every virtual file (default: the files read so far)\n"
               "  --json      print the raw status file\n");
}

/* Whole file into a malloc'd buffer.  0 or -errno. */
static int slurp(const char *path, char **out, size_t *len)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -errno;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    int rc = 0;
    while (buf) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap)
            break;
        char *b = realloc(buf, cap *= 2);
        if (!b)
            free(buf);
        buf = b;
    }
    if (!buf)
        rc = -ENOMEM;
    else if (ferror(f))
        rc = -EIO;
    fclose(f);
    if (rc) {
        free(buf);
        return rc;
    }
    *out = buf;
    *len = n;
    return 0;
}

static uint64_t num(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_integer(v) && json_integer_value(v) > 0 ? (uint64_t)json_integer_value(v) : 0;
}

/* The string o[k] (dflt when absent), escaped for the terminal as log lines are
 * (qfs_log_escape): a name from the source cannot end a line or forge one.  The result
 * lives in one of RING static buffers, so one printf may use up to RING of them. */
#define RING 6
static const char *text(json_t *o, const char *k, const char *dflt)
{
    static char ring[RING][4 * PATH_MAX];
    static int next;
    const char *s = json_string_value(json_object_get(o, k));
    char *out = ring[next];
    next = (next + 1) % RING;
    return qfs_log_escape(s ? s : dflt, out, sizeof ring[0]);
}

static void print_cache(json_t *c)
{
    char a[32], b[32];
    uint64_t mh = num(c, "mem_hits"), dh = num(c, "disk_hits"), fills = num(c, "fills");
    uint64_t all = mh + dh + fills;
    printf("cache:    %s; memory %s of %s (%llu chunks)\n", text(c, "dir", "memory only"),
           qfs_human_bytes(num(c, "mem_bytes"), a, sizeof a), qfs_human_bytes(num(c, "mem_max"), b, sizeof b),
           (unsigned long long)num(c, "mem_entries"));
    if (all)
        printf("          hit rate %.1f%% (%llu memory, %llu disk hits; %llu quantized)\n",
               100.0 * (double)(mh + dh) / (double)all, (unsigned long long)mh,
               (unsigned long long)dh, (unsigned long long)fills);
    else
        printf("          hit rate - (nothing read yet)\n");
    uint64_t errs = num(c, "disk_errors"), bad = num(c, "corrupt_dropped");
    uint64_t unauth = num(c, "unauthenticated_dropped");
    if (errs || bad)
        printf("          %llu disk errors, %llu corrupt entries dropped\n",
               (unsigned long long)errs, (unsigned long long)bad);
    if (json_is_true(json_object_get(c, "hmac")))
        printf("          entries authenticated (HMAC); %llu without a valid HMAC dropped\n",
               (unsigned long long)unauth);
}

static int print_summary(json_t *root, bool all)
{
    json_t *models = json_object_get(root, "models"), *skipped = json_object_get(root, "skipped");
    json_t *m, *f;
    size_t i, j;
    char a[32], b[32];
    uint64_t served = 0, reads = 0, nfiles = 0;
    json_array_foreach(models, i, m) {
        json_array_foreach(json_object_get(m, "files"), j, f) {
            served += num(f, "bytes_served");
            reads += num(f, "reads");
            nfiles++;
        }
    }
    printf("quantfs %s: %s on %s\n", text(root, "version", "?"), text(root, "source", "?"),
           text(root, "mountpoint", "?"));
    printf("device:   %s\n", text(root, "device", "cpu"));
    printf("models:   %zu (%llu virtual files), %zu skipped\n", json_array_size(models),
           (unsigned long long)nfiles, json_array_size(skipped));
    printf("served:   %s in %llu reads\n", qfs_human_bytes(served, a, sizeof a), (unsigned long long)reads);
    json_t *c = json_object_get(root, "cache");
    if (json_is_object(c))
        print_cache(c);

    printf("\n%-44s %10s %17s %6s %10s\n", "MODEL / FILE", "SIZE", "CHUNKS done/total", "HITS",
           "SERVED");
    json_array_foreach(models, i, m) {
        uint64_t done = 0, total = 0, hits = 0, msrv = 0;
        json_array_foreach(json_object_get(m, "files"), j, f) {
            done += num(f, "chunks_quantized");
            total += num(f, "chunks_total");
            hits += num(f, "cache_hits");
            msrv += num(f, "bytes_served");
        }
        char chunks[40];
        snprintf(chunks, sizeof chunks, "%llu/%llu", (unsigned long long)done,
                 (unsigned long long)total);
        const char *shown = json_object_get(m, "path") ? text(m, "path", "?")
                                                       : text(m, "name", "?");
        printf("%-44s %10s %17s %6llu %10s\n", shown, "", chunks, (unsigned long long)hits,
               qfs_human_bytes(msrv, a, sizeof a));
        size_t idle = 0;
        json_array_foreach(json_object_get(m, "files"), j, f) {
            if (!all && !num(f, "reads")) {
                idle++;
                continue;
            }
            snprintf(chunks, sizeof chunks, "%llu/%llu",
                     (unsigned long long)num(f, "chunks_quantized"),
                     (unsigned long long)num(f, "chunks_total"));
            printf("  %-42s %10s %17s %6llu %10s\n", text(f, "name", "?"),
                   qfs_human_bytes(num(f, "size"), b, sizeof b), chunks,
                   (unsigned long long)num(f, "cache_hits"),
                   qfs_human_bytes(num(f, "bytes_served"), a, sizeof a));
        }
        if (idle)
            printf("  (%zu file%s not read yet; -a lists them)\n", idle, idle == 1 ? "" : "s");
    }
    if (json_array_size(skipped)) {
        printf("\nskipped (served as plain directories):\n");
        json_array_foreach(skipped, i, m)
            printf("  %s: %s\n", text(m, "path", "?"), text(m, "reason", "?"));
    }
    return 0;
}

int qfs_cmd_status(int argc, char **argv)
{
    bool all = false, raw = false;
    const char *mnt = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-a") || !strcmp(argv[i], "--all")) {
            all = true;
        } else if (!strcmp(argv[i], "--json")) {
            raw = true;
        } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else if (argv[i][0] == '-' || mnt) {
            usage(stderr);
            return 2;
        } else {
            mnt = argv[i];
        }
    }
    if (!mnt) {
        usage(stderr);
        return 2;
    }
    char *path = NULL, *buf = NULL;
    size_t len = 0;
    int rc;
    if (asprintf(&path, "%s/.quantfs/status", mnt) < 0) {
        fprintf(stderr, "quantfs status: out of memory\n");
        return 1;
    }
    rc = slurp(path, &buf, &len);
    if (rc < 0) {
        fprintf(stderr, "quantfs status: %s: %s%s\n", path, strerror(-rc),
                rc == -ENOENT ? " (is a quantfs mount there?)" : "");
        free(path);
        return 1;
    }
    int status = 0;
    if (raw) {
        fwrite(buf, 1, len, stdout);
    } else {
        json_error_t err;
        json_t *root = json_loadb(buf, len, 0, &err);
        if (!json_is_object(root)) {
            fprintf(stderr, "quantfs status: %s: not a status file (%s)\n", path, err.text);
            status = 1;
        } else {
            status = print_summary(root, all);
        }
        json_decref(root);
    }
    free(buf);
    free(path);
    return status;
}
