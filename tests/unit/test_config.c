/* test_config.c: the training configuration: YAML loading, reference-port keys and aliases, error
 * messages (unknown key, bad type, duplicates), --set overrides, validation, serialisation round
 * trip and the config hash, and that docs/config.md documents every key. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
#include "core/log.h"
#include "mg_test.h"
#include "multigrain/config.h"

static mg_status load(mg_config *cfg, const char *text) {
    mg_config_init(cfg);
    return mg_config_load_string(cfg, text, strlen(text), "configs/x.yaml");
}

static void assert_msg_has(const char *needle) {
    if (!strstr(mg_error_message(), needle))
        fail_msg("error message '%s' lacks '%s'", mg_error_message(), needle);
}

static void test_defaults_are_the_recipe(void **state) {
    (void)state;
    mg_config c;
    mg_config_init(&c);
    /* MultiGrain recipe (README command + train.py defaults), docs/shared recipe section 1.6 / 2.2 */
    assert_int_equal(c.batch_size, 512);
    assert_true(c.lr == 0.2);
    assert_int_equal(c.repeated_augmentations, 3);
    assert_true(c.pooling_exponent == 3.0);
    assert_true(c.classif_weight == 0.5);
    assert_true(c.margin == 0.2);
    assert_true(c.beta_init == 1.2);
    assert_int_equal(c.epochs, 120);
    assert_true(c.epoch_len_factor == 2.0);
    assert_true(c.momentum == 0.9);
    assert_true(c.weight_decay == 1e-4);
    assert_int_equal(c.lr_schedule, MG_LR_SCHEDULE_STEP);
    assert_int_equal(c.n_lr_steps, 3);
    assert_int_equal(c.lr_steps[0], 30);
    assert_int_equal(c.lr_steps[2], 90);
    assert_int_equal(c.augmentation, MG_AUGMENTATION_FULL);
    mg_assert_ok(mg_config_validate(&c));
}

static void test_valid_file(void **state) {
    (void)state;
    mg_config c;
    mg_assert_ok(load(&c, "# a comment\n"
                          "batch_size: 64\n"
                          "lr: 0.05\n"
                          "lr_steps: [10, 20]\n"
                          "augmentation: torch\n"
                          "global_sampling: yes\n"
                          "arch: resnet50\n"
                          "seed: 12345678901\n"));
    assert_int_equal(c.batch_size, 64);
    assert_true(c.lr == 0.05);
    assert_int_equal(c.n_lr_steps, 2);
    assert_int_equal(c.lr_steps[1], 20);
    assert_int_equal(c.augmentation, MG_AUGMENTATION_TORCH);
    assert_true(c.global_sampling);
    assert_string_equal(c.arch, "resnet50");
    assert_true(c.seed == 12345678901LL);
    /* untouched keys keep their defaults */
    assert_int_equal(c.epochs, 120);
    int idx = mg_config_key_find("batch_size");
    assert_int_equal(c.origin[idx], MG_CONFIG_ORIGIN_FILE);
    assert_int_equal(c.line[idx], 2);
}

static void test_repo_configs_load(void **state) {
    (void)state;
    const char *src = getenv("MG_SOURCE_DIR");
    if (!src) skip();
    const char *files[] = {"configs/multigrain_resnet50.yaml", "configs/resnet50_imagenet2012_config.yaml"};
    for (int i = 0; i < 2; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", src, files[i]);
        mg_config c;
        mg_config_init(&c);
        mg_assert_ok(mg_config_load_file(&c, path));
        mg_assert_ok(mg_config_validate(&c));
        if (i == 1) {
            /* the README parameter block of the MindSpore port, with the reference meanings */
            assert_int_equal(c.num_classes, 1001);
            assert_int_equal(c.batch_size, 480);
            assert_true(c.loss_scale == 1024);
            assert_int_equal(c.epochs, 50);
            assert_int_equal(c.lr_schedule, MG_LR_SCHEDULE_LINEAR);
            assert_true(c.lr_init == 0.05672);
            assert_true(c.lr == 0.8);
            assert_true(mg_config_label_smoothing(&c) == 0.1);
            assert_int_equal(c.frequency, 834);
            assert_true(c.damping_decay == 0.5467);
            assert_int_equal(c.keep_checkpoint_max, 10);
        }
    }
}

/* Every key of the reference (MindSpore) parameter block, plus its platform keys, a list value and
 * the help-text second document its yaml files carry. */
static void test_every_reference_key_accepted(void **state) {
    (void)state;
    mg_config c;
    mg_log_level lvl = mg_log_get_level();
    mg_log_set_level(MG_LOG_ERROR); /* the not-used-yet warnings are expected here */
    mg_status s = load(&c, "enable_modelarts: False\n"
                           "data_url: \"/home/work/user-job-dir/data/\"\n"
                           "device_target: \"Ascend\"\n"
                           "optimizer: \"Thor\"\n"
                           "class_num: 1001\n"
                           "batch_size: 30\n"
                           "loss_scale: 128\n"
                           "momentum: 0.9\n"
                           "weight_decay: 0.0005\n"
                           "epoch_size: 45\n"
                           "pretrain_epoch_size: 0\n"
                           "save_checkpoint: True\n"
                           "save_checkpoint_epochs: 10\n"
                           "keep_checkpoint_max: 15\n"
                           "warmup_epochs: 0\n"
                           "use_label_smooth: False\n"
                           "label_smooth_factor: 0.1\n"
                           "lr_init: 0.045\n"
                           "lr_decay: 6\n"
                           "lr_end_epoch: 70\n"
                           "damping_init: 0.03\n"
                           "damping_decay: 0.87\n"
                           "frequency: 2\n"
                           "net_name: \"resnet50\"\n"
                           "all_reduce_fusion_config:\n"
                           "    - 80\n"
                           "    - 160\n"
                           "train_image_size: 224\n"
                           "MS_ROLE: \"MS_SCHED\"\n"
                           "---\n"
                           "enable_modelarts: \"Whether training on modelarts, default: False\"\n"
                           "batch_size: \"Batch size for training and evaluation\"\n");
    mg_log_set_level(lvl);
    mg_assert_ok(s);
    assert_int_equal(c.num_classes, 1001);
    assert_int_equal(c.epochs, 45);
    assert_int_equal(c.batch_size, 30);
    assert_true(c.weight_decay == 0.0005);
    assert_int_equal(c.keep_checkpoint_max, 15);
    assert_true(c.lr_init == 0.045);
    assert_true(c.lr_decay == 6.0);
    assert_int_equal(c.lr_end_epoch, 70);
    assert_true(c.damping_init == 0.03);
    assert_true(c.damping_decay == 0.87);
    assert_int_equal(c.frequency, 2);
    assert_int_equal(c.optimizer, MG_OPTIMIZER_THOR);
    /* optimizer Thor selects the THOR lr schedule, as the reference's train.py does */
    assert_int_equal(c.lr_schedule, MG_LR_SCHEDULE_THOR);
    /* use_label_smooth False switches smoothing off whatever the factor */
    assert_true(c.label_smoothing == 0.1);
    assert_true(mg_config_label_smoothing(&c) == 0.0);
    assert_true(c.loss_scale == 128);
    mg_config_key_info const *info = mg_config_key_at(mg_config_key_find("frequency"));
    assert_false(info->used);
    /* The brief's list of reference keys, all known by name or alias. */
    const char *ref[] = {"class_num", "batch_size", "loss_scale", "momentum", "weight_decay", "epoch_size",
                         "pretrain_epoch_size", "save_checkpoint", "save_checkpoint_epochs",
                         "keep_checkpoint_max", "warmup_epochs", "lr_decay_mode", "use_label_smooth",
                         "label_smooth_factor", "lr_init", "lr_decay", "lr_end_epoch", "damping_init",
                         "damping_decay", "frequency", "lr_max", "lr_end"};
    for (size_t i = 0; i < sizeof ref / sizeof ref[0]; i++)
        if (mg_config_key_find(ref[i]) < 0) fail_msg("reference key '%s' unknown", ref[i]);
}

static void test_unknown_key(void **state) {
    (void)state;
    mg_config c;
    assert_int_equal(load(&c, "batch_size: 64\nbach_size: 32\n"), MG_ERR_CONFIG);
    assert_msg_has("configs/x.yaml");
    assert_msg_has("unknown key 'bach_size'");
    assert_msg_has("line 2");
    assert_msg_has("did you mean 'batch_size'?");
    assert_int_equal(load(&c, "zzzzzzzz_qqqq: 1\n"), MG_ERR_CONFIG);
    assert_msg_has("unknown key 'zzzzzzzz_qqqq'");
    assert_null(strstr(mg_error_message(), "did you mean"));
    /* a near miss of a reference alias suggests the alias */
    assert_int_equal(load(&c, "epoch_sise: 3\n"), MG_ERR_CONFIG);
    assert_msg_has("did you mean 'epoch_size'?");
}

static void test_bad_type(void **state) {
    (void)state;
    mg_config c;
    assert_int_equal(load(&c, "# comment\nlr: 0.1\n\nbatch_size: abc\n"), MG_ERR_CONFIG);
    assert_string_equal(mg_error_message(),
                        "configs/x.yaml: key 'batch_size': expected an integer in [1, 1048576], found 'abc' (line 4)");
    assert_int_equal(load(&c, "class_num: -3\n"), MG_ERR_CONFIG);
    assert_msg_has("key 'class_num' (num_classes)");
    assert_msg_has("line 1");
    assert_int_equal(load(&c, "lr: \"0.1\"\n"), MG_ERR_CONFIG);
    assert_msg_has("quoted");
    assert_int_equal(load(&c, "augmentation: heavy\n"), MG_ERR_CONFIG);
    assert_msg_has("expected one of none|torch|full, found 'heavy'");
    assert_int_equal(load(&c, "nesterov: maybe\n"), MG_ERR_CONFIG);
    assert_msg_has("key 'nesterov'");
    assert_int_equal(load(&c, "lr_steps: [10, x]\n"), MG_ERR_CONFIG);
    assert_msg_has("lr_steps");
    assert_int_equal(load(&c, "batch_size: [1, 2]\n"), MG_ERR_CONFIG);
    assert_msg_has("found a list");
    assert_int_equal(load(&c, "optim:\n  lr: 0.1\n"), MG_ERR_CONFIG);
    assert_int_equal(load(&c, "- a\n- b\n"), MG_ERR_CONFIG);
    assert_msg_has("expected a mapping");
    assert_int_equal(load(&c, "lr: [0.1\n"), MG_ERR_CONFIG);
    assert_msg_has("YAML syntax error");
    /* an empty file is valid: all defaults */
    mg_assert_ok(load(&c, ""));
    mg_assert_ok(load(&c, "# only a comment\n"));
}

static void test_duplicate_key(void **state) {
    (void)state;
    mg_config c;
    assert_int_equal(load(&c, "lr: 0.1\nepochs: 3\nlr: 0.2\n"), MG_ERR_CONFIG);
    assert_msg_has("duplicate key 'lr'");
    assert_msg_has("lines 1 and 3");
    assert_int_equal(load(&c, "epochs: 3\nepoch_size: 4\n"), MG_ERR_CONFIG);
    assert_msg_has("given twice");
    assert_msg_has("'epoch_size'");
    assert_int_equal(load(&c, "device_id: 0\ndevice_id: 1\n"), MG_ERR_CONFIG);
    assert_msg_has("duplicate key 'device_id'");
}

static void test_set_override(void **state) {
    (void)state;
    mg_config c;
    mg_assert_ok(load(&c, "batch_size: 64\n"));
    mg_assert_ok(mg_config_set(&c, "batch_size=128"));
    assert_int_equal(c.batch_size, 128);
    assert_int_equal(c.origin[mg_config_key_find("batch_size")], MG_CONFIG_ORIGIN_SET);
    mg_assert_ok(mg_config_set(&c, "class_num=10"));
    assert_int_equal(c.num_classes, 10);
    mg_assert_ok(mg_config_set(&c, "lr_steps=5,8"));
    assert_int_equal(c.n_lr_steps, 2);
    assert_int_equal(c.lr_steps[1], 8);
    mg_assert_ok(mg_config_set(&c, "lr_steps=[]"));
    assert_int_equal(c.n_lr_steps, 0);
    mg_assert_ok(mg_config_set(&c, "lr_decay_mode=Cosine"));
    assert_int_equal(c.lr_schedule, MG_LR_SCHEDULE_COSINE);
    assert_int_equal(mg_config_set(&c, "batch_size=abc"), MG_ERR_USAGE);
    assert_string_equal(mg_error_message(), "--set: key 'batch_size': expected an integer in [1, 1048576], found 'abc'");
    assert_int_equal(mg_config_set(&c, "bach_size=3"), MG_ERR_USAGE);
    assert_msg_has("unknown key 'bach_size'");
    assert_msg_has("did you mean 'batch_size'?");
    assert_int_equal(mg_config_set(&c, "=3"), MG_ERR_USAGE);
    assert_int_equal(mg_config_set(&c, "batch_size"), MG_ERR_USAGE);
    /* a platform key of the reference is accepted and ignored */
    mg_assert_ok(mg_config_set(&c, "device_target=GPU"));
}

static void test_validate(void **state) {
    (void)state;
    mg_config c;
    mg_assert_ok(load(&c, "warmup_epochs: 120\n"));
    assert_int_equal(mg_config_validate(&c), MG_ERR_CONFIG);
    assert_msg_has("warmup_epochs");
    mg_assert_ok(load(&c, "lr_steps: [60, 30]\n"));
    assert_int_equal(mg_config_validate(&c), MG_ERR_CONFIG);
    assert_msg_has("increasing");
    mg_assert_ok(load(&c, "repeated_augmentations: 1\n"));
    assert_int_equal(mg_config_validate(&c), MG_ERR_CONFIG);
    assert_msg_has("classif_weight");
    mg_assert_ok(load(&c, "repeated_augmentations: 1\nclassif_weight: 1\n"));
    mg_assert_ok(mg_config_validate(&c));
    mg_assert_ok(load(&c, "batch_size: 500\ngrad_accum: 3\n"));
    assert_int_equal(mg_config_validate(&c), MG_ERR_CONFIG);
    mg_assert_ok(load(&c, "lr_schedule: thor\n"));
    assert_int_equal(mg_config_validate(&c), MG_ERR_CONFIG); /* lr_init 0 */
    mg_assert_ok(load(&c, "lr_schedule: thor\nlr_init: 0.05\nlr_end_epoch: 100\n"));
    assert_int_equal(mg_config_validate(&c), MG_ERR_CONFIG); /* 120 epochs > lr_end_epoch */
    assert_msg_has("lr_end_epoch");
}

static void test_roundtrip_and_hash(void **state) {
    (void)state;
    mg_config a, b;
    mg_assert_ok(load(&a, "batch_size: 64\nlr: 0.1\nlr_steps: [3, 5]\nlabel_smoothing: 0.1\nseed: 7\n"
                          "augmentation: none\nepoch_len_factor: 0.3\n"));
    char *yaml = NULL;
    size_t len = 0;
    mg_assert_ok(mg_config_to_yaml(&a, &yaml, &len));
    assert_non_null(strstr(yaml, "batch_size: 64"));
    assert_non_null(strstr(yaml, "lr_steps: [3, 5]"));
    assert_non_null(strstr(yaml, "epoch_len_factor: 0.3"));
    mg_config_init(&b);
    mg_assert_ok(mg_config_load_string(&b, yaml, len, "written.yaml"));
    assert_true(mg_config_hash(&a) == mg_config_hash(&b));
    assert_true(a.epoch_len_factor == b.epoch_len_factor);
    assert_true(a.lr == b.lr);
    free(yaml);
    /* the hash depends on values, not on where they came from */
    mg_config d1, d2;
    mg_config_init(&d1);
    mg_config_init(&d2);
    mg_assert_ok(mg_config_set(&d2, "batch_size=512"));
    assert_true(mg_config_hash(&d1) == mg_config_hash(&d2));
    mg_assert_ok(mg_config_set(&d2, "threads=3")); /* per-machine keys are not hashed */
    mg_assert_ok(mg_config_set(&d2, "workers=17"));
    assert_true(mg_config_hash(&d1) == mg_config_hash(&d2));
    mg_assert_ok(mg_config_set(&d2, "lr=0.2000000001"));
    assert_true(mg_config_hash(&d1) != mg_config_hash(&d2));
    /* atomic write into a run folder, then reload */
    char path[4096];
    snprintf(path, sizeof path, "%s/test_config_run", mg_test_tmp_dir());
    mg_assert_ok(mg_dir_create(path));
    strncat(path, "/config.yaml", sizeof path - strlen(path) - 1);
    mg_assert_ok(mg_config_write_file(&a, path));
    mg_config_init(&b);
    mg_assert_ok(mg_config_load_file(&b, path));
    assert_true(mg_config_hash(&a) == mg_config_hash(&b));
}

/* Data-parallel keys: defaults leave single-process training unchanged; the timeout and the bucket
 * size do not enter the hash (ranks may differ there), sync_bn does; sampling_chunks needs per-rank
 * sampling. */
static void test_data_parallel_keys(void **state) {
    (void)state;
    mg_config d, e;
    mg_config_init(&d);
    assert_false(d.sync_bn);
    assert_false(d.global_sampling);
    assert_int_equal(d.sampling_chunks, 1);
    assert_true(d.dist_timeout == 600);
    assert_true(d.dist_bucket_mb == 25);
    mg_config_init(&e);
    mg_assert_ok(mg_config_set(&e, "dist_timeout=5"));
    mg_assert_ok(mg_config_set(&e, "dist_bucket_mb=1.5"));
    assert_true(mg_config_hash(&d) == mg_config_hash(&e));
    mg_assert_ok(mg_config_set(&e, "sync_bn=true"));
    assert_true(mg_config_hash(&d) != mg_config_hash(&e));
    mg_config_init(&e);
    mg_assert_ok(mg_config_set(&e, "sampling_chunks=8"));
    mg_assert_ok(mg_config_validate(&e));
    mg_assert_ok(mg_config_set(&e, "global_sampling=true"));
    assert_int_equal(mg_config_validate(&e), MG_ERR_CONFIG);
    assert_msg_has("sampling_chunks");
    assert_int_equal(mg_config_set(&e, "dist_timeout=-1"), MG_ERR_USAGE);
}

/* docs/config.md must document every key and every alias. */
static void test_docs_cover_every_key(void **state) {
    (void)state;
    const char *src = getenv("MG_SOURCE_DIR");
    if (!src) skip();
    char path[4096];
    snprintf(path, sizeof path, "%s/docs/config.md", src);
    void *data = NULL;
    size_t size = 0;
    mg_assert_ok(mg_file_read_all(path, &data, &size));
    for (int i = 0; i < mg_config_key_count(); i++) {
        const mg_config_key_info *k = mg_config_key_at(i);
        char needle[128];
        snprintf(needle, sizeof needle, "`%s`", k->name);
        if (!strstr(data, needle)) fail_msg("docs/config.md does not document key %s", needle);
        char aliases[256];
        snprintf(aliases, sizeof aliases, "%s", k->aliases);
        for (char *t = strtok(aliases, ","); t; t = strtok(NULL, ",")) {
            snprintf(needle, sizeof needle, "`%s`", t);
            if (!strstr(data, needle)) fail_msg("docs/config.md does not mention alias %s", needle);
        }
    }
    free(data);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_are_the_recipe), cmocka_unit_test(test_valid_file),
        cmocka_unit_test(test_repo_configs_load),       cmocka_unit_test(test_every_reference_key_accepted),
        cmocka_unit_test(test_unknown_key),             cmocka_unit_test(test_bad_type),
        cmocka_unit_test(test_duplicate_key),           cmocka_unit_test(test_set_override),
        cmocka_unit_test(test_validate),                cmocka_unit_test(test_roundtrip_and_hash),
        cmocka_unit_test(test_docs_cover_every_key),    cmocka_unit_test(test_data_parallel_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
