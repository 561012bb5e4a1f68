/* ops_fused.h: the fused inference network: a chain of convolutions (each with its batch norm
 * already folded into weights and bias, an optional residual sum and an optional ReLU fused into
 * the convolution's epilogue) and max poolings, run inside the backend with activations kept in the
 * backend's private layout (oneDNN's blocked nChw16c on AVX-512) from the first convolution to the
 * last, weights reordered once when the network is built, and activation memory planned once (a
 * buffer is reused as soon as its value is dead). The caller sees plain NCHW float32 only: the input
 * and the last value.
 *
 * This is what makes inference fast (docs/PERFORMANCE.md): the per-op path (ops_conv.h +
 * ops_layers.h) reorders activations and weights in and out of the blocked layout on every call and
 * runs BN, ReLU and the residual add as separate passes over memory.
 *
 * Numerics: folding BN into the weights (w·γ/σ, β − μ·γ/σ) rounds differently from normalising the
 * convolution's output, so results match the per-op eval path to float32 rounding, not bit for bit
 * (tests/oracle/test_model.c states the tolerance). With MG_FNET_WINOGRAD the 3x3 stride-1
 * convolutions with an output of at least 4x4 use Winograd F(4x4, 3x3) where the backend has it
 * (oneDNN's AVX-512 kernels): 2-3x faster per layer; measured ~1e-6 relative difference on whole
 * ResNets (docs/ops.md).
 *
 * Available only in builds with oneDNN: elsewhere mg_fnet_available() is false, mg_fnet_init returns
 * MG_ERR_UNSUPPORTED, and callers use the per-op path. */
#ifndef MULTIGRAIN_OPS_FUSED_H
#define MULTIGRAIN_OPS_FUSED_H

#include <stdbool.h>

#include "multigrain/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mg_fnet mg_fnet;

/* Build flags. */
enum {
    MG_FNET_RELU = 1,     /* ReLU after the (sum and) bias */
    MG_FNET_WINOGRAD = 2, /* allow Winograd for this 3x3 convolution: stride 1, and on AVX2 stride 2
                             (our kernels, docs/ops.md); falls back to direct */
};

bool mg_fnet_available(void);

/* A network whose value 0 is the plain NCHW input [n, c, h, w]. */
mg_status mg_fnet_init(mg_fnet **net, int n, int c, int h, int w);
/* The same for another input shape of a network built from the same weights: while it is built, each
 * convolution whose reordered weights in `donor` (the i-th convolution of both) fit takes them shared
 * (reference counted; the donor may be freed first) instead of reordering its own, and its weights
 * callback is not called. This is what makes rect-mode inference over images of varying sizes cheap.
 * threads: the OpenMP thread count the network is built and run with (0: mg_ops_get_threads(), as
 * mg_fnet_init). */
mg_status mg_fnet_init_like(mg_fnet **net, int n, int c, int h, int w, const mg_fnet *donor, int threads);
void mg_fnet_free(mg_fnet *net);

/* out = act(conv(in, w) + bias [+ residual]); w is OIHW [k, C_in, r, r] (copied and reordered now,
 * not referenced later), bias [k] (copied). Square kernel r, stride, symmetric padding. A residual
 * value is consumed: the sum is computed in its buffer, so it may not be used by a later op. */
mg_status mg_fnet_add_conv(mg_fnet *net, int in, int k, int r, int stride, int pad, const float *w,
                           const float *bias, int residual, int flags, int *out);
/* As mg_fnet_add_conv, with the weights (OIHW) and bias produced by get_weights(ctx, w, bias) into
 * buffers of the right size only when they are needed (not when shared from a donor). */
mg_status mg_fnet_add_conv_cb(mg_fnet *net, int in, int k, int r, int stride, int pad,
                              mg_status (*get_weights)(void *ctx, float *w, float *bias), void *ctx, int residual,
                              int flags, int *out);
/* out = max pooling of in with an r x r window (padding counts as -inf, as PyTorch). */
mg_status mg_fnet_add_maxpool(mg_fnet *net, int in, int r, int stride, int pad, int *out);

/* Plans memory after the last add; value `output` is what mg_fnet_run returns. */
mg_status mg_fnet_finalize(mg_fnet *net, int output);

/* dims of a value: n, c, h, w. */
void mg_fnet_value_dims(const mg_fnet *net, int value, int dims[4]);

/* Runs the network on x (plain NCHW, the shape given to mg_fnet_init) and writes the output value
 * in plain NCHW to y. */
mg_status mg_fnet_run(mg_fnet *net, const float *x, float *y);

/* The channel block of the output value's own layout (after mg_fnet_finalize): 16 (nChw16c) or 8
 * (nChw8c), or 0 when it is neither. */
int mg_fnet_output_block(const mg_fnet *net);
/* As mg_fnet_run, without the reorder to plain NCHW: *y points at the output value in the network's
 * memory, in channel blocks of mg_fnet_output_block, valid until the next run or mg_fnet_free. Fails
 * when mg_fnet_output_block is 0 (mg_fnet_run then). */
mg_status mg_fnet_run_raw(mg_fnet *net, const float *x, const float **y);

/* Bytes the network holds: reordered weights (not those shared from a donor), activation buffers,
 * scratchpad. */
size_t mg_fnet_bytes(const mg_fnet *net);
/* The kernel that computes value `value` (after mg_fnet_finalize), as MG_FNET_PROFILE names it: ours
 * ("ours:wino F(4x4,3x3)", "ours:wino F(2x2,3x3)", "ours:wino stride 2", "ours:direct",
 * "ours:pool_avx2") or oneDNN's implementation (e.g. "jit_wino_4x3:avx512_core", "jit:avx2"); NULL for
 * the input or a value no op writes. The string lives as long as the network. */
const char *mg_fnet_value_kernel(const mg_fnet *net, int value);
/* How many convolutions run Winograd (after mg_fnet_finalize). */
int mg_fnet_winograd_count(const mg_fnet *net);
/* How many leading ops a run of a batch takes image by image, each image through all of them before
 * the next (after mg_fnet_finalize; 0 at batch 1): the ops whose outputs have at least 28x28
 * positions per image (MG_FNET_MICRO_MIN=N positions instead, read at finalize; 0 turns it off), where
 * a batch's activations outgrow the caches (docs/ops.md, "Image by image"). */
int mg_fnet_per_image_count(const mg_fnet *net);

#ifdef __cplusplus
}
#endif

#endif
