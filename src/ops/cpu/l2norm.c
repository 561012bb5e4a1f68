/* l2norm.c: row L2 normalisation y = x / (||x|| + 1e-6) (MultiGrain's embedding normalisation), forward
 * and backward; one kernel per row, the fast path spreads rows over the thread pool. */
#include <math.h>

#include "ops/cpu/layers_util.h"

typedef struct l2_ctx {
    int d;
    const float *x, *dy;
    float *y, *norms, *dx;
} l2_ctx;

static void l2_fwd_range(void *v, size_t b, size_t e) {
    l2_ctx *t = v;
    for (size_t r = b; r < e; r++) {
        const float *x = t->x + r * t->d;
        float *y = t->y + r * t->d;
        double s = 0;
        for (int i = 0; i < t->d; i++) s += (double)x[i] * x[i];
        float nrm = (float)sqrt(s), inv = 1.0f / (nrm + MG_L2NORM_EPS);
        if (t->norms) t->norms[r] = nrm;
        for (int i = 0; i < t->d; i++) y[i] = x[i] * inv;
    }
}

static void l2_bwd_range(void *v, size_t b, size_t e) {
    l2_ctx *t = v;
    for (size_t r = b; r < e; r++) {
        const float *x = t->x + r * t->d, *dy = t->dy + r * t->d;
        float *dx = t->dx + r * t->d;
        double ss = 0, dot = 0;
        for (int i = 0; i < t->d; i++) {
            ss += (double)x[i] * x[i];
            dot += (double)x[i] * dy[i];
        }
        double nrm = sqrt(ss), s = nrm + (double)MG_L2NORM_EPS;
        float inv = (float)(1.0 / s);
        float k = nrm > 0 ? (float)(dot / (nrm * s)) : 0.0f;
        for (int i = 0; i < t->d; i++) dx[i] = (dy[i] - x[i] * k) * inv;
    }
}

mg_status mg_l2norm_forward(int n, int d, const float *x, float *y, float *norms) {
    const char *op = "l2norm_forward";
    MG_CHECK_POS(op, n);
    MG_CHECK_POS(op, d);
    MG_CHECK_PTR(op, x);
    MG_CHECK_PTR(op, y);
    l2_ctx t = {.d = d, .x = x, .y = y, .norms = norms};
    if (mg_layers_use_fast())
        mg_layers_parallel_for((size_t)n, 16, l2_fwd_range, &t);
    else
        l2_fwd_range(&t, 0, (size_t)n);
    return MG_OK;
}

mg_status mg_l2norm_backward(int n, int d, const float *x, const float *dy, float *dx) {
    const char *op = "l2norm_backward";
    MG_CHECK_POS(op, n);
    MG_CHECK_POS(op, d);
    MG_CHECK_PTR(op, x);
    MG_CHECK_PTR(op, dy);
    MG_CHECK_PTR(op, dx);
    if (dx == x) return MG_FAIL(MG_ERR_INVALID_ARG, "%s: dx must not alias x (backward reads x)", op);
    l2_ctx t = {.d = d, .x = x, .dy = dy, .dx = dx};
    if (mg_layers_use_fast())
        mg_layers_parallel_for((size_t)n, 16, l2_bwd_range, &t);
    else
        l2_bwd_range(&t, 0, (size_t)n);
    return MG_OK;
}
