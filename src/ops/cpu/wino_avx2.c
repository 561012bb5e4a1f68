/* wino_avx2.c: Winograd F(4x4, 3x3) convolutions (Lavin & Gray 2016) with AVX2+FMA on nChw8c
 * activations, for CPUs where oneDNN 2.6 has no Winograd (its kernels are AVX-512 only): the forward
 * of the fused inference network, and the backward data and backward weights of the training chain;
 * and, for the fused network's 3x3 stride-2 layers, a stride-2 plan (81 products per 4x4 outputs,
 * "Stride 2" below) running through the same three phases.
 * 6x6 input tiles with stride 4, 36 transformed products per tile, so 36 multiplications per 16
 * outputs against 144 for the direct convolution. Forward plans may instead use F(2x2, 3x3): 4x4 input
 * tiles with stride 2, 16 products per 4 outputs against 36, but transformed weights 16/9 the direct
 * ones instead of 4x (small maps at batch 1-2, where reading U from memory is most of the cost).
 * Three phases per forward run:
 *   1. input transform B^T d B of every input tile, 8 channels per vector: V[xi][tile][c]
 *   2. 36 (16) matrix products M[xi] = V[xi] U[xi] (tiles x c times c x k), a 6-tile x 16-channel
 *      register kernel with the transformed weights U packed per 16 output channels at plan time
 *   3. output transform A^T m A of every tile, bias, optional residual sum and ReLU, into nChw8c.
 * Backward data is the forward on dy with the kernel rotated and its channels swapped (weights
 * transformed at every call); backward weights is at the end of the file. The points are 0, +-1, +-2
 * (the matrices below), as in oneDNN's F(4x4) kernels; the error bound is that of Winograd F(4x4)
 * (docs/ops.md). OpenMP parallel loops when compiled with OpenMP.
 * nChw16c plans run 16-wide on CPUs with full-width 512-bit FMAs (mg_cpu_fma_width() 16, or
 * MG_WINO_WIDTH=16): phases 1 and 3 on 16 channels per vector and a 6-tile x 32-channel phase-2
 * kernel with AVX-512F; wino_phases.inc holds phases 1 and 3 once for both widths. The weight
 * transform and backward weights stay 8-wide. */
#include "ops/cpu/wino_avx2.h"

#include "core/hugepage.h"
#include "multigrain/cpu.h"

#include <assert.h>
#include <immintrin.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define KB 16 /* output channels per register block */
#define TB 6  /* tiles per register block */
#define NXI 36 /* F(4x4)'s transformed matrices (6x6); F(2x2) plans have 16 (4x4): the plan's nxi */
#define NXI_MAX 81 /* stride-2 plans' transformed inputs (9x9 per tile) */

#ifdef _OPENMP
#define OMP_PARALLEL_FOR _Pragma("omp parallel for num_threads(nthr) schedule(static) if (nthr > 1)")
/* chunks of tiles: to whichever thread is free (the results do not depend on which) */
#define OMP_PARALLEL_FOR_DYNAMIC _Pragma("omp parallel for num_threads(nthr) schedule(dynamic, 1) if (nthr > 1)")
#else
#define OMP_PARALLEL_FOR
#define OMP_PARALLEL_FOR_DYNAMIC
#endif

#ifdef _OPENMP
#include <omp.h>
#endif

/* The calling thread's OpenMP thread count (mg_omp_set_threads), for the weight transforms. */
static int omp_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

typedef struct wino_weights {
    int refs;
    float *u;    /* [nxi][k / KB][c][KB] */
    size_t u_bytes;
    float *bias; /* [k] */
} wino_weights;

enum { PLAN_FWD, PLAN_FWD_SCRATCH, PLAN_BWD_DATA, PLAN_BWD_WEIGHTS };

struct mg_wino4 {
    int n, c, k, h, w; /* input */
    int s, ho, wo;     /* stride (1, or 2: see "Stride 2" below) and output map */
    int blk;           /* channels per block of the activations: 8 (nChw8c) or 16 (nChw16c; not backward weights) */
    int vw;            /* floats per vector of phases 1-3: 8 (AVX2), or 16 (AVX-512F; blk 16 only: wide_wanted) */
    int m, nxi;   /* output tile m x m (4, or 2 for F(2x2, 3x3)), (m + 2)^2 transformed matrices (81: stride 2) */
    int nu;       /* distinct transformed weight matrices: nxi, or 36 for stride 2 */
    unsigned char uix[NXI_MAX];  /* the U matrix of each of the nxi products */
    unsigned char xord[NXI_MAX]; /* the order phase 2 runs the products in: those sharing a U in a row */
    int pass_rows; /* input channels per pass of phase 2 (pass_rows()) */
    int th, tw;   /* tiles per column and row */
    int tiles;    /* n * th * tw */
    int tiles_pad; /* rounded up to TB */
    int kind; /* PLAN_FWD; the others keep U (dU) at the start of the scratch */
    int bwdw_cap; /* backward weights: tiles per chunk (bwdw_cap) */
    wino_weights *ww;
};

bool mg_wino4_cpu_ok(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

/* Whether plans on nChw16c run phases 1-3 16-wide: where 16-wide FMAs are clearly faster than 8-wide
 * ones (mg_cpu_fma_width, full 512-bit FMA units: Zen 5, Xeon); MG_WINO_WIDTH=8 or 16 (experiments,
 * tests; 16 needs AVX-512F) decides instead. */
static bool wide_wanted(void) {
    const char *e = getenv("MG_WINO_WIDTH");
    if (e && *e) return atoi(e) == 16 && mg_cpu_fma_width_ok(16);
    return mg_cpu_fma_width() == 16;
}

int mg_wino4_vector_width(const mg_wino4 *plan) { return plan ? plan->vw : 0; }
int mg_wino4_block16_width(void) { return wide_wanted() ? 16 : 8; }

bool mg_wino4_shape_ok(int c, int k) { return c > 0 && k > 0 && c % 8 == 0 && k % KB == 0; }

double mg_wino4_saving(int tile, int h, int w) {
    if (h < 1 || w < 1 || (tile != 2 && tile != 4)) return 0;
    /* taps inside the map along a dimension of n outputs, padding 1: 3n - 2 */
    const double direct = (3.0 * h - 2) * (3.0 * w - 2);
    const double a = tile + 2, tiles = (double)((h + tile - 1) / tile) * ((w + tile - 1) / tile);
    return direct / (a * a * tiles);
}

double mg_wino4_s2_saving(int h, int w) {
    if (h < 1 || w < 1) return 0;
    const int ho = (h - 1) / 2 + 1, wo = (w - 1) / 2 + 1;
    const double direct = (3.0 * ho - 1 - (h & 1)) * (3.0 * wo - 1 - (w & 1));
    return direct / (81.0 * ((ho + 3) / 4) * ((wo + 3) / 4));
}

bool mg_wino4_inference_s2(int n, int c, int k, int h, int w, int vw) {
    const char *e = getenv("MG_WINO_S2_SAVING"); /* experiments */
    const double need = e ? atof(e) : vw == 16 ? MG_WINO_S2_MIN_SAVING_WIDE : MG_WINO_S2_MIN_SAVING;
    return n >= 1 && mg_wino4_shape_ok(c, k) && mg_wino4_s2_saving(h, w) >= need && mg_wino4_cpu_ok();
}

/* MG_WINO_MIN_SAVING (experiments; 0 turns the gate off) or MG_WINO_MIN_SAVING_DEFAULT. */
static double min_saving(void) {
    const char *e = getenv("MG_WINO_MIN_SAVING");
    return e ? atof(e) : MG_WINO_MIN_SAVING_DEFAULT;
}

bool mg_wino4_applies(int n, int c, int k, int h, int w) {
    return mg_wino4_shape_ok(c, k) && (long)n * ((h + 3) / 4) * ((w + 3) / 4) >= MG_WINO4_MIN_TILES &&
           mg_wino4_cpu_ok();
}

int mg_wino4_inference_tile(int n, int c, int k, int h, int w) {
    if (!mg_wino4_shape_ok(c, k) || n < 1 || h < 1 || w < 1 || !mg_wino4_cpu_ok()) return 0;
    long tiles4 = (long)n * ((h + 3) / 4) * ((w + 3) / 4);
    const char *e = getenv("MG_WINO2_MIN_TILES4"); /* experiments */
    long min4 = e ? atol(e) : MG_WINO2_MIN_TILES4;
    const double need = min_saving();
    int tile = tiles4 >= min4 ? 4 : 2;
    if (mg_wino4_saving(tile, h, w) >= need) return tile;
    if (tile == 4 && mg_wino4_saving(2, h, w) >= need) return 2;
    return 0;
}

/* Floats between two of the 36 matrices of `rows` x `cols` (U, V, M, dM, dU): rows * cols rounded up to a
 * whole, odd number of 64-byte lines. The transforms touch all 36 matrices for each tile; a distance
 * that is a multiple of 4 KiB (every chunk size here: 48 tiles x 64 channels x 4 bytes is 12 KiB) maps
 * those 36 lines to one set of the 8-way L1, an odd number of lines to 36 different sets (about 7 %
 * on the 64- and 128-channel layers, within the noise on the others). */
static size_t xi_stride(int rows, int cols) {
    size_t lines = ((size_t)rows * cols + 15) / 16;
    return (lines | 1) * 16;
}

/* Floats between two of U's (or dU's) 36 matrices of c x k: with c x k apart (1 MiB at 512
 * channels) the weight transforms, which write all 36 for each kernel, and backward weights' G^T dU G,
 * which reads them, hit one L1 and L2 set: 2x slower at 512 channels. */
static size_t u_xi(const mg_wino4 *p) { return xi_stride(p->c, p->k); }

/* U = G g G^T for one 3x3 kernel g (row-major), in double: a x a values (a = m + 2) for tile m, 6 x 6
 * for m = 0 (stride-2 plans). */
static void weight_transform(const float g[9], double *u, int m) {
    static const double G4[6][3] = {{1.0 / 4, 0, 0},
                                    {-1.0 / 6, -1.0 / 6, -1.0 / 6},
                                    {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                                    {1.0 / 24, 1.0 / 12, 1.0 / 6},
                                    {1.0 / 24, -1.0 / 12, 1.0 / 6},
                                    {0, 0, 1}};
    /* F(2x2, 3x3): points 0, +-1 (Lavin & Gray 2016) */
    static const double G2[6][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
    /* stride 2 (see "Stride 2" below): F(4, 2) on the even taps (g0, g2), points 0, 1, -1, 2 and infinity,
     * then the odd tap g1 alone */
    static const double GS2[6][3] = {{0.5, 0, 0},       {0.5, 0, 0.5}, {1.0 / 6, 0, -1.0 / 6},
                                     {1.0 / 6, 0, 1.0 / 3}, {0, 0, 1},     {0, 1, 0}};
    const double(*G)[3] = m == 2 ? G2 : m == 4 ? G4 : GS2;
    const int a = m == 2 ? 4 : 6;
    double t[6][3];
    for (int i = 0; i < a; i++)
        for (int j = 0; j < 3; j++) t[i][j] = G[i][0] * g[0 * 3 + j] + G[i][1] * g[1 * 3 + j] + G[i][2] * g[2 * 3 + j];
    for (int i = 0; i < a; i++)
        for (int j = 0; j < a; j++) u[i * a + j] = t[i][0] * G[j][0] + t[i][1] * G[j][1] + t[i][2] * G[j][2];
}

/* Input channels per pass of phase 2 over a block's tiles: the U rows of a pass (8 KiB) are read from
 * memory by the first 6 tiles and from L1 by the others. Whole passes over c (one pass per 6 tiles)
 * left the U stream waiting on memory in the first pass and idle in the others: on 7x7 maps at batch
 * 1 (3 blocks of 6 tiles), F(2x2) ran at about 50 GFLOP/s on one thread. Read once per plan. */
static int pass_rows(void) {
    const char *e = getenv("MG_WINO_PASS_ROWS"); /* experiments */
    return e && atoi(e) > 0 ? atoi(e) : 128;
}

static mg_status plan_new(mg_wino4 **plan, int m, int stride, int n, int c, int k, int h, int w) {
    if (!plan) return MG_FAIL(MG_ERR_INVALID_ARG, "winograd: null plan");
    *plan = NULL;
    if (n < 1 || h < 1 || w < 1 || !mg_wino4_shape_ok(c, k))
        return MG_FAIL(MG_ERR_INVALID_ARG,
                       "winograd: expected n, h, w >= 1, c a multiple of 8 and k of 16; found n=%d c=%d k=%d %dx%d",
                       n, c, k, h, w);
    mg_wino4 *p = calloc(1, sizeof *p);
    if (!p) return MG_FAIL(MG_ERR_NOMEM, "winograd: out of memory");
    p->n = n, p->c = c, p->k = k, p->h = h, p->w = w;
    p->s = stride, p->ho = (h - 1) / stride + 1, p->wo = (w - 1) / stride + 1;
    p->m = m, p->pass_rows = pass_rows();
    p->blk = p->vw = 8;
    if (stride == 1) {
        p->nxi = p->nu = (m + 2) * (m + 2);
        for (int xi = 0; xi < p->nxi; xi++) p->uix[xi] = p->xord[xi] = (unsigned char)xi;
    } else {
        /* 9 x 9 products per tile, transformed value a of a row or column being F(4, 2)'s a for a < 5 and
         * the odd input a - 5 otherwise: the products (a, b) with a or b >= 5 share U (a clamped to 5) */
        p->nxi = 81, p->nu = 36;
        int o = 0;
        for (int ui = 0; ui < 36; ui++)
            for (int xi = 0; xi < 81; xi++) {
                int a = xi / 9, b = xi % 9, u = (a < 5 ? a : 5) * 6 + (b < 5 ? b : 5);
                if (u == ui) p->uix[xi] = (unsigned char)u, p->xord[o++] = (unsigned char)xi;
            }
    }
    p->th = (p->ho + m - 1) / m, p->tw = (p->wo + m - 1) / m;
    p->tiles = n * p->th * p->tw;
    p->tiles_pad = (p->tiles + TB - 1) / TB * TB;
    *plan = p;
    return MG_OK;
}

/* The plan's weights: the bias, and U unless it lives in the scratch. */
static mg_status weights_alloc(mg_wino4 *p) {
    wino_weights *ww = calloc(1, sizeof *ww);
    if (!ww) return MG_FAIL(MG_ERR_NOMEM, "winograd: out of memory");
    p->ww = ww;
    ww->refs = 1;
    size_t un = p->kind != PLAN_FWD ? 0 : p->nu * u_xi(p);
    ww->u_bytes = un * sizeof(float);
    if (un) ww->u = mg_hugepage_alloc(ww->u_bytes); /* written once, read at every forward */
    if (posix_memalign((void **)&ww->bias, 64, (size_t)p->k * sizeof(float)) != 0) ww->bias = NULL;
    if ((un && !ww->u) || !ww->bias)
        return MG_FAIL(MG_ERR_NOMEM, "winograd: out of memory for %zu transformed weights", un);
    return MG_OK;
}

static mg_status init_weights(mg_wino4 **plan, int tile, int stride, int n, int c, int k, int h, int w,
                              const float *weights, const float *bias) {
    if (plan) *plan = NULL;
    if (!weights || !bias) return MG_FAIL(MG_ERR_INVALID_ARG, "winograd: null weights or bias");
    MG_TRY(plan_new(plan, tile, stride, n, c, k, h, w));
    mg_wino4 *p = *plan;
    mg_status s = weights_alloc(p);
    if (s != MG_OK) {
        mg_wino4_free(p);
        *plan = NULL;
        return s;
    }
    wino_weights *ww = p->ww;
    memcpy(ww->bias, bias, (size_t)k * sizeof(float));
    const int nthr = omp_threads();
#ifndef _OPENMP
    (void)nthr;
#endif
    /* per block of KB output channels (a thread's share) and input channel: the KB kernels transformed,
     * then each of U's nu rows of KB written whole; one kernel at a time wrote one float into each of nu
     * lines far apart (a third of a ResNet-50 network's build) */
    OMP_PARALLEL_FOR
    for (int ob = 0; ob < k / KB; ob++)
        for (int i = 0; i < c; i++) {
            float row[NXI][KB];
            for (int j = 0; j < KB; j++) {
                double u[NXI];
                weight_transform(weights + ((size_t)(ob * KB + j) * c + i) * 9, u, stride == 2 ? 0 : tile);
                for (int ui = 0; ui < p->nu; ui++) row[ui][j] = (float)u[ui];
            }
            for (int ui = 0; ui < p->nu; ui++)
                memcpy(ww->u + ui * u_xi(p) + ((size_t)ob * c + i) * KB, row[ui], sizeof row[ui]);
        }
    return MG_OK;
}

mg_status mg_wino4_init_tile(mg_wino4 **plan, int tile, int n, int c, int k, int h, int w, const float *weights,
                             const float *bias) {
    if (tile != 2 && tile != 4) {
        if (plan) *plan = NULL;
        return MG_FAIL(MG_ERR_INVALID_ARG, "winograd: expected tile 2 or 4, found %d", tile);
    }
    return init_weights(plan, tile, 1, n, c, k, h, w, weights, bias);
}

mg_status mg_wino4_init_stride2(mg_wino4 **plan, int n, int c, int k, int h, int w, const float *weights,
                                const float *bias) {
    return init_weights(plan, 4, 2, n, c, k, h, w, weights, bias);
}

mg_status mg_wino4_init(mg_wino4 **plan, int n, int c, int k, int h, int w, const float *weights,
                        const float *bias) {
    return mg_wino4_init_tile(plan, 4, n, c, k, h, w, weights, bias);
}

/* A plan whose U lives in the scratch, with zero bias: `kind` PLAN_FWD_SCRATCH or PLAN_BWD_DATA. */
static mg_status init_scratch_u(mg_wino4 **plan, int kind, int n, int c, int k, int h, int w) {
    MG_TRY(plan_new(plan, 4, 1, n, c, k, h, w));
    (*plan)->kind = kind;
    mg_status s = weights_alloc(*plan);
    if (s != MG_OK) {
        mg_wino4_free(*plan);
        *plan = NULL;
        return s;
    }
    memset((*plan)->ww->bias, 0, (size_t)k * sizeof(float));
    return MG_OK;
}

mg_status mg_wino4_init_bwd_data(mg_wino4 **plan, int n, int c_fwd, int k_fwd, int h, int w) {
    return init_scratch_u(plan, PLAN_BWD_DATA, n, k_fwd, c_fwd, h, w);
}

mg_status mg_wino4_init_fwd_scratch(mg_wino4 **plan, int n, int c, int k, int h, int w) {
    return init_scratch_u(plan, PLAN_FWD_SCRATCH, n, c, k, h, w);
}

mg_status mg_wino4_init_like(mg_wino4 **plan, const mg_wino4 *donor, int n, int h, int w) {
    if (!donor || donor->kind != PLAN_FWD) {
        if (plan) *plan = NULL;
        return MG_FAIL(MG_ERR_INVALID_ARG, "winograd: init_like needs a forward plan with weights");
    }
    MG_TRY(plan_new(plan, donor->m, donor->s, n, donor->c, donor->k, h, w));
    (*plan)->blk = donor->blk, (*plan)->vw = donor->vw;
    (*plan)->ww = donor->ww;
    donor->ww->refs++;
    return MG_OK;
}

void mg_wino4_free(mg_wino4 *plan) {
    if (!plan) return;
    wino_weights *ww = plan->ww;
    if (ww && --ww->refs == 0) {
        mg_hugepage_free(ww->u, ww->u_bytes);
        free(ww->bias);
        free(ww);
    }
    free(plan);
}

mg_status mg_wino4_set_block(mg_wino4 *plan, int block) {
    if (!plan) return MG_FAIL(MG_ERR_INVALID_ARG, "winograd: null plan");
    if (plan->kind == PLAN_BWD_WEIGHTS)
        return MG_FAIL(MG_ERR_INVALID_ARG, "winograd: backward-weights plans run on nChw8c only");
    if ((block != 8 && block != 16) || plan->c % block != 0 || plan->k % block != 0)
        return MG_FAIL(MG_ERR_INVALID_ARG,
                       "winograd: expected a channel block of 8 or 16 dividing c=%d and k=%d, found %d", plan->c,
                       plan->k, block);
    plan->blk = block;
    plan->vw = block == 16 ? mg_wino4_block16_width() : 8;
    return MG_OK;
}

bool mg_wino4_matches(const mg_wino4 *plan, int tile, int stride, int c, int k) {
    return plan && plan->m == tile && plan->s == stride && plan->c == c && plan->k == k;
}

size_t mg_wino4_weight_bytes(const mg_wino4 *plan) {
    if (!plan || !plan->ww) return 0;
    return ((plan->kind != PLAN_FWD ? 0 : plan->nu * u_xi(plan)) + (size_t)plan->k) * sizeof(float);
}

/* Floats of U at the start of the scratch (backward-data plans), a multiple of 16. */
static size_t u_scratch_floats(const mg_wino4 *p) { return p->kind != PLAN_FWD ? p->nu * u_xi(p) : 0; }

#define TGT __attribute__((target("avx2,fma")))


#define INLINE __attribute__((always_inline)) inline

/* Offset of the first float of vw-channel group g (channels vw g .. vw g + vw-1) of image n in a map of
 * `pixels` pixels and `channels` channels, blocked by blk (8 or 16: nChw8c or nChw16c; vw 8 or 16, at
 * most blk: the group is a block, or half of one); its pixels are blk floats apart. */
static INLINE size_t group_offset(int n, int channels, int g, int pixels, int blk, int vw) {
    const int per = blk / vw;
    return (((size_t)n * (channels / blk) + g / per) * pixels) * blk + (size_t)(g % per) * vw;
}

/* Phases 1 and 3, 8 channels per vector (AVX2), then 16 (AVX-512F: plans with vw 16) */
#define SFX(f) SFX_(f, VW)
#define SFX_(f, w) SFX__(f, w)
#define SFX__(f, w) f##_##w
#define VW 8
#define VEC __m256
#define VTGT TGT
#define VSET1 _mm256_set1_ps
#define VZERO _mm256_setzero_ps
#define VADD _mm256_add_ps
#define VSUB _mm256_sub_ps
#define VFMADD _mm256_fmadd_ps
#define VFNMADD _mm256_fnmadd_ps
#define VFMSUB _mm256_fmsub_ps
#define VMAX _mm256_max_ps
#define VLOAD _mm256_load_ps
#define VLOADU _mm256_loadu_ps
#define VSTOREU _mm256_storeu_ps
#include "ops/cpu/wino_phases.inc" /* and #undefs them */

#define TGT512 __attribute__((target("avx512f,fma")))
#define VW 16
#define VEC __m512
#define VTGT TGT512
#define VSET1 _mm512_set1_ps
#define VZERO _mm512_setzero_ps
#define VADD _mm512_add_ps
#define VSUB _mm512_sub_ps
#define VFMADD _mm512_fmadd_ps
#define VFNMADD _mm512_fnmadd_ps
#define VFMSUB _mm512_fmsub_ps
#define VMAX _mm512_max_ps
#define VLOAD _mm512_load_ps
#define VLOADU _mm512_loadu_ps
#define VSTOREU _mm512_storeu_ps
#include "ops/cpu/wino_phases.inc" /* and #undefs them */

static void input_tiles(const mg_wino4 *p, const float *x, float *v, size_t vxi, int t0, int nt) {
    if (p->vw == 16)
        input_tiles_16(p, x, v, vxi, t0, nt);
    else
        input_tiles_8(p, x, v, vxi, t0, nt);
}

static void output_tiles(const mg_wino4 *p, const float *m, size_t mxi, float *y, int t0, int nt, int sum,
                         int relu) {
    if (p->vw == 16)
        output_tiles_16(p, m, mxi, y, t0, nt, sum, relu);
    else
        output_tiles_8(p, m, mxi, y, t0, nt, sum, relu);
}

/* One row of a register kernel: x = the row's value broadcast, acc0/acc1 (the row's 16 outputs) += x
 * times b0/b1. Shared by the forward's kernel below and backward weights' kernels. */
#define FMA_ROW(acc, src)                                                                                   \
    x = _mm256_broadcast_ss(src);                                                                           \
    acc##0 = _mm256_fmadd_ps(x, b0, acc##0), acc##1 = _mm256_fmadd_ps(x, b1, acc##1);

/* Phase 2 register kernel: m[6 tiles][16] = (acc ? m : 0) + v[6 tiles][nc] u[nc][16] (rows of v ldv
 * floats apart, of m ldm). Prefetches U's next rows from pf onwards, advancing 64 / pf_every bytes
 * (a line every pf_every iterations) per iteration: unconditionally, as a branch taken every pf_every
 * iterations is mispredicted when that period is long. */
TGT static void kernel_6x16(int nc, const float *v, size_t ldv, const float *u, float *m, size_t ldm, int acc,
                            const float *pf, int pf_every) {
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
    __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    if (acc) {
        const float *q = m;
        c00 = _mm256_load_ps(q), c01 = _mm256_load_ps(q + 8), q += ldm;
        c10 = _mm256_load_ps(q), c11 = _mm256_load_ps(q + 8), q += ldm;
        c20 = _mm256_load_ps(q), c21 = _mm256_load_ps(q + 8), q += ldm;
        c30 = _mm256_load_ps(q), c31 = _mm256_load_ps(q + 8), q += ldm;
        c40 = _mm256_load_ps(q), c41 = _mm256_load_ps(q + 8), q += ldm;
        c50 = _mm256_load_ps(q), c51 = _mm256_load_ps(q + 8);
    }
    const float *v0 = v, *v1 = v + ldv, *v2 = v + 2 * ldv, *v3 = v + 3 * ldv, *v4 = v + 4 * ldv, *v5 = v + 5 * ldv;
    const char *pfb = (const char *)pf;
    const unsigned step = (64u << 16) / (unsigned)pf_every; /* bytes per iteration, 16.16 fixed point */
    for (int i = 0; i < nc; i++) {
        __m256 b0 = _mm256_load_ps(u), b1 = _mm256_load_ps(u + 8), x;
        _mm_prefetch(pfb + (((unsigned)i * step) >> 16), _MM_HINT_T0);
        u += KB;
        FMA_ROW(c0, v0 + i) FMA_ROW(c1, v1 + i) FMA_ROW(c2, v2 + i) FMA_ROW(c3, v3 + i) FMA_ROW(c4, v4 + i)
        FMA_ROW(c5, v5 + i)
    }
    _mm256_store_ps(m, c00), _mm256_store_ps(m + 8, c01), m += ldm;
    _mm256_store_ps(m, c10), _mm256_store_ps(m + 8, c11), m += ldm;
    _mm256_store_ps(m, c20), _mm256_store_ps(m + 8, c21), m += ldm;
    _mm256_store_ps(m, c30), _mm256_store_ps(m + 8, c31), m += ldm;
    _mm256_store_ps(m, c40), _mm256_store_ps(m + 8, c41), m += ldm;
    _mm256_store_ps(m, c50), _mm256_store_ps(m + 8, c51);
}


/* Phase 2 register kernel of plans with vw 16 (AVX-512F): m[6 tiles][16 NB] = (acc ? m : 0) + v[6
 * tiles][nc] u[nc][16 NB], for NB (1 or 2) blocks of 16 output channels whose U rows are ublk floats
 * apart (the blocks are adjacent in m): with two, 12 accumulators, 12 FMAs per 2 loads of U and 6
 * broadcasts, as kernel_6x16 at twice the width. Prefetches as kernel_6x16, in each block's stream. */
TGT512 static INLINE void kernel16(int nc, const float *v, size_t ldv, const float *u, size_t ublk, float *m,
                                   size_t ldm, int acc, const float *pf, int pf_every, const int NB) {
    __m512 c[TB][2];
    for (int r = 0; r < TB; r++)
        for (int j = 0; j < NB; j++) c[r][j] = acc ? _mm512_loadu_ps(m + r * ldm + 16 * j) : _mm512_setzero_ps();
    const char *pfb = (const char *)pf;
    const unsigned step = (64u << 16) / (unsigned)pf_every; /* bytes per iteration, 16.16 fixed point */
    for (int i = 0; i < nc; i++) {
        __m512 b[2];
        for (int j = 0; j < NB; j++) {
            b[j] = _mm512_loadu_ps(u + (size_t)i * KB + j * ublk);
            _mm_prefetch(pfb + (((unsigned)i * step) >> 16) + j * ublk * sizeof(float), _MM_HINT_T0);
        }
        for (int r = 0; r < TB; r++) {
            const __m512 x = _mm512_set1_ps(v[r * ldv + i]);
            for (int j = 0; j < NB; j++) c[r][j] = _mm512_fmadd_ps(x, b[j], c[r][j]);
        }
    }
    for (int r = 0; r < TB; r++)
        for (int j = 0; j < NB; j++) _mm512_storeu_ps(m + r * ldm + 16 * j, c[r][j]);
}

TGT512 static void kernel_6x32_16(int nc, const float *v, size_t ldv, const float *u, size_t ublk, float *m,
                                  size_t ldm, int acc, const float *pf, int pf_every) {
    kernel16(nc, v, ldv, u, ublk, m, ldm, acc, pf, pf_every, 2);
}

TGT512 static void kernel_6x16_16(int nc, const float *v, size_t ldv, const float *u, float *m, size_t ldm, int acc,
                                  const float *pf, int pf_every) {
    kernel16(nc, v, ldv, u, 0, m, ldm, acc, pf, pf_every, 1);
}

/* Output-channel blocks (of KB) one call of the phase-2 kernel computes: 2 at vw 16 (kernel_6x32_16),
 * 1 at vw 8. */
static int kb_group(const mg_wino4 *p) { return p->vw == 16 ? 2 : 1; }

/* Phase 2 on nt_pad (a multiple of TB) tiles of V for output-channel blocks kb0 .. kb1-1 of matrix xi. */
static void products(const mg_wino4 *p, const float *ubase, const float *v, size_t vxi, float *m, size_t mxi,
                     int nt_pad, int xi, int kb0, int kb1) {
    const int C = p->c, K = p->k, pr = p->pass_rows;
    const size_t ublk = (size_t)C * KB;
    const float *vx = v + xi * vxi;
    for (int kb = kb0; kb < kb1;) {
        const int two = p->vw == 16 && kb + 1 < kb1;
        const float *u = ubase + p->uix[xi] * u_xi(p) + (size_t)kb * ublk;
        float *mx = m + xi * mxi + (size_t)kb * KB;
        for (int c0 = 0; c0 < C; c0 += pr) {
            const int nc = C - c0 < pr ? C - c0 : pr, nb = nt_pad / TB, share = (nc + nb - 1) / nb;
            /* the U rows after this pass's (the next pass, or the next block of output channels), a line
             * every nb iterations spread over the pass's blocks, so that they stream in while the pass
             * computes (two blocks: the next pair's after the last pass) */
            const float *next = two && c0 + nc == C ? u + 2 * ublk : u + (size_t)(c0 + nc) * KB;
            for (int tb = 0, b = 0; tb < nt_pad; tb += TB, b++) {
                const float *vt = vx + (size_t)tb * C + c0, *ut = u + (size_t)c0 * KB, *pf = next + (size_t)b * share * KB;
                float *mt = mx + (size_t)tb * K;
                if (two)
                    kernel_6x32_16(nc, vt, C, ut, ublk, mt, K, c0 > 0, pf, nb);
                else if (p->vw == 16)
                    kernel_6x16_16(nc, vt, C, ut, mt, K, c0 > 0, pf, nb);
                else
                    kernel_6x16(nc, vt, C, ut, mt, K, c0 > 0, pf, nb);
            }
        }
        kb += two ? 2 : 1;
    }
}

/* Zeroes V's rows nt .. nt_pad-1 (padding tiles: their products are computed and never read). */
static void zero_pad_rows(const mg_wino4 *p, float *v, size_t vxi, int nt, int nt_pad) {
    if (nt_pad > nt)
        for (int xi = 0; xi < p->nxi; xi++)
            memset(v + xi * vxi + (size_t)nt * p->c, 0, (size_t)(nt_pad - nt) * p->c * sizeof(float));
}

/* Tiles per chunk: V and M of a chunk in about half of a 1 MiB L2, but at least 48 so that the
 * transformed weights, streamed once per chunk, are used often enough. For ResNet's layers (c + k >=
 * 128) the minimum decides; chunks of 12 to 96 tiles measured alike within the noise (bench_dnnl_conv,
 * batch 4, one thread), so the L2 size of the machine hardly matters. */
static int chunk_tiles(const mg_wino4 *p) {
    int t = (int)((512u << 10) / ((size_t)p->nxi * (p->c + p->k) * sizeof(float)));
    t = t / TB * TB;
    return t < 48 ? 48 : t;
}

/* One chunk of tiles, all three phases, on the calling thread; scr holds V and M for `cap` tiles. */
static void run_chunk(const mg_wino4 *p, const float *u, const float *x, float *y, int sum, int relu, float *scr,
                      int cap, int t0, int nt) {
    const int nt_pad = (nt + TB - 1) / TB * TB;
    const size_t vxi = xi_stride(cap, p->c), mxi = xi_stride(cap, p->k);
    float *v = scr, *m = scr + p->nxi * vxi;
    zero_pad_rows(p, v, vxi, nt, nt_pad);
    input_tiles(p, x, v, vxi, t0, nt);
    for (int i = 0; i < p->nxi; i++) products(p, u, v, vxi, m, mxi, nt_pad, p->xord[i], 0, p->k / KB);
    output_tiles(p, m, mxi, y, t0, nt, sum, relu);
}

/* How a run is split: chunks of `cap` tiles, each run whole by one thread (their own V and M), or,
 * with fewer than WHOLE_BELOW_TILES tiles per thread, one chunk of every tile with each phase split
 * between the threads (`whole`). Whole runs hand V and M from one thread to the other between phases
 * (phase 1 splits the tiles, phase 2 the products); where the threads' cores are far apart that costs
 * more than reading U twice: on the Zen 5 VM (a cache line takes about 250 ns from one core to the
 * other) ResNet-50's 28x28 layers at batch 1 (49 tiles) took 0.02-0.03 ms less each in chunks, its
 * stride-2 entry to stage 2 0.05 ms less (docs/PERFORMANCE.md, "Two threads at batch 1: the cores far
 * apart"); on 14x14 maps (16 tiles, 9.4 MB of U for 256 channels) whole runs stay. */
#define WHOLE_BELOW_TILES 20
typedef struct run_split {
    int cap, nchunks, whole, regions;
} run_split;

static run_split split_for(const mg_wino4 *p, int threads) {
    run_split r = {.cap = chunk_tiles(p)};
    if (r.cap > p->tiles_pad) r.cap = p->tiles_pad;
    r.nchunks = (p->tiles + r.cap - 1) / r.cap;
    r.whole = threads > 1 && p->tiles < WHOLE_BELOW_TILES * threads;
    if (r.whole) r.cap = p->tiles_pad, r.nchunks = 1;
    if (!r.whole && threads > 1) {
        /* as many chunks per thread, of even size: 196 tiles on 2 threads are 6 chunks of 36 (the last
         * 16), not 4 of 48 and one of 4 */
        int nch = (r.nchunks + threads - 1) / threads * threads;
        r.cap = ((p->tiles + nch - 1) / nch + TB - 1) / TB * TB;
        r.nchunks = (p->tiles + r.cap - 1) / r.cap;
    }
    r.regions = r.whole ? 1 : (r.nchunks < threads ? r.nchunks : threads);
    return r;
}

static size_t region_floats(const mg_wino4 *p, int cap) {
    return p->nxi * (xi_stride(cap, p->c) + xi_stride(cap, p->k));
}

size_t mg_wino4_scratch_bytes(const mg_wino4 *plan, int threads) {
    if (!plan) return 0;
    if (plan->kind == PLAN_BWD_WEIGHTS) /* dU, then V and dM of one chunk (all threads share it) */
        return (u_scratch_floats(plan) + region_floats(plan, plan->bwdw_cap)) * sizeof(float);
    run_split r = split_for(plan, threads > 0 ? threads : 1);
    return (u_scratch_floats(plan) + (size_t)r.regions * region_floats(plan, r.cap)) * sizeof(float);
}

/* G x for the three taps x0, x1, x2 of 8 lanes (the rows of G as in weight_transform) */
TGT static inline void g6(__m256 x0, __m256 x1, __m256 x2, __m256 o[6]) {
    const __m256 q = _mm256_set1_ps(0.25f), s6 = _mm256_set1_ps(1.0f / 6), s12 = _mm256_set1_ps(1.0f / 12),
                 s24 = _mm256_set1_ps(1.0f / 24);
    __m256 s02 = _mm256_add_ps(x0, x2);
    o[0] = _mm256_mul_ps(q, x0);
    o[1] = _mm256_mul_ps(_mm256_sub_ps(_mm256_setzero_ps(), s6), _mm256_add_ps(s02, x1));
    o[2] = _mm256_mul_ps(_mm256_sub_ps(_mm256_setzero_ps(), s6), _mm256_sub_ps(s02, x1));
    __m256 e = _mm256_fmadd_ps(s24, x0, _mm256_mul_ps(s6, x2)), f = _mm256_mul_ps(s12, x1);
    o[3] = _mm256_add_ps(e, f);
    o[4] = _mm256_sub_ps(e, f);
    o[5] = x2;
}

/* U of plan input channels i0..i1 from OIHW weights w into u. Backward data (flip): plan input
 * channel i = forward output channel, plan output channel o = forward input channel, g[a][b] =
 * w[i][o][2-a][2-b]; forward: g[a][b] = w[o][i][a][b]. 8 consecutive o per vector (a stride of 9
 * floats, or 9 C for the forward). Per block of KB output channels, the input channels in order: each
 * of the 36 matrices of U is then written as one sequential stream of whole cache lines (i outer
 * wrote 36 x K/KB streams a line apart, hundreds of KiB apart: 2.5-3.5x slower at 512 channels). */
TGT static void set_u_rows(const mg_wino4 *p, const float *w, float *u, int i0, int i1, int flip) {
    const int C = p->c, K = p->k, os = flip ? 9 : 9 * C;
    const size_t uxi = u_xi(p);
    const __m256i idx = _mm256_setr_epi32(0, os, 2 * os, 3 * os, 4 * os, 5 * os, 6 * os, 7 * os);
    for (int ob = 0; ob < K; ob += KB)
        for (int i = i0; i < i1; i++)
            for (int o0 = ob; o0 < ob + KB; o0 += 8) {
                const float *src = flip ? w + ((size_t)i * K + o0) * 9 : w + ((size_t)o0 * C + i) * 9;
                __m256 g[3][3], t[6][3], r[6];
                for (int a = 0; a < 3; a++)
                    for (int b = 0; b < 3; b++)
                        g[a][b] = _mm256_i32gather_ps(src + (flip ? (2 - a) * 3 + (2 - b) : a * 3 + b), idx, 4);
                for (int b = 0; b < 3; b++) {
                    g6(g[0][b], g[1][b], g[2][b], r);
                    for (int a = 0; a < 6; a++) t[a][b] = r[a];
                }
                float *dst = u + ((size_t)(ob / KB) * C + i) * KB + (o0 - ob);
                for (int a = 0; a < 6; a++) {
                    g6(t[a][0], t[a][1], t[a][2], r);
                    for (int b = 0; b < 6; b++) _mm256_storeu_ps(dst + (size_t)(a * 6 + b) * uxi, r[b]);
                }
            }
}

#ifdef _OPENMP
#include <omp.h>
#define THREAD_NUM omp_get_thread_num()
#else
#define THREAD_NUM 0
#endif

void mg_wino4_set_weights_scratch(const mg_wino4 *p, const float *w, void *scratch, int threads) {
    const int nthr = threads > 0 ? threads : 1, C = p->c, flip = p->kind == PLAN_BWD_DATA;
#ifndef _OPENMP
    (void)nthr;
#endif
    assert(p->kind == PLAN_BWD_DATA || p->kind == PLAN_FWD_SCRATCH);
    OMP_PARALLEL_FOR
    for (int th = 0; th < nthr; th++)
        set_u_rows(p, w, scratch, (int)((long)C * th / nthr), (int)((long)C * (th + 1) / nthr), flip);
}

void mg_wino4_forward(const mg_wino4 *p, const float *x, float *y, int sum, int relu, void *scratch, int threads) {
    const int nthr = threads > 0 ? threads : 1;
    run_split r = split_for(p, nthr);
    const float *u = p->kind != PLAN_FWD ? (const float *)scratch : p->ww->u;
    float *scr = (float *)scratch + u_scratch_floats(p);
    if (!r.whole) {
        const int nch = r.nchunks, cap = r.cap;
        OMP_PARALLEL_FOR_DYNAMIC
        for (int ch = 0; ch < nch; ch++) {
            int t0 = ch * cap, nt = p->tiles - t0 < cap ? p->tiles - t0 : cap;
            run_chunk(p, u, x, y, sum, relu, scr + (size_t)THREAD_NUM * region_floats(p, cap), cap, t0, nt);
        }
        return;
    }
    /* one chunk of every tile, each phase split between the threads */
    const int cap = r.cap, nkb = p->k / KB, tiles = p->tiles;
    const size_t vxi = xi_stride(cap, p->c), mxi = xi_stride(cap, p->k);
    float *v = scr, *m = scr + p->nxi * vxi;
    zero_pad_rows(p, v, vxi, tiles, cap);
    OMP_PARALLEL_FOR
    for (int th = 0; th < nthr; th++) {
        int a = (int)((long)tiles * th / nthr), b = (int)((long)tiles * (th + 1) / nthr);
        input_tiles(p, x, v + (size_t)a * p->c, vxi, a, b - a);
    }
    const int grp = kb_group(p), ngrp = (nkb + grp - 1) / grp, jobs = p->nxi * ngrp;
    OMP_PARALLEL_FOR
    for (int job = 0; job < jobs; job++) {
        const int kb0 = job % ngrp * grp;
        products(p, u, v, vxi, m, mxi, cap, p->xord[job / ngrp], kb0, kb0 + grp < nkb ? kb0 + grp : nkb);
    }
    OMP_PARALLEL_FOR
    for (int th = 0; th < nthr; th++) {
        int a = (int)((long)tiles * th / nthr), b = (int)((long)tiles * (th + 1) / nthr);
        output_tiles(p, m + (size_t)a * p->k, mxi, y, a, b - a, sum, relu);
    }
}

/* ---- backward weights ------------------------------------------------------------------------
 * dL/dU[xi] = sum over tiles of V[xi][t]^T dM[xi][t], with V the input transform of x (as forward)
 * and dM = A dY A^T the adjoint of the output transform applied to each 4x4 tile of dy (zero beyond
 * the map); then dL/dg = G^T dL/dU G per kernel, accumulated into dw. Tiles in chunks (V and dM of a
 * chunk in BWDW_CHUNK_BYTES), dU summed over the chunks in the scratch. */

#define BWDW_CHUNK_BYTES (16u << 20)
/* tiles per block of the dU products: their dM rows (one cache line per tile) stay in L1 across the
 * input channels (32 of 32/64/128/whole measured best, bench_ops --layout chain) */
#define BWDW_TBLK 32

/* Tiles per chunk: V and dM of a chunk in BWDW_CHUNK_BYTES. MG_WINO_BWDW_TILES=N: chunks of N tiles
 * instead (experiments, and the tests' multi-chunk case). */
static int bwdw_cap(const mg_wino4 *p) {
    const char *e = getenv("MG_WINO_BWDW_TILES");
    if (e && atoi(e) > 0) return atoi(e) > p->tiles_pad ? p->tiles_pad : atoi(e);
    int cap = (int)(BWDW_CHUNK_BYTES / ((size_t)NXI * (p->c + p->k) * sizeof(float)));
    cap = cap / TB * TB;
    if (cap < TB) cap = TB;
    return cap > p->tiles_pad ? p->tiles_pad : cap;
}

mg_status mg_wino4_init_bwd_weights(mg_wino4 **plan, int n, int c, int k, int h, int w) {
    MG_TRY(plan_new(plan, 4, 1, n, c, k, h, w));
    (*plan)->kind = PLAN_BWD_WEIGHTS; /* no weights of its own: dU is in the scratch */
    (*plan)->bwdw_cap = bwdw_cap(*plan);
    return MG_OK;
}

/* dM for tiles t0 .. t0+nt-1 of dy (tile t0 at row 0; mxi floats between the 36 matrices) */
TGT static void dy_tiles(const mg_wino4 *p, const float *dy, float *m, size_t mxi, int t0, int nt) {
    const int H = p->h, W = p->w, K = p->k, KB8 = K / 8;
    const __m256 c2 = _mm256_set1_ps(2.0f), c4 = _mm256_set1_ps(4.0f), c8 = _mm256_set1_ps(8.0f);
    for (int tt = 0; tt < nt; tt++) {
        const int t = t0 + tt, j = t % p->tw, i = (t / p->tw) % p->th, n = t / (p->tw * p->th);
        const int y0 = 4 * i, x0 = 4 * j;
        for (int kb8 = 0; kb8 < KB8; kb8++) {
            const float *yp = dy + ((size_t)n * KB8 + kb8) * H * W * 8;
            __m256 d[4][4], r[6][4];
            for (int a = 0; a < 4; a++)
                for (int b = 0; b < 4; b++)
                    d[a][b] = (y0 + a < H && x0 + b < W) ? _mm256_loadu_ps(yp + ((size_t)(y0 + a) * W + x0 + b) * 8)
                                                         : _mm256_setzero_ps();
            /* rows: m = A y, A = (A^T)^T: m0 = y0, m1 = y0+y1+y2+y3, m2 = y0-y1+y2-y3,
             * m3 = y0+2y1+4y2+8y3, m4 = y0-2y1+4y2-8y3, m5 = y3 */
            for (int b = 0; b < 4; b++) {
                __m256 s02 = _mm256_add_ps(d[0][b], d[2][b]), s13 = _mm256_add_ps(d[1][b], d[3][b]);
                __m256 e = _mm256_fmadd_ps(c4, d[2][b], d[0][b]), f = _mm256_fmadd_ps(c8, d[3][b], _mm256_mul_ps(c2, d[1][b]));
                r[0][b] = d[0][b];
                r[1][b] = _mm256_add_ps(s02, s13);
                r[2][b] = _mm256_sub_ps(s02, s13);
                r[3][b] = _mm256_add_ps(e, f);
                r[4][b] = _mm256_sub_ps(e, f);
                r[5][b] = d[3][b];
            }
            float *mt = m + (size_t)tt * K + (size_t)kb8 * 8;
            for (int a = 0; a < 6; a++) { /* columns */
                const __m256 *q = r[a];
                __m256 s02 = _mm256_add_ps(q[0], q[2]), s13 = _mm256_add_ps(q[1], q[3]);
                __m256 e = _mm256_fmadd_ps(c4, q[2], q[0]), f = _mm256_fmadd_ps(c8, q[3], _mm256_mul_ps(c2, q[1]));
                __m256 o[6] = {q[0], _mm256_add_ps(s02, s13), _mm256_sub_ps(s02, s13), _mm256_add_ps(e, f),
                               _mm256_sub_ps(e, f), q[3]};
                for (int b = 0; b < 6; b++) _mm256_store_ps(mt + (size_t)(a * 6 + b) * mxi, o[b]);
            }
        }
    }
}

/* dU rows c0 .. c0+R-1 of one 16-channel block (du, rows of 16) += (or, first, =) the sum over nt tiles
 * of V[t][c] dM[t][k], for R = 6, 4 or 2 rows (6: 12 accumulators, as the forward's register kernel;
 * 4 and 2 for the rest of the channels, c being a multiple of 8). One FMA chain per accumulator and
 * tile: with 8 accumulators (4 rows) the chains' latency kept the kernel at about half the FMA peak. */
#define ACC_STORE(r)                                                                                        \
    {                                                                                                       \
        float *d = du + (r) * KB;                                                                           \
        _mm256_store_ps(d, first ? a##r##0 : _mm256_add_ps(_mm256_load_ps(d), a##r##0));                   \
        _mm256_store_ps(d + 8, first ? a##r##1 : _mm256_add_ps(_mm256_load_ps(d + 8), a##r##1));            \
    }
TGT static void kernel_6x16_acc(int nt, const float *v, size_t ldv, const float *m, size_t ldm, float *du, int first) {
    __m256 a00 = _mm256_setzero_ps(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00, a30 = a00, a31 = a00,
           a40 = a00, a41 = a00, a50 = a00, a51 = a00;
    for (int t = 0; t < nt; t++) {
        __m256 b0 = _mm256_load_ps(m), b1 = _mm256_load_ps(m + 8), x;
        FMA_ROW(a0, v + 0) FMA_ROW(a1, v + 1) FMA_ROW(a2, v + 2) FMA_ROW(a3, v + 3) FMA_ROW(a4, v + 4) FMA_ROW(a5, v + 5)
        v += ldv, m += ldm;
    }
    ACC_STORE(0) ACC_STORE(1) ACC_STORE(2) ACC_STORE(3) ACC_STORE(4) ACC_STORE(5)
}
TGT static void kernel_4x16_acc(int nt, const float *v, size_t ldv, const float *m, size_t ldm, float *du, int first) {
    __m256 a00 = _mm256_setzero_ps(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00, a30 = a00, a31 = a00;
    for (int t = 0; t < nt; t++) {
        __m256 b0 = _mm256_load_ps(m), b1 = _mm256_load_ps(m + 8), x;
        FMA_ROW(a0, v + 0) FMA_ROW(a1, v + 1) FMA_ROW(a2, v + 2) FMA_ROW(a3, v + 3)
        v += ldv, m += ldm;
    }
    ACC_STORE(0) ACC_STORE(1) ACC_STORE(2) ACC_STORE(3)
}
TGT static void kernel_2x16_acc(int nt, const float *v, size_t ldv, const float *m, size_t ldm, float *du, int first) {
    __m256 a00 = _mm256_setzero_ps(), a01 = a00, a10 = a00, a11 = a00;
    for (int t = 0; t < nt; t++) {
        __m256 b0 = _mm256_load_ps(m), b1 = _mm256_load_ps(m + 8), x;
        FMA_ROW(a0, v + 0) FMA_ROW(a1, v + 1)
        v += ldv, m += ldm;
    }
    ACC_STORE(0) ACC_STORE(1)
}
#undef FMA_ROW
#undef ACC_STORE

/* dw[k][c][3][3] += G^T dU[c][k] G for k in k0 .. k0+7, every c (dU as [xi][k / 16][c][16]) */
TGT static void dw_block(const mg_wino4 *p, const float *du, float *dw, int k0) {
    const int C = p->c;
    const size_t dxi = u_xi(p);
    du += (size_t)(k0 / KB) * C * KB + k0 % KB;
    /* G^T (3x6): rows of G's columns */
    static const float GT[3][6] = {{0.25f, -1.0f / 6, -1.0f / 6, 1.0f / 24, 1.0f / 24, 0},
                                   {0, -1.0f / 6, 1.0f / 6, 1.0f / 12, -1.0f / 12, 0},
                                   {0, -1.0f / 6, -1.0f / 6, 1.0f / 6, 1.0f / 6, 1}};
    for (int c = 0; c < C; c++) {
        __m256 u[36], t[3][6];
        for (int xi = 0; xi < NXI; xi++) u[xi] = _mm256_load_ps(du + xi * dxi + (size_t)c * KB);
        for (int r = 0; r < 3; r++) /* t = G^T dU (3x6) */
            for (int b = 0; b < 6; b++) {
                __m256 s = _mm256_setzero_ps();
                for (int a = 0; a < 6; a++)
                    if (GT[r][a] != 0) s = _mm256_fmadd_ps(_mm256_set1_ps(GT[r][a]), u[a * 6 + b], s);
                t[r][b] = s;
            }
        float out[9][8];
        for (int r = 0; r < 3; r++) /* dg = t G (3x3) */
            for (int q = 0; q < 3; q++) {
                __m256 s = _mm256_setzero_ps();
                for (int b = 0; b < 6; b++)
                    if (GT[q][b] != 0) s = _mm256_fmadd_ps(_mm256_set1_ps(GT[q][b]), t[r][b], s);
                _mm256_storeu_ps(out[r * 3 + q], s);
            }
        for (int l = 0; l < 8; l++) {
            float *d = dw + ((size_t)(k0 + l) * C + c) * 9;
            for (int e = 0; e < 9; e++) d[e] += out[e][l];
        }
    }
}

void mg_wino4_backward_weights(const mg_wino4 *p, const float *x, const float *dy, float *dw, void *scratch,
                               int threads) {
    const int nthr = threads > 0 ? threads : 1;
#ifndef _OPENMP
    (void)nthr;
#endif
    const int C = p->c, K = p->k, nkb = K / KB, cap = p->bwdw_cap;
    const size_t vxi = xi_stride(cap, C), mxi = xi_stride(cap, K);
    float *du = scratch, *v = du + u_scratch_floats(p), *m = v + NXI * vxi;
    for (int t0 = 0; t0 < p->tiles; t0 += cap) {
        const int nt = p->tiles - t0 < cap ? p->tiles - t0 : cap;
        OMP_PARALLEL_FOR
        for (int th = 0; th < nthr; th++) {
            int a = (int)((long)nt * th / nthr), b = (int)((long)nt * (th + 1) / nthr);
            input_tiles(p, x, v + (size_t)a * C, vxi, t0 + a, b - a);
            dy_tiles(p, dy, m + (size_t)a * K, mxi, t0 + a, b - a);
        }
        const int jobs = NXI * nkb;
        OMP_PARALLEL_FOR
        for (int job = 0; job < jobs; job++) {
            const int xi = job / nkb, kb = job % nkb;
            float *dblk = du + xi * u_xi(p) + (size_t)kb * C * KB;
            for (int b0 = 0; b0 < nt; b0 += BWDW_TBLK) {
                const int nb = nt - b0 < BWDW_TBLK ? nt - b0 : BWDW_TBLK;
                const float *vb = v + xi * vxi + (size_t)b0 * C, *mb = m + xi * mxi + (size_t)b0 * K + (size_t)kb * KB;
                const int first = t0 == 0 && b0 == 0;
                int c0 = 0;
                for (; c0 + 6 <= C; c0 += 6) kernel_6x16_acc(nb, vb + c0, C, mb, K, dblk + (size_t)c0 * KB, first);
                if (C - c0 >= 4) kernel_4x16_acc(nb, vb + c0, C, mb, K, dblk + (size_t)c0 * KB, first), c0 += 4;
                if (C - c0 >= 2) kernel_2x16_acc(nb, vb + c0, C, mb, K, dblk + (size_t)c0 * KB, first), c0 += 2;
            }
        }
    }
    const int nk8 = K / 8;
    OMP_PARALLEL_FOR
    for (int kb8 = 0; kb8 < nk8; kb8++) dw_block(p, du, dw, kb8 * 8);
}
