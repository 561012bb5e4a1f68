/* mg_test.c: test helpers (see mg_test.h). */
#include "mg_test.h"

#include "multigrain/model.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *mg_test_oracle_dir(void) {
    const char *d = getenv("MG_ORACLE_DIR");
    if (!d) fail_msg("MG_ORACLE_DIR is not set: run this test through ctest");
    return d;
}

int mg_test_oracle_unavailable(void) {
    if (getenv("MG_NO_TORCH")) {
        fprintf(stderr, "SKIPPED: the PyTorch oracle (python3-torch) is not available\n");
        return 1;
    }
    return 0;
}

const char *mg_test_tmp_dir(void) {
    const char *d = getenv("MG_TEST_TMP");
    return d ? d : "/tmp";
}

void mg_test_load_as(const char *name, mg_dtype dtype, mg_npy *out) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.npy", mg_test_oracle_dir(), name);
    mg_status s = mg_npy_read_as(path, dtype, out);
    if (s != MG_OK) fail_msg("loading oracle tensor %s: %s", name, mg_error_message());
}

void mg_test_load(const char *name, mg_npy *out) { mg_test_load_as(name, MG_DTYPE_F32, out); }

#define CLOSE_BODY(T)                                                                              \
    double max_abs = 0, max_rel = 0;                                                               \
    size_t bad = 0, first_bad = (size_t)-1;                                                        \
    for (size_t i = 0; i < n; i++) {                                                               \
        double g = (double)got[i], r = (double)ref[i];                                             \
        double d = fabs(g - r);                                                                    \
        if (!(d <= atol + rtol * fabs(r))) { /* NaN fails too */                                   \
            if (first_bad == (size_t)-1) first_bad = i;                                            \
            bad++;                                                                                 \
        }                                                                                          \
        if (isnan(d)) d = INFINITY;                                                                \
        if (d > max_abs) max_abs = d;                                                              \
        double rel = d / (fabs(r) > 1e-30 ? fabs(r) : 1e-30);                                      \
        if (rel > max_rel && fabs(r) > atol) max_rel = rel;                                        \
    }                                                                                              \
    if (bad) {                                                                                     \
        fprintf(stderr,                                                                            \
                "%s: %zu of %zu elements outside atol %.3g + rtol %.3g; max abs %.3g, max rel %.3g; " \
                "first bad [%zu]: got %.9g ref %.9g\n",                                            \
                what, bad, n, atol, rtol, max_abs, max_rel, first_bad, (double)got[first_bad],     \
                (double)ref[first_bad]);                                                           \
        fail_msg("%s: not close to the reference", what);                                         \
    }                                                                                              \
    return max_abs;

double mg_test_assert_close(const char *what, const float *got, const float *ref, size_t n, double atol,
                            double rtol) {
    CLOSE_BODY(float)
}

double mg_test_assert_close_f64(const char *what, const double *got, const double *ref, size_t n,
                                double atol, double rtol) {
    CLOSE_BODY(double)
}

float mg_test_urand(uint64_t *state) {
    *state = *state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(*state >> 40) / (double)(1ull << 24) * 2.0 - 1.0);
}

float *mg_test_rand_buf(uint64_t *state, size_t n) {
    float *p = malloc((n ? n : 1) * sizeof *p);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++) p[i] = mg_test_urand(state);
    return p;
}

int mg_test_cpu_avx512_core(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
}

int mg_test_cpu_avx2_fma(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

int mg_test_count_threads(void) {
    DIR *d = opendir("/proc/self/task");
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

void mg_test_set_bn_stats(mg_model *m) {
    int nt = mg_model_tensor_count(m);
    for (int i = 0; i < nt; i++) {
        int kind;
        int64_t count;
        const char *name = mg_model_tensor_info(m, i, &kind, NULL, NULL, &count);
        if (kind != 1) continue; /* buffers: running statistics (and counters) */
        float *t = mg_model_tensor(m, name, NULL);
        if (!t) continue;
        int is_var = strstr(name, "running_var") != NULL;
        for (int64_t k = 0; k < count; k++) t[k] = is_var ? 0.5f + 0.01f * (float)(k % 50) : 0.02f * (float)(k % 7) - 0.06f;
    }
}
