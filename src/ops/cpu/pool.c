/* pool.c: max pool, average pool (count_include_pad) and adaptive average pool 2d, forward and backward.
 * One kernel per (n,c) plane; the reference runs planes serially, the fast path spreads them over the
 * thread pool. */
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
    mg_win2d win;
    const float *x, *dy;
    float *y, *dx;
    int32_t *argmax;
    const int32_t *argmax_in;
} pool_ctx;

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
        const float *x = t->x + pl * hw;
        float *y = t->y + pl * ohw;
        int32_t *am = t->argmax ? t->argmax + pl * ohw : NULL;
        for (int oy = 0; oy < t->oh; oy++) {
            int y0 = oy * k->sh - k->ph, y1 = y0 + k->kh;
            if (y0 < 0) y0 = 0;
            if (y1 > t->h) y1 = t->h;
            for (int ox = 0; ox < t->ow; ox++) {
                int x0 = ox * k->sw - k->pw, x1 = x0 + k->kw;
                if (x0 < 0) x0 = 0;
                if (x1 > t->w) x1 = t->w;
                /* torch: start at -inf with the first valid index; update on > or NaN (first max wins) */
                float best = -INFINITY;
                int bi = y0 * t->w + x0;
                for (int iy = y0; iy < y1; iy++)
                    for (int ix = x0; ix < x1; ix++) {
                        float v = x[iy * t->w + ix];
                        if (v > best || isnan(v)) {
                            best = v;
                            bi = iy * t->w + ix;
                        }
                    }
                y[oy * t->ow + ox] = best;
                if (am) am[oy * t->ow + ox] = bi;
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
            int y0 = oy * k->sh - k->ph, y1 = y0 + k->kh;
            if (y0 < 0) y0 = 0;
            if (y1 > t->h) y1 = t->h;
            memcpy(vm, x + (size_t)y0 * t->w, (size_t)t->w * sizeof *vm);
            for (int ix = 0; ix < t->w; ix++) vr[ix] = y0;
            for (int iy = y0 + 1; iy < y1; iy++) vmax_row(x + (size_t)iy * t->w, vm, vr, (size_t)t->w, iy);
            for (int ox = 0; ox < t->ow; ox++) {
                int x0 = ox * k->sw - k->pw, x1 = x0 + k->kw;
                if (x0 < 0) x0 = 0;
                if (x1 > t->w) x1 = t->w;
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
        float *dx = t->dx + pl * hw;
        const float *dy = t->dy + pl * ohw;
        const int32_t *am = t->argmax_in + pl * ohw;
        memset(dx, 0, hw * sizeof *dx);
        for (size_t i = 0; i < ohw; i++) dx[am[i]] += dy[i];
    }
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
    size_t total = (size_t)n * c * t.oh * t.ow;
    for (size_t i = 0; i < total; i++)
        if (argmax[i] < 0 || argmax[i] >= h * w)
            return MG_FAIL(MG_ERR_INVALID_ARG, "%s: argmax[%zu] = %d outside the %dx%d plane", op, i,
                           (int)argmax[i], h, w);
    run_planes(mg_layers_use_fast(), (size_t)n * c, maxpool_bwd_range, &t);
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
