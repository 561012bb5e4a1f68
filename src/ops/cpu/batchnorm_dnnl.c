/* batchnorm_dnnl.c: batch norm 2d on oneDNN (NCHW f32, scale+shift), an opt-in fast path of batchnorm.c
 * (off by default, see batchnorm_internal.h).
 * Primitives are created once per (shape, eps, mode) and cached (a small table under a mutex, never
 * evicted; a network has a few dozen BN shapes); memory objects are re-pointed at the caller's buffers on
 * every call, and the per-channel scratch (variance, diff scale/shift) lives in the cache entry, so a
 * call allocates nothing once warm. oneDNN writes diff_scale/diff_shift, so they land in scratch and
 * are added to the caller's dweight/dbias (gradient rule: parameter gradients accumulate).
 * Declines (MG_ERR_UNSUPPORTED, nothing recorded) without weight/bias, without dx, on the channel-blocked
 * layout (a->block > 1), when the table is full, or when oneDNN cannot create the primitive; batchnorm.c
 * then runs its plain C kernels. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <oneapi/dnnl/dnnl.h>

#include "ops/cpu/batchnorm_internal.h"
#include "ops/cpu/conv2d_internal.h" /* mg_omp_apply_threads() */

#define BN_CACHE_MAX 128

typedef struct bn_prims {
    int n, c, h, w, train, threads; /* threads: oneDNN fixes it at creation, so it is part of the key */
    float eps;
    dnnl_primitive_t fwd, bwd; /* fwd: training (computes stats) or inference with global stats */
    dnnl_memory_t src, dst, mean, var, scale, shift, dsrc, ddst, dscale, dshift;
    float *scratch; /* [4c]: var, diff scale, diff shift, scale for the backward */
} bn_prims;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static bn_prims g_cache[BN_CACHE_MAX];
static int g_count;
static dnnl_engine_t g_engine;
static dnnl_stream_t g_stream;
static int g_broken; /* engine creation failed once: stop trying */

#define DT(expr)                                                                                   \
    do {                                                                                           \
        if ((expr) != dnnl_success) goto fail;                                                     \
    } while (0)

static int prims_create(bn_prims *p) {
    dnnl_memory_desc_t data_md, stat_md;
    dnnl_dims_t dims = {p->n, p->c, p->h, p->w}, cd = {p->c};
    dnnl_batch_normalization_desc_t fd, bd;
    dnnl_primitive_desc_t fpd = NULL, hint = NULL, bpd = NULL;
    unsigned flags = dnnl_use_scale | dnnl_use_shift | (p->train ? 0u : (unsigned)dnnl_use_global_stats);
    DT(dnnl_memory_desc_init_by_tag(&data_md, 4, dims, dnnl_f32, dnnl_nchw));
    DT(dnnl_memory_desc_init_by_tag(&stat_md, 1, cd, dnnl_f32, dnnl_a));
    DT(dnnl_batch_normalization_forward_desc_init(&fd, p->train ? dnnl_forward_training : dnnl_forward_inference,
                                                  &data_md, p->eps, flags));
    DT(dnnl_primitive_desc_create(&fpd, &fd, NULL, g_engine, NULL));
    DT(dnnl_primitive_create(&p->fwd, fpd));
    /* the backward's hint must be a forward-training descriptor with the same flags */
    if (p->train) {
        hint = fpd;
    } else {
        dnnl_batch_normalization_desc_t hd;
        DT(dnnl_batch_normalization_forward_desc_init(&hd, dnnl_forward_training, &data_md, p->eps, flags));
        DT(dnnl_primitive_desc_create(&hint, &hd, NULL, g_engine, NULL));
    }
    DT(dnnl_batch_normalization_backward_desc_init(&bd, dnnl_backward, &data_md, &data_md, p->eps, flags));
    DT(dnnl_primitive_desc_create(&bpd, &bd, NULL, g_engine, hint));
    DT(dnnl_primitive_create(&p->bwd, bpd));
    dnnl_memory_t *mems[] = {&p->src, &p->dst, &p->dsrc, &p->ddst};
    for (int i = 0; i < 4; i++) DT(dnnl_memory_create(mems[i], &data_md, g_engine, DNNL_MEMORY_NONE));
    dnnl_memory_t *stats[] = {&p->mean, &p->var, &p->scale, &p->shift, &p->dscale, &p->dshift};
    for (int i = 0; i < 6; i++) DT(dnnl_memory_create(stats[i], &stat_md, g_engine, DNNL_MEMORY_NONE));
    p->scratch = calloc((size_t)4 * p->c, sizeof *p->scratch);
    if (!p->scratch) goto fail;
    dnnl_primitive_desc_destroy(fpd);
    if (hint != fpd) dnnl_primitive_desc_destroy(hint);
    dnnl_primitive_desc_destroy(bpd);
    return 1;
fail:
    if (fpd) dnnl_primitive_desc_destroy(fpd);
    if (hint && hint != fpd) dnnl_primitive_desc_destroy(hint);
    if (bpd) dnnl_primitive_desc_destroy(bpd);
    return 0;
}

/* Returns the cached primitives for this call (g_mu held), or NULL to decline. */
static bn_prims *prims_get(const mg_bn2d_args *a) {
    if (g_broken) return NULL;
    if (!g_engine) {
        if (dnnl_engine_create(&g_engine, dnnl_cpu, 0) != dnnl_success ||
            dnnl_stream_create(&g_stream, g_engine, dnnl_stream_default_flags) != dnnl_success) {
            g_broken = 1;
            return NULL;
        }
    }
    int train = a->mode == MG_BN_TRAIN, threads = mg_ops_get_threads();
    for (int i = 0; i < g_count; i++) {
        bn_prims *p = &g_cache[i];
        if (p->n == a->n && p->c == a->c && p->h == a->h && p->w == a->w && p->train == train && p->threads == threads &&
            p->eps == a->eps)
            return p->fwd ? p : NULL; /* fwd NULL: creation failed before, keep declining */
    }
    if (g_count == BN_CACHE_MAX) return NULL;
    bn_prims *p = &g_cache[g_count++];
    memset(p, 0, sizeof *p);
    p->n = a->n, p->c = a->c, p->h = a->h, p->w = a->w, p->train = train, p->eps = a->eps, p->threads = threads;
    mg_omp_apply_threads();
    if (!prims_create(p)) {
        /* keep the entry as a negative cache; what was created stays (a handful of objects at most) */
        p->fwd = NULL;
        return NULL;
    }
    return p;
}

static int g_enabled = -1;

int mg_bn2d_dnnl_enabled(void) {
    if (g_enabled < 0) {
        const char *e = getenv("MG_BN_ONEDNN");
        g_enabled = e && e[0] == '1';
    }
    return g_enabled;
}

void mg_bn2d_dnnl_set_enabled(int on) { g_enabled = on ? 1 : 0; }

static int set(dnnl_memory_t m, const void *ptr) { return dnnl_memory_set_data_handle(m, (void *)ptr) == dnnl_success; }

mg_status mg_bn2d_dnnl_forward(const mg_bn2d_args *a, const float *x, const float *weight, const float *bias,
                               float *running_mean, float *running_var, float *save_mean, float *save_invstd,
                               float *y) {
    if (!weight || !bias || a->block > 1) return MG_ERR_UNSUPPORTED;
    pthread_mutex_lock(&g_mu);
    bn_prims *p = prims_get(a);
    if (!p) {
        pthread_mutex_unlock(&g_mu);
        return MG_ERR_UNSUPPORTED;
    }
    int c = a->c, ok;
    float *var = p->scratch;
    if (p->train) {
        ok = set(p->src, x) && set(p->dst, y) && set(p->mean, save_mean) && set(p->var, var) &&
             set(p->scale, weight) && set(p->shift, bias);
    } else {
        ok = set(p->src, x) && set(p->dst, y) && set(p->mean, running_mean) && set(p->var, running_var) &&
             set(p->scale, weight) && set(p->shift, bias);
    }
    if (ok) {
        dnnl_exec_arg_t args[6] = {{DNNL_ARG_SRC, p->src},     {DNNL_ARG_DST, p->dst},
                                   {DNNL_ARG_MEAN, p->mean},   {DNNL_ARG_VARIANCE, p->var},
                                   {DNNL_ARG_SCALE, p->scale}, {DNNL_ARG_SHIFT, p->shift}};
        mg_omp_apply_threads();
        ok = dnnl_primitive_execute(p->fwd, g_stream, 6, args) == dnnl_success &&
             dnnl_stream_wait(g_stream) == dnnl_success;
    }
    if (!ok) {
        pthread_mutex_unlock(&g_mu);
        return MG_FAIL(MG_ERR_INTERNAL, "bn2d_forward (oneDNN): executing the batch-norm primitive failed");
    }
    if (p->train) {
        double count = (double)a->n * a->h * a->w;
        for (int i = 0; i < c; i++) {
            save_invstd[i] = (float)(1.0 / sqrt((double)var[i] + (double)a->eps));
            if (running_mean) running_mean[i] = (1.0f - a->momentum) * running_mean[i] + a->momentum * save_mean[i];
            if (running_var)
                running_var[i] = (1.0f - a->momentum) * running_var[i] +
                                 a->momentum * (float)((double)var[i] * count / (count - 1.0));
        }
    } else {
        for (int i = 0; i < c; i++) {
            save_mean[i] = running_mean[i];
            save_invstd[i] = (float)(1.0 / sqrt((double)running_var[i] + (double)a->eps));
        }
    }
    pthread_mutex_unlock(&g_mu);
    return MG_OK;
}

mg_status mg_bn2d_dnnl_backward(const mg_bn2d_args *a, const float *x, const float *dy, const float *weight,
                                const float *save_mean, const float *save_invstd, float *dx, float *dweight,
                                float *dbias) {
    if (!weight || !dx || a->block > 1) return MG_ERR_UNSUPPORTED;
    pthread_mutex_lock(&g_mu);
    bn_prims *p = prims_get(a);
    if (!p) {
        pthread_mutex_unlock(&g_mu);
        return MG_ERR_UNSUPPORTED;
    }
    int c = a->c;
    float *var = p->scratch, *dsc = var + c, *dsh = dsc + c, *shift = dsh + c;
    /* oneDNN wants the variance: invert invstd = 1/sqrt(var+eps); it adds eps back, so the value it
     * divides by is 1/invstd to float rounding even when var << eps */
    for (int i = 0; i < c; i++) var[i] = 1.0f / (save_invstd[i] * save_invstd[i]) - a->eps;
    memset(shift, 0, (size_t)c * sizeof *shift); /* the shift is not used by the backward */
    int ok = set(p->src, x) && set(p->ddst, dy) && set(p->dsrc, dx) && set(p->mean, save_mean) &&
             set(p->var, var) && set(p->scale, weight) && set(p->shift, shift) && set(p->dscale, dsc) &&
             set(p->dshift, dsh);
    if (ok) {
        dnnl_exec_arg_t args[9] = {{DNNL_ARG_SRC, p->src},         {DNNL_ARG_DIFF_DST, p->ddst},
                                   {DNNL_ARG_MEAN, p->mean},       {DNNL_ARG_VARIANCE, p->var},
                                   {DNNL_ARG_SCALE, p->scale},     {DNNL_ARG_SHIFT, p->shift},
                                   {DNNL_ARG_DIFF_SRC, p->dsrc},   {DNNL_ARG_DIFF_SCALE, p->dscale},
                                   {DNNL_ARG_DIFF_SHIFT, p->dshift}};
        mg_omp_apply_threads();
        ok = dnnl_primitive_execute(p->bwd, g_stream, 9, args) == dnnl_success &&
             dnnl_stream_wait(g_stream) == dnnl_success;
    }
    if (!ok) {
        pthread_mutex_unlock(&g_mu);
        return MG_FAIL(MG_ERR_INTERNAL, "bn2d_backward (oneDNN): executing the batch-norm primitive failed");
    }
    for (int i = 0; i < c; i++) {
        if (dweight) dweight[i] += dsc[i];
        if (dbias) dbias[i] += dsh[i];
    }
    pthread_mutex_unlock(&g_mu);
    return MG_OK;
}
