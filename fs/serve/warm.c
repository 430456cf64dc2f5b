#include "warm.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "../../codecs/format.h"
#include "../../codecs/source/model.h"
#include "../../codecs/vfile.h"
#include "../../util/log.h"
#include "namespace.h"
#include "prefetch.h"
#include "read.h"
#include "rescan.h"

#define LOG_EVERY_S 30

struct target {
    const struct qfs_vfile *vf;
    struct qfs_read_stats *stats;
    struct qfs_ns_desc *desc;
};

/* Chunks of a generation's listed files, handed out in file order. */
struct plan {
    struct qfs_ns *ns; /* a reference */
    struct target *t;
    int n;
    int ti, tensor;    /* cursor: target, tensor of it, chunk of that */
    int64_t chunk;
    int users;         /* workers on one of its chunks */
    bool current;      /* still p->plan */
    uint64_t total, done, failed, bytes_total, bytes_done;
    int64_t started_ms;
    int last_decile;
    int64_t last_log_ms;
};

struct qfs_prewarm {
    struct qfs_live *live;
    struct qfs_cache *cache;
    char **types;
    int n_types;

    pthread_mutex_t lock; /* protects everything below; never held while quantizing */
    pthread_cond_t cond;  /* work may be available (kick), or stop */
    struct plan *plan;    /* NULL until the first plan */
    bool kicked, stop;
    uint64_t plans;
    unsigned nthreads;
    pthread_t *threads;
};

static int64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

bool qfs_prewarm_type_ok(const char *name, size_t n)
{
    return qfs_format_variant_ok(name, n);
}

int qfs_prewarm_check_types(const char *types, const char **bad, int *bad_len)
{
    const char *p = types;
    for (;;) {
        size_t n = strcspn(p, ",");
        if (!qfs_prewarm_type_ok(p, n)) {
            *bad = p;
            *bad_len = (int)n;
            return -EINVAL;
        }
        if (!p[n])
            return 0;
        p += n + 1;
    }
}

/* File j of m is of a listed variant. */
static bool wanted(const struct qfs_prewarm *p, const struct qfs_model *m, int j)
{
    const char *v = m->files[j]->variant;
    for (int i = 0; v && i < p->n_types; i++)
        if (!strcmp(p->types[i], v))
            return true;
    return false;
}

static void plan_free(struct qfs_prewarm *p, struct plan *pl)
{
    qfs_live_release(p->live, pl->ns);
    free(pl->t);
    free(pl);
}

/* A plan over the current generation: the listed files of models not prewarmed yet.
 * NULL on allocation failure. */
static struct plan *plan_make(struct qfs_prewarm *p)
{
    struct plan *pl = calloc(1, sizeof *pl);
    if (!pl)
        return NULL;
    pl->ns = qfs_live_acquire(p->live);
    const struct qfs_ns *ns = pl->ns;
    for (int pass = 0; pass < 2; pass++) { /* count, then fill */
        int n = 0;
        for (int i = 0; i < ns->n_models; i++) {
            struct qfs_ns_desc *d = ns->models[i].desc;
            bool seen = false; /* views of one hub snapshot share their description */
            for (int k = 0; k < i && !seen; k++)
                seen = ns->models[k].desc == d;
            if (!d || seen || atomic_load(&d->prewarmed))
                continue;
            for (int j = 0; j < d->model->n_files; j++) {
                if (!wanted(p, d->model, j))
                    continue;
                const struct qfs_vfile *vf = d->model->files[j];
                if (pass == 1) {
                    pl->t[n] = (struct target){.vf = vf, .stats = &d->stats[j], .desc = d};
                    for (int k = 0; k < vf->n_tensors; k++) {
                        pl->total += (uint64_t)vf->tensors[k].n_chunks;
                        pl->bytes_total += vf->tensors[k].nbytes;
                    }
                }
                n++;
            }
        }
        if (pass == 0 && n && !(pl->t = calloc((size_t)n, sizeof *pl->t))) {
            plan_free(p, pl);
            return NULL;
        }
        pl->n = n;
    }
    pl->started_ms = pl->last_log_ms = now_ms();
    pl->current = true;
    if (pl->total)
        qfs_info("prewarm: %d file%s, %llu chunks (%.0f MB)", pl->n, pl->n == 1 ? "" : "s",
                 (unsigned long long)pl->total, (double)pl->bytes_total / 1e6);
    return pl;
}

/* The next chunk of pl, or false when none is left.  lock held. */
static bool plan_next(struct plan *pl, struct target **tg, const struct qfs_vtensor **t,
                      int64_t *chunk)
{
    while (pl->ti < pl->n) {
        const struct qfs_vfile *vf = pl->t[pl->ti].vf;
        if (pl->tensor < vf->n_tensors && pl->chunk < vf->tensors[pl->tensor].n_chunks) {
            *tg = &pl->t[pl->ti];
            *t = &vf->tensors[pl->tensor];
            *chunk = pl->chunk++;
            return true;
        }
        if (pl->tensor < vf->n_tensors) {
            pl->tensor++;
            pl->chunk = 0;
        } else {
            pl->ti++;
            pl->tensor = 0;
            pl->chunk = 0;
        }
    }
    return false;
}

/* lock held: progress lines, and the end of a plan. */
static void plan_progress(struct plan *pl)
{
    uint64_t fin = pl->done + pl->failed;
    int64_t now = now_ms();
    double secs = (double)(now - pl->started_ms) / 1000.0;
    double rate = secs > 0 ? (double)pl->bytes_done / 1e6 / secs : 0;
    if (fin == pl->total) {
        qfs_info("prewarm: done, %llu chunks (%.0f MB) in %.1f s, %.1f MB/s%s",
                 (unsigned long long)pl->done, (double)pl->bytes_done / 1e6, secs, rate,
                 pl->failed ? ", some failed (see above)" : "");
        if (pl->failed == 0)
            for (int i = 0; i < pl->n; i++)
                atomic_store(&pl->t[i].desc->prewarmed, 1);
        return;
    }
    int decile = (int)(fin * 10 / pl->total);
    if (decile > pl->last_decile || now - pl->last_log_ms >= LOG_EVERY_S * 1000) {
        double left = rate > 0 ? (double)(pl->bytes_total - pl->bytes_done) / 1e6 / rate : 0;
        qfs_info("prewarm: %d%% (%llu/%llu chunks, %.0f/%.0f MB), %.1f MB/s, ETA %.0f s",
                 (int)(fin * 100 / pl->total), (unsigned long long)fin,
                 (unsigned long long)pl->total, (double)pl->bytes_done / 1e6,
                 (double)pl->bytes_total / 1e6, rate, left);
        pl->last_decile = decile;
        pl->last_log_ms = now;
    }
}

static void *worker_main(void *arg)
{
    struct qfs_prewarm *p = arg;
    /* The lowest priority: readers and their prefetch come first. */
    if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 19) < 0)
        qfs_debug("prewarm: setpriority: %s", strerror(errno));
    pthread_mutex_lock(&p->lock);
    while (!p->stop) {
        if (p->kicked || !p->plan) {
            p->kicked = false;
            struct plan *old = p->plan, *pl = plan_make(p);
            if (pl) {
                p->plans++;
                p->plan = pl;
                if (old) {
                    old->current = false;
                    if (old->users == 0)
                        plan_free(p, old);
                }
            }
        }
        struct plan *pl = p->plan;
        struct target *tg;
        const struct qfs_vtensor *t;
        int64_t chunk;
        if (!pl || !plan_next(pl, &tg, &t, &chunk)) {
            pthread_cond_wait(&p->cond, &p->lock);
            continue;
        }
        pl->users++;
        pthread_mutex_unlock(&p->lock);

        int rc = qfs_read_prefetch_chunk(p->cache, tg->stats, tg->vf, t, chunk);
        if (rc < 0)
            qfs_debug("prewarm %s: tensor %s chunk %lld: %s", tg->vf->name, t->name,
                      (long long)chunk, strerror(-rc));

        pthread_mutex_lock(&p->lock);
        pl->users--;
        if (rc < 0)
            pl->failed++;
        else
            pl->done++;
        pl->bytes_done += qfs_vtensor_chunk_bytes(t, chunk);
        if (pl->current)
            plan_progress(pl);
        else if (pl->users == 0)
            plan_free(p, pl);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

static void types_free(struct qfs_prewarm *p)
{
    for (int i = 0; i < p->n_types; i++)
        free(p->types[i]);
    free(p->types);
}

int qfs_prewarm_start(struct qfs_live *live, struct qfs_cache *cache, const char *types,
                      unsigned threads, struct qfs_prewarm **out)
{
    *out = NULL;
    struct qfs_prewarm *p = calloc(1, sizeof *p);
    if (!p)
        return -ENOMEM;
    p->live = live;
    p->cache = cache;
    for (const char *s = types; *s;) {
        size_t n = strcspn(s, ",");
        if (n) {
            char **v = realloc(p->types, (size_t)(p->n_types + 1) * sizeof *v);
            if (!v || !(v[p->n_types] = strndup(s, n))) {
                if (v)
                    p->types = v;
                types_free(p);
                free(p);
                return -ENOMEM;
            }
            p->types = v;
            p->n_types++;
        }
        s += n + (s[n] == ',');
    }
    if (threads == 0) {
        threads = qfs_prefetch_default_threads() / 2;
        if (threads == 0)
            threads = 1;
    }
    p->threads = calloc(threads, sizeof *p->threads);
    if (!p->threads) {
        types_free(p);
        free(p);
        return -ENOMEM;
    }
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    sigset_t all, old;
    sigfillset(&all);
    sigdelset(&all, SIGBUS); /* the source guard's */
    sigdelset(&all, SIGSEGV);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = 0;
    while (p->nthreads < threads &&
           (rc = pthread_create(&p->threads[p->nthreads], NULL, worker_main, p)) == 0)
        p->nthreads++;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (p->nthreads == 0) {
        pthread_cond_destroy(&p->cond);
        pthread_mutex_destroy(&p->lock);
        free(p->threads);
        types_free(p);
        free(p);
        return -rc;
    }
    qfs_info("prewarm: %s, %u thread%s at the lowest priority", types, p->nthreads,
             p->nthreads == 1 ? "" : "s");
    *out = p;
    return 0;
}

void qfs_prewarm_kick(struct qfs_prewarm *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->kicked = true;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

void qfs_prewarm_stop(struct qfs_prewarm *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->stop = true;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    for (unsigned i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    if (p->plan)
        plan_free(p, p->plan);
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->lock);
    free(p->threads);
    types_free(p);
    free(p);
}

void qfs_prewarm_get_stats(struct qfs_prewarm *p, struct qfs_prewarm_stats *s)
{
    memset(s, 0, sizeof *s);
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    const struct plan *pl = p->plan;
    if (pl) {
        s->chunks_total = pl->total;
        s->chunks_done = pl->done;
        s->chunks_failed = pl->failed;
        s->bytes_total = pl->bytes_total;
        s->bytes_done = pl->bytes_done;
        s->busy = pl->users > 0 || pl->ti < pl->n || p->kicked;
    } else {
        s->busy = 1;
    }
    s->plans = p->plans;
    pthread_mutex_unlock(&p->lock);
}
