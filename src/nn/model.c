/* model.c: the MultiGrain ResNet (+ GeM + classifier + L2-normalised embedding): parameter
 * arrays addressed by state_dict names, per-shape planning of op plans and activation memory,
 * forward and backward (see include/multigrain/model.h). */
#include "multigrain/model.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/arena.h"
#include "core/hugepage.h"
#include "core/log.h"
#include "core/memplan.h"
#include "core/progress.h"
#include "core/rng.h"
#include "core/threadpool.h"
#include "multigrain/ops_conv.h"
#include "multigrain/ops_fused.h"
#include "multigrain/ops_layers.h"
#include "multigrain/runtime.h"
#include "nn/resnet_spec.h"

/* ---------------------------------------------------------------------------------------------- */
/* Structure */

/* The most streams a fused batch is split into (fused_streams). */
#define FUSED_MAX_STREAMS 16

typedef struct unit { /* conv -> BN (-> ReLU) */
    int conv_w;                                   /* spec index of the conv weight */
    int bn_w, bn_b, bn_rm, bn_rv, bn_cnt;         /* spec indices */
    int c_in, c_out, k, stride, pad;              /* static shape */
    int relu;
    /* per input shape */
    int n, h_in, w_in, h_out, w_out;
    mg_conv2d_plan plan;
    const float *in;
    float *conv_out, *out;                        /* out = BN output, ReLU applied in place */
    float *out_f, *out_b; /* where out is in the forward and in the backward (the same when kept) */
    float *save_mean, *save_invstd;
} unit;

typedef struct block {
    unit u[3];
    int n_units;
    unit ds;
    int has_ds;
    int has_se, se_hidden;
    int se_fc1_w, se_fc1_b, se_fc2_w, se_fc2_b;
    float *se_pool, *se_h, *se_s, *se_ds; /* [n,C], [n,C/16], [n,C], [n,C] */
    const float *in;
    float *out;
    int c_out;
    /* training plan: out_f holds the output in the forward; a dropped output (not kept between
     * forward and backward) is recomputed into out_b when the next block's backward starts, from kept
     * values (rc_tmp: the downsample's BN output meanwhile) */
    int dropped;
    float *out_f, *out_b, *rc_tmp;
    float *g;      /* backward: the gradient w.r.t. the block output */
    float *scr[3]; /* backward: this block's scratch buffers */
} block;

struct mg_model {
    mg_resnet_spec spec;
    char arch[32];
    int bottleneck;
    int dim;      /* GeM dimension D */
    int wdim;     /* whitened: D' (classifier input and embedding width); 0: not whitened */
    float *wh_mean, *wh_P; /* whitened: [D+1], [D+1, D'] (buffers, not trained) */
    bool learn_p;
    /* synchronised BN (data parallel): sums per-channel partial sums over the processes, or NULL */
    mg_allreduce_f64_fn bn_sync;
    void *bn_sync_ctx;
    /* tensors */
    int64_t *offset; /* per spec entry: offset into params (trainable), buffers, or counters */
    float *params, *grads, *buffers;
    int64_t *counters;
    int64_t n_params, n_buffers, n_counters;
    int idx_p, idx_fc_w, idx_fc_b;
    /* network */
    unit stem;
    block *blocks;
    int n_blocks;
    int stage_end[4]; /* index of the last block of each stage */
    /* per-shape state */
    int n, h, w; /* planned input shape (0 = none) */
    mg_arena act;
    void *conv_ws;
    size_t ws_bytes;
    float *stem_pool;
    int32_t *stem_argmax;
    int pool_h, pool_w;
    float *pooled, *logits, *embedding, *dpooled, *tmp_vec;
    float *wh_u, *wh_phi; /* whitened: l2n([e, 1]) - mean [n, D+1], Phi [n, D'] */
    float *scr[3];            /* backward: the scratch buffers of the block (or stem) being differentiated */
    float *g_stem;            /* backward: the gradient w.r.t. the stem's max-pool output */
    float *stem_scr[2];       /* backward: the stem's scratch buffers */
    float *side; /* mg_model_activation: a dropped stage output, recomputed on request, and NCHW copies */
    struct poison_buf {
        float *p;
        size_t elems;
        int first, last;
    } *poison; /* MG_POISON_DEAD=1: the training plan's buffers, filled with NaN outside their lifetimes */
    int n_poison;
    const float *x;
    mg_model_mode mode;
    int have_forward;
    int planned_infer; /* the activation memory is the inference-only plan: 1 per-op, 2 fused */
    int planned_threads; /* mg_ops_get_threads() when planned: oneDNN primitives keep the count they
                          * were created with, so a change of thread count re-plans */
    /* fused inference (ops_fused.h): BN folded into the convolutions, rebuilt when the weights may
     * have changed (version moves whenever writable tensor pointers are handed out) */
    struct fnet_entry {
        mg_fnet *net[FUSED_MAX_STREAMS]; /* one network per stream (fused_streams) */
        int ns;                          /* streams */
        int n, h, w, threads, out_h, out_w;
        uint64_t used;
    } fcache[4]; /* the networks of the last input shapes, sharing their weights (rect-mode inference) */
    struct fnet_entry *fentry; /* the current shape's */
    uint64_t fclock;
    uint64_t version, fnet_version;
    int fused_off;   /* mg_model_set_fused(m, false) or MG_FUSED=0: MG_MODE_INFER runs per op */
    int fused_flags; /* MG_FNET_WINOGRAD */
    int infer_threads_now; /* the thread count inference ran on last (infer_threads) */
    int adapt_off;         /* MG_ADAPT_THREADS=0: the fused network always runs mg_ops_get_threads() */
    int streams_off;       /* MG_STREAMS=0: a batch runs as one fused network on all threads */
    int ncpu;              /* online cores, read once (sysconf reads /sys on every call) */
    int blk; /* the training plan's activation layout: 0 = NCHW, B = nChw<B>c (chain_block) */
    float *fnet_out; /* the trunk's output map, plain NCHW */
    int out_h, out_w;
};

static float *P(mg_model *m, int idx) {
    return m->spec.entries[idx].kind == MG_PARAM_TRAINABLE ? m->params + m->offset[idx]
                                                           : m->buffers + m->offset[idx];
}
static float *G(mg_model *m, int idx) { return m->grads + m->offset[idx]; }

static int find_req(mg_model *m, const char *fmt, const char *prefix, const char *suffix) {
    char name[MG_SPEC_NAME_MAX];
    snprintf(name, sizeof name, fmt, prefix, suffix);
    int i = mg_resnet_spec_find(&m->spec, name);
    MG_ASSERT(i >= 0); /* the spec and this file describe the same network */
    return i;
}

static void unit_setup(mg_model *m, unit *u, const char *conv, const char *bn, int c_in, int c_out, int k,
                       int stride, int relu) {
    memset(u, 0, sizeof *u);
    u->conv_w = find_req(m, "%s%s", conv, ".weight");
    u->bn_w = find_req(m, "%s%s", bn, ".weight");
    u->bn_b = find_req(m, "%s%s", bn, ".bias");
    u->bn_rm = find_req(m, "%s%s", bn, ".running_mean");
    u->bn_rv = find_req(m, "%s%s", bn, ".running_var");
    u->bn_cnt = find_req(m, "%s%s", bn, ".num_batches_tracked");
    u->c_in = c_in;
    u->c_out = c_out;
    u->k = k;
    u->stride = stride;
    u->pad = k / 2;
    u->relu = relu;
}

static void build_network(mg_model *m) {
    static const int layers_cfg[MG_ARCH_COUNT][4] = {
        {2, 2, 2, 2}, {3, 4, 6, 3}, {3, 4, 6, 3}, {3, 4, 23, 3}, {3, 8, 36, 3}, {3, 4, 6, 3}};
    const int *cfg = layers_cfg[m->spec.arch];
    int expansion = m->bottleneck ? 4 : 1;
    unit_setup(m, &m->stem, "conv1", "bn1", 3, 64, 7, 2, 1);
    int total = cfg[0] + cfg[1] + cfg[2] + cfg[3];
    m->blocks = calloc((size_t)total, sizeof *m->blocks);
    MG_ASSERT(m->blocks);
    m->n_blocks = total;
    int in_ch = 64, bi = 0;
    for (int s = 0; s < 4; s++) {
        int planes = 64 << s;
        for (int b = 0; b < cfg[s]; b++, bi++) {
            block *blk = &m->blocks[bi];
            int stride = (s > 0 && b == 0) ? 2 : 1;
            char pre[32], conv[48], bn[48];
            snprintf(pre, sizeof pre, "layer%d.%d", s + 1, b);
            if (m->bottleneck) {
                blk->n_units = 3;
                snprintf(conv, sizeof conv, "%s.conv1", pre);
                snprintf(bn, sizeof bn, "%s.bn1", pre);
                unit_setup(m, &blk->u[0], conv, bn, in_ch, planes, 1, 1, 1);
                snprintf(conv, sizeof conv, "%s.conv2", pre);
                snprintf(bn, sizeof bn, "%s.bn2", pre);
                unit_setup(m, &blk->u[1], conv, bn, planes, planes, 3, stride, 1); /* v1.5 */
                snprintf(conv, sizeof conv, "%s.conv3", pre);
                snprintf(bn, sizeof bn, "%s.bn3", pre);
                unit_setup(m, &blk->u[2], conv, bn, planes, planes * 4, 1, 1, 0);
            } else {
                blk->n_units = 2;
                snprintf(conv, sizeof conv, "%s.conv1", pre);
                snprintf(bn, sizeof bn, "%s.bn1", pre);
                unit_setup(m, &blk->u[0], conv, bn, in_ch, planes, 3, stride, 1);
                snprintf(conv, sizeof conv, "%s.conv2", pre);
                snprintf(bn, sizeof bn, "%s.bn2", pre);
                unit_setup(m, &blk->u[1], conv, bn, planes, planes, 3, 1, 0);
            }
            blk->c_out = planes * expansion;
            if (stride != 1 || in_ch != blk->c_out) {
                blk->has_ds = 1;
                snprintf(conv, sizeof conv, "%s.downsample.0", pre);
                snprintf(bn, sizeof bn, "%s.downsample.1", pre);
                unit_setup(m, &blk->ds, conv, bn, in_ch, blk->c_out, 1, stride, 0);
                blk->ds.pad = 0;
            }
            if (m->spec.arch == MG_ARCH_SE_RESNET50) {
                blk->has_se = 1;
                blk->se_hidden = blk->c_out / 16;
                blk->se_fc1_w = find_req(m, "%s%s", pre, ".se.fc1.weight");
                blk->se_fc1_b = find_req(m, "%s%s", pre, ".se.fc1.bias");
                blk->se_fc2_w = find_req(m, "%s%s", pre, ".se.fc2.weight");
                blk->se_fc2_b = find_req(m, "%s%s", pre, ".se.fc2.bias");
            }
            in_ch = blk->c_out;
        }
        m->stage_end[s] = bi - 1;
    }
}

mg_status mg_model_init(mg_model **out, const char *arch, int num_classes, float p) {
    *out = NULL;
    mg_arch a;
    MG_TRY(mg_arch_from_name(arch, "model architecture", &a));
    if (!(p > 0) || !isfinite(p))
        return MG_FAIL(MG_ERR_INVALID_ARG, "model: GeM exponent p must be a positive number, found %g", p);
    mg_model *m = calloc(1, sizeof *m);
    if (!m) return MG_FAIL(MG_ERR_NOMEM, "model: out of memory");
    mg_status s = mg_resnet_spec_init(&m->spec, a, num_classes);
    if (s != MG_OK) {
        free(m);
        return s;
    }
    snprintf(m->arch, sizeof m->arch, "%s", mg_arch_name(a));
    const char *fe = getenv("MG_FUSED");
    m->fused_off = fe && !strcmp(fe, "0");
    const char *we = getenv("MG_WINOGRAD");
    m->fused_flags = we && !strcmp(we, "0") ? 0 : MG_FNET_WINOGRAD;
    const char *ae = getenv("MG_ADAPT_THREADS");
    m->adapt_off = ae && !strcmp(ae, "0");
    /* start the window of the load estimate now (its first call has no estimate), so that under load
     * the first inference forward, after the weights are loaded, already runs and plans on fewer
     * threads instead of building the network for all of them first (infer_threads) */
    if (!m->adapt_off) (void)mg_runtime_other_load();
    const char *se = getenv("MG_STREAMS");
    m->streams_off = se && !strcmp(se, "0");
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    m->ncpu = ncpu > 0 ? (int)ncpu : 1;
    m->bottleneck = a != MG_ARCH_RESNET18 && a != MG_ARCH_RESNET34;
    m->dim = m->spec.feature_dim;
    m->offset = calloc((size_t)m->spec.n, sizeof *m->offset);
    if (!m->offset) goto nomem;
    for (int i = 0; i < m->spec.n; i++) {
        const mg_spec_entry *e = &m->spec.entries[i];
        if (e->kind == MG_PARAM_TRAINABLE) {
            m->offset[i] = m->n_params;
            m->n_params += e->count;
        } else if (e->kind == MG_PARAM_BN_BUFFER) {
            m->offset[i] = m->n_buffers;
            m->n_buffers += e->count;
        } else {
            m->offset[i] = m->n_counters;
            m->n_counters += 1;
        }
    }
    m->params = calloc((size_t)m->n_params, sizeof(float));
    /* written whole by a checkpoint or the initialisation: mapped at once (small pages; see hugepage.h) */
    if (m->params) mg_mem_populate(m->params, (size_t)m->n_params * sizeof(float));
    m->grads = calloc((size_t)m->n_params, sizeof(float));
    m->buffers = calloc((size_t)(m->n_buffers ? m->n_buffers : 1), sizeof(float));
    m->counters = calloc((size_t)(m->n_counters ? m->n_counters : 1), sizeof(int64_t));
    if (!m->params || !m->grads || !m->buffers || !m->counters) goto nomem;
    m->idx_p = mg_resnet_spec_find(&m->spec, "pool.p");
    m->idx_fc_w = mg_resnet_spec_find(&m->spec, "fc.weight");
    m->idx_fc_b = mg_resnet_spec_find(&m->spec, "fc.bias");
    MG_ASSERT(m->idx_p >= 0 && m->idx_fc_w >= 0 && m->idx_fc_b >= 0);
    build_network(m);
    /* Defaults that make a fresh model usable: BN identity statistics, the requested p. */
    for (int i = 0; i < m->spec.n; i++) {
        const mg_spec_entry *e = &m->spec.entries[i];
        size_t len = strlen(e->name);
        if (len > 12 && !strcmp(e->name + len - 12, ".running_var"))
            for (int64_t k = 0; k < e->count; k++) P(m, i)[k] = 1.0f;
    }
    *P(m, m->idx_p) = p;
    *out = m;
    return MG_OK;
nomem:
    mg_model_free(m);
    return MG_FAIL(MG_ERR_NOMEM, "model %s: out of memory for %d classes", arch, num_classes);
}

static void fused_cache_clear(mg_model *m) {
    for (int i = 0; i < 4; i++) {
        for (int k = 0; k < m->fcache[i].ns; k++) mg_fnet_free(m->fcache[i].net[k]);
        memset(&m->fcache[i], 0, sizeof m->fcache[i]);
    }
    m->fentry = NULL;
}

/* Frees the per-shape plans and activation memory; keep_fused keeps the fused networks' cache. */
static void free_plans_keep(mg_model *m, int keep_fused) {
    mg_conv2d_plan_free(&m->stem.plan);
    for (int b = 0; b < m->n_blocks; b++) {
        for (int i = 0; i < m->blocks[b].n_units; i++) mg_conv2d_plan_free(&m->blocks[b].u[i].plan);
        if (m->blocks[b].has_ds) mg_conv2d_plan_free(&m->blocks[b].ds.plan);
    }
    if (!keep_fused) fused_cache_clear(m);
    m->fnet_out = NULL;
    mg_arena_free(&m->act);
    free(m->side);
    m->side = NULL;
    free(m->poison);
    m->poison = NULL;
    m->n_poison = 0;
    free(m->conv_ws);
    m->conv_ws = NULL;
    m->n = m->h = m->w = 0;
    m->have_forward = 0;
}

static void free_plans(mg_model *m) { free_plans_keep(m, 0); }

void mg_model_free(mg_model *m) {
    if (!m) return;
    if (m->blocks) free_plans(m);
    free(m->blocks);
    free(m->offset);
    free(m->params);
    free(m->grads);
    free(m->buffers);
    free(m->counters);
    free(m->wh_mean);
    free(m->wh_P);
    mg_resnet_spec_free(&m->spec);
    free(m);
}

const char *mg_model_arch(const mg_model *m) { return m->arch; }
int mg_model_num_classes(const mg_model *m) { return m->spec.num_classes; }
int mg_model_embedding_dim(const mg_model *m) { return m->wdim ? m->wdim : m->dim; }
int mg_model_pooled_dim(const mg_model *m) { return m->dim; }
int mg_model_whitened_dim(const mg_model *m) { return m->wdim; }

mg_status mg_model_set_whitening(mg_model *m, int dim_out) {
    if (!m) return MG_FAIL(MG_ERR_INVALID_ARG, "model: null model");
    int D = m->dim, Da = D + 1;
    if (dim_out < 0 || dim_out > Da)
        return MG_FAIL(MG_ERR_INVALID_ARG, "model: whitened dimension D' must be in [1, %d] (D + 1), found %d", Da,
                       dim_out);
    if (dim_out == m->wdim) return MG_OK;
    m->version++;
    /* New layout of the trainable array: only fc.weight changes size ([K, D] <-> [K, D']). */
    mg_spec_entry *fw = &m->spec.entries[m->idx_fc_w];
    int64_t new_in = dim_out ? dim_out : D;
    int64_t *off = calloc((size_t)m->spec.n, sizeof *off);
    int64_t np = 0;
    if (!off) return MG_FAIL(MG_ERR_NOMEM, "model: out of memory");
    for (int i = 0; i < m->spec.n; i++) {
        const mg_spec_entry *e = &m->spec.entries[i];
        if (e->kind != MG_PARAM_TRAINABLE) {
            off[i] = m->offset[i];
            continue;
        }
        off[i] = np;
        np += i == m->idx_fc_w ? fw->shape[0] * new_in : e->count;
    }
    float *params = calloc((size_t)np, sizeof *params), *grads = calloc((size_t)np, sizeof *grads);
    float *mean = dim_out ? calloc((size_t)Da, sizeof *mean) : NULL;
    float *P = dim_out ? calloc((size_t)Da * (size_t)dim_out, sizeof *P) : NULL;
    if (!params || !grads || (dim_out && (!mean || !P))) {
        free(off);
        free(params);
        free(grads);
        free(mean);
        free(P);
        return MG_FAIL(MG_ERR_NOMEM, "model: out of memory for a %d -> %d whitening", Da, dim_out);
    }
    for (int i = 0; i < m->spec.n; i++) {
        const mg_spec_entry *e = &m->spec.entries[i];
        if (e->kind != MG_PARAM_TRAINABLE || i == m->idx_fc_w) continue; /* fc.weight starts at 0 */
        memcpy(params + off[i], m->params + m->offset[i], (size_t)e->count * sizeof(float));
    }
    free_plans(m); /* activation sizes depend on D' */
    free(m->offset);
    free(m->params);
    free(m->grads);
    free(m->wh_mean);
    free(m->wh_P);
    m->offset = off;
    m->params = params;
    m->grads = grads;
    m->n_params = np;
    m->wh_mean = mean;
    m->wh_P = P;
    fw->shape[1] = new_in;
    fw->count = fw->shape[0] * new_in;
    m->wdim = dim_out;
    return MG_OK;
}
float mg_model_get_p(const mg_model *m) { return m->params[m->offset[m->idx_p]]; }
void mg_model_set_learn_p(mg_model *m, bool learn) { m->learn_p = learn; }

void mg_model_set_bn_sync(mg_model *m, mg_status (*reduce)(void *ctx, double *data, size_t n), void *ctx) {
    m->bn_sync = reduce;
    m->bn_sync_ctx = reduce ? ctx : NULL;
}

mg_status mg_model_set_p(mg_model *m, float p) {
    if (!(p > 0) || !isfinite(p))
        return MG_FAIL(MG_ERR_INVALID_ARG, "model: GeM exponent p must be a positive number, found %g", p);
    *P(m, m->idx_p) = p;
    return MG_OK;
}

float *mg_model_params(mg_model *m) {
    m->version++;
    return m->params;
}
void mg_model_mark_changed(mg_model *m) { m->version++; }

size_t mg_model_activation_bytes(const mg_model *m, size_t *workspace) {
    if (workspace) *workspace = m->conv_ws ? m->ws_bytes : 0;
    size_t b = m->act.capacity;
    for (int i = 0; i < 4; i++)
        for (int k = 0; k < m->fcache[i].ns; k++) b += mg_fnet_bytes(m->fcache[i].net[k]);
    return b;
}
float *mg_model_grads(mg_model *m) { return m->grads; }
int64_t mg_model_param_count(const mg_model *m) { return m->n_params; }
void mg_model_zero_grad(mg_model *m) { memset(m->grads, 0, (size_t)m->n_params * sizeof(float)); }

float *mg_model_tensor(mg_model *m, const char *name, int64_t *count) {
    m->version++;
    if (m->wdim && !strcmp(name, "whiten.mean")) {
        if (count) *count = m->dim + 1;
        return m->wh_mean;
    }
    if (m->wdim && !strcmp(name, "whiten.P")) {
        if (count) *count = (int64_t)(m->dim + 1) * m->wdim;
        return m->wh_P;
    }
    int i = mg_resnet_spec_find(&m->spec, name);
    if (i < 0 || m->spec.entries[i].kind == MG_PARAM_BN_COUNTER) return NULL;
    if (count) *count = m->spec.entries[i].count;
    return P(m, i);
}

float *mg_model_tensor_grad(mg_model *m, const char *name) {
    int i = mg_resnet_spec_find(&m->spec, name);
    if (i < 0 || m->spec.entries[i].kind != MG_PARAM_TRAINABLE) return NULL;
    return G(m, i);
}

int64_t *mg_model_counter(mg_model *m, const char *name) {
    int i = mg_resnet_spec_find(&m->spec, name);
    if (i < 0 || m->spec.entries[i].kind != MG_PARAM_BN_COUNTER) return NULL;
    return m->counters + m->offset[i];
}

int mg_model_tensor_count(const mg_model *m) { return m->spec.n + (m->wdim ? 2 : 0); }

const char *mg_model_tensor_info(const mg_model *m, int index, int *kind, int *ndim, int64_t shape[4],
                                 int64_t *count) {
    if (m->wdim && (index == m->spec.n || index == m->spec.n + 1)) { /* whiten.mean, whiten.P: buffers */
        int is_P = index == m->spec.n + 1;
        int64_t s0 = m->dim + 1, s1 = is_P ? m->wdim : 1;
        if (kind) *kind = 1;
        if (ndim) *ndim = is_P ? 2 : 1;
        if (shape) {
            shape[0] = s0;
            shape[1] = s1;
            shape[2] = shape[3] = 1;
        }
        if (count) *count = s0 * s1;
        return is_P ? "whiten.P" : "whiten.mean";
    }
    if (index < 0 || index >= m->spec.n) return NULL;
    const mg_spec_entry *e = &m->spec.entries[index];
    if (kind) *kind = (int)e->kind;
    if (ndim) *ndim = e->ndim;
    if (shape)
        for (int d = 0; d < 4; d++) shape[d] = d < e->ndim ? e->shape[d] : 1;
    if (count) *count = e->count;
    return e->name;
}

void *mg_model_tensor_data(mg_model *m, int index) {
    m->version++;
    if (m->wdim && index == m->spec.n) return m->wh_mean;
    if (m->wdim && index == m->spec.n + 1) return m->wh_P;
    if (index < 0 || index >= m->spec.n) return NULL;
    if (m->spec.entries[index].kind == MG_PARAM_BN_COUNTER) return m->counters + m->offset[index];
    return P(m, index);
}

/* ---------------------------------------------------------------------------------------------- */
/* Initialisation (torchvision's defaults) */

mg_status mg_model_init_weights(mg_model *m, uint64_t seed, bool zero_init_last_bn) {
    m->version++;
    for (int i = 0; i < m->spec.n; i++) {
        const mg_spec_entry *e = &m->spec.entries[i];
        mg_rng rng;
        mg_rng_init(&rng, seed, (uint64_t)i, 0x696e6974 /* "init" */, 0);
        size_t len = strlen(e->name);
        float *d = e->kind == MG_PARAM_BN_COUNTER ? NULL : P(m, i);
        int is_conv = e->ndim == 4;
        int is_bn = strstr(e->name, "bn") || strstr(e->name, "downsample.1");
        if (e->kind == MG_PARAM_BN_COUNTER) {
            m->counters[m->offset[i]] = 0;
        } else if (e->kind == MG_PARAM_BN_BUFFER) {
            float v = (len > 12 && !strcmp(e->name + len - 12, ".running_var")) ? 1.0f : 0.0f;
            for (int64_t k = 0; k < e->count; k++) d[k] = v;
        } else if (i == m->idx_p) {
            /* keep p */
        } else if (is_conv) {
            /* kaiming_normal_(mode="fan_out", nonlinearity="relu"): std = sqrt(2 / (K * R * S)) */
            double fan_out = (double)e->shape[0] * e->shape[2] * e->shape[3];
            double sd = sqrt(2.0 / fan_out);
            for (int64_t k = 0; k < e->count; k++) d[k] = (float)(sd * mg_rng_normal(&rng));
        } else if (is_bn && !strstr(e->name, "se.")) {
            float v = (len > 7 && !strcmp(e->name + len - 7, ".weight")) ? 1.0f : 0.0f;
            for (int64_t k = 0; k < e->count; k++) d[k] = v;
        } else {
            /* nn.Linear / conv bias default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (kaiming_uniform a=sqrt(5)
             * for the weight gives the same bound). fan_in of a bias is its layer's input size. */
            int w_idx = i;
            if (len > 5 && !strcmp(e->name + len - 5, ".bias")) {
                char wname[MG_SPEC_NAME_MAX];
                snprintf(wname, sizeof wname, "%.*s.weight", (int)(len - 5), e->name);
                w_idx = mg_resnet_spec_find(&m->spec, wname);
                MG_ASSERT(w_idx >= 0);
            }
            const mg_spec_entry *we = &m->spec.entries[w_idx];
            double fan_in = 1;
            for (int dd = 1; dd < we->ndim; dd++) fan_in *= (double)we->shape[dd];
            double bound = 1.0 / sqrt(fan_in);
            for (int64_t k = 0; k < e->count; k++) d[k] = (float)mg_rng_uniform_range(&rng, -bound, bound);
        }
    }
    if (zero_init_last_bn) {
        for (int b = 0; b < m->n_blocks; b++) {
            unit *u = &m->blocks[b].u[m->blocks[b].n_units - 1];
            memset(P(m, u->bn_w), 0, (size_t)u->c_out * sizeof(float));
        }
    }
    return MG_OK;
}

/* ---------------------------------------------------------------------------------------------- */
/* Planning: op plans and activation memory for one input shape */

/* The activation layout of the per-op plans (training, eval, and per-op inference, which must stay
 * bit-identical to eval: the chain of convolutions, batch norms, ReLUs and sums): oneDNN's
 * channel-blocked nChw<B>c when its blocked kernels are available, so that no convolution reorders
 * its activations (docs/PERFORMANCE.md, "The training chain in the blocked layout"); NCHW for SE
 * networks (their gates run on NCHW), the reference implementation, and with MG_TRAIN_LAYOUT=nchw.
 * The stem's input (the image) and the stage outputs handed out by mg_model_activation are NCHW
 * either way. */
static int chain_block(const mg_model *m) {
    const char *e = getenv("MG_TRAIN_LAYOUT");
    if ((e && !strcmp(e, "nchw")) || mg_ops_get_impl() == MG_OPS_REFERENCE) return 0;
    int b = mg_conv2d_blocked_channels();
    if (b <= 1 || m->stem.c_out % b) return 0;
    for (int i = 0; i < m->n_blocks; i++) {
        const block *blk = &m->blocks[i];
        if (blk->has_se || blk->c_out % b) return 0;
        for (int j = 0; j < blk->n_units; j++)
            if (blk->u[j].c_out % b) return 0;
    }
    return b;
}

static mg_status unit_plan(unit *u, int n, int h, int w, int blk, size_t *ws_max) {
    mg_conv2d_desc d = {.n = n, .c = u->c_in, .h = h, .w = w, .k = u->c_out, .r = u->k, .s = u->k,
                        .stride_h = u->stride, .stride_w = u->stride, .pad_h = u->pad, .pad_w = u->pad,
                        .dil_h = 1, .dil_w = 1, .groups = 1, .has_bias = 0};
    u->n = n;
    u->h_in = h;
    u->w_in = w;
    if (blk)
        MG_TRY(mg_conv2d_plan_init_blocked(&u->plan, &d, u->c_in % blk ? 0 : blk, blk));
    else
        MG_TRY(mg_conv2d_plan_init(&u->plan, &d));
    u->h_out = u->plan.p;
    u->w_out = u->plan.q;
    size_t ws = mg_conv2d_plan_workspace_size(&u->plan);
    if (ws > *ws_max) *ws_max = ws;
    return MG_OK;
}

static size_t unit_out_elems(const unit *u) { return (size_t)u->n * u->c_out * u->h_out * u->w_out; }

static mg_status act_alloc(mg_model *m, float **p, size_t elems) {
    *p = mg_arena_alloc(&m->act, elems * sizeof(float));
    if (!*p) return mg_error_wrap(MG_ERR_NOMEM, "model: activation memory");
    return MG_OK;
}

/* Inference-only activation memory: four rotating buffers of the largest activation; BN and ReLU run
 * in place on the conv output, and a block's output overwrites its last unit's buffer. */
static mg_status alloc_infer(mg_model *m, size_t max_elems) {
    float *pool[4];
    for (int i = 0; i < 4; i++) MG_TRY(act_alloc(m, &pool[i], max_elems));
    unit *st = &m->stem;
    st->conv_out = st->out = st->out_f = pool[0];
    MG_TRY(act_alloc(m, &st->save_mean, (size_t)st->c_out));
    MG_TRY(act_alloc(m, &st->save_invstd, (size_t)st->c_out));
    m->stem_pool = pool[1];
    m->stem_argmax = NULL;
    int x = 1;
    for (int b = 0; b < m->n_blocks; b++) {
        block *blk = &m->blocks[b];
        int f[3], k = 0;
        for (int i = 0; i < 4; i++)
            if (i != x) f[k++] = i;
        /* units alternate between two free buffers; the downsample branch gets the third */
        for (int i = 0; i < blk->n_units; i++) {
            unit *u = &blk->u[i];
            u->conv_out = u->out = u->out_f = pool[f[i % 2]];
            MG_TRY(act_alloc(m, &u->save_mean, (size_t)u->c_out));
            MG_TRY(act_alloc(m, &u->save_invstd, (size_t)u->c_out));
        }
        if (blk->has_ds) {
            blk->ds.conv_out = blk->ds.out = blk->ds.out_f = pool[f[2]];
            MG_TRY(act_alloc(m, &blk->ds.save_mean, (size_t)blk->ds.c_out));
            MG_TRY(act_alloc(m, &blk->ds.save_invstd, (size_t)blk->ds.c_out));
        }
        unit *last = &blk->u[blk->n_units - 1];
        blk->out = blk->out_f = last->out;
        blk->dropped = 0;
        x = f[(blk->n_units - 1) % 2];
        if (blk->has_se) {
            MG_TRY(act_alloc(m, &blk->se_pool, (size_t)last->n * blk->c_out));
            MG_TRY(act_alloc(m, &blk->se_h, (size_t)last->n * blk->c_out));
            MG_TRY(act_alloc(m, &blk->se_s, (size_t)last->n * blk->c_out));
            blk->se_ds = NULL;
        }
    }
    return MG_OK;
}

/* Inference plans (per op: 1, fused: 2): the head vectors after the trunk, no backward buffers; records
 * the planned shape. */
static mg_status alloc_infer_heads(mg_model *m, int n, int h, int w, int kind) {
    size_t vec = (size_t)n * m->dim, wvec = (size_t)n * (m->dim + 1);
    MG_TRY(act_alloc(m, &m->pooled, vec));
    MG_TRY(act_alloc(m, &m->embedding, m->wdim ? wvec : vec));
    if (m->wdim) {
        MG_TRY(act_alloc(m, &m->wh_u, wvec));
        MG_TRY(act_alloc(m, &m->wh_phi, wvec));
    }
    MG_TRY(act_alloc(m, &m->logits, (size_t)n * m->spec.num_classes));
    m->dpooled = m->tmp_vec = NULL;
    m->scr[0] = m->scr[1] = m->scr[2] = NULL;
    m->g_stem = m->stem_scr[0] = m->stem_scr[1] = NULL;
    m->n = n;
    m->h = h;
    m->w = w;
    m->planned_infer = kind;
    m->planned_threads = mg_ops_get_threads();
    return MG_OK;
}

/* Whether the current plan is for this input shape, plan kind (planned_infer) and thread count. */
static bool planned_for(const mg_model *m, int n, int h, int w, int kind) {
    return m->n == n && m->h == h && m->w == w && m->planned_infer == kind &&
           m->planned_threads == mg_ops_get_threads();
}

/* ---------------------------------------------------------------------------------------------- */
/* The training plan: every buffer of a forward + backward step, placed by lifetime (core/memplan.h).
 * Steps: the stem's forward 0, block b's forward 1 + b, the heads (GeM, classifier, embedding and
 * their backward) n_blocks + 1, block b's backward 2 n_blocks + 1 - b, the stem's backward
 * 2 n_blocks + 2. A value kept for backward lives from its forward step to its backward step; the
 * gradient and scratch buffers of block b live only around block b's backward, so they reuse the
 * memory of later blocks' values, dead by then. */

static int t_fwd(int b) { return 1 + b; }
static int t_bwd(const mg_model *m, int b) { return 2 * m->n_blocks + 1 - b; } /* b = -1: the stem */

typedef struct {
    mg_memplan_buf *bufs;
    void **dst; /* float ** or int32_t ** (argmax), bound once the offsets are known */
    int n, cap, oom;
} plan_list;

static void plan_req(plan_list *l, void *dst, size_t elems, int first, int last) {
    if (l->oom) return;
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 256;
        mg_memplan_buf *b = realloc(l->bufs, (size_t)cap * sizeof *b);
        if (b) l->bufs = b;
        void **d = realloc(l->dst, (size_t)cap * sizeof *d);
        if (d) l->dst = d;
        if (!b || !d) {
            l->oom = 1;
            return;
        }
        l->cap = cap;
    }
    l->bufs[l->n] = (mg_memplan_buf){.bytes = elems * sizeof(float), .first = first, .last = last};
    l->dst[l->n] = dst;
    l->n++;
}

/* Whether every block output may be dropped where allowed (MG_KEEP_BLOCK_OUTPUTS=1 keeps them all,
 * for measuring what the recomputation costs). */
static int drop_allowed(void) {
    const char *e = getenv("MG_KEEP_BLOCK_OUTPUTS");
    return !(e && e[0] && e[0] != '0');
}

static mg_status plan_train(mg_model *m, size_t stem_pool) {
    int nb = m->n_blocks, n = m->stem.n;
    const int H = nb + 1, END = t_bwd(m, -1);
    plan_list L = {0};
    size_t vec = (size_t)n * m->dim, wvec = (size_t)n * (m->dim + 1);
    /* the heads and the per-channel statistics: small, kept for the whole step */
    plan_req(&L, &m->pooled, vec, 0, END);
    plan_req(&L, &m->embedding, m->wdim ? wvec : vec, 0, END);
    if (m->wdim) {
        plan_req(&L, &m->wh_u, wvec, 0, END);
        plan_req(&L, &m->wh_phi, wvec, 0, END);
    }
    plan_req(&L, &m->dpooled, vec, 0, END);
    plan_req(&L, &m->tmp_vec, vec, 0, END);
    plan_req(&L, &m->logits, (size_t)n * m->spec.num_classes, 0, END);
    /* stem: its BN+ReLU output is only the max pool's input in the forward; backward recomputes it
     * (the ReLU mask) from the kept conv output; the max pool's backward needs only the argmax */
    unit *st = &m->stem;
    size_t se = unit_out_elems(st);
    plan_req(&L, &st->conv_out, se, 0, END);
    plan_req(&L, &st->out_f, se, 0, 0);
    plan_req(&L, &st->out_b, se, END, END);
    plan_req(&L, &st->save_mean, (size_t)st->c_out, 0, END);
    plan_req(&L, &st->save_invstd, (size_t)st->c_out, 0, END);
    plan_req(&L, &m->stem_pool, stem_pool, 0, t_bwd(m, 0));
    plan_req(&L, &m->stem_argmax, stem_pool, 0, END); /* int32: the same size */
    plan_req(&L, &m->g_stem, stem_pool, t_bwd(m, 0), END);
    for (int i = 0; i < 2; i++) plan_req(&L, &m->stem_scr[i], se, END, END);
    int drop = drop_allowed(), prev_kept = 1; /* the stem's pool output is kept until block 0's backward */
    size_t in_elems = stem_pool;
    for (int b = 0; b < nb; b++) {
        block *blk = &m->blocks[b];
        unit *last = &blk->u[blk->n_units - 1];
        int tf = t_fwd(b), tb = t_bwd(m, b);
        size_t out_elems = unit_out_elems(last), scr = in_elems > out_elems ? in_elems : out_elems;
        /* A block output is dropped when it can be recomputed from kept values alone: the last unit's
         * conv output and the downsample's, or the previous block's output when that one is kept.
         * Not the last block's (GeM's backward reads it right after the forward) nor SE blocks'. */
        blk->dropped = drop && !blk->has_se && b != nb - 1 && (blk->has_ds || prev_kept);
        prev_kept = !blk->dropped;
        blk->out_b = blk->rc_tmp = NULL;
        if (blk->dropped) {
            plan_req(&L, &blk->out_f, out_elems, tf, t_fwd(b + 1));
            plan_req(&L, &blk->out_b, out_elems, t_bwd(m, b + 1), tb);
            if (blk->has_ds) plan_req(&L, &blk->rc_tmp, out_elems, t_bwd(m, b + 1), t_bwd(m, b + 1));
        } else {
            plan_req(&L, &blk->out_f, out_elems, tf, tb);
        }
        for (int i = 0; i < blk->n_units; i++) {
            unit *u = &blk->u[i];
            size_t e = unit_out_elems(u);
            if (e > scr) scr = e;
            plan_req(&L, &u->conv_out, e, tf, tb);
            plan_req(&L, &u->save_mean, (size_t)u->c_out, 0, END);
            plan_req(&L, &u->save_invstd, (size_t)u->c_out, 0, END);
            u->out_b = NULL;
            if (i < blk->n_units - 1) {
                /* BN+ReLU outputs inside the block: recomputed in backward from the conv output */
                plan_req(&L, &u->out_f, e, tf, tf);
                plan_req(&L, &u->out_b, e, tb, tb);
            } else if (blk->has_se) {
                plan_req(&L, &u->out_f, e, tf, tb); /* the SE gate's input, read by its backward */
            }
            /* else: the last BN output is written straight into the block output (bound below), where
             * the residual sum and ReLU run in place */
        }
        if (blk->has_ds) {
            unit *d = &blk->ds;
            plan_req(&L, &d->conv_out, unit_out_elems(d), tf, tb);
            plan_req(&L, &d->save_mean, (size_t)d->c_out, 0, END);
            plan_req(&L, &d->save_invstd, (size_t)d->c_out, 0, END);
            plan_req(&L, &d->out_f, unit_out_elems(d), tf, tf); /* dead after the residual sum */
            d->out_b = NULL;
        }
        if (blk->has_se) {
            plan_req(&L, &blk->se_pool, (size_t)n * blk->c_out, 0, END);
            plan_req(&L, &blk->se_h, (size_t)n * blk->c_out, 0, END);
            plan_req(&L, &blk->se_s, (size_t)n * blk->c_out, 0, END);
            plan_req(&L, &blk->se_ds, (size_t)n * blk->c_out, 0, END);
        }
        plan_req(&L, &blk->g, out_elems, b == nb - 1 ? H : t_bwd(m, b + 1), tb);
        for (int i = 0; i < 3; i++) plan_req(&L, &blk->scr[i], scr, tb, tb);
        in_elems = out_elems;
    }
    size_t total = 0;
    mg_status s = L.oom ? MG_FAIL(MG_ERR_NOMEM, "model: out of memory planning the activation memory")
                        : mg_memplan_assign(L.bufs, L.n, &total);
    if (s == MG_OK) s = mg_arena_init(&m->act, total);
    if (s == MG_OK) {
        for (int i = 0; i < L.n; i++) {
            void *p = L.bufs[i].bytes ? m->act.base + L.bufs[i].offset : NULL;
            memcpy(L.dst[i], &p, sizeof p); /* float ** or int32_t **: both object pointers */
        }
        m->act.used = total;
        const char *pe = getenv("MG_POISON_DEAD");
        if (pe && pe[0] && pe[0] != '0') {
            m->poison = malloc((size_t)L.n * sizeof *m->poison);
            if (!m->poison) s = MG_FAIL(MG_ERR_NOMEM, "model: out of memory");
            for (int i = 0; m->poison && i < L.n; i++)
                m->poison[m->n_poison++] = (struct poison_buf){
                    .p = (float *)(m->act.base + L.bufs[i].offset), .elems = L.bufs[i].bytes / sizeof(float),
                    .first = L.bufs[i].first, .last = L.bufs[i].last};
        }
    }
    free(L.bufs);
    free(L.dst);
    if (s != MG_OK) return mg_error_wrap(s, "model: activation memory");
    for (int b = 0; b < nb; b++) {
        block *blk = &m->blocks[b];
        unit *last = &blk->u[blk->n_units - 1];
        if (!blk->dropped) blk->out_b = blk->out_f;
        if (!blk->has_se) last->out_f = blk->out_f;
        if (!last->out_b) last->out_b = last->out_f;
        blk->out = blk->out_f;
    }
    return MG_OK;
}

/* MG_POISON_DEAD=1 (a check for the plan's lifetimes, used by the tests): NaN into every buffer whose
 * lifetime starts at step t (before it) or ends there (after it), except at the last step, whose
 * buffers hold the results. A value read outside the lifetime it was planned with then shows. */
static void poison_step(mg_model *m, int t, int at_start) {
    for (int i = 0; i < m->n_poison; i++) {
        const struct poison_buf *b = &m->poison[i];
        if (at_start ? b->first != t : (b->last != t || t == t_bwd(m, -1))) continue;
        for (size_t k = 0; k < b->elems; k++) b->p[k] = NAN;
    }
}

static mg_status plan_shape(mg_model *m, int n, int h, int w, int infer) {
    if (planned_for(m, n, h, w, infer)) return MG_OK;
    free_plans(m);
    size_t ws_max = 0, max_elems = 0;
    m->blk = chain_block(m);
    mg_status s = unit_plan(&m->stem, n, h, w, m->blk, &ws_max);
    if (s != MG_OK) return mg_error_wrap(s, "model: input %dx%d", h, w);
    mg_win2d pool = {3, 3, 2, 2, 1, 1};
    MG_TRY(mg_win2d_out_size(&pool, m->stem.h_out, m->stem.w_out, &m->pool_h, &m->pool_w));
    size_t stem_pool = (size_t)n * 64 * m->pool_h * m->pool_w;
    max_elems = unit_out_elems(&m->stem);
    if (stem_pool > max_elems) max_elems = stem_pool;
    int ch = m->pool_h, cw = m->pool_w;
    for (int b = 0; b < m->n_blocks; b++) {
        block *blk = &m->blocks[b];
        int bh = ch, bw = cw;
        for (int i = 0; i < blk->n_units; i++) {
            unit *u = &blk->u[i];
            MG_TRY(unit_plan(u, n, bh, bw, m->blk, &ws_max));
            bh = u->h_out;
            bw = u->w_out;
            if (unit_out_elems(u) > max_elems) max_elems = unit_out_elems(u);
        }
        if (blk->has_ds) MG_TRY(unit_plan(&blk->ds, n, ch, cw, m->blk, &ws_max));
        ch = bh;
        cw = bw;
    }
    m->ws_bytes = ws_max;
    if (ws_max) {
        if (posix_memalign(&m->conv_ws, 64, ws_max) != 0) {
            m->conv_ws = NULL;
            return MG_FAIL(MG_ERR_NOMEM, "model: cannot allocate %zu bytes of convolution workspace", ws_max);
        }
    }
    /* Every conv runs one at a time, so all plans share one workspace. */
    MG_TRY(mg_conv2d_plan_set_workspace(&m->stem.plan, m->conv_ws, ws_max));
    for (int b = 0; b < m->n_blocks; b++) {
        block *blk = &m->blocks[b];
        for (int i = 0; i < blk->n_units; i++)
            MG_TRY(mg_conv2d_plan_set_workspace(&blk->u[i].plan, m->conv_ws, ws_max));
        if (blk->has_ds) MG_TRY(mg_conv2d_plan_set_workspace(&blk->ds.plan, m->conv_ws, ws_max));
    }
    if (infer) {
        /* four rotating buffers replace every per-unit buffer and the backward buffers; the small
         * per-unit statistics and SE vectors are counted generously */
        size_t vec = (size_t)n * m->dim, wvec = (size_t)n * (m->dim + 1);
        size_t small = 2 * mg_arena_round((size_t)m->stem.c_out * 4);
        for (int b = 0; b < m->n_blocks; b++) {
            const block *blk = &m->blocks[b];
            for (int i = 0; i < blk->n_units; i++) small += 2 * mg_arena_round((size_t)blk->u[i].c_out * 4);
            if (blk->has_ds) small += 2 * mg_arena_round((size_t)blk->ds.c_out * 4);
            if (blk->has_se) small += 3 * mg_arena_round((size_t)n * blk->c_out * 4);
        }
        size_t bytes = 4 * mg_arena_round(max_elems * 4) + small + 4 * mg_arena_round(vec * 4) +
                       mg_arena_round((size_t)n * m->spec.num_classes * 4) +
                       (m->wdim ? 3 * mg_arena_round(wvec * 4) : 0);
        MG_TRY(mg_arena_init(&m->act, bytes));
        MG_TRY(alloc_infer(m, max_elems));
        return alloc_infer_heads(m, n, h, w, 1);
    }
    MG_TRY(plan_train(m, stem_pool));
    m->n = n;
    m->h = h;
    m->w = w;
    m->planned_infer = 0;
    m->planned_threads = mg_ops_get_threads();
    return MG_OK;
}

/* ---------------------------------------------------------------------------------------------- */
/* Fused inference (ops_fused.h): the trunk as one backend network with BN folded into the
 * convolutions; GeM and the heads run as in the per-op path. */

static int fused_eligible(const mg_model *m) {
    if (m->fused_off || !mg_fnet_available()) return 0;
    for (int b = 0; b < m->n_blocks; b++)
        if (m->blocks[b].has_se) return 0; /* the SE gate sits between BN and the residual sum */
    return 1;
}

/* BN folded into a conv: w' = w * s, b' = beta - mean * s with s = gamma / sqrt(var + eps), in
 * double. The eps is the one the per-op path uses (mg_bn2d_default_args). */
static mg_status unit_fold(mg_model *m, const unit *u, float *w, float *b) {
    mg_bn2d_args a = mg_bn2d_default_args(MG_BN_EVAL, 1, u->c_out, 1, 1);
    const float *cw = P(m, u->conv_w), *g = P(m, u->bn_w), *be = P(m, u->bn_b), *rm = P(m, u->bn_rm),
                *rv = P(m, u->bn_rv);
    size_t per = (size_t)u->c_in * u->k * u->k;
    for (int c = 0; c < u->c_out; c++) {
        double sc = (double)g[c] / sqrt((double)rv[c] + (double)a.eps);
        for (size_t i = 0; i < per; i++) w[c * per + i] = (float)(cw[c * per + i] * sc);
        b[c] = (float)((double)be[c] - (double)rm[c] * sc);
    }
    return MG_OK;
}

typedef struct {
    mg_model *m;
    const unit *u;
} fold_ctx;

static mg_status fold_cb(void *ctx, float *w, float *b) {
    fold_ctx *f = ctx;
    return unit_fold(f->m, f->u, w, b);
}

static mg_status fused_conv(mg_model *m, mg_fnet *net, const unit *u, int in, int residual, int relu, int *out) {
    fold_ctx f = {m, u};
    int flags = (relu ? MG_FNET_RELU : 0) | m->fused_flags;
    return mg_fnet_add_conv_cb(net, in, u->c_out, u->k, u->stride, u->pad, fold_cb, &f, residual, flags, out);
}

static mg_status fused_build_net(mg_model *m, mg_fnet *net, int *out) {
    int cur = -1, v;
    MG_TRY(fused_conv(m, net, &m->stem, 0, -1, 1, &v));
    MG_TRY(mg_fnet_add_maxpool(net, v, 3, 2, 1, &cur));
    for (int b = 0; b < m->n_blocks; b++) {
        const block *blk = &m->blocks[b];
        int idn = cur, x = cur;
        /* the downsample branch first: the block input can then die after the first unit */
        if (blk->has_ds) MG_TRY(fused_conv(m, net, &blk->ds, cur, -1, 0, &idn));
        for (int i = 0; i < blk->n_units; i++) {
            int last = i == blk->n_units - 1;
            MG_TRY(fused_conv(m, net, &blk->u[i], x, last ? idn : -1, 1, &x));
        }
        cur = x;
    }
    *out = cur;
    return MG_OK;
}

/* How many streams a fused batch of n runs as: with T = mg_ops_get_threads() >= 2 and n >= 2, min(T,
 * n) networks, each on its share of the threads and its share of the images, run side by side
 * (fused_run) instead of one network on all T threads. oneDNN splits every primitive statically over
 * its threads and joins them at its end, 55 times a ResNet-50 forward: each join costs wake-ups, and a
 * thread that shares its core with another process holds up the rest. Streams run whole forwards
 * without joining: on an idle machine two one-thread streams matched one two-thread network (ResNet-50,
 * batch 8: 1.00x with the inference programs' brief spinning, 1.02-1.06x with sleeping OpenMP
 * threads), and under load the stream on the free core finishes its images while the other is slowed
 * (docs/PERFORMANCE.md, "Streams"). The split depends on n and T only, never on the load, so a
 * batch's results do not change with what else runs on the machine. MG_STREAMS=0 turns it off. */
static int fused_streams(const mg_model *m, int n) {
    int t = mg_ops_get_threads();
    if (m->streams_off || n < 2 || t < 2) return 1;
    int s = t < n ? t : n;
    return s < FUSED_MAX_STREAMS ? s : FUSED_MAX_STREAMS;
}

/* The images stream k of ns runs of a batch of n: the first n mod ns streams one more than n / ns;
 * stream k starts after the images of streams 0..k-1. */
static int stream_chunk(int n, int ns, int k) { return n / ns + (k < n % ns); }

/* Builds the fused network of one stream: chunk images of h x w on `threads` threads, sharing the
 * reordered weights of `donor` where they fit. */
static mg_status fused_build(mg_model *m, int chunk, int h, int w, const mg_fnet *donor, int threads, mg_fnet **out,
                             int dims[4]) {
    mg_fnet *net;
    const double t0 = mg_time_now();
    MG_TRY(mg_fnet_init_like(&net, chunk, 3, h, w, donor, threads));
    int v = -1;
    mg_status s = fused_build_net(m, net, &v);
    if (s == MG_OK) s = mg_fnet_finalize(net, v);
    if (s != MG_OK) {
        mg_fnet_free(net);
        return mg_error_wrap(s, "model %s: building the fused inference network for %dx%d input", m->arch, h, w);
    }
    mg_log_debug("model %s: fused network for %d image(s) of %dx%d on %d thread(s) built in %.0f ms%s", m->arch, chunk,
                 h, w, threads, 1e3 * (mg_time_now() - t0), donor ? " (weights shared)" : "");
    mg_fnet_value_dims(net, v, dims);
    *out = net;
    return MG_OK;
}

/* Makes m->fentry the fused trunk for input n x 3 x h x w and the
 * current weights: from the cache of recent shapes, else built (sharing the reordered weights of the
 * most recently used network where they fit), evicting the least recently used shape when the cache
 * is full. Streams (fused_streams) have their own networks: activations and scratchpad of their own,
 * weights shared. */
static mg_status fused_get(mg_model *m, int n, int h, int w) {
    if (m->fnet_version != m->version) fused_cache_clear(m);
    m->fnet_version = m->version;
    struct fnet_entry *hit = NULL, *lru = &m->fcache[0], *mru = NULL;
    int threads = mg_ops_get_threads(); /* the override while shedding (mg_model_forward) */
    int ns = fused_streams(m, n);
    for (int i = 0; i < 4; i++) {
        struct fnet_entry *e = &m->fcache[i];
        if (e->ns && e->n == n && e->h == h && e->w == w && e->threads == threads && e->ns == ns) hit = e;
        if (!e->ns || (lru->ns && e->used < lru->used)) lru = e;
        if (e->ns && (!mru || e->used > mru->used)) mru = e;
    }
    if (!hit) {
        struct fnet_entry ne = {.ns = ns, .n = n, .h = h, .w = w, .threads = threads};
        mg_status s = MG_OK;
        for (int k = 0; k < ns && s == MG_OK; k++) {
            int tk = ns == 1 ? threads : threads / ns + (k < threads % ns);
            const mg_fnet *donor = k ? ne.net[0] : mru ? mru->net[0] : NULL;
            int dims[4];
            s = fused_build(m, stream_chunk(n, ns, k), h, w, donor, tk, &ne.net[k], dims);
            ne.out_h = dims[2];
            ne.out_w = dims[3];
        }
        if (s != MG_OK) {
            for (int k = ns - 1; k >= 0; k--) mg_fnet_free(ne.net[k]);
            return s;
        }
        for (int k = 0; k < lru->ns; k++) mg_fnet_free(lru->net[k]);
        *lru = ne;
        hit = lru;
    }
    hit->used = ++m->fclock;
    m->fentry = hit;
    m->out_h = hit->out_h;
    m->out_w = hit->out_w;
    return MG_OK;
}

typedef struct {
    mg_fnet *net;
    const float *x;
    float *y;          /* the output in plain NCHW, or NULL: left in the network's blocks (raw) */
    const float *raw;
    mg_status status;
    char msg[512];
} stream_job;

static void stream_task(void *ctx, int k, int thread) {
    (void)thread;
    stream_job *j = (stream_job *)ctx + k;
    j->status = j->y ? mg_fnet_run(j->net, j->x, j->y) : mg_fnet_run_raw(j->net, j->x, &j->raw);
    if (j->status != MG_OK) snprintf(j->msg, sizeof j->msg, "%s", mg_error_message()); /* thread-local */
}

/* The channel block every stream of e leaves its output in (mg_fnet_output_block), or 0. */
static int fused_out_block(const struct fnet_entry *e) {
    int b = mg_fnet_output_block(e->net[0]);
    for (int k = 1; k < e->ns; k++)
        if (mg_fnet_output_block(e->net[k]) != b) return 0;
    return b;
}

/* Runs the fused trunk of m->fentry on x [n, 3, h, w], its streams as tasks of the process's thread
 * pool (core/threadpool.h: persistent workers, the calling thread takes part; it has
 * mg_ops_get_threads() threads, at least as many as streams), and GeM-pools its output into
 * m->pooled: from the trunk's own channel blocks where its output has them (no reorder to NCHW, and
 * the blocked GeM runs 8 or 16 channels per vector: at batch 1 on 2048 x 7 x 7, 60 against 135 us),
 * else through m->fnet_out in plain NCHW. */
static mg_status fused_run_pool(mg_model *m, const float *x, int h, int w) {
    struct fnet_entry *e = m->fentry;
    const int blk = fused_out_block(e);
    if (!blk && !m->fnet_out) return MG_FAIL(MG_ERR_INTERNAL, "model forward: no buffer for the trunk's output");
    stream_job job[FUSED_MAX_STREAMS];
    int nk[FUSED_MAX_STREAMS];
    size_t in_per = (size_t)3 * h * w, out_per = (size_t)m->dim * m->out_h * m->out_w, at = 0;
    for (int k = 0; k < e->ns; k++) {
        nk[k] = stream_chunk(e->n, e->ns, k);
        job[k] = (stream_job){.net = e->net[k], .x = x + at * in_per, .y = blk ? NULL : m->fnet_out + at * out_per};
        at += (size_t)nk[k];
    }
    if (e->ns == 1)
        stream_task(job, 0, 0);
    else
        mg_pool_run(mg_pool_global(), e->ns, stream_task, job);
    for (int k = 0; k < e->ns; k++)
        if (job[k].status != MG_OK) return MG_FAIL(job[k].status, "%s", job[k].msg);
    at = 0;
    for (int k = 0; k < e->ns; k++) {
        MG_TRY(mg_gem_forward_blocked(nk[k], m->dim, m->out_h, m->out_w, blk, mg_model_get_p(m),
                                      blk ? job[k].raw : job[k].y, m->pooled + at * m->dim));
        at += (size_t)nk[k];
    }
    return MG_OK;
}

/* The thread count of an inference forward that runs as one network (batch 1, any batch with
 * MG_STREAMS=0, and the per-op path: mg_model_forward):
 * the requested one (mg_ops_get_threads), or fewer while other processes keep cores busy
 * (mg_runtime_other_load): oneDNN splits each primitive statically over its threads, so a thread that
 * shares its core with another process holds up the rest, and two such threads ran slower than one
 * (docs/PERFORMANCE.md). Fewer threads when the free cores fall below the requested count by 0.4, all
 * of them again when within 0.2 (hysteresis). At batch 1 ResNet-50's outputs are the same bits at
 * one and two threads (oneDNN 2.6 splits that work without changing the sums), but oneDNN does not
 * promise it: one network on a batch of 2 differed in the last bit (2e-8) between one and two
 * threads, so under load the last bits may change. MG_ADAPT_THREADS=0 turns shedding off. */
static int infer_threads(mg_model *m) {
    int want = mg_ops_get_threads(), cur = m->infer_threads_now ? m->infer_threads_now : want;
    /* Only where a forward's bits do not depend on its thread count (oneDNN's kernels): without
     * oneDNN the convolutions run im2col + OpenBLAS sgemm, whose results differ between one and two
     * threads, so shedding would make the outputs depend on the machine's load (oracle/test_model's
     * eval-against-inference comparison failed under load in such a build). */
    if (want <= 1 || m->adapt_off || !mg_fnet_available()) return want;
    if (cur > want) cur = want;
    double load = mg_runtime_other_load();
    if (load < 0) return cur; /* no estimate yet (first call) or no /proc */
    double free_cores = (double)m->ncpu - load;
    double margin = cur < want ? 0.2 : 0.4;
    if (free_cores >= want - margin) return want;
    int t = (int)free_cores;
    return t < 1 ? 1 : t > want ? want : t;
}

/* Activation memory of the fused plan: the trunk's output and the head vectors. */
static mg_status plan_fused(mg_model *m, int n, int h, int w) {
    free_plans_keep(m, 1);
    MG_TRY(fused_get(m, n, h, w));
    /* the trunk's output in plain NCHW: only where it is not in channel blocks (fused_run_pool) */
    size_t map = fused_out_block(m->fentry) ? 0 : (size_t)n * m->dim * m->out_h * m->out_w, vec = (size_t)n * m->dim,
           wvec = (size_t)n * (m->dim + 1);
    size_t bytes = mg_arena_round(map * 4) + 2 * mg_arena_round(vec * 4) +
                   mg_arena_round((size_t)n * m->spec.num_classes * 4) + (m->wdim ? 3 * mg_arena_round(wvec * 4) : 0);
    MG_TRY(mg_arena_init(&m->act, bytes));
    m->fnet_out = NULL;
    if (map) MG_TRY(act_alloc(m, &m->fnet_out, map));
    return alloc_infer_heads(m, n, h, w, 2);
}

void mg_model_set_fused(mg_model *m, bool on) {
    if (m->fused_off == !on) return;
    m->fused_off = !on;
    free_plans(m);
}

void mg_model_set_fused_winograd(mg_model *m, bool on) {
    int f = on ? MG_FNET_WINOGRAD : 0;
    if (m->fused_flags == f) return;
    m->fused_flags = f;
    free_plans(m);
}

int mg_model_infer_threads(const mg_model *m) { return m ? m->infer_threads_now : 0; }

bool mg_model_fused_active(const mg_model *m) { return m->fentry != NULL && m->planned_infer == 2; }
int mg_model_fused_winograd_count(const mg_model *m) {
    return m->fentry ? mg_fnet_winograd_count(m->fentry->net[0]) : 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* Forward */

static mg_bn_mode bn_mode(mg_model_mode mode) {
    return mode == MG_MODE_TRAIN ? MG_BN_TRAIN : mode == MG_MODE_FROZEN_BN ? MG_BN_FROZEN : MG_BN_EVAL;
}

/* A unit's batch-norm arguments for the current mode, in the plan's activation layout. */
static mg_bn2d_args unit_bn_args(const mg_model *m, const unit *u) {
    mg_bn2d_args a = mg_bn2d_default_args(bn_mode(m->mode), u->n, u->c_out, u->h_out, u->w_out);
    a.block = m->blk;
    return a;
}

/* A unit's forward in two halves, so that a block's downsample can run between its last unit's
 * convolution and batch norm (block_forward). */
static mg_status unit_forward_conv(mg_model *m, unit *u, const float *in) {
    u->in = in;
    if (m->mode == MG_MODE_TRAIN && (int64_t)u->n * u->h_out * u->w_out < 2)
        return MG_FAIL(MG_ERR_INVALID_ARG,
                       "model forward: training-mode batch norm needs more than one value per channel, but "
                       "a batch of %d image(s) gives a %dx%d map; use a larger batch or input",
                       u->n, u->h_out, u->w_out);
    return mg_conv2d_forward(&u->plan, in, P(m, u->conv_w), NULL, u->conv_out);
}

/* residual: NULL, or the block's identity branch, added in BN's pass and followed by the block's ReLU
 * (mg_bn2d_args; the last unit has no ReLU of its own) */
static mg_status unit_forward_bn(mg_model *m, unit *u, const float *residual) {
    mg_bn2d_args a = unit_bn_args(m, u);
    a.relu = residual ? 1 : u->relu; /* BN and ReLU in one pass */
    a.residual = residual;
    if (m->mode == MG_MODE_TRAIN && m->bn_sync) /* statistics over all data-parallel processes */
        MG_TRY(mg_bn2d_forward_sync(&a, u->conv_out, P(m, u->bn_w), P(m, u->bn_b), P(m, u->bn_rm), P(m, u->bn_rv),
                                    u->save_mean, u->save_invstd, u->out, m->bn_sync, m->bn_sync_ctx));
    else
        MG_TRY(mg_bn2d_forward(&a, u->conv_out, P(m, u->bn_w), P(m, u->bn_b), P(m, u->bn_rm), P(m, u->bn_rv),
                               u->save_mean, u->save_invstd, u->out));
    if (m->mode == MG_MODE_TRAIN) m->counters[m->offset[u->bn_cnt]] += 1;
    return MG_OK;
}

static mg_status unit_forward(mg_model *m, unit *u, const float *in) {
    MG_TRY(unit_forward_conv(m, u, in));
    return unit_forward_bn(m, u, NULL);
}

static mg_status block_forward(mg_model *m, block *blk, const float *in) {
    blk->in = in;
    blk->out = blk->out_f; /* backward may have pointed these at its recomputed copies */
    const float *x = in;
    for (int i = 0; i + 1 < blk->n_units; i++) {
        blk->u[i].out = blk->u[i].out_f;
        MG_TRY(unit_forward(m, &blk->u[i], x));
        x = blk->u[i].out;
    }
    unit *last = &blk->u[blk->n_units - 1];
    last->out = last->out_f;
    MG_TRY(unit_forward_conv(m, last, x));
    if (!blk->has_se) { /* the last unit's BN, the residual sum and the ReLU in one pass, into blk->out */
        const float *idn = in;
        if (blk->has_ds) {
            blk->ds.out = blk->ds.out_f;
            MG_TRY(unit_forward(m, &blk->ds, in));
            idn = blk->ds.out;
        }
        return unit_forward_bn(m, last, idn);
    }
    MG_TRY(unit_forward_bn(m, last, NULL));
    size_t elems = unit_out_elems(last);
    int n = last->n, c = last->c_out, hw = last->h_out * last->w_out;
    const float *main = last->out;
    if (blk->has_se) {
        MG_TRY(mg_adaptive_avgpool2d_forward(n, c, last->h_out, last->w_out, 1, 1, last->out, blk->se_pool));
        MG_TRY(mg_linear_forward(n, c, blk->se_hidden, blk->se_pool, P(m, blk->se_fc1_w), P(m, blk->se_fc1_b),
                                 blk->se_h));
        MG_TRY(mg_relu_forward((size_t)n * blk->se_hidden, blk->se_h, blk->se_h));
        MG_TRY(mg_linear_forward(n, blk->se_hidden, c, blk->se_h, P(m, blk->se_fc2_w), P(m, blk->se_fc2_b),
                                 blk->se_s));
        MG_TRY(mg_sigmoid_forward((size_t)n * c, blk->se_s, blk->se_s));
        MG_TRY(mg_chscale_forward(n, c, hw, last->out, blk->se_s, blk->out));
        main = blk->out;
    }
    const float *idn = in;
    if (blk->has_ds) {
        blk->ds.out = blk->ds.out_f;
        MG_TRY(unit_forward(m, &blk->ds, in));
        idn = blk->ds.out;
    }
    return mg_add_relu_forward(elems, main, idn, blk->out);
}

static mg_status forward(mg_model *m, mg_model_mode mode, const float *x, int n, int h, int w,
                         mg_model_outputs *out);

/* An inference forward that runs as one network (one fused network, or per op: SE networks,
 * MG_FUSED=0; not in builds without oneDNN) sheds threads under load (infer_threads): the whole forward
 * runs on the calling thread's override (mg_ops_set_thread_override), so its plans and networks are
 * made for that count (planned_for, fused_get) and other threads keep theirs. Streams balance the
 * load themselves (fused_streams) and keep the requested count. */
mg_status mg_model_forward(mg_model *m, mg_model_mode mode, const float *x, int n, int h, int w,
                           mg_model_outputs *out) {
    if (!m || mode != MG_MODE_INFER) return forward(m, mode, x, n, h, w, out);
    int want = mg_ops_get_threads();
    int t = fused_eligible(m) && fused_streams(m, n) > 1 ? want : infer_threads(m);
    m->infer_threads_now = t;
    if (t >= want) return forward(m, mode, x, n, h, w, out);
    int prev = mg_ops_set_thread_override(t);
    mg_status s = forward(m, mode, x, n, h, w, out);
    mg_ops_set_thread_override(prev);
    return s;
}

static mg_status forward(mg_model *m, mg_model_mode mode, const float *x, int n, int h, int w,
                         mg_model_outputs *out) {
    if (!m || !x || !out) return MG_FAIL(MG_ERR_INVALID_ARG, "model forward: null argument");
    if (n < 1 || h < 1 || w < 1)
        return MG_FAIL(MG_ERR_INVALID_ARG, "model forward: expected a batch of n >= 1 images of h, w >= 1, found %dx3x%dx%d",
                       n, h, w);
    m->have_forward = 0;
    if (mode < MG_MODE_TRAIN || mode > MG_MODE_INFER)
        return MG_FAIL(MG_ERR_INVALID_ARG, "model forward: unknown mode %d", (int)mode);
    if (m->wdim && mode != MG_MODE_EVAL && mode != MG_MODE_INFER)
        return MG_FAIL(MG_ERR_UNSUPPORTED,
                       "model forward: a whitened model (whiten.mean / whiten.P) runs in eval mode only; train or "
                       "fine-tune the unwhitened checkpoint and whiten it afterwards");
    int fused = mode == MG_MODE_INFER && fused_eligible(m);
    if (fused) {
        /* mg_model_forward chose the thread count (an override when fewer), so a change re-plans */
        if (!planned_for(m, n, h, w, 2))
            MG_TRY(plan_fused(m, n, h, w));
        else if (m->fnet_version != m->version)
            MG_TRY(fused_get(m, n, h, w));
    } else {
        MG_TRY(plan_shape(m, n, h, w, mode == MG_MODE_INFER));
    }
    if (mode == MG_MODE_TRAIN) m->version++; /* the running statistics move */
    m->mode = mode;
    m->x = x;
    if (fused) {
        MG_TRY(fused_run_pool(m, x, h, w));
    } else {
        poison_step(m, 0, 1);
        m->stem.out = m->stem.out_f;
        MG_TRY(unit_forward(m, &m->stem, x));
        mg_win2d pool = {3, 3, 2, 2, 1, 1};
        MG_TRY(mg_maxpool2d_forward_blocked(n, 64, m->stem.h_out, m->stem.w_out, m->blk, &pool, m->stem.out,
                                            m->stem_pool, m->stem_argmax));
        poison_step(m, 0, 0);
        const float *cur = m->stem_pool;
        for (int b = 0; b < m->n_blocks; b++) {
            poison_step(m, t_fwd(b), 1);
            MG_TRY(block_forward(m, &m->blocks[b], cur));
            poison_step(m, t_fwd(b), 0);
            cur = m->blocks[b].out;
        }
        poison_step(m, m->n_blocks + 1, 1);
        const unit *last = &m->blocks[m->n_blocks - 1].u[m->blocks[m->n_blocks - 1].n_units - 1];
        MG_TRY(mg_gem_forward_blocked(n, m->dim, last->h_out, last->w_out, m->blk, mg_model_get_p(m), cur,
                                      m->pooled));
    }
    if (m->wdim) {
        /* Recipe §1.8/§2.3: v = [e, 1], u = v / (||v|| + 1e-6), Phi = (u - m) P, logits = W' Phi + b',
         * embedding = Phi / (||Phi|| + 1e-6). */
        int Da = m->dim + 1, Dp = m->wdim;
        for (int i = 0; i < n; i++) {
            const float *e = m->pooled + (size_t)i * m->dim;
            float *u = m->wh_u + (size_t)i * Da;
            double ss = 1.0;
            for (int j = 0; j < m->dim; j++) ss += (double)e[j] * e[j];
            double inv = 1.0 / (sqrt(ss) + (double)MG_L2NORM_EPS);
            for (int j = 0; j < m->dim; j++) u[j] = (float)(e[j] * inv) - m->wh_mean[j];
            u[m->dim] = (float)inv - m->wh_mean[m->dim];
        }
        mg_blas_serial(); /* small (runtime.h) */
        if (n <= MG_LINEAR_GEMV_MAX_ROWS) /* streams P once a row instead of packing it (ops_layers.h) */
            for (int i = 0; i < n; i++)
                cblas_sgemv(CblasRowMajor, CblasTrans, Da, Dp, 1.0f, m->wh_P, Dp, m->wh_u + (size_t)i * Da, 1, 0.0f,
                            m->wh_phi + (size_t)i * Dp, 1);
        else
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, Dp, Da, 1.0f, m->wh_u, Da, m->wh_P, Dp, 0.0f,
                        m->wh_phi, Dp);
        MG_TRY(mg_linear_forward(n, Dp, m->spec.num_classes, m->wh_phi, P(m, m->idx_fc_w), P(m, m->idx_fc_b),
                                 m->logits));
        MG_TRY(mg_l2norm_forward(n, Dp, m->wh_phi, m->embedding, NULL));
    } else {
        MG_TRY(mg_linear_forward(n, m->dim, m->spec.num_classes, m->pooled, P(m, m->idx_fc_w), P(m, m->idx_fc_b),
                                 m->logits));
        MG_TRY(mg_l2norm_forward(n, m->dim, m->pooled, m->embedding, NULL));
    }
    out->n = n;
    out->dim = m->wdim ? m->wdim : m->dim;
    out->pooled_dim = m->dim;
    out->num_classes = m->spec.num_classes;
    out->pooled = m->pooled;
    out->logits = m->logits;
    out->embedding = m->embedding;
    m->have_forward = 1;
    return MG_OK;
}

/* ---------------------------------------------------------------------------------------------- */
/* Backward */

/* A scratch buffer different from a and b. */
static float *scratch_other(mg_model *m, const float *a, const float *b) {
    for (int i = 0; i < 3; i++)
        if (m->scr[i] != a && m->scr[i] != b) return m->scr[i];
    MG_ASSERT(0);
    return NULL;
}

/* dy: gradient w.r.t. the unit's output (ReLU applied in place on it when the unit has one, so it
 * must be a scratch or boundary buffer we may overwrite). dx: where the input gradient goes
 * (NULL: not needed); accumulate: add into dx instead of writing, and then, when relu_out is given,
 * take the sum through the backward of the ReLU whose output it is (the previous block's). */
static mg_status unit_backward(mg_model *m, unit *u, float *dy, float *dx, int accumulate, const float *relu_out) {
    size_t elems = unit_out_elems(u);
    float *t = scratch_other(m, dy, dx);
    mg_bn2d_args a = unit_bn_args(m, u);
    const int sync = m->mode == MG_MODE_TRAIN && m->bn_sync;
    if (u->relu && sync) MG_TRY(mg_relu_backward(elems, u->out, dy, dy));
    if (sync)
        MG_TRY(mg_bn2d_backward_sync(&a, u->conv_out, dy, P(m, u->bn_w), u->save_mean, u->save_invstd, t,
                                     G(m, u->bn_w), G(m, u->bn_b), m->bn_sync, m->bn_sync_ctx));
    else if (u->relu) /* the ReLU's mask from conv_out, in the arithmetic that made u->out: no pass over it */
        MG_TRY(mg_bn2d_relu_backward(&a, u->conv_out, dy, P(m, u->bn_w), P(m, u->bn_b), u->save_mean,
                                     u->save_invstd, t, G(m, u->bn_w), G(m, u->bn_b)));
    else
        MG_TRY(mg_bn2d_backward(&a, u->conv_out, dy, P(m, u->bn_w), u->save_mean, u->save_invstd, t, G(m, u->bn_w),
                                G(m, u->bn_b)));
    MG_TRY(mg_conv2d_backward_weights(&u->plan, u->in, t, G(m, u->conv_w), NULL));
    if (!dx) return MG_OK;
    if (!accumulate) return mg_conv2d_backward_data(&u->plan, t, P(m, u->conv_w), dx);
    /* dy is no longer needed once BN backward has run, so the third buffer may be dy itself. */
    float *tmp = scratch_other(m, t, dx);
    MG_TRY(mg_conv2d_backward_data(&u->plan, t, P(m, u->conv_w), tmp));
    size_t count = (size_t)u->n * u->c_in * u->h_in * u->w_in;
    return relu_out ? mg_add_relu_backward(count, dx, tmp, relu_out, dx) : mg_add_forward(count, dx, tmp, dx);
}

/* g: gradient w.r.t. the block output (a boundary buffer; overwritten); g_masked: g is already taken
 * through the block's ReLU (the next block's backward did it). din: the other boundary buffer,
 * receives the gradient w.r.t. the block input; mask_din: taken through the backward of the ReLU
 * that made the input (the previous block's), in the pass that sums din's two branches. */
/* The BN+ReLU output of a unit inside a block (in its rc buffer, which later blocks overwrote during
 * the forward), recomputed from its kept conv output and the statistics its forward saved, in the
 * forward's arithmetic (mg_bn2d_apply); it is the unit's ReLU mask and the next unit's input. */
static mg_status unit_recompute_into(mg_model *m, const unit *u, const float *residual, float *dst) {
    mg_bn2d_args a = unit_bn_args(m, u);
    a.relu = residual ? 1 : u->relu; /* with the residual: the block's ReLU, as unit_forward_bn */
    a.residual = residual;
    return mg_bn2d_apply(&a, u->conv_out, P(m, u->bn_w), P(m, u->bn_b), u->save_mean, u->save_invstd, dst);
}
static mg_status unit_recompute(mg_model *m, unit *u) { return unit_recompute_into(m, u, NULL, u->out); }

/* A dropped block output (no SE), recomputed in the forward's arithmetic: the last unit's BN output
 * plus the identity (in) or the downsample's BN output (in tmp), then ReLU. */
static mg_status block_recompute_out(mg_model *m, const block *blk, const float *in, float *dst, float *tmp) {
    const unit *last = &blk->u[blk->n_units - 1];
    const float *idn = in;
    if (blk->has_ds) {
        MG_TRY(unit_recompute_into(m, &blk->ds, NULL, tmp));
        idn = tmp;
    }
    return unit_recompute_into(m, last, idn, dst); /* as block_forward: BN, sum and ReLU in one pass */
}

/* The input of block b (the stem's pool output for block 0) as the forward left it. */
static const float *block_input(const mg_model *m, int b) { return b ? m->blocks[b - 1].out : m->stem_pool; }

/* Before block b + 1's backward: block b's dropped output, recomputed into its backward buffer,
 * becomes the output (its ReLU mask) and block b + 1's input (for its weight gradients). */
static mg_status block_restore_out(mg_model *m, int b) {
    block *blk = &m->blocks[b], *next = &m->blocks[b + 1];
    MG_TRY(block_recompute_out(m, blk, block_input(m, b), blk->out_b, blk->rc_tmp));
    blk->out = blk->out_b;
    next->in = next->u[0].in = blk->out_b;
    if (next->has_ds) next->ds.in = blk->out_b;
    return MG_OK;
}

static mg_status block_backward(mg_model *m, block *blk, float *g, float *din, int g_masked, int mask_din) {
    for (int i = 0; i + 1 < blk->n_units; i++) {
        unit *u = &blk->u[i];
        u->out = u->out_b;
        blk->u[i + 1].in = u->out_b;
        MG_TRY(unit_recompute(m, u));
    }
    unit *last = &blk->u[blk->n_units - 1];
    size_t elems = unit_out_elems(last);
    int n = last->n, c = last->c_out, hw = last->h_out * last->w_out;
    if (!g_masked) MG_TRY(mg_relu_backward(elems, blk->out, g, g));
    /* downsample branch -> din (written); the identity branch's g is added to din at the end */
    if (blk->has_ds) /* the ds unit has no ReLU, so g is only read */
        MG_TRY(unit_backward(m, &blk->ds, g, din, 0, NULL));
    /* main branch */
    float *dmain = g;
    if (blk->has_se) {
        float *dlast = m->scr[0];
        MG_TRY(mg_chscale_backward(n, c, hw, last->out, blk->se_s, g, dlast, blk->se_ds));
        MG_TRY(mg_sigmoid_backward((size_t)n * c, blk->se_s, blk->se_ds, blk->se_ds));
        float *dh = m->tmp_vec; /* [n, hidden] fits: hidden < dim */
        MG_TRY(mg_linear_backward(n, blk->se_hidden, c, blk->se_h, P(m, blk->se_fc2_w), blk->se_ds, dh,
                                  G(m, blk->se_fc2_w), G(m, blk->se_fc2_b)));
        MG_TRY(mg_relu_backward((size_t)n * blk->se_hidden, blk->se_h, dh, dh));
        float *dpool = blk->se_ds; /* reuse: [n, c] */
        MG_TRY(mg_linear_backward(n, c, blk->se_hidden, blk->se_pool, P(m, blk->se_fc1_w), dh, dpool,
                                  G(m, blk->se_fc1_w), G(m, blk->se_fc1_b)));
        /* average-pool backward, added to the channel-scale gradient */
        float inv = 1.0f / (float)hw;
        for (int i = 0; i < n * c; i++) {
            float v = dpool[i] * inv;
            float *d = dlast + (size_t)i * hw;
            for (int k = 0; k < hw; k++) d[k] += v;
        }
        dmain = dlast;
    }
    /* units in reverse; the first one adds into din */
    float *dy = dmain;
    for (int i = blk->n_units - 1; i >= 0; i--) {
        if (i == 0) {
            const float *mask = mask_din ? blk->in : NULL;
            MG_TRY(unit_backward(m, &blk->u[0], dy, din, blk->has_ds, mask));
            /* identity: din = the first unit's dx + g, one pass (g is still intact: the units read it
             * and write their own buffers) instead of a copy of g into din and a sum into it */
            if (!blk->has_ds)
                MG_TRY(mask ? mg_add_relu_backward((size_t)n * c * hw, din, g, mask, din)
                            : mg_add_forward((size_t)n * c * hw, din, g, din));
        } else {
            float *dx = scratch_other(m, dy, NULL);
            /* unit_backward needs a third buffer distinct from dy and dx */
            MG_TRY(unit_backward(m, &blk->u[i], dy, dx, 0, NULL));
            dy = dx;
        }
    }
    return MG_OK;
}

mg_status mg_model_backward(mg_model *m, const float *dlogits, const float *dembedding, const float *dpooled) {
    if (m && m->wdim)
        return MG_FAIL(MG_ERR_UNSUPPORTED,
                       "model backward: a whitened model (whiten.mean / whiten.P) cannot be trained; train the "
                       "unwhitened checkpoint and whiten it afterwards");
    if (!m || !m->have_forward)
        return MG_FAIL(MG_ERR_INVALID_ARG, "model backward: no forward pass to differentiate");
    if (m->planned_infer)
        return MG_FAIL(MG_ERR_INVALID_ARG,
                       "model backward: the last forward ran in inference mode, which keeps no activations; "
                       "use MG_MODE_EVAL, MG_MODE_FROZEN_BN or MG_MODE_TRAIN to differentiate");
    /* one backward per forward: backward reuses the memory of values it has finished with */
    m->have_forward = 0;
    int n = m->n, dim = m->dim, k = m->spec.num_classes;
    memset(m->dpooled, 0, (size_t)n * dim * sizeof(float));
    if (dlogits)
        MG_TRY(mg_linear_backward(n, dim, k, m->pooled, P(m, m->idx_fc_w), dlogits, m->dpooled,
                                  G(m, m->idx_fc_w), G(m, m->idx_fc_b)));
    if (dembedding) {
        MG_TRY(mg_l2norm_backward(n, dim, m->pooled, dembedding, m->tmp_vec));
        MG_TRY(mg_add_forward((size_t)n * dim, m->dpooled, m->tmp_vec, m->dpooled));
    }
    if (dpooled) MG_TRY(mg_add_forward((size_t)n * dim, m->dpooled, dpooled, m->dpooled));
    block *lb = &m->blocks[m->n_blocks - 1];
    const unit *last = &lb->u[lb->n_units - 1];
    float dp = 0;
    MG_TRY(mg_gem_backward_blocked(n, dim, last->h_out, last->w_out, m->blk, mg_model_get_p(m), lb->out, m->pooled,
                                   m->dpooled, lb->g, m->learn_p ? &dp : NULL));
    if (m->learn_p) G(m, m->idx_p)[0] += dp;
    poison_step(m, m->n_blocks + 1, 0);
    for (int b = m->n_blocks - 1; b >= 0; b--) {
        block *blk = &m->blocks[b];
        poison_step(m, t_bwd(m, b), 1);
        if (b > 0 && m->blocks[b - 1].dropped) MG_TRY(block_restore_out(m, b - 1));
        for (int i = 0; i < 3; i++) m->scr[i] = blk->scr[i];
        /* each block's input gradient goes through the previous block's ReLU in its last pass */
        MG_TRY(block_backward(m, blk, blk->g, b > 0 ? m->blocks[b - 1].g : m->g_stem, b < m->n_blocks - 1, b > 0));
        poison_step(m, t_bwd(m, b), 0);
    }
    poison_step(m, t_bwd(m, -1), 1);
    /* stem: max-pool backward, then conv1/bn1 (no input gradient needed) with its ReLU mask
     * recomputed */
    m->stem.out = m->stem.out_b;
    MG_TRY(unit_recompute(m, &m->stem));
    m->scr[0] = m->stem_scr[0];
    m->scr[1] = m->scr[2] = m->stem_scr[1];
    mg_win2d pool = {3, 3, 2, 2, 1, 1};
    float *dstem = m->scr[0];
    MG_TRY(mg_maxpool2d_backward_blocked(n, 64, m->stem.h_out, m->stem.w_out, m->blk, &pool, m->stem_argmax,
                                         m->g_stem, dstem));
    MG_TRY(unit_backward(m, &m->stem, dstem, NULL, 0, NULL));
    return MG_OK;
}

/* The activation at src ([n, c, h, w] in the plan's layout) in plain NCHW: src itself, or its
 * conversion into the last third of the side buffer (3 e floats, mg_model_activation). */
static const float *activation_nchw(mg_model *m, const float *src, const int dims[4]) {
    if (!m->blk) return src;
    size_t e = (size_t)dims[0] * dims[1] * dims[2] * dims[3];
    float *out = m->side + 2 * e; /* after the recomputation's two buffers (side holds 3 e) */
    if (mg_layout_to_nchw(dims[0], dims[1], dims[2], dims[3], m->blk, src, out) != MG_OK) return NULL;
    return out;
}

const float *mg_model_activation(mg_model *m, const char *name, int dims[4]) {
    if (!m->have_forward || m->planned_infer) return NULL;
    const float *src = NULL;
    int b = -1;
    if (!strcmp(name, "stem")) {
        dims[0] = m->n;
        dims[1] = 64;
        dims[2] = m->pool_h;
        dims[3] = m->pool_w;
        src = m->stem_pool;
    } else if (!strncmp(name, "layer", 5) && name[5] >= '1' && name[5] <= '4' && name[6] == '\0') {
        b = m->stage_end[name[5] - '1'];
        block *blk = &m->blocks[b];
        unit *last = &blk->u[blk->n_units - 1];
        dims[0] = m->n;
        dims[1] = blk->c_out;
        dims[2] = last->h_out;
        dims[3] = last->w_out;
        if (!blk->dropped) src = blk->out;
    } else {
        return NULL;
    }
    size_t e = (size_t)dims[0] * dims[1] * dims[2] * dims[3];
    if (src && !m->blk) return src;
    /* a side buffer: room to recompute a dropped stage output (2 e) and to convert it to NCHW (e) */
    free(m->side);
    m->side = malloc(3 * e * sizeof(float));
    if (!m->side) return NULL;
    if (!src) { /* not kept by the training plan (its memory was reused later in the forward): recomputed */
        block *blk = &m->blocks[b];
        if (block_recompute_out(m, blk, block_input(m, b), m->side, m->side + e) != MG_OK) return NULL;
        src = m->side;
    }
    return activation_nchw(m, src, dims);
}
