/* bench_infer.c: images/s of one eval-mode forward (backbone, GeM, classifier, L2 embedding) on
 * random images, for an architecture, batch and size; prints the peak RSS (getrusage).
 * Usage: bench_infer [--arch resnet50] [--batch 1] [--size 224] [--reps 10] [--threads N]
 *        [--classes 1000] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "core/progress.h"
#include "core/rng.h"
#include "multigrain/model.h"
#include "multigrain/ops.h"
#include "multigrain/runtime.h"

int main(int argc, char **argv) {
    mg_runtime_init(argc, argv);
    const char *arch = "resnet50";
    int n = 1, size = 224, reps = 10, threads = 0, classes = 1000;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--arch")) arch = argv[i + 1];
        else if (!strcmp(argv[i], "--batch")) n = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--size")) size = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--reps")) reps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--classes")) classes = atoi(argv[i + 1]);
        else {
            fprintf(stderr, "bench_infer: unknown option '%s'\n", argv[i]);
            return 2;
        }
    }
    if (n < 1 || size < 16 || reps < 1 || classes < 1) {
        fprintf(stderr, "bench_infer: expected --batch >= 1, --size >= 16, --reps >= 1, --classes >= 1\n");
        return 2;
    }
    if (mg_ops_set_threads(threads) != MG_OK) {
        fprintf(stderr, "bench_infer: %s\n", mg_error_message());
        return 2;
    }
    size_t count = (size_t)n * 3 * size * size;
    float *x = malloc(count * sizeof *x);
    if (!x) {
        fprintf(stderr, "bench_infer: out of memory\n");
        return 1;
    }
    mg_rng r;
    mg_rng_init(&r, 1, 2, 3, 4);
    for (size_t i = 0; i < count; i++) x[i] = (float)mg_rng_normal(&r);
    mg_model *model;
    mg_model_outputs out;
    /* the first forward plans the convolutions and allocates the workspaces: not timed */
    if (mg_model_init(&model, arch, classes, 3.0f) != MG_OK || mg_model_init_weights(model, 1, false) != MG_OK ||
        mg_model_forward(model, MG_MODE_INFER, x, n, size, size, &out) != MG_OK) {
        fprintf(stderr, "bench_infer: %s\n", mg_error_message());
        return 1;
    }
    double best = 1e30, total = 0.0, checksum = 0.0;
    for (int s = 0; s < reps; s++) {
        double t0 = mg_time_now();
        if (mg_model_forward(model, MG_MODE_INFER, x, n, size, size, &out) != MG_OK) {
            fprintf(stderr, "bench_infer: %s\n", mg_error_message());
            return 1;
        }
        double dt = mg_time_now() - t0;
        total += dt;
        if (dt < best) best = dt;
        checksum += out.embedding[0];
    }
    double mean = total / reps;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("%s batch %d at %dx%d, %d threads: %.4f s/batch (best %.4f), %.2f images/s, peak RSS %.1f MiB "
           "(checksum %.3g)\n",
           arch, n, size, size, mg_ops_get_threads(), mean, best, n / mean, ru.ru_maxrss / 1024.0, checksum);
    mg_model_free(model);
    free(x);
    return 0;
}
