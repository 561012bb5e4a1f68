/* test_margin_sampling.c: distance-weighted negative sampling at the edges of floating point, on
 * hand-built embeddings (d = 2048, the ResNet-50 width). With the anchor's candidate negatives at
 * distances 0.5 and 1.3, their log-weights differ by ~1460 nats (log q(D) = (d - 2) log D +
 * (d - 3) / 2 log(1 - D^2 / 4)), so the far ones get probability exactly 0: three positives must
 * then reuse the one drawable negative (drawing with replacement), not run out of weight. A row
 * whose embedding is NaN (a diverged step) gets no weight. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mg_test.h"
#include "multigrain/loss_margin.h"

enum { D = 2048, N = 7 };

/* unit vector at distance dist from e0, bending into dimension dim */
static void at_distance(float *row, double dist, int dim) {
    double c = 1.0 - dist * dist / 2.0;
    memset(row, 0, D * sizeof *row);
    row[0] = (float)c;
    row[dim] = (float)sqrt(1.0 - c * c);
}

static void test_underflowed_weights_draw_with_replacement(void **state) {
    (void)state;
    float *emb = malloc((size_t)N * D * sizeof *emb);
    /* rows 0-3: one instance (the anchor and three positives, all e0); rows 4-6: three others */
    int64_t ids[N] = {0, 0, 0, 0, 1, 2, 3};
    for (int i = 0; i < 4; i++) at_distance(emb + (size_t)i * D, 0.0, 1);
    at_distance(emb + 4 * D, 0.5, 4);
    at_distance(emb + 5 * D, 1.3, 5);
    at_distance(emb + 6 * D, 1.3, 6);
    mg_dws_params p = mg_dws_params_default();
    /* the sampler's own probabilities: 3 admissible by distance, only row 4 with weight > 0 */
    double probs[N];
    int admissible = 0;
    mg_assert_ok(mg_dws_probabilities(emb, ids, N, D, &p, 0, probs, &admissible));
    assert_int_equal(admissible, 3);
    assert_true(probs[4] == 1.0 && probs[5] == 0.0 && probs[6] == 0.0);
    mg_triplets t = {0};
    mg_assert_ok(mg_dws_sample(emb, ids, N, D, &p, 1, 0, &t));
    assert_int_equal(t.count, 4 * 3); /* 4 anchors x 3 positives */
    for (int64_t k = 0; k < t.count; k++) assert_int_equal(t.negative[k], 4);
    assert_int_equal(t.uniform_fallbacks, 0);

    /* row 4 diverged to NaN: it is never drawn; rows 5 and 6, alone now, share the weight */
    for (int j = 0; j < D; j++) emb[4 * D + j] = NAN;
    mg_assert_ok(mg_dws_sample(emb, ids, N, D, &p, 1, 0, &t));
    assert_int_equal(t.count, 12);
    assert_int_equal(t.uniform_fallbacks, 0);
    for (int64_t k = 0; k < t.count; k++) assert_true(t.negative[k] == 5 || t.negative[k] == 6);

    /* every other instance NaN: no weight anywhere, so each anchor falls back to a uniform draw
     * over the other instances (the loss is NaN anyway; the point is no crash) */
    for (int j = 0; j < 2 * D; j++) emb[5 * D + j] = NAN;
    mg_assert_ok(mg_dws_sample(emb, ids, N, D, &p, 1, 0, &t));
    assert_int_equal(t.count, 12);
    assert_int_equal(t.uniform_fallbacks, 4);
    for (int64_t k = 0; k < t.count; k++) assert_true(t.negative[k] >= 4 && t.negative[k] <= 6);
    mg_triplets_free(&t);
    free(emb);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_underflowed_weights_draw_with_replacement)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
