/* cmd_retrieval_eval.c: `multigrain retrieval-eval`: retrieval benchmarks. The `copies` protocol
 * (augmented copies of a labelled split's images against their originals) is available; the
 * Holidays / UKBench / Copydays / list protocols are not written yet. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/fileio.h"
#include "core/parse.h"
#include "multigrain/copy_eval.h"
#include "multigrain/ops.h"

typedef struct reval_args {
    const char *checkpoint, *dataset, *root, *save_db;
    int threads;
    mg_copy_eval_opts co;
} reval_args;

enum { OPT_DATASET = 300, OPT_ROOT, OPT_QUERIES, OPT_DB, OPT_SIZE, OPT_SCALE, OPT_SAVE, OPT_P, OPT_SEED };

static const struct option reval_longopts[] = {
    {"checkpoint", required_argument, NULL, 'c'}, {"dataset", required_argument, NULL, OPT_DATASET},
    {"root", required_argument, NULL, OPT_ROOT},  {"queries", required_argument, NULL, OPT_QUERIES},
    {"database", required_argument, NULL, OPT_DB}, {"size", required_argument, NULL, OPT_SIZE},
    {"scale-min", required_argument, NULL, OPT_SCALE}, {"save-embeddings", required_argument, NULL, OPT_SAVE},
    {"seed", required_argument, NULL, OPT_SEED},  {"threads", required_argument, NULL, 'j'},
    {"help", no_argument, NULL, 'h'},             {NULL, 0, NULL, 0}};

static mg_status reval_on_opt(void *ctx, int opt, const char *name, const char *arg) {
    reval_args *a = ctx;
    int64_t v;
    switch (opt) {
    case 'c': a->checkpoint = arg; return MG_OK;
    case OPT_DATASET: a->dataset = arg; return MG_OK;
    case OPT_ROOT: a->root = arg; return MG_OK;
    case OPT_QUERIES: return mg_parse_int64(arg, 1, INT64_C(1) << 40, name, MG_ERR_USAGE, &a->co.n_queries);
    case OPT_DB: return mg_parse_int64(arg, 2, INT64_C(1) << 40, name, MG_ERR_USAGE, &a->co.n_db);
    case OPT_SIZE: return mg_parse_int(arg, 16, 4096, name, MG_ERR_USAGE, &a->co.size);
    case OPT_SCALE: return mg_parse_double(arg, 0.01, 1.0, name, MG_ERR_USAGE, &a->co.scale_min);
    case OPT_SAVE: a->co.save_db = arg; return MG_OK;
    case OPT_SEED:
        MG_TRY(mg_parse_int64(arg, 0, INT64_MAX, name, MG_ERR_USAGE, &v));
        a->co.seed = (uint64_t)v;
        return MG_OK;
    case 'j': return mg_parse_int(arg, 0, 1024, name, MG_ERR_USAGE, &a->threads);
    default: return MG_FAIL(MG_ERR_USAGE, "retrieval-eval: unhandled option %s", name);
    }
}

/* Opens the "val" split of ROOT: ROOT/val/<class>/ images or t10k IDX files. */
static mg_status open_val(const char *root, mg_dataset *ds) {
    char *dir = mg_path_join(root, "val");
    if (!dir) return MG_FAIL(MG_ERR_NOMEM, "out of memory");
    mg_status s;
    if (mg_path_is_dir(dir)) {
        mg_scan_opts so = {.cache_path = NULL, .recursive = true};
        s = mg_dataset_scan_folder(dir, &so, ds);
    } else {
        char img[4096], lab[4096];
        snprintf(img, sizeof img, "%s/t10k-images-idx3-ubyte", root);
        snprintf(lab, sizeof lab, "%s/t10k-labels-idx1-ubyte", root);
        s = mg_path_exists(img) ? mg_dataset_read_idx(img, lab, ds)
                                : MG_FAIL(MG_ERR_IO, "--root %s: no val/ folder and no t10k IDX files", root);
    }
    free(dir);
    return s;
}

mg_status mg_cmd_retrieval_eval(int argc, char **argv) {
    const mg_command *cmd = mg_command_find("retrieval-eval");
    reval_args a = {0};
    mg_copy_eval_opts_default(&a.co);
    int first = 0, help = 0;
    MG_TRY(mg_cli_parse(cmd, argc, argv, "c:j:", reval_longopts, reval_on_opt, &a, &first, &help));
    if (help) return MG_OK;
    if (first < argc) return MG_FAIL(MG_ERR_USAGE, "retrieval-eval: unexpected argument '%s'", argv[first]);
    if (!a.checkpoint || !a.dataset || !a.root)
        return MG_FAIL(MG_ERR_USAGE, "retrieval-eval: --checkpoint, --dataset and --root are required");
    if (strcmp(a.dataset, "copies") != 0) {
        if (!strcmp(a.dataset, "holidays") || !strcmp(a.dataset, "ukbench") || !strcmp(a.dataset, "copydays") ||
            !strcmp(a.dataset, "list"))
            return MG_FAIL(MG_ERR_NOT_IMPLEMENTED, "retrieval-eval: the %s protocol is not implemented yet; available: copies",
                           a.dataset);
        return MG_FAIL(MG_ERR_USAGE, "--dataset: expected copies, holidays, ukbench, copydays or list, found '%s'", a.dataset);
    }
    if (a.co.n_queries > a.co.n_db) a.co.n_queries = a.co.n_db;
    MG_TRY(mg_ops_set_threads(a.threads));
    mg_model *m = NULL;
    MG_TRY(mg_model_load(a.checkpoint, &m, NULL));
    mg_dataset ds;
    mg_status s = open_val(a.root, &ds);
    mg_copy_eval_result r;
    if (s == MG_OK) {
        s = mg_copy_eval(m, &ds, &a.co, &r);
        mg_dataset_free(&ds);
    }
    if (s == MG_OK)
        printf("copies: %lld augmented queries against %lld originals (size %d, crop scale >= %.2f): mAP %.2f%%, "
               "recall@1 %.2f%%\n",
               (long long)r.n_queries, (long long)r.n_db, a.co.size, a.co.scale_min, 100 * r.map, 100 * r.recall1);
    mg_model_free(m);
    return s;
}
