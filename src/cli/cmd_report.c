/* cmd_report.c: `multigrain report RUN_DIR [--out FILE]`: writes an offline HTML page with plots of
 * a training run's metrics.jsonl (see src/train/report.h). */
#include <string.h>

#include "cli/cli.h"
#include "core/log.h"
#include "train/report.h"

typedef struct report_args {
    const char *out;
} report_args;

static const struct option report_longopts[] = {
    {"out", required_argument, NULL, 'o'}, {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};

static mg_status report_on_opt(void *ctx, int opt, const char *name, const char *arg) {
    report_args *a = ctx;
    switch (opt) {
    case 'o': a->out = arg; return MG_OK;
    default: return MG_FAIL(MG_ERR_USAGE, "report: unhandled option %s", name);
    }
}

mg_status mg_cmd_report(int argc, char **argv) {
    const mg_command *cmd = mg_command_find("report");
    report_args a = {0};
    int first = 0, help = 0;
    /* Options may follow RUN_DIR ("report RUN --out F"): parse twice around the positional. */
    MG_TRY(mg_cli_parse(cmd, argc, argv, "o:", report_longopts, report_on_opt, &a, &first, &help));
    if (help) return MG_OK;
    if (first >= argc) return MG_FAIL(MG_ERR_USAGE, "report: missing RUN_DIR");
    const char *run_dir = argv[first];
    if (first + 1 < argc) {
        int first2 = 0;
        MG_TRY(mg_cli_parse(cmd, argc - first, argv + first, "o:", report_longopts, report_on_opt, &a, &first2,
                            &help));
        if (help) return MG_OK;
        if (first + first2 < argc)
            return MG_FAIL(MG_ERR_USAGE, "report: unexpected argument '%s'", argv[first + first2]);
    }
    MG_TRY(mg_report_write(run_dir, a.out));
    if (a.out)
        mg_log_info("report: wrote %s", a.out);
    else
        mg_log_info("report: wrote %s/report.html", run_dir);
    return MG_OK;
}
