/* config.h: the typed training configuration: one schema table (key, type, default, range, help,
 * feature, reference-port aliases), YAML loading through libyaml, KEY=VALUE overrides, validation,
 * YAML serialisation of the effective configuration and its stable hash.
 *
 * Every key is documented in docs/config.md. Loading rules:
 *   - a config file is one flat YAML mapping (key: scalar, or key: [list] for list keys);
 *     only the first YAML document is read (the MindSpore reference files keep help texts in a
 *     second document, which is ignored);
 *   - keys of the MindSpore reference config are accepted under their own names (aliases such as
 *     class_num -> num_classes, epoch_size -> epochs, lr_max -> lr, lr_decay_mode -> lr_schedule);
 *     keys that belong to a later feature (THOR: damping_*, frequency) are accepted and reported as
 *     not used yet; MindSpore platform keys (device_target, data_url, ...) are accepted and ignored;
 *   - an unknown key, a duplicate key (also through an alias) or a value of the wrong type is an
 *     MG_ERR_CONFIG error naming the file, the key and the line. */
#ifndef MULTIGRAIN_CONFIG_H
#define MULTIGRAIN_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "multigrain/loss_margin.h"
#include "multigrain/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MG_CONFIG_MAX_LR_STEPS 16
#define MG_CONFIG_MAX_KEYS 96

typedef enum mg_lr_schedule {
    MG_LR_SCHEDULE_STEP = 0, /* MultiGrain recipe: lr * gamma^(drops passed) at lr_steps epochs */
    MG_LR_SCHEDULE_STEPS,    /* reference get_lr 'steps': x0.1 at 30 %, 60 %, 80 % of training */
    MG_LR_SCHEDULE_LINEAR,   /* reference get_lr default: linear warm-up, then linear decay */
    MG_LR_SCHEDULE_POLY,     /* reference get_lr 'poly': warm-up, then lr*(1 - t)^lr_poly_power */
    MG_LR_SCHEDULE_COSINE,   /* reference get_lr 'cosine' (model-zoo ResNet variant) */
    MG_LR_SCHEDULE_THOR,     /* reference get_thor_lr: lr_init*(1 - e/lr_end_epoch)^lr_decay */
    MG_LR_SCHEDULE_COUNT
} mg_lr_schedule;

typedef enum mg_augmentation {
    MG_AUGMENTATION_NONE = 0,
    MG_AUGMENTATION_TORCH,
    MG_AUGMENTATION_FULL,
    MG_AUGMENTATION_COUNT
} mg_augmentation;

typedef enum mg_optimizer_kind { MG_OPTIMIZER_MOMENTUM = 0, MG_OPTIMIZER_THOR, MG_OPTIMIZER_COUNT } mg_optimizer_kind;

/* mg_margin_norm (ACTIVE / PAIRS) is defined by the loss, multigrain/loss_margin.h. */

/* Where a key's value came from. */
typedef enum mg_config_origin { MG_CONFIG_ORIGIN_DEFAULT = 0, MG_CONFIG_ORIGIN_FILE, MG_CONFIG_ORIGIN_SET } mg_config_origin;

typedef struct mg_config {
    /* model */
    char arch[32];
    int num_classes;
    int input_size;
    double pooling_exponent;
    /* batching and data */
    int batch_size;
    int repeated_augmentations;
    double epoch_len_factor;
    mg_augmentation augmentation;
    double crop_scale_min;
    int workers;
    int prefetch;
    /* loss */
    double classif_weight;
    double margin;
    double beta_init;
    double beta_lr;
    bool global_sampling;
    int sampling_chunks;
    mg_margin_norm normalise_by;
    bool use_label_smooth;
    double label_smoothing;
    /* optimisation */
    mg_optimizer_kind optimizer;
    int epochs;
    int pretrain_epoch_size;
    double lr;
    double lr_init;
    double lr_end;
    mg_lr_schedule lr_schedule;
    int lr_steps[MG_CONFIG_MAX_LR_STEPS];
    int n_lr_steps;
    double lr_gamma;
    bool lr_steps_legacy_offset;
    double lr_poly_power;
    double lr_decay;
    int lr_end_epoch;
    double warmup_epochs;
    double momentum;
    bool nesterov;
    bool zero_init_residual;
    double weight_decay;
    bool wd_on_bn_bias;
    int grad_accum;
    double loss_scale;
    /* THOR (later feature) */
    double damping_init;
    double damping_decay;
    int frequency;
    /* run control */
    int64_t seed;
    int threads;
    bool save_checkpoint;
    int save_checkpoint_epochs;
    int keep_checkpoint_max;
    int eval_every_epochs;
    double eval_crop_pct;
    int log_every_steps;
    /* data parallel */
    bool sync_bn;
    double dist_timeout;
    double dist_bucket_mb;

    /* bookkeeping, per schema key (index as in mg_config_key_at) */
    unsigned char origin[MG_CONFIG_MAX_KEYS];
    int line[MG_CONFIG_MAX_KEYS];
} mg_config;

/* Read-only view of one schema entry (for docs, tests and --help). */
typedef struct mg_config_key_info {
    const char *name;
    const char *aliases;     /* comma-separated reference-port names, or "" */
    const char *type;        /* "int", "int64", "number", "bool", "string", "enum", "int list" */
    const char *default_text;
    const char *range;       /* "[1, 1048576]", "step|steps|...", "" */
    const char *feature;     /* which part of the program uses it */
    bool used;               /* false: accepted but not used yet (later feature) */
    const char *help;
} mg_config_key_info;

int mg_config_key_count(void);
/* NULL when i is out of range. */
const mg_config_key_info *mg_config_key_at(int i);
/* Index of a key by its name or an alias, or -1. */
int mg_config_key_find(const char *name);
/* True for the MindSpore platform keys that are accepted and ignored. */
bool mg_config_key_is_ignored_reference(const char *name);

/* All keys at their defaults (the MultiGrain ResNet-50 recipe). */
void mg_config_init(mg_config *cfg);

/* Loads a YAML file over the current values (usually the defaults). */
mg_status mg_config_load_file(mg_config *cfg, const char *path);
/* Loads YAML text; `source_name` names it in messages (a path). */
mg_status mg_config_load_string(mg_config *cfg, const char *text, size_t len, const char *source_name);

/* Applies one "KEY=VALUE" override (the value in YAML scalar syntax; lists as "30,60,90" or
 * "[30, 60, 90]"). Errors are MG_ERR_USAGE naming --set, the key and the value. */
mg_status mg_config_set(mg_config *cfg, const char *key_eq_value);
/* Same with key and value apart; `what` names the source in messages ("--batch-size"). */
mg_status mg_config_set_value(mg_config *cfg, const char *key, const char *value, const char *what,
                              mg_status code_on_error);

/* Cross-key checks (warm-up shorter than training, lr_steps increasing, ...). MG_ERR_CONFIG. */
mg_status mg_config_validate(const mg_config *cfg);

/* Effective label smoothing: use_label_smooth ? label_smoothing : 0. */
double mg_config_label_smoothing(const mg_config *cfg);

/* Canonical YAML of every schema key in table order (malloc'd, NUL-terminated). The canonical
 * body (without comment lines) is what mg_config_hash hashes. */
mg_status mg_config_to_yaml(const mg_config *cfg, char **out, size_t *len);
/* 64-bit FNV-1a of the canonical body without the per-machine keys (threads, workers, prefetch,
 * dist_timeout, dist_bucket_mb):
 * configs with equal training settings hash equal on every machine. */
uint64_t mg_config_hash(const mg_config *cfg);
/* Writes the YAML atomically to `path` (RUN_DIR/config.yaml). */
mg_status mg_config_write_file(const mg_config *cfg, const char *path);

/* Names of the enum values (for printing). */
const char *mg_lr_schedule_name(mg_lr_schedule s);

#ifdef __cplusplus
}
#endif
#endif
