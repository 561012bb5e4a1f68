/* bench_pingpong.c: how far apart the machine's cores are, as the time a cache line takes to go from
 * one core to another and back. Two threads pinned to cpu A and cpu B hand a flag back and forth
 * (each waits for the other's value, then writes its own) `--trips` times; the round trip is the
 * mean. Cores of one CCX (a shared L3) answer in tens of ns, cores on different CCDs or sockets in
 * hundreds: work split between threads on such cores pays that for every line one thread writes and
 * the other reads next (docs/PERFORMANCE.md, "Two threads at batch 1: the cores far apart").
 *
 *   bench_pingpong [--trips N] [--reps R]     (every pair of cpu 0 with another cpu; N 2000000, R 3)
 *
 * Prints, per pair, the best of R runs in ns per round trip. Linux only (sched_setaffinity). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    _Alignas(64) _Atomic long flag;
    int cpu;
    long trips;
} pingpong;

static int pin(int cpu) {
    cpu_set_t s;
    CPU_ZERO(&s);
    CPU_SET(cpu, &s);
    return pthread_setaffinity_np(pthread_self(), sizeof s, &s);
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* the other side: waits for 2i + 1, answers 2i + 2 */
static void *pong(void *arg) {
    pingpong *p = arg;
    if (pin(p->cpu) != 0) return (void *)1;
    for (long i = 0; i < p->trips; i++) {
        while (atomic_load_explicit(&p->flag, memory_order_acquire) != 2 * i + 1) {
        }
        atomic_store_explicit(&p->flag, 2 * i + 2, memory_order_release);
    }
    return NULL;
}

/* ns per round trip between cpu a (this thread) and cpu b, or a negative value when a thread cannot
 * be pinned */
static double round_trip(int a, int b, long trips) {
    pingpong p = {.cpu = b, .trips = trips};
    atomic_init(&p.flag, 0);
    if (pin(a) != 0) return -1;
    pthread_t t;
    if (pthread_create(&t, NULL, pong, &p) != 0) return -1;
    const double t0 = now();
    for (long i = 0; i < trips; i++) {
        atomic_store_explicit(&p.flag, 2 * i + 1, memory_order_release);
        while (atomic_load_explicit(&p.flag, memory_order_acquire) != 2 * i + 2) {
        }
    }
    const double dt = now() - t0;
    void *ret = NULL;
    pthread_join(t, &ret);
    return ret ? -1 : 1e9 * dt / (double)trips;
}

int main(int argc, char **argv) {
    long trips = 2000000;
    int reps = 3;
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc) {
            fprintf(stderr, "bench_pingpong: option '%s' needs a value\n", argv[i]);
            return 2;
        }
        const char *o = argv[i], *v = argv[++i];
        if (!strcmp(o, "--trips")) trips = atol(v);
        else if (!strcmp(o, "--reps")) reps = atoi(v);
        else {
            fprintf(stderr, "bench_pingpong: unknown option '%s' (expected --trips N, --reps R)\n", o);
            return 2;
        }
    }
    if (trips < 1 || reps < 1) {
        fprintf(stderr, "bench_pingpong: --trips and --reps must be >= 1, found %ld and %d\n", trips, reps);
        return 2;
    }
    cpu_set_t allowed;
    if (sched_getaffinity(0, sizeof allowed, &allowed) != 0 || CPU_COUNT(&allowed) < 2) {
        fprintf(stderr, "bench_pingpong: needs at least two cpus to run on\n");
        return 1;
    }
    int first = -1;
    for (int c = 0; c < CPU_SETSIZE && first < 0; c++)
        if (CPU_ISSET(c, &allowed)) first = c;
    printf("cache line round trip, %ld trips, best of %d (ns)\n", trips, reps);
    for (int c = first + 1; c < CPU_SETSIZE; c++) {
        if (!CPU_ISSET(c, &allowed)) continue;
        double best = -1;
        for (int r = 0; r < reps; r++) {
            const double ns = round_trip(first, c, trips);
            if (ns < 0) {
                fprintf(stderr, "bench_pingpong: cannot pin threads to cpus %d and %d\n", first, c);
                return 1;
            }
            if (best < 0 || ns < best) best = ns;
        }
        printf("  cpu %d <-> cpu %d: %.1f\n", first, c, best);
    }
    return 0;
}
