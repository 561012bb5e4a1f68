/* test_model_shed.c: inference under load (src/nn/model.c infer_threads). With other processes
 * keeping all cores but one busy (faked: MG_TEST_OTHER_LOAD, the estimate mg_runtime_other_load
 * returns), a two-thread inference forward runs on one thread, both one fused network (batch 1) and
 * the per-op path (mg_model_set_fused(false), as SE networks run). Checked: the process gains no
 * thread (/proc/self/task; what a one-thread run starts: none), the outputs are the bits of a run
 * at one thread, and the caller's thread count is unchanged afterwards. On a 1-core machine the
 * thread check cannot fail (one thread is all there is to run).
 * Then with real load, a child process spinning on one core: a model's first inference forward,
 * 0.3 s after the model was made, already runs on fewer threads than asked (the load estimate's
 * window starts when the model is made, so no network is built for all threads first). Needs 2 to
 * 16 cores (threads asked: all of them); skipped otherwise. Builds without oneDNN never shed (their
 * convolutions' bits depend on the thread count): there the first case checks that they keep the two
 * threads, and the second is skipped. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mg_test.h"
#include "multigrain/model.h"
#include "multigrain/ops.h"
#include "multigrain/ops_fused.h"

enum { H = 40, W = 40, K = 5, D = 512, N = 2 };

static void forward(mg_model *m, const float *x, int n, float *emb) {
    mg_model_outputs o;
    mg_assert_ok(mg_model_forward(m, MG_MODE_INFER, x, n, H, W, &o));
    memcpy(emb, o.embedding, (size_t)n * D * sizeof(float));
}

static void test_shed_under_load(void **state) {
    (void)state;
    int before = mg_test_count_threads();
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    char load[32];
    snprintf(load, sizeof load, "%ld", ncpu > 1 ? ncpu - 1 : 1); /* one core left free */
    setenv("MG_TEST_OTHER_LOAD", load, 1);
    mg_assert_ok(mg_ops_set_threads(2));

    mg_model *per_op, *fused;
    mg_assert_ok(mg_model_init(&per_op, "resnet18", K, 3.0f));
    mg_assert_ok(mg_model_init_weights(per_op, 21, false));
    mg_model_set_fused(per_op, false);
    mg_assert_ok(mg_model_init(&fused, "resnet18", K, 3.0f));
    mg_assert_ok(mg_model_init_weights(fused, 21, false));
    float *x = malloc((size_t)N * 3 * H * W * sizeof *x);
    for (int i = 0; i < N * 3 * H * W; i++) x[i] = 0.5f * (float)((i * 7919) % 101) / 101.0f - 0.2f;

    float loaded_p[N * D], loaded_f[D], ref_p[N * D], ref_f[D];
    assert_int_equal(mg_model_infer_threads(fused), 0); /* no inference forward yet */
    forward(per_op, x, N, loaded_p);  /* per op, a batch of 2 */
    forward(fused, x, 1, loaded_f);   /* one fused network, batch 1 */
    /* both shed to the one free core; builds without oneDNN never shed (their bits depend on the
     * thread count) */
    const int shed = mg_fnet_available() ? 1 : 2;
    assert_int_equal(mg_model_infer_threads(per_op), shed);
    assert_int_equal(mg_model_infer_threads(fused), shed);
    assert_false(mg_model_fused_active(per_op));
    assert_true(mg_model_fused_active(fused) || !mg_fnet_available());
    if (before > 0 && shed == 1) assert_int_equal(mg_test_count_threads(), before); /* a 1-thread run starts none */
    assert_int_equal(mg_ops_get_threads(), 2); /* the override ended with the forward */

    /* the same forwards at the count they ran on, no load: the same plans, so the same bits */
    unsetenv("MG_TEST_OTHER_LOAD");
    mg_assert_ok(mg_ops_set_threads(shed));
    forward(per_op, x, N, ref_p);
    forward(fused, x, 1, ref_f);
    assert_memory_equal(loaded_p, ref_p, sizeof ref_p);
    assert_memory_equal(loaded_f, ref_f, sizeof ref_f);

    /* no load: the two threads asked for */
    setenv("MG_TEST_OTHER_LOAD", "0", 1);
    mg_assert_ok(mg_ops_set_threads(2));
    forward(fused, x, 1, ref_f);
    assert_int_equal(mg_model_infer_threads(fused), 2);
    unsetenv("MG_TEST_OTHER_LOAD");
    mg_model_free(per_op);
    mg_model_free(fused);
    free(x);
    mg_assert_ok(mg_ops_set_threads(0));
}

static void test_first_forward_sheds_under_real_load(void **state) {
    (void)state;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (ncpu < 2 || ncpu > 16 || !mg_fnet_available()) skip(); /* without oneDNN: never sheds */
    unsetenv("MG_TEST_OTHER_LOAD");
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) { /* one busy core; dies with the test process, and after 30 s in any case */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        alarm(30);
        for (volatile unsigned long i = 0;; i++) {
        }
    }
    mg_assert_ok(mg_ops_set_threads((int)ncpu));
    mg_model *m;
    mg_assert_ok(mg_model_init(&m, "resnet18", K, 3.0f));
    mg_assert_ok(mg_model_init_weights(m, 22, false));
    struct timespec ts = {0, 300 * 1000 * 1000};
    nanosleep(&ts, NULL);
    float *x = malloc((size_t)3 * H * W * sizeof *x), emb[D];
    for (int i = 0; i < 3 * H * W; i++) x[i] = 0.3f * (float)((i * 7919) % 101) / 101.0f;
    forward(m, x, 1, emb);
    int ran = mg_model_infer_threads(m);
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    assert_true(ran >= 1);
    assert_true(ran < ncpu); /* the first forward: without the early window it ran on all threads */
    mg_model_free(m);
    free(x);
    mg_assert_ok(mg_ops_set_threads(0));
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_shed_under_load),
                                       cmocka_unit_test(test_first_forward_sheds_under_real_load)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
