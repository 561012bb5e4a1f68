/* bench_infer.c: images/s of one eval-mode forward (backbone, GeM, classifier, L2 embedding) on
 * random images, for an architecture, batch and size; prints the peak RSS (getrusage). The timed
 * iteration is src/bench's (as `multigrain bench model --mode infer`), and how many forwards ran on
 * fewer threads than asked because other processes kept cores busy (mg_model_infer_threads).
 * Usage: bench_infer [--arch resnet50] [--batch 1] [--size 224] [--reps 10] [--threads N]
 *        [--classes 1000] [--trace] [--ab VAR=VALUE]
 * --trace: also each timed forward's milliseconds on stderr, in order, with an 's' after those that
 * ran on fewer threads (a run's mean hides whether a few forwards or a whole stretch were slow).
 * --ab VAR=VALUE: an A/B comparison in one process. A second model, B, is made and planned (its first
 * forward) with VAR=VALUE in the environment, which is then restored; --reps pairs of forwards
 * alternate A and B (A first in even pairs, B first in odd ones) and the line reports both means and
 * the median and range of the per-pair speed ratios B/A. Forward by forward, a host whose speed
 * drifts over minutes (docs/PERFORMANCE.md) slows both alike, so a few percent show that separate
 * runs cannot. VAR must be one read when a model or its fused networks are built (MG_FNET_*,
 * MG_WINO2_MIN_TILES4, MG_STREAMS, ...), not one read once per process. With --trace each pair's
 * "A/B" milliseconds. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "bench/bench.h"
#include "multigrain/ops.h"
#include "multigrain/runtime.h"

/* --ab: model B made and planned with var=value in the environment (restored afterwards), then reps
 * pairs of forwards, alternating which of A and B goes first. */
static int run_ab(mg_bench_model *a, const mg_bench_model_cfg *c, const char *var, const char *value, int reps,
                  int trace) {
    const char *old = getenv(var);
    char *saved = old ? strdup(old) : NULL;
    mg_bench_model *b = NULL;
    double dt;
    setenv(var, value, 1);
    mg_status s = mg_bench_model_init(&b, c);
    if (s == MG_OK) s = mg_bench_model_run(b, &dt);
    if (saved) setenv(var, saved, 1);
    else unsetenv(var);
    free(saved);
    double *ratio = malloc((size_t)reps * sizeof *ratio);
    double total[2] = {0, 0}, sum[2] = {0, 0};
    int b_faster = 0;
    if (s == MG_OK && !ratio) s = MG_FAIL(MG_ERR_NOMEM, "out of memory");
    for (int r = 0; r < reps && s == MG_OK; r++) {
        double t[2];
        for (int k = 0; k < 2 && s == MG_OK; k++) {
            int which = (r % 2) ^ k; /* 0 = A, 1 = B; A first in even pairs */
            mg_bench_model *m = which ? b : a;
            s = mg_bench_model_run(m, &t[which]);
            sum[which] += mg_bench_model_last_value(m);
        }
        if (s != MG_OK) break;
        total[0] += t[0], total[1] += t[1];
        ratio[r] = t[0] / t[1]; /* speed of B over speed of A */
        b_faster += t[1] < t[0];
        if (trace) fprintf(stderr, "%.1f/%.1f%s", t[0] * 1e3, t[1] * 1e3, r + 1 < reps ? " " : "\n");
    }
    if (s == MG_OK) {
        double med, lo, hi;
        mg_bench_summarize(ratio, reps, &med, &lo, &hi);
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        const int n = c->batch;
        printf("%s batch %d at %dx%d, %d threads, %d A/B pairs (B: %s=%s): A %.4f s/batch, %.2f images/s; B %.4f "
               "s/batch, %.2f images/s; B/A speed median %.4f (pairs %.4f-%.4f), B faster in %d of %d; peak RSS "
               "of both %.1f MiB (checksums %.3g, %.3g)\n",
               c->arch, n, c->size, c->size, mg_ops_get_threads(), reps, var, value, total[0] / reps,
               n * reps / total[0], total[1] / reps, n * reps / total[1], med, lo, hi, b_faster,
               reps, ru.ru_maxrss / 1024.0, sum[0], sum[1]);
    } else {
        fprintf(stderr, "bench_infer: %s\n", mg_error_message());
    }
    free(ratio);
    mg_bench_model_free(b);
    mg_bench_model_free(a);
    return s == MG_OK ? 0 : 1;
}

int main(int argc, char **argv) {
    mg_runtime_init(argc, argv, MG_WAIT_SPIN);
    const char *arch = "resnet50", *ab = NULL;
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
        else if (!strcmp(opt, "--ab")) ab = val;
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
    char var[256];
    const char *value = NULL;
    if (ab) {
        const char *eq = strchr(ab, '=');
        if (!eq || eq == ab || (size_t)(eq - ab) >= sizeof var) {
            fprintf(stderr, "bench_infer: --ab: expected VAR=VALUE, found '%s'\n", ab);
            return 2;
        }
        memcpy(var, ab, (size_t)(eq - ab));
        var[eq - ab] = 0;
        value = eq + 1;
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
    if (ab) return run_ab(b, &c, var, value, reps, trace);
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
