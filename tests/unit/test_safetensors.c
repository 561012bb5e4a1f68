/* test_safetensors.c: safetensors writer/reader round trip (all dtypes, 0-d and empty tensors,
 * metadata, header layout per the format spec) and the reader's validation of lying headers and
 * truncated files: each must fail with a clear error naming the file and tensor, never crash. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
#include "mg_test.h"
#include "multigrain/safetensors.h"

static char *tmp_path(const char *name) {
    char *p = mg_path_join(mg_test_tmp_dir(), name);
    assert_non_null(p);
    return p;
}

/* Plain (non-atomic, no fsync) write for the many small files of the truncation loop. */
static void write_plain(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (n) assert_int_equal(fwrite(data, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static void write_raw(const char *path, const char *header, const void *data, size_t n) {
    size_t hl = strlen(header);
    uint8_t len[8];
    for (int i = 0; i < 8; i++) len[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    size_t total = 8 + hl + n;
    uint8_t *buf = malloc(total);
    memcpy(buf, len, 8);
    memcpy(buf + 8, header, hl);
    if (n) memcpy(buf + 8 + hl, data, n);
    write_plain(path, buf, total);
    free(buf);
}

static void expect_error(const char *path, const char *needle) {
    mg_safetensors st;
    mg_status s = mg_safetensors_open(&st, path);
    if (s == MG_OK) {
        mg_safetensors_close(&st);
        fail_msg("%s: expected an error containing '%s'", path, needle);
    }
    if (!strstr(mg_error_message(), needle))
        fail_msg("error '%s' does not contain '%s'", mg_error_message(), needle);
}

static void test_round_trip(void **state) {
    (void)state;
    char *path = tmp_path("st_roundtrip.safetensors");
    float f[6] = {1.5f, -2.0f, 3.25f, 0.0f, -0.0f, 1e-30f};
    double d[2] = {3.141592653589793, -1e300};
    int32_t i32[3] = {-7, 0, 2147483647};
    int64_t i64 = -1234567890123LL;
    uint8_t u8[5] = {0, 1, 2, 254, 255};
    uint8_t b[2] = {1, 0};
    int64_t sf[2] = {2, 3}, sd[1] = {2}, si[1] = {3}, su[3] = {5, 1, 1}, sb[1] = {2}, se[2] = {0, 4};
    mg_st_writer w;
    mg_st_writer_init(&w);
    mg_assert_ok(mg_st_writer_set_meta(&w, "format", "test"));
    mg_assert_ok(mg_st_writer_set_meta(&w, "quote", "a \"b\"\n\\c"));
    mg_assert_ok(mg_st_writer_set_meta(&w, "format", "test2")); /* replaces */
    mg_assert_ok(mg_st_writer_add(&w, "f", MG_DTYPE_F32, 2, sf, f));
    mg_assert_ok(mg_st_writer_add(&w, "u8", MG_DTYPE_U8, 3, su, u8)); /* odd size: later offsets unaligned */
    mg_assert_ok(mg_st_writer_add(&w, "d", MG_DTYPE_F64, 1, sd, d));
    mg_assert_ok(mg_st_writer_add(&w, "scalar", MG_DTYPE_I64, 0, NULL, &i64));
    mg_assert_ok(mg_st_writer_add(&w, "i32", MG_DTYPE_I32, 1, si, i32));
    mg_assert_ok(mg_st_writer_add(&w, "empty", MG_DTYPE_F32, 2, se, NULL));
    mg_assert_ok(mg_st_writer_add(&w, "bool", MG_DTYPE_BOOL, 1, sb, b));
    assert_int_equal(mg_st_writer_add(&w, "f", MG_DTYPE_F32, 2, sf, f), MG_ERR_INVALID_ARG);
    mg_assert_ok(mg_st_writer_write(&w, path));
    mg_st_writer_free(&w);

    /* layout per the spec: u64 header length, multiple of 8, JSON padded with spaces */
    void *raw = NULL;
    size_t n = 0;
    mg_assert_ok(mg_file_read_all(path, &raw, &n));
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = (hl << 8) | ((uint8_t *)raw)[i];
    assert_int_equal(hl % 8, 0);
    assert_int_equal(((char *)raw)[8], '{');
    assert_int_equal(n, 8 + hl + 24 + 5 + 16 + 8 + 12 + 0 + 2);
    free(raw);

    mg_safetensors st;
    mg_assert_ok(mg_safetensors_open(&st, path));
    assert_int_equal(st.n, 7);
    assert_string_equal(mg_safetensors_meta(&st, "format"), "test2");
    assert_string_equal(mg_safetensors_meta(&st, "quote"), "a \"b\"\n\\c");
    assert_null(mg_safetensors_meta(&st, "nope"));
    const char *order[7] = {"f", "u8", "d", "scalar", "i32", "empty", "bool"};
    for (int i = 0; i < 7; i++) assert_string_equal(st.tensors[i].name, order[i]);
    const mg_st_tensor *t = mg_safetensors_find(&st, "f");
    assert_int_equal(t->dtype, MG_DTYPE_F32);
    assert_int_equal(t->ndim, 2);
    assert_int_equal(t->shape[1], 3);
    assert_memory_equal(t->data, f, sizeof f);
    t = mg_safetensors_find(&st, "d");
    assert_memory_equal(t->data, d, sizeof d);
    t = mg_safetensors_find(&st, "scalar");
    assert_int_equal(t->ndim, 0);
    assert_int_equal(t->count, 1);
    int64_t got;
    mg_st_tensor_copy(t, &got);
    assert_int_equal(got, i64);
    t = mg_safetensors_find(&st, "i32");
    assert_memory_equal(t->data, i32, sizeof i32);
    t = mg_safetensors_find(&st, "u8");
    assert_int_equal(t->shape[0], 5);
    assert_memory_equal(t->data, u8, 5);
    t = mg_safetensors_find(&st, "empty");
    assert_int_equal(t->count, 0);
    assert_int_equal(t->nbytes, 0);
    t = mg_safetensors_find(&st, "bool");
    assert_int_equal(t->dtype, MG_DTYPE_BOOL);
    assert_memory_equal(t->data, b, 2);
    assert_null(mg_safetensors_find(&st, "missing"));
    /* mg_st_tensor_copy reads the file (pread) for every tensor, at its offset, whole, whatever the
     * alignment of the destination; a copy of a tensor whose `data` points elsewhere copies that */
    for (int i = 0; i < st.n; i++) {
        const mg_st_tensor *ti = &st.tensors[i];
        unsigned char buf[64 + 1];
        memset(buf, 0xAB, sizeof buf);
        mg_st_tensor_copy(ti, buf + 1);
        assert_memory_equal(buf + 1, ti->data, ti->nbytes);
        assert_int_equal(buf[1 + ti->nbytes], 0xAB); /* nothing past nbytes */
    }
    mg_st_tensor other = *mg_safetensors_find(&st, "f");
    float redirected[6] = {9, 8, 7, 6, 5, 4}, out[6];
    other.data = redirected;
    mg_st_tensor_copy(&other, out);
    assert_memory_equal(out, redirected, sizeof out);
    mg_safetensors_close(&st);
    free(path);
}

static void test_lying_headers(void **state) {
    (void)state;
    char *path = tmp_path("st_bad.safetensors");
    float data[10] = {0};
    /* offsets past the end of the data section */
    write_raw(path, "{\"fc.weight\":{\"dtype\":\"F32\",\"shape\":[10],\"data_offsets\":[0,80]}}", data, 40);
    expect_error(path, "tensor 'fc.weight': data_offsets [0, 80] span 80 bytes, shape [10] float32 needs 40");
    write_raw(path, "{\"fc.weight\":{\"dtype\":\"F32\",\"shape\":[20],\"data_offsets\":[0,80]}}", data, 40);
    expect_error(path, "run past the end of the data section");
    /* wrong shape for the span (the message format of the brief) */
    write_raw(path, "{\"fc.weight\":{\"dtype\":\"F32\",\"shape\":[10,4],\"data_offsets\":[0,40]}}", data, 40);
    expect_error(path, "st_bad.safetensors: tensor 'fc.weight': data_offsets [0, 40] span 40 bytes, shape [10, 4] float32 needs 160");
    /* overlap, gap, not covering, duplicates */
    write_raw(path, "{\"a\":{\"dtype\":\"F32\",\"shape\":[6],\"data_offsets\":[0,24]},"
                    "\"b\":{\"dtype\":\"F32\",\"shape\":[6],\"data_offsets\":[16,40]}}", data, 40);
    expect_error(path, "overlap");
    write_raw(path, "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                    "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[24,40]}}", data, 40);
    expect_error(path, "tensor 'b': data_offsets [24, 40] leave a gap of 8 bytes");
    write_raw(path, "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", data, 40);
    expect_error(path, "trailing bytes");
    write_raw(path, "{\"a\":{\"dtype\":\"F32\",\"shape\":[5],\"data_offsets\":[0,20]},"
                    "\"a\":{\"dtype\":\"F32\",\"shape\":[5],\"data_offsets\":[20,40]}}", data, 40);
    expect_error(path, "tensor 'a' appears twice");
    /* bad dtype, shape, offsets, JSON, metadata */
    write_raw(path, "{\"a\":{\"dtype\":\"F16\",\"shape\":[20],\"data_offsets\":[0,40]}}", data, 40);
    expect_error(path, "tensor 'a': unsupported dtype 'F16'");
    write_raw(path, "{\"a\":{\"dtype\":\"F32\",\"shape\":[-10],\"data_offsets\":[0,40]}}", data, 40);
    expect_error(path, "tensor 'a': shape[0] is not a non-negative integer");
    write_raw(path, "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,40]}}",
              data, 40);
    expect_error(path, "tensor 'a'");
    write_raw(path, "{\"a\":{\"dtype\":\"F32\",\"shape\":[10],\"data_offsets\":[40,0]}}", data, 40);
    expect_error(path, "end before begin");
    write_raw(path, "{\"a\":{\"dtype\":\"F32\",\"shape\":[10],\"data_offsets\":[0]}}", data, 40);
    expect_error(path, "tensor 'a': \"data_offsets\" must be two");
    write_raw(path, "{\"a\":{\"dtype\":\"F32\",\"shape\":[10],\"data_offsets\":[0,40]", data, 40);
    expect_error(path, "not a valid JSON object");
    write_raw(path, "[1, 2, 3]", data, 0);
    expect_error(path, "does not start with '{'");
    write_raw(path, "{\"__metadata__\":{\"k\":\"a\"},\"__metadata__\":{\"k\":\"b\",\"l\":\"c\"}}", data, 0);
    expect_error(path, "\"__metadata__\" appears twice");
    write_raw(path, "{\"__metadata__\":{\"k\":1}}", data, 0);
    expect_error(path, "metadata 'k' is not a string");
    /* header length larger than the file */
    uint8_t huge[16] = {0xff, 0xff, 0xff, 0x00, 0, 0, 0, 0, '{', '}'};
    mg_assert_ok(mg_file_write_atomic(path, huge, sizeof huge));
    expect_error(path, "header length 16777215 does not fit");
    mg_assert_ok(mg_file_write_atomic(path, huge, 5));
    expect_error(path, "too short");
    /* an empty dict with no data is fine */
    write_raw(path, "{}      ", data, 0);
    mg_safetensors st;
    mg_assert_ok(mg_safetensors_open(&st, path));
    assert_int_equal(st.n, 0);
    mg_safetensors_close(&st);
    expect_error("/nonexistent/x.safetensors", "/nonexistent/x.safetensors: cannot open");
    free(path);
}

/* Every truncation of a valid file must be rejected cleanly (run under ASan too). */
static void test_truncations(void **state) {
    (void)state;
    char *path = tmp_path("st_trunc_src.safetensors"), *cut = tmp_path("st_trunc.safetensors");
    float f[7] = {1, 2, 3, 4, 5, 6, 7};
    int64_t s1[1] = {7}, c = 3;
    mg_st_writer w;
    mg_st_writer_init(&w);
    mg_assert_ok(mg_st_writer_set_meta(&w, "k", "v"));
    mg_assert_ok(mg_st_writer_add(&w, "x", MG_DTYPE_F32, 1, s1, f));
    mg_assert_ok(mg_st_writer_add(&w, "n", MG_DTYPE_I64, 0, NULL, &c));
    mg_assert_ok(mg_st_writer_write(&w, path));
    mg_st_writer_free(&w);
    void *raw = NULL;
    size_t n = 0;
    mg_assert_ok(mg_file_read_all(path, &raw, &n));
    for (size_t k = 0; k < n; k++) {
        write_plain(cut, raw, k);
        mg_safetensors st;
        if (mg_safetensors_open(&st, cut) == MG_OK) {
            mg_safetensors_close(&st);
            fail_msg("truncated to %zu of %zu bytes but accepted", k, n);
        }
        assert_non_null(strstr(mg_error_message(), "st_trunc.safetensors"));
    }
    free(raw);
    free(path);
    free(cut);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_lying_headers),
        cmocka_unit_test(test_truncations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
