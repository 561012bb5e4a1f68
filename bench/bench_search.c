/* bench_search.c: throughput of exact k-NN search (blocked sgemm + top-k selection) against one
 * plain OpenBLAS sgemm of the same Q x N x D product, on random L2-normalised data.
 * Usage: bench_search [N=100000] [D=2048] [Q=1000] [K=100] [REPS=3] [Q_BLOCK=0] [DB_BLOCK=0] (0 = library default)
 * Memory: database N*D*4 bytes (820 MB at the defaults) + the plain sgemm's Q*N*4 output (400 MB);
 * the search itself needs only its blocks and the top-k buffers. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "core/progress.h"
#include "core/rng.h"
#include "core/threadpool.h"
#include "multigrain/knn.h"

static long arg_or(int argc, char **argv, int i, long def) { return argc > i ? atol(argv[i]) : def; }

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* CPU seconds of the whole process (all threads): on a shared machine GFLOP per CPU-second is the
 * per-core rate, less disturbed by other processes than wall time (spinning BLAS threads count). */
static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void report(const char *what, double *t, double *c, int reps, double flops) {
    qsort(t, (size_t)reps, sizeof *t, cmp_d);
    qsort(c, (size_t)reps, sizeof *c, cmp_d);
    printf("%-34s wall best %7.3f s median %7.3f s -> %6.1f GFLOP/s best, %6.1f median; %6.1f GFLOP/CPU-s\n",
           what, t[0], t[reps / 2], flops / t[0] * 1e-9, flops / t[reps / 2] * 1e-9, flops / c[0] * 1e-9);
}

int main(int argc, char **argv) {
    long n = arg_or(argc, argv, 1, 100000), d = arg_or(argc, argv, 2, 2048), nq = arg_or(argc, argv, 3, 1000);
    int k = (int)arg_or(argc, argv, 4, 100), reps = (int)arg_or(argc, argv, 5, 3);
    long qb = arg_or(argc, argv, 6, 0), dbb = arg_or(argc, argv, 7, 0);
    if (n < 1 || d < 1 || nq < 1 || k < 1 || k > n || reps < 1 || reps > 50) {
        fprintf(stderr, "usage: bench_search [N] [D] [Q] [K] [REPS]\n");
        return 2;
    }
    int threads = mg_pool_threads(mg_pool_global());
    printf("bench_search: N=%ld D=%ld Q=%ld k=%d, %d threads, q_block %ld db_block %ld (0 = default), OpenBLAS %s\n",
           n, d, nq, k, threads, qb, dbb, openblas_get_config());
    float *db = malloc(sizeof(float) * (size_t)n * (size_t)d), *q = malloc(sizeof(float) * (size_t)nq * (size_t)d);
    float *C = malloc(sizeof(float) * (size_t)nq * (size_t)n);
    int64_t *ids = malloc(sizeof(int64_t) * (size_t)nq * (size_t)k);
    float *sc = malloc(sizeof(float) * (size_t)nq * (size_t)k);
    if (!db || !q || !C || !ids || !sc) {
        fprintf(stderr, "bench_search: out of memory\n");
        return 1;
    }
    mg_rng r;
    mg_rng_init(&r, 42, 0, 0, 0);
    for (size_t i = 0; i < (size_t)n * (size_t)d; i++) db[i] = mg_rng_uniform_f(&r) - 0.5f;
    for (size_t i = 0; i < (size_t)nq * (size_t)d; i++) q[i] = mg_rng_uniform_f(&r) - 0.5f;
    mg_knn_normalize_rows(db, n, d, NULL);
    mg_knn_normalize_rows(q, nq, d, NULL);
    double flops = 2.0 * (double)nq * (double)n * (double)d;
    double t[50], c[50];

    openblas_set_num_threads(threads);
    for (int i = 0; i < reps; i++) {
        double t0 = mg_time_now(), c0 = cpu_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nq, (int)n, (int)d, 1.0f, q, (int)d, db, (int)d,
                    0.0f, C, (int)n);
        t[i] = mg_time_now() - t0;
        c[i] = cpu_now() - c0;
    }
    report("plain sgemm (OpenBLAS threads)", t, c, reps, flops);
    double sgemm_best = t[0], sgemm_cpu = c[0];

    const char *names[2] = {"search: pool tasks, 1-thr sgemm", "search: threaded sgemm + select"};
    for (int m = 0; m < 2; m++) {
        mg_knn_opts o = {.parallel = m == 0 ? MG_KNN_PAR_TASKS : MG_KNN_PAR_BLAS, .q_block = qb, .db_block = dbb};
        for (int i = 0; i < reps; i++) {
            double t0 = mg_time_now(), c0 = cpu_now();
            if (mg_knn_search(db, n, q, nq, d, k, &o, ids, sc) != MG_OK) {
                fprintf(stderr, "bench_search: search failed\n");
                return 1;
            }
            t[i] = mg_time_now() - t0;
            c[i] = cpu_now() - c0;
        }
        report(names[m], t, c, reps, flops);
        printf("%-34s %.1f%% of plain sgemm throughput (wall, best vs best); %.1f%% per CPU-second\n", "",
               100.0 * sgemm_best / t[0], 100.0 * sgemm_cpu / c[0]);
    }
    /* Sanity: the top-1 of the first queries equals the arg-max of the plain sgemm rows (lowest
     * index on equal scores, the documented tie rule). */
    int bad = 0;
    for (long qi = 0; qi < nq && qi < 20; qi++) {
        const float *row = C + (size_t)qi * (size_t)n;
        long best = 0;
        for (long j = 1; j < n; j++)
            if (row[j] > row[best]) best = j;
        bad += ids[qi * k] != best;
    }
    printf("check: top-1 of the first %ld queries vs plain sgemm arg-max: %s\n", nq < 20 ? nq : 20L,
           bad ? "MISMATCH" : "identical");
    free(C);
    free(db);
    free(q);
    free(ids);
    free(sc);
    return 0;
}
