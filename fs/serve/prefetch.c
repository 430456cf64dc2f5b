#include "prefetch.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../codecs/vfile.h"
#include "../../util/log.h"
#include "read.h"

#define RECENT_SLOTS 1024u /* power of two */
#define QUEUE_MIN 64u
#define RECENT_SPAN(p) (4ull * (p)->cap) /* then a chunk (evicted since?) may be queued again */

struct job {
    const struct qfs_vfile *vf;
    const struct qfs_vtensor *t;
    int64_t chunk;
    struct qfs_read_stats *stats;
};

struct recent {
    const struct qfs_vtensor *t;
    int64_t chunk;
    uint64_t seq; /* p->seq when queued: recent for the next RECENT_SPAN jobs queued */
};

struct qfs_prefetch {
    struct qfs_cache *cache; /* immutable after start */
    unsigned window;         /* immutable after start */

    /* lock protects everything below.  Never held while a job runs. */
    pthread_mutex_t lock;
    pthread_cond_t work; /* a job queued, or stopping */
    pthread_cond_t idle; /* queue empty and nothing running */
    struct job *q;       /* ring of cap jobs: [head, head + count) */
    unsigned cap, head, count, running;
    uint64_t seq; /* jobs queued so far */
    bool stop;
    struct recent recent[RECENT_SLOTS]; /* direct-mapped: a collision only re-queues */
    struct qfs_prefetch_stats st;
    unsigned nthreads;
    pthread_t *threads;
};

unsigned qfs_prefetch_default_threads(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1u : n > 1024 ? 1024u : (unsigned)n;
}

static unsigned recent_slot(const struct qfs_vtensor *t, int64_t chunk)
{
    uint64_t h = (uint64_t)(uintptr_t)t * 0x9E3779B97F4A7C15ull ^
                 (uint64_t)chunk * 0xC2B2AE3D27D4EB4Full;
    return (unsigned)(h >> 40) & (RECENT_SLOTS - 1);
}

static void *worker_main(void *arg)
{
    struct qfs_prefetch *p = arg;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (!p->count && !p->stop)
            pthread_cond_wait(&p->work, &p->lock);
        if (p->stop)
            break;
        struct job j = p->q[p->head];
        p->head = (p->head + 1) % p->cap;
        p->count--;
        p->running++;
        pthread_mutex_unlock(&p->lock);

        int rc = qfs_read_prefetch_chunk(p->cache, j.stats, j.vf, j.t, j.chunk);
        if (rc < 0) /* a reader of this chunk redoes it and reports the error */
            qfs_debug("prefetch %s: tensor %s chunk %lld: %s", j.vf->name, j.t->name,
                      (long long)j.chunk, strerror(-rc));

        pthread_mutex_lock(&p->lock);
        p->running--;
        if (rc < 0) {
            p->st.failed++;
            /* Forget it, so a later read may queue it again. */
            struct recent *r = &p->recent[recent_slot(j.t, j.chunk)];
            if (r->t == j.t && r->chunk == j.chunk)
                r->t = NULL;
        } else {
            p->st.done++;
        }
        if (!p->count && !p->running)
            pthread_cond_broadcast(&p->idle);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

static void pool_free(struct qfs_prefetch *p)
{
    pthread_cond_destroy(&p->idle);
    pthread_cond_destroy(&p->work);
    pthread_mutex_destroy(&p->lock);
    free(p->threads);
    free(p->q);
    free(p);
}

int qfs_prefetch_start(struct qfs_cache *cache, unsigned threads, unsigned window,
                       struct qfs_prefetch **out)
{
    *out = NULL;
    if (!cache)
        return -EINVAL;
    if (threads == 0 || window == 0)
        return 0;
    struct qfs_prefetch *p = calloc(1, sizeof *p);
    if (!p)
        return -ENOMEM;
    p->cache = cache;
    p->window = window;
    p->cap = 4 * window > QUEUE_MIN ? 4 * window : QUEUE_MIN;
    p->q = calloc(p->cap, sizeof *p->q);
    p->threads = calloc(threads, sizeof *p->threads);
    if (!p->q || !p->threads) {
        free(p->q);
        free(p->threads);
        free(p);
        return -ENOMEM;
    }
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->work, NULL);
    pthread_cond_init(&p->idle, NULL);

    /* Workers block every asynchronous signal: signals belong to the threads serving
     * requests.  A fault (SIGBUS of a truncated source, see rescan.h) must reach its
     * handler: blocked, it would kill the process. */
    sigset_t all, old;
    sigfillset(&all);
    sigdelset(&all, SIGBUS);
    sigdelset(&all, SIGSEGV);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = 0;
    while (p->nthreads < threads &&
           (rc = pthread_create(&p->threads[p->nthreads], NULL, worker_main, p)) == 0)
        p->nthreads++;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (p->nthreads == 0) {
        pool_free(p);
        return -rc;
    }
    if (p->nthreads < threads)
        qfs_warn("prefetch: started %u of %u threads: %s", p->nthreads, threads, strerror(rc));
    *out = p;
    return 0;
}

void qfs_prefetch_stop(struct qfs_prefetch *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->stop = true;
    p->count = 0; /* queued jobs are dropped; running ones finish */
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->lock);
    for (unsigned i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    pool_free(p);
}

void qfs_prefetch_after(struct qfs_prefetch *p, const struct qfs_vfile *vf,
                        const struct qfs_vtensor *t, int64_t chunk, bool across,
                        struct qfs_read_stats *stats)
{
    if (!p || chunk < 0)
        return;
    bool wake = false;
    pthread_mutex_lock(&p->lock);
    int64_t c = chunk;
    for (unsigned k = 0; k < p->window && !p->stop; k++) {
        if (!qfs_vfile_next_chunk(vf, &t, &c, across))
            goto out;
        struct recent *r = &p->recent[recent_slot(t, c)];
        if (r->t == t && r->chunk == c && p->seq - r->seq < RECENT_SPAN(p)) {
            p->st.skipped_recent++;
            continue;
        }
        if (p->count == p->cap) {
            p->st.dropped_full++;
            break;
        }
        p->q[(p->head + p->count) % p->cap] =
            (struct job){.vf = vf, .t = t, .chunk = c, .stats = stats};
        p->count++;
        p->st.queued++;
        *r = (struct recent){.t = t, .chunk = c, .seq = p->seq++};
        wake = true;
    }
out:
    if (wake)
        pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->lock);
}

void qfs_prefetch_wait_idle(struct qfs_prefetch *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    while ((p->count || p->running) && !p->stop)
        pthread_cond_wait(&p->idle, &p->lock);
    pthread_mutex_unlock(&p->lock);
}

void qfs_prefetch_get_stats(struct qfs_prefetch *p, struct qfs_prefetch_stats *s)
{
    memset(s, 0, sizeof *s);
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    *s = p->st;
    pthread_mutex_unlock(&p->lock);
}
