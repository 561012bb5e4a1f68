/* pool.c: max pool, average pool (count_include_pad) and adaptive average pool 2d, forward and backward.
 * One kernel per (n,c) plane; the reference runs planes serially, the fast path spreads them over the
 * thread pool. Max pool also takes the channel-blocked layout nChw<B>c (mg_maxpool2d_*_blocked): the
 * reference walks each channel's plane with stride B, the fast path runs one kernel per (image, channel
 * block) whose innermost loops go over the B contiguous channels. */
#include <math.h>
#include <string.h>

#include "ops/cpu/layers_util.h"

static mg_status check_shape(const char *op, int n, int c, int h, int w) {
    MG_CHECK_POS(op, n);
    MG_CHECK_POS(op, c);
    MG_CHECK_POS(op, h);
    MG_CHECK_POS(op, w);
    return MG_OK;
}

static mg_status win_out(const char *op, const mg_win2d *win, int h, int w, int *oh, int *ow) {
    if (!win) return MG_FAIL(MG_ERR_INVALID_ARG, "%s: window is NULL", op);
    if (win->kh <= 0 || win->kw <= 0 || win->sh <= 0 || win->sw <= 0 || win->ph < 0 || win->pw < 0)
        return MG_FAIL(MG_ERR_INVALID_ARG, "%s: expected kernel, stride > 0 and padding >= 0, found k=%dx%d s=%dx%d p=%dx%d",
                       op, win->kh, win->kw, win->sh, win->sw, win->ph, win->pw);
    if (win->ph > win->kh / 2 || win->pw > win->kw / 2)
        return MG_FAIL(MG_ERR_INVALID_ARG, "%s: padding must be at most half the kernel, found p=%dx%d for k=%dx%d",
                       op, win->ph, win->pw, win->kh, win->kw);
    if (h + 2 * win->ph < win->kh || w + 2 * win->pw < win->kw)
        return MG_FAIL(MG_ERR_INVALID_ARG, "%s: kernel %dx%d larger than padded input %dx%d", op, win->kh, win->kw,
                       h + 2 * win->ph, w + 2 * win->pw);
    *oh = (h + 2 * win->ph - win->kh) / win->sh + 1;
    *ow = (w + 2 * win->pw - win->kw) / win->sw + 1;
    return MG_OK;
}

mg_status mg_win2d_out_size(const mg_win2d *win, int h, int w, int *oh, int *ow) {
    const char *op = "win2d_out_size";
    MG_CHECK_PTR(op, oh);
    MG_CHECK_PTR(op, ow);
    MG_CHECK_POS(op, h);
    MG_CHECK_POS(op, w);
    return win_out(op, win, h, w, oh, ow);
}

typedef struct pool_ctx {
    int h, w, oh, ow;
    int c, block; /* block > 1: x, y, argmax, dy, dx are nChw<block>c with c channels; else NCHW */
    mg_win2d win;
    const float *x, *dy;
    float *y, *dx;
    int32_t *argmax;
    const int32_t *argmax_in;
} pool_ctx;

/* The input rows (or columns) [*lo, *hi) under output position o of a window of size ks, stride st
 * and padding pad, clamped to [0, lim). */
static inline void win_span(int o, int st, int pad, int ks, int lim, int *lo, int *hi) {
    int a = o * st - pad, b = a + ks;
    *lo = a < 0 ? 0 : a;
    *hi = b > lim ? lim : b;
}

/* Plane pl of a buffer of planes of `size` elements, in the context's layout (mg_layers_plane_at). */
static inline size_t plane_at(const pool_ctx *t, size_t pl, size_t size, size_t *stride) {
    return mg_layers_plane_at(pl, (size_t)t->c, size, t->block, stride);
}

static void run_planes(int fast, size_t planes, mg_range_fn fn, pool_ctx *t) {
    if (fast)
        mg_layers_parallel_for(planes, 1, fn, t);
    else
        fn(t, 0, planes);
}

/* ---- max pool ---- */
static void maxpool_fwd_range(void *p, size_t b, size_t e) {
    pool_ctx *t = p;
    const mg_win2d *k = &t->win;
    size_t hw = (size_t)t->h * t->w, ohw = (size_t)t->oh * t->ow;
    for (size_t pl = b; pl < e; pl++) {
        size_t xs, ys, yo = plane_at(t, pl, ohw, &ys);
        const float *x = t->x + plane_at(t, pl, hw, &xs);
        float *y = t->y + yo;
        int32_t *am = t->argmax ? t->argmax + yo : NULL;
        for (int oy = 0; oy < t->oh; oy++) {
            int y0, y1;
            win_span(oy, k->sh, k->ph, k->kh, t->h, &y0, &y1);
            for (int ox = 0; ox < t->ow; ox++) {
                int x0, x1;
                win_span(ox, k->sw, k->pw, k->kw, t->w, &x0, &x1);
                /* torch: start at -inf with the first valid index; update on > or NaN (first max wins) */
                float best = -INFINITY;
                int bi = y0 * t->w + x0;
                for (int iy = y0; iy < y1; iy++)
                    for (int ix = x0; ix < x1; ix++) {
                        float v = x[(size_t)(iy * t->w + ix) * xs];
                        if (v > best || isnan(v)) {
                            best = v;
                            bi = iy * t->w + ix;
                        }
                    }
                y[(size_t)(oy * t->ow + ox) * ys] = best;
                if (am) am[(size_t)(oy * t->ow + ox) * ys] = bi;
            }
        }
    }
}

/* Fast max pool forward, separable: for each output row, a vertical pass over the window's input rows
 * keeps, per input column, the max and the FIRST row holding it (vectorisable); a horizontal pass over each
 * window's columns then takes the max, on ties the smaller row, then the earlier column -- exactly the
 * first maximum in row-major window order. Planes containing NaN (where torch's rule is "the last NaN
 * wins") and planes wider than the stack scratch use the reference kernel. */
#define MP_MAX_W 2048

__attribute__((noinline)) static int plane_has_nan(const float *restrict x, size_t n) {
    int acc[8] = {0, 0, 0, 0, 0, 0, 0, 0}, bad = 0;
    size_t n8 = n & ~(size_t)7;
    for (size_t i = 0; i < n8; i += 8)
        for (int k = 0; k < 8; k++) acc[k] |= x[i + k] != x[i + k];
    for (size_t i = n8; i < n; i++) bad |= x[i] != x[i];
    for (int k = 0; k < 8; k++) bad |= acc[k];
    return bad;
}

__attribute__((noinline)) static void vmax_row(const float *restrict r, float *restrict vm, int32_t *restrict vr,
                                               size_t n, int32_t row) {
    size_t n8 = n & ~(size_t)7;
    for (size_t i = 0; i < n8; i++) { /* mask select: the form -O2 if-converts and vectorises */
        float v = r[i], m = vm[i];
        int32_t mask = -(int32_t)(v > m);
        vm[i] = v > m ? v : m;
        vr[i] = (row & mask) | (vr[i] & ~mask);
    }
    for (size_t i = n8; i < n; i++)
        if (r[i] > vm[i]) vm[i] = r[i], vr[i] = row;
}

static void maxpool_fwd_fast_range(void *p, size_t b, size_t e) {
    pool_ctx *t = p;
    const mg_win2d *k = &t->win;
    size_t hw = (size_t)t->h * t->w, ohw = (size_t)t->oh * t->ow;
    if (t->w > MP_MAX_W) {
        maxpool_fwd_range(p, b, e);
        return;
    }
    float vm[MP_MAX_W];
    int32_t vr[MP_MAX_W];
    for (size_t pl = b; pl < e; pl++) {
        const float *x = t->x + pl * hw;
        if (plane_has_nan(x, hw)) {
            maxpool_fwd_range(p, pl, pl + 1);
            continue;
        }
        float *y = t->y + pl * ohw;
        int32_t *am = t->argmax ? t->argmax + pl * ohw : NULL;
        for (int oy = 0; oy < t->oh; oy++) {
            int y0, y1;
            win_span(oy, k->sh, k->ph, k->kh, t->h, &y0, &y1);
            memcpy(vm, x + (size_t)y0 * t->w, (size_t)t->w * sizeof *vm);
            for (int ix = 0; ix < t->w; ix++) vr[ix] = y0;
            for (int iy = y0 + 1; iy < y1; iy++) vmax_row(x + (size_t)iy * t->w, vm, vr, (size_t)t->w, iy);
            for (int ox = 0; ox < t->ow; ox++) {
                int x0, x1;
                win_span(ox, k->sw, k->pw, k->kw, t->w, &x0, &x1);
                float best = vm[x0];
                int32_t brow = vr[x0], bcol = x0;
                for (int ix = x0 + 1; ix < x1; ix++) {
                    float v = vm[ix];
                    int32_t r = vr[ix];
                    int take = (v > best) | ((v == best) & (r < brow));
                    best = take ? v : best;
                    brow = take ? r : brow;
                    bcol = take ? ix : bcol;
                }
                y[oy * t->ow + ox] = best;
                if (am) am[oy * t->ow + ox] = brow * t->w + bcol;
            }
        }
    }
}

static void maxpool_bwd_range(void *p, size_t b, size_t e) {
    pool_ctx *t = p;
    size_t hw = (size_t)t->h * t->w, ohw = (size_t)t->oh * t->ow;
    for (size_t pl = b; pl < e; pl++) {
        size_t xs, ys, yo = plane_at(t, pl, ohw, &ys);
        float *dx = t->dx + plane_at(t, pl, hw, &xs);
        const float *dy = t->dy + yo;
        const int32_t *am = t->argmax_in + yo;
        if (xs == 1) {
            memset(dx, 0, hw * sizeof *dx);
            for (size_t i = 0; i < ohw; i++) dx[am[i]] += dy[i];
        } else {
            for (size_t i = 0; i < hw; i++) dx[i * xs] = 0.0f;
            for (size_t i = 0; i < ohw; i++) dx[(size_t)am[i * ys] * xs] += dy[i * ys];
        }
    }
}

/* ---- max pool on nChw<B>c, fast path: one (image, channel block) per item ---- */
#define MP_LANES 16

/* Max pool of `lanes` channels whose elements lie `st` floats apart from one position to the next
 * (st = B, lanes = B or a slice of the block). Per output, the window is walked in row-major order
 * with the torch rule of the reference kernel (take on v > best or v NaN, starting from the first valid
 * element), each step a mask select over the lanes: the form -O2 vectorises when lanes and st are the
 * compile-time constants 8 or 16 (the kernel is inlined into those callers). NaN needs no fallback:
 * "v != v" is part of the select, so the last NaN wins exactly as in the reference. */
static inline __attribute__((always_inline)) void maxpool_blk_fwd(const pool_ctx *t, const float *restrict x,
                                                                  float *restrict y, int32_t *restrict am,
                                                                  const int lanes, const size_t st) {
    const mg_win2d *k = &t->win;
    float best[MP_LANES];
    int32_t bi[MP_LANES];
    for (int oy = 0; oy < t->oh; oy++) {
        int y0, y1;
        win_span(oy, k->sh, k->ph, k->kh, t->h, &y0, &y1);
        for (int ox = 0; ox < t->ow; ox++) {
            int x0, x1;
            win_span(ox, k->sw, k->pw, k->kw, t->w, &x0, &x1);
            int32_t first = y0 * t->w + x0;
            /* starting from the first element instead of -inf selects the same element and value:
             * -inf or NaN there is taken by the reference too, anything else beats its -inf */
            const float *r0 = x + (size_t)first * st;
            for (int l = 0; l < lanes; l++) {
                best[l] = r0[l];
                bi[l] = first;
            }
            for (int iy = y0; iy < y1; iy++)
                for (int ix = iy == y0 ? x0 + 1 : x0; ix < x1; ix++) {
                    int32_t idx = iy * t->w + ix;
                    const float *r = x + (size_t)idx * st;
                    for (int l = 0; l < lanes; l++) {
                        float v = r[l], m = best[l];
                        int32_t mask = -(int32_t)((v > m) | (v != v));
                        best[l] = mask ? v : m;
                        bi[l] = (idx & mask) | (bi[l] & ~mask);
                    }
                }
            size_t o = (size_t)(oy * t->ow + ox) * st;
            for (int l = 0; l < lanes; l++) y[o + l] = best[l];
            if (am)
                for (int l = 0; l < lanes; l++) am[o + l] = bi[l];
        }
    }
}

static void maxpool_fwd_blk_range(void *p, size_t b, size_t e) {
    pool_ctx *t = p;
    const size_t B = (size_t)t->block, hw = (size_t)t->h * t->w, ohw = (size_t)t->oh * t->ow;
    for (size_t it = b; it < e; it++) { /* it = image * (c / B) + channel block */
        const float *x = t->x + it * hw * B;
        float *y = t->y + it * ohw * B;
        int32_t *am = t->argmax ? t->argmax + it * ohw * B : NULL;
        if (B == 16)
            maxpool_blk_fwd(t, x, y, am, 16, 16);
        else if (B == 8)
            maxpool_blk_fwd(t, x, y, am, 8, 8);
        else
            for (size_t l0 = 0; l0 < B; l0 += MP_LANES)
                maxpool_blk_fwd(t, x + l0, y + l0, am ? am + l0 : NULL,
                                B - l0 < MP_LANES ? (int)(B - l0) : MP_LANES, B);
    }
}

/* dx of one (image, channel block): add each dy at its argmax, per channel visiting the outputs in the
 * same ascending order as the NCHW kernel, so overlapping windows sum identically. The input rows are
 * zeroed just before the first output row whose windows reach them (an argmax lies in its window), so
 * each row is still in cache when the additions come, instead of one memset pass over the whole block. */
static void maxpool_bwd_blk_range(void *p, size_t b, size_t e) {
    pool_ctx *t = p;
    const size_t B = (size_t)t->block, hw = (size_t)t->h * t->w, ohw = (size_t)t->oh * t->ow;
    const size_t row = (size_t)t->w * B, orow = (size_t)t->ow * B;
    for (size_t it = b; it < e; it++) {
        float *restrict dx = t->dx + it * hw * B;
        const float *restrict dy = t->dy + it * ohw * B;
        const int32_t *restrict am = t->argmax_in + it * ohw * B;
        int zeroed = 0; /* input rows [0, zeroed) are zeroed */
        for (int oy = 0; oy < t->oh; oy++) {
            int y1 = oy * t->win.sh - t->win.ph + t->win.kh;
            if (y1 > t->h) y1 = t->h;
            if (y1 > zeroed) {
                memset(dx + (size_t)zeroed * row, 0, (size_t)(y1 - zeroed) * row * sizeof *dx);
                zeroed = y1;
            }
            const size_t o0 = (size_t)oy * orow;
            for (size_t o = o0; o < o0 + orow; o += B)
                for (size_t l = 0; l < B; l++) dx[(size_t)am[o + l] * B + l] += dy[o + l];
        }
        if (zeroed < t->h) memset(dx + (size_t)zeroed * row, 0, (size_t)(t->h - zeroed) * row * sizeof *dx);
    }
}

/* 0 when every argmax[i] lies in [0, hw); else the first bad index + 1 (one vectorisable pass first). */
static size_t argmax_first_bad(const int32_t *restrict am, size_t n, int32_t hw) {
    int bad = 0;
    for (size_t i = 0; i < n; i++) bad |= (uint32_t)am[i] >= (uint32_t)hw;
    if (!bad) return 0;
    for (size_t i = 0; i < n; i++)
        if (am[i] < 0 || am[i] >= hw) return i + 1;
    return 0;
}

mg_status mg_maxpool2d_forward(int n, int c, int h, int w, const mg_win2d *win, const float *x, float *y,
                               int32_t *argmax) {
    const char *op = "maxpool2d_forward";
    MG_TRY(check_shape(op, n, c, h, w));
    MG_CHECK_PTR(op, x);
    MG_CHECK_PTR(op, y);
    pool_ctx t = {.h = h, .w = w, .x = x, .y = y, .argmax = argmax};
    MG_TRY(win_out(op, win, h, w, &t.oh, &t.ow));
    t.win = *win;
    if (mg_layers_use_fast())
        mg_layers_parallel_for((size_t)n * c, 1, maxpool_fwd_fast_range, &t);
    else
        maxpool_fwd_range(&t, 0, (size_t)n * c);
    return MG_OK;
}

mg_status mg_maxpool2d_backward(int n, int c, int h, int w, const mg_win2d *win, const int32_t *argmax,
                                const float *dy, float *dx) {
    const char *op = "maxpool2d_backward";
    MG_TRY(check_shape(op, n, c, h, w));
    MG_CHECK_PTR(op, argmax);
    MG_CHECK_PTR(op, dy);
    MG_CHECK_PTR(op, dx);
    pool_ctx t = {.h = h, .w = w, .dy = dy, .dx = dx, .argmax_in = argmax};
    MG_TRY(win_out(op, win, h, w, &t.oh, &t.ow));
    t.win = *win;
    /* argmax comes from our forward; still, an out-of-plane index would corrupt memory: check it. */
    size_t total = (size_t)n * c * t.oh * t.ow, bad = argmax_first_bad(argmax, total, h * w);
    if (bad)
        return MG_FAIL(MG_ERR_INVALID_ARG, "%s: argmax[%zu] = %d outside the %dx%d plane", op, bad - 1,
                       (int)argmax[bad - 1], h, w);
    run_planes(mg_layers_use_fast(), (size_t)n * c, maxpool_bwd_range, &t);
    return MG_OK;
}

mg_status mg_maxpool2d_forward_blocked(int n, int c, int h, int w, int block, const mg_win2d *win, const float *x,
                                       float *y, int32_t *argmax) {
    const char *op = "maxpool2d_forward_blocked";
    MG_TRY(check_shape(op, n, c, h, w));
    MG_TRY(mg_layers_check_block(op, c, block));
    if (block <= 1) return mg_maxpool2d_forward(n, c, h, w, win, x, y, argmax);
    MG_CHECK_PTR(op, x);
    MG_CHECK_PTR(op, y);
    pool_ctx t = {.h = h, .w = w, .c = c, .block = block, .x = x, .y = y, .argmax = argmax};
    MG_TRY(win_out(op, win, h, w, &t.oh, &t.ow));
    t.win = *win;
    if (mg_layers_use_fast())
        mg_layers_parallel_for((size_t)n * (size_t)(c / block), 1, maxpool_fwd_blk_range, &t);
    else
        maxpool_fwd_range(&t, 0, (size_t)n * c);
    return MG_OK;
}

mg_status mg_maxpool2d_backward_blocked(int n, int c, int h, int w, int block, const mg_win2d *win,
                                        const int32_t *argmax, const float *dy, float *dx) {
    const char *op = "maxpool2d_backward_blocked";
    MG_TRY(check_shape(op, n, c, h, w));
    MG_TRY(mg_layers_check_block(op, c, block));
    if (block <= 1) return mg_maxpool2d_backward(n, c, h, w, win, argmax, dy, dx);
    MG_CHECK_PTR(op, argmax);
    MG_CHECK_PTR(op, dy);
    MG_CHECK_PTR(op, dx);
    pool_ctx t = {.h = h, .w = w, .c = c, .block = block, .dy = dy, .dx = dx, .argmax_in = argmax};
    MG_TRY(win_out(op, win, h, w, &t.oh, &t.ow));
    t.win = *win;
    size_t total = (size_t)n * c * t.oh * t.ow, bad = argmax_first_bad(argmax, total, h * w);
    if (bad)
        return MG_FAIL(MG_ERR_INVALID_ARG, "%s: argmax[%zu] = %d outside the %dx%d plane", op, bad - 1,
                       (int)argmax[bad - 1], h, w);
    if (mg_layers_use_fast())
        mg_layers_parallel_for((size_t)n * (size_t)(c / block), 1, maxpool_bwd_blk_range, &t);
    else
        maxpool_bwd_range(&t, 0, (size_t)n * c);
    return MG_OK;
}

/* ---- average pool (count_include_pad = True) ---- */
static void avg_window(const pool_ctx *t, int oy, int ox, int *y0, int *y1, int *x0, int *x1, float *div) {
    const mg_win2d *k = &t->win;
    int a0 = oy * k->sh - k->ph, b0 = ox * k->sw - k->pw;
    int a1 = a0 + k->kh, b1 = b0 + k->kw;
    if (a1 > t->h + k->ph) a1 = t->h + k->ph;
    if (b1 > t->w + k->pw) b1 = t->w + k->pw;
    *div = (float)((a1 - a0) * (b1 - b0)); /* torch: pool size before clipping to the input */
    *y0 = a0 < 0 ? 0 : a0;
    *x0 = b0 < 0 ? 0 : b0;
    *y1 = a1 > t->h ? t->h : a1;
    *x1 = b1 > t->w ? t->w : b1;
}

static void avgpool_fwd_range(void *p, size_t b, size_t e) {
    pool_ctx *t = p;
    size_t hw = (size_t)t->h * t->w, ohw = (size_t)t->oh * t->ow;
    for (size_t pl = b; pl < e; pl++) {
        const float *x = t->x + pl * hw;
        float *y = t->y + pl * ohw;
        for (int oy = 0; oy < t->oh; oy++)
            for (int ox = 0; ox < t->ow; ox++) {
                int y0, y1, x0, x1;
                float div;
                avg_window(t, oy, ox, &y0, &y1, &x0, &x1, &div);
                float s = 0;
                for (int iy = y0; iy < y1; iy++)
                    for (int ix = x0; ix < x1; ix++) s += x[iy * t->w + ix];
                y[oy * t->ow + ox] = s / div;
            }
    }
}

static void avgpool_bwd_range(void *p, size_t b, size_t e) {
    pool_ctx *t = p;
    size_t hw = (size_t)t->h * t->w, ohw = (size_t)t->oh * t->ow;
    for (size_t pl = b; pl < e; pl++) {
        float *dx = t->dx + pl * hw;
        const float *dy = t->dy + pl * ohw;
        memset(dx, 0, hw * sizeof *dx);
        for (int oy = 0; oy < t->oh; oy++)
            for (int ox = 0; ox < t->ow; ox++) {
                int y0, y1, x0, x1;
                float div;
                avg_window(t, oy, ox, &y0, &y1, &x0, &x1, &div);
                float g = dy[oy * t->ow + ox] / div;
                for (int iy = y0; iy < y1; iy++)
                    for (int ix = x0; ix < x1; ix++) dx[iy * t->w + ix] += g;
            }
    }
}

mg_status mg_avgpool2d_forward(int n, int c, int h, int w, const mg_win2d *win, const float *x, float *y) {
    const char *op = "avgpool2d_forward";
    MG_TRY(check_shape(op, n, c, h, w));
    MG_CHECK_PTR(op, x);
    MG_CHECK_PTR(op, y);
    pool_ctx t = {.h = h, .w = w, .x = x, .y = y};
    MG_TRY(win_out(op, win, h, w, &t.oh, &t.ow));
    t.win = *win;
    run_planes(mg_layers_use_fast(), (size_t)n * c, avgpool_fwd_range, &t);
    return MG_OK;
}

mg_status mg_avgpool2d_backward(int n, int c, int h, int w, const mg_win2d *win, const float *dy, float *dx) {
    const char *op = "avgpool2d_backward";
    MG_TRY(check_shape(op, n, c, h, w));
    MG_CHECK_PTR(op, dy);
    MG_CHECK_PTR(op, dx);
    pool_ctx t = {.h = h, .w = w, .dy = dy, .dx = dx};
    MG_TRY(win_out(op, win, h, w, &t.oh, &t.ow));
    t.win = *win;
    run_planes(mg_layers_use_fast(), (size_t)n * c, avgpool_bwd_range, &t);
    return MG_OK;
}

/* ---- adaptive average pool ---- */
static void adaptive_bin(int i, int in, int out, int *b, int *e) {
    *b = (int)(((long long)i * in) / out);
    *e = (int)(((long long)(i + 1) * in + out - 1) / out);
}

static void adaptive_fwd_range(void *p, size_t b, size_t e) {
    pool_ctx *t = p;
    size_t hw = (size_t)t->h * t->w, ohw = (size_t)t->oh * t->ow;
    for (size_t pl = b; pl < e; pl++) {
        const float *x = t->x + pl * hw;
        float *y = t->y + pl * ohw;
        for (int oy = 0; oy < t->oh; oy++) {
            int y0, y1;
            adaptive_bin(oy, t->h, t->oh, &y0, &y1);
            for (int ox = 0; ox < t->ow; ox++) {
                int x0, x1;
                adaptive_bin(ox, t->w, t->ow, &x0, &x1);
                float s = 0;
                for (int iy = y0; iy < y1; iy++)
                    for (int ix = x0; ix < x1; ix++) s += x[iy * t->w + ix];
                y[oy * t->ow + ox] = s / (float)((y1 - y0) * (x1 - x0));
            }
        }
    }
}

static void adaptive_bwd_range(void *p, size_t b, size_t e) {
    pool_ctx *t = p;
    size_t hw = (size_t)t->h * t->w, ohw = (size_t)t->oh * t->ow;
    for (size_t pl = b; pl < e; pl++) {
        float *dx = t->dx + pl * hw;
        const float *dy = t->dy + pl * ohw;
        memset(dx, 0, hw * sizeof *dx);
        for (int oy = 0; oy < t->oh; oy++) {
            int y0, y1;
            adaptive_bin(oy, t->h, t->oh, &y0, &y1);
            for (int ox = 0; ox < t->ow; ox++) {
                int x0, x1;
                adaptive_bin(ox, t->w, t->ow, &x0, &x1);
                float g = dy[oy * t->ow + ox] / (float)((y1 - y0) * (x1 - x0));
                for (int iy = y0; iy < y1; iy++)
                    for (int ix = x0; ix < x1; ix++) dx[iy * t->w + ix] += g;
            }
        }
    }
}

mg_status mg_adaptive_avgpool2d_forward(int n, int c, int h, int w, int oh, int ow, const float *x, float *y) {
    const char *op = "adaptive_avgpool2d_forward";
    MG_TRY(check_shape(op, n, c, h, w));
    MG_CHECK_POS(op, oh);
    MG_CHECK_POS(op, ow);
    MG_CHECK_PTR(op, x);
    MG_CHECK_PTR(op, y);
    pool_ctx t = {.h = h, .w = w, .oh = oh, .ow = ow, .x = x, .y = y};
    run_planes(mg_layers_use_fast(), (size_t)n * c, adaptive_fwd_range, &t);
    return MG_OK;
}

mg_status mg_adaptive_avgpool2d_backward(int n, int c, int h, int w, int oh, int ow, const float *dy,
                                         float *dx) {
    const char *op = "adaptive_avgpool2d_backward";
    MG_TRY(check_shape(op, n, c, h, w));
    MG_CHECK_POS(op, oh);
    MG_CHECK_POS(op, ow);
    MG_CHECK_PTR(op, dy);
    MG_CHECK_PTR(op, dx);
    pool_ctx t = {.h = h, .w = w, .oh = oh, .ow = ow, .dy = dy, .dx = dx};
    run_planes(mg_layers_use_fast(), (size_t)n * c, adaptive_bwd_range, &t);
    return MG_OK;
}
