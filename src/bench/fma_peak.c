/* fma_peak.c: this machine's FP32 FMA peak, measured: every thread runs a register-only AVX2 FMA
 * loop at the same time, timed in its own CPU time (see bench.h). */
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "bench/bench.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#define PEAK_ITERS 20000000L
#define PEAK_FLOPS_PER_ITER (12.0 * 8 * 2)

/* 12 independent 8-wide FMA chains: enough to cover the FMA latency (4-5 cycles) on 2 ports. */
__attribute__((target("avx2,fma"), noinline)) static float peak_run_kernel(long iters, float seed) {
    __m256 a0 = _mm256_set1_ps(seed), a1 = _mm256_set1_ps(seed + 1), a2 = _mm256_set1_ps(seed + 2),
           a3 = _mm256_set1_ps(seed + 3), a4 = _mm256_set1_ps(seed + 4), a5 = _mm256_set1_ps(seed + 5),
           a6 = _mm256_set1_ps(seed + 6), a7 = _mm256_set1_ps(seed + 7), a8 = _mm256_set1_ps(seed + 8),
           a9 = _mm256_set1_ps(seed + 9), a10 = _mm256_set1_ps(seed + 10), a11 = _mm256_set1_ps(seed + 11);
    const __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
    for (long i = 0; i < iters; i++) {
        a0 = _mm256_fmadd_ps(a0, m, c), a1 = _mm256_fmadd_ps(a1, m, c), a2 = _mm256_fmadd_ps(a2, m, c);
        a3 = _mm256_fmadd_ps(a3, m, c), a4 = _mm256_fmadd_ps(a4, m, c), a5 = _mm256_fmadd_ps(a5, m, c);
        a6 = _mm256_fmadd_ps(a6, m, c), a7 = _mm256_fmadd_ps(a7, m, c), a8 = _mm256_fmadd_ps(a8, m, c);
        a9 = _mm256_fmadd_ps(a9, m, c), a10 = _mm256_fmadd_ps(a10, m, c), a11 = _mm256_fmadd_ps(a11, m, c);
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                             _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
    s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(a8, a9), _mm256_add_ps(a10, a11)));
    float out[8];
    _mm256_storeu_ps(out, s);
    return out[0] + out[7];
}

/* The peak is a property of the hardware: it is timed with the thread's CPU time, so time a
 * neighbour process takes from us does not lower it (with the machine to ourselves both clocks
 * agree). */
static double peak_thread_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

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
    double seconds;
    double gflops;
    float sink;
} peak_arg;

static void *peak_run_thread(void *p) {
    peak_arg *a = p;
    long warm = PEAK_ITERS / 20, iters = PEAK_ITERS / 4;
    double t0 = peak_thread_seconds();
    a->sink = peak_run_kernel(warm, 1.0f); /* warm-up: clocks up, pages in */
    double tw = peak_thread_seconds() - t0;
    if (a->seconds > 0 && tw > 0) {
        /* the warm-up's rate sets the run length: 3 runs in what is left of `seconds` */
        double want = (a->seconds - tw) / 3 * (double)warm / tw;
        iters = want < (double)warm ? warm : want > 1e11 ? (long)1e11 : (long)want;
    }
    peak_wait_gate(a->gate);
    double best = 0;
    for (int rep = 0; rep < 3; rep++) {
        double t1 = peak_thread_seconds();
        a->sink += peak_run_kernel(iters, (float)rep);
        double t = peak_thread_seconds() - t1;
        double g = t > 0 ? (double)iters * PEAK_FLOPS_PER_ITER / t * 1e-9 : 0;
        if (g > best) best = g;
    }
    a->gflops = best;
    return NULL;
}

mg_status mg_bench_measure_fma_peak(int threads, double seconds, double *gflops) {
    if (threads < 1 || threads > 1024)
        return MG_FAIL(MG_ERR_INVALID_ARG, "FMA peak: expected 1..1024 threads, found %d", threads);
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma"))
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
        args[started] = (peak_arg){.gate = &gate, .seconds = seconds};
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
