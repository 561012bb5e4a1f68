/* test_schedule_unit.c: schedule facts that need no oracle: steps per epoch of the recipe (5005 at
 * batch 512), the THOR sample values computed independently in the research notes
 * (multigrain-recipe.md section 3.4), warm-up/boundary behaviour, and the --print-lr row choice. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mg_test.h"
#include "multigrain/config.h"
#include "multigrain/schedule.h"

static void test_steps_per_epoch(void **state) {
    (void)state;
    /* 2 x 1,281,167 / 512 = 5004.56 -> 5005 (recipe section 1.6, partial batch kept) */
    assert_int_equal(mg_schedule_steps_per_epoch(1281167, 2.0, 512), 5005);
    assert_int_equal(mg_schedule_steps_per_epoch(1281167, 1.0, 240), 5339);
    assert_int_equal(mg_schedule_steps_per_epoch(10, 1.0, 5), 2);
    assert_int_equal(mg_schedule_steps_per_epoch(0, 1.0, 5), 0);
}

static void test_thor_sample_values(void **state) {
    (void)state;
    mg_config c;
    mg_config_init(&c);
    mg_assert_ok(mg_config_set(&c, "optimizer=thor"));
    mg_assert_ok(mg_config_set(&c, "lr_init=0.05672"));
    mg_assert_ok(mg_config_set(&c, "lr_decay=4.9687"));
    mg_assert_ok(mg_config_set(&c, "lr_end_epoch=70"));
    mg_assert_ok(mg_config_set(&c, "epochs=45"));
    mg_assert_ok(mg_config_set(&c, "damping_init=0.02345"));
    mg_assert_ok(mg_config_set(&c, "damping_decay=0.5467"));
    assert_int_equal(c.lr_schedule, MG_LR_SCHEDULE_THOR);
    mg_assert_ok(mg_config_validate(&c));
    mg_schedule s;
    const int64_t S = 100;
    mg_assert_ok(mg_schedule_init(&s, &c, S));
    /* research notes: lr 0.0528 / 0.0264 / 0.0107 / 0.0035 / 0.0002 and damping 0.0221 / 0.0128 /
     * 0.0070 / 0.0038 / 0.0021 at epochs 1, 10, 20, 30, 40 (e = (i + 1) / S = epoch). The notes
     * give 4 decimals, so the tolerance is half a unit of the last digit. */
    const int ep[] = {1, 10, 20, 30, 40};
    const double lr[] = {0.0528, 0.0264, 0.0107, 0.0035, 0.0002};
    const double damp[] = {0.0221, 0.0128, 0.0070, 0.0038, 0.0021};
    for (int k = 0; k < 5; k++) {
        int64_t i = ep[k] * S - 1;
        double got = mg_schedule_lr(&s, i), gd = mg_schedule_damping(&s, i);
        if (!(fabs(got - lr[k]) <= 5e-5)) fail_msg("lr at epoch %d: %g, notes %g", ep[k], got, lr[k]);
        if (!(fabs(gd - damp[k]) <= 5e-5)) fail_msg("damping at epoch %d: %g, notes %g", ep[k], gd, damp[k]);
    }
}

static void test_step_boundaries(void **state) {
    (void)state;
    mg_config c;
    mg_config_init(&c); /* recipe: 0.2, x0.1 at 30/60/90 */
    mg_schedule s;
    mg_assert_ok(mg_schedule_init(&s, &c, 10));
    /* hand-computed: the last step of 0-based epoch 29 still runs at 0.2, epoch 30 at 0.02 */
    assert_true(mg_schedule_lr(&s, 299) == 0.2);
    assert_true(fabs(mg_schedule_lr(&s, 300) - 0.02) < 1e-15);
    assert_true(fabs(mg_schedule_lr(&s, 1199) - 0.0002) < 1e-15);
    mg_assert_ok(mg_config_set(&c, "lr_steps_legacy_offset=true"));
    mg_assert_ok(mg_schedule_init(&s, &c, 10));
    assert_true(mg_schedule_lr(&s, 309) == 0.2); /* original code: epoch > 30 */
    assert_true(fabs(mg_schedule_lr(&s, 310) - 0.02) < 1e-15);
    assert_int_equal(mg_schedule_init(&s, &c, 0), MG_ERR_INVALID_ARG);
}

static void test_print_rows(void **state) {
    (void)state;
    mg_config c;
    mg_config_init(&c);
    mg_assert_ok(mg_config_set(&c, "lr_schedule=linear"));
    mg_assert_ok(mg_config_set(&c, "epochs=4"));
    mg_assert_ok(mg_config_set(&c, "warmup_epochs=1"));
    mg_schedule s;
    mg_assert_ok(mg_schedule_init(&s, &c, 20));
    char path[4096];
    snprintf(path, sizeof path, "%s/test_schedule_print.txt", mg_test_tmp_dir());
    FILE *f = fopen(path, "w+");
    assert_non_null(f);
    mg_assert_ok(mg_schedule_print(&s, f, 0, false));
    rewind(f);
    char line[256];
    int64_t steps[64];
    int n = 0;
    while (fgets(line, sizeof line, f))
        if (line[0] != '#' && n < 64) steps[n++] = strtoll(line, NULL, 10);
    fclose(f);
    /* warm-up W = 20: tenths 0, 2, ..., 18, its last step 19; epoch boundaries 20, 40, 60; last 79 */
    const int64_t want[] = {0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 19, 20, 40, 60, 79};
    assert_int_equal(n, (int)(sizeof want / sizeof want[0]));
    for (int i = 0; i < n; i++) assert_int_equal(steps[i], want[i]);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_steps_per_epoch),
        cmocka_unit_test(test_thor_sample_values),
        cmocka_unit_test(test_step_boundaries),
        cmocka_unit_test(test_print_rows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
