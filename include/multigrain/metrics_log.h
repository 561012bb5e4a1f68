/* metrics_log.h: the machine-readable training log RUN_DIR/metrics.jsonl: an append-only writer
 * (one JSON object per line, flushed per record, fsync'd on request, e.g. once per epoch) and a
 * reader that tolerates a torn last line (a crash during a write).
 *
 * Line format (docs/config.md, "Run folder"): {"kind":"step"|"epoch"|"eval", "epoch":E, "step":S,
 * "loss":L, "loss_ce":..., "loss_margin":..., "lr":..., "beta":..., "top1":..., "top5":...,
 * "images_per_s":..., "time_s":...}; a field that is not measured is left out. */
#ifndef MULTIGRAIN_METRICS_LOG_H
#define MULTIGRAIN_METRICS_LOG_H

#include <stdint.h>
#include <stdio.h>

#include "multigrain/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum mg_metrics_kind {
    MG_METRICS_STEP = 0, /* one training step (or one log interval) */
    MG_METRICS_EPOCH,    /* end-of-epoch summary */
    MG_METRICS_EVAL,     /* validation result */
    MG_METRICS_KIND_COUNT
} mg_metrics_kind;

/* Numbers that are NAN are "not measured" and are not written. */
typedef struct mg_metrics_record {
    mg_metrics_kind kind;
    int64_t epoch; /* 1-based, as the reference's log lines */
    int64_t step;  /* global step index from 0 */
    double loss, loss_ce, loss_margin, lr, beta, top1, top5, images_per_s, time_s;
} mg_metrics_record;

/* A record with every number NAN. */
mg_metrics_record mg_metrics_record_empty(mg_metrics_kind kind, int64_t epoch, int64_t step);

typedef struct mg_metrics_log {
    FILE *fp;
    char *path;
} mg_metrics_log;

/* Opens `path` for appending (created if missing). */
mg_status mg_metrics_log_open(mg_metrics_log *log, const char *path);
/* Appends one line and flushes it to the OS. */
mg_status mg_metrics_log_append(mg_metrics_log *log, const mg_metrics_record *rec);
/* fsync: call at the end of every epoch. */
mg_status mg_metrics_log_sync(mg_metrics_log *log);
/* Syncs and closes; safe on a log that failed to open. */
mg_status mg_metrics_log_close(mg_metrics_log *log);

/* The reference's console line: "epoch: E step: S, loss is L", with E the 1-based epoch and S the
 * 1-based step within the epoch (MindSpore LossMonitor); the loss is printed as the shortest text
 * that reads back to the same float32. */
void mg_metrics_print_step_line(FILE *out, int64_t epoch, int64_t step_in_epoch, double loss);

typedef struct mg_metrics_series {
    mg_metrics_record *records;
    size_t count;
    size_t skipped_torn; /* 1 when the last line was incomplete and was ignored */
} mg_metrics_series;

/* Reads every record of a metrics.jsonl; unknown fields are ignored. A malformed line other than
 * an unterminated last one is MG_ERR_FORMAT naming the file and the line. */
mg_status mg_metrics_read(const char *path, mg_metrics_series *out);
void mg_metrics_series_free(mg_metrics_series *s);

const char *mg_metrics_kind_name(mg_metrics_kind kind);

#ifdef __cplusplus
}
#endif
#endif
