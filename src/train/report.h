/* report.h: `multigrain report`: an offline HTML page (inline SVG plots, no scripts or external
 * files) of a training run's metrics.jsonl: loss, learning rate, top-1/top-5 when present, images/s. */
#ifndef MG_TRAIN_REPORT_H
#define MG_TRAIN_REPORT_H

#include "multigrain/metrics_log.h"
#include "multigrain/status.h"

/* Builds the page for `series` (title names the run; config_yaml may be NULL). Returns a malloc'd,
 * NUL-terminated string in *html. */
mg_status mg_report_build_html(const mg_metrics_series *series, const char *title, const char *config_yaml,
                               char **html);

/* Reads RUN_DIR/metrics.jsonl (and RUN_DIR/config.yaml when present) and writes the page
 * atomically to out_path (NULL: RUN_DIR/report.html). */
mg_status mg_report_write(const char *run_dir, const char *out_path);

#endif
