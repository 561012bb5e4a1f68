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
#include "multigrain/dist.h"
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
    int64_t samples;                   /* samples of this micro-batch over all ranks */
    bool updated;                      /* this micro-batch completed an optimizer step */
} mg_step_result;

/* The model is borrowed. steps_per_epoch drives the learning-rate schedule. */
mg_status mg_trainer_init(mg_trainer **t, mg_model *model, const mg_config *cfg, int64_t steps_per_epoch);
void mg_trainer_free(mg_trainer *t);

/* One micro-batch: images [n,3,h,w], labels [n], instance ids [n] (copies of one image share an id).
 * The optimizer step happens on every grad_accum-th call. */
mg_status mg_trainer_step(mg_trainer *t, const float *images, int n, int h, int w, const int32_t *labels,
                          const int64_t *instance, mg_step_result *res);

/* Data-parallel training over a process group (borrowed; NULL or one process = single-process
 * training, unchanged). With world size W > 1 every rank passes its share of each global batch to
 * mg_trainer_step; the step then
 *   - weights the cross-entropy mean by n_r / N and reports the global-batch losses;
 *   - samples negatives within this rank's share (cut into cfg.sampling_chunks parts; the random
 *     streams keyed by global row, so W ranks draw what one process with sampling_chunks = W draws)
 *     and normalises the margin loss by the normaliser summed over the ranks, or, with
 *     cfg.global_sampling, all-gathers the embeddings and samples over the whole global batch;
 *   - with cfg.sync_bn, computes batch-norm statistics over the global batch (mg_model_set_bn_sync);
 *   - sums the gradient arena over the ranks (one bucketed all-reduce per optimizer step; each rank's
 *     gradient is that of its part of the global loss, so the sum is the global gradient) and β's
 *     gradient, before the non-finite check and the update.
 * So W ranks with sync BN take the same steps as one process with the global batch, up to float
 * rounding (docs/ARCHITECTURE.md, tests/mpi). */
mg_status mg_trainer_set_dist(mg_trainer *t, mg_dist *d);
/* Copies rank 0's whole training state (weights, BN statistics and counters, momentum buffers, β and
 * its momentum, the step counter) to every rank: after initialisation or loading on rank 0. */
mg_status mg_trainer_broadcast_state(mg_trainer *t);
/* Copies rank 0's BN running statistics to every rank (per-rank BN lets them drift apart; done before
 * evaluation and checkpoints, as PyTorch DDP broadcasts buffers). */
mg_status mg_trainer_broadcast_buffers(mg_trainer *t);
/* A 64-bit checksum of the training state (weights, momentum, BN buffers and counters, β, step). */
uint64_t mg_trainer_state_checksum(mg_trainer *t);
/* Collective: fails (MG_ERR_INTERNAL, on every rank) when a rank's checksum differs from rank 0's;
 * `when` names the moment in the message ("after the initial broadcast"). */
mg_status mg_trainer_check_ranks_agree(mg_trainer *t, const char *when);

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
    mg_dist *dist;           /* data-parallel group (NULL = single process); only rank 0 writes files */
} mg_train_opts;

typedef struct mg_train_summary {
    int64_t steps, epochs;
    double last_loss;
    double top1, top5;       /* last evaluation (-1 when none) */
    char checkpoint[4096];   /* last checkpoint written */
    bool failed_together;    /* data parallel: the error was detected by every rank in agreement (a
                                normal exit is safe); otherwise the job must be aborted */
} mg_train_summary;

mg_status mg_train_run(const mg_train_opts *o, mg_train_summary *summary);

/* Collective: every rank compares its config hash (mg_config_hash) with rank 0's. A mismatch fails
 * on every rank with MG_ERR_CONFIG; the rank that differs says "config hash differs from rank 0
 * (...); all ranks must use the same config". */
mg_status mg_train_check_config_ranks(mg_dist *d, const mg_config *cfg);

/* Evaluates top-1/top-5 of a model on a labelled dataset folder or IDX set with the test transform
 * (centre crop `size` after resizing the short side to int(256/224*size), or to
 * floor(size/crop_fraction) when crop_fraction is in (0, 1]), batch `batch`; first `limit` images
 * (0 = all). */
mg_status mg_evaluate_accuracy(mg_model *m, const char *data, int size, double crop_fraction, int batch, int64_t limit,
                               int threads, double *top1, double *top5, int64_t *count);

/* Set by SIGINT/SIGTERM handlers installed by mg_train_run; polled between steps. */
void mg_train_request_stop(void);

#ifdef __cplusplus
}
#endif
#endif
