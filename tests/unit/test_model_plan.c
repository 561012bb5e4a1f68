/* test_model_plan.c: the training step's memory plan. core/memplan on hand-computed cases and on
 * random lifetimes (no two buffers alive at one step share a byte; never below the live lower bound);
 * then the model: the plan that drops block outputs and recomputes them in backward gives bit-identical
 * gradients, outputs and running statistics to the plan that keeps them all (MG_KEEP_BLOCK_OUTPUTS=1),
 * over two training steps, with every buffer poisoned with NaN outside its planned lifetime
 * (MG_POISON_DEAD=1), and needs less memory. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "core/memplan.h"
#include "core/rng.h"
#include "mg_test.h"
#include "multigrain/model.h"

static void test_memplan_hand(void **state) {
    (void)state;
    /* sizes round to 64: A 128, B 256, C 320. C goes first at 0; B meets C at step 2, so above it at
     * 320; A meets B (step 1) but not C, so it fits under B at 0. */
    mg_memplan_buf b[3] = {{.bytes = 100, .first = 0, .last = 1},
                           {.bytes = 200, .first = 1, .last = 2},
                           {.bytes = 300, .first = 2, .last = 3}};
    size_t total = 0;
    mg_assert_ok(mg_memplan_assign(b, 3, &total));
    assert_int_equal(b[2].offset, 0);
    assert_int_equal(b[1].offset, 320);
    assert_int_equal(b[0].offset, 0);
    assert_int_equal(total, 576);
    /* the lower bound: steps 1 and 2 each hold two buffers, 128 + 256 and 256 + 320 */
    assert_int_equal(mg_memplan_peak_live(b, 3), 576);
    /* disjoint lifetimes share everything: the plan is the largest buffer */
    mg_memplan_buf d[3] = {{.bytes = 64, .first = 0, .last = 0},
                           {.bytes = 640, .first = 1, .last = 1},
                           {.bytes = 0, .first = 1, .last = 5}};
    mg_assert_ok(mg_memplan_assign(d, 3, &total));
    assert_int_equal(total, 640);
    assert_int_equal(d[0].offset, 0);
    assert_int_equal(d[1].offset, 0);
    /* a malformed lifetime is an error naming the buffer */
    mg_memplan_buf bad = {.bytes = 8, .first = 3, .last = 2};
    assert_int_equal(mg_memplan_assign(&bad, 1, &total), MG_ERR_INVALID_ARG);
    assert_non_null(strstr(mg_error_message(), "buffer 0"));
    mg_assert_ok(mg_memplan_assign(NULL, 0, &total));
    assert_int_equal(total, 0);
}

static void test_memplan_random(void **state) {
    (void)state;
    mg_rng r;
    mg_rng_init(&r, 7, 0, 0, 0);
    enum { N = 300, STEPS = 60 };
    mg_memplan_buf *b = calloc(N, sizeof *b);
    for (int round = 0; round < 5; round++) {
        for (int i = 0; i < N; i++) {
            int t0 = (int)(mg_rng_uniform(&r) * STEPS), len = (int)(mg_rng_uniform(&r) * 12);
            b[i] = (mg_memplan_buf){.bytes = 1 + (size_t)(mg_rng_uniform(&r) * 100000), .first = t0, .last = t0 + len};
        }
        size_t total = 0;
        mg_assert_ok(mg_memplan_assign(b, N, &total));
        size_t end = 0;
        for (int i = 0; i < N; i++) {
            size_t hi = b[i].offset + mg_arena_round(b[i].bytes);
            assert_int_equal(b[i].offset % MG_ARENA_ALIGN, 0);
            if (hi > end) end = hi;
            for (int j = 0; j < i; j++) {
                int meet = b[i].first <= b[j].last && b[j].first <= b[i].last;
                int overlap = b[i].offset < b[j].offset + b[j].bytes && b[j].offset < b[i].offset + b[i].bytes;
                if (meet && overlap) fail_msg("buffers %d and %d are alive together and overlap", i, j);
            }
        }
        assert_int_equal(total, end);
        assert_true(total >= mg_memplan_peak_live(b, N));
    }
    free(b);
}

typedef struct {
    float *grads, *logits, *emb, *params;
    int64_t n_params;
    size_t act_bytes;
} step_result;

/* Two training steps (forward, backward, a plain gradient step so that the second differs) from a
 * fixed initialisation, under the given environment. */
static step_result run_steps(const char *arch, int n, int hw, int keep) {
    if (keep)
        setenv("MG_KEEP_BLOCK_OUTPUTS", "1", 1);
    else
        unsetenv("MG_KEEP_BLOCK_OUTPUTS");
    setenv("MG_POISON_DEAD", "1", 1);
    mg_model *m;
    mg_assert_ok(mg_model_init(&m, arch, 10, 3.0f));
    mg_assert_ok(mg_model_init_weights(m, 42, false));
    size_t xn = (size_t)n * 3 * hw * hw;
    float *x = malloc(xn * sizeof *x);
    mg_rng r;
    mg_rng_init(&r, 3, 0, 0, 0);
    for (size_t i = 0; i < xn; i++) x[i] = (float)mg_rng_normal(&r);
    step_result res = {0};
    mg_model_outputs o;
    for (int s = 0; s < 2; s++) {
        mg_assert_ok(mg_model_forward(m, MG_MODE_TRAIN, x, n, hw, hw, &o));
        float *dl = malloc((size_t)n * o.num_classes * sizeof *dl), *de = malloc((size_t)n * o.dim * sizeof *de);
        for (int i = 0; i < n * o.num_classes; i++) dl[i] = 0.05f * (float)((i % 5) - 2);
        for (int i = 0; i < n * o.dim; i++) de[i] = 0.01f * (float)((i % 3) - 1);
        mg_model_zero_grad(m);
        mg_assert_ok(mg_model_backward(m, dl, de, NULL));
        free(dl);
        free(de);
        /* one backward per forward: a second needs a new forward */
        assert_int_equal(mg_model_backward(m, NULL, NULL, NULL), MG_ERR_INVALID_ARG);
        float *p = mg_model_params(m), *g = mg_model_grads(m);
        for (int64_t i = 0; i < mg_model_param_count(m); i++) p[i] -= 0.01f * g[i];
    }
    res.n_params = mg_model_param_count(m);
    res.grads = malloc((size_t)res.n_params * sizeof(float));
    res.params = malloc((size_t)res.n_params * sizeof(float));
    memcpy(res.grads, mg_model_grads(m), (size_t)res.n_params * sizeof(float));
    memcpy(res.params, mg_model_params(m), (size_t)res.n_params * sizeof(float));
    res.logits = malloc((size_t)n * o.num_classes * sizeof(float));
    res.emb = malloc((size_t)n * o.dim * sizeof(float));
    memcpy(res.logits, o.logits, (size_t)n * o.num_classes * sizeof(float));
    memcpy(res.emb, o.embedding, (size_t)n * o.dim * sizeof(float));
    res.act_bytes = mg_model_activation_bytes(m, NULL);
    float *rv = mg_model_tensor(m, "layer1.0.bn1.running_var", NULL);
    assert_non_null(rv);
    assert_true(isfinite(rv[0]));
    mg_model_free(m);
    free(x);
    unsetenv("MG_KEEP_BLOCK_OUTPUTS");
    unsetenv("MG_POISON_DEAD");
    return res;
}

static void free_result(step_result *r) {
    free(r->grads);
    free(r->params);
    free(r->logits);
    free(r->emb);
}

static void check_same(const char *arch, int n, int hw) {
    step_result keep = run_steps(arch, n, hw, 1), drop = run_steps(arch, n, hw, 0);
    assert_int_equal(keep.n_params, drop.n_params);
    for (int64_t i = 0; i < keep.n_params; i++)
        if (!isfinite(drop.grads[i])) fail_msg("%s: gradient %lld is %g", arch, (long long)i, drop.grads[i]);
    assert_memory_equal(keep.grads, drop.grads, (size_t)keep.n_params * sizeof(float));
    assert_memory_equal(keep.params, drop.params, (size_t)keep.n_params * sizeof(float));
    assert_memory_equal(keep.logits, drop.logits, (size_t)n * 10 * sizeof(float));
    print_message("%s %dx%d batch %d: activation memory %.2f MiB keeping every block output, %.2f MiB dropping\n",
                  arch, hw, hw, n, keep.act_bytes / 1048576.0, drop.act_bytes / 1048576.0);
    assert_true(drop.act_bytes < keep.act_bytes);
    free_result(&keep);
    free_result(&drop);
}

static void test_drop_matches_keep_resnet18(void **state) {
    (void)state;
    check_same("resnet18", 2, 64); /* block 0 has no downsample: its identity is the stem's output */
}

static void test_drop_matches_keep_resnet50(void **state) {
    (void)state;
    check_same("resnet50", 2, 64);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_memplan_hand),
        cmocka_unit_test(test_memplan_random),
        cmocka_unit_test(test_drop_matches_keep_resnet18),
        cmocka_unit_test(test_drop_matches_keep_resnet50),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
