/* test_dist.c: the process-group interface without a launcher (the single-process implementation:
 * rank 0 of 1, collectives are identities or copies; a bad MG_DIST is refused) and synchronised batch
 * norm: two threads standing in for two ranks, each holding half of a batch and summing their
 * partial sums through a barrier, must reproduce ordinary batch norm on the whole batch (outputs,
 * running statistics, input gradients, and weight/bias gradients summed over the two halves). The
 * multi-process runs under mpirun are tests/mpi/. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "mg_test.h"
#include "multigrain/dist.h"
#include "multigrain/ops.h"
#include "multigrain/ops_layers.h"

static void test_single_group(void **state) {
    (void)state;
    mg_dist *d = NULL;
    mg_assert_ok(mg_dist_init_single(&d));
    assert_int_equal(mg_dist_rank(d), 0);
    assert_int_equal(mg_dist_world(d), 1);
    assert_string_equal(mg_dist_backend(d), "single");
    float f[3] = {1, 2, 3};
    double g[2] = {4, 5};
    mg_assert_ok(mg_dist_allreduce_sum_f32(d, f, 3));
    mg_assert_ok(mg_dist_allreduce_mean_f32(d, f, 3));
    mg_assert_ok(mg_dist_allreduce_sum_f64(d, g, 2));
    mg_assert_ok(mg_dist_allreduce_max_f64(d, g, 2));
    assert_true(f[0] == 1 && f[1] == 2 && f[2] == 3 && g[0] == 4 && g[1] == 5);
    mg_assert_ok(mg_dist_broadcast(d, f, sizeof f, 0));
    assert_int_equal(mg_dist_broadcast(d, f, sizeof f, 1), MG_OK); /* one process: nothing to check */
    int64_t mine = 42, all[1] = {0};
    mg_assert_ok(mg_dist_allgather(d, &mine, sizeof mine, all));
    assert_int_equal(all[0], 42);
    mg_assert_ok(mg_dist_barrier(d));
    int failed = -1, first = -2;
    mg_assert_ok(mg_dist_check_agree(d, false, &failed, &first));
    assert_int_equal(failed, 1);
    assert_int_equal(first, 0);
    mg_assert_ok(mg_dist_check_agree(d, true, &failed, &first));
    assert_int_equal(failed, 0);
    assert_int_equal(first, -1);
    mg_dist_set_timeout(d, 0);
    mg_assert_ok(mg_dist_sync_settings(d));
    assert_true(mg_dist_comm_seconds(d) == 0);
    mg_dist_free(d);
    /* NULL handle = one process */
    assert_int_equal(mg_dist_world(NULL), 1);
    mg_assert_ok(mg_dist_allreduce_sum_f32(NULL, f, 3));
}

static void test_init_from_environment(void **state) {
    (void)state;
    static const char *const launcher[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "PMIX_RANK",
                                           "SLURM_STEP_NUM_TASKS", "MG_DIST"};
    for (size_t i = 0; i < sizeof launcher / sizeof launcher[0]; i++) unsetenv(launcher[i]);
    mg_dist *d = NULL;
    mg_assert_ok(mg_dist_init(&d, NULL, NULL)); /* no launcher: single process, MPI untouched */
    assert_int_equal(mg_dist_world(d), 1);
    assert_string_equal(mg_dist_backend(d), "single");
    mg_dist_free(d);
    setenv("MG_DIST", "bogus", 1);
    assert_int_equal(mg_dist_init(&d, NULL, NULL), MG_ERR_CONFIG);
    assert_non_null(strstr(mg_error_message(), "MG_DIST"));
    unsetenv("MG_DIST");
    /* srun without an MPI plugin: N plain copies would write the same run folder */
    setenv("SLURM_STEP_NUM_TASKS", "4", 1);
    assert_int_equal(mg_dist_init(&d, NULL, NULL), MG_ERR_CONFIG);
    assert_non_null(strstr(mg_error_message(), "srun --mpi=pmix"));
    setenv("MG_DIST", "single", 1);
    mg_assert_ok(mg_dist_init(&d, NULL, NULL));
    mg_dist_free(d);
    unsetenv("MG_DIST");
    unsetenv("SLURM_STEP_NUM_TASKS");
#if !MG_HAVE_MPI
    /* a build without MPI started by mpirun with 2 processes refuses to run 2 independent copies */
    setenv("OMPI_COMM_WORLD_SIZE", "2", 1);
    assert_int_equal(mg_dist_init(&d, NULL, NULL), MG_ERR_UNSUPPORTED);
    assert_non_null(strstr(mg_error_message(), "built without MPI"));
    unsetenv("OMPI_COMM_WORLD_SIZE");
#endif
}

/* ---- sync BN with two threads as two ranks ---------------------------------------------------- */

typedef struct pair {
    pthread_barrier_t bar;
    double *buf[2];
    int calls[2];
} pair;

typedef struct rank_job {
    pair *p;
    int r;
    mg_bn2d_args a;
    const float *x, *dy, *w, *b;
    float *rm, *rv, *sm, *si, *y, *dx, *dw, *db;
    mg_status s;
} rank_job;

/* Sums data[n] over the two "ranks" (buf[0] + buf[1] on both, so both get identical results). */
static mg_status pair_reduce(void *ctx, double *data, size_t n) {
    rank_job *j = ctx;
    pair *p = j->p;
    p->buf[j->r] = data;
    p->calls[j->r]++;
    pthread_barrier_wait(&p->bar);
    double *sum = malloc(n * sizeof *sum);
    for (size_t i = 0; i < n; i++) sum[i] = p->buf[0][i] + p->buf[1][i];
    pthread_barrier_wait(&p->bar);
    memcpy(data, sum, n * sizeof *sum);
    free(sum);
    return MG_OK;
}

static void *rank_main(void *arg) {
    rank_job *j = arg;
    j->s = mg_bn2d_forward_sync(&j->a, j->x, j->w, j->b, j->rm, j->rv, j->sm, j->si, j->y, pair_reduce, j);
    if (j->s == MG_OK)
        j->s = mg_bn2d_backward_sync(&j->a, j->x, j->dy, j->w, j->sm, j->si, j->dx, j->dw, j->db, pair_reduce, j);
    return NULL;
}

static mg_status identity_reduce(void *ctx, double *data, size_t n) {
    (void)ctx;
    (void)data;
    (void)n;
    return MG_OK;
}

static void fill(float *v, size_t n, uint64_t seed, float scale, float offset) {
    mg_rng r;
    mg_rng_init(&r, seed, 0, 0, 0);
    for (size_t i = 0; i < n; i++) v[i] = offset + scale * (float)(2.0 * mg_rng_uniform(&r) - 1.0);
}

static void test_bn_sync_two_ranks(void **state) {
    (void)state;
    mg_assert_ok(mg_ops_set_threads(1)); /* the two threads are the parallelism here */
    enum { N = 6, C = 5, H = 3, W = 4 };
    size_t hw = H * W, total = (size_t)N * C * hw, half = total / 2;
    float *x = malloc(total * sizeof *x), *dy = malloc(total * sizeof *dy);
    float w[C], b[C];
    fill(x, total, 1, 2.0f, 0.7f); /* mean far from 0 on purpose: the shifted sums must stay exact */
    fill(dy, total, 2, 1.0f, 0.1f);
    fill(w, C, 3, 0.5f, 1.0f);
    fill(b, C, 4, 0.5f, 0.0f);
    /* reference: ordinary batch norm on the whole batch */
    float rm[C], rv[C], sm[C], si[C], dw[C] = {0}, db[C] = {0};
    for (int c = 0; c < C; c++) rm[c] = 0.1f * c, rv[c] = 1.0f + 0.2f * c;
    float *y = malloc(total * sizeof *y), *dx = malloc(total * sizeof *dx);
    mg_bn2d_args a = mg_bn2d_default_args(MG_BN_TRAIN, N, C, H, W);
    mg_assert_ok(mg_bn2d_forward(&a, x, w, b, rm, rv, sm, si, y));
    mg_assert_ok(mg_bn2d_backward(&a, x, dy, w, sm, si, dx, dw, db));

    /* two ranks of N/2 images each */
    pair p;
    memset(&p, 0, sizeof p);
    pthread_barrier_init(&p.bar, NULL, 2);
    rank_job j[2];
    float rm2[2][C], rv2[2][C], sm2[2][C], si2[2][C], dw2[2][C], db2[2][C];
    float *y2 = malloc(total * sizeof *y2), *dx2 = malloc(total * sizeof *dx2);
    pthread_t th[2];
    for (int r = 0; r < 2; r++) {
        for (int c = 0; c < C; c++) rm2[r][c] = 0.1f * c, rv2[r][c] = 1.0f + 0.2f * c, dw2[r][c] = db2[r][c] = 0;
        j[r] = (rank_job){.p = &p, .r = r, .a = mg_bn2d_default_args(MG_BN_TRAIN, N / 2, C, H, W),
                          .x = x + r * half, .dy = dy + r * half, .w = w, .b = b, .rm = rm2[r], .rv = rv2[r],
                          .sm = sm2[r], .si = si2[r], .y = y2 + r * half, .dx = dx2 + r * half, .dw = dw2[r],
                          .db = db2[r]};
        pthread_create(&th[r], NULL, rank_main, &j[r]);
    }
    for (int r = 0; r < 2; r++) pthread_join(th[r], NULL);
    pthread_barrier_destroy(&p.bar);
    for (int r = 0; r < 2; r++) {
        mg_assert_ok(j[r].s);
        assert_int_equal(p.calls[r], 3); /* forward: sums, squared deviations; backward: one */
        /* float32 outputs of the same formulas with sums in another order: a few ulps */
        mg_test_assert_close("save_mean", sm2[r], sm, C, 1e-6, 1e-5);
        mg_test_assert_close("save_invstd", si2[r], si, C, 1e-6, 1e-5);
        mg_test_assert_close("running_mean", rm2[r], rm, C, 1e-6, 1e-5);
        mg_test_assert_close("running_var", rv2[r], rv, C, 1e-6, 1e-5);
    }
    mg_test_assert_close("y", y2, y, total, 1e-5, 1e-5);
    /* dx = (dy - mean(dy) - (x - mean) k) scale subtracts nearly equal terms: a looser relative bound */
    mg_test_assert_close("dx", dx2, dx, total, 1e-5, 1e-4);
    float dws[C], dbs[C];
    for (int c = 0; c < C; c++) dws[c] = dw2[0][c] + dw2[1][c], dbs[c] = db2[0][c] + db2[1][c];
    mg_test_assert_close("dweight (sum of the local sums)", dws, dw, C, 1e-5, 1e-5);
    mg_test_assert_close("dbias (sum of the local sums)", dbs, db, C, 1e-5, 1e-5);

    /* one process (identity reduce) = ordinary batch norm */
    float rm1[C], rv1[C], sm1[C], si1[C], dw1[C] = {0}, db1[C] = {0};
    for (int c = 0; c < C; c++) rm1[c] = 0.1f * c, rv1[c] = 1.0f + 0.2f * c;
    mg_assert_ok(mg_bn2d_forward_sync(&a, x, w, b, rm1, rv1, sm1, si1, y2, identity_reduce, NULL));
    mg_assert_ok(mg_bn2d_backward_sync(&a, x, dy, w, sm1, si1, dx2, dw1, db1, identity_reduce, NULL));
    mg_test_assert_close("y (one process)", y2, y, total, 1e-5, 1e-5);
    mg_test_assert_close("dx (one process)", dx2, dx, total, 1e-5, 1e-4);
    mg_test_assert_close("running_var (one process)", rv1, rv, C, 1e-6, 1e-5);
    mg_test_assert_close("dweight (one process)", dw1, dw, C, 1e-5, 1e-5);

    /* training mode only */
    mg_bn2d_args e = mg_bn2d_default_args(MG_BN_EVAL, N, C, H, W);
    assert_int_equal(mg_bn2d_forward_sync(&e, x, w, b, rm1, rv1, sm1, si1, y2, identity_reduce, NULL),
                     MG_ERR_INVALID_ARG);
    free(x);
    free(dy);
    free(y);
    free(dx);
    free(y2);
    free(dx2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single_group),
        cmocka_unit_test(test_init_from_environment),
        cmocka_unit_test(test_bn_sync_two_ranks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
