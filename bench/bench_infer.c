/* bench_infer.c: images/s of one eval-mode forward (backbone, GeM, classifier, L2 embedding) on
 * random images, for an architecture, batch and size; prints the peak RSS (getrusage). The timed
 * iteration is src/bench's (as `multigrain bench model --mode infer`), and how many forwards ran on
 * fewer threads than asked because other processes kept cores busy (mg_model_infer_threads).
 * Usage: bench_infer [--arch resnet50] [--batch 1] [--size 224] [--reps 10] [--threads N]
 *        [--classes 1000] [--trace]
 * --trace: also each timed forward's milliseconds on stderr, in order, with an 's' after those that
 * ran on fewer threads (a run's mean hides whether a few forwards or a whole stretch were slow). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "bench/bench.h"
#include "multigrain/ops.h"
#include "multigrain/runtime.h"

int main(int argc, char **argv) {
    mg_runtime_init(argc, argv, MG_WAIT_SPIN);
    const char *arch = "resnet50";
    int n = 1, size = 224, reps = 10, threads = 0, classes = 1000, trace = 0;
    for (int i = 1; i < argc; i++) {
        const char *opt = argv[i];
        if (!strcmp(opt, "--trace")) {
            trace = 1;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "bench_infer: option '%s' needs a value\n", opt);
            return 2;
        }
        const char *val = argv[++i];
        if (!strcmp(opt, "--arch")) arch = val;
        else if (!strcmp(opt, "--batch")) n = atoi(val);
        else if (!strcmp(opt, "--size")) size = atoi(val);
        else if (!strcmp(opt, "--reps")) reps = atoi(val);
        else if (!strcmp(opt, "--threads")) threads = atoi(val);
        else if (!strcmp(opt, "--classes")) classes = atoi(val);
        else {
            fprintf(stderr, "bench_infer: unknown option '%s'\n", opt);
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
    mg_bench_model_cfg c;
    mg_bench_model_cfg_default(&c, false);
    c.arch = arch, c.batch = n, c.size = size, c.num_classes = classes;
    mg_bench_model *b;
    double dt;
    /* the first forward plans the convolutions and allocates the workspaces: not timed */
    if (mg_bench_model_init(&b, &c) != MG_OK || mg_bench_model_run(b, &dt) != MG_OK) {
        fprintf(stderr, "bench_infer: %s\n", mg_error_message());
        return 1;
    }
    double best = 1e30, total = 0.0, checksum = 0.0;
    int shed = 0; /* timed forwards that ran on fewer threads than asked (load from other processes) */
    for (int s = 0; s < reps; s++) {
        if (mg_bench_model_run(b, &dt) != MG_OK) {
            fprintf(stderr, "bench_infer: %s\n", mg_error_message());
            return 1;
        }
        total += dt;
        if (dt < best) best = dt;
        checksum += mg_bench_model_last_value(b);
        int fewer = mg_model_infer_threads(mg_bench_model_network(b)) < mg_ops_get_threads();
        shed += fewer;
        if (trace) fprintf(stderr, "%.1f%s%s", dt * 1e3, fewer ? "s" : "", s + 1 < reps ? " " : "\n");
    }
    double mean = total / reps;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("%s batch %d at %dx%d, %d threads: %.4f s/batch (best %.4f), %.2f images/s, peak RSS %.1f MiB "
           "(checksum %.3g), %d of %d forwards on fewer threads (load)\n",
           arch, n, size, size, mg_ops_get_threads(), mean, best, n / mean, ru.ru_maxrss / 1024.0, checksum, shed,
           reps);
    mg_bench_model_free(b);
    return 0;
}
