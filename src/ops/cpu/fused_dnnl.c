/* fused_dnnl.c: the fused inference network of ops_fused.h on oneDNN: forward-inference
 * convolution primitives with bias and sum/ReLU post-ops and pooling primitives, activations in one
 * blocked layout from stem to layer4 (act_block below; otherwise the layout each primitive chooses),
 * reorders only where a consumer wants another layout than its producer wrote, weights reordered once
 * at build time, and every activation buffer assigned at finalize from a free list by liveness (a
 * consumed residual is summed into in place). On AVX2 CPUs some convolutions run our kernels in place
 * of the primitive, on the same nChw8c buffers: 3x3 stride-1 layers our Winograd F(4x4)
 * (wino_avx2.c), 3x3 stride-2 layers of large maps its stride-2 plan and of small maps our direct
 * kernel (direct_avx2.c), max pooling ours (pool_avx2.c). On AVX-512 CPUs (nChw16c buffers) our
 * Winograd F(4x4) and stride-2 plan run in place of oneDNN's Winograd and direct kernels where they
 * apply, as does our direct kernel on the 3x3 stride-2 and 1x1 layers of small maps where it runs
 * 16-wide; there the first convolution, on the plain image, runs our stem kernel (stem_avx2.c), which
 * also does the max pooling after it in the same pass (fuse_stem_pool). A batch runs its first ops (large maps)
 * image by image, each image through all of them before the next, with batch-1 twins of those ops
 * (micro_plan).
 *
 * Threads: oneDNN runs on OpenMP and a primitive keeps the thread count current at its creation, so
 * a network has one thread count (given to mg_fnet_init_like, else mg_ops_get_threads()), set before
 * every primitive creation and every run (the model keys its cache on it). The scratchpad
 * is in user mode: one buffer, sized for the largest primitive, so oneDNN allocates nothing per run. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/hugepage.h"
#include "core/progress.h"
#include "multigrain/cpu.h"
#include "multigrain/ops_fused.h"
#include "ops/cpu/conv2d_internal.h"
#include "ops/cpu/direct_avx2.h"
#include "ops/cpu/pool_avx2.h"
#include "ops/cpu/stem_avx2.h"
#include "ops/cpu/wino_avx2.h"


#define DNNL_TRY(call)                                                                                       \
    do {                                                                                                     \
        dnnl_status_t st_ = (call);                                                                          \
        if (st_ != dnnl_success)                                                                             \
            return MG_FAIL(MG_ERR_INTERNAL, "fused network (oneDNN): %s failed with status %d", #call,      \
                           (int)st_);                                                                        \
    } while (0)

typedef struct fvalue {
    int dims[4];
    dnnl_memory_desc_t md;
    dnnl_memory_t mem;  /* bound to the value's buffer at finalize (value 0: per run) */
    int store;          /* storage group: a value summed into in place shares its residual's */
    int last_use;       /* index of the last op reading it (-1: none) */
    int consumed;       /* summed into by a convolution: no later reads */
} fvalue;

enum { OP_CONV, OP_POOL, OP_REORDER };

/* A convolution's reordered weights and bias, shared (reference counted) by the networks of other
 * input shapes built from the same weights (mg_fnet_init_like). */
typedef struct fweights {
    int refs;
    void *w, *b;
    size_t w_bytes, b_bytes; /* for mg_hugepage_free */
    dnnl_memory_desc_t w_md, b_md;
    int k, c, r, stride, pad;
} fweights;

/* An op's batch-1 twin, for running the first ops of a batch image by image (micro_plan): its
 * primitive or our kernel's plan for one image, and memory objects re-pointed at each image. */
typedef struct fmicro {
    dnnl_primitive_desc_t pd;
    dnnl_primitive_t prim;
    dnnl_memory_t in, out;
    mg_wino4 *own;
    mg_dconv *dconv;
} fmicro;

typedef struct fop {
    int kind;
    int in, out;
    dnnl_primitive_desc_t pd;
    dnnl_primitive_t prim;
    dnnl_memory_t w_mem, b_mem; /* convolutions: weights and bias */
    fweights *wt;
    int winograd;
    mg_wino4 *own;  /* our Winograd F(4x4) kernel in place of the primitive (AVX2: see own_wino_enabled) */
    mg_dconv *dconv; /* our direct kernel in place of the primitive (AVX2, few output positions) */
    mg_stem *stem;   /* our stem kernel in place of the primitive (the first convolution, on the image),
                      * with the max pooling after it when fuse_stem_pool merged the two */
    int sum, relu;  /* its post-ops */
    int serial; /* a small reorder, created and run on one thread (see SMALL_REORDER) */
    int r, stride; /* convolutions and pooling: window and stride (for the profile) */
    int pad;       /* pooling: padding */
    int stem_pool; /* our stem op also does the max pooling that followed it (fuse_stem_pool) */
    int own_pool;  /* our max pooling (pool_avx2.c) in place of the primitive: its channel block (8, 16), or 0 */
    fmicro *micro; /* the op's batch-1 twin when the network runs it image by image (micro_plan) */
} fop;

typedef struct fstore {
    size_t bytes;
    int slot;
    int last_use;
    size_t image_step; /* bytes between images for the ops run image by image: 0 for a group dead
                        * within them (one image's room, reused by every image; micro_plan) */
} fstore;

struct mg_fnet {
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    fvalue *v;
    int nv, cap_v;
    fop *op;
    int nop, cap_op;
    fstore *st;
    int nst, cap_st;
    int output;
    int out_block; /* the output value's channel block: 16, 8, or 0 (another layout) */
    dnnl_memory_desc_t out_md; /* plain nchw of the output value */
    dnnl_memory_t out_user;
    dnnl_primitive_t out_reorder;
    size_t scratch_bytes;
    dnnl_memory_t scratch;
    void *scratch_buf;
    void **slot_buf;
    size_t *slot_bytes;
    int nslot;
    size_t weight_bytes; /* reordered weights this network owns (shared ones count for their owner) */
    void *tmp; /* while building: folded weights and reorder scratchpads (build_tmp), released by finalize */
    size_t tmp_bytes, tmp_used; /* its size, and the bytes the current convolution's weights take of it */
    int nconv;
    int threads; /* the OpenMP thread count its primitives are created and run with */
    const mg_fnet *donor; /* weights source for mg_fnet_init_like; only read while building */
    int finalized;
    int micro_ops; /* ops 0 .. micro_ops-1 run image by image (micro_plan) */
    double *prof; /* MG_FNET_PROFILE: seconds per op, summed over prof_runs runs after the first
                   * (profile_report); the first run's in prof + nop */
    int prof_runs; /* runs after the first; -1 before the first has ended */
};

bool mg_fnet_available(void) { return true; }

/* Weights, activation slots and the scratch come from mg_hugepage_alloc (released with mg_hugepage_free
 * and the same size): filled once and read at every forward, so on huge pages from 2 MiB up
 * (core/hugepage.h). */

/* The build buffer with room for `bytes`: the weights a callback folds (fetch_weights) and oneDNN's
 * reorder scratchpads, one convolution at a time, instead of a malloc and free of up to 17 MB each
 * (every munmap made the PVM guest re-fault each page of the process: docs/PERFORMANCE.md, "The first
 * forward"). Reserved at BUILD_TMP_BYTES (only touched pages count), on huge pages; contents are lost
 * when it grows. Released by mg_fnet_finalize. */
#define BUILD_TMP_BYTES ((size_t)64 << 20)
static void *build_tmp(mg_fnet *net, size_t bytes) {
    if (bytes <= net->tmp_bytes) return net->tmp;
    mg_hugepage_free(net->tmp, net->tmp_bytes);
    net->tmp_bytes = bytes > BUILD_TMP_BYTES ? bytes : BUILD_TMP_BYTES;
    net->tmp = mg_hugepage_alloc(net->tmp_bytes);
    if (!net->tmp) net->tmp_bytes = 0;
    return net->tmp;
}

static void build_tmp_release(mg_fnet *net) {
    mg_hugepage_free(net->tmp, net->tmp_bytes);
    net->tmp = NULL, net->tmp_bytes = net->tmp_used = 0;
}

#define GROW(arr, n, cap)                                                                                    \
    do {                                                                                                     \
        if ((n) == (cap)) {                                                                                  \
            int nc_ = (cap) ? 2 * (cap) : 16;                                                                \
            void *p_ = realloc((arr), (size_t)nc_ * sizeof *(arr));                                          \
            if (!p_) return MG_FAIL(MG_ERR_NOMEM, "fused network: out of memory");                           \
            (arr) = p_;                                                                                      \
            memset((arr) + (cap), 0, (size_t)(nc_ - (cap)) * sizeof *(arr));                                 \
            (cap) = nc_;                                                                                     \
        }                                                                                                    \
    } while (0)

static mg_status new_store(mg_fnet *net, size_t bytes, int *id) {
    GROW(net->st, net->nst, net->cap_st);
    net->st[net->nst] = (fstore){.bytes = bytes, .slot = -1, .last_use = -1};
    *id = net->nst++;
    return MG_OK;
}

/* A new value with layout md; store < 0: a storage group of its own. */
static mg_status new_value(mg_fnet *net, const int dims[4], const dnnl_memory_desc_t *md, int store, int *id) {
    GROW(net->v, net->nv, net->cap_v);
    fvalue *v = &net->v[net->nv];
    memset(v, 0, sizeof *v);
    memcpy(v->dims, dims, sizeof v->dims);
    v->md = *md;
    v->last_use = -1;
    if (store < 0) MG_TRY(new_store(net, dnnl_memory_desc_get_size(md), &store));
    v->store = store;
    *id = net->nv++;
    return MG_OK;
}

static mg_status new_op(mg_fnet *net, int kind, fop **op) {
    GROW(net->op, net->nop, net->cap_op);
    *op = &net->op[net->nop++];
    memset(*op, 0, sizeof **op);
    (*op)->kind = kind;
    return MG_OK;
}

static mg_status check_value(const mg_fnet *net, int id, const char *what) {
    if (net->finalized) return MG_FAIL(MG_ERR_INVALID_ARG, "fused network: %s added after finalize", what);
    if (id < 0 || id >= net->nv)
        return MG_FAIL(MG_ERR_INVALID_ARG, "fused network: %s reads value %d, which does not exist (0..%d)", what,
                       id, net->nv - 1);
    if (net->v[id].consumed)
        return MG_FAIL(MG_ERR_INVALID_ARG,
                       "fused network: %s reads value %d, which an earlier residual sum overwrote", what, id);
    return MG_OK;
}

static void note_use(mg_fnet *net, int id) { net->v[id].last_use = net->nop - 1; }

static mg_status track_scratch(mg_fnet *net, const_dnnl_primitive_desc_t pd) {
    const dnnl_memory_desc_t *smd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    size_t b = smd ? dnnl_memory_desc_get_size(smd) : 0;
    if (b > net->scratch_bytes) net->scratch_bytes = b;
    return MG_OK;
}

static mg_status user_attr(dnnl_primitive_attr_t *attr) {
    DNNL_TRY(dnnl_primitive_attr_create(attr));
    dnnl_status_t s = dnnl_primitive_attr_set_scratchpad_mode(*attr, dnnl_scratchpad_mode_user);
    if (s != dnnl_success) {
        dnnl_primitive_attr_destroy(*attr);
        return MG_FAIL(MG_ERR_INTERNAL, "fused network (oneDNN): scratchpad mode (status %d)", (int)s);
    }
    return MG_OK;
}

/* Reorders of at most this many elements run on one thread: at batch 1 the layout changes between
 * the 1x1 kernels' NHWC and the 3x3 kernels' nChw16c move 50k-200k floats, which one thread does in
 * ~20 us while two took 70-170 us each (thread hand-off), 3 ms of a 43 ms ResNet-50 forward
 * (ONEDNN_VERBOSE, docs/PERFORMANCE.md). Batch 8's 1.6M-element reorders still gain from two. */
#define SMALL_REORDER (512 * 1024)

/* A value holding `in` in layout md: itself when it already has it (and may be used in place: the
 * caller's input never is), else a new value written by a reorder op. */
static mg_status value_in_layout(mg_fnet *net, int in, const dnnl_memory_desc_t *md, int in_place, int *out) {
    if (dnnl_memory_desc_equal(&net->v[in].md, md) && (!in_place || net->v[in].store != net->v[0].store)) {
        *out = in;
        return MG_OK;
    }
    int dims[4];
    memcpy(dims, net->v[in].dims, sizeof dims);
    int id;
    MG_TRY(new_value(net, dims, md, -1, &id));
    fop *op;
    MG_TRY(new_op(net, OP_REORDER, &op));
    op->in = in;
    op->out = id;
    op->serial = (size_t)dims[0] * dims[1] * dims[2] * dims[3] <= SMALL_REORDER && !getenv("MG_FNET_PAR_REORDER");
    if (op->serial) mg_omp_set_threads(1);
    dnnl_primitive_attr_t attr;
    MG_TRY(user_attr(&attr));
    dnnl_status_t s = dnnl_reorder_primitive_desc_create(&op->pd, &net->v[in].md, net->engine, md, net->engine, attr);
    dnnl_primitive_attr_destroy(attr);
    if (s == dnnl_success) s = dnnl_primitive_create(&op->prim, op->pd);
    mg_omp_set_threads(net->threads);
    if (s != dnnl_success) return MG_FAIL(MG_ERR_INTERNAL, "fused network (oneDNN): reorder (status %d)", (int)s);
    MG_TRY(track_scratch(net, op->pd));
    note_use(net, in);
    *out = id;
    return MG_OK;
}

/* The name of the kernel an op runs: ours, or oneDNN's implementation (mg_fnet_value_kernel). */
static const char *op_kernel(const mg_fnet *net, const fop *op) {
    const int *x = net->v[op->in].dims, *y = net->v[op->out].dims;
    const char *impl = "?";
    if (op->own)
        impl = mg_wino4_matches(op->own, 2, 1, x[1], y[1])   ? "ours:wino F(2x2,3x3)"
               : mg_wino4_matches(op->own, 4, 2, x[1], y[1]) ? "ours:wino stride 2"
                                                             : "ours:wino F(4x4,3x3)";
    else if (op->dconv) impl = "ours:direct";
    else if (op->stem) impl = op->stem_pool ? "ours:stem+pool" : "ours:stem";
    else if (op->own_pool) impl = "ours:pool_avx2";
    else if (op->pd && dnnl_primitive_desc_query(op->pd, dnnl_query_impl_info_str, 0, &impl) != dnnl_success)
        impl = "?";
    return impl ? impl : "?";
}

const char *mg_fnet_value_kernel(const mg_fnet *net, int value) {
    if (!net || value < 1) return NULL;
    for (int i = 0; i < net->nop; i++)
        if (net->op[i].out == value) return op_kernel(net, &net->op[i]);
    return NULL;
}

/* MG_FNET_PROFILE=1 (read at finalize) times every op of every run and, when the network is freed,
 * writes a table to stderr: per op its milliseconds per run, GFLOP/s (convolutions, counted as direct
 * ones: 2 n k p q c r^2), share of the ops' time, kind, shape and implementation (the final reorder
 * to plain NCHW is not among them). The runs after the first, whose one-time costs (first touches of
 * buffers, oneDNN's lazy initialisation: 13-20 ms on one op of ResNet-50 at batch 1) would otherwise
 * sit in the averages of a few ops; the first run's total is in the header, and its table is the one
 * printed when it is the only run. A diagnostic, as ONEDNN_VERBOSE is; the timer adds two clock
 * reads per op. docs/PERFORMANCE.md says where the time goes with it. */
static int profile_enabled(void) {
    const char *e = getenv("MG_FNET_PROFILE");
    return e && e[0] && e[0] != '0';
}

static void profile_report(const mg_fnet *net) {
    if (!net->prof || net->prof_runs < 0) return;
    const double *first = net->prof + net->nop;
    double total = 0, total_first = 0;
    for (int i = 0; i < net->nop; i++) total += net->prof[i], total_first += first[i];
    const int *d0 = net->v[0].dims;
    const int runs = net->prof_runs ? net->prof_runs : 1; /* the table's runs */
    const double *prof = net->prof_runs ? net->prof : first;
    if (!net->prof_runs) total = total_first;
    fprintf(stderr, "fused network profile: input %dx%dx%dx%d, %d thread(s), ", d0[0], d0[1], d0[2], d0[3],
            net->threads);
    if (net->prof_runs)
        fprintf(stderr, "%d run(s) after the first, %.3f ms per run (the first, not counted: %.3f ms)\n",
                net->prof_runs, 1e3 * total / runs, 1e3 * total_first);
    else
        fprintf(stderr, "1 run, the first (with its one-time costs), %.3f ms\n", 1e3 * total);
    fprintf(stderr, " op   ms/run  GFLOP/s      %%  kind     shape                           implementation\n");
    for (int i = 0; i < net->nop; i++) {
        const fop *op = &net->op[i];
        const int *x = net->v[op->in].dims, *y = net->v[op->out].dims;
        const char *impl = op_kernel(net, op);
        char shape[64];
        double ms = 1e3 * prof[i] / runs, gf = 0;
        if (op->kind == OP_REORDER) {
            snprintf(shape, sizeof shape, "%dx%dx%dx%d", x[0], x[1], x[2], x[3]);
        } else {
            int ch = y[2], cw = y[3]; /* the convolution's output (before the stem's pooling) */
            if (op->stem_pool) mg_stem_out_dims(op->stem, NULL, NULL, &ch, &cw);
            snprintf(shape, sizeof shape, "%d->%d %dx%d/%d%s %dx%d->%dx%d", x[1], y[1], op->r, op->r, op->stride,
                     op->stem_pool ? "+pool" : "", x[2], x[3], y[2], y[3]);
            if (op->kind == OP_CONV && ms > 0) gf = 2.0 * y[0] * y[1] * ch * cw * x[1] * op->r * op->r / (ms * 1e6);
        }
        const char *kind = op->kind == OP_CONV ? "conv" : op->kind == OP_POOL ? "maxpool" : "reorder";
        fprintf(stderr, "%3d %8.3f %8.1f %6.1f  %-8s %-31s %s%s\n", i, ms, gf,
                total > 0 ? 100.0 * prof[i] / total : 0.0, kind, shape, impl,
                i < net->micro_ops ? ", image by image" : "");
    }
}

static mg_status fnet_init(mg_fnet **out, int n, int c, int h, int w, int threads);

mg_status mg_fnet_init_like(mg_fnet **out, int n, int c, int h, int w, const mg_fnet *donor, int threads) {
    MG_TRY(fnet_init(out, n, c, h, w, threads));
    (*out)->donor = donor;
    return MG_OK;
}

mg_status mg_fnet_init(mg_fnet **out, int n, int c, int h, int w) { return fnet_init(out, n, c, h, w, 0); }

static mg_status fnet_init(mg_fnet **out, int n, int c, int h, int w, int threads) {
    *out = NULL;
    if (n < 1 || c < 1 || h < 1 || w < 1)
        return MG_FAIL(MG_ERR_INVALID_ARG, "fused network: input %dx%dx%dx%d must be positive", n, c, h, w);
    if (threads < 0) return MG_FAIL(MG_ERR_INVALID_ARG, "fused network: %d threads", threads);
    mg_fnet *net = calloc(1, sizeof *net);
    if (!net) return MG_FAIL(MG_ERR_NOMEM, "fused network: out of memory");
    net->threads = threads ? threads : mg_ops_get_threads();
    mg_omp_set_threads(net->threads); /* the primitives created here keep this thread count */
    mg_status s = mg_dnnl_engine(&net->engine);
    if (s == MG_OK && dnnl_stream_create(&net->stream, net->engine, dnnl_stream_default_flags) != dnnl_success)
        s = MG_FAIL(MG_ERR_INTERNAL, "fused network (oneDNN): creating a stream failed");
    dnnl_memory_desc_t md;
    dnnl_dims_t d = {n, c, h, w};
    if (s == MG_OK && dnnl_memory_desc_init_by_tag(&md, 4, d, dnnl_f32, dnnl_nchw) != dnnl_success)
        s = MG_FAIL(MG_ERR_INTERNAL, "fused network (oneDNN): input descriptor");
    int id;
    if (s == MG_OK) s = new_value(net, (int[4]){n, c, h, w}, &md, -1, &id);
    if (s != MG_OK) {
        mg_fnet_free(net);
        return s;
    }
    *out = net;
    return MG_OK;
}

static void micro_free(fmicro *m) {
    if (!m) return;
    if (m->prim) dnnl_primitive_destroy(m->prim);
    if (m->pd) dnnl_primitive_desc_destroy(m->pd);
    if (m->in) dnnl_memory_destroy(m->in);
    if (m->out) dnnl_memory_destroy(m->out);
    mg_wino4_free(m->own);
    mg_dconv_free(m->dconv);
    free(m);
}

void mg_fnet_free(mg_fnet *net) {
    if (!net) return;
    profile_report(net);
    free(net->prof);
    for (int i = 0; i < net->nop; i++) {
        fop *op = &net->op[i];
        if (op->prim) dnnl_primitive_destroy(op->prim);
        if (op->pd) dnnl_primitive_desc_destroy(op->pd);
        if (op->w_mem) dnnl_memory_destroy(op->w_mem);
        if (op->b_mem) dnnl_memory_destroy(op->b_mem);
        mg_wino4_free(op->own);
        mg_dconv_free(op->dconv);
        mg_stem_free(op->stem);
        micro_free(op->micro);
        if (op->wt && --op->wt->refs == 0) {
            mg_hugepage_free(op->wt->w, op->wt->w_bytes);
            mg_hugepage_free(op->wt->b, op->wt->b_bytes);
            free(op->wt);
        }
    }
    for (int i = 0; i < net->nv; i++)
        if (net->v[i].mem) dnnl_memory_destroy(net->v[i].mem);
    if (net->out_reorder) dnnl_primitive_destroy(net->out_reorder);
    if (net->out_user) dnnl_memory_destroy(net->out_user);
    if (net->scratch) dnnl_memory_destroy(net->scratch);
    build_tmp_release(net); /* still there after a failed build */
    mg_hugepage_free(net->scratch_buf, net->scratch_bytes);
    for (int i = 0; i < net->nslot; i++) mg_hugepage_free(net->slot_buf[i], net->slot_bytes[i]);
    free(net->slot_buf);
    free(net->slot_bytes);
    if (net->stream) dnnl_stream_destroy(net->stream);
    free(net->v);
    free(net->op);
    free(net->st);
    free(net);
}

/* Creates the convolution pd with `alg`; NULL pd (and MG_OK) when oneDNN has no kernel for it. */
/* The activation layout asked of the convolutions: oneDNN's "any" lets each primitive choose, and
 * oneDNN 2.6 then gives its 1x1 kernels (brgconv_1x1) NHWC but Winograd and the strided 3x3 kernels
 * nChw16c, so every bottleneck block reordered its activations twice (~36 reorders per ResNet-50
 * forward, ~60 primitives in all). Asking every convolution whose channel counts are multiples of the
 * ISA's block for the blocked layout (nChw16c on AVX-512, nChw8c on AVX2) keeps one layout
 * throughout and gets the blocked jit_1x1 kernels, which are as fast here (docs/PERFORMANCE.md). A
 * convolution that would then run a reference or gemm implementation is asked again with "any".
 * MG_FNET_ANY_LAYOUT=1 asks "any" everywhere (the previous behaviour, for comparison). Returns the
 * block, or 0 for "any". */
static int act_block(void) {
    const char *e = getenv("MG_FNET_ANY_LAYOUT");
    if (e && e[0] && e[0] != '0') return 0;
    return mg_conv2d_blocked_channels();
}

static dnnl_format_tag_t act_tag(int block, int channels) {
    if (!block || channels % block != 0) return dnnl_format_tag_any;
    return mg_dnnl_block_tag(block);
}

/* Whether a primitive runs one of oneDNN's slow generic implementations. */
static int slow_impl(const_dnnl_primitive_desc_t pd) {
    const char *impl = NULL;
    if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) != dnnl_success) return 0;
    return mg_dnnl_impl_is_generic(impl);
}

/* MG_FNET_WINO_4X3=0: always take oneDNN's first Winograd implementation (for comparison). */
static int wino_prefer_4x3(void) {
    const char *e = getenv("MG_FNET_WINO_4X3");
    return !(e && e[0] == '0');
}

static mg_status conv_pd(mg_fnet *net, dnnl_alg_kind_t alg, const dnnl_memory_desc_t *x, const dnnl_memory_desc_t *w,
                         const dnnl_memory_desc_t *b, const dnnl_memory_desc_t *y, int stride, int pad, int sum,
                         int relu, dnnl_primitive_desc_t *pd) {
    *pd = NULL;
    dnnl_convolution_desc_t cd;
    dnnl_dims_t strides = {stride, stride}, padding = {pad, pad};
    if (dnnl_convolution_forward_desc_init(&cd, dnnl_forward_inference, alg, x, w, b, y, strides, padding,
                                           padding) != dnnl_success)
        return MG_OK;
    dnnl_primitive_attr_t attr;
    MG_TRY(user_attr(&attr));
    dnnl_post_ops_t po = NULL;
    dnnl_status_t s = dnnl_post_ops_create(&po);
    if (s == dnnl_success && sum) s = dnnl_post_ops_append_sum(po, 1.0f);
    if (s == dnnl_success && relu) s = dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_relu, 0.0f, 0.0f);
    if (s == dnnl_success) s = dnnl_primitive_attr_set_post_ops(attr, po);
    if (po) dnnl_post_ops_destroy(po);
    if (s != dnnl_success) {
        dnnl_primitive_attr_destroy(attr);
        return MG_FAIL(MG_ERR_INTERNAL, "fused network (oneDNN): post-ops (status %d)", (int)s);
    }
    if (alg == dnnl_convolution_winograd && wino_prefer_4x3() && y->dims[2] * y->dims[3] >= 28 * 28) {
        /* At batch 1 oneDNN's first Winograd choice is F(2x2, 3x3) (jit_fp32_wino_2x3) for some
         * shapes where its F(4x4, 3x3) kernel is faster: on ResNet-50's 56x56 layers 0.88 vs 1.15 ms,
         * while on 14x14 and 7x7 maps F(2x2) is the faster one (docs/PERFORMANCE.md). For output
         * planes of at least 28x28 take the first implementation named wino_4x3 in oneDNN's list,
         * else its first choice. */
        dnnl_primitive_desc_iterator_t it = NULL;
        if (dnnl_primitive_desc_iterator_create(&it, &cd, attr, net->engine, NULL) == dnnl_success) {
            do {
                dnnl_primitive_desc_t cand = dnnl_primitive_desc_iterator_fetch(it);
                const char *impl = NULL;
                if (!cand) break;
                if (dnnl_primitive_desc_query(cand, dnnl_query_impl_info_str, 0, &impl) == dnnl_success && impl &&
                    strstr(impl, "wino_4x3")) {
                    *pd = cand;
                    break;
                }
                dnnl_primitive_desc_destroy(cand);
            } while (dnnl_primitive_desc_iterator_next(it) == dnnl_success);
            dnnl_primitive_desc_iterator_destroy(it);
        }
        if (*pd) {
            dnnl_primitive_attr_destroy(attr);
            return MG_OK;
        }
    }
    if (dnnl_primitive_desc_create(pd, &cd, attr, net->engine, NULL) != dnnl_success) *pd = NULL;
    dnnl_primitive_attr_destroy(attr);
    return MG_OK;
}

/* `from` reordered into `to`. The reorder's scratchpad (16.8 MB for oneDNN's F(2x2) weights of 512
 * channels) is ours: in the build buffer after the current convolution's weights (tmp_used), or, where
 * growing it would lose those, a buffer of its own. */
static mg_status reorder_once(mg_fnet *net, const dnnl_memory_desc_t *from_md, const void *from,
                              const dnnl_memory_desc_t *to_md, void *to) {
    dnnl_memory_t a = NULL, b = NULL, sm = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_t r = NULL;
    dnnl_primitive_attr_t attr = NULL;
    void *own = NULL;
    size_t own_bytes = 0;
    dnnl_status_t s = dnnl_primitive_attr_create(&attr);
    if (s == dnnl_success) s = dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
    if (s == dnnl_success) s = dnnl_memory_create(&a, from_md, net->engine, (void *)from);
    if (s == dnnl_success) s = dnnl_memory_create(&b, to_md, net->engine, to);
    if (s == dnnl_success) s = dnnl_reorder_primitive_desc_create(&pd, from_md, net->engine, to_md, net->engine, attr);
    if (s == dnnl_success) s = dnnl_primitive_create(&r, pd);
    const dnnl_memory_desc_t *smd = s == dnnl_success ? dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0) : NULL;
    const size_t sbytes = smd ? dnnl_memory_desc_get_size(smd) : 0;
    if (s == dnnl_success && sbytes) {
        const size_t off = (net->tmp_used + 63) / 64 * 64;
        void *sp = !net->tmp_used || off + sbytes <= net->tmp_bytes ? build_tmp(net, off + sbytes) : NULL;
        if (sp)
            sp = (char *)sp + off;
        else
            sp = own = mg_hugepage_alloc(own_bytes = sbytes);
        s = sp ? dnnl_memory_create(&sm, smd, net->engine, sp) : dnnl_out_of_memory;
    }
    if (s == dnnl_success) {
        mg_omp_set_threads(net->threads);
        dnnl_exec_arg_t args[3] = {{DNNL_ARG_FROM, a}, {DNNL_ARG_TO, b}, {DNNL_ARG_SCRATCHPAD, sm}};
        s = dnnl_primitive_execute(r, net->stream, sm ? 3 : 2, args);
    }
    if (s == dnnl_success) s = dnnl_stream_wait(net->stream);
    if (r) dnnl_primitive_destroy(r);
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (attr) dnnl_primitive_attr_destroy(attr);
    if (a) dnnl_memory_destroy(a);
    if (b) dnnl_memory_destroy(b);
    if (sm) dnnl_memory_destroy(sm);
    mg_hugepage_free(own, own_bytes);
    if (s != dnnl_success) return MG_FAIL(MG_ERR_INTERNAL, "fused network (oneDNN): weight reorder (status %d)", (int)s);
    return MG_OK;
}

/* The donor's j-th convolution's weights when they fit (same convolution, same layouts). */
static fweights *donor_weights(const mg_fnet *net, int k, int c, int r, int stride, int pad,
                               const dnnl_memory_desc_t *w_md, const dnnl_memory_desc_t *b_md) {
    const mg_fnet *d = net->donor;
    if (!d) return NULL;
    for (int i = 0, j = 0; i < d->nop; i++) {
        if (d->op[i].kind != OP_CONV) continue;
        if (j++ != net->nconv) continue;
        fweights *wt = d->op[i].wt;
        if (!wt) return NULL; /* our Winograd kernel there */
        if (wt->k == k && wt->c == c && wt->r == r && wt->stride == stride && wt->pad == pad &&
            dnnl_memory_desc_equal(&wt->w_md, w_md) && dnnl_memory_desc_equal(&wt->b_md, b_md))
            return wt;
        return NULL;
    }
    return NULL;
}

typedef mg_status (*weights_fn)(void *ctx, float *w, float *bias);

/* A convolution's plain OIHW weights (wn floats) and bias (k): the caller's arrays, or, without them,
 * fetched through `get` into the build buffer (build_tmp), where they stay until the next
 * convolution's. */
static mg_status fetch_weights(mg_fnet *net, const float *w_plain, const float *b_plain, weights_fn get, void *ctx,
                               size_t wn, int k, const float **wp, const float **bp) {
    *wp = w_plain, *bp = b_plain;
    net->tmp_used = 0;
    if (w_plain) return MG_OK;
    float *buf = build_tmp(net, (wn + (size_t)k) * sizeof *buf);
    if (!buf) return MG_FAIL(MG_ERR_NOMEM, "fused network: out of memory for weights");
    net->tmp_used = (wn + (size_t)k) * sizeof *buf;
    MG_TRY(get(ctx, buf, buf + wn));
    *wp = buf, *bp = buf + wn;
    return MG_OK;
}

/* oneDNN 2.6's Winograd kernels are AVX-512 only: on AVX2 (nChw8c activations) the 3x3 stride-1
 * convolutions whose channels fit run our Winograd kernel (wino_avx2.c) instead of oneDNN's direct one:
 * F(4x4, 3x3), or F(2x2, 3x3) on small maps at small batches (mg_wino4_inference_tile), and on 56x56
 * maps its stride-2 plan. On AVX-512 (nChw16c) ours replace oneDNN's kernels where the CPU runs 8-wide
 * FMAs as fast as 16-wide ones (mg_cpu_fma8_at_peak: Zen 4, where our 8-wide kernels measured faster)
 * and where our plans run 16-wide (mg_wino4_block16_width: full 512-bit FMA units, Zen 5, where ours
 * won 37 of 40 ResNet-50 A/B pairs at batch 1, one thread, by 5 %: docs/PERFORMANCE.md). block: the
 * activations' channel block, vw: the floats per vector our plans on it run (act_vector_width).
 * MG_FNET_OWN_WINO=0 turns them off (for comparison). */
static int own_wino_enabled(int block, int vw) {
    const char *e = getenv("MG_FNET_OWN_WINO");
    if (e && e[0] == '0') return 0;
    return block == 8 || (block == 16 && (mg_cpu_fma8_at_peak() || vw == 16));
}

/* The floats per vector our Winograd plans run on activations in blocks of `block` (mg_wino4_set_block). */
static int act_vector_width(int block) { return block == 16 ? mg_wino4_block16_width() : 8; }

/* md = float32 n x c x h x w in channel blocks of `block` (8: nChw8c, 16: nChw16c). */
static dnnl_status_t blocked_md(dnnl_memory_desc_t *md, int block, int n, int c, int h, int w) {
    dnnl_dims_t d = {n, c, h, w};
    return dnnl_memory_desc_init_by_tag(md, 4, d, dnnl_f32, mg_dnnl_block_tag(block));
}

/* Whether the convolution's primitive reads and writes channel blocks of `block`, a layout our
 * kernels run on (nChw8c for all of them, nChw16c for our Winograd). */
static int pd_is_blocked(const_dnnl_primitive_desc_t pd, int block, const int xd[4], int k, int p, int q) {
    dnnl_memory_desc_t bx, by;
    if (blocked_md(&bx, block, xd[0], xd[1], xd[2], xd[3]) != dnnl_success ||
        blocked_md(&by, block, xd[0], k, p, q) != dnnl_success)
        return 0;
    return dnnl_memory_desc_equal(dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0), &bx) &&
           dnnl_memory_desc_equal(dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0), &by);
}

/* The donor's convolution at this network's next convolution index (the j-th of both), or NULL. */
static const fop *donor_conv(const mg_fnet *net) {
    const mg_fnet *d = net->donor;
    if (!d) return NULL;
    for (int i = 0, j = 0; i < d->nop; i++)
        if (d->op[i].kind == OP_CONV && j++ == net->nconv) return &d->op[i];
    return NULL;
}

/* The donor's convolution's Winograd plan when it is ours with the same tile, stride and channels. */
static const mg_wino4 *donor_wino(const mg_fnet *net, int tile, int stride, int c, int k) {
    const fop *o = donor_conv(net);
    return o && o->own && mg_wino4_matches(o->own, tile, stride, c, k) ? o->own : NULL;
}

/* The donor's convolution's direct plan when it is ours with the same convolution. */
static const mg_dconv *donor_dconv(const mg_fnet *net, int c, int k, int r, int stride, int pad) {
    const fop *o = donor_conv(net);
    return o && o->dconv && mg_dconv_matches(o->dconv, c, k, r, stride, pad) ? o->dconv : NULL;
}

/* The rest of add_conv for a convolution run by one of our kernels in place of the primitive: our
 * Winograd kernel (wino_avx2.c) with output tiles of `tile` x `tile` (4 or 2; 4 with stride 2: the
 * stride-2 plan) or, with tile 0, our direct kernel (direct_avx2.c). Its plan
 * (weights transformed or packed once, or shared with the donor's) and its scratch (it shares oneDNN's
 * scratchpad buffer). */
static mg_status add_own(mg_fnet *net, fop *op, int tile, const int xd[4], int k, int r, int stride, int pad,
                         const float *w_plain, const float *b_plain, weights_fn get, void *ctx, int sum, int relu,
                         int id, int *out) {
    const int direct = tile == 0;
    op->sum = sum;
    op->relu = relu;
    const mg_wino4 *dw = direct ? NULL : donor_wino(net, tile, stride, xd[1], k);
    const mg_dconv *dd = direct ? donor_dconv(net, xd[1], k, r, stride, pad) : NULL;
    net->nconv++;
    if (dw) {
        MG_TRY(mg_wino4_init_like(&op->own, dw, xd[0], xd[2], xd[3])); /* and the donor's block */
    } else if (dd) {
        MG_TRY(mg_dconv_init_like(&op->dconv, dd, xd[0], xd[2], xd[3]));
    } else {
        const float *wp, *bp;
        MG_TRY(fetch_weights(net, w_plain, b_plain, get, ctx, (size_t)k * xd[1] * r * r, k, &wp, &bp));
        MG_TRY(direct ? mg_dconv_init_block(&op->dconv, act_block(), xd[0], xd[1], k, xd[2], xd[3], r, stride, pad, wp,
                                            bp)
               : stride == 2 ? mg_wino4_init_stride2(&op->own, xd[0], xd[1], k, xd[2], xd[3], wp, bp)
                             : mg_wino4_init_tile(&op->own, tile, xd[0], xd[1], k, xd[2], xd[3], wp, bp));
        if (!direct) MG_TRY(mg_wino4_set_block(op->own, act_block()));
        net->weight_bytes += direct ? mg_dconv_weight_bytes(op->dconv) : mg_wino4_weight_bytes(op->own);
    }
    size_t sb = direct ? mg_dconv_scratch_bytes(op->dconv) : mg_wino4_scratch_bytes(op->own, net->threads);
    if (sb > net->scratch_bytes) net->scratch_bytes = sb;
    *out = id;
    return MG_OK;
}

/* Our stem kernel (stem_avx2.c) on a convolution of the plain NCHW image (value 0, or any value in
 * that layout) with at most MG_STEM_MAX_C channels, without a residual, where the activations are
 * nChw16c and our kernels run 16-wide (full-width 512-bit FMAs). On Zen 5 ResNet's stem alone ran
 * 1.17-1.33 ms against oneDNN's jit:avx512_core 1.22-1.47 (one thread), and in the network the stem,
 * its pooling and the next layer took 0.16-0.34 ms less per image at one thread, 0.21-0.31 at two
 * (docs/PERFORMANCE.md, "The stem and its pooling in one pass"). Not on nChw8c: with 8-wide FMAs it
 * ran as fast as oneDNN's jit:avx2 and the three ops took 0.07-0.22 ms more in two of three runs
 * (ONEDNN_MAX_CPU_ISA=AVX2 on Zen 5). MG_FNET_OWN_STEM=0 turns it off (for comparison). The channel
 * block it runs on, or 0. */
static int own_stem_block(const mg_fnet *net, int in, int k, int r, int stride, int pad, int residual) {
    const char *e = getenv("MG_FNET_OWN_STEM");
    if ((e && e[0] == '0') || residual >= 0) return 0;
    const int blk = act_block(), *d = net->v[in].dims;
    if (!(blk == 16 && act_vector_width(16) == 16) ||
        !mg_stem_fits(blk, d[1], k, d[2], d[3], r, stride, pad))
        return 0;
    dnnl_memory_desc_t plain;
    dnnl_dims_t dd = {d[0], d[1], d[2], d[3]};
    if (dnnl_memory_desc_init_by_tag(&plain, 4, dd, dnnl_f32, dnnl_nchw) != dnnl_success ||
        !dnnl_memory_desc_equal(&net->v[in].md, &plain))
        return 0;
    return blk;
}

/* The rest of add_conv for a convolution run by our stem kernel: its output in channel blocks of
 * `block`, its plan (the weights packed once, or shared with the donor's). */
static mg_status add_stem(mg_fnet *net, int in, int block, const int ydims[4], int r, int stride, int pad,
                          const float *w_plain, const float *b_plain, weights_fn get, void *ctx, int relu, int *out) {
    int xd[4]; /* a copy: adding values may move net->v */
    memcpy(xd, net->v[in].dims, sizeof xd);
    const int c = xd[1], k = ydims[1];
    dnnl_memory_desc_t ymd;
    DNNL_TRY(blocked_md(&ymd, block, ydims[0], k, ydims[2], ydims[3]));
    int id;
    fop *op;
    MG_TRY(new_value(net, ydims, &ymd, -1, &id));
    MG_TRY(new_op(net, OP_CONV, &op));
    op->in = in, op->out = id, op->r = r, op->stride = stride, op->relu = relu;
    note_use(net, in);
    const fop *d = donor_conv(net);
    net->nconv++;
    if (d && d->stem && mg_stem_matches(d->stem, c, k, r, stride, pad)) {
        MG_TRY(mg_stem_init_like(&op->stem, d->stem, xd[2], xd[3]));
    } else {
        const float *wp, *bp;
        MG_TRY(fetch_weights(net, w_plain, b_plain, get, ctx, (size_t)k * c * r * r, k, &wp, &bp));
        MG_TRY(mg_stem_init(&op->stem, block, c, k, xd[2], xd[3], r, stride, pad, wp, bp, relu));
        net->weight_bytes += mg_stem_weight_bytes(op->stem);
    }
    *out = id;
    return MG_OK;
}

static mg_status add_conv(mg_fnet *net, int in, int k, int r, int stride, int pad, const float *w_plain,
                          const float *b_plain, weights_fn get, void *ctx, int residual, int flags, int *out) {
    MG_TRY(check_value(net, in, "convolution"));
    if (!out) return MG_FAIL(MG_ERR_INVALID_ARG, "fused network: convolution: null argument");
    int xd[4]; /* a copy: adding values may move net->v */
    memcpy(xd, net->v[in].dims, sizeof xd);
    if (k < 1 || r < 1 || stride < 1 || pad < 0)
        return MG_FAIL(MG_ERR_INVALID_ARG, "fused network: convolution k=%d r=%d stride=%d pad=%d", k, r, stride, pad);
    int p = (xd[2] + 2 * pad - r) / stride + 1, q = (xd[3] + 2 * pad - r) / stride + 1;
    if (xd[2] + 2 * pad < r || xd[3] + 2 * pad < r)
        return MG_FAIL(MG_ERR_INVALID_ARG, "fused network: a %dx%d kernel does not fit a padded %dx%d input", r, r,
                       xd[2], xd[3]);
    int ydims[4] = {xd[0], k, p, q};
    if (residual >= 0) {
        MG_TRY(check_value(net, residual, "residual sum"));
        const int *rd = net->v[residual].dims;
        if (memcmp(rd, ydims, sizeof ydims) != 0)
            return MG_FAIL(MG_ERR_INVALID_ARG,
                           "fused network: residual value %d is %dx%dx%dx%d, the convolution gives %dx%dx%dx%d",
                           residual, rd[0], rd[1], rd[2], rd[3], ydims[0], ydims[1], ydims[2], ydims[3]);
    }
    const int stem_block = own_stem_block(net, in, k, r, stride, pad, residual);
    if (stem_block)
        return add_stem(net, in, stem_block, ydims, r, stride, pad, w_plain, b_plain, get, ctx,
                        (flags & MG_FNET_RELU) != 0, out);
    dnnl_dims_t xdims = {xd[0], xd[1], xd[2], xd[3]}, wdims = {k, xd[1], r, r}, bdims = {k},
                ydm = {ydims[0], ydims[1], ydims[2], ydims[3]};
    dnnl_memory_desc_t x_any, w_any, w_user, b_md, y_any;
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&w_any, 4, wdims, dnnl_f32, dnnl_format_tag_any));
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&w_user, 4, wdims, dnnl_f32, dnnl_oihw));
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&b_md, 1, bdims, dnnl_f32, dnnl_a));
    /* A residual fixes the output layout: the sum happens in its buffer. */
    dnnl_memory_desc_t res_md;
    if (residual >= 0) res_md = net->v[residual].md;
    const dnnl_memory_desc_t *y_md = residual >= 0 ? &res_md : &y_any;
    dnnl_primitive_desc_t pd = NULL;
    int wino = 0, relu = (flags & MG_FNET_RELU) != 0, sum = residual >= 0;
    for (int block = act_block();; block = 0) { /* blocked activations; once more with "any" if slow */
        DNNL_TRY(dnnl_memory_desc_init_by_tag(&x_any, 4, xdims, dnnl_f32, act_tag(block, xd[1])));
        DNNL_TRY(dnnl_memory_desc_init_by_tag(&y_any, 4, ydm, dnnl_f32, act_tag(block, k)));
        wino = 0;
        if ((flags & MG_FNET_WINOGRAD) && r == 3 && stride == 1 && pad == 1 && p >= 4 && q >= 4) {
            MG_TRY(conv_pd(net, dnnl_convolution_winograd, &x_any, &w_any, &b_md, y_md, stride, pad, sum, relu, &pd));
            /* Winograd writes only its own blocked layout: a residual in another one (e.g. from an
             * NHWC 1x1 kernel) is then reordered into it below, which costs far less than giving up
             * Winograd */
            if (!pd && residual >= 0)
                MG_TRY(conv_pd(net, dnnl_convolution_winograd, &x_any, &w_any, &b_md, &y_any, stride, pad, sum, relu,
                               &pd));
            wino = pd != NULL;
        }
        if (!pd)
            MG_TRY(conv_pd(net, dnnl_convolution_direct, &x_any, &w_any, &b_md, y_md, stride, pad, sum, relu, &pd));
        if (!pd && residual >= 0) {
            /* no kernel writes the residual's layout: sum into a copy in the layout the kernel wants */
            MG_TRY(conv_pd(net, dnnl_convolution_direct, &x_any, &w_any, &b_md, &y_any, stride, pad, sum, relu, &pd));
        }
        if (!block || (pd && !slow_impl(pd))) break;
        if (pd) dnnl_primitive_desc_destroy(pd);
        pd = NULL;
    }
    if (!pd)
        return MG_FAIL(MG_ERR_UNSUPPORTED, "fused network: oneDNN has no convolution for %dx%d k=%d r=%d stride %d",
                       xd[2], xd[3], k, r, stride);
    int tile = 0; /* our Winograd's output tiles (4 for the stride-2 plan), where it saves enough; 0: not ours */
    const int blk = act_block(), vw = act_vector_width(blk);
    if ((flags & MG_FNET_WINOGRAD) && r == 3 && pad == 1 && own_wino_enabled(blk, vw) && xd[1] % blk == 0 &&
        k % blk == 0) {
        if (stride == 1 && p == xd[2] && q == xd[3])
            tile = mg_wino4_inference_tile(xd[0], xd[1], k, p, q);
        else if (stride == 2 && mg_wino4_inference_s2(xd[0], xd[1], k, xd[2], xd[3], vw) &&
                 !(vw == 16 && mg_dconv_preferred_block(blk, xd[0], xd[1], k, xd[2], xd[3], r, stride, pad)))
            tile = 4;
        /* (where our direct kernel runs 16-wide and its rule takes the layer, it beat the stride-2 plan:
         * ResNet-50's 28x28 -> 14x14 layer at batch 1 on Zen 5, 1.23-1.27 against 1.42-1.53 ms at one
         * thread, 0.61-0.63 against 0.71-0.74 at two; docs/PERFORMANCE.md, "The stem and its pooling
         * in one pass") */
        /* AVX-512 (nChw16c): oneDNN's own Winograd stays where ours would run F(2x2) (7x7 maps at batch
         * 1: 1.71-1.74 against 1.82-1.86 ms on Zen 4; 16-wide on Zen 5 the A/B was even, 0.994); ours
         * F(4x4) was 5-17 % faster on the larger maps (docs/PERFORMANCE.md, "Zen 4: our Winograd on
         * nChw16c") */
        if (wino && tile == 2) tile = 0;
    }
    const int own = tile > 0 && pd_is_blocked(pd, blk, xd, k, p, q);
    /* our direct kernel on the 3x3 stride-2 layers of small maps (direct_avx2.h): on nChw8c, and on
     * nChw16c where it runs 16-wide (full-width 512-bit FMAs) */
    int direct = !wino && !own && (blk == 8 || vw == 16) &&
                 mg_dconv_preferred_block(blk, xd[0], xd[1], k, xd[2], xd[3], r, stride, pad) &&
                 pd_is_blocked(pd, blk, xd, k, p, q);
    mg_status s = MG_OK;
    const dnnl_memory_desc_t *src_md = dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
    const dnnl_memory_desc_t *dst_md = dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
    const dnnl_memory_desc_t *wt_md = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    const dnnl_memory_desc_t *bi_md = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 1);
    int src = in, res = residual;
    /* the input and the residual in the layouts the primitive wants (reorder ops when not) */
    s = value_in_layout(net, in, src_md, 0, &src);
    if (s == MG_OK && residual >= 0) {
        s = value_in_layout(net, residual, dst_md, 1, &res);
        if (s == MG_OK) net->v[residual].consumed = 1;
    }
    int id = -1;
    if (s == MG_OK) s = new_value(net, ydims, dst_md, res >= 0 ? net->v[res].store : -1, &id);
    fop *op = NULL;
    if (s == MG_OK) s = new_op(net, OP_CONV, &op);
    if (s != MG_OK) {
        dnnl_primitive_desc_destroy(pd);
        return s;
    }
    op->pd = pd;
    op->in = src;
    op->out = id;
    op->r = r;
    op->stride = stride;
    op->winograd = wino || own;
    note_use(net, src);
    if (res >= 0) {
        note_use(net, res);
        net->v[res].consumed = 1;
    }
    if (own || direct)
        return add_own(net, op, own ? tile : 0, xd, k, r, stride, pad, w_plain, b_plain, get, ctx, sum, relu, id, out);
    DNNL_TRY(dnnl_primitive_create(&op->prim, pd));
    MG_TRY(track_scratch(net, pd));
    fweights *wt = donor_weights(net, k, xd[1], r, stride, pad, wt_md, bi_md);
    net->nconv++;
    if (wt) {
        wt->refs++;
        op->wt = wt;
    } else {
        wt = calloc(1, sizeof *wt);
        if (!wt) return MG_FAIL(MG_ERR_NOMEM, "fused network: out of memory");
        *wt = (fweights){.refs = 1, .w_md = *wt_md, .b_md = *bi_md, .k = k, .c = xd[1], .r = r, .stride = stride,
                         .pad = pad};
        size_t wb = dnnl_memory_desc_get_size(wt_md), bb = dnnl_memory_desc_get_size(bi_md);
        wt->w_bytes = wb, wt->b_bytes = bb;
        wt->w = mg_hugepage_alloc(wb);
        wt->b = mg_hugepage_alloc(bb);
        op->wt = wt; /* owned by the network from here on, also on the error paths below */
        if (!wt->w || !wt->b) return MG_FAIL(MG_ERR_NOMEM, "fused network: out of memory for weights");
        net->weight_bytes += wb + bb;
        const float *wp, *bp;
        MG_TRY(fetch_weights(net, w_plain, b_plain, get, ctx, (size_t)k * xd[1] * r * r, k, &wp, &bp));
        MG_TRY(reorder_once(net, &w_user, wp, wt_md, wt->w));
        MG_TRY(reorder_once(net, &b_md, bp, bi_md, wt->b));
    }
    DNNL_TRY(dnnl_memory_create(&op->w_mem, wt_md, net->engine, wt->w));
    DNNL_TRY(dnnl_memory_create(&op->b_mem, bi_md, net->engine, wt->b));
    *out = id;
    return MG_OK;
}

mg_status mg_fnet_add_conv(mg_fnet *net, int in, int k, int r, int stride, int pad, const float *w,
                           const float *bias, int residual, int flags, int *out) {
    if (!w || !bias) return MG_FAIL(MG_ERR_INVALID_ARG, "fused network: convolution: null weights or bias");
    return add_conv(net, in, k, r, stride, pad, w, bias, NULL, NULL, residual, flags, out);
}

mg_status mg_fnet_add_conv_cb(mg_fnet *net, int in, int k, int r, int stride, int pad,
                              mg_status (*get_weights)(void *ctx, float *w, float *bias), void *ctx, int residual,
                              int flags, int *out) {
    if (!net) return MG_FAIL(MG_ERR_INVALID_ARG, "fused network: convolution: null network");
    mg_omp_set_threads(net->threads); /* the primitives created here keep this thread count */
    if (!get_weights) return MG_FAIL(MG_ERR_INVALID_ARG, "fused network: convolution: null weights callback");
    return add_conv(net, in, k, r, stride, pad, NULL, NULL, get_weights, ctx, residual, flags, out);
}

/* Our max pooling (pool_avx2.c) in place of oneDNN's, where the input is nChw8c or nChw16c and the
 * kernel fits: after ResNet's stem, oneDNN 2.6's AVX2 pooling took 1.04-1.09 ms per image on one
 * thread, ours 0.43-0.49 in the same runs (docs/PERFORMANCE.md, "The stem's max pooling"); its
 * AVX-512 pooling on Zen 4 0.27-0.29 against our 0.18. MG_FNET_OWN_POOL=0 turns it off (for
 * comparison). The channel block it runs on, or 0 where it does not apply. */
static int own_pool_block(const mg_fnet *net, int in, int r, int stride, int pad) {
    const char *e = getenv("MG_FNET_OWN_POOL");
    if (e && e[0] == '0') return 0;
    const int *d = net->v[in].dims;
    for (int block = 8; block <= 16; block += 8) {
        dnnl_memory_desc_t xb;
        if (mg_maxpool8_fits(d[0], d[1], d[2], d[3], r, stride, pad, block) &&
            blocked_md(&xb, block, d[0], d[1], d[2], d[3]) == dnnl_success &&
            dnnl_memory_desc_equal(&net->v[in].md, &xb))
            return block;
    }
    return 0;
}

mg_status mg_fnet_add_maxpool(mg_fnet *net, int in, int r, int stride, int pad, int *out) {
    MG_TRY(check_value(net, in, "max pooling"));
    mg_omp_set_threads(net->threads); /* the primitives created here keep this thread count */
    if (!out || r < 1 || stride < 1 || pad < 0 || 2 * pad > r)
        return MG_FAIL(MG_ERR_INVALID_ARG, "fused network: max pooling r=%d stride=%d pad=%d", r, stride, pad);
    int xd[4];
    memcpy(xd, net->v[in].dims, sizeof xd);
    if (xd[2] + 2 * pad < r || xd[3] + 2 * pad < r)
        return MG_FAIL(MG_ERR_INVALID_ARG, "fused network: a %dx%d pooling window does not fit a %dx%d input", r, r,
                       xd[2], xd[3]);
    int p = (xd[2] + 2 * pad - r) / stride + 1, q = (xd[3] + 2 * pad - r) / stride + 1;
    int ydims[4] = {xd[0], xd[1], p, q};
    const int pool_block = own_pool_block(net, in, r, stride, pad);
    if (pool_block) {
        dnnl_memory_desc_t yb;
        DNNL_TRY(blocked_md(&yb, pool_block, xd[0], xd[1], p, q));
        int id;
        fop *op;
        MG_TRY(new_value(net, ydims, &yb, -1, &id));
        MG_TRY(new_op(net, OP_POOL, &op));
        *op = (fop){
            .kind = OP_POOL, .in = in, .out = id, .r = r, .stride = stride, .pad = pad, .own_pool = pool_block};
        note_use(net, in);
        *out = id;
        return MG_OK;
    }
    dnnl_dims_t ydm = {ydims[0], ydims[1], p, q}, strides = {stride, stride}, kernel = {r, r}, padding = {pad, pad};
    /* PyTorch's floor-mode output can leave the right padding partly unused: oneDNN wants the
     * right padding that makes the sizes consistent. */
    dnnl_dims_t pad_r = {(p - 1) * stride + r - xd[2] - pad, (q - 1) * stride + r - xd[3] - pad};
    dnnl_memory_desc_t y_any;
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&y_any, 4, ydm, dnnl_f32, dnnl_format_tag_any));
    dnnl_pooling_desc_t pdsc;
    DNNL_TRY(dnnl_pooling_forward_desc_init(&pdsc, dnnl_forward_inference, dnnl_pooling_max, &net->v[in].md, &y_any,
                                            strides, kernel, padding, pad_r));
    dnnl_primitive_attr_t attr;
    MG_TRY(user_attr(&attr));
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t s = dnnl_primitive_desc_create(&pd, &pdsc, attr, net->engine, NULL);
    dnnl_primitive_attr_destroy(attr);
    if (s != dnnl_success) return MG_FAIL(MG_ERR_INTERNAL, "fused network (oneDNN): max pooling (status %d)", (int)s);
    const dnnl_memory_desc_t *dst_md = dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
    int id;
    mg_status ms = new_value(net, ydims, dst_md, -1, &id);
    fop *op = NULL;
    if (ms == MG_OK) ms = new_op(net, OP_POOL, &op);
    if (ms != MG_OK) {
        dnnl_primitive_desc_destroy(pd);
        return ms;
    }
    op->pd = pd;
    op->in = in;
    op->out = id;
    op->r = r;
    op->stride = stride;
    op->pad = pad;
    note_use(net, in);
    DNNL_TRY(dnnl_primitive_create(&op->prim, pd));
    MG_TRY(track_scratch(net, pd));
    *out = id;
    return MG_OK;
}

/* Image by image through the first ops of a batch. At batch 8 the activations of ResNet-50's stages 1
 * and 2 (25.7 MB per 256-channel 56x56 value) outgrow a 32 MiB L3, so every layer streams the batch
 * through memory, and those stages ran 3.4 ms per image slower than at batch 1, while stage 4 gained
 * from reading its weights once for 8 images (docs/PERFORMANCE.md, "Where one thread's time goes
 * now"). So the leading ops whose outputs have at least micro_min() positions per image get a batch-1
 * twin, and a run takes image 0 through all of them, then image 1, ..., on the same full-batch buffers
 * (in these layouts each image's part of a value is one contiguous block), before the rest of the
 * network runs on the whole batch. The prefix ends at the first op with fewer positions, or whose
 * twin cannot be made (a layout without the batch outermost, or oneDNN choosing other weights for one
 * image). MG_FNET_MICRO_MIN (read at finalize) sets the positions; 0 turns it off. */
#define MG_FNET_MICRO_MIN_DEFAULT (28 * 28) /* positions per image: ResNet-50's stages 1 and 2 at 224 */
static int micro_min(void) {
    const char *e = getenv("MG_FNET_MICRO_MIN");
    return e ? atoi(e) : MG_FNET_MICRO_MIN_DEFAULT;
}

/* md for one image of a value of n images; 0 when the images are not contiguous blocks one after the
 * other. */
static int micro_md(const dnnl_memory_desc_t *md, int n, dnnl_memory_desc_t *m1) {
    if (md->format_kind != dnnl_blocked || md->ndims != 4 || md->dims[0] != n || md->padded_dims[0] != n ||
        md->offset0 != 0)
        return 0;
    for (int i = 0; i < md->format_desc.blocking.inner_nblks; i++)
        if (md->format_desc.blocking.inner_idxs[i] == 0) return 0; /* images blocked together */
    const size_t bytes = dnnl_memory_desc_get_size(md);
    if ((size_t)md->format_desc.blocking.strides[0] * sizeof(float) * n != bytes) return 0;
    *m1 = *md;
    m1->dims[0] = 1;
    m1->padded_dims[0] = 1;
    return 1;
}

/* op's batch-1 primitive on in1 -> out1 (the same descriptor and attributes otherwise); NULL pd (and
 * MG_OK) when oneDNN has none. */
static mg_status micro_pd(mg_fnet *net, const fop *op, const dnnl_memory_desc_t *in1, const dnnl_memory_desc_t *out1,
                          dnnl_primitive_desc_t *pd) {
    *pd = NULL;
    const_dnnl_primitive_attr_t attr = NULL;
    DNNL_TRY(dnnl_primitive_desc_get_attr(op->pd, &attr));
    dnnl_status_t s = dnnl_unimplemented;
    if (op->kind == OP_REORDER) {
        s = dnnl_reorder_primitive_desc_create(pd, in1, net->engine, out1, net->engine, attr);
    } else if (op->kind == OP_CONV) {
        const dnnl_convolution_desc_t *cd = NULL;
        DNNL_TRY(dnnl_primitive_desc_query(op->pd, dnnl_query_convolution_d, 0, &cd));
        dnnl_convolution_desc_t c1 = *cd;
        c1.src_desc = *in1;
        c1.dst_desc = *out1;
        s = dnnl_primitive_desc_create(pd, &c1, attr, net->engine, NULL);
    } else if (op->kind == OP_POOL) {
        const dnnl_pooling_desc_t *pdsc = NULL;
        DNNL_TRY(dnnl_primitive_desc_query(op->pd, dnnl_query_pooling_d, 0, &pdsc));
        dnnl_pooling_desc_t p1 = *pdsc;
        p1.src_desc = *in1;
        p1.dst_desc = *out1;
        s = dnnl_primitive_desc_create(pd, &p1, attr, net->engine, NULL);
    }
    if (s != dnnl_success) {
        *pd = NULL;
        return MG_OK;
    }
    /* the twin must read the weights the op has */
    if (op->kind == OP_CONV &&
        !dnnl_memory_desc_equal(dnnl_primitive_desc_query_md(*pd, dnnl_query_weights_md, 0),
                                dnnl_primitive_desc_query_md(op->pd, dnnl_query_weights_md, 0))) {
        dnnl_primitive_desc_destroy(*pd);
        *pd = NULL;
    }
    return MG_OK;
}

/* The batch-1 twins of the leading ops (see micro_min); sets net->micro_ops. */
static mg_status micro_plan(mg_fnet *net) {
    const int n = net->v[0].dims[0], min = micro_min();
    if (n < 2 || min <= 0) return MG_OK;
    for (int i = 0; i < net->nop; i++) {
        fop *op = &net->op[i];
        const int *xd = net->v[op->in].dims, *yd = net->v[op->out].dims;
        if ((long)yd[2] * yd[3] < min) break;
        dnnl_memory_desc_t in1, out1;
        if (!micro_md(&net->v[op->in].md, n, &in1) || !micro_md(&net->v[op->out].md, n, &out1)) break;
        fmicro *m = calloc(1, sizeof *m);
        if (!m) return MG_FAIL(MG_ERR_NOMEM, "fused network: out of memory");
        mg_status s = MG_OK;
        size_t sb = 0;
        if (op->own) {
            s = mg_wino4_init_like(&m->own, op->own, 1, xd[2], xd[3]);
            if (s == MG_OK) sb = mg_wino4_scratch_bytes(m->own, net->threads);
        } else if (op->dconv) {
            s = mg_dconv_init_like(&m->dconv, op->dconv, 1, xd[2], xd[3]);
            if (s == MG_OK) sb = mg_dconv_scratch_bytes(m->dconv);
        } else if (!op->own_pool && !op->stem) { /* the stem's plan runs any number of images */
            mg_omp_set_threads(op->serial ? 1 : net->threads); /* the primitive keeps this thread count */
            s = micro_pd(net, op, &in1, &out1, &m->pd);
            if (s == MG_OK && m->pd) {
                if (dnnl_primitive_create(&m->prim, m->pd) != dnnl_success ||
                    dnnl_memory_create(&m->in, &in1, net->engine, DNNL_MEMORY_NONE) != dnnl_success ||
                    dnnl_memory_create(&m->out, &out1, net->engine, DNNL_MEMORY_NONE) != dnnl_success)
                    s = MG_FAIL(MG_ERR_INTERNAL, "fused network (oneDNN): op %d for one image", i);
                const dnnl_memory_desc_t *smd = dnnl_primitive_desc_query_md(m->pd, dnnl_query_scratchpad_md, 0);
                sb = smd ? dnnl_memory_desc_get_size(smd) : 0;
            }
            mg_omp_set_threads(net->threads);
            if (s == MG_OK && !m->pd) { /* no twin: the prefix ends here */
                micro_free(m);
                break;
            }
        }
        if (s != MG_OK) {
            micro_free(m);
            return s;
        }
        if (sb > net->scratch_bytes) net->scratch_bytes = sb;
        op->micro = m;
        net->micro_ops = i + 1;
    }
    return MG_OK;
}

/* Whether value id is read by an op other than op `skip`, summed into (its storage shared), or `output`. */
static int value_used_elsewhere(const mg_fnet *net, int id, int skip, int output) {
    if (id == output) return 1;
    for (int i = 0; i < net->nop; i++)
        if (i != skip && net->op[i].in == id) return 1;
    for (int i = 0; i < net->nv; i++)
        if (i != id && net->v[i].store == net->v[id].store) return 1;
    return 0;
}

/* Our stem followed by a max pooling of its output, which nothing else reads, becomes one op: the
 * stem kernel pools the convolution's rows while they are in the cache (stem_avx2.c), so the
 * convolution's output is never written (its value keeps no buffer). */
static mg_status fuse_stem_pool(mg_fnet *net, int output) {
    for (int i = 0; i + 1 < net->nop; i++) {
        fop *op = &net->op[i], *pool = &net->op[i + 1];
        if (!op->stem || op->stem_pool || pool->kind != OP_POOL || pool->in != op->out ||
            value_used_elsewhere(net, op->out, i + 1, output) ||
            !mg_stem_pool_fits(op->stem, pool->r, pool->stride, pool->pad))
            continue;
        const int *pd = net->v[pool->out].dims;
        dnnl_memory_desc_t ymd;
        DNNL_TRY(blocked_md(&ymd, mg_stem_block(op->stem), pd[0], pd[1], pd[2], pd[3]));
        if (!dnnl_memory_desc_equal(&net->v[pool->out].md, &ymd)) continue; /* another layout wanted */
        MG_TRY(mg_stem_set_pool(op->stem, pool->r, pool->stride, pool->pad));
        op->stem_pool = 1;
        op->out = pool->out;
        if (pool->prim) dnnl_primitive_destroy(pool->prim);
        if (pool->pd) dnnl_primitive_desc_destroy(pool->pd);
        memmove(pool, pool + 1, (size_t)(net->nop - i - 2) * sizeof *pool);
        net->nop--;
    }
    for (int i = 0; i < net->nop; i++) {
        const size_t sb = net->op[i].stem ? mg_stem_scratch_bytes(net->op[i].stem, net->threads) : 0;
        if (sb > net->scratch_bytes) net->scratch_bytes = sb;
    }
    return MG_OK;
}

/* A free slot for group st (the smallest that fits, else the largest free one grown, else a new one),
 * marked busy. */
static void take_slot(mg_fnet *net, fstore *st, int *busy) {
    int fit = -1, grow = -1;
    for (int s = 0; s < net->nslot; s++) {
        if (busy[s]) continue;
        if (net->slot_bytes[s] >= st->bytes) {
            if (fit < 0 || net->slot_bytes[s] < net->slot_bytes[fit]) fit = s;
        } else if (grow < 0 || net->slot_bytes[s] > net->slot_bytes[grow]) {
            grow = s;
        }
    }
    int best = fit >= 0 ? fit : grow;
    if (best < 0) best = net->nslot++;
    if (net->slot_bytes[best] < st->bytes) net->slot_bytes[best] = st->bytes;
    st->slot = best;
    busy[best] = 1;
}

mg_status mg_fnet_finalize(mg_fnet *net, int output) {
    if (!net) return MG_FAIL(MG_ERR_INVALID_ARG, "fused network: finalize: null network");
    mg_omp_set_threads(net->threads); /* the primitives created here keep this thread count */
    if (net->finalized) return MG_FAIL(MG_ERR_INVALID_ARG, "fused network: finalized twice");
    if (output < 1 || output >= net->nv)
        return MG_FAIL(MG_ERR_INVALID_ARG, "fused network: output value %d does not exist (1..%d)", output, net->nv - 1);
    if (net->v[output].consumed)
        return MG_FAIL(MG_ERR_INVALID_ARG, "fused network: output value %d was overwritten by a residual sum", output);
    MG_TRY(fuse_stem_pool(net, output));
    /* liveness per storage group: the last op touching any of its values */
    for (int i = 0; i < net->nop; i++) {
        const fop *op = &net->op[i];
        int ids[2] = {op->in, op->out};
        for (int j = 0; j < 2; j++) {
            fstore *st = &net->st[net->v[ids[j]].store];
            if (st->last_use < i) st->last_use = i;
        }
    }
    net->st[net->v[output].store].last_use = net->nop; /* read by the final reorder */
    int input_store = net->v[0].store;
    /* the ops a run takes image by image, and the groups that then need one image's room only: those
     * dead within those ops (each image's pass ends with them dead, before the next one starts) */
    MG_TRY(micro_plan(net));
    const int n = net->v[0].dims[0], S = net->micro_ops;
    for (int g = 0; g < net->nst; g++) {
        fstore *st = &net->st[g];
        if (S > 0 && g != input_store && st->last_use < S)
            st->bytes /= (size_t)n; /* image_step 0 */
        else
            st->image_step = st->bytes / (size_t)n;
    }
    /* slots: walk the ops; an output whose group has no slot yet takes one (take_slot); groups dead
     * after an op free their slot. The input (value 0) is the caller's memory. A group written image
     * by image and read after those ops holds every image from the first image's pass on: it takes its
     * slot before the walk, so that no group of the image-by-image ops shares it. */
    int cap = net->nst;
    net->slot_buf = calloc((size_t)cap, sizeof *net->slot_buf);
    net->slot_bytes = calloc((size_t)cap, sizeof *net->slot_bytes);
    int *busy = calloc((size_t)cap, sizeof *busy);
    if (!net->slot_buf || !net->slot_bytes || !busy) {
        free(busy);
        return MG_FAIL(MG_ERR_NOMEM, "fused network: out of memory");
    }
    for (int i = 0; i < S; i++) {
        fstore *st = &net->st[net->v[net->op[i].out].store];
        if (st->slot < 0 && st->last_use >= S) take_slot(net, st, busy);
    }
    for (int i = 0; i < net->nop; i++) {
        fstore *st = &net->st[net->v[net->op[i].out].store];
        if (st->slot < 0) take_slot(net, st, busy);
        for (int g = 0; g < net->nst; g++)
            if (g != input_store && net->st[g].slot >= 0 && net->st[g].last_use == i) busy[net->st[g].slot] = 0;
    }
    free(busy);
    build_tmp_release(net); /* before the activations: the peak holds one or the other */
    for (int s = 0; s < net->nslot; s++) {
        net->slot_buf[s] = mg_hugepage_alloc(net->slot_bytes[s]);
        if (!net->slot_buf[s]) return MG_FAIL(MG_ERR_NOMEM, "fused network: out of memory for activations");
    }
    if (net->scratch_bytes) {
        net->scratch_buf = mg_hugepage_alloc(net->scratch_bytes);
        if (!net->scratch_buf) return MG_FAIL(MG_ERR_NOMEM, "fused network: out of memory for the scratchpad");
        dnnl_dims_t sd = {(dnnl_dim_t)net->scratch_bytes};
        dnnl_memory_desc_t smd;
        DNNL_TRY(dnnl_memory_desc_init_by_tag(&smd, 1, sd, dnnl_u8, dnnl_a));
        DNNL_TRY(dnnl_memory_create(&net->scratch, &smd, net->engine, net->scratch_buf));
    }
    for (int i = 0; i < net->nv; i++) {
        fvalue *v = &net->v[i];
        const int slot = net->st[v->store].slot; /* none: a value no op writes (the stem's before pooling) */
        void *buf = i == 0 || slot < 0 ? DNNL_MEMORY_NONE : net->slot_buf[slot];
        DNNL_TRY(dnnl_memory_create(&v->mem, &v->md, net->engine, buf));
    }
    const int *od = net->v[output].dims;
    dnnl_dims_t odims = {od[0], od[1], od[2], od[3]};
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&net->out_md, 4, odims, dnnl_f32, dnnl_nchw));
    DNNL_TRY(dnnl_memory_create(&net->out_user, &net->out_md, net->engine, DNNL_MEMORY_NONE));
    dnnl_primitive_desc_t rpd;
    DNNL_TRY(dnnl_reorder_primitive_desc_create(&rpd, &net->v[output].md, net->engine, &net->out_md, net->engine, NULL));
    dnnl_status_t s = dnnl_primitive_create(&net->out_reorder, rpd);
    dnnl_primitive_desc_destroy(rpd);
    if (s != dnnl_success) return MG_FAIL(MG_ERR_INTERNAL, "fused network (oneDNN): output reorder (status %d)", (int)s);
    if (profile_enabled()) {
        if (!(net->prof = calloc(2 * (size_t)net->nop, sizeof *net->prof)))
            return MG_FAIL(MG_ERR_NOMEM, "fused network: out of memory for the profile");
        net->prof_runs = -1;
    }
    net->output = output;
    net->out_block = 0;
    for (int b = 16; b >= 8 && !net->out_block; b -= 8) {
        dnnl_memory_desc_t bm;
        if (od[1] % b == 0 && blocked_md(&bm, b, od[0], od[1], od[2], od[3]) == dnnl_success &&
            dnnl_memory_desc_equal(&bm, &net->v[output].md))
            net->out_block = b;
    }
    net->donor = NULL;
    net->finalized = 1;
    return MG_OK;
}

void mg_fnet_value_dims(const mg_fnet *net, int value, int dims[4]) {
    MG_ASSERT(value >= 0 && value < net->nv);
    memcpy(dims, net->v[value].dims, 4 * sizeof(int));
}

/* MG_FNET_PROFILE: op i's time since t0, into the first run's row or the later runs' sums. */
static void profile_add(mg_fnet *net, int i, double t0) {
    if (net->prof) net->prof[i + (net->prof_runs < 0 ? net->nop : 0)] += mg_time_now() - t0;
}

/* Op i on the whole batch (img < 0) or, through its batch-1 twin, on image img. */
static mg_status run_op(mg_fnet *net, int i, int img) {
    const fop *op = &net->op[i];
    const fmicro *m = img >= 0 ? op->micro : NULL;
    const double t0 = net->prof ? mg_time_now() : 0;
    const int ours = op->own || op->dconv || op->own_pool || op->stem;
    char *xp = NULL, *yp = NULL;
    if (m || ours) { /* the values' buffers; for image img its block (or the one image's room) */
        void *a = NULL, *b = NULL;
        DNNL_TRY(dnnl_memory_get_data_handle(net->v[op->in].mem, &a));
        DNNL_TRY(dnnl_memory_get_data_handle(net->v[op->out].mem, &b));
        xp = a, yp = b;
        if (m) {
            xp += (size_t)img * net->st[net->v[op->in].store].image_step;
            yp += (size_t)img * net->st[net->v[op->out].store].image_step;
        }
    }
    if (ours) {
        if (op->stem) {
            mg_stem_forward(op->stem, (const float *)xp, (float *)yp, m ? 1 : net->v[op->in].dims[0], net->scratch_buf,
                            net->threads);
        } else if (op->own_pool) {
            const int *d = net->v[op->in].dims;
            mg_maxpool8_forward((const float *)xp, (float *)yp, m ? 1 : d[0], d[1], d[2], d[3], op->r, op->stride,
                                op->pad, op->own_pool, net->threads);
        } else if (op->own) {
            mg_wino4_forward(m ? m->own : op->own, (const float *)xp, (float *)yp, op->sum, op->relu, net->scratch_buf,
                             net->threads);
        } else {
            mg_dconv_forward(m ? m->dconv : op->dconv, (const float *)xp, (float *)yp, op->sum, op->relu,
                             net->scratch_buf, net->threads);
        }
        profile_add(net, i, t0);
        return MG_OK;
    }
    dnnl_memory_t in = net->v[op->in].mem, out = net->v[op->out].mem;
    dnnl_primitive_t prim = op->prim;
    if (m) {
        DNNL_TRY(dnnl_memory_set_data_handle(m->in, xp));
        DNNL_TRY(dnnl_memory_set_data_handle(m->out, yp));
        in = m->in, out = m->out, prim = m->prim;
    }
    dnnl_exec_arg_t a[6];
    int na = 0;
    if (op->kind == OP_REORDER) {
        a[na++] = (dnnl_exec_arg_t){DNNL_ARG_FROM, in};
        a[na++] = (dnnl_exec_arg_t){DNNL_ARG_TO, out};
    } else {
        a[na++] = (dnnl_exec_arg_t){DNNL_ARG_SRC, in};
        a[na++] = (dnnl_exec_arg_t){DNNL_ARG_DST, out};
        if (op->kind == OP_CONV) {
            a[na++] = (dnnl_exec_arg_t){DNNL_ARG_WEIGHTS, op->w_mem};
            a[na++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, op->b_mem};
        }
    }
    if (net->scratch) a[na++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, net->scratch};
    if (op->serial) mg_omp_set_threads(1);
    dnnl_status_t s = dnnl_primitive_execute(prim, net->stream, na, a);
    if (op->serial) mg_omp_set_threads(net->threads);
    profile_add(net, i, t0);
    if (s != dnnl_success)
        return MG_FAIL(MG_ERR_INTERNAL, "fused network (oneDNN): executing op %d failed (status %d)", i, (int)s);
    return MG_OK;
}

/* The ops of a run on x; y: where the output goes in plain NCHW, or NULL to leave it where the last op
 * wrote it. */
static mg_status run_ops(mg_fnet *net, const float *x, float *y) {
    if (!net->finalized) return MG_FAIL(MG_ERR_INVALID_ARG, "fused network run: not finalized");
    mg_omp_set_threads(net->threads);
    DNNL_TRY(dnnl_memory_set_data_handle(net->v[0].mem, (void *)x));
    const int n = net->v[0].dims[0];
    for (int img = 0; img < n && net->micro_ops > 0; img++)
        for (int i = 0; i < net->micro_ops; i++) MG_TRY(run_op(net, i, img));
    for (int i = net->micro_ops; i < net->nop; i++) MG_TRY(run_op(net, i, -1));
    if (y) {
        DNNL_TRY(dnnl_memory_set_data_handle(net->out_user, y));
        dnnl_exec_arg_t a[2] = {{DNNL_ARG_FROM, net->v[net->output].mem}, {DNNL_ARG_TO, net->out_user}};
        DNNL_TRY(dnnl_primitive_execute(net->out_reorder, net->stream, 2, a));
    }
    DNNL_TRY(dnnl_stream_wait(net->stream));
    net->prof_runs++; /* with a profile -1 -> 0 at the end of the first run */
    return MG_OK;
}

mg_status mg_fnet_run(mg_fnet *net, const float *x, float *y) {
    if (!net || !x || !y) return MG_FAIL(MG_ERR_INVALID_ARG, "fused network run: null argument");
    return run_ops(net, x, y);
}

int mg_fnet_output_block(const mg_fnet *net) { return net && net->finalized ? net->out_block : 0; }

mg_status mg_fnet_run_raw(mg_fnet *net, const float *x, const float **y) {
    if (!net || !x || !y) return MG_FAIL(MG_ERR_INVALID_ARG, "fused network run: null argument");
    if (!mg_fnet_output_block(net))
        return MG_FAIL(MG_ERR_INVALID_ARG, "fused network run: the output is not in channel blocks (use mg_fnet_run)");
    MG_TRY(run_ops(net, x, NULL));
    void *h = NULL;
    DNNL_TRY(dnnl_memory_get_data_handle(net->v[net->output].mem, &h));
    *y = h;
    return MG_OK;
}

size_t mg_fnet_bytes(const mg_fnet *net) {
    size_t b = net->weight_bytes + net->scratch_bytes; /* shared weights are counted by their owner */
    for (int s = 0; s < net->nslot; s++) b += net->slot_bytes[s];
    return b;
}

int mg_fnet_winograd_count(const mg_fnet *net) {
    int c = 0;
    for (int i = 0; i < net->nop; i++) c += net->op[i].winograd;
    return c;
}

int mg_fnet_per_image_count(const mg_fnet *net) { return net->micro_ops; }
