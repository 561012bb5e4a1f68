/* conv2d_dnnl.c: the oneDNN fast path of conv2d. A plan holds three "ops" (forward, backward data,
 * backward weights), each a oneDNN convolution primitive plus, per argument, the caller's plain
 * NCHW/OIHW memory and, when the primitive wants another layout, a cached reorder primitive and an
 * inner buffer in the plan's workspace. Everything is created once in mg_conv2d_dnnl_init; a call
 * only sets data handles and executes.
 *
 * Layouts: PLAIN asks oneDNN for nchw/oihw everywhere (no reorders; oneDNN then runs its
 * im2col+gemm or plain-layout jit kernels); BLOCKED passes format "any" so oneDNN picks its blocked
 * layouts (nChw16c / OIhw16i16o on AVX-512, 8c on AVX2) and the plan reorders in and out. AUTO
 * (the default) takes the per-shape choice from choose_layout() below, measured with bench_ops.
 *
 * Gradient rule: oneDNN writes diff_weights/diff_bias, so backward weights always computes into
 * inner buffers and accumulates into the caller's dw/db with a reorder that carries a sum post-op
 * (dst = dst + reordered src), which also converts from the blocked layout in the same pass.
 *
 * Threads: oneDNN here runs on OpenMP and a primitive keeps the thread count current when it was
 * created, so init sets the OpenMP thread count of the calling thread to mg_ops_get_threads() before
 * creating anything (a plan runs on the thread count of its creation; callers that change
 * mg_ops_set_threads re-plan: the model keys its plans on it), and every execution sets it again.
 * Scratchpads are in user mode (inside the workspace), so oneDNN allocates nothing per call. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <oneapi/dnnl/dnnl.h>

#include "ops/cpu/conv2d_internal.h"
#include "ops/cpu/layers_util.h"
#include "ops/cpu/wino_avx2.h"

#define MG_WS_ALIGN 64

/* The argument roles of one op. */
enum { ARG_IN = 0, ARG_OUT = 1, ARG_OUT_ACC = 2 };

typedef struct mg_dnnl_arg {
    int arg;                  /* DNNL_ARG_* */
    int dir;                  /* ARG_IN, ARG_OUT or ARG_OUT_ACC */
    dnnl_memory_t user;       /* the caller's plain buffer; its handle is set per call */
    dnnl_memory_t inner;      /* the primitive's layout, in the workspace; NULL = use `user` */
    dnnl_primitive_t reorder; /* user->inner (IN) or inner->user (OUT; + sum for OUT_ACC) */
    size_t off, bytes;        /* place of `inner` in the workspace */
} mg_dnnl_arg;

typedef struct mg_dnnl_op {
    dnnl_primitive_desc_t pd;
    dnnl_primitive_t prim;
    int nargs;
    mg_dnnl_arg a[4];
    dnnl_memory_t scratch; /* user-mode scratchpad, in the workspace; NULL when none is needed */
    size_t scratch_off;
    size_t ws_bytes; /* workspace this op needs (inner buffers + scratchpad) */
    dnnl_exec_arg_t exec[5];
    int nexec;
    char name[128];
} mg_dnnl_op;

enum { OP_FWD = 0, OP_BWD_DATA = 1, OP_BWD_WEIGHTS = 2, OP_COUNT = 3 };

typedef struct mg_dnnl_state {
    dnnl_stream_t stream;
    mg_dnnl_op op[OP_COUNT];
    mg_conv2d_layout op_layout[OP_COUNT]; /* PLAIN or BLOCKED, per op */
    dnnl_alg_kind_t op_alg[OP_COUNT];     /* direct or Winograd, per op */
    mg_wino4 *own[OP_COUNT]; /* our AVX2 Winograd in place of an op's primitive (own_wino_wanted) */
    int bwdd_scatter;        /* backward data writes a half-size buffer, then dx (BWDD_FORWARD_TO_EVEN) */
    size_t bwdd_tmp_off;     /* that buffer's place in the workspace */
    int threads;             /* the thread count the plan was made for */
} mg_dnnl_state;

/* ---------------------------------------------------------------------------------------------- */

static dnnl_engine_t g_engine;
static dnnl_status_t g_engine_status = dnnl_runtime_error;
static pthread_once_t g_engine_once = PTHREAD_ONCE_INIT;

static void engine_create(void) { g_engine_status = dnnl_engine_create(&g_engine, dnnl_cpu, 0); }

mg_status mg_dnnl_engine(dnnl_engine_t *engine) {
    pthread_once(&g_engine_once, engine_create);
    if (g_engine_status != dnnl_success)
        return MG_FAIL(MG_ERR_INTERNAL, "oneDNN: creating the CPU engine failed (status %d)", (int)g_engine_status);
    *engine = g_engine;
    return MG_OK;
}

#define DNNL_TRY(call)                                                                                       \
    do {                                                                                                     \
        dnnl_status_t st_ = (call);                                                                          \
        if (st_ != dnnl_success)                                                                             \
            return MG_FAIL(MG_ERR_INTERNAL, "conv2d (oneDNN): %s failed with status %d", #call, (int)st_);   \
    } while (0)

static size_t align_up(size_t v) { return (v + MG_WS_ALIGN - 1) / MG_WS_ALIGN * MG_WS_ALIGN; }

/* Per-op, per-shape layout choice when the caller asks for AUTO, from `bench_ops --layout both
 * --clock cpu` on all ResNet-50 shapes at batch 8, 1 and 2 threads (docs/PERFORMANCE.md,
 * "Convolutions"; PQ = output height x width):
 *  - 1x1: a plain 1x1 convolution is one GEMM per image; oneDNN's gemm kernel reaches 90-96% of
 *    peak while the output plane is large, where the blocked kernels lose 10-40% to the reorders of
 *    x and y. With small planes (PQ <= 49, ResNet stage 4) or a strided 1x1 (which the gemm path
 *    must first gather) the blocked kernels win by 15-45%. Backward weights: plain wins almost
 *    everywhere on these shapes; below them (PQ <= 16) blocked wins by far (see the rule). Backward
 *    data: plain only for PQ > 196.
 *  - Larger kernels (3x3, the 7x7 stem): the blocked direct kernels beat plain im2col+gemm by
 *    1.1-1.6x for forward and backward data, reorders included; backward weights too, except for
 *    small outputs (PQ <= 49) where the blocked kernel's reduction dominates and plain is 1.2-1.4x
 *    faster. The stem's backward data (3 input channels; never needed in training) is 3.5x faster
 *    plain.
 * The environment variable MG_CONV_LAYOUT=plain|blocked overrides this for experiments. */
static mg_conv2d_layout choose_layout(const mg_conv2d_desc *d, int p, int q, int which) {
    const char *e = getenv("MG_CONV_LAYOUT");
    if (e && !strcmp(e, "plain")) return MG_CONV2D_LAYOUT_PLAIN;
    if (e && !strcmp(e, "blocked")) return MG_CONV2D_LAYOUT_BLOCKED;
    const long pq = (long)p * q;
    const int unit_stride = d->stride_h == 1 && d->stride_w == 1;
    const mg_conv2d_layout P = MG_CONV2D_LAYOUT_PLAIN, B = MG_CONV2D_LAYOUT_BLOCKED;
    if (d->r == 1 && d->s == 1) {
        if (which == OP_FWD) return unit_stride && pq >= 196 ? P : B;
        if (which == OP_BWD_DATA) return pq > 196 ? P : B;
        /* Plain backward weights is a sum of per-image products of rank PQ. At PQ <= 16 (ResNet-18
         * at a 32x32 input: the strided downsamples, and the 1x1 live window of stage 4's 3x3
         * convolutions) it ran 6-40x slower than the blocked jit_1x1 kernel (ONEDNN_VERBOSE, batch
         * 192: 512->512 on 1x1 132 ms vs 1.8 ms, 64->128/2 on 8x8 8.4 ms vs 0.4 ms). */
        return pq <= 16 ? B : P;
    }
    /* (A former rule sent backward weights of maps of 7x7 or smaller to the plain layout, measured on
     * ResNet-50 at batch 8; at the small maps of ResNet-18 at 32x32 with batch 96, plain ran 1.2x to
     * 7x slower there (bench: /tmp-style per-shape timing in docs/PERFORMANCE.md), so blocked it is.) */
    if (which == OP_BWD_DATA && d->groups == 1 && d->c < 8) return P;
    return B;
}

/* Winograd F(4x4, 3x3) for 3x3 stride-1 convolutions with an output of at least 4x4, in the blocked
 * layout. oneDNN's (AVX-512) kernels run the backward passes (data and weights): 1.3-1.9x the direct
 * kernels on ResNet-50's layer1-3 shapes (bench_ops, docs/PERFORMANCE.md); at 7x7 (layer4) backward
 * data loses ~8 % but backward weights gains ~40 %, so the rule stays simple. oneDNN's forward stays
 * direct: in training its Winograd rounding passes through batch statistics and cancelling sums such
 * as BN-bias gradients, and the step-for-step PyTorch comparison (tests/integration/test_fidelity.sh)
 * then moved a whole-network update by 1.5 % (its tolerance is 1 %; 0.25 % with Winograd in backward
 * only, 0.07 % all direct). Where oneDNN has no Winograd (AVX2-only CPUs), our kernels (wino_avx2.c,
 * own_wino_wanted) run all three passes: with them the same check measures 0.41 % with the forward
 * too, against 0.63 % with the forward direct (docs/ops.md, "Winograd in training"); on AVX-512 CPUs
 * our kernel runs the forward on nChw16c (own_wino_wanted), with the same 0.41 %. Inference has
 * its own Winograd forward in the fused network (ops_fused.h). MG_CONV_WINOGRAD=0 turns Winograd off;
 * a 3-character mask such as "111" picks it per op (forward, backward data, backward weights), for
 * oneDNN's kernels and ours alike. */
static int winograd_shape(const mg_conv2d_plan *plan, mg_conv2d_layout layout) {
    const mg_conv2d_desc *d = &plan->d;
    return layout == MG_CONV2D_LAYOUT_BLOCKED && d->r == 3 && d->s == 3 && d->stride_h == 1 && d->stride_w == 1 &&
           d->dil_h == 1 && d->dil_w == 1 && d->groups == 1 && plan->p >= 4 && plan->q >= 4;
}

/* Whether MG_CONV_WINOGRAD lets op `which` use Winograd; `dflt` without a setting. */
static int winograd_allowed(int which, int dflt) {
    const char *e = getenv("MG_CONV_WINOGRAD");
    if (e && !strcmp(e, "0")) return 0;
    if (e && strlen(e) == 3) return e[which] == '1';
    return dflt;
}

/* oneDNN's Winograd for op `which` (above: the backward passes by default). */
static int choose_winograd(const mg_conv2d_plan *plan, mg_conv2d_layout layout, int which) {
    return winograd_allowed(which, which != OP_FWD) && winograd_shape(plan, layout);
}

/* Sets up one argument: `user_md` is the caller's plain layout, `prim_md` the one the primitive
 * wants. Inputs and plain outputs that already match use the caller's memory directly. */
static mg_status arg_init(mg_dnnl_arg *a, int arg, int dir, const dnnl_memory_desc_t *user_md,
                          const dnnl_memory_desc_t *prim_md, size_t *ws_off) {
    a->arg = arg;
    a->dir = dir;
    DNNL_TRY(dnnl_memory_create(&a->user, user_md, g_engine, DNNL_MEMORY_NONE));
    if (dir != ARG_OUT_ACC && dnnl_memory_desc_equal(user_md, prim_md)) return MG_OK;
    DNNL_TRY(dnnl_memory_create(&a->inner, prim_md, g_engine, DNNL_MEMORY_NONE));
    a->bytes = dnnl_memory_desc_get_size(prim_md);
    a->off = *ws_off;
    *ws_off += align_up(a->bytes);
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    dnnl_primitive_desc_t rpd = NULL;
    dnnl_status_t st = dnnl_success;
    if (dir == ARG_OUT_ACC) {
        st = dnnl_primitive_attr_create(&attr);
        if (st == dnnl_success) st = dnnl_post_ops_create(&po);
        if (st == dnnl_success) st = dnnl_post_ops_append_sum(po, 1.0f);
        if (st == dnnl_success) st = dnnl_primitive_attr_set_post_ops(attr, po);
    }
    if (st == dnnl_success) {
        if (dir == ARG_IN)
            st = dnnl_reorder_primitive_desc_create(&rpd, user_md, g_engine, prim_md, g_engine, attr);
        else
            st = dnnl_reorder_primitive_desc_create(&rpd, prim_md, g_engine, user_md, g_engine, attr);
    }
    if (st == dnnl_success) st = dnnl_primitive_create(&a->reorder, rpd);
    if (rpd) dnnl_primitive_desc_destroy(rpd);
    if (po) dnnl_post_ops_destroy(po);
    if (attr) dnnl_primitive_attr_destroy(attr);
    if (st != dnnl_success)
        return MG_FAIL(MG_ERR_INTERNAL,
                       "conv2d (oneDNN): creating a reorder for argument %d failed (status %d)", arg,
                       (int)st);
    return MG_OK;
}

/* Creates the primitive of `op` from its op descriptor and its arguments from the pd's layouts.
 * roles[i] = {DNNL_ARG_*, dir, dnnl_query_* for the pd's md}; user_mds[i] = the caller's layout. */
typedef struct {
    int arg, dir;
    dnnl_query_t query;
    int index; /* the bias is weights/diff_weights md number 1 */
    const dnnl_memory_desc_t *user_md;
} mg_dnnl_role;

static mg_status op_init(mg_dnnl_op *op, const dnnl_convolution_desc_t *cd, const_dnnl_primitive_desc_t hint,
                         const mg_dnnl_role *roles, int nroles) {
    dnnl_primitive_attr_t attr = NULL;
    DNNL_TRY(dnnl_primitive_attr_create(&attr));
    dnnl_status_t st = dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
    if (st == dnnl_success) st = dnnl_primitive_desc_create(&op->pd, cd, attr, g_engine, hint);
    dnnl_primitive_attr_destroy(attr);
    if (st != dnnl_success)
        return MG_FAIL(MG_ERR_INTERNAL,
                       "conv2d (oneDNN): no convolution implementation for this shape (status %d)", (int)st);
    DNNL_TRY(dnnl_primitive_create(&op->prim, op->pd));
    const char *impl = "";
    if (dnnl_primitive_desc_query(op->pd, dnnl_query_impl_info_str, 0, &impl) == dnnl_success && impl)
        snprintf(op->name, sizeof op->name, "%s", impl);
    size_t off = 0;
    op->nargs = nroles;
    for (int i = 0; i < nroles; i++) {
        const dnnl_memory_desc_t *pmd = dnnl_primitive_desc_query_md(op->pd, roles[i].query, roles[i].index);
        if (!pmd)
            return MG_FAIL(MG_ERR_INTERNAL, "conv2d (oneDNN): query of argument %d failed", roles[i].arg);
        MG_TRY(arg_init(&op->a[i], roles[i].arg, roles[i].dir, roles[i].user_md, pmd, &off));
    }
    const dnnl_memory_desc_t *smd = dnnl_primitive_desc_query_md(op->pd, dnnl_query_scratchpad_md, 0);
    size_t sbytes = smd ? dnnl_memory_desc_get_size(smd) : 0;
    if (sbytes > 0) {
        DNNL_TRY(dnnl_memory_create(&op->scratch, smd, g_engine, DNNL_MEMORY_NONE));
        op->scratch_off = off;
        off += align_up(sbytes);
    }
    op->ws_bytes = off;
    op->nexec = 0;
    for (int i = 0; i < nroles; i++) {
        op->exec[op->nexec].arg = op->a[i].arg;
        op->exec[op->nexec].memory = op->a[i].inner ? op->a[i].inner : op->a[i].user;
        op->nexec++;
    }
    if (op->scratch) {
        op->exec[op->nexec].arg = DNNL_ARG_SCRATCHPAD;
        op->exec[op->nexec].memory = op->scratch;
        op->nexec++;
    }
    return MG_OK;
}

static void op_free(mg_dnnl_op *op) {
    for (int i = 0; i < op->nargs; i++) {
        mg_dnnl_arg *a = &op->a[i];
        if (a->reorder) dnnl_primitive_destroy(a->reorder);
        if (a->inner) dnnl_memory_destroy(a->inner);
        if (a->user) dnnl_memory_destroy(a->user);
    }
    if (op->scratch) dnnl_memory_destroy(op->scratch);
    if (op->prim) dnnl_primitive_destroy(op->prim);
    if (op->pd) dnnl_primitive_desc_destroy(op->pd);
    memset(op, 0, sizeof *op);
}

/* True if oneDNN fell back to its slow reference kernel ("ref:any"). */
static int op_is_ref(const mg_dnnl_op *op) { return !strncmp(op->name, "ref", 3); }

int mg_dnnl_impl_is_generic(const char *impl) { return impl && (strstr(impl, "ref") || strstr(impl, "gemm")); }

/* The memory descriptors of one plan: the caller's plain ones and, per layout, what the primitive
 * is asked for. */
typedef struct {
    dnnl_memory_desc_t x_u, y_u, w_u, b_u;  /* the caller's: nchw (or nChw<B>c, plan->x_block/y_block),
                                             * nchw, oihw/goihw, x */
    dnnl_memory_desc_t x_any, y_any, w_any; /* what a blocked op asks for: "any", or the caller's
                                             * blocked layout when it has one (then no reorder) */
    dnnl_dims_t strides, dil, pad;
} mg_dnnl_mds;

dnnl_format_tag_t mg_dnnl_block_tag(int block) {
    return block == 16 ? dnnl_aBcd16b : block == 8 ? dnnl_aBcd8b : block == 4 ? dnnl_aBcd4b : dnnl_nchw;
}

int mg_conv2d_blocked_channels(void) {
    dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    if ((isa & dnnl_cpu_isa_avx512_core) == dnnl_cpu_isa_avx512_core) return 16;
    if ((isa & dnnl_cpu_isa_avx2) == dnnl_cpu_isa_avx2) return 8;
    return 0;
}

/* force: a blocked op asks for the caller's blocked layout itself (0: "any", oneDNN's choice) */
static mg_status mds_init(const mg_conv2d_plan *plan, mg_dnnl_mds *m, int force) {
    const mg_conv2d_desc *d = &plan->d;
    const int g = d->groups;
    dnnl_dims_t xdims = {d->n, d->c, d->h, d->w};
    dnnl_dims_t ydims = {d->n, d->k, plan->p, plan->q};
    dnnl_dims_t wdims = {d->k, d->c, d->r, d->s};
    dnnl_dims_t gwdims = {g, d->k / g, d->c / g, d->r, d->s};
    dnnl_dims_t bdims = {d->k};
    const int wnd = g > 1 ? 5 : 4;
    const dnnl_dim_t *wd = g > 1 ? gwdims : wdims;
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&m->x_u, 4, xdims, dnnl_f32, mg_dnnl_block_tag(plan->x_block)));
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&m->y_u, 4, ydims, dnnl_f32, mg_dnnl_block_tag(plan->y_block)));
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&m->w_u, wnd, wd, dnnl_f32, g > 1 ? dnnl_goihw : dnnl_oihw));
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&m->b_u, 1, bdims, dnnl_f32, dnnl_a));
    const dnnl_format_tag_t x_ask = force && plan->x_block ? mg_dnnl_block_tag(plan->x_block) : dnnl_format_tag_any;
    const dnnl_format_tag_t y_ask = force && plan->y_block ? mg_dnnl_block_tag(plan->y_block) : dnnl_format_tag_any;
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&m->x_any, 4, xdims, dnnl_f32, x_ask));
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&m->y_any, 4, ydims, dnnl_f32, y_ask));
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&m->w_any, wnd, wd, dnnl_f32, dnnl_format_tag_any));
    m->strides[0] = d->stride_h, m->strides[1] = d->stride_w;
    m->dil[0] = d->dil_h - 1, m->dil[1] = d->dil_w - 1; /* oneDNN counts dilation from 0 */
    m->pad[0] = d->pad_h, m->pad[1] = d->pad_w;
    return MG_OK;
}

static mg_status fwd_desc(const mg_conv2d_plan *plan, const mg_dnnl_mds *m, mg_conv2d_layout layout,
                          dnnl_alg_kind_t alg, dnnl_convolution_desc_t *cd) {
    const int blk = layout == MG_CONV2D_LAYOUT_BLOCKED;
    DNNL_TRY(dnnl_dilated_convolution_forward_desc_init(
        cd, dnnl_forward_training, alg, blk ? &m->x_any : &m->x_u,
        blk ? &m->w_any : &m->w_u, plan->d.has_bias ? &m->b_u : NULL, blk ? &m->y_any : &m->y_u, m->strides,
        m->dil, m->pad, m->pad));
    return MG_OK;
}

/* Backward data of a 1x1 convolution (c -> k channels, no padding) as a forward 1x1 convolution of
 * k -> c channels with the weights transposed, dx[c] = sum over k of W[k][c] dy[k]; in the blocked
 * layout. Returns BWDD_NATIVE (oneDNN's backward-data kernel), BWDD_FORWARD or BWDD_FORWARD_TO_EVEN:
 *  - stride 1: on AVX2 (Zen 3), oneDNN's jit_1x1 forward kernel ran it 1.1-1.8x faster than its
 *    backward-data kernel on every ResNet-50 1x1 stride-1 shape at batch 16 whose dx has 128 to 1024
 *    channels; at 64 (64 -> 64 and 64 -> 256 on 56x56) and 2048 (2048 -> 512 on 7x7) the
 *    backward-data kernel was as fast or faster (bench_ops --layout chain).
 *  - stride 2 (a bottleneck's downsample), on caller buffers blocked alike: dx is zero except at the
 *    even positions, so the forward writes a dense half-size buffer at the end of the workspace and
 *    one pass writes dx from it (scatter_even_positions below); oneDNN's backward-data kernel ran
 *    these at 54-64 GFLOP/s in the training step.
 * docs/PERFORMANCE.md, "Zen 3, the next session". MG_CONV_1X1_BWD_FWD=0 turns both off; =1 takes the
 * forward for every 1x1 stride-1 convolution (experiments). */
enum { BWDD_NATIVE = 0, BWDD_FORWARD = 1, BWDD_FORWARD_TO_EVEN = 2 };

static int bwd_data_kind(const mg_conv2d_plan *plan, mg_conv2d_layout layout) {
    const mg_conv2d_desc *d = &plan->d;
    if (layout != MG_CONV2D_LAYOUT_BLOCKED || d->r != 1 || d->s != 1 || d->pad_h != 0 || d->pad_w != 0 ||
        d->dil_h != 1 || d->dil_w != 1 || d->groups != 1 || d->stride_h != d->stride_w)
        return BWDD_NATIVE;
    const char *e = getenv("MG_CONV_1X1_BWD_FWD");
    if (e && e[0] == '0') return BWDD_NATIVE;
    if (d->stride_h == 2)
        return plan->x_block && plan->x_block == plan->y_block ? BWDD_FORWARD_TO_EVEN : BWDD_NATIVE;
    if (d->stride_h != 1) return BWDD_NATIVE;
    return (e && e[0] == '1') || (d->c >= 128 && d->c <= 1024) ? BWDD_FORWARD : BWDD_NATIVE;
}

/* The op of BWDD_FORWARD (to_even 0) and BWDD_FORWARD_TO_EVEN (to_even 1): a forward
 * convolution from dy (n x k x p x q) whose weights argument is the caller's OIHW k x c array read as
 * c x k x 1 x 1 with strides (1, c), so the reorder into the kernel's blocked weights, run every call,
 * transposes it. Its output is dx (n x c x h x w), or for to_even a dense n x c x p x q buffer at the
 * end of the op's workspace that scatter_even_positions then spreads into dx. */
static mg_status bwd_data_forward_build(const mg_conv2d_plan *plan, mg_dnnl_state *st, const mg_dnnl_mds *m,
                                        int to_even) {
    const mg_conv2d_desc *d = &plan->d;
    dnnl_dims_t wdims = {d->c, d->k, 1, 1}, wstrides = {1, d->c, 1, 1}, one = {1, 1}, zero = {0, 0};
    dnnl_dims_t tdims = {d->n, d->c, plan->p, plan->q};
    dnnl_memory_desc_t wt_u, wt_any, t_md;
    DNNL_TRY(dnnl_memory_desc_init_by_strides(&wt_u, 4, wdims, dnnl_f32, wstrides));
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&wt_any, 4, wdims, dnnl_f32, dnnl_format_tag_any));
    if (to_even)
        DNNL_TRY(dnnl_memory_desc_init_by_tag(&t_md, 4, tdims, dnnl_f32, mg_dnnl_block_tag(plan->x_block)));
    dnnl_convolution_desc_t cd;
    DNNL_TRY(dnnl_convolution_forward_desc_init(&cd, dnnl_forward_inference, dnnl_convolution_direct, &m->y_any,
                                                &wt_any, NULL, to_even ? &t_md : &m->x_any, one, zero, zero));
    const mg_dnnl_role roles[] = {
        {DNNL_ARG_SRC, ARG_IN, dnnl_query_src_md, 0, &m->y_u},
        {DNNL_ARG_WEIGHTS, ARG_IN, dnnl_query_weights_md, 0, &wt_u},
        {DNNL_ARG_DST, ARG_OUT, dnnl_query_dst_md, 0, to_even ? &t_md : &m->x_u},
    };
    mg_dnnl_op *op = &st->op[OP_BWD_DATA];
    MG_TRY(op_init(op, &cd, NULL, roles, 3));
    size_t len = strlen(op->name);
    snprintf(op->name + len, sizeof op->name - len, to_even ? " (forward, W^T, to even positions)" : " (forward, W^T)");
    if (to_even) {
        st->bwdd_scatter = 1;
        st->bwdd_tmp_off = op->ws_bytes;
        op->ws_bytes += align_up(dnnl_memory_desc_get_size(&t_md));
    }
    return MG_OK;
}

/* dx (n x c x h x w, nChw<B>c) from the half-size t (n x c x p x q, nChw<B>c): dx at (2i, 2j) = t at
 * (i, j), zero elsewhere. Parallel over rows of dx. */
typedef struct {
    const mg_conv2d_plan *plan;
    const float *t;
    float *dx;
} scatter_job;

static void scatter_rows(void *ctx, size_t r0, size_t r1) {
    const scatter_job *j = ctx;
    const mg_conv2d_desc *d = &j->plan->d;
    const int B = j->plan->x_block, H = d->h, W = d->w, P = j->plan->p, Q = j->plan->q;
    for (size_t r = r0; r < r1; r++) { /* r = (n * c / B + cb) * H + y */
        const int y = (int)(r % (size_t)H);
        const size_t plane = r / (size_t)H;
        float *o = j->dx + r * (size_t)W * B;
        if (y % 2) { /* no padding, stride 2: even y is row y / 2 < P of t, even x column x / 2 < Q */
            memset(o, 0, (size_t)W * B * sizeof *o);
            continue;
        }
        const float *t = j->t + (plane * P + (size_t)(y / 2)) * Q * B;
        for (int x = 0; x < W; x++, o += B) {
            if (x % 2 == 0)
                memcpy(o, t + (size_t)(x / 2) * B, (size_t)B * sizeof *o);
            else
                memset(o, 0, (size_t)B * sizeof *o);
        }
    }
}

static void scatter_even_positions(const mg_conv2d_plan *plan, const float *t, float *dx) {
    scatter_job j = {plan, t, dx};
    const mg_conv2d_desc *d = &plan->d;
    mg_layers_parallel_for((size_t)d->n * (d->c / plan->x_block) * d->h, 16, scatter_rows, &j);
}

/* Builds op `which` in `layout`. Backward ops need a forward pd as a hint: the plan's own when the
 * layouts agree, otherwise a temporary one in the backward op's layout. */
static mg_status op_build(const mg_conv2d_plan *plan, mg_dnnl_state *st, const mg_dnnl_mds *m, int which,
                          mg_conv2d_layout layout, dnnl_alg_kind_t alg) {
    const int blk = layout == MG_CONV2D_LAYOUT_BLOCKED;
    const dnnl_memory_desc_t *x_p = blk ? &m->x_any : &m->x_u, *y_p = blk ? &m->y_any : &m->y_u;
    const dnnl_memory_desc_t *w_p = blk ? &m->w_any : &m->w_u;
    const int nb = plan->d.has_bias ? 4 : 3;
    dnnl_convolution_desc_t cd;
    if (which == OP_FWD) {
        MG_TRY(fwd_desc(plan, m, layout, alg, &cd));
        const mg_dnnl_role roles[] = {
            {DNNL_ARG_SRC, ARG_IN, dnnl_query_src_md, 0, &m->x_u},
            {DNNL_ARG_WEIGHTS, ARG_IN, dnnl_query_weights_md, 0, &m->w_u},
            {DNNL_ARG_DST, ARG_OUT, dnnl_query_dst_md, 0, &m->y_u},
            {DNNL_ARG_BIAS, ARG_IN, dnnl_query_weights_md, 1, &m->b_u},
        };
        return op_init(&st->op[OP_FWD], &cd, NULL, roles, nb);
    }
    if (which == OP_BWD_DATA) {
        st->bwdd_scatter = 0;
        const int kind = alg == dnnl_convolution_direct ? bwd_data_kind(plan, layout) : BWDD_NATIVE;
        if (kind != BWDD_NATIVE) return bwd_data_forward_build(plan, st, m, kind == BWDD_FORWARD_TO_EVEN);
    }
    dnnl_primitive_desc_t hint = NULL;
    if (layout != st->op_layout[OP_FWD] || alg != st->op_alg[OP_FWD]) {
        dnnl_convolution_desc_t fcd;
        MG_TRY(fwd_desc(plan, m, layout, alg, &fcd));
        DNNL_TRY(dnnl_primitive_desc_create(&hint, &fcd, NULL, g_engine, NULL));
    }
    const_dnnl_primitive_desc_t h = hint ? hint : st->op[OP_FWD].pd;
    mg_status s;
    if (which == OP_BWD_DATA) {
        dnnl_status_t ds = dnnl_dilated_convolution_backward_data_desc_init(
            &cd, alg, x_p, w_p, y_p, m->strides, m->dil, m->pad, m->pad);
        const mg_dnnl_role roles[] = {
            {DNNL_ARG_DIFF_DST, ARG_IN, dnnl_query_diff_dst_md, 0, &m->y_u},
            {DNNL_ARG_WEIGHTS, ARG_IN, dnnl_query_weights_md, 0, &m->w_u},
            {DNNL_ARG_DIFF_SRC, ARG_OUT, dnnl_query_diff_src_md, 0, &m->x_u},
        };
        s = ds == dnnl_success
                ? op_init(&st->op[OP_BWD_DATA], &cd, h, roles, 3)
                : MG_FAIL(MG_ERR_INTERNAL, "conv2d (oneDNN): backward data desc failed (%d)", (int)ds);
    } else {
        dnnl_status_t ds = dnnl_dilated_convolution_backward_weights_desc_init(
            &cd, alg, x_p, w_p, plan->d.has_bias ? &m->b_u : NULL, y_p, m->strides,
            m->dil, m->pad, m->pad);
        const mg_dnnl_role roles[] = {
            {DNNL_ARG_SRC, ARG_IN, dnnl_query_src_md, 0, &m->x_u},
            {DNNL_ARG_DIFF_DST, ARG_IN, dnnl_query_diff_dst_md, 0, &m->y_u},
            {DNNL_ARG_DIFF_WEIGHTS, ARG_OUT_ACC, dnnl_query_diff_weights_md, 0, &m->w_u},
            {DNNL_ARG_DIFF_BIAS, ARG_OUT_ACC, dnnl_query_diff_weights_md, 1, &m->b_u},
        };
        s = ds == dnnl_success
                ? op_init(&st->op[OP_BWD_WEIGHTS], &cd, h, roles, nb)
                : MG_FAIL(MG_ERR_INTERNAL, "conv2d (oneDNN): backward weights desc failed (%d)", (int)ds);
    }
    if (hint) dnnl_primitive_desc_destroy(hint);
    return s;
}

/* ---------------------------------------------------------------------------------------------- */

/* The passes of a 3x3 stride-1 convolution that run our F(4x4) kernels (wino_avx2.c) on the caller's
 * blocked buffers in place of oneDNN's direct kernels, where mg_wino4_applies (the fused network's rule
 * too) and, for forward and backward weights, without bias: on AVX2 (nChw8c, where oneDNN has no
 * Winograd) forward, backward data and backward weights; on AVX-512 (nChw16c) the passes oneDNN's
 * Winograd does not run, by default the forward only (backward weights' dy loads are nChw8c only).
 * That forward runs faster than oneDNN's direct AVX-512 kernel both where 16-wide FMAs split in
 * halves (Zen 4) and where they are full width (Zen 5): Winograd's 4x fewer multiplications outweigh
 * the 8-wide vectors (docs/ops.md, "Winograd in training"). MG_CONV_OWN_WINO=0 keeps oneDNN's kernels
 * (for comparison). */
static int own_wino_wanted(const mg_conv2d_plan *plan, const mg_dnnl_state *st, int which) {
    const mg_conv2d_desc *d = &plan->d;
    const char *e = getenv("MG_CONV_OWN_WINO");
    if (e && e[0] == '0') return 0;
    /* nChw8c; nChw16c for the passes mg_wino4_forward runs */
    const int blk = plan->x_block;
    if (blk == 16 ? which == OP_BWD_WEIGHTS : blk != 8) return 0;
    if (!winograd_allowed(which, 1) || !winograd_shape(plan, st->op_layout[which]) ||
        st->op_alg[which] == dnnl_convolution_winograd)
        return 0;
    if (plan->y_block != blk || d->c % blk || d->k % blk || d->pad_h != 1 || d->pad_w != 1 || plan->p != d->h ||
        plan->q != d->w)
        return 0;
    if (which != OP_BWD_DATA && d->has_bias) return 0;
    return which == OP_BWD_DATA ? mg_wino4_applies(d->n, d->k, d->c, d->h, d->w)
                                : mg_wino4_applies(d->n, d->c, d->k, d->h, d->w);
}

mg_status mg_conv2d_dnnl_init(mg_conv2d_plan *plan) {
    dnnl_engine_t engine;
    MG_TRY(mg_dnnl_engine(&engine));
    /* oneDNN fixes a primitive's thread count when it is created (and keys its primitive cache on
     * it): the plan runs on the thread count current now (see threads rule above). */
    mg_omp_apply_threads();
    mg_dnnl_state *st = calloc(1, sizeof *st);
    if (!st) return MG_FAIL(MG_ERR_NOMEM, "conv2d (oneDNN): out of memory for a plan");
    plan->impl = st;
    DNNL_TRY(dnnl_stream_create(&st->stream, g_engine, dnnl_stream_default_flags));
    mg_dnnl_mds m, m_any;
    MG_TRY(mds_init(plan, &m, 1));
    MG_TRY(mds_init(plan, &m_any, 0));
    /* Blocked caller buffers: every op blocked (the plain kernels would need reorders both ways);
     * MG_CONV_LAYOUT=plain still forces plain ops, for experiments. */
    const int io_blocked = plan->x_block || plan->y_block;
    const char *env = getenv("MG_CONV_LAYOUT");
    const int all_blocked = io_blocked && !(env && !strcmp(env, "plain"));
    for (int i = 0; i < OP_COUNT; i++) {
        mg_conv2d_layout layout = plan->layout != MG_CONV2D_LAYOUT_AUTO ? plan->layout
                                  : all_blocked ? MG_CONV2D_LAYOUT_BLOCKED
                                                : choose_layout(&plan->d, plan->p, plan->q, i);
        dnnl_alg_kind_t alg = choose_winograd(plan, layout, i) ? dnnl_convolution_winograd : dnnl_convolution_direct;
        st->op_layout[i] = layout;
        st->op_alg[i] = alg;
        mg_status s = op_build(plan, st, &m, i, layout, alg);
        if (alg == dnnl_convolution_winograd && s != MG_OK) {
            /* no Winograd kernel for this shape on this CPU: direct */
            op_free(&st->op[i]);
            mg_error_clear();
            st->op_alg[i] = alg = dnnl_convolution_direct;
            s = op_build(plan, st, &m, i, layout, alg);
        }
        /* Blocked caller buffers: if the caller's layout gets only a generic kernel (gemm or ref),
         * let oneDNN choose the layout (with reorders) instead. */
        if (io_blocked && layout == MG_CONV2D_LAYOUT_BLOCKED &&
            (s != MG_OK || mg_dnnl_impl_is_generic(st->op[i].name))) {
            op_free(&st->op[i]);
            mg_error_clear();
            s = op_build(plan, st, &m_any, i, layout, alg);
        }
        /* oneDNN has no optimised plain-layout kernel for some shapes and then runs its slow
         * reference kernel ("ref:any"): the blocked layout is always at least as fast there. */
        if (plan->layout == MG_CONV2D_LAYOUT_AUTO && layout == MG_CONV2D_LAYOUT_PLAIN &&
            (s != MG_OK || op_is_ref(&st->op[i]))) {
            op_free(&st->op[i]);
            mg_error_clear();
            st->op_layout[i] = MG_CONV2D_LAYOUT_BLOCKED;
            s = op_build(plan, st, &m, i, MG_CONV2D_LAYOUT_BLOCKED, alg);
        }
        if (s != MG_OK) return s; /* the caller frees the partial state */
    }
    st->threads = mg_ops_get_threads();
    /* our kernels in place of the direct primitives, which are freed unused */
    const mg_conv2d_desc *d = &plan->d;
    for (int i = 0; i < OP_COUNT; i++) {
        if (!own_wino_wanted(plan, st, i)) continue;
        MG_TRY((i == OP_FWD        ? mg_wino4_init_fwd_scratch
                : i == OP_BWD_DATA ? mg_wino4_init_bwd_data
                                   : mg_wino4_init_bwd_weights)(&st->own[i], d->n, d->c, d->k, d->h, d->w));
        if (i != OP_BWD_WEIGHTS) MG_TRY(mg_wino4_set_block(st->own[i], plan->x_block));
        op_free(&st->op[i]);
        st->op[i].ws_bytes = mg_wino4_scratch_bytes(st->own[i], st->threads);
        snprintf(st->op[i].name, sizeof st->op[i].name, "ours:wino_avx2");
    }
    size_t ws = 0;
    for (int i = 0; i < OP_COUNT; i++)
        if (st->op[i].ws_bytes > ws) ws = st->op[i].ws_bytes;
    plan->ws_bytes = ws;
    return MG_OK;
}

void mg_conv2d_dnnl_free(mg_conv2d_plan *plan) {
    mg_dnnl_state *st = plan->impl;
    if (!st) return;
    for (int i = 0; i < OP_COUNT; i++) {
        op_free(&st->op[i]);
        mg_wino4_free(st->own[i]);
    }
    if (st->stream) dnnl_stream_destroy(st->stream);
    free(st);
    plan->impl = NULL;
}

mg_status mg_conv2d_dnnl_bind_workspace(mg_conv2d_plan *plan) {
    mg_dnnl_state *st = plan->impl;
    char *ws = plan->ws;
    for (int i = 0; i < OP_COUNT; i++) {
        mg_dnnl_op *op = &st->op[i];
        for (int j = 0; j < op->nargs; j++)
            if (op->a[j].inner) DNNL_TRY(dnnl_memory_set_data_handle(op->a[j].inner, ws + op->a[j].off));
        if (op->scratch) DNNL_TRY(dnnl_memory_set_data_handle(op->scratch, ws + op->scratch_off));
    }
    return MG_OK;
}

/* Runs one op on the caller's buffers ptr[i] (in the order of the op's roles). */
static mg_status op_run(mg_dnnl_state *st, mg_dnnl_op *op, void *const *ptr) {
    mg_omp_apply_threads();
    for (int i = 0; i < op->nargs; i++) DNNL_TRY(dnnl_memory_set_data_handle(op->a[i].user, ptr[i]));
    for (int i = 0; i < op->nargs; i++) {
        const mg_dnnl_arg *a = &op->a[i];
        if (a->dir != ARG_IN || !a->reorder) continue;
        dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, a->user}, {DNNL_ARG_TO, a->inner}};
        DNNL_TRY(dnnl_primitive_execute(a->reorder, st->stream, 2, args));
    }
    DNNL_TRY(dnnl_primitive_execute(op->prim, st->stream, op->nexec, op->exec));
    for (int i = 0; i < op->nargs; i++) {
        const mg_dnnl_arg *a = &op->a[i];
        if (a->dir == ARG_IN || !a->reorder) continue;
        dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, a->inner}, {DNNL_ARG_TO, a->user}};
        DNNL_TRY(dnnl_primitive_execute(a->reorder, st->stream, 2, args));
    }
    DNNL_TRY(dnnl_stream_wait(st->stream));
    return MG_OK;
}

mg_status mg_conv2d_dnnl_forward(mg_conv2d_plan *plan, const float *x, const float *w, const float *b,
                                 float *y) {
    mg_dnnl_state *st = plan->impl;
    if (st->own[OP_FWD]) { /* no bias (own_wino_wanted) */
        mg_wino4_set_weights_scratch(st->own[OP_FWD], w, plan->ws, st->threads);
        mg_wino4_forward(st->own[OP_FWD], x, y, 0, 0, plan->ws, st->threads);
        return MG_OK;
    }
    void *ptr[4] = {(void *)x, (void *)w, y, (void *)b};
    return op_run(st, &st->op[OP_FWD], ptr);
}

mg_status mg_conv2d_dnnl_backward_data(mg_conv2d_plan *plan, const float *dy, const float *w, float *dx) {
    mg_dnnl_state *st = plan->impl;
    if (st->own[OP_BWD_DATA]) {
        mg_wino4_set_weights_scratch(st->own[OP_BWD_DATA], w, plan->ws, st->threads);
        mg_wino4_forward(st->own[OP_BWD_DATA], dy, dx, 0, 0, plan->ws, st->threads);
        return MG_OK;
    }
    if (st->bwdd_scatter) {
        float *t = (float *)((char *)plan->ws + st->bwdd_tmp_off);
        void *ptr[3] = {(void *)dy, (void *)w, t};
        MG_TRY(op_run(st, &st->op[OP_BWD_DATA], ptr));
        scatter_even_positions(plan, t, dx);
        return MG_OK;
    }
    void *ptr[3] = {(void *)dy, (void *)w, dx};
    return op_run(st, &st->op[OP_BWD_DATA], ptr);
}

mg_status mg_conv2d_dnnl_backward_weights(mg_conv2d_plan *plan, const float *x, const float *dy, float *dw,
                                          float *db) {
    mg_dnnl_state *st = plan->impl;
    if (st->own[OP_BWD_WEIGHTS]) { /* no bias (own_wino_wanted) */
        mg_wino4_backward_weights(st->own[OP_BWD_WEIGHTS], x, dy, dw, plan->ws, st->threads);
        return MG_OK;
    }
    void *ptr[4] = {(void *)x, (void *)dy, dw, db};
    return op_run(st, &st->op[OP_BWD_WEIGHTS], ptr);
}

void mg_conv2d_dnnl_op_layouts(const mg_conv2d_plan *plan, mg_conv2d_layout out[3]) {
    const mg_dnnl_state *st = plan->impl;
    for (int i = 0; i < OP_COUNT; i++) out[i] = st ? st->op_layout[i] : MG_CONV2D_LAYOUT_PLAIN;
}

void mg_conv2d_dnnl_kernel_names(const mg_conv2d_plan *plan, const char **fwd, const char **bwd_data,
                                 const char **bwd_weights) {
    const mg_dnnl_state *st = plan->impl;
    *fwd = st ? st->op[OP_FWD].name : "";
    *bwd_data = st ? st->op[OP_BWD_DATA].name : "";
    *bwd_weights = st ? st->op[OP_BWD_WEIGHTS].name : "";
}
