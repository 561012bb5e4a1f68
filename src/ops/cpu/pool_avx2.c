/* pool_avx2.c: max pooling with AVX2 on nChw8c or nChw16c activations (pool_avx2.h). Each output row
 * of each group of 8 channels (a block of nChw8c, half a block of nChw16c) first takes the maximum
 * over its window's input rows (clipped to the map) into a row of w vectors on the stack, then over
 * each window's columns of that row: 3 + 3 loads per output instead of 9 for ResNet's 3x3 stride-2
 * window, the input read once per output row. The rows of all images and channel groups are split
 * between the threads. OpenMP when compiled with it. */
#include "ops/cpu/pool_avx2.h"

#include <immintrin.h>
#include <stdint.h>

#include "ops/cpu/wino_avx2.h"

#define TGT __attribute__((target("avx2")))
#define MAX_W 2048 /* input columns: the row of column maxima lives on the stack (64 KiB) */

bool mg_maxpool8_fits(int n, int c, int h, int w, int r, int stride, int pad, int block) {
    return n >= 1 && (block == 8 || block == 16) && c >= block && c % block == 0 && h >= 1 && w >= 1 && r >= 1 &&
           stride >= 1 && pad >= 0 && 2 * pad <= r && h + 2 * pad >= r && w + 2 * pad >= r && w <= MAX_W &&
           mg_wino4_cpu_ok();
}

/* One output row (oy) of one plane of 8 channels: xp the plane (h x w pixels of 8 channels, ps floats
 * apart: 8 in nChw8c, 16 in nChw16c), yr the output row (pixels ps floats apart). */
TGT static void pool_row(const float *xp, float *yr, int h, int w, int q, int r, int stride, int pad, int oy,
                         int ps, __m256 *col) {
    int y0 = oy * stride - pad, y1 = y0 + r;
    if (y0 < 0) y0 = 0;
    if (y1 > h) y1 = h;
    /* the maximum over the window's rows, column by column */
    const float *row = xp + (size_t)y0 * w * ps;
    if (y1 - y0 == 3) { /* ResNet's 3x3 window away from the top and bottom edges: one pass */
        const float *r1 = row + (size_t)w * ps, *r2 = r1 + (size_t)w * ps;
        for (int x = 0; x < w; x++)
            col[x] = _mm256_max_ps(
                _mm256_max_ps(_mm256_loadu_ps(row + (size_t)x * ps), _mm256_loadu_ps(r1 + (size_t)x * ps)),
                _mm256_loadu_ps(r2 + (size_t)x * ps));
    } else {
        for (int x = 0; x < w; x++) col[x] = _mm256_loadu_ps(row + (size_t)x * ps);
        for (int yy = y0 + 1; yy < y1; yy++) {
            row = xp + (size_t)yy * w * ps;
            for (int x = 0; x < w; x++) col[x] = _mm256_max_ps(col[x], _mm256_loadu_ps(row + (size_t)x * ps));
        }
    }
    /* then over each window's columns */
    for (int ox = 0; ox < q; ox++) {
        int x0 = ox * stride - pad, x1 = x0 + r;
        if (x0 < 0) x0 = 0;
        if (x1 > w) x1 = w;
        __m256 m = col[x0];
        for (int x = x0 + 1; x < x1; x++) m = _mm256_max_ps(m, col[x]);
        _mm256_storeu_ps(yr + (size_t)ox * ps, m);
    }
}

TGT void mg_maxpool8_forward(const float *x, float *y, int n, int c, int h, int w, int r, int stride, int pad,
                             int block, int threads) {
    const int p = (h + 2 * pad - r) / stride + 1, q = (w + 2 * pad - r) / stride + 1;
    const long rows = (long)n * (c / 8) * p;
    const int nthr = threads > 0 ? threads : 1;
#ifndef _OPENMP
    (void)nthr;
#endif
#ifdef _OPENMP
#pragma omp parallel for num_threads(nthr) schedule(static) if (nthr > 1 && rows >= 64)
#endif
    for (long i = 0; i < rows; i++) {
        __m256 col[MAX_W];
        /* the 8-channel group: a whole block (nChw8c) or a half (nChw16c; c / 8 groups per image is even) */
        const long g = i / p, blk = g / (block / 8), half = g % (block / 8);
        const int oy = (int)(i % p);
        pool_row(x + (size_t)blk * h * w * block + half * 8, y + ((size_t)blk * p + oy) * q * block + half * 8, h, w,
                 q, r, stride, pad, oy, block, col);
    }
}
