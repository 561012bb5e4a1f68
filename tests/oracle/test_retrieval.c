/* test_retrieval.c: kNN search, PCA whitening, classifier folding and retrieval metrics against
 * the independent numpy implementations of gen_retrieval.py (float64 references). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mg_test.h"
#include "multigrain/knn.h"
#include "multigrain/metrics.h"
#include "multigrain/whiten.h"

static void oracle_path(char *buf, size_t n, const char *file) {
    snprintf(buf, n, "%s/%s", mg_test_oracle_dir(), file);
}

static void check_knn(const mg_npy *db, const mg_npy *q, int k, const mg_npy *rid, const mg_npy *rsc,
                      const mg_knn_opts *o, int64_t chunk, double atol) {
    int64_t n = db->shape[0], d = db->shape[1], nq = q->shape[0];
    int64_t *ids = malloc(sizeof(int64_t) * (size_t)(nq * k));
    float *sc = malloc(sizeof(float) * (size_t)(nq * k));
    if (chunk <= 0) {
        mg_assert_ok(mg_knn_search(db->data, n, q->data, nq, d, k, o, ids, sc));
    } else {
        mg_knn *s;
        mg_assert_ok(mg_knn_init(&s, q->data, nq, d, k, o));
        for (int64_t r = 0; r < n; r += chunk)
            mg_assert_ok(mg_knn_add(s, (const float *)db->data + r * d, n - r < chunk ? n - r : chunk, r));
        mg_assert_ok(mg_knn_result(s, ids, sc));
        mg_knn_free(s);
    }
    const int64_t *ref = rid->data;
    for (int64_t i = 0; i < nq * k; i++)
        if (ids[i] != ref[i])
            fail_msg("knn: query %lld rank %lld: got db %lld, numpy %lld (threads %d, par %d, chunk %lld)",
                     (long long)(i / k), (long long)(i % k), (long long)ids[i], (long long)ref[i], o ? o->threads : 0,
                     o ? (int)o->parallel : 0, (long long)chunk);
    mg_test_assert_close("knn scores", sc, rsc->data, (size_t)(nq * k), atol, 0);
    free(ids);
    free(sc);
}

static void test_knn_matches_numpy(void **state) {
    (void)state;
    mg_npy db, q, rid, rsc;
    mg_test_load("knn_db", &db);
    mg_test_load("knn_q", &q);
    mg_test_load_as("knn_ids", MG_DTYPE_I64, &rid);
    mg_test_load("knn_scores", &rsc);
    int k = (int)rid.shape[1];
    /* Scores: float32 dot products of unit vectors in 96-d vs float64; worst case error is
     * d * eps32 ~ 1e-5, typical 1e-7. The generator keeps rank gaps > 1e-4, so ids must match. */
    const double atol = 1e-5;
    mg_knn_opts def = {0};
    mg_knn_opts one = {.threads = 1};
    mg_knn_opts two = {.threads = 2, .q_block = 7, .db_block = 100};
    mg_knn_opts blas = {.threads = 2, .parallel = MG_KNN_PAR_BLAS, .q_block = 16, .db_block = 512};
    check_knn(&db, &q, k, &rid, &rsc, &def, 0, atol);
    check_knn(&db, &q, k, &rid, &rsc, &one, 0, atol);
    check_knn(&db, &q, k, &rid, &rsc, &two, 0, atol);
    check_knn(&db, &q, k, &rid, &rsc, &blas, 0, atol);
    check_knn(&db, &q, k, &rid, &rsc, &two, 777, atol); /* database streamed in uneven chunks */
    mg_npy_free(&db);
    mg_npy_free(&q);
    mg_npy_free(&rid);
    mg_npy_free(&rsc);
}

static void test_knn_ties_follow_rule(void **state) {
    (void)state;
    mg_npy db, q, rid, rsc;
    mg_test_load("tie_db", &db);
    mg_test_load("tie_q", &q);
    mg_test_load_as("tie_ids", MG_DTYPE_I64, &rid);
    mg_test_load("tie_scores", &rsc);
    int k = (int)rid.shape[1];
    /* Multiples of 1/8 in 16-d: every score is exact in float32, so ties are exact and the
     * numpy order (score desc, index asc) must be reproduced exactly, whatever the blocking. */
    mg_knn_opts two = {.threads = 2, .q_block = 5, .db_block = 37};
    mg_knn_opts blas = {.threads = 2, .parallel = MG_KNN_PAR_BLAS, .db_block = 64};
    check_knn(&db, &q, k, &rid, &rsc, NULL, 0, 0.0);
    check_knn(&db, &q, k, &rid, &rsc, &two, 0, 0.0);
    check_knn(&db, &q, k, &rid, &rsc, &blas, 0, 0.0);
    check_knn(&db, &q, k, &rid, &rsc, &two, 41, 0.0);
    mg_npy_free(&db);
    mg_npy_free(&q);
    mg_npy_free(&rid);
    mg_npy_free(&rsc);
}

/* Compares P [d, cols] with the float64 reference column by column, up to the eigenvector sign. */
static void check_P_up_to_sign(const float *P, int64_t ld, const double *ref, int64_t ld_ref, int64_t d, int64_t cols) {
    for (int64_t j = 0; j < cols; j++) {
        double dot = 0, mx = 0;
        for (int64_t i = 0; i < d; i++) {
            dot += P[i * ld + j] * ref[i * ld_ref + j];
            mx = fmax(mx, fabs(ref[i * ld_ref + j]));
        }
        double sgn = dot < 0 ? -1 : 1;
        for (int64_t i = 0; i < d; i++) {
            /* P is stored in float32 (rel. 6e-8) from eigenvectors whose float64 error is
             * ~1e-16 * lambda_max / gap (gaps >= 10% here): 1e-5 of the column scale is generous. */
            double err = fabs(P[i * ld + j] - sgn * ref[i * ld_ref + j]);
            if (err > 1e-5 * mx)
                fail_msg("whiten P[%lld, %lld]: got %.9g, numpy %.9g (sign %g), column max %g", (long long)i,
                         (long long)j, (double)P[i * ld + j], ref[i * ld_ref + j], sgn, mx);
        }
    }
}

static void test_whiten_matches_numpy(void **state) {
    (void)state;
    mg_npy x, y;
    mg_test_load("wh_x", &x);
    mg_test_load("wh_y", &y);
    int64_t n = x.shape[0], d = x.shape[1], ny = y.shape[0];
    int64_t dims[2] = {d, 24};
    for (int t = 0; t < 2; t++) {
        int64_t dim = dims[t];
        char name[64];
        mg_npy mean, lam, P, gram;
        snprintf(name, sizeof name, "wh_mean_%lld", (long long)dim);
        mg_test_load(name, &mean);
        snprintf(name, sizeof name, "wh_lam_%lld", (long long)dim);
        mg_test_load_as(name, MG_DTYPE_F64, &lam);
        snprintf(name, sizeof name, "wh_P_%lld", (long long)dim);
        mg_test_load_as(name, MG_DTYPE_F64, &P);
        snprintf(name, sizeof name, "wh_gram_%lld", (long long)dim);
        mg_test_load_as(name, MG_DTYPE_F64, &gram);
        mg_whiten w;
        mg_assert_ok(mg_whiten_fit(x.data, n, d, t == 0 ? 0 : dim, 0, &w));
        assert_int_equal(w.dim_in, d);
        assert_int_equal(w.dim_out, dim);
        assert_int_equal(w.n_floored, 0);
        /* mean: float64 sums of the same float32 data, rounded to float32 (|m| <= 1: 1e-7). */
        mg_test_assert_close("whiten mean", w.mean, mean.data, (size_t)d, 1e-7, 1e-6);
        /* eigenvalues: dsyevd vs numpy eigh of the same float64 covariance (both backward stable:
         * error ~ 1e-15 * lambda_max = 4e-15). */
        mg_test_assert_close_f64("whiten eigenvalues", w.eigenvalues, lam.data, (size_t)dim, 1e-12, 1e-9);
        check_P_up_to_sign(w.P, dim, P.data, dim, d, dim);
        /* Whitened, renormalised test vectors: compare the Gram matrix (sign-invariant). Entries
         * are cosines of float32 unit vectors: 1e-5 covers float32 projection rounding. */
        float *out = malloc(sizeof(float) * (size_t)(ny * dim));
        mg_assert_ok(mg_whiten_apply(&w, y.data, ny, out));
        double *g = malloc(sizeof(double) * (size_t)(ny * ny));
        for (int64_t a = 0; a < ny; a++)
            for (int64_t b = 0; b < ny; b++) {
                double s = 0;
                for (int64_t j = 0; j < dim; j++) s += (double)out[a * dim + j] * out[b * dim + j];
                g[a * ny + b] = s;
            }
        double gerr = mg_test_assert_close_f64("whitened gram", g, gram.data, (size_t)(ny * ny), 1e-5, 0);
        printf("whitened gram (D'=%lld): max abs error %.3g\n", (long long)dim, gerr);
        free(out);
        free(g);
        mg_whiten_free(&w);
        mg_npy_free(&mean);
        mg_npy_free(&lam);
        mg_npy_free(&P);
        mg_npy_free(&gram);
    }
    mg_npy_free(&x);
    mg_npy_free(&y);
}

static void test_whiten_rank_deficient(void **state) {
    (void)state;
    mg_npy x, lam, P;
    mg_test_load("rd_x", &x);
    mg_test_load_as("rd_lam", MG_DTYPE_F64, &lam);
    mg_test_load_as("rd_P", MG_DTYPE_F64, &P);
    int64_t n = x.shape[0], d = x.shape[1], r = P.shape[1]; /* rank n - 1 = 19 */
    mg_whiten w;
    mg_assert_ok(mg_whiten_fit(x.data, n, d, 0, 0, &w));
    /* The d - r null-space eigenvalues are ~1e-16 of the largest: all must hit the floor. */
    assert_int_equal(w.n_floored, d - r);
    for (int64_t j = 0; j < w.dim_out; j++) assert_true(isfinite(w.P[j]));
    mg_test_assert_close_f64("rank-deficient eigenvalues", w.eigenvalues, lam.data, (size_t)r, 1e-12, 1e-9);
    check_P_up_to_sign(w.P, d, P.data, r, d, r);
    mg_whiten_free(&w);
    mg_npy_free(&x);
    mg_npy_free(&lam);
    mg_npy_free(&P);
}

static void test_fold_classifier(void **state) {
    (void)state;
    mg_npy tr, W, b, te, ref, am;
    mg_test_load("fold_train", &tr);
    mg_test_load("fold_W", &W);
    mg_test_load("fold_b", &b);
    mg_test_load("fold_test", &te);
    mg_test_load_as("fold_scaled_logits", MG_DTYPE_F64, &ref);
    mg_test_load_as("fold_argmax", MG_DTYPE_I64, &am);
    int64_t n = tr.shape[0], D = tr.shape[1], K = W.shape[0], nt = te.shape[0], Da = D + 1;
    float *aug = malloc(sizeof(float) * (size_t)((n > nt ? n : nt) * Da));
    for (int64_t i = 0; i < n; i++) mg_whiten_augment((float *)tr.data + i * D, D, aug + i * Da);
    mg_whiten w;
    mg_assert_ok(mg_whiten_fit(aug, n, Da, 0, 0, &w));
    float *W2 = malloc(sizeof(float) * (size_t)(K * (Da + 1))), b2[64];
    mg_assert_ok(mg_whiten_fold_classifier(&w, W.data, b.data, K, D, W2, b2));
    for (int64_t i = 0; i < nt; i++) mg_whiten_augment((float *)te.data + i * D, D, aug + i * Da);
    float *phi = malloc(sizeof(float) * (size_t)(nt * Da));
    mg_assert_ok(mg_whiten_project(&w, aug, nt, phi));
    double *logits = malloc(sizeof(double) * (size_t)(nt * K));
    const int64_t *ra = am.data;
    const double *rl = ref.data;
    for (int64_t i = 0; i < nt; i++) {
        int64_t best = 0;
        for (int64_t c = 0; c < K; c++) {
            double s = b2[c];
            for (int64_t j = 0; j < Da; j++) s += (double)W2[c * Da + j] * phi[i * Da + j];
            logits[i * K + c] = s;
            if (s > logits[i * K + best]) best = c;
        }
        /* arg-max must be the numpy one whenever numpy's top-2 margin exceeds the tolerance below. */
        double m1 = -INFINITY, m2 = -INFINITY;
        for (int64_t c = 0; c < K; c++) {
            double v = rl[i * K + c];
            if (v > m1) {
                m2 = m1;
                m1 = v;
            } else if (v > m2) {
                m2 = v;
            }
        }
        if (m1 - m2 > 1e-3) assert_int_equal(best, ra[i]);
    }
    /* Folded logits == (W e + b) / ||[e, 1]|| (the positive per-sample factor). Error sources:
     * float32 rounding of P, Phi and W' (relative 6e-8 each) times sum |W'_j Phi_j| (~10 here),
     * accumulated in double: a few 1e-7 observed; 1e-5 leaves margin for other BLAS kernels. */
    double ferr = mg_test_assert_close_f64("folded logits", logits, rl, (size_t)(nt * K), 1e-5, 1e-5);
    printf("folded logits: max abs error %.3g\n", ferr);
    /* Reduced whitenings cannot be folded exactly. */
    mg_whiten wr;
    mg_assert_ok(mg_whiten_fit(aug, nt, Da, 8, 0, &wr));
    assert_int_equal(mg_whiten_fold_classifier(&wr, W.data, b.data, K, D, W2, b2), MG_ERR_INVALID_ARG);
    mg_whiten_free(&wr);
    free(aug);
    free(W2);
    free(phi);
    free(logits);
    mg_whiten_free(&w);
    mg_npy_free(&tr);
    mg_npy_free(&W);
    mg_npy_free(&b);
    mg_npy_free(&te);
    mg_npy_free(&ref);
    mg_npy_free(&am);
}

static void test_fold_classifier_plain(void **state) {
    (void)state;
    mg_npy tr, W, b, te, ref;
    mg_test_load("fold_train", &tr);
    mg_test_load("fold_W", &W);
    mg_test_load("fold_b", &b);
    mg_test_load("fold_test", &te);
    mg_test_load_as("fold_scaled_logits_plain", MG_DTYPE_F64, &ref);
    int64_t n = tr.shape[0], D = tr.shape[1], K = W.shape[0], nt = te.shape[0];
    float *x = malloc(sizeof(float) * (size_t)((n > nt ? n : nt) * D));
    memcpy(x, tr.data, sizeof(float) * (size_t)(n * D));
    mg_knn_normalize_rows(x, n, D, NULL); /* the whitening is learned on e / ||e|| */
    mg_whiten w;
    mg_assert_ok(mg_whiten_fit(x, n, D, 0, 0, &w));
    float *W2 = malloc(sizeof(float) * (size_t)(K * (D + 1))), b2[64];
    mg_assert_ok(mg_whiten_fold_classifier(&w, W.data, b.data, K, D, W2, b2));
    memcpy(x, te.data, sizeof(float) * (size_t)(nt * D));
    mg_knn_normalize_rows(x, nt, D, NULL);
    float *phi = malloc(sizeof(float) * (size_t)(nt * D));
    mg_assert_ok(mg_whiten_project(&w, x, nt, phi));
    double *logits = malloc(sizeof(double) * (size_t)(nt * K));
    const float *e = te.data;
    for (int64_t i = 0; i < nt; i++) {
        double ss = 0;
        for (int64_t j = 0; j < D; j++) ss += (double)e[i * D + j] * e[i * D + j];
        double inv_norm = 1.0 / sqrt(ss); /* the extra classifier input 1/||e|| */
        for (int64_t c = 0; c < K; c++) {
            double s = b2[c] + (double)W2[c * (D + 1) + D] * inv_norm;
            for (int64_t j = 0; j < D; j++) s += (double)W2[c * (D + 1) + j] * phi[i * D + j];
            logits[i * K + c] = s;
        }
    }
    /* Same error budget as the augmented form (float32 P, Phi, W'; double accumulation). */
    double ferr = mg_test_assert_close_f64("folded logits (plain)", logits, ref.data, (size_t)(nt * K), 1e-5, 1e-5);
    printf("folded logits (plain): max abs error %.3g\n", ferr);
    free(x);
    free(W2);
    free(phi);
    free(logits);
    mg_whiten_free(&w);
    mg_npy_free(&tr);
    mg_npy_free(&W);
    mg_npy_free(&b);
    mg_npy_free(&te);
    mg_npy_free(&ref);
}

static void test_holidays_map(void **state) {
    (void)state;
    char path[4096];
    oracle_path(path, sizeof path, "holidays_names.txt");
    char **names;
    int64_t n;
    mg_assert_ok(mg_retrieval_read_list(path, &names, &n));
    mg_retrieval_gt gt;
    mg_assert_ok(mg_retrieval_gt_holidays(names, n, &gt));
    mg_npy ranked, apt, aps, map;
    mg_test_load_as("hol_ranked", MG_DTYPE_I64, &ranked);
    mg_test_load_as("hol_ap_trap", MG_DTYPE_F64, &apt);
    mg_test_load_as("hol_ap_std", MG_DTYPE_F64, &aps);
    mg_test_load_as("hol_map_trap", MG_DTYPE_F64, &map);
    assert_int_equal(gt.n_queries, ranked.shape[0]);
    double *ap = malloc(sizeof(double) * (size_t)gt.n_queries), m;
    /* Same double arithmetic as numpy up to summation order: 1e-12. */
    mg_assert_ok(mg_retrieval_map(&gt, ranked.data, ranked.shape[1], MG_AP_TRAPEZOID, ap, &m));
    mg_test_assert_close_f64("holidays AP (trapezoid)", ap, apt.data, (size_t)gt.n_queries, 1e-12, 0);
    mg_test_assert_close_f64("holidays mAP", &m, map.data, 1, 1e-12, 0);
    mg_assert_ok(mg_retrieval_map(&gt, ranked.data, ranked.shape[1], MG_AP_STANDARD, ap, &m));
    mg_test_assert_close_f64("holidays AP (standard)", ap, aps.data, (size_t)gt.n_queries, 1e-12, 0);
    free(ap);
    mg_retrieval_gt_free(&gt);
    mg_retrieval_free_list(names, n);
    mg_npy_free(&ranked);
    mg_npy_free(&apt);
    mg_npy_free(&aps);
    mg_npy_free(&map);
}

static void test_ukbench_ns(void **state) {
    (void)state;
    char path[4096];
    oracle_path(path, sizeof path, "ukb_names.txt");
    char **names;
    int64_t n;
    mg_assert_ok(mg_retrieval_read_list(path, &names, &n));
    int64_t *group = malloc(sizeof(int64_t) * (size_t)n);
    mg_assert_ok(mg_retrieval_ukbench_groups(names, n, group));
    mg_npy ranked, ns;
    mg_test_load_as("ukb_ranked", MG_DTYPE_I64, &ranked);
    mg_test_load_as("ukb_ns", MG_DTYPE_F64, &ns);
    double got;
    mg_assert_ok(mg_retrieval_ns_score(group, n, group, n, ranked.data, ranked.shape[1], &got));
    mg_test_assert_close_f64("UKBench N-S", &got, ns.data, 1, 1e-12, 0); /* integer count / n */
    free(group);
    mg_retrieval_free_list(names, n);
    mg_npy_free(&ranked);
    mg_npy_free(&ns);
}

static void test_list_mode(void **state) {
    (void)state;
    char qp[4096], dp[4096], gp[4096];
    oracle_path(qp, sizeof qp, "list_queries.txt");
    oracle_path(dp, sizeof dp, "list_db.txt");
    oracle_path(gp, sizeof gp, "list_gt.tsv");
    char **qn, **dn;
    int64_t nq, nd;
    mg_assert_ok(mg_retrieval_read_list(qp, &qn, &nq));
    mg_assert_ok(mg_retrieval_read_list(dp, &dn, &nd));
    mg_retrieval_gt gt;
    mg_assert_ok(mg_retrieval_gt_parse(gp, qn, nq, dn, nd, &gt));
    mg_npy ranked, ref;
    mg_test_load_as("list_ranked", MG_DTYPE_I64, &ranked);
    mg_test_load_as("list_ap_trap", MG_DTYPE_F64, &ref);
    double ap[16], m;
    mg_assert_ok(mg_retrieval_map(&gt, ranked.data, ranked.shape[1], MG_AP_TRAPEZOID, ap, &m));
    mg_test_assert_close_f64("list-mode AP", ap, ref.data, (size_t)nq, 1e-12, 0);
    mg_retrieval_gt_free(&gt);
    mg_retrieval_free_list(qn, nq);
    mg_retrieval_free_list(dn, nd);
    mg_npy_free(&ranked);
    mg_npy_free(&ref);
}

int main(void) {
    if (mg_test_oracle_unavailable()) return MG_TEST_SKIP;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_knn_matches_numpy),   cmocka_unit_test(test_knn_ties_follow_rule),
        cmocka_unit_test(test_whiten_matches_numpy), cmocka_unit_test(test_whiten_rank_deficient),
        cmocka_unit_test(test_fold_classifier),     cmocka_unit_test(test_fold_classifier_plain),
        cmocka_unit_test(test_holidays_map),
        cmocka_unit_test(test_ukbench_ns),          cmocka_unit_test(test_list_mode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
