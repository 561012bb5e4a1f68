/* stem_avx2.h: a network's first convolution on our kernels (stem_avx2.c): an image of a few channels
 * (plain NCHW, as the caller gives it) convolved into blocked activations (nChw8c with AVX2+FMA,
 * nChw16c with AVX-512F), bias and ReLU, and optionally the max pooling that follows in the same pass,
 * so that the convolution's output (64 x 112 x 112 floats, 3.2 MB, per image of ResNet's stem at 224)
 * never leaves the cache. For the fused inference network's stem, where oneDNN 2.6's kernel ran at
 * 1.44 ms and its max pooling (or ours) another 0.21 ms per image on Zen 5, one thread, against ONNX
 * Runtime's 1.28 and 0.13 (docs/PERFORMANCE.md, "The stem and its pooling in one pass"). */
#ifndef MG_OPS_CPU_STEM_AVX2_H
#define MG_OPS_CPU_STEM_AVX2_H

#include <stdbool.h>
#include <stddef.h>

#include "multigrain/status.h"

typedef struct mg_stem mg_stem;

#define MG_STEM_MAX_C 4   /* input channels at most (they are reduced without channel blocks) */
#define MG_STEM_MAX_R 11  /* kernel size at most */

/* Whether a convolution of c x h x w images (plain NCHW) -> k channels in blocks of `block` (8 or 16),
 * r x r kernel, stride s, padding pad fits the kernel: 1 <= c <= MG_STEM_MAX_C, k a multiple of 16,
 * 1 <= r <= MG_STEM_MAX_R, s >= 1, 0 <= pad < r, the kernel fitting the padded input, and the CPU's
 * vectors (AVX2 and FMA for block 8, AVX-512F for 16). */
bool mg_stem_fits(int block, int c, int k, int h, int w, int r, int stride, int pad);
/* A plan for c x h x w images -> k channels (output k x p x q per image, p = (h + 2 pad - r) / stride +
 * 1, in channel blocks of `block`). weights: OIHW (k x c x r x r), bias: k values (NULL: zeros); both
 * packed and copied. relu: max(y, 0) after the bias. */
mg_status mg_stem_init(mg_stem **plan, int block, int c, int k, int h, int w, int r, int stride, int pad,
                       const float *weights, const float *bias, int relu);
/* A plan for images of h x w sharing `donor`'s packed weights (reference counted), block, ReLU, but
 * not its pooling. */
mg_status mg_stem_init_like(mg_stem **plan, const mg_stem *donor, int h, int w);
void mg_stem_free(mg_stem *plan);
/* Whether the plan's convolution output fits max pooling with an r x r window, stride s and padding
 * pad: r, s >= 1, 0 <= 2 pad <= r (every window holds an element, as PyTorch requires), the window
 * fitting the padded map. */
bool mg_stem_pool_fits(const mg_stem *plan, int r, int stride, int pad);
/* Adds that max pooling (PyTorch's floor mode, padding excluded) to the plan's runs. */
mg_status mg_stem_set_pool(mg_stem *plan, int r, int stride, int pad);
/* The channel block of the plan's output (8 or 16). */
int mg_stem_block(const mg_stem *plan);
/* Whether the plan convolves c -> k channels with an r x r kernel, stride s and padding pad. */
bool mg_stem_matches(const mg_stem *plan, int c, int k, int r, int stride, int pad);
/* The output's height and width per image: the pooled map's when the plan pools, else the
 * convolution's (conv_h, conv_w: the convolution's in any case; either pointer may be NULL). */
void mg_stem_out_dims(const mg_stem *plan, int *h, int *w, int *conv_h, int *conv_w);
/* Bytes of the packed weights, and of the scratch a run on `threads` threads needs (per thread its
 * zero-padded copies of the input rows its windows read and, when pooling, its rows of the
 * convolution's output; give it a 64-byte aligned buffer). */
size_t mg_stem_weight_bytes(const mg_stem *plan);
size_t mg_stem_scratch_bytes(const mg_stem *plan, int threads);
/* y (n images, in channel blocks of the plan's block) = [pool](relu(conv(x) + bias)) for x, n plain
 * NCHW images. x and y must not overlap the scratch. Splits each image's output rows between
 * `threads` OpenMP threads when built with OpenMP (else one). The sums run in the same order for every
 * thread count: bias, then channels, kernel rows and columns in order. */
void mg_stem_forward(const mg_stem *plan, const float *x, float *y, int n, void *scratch, int threads);

#endif
