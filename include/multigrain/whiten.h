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

/* The recipe's augmented input: out[d+1] = [e, 1] / (||[e, 1]|| + 1e-6) (MultiGrain's l2n, the
 * same convention as the whitened model's forward, model.h). */
void mg_whiten_augment(const float *e, int64_t d, float *out);

/* Folds a whitening into a linear classifier logits = W e + b (W [K, D] row-major, b [K] or NULL),
 * e the raw (un-normalised) embedding. P must be square and invertible (dim_out == dim_in).
 * Let x be the vector the whitening was learned on and Phi = (x - m) . P (NOT renormalised), so
 * x = Phi . P^-1 + m and, for any A [K, dim_in],  A x = (A P^-T) Phi + A m.
 * W_out is always [K, D + 1]; b_out is [K]. Two exact forms, chosen by w->dim_in:
 *  - plain (dim_in == D; x = e / ||e||). DEPRECATED algebra only: no file format uses it any more
 *    (the network and the checkpoint format run the augmented form); kept for tests of the algebra:
 *        W_out = [W P^-T | b],  b_out = W m,  classifier input z = [Phi, 1 / ||e||];
 *        W_out z + b_out = W P^-T Phi + W m + b / ||e|| = W x + b / ||e|| = (W e + b) / ||e||.
 *  - augmented (dim_in == D + 1; x = l2n([e, 1]) (mg_whiten_augment), recipe §2.3; THE checkpoint
 *    format's form, written by mg_whiten_fold_checkpoint):
 *        A = [W | b],  W_out = A P^-T,  b_out = A m,  classifier input z = Phi;
 *        W_out z + b_out = A x = (W e + b) / (||[e, 1]|| + 1e-6).
 * In both, the folded logits equal the original ones times a positive per-sample factor
 * (1/||e|| or 1/||[e,1]||), so the arg-max (and the order of classes) is unchanged; softmax
 * probabilities are NOT the same (the factor acts as a per-sample temperature).
 * Phi must be the un-renormalised projection (mg_whiten_project), not the retrieval descriptor
 * Phi/||Phi||. A reduced whitening (dim_out < dim_in) has no exact fold and is refused.
 * P^-T is applied by an LU solve in float64 (LAPACKE_dgesv), so any invertible P works. */
mg_status mg_whiten_fold_classifier(const mg_whiten *w, const float *W, const float *b, int64_t K, int64_t D,
                                    float *W_out, float *b_out);

/* Writes a copy of checkpoint `in_path` with the whitening folded into its classifier, in the
 * recipe's (augmented) form, the only whitened checkpoint format (docs/formats.md):
 * fc.weight [K, D+1] = [W | b] P^-T, fc.bias = [W | b] m, whiten.mean [D+1], whiten.P [D+1, D+1],
 * metadata whitened = 1 and "whiten.fc_input" describing the classifier input. The whitening must be
 * full-dimension and learned on l2n([e, 1]) rows (dim_in == D + 1, D = fc.weight's input width; see
 * mg_whiten_augment). optimizer.* / state.* tensors are dropped (the result is for inference).
 * The network using it computes Phi = (l2n([e, 1]) - m) P and logits = fc.weight Phi + fc.bias
 * = (W e + b) / (||[e, 1]|| + 1e-6): same arg-max as the original. */
mg_status mg_whiten_fold_checkpoint(const char *in_path, const mg_whiten *w, const char *out_path);

/* safetensors save/load (tensor names `whiten.mean`, `whiten.P`). */
mg_status mg_whiten_save(const mg_whiten *w, const char *path);
mg_status mg_whiten_load(const char *path, mg_whiten *out);

#ifdef __cplusplus
}
#endif
#endif
