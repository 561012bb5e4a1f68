/* knn.h: exact cosine k-nearest-neighbour search of query embeddings against a database.
 *
 * Rows are float32 embeddings, assumed L2-normalised (cosine = dot product); mg_knn_normalize_rows()
 * normalises them when they are not. Scores are computed block by block with OpenBLAS sgemm
 * (query block x database block) and reduced on the fly into a bounded top-k per query, so the
 * Q x N similarity matrix is never materialised: working memory is
 *   threads * q_block * db_block floats  +  threads * Q * k (score, id) pairs,
 * independent of N. The database may be fed in chunks (mg_knn_add), e.g. streamed from disk.
 *
 * Tie rule (deterministic): results are ordered by decreasing score; two database rows with the
 * same float32 score are ordered by increasing database index (the lower index ranks first and
 * wins the last top-k place). Scores are the float32 results of sgemm; they can differ from a
 * float64 dot product by a few ulp, so "equal" means equal as computed here.
 * Inputs must be finite (the CLI checks; NaN scores have no defined rank). The default mode runs
 * on the thread pool: do not call mg_knn_add from inside a pool task (the pool is not re-entrant).
 * It also sets OpenBLAS to 1 thread while it runs (restored afterwards). */
#ifndef MULTIGRAIN_KNN_H
#define MULTIGRAIN_KNN_H

#include <stdbool.h>
#include <stdint.h>

#include "multigrain/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum mg_knn_parallel {
    /* Thread-pool tasks over (database block, query block), single-threaded sgemm inside each
     * task, selection right after each block on the same thread into that thread's own top-k
     * sets, merged at the end (default). */
    MG_KNN_PAR_TASKS = 0,
    /* One multi-threaded OpenBLAS sgemm per block, selection in the calling thread afterwards. */
    MG_KNN_PAR_BLAS = 1,
} mg_knn_parallel;

typedef struct mg_knn_opts {
    int threads;             /* 0 = mg_pool_global() thread count */
    int64_t q_block;         /* queries per sgemm block (0 = 1024) */
    int64_t db_block;        /* database rows per sgemm block (0 = 2048) */
    mg_knn_parallel parallel;
} mg_knn_opts;

typedef struct mg_knn mg_knn;

/* Prepares a search of nq queries [nq, d] (row-major; the pointer must stay valid until
 * mg_knn_free) for the k best database rows. opts may be NULL (defaults). */
mg_status mg_knn_init(mg_knn **out, const float *queries, int64_t nq, int64_t d, int k,
                      const mg_knn_opts *opts);
/* Scans database rows db[0..n) [n, d], whose global indices are first_id..first_id+n-1. */
mg_status mg_knn_add(mg_knn *s, const float *db, int64_t n, int64_t first_id);
/* Writes the result, rank-ordered per query: ids[q*k + r], scores[q*k + r] (scores may be NULL).
 * Fails when fewer than k database rows were added. */
mg_status mg_knn_result(const mg_knn *s, int64_t *ids, float *scores);
void mg_knn_free(mg_knn *s);

/* One-shot search: database [n, d], queries [nq, d]; 1 <= k <= n. */
mg_status mg_knn_search(const float *db, int64_t n, const float *queries, int64_t nq, int64_t d, int k,
                        const mg_knn_opts *opts, int64_t *ids, float *scores);

/* L2-normalises n rows of length d in place (accumulated in double). All-zero rows stay zero;
 * the number of such rows is returned in *n_zero (may be NULL). */
void mg_knn_normalize_rows(float *x, int64_t n, int64_t d, int64_t *n_zero);

#ifdef __cplusplus
}
#endif
#endif
