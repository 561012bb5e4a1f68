/* schedule.h: per-step learning-rate schedules (the MultiGrain step schedule and the MindSpore
 * reference's lr_generator modes steps / linear / poly / cosine / THOR) and the THOR damping
 * schedule, plus steps-per-epoch and a printer for `multigrain train --print-lr`.
 *
 * Steps are global indices i = 0, 1, ... over the whole run (epoch k covers i in [k*S, (k+1)*S)).
 * Formulas: docs/config.md, section "Learning-rate schedules". */
#ifndef MULTIGRAIN_SCHEDULE_H
#define MULTIGRAIN_SCHEDULE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "multigrain/config.h"
#include "multigrain/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mg_schedule {
    mg_lr_schedule mode;
    int64_t steps_per_epoch; /* S */
    int epochs;              /* total epochs: T = S * epochs steps */
    int first_epoch;         /* pretrain_epoch_size: the run starts at step first_epoch * S */
    double lr;               /* peak / base rate (reference lr_max) */
    double lr_init;          /* warm-up start; THOR start */
    double lr_end;           /* linear: final rate */
    double warmup_epochs;
    int lr_steps[MG_CONFIG_MAX_LR_STEPS];
    int n_lr_steps;
    double gamma;
    bool legacy_offset;
    double poly_power;
    double thor_decay;       /* lr_decay */
    int thor_end_epoch;      /* lr_end_epoch */
    double thor_halve_epoch; /* 39 in the reference call: x0.5 from this epoch, x0.25 one later */
    double damping_init, damping_decay;
} mg_schedule;

/* Steps of one epoch: ceil(int(n_images * epoch_len_factor) / batch_size) (the last, partial batch
 * is kept, as the original RASampler does). */
int64_t mg_schedule_steps_per_epoch(int64_t n_images, double epoch_len_factor, int batch_size);

/* Fills the schedule from a validated config. MG_ERR_INVALID_ARG when steps_per_epoch < 1. */
mg_status mg_schedule_init(mg_schedule *s, const mg_config *cfg, int64_t steps_per_epoch);

int64_t mg_schedule_total_steps(const mg_schedule *s);  /* S * epochs */
int64_t mg_schedule_warmup_steps(const mg_schedule *s); /* int(S * warmup_epochs) */
int64_t mg_schedule_first_step(const mg_schedule *s);   /* S * first_epoch */

/* Learning rate of global step i (0 <= i < total steps; clamped outside). */
double mg_schedule_lr(const mg_schedule *s, int64_t step);

/* THOR damping of global step i: damping_init * damping_decay^(((i + 1) / S) / 10). */
double mg_schedule_damping(const mg_schedule *s, int64_t step);

/* Prints "# ..." header lines then "step epoch lr [damping]" rows: with every == 0, the first step,
 * warm-up points (every tenth of the warm-up), every epoch boundary and the last step; with
 * every > 0, every `every` steps and the last step. Damping is printed when `with_damping`. */
mg_status mg_schedule_print(const mg_schedule *s, FILE *out, int64_t every, bool with_damping);

#ifdef __cplusplus
}
#endif
#endif
