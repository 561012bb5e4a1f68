/* cmd_whiten.c: `multigrain whiten`: learn PCA whitening from an embedding file and save it (plain
 * embedding whitening, applied by `embed --whiten`), or learn it on l2n([e, 1]) from raw GeM vectors
 * (`embed --pooled`) and fold it into a checkpoint's classifier (the recipe's whitened checkpoint
 * format, docs/formats.md). */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/log.h"
#include "core/parse.h"
#include "core/threadpool.h"
#include "eval/embfile.h"
#include "multigrain/checkpoint.h"
#include "multigrain/knn.h"
#include "multigrain/whiten.h"

typedef struct whiten_args {
    const char *emb, *out, *fold;
    int64_t dim;
    double eps;
    bool append_one;
    int threads;
} whiten_args;

enum { OPT_EMB = 256, OPT_DIM, OPT_FOLD, OPT_EPS, OPT_APPEND };

static const struct option whiten_longopts[] = {
    {"embeddings", required_argument, NULL, OPT_EMB}, {"out", required_argument, NULL, 'o'},
    {"dim", required_argument, NULL, OPT_DIM},        {"fold-into", required_argument, NULL, OPT_FOLD},
    {"eps", required_argument, NULL, OPT_EPS},        {"append-one", no_argument, NULL, OPT_APPEND},
    {"threads", required_argument, NULL, 'j'},        {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0}};

static mg_status whiten_on_opt(void *ctx, int opt, const char *name, const char *arg) {
    whiten_args *a = ctx;
    switch (opt) {
    case OPT_EMB: a->emb = arg; return MG_OK;
    case 'o': a->out = arg; return MG_OK;
    case OPT_FOLD: a->fold = arg; return MG_OK;
    case OPT_DIM: return mg_parse_int64(arg, 1, 65536, name, MG_ERR_USAGE, &a->dim);
    case OPT_EPS: return mg_parse_double(arg, 1e-300, 1.0, name, MG_ERR_USAGE, &a->eps);
    case OPT_APPEND: a->append_one = true; return MG_OK;
    case 'j': return mg_parse_int(arg, 0, 1024, name, MG_ERR_USAGE, &a->threads);
    default: return MG_FAIL(MG_ERR_USAGE, "whiten: unhandled option %s", name);
    }
}

/* Folding needs the raw GeM vectors e: l2n([e, 1]) cannot be recovered from l2n(e). Checks the
 * width against the checkpoint's classifier and refuses rows that are all unit-norm. */
static mg_status check_fold_input(const whiten_args *a, const mg_npy *e) {
    int64_t n = e->shape[0], d = e->shape[1];
    mg_checkpoint c;
    MG_TRY(mg_checkpoint_open(&c, a->fold, NULL, 0));
    const mg_st_tensor *fw = mg_checkpoint_tensor(&c, "fc.weight");
    int64_t D = fw && fw->ndim == 2 ? fw->shape[1] : -1;
    int whitened = c.whitened;
    mg_checkpoint_close(&c);
    if (whitened)
        return MG_FAIL(MG_ERR_INVALID_ARG, "--fold-into %s: the checkpoint is already whitened (fold into the "
                       "unwhitened one)", a->fold);
    if (d != D)
        return MG_FAIL(MG_ERR_INVALID_ARG,
                       "--embeddings %s: rows have %lld dims but the classifier of --fold-into %s takes %lld; pass "
                       "that checkpoint's raw GeM vectors (multigrain embed --pooled)",
                       a->emb, (long long)d, a->fold, (long long)D);
    int64_t unit = 0;
    const float *x = e->data;
    for (int64_t i = 0; i < n; i++) {
        double ss = 0;
        for (int64_t j = 0; j < d; j++) ss += (double)x[i * d + j] * x[i * d + j];
        if (fabs(sqrt(ss) - 1.0) < 1e-4) unit++;
    }
    if (unit == n)
        return MG_FAIL(MG_ERR_INVALID_ARG,
                       "--embeddings %s: every row is L2-normalised, but folding learns on l2n([e, 1]) and needs the "
                       "raw GeM vectors e: write them with multigrain embed --pooled",
                       a->emb);
    return MG_OK;
}

static mg_status whiten_run(const whiten_args *a, mg_npy *e) {
    MG_TRY(mg_embfile_load("--embeddings", a->emb, e));
    int64_t n = e->shape[0], d = e->shape[1];
    if (n < 2)
        return MG_FAIL(MG_ERR_FORMAT, "--embeddings %s: need at least 2 rows to learn a whitening, found %lld", a->emb,
                       (long long)n);
    if (a->fold) MG_TRY(check_fold_input(a, e));
    /* Plain whitening is learned on L2-normalised rows (a no-op for `multigrain embed` output);
     * folding learns on l2n([e, 1]) of the raw GeM vectors e (recipe §1.8, §2.3). */
    bool augment = a->fold != NULL;
    if (!augment) mg_knn_normalize_rows(e->data, n, d, NULL);
    const float *x = e->data;
    float *aug = NULL;
    int64_t dx = d;
    if (augment) {
        dx = d + 1;
        aug = malloc((size_t)n * (size_t)dx * sizeof *aug);
        if (!aug) return MG_FAIL(MG_ERR_NOMEM, "whiten: out of memory");
        for (int64_t i = 0; i < n; i++) mg_whiten_augment(x + i * d, d, aug + i * dx);
        x = aug;
    }
    if (a->dim > dx) {
        free(aug);
        return MG_FAIL(MG_ERR_USAGE, "--dim: expected at most %lld (the embedding dimension), found %lld",
                       (long long)dx, (long long)a->dim);
    }
    mg_whiten w;
    mg_status s = mg_whiten_fit(x, n, dx, a->dim, a->eps, &w);
    free(aug);
    if (s != MG_OK) return s;
    if (a->fold && w.n_floored > 0)
        mg_log_warn("whiten: the folded whitening is exact (arg-max kept) but %lld directions were never observed: "
                    "learn it from more than %lld images (the recipe uses 20,000)",
                    (long long)w.n_floored, (long long)dx);
    if (a->fold)
        s = mg_whiten_fold_checkpoint(a->fold, &w, a->out);
    else
        s = mg_whiten_save(&w, a->out);
    if (s == MG_OK)
        mg_log_info("whiten: learned %lld -> %lld whitening from %lld embeddings, wrote %s%s", (long long)w.dim_in,
                    (long long)w.dim_out, (long long)n, a->out, a->fold ? " (folded into the classifier)" : "");
    mg_whiten_free(&w);
    return s;
}

mg_status mg_cmd_whiten(int argc, char **argv) {
    const mg_command *cmd = mg_command_find("whiten");
    whiten_args a = {0};
    int first = 0, help = 0;
    MG_TRY(mg_cli_parse(cmd, argc, argv, "o:j:", whiten_longopts, whiten_on_opt, &a, &first, &help));
    if (help) return MG_OK;
    if (first < argc) return MG_FAIL(MG_ERR_USAGE, "whiten: unexpected argument '%s'", argv[first]);
    if (!a.emb) return MG_FAIL(MG_ERR_USAGE, "whiten: --embeddings E.npy is required");
    if (!a.out) return MG_FAIL(MG_ERR_USAGE, "whiten: --out FILE.safetensors is required");
    if (a.append_one && !a.fold)
        return MG_FAIL(MG_ERR_USAGE,
                       "--append-one: removed; whitening of [e, 1] exists only folded into a checkpoint "
                       "(whiten --fold-into C --embeddings E_pooled.npy, which builds l2n([e, 1]) itself)");
    if (a.append_one) mg_log_warn("whiten: --append-one is deprecated and implied by --fold-into");
    if (a.fold && a.dim)
        return MG_FAIL(MG_ERR_USAGE, "--fold-into: needs a full-dimension whitening (drop --dim %lld): a reduced "
                       "whitening has no exact fold", (long long)a.dim);
    MG_TRY(mg_pool_global_set_threads(a.threads));
    mg_npy e = {0};
    mg_status s = whiten_run(&a, &e);
    mg_npy_free(&e);
    return s;
}
