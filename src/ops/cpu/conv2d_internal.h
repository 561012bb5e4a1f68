/* conv2d_internal.h: what conv2d.c (dispatch), conv2d_ref.c (plain loops) and conv2d_dnnl.c
 * (oneDNN) share. The reference kernels exist in float and double (the double ones serve the
 * finite-difference gradient test); they take a validated descriptor and the output size. */
#ifndef MG_OPS_CPU_CONV2D_INTERNAL_H
#define MG_OPS_CPU_CONV2D_INTERNAL_H

#include "multigrain/ops_conv.h"

/* Reference kernels. forward and backward_data WRITE their output; backward_weights ACCUMULATES
 * into dw and db (db may be NULL). Shapes as in ops_conv.h; p, q = output height and width. */
void mg_conv2d_ref_forward_f32(const mg_conv2d_desc *d, int p, int q, const float *x, const float *w,
                               const float *b, float *y);
void mg_conv2d_ref_backward_data_f32(const mg_conv2d_desc *d, int p, int q, const float *dy, const float *w,
                                     float *dx);
void mg_conv2d_ref_backward_weights_f32(const mg_conv2d_desc *d, int p, int q, const float *x,
                                        const float *dy, float *dw, float *db);
void mg_conv2d_ref_forward_f64(const mg_conv2d_desc *d, int p, int q, const double *x, const double *w,
                               const double *b, double *y);
void mg_conv2d_ref_backward_data_f64(const mg_conv2d_desc *d, int p, int q, const double *dy, const double *w,
                                     double *dx);
void mg_conv2d_ref_backward_weights_f64(const mg_conv2d_desc *d, int p, int q, const double *x,
                                        const double *dy, double *dw, double *db);

#if MG_HAVE_ONEDNN
#include <oneapi/dnnl/dnnl.h>

/* The process's oneDNN CPU engine, created on first use (shared by every oneDNN file). */
mg_status mg_dnnl_engine(dnnl_engine_t *engine);
/* oneDNN's format tag of the channel-blocked layout nChw<block>c (block 16, 8 or 4; else nchw). */
dnnl_format_tag_t mg_dnnl_block_tag(int block);
/* Whether an implementation name (dnnl_query_impl_info_str) is one of oneDNN's generic kernels,
 * reference or gemm-based, the slow fallbacks of the blocked layouts. */
int mg_dnnl_impl_is_generic(const char *impl);

/* oneDNN backend (conv2d_dnnl.c). init creates the primitives for plan->d / plan->layout and sets
 * plan->impl and plan->ws_bytes; the workspace is bound by mg_conv2d_dnnl_bind_workspace before
 * the first execution (and again whenever it changes). */
mg_status mg_conv2d_dnnl_init(mg_conv2d_plan *plan);
void mg_conv2d_dnnl_free(mg_conv2d_plan *plan);
mg_status mg_conv2d_dnnl_bind_workspace(mg_conv2d_plan *plan);
mg_status mg_conv2d_dnnl_forward(mg_conv2d_plan *plan, const float *x, const float *w, const float *b,
                                 float *y);
mg_status mg_conv2d_dnnl_backward_data(mg_conv2d_plan *plan, const float *dy, const float *w, float *dx);
mg_status mg_conv2d_dnnl_backward_weights(mg_conv2d_plan *plan, const float *x, const float *dy, float *dw,
                                          float *db);
/* The layout each op (forward, backward data, backward weights) runs in: PLAIN or BLOCKED. */
void mg_conv2d_dnnl_op_layouts(const mg_conv2d_plan *plan, mg_conv2d_layout out[3]);
void mg_conv2d_dnnl_kernel_names(const mg_conv2d_plan *plan, const char **fwd, const char **bwd_data,
                                 const char **bwd_weights);
#endif

/* Sets the OpenMP thread count of the calling thread (used by oneDNN) to mg_ops_get_threads().
 * A no-op when no OpenMP runtime is loaded. Defined in runtime.c. */
void mg_omp_apply_threads(void);
/* Sets the calling thread's OpenMP thread count to n (a primitive that should run narrower than
 * mg_ops_get_threads(); mg_omp_apply_threads() restores it). */
void mg_omp_set_threads(int n);

#endif
