/* cpu.h: what this CPU's FMA units do with 8- and 16-float vectors, measured rather than assumed.
 *
 * AVX-512 CPUs differ in what a 16-float FMA buys: some run it through two 256-bit halves at the rate
 * of two 8-float FMAs (AMD Zen 4; Intel client cores whose one 512-bit port is two 256-bit ones
 * fused), so 8-wide code reaches the same FMA peak; others have two full 512-bit FMA units (Intel
 * Xeon Gold/Platinum since Skylake-SP, AMD Zen 5 server cores) and double it. Our Winograd kernels
 * (wino_avx2.c) run 8-wide, or 16-wide on AVX-512's layout where mg_cpu_fma_width() is 16; the fused
 * network runs them in place of oneDNN's AVX-512 kernels where 8-wide FMAs are at peak or they run
 * 16-wide (docs/ops.md, "Our kernels on AVX-512 CPUs"), and the benchmarks' FMA peak is measured at
 * the width that runs faster. */
#ifndef MULTIGRAIN_CPU_H
#define MULTIGRAIN_CPU_H

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A 16-wide FMA at least this many times the FLOP rate of an 8-wide one: the CPU has full 512-bit
 * FMA units (2 where they are; 1.0 on a CPU that splits them in halves). */
#define MG_CPU_FMA512_WIDE 1.5

/* Floating-point operations of one iteration of mg_cpu_fma_chains at `width`: 12 chains x width
 * lanes x 2 (multiply and add). */
double mg_cpu_fma_flops_per_iter(int width);

/* The register-only loop both measurements run: 12 independent chains (enough to cover the FMA
 * latency on two ports) of `width` floats, chain j starting at seed + j in every lane, each iteration
 * a = fma(a, 0.999999f, 1e-7f); returns the chains' sum (((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 +
 * a7))) + ((a8 + a9) + (a10 + a11)) in the first lane plus that in the last (so nothing is dead code).
 * width 8 needs AVX2 and FMA, 16 AVX-512F (mg_cpu_fma_width_ok); iters >= 0. */
float mg_cpu_fma_chains(int width, long iters, float seed);

/* mg_cpu_fma_chains(width, iters, seed) timed in the calling thread's CPU time (so a neighbour
 * process does not slow it): its FLOP rate in FLOP/s; 0 when the width is not supported or the run
 * was too short to time. Both measurements below and src/bench's FMA peak run it. */
double mg_cpu_fma_rate(int width, long iters, float seed);

/* Whether this CPU runs mg_cpu_fma_chains at `width` (8: AVX2 + FMA; 16: AVX-512F). */
bool mg_cpu_fma_width_ok(int width);

/* How many times the FLOP rate of 8-wide FMAs 16-wide ones reach on one core: measured once per
 * process on the calling thread (best of 5 alternating runs of each width, ~0.1 ms each, after a
 * 16-wide warm-up that wakes the upper lanes; timed in thread CPU time, so a neighbour process does
 * not skew it), ~1 on Zen 4, ~2 where 512-bit FMA units are full width. 0 on a CPU without
 * AVX-512F (or AVX2). MG_FMA512_GAIN=X in the environment (a positive number, read at every call)
 * stands in for the measurement: for experiments and tests. */
double mg_cpu_fma512_gain(void);

/* 16-wide FMAs at least this many times as fast: clearly faster (mg_cpu_fma_width). */
#define MG_CPU_FMA512_FASTER 1.1

/* The vector width of this CPU's fastest FMA: 16 where 16-wide FMAs run clearly faster than 8-wide
 * ones (mg_cpu_fma512_gain() >= MG_CPU_FMA512_FASTER: a CPU that splits them, ~1.0, keeps one width
 * from run to run), 8 on other AVX2 CPUs, 0 without AVX2/FMA. */
int mg_cpu_fma_width(void);

/* Whether 8-wide FMA code reaches this CPU's FMA peak: true on AVX2 CPUs without AVX-512 and where
 * mg_cpu_fma512_gain() < MG_CPU_FMA512_WIDE; false without AVX2/FMA. */
bool mg_cpu_fma8_at_peak(void);

#ifdef __cplusplus
}
#endif

#endif
