/* test_schedule.c: every learning-rate mode and the THOR damping schedule against an independent
 * Python re-implementation of the reference lr_generator formulas (gen_schedule.py). The schedule
 * is built through the config layer (reference key names where they exist), as training will. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mg_test.h"
#include "multigrain/config.h"
#include "multigrain/schedule.h"

typedef struct sched_case {
    const char *name;
    const char *mode;    /* value of lr_decay_mode (reference key, alias of lr_schedule) */
    const char *steps;   /* lr_steps for mode step, or NULL */
    const char *legacy;  /* lr_steps_legacy_offset, or NULL */
    int damping;         /* compare the damping schedule instead of the lr */
} sched_case;

static const sched_case CASES[] = {
    {"linear_ref", "Linear", NULL, NULL, 0},    {"linear_warm_end", "linear", NULL, NULL, 0},
    {"linear_nowarm", "linear", NULL, NULL, 0}, {"steps_ref", "steps", NULL, NULL, 0},
    {"poly_ref", "poly", NULL, NULL, 0},        {"cosine_ref", "cosine", NULL, NULL, 0},
    {"cosine_nowarm", "cosine", NULL, NULL, 0}, {"thor_readme", "thor", NULL, NULL, 0},
    {"thor_yaml", "thor", NULL, NULL, 0},       {"damping_readme", "thor", NULL, NULL, 1},
    {"step_recipe", "step", "30,60,90", "false", 0}, {"step_legacy", "step", "[30, 60, 90]", "true", 0},
    {"step_warm", "step", "3, 7", "false", 0},
};

static void set(mg_config *cfg, const char *key, double v) {
    char text[64];
    snprintf(text, sizeof text, "%.17g", v);
    mg_assert_ok(mg_config_set_value(cfg, key, text, "test", MG_ERR_USAGE));
}

static void run_case(const sched_case *c) {
    char name[128];
    mg_npy params, ref32, ref64;
    snprintf(name, sizeof name, "%s_params", c->name);
    mg_test_load_as(name, MG_DTYPE_F64, &params);
    mg_test_load(c->name, &ref32);
    snprintf(name, sizeof name, "%s_f64", c->name);
    mg_test_load_as(name, MG_DTYPE_F64, &ref64);
    const double *p = params.data;
    const int64_t S = (int64_t)p[0];
    mg_config cfg;
    mg_config_init(&cfg);
    mg_assert_ok(mg_config_set_value(&cfg, "lr_decay_mode", c->mode, "test", MG_ERR_USAGE));
    set(&cfg, "epoch_size", p[1]);
    set(&cfg, "warmup_epochs", p[2]);
    set(&cfg, "lr_init", p[3]);
    set(&cfg, "lr_end", p[4]);
    set(&cfg, "lr_max", p[5]);
    set(&cfg, "lr_decay", p[6]);
    set(&cfg, "lr_end_epoch", p[7]);
    set(&cfg, "damping_init", p[8]);
    set(&cfg, "damping_decay", p[9]);
    if (c->steps) mg_assert_ok(mg_config_set_value(&cfg, "lr_steps", c->steps, "test", MG_ERR_USAGE));
    if (c->legacy) mg_assert_ok(mg_config_set_value(&cfg, "lr_steps_legacy_offset", c->legacy, "test", MG_ERR_USAGE));
    mg_assert_ok(mg_config_validate(&cfg));
    mg_schedule s;
    mg_assert_ok(mg_schedule_init(&s, &cfg, S));
    const size_t n = ref64.shape[0];
    assert_int_equal((int64_t)n, mg_schedule_total_steps(&s));
    double *got = malloc(n * sizeof *got);
    float *got32 = malloc(n * sizeof *got32);
    assert_non_null(got);
    assert_non_null(got32);
    for (size_t i = 0; i < n; i++) {
        got[i] = c->damping ? mg_schedule_damping(&s, (int64_t)i) : mg_schedule_lr(&s, (int64_t)i);
        got32[i] = (float)got[i];
    }
    /* Same formulas evaluated in double by both sides, with the same libm (Python's math.cos and
     * ** call the C library): only reassociation of a few operations can differ, i.e. a few ulps. */
    mg_test_assert_close_f64(c->name, got, ref64.data, n, 1e-300, 1e-12);
    /* The reference returns float32: rounding two doubles that differ by a few ulps to float can
     * differ by at most one float32 ulp (2^-23 relative). */
    mg_test_assert_close(c->name, got32, ref32.data, n, 1e-30, 1.2e-7);
    free(got);
    free(got32);
    mg_npy_free(&params);
    mg_npy_free(&ref32);
    mg_npy_free(&ref64);
}

static void test_all_modes(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) run_case(&CASES[i]);
}

int main(void) {
    if (mg_test_oracle_unavailable()) return MG_TEST_SKIP;
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_all_modes)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
