/* config.c: the training configuration schema (one table), YAML loading via libyaml, KEY=VALUE
 * overrides, cross-key validation, canonical YAML serialisation and the stable config hash. */
#include "multigrain/config.h"

#include <ctype.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include "core/fileio.h"
#include "core/strbuf.h"
#include "core/log.h"
#include "core/parse.h"

/* ------------------------------------------------------------------------------------------ */
/* Schema                                                                                       */

typedef enum key_type { T_INT, T_INT64, T_DOUBLE, T_BOOL, T_STRING, T_ENUM, T_INT_LIST } key_type;

typedef struct key_def {
    const char *name;
    const char *aliases; /* comma-separated */
    key_type type;
    size_t offset;
    size_t size; /* T_STRING: capacity of the char array */
    const char *def;
    double min, max;          /* numbers, list items */
    const char *const *names; /* T_ENUM values (index = enum value); T_STRING: allowed values */
    int n_names;
    const char *feature;
    bool used;
    const char *help;
} key_def;

static const char *const LR_SCHEDULES[] = {"step", "steps", "linear", "poly", "cosine", "thor"};
static const char *const AUGMENTATIONS[] = {"none", "torch", "full"};
static const char *const OPTIMIZERS[] = {"momentum", "thor"};
static const char *const NORMS[] = {"active", "pairs"};
static const char *const ARCHS[] = {"resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "se_resnet50"};

#define N_OF(a) ((int)(sizeof(a) / sizeof((a)[0])))
#define OFF(f) offsetof(mg_config, f)
#define I(name, al, f, def, lo, hi, feat, used, help) {name, al, T_INT, OFF(f), 0, def, lo, hi, NULL, 0, feat, used, help}
#define I64(name, al, f, def, lo, hi, feat, used, help) {name, al, T_INT64, OFF(f), 0, def, lo, hi, NULL, 0, feat, used, help}
#define D(name, al, f, def, lo, hi, feat, used, help) {name, al, T_DOUBLE, OFF(f), 0, def, lo, hi, NULL, 0, feat, used, help}
#define B(name, al, f, def, feat, used, help) {name, al, T_BOOL, OFF(f), 0, def, 0, 1, NULL, 0, feat, used, help}
#define E(name, al, f, def, vals, feat, used, help) {name, al, T_ENUM, OFF(f), 0, def, 0, 0, vals, N_OF(vals), feat, used, help}
#define S(name, al, f, def, vals, feat, used, help) {name, al, T_STRING, OFF(f), sizeof(((mg_config *)0)->f), def, 0, 0, vals, N_OF(vals), feat, used, help}
#define L(name, al, f, def, lo, hi, feat, used, help) {name, al, T_INT_LIST, OFF(f), 0, def, lo, hi, NULL, 0, feat, used, help}

/* Defaults are text parsed by the same code as file values, so a default can never disagree with
 * the key's type or range (mg_config_init asserts that). Order = order of the written config. */
static const key_def KEYS[] = {
    /* model */
    S("arch", "net_name", arch, "resnet50", ARCHS, "model", true, "backbone network"),
    I("num_classes", "class_num", num_classes, "1000", 1, 1000000, "model", true,
      "number of classes of the classifier (reference: 1001 with a background class)"),
    I("input_size", "train_image_size", input_size, "224", 16, 4096, "data", true,
      "side of the square training crop in pixels"),
    D("pooling_exponent", "", pooling_exponent, "3", 1, 64, "model", true,
      "GeM pooling exponent p used in training (1 = average pooling)"),
    /* batching and data */
    I("batch_size", "", batch_size, "512", 1, 1 << 20, "data", true,
      "global batch size (all ranks and accumulation steps together)"),
    I("repeated_augmentations", "", repeated_augmentations, "3", 1, 64, "data", true,
      "m: augmented copies of each image in a batch (1 = ordinary sampling)"),
    D("epoch_len_factor", "", epoch_len_factor, "2", 0.001, 1000, "data", true,
      "one epoch = int(N * epoch_len_factor) samples of the N training images"),
    E("augmentation", "", augmentation, "full", AUGMENTATIONS, "data", true,
      "training augmentation: none, torch (crop + flip) or full (+ colour jitter + lighting)"),
    D("crop_scale_min", "", crop_scale_min, "0.08", 0.001, 1, "data", true,
      "smallest area fraction of RandomResizedCrop (0.08 in the recipe; larger for tiny images)"),
    I("workers", "", workers, "4", 0, 256, "data", true, "image decoding threads (0 is taken as 1: decoding always runs on a worker thread)"),
    I("prefetch", "", prefetch, "2", 0, 64, "data", true, "batches prepared ahead of the training step"),
    /* loss */
    D("classif_weight", "", classif_weight, "0.5", 0, 1, "loss", true,
      "lambda: loss = lambda * cross-entropy + (1 - lambda) * margin loss"),
    D("margin", "", margin, "0.2", 0, 10, "loss", true, "alpha: margin of the margin loss"),
    D("beta_init", "", beta_init, "1.2", 0, 10, "loss", true, "initial value of the learnable margin-loss boundary beta"),
    D("beta_lr", "", beta_lr, "1", 0, 1000, "loss", true, "learning rate of beta relative to lr"),
    B("global_sampling", "", global_sampling, "false", "loss", true,
      "distance-weighted negative sampling over the whole batch instead of per rank"),
    I("sampling_chunks", "", sampling_chunks, "1", 1, 1024, "loss", true,
      "per-rank sampling: draw negatives within this many equal consecutive parts of each rank's batch"),
    E("normalise_by", "", normalise_by, "active", NORMS, "loss", true,
      "margin-loss normaliser: active (non-zero terms, original code) or pairs (the paper)"),
    B("use_label_smooth", "", use_label_smooth, "true", "loss", true,
      "reference switch: when false, label_smoothing is ignored"),
    D("label_smoothing", "label_smooth_factor", label_smoothing, "0", 0, 0.999, "loss", true,
      "label-smoothing factor of the cross-entropy"),
    /* optimisation */
    E("optimizer", "", optimizer, "momentum", OPTIMIZERS, "optimizer", true,
      "momentum (SGD) or thor (later feature; selects lr_schedule thor unless given)"),
    I("epochs", "epoch_size", epochs, "120", 1, 100000, "schedule", true, "number of training epochs"),
    I("pretrain_epoch_size", "", pretrain_epoch_size, "0", 0, 100000, "schedule", true,
      "epochs already trained: the schedule starts at step pretrain_epoch_size * steps_per_epoch"),
    D("lr", "lr_max", lr, "0.2", 0, 100, "schedule", true, "base (peak) learning rate"),
    D("lr_init", "", lr_init, "0", 0, 100, "schedule", true,
      "learning rate at the start of warm-up; the starting rate of lr_schedule thor"),
    D("lr_end", "", lr_end, "0", 0, 100, "schedule", true, "final learning rate of lr_schedule linear"),
    E("lr_schedule", "lr_decay_mode", lr_schedule, "step", LR_SCHEDULES, "schedule", true,
      "learning-rate schedule: step, steps, linear, poly, cosine or thor (docs/config.md)"),
    L("lr_steps", "", lr_steps, "[30, 60, 90]", 0, 100000, "schedule", true,
      "epochs at which lr_schedule step multiplies the rate by lr_gamma"),
    D("lr_gamma", "", lr_gamma, "0.1", 1e-9, 1, "schedule", true, "factor applied at each lr_steps epoch"),
    B("lr_steps_legacy_offset", "", lr_steps_legacy_offset, "false", "schedule", true,
      "true: each drop happens one epoch later, as in the original PyTorch code (epoch > drop)"),
    D("lr_poly_power", "", lr_poly_power, "2", 0, 100, "schedule", true, "exponent of lr_schedule poly"),
    D("lr_decay", "", lr_decay, "4.9687", 0, 100, "schedule", true, "exponent of lr_schedule thor"),
    I("lr_end_epoch", "", lr_end_epoch, "70", 1, 100000, "schedule", true,
      "epoch at which lr_schedule thor's polynomial reaches zero"),
    D("warmup_epochs", "", warmup_epochs, "0", 0, 100000, "schedule", true,
      "linear warm-up from lr_init to lr over this many epochs (not used by thor)"),
    D("momentum", "", momentum, "0.9", 0, 0.999999, "optimizer", true, "SGD momentum"),
    B("nesterov", "", nesterov, "false", "optimizer", true, "Nesterov momentum"),
    B("zero_init_residual", "", zero_init_residual, "false", "optimizer", true,
      "start each residual branch's last BatchNorm weight at 0, as torchvision's zero_init_residual"),
    D("weight_decay", "", weight_decay, "0.0001", 0, 1, "optimizer", true, "L2 weight decay"),
    B("wd_on_bn_bias", "", wd_on_bn_bias, "true", "optimizer", true,
      "apply weight decay to BatchNorm parameters and biases too (original code: yes)"),
    I("grad_accum", "", grad_accum, "1", 1, 1024, "optimizer", true,
      "split each batch into this many accumulated sub-batches"),
    D("loss_scale", "", loss_scale, "1", 1, 16777216, "mixed precision, not in this version", false,
      "reference: static loss scale for fp16 training; training here is fp32"),
    /* THOR (later feature) */
    D("damping_init", "", damping_init, "0.02345", 0, 100, "THOR optimizer, a later feature", false,
      "initial THOR damping"),
    D("damping_decay", "", damping_decay, "0.5467", 0, 1, "THOR optimizer, a later feature", false,
      "THOR damping decay: damping = damping_init * damping_decay^(epoch / 10)"),
    I("frequency", "", frequency, "834", 1, 1000000, "THOR optimizer, a later feature", false,
      "steps between updates of THOR's second-order matrices"),
    /* run control */
    I64("seed", "", seed, "0", 0, (double)INT64_MAX, "run", true, "random seed"),
    I("threads", "", threads, "0", 0, 1024, "run", true, "compute threads (0 = all cores)"),
    B("save_checkpoint", "", save_checkpoint, "true", "checkpoints", true, "write checkpoints"),
    I("save_checkpoint_epochs", "", save_checkpoint_epochs, "10", 1, 100000, "checkpoints", true,
      "epochs between checkpoints (the last epoch is always saved)"),
    I("keep_checkpoint_max", "", keep_checkpoint_max, "0", 0, 100000, "checkpoints", true,
      "keep only the newest N checkpoints (0 = keep all)"),
    I("eval_every_epochs", "", eval_every_epochs, "1", 0, 100000, "evaluation", true,
      "validation accuracy every N epochs (0 = never)"),
    D("eval_crop_pct", "", eval_crop_pct, "0.875", 0.05, 1, "evaluation", true,
      "validation transform: short side resized to floor(input_size / eval_crop_pct), centre crop input_size"),
    I("log_every_steps", "", log_every_steps, "1", 1, 1000000, "logging", true,
      "print the 'epoch: E step: S, loss is L' line every N steps"),
    /* data parallel (mpirun / srun) */
    B("sync_bn", "", sync_bn, "false", "data parallel", true,
      "batch-norm statistics over the whole global batch (all ranks) instead of each rank's share"),
    D("dist_timeout", "", dist_timeout, "600", 0, 1e6, "data parallel", true,
      "seconds a rank waits in a collective before the job stops with an error (0 = forever)"),
    D("dist_bucket_mb", "", dist_bucket_mb, "25", 0.001, 4096, "data parallel", true,
      "gradient all-reduce bucket size in MiB (one all-reduce per step, in buckets of this size)"),
};
#define N_KEYS N_OF(KEYS)
_Static_assert(N_OF(KEYS) <= MG_CONFIG_MAX_KEYS, "raise MG_CONFIG_MAX_KEYS");
_Static_assert(sizeof(mg_lr_schedule) == sizeof(int) && sizeof(mg_augmentation) == sizeof(int) &&
                   sizeof(mg_optimizer_kind) == sizeof(int) && sizeof(mg_margin_norm) == sizeof(int),
               "config enums are stored as int");

/* MindSpore reference-config keys that concern its platform (ModelArts, Ascend, MindIR export, ...):
 * accepted so the reference files load, and ignored. */
static const char *const IGNORED_REFERENCE[] = {
    "enable_modelarts", "data_url", "train_url", "ckpt_url", "result_url", "checkpoint_url",
    "run_distribute", "enable_profiling", "data_path", "output_path", "load_path", "device_target",
    "checkpoint_path", "record_path", "checkpoint_file_path", "save_checkpoint_path", "infer_label",
    "dataset", "device_num", "pre_trained", "run_eval", "eval_dataset_path", "parameter_server",
    "filter_weight", "save_best_ckpt", "eval_start_epoch", "eval_interval", "enable_cache",
    "cache_session_id", "mode_name", "boost_mode", "conv_init", "dense_init", "all_reduce_fusion_config",
    "eval_image_size", "device_id", "width", "height", "file_name", "file_format", "ckpt_file",
    "network_dataset", "save_graphs", "save_graphs_path", "has_trained_epoch", "has_trained_step",
    "result_path", "label_path", "lars_epsilon", "lars_coefficient", "MS_ROLE",
};

/* ------------------------------------------------------------------------------------------ */
/* Key lookup and info                                                                          */

static bool alias_list_has(const char *list, const char *name) {
    size_t n = strlen(name);
    for (const char *p = list; p && *p;) {
        const char *c = strchr(p, ',');
        size_t len = c ? (size_t)(c - p) : strlen(p);
        if (len == n && !strncmp(p, name, n)) return true;
        if (!c) break;
        p = c + 1;
    }
    return false;
}

int mg_config_key_count(void) { return N_KEYS; }

int mg_config_key_find(const char *name) {
    if (!name) return -1;
    for (int i = 0; i < N_KEYS; i++)
        if (!strcmp(KEYS[i].name, name) || alias_list_has(KEYS[i].aliases, name)) return i;
    return -1;
}

bool mg_config_key_is_ignored_reference(const char *name) {
    for (int i = 0; i < N_OF(IGNORED_REFERENCE); i++)
        if (!strcmp(IGNORED_REFERENCE[i], name)) return true;
    return false;
}

static const char *type_name(key_type t) {
    switch (t) {
    case T_INT: return "int";
    case T_INT64: return "int64";
    case T_DOUBLE: return "number";
    case T_BOOL: return "bool";
    case T_STRING: return "string";
    case T_ENUM: return "enum";
    case T_INT_LIST: return "int list";
    }
    return "?";
}

static void names_joined(const key_def *k, char *buf, size_t n) {
    buf[0] = '\0';
    for (int j = 0; j < k->n_names; j++) {
        size_t used = strlen(buf);
        snprintf(buf + used, n - used, "%s%s", j ? "|" : "", k->names[j]);
    }
}

static void range_text(const key_def *k, char *buf, size_t n) {
    switch (k->type) {
    case T_INT:
    case T_INT_LIST:
        snprintf(buf, n, "[%.0f, %.0f]", k->min, k->max);
        return;
    case T_INT64: snprintf(buf, n, "[%.0f, 2^63-1]", k->min); return;
    case T_DOUBLE: snprintf(buf, n, "[%.10g, %.10g]", k->min, k->max); return;
    case T_BOOL: snprintf(buf, n, "true|false"); return;
    case T_ENUM:
    case T_STRING: names_joined(k, buf, n); return;
    }
    buf[0] = '\0';
}

static mg_config_key_info g_info[N_KEYS];
static char g_range[N_KEYS][160];
static pthread_once_t g_info_once = PTHREAD_ONCE_INIT;

static void info_build(void) {
    for (int i = 0; i < N_KEYS; i++) {
        range_text(&KEYS[i], g_range[i], sizeof g_range[i]);
        g_info[i] = (mg_config_key_info){KEYS[i].name, KEYS[i].aliases, type_name(KEYS[i].type),
                                         KEYS[i].def, g_range[i], KEYS[i].feature, KEYS[i].used,
                                         KEYS[i].help};
    }
}

const mg_config_key_info *mg_config_key_at(int i) {
    if (i < 0 || i >= N_KEYS) return NULL;
    pthread_once(&g_info_once, info_build);
    return &g_info[i];
}

const char *mg_lr_schedule_name(mg_lr_schedule s) {
    return (s >= 0 && (int)s < N_OF(LR_SCHEDULES)) ? LR_SCHEDULES[s] : "?";
}

/* Levenshtein distance (small strings only), for "did you mean". */
static int edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63) return 99;
    int prev[64], cur[64];
    for (size_t j = 0; j <= lb; j++) prev[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int cost = tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]);
            int v = prev[j - 1] + cost;
            if (prev[j] + 1 < v) v = prev[j] + 1;
            if (cur[j - 1] + 1 < v) v = cur[j - 1] + 1;
            cur[j] = v;
        }
        memcpy(prev, cur, sizeof(int) * (lb + 1));
    }
    return prev[lb];
}

/* Writes " (did you mean 'x'?)" or "" into buf; candidates are key names and aliases. */
static void did_you_mean(const char *name, char *buf, size_t n) {
    int best = 99;
    char best_name[64] = "";
    char cand[64];
    for (int i = 0; i < N_KEYS; i++) {
        const char *lists[2] = {KEYS[i].name, KEYS[i].aliases};
        for (int l = 0; l < 2; l++) {
            for (const char *p = lists[l]; *p;) {
                const char *c = strchr(p, ',');
                size_t len = c ? (size_t)(c - p) : strlen(p);
                if (len < sizeof cand) {
                    memcpy(cand, p, len);
                    cand[len] = '\0';
                    int d = edit_distance(name, cand);
                    if (d < best) {
                        best = d;
                        snprintf(best_name, sizeof best_name, "%s", cand);
                    }
                }
                if (!c) break;
                p = c + 1;
            }
        }
    }
    size_t len = strlen(name);
    int limit = len >= 8 ? 3 : len >= 4 ? 2 : 1;
    if (best_name[0] && best <= limit)
        snprintf(buf, n, " (did you mean '%s'?)", best_name);
    else
        buf[0] = '\0';
}

/* ------------------------------------------------------------------------------------------ */
/* Setting values                                                                               */

static void *field(mg_config *cfg, const key_def *k) { return (char *)cfg + k->offset; }
static const void *cfield(const mg_config *cfg, const key_def *k) { return (const char *)cfg + k->offset; }

/* Re-records the current error with " (line N)" appended. */
static mg_status add_line(mg_status s, int line) {
    if (s == MG_OK || line <= 0) return s;
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", mg_error_message());
    return MG_FAIL(s, "%s (line %d)", msg, line);
}

static mg_status parse_int_list(const key_def *k, const char *text, const char *what, mg_status code,
                                int *vals, int *n_out) {
    char buf[1024];
    if (strlen(text) >= sizeof buf)
        return MG_FAIL(code, "%s: expected at most %d integers, found a %zu-character list", what,
                       MG_CONFIG_MAX_LR_STEPS, strlen(text));
    snprintf(buf, sizeof buf, "%s", text);
    char *s = buf;
    while (isspace((unsigned char)*s)) s++;
    size_t len = strlen(s);
    while (len && isspace((unsigned char)s[len - 1])) s[--len] = '\0';
    if (s[0] == '[') {
        if (!len || s[len - 1] != ']')
            return MG_FAIL(code, "%s: expected a list like [30, 60, 90], found '%s'", what, text);
        s[len - 1] = '\0';
        s++;
    }
    int n = 0;
    char *p = s;
    while (isspace((unsigned char)*p)) p++;
    if (*p == '\0') {
        *n_out = 0;
        return MG_OK;
    }
    for (;;) {
        char *c = strchr(p, ',');
        if (c) *c = '\0';
        char *item = p;
        while (isspace((unsigned char)*item)) item++;
        size_t il = strlen(item);
        while (il && isspace((unsigned char)item[il - 1])) item[--il] = '\0';
        if (n == MG_CONFIG_MAX_LR_STEPS)
            return MG_FAIL(code, "%s: at most %d items, found more in '%s'", what, MG_CONFIG_MAX_LR_STEPS, text);
        char w[512];
        snprintf(w, sizeof w, "%s item %d", what, n + 1);
        MG_TRY(mg_parse_int(item, (int)k->min, (int)k->max, w, code, &vals[n]));
        n++;
        if (!c) break;
        p = c + 1;
    }
    *n_out = n;
    return MG_OK;
}

static mg_status set_scalar(mg_config *cfg, const key_def *k, const char *text, const char *what,
                            mg_status code) {
    void *f = field(cfg, k);
    switch (k->type) {
    case T_INT: return mg_parse_int(text, (int)k->min, (int)k->max, what, code, f);
    case T_INT64: return mg_parse_int64(text, (int64_t)k->min, INT64_MAX, what, code, f);
    case T_DOUBLE: return mg_parse_double(text, k->min, k->max, what, code, f);
    case T_BOOL: return mg_parse_bool(text, what, code, f);
    case T_ENUM:
    case T_STRING: {
        for (int j = 0; j < k->n_names; j++) {
            if (!strcasecmp(text, k->names[j])) {
                if (k->type == T_ENUM)
                    *(int *)f = j; /* all config enums are int-sized */
                else
                    snprintf(f, k->size, "%s", k->names[j]);
                return MG_OK;
            }
        }
        char names[256];
        names_joined(k, names, sizeof names);
        return MG_FAIL(code, "%s: expected one of %s, found '%s'", what, names, text);
    }
    case T_INT_LIST: {
        mg_config *c = cfg;
        int vals[MG_CONFIG_MAX_LR_STEPS], n = 0;
        MG_TRY(parse_int_list(k, text, what, code, vals, &n));
        MG_ASSERT(k->offset == OFF(lr_steps)); /* the one list key */
        memcpy(c->lr_steps, vals, sizeof(int) * (size_t)n);
        c->n_lr_steps = n;
        return MG_OK;
    }
    }
    MG_ASSERT(!"unknown key type");
    return MG_ERR_INTERNAL;
}

/* Side effects of setting a key (after the value is stored). */
static void after_set(mg_config *cfg, int idx, mg_config_origin origin, int line, const char *source) {
    const key_def *k = &KEYS[idx];
    cfg->origin[idx] = (unsigned char)origin;
    cfg->line[idx] = line;
    /* File keys are reported together by mg_config_load_string. */
    if (!k->used && origin == MG_CONFIG_ORIGIN_SET)
        mg_log_warn("%s: key '%s' is accepted but not used yet (%s)", source, k->name, k->feature);
    if (k->offset == OFF(optimizer) && cfg->optimizer == MG_OPTIMIZER_THOR) {
        int s = mg_config_key_find("lr_schedule");
        if (cfg->origin[s] == MG_CONFIG_ORIGIN_DEFAULT) cfg->lr_schedule = MG_LR_SCHEDULE_THOR;
    }
}

void mg_config_init(mg_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    for (int i = 0; i < N_KEYS; i++) {
        mg_status s = set_scalar(cfg, &KEYS[i], KEYS[i].def, KEYS[i].name, MG_ERR_INTERNAL);
        if (s != MG_OK) mg_log_error("config schema: %s", mg_error_message());
        MG_ASSERT(s == MG_OK); /* a default that does not parse is a bug in the table */
    }
    mg_error_clear();
}

static mg_status unknown_key(const char *source, const char *name, int line, mg_status code) {
    char hint[128];
    did_you_mean(name, hint, sizeof hint);
    if (line > 0)
        return MG_FAIL(code, "%s: unknown key '%s' (line %d)%s; see docs/config.md for the keys", source,
                       name, line, hint);
    return MG_FAIL(code, "%s: unknown key '%s'%s; see docs/config.md for the keys", source, name, hint);
}

mg_status mg_config_set_value(mg_config *cfg, const char *key, const char *value, const char *what,
                              mg_status code_on_error) {
    int idx = mg_config_key_find(key);
    if (idx < 0) {
        if (mg_config_key_is_ignored_reference(key)) {
            mg_log_info("%s: key '%s' is a MindSpore platform setting of the reference config; ignored",
                        what, key);
            return MG_OK;
        }
        return unknown_key(what, key, 0, code_on_error);
    }
    char w[512];
    if (strcmp(key, KEYS[idx].name))
        snprintf(w, sizeof w, "%s: key '%s' (%s)", what, key, KEYS[idx].name);
    else
        snprintf(w, sizeof w, "%s: key '%s'", what, key);
    MG_TRY(set_scalar(cfg, &KEYS[idx], value, w, code_on_error));
    after_set(cfg, idx, MG_CONFIG_ORIGIN_SET, 0, what);
    return MG_OK;
}

mg_status mg_config_set(mg_config *cfg, const char *kv) {
    const char *eq = kv ? strchr(kv, '=') : NULL;
    if (!eq || eq == kv) return MG_FAIL(MG_ERR_USAGE, "--set: expected KEY=VALUE, found '%s'", kv ? kv : "");
    char key[128];
    size_t kl = (size_t)(eq - kv);
    if (kl >= sizeof key) return MG_FAIL(MG_ERR_USAGE, "--set: key too long in '%s'", kv);
    memcpy(key, kv, kl);
    key[kl] = '\0';
    while (kl && isspace((unsigned char)key[kl - 1])) key[--kl] = '\0';
    const char *value = eq + 1;
    while (isspace((unsigned char)*value)) value++;
    return mg_config_set_value(cfg, key, value, "--set", MG_ERR_USAGE);
}

/* ------------------------------------------------------------------------------------------ */
/* YAML loading                                                                                 */

static const char *node_kind(const yaml_node_t *n) {
    switch (n->type) {
    case YAML_SCALAR_NODE: return "a scalar";
    case YAML_SEQUENCE_NODE: return "a list";
    case YAML_MAPPING_NODE: return "a nested mapping";
    default: return "nothing";
    }
}

static bool scalar_is_quoted(const yaml_node_t *n) {
    return n->data.scalar.style == YAML_SINGLE_QUOTED_SCALAR_STYLE ||
           n->data.scalar.style == YAML_DOUBLE_QUOTED_SCALAR_STYLE;
}

static mg_status load_pair(mg_config *cfg, yaml_document_t *doc, yaml_node_pair_t *pair, const char *src,
                           int *seen_line, const char **seen_as, char *ignored, size_t ignored_cap) {
    yaml_node_t *kn = yaml_document_get_node(doc, pair->key);
    yaml_node_t *vn = yaml_document_get_node(doc, pair->value);
    int kline = kn ? (int)kn->start_mark.line + 1 : 0;
    if (!kn || kn->type != YAML_SCALAR_NODE)
        return MG_FAIL(MG_ERR_CONFIG, "%s: expected a plain key, found %s (line %d)", src,
                       kn ? node_kind(kn) : "nothing", kline);
    const char *name = (const char *)kn->data.scalar.value;
    int vline = vn ? (int)vn->start_mark.line + 1 : kline;
    int idx = mg_config_key_find(name);
    if (idx < 0) {
        if (mg_config_key_is_ignored_reference(name)) {
            size_t used = strlen(ignored);
            snprintf(ignored + used, ignored_cap - used, "%s%s", used ? ", " : "", name);
            return MG_OK;
        }
        return unknown_key(src, name, kline, MG_ERR_CONFIG);
    }
    const key_def *k = &KEYS[idx];
    if (seen_line[idx]) {
        if (strcmp(seen_as[idx], name))
            return MG_FAIL(MG_ERR_CONFIG, "%s: key '%s' given twice (line %d as '%s', line %d as '%s')", src,
                           k->name, seen_line[idx], seen_as[idx], kline, name);
        return MG_FAIL(MG_ERR_CONFIG, "%s: duplicate key '%s' (lines %d and %d)", src, name, seen_line[idx],
                       kline);
    }
    seen_line[idx] = kline;
    seen_as[idx] = name;
    char what[600];
    if (strcmp(name, k->name))
        snprintf(what, sizeof what, "%s: key '%s' (%s)", src, name, k->name);
    else
        snprintf(what, sizeof what, "%s: key '%s'", src, name);
    if (!vn) return MG_FAIL(MG_ERR_CONFIG, "%s: missing value (line %d)", what, kline);

    if (k->type == T_INT_LIST && vn->type == YAML_SEQUENCE_NODE) {
        char text[1024] = "";
        for (yaml_node_item_t *it = vn->data.sequence.items.start; it < vn->data.sequence.items.top; it++) {
            yaml_node_t *item = yaml_document_get_node(doc, *it);
            if (!item || item->type != YAML_SCALAR_NODE)
                return MG_FAIL(MG_ERR_CONFIG, "%s: expected a list of integers, found an item that is %s (line %d)",
                               what, item ? node_kind(item) : "nothing", vline);
            size_t used = strlen(text);
            if (used + item->data.scalar.length + 2 > sizeof text)
                return MG_FAIL(MG_ERR_CONFIG, "%s: expected at most %d integers, found a longer list (line %d)", what,
                               MG_CONFIG_MAX_LR_STEPS, vline);
            snprintf(text + used, sizeof text - used, "%s%s", used ? "," : "", (const char *)item->data.scalar.value);
        }
        MG_TRY(add_line(set_scalar(cfg, k, text, what, MG_ERR_CONFIG), vline));
    } else if (vn->type != YAML_SCALAR_NODE) {
        return MG_FAIL(MG_ERR_CONFIG, "%s: expected a %s value, found %s (line %d)", what, type_name(k->type),
                       node_kind(vn), vline);
    } else {
        const char *text = (const char *)vn->data.scalar.value;
        bool numeric = k->type == T_INT || k->type == T_INT64 || k->type == T_DOUBLE || k->type == T_BOOL;
        if (numeric && scalar_is_quoted(vn))
            return MG_FAIL(MG_ERR_CONFIG, "%s: expected a %s, found the quoted string '%s' (line %d)", what,
                           k->type == T_BOOL ? "boolean" : "number", text, vline);
        MG_TRY(add_line(set_scalar(cfg, k, text, what, MG_ERR_CONFIG), vline));
    }
    after_set(cfg, idx, MG_CONFIG_ORIGIN_FILE, kline, src);
    return MG_OK;
}

mg_status mg_config_load_string(mg_config *cfg, const char *text, size_t len, const char *src) {
    yaml_parser_t parser;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&parser)) return MG_FAIL(MG_ERR_NOMEM, "%s: cannot start the YAML parser", src);
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        mg_status s = MG_FAIL(MG_ERR_CONFIG, "%s: YAML syntax error: %s%s%s (line %d, column %d)", src,
                              parser.problem ? parser.problem : "unknown problem",
                              parser.context ? " " : "", parser.context ? parser.context : "",
                              (int)parser.problem_mark.line + 1, (int)parser.problem_mark.column + 1);
        yaml_parser_delete(&parser);
        return s;
    }
    mg_status s = MG_OK;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root && !(root->type == YAML_SCALAR_NODE && root->data.scalar.length == 0)) {
        if (root->type != YAML_MAPPING_NODE) {
            s = MG_FAIL(MG_ERR_CONFIG, "%s: expected a mapping of 'key: value' lines, found %s (line %d)", src,
                        node_kind(root), (int)root->start_mark.line + 1);
        } else {
            int seen_line[N_KEYS] = {0};
            const char *seen_as[N_KEYS] = {0};
            char ignored[2048] = "";
            /* Duplicates of keys outside the schema (ignored reference keys) are errors too. */
            for (yaml_node_pair_t *p = root->data.mapping.pairs.start; s == MG_OK && p < root->data.mapping.pairs.top; p++) {
                yaml_node_t *kn = yaml_document_get_node(&doc, p->key);
                if (kn && kn->type == YAML_SCALAR_NODE) {
                    for (yaml_node_pair_t *q = root->data.mapping.pairs.start; q < p; q++) {
                        yaml_node_t *qn = yaml_document_get_node(&doc, q->key);
                        if (qn && qn->type == YAML_SCALAR_NODE &&
                            !strcmp((const char *)qn->data.scalar.value, (const char *)kn->data.scalar.value)) {
                            s = MG_FAIL(MG_ERR_CONFIG, "%s: duplicate key '%s' (lines %d and %d)", src,
                                        (const char *)kn->data.scalar.value, (int)qn->start_mark.line + 1,
                                        (int)kn->start_mark.line + 1);
                            break;
                        }
                    }
                }
                if (s == MG_OK) s = load_pair(cfg, &doc, p, src, seen_line, seen_as, ignored, sizeof ignored);
            }
            char unused[1024] = "";
            for (int i = 0; s == MG_OK && i < N_KEYS; i++) {
                if (!seen_line[i] || KEYS[i].used) continue;
                size_t used = strlen(unused);
                snprintf(unused + used, sizeof unused - used, "%s%s (%s)", used ? ", " : "", KEYS[i].name,
                         KEYS[i].feature);
            }
            if (unused[0]) mg_log_warn("%s: keys accepted but not used yet: %s", src, unused);
            if (s == MG_OK && ignored[0])
                mg_log_info("%s: ignored MindSpore platform settings of the reference config: %s", src, ignored);
        }
    }
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    return s;
}

mg_status mg_config_load_file(mg_config *cfg, const char *path) {
    void *data = NULL;
    size_t size = 0;
    mg_status s = mg_file_read_all(path, &data, &size);
    if (s != MG_OK) return mg_error_wrap(MG_ERR_CONFIG, "config");
    s = mg_config_load_string(cfg, data, size, path);
    free(data);
    return s;
}

/* ------------------------------------------------------------------------------------------ */
/* Validation                                                                                   */

double mg_config_label_smoothing(const mg_config *cfg) {
    return cfg->use_label_smooth ? cfg->label_smoothing : 0.0;
}

mg_status mg_config_validate(const mg_config *c) {
    if (c->warmup_epochs > 0 && c->warmup_epochs >= c->epochs)
        return MG_FAIL(MG_ERR_CONFIG, "config: warmup_epochs (%g) must be smaller than epochs (%d)",
                       c->warmup_epochs, c->epochs);
    if (c->pretrain_epoch_size >= c->epochs)
        return MG_FAIL(MG_ERR_CONFIG, "config: pretrain_epoch_size (%d) must be smaller than epochs (%d)",
                       c->pretrain_epoch_size, c->epochs);
    for (int i = 1; i < c->n_lr_steps; i++)
        if (c->lr_steps[i] <= c->lr_steps[i - 1])
            return MG_FAIL(MG_ERR_CONFIG, "config: lr_steps must be strictly increasing, found %d after %d",
                           c->lr_steps[i], c->lr_steps[i - 1]);
    if (c->classif_weight < 1.0 && c->repeated_augmentations < 2)
        return MG_FAIL(MG_ERR_CONFIG,
                       "config: classif_weight %g < 1 needs repeated_augmentations >= 2, found %d (the margin "
                       "loss has no positive pairs with m = 1); set classif_weight: 1 or repeated_augmentations: 3",
                       c->classif_weight, c->repeated_augmentations);
    if (c->batch_size % c->grad_accum != 0)
        return MG_FAIL(MG_ERR_CONFIG, "config: batch_size (%d) must be a multiple of grad_accum (%d)",
                       c->batch_size, c->grad_accum);
    if (c->classif_weight < 1.0 && c->batch_size / c->grad_accum < c->repeated_augmentations)
        return MG_FAIL(MG_ERR_CONFIG,
                       "config: a sub-batch of %d images cannot hold the %d augmented copies of one image",
                       c->batch_size / c->grad_accum, c->repeated_augmentations);
    if (c->global_sampling && c->sampling_chunks > 1)
        return MG_FAIL(MG_ERR_CONFIG,
                       "config: sampling_chunks (%d) splits each rank's batch for per-rank sampling, which "
                       "global_sampling: true turns off; set one of them back to its default",
                       c->sampling_chunks);
    if (c->lr_schedule == MG_LR_SCHEDULE_THOR) {
        if (!(c->lr_init > 0))
            return MG_FAIL(MG_ERR_CONFIG, "config: lr_schedule thor starts at lr_init, which is %g; set lr_init > 0",
                           c->lr_init);
        if (c->lr_end_epoch < c->epochs)
            return MG_FAIL(MG_ERR_CONFIG,
                           "config: lr_schedule thor needs lr_end_epoch (%d) >= epochs (%d): the polynomial "
                           "(1 - epoch/lr_end_epoch)^lr_decay is undefined past lr_end_epoch",
                           c->lr_end_epoch, c->epochs);
    }
    return MG_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Serialisation and hash                                                                       */

/* Shortest %g form that reads back to exactly the same double. */
static void format_double(double v, char *buf, size_t n) {
    for (int prec = 6; prec <= 17; prec++) {
        snprintf(buf, n, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) break;
    }
    /* keep it a YAML float-looking number for readability; integers stay integers ("3") */
}

static void value_text(const mg_config *cfg, const key_def *k, char *buf, size_t n) {
    const void *f = cfield(cfg, k);
    switch (k->type) {
    case T_INT: snprintf(buf, n, "%d", *(const int *)f); return;
    case T_INT64: snprintf(buf, n, "%" PRId64, *(const int64_t *)f); return;
    case T_DOUBLE: format_double(*(const double *)f, buf, n); return;
    case T_BOOL: snprintf(buf, n, "%s", *(const bool *)f ? "true" : "false"); return;
    case T_ENUM: snprintf(buf, n, "%s", k->names[*(const int *)f]); return;
    case T_STRING: snprintf(buf, n, "%s", (const char *)f); return; /* allowed values are plain words */
    case T_INT_LIST: {
        size_t used = 0;
        buf[0] = '\0';
        used += (size_t)snprintf(buf, n, "[");
        for (int i = 0; i < cfg->n_lr_steps && used < n; i++)
            used += (size_t)snprintf(buf + used, n - used, "%s%d", i ? ", " : "", cfg->lr_steps[i]);
        if (used < n) snprintf(buf + used, n - used, "]");
        return;
    }
    }
}

/* Per-machine resource settings: written to config.yaml but left out of the hash, so ranks with
 * different core counts still agree on the training semantics. The data-parallel timeout and bucket
 * size do not change results either. */
static bool key_is_local(const key_def *k) {
    return k->offset == OFF(threads) || k->offset == OFF(workers) || k->offset == OFF(prefetch) ||
           k->offset == OFF(dist_timeout) || k->offset == OFF(dist_bucket_mb);
}

static mg_status build_yaml(const mg_config *cfg, bool comments, char **out, size_t *len) {
    mg_strbuf b = {0};
    if (comments) {
        mg_strbuf_printf(&b, "# multigrain effective training configuration (docs/config.md)\n");
        mg_strbuf_printf(&b, "# config hash: %016" PRIx64 "\n", mg_config_hash(cfg));
    }
    for (int i = 0; i < N_KEYS; i++) {
        if (!comments && key_is_local(&KEYS[i])) continue;
        char v[512];
        value_text(cfg, &KEYS[i], v, sizeof v);
        mg_strbuf_printf(&b, "%s: %s", KEYS[i].name, v);
        if (comments) {
            const char *sep = "  #";
            if (cfg->origin[i] == MG_CONFIG_ORIGIN_FILE) {
                mg_strbuf_printf(&b, "%s from the config file, line %d", sep, cfg->line[i]);
                sep = ";";
            } else if (cfg->origin[i] == MG_CONFIG_ORIGIN_SET) {
                mg_strbuf_printf(&b, "%s from the command line", sep);
                sep = ";";
            }
            if (!KEYS[i].used) mg_strbuf_printf(&b, "%s not used yet (%s)", sep, KEYS[i].feature);
        }
        mg_strbuf_printf(&b, "\n");
    }
    if (b.failed || !b.p) {
        free(b.p);
        return MG_FAIL(MG_ERR_NOMEM, "config: out of memory while serialising");
    }
    *out = b.p;
    if (len) *len = b.len;
    return MG_OK;
}

mg_status mg_config_to_yaml(const mg_config *cfg, char **out, size_t *len) {
    return build_yaml(cfg, true, out, len);
}

uint64_t mg_config_hash(const mg_config *cfg) {
    char *body = NULL;
    size_t len = 0;
    if (build_yaml(cfg, false, &body, &len) != MG_OK) return 0;
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)body[i];
        h *= 0x100000001b3ULL;
    }
    free(body);
    return h;
}

mg_status mg_config_write_file(const mg_config *cfg, const char *path) {
    char *text = NULL;
    size_t len = 0;
    MG_TRY(mg_config_to_yaml(cfg, &text, &len));
    mg_status s = mg_file_write_atomic(path, text, len);
    free(text);
    return s;
}
