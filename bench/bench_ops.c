/* bench_ops.c: speed of the CPU conv2d (ops_conv.h) on every distinct convolution shape of
 * ResNet-50 (torchvision v1.5, 224x224 input by default), forward, backward data and backward
 * weights, as GFLOP/s and as a fraction of this machine's FMA peak, measured at start-up with
 * src/bench's mg_bench_measure_fma_peak (a tight FMA loop on every thread at once, at the CPU's
 * faster vector width, timed in thread CPU time; `multigrain bench ops` reports the same peak).
 * It ends with whole-network totals (each shape weighted by how often ResNet-50 uses it) against
 * the goals of the ops issue: forward >= 75% of peak, backward (data + weights) >= 60%.
 *
 *   bench_ops [--threads N[,M...]] [--batch N] [--size S] [--layers SUBSTR] [--repeat N]
 *             [--layout auto|plain|blocked|both|chain] [--impl fast|reference|im2col] [--stat best|median]
 *             [--clock wall|cpu] [--no-peak]
 *
 * Defaults: --threads 1,2 --batch 8 --size 224 --repeat 5 --layout auto --impl fast --stat best.
 * Each number is the best (or the median) of --repeat timed runs after one warm-up run; on a
 * machine shared with other jobs the best run is the one closest to the machine's real speed.
 * --layout both times oneDNN's plain and blocked layouts interleaved (same load for both).
 * --layout chain: plans on blocked caller buffers (mg_conv2d_plan_init_blocked, this CPU's block), as
 * the training chain runs them (no reorders of x and y; on AVX2 the 3x3 stride-1 backward data and
 * backward weights run our Winograd kernels, src/ops/cpu/wino_avx2.c; MG_CONV_OWN_WINO=0 for
 * oneDNN's direct ones).
 * --clock cpu times with CPU time instead of elapsed time (see now_s).
 * --no-peak skips the peak measurement (the fractions print as nan): for quick timing runs. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench/bench.h"
#include "multigrain/cpu.h"
#include "multigrain/ops.h"
#include "multigrain/runtime.h"

/* --clock wall (default): elapsed time. --clock cpu: CPU time of the process divided by the thread
 * count (and thread CPU time for the peak), i.e. the speed while our threads actually ran: on a
 * machine shared with other jobs it estimates the unshared speed, assuming balanced threads. */
static int g_clock_cpu;
static int g_threads = 1;

static double clock_s(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
static double now_s(void) {
    return g_clock_cpu ? clock_s(CLOCK_PROCESS_CPUTIME_ID) / g_threads : clock_s(CLOCK_MONOTONIC);
}

/* ---------------------------------------------------------------------------------------------- */
/* ResNet-50 shapes */

typedef struct {
    const char *name;
    int c, k, r, stride, in_div; /* input spatial size = size / in_div */
    int count;                   /* how many convolutions of ResNet-50 have this shape */
} layer;

/* torchvision ResNet-50 (v1.5: the stride-2 is on the 3x3 of the first block of a stage). The
 * block-0 downsample of layer1 (1x1 64->256 at 56) has the shape of its conv3 and is counted there. */
static const layer k_layers[] = {
    {"stem.7x7/2", 3, 64, 7, 2, 1, 1},           {"l1.1x1.64-64", 64, 64, 1, 1, 4, 1},
    {"l1.3x3.64", 64, 64, 3, 1, 4, 3},           {"l1.1x1.64-256", 64, 256, 1, 1, 4, 4},
    {"l1.1x1.256-64", 256, 64, 1, 1, 4, 2},      {"l2.1x1.256-128@56", 256, 128, 1, 1, 4, 1},
    {"l2.3x3/2.128", 128, 128, 3, 2, 4, 1},      {"l2.1x1/2.ds.256-512", 256, 512, 1, 2, 4, 1},
    {"l2.1x1.128-512", 128, 512, 1, 1, 8, 4},    {"l2.1x1.512-128", 512, 128, 1, 1, 8, 3},
    {"l2.3x3.128", 128, 128, 3, 1, 8, 3},        {"l3.1x1.512-256@28", 512, 256, 1, 1, 8, 1},
    {"l3.3x3/2.256", 256, 256, 3, 2, 8, 1},      {"l3.1x1/2.ds.512-1024", 512, 1024, 1, 2, 8, 1},
    {"l3.1x1.256-1024", 256, 1024, 1, 1, 16, 6}, {"l3.1x1.1024-256", 1024, 256, 1, 1, 16, 5},
    {"l3.3x3.256", 256, 256, 3, 1, 16, 5},       {"l4.1x1.1024-512@14", 1024, 512, 1, 1, 16, 1},
    {"l4.3x3/2.512", 512, 512, 3, 2, 16, 1},     {"l4.1x1/2.ds.1024-2048", 1024, 2048, 1, 2, 16, 1},
    {"l4.1x1.512-2048", 512, 2048, 1, 1, 32, 3}, {"l4.1x1.2048-512", 2048, 512, 1, 1, 32, 2},
    {"l4.3x3.512", 512, 512, 3, 1, 32, 2},
};
#define N_LAYERS ((int)(sizeof k_layers / sizeof k_layers[0]))

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef enum { PASS_FWD, PASS_BWD_DATA, PASS_BWD_W } pass_kind;

/* Best (or median) time of one pass for each of `np` plans; the plans run interleaved (a, b, a, b, ...) so
 * that a comparison between them sees the same machine load. */
static int g_stat_best = 1; /* --stat best (default) or median */

static void time_pass(mg_conv2d_plan *plans, int np, pass_kind k, int repeat, const float *x, const float *w,
                      float *y, float *dx, float *dw, double *median) {
    double t[2][64];
    if (repeat > 64) repeat = 64;
    for (int i = -1; i < repeat; i++)
        for (int j = 0; j < np; j++) {
            mg_conv2d_plan *plan = &plans[j];
            double t0 = now_s();
            mg_status s = MG_OK;
            if (k == PASS_FWD) s = mg_conv2d_forward(plan, x, w, NULL, y);
            if (k == PASS_BWD_DATA) s = mg_conv2d_backward_data(plan, y, w, dx);
            if (k == PASS_BWD_W) s = mg_conv2d_backward_weights(plan, x, y, dw, NULL);
            if (s != MG_OK) {
                fprintf(stderr, "bench_ops: %s\n", mg_error_message());
                exit(1);
            }
            if (i >= 0) t[j][i] = now_s() - t0;
        }
    for (int j = 0; j < np; j++) {
        qsort(t[j], (size_t)repeat, sizeof t[j][0], cmp_double);
        median[j] = g_stat_best ? t[j][0] : t[j][repeat / 2];
    }
}

static const char *layout_name(mg_conv2d_layout l) {
    return l == MG_CONV2D_LAYOUT_AUTO ? "auto" : l == MG_CONV2D_LAYOUT_PLAIN ? "plain" : "blocked";
}

static void usage(FILE *f) {
    fprintf(f, "usage: bench_ops [--threads N[,M...]] [--batch N] [--size S] [--layers SUBSTR] [--repeat N]\n"
               "                 [--layout auto|plain|blocked|both|chain] [--impl fast|reference|im2col] [--stat "
               "best|median]\n"
               "                 [--clock wall|cpu] [--no-peak]\n");
}

static int parse_int(const char *s, int lo, int hi, int *out) {
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end || v < lo || v > hi) return 0;
    *out = (int)v;
    return 1;
}

int main(int argc, char **argv) {
    mg_runtime_init(argc, argv, MG_WAIT_SLEEP);
    int threads[8] = {1, 2}, n_threads = 2, batch = 8, size = 224, repeat = 5;
    const char *filter = NULL, *layout_arg = "auto", *impl_arg = "fast";
    int no_peak = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int ok = 1;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--threads") && v) {
            n_threads = 0;
            char buf[128];
            snprintf(buf, sizeof buf, "%s", v);
            for (char *tok = strtok(buf, ","); tok && ok; tok = strtok(NULL, ","))
                ok = n_threads < 8 && parse_int(tok, 1, 64, &threads[n_threads++]);
            i++;
        } else if (!strcmp(a, "--batch") && v) {
            ok = parse_int(v, 1, 4096, &batch), i++;
        } else if (!strcmp(a, "--size") && v) {
            ok = parse_int(v, 32, 4096, &size), i++;
        } else if (!strcmp(a, "--repeat") && v) {
            ok = parse_int(v, 1, 64, &repeat), i++;
        } else if (!strcmp(a, "--clock") && v) {
            ok = !strcmp(v, "wall") || !strcmp(v, "cpu"), i++;
            g_clock_cpu = !strcmp(v, "cpu");
        } else if (!strcmp(a, "--no-peak")) {
            no_peak = 1;
        } else if (!strcmp(a, "--stat") && v) {
            ok = !strcmp(v, "best") || !strcmp(v, "median"), i++;
            g_stat_best = !strcmp(v, "best");
        } else if (!strcmp(a, "--layers") && v) {
            filter = v, i++;
        } else if (!strcmp(a, "--layout") && v) {
            layout_arg = v, i++;
            ok = !strcmp(v, "auto") || !strcmp(v, "plain") || !strcmp(v, "blocked") || !strcmp(v, "both") ||
                 !strcmp(v, "chain");
        } else if (!strcmp(a, "--impl") && v) {
            impl_arg = v, i++;
            ok = !strcmp(v, "fast") || !strcmp(v, "reference") || !strcmp(v, "im2col");
        } else {
            ok = 0;
        }
        if (!ok) {
            fprintf(stderr, "bench_ops: bad option or value at '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    mg_conv2d_backend backend = !strcmp(impl_arg, "reference") ? MG_CONV2D_REFERENCE
                                : !strcmp(impl_arg, "im2col")  ? MG_CONV2D_IM2COL
                                                               : MG_CONV2D_AUTO;
    if (backend == MG_CONV2D_AUTO) mg_ops_set_impl(MG_OPS_FAST);
    mg_conv2d_layout layouts[2] = {MG_CONV2D_LAYOUT_AUTO};
    int n_layouts = 1;
    if (!strcmp(layout_arg, "plain")) layouts[0] = MG_CONV2D_LAYOUT_PLAIN;
    if (!strcmp(layout_arg, "blocked")) layouts[0] = MG_CONV2D_LAYOUT_BLOCKED;
    if (!strcmp(layout_arg, "both"))
        layouts[0] = MG_CONV2D_LAYOUT_PLAIN, layouts[1] = MG_CONV2D_LAYOUT_BLOCKED, n_layouts = 2;
    const int chain = !strcmp(layout_arg, "chain");
    const int chain_block = chain ? mg_conv2d_blocked_channels() : 0;
    if (chain && (!chain_block || backend != MG_CONV2D_AUTO)) {
        fprintf(stderr, "bench_ops: --layout chain needs oneDNN's blocked kernels (--impl fast, AVX2 or AVX-512)\n");
        return 2;
    }

    const char *wp = getenv("OMP_WAIT_POLICY");
    printf("bench_ops: conv2d on ResNet-50 shapes, batch %d, %dx%d input, %s of %d runs, %s clock, "
           "OMP_WAIT_POLICY=%s\n",
           batch, size, size, g_stat_best ? "best" : "median", repeat, g_clock_cpu ? "cpu-time" : "wall",
           wp ? wp : "(unset)");

    /* buffers sized for the largest layer */
    size_t max_x = 0, max_w = 0, max_y = 0;
    for (int l = 0; l < N_LAYERS; l++) {
        const layer *L = &k_layers[l];
        int h = size / L->in_div, p = (h + 2 * (L->r / 2) - L->r) / L->stride + 1;
        size_t nx = (size_t)batch * L->c * h * h, nw = (size_t)L->k * L->c * L->r * L->r;
        size_t ny = (size_t)batch * L->k * p * p;
        if (nx > max_x) max_x = nx;
        if (nw > max_w) max_w = nw;
        if (ny > max_y) max_y = ny;
    }
    float *x = malloc(max_x * 4), *dx = malloc(max_x * 4), *w = malloc(max_w * 4), *dw = malloc(max_w * 4),
          *y = malloc(max_y * 4);
    if (!x || !dx || !w || !dw || !y) {
        fprintf(stderr, "bench_ops: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < max_x; i++) x[i] = (float)((i * 7919) % 1000) * 1e-3f - 0.5f;
    for (size_t i = 0; i < max_w; i++) w[i] = (float)((i * 104729) % 1000) * 1e-5f - 0.005f;
    memset(dw, 0, max_w * 4);
    memset(y, 0, max_y * 4);

    for (int ti = 0; ti < n_threads; ti++) {
        const int T = threads[ti];
        g_threads = T;
        if (mg_ops_set_threads(T) != MG_OK) {
            fprintf(stderr, "bench_ops: %s\n", mg_error_message());
            return 1;
        }
        double peak = NAN;
        if (!no_peak && mg_bench_measure_fma_peak(T, 0, &peak) != MG_OK) {
            fprintf(stderr, "bench_ops: %s\n", mg_error_message());
            return 1;
        }
        printf("\n== threads %d: measured FMA peak %.1f GFLOP/s (%.1f per thread, %d-wide FMAs)\n", T, peak, peak / T,
               mg_cpu_fma_width());
        printf("%-22s %-11s %-14s %7s %5s  %7s %5s  %7s %5s  %s\n", "layer", "shape", "impl", "fwd", "%pk",
               "bwd-d", "%pk", "bwd-w", "%pk", "oneDNN kernels (fwd | bwd-data | bwd-w)");
        double tot_fwd_t[2] = {0}, tot_fwd_f[2] = {0}, tot_bwd_t[2] = {0}, tot_bwd_f[2] = {0};
        for (int l = 0; l < N_LAYERS; l++) {
            const layer *L = &k_layers[l];
            if (filter && !strstr(L->name, filter)) continue;
            const int h = size / L->in_div;
            mg_conv2d_desc d = {.n = batch,
                                .c = L->c,
                                .h = h,
                                .w = h,
                                .k = L->k,
                                .r = L->r,
                                .s = L->r,
                                .stride_h = L->stride,
                                .stride_w = L->stride,
                                .pad_h = L->r / 2,
                                .pad_w = L->r / 2,
                                .dil_h = 1,
                                .dil_w = 1,
                                .groups = 1,
                                .has_bias = 0};
            mg_conv2d_plan plans[2];
            for (int li = 0; li < n_layouts; li++)
                if ((chain ? mg_conv2d_plan_init_blocked(&plans[li], &d, d.c % chain_block ? 0 : chain_block,
                                                         d.k % chain_block ? 0 : chain_block)
                           : mg_conv2d_plan_init_ex(&plans[li], &d, backend, layouts[li])) != MG_OK) {
                    fprintf(stderr, "bench_ops: %s: %s\n", L->name, mg_error_message());
                    return 1;
                }
            const double fl = mg_conv2d_flops(&plans[0]);
            double tf[2], td[2], tw[2];
            time_pass(plans, n_layouts, PASS_FWD, repeat, x, w, y, dx, dw, tf);
            time_pass(plans, n_layouts, PASS_BWD_DATA, repeat, x, w, y, dx, dw, td);
            time_pass(plans, n_layouts, PASS_BWD_W, repeat, x, w, y, dx, dw, tw);
            for (int li = 0; li < n_layouts; li++) {
                const char *kf, *kd, *kw;
                mg_conv2d_plan_kernel_names(&plans[li], &kf, &kd, &kw);
                char shape[32];
                snprintf(shape, sizeof shape, "%dx%d@%d", L->r, L->r, h);
                printf("%-22s %-11s %-14s %7.1f %4.0f%%  %7.1f %4.0f%%  %7.1f %4.0f%%  %s | %s | %s\n",
                       L->name, shape, mg_conv2d_plan_impl_name(&plans[li]), fl / tf[li] * 1e-9,
                       100 * fl / tf[li] * 1e-9 / peak, fl / td[li] * 1e-9, 100 * fl / td[li] * 1e-9 / peak,
                       fl / tw[li] * 1e-9, 100 * fl / tw[li] * 1e-9 / peak, kf, kd, kw);
                tot_fwd_t[li] += L->count * tf[li];
                tot_fwd_f[li] += L->count * fl;
                /* a training step never needs the gradient of the input image */
                tot_bwd_t[li] += L->count * (tw[li] + (l == 0 ? 0 : td[li]));
                tot_bwd_f[li] += L->count * fl * (l == 0 ? 1 : 2);
                mg_conv2d_plan_free(&plans[li]);
            }
            fflush(stdout);
        }
        for (int li = 0; li < n_layouts; li++)
            if (tot_fwd_t[li] > 0)
                printf(
                    "ResNet-50 convs (weighted by use, threads %d, layout %s): forward %.1f GFLOP/s = %.0f%% "
                    "of "
                    "peak (goal 75%%), %.3f s; backward %.1f GFLOP/s = %.0f%% of peak (goal 60%%), %.3f s\n",
                    T, chain ? "chain (blocked buffers)" : layout_name(layouts[li]), tot_fwd_f[li] / tot_fwd_t[li] * 1e-9,
                    100 * tot_fwd_f[li] / tot_fwd_t[li] * 1e-9 / peak, tot_fwd_t[li],
                    tot_bwd_f[li] / tot_bwd_t[li] * 1e-9, 100 * tot_bwd_f[li] / tot_bwd_t[li] * 1e-9 / peak,
                    tot_bwd_t[li]);
    }
    free(x), free(dx), free(w), free(dw), free(y);
    return 0;
}
