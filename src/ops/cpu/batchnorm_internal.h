/* batchnorm_internal.h: the oneDNN batch-norm path (batchnorm_dnnl.c) called by batchnorm.c; each
 * returns MG_ERR_UNSUPPORTED (without recording an error) when it does not handle a call, so the caller
 * falls back to the plain C kernels. The path is OFF by default: on this project's 2-core machines
 * oneDNN 2.6's NCHW batch norm (ncsp_bnorm, not JIT) measured slower than our loops and its OpenMP
 * threads degrade badly when the cores are shared (docs/PERFORMANCE.md). MG_BN_ONEDNN=1 turns it on. */
#ifndef MG_OPS_CPU_BATCHNORM_INTERNAL_H
#define MG_OPS_CPU_BATCHNORM_INTERNAL_H

#include "multigrain/ops_layers.h"

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
