/* cli_parse.c: getopt_long wrapper shared by all subcommands (see cli.h). */
#include <string.h>

#include "cli/cli.h"

const char *mg_cli_option_name(const struct option *longopts, int val, char *buf, size_t n) {
    for (const struct option *o = longopts; o && o->name; o++) {
        if (o->val == val) {
            snprintf(buf, n, "--%s", o->name);
            return buf;
        }
    }
    snprintf(buf, n, "-%c", val);
    return buf;
}

mg_status mg_cli_parse(const mg_command *cmd, int argc, char **argv, const char *shortopts,
                       const struct option *longopts, mg_opt_fn on_opt, void *ctx, int *first_positional,
                       int *help_shown) {
    *help_shown = 0;
    char so[128];
    /* Leading ':' makes getopt report a missing argument as ':' and be silent; '+' stops at the
     * first positional argument (POSIX order). */
    snprintf(so, sizeof so, "+:h%s", shortopts ? shortopts : "");
    optind = 0; /* full re-initialisation for glibc */
    opterr = 0;
    for (;;) {
        int idx = -1;
        int c = getopt_long(argc, argv, so, longopts, &idx);
        if (c == -1) break;
        char name[96];
        if (c == 'h') {
            fputs(cmd->usage, stdout);
            *help_shown = 1;
            return MG_OK;
        }
        if (c == '?') {
            const char *bad = argv[optind - 1];
            if (optopt && !(bad && bad[0] == '-' && bad[1] == '-'))
                return MG_FAIL(MG_ERR_USAGE, "%s: unknown option '-%c'", cmd->name, optopt);
            return MG_FAIL(MG_ERR_USAGE, "%s: unknown option '%s'", cmd->name, bad ? bad : "?");
        }
        if (c == ':') {
            const char *bad = argv[optind - 1];
            if (bad && bad[0] == '-' && bad[1] == '-')
                return MG_FAIL(MG_ERR_USAGE, "%s: option '%s' needs a value", cmd->name, bad);
            return MG_FAIL(MG_ERR_USAGE, "%s: option '-%c' needs a value", cmd->name, optopt);
        }
        const char *optname =
            idx >= 0 ? (snprintf(name, sizeof name, "--%s", longopts[idx].name), name)
                     : mg_cli_option_name(longopts, c, name, sizeof name);
        MG_TRY(on_opt(ctx, c, optname, optarg));
    }
    *first_positional = optind;
    return MG_OK;
}
