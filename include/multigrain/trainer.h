/* trainer.h: one MultiGrain optimisation step and the whole training run.
 *
 * A step (recipe §1.3-§1.6, §2.4): forward in training mode; cross-entropy on the logits (optional
 * label smoothing) weighted by λ; when λ < 1, distance-weighted negative sampling on the normalised
 * embeddings and the margin loss with the learnable β weighted by 1 − λ; backward; SGD with
 * momentum and weight decay on the network (PyTorch semantics) and a separate SGD on β (lr × beta_lr,
 * same momentum, no weight decay). The GeM exponent is a fixed buffer during joint training.
 * Gradient accumulation: with grad_accum = k, k micro-batches (each scaled by 1/k) make one update.
 *
 * The run (mg_train_run) adds datasets, the threaded loader, the schedule, logging, evaluation,
 * checkpoints with exact resume, and clean stops on SIGINT/SIGTERM or non-finite values. */
#ifndef MULTIGRAIN_TRAINER_H
#define MULTIGRAIN_TRAINER_H

#include <stdbool.h>
#include <stdint.h>

#include "multigrain/checkpoint.h"
#include "multigrain/config.h"
#include "multigrain/loss_margin.h"
#include "multigrain/model.h"
#include "multigrain/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mg_trainer mg_trainer;

typedef struct mg_step_result {
    double loss, loss_ce, loss_margin; /* loss = λ·ce + (1−λ)·margin (of the last micro-batch) */
    double lr;
    double beta;                       /* after the update */
    int64_t triplets;
    bool updated;                      /* this micro-batch completed an optimizer step */
} mg_step_result;

/* The model is borrowed. steps_per_epoch drives the learning-rate schedule. */
mg_status mg_trainer_init(mg_trainer **t, mg_model *model, const mg_config *cfg, int64_t steps_per_epoch);
void mg_trainer_free(mg_trainer *t);

/* One micro-batch: images [n,3,h,w], labels [n], instance ids [n] (copies of one image share an id).
 * The optimizer step happens on every grad_accum-th call. */
mg_status mg_trainer_step(mg_trainer *t, const float *images, int n, int h, int w, const int32_t *labels,
                          const int64_t *instance, mg_step_result *res);

/* Triplets drawn in the last step (for tests that hand them to a reference implementation). */
const mg_triplets *mg_trainer_last_triplets(const mg_trainer *t);

int64_t mg_trainer_step_count(const mg_trainer *t); /* optimizer steps done */
double mg_trainer_beta(const mg_trainer *t);

/* Optimizer state in/out of checkpoints: momentum buffers "optimizer.momentum.<param>",
 * "optimizer.beta", "optimizer.beta_momentum", "optimizer.step" (I64). */
mg_status mg_trainer_checkpoint_add(mg_trainer *t, mg_checkpoint_writer *w);
mg_status mg_trainer_load_state(mg_trainer *t, const mg_checkpoint *c);

/* ---- the whole run ---------------------------------------------------------------------------- */

typedef struct mg_train_opts {
    const mg_config *cfg;
    const char *data;        /* ROOT with train/ and val/ (ImageNet layout) or an IDX folder */
    const char *out;         /* run folder */
    const char *resume;      /* run folder or checkpoint to continue, or NULL */
    const char *init_from;   /* weights-only checkpoint to fine-tune from, or NULL */
    const char *config_text; /* effective config (YAML) stored in checkpoints */
    int64_t max_steps;       /* stop after this many optimizer steps in total (0 = no limit; tests) */
    int64_t limit_train;     /* use only the first N training images (0 = all) */
    int64_t limit_val;       /* evaluate on the first N validation images (0 = all) */
    bool quiet;              /* no per-step log lines */
} mg_train_opts;

typedef struct mg_train_summary {
    int64_t steps, epochs;
    double last_loss;
    double top1, top5;       /* last evaluation (-1 when none) */
    char checkpoint[4096];   /* last checkpoint written */
} mg_train_summary;

mg_status mg_train_run(const mg_train_opts *o, mg_train_summary *summary);

/* Evaluates top-1/top-5 of a model on a labelled dataset folder or IDX set with the test transform
 * (crop at `size`), batch `batch`; first `limit` images (0 = all). */
mg_status mg_evaluate_accuracy(mg_model *m, const char *data, int size, int batch, int64_t limit, int threads,
                               double *top1, double *top5, int64_t *count);

/* Set by SIGINT/SIGTERM handlers installed by mg_train_run; polled between steps. */
void mg_train_request_stop(void);

#ifdef __cplusplus
}
#endif
#endif
