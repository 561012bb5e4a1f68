/* test_bench.c: src/bench's measurements: the forward multiply-adds of every architecture at
 * square and non-square sizes equal torchvision's (conv + linear MACs counted with forward hooks on
 * torchvision.models.resnetNN(num_classes=1000); the values are fixed here), SE and whitening
 * layers are counted, and the timed model iteration runs in both modes and rejects what it cannot
 * run. */
#include <math.h>
#include <stdlib.h>

#include "bench/bench.h"
#include "mg_test.h"

static int64_t macs_of(const char *arch, int classes, int h, int w) {
    mg_model *m;
    mg_assert_ok(mg_model_init(&m, arch, classes, 3.0f));
    int64_t macs = -1;
    mg_assert_ok(mg_bench_count_forward_macs(m, h, w, &macs));
    mg_model_free(m);
    return macs;
}

static void test_macs_match_torchvision(void **state) {
    (void)state;
    static const struct {
        const char *arch;
        int64_t at224, at32, at40x36;
    } ref[] = {
        {"resnet18", 1814073344, 37523456, 82705920},      {"resnet34", 3663761408, 75272192, 165428736},
        {"resnet50", 4089184256, 85458944, 185232896},     {"resnet101", 7801405440, 161218560, 355692032},
        {"resnet152", 11513626624, 236978176, 513895936},
    };
    for (size_t i = 0; i < sizeof ref / sizeof ref[0]; i++) {
        assert_int_equal(macs_of(ref[i].arch, 1000, 224, 224), ref[i].at224);
        assert_int_equal(macs_of(ref[i].arch, 1000, 32, 32), ref[i].at32);
        assert_int_equal(macs_of(ref[i].arch, 1000, 40, 36), ref[i].at40x36);
    }
    /* the classifier scales with the classes: 512 x (10 - 1000) fewer for ResNet-18 */
    assert_int_equal(macs_of("resnet18", 10, 32, 32), 37523456 - 512 * 990);
}

static void test_macs_se_and_whitening(void **state) {
    (void)state;
    /* squeeze-excitation: 2 x C x C/16 per bottleneck, C = 256 (3 blocks), 512 (4), 1024 (6), 2048 (3) */
    const int64_t se = 2 * (3 * 256 * 16 + 4 * 512 * 32 + 6 * 1024 * 64 + 3 * 2048 * 128);
    assert_int_equal(macs_of("se_resnet50", 1000, 224, 224), 4089184256 + se);
    /* whitened: whiten.P [D+1, D'] and fc.weight [K, D'] replace fc.weight [K, D] */
    mg_model *m;
    mg_assert_ok(mg_model_init(&m, "resnet18", 1000, 3.0f));
    mg_assert_ok(mg_model_set_whitening(m, 100));
    int64_t macs = 0;
    mg_assert_ok(mg_bench_count_forward_macs(m, 32, 32, &macs));
    assert_int_equal(macs, 37523456 - 512 * 1000 + 513 * 100 + 1000 * 100);
    assert_int_equal(mg_bench_count_forward_macs(m, 0, 32, &macs), MG_ERR_INVALID_ARG);
    mg_model_free(m);
}

static void test_model_timing_runs(void **state) {
    (void)state;
    for (int train = 0; train < 2; train++) {
        mg_bench_model_cfg c;
        mg_bench_model_cfg_default(&c, train);
        c.arch = "resnet18", c.batch = 3, c.size = 16;
        mg_bench_model *b;
        mg_assert_ok(mg_bench_model_init(&b, &c));
        double t = -1;
        for (int i = 0; i < 2; i++) {
            mg_assert_ok(mg_bench_model_run(b, &t));
            assert_true(t > 0);
            assert_true(isfinite(mg_bench_model_last_value(b)));
        }
        assert_int_equal(mg_model_num_classes(mg_bench_model_network(b)), train ? 10 : 1000);
        mg_bench_model_free(b);
    }
    mg_bench_model_cfg c;
    mg_bench_model_cfg_default(&c, true);
    c.batch = 1; /* a training step needs pairs */
    mg_bench_model *b = (mg_bench_model *)&c;
    assert_int_equal(mg_bench_model_init(&b, &c), MG_ERR_INVALID_ARG);
    assert_null(b);
    mg_bench_model_cfg_default(&c, false);
    c.arch = "resnet9";
    assert_int_equal(mg_bench_model_init(&b, &c), MG_ERR_INVALID_ARG);
    assert_null(b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_macs_match_torchvision),
        cmocka_unit_test(test_macs_se_and_whitening),
        cmocka_unit_test(test_model_timing_runs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
