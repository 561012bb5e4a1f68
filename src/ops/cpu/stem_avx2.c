/* stem_avx2.c: a network's first convolution (few input channels, plain NCHW images) into blocked
 * activations with AVX2+FMA (nChw8c) or AVX-512F (nChw16c), bias and ReLU, and optionally the max
 * pooling after it in the same pass (stem_avx2.h):
 *   - each thread copies the input rows its output rows read, as it reaches them, into a ring of r
 *     zero-padded rows per channel (its scratch: 19 KB for ResNet's stem), so that every window reads
 *     inside them; a padding row reads a row of zeros. A copy of the whole padded image (635 KB) made
 *     the next layer, which reads the pooled output, 0.2-0.3 ms slower: it pushed that output out of L2;
 *   - a register kernel computes up to 6 neighbouring positions of an output row x ko output channels
 *     (24 accumulators of 16 floats with ko 64 on nChw16c; 12 of 8 with ko 16 on nChw8c), broadcasting
 *     each position's input value and reading one row of packed weights ([k/ko][c][r][r][ko], 37 KB
 *     for ResNet's 3 -> 64 7x7 stem) per tap;
 *   - with pooling, each thread computes the convolution rows its pooled rows need into a ring of r
 *     rows (its scratch; 86 KB for ResNet's stem), which stay in L1/L2 while the pooled row is made
 *     from them (per channel block the column maxima over the window's rows, then the maximum over
 *     each window's columns), so the 3.2 MB convolution output is never written out;
 *   - threads split each image's output rows (pooled rows when pooling) into contiguous ranges; a
 *     thread whose first pooled window reaches back into the previous thread's rows computes that
 *     convolution row again (1 of 56 rows per thread for ResNet's stem).
 * Summation order: bias, then the input channels, kernel rows and columns in order. */
#include "ops/cpu/stem_avx2.h"

#include <immintrin.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/hugepage.h"
#include "multigrain/cpu.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#define PB 6 /* positions per register block at most */

/* A register kernel: NP positions of one output row x ko output channels (stem_np below has the
 * arguments). */
typedef void (*stem_fn)(const float *const *, int, int, int, int, const float *, const float *, float *, size_t, int);

typedef struct stem_weights {
    int refs;
    float *u;    /* [k / ko][c][r][r][ko] */
    float *bias; /* [k] */
    size_t u_bytes, bias_bytes; /* for mg_hugepage_free */
} stem_weights;

struct mg_stem {
    int c, k, h, w, r, stride, pad, p, q; /* the convolution: p x q output per image */
    int wp;                               /* a zero-padded input row: w + 2 pad */
    int blk, ko, relu;
    int pool, pr, ps, ppad, pp, pq;       /* pooling: window, stride, padding; pp x pq pooled output */
    int nblk;                             /* register blocks of a row: positions pos[b] .. pos[b + 1] - 1 */
    int *pos;
    const stem_fn *kernel;                /* kernel[np] */
    stem_weights *ww;
};

static const stem_fn *kernel_row(int blk, int ko);

bool mg_stem_fits(int block, int c, int k, int h, int w, int r, int stride, int pad) {
    const bool cpu = block == 8 ? mg_cpu_fma_width_ok(8) : block == 16 ? mg_cpu_fma_width_ok(16) : false;
    return cpu && c >= 1 && c <= MG_STEM_MAX_C && k >= 16 && k % 16 == 0 && r >= 1 && r <= MG_STEM_MAX_R &&
           stride >= 1 && pad >= 0 && pad < r && h + 2 * pad >= r && w + 2 * pad >= r &&
           (size_t)c * (h + 2 * pad) * (w + 2 * pad) < INT32_MAX && (size_t)k * h * w < INT32_MAX;
}

bool mg_stem_pool_fits(const mg_stem *p, int r, int stride, int pad) {
    return p && r >= 1 && stride >= 1 && pad >= 0 && 2 * pad <= r && p->p + 2 * pad >= r && p->q + 2 * pad >= r;
}

bool mg_stem_matches(const mg_stem *p, int c, int k, int r, int stride, int pad) {
    return p && p->c == c && p->k == k && p->r == r && p->stride == stride && p->pad == pad;
}

int mg_stem_block(const mg_stem *p) { return p->blk; }

void mg_stem_out_dims(const mg_stem *p, int *h, int *w, int *conv_h, int *conv_w) {
    if (h) *h = p->pool ? p->pp : p->p;
    if (w) *w = p->pool ? p->pq : p->q;
    if (conv_h) *conv_h = p->p;
    if (conv_w) *conv_w = p->q;
}

size_t mg_stem_weight_bytes(const mg_stem *p) {
    return ((size_t)p->k * p->c * p->r * p->r + (size_t)p->k) * sizeof(float);
}

/* floats rounded up to whole 64-byte lines */
static size_t lines(size_t floats) { return (floats + 15) / 16 * 16; }

/* a thread's scratch: its ring of r padded input rows per channel and a row of zeros (wp floats each),
 * and when pooling its ring of pr convolution rows ([k / blk][q][blk] each) and its row of column
 * maxima */
static size_t in_floats(const mg_stem *p) { return ((size_t)p->c * p->r + 1) * lines((size_t)p->wp); }
static size_t thread_floats(const mg_stem *p) {
    return in_floats(p) + (p->pool ? lines((size_t)p->pr * p->k * p->q) + lines((size_t)p->q * p->blk) : 0);
}

size_t mg_stem_scratch_bytes(const mg_stem *p, int threads) {
    const int t = threads > 1 ? threads : 1;
    return (size_t)t * thread_floats(p) * sizeof(float);
}

static void weights_release(stem_weights *ww) {
    if (ww && --ww->refs == 0) {
        mg_hugepage_free(ww->u, ww->u_bytes);
        mg_hugepage_free(ww->bias, ww->bias_bytes);
        free(ww);
    }
}

void mg_stem_free(mg_stem *p) {
    if (!p) return;
    weights_release(p->ww);
    free(p->pos);
    free(p);
}

/* Everything but the weights. */
static mg_status plan_geometry(mg_stem **out, int block, int c, int k, int h, int w, int r, int stride, int pad,
                               int relu) {
    *out = NULL;
    if (!mg_stem_fits(block, c, k, h, w, r, stride, pad))
        return MG_FAIL(MG_ERR_INVALID_ARG,
                       "stem convolution: c=%d k=%d %dx%d r=%d stride=%d pad=%d block %d: expected 1 to %d input "
                       "channels, k a multiple of 16, r at most %d, pad < r, the kernel fitting the padded input, "
                       "on a CPU with AVX2 and FMA (block 8) or AVX-512F (block 16)",
                       c, k, h, w, r, stride, pad, block, MG_STEM_MAX_C, MG_STEM_MAX_R);
    mg_stem *p = calloc(1, sizeof *p);
    if (!p) return MG_FAIL(MG_ERR_NOMEM, "stem convolution: out of memory");
    *p = (mg_stem){.c = c, .k = k, .h = h, .w = w, .r = r, .stride = stride, .pad = pad, .blk = block, .relu = relu};
    p->ko = block == 8 ? 16 : k % 64 == 0 ? 64 : k % 32 == 0 ? 32 : 16;
    p->kernel = kernel_row(block, p->ko);
    p->p = (h + 2 * pad - r) / stride + 1;
    p->q = (w + 2 * pad - r) / stride + 1;
    p->wp = w + 2 * pad;
    p->nblk = (p->q + PB - 1) / PB; /* blocks of even size: 112 positions are 17 of 6 and 2 of 5 */
    p->pos = malloc(((size_t)p->nblk + 1) * sizeof *p->pos);
    if (!p->pos) {
        mg_stem_free(p);
        return MG_FAIL(MG_ERR_NOMEM, "stem convolution: out of memory");
    }
    for (int b = 0; b <= p->nblk; b++) p->pos[b] = (int)((long)p->q * b / p->nblk);
    *out = p;
    return MG_OK;
}

mg_status mg_stem_init(mg_stem **out, int block, int c, int k, int h, int w, int r, int stride, int pad,
                       const float *weights, const float *bias, int relu) {
    *out = NULL;
    if (!weights) return MG_FAIL(MG_ERR_INVALID_ARG, "stem convolution: null weights");
    mg_stem *p;
    MG_TRY(plan_geometry(&p, block, c, k, h, w, r, stride, pad, relu));
    stem_weights *ww = calloc(1, sizeof *ww);
    if (ww) {
        ww->refs = 1;
        ww->u_bytes = (size_t)k * c * r * r * sizeof(float);
        ww->bias_bytes = (size_t)k * sizeof(float);
        ww->u = mg_hugepage_alloc(ww->u_bytes); /* 64-byte aligned, as the kernels' loads want */
        ww->bias = mg_hugepage_alloc(ww->bias_bytes);
    }
    p->ww = ww;
    if (!ww || !ww->u || !ww->bias) {
        mg_stem_free(p);
        return MG_FAIL(MG_ERR_NOMEM, "stem convolution: out of memory for %d x %d x %d x %d weights", k, c, r, r);
    }
    const int ko = p->ko, taps = c * r * r; /* a tap: (input channel, kernel row, kernel column) */
    float *u = ww->u;
    for (int kb = 0; kb < k / ko; kb++)
        for (int t = 0; t < taps; t++)
            for (int j = 0; j < ko; j++) *u++ = weights[(size_t)(kb * ko + j) * taps + t];
    if (bias)
        memcpy(ww->bias, bias, (size_t)k * sizeof(float));
    else
        memset(ww->bias, 0, (size_t)k * sizeof(float));
    *out = p;
    return MG_OK;
}

mg_status mg_stem_init_like(mg_stem **out, const mg_stem *d, int h, int w) {
    *out = NULL;
    if (!d) return MG_FAIL(MG_ERR_INVALID_ARG, "stem convolution: null donor plan");
    mg_stem *p;
    MG_TRY(plan_geometry(&p, d->blk, d->c, d->k, h, w, d->r, d->stride, d->pad, d->relu));
    p->ww = d->ww;
    p->ww->refs++;
    *out = p;
    return MG_OK;
}

mg_status mg_stem_set_pool(mg_stem *p, int r, int stride, int pad) {
    if (!mg_stem_pool_fits(p, r, stride, pad))
        return MG_FAIL(MG_ERR_INVALID_ARG,
                       "stem convolution: max pooling r=%d stride=%d pad=%d on a %dx%d map: expected r, stride >= 1, "
                       "0 <= 2 pad <= r and the window fitting the padded map",
                       r, stride, pad, p ? p->p : 0, p ? p->q : 0);
    p->pool = 1, p->pr = r, p->ps = stride, p->ppad = pad;
    p->pp = (p->p + 2 * pad - r) / stride + 1;
    p->pq = (p->q + 2 * pad - r) / stride + 1;
    return MG_OK;
}

#define TGT __attribute__((target("avx2,fma")))
#define TGT512 __attribute__((target("avx512f,fma")))
#define INLINE inline __attribute__((always_inline))

/* NP positions (1 <= NP <= PB) of an output row x 16 output channels (two 8-channel blocks, ys floats
 * apart in y). rows: the padded input rows of the window, per channel its r rows (c r pointers); x0:
 * the first position's window origin in them; s: the stride along the row; u: the block's packed
 * weights; y: the first position's output (positions 8 floats apart). */
static INLINE TGT void stem_np(const int NP, const float *const *rows, int x0, int c, int r, int s, const float *u,
                               const float *bias, float *y, size_t ys, int relu) {
    __m256 a[PB][2];
#pragma GCC unroll 6
    for (int i = 0; i < NP; i++) a[i][0] = _mm256_loadu_ps(bias), a[i][1] = _mm256_loadu_ps(bias + 8);
    for (int ci = 0; ci < c; ci++)
        for (int kh = 0; kh < r; kh++) {
            const float *row = rows[ci * r + kh] + x0;
            for (int kw = 0; kw < r; kw++) {
                const __m256 b0 = _mm256_load_ps(u), b1 = _mm256_load_ps(u + 8);
                u += 16;
#pragma GCC unroll 6
                for (int i = 0; i < NP; i++) {
                    const __m256 v = _mm256_broadcast_ss(row + i * s + kw);
                    a[i][0] = _mm256_fmadd_ps(v, b0, a[i][0]);
                    a[i][1] = _mm256_fmadd_ps(v, b1, a[i][1]);
                }
            }
        }
    const __m256 zero = _mm256_setzero_ps();
#pragma GCC unroll 6
    for (int i = 0; i < NP; i++) {
        if (relu) a[i][0] = _mm256_max_ps(a[i][0], zero), a[i][1] = _mm256_max_ps(a[i][1], zero);
        _mm256_storeu_ps(y + i * 8, a[i][0]);
        _mm256_storeu_ps(y + i * 8 + ys, a[i][1]);
    }
}

/* The same on nChw16c: NP positions x NB blocks of 16 output channels (NB 1, 2 or 4; ys floats apart
 * in y), positions 16 floats apart. With NP 6 and NB 4: 24 accumulators, 24 FMAs per 4 loads of
 * weights and 6 broadcasts. */
static INLINE TGT512 void stem16_np(const int NP, const int NB, const float *const *rows, int x0, int c, int r, int s,
                                    const float *u, const float *bias, float *y, size_t ys, int relu) {
    __m512 a[PB][4];
#pragma GCC unroll 6
    for (int i = 0; i < NP; i++)
#pragma GCC unroll 4
        for (int j = 0; j < NB; j++) a[i][j] = _mm512_loadu_ps(bias + 16 * j);
    for (int ci = 0; ci < c; ci++)
        for (int kh = 0; kh < r; kh++) {
            const float *row = rows[ci * r + kh] + x0;
            for (int kw = 0; kw < r; kw++) {
                __m512 b[4];
#pragma GCC unroll 4
                for (int j = 0; j < NB; j++) b[j] = _mm512_load_ps(u + 16 * j);
                u += 16 * NB;
#pragma GCC unroll 6
                for (int i = 0; i < NP; i++) {
                    const __m512 v = _mm512_set1_ps(row[i * s + kw]);
#pragma GCC unroll 4
                    for (int j = 0; j < NB; j++) a[i][j] = _mm512_fmadd_ps(v, b[j], a[i][j]);
                }
            }
        }
    const __m512 zero = _mm512_setzero_ps();
#pragma GCC unroll 6
    for (int i = 0; i < NP; i++)
#pragma GCC unroll 4
        for (int j = 0; j < NB; j++) {
            if (relu) a[i][j] = _mm512_max_ps(a[i][j], zero);
            _mm512_storeu_ps(y + i * 16 + j * ys, a[i][j]);
        }
}

#define STEM_FN(NP)                                                                                            \
    TGT static void stem_##NP(const float *const *rows, int x0, int c, int r, int s, const float *u,           \
                              const float *bias, float *y, size_t ys, int relu) {                              \
        stem_np(NP, rows, x0, c, r, s, u, bias, y, ys, relu);                                                  \
    }
STEM_FN(1)
STEM_FN(2)
STEM_FN(3)
STEM_FN(4)
STEM_FN(5)
STEM_FN(6)
#undef STEM_FN
static const stem_fn stems[PB + 1] = {NULL, stem_1, stem_2, stem_3, stem_4, stem_5, stem_6};

#define STEM16_FN(NP, NB)                                                                                      \
    TGT512 static void stem16_##NP##_##NB(const float *const *rows, int x0, int c, int r, int s, const float *u, \
                                          const float *bias, float *y, size_t ys, int relu) {                  \
        stem16_np(NP, NB, rows, x0, c, r, s, u, bias, y, ys, relu);                                            \
    }
#define STEM16_NB(NB)                                                                                          \
    STEM16_FN(1, NB) STEM16_FN(2, NB) STEM16_FN(3, NB) STEM16_FN(4, NB) STEM16_FN(5, NB) STEM16_FN(6, NB)
STEM16_NB(1)
STEM16_NB(2)
STEM16_NB(4)
#undef STEM16_NB
#undef STEM16_FN
#define STEM16_ROW(NB) {NULL, stem16_1_##NB, stem16_2_##NB, stem16_3_##NB, stem16_4_##NB, stem16_5_##NB, stem16_6_##NB}
/* [NB 1, 2, 4 as 0, 1, 2][NP] */
static const stem_fn stems16[3][PB + 1] = {STEM16_ROW(1), STEM16_ROW(2), STEM16_ROW(4)};
#undef STEM16_ROW

static const stem_fn *kernel_row(int blk, int ko) {
    return blk == 8 ? stems : stems16[ko == 16 ? 0 : ko == 32 ? 1 : 2];
}

/* A thread's ring of padded input rows: row iy of the image (channel ci) in slot iy % r of channel ci,
 * held[slot] the row it holds (-1: none yet; the same for every channel). */
typedef struct in_ring {
    float *rows; /* [c][r][lines(wp)] */
    float *zero; /* a padded row of zeros */
    int held[MG_STEM_MAX_R];
} in_ring;

/* Convolution row oh of image x (plain c x h x w) into y (its first position, channel block 0; ys
 * floats between channel blocks, positions blk floats apart), the input rows it reads copied into the
 * ring when not there yet. */
static void conv_row(const mg_stem *p, const float *x, in_ring *ring, int oh, float *y, size_t ys) {
    const int ko = p->ko, c = p->c, r = p->r, taps = c * r * r, pad = p->pad;
    const size_t rw = lines((size_t)p->wp);
    const float *rows[MG_STEM_MAX_C * MG_STEM_MAX_R];
    for (int kh = 0; kh < r; kh++) {
        const int iy = oh * p->stride - pad + kh;
        if (iy < 0 || iy >= p->h) {
            for (int ci = 0; ci < c; ci++) rows[ci * r + kh] = ring->zero;
            continue;
        }
        const int slot = iy % r;
        for (int ci = 0; ci < c; ci++) {
            float *row = ring->rows + ((size_t)ci * r + slot) * rw;
            if (ring->held[slot] != iy) {
                memset(row, 0, (size_t)pad * sizeof(float));
                memcpy(row + pad, x + ((size_t)ci * p->h + iy) * p->w, (size_t)p->w * sizeof(float));
                memset(row + pad + p->w, 0, (size_t)(p->wp - pad - p->w) * sizeof(float));
            }
            rows[ci * r + kh] = row;
        }
        ring->held[slot] = iy;
    }
    for (int kb = 0; kb < p->k / ko; kb++) {
        const float *u = p->ww->u + (size_t)kb * taps * ko, *bias = p->ww->bias + (size_t)kb * ko;
        float *yk = y + (size_t)kb * (ko / p->blk) * ys;
        for (int b = 0; b < p->nblk; b++) {
            const int ow0 = p->pos[b], np = p->pos[b + 1] - ow0;
            p->kernel[np](rows, ow0 * p->stride, c, r, p->stride, u, bias, yk + (size_t)ow0 * p->blk, ys, p->relu);
        }
    }
}

/* The maximum over convolution rows rows[0 .. nr-1] (each [k/blk][q][blk]) and each window's columns,
 * per channel block, into pooled row y (channel block cb at y + cb * ys); cm: q * blk floats. One
 * body for both widths: B floats per vector, VEC/LOADU/STOREU/MAX its type and operations. */
#define POOL_ROW(NAME, TARGET, B, VEC, LOADU, STOREU, MAX)                                                     \
    static TARGET void NAME(const mg_stem *p, const float *const *rows, int nr, float *cm, float *y, size_t ys) { \
        const int q = p->q;                                                                                    \
        for (int cb = 0; cb < p->k / B; cb++) {                                                                \
            const size_t off = (size_t)cb * q * B;                                                             \
            for (int col = 0; col < q; col++) {                                                                \
                VEC m = LOADU(rows[0] + off + (size_t)col * B);                                                \
                for (int i = 1; i < nr; i++) m = MAX(m, LOADU(rows[i] + off + (size_t)col * B));              \
                STOREU(cm + (size_t)col * B, m);                                                               \
            }                                                                                                  \
            for (int j = 0; j < p->pq; j++) {                                                                  \
                int c0 = j * p->ps - p->ppad, c1 = c0 + p->pr;                                                 \
                if (c0 < 0) c0 = 0;                                                                            \
                if (c1 > q) c1 = q;                                                                            \
                VEC m = LOADU(cm + (size_t)c0 * B);                                                            \
                for (int col = c0 + 1; col < c1; col++) m = MAX(m, LOADU(cm + (size_t)col * B));               \
                STOREU(y + (size_t)cb * ys + (size_t)j * B, m);                                                \
            }                                                                                                  \
        }                                                                                                      \
    }
POOL_ROW(pool_row8, TGT, 8, __m256, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_max_ps)
POOL_ROW(pool_row16, TGT512, 16, __m512, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_max_ps)
#undef POOL_ROW

/* Output rows [a, b) of image x (pooled rows when pooling) into y (the image's output); scr: the
 * thread's scratch (thread_floats). */
static void run_rows(const mg_stem *p, const float *x, float *y, float *scr, int a, int b) {
    in_ring in = {.rows = scr, .zero = scr + (size_t)p->c * p->r * lines((size_t)p->wp)};
    memset(in.zero, 0, (size_t)p->wp * sizeof(float));
    for (int i = 0; i < p->r; i++) in.held[i] = -1;
    if (!p->pool) {
        const size_t ys = (size_t)p->p * p->q * p->blk;
        for (int oh = a; oh < b; oh++) conv_row(p, x, &in, oh, y + (size_t)oh * p->q * p->blk, ys);
        return;
    }
    float *ring = scr + in_floats(p);
    const size_t row_floats = (size_t)p->k * p->q, rys = (size_t)p->q * p->blk;
    float *cm = ring + lines((size_t)p->pr * row_floats);
    const size_t ys = (size_t)p->pp * p->pq * p->blk;
    int done = -1; /* the last convolution row in the ring (slot row % pr) */
    for (int i = a; i < b; i++) {
        int r0 = i * p->ps - p->ppad, r1 = r0 + p->pr;
        if (r0 < 0) r0 = 0;
        if (r1 > p->p) r1 = p->p;
        for (int oh = done >= r0 ? done + 1 : r0; oh < r1; oh++)
            conv_row(p, x, &in, oh, ring + (size_t)(oh % p->pr) * row_floats, rys);
        if (r1 - 1 > done) done = r1 - 1;
        const float *rows[MG_STEM_MAX_R];
        for (int oh = r0; oh < r1; oh++) rows[oh - r0] = ring + (size_t)(oh % p->pr) * row_floats;
        float *yi = y + (size_t)i * p->pq * p->blk;
        if (p->blk == 16)
            pool_row16(p, rows, r1 - r0, cm, yi, ys);
        else
            pool_row8(p, rows, r1 - r0, cm, yi, ys);
    }
}

void mg_stem_forward(const mg_stem *p, const float *x, float *y, int n, void *scratch, int threads) {
    const int nthr = threads > 1 ? threads : 1, rows = p->pool ? p->pp : p->p;
    const size_t in_img = (size_t)p->c * p->h * p->w, out_img = (size_t)p->k * rows * (p->pool ? p->pq : p->q);
#ifdef _OPENMP
#pragma omp parallel num_threads(nthr) if (nthr > 1)
    {
        const int T = omp_get_num_threads(), t = omp_get_thread_num();
        float *scr = (float *)scratch + (size_t)t * thread_floats(p);
        for (int img = 0; img < n; img++)
            run_rows(p, x + img * in_img, y + img * out_img, scr, (int)((long)rows * t / T),
                     (int)((long)rows * (t + 1) / T));
    }
#else
    (void)nthr;
    for (int img = 0; img < n; img++) run_rows(p, x + img * in_img, y + img * out_img, scratch, 0, rows);
#endif
}
