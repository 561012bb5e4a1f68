/* ops_conv.h: 2-D convolution (PyTorch torch.nn.functional.conv2d semantics) over NCHW float32.
 *
 * Shapes (all contiguous, row-major):
 *   x  [N, C, H, W]            input
 *   w  [K, C/groups, R, S]     weight (PyTorch OIHW layout; output channel k belongs to group
 *                              k / (K/groups) and reads input channels g*C/groups .. (g+1)*C/groups-1)
 *   b  [K]                     bias (optional: has_bias = 0 and b = NULL)
 *   y  [N, K, P, Q]            output, P = floor((H + 2*pad_h - dil_h*(R-1) - 1) / stride_h) + 1 (Q alike)
 *
 * Backward (gradient rule of ops.h): backward_data WRITES dx; backward_weights ACCUMULATES into dw
 * and db (+=). Saved for backward: the input x (for dW) and the weight w (for dX); nothing else.
 *
 * Usage: build one plan per shape, once (it creates the oneDNN primitives, reorders and scratch
 * memory), then call forward/backward on it as often as needed; the calls allocate nothing.
 *
 *   mg_conv2d_desc d = {.n = 8, .c = 64, .h = 56, .w = 56, .k = 64, .r = 3, .s = 3,
 *                       .stride_h = 1, .stride_w = 1, .pad_h = 1, .pad_w = 1,
 *                       .dil_h = 1, .dil_w = 1, .groups = 1, .has_bias = 0};
 *   mg_conv2d_plan plan;
 *   MG_TRY(mg_conv2d_plan_init(&plan, &d));
 *   MG_TRY(mg_conv2d_forward(&plan, x, w, NULL, y));
 *   ...
 *   mg_conv2d_plan_free(&plan);
 *
 * A plan holds scratch buffers, so one plan must not be used by two threads at once (give each
 * thread its own plan). Every call validates its buffers and returns MG_ERR_INVALID_ARG with a
 * message on a null buffer; plan_init rejects impossible shapes the same way. */
#ifndef MULTIGRAIN_OPS_CONV_H
#define MULTIGRAIN_OPS_CONV_H

#include <stddef.h>

#include "multigrain/ops.h"
#include "multigrain/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mg_conv2d_desc {
    int n, c, h, w;         /* input batch, channels, height, width */
    int k, r, s;            /* output channels, kernel height, kernel width */
    int stride_h, stride_w; /* >= 1 */
    int pad_h, pad_w;       /* zero padding on each side (symmetric, as PyTorch), >= 0 */
    int dil_h, dil_w;       /* dilation, >= 1 (1 = dense kernel, PyTorch's default) */
    int groups;             /* >= 1, divides c and k; groups == c == k is depthwise */
    int has_bias;           /* 0 or 1 */
} mg_conv2d_desc;

/* How a plan runs (recorded at init; see mg_conv2d_plan_impl_name). */
typedef enum mg_conv2d_backend {
    MG_CONV2D_AUTO = 0,      /* only as a request: FAST -> DNNL (or IM2COL without oneDNN),
                              * REFERENCE -> REFERENCE, from mg_ops_get_impl() */
    MG_CONV2D_REFERENCE = 1, /* plain C loops (conv2d_ref.c), the oracle's twin */
    MG_CONV2D_DNNL = 2,      /* oneDNN primitives */
    MG_CONV2D_IM2COL = 3     /* im2col + OpenBLAS sgemm: the fast path of builds without oneDNN */
} mg_conv2d_backend;

/* Memory layout the oneDNN path uses inside the plan (the public buffers are always NCHW/OIHW). */
typedef enum mg_conv2d_layout {
    MG_CONV2D_LAYOUT_AUTO = 0,   /* per-shape choice (see conv2d_dnnl.c), or $MG_CONV_LAYOUT */
    MG_CONV2D_LAYOUT_PLAIN = 1,  /* oneDNN works on nchw/oihw directly: no reorders */
    MG_CONV2D_LAYOUT_BLOCKED = 2 /* oneDNN picks its blocked layouts (format "any"); the plan
                                  * reorders in and out with cached reorder primitives */
} mg_conv2d_layout;

typedef struct mg_conv2d_plan {
    mg_conv2d_desc d;
    int p, q;                  /* output height and width */
    mg_conv2d_backend backend; /* chosen at init from mg_ops_get_impl() (or forced) */
    mg_conv2d_layout layout;   /* the oneDNN layout asked for (AUTO: chosen per op, see
                                * mg_conv2d_plan_impl_name); PLAIN for the other backends */
    void *impl;                /* backend state (oneDNN primitives); NULL for the others */
    void *ws;                  /* working memory (see mg_conv2d_plan_workspace_size), or NULL */
    size_t ws_bytes;           /* bytes the plan needs in ws */
    int ws_owned;              /* 1 if the plan allocated ws itself */
    /* Dead-tap trimming (fast backends): when some kernel rows or columns only ever meet zero
     * padding (a 3x3 pad-1 kernel on a 1x1 map: only the centre tap is live), the plan runs `trim`,
     * a plan on the live (trim_r x trim_s) window starting at tap (trim_r0, trim_s0), with the live
     * weights gathered into its workspace. NULL when every tap is live. */
    struct mg_conv2d_plan *trim;
    int trim_r0, trim_s0;
    /* Layout of the caller's activation buffers (mg_conv2d_plan_init_blocked): 0 = NCHW, B = the
     * channel-blocked nChw<B>c of ops_layers.h; x_block for x and dx, y_block for y and dy. */
    int x_block, y_block;
} mg_conv2d_plan;

/* Output height/width for a descriptor; MG_ERR_INVALID_ARG (with a message) if the descriptor is
 * invalid or the output would be empty. */
mg_status mg_conv2d_out_size(const mg_conv2d_desc *d, int *p, int *q);

/* Creates a plan with the implementation of mg_ops_get_impl() (FAST = oneDNN when compiled, else
 * im2col + sgemm; REFERENCE = plain loops). On failure the plan is left zeroed (safe to free). */
mg_status mg_conv2d_plan_init(mg_conv2d_plan *plan, const mg_conv2d_desc *d);
/* As mg_conv2d_plan_init with the backend and the oneDNN layout chosen by the caller (tests,
 * benchmarks); non-oneDNN backends ignore the layout. MG_ERR_UNSUPPORTED for MG_CONV2D_DNNL in a
 * build without oneDNN. */
mg_status mg_conv2d_plan_init_ex(mg_conv2d_plan *plan, const mg_conv2d_desc *d, mg_conv2d_backend backend,
                                 mg_conv2d_layout layout);
/* As mg_conv2d_plan_init (oneDNN backend), with the caller's x/dx in nChw<x_block>c and y/dy in
 * nChw<y_block>c (ops_layers.h, "Channel-blocked layout"; 0 = NCHW for that side). A layer chain
 * that keeps its activations blocked skips the reorders a plain-buffer plan does at every call; every
 * op then runs oneDNN's blocked kernels. x_block must be 0 or divide C, y_block 0 or divide K.
 * MG_ERR_UNSUPPORTED without oneDNN or with the reference implementation (mg_ops_get_impl). Weights
 * and their gradients stay OIHW. */
mg_status mg_conv2d_plan_init_blocked(mg_conv2d_plan *plan, const mg_conv2d_desc *d, int x_block, int y_block);
/* The channel block of oneDNN's preferred activation layout on this CPU: 16 (AVX-512), 8 (AVX2), or
 * 0 (no oneDNN, or an older CPU: no blocked chain). */
int mg_conv2d_blocked_channels(void);

/* The plan's private working memory (oneDNN scratchpad, reordered copies of x/w/y in blocked
 * layouts, im2col buffers), in bytes. Plans are used one at a time in a network, so a caller that
 * holds many plans can give them one shared buffer of the largest size instead of one each:
 * mg_conv2d_plan_set_workspace(plan, buf, bytes) frees the plan's own buffer and uses `buf`
 * (64-byte aligned, at least plan_workspace_size bytes, owned by the caller and kept alive while
 * the plan is used; plans sharing one buffer must not run at the same time). */
size_t mg_conv2d_plan_workspace_size(const mg_conv2d_plan *plan);
mg_status mg_conv2d_plan_set_workspace(mg_conv2d_plan *plan, void *buf, size_t bytes);
/* Frees what the plan holds and zeroes it; NULL and zeroed plans are fine. */
void mg_conv2d_plan_free(mg_conv2d_plan *plan);
/* "reference", "im2col+sgemm", "onednn/plain", "onednn/blocked", or "onednn/B,P,P" when the ops
 * differ (layout of forward, backward data, backward weights; P = plain, B = blocked). The oneDNN
 * kernel names are in mg_conv2d_plan_kernel_names. */
const char *mg_conv2d_plan_impl_name(const mg_conv2d_plan *plan);
/* oneDNN implementation names of the forward, backward-data and backward-weights primitives
 * ("jit:avx512_common,gemm:jit,..."), for logs and benchmarks; "" when not oneDNN. */
void mg_conv2d_plan_kernel_names(const mg_conv2d_plan *plan, const char **fwd, const char **bwd_data,
                                 const char **bwd_weights);

/* Element counts of x, w and y for a plan. */
size_t mg_conv2d_x_size(const mg_conv2d_plan *plan);
size_t mg_conv2d_w_size(const mg_conv2d_plan *plan);
size_t mg_conv2d_y_size(const mg_conv2d_plan *plan);
/* Multiply-adds times two of one forward pass (backward data and backward weights cost the same). */
double mg_conv2d_flops(const mg_conv2d_plan *plan);

/* y[N,K,P,Q] = conv(x[N,C,H,W], w[K,C/G,R,S]) + b[K]. b must be NULL iff has_bias == 0. */
mg_status mg_conv2d_forward(mg_conv2d_plan *plan, const float *x, const float *w, const float *b, float *y);
/* dx[N,C,H,W] = (gradient of y w.r.t. x)ᵀ dy[N,K,P,Q]: WRITTEN. */
mg_status mg_conv2d_backward_data(mg_conv2d_plan *plan, const float *dy, const float *w, float *dx);
/* dw[K,C/G,R,S] += dL/dw, db[K] += sum over n,p,q of dy: ACCUMULATED. db must be NULL iff
 * has_bias == 0. */
mg_status mg_conv2d_backward_weights(mg_conv2d_plan *plan, const float *x, const float *dy, float *dw,
                                     float *db);

#ifdef __cplusplus
}
#endif
#endif
