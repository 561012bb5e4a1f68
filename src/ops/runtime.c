/* runtime.c: start-up settings for the OpenMP runtime under oneDNN (runtime.h), the per-call
 * OpenMP thread count of the ops, and OpenBLAS's thread count. The OpenMP entry point is looked up at run time (dlsym), so the
 * library does not link libgomp itself: it is present exactly when oneDNN loaded it. */
#include "multigrain/runtime.h"

#include <cblas.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "multigrain/ops.h"
#include "ops/cpu/conv2d_internal.h"

void mg_runtime_init(int argc, char **argv) {
    (void)argc;
    if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT")) return; /* the user chose */
    const char *no = getenv("MG_NO_REEXEC");
    if (no && no[0] && no[0] != '0') return;
    if (setenv("OMP_WAIT_POLICY", "PASSIVE", 1) != 0) return;
    /* Without an OpenMP runtime in the process (a build without oneDNN) the variable only matters
     * to child processes: no re-exec. */
    if (!dlsym(RTLD_DEFAULT, "omp_get_max_threads")) return;
    if (!argv || !argv[0]) return;
    execv("/proc/self/exe", argv);
    /* exec failed (no /proc?): carry on with the runtime's defaults; the variable stays set for
     * child processes. */
}

typedef void (*mg_omp_set_fn)(int);
static mg_omp_set_fn g_omp_set;
static pthread_once_t g_omp_once = PTHREAD_ONCE_INIT;

static void omp_lookup(void) { g_omp_set = (mg_omp_set_fn)dlsym(RTLD_DEFAULT, "omp_set_num_threads"); }

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
