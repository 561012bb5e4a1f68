/* test_knn.c: k-NN tie rule, chunked/threaded consistency and errors; PCA whitening on a hand
 * example, its errors and the safetensors round trip. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "mg_test.h"
#include "multigrain/checkpoint.h"
#include "multigrain/knn.h"
#include "multigrain/model.h"
#include "multigrain/whiten.h"

static void test_knn_hand_ties(void **state) {
    (void)state;
    /* 2-d database; query q = (1, 0). Scores = first coordinate:
     * id: 0:0.5  1:1  2:0  3:1  4:0.5  5:-1  -> order by score desc, then id asc:
     * 1 (1), 3 (1), 0 (0.5), 4 (0.5), 2 (0), 5 (-1). All values exact in float32. */
    float db[12] = {0.5f, 0.5f, 1, 0, 0, 1, 1, 0, 0.5f, -0.5f, -1, 0};
    float q[2] = {1, 0};
    int64_t ids[6];
    float sc[6];
    int64_t want[6] = {1, 3, 0, 4, 2, 5};
    mg_knn_opts blk = {.threads = 2, .db_block = 1}; /* every row its own block */
    for (int k = 1; k <= 6; k++) {
        mg_assert_ok(mg_knn_search(db, 6, q, 1, 2, k, NULL, ids, sc));
        for (int r = 0; r < k; r++) assert_int_equal(ids[r], want[r]);
        mg_assert_ok(mg_knn_search(db, 6, q, 1, 2, k, &blk, ids, sc));
        for (int r = 0; r < k; r++) assert_int_equal(ids[r], want[r]);
    }
    assert_true(sc[0] == 1.0f && sc[2] == 0.5f && sc[5] == -1.0f);
    assert_int_equal(mg_knn_search(db, 6, q, 1, 2, 7, NULL, ids, sc), MG_ERR_INVALID_ARG);
    assert_int_equal(mg_knn_search(db, 6, q, 1, 2, 0, NULL, ids, sc), MG_ERR_INVALID_ARG);
    /* Streaming: fewer rows than k is an error at result time. */
    mg_knn *s;
    mg_assert_ok(mg_knn_init(&s, q, 1, 2, 4, NULL));
    mg_assert_ok(mg_knn_add(s, db, 3, 0));
    assert_int_equal(mg_knn_result(s, ids, sc), MG_ERR_INVALID_ARG);
    mg_assert_ok(mg_knn_add(s, db + 6, 3, 3));
    mg_assert_ok(mg_knn_result(s, ids, sc));
    for (int r = 0; r < 4; r++) assert_int_equal(ids[r], want[r]);
    mg_knn_free(s);
}

static void test_knn_configs_agree(void **state) {
    (void)state;
    /* Same random problem under every parallel mode / block size: identical ids (exactness does
     * not depend on the blocking except for float rounding; scores agree to 1e-6 for unit vectors
     * in 32-d, and random data has no ties at that level). */
    enum { N = 1500, D = 32, Q = 23, K = 9 };
    float *db = malloc(sizeof(float) * N * D), *q = malloc(sizeof(float) * Q * D);
    mg_rng r;
    mg_rng_init(&r, 7, 0, 0, 0);
    for (int i = 0; i < N * D; i++) db[i] = (float)mg_rng_normal(&r);
    for (int i = 0; i < Q * D; i++) q[i] = (float)mg_rng_normal(&r);
    int64_t z;
    mg_knn_normalize_rows(db, N, D, &z);
    assert_int_equal(z, 0);
    mg_knn_normalize_rows(q, Q, D, NULL);
    int64_t ref[Q * K], ids[Q * K];
    float rs[Q * K], sc[Q * K];
    mg_knn_opts one = {.threads = 1, .q_block = Q, .db_block = N};
    mg_assert_ok(mg_knn_search(db, N, q, Q, D, K, &one, ref, rs));
    /* Brute force check of the reference itself (float64). */
    for (int qi = 0; qi < Q; qi++) {
        double kth = 0;
        for (int j = 0; j < D; j++) kth += (double)q[qi * D + j] * db[ref[qi * K + K - 1] * D + j];
        int better = 0;
        for (int i = 0; i < N; i++) {
            double s = 0;
            for (int j = 0; j < D; j++) s += (double)q[qi * D + j] * db[i * D + j];
            better += s > kth + 1e-6;
        }
        assert_true(better <= K - 1);
    }
    mg_knn_opts cfg[4] = {{.threads = 2, .q_block = 4, .db_block = 33},
                          {.threads = 2, .parallel = MG_KNN_PAR_BLAS, .q_block = 5, .db_block = 200},
                          {.threads = 3},
                          {0}};
    for (int c = 0; c < 4; c++) {
        mg_assert_ok(mg_knn_search(db, N, q, Q, D, K, &cfg[c], ids, sc));
        for (int i = 0; i < Q * K; i++) assert_int_equal(ids[i], ref[i]);
        mg_test_assert_close("config scores", sc, rs, Q * K, 1e-6, 0);
    }
    free(db);
    free(q);
}

static void test_whiten_hand(void **state) {
    (void)state;
    /* Points (+-2, +-1) plus (0, 0) twice: mean (0, 0); with N - 1 = 5:
     * var_x = 4 * 4 / 5 = 16/5, var_y = 4 * 1 / 5 = 4/5, cov_xy = 0.
     * => eigenvalues 3.2, 0.8; P = diag(1/sqrt(3.2), 1/sqrt(0.8)) (signs: largest entry positive). */
    float x[12] = {2, 1, -2, 1, 2, -1, -2, -1, 0, 0, 0, 0};
    mg_whiten w;
    mg_assert_ok(mg_whiten_fit(x, 6, 2, 0, 0, &w));
    assert_true(fabs(w.eigenvalues[0] - 3.2) < 1e-12 && fabs(w.eigenvalues[1] - 0.8) < 1e-12);
    assert_true(fabs(w.mean[0]) < 1e-7 && fabs(w.mean[1]) < 1e-7);
    /* float32 storage of 1/sqrt(3.2) = 0.5590170 and 1/sqrt(0.8) = 1.1180340: rel 1e-7. */
    assert_true(fabs(w.P[0] - 1 / sqrt(3.2)) < 1e-7 && fabs(w.P[3] - 1 / sqrt(0.8)) < 2e-7);
    assert_true(fabs(w.P[1]) < 1e-7 && fabs(w.P[2]) < 1e-7);
    /* apply: (2, 1) -> (2/sqrt(3.2), 1/sqrt(0.8)) = (1.118, 1.118) -> normalised (0.7071, 0.7071). */
    float y[2];
    mg_assert_ok(mg_whiten_apply(&w, x, 1, y));
    assert_true(fabs(y[0] - sqrt(0.5)) < 1e-6 && fabs(y[1] - sqrt(0.5)) < 1e-6);
    /* Round trip through safetensors. */
    char path[4096];
    snprintf(path, sizeof path, "%s/test_knn_whiten.safetensors", mg_test_tmp_dir());
    mg_assert_ok(mg_whiten_save(&w, path));
    mg_whiten l;
    mg_assert_ok(mg_whiten_load(path, &l));
    assert_int_equal(l.dim_in, 2);
    assert_int_equal(l.dim_out, 2);
    assert_memory_equal(l.P, w.P, 4 * sizeof(float));
    assert_memory_equal(l.mean, w.mean, 2 * sizeof(float));
    mg_whiten_free(&l);
    remove(path);
    /* Plain fold: W_out = [W P^-T | b] with P^-T = diag(sqrt(3.2), sqrt(0.8)) (P is diagonal), and
     * b_out = W m = 0: W = [1, 2], b = 0.5 -> W_out = [sqrt(3.2), 2 sqrt(0.8), 0.5]. */
    float W[2] = {1, 2}, b[1] = {0.5f}, W2[3], b2[1];
    mg_assert_ok(mg_whiten_fold_classifier(&w, W, b, 1, 2, W2, b2));
    assert_true(fabs(W2[0] - sqrt(3.2)) < 1e-6 && fabs(W2[1] - 2 * sqrt(0.8)) < 1e-6 && W2[2] == 0.5f);
    assert_true(fabs(b2[0]) < 1e-7);
    /* A classifier of another width does not fit. */
    float W3[3] = {1, 2, 3}, W4[4];
    assert_int_equal(mg_whiten_fold_classifier(&w, W3, b, 1, 3, W4, b2), MG_ERR_INVALID_ARG);
    mg_whiten_free(&w);
}

static void test_whiten_errors(void **state) {
    (void)state;
    float x[6] = {1, 2, 3, 1, 2, 3};
    mg_whiten w;
    assert_int_equal(mg_whiten_fit(x, 1, 3, 0, 0, &w), MG_ERR_INVALID_ARG);  /* N - 1 = 0 */
    assert_int_equal(mg_whiten_fit(x, 2, 3, 0, 0, &w), MG_ERR_NUMERIC);      /* identical rows */
    assert_int_equal(mg_whiten_fit(x, 2, 3, 4, 0, &w), MG_ERR_INVALID_ARG);  /* D' > D */
    char path[4096];
    snprintf(path, sizeof path, "%s/test_knn_missing.safetensors", mg_test_tmp_dir());
    assert_int_not_equal(mg_whiten_load(path, &w), MG_OK);
}

static void test_fold_checkpoint(void **state) {
    (void)state;
    /* A small real checkpoint (resnet18, 5 classes, feature dim 512) and a full-rank whitening. */
    char in[4096], out[4096];
    snprintf(in, sizeof in, "%s/test_knn_fold_in.safetensors", mg_test_tmp_dir());
    snprintf(out, sizeof out, "%s/test_knn_fold_out.safetensors", mg_test_tmp_dir());
    mg_model *m;
    mg_assert_ok(mg_model_init(&m, "resnet18", 5, 3.0f));
    mg_assert_ok(mg_model_init_weights(m, 11, false));
    mg_assert_ok(mg_model_save(m, in, 3, 30, NULL, NULL));
    mg_model_free(m);
    enum { N = 700, D = 512, K = 5 };
    /* Recipe form: the whitening is learned on l2n([e, 1]) (D + 1 dims) of raw vectors e. */
    float *e0 = malloc(sizeof(float) * N * D), *x = malloc(sizeof(float) * N * (D + 1));
    mg_rng r;
    mg_rng_init(&r, 3, 0, 0, 0);
    for (int i = 0; i < N * D; i++) e0[i] = (float)(mg_rng_uniform(&r) * (1 + (i % D) % 7));
    for (int i = 0; i < N; i++) mg_whiten_augment(e0 + (size_t)i * D, D, x + (size_t)i * (D + 1));
    free(e0);
    mg_whiten w;
    mg_assert_ok(mg_whiten_fit(x, N, D + 1, 0, 0, &w));
    mg_assert_ok(mg_whiten_fold_checkpoint(in, &w, out));
    /* Expected: the fold of the input's classifier, computed directly. */
    mg_checkpoint ci, co;
    mg_assert_ok(mg_checkpoint_open(&ci, in, "resnet18", K));
    float *W = malloc(sizeof(float) * K * D), b[K], *W2 = malloc(sizeof(float) * K * (D + 1)), b2[K];
    mg_assert_ok(mg_checkpoint_read_f32(&ci, "fc.weight", W, K * D));
    mg_assert_ok(mg_checkpoint_read_f32(&ci, "fc.bias", b, K));
    mg_assert_ok(mg_whiten_fold_classifier(&w, W, b, K, D, W2, b2));
    mg_assert_ok(mg_checkpoint_open(&co, out, "resnet18", K));
    assert_int_equal(co.whitened, 1);
    assert_int_equal(co.epoch, 3);
    assert_non_null(mg_safetensors_meta(&co.st, "whiten.fc_input"));
    float *got = malloc(sizeof(float) * K * (D + 1)), gb[K];
    mg_assert_ok(mg_checkpoint_read_f32(&co, "fc.weight", got, K * (D + 1)));
    mg_assert_ok(mg_checkpoint_read_f32(&co, "fc.bias", gb, K));
    assert_memory_equal(got, W2, sizeof(float) * K * (D + 1));
    assert_memory_equal(gb, b2, sizeof gb);
    float *P = malloc(sizeof(float) * (D + 1) * (D + 1));
    mg_assert_ok(mg_checkpoint_read_f32(&co, "whiten.P", P, (D + 1) * (D + 1)));
    assert_memory_equal(P, w.P, sizeof(float) * (D + 1) * (D + 1));
    /* Other tensors are copied unchanged. */
    const mg_st_tensor *a = mg_checkpoint_tensor(&ci, "layer4.1.conv2.weight"),
                       *c = mg_checkpoint_tensor(&co, "layer4.1.conv2.weight");
    assert_non_null(a);
    assert_non_null(c);
    assert_int_equal(a->nbytes, c->nbytes);
    assert_memory_equal(a->data, c->data, a->nbytes);
    /* Identity on one raw embedding e: fc'(Phi) == (W e + b) / (||[e, 1]|| + 1e-6). Tolerance:
     * float32 P, Phi, W' with 513-term sums accumulated in double, logits ~0.1: 1e-5. */
    float e[D], xe[D + 1], phi[D + 1];
    double ss = 1;
    for (int j = 0; j < D; j++) {
        e[j] = (float)(mg_rng_uniform(&r) * 3);
        ss += (double)e[j] * e[j];
    }
    mg_whiten_augment(e, D, xe);
    mg_assert_ok(mg_whiten_project(&w, xe, 1, phi));
    for (int k = 0; k < K; k++) {
        double ref = b[k], f = gb[k];
        for (int j = 0; j < D; j++) ref += (double)W[k * D + j] * e[j];
        for (int j = 0; j <= D; j++) f += (double)got[k * (D + 1) + j] * phi[j];
        assert_true(fabs(f - ref / (sqrt(ss) + 1e-6)) < 1e-5);
    }
    /* Folding twice is refused. */
    mg_checkpoint_close(&co);
    assert_int_equal(mg_whiten_fold_checkpoint(out, &w, in), MG_ERR_INVALID_ARG);
    mg_checkpoint_close(&ci);
    remove(in);
    remove(out);
    free(x);
    free(W);
    free(W2);
    free(got);
    free(P);
    mg_whiten_free(&w);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_knn_hand_ties), cmocka_unit_test(test_knn_configs_agree),
        cmocka_unit_test(test_whiten_hand),   cmocka_unit_test(test_whiten_errors),
        cmocka_unit_test(test_fold_checkpoint),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
