/* cmd_convert.c: `multigrain convert`: PyTorch .pth (torchvision or MultiGrain) -> multigrain
 * safetensors checkpoint. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "core/parse.h"
#include "io/torch_import.h"

typedef struct convert_args {
    const char *from, *to, *arch;
    int num_classes;
    double p;
    int allow_foreign;
} convert_args;

enum { OPT_FROM = 256, OPT_TO, OPT_ARCH, OPT_CLASSES, OPT_P, OPT_FOREIGN };

static const struct option convert_longopts[] = {
    {"from", required_argument, NULL, OPT_FROM},       {"to", required_argument, NULL, OPT_TO},
    {"arch", required_argument, NULL, OPT_ARCH},       {"num-classes", required_argument, NULL, OPT_CLASSES},
    {"p", required_argument, NULL, OPT_P},             {"skip-foreign-objects", no_argument, NULL, OPT_FOREIGN},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0}};

static mg_status convert_on_opt(void *ctx, int opt, const char *name, const char *arg) {
    convert_args *a = ctx;
    switch (opt) {
    case OPT_FROM: a->from = arg; return MG_OK;
    case OPT_TO: a->to = arg; return MG_OK;
    case OPT_ARCH:
        if (strcmp(arg, "resnet18") && strcmp(arg, "resnet34") && strcmp(arg, "resnet50") && strcmp(arg, "resnet101") &&
            strcmp(arg, "resnet152") && strcmp(arg, "se_resnet50"))
            return MG_FAIL(MG_ERR_USAGE,
                           "%s: expected resnet18, resnet34, resnet50, resnet101, resnet152 or se_resnet50, found '%s'",
                           name, arg);
        a->arch = arg;
        return MG_OK;
    case OPT_CLASSES: return mg_parse_int(arg, 1, 1000000, name, MG_ERR_USAGE, &a->num_classes);
    case OPT_P: return mg_parse_double(arg, 0.01, 1000.0, name, MG_ERR_USAGE, &a->p);
    case OPT_FOREIGN: a->allow_foreign = 1; return MG_OK;
    default: return MG_FAIL(MG_ERR_USAGE, "convert: unhandled option %s", name);
    }
}

mg_status mg_cmd_convert(int argc, char **argv) {
    const mg_command *cmd = mg_command_find("convert");
    convert_args a = {0};
    int first = 0, help = 0;
    MG_TRY(mg_cli_parse(cmd, argc, argv, "", convert_longopts, convert_on_opt, &a, &first, &help));
    if (help) return MG_OK;
    if (first < argc) return MG_FAIL(MG_ERR_USAGE, "convert: unexpected argument '%s'", argv[first]);
    if (!a.from) return MG_FAIL(MG_ERR_USAGE, "convert: --from X.pth is required");
    if (!a.to) return MG_FAIL(MG_ERR_USAGE, "convert: --to Y.safetensors is required");
    mg_import_opts o = {.arch = a.arch, .num_classes = a.num_classes, .p = a.p, .allow_foreign = a.allow_foreign};
    mg_import_report r;
    mg_status s = mg_import_pth(a.from, a.to, &o, &r);
    if (s != MG_OK && !a.allow_foreign && strstr(mg_error_message(), "refusing to load global")) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", mg_error_message());
        return MG_FAIL(s, "%s; if that object lies outside the state dict (e.g. a pickled optimizer), "
                          "--skip-foreign-objects skips it without running it", msg);
    }
    if (s != MG_OK) return s;
    printf("%s: %s, %d classes, p=%g%s, %d tensors (%s layout; %d unexpected key(s) skipped, %d entries filled in)\n",
           a.to, r.arch, r.num_classes, r.p, r.whitened ? ", whitened" : "", r.n_written, r.layout, r.n_unexpected,
           r.n_filled);
    return MG_OK;
}
