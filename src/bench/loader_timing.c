/* loader_timing.c: throughput of the threaded training loader (decoding + augmentation on the
 * worker threads, batches pulled by the caller as training does), in images per wall and per CPU
 * second (see bench.h). */
#include <math.h>
#include <time.h>

#include "bench/bench.h"

static double loader_clock_seconds(clockid_t c) {
    struct timespec ts;
    clock_gettime(c, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

mg_status mg_bench_time_loader(mg_dataset *ds, const mg_loader_cfg *cfg, int64_t max_batches, double max_seconds,
                               mg_bench_loader_result *r) {
    *r = (mg_bench_loader_result){0};
    if (max_batches <= 0 && !(max_seconds > 0))
        return MG_FAIL(MG_ERR_INVALID_ARG, "loader benchmark: expected a batch count or a time limit, found neither");
    if (ds->n < 1) return MG_FAIL(MG_ERR_INVALID_ARG, "loader benchmark: the dataset has no images");
    mg_loader_cfg lc = *cfg;
    if (max_batches > 0) {
        /* one epoch long enough for every batch asked for: no epoch restart inside the timing */
        double need = ((double)max_batches * lc.sampler.batch + 1) / (double)ds->n;
        if (lc.sampler.len_factor < need) lc.sampler.len_factor = ceil(need);
    }
    mg_loader *ld = NULL;
    mg_status s = mg_loader_init(&ld, ds, &lc);
    /* the clock starts with the epoch: filling the prefetch ring is part of the measured time */
    double t0 = loader_clock_seconds(CLOCK_MONOTONIC), c0 = loader_clock_seconds(CLOCK_PROCESS_CPUTIME_ID);
    if (s == MG_OK) s = mg_loader_start_epoch(ld, 0);
    while (s == MG_OK && (max_batches <= 0 || r->batches < max_batches) &&
           (!(max_seconds > 0) || loader_clock_seconds(CLOCK_MONOTONIC) - t0 < max_seconds)) {
        const mg_batch *b = NULL;
        s = mg_loader_next(ld, &b);
        if (s != MG_OK || !b) break; /* the end of the epoch: only with a time limit */
        r->images += b->n;
        r->batches++;
    }
    r->wall_s = loader_clock_seconds(CLOCK_MONOTONIC) - t0;
    r->cpu_s = loader_clock_seconds(CLOCK_PROCESS_CPUTIME_ID) - c0;
    if (ld) r->wait_s = mg_loader_wait_seconds(ld);
    mg_loader_free(ld);
    if (s == MG_OK && r->batches == 0) s = MG_FAIL(MG_ERR_INTERNAL, "loader benchmark: the loader gave no batch");
    return s;
}
