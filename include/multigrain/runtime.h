/* runtime.h: process start-up settings for the threading runtimes under the ops.
 *
 * oneDNN (Debian build) runs on the GNU OpenMP runtime (libgomp), whose idle threads spin on a
 * barrier for a while (OMP_WAIT_POLICY unset: up to GOMP_SPINCOUNT = 300000 spins) before they
 * sleep. On a shared machine a spinning thread steals the core another process (or our own other
 * thread) needs, and a 2-thread run can become slower than a 1-thread run; but sleeping at once costs
 * a wake-up at every one of the ~55 primitives of a batch-1 forward (10 % of its time on 2 cores).
 * libgomp reads its settings from the environment when it is loaded, before main(), so they cannot
 * be changed from inside the process: mg_runtime_init() sets them when the user has not chosen
 * (neither OMP_WAIT_POLICY nor GOMP_SPINCOUNT set) and re-executes the program once (via
 * /proc/self/exe, same argv and environment plus the variable):
 *  - MG_WAIT_SLEEP: OMP_WAIT_POLICY=PASSIVE, for programs that train (a training step keeps its
 *    thread count under load, for reproducible results: docs/PERFORMANCE.md);
 *  - MG_WAIT_SPIN: GOMP_SPINCOUNT=10000 (a few microseconds), for programs that only run inference:
 *    under load inference runs on fewer threads (model.c), so brief spinning costs nothing there.
 * MG_NO_REEXEC=1 disables the re-exec. Call it first thing in main().
 *
 * It also keeps freed memory in the process (glibc only; before any re-exec, whatever the OpenMP
 * setting): blocks of up to MG_MALLOC_MMAP_MAX bytes come from the heap instead of mappings of their
 * own (M_MMAP_THRESHOLD), and up to MG_MALLOC_TRIM_KEEP bytes free at the heap's top stay
 * (M_TRIM_THRESHOLD).
 * Building a network frees temporaries of 8-17 MB (weights folded before oneDNN reorders them, reorder
 * scratchpads); glibc returns such blocks with munmap, and on some virtual machines (a PVM guest, our
 * Zen 5 VM: docs/PERFORMANCE.md, "The first forward") that costs the process a fault of a few
 * microseconds on its next touch of every page it has, so the first forward of ResNet-50 at batch 1
 * took 100-160 ms instead of 37. Peak RSS does not grow (freed blocks are reused; measured 288 ->
 * 290.6 MiB at batch 1, 1278 -> 1278 MiB for training). The user's own setting stays: nothing is
 * changed when MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_ or a glibc.malloc.mmap_threshold /
 * trim_threshold tunable (GLIBC_TUNABLES) is set, and MG_MALLOC_KEEP=0 leaves glibc's defaults. */
#ifndef MULTIGRAIN_RUNTIME_H
#define MULTIGRAIN_RUNTIME_H

/* mg_runtime_init's malloc settings (above) */
#define MG_MALLOC_MMAP_MAX (32 << 20)   /* glibc's largest M_MMAP_THRESHOLD on 64-bit machines */
#define MG_MALLOC_TRIM_KEEP (128 << 20)

#ifdef __cplusplus
extern "C" {
#endif

typedef enum mg_runtime_wait { MG_WAIT_SLEEP = 0, MG_WAIT_SPIN = 1 } mg_runtime_wait;

/* Returns normally (either nothing to do, or the re-exec failed and the program goes on with the
 * runtime's defaults); on success of the re-exec it does not return. */
void mg_runtime_init(int argc, char **argv, mg_runtime_wait wait);

/* The idle-thread setting in effect, for logs: "OMP_WAIT_POLICY=PASSIVE", "GOMP_SPINCOUNT=10000", both
 * when both are set, or "libgomp defaults". */
const char *mg_runtime_wait_setting(void);

/* The malloc setting in effect, for logs: freed memory kept by mg_runtime_init, the environment's,
 * or the C library's defaults. */
const char *mg_runtime_malloc_setting(void);

/* OpenBLAS's thread count. OpenBLAS (Debian's pthreads build) hands every multithreaded call to its
 * worker threads, which then spin (sched_yield) for ~2^28 cycles, a tenth of a second, waiting for
 * the next call: long enough to overlap the oneDNN convolutions that follow and take a core from
 * them. The library therefore runs OpenBLAS on one thread (mg_blas_serial, before its small GEMMs:
 * linear layers, distances, whitening of a batch) except inside the calls that are worth threads
 * (im2col convolutions, PCA, k-NN search), which call mg_blas_parallel(n) and mg_blas_serial() when
 * they are done. */
void mg_blas_serial(void);
void mg_blas_parallel(int n);

/* The number of cores other processes kept busy, estimated from /proc/stat's busy time minus this
 * process's CPU time over the window since the previous estimate (re-estimated at most every 0.2 s;
 * between estimates the last value). -1 on the first call and without /proc. oneDNN splits each
 * primitive statically over its threads, so when another process keeps a core busy the thread that
 * shares it holds up the others: the fused inference network then runs on one thread (model.c). */
double mg_runtime_other_load(void);

#ifdef __cplusplus
}
#endif
#endif
