/* loss_margin.c: distance-weighted negative sampling and the margin loss (see loss_margin.h). */
#include "multigrain/loss_margin.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"

mg_dws_params mg_dws_params_default(void) {
    mg_dws_params p = {.cutoff = 0.5, .nonzero_cutoff = 1.4, .chunks = 1, .row_offset = 0};
    return p;
}

void mg_triplets_free(mg_triplets *t) {
    if (!t) return;
    free(t->anchor);
    free(t->positive);
    free(t->negative);
    memset(t, 0, sizeof *t);
}

static mg_status check_args(const float *emb, const int64_t *ids, int n, int d, const mg_dws_params *p) {
    if (!emb || !ids || !p) return MG_FAIL(MG_ERR_INVALID_ARG, "distance-weighted sampling: null argument");
    if (n < 1 || d < 4)
        return MG_FAIL(MG_ERR_INVALID_ARG,
                       "distance-weighted sampling: expected n >= 1 rows of dimension d >= 4, found n=%d d=%d", n, d);
    if (!(p->cutoff > 0 && p->cutoff < 2) || !(p->nonzero_cutoff > p->cutoff))
        return MG_FAIL(MG_ERR_INVALID_ARG,
                       "distance-weighted sampling: expected 0 < cutoff < nonzero_cutoff, found %g and %g",
                       p->cutoff, p->nonzero_cutoff);
    if (p->chunks < 1 || n % p->chunks != 0)
        return MG_FAIL(MG_ERR_INVALID_ARG,
                       "distance-weighted sampling: batch of %d rows cannot be cut into %d equal chunks", n,
                       p->chunks);
    return MG_OK;
}

/* a.b in double over d elements, in four interleaved partial sums (a single chain of dependent double
 * adds made the sampler ~6 % of a demo training step at batch 192). */
static double dot_f64(const float *a, const float *b, int d) {
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int k = 0;
    for (; k + 4 <= d; k += 4) {
        s0 += (double)a[k] * b[k];
        s1 += (double)a[k + 1] * b[k + 1];
        s2 += (double)a[k + 2] * b[k + 2];
        s3 += (double)a[k + 3] * b[k + 3];
    }
    for (; k < d; k++) s0 += (double)a[k] * b[k];
    return (s0 + s1) + (s2 + s3);
}

/* Distance between rows i and j in double: sqrt(max(0, |xi|^2 + |xj|^2 - 2 xi.xj)), the expansion the
 * original uses, clamped at 0 before the square root (rounding can make it slightly negative).
 * sqn[i] = |xi|^2, computed once per batch by dot_f64. */
static double row_distance(const float *emb, const double *sqn, int d, int i, int j) {
    double sq = sqn[i] + sqn[j] - 2 * dot_f64(emb + (size_t)i * d, emb + (size_t)j * d, d);
    if (isnan(sq)) return NAN; /* a diverged row is no neighbour (the clamp below would make it 0) */
    return sqrt(sq > 0 ? sq : 0);
}

/* sqn[k] = |x_k|^2 for the rows [lo, hi). */
static void row_norms(const float *emb, int d, int lo, int hi, double *sqn) {
    for (int k = lo; k < hi; k++) sqn[k] = dot_f64(emb + (size_t)k * d, emb + (size_t)k * d, d);
}

/* log q(D)^-1 up to a constant, with D already clamped at the cutoff (< 2 is required: D >= the
 * nonzero cutoff is excluded before this is evaluated, so 1 - D^2/4 > 0). */
static double log_inv_q(double D, int d) {
    return (2.0 - d) * log(D) - ((d - 3) / 2.0) * log(1.0 - 0.25 * D * D);
}

/* Fills probs[lo..hi) for anchor i (zero outside the admissible set); returns the admissible count. */
static int anchor_probabilities(const float *emb, const double *sqn, const int64_t *ids, int d,
                                const mg_dws_params *p, int i, int lo, int hi, double *probs) {
    int admissible = 0;
    double mx = -INFINITY;
    for (int k = lo; k < hi; k++) {
        probs[k] = -INFINITY;
        if (ids[k] == ids[i]) continue;
        double D = row_distance(emb, sqn, d, i, k);
        if (D < p->cutoff) D = p->cutoff;
        if (!(D < p->nonzero_cutoff)) continue; /* also NaN: a diverged embedding is never drawn */
        probs[k] = log_inv_q(D, d);
        if (probs[k] > mx) mx = probs[k];
        admissible++;
    }
    /* Subtract the anchor's own max before exponentiating: with d = 2048 the log-weights span
     * thousands of nats, and a global max (as the original) underflows whole rows to zero. */
    double sum = 0;
    for (int k = lo; k < hi; k++) {
        probs[k] = admissible ? exp(probs[k] - mx) : 0.0; /* exp(-inf) = 0 */
        sum += probs[k];
    }
    for (int k = lo; k < hi; k++) probs[k] = admissible ? probs[k] / sum : 0.0;
    return admissible;
}

mg_status mg_dws_probabilities(const float *emb, const int64_t *ids, int n, int d, const mg_dws_params *params,
                               int i, double *probs, int *admissible) {
    MG_TRY(check_args(emb, ids, n, d, params));
    if (!probs || !admissible || i < 0 || i >= n)
        return MG_FAIL(MG_ERR_INVALID_ARG, "distance-weighted sampling: anchor %d outside [0, %d)", i, n);
    int chunk = n / params->chunks;
    int lo = i / chunk * chunk;
    memset(probs, 0, (size_t)n * sizeof *probs);
    double *sqn = malloc((size_t)n * sizeof *sqn);
    if (!sqn) return MG_FAIL(MG_ERR_NOMEM, "distance-weighted sampling: out of memory");
    row_norms(emb, d, lo, lo + chunk, sqn);
    *admissible = anchor_probabilities(emb, sqn, ids, d, params, i, lo, lo + chunk, probs);
    free(sqn);
    return MG_OK;
}

static mg_status triplets_push(mg_triplets *t, int a, int p, int ng) {
    if (t->count == t->capacity) {
        int64_t cap = t->capacity ? t->capacity * 2 : 256;
        int32_t *na = realloc(t->anchor, (size_t)cap * sizeof *na);
        if (na) t->anchor = na;
        int32_t *np = realloc(t->positive, (size_t)cap * sizeof *np);
        if (np) t->positive = np;
        int32_t *nn = realloc(t->negative, (size_t)cap * sizeof *nn);
        if (nn) t->negative = nn;
        if (!na || !np || !nn) return MG_FAIL(MG_ERR_NOMEM, "distance-weighted sampling: out of memory");
        t->capacity = cap;
    }
    t->anchor[t->count] = a;
    t->positive[t->count] = p;
    t->negative[t->count] = ng;
    t->count++;
    return MG_OK;
}

/* Draws one index from the (unnormalised) weights w[lo..hi) whose sum is `total`. */
static int draw_weighted(mg_rng *rng, const double *w, int lo, int hi, double total) {
    double u = mg_rng_uniform(rng) * total;
    int last = -1;
    for (int k = lo; k < hi; k++) {
        if (w[k] <= 0) continue;
        last = k;
        if (u < w[k]) return k;
        u -= w[k];
    }
    return last; /* rounding at the very end of the range */
}

mg_status mg_dws_sample(const float *emb, const int64_t *ids, int n, int d, const mg_dws_params *params,
                        uint64_t seed, uint64_t step, mg_triplets *out) {
    MG_TRY(check_args(emb, ids, n, d, params));
    if (!out) return MG_FAIL(MG_ERR_INVALID_ARG, "distance-weighted sampling: null output");
    out->count = 0;
    out->uniform_fallbacks = 0;
    double *w = malloc((size_t)n * sizeof *w), *sqn = malloc((size_t)n * sizeof *sqn);
    if (!w || !sqn) {
        free(w), free(sqn);
        return MG_FAIL(MG_ERR_NOMEM, "distance-weighted sampling: out of memory");
    }
    row_norms(emb, d, 0, n, sqn);
    mg_status s = MG_OK;
    int chunk = n / params->chunks;
    for (int i = 0; i < n && s == MG_OK; i++) {
        int lo = i / chunk * chunk, hi = lo + chunk;
        int positives = 0, others = 0;
        for (int k = lo; k < hi; k++) {
            if (k == i) continue;
            if (ids[k] == ids[i]) positives++;
            else others++;
        }
        if (positives == 0 || others == 0) continue;
        mg_rng rng;
        mg_rng_init(&rng, seed, step, (uint64_t)(i + params->row_offset), 0x64777331 /* "dws1" */);
        anchor_probabilities(emb, sqn, ids, d, params, i, lo, hi, w);
        /* The negatives that can actually be drawn: an admissible one whose weight underflowed
         * (log-weights span thousands of nats at d = 2048) has probability 0. Counting those would
         * choose drawing without replacement and then run out of weight. */
        int admissible = 0;
        for (int k = lo; k < hi; k++) admissible += w[k] > 0;
        if (admissible == 0) {
            /* Uniform fallback over every row of another instance. */
            out->uniform_fallbacks++;
            for (int k = lo; k < hi; k++) w[k] = ids[k] != ids[i] ? 1.0 : 0.0;
            admissible = others;
        }
        double total = 0;
        for (int k = lo; k < hi; k++) total += w[k];
        int replace = admissible < positives; /* without replacement while possible */
        for (int j = lo; j < hi && s == MG_OK; j++) {
            if (j == i || ids[j] != ids[i]) continue;
            int neg = draw_weighted(&rng, w, lo, hi, total);
            MG_ASSERT(neg >= 0);
            if (!replace) {
                total -= w[neg];
                w[neg] = 0;
                if (total <= 0) { /* only when every remaining weight underflowed */
                    for (int k = lo; k < hi; k++) total += w[k];
                }
            }
            s = triplets_push(out, i, j, neg);
        }
    }
    free(w);
    free(sqn);
    return s;
}

mg_status mg_margin_loss(const float *emb, int n, int d, const mg_triplets *t, double beta, double alpha,
                         mg_margin_norm norm, double scale, mg_margin_result *res, float *demb, double *dbeta) {
    if (!emb || !t || !res || n < 1 || d < 1)
        return MG_FAIL(MG_ERR_INVALID_ARG, "margin loss: null argument or empty batch (n=%d, d=%d)", n, d);
    for (int64_t k = 0; k < t->count; k++) {
        if (t->anchor[k] < 0 || t->anchor[k] >= n || t->positive[k] < 0 || t->positive[k] >= n ||
            t->negative[k] < 0 || t->negative[k] >= n)
            return MG_FAIL(MG_ERR_INVALID_ARG, "margin loss: triplet %lld refers to a row outside [0, %d)",
                           (long long)k, n);
    }
    memset(res, 0, sizeof *res);
    double sum = 0;
    for (int64_t k = 0; k < t->count; k++) {
        const float *a = emb + (size_t)t->anchor[k] * d, *p = emb + (size_t)t->positive[k] * d,
                    *ng = emb + (size_t)t->negative[k] * d;
        double sp = 0, sn = 0;
        for (int c = 0; c < d; c++) {
            double u = (double)p[c] - a[c], v = (double)ng[c] - a[c];
            sp += u * u;
            sn += v * v;
        }
        double dap = sqrt(sp + 1e-8), dan = sqrt(sn + 1e-8);
        double pos = dap - beta + alpha, neg = beta - dan + alpha;
        if (pos > 0) { sum += pos; res->active_pos++; }
        if (neg > 0) { sum += neg; res->active_neg++; }
    }
    if (norm == MG_MARGIN_NORM_ACTIVE) {
        int64_t cnt = res->active_pos + res->active_neg;
        res->normaliser = cnt > 0 ? (double)cnt : 1.0;
    } else {
        res->normaliser = t->count > 0 ? 2.0 * (double)t->count : 1.0;
    }
    res->loss = sum / res->normaliser;
    if (!demb && !dbeta) return MG_OK;
    if (demb) memset(demb, 0, (size_t)n * d * sizeof *demb);
    double g = scale / res->normaliser, gbeta = 0;
    for (int64_t k = 0; k < t->count; k++) {
        int ia = t->anchor[k], ip = t->positive[k], in = t->negative[k];
        const float *a = emb + (size_t)ia * d, *p = emb + (size_t)ip * d, *ng = emb + (size_t)in * d;
        double sp = 0, sn = 0;
        for (int c = 0; c < d; c++) {
            double u = (double)p[c] - a[c], v = (double)ng[c] - a[c];
            sp += u * u;
            sn += v * v;
        }
        double dap = sqrt(sp + 1e-8), dan = sqrt(sn + 1e-8);
        int pos_on = dap - beta + alpha > 0, neg_on = beta - dan + alpha > 0;
        if (pos_on) gbeta -= g;
        if (neg_on) gbeta += g;
        if (!demb) continue;
        /* d dap / d p = (p - a) / dap ; d dap / d a = -(p - a) / dap ; likewise for dan (with a minus
         * sign from the loss). */
        double cp = pos_on ? g / dap : 0.0, cn = neg_on ? -g / dan : 0.0;
        for (int c = 0; c < d; c++) {
            double u = (double)p[c] - a[c], v = (double)ng[c] - a[c];
            demb[(size_t)ip * d + c] += (float)(cp * u);
            demb[(size_t)in * d + c] += (float)(cn * v);
            demb[(size_t)ia * d + c] -= (float)(cp * u + cn * v);
        }
    }
    if (dbeta) *dbeta += gbeta;
    return MG_OK;
}
