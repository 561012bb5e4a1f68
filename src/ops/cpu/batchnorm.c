/* batchnorm.c: batch norm 2d (train / eval / frozen), forward and backward: argument checks, the plain C
 * per-channel kernels (reference: double accumulation, serial over channels; fast: vectorisable blocked
 * float sums and fused loops, parallel over channels), and the optional oneDNN path (batchnorm_dnnl.c).
 * Both layouts: NCHW, and the channel-blocked nChw<B>c when a->block > 1 (the reference loops index it
 * with a stride, the fast path has its own kernels over B lanes at a time, parallel over channel blocks). */
#include <math.h>
#include <string.h>

#include "ops/cpu/batchnorm_internal.h"
#include "ops/cpu/layers_simd.h"
#include "ops/cpu/layers_util.h"

mg_bn2d_args mg_bn2d_default_args(mg_bn_mode mode, int n, int c, int h, int w) {
    mg_bn2d_args a = {mode, n, c, h, w, 0.1f, 1e-5f, 0, 0, NULL};
    return a;
}

/* a->residual: y may equal x (in place) but not the residual */
static mg_status check_residual(const char *op, const mg_bn2d_args *a, const float *x, const float *y) {
    if (a->residual && (a->residual == y || a->residual == x))
        return MG_FAIL(MG_ERR_INVALID_ARG, "%s: the residual must be a tensor of its own, not x or y", op);
    return MG_OK;
}

int mg_bn2d_residual_fused(const mg_bn2d_args *a) {
    int dnnl = 0;
#if MG_HAVE_ONEDNN
    dnnl = mg_bn2d_dnnl_enabled();
#endif
    return mg_layers_use_fast() && a->block > 1 && !dnnl;
}

mg_status mg_bn2d_add_residual(const mg_bn2d_args *a, float *y) {
    size_t count = (size_t)a->n * a->c * a->h * a->w;
    return a->relu ? mg_add_relu_forward(count, y, a->residual, y) : mg_add_forward(count, y, a->residual, y);
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
    MG_TRY(mg_layers_check_block(op, a->c, a->block));
    if (a->mode == MG_BN_TRAIN && (long long)a->n * a->h * a->w < 2)
        return MG_FAIL(MG_ERR_INVALID_ARG,
                       "%s: training mode needs more than 1 value per channel, found n*h*w = 1", op);
    return MG_OK;
}

/* The layout: channel c of image n is the h*w values at x + bn_plane(a, n, c), stride bn_stride(a)
 * (NCHW: the contiguous plane; nChw<B>c: lane c % B of the block's [h][w][B], stride B). */
static inline size_t bn_stride(const mg_bn2d_args *a) { return a->block > 1 ? (size_t)a->block : 1; }
static inline size_t bn_plane(const mg_bn2d_args *a, size_t n, size_t c) {
    size_t st;
    return mg_layers_plane_at(n * (size_t)a->c + c, (size_t)a->c, (size_t)a->h * a->w, a->block, &st);
}

typedef struct bn_ctx {
    const mg_bn2d_args *a;
    const float *x, *dy, *weight, *bias, *save_mean, *save_invstd;
    float *running_mean, *running_var, *sm, *si, *y, *dx, *dweight, *dbias;
    const float *res; /* forward and apply on the blocked fast path: a->residual, added before the ReLU */
    int relu_bwd; /* backward: dy is dL/d relu(BN(x)); the ReLU's mask recomputed from x (bn_saved_affine) */
} bn_ctx;

static void bn_saved_affine(const struct bn_ctx *t, size_t c, float *alpha, float *beta);

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

/* Forward for channels [c0, c1) (reference, either layout). */
static void bn_forward_range(void *p, size_t c0, size_t c1) {
    bn_ctx *t = p;
    const mg_bn2d_args *a = t->a;
    size_t hw = (size_t)a->h * a->w, st = bn_stride(a);
    double count = (double)a->n * (double)hw;
    for (size_t c = c0; c < c1; c++) {
        float mean = 0;
        double var = 0;
        if (a->mode == MG_BN_TRAIN) {
            double s = 0;
            for (int n = 0; n < a->n; n++) {
                const float *xp = t->x + bn_plane(a, n, c);
                for (size_t i = 0; i < hw; i++) s += xp[i * st];
            }
            double m = s / count, v = 0;
            for (int n = 0; n < a->n; n++) {
                const float *xp = t->x + bn_plane(a, n, c);
                for (size_t i = 0; i < hw; i++) {
                    double d = xp[i * st] - m;
                    v += d * d;
                }
            }
            var = v / count;
            mean = (float)m;
        }
        float alpha, beta;
        bn_channel_finish(t, c, mean, var, count, &alpha, &beta);
        for (int n = 0; n < a->n; n++) {
            const float *xp = t->x + bn_plane(a, n, c);
            float *yp = t->y + bn_plane(a, n, c);
            for (size_t i = 0; i < hw; i++) yp[i * st] = xp[i * st] * alpha + beta;
        }
    }
}

static void bn_backward_range(void *p, size_t c0, size_t c1) {
    bn_ctx *t = p;
    const mg_bn2d_args *a = t->a;
    size_t hw = (size_t)a->h * a->w, st = bn_stride(a);
    double count = (double)a->n * (double)hw;
    for (size_t c = c0; c < c1; c++) {
        float mean = t->save_mean[c], invstd = t->save_invstd[c];
        double sdy = 0, sdyx = 0; /* sum dy, sum dy*(x-mean) */
        for (int n = 0; n < a->n; n++) {
            const float *xp = t->x + bn_plane(a, n, c), *gp = t->dy + bn_plane(a, n, c);
            for (size_t i = 0; i < hw; i++) {
                sdy += gp[i * st];
                sdyx += (double)gp[i * st] * (double)(xp[i * st] - mean);
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
                const float *xp = t->x + bn_plane(a, n, c), *gp = t->dy + bn_plane(a, n, c);
                float *dp = t->dx + bn_plane(a, n, c);
                for (size_t i = 0; i < hw; i++) dp[i * st] = (gp[i * st] - mdy - (xp[i * st] - mean) * k) * scale;
            }
        } else {
            float scale = invstd * g;
            for (int n = 0; n < a->n; n++) {
                const float *gp = t->dy + bn_plane(a, n, c);
                float *dp = t->dx + bn_plane(a, n, c);
                for (size_t i = 0; i < hw; i++) dp[i * st] = gp[i * st] * scale;
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

/* ---- fast kernels on the channel-blocked layout nChw<B>c (a->block > 1) ----
 * A channel block's B channels are taken together, in groups of at most MG_BN_BLK_LANES consecutive lanes (one
 * group when B is 8 or 16): the outer loop runs over the h*w positions (stride st = B floats), the inner
 * over the group's lanes, contiguous floats. With the lane count and the stride constants (the _k bodies
 * are inlined with lb = st = 16 or 8; other blocks run the same code with run-time values) and the lane
 * loop unrolled, GCC -O2 vectorises the lanes with the accumulators in registers. Two things defeat its
 * vectoriser here: per-lane vectors (shift, mean, ...) copied to locals (they are read in place), and two
 * sums in one loop (blk_sum_g_gx runs two loops over each chunk).
 * Sums keep per-lane float partials over BLK_CHUNK positions, each added to the lane's double total
 * (32-term float sums, as in mg_simd_sum). Per lane, the arithmetic is the NCHW fast path's.
 * The first pass over a channel block reads each image's segment of h*w*B floats in one burst; on short
 * segments (7x7, 14x14 maps) the burst ends before the hardware prefetcher catches up (the NCHW loops read
 * each image's plane in short steps instead), so that pass prefetches the next image's segment as it goes
 * (blk_next). Long segments need no help, and fetching a whole segment ahead would evict data. */
#define BLK_CHUNK 32
#define BLK_PF_POS 4           /* positions between prefetches of the next segment */
#define BLK_INLINE static inline __attribute__((always_inline))
#define BLK_UNROLL _Pragma("GCC unroll 16")
#define BLK_DISPATCH(lb, st, call)                                                                         \
    do {                                                                                                   \
        if ((lb) == 16 && (st) == 16)                                                                      \
            call(16, 16);                                                                                  \
        else if ((lb) == 8 && (st) == 8)                                                                   \
            call(8, 8);                                                                                    \
        else                                                                                               \
            call(lb, st);                                                                                  \
    } while (0)

/* Prefetches positions [p0, p1) of the segment at pf. */
static inline void blk_prefetch(const float *pf, size_t st, size_t p0, size_t p1) {
    for (size_t p = p0; p < p1; p++) __builtin_prefetch(pf + p * st);
}

/* total[l] += sum_p (x[p st + l] - shift[l]); prefetches the segment pf (NULL: none) alongside */
BLK_INLINE void blk_sum_k(size_t lb, size_t st, const float *restrict x, size_t hw, const float *restrict shift,
                          double *restrict total, const float *pf) {
    for (size_t p0 = 0; p0 < hw; p0 += BLK_CHUNK) {
        size_t p1 = hw - p0 < BLK_CHUNK ? hw : p0 + BLK_CHUNK;
        float acc[MG_BN_BLK_LANES] = {0};
        for (size_t q0 = p0; q0 < p1; q0 += BLK_PF_POS) {
            size_t q1 = p1 - q0 < BLK_PF_POS ? p1 : q0 + BLK_PF_POS;
            if (pf) blk_prefetch(pf, st, q0, q1);
            for (size_t p = q0; p < q1; p++) {
                const float *restrict xp = x + p * st;
                BLK_UNROLL
                for (size_t l = 0; l < lb; l++) acc[l] += xp[l] - shift[l];
            }
        }
        BLK_UNROLL
        for (size_t l = 0; l < lb; l++) total[l] += acc[l];
    }
}
static void blk_sum(size_t lb, size_t st, const float *x, size_t hw, const float *shift, double *total,
                    const float *pf) {
#define CALL(LB, ST) blk_sum_k(LB, ST, x, hw, shift, total, pf)
    BLK_DISPATCH(lb, st, CALL);
#undef CALL
}
const float *mg_bn2d_blk_batch_sum(const mg_bn2d_args *a, const float *x, size_t cb, size_t l0, size_t lb,
                                   double *total) {
    size_t hw = (size_t)a->h * a->w;
    const float *shift = x + mg_bn2d_blk_at(a, 0, cb, l0);
    for (size_t n = 0; n < (size_t)a->n; n++)
        blk_sum(lb, (size_t)a->block, x + mg_bn2d_blk_at(a, n, cb, l0), hw, shift, total,
                mg_bn2d_blk_next(x, a, n, cb, l0));
    return shift;
}

/* total[l] += sum_p (x[p st + l] - m[l])^2 */
BLK_INLINE void blk_sumsq_dev_k(size_t lb, size_t st, const float *restrict x, size_t hw, const float *restrict m,
                                double *restrict total) {
    for (size_t p0 = 0; p0 < hw; p0 += BLK_CHUNK) {
        size_t p1 = hw - p0 < BLK_CHUNK ? hw : p0 + BLK_CHUNK;
        float acc[MG_BN_BLK_LANES] = {0};
        for (size_t p = p0; p < p1; p++) {
            const float *restrict xp = x + p * st;
            BLK_UNROLL
            for (size_t l = 0; l < lb; l++) {
                float d = xp[l] - m[l];
                acc[l] += d * d;
            }
        }
        BLK_UNROLL
        for (size_t l = 0; l < lb; l++) total[l] += acc[l];
    }
}
static void blk_sumsq_dev(size_t lb, size_t st, const float *x, size_t hw, const float *m, double *total) {
#define CALL(LB, ST) blk_sumsq_dev_k(LB, ST, x, hw, m, total)
    BLK_DISPATCH(lb, st, CALL);
#undef CALL
}
void mg_bn2d_blk_batch_sumsq_dev(const mg_bn2d_args *a, const float *x, size_t cb, size_t l0, size_t lb,
                                 const float *m, double *total) {
    size_t hw = (size_t)a->h * a->w;
    for (size_t n = 0; n < (size_t)a->n; n++)
        blk_sumsq_dev(lb, (size_t)a->block, x + mg_bn2d_blk_at(a, n, cb, l0), hw, m, total);
}

/* sg[l] += sum_p g, sgx[l] += sum_p g (x - m[l]); prefetches the segments pg and px (NULL: none)
 * alongside. relu (a constant at each call): g is dL/dy for y = relu(x al[l] + be[l]) and counts as 0
 * where x al[l] + be[l] <= 0, the mask recomputed from x in blk_affine_k's arithmetic (so it is the
 * mask mg_relu_backward takes from the forward's y, bit for bit), kept for the chunk in gm; the sums
 * run in the same order either way. */
BLK_INLINE void blk_sum_g_gx_k(size_t lb, size_t st, const float *restrict g, const float *restrict x, size_t hw,
                               const float *restrict m, const float *restrict al, const float *restrict be, int relu,
                               double *restrict sg, double *restrict sgx, const float *pg, const float *px) {
    float gm[BLK_CHUNK][MG_BN_BLK_LANES]; /* relu: the chunk's masked g, for the second loop */
    for (size_t p0 = 0; p0 < hw; p0 += BLK_CHUNK) {
        size_t p1 = hw - p0 < BLK_CHUNK ? hw : p0 + BLK_CHUNK;
        float a1[MG_BN_BLK_LANES] = {0}, a2[MG_BN_BLK_LANES] = {0};
        for (size_t q0 = p0; q0 < p1; q0 += BLK_PF_POS) {
            size_t q1 = p1 - q0 < BLK_PF_POS ? p1 : q0 + BLK_PF_POS;
            if (pg) { /* pg and px are both set or both NULL */
                blk_prefetch(pg, st, q0, q1);
                blk_prefetch(px, st, q0, q1);
            }
            for (size_t p = q0; p < q1; p++) {
                if (relu) {
                    const float *restrict gp = g + p * st, *restrict xp = x + p * st;
                    float *restrict gmp = gm[p - p0];
                    BLK_UNROLL
                    for (size_t l = 0; l < lb; l++) { /* both loads unconditional: the ternary is a select */
                        float gv = gp[l], xv = xp[l];
                        gmp[l] = xv * al[l] + be[l] > 0.0f ? gv : 0.0f;
                    }
                }
                const float *restrict gs = relu ? gm[p - p0] : g + p * st;
                BLK_UNROLL
                for (size_t l = 0; l < lb; l++) a1[l] += gs[l];
            }
        }
        for (size_t p = p0; p < p1; p++) { /* the chunk's g (or masked g) again, from L1 */
            const float *restrict gp = relu ? gm[p - p0] : g + p * st, *restrict xp = x + p * st;
            BLK_UNROLL
            for (size_t l = 0; l < lb; l++) a2[l] += gp[l] * (xp[l] - m[l]);
        }
        BLK_UNROLL
        for (size_t l = 0; l < lb; l++) {
            sg[l] += a1[l];
            sgx[l] += a2[l];
        }
    }
}
static void blk_sum_g_gx(size_t lb, size_t st, const float *g, const float *x, size_t hw, const float *m,
                         const float *al, const float *be, double *sg, double *sgx, const float *pg, const float *px) {
#define CALL(LB, ST)                                                                                       \
    do {                                                                                                   \
        if (al)                                                                                            \
            blk_sum_g_gx_k(LB, ST, g, x, hw, m, al, be, 1, sg, sgx, pg, px);                               \
        else                                                                                               \
            blk_sum_g_gx_k(LB, ST, g, x, hw, m, NULL, NULL, 0, sg, sgx, pg, px);                           \
    } while (0)
    BLK_DISPATCH(lb, st, CALL);
#undef CALL
}
void mg_bn2d_blk_batch_sum_g_gx(const mg_bn2d_args *a, const float *g, const float *x, size_t cb, size_t l0,
                                size_t lb, const float *m, const float *al, const float *be, double *sg,
                                double *sgx) {
    size_t hw = (size_t)a->h * a->w;
    for (size_t n = 0; n < (size_t)a->n; n++) {
        size_t o = mg_bn2d_blk_at(a, n, cb, l0);
        blk_sum_g_gx(lb, (size_t)a->block, g + o, x + o, hw, m, al, be, sg, sgx, mg_bn2d_blk_next(g, a, n, cb, l0),
                     mg_bn2d_blk_next(x, a, n, cb, l0));
    }
}

/* dx = (g - mdy[l] - (x - mean[l]) k[l]) scale[l], torch's order as in bn_dx_kernel; dx may be g (the
 * in-place variant). relu (a constant at each call; not in place): g masked as in blk_sum_g_gx_k. */
BLK_INLINE void blk_dx_k(size_t lb, size_t st, const float *restrict g, const float *restrict x, float *restrict dx,
                         size_t hw, const float *restrict mean, const float *restrict k, const float *restrict mdy,
                         const float *restrict scale, const float *restrict al, const float *restrict be, int relu) {
    for (size_t p = 0; p < hw; p++) {
        const float *restrict gp = g + p * st, *restrict xp = x + p * st;
        float *restrict dp = dx + p * st;
        BLK_UNROLL
        for (size_t l = 0; l < lb; l++) {
            float gv = gp[l], xv = xp[l];
            if (relu) gv = xv * al[l] + be[l] > 0.0f ? gv : 0.0f;
            dp[l] = (gv - mdy[l] - (xv - mean[l]) * k[l]) * scale[l];
        }
    }
}
BLK_INLINE void blk_dx_inplace_k(size_t lb, size_t st, float *restrict g, const float *restrict x, size_t hw,
                                 const float *restrict mean, const float *restrict k, const float *restrict mdy,
                                 const float *restrict scale) {
    for (size_t p = 0; p < hw; p++) {
        float *restrict gp = g + p * st;
        const float *restrict xp = x + p * st;
        BLK_UNROLL
        for (size_t l = 0; l < lb; l++) gp[l] = (gp[l] - mdy[l] - (xp[l] - mean[l]) * k[l]) * scale[l];
    }
}
void mg_bn2d_blk_dx(size_t lb, size_t st, const float *g, const float *x, float *dx, size_t hw, const float *mean,
                   const float *k, const float *mdy, const float *scale, const float *al, const float *be) {
#define CALL(LB, ST)                                                                                       \
    do {                                                                                                   \
        if (al)                                                                                            \
            blk_dx_k(LB, ST, g, x, dx, hw, mean, k, mdy, scale, al, be, 1);                                \
        else if (dx != g)                                                                                  \
            blk_dx_k(LB, ST, g, x, dx, hw, mean, k, mdy, scale, NULL, NULL, 0);                            \
        else                                                                                               \
            blk_dx_inplace_k(LB, ST, dx, x, hw, mean, k, mdy, scale);                                      \
    } while (0)
    BLK_DISPATCH(lb, st, CALL);
#undef CALL
}

/* y = relu?(x al[l] + be[l] (+ r)) (the ReLU as in axpb_relu); with res, the affine's value is rounded
 * to float and then the residual r added, as the BN output followed by mg_add_relu_forward /
 * mg_add_forward computes it (bit for bit); r is only read when res (a constant at each call). The
 * in-place variant (y == x) takes one pointer. */
BLK_INLINE void blk_affine_k(size_t lb, size_t st, const float *restrict x, const float *restrict r,
                             float *restrict y, size_t hw, const float *restrict al, const float *restrict be,
                             int relu, int res) {
    for (size_t p = 0; p < hw; p++) {
        const float *restrict xp = x + p * st;
        float *restrict yp = y + p * st;
        BLK_UNROLL
        for (size_t l = 0; l < lb; l++) {
            float v = xp[l] * al[l] + be[l];
            if (res) v = v + r[p * st + l];
            yp[l] = relu ? (v > 0.0f ? v : 0.0f) : v;
        }
    }
}
BLK_INLINE void blk_affine_inplace_k(size_t lb, size_t st, const float *restrict r, float *restrict y, size_t hw,
                                     const float *restrict al, const float *restrict be, int relu, int res) {
    for (size_t p = 0; p < hw; p++) {
        float *restrict yp = y + p * st;
        BLK_UNROLL
        for (size_t l = 0; l < lb; l++) {
            float v = yp[l] * al[l] + be[l];
            if (res) v = v + r[p * st + l];
            yp[l] = relu ? (v > 0.0f ? v : 0.0f) : v;
        }
    }
}
/* r: NULL, or the residual (not y) */
static void blk_affine(size_t lb, size_t st, const float *x, const float *r, float *y, size_t hw, const float *al,
                       const float *be, int relu) {
#define CALL(LB, ST)                                                                                       \
    do {                                                                                                   \
        if (x != y) {                                                                                      \
            if (r)                                                                                         \
                relu ? blk_affine_k(LB, ST, x, r, y, hw, al, be, 1, 1)                                     \
                     : blk_affine_k(LB, ST, x, r, y, hw, al, be, 0, 1);                                    \
            else                                                                                           \
                relu ? blk_affine_k(LB, ST, x, NULL, y, hw, al, be, 1, 0)                                  \
                     : blk_affine_k(LB, ST, x, NULL, y, hw, al, be, 0, 0);                                 \
        } else if (r) {                                                                                    \
            relu ? blk_affine_inplace_k(LB, ST, r, y, hw, al, be, 1, 1)                                    \
                 : blk_affine_inplace_k(LB, ST, r, y, hw, al, be, 0, 1);                                   \
        } else {                                                                                           \
            relu ? blk_affine_inplace_k(LB, ST, NULL, y, hw, al, be, 1, 0)                                 \
                 : blk_affine_inplace_k(LB, ST, NULL, y, hw, al, be, 0, 0);                                \
        }                                                                                                  \
    } while (0)
    BLK_DISPATCH(lb, st, CALL);
#undef CALL
}

/* Forward over channel blocks [b0, b1). */
static void bn_forward_blk_range(void *p, size_t b0, size_t b1) {
    bn_ctx *t = p;
    const mg_bn2d_args *a = t->a;
    size_t hw = (size_t)a->h * a->w, B = (size_t)a->block, N = (size_t)a->n;
    double count = (double)N * (double)hw;
    for (size_t cb = b0; cb < b1; cb++) {
        MG_BN_BLK_GROUPS(a, l0, lb) {
            float mean[MG_BN_BLK_LANES] = {0}, alpha[MG_BN_BLK_LANES], beta[MG_BN_BLK_LANES];
            double var[MG_BN_BLK_LANES] = {0};
            if (a->mode == MG_BN_TRAIN) {
                /* shifted sums: deviations from each channel's first value x[0, c, 0, 0] */
                double s[MG_BN_BLK_LANES] = {0}, v[MG_BN_BLK_LANES] = {0}, mean_d[MG_BN_BLK_LANES];
                const float *shift = mg_bn2d_blk_batch_sum(a, t->x, cb, l0, lb, s);
                for (size_t l = 0; l < lb; l++) {
                    mean_d[l] = (double)shift[l] + s[l] / count;
                    mean[l] = (float)mean_d[l];
                }
                mg_bn2d_blk_batch_sumsq_dev(a, t->x, cb, l0, lb, mean, v);
                for (size_t l = 0; l < lb; l++) { /* centred on the float mean: remove its rounding offset */
                    double dm = mean_d[l] - (double)mean[l];
                    var[l] = v[l] / count - dm * dm;
                    if (var[l] < 0) var[l] = 0;
                }
            }
            for (size_t l = 0; l < lb; l++)
                bn_channel_finish(t, cb * B + l0 + l, mean[l], var[l], count, &alpha[l], &beta[l]);
            for (size_t n = 0; n < N; n++) {
                size_t o = mg_bn2d_blk_at(a, n, cb, l0);
                blk_affine(lb, B, t->x + o, t->res ? t->res + o : NULL, t->y + o, hw, alpha, beta, a->relu);
            }
        }
    }
}

static void bn_backward_blk_range(void *p, size_t b0, size_t b1) {
    bn_ctx *t = p;
    const mg_bn2d_args *a = t->a;
    size_t hw = (size_t)a->h * a->w, B = (size_t)a->block, N = (size_t)a->n;
    double count = (double)N * (double)hw;
    for (size_t cb = b0; cb < b1; cb++) {
        MG_BN_BLK_GROUPS(a, l0, lb) {
            size_t c0 = cb * B + l0;
            const float *mean = t->save_mean + c0;
            double sdy[MG_BN_BLK_LANES] = {0}, sdyx[MG_BN_BLK_LANES] = {0};
            float al[MG_BN_BLK_LANES], be[MG_BN_BLK_LANES]; /* relu_bwd: the forward's affine */
            if (t->relu_bwd)
                for (size_t l = 0; l < lb; l++) bn_saved_affine(t, c0 + l, &al[l], &be[l]);
            const float *alr = t->relu_bwd ? al : NULL, *ber = t->relu_bwd ? be : NULL;
            mg_bn2d_blk_batch_sum_g_gx(a, t->dy, t->x, cb, l0, lb, mean, alr, ber, sdy, sdyx);
            for (size_t l = 0; l < lb; l++) {
                if (t->dweight) t->dweight[c0 + l] += (float)(sdyx[l] * t->save_invstd[c0 + l]);
                if (t->dbias) t->dbias[c0 + l] += (float)sdy[l];
            }
            if (!t->dx) continue;
            float scale[MG_BN_BLK_LANES], mdy[MG_BN_BLK_LANES] = {0}, k[MG_BN_BLK_LANES] = {0};
            for (size_t l = 0; l < lb; l++) {
                float invstd = t->save_invstd[c0 + l];
                scale[l] = invstd * (t->weight ? t->weight[c0 + l] : 1.0f);
                if (a->mode == MG_BN_TRAIN) { /* EVAL/FROZEN: k = mdy = 0, dx = g scale */
                    mdy[l] = (float)(sdy[l] / count);
                    k[l] = (float)(sdyx[l] / count * (double)invstd * (double)invstd);
                }
            }
            for (size_t n = 0; n < N; n++) {
                size_t o = mg_bn2d_blk_at(a, n, cb, l0);
                mg_bn2d_blk_dx(lb, B, t->dy + o, t->x + o, t->dx + o, hw, mean, k, mdy, scale, alr, ber);
            }
        }
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
    MG_TRY(check_residual(op, a, x, y));
    if (a->residual && !mg_bn2d_residual_fused(a)) { /* BN without ReLU, then the sum (and ReLU) */
        mg_bn2d_args b = *a;
        b.residual = NULL, b.relu = 0;
        MG_TRY(mg_bn2d_forward(&b, x, weight, bias, running_mean, running_var, save_mean, save_invstd, y));
        return mg_bn2d_add_residual(a, y);
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
                .running_var = running_var, .sm = save_mean, .si = save_invstd, .y = y, .res = a->residual};
    if (fast && a->block > 1) /* ReLU and residual included */
        mg_layers_parallel_for((size_t)(a->c / a->block), 1, bn_forward_blk_range, &t);
    else if (fast)
        mg_layers_parallel_for((size_t)a->c, 1, bn_forward_fast_range, &t); /* ReLU included */
    else {
        bn_forward_range(&t, 0, (size_t)a->c);
        if (a->relu) return mg_relu_forward(count, y, y);
    }
    return MG_OK;
}

/* bn_channel_finish's affine for channel c, from the saved statistics */
static void bn_saved_affine(const struct bn_ctx *t, size_t c, float *alpha, float *beta) {
    float g = t->weight ? t->weight[c] : 1.0f, b = t->bias ? t->bias[c] : 0.0f;
    *alpha = t->save_invstd[c] * g;
    *beta = b - t->save_mean[c] * *alpha;
}

static void bn_apply_range(void *p, size_t c0, size_t c1) {
    bn_ctx *t = p;
    const mg_bn2d_args *a = t->a;
    size_t hw = (size_t)a->h * a->w, chw = (size_t)a->c * hw;
    for (size_t c = c0; c < c1; c++) {
        float alpha, beta;
        bn_saved_affine(t, c, &alpha, &beta);
        for (int n = 0; n < a->n; n++) affine_plane(t->x + n * chw + c * hw, t->y + n * chw + c * hw, hw, alpha, beta, a->relu);
    }
}

/* the same over channel blocks [b0, b1) of nChw<B>c (fast path) */
static void bn_apply_blk_range(void *p, size_t b0, size_t b1) {
    bn_ctx *t = p;
    const mg_bn2d_args *a = t->a;
    size_t hw = (size_t)a->h * a->w, B = (size_t)a->block;
    for (size_t cb = b0; cb < b1; cb++) {
        MG_BN_BLK_GROUPS(a, l0, lb) {
            float alpha[MG_BN_BLK_LANES], beta[MG_BN_BLK_LANES];
            for (size_t l = 0; l < lb; l++) bn_saved_affine(t, cb * B + l0 + l, &alpha[l], &beta[l]);
            for (size_t n = 0; n < (size_t)a->n; n++) {
                size_t o = mg_bn2d_blk_at(a, n, cb, l0);
                blk_affine(lb, B, t->x + o, t->res ? t->res + o : NULL, t->y + o, hw, alpha, beta, a->relu);
            }
        }
    }
}

/* reference apply over channels [c0, c1), either layout: plain loops, serial */
static void bn_apply_ref_range(void *p, size_t c0, size_t c1) {
    bn_ctx *t = p;
    const mg_bn2d_args *a = t->a;
    size_t hw = (size_t)a->h * a->w, st = bn_stride(a);
    for (size_t c = c0; c < c1; c++) {
        float alpha, beta;
        bn_saved_affine(t, c, &alpha, &beta);
        for (int n = 0; n < a->n; n++) {
            const float *xp = t->x + bn_plane(a, n, c);
            float *yp = t->y + bn_plane(a, n, c);
            for (size_t i = 0; i < hw; i++) {
                float v = xp[i * st] * alpha + beta;
                yp[i * st] = a->relu ? (v > 0.0f ? v : 0.0f) : v;
            }
        }
    }
}

mg_status mg_bn2d_affine_saved(const mg_bn2d_args *a, const float *x, const float *weight, const float *bias,
                               const float *save_mean, const float *save_invstd, float *y) {
    if (a->residual && !mg_bn2d_residual_fused(a)) {
        mg_bn2d_args b = *a;
        b.residual = NULL, b.relu = 0;
        MG_TRY(mg_bn2d_affine_saved(&b, x, weight, bias, save_mean, save_invstd, y));
        return mg_bn2d_add_residual(a, y);
    }
    bn_ctx t = {.a = a, .x = x, .weight = weight, .bias = bias, .save_mean = save_mean, .save_invstd = save_invstd,
                .y = y, .res = a->residual};
    if (!mg_layers_use_fast())
        bn_apply_ref_range(&t, 0, (size_t)a->c);
    else if (a->block > 1)
        mg_layers_parallel_for((size_t)(a->c / a->block), 1, bn_apply_blk_range, &t);
    else
        mg_layers_parallel_for((size_t)a->c, 1, bn_apply_range, &t);
    return MG_OK;
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
    MG_TRY(check_residual(op, a, x, y));
    return mg_bn2d_affine_saved(a, x, weight, bias, save_mean, save_invstd, y);
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
    if (fast && a->block > 1)
        mg_layers_parallel_for((size_t)(a->c / a->block), 1, bn_backward_blk_range, &t);
    else if (fast)
        mg_layers_parallel_for((size_t)a->c, 1, bn_backward_fast_range, &t);
    else
        bn_backward_range(&t, 0, (size_t)a->c);
    return MG_OK;
}

/* dy = 0 where x * alpha + beta <= 0 (alpha, beta: bn_saved_affine, the forward's arithmetic), over
 * channels [c0, c1), either layout: the ReLU's backward where the fused kernels do not run. */
static void relu_mask_range(void *p, size_t c0, size_t c1) {
    bn_ctx *t = p;
    const mg_bn2d_args *a = t->a;
    size_t hw = (size_t)a->h * a->w, st = bn_stride(a);
    float *dy = t->dx; /* the caller's dy, writable (mg_bn2d_relu_backward) */
    for (size_t c = c0; c < c1; c++) {
        float alpha, beta;
        bn_saved_affine(t, c, &alpha, &beta);
        for (int n = 0; n < a->n; n++) {
            const float *xp = t->x + bn_plane(a, (size_t)n, c);
            float *gp = dy + bn_plane(a, (size_t)n, c);
            for (size_t i = 0; i < hw; i++) {
                float v = xp[i * st] * alpha + beta;
                if (!(v > 0.0f)) gp[i * st] = 0.0f;
            }
        }
    }
}

mg_status mg_bn2d_relu_backward(const mg_bn2d_args *a, const float *x, float *dy, const float *weight,
                                const float *bias, const float *save_mean, const float *save_invstd, float *dx,
                                float *dweight, float *dbias) {
    const char *op = "bn2d_relu_backward";
    MG_TRY(check_args(op, a));
    MG_CHECK_PTR(op, x);
    MG_CHECK_PTR(op, dy);
    MG_CHECK_PTR(op, save_mean);
    MG_CHECK_PTR(op, save_invstd);
    if (dx && dx == dy) return MG_FAIL(MG_ERR_INVALID_ARG, "%s: dx must not be dy", op);
    int fast = mg_layers_use_fast();
#if MG_HAVE_ONEDNN
    const int dnnl = mg_bn2d_dnnl_enabled();
#else
    const int dnnl = 0;
#endif
    if (fast && a->block > 1 && !dnnl) { /* the fused kernels: dy is only read */
        bn_ctx t = {.a = a, .x = x, .dy = dy, .weight = weight, .bias = bias, .save_mean = save_mean,
                    .save_invstd = save_invstd, .dx = dx, .dweight = dweight, .dbias = dbias, .relu_bwd = 1};
        mg_layers_parallel_for((size_t)(a->c / a->block), 1, bn_backward_blk_range, &t);
        return MG_OK;
    }
    bn_ctx m = {.a = a, .x = x, .weight = weight, .bias = bias, .save_mean = save_mean, .save_invstd = save_invstd,
                .dx = dy};
    if (fast)
        mg_layers_parallel_for((size_t)a->c, 1, relu_mask_range, &m);
    else
        relu_mask_range(&m, 0, (size_t)a->c);
    return mg_bn2d_backward(a, x, dy, weight, save_mean, save_invstd, dx, dweight, dbias);
}
