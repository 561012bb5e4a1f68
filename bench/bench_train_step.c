/* bench_train_step.c: images/s of one MultiGrain training step (forward, joint loss with
 * distance-weighted sampling, backward, SGD) on random images, for an architecture, batch and size.
 * Usage: bench_train_step [--arch resnet18] [--batch 96] [--size 32] [--steps 10] [--threads N]
 *        [--lambda 0.5] [--m 3] */
#include <stdio.h>
#include <sys/resource.h>
#include <stdlib.h>
#include <string.h>

#include "core/progress.h"
#include "core/rng.h"
#include "multigrain/ops.h"
#include "multigrain/runtime.h"
#include "multigrain/trainer.h"

int main(int argc, char **argv) {
    mg_runtime_init(argc, argv);
    const char *arch = "resnet18";
    int n = 96, size = 32, steps = 10, threads = 0, m = 3;
    double lambda = 0.5;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--arch")) arch = argv[i + 1];
        else if (!strcmp(argv[i], "--batch")) n = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--size")) size = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--steps")) steps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--lambda")) lambda = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--m")) m = atoi(argv[i + 1]);
        else {
            fprintf(stderr, "bench_train_step: unknown option '%s'\n", argv[i]);
            return 2;
        }
    }
    if (n < 2 || size < 16 || steps < 1 || m < 1) {
        fprintf(stderr, "bench_train_step: expected --batch >= 2, --size >= 16, --steps >= 1, --m >= 1\n");
        return 2;
    }
    if (mg_ops_set_threads(threads) != MG_OK) {
        fprintf(stderr, "bench_train_step: %s\n", mg_error_message());
        return 2;
    }
    size_t per = (size_t)3 * size * size;
    float *x = malloc((size_t)n * per * sizeof *x);
    int32_t *labels = malloc((size_t)n * sizeof *labels);
    int64_t *ids = malloc((size_t)n * sizeof *ids);
    mg_rng r;
    mg_rng_init(&r, 1, 2, 3, 4);
    for (size_t i = 0; i < (size_t)n * per; i++) x[i] = (float)mg_rng_normal(&r);
    for (int i = 0; i < n; i++) {
        ids[i] = i / m;
        labels[i] = (int32_t)(ids[i] % 10);
    }
    mg_model *model;
    mg_trainer *t;
    mg_config c;
    mg_config_init(&c);
    snprintf(c.arch, sizeof c.arch, "%s", arch);
    c.num_classes = 10;
    c.classif_weight = lambda;
    c.repeated_augmentations = m;
    mg_step_result res;
    if (mg_model_init(&model, arch, 10, 3.0f) != MG_OK || mg_model_init_weights(model, 1, false) != MG_OK ||
        mg_trainer_init(&t, model, &c, 1000) != MG_OK || mg_trainer_step(t, x, n, size, size, labels, ids, &res) != MG_OK) {
        fprintf(stderr, "bench_train_step: %s\n", mg_error_message());
        return 1;
    }
    double t0 = mg_time_now();
    for (int s = 0; s < steps; s++) {
        if (mg_trainer_step(t, x, n, size, size, labels, ids, &res) != MG_OK) {
            fprintf(stderr, "bench_train_step: %s\n", mg_error_message());
            return 1;
        }
    }
    double dt = (mg_time_now() - t0) / steps;
    size_t ws = 0, act = mg_model_activation_bytes(model, &ws);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("%s batch %d at %dx%d, lambda %.2f, m %d, %d threads: %.3f s/step, %.1f images/s; activations %.0f MiB, "
           "conv workspace %.0f MiB, parameters+gradients+momentum %.0f MiB, peak RSS %.0f MiB\n",
           arch, n, size, size, lambda, m, mg_ops_get_threads(), dt, n / dt, act / 1048576.0, ws / 1048576.0,
           3.0 * (double)mg_model_param_count(model) * 4 / 1048576.0, ru.ru_maxrss / 1024.0);
    mg_trainer_free(t);
    mg_model_free(model);
    free(x);
    free(labels);
    free(ids);
    return 0;
}
