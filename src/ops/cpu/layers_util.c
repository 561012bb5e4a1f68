/* layers_util.c: implementation choice and the coarse parallel-for used by the layer ops. */
#include "ops/cpu/layers_util.h"

#include "core/threadpool.h"

static _Thread_local int g_force_impl = -1;

void mg_layers_force_impl(int impl) { g_force_impl = impl; }

int mg_layers_use_fast(void) {
    int impl = g_force_impl >= 0 ? g_force_impl : (int)mg_ops_get_impl();
    return impl == MG_OPS_FAST;
}

typedef struct range_job {
    size_t n, chunk;
    mg_range_fn fn;
    void *ctx;
} range_job;

static void range_task(void *ctx, int task, int thread) {
    (void)thread;
    range_job *j = ctx;
    size_t b = (size_t)task * j->chunk;
    size_t e = b + j->chunk < j->n ? b + j->chunk : j->n;
    if (b < e) j->fn(j->ctx, b, e);
}

void mg_layers_parallel_for(size_t n, size_t grain, mg_range_fn fn, void *ctx) {
    if (n == 0) return;
    if (grain < 1) grain = 1;
    int want = mg_ops_get_threads(); /* a thread's override (mg_ops_set_thread_override) included */
    mg_pool *pool = want > 1 ? mg_pool_global() : NULL;
    int threads = pool ? mg_pool_threads(pool) : 1;
    if (want < threads) threads = want;
    size_t max_tasks = (size_t)threads * 4;
    size_t tasks = (n + grain - 1) / grain;
    if (tasks > max_tasks) tasks = max_tasks;
    if (tasks <= 1 || threads <= 1) {
        fn(ctx, 0, n);
        return;
    }
    range_job j = {n, (n + tasks - 1) / tasks, fn, ctx};
    tasks = (n + j.chunk - 1) / j.chunk;
    mg_pool_run(pool, (int)tasks, range_task, &j);
}

mg_status mg_layers_check_block(const char *op, int c, int block) {
    if (block < 0 || (block > 0 && c % block != 0))
        return MG_FAIL(MG_ERR_INVALID_ARG,
                       "%s: block must be 0 (NCHW) or a channel block size dividing c, found block=%d for c=%d", op,
                       block, c);
    return MG_OK;
}
