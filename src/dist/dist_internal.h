/* dist_internal.h: the state shared by the generic process-group code (dist.c) and the MPI
 * implementation (dist_mpi.c, compiled only when MPI is found). */
#ifndef MG_DIST_INTERNAL_H
#define MG_DIST_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "multigrain/dist.h"

typedef enum mg_dist_dtype { MG_DIST_F32 = 0, MG_DIST_F64, MG_DIST_BYTE } mg_dist_dtype;
typedef enum mg_dist_op { MG_DIST_SUM = 0, MG_DIST_MAX } mg_dist_op;

struct mg_dist {
    int rank, world;
    bool mpi;            /* MPI_Init was called by mg_dist_init */
    bool broken;         /* a collective failed: only abort is left */
    double timeout_s;    /* 0 = wait forever */
    bool blocking;       /* blocking collectives (every rank has timeout 0, mg_dist_sync_settings) */
    size_t bucket_bytes;
    double comm_s;
    int64_t comm_calls;
    void *impl;          /* backend state (dist_mpi.c) */
    /* fault injection for the tests (MG_DIST_FAULT, see dist.c) */
    int fault_kind;      /* 0 none, 1 die (SIGKILL), 2 hang */
    int fault_rank;
    int64_t fault_at, grad_calls;
};

#if MG_HAVE_MPI
/* Initialises MPI (FUNNELED), duplicates COMM_WORLD with errors returned, fills rank/world. */
mg_status mg_dist_mpi_init(mg_dist *d, int *argc, char ***argv);
void mg_dist_mpi_finalize(mg_dist *d);
void mg_dist_mpi_abort(mg_dist *d, int code);
/* In place; `n` elements of dtype; split into buckets of d->bucket_bytes, all in flight together. */
mg_status mg_dist_mpi_allreduce(mg_dist *d, void *data, size_t n, mg_dist_dtype t, mg_dist_op op, const char *what);
mg_status mg_dist_mpi_bcast(mg_dist *d, void *data, size_t bytes, int root);
mg_status mg_dist_mpi_allgatherv(mg_dist *d, const void *send, const size_t *counts, void *recv);
mg_status mg_dist_mpi_barrier(mg_dist *d);
#endif

#endif
