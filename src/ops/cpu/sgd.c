/* sgd.c: one SGD step with momentum / Nesterov / per-tensor weight decay, torch.optim.SGD semantics
 * (dampening 0). Reference: one serial loop; fast: the same loop over coarse chunks on the thread pool.
 * The operation order mirrors torch's (g + wd*w; mu*v + g'; w + (-lr)*d) so results match bit for bit
 * up to the compiler's contraction choices. */
#include <math.h>

#include "ops/cpu/layers_util.h"

typedef struct sgd_ctx {
    mg_sgd_args a;
    float *w, *v;
    const float *g;
    int first;
} sgd_ctx;

/* One function per case (no loop-invariant branches inside a loop, so -O2 vectorises each; restrict: w, g
 * and v are distinct tensors). wd = 0 adds 0*w = +-0 to g, which leaves g unchanged for finite weights. */
#define SGD_KERNEL(name, body)                                                                     \
    __attribute__((noinline)) static void name(float *restrict w, const float *restrict g, float *restrict v, \
                                               size_t n, float lr, float mu, float wd) {           \
        (void)v, (void)mu;                                                                         \
        size_t n8 = n & ~(size_t)7;                                                                \
        for (size_t i = 0; i < n8; i++) {                                                          \
            body;                                                                                  \
        }                                                                                          \
        for (size_t i = n8; i < n; i++) {                                                          \
            body;                                                                                  \
        }                                                                                          \
    }
SGD_KERNEL(sgd_plain, float gi = g[i] + wd * w[i]; w[i] = w[i] + (-lr) * gi)
SGD_KERNEL(sgd_first, float gi = g[i] + wd * w[i]; v[i] = gi; w[i] = w[i] + (-lr) * gi)
SGD_KERNEL(sgd_first_nesterov, float gi = g[i] + wd * w[i]; v[i] = gi; w[i] = w[i] + (-lr) * (gi + mu * gi))
SGD_KERNEL(sgd_momentum, float gi = g[i] + wd * w[i]; float vi = mu * v[i] + gi; v[i] = vi;
           w[i] = w[i] + (-lr) * vi)
SGD_KERNEL(sgd_nesterov, float gi = g[i] + wd * w[i]; float vi = mu * v[i] + gi; v[i] = vi;
           w[i] = w[i] + (-lr) * (gi + mu * vi))

static void sgd_kernel(float *w, const float *g, float *v, size_t n, float lr, float mu, float wd, int nesterov,
                       int first) {
    if (mu == 0.0f)
        sgd_plain(w, g, v, n, lr, mu, wd);
    else if (first)
        (nesterov ? sgd_first_nesterov : sgd_first)(w, g, v, n, lr, mu, wd);
    else
        (nesterov ? sgd_nesterov : sgd_momentum)(w, g, v, n, lr, mu, wd);
}

static void sgd_range(void *p, size_t b, size_t e) {
    sgd_ctx *t = p;
    sgd_kernel(t->w + b, t->g + b, t->v ? t->v + b : NULL, e - b, t->a.lr, t->a.momentum, t->a.weight_decay,
               t->a.nesterov, t->first);
}

mg_status mg_sgd_step(const mg_sgd_args *a, size_t n, float *w, const float *g, float *v, int first_step) {
    const char *op = "sgd_step";
    MG_CHECK_PTR(op, a);
    MG_CHECK_PTR(op, w);
    MG_CHECK_PTR(op, g);
    if (a->momentum != 0.0f) MG_CHECK_PTR(op, v);
    if (!isfinite(a->lr) || !(a->momentum >= 0.0f) || !isfinite(a->momentum) || !isfinite(a->weight_decay))
        return MG_FAIL(MG_ERR_INVALID_ARG, "%s: expected finite lr, weight_decay and momentum >= 0, found lr=%g momentum=%g wd=%g",
                       op, (double)a->lr, (double)a->momentum, (double)a->weight_decay);
    if (a->nesterov && a->momentum <= 0.0f)
        return MG_FAIL(MG_ERR_INVALID_ARG, "%s: Nesterov momentum requires momentum > 0 (torch's rule)", op);
    sgd_ctx t = {*a, w, v, g, first_step};
    if (mg_layers_use_fast())
        mg_layers_parallel_for(n, 65536, sgd_range, &t);
    else
        sgd_range(&t, 0, n);
    return MG_OK;
}
