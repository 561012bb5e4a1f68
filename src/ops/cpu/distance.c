/* distance.c: pairwise Euclidean distances of a batch of embeddings x [n,d] -> D [n,n] and the backward.
 * D_ij = sqrt(max(0, |x_i|^2 + |x_j|^2 - 2 x_i.x_j)), diagonal exactly 0; pairs at distance 0 get the
 * subgradient 0. Reference: double loops; fast: OpenBLAS sgemm for the Gram matrix and for the backward
 * product, with the backward's n x n scratch cached across calls (grown, never shrunk). */
#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>

#include "multigrain/runtime.h"
#include "ops/cpu/layers_util.h"

static pthread_mutex_t g_scratch_mu = PTHREAD_MUTEX_INITIALIZER;
static float *g_scratch;
static size_t g_scratch_cap;

static mg_status check(const char *op, int n, int d, const float *x, const float *D) {
    MG_CHECK_POS(op, n);
    MG_CHECK_POS(op, d);
    MG_CHECK_PTR(op, x);
    MG_CHECK_PTR(op, D);
    return MG_OK;
}

mg_status mg_pdist_forward(int n, int d, const float *x, float *D) {
    MG_TRY(check("pdist_forward", n, d, x, D));
    size_t N = (size_t)n;
    if (mg_layers_use_fast()) {
        mg_blas_serial(); /* a batch's distances: small (runtime.h) */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, d, 1.0f, x, d, x, d, 0.0f, D, n);
        /* off-diagonal entries first: they read the diagonal norms, overwritten last */
        for (size_t i = 0; i < N; i++)
            for (size_t j = 0; j < N; j++)
                if (i != j) {
                    float s = D[i * N + i] + D[j * N + j] - 2.0f * D[i * N + j];
                    D[i * N + j] = sqrtf(s > 0.0f ? s : 0.0f);
                }
        for (size_t i = 0; i < N; i++) D[i * N + i] = 0.0f;
        return MG_OK;
    }
    for (size_t i = 0; i < N; i++)
        for (size_t j = 0; j < N; j++) {
            if (i == j) {
                D[i * N + j] = 0.0f;
                continue;
            }
            double ni = 0, nj = 0, dot = 0;
            for (int k = 0; k < d; k++) {
                double a = x[i * d + k], b = x[j * d + k];
                ni += a * a;
                nj += b * b;
                dot += a * b;
            }
            double s = ni + nj - 2.0 * dot;
            D[i * N + j] = (float)sqrt(s > 0.0 ? s : 0.0);
        }
    return MG_OK;
}

mg_status mg_pdist_backward(int n, int d, const float *x, const float *D, const float *dD, float *dx) {
    const char *op = "pdist_backward";
    MG_TRY(check(op, n, d, x, D));
    MG_CHECK_PTR(op, dD);
    MG_CHECK_PTR(op, dx);
    size_t N = (size_t)n;
    if (mg_layers_use_fast()) {
        pthread_mutex_lock(&g_scratch_mu);
        if (g_scratch_cap < N * N) {
            float *p = realloc(g_scratch, N * N * sizeof *p);
            if (!p) {
                pthread_mutex_unlock(&g_scratch_mu);
                return MG_FAIL(MG_ERR_NOMEM, "%s: out of memory for a %dx%d scratch matrix", op, n, n);
            }
            g_scratch = p;
            g_scratch_cap = N * N;
        }
        float *M = g_scratch; /* M_ij = (dD_ij + dD_ji) / D_ij, 0 where D_ij = 0; dx = diag(rowsum M) x - M x */
        for (size_t i = 0; i < N; i++) {
            float rs = 0;
            for (size_t j = 0; j < N; j++) {
                float dist = D[i * N + j];
                float m = (i != j && dist > 0.0f) ? (dD[i * N + j] + dD[j * N + i]) / dist : 0.0f;
                M[i * N + j] = -m;
                rs += m;
            }
            M[i * N + i] = rs;
        }
        mg_blas_serial();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, d, n, 1.0f, M, n, x, d, 0.0f, dx, d);
        pthread_mutex_unlock(&g_scratch_mu);
        return MG_OK;
    }
    for (size_t i = 0; i < N; i++)
        for (int k = 0; k < d; k++) {
            double s = 0;
            for (size_t j = 0; j < N; j++) {
                float dist = D[i * N + j];
                if (i == j || !(dist > 0.0f)) continue;
                s += ((double)dD[i * N + j] + dD[j * N + i]) / dist * ((double)x[i * d + k] - x[j * d + k]);
            }
            dx[i * d + k] = (float)s;
        }
    return MG_OK;
}
