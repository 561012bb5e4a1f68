/* whiten.h: PCA whitening of retrieval embeddings (learn, apply, save/load) and its exact folding
 * into a linear classifier (recipe §1.8, §2.3).
 *
 * Learning (sklearn PCA(whiten=True) convention, computed in float64):
 *   mean m = (1/N) sum x_i;  C = (1/(N-1)) sum (x_i - m)(x_i - m)^T;
 *   C = U diag(lambda) U^T by LAPACKE_dsyevd, eigenvalues sorted decreasing;
 *   P[:, j] = U[:, j] / sqrt(max(lambda_j, eps_rel * lambda_0))   for j < D'  (P is [D, D']).
 * The eps floor (default MG_WHITEN_EPS_REL = 1e-10 of the largest eigenvalue) only touches
 * numerically-zero directions (rank-deficient covariance, N <= D, constant channels); a warning is
 * logged when it applies. Eigenvector signs are fixed so that the largest-|.| entry of every
 * column of U is positive (deterministic output; the sign does not change whitened distances).
 * Apply: y = (x - m) . P (row vector times matrix), then y / ||y||  (all-zero y stays zero).
 *
 * File: safetensors with tensors `whiten.mean` F32 [D] and `whiten.P` F32 [D, D'] and the
 * metadata "format": "multigrain-whiten". */
#ifndef MULTIGRAIN_WHITEN_H
#define MULTIGRAIN_WHITEN_H

#include <stdint.h>

#include "multigrain/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MG_WHITEN_EPS_REL 1e-10

typedef struct mg_whiten {
    int64_t dim_in;  /* D */
    int64_t dim_out; /* D' <= D */
    float *mean;     /* [D] */
    float *P;        /* [D, D'] row-major */
    double *eigenvalues; /* [D'] decreasing, before the floor (NULL when loaded from a file) */
    int64_t n_floored;   /* retained eigenvalues raised to the floor */
} mg_whiten;

/* Learns from x [n, d] (n >= 2). dim_out = 0 keeps all d dimensions. eps_rel <= 0: default. */
mg_status mg_whiten_fit(const float *x, int64_t n, int64_t d, int64_t dim_out, double eps_rel, mg_whiten *out);
void mg_whiten_free(mg_whiten *w);

/* out[n, D'] = (x - m) . P, without renormalisation (the classifier input of the folded model). */
mg_status mg_whiten_project(const mg_whiten *w, const float *x, int64_t n, float *out);
/* out[n, D'] = l2n((x - m) . P): the retrieval descriptor. */
mg_status mg_whiten_apply(const mg_whiten *w, const float *x, int64_t n, float *out);

/* The recipe's augmented input: out[d+1] = [e, 1] / ||[e, 1]||. */
void mg_whiten_augment(const float *e, int64_t d, float *out);

/* Folds a whitening into a linear classifier logits = W e + b (W [K, D] row-major, b [K] or NULL).
 *
 * Let x be the vector the whitening was learned on and Phi = (x - m) . P (NOT renormalised),
 * with P square and invertible (dim_out == dim_in). Then x = Phi . P^-1 + m, and for A [K, dim_in]
 *     A x = (A P^-T) Phi + A m,   so  W' = A P^-T  [K, dim_in],  b' = A m  [K].
 * Two exact cases:
 *  - augmented (dim_in == D + 1, the recipe's default): x = [e, 1] / ||[e, 1]||, A = [W | b];
 *    then W' Phi + b' = (W e + b) / ||[e, 1]||.
 *  - plain (dim_in == D, b NULL or all zero): x = e / ||e||, A = W; W' Phi + b' = W e / ||e||.
 * In both, the folded logits equal the original ones times a positive per-sample factor
 * (1/||[e,1]|| or 1/||e||), so the arg-max (and the ranking of classes) is unchanged; softmax
 * probabilities are NOT the same (the temperature changes per sample).
 * Phi must be the un-renormalised projection (mg_whiten_project): the retrieval descriptor
 * Phi/||Phi|| gives a different (not arg-max preserving) result when b' != 0.
 * A reduced whitening (dim_out < dim_in) is refused (no exact inverse); a non-zero bias with a
 * plain whitening is refused (use the augmented form). P^-T is computed by LU (LAPACKE_dgesv). */
mg_status mg_whiten_fold_classifier(const mg_whiten *w, const float *W, const float *b, int64_t K, int64_t D,
                                    float *W_out, float *b_out);

/* safetensors save/load (tensor names `whiten.mean`, `whiten.P`). */
mg_status mg_whiten_save(const mg_whiten *w, const char *path);
mg_status mg_whiten_load(const char *path, mg_whiten *out);

#ifdef __cplusplus
}
#endif
#endif
