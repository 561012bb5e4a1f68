/* mg_test.h: helpers shared by the C tests: cmocka includes, oracle file loading, and the
 * tolerance check |got - ref| <= atol + rtol * |ref| with a report of the worst element. */
#ifndef MG_TEST_H
#define MG_TEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
/* cmocka needs the includes above first */
#include <cmocka.h>

#include "multigrain/npy.h"
#include "multigrain/status.h"

#define MG_TEST_SKIP 77

/* $MG_ORACLE_DIR (where this test's generator wrote its references); fails the test if unset. */
const char *mg_test_oracle_dir(void);
/* True when the oracle generator could not run (no torch): the test should return MG_TEST_SKIP. */
int mg_test_oracle_unavailable(void);
/* A scratch folder for the test ($MG_TEST_TMP or /tmp). */
const char *mg_test_tmp_dir(void);

/* Loads <oracle dir>/<name>.npy as float32 (or as `dtype` with the _as variant); fails the test on error. */
void mg_test_load(const char *name, mg_npy *out);
void mg_test_load_as(const char *name, mg_dtype dtype, mg_npy *out);

/* Compares n floats; on any element outside atol + rtol*|ref| prints the tensor name, the max abs and
 * rel error, the first bad index, and fails the test. Returns the max abs error. */
double mg_test_assert_close(const char *what, const float *got, const float *ref, size_t n, double atol,
                            double rtol);
double mg_test_assert_close_f64(const char *what, const double *got, const double *ref, size_t n,
                                double atol, double rtol);

/* A seeded uniform [-1, 1) float from a 64-bit LCG state (the same sequence for the same seed on every
 * machine), and a malloc'd buffer of n of them (fails the test when out of memory). */
float mg_test_urand(uint64_t *state);
float *mg_test_rand_buf(uint64_t *state, size_t n);

/* Whether this CPU has AVX-512 F/BW/VL/DQ (oneDNN's avx512_core): its Winograd kernels need it, so
 * tests expect Winograd convolutions only there. */
int mg_test_cpu_avx512_core(void);
/* Whether the CPU has AVX2 and FMA (our Winograd kernel for AVX2, src/ops/cpu/wino_avx2.c). */
int mg_test_cpu_avx2_fma(void);

/* Asserts that expr returns MG_ERR_INVALID_ARG with a message (more than a few words). */
#define MG_EXPECT_INVALID(expr)                                                                    \
    do {                                                                                           \
        mg_error_clear();                                                                          \
        assert_int_equal((expr), MG_ERR_INVALID_ARG);                                              \
        assert_true(strlen(mg_error_message()) > 10);                                              \
    } while (0)

/* The threads of this process (/proc/self/task), -1 without /proc. */
int mg_test_count_threads(void);

/* Gives every batch-norm running mean and variance of a model non-trivial values (variances
 * 0.5..0.99, means and the rest -0.06..0.06), so that folding BN into convolutions matters. */
struct mg_model;
void mg_test_set_bn_stats(struct mg_model *m);

/* Asserts a status is MG_OK, printing the recorded message otherwise. */
#define mg_assert_ok(expr)                                                                         \
    do {                                                                                           \
        mg_status s__ = (expr);                                                                    \
        if (s__ != MG_OK) fail_msg("%s -> %s: %s", #expr, mg_status_name(s__), mg_error_message()); \
    } while (0)

#endif
