/* copy_eval.h: the augmented-copy retrieval protocol: each of n_queries images, strongly augmented
 * (the training transform at full strength), must find its own original among n_db originals
 * (test transform). This is the proxy task the recipe uses to choose p* (§1.7a) and the retrieval
 * half of the Fashion-MNIST demo. Each query has exactly one relevant database item, so its
 * average precision is 1 / (1 + rank of the original) (standard, non-interpolated AP). */
#ifndef MULTIGRAIN_COPY_EVAL_H
#define MULTIGRAIN_COPY_EVAL_H

#include <stdint.h>

#include "multigrain/data.h"
#include "multigrain/model.h"
#include "multigrain/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mg_copy_eval_opts {
    int64_t n_db;        /* originals: the first n_db images of the dataset */
    int64_t n_queries;   /* queries: augmented copies of the first n_queries images (<= n_db) */
    int copies;          /* augmented copies per query image (each a query; the recipe's proxy uses 5) */
    int size;            /* test crop size of the originals and crop size of the queries */
    double crop_fraction; /* originals: 0 = classic test crop (short side int(256/224*size)), else
                           * short side floor(size / crop_fraction), centre crop size */
    double scale_min;    /* RandomResizedCrop smallest area of the queries (strength) */
    mg_aug_level level;  /* query augmentation (MG_AUG_FULL: crop, flip, jitter, lighting) */
    int batch;
    int workers;
    uint64_t seed;
    const char *save_db; /* optional .npy path for the database embeddings (NULL: not saved) */
} mg_copy_eval_opts;

void mg_copy_eval_opts_default(mg_copy_eval_opts *o);

typedef struct mg_copy_eval_result {
    double map;       /* mean AP over the queries (all copies) */
    double recall1;   /* fraction of queries whose nearest original is their own */
    int64_t n_db, n_queries; /* n_queries counts every copy */
} mg_copy_eval_result;

mg_status mg_copy_eval(mg_model *m, mg_dataset *ds, const mg_copy_eval_opts *o, mg_copy_eval_result *res);

#ifdef __cplusplus
}
#endif
#endif
