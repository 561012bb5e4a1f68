/* cmd_train.c: `multigrain train`: command-line parsing, the effective configuration (file, --set
 * overrides, option shortcuts), --print-lr, and the checks and run-folder set-up before training. */
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/fileio.h"
#include "core/log.h"
#include "core/parse.h"
#include "core/progress.h"
#include "core/threadpool.h"
#include "multigrain/config.h"
#include "multigrain/dist.h"
#include "multigrain/schedule.h"
#include "multigrain/trainer.h"

#define IMAGENET_TRAIN_IMAGES 1281167

typedef struct train_args {
    const char *config;
    const char *data;
    const char *out;
    const char *resume;
    /* option shortcuts for config keys: the text as given (NULL = not given), checked when parsed */
    const char *batch_size, *epochs, *lr, *threads, *seed;
    bool print_lr;
    int64_t steps_per_epoch; /* 0 = from train_images */
    int64_t train_images;
    int64_t lr_every;
    const char *init_from;
    int64_t max_steps, limit_train, limit_val;
    const char *sets[64];
    int n_sets;
} train_args;

enum {
    OPT_RESUME = 256, OPT_SET, OPT_EPOCHS, OPT_LR, OPT_SEED, OPT_PRINT_LR, OPT_SPE, OPT_IMAGES, OPT_LR_EVERY,
    OPT_INIT_FROM, OPT_MAX_STEPS, OPT_LIMIT_TRAIN, OPT_LIMIT_VAL
};

static const struct option train_longopts[] = {
    {"config", required_argument, NULL, 'c'},  {"data", required_argument, NULL, 'd'},
    {"out", required_argument, NULL, 'o'},     {"resume", required_argument, NULL, OPT_RESUME},
    {"set", required_argument, NULL, OPT_SET}, {"batch-size", required_argument, NULL, 'b'},
    {"epochs", required_argument, NULL, OPT_EPOCHS}, {"lr", required_argument, NULL, OPT_LR},
    {"threads", required_argument, NULL, 'j'}, {"seed", required_argument, NULL, OPT_SEED},
    {"print-lr", no_argument, NULL, OPT_PRINT_LR}, {"steps-per-epoch", required_argument, NULL, OPT_SPE},
    {"train-images", required_argument, NULL, OPT_IMAGES}, {"lr-every", required_argument, NULL, OPT_LR_EVERY},
    {"init-from", required_argument, NULL, OPT_INIT_FROM}, {"max-steps", required_argument, NULL, OPT_MAX_STEPS},
    {"limit-train", required_argument, NULL, OPT_LIMIT_TRAIN}, {"limit-val", required_argument, NULL, OPT_LIMIT_VAL},
    {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0}};

static mg_status train_on_opt(void *ctx, int opt, const char *name, const char *arg) {
    train_args *a = ctx;
    int iv;
    double dv;
    int64_t lv;
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
    case 'b': a->batch_size = arg; return mg_parse_int(arg, 1, 1 << 20, name, MG_ERR_USAGE, &iv);
    case OPT_EPOCHS: a->epochs = arg; return mg_parse_int(arg, 1, 100000, name, MG_ERR_USAGE, &iv);
    case OPT_LR: a->lr = arg; return mg_parse_double(arg, 0.0, 100.0, name, MG_ERR_USAGE, &dv);
    case 'j': a->threads = arg; return mg_parse_int(arg, 0, 1024, name, MG_ERR_USAGE, &iv);
    case OPT_SEED: a->seed = arg; return mg_parse_int64(arg, 0, INT64_MAX, name, MG_ERR_USAGE, &lv);
    case OPT_PRINT_LR: a->print_lr = true; return MG_OK;
    case OPT_SPE: return mg_parse_int64(arg, 1, INT64_C(1) << 40, name, MG_ERR_USAGE, &a->steps_per_epoch);
    case OPT_IMAGES: return mg_parse_int64(arg, 1, INT64_C(1) << 40, name, MG_ERR_USAGE, &a->train_images);
    case OPT_LR_EVERY: return mg_parse_int64(arg, 1, INT64_C(1) << 40, name, MG_ERR_USAGE, &a->lr_every);
    case OPT_INIT_FROM: a->init_from = arg; return MG_OK;
    case OPT_MAX_STEPS: return mg_parse_int64(arg, 1, INT64_C(1) << 40, name, MG_ERR_USAGE, &a->max_steps);
    case OPT_LIMIT_TRAIN: return mg_parse_int64(arg, 1, INT64_C(1) << 40, name, MG_ERR_USAGE, &a->limit_train);
    case OPT_LIMIT_VAL: return mg_parse_int64(arg, 1, INT64_C(1) << 40, name, MG_ERR_USAGE, &a->limit_val);
    default: return MG_FAIL(MG_ERR_USAGE, "train: unhandled option %s", name);
    }
}

/* The effective configuration: defaults < config file < --set (in order) < option shortcuts. */
static mg_status train_build_config(const train_args *a, mg_config *cfg) {
    mg_config_init(cfg);
    if (a->config) MG_TRY(mg_config_load_file(cfg, a->config));
    for (int i = 0; i < a->n_sets; i++) MG_TRY(mg_config_set(cfg, a->sets[i]));
    const struct {
        const char *text, *key, *option;
    } shortcuts[] = {{a->batch_size, "batch_size", "--batch-size"}, {a->epochs, "epochs", "--epochs"},
                     {a->lr, "lr", "--lr"},                         {a->threads, "threads", "--threads"},
                     {a->seed, "seed", "--seed"}};
    for (size_t i = 0; i < sizeof shortcuts / sizeof shortcuts[0]; i++)
        if (shortcuts[i].text)
            MG_TRY(mg_config_set_value(cfg, shortcuts[i].key, shortcuts[i].text, shortcuts[i].option, MG_ERR_USAGE));
    return mg_config_validate(cfg);
}

static mg_status train_print_lr(const train_args *a, const mg_config *cfg) {
    int64_t spe = a->steps_per_epoch;
    if (!spe) spe = mg_schedule_steps_per_epoch(a->train_images, cfg->epoch_len_factor, cfg->batch_size);
    mg_schedule sched;
    MG_TRY(mg_schedule_init(&sched, cfg, spe));
    if (!a->steps_per_epoch)
        printf("# steps per epoch = ceil(int(%" PRId64 " images * epoch_len_factor %g) / batch_size %d) = %" PRId64
               " (--steps-per-epoch or --train-images to change)\n",
               a->train_images, cfg->epoch_len_factor, cfg->batch_size, spe);
    MG_TRY(mg_schedule_print(&sched, stdout, a->lr_every, cfg->optimizer == MG_OPTIMIZER_THOR));
    if (fflush(stdout) != 0) return MG_FAIL(MG_ERR_IO, "--print-lr: cannot write to standard output");
    return MG_OK;
}

/* An error every rank of the group detected: each rank prints its message here, then waits for the
 * others before anyone exits. Left to main, the first rank to exit non-zero made the launcher kill the
 * others before they had printed theirs (a flaky mpi/test_broadcast_config). */
static void report_together(mg_dist *dist) {
    fprintf(stderr, "multigrain: %s\n", mg_error_message());
    fflush(stderr);
    if (mg_dist_barrier(dist) != MG_OK) fprintf(stderr, "multigrain: %s\n", mg_error_message());
    mg_error_mark_reported();
}

/* Ends the process group. An error that the other ranks may not have seen (they could be waiting in a
 * collective for this rank) ends the whole job: the message is printed here, naming the rank, and
 * MPI_Abort stops every rank with the exit code. Errors every rank detected together end normally,
 * each rank printing its own message (report_together). */
static mg_status train_finish(mg_dist *dist, mg_status s, bool together) {
    int world = mg_dist_world(dist);
    if (s != MG_OK && world > 1) {
        int rank = mg_dist_rank(dist);
        if (!together) {
            fprintf(stderr, "multigrain: rank %d: %s\n", rank, mg_error_message());
            fprintf(stderr, "multigrain: rank %d: stopping all %d ranks\n", rank, world);
            mg_dist_abort(dist, mg_status_exit_code(s)); /* does not return with several ranks */
            return s;
        }
        mg_error_wrap(s, "rank %d", rank);
        report_together(dist);
    }
    mg_dist_free(dist);
    return s;
}

mg_status mg_cmd_train(int argc, char **argv) {
    const mg_command *cmd = mg_command_find("train");
    train_args a = {0};
    a.train_images = IMAGENET_TRAIN_IMAGES;
    int first = 0, help = 0;
    MG_TRY(mg_cli_parse(cmd, argc, argv, "c:d:o:b:j:", train_longopts, train_on_opt, &a, &first, &help));
    if (help) return MG_OK;
    if (first < argc) return MG_FAIL(MG_ERR_USAGE, "train: unexpected argument '%s'", argv[first]);

    mg_config cfg;
    MG_TRY(train_build_config(&a, &cfg));
    if (a.print_lr) return train_print_lr(&a, &cfg);

    if (!a.data) return MG_FAIL(MG_ERR_USAGE, "train: --data ROOT is required (a folder holding train/ and val/)");
    if (!a.out) return MG_FAIL(MG_ERR_USAGE, "train: --out RUN_DIR is required");
    if (!mg_path_is_dir(a.data))
        return MG_FAIL(MG_ERR_IO, "train: --data '%s' does not exist or is not a folder", a.data);
    char *train_dir = mg_path_join(a.data, "train");
    char *idx = mg_path_join(a.data, "train-images-idx3-ubyte");
    if (!train_dir || !idx) {
        free(train_dir);
        free(idx);
        return MG_FAIL(MG_ERR_NOMEM, "train: out of memory");
    }
    bool has_train = mg_path_is_dir(train_dir) || mg_path_exists(idx);
    free(train_dir);
    free(idx);
    if (!has_train)
        return MG_FAIL(MG_ERR_IO,
                       "train: --data '%s' has no train/ folder (expected ROOT/train/<class>/*.jpg) and no "
                       "train-images-idx3-ubyte file",
                       a.data);
    if (cfg.optimizer == MG_OPTIMIZER_THOR)
        return MG_FAIL(MG_ERR_NOT_IMPLEMENTED, "train: optimizer 'thor' is not implemented yet in this version");
    /* Data parallel: MPI starts here when an MPI launcher (mpirun, srun) started this process; a plain
     * run gets the single-process group. Only rank 0 writes files and prints the step lines. */
    mg_dist *dist = NULL;
    MG_TRY(mg_dist_init(&dist, NULL, NULL));
    mg_dist_set_timeout(dist, cfg.dist_timeout);
    mg_dist_set_bucket_bytes(dist, (size_t)(cfg.dist_bucket_mb * 1048576.0));
    int rank = mg_dist_rank(dist);
    if (rank != 0) {
        if (mg_log_get_level() < MG_LOG_DEBUG) mg_log_set_level(MG_LOG_WARN); /* warnings and errors only */
        mg_progress_set_enabled_default(false);
    }
    mg_status s = mg_dist_sync_settings(dist);
    if (s != MG_OK) return train_finish(dist, s, false);
    s = mg_train_check_config_ranks(dist, &cfg);
    if (s == MG_ERR_CONFIG) { /* every rank saw the mismatch: a normal exit on all of them */
        report_together(dist);  /* the message names the rank */
        mg_dist_free(dist);
        return s;
    }
    if (s != MG_OK) return train_finish(dist, s, false); /* the collective itself failed */
    if (rank == 0) {
        s = mg_dir_create(a.out);
        char *cfg_path = s == MG_OK ? mg_path_join(a.out, "config.yaml") : NULL;
        if (s == MG_OK && !cfg_path) s = MG_FAIL(MG_ERR_NOMEM, "train: out of memory");
        if (s == MG_OK) s = mg_config_write_file(&cfg, cfg_path);
        if (s == MG_OK)
            mg_log_info("train: effective config written to %s (hash %016" PRIx64 ")", cfg_path, mg_config_hash(&cfg));
        free(cfg_path);
    }
    if (s == MG_OK) s = mg_pool_global_set_threads(cfg.threads);
    char *yaml = NULL;
    size_t yaml_len = 0;
    if (s == MG_OK) s = mg_config_to_yaml(&cfg, &yaml, &yaml_len);
    if (s != MG_OK) return train_finish(dist, s, false);
    mg_train_opts o = {.cfg = &cfg,
                       .dist = dist,
                       .data = a.data,
                       .out = a.out,
                       .resume = a.resume,
                       .init_from = a.init_from,
                       .config_text = yaml,
                       .max_steps = a.max_steps,
                       .limit_train = a.limit_train,
                       .limit_val = a.limit_val};
    mg_train_summary sum;
    s = mg_train_run(&o, &sum);
    free(yaml);
    if (s != MG_OK) return train_finish(dist, s, sum.failed_together);
    if (rank == 0) {
        mg_log_info("train: done: %" PRId64 " steps, %" PRId64 " epochs, last loss %.4f", sum.steps, sum.epochs,
                    sum.last_loss);
        if (sum.top1 >= 0) mg_log_info("train: top-1 %.2f%%, top-5 %.2f%%", 100 * sum.top1, 100 * sum.top5);
        if (sum.checkpoint[0]) mg_log_info("train: last checkpoint %s", sum.checkpoint);
    }
    return train_finish(dist, s, true);
}
