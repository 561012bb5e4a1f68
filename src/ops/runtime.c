/* runtime.c: start-up settings for the OpenMP runtime under oneDNN and for glibc's malloc
 * (runtime.h), the per-call OpenMP thread count of the ops, OpenBLAS's thread count, and the load
 * other processes put on the machine. The OpenMP entry point is looked up at run time (dlsym):
 * libgomp is in the process exactly when oneDNN loaded it (the library itself links it only in
 * builds with oneDNN, for ops/cpu/wino_avx2.c). */
#include "multigrain/runtime.h"

#include <cblas.h>
#include <dlfcn.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/progress.h"
#include "multigrain/ops.h"
#include "ops/cpu/conv2d_internal.h"

/* glibc's own malloc settings, from the environment (read by glibc before main) */
static int malloc_user_set(void) {
    const char *t = getenv("GLIBC_TUNABLES");
    return getenv("MALLOC_MMAP_THRESHOLD_") || getenv("MALLOC_TRIM_THRESHOLD_") ||
           (t && (strstr(t, "glibc.malloc.mmap_threshold") || strstr(t, "glibc.malloc.trim_threshold")));
}

/* MG_MALLOC_KEEP=0: glibc's defaults */
static int malloc_keep_off(void) {
    const char *off = getenv("MG_MALLOC_KEEP");
    return off && !strcmp(off, "0");
}

static int g_malloc_kept; /* keep_freed_memory applied its settings */

/* Freed memory stays in the process (runtime.h): blocks up to MG_MALLOC_MMAP_MAX from the heap, and
 * up to MG_MALLOC_TRIM_KEEP of free space at the heap's top kept. */
static void keep_freed_memory(void) {
#ifdef __GLIBC__
    if (g_malloc_kept || malloc_user_set() || malloc_keep_off()) return;
    g_malloc_kept = mallopt(M_MMAP_THRESHOLD, MG_MALLOC_MMAP_MAX) == 1 && mallopt(M_TRIM_THRESHOLD, MG_MALLOC_TRIM_KEEP) == 1;
#endif
}

const char *mg_runtime_malloc_setting(void) {
#ifdef __GLIBC__
    static char buf[96];
    if (g_malloc_kept) {
        snprintf(buf, sizeof buf, "freed memory kept (blocks up to %d MiB from the heap, %d MiB of its top kept)",
                 MG_MALLOC_MMAP_MAX >> 20, MG_MALLOC_TRIM_KEEP >> 20);
        return buf;
    }
    if (malloc_user_set()) return "the environment's MALLOC_* / GLIBC_TUNABLES";
    if (malloc_keep_off()) return "the C library's defaults (MG_MALLOC_KEEP=0)";
#endif
    return "the C library's defaults";
}

void mg_runtime_init(int argc, char **argv, mg_runtime_wait wait) {
    (void)argc;
    keep_freed_memory();
    if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT")) return; /* the user chose */
    const char *no = getenv("MG_NO_REEXEC");
    if (no && no[0] && no[0] != '0') return;
    int rc = wait == MG_WAIT_SPIN ? setenv("GOMP_SPINCOUNT", "10000", 1) : setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
    if (rc != 0) return;
    /* Without an OpenMP runtime in the process (a build without oneDNN) the variable only matters
     * to child processes: no re-exec. */
    if (!dlsym(RTLD_DEFAULT, "omp_get_max_threads")) return;
    if (!argv || !argv[0]) return;
    execv("/proc/self/exe", argv);
    /* exec failed (no /proc?): carry on with the runtime's defaults; the variable stays set for
     * child processes. */
}

const char *mg_runtime_wait_setting(void) {
    static char buf[160];
    const char *p = getenv("OMP_WAIT_POLICY"), *c = getenv("GOMP_SPINCOUNT");
    if (!p && !c) return "libgomp defaults";
    snprintf(buf, sizeof buf, "%s%.60s%s%s%.40s", p ? "OMP_WAIT_POLICY=" : "", p ? p : "", p && c ? " " : "",
             c ? "GOMP_SPINCOUNT=" : "", c ? c : "");
    return buf;
}

typedef void (*mg_omp_set_fn)(int);
static mg_omp_set_fn g_omp_set;
static pthread_once_t g_omp_once = PTHREAD_ONCE_INIT;

static void omp_lookup(void) { g_omp_set = (mg_omp_set_fn)dlsym(RTLD_DEFAULT, "omp_set_num_threads"); }

/* /proc/stat's first line: the time all CPUs spent busy (user, nice, system, irq, softirq), in
 * seconds; -1 without /proc. Steal time is the hypervisor's, not another process's. */
static double proc_busy_seconds(void) {
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return -1;
    unsigned long long v[8] = {0};
    int got = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
                     &v[6], &v[7]);
    fclose(f);
    if (got < 7) return -1;
    long hz = sysconf(_SC_CLK_TCK);
    return (double)(v[0] + v[1] + v[2] + v[5] + v[6]) / (double)(hz > 0 ? hz : 100);
}

/* This process's CPU time (all its threads), in seconds; -1 on failure. */
static double own_cpu_seconds(void) {
    struct timespec t;
    if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t) != 0) return -1;
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static pthread_mutex_t g_load_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
    double wall, busy, own, load;
    int have;
} g_load = {.load = -1};

double mg_runtime_other_load(void) {
    const char *fake = getenv("MG_TEST_OTHER_LOAD"); /* tests: a fixed estimate (docs/testing.md) */
    if (fake && fake[0]) return atof(fake);
    pthread_mutex_lock(&g_load_mu);
    double now = mg_time_now(), load = g_load.load;
    if (!g_load.have || now - g_load.wall >= 0.2) {
        double busy = proc_busy_seconds(), own = own_cpu_seconds();
        if (busy < 0 || own < 0) {
            load = -1;
        } else {
            if (g_load.have && now > g_load.wall) {
                load = ((busy - g_load.busy) - (own - g_load.own)) / (now - g_load.wall);
                if (load < 0) load = 0;
            }
            g_load.wall = now;
            g_load.busy = busy;
            g_load.own = own;
            g_load.have = 1;
        }
        g_load.load = load;
    }
    pthread_mutex_unlock(&g_load_mu);
    return load;
}

void mg_blas_serial(void) { openblas_set_num_threads(1); }
void mg_blas_parallel(int n) { openblas_set_num_threads(n < 1 ? 1 : n); }

void mg_omp_set_threads(int n) {
    pthread_once(&g_omp_once, omp_lookup);
    if (g_omp_set) g_omp_set(n);
}

void mg_omp_apply_threads(void) {
    pthread_once(&g_omp_once, omp_lookup);
    /* omp_set_num_threads sets the calling thread's count, so it is applied on every call. */
    if (g_omp_set) g_omp_set(mg_ops_get_threads());
}
