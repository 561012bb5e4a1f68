/* loss_margin.h: MultiGrain's retrieval loss: distance-weighted negative sampling (Wu et al. 2017,
 * as used by MultiGrain, recipe §1.3 and §2.4) and the margin loss with a learnable boundary beta.
 *
 * Inputs are L2-normalised embeddings [n, d] and one instance id per row (rows with the same id are
 * augmented copies of the same image: the positives). The sampler emits triplets (anchor, positive,
 * negative): every ordered positive pair (i, j), i != j, of the same instance, with one negative drawn
 * for it from p(k | i) ∝ q(max(D_ik, cutoff))^-1 over rows of another instance with D_ik < nonzero_cutoff,
 * where q(z) ∝ z^(d-2) (1 - z^2/4)^((d-3)/2) is the density of distances between uniform points on
 * the unit sphere of R^d. See docs/loss.md for the exact semantics and where they differ from the
 * original code. */
#ifndef MULTIGRAIN_LOSS_MARGIN_H
#define MULTIGRAIN_LOSS_MARGIN_H

#include <stdint.h>

#include "multigrain/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mg_dws_params {
    double cutoff;         /* distances are clamped from below at this value before weighting (0.5) */
    double nonzero_cutoff; /* negatives at clamped distance >= this get weight 0 (1.4 = beta0 + alpha) */
    int chunks;            /* sample within `chunks` equal consecutive sub-batches (per-GPU sampling);
                              1 = global sampling over the whole batch */
    int64_t row_offset;    /* index of row 0 in the global batch (data parallel: this rank's first row);
                              only selects the random stream of each anchor, so a rank sampling its
                              share draws what one process with chunks = world draws for those rows */
} mg_dws_params;

/* The recipe's defaults: cutoff 0.5, nonzero_cutoff 1.4, chunks 1, row_offset 0. */
mg_dws_params mg_dws_params_default(void);

typedef struct mg_triplets {
    int64_t count;
    int64_t capacity;
    int32_t *anchor, *positive, *negative; /* row indices into the batch */
    int64_t uniform_fallbacks;             /* anchors whose admissible set was empty */
} mg_triplets;

void mg_triplets_free(mg_triplets *t);

/* Draws triplets. emb: [n, d] rows L2-normalised; ids: [n]; seed and step select the random stream
 * (reproducible). Draws without replacement within an anchor while enough admissible negatives of
 * nonzero probability exist (a far one's weight can underflow to 0), then with replacement; an anchor
 * with none (all at distance >= the nonzero cutoff, or NaN) draws uniformly among all rows of another
 * instance, as the original does.
 * Anchors without any row of another instance produce no triplets. */
mg_status mg_dws_sample(const float *emb, const int64_t *ids, int n, int d, const mg_dws_params *params,
                        uint64_t seed, uint64_t step, mg_triplets *out);

/* The normalised sampling probabilities p(k | i) of one anchor (row i), written to probs[n]
 * (double precision; all zero except admissible k). Returns the admissible count through *admissible.
 * Exposed for tests and diagnostics. */
mg_status mg_dws_probabilities(const float *emb, const int64_t *ids, int n, int d, const mg_dws_params *params,
                               int i, double *probs, int *admissible);

typedef enum mg_margin_norm {
    MG_MARGIN_NORM_ACTIVE = 0, /* divide by the number of strictly positive terms (pos and neg counted
                                  separately, Wu et al. / the released MultiGrain models) */
    MG_MARGIN_NORM_PAIRS = 1,  /* divide by |P(B)| = 2 * triplets (the paper's eq. 5) */
    MG_MARGIN_NORM_COUNT
} mg_margin_norm;

typedef struct mg_margin_result {
    double loss;
    int64_t active_pos, active_neg; /* strictly positive terms */
    double normaliser;
} mg_margin_result;

/* Forward and backward in one call (the loss is cheap; the triplets are fixed for the step).
 * loss = sum_t [max(0, d_ap - beta + alpha) + max(0, beta - d_an + alpha)] / normaliser,
 * d_xy = sqrt(|x - y|^2 + 1e-8). demb ([n, d], may be NULL) is WRITTEN with dloss/demb times
 * `scale` (pass lambda's complement to fold the joint-loss weight in); dbeta (may be NULL) is
 * ACCUMULATED with scale * dloss/dbeta. */
mg_status mg_margin_loss(const float *emb, int n, int d, const mg_triplets *t, double beta, double alpha,
                         mg_margin_norm norm, double scale, mg_margin_result *res, float *demb, double *dbeta);

#ifdef __cplusplus
}
#endif
#endif
