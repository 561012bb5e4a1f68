/* train_run.c: the whole training run: datasets, threaded loader, schedule, steps, logs
 * (`epoch: E step: S, loss is L`, progress bar, metrics.jsonl), evaluation, checkpoints every
 * save_checkpoint_epochs keeping the newest keep_checkpoint_max, exact resume, and clean stops
 * (see include/multigrain/trainer.h). */
#include <dirent.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/fileio.h"
#include "core/log.h"
#include "core/progress.h"
#include "multigrain/data.h"
#include "multigrain/metrics_log.h"
#include "multigrain/ops.h"
#include "multigrain/schedule.h"
#include "multigrain/trainer.h"

static volatile sig_atomic_t g_stop;

void mg_train_request_stop(void) { g_stop = 1; }
static void on_signal(int sig) {
    (void)sig;
    g_stop = 1;
}

/* ---- datasets ---------------------------------------------------------------------------------- */

/* A labelled split (see mg_dataset_open_split). */
static mg_status open_split(const char *root, const char *split, int64_t limit, mg_dataset *ds) {
    MG_TRY(mg_dataset_open_split(root, split, limit, ds));
    if (!ds->labels) {
        mg_dataset_free(ds);
        return MG_FAIL(MG_ERR_FORMAT, "%s: the %s split has no labels", root, split);
    }
    return MG_OK;
}

static mg_aug_level aug_level(mg_augmentation a) {
    return a == MG_AUGMENTATION_NONE ? MG_AUG_NONE : a == MG_AUGMENTATION_TORCH ? MG_AUG_TORCH : MG_AUG_FULL;
}

/* ---- evaluation -------------------------------------------------------------------------------- */

/* Data parallel (d with world W > 1): every rank evaluates its share of each batch (the sampler
 * cuts each batch in W parts) and the counts are summed over the ranks, so every rank returns the
 * accuracy over the whole set (the same numbers as one process). */
static mg_status evaluate_dataset(mg_model *m, mg_dataset *ds, int size, double crop_fraction, int batch, int threads,
                                  mg_dist *d, double *top1, double *top5, int64_t *count) {
    mg_loader_cfg lc;
    mg_loader_cfg_default(&lc, false);
    lc.threads = threads > 0 ? threads : 2;
    lc.prefetch = 2;
    lc.transform.size = size;
    lc.transform.eval_mode = MG_EVAL_CROP;
    lc.transform.crop_fraction = crop_fraction;
    lc.sampler.batch = batch;
    lc.sampler.reps = 1;
    lc.sampler.len_factor = 1.0;
    lc.sampler.shuffle = false;
    lc.sampler.drop_last = false;
    lc.sampler.rank = mg_dist_rank(d);
    lc.sampler.world = mg_dist_world(d);
    mg_loader *ld = NULL;
    MG_TRY(mg_loader_init(&ld, ds, &lc));
    mg_status s = mg_loader_start_epoch(ld, 0);
    int64_t n = 0, c1 = 0, c5 = 0;
    int k = mg_model_num_classes(m);
    mg_progress bar;
    mg_progress_init(&bar, "eval", ds->n, "img");
    while (s == MG_OK) {
        const mg_batch *b = NULL;
        s = mg_loader_next(ld, &b);
        if (s != MG_OK || !b) break;
        if (b->n == 0) continue; /* an empty share of a small last batch */
        mg_model_outputs o;
        s = mg_model_forward(m, MG_MODE_INFER, b->images, b->n, b->h, b->w, &o);
        if (s != MG_OK) break;
        for (int i = 0; i < b->n; i++) {
            const float *l = o.logits + (size_t)i * k;
            int y = b->labels[i], rank = 0;
            /* rank of the true class: classes strictly above it, ties counted in its favour
             * only for lower indices (the order torch.topk returns for equal values) */
            for (int c = 0; c < k; c++)
                if (l[c] > l[y] || (l[c] == l[y] && c < y)) rank++;
            c1 += rank < 1;
            c5 += rank < 5;
        }
        n += b->n;
        mg_progress_update(&bar, n, NULL);
    }
    mg_progress_clear(&bar);
    mg_loader_free(ld);
    MG_TRY(s);
    if (mg_dist_world(d) > 1) {
        double v[3] = {(double)n, (double)c1, (double)c5};
        MG_TRY(mg_dist_allreduce_sum_f64(d, v, 3));
        n = (int64_t)v[0];
        c1 = (int64_t)v[1];
        c5 = (int64_t)v[2];
    }
    *top1 = n ? (double)c1 / (double)n : 0;
    *top5 = n ? (double)c5 / (double)n : 0;
    *count = n;
    return MG_OK;
}

mg_status mg_evaluate_accuracy(mg_model *m, const char *data, int size, double crop_fraction, int batch, int64_t limit,
                               int threads, double *top1, double *top5, int64_t *count) {
    if (crop_fraction < 0 || crop_fraction > 1)
        return MG_FAIL(MG_ERR_INVALID_ARG, "evaluate: crop fraction must be in (0, 1] (0 = classic 224/256), found %g",
                       crop_fraction);
    mg_dataset ds;
    MG_TRY(open_split(data, "val", limit, &ds));
    mg_status s = evaluate_dataset(m, &ds, size, crop_fraction, batch, threads, NULL, top1, top5, count);
    mg_dataset_free(&ds);
    return s;
}

/* ---- checkpoints ------------------------------------------------------------------------------- */

typedef struct run_state {
    const mg_train_opts *o;
    const mg_config *cfg;
    mg_model *m;
    mg_trainer *t;
    mg_dataset train, val;
    char *ckpt_dir;
    char *class_names_json;
    int64_t spe; /* optimizer steps per epoch */
    mg_dist *d;  /* data-parallel group (NULL = single process) */
    int world;
    bool root;   /* rank 0: the only rank that writes files and prints the step lines */
} run_state;

static char *class_names_json(const mg_dataset *ds) {
    size_t cap = 16;
    for (int c = 0; c < ds->n_classes; c++) cap += (ds->class_names ? strlen(ds->class_names[c]) * 6 : 12) + 4;
    char *out = malloc(cap), *p = out;
    if (!out) return NULL;
    *p++ = '[';
    for (int c = 0; c < ds->n_classes; c++) {
        if (c) *p++ = ',';
        *p++ = '"';
        if (ds->class_names) {
            for (const unsigned char *q = (const unsigned char *)ds->class_names[c]; *q; q++) {
                if (*q == '"' || *q == '\\') {
                    *p++ = '\\';
                    *p++ = (char)*q;
                } else if (*q < 0x20) {
                    p += sprintf(p, "\\u%04x", *q);
                } else {
                    *p++ = (char)*q;
                }
            }
        } else {
            p += sprintf(p, "%d", c);
        }
        *p++ = '"';
    }
    *p++ = ']';
    *p = '\0';
    return out;
}

static mg_status write_checkpoint(run_state *r, int64_t epoch, char *path_out, size_t cap) {
    int64_t step = mg_trainer_step_count(r->t);
    snprintf(path_out, cap, "%s/checkpoint_e%04" PRId64 "_s%08" PRId64 ".safetensors", r->ckpt_dir, epoch, step);
    mg_checkpoint_meta meta = {.arch = mg_model_arch(r->m),
                               .num_classes = mg_model_num_classes(r->m),
                               .p = mg_model_get_p(r->m),
                               .epoch = epoch,
                               .step = step,
                               .class_names_json = r->class_names_json,
                               .config = r->o->config_text,
                               .whitened = 0};
    mg_checkpoint_writer w;
    MG_TRY(mg_checkpoint_writer_init(&w, &meta));
    char seed[32];
    snprintf(seed, sizeof seed, "%" PRId64, r->cfg->seed);
    mg_status s = mg_checkpoint_writer_set_meta(&w, "seed", seed);
    if (s == MG_OK) s = mg_model_checkpoint_add(r->m, &w);
    if (s == MG_OK) s = mg_trainer_checkpoint_add(r->t, &w);
    if (s == MG_OK) s = mg_checkpoint_writer_commit(&w, path_out);
    mg_checkpoint_writer_free(&w);
    return s;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Sorted names of checkpoint files in a folder (names sort by epoch, then step). */
static mg_status list_checkpoints(const char *dir, char ***names, int *n) {
    *names = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) return MG_OK;
    int cap = 0;
    struct dirent *e;
    mg_status s = MG_OK;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (strncmp(e->d_name, "checkpoint_e", 12) != 0 || len < 12 || strcmp(e->d_name + len - 12, ".safetensors"))
            continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            char **nn = realloc(*names, (size_t)cap * sizeof *nn);
            if (!nn) {
                s = MG_FAIL(MG_ERR_NOMEM, "out of memory");
                break;
            }
            *names = nn;
        }
        (*names)[(*n)++] = strdup(e->d_name);
    }
    closedir(d);
    if (*n) qsort(*names, (size_t)*n, sizeof **names, cmp_str);
    return s;
}

static void free_names(char **names, int n) {
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
}

static void prune_checkpoints(run_state *r) {
    int keep = r->cfg->keep_checkpoint_max;
    if (keep <= 0) return;
    char **names;
    int n;
    if (list_checkpoints(r->ckpt_dir, &names, &n) != MG_OK) return;
    for (int i = 0; i + keep < n; i++) {
        char *p = mg_path_join(r->ckpt_dir, names[i]);
        if (p && unlink(p) == 0) mg_log_debug("removed old checkpoint %s", p);
        free(p);
    }
    free_names(names, n);
}

/* A resume target: a checkpoint file, or a run folder whose newest checkpoint is taken. */
static mg_status resolve_resume(const char *what, char *path, size_t cap) {
    if (!mg_path_is_dir(what)) {
        if (!mg_path_exists(what)) return MG_FAIL(MG_ERR_IO, "--resume: '%s' does not exist", what);
        snprintf(path, cap, "%s", what);
        return MG_OK;
    }
    char *dir = mg_path_join(what, "checkpoints");
    if (!dir) return MG_FAIL(MG_ERR_NOMEM, "out of memory");
    char **names;
    int n;
    mg_status s = list_checkpoints(dir, &names, &n);
    if (s == MG_OK && n == 0) s = MG_FAIL(MG_ERR_IO, "--resume: no checkpoint in %s", dir);
    if (s == MG_OK) snprintf(path, cap, "%s/%s", dir, names[n - 1]);
    if (s == MG_OK) free_names(names, n);
    free(dir);
    return s;
}

/* ---- the run ------------------------------------------------------------------------------------ */

static void run_free(run_state *r) {
    mg_trainer_free(r->t);
    mg_model_free(r->m);
    mg_dataset_free(&r->train);
    mg_dataset_free(&r->val);
    free(r->ckpt_dir);
    free(r->class_names_json);
}

static mg_status run_eval(run_state *r, double *top1, double *top5) {
    if (!r->val.n) return MG_OK;
    int64_t cnt = 0;
    /* per-rank BN: evaluate with rank 0's running statistics on every rank (the ones it saves) */
    if (!r->cfg->sync_bn) MG_TRY(mg_trainer_broadcast_buffers(r->t));
    mg_status s = evaluate_dataset(r->m, &r->val, r->cfg->input_size, r->cfg->eval_crop_pct, r->cfg->batch_size,
                                   r->cfg->workers, r->d, top1, top5, &cnt);
    if (s == MG_OK && r->root)
        printf("result: {'top_1_accuracy': %.6f, 'top_5_accuracy': %.6f} images= %" PRId64 "\n", *top1, *top5, cnt);
    fflush(stdout);
    return s;
}

/* ---- data parallel ------------------------------------------------------------------------------ */

mg_status mg_train_check_config_ranks(mg_dist *d, const mg_config *cfg) {
    int w = mg_dist_world(d), me = mg_dist_rank(d);
    if (w <= 1) return MG_OK;
    uint64_t h = mg_config_hash(cfg);
    uint64_t *all = calloc((size_t)w, sizeof *all);
    if (!all) return MG_FAIL(MG_ERR_NOMEM, "out of memory");
    mg_status s = mg_dist_allgather(d, &h, sizeof h, all);
    int differ = 0, first = -1;
    for (int r = 1; s == MG_OK && r < w; r++)
        if (all[r] != all[0]) {
            differ++;
            if (first < 0) first = r;
        }
    if (s == MG_OK && differ) {
        if (all[me] != all[0])
            s = MG_FAIL(MG_ERR_CONFIG,
                        "rank %d: config hash differs from rank 0 (%016llx here, %016llx on rank 0); all ranks must "
                        "use the same config (every key counts except threads, workers, prefetch, dist_timeout and "
                        "dist_bucket_mb)",
                        me, (unsigned long long)all[me], (unsigned long long)all[0]);
        else
            s = MG_FAIL(MG_ERR_CONFIG,
                        "rank %d: config hash of rank %d (%016llx) differs from rank 0 (%016llx), %d rank(s) in all; "
                        "all ranks must use the same config",
                        me, first, (unsigned long long)all[first], (unsigned long long)all[0], differ);
    }
    free(all);
    return s;
}

/* Every rank must get a non-empty share of every batch (the sampler cuts each global batch at
 * multiples of m). Deterministic: every rank reaches the same verdict without communicating. */
static mg_status check_shares(const mg_config *cfg, const mg_sampler_cfg *sampler, int64_t n_train, int world,
                              int64_t batches) {
    if (world <= 1) return MG_OK;
    if (cfg->batch_size % world != 0)
        return MG_FAIL(MG_ERR_CONFIG,
                       "batch_size (%d) must be a multiple of the number of ranks (%d): batch_size is the global batch, "
                       "each rank takes batch_size / ranks samples",
                       cfg->batch_size, world);
    mg_sampler_cfg sc = *sampler;
    sc.n = n_train;
    sc.world = world;
    for (int64_t b = 0; b < batches; b++) {
        for (int r = 0; r < world; r++) {
            int64_t begin, end;
            sc.rank = r;
            mg_sampler_batch_range(&sc, b, &begin, &end);
            if (end <= begin) {
                int64_t gb, ge;
                sc.rank = 0;
                mg_sampler_batch_range(&sc, b, &gb, &ge);
                sc.rank = world - 1;
                int64_t lb, le;
                mg_sampler_batch_range(&sc, b, &lb, &le);
                return MG_FAIL(MG_ERR_CONFIG,
                               "batch %lld of each epoch (%lld samples) leaves rank %d of %d without a sample (shares "
                               "are cut at multiples of m = %d); change batch_size or epoch_len_factor so that the "
                               "last batch of an epoch holds at least %d samples, or use fewer ranks",
                               (long long)b + 1, (long long)(le - gb), r, world, cfg->repeated_augmentations,
                               world * cfg->repeated_augmentations);
            }
        }
    }
    return MG_OK;
}

/* Test hooks (tests/mpi): MG_DIST_TEST_SEED_BY_RANK=1 initialises each rank's weights with seed + rank
 * before the broadcast; MG_DIST_TEST_NO_BROADCAST=1 skips the broadcast (the state check then fails). */
static bool env_flag(const char *name) {
    const char *v = getenv(name);
    return v && v[0] && v[0] != '0';
}

mg_status mg_train_run(const mg_train_opts *o, mg_train_summary *summary) {
    memset(summary, 0, sizeof *summary);
    summary->top1 = summary->top5 = -1;
    const mg_config *cfg = o->cfg;
    run_state r = {.o = o, .cfg = cfg, .d = o->dist};
    r.world = mg_dist_world(o->dist);
    r.root = mg_dist_rank(o->dist) == 0;
    int rank = mg_dist_rank(o->dist);
    mg_status s = MG_OK;
    MG_TRY(mg_ops_set_threads(cfg->threads));
    if (r.root) MG_TRY(mg_dir_create(o->out));
    r.ckpt_dir = mg_path_join(o->out, "checkpoints");
    if (!r.ckpt_dir) return MG_FAIL(MG_ERR_NOMEM, "out of memory");
    if (r.root) s = mg_dir_create(r.ckpt_dir);
    if (s == MG_OK) s = open_split(o->data, "train", o->limit_train, &r.train);
    if (s == MG_OK) {
        mg_status vs = open_split(o->data, "val", o->limit_val, &r.val);
        if (vs != MG_OK) {
            mg_log_warn("no validation split (%s): training without evaluation", mg_error_message());
            memset(&r.val, 0, sizeof r.val);
        }
    }
    if (s != MG_OK) {
        run_free(&r);
        return s;
    }
    int classes = cfg->num_classes;
    if (r.train.n_classes > classes) {
        run_free(&r);
        summary->failed_together = true; /* every rank reads the same dataset */
        return MG_FAIL(MG_ERR_CONFIG, "num_classes is %d but the training set %s has %d classes", classes, o->data,
                       r.train.n_classes);
    }
    r.class_names_json = class_names_json(&r.train);
    /* model: resume > init_from > fresh initialisation; with several ranks only rank 0 reads the
     * checkpoint and the others receive its state by broadcast (they need no access to the files) */
    char resume_path[4096] = "";
    mg_checkpoint ck;
    int have_ck = 0;
    if (o->resume && r.root) s = resolve_resume(o->resume, resume_path, sizeof resume_path);
    const char *load = resume_path[0] ? resume_path : o->init_from;
    if (s == MG_OK && load && r.root) {
        s = mg_model_load(load, &r.m, &ck);
        if (s == MG_OK) {
            have_ck = 1;
            if (mg_model_num_classes(r.m) != classes || strcmp(mg_model_arch(r.m), cfg->arch) != 0)
                s = MG_FAIL(MG_ERR_CONFIG, "%s: checkpoint is %s with %d classes, the config asks for %s with %d", load,
                            mg_model_arch(r.m), mg_model_num_classes(r.m), cfg->arch, classes);
            /* the configured p wins for a fine-tuning start; a resumed run keeps its own */
            if (s == MG_OK && !resume_path[0]) s = mg_model_set_p(r.m, (float)cfg->pooling_exponent);
        }
    } else if (s == MG_OK) {
        uint64_t seed = (uint64_t)cfg->seed + (env_flag("MG_DIST_TEST_SEED_BY_RANK") ? (uint64_t)rank : 0);
        s = mg_model_init(&r.m, cfg->arch, classes, (float)cfg->pooling_exponent);
        if (s == MG_OK) s = mg_model_init_weights(r.m, seed, cfg->zero_init_residual);
    }
    /* loader: this rank's share of every global batch */
    mg_loader_cfg lc;
    mg_loader_cfg_default(&lc, true);
    lc.threads = cfg->workers > 0 ? cfg->workers : 1; /* the loader always decodes on worker threads */
    lc.prefetch = cfg->prefetch > 0 ? cfg->prefetch : 1;
    lc.transform.rrc.scale_min = cfg->crop_scale_min;
    lc.transform.level = aug_level(cfg->augmentation);
    lc.transform.size = cfg->input_size;
    /* one loader batch per micro-step: batch_size is what one optimizer step sees, split into
     * grad_accum accumulated sub-batches (docs/config.md) */
    lc.sampler.batch = cfg->batch_size / (cfg->grad_accum > 1 ? cfg->grad_accum : 1);
    lc.sampler.reps = cfg->repeated_augmentations;
    lc.sampler.len_factor = cfg->epoch_len_factor;
    lc.sampler.shuffle = true;
    lc.sampler.drop_last = false;
    lc.sampler.seed = (uint64_t)cfg->seed;
    lc.sampler.rank = rank;
    lc.sampler.world = r.world;
    mg_loader *ld = NULL;
    if (s == MG_OK) s = mg_loader_init(&ld, &r.train, &lc);
    int64_t batches = ld ? mg_loader_num_batches(ld) : 0;
    int accum = cfg->grad_accum > 1 ? cfg->grad_accum : 1;
    r.spe = (batches + accum - 1) / accum;
    if (s == MG_OK) {
        s = check_shares(cfg, &lc.sampler, r.train.n, r.world, batches);
        if (s != MG_OK) summary->failed_together = true;
    }
    if (s == MG_OK) s = mg_trainer_init(&r.t, r.m, cfg, r.spe);
    if (s == MG_OK) s = mg_trainer_set_dist(r.t, o->dist);
    if (s == MG_OK && have_ck && resume_path[0]) s = mg_trainer_load_state(r.t, &ck);
    if (have_ck) mg_checkpoint_close(&ck);
    if (s == MG_OK && r.world > 1) {
        if (!env_flag("MG_DIST_TEST_NO_BROADCAST")) s = mg_trainer_broadcast_state(r.t);
        if (s == MG_OK) {
            s = mg_trainer_check_ranks_agree(r.t, "after the initial broadcast");
            if (s != MG_OK) summary->failed_together = true;
            else
                mg_log_info("train: %d ranks (%s), identical state after the broadcast from rank 0 (checksum %016llx)",
                            r.world, mg_dist_backend(o->dist), (unsigned long long)mg_trainer_state_checksum(r.t));
        }
    }
    if (s != MG_OK) {
        mg_loader_free(ld);
        run_free(&r);
        return s;
    }
    /* logs: rank 0 only */
    mg_metrics_log ml = {0};
    if (r.root) {
        char *mpath = mg_path_join(o->out, "metrics.jsonl");
        s = mpath ? mg_metrics_log_open(&ml, mpath) : MG_FAIL(MG_ERR_NOMEM, "out of memory");
        free(mpath);
    }
    if (s != MG_OK) {
        mg_loader_free(ld);
        run_free(&r);
        return s;
    }
    struct sigaction sa = {0}, old_int, old_term;
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    g_stop = 0;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);

    int64_t start_step = mg_trainer_step_count(r.t);
    int64_t start_epoch = start_step / r.spe, skip = start_step % r.spe;
    mg_log_info("train: %s, %d classes, %lld training images, %lld batches of %d per epoch, %d epochs%s", cfg->arch,
                classes, (long long)r.train.n, (long long)batches, cfg->batch_size, cfg->epochs,
                start_step ? " (resumed)" : "");
    if (r.world > 1)
        mg_log_info("train: data parallel over %d ranks: %d samples per rank per batch, %s batch norm, %s negative "
                    "sampling",
                    r.world, cfg->batch_size / r.world, cfg->sync_bn ? "synchronised" : "per-rank",
                    cfg->global_sampling ? "global" : "per-rank");
    if (start_step) mg_log_info("train: resuming from %s at step %lld (epoch %lld)", resume_path, (long long)start_step,
                                (long long)start_epoch + 1);
    double t0 = mg_time_now();
    int64_t imgs_since = 0;
    double since = t0, loss_sum = 0;
    int64_t loss_n = 0;
    int stopped = 0;
    for (int64_t epoch = start_epoch; s == MG_OK && epoch < cfg->epochs && !stopped; epoch++) {
        s = mg_loader_start_epoch(ld, (uint64_t)epoch);
        mg_progress bar;
        char label[64];
        snprintf(label, sizeof label, "epoch %lld/%d", (long long)epoch + 1, cfg->epochs);
        mg_progress_init(&bar, label, batches, "batch");
        double epoch_loss = 0;
        int64_t epoch_n = 0, b = 0;
        while (s == MG_OK) {
            const mg_batch *bt = NULL;
            s = mg_loader_next(ld, &bt);
            if (s != MG_OK || !bt) break;
            b++;
            if (epoch == start_epoch && b <= skip * accum) continue; /* already trained before the resume */
            mg_step_result res;
            s = mg_trainer_step(r.t, bt->images, bt->n, bt->h, bt->w, bt->labels, bt->instance, &res);
            if (s != MG_OK) {
                /* the losses and gradients checked are global: every rank fails at the same step */
                if (s == MG_ERR_NUMERIC) summary->failed_together = true;
                break;
            }
            imgs_since += res.samples;
            if (!res.updated) continue;
            int64_t step = mg_trainer_step_count(r.t); /* 1-based after the update */
            int64_t step_in_epoch = step - epoch * r.spe;
            epoch_loss += res.loss;
            epoch_n++;
            loss_sum += res.loss;
            loss_n++;
            summary->last_loss = res.loss;
            char suffix[128];
            snprintf(suffix, sizeof suffix, "loss %.4f lr %.4g beta %.3f", res.loss, res.lr, res.beta);
            mg_progress_update(&bar, b, suffix);
            if (r.root && cfg->log_every_steps > 0 && (step % cfg->log_every_steps == 0 || step_in_epoch == r.spe)) {
                double now = mg_time_now();
                mg_metrics_record rec = mg_metrics_record_empty(MG_METRICS_STEP, epoch + 1, step);
                rec.loss = loss_sum / (double)loss_n;
                rec.loss_ce = res.loss_ce;
                rec.loss_margin = res.loss_margin;
                rec.lr = res.lr;
                rec.beta = res.beta;
                rec.images_per_s = now > since ? (double)imgs_since / (now - since) : 0;
                rec.time_s = now - t0;
                s = mg_metrics_log_append(&ml, &rec);
                if (!o->quiet) {
                    mg_progress_clear(&bar);
                    mg_metrics_print_step_line(stdout, epoch + 1, step_in_epoch, res.loss);
                    fflush(stdout);
                }
                imgs_since = 0;
                since = now;
                loss_sum = 0;
                loss_n = 0;
            }
            if (o->max_steps > 0 && step >= o->max_steps) stopped = 1;
            if (g_stop) stopped = 2;
            if (r.world > 1 && s == MG_OK) {
                /* a stop request seen by any rank stops every rank after the same step */
                double flag = stopped == 2 ? 1.0 : 0.0;
                s = mg_dist_allreduce_max_f64(o->dist, &flag, 1);
                if (flag > 0) stopped = 2;
            }
            if (stopped) break;
        }
        mg_progress_finish(&bar, NULL);
        if (s != MG_OK) break;
        int finished_epoch = !stopped;
        summary->epochs = epoch + (finished_epoch ? 1 : 0);
        if (finished_epoch && r.root) {
            mg_metrics_record rec = mg_metrics_record_empty(MG_METRICS_EPOCH, epoch + 1, mg_trainer_step_count(r.t));
            rec.loss = epoch_n ? epoch_loss / (double)epoch_n : NAN;
            rec.time_s = mg_time_now() - t0;
            s = mg_metrics_log_append(&ml, &rec);
        }
        int last = epoch + 1 == cfg->epochs;
        if (s == MG_OK && finished_epoch && cfg->eval_every_epochs > 0 &&
            ((epoch + 1) % cfg->eval_every_epochs == 0 || last)) {
            double t1 = -1, t5 = -1;
            s = run_eval(&r, &t1, &t5);
            if (s == MG_OK && t1 >= 0) {
                summary->top1 = t1;
                summary->top5 = t5;
                if (r.root) {
                    mg_metrics_record rec =
                        mg_metrics_record_empty(MG_METRICS_EVAL, epoch + 1, mg_trainer_step_count(r.t));
                    rec.top1 = t1;
                    rec.top5 = t5;
                    rec.time_s = mg_time_now() - t0;
                    s = mg_metrics_log_append(&ml, &rec);
                }
            }
        }
        int save = cfg->save_checkpoint &&
                   ((finished_epoch && (((epoch + 1) % cfg->save_checkpoint_epochs) == 0 || last)) || stopped);
        if (s == MG_OK && save && r.world > 1) {
            /* rank 0 saves its state: give every rank rank 0's BN statistics and check that the ranks
             * still agree (identical updates on identical gradients keep them identical) */
            if (!cfg->sync_bn) s = mg_trainer_broadcast_buffers(r.t);
            if (s == MG_OK) {
                s = mg_trainer_check_ranks_agree(r.t, "at the checkpoint");
                if (s != MG_OK) summary->failed_together = true;
            }
        }
        if (s == MG_OK && save && r.root) {
            s = write_checkpoint(&r, epoch + (finished_epoch ? 1 : 0), summary->checkpoint, sizeof summary->checkpoint);
            if (s == MG_OK) {
                mg_log_info("checkpoint: %s", summary->checkpoint);
                prune_checkpoints(&r);
            }
        }
        if (s == MG_OK && r.root) s = mg_metrics_log_sync(&ml);
    }
    summary->steps = mg_trainer_step_count(r.t);
    if (s == MG_OK && stopped == 2) {
        if (r.root)
            mg_log_warn("train: stopped on request after step %lld; resume with --resume %s", (long long)summary->steps,
                        o->out);
        s = MG_FAIL(MG_ERR_INTERRUPTED, "train: interrupted (checkpoint %s written)", summary->checkpoint);
        summary->failed_together = true; /* agreed through the stop flag */
    }
    if (s == MG_ERR_NUMERIC) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", mg_error_message());
        s = MG_FAIL(MG_ERR_NUMERIC, "%s; stopped without saving, the last good checkpoint is kept in %s", msg, r.ckpt_dir);
    }
    if (r.root) {
        mg_status cs = mg_metrics_log_close(&ml);
        if (s == MG_OK) s = cs;
    }
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    mg_loader_free(ld);
    run_free(&r);
    return s;
}
