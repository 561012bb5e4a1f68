/* main.c: entry point of the `multigrain` program: global options, subcommand dispatch, and the
 * one place where a status becomes an exit code (0 ok, 2 usage/config, 1 other errors). */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "core/log.h"
#include "multigrain/multigrain.h"
#include "multigrain/runtime.h"

static void print_usage(FILE *out) {
    fprintf(out,
            "usage: multigrain [--version] [--help] [--quiet|--verbose] <command> [options]\n"
            "\n"
            "MultiGrain: one image embedding for classification and instance retrieval.\n"
            "\n"
            "commands:\n");
    for (int i = 0; i < mg_command_count; i++)
        fprintf(out, "  %-15s %s\n", mg_commands[i].name, mg_commands[i].summary);
    fprintf(out, "\nRun 'multigrain <command> --help' for the options of a command.\n");
}

static int fail(mg_status s) {
    if (mg_error_reported()) return mg_status_exit_code(s); /* the command printed it (cmd_train.c) */
    fprintf(stderr, "multigrain: %s\n", mg_error_message()[0] ? mg_error_message() : mg_status_name(s));
    if (mg_log_get_level() >= MG_LOG_DEBUG && mg_error_where())
        fprintf(stderr, "multigrain: (raised at %s)\n", mg_error_where());
    return mg_status_exit_code(s);
}

/* The idle-thread setting for the command line (runtime.h): brief spinning for the commands that run
 * inference only (mg_command.inference) and for `bench model` without --mode train; sleeping at
 * once for everything else, training above all. */
static mg_runtime_wait command_wait(int argc, char **argv) {
    int i = 1;
    while (i < argc && argv[i][0] == '-') i++;
    const mg_command *cmd = i < argc ? mg_command_find(argv[i]) : NULL;
    if (!cmd) return MG_WAIT_SLEEP;
    if (cmd->inference) return MG_WAIT_SPIN;
    if (strcmp(cmd->name, "bench") || i + 1 >= argc || strcmp(argv[i + 1], "model")) return MG_WAIT_SLEEP;
    for (int k = i + 2; k < argc; k++)
        if (!strcmp(argv[k], "--mode=train") || (!strcmp(argv[k], "--mode") && k + 1 < argc && !strcmp(argv[k + 1], "train")))
            return MG_WAIT_SLEEP;
    return MG_WAIT_SPIN;
}

int main(int argc, char **argv) {
    mg_runtime_init(argc, argv, command_wait(argc, argv)); /* unless the user chose: may re-exec once */
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            print_usage(stdout);
            return 0;
        } else if (!strcmp(a, "--version") || !strcmp(a, "-V")) {
            printf("multigrain %s\n%s", mg_version(), mg_build_features());
            return 0;
        } else if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) {
            mg_log_set_level(MG_LOG_WARN);
        } else if (!strcmp(a, "--verbose") || !strcmp(a, "-v")) {
            mg_log_set_level(MG_LOG_DEBUG);
        } else {
            fprintf(stderr, "multigrain: unknown global option '%s'\n", a);
            print_usage(stderr);
            return 2;
        }
    }
    if (i >= argc) {
        fprintf(stderr, "multigrain: no command given\n");
        print_usage(stderr);
        return 2;
    }
    mg_log_debug("OpenMP idle threads: %s", mg_runtime_wait_setting());
    mg_log_debug("malloc: %s", mg_runtime_malloc_setting());
    const mg_command *cmd = mg_command_find(argv[i]);
    if (!cmd) {
        fprintf(stderr, "multigrain: unknown command '%s'\n", argv[i]);
        print_usage(stderr);
        return 2;
    }
    int sub_argc = argc - i;
    char **sub_argv = argv + i;
    mg_status s = cmd->run(sub_argc, sub_argv);
    if (s == MG_OK) return 0;
    int code = fail(s);
    if (s == MG_ERR_USAGE) fputs(cmd->usage, stderr);
    return code;
}
