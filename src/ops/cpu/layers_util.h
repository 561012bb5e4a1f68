/* layers_util.h: helpers shared by the layer ops (ops_layers.h): implementation choice, argument
 * checks that fail with MG_ERR_INVALID_ARG, and a coarse parallel-for over mg_pool_global(). */
#ifndef MG_OPS_CPU_LAYERS_UTIL_H
#define MG_OPS_CPU_LAYERS_UTIL_H

#include <stddef.h>

#include "multigrain/ops.h"
#include "multigrain/ops_layers.h"
#include "multigrain/status.h"

/* 1 when the fast path should run (mg_layers_force_impl() on this thread, else mg_ops_get_impl()). */
int mg_layers_use_fast(void);

/* Calls fn(ctx, begin, end) over [0, n) in contiguous chunks of at least `grain` items, spread over the
 * global pool (at most a few chunks per thread); runs inline when there is one chunk or one thread. */
typedef void (*mg_range_fn)(void *ctx, size_t begin, size_t end);
void mg_layers_parallel_for(size_t n, size_t grain, mg_range_fn fn, void *ctx);
/* MG_ERR_INVALID_ARG unless block is 0 or 1 (NCHW) or divides the c channels (the channel-blocked layout
 * nChw<block>c of ops_layers.h). */
mg_status mg_layers_check_block(const char *op, int c, int block);
/* Where plane pl (= image * c + channel) of a tensor of c channels with `size` elements per plane starts,
 * and in *stride the distance between its consecutive elements: pl * size and 1 in NCHW (block 0 or 1),
 * the channel's lane in its block and `block` in nChw<block>c. */
static inline size_t mg_layers_plane_at(size_t pl, size_t c, size_t size, int block, size_t *stride) {
    if (block <= 1) {
        *stride = 1;
        return pl * size;
    }
    size_t b = (size_t)block, img = pl / c, ch = pl % c;
    *stride = b;
    return (img * (c / b) + ch / b) * size * b + ch % b;
}

#define MG_CHECK_PTR(op, p)                                                                        \
    do {                                                                                           \
        if (!(p)) return MG_FAIL(MG_ERR_INVALID_ARG, "%s: buffer '%s' is NULL", op, #p);             \
    } while (0)

#define MG_CHECK_POS(op, v)                                                                        \
    do {                                                                                           \
        if ((v) <= 0)                                                                              \
            return MG_FAIL(MG_ERR_INVALID_ARG, "%s: %s must be > 0, found %lld", op, #v,             \
                           (long long)(v));                                                        \
    } while (0)

#endif
