/* batchnorm.c: batch norm 2d (train / eval / frozen), forward and backward: argument checks, the plain C
 * per-channel kernels (reference: double accumulation, serial over channels; fast: vectorisable blocked
 * float sums and fused loops, parallel over channels), and the optional oneDNN path (batchnorm_dnnl.c). */
#include <math.h>
#include <string.h>

#include "ops/cpu/batchnorm_internal.h"
#include "ops/cpu/layers_simd.h"
#include "ops/cpu/layers_util.h"

mg_bn2d_args mg_bn2d_default_args(mg_bn_mode mode, int n, int c, int h, int w) {
    mg_bn2d_args a = {mode, n, c, h, w, 0.1f, 1e-5f, 0};
    return a;
}

static mg_status check_args(const char *op, const mg_bn2d_args *a) {
    if (!a) return MG_FAIL(MG_ERR_INVALID_ARG, "%s: args is NULL", op);
    MG_CHECK_POS(op, a->n);
    MG_CHECK_POS(op, a->c);
    MG_CHECK_POS(op, a->h);
    MG_CHECK_POS(op, a->w);
    if (a->mode != MG_BN_TRAIN && a->mode != MG_BN_EVAL && a->mode != MG_BN_FROZEN)
        return MG_FAIL(MG_ERR_INVALID_ARG, "%s: mode must be TRAIN, EVAL or FROZEN, found %d", op, (int)a->mode);
    if (!(a->eps > 0.0f) || !(a->momentum >= 0.0f && a->momentum <= 1.0f))
        return MG_FAIL(MG_ERR_INVALID_ARG, "%s: expected eps > 0 and 0 <= momentum <= 1, found eps=%g momentum=%g",
                       op, (double)a->eps, (double)a->momentum);
    if (a->mode == MG_BN_TRAIN && (long long)a->n * a->h * a->w < 2)
        return MG_FAIL(MG_ERR_INVALID_ARG,
                       "%s: training mode needs more than 1 value per channel, found n*h*w = 1", op);
    return MG_OK;
}

typedef struct bn_ctx {
    const mg_bn2d_args *a;
    const float *x, *dy, *weight, *bias, *save_mean, *save_invstd;
    float *running_mean, *running_var, *sm, *si, *y, *dx, *dweight, *dbias;
} bn_ctx;

/* Channel c's statistics once the batch mean and biased variance are known (training), or the
 * running statistics (eval, frozen): updates the running mean and the running UNBIASED variance in
 * training, records save_mean/save_invstd, and returns the affine y = x * alpha + beta. */
static void bn_channel_finish(const bn_ctx *t, size_t c, float mean, double var, double count, float *alpha,
                              float *beta) {
    const mg_bn2d_args *a = t->a;
    float invstd;
    if (a->mode == MG_BN_TRAIN) {
        invstd = (float)(1.0 / sqrt(var + (double)a->eps));
        if (t->running_mean) t->running_mean[c] = (1.0f - a->momentum) * t->running_mean[c] + a->momentum * mean;
        if (t->running_var)
            t->running_var[c] =
                (1.0f - a->momentum) * t->running_var[c] + a->momentum * (float)(var * count / (count - 1.0));
    } else {
        mean = t->running_mean[c];
        invstd = (float)(1.0 / sqrt((double)t->running_var[c] + (double)a->eps));
    }
    t->sm[c] = mean;
    t->si[c] = invstd;
    float g = t->weight ? t->weight[c] : 1.0f, b = t->bias ? t->bias[c] : 0.0f;
    *alpha = invstd * g;
    *beta = b - mean * *alpha;
}

/* Forward for channels [c0, c1). */
static void bn_forward_range(void *p, size_t c0, size_t c1) {
    bn_ctx *t = p;
    const mg_bn2d_args *a = t->a;
    size_t hw = (size_t)a->h * a->w, chw = (size_t)a->c * hw;
    double count = (double)a->n * (double)hw;
    for (size_t c = c0; c < c1; c++) {
        float mean = 0;
        double var = 0;
        if (a->mode == MG_BN_TRAIN) {
            double s = 0;
            for (int n = 0; n < a->n; n++) {
                const float *xp = t->x + n * chw + c * hw;
                for (size_t i = 0; i < hw; i++) s += xp[i];
            }
            double m = s / count, v = 0;
            for (int n = 0; n < a->n; n++) {
                const float *xp = t->x + n * chw + c * hw;
                for (size_t i = 0; i < hw; i++) {
                    double d = xp[i] - m;
                    v += d * d;
                }
            }
            var = v / count;
            mean = (float)m;
        }
        float alpha, beta;
        bn_channel_finish(t, c, mean, var, count, &alpha, &beta);
        for (int n = 0; n < a->n; n++) {
            const float *xp = t->x + n * chw + c * hw;
            float *yp = t->y + n * chw + c * hw;
            for (size_t i = 0; i < hw; i++) yp[i] = xp[i] * alpha + beta;
        }
    }
}

static void bn_backward_range(void *p, size_t c0, size_t c1) {
    bn_ctx *t = p;
    const mg_bn2d_args *a = t->a;
    size_t hw = (size_t)a->h * a->w, chw = (size_t)a->c * hw;
    double count = (double)a->n * (double)hw;
    for (size_t c = c0; c < c1; c++) {
        float mean = t->save_mean[c], invstd = t->save_invstd[c];
        double sdy = 0, sdyx = 0; /* sum dy, sum dy*(x-mean) */
        for (int n = 0; n < a->n; n++) {
            const float *xp = t->x + n * chw + c * hw, *gp = t->dy + n * chw + c * hw;
            for (size_t i = 0; i < hw; i++) {
                sdy += gp[i];
                sdyx += (double)gp[i] * (double)(xp[i] - mean);
            }
        }
        if (t->dweight) t->dweight[c] += (float)(sdyx * invstd);
        if (t->dbias) t->dbias[c] += (float)sdy;
        if (!t->dx) continue;
        float g = t->weight ? t->weight[c] : 1.0f;
        if (a->mode == MG_BN_TRAIN) {
            /* dx = (dy - mean(dy) - (x-mean) invstd^2 mean(dy (x-mean))) invstd g */
            float mdy = (float)(sdy / count);
            float k = (float)(sdyx / count * (double)invstd * (double)invstd);
            float scale = invstd * g;
            for (int n = 0; n < a->n; n++) {
                const float *xp = t->x + n * chw + c * hw, *gp = t->dy + n * chw + c * hw;
                float *dp = t->dx + n * chw + c * hw;
                for (size_t i = 0; i < hw; i++) dp[i] = (gp[i] - mdy - (xp[i] - mean) * k) * scale;
            }
        } else {
            float scale = invstd * g;
            for (int n = 0; n < a->n; n++) {
                const float *gp = t->dy + n * chw + c * hw;
                float *dp = t->dx + n * chw + c * hw;
                for (size_t i = 0; i < hw; i++) dp[i] = gp[i] * scale;
            }
        }
    }
}

/* y = x * a + b; the in-place variant takes one pointer (restrict) */
__attribute__((noinline)) static void axpb(const float *restrict x, float *restrict y, size_t n, float a, float b) {
    size_t n8 = n & ~(size_t)7;
    for (size_t i = 0; i < n8; i++) y[i] = x[i] * a + b;
    for (size_t i = n8; i < n; i++) y[i] = x[i] * a + b;
}
__attribute__((noinline)) static void axpb_inplace(float *restrict y, size_t n, float a, float b) {
    size_t n8 = n & ~(size_t)7;
    for (size_t i = 0; i < n8; i++) y[i] = y[i] * a + b;
    for (size_t i = n8; i < n; i++) y[i] = y[i] * a + b;
}

/* y = max(x * a + b, 0): the BN output and the ReLU after it in one pass (bit-identical to the two) */
__attribute__((noinline)) static void axpb_relu(const float *restrict x, float *restrict y, size_t n, float a, float b) {
    size_t n8 = n & ~(size_t)7;
    for (size_t i = 0; i < n8; i++) {
        float v = x[i] * a + b;
        y[i] = v > 0.0f ? v : 0.0f;
    }
    for (size_t i = n8; i < n; i++) {
        float v = x[i] * a + b;
        y[i] = v > 0.0f ? v : 0.0f;
    }
}
__attribute__((noinline)) static void axpb_relu_inplace(float *restrict y, size_t n, float a, float b) {
    size_t n8 = n & ~(size_t)7;
    for (size_t i = 0; i < n8; i++) {
        float v = y[i] * a + b;
        y[i] = v > 0.0f ? v : 0.0f;
    }
    for (size_t i = n8; i < n; i++) {
        float v = y[i] * a + b;
        y[i] = v > 0.0f ? v : 0.0f;
    }
}

/* y = x * alpha + beta over one plane (then ReLU when relu), y may equal x */
static void affine_plane(const float *x, float *y, size_t n, float alpha, float beta, int relu) {
    if (relu)
        (x == y) ? axpb_relu_inplace(y, n, alpha, beta) : axpb_relu(x, y, n, alpha, beta);
    else
        (x == y) ? axpb_inplace(y, n, alpha, beta) : axpb(x, y, n, alpha, beta);
}

/* ---- fast kernels: same maths, vectorisable loops (layers_simd.h), float sums in double-added blocks ---- */
static void bn_forward_fast_range(void *p, size_t c0, size_t c1) {
    bn_ctx *t = p;
    const mg_bn2d_args *a = t->a;
    size_t hw = (size_t)a->h * a->w, chw = (size_t)a->c * hw;
    double count = (double)a->n * (double)hw;
    for (size_t c = c0; c < c1; c++) {
        float mean = 0;
        double var = 0;
        if (a->mode == MG_BN_TRAIN) {
            /* shifted sums: deviations from the channel's first value, so |mean| >> std stays accurate */
            float shift = t->x[c * hw];
            double s = 0, v = 0;
            for (int n = 0; n < a->n; n++) s += mg_simd_sum(t->x + n * chw + c * hw, hw, shift);
            double mean_d = (double)shift + s / count;
            mean = (float)mean_d;
            for (int n = 0; n < a->n; n++) v += mg_simd_sumsq_dev(t->x + n * chw + c * hw, hw, mean);
            /* v is centred on the float mean: remove the (tiny) offset of its rounding */
            double dm = mean_d - (double)mean;
            var = v / count - dm * dm;
            if (var < 0) var = 0;
        }
        float alpha, beta;
        bn_channel_finish(t, c, mean, var, count, &alpha, &beta);
        for (int n = 0; n < a->n; n++) affine_plane(t->x + n * chw + c * hw, t->y + n * chw + c * hw, hw, alpha, beta, a->relu);
    }
}

/* dx = (g - mdy - (x - mean) k) scale, in torch's order: x - mean first (exact for nearby values), so
 * channels with |mean| >> std do not lose digits to cancellation. dx may be g: the in-place variant. */
__attribute__((noinline)) static void bn_dx_kernel(const float *restrict g, const float *restrict x, float *restrict dx,
                                                   size_t n, float mean, float k, float mdy, float scale) {
    size_t n8 = n & ~(size_t)7;
    for (size_t i = 0; i < n8; i++) dx[i] = (g[i] - mdy - (x[i] - mean) * k) * scale;
    for (size_t i = n8; i < n; i++) dx[i] = (g[i] - mdy - (x[i] - mean) * k) * scale;
}
__attribute__((noinline)) static void bn_dx_kernel_inplace(float *restrict g, const float *restrict x, size_t n,
                                                           float mean, float k, float mdy, float scale) {
    size_t n8 = n & ~(size_t)7;
    for (size_t i = 0; i < n8; i++) g[i] = (g[i] - mdy - (x[i] - mean) * k) * scale;
    for (size_t i = n8; i < n; i++) g[i] = (g[i] - mdy - (x[i] - mean) * k) * scale;
}

void mg_bn2d_dx_plane(const float *g, const float *x, float *dx, size_t n, float mean, float k, float mdy,
                      float scale) {
    if (dx == g)
        bn_dx_kernel_inplace(dx, x, n, mean, k, mdy, scale);
    else
        bn_dx_kernel(g, x, dx, n, mean, k, mdy, scale);
}

static void bn_backward_fast_range(void *p, size_t c0, size_t c1) {
    bn_ctx *t = p;
    const mg_bn2d_args *a = t->a;
    size_t hw = (size_t)a->h * a->w, chw = (size_t)a->c * hw;
    double count = (double)a->n * (double)hw;
    for (size_t c = c0; c < c1; c++) {
        float mean = t->save_mean[c], invstd = t->save_invstd[c];
        double sdy = 0, sdyx = 0;
        for (int n = 0; n < a->n; n++)
            mg_simd_sum_g_gx(t->dy + n * chw + c * hw, t->x + n * chw + c * hw, hw, mean, &sdy, &sdyx);
        if (t->dweight) t->dweight[c] += (float)(sdyx * invstd);
        if (t->dbias) t->dbias[c] += (float)sdy;
        if (!t->dx) continue;
        float scale = invstd * (t->weight ? t->weight[c] : 1.0f), mdy = 0.0f, k = 0.0f;
        if (a->mode == MG_BN_TRAIN) { /* EVAL/FROZEN: k = mdy = 0, dx = g scale */
            mdy = (float)(sdy / count);
            k = (float)(sdyx / count * (double)invstd * (double)invstd);
        }
        for (int n = 0; n < a->n; n++)
            mg_bn2d_dx_plane(t->dy + n * chw + c * hw, t->x + n * chw + c * hw, t->dx + n * chw + c * hw, hw, mean, k,
                             mdy, scale);
    }
}

mg_status mg_bn2d_forward(const mg_bn2d_args *a, const float *x, const float *weight, const float *bias,
                          float *running_mean, float *running_var, float *save_mean, float *save_invstd,
                          float *y) {
    const char *op = "bn2d_forward";
    MG_TRY(check_args(op, a));
    MG_CHECK_PTR(op, x);
    MG_CHECK_PTR(op, y);
    MG_CHECK_PTR(op, save_mean);
    MG_CHECK_PTR(op, save_invstd);
    if (a->mode != MG_BN_TRAIN) {
        MG_CHECK_PTR(op, running_mean);
        MG_CHECK_PTR(op, running_var);
    }
    int fast = mg_layers_use_fast();
    size_t count = (size_t)a->n * a->c * a->h * a->w;
#if MG_HAVE_ONEDNN
    if (fast && mg_bn2d_dnnl_enabled()) {
        mg_status s = mg_bn2d_dnnl_forward(a, x, weight, bias, running_mean, running_var, save_mean,
                                           save_invstd, y);
        if (s == MG_OK && a->relu) return mg_relu_forward(count, y, y);
        if (s != MG_ERR_UNSUPPORTED) return s;
    }
#endif
    bn_ctx t = {.a = a, .x = x, .weight = weight, .bias = bias, .running_mean = running_mean,
                .running_var = running_var, .sm = save_mean, .si = save_invstd, .y = y};
    if (fast)
        mg_layers_parallel_for((size_t)a->c, 1, bn_forward_fast_range, &t); /* ReLU included */
    else {
        bn_forward_range(&t, 0, (size_t)a->c);
        if (a->relu) return mg_relu_forward(count, y, y);
    }
    return MG_OK;
}

static void bn_apply_range(void *p, size_t c0, size_t c1) {
    bn_ctx *t = p;
    const mg_bn2d_args *a = t->a;
    size_t hw = (size_t)a->h * a->w, chw = (size_t)a->c * hw;
    for (size_t c = c0; c < c1; c++) {
        /* bn_channel_finish's affine, from the saved statistics */
        float g = t->weight ? t->weight[c] : 1.0f, b = t->bias ? t->bias[c] : 0.0f;
        float alpha = t->save_invstd[c] * g;
        float beta = b - t->save_mean[c] * alpha;
        for (int n = 0; n < a->n; n++) affine_plane(t->x + n * chw + c * hw, t->y + n * chw + c * hw, hw, alpha, beta, a->relu);
    }
}

void mg_bn2d_affine_saved(const mg_bn2d_args *a, const float *x, const float *weight, const float *bias,
                          const float *save_mean, const float *save_invstd, float *y) {
    bn_ctx t = {.a = a, .x = x, .weight = weight, .bias = bias, .save_mean = save_mean, .save_invstd = save_invstd,
                .y = y};
    if (mg_layers_use_fast())
        mg_layers_parallel_for((size_t)a->c, 1, bn_apply_range, &t);
    else
        bn_apply_range(&t, 0, (size_t)a->c);
}

mg_status mg_bn2d_apply(const mg_bn2d_args *a, const float *x, const float *weight, const float *bias,
                        const float *save_mean, const float *save_invstd, float *y) {
    const char *op = "bn2d_apply";
    MG_TRY(check_args(op, a));
    MG_CHECK_PTR(op, x);
    MG_CHECK_PTR(op, y);
    MG_CHECK_PTR(op, save_mean);
    MG_CHECK_PTR(op, save_invstd);
    if (x == y) return MG_FAIL(MG_ERR_INVALID_ARG, "%s: y must not alias x", op);
    mg_bn2d_affine_saved(a, x, weight, bias, save_mean, save_invstd, y);
    return MG_OK;
}

mg_status mg_bn2d_backward(const mg_bn2d_args *a, const float *x, const float *dy, const float *weight,
                           const float *save_mean, const float *save_invstd, float *dx, float *dweight,
                           float *dbias) {
    const char *op = "bn2d_backward";
    MG_TRY(check_args(op, a));
    MG_CHECK_PTR(op, x);
    MG_CHECK_PTR(op, dy);
    MG_CHECK_PTR(op, save_mean);
    MG_CHECK_PTR(op, save_invstd);
    int fast = mg_layers_use_fast();
#if MG_HAVE_ONEDNN
    if (fast && mg_bn2d_dnnl_enabled()) {
        mg_status s = mg_bn2d_dnnl_backward(a, x, dy, weight, save_mean, save_invstd, dx, dweight, dbias);
        if (s != MG_ERR_UNSUPPORTED) return s;
    }
#endif
    bn_ctx t = {.a = a, .x = x, .dy = dy, .weight = weight, .save_mean = save_mean,
                .save_invstd = save_invstd, .dx = dx, .dweight = dweight, .dbias = dbias};
    if (fast)
        mg_layers_parallel_for((size_t)a->c, 1, bn_backward_fast_range, &t);
    else
        bn_backward_range(&t, 0, (size_t)a->c);
    return MG_OK;
}
