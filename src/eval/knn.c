/* knn.c: exact cosine k-NN by blocked sgemm with a bounded top-k heap per query (see knn.h). */
#include "multigrain/knn.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/threadpool.h"
#include "multigrain/runtime.h"

#define KNN_DEFAULT_QB 1024
#define KNN_DEFAULT_DBB 2048

struct mg_knn {
    const float *q;
    int64_t nq, d;
    int k;
    int64_t qb, dbb;
    mg_knn_parallel par;
    mg_pool *pool;     /* pool used for TASKS mode */
    mg_pool *own_pool; /* created when opts->threads differs from the global pool */
    int threads;
    int n_slices;     /* independent top-k sets per query (one per pool thread), merged at the end */
    float *hs;        /* [n_slices][nq][k] heap scores */
    int64_t *hid;     /* [n_slices][nq][k] heap ids */
    int *hcnt;        /* [n_slices][nq] heap sizes */
    float **scratch;  /* per pool thread: qb * dbb floats */
    int64_t added;    /* database rows scanned so far */
};

/* a ranks below b: lower score, or the same score and a higher database index. */
static inline int knn_worse(float sa, int64_t ia, float sb, int64_t ib) {
    return sa < sb || (sa == sb && ia > ib);
}

static void heap_sift_down(float *s, int64_t *id, int n, int i) {
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && knn_worse(s[l], id[l], s[m], id[m])) m = l;
        if (r < n && knn_worse(s[r], id[r], s[m], id[m])) m = r;
        if (m == i) return;
        float ts = s[i]; s[i] = s[m]; s[m] = ts;
        int64_t ti = id[i]; id[i] = id[m]; id[m] = ti;
        i = m;
    }
}

static void heap_push(float *s, int64_t *id, int *cnt, int k, float v, int64_t vid) {
    int n = *cnt;
    if (n < k) {
        int i = n;
        s[i] = v;
        id[i] = vid;
        while (i > 0) {
            int p = (i - 1) / 2;
            if (!knn_worse(s[i], id[i], s[p], id[p])) break;
            float ts = s[i]; s[i] = s[p]; s[p] = ts;
            int64_t ti = id[i]; id[i] = id[p]; id[p] = ti;
            i = p;
        }
        *cnt = n + 1;
        return;
    }
    if (!knn_worse(s[0], id[0], v, vid)) return;
    s[0] = v;
    id[0] = vid;
    heap_sift_down(s, id, k, 0);
}

/* Folds one row of similarities (nb database rows starting at id0) into a query's heap. */
static void select_row(float *hs, int64_t *hid, int *cnt, int k, const float *row, int64_t nb, int64_t id0) {
    int64_t j = 0;
    for (; j < nb && *cnt < k; j++) heap_push(hs, hid, cnt, k, row[j], id0 + j);
    float thr = hs[0];
    for (; j < nb; j++) {
        float v = row[j];
        if (v < thr) continue; /* fast reject: most candidates */
        heap_push(hs, hid, cnt, k, v, id0 + j);
        thr = hs[0];
    }
}

mg_status mg_knn_init(mg_knn **out, const float *queries, int64_t nq, int64_t d, int k,
                      const mg_knn_opts *opts) {
    *out = NULL;
    if (!queries || nq <= 0 || d <= 0)
        return MG_FAIL(MG_ERR_INVALID_ARG, "knn: expected queries [nq > 0, d > 0], found [%lld, %lld]",
                       (long long)nq, (long long)d);
    if (k <= 0) return MG_FAIL(MG_ERR_INVALID_ARG, "knn: k must be >= 1, found %d", k);
    if (d > INT32_MAX / 4) return MG_FAIL(MG_ERR_INVALID_ARG, "knn: dimension %lld is too large", (long long)d);
    mg_knn_opts o = {0};
    if (opts) o = *opts;
    if (o.q_block < 0 || o.db_block < 0 || o.threads < 0 ||
        (o.parallel != MG_KNN_PAR_TASKS && o.parallel != MG_KNN_PAR_BLAS))
        return MG_FAIL(MG_ERR_INVALID_ARG, "knn: invalid options (threads %d, q_block %lld, db_block %lld)",
                       o.threads, (long long)o.q_block, (long long)o.db_block);
    mg_knn *s = calloc(1, sizeof *s);
    if (!s) return MG_FAIL(MG_ERR_NOMEM, "knn: out of memory");
    s->q = queries;
    s->nq = nq;
    s->d = d;
    s->k = k;
    s->qb = o.q_block ? o.q_block : KNN_DEFAULT_QB;
    if (s->qb > nq) s->qb = nq;
    s->dbb = o.db_block ? o.db_block : KNN_DEFAULT_DBB;
    s->par = o.parallel;
    mg_pool *g = mg_pool_global();
    if (o.threads == 0 || o.threads == mg_pool_threads(g)) {
        s->pool = g;
    } else {
        mg_status st = mg_pool_init(&s->own_pool, o.threads);
        if (st != MG_OK) {
            free(s);
            return st;
        }
        s->pool = s->own_pool;
    }
    s->threads = mg_pool_threads(s->pool);
    s->n_slices = s->par == MG_KNN_PAR_TASKS ? s->threads : 1;
    size_t nheap = (size_t)s->n_slices * (size_t)nq * (size_t)k;
    s->hs = malloc(nheap * sizeof *s->hs);
    s->hid = malloc(nheap * sizeof *s->hid);
    s->hcnt = calloc((size_t)s->n_slices * (size_t)nq, sizeof *s->hcnt);
    int nscratch = s->par == MG_KNN_PAR_TASKS ? s->threads : 1;
    s->scratch = calloc((size_t)nscratch, sizeof *s->scratch);
    int ok = s->hs && s->hid && s->hcnt && s->scratch;
    for (int t = 0; ok && t < nscratch; t++) {
        s->scratch[t] = malloc((size_t)s->qb * (size_t)s->dbb * sizeof(float));
        ok = s->scratch[t] != NULL;
    }
    if (!ok) {
        mg_knn_free(s);
        return MG_FAIL(MG_ERR_NOMEM, "knn: out of memory for %lld queries x k=%d (x%d slices)", (long long)nq, k,
                       s->n_slices);
    }
    *out = s;
    return MG_OK;
}

void mg_knn_free(mg_knn *s) {
    if (!s) return;
    if (s->scratch) {
        int nscratch = s->par == MG_KNN_PAR_TASKS ? s->threads : 1;
        for (int t = 0; t < nscratch; t++) free(s->scratch[t]);
        free(s->scratch);
    }
    free(s->hs);
    free(s->hid);
    free(s->hcnt);
    mg_pool_free(s->own_pool);
    free(s);
}

typedef struct knn_job {
    mg_knn *s;
    const float *db;
    int64_t n, first_id;
    int64_t n_qblocks;
} knn_job;

/* Similarities of query rows [q0, q0+mq) against database rows [r0, r0+nb), folded into the top-k
 * set `slice` (the pool thread's own set, so no two threads ever write the same heap). */
static void knn_block(mg_knn *s, float *S, int slice, const float *db, int64_t q0, int64_t mq, int64_t r0,
                      int64_t nb, int64_t first_id) {
    int64_t d = s->d;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)mq, (int)nb, (int)d, 1.0f, s->q + q0 * d, (int)d,
                db + r0 * d, (int)d, 0.0f, S, (int)nb);
    size_t base = (size_t)slice * (size_t)s->nq;
    for (int64_t i = 0; i < mq; i++) {
        size_t qi = base + (size_t)(q0 + i);
        select_row(s->hs + qi * (size_t)s->k, s->hid + qi * (size_t)s->k, &s->hcnt[qi], s->k, S + i * nb, nb,
                   first_id + r0);
    }
}

/* Task = (database block, query block), database-major so that the threads work on the same
 * database block at the same time (shared cache). The result does not depend on which thread ran
 * which task: block boundaries are fixed, and the final merge is a total order. */
static void knn_task(void *ctx, int task, int thread) {
    knn_job *j = ctx;
    mg_knn *s = j->s;
    int64_t dbi = task / j->n_qblocks, qbi = task % j->n_qblocks;
    int64_t q0 = qbi * s->qb;
    int64_t mq = s->nq - q0 < s->qb ? s->nq - q0 : s->qb;
    int64_t r0 = dbi * s->dbb;
    int64_t nb = j->n - r0 < s->dbb ? j->n - r0 : s->dbb;
    knn_block(s, s->scratch[thread], thread, j->db, q0, mq, r0, nb, j->first_id);
}

mg_status mg_knn_add(mg_knn *s, const float *db, int64_t n, int64_t first_id) {
    if (!s || (!db && n > 0) || n < 0 || first_id < 0)
        return MG_FAIL(MG_ERR_INVALID_ARG, "knn: invalid database chunk (%lld rows from %lld)", (long long)n,
                       (long long)first_id);
    if (n == 0) return MG_OK;
    int64_t n_qblocks = (s->nq + s->qb - 1) / s->qb;
    if (s->par == MG_KNN_PAR_TASKS) {
        mg_blas_serial();
        /* Pool runs over database super-chunks keep the task count of one run below 2^20. */
        int64_t per_run = ((int64_t)1 << 20) / n_qblocks;
        if (per_run < 1) per_run = 1;
        int64_t rows_per_run = per_run * s->dbb;
        for (int64_t c0 = 0; c0 < n; c0 += rows_per_run) {
            int64_t cn = n - c0 < rows_per_run ? n - c0 : rows_per_run;
            knn_job j = {s, db + c0 * s->d, cn, first_id + c0, n_qblocks};
            int64_t n_dbblocks = (cn + s->dbb - 1) / s->dbb;
            mg_pool_run(s->pool, (int)(n_dbblocks * n_qblocks), knn_task, &j);
        }
    } else {
        mg_blas_parallel(s->threads);
        for (int64_t qbi = 0; qbi < n_qblocks; qbi++) {
            int64_t q0 = qbi * s->qb;
            int64_t mq = s->nq - q0 < s->qb ? s->nq - q0 : s->qb;
            for (int64_t r0 = 0; r0 < n; r0 += s->dbb) {
                int64_t nb = n - r0 < s->dbb ? n - r0 : s->dbb;
                knn_block(s, s->scratch[0], 0, db, q0, mq, r0, nb, first_id);
            }
        }
    }
    mg_blas_serial(); /* idle OpenBLAS workers spin: back to one thread (runtime.h) */
    s->added += n;
    return MG_OK;
}

typedef struct knn_pair {
    float s;
    int64_t id;
} knn_pair;

static int knn_pair_cmp(const void *a, const void *b) {
    const knn_pair *x = a, *y = b;
    if (x->s != y->s) return x->s > y->s ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

mg_status mg_knn_result(const mg_knn *s, int64_t *ids, float *scores) {
    if (!s || !ids) return MG_FAIL(MG_ERR_INVALID_ARG, "knn: result needs an output buffer");
    if (s->added < s->k)
        return MG_FAIL(MG_ERR_INVALID_ARG, "knn: k=%d but only %lld database rows were added", s->k,
                       (long long)s->added);
    size_t cap = (size_t)s->n_slices * (size_t)s->k;
    knn_pair *tmp = malloc(cap * sizeof *tmp);
    if (!tmp) return MG_FAIL(MG_ERR_NOMEM, "knn: out of memory");
    for (int64_t q = 0; q < s->nq; q++) {
        size_t m = 0;
        for (int sl = 0; sl < s->n_slices; sl++) {
            size_t qi = (size_t)sl * (size_t)s->nq + (size_t)q;
            for (int i = 0; i < s->hcnt[qi]; i++) {
                tmp[m].s = s->hs[qi * (size_t)s->k + (size_t)i];
                tmp[m].id = s->hid[qi * (size_t)s->k + (size_t)i];
                m++;
            }
        }
        qsort(tmp, m, sizeof *tmp, knn_pair_cmp);
        MG_ASSERT(m >= (size_t)s->k);
        for (int r = 0; r < s->k; r++) {
            ids[q * s->k + r] = tmp[r].id;
            if (scores) scores[q * s->k + r] = tmp[r].s;
        }
    }
    free(tmp);
    return MG_OK;
}

mg_status mg_knn_search(const float *db, int64_t n, const float *queries, int64_t nq, int64_t d, int k,
                        const mg_knn_opts *opts, int64_t *ids, float *scores) {
    if (k <= 0 || k > n)
        return MG_FAIL(MG_ERR_INVALID_ARG, "knn: k must be in [1, %lld] (database rows), found %d", (long long)n, k);
    mg_knn *s;
    MG_TRY(mg_knn_init(&s, queries, nq, d, k, opts));
    mg_status st = mg_knn_add(s, db, n, 0);
    if (st == MG_OK) st = mg_knn_result(s, ids, scores);
    mg_knn_free(s);
    return st;
}

void mg_knn_normalize_rows(float *x, int64_t n, int64_t d, int64_t *n_zero) {
    int64_t zeros = 0;
    for (int64_t i = 0; i < n; i++) {
        float *r = x + i * d;
        double ss = 0;
        for (int64_t j = 0; j < d; j++) ss += (double)r[j] * r[j];
        if (ss == 0) {
            zeros++;
            continue;
        }
        double inv = 1.0 / sqrt(ss);
        for (int64_t j = 0; j < d; j++) r[j] = (float)(r[j] * inv);
    }
    if (n_zero) *n_zero = zeros;
}
