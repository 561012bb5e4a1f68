/* cmd_bench.c: `multigrain bench model|ops|data`: user-facing speed checks on this machine with
 * random weights and images: a network's inference forward or training step, the FMA peak with an
 * sgemm and a 3x3 convolution against it, and the training loader's throughput. One result line on
 * stdout (and --json FILE); the measurements themselves are src/bench's. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "bench/bench.h"
#include "cli/cli.h"
#include "core/fileio.h"
#include "core/parse.h"
#include "core/threadpool.h"
#include "multigrain/cpu.h"
#include "multigrain/data.h"
#include "multigrain/ops.h"
#include "nn/resnet_spec.h"

enum {
    OPT_ARCH = 300,
    OPT_BATCH,
    OPT_SIZE,
    OPT_MODE,
    OPT_REPS,
    OPT_WARMUP,
    OPT_JSON,
    OPT_SECONDS,
    OPT_BATCHES,
    OPT_WORKERS
};

/* ---- shared helpers ---------------------------------------------------------------------------- */

static double bench_get_peak_rss_mib(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0; /* KiB on Linux */
}

/* Writes a JSON object atomically to the file of --json and frees it. */
static mg_status bench_write_json(cJSON *o, const char *path) {
    char *text = o ? cJSON_Print(o) : NULL;
    cJSON_Delete(o);
    if (!text) return MG_FAIL(MG_ERR_NOMEM, "--json %s: out of memory", path);
    size_t n = strlen(text);
    mg_status s = MG_OK;
    char *buf = malloc(n + 2);
    if (!buf) s = MG_FAIL(MG_ERR_NOMEM, "--json %s: out of memory", path);
    if (s == MG_OK) {
        memcpy(buf, text, n);
        buf[n] = '\n';
        s = mg_file_write_atomic(path, buf, n + 1);
        if (s != MG_OK) mg_error_wrap(s, "--json %s", path);
    }
    free(buf);
    cJSON_free(text);
    return s;
}

/* Parses the options of subcommand `sub` (argv[0] is the subcommand's name); errors name it
 * ("bench model: unknown option '--x'"). */
static mg_status bench_parse_options(const char *sub, int argc, char **argv, const char *shortopts,
                                     const struct option *longopts, mg_opt_fn on_opt, void *ctx, int *help) {
    mg_command cmd = *mg_command_find("bench");
    char name[32];
    snprintf(name, sizeof name, "bench %s", sub);
    cmd.name = name;
    int first = 0;
    MG_TRY(mg_cli_parse(&cmd, argc, argv, shortopts, longopts, on_opt, ctx, &first, help));
    if (!*help && first < argc) return MG_FAIL(MG_ERR_USAGE, "bench %s: unexpected argument '%s'", sub, argv[first]);
    return MG_OK;
}

/* ---- bench model ------------------------------------------------------------------------------- */

typedef struct bench_model_args {
    const char *arch, *json;
    int batch, size, reps, warmup, threads;
    bool train;
} bench_model_args;

static const struct option bench_model_longopts[] = {
    {"arch", required_argument, NULL, OPT_ARCH},     {"batch", required_argument, NULL, OPT_BATCH},
    {"size", required_argument, NULL, OPT_SIZE},     {"mode", required_argument, NULL, OPT_MODE},
    {"reps", required_argument, NULL, OPT_REPS},     {"warmup", required_argument, NULL, OPT_WARMUP},
    {"threads", required_argument, NULL, 'j'},       {"json", required_argument, NULL, OPT_JSON},
    {"help", no_argument, NULL, 'h'},                {NULL, 0, NULL, 0}};

static mg_status bench_model_on_opt(void *ctx, int opt, const char *name, const char *arg) {
    bench_model_args *a = ctx;
    switch (opt) {
    case OPT_ARCH: {
        mg_arch arch;
        if (mg_arch_from_name(arg, name, &arch) != MG_OK) {
            char msg[512];
            snprintf(msg, sizeof msg, "%s", mg_error_message());
            return MG_FAIL(MG_ERR_USAGE, "%s", msg);
        }
        a->arch = arg;
        return MG_OK;
    }
    case OPT_BATCH: return mg_parse_int(arg, 1, 4096, name, MG_ERR_USAGE, &a->batch);
    case OPT_SIZE: return mg_parse_int(arg, 16, 4096, name, MG_ERR_USAGE, &a->size);
    case OPT_MODE:
        if (!strcmp(arg, "infer") || !strcmp(arg, "train")) {
            a->train = !strcmp(arg, "train");
            return MG_OK;
        }
        return MG_FAIL(MG_ERR_USAGE, "%s: expected infer or train, found '%s'", name, arg);
    case OPT_REPS: return mg_parse_int(arg, 1, 100000, name, MG_ERR_USAGE, &a->reps);
    case OPT_WARMUP: return mg_parse_int(arg, 0, 100000, name, MG_ERR_USAGE, &a->warmup);
    case 'j': return mg_parse_int(arg, 0, 1024, name, MG_ERR_USAGE, &a->threads);
    case OPT_JSON: a->json = arg; return MG_OK;
    default: return MG_FAIL(MG_ERR_USAGE, "bench model: unhandled option %s", name);
    }
}

static mg_status bench_model_measure(mg_bench_model *b, const bench_model_args *a, double *times) {
    double dt;
    for (int i = 0; i < a->warmup; i++) MG_TRY(mg_bench_model_run(b, &dt));
    for (int i = 0; i < a->reps; i++) MG_TRY(mg_bench_model_run(b, &times[i]));
    return MG_OK;
}

static mg_status bench_run_model(int argc, char **argv) {
    bench_model_args a = {.arch = "resnet50", .batch = 8, .size = 224, .reps = 10, .warmup = 1};
    int help = 0;
    MG_TRY(bench_parse_options("model", argc, argv, "j:", bench_model_longopts, bench_model_on_opt, &a, &help));
    if (help) return MG_OK;
    if (a.train && a.batch < 2)
        return MG_FAIL(MG_ERR_USAGE, "--batch: expected at least 2 with --mode train (the margin loss needs pairs), "
                                     "found %d", a.batch);
    MG_TRY(mg_ops_set_threads(a.threads));
    mg_bench_model_cfg c;
    mg_bench_model_cfg_default(&c, a.train);
    c.arch = a.arch, c.batch = a.batch, c.size = a.size;
    mg_bench_model *b = NULL;
    MG_TRY(mg_bench_model_init(&b, &c));
    int64_t macs = 0;
    double *times = malloc(sizeof *times * (size_t)a.reps);
    mg_status s = times ? MG_OK : MG_FAIL(MG_ERR_NOMEM, "bench model: out of memory");
    if (s == MG_OK) s = mg_bench_count_forward_macs(mg_bench_model_network(b), a.size, a.size, &macs);
    if (s == MG_OK) s = bench_model_measure(b, &a, times);
    mg_bench_model_free(b);
    if (s != MG_OK) {
        free(times);
        return s;
    }
    double median, min, max;
    mg_bench_summarize(times, a.reps, &median, &min, &max);
    free(times);
    const char *mode = a.train ? "train" : "infer";
    const int threads = mg_ops_get_threads();
    const double gflop_iter = 2.0 * (double)macs * a.batch * (a.train ? 3 : 1) * 1e-9;
    const double ips = a.batch / median, gflops = gflop_iter / median, rss = bench_get_peak_rss_mib();
    printf("bench model: arch %s batch %d size %d mode %s threads %d: %.4g s/iter median (min %.4g max %.4g, "
           "%d reps), %.1f images/s, %.1f GFLOP/s (%.4g GFLOP/iter), peak RSS %.1f MiB\n",
           a.arch, a.batch, a.size, mode, threads, median, min, max, a.reps, ips, gflops, gflop_iter, rss);
    fflush(stdout);
    if (!a.json) return MG_OK;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "bench", "model");
    cJSON_AddStringToObject(o, "arch", a.arch);
    cJSON_AddNumberToObject(o, "batch", a.batch);
    cJSON_AddNumberToObject(o, "size", a.size);
    cJSON_AddStringToObject(o, "mode", mode);
    cJSON_AddNumberToObject(o, "threads", threads);
    cJSON_AddNumberToObject(o, "reps", a.reps);
    cJSON_AddNumberToObject(o, "warmup", a.warmup);
    cJSON_AddNumberToObject(o, "median_s", median);
    cJSON_AddNumberToObject(o, "min_s", min);
    cJSON_AddNumberToObject(o, "max_s", max);
    cJSON_AddNumberToObject(o, "images_per_s", ips);
    cJSON_AddNumberToObject(o, "gflops", gflops);
    cJSON_AddNumberToObject(o, "gflop_per_iter", gflop_iter);
    cJSON_AddNumberToObject(o, "forward_macs_per_image", (double)macs);
    cJSON_AddNumberToObject(o, "peak_rss_mib", rss);
    return bench_write_json(o, a.json);
}

/* ---- bench ops --------------------------------------------------------------------------------- */

typedef struct bench_ops_args {
    const char *json;
    int threads;
    double seconds;
} bench_ops_args;

static const struct option bench_ops_longopts[] = {{"threads", required_argument, NULL, 'j'},
                                                   {"seconds", required_argument, NULL, OPT_SECONDS},
                                                   {"json", required_argument, NULL, OPT_JSON},
                                                   {"help", no_argument, NULL, 'h'},
                                                   {NULL, 0, NULL, 0}};

static mg_status bench_ops_on_opt(void *ctx, int opt, const char *name, const char *arg) {
    bench_ops_args *a = ctx;
    switch (opt) {
    case 'j': return mg_parse_int(arg, 0, 1024, name, MG_ERR_USAGE, &a->threads);
    case OPT_SECONDS: return mg_parse_double(arg, 0.01, 3600, name, MG_ERR_USAGE, &a->seconds);
    case OPT_JSON: a->json = arg; return MG_OK;
    default: return MG_FAIL(MG_ERR_USAGE, "bench ops: unhandled option %s", name);
    }
}

enum { OPS_GEMM_N = 1024 };

typedef struct bench_ops_result {
    double peak;
    mg_bench_op_result gemm, conv;
} bench_ops_result;

static mg_status bench_ops_measure(int threads, double seconds, bench_ops_result *r) {
    MG_TRY(mg_bench_measure_fma_peak(threads, seconds, &r->peak));
    MG_TRY(mg_bench_time_sgemm(OPS_GEMM_N, threads, seconds, &r->gemm));
    /* ResNet-50 layer2's 3x3 convolution at 224x224 input: 128 -> 128 channels at 28x28, batch 8 */
    mg_conv2d_desc d = {.n = 8, .c = 128, .h = 28, .w = 28, .k = 128, .r = 3, .s = 3, .stride_h = 1,
                        .stride_w = 1, .pad_h = 1, .pad_w = 1, .dil_h = 1, .dil_w = 1, .groups = 1, .has_bias = 0};
    return mg_bench_time_conv2d(&d, seconds, &r->conv);
}

static mg_status bench_run_ops(int argc, char **argv) {
    bench_ops_args a = {.seconds = 1.0};
    int help = 0;
    MG_TRY(bench_parse_options("ops", argc, argv, "j:", bench_ops_longopts, bench_ops_on_opt, &a, &help));
    if (help) return MG_OK;
    MG_TRY(mg_ops_set_threads(a.threads));
    const int threads = mg_ops_get_threads();
    bench_ops_result r = {0};
    MG_TRY(bench_ops_measure(threads, a.seconds, &r));
    const double gemm_frac = r.gemm.gflops / r.peak, conv_frac = r.conv.gflops / r.peak;
    printf("bench ops: threads %d: FMA peak %.1f GFLOP/s (%d-wide FMAs); sgemm %dx%dx%d %.1f GFLOP/s (%.1f%% of peak); "
           "conv 3x3 128->128 at 28x28 batch 8 (%s) %.1f GFLOP/s (%.1f%% of peak)\n",
           threads, r.peak, mg_cpu_fma_width(), OPS_GEMM_N, OPS_GEMM_N, OPS_GEMM_N, r.gemm.gflops, 100 * gemm_frac, r.conv.impl,
           r.conv.gflops, 100 * conv_frac);
    fflush(stdout);
    if (!a.json) return MG_OK;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "bench", "ops");
    cJSON_AddNumberToObject(o, "threads", threads);
    cJSON_AddNumberToObject(o, "seconds", a.seconds);
    cJSON_AddNumberToObject(o, "fma_peak_gflops", r.peak);
    cJSON_AddNumberToObject(o, "fma_width", mg_cpu_fma_width());
    cJSON_AddNumberToObject(o, "sgemm_n", OPS_GEMM_N);
    cJSON_AddNumberToObject(o, "sgemm_gflops", r.gemm.gflops);
    cJSON_AddNumberToObject(o, "sgemm_fraction_of_peak", gemm_frac);
    cJSON_AddNumberToObject(o, "sgemm_runs", r.gemm.runs);
    cJSON_AddStringToObject(o, "conv_impl", r.conv.impl);
    cJSON_AddNumberToObject(o, "conv_gflops", r.conv.gflops);
    cJSON_AddNumberToObject(o, "conv_fraction_of_peak", conv_frac);
    cJSON_AddNumberToObject(o, "conv_runs", r.conv.runs);
    return bench_write_json(o, a.json);
}

/* ---- bench data -------------------------------------------------------------------------------- */

typedef struct bench_data_args {
    const char *data, *json;
    int size, batch, batches, workers;
} bench_data_args;

static const struct option bench_data_longopts[] = {
    {"data", required_argument, NULL, 'd'},          {"size", required_argument, NULL, OPT_SIZE},
    {"batch", required_argument, NULL, OPT_BATCH},   {"batches", required_argument, NULL, OPT_BATCHES},
    {"workers", required_argument, NULL, OPT_WORKERS}, {"json", required_argument, NULL, OPT_JSON},
    {"help", no_argument, NULL, 'h'},                {NULL, 0, NULL, 0}};

static mg_status bench_data_on_opt(void *ctx, int opt, const char *name, const char *arg) {
    bench_data_args *a = ctx;
    switch (opt) {
    case 'd': a->data = arg; return MG_OK;
    case OPT_SIZE: return mg_parse_int(arg, 16, 4096, name, MG_ERR_USAGE, &a->size);
    case OPT_BATCH: return mg_parse_int(arg, 1, 4096, name, MG_ERR_USAGE, &a->batch);
    case OPT_BATCHES: return mg_parse_int(arg, 1, 1000000, name, MG_ERR_USAGE, &a->batches);
    case OPT_WORKERS: return mg_parse_int(arg, 1, 1024, name, MG_ERR_USAGE, &a->workers);
    case OPT_JSON: a->json = arg; return MG_OK;
    default: return MG_FAIL(MG_ERR_USAGE, "bench data: unhandled option %s", name);
    }
}

static mg_status bench_run_data(int argc, char **argv) {
    bench_data_args a = {.size = 224, .batch = 64, .batches = 20, .workers = mg_pool_default_threads()};
    int help = 0;
    MG_TRY(bench_parse_options("data", argc, argv, "d:", bench_data_longopts, bench_data_on_opt, &a, &help));
    if (help) return MG_OK;
    if (!a.data)
        return MG_FAIL(MG_ERR_USAGE, "bench data: --data ROOT is required (a dataset with train/ or IDX files)");
    mg_dataset ds;
    mg_status s = mg_dataset_open_split(a.data, "train", 0, &ds);
    if (s != MG_OK) return mg_error_wrap(s, "--data"); /* the message names ROOT */
    /* the training loader as `multigrain train` sets it up: full augmentation, m = 3 copies */
    mg_loader_cfg lc;
    mg_loader_cfg_default(&lc, true);
    lc.threads = a.workers;
    lc.transform.size = a.size;
    lc.sampler.batch = a.batch;
    lc.sampler.reps = 3;
    mg_bench_loader_result r;
    s = mg_bench_time_loader(&ds, &lc, a.batches, 0, &r);
    const int64_t files = ds.n;
    mg_dataset_free(&ds);
    MG_TRY(s);
    const double ips = (double)r.images / r.wall_s, cpu_ips = (double)r.images / r.cpu_s;
    printf("bench data: %lld images in %lld batches of %d at %dx%d, %d workers: %.1f images/s, "
           "%.1f images per CPU second, consumer waited %.3g of %.3g s (%lld files)\n",
           (long long)r.images, (long long)r.batches, a.batch, a.size, a.size, a.workers, ips, cpu_ips, r.wait_s,
           r.wall_s, (long long)files);
    fflush(stdout);
    if (!a.json) return MG_OK;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "bench", "data");
    cJSON_AddStringToObject(o, "data", a.data);
    cJSON_AddNumberToObject(o, "files", (double)files);
    cJSON_AddNumberToObject(o, "size", a.size);
    cJSON_AddNumberToObject(o, "batch", a.batch);
    cJSON_AddNumberToObject(o, "batches", (double)r.batches);
    cJSON_AddNumberToObject(o, "images", (double)r.images);
    cJSON_AddNumberToObject(o, "workers", a.workers);
    cJSON_AddNumberToObject(o, "images_per_s", ips);
    cJSON_AddNumberToObject(o, "images_per_cpu_s", cpu_ips);
    cJSON_AddNumberToObject(o, "wall_s", r.wall_s);
    cJSON_AddNumberToObject(o, "consumer_wait_s", r.wait_s);
    return bench_write_json(o, a.json);
}

/* ---- dispatch ---------------------------------------------------------------------------------- */

mg_status mg_cmd_bench(int argc, char **argv) {
    const char *sub = argc > 1 ? argv[1] : NULL;
    if (sub && (!strcmp(sub, "--help") || !strcmp(sub, "-h"))) {
        fputs(mg_command_find("bench")->usage, stdout);
        return MG_OK;
    }
    if (!sub) return MG_FAIL(MG_ERR_USAGE, "bench: expected a subcommand (model, ops or data), found none");
    if (!strcmp(sub, "model")) return bench_run_model(argc - 1, argv + 1);
    if (!strcmp(sub, "ops")) return bench_run_ops(argc - 1, argv + 1);
    if (!strcmp(sub, "data")) return bench_run_data(argc - 1, argv + 1);
    return MG_FAIL(MG_ERR_USAGE, "bench: unknown subcommand '%s': expected model, ops or data", sub);
}
