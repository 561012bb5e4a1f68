/* cpu_fma.c: the FMA loop at 8 and 16 floats, and how much faster this CPU runs the 16-wide one,
 * measured once per process (cpu.h). */
#include "multigrain/cpu.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

double mg_cpu_fma_flops_per_iter(int width) { return 12.0 * width * 2; }

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

/* One body for both widths: V the vector type, W its width, FMA/ADD/SET1/STORE its intrinsics. */
#define FMA_CHAINS_BODY(V, W, FMA, ADD, SET1, STORE)                                                         \
    V a0 = SET1(seed), a1 = SET1(seed + 1), a2 = SET1(seed + 2), a3 = SET1(seed + 3), a4 = SET1(seed + 4),   \
      a5 = SET1(seed + 5), a6 = SET1(seed + 6), a7 = SET1(seed + 7), a8 = SET1(seed + 8),                     \
      a9 = SET1(seed + 9), a10 = SET1(seed + 10), a11 = SET1(seed + 11);                                      \
    const V m = SET1(0.999999f), c = SET1(1e-7f);                                                             \
    for (long i = 0; i < iters; i++) {                                                                        \
        a0 = FMA(a0, m, c), a1 = FMA(a1, m, c), a2 = FMA(a2, m, c), a3 = FMA(a3, m, c);                       \
        a4 = FMA(a4, m, c), a5 = FMA(a5, m, c), a6 = FMA(a6, m, c), a7 = FMA(a7, m, c);                       \
        a8 = FMA(a8, m, c), a9 = FMA(a9, m, c), a10 = FMA(a10, m, c), a11 = FMA(a11, m, c);                   \
    }                                                                                                         \
    V s = ADD(ADD(ADD(a0, a1), ADD(a2, a3)), ADD(ADD(a4, a5), ADD(a6, a7)));                                  \
    s = ADD(s, ADD(ADD(a8, a9), ADD(a10, a11)));                                                              \
    float out[W];                                                                                             \
    STORE(out, s);                                                                                            \
    return out[0] + out[W - 1];

__attribute__((target("avx2,fma"), noinline)) static float chains8(long iters, float seed) {
    FMA_CHAINS_BODY(__m256, 8, _mm256_fmadd_ps, _mm256_add_ps, _mm256_set1_ps, _mm256_storeu_ps)
}

__attribute__((target("avx512f"), noinline)) static float chains16(long iters, float seed) {
    FMA_CHAINS_BODY(__m512, 16, _mm512_fmadd_ps, _mm512_add_ps, _mm512_set1_ps, _mm512_storeu_ps)
}

bool mg_cpu_fma_width_ok(int width) {
    __builtin_cpu_init();
    if (width == 8) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (width == 16) return __builtin_cpu_supports("avx512f");
    return false;
}

float mg_cpu_fma_chains(int width, long iters, float seed) {
    if (iters < 0 || !mg_cpu_fma_width_ok(width)) return NAN;
    return width == 16 ? chains16(iters, seed) : chains8(iters, seed);
}

#else

bool mg_cpu_fma_width_ok(int width) {
    (void)width;
    return false;
}

float mg_cpu_fma_chains(int width, long iters, float seed) {
    (void)width, (void)iters, (void)seed;
    return NAN;
}

#endif

static double thread_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static volatile float g_sink; /* the chains' results go somewhere: the loop is not dead code */

double mg_cpu_fma_rate(int width, long iters, float seed) {
    if (iters < 1 || !mg_cpu_fma_width_ok(width)) return 0;
    double t0 = thread_seconds();
    g_sink = mg_cpu_fma_chains(width, iters, seed);
    double t = thread_seconds() - t0;
    return t > 0 ? (double)iters * mg_cpu_fma_flops_per_iter(width) / t : 0;
}

/* Iterations per timed run: 40000 x 12 FMAs, 80-160 microseconds at 3 GHz. */
#define GAIN_ITERS 40000L
#define GAIN_RUNS 5

static double g_gain;
static pthread_once_t g_gain_once = PTHREAD_ONCE_INIT;

static void measure_gain(void) {
    g_gain = 0;
    if (!mg_cpu_fma_width_ok(8) || !mg_cpu_fma_width_ok(16)) return;
    mg_cpu_fma_rate(16, 2 * GAIN_ITERS, 1.0f); /* warm-up: the upper lanes wake */
    double best8 = 0, best16 = 0;
    for (int run = 0; run < GAIN_RUNS; run++) {
        const double r8 = mg_cpu_fma_rate(8, GAIN_ITERS, (float)run), r16 = mg_cpu_fma_rate(16, GAIN_ITERS, (float)run);
        if (r8 > best8) best8 = r8;
        if (r16 > best16) best16 = r16;
    }
    g_gain = best8 > 0 ? best16 / best8 : 0;
}

double mg_cpu_fma512_gain(void) {
    const char *e = getenv("MG_FMA512_GAIN"); /* experiments, tests */
    if (e && *e) {
        char *end;
        double v = strtod(e, &end);
        if (*end == '\0' && isfinite(v) && v > 0) return v;
    }
    pthread_once(&g_gain_once, measure_gain);
    return g_gain;
}

int mg_cpu_fma_width(void) {
    if (!mg_cpu_fma_width_ok(8)) return 0;
    return mg_cpu_fma_width_ok(16) && mg_cpu_fma512_gain() >= MG_CPU_FMA512_FASTER ? 16 : 8;
}

bool mg_cpu_fma8_at_peak(void) {
    if (!mg_cpu_fma_width_ok(8)) return false;
    return !mg_cpu_fma_width_ok(16) || mg_cpu_fma512_gain() < MG_CPU_FMA512_WIDE;
}
