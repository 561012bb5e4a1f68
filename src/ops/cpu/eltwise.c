/* eltwise.c: element-wise ops (ReLU, residual add, sigmoid, SE channel scale), forward and backward,
 * and the all-finite check over a tensor.
 * Reference: the loops run serially; fast: the same loops over coarse chunks on the thread pool. The
 * loops are exact element-wise float32 operations, so both paths give identical results. */
#include <math.h>
#include <stdatomic.h>
#include <string.h>

#include "ops/cpu/layers_util.h"

#define ELT_GRAIN 32768 /* elements per task: big enough to amortise the pool hand-off */

typedef struct elt_ctx {
    const float *a, *b, *c;
    float *y, *z;
    size_t hw;
} elt_ctx;

static void run(size_t n, mg_range_fn fn, elt_ctx *t) {
    if (mg_layers_use_fast())
        mg_layers_parallel_for(n, ELT_GRAIN, fn, t);
    else
        fn(t, 0, n);
}

/* Kernels take restrict pointers so -O2 vectorises them (main loop over a multiple of 8); when an output
 * is allowed to alias an input the dispatcher below picks the in-place variant (one pointer). */
#define N8(n) ((n) & ~(size_t)7)
__attribute__((noinline)) static void relu_k(const float *restrict x, float *restrict y, size_t n) {
    for (size_t i = 0; i < N8(n); i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
    for (size_t i = N8(n); i < n; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}
__attribute__((noinline)) static void relu_k_inplace(float *restrict y, size_t n) {
    for (size_t i = 0; i < N8(n); i++) y[i] = y[i] > 0.0f ? y[i] : 0.0f;
    for (size_t i = N8(n); i < n; i++) y[i] = y[i] > 0.0f ? y[i] : 0.0f;
}
__attribute__((noinline)) static void relu_bwd_k(const float *restrict y, const float *restrict g, float *restrict dx, size_t n) {
    for (size_t i = 0; i < N8(n); i++) {
        float gi = g[i]; /* unconditional load: lets the loop be if-converted */
        dx[i] = y[i] > 0.0f ? gi : 0.0f;
    }
    for (size_t i = N8(n); i < n; i++) dx[i] = y[i] > 0.0f ? g[i] : 0.0f;
}
__attribute__((noinline)) static void relu_bwd_k_inplace(const float *restrict y, float *restrict g, size_t n) {
    for (size_t i = 0; i < N8(n); i++) g[i] = y[i] > 0.0f ? g[i] : 0.0f;
    for (size_t i = N8(n); i < n; i++) g[i] = y[i] > 0.0f ? g[i] : 0.0f;
}
__attribute__((noinline)) static void add_k(const float *restrict a, const float *restrict b, float *restrict y, size_t n) {
    for (size_t i = 0; i < N8(n); i++) y[i] = a[i] + b[i];
    for (size_t i = N8(n); i < n; i++) y[i] = a[i] + b[i];
}
__attribute__((noinline)) static void add_k_inplace(float *restrict y, const float *restrict b, size_t n) { /* y += b */
    for (size_t i = 0; i < N8(n); i++) y[i] = y[i] + b[i];
    for (size_t i = N8(n); i < n; i++) y[i] = y[i] + b[i];
}
/* y = relu(a + b) in one pass (the residual sum and the block's ReLU) */
__attribute__((noinline)) static void add_relu_k(const float *restrict a, const float *restrict b, float *restrict y,
                                                 size_t n) {
    for (size_t i = 0; i < N8(n); i++) {
        float s = a[i] + b[i];
        y[i] = s > 0.0f ? s : 0.0f;
    }
    for (size_t i = N8(n); i < n; i++) {
        float s = a[i] + b[i];
        y[i] = s > 0.0f ? s : 0.0f;
    }
}
__attribute__((noinline)) static void add_relu_k_inplace(float *restrict y, const float *restrict b, size_t n) {
    for (size_t i = 0; i < N8(n); i++) {
        float s = y[i] + b[i];
        y[i] = s > 0.0f ? s : 0.0f;
    }
    for (size_t i = N8(n); i < n; i++) {
        float s = y[i] + b[i];
        y[i] = s > 0.0f ? s : 0.0f;
    }
}
__attribute__((noinline)) static void scale_k(const float *restrict x, float *restrict y, size_t n, float s) {
    for (size_t i = 0; i < N8(n); i++) y[i] = x[i] * s;
    for (size_t i = N8(n); i < n; i++) y[i] = x[i] * s;
}
__attribute__((noinline)) static void scale_k_inplace(float *restrict y, size_t n, float s) {
    for (size_t i = 0; i < N8(n); i++) y[i] = y[i] * s;
    for (size_t i = N8(n); i < n; i++) y[i] = y[i] * s;
}

static void relu_fwd(void *v, size_t b, size_t e) {
    elt_ctx *t = v;
    if (t->a == t->y)
        relu_k_inplace(t->y + b, e - b);
    else
        relu_k(t->a + b, t->y + b, e - b);
}
static void relu_bwd(void *v, size_t b, size_t e) {
    elt_ctx *t = v; /* a = y, b = dy, y = dx */
    if (t->b == t->y)
        relu_bwd_k_inplace(t->a + b, t->y + b, e - b);
    else
        relu_bwd_k(t->a + b, t->b + b, t->y + b, e - b);
}
static void add_fwd(void *v, size_t b, size_t e) {
    elt_ctx *t = v;
    if (t->y == t->a)
        add_k_inplace(t->y + b, t->b + b, e - b);
    else if (t->y == t->b)
        add_k_inplace(t->y + b, t->a + b, e - b); /* a + b == b + a exactly */
    else
        add_k(t->a + b, t->b + b, t->y + b, e - b);
}
static void add_relu_fwd(void *v, size_t b, size_t e) {
    elt_ctx *t = v;
    if (t->y == t->a)
        add_relu_k_inplace(t->y + b, t->b + b, e - b);
    else if (t->y == t->b)
        add_relu_k_inplace(t->y + b, t->a + b, e - b); /* a + b == b + a exactly */
    else
        add_relu_k(t->a + b, t->b + b, t->y + b, e - b);
}
/* y = r > 0 ? a + b : 0 (y may equal a or b): the add and the ReLU backward kernels above over blocks
 * of 2048 elements, so that the second pass reads y from L1. (One loop with the select compiled to
 * scalar code with branches: GCC 12 at -O2 sinks the sum into the branch and gives up on the loop.) */
#define ADD_RELU_BWD_BLOCK 2048
static void add_relu_bwd(void *v, size_t b, size_t e) {
    elt_ctx *t = v; /* c = the ReLU's output */
    for (size_t i = b; i < e; i += ADD_RELU_BWD_BLOCK) {
        size_t m = e - i < ADD_RELU_BWD_BLOCK ? e - i : ADD_RELU_BWD_BLOCK;
        if (t->y == t->a)
            add_k_inplace(t->y + i, t->b + i, m);
        else if (t->y == t->b)
            add_k_inplace(t->y + i, t->a + i, m); /* a + b == b + a exactly */
        else
            add_k(t->a + i, t->b + i, t->y + i, m);
        relu_bwd_k_inplace(t->c + i, t->y + i, m);
    }
}
static void sigmoid_fwd(void *v, size_t b, size_t e) {
    elt_ctx *t = v;
    for (size_t i = b; i < e; i++) t->y[i] = 1.0f / (1.0f + expf(-t->a[i]));
}
static void sigmoid_bwd(void *v, size_t b, size_t e) {
    elt_ctx *t = v; /* a = y, b = dy */
    for (size_t i = b; i < e; i++) t->y[i] = t->b[i] * t->a[i] * (1.0f - t->a[i]);
}

mg_status mg_relu_forward(size_t n, const float *x, float *y) {
    MG_CHECK_PTR("relu_forward", x);
    MG_CHECK_PTR("relu_forward", y);
    elt_ctx t = {.a = x, .y = y};
    run(n, relu_fwd, &t);
    return MG_OK;
}

mg_status mg_relu_backward(size_t n, const float *y, const float *dy, float *dx) {
    MG_CHECK_PTR("relu_backward", y);
    MG_CHECK_PTR("relu_backward", dy);
    MG_CHECK_PTR("relu_backward", dx);
    elt_ctx t = {.a = y, .b = dy, .y = dx};
    run(n, relu_bwd, &t);
    return MG_OK;
}

mg_status mg_add_forward(size_t n, const float *a, const float *b, float *y) {
    MG_CHECK_PTR("add_forward", a);
    MG_CHECK_PTR("add_forward", b);
    MG_CHECK_PTR("add_forward", y);
    elt_ctx t = {.a = a, .b = b, .y = y};
    run(n, add_fwd, &t);
    return MG_OK;
}

mg_status mg_add_relu_forward(size_t n, const float *a, const float *b, float *y) {
    MG_CHECK_PTR("add_relu_forward", a);
    MG_CHECK_PTR("add_relu_forward", b);
    MG_CHECK_PTR("add_relu_forward", y);
    elt_ctx t = {.a = a, .b = b, .y = y};
    run(n, add_relu_fwd, &t);
    return MG_OK;
}

mg_status mg_add_relu_backward(size_t n, const float *a, const float *b, const float *r, float *y) {
    MG_CHECK_PTR("add_relu_backward", a);
    MG_CHECK_PTR("add_relu_backward", b);
    MG_CHECK_PTR("add_relu_backward", r);
    MG_CHECK_PTR("add_relu_backward", y);
    if (r == y) return MG_FAIL(MG_ERR_INVALID_ARG, "add_relu_backward: y must not alias the ReLU's output r");
    elt_ctx t = {.a = a, .b = b, .c = r, .y = y};
    run(n, add_relu_bwd, &t);
    return MG_OK;
}

/* Nonzero when some element of x is NaN or +-inf: x * 0 is 0 for every finite x and NaN otherwise, and
 * a NaN survives any sum; eight independent partial sums let -O2 vectorise the loop. */
__attribute__((noinline)) static int nonfinite_k(const float *restrict x, size_t n) {
    float acc[8] = {0};
    for (size_t i = 0; i < N8(n); i += 8)
        for (int j = 0; j < 8; j++) acc[j] += x[i + j] * 0.0f;
    float tail = 0.0f;
    for (size_t i = N8(n); i < n; i++) tail += x[i] * 0.0f;
    for (int j = 0; j < 8; j++) tail += acc[j];
    return tail != 0.0f; /* 0 when every x was finite, else NaN */
}
typedef struct finite_ctx {
    const float *x;
    atomic_int bad;
} finite_ctx;
static void finite_range(void *v, size_t b, size_t e) {
    finite_ctx *t = v;
    if (nonfinite_k(t->x + b, e - b)) atomic_store(&t->bad, 1);
}

mg_status mg_all_finite(size_t n, const float *x, bool *finite) {
    MG_CHECK_PTR("all_finite", finite);
    *finite = true;
    if (n == 0) return MG_OK;
    MG_CHECK_PTR("all_finite", x);
    finite_ctx t = {.x = x};
    atomic_init(&t.bad, 0);
    if (mg_layers_use_fast())
        mg_layers_parallel_for(n, 4 * ELT_GRAIN, finite_range, &t);
    else
        finite_range(&t, 0, n);
    *finite = !atomic_load(&t.bad);
    return MG_OK;
}

mg_status mg_add_backward(size_t n, const float *dy, float *da, float *db) {
    MG_CHECK_PTR("add_backward", dy);
    if (da && da != dy) memcpy(da, dy, n * sizeof *da);
    if (db && db != dy) memcpy(db, dy, n * sizeof *db);
    return MG_OK;
}

mg_status mg_sigmoid_forward(size_t n, const float *x, float *y) {
    MG_CHECK_PTR("sigmoid_forward", x);
    MG_CHECK_PTR("sigmoid_forward", y);
    elt_ctx t = {.a = x, .y = y};
    run(n, sigmoid_fwd, &t);
    return MG_OK;
}

mg_status mg_sigmoid_backward(size_t n, const float *y, const float *dy, float *dx) {
    MG_CHECK_PTR("sigmoid_backward", y);
    MG_CHECK_PTR("sigmoid_backward", dy);
    MG_CHECK_PTR("sigmoid_backward", dx);
    elt_ctx t = {.a = y, .b = dy, .y = dx};
    run(n, sigmoid_bwd, &t);
    return MG_OK;
}

/* Channel scale: items are (n,c) planes of hw elements. */
static void chscale_fwd(void *v, size_t b, size_t e) {
    elt_ctx *t = v; /* a = x, b = s */
    for (size_t p = b; p < e; p++) {
        float s = t->b[p];
        const float *x = t->a + p * t->hw;
        float *y = t->y + p * t->hw;
        if (x == y)
            scale_k_inplace(y, t->hw, s);
        else
            scale_k(x, y, t->hw, s);
    }
}
static void chscale_bwd(void *v, size_t b, size_t e) {
    elt_ctx *t = v; /* a = x, b = s, c = dy, y = dx, z = ds */
    for (size_t p = b; p < e; p++) {
        const float *x = t->a + p * t->hw, *dy = t->c + p * t->hw;
        if (t->z) {
            double s = 0;
            for (size_t i = 0; i < t->hw; i++) s += (double)dy[i] * x[i];
            t->z[p] = (float)s;
        }
        if (t->y) {
            float s = t->b[p];
            float *dx = t->y + p * t->hw;
            if (dx == dy)
                scale_k_inplace(dx, t->hw, s);
            else
                scale_k(dy, dx, t->hw, s);
        }
    }
}

mg_status mg_chscale_forward(int n, int c, int hw, const float *x, const float *s, float *y) {
    const char *op = "chscale_forward";
    MG_CHECK_POS(op, n);
    MG_CHECK_POS(op, c);
    MG_CHECK_POS(op, hw);
    MG_CHECK_PTR(op, x);
    MG_CHECK_PTR(op, s);
    MG_CHECK_PTR(op, y);
    elt_ctx t = {.a = x, .b = s, .y = y, .hw = (size_t)hw};
    size_t planes = (size_t)n * c;
    if (mg_layers_use_fast())
        mg_layers_parallel_for(planes, ELT_GRAIN / (size_t)hw + 1, chscale_fwd, &t);
    else
        chscale_fwd(&t, 0, planes);
    return MG_OK;
}

mg_status mg_chscale_backward(int n, int c, int hw, const float *x, const float *s, const float *dy,
                              float *dx, float *ds) {
    const char *op = "chscale_backward";
    MG_CHECK_POS(op, n);
    MG_CHECK_POS(op, c);
    MG_CHECK_POS(op, hw);
    MG_CHECK_PTR(op, dy);
    if (ds) MG_CHECK_PTR(op, x);
    if (dx) MG_CHECK_PTR(op, s);
    elt_ctx t = {.a = x, .b = s, .c = dy, .y = dx, .z = ds, .hw = (size_t)hw};
    size_t planes = (size_t)n * c;
    if (mg_layers_use_fast())
        mg_layers_parallel_for(planes, ELT_GRAIN / (size_t)hw + 1, chscale_bwd, &t);
    else
        chscale_bwd(&t, 0, planes);
    return MG_OK;
}
