/* cli.h: the subcommand table of the `multigrain` program and helpers shared by the commands
 * (usage errors, option parsing with range checks). Only main() turns statuses into exit codes. */
#ifndef MG_CLI_CLI_H
#define MG_CLI_CLI_H

#include <getopt.h>
#include <stdio.h>

#include "multigrain/status.h"

typedef mg_status (*mg_cmd_fn)(int argc, char **argv);

typedef struct mg_command {
    const char *name;
    const char *summary; /* one line for `multigrain --help` */
    const char *usage;   /* full help text for `multigrain <cmd> --help` */
    mg_cmd_fn run;       /* every registered command has one */
    int inference;       /* runs inference only: idle OpenMP threads may spin briefly (runtime.h) */
} mg_command;

extern const mg_command mg_commands[];
extern const int mg_command_count;

const mg_command *mg_command_find(const char *name);

/* Parses argv with getopt_long for command `cmd`; calls on_opt for every option.
 * Handles -h/--help itself (prints cmd->usage to stdout, returns MG_OK with *help_shown = 1),
 * reports unknown options and missing arguments as MG_ERR_USAGE naming the option. */
typedef mg_status (*mg_opt_fn)(void *ctx, int opt, const char *optname, const char *arg);
mg_status mg_cli_parse(const mg_command *cmd, int argc, char **argv, const char *shortopts,
                       const struct option *longopts, mg_opt_fn on_opt, void *ctx, int *first_positional,
                       int *help_shown);

/* Name of a long option by its value, for error messages ("--batch-size"). */
const char *mg_cli_option_name(const struct option *longopts, int val, char *buf, size_t n);

/* Individual commands. */
mg_status mg_cmd_train(int argc, char **argv);
mg_status mg_cmd_embed(int argc, char **argv);
mg_status mg_cmd_classify(int argc, char **argv);
mg_status mg_cmd_eval(int argc, char **argv);
mg_status mg_cmd_retrieval_eval(int argc, char **argv);
mg_status mg_cmd_report(int argc, char **argv);
mg_status mg_cmd_convert(int argc, char **argv);
mg_status mg_cmd_search(int argc, char **argv);
mg_status mg_cmd_whiten(int argc, char **argv);
mg_status mg_cmd_tune_p(int argc, char **argv);
mg_status mg_cmd_bench(int argc, char **argv);

#endif
