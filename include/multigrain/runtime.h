/* runtime.h: process start-up settings for the threading runtimes under the ops.
 *
 * oneDNN (Debian build) runs on the GNU OpenMP runtime (libgomp), whose idle threads spin on a
 * barrier for a while (OMP_WAIT_POLICY unset: up to GOMP_SPINCOUNT = 300000 spins) before they
 * sleep. On a shared machine a spinning thread steals the core another process (or our own other
 * thread) needs, and a 2-thread run can become slower than a 1-thread run. libgomp reads its
 * settings from the environment when it is loaded, before main(), so they cannot be changed from
 * inside the process: mg_runtime_init() sets OMP_WAIT_POLICY=PASSIVE when the user has not chosen a
 * policy and re-executes the program once (via /proc/self/exe, same argv and environment plus that
 * variable). An explicit OMP_WAIT_POLICY (e.g. ACTIVE on a dedicated machine) is respected;
 * MG_NO_REEXEC=1 disables the re-exec. Call it first thing in main(). */
#ifndef MULTIGRAIN_RUNTIME_H
#define MULTIGRAIN_RUNTIME_H

#ifdef __cplusplus
extern "C" {
#endif

/* Returns normally (either nothing to do, or the re-exec failed and the program goes on with the
 * runtime's defaults); on success of the re-exec it does not return. */
void mg_runtime_init(int argc, char **argv);

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
