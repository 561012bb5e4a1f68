/* test_core.c: the core utilities: status messages, strict parsing, RNG distribution and
 * determinism, thread pool coverage, arena alignment, atomic files and .npy round trips. */
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/arena.h"
#include "core/fileio.h"
#include "core/parse.h"
#include "core/rng.h"
#include "core/threadpool.h"
#include "mg_test.h"

static void test_status_messages(void **state) {
    (void)state;
    mg_error_clear();
    assert_string_equal(mg_error_message(), "");
    mg_status s = MG_FAIL(MG_ERR_FORMAT, "x.bin: expected %d bytes, found %d", 8, 3);
    assert_int_equal(s, MG_ERR_FORMAT);
    assert_string_equal(mg_error_message(), "x.bin: expected 8 bytes, found 3");
    assert_int_equal(mg_error_code(), MG_ERR_FORMAT);
    mg_error_wrap(MG_ERR_FORMAT, "loading %s", "model");
    assert_string_equal(mg_error_message(), "loading model: x.bin: expected 8 bytes, found 3");
    assert_int_equal(mg_status_exit_code(MG_ERR_USAGE), 2);
    assert_int_equal(mg_status_exit_code(MG_ERR_CONFIG), 2);
    assert_int_equal(mg_status_exit_code(MG_ERR_IO), 1);
    assert_int_equal(mg_status_exit_code(MG_OK), 0);
    /* A very long message is truncated, never overflowed. */
    char big[4000];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    MG_FAIL(MG_ERR_IO, "%s", big);
    mg_error_wrap(MG_ERR_IO, "%s", big);
    assert_true(strlen(mg_error_message()) < 1024);
}

static void test_parse(void **state) {
    (void)state;
    int v = 0;
    assert_int_equal(mg_parse_int("64", 1, 100, "--batch-size", MG_ERR_USAGE, &v), MG_OK);
    assert_int_equal(v, 64);
    assert_int_equal(mg_parse_int("banana", 1, 100, "--batch-size", MG_ERR_USAGE, &v), MG_ERR_USAGE);
    assert_non_null(strstr(mg_error_message(), "--batch-size"));
    assert_non_null(strstr(mg_error_message(), "banana"));
    assert_int_equal(mg_parse_int("0", 1, 100, "--batch-size", MG_ERR_USAGE, &v), MG_ERR_USAGE);
    assert_int_equal(mg_parse_int("12x", 1, 100, "k", MG_ERR_CONFIG, &v), MG_ERR_CONFIG);
    assert_int_equal(mg_parse_int("", 1, 100, "k", MG_ERR_CONFIG, &v), MG_ERR_CONFIG);
    assert_int_equal(mg_parse_int("99999999999999999999", 1, 100, "k", MG_ERR_USAGE, &v), MG_ERR_USAGE);
    double d = 0;
    assert_int_equal(mg_parse_double("0.2", 0, 10, "--lr", MG_ERR_USAGE, &d), MG_OK);
    assert_true(d == 0.2);
    assert_int_equal(mg_parse_double("nan", 0, 10, "--lr", MG_ERR_USAGE, &d), MG_ERR_USAGE);
    assert_int_equal(mg_parse_double("1e400", 0, 1e300, "--lr", MG_ERR_USAGE, &d), MG_ERR_USAGE);
    assert_int_equal(mg_parse_double("-1", 0, 10, "--lr", MG_ERR_USAGE, &d), MG_ERR_USAGE);
    bool b = false;
    assert_int_equal(mg_parse_bool("Yes", "k", MG_ERR_CONFIG, &b), MG_OK);
    assert_true(b);
    assert_int_equal(mg_parse_bool("off", "k", MG_ERR_CONFIG, &b), MG_OK);
    assert_false(b);
    assert_int_equal(mg_parse_bool("maybe", "k", MG_ERR_CONFIG, &b), MG_ERR_CONFIG);
}

static void test_rng(void **state) {
    (void)state;
    mg_rng a, b;
    mg_rng_init(&a, 1, 2, 3, 4);
    mg_rng_init(&b, 1, 2, 3, 4);
    for (int i = 0; i < 100; i++) assert_true(mg_rng_next_u64(&a) == mg_rng_next_u64(&b));
    mg_rng_init(&b, 1, 2, 3, 5); /* a different key gives a different stream */
    mg_rng_init(&a, 1, 2, 3, 4);
    assert_true(mg_rng_next_u64(&a) != mg_rng_next_u64(&b));
    /* Moments: mean of U[0,1) is 1/2 (sd of the mean for n=200000 is 0.00065), normal mean 0, var 1. */
    const int n = 200000;
    double su = 0, sn = 0, sn2 = 0;
    for (int i = 0; i < n; i++) {
        double u = mg_rng_uniform(&a);
        assert_true(u >= 0.0 && u < 1.0);
        su += u;
        double z = mg_rng_normal(&a);
        sn += z;
        sn2 += z * z;
    }
    assert_true(fabs(su / n - 0.5) < 0.004);           /* ~6 sd */
    assert_true(fabs(sn / n) < 0.014);                 /* sd of the mean 0.0022 */
    assert_true(fabs(sn2 / n - 1.0) < 0.02);           /* sd of the variance estimate ~0.0032 */
    /* mg_rng_below is uniform over a small range: chi-square with 6 dof. */
    int counts[7] = {0};
    for (int i = 0; i < 70000; i++) counts[mg_rng_below(&a, 7)]++;
    double chi = 0;
    for (int k = 0; k < 7; k++) chi += (counts[k] - 10000.0) * (counts[k] - 10000.0) / 10000.0;
    assert_true(chi < 30.0); /* p < 1e-4 threshold for 6 dof is ~27.9; 30 keeps flakiness negligible */
    /* A permutation holds every index once. */
    int64_t perm[101];
    mg_rng_permutation(&a, perm, 101);
    int seen[101] = {0};
    for (int i = 0; i < 101; i++) seen[perm[i]]++;
    for (int i = 0; i < 101; i++) assert_int_equal(seen[i], 1);
}

typedef struct pool_ctx {
    atomic_int hits[1000];
    atomic_int max_thread;
} pool_ctx;

static void pool_task(void *ctx, int task, int thread) {
    pool_ctx *c = ctx;
    atomic_fetch_add(&c->hits[task], 1);
    int m = atomic_load(&c->max_thread);
    while (thread > m && !atomic_compare_exchange_weak(&c->max_thread, &m, thread)) {
    }
}

static void test_threadpool(void **state) {
    (void)state;
    for (int threads = 1; threads <= 4; threads++) {
        mg_pool *p = NULL;
        mg_assert_ok(mg_pool_init(&p, threads));
        assert_int_equal(mg_pool_threads(p), threads);
        for (int round = 0; round < 50; round++) {
            static pool_ctx c;
            memset(&c, 0, sizeof c);
            int n = 1 + round * 17 % 1000;
            mg_pool_run(p, n, pool_task, &c);
            for (int t = 0; t < n; t++) assert_int_equal(atomic_load(&c.hits[t]), 1);
            for (int t = n; t < 1000; t++) assert_int_equal(atomic_load(&c.hits[t]), 0);
            assert_true(atomic_load(&c.max_thread) < threads);
        }
        mg_pool_free(p);
    }
    mg_pool *bad = NULL;
    assert_int_equal(mg_pool_init(&bad, 0), MG_ERR_INVALID_ARG);
}

static void test_arena(void **state) {
    (void)state;
    mg_arena a;
    mg_assert_ok(mg_arena_init(&a, 1000));
    void *p1 = mg_arena_alloc(&a, 3);
    void *p2 = mg_arena_alloc(&a, 100);
    assert_non_null(p1);
    assert_non_null(p2);
    assert_int_equal((uintptr_t)p1 % MG_ARENA_ALIGN, 0);
    assert_int_equal((uintptr_t)p2 % MG_ARENA_ALIGN, 0);
    assert_true((char *)p2 - (char *)p1 == 64);
    size_t mark = mg_arena_mark(&a);
    assert_null(mg_arena_alloc(&a, 100000)); /* does not fit: NULL with a message, no crash */
    assert_int_equal(mg_error_code(), MG_ERR_NOMEM);
    mg_arena_rewind(&a, mark);
    assert_non_null(mg_arena_alloc(&a, 64));
    mg_arena_free(&a);
}

static void test_atomic_file(void **state) {
    (void)state;
    char path[4096];
    snprintf(path, sizeof path, "%s/core_atomic_%ld.txt", mg_test_tmp_dir(), (long)getpid());
    mg_assert_ok(mg_file_write_atomic(path, "first", 5));
    /* An aborted write leaves the old content and no temporary file. */
    mg_atomic_file af;
    mg_assert_ok(mg_atomic_file_open(&af, path));
    mg_assert_ok(mg_atomic_file_write(&af, "partial", 7));
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s", af.tmp_path);
    mg_atomic_file_abort(&af);
    assert_false(mg_path_exists(tmp));
    void *data;
    size_t n;
    mg_assert_ok(mg_file_read_all(path, &data, &n));
    assert_int_equal(n, 5);
    assert_memory_equal(data, "first", 5);
    free(data);
    mg_assert_ok(mg_file_write_atomic(path, "second!", 7));
    mg_assert_ok(mg_file_read_all(path, &data, &n));
    assert_int_equal(n, 7);
    free(data);
    unlink(path);
    /* Missing file: an I/O error naming the path. */
    assert_int_equal(mg_file_read_all("/nonexistent/x.bin", &data, &n), MG_ERR_IO);
    assert_non_null(strstr(mg_error_message(), "/nonexistent/x.bin"));
    /* Writing into a folder that does not exist fails cleanly. */
    assert_int_equal(mg_file_write_atomic("/nonexistent/dir/y.bin", "x", 1), MG_ERR_IO);
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/core_dirs_%ld/a/b", mg_test_tmp_dir(), (long)getpid());
    mg_assert_ok(mg_dir_create(dir));
    assert_true(mg_path_is_dir(dir));
}

static void test_npy_roundtrip_and_errors(void **state) {
    (void)state;
    char path[4096];
    snprintf(path, sizeof path, "%s/core_%ld.npy", mg_test_tmp_dir(), (long)getpid());
    float x[6] = {1, -2, 3.5f, 0, 1e-30f, 7};
    int64_t shape[2] = {2, 3};
    mg_assert_ok(mg_npy_write(path, MG_DTYPE_F32, 2, shape, x));
    mg_npy a;
    mg_assert_ok(mg_npy_read_as(path, MG_DTYPE_F32, &a));
    assert_int_equal(a.ndim, 2);
    assert_int_equal(a.shape[0], 2);
    assert_int_equal(a.shape[1], 3);
    assert_memory_equal(a.data, x, sizeof x);
    mg_npy_free(&a);
    /* 1-D and 0-D shapes */
    int64_t s1[1] = {6};
    mg_assert_ok(mg_npy_write(path, MG_DTYPE_F32, 1, s1, x));
    mg_assert_ok(mg_npy_read(path, &a));
    assert_int_equal(a.ndim, 1);
    assert_int_equal(a.count, 6);
    mg_npy_free(&a);
    mg_assert_ok(mg_npy_write(path, MG_DTYPE_F32, 0, NULL, x));
    mg_assert_ok(mg_npy_read(path, &a));
    assert_int_equal(a.ndim, 0);
    assert_int_equal(a.count, 1);
    mg_npy_free(&a);
    /* Streaming writer: declared rows must be written. */
    mg_npy_writer *w;
    mg_assert_ok(mg_npy_writer_open(&w, path, 2, 3));
    mg_assert_ok(mg_npy_writer_append(w, x, 1));
    assert_int_equal(mg_npy_writer_commit(w), MG_ERR_INVALID_ARG);
    mg_assert_ok(mg_npy_writer_open(&w, path, 2, 3));
    mg_assert_ok(mg_npy_writer_append(w, x, 2));
    assert_int_equal(mg_npy_writer_append(w, x, 1), MG_ERR_INVALID_ARG);
    mg_assert_ok(mg_npy_writer_commit(w));
    mg_assert_ok(mg_npy_read_as(path, MG_DTYPE_F32, &a));
    assert_memory_equal(a.data, x, sizeof x);
    mg_npy_free(&a);
    /* Truncated data and garbage are format errors. */
    void *buf;
    size_t n;
    mg_assert_ok(mg_file_read_all(path, &buf, &n));
    mg_assert_ok(mg_file_write_atomic(path, buf, n - 4));
    assert_int_equal(mg_npy_read(path, &a), MG_ERR_FORMAT);
    assert_non_null(strstr(mg_error_message(), path));
    mg_assert_ok(mg_file_write_atomic(path, "hello world, not numpy", 22));
    assert_int_equal(mg_npy_read(path, &a), MG_ERR_FORMAT);
    free(buf);
    unlink(path);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_messages), cmocka_unit_test(test_parse),
        cmocka_unit_test(test_rng),             cmocka_unit_test(test_threadpool),
        cmocka_unit_test(test_arena),           cmocka_unit_test(test_atomic_file),
        cmocka_unit_test(test_npy_roundtrip_and_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
