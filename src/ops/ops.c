/* ops.c: run-time selection of the op implementation and the op thread count (see ops.h). */
#include "multigrain/ops.h"

#include <stdlib.h>
#include <string.h>

#include "core/threadpool.h"

static int g_impl = -1;

mg_ops_impl mg_ops_get_impl(void) {
    if (g_impl < 0) {
        const char *e = getenv("MG_OPS");
        g_impl = (e && !strcmp(e, "reference")) ? MG_OPS_REFERENCE : MG_OPS_FAST;
    }
    return (mg_ops_impl)g_impl;
}

void mg_ops_set_impl(mg_ops_impl impl) { g_impl = (int)impl; }

mg_status mg_ops_set_threads(int threads) {
    MG_TRY(mg_pool_global_set_threads(threads));
    return MG_OK;
}

static _Thread_local int g_override;

int mg_ops_set_thread_override(int threads) {
    int prev = g_override;
    g_override = threads > 0 ? threads : 0;
    return prev;
}

int mg_ops_get_threads(void) { return g_override ? g_override : mg_pool_default_threads(); }
