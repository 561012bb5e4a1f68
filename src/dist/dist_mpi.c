/* dist_mpi.c: the MPI implementation of the process group (multigrain/dist.h), compiled only when
 * CMake finds MPI. Every collective is started non-blocking (MPI_Iallreduce, MPI_Ibcast,
 * MPI_Iallgatherv, MPI_Ibarrier) and completed by polling MPI_Testall against a deadline
 * (dist_timeout), so a rank that died or hangs makes the others fail with a message instead of
 * waiting forever. Polling yields the core for the first 50 ms, then sleeps with a growing interval
 * (up to 1 ms): MPI makes progress only inside MPI calls, and a waiting rank must not steal the core
 * a slower rank on the same machine needs. When every rank has dist_timeout = 0 (wait forever,
 * mg_dist_sync_settings) the blocking collectives run instead: OpenMPI's tuned blocking all-reduce is
 * faster than its non-blocking one (libnbc): docs/PERFORMANCE.md. (A blocking and a non-blocking
 * collective do not match each other in MPI, hence the agreement.) Only the main thread calls MPI (MPI_THREAD_FUNNELED). */
#include <limits.h>
#include <mpi.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dist/dist_internal.h"

typedef struct mpi_state {
    MPI_Comm comm;
    MPI_Request *req; /* one per bucket, kept between calls (no allocation per step) */
    size_t cap_req;
} mpi_state;

static MPI_Request *requests(mg_dist *d, size_t n) {
    mpi_state *st = d->impl;
    if (st->cap_req < n) {
        MPI_Request *r = realloc(st->req, n * sizeof *r);
        if (!r) return NULL;
        st->req = r;
        st->cap_req = n;
    }
    return st->req;
}

static MPI_Comm comm_of(const mg_dist *d) { return ((const mpi_state *)d->impl)->comm; }

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static mg_status mpi_fail(const mg_dist *d, int rc, const char *what) {
    char msg[MPI_MAX_ERROR_STRING] = "";
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    return MG_FAIL(MG_ERR_INTERNAL, "dist: %s failed on rank %d of %d: %s", what, d->rank, d->world, msg);
}

/* Completes the requests or fails at the deadline (the requests are then left pending: the group is
 * marked broken and the job is aborted by the caller). */
static mg_status wait_all(mg_dist *d, int n, MPI_Request *req, const char *what) {
    double t0 = now_s();
    long nap_ns = 10000;
    for (;;) {
        int flag = 0;
        int rc = MPI_Testall(n, req, &flag, MPI_STATUSES_IGNORE);
        if (rc != MPI_SUCCESS) return mpi_fail(d, rc, what);
        if (flag) return MG_OK;
        double waited = now_s() - t0;
        if (d->timeout_s > 0 && waited > d->timeout_s)
            return MG_FAIL(MG_ERR_INTERNAL,
                           "dist: %s did not complete within %g s on rank %d of %d: another rank has died, "
                           "hangs or is far behind (the limit is the config key dist_timeout)",
                           what, d->timeout_s, d->rank, d->world);
        if (waited < 0.05) {
            sched_yield();
        } else {
            struct timespec ts = {0, nap_ns};
            nanosleep(&ts, NULL);
            if (nap_ns < 1000000) nap_ns *= 2;
        }
    }
}

mg_status mg_dist_mpi_init(mg_dist *d, int *argc, char ***argv) {
    int inited = 0, rc;
    MPI_Initialized(&inited);
    if (!inited) {
        int provided = 0;
        rc = MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
        if (rc != MPI_SUCCESS) return MG_FAIL(MG_ERR_INTERNAL, "dist: MPI_Init_thread failed (error %d)", rc);
    }
    mpi_state *st = calloc(1, sizeof *st);
    if (!st) return MG_FAIL(MG_ERR_NOMEM, "dist: out of memory");
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    rc = MPI_Comm_dup(MPI_COMM_WORLD, &st->comm);
    if (rc != MPI_SUCCESS) {
        free(st);
        return mpi_fail(d, rc, "MPI_Comm_dup");
    }
    MPI_Comm_set_errhandler(st->comm, MPI_ERRORS_RETURN);
    MPI_Comm_rank(st->comm, &d->rank);
    MPI_Comm_size(st->comm, &d->world);
    d->impl = st;
    d->mpi = true;
    return MG_OK;
}

void mg_dist_mpi_finalize(mg_dist *d) {
    mpi_state *st = d->impl;
    if (st) {
        if (!d->broken) MPI_Comm_free(&st->comm);
        free(st->req);
        free(st);
        d->impl = NULL;
    }
    int fin = 0;
    MPI_Finalized(&fin);
    if (!fin) MPI_Finalize();
    d->mpi = false;
}

void mg_dist_mpi_abort(mg_dist *d, int code) {
    (void)d;
    fflush(stdout);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, code ? code : 1);
    abort(); /* MPI_Abort does not return */
}

mg_status mg_dist_mpi_allreduce(mg_dist *d, void *data, size_t n, mg_dist_dtype t, mg_dist_op op, const char *what) {
    MPI_Datatype type = t == MG_DIST_F32 ? MPI_FLOAT : t == MG_DIST_F64 ? MPI_DOUBLE : MPI_BYTE;
    size_t esize = t == MG_DIST_F32 ? 4 : t == MG_DIST_F64 ? 8 : 1;
    MPI_Op mop = op == MG_DIST_MAX ? MPI_MAX : MPI_SUM;
    if (d->blocking) { /* no deadline: the blocking collective, in pieces of at most INT_MAX elements */
        for (size_t off = 0; off < n; off += (size_t)INT_MAX) {
            size_t cnt = n - off < (size_t)INT_MAX ? n - off : (size_t)INT_MAX;
            int rc = MPI_Allreduce(MPI_IN_PLACE, (char *)data + off * esize, (int)cnt, type, mop, comm_of(d));
            if (rc != MPI_SUCCESS) return mpi_fail(d, rc, what);
        }
        return MG_OK;
    }
    size_t per = d->bucket_bytes / esize;
    if (per < 1) per = 1;
    if (per > (size_t)INT_MAX) per = (size_t)INT_MAX;
    size_t nb = (n + per - 1) / per;
    MPI_Request *req = requests(d, nb);
    if (!req) return MG_FAIL(MG_ERR_NOMEM, "dist: out of memory");
    mg_status s = MG_OK;
    size_t started = 0;
    for (size_t b = 0; b < nb; b++) {
        size_t off = b * per, cnt = n - off < per ? n - off : per;
        int rc = MPI_Iallreduce(MPI_IN_PLACE, (char *)data + off * esize, (int)cnt, type, mop, comm_of(d), &req[b]);
        if (rc != MPI_SUCCESS) {
            s = mpi_fail(d, rc, what);
            break;
        }
        started++;
    }
    if (s == MG_OK) s = wait_all(d, (int)started, req, what);
    return s;
}

mg_status mg_dist_mpi_bcast(mg_dist *d, void *data, size_t bytes, int root) {
    const size_t chunk = (size_t)1 << 30;
    size_t nb = (bytes + chunk - 1) / chunk;
    MPI_Request *req = requests(d, nb);
    if (!req) return MG_FAIL(MG_ERR_NOMEM, "dist: out of memory");
    mg_status s = MG_OK;
    size_t started = 0;
    for (size_t b = 0; b < nb; b++) {
        size_t off = b * chunk, cnt = bytes - off < chunk ? bytes - off : chunk;
        if (d->blocking) {
            int rc = MPI_Bcast((char *)data + off, (int)cnt, MPI_BYTE, root, comm_of(d));
            if (rc != MPI_SUCCESS) return mpi_fail(d, rc, "broadcast");
            continue;
        }
        int rc = MPI_Ibcast((char *)data + off, (int)cnt, MPI_BYTE, root, comm_of(d), &req[b]);
        if (rc != MPI_SUCCESS) {
            s = mpi_fail(d, rc, "broadcast");
            break;
        }
        started++;
    }
    if (s == MG_OK) s = wait_all(d, (int)started, req, "broadcast");
    return s;
}

mg_status mg_dist_mpi_allgatherv(mg_dist *d, const void *send, const size_t *counts, void *recv) {
    int w = d->world;
    int stack[64], *cnt = 2 * w <= 64 ? stack : malloc(2 * (size_t)w * sizeof *cnt);
    if (!cnt) return MG_FAIL(MG_ERR_NOMEM, "dist: out of memory");
    int *disp = cnt + w;
    size_t total = 0;
    for (int r = 0; r < w; r++) {
        if (total + counts[r] > (size_t)INT_MAX) {
            if (cnt != stack) free(cnt);
            return MG_FAIL(MG_ERR_INVALID_ARG, "dist: all-gather of more than 2 GiB is not supported");
        }
        disp[r] = (int)total;
        cnt[r] = (int)counts[r];
        total += counts[r];
    }
    MPI_Request req;
    const void *src = counts[d->rank] ? send : recv;
    mg_status s;
    if (d->blocking) {
        int rc = MPI_Allgatherv(src, cnt[d->rank], MPI_BYTE, recv, cnt, disp, MPI_BYTE, comm_of(d));
        s = rc == MPI_SUCCESS ? MG_OK : mpi_fail(d, rc, "all-gather");
    } else {
        int rc = MPI_Iallgatherv(src, cnt[d->rank], MPI_BYTE, recv, cnt, disp, MPI_BYTE, comm_of(d), &req);
        s = rc == MPI_SUCCESS ? wait_all(d, 1, &req, "all-gather") : mpi_fail(d, rc, "all-gather");
    }
    if (cnt != stack) free(cnt);
    return s;
}

mg_status mg_dist_mpi_barrier(mg_dist *d) {
    if (d->blocking) {
        int rc = MPI_Barrier(comm_of(d));
        return rc == MPI_SUCCESS ? MG_OK : mpi_fail(d, rc, "barrier");
    }
    MPI_Request req;
    int rc = MPI_Ibarrier(comm_of(d), &req);
    return rc == MPI_SUCCESS ? wait_all(d, 1, &req, "barrier") : mpi_fail(d, rc, "barrier");
}
