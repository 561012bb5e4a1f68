/* cli_image.c: shared test-time image options and single-image forward (see cli_image.h). */
#include "cli/cli_image.h"

#include <stdlib.h>
#include <string.h>

#include "core/parse.h"
#include "multigrain/ops.h"

void mg_cli_image_opts_default(mg_cli_image_opts *o, mg_eval_mode mode) {
    memset(o, 0, sizeof *o);
    o->mode = mode;
    o->size = 224;
    o->max_side = 224;
}

mg_status mg_cli_image_opt(mg_cli_image_opts *o, int opt, const char *name, const char *arg) {
    switch (opt) {
    case 'm':
        if (!strcmp(arg, "crop")) o->mode = MG_EVAL_CROP;
        else if (!strcmp(arg, "rect")) o->mode = MG_EVAL_RECT;
        else return MG_FAIL(MG_ERR_USAGE, "%s: expected crop or rect, found '%s'", name, arg);
        return MG_OK;
    case 's': return mg_parse_int(arg, 16, 4096, name, MG_ERR_USAGE, &o->size);
    case 'x':
        o->mode = MG_EVAL_RECT;
        return mg_parse_int(arg, 16, 4096, name, MG_ERR_USAGE, &o->max_side);
    case 'p': return mg_parse_double(arg, 0.01, 100.0, name, MG_ERR_USAGE, &o->p);
    case 'j': return mg_parse_int(arg, 0, 1024, name, MG_ERR_USAGE, &o->threads);
    default: return MG_FAIL(MG_ERR_USAGE, "unhandled option %s", name);
    }
}

mg_status mg_cli_image_apply_threads(const mg_cli_image_opts *o) { return mg_ops_set_threads(o->threads); }

mg_status mg_cli_image_forward(mg_model *m, const mg_cli_image_opts *o, const char *path, mg_model_outputs *out) {
    float *x = NULL;
    int w = 0, h = 0;
    MG_TRY(mg_image_load_tensor(path, o->mode, o->mode == MG_EVAL_CROP ? o->size : o->max_side, &x, &w, &h));
    mg_status s = mg_model_forward(m, MG_MODE_INFER, x, 1, h, w, out);
    if (s != MG_OK) mg_error_wrap(s, "%s", path);
    free(x);
    return s;
}
