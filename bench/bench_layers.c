/* bench_layers.c: throughput of the layer ops (ops_layers.h) on ResNet-50-like shapes: batch norm, max
 * pool, ReLU, GeM, linear, SGD. Prints one line per op: milliseconds per call (median of --reps) and
 * GB/s (minimal traffic: every input read once, every output written once) or GFLOP/s for GEMMs.
 * Usage: bench_layers [--impl fast|reference] [--threads N] [--reps R] [--batch B] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "multigrain/ops.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
/* CPU time of the whole process (all threads): immune to waiting for a core on a shared machine */
static double cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
static float *fill(size_t n, float scale, float shift) {
    float *p = malloc(n * sizeof *p);
    if (!p) {
        fprintf(stderr, "bench_layers: out of memory (%zu floats)\n", n);
        exit(1);
    }
    unsigned s = 12345;
    for (size_t i = 0; i < n; i++) {
        s = s * 1103515245u + 12345u;
        p[i] = ((float)((s >> 8) & 0xffff) / 65536.0f - 0.5f) * scale + shift;
    }
    return p;
}

static int g_reps = 10;
typedef void (*bench_fn)(void *ctx);
static void report(const char *name, const char *shape, bench_fn fn, void *ctx, double bytes, double flops) {
    fn(ctx); /* warm-up: first-touch pages, primitive creation */
    double t[101], c[101];
    int reps = g_reps > 101 ? 101 : g_reps;
    for (int r = 0; r < reps; r++) {
        double t0 = now_s(), c0 = cpu_s();
        fn(ctx);
        t[r] = now_s() - t0;
        c[r] = cpu_s() - c0;
    }
    qsort(t, (size_t)reps, sizeof *t, cmp_d);
    qsort(c, (size_t)reps, sizeof *c, cmp_d);
    double best = t[0], med = t[reps / 2], cpu = c[reps / 2];
    if (flops > 0)
        printf("%-22s %-16s best %8.3f ms  median %8.3f ms  cpu %8.3f ms  %8.2f GFLOP/s\n", name, shape, best * 1e3,
               med * 1e3, cpu * 1e3, flops / best * 1e-9);
    else
        printf("%-22s %-16s best %8.3f ms  median %8.3f ms  cpu %8.3f ms  %8.2f GB/s\n", name, shape, best * 1e3,
               med * 1e3, cpu * 1e3, bytes / best * 1e-9);
}

#define CHECK(expr)                                                                                \
    do {                                                                                           \
        mg_status s_ = (expr);                                                                     \
        if (s_ != MG_OK) {                                                                         \
            fprintf(stderr, "bench_layers: %s: %s\n", #expr, mg_error_message());                  \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

typedef struct ctx {
    mg_bn2d_args a;
    int n, c, h, w, in, out;
    mg_win2d win;
    size_t count;
    float *x, *y, *dy, *dx, *wt, *b, *rm, *rv, *sm, *si, *dw, *db, *W, *v;
    int32_t *am;
    float p, dp;
} ctx;

static void bn_fwd(void *v) {
    ctx *t = v;
    CHECK(mg_bn2d_forward(&t->a, t->x, t->wt, t->b, t->rm, t->rv, t->sm, t->si, t->y));
}
static void bn_bwd(void *v) {
    ctx *t = v;
    CHECK(mg_bn2d_backward(&t->a, t->x, t->dy, t->wt, t->sm, t->si, t->dx, t->dw, t->db));
}
static void mp_fwd(void *v) {
    ctx *t = v;
    CHECK(mg_maxpool2d_forward(t->n, t->c, t->h, t->w, &t->win, t->x, t->y, t->am));
}
static void mp_bwd(void *v) {
    ctx *t = v;
    CHECK(mg_maxpool2d_backward(t->n, t->c, t->h, t->w, &t->win, t->am, t->dy, t->dx));
}
static void relu_fwd(void *v) {
    ctx *t = v;
    CHECK(mg_relu_forward(t->count, t->x, t->y));
}
static void relu_bwd(void *v) {
    ctx *t = v;
    CHECK(mg_relu_backward(t->count, t->y, t->dy, t->dx));
}
static void gem_fwd(void *v) {
    ctx *t = v;
    CHECK(mg_gem_forward(t->n, t->c, t->h, t->w, t->p, t->x, t->y));
}
static void gem_bwd(void *v) {
    ctx *t = v;
    CHECK(mg_gem_backward(t->n, t->c, t->h, t->w, t->p, t->x, t->y, t->dy, t->dx, &t->dp));
}
static void lin_fwd(void *v) {
    ctx *t = v;
    CHECK(mg_linear_forward(t->n, t->in, t->out, t->x, t->W, t->b, t->y));
}
static void lin_bwd(void *v) {
    ctx *t = v;
    CHECK(mg_linear_backward(t->n, t->in, t->out, t->x, t->W, t->dy, t->dx, t->dw, t->db));
}
static void sgd(void *v) {
    ctx *t = v;
    mg_sgd_args a = {1e-6f, 0.9f, 1e-4f, 0};
    CHECK(mg_sgd_step(&a, t->count, t->x, t->dy, t->v, 0));
}

int main(int argc, char **argv) {
    int batch = 8, threads = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--impl") && i + 1 < argc) {
            const char *v = argv[++i];
            if (!strcmp(v, "fast")) mg_ops_set_impl(MG_OPS_FAST);
            else if (!strcmp(v, "reference")) mg_ops_set_impl(MG_OPS_REFERENCE);
            else {
                fprintf(stderr, "bench_layers: --impl expects fast or reference, found '%s'\n", v);
                return 2;
            }
        } else if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
            threads = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
            g_reps = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--batch") && i + 1 < argc) {
            batch = atoi(argv[++i]);
        } else {
            fprintf(stderr, "usage: bench_layers [--impl fast|reference] [--threads N] [--reps R] [--batch B]\n");
            return 2;
        }
    }
    if (g_reps < 1 || batch < 1) {
        fprintf(stderr, "bench_layers: --reps and --batch must be >= 1\n");
        return 2;
    }
    if (threads > 0) CHECK(mg_ops_set_threads(threads));
    printf("# impl %s, threads %d, batch %d, %d reps\n",
           mg_ops_get_impl() == MG_OPS_FAST ? "fast" : "reference", mg_ops_get_threads(), batch, g_reps);
    char shape[64];

    /* batch norm on a layer1 bottleneck output [B,256,56,56] */
    ctx t;
    memset(&t, 0, sizeof t);
    t.n = batch, t.c = 256, t.h = 56, t.w = 56;
    size_t N = (size_t)t.n * t.c * t.h * t.w;
    double fb = 4.0 * (double)N;
    t.x = fill(N, 2, 0.1f), t.y = fill(N, 1, 0), t.dy = fill(N, 1, 0), t.dx = fill(N, 1, 0);
    t.wt = fill(256, 0.1f, 1), t.b = fill(256, 0.1f, 0), t.rm = fill(256, 0, 0), t.rv = fill(256, 0, 1);
    t.sm = fill(256, 0, 0), t.si = fill(256, 0, 0), t.dw = fill(256, 0, 0), t.db = fill(256, 0, 0);
    snprintf(shape, sizeof shape, "%dx256x56x56", batch);
    t.a = mg_bn2d_default_args(MG_BN_TRAIN, t.n, t.c, t.h, t.w);
    report("bn2d fwd train", shape, bn_fwd, &t, 2 * fb, 0);
    report("bn2d bwd train", shape, bn_bwd, &t, 3 * fb, 0);
    t.a.mode = MG_BN_EVAL;
    report("bn2d fwd eval", shape, bn_fwd, &t, 2 * fb, 0);
    t.a.mode = MG_BN_FROZEN;
    report("bn2d bwd frozen", shape, bn_bwd, &t, 3 * fb, 0);
    t.count = N;
    report("relu fwd", shape, relu_fwd, &t, 2 * fb, 0);
    report("relu bwd", shape, relu_bwd, &t, 3 * fb, 0);

    /* stem max pool 3x3/2 pad 1 on [B,64,112,112] (same element count as above) */
    t.c = 64, t.h = 112, t.w = 112;
    t.win = (mg_win2d){3, 3, 2, 2, 1, 1};
    size_t M = (size_t)t.n * 64 * 56 * 56;
    t.am = malloc(M * sizeof *t.am);
    snprintf(shape, sizeof shape, "%dx64x112x112", batch);
    report("maxpool 3x3/2 fwd", shape, mp_fwd, &t, fb + 8.0 * (double)M, 0);
    report("maxpool 3x3/2 bwd", shape, mp_bwd, &t, fb + 8.0 * (double)M, 0);

    /* GeM on the layer4 output [4B,2048,7,7] */
    t.n = 4 * batch, t.c = 2048, t.h = 7, t.w = 7, t.p = 3.0f;
    size_t G = (size_t)t.n * 2048 * 49;
    if (G > N) G = N, t.n = (int)(N / (2048 * 49));
    for (size_t i = 0; i < G; i++) t.x[i] = fabsf(t.x[i]);
    snprintf(shape, sizeof shape, "%dx2048x7x7", t.n);
    report("gem p=3 fwd", shape, gem_fwd, &t, 4.0 * (double)G, 0);
    report("gem p=3 bwd (+dp)", shape, gem_bwd, &t, 8.0 * (double)G, 0);
    t.p = 1.0f;
    report("gem p=1 fwd", shape, gem_fwd, &t, 4.0 * (double)G, 0);
    report("gem p=1 bwd (+dp)", shape, gem_bwd, &t, 8.0 * (double)G, 0);

    /* classifier 2048 -> 1000 on [8B,2048] */
    t.n = 8 * batch, t.in = 2048, t.out = 1000;
    t.W = fill((size_t)2048 * 1000, 0.02f, 0);
    free(t.dw), free(t.db);
    t.dw = fill((size_t)2048 * 1000, 0, 0), t.db = fill(1000, 0, 0), t.b = realloc(t.b, 1000 * sizeof *t.b);
    snprintf(shape, sizeof shape, "%dx2048->1000", t.n);
    double fl = 2.0 * t.n * 2048.0 * 1000.0;
    report("linear fwd", shape, lin_fwd, &t, 0, fl);
    report("linear bwd (dx,dW,db)", shape, lin_bwd, &t, 0, 2 * fl);

    /* SGD over ResNet-50's 25.6M parameters (x, dy, v reused as w, g, buffer) */
    t.count = N < 25557032 ? N : 25557032;
    t.v = fill(t.count, 0, 0);
    snprintf(shape, sizeof shape, "%zu params", t.count);
    report("sgd momentum step", shape, sgd, &t, 5.0 * 4.0 * (double)t.count, 0);

    free(t.x), free(t.y), free(t.dy), free(t.dx), free(t.wt), free(t.b), free(t.rm), free(t.rv), free(t.sm);
    free(t.si), free(t.dw), free(t.db), free(t.W), free(t.v), free(t.am);
    return 0;
}
