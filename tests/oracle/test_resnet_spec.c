/* test_resnet_spec.c: the ResNet parameter tables (src/nn/resnet_spec.c) against torchvision's
 * state_dict layouts written by gen_resnet_spec.py: names, order, shapes, kinds, parameter counts. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
#include "mg_test.h"
#include "nn/resnet_spec.h"

static cJSON *g_root;

static void check_arch(mg_arch arch) {
    const cJSON *archs = cJSON_GetObjectItem(g_root, "archs");
    const cJSON *a = cJSON_GetObjectItem(archs, mg_arch_name(arch));
    assert_non_null(a);
    int K = cJSON_GetObjectItem(g_root, "num_classes")->valueint;
    mg_resnet_spec s;
    mg_assert_ok(mg_resnet_spec_init(&s, arch, K));
    const cJSON *entries = cJSON_GetObjectItem(a, "entries");
    int n = cJSON_GetArraySize(entries);
    /* our table = torchvision's order with pool.p inserted right before fc.weight */
    assert_int_equal(s.n, n + 1);
    int j = 0;
    for (int i = 0; i < s.n; i++) {
        const mg_spec_entry *e = &s.entries[i];
        if (!strcmp(e->name, "pool.p")) {
            assert_int_equal(e->ndim, 0);
            assert_int_equal(e->kind, MG_PARAM_TRAINABLE);
            assert_string_equal(s.entries[i + 1].name, "fc.weight");
            continue;
        }
        const cJSON *r = cJSON_GetArrayItem(entries, j++);
        if (strcmp(e->name, cJSON_GetObjectItem(r, "name")->valuestring))
            fail_msg("%s entry %d: ours '%s', torch '%s'", mg_arch_name(arch), i, e->name,
                     cJSON_GetObjectItem(r, "name")->valuestring);
        const cJSON *shape = cJSON_GetObjectItem(r, "shape");
        assert_int_equal(e->ndim, cJSON_GetArraySize(shape));
        for (int d = 0; d < e->ndim; d++) {
            if (e->shape[d] != (int64_t)cJSON_GetArrayItem(shape, d)->valuedouble)
                fail_msg("%s '%s' dim %d: ours %lld", mg_arch_name(arch), e->name, d, (long long)e->shape[d]);
        }
        const char *kind = cJSON_GetObjectItem(r, "kind")->valuestring;
        mg_param_kind want = !strcmp(kind, "parameter") ? MG_PARAM_TRAINABLE
                             : !strcmp(kind, "counter") ? MG_PARAM_BN_COUNTER
                                                        : MG_PARAM_BN_BUFFER;
        if (e->kind != want) fail_msg("%s '%s': kind %d, torch says %s", mg_arch_name(arch), e->name, e->kind, kind);
        assert_int_equal(mg_resnet_spec_find(&s, e->name), i);
    }
    /* trainable count = torch parameters + the GeM exponent */
    int64_t n_params = (int64_t)cJSON_GetObjectItem(a, "n_params")->valuedouble;
    assert_int_equal(s.n_trainable, n_params + 1);
    assert_int_equal(mg_resnet_spec_find(&s, "no.such.tensor"), -1);
    mg_resnet_spec_free(&s);
}

static void test_resnet18(void **st) { (void)st; check_arch(MG_ARCH_RESNET18); }
static void test_resnet34(void **st) { (void)st; check_arch(MG_ARCH_RESNET34); }
static void test_resnet50(void **st) { (void)st; check_arch(MG_ARCH_RESNET50); }
static void test_resnet101(void **st) { (void)st; check_arch(MG_ARCH_RESNET101); }
static void test_resnet152(void **st) { (void)st; check_arch(MG_ARCH_RESNET152); }
static void test_se_resnet50(void **st) { (void)st; check_arch(MG_ARCH_SE_RESNET50); }

static void test_names_and_errors(void **st) {
    (void)st;
    mg_arch a;
    mg_assert_ok(mg_arch_from_name("resnet101", "--arch", &a));
    assert_int_equal(a, MG_ARCH_RESNET101);
    assert_int_equal(mg_arch_from_name("resnet51", "--arch", &a), MG_ERR_INVALID_ARG);
    assert_non_null(strstr(mg_error_message(), "resnet51"));
    mg_resnet_spec s;
    assert_int_equal(mg_resnet_spec_init(&s, MG_ARCH_RESNET18, 0), MG_ERR_INVALID_ARG);
    mg_assert_ok(mg_resnet_spec_init(&s, MG_ARCH_RESNET50, 1000));
    assert_int_equal(s.feature_dim, 2048);
    int k = mg_resnet_spec_find(&s, "layer2.1.bn2.num_batches_tracked");
    assert_true(k >= 0);
    assert_int_equal(s.entries[k].kind, MG_PARAM_BN_COUNTER);
    assert_true(mg_resnet_spec_find(&s, "layer1.0.downsample.0.weight") >= 0);
    assert_int_equal(s.n_trainable, 25557032 + 1); /* torchvision resnet50: 25,557,032 parameters */
    mg_resnet_spec_free(&s);
}

int main(void) {
    if (mg_test_oracle_unavailable()) return MG_TEST_SKIP;
    char *path = mg_path_join(mg_test_oracle_dir(), "layouts.json");
    void *text = NULL;
    size_t n = 0;
    if (!path || mg_file_read_all(path, &text, &n) != MG_OK) {
        fprintf(stderr, "%s\n", mg_error_message());
        return 1;
    }
    g_root = cJSON_Parse(text);
    free(text);
    free(path);
    if (!g_root) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resnet18),  cmocka_unit_test(test_resnet34),   cmocka_unit_test(test_resnet50),
        cmocka_unit_test(test_resnet101), cmocka_unit_test(test_resnet152),  cmocka_unit_test(test_se_resnet50),
        cmocka_unit_test(test_names_and_errors),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    cJSON_Delete(g_root);
    return rc;
}
