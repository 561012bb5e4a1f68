/* bench_train_step.c: images/s of one MultiGrain training step (forward, joint loss with
 * distance-weighted sampling, backward, SGD) on random images, for an architecture, batch and size.
 * The timed step is src/bench's (as `multigrain bench model --mode train`).
 * Usage: bench_train_step [--arch resnet18] [--batch 96] [--size 32] [--steps 10] [--threads N]
 *        [--lambda 0.5] [--m 3] */
#include <stdio.h>
#include <sys/resource.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench.h"
#include "multigrain/ops.h"
#include "multigrain/runtime.h"

int main(int argc, char **argv) {
    mg_runtime_init(argc, argv, MG_WAIT_SLEEP);
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
    mg_bench_model_cfg c;
    mg_bench_model_cfg_default(&c, true);
    c.arch = arch, c.batch = n, c.size = size, c.lambda = lambda, c.m = m;
    mg_bench_model *b;
    double dt, total = 0;
    /* the first step plans the shapes and allocates: not timed */
    if (mg_bench_model_init(&b, &c) != MG_OK || mg_bench_model_run(b, &dt) != MG_OK) {
        fprintf(stderr, "bench_train_step: %s\n", mg_error_message());
        return 1;
    }
    for (int s = 0; s < steps; s++) {
        if (mg_bench_model_run(b, &dt) != MG_OK) {
            fprintf(stderr, "bench_train_step: %s\n", mg_error_message());
            return 1;
        }
        total += dt;
    }
    dt = total / steps;
    const mg_model *model = mg_bench_model_network(b);
    size_t ws = 0, act = mg_model_activation_bytes(model, &ws);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("%s batch %d at %dx%d, lambda %.2f, m %d, %d threads: %.3f s/step, %.2f images/s; activations %.0f MiB, "
           "conv workspace %.0f MiB, parameters+gradients+momentum %.0f MiB, peak RSS %.0f MiB\n",
           arch, n, size, size, lambda, m, mg_ops_get_threads(), dt, n / dt, act / 1048576.0, ws / 1048576.0,
           3.0 * (double)mg_model_param_count(model) * 4 / 1048576.0, ru.ru_maxrss / 1024.0);
    mg_bench_model_free(b);
    return 0;
}
