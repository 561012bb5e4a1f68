/* checkpoint.h: the multigrain checkpoint format: one safetensors file holding the network's
 * tensors under PyTorch state_dict names (+ `pool.p`), optional whitening (`whiten.mean`,
 * `whiten.P`), optional optimizer / training state (`optimizer.*`, `state.*`), and metadata
 * (format, format_version, arch, num_classes, p, class_names, epoch, step, config, whitened).
 * See docs/formats.md. Writing and opening both validate the tensors against the architecture's
 * parameter table (nn/resnet_spec.h): missing, unexpected, mistyped or misshapen tensors and
 * wrong class counts are one-line errors naming the tensor. */
#ifndef MULTIGRAIN_CHECKPOINT_H
#define MULTIGRAIN_CHECKPOINT_H

#include <stdint.h>

#include "multigrain/safetensors.h"
#include "multigrain/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MG_CHECKPOINT_FORMAT "multigrain-checkpoint"
#define MG_CHECKPOINT_VERSION 1

typedef struct mg_checkpoint_meta {
    const char *arch;             /* "resnet50", ... */
    int num_classes;
    double p;                     /* GeM exponent (also stored as tensor pool.p) */
    int64_t epoch;                /* completed epochs */
    int64_t step;                 /* optimizer steps */
    const char *class_names_json; /* JSON array of strings, or NULL for "[]" */
    const char *config;           /* effective config text (YAML/JSON), or NULL for "" */
    int whitened;                 /* 1: whiten.mean [D+1] / whiten.P [D+1, D'] present, fc.weight [K, D'] */
} mg_checkpoint_meta;

/* Writer: tensors are borrowed until commit. */
typedef struct mg_checkpoint_writer {
    mg_st_writer st;
    char arch[32];
    int num_classes;
    int whitened;
} mg_checkpoint_writer;

mg_status mg_checkpoint_writer_init(mg_checkpoint_writer *w, const mg_checkpoint_meta *meta);
mg_status mg_checkpoint_writer_add(mg_checkpoint_writer *w, const char *name, mg_dtype dtype, int ndim,
                                   const int64_t *shape, const void *data);
/* Extra metadata (e.g. "sampler_state"); the reserved keys above are set by init. */
mg_status mg_checkpoint_writer_set_meta(mg_checkpoint_writer *w, const char *key, const char *value);
/* Validates against the architecture and writes atomically. */
mg_status mg_checkpoint_writer_commit(mg_checkpoint_writer *w, const char *path);
void mg_checkpoint_writer_free(mg_checkpoint_writer *w);

typedef struct mg_checkpoint {
    mg_safetensors st;
    char arch[32];
    int num_classes;
    double p;
    int64_t epoch, step;
    int whitened;
    const char *class_names_json; /* into st's metadata */
    const char *config;
} mg_checkpoint;

/* Opens and validates. expect_arch (NULL: any) and expect_classes (0: any) are checked too. */
mg_status mg_checkpoint_open(mg_checkpoint *c, const char *path, const char *expect_arch, int expect_classes);
void mg_checkpoint_close(mg_checkpoint *c);
const mg_st_tensor *mg_checkpoint_tensor(const mg_checkpoint *c, const char *name);
/* Copies tensor `name` into dst as float32 (it must be F32 with exactly `count` elements). */
mg_status mg_checkpoint_read_f32(const mg_checkpoint *c, const char *name, float *dst, int64_t count);

#ifdef __cplusplus
}
#endif
#endif
