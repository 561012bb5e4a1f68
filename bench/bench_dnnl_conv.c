/* bench_dnnl_conv.c: every oneDNN forward-inference implementation of one convolution shape, timed
 * in a given activation layout with bias and ReLU fused (as the fused inference network runs its
 * convolutions, src/ops/cpu/fused_dnnl.c), so that a kernel or layout choice can be checked against
 * the alternatives oneDNN offers for that shape. With --slices K it also times the first
 * implementation split into K output-channel slices run one after the other (what splitting a
 * convolution between threads by output channels costs before any thread runs it) and compares the
 * slices' output with the whole convolution's, bit for bit.
 *
 *   bench_dnnl_conv --ic C --oc K --size H [--kernel R] [--stride S] [--batch N]
 *                   [--layout blocked|blocked16|blocked8|nhwc|any] [--threads T] [--reps N] [--slices K]
 *                   [--cold]
 *   bench_dnnl_conv --trunk [--threads T] [--reps N] [--slices K] [--wino-slices KW]   (K 8, KW 2)
 *
 * --trunk runs the 52 convolutions of ResNet-50's stages at batch 1 (224 input; bias and ReLU, no
 * residual sums, stem and pooling left out) one after the other, twice per round in alternation:
 * "whole", each a oneDNN primitive on T OpenMP threads (oneDNN splits it and joins its threads at its
 * end, as the fused network runs at batch 1), and "slices", each split into K output-channel slices
 * (KW for Winograd layers; fewer when a slice would drop below 16 channels) created for one thread
 * and handed out to T threads of a thread pool (src/core/threadpool.c) with one join per layer, the
 * faster thread taking more slices. It prints the median and best ms per pass of both, and of the
 * whole primitives summed over second runs of each layer in a row (caches warm: what streaming
 * weights and activations in costs the pass). The question
 * it answers: with another process on one core, can such a split keep the second core's share
 * working where oneDNN's static split waits for the slowed thread (docs/PERFORMANCE.md)?
 *
 * Defaults: --kernel 1 --stride 1 --batch 1 --layout blocked --threads 1 --reps 20, padding
 * R/2. Each time is the best of --reps runs after one warm-up run; --cold reads 96 MiB before each
 * run (not timed), so that weights and data come from memory (evict_caches below). GFLOP/s counts
 * 2 x N x OH x OW x K x C x R x R (Winograd and padding-skipping kernels do less work than counted).
 * oneDNN's reference and SSE4.1 implementations are skipped. --layout blocked is this CPU's blocked
 * layout, the one the fused network and the training chain run (mg_conv2d_blocked_channels: nChw16c
 * with AVX-512, nChw8c with AVX2 only); blocked16 and blocked8 pick nChw16c or nChw8c (AVX2's
 * block). For 3x3 stride-1 shapes whose channels fit (c a multiple of 8, k of 16) on a CPU with AVX2
 * and FMA it also times our Winograd kernel for AVX2 (src/ops/cpu/wino_avx2.c), which the fused network
 * runs where oneDNN has no Winograd (AVX2 machines, or ONEDNN_MAX_CPU_ISA=AVX2), for 3x3 stride-2 pad-1
 * shapes our stride-2 Winograd plan (the same file, which it runs on large maps), and for 1x1 and 3x3
 * shapes at stride 1 or 2 whose channels fit, our direct kernel (src/ops/cpu/direct_avx2.c; 16-wide on
 * nChw16c where the CPU has AVX-512F), which it runs on the 3x3 stride-2 layers of small maps. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "multigrain/ops.h"
#include "multigrain/runtime.h"

#if MG_HAVE_ONEDNN
#include <oneapi/dnnl/dnnl.h>

#include "core/progress.h"
#include "core/rng.h"
#include "core/threadpool.h"
#include "ops/cpu/conv2d_internal.h"
#include "ops/cpu/direct_avx2.h"
#include "ops/cpu/pool_avx2.h"
#include "ops/cpu/stem_avx2.h"
#include "ops/cpu/wino_avx2.h"

typedef struct shape {
    int n, c, k, h, r, stride, pad, oh;
    dnnl_format_tag_t tag;
} shape;

typedef struct conv {
    dnnl_primitive_desc_t pd;
    dnnl_primitive_t prim;
    dnnl_memory_t x, w, b, y, scratch;
} conv;

/* v[i] uniform in [-scale, scale], from the library's generator (one fixed seed: the same data every run) */
static void fill_uniform(mg_rng *r, float *v, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) v[i] = scale * (float)mg_rng_uniform_range(r, -1.0, 1.0);
}

#define CHECK(call)                                                                                          \
    do {                                                                                                     \
        dnnl_status_t st_ = (call);                                                                          \
        if (st_ != dnnl_success) {                                                                           \
            fprintf(stderr, "bench_dnnl_conv: %s failed with oneDNN status %d\n", #call, (int)st_);          \
            return 1;                                                                                        \
        }                                                                                                    \
    } while (0)

/* The operation descriptor of s with k output channels: ReLU post-op, scratchpad in user mode. */
static int conv_desc(const shape *s, int k, dnnl_alg_kind_t alg, dnnl_convolution_desc_t *cd,
                     dnnl_primitive_attr_t *attr) {
    dnnl_dims_t xd = {s->n, s->c, s->h, s->h}, wd = {k, s->c, s->r, s->r}, bd = {k}, yd = {s->n, k, s->oh, s->oh};
    dnnl_dims_t strides = {s->stride, s->stride}, pad = {s->pad, s->pad};
    dnnl_memory_desc_t xm, wm, bm, ym;
    /* an image of a few channels (a network's stem) stays plain NCHW, as the fused network gives it */
    CHECK(dnnl_memory_desc_init_by_tag(&xm, 4, xd, dnnl_f32, s->c <= MG_STEM_MAX_C ? dnnl_nchw : s->tag));
    CHECK(dnnl_memory_desc_init_by_tag(&ym, 4, yd, dnnl_f32, s->tag));
    CHECK(dnnl_memory_desc_init_by_tag(&wm, 4, wd, dnnl_f32, dnnl_format_tag_any));
    CHECK(dnnl_memory_desc_init_by_tag(&bm, 1, bd, dnnl_f32, dnnl_a));
    if (dnnl_convolution_forward_desc_init(cd, dnnl_forward_inference, alg, &xm, &wm, &bm, &ym, strides, pad, pad) !=
        dnnl_success)
        return -1; /* this algorithm does not take the shape */
    dnnl_post_ops_t po;
    CHECK(dnnl_primitive_attr_create(attr));
    CHECK(dnnl_primitive_attr_set_scratchpad_mode(*attr, dnnl_scratchpad_mode_user));
    CHECK(dnnl_post_ops_create(&po));
    CHECK(dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_relu, 0.0f, 0.0f));
    CHECK(dnnl_primitive_attr_set_post_ops(*attr, po));
    dnnl_post_ops_destroy(po);
    return 0;
}

/* Reorders the plain array `from` (tag) into memory `to`. */
static int fill(dnnl_engine_t eng, dnnl_stream_t st, const float *from, dnnl_format_tag_t tag, dnnl_memory_t to) {
    const dnnl_memory_desc_t *md;
    CHECK(dnnl_memory_get_memory_desc(to, &md));
    dnnl_memory_desc_t pm;
    CHECK(dnnl_memory_desc_init_by_tag(&pm, md->ndims, md->dims, dnnl_f32, tag));
    dnnl_memory_t m;
    dnnl_primitive_desc_t rpd;
    dnnl_primitive_t r;
    CHECK(dnnl_memory_create(&m, &pm, eng, (void *)from));
    CHECK(dnnl_reorder_primitive_desc_create(&rpd, &pm, eng, md, eng, NULL));
    CHECK(dnnl_primitive_create(&r, rpd));
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, m}, {DNNL_ARG_TO, to}};
    CHECK(dnnl_primitive_execute(r, st, 2, args));
    CHECK(dnnl_stream_wait(st));
    dnnl_primitive_destroy(r);
    dnnl_primitive_desc_destroy(rpd);
    dnnl_memory_destroy(m);
    return 0;
}

/* Creates the primitive of pd with its memories: src filled from the plain nchw array x, dst on the
 * caller's buffer y (NULL: allocated), weights reordered from the plain oihw array w, bias b. */
static int conv_init(conv *cv, dnnl_engine_t eng, dnnl_stream_t st, dnnl_primitive_desc_t pd, const float *x,
                     float *y, const float *w, const float *b) {
    memset(cv, 0, sizeof *cv);
    cv->pd = pd;
    const dnnl_memory_desc_t *wq = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    const dnnl_memory_desc_t *bq = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 1);
    const dnnl_memory_desc_t *sq = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    CHECK(dnnl_primitive_create(&cv->prim, pd));
    CHECK(dnnl_memory_create(&cv->x, dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0), eng,
                             DNNL_MEMORY_ALLOCATE));
    CHECK(dnnl_memory_create(&cv->y, dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0), eng,
                             y ? (void *)y : DNNL_MEMORY_ALLOCATE));
    CHECK(dnnl_memory_create(&cv->w, wq, eng, DNNL_MEMORY_ALLOCATE));
    CHECK(dnnl_memory_create(&cv->b, bq, eng, (void *)b));
    CHECK(dnnl_memory_create(&cv->scratch, sq, eng, DNNL_MEMORY_ALLOCATE));
    /* the data in the layouts the kernel chose: uninitialised memory could hold denormals or NaNs */
    if (fill(eng, st, x, dnnl_nchw, cv->x) || fill(eng, st, w, dnnl_oihw, cv->w)) return 1;
    return 0;
}

static int conv_run(conv *cv, dnnl_stream_t st) {
    dnnl_exec_arg_t args[5] = {{DNNL_ARG_SRC, cv->x},
                               {DNNL_ARG_WEIGHTS, cv->w},
                               {DNNL_ARG_BIAS, cv->b},
                               {DNNL_ARG_DST, cv->y},
                               {DNNL_ARG_SCRATCHPAD, cv->scratch}};
    CHECK(dnnl_primitive_execute(cv->prim, st, 5, args));
    CHECK(dnnl_stream_wait(st));
    return 0;
}

static void conv_free(conv *cv) {
    dnnl_memory_t *m[5] = {&cv->x, &cv->w, &cv->b, &cv->y, &cv->scratch};
    for (int i = 0; i < 5; i++)
        if (*m[i]) dnnl_memory_destroy(*m[i]);
    if (cv->prim) dnnl_primitive_destroy(cv->prim);
    if (cv->pd) dnnl_primitive_desc_destroy(cv->pd);
    memset(cv, 0, sizeof *cv);
}

/* --cold: before every timed run, 96 MiB are read (3x this machine's L3; written once, so that no
 * dirty lines are left to write back during the run), so that the weights, input and output come
 * from memory, as the weights of ResNet-50's later layers do at batch 1 in the network (its 100 MB of
 * weights do not stay in the caches between forwards). Not timed. */
static float *g_evict; /* NULL: warm runs */
#define EVICT_FLOATS ((size_t)24 << 20)

static void evict_caches(void) {
    if (!g_evict) return;
    float a = 0;
    for (size_t i = 0; i < EVICT_FLOATS; i += 16) a += g_evict[i];
    volatile float keep = a; /* the reads stay */
    (void)keep;
}

/* The best of reps runs of the convolutions cv[0..n-1] one after the other (after one warm-up). */
static int time_convs(conv *cv, int n, dnnl_stream_t st, int reps, double *best) {
    *best = 1e30;
    for (int rep = -1; rep < reps; rep++) {
        evict_caches();
        double t0 = mg_time_now();
        for (int i = 0; i < n; i++)
            if (conv_run(&cv[i], st)) return 1;
        double dt = mg_time_now() - t0;
        if (rep >= 0 && dt < *best) *best = dt;
    }
    return 0;
}

static int skipped_impl(const char *impl) {
    return strstr(impl, "ref") || strstr(impl, "sse41");
}

/* --slices: the first implementation's convolution whole and as k output-channel slices writing
 * into one output (the slices' outputs are contiguous only in a plain or per-channel-block layout
 * at batch 1, hence the checks in main). */
static int run_slices(const shape *s, int slices, dnnl_alg_kind_t alg, dnnl_engine_t eng, dnnl_stream_t st, int reps,
                      const float *w, const float *b, const float *x) {
    size_t ny = (size_t)s->k * s->oh * s->oh;
    float *y1 = malloc(ny * sizeof *y1), *y2 = malloc(ny * sizeof *y2);
    conv *parts = calloc((size_t)slices, sizeof *parts);
    conv whole = {0};
    int rc = 1, ks = s->k / slices;
    if (!y1 || !y2 || !parts) goto done;
    dnnl_convolution_desc_t cd;
    dnnl_primitive_attr_t attr;
    dnnl_primitive_desc_t pd;
    if (conv_desc(s, s->k, alg, &cd, &attr)) goto done;
    if (dnnl_primitive_desc_create(&pd, &cd, attr, eng, NULL) != dnnl_success) goto done;
    dnnl_primitive_attr_destroy(attr);
    if (conv_init(&whole, eng, st, pd, x, y1, w, b)) goto done;
    for (int i = 0; i < slices; i++) {
        if (conv_desc(s, ks, alg, &cd, &attr)) goto done;
        if (dnnl_primitive_desc_create(&pd, &cd, attr, eng, NULL) != dnnl_success) goto done;
        dnnl_primitive_attr_destroy(attr);
        size_t off = (size_t)i * ks;
        if (conv_init(&parts[i], eng, st, pd, x, y2 + off * s->oh * s->oh, w + off * s->c * s->r * s->r, b + off))
            goto done;
    }
    double tw, ts;
    if (time_convs(&whole, 1, st, reps, &tw) || time_convs(parts, slices, st, reps, &ts)) goto done;
    double maxdiff = 0.0;
    for (size_t i = 0; i < ny; i++) {
        double d = (double)y1[i] - (double)y2[i];
        if (d < 0) d = -d;
        if (d > maxdiff) maxdiff = d;
    }
    const char *impl = NULL;
    dnnl_primitive_desc_query(whole.pd, dnnl_query_impl_info_str, 0, &impl);
    printf("  %-28s whole %8.3f ms, %d slices of %d channels %8.3f ms (%.3fx), outputs %s (max |diff| %.3g)\n",
           impl ? impl : "?", tw * 1e3, slices, ks, ts * 1e3, ts / tw, maxdiff == 0.0 ? "bitwise equal" : "differ",
           maxdiff);
    rc = 0;
done:
    conv_free(&whole);
    if (parts)
        for (int i = 0; i < slices; i++) conv_free(&parts[i]);
    free(parts);
    free(y1);
    free(y2);
    return rc;
}


/* --trunk: ResNet-50's stage convolutions at batch 1 (see the top of the file). */
typedef struct tlayer {
    shape s;
    int wino, nslice;
    conv *part; /* nslice convolutions (whole: one) */
    float *x, *y;
} tlayer;

typedef struct trunk_job {
    tlayer *l;
    dnnl_stream_t *st; /* one stream per pool thread */
} trunk_job;

static void trunk_task(void *ctx, int task, int thread) {
    trunk_job *j = ctx;
    mg_omp_set_threads(1); /* the OpenMP count is per thread: a slice runs on its pool thread alone */
    if (conv_run(&j->l->part[task], j->st[thread])) abort(); /* oneDNN refused a primitive it created */
}

/* This CPU's blocked activation layout (nChw16c when oneDNN runs AVX-512, nChw8c on AVX2; nChw16c
 * on older CPUs, where oneDNN has no optimised kernel for either) and its channels per block. */
static dnnl_format_tag_t cpu_block_tag(void) {
    return mg_conv2d_blocked_channels() == 8 ? dnnl_nChw8c : dnnl_nChw16c;
}
static int cpu_block(void) { return cpu_block_tag() == dnnl_nChw8c ? 8 : 16; }

static int trunk_build(tlayer *l, int nl, int k1, int kw, int threads, dnnl_engine_t eng, dnnl_stream_t st,
                       const float *w, const float *b) {
    for (int i = 0; i < nl; i++) {
        shape *s = &l[i].s;
        l[i].wino = s->r == 3 && s->stride == 1;
        int k = k1 ? (l[i].wino ? kw : k1) : 1;
        while (k > 1 && (s->k % k || (s->k / k) % cpu_block())) k--;
        l[i].nslice = k;
        l[i].part = calloc((size_t)k, sizeof *l[i].part);
        size_t ny = (size_t)s->k * s->oh * s->oh;
        l[i].y = malloc(ny * sizeof *l[i].y);
        if (!l[i].part || !l[i].y) return 1;
        mg_omp_set_threads(k1 ? 1 : threads); /* a primitive keeps the count current at its creation */
        for (int j = 0, ks = s->k / k; j < k; j++) {
            dnnl_convolution_desc_t cd;
            dnnl_primitive_attr_t attr;
            dnnl_primitive_desc_t pd;
            dnnl_alg_kind_t alg = l[i].wino ? dnnl_convolution_winograd : dnnl_convolution_direct;
            if (conv_desc(s, ks, alg, &cd, &attr)) return 1;
            dnnl_status_t ds = dnnl_primitive_desc_create(&pd, &cd, attr, eng, NULL);
            dnnl_primitive_attr_destroy(attr);
            if (ds != dnnl_success && alg == dnnl_convolution_winograd) {
                /* oneDNN 2.6 has Winograd only with AVX-512: the direct kernel, as oneDNN runs it there */
                if (conv_desc(s, ks, dnnl_convolution_direct, &cd, &attr)) return 1;
                ds = dnnl_primitive_desc_create(&pd, &cd, attr, eng, NULL);
                dnnl_primitive_attr_destroy(attr);
            }
            if (ds != dnnl_success) return 1;
            size_t off = (size_t)j * ks;
            if (conv_init(&l[i].part[j], eng, st, pd, w, l[i].y + off * s->oh * s->oh, w + off, b)) return 1;
        }
    }
    mg_omp_set_threads(threads);
    return 0;
}

static void trunk_free(tlayer *l, int nl) {
    for (int i = 0; i < nl; i++) {
        for (int j = 0; l[i].part && j < l[i].nslice; j++) conv_free(&l[i].part[j]);
        free(l[i].part);
        free(l[i].y);
    }
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int run_trunk(int threads, int reps, int k1, int kw) {
    tlayer whole[64], sliced[64];
    memset(whole, 0, sizeof whole);
    memset(sliced, 0, sizeof sliced);
    int nl = 0, width[4] = {64, 128, 256, 512}, blocks[4] = {3, 4, 6, 3}, h = 56, c = 64;
    for (int st = 0; st < 4; st++)
        for (int bl = 0; bl < blocks[st]; bl++) {
            int stride = bl == 0 && st > 0 ? 2 : 1, w = width[st], ho = h / stride;
            const dnnl_format_tag_t tag = cpu_block_tag();
            shape one[4] = {{1, c, w, h, 1, 1, 0, h, tag},
                            {1, w, w, h, 3, stride, 1, ho, tag},
                            {1, w, 4 * w, ho, 1, 1, 0, ho, tag},
                            {1, c, 4 * w, h, 1, stride, 0, ho, tag}};
            for (int u = 0; u < (bl == 0 ? 4 : 3); u++) whole[nl].s = sliced[nl].s = one[u], nl++;
            c = 4 * w, h = ho;
        }
    /* weights and inputs: one pseudo-random array, large enough for any layer (weights 2048 x 1024 x
     * 1 x 1 or 512 x 512 x 3 x 3, inputs at most 256 x 56 x 56), its values in [-1, 1] scaled for the
     * weights' fan-in as ReLU layers would see; the input of every layer reads it too */
    size_t nw = (size_t)512 * 512 * 9 + 2048; /* the largest weights, plus the largest slice offset */
    float *w = malloc(nw * sizeof *w), *b = calloc(2048, sizeof *b);
    if (!w || !b) return 1;
    mg_rng rng;
    mg_rng_init(&rng, 1, 2, 3, 4);
    fill_uniform(&rng, w, nw, 1.0f / 1024.0f);
    dnnl_engine_t eng;
    dnnl_stream_t st[64];
    mg_pool *pool = NULL;
    if (mg_dnnl_engine(&eng) != MG_OK) {
        fprintf(stderr, "bench_dnnl_conv: %s\n", mg_error_message());
        return 1;
    }
    for (int t = 0; t < threads; t++) CHECK(dnnl_stream_create(&st[t], eng, dnnl_stream_default_flags));
    if (mg_pool_init(&pool, threads) != MG_OK) {
        fprintf(stderr, "bench_dnnl_conv: %s\n", mg_error_message());
        return 1;
    }
    if (trunk_build(whole, nl, 0, 0, threads, eng, st[0], w, b) || trunk_build(sliced, nl, k1, kw, threads, eng, st[0], w, b)) {
        fprintf(stderr, "bench_dnnl_conv: could not build the trunk's convolutions\n");
        return 1;
    }
    double *tw = malloc((size_t)reps * sizeof *tw), *ts = malloc((size_t)reps * sizeof *ts),
           *th = malloc((size_t)reps * sizeof *th);
    if (!tw || !ts || !th) return 1;
    for (int rep = -1; rep < reps; rep++) {
        double t0 = mg_time_now();
        mg_omp_set_threads(threads);
        for (int i = 0; i < nl; i++)
            if (conv_run(&whole[i].part[0], st[0])) return 1;
        double t1 = mg_time_now();
        for (int i = 0; i < nl; i++) {
            trunk_job j = {&sliced[i], st};
            mg_pool_run(pool, sliced[i].nslice, trunk_task, &j);
        }
        double t2 = mg_time_now(), hot = 0.0;
        /* hot: each layer run twice in a row and the second run timed, so that its weights and
         * input are in the caches as in a single-layer benchmark; the sum against the pass above
         * is what streaming each layer's weights and activations in costs the pass */
        mg_omp_set_threads(threads);
        for (int i = 0; i < nl; i++) {
            if (conv_run(&whole[i].part[0], st[0])) return 1;
            double h0 = mg_time_now();
            if (conv_run(&whole[i].part[0], st[0])) return 1;
            hot += mg_time_now() - h0;
        }
        if (rep >= 0) tw[rep] = t1 - t0, ts[rep] = t2 - t1, th[rep] = hot;
    }
    qsort(tw, (size_t)reps, sizeof *tw, cmp_double);
    qsort(ts, (size_t)reps, sizeof *ts, cmp_double);
    qsort(th, (size_t)reps, sizeof *th, cmp_double);
    printf("resnet50 stage convolutions (%d, batch 1), %d threads, %d rounds:\n", nl, threads, reps);
    printf("  whole  (oneDNN's split)                     median %7.2f ms, best %7.2f ms\n", tw[reps / 2] * 1e3,
           tw[0] * 1e3);
    printf("  slices (%d per layer, %d per Winograd layer)  median %7.2f ms, best %7.2f ms (median %.3fx whole)\n", k1,
           kw, ts[reps / 2] * 1e3, ts[0] * 1e3, ts[reps / 2] / tw[reps / 2]);
    printf("  whole, each layer hot (sum of second runs)  median %7.2f ms, best %7.2f ms (median %.3fx whole)\n",
           th[reps / 2] * 1e3, th[0] * 1e3, th[reps / 2] / tw[reps / 2]);
    free(th);
    free(tw);
    free(ts);
    mg_pool_free(pool);
    trunk_free(whole, nl);
    trunk_free(sliced, nl);
    for (int t = 0; t < threads; t++) dnnl_stream_destroy(st[t]);
    free(w);
    free(b);
    return 0;
}

/* One of our kernels for AVX2 on the same values taken as nChw8c (as nChw16c when that is the layout
 * asked for and the channels fit, as the fused network runs them on AVX-512), with
 * bias and ReLU, best of reps after one warm-up run: with tile 4 or 2 the Winograd F(4x4, 3x3) or
 * F(2x2, 3x3) kernel (src/ops/cpu/wino_avx2.c, what the fused network runs on 3x3 stride-1 layers;
 * on a stride-2 shape, tile 4 is the stride-2 plan), with tile 0 the direct kernel
 * (src/ops/cpu/direct_avx2.c, which it runs on the 3x3 stride-2 layers of small maps on AVX2). */
static int time_own(int tile, const shape *s, const float *x, const float *w, const float *b, int reps, int threads,
                    double flop) {
    const int direct = tile == 0, s2 = !direct && s->stride == 2;
    mg_wino4 *wp = NULL;
    mg_dconv *dp = NULL;
    const int blk16 = s->tag == dnnl_nChw16c && s->c % 16 == 0 && s->k % 16 == 0 &&
                      (!direct || mg_dconv_fits_block(16, s->n, s->c, s->k, s->h, s->h, s->r, s->stride, s->pad));
    mg_status st = direct ? mg_dconv_init_block(&dp, blk16 ? 16 : 8, s->n, s->c, s->k, s->h, s->h, s->r, s->stride,
                                                s->pad, w, b)
                   : s2   ? mg_wino4_init_stride2(&wp, s->n, s->c, s->k, s->h, s->h, w, b)
                          : mg_wino4_init_tile(&wp, tile, s->n, s->c, s->k, s->h, s->h, w, b);
    if (st == MG_OK && blk16 && !direct) st = mg_wino4_set_block(wp, 16);
    if (st != MG_OK) {
        fprintf(stderr, "bench_dnnl_conv: %s\n", mg_error_message());
        mg_wino4_free(wp);
        mg_dconv_free(dp);
        return 1;
    }
    void *scratch = NULL;
    float *y = malloc((size_t)s->n * s->k * s->oh * s->oh * sizeof *y);
    size_t sb = direct ? mg_dconv_scratch_bytes(dp) : mg_wino4_scratch_bytes(wp, threads);
    if (posix_memalign(&scratch, 64, sb + 64) != 0) scratch = NULL;
    int rc = 1;
    if (!scratch || !y) {
        fprintf(stderr, "bench_dnnl_conv: out of memory\n");
    } else {
        double best = 1e30;
        for (int rep = -1; rep < reps; rep++) {
            evict_caches();
            double t0 = mg_time_now();
            if (direct)
                mg_dconv_forward(dp, x, y, 0, 1, scratch, threads);
            else
                mg_wino4_forward(wp, x, y, 0, 1, scratch, threads);
            double t = mg_time_now() - t0;
            if (rep >= 0 && t < best) best = t;
        }
        const char *layout = blk16 ? "nChw16c" : "nChw8c";
        char name[64];
        snprintf(name, sizeof name, "%s, %s",
                 direct      ? "ours:direct"
                 : s2        ? "ours:wino_avx2 stride 2"
                 : tile == 2 ? "ours:wino_avx2 F(2x2)"
                             : "ours:wino_avx2 F(4x4)",
                 layout);
        printf("  %-10s %-28s %8.3f ms  %7.1f GFLOP/s\n", direct ? "direct" : "winograd", name, best * 1e3,
               flop / best * 1e-9);
        rc = 0;
    }
    mg_wino4_free(wp);
    mg_dconv_free(dp);
    free(scratch);
    free(y);
    return rc;
}

/* Our stem kernel (src/ops/cpu/stem_avx2.c, what the fused network runs on a first convolution of a few
 * channels) on the plain NCHW image into the activations' blocked layout, with bias and ReLU, best of
 * reps after one warm-up run: the convolution alone, our max pooling (pool_avx2.c, 3x3 stride 2 pad 1,
 * ResNet's) alone on its output, and the two in one pass, as the fused network runs them. */
static int time_stem(const shape *s, const float *x, const float *w, const float *b, int reps, int threads,
                     double flop) {
    const int blk = s->tag == dnnl_nChw16c ? 16 : 8;
    if (!mg_stem_fits(blk, s->c, s->k, s->h, s->h, s->r, s->stride, s->pad)) return 0;
    mg_stem *pl[2] = {NULL, NULL};
    for (int i = 0; i < 2; i++)
        if (mg_stem_init(&pl[i], blk, s->c, s->k, s->h, s->h, s->r, s->stride, s->pad, w, b, 1) != MG_OK ||
            (i == 1 && mg_stem_set_pool(pl[i], 3, 2, 1) != MG_OK)) {
            fprintf(stderr, "bench_dnnl_conv: %s\n", mg_error_message());
            mg_stem_free(pl[0]);
            mg_stem_free(pl[1]);
            return 1;
        }
    int ph, pw;
    mg_stem_out_dims(pl[1], &ph, &pw, NULL, NULL);
    const size_t sb = mg_stem_scratch_bytes(pl[1], threads);
    void *scratch = NULL;
    float *y = malloc((size_t)s->n * s->k * s->oh * s->oh * sizeof *y);
    float *yp = malloc((size_t)s->n * s->k * ph * pw * sizeof *yp);
    if (posix_memalign(&scratch, 64, sb + 64) != 0) scratch = NULL;
    int rc = 1;
    if (!scratch || !y || !yp) {
        fprintf(stderr, "bench_dnnl_conv: out of memory\n");
    } else {
        const char *names[3] = {"ours:stem", "ours:pool_avx2 3x3/2 alone", "ours:stem + pool, one pass"};
        for (int v = 0; v < 3; v++) {
            double best = 1e30;
            for (int rep = -1; rep < reps; rep++) {
                evict_caches();
                double t0 = mg_time_now();
                if (v == 1)
                    mg_maxpool8_forward(y, yp, s->n, s->k, s->oh, s->oh, 3, 2, 1, blk, threads);
                else
                    mg_stem_forward(pl[v / 2], x, v ? yp : y, s->n, scratch, threads);
                double t = mg_time_now() - t0;
                if (rep >= 0 && t < best) best = t;
            }
            char name[64];
            snprintf(name, sizeof name, "%s, %s", names[v], blk == 16 ? "nChw16c" : "nChw8c");
            if (v == 1)
                printf("  %-10s %-28s %8.3f ms\n", "pooling", name, best * 1e3);
            else
                printf("  %-10s %-28s %8.3f ms  %7.1f GFLOP/s\n", "direct", name, best * 1e3, flop / best * 1e-9);
        }
        rc = 0;
    }
    mg_stem_free(pl[0]);
    mg_stem_free(pl[1]);
    free(scratch);
    free(y);
    free(yp);
    return rc;
}

int main(int argc, char **argv) {
    mg_runtime_init(argc, argv, MG_WAIT_SPIN);
    shape s = {.n = 1, .r = 1, .stride = 1, .tag = dnnl_nChw16c};
    int threads = 1, reps = 20, slices = 0, wino_slices = 2, trunk = 0;
    const char *layout = "blocked";
    for (int i = 1; i < argc; i += 2) {
        if (!strcmp(argv[i], "--trunk")) {
            trunk = 1, i--;
            continue;
        }
        if (!strcmp(argv[i], "--cold")) {
            if (!g_evict && !(g_evict = malloc(EVICT_FLOATS * sizeof *g_evict))) {
                fprintf(stderr, "bench_dnnl_conv: --cold: out of memory for its 96 MiB buffer\n");
                return 1;
            }
            for (size_t j = 0; j < EVICT_FLOATS; j++) g_evict[j] = (float)(j & 1023);
            i--;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "bench_dnnl_conv: option '%s' needs a value\n", argv[i]);
            return 2;
        }
        const char *o = argv[i], *v = argv[i + 1];
        if (!strcmp(o, "--ic")) s.c = atoi(v);
        else if (!strcmp(o, "--oc")) s.k = atoi(v);
        else if (!strcmp(o, "--size")) s.h = atoi(v);
        else if (!strcmp(o, "--kernel")) s.r = atoi(v);
        else if (!strcmp(o, "--stride")) s.stride = atoi(v);
        else if (!strcmp(o, "--batch")) s.n = atoi(v);
        else if (!strcmp(o, "--threads")) threads = atoi(v);
        else if (!strcmp(o, "--reps")) reps = atoi(v);
        else if (!strcmp(o, "--slices")) slices = atoi(v);
        else if (!strcmp(o, "--wino-slices")) wino_slices = atoi(v);
        else if (!strcmp(o, "--layout")) layout = v;
        else {
            fprintf(stderr, "bench_dnnl_conv: unknown option '%s'\n", o);
            return 2;
        }
    }
    if (trunk) {
        if (!slices) slices = 8;
        if (threads < 1 || threads > 64 || reps < 1 || slices < 1 || wino_slices < 1) {
            fprintf(stderr, "bench_dnnl_conv: --trunk needs --threads 1..64, --reps >= 1, --slices >= 1 and "
                            "--wino-slices >= 1; found %d, %d, %d, %d\n",
                    threads, reps, slices, wino_slices);
            return 2;
        }
        if (mg_ops_set_threads(threads) != MG_OK) {
            fprintf(stderr, "bench_dnnl_conv: %s\n", mg_error_message());
            return 2;
        }
        return run_trunk(threads, reps, slices, wino_slices);
    }
    if (!strcmp(layout, "blocked")) s.tag = cpu_block_tag();
    else if (!strcmp(layout, "blocked16")) s.tag = dnnl_nChw16c;
    else if (!strcmp(layout, "blocked8")) s.tag = dnnl_nChw8c;
    else if (!strcmp(layout, "nhwc")) s.tag = dnnl_nhwc;
    else if (!strcmp(layout, "any")) s.tag = dnnl_format_tag_any;
    else {
        fprintf(stderr, "bench_dnnl_conv: --layout: expected blocked, blocked16, blocked8, nhwc or any, found '%s'\n", layout);
        return 2;
    }
    if (s.c < 1 || s.k < 1 || s.h < 1 || s.r < 1 || s.stride < 1 || s.n < 1 || threads < 1 || reps < 1 ||
        slices < 0 || s.h < s.r / 2 + 1) {
        fprintf(stderr, "bench_dnnl_conv: expected --ic, --oc, --size, --kernel, --stride, --batch, --threads, --reps "
                        ">= 1 (--size at least kernel/2 + 1) and --slices >= 0\n");
        return 2;
    }
    const int blk = s.tag == dnnl_nChw16c ? 16 : 8;
    if (slices && (s.k % slices || s.n != 1 || (s.k / slices) % blk || s.tag == dnnl_nhwc ||
                   s.tag == dnnl_format_tag_any)) {
        fprintf(stderr, "bench_dnnl_conv: --slices K needs --batch 1, a blocked --layout and --oc divisible by %d K "
                        "(each slice a whole number of channel blocks, contiguous in the output); found --oc %d, "
                        "--batch %d, --layout %s, --slices %d\n",
                blk, s.k, s.n, layout, slices);
        return 2;
    }
    if (mg_ops_set_threads(threads) != MG_OK) {
        fprintf(stderr, "bench_dnnl_conv: %s\n", mg_error_message());
        return 2;
    }
    mg_omp_set_threads(threads);
    s.pad = s.r / 2;
    s.oh = (s.h + 2 * s.pad - s.r) / s.stride + 1;

    dnnl_engine_t eng;
    dnnl_stream_t st;
    if (mg_dnnl_engine(&eng) != MG_OK) {
        fprintf(stderr, "bench_dnnl_conv: %s\n", mg_error_message());
        return 1;
    }
    CHECK(dnnl_stream_create(&st, eng, dnnl_stream_default_flags));
    /* deterministic pseudo-random data in [-1, 1] (weights scaled down): ReLU keeps about half */
    size_t nx = (size_t)s.n * s.c * s.h * s.h, nw = (size_t)s.k * s.c * s.r * s.r;
    float *x = malloc(nx * sizeof *x), *w = malloc(nw * sizeof *w), *b = malloc((size_t)s.k * sizeof *b);
    if (!x || !w || !b) {
        fprintf(stderr, "bench_dnnl_conv: out of memory\n");
        return 1;
    }
    mg_rng rng;
    mg_rng_init(&rng, 1, 2, 3, 4);
    fill_uniform(&rng, x, nx, 1.0f);
    fill_uniform(&rng, w, nw, 1.0f / (float)(s.c * s.r * s.r));
    fill_uniform(&rng, b, (size_t)s.k, 0.1f);
    double flop = 2.0 * s.n * s.oh * s.oh * s.k * s.c * s.r * s.r;
    printf("convolution batch %d, %d -> %d channels, %dx%d input, %dx%d kernel, stride %d, layout %s, %d threads "
           "(%.3f GFLOP)\n",
           s.n, s.c, s.k, s.h, s.h, s.r, s.r, s.stride, layout, threads, flop * 1e-9);
    int first_alg = -1;
    dnnl_alg_kind_t algs[2] = {dnnl_convolution_direct, dnnl_convolution_winograd};
    for (int a = 0; a < 2; a++) {
        dnnl_convolution_desc_t cd;
        dnnl_primitive_attr_t attr;
        int d = conv_desc(&s, s.k, algs[a], &cd, &attr);
        if (d > 0) return 1;
        if (d < 0) continue;
        dnnl_primitive_desc_iterator_t it;
        if (dnnl_primitive_desc_iterator_create(&it, &cd, attr, eng, NULL) != dnnl_success) {
            dnnl_primitive_attr_destroy(attr);
            continue;
        }
        dnnl_primitive_attr_destroy(attr);
        do {
            dnnl_primitive_desc_t pd = dnnl_primitive_desc_iterator_fetch(it);
            const char *impl = NULL;
            if (!pd) break;
            dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
            if (!impl || skipped_impl(impl)) {
                dnnl_primitive_desc_destroy(pd);
                continue;
            }
            conv cv;
            double best;
            if (conv_init(&cv, eng, st, pd, x, NULL, w, b) || time_convs(&cv, 1, st, reps, &best)) return 1;
            printf("  %-10s %-28s %8.3f ms  %7.1f GFLOP/s\n", a ? "winograd" : "direct", impl, best * 1e3,
                   flop / best * 1e-9);
            conv_free(&cv);
            if (first_alg < 0) first_alg = a;
        } while (dnnl_primitive_desc_iterator_next(it) == dnnl_success);
        dnnl_primitive_desc_iterator_destroy(it);
    }
    if (s.r == 3 && s.stride == 1 && mg_wino4_shape_ok(s.c, s.k) && mg_wino4_cpu_ok()) {
        if (time_own(4, &s, x, w, b, reps, threads, flop) || time_own(2, &s, x, w, b, reps, threads, flop)) return 1;
        if (first_alg < 0) first_alg = 1;
    }
    if (s.r == 3 && s.stride == 2 && s.pad == 1 && mg_wino4_shape_ok(s.c, s.k) && mg_wino4_cpu_ok() &&
        time_own(4, &s, x, w, b, reps, threads, flop))
        return 1;
    if (mg_dconv_fits(s.n, s.c, s.k, s.h, s.h, s.r, s.stride, s.pad) && time_own(0, &s, x, w, b, reps, threads, flop))
        return 1;
    if (s.c <= MG_STEM_MAX_C && time_stem(&s, x, w, b, reps, threads, flop)) return 1;
    if (first_alg < 0) {
        fprintf(stderr, "bench_dnnl_conv: oneDNN has no optimised implementation of this convolution\n");
        return 1;
    }
    if (slices) {
        /* Winograd when it takes the shape (as the fused network chooses), else direct */
        int a = (s.r == 3 && s.stride == 1) ? 1 : 0;
        printf("slices (%s, on %d threads, the slices one after the other):\n", a ? "winograd" : "direct", threads);
        if (run_slices(&s, slices, algs[a], eng, st, reps, w, b, x)) return 1;
    }
    free(x);
    free(w);
    free(b);
    dnnl_stream_destroy(st); /* the engine is the library's (mg_dnnl_engine) */
    return 0;
}
#else
int main(void) {
    fprintf(stderr, "bench_dnnl_conv: this build has no oneDNN (configure with MG_ONEDNN=ON)\n");
    return 1;
}
#endif
