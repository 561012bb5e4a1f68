/* bench_data.c: decode + augment throughput of the data pipeline on real JPEG files: one thread
 * running the full training transform (or the test transform) over the files of a folder, in
 * images per wall second and per CPU second; optionally the threaded loader (timed by src/bench's
 * mg_bench_time_loader, as `multigrain bench data`).
 * Usage: bench_data DIR [--seconds S] [--mode train|torch|eval] [--no-dct] [--loader THREADS]
 *        bench_data --scan ROOT     (time of an ImageNet-layout folder scan, without and with cache) */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench/bench.h"
#include "core/fileio.h"
#include "multigrain/data.h"

static double now(clockid_t c) {
    struct timespec ts;
    clock_gettime(c, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: bench_data DIR [--seconds S] [--mode train|torch|eval] [--no-dct] [--loader THREADS]\n");
        return 2;
    }
    if (!strcmp(argv[1], "--scan") && argc >= 3) {
        char cache[4096];
        snprintf(cache, sizeof cache, "%s.scan-cache", argv[2]);
        remove(cache);
        for (int k = 0; k < 3; k++) {
            mg_scan_opts o = {k ? cache : NULL, true};
            mg_dataset ds;
            double t0 = now(CLOCK_MONOTONIC);
            if (mg_dataset_scan_folder(argv[2], &o, &ds) != MG_OK) { fprintf(stderr, "%s\n", mg_error_message()); return 1; }
            printf("scan %s: %lld files, %d classes, %.3f s\n", k == 0 ? "(no cache)" : k == 1 ? "(writing cache)" : "(from cache)",
                   (long long)ds.n, ds.n_classes, now(CLOCK_MONOTONIC) - t0);
            mg_dataset_free(&ds);
        }
        remove(cache);
        return 0;
    }
    const char *dir = argv[1], *mode = "train";
    double seconds = 5;
    int dct = 1, loader_threads = 0;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--seconds") && i + 1 < argc) seconds = atof(argv[++i]);
        else if (!strcmp(argv[i], "--mode") && i + 1 < argc) mode = argv[++i];
        else if (!strcmp(argv[i], "--no-dct")) dct = 0;
        else if (!strcmp(argv[i], "--loader") && i + 1 < argc) loader_threads = atoi(argv[++i]);
        else { fprintf(stderr, "bench_data: unknown option '%s'\n", argv[i]); return 2; }
    }
    DIR *d = opendir(dir);
    if (!d) { fprintf(stderr, "bench_data: cannot open %s\n", dir); return 1; }
    char **files = NULL;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *dot = strrchr(e->d_name, '.');
        if (!dot || (strcmp(dot, ".jpg") && strcmp(dot, ".JPEG") && strcmp(dot, ".jpeg"))) continue;
        files = realloc(files, sizeof(char *) * (size_t)(n + 1));
        files[n++] = mg_path_join(dir, e->d_name);
    }
    closedir(d);
    if (n == 0) { fprintf(stderr, "bench_data: no .jpg in %s\n", dir); return 1; }
    qsort(files, (size_t)n, sizeof(char *), cmp);

    mg_transform_cfg c;
    mg_transform_cfg_default(&c, strcmp(mode, "eval") != 0);
    if (!strcmp(mode, "torch")) c.level = MG_AUG_TORCH;
    c.dct_scale = dct && c.train;
    if (loader_threads > 0) {
        /* threaded loader over a list of the same files */
        mg_dataset ds = {0};
        char list[4096];
        snprintf(list, sizeof list, "%s/.bench_list.txt", dir);
        FILE *f = fopen(list, "w");
        for (int i = 0; i < n; i++) fprintf(f, "%s 0\n", files[i]);
        fclose(f);
        if (mg_dataset_read_list(list, "", &ds) != MG_OK) { fprintf(stderr, "%s\n", mg_error_message()); return 1; }
        mg_loader_cfg lc;
        mg_loader_cfg_default(&lc, true);
        lc.transform = c;
        lc.threads = loader_threads;
        lc.sampler.batch = 64;
        lc.sampler.reps = 3;
        double big = (5000.0 * seconds + 64) / n; /* more than the run can load: the clock ends it */
        lc.sampler.len_factor = big;
        mg_bench_loader_result r;
        if (mg_bench_time_loader(&ds, &lc, 0, seconds, &r) != MG_OK) {
            fprintf(stderr, "%s\n", mg_error_message());
            return 1;
        }
        int64_t imgs = r.images;
        mg_dataset_free(&ds);
        remove(list);
        printf("multigrain loader threads=%d mode=%s images=%lld wall_img_s=%.1f cpu_img_s=%.1f consumer_wait_s=%.2f\n",
               loader_threads, mode, (long long)imgs, imgs / r.wall_s, imgs / r.cpu_s, r.wait_s);
        return 0;
    }
    int ow, oh;
    mg_transform_out_size(&c, 500, 375, &ow, &oh);
    float *out = malloc(sizeof(float) * 3 * 1024 * 1024);
    mg_transform_ws ws = {0};
    double t0 = now(CLOCK_MONOTONIC), c0 = now(CLOCK_PROCESS_CPUTIME_ID);
    int64_t imgs = 0;
    while (now(CLOCK_MONOTONIC) - t0 < seconds) {
        for (int i = 0; i < n; i++, imgs++) {
            void *data;
            size_t size;
            if (mg_file_read_all(files[i], &data, &size) != MG_OK ||
                mg_transform_apply_mem(&c, data, size, 1, 0, (uint64_t)imgs, &ws, out, 3 * 1024 * 1024, &ow, &oh) != MG_OK) {
                fprintf(stderr, "bench_data: %s: %s\n", files[i], mg_error_message());
                return 1;
            }
            free(data);
        }
    }
    double wall = now(CLOCK_MONOTONIC) - t0, cpu = now(CLOCK_PROCESS_CPUTIME_ID) - c0;
    printf("multigrain mode=%s dct=%d files=%d images=%lld wall_img_s=%.1f cpu_img_s=%.1f\n", mode, c.dct_scale, n,
           (long long)imgs, imgs / wall, imgs / cpu);
    mg_transform_ws_free(&ws);
    free(out);
    for (int i = 0; i < n; i++) free(files[i]);
    free(files);
    return 0;
}
