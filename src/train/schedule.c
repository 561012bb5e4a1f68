/* schedule.c: per-step learning-rate and THOR damping schedules (formulas of the MultiGrain recipe
 * and of the MindSpore reference's src/lr_generator.py; see docs/config.md). */
#include "multigrain/schedule.h"

#include <inttypes.h>
#include <math.h>
#include <string.h>

int64_t mg_schedule_steps_per_epoch(int64_t n_images, double epoch_len_factor, int batch_size) {
    if (n_images <= 0 || batch_size <= 0 || !(epoch_len_factor > 0)) return 0;
    int64_t samples = (int64_t)((double)n_images * epoch_len_factor);
    return (samples + batch_size - 1) / batch_size;
}

mg_status mg_schedule_init(mg_schedule *s, const mg_config *c, int64_t steps_per_epoch) {
    if (steps_per_epoch < 1)
        return MG_FAIL(MG_ERR_INVALID_ARG, "schedule: steps per epoch must be >= 1, found %" PRId64,
                       steps_per_epoch);
    memset(s, 0, sizeof *s);
    s->mode = c->lr_schedule;
    s->steps_per_epoch = steps_per_epoch;
    s->epochs = c->epochs;
    s->first_epoch = c->pretrain_epoch_size;
    s->lr = c->lr;
    s->lr_init = c->lr_init;
    s->lr_end = c->lr_end;
    s->warmup_epochs = c->warmup_epochs;
    memcpy(s->lr_steps, c->lr_steps, sizeof s->lr_steps);
    s->n_lr_steps = c->n_lr_steps;
    s->gamma = c->lr_gamma;
    s->legacy_offset = c->lr_steps_legacy_offset;
    s->poly_power = c->lr_poly_power;
    s->thor_decay = c->lr_decay;
    s->thor_end_epoch = c->lr_end_epoch;
    s->thor_halve_epoch = 39.0; /* hard-coded decay_epochs=39 in the reference's get_thor_lr call */
    s->damping_init = c->damping_init;
    s->damping_decay = c->damping_decay;
    return MG_OK;
}

int64_t mg_schedule_total_steps(const mg_schedule *s) { return s->steps_per_epoch * s->epochs; }
int64_t mg_schedule_warmup_steps(const mg_schedule *s) {
    if (s->mode == MG_LR_SCHEDULE_THOR) return 0;
    return (int64_t)((double)s->steps_per_epoch * s->warmup_epochs);
}
int64_t mg_schedule_first_step(const mg_schedule *s) { return s->steps_per_epoch * s->first_epoch; }

/* Reference warm-up (linear, steps, poly): lr_init + (lr_max - lr_init) * i / W. */
static double warmup_lr(const mg_schedule *s, int64_t i, int64_t w) {
    return s->lr_init + (s->lr - s->lr_init) * (double)i / (double)w;
}

double mg_schedule_lr(const mg_schedule *s, int64_t i) {
    const int64_t T = mg_schedule_total_steps(s), W = mg_schedule_warmup_steps(s), S = s->steps_per_epoch;
    if (i < 0) i = 0;
    if (i >= T) i = T - 1;
    const double lr = s->lr;
    switch (s->mode) {
    case MG_LR_SCHEDULE_STEP: {
        if (i < W) return warmup_lr(s, i, W);
        int64_t epoch = i / S;
        int drops = 0;
        for (int k = 0; k < s->n_lr_steps; k++)
            if (epoch >= (int64_t)s->lr_steps[k] + (s->legacy_offset ? 1 : 0)) drops++;
        return lr * pow(s->gamma, drops);
    }
    case MG_LR_SCHEDULE_STEPS: {
        if (i < W) return warmup_lr(s, i, W);
        double x = (double)i;
        if (x < 0.3 * (double)T) return lr;
        if (x < 0.6 * (double)T) return lr * 0.1;
        if (x < 0.8 * (double)T) return lr * 0.01;
        return lr * 0.001;
    }
    case MG_LR_SCHEDULE_POLY: {
        if (i < W) return s->lr_init + ((s->lr - s->lr_init) / (double)W) * (double)i;
        double base = 1.0 - ((double)i - (double)W) / ((double)T - (double)W);
        double v = s->poly_power == 2.0 ? lr * base * base : lr * pow(base, s->poly_power);
        return v < 0.0 ? 0.0 : v;
    }
    case MG_LR_SCHEDULE_COSINE: {
        if (i < W) return s->lr_init + ((s->lr - s->lr_init) / (double)W) * (double)(i + 1);
        double decay_steps = (double)(T - W);
        double linear_decay = (double)(T - i) / decay_steps;
        double cosine_decay = 0.5 * (1.0 + cos(M_PI * 2.0 * 0.47 * (double)i / decay_steps));
        return lr * (linear_decay * cosine_decay + 0.00001);
    }
    case MG_LR_SCHEDULE_THOR: {
        double e = (double)(i + 1) / (double)S;
        double v = s->lr_init * pow(1.0 - e / (double)s->thor_end_epoch, s->thor_decay);
        if (e >= s->thor_halve_epoch) v *= 0.5;
        if (e >= s->thor_halve_epoch + 1.0) v *= 0.5;
        return v;
    }
    case MG_LR_SCHEDULE_LINEAR:
    default:
        if (i < W) return warmup_lr(s, i, W);
        return lr - (lr - s->lr_end) * (double)(i - W) / (double)(T - W);
    }
}

double mg_schedule_damping(const mg_schedule *s, int64_t i) {
    double e = (double)(i + 1) / (double)s->steps_per_epoch;
    return s->damping_init * pow(s->damping_decay, e / 10.0);
}

static void print_row(const mg_schedule *s, FILE *out, int64_t i, bool with_damping) {
    fprintf(out, "%" PRId64 " %.6f %.9g", i, (double)i / (double)s->steps_per_epoch, mg_schedule_lr(s, i));
    if (with_damping) fprintf(out, " %.9g", mg_schedule_damping(s, i));
    fputc('\n', out);
}

mg_status mg_schedule_print(const mg_schedule *s, FILE *out, int64_t every, bool with_damping) {
    const int64_t T = mg_schedule_total_steps(s), W = mg_schedule_warmup_steps(s), S = s->steps_per_epoch;
    const int64_t first = mg_schedule_first_step(s);
    fprintf(out, "# lr schedule %s: %" PRId64 " steps per epoch, %d epochs, %" PRId64 " steps, warm-up %" PRId64
                 " steps, first step %" PRId64 "\n",
            mg_lr_schedule_name(s->mode), S, s->epochs, T, W, first);
    fprintf(out, "# step epoch lr%s\n", with_damping ? " damping" : "");
    if (every > 0) {
        int64_t i = first;
        for (; i < T; i += every) print_row(s, out, i, with_damping);
        if (i - every != T - 1) print_row(s, out, T - 1, with_damping);
    } else {
        int64_t last = -1;
        /* Warm-up points: every tenth of the warm-up, then its last step. */
        if (W > first) {
            for (int k = 0; k < 10; k++) {
                int64_t i = k * W / 10;
                if (i < first || i <= last) continue;
                print_row(s, out, i, with_damping);
                last = i;
            }
            if (W - 1 > last && W - 1 >= first) {
                print_row(s, out, W - 1, with_damping);
                last = W - 1;
            }
        }
        for (int64_t e = s->first_epoch; e < s->epochs; e++) {
            int64_t i = e * S;
            if (i <= last) continue;
            print_row(s, out, i, with_damping);
            last = i;
        }
        if (T - 1 > last) print_row(s, out, T - 1, with_damping);
    }
    if (ferror(out)) return MG_FAIL(MG_ERR_IO, "--print-lr: cannot write the schedule to the output");
    return MG_OK;
}
