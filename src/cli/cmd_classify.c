/* cmd_classify.c: `multigrain classify`: the top-k classes and probabilities of each image. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cli_image.h"
#include "core/parse.h"
#include "multigrain/model.h"

typedef struct classify_args {
    const char *checkpoint;
    int top;
    mg_cli_image_opts img;
} classify_args;

enum { OPT_P = 300, OPT_MODE, OPT_MAX_SIDE, OPT_SIZE, OPT_TOP };

static const struct option classify_longopts[] = {
    {"checkpoint", required_argument, NULL, 'c'}, {"p", required_argument, NULL, OPT_P},
    {"mode", required_argument, NULL, OPT_MODE},  {"max-side", required_argument, NULL, OPT_MAX_SIDE},
    {"size", required_argument, NULL, OPT_SIZE},  {"top", required_argument, NULL, OPT_TOP},
    {"threads", required_argument, NULL, 'j'},    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0}};

static mg_status classify_on_opt(void *ctx, int opt, const char *name, const char *arg) {
    classify_args *a = ctx;
    switch (opt) {
    case 'c': a->checkpoint = arg; return MG_OK;
    case OPT_TOP: return mg_parse_int(arg, 1, 1000000, name, MG_ERR_USAGE, &a->top);
    default:
        return mg_cli_image_opt(&a->img,
                                opt == OPT_P ? 'p' : opt == OPT_MODE ? 'm' : opt == OPT_MAX_SIDE ? 'x'
                                                 : opt == OPT_SIZE ? 's' : opt,
                                name, arg);
    }
}

mg_status mg_cmd_classify(int argc, char **argv) {
    const mg_command *cmd = mg_command_find("classify");
    classify_args a = {.top = 5};
    mg_cli_image_opts_default(&a.img, MG_EVAL_CROP);
    int first = 0, help = 0;
    MG_TRY(mg_cli_parse(cmd, argc, argv, "c:j:", classify_longopts, classify_on_opt, &a, &first, &help));
    if (help) return MG_OK;
    if (!a.checkpoint) return MG_FAIL(MG_ERR_USAGE, "classify: --checkpoint is required");
    if (first >= argc) return MG_FAIL(MG_ERR_USAGE, "classify: no image given");
    MG_TRY(mg_cli_image_apply_threads(&a.img));
    mg_model *m = NULL;
    mg_checkpoint ck;
    MG_TRY(mg_model_load(a.checkpoint, &m, &ck));
    int k = mg_model_num_classes(m);
    if (a.top > k) a.top = k;
    cJSON *names = ck.class_names_json ? cJSON_Parse(ck.class_names_json) : NULL;
    if (names && (!cJSON_IsArray(names) || cJSON_GetArraySize(names) != k)) {
        cJSON_Delete(names);
        names = NULL; /* class names absent or inconsistent: print indices */
    }
    double *prob = malloc((size_t)k * sizeof *prob);
    int *order = malloc((size_t)k * sizeof *order);
    mg_status s = prob && order ? MG_OK : MG_FAIL(MG_ERR_NOMEM, "classify: out of memory");
    for (int i = first; s == MG_OK && i < argc; i++) {
        mg_model_outputs o;
        s = mg_cli_image_forward(m, &a.img, argv[i], &o);
        if (s != MG_OK) break;
        double mx = -INFINITY, sum = 0;
        for (int c = 0; c < k; c++) mx = fmax(mx, o.logits[c]);
        for (int c = 0; c < k; c++) sum += (prob[c] = exp(o.logits[c] - mx));
        for (int c = 0; c < k; c++) prob[c] /= sum;
        /* partial selection sort of the top entries (ties: lower class index first) */
        for (int c = 0; c < k; c++) order[c] = c;
        for (int t = 0; t < a.top; t++) {
            int best = t;
            for (int c = t + 1; c < k; c++)
                if (prob[order[c]] > prob[order[best]]) best = c;
            int tmp = order[t];
            order[t] = order[best];
            order[best] = tmp;
        }
        printf("%s\n", argv[i]);
        for (int t = 0; t < a.top; t++) {
            int c = order[t];
            const cJSON *nm = names ? cJSON_GetArrayItem(names, c) : NULL;
            if (nm && cJSON_IsString(nm))
                printf("  %d\t%.6f\t%s\n", c, prob[c], nm->valuestring);
            else
                printf("  %d\t%.6f\tclass %d\n", c, prob[c], c);
        }
    }
    cJSON_Delete(names);
    free(prob);
    free(order);
    mg_checkpoint_close(&ck);
    mg_model_free(m);
    return s;
}
