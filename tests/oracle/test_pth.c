/* test_pth.c: the .pth reader (zip and legacy formats, restricted unpickler) and `convert`'s
 * mapping against files torch.save wrote (gen_pth.py): every converted tensor is compared
 * bit-exactly with torch's values (.npy, or per-tensor bit fingerprints for resnet50). Also:
 * views/offsets/float16, MultiGrain and DataParallel layouts, whitened checkpoints, a forbidden
 * global (never executed), truncated and corrupted files (clean errors, no crash). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
#include "core/log.h"
#include "io/pth.h"
#include "io/torch_import.h"
#include "mg_test.h"
#include "multigrain/checkpoint.h"
#include "nn/resnet_spec.h"

static char *oracle(const char *name) {
    char *p = mg_path_join(mg_test_oracle_dir(), name);
    assert_non_null(p);
    return p;
}

static char *tmp(const char *name) {
    char *p = mg_path_join(mg_test_tmp_dir(), name);
    assert_non_null(p);
    return p;
}

static void write_plain(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (n) assert_int_equal(fwrite(data, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

/* Compares bytes, dtype and shape of a tensor with <oracle>/<folder>/<name>.npy. */
static void assert_same_as_npy(const char *folder, const char *npy_name, mg_dtype dtype, int ndim,
                               const int64_t *shape, const void *data) {
    char rel[512];
    snprintf(rel, sizeof rel, "%s/%s.npy", folder, npy_name);
    char *path = oracle(rel);
    mg_npy ref;
    mg_status s = mg_npy_read(path, &ref);
    if (s != MG_OK) fail_msg("%s", mg_error_message());
    if (ref.dtype != dtype) fail_msg("%s: dtype %d, torch %d", rel, dtype, ref.dtype);
    if (ref.ndim != ndim) fail_msg("%s: ndim %d, torch %d", rel, ndim, ref.ndim);
    for (int d = 0; d < ndim; d++)
        if (ref.shape[d] != shape[d]) fail_msg("%s: dim %d is %lld, torch %lld", rel, d, (long long)shape[d], (long long)ref.shape[d]);
    if (ref.count && memcmp(ref.data, data, (size_t)ref.count * mg_dtype_size(dtype)))
        fail_msg("%s: values differ from torch's", rel);
    mg_npy_free(&ref);
    free(path);
}

/* ------------------------------------------------------------ reader */

static void check_tiny(const char *file) {
    char *path = oracle(file);
    mg_pth p;
    mg_status s = mg_pth_open(&p, path);
    if (s != MG_OK) fail_msg("%s", mg_error_message());
    assert_int_equal(p.root->kind, MG_PY_DICT);
    assert_int_equal(p.root->n, 12);
    const char *names[6] = {"a", "b", "c", "d", "e", "f"};
    for (int i = 0; i < 6; i++) {
        assert_string_equal(p.root->items[2 * i]->s, names[i]);
        const mg_pyobj *t = mg_py_dict_get(p.root, names[i]);
        assert_non_null(t);
        assert_int_equal(t->kind, MG_PY_TENSOR);
        assert_same_as_npy("tiny", names[i], t->dtype, t->ndim, t->size, t->data);
    }
    assert_int_equal(mg_py_dict_get(p.root, "b")->ndim, 0);
    assert_int_equal(mg_py_dict_get(p.root, "c")->offset, 1);
    mg_pth_close(&p);
    free(path);
}

static void test_tiny_zip(void **st) { (void)st; check_tiny("tiny_zip.pth"); }
static void test_tiny_legacy(void **st) { (void)st; check_tiny("tiny_legacy.pth"); }

/* Every truncation and many single-byte corruptions: a clean error or a valid result, no crash. */
static void check_damage(const char *file, int corrupt) {
    char *path = oracle(file), *cut = tmp("pth_damaged.pth");
    void *raw = NULL;
    size_t n = 0;
    mg_assert_ok(mg_file_read_all(path, &raw, &n));
    for (size_t k = 0; k < n; k++) {
        write_plain(cut, raw, k);
        mg_pth p;
        if (mg_pth_open(&p, cut) == MG_OK) {
            mg_pth_close(&p);
            fail_msg("%s truncated to %zu of %zu bytes was accepted", file, k, n);
        }
        if (!strstr(mg_error_message(), "damaged.pth")) fail_msg("error without the file name: %s", mg_error_message());
    }
    uint8_t *buf = malloc(n);
    static const uint8_t vals[] = {0x00, 0xff, 'R'};
    for (size_t k = 0; corrupt && k < n; k++)
        for (size_t v = 0; v < sizeof vals; v++) {
            memcpy(buf, raw, n);
            buf[k] = vals[v];
            write_plain(cut, buf, n);
            mg_pth p;
            if (mg_pth_open(&p, cut) == MG_OK) mg_pth_close(&p);
        }
    free(buf);
    free(raw);
    free(path);
    free(cut);
}

static void test_damaged_zip(void **st) { (void)st; check_damage("tiny_zip.pth", 0); }
static void test_damaged_legacy(void **st) { (void)st; check_damage("tiny_legacy.pth", 1); }

static void test_forbidden_global(void **st) {
    (void)st;
    const char *files[2] = {"evil_zip.pth", "evil_legacy.pth"};
    for (int i = 0; i < 2; i++) {
        char *path = oracle(files[i]);
        mg_pth p;
        assert_int_equal(mg_pth_open(&p, path), MG_ERR_FORMAT);
        if (!strstr(mg_error_message(), "refusing to load global 'posix.system': only tensors and plain containers"))
            fail_msg("%s", mg_error_message());
        assert_non_null(strstr(mg_error_message(), files[i]));
        free(path);
        char *out = tmp("pth_evil.safetensors");
        assert_int_equal(mg_import_pth(path = oracle(files[i]), out, NULL, NULL), MG_ERR_FORMAT);
        free(path);
        free(out);
    }
    char *path = oracle("evil_legacy.pth");
    mg_pth p;
    mg_assert_ok(mg_pth_open_ex(&p, path, 1));
    const mg_pyobj *payload = mg_py_dict_get(p.root, "payload");
    assert_non_null(payload);
    assert_int_equal(payload->kind, MG_PY_FOREIGN);
    assert_string_equal(payload->s, "posix.system");
    assert_int_equal(mg_py_dict_get(p.root, "fc.weight")->kind, MG_PY_TENSOR);
    mg_pth_close(&p);
    free(path);
    char *marker = oracle("PWNED");
    assert_false(mg_path_exists(marker));
    free(marker);
}

/* ------------------------------------------------------------ convert */

static void expect_import_error(const char *file, const mg_import_opts *o, const char *needle);

/* Converts, opens as a checkpoint, and checks every spec tensor against the npy folder, with
 * per-name overrides: `override_dir` holds tensors that differ from the r18 references. */
static void convert_and_check(const char *file, const mg_import_opts *o, const char *expect_layout, double expect_p,
                              int whitened, const char *override_dir, const char *const *overrides, int n_over,
                              const char *mg_prefix) {
    char *src = oracle(file), *dst = tmp("pth_converted.safetensors");
    mg_import_report r;
    mg_status s = mg_import_pth(src, dst, o, &r);
    if (s != MG_OK) fail_msg("%s", mg_error_message());
    assert_string_equal(r.layout, expect_layout);
    assert_int_equal(r.n_foreign > 0, o && o->allow_foreign);
    assert_string_equal(r.arch, "resnet18");
    assert_int_equal(r.num_classes, 10);
    mg_checkpoint c;
    s = mg_checkpoint_open(&c, dst, "resnet18", 10);
    if (s != MG_OK) fail_msg("%s", mg_error_message());
    assert_int_equal(c.whitened, whitened);
    assert_true(c.p == expect_p);
    mg_resnet_spec spec;
    mg_assert_ok(mg_resnet_spec_init(&spec, MG_ARCH_RESNET18, 10));
    for (int i = 0; i < spec.n; i++) {
        const mg_spec_entry *e = &spec.entries[i];
        const mg_st_tensor *t = mg_checkpoint_tensor(&c, e->name);
        assert_non_null(t);
        if (!strcmp(e->name, "pool.p")) {
            float p;
            mg_st_tensor_copy(t, &p);
            assert_true(p == (float)expect_p);
            continue;
        }
        void *copy = malloc(t->nbytes ? t->nbytes : 1);
        mg_st_tensor_copy(t, copy);
        int over = 0;
        for (int k = 0; k < n_over; k++)
            if (!strcmp(overrides[k], e->name)) over = 1;
        char name[128];
        snprintf(name, sizeof name, "%s%s", over && mg_prefix ? mg_prefix : "", e->name);
        if (over && mg_prefix && !strncmp(e->name, "fc.", 3)) snprintf(name, sizeof name, "classifier.%s", e->name + 3);
        assert_same_as_npy(over ? override_dir : "r18", name, t->dtype, t->ndim, t->shape, copy);
        free(copy);
    }
    mg_resnet_spec_free(&spec);
    mg_checkpoint_close(&c);
    free(src);
    free(dst);
}

static void test_convert_r18_zip(void **st) {
    (void)st;
    convert_and_check("r18_zip.pth", NULL, "torchvision", 1.0, 0, NULL, NULL, 0, NULL);
}

static void test_convert_r18_legacy(void **st) {
    (void)st;
    mg_import_opts o = {.arch = "resnet18", .num_classes = 10, .p = 3.5};
    convert_and_check("r18_legacy.pth", &o, "torchvision", 3.5, 0, NULL, NULL, 0, NULL);
}

static void test_convert_multigrain(void **st) {
    (void)st;
    /* the pickled optimizer (SGD, defaultdict, getattr) is refused by default ... */
    expect_import_error("mg_legacy.pth", NULL, "refusing to load global '__builtin__.getattr'");
    /* ... and skipped, never built, with allow_foreign */
    mg_import_opts o = {.allow_foreign = 1};
    convert_and_check("mg_legacy.pth", &o, "multigrain", 3.0, 0, NULL, NULL, 0, NULL);
}

static void test_convert_whitened(void **st) {
    (void)st;
    static const char *over[2] = {"fc.weight", "fc.bias"};
    convert_and_check("mg_white_legacy.pth", NULL, "multigrain", 2.5, 1, "mgw", over, 2, "");
    /* the whitening tensors under their documented names (in the file converted just above) */
    char *dst = tmp("pth_converted.safetensors");
    mg_checkpoint c;
    mg_assert_ok(mg_checkpoint_open(&c, dst, NULL, 0));
    const mg_st_tensor *P = mg_checkpoint_tensor(&c, "whiten.P"), *m = mg_checkpoint_tensor(&c, "whiten.mean");
    assert_non_null(P);
    assert_non_null(m);
    assert_same_as_npy("mgw", "whitening.pca.pca_P", P->dtype, P->ndim, P->shape, P->data);
    assert_same_as_npy("mgw", "whitening.pca.pca_m", m->dtype, m->ndim, m->shape, m->data);
    assert_string_equal(mg_safetensors_meta(&c.st, "whitened"), "1");
    mg_checkpoint_close(&c);
    free(dst);
}

static void test_convert_views(void **st) {
    (void)st;
    static const char *over[3] = {"fc.weight", "fc.bias", "conv1.weight"};
    convert_and_check("views_zip.pth", NULL, "state_dict", 4.25, 0, "views", over, 3, NULL);
}

static uint64_t fingerprint(const mg_st_tensor *t) {
    uint64_t sum = 0;
    size_t es = mg_dtype_size(t->dtype);
    const uint8_t *p = t->data;
    for (int64_t i = 0; i < t->count; i++) {
        uint64_t bits = 0;
        memcpy(&bits, p + (size_t)i * es, es); /* little-endian host */
        sum += bits * (uint64_t)(2 * i + 1);
    }
    return sum;
}

static void test_convert_r50(void **st) {
    (void)st;
    char *src = oracle("r50_zip.pth"), *dst = tmp("pth_r50.safetensors"), *fp = oracle("r50_fp.json");
    mg_import_report r;
    mg_assert_ok(mg_import_pth(src, dst, NULL, &r));
    assert_string_equal(r.arch, "resnet50");
    void *text = NULL;
    size_t n = 0;
    mg_assert_ok(mg_file_read_all(fp, &text, &n));
    cJSON *ref = cJSON_Parse(text);
    assert_non_null(ref);
    mg_checkpoint c;
    mg_assert_ok(mg_checkpoint_open(&c, dst, "resnet50", 10));
    int checked = 0;
    for (const cJSON *it = ref->child; it; it = it->next) {
        const mg_st_tensor *t = mg_checkpoint_tensor(&c, it->string);
        if (!t) fail_msg("tensor '%s' missing", it->string);
        const cJSON *shape = cJSON_GetObjectItem(it, "shape");
        assert_int_equal(t->ndim, cJSON_GetArraySize(shape));
        for (int d = 0; d < t->ndim; d++) assert_int_equal(t->shape[d], cJSON_GetArrayItem(shape, d)->valueint);
        unsigned long long want = strtoull(cJSON_GetObjectItem(it, "fp")->valuestring, NULL, 10);
        if (fingerprint(t) != want) fail_msg("tensor '%s' differs from torch's", it->string);
        checked++;
    }
    assert_int_equal(checked + 1, c.st.n); /* + pool.p */
    mg_checkpoint_close(&c);
    cJSON_Delete(ref);
    free(text);
    free(src);
    free(dst);
    free(fp);
}

static void expect_import_error(const char *file, const mg_import_opts *o, const char *needle) {
    char *src = oracle(file), *dst = tmp("pth_never.safetensors");
    remove(dst);
    mg_status s = mg_import_pth(src, dst, o, NULL);
    if (s == MG_OK) fail_msg("%s: accepted", file);
    if (!strstr(mg_error_message(), needle)) fail_msg("error '%s' lacks '%s'", mg_error_message(), needle);
    assert_false(mg_path_exists(dst));
    free(src);
    free(dst);
}

static void test_convert_errors(void **st) {
    (void)st;
    mg_import_opts wrong_k = {.num_classes = 1000};
    expect_import_error("r18_zip.pth", &wrong_k, "wrong class count: 'fc.weight' has 10 classes, --num-classes says 1000");
    mg_import_opts r34 = {.arch = "resnet34"};
    expect_import_error("r18_zip.pth", &r34, "missing key(s) in state_dict for resnet34 (");
    mg_import_opts r50 = {.arch = "resnet50"};
    expect_import_error("r18_legacy.pth", &r50, "size mismatch for");
    expect_import_error("r18_trunc.pth", NULL, "truncated");
    expect_import_error("tiny_zip.pth", NULL, "cannot infer the architecture");
    expect_import_error("no_such_file.pth", NULL, "no_such_file.pth");
}

int main(void) {
    if (mg_test_oracle_unavailable()) return MG_TEST_SKIP;
    mg_log_set_level(MG_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tiny_zip),          cmocka_unit_test(test_tiny_legacy),
        cmocka_unit_test(test_damaged_zip),       cmocka_unit_test(test_damaged_legacy),
        cmocka_unit_test(test_forbidden_global),  cmocka_unit_test(test_convert_r18_zip),
        cmocka_unit_test(test_convert_r18_legacy), cmocka_unit_test(test_convert_multigrain),
        cmocka_unit_test(test_convert_whitened),  cmocka_unit_test(test_convert_views),
        cmocka_unit_test(test_convert_r50),       cmocka_unit_test(test_convert_errors),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    static const char *scratch[] = {"pth_converted.safetensors", "pth_r50.safetensors", "pth_damaged.pth"};
    for (size_t i = 0; i < sizeof scratch / sizeof scratch[0]; i++) { /* large files: do not keep them */
        char *p = mg_path_join(mg_test_tmp_dir(), scratch[i]);
        if (p) remove(p);
        free(p);
    }
    return rc;
}
