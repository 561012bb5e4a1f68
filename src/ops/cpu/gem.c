/* gem.c: GeM pooling (generalised mean over the whole h x w plane, MultiGrain §1.2) forward and
 * backward to the input and to the exponent p; p == 1 takes the exact plain-average path. One kernel per
 * (n,c) plane. Reference: powf/pow/log per element, sums in double, serial. Fast: planes spread over the
 * thread pool, x^3 as x*x*x (as torch's pow does for exponent 3), x^(p-1) as x^p / x and float logf,
 * so one pow per element in each direction.
 * The channel-blocked layout nChw<B>c (mg_gem_*_blocked): the reference walks each channel's plane with
 * stride B in the same order (bit-identical to the NCHW reference); the fast path runs one kernel per
 * (image, channel block) with one double accumulator per channel and the innermost loops over the B
 * contiguous channels. */
#include <math.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "ops/cpu/layers_simd.h"
#include "ops/cpu/layers_util.h"

#define GEM_DP_CHUNKS 64

typedef struct gem_ctx {
    size_t hw;
    float p;
    int c, block; /* block > 1: x and dx are nChw<block>c with c channels; else NCHW */
    const float *x, *y, *dy;
    float *out, *dx;
    size_t planes;
    double dp_part[GEM_DP_CHUNKS]; /* d loss / d p of each fixed plane chunk, summed in chunk order */
} gem_ctx;

/* Plane pl of x / dx in the context's layout (mg_layers_plane_at). */
static inline size_t plane_at(const gem_ctx *t, size_t pl, size_t *stride) {
    return mg_layers_plane_at(pl, (size_t)t->c, t->hw, t->block, stride);
}

static void gem_fwd_range(void *v, size_t b, size_t e) {
    gem_ctx *t = v;
    for (size_t pl = b; pl < e; pl++) {
        size_t st;
        const float *x = t->x + plane_at(t, pl, &st);
        double s = 0;
        if (t->p == 1.0f) {
            for (size_t i = 0; i < t->hw; i++) s += x[i * st];
            t->out[pl] = (float)(s / (double)t->hw);
        } else {
            for (size_t i = 0; i < t->hw; i++) s += powf(fmaxf(x[i * st], MG_GEM_EPS), t->p);
            t->out[pl] = (float)pow(s / (double)t->hw, 1.0 / t->p);
        }
    }
}

/* y = m^(1/p), m = mean(xc^p):  dy/dx = y^(1-p) xc^(p-1) / hw  (x >= eps; 0 below the clamp)
 *                               dy/dp = y (mean(xc^p ln xc) / (p m) - ln(m) / p^2) */
static void gem_bwd_planes(gem_ctx *t, size_t b, size_t e, int want_dp, double *dp_out) {
    float p = t->p;
    double dps = 0;
    for (size_t pl = b; pl < e; pl++) {
        size_t st, off = plane_at(t, pl, &st);
        const float *x = t->x + off;
        float g = t->dy[pl], y = t->y[pl];
        if (t->dx) {
            float *dx = t->dx + off;
            if (p == 1.0f) {
                float k = g / (float)t->hw;
                for (size_t i = 0; i < t->hw; i++) dx[i * st] = k;
            } else {
                float k = g * powf(y, 1.0f - p) / (float)t->hw;
                for (size_t i = 0; i < t->hw; i++)
                    dx[i * st] = x[i * st] >= MG_GEM_EPS ? k * powf(x[i * st], p - 1.0f) : 0.0f;
            }
        }
        if (want_dp) {
            double sp = 0, spl = 0;
            for (size_t i = 0; i < t->hw; i++) {
                double xc = fmaxf(x[i * st], MG_GEM_EPS), xp = pow(xc, p);
                sp += xp;
                spl += xp * log(xc);
            }
            double m = sp / (double)t->hw, ym = pow(m, 1.0 / p);
            dps += (double)g * ym * (spl / (double)t->hw / (p * m) - log(m) / ((double)p * p));
        }
    }
    *dp_out = dps;
}

/* Item i = plane chunk [i*planes/K, (i+1)*planes/K), K = GEM_DP_CHUNKS: fixed chunks keep the sum
 * of d/dp independent of the thread count. */
static void gem_bwd_range(void *v, size_t b, size_t e) {
    gem_ctx *t = v;
    size_t k = t->planes < GEM_DP_CHUNKS ? t->planes : GEM_DP_CHUNKS;
    for (size_t i = b; i < e; i++)
        gem_bwd_planes(t, i * t->planes / k, (i + 1) * t->planes / k, 1, &t->dp_part[i]);
}

/* ---- fast kernels ---- */
/* powf(xc, 1) is xc exactly: p == 1 skips the call (which the compiler cannot drop even when unused) */
static inline float gem_pow(float xc, float p) { return p == 3.0f ? xc * xc * xc : p == 1.0f ? xc : powf(xc, p); }

/* p = 3 (MultiGrain's usual exponent): sum of max(x,eps)^3. Per block of 256: a clamp-and-cube pass into a
 * stack buffer, then 8 float lanes; blocks added in double. Both loops are in the form -O2 vectorises. */
__attribute__((noinline)) static void clamp_cube(const float *restrict x, float *restrict out, size_t n) {
    /* two loops: GCC -O2 vectorises a bare clamp, but turns clamp-then-cube into branches */
    size_t n8 = n & ~(size_t)7;
    for (size_t i = 0; i < n8; i++) {
        float v = x[i];
        out[i] = v > MG_GEM_EPS ? v : MG_GEM_EPS;
    }
    for (size_t i = n8; i < n; i++) out[i] = x[i] > MG_GEM_EPS ? x[i] : MG_GEM_EPS;
    for (size_t i = 0; i < n8; i++) out[i] = out[i] * out[i] * out[i];
    for (size_t i = n8; i < n; i++) out[i] = out[i] * out[i] * out[i];
}

static double gem_sum_cube(const float *x, size_t n) {
    float buf[MG_SIMD_BLOCK];
    double total = 0;
    for (size_t b = 0; b < n; b += MG_SIMD_BLOCK) {
        size_t len = n - b < MG_SIMD_BLOCK ? n - b : MG_SIMD_BLOCK;
        clamp_cube(x + b, buf, len);
        total += mg_simd_sum(buf, len, 0.0f);
    }
    return total;
}

/* p = 3 backward without dp: dx = k x^2 where x >= eps, else 0 */
__attribute__((noinline)) static void gem_dx_cube(const float *restrict x, float *restrict dx, size_t n, float k) {
    size_t n8 = n & ~(size_t)7;
    for (size_t i = 0; i < n8; i++) {
        float v = x[i], d = k * (v * v);
        dx[i] = v >= MG_GEM_EPS ? d : 0.0f;
    }
    for (size_t i = n8; i < n; i++) dx[i] = x[i] >= MG_GEM_EPS ? k * (x[i] * x[i]) : 0.0f;
}

static void gem_fwd_fast_range(void *v, size_t b, size_t e) {
    gem_ctx *t = v;
    float p = t->p;
    for (size_t pl = b; pl < e; pl++) {
        const float *x = t->x + pl * t->hw;
        double s = 0;
        if (p == 1.0f) {
            for (size_t i = 0; i < t->hw; i++) s += x[i];
            t->out[pl] = (float)(s / (double)t->hw);
        } else {
            if (p == 3.0f) { /* cbrt: cheaper than pow per plane, both within an ulp in double */
                t->out[pl] = (float)cbrt(gem_sum_cube(x, t->hw) / (double)t->hw);
                continue;
            }
            for (size_t i = 0; i < t->hw; i++) s += gem_pow(fmaxf(x[i], MG_GEM_EPS), p);
            t->out[pl] = (float)pow(s / (double)t->hw, 1.0 / p);
        }
    }
}

static void gem_bwd_fast_planes(gem_ctx *t, size_t b, size_t e, int want_dp, double *dp_out) {
    float p = t->p;
    double dps = 0;
    for (size_t pl = b; pl < e; pl++) {
        const float *x = t->x + pl * t->hw;
        float g = t->dy[pl], y = t->y[pl];
        float *dx = t->dx ? t->dx + pl * t->hw : NULL;
        float k = p == 1.0f ? g / (float)t->hw
                  : p == 3.0f ? g / (y * y) / (float)t->hw
                              : g * powf(y, 1.0f - p) / (float)t->hw;
        if (!want_dp && p == 3.0f) {
            if (dx) gem_dx_cube(x, dx, t->hw, k);
            continue;
        }
        double sp = 0, spl = 0;
        for (size_t i = 0; i < t->hw; i++) {
            float xc = fmaxf(x[i], MG_GEM_EPS), xp = gem_pow(xc, p);
            if (dx) dx[i] = p == 1.0f ? k : (x[i] >= MG_GEM_EPS ? k * (xp / xc) : 0.0f);
            if (want_dp) {
                sp += xp;
                spl += xp * logf(xc);
            }
        }
        if (want_dp) {
            double m = sp / (double)t->hw, ym = pow(m, 1.0 / p);
            dps += (double)g * ym * (spl / (double)t->hw / (p * m) - log(m) / ((double)p * p));
        }
    }
    *dp_out = dps;
}

static void gem_bwd_fast_dx_range(void *v, size_t b, size_t e) {
    double unused;
    gem_bwd_fast_planes(v, b, e, 0, &unused);
}

static void gem_bwd_fast_range(void *v, size_t b, size_t e) {
    gem_ctx *t = v;
    size_t k = t->planes < GEM_DP_CHUNKS ? t->planes : GEM_DP_CHUNKS;
    for (size_t i = b; i < e; i++)
        gem_bwd_fast_planes(t, i * t->planes / k, (i + 1) * t->planes / k, 1, &t->dp_part[i]);
}

/* ---- fast kernels on nChw<B>c: item = image * (c / B) + channel block ---- */
#define GEM_LANES 16

/* Forward of `lanes` channels whose elements lie `st` floats apart (st = B; lanes = B, or a slice of a
 * block); x points at the first channel's first element, out at its y. One double accumulator per
 * channel, positions in order. Inlined with the constants 8 / 16 so that -O2 vectorises the lane loops. */
static inline __attribute__((always_inline)) void gem_fwd_lanes(const float *restrict x, float *restrict out,
                                                                size_t hw, float p, const int lanes,
                                                                const size_t st) {
    double acc[GEM_LANES];
    for (int l = 0; l < lanes; l++) acc[l] = 0.0;
    if (p == 1.0f) { /* the same double sums, in the same order, as the NCHW paths */
        for (size_t i = 0; i < hw; i++)
            for (int l = 0; l < lanes; l++) acc[l] += x[i * st + l];
        for (int l = 0; l < lanes; l++) out[l] = (float)(acc[l] / (double)hw);
    } else if (p == 3.0f) { /* the cubes of the NCHW fast path, summed in double instead of float lanes */
        float cube[GEM_LANES];
        for (size_t i = 0; i < hw; i++) {
            const float *r = x + i * st;
            for (int l = 0; l < lanes; l++) { /* clamp, then cube: two loops, as in clamp_cube */
                float v = r[l];
                cube[l] = v > MG_GEM_EPS ? v : MG_GEM_EPS;
            }
            for (int l = 0; l < lanes; l++) acc[l] += (double)(cube[l] * cube[l] * cube[l]);
        }
        for (int l = 0; l < lanes; l++) out[l] = (float)cbrt(acc[l] / (double)hw);
    } else { /* one powf per element, as on the NCHW fast path (same sums, same order) */
        for (size_t i = 0; i < hw; i++)
            for (int l = 0; l < lanes; l++) acc[l] += gem_pow(fmaxf(x[i * st + l], MG_GEM_EPS), p);
        for (int l = 0; l < lanes; l++) out[l] = (float)pow(acc[l] / (double)hw, 1.0 / p);
    }
}

static void gem_fwd_blk_range(void *v, size_t b, size_t e) {
    gem_ctx *t = v;
    const size_t B = (size_t)t->block, cbn = (size_t)t->c / B;
    for (size_t it = b; it < e; it++) {
        const float *x = t->x + it * t->hw * B;
        float *out = t->out + (it / cbn) * (size_t)t->c + (it % cbn) * B;
        if (B == 16)
            gem_fwd_lanes(x, out, t->hw, t->p, 16, 16);
        else if (B == 8)
            gem_fwd_lanes(x, out, t->hw, t->p, 8, 8);
        else
            for (size_t l0 = 0; l0 < B; l0 += GEM_LANES)
                gem_fwd_lanes(x + l0, out + l0, t->hw, t->p, B - l0 < GEM_LANES ? (int)(B - l0) : GEM_LANES, B);
    }
}

/* Backward of `lanes` channels (layout as in gem_fwd_lanes; g, y, dx at the first channel's). dx uses,
 * per element, exactly the NCHW fast path's formula for the same case; the dp terms too, summed per
 * channel in position order, then over the channels in channel order into *dps. */
static inline __attribute__((always_inline)) void gem_bwd_lanes(const float *restrict x, const float *restrict g,
                                                                const float *restrict y, float *restrict dx,
                                                                size_t hw, float p, int want_dp, double *dps,
                                                                const int lanes, const size_t st) {
    float k[GEM_LANES];
    for (int l = 0; l < lanes; l++)
        k[l] = p == 1.0f ? g[l] / (float)hw
               : p == 3.0f ? g[l] / (y[l] * y[l]) / (float)hw
                           : g[l] * powf(y[l], 1.0f - p) / (float)hw;
    if (!want_dp) {
        if (!dx) return;
        if (p == 1.0f) {
            for (size_t i = 0; i < hw; i++)
                for (int l = 0; l < lanes; l++) dx[i * st + l] = k[l];
            return;
        }
        if (p == 3.0f) { /* gem_dx_cube's arithmetic; product, then select: one loop would not if-convert */
            float d[GEM_LANES];
            for (size_t i = 0; i < hw; i++) {
                const float *r = x + i * st;
                for (int l = 0; l < lanes; l++) d[l] = k[l] * (r[l] * r[l]);
                for (int l = 0; l < lanes; l++) dx[i * st + l] = r[l] >= MG_GEM_EPS ? d[l] : 0.0f;
            }
            return;
        }
    }
    /* the NCHW loop's arithmetic, split per position into lane loops: clamp, power, dx (product, then
     * select) and the power sums vectorise; only powf (p other than 1 and 3) and logf stay scalar */
    double sp[GEM_LANES], spl[GEM_LANES];
    float xc[GEM_LANES], xp[GEM_LANES], d[GEM_LANES];
    for (int l = 0; l < lanes; l++) sp[l] = spl[l] = 0.0;
    for (size_t i = 0; i < hw; i++) {
        const float *r = x + i * st;
        for (int l = 0; l < lanes; l++) {
            float v = r[l];
            xc[l] = v > MG_GEM_EPS ? v : MG_GEM_EPS; /* fmaxf(v, eps), NaN included */
        }
        if (p == 3.0f)
            for (int l = 0; l < lanes; l++) xp[l] = xc[l] * xc[l] * xc[l];
        else if (p == 1.0f) /* powf(xc, 1) is xc exactly */
            for (int l = 0; l < lanes; l++) xp[l] = xc[l];
        else
            for (int l = 0; l < lanes; l++) xp[l] = powf(xc[l], p);
        if (dx) {
            if (p == 1.0f)
                for (int l = 0; l < lanes; l++) dx[i * st + l] = k[l];
            else {
                for (int l = 0; l < lanes; l++) d[l] = k[l] * (xp[l] / xc[l]);
                for (int l = 0; l < lanes; l++) dx[i * st + l] = r[l] >= MG_GEM_EPS ? d[l] : 0.0f;
            }
        }
        if (want_dp) {
            for (int l = 0; l < lanes; l++) sp[l] += xp[l];
            for (int l = 0; l < lanes; l++) spl[l] += xp[l] * logf(xc[l]);
        }
    }
    if (want_dp)
        for (int l = 0; l < lanes; l++) {
            double m = sp[l] / (double)hw, ym = pow(m, 1.0 / p);
            *dps += (double)g[l] * ym * (spl[l] / (double)hw / (p * m) - log(m) / ((double)p * p));
        }
}

static void gem_bwd_blk_items(gem_ctx *t, size_t b, size_t e, int want_dp, double *dp_out) {
    const size_t B = (size_t)t->block, cbn = (size_t)t->c / B;
    double dps = 0;
    for (size_t it = b; it < e; it++) {
        size_t xo = it * t->hw * B, yo = (it / cbn) * (size_t)t->c + (it % cbn) * B;
        const float *x = t->x + xo, *g = t->dy + yo, *y = t->y + yo;
        float *dx = t->dx ? t->dx + xo : NULL;
        if (B == 16)
            gem_bwd_lanes(x, g, y, dx, t->hw, t->p, want_dp, &dps, 16, 16);
        else if (B == 8)
            gem_bwd_lanes(x, g, y, dx, t->hw, t->p, want_dp, &dps, 8, 8);
        else
            for (size_t l0 = 0; l0 < B; l0 += GEM_LANES)
                gem_bwd_lanes(x + l0, g + l0, y + l0, dx ? dx + l0 : NULL, t->hw, t->p, want_dp, &dps,
                              B - l0 < GEM_LANES ? (int)(B - l0) : GEM_LANES, B);
    }
    *dp_out = dps;
}

static void gem_bwd_blk_dx_range(void *v, size_t b, size_t e) {
    double unused;
    gem_bwd_blk_items(v, b, e, 0, &unused);
}

/* as gem_bwd_range, with fixed chunks of (image, channel block) items: t->planes holds the item count */
static void gem_bwd_blk_range(void *v, size_t b, size_t e) {
    gem_ctx *t = v;
    size_t k = t->planes < GEM_DP_CHUNKS ? t->planes : GEM_DP_CHUNKS;
    for (size_t i = b; i < e; i++)
        gem_bwd_blk_items(t, i * t->planes / k, (i + 1) * t->planes / k, 1, &t->dp_part[i]);
}

static mg_status check(const char *op, int n, int c, int h, int w, float p) {
    MG_CHECK_POS(op, n);
    MG_CHECK_POS(op, c);
    MG_CHECK_POS(op, h);
    MG_CHECK_POS(op, w);
    if (!(p > 0.0f) || !isfinite(p))
        return MG_FAIL(MG_ERR_INVALID_ARG, "%s: p must be finite and > 0, found %g", op, (double)p);
    return MG_OK;
}

mg_status mg_gem_forward(int n, int c, int h, int w, float p, const float *x, float *y) {
    const char *op = "gem_forward";
    MG_TRY(check(op, n, c, h, w, p));
    MG_CHECK_PTR(op, x);
    MG_CHECK_PTR(op, y);
    gem_ctx t = {.hw = (size_t)h * w, .p = p, .x = x, .out = y};
    if (mg_layers_use_fast())
        mg_layers_parallel_for((size_t)n * c, 1, gem_fwd_fast_range, &t);
    else
        gem_fwd_range(&t, 0, (size_t)n * c);
    return MG_OK;
}

/* Runs a backward over t->planes items: dx only (dp NULL) with dx_range on the fast path, else dx and
 * the d/dp partial sums in GEM_DP_CHUNKS fixed chunks (dp_range on the fast path; the reference loops
 * otherwise), so that dp does not depend on the thread count; dp accumulated. */
static void gem_bwd_run(gem_ctx *t, int fast, mg_range_fn dx_range, mg_range_fn dp_range, float *dp) {
    if (!dp) {
        double unused;
        if (fast)
            mg_layers_parallel_for(t->planes, 1, dx_range, t);
        else
            gem_bwd_planes(t, 0, t->planes, 0, &unused);
        return;
    }
    size_t k = t->planes < GEM_DP_CHUNKS ? t->planes : GEM_DP_CHUNKS;
    if (fast)
        mg_layers_parallel_for(k, 1, dp_range, t);
    else
        gem_bwd_range(t, 0, k);
    double s = 0;
    for (size_t i = 0; i < k; i++) s += t->dp_part[i];
    *dp += (float)s;
}

mg_status mg_gem_backward(int n, int c, int h, int w, float p, const float *x, const float *y,
                          const float *dy, float *dx, float *dp) {
    const char *op = "gem_backward";
    MG_TRY(check(op, n, c, h, w, p));
    MG_CHECK_PTR(op, x);
    MG_CHECK_PTR(op, y);
    MG_CHECK_PTR(op, dy);
    size_t planes = (size_t)n * c;
    gem_ctx t = {.hw = (size_t)h * w, .p = p, .x = x, .y = y, .dy = dy, .dx = dx, .planes = planes};
    gem_bwd_run(&t, mg_layers_use_fast(), gem_bwd_fast_dx_range, gem_bwd_fast_range, dp);
    return MG_OK;
}

mg_status mg_gem_forward_blocked(int n, int c, int h, int w, int block, float p, const float *x, float *y) {
    const char *op = "gem_forward_blocked";
    MG_TRY(check(op, n, c, h, w, p));
    MG_TRY(mg_layers_check_block(op, c, block));
    if (block <= 1) return mg_gem_forward(n, c, h, w, p, x, y);
    MG_CHECK_PTR(op, x);
    MG_CHECK_PTR(op, y);
    gem_ctx t = {.hw = (size_t)h * w, .p = p, .c = c, .block = block, .x = x, .out = y};
    if (!mg_layers_use_fast()) {
        gem_fwd_range(&t, 0, (size_t)n * c);
        return MG_OK;
    }
    const size_t items = (size_t)n * (size_t)(c / block);
#ifdef _OPENMP
    /* OpenMP's threads, still awake after the fused trunk's last convolution, each on a contiguous
     * share of the channel blocks: the share that convolution's thread wrote where it split its output
     * channels the same way. ResNet-50's head at batch 1 on two threads: 48-54 us, against 110-170
     * through the thread pool, whose threads sleep between calls (docs/PERFORMANCE.md, "Two threads at
     * batch 1: the cores far apart") */
    int nthr = mg_ops_get_threads();
    if ((size_t)nthr > items) nthr = (int)items;
#pragma omp parallel for num_threads(nthr) if (nthr > 1) schedule(static)
    for (int th = 0; th < nthr; th++)
        gem_fwd_blk_range(&t, items * (size_t)th / (size_t)nthr, items * (size_t)(th + 1) / (size_t)nthr);
#else
    mg_layers_parallel_for(items, 1, gem_fwd_blk_range, &t);
#endif
    return MG_OK;
}

mg_status mg_gem_backward_blocked(int n, int c, int h, int w, int block, float p, const float *x, const float *y,
                                  const float *dy, float *dx, float *dp) {
    const char *op = "gem_backward_blocked";
    MG_TRY(check(op, n, c, h, w, p));
    MG_TRY(mg_layers_check_block(op, c, block));
    if (block <= 1) return mg_gem_backward(n, c, h, w, p, x, y, dy, dx, dp);
    MG_CHECK_PTR(op, x);
    MG_CHECK_PTR(op, y);
    MG_CHECK_PTR(op, dy);
    int fast = mg_layers_use_fast();
    /* fast: items are (image, channel block) pairs; reference: planes in NCHW order, as mg_gem_backward */
    size_t items = fast ? (size_t)n * (size_t)(c / block) : (size_t)n * c;
    gem_ctx t = {.hw = (size_t)h * w, .p = p, .c = c, .block = block, .x = x, .y = y, .dy = dy, .dx = dx,
                 .planes = items};
    gem_bwd_run(&t, fast, gem_bwd_blk_dx_range, gem_bwd_blk_range, dp);
    return MG_OK;
}
