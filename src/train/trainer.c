/* trainer.c: one MultiGrain optimisation step: forward, joint loss (λ·CE + (1−λ)·margin with
 * distance-weighted sampling), backward, SGD on the network and on β (see trainer.h). */
#include "multigrain/trainer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "multigrain/ops_layers.h"
#include "multigrain/schedule.h"

struct mg_trainer {
    mg_model *m;
    mg_config cfg;
    mg_schedule sched;
    float *momentum;     /* [n_params] */
    float *wd;           /* per parameter tensor index: weight decay */
    double beta, beta_mom, beta_grad;
    int64_t step;        /* optimizer steps done */
    int micro;           /* micro-batches accumulated towards the next step */
    int first_update;    /* torch's momentum buffer starts as the first gradient */
    float *dlogits, *demb;
    size_t cap_logits, cap_emb;
    mg_triplets trip;
    int idx_p;
};

mg_status mg_trainer_init(mg_trainer **out, mg_model *model, const mg_config *cfg, int64_t steps_per_epoch) {
    *out = NULL;
    if (!model || !cfg) return MG_FAIL(MG_ERR_INVALID_ARG, "trainer: null model or config");
    mg_trainer *t = calloc(1, sizeof *t);
    if (!t) return MG_FAIL(MG_ERR_NOMEM, "trainer: out of memory");
    t->m = model;
    t->cfg = *cfg;
    mg_status s = mg_schedule_init(&t->sched, cfg, steps_per_epoch);
    if (s != MG_OK) {
        free(t);
        return s;
    }
    t->momentum = calloc((size_t)mg_model_param_count(model), sizeof(float));
    if (!t->momentum) {
        free(t);
        return MG_FAIL(MG_ERR_NOMEM, "trainer: out of memory for momentum buffers");
    }
    t->beta = cfg->beta_init;
    t->first_update = 1;
    *out = t;
    return MG_OK;
}

void mg_trainer_free(mg_trainer *t) {
    if (!t) return;
    free(t->momentum);
    free(t->dlogits);
    free(t->demb);
    mg_triplets_free(&t->trip);
    free(t);
}

const mg_triplets *mg_trainer_last_triplets(const mg_trainer *t) { return &t->trip; }
int64_t mg_trainer_step_count(const mg_trainer *t) { return t->step; }
double mg_trainer_beta(const mg_trainer *t) { return t->beta; }

static mg_status ensure(float **buf, size_t *cap, size_t n) {
    if (*cap >= n) return MG_OK;
    float *p = realloc(*buf, n * sizeof(float));
    if (!p) return MG_FAIL(MG_ERR_NOMEM, "trainer: out of memory");
    *buf = p;
    *cap = n;
    return MG_OK;
}

/* SGD over every trainable tensor except the GeM exponent (a fixed buffer in joint training). */
static mg_status update_network(mg_trainer *t, double lr) {
    mg_model *m = t->m;
    float *params = mg_model_params(m), *grads = mg_model_grads(m);
    int n = mg_model_tensor_count(m);
    for (int i = 0; i < n; i++) {
        int kind, ndim;
        int64_t count;
        const char *name = mg_model_tensor_info(m, i, &kind, &ndim, NULL, &count);
        if (kind != 0 || !strcmp(name, "pool.p")) continue;
        float *w = mg_model_tensor_data(m, i);
        ptrdiff_t off = w - params;
        /* The recipe decays every parameter; wd_on_bn_bias = false exempts BN weights/biases and
         * biases (the 1-D tensors). */
        double wd = (ndim <= 1 && !t->cfg.wd_on_bn_bias) ? 0.0 : t->cfg.weight_decay;
        mg_sgd_args a = {.lr = (float)lr, .momentum = (float)t->cfg.momentum, .weight_decay = (float)wd,
                         .nesterov = t->cfg.nesterov};
        MG_TRY(mg_sgd_step(&a, (size_t)count, w, grads + off, t->momentum + off, t->first_update));
    }
    return MG_OK;
}

mg_status mg_trainer_step(mg_trainer *t, const float *images, int n, int h, int w, const int32_t *labels,
                          const int64_t *instance, mg_step_result *res) {
    if (!t || !images || !labels || !instance || !res)
        return MG_FAIL(MG_ERR_INVALID_ARG, "trainer step: null argument");
    memset(res, 0, sizeof *res);
    mg_model *m = t->m;
    const mg_config *c = &t->cfg;
    int k = mg_model_num_classes(m), dim = mg_model_embedding_dim(m);
    for (int i = 0; i < n; i++)
        if (labels[i] < 0 || labels[i] >= k)
            return MG_FAIL(MG_ERR_INVALID_ARG, "trainer step: label %d of sample %d outside [0, %d)", labels[i], i, k);
    if (t->micro == 0) {
        mg_model_zero_grad(m);
        t->beta_grad = 0;
    }
    double lambda = c->classif_weight, accum = c->grad_accum > 1 ? c->grad_accum : 1;
    mg_model_outputs o;
    MG_TRY(mg_model_forward(m, MG_MODE_TRAIN, images, n, h, w, &o));
    MG_TRY(ensure(&t->dlogits, &t->cap_logits, (size_t)n * k));
    MG_TRY(ensure(&t->demb, &t->cap_emb, (size_t)n * dim));
    float ce = 0;
    MG_TRY(mg_cross_entropy(n, k, o.logits, labels, (float)mg_config_label_smoothing(c), (float)(lambda / accum), &ce,
                            t->dlogits));
    res->loss_ce = ce;
    bool margin = lambda < 1.0;
    if (margin) {
        mg_dws_params dp = mg_dws_params_default();
        dp.nonzero_cutoff = c->beta_init + c->margin; /* 1.4 for the recipe's β0 = 1.2, α = 0.2 */
        dp.chunks = 1; /* per-rank sub-batch: the batch this process holds */
        MG_TRY(mg_dws_sample(o.embedding, instance, n, dim, &dp, (uint64_t)c->seed, (uint64_t)(t->step * accum + t->micro),
                             &t->trip));
        mg_margin_result mr;
        double gb = 0;
        MG_TRY(mg_margin_loss(o.embedding, n, dim, &t->trip, t->beta, c->margin, c->normalise_by,
                              (1.0 - lambda) / accum, &mr, t->demb, &gb));
        t->beta_grad += gb;
        res->loss_margin = mr.loss;
        res->triplets = t->trip.count;
    } else {
        t->trip.count = 0;
    }
    res->loss = lambda * res->loss_ce + (margin ? (1.0 - lambda) * res->loss_margin : 0.0);
    if (!isfinite(res->loss))
        return MG_FAIL(MG_ERR_NUMERIC, "training step %lld: the loss is not finite (cross-entropy %g, margin %g)",
                       (long long)t->step, res->loss_ce, res->loss_margin);
    MG_TRY(mg_model_backward(m, t->dlogits, margin ? t->demb : NULL, NULL));
    res->lr = mg_schedule_lr(&t->sched, t->step);
    if (++t->micro < (int)accum) {
        res->beta = t->beta;
        return MG_OK;
    }
    t->micro = 0;
    /* Non-finite gradients stop the run before they reach the weights. */
    const float *g = mg_model_grads(m);
    int64_t np = mg_model_param_count(m);
    double gsum = 0;
    for (int64_t i = 0; i < np; i++) gsum += g[i];
    if (!isfinite(gsum) || !isfinite(t->beta_grad))
        return MG_FAIL(MG_ERR_NUMERIC, "training step %lld: non-finite gradients (loss %g)", (long long)t->step,
                       res->loss);
    MG_TRY(update_network(t, res->lr));
    if (margin) {
        /* β: its own SGD with the same momentum, lr × beta_lr, no weight decay. */
        double blr = res->lr * c->beta_lr;
        t->beta_mom = t->first_update ? t->beta_grad : c->momentum * t->beta_mom + t->beta_grad;
        t->beta -= blr * (c->nesterov ? t->beta_grad + c->momentum * t->beta_mom : t->beta_mom);
    }
    t->first_update = 0;
    t->step++;
    res->beta = t->beta;
    res->updated = true;
    return MG_OK;
}

mg_status mg_trainer_checkpoint_add(mg_trainer *t, mg_checkpoint_writer *w) {
    mg_model *m = t->m;
    float *params = mg_model_params(m);
    int n = mg_model_tensor_count(m);
    char name[160];
    for (int i = 0; i < n; i++) {
        int kind, ndim;
        int64_t shape[4];
        const char *pn = mg_model_tensor_info(m, i, &kind, &ndim, shape, NULL);
        if (kind != 0 || !strcmp(pn, "pool.p")) continue;
        ptrdiff_t off = (float *)mg_model_tensor_data(m, i) - params;
        snprintf(name, sizeof name, "optimizer.momentum.%s", pn);
        MG_TRY(mg_checkpoint_writer_add(w, name, MG_DTYPE_F32, ndim, shape, t->momentum + off));
    }
    MG_TRY(mg_checkpoint_writer_add(w, "optimizer.beta", MG_DTYPE_F64, 0, NULL, &t->beta));
    MG_TRY(mg_checkpoint_writer_add(w, "optimizer.beta_momentum", MG_DTYPE_F64, 0, NULL, &t->beta_mom));
    MG_TRY(mg_checkpoint_writer_add(w, "optimizer.step", MG_DTYPE_I64, 0, NULL, &t->step));
    return MG_OK;
}

static mg_status read_scalar(const mg_checkpoint *c, const char *name, mg_dtype dtype, void *dst) {
    const mg_st_tensor *tt = mg_checkpoint_tensor(c, name);
    if (!tt) return MG_FAIL(MG_ERR_FORMAT, "%s: tensor '%s' is missing (not a training checkpoint?)", c->st.path, name);
    if (tt->dtype != dtype || tt->count != 1)
        return MG_FAIL(MG_ERR_FORMAT, "%s: tensor '%s': expected one %s value", c->st.path, name, mg_dtype_descr(dtype));
    mg_st_tensor_copy(tt, dst);
    return MG_OK;
}

mg_status mg_trainer_load_state(mg_trainer *t, const mg_checkpoint *c) {
    mg_model *m = t->m;
    float *params = mg_model_params(m);
    int n = mg_model_tensor_count(m);
    char name[160];
    for (int i = 0; i < n; i++) {
        int kind;
        int64_t count;
        const char *pn = mg_model_tensor_info(m, i, &kind, NULL, NULL, &count);
        if (kind != 0 || !strcmp(pn, "pool.p")) continue;
        ptrdiff_t off = (float *)mg_model_tensor_data(m, i) - params;
        snprintf(name, sizeof name, "optimizer.momentum.%s", pn);
        const mg_st_tensor *tt = mg_checkpoint_tensor(c, name);
        if (!tt) return MG_FAIL(MG_ERR_FORMAT, "%s: tensor '%s' is missing (not a training checkpoint?)", c->st.path, name);
        if (tt->dtype != MG_DTYPE_F32 || tt->count != count)
            return MG_FAIL(MG_ERR_FORMAT, "%s: tensor '%s': expected %lld float32 values", c->st.path, name,
                           (long long)count);
        mg_st_tensor_copy(tt, t->momentum + off);
    }
    MG_TRY(read_scalar(c, "optimizer.beta", MG_DTYPE_F64, &t->beta));
    MG_TRY(read_scalar(c, "optimizer.beta_momentum", MG_DTYPE_F64, &t->beta_mom));
    MG_TRY(read_scalar(c, "optimizer.step", MG_DTYPE_I64, &t->step));
    t->first_update = t->step == 0;
    t->micro = 0;
    return MG_OK;
}
