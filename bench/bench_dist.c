/* bench_dist.c: data-parallel scaling: (1) time of the gradient all-reduce (mg_dist_allreduce_sum_f32,
 * bucketed, non-blocking + polled) of N floats, against one blocking MPI_Allreduce of the same array
 * when MPI is compiled in; (2) images/s of full MultiGrain training steps (forward, joint loss,
 * backward, all-reduce, SGD) with `--batch` images per rank on random data, and the time per step
 * spent in collectives. Run it alone or under mpirun (bench/run_scaling.sh runs 1 and 2 ranks).
 * Usage: bench_dist [--mode allreduce|train|both] [--floats 25557032] [--reps 10] [--bucket-mb 25]
 *                   [--arch resnet50] [--batch 8] [--size 224] [--steps 5] [--m 2] [--threads 1]
 *                   [--sync-bn 0|1] [--global 0|1] [--timeout S]
 * --timeout: dist_timeout (default 600: non-blocking collectives polled against a deadline; 0: blocking). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if MG_HAVE_MPI
#include <mpi.h>
#endif

#include "core/progress.h"
#include "core/rng.h"
#include "multigrain/dist.h"
#include "multigrain/ops.h"
#include "multigrain/runtime.h"
#include "multigrain/trainer.h"

static double g_timeout = 600;

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int fail(const char *what) {
    fprintf(stderr, "bench_dist: %s: %s\n", what, mg_error_message());
    return 1;
}

static const char *bucket_label(double bucket_mb) {
    static char buf[96];
    if (g_timeout <= 0)
        snprintf(buf, sizeof buf, "blocking (dist_timeout 0)");
    else
        snprintf(buf, sizeof buf, "buckets of %g MiB polled (dist_timeout %g s)", bucket_mb, g_timeout);
    return buf;
}

static int bench_allreduce(mg_dist *d, size_t n, int reps, double bucket_mb) {
    int rank = mg_dist_rank(d), w = mg_dist_world(d);
    float *g = malloc(n * sizeof *g);
    double *ts = malloc((size_t)reps * sizeof *ts), *tb = malloc((size_t)reps * sizeof *tb);
    if (!g || !ts || !tb) return fail("out of memory");
    for (size_t i = 0; i < n; i++) g[i] = (float)((i + (size_t)rank) % 97) * 1e-3f;
    mg_dist_set_bucket_bytes(d, (size_t)(bucket_mb * 1048576.0));
    if (mg_dist_allreduce_sum_f32(d, g, n) != MG_OK) return fail("warm-up all-reduce");
    for (int r = 0; r < reps; r++) {
        if (mg_dist_barrier(d) != MG_OK) return fail("barrier");
        double t0 = mg_time_now();
        if (mg_dist_allreduce_sum_f32(d, g, n) != MG_OK) return fail("all-reduce");
        ts[r] = mg_time_now() - t0;
        tb[r] = 0;
#if MG_HAVE_MPI
        if (w > 1) {
            MPI_Barrier(MPI_COMM_WORLD);
            t0 = mg_time_now();
            MPI_Allreduce(MPI_IN_PLACE, g, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
            tb[r] = mg_time_now() - t0;
        }
#endif
    }
    qsort(ts, (size_t)reps, sizeof *ts, cmp_double);
    qsort(tb, (size_t)reps, sizeof *tb, cmp_double);
    double mb = (double)n * 4 / 1048576.0, med = ts[reps / 2];
    /* bus bandwidth as NCCL reports it: algorithm bandwidth x 2 (W - 1) / W */
    double bus = w > 1 ? (double)n * 4 / med * 2.0 * (w - 1) / w / 1e9 : 0;
    if (rank == 0) {
        printf("allreduce: %d rank(s), %zu floats (%.1f MiB), %s: median %.1f ms (min %.1f, max %.1f) "
               "over %d reps, bus bandwidth %.2f GB/s",
               w, n, mb, bucket_label(bucket_mb), 1e3 * med,
               1e3 * ts[0], 1e3 * ts[reps - 1], reps, bus);
        if (w > 1 && tb[reps / 2] > 0) printf("; blocking MPI_Allreduce median %.1f ms", 1e3 * tb[reps / 2]);
        printf("\n");
        fflush(stdout);
    }
    free(g);
    free(ts);
    free(tb);
    return 0;
}

static int bench_train(mg_dist *d, const char *arch, int n, int size, int steps, int m, bool sync_bn, bool global) {
    int rank = mg_dist_rank(d), w = mg_dist_world(d);
    size_t per = (size_t)3 * size * size;
    float *x = malloc((size_t)n * per * sizeof *x);
    int32_t *labels = malloc((size_t)n * sizeof *labels);
    int64_t *ids = malloc((size_t)n * sizeof *ids);
    if (!x || !labels || !ids) return fail("out of memory");
    mg_rng r;
    mg_rng_init(&r, 1, 2, 3, (uint64_t)rank);
    for (size_t i = 0; i < (size_t)n * per; i++) x[i] = (float)mg_rng_normal(&r);
    for (int i = 0; i < n; i++) {
        ids[i] = (int64_t)rank * n + i / m; /* global instance ids: copies of one image on one rank */
        labels[i] = (int32_t)(ids[i] % 10);
    }
    mg_config c;
    mg_config_init(&c);
    snprintf(c.arch, sizeof c.arch, "%s", arch);
    c.num_classes = 10;
    c.batch_size = n * w;
    c.repeated_augmentations = m;
    c.sync_bn = sync_bn;
    c.global_sampling = global;
    mg_model *model;
    mg_trainer *t;
    mg_step_result res;
    if (mg_model_init(&model, arch, 10, 3.0f) != MG_OK || mg_model_init_weights(model, 1, false) != MG_OK ||
        mg_trainer_init(&t, model, &c, 1000) != MG_OK || mg_trainer_set_dist(t, d) != MG_OK ||
        mg_trainer_broadcast_state(t) != MG_OK)
        return fail("set-up");
    if (mg_trainer_step(t, x, n, size, size, labels, ids, &res) != MG_OK) return fail("first step"); /* plans */
    if (mg_dist_barrier(d) != MG_OK) return fail("barrier");
    double c0 = mg_dist_comm_seconds(d), t0 = mg_time_now();
    for (int s = 0; s < steps; s++)
        if (mg_trainer_step(t, x, n, size, size, labels, ids, &res) != MG_OK) return fail("step");
    double dt = (mg_time_now() - t0) / steps, comm = (mg_dist_comm_seconds(d) - c0) / steps;
    /* the slowest rank decides the step: report rank 0's view (all ranks wait for each other) */
    if (rank == 0) {
        printf("train: %s, %d rank(s) x %d images at %dx%d (global batch %d), m %d, %d thread(s) per rank, %s BN, "
               "%s sampling, dist_timeout %g: %.3f s/step, %.2f images/s, collectives %.1f ms/step (%.1f %%; includes waiting for "
               "the slower rank), %lld params\n",
               arch, w, n, size, size, n * w, m, mg_ops_get_threads(), sync_bn ? "sync" : "per-rank",
               global ? "global" : "per-rank", g_timeout, dt, n * w / dt, 1e3 * comm, 100 * comm / dt,
               (long long)mg_model_param_count(model));
        fflush(stdout);
    }
    mg_trainer_free(t);
    mg_model_free(model);
    free(x);
    free(labels);
    free(ids);
    return 0;
}

int main(int argc, char **argv) {
    mg_runtime_init(argc, argv, MG_WAIT_SLEEP);
    const char *mode = "both", *arch = "resnet50";
    size_t floats = 25557032; /* ResNet-50's trainable parameters */
    int reps = 10, n = 8, size = 224, steps = 5, m = 2, threads = 1, sync_bn = 0, global = 0;
    double bucket_mb = 25, timeout = 600;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *o = argv[i], *v = argv[i + 1];
        if (!strcmp(o, "--mode")) mode = v;
        else if (!strcmp(o, "--floats")) floats = (size_t)atoll(v);
        else if (!strcmp(o, "--reps")) reps = atoi(v);
        else if (!strcmp(o, "--bucket-mb")) bucket_mb = atof(v);
        else if (!strcmp(o, "--arch")) arch = v;
        else if (!strcmp(o, "--batch")) n = atoi(v);
        else if (!strcmp(o, "--size")) size = atoi(v);
        else if (!strcmp(o, "--steps")) steps = atoi(v);
        else if (!strcmp(o, "--m")) m = atoi(v);
        else if (!strcmp(o, "--threads")) threads = atoi(v);
        else if (!strcmp(o, "--sync-bn")) sync_bn = atoi(v);
        else if (!strcmp(o, "--global")) global = atoi(v);
        else if (!strcmp(o, "--timeout")) timeout = atof(v);
        else {
            fprintf(stderr, "bench_dist: unknown option '%s'\n", o);
            return 2;
        }
    }
    if (reps < 1 || n < 2 || steps < 1 || m < 1 || floats < 1 || bucket_mb <= 0) {
        fprintf(stderr, "bench_dist: expected --reps, --steps, --m, --floats >= 1, --batch >= 2, --bucket-mb > 0\n");
        return 2;
    }
    mg_dist *d = NULL;
    if (mg_dist_init(&d, &argc, &argv) != MG_OK) return fail("init");
    mg_dist_set_timeout(d, timeout);
    g_timeout = timeout;
    if (mg_dist_sync_settings(d) != MG_OK) return fail("settings");
    if (mg_ops_set_threads(threads) != MG_OK) return fail("threads");
    int rc = 0;
    if (!strcmp(mode, "allreduce") || !strcmp(mode, "both")) rc = bench_allreduce(d, floats, reps, bucket_mb);
    if (!rc && (!strcmp(mode, "train") || !strcmp(mode, "both")))
        rc = bench_train(d, arch, n, size, steps, m, sync_bn != 0, global != 0);
    if (rc) {
        mg_dist_abort(d, rc);
        return rc;
    }
    mg_dist_free(d);
    return 0;
}
