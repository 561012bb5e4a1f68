/* fma_peak.c: this machine's FP32 FMA peak, measured: every thread runs the register-only FMA loop
 * of cpu.h at this CPU's faster width at the same time, timed in its own CPU time (see bench.h). */
#include <pthread.h>
#include <stdlib.h>

#include "bench/bench.h"
#include "multigrain/cpu.h"

#if defined(__x86_64__) || defined(__i386__)

#define PEAK_ITERS 20000000L

/* A barrier whose count can shrink: when a thread cannot be created, the ones already waiting are
 * released instead of waiting for ever. */
typedef struct peak_gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int arrived, expected;
} peak_gate;

static void peak_wait_gate(peak_gate *g) {
    pthread_mutex_lock(&g->mu);
    g->arrived++;
    if (g->arrived >= g->expected) pthread_cond_broadcast(&g->cv);
    while (g->arrived < g->expected) pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
}

static void peak_shrink_gate(peak_gate *g, int expected) {
    pthread_mutex_lock(&g->mu);
    g->expected = expected;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

typedef struct peak_arg {
    peak_gate *gate;
    int width; /* FMA vector width (mg_cpu_fma_width) */
    double seconds;
    double gflops;
} peak_arg;

/* The peak is a property of the hardware: each run is timed in the thread's CPU time
 * (mg_cpu_fma_rate), so time a neighbour process takes from us does not lower it (with the machine to
 * ourselves both clocks agree). */
static void *peak_run_thread(void *p) {
    peak_arg *a = p;
    const long per = a->width / 8; /* the same FLOPs at either width */
    long warm = PEAK_ITERS / 20 / per, iters = PEAK_ITERS / 4 / per;
    const double rw = mg_cpu_fma_rate(a->width, warm, 1.0f); /* warm-up: clocks up, pages in */
    if (a->seconds > 0 && rw > 0) {
        /* the warm-up's rate sets the run length: 3 runs in what is left of `seconds` */
        const double tw = warm * mg_cpu_fma_flops_per_iter(a->width) / rw;
        double want = (a->seconds - tw) / 3 * (double)warm / tw;
        iters = want < (double)warm ? warm : want > 1e11 ? (long)1e11 : (long)want;
    }
    peak_wait_gate(a->gate);
    double best = 0;
    for (int rep = 0; rep < 3; rep++) {
        double g = mg_cpu_fma_rate(a->width, iters, (float)rep) * 1e-9;
        if (g > best) best = g;
    }
    a->gflops = best;
    return NULL;
}

mg_status mg_bench_measure_fma_peak(int threads, double seconds, double *gflops) {
    if (threads < 1 || threads > 1024)
        return MG_FAIL(MG_ERR_INVALID_ARG, "FMA peak: expected 1..1024 threads, found %d", threads);
    const int width = mg_cpu_fma_width();
    if (!width)
        return MG_FAIL(MG_ERR_UNSUPPORTED, "FMA peak: this CPU has no AVX2/FMA: cannot measure the FMA peak");
    pthread_t *tid = malloc(sizeof *tid * (size_t)threads);
    peak_arg *args = malloc(sizeof *args * (size_t)threads);
    if (!tid || !args) {
        free(tid);
        free(args);
        return MG_FAIL(MG_ERR_NOMEM, "FMA peak: out of memory for %d threads", threads);
    }
    peak_gate gate = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER, .expected = threads};
    int started = 0;
    for (; started < threads; started++) {
        args[started] = (peak_arg){.gate = &gate, .width = width, .seconds = seconds};
        if (pthread_create(&tid[started], NULL, peak_run_thread, &args[started]) != 0) break;
    }
    if (started < threads) peak_shrink_gate(&gate, started);
    double total = 0;
    for (int t = 0; t < started; t++) {
        pthread_join(tid[t], NULL);
        total += args[t].gflops;
    }
    pthread_mutex_destroy(&gate.mu);
    pthread_cond_destroy(&gate.cv);
    free(tid);
    free(args);
    if (started < threads)
        return MG_FAIL(MG_ERR_INTERNAL, "FMA peak: could only start %d of %d threads", started, threads);
    *gflops = total;
    return MG_OK;
}

#else

mg_status mg_bench_measure_fma_peak(int threads, double seconds, double *gflops) {
    (void)threads, (void)seconds, (void)gflops;
    return MG_FAIL(MG_ERR_UNSUPPORTED, "FMA peak: measured only on x86 CPUs with AVX2/FMA");
}

#endif
