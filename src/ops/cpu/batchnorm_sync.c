/* batchnorm_sync.c: synchronised batch norm for data-parallel training (ops_layers.h,
 * mg_bn2d_forward_sync / mg_bn2d_backward_sync): per-channel partial sums of the local batch, summed
 * over the processes by the caller's reduce function, then the same per-channel arithmetic as the
 * fast kernels of batchnorm.c (float lanes in double-added blocks, two passes for the variance; the
 * output and dx passes are batchnorm.c's own, through batchnorm_internal.h). Both layouts: NCHW and the
 * channel-blocked nChw<B>c (a->block > 1: per channel block, B lanes at a time, as in batchnorm.c).
 * The op knows nothing about MPI: the reduction is a callback (src/dist is wired in by the trainer). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops/cpu/batchnorm_internal.h"
#include "ops/cpu/layers_simd.h"
#include "ops/cpu/layers_util.h"

#define SYNC_STACK_C 2048

typedef struct sync_ctx {
    const mg_bn2d_args *a;
    const float *x, *dy, *weight;
    const float *mean_f;   /* [c] */
    double *acc;           /* [c] (+1) partial sums */
    const double *gsum;    /* backward: [2c] global sums of dy and dy (x - mean) */
    double count;          /* global element count per channel */
    float *sm, *si, *dx, *dweight, *dbias;
} sync_ctx;

/* acc[c] = sum of x over the local batch (summed as deviations from the channel's first value). */
static void sums_range(void *p, size_t c0, size_t c1) {
    sync_ctx *t = p;
    const mg_bn2d_args *a = t->a;
    size_t hw = (size_t)a->h * a->w, chw = (size_t)a->c * hw;
    for (size_t c = c0; c < c1; c++) {
        float shift = t->x[c * hw];
        double s = 0;
        for (int n = 0; n < a->n; n++) s += mg_simd_sum(t->x + n * chw + c * hw, hw, shift);
        t->acc[c] = s + (double)shift * (double)a->n * (double)hw;
    }
}

static void sqdev_range(void *p, size_t c0, size_t c1) {
    sync_ctx *t = p;
    const mg_bn2d_args *a = t->a;
    size_t hw = (size_t)a->h * a->w, chw = (size_t)a->c * hw;
    for (size_t c = c0; c < c1; c++) {
        double v = 0;
        for (int n = 0; n < a->n; n++) v += mg_simd_sumsq_dev(t->x + n * chw + c * hw, hw, t->mean_f[c]);
        t->acc[c] = v;
    }
}

/* ---- the channel-blocked layout nChw<B>c (a->block > 1): batchnorm.c's blocked kernels
 * (batchnorm_internal.h), so that both files compute the same bits ---- */

/* The blocked twins of the passes above and below, over channel blocks [b0, b1). */
static void sums_blk_range(void *p, size_t b0, size_t b1) {
    sync_ctx *t = p;
    const mg_bn2d_args *a = t->a;
    size_t hw = (size_t)a->h * a->w, B = (size_t)a->block;
    for (size_t cb = b0; cb < b1; cb++) {
        MG_BN_BLK_GROUPS(a, l0, lb) {
            size_t c0 = cb * B + l0;
            double s[MG_BN_BLK_LANES] = {0};
            const float *shift = mg_bn2d_blk_batch_sum(a, t->x, cb, l0, lb, s); /* the channels' first values */
            for (size_t l = 0; l < lb; l++) t->acc[c0 + l] = s[l] + (double)shift[l] * (double)a->n * (double)hw;
        }
    }
}

static void sqdev_blk_range(void *p, size_t b0, size_t b1) {
    sync_ctx *t = p;
    const mg_bn2d_args *a = t->a;
    size_t B = (size_t)a->block;
    for (size_t cb = b0; cb < b1; cb++) {
        MG_BN_BLK_GROUPS(a, l0, lb) {
            size_t c0 = cb * B + l0;
            double v[MG_BN_BLK_LANES] = {0};
            mg_bn2d_blk_batch_sumsq_dev(a, t->x, cb, l0, lb, t->mean_f + c0, v);
            for (size_t l = 0; l < lb; l++) t->acc[c0 + l] = v[l];
        }
    }
}

static mg_status check(const char *op, const mg_bn2d_args *a, const void *x, const void *sm, const void *si,
                       mg_allreduce_f64_fn reduce) {
    if (!a) return MG_FAIL(MG_ERR_INVALID_ARG, "%s: args is NULL", op);
    MG_CHECK_POS(op, a->n);
    MG_CHECK_POS(op, a->c);
    MG_CHECK_POS(op, a->h);
    MG_CHECK_POS(op, a->w);
    MG_CHECK_PTR(op, x);
    MG_CHECK_PTR(op, sm);
    MG_CHECK_PTR(op, si);
    MG_CHECK_PTR(op, reduce);
    MG_TRY(mg_layers_check_block(op, a->c, a->block));
    if (a->mode != MG_BN_TRAIN)
        return MG_FAIL(MG_ERR_INVALID_ARG, "%s: synchronised batch norm is for training mode only", op);
    if (!(a->eps > 0.0f) || !(a->momentum >= 0.0f && a->momentum <= 1.0f))
        return MG_FAIL(MG_ERR_INVALID_ARG, "%s: expected eps > 0 and 0 <= momentum <= 1, found eps=%g momentum=%g",
                       op, (double)a->eps, (double)a->momentum);
    return MG_OK;
}

mg_status mg_bn2d_forward_sync(const mg_bn2d_args *a, const float *x, const float *weight, const float *bias,
                               float *running_mean, float *running_var, float *save_mean, float *save_invstd,
                               float *y, mg_allreduce_f64_fn reduce, void *ctx) {
    const char *op = "bn2d_forward_sync";
    MG_TRY(check(op, a, x, save_mean, save_invstd, reduce));
    MG_CHECK_PTR(op, y);
    if (a->residual && (a->residual == y || a->residual == x))
        return MG_FAIL(MG_ERR_INVALID_ARG, "%s: the residual must be a tensor of its own, not x or y", op);
    size_t c = (size_t)a->c;
    /* per-channel scratch on the stack up to ResNet's 2048 channels (no allocation per call) */
    double stack[2 * SYNC_STACK_C + 1], *acc = c <= SYNC_STACK_C ? stack : malloc((2 * c + 1) * sizeof *acc);
    if (!acc) return MG_FAIL(MG_ERR_NOMEM, "%s: out of memory", op);
    double *mean_d = acc + c + 1; /* [c] after the c + 1 sums */
    sync_ctx t = {.a = a, .x = x, .weight = weight, .acc = acc, .sm = save_mean, .si = save_invstd,
                  .mean_f = save_mean};
    /* pass 1: sums and the element count (the blocked passes run over the c / B channel blocks) */
    int blk = a->block > 1;
    size_t units = blk ? c / (size_t)a->block : c;
    mg_layers_parallel_for(units, 1, blk ? sums_blk_range : sums_range, &t);
    acc[c] = (double)a->n * a->h * a->w;
    mg_status s = reduce(ctx, acc, c + 1);
    double count = acc[c];
    if (s == MG_OK && count < 2)
        s = MG_FAIL(MG_ERR_INVALID_ARG, "%s: training mode needs more than 1 value per channel over all processes", op);
    if (s != MG_OK) {
        if (acc != stack) free(acc);
        return s;
    }
    for (size_t k = 0; k < c; k++) {
        mean_d[k] = acc[k] / count;
        save_mean[k] = (float)mean_d[k];
    }
    /* pass 2: squared deviations from the (float) global mean */
    mg_layers_parallel_for(units, 1, blk ? sqdev_blk_range : sqdev_range, &t);
    s = reduce(ctx, acc, c);
    if (s == MG_OK) {
        for (size_t k = 0; k < c; k++) {
            double dm = mean_d[k] - (double)save_mean[k];
            double var = acc[k] / count - dm * dm;
            if (var < 0) var = 0;
            save_invstd[k] = (float)(1.0 / sqrt(var + (double)a->eps));
            if (running_mean)
                running_mean[k] = (1.0f - a->momentum) * running_mean[k] + a->momentum * save_mean[k];
            if (running_var)
                running_var[k] = (1.0f - a->momentum) * running_var[k] + a->momentum * (float)(var * count / (count - 1.0));
        }
        s = mg_bn2d_affine_saved(a, x, weight, bias, save_mean, save_invstd, y); /* the fast path's apply, ReLU
                                                                                   * and residual included */
    }
    if (acc != stack) free(acc);
    return s;
}

static void bwd_sums_range(void *p, size_t c0, size_t c1) {
    sync_ctx *t = p;
    const mg_bn2d_args *a = t->a;
    size_t hw = (size_t)a->h * a->w, chw = (size_t)a->c * hw;
    for (size_t c = c0; c < c1; c++) {
        double sdy = 0, sdyx = 0;
        for (int n = 0; n < a->n; n++)
            mg_simd_sum_g_gx(t->dy + n * chw + c * hw, t->x + n * chw + c * hw, hw, t->sm[c], &sdy, &sdyx);
        t->acc[c] = sdy;
        t->acc[a->c + c] = sdyx;
        /* parameter gradients: the local sums (averaged over the processes with the other gradients) */
        if (t->dweight) t->dweight[c] += (float)(sdyx * t->si[c]);
        if (t->dbias) t->dbias[c] += (float)sdy;
    }
}

static void bwd_dx_range(void *p, size_t c0, size_t c1) {
    sync_ctx *t = p;
    const mg_bn2d_args *a = t->a;
    size_t hw = (size_t)a->h * a->w, chw = (size_t)a->c * hw;
    for (size_t c = c0; c < c1; c++) {
        float mean = t->sm[c], invstd = t->si[c];
        float scale = invstd * (t->weight ? t->weight[c] : 1.0f);
        float mdy = (float)(t->gsum[c] / t->count);
        float k = (float)(t->gsum[a->c + c] / t->count * (double)invstd * (double)invstd);
        for (int n = 0; n < a->n; n++)
            mg_bn2d_dx_plane(t->dy + n * chw + c * hw, t->x + n * chw + c * hw, t->dx + n * chw + c * hw, hw, mean, k,
                             mdy, scale);
    }
}

static void bwd_sums_blk_range(void *p, size_t b0, size_t b1) {
    sync_ctx *t = p;
    const mg_bn2d_args *a = t->a;
    size_t B = (size_t)a->block;
    for (size_t cb = b0; cb < b1; cb++) {
        MG_BN_BLK_GROUPS(a, l0, lb) {
            size_t c0 = cb * B + l0;
            double sdy[MG_BN_BLK_LANES] = {0}, sdyx[MG_BN_BLK_LANES] = {0};
            mg_bn2d_blk_batch_sum_g_gx(a, t->dy, t->x, cb, l0, lb, t->sm + c0, NULL, NULL, sdy, sdyx);
            for (size_t l = 0; l < lb; l++) {
                t->acc[c0 + l] = sdy[l];
                t->acc[a->c + c0 + l] = sdyx[l];
                if (t->dweight) t->dweight[c0 + l] += (float)(sdyx[l] * t->si[c0 + l]);
                if (t->dbias) t->dbias[c0 + l] += (float)sdy[l];
            }
        }
    }
}

static void bwd_dx_blk_range(void *p, size_t b0, size_t b1) {
    sync_ctx *t = p;
    const mg_bn2d_args *a = t->a;
    size_t hw = (size_t)a->h * a->w, B = (size_t)a->block;
    for (size_t cb = b0; cb < b1; cb++) {
        MG_BN_BLK_GROUPS(a, l0, lb) {
            size_t c0 = cb * B + l0;
            float scale[MG_BN_BLK_LANES], mdy[MG_BN_BLK_LANES], k[MG_BN_BLK_LANES];
            for (size_t l = 0; l < lb; l++) {
                size_t c = c0 + l;
                float invstd = t->si[c];
                scale[l] = invstd * (t->weight ? t->weight[c] : 1.0f);
                mdy[l] = (float)(t->gsum[c] / t->count);
                k[l] = (float)(t->gsum[a->c + c] / t->count * (double)invstd * (double)invstd);
            }
            for (size_t n = 0; n < (size_t)a->n; n++) {
                size_t o = mg_bn2d_blk_at(a, n, cb, l0);
                mg_bn2d_blk_dx(lb, B, t->dy + o, t->x + o, t->dx + o, hw, t->sm + c0, k, mdy, scale, NULL, NULL);
            }
        }
    }
}

mg_status mg_bn2d_backward_sync(const mg_bn2d_args *a, const float *x, const float *dy, const float *weight,
                                const float *save_mean, const float *save_invstd, float *dx, float *dweight,
                                float *dbias, mg_allreduce_f64_fn reduce, void *ctx) {
    const char *op = "bn2d_backward_sync";
    MG_TRY(check(op, a, x, save_mean, save_invstd, reduce));
    MG_CHECK_PTR(op, dy);
    size_t c = (size_t)a->c;
    double stack[2 * SYNC_STACK_C + 1], *acc = c <= SYNC_STACK_C ? stack : malloc((2 * c + 1) * sizeof *acc);
    if (!acc) return MG_FAIL(MG_ERR_NOMEM, "%s: out of memory", op);
    sync_ctx t = {.a = a, .x = x, .dy = dy, .weight = weight, .acc = acc, .sm = (float *)save_mean,
                  .si = (float *)save_invstd, .dx = dx, .dweight = dweight, .dbias = dbias};
    int blk = a->block > 1;
    size_t units = blk ? c / (size_t)a->block : c;
    mg_layers_parallel_for(units, 1, blk ? bwd_sums_blk_range : bwd_sums_range, &t);
    acc[2 * c] = (double)a->n * a->h * a->w;
    mg_status s = reduce(ctx, acc, 2 * c + 1);
    if (s == MG_OK && dx) {
        t.gsum = acc;
        t.count = acc[2 * c];
        mg_layers_parallel_for(units, 1, blk ? bwd_dx_blk_range : bwd_dx_range, &t);
    }
    if (acc != stack) free(acc);
    return s;
}
