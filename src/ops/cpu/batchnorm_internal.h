/* batchnorm_internal.h: kernels of batchnorm.c shared with batchnorm_sync.c, and the oneDNN
 * batch-norm path (batchnorm_dnnl.c) called by batchnorm.c; each of the latter
 * returns MG_ERR_UNSUPPORTED (without recording an error) when it does not handle a call, so the caller
 * falls back to the plain C kernels. The path is OFF by default: on this project's 2-core machines
 * oneDNN 2.6's NCHW batch norm (ncsp_bnorm, not JIT) measured slower than our loops and its OpenMP
 * threads degrade badly when the cores are shared (docs/PERFORMANCE.md). MG_BN_ONEDNN=1 turns it on. */
#ifndef MG_OPS_CPU_BATCHNORM_INTERNAL_H
#define MG_OPS_CPU_BATCHNORM_INTERNAL_H

#include "multigrain/ops_layers.h"

/* The fast path's per-channel pieces, shared with the synchronised batch norm (batchnorm_sync.c), so
 * that both compute the same bits:
 * y = relu?(x * save_invstd * weight + (bias - save_mean * save_invstd * weight) (+ a->residual)) over
 * all channels (y may equal x without a residual; a->relu applies the ReLU in the same pass), on the
 * thread pool on the fast path; */
mg_status mg_bn2d_affine_saved(const mg_bn2d_args *a, const float *x, const float *weight, const float *bias,
                               const float *save_mean, const float *save_invstd, float *y);
/* Whether a->residual is added in the affine pass itself (the blocked fast path); elsewhere
 * mg_bn2d_add_residual adds it afterwards. */
int mg_bn2d_residual_fused(const mg_bn2d_args *a);
/* y = relu?(y + a->residual): the residual on paths without a fused kernel, after the BN output was
 * written without ReLU. */
mg_status mg_bn2d_add_residual(const mg_bn2d_args *a, float *y);
/* dx = (g - mdy - (x - mean) k) scale over one plane of n values (dx may equal g). */
void mg_bn2d_dx_plane(const float *g, const float *x, float *dx, size_t n, float mean, float k, float mdy,
                      float scale);

/* The fast path's kernels on the channel-blocked layout nChw<B>c (a->block > 1; batchnorm.c), shared
 * with batchnorm_sync.c. They work on a lane group of lb <= MG_BN_BLK_LANES consecutive channels of one
 * channel block, over hw positions at stride st (= B) floats; per-lane float partial sums over 32
 * positions, added into double totals (see batchnorm.c). */
#define MG_BN_BLK_LANES 16
#define MG_BN_BLK_PF_MAX (16384 / 4) /* segments of at most this many floats (16 KB) are prefetched */
/* Over the batch, lane group [l0, l0 + lb) of channel block cb (MG_BN_BLK_GROUPS below): total[l] +=
 * the sum over images and positions of (x - shift[l]), shift = the lanes' values at image 0,
 * position 0, which it returns (shifted sums: the forward's mean is shift + total / count). */
const float *mg_bn2d_blk_batch_sum(const mg_bn2d_args *a, const float *x, size_t cb, size_t l0, size_t lb,
                                   double *total);
/* The same group: total[l] += the sum over images and positions of (x - m[l])^2 */
void mg_bn2d_blk_batch_sumsq_dev(const mg_bn2d_args *a, const float *x, size_t cb, size_t l0, size_t lb,
                                 const float *m, double *total);
/* The same group: sg[l] += the sum over images and positions of g, sgx[l] += of g (x - m[l]). With al
 * and be (NULL: none) g is dL/dy for y = relu(x al[l] + be[l]) and counts as 0 where that ReLU is off
 * (its mask recomputed from x in the forward's arithmetic). */
void mg_bn2d_blk_batch_sum_g_gx(const mg_bn2d_args *a, const float *g, const float *x, size_t cb, size_t l0,
                                size_t lb, const float *m, const float *al, const float *be, double *sg,
                                double *sgx);
/* dx = (g - mdy[l] - (x - mean[l]) k[l]) scale[l] (torch's order); dx may be g; al, be (NULL: none): g
 * masked as above (then dx must not be g) */
void mg_bn2d_blk_dx(size_t lb, size_t st, const float *g, const float *x, float *dx, size_t hw, const float *mean,
                    const float *k, const float *mdy, const float *scale, const float *al, const float *be);

/* Lane group [l0, l0 + lb) of channel block cb holds channels cb * B + l0 + l; image n's segment of it
 * (h*w positions at stride B) starts at mg_bn2d_blk_at(a, n, cb, l0). MG_BN_BLK_GROUPS runs (l0, lb) over a block's
 * groups: [0, 16), [16, 32), ..., the last one possibly narrower. */
static inline size_t mg_bn2d_blk_at(const mg_bn2d_args *a, size_t n, size_t cb, size_t l0) {
    size_t B = (size_t)a->block;
    return (n * ((size_t)a->c / B) + cb) * (size_t)a->h * (size_t)a->w * B + l0;
}
static inline size_t mg_bn2d_blk_width(const mg_bn2d_args *a, size_t l0) {
    size_t rest = (size_t)a->block - l0;
    return rest < MG_BN_BLK_LANES ? rest : MG_BN_BLK_LANES;
}
#define MG_BN_BLK_GROUPS(a, l0, lb)                                                                        \
    for (size_t l0 = 0, lb = mg_bn2d_blk_width(a, 0); l0 < (size_t)(a)->block;                           \
         l0 += lb, lb = mg_bn2d_blk_width(a, l0))

/* What the first pass prefetches while it reads image n's segment: image n + 1's, when segments are short
 * (h*w*B <= MG_BN_BLK_PF_MAX floats); NULL: nothing. */
static inline const float *mg_bn2d_blk_next(const float *base, const mg_bn2d_args *a, size_t n, size_t cb,
                                            size_t l0) {
    size_t seg = (size_t)a->h * a->w * (size_t)a->block;
    return n + 1 < (size_t)a->n && seg <= MG_BN_BLK_PF_MAX ? base + mg_bn2d_blk_at(a, n + 1, cb, l0) : NULL;
}

/* Whether the oneDNN path is used: MG_BN_ONEDNN=1 in the environment (read once) or the setter. */
int mg_bn2d_dnnl_enabled(void);
void mg_bn2d_dnnl_set_enabled(int on);

mg_status mg_bn2d_dnnl_forward(const mg_bn2d_args *a, const float *x, const float *weight, const float *bias,
                               float *running_mean, float *running_var, float *save_mean, float *save_invstd,
                               float *y);
mg_status mg_bn2d_dnnl_backward(const mg_bn2d_args *a, const float *x, const float *dy, const float *weight,
                                const float *save_mean, const float *save_invstd, float *dx, float *dweight,
                                float *dbias);

#endif
