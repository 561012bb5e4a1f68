/* ops_layers.h: the non-convolution CPU ops (batch norm, pooling, GeM, linear, L2 norm, element-wise,
 * cross-entropy, pairwise distances, SGD): forward and backward over NCHW float32, PyTorch semantics.
 *
 * Conventions shared by every function here (see docs/ops.md):
 *  - Parameter gradients (BN weight/bias, linear W/b, GeM p) ACCUMULATE (+=); activation gradients
 *    (dx, ds, dlogits, ...) are WRITTEN (=). A NULL gradient pointer means "not needed" and is skipped.
 *  - Shapes are plain ints (> 0); buffers are dense, row-major, caller-owned.
 *  - Bad input (NULL required buffer, non-positive or inconsistent shape, out-of-range label) returns
 *    MG_ERR_INVALID_ARG with a message naming the op and argument; nothing crashes.
 *  - Implementation: mg_ops_get_impl() at call time (MG_OPS_REFERENCE = plain serial C loops, the oracle's
 *    twin; MG_OPS_FAST = OpenBLAS sgemm / vectorisable loops parallelised over mg_pool_global(); oneDNN
 *    batch norm only when MG_BN_ONEDNN=1, see docs/PERFORMANCE.md). mg_layers_force_impl() overrides
 *    the choice on the calling thread (tests). Ops must not be called from inside a mg_pool_global()
 *    task (the pool is not re-entrant). */
#ifndef MULTIGRAIN_OPS_LAYERS_H
#define MULTIGRAIN_OPS_LAYERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "multigrain/ops.h"
#include "multigrain/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Forces the implementation used by layer ops on the calling thread: MG_OPS_FAST or MG_OPS_REFERENCE,
 * or -1 to go back to mg_ops_get_impl(). Intended for tests comparing both paths. */
void mg_layers_force_impl(int impl);

/* ------------------------------------------------------------------------------------------------
 * Batch norm 2d over x [n,c,h,w], per channel c. torch.nn.BatchNorm2d(momentum=0.1, eps=1e-5).
 * TRAIN : normalise with batch mean and biased batch variance; update running_mean/var in place with
 *         r = (1-momentum) r + momentum * stat, using the UNBIASED variance (n*h*w/(n*h*w-1)) for var.
 * EVAL  : normalise with running statistics (no update).
 * FROZEN: forward like EVAL; backward treats mean/var as constants (affine with fixed statistics) while
 *         weight and bias still receive gradients.
 * save_mean/save_invstd [c] (required) receive the statistics used (batch or running, invstd =
 * 1/sqrt(var+eps)); backward reads them. weight/bias may be NULL (= 1 / 0, affine=False). In TRAIN,
 * running_mean/running_var may be NULL (no update); EVAL and FROZEN require them. y may equal x.
 * Layout (`block`): 0 (mg_bn2d_default_args) = NCHW; B > 1 = x, y, dy and dx are in the channel-blocked
 * layout nChw<B>c ("Channel-blocked layout" below; c must be a multiple of B, else MG_ERR_INVALID_ARG),
 * same results to float rounding; 1 is NCHW too. The per-channel vectors (weight, bias, running stats,
 * save_mean/save_invstd, dweight/dbias) stay plain [c]. The oneDNN path declines blocked calls. */
typedef enum mg_bn_mode { MG_BN_TRAIN = 0, MG_BN_EVAL = 1, MG_BN_FROZEN = 2 } mg_bn_mode;

typedef struct mg_bn2d_args {
    mg_bn_mode mode;
    int n, c, h, w;
    float momentum; /* 0.1 in PyTorch */
    float eps;      /* 1e-5 in PyTorch */
    int relu;       /* 1: the output is relu(BN(x)) (forward and apply), in the same pass on the fast path */
    int block;      /* 0: NCHW; B > 1: x, y, dy, dx are nChw<B>c (B divides c) */
    /* forward and apply only: NULL, or a tensor like y (a residual block's identity branch) added
     * before the ReLU, y = relu?(BN(x) + residual), in one pass on the blocked fast path (bit for bit
     * the BN output followed by mg_add_relu_forward / mg_add_forward); y may equal x, the residual is
     * neither */
    const float *residual;
} mg_bn2d_args;

/* The PyTorch defaults for a given shape and mode. */
mg_bn2d_args mg_bn2d_default_args(mg_bn_mode mode, int n, int c, int h, int w);

mg_status mg_bn2d_forward(const mg_bn2d_args *a, const float *x, const float *weight, const float *bias,
                          float *running_mean, float *running_var, float *save_mean, float *save_invstd,
                          float *y);
/* dx [n,c,h,w] written (NULL: skipped); dweight, dbias [c] accumulated (NULL: skipped). dx may alias dy. */
/* y = (x - save_mean) * save_invstd * weight + bias, in exactly the arithmetic mg_bn2d_forward's fast
 * path used for its output (y must not alias x): recomputes a BN output from the statistics the
 * forward saved, so backward need not keep it (src/nn/model.c). */
mg_status mg_bn2d_apply(const mg_bn2d_args *a, const float *x, const float *weight, const float *bias,
                        const float *save_mean, const float *save_invstd, float *y);
mg_status mg_bn2d_backward(const mg_bn2d_args *a, const float *x, const float *dy, const float *weight,
                           const float *save_mean, const float *save_invstd, float *dx, float *dweight,
                           float *dbias);
/* Backward of y = relu(BN(x)) from dy = dL/dy, for a forward that saved its statistics (dx, dweight,
 * dbias as mg_bn2d_backward's). It needs no y: the ReLU's mask is recomputed from x, save_mean,
 * save_invstd, weight and bias in the forward's arithmetic (mg_bn2d_apply's), so the results equal
 * mg_relu_backward on the forward's y followed by mg_bn2d_backward, bit for bit. On the fast path of
 * blocked layouts the mask is folded into batch norm's two passes (no pass over y and dy for the ReLU);
 * elsewhere dy is overwritten with the masked gradient first. dx must not be dy. */
mg_status mg_bn2d_relu_backward(const mg_bn2d_args *a, const float *x, float *dy, const float *weight,
                                const float *bias, const float *save_mean, const float *save_invstd, float *dx,
                                float *dweight, float *dbias);

/* Synchronised batch norm (data-parallel training, TRAIN mode only): the batch is spread over several
 * processes and the statistics are those of the whole batch. `reduce(ctx, data, n)` must replace data[n]
 * by its element-wise sum over the processes (every process the same result); it is called twice in
 * forward ([c] sums of x and the element count, then [c] squared deviations from the global mean) and
 * once in backward ([c] sums of dy and of dy * (x - mean)), in the same order on every process.
 * Running statistics use the global mean and the unbiased global variance. In backward, dx uses the
 * global sums, while dweight/dbias accumulate the LOCAL sums (the caller sums the parameter gradients
 * over the processes afterwards, as for every other parameter). Every process must pass upstream
 * gradients of the same loss at the same scale (the trainer: the global-batch loss; PyTorch's
 * SyncBatchNorm + DDP: W x it, then averages).
 * With reduce = identity (one process) the results equal mg_bn2d_forward/backward to rounding. */
typedef mg_status (*mg_allreduce_f64_fn)(void *ctx, double *data, size_t n);
mg_status mg_bn2d_forward_sync(const mg_bn2d_args *a, const float *x, const float *weight, const float *bias,
                               float *running_mean, float *running_var, float *save_mean, float *save_invstd,
                               float *y, mg_allreduce_f64_fn reduce, void *ctx);
mg_status mg_bn2d_backward_sync(const mg_bn2d_args *a, const float *x, const float *dy, const float *weight,
                                const float *save_mean, const float *save_invstd, float *dx, float *dweight,
                                float *dbias, mg_allreduce_f64_fn reduce, void *ctx);

/* ------------------------------------------------------------------------------------------------
 * Element-wise ops. n = number of elements. */
/* y = max(x, 0); y may equal x (in place). */
mg_status mg_relu_forward(size_t n, const float *x, float *y);
/* dx = dy * (y > 0), from the OUTPUT y (so the input may have been overwritten); dx may equal dy. */
mg_status mg_relu_backward(size_t n, const float *y, const float *dy, float *dx);
/* y = a + b; y may equal a or b. */
mg_status mg_add_forward(size_t n, const float *a, const float *b, float *y);
/* y = relu(a + b) in one pass, exactly mg_add_forward then mg_relu_forward; y may equal a or b. */
mg_status mg_add_relu_forward(size_t n, const float *a, const float *b, float *y);
/* y = (r > 0) ? a + b : 0: two gradients summed and taken through the backward of the ReLU whose
 * output is r, in one pass, exactly mg_add_forward then mg_relu_backward; y may equal a or b. */
mg_status mg_add_relu_backward(size_t n, const float *a, const float *b, const float *r, float *y);
/* da = dy, db = dy (written; either may be NULL; either may equal dy). */
mg_status mg_add_backward(size_t n, const float *dy, float *da, float *db);
/* y = 1 / (1 + exp(-x)); y may equal x. */
mg_status mg_sigmoid_forward(size_t n, const float *x, float *y);
/* dx = dy * y * (1 - y) from the output; dx may equal dy. */
mg_status mg_sigmoid_backward(size_t n, const float *y, const float *dy, float *dx);
/* *finite = true when no element of x is NaN or +-inf (the trainer's gradient check: one parallel,
 * vectorised pass summing x * 0, which is 0 for every finite x and NaN otherwise, instead of a serial
 * sum of x that huge finite values could also overflow). */
mg_status mg_all_finite(size_t n, const float *x, bool *finite);
/* Channel scale (squeeze-excitation): y[n,c,h,w] = x[n,c,h,w] * s[n,c]; y may equal x. */
mg_status mg_chscale_forward(int n, int c, int hw, const float *x, const float *s, float *y);
/* dx = dy * s (written, may alias dy; NULL: skipped), ds[n,c] = sum_hw dy * x (written; NULL: skipped). */
mg_status mg_chscale_backward(int n, int c, int hw, const float *x, const float *s, const float *dy,
                              float *dx, float *ds);

/* ------------------------------------------------------------------------------------------------
 * Channel-blocked layout nChw<B>c: the channels in groups of B (B divides C), each group stored as
 * [n][C/B][h][w][B], i.e. element (n, c, h, w) at ((n * C/B + c / B) * h*w + h * W + w) * B + c % B.
 * oneDNN's nChw16c (AVX-512) / nChw8c (AVX2); the training path keeps its activations in it between
 * convolutions (mg_conv2d_blocked_channels). block 0 or 1 is plain NCHW (a copy). dst must not alias src. */
mg_status mg_layout_to_blocked(int n, int c, int h, int w, int block, const float *x, float *y);
mg_status mg_layout_to_nchw(int n, int c, int h, int w, int block, const float *x, float *y);

/* ------------------------------------------------------------------------------------------------
 * 2-d pooling (torch.nn.functional.max_pool2d / avg_pool2d with ceil_mode=False, dilation 1). */
typedef struct mg_win2d {
    int kh, kw; /* kernel */
    int sh, sw; /* stride */
    int ph, pw; /* zero/-inf padding, at most half the kernel (PyTorch's rule) */
} mg_win2d;

/* Output size floor((in + 2p - k)/s) + 1; fails if the window does not fit or padding > k/2. */
mg_status mg_win2d_out_size(const mg_win2d *win, int h, int w, int *oh, int *ow);

/* Max pool: padding acts as -inf, ties keep the FIRST maximum in row-major window order, NaN wins.
 * argmax [n,c,oh,ow] (optional in forward, required in backward) receives the flat h*w index of the
 * chosen input element within its plane. */
mg_status mg_maxpool2d_forward(int n, int c, int h, int w, const mg_win2d *win, const float *x, float *y,
                               int32_t *argmax);
/* dx written (zeros where nothing was selected, sums where windows overlap). */
mg_status mg_maxpool2d_backward(int n, int c, int h, int w, const mg_win2d *win, const int32_t *argmax,
                                const float *dy, float *dx);
/* The same max pool on the channel-blocked layout nChw<block>c (see "Channel-blocked layout" above):
 * x / dx [n,c,h,w] and y / dy / argmax [n,c,oh,ow] all in nChw<block>c; argmax still holds the flat
 * h*w index within the channel's plane (the element sits at (that index) * block + c % block in its
 * channel block). Results are exactly those of mg_maxpool2d_forward/backward on the NCHW tensors, converted
 * (a selection; overlapping windows are summed in the same order). block must be 0 or divide c; 0 (or 1)
 * is plain NCHW and calls the functions above. Fast path: one task per (image, channel block), the
 * innermost loops over the block's contiguous channels. */
mg_status mg_maxpool2d_forward_blocked(int n, int c, int h, int w, int block, const mg_win2d *win, const float *x,
                                       float *y, int32_t *argmax);
mg_status mg_maxpool2d_backward_blocked(int n, int c, int h, int w, int block, const mg_win2d *win,
                                        const int32_t *argmax, const float *dy, float *dx);
/* Average pool with count_include_pad=True (PyTorch's default): the divisor counts padded positions
 * that lie inside the padded input but not beyond it. */
mg_status mg_avgpool2d_forward(int n, int c, int h, int w, const mg_win2d *win, const float *x, float *y);
mg_status mg_avgpool2d_backward(int n, int c, int h, int w, const mg_win2d *win, const float *dy, float *dx);
/* Adaptive average pool to [oh,ow] (torch adaptive_avg_pool2d: bins [floor(i*H/oh), ceil((i+1)*H/oh))).
 * oh = ow = 1 is global average pooling. */
mg_status mg_adaptive_avgpool2d_forward(int n, int c, int h, int w, int oh, int ow, const float *x, float *y);
mg_status mg_adaptive_avgpool2d_backward(int n, int c, int h, int w, int oh, int ow, const float *dy,
                                         float *dx);

/* ------------------------------------------------------------------------------------------------
 * GeM pooling over the whole h x w plane: y[n,c] = (mean_hw max(x, 1e-6)^p)^(1/p), p > 0.
 * p == 1 is the plain spatial average of x (no clamp; identical to global average pooling), as in the
 * MultiGrain code. Backward: dx written; dp (a single float, NULL: skipped) accumulated with
 * d y / d p of the clamped formula (also at p == 1). Gradient to x is 0 where x < 1e-6 (torch clamp). */
#define MG_GEM_EPS 1e-6f
mg_status mg_gem_forward(int n, int c, int h, int w, float p, const float *x, float *y);
/* y is the forward output (saved). */
mg_status mg_gem_backward(int n, int c, int h, int w, float p, const float *x, const float *y,
                          const float *dy, float *dx, float *dp);
/* GeM with x / dx [n,c,h,w] in nChw<block>c (see "Channel-blocked layout"); y / dy stay the plain pooled
 * [n,c]. Same maths as mg_gem_forward/backward (p == 1 average, MG_GEM_EPS clamp and its zero gradient,
 * dp accumulated); block must be 0 or divide c, and 0 (or 1) calls the functions above. The reference
 * path gives bit-identical results to the NCHW reference; the fast path sums each channel's plane in
 * its own order (double accumulators per channel), so y and dp agree with the NCHW fast path to float
 * rounding (dx too; given the same y, dx is bit-identical to the NCHW fast path's). */
mg_status mg_gem_forward_blocked(int n, int c, int h, int w, int block, float p, const float *x, float *y);
mg_status mg_gem_backward_blocked(int n, int c, int h, int w, int block, float p, const float *x, const float *y,
                                  const float *dy, float *dx, float *dp);

/* ------------------------------------------------------------------------------------------------
 * Linear: y[n,out] = x[n,in] W[out,in]^T + b[out] (b may be NULL). Fast path: OpenBLAS sgemm, or
 * one sgemv per row when n <= MG_LINEAR_GEMV_MAX_ROWS (sgemm packs all of W first, which dominates
 * at batch 1).
 * Backward: dx = dy W (written; NULL skips), dW += dy^T x, db += sum_n dy (accumulated; NULL skips). */
#define MG_LINEAR_GEMV_MAX_ROWS 8
mg_status mg_linear_forward(int n, int in, int out, const float *x, const float *W, const float *b, float *y);
mg_status mg_linear_backward(int n, int in, int out, const float *x, const float *W, const float *dy,
                             float *dx, float *dW, float *db);

/* ------------------------------------------------------------------------------------------------
 * Row L2 normalisation (MultiGrain): y[i,:] = x[i,:] / (||x[i,:]||_2 + 1e-6). y may equal x, but the
 * backward needs the original x. norms [n] (optional) receives ||x[i,:]||. */
#define MG_L2NORM_EPS 1e-6f
mg_status mg_l2norm_forward(int n, int d, const float *x, float *y, float *norms);
/* dx = (dy - x (x.dy) / (r (r+eps))) / (r+eps) with r = ||x||; at r = 0 the second term is dropped
 * (torch's norm subgradient 0). dx written; may alias dy. */
mg_status mg_l2norm_backward(int n, int d, const float *x, const float *dy, float *dx);

/* ------------------------------------------------------------------------------------------------
 * Softmax cross-entropy, mean over the batch: F.cross_entropy(logits, labels, label_smoothing=ls).
 * logits [n,k], labels [n] in 0..k-1, 0 <= ls <= 1. *loss receives the mean loss; dlogits [n,k]
 * (NULL: skipped) is WRITTEN with grad_scale * d loss / d logits (grad_scale = upstream gradient, e.g.
 * the loss weight lambda). Stable: log-sum-exp with the row max subtracted, accumulated in double. */
mg_status mg_cross_entropy(int n, int k, const float *logits, const int32_t *labels, float label_smoothing,
                           float grad_scale, float *loss, float *dlogits);

/* ------------------------------------------------------------------------------------------------
 * Pairwise Euclidean distances D[i,j] = sqrt(max(0, |x_i|^2 + |x_j|^2 - 2 x_i.x_j)) of x [n,d], D [n,n].
 * The diagonal is exactly 0. Backward: dx[i] = sum_j (dD[i,j] + dD[j,i]) (x_i - x_j) / D[i,j] over pairs
 * with D[i,j] > 0; pairs at distance 0 (the diagonal, duplicates) contribute 0 (the subgradient 0,
 * where torch's sqrt would give NaN). dx written. D is the forward output. */
mg_status mg_pdist_forward(int n, int d, const float *x, float *D);
mg_status mg_pdist_backward(int n, int d, const float *x, const float *D, const float *dD, float *dx);

/* ------------------------------------------------------------------------------------------------
 * SGD with momentum, torch.optim.SGD semantics (dampening 0):
 *   g' = g + weight_decay * w
 *   v  = first_step ? g' : momentum * v + g'          (torch's buffer init on the first step)
 *   w -= lr * (nesterov ? g' + momentum * v : v)
 * momentum == 0: plain SGD, v unused (may be NULL). weight_decay is per tensor (0 for no decay).
 * w, g and v must not overlap. */
typedef struct mg_sgd_args {
    float lr;
    float momentum;
    float weight_decay;
    int nesterov;
} mg_sgd_args;

mg_status mg_sgd_step(const mg_sgd_args *a, size_t n, float *w, const float *g, float *v, int first_step);

#ifdef __cplusplus
}
#endif
#endif
