/* test_model_streams.c: inference mode's streams (src/nn/model.c fused_streams/fused_run): a batch of
 * n images at T >= 2 threads runs as min(T, n) fused networks side by side, stream k on images
 * [start_k, start_k + chunk_k) with its share of the threads. Checked against two references:
 *  - the definition: each chunk run alone as a batch of its own at the stream's thread count. The
 *    same oneDNN primitives on the same data: equal bit for bit, so a stream that read or wrote
 *    another stream's images, or a chunk boundary off by one, fails;
 *  - the eval-mode forward (the per-op path, an independent implementation) within the fused path's
 *    tolerance (tests/unit/test_model_fused_cache.c).
 * And with MG_STREAMS' switch off the same batch gives the eval-mode outputs too. Skips without
 * oneDNN. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mg_test.h"
#include "multigrain/model.h"
#include "multigrain/ops.h"
#include "multigrain/ops_fused.h"

enum { H = 40, W = 48, K = 7, D = 512 };

typedef struct {
    float *e, *l;
} outs;

static mg_model *new_model(void) {
    mg_model *m;
    mg_assert_ok(mg_model_init(&m, "resnet18", K, 3.0f));
    mg_assert_ok(mg_model_init_weights(m, 13, false));
    mg_test_set_bn_stats(m); /* so that folding matters */
    return m;
}

/* Forward of x [n, 3, H, W] at `threads`; copies the outputs. */
static outs run(mg_model *m, mg_model_mode mode, const float *x, int n, int threads) {
    mg_assert_ok(mg_ops_set_threads(threads));
    mg_model_outputs o;
    mg_assert_ok(mg_model_forward(m, mode, x, n, H, W, &o));
    if (mode == MG_MODE_INFER) assert_true(mg_model_fused_active(m));
    assert_int_equal(o.dim, D);
    outs r = {malloc((size_t)n * D * sizeof(float)), malloc((size_t)n * K * sizeof(float))};
    memcpy(r.e, o.embedding, (size_t)n * D * sizeof(float));
    memcpy(r.l, o.logits, (size_t)n * K * sizeof(float));
    return r;
}

static void outs_free(outs o) { free(o.e), free(o.l); }

/* The batch of n at T threads against its chunks run alone (bit for bit) and against eval mode. */
static void check_split(mg_model *m, const float *x, int n, int T) {
    outs got = run(m, MG_MODE_INFER, x, n, T);
    int ns = T < n ? T : n;
    size_t per = (size_t)3 * H * W;
    int at = 0;
    for (int k = 0; k < ns; k++) {
        int chunk = n / ns + (k < n % ns), tk = T / ns + (k < T % ns);
        outs alone = run(m, MG_MODE_INFER, x + (size_t)at * per, chunk, tk);
        char what[96];
        snprintf(what, sizeof what, "n=%d T=%d: stream %d (images %d..%d, %d thread(s))", n, T, k, at, at + chunk - 1, tk);
        if (memcmp(got.e + (size_t)at * D, alone.e, (size_t)chunk * D * sizeof(float)) ||
            memcmp(got.l + (size_t)at * K, alone.l, (size_t)chunk * K * sizeof(float)))
            fail_msg("%s: outputs differ from the chunk run alone", what);
        outs_free(alone);
        at += chunk;
    }
    outs want = run(m, MG_MODE_EVAL, x, n, 1);
    /* fused (folded BN, Winograd) vs per op: float32 rounding in another order, ~1e-6 relative
     * measured (docs/ops.md); 1e-5 of the scale + 1e-4 relative, as in tests/oracle/test_model.c */
    double mx = 0;
    for (int i = 0; i < n * D; i++) mx = fmax(mx, fabs(want.e[i]));
    mg_test_assert_close("streams embedding vs eval", got.e, want.e, (size_t)n * D, 1e-5 * mx, 1e-4);
    mx = 0;
    for (int i = 0; i < n * K; i++) mx = fmax(mx, fabs(want.l[i]));
    mg_test_assert_close("streams logits vs eval", got.l, want.l, (size_t)n * K, 1e-5 * mx, 1e-4);
    outs_free(got);
    outs_free(want);
}

static float *images(int n) {
    float *x = malloc((size_t)n * 3 * H * W * sizeof *x);
    for (int i = 0; i < n * 3 * H * W; i++) x[i] = sinf(0.37f * (float)i) + 0.2f * cosf(0.011f * (float)i);
    return x;
}

/* Uneven chunks (5 = 3 + 2 at two threads), one image per stream (2 at two), and more threads than
 * images (3 images at four threads: streams of 2, 1 and 1 threads). */
static void test_streams_split(void **state) {
    (void)state;
    mg_model *m = new_model();
    float *x = images(5);
    check_split(m, x, 5, 2);
    check_split(m, x, 2, 2);
    check_split(m, x, 3, 4);
    /* repeated: the cached networks give the same outputs */
    outs a = run(m, MG_MODE_INFER, x, 5, 2), b = run(m, MG_MODE_INFER, x, 5, 2);
    assert_memory_equal(a.e, b.e, (size_t)5 * D * sizeof(float));
    outs_free(a);
    outs_free(b);
    free(x);
    mg_model_free(m);
    mg_assert_ok(mg_ops_set_threads(0));
}

/* MG_STREAMS=0 (read at model init): one network on all threads, same function. */
static void test_streams_off(void **state) {
    (void)state;
    setenv("MG_STREAMS", "0", 1);
    mg_model *m = new_model();
    unsetenv("MG_STREAMS");
    float *x = images(5);
    outs got = run(m, MG_MODE_INFER, x, 5, 2), want = run(m, MG_MODE_EVAL, x, 5, 1);
    double mx = 0;
    for (int i = 0; i < 5 * D; i++) mx = fmax(mx, fabs(want.e[i]));
    mg_test_assert_close("one network embedding vs eval", got.e, want.e, (size_t)5 * D, 1e-5 * mx, 1e-4);
    outs_free(got);
    outs_free(want);
    free(x);
    mg_model_free(m);
    mg_assert_ok(mg_ops_set_threads(0));
}

int main(void) {
    if (!mg_fnet_available()) {
        printf("SKIPPED: this build has no oneDNN, so no fused inference network\n");
        return MG_TEST_SKIP;
    }
    /* the single-network path may shed threads under load (model.c fused_threads); the references
     * here run at fixed counts */
    setenv("MG_ADAPT_THREADS", "0", 1);
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_streams_split), cmocka_unit_test(test_streams_off)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
