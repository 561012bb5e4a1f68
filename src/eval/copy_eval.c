/* copy_eval.c: augmented-copy retrieval (see include/multigrain/copy_eval.h). */
#include "multigrain/copy_eval.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "core/progress.h"
#include "multigrain/npy.h"

void mg_copy_eval_opts_default(mg_copy_eval_opts *o) {
    memset(o, 0, sizeof *o);
    o->n_db = 1000;
    o->n_queries = 1000;
    o->copies = 1;
    o->size = 224;
    o->scale_min = 0.25;
    o->level = MG_AUG_FULL;
    o->batch = 32;
    o->workers = 2;
    o->seed = 1;
}

/* Embeds the first n images of ds with the given transform into emb [n, dim]. */
static mg_status embed_set(mg_model *m, mg_dataset *ds, int64_t n, const mg_transform_cfg *tc, const mg_copy_eval_opts *o,
                           const char *label, float *emb) {
    int64_t saved_n = ds->n;
    ds->n = n;
    mg_loader_cfg lc;
    mg_loader_cfg_default(&lc, tc->train);
    lc.threads = o->workers > 0 ? o->workers : 1;
    lc.prefetch = 2;
    lc.transform = *tc;
    lc.sampler.batch = o->batch;
    lc.sampler.reps = 1;
    lc.sampler.len_factor = 1.0;
    lc.sampler.shuffle = false;
    lc.sampler.drop_last = false;
    lc.sampler.seed = o->seed;
    mg_loader *ld = NULL;
    mg_status s = mg_loader_init(&ld, ds, &lc);
    if (s == MG_OK) s = mg_loader_start_epoch(ld, 0);
    int dim = mg_model_embedding_dim(m);
    int64_t done = 0;
    mg_progress bar;
    mg_progress_init(&bar, label, n, "img");
    while (s == MG_OK) {
        const mg_batch *b = NULL;
        s = mg_loader_next(ld, &b);
        if (s != MG_OK || !b) break;
        mg_model_outputs out;
        s = mg_model_forward(m, MG_MODE_INFER, b->images, b->n, b->h, b->w, &out);
        if (s != MG_OK) break;
        for (int i = 0; i < b->n; i++) {
            /* rows by stream position: with shuffle off, position = dataset index */
            int64_t row = b->position[i];
            if (row >= 0 && row < n) memcpy(emb + (size_t)row * dim, out.embedding + (size_t)i * dim, (size_t)dim * sizeof(float));
        }
        done += b->n;
        mg_progress_update(&bar, done, NULL);
    }
    mg_progress_clear(&bar);
    mg_loader_free(ld);
    ds->n = saved_n;
    if (s == MG_OK && done != n)
        s = MG_FAIL(MG_ERR_INTERNAL, "copy retrieval: embedded %lld of %lld images", (long long)done, (long long)n);
    return s;
}

mg_status mg_copy_eval(mg_model *m, mg_dataset *ds, const mg_copy_eval_opts *o, mg_copy_eval_result *res) {
    memset(res, 0, sizeof *res);
    if (o->n_db < 2 || o->n_queries < 1 || o->n_queries > o->n_db || o->n_db > ds->n)
        return MG_FAIL(MG_ERR_INVALID_ARG,
                       "copy retrieval: expected 1 <= queries <= originals <= %lld images and originals >= 2, found "
                       "%lld queries and %lld originals",
                       (long long)ds->n, (long long)o->n_queries, (long long)o->n_db);
    if (o->crop_fraction < 0 || o->crop_fraction > 1)
        return MG_FAIL(MG_ERR_INVALID_ARG, "copy retrieval: crop fraction must be in (0, 1] (0 = classic), found %g",
                       o->crop_fraction);
    int dim = mg_model_embedding_dim(m);
    float *db = malloc((size_t)o->n_db * dim * sizeof *db);
    float *q = malloc((size_t)o->n_queries * dim * sizeof *q);
    float *scores = malloc((size_t)o->n_db * sizeof *scores);
    if (!db || !q || !scores) {
        free(db);
        free(q);
        free(scores);
        return MG_FAIL(MG_ERR_NOMEM, "copy retrieval: out of memory");
    }
    mg_transform_cfg test_tc, query_tc;
    mg_transform_cfg_default(&test_tc, false);
    test_tc.size = o->size;
    test_tc.eval_mode = MG_EVAL_CROP;
    test_tc.crop_fraction = o->crop_fraction;
    mg_transform_cfg_default(&query_tc, true);
    query_tc.size = o->size;
    query_tc.level = o->level;
    query_tc.rrc.scale_min = o->scale_min;
    mg_status s = embed_set(m, ds, o->n_db, &test_tc, o, "originals", db);
    if (s == MG_OK && o->save_db) {
        int64_t shape[2] = {o->n_db, dim};
        s = mg_npy_write(o->save_db, MG_DTYPE_F32, 2, shape, db);
    }
    double ap_sum = 0;
    int64_t hits = 0;
    int copies = o->copies > 0 ? o->copies : 1;
    for (int c = 0; s == MG_OK && c < copies; c++) {
        /* copy c of every query image: the same transform under another seed */
        mg_copy_eval_opts oc = *o;
        oc.seed = o->seed + (uint64_t)c * 0x9e3779b97f4a7c15ULL;
        s = embed_set(m, ds, o->n_queries, &query_tc, &oc, "queries", q);
        for (int64_t i = 0; s == MG_OK && i < o->n_queries; i++) {
            /* cosine similarity of query i to every original (rows are L2-normalised) */
            cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)o->n_db, dim, 1.0f, db, dim, q + (size_t)i * dim, 1, 0.0f,
                        scores, 1);
            float own = scores[i];
            int64_t rank = 0;
            /* ties are counted against the query (pessimistic) */
            for (int64_t j = 0; j < o->n_db; j++)
                if (j != i && scores[j] >= own) rank++;
            ap_sum += 1.0 / (double)(rank + 1);
            hits += rank == 0;
        }
    }
    if (s == MG_OK) {
        int64_t nq = o->n_queries * copies;
        res->map = ap_sum / (double)nq;
        res->recall1 = (double)hits / (double)nq;
        res->n_db = o->n_db;
        res->n_queries = nq;
    }
    free(db);
    free(q);
    free(scores);
    return s;
}
