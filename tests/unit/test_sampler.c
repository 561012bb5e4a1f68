/* test_sampler.c: the repeated-augmentation sampler: hand-computed streams and batch/rank splits
 * for small N, the m-consecutive-copies and permutation properties with shuffling, reproducibility
 * per (seed, epoch), and disjoint rank shares. */
#include <stdlib.h>
#include <string.h>

#include "mg_test.h"
#include "multigrain/data.h"

static mg_sampler_cfg cfg(int64_t n, int batch, int reps, double f, bool shuffle) {
    mg_sampler_cfg c;
    mg_sampler_cfg_default(&c);
    c.n = n;
    c.batch = batch;
    c.reps = reps;
    c.len_factor = f;
    c.shuffle = shuffle;
    c.seed = 42;
    return c;
}

static void test_unshuffled_exact(void **state) {
    (void)state;
    /* N=5, m=3, f=2: int(10) positions 0 0 0 1 1 1 2 2 2 3; batches of 4 */
    mg_sampler_cfg c = cfg(5, 4, 3, 2.0, false);
    int64_t *s, len;
    mg_assert_ok(mg_sampler_epoch(&c, 0, &s, &len));
    const int64_t want[10] = {0, 0, 0, 1, 1, 1, 2, 2, 2, 3};
    assert_int_equal(len, 10);
    assert_memory_equal(s, want, sizeof want);
    free(s);
    assert_int_equal(mg_sampler_num_batches(&c), 3); /* 4 + 4 + 2 (partial kept) */
    c.drop_last = true;
    assert_int_equal(mg_sampler_num_batches(&c), 2);
    c.drop_last = false;
    int64_t b, e;
    mg_sampler_batch_range(&c, 2, &b, &e);
    assert_int_equal(b, 8);
    assert_int_equal(e, 10);
    /* m=1, f=1.5, N=4: 0 1 2 3 0 1 (a new pass starts when the permutation is exhausted) */
    c = cfg(4, 4, 1, 1.5, false);
    mg_assert_ok(mg_sampler_epoch(&c, 3, &s, &len));
    const int64_t want2[6] = {0, 1, 2, 3, 0, 1};
    assert_int_equal(len, 6);
    assert_memory_equal(s, want2, sizeof want2);
    free(s);
    /* int(N*f) truncates: N=7, f=0.5 -> 3 */
    c = cfg(7, 2, 1, 0.5, false);
    mg_assert_ok(mg_sampler_epoch(&c, 0, &s, &len));
    assert_int_equal(len, 3);
    free(s);
}

static void test_rank_split_exact(void **state) {
    (void)state;
    /* stream 0 0 0 1 1 1 2 2 2 3, batch 4, world 2: cuts move to the nearest multiple of m=3 */
    mg_sampler_cfg c = cfg(5, 4, 3, 2.0, false);
    c.world = 2;
    int64_t b, e;
    c.rank = 0;
    mg_sampler_batch_range(&c, 0, &b, &e);
    assert_int_equal(b, 0);
    assert_int_equal(e, 3); /* 0 0 0 */
    c.rank = 1;
    mg_sampler_batch_range(&c, 0, &b, &e);
    assert_int_equal(b, 3);
    assert_int_equal(e, 4); /* 1 */
    c.rank = 0;
    mg_sampler_batch_range(&c, 1, &b, &e);
    assert_int_equal(b, 4);
    assert_int_equal(e, 6); /* 1 1 */
    c.rank = 1;
    mg_sampler_batch_range(&c, 1, &b, &e);
    assert_int_equal(b, 6);
    assert_int_equal(e, 8); /* 2 2 */
    /* batch 512, 4 ranks, m = 3: cuts 128, 256, 384 move to the nearest multiples of 3: 129, 255, 384 */
    c = cfg(1000, 512, 3, 2.0, false);
    c.world = 4;
    const int64_t cuts[5] = {0, 129, 255, 384, 512};
    for (int r = 0; r < 4; r++) {
        c.rank = r;
        mg_sampler_batch_range(&c, 0, &b, &e);
        assert_int_equal(b, cuts[r]);
        assert_int_equal(e, cuts[r + 1]);
    }
    /* m = 1: plain equal split 6 -> 3 + 3 */
    c = cfg(12, 6, 1, 1.0, true);
    c.world = 2;
    c.rank = 1;
    mg_sampler_batch_range(&c, 1, &b, &e);
    assert_int_equal(b, 9);
    assert_int_equal(e, 12);
}

static void test_shuffled_properties(void **state) {
    (void)state;
    const int64_t N = 50;
    for (int m = 1; m <= 4; m++) {
        mg_sampler_cfg c = cfg(N, 12, m, (double)m, true); /* f = m: every index exactly m times */
        int64_t *s, len;
        mg_assert_ok(mg_sampler_epoch(&c, 1, &s, &len));
        assert_int_equal(len, N * m);
        int count[50] = {0};
        for (int64_t i = 0; i < len; i++) {
            assert_true(s[i] >= 0 && s[i] < N);
            count[s[i]]++;
            if (i % m) assert_int_equal(s[i], s[i - 1]); /* copies consecutive */
        }
        for (int i = 0; i < N; i++) assert_int_equal(count[i], m);
        /* same (seed, epoch) -> same stream; another epoch or seed -> another permutation */
        int64_t *s2, *s3, l2;
        mg_assert_ok(mg_sampler_epoch(&c, 1, &s2, &l2));
        assert_memory_equal(s, s2, sizeof(int64_t) * (size_t)len);
        mg_assert_ok(mg_sampler_epoch(&c, 2, &s3, &l2));
        assert_true(memcmp(s, s3, sizeof(int64_t) * (size_t)len) != 0);
        free(s);
        free(s2);
        free(s3);
    }
}

static void test_ranks_disjoint(void **state) {
    (void)state;
    /* batch 512-like geometry scaled down: batch 20, m 3, 4 ranks; shares cover each batch exactly,
     * and no image index appears on two ranks within a step */
    const int world = 4;
    mg_sampler_cfg c = cfg(37, 20, 3, 2.0, true);
    c.world = world;
    int64_t *s, len;
    mg_assert_ok(mg_sampler_epoch(&c, 0, &s, &len));
    int64_t nb = mg_sampler_num_batches(&c);
    for (int64_t bi = 0; bi < nb; bi++) {
        int64_t prev_end = -1, first = -1, last = -1;
        for (int r = 0; r < world; r++) {
            c.rank = r;
            int64_t b, e;
            mg_sampler_batch_range(&c, bi, &b, &e);
            if (r == 0) first = b;
            else assert_int_equal(b, prev_end);
            assert_true(e >= b);
            prev_end = e;
            last = e;
            for (int r2 = r + 1; r2 < world; r2++) {
                mg_sampler_cfg c2 = c;
                c2.rank = r2;
                int64_t b2, e2;
                mg_sampler_batch_range(&c2, bi, &b2, &e2);
                for (int64_t i = b; i < e; i++)
                    for (int64_t j = b2; j < e2; j++)
                        if (s[i] == s[j]) fail_msg("batch %lld: index %lld on ranks %d and %d", (long long)bi, (long long)s[i], r, r2);
            }
        }
        assert_int_equal(first, bi * 20);
        assert_int_equal(last, bi * 20 + 20 < len ? bi * 20 + 20 : len);
    }
    free(s);
    mg_sampler_cfg bad = cfg(0, 4, 1, 1.0, true);
    assert_int_equal(mg_sampler_epoch(&bad, 0, &s, &len), MG_ERR_INVALID_ARG);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unshuffled_exact),
        cmocka_unit_test(test_rank_split_exact),
        cmocka_unit_test(test_shuffled_properties),
        cmocka_unit_test(test_ranks_disjoint),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
