/* batchnorm_internal.h: kernels of batchnorm.c shared with batchnorm_sync.c, and the oneDNN
 * batch-norm path (batchnorm_dnnl.c) called by batchnorm.c; each of the latter
 * returns MG_ERR_UNSUPPORTED (without recording an error) when it does not handle a call, so the caller
 * falls back to the plain C kernels. The path is OFF by default: on this project's 2-core machines
 * oneDNN 2.6's NCHW batch norm (ncsp_bnorm, not JIT) measured slower than our loops and its OpenMP
 * threads degrade badly when the cores are shared (docs/PERFORMANCE.md). MG_BN_ONEDNN=1 turns it on. */
#ifndef MG_OPS_CPU_BATCHNORM_INTERNAL_H
#define MG_OPS_CPU_BATCHNORM_INTERNAL_H

#include "multigrain/ops_layers.h"

/* The fast path's per-channel pieces, shared with the synchronised batch norm (batchnorm_sync.c), so
 * that both compute the same bits:
 * y = relu?(x * save_invstd * weight + (bias - save_mean * save_invstd * weight)) over all channels
 * (y may equal x; a->relu applies the ReLU in the same pass), on the thread pool on the fast path; */
void mg_bn2d_affine_saved(const mg_bn2d_args *a, const float *x, const float *weight, const float *bias,
                          const float *save_mean, const float *save_invstd, float *y);
/* dx = (g - mdy - (x - mean) k) scale over one plane of n values (dx may equal g). */
void mg_bn2d_dx_plane(const float *g, const float *x, float *dx, size_t n, float mean, float k, float mdy,
                      float scale);

/* Whether the oneDNN path is used: MG_BN_ONEDNN=1 in the environment (read once) or the setter. */
int mg_bn2d_dnnl_enabled(void);
void mg_bn2d_dnnl_set_enabled(int on);

mg_status mg_bn2d_dnnl_forward(const mg_bn2d_args *a, const float *x, const float *weight, const float *bias,
                               float *running_mean, float *running_var, float *save_mean, float *save_invstd,
                               float *y);
mg_status mg_bn2d_dnnl_backward(const mg_bn2d_args *a, const float *x, const float *dy, const float *weight,
                                const float *save_mean, const float *save_invstd, float *dx, float *dweight,
                                float *dbias);

#endif
