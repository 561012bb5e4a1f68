/* trainer.c: one MultiGrain optimisation step: forward, joint loss (λ·CE + (1−λ)·margin with
 * distance-weighted sampling), backward, SGD on the network and on β (see trainer.h). */
#include "multigrain/trainer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "multigrain/dist.h"
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
    /* data parallel (mg_trainer_set_dist): borrowed group, per-rank counts, gathered embeddings */
    mg_dist *dist;
    int64_t *counts;     /* [world] samples of each rank in this micro-batch */
    size_t *gbytes;      /* [world] bytes per rank for the all-gathers */
    float *gemb, *gdemb; /* global sampling: [N, dim] gathered embeddings and their gradient */
    int64_t *gids;       /* [N] */
    size_t cap_g;
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
    if (t->dist) mg_model_set_bn_sync(t->m, NULL, NULL);
    free(t->counts);
    free(t->gbytes);
    free(t->gemb);
    free(t->gdemb);
    free(t->gids);
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

/* ---- data parallel ---------------------------------------------------------------------------- */

static mg_status bn_reduce(void *ctx, double *data, size_t n) { return mg_dist_allreduce_sum_f64(ctx, data, n); }

mg_status mg_trainer_set_dist(mg_trainer *t, mg_dist *d) {
    if (!t) return MG_FAIL(MG_ERR_INVALID_ARG, "trainer: null trainer");
    int w = mg_dist_world(d);
    free(t->counts);
    free(t->gbytes);
    t->counts = calloc((size_t)w, sizeof *t->counts);
    t->gbytes = calloc((size_t)w, sizeof *t->gbytes);
    if (!t->counts || !t->gbytes) return MG_FAIL(MG_ERR_NOMEM, "trainer: out of memory");
    t->dist = d;
    /* sync BN: every training-mode BN layer sums its statistics over the ranks */
    mg_model_set_bn_sync(t->m, w > 1 && t->cfg.sync_bn ? bn_reduce : NULL, d);
    return MG_OK;
}

/* Every rank's sample count for this micro-batch: the global count N and this rank's first row. */
static mg_status gather_counts(mg_trainer *t, int n, int64_t *total, int64_t *offset) {
    int w = mg_dist_world(t->dist), r = mg_dist_rank(t->dist);
    int64_t mine = n;
    for (int k = 0; k < w; k++) t->gbytes[k] = sizeof mine;
    MG_TRY(mg_dist_allgatherv(t->dist, &mine, t->gbytes, t->counts));
    *total = 0;
    *offset = 0;
    for (int k = 0; k < w; k++) {
        if (k < r) *offset += t->counts[k];
        *total += t->counts[k];
    }
    return MG_OK;
}

/* Global sampling: all-gather the embeddings and instance ids, sample and compute the margin loss
 * over the whole global batch (every rank the same, = one process with chunks = 1), and keep this
 * rank's rows of the gradient (the per-rank gradients are summed afterwards). β's gradient, the same
 * on every rank, is kept by rank 0 only, so that the sum is that gradient once. */
static mg_status margin_global(mg_trainer *t, const float *emb, const int64_t *ids, int n, int dim, int64_t total,
                               int64_t offset, const mg_dws_params *dp, uint64_t sstep, double scale,
                               mg_margin_result *mr, double *gb) {
    int w = mg_dist_world(t->dist);
    size_t need = (size_t)total * (size_t)dim;
    if (t->cap_g < need) {
        float *a = realloc(t->gemb, need * sizeof *a);
        if (a) t->gemb = a;
        float *b = realloc(t->gdemb, need * sizeof *b);
        if (b) t->gdemb = b;
        int64_t *c = realloc(t->gids, (size_t)total * sizeof *c);
        if (c) t->gids = c;
        if (!a || !b || !c) return MG_FAIL(MG_ERR_NOMEM, "trainer: out of memory for the gathered embeddings");
        t->cap_g = need;
    }
    for (int k = 0; k < w; k++) t->gbytes[k] = (size_t)t->counts[k] * (size_t)dim * sizeof(float);
    MG_TRY(mg_dist_allgatherv(t->dist, emb, t->gbytes, t->gemb));
    for (int k = 0; k < w; k++) t->gbytes[k] = (size_t)t->counts[k] * sizeof(int64_t);
    MG_TRY(mg_dist_allgatherv(t->dist, ids, t->gbytes, t->gids));
    MG_TRY(mg_dws_sample(t->gemb, t->gids, (int)total, dim, dp, (uint64_t)t->cfg.seed, sstep, &t->trip));
    MG_TRY(mg_margin_loss(t->gemb, (int)total, dim, &t->trip, t->beta, t->cfg.margin, t->cfg.normalise_by, scale, mr,
                          t->gdemb, gb));
    memcpy(t->demb, t->gdemb + (size_t)offset * dim, (size_t)n * dim * sizeof(float));
    if (mg_dist_rank(t->dist) != 0) *gb = 0;
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
    /* Data parallel (world W > 1): rank r holds n_r of the N samples. Each rank computes the gradient
     * of its part of the global-batch loss, so that the SUM over the ranks after backward is the
     * gradient of the global loss (no division by W afterwards): the
     * cross-entropy mean is weighted by n_r / N, the margin loss is normalised by the GLOBAL normaliser
     * (summed over the ranks), and the reported losses are the global ones, identical on every rank.
     * With W = 1 nothing changes. */
    int world = mg_dist_world(t->dist);
    int64_t total = n, offset = 0;
    if (world > 1) MG_TRY(gather_counts(t, n, &total, &offset));
    res->samples = total;
    double lambda = c->classif_weight, accum = c->grad_accum > 1 ? c->grad_accum : 1;
    mg_model_outputs o;
    MG_TRY(mg_model_forward(m, MG_MODE_TRAIN, images, n, h, w, &o));
    MG_TRY(ensure(&t->dlogits, &t->cap_logits, (size_t)n * k));
    MG_TRY(ensure(&t->demb, &t->cap_emb, (size_t)n * dim));
    float ce = 0;
    double ce_scale = lambda / accum;
    if (world > 1) ce_scale *= (double)n / (double)total;
    MG_TRY(mg_cross_entropy(n, k, o.logits, labels, (float)mg_config_label_smoothing(c), (float)ce_scale, &ce,
                            t->dlogits));
    res->loss_ce = ce;
    bool margin = lambda < 1.0;
    bool global = margin && world > 1 && c->global_sampling;
    mg_margin_result mr = {0};
    double gb = 0;
    if (margin) {
        mg_dws_params dp = mg_dws_params_default();
        dp.nonzero_cutoff = c->beta_init + c->margin; /* 1.4 for the recipe's β0 = 1.2, α = 0.2 */
        uint64_t sstep = (uint64_t)(t->step * accum + t->micro);
        if (global) {
            MG_TRY(margin_global(t, o.embedding, instance, n, dim, total, offset, &dp, sstep, (1.0 - lambda) / accum,
                                 &mr, &gb));
        } else {
            /* per-rank sub-batch (the recipe's per-GPU sampling), optionally cut in sampling_chunks parts;
             * the random stream of each anchor is keyed by its row in the global batch */
            dp.chunks = c->sampling_chunks;
            dp.row_offset = offset;
            MG_TRY(mg_dws_sample(o.embedding, instance, n, dim, &dp, (uint64_t)c->seed, sstep, &t->trip));
            MG_TRY(mg_margin_loss(o.embedding, n, dim, &t->trip, t->beta, c->margin, c->normalise_by,
                                  (1.0 - lambda) / accum, &mr, t->demb, &gb));
        }
        res->loss_margin = mr.loss;
        res->triplets = t->trip.count;
    } else {
        t->trip.count = 0;
    }
    if (world > 1) {
        /* global losses: sum of CE over all samples; per-rank margin sums, active terms and triplets */
        bool local_margin = margin && !global;
        double st[5] = {(double)ce * n, 0, 0, 0, 0};
        if (local_margin) {
            st[1] = mr.loss * mr.normaliser;
            st[2] = (double)mr.active_pos;
            st[3] = (double)mr.active_neg;
            st[4] = (double)t->trip.count;
        }
        MG_TRY(mg_dist_allreduce_sum_f64(t->dist, st, 5));
        res->loss_ce = st[0] / (double)total;
        if (local_margin) {
            double norm = c->normalise_by == MG_MARGIN_NORM_ACTIVE ? st[2] + st[3] : 2.0 * st[4];
            if (!(norm > 0)) norm = 1.0;
            /* the local pass divided by its own normaliser: rescale to the global one */
            double f = mr.normaliser / norm;
            for (size_t i = 0; i < (size_t)n * dim; i++) t->demb[i] = (float)(t->demb[i] * f);
            gb *= f;
            res->loss_margin = st[1] / norm;
            res->triplets = (int64_t)st[4];
        }
    }
    t->beta_grad += gb;
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
    const float *g = mg_model_grads(m);
    int64_t np = mg_model_param_count(m);
    if (world > 1) {
        /* one all-reduce (sum) of the flat gradient arena per step (bucketed), then β's gradient */
        MG_TRY(mg_dist_allreduce_sum_f32(t->dist, mg_model_grads(m), (size_t)np));
        double bg = t->beta_grad;
        MG_TRY(mg_dist_allreduce_sum_f64(t->dist, &bg, 1));
        t->beta_grad = bg;
    }
    /* Non-finite gradients stop the run before they reach the weights. */
    bool finite;
    MG_TRY(mg_all_finite((size_t)np, g, &finite));
    if (!finite || !isfinite(t->beta_grad))
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

/* Rank 0's BN running statistics (kind 1) and, with counters, num_batches_tracked (kind 2). */
static mg_status broadcast_buffers(mg_trainer *t, bool counters) {
    mg_model *m = t->m;
    int n = mg_model_tensor_count(m);
    for (int i = 0; i < n; i++) {
        int kind;
        int64_t count;
        mg_model_tensor_info(m, i, &kind, NULL, NULL, &count);
        if (kind == 1 || (kind == 2 && counters))
            MG_TRY(mg_dist_broadcast(t->dist, mg_model_tensor_data(m, i), (size_t)count * (kind == 1 ? 4 : 8), 0));
    }
    return MG_OK;
}

mg_status mg_trainer_broadcast_buffers(mg_trainer *t) {
    if (mg_dist_world(t->dist) <= 1) return MG_OK;
    return broadcast_buffers(t, false);
}

mg_status mg_trainer_broadcast_state(mg_trainer *t) {
    if (mg_dist_world(t->dist) <= 1) return MG_OK;
    size_t np = (size_t)mg_model_param_count(t->m);
    MG_TRY(mg_dist_broadcast(t->dist, mg_model_params(t->m), np * sizeof(float), 0));
    MG_TRY(mg_dist_broadcast(t->dist, t->momentum, np * sizeof(float), 0));
    MG_TRY(broadcast_buffers(t, true));
    double sc[4] = {t->beta, t->beta_mom, (double)t->step, (double)t->first_update};
    MG_TRY(mg_dist_broadcast(t->dist, sc, sizeof sc, 0));
    t->beta = sc[0];
    t->beta_mom = sc[1];
    t->step = (int64_t)sc[2];
    t->first_update = (int)sc[3];
    t->micro = 0;
    return MG_OK;
}

static uint64_t mix_words(uint64_t h, const void *data, size_t bytes) {
    const unsigned char *p = data;
    size_t i = 0;
    for (; i + 8 <= bytes; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h = (h ^ w) * 0x100000001b3ull;
        h ^= h >> 29;
    }
    for (; i < bytes; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

uint64_t mg_trainer_state_checksum(mg_trainer *t) {
    mg_model *m = t->m;
    size_t np = (size_t)mg_model_param_count(m);
    uint64_t h = 0xcbf29ce484222325ull;
    h = mix_words(h, mg_model_params(m), np * sizeof(float));
    h = mix_words(h, t->momentum, np * sizeof(float));
    int n = mg_model_tensor_count(m);
    for (int i = 0; i < n; i++) {
        int kind;
        int64_t count;
        mg_model_tensor_info(m, i, &kind, NULL, NULL, &count);
        if (kind == 1 || kind == 2) h = mix_words(h, mg_model_tensor_data(m, i), (size_t)count * (kind == 1 ? 4 : 8));
    }
    double sc[2] = {t->beta, t->beta_mom};
    h = mix_words(h, sc, sizeof sc);
    h = mix_words(h, &t->step, sizeof t->step);
    return h;
}

mg_status mg_trainer_check_ranks_agree(mg_trainer *t, const char *when) {
    int w = mg_dist_world(t->dist);
    if (w <= 1) return MG_OK;
    uint64_t mine = mg_trainer_state_checksum(t);
    uint64_t *all = calloc((size_t)w, sizeof *all);
    if (!all) return MG_FAIL(MG_ERR_NOMEM, "trainer: out of memory");
    mg_status s = mg_dist_allgather(t->dist, &mine, sizeof mine, all);
    for (int r = 1; s == MG_OK && r < w; r++)
        if (all[r] != all[0])
            s = MG_FAIL(MG_ERR_INTERNAL,
                        "dist: %s: rank %d holds a different training state than rank 0 (checksum %016llx vs "
                        "%016llx): the ranks have diverged",
                        when, r, (unsigned long long)all[r], (unsigned long long)all[0]);
    free(all);
    return s;
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
