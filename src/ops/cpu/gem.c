/* gem.c: GeM pooling (generalised mean over the whole h x w plane, MultiGrain §1.2) forward and
 * backward to the input and to the exponent p; p == 1 takes the exact plain-average path. One kernel per
 * (n,c) plane. Reference: powf/pow/log per element, sums in double, serial. Fast: planes spread over the
 * thread pool, x^3 as x*x*x (as torch's pow does for exponent 3), x^(p-1) as x^p / x and float logf,
 * so one pow per element in each direction. */
#include <math.h>
#include <string.h>

#include "ops/cpu/layers_simd.h"
#include "ops/cpu/layers_util.h"

#define GEM_DP_CHUNKS 64

typedef struct gem_ctx {
    size_t hw;
    float p;
    const float *x, *y, *dy;
    float *out, *dx;
    size_t planes;
    double dp_part[GEM_DP_CHUNKS]; /* d loss / d p of each fixed plane chunk, summed in chunk order */
} gem_ctx;

static void gem_fwd_range(void *v, size_t b, size_t e) {
    gem_ctx *t = v;
    for (size_t pl = b; pl < e; pl++) {
        const float *x = t->x + pl * t->hw;
        double s = 0;
        if (t->p == 1.0f) {
            for (size_t i = 0; i < t->hw; i++) s += x[i];
            t->out[pl] = (float)(s / (double)t->hw);
        } else {
            for (size_t i = 0; i < t->hw; i++) s += powf(fmaxf(x[i], MG_GEM_EPS), t->p);
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
        const float *x = t->x + pl * t->hw;
        float g = t->dy[pl], y = t->y[pl];
        if (t->dx) {
            float *dx = t->dx + pl * t->hw;
            if (p == 1.0f) {
                float k = g / (float)t->hw;
                for (size_t i = 0; i < t->hw; i++) dx[i] = k;
            } else {
                float k = g * powf(y, 1.0f - p) / (float)t->hw;
                for (size_t i = 0; i < t->hw; i++)
                    dx[i] = x[i] >= MG_GEM_EPS ? k * powf(x[i], p - 1.0f) : 0.0f;
            }
        }
        if (want_dp) {
            double sp = 0, spl = 0;
            for (size_t i = 0; i < t->hw; i++) {
                double xc = fmaxf(x[i], MG_GEM_EPS), xp = pow(xc, p);
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
static inline float gem_pow(float xc, float p) { return p == 3.0f ? xc * xc * xc : powf(xc, p); }

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

mg_status mg_gem_backward(int n, int c, int h, int w, float p, const float *x, const float *y,
                          const float *dy, float *dx, float *dp) {
    const char *op = "gem_backward";
    MG_TRY(check(op, n, c, h, w, p));
    MG_CHECK_PTR(op, x);
    MG_CHECK_PTR(op, y);
    MG_CHECK_PTR(op, dy);
    size_t planes = (size_t)n * c;
    gem_ctx t = {.hw = (size_t)h * w, .p = p, .x = x, .y = y, .dy = dy, .dx = dx, .planes = planes};
    int fast = mg_layers_use_fast();
    if (!dp) {
        double unused;
        if (fast)
            mg_layers_parallel_for(planes, 1, gem_bwd_fast_dx_range, &t);
        else
            gem_bwd_planes(&t, 0, planes, 0, &unused);
        return MG_OK;
    }
    size_t k = planes < GEM_DP_CHUNKS ? planes : GEM_DP_CHUNKS;
    if (fast)
        mg_layers_parallel_for(k, 1, gem_bwd_fast_range, &t);
    else
        gem_bwd_range(&t, 0, k);
    double s = 0;
    for (size_t i = 0; i < k; i++) s += t.dp_part[i];
    *dp += (float)s;
    return MG_OK;
}
