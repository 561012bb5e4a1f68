/* loss_ce.c: softmax cross-entropy with optional label smoothing (F.cross_entropy, mean over the batch),
 * returning the loss and writing the logits gradient. Stable log-sum-exp; per-row kernel, the fast path
 * spreads fixed row chunks over the thread pool (fixed chunks: the loss does not depend on threads). */
#include <math.h>

#include "ops/cpu/layers_util.h"

#define CE_CHUNKS 64

typedef struct ce_ctx {
    int n, k;
    const float *z;
    const int32_t *y;
    float ls, gscale;
    float *dz;
    double part[CE_CHUNKS];
} ce_ctx;

static double ce_rows(ce_ctx *t, size_t b, size_t e) {
    double total = 0, K = t->k, ls = t->ls;
    for (size_t r = b; r < e; r++) {
        const float *z = t->z + r * (size_t)t->k;
        int y = t->y[r];
        float m = z[0];
        for (int c = 1; c < t->k; c++) m = z[c] > m ? z[c] : m;
        double se = 0, sz = 0;
        for (int c = 0; c < t->k; c++) {
            se += exp((double)z[c] - m);
            sz += z[c];
        }
        double lse = m + log(se);
        /* -(1-ls) log p_y - ls/K sum_c log p_c */
        total += (1.0 - ls) * (lse - z[y]) + ls * (lse - sz / K);
        if (t->dz) {
            float *dz = t->dz + r * (size_t)t->k;
            double g = (double)t->gscale / t->n, u = ls / K;
            for (int c = 0; c < t->k; c++) {
                double pc = exp((double)z[c] - lse);
                dz[c] = (float)(g * (pc - u - (c == y ? 1.0 - ls : 0.0)));
            }
        }
    }
    return total;
}

static void ce_range(void *v, size_t b, size_t e) {
    ce_ctx *t = v;
    size_t chunks = t->n < CE_CHUNKS ? (size_t)t->n : CE_CHUNKS;
    for (size_t i = b; i < e; i++)
        t->part[i] = ce_rows(t, i * (size_t)t->n / chunks, (i + 1) * (size_t)t->n / chunks);
}

mg_status mg_cross_entropy(int n, int k, const float *logits, const int32_t *labels, float label_smoothing,
                           float grad_scale, float *loss, float *dlogits) {
    const char *op = "cross_entropy";
    MG_CHECK_POS(op, n);
    MG_CHECK_POS(op, k);
    MG_CHECK_PTR(op, logits);
    MG_CHECK_PTR(op, labels);
    MG_CHECK_PTR(op, loss);
    if (!(label_smoothing >= 0.0f && label_smoothing <= 1.0f))
        return MG_FAIL(MG_ERR_INVALID_ARG, "%s: label_smoothing must be in [0, 1], found %g", op,
                       (double)label_smoothing);
    for (int i = 0; i < n; i++)
        if (labels[i] < 0 || labels[i] >= k)
            return MG_FAIL(MG_ERR_INVALID_ARG, "%s: labels[%d] = %d outside [0, %d)", op, i, (int)labels[i], k);
    ce_ctx t = {.n = n, .k = k, .z = logits, .y = labels, .ls = label_smoothing, .gscale = grad_scale,
                .dz = dlogits};
    size_t chunks = n < CE_CHUNKS ? (size_t)n : CE_CHUNKS;
    if (mg_layers_use_fast())
        mg_layers_parallel_for(chunks, 1, ce_range, &t);
    else
        ce_range(&t, 0, chunks);
    double s = 0;
    for (size_t i = 0; i < chunks; i++) s += t.part[i];
    *loss = (float)(s / n);
    return MG_OK;
}
