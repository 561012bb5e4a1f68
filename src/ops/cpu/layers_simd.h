/* layers_simd.h: small float32 loop kernels written so GCC's -O2 vectoriser takes them (restrict
 * pointers; main loop over a multiple of 8 elements, then a scalar tail) for the fast paths of the
 * layer ops. Sums use 8 float lanes over blocks of at most MG_SIMD_BLOCK elements, with each block's
 * total added in double, so the rounding error stays that of ~32-term float sums. */
#ifndef MG_OPS_CPU_LAYERS_SIMD_H
#define MG_OPS_CPU_LAYERS_SIMD_H

#include <stddef.h>

#define MG_SIMD_BLOCK 256

/* sum (x[i] - shift): pass a value near the data (e.g. its first element) so that a channel with
 * |mean| >> std is summed as small deviations, keeping the float lanes accurate; shift 0 = plain sum. */
static inline double mg_simd_sum(const float *restrict x, size_t n, float shift) {
    double total = 0;
    for (size_t b = 0; b < n; b += MG_SIMD_BLOCK) {
        size_t len = n - b < MG_SIMD_BLOCK ? n - b : MG_SIMD_BLOCK, len8 = len & ~(size_t)7;
        const float *restrict p = x + b;
        float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        for (size_t i = 0; i < len8; i += 8)
            for (int k = 0; k < 8; k++) acc[k] += p[i + k] - shift;
        float s = 0;
        for (size_t i = len8; i < len; i++) s += p[i] - shift;
        for (int k = 0; k < 8; k++) s += acc[k];
        total += s;
    }
    return total;
}

/* sum (x[i] - m)^2 */
static inline double mg_simd_sumsq_dev(const float *restrict x, size_t n, float m) {
    double total = 0;
    for (size_t b = 0; b < n; b += MG_SIMD_BLOCK) {
        size_t len = n - b < MG_SIMD_BLOCK ? n - b : MG_SIMD_BLOCK, len8 = len & ~(size_t)7;
        const float *restrict p = x + b;
        float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        for (size_t i = 0; i < len8; i += 8)
            for (int k = 0; k < 8; k++) {
                float d = p[i + k] - m;
                acc[k] += d * d;
            }
        float s = 0;
        for (size_t i = len8; i < len; i++) s += (p[i] - m) * (p[i] - m);
        for (int k = 0; k < 8; k++) s += acc[k];
        total += s;
    }
    return total;
}

/* *sg += sum g[i]; *sgx += sum g[i] (x[i]-m) */
static inline void mg_simd_sum_g_gx(const float *restrict g, const float *restrict x, size_t n, float m,
                                    double *sg, double *sgx) {
    for (size_t b = 0; b < n; b += MG_SIMD_BLOCK) {
        size_t len = n - b < MG_SIMD_BLOCK ? n - b : MG_SIMD_BLOCK, len8 = len & ~(size_t)7;
        const float *restrict gp = g + b, *restrict xp = x + b;
        float a1[8] = {0, 0, 0, 0, 0, 0, 0, 0}, a2[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        for (size_t i = 0; i < len8; i += 8)
            for (int k = 0; k < 8; k++) {
                a1[k] += gp[i + k];
                a2[k] += gp[i + k] * (xp[i + k] - m);
            }
        float s1 = 0, s2 = 0;
        for (size_t i = len8; i < len; i++) {
            s1 += gp[i];
            s2 += gp[i] * (xp[i] - m);
        }
        for (int k = 0; k < 8; k++) {
            s1 += a1[k];
            s2 += a2[k];
        }
        *sg += s1;
        *sgx += s2;
    }
}

#endif
