/* test_margin.c: margin loss and gradients vs torch autograd with fixed triplets; the
 * distance-weighted sampler's probabilities vs numpy and its empirical distribution vs them. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mg_test.h"
#include "multigrain/loss_margin.h"

static void load_triplets(mg_triplets *t) {
    mg_npy tr;
    mg_test_load_as("triplets", MG_DTYPE_I64, &tr);
    memset(t, 0, sizeof *t);
    t->count = t->capacity = tr.shape[0];
    t->anchor = malloc((size_t)t->count * sizeof(int32_t));
    t->positive = malloc((size_t)t->count * sizeof(int32_t));
    t->negative = malloc((size_t)t->count * sizeof(int32_t));
    const int64_t *v = tr.data;
    for (int64_t k = 0; k < t->count; k++) {
        t->anchor[k] = (int32_t)v[3 * k];
        t->positive[k] = (int32_t)v[3 * k + 1];
        t->negative[k] = (int32_t)v[3 * k + 2];
    }
    mg_npy_free(&tr);
}

static void test_loss_and_gradients(void **state) {
    (void)state;
    mg_npy emb;
    mg_test_load("emb", &emb);
    int n = (int)emb.shape[0], d = (int)emb.shape[1];
    mg_triplets t;
    load_triplets(&t);
    const char *tags[2] = {"b12", "b09"};
    const double betas[2] = {1.2, 0.9};
    const char *norms[2] = {"active", "pairs"};
    for (int b = 0; b < 2; b++) {
        for (int m = 0; m < 2; m++) {
            char name[64];
            mg_npy loss, grad, gbeta;
            snprintf(name, sizeof name, "loss_%s_%s", tags[b], norms[m]);
            mg_test_load_as(name, MG_DTYPE_F64, &loss);
            snprintf(name, sizeof name, "grad_%s_%s", tags[b], norms[m]);
            mg_test_load(name, &grad);
            snprintf(name, sizeof name, "gbeta_%s_%s", tags[b], norms[m]);
            mg_test_load_as(name, MG_DTYPE_F64, &gbeta);
            float *demb = malloc((size_t)n * d * sizeof *demb);
            double dbeta = 0.5; /* accumulates: start from a known value */
            mg_margin_result r;
            mg_assert_ok(mg_margin_loss(emb.data, n, d, &t, betas[b], 0.2, (mg_margin_norm)m, 1.0, &r, demb,
                                        &dbeta));
            /* The loss is accumulated in double here and in torch (float64): only the float32
             * rounding of the stored embeddings is common, so 1e-9 relative is ample. */
            mg_test_assert_close_f64("margin loss", &r.loss, loss.data, 1, 1e-12, 1e-9);
            double got_gb = dbeta - 0.5;
            mg_test_assert_close_f64("dloss/dbeta", &got_gb, gbeta.data, 1, 1e-12, 1e-9);
            /* Gradients are summed per triplet into float32: a few float32 ulps per addend. */
            mg_test_assert_close("dloss/demb", demb, grad.data, (size_t)n * d, 1e-7, 1e-5);
            free(demb);
            mg_npy_free(&loss);
            mg_npy_free(&grad);
            mg_npy_free(&gbeta);
        }
    }
    /* scale multiplies the gradients. */
    float *g1 = malloc((size_t)n * d * sizeof *g1), *g2 = malloc((size_t)n * d * sizeof *g2);
    mg_margin_result r1, r2;
    mg_assert_ok(mg_margin_loss(emb.data, n, d, &t, 1.2, 0.2, MG_MARGIN_NORM_ACTIVE, 1.0, &r1, g1, NULL));
    mg_assert_ok(mg_margin_loss(emb.data, n, d, &t, 1.2, 0.2, MG_MARGIN_NORM_ACTIVE, 0.5, &r2, g2, NULL));
    for (int k = 0; k < n * d; k++) assert_true(fabsf(g2[k] - 0.5f * g1[k]) <= 1e-7f + 1e-6f * fabsf(g1[k]));
    free(g1);
    free(g2);
    /* A triplet pointing outside the batch is refused. */
    t.negative[0] = n;
    assert_int_equal(mg_margin_loss(emb.data, n, d, &t, 1.2, 0.2, MG_MARGIN_NORM_ACTIVE, 1.0, &r1, NULL, NULL),
                     MG_ERR_INVALID_ARG);
    mg_triplets_free(&t);
    mg_npy_free(&emb);
}

static void test_sampling_distribution(void **state) {
    (void)state;
    mg_npy emb, ids, probs;
    mg_test_load("emb", &emb);
    mg_test_load_as("ids", MG_DTYPE_I64, &ids);
    mg_test_load_as("probs", MG_DTYPE_F64, &probs);
    int n = (int)emb.shape[0], d = (int)emb.shape[1];
    mg_dws_params p = mg_dws_params_default();
    double *row = malloc((size_t)n * sizeof *row);
    for (int i = 0; i < n; i++) {
        int adm = 0;
        mg_assert_ok(mg_dws_probabilities(emb.data, ids.data, n, d, &p, i, row, &adm));
        /* Distances in double from float32 inputs on both sides; the weights are exp of differences
         * of logs with |log| < 100, so 1e-9 relative holds easily. */
        mg_test_assert_close_f64("p(k|i)", row, (const double *)probs.data + (size_t)i * n, (size_t)n, 1e-12, 1e-9);
    }
    /* Empirical distribution of the first negative drawn for each anchor, over many steps. With
     * m = 3 each anchor draws 2 negatives without replacement; the first draw follows p(k|i). */
    const int steps = 4000;
    int *counts = calloc((size_t)n * n, sizeof *counts);
    int *first_seen = calloc((size_t)n, sizeof *first_seen);
    mg_triplets t = {0};
    for (int s = 0; s < steps; s++) {
        mg_assert_ok(mg_dws_sample(emb.data, ids.data, n, d, &p, 42, (uint64_t)s, &t));
        memset(first_seen, 0, (size_t)n * sizeof *first_seen);
        for (int64_t k = 0; k < t.count; k++) {
            int a = t.anchor[k];
            assert_true(((int64_t *)ids.data)[t.negative[k]] != ((int64_t *)ids.data)[a]);
            assert_true(((int64_t *)ids.data)[t.positive[k]] == ((int64_t *)ids.data)[a]);
            if (!first_seen[a]) {
                counts[a * n + t.negative[k]]++;
                first_seen[a] = 1;
            }
        }
        assert_int_equal(t.count, n * 2); /* every anchor has 2 positives */
    }
    for (int i = 0; i < n; i++) {
        double pr[64];
        const double *row_ref = (const double *)probs.data + (size_t)i * n;
        double total = 0;
        int others = 0;
        for (int k = 0; k < n; k++) {
            total += row_ref[k];
            others += ((int64_t *)ids.data)[k] != ((int64_t *)ids.data)[i];
        }
        for (int k = 0; k < n; k++) {
            /* No admissible negative (all at distance >= 1.4): the documented uniform fallback. */
            pr[k] = total > 0 ? row_ref[k]
                              : (((int64_t *)ids.data)[k] != ((int64_t *)ids.data)[i] ? 1.0 / others : 0.0);
        }
        for (int k = 0; k < n; k++) {
            double expect = pr[k] * steps;
            double sd = sqrt(steps * pr[k] * (1 - pr[k]));
            /* 5 standard deviations (+1 count for p near 0): a false alarm is ~1e-6 per cell. */
            if (!(fabs(counts[i * n + k] - expect) <= 5 * sd + 1))
                fail_msg("anchor %d negative %d: %d draws of %d, expected %.1f (p=%.4f)", i, k, counts[i * n + k], steps, expect, pr[k]);
        }
    }
    /* Same seed and step: identical triplets (reproducible regardless of anything else). */
    mg_triplets t2 = {0};
    mg_assert_ok(mg_dws_sample(emb.data, ids.data, n, d, &p, 7, 3, &t));
    mg_assert_ok(mg_dws_sample(emb.data, ids.data, n, d, &p, 7, 3, &t2));
    assert_int_equal(t.count, t2.count);
    assert_memory_equal(t.negative, t2.negative, (size_t)t.count * sizeof(int32_t));
    /* Chunked (per sub-batch) sampling never crosses a chunk. */
    p.chunks = 2;
    mg_assert_ok(mg_dws_sample(emb.data, ids.data, n, d, &p, 7, 3, &t));
    for (int64_t k = 0; k < t.count; k++) {
        assert_int_equal(t.anchor[k] / (n / 2), t.negative[k] / (n / 2));
        assert_int_equal(t.anchor[k] / (n / 2), t.positive[k] / (n / 2));
    }
    p.chunks = 5; /* 12 rows do not split into 5 */
    assert_int_equal(mg_dws_sample(emb.data, ids.data, n, d, &p, 7, 3, &t), MG_ERR_INVALID_ARG);
    mg_triplets_free(&t);
    mg_triplets_free(&t2);
    free(counts);
    free(first_seen);
    free(row);
    mg_npy_free(&emb);
    mg_npy_free(&ids);
    mg_npy_free(&probs);
}

static void test_uniform_fallback(void **state) {
    (void)state;
    /* Two antipodal instances: every negative is at distance 2 >= 1.4, so the admissible set is
     * empty and negatives are drawn uniformly among the other instance's rows. */
    const int n = 4, d = 4;
    float emb[16] = {1, 0, 0, 0, 1, 0, 0, 0, -1, 0, 0, 0, -1, 0, 0, 0};
    int64_t ids[4] = {0, 0, 1, 1};
    mg_dws_params p = mg_dws_params_default();
    mg_triplets t = {0};
    int hits[4] = {0};
    for (int s = 0; s < 2000; s++) {
        mg_assert_ok(mg_dws_sample(emb, ids, n, d, &p, 1, (uint64_t)s, &t));
        assert_int_equal(t.count, 4);
        assert_int_equal(t.uniform_fallbacks, 4);
        hits[t.negative[0]]++;
    }
    assert_int_equal(hits[0] + hits[1], 0);
    assert_true(abs(hits[2] - 1000) < 5 * 23); /* binomial sd sqrt(2000/4) = 22.4 */
    mg_triplets_free(&t);
}

int main(void) {
    if (mg_test_oracle_unavailable()) return MG_TEST_SKIP;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loss_and_gradients),
        cmocka_unit_test(test_sampling_distribution),
        cmocka_unit_test(test_uniform_fallback),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
