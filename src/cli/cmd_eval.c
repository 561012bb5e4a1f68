/* cmd_eval.c: `multigrain eval`: top-1/top-5 accuracy of a checkpoint on a labelled split
 * (ROOT/val/<class>/ images, or ROOT with t10k IDX files), printed like the reference port's eval. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/fileio.h"
#include "core/parse.h"
#include "core/progress.h"
#include "multigrain/data.h"
#include "multigrain/metrics.h"
#include "multigrain/model.h"
#include "multigrain/ops.h"
#include "multigrain/trainer.h"

typedef struct eval_args {
    const char *checkpoint, *data, *json;
    int size, batch, threads, workers, rect, max_side;
    int64_t limit;
    double p, crop_pct;
} eval_args;

enum { OPT_SIZE = 300, OPT_BATCH, OPT_LIMIT, OPT_P, OPT_JSON, OPT_MODE, OPT_WORKERS, OPT_MAX_SIDE, OPT_CROP_PCT };

static const struct option eval_longopts[] = {
    {"checkpoint", required_argument, NULL, 'c'}, {"data", required_argument, NULL, 'd'},
    {"size", required_argument, NULL, OPT_SIZE},  {"batch-size", required_argument, NULL, OPT_BATCH},
    {"limit", required_argument, NULL, OPT_LIMIT}, {"p", required_argument, NULL, OPT_P},
    {"json", required_argument, NULL, OPT_JSON},  {"mode", required_argument, NULL, OPT_MODE},
    {"threads", required_argument, NULL, 'j'},    {"workers", required_argument, NULL, OPT_WORKERS},
    {"max-side", required_argument, NULL, OPT_MAX_SIDE}, {"crop-pct", required_argument, NULL, OPT_CROP_PCT},
    {"help", no_argument, NULL, 'h'},             {NULL, 0, NULL, 0}};

static mg_status eval_on_opt(void *ctx, int opt, const char *name, const char *arg) {
    eval_args *a = ctx;
    switch (opt) {
    case 'c': a->checkpoint = arg; return MG_OK;
    case 'd': a->data = arg; return MG_OK;
    case OPT_SIZE: return mg_parse_int(arg, 16, 4096, name, MG_ERR_USAGE, &a->size);
    case OPT_BATCH: return mg_parse_int(arg, 1, 4096, name, MG_ERR_USAGE, &a->batch);
    case OPT_LIMIT: return mg_parse_int64(arg, 1, INT64_C(1) << 40, name, MG_ERR_USAGE, &a->limit);
    case OPT_P: return mg_parse_double(arg, 0.01, 100, name, MG_ERR_USAGE, &a->p);
    case OPT_CROP_PCT: return mg_parse_double(arg, 0.05, 1, name, MG_ERR_USAGE, &a->crop_pct);
    case OPT_JSON: a->json = arg; return MG_OK;
    case OPT_MODE:
        if (!strcmp(arg, "crop")) {
            a->rect = 0;
            return MG_OK;
        }
        if (!strcmp(arg, "rect")) {
            a->rect = 1;
            return MG_OK;
        }
        return MG_FAIL(MG_ERR_USAGE, "%s: expected crop or rect, found '%s'", name, arg);
    case 'j': return mg_parse_int(arg, 0, 1024, name, MG_ERR_USAGE, &a->threads);
    case OPT_WORKERS: return mg_parse_int(arg, 1, 256, name, MG_ERR_USAGE, &a->workers);
    case OPT_MAX_SIDE: a->rect = 1; return mg_parse_int(arg, 16, 4096, name, MG_ERR_USAGE, &a->max_side);
    default: return MG_FAIL(MG_ERR_USAGE, "eval: unhandled option %s", name);
    }
}

/* Rect protocol: every ROOT/val/<class>/ image resized so that its longest side is max_side (no
 * crop), one image per forward pass. The network rebuilds its plans whenever the input shape
 * changes, so a set of mixed sizes costs one rebuild per change of shape (images are taken in
 * folder order, not grouped by size). */
static mg_status evaluate_rect(mg_model *m, const char *root, int max_side, int64_t limit, double *top1,
                               double *top5, int64_t *count) {
    char *dir = mg_path_join(root, "val");
    if (!dir) return MG_FAIL(MG_ERR_NOMEM, "out of memory");
    if (!mg_path_is_dir(dir)) {
        mg_status e = MG_FAIL(MG_ERR_IO, "--data %s: --mode rect needs a val/ folder of class folders (%s)", root, dir);
        free(dir);
        return e;
    }
    mg_dataset ds;
    mg_scan_opts so = {.cache_path = NULL, .recursive = true};
    mg_status s = mg_dataset_scan_folder(dir, &so, &ds);
    free(dir);
    if (s != MG_OK) return s;
    int64_t n = ds.n, c1 = 0, c5 = 0, K = mg_model_num_classes(m);
    if (limit > 0 && limit < n) n = limit;
    if (ds.n_classes > K)
        s = MG_FAIL(MG_ERR_INVALID_ARG, "--data %s: %d class folders but the checkpoint has %lld classes", root,
                    ds.n_classes, (long long)K);
    mg_progress bar;
    mg_progress_init(&bar, "eval", n, "img");
    for (int64_t i = 0; s == MG_OK && i < n; i++) {
        char path[4096];
        float *x = NULL;
        int w = 0, h = 0;
        s = mg_dataset_path(&ds, i, path, sizeof path);
        if (s == MG_OK) s = mg_image_load_tensor(path, MG_EVAL_RECT, max_side, &x, &w, &h);
        mg_model_outputs o;
        if (s == MG_OK) {
            s = mg_model_forward(m, MG_MODE_INFER, x, 1, h, w, &o);
            if (s != MG_OK) mg_error_wrap(s, "%s", path);
        }
        free(x);
        int64_t a1 = 0, a5 = 0, label = ds.labels[i];
        if (s == MG_OK) s = mg_metrics_topk(o.logits, 1, K, &label, &a1, &a5);
        c1 += a1;
        c5 += a5;
        mg_progress_update(&bar, i + 1, NULL);
    }
    mg_progress_finish(&bar, NULL);
    mg_dataset_free(&ds);
    if (s == MG_OK && n == 0) s = MG_FAIL(MG_ERR_INVALID_ARG, "--data %s: no images in val/", root);
    if (s == MG_OK) {
        *top1 = (double)c1 / (double)n;
        *top5 = (double)c5 / (double)n;
        *count = n;
    }
    return s;
}

mg_status mg_cmd_eval(int argc, char **argv) {
    const mg_command *cmd = mg_command_find("eval");
    eval_args a = {.size = 224, .batch = 32, .workers = 2, .max_side = 224};
    int first = 0, help = 0;
    MG_TRY(mg_cli_parse(cmd, argc, argv, "c:d:j:", eval_longopts, eval_on_opt, &a, &first, &help));
    if (help) return MG_OK;
    if (first < argc) return MG_FAIL(MG_ERR_USAGE, "eval: unexpected argument '%s'", argv[first]);
    if (!a.checkpoint || !a.data) return MG_FAIL(MG_ERR_USAGE, "eval: --checkpoint and --data are required");
    MG_TRY(mg_ops_set_threads(a.threads));
    mg_model *m = NULL;
    MG_TRY(mg_model_load(a.checkpoint, &m, NULL));
    mg_status s = a.p > 0 ? mg_model_set_p(m, (float)a.p) : MG_OK;
    double top1 = 0, top5 = 0, t0 = mg_time_now();
    int64_t count = 0;
    if (s == MG_OK && a.rect) s = evaluate_rect(m, a.data, a.max_side, a.limit, &top1, &top5, &count);
    else if (s == MG_OK) s = mg_evaluate_accuracy(m, a.data, a.size, a.crop_pct, a.batch, a.limit, a.workers, &top1, &top5, &count);
    double secs = mg_time_now() - t0;
    if (s == MG_OK) {
        printf("result: {'top_1_accuracy': %.6f, 'top_5_accuracy': %.6f} ckpt= %s\n", top1, top5, a.checkpoint);
        printf("top-1: %.2f%%  top-5: %.2f%%  (%" PRId64 " images, %.1f images/s)\n", 100 * top1, 100 * top5, count,
               secs > 0 ? (double)count / secs : 0.0);
        if (a.json) {
            char buf[1024];
            int n = snprintf(buf, sizeof buf,
                             "{\"top_1_accuracy\": %.6f, \"top_5_accuracy\": %.6f, \"images\": %" PRId64
                             ", \"images_per_s\": %.3f, \"checkpoint\": \"%s\", \"mode\": \"%s\", \"size\": %d, \"p\": %.6g}\n",
                             top1, top5, count, secs > 0 ? (double)count / secs : 0.0, a.checkpoint,
                             a.rect ? "rect" : "crop", a.rect ? a.max_side : a.size,
                             (double)mg_model_get_p(m));
            s = mg_file_write_atomic(a.json, buf, (size_t)n);
        }
    }
    mg_model_free(m);
    return s;
}
