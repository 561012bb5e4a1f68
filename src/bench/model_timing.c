/* model_timing.c: one timed iteration of a network on random images: an inference forward
 * (MG_MODE_INFER, the fused path) or a full MultiGrain training step through the trainer (forward,
 * joint loss, backward, SGD), as bench_infer and bench_train_step measure them (see bench.h), and
 * the median and range of repeated timings. */
#include <stdio.h>
#include <stdlib.h>

#include "bench/bench.h"
#include "core/progress.h"
#include "core/rng.h"
#include "multigrain/trainer.h"

struct mg_bench_model {
    mg_bench_model_cfg cfg;
    mg_model *model;
    mg_trainer *trainer; /* train mode only */
    float *x;
    int32_t *labels;
    int64_t *ids;
    double last;
};

void mg_bench_model_cfg_default(mg_bench_model_cfg *c, bool train) {
    *c = (mg_bench_model_cfg){.arch = train ? "resnet18" : "resnet50",
                              .batch = train ? 96 : 1,
                              .size = train ? 32 : 224,
                              .train = train,
                              .num_classes = train ? 10 : 1000,
                              .lambda = 0.5,
                              .m = 3};
}

mg_status mg_bench_model_init(mg_bench_model **out, const mg_bench_model_cfg *c) {
    *out = NULL;
    if (c->batch < (c->train ? 2 : 1) || c->size < 16 || c->num_classes < 1 || c->m < 1)
        return MG_FAIL(MG_ERR_INVALID_ARG,
                       "model benchmark: expected batch >= %d, size >= 16, classes >= 1, m >= 1, found batch %d, "
                       "size %d, classes %d, m %d",
                       c->train ? 2 : 1, c->batch, c->size, c->num_classes, c->m);
    mg_bench_model *b = calloc(1, sizeof *b);
    if (!b) return MG_FAIL(MG_ERR_NOMEM, "model benchmark: out of memory");
    b->cfg = *c;
    const size_t count = (size_t)c->batch * 3 * (size_t)c->size * (size_t)c->size;
    b->x = malloc(count * sizeof *b->x);
    b->labels = malloc((size_t)c->batch * sizeof *b->labels);
    b->ids = malloc((size_t)c->batch * sizeof *b->ids);
    if (!b->x || !b->labels || !b->ids) {
        mg_bench_model_free(b);
        return MG_FAIL(MG_ERR_NOMEM, "model benchmark: out of memory for a batch of %d images of %dx%d", c->batch,
                       c->size, c->size);
    }
    mg_rng r;
    mg_rng_init(&r, 1, 2, 3, 4);
    for (size_t i = 0; i < count; i++) b->x[i] = (float)mg_rng_normal(&r);
    for (int i = 0; i < c->batch; i++) {
        b->ids[i] = i / c->m;
        b->labels[i] = (int32_t)(b->ids[i] % c->num_classes);
    }
    mg_status s = mg_model_init(&b->model, c->arch, c->num_classes, 3.0f);
    if (s == MG_OK) s = mg_model_init_weights(b->model, 1, false);
    if (s == MG_OK && c->train) {
        mg_config cfg;
        mg_config_init(&cfg);
        snprintf(cfg.arch, sizeof cfg.arch, "%s", c->arch);
        cfg.num_classes = c->num_classes;
        cfg.classif_weight = c->lambda;
        cfg.repeated_augmentations = c->m;
        s = mg_trainer_init(&b->trainer, b->model, &cfg, 1000);
    }
    if (s != MG_OK) {
        mg_bench_model_free(b);
        return s;
    }
    *out = b;
    return MG_OK;
}

mg_status mg_bench_model_run(mg_bench_model *b, double *seconds) {
    const mg_bench_model_cfg *c = &b->cfg;
    double t0 = mg_time_now();
    if (c->train) {
        mg_step_result res;
        MG_TRY(mg_trainer_step(b->trainer, b->x, c->batch, c->size, c->size, b->labels, b->ids, &res));
        b->last = res.loss;
    } else {
        mg_model_outputs o;
        MG_TRY(mg_model_forward(b->model, MG_MODE_INFER, b->x, c->batch, c->size, c->size, &o));
        b->last = o.embedding[0];
    }
    *seconds = mg_time_now() - t0;
    return MG_OK;
}

const mg_model *mg_bench_model_network(const mg_bench_model *b) { return b->model; }

double mg_bench_model_last_value(const mg_bench_model *b) { return b->last; }

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

void mg_bench_summarize(double *t, int n, double *median, double *min, double *max) {
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    *median = n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
    *min = t[0];
    *max = t[n - 1];
}

void mg_bench_model_free(mg_bench_model *b) {
    if (!b) return;
    mg_trainer_free(b->trainer);
    mg_model_free(b->model);
    free(b->x);
    free(b->labels);
    free(b->ids);
    free(b);
}
