/* pool_avx2.h: max pooling with AVX2 on nChw8c or nChw16c activations (pool_avx2.c), for the fused
 * inference network's pooling after the stem, where oneDNN 2.6's AVX2 pooling took 2.3x as long (about
 * 1 ms per 64x112x112 image on one thread; docs/PERFORMANCE.md, "The stem's max pooling"). */
#ifndef MG_OPS_CPU_POOL_AVX2_H
#define MG_OPS_CPU_POOL_AVX2_H

#include <stdbool.h>

/* Whether max pooling of n x c x h x w (channel blocks of `block`: 8, nChw8c, or 16, nChw16c) with an
 * r x r window, stride s and padding pad fits the kernel: c a multiple of the block, r, stride >= 1,
 * 0 <= 2 pad <= r (every window then holds an input element, as PyTorch requires), the window fitting
 * the padded input, w <= 2048, and a CPU with AVX2. */
bool mg_maxpool8_fits(int n, int c, int h, int w, int r, int stride, int pad, int block);
/* y (n x c x p x q, p = (h + 2 pad - r) / stride + 1 as PyTorch's floor mode) = the maximum of x over
 * each window (both in channel blocks of `block`, 8 or 16, as mg_maxpool8_fits), padding excluded (as
 * PyTorch's -inf padding). x and y must not overlap. Splits the output rows between `threads` OpenMP
 * threads when built with OpenMP. Exact: a maximum does not round. A NaN in a window gives NaN or
 * the window's other maximum (vmaxps's rule; PyTorch gives NaN). */
void mg_maxpool8_forward(const float *x, float *y, int n, int c, int h, int w, int r, int stride, int pad,
                         int block, int threads);

#endif
