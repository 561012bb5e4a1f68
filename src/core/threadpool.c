/* threadpool.c: persistent worker threads sleeping on condition variables (see threadpool.h). */
#include "core/threadpool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct mg_pool {
    int threads;
    pthread_t *workers;
    pthread_mutex_t mu;
    pthread_cond_t work_cv;
    pthread_cond_t done_cv;
    unsigned long generation; /* bumped for every job */
    int shutdown;
    /* current job */
    mg_task_fn fn;
    void *ctx;
    int n_tasks;
    atomic_int next_task;
    int active; /* workers still inside the current job */
};

typedef struct worker_arg {
    mg_pool *pool;
    int index;
} worker_arg;

static void run_tasks(mg_pool *p, int thread) {
    for (;;) {
        int t = atomic_fetch_add(&p->next_task, 1);
        if (t >= p->n_tasks) break;
        p->fn(p->ctx, t, thread);
    }
}

static void *worker_main(void *arg) {
    worker_arg *wa = arg;
    mg_pool *p = wa->pool;
    int index = wa->index;
    free(wa);
    unsigned long seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->shutdown && p->generation == seen) pthread_cond_wait(&p->work_cv, &p->mu);
        if (p->shutdown) break;
        seen = p->generation;
        pthread_mutex_unlock(&p->mu);
        run_tasks(p, index);
        pthread_mutex_lock(&p->mu);
        if (--p->active == 0) pthread_cond_signal(&p->done_cv);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

mg_status mg_pool_init(mg_pool **pool, int threads) {
    *pool = NULL;
    if (threads < 1) return MG_FAIL(MG_ERR_INVALID_ARG, "thread pool: threads must be >= 1, got %d", threads);
    mg_pool *p = calloc(1, sizeof *p);
    if (!p) return MG_FAIL(MG_ERR_NOMEM, "thread pool: out of memory");
    p->threads = threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->work_cv, NULL);
    pthread_cond_init(&p->done_cv, NULL);
    if (threads > 1) {
        p->workers = calloc((size_t)threads - 1, sizeof *p->workers);
        if (!p->workers) {
            mg_pool_free(p);
            return MG_FAIL(MG_ERR_NOMEM, "thread pool: out of memory");
        }
        for (int i = 1; i < threads; i++) {
            worker_arg *wa = malloc(sizeof *wa);
            if (wa) {
                wa->pool = p;
                wa->index = i;
            }
            if (!wa || pthread_create(&p->workers[i - 1], NULL, worker_main, wa) != 0) {
                free(wa);
                p->threads = i; /* only i-1 workers exist */
                mg_pool_free(p);
                return MG_FAIL(MG_ERR_INTERNAL, "thread pool: cannot start thread %d of %d", i, threads);
            }
        }
    }
    *pool = p;
    return MG_OK;
}

void mg_pool_free(mg_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->shutdown = 1;
    pthread_cond_broadcast(&p->work_cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->threads; i++) pthread_join(p->workers[i - 1], NULL);
    free(p->workers);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->work_cv);
    pthread_cond_destroy(&p->done_cv);
    free(p);
}

int mg_pool_threads(const mg_pool *p) { return p ? p->threads : 1; }

void mg_pool_run(mg_pool *p, int n_tasks, mg_task_fn fn, void *ctx) {
    if (n_tasks <= 0) return;
    if (!p || p->threads == 1 || n_tasks == 1) {
        for (int t = 0; t < n_tasks; t++) fn(ctx, t, 0);
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->ctx = ctx;
    p->n_tasks = n_tasks;
    atomic_store(&p->next_task, 0);
    p->active = p->threads - 1;
    p->generation++;
    pthread_cond_broadcast(&p->work_cv);
    pthread_mutex_unlock(&p->mu);
    run_tasks(p, 0);
    pthread_mutex_lock(&p->mu);
    while (p->active > 0) pthread_cond_wait(&p->done_cv, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

static mg_pool *g_pool;
static int g_pool_threads_wanted;
static pthread_mutex_t g_pool_mu = PTHREAD_MUTEX_INITIALIZER;

int mg_pool_default_threads(void) {
    if (g_pool_threads_wanted > 0) return g_pool_threads_wanted;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

mg_pool *mg_pool_global(void) {
    pthread_mutex_lock(&g_pool_mu);
    if (!g_pool && mg_pool_init(&g_pool, mg_pool_default_threads()) != MG_OK) g_pool = NULL;
    mg_pool *p = g_pool;
    pthread_mutex_unlock(&g_pool_mu);
    return p; /* NULL means run serially (mg_pool_run handles it) */
}

mg_status mg_pool_global_set_threads(int threads) {
    if (threads < 0 || threads > 1024)
        return MG_FAIL(MG_ERR_INVALID_ARG, "threads: expected 0 (all cores) to 1024, found %d", threads);
    pthread_mutex_lock(&g_pool_mu);
    g_pool_threads_wanted = threads;
    mg_pool_free(g_pool);
    g_pool = NULL;
    pthread_mutex_unlock(&g_pool_mu);
    return MG_OK;
}
