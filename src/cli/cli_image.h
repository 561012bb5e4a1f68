/* cli_image.h: what the image-consuming commands (embed, classify) share: the test-time
 * transform options (--mode crop|rect, --size, --max-side, --p, --threads) and running one image
 * through a model. */
#ifndef MG_CLI_CLI_IMAGE_H
#define MG_CLI_CLI_IMAGE_H

#include "multigrain/data.h"
#include "multigrain/model.h"

typedef struct mg_cli_image_opts {
    mg_eval_mode mode;
    int size;     /* crop: centre crop size (resize short side to 256/224 * size first) */
    int max_side; /* rect: longest side, no crop */
    double p;     /* GeM exponent override (0 = the checkpoint's) */
    int threads;  /* 0 = all cores */
} mg_cli_image_opts;

void mg_cli_image_opts_default(mg_cli_image_opts *o, mg_eval_mode mode);
/* Handles 'm' (--mode), 's' (--size), 'x' (--max-side), 'p' (--p), 'j' (--threads). */
mg_status mg_cli_image_opt(mg_cli_image_opts *o, int opt, const char *name, const char *arg);
mg_status mg_cli_image_apply_threads(const mg_cli_image_opts *o);
/* Decodes and transforms one image and runs the model in eval mode on it. */
mg_status mg_cli_image_forward(mg_model *m, const mg_cli_image_opts *o, const char *path, mg_model_outputs *out);

#endif
