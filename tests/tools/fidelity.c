/* fidelity.c: the C half of the step-for-step fidelity test (tests/integration/test_fidelity.sh,
 * issue 5). Reads initial weights, a batch set and the hyper-parameters from a safetensors file
 * written by tests/oracle/fidelity_torch.py, runs mg_trainer_step on every batch (the whole recipe:
 * joint loss, our distance-weighted sampler, learnable beta, SGD with momentum and weight decay,
 * the configured schedule) and writes, per step, the losses, lr, beta and the sampled triplets, and at
 * the end every model tensor and beta, for the PyTorch replay to compare.
 *
 * Usage: tool_fidelity INPUT.safetensors OUTPUT.safetensors [STATE_DIR]
 * With STATE_DIR, the whole training state before every step t (and after the last) is also written as
 * a checkpoint STATE_DIR/state.<t>.safetensors (weights, BN statistics, momentum buffers, beta and its
 * momentum: mg_model_checkpoint_add + mg_trainer_checkpoint_add), for the per-step ("teacher-forced")
 * comparison, which starts PyTorch's step t from exactly our state.
 * Input tensors: every model tensor by state_dict name (+ "pool.p"), "images" F32 [S, n, 3, h, w],
 * "labels" I32 [S, n], "instances" I64 [S, n]. Input metadata: arch, num_classes, p and the config
 * keys listed in `keys` below (values in YAML scalar syntax, applied with mg_config_set_value). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "multigrain/checkpoint.h"
#include "multigrain/config.h"
#include "multigrain/model.h"
#include "multigrain/ops.h"
#include "multigrain/safetensors.h"
#include "multigrain/trainer.h"

static const char *const keys[] = {"classif_weight", "margin",      "beta_init",     "beta_lr",       "normalise_by",
                                   "use_label_smooth", "label_smoothing", "lr",         "lr_init",       "lr_end",
                                   "lr_schedule",    "warmup_epochs", "epochs",        "momentum",      "nesterov",
                                   "weight_decay",   "wd_on_bn_bias", "seed"};

static int die(const char *what) {
    fprintf(stderr, "tool_fidelity: %s: %s\n", what, mg_error_message());
    return 1;
}

static const mg_st_tensor *need(const mg_safetensors *st, const char *name, mg_dtype dtype, int ndim) {
    const mg_st_tensor *t = mg_safetensors_find(st, name);
    if (!t || t->dtype != dtype || t->ndim != ndim) {
        fprintf(stderr, "tool_fidelity: %s: tensor '%s' missing or not %s with %d dims\n", st->path, name,
                mg_st_dtype_name(dtype), ndim);
        return NULL;
    }
    return t;
}

static mg_status save_state(mg_model *m, mg_trainer *tr, const mg_config *cfg, const char *dir, int step) {
    char path[4096];
    snprintf(path, sizeof path, "%s/state.%d.safetensors", dir, step);
    mg_checkpoint_meta meta = {.arch = cfg->arch, .num_classes = cfg->num_classes, .p = cfg->pooling_exponent,
                               .step = step};
    mg_checkpoint_writer w;
    MG_TRY(mg_checkpoint_writer_init(&w, &meta));
    mg_status s = mg_model_checkpoint_add(m, &w);
    if (s == MG_OK) s = mg_trainer_checkpoint_add(tr, &w);
    if (s == MG_OK) s = mg_checkpoint_writer_commit(&w, path);
    mg_checkpoint_writer_free(&w);
    return s;
}

static void *copy_out(const mg_st_tensor *t) {
    void *d = malloc(t->nbytes ? t->nbytes : 1);
    if (d) mg_st_tensor_copy(t, d);
    return d;
}

int main(int argc, char **argv) {
    if (argc != 3 && argc != 4) {
        fprintf(stderr, "usage: %s INPUT.safetensors OUTPUT.safetensors [STATE_DIR]\n", argv[0]);
        return 2;
    }
    mg_safetensors in;
    if (mg_safetensors_open(&in, argv[1]) != MG_OK) return die("reading the input");
    const char *arch = mg_safetensors_meta(&in, "arch"), *classes_s = mg_safetensors_meta(&in, "num_classes"),
               *p_s = mg_safetensors_meta(&in, "p"), *threads_s = getenv("MG_FIDELITY_THREADS");
    if (!arch || !classes_s || !p_s) {
        fprintf(stderr, "tool_fidelity: %s: metadata arch, num_classes and p are required\n", argv[1]);
        return 1;
    }
    if (mg_ops_set_threads(threads_s ? atoi(threads_s) : 0) != MG_OK) return die("threads");

    mg_config cfg;
    mg_config_init(&cfg);
    snprintf(cfg.arch, sizeof cfg.arch, "%s", arch);
    cfg.num_classes = atoi(classes_s);
    cfg.pooling_exponent = strtod(p_s, NULL);
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
        const char *v = mg_safetensors_meta(&in, keys[i]);
        if (!v) {
            fprintf(stderr, "tool_fidelity: %s: metadata '%s' is required\n", argv[1], keys[i]);
            return 1;
        }
        if (mg_config_set_value(&cfg, keys[i], v, "input metadata", MG_ERR_CONFIG) != MG_OK) return die(keys[i]);
    }
    if (mg_config_validate(&cfg) != MG_OK) return die("config");

    const mg_st_tensor *ti = need(&in, "images", MG_DTYPE_F32, 5), *tl = need(&in, "labels", MG_DTYPE_I32, 2),
                       *tn = need(&in, "instances", MG_DTYPE_I64, 2);
    if (!ti || !tl || !tn) return 1;
    const int steps = (int)ti->shape[0], n = (int)ti->shape[1], h = (int)ti->shape[3], w = (int)ti->shape[4];
    if (ti->shape[2] != 3 || tl->shape[0] != steps || tl->shape[1] != n || tn->shape[0] != steps || tn->shape[1] != n) {
        fprintf(stderr, "tool_fidelity: images/labels/instances shapes disagree\n");
        return 1;
    }
    float *images = copy_out(ti);
    int32_t *labels = copy_out(tl);
    int64_t *instances = copy_out(tn);
    if (!images || !labels || !instances) return 1;

    mg_model *m;
    if (mg_model_init(&m, cfg.arch, cfg.num_classes, (float)cfg.pooling_exponent) != MG_OK) return die("model");
    int nt = mg_model_tensor_count(m);
    for (int i = 0; i < nt; i++) {
        int kind;
        int64_t count;
        const char *name = mg_model_tensor_info(m, i, &kind, NULL, NULL, &count);
        const mg_st_tensor *t = mg_safetensors_find(&in, name);
        if (!t || t->count != count || t->dtype != (kind == 2 ? MG_DTYPE_I64 : MG_DTYPE_F32)) {
            fprintf(stderr, "tool_fidelity: %s: initial tensor '%s' missing or of the wrong size/type\n", argv[1],
                    name);
            return 1;
        }
        mg_st_tensor_copy(t, mg_model_tensor_data(m, i));
    }

    /* The schedule's steps per epoch come with the input (the batch set may be shorter than the run). */
    const char *spe = mg_safetensors_meta(&in, "steps_per_epoch");
    mg_trainer *tr;
    if (mg_trainer_init(&tr, m, &cfg, spe ? atoll(spe) : steps) != MG_OK) return die("trainer");

    double *loss = calloc((size_t)steps * 5, sizeof(double));
    int32_t **trip = calloc((size_t)steps, sizeof *trip);
    int64_t *tcount = calloc((size_t)steps, sizeof *tcount), *fallbacks = calloc((size_t)steps, sizeof *fallbacks);
    if (!loss || !trip || !tcount || !fallbacks) return 1;
    const size_t img = (size_t)3 * h * w;
    for (int s = 0; s < steps; s++) {
        mg_step_result r;
        if (argc == 4 && save_state(m, tr, &cfg, argv[3], s) != MG_OK) return die("writing the state");
        if (mg_trainer_step(tr, images + (size_t)s * n * img, n, h, w, labels + (size_t)s * n,
                            instances + (size_t)s * n, &r) != MG_OK)
            return die("training step");
        if (!r.updated) {
            fprintf(stderr, "tool_fidelity: step %d made no update (grad_accum must be 1)\n", s);
            return 1;
        }
        loss[s] = r.loss;
        loss[steps + s] = r.loss_ce;
        loss[2 * steps + s] = r.loss_margin;
        loss[3 * steps + s] = r.lr;
        loss[4 * steps + s] = r.beta;
        const mg_triplets *t = mg_trainer_last_triplets(tr);
        tcount[s] = t->count;
        fallbacks[s] = t->uniform_fallbacks;
        trip[s] = malloc((size_t)(t->count ? t->count : 1) * 3 * sizeof(int32_t));
        if (!trip[s]) return 1;
        for (int64_t k = 0; k < t->count; k++) {
            trip[s][3 * k] = t->anchor[k];
            trip[s][3 * k + 1] = t->positive[k];
            trip[s][3 * k + 2] = t->negative[k];
        }
        printf("step %2d  loss %.9f  ce %.9f  margin %.9f  lr %.6g  beta %.9f  triplets %" PRId64 "\n", s, r.loss,
               r.loss_ce, r.loss_margin, r.lr, r.beta, t->count);
    }

    if (argc == 4 && save_state(m, tr, &cfg, argv[3], steps) != MG_OK) return die("writing the state");

    mg_st_writer wr;
    mg_st_writer_init(&wr);
    static const char *const series[] = {"loss", "loss_ce", "loss_margin", "lr", "beta"};
    int64_t shp[2] = {steps, 3};
    for (int k = 0; k < 5; k++)
        if (mg_st_writer_add(&wr, series[k], MG_DTYPE_F64, 1, shp, loss + (size_t)k * steps) != MG_OK)
            return die("output");
    if (mg_st_writer_add(&wr, "uniform_fallbacks", MG_DTYPE_I64, 1, shp, fallbacks) != MG_OK) return die("output");
    char name[64];
    for (int s = 0; s < steps; s++) {
        int64_t ts[2] = {tcount[s], 3};
        snprintf(name, sizeof name, "triplets.%d", s);
        if (mg_st_writer_add(&wr, name, MG_DTYPE_I32, 2, ts, trip[s]) != MG_OK) return die("output");
    }
    double beta = mg_trainer_beta(tr);
    if (mg_st_writer_add(&wr, "beta_final", MG_DTYPE_F64, 0, NULL, &beta) != MG_OK) return die("output");
    for (int i = 0; i < nt; i++) {
        int kind, ndim;
        int64_t shape[4];
        const char *tname = mg_model_tensor_info(m, i, &kind, &ndim, shape, NULL);
        snprintf(name, sizeof name, "final.%s", tname);
        if (mg_st_writer_add(&wr, name, kind == 2 ? MG_DTYPE_I64 : MG_DTYPE_F32, ndim, shape,
                             mg_model_tensor_data(m, i)) != MG_OK)
            return die("output");
    }
    /* MG_FIDELITY_GRADS=1 (diagnosis): also the gradients of the last step, "grad.<name>". */
    char (*gname)[64] = calloc((size_t)nt, sizeof *gname);
    if (!gname) return 1;
    if (getenv("MG_FIDELITY_GRADS") && atoi(getenv("MG_FIDELITY_GRADS")) > 0)
        for (int i = 0; i < nt; i++) {
            int kind, ndim;
            int64_t shape[4];
            const char *tname = mg_model_tensor_info(m, i, &kind, &ndim, shape, NULL);
            if (kind != 0) continue;
            snprintf(gname[i], sizeof gname[i], "grad.%s", tname);
            if (mg_st_writer_add(&wr, gname[i], MG_DTYPE_F32, ndim, shape, mg_model_tensor_grad(m, tname)) != MG_OK)
                return die("output");
        }
    if (mg_st_writer_write(&wr, argv[2]) != MG_OK) return die("writing the output");
    mg_st_writer_free(&wr);
    free(gname);

    for (int s = 0; s < steps; s++) free(trip[s]);
    free(trip);
    free(tcount);
    free(fallbacks);
    free(loss);
    mg_trainer_free(tr);
    mg_model_free(m);
    free(images);
    free(labels);
    free(instances);
    mg_safetensors_close(&in);
    return 0;
}
