/* test_cpu_fma.c: multigrain/cpu.h. The FMA loop at 8 and 16 floats against the same chains computed
 * here one float at a time with C's fmaf (a fused multiply-add rounds once, as the instruction does,
 * so the results are equal bit for bit: any iteration skipped, chain dropped or lane lost shows);
 * mg_cpu_fma512_gain's measurement (once per process, in a plausible range) and its MG_FMA512_GAIN
 * override; and the decisions built on it: the width mg_cpu_fma_width reports and whether 8-wide
 * code reaches the peak (mg_cpu_fma8_at_peak) on either side of MG_CPU_FMA512_WIDE. Skips the widths
 * this CPU lacks. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "mg_test.h"
#include "multigrain/cpu.h"

/* mg_cpu_fma_chains computed with scalar fmaf: 12 chains, then the documented sum tree, first lane plus
 * last (every lane of a chain holds the same value). */
static float chains_ref(long iters, float seed) {
    float a[12];
    for (int j = 0; j < 12; j++) {
        a[j] = seed + (float)j;
        for (long i = 0; i < iters; i++) a[j] = fmaf(a[j], 0.999999f, 1e-7f);
    }
    float s = ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
    s = s + ((a[8] + a[9]) + (a[10] + a[11]));
    return s + s;
}

static void test_chains(void **state) {
    (void)state;
    int ran = 0;
    for (int width = 8; width <= 16; width += 8) {
        if (!mg_cpu_fma_width_ok(width)) continue;
        ran++;
        assert_true(mg_cpu_fma_flops_per_iter(width) == 24.0 * width);
        const long iters[] = {0, 1, 7, 1000, 123457};
        for (size_t i = 0; i < sizeof iters / sizeof *iters; i++)
            for (float seed = -3.0f; seed < 4.0f; seed += 2.5f) {
                float got = mg_cpu_fma_chains(width, iters[i], seed), want = chains_ref(iters[i], seed);
                if (got != want) fail_msg("width %d, %ld iterations, seed %g: %.9g, expected %.9g", width, iters[i],
                                          (double)seed, (double)got, (double)want);
            }
        /* the chains do change: 123457 iterations move the sum away from the start */
        assert_true(fabsf(mg_cpu_fma_chains(width, 123457, 1.0f) - chains_ref(0, 1.0f)) > 0.1f);
    }
    assert_true(isnan(mg_cpu_fma_chains(12, 10, 1.0f)));
    assert_true(isnan(mg_cpu_fma_chains(8, -1, 1.0f)));
    if (!ran) skip();
}

static void test_gain_measured(void **state) {
    (void)state;
    unsetenv("MG_FMA512_GAIN");
    const double g = mg_cpu_fma512_gain();
    if (!mg_cpu_fma_width_ok(16) || !mg_cpu_fma_width_ok(8)) {
        assert_true(g == 0);
        assert_int_equal(mg_cpu_fma_width(), mg_cpu_fma_width_ok(8) ? 8 : 0);
        assert_true(mg_cpu_fma8_at_peak() == mg_cpu_fma_width_ok(8));
        return;
    }
    /* a 16-wide FMA does between one (split in halves; the bound leaves room for noise) and two
     * 8-wide FMAs' work per cycle */
    printf("16-wide FMAs: %.3fx the FLOP rate of 8-wide ones\n", g);
    assert_true(g > 0.6 && g < 2.6);
    assert_true(mg_cpu_fma512_gain() == g); /* measured once */
    assert_int_equal(mg_cpu_fma_width(), g >= MG_CPU_FMA512_FASTER ? 16 : 8);
    assert_true(mg_cpu_fma8_at_peak() == (g < MG_CPU_FMA512_WIDE));
}

static void test_gain_override(void **state) {
    (void)state;
    if (!mg_cpu_fma_width_ok(8)) skip();
    const int wide = mg_cpu_fma_width_ok(16);
    setenv("MG_FMA512_GAIN", "2", 1);
    assert_true(mg_cpu_fma512_gain() == 2.0);
    assert_int_equal(mg_cpu_fma_width(), wide ? 16 : 8);
    assert_true(mg_cpu_fma8_at_peak() == !wide); /* full-width 512-bit FMAs: oneDNN's AVX-512 kernels */
    setenv("MG_FMA512_GAIN", "1.0", 1);
    assert_true(mg_cpu_fma512_gain() == 1.0);
    assert_int_equal(mg_cpu_fma_width(), 8);
    assert_true(mg_cpu_fma8_at_peak());
    setenv("MG_FMA512_GAIN", "1.49", 1); /* just under the threshold */
    assert_true(mg_cpu_fma8_at_peak());
    setenv("MG_FMA512_GAIN", "1.5", 1);
    assert_true(mg_cpu_fma8_at_peak() == !wide);
    /* not a positive number: the measurement stands */
    const char *bad[] = {"", "abc", "0", "-2", "2x", "nan", "inf"};
    unsetenv("MG_FMA512_GAIN");
    const double measured = mg_cpu_fma512_gain();
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        setenv("MG_FMA512_GAIN", bad[i], 1);
        if (mg_cpu_fma512_gain() != measured) fail_msg("MG_FMA512_GAIN=\"%s\" was taken", bad[i]);
    }
    unsetenv("MG_FMA512_GAIN");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chains),
        cmocka_unit_test(test_gain_measured),
        cmocka_unit_test(test_gain_override),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
