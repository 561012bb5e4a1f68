/* cmd_train.c: `multigrain train`: command-line parsing into the training options. */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "cli/cli.h"
#include "core/parse.h"
#include "core/threadpool.h"

typedef struct train_args {
    const char *config;
    const char *data;
    const char *out;
    const char *resume;
    int batch_size; /* 0 = from config */
    int epochs;
    double lr;
    int threads;
    int64_t seed;
    bool print_lr;
    const char *sets[64];
    int n_sets;
} train_args;

enum { OPT_RESUME = 256, OPT_SET, OPT_EPOCHS, OPT_LR, OPT_SEED, OPT_PRINT_LR };

static const struct option train_longopts[] = {
    {"config", required_argument, NULL, 'c'},  {"data", required_argument, NULL, 'd'},
    {"out", required_argument, NULL, 'o'},     {"resume", required_argument, NULL, OPT_RESUME},
    {"set", required_argument, NULL, OPT_SET}, {"batch-size", required_argument, NULL, 'b'},
    {"epochs", required_argument, NULL, OPT_EPOCHS}, {"lr", required_argument, NULL, OPT_LR},
    {"threads", required_argument, NULL, 'j'}, {"seed", required_argument, NULL, OPT_SEED},
    {"print-lr", no_argument, NULL, OPT_PRINT_LR}, {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0}};

static mg_status train_on_opt(void *ctx, int opt, const char *name, const char *arg) {
    train_args *a = ctx;
    switch (opt) {
    case 'c': a->config = arg; return MG_OK;
    case 'd': a->data = arg; return MG_OK;
    case 'o': a->out = arg; return MG_OK;
    case OPT_RESUME: a->resume = arg; return MG_OK;
    case OPT_SET:
        if (!strchr(arg, '=') || arg[0] == '=')
            return MG_FAIL(MG_ERR_USAGE, "%s: expected KEY=VALUE, found '%s'", name, arg);
        if (a->n_sets == (int)(sizeof a->sets / sizeof a->sets[0]))
            return MG_FAIL(MG_ERR_USAGE, "%s: at most %d overrides", name, a->n_sets);
        a->sets[a->n_sets++] = arg;
        return MG_OK;
    case 'b': return mg_parse_int(arg, 1, 1 << 20, name, MG_ERR_USAGE, &a->batch_size);
    case OPT_EPOCHS: return mg_parse_int(arg, 1, 100000, name, MG_ERR_USAGE, &a->epochs);
    case OPT_LR: return mg_parse_double(arg, 0.0, 100.0, name, MG_ERR_USAGE, &a->lr);
    case 'j': return mg_parse_int(arg, 0, 1024, name, MG_ERR_USAGE, &a->threads);
    case OPT_SEED: return mg_parse_int64(arg, 0, INT64_MAX, name, MG_ERR_USAGE, &a->seed);
    case OPT_PRINT_LR: a->print_lr = true; return MG_OK;
    default: return MG_FAIL(MG_ERR_USAGE, "train: unhandled option %s", name);
    }
}

mg_status mg_cmd_train(int argc, char **argv) {
    const mg_command *cmd = mg_command_find("train");
    train_args a = {0};
    a.lr = -1;
    int first = 0, help = 0;
    MG_TRY(mg_cli_parse(cmd, argc, argv, "c:d:o:b:j:", train_longopts, train_on_opt, &a, &first, &help));
    if (help) return MG_OK;
    if (first < argc) return MG_FAIL(MG_ERR_USAGE, "train: unexpected argument '%s'", argv[first]);
    MG_TRY(mg_pool_global_set_threads(a.threads));
    return MG_FAIL(MG_ERR_NOT_IMPLEMENTED, "train: training is not implemented yet in this version");
}
