/* cmd_retrieval_eval.c: `multigrain retrieval-eval`: retrieval benchmarks. `copies` (augmented
 * copies of a labelled split's images against their originals), `list` (query / database / ground
 * truth files), `holidays` (INRIA Holidays, optional upright-rotation list), `ukbench` (N-S score)
 * and `copydays` (strong queries against the originals + optional distractors). Images are embedded
 * one by one in rect mode (longest side --max-side, no crop), optionally whitened, ranked by exact
 * cosine k-NN and scored with src/eval/metrics.c (docs/retrieval.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/fileio.h"
#include "core/parse.h"
#include "core/log.h"
#include "core/progress.h"
#include "eval/image_list.h"
#include "multigrain/copy_eval.h"
#include "multigrain/knn.h"
#include "multigrain/metrics.h"
#include "multigrain/npy.h"
#include "multigrain/ops.h"
#include "multigrain/whiten.h"

typedef struct reval_args {
    const char *checkpoint, *dataset, *root, *save_db;
    const char *queries, *database; /* copies: counts; list: list files */
    const char *gt, *whiten, *rotate, *out, *distractors;
    int threads, max_side;
    double p;
    mg_ap_kind ap;
    mg_copy_eval_opts co;
} reval_args;

enum {
    OPT_DATASET = 300, OPT_ROOT, OPT_QUERIES, OPT_DB, OPT_SIZE, OPT_SCALE, OPT_SAVE, OPT_P, OPT_SEED, OPT_COPIES,
    OPT_GT, OPT_WHITEN, OPT_ROTATE, OPT_OUT, OPT_MAX_SIDE, OPT_AP, OPT_DISTRACTORS, OPT_CROP_PCT
};

static const struct option reval_longopts[] = {
    {"checkpoint", required_argument, NULL, 'c'}, {"dataset", required_argument, NULL, OPT_DATASET},
    {"root", required_argument, NULL, OPT_ROOT},  {"queries", required_argument, NULL, OPT_QUERIES},
    {"database", required_argument, NULL, OPT_DB}, {"size", required_argument, NULL, OPT_SIZE},
    {"scale-min", required_argument, NULL, OPT_SCALE}, {"save-embeddings", required_argument, NULL, OPT_SAVE},
    {"copies", required_argument, NULL, OPT_COPIES}, {"crop-pct", required_argument, NULL, OPT_CROP_PCT},
    {"seed", required_argument, NULL, OPT_SEED},  {"threads", required_argument, NULL, 'j'},
    {"gt", required_argument, NULL, OPT_GT},      {"whiten", required_argument, NULL, OPT_WHITEN},
    {"rotate", required_argument, NULL, OPT_ROTATE}, {"out", required_argument, NULL, OPT_OUT},
    {"max-side", required_argument, NULL, OPT_MAX_SIDE}, {"p", required_argument, NULL, OPT_P},
    {"ap", required_argument, NULL, OPT_AP},      {"distractors", required_argument, NULL, OPT_DISTRACTORS},
    {"help", no_argument, NULL, 'h'},             {NULL, 0, NULL, 0}};

static mg_status reval_on_opt(void *ctx, int opt, const char *name, const char *arg) {
    reval_args *a = ctx;
    int64_t v;
    switch (opt) {
    case 'c': a->checkpoint = arg; return MG_OK;
    case OPT_DATASET: a->dataset = arg; return MG_OK;
    case OPT_ROOT: a->root = arg; return MG_OK;
    case OPT_QUERIES: a->queries = arg; return MG_OK; /* a count (copies) or a list file (list) */
    case OPT_DB: a->database = arg; return MG_OK;
    case OPT_GT: a->gt = arg; return MG_OK;
    case OPT_WHITEN: a->whiten = arg; return MG_OK;
    case OPT_ROTATE: a->rotate = arg; return MG_OK;
    case OPT_OUT: a->out = arg; return MG_OK;
    case OPT_DISTRACTORS: a->distractors = arg; return MG_OK;
    case OPT_MAX_SIDE: return mg_parse_int(arg, 16, 4096, name, MG_ERR_USAGE, &a->max_side);
    case OPT_P: return mg_parse_double(arg, 0.01, 100, name, MG_ERR_USAGE, &a->p);
    case OPT_AP:
        if (!strcmp(arg, "trapezoid")) a->ap = MG_AP_TRAPEZOID;
        else if (!strcmp(arg, "standard")) a->ap = MG_AP_STANDARD;
        else return MG_FAIL(MG_ERR_USAGE, "%s: expected trapezoid or standard, found '%s'", name, arg);
        return MG_OK;
    case OPT_SIZE: return mg_parse_int(arg, 16, 4096, name, MG_ERR_USAGE, &a->co.size);
    case OPT_SCALE: return mg_parse_double(arg, 0.01, 1.0, name, MG_ERR_USAGE, &a->co.scale_min);
    case OPT_CROP_PCT: return mg_parse_double(arg, 0.05, 1.0, name, MG_ERR_USAGE, &a->co.crop_fraction);
    case OPT_COPIES: return mg_parse_int(arg, 1, 64, name, MG_ERR_USAGE, &a->co.copies);
    case OPT_SAVE: a->co.save_db = arg; return MG_OK;
    case OPT_SEED:
        MG_TRY(mg_parse_int64(arg, 0, INT64_MAX, name, MG_ERR_USAGE, &v));
        a->co.seed = (uint64_t)v;
        return MG_OK;
    case 'j': return mg_parse_int(arg, 0, 1024, name, MG_ERR_USAGE, &a->threads);
    default: return MG_FAIL(MG_ERR_USAGE, "retrieval-eval: unhandled option %s", name);
    }
}


/* ---- image benchmarks (list, holidays, ukbench) ---------------------------------------------- */

/* The upright-rotation list (--rotate): "name degrees" per line, degrees clockwise in
 * {0, 90, 180, 270} (-90 = 270); names match the image basenames. */
typedef struct rot_table {
    int64_t n;
    char **names;
    int *deg;
    int *used;
} rot_table;

static void rot_free(rot_table *t) {
    for (int64_t i = 0; i < t->n; i++) free(t->names[i]);
    free(t->names);
    free(t->deg);
    free(t->used);
    memset(t, 0, sizeof *t);
}

static const char *base_name(const char *p) {
    const char *b = strrchr(p, '/');
    return b ? b + 1 : p;
}

static mg_status rot_read(const char *path, rot_table *t) {
    memset(t, 0, sizeof *t);
    FILE *f = fopen(path, "r");
    if (!f) return MG_FAIL(MG_ERR_IO, "--rotate %s: cannot open", path);
    char line[4096];
    int64_t lineno = 0, cap = 0;
    mg_status s = MG_OK;
    while (s == MG_OK && fgets(line, sizeof line, f)) {
        lineno++;
        char name[4096];
        int deg = 0, used = 0;
        char *q = line;
        while (*q == ' ' || *q == '\t') q++;
        if (*q == '\0' || *q == '\n' || *q == '\r' || *q == '#') continue;
        if (sscanf(q, "%4095s %d %n", name, &deg, &used) != 2 || (q[used] != '\0' && q[used] != '#')) {
            s = MG_FAIL(MG_ERR_FORMAT, "--rotate %s:%lld: expected 'name degrees', found '%.80s'", path,
                        (long long)lineno, q);
            break;
        }
        if (deg == -90) deg = 270;
        if (deg != 0 && deg != 90 && deg != 180 && deg != 270) {
            s = MG_FAIL(MG_ERR_FORMAT, "--rotate %s:%lld: degrees must be 0, 90, 180 or 270 (clockwise), found %d",
                        path, (long long)lineno, deg);
            break;
        }
        for (int64_t k = 0; k < t->n; k++)
            if (!strcmp(t->names[k], name)) {
                s = MG_FAIL(MG_ERR_FORMAT, "--rotate %s:%lld: '%s' listed twice", path, (long long)lineno, name);
                break;
            }
        if (s != MG_OK) break;
        if (t->n == cap) {
            cap = cap ? 2 * cap : 64;
            char **nn = realloc(t->names, (size_t)cap * sizeof *nn);
            if (nn) t->names = nn;
            int *nd = realloc(t->deg, (size_t)cap * sizeof *nd);
            if (nd) t->deg = nd;
            if (!nn || !nd) {
                s = MG_FAIL(MG_ERR_NOMEM, "out of memory");
                break;
            }
        }
        t->names[t->n] = strdup(name);
        if (!t->names[t->n]) {
            s = MG_FAIL(MG_ERR_NOMEM, "out of memory");
            break;
        }
        t->deg[t->n++] = deg;
    }
    fclose(f);
    if (s == MG_OK) {
        t->used = calloc((size_t)(t->n ? t->n : 1), sizeof *t->used);
        if (!t->used) s = MG_FAIL(MG_ERR_NOMEM, "out of memory");
    }
    if (s != MG_OK) rot_free(t);
    return s;
}

/* Rotates a CHW float image clockwise by deg (90, 180, 270) into a new buffer. */
static mg_status rotate_chw(float **x, int *w, int *h, int deg) {
    int W = *w, H = *h, ow = deg == 180 ? W : H, oh = deg == 180 ? H : W;
    float *in = *x, *o = malloc((size_t)3 * (size_t)W * (size_t)H * sizeof *o);
    if (!o) return MG_FAIL(MG_ERR_NOMEM, "out of memory");
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < H; y++)
            for (int xx = 0; xx < W; xx++) {
                int nx, ny;
                if (deg == 90) nx = H - 1 - y, ny = xx;
                else if (deg == 180) nx = W - 1 - xx, ny = H - 1 - y;
                else nx = y, ny = W - 1 - xx;
                o[((size_t)c * (size_t)oh + (size_t)ny) * (size_t)ow + (size_t)nx] =
                    in[((size_t)c * (size_t)H + (size_t)y) * (size_t)W + (size_t)xx];
            }
    free(in);
    *x = o;
    *w = ow;
    *h = oh;
    return MG_OK;
}

typedef struct embedder {
    mg_model *m;
    int max_side;
    rot_table *rot;   /* or NULL */
    mg_whiten *wh;    /* or NULL */
    int dim;          /* output dimension */
} embedder;

/* Embeds n images (rect mode, one forward each) into out [n, e->dim]. */
static mg_status embed_images(const embedder *e, char *const *paths, int64_t n, const char *what, float *out) {
    mg_status s = MG_OK;
    mg_progress bar;
    mg_progress_init(&bar, what, n, "img");
    for (int64_t i = 0; s == MG_OK && i < n; i++) {
        float *x = NULL;
        int w = 0, h = 0;
        s = mg_image_load_tensor(paths[i], MG_EVAL_RECT, e->max_side, &x, &w, &h);
        if (s == MG_OK && e->rot) {
            const char *b = base_name(paths[i]);
            for (int64_t k = 0; k < e->rot->n; k++)
                if (!strcmp(e->rot->names[k], b)) {
                    e->rot->used[k] = 1;
                    if (e->rot->deg[k]) s = rotate_chw(&x, &w, &h, e->rot->deg[k]);
                    break;
                }
        }
        mg_model_outputs o;
        if (s == MG_OK) {
            s = mg_model_forward(e->m, MG_MODE_INFER, x, 1, h, w, &o);
            if (s != MG_OK) mg_error_wrap(s, "%s", paths[i]);
        }
        free(x);
        if (s == MG_OK) {
            float *row = out + i * (int64_t)e->dim;
            if (e->wh) s = mg_whiten_apply(e->wh, o.embedding, 1, row);
            else memcpy(row, o.embedding, (size_t)e->dim * sizeof *row);
        }
        mg_progress_update(&bar, i + 1, NULL);
    }
    mg_progress_finish(&bar, NULL);
    return s;
}

/* Writes x [n, d] to path (.npy, atomically) and the names to path with .npy replaced by .txt. */
static mg_status save_embeddings(const char *path, const float *x, int64_t n, int64_t d, char *const *names) {
    int64_t shape[2] = {n, d};
    MG_TRY(mg_npy_write(path, MG_DTYPE_F32, 2, shape, x));
    size_t len = strlen(path), cap = 0;
    char *txt = malloc(len + 5);
    if (!txt) return MG_FAIL(MG_ERR_NOMEM, "out of memory");
    memcpy(txt, path, len + 1);
    if (len > 4 && !strcmp(txt + len - 4, ".npy")) txt[len - 4] = '\0';
    strcat(txt, ".txt");
    for (int64_t i = 0; i < n; i++) cap += strlen(names[i]) + 1;
    char *buf = malloc(cap + 1), *q = buf;
    mg_status s = buf ? MG_OK : MG_FAIL(MG_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; s == MG_OK && i < n; i++) q += sprintf(q, "%s\n", names[i]);
    if (s == MG_OK) s = mg_file_write_atomic(txt, buf, (size_t)(q - buf));
    free(buf);
    free(txt);
    return s;
}

/* Joins relative list entries to --root (absolute ones, or no root: unchanged). */
static mg_status resolve_paths(const char *root, char *const *names, int64_t n, char ***out) {
    char **r = calloc((size_t)(n ? n : 1), sizeof *r);
    if (!r) return MG_FAIL(MG_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; i < n; i++) {
        r[i] = (root && names[i][0] != '/') ? mg_path_join(root, names[i]) : strdup(names[i]);
        if (!r[i]) {
            mg_retrieval_free_list(r, n);
            return MG_FAIL(MG_ERR_NOMEM, "out of memory");
        }
    }
    *out = r;
    return MG_OK;
}

/* The 6-digit id at the start of a path's basename, or -1. */
static int64_t six_digit_id(const char *path) {
    const char *b = base_name(path);
    int64_t id = 0;
    for (int i = 0; i < 6; i++) {
        if (b[i] < '0' || b[i] > '9') return -1;
        id = id * 10 + (b[i] - '0');
    }
    return id;
}

/* Copydays: queries = the strong images, database = the originals (first n_orig rows) + distractors;
 * a query's relevant images are the originals of its group (6-digit id / 100, i.e. the same first 4
 * digits, as DINO's and MultiGrain's evaluation); distractors are never relevant. */
static mg_status copydays_gt(char *const *queries, int64_t nq, char *const *orig, int64_t n_orig, int64_t ndb,
                             mg_retrieval_gt *gt) {
    memset(gt, 0, sizeof *gt);
    gt->n_queries = nq;
    gt->n_db = ndb;
    gt->query_self = malloc((size_t)(nq ? nq : 1) * sizeof *gt->query_self);
    gt->rel_start = calloc((size_t)nq + 1, sizeof *gt->rel_start);
    gt->rel = malloc((size_t)(n_orig ? n_orig : 1) * (size_t)(nq ? nq : 1) * sizeof *gt->rel);
    if (!gt->query_self || !gt->rel_start || !gt->rel) {
        mg_retrieval_gt_free(gt);
        return MG_FAIL(MG_ERR_NOMEM, "out of memory");
    }
    for (int64_t j = 0; j < n_orig; j++)
        if (six_digit_id(orig[j]) < 0) {
            mg_retrieval_gt_free(gt);
            return MG_FAIL(MG_ERR_FORMAT, "Copydays: original '%s': expected a name starting with a 6-digit id", orig[j]);
        }
    int64_t r = 0;
    for (int64_t q = 0; q < nq; q++) {
        int64_t id = six_digit_id(queries[q]);
        if (id < 0) {
            mg_retrieval_gt_free(gt);
            return MG_FAIL(MG_ERR_FORMAT, "Copydays: query '%s': expected a name starting with a 6-digit id", queries[q]);
        }
        gt->query_self[q] = -1;
        gt->rel_start[q] = r;
        for (int64_t j = 0; j < n_orig; j++)
            if (six_digit_id(orig[j]) / 100 == id / 100) gt->rel[r++] = j;
        if (r == gt->rel_start[q]) {
            mg_retrieval_gt_free(gt);
            return MG_FAIL(MG_ERR_FORMAT, "Copydays: query '%s' (group %lld) has no original in the original/ folder",
                           queries[q], (long long)(id / 100));
        }
    }
    gt->rel_start[nq] = r;
    return MG_OK;
}

static mg_status run_image_benchmark(const reval_args *a) {
    const char *ds = a->dataset;
    int is_list = !strcmp(ds, "list"), is_hol = !strcmp(ds, "holidays"), is_ukb = !strcmp(ds, "ukbench");
    int is_cd = !strcmp(ds, "copydays"), sep_q = is_list || is_cd; /* queries embedded separately */
    if (is_list && (!a->queries || !a->database || !a->gt))
        return MG_FAIL(MG_ERR_USAGE, "retrieval-eval --dataset list: --queries, --database and --gt (files) are required");
    if (!is_list && !a->root) return MG_FAIL(MG_ERR_USAGE, "retrieval-eval --dataset %s: --root is required", ds);
    if (!is_list && (a->queries || a->database || a->gt))
        return MG_FAIL(MG_ERR_USAGE, "retrieval-eval --dataset %s: --queries, --database and --gt belong to --dataset list/copies", ds);
    if (a->distractors && !is_cd)
        return MG_FAIL(MG_ERR_USAGE, "retrieval-eval --dataset %s: --distractors belongs to --dataset copydays", ds);
    if (is_ukb && a->ap != MG_AP_TRAPEZOID)
        return MG_FAIL(MG_ERR_USAGE, "retrieval-eval --dataset ukbench: --ap does not apply (N-S score)");

    char **qn = NULL, **dn = NULL, **qp = NULL, **dp = NULL;
    int64_t nq = 0, ndb = 0;
    mg_image_list il = {0}, sl = {0}, xl = {0};
    mg_retrieval_gt gt = {0};
    mg_model *m = NULL;
    mg_whiten wh = {0};
    rot_table rot = {0};
    int have_rot = 0;
    float *qe = NULL, *de = NULL;
    int64_t *ranked = NULL, *group = NULL;
    double *ap = NULL;
    mg_status s = MG_OK;

    /* image names and ground truth first (cheap errors before the model is loaded) */
    if (is_list) {
        s = mg_retrieval_read_list(a->queries, &qn, &nq);
        if (s == MG_OK) s = mg_retrieval_read_list(a->database, &dn, &ndb);
        if (s == MG_OK) s = mg_retrieval_gt_parse(a->gt, qn, nq, dn, ndb, &gt);
        if (s == MG_OK) s = resolve_paths(a->root, qn, nq, &qp);
        if (s == MG_OK) s = resolve_paths(a->root, dn, ndb, &dp);
    } else if (is_cd) {
        char *od = mg_path_join(a->root, "original"), *sd = mg_path_join(a->root, "strong");
        s = od && sd ? MG_OK : MG_FAIL(MG_ERR_NOMEM, "out of memory");
        if (s == MG_OK && (!mg_path_is_dir(od) || !mg_path_is_dir(sd)))
            s = MG_FAIL(MG_ERR_IO, "--root %s: Copydays needs the folders original/ and strong/", a->root);
        if (s == MG_OK) s = mg_image_list_open(od, &il);
        if (s == MG_OK) s = mg_image_list_open(sd, &sl);
        if (s == MG_OK && a->distractors) s = mg_image_list_open(a->distractors, &xl);
        free(od);
        free(sd);
        nq = sl.n;
        ndb = il.n + xl.n;
        qp = sl.paths;
        if (s == MG_OK && (il.n == 0 || nq == 0))
            s = MG_FAIL(MG_ERR_INVALID_ARG, "--root %s: original/ and strong/ must hold images", a->root);
        if (s == MG_OK) {
            dp = malloc((size_t)ndb * sizeof *dp); /* borrowed pointers: originals, then distractors */
            if (!dp) s = MG_FAIL(MG_ERR_NOMEM, "out of memory");
            for (int64_t i = 0; s == MG_OK && i < ndb; i++) dp[i] = i < il.n ? il.paths[i] : xl.paths[i - il.n];
        }
        if (s == MG_OK) s = copydays_gt(qp, nq, il.paths, il.n, ndb, &gt);
    } else {
        s = mg_image_list_open(a->root, &il);
        ndb = il.n;
        dp = il.paths;
        if (s == MG_OK && ndb == 0) s = MG_FAIL(MG_ERR_INVALID_ARG, "--root %s: no .jpg/.jpeg/.png images", a->root);
        if (s == MG_OK && is_hol) s = mg_retrieval_gt_holidays(dp, ndb, &gt);
        if (s == MG_OK && is_ukb) {
            group = malloc((size_t)ndb * sizeof *group);
            s = group ? mg_retrieval_ukbench_groups(dp, ndb, group) : MG_FAIL(MG_ERR_NOMEM, "out of memory");
        }
        nq = is_hol ? gt.n_queries : ndb;
    }
    if (s == MG_OK && a->rotate) {
        s = rot_read(a->rotate, &rot);
        have_rot = s == MG_OK;
    }
    if (s == MG_OK) s = mg_model_load(a->checkpoint, &m, NULL);
    if (s == MG_OK && a->p > 0) s = mg_model_set_p(m, (float)a->p);
    int dim = m ? mg_model_embedding_dim(m) : 0;
    if (s == MG_OK && a->whiten) {
        s = mg_whiten_load(a->whiten, &wh);
        if (s == MG_OK && wh.dim_in != dim)
            s = MG_FAIL(MG_ERR_INVALID_ARG, "--whiten %s: the whitening takes %lld-d embeddings but %s gives %d-d ones",
                        a->whiten, (long long)wh.dim_in, a->checkpoint, dim);
        if (s == MG_OK) dim = (int)wh.dim_out;
    }
    embedder e = {.m = m, .max_side = a->max_side, .rot = have_rot ? &rot : NULL, .wh = a->whiten ? &wh : NULL, .dim = dim};
    if (s == MG_OK) {
        de = malloc((size_t)ndb * (size_t)dim * sizeof *de);
        qe = malloc((size_t)(nq ? nq : 1) * (size_t)dim * sizeof *qe);
        ap = calloc((size_t)(nq ? nq : 1), sizeof *ap);
        if (!de || !qe || !ap) s = MG_FAIL(MG_ERR_NOMEM, "out of memory");
    }
    if (s == MG_OK) s = embed_images(&e, dp, ndb, "database", de);
    if (s == MG_OK && sep_q) s = embed_images(&e, qp, nq, "queries", qe);
    if (s == MG_OK && is_hol)
        for (int64_t q = 0; q < nq; q++) memcpy(qe + q * dim, de + gt.query_self[q] * dim, (size_t)dim * sizeof *qe);
    if (s == MG_OK && is_ukb) memcpy(qe, de, (size_t)ndb * (size_t)dim * sizeof *qe);
    if (s == MG_OK && have_rot)
        for (int64_t k = 0; k < rot.n; k++)
            if (!rot.used[k]) mg_log_warn("--rotate %s: '%s' is not one of the images", a->rotate, rot.names[k]);
    if (s == MG_OK && a->co.save_db) {
        s = save_embeddings(a->co.save_db, de, ndb, dim, dp);
        if (s == MG_OK && sep_q) {
            size_t len = strlen(a->co.save_db);
            char *qpath = malloc(len + 16);
            if (!qpath) s = MG_FAIL(MG_ERR_NOMEM, "out of memory");
            else {
                memcpy(qpath, a->co.save_db, len + 1);
                if (len > 4 && !strcmp(qpath + len - 4, ".npy")) qpath[len - 4] = '\0';
                strcat(qpath, ".queries.npy");
                s = save_embeddings(qpath, qe, nq, dim, qp);
                free(qpath);
            }
        }
    }
    /* rank: the whole database for list / holidays, the first 4 for ukbench */
    int k = is_ukb ? 4 : (int)ndb;
    if (s == MG_OK && ndb > INT32_MAX) s = MG_FAIL(MG_ERR_INVALID_ARG, "retrieval-eval: database too large");
    if (s == MG_OK && ndb < k) s = MG_FAIL(MG_ERR_INVALID_ARG, "retrieval-eval: fewer than %d database images", k);
    if (s == MG_OK) {
        ranked = malloc((size_t)nq * (size_t)k * sizeof *ranked);
        s = ranked ? mg_knn_search(de, ndb, qe, nq, dim, k, NULL, ranked, NULL) : MG_FAIL(MG_ERR_NOMEM, "out of memory");
    }
    double score = 0;
    if (s == MG_OK && !is_ukb) s = mg_retrieval_map(&gt, ranked, k, a->ap, ap, &score);
    if (s == MG_OK && is_ukb) {
        s = mg_retrieval_ns_score(group, ndb, group, nq, ranked, k, &score);
        for (int64_t q = 0; s == MG_OK && q < nq; q++)
            for (int r = 0; r < 4; r++) ap[q] += group[ranked[q * k + r]] == group[q];
    }
    if (s == MG_OK && a->out) {
        char **names = is_list ? qn : is_cd ? qp : dp; /* list mode: the names as written in --queries */
        size_t cap = 64;
        for (int64_t q = 0; q < nq; q++) cap += strlen(names[is_hol ? gt.query_self[q] : q]) + 40;
        char *buf = malloc(cap), *p = buf;
        if (!buf) s = MG_FAIL(MG_ERR_NOMEM, "out of memory");
        else {
            p += sprintf(p, "query\t%s\n", is_ukb ? "ns" : "ap");
            for (int64_t q = 0; q < nq; q++)
                p += sprintf(p, "%s\t%.9g\n", names[is_hol ? gt.query_self[q] : q], ap[q]);
            s = mg_file_write_atomic(a->out, buf, (size_t)(p - buf));
            free(buf);
        }
    }
    if (s == MG_OK) {
        if (is_ukb)
            printf("ukbench: %lld images (max side %d, p %.6g%s): N-S score %.4f\n", (long long)ndb, a->max_side,
                   (double)mg_model_get_p(m), a->whiten ? ", whitened" : "", score);
        else
            printf("%s: %lld queries against %lld images (max side %d, p %.6g%s): mAP %.2f%% (%s AP)\n", ds,
                   (long long)nq, (long long)ndb, a->max_side, (double)mg_model_get_p(m), a->whiten ? ", whitened" : "",
                   100 * score, a->ap == MG_AP_STANDARD ? "standard" : "trapezoid");
        printf("result: {'%s': %.6f}\n", is_ukb ? "ns_score" : "mAP", score);
    }
    free(qe);
    free(de);
    free(ranked);
    free(group);
    free(ap);
    if (have_rot) rot_free(&rot);
    mg_whiten_free(&wh);
    mg_model_free(m);
    mg_retrieval_gt_free(&gt);
    if (is_list) {
        if (qn) mg_retrieval_free_list(qn, nq);
        if (dn) mg_retrieval_free_list(dn, ndb);
        if (qp) mg_retrieval_free_list(qp, nq);
        if (dp) mg_retrieval_free_list(dp, ndb);
    } else {
        if (is_cd) free(dp);
        mg_image_list_free(&il);
        mg_image_list_free(&sl);
        mg_image_list_free(&xl);
    }
    return s;
}

mg_status mg_cmd_retrieval_eval(int argc, char **argv) {
    const mg_command *cmd = mg_command_find("retrieval-eval");
    reval_args a = {0};
    a.max_side = 224;
    a.ap = MG_AP_TRAPEZOID;
    mg_copy_eval_opts_default(&a.co);
    int first = 0, help = 0;
    MG_TRY(mg_cli_parse(cmd, argc, argv, "c:j:", reval_longopts, reval_on_opt, &a, &first, &help));
    if (help) return MG_OK;
    if (first < argc) return MG_FAIL(MG_ERR_USAGE, "retrieval-eval: unexpected argument '%s'", argv[first]);
    if (!a.checkpoint || !a.dataset)
        return MG_FAIL(MG_ERR_USAGE, "retrieval-eval: --checkpoint and --dataset are required");
    if (!strcmp(a.dataset, "list") || !strcmp(a.dataset, "holidays") || !strcmp(a.dataset, "ukbench") ||
        !strcmp(a.dataset, "copydays")) {
        MG_TRY(mg_ops_set_threads(a.threads));
        return run_image_benchmark(&a);
    }
    if (strcmp(a.dataset, "copies") != 0)
        return MG_FAIL(MG_ERR_USAGE, "--dataset: expected copies, list, holidays, ukbench or copydays, found '%s'", a.dataset);
    if (!a.root) return MG_FAIL(MG_ERR_USAGE, "retrieval-eval --dataset copies: --root is required");
    if (a.gt || a.whiten || a.rotate || a.out || a.p > 0 || a.distractors)
        return MG_FAIL(MG_ERR_USAGE,
                       "retrieval-eval --dataset copies: --gt, --whiten, --rotate, --out, --distractors and --p are not used here");
    if (a.queries) MG_TRY(mg_parse_int64(a.queries, 1, INT64_C(1) << 40, "--queries", MG_ERR_USAGE, &a.co.n_queries));
    if (a.database) MG_TRY(mg_parse_int64(a.database, 2, INT64_C(1) << 40, "--database", MG_ERR_USAGE, &a.co.n_db));
    if (a.co.n_queries > a.co.n_db) a.co.n_queries = a.co.n_db;
    MG_TRY(mg_ops_set_threads(a.threads));
    mg_model *m = NULL;
    MG_TRY(mg_model_load(a.checkpoint, &m, NULL));
    mg_dataset ds;
    mg_status s = mg_dataset_open_split(a.root, "val", 0, &ds);
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
