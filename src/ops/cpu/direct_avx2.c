/* direct_avx2.c: direct convolutions (1x1 and 3x3, stride 1 or 2) with AVX2+FMA on nChw8c activations,
 * and with AVX-512F on nChw16c, for layers with few output positions (direct_avx2.h). The convolution
 * is a GEMM of output positions x (input channels x taps) by (input channels x taps) x output channels,
 * without im2col:
 *   - the weights are packed at plan time per block of ko output channels in the order the reduction
 *     reads them ([k/ko][c/blk][tap][blk][ko]; nChw8c: ko 16, blk 8; nChw16c: ko 64 (or 32, 16 where k
 *     does not divide), blk 16), so one block of output channels streams its weights from memory once;
 *   - a register kernel of up to 6 positions x ko output channels (12 accumulators of 8 floats, or 24
 *     of 16) broadcasts each position's input value from the blocked input (a zero-padded copy in the
 *     scratch when pad > 0) through a table of the positions' window offsets, so the positions of a
 *     block may cross rows and images;
 *   - the reduction runs in chunks of input channels whose input fits in about 192 KiB, the partial
 *     sums kept in y between chunks; bias (and the residual held in y when summing) start the first
 *     chunk, ReLU ends the last;
 *   - threads split the output channels, so each reads its share of the weights and no two write
 *     the same output; the only barrier follows the padding copy.
 * The positions of a layer are cut into blocks of 5-6 (49 = 4 x 6 + 5 x 5), so little of the register
 * kernel is wasted on 7x7 and 14x14 maps. Summation order: bias (+ residual), then the input channels
 * in order, the taps of each channel block in row-major order. OpenMP when compiled with it. */
#include "ops/cpu/direct_avx2.h"

#include <immintrin.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/hugepage.h"
#include "multigrain/cpu.h"
#include "ops/cpu/wino_avx2.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#define KB 16            /* output channels per register block (blk 8) */
/* positions per register block at most, both widths; on blk 16: 6 x 4 accumulators, the broadcast and
 * 4 rows of weights in 29 of the 32 registers (with 7 positions the accumulators spilled) */
#define PB 6
#define CHUNK_BYTES (192u << 10) /* input bytes per reduction chunk */

/* A register kernel: one block of positions x ko output channels over a chunk of the reduction
 * (block_np below has the arguments). */
typedef void (*block_fn)(const float *, const int *, const int *, int, int, size_t, const float *, float *,
                         const int *, size_t, const float *, int, int, int, int, const float *, int);

typedef struct dconv_weights {
    int refs;
    float *u;    /* [k / ko][c / blk][r * r][blk][ko] */
    size_t u_bytes;
    float *bias; /* [k] */
} dconv_weights;

struct mg_dconv {
    int n, c, k, h, w, r, stride, pad, p, q;
    int hp, wp;   /* the input plane the kernel reads: h + 2 pad by w + 2 pad */
    int npos;     /* n * p * q */
    int nblk;     /* register blocks of positions; block b is positions pos[b] .. pos[b + 1] - 1 */
    int *pos;
    int *xo, *yo; /* per position: offset of its window's origin in the input, of its output in y */
    int ntap;
    int tap[9];   /* offset of each tap from the window's origin */
    int cbc;      /* input channel blocks per reduction chunk */
    int blk;      /* channels per block of the activations: 8 (nChw8c, AVX2 kernels) or 16 (nChw16c, AVX-512) */
    int ko;       /* output channels per register block: KB (blk 8), or 16 NB (blk 16: 64, 32 or 16) */
    const block_fn *kernel; /* register kernel for blocks of np positions: kernel[np] (kernel_row) */
    dconv_weights *ww;
};

static const block_fn *kernel_row(int blk, int ko);

/* The channel and CPU checks: blocks of 8 as the Winograd kernel's (c a multiple of 8, k of 16, AVX2
 * and FMA), blocks of 16 with c and k multiples of 16 and AVX-512F. */
bool mg_dconv_fits_block(int block, int n, int c, int k, int h, int w, int r, int stride, int pad) {
    const bool chans = block == 8 ? mg_wino4_shape_ok(c, k) && mg_wino4_cpu_ok()
                       : block == 16 ? c % 16 == 0 && k % 16 == 0 && mg_cpu_fma_width_ok(16)
                                     : false;
    return n >= 1 && c >= block && k >= KB && chans && (r == 1 || r == 3) && (stride == 1 || stride == 2) &&
           pad >= 0 && pad < r && h + 2 * pad >= r && w + 2 * pad >= r;
}

bool mg_dconv_fits(int n, int c, int k, int h, int w, int r, int stride, int pad) {
    return mg_dconv_fits_block(8, n, c, k, h, w, r, stride, pad);
}

bool mg_dconv_preferred_block(int block, int n, int c, int k, int h, int w, int r, int stride, int pad) {
    const char *e = getenv("MG_FNET_OWN_DIRECT");
    if ((e && e[0] == '0') || !mg_dconv_fits_block(block, n, c, k, h, w, r, stride, pad)) return false;
    long p = (h + 2 * pad - r) / stride + 1, q = (w + 2 * pad - r) / stride + 1;
    if (block == 16 && r == 1 && !(e && e[0] == '3')) /* MG_FNET_OWN_DIRECT=3: the 3x3 layers only */
        return n * p * q >= MG_DCONV_MIN_1X1_POSITIONS && n * p * q <= MG_DCONV_MAX_BATCH_POSITIONS &&
               (stride == 1 || p * q <= MG_DCONV_MAX_POSITIONS);
    return r == 3 && stride == 2 && (p * q <= MG_DCONV_MAX_POSITIONS || n * p * q <= MG_DCONV_MAX_BATCH_POSITIONS);
}

bool mg_dconv_preferred(int n, int c, int k, int h, int w, int r, int stride, int pad) {
    return mg_dconv_preferred_block(8, n, c, k, h, w, r, stride, pad);
}

bool mg_dconv_matches(const mg_dconv *p, int c, int k, int r, int stride, int pad) {
    return p->c == c && p->k == k && p->r == r && p->stride == stride && p->pad == pad;
}

int mg_dconv_block(const mg_dconv *p) { return p ? p->blk : 0; }

size_t mg_dconv_weight_bytes(const mg_dconv *p) {
    return ((size_t)p->k * p->c * p->ntap + (size_t)p->k) * sizeof(float);
}

size_t mg_dconv_scratch_bytes(const mg_dconv *p) {
    return p->pad ? (size_t)p->n * p->c * p->hp * p->wp * sizeof(float) : 0;
}

static void *aligned_alloc64(size_t bytes) {
    void *m = NULL;
    return posix_memalign(&m, 64, bytes ? bytes : 64) == 0 ? m : NULL;
}

static void weights_release(dconv_weights *ww) {
    if (ww && --ww->refs == 0) {
        mg_hugepage_free(ww->u, ww->u_bytes);
        free(ww->bias);
        free(ww);
    }
}

void mg_dconv_free(mg_dconv *p) {
    if (!p) return;
    weights_release(p->ww);
    free(p->pos);
    free(p->xo);
    free(p->yo);
    free(p);
}

/* The geometry of a plan (everything but the weights) on activations in channel blocks of `block`. */
static mg_status plan_geometry(mg_dconv **out, int block, int n, int c, int k, int h, int w, int r, int stride,
                               int pad) {
    *out = NULL;
    if (!mg_dconv_fits_block(block, n, c, k, h, w, r, stride, pad))
        return MG_FAIL(MG_ERR_INVALID_ARG,
                       "direct convolution: n=%d c=%d k=%d %dx%d r=%d stride=%d pad=%d block %d: expected c and k "
                       "multiples of the block (k of 16), r 1 or 3, stride 1 or 2, pad < r, on a CPU with AVX2 and "
                       "FMA (block 8) or AVX-512F (block 16)",
                       n, c, k, h, w, r, stride, pad, block);
    mg_dconv *p = calloc(1, sizeof *p);
    if (!p) return MG_FAIL(MG_ERR_NOMEM, "direct convolution: out of memory");
    *p = (mg_dconv){.n = n, .c = c, .k = k, .h = h, .w = w, .r = r, .stride = stride, .pad = pad, .blk = block};
    p->ko = block == 8 ? KB : k % 64 == 0 ? 64 : k % 32 == 0 ? 32 : 16;
    p->kernel = kernel_row(block, p->ko);
    p->p = (h + 2 * pad - r) / stride + 1;
    p->q = (w + 2 * pad - r) / stride + 1;
    p->hp = h + 2 * pad;
    p->wp = w + 2 * pad;
    p->npos = n * p->p * p->q;
    p->ntap = r * r;
    for (int i = 0; i < r; i++)
        for (int j = 0; j < r; j++) p->tap[i * r + j] = (i * p->wp + j) * block;
    const size_t plane = (size_t)p->hp * p->wp * block, cb = (size_t)c / block;
    if ((size_t)n * cb * plane > INT32_MAX || (size_t)n * k * p->p * p->q > INT32_MAX) {
        mg_dconv_free(p);
        return MG_FAIL(MG_ERR_INVALID_ARG, "direct convolution: %dx%dx%dx%d is too large", n, c, h, w);
    }
    /* input channel blocks per reduction chunk: the chunk's input in CHUNK_BYTES (at least one block) */
    int cbc = (int)(CHUNK_BYTES / ((size_t)n * plane * sizeof(float)));
    if (cbc < 1) cbc = 1;
    if (cbc > (int)cb) cbc = (int)cb;
    p->cbc = cbc;
    /* register blocks: as few as PB allows, of even size (49 positions: 4 of 6 and 5 of 5 with pb 6) */
    p->nblk = (p->npos + PB - 1) / PB;
    p->pos = malloc(((size_t)p->nblk + 1) * sizeof *p->pos);
    p->xo = malloc((size_t)p->npos * sizeof *p->xo);
    p->yo = malloc((size_t)p->npos * sizeof *p->yo);
    if (!p->pos || !p->xo || !p->yo) {
        mg_dconv_free(p);
        return MG_FAIL(MG_ERR_NOMEM, "direct convolution: out of memory");
    }
    for (int b = 0; b <= p->nblk; b++) p->pos[b] = (int)((long)p->npos * b / p->nblk);
    const size_t pq = (size_t)p->p * p->q;
    for (int i = 0; i < p->npos; i++) {
        int img = i / (int)pq, rem = i % (int)pq, oh = rem / p->q, ow = rem % p->q;
        p->xo[i] = (int)((size_t)img * cb * plane + ((size_t)oh * stride * p->wp + (size_t)ow * stride) * block);
        p->yo[i] = (int)((size_t)img * (k / block) * pq * block + (size_t)rem * block);
    }
    *out = p;
    return MG_OK;
}

mg_status mg_dconv_init_block(mg_dconv **out, int block, int n, int c, int k, int h, int w, int r, int stride,
                              int pad, const float *weights, const float *bias) {
    *out = NULL;
    if (!weights) return MG_FAIL(MG_ERR_INVALID_ARG, "direct convolution: null weights");
    mg_dconv *p;
    MG_TRY(plan_geometry(&p, block, n, c, k, h, w, r, stride, pad));
    dconv_weights *ww = calloc(1, sizeof *ww);
    if (ww) {
        ww->refs = 1;
        ww->u_bytes = (size_t)k * c * p->ntap * sizeof(float);
        ww->u = mg_hugepage_alloc(ww->u_bytes); /* packed once, read at every run */
        ww->bias = aligned_alloc64((size_t)k * sizeof(float));
    }
    p->ww = ww;
    if (!ww || !ww->u || !ww->bias) {
        mg_dconv_free(p);
        return MG_FAIL(MG_ERR_NOMEM, "direct convolution: out of memory for %d x %d x %d x %d weights", k, c, r, r);
    }
    /* [k / ko][c / blk][tap][blk][ko]: the order the reduction reads them */
    const int nt = p->ntap, ko = p->ko;
    float *u = ww->u;
    for (int kb = 0; kb < k / ko; kb++)
        for (int cb = 0; cb < c / block; cb++)
            for (int t = 0; t < nt; t++)
                for (int ci = 0; ci < block; ci++)
                    for (int j = 0; j < ko; j++)
                        *u++ = weights[((size_t)(kb * ko + j) * c + (size_t)cb * block + ci) * nt + t];
    if (bias)
        memcpy(ww->bias, bias, (size_t)k * sizeof(float));
    else
        memset(ww->bias, 0, (size_t)k * sizeof(float));
    *out = p;
    return MG_OK;
}

mg_status mg_dconv_init(mg_dconv **out, int n, int c, int k, int h, int w, int r, int stride, int pad,
                        const float *weights, const float *bias) {
    return mg_dconv_init_block(out, 8, n, c, k, h, w, r, stride, pad, weights, bias);
}

mg_status mg_dconv_init_like(mg_dconv **out, const mg_dconv *d, int n, int h, int w) {
    *out = NULL;
    if (!d) return MG_FAIL(MG_ERR_INVALID_ARG, "direct convolution: null donor plan");
    mg_dconv *p;
    MG_TRY(plan_geometry(&p, d->blk, n, d->c, d->k, h, w, d->r, d->stride, d->pad));
    p->ww = d->ww;
    p->ww->refs++;
    *out = p;
    return MG_OK;
}

#define TGT __attribute__((target("avx2,fma")))
#define TGT512 __attribute__((target("avx512f,fma")))
#define INLINE inline __attribute__((always_inline))

/* One register block of NP positions (1 <= NP <= PB) x 16 output channels over ncb channel blocks of
 * the reduction (blk 8). x: the input at the chunk's first channel block; xo: the positions' window
 * offsets; u: the block's packed weights at the chunk; y: the output at the first of the two 8-channel
 * blocks (ys floats to the second); first: start from the bias (plus y when sum), else from y; last:
 * ReLU when relu. pf: rows of weights (a line each) to prefetch, one every pf_every rows of u read
 * (NULL: none). */
static INLINE TGT void block_np(const int NP, const float *x, const int *xo, const int *tap, int ntap, int ncb,
                                size_t cbs, const float *u, float *y, const int *yo, size_t ys, const float *bias,
                                int first, int last, int sum, int relu, const float *pf, int pf_every) {
    __m256 a[PB][2];
    const float *xp[PB];
#pragma GCC unroll 6
    for (int i = 0; i < NP; i++) {
        float *yi = y + yo[i];
        if (first) {
            a[i][0] = _mm256_loadu_ps(bias);
            a[i][1] = _mm256_loadu_ps(bias + 8);
            if (sum) {
                a[i][0] = _mm256_add_ps(a[i][0], _mm256_loadu_ps(yi));
                a[i][1] = _mm256_add_ps(a[i][1], _mm256_loadu_ps(yi + ys));
            }
        } else {
            a[i][0] = _mm256_loadu_ps(yi);
            a[i][1] = _mm256_loadu_ps(yi + ys);
        }
        xp[i] = x + xo[i];
    }
    int pf_due = 0;
    for (int cb = 0; cb < ncb; cb++) {
        for (int t = 0; t < ntap; t++) {
            const size_t off = (size_t)cb * cbs + (size_t)tap[t];
            if (pf)
                for (pf_due += 8; pf_due >= pf_every; pf_due -= pf_every, pf += KB)
                    _mm_prefetch((const char *)pf, _MM_HINT_T0);
#pragma GCC unroll 8
            for (int ci = 0; ci < 8; ci++) {
                const __m256 b0 = _mm256_load_ps(u), b1 = _mm256_load_ps(u + 8);
                u += KB;
#pragma GCC unroll 6
                for (int i = 0; i < NP; i++) {
                    const __m256 v = _mm256_broadcast_ss(xp[i] + off + ci);
                    a[i][0] = _mm256_fmadd_ps(v, b0, a[i][0]);
                    a[i][1] = _mm256_fmadd_ps(v, b1, a[i][1]);
                }
            }
        }
    }
    const __m256 zero = _mm256_setzero_ps();
#pragma GCC unroll 6
    for (int i = 0; i < NP; i++) {
        if (last && relu) {
            a[i][0] = _mm256_max_ps(a[i][0], zero);
            a[i][1] = _mm256_max_ps(a[i][1], zero);
        }
        _mm256_storeu_ps(y + yo[i], a[i][0]);
        _mm256_storeu_ps(y + yo[i] + ys, a[i][1]);
    }
}

/* The same on nChw16c (blk 16) with AVX-512F: NP positions (1 <= NP <= PB) x NB blocks of 16 output
 * channels (NB 1, 2 or 4; ys floats apart in y), 16 input channels per channel block, each row of u
 * NB 16 floats (NB lines: a prefetch of a row is NB lines). With NB 4 and NP 6: 24 accumulators, 24
 * FMAs per 4 loads of weights and 6 broadcasts. */
static INLINE TGT512 void block16_np(const int NP, const int NB, const float *x, const int *xo, const int *tap,
                                     int ntap, int ncb, size_t cbs, const float *u, float *y, const int *yo,
                                     size_t ys, const float *bias, int first, int last, int sum, int relu,
                                     const float *pf, int pf_every) {
    __m512 a[PB][4];
    const float *xp[PB];
#pragma GCC unroll 6
    for (int i = 0; i < NP; i++) {
        float *yi = y + yo[i];
#pragma GCC unroll 4
        for (int j = 0; j < NB; j++) {
            if (first) {
                a[i][j] = _mm512_loadu_ps(bias + 16 * j);
                if (sum) a[i][j] = _mm512_add_ps(a[i][j], _mm512_loadu_ps(yi + j * ys));
            } else {
                a[i][j] = _mm512_loadu_ps(yi + j * ys);
            }
        }
        xp[i] = x + xo[i];
    }
    int pf_due = 0;
    for (int cb = 0; cb < ncb; cb++) {
        for (int t = 0; t < ntap; t++) {
            const size_t off = (size_t)cb * cbs + (size_t)tap[t];
            if (pf)
                for (pf_due += 16; pf_due >= pf_every; pf_due -= pf_every, pf += 16 * NB)
#pragma GCC unroll 4
                    for (int j = 0; j < NB; j++) _mm_prefetch((const char *)(pf + 16 * j), _MM_HINT_T0);
#pragma GCC unroll 16
            for (int ci = 0; ci < 16; ci++) {
                __m512 b[4];
#pragma GCC unroll 4
                for (int j = 0; j < NB; j++) b[j] = _mm512_load_ps(u + 16 * j);
                u += 16 * NB;
#pragma GCC unroll 6
                for (int i = 0; i < NP; i++) {
                    const __m512 v = _mm512_set1_ps(xp[i][off + ci]);
#pragma GCC unroll 4
                    for (int j = 0; j < NB; j++) a[i][j] = _mm512_fmadd_ps(v, b[j], a[i][j]);
                }
            }
        }
    }
    const __m512 zero = _mm512_setzero_ps();
#pragma GCC unroll 6
    for (int i = 0; i < NP; i++)
#pragma GCC unroll 4
        for (int j = 0; j < NB; j++) {
            if (last && relu) a[i][j] = _mm512_max_ps(a[i][j], zero);
            _mm512_storeu_ps(y + yo[i] + j * ys, a[i][j]);
        }
}

#define BLOCK_FN(NP)                                                                                             \
    TGT static void block_##NP(const float *x, const int *xo, const int *tap, int ntap, int ncb, size_t cbs,    \
                               const float *u, float *y, const int *yo, size_t ys, const float *bias, int first, \
                               int last, int sum, int relu, const float *pf, int pf_every) {                    \
        block_np(NP, x, xo, tap, ntap, ncb, cbs, u, y, yo, ys, bias, first, last, sum, relu, pf, pf_every);     \
    }
BLOCK_FN(1)
BLOCK_FN(2)
BLOCK_FN(3)
BLOCK_FN(4)
BLOCK_FN(5)
BLOCK_FN(6)
#undef BLOCK_FN
static const block_fn blocks[PB + 1] = {NULL, block_1, block_2, block_3, block_4, block_5, block_6};

#define BLOCK16_FN(NP, NB)                                                                                     \
    TGT512 static void block16_##NP##_##NB(const float *x, const int *xo, const int *tap, int ntap, int ncb,     \
                                           size_t cbs, const float *u, float *y, const int *yo, size_t ys,     \
                                           const float *bias, int first, int last, int sum, int relu,          \
                                           const float *pf, int pf_every) {                                     \
        block16_np(NP, NB, x, xo, tap, ntap, ncb, cbs, u, y, yo, ys, bias, first, last, sum, relu, pf, pf_every); \
    }
#define BLOCK16_NB(NB)                                                                                         \
    BLOCK16_FN(1, NB) BLOCK16_FN(2, NB) BLOCK16_FN(3, NB) BLOCK16_FN(4, NB) BLOCK16_FN(5, NB) BLOCK16_FN(6, NB)
BLOCK16_NB(1)
BLOCK16_NB(2)
BLOCK16_NB(4)
#undef BLOCK16_NB
#undef BLOCK16_FN
#define BLOCK16_ROW(NB)                                                                                        \
    {NULL, block16_1_##NB, block16_2_##NB, block16_3_##NB, block16_4_##NB, block16_5_##NB, block16_6_##NB}
/* [NB 1, 2, 4 as 0, 1, 2][NP] */
static const block_fn blocks16[3][PB + 1] = {BLOCK16_ROW(1), BLOCK16_ROW(2), BLOCK16_ROW(4)};
#undef BLOCK16_ROW

/* The register kernels of plans on blocks of blk channels with ko output channels per block. */
static const block_fn *kernel_row(int blk, int ko) {
    return blk == 8 ? blocks : blocks16[ko == 16 ? 0 : ko == 32 ? 1 : 2];
}

/* The zero-padded copy of planes [a, b) of the n * c / blk input planes. */
static void pad_planes(const mg_dconv *p, const float *x, float *xp, int a, int b) {
    const int pad = p->pad, W = p->w, Wp = p->wp, B = p->blk;
    const size_t in_plane = (size_t)p->h * W * B, plane = (size_t)p->hp * Wp * B;
    for (int pl = a; pl < b; pl++) {
        const float *src = x + (size_t)pl * in_plane;
        float *dst = xp + (size_t)pl * plane;
        memset(dst, 0, (size_t)pad * Wp * B * sizeof(float));
        for (int i = 0; i < p->h; i++) {
            float *row = dst + ((size_t)(i + pad) * Wp) * B;
            memset(row, 0, (size_t)pad * B * sizeof(float));
            memcpy(row + (size_t)pad * B, src + (size_t)i * W * B, (size_t)W * B * sizeof(float));
            memset(row + (size_t)(pad + W) * B, 0, (size_t)pad * B * sizeof(float));
        }
        memset(dst + (size_t)(pad + p->h) * Wp * B, 0, (size_t)pad * Wp * B * sizeof(float));
    }
}

/* Output channel blocks (of ko) [kb0, kb1) over the whole reduction, chunk by chunk. The register
 * blocks of one output block and chunk read its weights from memory once, the first block from memory
 * and the others from L1 or L2; so that the stream does not wait in the first and idle in the others,
 * every block also prefetches its share of the next output block's (or chunk's) weights, a row at a
 * time, spread over its reads. */
static void run_range(const mg_dconv *p, const float *x, float *y, int sum, int relu, int kb0, int kb1) {
    const int B = p->blk, ko = p->ko, CB = p->c / B, nt = p->ntap, nblk = p->nblk;
    const size_t cbs = (size_t)p->hp * p->wp * B, ys = (size_t)p->p * p->q * B;
    const size_t ukb = (size_t)CB * nt * B * ko; /* floats of one output block's weights */
    for (int c0 = 0; c0 < CB; c0 += p->cbc) {
        const int ncb = CB - c0 < p->cbc ? CB - c0 : p->cbc, first = c0 == 0, last = c0 + ncb == CB;
        const float *xc = x + (size_t)c0 * cbs;
        for (int kb = kb0; kb < kb1; kb++) {
            const float *u = p->ww->u + (size_t)kb * ukb + (size_t)c0 * nt * B * ko;
            float *yk = y + (size_t)kb * (ko / B) * ys;
            const float *bias = p->ww->bias + (size_t)kb * ko;
            /* the weights read next: the next output block's at this chunk, else the next chunk's first */
            const int c1 = c0 + ncb, last_kb = kb + 1 == kb1;
            const float *next = !last_kb ? u + ukb
                                : c1 < CB ? p->ww->u + (size_t)kb0 * ukb + (size_t)c1 * nt * B * ko
                                          : NULL;
            const int rows = (!last_kb ? ncb : CB - c1 < p->cbc ? CB - c1 : p->cbc) * nt * B;
            const int share = (rows + nblk - 1) / nblk; /* 0 only when there is nothing to prefetch */
            const int every = share ? (ncb * nt * B + share - 1) / share : 1;
            for (int b = 0; b < nblk; b++) {
                const int i0 = p->pos[b], np = p->pos[b + 1] - i0;
                const float *pf = next && b * share < rows ? next + (size_t)b * share * ko : NULL;
                p->kernel[np](xc, p->xo + i0, p->tap, nt, ncb, cbs, u, yk, p->yo + i0, ys, bias, first, last, sum,
                              relu, pf, every);
            }
        }
    }
}

void mg_dconv_forward(const mg_dconv *p, const float *x, float *y, int sum, int relu, void *scratch, int threads) {
    const int nthr = threads > 1 ? threads : 1, nkb = p->k / p->ko, planes = p->n * (p->c / p->blk);
    const float *xin = p->pad ? (const float *)scratch : x;
    MG_ASSERT(!p->pad || scratch);
#ifdef _OPENMP
#pragma omp parallel num_threads(nthr) if (nthr > 1)
    {
        const int T = omp_get_num_threads(), t = omp_get_thread_num();
        if (p->pad) {
            pad_planes(p, x, scratch, (int)((long)planes * t / T), (int)((long)planes * (t + 1) / T));
#pragma omp barrier
        }
        run_range(p, xin, y, sum, relu, (int)((long)nkb * t / T), (int)((long)nkb * (t + 1) / T));
    }
#else
    (void)nthr;
    if (p->pad) pad_planes(p, x, scratch, 0, planes);
    run_range(p, xin, y, sum, relu, 0, nkb);
#endif
}
