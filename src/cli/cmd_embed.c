/* cmd_embed.c: `multigrain embed`: one L2-normalised embedding per image, written as an N x D
 * float32 .npy file (streamed: memory does not grow with N) plus a .txt list of the image paths.
 * D is the model's embedding dimension (D' for a whitened checkpoint). --whiten W applies a plain
 * embedding whitening file (whiten --embeddings) to those embeddings and re-normalises: D = W's D'.
 * --pooled writes the raw GeM vectors e [N, GeM dim] instead (input of whiten --fold-into). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cli_image.h"
#include "core/fileio.h"
#include "core/log.h"
#include "core/progress.h"
#include "eval/image_list.h"
#include "multigrain/model.h"
#include "multigrain/npy.h"
#include "multigrain/whiten.h"

typedef struct embed_args {
    const char *checkpoint, *images, *out, *whiten;
    int pooled;
    mg_cli_image_opts img;
} embed_args;

enum { OPT_P = 300, OPT_MODE, OPT_MAX_SIDE, OPT_SIZE, OPT_WHITEN, OPT_POOLED };

static const struct option embed_longopts[] = {
    {"checkpoint", required_argument, NULL, 'c'}, {"images", required_argument, NULL, 'i'},
    {"out", required_argument, NULL, 'o'},        {"p", required_argument, NULL, OPT_P},
    {"mode", required_argument, NULL, OPT_MODE},  {"max-side", required_argument, NULL, OPT_MAX_SIDE},
    {"size", required_argument, NULL, OPT_SIZE},  {"threads", required_argument, NULL, 'j'},
    {"whiten", required_argument, NULL, OPT_WHITEN}, {"pooled", no_argument, NULL, OPT_POOLED},
    {"help", no_argument, NULL, 'h'},             {NULL, 0, NULL, 0}};

static mg_status embed_on_opt(void *ctx, int opt, const char *name, const char *arg) {
    embed_args *a = ctx;
    switch (opt) {
    case 'c': a->checkpoint = arg; return MG_OK;
    case 'i': a->images = arg; return MG_OK;
    case 'o': a->out = arg; return MG_OK;
    case OPT_WHITEN: a->whiten = arg; return MG_OK;
    case OPT_POOLED: a->pooled = 1; return MG_OK;
    default: return mg_cli_image_opt(&a->img, opt == OPT_P ? 'p' : opt == OPT_MODE ? 'm' : opt == OPT_MAX_SIDE ? 'x' : opt == OPT_SIZE ? 's' : opt, name, arg);
    }
}

static char *txt_path_for(const char *npy) {
    size_t n = strlen(npy);
    char *t = malloc(n + 5);
    if (!t) return NULL;
    memcpy(t, npy, n + 1);
    if (n > 4 && !strcmp(t + n - 4, ".npy")) t[n - 4] = '\0';
    strcat(t, ".txt");
    return t;
}

mg_status mg_cmd_embed(int argc, char **argv) {
    const mg_command *cmd = mg_command_find("embed");
    embed_args a = {0};
    mg_cli_image_opts_default(&a.img, MG_EVAL_RECT);
    int first = 0, help = 0;
    MG_TRY(mg_cli_parse(cmd, argc, argv, "c:i:o:j:", embed_longopts, embed_on_opt, &a, &first, &help));
    if (help) return MG_OK;
    if (first < argc) return MG_FAIL(MG_ERR_USAGE, "embed: unexpected argument '%s'", argv[first]);
    if (!a.checkpoint || !a.images || !a.out)
        return MG_FAIL(MG_ERR_USAGE, "embed: --checkpoint, --images and --out are required");
    if (a.whiten && a.pooled)
        return MG_FAIL(MG_ERR_USAGE, "embed: --whiten applies to the normalised embeddings, not to --pooled output");
    MG_TRY(mg_cli_image_apply_threads(&a.img));
    mg_image_list list;
    MG_TRY(mg_image_list_open(a.images, &list));
    mg_model *m = NULL;
    mg_npy_writer *w = NULL;
    char *txt = txt_path_for(a.out);
    mg_atomic_file tf = {0};
    mg_whiten wh = {0};
    float *wrow = NULL;
    mg_status s = txt ? MG_OK : MG_FAIL(MG_ERR_NOMEM, "embed: out of memory");
    if (s == MG_OK) s = mg_model_load(a.checkpoint, &m, NULL);
    if (s == MG_OK && a.img.p > 0) s = mg_model_set_p(m, (float)a.img.p);
    int dim = m ? (a.pooled ? mg_model_pooled_dim(m) : mg_model_embedding_dim(m)) : 0;
    if (s == MG_OK && a.whiten) {
        s = mg_whiten_load(a.whiten, &wh);
        if (s == MG_OK && wh.dim_in != dim)
            s = MG_FAIL(MG_ERR_INVALID_ARG,
                        "--whiten %s: the whitening takes %lld-d embeddings but %s gives %d-d ones (learn it with "
                        "whiten --embeddings on this checkpoint's embed output)",
                        a.whiten, (long long)wh.dim_in, a.checkpoint, dim);
        if (s == MG_OK) {
            dim = (int)wh.dim_out;
            wrow = malloc((size_t)dim * sizeof *wrow);
            if (!wrow) s = MG_FAIL(MG_ERR_NOMEM, "embed: out of memory");
        }
    }
    if (s == MG_OK) s = mg_npy_writer_open(&w, a.out, list.n, dim);
    if (s == MG_OK) s = mg_atomic_file_open(&tf, txt);
    mg_progress bar;
    mg_progress_init(&bar, "embed", list.n, "img");
    for (int64_t i = 0; s == MG_OK && i < list.n; i++) {
        mg_model_outputs o;
        s = mg_cli_image_forward(m, &a.img, list.paths[i], &o);
        const float *row = a.pooled ? o.pooled : o.embedding;
        if (s == MG_OK && a.whiten) {
            s = mg_whiten_apply(&wh, o.embedding, 1, wrow); /* l2n((x - m) P) */
            row = wrow;
        }
        if (s == MG_OK) s = mg_npy_writer_append(w, row, 1);
        if (s == MG_OK) s = mg_atomic_file_write(&tf, list.paths[i], strlen(list.paths[i]));
        if (s == MG_OK) s = mg_atomic_file_write(&tf, "\n", 1);
        mg_progress_update(&bar, i + 1, NULL);
    }
    mg_progress_finish(&bar, NULL);
    if (s == MG_OK) {
        s = mg_npy_writer_commit(w);
        w = NULL;
    }
    if (s == MG_OK) s = mg_atomic_file_commit(&tf);
    if (s == MG_OK)
        mg_log_info("embed: %lld %s of dimension %d written to %s (paths in %s)", (long long)list.n,
                    a.pooled ? "raw GeM vectors" : a.whiten ? "whitened embeddings" : "embeddings", dim, a.out, txt);
    if (w) mg_npy_writer_abort(w);
    if (s != MG_OK && tf.fp) mg_atomic_file_abort(&tf);
    free(txt);
    free(wrow);
    mg_whiten_free(&wh);
    mg_model_free(m);
    mg_image_list_free(&list);
    return s;
}
