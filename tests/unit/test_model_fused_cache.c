/* test_model_fused_cache.c: inference mode's cache of fused networks (src/nn/model.c, ops_fused.h)
 * across input shapes: ResNet-18 on 6 shapes in a cycle (more than the 4 cached, so networks are
 * evicted and rebuilt from a donor's shared weights), each inference compared with the eval-mode
 * forward (the per-op path, an independent implementation); then a weight change through
 * mg_model_tensor must reach every cached shape. Skips without oneDNN. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mg_test.h"
#include "multigrain/model.h"
#include "multigrain/ops.h"
#include "multigrain/ops_fused.h"

typedef struct {
    float *e, *l;
} outs;

static outs run(mg_model *m, mg_model_mode mode, const float *x, int h, int w) {
    mg_model_outputs o;
    mg_assert_ok(mg_model_forward(m, mode, x, 1, h, w, &o));
    if (mode == MG_MODE_INFER) assert_true(mg_model_fused_active(m));
    outs r = {malloc((size_t)o.dim * sizeof(float)), malloc((size_t)o.num_classes * sizeof(float))};
    memcpy(r.e, o.embedding, (size_t)o.dim * sizeof(float));
    memcpy(r.l, o.logits, (size_t)o.num_classes * sizeof(float));
    return r;
}

/* fused (folded BN, Winograd) vs per op: float32 rounding in another order, ~1e-6 relative measured
 * (docs/ops.md); 1e-5 of the scale + 1e-4 relative, as in tests/oracle/test_model.c */
static void compare(const char *what, int h, int w, outs got, outs want, int dim, int classes) {
    char name[96];
    double mx = 0;
    for (int i = 0; i < dim; i++) mx = fmax(mx, fabs(want.e[i]));
    snprintf(name, sizeof name, "%s embedding %dx%d", what, h, w);
    mg_test_assert_close(name, got.e, want.e, (size_t)dim, 1e-5 * mx, 1e-4);
    mx = 0;
    for (int i = 0; i < classes; i++) mx = fmax(mx, fabs(want.l[i]));
    snprintf(name, sizeof name, "%s logits %dx%d", what, h, w);
    mg_test_assert_close(name, got.l, want.l, (size_t)classes, 1e-5 * mx, 1e-4);
    free(got.e), free(got.l), free(want.e), free(want.l);
}

static void test_cycle_of_shapes(void **state) {
    (void)state;
    mg_model *m;
    mg_assert_ok(mg_model_init(&m, "resnet18", 7, 3.0f));
    mg_assert_ok(mg_model_init_weights(m, 11, false));
    mg_test_set_bn_stats(m); /* so that folding matters */
    enum { S = 8 };
    static const int hs[S] = {64, 48, 64, 40, 56, 72, 64, 48}, ws[S] = {48, 64, 64, 40, 72, 56, 48, 64};
    float *x = malloc((size_t)3 * 72 * 72 * sizeof *x);
    for (int i = 0; i < 3 * 72 * 72; i++) x[i] = sinf(0.37f * (float)i);
    /* eval-mode references first: an eval forward replans and empties the fused cache, so the
     * inference runs below go through the cache alone (6 shapes, 4 cached: evictions, rebuilds from
     * a donor, hits) */
    outs want[S], got[S];
    for (int s = 0; s < S; s++) want[s] = run(m, MG_MODE_EVAL, x, hs[s], ws[s]);
    for (int s = 0; s < S; s++) got[s] = run(m, MG_MODE_INFER, x, hs[s], ws[s]);
    for (int s = 0; s < S; s++) compare("cycle", hs[s], ws[s], got[s], want[s], 512, 7);
    /* a weight change through mg_model_tensor while two shapes are cached must reach both */
    outs a0 = run(m, MG_MODE_INFER, x, 64, 48), b0 = run(m, MG_MODE_INFER, x, 48, 64);
    free(a0.e), free(a0.l), free(b0.e), free(b0.l);
    float *w = mg_model_tensor(m, "layer1.0.conv1.weight", NULL);
    for (int i = 0; i < 64 * 64 * 9; i++) w[i] *= -1.5f;
    outs a1 = run(m, MG_MODE_INFER, x, 64, 48), b1 = run(m, MG_MODE_INFER, x, 48, 64);
    outs a2 = run(m, MG_MODE_EVAL, x, 64, 48), b2 = run(m, MG_MODE_EVAL, x, 48, 64);
    compare("after a weight change", 64, 48, a1, a2, 512, 7);
    compare("after a weight change", 48, 64, b1, b2, 512, 7);
    free(x);
    mg_model_free(m);
}

int main(void) {
    if (!mg_fnet_available()) {
        printf("SKIPPED: this build has no oneDNN, so no fused inference network\n");
        return MG_TEST_SKIP;
    }
    mg_ops_set_threads(2);
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_cycle_of_shapes)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
