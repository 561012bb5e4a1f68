/* wino_avx2.h: Winograd F(4x4, 3x3) convolutions for AVX2+FMA CPUs on the nChw8c activation layout
 * (wino_avx2.c), for the 3x3 stride-1 pad-1 layers where oneDNN 2.6 has no Winograd kernel (its
 * Winograd is AVX-512 only): the fused inference network's forward, and the training chain's forward,
 * backward data and backward weights (conv2d_dnnl.c); and a stride-2 variant for the fused inference
 * network's 3x3 stride-2 pad-1 layers. */
#ifndef MG_OPS_CPU_WINO_AVX2_H
#define MG_OPS_CPU_WINO_AVX2_H

#include <stdbool.h>
#include <stddef.h>

#include "multigrain/status.h"

typedef struct mg_wino4 mg_wino4;

/* Whether this CPU runs the kernels (AVX2 and FMA). */
bool mg_wino4_cpu_ok(void);
/* Whether a convolution of c -> k channels fits the kernels: c a multiple of 8, k of 16. */
bool mg_wino4_shape_ok(int c, int k);
/* Layers with fewer 4x4 output tiles than this lost to oneDNN's direct kernel before phase 2 streamed
 * the next transformed weights in while computing: U, 4x the direct weights, was read from memory for
 * too little work (ResNet-50's 7x7 maps at batch 1-2; docs/PERFORMANCE.md, "AVX2 machines: our
 * Winograd kernels"). The training chain keeps this rule (its batches give far more tiles); the fused
 * inference network follows mg_wino4_inference_tile. */
#define MG_WINO4_MIN_TILES 12
/* Below this many 4x4 output tiles the fused inference network uses F(2x2) (mg_wino4_inference_tile).
 * Since phase 2 streams the next transformed weights in while it computes, F(4x4) beats oneDNN's direct
 * kernel from 8 tiles up (512 channels on 7x7 at batch 2: 5.3 against 8.9 ms on one thread), and ties
 * with F(2x2) there; on fewer tiles F(2x2), with 4/9 of the weights to read, is faster (batch 1: 2.9
 * against 4.1 ms; docs/PERFORMANCE.md, "Batch 1: F(2x2)"). */
#define MG_WINO2_MIN_TILES4 8
/* What Winograd with output tiles of tile x tile (2 or 4) saves on a 3x3 stride-1 pad-1 layer of h x w
 * maps: the direct convolution's multiply-adds inside the map, (3h - 2)(3w - 2) per channel pair
 * (oneDNN's direct kernels skip the padding taps), over Winograd's products, (tile + 2)^2 per tile of
 * the map rounded up to whole tiles. 7x7 with F(2x2): 361 / 256 = 1.41; 14x14 with F(4x4): 1600 / 576
 * = 2.78; 2x2: 16 / 16 = 1.0 (F(2x2)) and 16 / 36 (F(4x4)); 3x3: 49 / 64; 5x5: 169 / 144 = 1.17. 0
 * for a bad tile or size. */
double mg_wino4_saving(int tile, int h, int w);
/* Below this saving our kernels lose to oneDNN's direct ones in the fused inference network: their transforms, their transformed
 * weights (16/9 or 4x the direct ones) and the wasted outputs of partial tiles cost more than the
 * products save. Measured at batch 1 (bench_dnnl_conv, one thread): oneDNN's direct kernel is faster
 * on 2x2 maps (512 channels: 0.70 against 1.85 ms with F(2x2)), on 3x3 (1.07 against 1.29) and 5x5
 * (1.82 against 1.94), F(2x2) on 4x4 (1.06 against 1.78; saving 1.56), 6x6 (1.64 against 2.38; 1.78)
 * and 7x7 (1.41); ResNet-18 at 64x64 (2x2 maps in stage 4) ran 1.12x faster at batch 1 without our
 * Winograd there (docs/PERFORMANCE.md). MG_WINO_MIN_SAVING=X in the environment moves the threshold
 * (experiments; 0: no gate). */
#define MG_WINO_MIN_SAVING_DEFAULT 1.3
/* The one rule for using these kernels on a 3x3 stride-1 pad-1 layer of n x c x h x w -> k channels
 * (for backward data pass the channels swapped): channels that fit, at least MG_WINO4_MIN_TILES
 * tiles, and a CPU with AVX2 and FMA. Without the saving gate of the inference network: on the
 * demo's training step (ResNet-18 at 64x64, batch 96, 2x2 maps in stage 4, where F(4x4) computes 2.25x
 * the direct products) the gate measured no difference in 9 alternating pairs of bench_train_step
 * (one and two threads; docs/PERFORMANCE.md). */
bool mg_wino4_applies(int n, int c, int k, int h, int w);
/* A plan for input n x c x h x w (nChw8c), k output channels, 3x3 kernel, stride 1, padding 1 (output
 * n x k x h x w, nChw8c). w: OIHW weights (k x c x 3 x 3), bias: k values; both transformed and copied
 * (the plan does not keep the pointers). */
mg_status mg_wino4_init(mg_wino4 **plan, int n, int c, int k, int h, int w, const float *weights,
                        const float *bias);
/* The same with output tiles of tile x tile: 4 (F(4x4, 3x3), as mg_wino4_init) or 2 (F(2x2, 3x3):
 * 16 transformed matrices instead of 36, 4 multiplications per output against F(4x4)'s 2.25 and the
 * direct convolution's 9, with transformed weights 16/9 the size of the direct ones instead of 4x).
 * Forward plans only. */
mg_status mg_wino4_init_tile(mg_wino4 **plan, int tile, int n, int c, int k, int h, int w, const float *weights,
                             const float *bias);
/* The tile the fused inference network runs a 3x3 stride-1 pad-1 layer of n x c x h x w -> k channels
 * with: 4 from MG_WINO2_MIN_TILES4 4x4 tiles up, 2 on fewer; F(2x2) instead where F(4x4) saves less
 * than MG_WINO_MIN_SAVING_DEFAULT and F(2x2) saves at least that; 0 (oneDNN's direct kernel) where neither
 * saves that much (maps of 2x2, 3x3, 5x5), the channels do not fit or the CPU lacks AVX2 and FMA.
 * MG_WINO2_MIN_TILES4=N in the environment moves the tile threshold (experiments). */
int mg_wino4_inference_tile(int n, int c, int k, int h, int w);
/* The backward-data convolution of a 3x3 stride-1 pad-1 layer with c_fwd input and k_fwd output
 * channels, on n x k_fwd x h x w gradients dy (nChw8c), giving dx (n x c_fwd x h x w, nChw8c): a plan
 * of k_fwd -> c_fwd channels with zero bias. Its transformed weights live at the start of the scratch
 * (included in mg_wino4_scratch_bytes), so that the plans of all layers can share one buffer: call
 * mg_wino4_set_weights_scratch before every mg_wino4_forward, with the same scratch (the weights
 * change every training step anyway). Needs k_fwd a multiple of 8, c_fwd of 16. */
mg_status mg_wino4_init_bwd_data(mg_wino4 **plan, int n, int c_fwd, int k_fwd, int h, int w);
/* A forward plan (c -> k channels, zero bias) whose transformed weights live at the start of the
 * scratch like a backward-data plan's: for training, where the weights change every step. Call
 * mg_wino4_set_weights_scratch before every mg_wino4_forward, with the same scratch. */
mg_status mg_wino4_init_fwd_scratch(mg_wino4 **plan, int n, int c, int k, int h, int w);
/* Transforms the forward layer's OIHW weights into the scratch for the next run of a plan from
 * mg_wino4_init_bwd_data (w: k_fwd x c_fwd x 3 x 3; the kernel rotated by 180 degrees with input and
 * output channels swapped, then G g G^T) or mg_wino4_init_fwd_scratch (w: k x c x 3 x 3, G g G^T).
 * Float, AVX2; OpenMP threads as in mg_wino4_forward. */
void mg_wino4_set_weights_scratch(const mg_wino4 *plan, const float *w, void *scratch, int threads);
/* Stride 2, padding 1, 3x3: per dimension the even inputs meet the taps (g0, g2) through Winograd
 * F(4, 2) and the odd ones g1 alone, 81 products per 4x4 output tile against the direct 144 (1.78x
 * fewer; transformed weights 4x the direct ones, as F(4x4)). What it saves on an h x w input map
 * (output ((h - 1) / 2 + 1) x ((w - 1) / 2 + 1)): the direct convolution's taps inside the map, 3 ho - 1
 * per output row (3 ho - 2 for odd h), times the same for the columns, over 81 per tile of the output
 * rounded up to whole tiles. 56x56: 83^2 / (63^2) = 1.74; 28x28: 41^2 / 36^2 = 1.30; 14x14: 20^2 / 18^2
 * = 1.23. 0 for a bad size. */
double mg_wino4_s2_saving(int h, int w);
/* Whether the fused inference network runs a 3x3 stride-2 pad-1 layer of n x c x h x w -> k channels
 * with the stride-2 plan whose kernels are vw floats wide (8, or 16: mg_wino4_block16_width): channels
 * that fit, a CPU with AVX2 and FMA, and MG_WINO_S2_MIN_SAVING or more saved (mg_wino4_s2_saving),
 * MG_WINO_S2_MIN_SAVING_WIDE 16-wide (ResNet-50's 28x28 layer too: 1.0-1.6 % faster on Zen 5,
 * docs/PERFORMANCE.md; its 14x14 layer, 1.23, measured 1.5 % slower). MG_WINO_S2_SAVING=X in the
 * environment sets the minimum for both (experiments). The fused network gives the layers our 16-wide
 * direct kernel takes (mg_dconv_preferred_block: the 28x28 layer at batch 1) to that kernel instead. */
#define MG_WINO_S2_MIN_SAVING 1.5
#define MG_WINO_S2_MIN_SAVING_WIDE 1.25
bool mg_wino4_inference_s2(int n, int c, int k, int h, int w, int vw);
/* A stride-2 forward plan for input n x c x h x w (nChw8c), k output channels (output n x k x ((h - 1) /
 * 2 + 1) x ((w - 1) / 2 + 1), nChw8c), weights and bias as mg_wino4_init. */
mg_status mg_wino4_init_stride2(mg_wino4 **plan, int n, int c, int k, int h, int w, const float *weights,
                                const float *bias);
/* A plan for another batch size sharing `donor`'s transformed weights (reference counted). */
mg_status mg_wino4_init_like(mg_wino4 **plan, const mg_wino4 *donor, int n, int h, int w);
void mg_wino4_free(mg_wino4 *plan);
/* The activation layout a plan run by mg_wino4_forward (forward with weights or weights in the
 * scratch, backward data) reads and writes: channel blocks of 8 (nChw8c, the default) or 16 (nChw16c,
 * oneDNN's layout on AVX-512 CPUs, where the fused network and the training chain's forward run these
 * AVX2 kernels too: docs/ops.md). Needs c and k multiples of the block; backward-weights plans stay on
 * nChw8c; a plan made with init_like takes its donor's block and vector width. On nChw16c the plan
 * runs 16-wide AVX-512 kernels where the CPU has full-width 512-bit FMAs (mg_cpu_fma_width() == 16;
 * MG_WINO_WIDTH=8|16 in the environment decides instead), 8-wide ones otherwise. */
mg_status mg_wino4_set_block(mg_wino4 *plan, int block);
/* Floats per vector the plan's kernels use: 8 or 16 (set by mg_wino4_set_block); 0 for NULL. */
int mg_wino4_vector_width(const mg_wino4 *plan);
/* The floats per vector a plan set to nChw16c would use on this CPU: 16 or 8 (as mg_wino4_set_block). */
int mg_wino4_block16_width(void);
/* Whether the plan convolves c -> k channels with output tiles of tile x tile and stride 1 or 2 (a donor's
 * weights fit; stride-2 plans have tile 4). */
bool mg_wino4_matches(const mg_wino4 *plan, int tile, int stride, int c, int k);
/* Bytes of the transformed weights (shared by plans made with init_like) and of the scratch a run
 * on `threads` threads needs, for every kind of plan (give it a 64-byte aligned buffer). */
size_t mg_wino4_weight_bytes(const mg_wino4 *plan);
size_t mg_wino4_scratch_bytes(const mg_wino4 *plan, int threads);
/* y = conv(x) + bias, then y += (the values y held) when sum, then max(y, 0) when relu. x and y are
 * nChw8c (nChw16c after mg_wino4_set_block(plan, 16)) and must not overlap; runs on `threads` OpenMP
 * threads when the library has OpenMP (else one thread). */
void mg_wino4_forward(const mg_wino4 *plan, const float *x, float *y, int sum, int relu, void *scratch,
                      int threads);

/* Backward weights of a 3x3 stride-1 pad-1 convolution of c -> k channels on n x c x h x w inputs:
 * dw (k x c x 3 x 3, OIHW) += the gradient from x (nChw8c) and dy (n x k x h x w, nChw8c), through
 * Winograd F(4x4, 3x3): dU = sum over tiles of V^T dM (V = B^T x B, dM = A dy A^T per tile), then
 * G^T dU G per kernel. Needs c a multiple of 8, k of 16. The scratch (mg_wino4_scratch_bytes) holds
 * dU and one chunk of tiles' V and dM. */
mg_status mg_wino4_init_bwd_weights(mg_wino4 **plan, int n, int c, int k, int h, int w);
void mg_wino4_backward_weights(const mg_wino4 *plan, const float *x, const float *dy, float *dw, void *scratch,
                               int threads);

#endif
