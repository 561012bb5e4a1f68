/* ops.h: the CPU operator library: forward/backward pairs over NCHW float32 buffers with
 * PyTorch semantics. This umbrella header holds what all ops share (implementation selection);
 * each op family has its own header, included below.
 *
 * Gradient rule (docs/CONVENTIONS.md): parameter gradients ACCUMULATE (+=) into the caller's
 * buffers, so gradient accumulation and shared parameters come for free; activation gradients
 * are WRITTEN (=). Every op validates its arguments (null buffers, impossible shapes) and
 * returns MG_ERR_INVALID_ARG with a message instead of crashing. */
#ifndef MULTIGRAIN_OPS_H
#define MULTIGRAIN_OPS_H

#include <stdint.h>

#include "multigrain/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Which implementation ops use. FAST = oneDNN / OpenBLAS / vectorised loops (default);
 * REFERENCE = plain C loops written for clarity, the test oracle's twin. Chosen at run time:
 * mg_ops_set_impl(), or the environment variable MG_OPS=reference|fast read at first use. */
typedef enum mg_ops_impl { MG_OPS_FAST = 0, MG_OPS_REFERENCE = 1 } mg_ops_impl;

void mg_ops_set_impl(mg_ops_impl impl);
mg_ops_impl mg_ops_get_impl(void);

/* Number of compute threads ops may use (default: online cores; --threads sets it). Also applied
 * to the OpenMP runtime inside oneDNN/OpenBLAS. oneDNN fixes a primitive's thread count when it is
 * created: op plans run on the count current at their creation (the model re-plans on a change). */
mg_status mg_ops_set_threads(int threads);
int mg_ops_get_threads(void);
/* The calling thread's own count, overriding the process-wide one for the ops it calls (0: none);
 * returns the previous override. The model uses it to run an inference forward on fewer threads
 * while other processes keep cores busy, without changing the count other threads see. */
int mg_ops_set_thread_override(int threads);

#ifdef __cplusplus
}
#endif

/* op families */
#include "multigrain/ops_conv.h"
#include "multigrain/ops_layers.h"

#endif
