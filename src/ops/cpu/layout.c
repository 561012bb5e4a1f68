/* layout.c: conversions between the canonical NCHW layout and the channel-blocked layout nChw<B>c
 * (ops_layers.h, "Channel-blocked layout") that the training path keeps between its oneDNN
 * convolutions; parallel over (image, channel block) pairs. */
#include <string.h>

#include "ops/cpu/layers_util.h"

typedef struct {
    int n, c, hw, b;
    const float *src;
    float *dst;
    int to_blocked;
} layout_ctx;

static void layout_range(void *p, size_t i0, size_t i1) {
    const layout_ctx *t = p;
    const size_t hw = (size_t)t->hw, b = (size_t)t->b, cb_n = (size_t)t->c / b;
    for (size_t i = i0; i < i1; i++) { /* i = image * cb_n + channel block */
        size_t img = i / cb_n, cb = i % cb_n;
        size_t blk_off = (img * cb_n + cb) * hw * b;               /* [img][cb][hw][b] */
        size_t pln_off = (img * (size_t)t->c + cb * b) * hw;       /* [img][cb*b + l][hw] */
        if (t->to_blocked) {
            for (size_t l = 0; l < b; l++) {
                const float *s = t->src + pln_off + l * hw;
                float *d = t->dst + blk_off + l;
                for (size_t k = 0; k < hw; k++) d[k * b] = s[k];
            }
        } else {
            for (size_t l = 0; l < b; l++) {
                const float *s = t->src + blk_off + l;
                float *d = t->dst + pln_off + l * hw;
                for (size_t k = 0; k < hw; k++) d[k] = s[k * b];
            }
        }
    }
}

static mg_status layout_convert(const char *op, int n, int c, int h, int w, int block, const float *src,
                                float *dst, int to_blocked) {
    MG_CHECK_POS(op, n);
    MG_CHECK_POS(op, c);
    MG_CHECK_POS(op, h);
    MG_CHECK_POS(op, w);
    MG_CHECK_PTR(op, src);
    MG_CHECK_PTR(op, dst);
    MG_TRY(mg_layers_check_block(op, c, block));
    if (src == dst) return MG_FAIL(MG_ERR_INVALID_ARG, "%s: dst must not alias src", op);
    size_t total = (size_t)n * c * h * w;
    if (block <= 1) {
        memcpy(dst, src, total * sizeof *dst);
        return MG_OK;
    }
    layout_ctx t = {n, c, h * w, block, src, dst, to_blocked};
    mg_layers_parallel_for((size_t)n * (size_t)(c / block), 1, layout_range, &t);
    return MG_OK;
}

mg_status mg_layout_to_blocked(int n, int c, int h, int w, int block, const float *x, float *y) {
    return layout_convert("layout_to_blocked", n, c, h, w, block, x, y, 1);
}

mg_status mg_layout_to_nchw(int n, int c, int h, int w, int block, const float *x, float *y) {
    return layout_convert("layout_to_nchw", n, c, h, w, block, x, y, 0);
}
