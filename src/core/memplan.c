/* memplan.c: greedy interval placement of buffers with known lifetimes (see memplan.h). */
#include "core/memplan.h"

#include <stdlib.h>

#include "core/arena.h"

typedef struct {
    size_t lo, hi; /* [lo, hi) bytes */
} span;

static int cmp_span(const void *a, const void *b) {
    const span *x = a, *y = b;
    return x->lo < y->lo ? -1 : x->lo > y->lo;
}

typedef struct {
    size_t bytes;
    int first, index;
} order_key; /* qsort has no context argument, so the keys travel with the index */

static int cmp_order(const void *a, const void *b) {
    const order_key *x = a, *y = b;
    if (x->bytes != y->bytes) return x->bytes > y->bytes ? -1 : 1;
    if (x->first != y->first) return x->first < y->first ? -1 : 1;
    return x->index - y->index;
}

static int meets(const mg_memplan_buf *a, const mg_memplan_buf *b) {
    return a->first <= b->last && b->first <= a->last;
}

mg_status mg_memplan_assign(mg_memplan_buf *bufs, int n, size_t *total) {
    *total = 0;
    if (n < 0 || (n > 0 && !bufs)) return MG_FAIL(MG_ERR_INVALID_ARG, "memplan: %d buffers at %p", n, (void *)bufs);
    for (int i = 0; i < n; i++)
        if (bufs[i].first > bufs[i].last)
            return MG_FAIL(MG_ERR_INVALID_ARG, "memplan: buffer %d lives from step %d to step %d (first > last)", i,
                           bufs[i].first, bufs[i].last);
    if (n == 0) return MG_OK;
    order_key *order = malloc((size_t)n * sizeof *order);
    int *placed = malloc((size_t)n * sizeof *placed);
    span *busy = malloc((size_t)n * sizeof *busy);
    if (!order || !placed || !busy) {
        free(order);
        free(placed);
        free(busy);
        return MG_FAIL(MG_ERR_NOMEM, "memplan: out of memory for %d buffers", n);
    }
    for (int i = 0; i < n; i++) order[i] = (order_key){bufs[i].bytes, bufs[i].first, i};
    qsort(order, (size_t)n, sizeof *order, cmp_order);
    int n_placed = 0;
    size_t end = 0;
    for (int k = 0; k < n; k++) {
        mg_memplan_buf *b = &bufs[order[k].index];
        size_t need = mg_arena_round(b->bytes);
        b->offset = 0;
        if (need == 0) continue;
        int nb = 0;
        for (int j = 0; j < n_placed; j++) {
            const mg_memplan_buf *o = &bufs[placed[j]];
            if (meets(b, o)) busy[nb++] = (span){o->offset, o->offset + mg_arena_round(o->bytes)};
        }
        qsort(busy, (size_t)nb, sizeof *busy, cmp_span);
        size_t at = 0; /* lowest offset not yet ruled out; spans are aligned, so it stays aligned */
        for (int j = 0; j < nb; j++) {
            if (at + need <= busy[j].lo) break;
            if (busy[j].hi > at) at = busy[j].hi;
        }
        b->offset = at;
        placed[n_placed++] = order[k].index;
        if (at + need > end) end = at + need;
    }
    free(order);
    free(placed);
    free(busy);
    *total = end;
    return MG_OK;
}

size_t mg_memplan_peak_live(const mg_memplan_buf *bufs, int n) {
    size_t peak = 0;
    for (int i = 0; i < n; i++) { /* the live sum is largest at some buffer's first step */
        size_t live = 0;
        int t = bufs[i].first;
        for (int j = 0; j < n; j++)
            if (bufs[j].first <= t && t <= bufs[j].last) live += mg_arena_round(bufs[j].bytes);
        if (live > peak) peak = live;
    }
    return peak;
}
