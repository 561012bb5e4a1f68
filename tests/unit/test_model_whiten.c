/* test_model_whiten.c: the whitened network (model.h, recipe §1.8/§2.3): switching a model to a
 * whitened layout keeps the trunk, the eval forward equals the formula computed here in double
 * from the model's own pooled vector, training/backward are refused, and mg_model_save /
 * mg_model_load round-trip the whitened format (whiten.mean [D+1], whiten.P [D+1, D'],
 * fc.weight [K, D']). PyTorch parity of the same path: tests/integration/test_whitened.sh. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "mg_test.h"
#include "multigrain/checkpoint.h"
#include "multigrain/model.h"

enum { K = 3, D = 512, DA = D + 1, DP = 100, H = 40, W = 36 };

static void fill(float *x, int64_t n, mg_rng *r, double scale) {
    for (int64_t i = 0; i < n; i++) x[i] = (float)((mg_rng_uniform(r) - 0.5) * scale);
}

static void test_whitened_model(void **state) {
    (void)state;
    mg_model *m;
    mg_assert_ok(mg_model_init(&m, "resnet18", K, 3.0f));
    mg_assert_ok(mg_model_init_weights(m, 5, false));
    mg_rng r;
    mg_rng_init(&r, 9, 0, 0, 0);
    float *x = malloc(sizeof(float) * 2 * 3 * H * W);
    fill(x, 2 * 3 * H * W, &r, 4.0);
    mg_model_outputs o;
    mg_assert_ok(mg_model_forward(m, MG_MODE_EVAL, x, 2, H, W, &o));
    float *pooled0 = malloc(sizeof(float) * 2 * D);
    memcpy(pooled0, o.pooled, sizeof(float) * 2 * D);
    int64_t n_conv;
    float conv_before = mg_model_tensor(m, "layer4.1.conv2.weight", &n_conv)[7];

    /* whiten with D' = 100: the trunk is kept, fc.weight becomes [K, D'] */
    assert_int_equal(mg_model_set_whitening(m, DA + 1), MG_ERR_INVALID_ARG);
    mg_assert_ok(mg_model_set_whitening(m, DP));
    assert_int_equal(mg_model_whitened_dim(m), DP);
    assert_int_equal(mg_model_embedding_dim(m), DP);
    assert_int_equal(mg_model_pooled_dim(m), D);
    assert_true(mg_model_tensor(m, "layer4.1.conv2.weight", NULL)[7] == conv_before);
    int64_t cnt;
    float *fw = mg_model_tensor(m, "fc.weight", &cnt);
    assert_int_equal(cnt, K * DP);
    float *fb = mg_model_tensor(m, "fc.bias", NULL);
    float *mean = mg_model_tensor(m, "whiten.mean", &cnt);
    assert_int_equal(cnt, DA);
    float *P = mg_model_tensor(m, "whiten.P", &cnt);
    assert_int_equal(cnt, DA * DP);
    fill(fw, K * DP, &r, 1.0);
    fill(fb, K, &r, 1.0);
    fill(mean, DA, &r, 0.05);
    fill(P, (int64_t)DA * DP, &r, 2.0);
    int nt = mg_model_tensor_count(m), kind, ndim;
    int64_t shape[4];
    assert_string_equal(mg_model_tensor_info(m, nt - 1, &kind, &ndim, shape, NULL), "whiten.P");
    assert_int_equal(kind, 1);
    assert_int_equal(shape[0], DA);
    assert_int_equal(shape[1], DP);

    /* eval forward vs the formula in double on the model's own pooled vector */
    mg_assert_ok(mg_model_forward(m, MG_MODE_EVAL, x, 2, H, W, &o));
    assert_int_equal(o.dim, DP);
    assert_int_equal(o.pooled_dim, D);
    for (int i = 0; i < 2 * D; i++) assert_true(o.pooled[i] == pooled0[i]);
    for (int i = 0; i < 2; i++) {
        const float *e = o.pooled + i * D;
        double ss = 1, u[DA], phi[DP], pn = 0;
        for (int j = 0; j < D; j++) ss += (double)e[j] * e[j];
        double inv = 1.0 / (sqrt(ss) + 1e-6);
        for (int j = 0; j < D; j++) u[j] = e[j] * inv - mean[j];
        u[D] = inv - mean[D];
        for (int c = 0; c < DP; c++) {
            phi[c] = 0;
            for (int j = 0; j < DA; j++) phi[c] += u[j] * P[(size_t)j * DP + c];
            pn += phi[c] * phi[c];
        }
        pn = sqrt(pn);
        /* float32 sgemm over 513 terms vs double: ~1e-7 relative to |Phi|; unit-norm output: 1e-5 */
        for (int c = 0; c < DP; c++)
            assert_true(fabs(o.embedding[i * DP + c] - phi[c] / (pn + 1e-6)) < 1e-5);
        for (int k = 0; k < K; k++) {
            double l = fb[k];
            for (int c = 0; c < DP; c++) l += (double)fw[k * DP + c] * phi[c];
            assert_true(fabs(o.logits[i * K + k] - l) < 1e-4 * (pn + 1)); /* same float32 rounding, 100 terms */
        }
    }
    /* training is refused */
    assert_int_equal(mg_model_backward(m, o.logits, NULL, NULL), MG_ERR_UNSUPPORTED);
    assert_int_equal(mg_model_forward(m, MG_MODE_TRAIN, x, 2, H, W, &o), MG_ERR_UNSUPPORTED);
    assert_non_null(strstr(mg_error_message(), "whitened"));

    /* save / load round trip in the whitened format */
    char path[4096];
    snprintf(path, sizeof path, "%s/test_model_whiten.safetensors", mg_test_tmp_dir());
    mg_assert_ok(mg_model_save(m, path, 1, 2, NULL, NULL));
    mg_checkpoint c;
    mg_model *m2;
    mg_assert_ok(mg_model_load(path, &m2, &c));
    assert_int_equal(c.whitened, 1);
    assert_int_equal(mg_checkpoint_tensor(&c, "fc.weight")->shape[1], DP);
    assert_int_equal(mg_checkpoint_tensor(&c, "whiten.P")->shape[0], DA);
    mg_checkpoint_close(&c);
    assert_int_equal(mg_model_whitened_dim(m2), DP);
    assert_memory_equal(mg_model_tensor(m2, "whiten.P", NULL), P, sizeof(float) * DA * DP);
    assert_memory_equal(mg_model_tensor(m2, "fc.weight", NULL), fw, sizeof(float) * K * DP);
    mg_model_outputs o2;
    float *emb = malloc(sizeof(float) * 2 * DP);
    /* o was invalidated by the refused forward: recompute */
    mg_assert_ok(mg_model_forward(m, MG_MODE_EVAL, x, 2, H, W, &o));
    memcpy(emb, o.embedding, sizeof(float) * 2 * DP);
    mg_assert_ok(mg_model_forward(m2, MG_MODE_EVAL, x, 2, H, W, &o2));
    assert_memory_equal(o2.embedding, emb, sizeof(float) * 2 * DP);

    /* an unwhitened checkpoint loaded into a whitened model makes it unwhitened again */
    mg_assert_ok(mg_model_set_whitening(m2, 0));
    assert_int_equal(mg_model_tensor_count(m2), nt - 2);
    mg_assert_ok(mg_model_forward(m2, MG_MODE_EVAL, x, 2, H, W, &o2));
    assert_int_equal(o2.dim, D);
    for (int i = 0; i < 2 * D; i++) assert_true(o2.pooled[i] == pooled0[i]);
    remove(path);
    free(emb);
    free(x);
    free(pooled0);
    mg_model_free(m);
    mg_model_free(m2);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_whitened_model)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
