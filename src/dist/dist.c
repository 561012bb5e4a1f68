/* dist.c: the process-group interface (multigrain/dist.h): choosing the implementation at run time
 * from the launcher's environment, the single-process implementation (every collective is the
 * identity or a copy), argument checks, timing, and the test-only fault injection. The MPI
 * implementation is dist_mpi.c. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "dist/dist_internal.h"

#if MG_HAVE_MPI
static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
#endif

/* A positive integer from the environment, or 0. */
static long env_long(const char *name) {
    const char *v = getenv(name);
    if (!v || !*v) return 0;
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    return (errno || *end || x < 0) ? 0 : x;
}

/* The launcher's process count, or 0 when no MPI launcher started us (OpenMPI mpirun/mpiexec,
 * Slurm srun with PMI-2 or PMIx, MPICH hydra). PMIX_RANK alone says "PMIx launched" (size unknown). */
static long launcher_size(const char **which) {
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        long n = env_long(vars[i]);
        if (n > 0) {
            *which = vars[i];
            return n;
        }
    }
    if (getenv("PMIX_RANK")) {
        *which = "PMIX_RANK";
        return 1;
    }
    *which = NULL;
    return 0;
}

/* Test-only fault injection: MG_DIST_FAULT=die@K or hang@K makes rank MG_DIST_FAULT_RANK (default 1)
 * kill itself with SIGKILL (a crashed rank) or stop forever (a hung rank) when it enters its K-th
 * float32 all-reduce (the trainer's gradient all-reduce, once per optimizer step). */
static void fault_setup(mg_dist *d) {
    const char *f = getenv("MG_DIST_FAULT");
    if (!f || !*f) return;
    const char *at = strchr(f, '@');
    long k = at ? strtol(at + 1, NULL, 10) : 1;
    if (!strncmp(f, "die", 3)) d->fault_kind = 1;
    else if (!strncmp(f, "hang", 4)) d->fault_kind = 2;
    else mg_log_warn("MG_DIST_FAULT='%s' not understood (expected die@K or hang@K): ignored", f);
    d->fault_at = k > 0 ? k : 1;
    const char *r = getenv("MG_DIST_FAULT_RANK");
    d->fault_rank = r && *r ? atoi(r) : 1;
}

static void fault_maybe(mg_dist *d) {
    if (!d->fault_kind || d->rank != d->fault_rank || ++d->grad_calls != d->fault_at) return;
    if (d->fault_kind == 1) {
        fprintf(stderr, "multigrain: rank %d: MG_DIST_FAULT: killing myself (test)\n", d->rank);
        fflush(stderr);
        raise(SIGKILL);
    }
    fprintf(stderr, "multigrain: rank %d: MG_DIST_FAULT: hanging forever (test)\n", d->rank);
    fflush(stderr);
    for (;;) pause();
}

static mg_dist *dist_new(void) {
    mg_dist *d = calloc(1, sizeof *d);
    if (!d) return NULL;
    d->world = 1;
    d->timeout_s = 600;
    d->bucket_bytes = (size_t)25 << 20;
    fault_setup(d); /* only ever fires with several ranks */
    return d;
}

mg_status mg_dist_init_single(mg_dist **out) {
    *out = dist_new();
    return *out ? MG_OK : MG_FAIL(MG_ERR_NOMEM, "dist: out of memory");
}

mg_status mg_dist_init(mg_dist **out, int *argc, char ***argv) {
    *out = NULL;
    const char *mode = getenv("MG_DIST");
    const char *which = NULL;
    long size = launcher_size(&which);
    bool want_mpi = size > 0;
    if (mode && !strcmp(mode, "single")) want_mpi = false;
    else if (mode && !strcmp(mode, "mpi")) want_mpi = true;
    else if (mode && *mode)
        return MG_FAIL(MG_ERR_CONFIG, "MG_DIST: expected 'single' or 'mpi', found '%s'", mode);
    if (!want_mpi) {
        /* srun without an MPI plugin starts N plain processes: refuse to run N copies that would all
         * write the same run folder. */
        long tasks = env_long("SLURM_STEP_NUM_TASKS");
        if (tasks > 1 && !(mode && !strcmp(mode, "single")))
            return MG_FAIL(MG_ERR_CONFIG,
                           "started by srun with %ld tasks but without MPI (no PMI_SIZE/PMIX_RANK in the "
                           "environment): use 'srun --mpi=pmix' (or pmi2), or MG_DIST=single to run one "
                           "independent process per task",
                           tasks);
        return mg_dist_init_single(out);
    }
#if MG_HAVE_MPI
    mg_dist *d = dist_new();
    if (!d) return MG_FAIL(MG_ERR_NOMEM, "dist: out of memory");
    mg_status s = mg_dist_mpi_init(d, argc, argv);
    if (s != MG_OK) {
        free(d);
        return s;
    }
    if (size > 1 && d->world != size) {
        int seen = d->world;
        mg_dist_mpi_finalize(d);
        free(d);
        return MG_FAIL(MG_ERR_INTERNAL,
                       "dist: the launcher says %ld processes (%s) but MPI sees %d: is this multigrain linked "
                       "against the MPI library of the launcher (OpenMPI's mpirun for an OpenMPI build)?",
                       size, which, seen);
    }
    *out = d;
    return MG_OK;
#else
    (void)argc;
    (void)argv;
    if (size > 1 || (mode && !strcmp(mode, "mpi")))
        return MG_FAIL(MG_ERR_UNSUPPORTED,
                       "started by an MPI launcher with %ld processes (%s), but this multigrain was built "
                       "without MPI (MG_MPI=OFF or MPI not found at configure time): install libopenmpi-dev "
                       "and rebuild, or run a single process",
                       size, which ? which : "MG_DIST=mpi");
    return mg_dist_init_single(out);
#endif
}

void mg_dist_free(mg_dist *d) {
    if (!d) return;
#if MG_HAVE_MPI
    if (d->mpi) mg_dist_mpi_finalize(d);
#endif
    free(d);
}

void mg_dist_abort(mg_dist *d, int code) {
    if (!d) return;
#if MG_HAVE_MPI
    if (d->mpi && d->world > 1) mg_dist_mpi_abort(d, code); /* does not return */
#endif
    (void)code;
    mg_dist_free(d);
}

int mg_dist_rank(const mg_dist *d) { return d ? d->rank : 0; }
int mg_dist_world(const mg_dist *d) { return d ? d->world : 1; }
const char *mg_dist_backend(const mg_dist *d) { return d && d->mpi ? "mpi" : "single"; }
void mg_dist_set_timeout(mg_dist *d, double seconds) {
    if (d) d->timeout_s = seconds > 0 ? seconds : 0;
}
void mg_dist_set_bucket_bytes(mg_dist *d, size_t bytes) {
    if (d) d->bucket_bytes = bytes >= 1024 ? bytes : 1024;
}
double mg_dist_comm_seconds(const mg_dist *d) { return d ? d->comm_s : 0; }
int64_t mg_dist_comm_calls(const mg_dist *d) { return d ? d->comm_calls : 0; }

/* Common prologue: NULL handle or one process = nothing to do (returns 1); a broken group fails. */
static int trivial(const mg_dist *d) { return !d || d->world <= 1; }

static mg_status check_usable(const mg_dist *d, const char *what) {
    if (d->broken)
        return MG_FAIL(MG_ERR_INTERNAL, "dist: %s after an earlier collective failed (rank %d)", what, d->rank);
    return MG_OK;
}

#if MG_HAVE_MPI
#define TIMED(d, expr)                                                                             \
    do {                                                                                           \
        double t0_ = now_s();                                                                      \
        mg_status s_ = (expr);                                                                     \
        (d)->comm_s += now_s() - t0_;                                                              \
        (d)->comm_calls++;                                                                         \
        if (s_ != MG_OK) (d)->broken = true;                                                       \
        return s_;                                                                                 \
    } while (0)
#endif

static mg_status allreduce(mg_dist *d, void *data, size_t n, mg_dist_dtype t, mg_dist_op op, const char *what) {
    if (trivial(d) || n == 0) return MG_OK;
    if (!data) return MG_FAIL(MG_ERR_INVALID_ARG, "dist: %s of a null array", what);
    MG_TRY(check_usable(d, what));
#if MG_HAVE_MPI
    TIMED(d, mg_dist_mpi_allreduce(d, data, n, t, op, what));
#else
    (void)t;
    (void)op;
    return MG_OK;
#endif
}

mg_status mg_dist_allreduce_sum_f32(mg_dist *d, float *data, size_t n) {
    if (trivial(d)) return MG_OK;
    fault_maybe(d);
    return allreduce(d, data, n, MG_DIST_F32, MG_DIST_SUM, "gradient all-reduce");
}

mg_status mg_dist_allreduce_sum_f64(mg_dist *d, double *data, size_t n) {
    return allreduce(d, data, n, MG_DIST_F64, MG_DIST_SUM, "all-reduce (sum, float64)");
}

mg_status mg_dist_allreduce_max_f64(mg_dist *d, double *data, size_t n) {
    return allreduce(d, data, n, MG_DIST_F64, MG_DIST_MAX, "all-reduce (max, float64)");
}

mg_status mg_dist_allreduce_mean_f32(mg_dist *d, float *data, size_t n) {
    if (trivial(d)) return MG_OK;
    fault_maybe(d);
    MG_TRY(allreduce(d, data, n, MG_DIST_F32, MG_DIST_SUM, "gradient all-reduce"));
    float w = (float)d->world;
    for (size_t i = 0; i < n; i++) data[i] /= w;
    return MG_OK;
}

mg_status mg_dist_broadcast(mg_dist *d, void *data, size_t bytes, int root) {
    if (trivial(d) || bytes == 0) return MG_OK;
    if (!data) return MG_FAIL(MG_ERR_INVALID_ARG, "dist: broadcast of a null buffer");
    if (root < 0 || root >= d->world)
        return MG_FAIL(MG_ERR_INVALID_ARG, "dist: broadcast root %d outside [0, %d)", root, d->world);
    MG_TRY(check_usable(d, "broadcast"));
#if MG_HAVE_MPI
    TIMED(d, mg_dist_mpi_bcast(d, data, bytes, root));
#else
    return MG_OK;
#endif
}

mg_status mg_dist_allgatherv(mg_dist *d, const void *send, const size_t *counts, void *recv) {
    if (!counts || !recv || (!send && counts[mg_dist_rank(d)]))
        return MG_FAIL(MG_ERR_INVALID_ARG, "dist: all-gather with a null buffer");
    if (trivial(d)) {
        if (counts[0] && recv != send) memmove(recv, send, counts[0]);
        return MG_OK;
    }
    MG_TRY(check_usable(d, "all-gather"));
#if MG_HAVE_MPI
    TIMED(d, mg_dist_mpi_allgatherv(d, send, counts, recv));
#else
    return MG_OK;
#endif
}

mg_status mg_dist_allgather(mg_dist *d, const void *send, size_t bytes, void *recv) {
    int w = mg_dist_world(d);
    size_t *counts = malloc((size_t)w * sizeof *counts);
    if (!counts) return MG_FAIL(MG_ERR_NOMEM, "dist: out of memory");
    for (int r = 0; r < w; r++) counts[r] = bytes;
    mg_status s = mg_dist_allgatherv(d, send, counts, recv);
    free(counts);
    return s;
}

mg_status mg_dist_barrier(mg_dist *d) {
    if (trivial(d)) return MG_OK;
    MG_TRY(check_usable(d, "barrier"));
#if MG_HAVE_MPI
    TIMED(d, mg_dist_mpi_barrier(d));
#else
    return MG_OK;
#endif
}

mg_status mg_dist_sync_settings(mg_dist *d) {
    if (trivial(d)) return MG_OK;
    /* run in the current (non-blocking) mode on every rank; blocking only when nobody wants a deadline */
    double want_deadline = d->timeout_s > 0 ? 1.0 : 0.0;
    d->blocking = false;
    MG_TRY(mg_dist_allreduce_max_f64(d, &want_deadline, 1));
    d->blocking = want_deadline == 0.0;
    return MG_OK;
}

mg_status mg_dist_check_agree(mg_dist *d, bool ok, int *failed, int *first) {
    int w = mg_dist_world(d);
    /* [0, w): 1 for each failed rank */
    double *v = calloc((size_t)w, sizeof *v);
    if (!v) return MG_FAIL(MG_ERR_NOMEM, "dist: out of memory");
    v[mg_dist_rank(d)] = ok ? 0.0 : 1.0;
    mg_status s = mg_dist_allreduce_sum_f64(d, v, (size_t)w);
    if (s == MG_OK) {
        *failed = 0;
        *first = -1;
        for (int r = 0; r < w; r++)
            if (v[r] > 0) {
                if (*first < 0) *first = r;
                (*failed)++;
            }
    }
    free(v);
    return s;
}
