/* test_threads_limit.c: mg_ops_set_threads(1) means one thread for everything the model runs,
 * oneDNN included. oneDNN (OpenMP) fixes a primitive's thread count when the primitive is created, so
 * the count must be applied before creation, not only before execution: this test trains and infers
 * a ResNet-18 at one thread and checks that the process gained no thread (/proc/self/task;
 * OpenBLAS starts its own when it is loaded, before the test), then that changing the count re-plans and gives the same outputs. On a 1-core
 * machine the first check cannot fail (OpenMP would start one thread anyway). */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mg_test.h"
#include "multigrain/model.h"
#include "multigrain/ops.h"
#include "multigrain/runtime.h"

static void step(mg_model *m, const float *x, int n, float *emb_out, float *logit_out) {
    mg_model_outputs o;
    mg_assert_ok(mg_model_forward(m, MG_MODE_TRAIN, x, n, 32, 32, &o));
    float *dl = calloc((size_t)n * o.num_classes, sizeof *dl);
    for (int i = 0; i < n * o.num_classes; i++) dl[i] = 0.01f * (float)((i % 7) - 3);
    mg_assert_ok(mg_model_backward(m, dl, NULL, NULL));
    free(dl);
    mg_assert_ok(mg_model_forward(m, MG_MODE_INFER, x, n, 32, 32, &o));
    memcpy(emb_out, o.embedding, (size_t)n * o.dim * sizeof(float));
    memcpy(logit_out, o.logits, (size_t)n * o.num_classes * sizeof(float));
}

static void test_one_thread_stays_one(void **state) {
    (void)state;
    int before = mg_test_count_threads(); /* OpenBLAS may have started its threads when it was loaded */
    if (before < 1) skip();       /* no /proc */
    mg_assert_ok(mg_ops_set_threads(1));
    mg_model *m;
    mg_assert_ok(mg_model_init(&m, "resnet18", 10, 3.0f));
    mg_assert_ok(mg_model_init_weights(m, 7, false));
    const int n = 4;
    uint64_t rng = 99;
    float *x = mg_test_rand_buf(&rng, (size_t)n * 3 * 32 * 32);
    float e1[4 * 512], l1[4 * 10], e2[4 * 512], l2[4 * 10];
    step(m, x, n, e1, l1);
    assert_int_equal(mg_test_count_threads(), before);

    /* two threads, then one again: the plans follow the count and compute the same function (the
     * inference outputs after one more identical step agree to float rounding in another order) */
    mg_model *m2;
    mg_assert_ok(mg_model_init(&m2, "resnet18", 10, 3.0f));
    mg_assert_ok(mg_model_init_weights(m2, 7, false));
    mg_assert_ok(mg_ops_set_threads(2));
    step(m2, x, n, e2, l2);
    float de = 0, dl = 0;
    for (int i = 0; i < n * 512; i++) de = fmaxf(de, fabsf(e1[i] - e2[i]));
    for (int i = 0; i < n * 10; i++) dl = fmaxf(dl, fabsf(l1[i] - l2[i]) / (1.0f + fabsf(l1[i])));
    /* measured 0 (oneDNN 2.6 splits the work without changing the sums); the bounds allow another
     * summation order */
    printf("1 vs 2 threads: embedding max diff %.3g, logits %.3g\n", de, dl);
    assert_true(de <= 1e-4f);
    assert_true(dl <= 1e-4f);
    mg_assert_ok(mg_ops_set_threads(1));
    step(m, x, n, e1, l1);
    step(m2, x, n, e2, l2);
    for (int i = 0; i < n * 512; i++) assert_true(fabsf(e1[i] - e2[i]) <= 1e-4f);
    mg_model_free(m);
    mg_model_free(m2);
    free(x);
    mg_assert_ok(mg_ops_set_threads(0));
}

/* OpenBLAS's idle workers spin for ~0.1 s after every multithreaded call and take a core from the
 * convolutions that follow (runtime.h): after a training step and an inference forward at two
 * threads OpenBLAS is back at one thread, and an explicit opt-in is undone by mg_blas_serial. */
static void test_blas_back_to_one_thread(void **state) {
    (void)state;
    mg_assert_ok(mg_ops_set_threads(2));
    openblas_set_num_threads(2); /* what OpenBLAS starts with on this 2-core machine */
    mg_model *m;
    mg_assert_ok(mg_model_init(&m, "resnet18", 10, 3.0f));
    mg_assert_ok(mg_model_init_weights(m, 7, false));
    uint64_t rng = 5;
    float *x = mg_test_rand_buf(&rng, (size_t)2 * 3 * 32 * 32);
    float e[2 * 512], l[2 * 10];
    step(m, x, 2, e, l);
    assert_int_equal(openblas_get_num_threads(), 1);
    mg_blas_parallel(2);
    assert_int_equal(openblas_get_num_threads(), 2);
    mg_blas_serial();
    assert_int_equal(openblas_get_num_threads(), 1);
    mg_model_free(m);
    free(x);
    mg_assert_ok(mg_ops_set_threads(0));
}

/* mg_runtime_other_load counts other processes' CPU time, not ours: with a child process spinning
 * for 0.6 s while this one sleeps, the estimate over that window is at least half a core (more if
 * other tests run beside it; never less, the child being runnable all along). */
static void test_other_load_sees_a_busy_process(void **state) {
    (void)state;
    FILE *f = fopen("/proc/stat", "r");
    if (!f) skip();
    fclose(f);
    mg_runtime_other_load(); /* the window starts here */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct timespec t0, t;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        volatile double x = 0;
        do {
            for (int i = 0; i < 100000; i++) x += i;
            clock_gettime(CLOCK_MONOTONIC, &t);
        } while ((t.tv_sec - t0.tv_sec) + 1e-9 * (t.tv_nsec - t0.tv_nsec) < 0.6);
        _exit(0);
    }
    struct timespec nap = {0, 500000000};
    nanosleep(&nap, NULL);
    double load = mg_runtime_other_load();
    waitpid(pid, NULL, 0);
    print_message("other processes' load with one busy child: %.2f cores\n", load);
    assert_true(load >= 0.5);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_one_thread_stays_one),
                                       cmocka_unit_test(test_blas_back_to_one_thread),
                                       cmocka_unit_test(test_other_load_sees_a_busy_process)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
