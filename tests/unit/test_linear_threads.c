/* test_linear_threads.c: the linear layer's fast path for a few rows (sgemv per row, W's rows split
 * between the OpenMP threads in slices starting at multiples of 64: src/ops/cpu/linear.c) gives the
 * same bits on one and two threads, and both are within the float summation bound of a float64
 * reference: ResNet-50's classifier shape (2048 -> 1000, batch 1), several rows, output counts that
 * do not divide (129, 130, 1000) and one too small to split (64). With slices cut anywhere (65 of
 * 130 rows) OpenBLAS's row blocks change and the bits with them: the test then fails. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mg_test.h"
#include "multigrain/ops.h"
#include "multigrain/ops_layers.h"

static uint64_t g_rng = 0x5DEECE66Dull;

static void run_case(int n, int in, int out) {
    float *x = mg_test_rand_buf(&g_rng, (size_t)n * in), *w = mg_test_rand_buf(&g_rng, (size_t)out * in);
    float *b = mg_test_rand_buf(&g_rng, out);
    float *y1 = malloc((size_t)n * out * sizeof *y1), *y2 = malloc((size_t)n * out * sizeof *y2);
    mg_ops_set_threads(1);
    mg_assert_ok(mg_linear_forward(n, in, out, x, w, b, y1));
    mg_ops_set_threads(2);
    mg_assert_ok(mg_linear_forward(n, in, out, x, w, b, y2));
    if (memcmp(y1, y2, (size_t)n * out * sizeof *y1) != 0) {
        fprintf(stderr, "n %d in %d out %d: one and two threads differ\n", n, in, out);
        fail();
    }
    for (int i = 0; i < n; i++)
        for (int o = 0; o < out; o++) {
            double s = b[o], mag = fabs(b[o]);
            for (int k = 0; k < in; k++) {
                double t = (double)x[(size_t)i * in + k] * w[(size_t)o * in + k];
                s += t;
                mag += fabs(t);
            }
            /* recursive float summation of in + 1 terms, each product rounded once */
            double bound = (in + 2) * ldexp(1.0, -24) * mag;
            if (!(fabs(y2[(size_t)i * out + o] - s) <= bound)) {
                fprintf(stderr, "n %d in %d out %d: row %d output %d got %.9g, want %.9g (bound %.3g)\n", n, in, out,
                        i, o, y2[(size_t)i * out + o], s, bound);
                fail();
            }
        }
    free(x), free(w), free(b), free(y1), free(y2);
}

static void test_threads_same_bits(void **state) {
    (void)state;
    run_case(1, 2048, 1000);
    run_case(3, 300, 1000);
    run_case(2, 64, 129);
    run_case(1, 2048, 130);
    run_case(8, 100, 640);
    run_case(1, 33, 64);
}

int main(void) {
    mg_ops_set_impl(MG_OPS_FAST);
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_threads_same_bits)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
