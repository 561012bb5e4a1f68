/* test_checkpoint.c: the multigrain checkpoint format: write/open round trip of a full resnet18
 * table with optimizer state and metadata, and one-line errors for missing, unexpected, mistyped
 * and misshapen tensors, wrong class counts and inconsistent metadata (checked on write and on
 * open of files made with the raw safetensors writer). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
#include "mg_test.h"
#include "multigrain/checkpoint.h"
#include "nn/resnet_spec.h"

typedef struct table {
    mg_resnet_spec spec;
    void **data;
} table;

/* Fills every entry with a deterministic pattern. */
static void table_init(table *t, mg_arch arch, int K) {
    mg_assert_ok(mg_resnet_spec_init(&t->spec, arch, K));
    t->data = calloc((size_t)t->spec.n, sizeof *t->data);
    for (int i = 0; i < t->spec.n; i++) {
        const mg_spec_entry *e = &t->spec.entries[i];
        if (e->kind == MG_PARAM_BN_COUNTER) {
            int64_t *v = malloc(8);
            *v = 1000 + i;
            t->data[i] = v;
        } else {
            float *v = malloc((size_t)e->count * 4);
            for (int64_t k = 0; k < e->count; k++) v[k] = (float)(i * 0.001 + k * 1e-6);
            if (!strcmp(e->name, "pool.p")) v[0] = 3.0f;
            t->data[i] = v;
        }
    }
}

static void table_free(table *t) {
    for (int i = 0; i < t->spec.n; i++) free(t->data[i]);
    free(t->data);
    mg_resnet_spec_free(&t->spec);
}

/* Adds all entries except `skip`, with entry `reshape` given a wrong first dimension. */
static void add_all(mg_checkpoint_writer *w, table *t, const char *skip, const char *reshape) {
    for (int i = 0; i < t->spec.n; i++) {
        const mg_spec_entry *e = &t->spec.entries[i];
        if (skip && !strcmp(e->name, skip)) continue;
        int64_t shape[4];
        memcpy(shape, e->shape, sizeof shape);
        if (reshape && !strcmp(e->name, reshape)) shape[0] = 1;
        mg_assert_ok(mg_checkpoint_writer_add(w, e->name, e->kind == MG_PARAM_BN_COUNTER ? MG_DTYPE_I64 : MG_DTYPE_F32,
                                              e->ndim, shape, t->data[i]));
    }
}

static const mg_checkpoint_meta g_meta = {.arch = "resnet18", .num_classes = 3, .p = 3.0, .epoch = 7, .step = 700,
                                          .class_names_json = "[\"cat\", \"dog\", \"eel\"]", .config = "lr: 0.1\n"};

static void test_round_trip(void **state) {
    (void)state;
    char *path = mg_path_join(mg_test_tmp_dir(), "ckpt_ok.safetensors");
    table t;
    table_init(&t, MG_ARCH_RESNET18, 3);
    mg_checkpoint_writer w;
    mg_assert_ok(mg_checkpoint_writer_init(&w, &g_meta));
    add_all(&w, &t, NULL, NULL);
    int fcw = mg_resnet_spec_find(&t.spec, "fc.weight");
    float beta = 0.5f;
    mg_assert_ok(mg_checkpoint_writer_add(&w, "optimizer.momentum.fc.weight", MG_DTYPE_F32, 2,
                                          t.spec.entries[fcw].shape, t.data[fcw]));
    mg_assert_ok(mg_checkpoint_writer_add(&w, "optimizer.beta", MG_DTYPE_F32, 0, NULL, &beta));
    mg_assert_ok(mg_checkpoint_writer_set_meta(&w, "sampler_state", "{\"epoch\": 7}"));
    assert_int_equal(mg_checkpoint_writer_set_meta(&w, "arch", "resnet50"), MG_ERR_INVALID_ARG);
    mg_assert_ok(mg_checkpoint_writer_commit(&w, path));
    mg_checkpoint_writer_free(&w);

    mg_checkpoint c;
    mg_assert_ok(mg_checkpoint_open(&c, path, "resnet18", 3));
    assert_string_equal(c.arch, "resnet18");
    assert_int_equal(c.num_classes, 3);
    assert_true(c.p == 3.0);
    assert_int_equal(c.epoch, 7);
    assert_int_equal(c.step, 700);
    assert_int_equal(c.whitened, 0);
    assert_string_equal(c.config, "lr: 0.1\n");
    assert_string_equal(c.class_names_json, "[\"cat\", \"dog\", \"eel\"]");
    assert_string_equal(mg_safetensors_meta(&c.st, "format"), "multigrain-checkpoint");
    assert_string_equal(mg_safetensors_meta(&c.st, "sampler_state"), "{\"epoch\": 7}");
    for (int i = 0; i < t.spec.n; i++) {
        const mg_spec_entry *e = &t.spec.entries[i];
        const mg_st_tensor *x = mg_checkpoint_tensor(&c, e->name);
        assert_non_null(x);
        assert_int_equal(x->count, e->count);
        assert_memory_equal(x->data, t.data[i], x->nbytes);
    }
    float buf[3 * 512];
    mg_assert_ok(mg_checkpoint_read_f32(&c, "fc.weight", buf, 3 * 512));
    assert_memory_equal(buf, t.data[fcw], sizeof buf);
    assert_int_equal(mg_checkpoint_read_f32(&c, "fc.weight", buf, 5), MG_ERR_FORMAT);
    mg_checkpoint_close(&c);

    assert_int_equal(mg_checkpoint_open(&c, path, NULL, 1000), MG_ERR_FORMAT);
    assert_non_null(strstr(mg_error_message(), "wrong class count: checkpoint has 3 classes, expected 1000"));
    assert_int_equal(mg_checkpoint_open(&c, path, "resnet50", 0), MG_ERR_FORMAT);
    assert_non_null(strstr(mg_error_message(), "checkpoint is a resnet18, expected resnet50"));
    table_free(&t);
    free(path);
}

static void expect_commit_error(table *t, const char *skip, const char *reshape, const char *extra,
                                const char *needle) {
    char *path = mg_path_join(mg_test_tmp_dir(), "ckpt_never.safetensors");
    mg_checkpoint_writer w;
    mg_assert_ok(mg_checkpoint_writer_init(&w, &g_meta));
    add_all(&w, t, skip, reshape);
    float z[512] = {0};
    int64_t one = 1;
    if (extra) mg_assert_ok(mg_checkpoint_writer_add(&w, extra, MG_DTYPE_F32, 1, &one, z));
    assert_int_equal(mg_checkpoint_writer_commit(&w, path), MG_ERR_FORMAT);
    if (!strstr(mg_error_message(), needle)) fail_msg("error '%s' lacks '%s'", mg_error_message(), needle);
    assert_false(mg_path_exists(path));
    mg_checkpoint_writer_free(&w);
    free(path);
}

static void test_write_validation(void **state) {
    (void)state;
    table t;
    table_init(&t, MG_ARCH_RESNET18, 3);
    expect_commit_error(&t, "layer3.1.bn2.running_var", NULL, NULL,
                        "missing tensor 'layer3.1.bn2.running_var' required by resnet18 with 3 classes");
    expect_commit_error(&t, NULL, "layer2.0.conv1.weight", NULL,
                        "tensor 'layer2.0.conv1.weight': shape [1, 64, 3, 3], expected [128, 64, 3, 3]");
    expect_commit_error(&t, NULL, "fc.weight", NULL, "wrong class count: tensor 'fc.weight' has 1 classes, expected 3");
    expect_commit_error(&t, NULL, NULL, "layer9.weight", "unexpected tensor 'layer9.weight'");
    expect_commit_error(&t, NULL, NULL, "optimizer.momentum.bn1.running_mean",
                        "'bn1.running_mean' is not a trainable parameter");
    expect_commit_error(&t, NULL, NULL, "optimizer.momentum.conv1.weight", "tensor 'optimizer.momentum.conv1.weight'");
    expect_commit_error(&t, NULL, NULL, "whiten.P", "unexpected tensor 'whiten.P'");
    mg_checkpoint_meta bad = g_meta;
    bad.arch = "vgg16";
    mg_checkpoint_writer w;
    assert_int_equal(mg_checkpoint_writer_init(&w, &bad), MG_ERR_INVALID_ARG);
    assert_non_null(strstr(mg_error_message(), "unknown architecture 'vgg16'"));
    table_free(&t);
}

/* Files written with the raw safetensors writer (no validation) must be refused on open. */
static void test_open_validation(void **state) {
    (void)state;
    char *path = mg_path_join(mg_test_tmp_dir(), "ckpt_bad.safetensors");
    table t;
    table_init(&t, MG_ARCH_RESNET18, 3);
    static const char *cases[][3] = {
        /* meta key, value, expected error */
        {"num_classes", "10", "wrong class count: tensor 'fc.weight' has 3 classes, expected 10"},
        {"format", "other", "not a multigrain checkpoint"},
        {"format_version", "2", "newer than this program reads"},
        {"arch", "resnet34", "missing tensor 'layer1.2.conv1.weight'"},
        {"p", "2.5", "metadata p = 2.5 disagrees with tensor 'pool.p' = 3"},
        {"class_names", "[\"a\"]", "class_names has 1 names for 3 classes"},
        {"whitened", "1", "marked whitened but tensor 'whiten.mean' is missing"},
        {"epoch", "-1", "epoch"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        mg_st_writer w;
        mg_st_writer_init(&w);
        mg_assert_ok(mg_st_writer_set_meta(&w, "format", "multigrain-checkpoint"));
        mg_assert_ok(mg_st_writer_set_meta(&w, "format_version", "1"));
        mg_assert_ok(mg_st_writer_set_meta(&w, "arch", "resnet18"));
        mg_assert_ok(mg_st_writer_set_meta(&w, "num_classes", "3"));
        mg_assert_ok(mg_st_writer_set_meta(&w, "p", "3"));
        mg_assert_ok(mg_st_writer_set_meta(&w, cases[k][0], cases[k][1]));
        for (int i = 0; i < t.spec.n; i++) {
            const mg_spec_entry *e = &t.spec.entries[i];
            mg_assert_ok(mg_st_writer_add(&w, e->name, e->kind == MG_PARAM_BN_COUNTER ? MG_DTYPE_I64 : MG_DTYPE_F32,
                                          e->ndim, e->shape, t.data[i]));
        }
        mg_assert_ok(mg_st_writer_write(&w, path));
        mg_st_writer_free(&w);
        mg_checkpoint c;
        mg_status s = mg_checkpoint_open(&c, path, NULL, 0);
        if (s == MG_OK) fail_msg("case %s=%s accepted", cases[k][0], cases[k][1]);
        if (!strstr(mg_error_message(), cases[k][2]))
            fail_msg("case %s=%s: error '%s' lacks '%s'", cases[k][0], cases[k][1], mg_error_message(), cases[k][2]);
        assert_non_null(strstr(mg_error_message(), "ckpt_bad.safetensors"));
    }
    table_free(&t);
    free(path);
}

static void test_whitened(void **state) {
    (void)state;
    char *path = mg_path_join(mg_test_tmp_dir(), "ckpt_white.safetensors");
    table t;
    table_init(&t, MG_ARCH_RESNET18, 3);
    mg_checkpoint_meta m = g_meta;
    m.whitened = 1;
    mg_checkpoint_writer w;
    mg_assert_ok(mg_checkpoint_writer_init(&w, &m));
    /* recipe form: whiten.mean [D+1], whiten.P [D+1, D'], fc.weight [K, D'] */
    static float P[513 * 256], mean[513], W[3 * 256];
    int64_t sP[2] = {513, 256}, sm[1] = {513}, sW[2] = {3, 256};
    for (int i = 0; i < t.spec.n; i++) {
        const mg_spec_entry *e = &t.spec.entries[i];
        if (!strcmp(e->name, "fc.weight")) mg_assert_ok(mg_checkpoint_writer_add(&w, e->name, MG_DTYPE_F32, 2, sW, W));
        else
            mg_assert_ok(mg_checkpoint_writer_add(&w, e->name, e->kind == MG_PARAM_BN_COUNTER ? MG_DTYPE_I64 : MG_DTYPE_F32,
                                                  e->ndim, e->shape, t.data[i]));
    }
    mg_assert_ok(mg_checkpoint_writer_add(&w, "whiten.mean", MG_DTYPE_F32, 1, sm, mean));
    mg_assert_ok(mg_checkpoint_writer_add(&w, "whiten.P", MG_DTYPE_F32, 2, sP, P));
    mg_assert_ok(mg_checkpoint_writer_commit(&w, path));
    mg_checkpoint_writer_free(&w);
    mg_checkpoint c;
    mg_assert_ok(mg_checkpoint_open(&c, path, NULL, 3));
    assert_int_equal(c.whitened, 1);
    assert_int_equal(mg_checkpoint_tensor(&c, "whiten.P")->shape[1], 256);
    mg_checkpoint_close(&c);
    table_free(&t);
    free(path);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_write_validation),
        cmocka_unit_test(test_open_validation),
        cmocka_unit_test(test_whitened),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
