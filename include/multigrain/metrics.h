/* metrics.h: evaluation metrics: top-1/top-5 accuracy from logits, INRIA trapezoid and standard
 * average precision, mAP with the query removed from its own list (Holidays), the UKBench N-S
 * score, and the ground truth of the Holidays, UKBench and generic `list` retrieval benchmarks.
 *
 * AP (recipe §1.9, INRIA `score_ap_from_ranks_1`): with n_rel relevant images and the k-th
 * (0-based) relevant one found at 0-based rank r of the list (the query itself removed first):
 *   trapezoid: AP = sum_k (1/n_rel) * (p_before + p_after) / 2,
 *              p_before = k / r  (1 when r = 0),  p_after = (k + 1) / (r + 1);
 *   standard (non-interpolated): AP = (1/n_rel) * sum_k (k + 1) / (r + 1).
 * Relevant images absent from the list contribute 0. */
#ifndef MULTIGRAIN_METRICS_H
#define MULTIGRAIN_METRICS_H

#include <stdint.h>

#include "multigrain/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum mg_ap_kind { MG_AP_TRAPEZOID = 0, MG_AP_STANDARD = 1 } mg_ap_kind;

/* Counts samples whose label is among the 1 / 5 best logits (ties: lower class index ranks first).
 * logits [n, n_classes]; labels in [0, n_classes) or the call fails naming the sample. */
mg_status mg_metrics_topk(const float *logits, int64_t n, int64_t n_classes, const int64_t *labels,
                          int64_t *correct1, int64_t *correct5);

/* AP from the sorted 0-based ranks of the n_found relevant images that were retrieved. */
double mg_ap_from_ranks(const int64_t *ranks, int64_t n_found, int64_t n_relevant, mg_ap_kind kind);

/* AP of one query: `ranked` holds len database indices, best first; `self` (or -1) is removed from
 * the list before ranks are counted and from the relevant set. Fails when no relevant image remains. */
mg_status mg_retrieval_query_ap(const int64_t *ranked, int64_t len, int64_t self, const int64_t *relevant,
                                int64_t n_relevant, mg_ap_kind kind, double *ap);

/* Ground truth: for each query, its own database index (or -1) and its relevant database indices. */
typedef struct mg_retrieval_gt {
    int64_t n_queries;
    int64_t n_db;
    int64_t *query_self; /* [n_queries] */
    int64_t *rel_start;  /* [n_queries + 1] offsets into rel */
    int64_t *rel;        /* relevant database indices (never the query itself) */
} mg_retrieval_gt;

void mg_retrieval_gt_free(mg_retrieval_gt *gt);

/* mAP over gt's queries; ranked [n_queries, len] (row q = ranking of query q). ap_per_query may be NULL. */
mg_status mg_retrieval_map(const mg_retrieval_gt *gt, const int64_t *ranked, int64_t len, mg_ap_kind kind,
                           double *ap_per_query, double *map);

/* INRIA Holidays: names are the database images (paths allowed; the basename must start with the
 * 6-digit image id). Image id / 100 is the group; the image whose id % 100 == 0 is the group's
 * query; the other group members are its relevant images. Queries follow database order. */
mg_status mg_retrieval_gt_holidays(char *const *names, int64_t n, mg_retrieval_gt *gt);

/* UKBench: names "ukbenchNNNNN.jpg" (paths allowed); group = NNNNN / 4 written to group[n].
 * Fails if a group does not have exactly 4 members. Every image is a query. */
mg_status mg_retrieval_ukbench_groups(char *const *names, int64_t n, int64_t *group);
/* N-S score: mean over queries of the number of database images of the query's group among the
 * first 4 of its list (the query itself included, not removed). ranked [nq, len], len >= 4;
 * query_group[nq]; group[n_db]. */
mg_status mg_retrieval_ns_score(const int64_t *group, int64_t n_db, const int64_t *query_group, int64_t nq,
                                const int64_t *ranked, int64_t len, double *ns);

/* Reads a list file: one image path per line (blank lines ignored, trailing \r stripped). */
mg_status mg_retrieval_read_list(const char *path, char ***names, int64_t *n);
void mg_retrieval_free_list(char **names, int64_t n);

/* Generic list mode ground truth (docs/retrieval.md): every line of gt_path is
 * `query_path<TAB>relevant_path[<TAB>relevant_path...]`; every query of `queries` needs exactly one
 * line, every name must appear in the queries / database lists (else an error naming the line).
 * A query that is also in the database is removed from its own ranked list. */
mg_status mg_retrieval_gt_parse(const char *gt_path, char *const *queries, int64_t nq, char *const *db, int64_t ndb,
                                mg_retrieval_gt *gt);

#ifdef __cplusplus
}
#endif
#endif
