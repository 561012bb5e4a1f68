/* dist.h: data-parallel process groups: init, rank, world size, all-reduce (bucketed, for the flat
 * gradient arena), broadcast, all-gather, barrier, finalize. Training code calls only this
 * interface and has no #ifdef: a single-process implementation always exists (every collective is
 * the identity, or a copy), and an MPI one (src/dist/dist_mpi.c) is compiled in when MPI is found
 * (MG_MPI=AUTO|ON). NCCL (GPU all-reduce) will sit behind the same interface with the CUDA backend.
 *
 * Which implementation runs is decided at run time by mg_dist_init: MPI only when the process was
 * started by an MPI launcher (mpirun/mpiexec: OMPI_COMM_WORLD_SIZE; Slurm srun: PMI_SIZE or
 * PMIX_RANK), so a plain `multigrain train` never initialises MPI. MG_DIST=single forces the
 * single-process path, MG_DIST=mpi forces MPI (a singleton MPI job when no launcher is found).
 *
 * Failures never hang forever: every collective is non-blocking under the hood (MPI_I*) and is
 * polled against a deadline (mg_dist_set_timeout, config key dist_timeout); when it passes, the call
 * returns MG_ERR_INTERNAL with a message naming the collective, the rank and the time waited. A
 * failed collective leaves the communicator unusable: the caller (the CLI) then prints its error and
 * calls mg_dist_abort, which ends every rank of the job (MPI_Abort). Errors that every rank
 * detected together (mg_dist_check_agree) may instead end with mg_dist_free and a normal exit. */
#ifndef MULTIGRAIN_DIST_H
#define MULTIGRAIN_DIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "multigrain/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mg_dist mg_dist;

/* Starts the process group (MPI_Init when launched by an MPI launcher, see above). argc/argv may be
 * NULL. A build without MPI started by a launcher with more than one process fails with
 * MG_ERR_UNSUPPORTED (rather than running N independent copies that write the same files). */
mg_status mg_dist_init(mg_dist **d, int *argc, char ***argv);
/* A single-process group without looking at the environment (tests, tools, benchmarks). */
mg_status mg_dist_init_single(mg_dist **d);
/* Ends the group normally (MPI_Finalize when MPI was initialised). NULL is a no-op. */
void mg_dist_free(mg_dist *d);
/* Ends every process of the job with exit status `code` (MPI_Abort); for the CLI after an error
 * that other ranks may not have seen (they could be waiting in a collective). With one process it
 * only frees the group and returns. */
void mg_dist_abort(mg_dist *d, int code);

int mg_dist_rank(const mg_dist *d);
int mg_dist_world(const mg_dist *d);
/* "single" or "mpi". */
const char *mg_dist_backend(const mg_dist *d);
/* Seconds a collective may wait for the other ranks before it fails (0 = forever; default 600). Local;
 * call mg_dist_sync_settings afterwards. */
void mg_dist_set_timeout(mg_dist *d, double seconds);
/* Collective: agrees on how collectives run. Non-blocking collectives polled against the deadline,
 * unless every rank has timeout 0: then the blocking ones (faster in OpenMPI, and no deadline is
 * needed). Ranks may have different timeouts; a blocking and a non-blocking collective never meet. */
mg_status mg_dist_sync_settings(mg_dist *d);
/* Largest all-reduce message in bytes: bigger arrays are reduced in buckets of this size, all in
 * flight together (default 25 MiB, as PyTorch DDP). */
void mg_dist_set_bucket_bytes(mg_dist *d, size_t bytes);
/* Wall seconds spent inside collectives since init, and how many were run (benchmarks). */
double mg_dist_comm_seconds(const mg_dist *d);
int64_t mg_dist_comm_calls(const mg_dist *d);

/* In-place element-wise sums (every rank receives the same result). The float32 sum is the gradient
 * all-reduce: bucketed (mg_dist_set_bucket_bytes). */
mg_status mg_dist_allreduce_sum_f32(mg_dist *d, float *data, size_t n);
mg_status mg_dist_allreduce_sum_f64(mg_dist *d, double *data, size_t n);
/* Sum divided by the world size. */
mg_status mg_dist_allreduce_mean_f32(mg_dist *d, float *data, size_t n);
/* In-place element-wise maximum (agreement flags). */
mg_status mg_dist_allreduce_max_f64(mg_dist *d, double *data, size_t n);
/* `bytes` bytes from rank `root` to every rank. */
mg_status mg_dist_broadcast(mg_dist *d, void *data, size_t bytes, int root);
/* Every rank contributes `bytes` bytes; recv receives world * bytes, rank r's part at r * bytes. */
mg_status mg_dist_allgather(mg_dist *d, const void *send, size_t bytes, void *recv);
/* Rank r contributes counts[r] bytes (counts known to every rank); recv receives them back to back
 * in rank order. */
mg_status mg_dist_allgatherv(mg_dist *d, const void *send, const size_t *counts, void *recv);
mg_status mg_dist_barrier(mg_dist *d);

/* Agreement on a local check: every rank passes its verdict (true = ok); returns the number of
 * ranks that failed (0 = all ok) in *failed, and their lowest rank in *first (or -1). */
mg_status mg_dist_check_agree(mg_dist *d, bool ok, int *failed, int *first);

#ifdef __cplusplus
}
#endif
#endif
