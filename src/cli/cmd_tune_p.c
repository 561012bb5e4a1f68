/* cmd_tune_p.c: `multigrain tune-p`: chooses the GeM exponent p* on the recipe's proxy task (§1.7a):
 * each of the first --queries images of ROOT's val split, strongly augmented, must retrieve its own
 * original among the first --database images (include/multigrain/copy_eval.h). The same queries
 * (same seed) are scored for every p of --p-list; p* is the p with the best mAP (the first one on
 * equal values). --out writes a copy of the checkpoint with pool.p = p*. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/fileio.h"
#include "core/parse.h"
#include "multigrain/copy_eval.h"
#include "multigrain/model.h"
#include "multigrain/ops.h"

enum { MAX_P = 64 };

typedef struct tune_args {
    const char *checkpoint, *root, *out;
    int threads, n_p;
    double p[MAX_P];
    mg_copy_eval_opts co;
} tune_args;

enum { OPT_ROOT = 300, OPT_SIZE, OPT_PLIST, OPT_OUT, OPT_QUERIES, OPT_DB, OPT_SCALE, OPT_SEED, OPT_COPIES };

static const struct option tune_longopts[] = {
    {"checkpoint", required_argument, NULL, 'c'}, {"root", required_argument, NULL, OPT_ROOT},
    {"size", required_argument, NULL, OPT_SIZE},  {"p-list", required_argument, NULL, OPT_PLIST},
    {"out", required_argument, NULL, OPT_OUT},    {"queries", required_argument, NULL, OPT_QUERIES},
    {"database", required_argument, NULL, OPT_DB}, {"scale-min", required_argument, NULL, OPT_SCALE},
    {"seed", required_argument, NULL, OPT_SEED},  {"threads", required_argument, NULL, 'j'},
    {"copies", required_argument, NULL, OPT_COPIES}, {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0}};

static mg_status parse_plist(const char *arg, const char *name, tune_args *a) {
    char buf[2048];
    if (strlen(arg) >= sizeof buf) return MG_FAIL(MG_ERR_USAGE, "%s: list too long", name);
    strcpy(buf, arg);
    a->n_p = 0;
    char *save = NULL;
    for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (a->n_p == MAX_P) return MG_FAIL(MG_ERR_USAGE, "%s: at most %d values", name, MAX_P);
        MG_TRY(mg_parse_double(t, 0.01, 100, name, MG_ERR_USAGE, &a->p[a->n_p]));
        a->n_p++;
    }
    if (a->n_p == 0) return MG_FAIL(MG_ERR_USAGE, "%s: expected comma-separated values such as 1,2,3,4,5, found '%s'", name, arg);
    return MG_OK;
}

static mg_status tune_on_opt(void *ctx, int opt, const char *name, const char *arg) {
    tune_args *a = ctx;
    int64_t v;
    switch (opt) {
    case 'c': a->checkpoint = arg; return MG_OK;
    case OPT_ROOT: a->root = arg; return MG_OK;
    case OPT_OUT: a->out = arg; return MG_OK;
    case OPT_SIZE: return mg_parse_int(arg, 16, 4096, name, MG_ERR_USAGE, &a->co.size);
    case OPT_PLIST: return parse_plist(arg, name, a);
    case OPT_QUERIES: return mg_parse_int64(arg, 1, INT64_C(1) << 40, name, MG_ERR_USAGE, &a->co.n_queries);
    case OPT_DB: return mg_parse_int64(arg, 2, INT64_C(1) << 40, name, MG_ERR_USAGE, &a->co.n_db);
    case OPT_SCALE: return mg_parse_double(arg, 0.01, 1.0, name, MG_ERR_USAGE, &a->co.scale_min);
    case OPT_SEED:
        MG_TRY(mg_parse_int64(arg, 0, INT64_MAX, name, MG_ERR_USAGE, &v));
        a->co.seed = (uint64_t)v;
        return MG_OK;
    case 'j': return mg_parse_int(arg, 0, 1024, name, MG_ERR_USAGE, &a->threads);
    case OPT_COPIES: return mg_parse_int(arg, 1, 64, name, MG_ERR_USAGE, &a->co.copies);
    default: return MG_FAIL(MG_ERR_USAGE, "tune-p: unhandled option %s", name);
    }
}


mg_status mg_cmd_tune_p(int argc, char **argv) {
    const mg_command *cmd = mg_command_find("tune-p");
    tune_args a = {0};
    mg_copy_eval_opts_default(&a.co);
    a.co.copies = 5; /* the recipe's proxy task: 5 augmented versions of each image */
    const double def[] = {1, 2, 3, 4, 5};
    a.n_p = 5;
    memcpy(a.p, def, sizeof def);
    int first = 0, help = 0;
    MG_TRY(mg_cli_parse(cmd, argc, argv, "c:j:", tune_longopts, tune_on_opt, &a, &first, &help));
    if (help) return MG_OK;
    if (first < argc) return MG_FAIL(MG_ERR_USAGE, "tune-p: unexpected argument '%s'", argv[first]);
    if (!a.checkpoint || !a.root) return MG_FAIL(MG_ERR_USAGE, "tune-p: --checkpoint and --root are required");
    MG_TRY(mg_ops_set_threads(a.threads));
    mg_model *m = NULL;
    mg_checkpoint ck;
    MG_TRY(mg_model_load(a.checkpoint, &m, &ck));
    mg_dataset ds;
    mg_status s = mg_dataset_open_split(a.root, "val", 0, &ds);
    int have_ds = s == MG_OK;
    if (s == MG_OK) {
        if (a.co.n_db > ds.n) a.co.n_db = ds.n;
        if (a.co.n_queries > a.co.n_db) a.co.n_queries = a.co.n_db;
        if (a.co.n_db < 2) s = MG_FAIL(MG_ERR_INVALID_ARG, "--root %s: at least 2 images are needed", a.root);
    }
    int best = -1;
    double best_map = -1;
    if (s == MG_OK)
        printf("tune-p: %lld augmented queries against %lld originals, size %d, crop scale >= %.2f, seed %llu\n",
               (long long)a.co.n_queries, (long long)a.co.n_db, a.co.size, a.co.scale_min, (unsigned long long)a.co.seed);
    for (int i = 0; s == MG_OK && i < a.n_p; i++) {
        mg_copy_eval_result r;
        s = mg_model_set_p(m, (float)a.p[i]);
        if (s == MG_OK) s = mg_copy_eval(m, &ds, &a.co, &r);
        if (s == MG_OK) {
            printf("p %.6g: mAP %.6f recall@1 %.6f\n", (double)(float)a.p[i], r.map, r.recall1);
            fflush(stdout);
            if (r.map > best_map) {
                best_map = r.map;
                best = i;
            }
        }
    }
    if (s == MG_OK) {
        printf("best: p* = %.6g (mAP %.6f)\n", (double)(float)a.p[best], best_map);
        if (a.out) {
            s = mg_model_set_p(m, (float)a.p[best]);
            if (s == MG_OK) s = mg_model_save(m, a.out, ck.epoch, ck.step, ck.class_names_json, ck.config);
            if (s == MG_OK) printf("wrote %s with pool.p = %.6g\n", a.out, (double)(float)a.p[best]);
        }
    }
    if (have_ds) mg_dataset_free(&ds);
    mg_checkpoint_close(&ck);
    mg_model_free(m);
    return s;
}
