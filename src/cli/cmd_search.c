/* cmd_search.c: `multigrain search`: exact cosine k-NN between two embedding files, written as TSV. */
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/fileio.h"
#include "core/log.h"
#include "core/parse.h"
#include "core/threadpool.h"
#include "eval/embfile.h"
#include "multigrain/knn.h"

typedef struct search_args {
    const char *index, *query, *out;
    int64_t k;
    int threads;
    bool normalize;
    mg_knn_parallel par;
} search_args;

enum { OPT_INDEX = 256, OPT_QUERY, OPT_NORMALIZE, OPT_BLAS };

static const struct option search_longopts[] = {
    {"index", required_argument, NULL, OPT_INDEX}, {"query", required_argument, NULL, OPT_QUERY},
    {"k", required_argument, NULL, 'k'},          {"out", required_argument, NULL, 'o'},
    {"threads", required_argument, NULL, 'j'},    {"normalize", no_argument, NULL, OPT_NORMALIZE},
    {"blas-threads", no_argument, NULL, OPT_BLAS}, {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0}};

static mg_status search_on_opt(void *ctx, int opt, const char *name, const char *arg) {
    search_args *a = ctx;
    switch (opt) {
    case OPT_INDEX: a->index = arg; return MG_OK;
    case OPT_QUERY: a->query = arg; return MG_OK;
    case 'o': a->out = arg; return MG_OK;
    case 'k': return mg_parse_int64(arg, 1, INT32_MAX, name, MG_ERR_USAGE, &a->k);
    case 'j': return mg_parse_int(arg, 0, 1024, name, MG_ERR_USAGE, &a->threads);
    case OPT_NORMALIZE: a->normalize = true; return MG_OK;
    case OPT_BLAS: a->par = MG_KNN_PAR_BLAS; return MG_OK;
    default: return MG_FAIL(MG_ERR_USAGE, "search: unhandled option %s", name);
    }
}

static mg_status search_write(FILE *fp, const int64_t *ids, const float *scores, int64_t nq, int k) {
    for (int64_t q = 0; q < nq; q++)
        for (int r = 0; r < k; r++)
            if (fprintf(fp, "%" PRId64 "\t%" PRId64 "\t%d\t%.9g\n", q, ids[q * k + r], r,
                        (double)scores[q * k + r]) < 0)
                return MG_FAIL(MG_ERR_IO, "search: cannot write results");
    return MG_OK;
}

static mg_status search_run(const search_args *a, mg_npy *db, mg_npy *q) {
    MG_TRY(mg_embfile_load("--index", a->index, db));
    MG_TRY(mg_embfile_load("--query", a->query, q));
    int64_t n = db->shape[0], d = db->shape[1], nq = q->shape[0];
    if (q->shape[1] != d)
        return MG_FAIL(MG_ERR_FORMAT, "dimension mismatch: --index %s has D=%lld but --query %s has D=%lld", a->index,
                       (long long)d, a->query, (long long)q->shape[1]);
    if (a->k > n)
        return MG_FAIL(MG_ERR_USAGE, "-k: expected at most %lld (the rows of --index %s), found %lld", (long long)n,
                       a->index, (long long)a->k);
    if (a->normalize) {
        int64_t z1, z2;
        mg_knn_normalize_rows(db->data, n, d, &z1);
        mg_knn_normalize_rows(q->data, nq, d, &z2);
        if (z1 || z2)
            mg_log_warn("search: %lld index and %lld query rows are all-zero (scores 0)", (long long)z1,
                        (long long)z2);
    }
    int k = (int)a->k;
    size_t nres = (size_t)nq * (size_t)k;
    int64_t *ids = malloc(nres * sizeof *ids);
    float *scores = malloc(nres * sizeof *scores);
    if (!ids || !scores) {
        free(ids);
        free(scores);
        return MG_FAIL(MG_ERR_NOMEM, "search: out of memory for %lld x %d results", (long long)nq, k);
    }
    mg_knn_opts o = {.threads = 0, .parallel = a->par};
    mg_status s = mg_knn_search(db->data, n, q->data, nq, d, k, &o, ids, scores);
    if (s == MG_OK) {
        if (a->out) {
            mg_atomic_file af;
            s = mg_atomic_file_open(&af, a->out);
            if (s == MG_OK) {
                s = search_write(af.fp, ids, scores, nq, k);
                if (s == MG_OK && ferror(af.fp)) s = MG_FAIL(MG_ERR_IO, "--out %s: write failed", a->out);
                if (s == MG_OK)
                    s = mg_atomic_file_commit(&af);
                else
                    mg_atomic_file_abort(&af);
            }
        } else {
            s = search_write(stdout, ids, scores, nq, k);
            if (s == MG_OK && fflush(stdout) != 0) s = MG_FAIL(MG_ERR_IO, "search: cannot write to stdout");
        }
    }
    free(ids);
    free(scores);
    return s;
}

mg_status mg_cmd_search(int argc, char **argv) {
    const mg_command *cmd = mg_command_find("search");
    search_args a = {0};
    int first = 0, help = 0;
    MG_TRY(mg_cli_parse(cmd, argc, argv, "k:o:j:", search_longopts, search_on_opt, &a, &first, &help));
    if (help) return MG_OK;
    if (first < argc) return MG_FAIL(MG_ERR_USAGE, "search: unexpected argument '%s'", argv[first]);
    if (!a.index) return MG_FAIL(MG_ERR_USAGE, "search: --index DB.npy is required");
    if (!a.query) return MG_FAIL(MG_ERR_USAGE, "search: --query Q.npy is required");
    if (a.k == 0) return MG_FAIL(MG_ERR_USAGE, "search: -k K is required");
    MG_TRY(mg_pool_global_set_threads(a.threads));
    mg_npy db = {0}, q = {0};
    mg_status s = search_run(&a, &db, &q);
    mg_npy_free(&db);
    mg_npy_free(&q);
    return s;
}
