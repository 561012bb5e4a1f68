/* op_timing.c: best-of timing of single CPU ops in GFLOP/s: an OpenBLAS sgemm and a 2-D
 * convolution forward (see bench.h). */
#include <cblas.h>
#include <stdlib.h>

#include "bench/bench.h"
#include "core/progress.h"

typedef mg_status (*op_run_fn)(void *ctx);

/* One untimed call, then timed calls until `seconds` have passed and at least 3 ran: the best time. */
static mg_status op_time_best(op_run_fn fn, void *ctx, double seconds, double *best, int *runs) {
    MG_TRY(fn(ctx));
    const double start = mg_time_now();
    *best = 1e300;
    *runs = 0;
    while (*runs < 3 || mg_time_now() - start < seconds) {
        double t0 = mg_time_now();
        MG_TRY(fn(ctx));
        double dt = mg_time_now() - t0;
        if (dt < *best) *best = dt;
        ++*runs;
    }
    return MG_OK;
}

/* Deterministic values in [-scale/2, scale/2). */
static float *op_alloc_filled(size_t n, float scale) {
    float *p = malloc(n * sizeof *p);
    if (p)
        for (size_t i = 0; i < n; i++) p[i] = ((float)((i * 7919) % 1000) * 1e-3f - 0.5f) * scale;
    return p;
}

typedef struct op_gemm {
    int n;
    float *a, *b, *c;
} op_gemm;

static mg_status op_run_gemm(void *ctx) {
    op_gemm *g = ctx;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g->n, g->n, g->n, 1.0f, g->a, g->n, g->b, g->n, 0.0f,
                g->c, g->n);
    return MG_OK;
}

mg_status mg_bench_time_sgemm(int n, int threads, double seconds, mg_bench_op_result *r) {
    *r = (mg_bench_op_result){.impl = "openblas"};
    if (n < 1 || n > 65536 || threads < 1)
        return MG_FAIL(MG_ERR_INVALID_ARG, "sgemm benchmark: expected n in [1, 65536] and threads >= 1, found %d, %d",
                       n, threads);
    const size_t nn = (size_t)n * (size_t)n;
    op_gemm g = {n, op_alloc_filled(nn, 1.0f), op_alloc_filled(nn, 0.01f), malloc(nn * sizeof(float))};
    mg_status s = g.a && g.b && g.c ? MG_OK : MG_FAIL(MG_ERR_NOMEM, "sgemm benchmark: out of memory for n = %d", n);
    const int saved = openblas_get_num_threads();
    openblas_set_num_threads(threads);
    double t = 0;
    if (s == MG_OK) s = op_time_best(op_run_gemm, &g, seconds, &t, &r->runs);
    openblas_set_num_threads(saved);
    if (s == MG_OK) r->gflops = 2.0 * (double)n * (double)n * (double)n / t * 1e-9;
    free(g.a), free(g.b), free(g.c);
    return s;
}

typedef struct op_conv {
    mg_conv2d_plan plan;
    float *x, *w, *y;
} op_conv;

static mg_status op_run_conv(void *ctx) {
    op_conv *c = ctx;
    return mg_conv2d_forward(&c->plan, c->x, c->w, NULL, c->y);
}

mg_status mg_bench_time_conv2d(const mg_conv2d_desc *d, double seconds, mg_bench_op_result *r) {
    *r = (mg_bench_op_result){0};
    if (d->has_bias) return MG_FAIL(MG_ERR_INVALID_ARG, "conv2d benchmark: expected a convolution without bias");
    op_conv c = {0};
    MG_TRY(mg_conv2d_plan_init(&c.plan, d));
    r->impl = mg_conv2d_plan_impl_name(&c.plan);
    c.x = op_alloc_filled(mg_conv2d_x_size(&c.plan), 1.0f);
    c.w = op_alloc_filled(mg_conv2d_w_size(&c.plan), 0.01f);
    c.y = malloc(mg_conv2d_y_size(&c.plan) * sizeof(float));
    mg_status s = c.x && c.w && c.y ? MG_OK : MG_FAIL(MG_ERR_NOMEM, "conv2d benchmark: out of memory");
    double t = 0;
    if (s == MG_OK) s = op_time_best(op_run_conv, &c, seconds, &t, &r->runs);
    if (s == MG_OK) r->gflops = mg_conv2d_flops(&c.plan) / t * 1e-9;
    free(c.x), free(c.w), free(c.y);
    mg_conv2d_plan_free(&c.plan);
    return s;
}
