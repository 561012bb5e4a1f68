/* direct_avx2.h: direct convolutions (1x1 and 3x3 kernels, stride 1 or 2) for AVX2+FMA CPUs on the
 * nChw8c activation layout and for AVX-512 CPUs on nChw16c (direct_avx2.c), for the fused inference
 * network's layers with few output positions: on AVX2 its 3x3 stride-2 layers on small maps
 * (ResNet-50's entry to stage 4), where oneDNN 2.6's AVX2 direct kernel runs far below the FMA peak
 * (docs/PERFORMANCE.md, "Batch 1 and 8: our direct kernel"); on CPUs with full-width 512-bit FMAs the
 * same layers on nChw16c, where oneDNN's AVX-512 direct kernel reads the weights from memory without
 * streaming them in ahead (docs/PERFORMANCE.md, "Zen 5: our direct kernel on nChw16c"). */
#ifndef MG_OPS_CPU_DIRECT_AVX2_H
#define MG_OPS_CPU_DIRECT_AVX2_H

#include <stdbool.h>
#include <stddef.h>

#include "multigrain/status.h"

typedef struct mg_dconv mg_dconv;

/* Whether a convolution of n x c x h x w (nChw8c) -> k channels, r x r kernel, stride s, padding pad
 * fits the kernel: c a multiple of 8, k of 16, r 1 or 3, s 1 or 2, pad < r, and a CPU with AVX2 and
 * FMA. Whether it is the faster choice is the caller's rule (mg_dconv_preferred). */
bool mg_dconv_fits(int n, int c, int k, int h, int w, int r, int stride, int pad);
/* The same for activations in channel blocks of `block`: 8 as mg_dconv_fits; 16 (nChw16c): c and k
 * multiples of 16 and a CPU with AVX-512F (the kernels run 16-wide). */
bool mg_dconv_fits_block(int block, int n, int c, int k, int h, int w, int r, int stride, int pad);
/* The rule the fused network follows: the kernel fits, a 3x3 stride-2 layer, at most
 * MG_DCONV_MAX_POSITIONS output positions per image (ResNet-50's entry to stage 4, 14x14 -> 7x7 at
 * 224x224) or at most MG_DCONV_MAX_BATCH_POSITIONS in all (its entry to stage 3 at batch 1, 28x28 ->
 * 14x14). There oneDNN 2.6's AVX2 direct kernel ran at 45-60 % of the FMA peak and this one, once it
 * streamed the next weights in while computing, was 1.3-1.4x (512 channels, batch 1 and 8) and 1.2x
 * (256 channels, batch 1) faster. It tied with oneDNN's on the 1x1 layers of stages 3 and 4 and the
 * stride-2 layer of 56x56 maps, and lost on 256 channels at batch 8 on one thread (0.93x;
 * docs/PERFORMANCE.md, "Batch 1: F(2x2), and weights streamed in"). MG_FNET_OWN_DIRECT=0 turns it off. */
#define MG_DCONV_MAX_POSITIONS 64
#define MG_DCONV_MAX_BATCH_POSITIONS 196
bool mg_dconv_preferred(int n, int c, int k, int h, int w, int r, int stride, int pad);
/* The same rule on activations in channel blocks of `block` (8: mg_dconv_preferred; 16: nChw16c, for
 * CPUs whose 16-wide FMAs are clearly faster than 8-wide ones, the caller checks mg_cpu_fma_width()).
 * On Zen 5, 512 channels 14x14 -> 7x7: 1.19-1.28 ms against oneDNN's jit:avx512_core 1.43-1.83 at
 * batch 1 (warm and cold caches), 9.3 against 10.1 at batch 8; ResNet-50 0.6-0.9 % faster
 * (docs/PERFORMANCE.md, "Zen 5: our direct kernel on nChw16c"). On nChw16c also the 1x1 layers with
 * MG_DCONV_MIN_1X1_POSITIONS to MG_DCONV_MAX_BATCH_POSITIONS output positions in all (ResNet-50's
 * stages 3 and 4 at batch 1, stage 4 in streams of 4 images): in the per-op profile the 19 layers of
 * batch 1 took 0.4-0.5 ms less at one thread and 0.1-0.4 at two than with oneDNN's jit_1x1, the 6 of
 * stage 4 at batch 8 on two threads (two streams of 4 images) 2 ms less per batch; on maps of 4
 * positions (2x2, ResNet-50 at 64x64) oneDNN's was faster (0.16 against 0.24 ms), on 16 and 64 ours
 * (docs/PERFORMANCE.md, "The stem and its pooling in one pass"); at stride 2 only with at most
 * MG_DCONV_MAX_POSITIONS output positions per image: on ResNet-50's entry to stage 3 (28x28 -> 14x14)
 * oneDNN's jit_1x1 took 0.05 ms less at one and two threads, on the entry to stage 4 (14x14 -> 7x7)
 * ours 0.1 ms less (docs/PERFORMANCE.md, "Two threads at batch 1: the cores far apart").
 * MG_FNET_OWN_DIRECT=3 keeps the 1x1 layers on oneDNN's kernel (for comparison). */
#define MG_DCONV_MIN_1X1_POSITIONS 16
bool mg_dconv_preferred_block(int block, int n, int c, int k, int h, int w, int r, int stride, int pad);
/* A plan for input n x c x h x w (nChw8c), k output channels (output n x k x p x q, nChw8c, p = (h + 2
 * pad - r) / stride + 1). weights: OIHW (k x c x r x r), bias: k values (NULL: zeros); both packed and
 * copied (the plan does not keep the pointers). */
mg_status mg_dconv_init(mg_dconv **plan, int n, int c, int k, int h, int w, int r, int stride, int pad,
                        const float *weights, const float *bias);
/* The same on activations in channel blocks of `block` (8: nChw8c, as mg_dconv_init; 16: nChw16c,
 * 16-wide AVX-512F kernels of up to 6 positions x 64 output channels). */
mg_status mg_dconv_init_block(mg_dconv **plan, int block, int n, int c, int k, int h, int w, int r, int stride,
                              int pad, const float *weights, const float *bias);
/* The channel block of the plan's activations (8 or 16; 0 for NULL). */
int mg_dconv_block(const mg_dconv *plan);
/* A plan for another input size sharing `donor`'s packed weights (reference counted) and block. */
mg_status mg_dconv_init_like(mg_dconv **plan, const mg_dconv *donor, int n, int h, int w);
void mg_dconv_free(mg_dconv *plan);
/* Whether the plan convolves c -> k channels with an r x r kernel, stride s and padding pad. */
bool mg_dconv_matches(const mg_dconv *plan, int c, int k, int r, int stride, int pad);
/* Bytes of the packed weights (shared by plans made with init_like) and of the scratch a run needs
 * (the zero-padded input when pad > 0; give it a 64-byte aligned buffer). */
size_t mg_dconv_weight_bytes(const mg_dconv *plan);
size_t mg_dconv_scratch_bytes(const mg_dconv *plan);
/* y = conv(x) + bias, plus the values y held when sum, then max(y, 0) when relu. x and y are nChw8c
 * (nChw16c for block 16) and must not overlap; runs on `threads` OpenMP threads when the library has
 * OpenMP (else one). */
void mg_dconv_forward(const mg_dconv *plan, const float *x, float *y, int sum, int relu, void *scratch, int threads);

#endif
