/* conv2d.c: the public conv2d API (ops_conv.h): argument validation, plans, dispatch to the
 * reference loops (conv2d_ref.c) or a fast path, and the fast path of builds without oneDNN:
 * im2col + OpenBLAS sgemm, one image and one group at a time, threaded inside OpenBLAS.
 *
 * im2col for image n, group g: col[(c*R + r)*S + s][oh*Q + ow] = x[n, g*Cg + c, ih, iw] (0 outside),
 * so that  y[n, g] (Kg x PQ)  = W_g (Kg x CgRS) . col (CgRS x PQ)      (forward)
 *          col               = W_gᵀ . dy[n, g], then dx = col2im(col) (backward data)
 *          dW_g             += dy[n, g] . colᵀ  (beta = 1: accumulates) (backward weights).
 * A 1x1 stride-1 unpadded convolution needs no col buffer: col is x itself.
 *
 * Dead-tap trimming (both fast backends): kernel rows/columns that read only zero padding at every
 * output position are dropped and the live window runs as a plan of its own (see trim_desc). */
#include <cblas.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "multigrain/runtime.h"
#include "ops/cpu/conv2d_internal.h"
#include "ops/cpu/layers_util.h"

#define MG_CONV_WS_ALIGN 64

/* ---------------------------------------------------------------------------------------------- */
/* validation */

static mg_status desc_check(const mg_conv2d_desc *d, int *p_out, int *q_out) {
    if (!d) return MG_FAIL(MG_ERR_INVALID_ARG, "conv2d: descriptor is NULL");
    if (d->n < 1 || d->c < 1 || d->h < 1 || d->w < 1)
        return MG_FAIL(MG_ERR_INVALID_ARG, "conv2d: input shape [N=%d, C=%d, H=%d, W=%d] must be positive",
                       d->n, d->c, d->h, d->w);
    if (d->k < 1 || d->r < 1 || d->s < 1)
        return MG_FAIL(MG_ERR_INVALID_ARG,
                       "conv2d: output channels K=%d and kernel R=%d x S=%d must be positive", d->k, d->r,
                       d->s);
    if (d->stride_h < 1 || d->stride_w < 1)
        return MG_FAIL(MG_ERR_INVALID_ARG, "conv2d: stride (%d, %d) must be >= 1", d->stride_h, d->stride_w);
    if (d->dil_h < 1 || d->dil_w < 1)
        return MG_FAIL(MG_ERR_INVALID_ARG, "conv2d: dilation (%d, %d) must be >= 1 (1 = dense kernel)",
                       d->dil_h, d->dil_w);
    if (d->pad_h < 0 || d->pad_w < 0)
        return MG_FAIL(MG_ERR_INVALID_ARG, "conv2d: padding (%d, %d) must be >= 0", d->pad_h, d->pad_w);
    if (d->groups < 1) return MG_FAIL(MG_ERR_INVALID_ARG, "conv2d: groups=%d must be >= 1", d->groups);
    if (d->c % d->groups || d->k % d->groups)
        return MG_FAIL(MG_ERR_INVALID_ARG,
                       "conv2d: channels C=%d and K=%d must both be divisible by groups=%d", d->c, d->k,
                       d->groups);
    if (d->has_bias != 0 && d->has_bias != 1)
        return MG_FAIL(MG_ERR_INVALID_ARG, "conv2d: has_bias must be 0 or 1, found %d", d->has_bias);
    const int64_t ext_h = (int64_t)d->dil_h * (d->r - 1) + 1, ext_w = (int64_t)d->dil_w * (d->s - 1) + 1;
    const int64_t span_h = (int64_t)d->h + 2 * (int64_t)d->pad_h - ext_h;
    const int64_t span_w = (int64_t)d->w + 2 * (int64_t)d->pad_w - ext_w;
    if (span_h < 0 || span_w < 0)
        return MG_FAIL(
            MG_ERR_INVALID_ARG,
            "conv2d: the dilated kernel (%lld x %lld) is larger than the padded input (%lld x %lld): "
            "the output would be empty",
            (long long)ext_h, (long long)ext_w, (long long)d->h + 2 * d->pad_h,
            (long long)d->w + 2 * d->pad_w);
    const int64_t p = span_h / d->stride_h + 1, q = span_w / d->stride_w + 1;
    /* Every tensor must be addressable with 63-bit element counts and each dimension with int. */
    const double big = 9.0e15;
    if ((double)d->n * d->c * d->h * d->w > big || (double)d->n * d->k * p * q > big ||
        (double)d->k * (d->c / d->groups) * d->r * d->s > big || p > INT32_MAX || q > INT32_MAX)
        return MG_FAIL(MG_ERR_INVALID_ARG, "conv2d: tensor sizes overflow");
    if (p_out) *p_out = (int)p;
    if (q_out) *q_out = (int)q;
    return MG_OK;
}

mg_status mg_conv2d_out_size(const mg_conv2d_desc *d, int *p, int *q) { return desc_check(d, p, q); }

static mg_status plan_check(const mg_conv2d_plan *plan, const char *fn) {
    if (!plan) return MG_FAIL(MG_ERR_INVALID_ARG, "%s: plan is NULL", fn);
    if (plan->backend == MG_CONV2D_AUTO || plan->p < 1)
        return MG_FAIL(MG_ERR_INVALID_ARG, "%s: plan is not initialised (call mg_conv2d_plan_init first)",
                       fn);
    return MG_OK;
}

#define MG_CHECK_BUF(fn, name)                                                                               \
    do {                                                                                                     \
        if (!(name)) return MG_FAIL(MG_ERR_INVALID_ARG, "%s: buffer '%s' is NULL", fn, #name);               \
    } while (0)

static mg_status bias_check(const mg_conv2d_plan *plan, const char *fn, const char *name, const void *b) {
    if (plan->d.has_bias && !b)
        return MG_FAIL(MG_ERR_INVALID_ARG, "%s: the plan has a bias (has_bias=1) but '%s' is NULL", fn, name);
    if (!plan->d.has_bias && b)
        return MG_FAIL(MG_ERR_INVALID_ARG, "%s: the plan has no bias (has_bias=0) but '%s' is not NULL", fn,
                       name);
    return MG_OK;
}

/* ---------------------------------------------------------------------------------------------- */
/* im2col + sgemm */

static int im2col_is_identity(const mg_conv2d_desc *d) {
    return d->r == 1 && d->s == 1 && d->stride_h == 1 && d->stride_w == 1 && d->pad_h == 0 && d->pad_w == 0;
}

/* col[(c*R + r)*S + s][oh*Q + ow] for channels x[0..cg-1] of one image-group. */
static void im2col(const mg_conv2d_desc *d, int p, int q, int cg, const float *x, float *col) {
    for (int c = 0; c < cg; c++)
        for (int r = 0; r < d->r; r++)
            for (int s = 0; s < d->s; s++) {
                float *dst = col + (((size_t)c * d->r + r) * d->s + s) * p * q;
                const float *src = x + (size_t)c * d->h * d->w;
                for (int oh = 0; oh < p; oh++) {
                    const int ih = oh * d->stride_h - d->pad_h + r * d->dil_h;
                    float *row = dst + (size_t)oh * q;
                    if (ih < 0 || ih >= d->h) {
                        memset(row, 0, sizeof(float) * q);
                        continue;
                    }
                    const float *srow = src + (size_t)ih * d->w;
                    for (int ow = 0; ow < q; ow++) {
                        const int iw = ow * d->stride_w - d->pad_w + s * d->dil_w;
                        row[ow] = (iw >= 0 && iw < d->w) ? srow[iw] : 0.0f;
                    }
                }
            }
}

/* dx[c, ih, iw] = sum of the col entries that im2col copied from it (dx is written). */
static void col2im(const mg_conv2d_desc *d, int p, int q, int cg, const float *col, float *dx) {
    memset(dx, 0, sizeof(float) * (size_t)cg * d->h * d->w);
    for (int c = 0; c < cg; c++)
        for (int r = 0; r < d->r; r++)
            for (int s = 0; s < d->s; s++) {
                const float *src = col + (((size_t)c * d->r + r) * d->s + s) * p * q;
                float *dst = dx + (size_t)c * d->h * d->w;
                for (int oh = 0; oh < p; oh++) {
                    const int ih = oh * d->stride_h - d->pad_h + r * d->dil_h;
                    if (ih < 0 || ih >= d->h) continue;
                    float *drow = dst + (size_t)ih * d->w;
                    const float *row = src + (size_t)oh * q;
                    for (int ow = 0; ow < q; ow++) {
                        const int iw = ow * d->stride_w - d->pad_w + s * d->dil_w;
                        if (iw >= 0 && iw < d->w) drow[iw] += row[ow];
                    }
                }
            }
}

static void blas_threads(void) { mg_blas_parallel(mg_ops_get_threads()); } /* mg_blas_serial() after */

static void im2col_forward(mg_conv2d_plan *plan, const float *x, const float *w, const float *b, float *y) {
    const mg_conv2d_desc *d = &plan->d;
    const int cg = d->c / d->groups, kg = d->k / d->groups, crs = cg * d->r * d->s, pq = plan->p * plan->q;
    float *col = plan->ws;
    blas_threads();
    for (int n = 0; n < d->n; n++)
        for (int g = 0; g < d->groups; g++) {
            const float *xg = x + ((size_t)n * d->c + (size_t)g * cg) * d->h * d->w;
            float *yg = y + ((size_t)n * d->k + (size_t)g * kg) * pq;
            const float *cm = xg;
            if (!im2col_is_identity(d)) {
                im2col(d, plan->p, plan->q, cg, xg, col);
                cm = col;
            }
            float beta = 0.0f;
            if (b) {
                for (int k = 0; k < kg; k++)
                    for (int i = 0; i < pq; i++) yg[(size_t)k * pq + i] = b[g * kg + k];
                beta = 1.0f;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, kg, pq, crs, 1.0f,
                        w + (size_t)g * kg * crs, crs, cm, pq, beta, yg, pq);
        }
    mg_blas_serial();
}

static void im2col_backward_data(mg_conv2d_plan *plan, const float *dy, const float *w, float *dx) {
    const mg_conv2d_desc *d = &plan->d;
    const int cg = d->c / d->groups, kg = d->k / d->groups, crs = cg * d->r * d->s, pq = plan->p * plan->q;
    float *col = plan->ws;
    blas_threads();
    for (int n = 0; n < d->n; n++)
        for (int g = 0; g < d->groups; g++) {
            float *dxg = dx + ((size_t)n * d->c + (size_t)g * cg) * d->h * d->w;
            const float *dyg = dy + ((size_t)n * d->k + (size_t)g * kg) * pq;
            float *cm = im2col_is_identity(d) ? dxg : col;
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, crs, pq, kg, 1.0f, w + (size_t)g * kg * crs,
                        crs, dyg, pq, 0.0f, cm, pq);
            if (cm == col) col2im(d, plan->p, plan->q, cg, col, dxg);
        }
    mg_blas_serial();
}

static void im2col_backward_weights(mg_conv2d_plan *plan, const float *x, const float *dy, float *dw,
                                    float *db) {
    const mg_conv2d_desc *d = &plan->d;
    const int cg = d->c / d->groups, kg = d->k / d->groups, crs = cg * d->r * d->s, pq = plan->p * plan->q;
    float *col = plan->ws;
    blas_threads();
    for (int n = 0; n < d->n; n++)
        for (int g = 0; g < d->groups; g++) {
            const float *xg = x + ((size_t)n * d->c + (size_t)g * cg) * d->h * d->w;
            const float *dyg = dy + ((size_t)n * d->k + (size_t)g * kg) * pq;
            const float *cm = xg;
            if (!im2col_is_identity(d)) {
                im2col(d, plan->p, plan->q, cg, xg, col);
                cm = col;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, kg, crs, pq, 1.0f, dyg, pq, cm, pq, 1.0f,
                        dw + (size_t)g * kg * crs, crs);
        }
    mg_blas_serial();
    if (db)
        for (int k = 0; k < d->k; k++) {
            double acc = 0.0;
            for (int n = 0; n < d->n; n++) {
                const float *row = dy + ((size_t)n * d->k + k) * pq;
                for (int i = 0; i < pq; i++) acc += row[i];
            }
            db[k] += (float)acc;
        }
}

/* ---------------------------------------------------------------------------------------------- */
/* dead-tap trimming
 *
 * At small maps some taps never meet the input: a 3x3 pad-1 kernel on a 1x1 map (ResNet's layer4
 * at a 32x32 input) reads only zero padding with 8 of its 9 taps, and oneDNN's kernels multiply
 * those zeros too (9x the work, and the slow backward-weights reduction). The plan then runs the
 * live window [r0, r0+R') x [s0, s0+S') as a convolution of its own with padding pad - r0: tap
 * r0 + r' of the original reads the input row p*stride - pad + r0 + r', which is exactly what tap r'
 * of the window reads with that padding, so the sums are the same terms (minus exact zeros) and
 * the output size is checked to be the same. Weights are gathered into (and weight gradients
 * scattered from) a buffer at the head of the plan's workspace. */

/* First and last tap (one dimension, dilation 1) that some output position reads inside the input. */
static void live_taps(int in, int k, int stride, int pad, int out, int *first, int *last) {
    *first = k;
    *last = -1;
    for (int t = 0; t < k; t++)
        for (int o = 0; o < out; o++) {
            int i = o * stride - pad + t;
            if (i >= 0 && i < in) {
                if (t < *first) *first = t;
                *last = t;
                break;
            }
        }
}

/* 1 and the window's descriptor when some taps are dead and the window keeps the output size. */
static int trim_desc(const mg_conv2d_desc *d, int p, int q, mg_conv2d_desc *t, int *r0, int *s0) {
    if (d->dil_h != 1 || d->dil_w != 1) return 0;
    int r1, s1;
    live_taps(d->h, d->r, d->stride_h, d->pad_h, p, r0, &r1);
    live_taps(d->w, d->s, d->stride_w, d->pad_w, q, s0, &s1);
    if (r1 < *r0 || s1 < *s0) return 0;
    if (*r0 == 0 && r1 == d->r - 1 && *s0 == 0 && s1 == d->s - 1) return 0; /* every tap live */
    if (*r0 > d->pad_h || *s0 > d->pad_w) return 0; /* would need negative padding */
    *t = *d;
    t->r = r1 - *r0 + 1;
    t->s = s1 - *s0 + 1;
    t->pad_h = d->pad_h - *r0;
    t->pad_w = d->pad_w - *s0;
    int span_h = t->h + 2 * t->pad_h - t->r, span_w = t->w + 2 * t->pad_w - t->s;
    return span_h >= 0 && span_w >= 0 && span_h / t->stride_h + 1 == p && span_w / t->stride_w + 1 == q;
}

static size_t trim_w_bytes(const mg_conv2d_plan *plan) {
    size_t b = mg_conv2d_w_size(plan->trim) * sizeof(float);
    return (b + MG_CONV_WS_ALIGN - 1) / MG_CONV_WS_ALIGN * MG_CONV_WS_ALIGN;
}

typedef struct trim_copy_ctx {
    const mg_conv2d_plan *plan;
    const float *from;
    float *to;
    int scatter; /* 0: full kernel -> window (gather), 1: window -> full kernel's live taps */
} trim_copy_ctx;

static void trim_copy_range(void *ctx, size_t begin, size_t end) {
    const trim_copy_ctx *c = ctx;
    const mg_conv2d_desc *d = &c->plan->d, *t = &c->plan->trim->d;
    const int r0 = c->plan->trim_r0, s0 = c->plan->trim_s0;
    for (size_t i = begin; i < end; i++) /* i = output channel * (C / groups) + input channel */
        for (int r = 0; r < t->r; r++) {
            size_t full = (i * d->r + (size_t)(r0 + r)) * d->s + s0, win = (i * t->r + (size_t)r) * t->s;
            if (c->scatter) memcpy(c->to + full, c->from + win, (size_t)t->s * sizeof(float));
            else memcpy(c->to + win, c->from + full, (size_t)t->s * sizeof(float));
        }
}

/* The live taps of w into the window buffer wt (the head of the workspace). */
static float *trim_gather(const mg_conv2d_plan *plan, const float *w) {
    trim_copy_ctx c = {plan, w, plan->ws, 0};
    mg_layers_parallel_for((size_t)plan->d.k * (plan->d.c / plan->d.groups), 2048, trim_copy_range, &c);
    return plan->ws;
}

/* The window buffer back into the live taps of w (the dead taps are left as they are). */
static void trim_scatter(const mg_conv2d_plan *plan, float *w) {
    trim_copy_ctx c = {plan, plan->ws, w, 1};
    mg_layers_parallel_for((size_t)plan->d.k * (plan->d.c / plan->d.groups), 2048, trim_copy_range, &c);
}

/* ---------------------------------------------------------------------------------------------- */
/* plans */

static mg_status workspace_bind(mg_conv2d_plan *plan) {
    if (plan->trim) {
        size_t head = trim_w_bytes(plan);
        if (plan->trim->ws_bytes == 0) return MG_OK;
        return mg_conv2d_plan_set_workspace(plan->trim, (char *)plan->ws + head, plan->ws_bytes - head);
    }
#if MG_HAVE_ONEDNN
    if (plan->backend == MG_CONV2D_DNNL) return mg_conv2d_dnnl_bind_workspace(plan);
#endif
    (void)plan;
    return MG_OK;
}

static mg_status plan_init(mg_conv2d_plan *plan, const mg_conv2d_desc *d, mg_conv2d_backend backend,
                           mg_conv2d_layout layout, int x_block, int y_block) {
    if (!plan) return MG_FAIL(MG_ERR_INVALID_ARG, "mg_conv2d_plan_init: plan is NULL");
    memset(plan, 0, sizeof *plan);
    int p, q;
    MG_TRY(desc_check(d, &p, &q));
    plan->x_block = x_block;
    plan->y_block = y_block;
    if (backend == MG_CONV2D_AUTO)
        backend = mg_ops_get_impl() == MG_OPS_REFERENCE ? MG_CONV2D_REFERENCE
                  : MG_HAVE_ONEDNN                      ? MG_CONV2D_DNNL
                                                        : MG_CONV2D_IM2COL;
    if (backend != MG_CONV2D_REFERENCE && backend != MG_CONV2D_DNNL && backend != MG_CONV2D_IM2COL)
        return MG_FAIL(MG_ERR_INVALID_ARG, "mg_conv2d_plan_init: unknown backend %d", (int)backend);
    if (layout < MG_CONV2D_LAYOUT_AUTO || layout > MG_CONV2D_LAYOUT_BLOCKED)
        return MG_FAIL(MG_ERR_INVALID_ARG, "mg_conv2d_plan_init: unknown layout %d", (int)layout);
    plan->d = *d;
    plan->p = p;
    plan->q = q;
    plan->backend = backend;
    plan->layout = backend == MG_CONV2D_DNNL ? layout : MG_CONV2D_LAYOUT_PLAIN;
    mg_status s = MG_OK;
    mg_conv2d_desc td;
    if (backend != MG_CONV2D_REFERENCE && trim_desc(d, p, q, &td, &plan->trim_r0, &plan->trim_s0)) {
        plan->trim = calloc(1, sizeof *plan->trim);
        if (!plan->trim) {
            memset(plan, 0, sizeof *plan);
            return MG_FAIL(MG_ERR_NOMEM, "conv2d: out of memory for a plan");
        }
        s = plan_init(plan->trim, &td, backend, layout, x_block, y_block);
        if (s == MG_OK) plan->ws_bytes = trim_w_bytes(plan) + plan->trim->ws_bytes;
    } else if (backend == MG_CONV2D_DNNL) {
#if MG_HAVE_ONEDNN
        s = mg_conv2d_dnnl_init(plan);
#else
        s = MG_FAIL(MG_ERR_UNSUPPORTED, "conv2d: this build has no oneDNN (configure with MG_ONEDNN=ON)");
#endif
    } else if (backend == MG_CONV2D_IM2COL && !im2col_is_identity(d)) {
        plan->ws_bytes = sizeof(float) * (size_t)(d->c / d->groups) * d->r * d->s * p * q;
    }
    if (s == MG_OK && plan->ws_bytes > 0) {
        size_t bytes = (plan->ws_bytes + MG_CONV_WS_ALIGN - 1) / MG_CONV_WS_ALIGN * MG_CONV_WS_ALIGN;
        plan->ws = aligned_alloc(MG_CONV_WS_ALIGN, bytes);
        if (!plan->ws)
            s = MG_FAIL(MG_ERR_NOMEM, "conv2d: out of memory for a %zu-byte workspace", plan->ws_bytes);
        else
            plan->ws_owned = 1;
    }
    if (s == MG_OK) s = workspace_bind(plan);
    if (s != MG_OK) mg_conv2d_plan_free(plan);
    return s;
}

mg_status mg_conv2d_plan_init_ex(mg_conv2d_plan *plan, const mg_conv2d_desc *d, mg_conv2d_backend backend,
                                 mg_conv2d_layout layout) {
    return plan_init(plan, d, backend, layout, 0, 0);
}

mg_status mg_conv2d_plan_init(mg_conv2d_plan *plan, const mg_conv2d_desc *d) {
    return plan_init(plan, d, MG_CONV2D_AUTO, MG_CONV2D_LAYOUT_AUTO, 0, 0);
}

mg_status mg_conv2d_plan_init_blocked(mg_conv2d_plan *plan, const mg_conv2d_desc *d, int x_block, int y_block) {
    if (plan) memset(plan, 0, sizeof *plan);
    if (!d) return MG_FAIL(MG_ERR_INVALID_ARG, "conv2d: descriptor is NULL");
    if (x_block < 0 || y_block < 0 || x_block == 1 || y_block == 1 || (x_block && d->c % x_block) ||
        (y_block && d->k % y_block))
        return MG_FAIL(MG_ERR_INVALID_ARG,
                       "mg_conv2d_plan_init_blocked: blocks (%d, %d) must be 0 or divide the channels (C=%d, K=%d)",
                       x_block, y_block, d->c, d->k);
    if (!MG_HAVE_ONEDNN || mg_ops_get_impl() == MG_OPS_REFERENCE)
        return MG_FAIL(MG_ERR_UNSUPPORTED, "conv2d: blocked activations need the oneDNN fast path");
    return plan_init(plan, d, MG_CONV2D_DNNL, MG_CONV2D_LAYOUT_AUTO, x_block, y_block);
}

#if !MG_HAVE_ONEDNN
/* Without oneDNN there is no blocked chain (conv2d_dnnl.c has the oneDNN answer). */
int mg_conv2d_blocked_channels(void) { return 0; }
#endif

void mg_conv2d_plan_free(mg_conv2d_plan *plan) {
    if (!plan) return;
    if (plan->trim) {
        mg_conv2d_plan_free(plan->trim);
        free(plan->trim);
    }
#if MG_HAVE_ONEDNN
    if (plan->impl) mg_conv2d_dnnl_free(plan);
#endif
    if (plan->ws_owned) free(plan->ws);
    memset(plan, 0, sizeof *plan);
}

size_t mg_conv2d_plan_workspace_size(const mg_conv2d_plan *plan) { return plan ? plan->ws_bytes : 0; }

mg_status mg_conv2d_plan_set_workspace(mg_conv2d_plan *plan, void *buf, size_t bytes) {
    MG_TRY(plan_check(plan, "mg_conv2d_plan_set_workspace"));
    if (plan->ws_bytes == 0) return MG_OK; /* needs none */
    if (!buf || bytes < plan->ws_bytes || (uintptr_t)buf % MG_CONV_WS_ALIGN)
        return MG_FAIL(
            MG_ERR_INVALID_ARG,
            "mg_conv2d_plan_set_workspace: need a %d-byte aligned buffer of at least %zu bytes, got %p "
            "with %zu bytes",
            MG_CONV_WS_ALIGN, plan->ws_bytes, buf, bytes);
    if (plan->ws_owned) free(plan->ws);
    plan->ws = buf;
    plan->ws_owned = 0;
    return workspace_bind(plan);
}

const char *mg_conv2d_plan_impl_name(const mg_conv2d_plan *plan) {
    if (!plan) return "none";
    if (plan->trim) return mg_conv2d_plan_impl_name(plan->trim);
    switch (plan->backend) {
    case MG_CONV2D_REFERENCE:
        return "reference";
    case MG_CONV2D_IM2COL:
        return "im2col+sgemm";
    case MG_CONV2D_DNNL: {
#if MG_HAVE_ONEDNN
        /* per op: forward, backward data, backward weights (P = plain, B = blocked) */
        static const char *const names[8] = {"onednn/plain", "onednn/P,P,B",  "onednn/P,B,P",
                                             "onednn/P,B,B", "onednn/B,P,P",  "onednn/B,P,B",
                                             "onednn/B,B,P", "onednn/blocked"};
        mg_conv2d_layout l[3];
        mg_conv2d_dnnl_op_layouts(plan, l);
        int bits = 0;
        for (int i = 0; i < 3; i++) bits = bits * 2 + (l[i] == MG_CONV2D_LAYOUT_BLOCKED);
        return names[bits];
#else
        return "onednn";
#endif
    }
    default:
        return "none";
    }
}

void mg_conv2d_plan_kernel_names(const mg_conv2d_plan *plan, const char **fwd, const char **bwd_data,
                                 const char **bwd_weights) {
    *fwd = *bwd_data = *bwd_weights = "";
    if (plan && plan->trim) {
        mg_conv2d_plan_kernel_names(plan->trim, fwd, bwd_data, bwd_weights);
        return;
    }
#if MG_HAVE_ONEDNN
    if (plan && plan->backend == MG_CONV2D_DNNL)
        mg_conv2d_dnnl_kernel_names(plan, fwd, bwd_data, bwd_weights);
#else
    (void)plan;
#endif
}

size_t mg_conv2d_x_size(const mg_conv2d_plan *pl) { return (size_t)pl->d.n * pl->d.c * pl->d.h * pl->d.w; }
size_t mg_conv2d_w_size(const mg_conv2d_plan *pl) {
    return (size_t)pl->d.k * (pl->d.c / pl->d.groups) * pl->d.r * pl->d.s;
}
size_t mg_conv2d_y_size(const mg_conv2d_plan *pl) { return (size_t)pl->d.n * pl->d.k * pl->p * pl->q; }
double mg_conv2d_flops(const mg_conv2d_plan *pl) {
    return 2.0 * pl->d.n * pl->d.k * pl->p * pl->q * (double)(pl->d.c / pl->d.groups) * pl->d.r * pl->d.s;
}

/* ---------------------------------------------------------------------------------------------- */
/* calls */

mg_status mg_conv2d_forward(mg_conv2d_plan *plan, const float *x, const float *w, const float *b, float *y) {
    static const char fn[] = "mg_conv2d_forward";
    MG_TRY(plan_check(plan, fn));
    MG_CHECK_BUF(fn, x);
    MG_CHECK_BUF(fn, w);
    MG_CHECK_BUF(fn, y);
    MG_TRY(bias_check(plan, fn, "b", b));
    if (plan->trim) {
        return mg_conv2d_forward(plan->trim, x, trim_gather(plan, w), b, y);
    }
    switch (plan->backend) {
#if MG_HAVE_ONEDNN
    case MG_CONV2D_DNNL:
        return mg_conv2d_dnnl_forward(plan, x, w, b, y);
#endif
    case MG_CONV2D_IM2COL:
        im2col_forward(plan, x, w, b, y);
        return MG_OK;
    default:
        mg_conv2d_ref_forward_f32(&plan->d, plan->p, plan->q, x, w, b, y);
        return MG_OK;
    }
}

mg_status mg_conv2d_backward_data(mg_conv2d_plan *plan, const float *dy, const float *w, float *dx) {
    static const char fn[] = "mg_conv2d_backward_data";
    MG_TRY(plan_check(plan, fn));
    MG_CHECK_BUF(fn, dy);
    MG_CHECK_BUF(fn, w);
    MG_CHECK_BUF(fn, dx);
    if (plan->trim) {
        return mg_conv2d_backward_data(plan->trim, dy, trim_gather(plan, w), dx);
    }
    switch (plan->backend) {
#if MG_HAVE_ONEDNN
    case MG_CONV2D_DNNL:
        return mg_conv2d_dnnl_backward_data(plan, dy, w, dx);
#endif
    case MG_CONV2D_IM2COL:
        im2col_backward_data(plan, dy, w, dx);
        return MG_OK;
    default:
        mg_conv2d_ref_backward_data_f32(&plan->d, plan->p, plan->q, dy, w, dx);
        return MG_OK;
    }
}

mg_status mg_conv2d_backward_weights(mg_conv2d_plan *plan, const float *x, const float *dy, float *dw,
                                     float *db) {
    static const char fn[] = "mg_conv2d_backward_weights";
    MG_TRY(plan_check(plan, fn));
    MG_CHECK_BUF(fn, x);
    MG_CHECK_BUF(fn, dy);
    MG_CHECK_BUF(fn, dw);
    MG_TRY(bias_check(plan, fn, "db", db));
    if (plan->trim) { /* accumulate: the live taps' current gradient in, the sum back out */
        MG_TRY(mg_conv2d_backward_weights(plan->trim, x, dy, trim_gather(plan, dw), db));
        trim_scatter(plan, dw);
        return MG_OK;
    }
    switch (plan->backend) {
#if MG_HAVE_ONEDNN
    case MG_CONV2D_DNNL:
        return mg_conv2d_dnnl_backward_weights(plan, x, dy, dw, db);
#endif
    case MG_CONV2D_IM2COL:
        im2col_backward_weights(plan, x, dy, dw, db);
        return MG_OK;
    default:
        mg_conv2d_ref_backward_weights_f32(&plan->d, plan->p, plan->q, x, dy, dw, db);
        return MG_OK;
    }
}
