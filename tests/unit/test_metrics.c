/* test_metrics.c: accuracy, AP (trapezoid and standard), mAP with query removal, N-S score and the
 * retrieval ground-truth parsers on small cases computed by hand (arithmetic in the comments). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mg_test.h"
#include "multigrain/metrics.h"

#define EXACT 1e-12 /* hand results are short sums of exact fractions: only double rounding */

static void test_ap_hand(void **state) {
    (void)state;
    /* 3 relevant images found at ranks 0, 2, 5:
     * trapezoid: k=0 r=0: (1 + 1/1)/2 / 3        = 1/3
     *            k=1 r=2: (1/2 + 2/3)/2 / 3      = 7/36
     *            k=2 r=5: (2/5 + 3/6)/2 / 3      = 3/20
     *            total = 60/180 + 35/180 + 27/180 = 122/180
     * standard:  (1/1 + 2/3 + 3/6) / 3 = (13/6) / 3 = 13/18 */
    int64_t ranks[3] = {0, 2, 5};
    assert_true(fabs(mg_ap_from_ranks(ranks, 3, 3, MG_AP_TRAPEZOID) - 122.0 / 180.0) < EXACT);
    assert_true(fabs(mg_ap_from_ranks(ranks, 3, 3, MG_AP_STANDARD) - 13.0 / 18.0) < EXACT);
    /* Only 2 of 4 relevant found at ranks 1, 3: trapezoid (0/1 + 1/2)/2/4 + (1/3 + 2/4)/2/4
     * = 1/16 + 5/48 = 8/48 = 1/6; standard (1/2 + 2/4)/4 = 1/4. */
    int64_t r2[2] = {1, 3};
    assert_true(fabs(mg_ap_from_ranks(r2, 2, 4, MG_AP_TRAPEZOID) - 1.0 / 6.0) < EXACT);
    assert_true(fabs(mg_ap_from_ranks(r2, 2, 4, MG_AP_STANDARD) - 0.25) < EXACT);
}

static void test_query_removed(void **state) {
    (void)state;
    /* List [5 (the query), 7, 1, 9, 2], relevant {7, 2, 4, 5}: the query is dropped from both, so
     * the list is [7, 1, 9, 2] and n_rel = 3 (4 never retrieved).
     * trapezoid: 7 at r=0: (1 + 1)/2/3 = 1/3; 2 at r=3 (k=1): (1/3 + 2/4)/2/3 = 5/36; total 17/36. */
    int64_t ranked[5] = {5, 7, 1, 9, 2};
    int64_t rel[4] = {7, 2, 4, 5};
    double ap;
    mg_assert_ok(mg_retrieval_query_ap(ranked, 5, 5, rel, 4, MG_AP_TRAPEZOID, &ap));
    assert_true(fabs(ap - 17.0 / 36.0) < EXACT);
    /* Without removal (self = -1), 5 is relevant at rank 0 and n_rel = 4:
     * 5@0: (1+1)/2/4 = 1/4; 7@1 (k=1): (1/1 + 2/2)/2/4 = 1/4; 2@4 (k=2): (2/4 + 3/5)/2/4 = 11/80;
     * total = 20/80 + 20/80 + 11/80 = 51/80. */
    mg_assert_ok(mg_retrieval_query_ap(ranked, 5, -1, rel, 4, MG_AP_TRAPEZOID, &ap));
    assert_true(fabs(ap - 51.0 / 80.0) < EXACT);
    /* A query whose only relevant image is itself has no AP. */
    int64_t only[1] = {5};
    assert_int_equal(mg_retrieval_query_ap(ranked, 5, 5, only, 1, MG_AP_TRAPEZOID, &ap), MG_ERR_INVALID_ARG);
}

static void test_ns_hand(void **state) {
    (void)state;
    /* 8 images, objects {0,1,2,3} and {4,5,6,7}. Query 0 top-4 [0, 1, 5, 2] -> 3 of its group;
     * query 5 top-4 [5, 4, 6, 7] -> 4; N-S = (3 + 4) / 2 = 3.5. */
    int64_t group[8] = {0, 0, 0, 0, 1, 1, 1, 1};
    int64_t qg[2] = {0, 1};
    int64_t ranked[10] = {0, 1, 5, 2, 3, 5, 4, 6, 7, 0};
    double ns;
    mg_assert_ok(mg_retrieval_ns_score(group, 8, qg, 2, ranked, 5, &ns));
    assert_true(fabs(ns - 3.5) < EXACT);
    assert_int_equal(mg_retrieval_ns_score(group, 8, qg, 2, ranked, 3, &ns), MG_ERR_INVALID_ARG);
}

static void test_topk_hand(void **state) {
    (void)state;
    /* Sample 0: label 2 has the largest logit -> top-1 and top-5.
     * Sample 1: label 0 (logit 1) is beaten by 5 classes (2,3,4,5,6) -> neither.
     * Sample 2: label 3 ties with class 1 (both 4); lower index first => rank 1 -> top-5 only. */
    float logits[3 * 7] = {0, 1, 9, 2, 3, 4, 5, /**/ 1, 0, 2, 3, 4, 5, 6, /**/ 0, 4, 1, 4, 2, 3, 0};
    int64_t labels[3] = {2, 0, 3};
    int64_t c1, c5;
    mg_assert_ok(mg_metrics_topk(logits, 3, 7, labels, &c1, &c5));
    assert_int_equal(c1, 1);
    assert_int_equal(c5, 2);
    int64_t bad[3] = {2, 7, 0};
    assert_int_equal(mg_metrics_topk(logits, 3, 7, bad, &c1, &c5), MG_ERR_INVALID_ARG);
    assert_non_null(strstr(mg_error_message(), "sample 1"));
}

static void test_holidays_groups(void **state) {
    (void)state;
    char *names[6] = {"a/100000.jpg", "a/100001.jpg", "a/100100.jpg", "a/100101.jpg", "a/100102.jpg", "a/100200.jpg"};
    mg_retrieval_gt gt;
    /* 100200 is a group of one: its query has no relevant image (as in nothing to score); the
     * grouping itself is still valid. Groups: {0,1} query 0; {2,3,4} query 2; {5} query 5. */
    mg_assert_ok(mg_retrieval_gt_holidays(names, 6, &gt));
    assert_int_equal(gt.n_queries, 3);
    assert_int_equal(gt.query_self[0], 0);
    assert_int_equal(gt.query_self[1], 2);
    assert_int_equal(gt.rel_start[1] - gt.rel_start[0], 1);
    assert_int_equal(gt.rel[gt.rel_start[0]], 1);
    assert_int_equal(gt.rel_start[2] - gt.rel_start[1], 2);
    assert_int_equal(gt.rel_start[3] - gt.rel_start[2], 0);
    mg_retrieval_gt_free(&gt);
    char *orphan[2] = {"100000.jpg", "100101.jpg"};
    assert_int_equal(mg_retrieval_gt_holidays(orphan, 2, &gt), MG_ERR_FORMAT);
    assert_non_null(strstr(mg_error_message(), "100101.jpg"));
    char *bad[1] = {"holiday.jpg"};
    assert_int_equal(mg_retrieval_gt_holidays(bad, 1, &gt), MG_ERR_FORMAT);
}

static void test_ukbench_groups(void **state) {
    (void)state;
    char *names[8] = {"u/ukbench00000.jpg", "u/ukbench00001.jpg", "u/ukbench00002.jpg", "u/ukbench00003.jpg",
                      "u/ukbench00004.jpg", "u/ukbench00005.jpg", "u/ukbench00006.jpg", "u/ukbench00007.jpg"};
    int64_t g[8];
    mg_assert_ok(mg_retrieval_ukbench_groups(names, 8, g));
    assert_int_equal(g[3], 0);
    assert_int_equal(g[4], 1);
    assert_int_equal(mg_retrieval_ukbench_groups(names, 7, g), MG_ERR_FORMAT); /* object 1 has 3 images */
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_gt_parse_errors(void **state) {
    (void)state;
    char gp[4096];
    snprintf(gp, sizeof gp, "%s/test_metrics_gt.tsv", mg_test_tmp_dir());
    char *q[2] = {"q1.jpg", "d2.jpg"};
    char *db[3] = {"d1.jpg", "d2.jpg", "d3.jpg"};
    mg_retrieval_gt gt;
    /* Valid: d2.jpg is also in the database -> query_self = 1 and it is dropped from its own relevant set. */
    write_file(gp, "q1.jpg\td1.jpg\td3.jpg\r\n\nd2.jpg\td2.jpg\td1.jpg\n");
    mg_assert_ok(mg_retrieval_gt_parse(gp, q, 2, db, 3, &gt));
    assert_int_equal(gt.query_self[0], -1);
    assert_int_equal(gt.query_self[1], 1);
    assert_int_equal(gt.rel_start[1], 2);
    assert_int_equal(gt.rel_start[2] - gt.rel_start[1], 1);
    assert_int_equal(gt.rel[2], 0);
    mg_retrieval_gt_free(&gt);
    /* Unknown relevant image on line 2. */
    write_file(gp, "q1.jpg\td1.jpg\nd2.jpg\tnope.jpg\n");
    assert_int_equal(mg_retrieval_gt_parse(gp, q, 2, db, 3, &gt), MG_ERR_FORMAT);
    assert_non_null(strstr(mg_error_message(), "line 2"));
    assert_non_null(strstr(mg_error_message(), "nope.jpg"));
    /* Unknown query on line 1. */
    write_file(gp, "zz.jpg\td1.jpg\n");
    assert_int_equal(mg_retrieval_gt_parse(gp, q, 2, db, 3, &gt), MG_ERR_FORMAT);
    assert_non_null(strstr(mg_error_message(), "line 1"));
    /* Missing query line, duplicate line, no relevant image. */
    write_file(gp, "q1.jpg\td1.jpg\n");
    assert_int_equal(mg_retrieval_gt_parse(gp, q, 2, db, 3, &gt), MG_ERR_FORMAT);
    assert_non_null(strstr(mg_error_message(), "d2.jpg"));
    write_file(gp, "q1.jpg\td1.jpg\nq1.jpg\td3.jpg\nd2.jpg\td1.jpg\n");
    assert_int_equal(mg_retrieval_gt_parse(gp, q, 2, db, 3, &gt), MG_ERR_FORMAT);
    write_file(gp, "q1.jpg\td1.jpg\nd2.jpg\td2.jpg\n");
    assert_int_equal(mg_retrieval_gt_parse(gp, q, 2, db, 3, &gt), MG_ERR_FORMAT);
    assert_non_null(strstr(mg_error_message(), "no relevant"));
    /* Duplicate database names. */
    char *dup[2] = {"d1.jpg", "d1.jpg"};
    write_file(gp, "q1.jpg\td1.jpg\nd2.jpg\td1.jpg\n");
    assert_int_equal(mg_retrieval_gt_parse(gp, q, 2, dup, 2, &gt), MG_ERR_FORMAT);
    remove(gp);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ap_hand),         cmocka_unit_test(test_query_removed),
        cmocka_unit_test(test_ns_hand),         cmocka_unit_test(test_topk_hand),
        cmocka_unit_test(test_holidays_groups), cmocka_unit_test(test_ukbench_groups),
        cmocka_unit_test(test_gt_parse_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
