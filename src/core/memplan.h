/* memplan.h: offsets in one arena for buffers whose lifetimes are known in advance. Each buffer lives
 * over an inclusive range of steps [first, last]; two buffers may share bytes only when their ranges
 * do not meet. Used by the model to plan a training step's activation and gradient memory once per
 * input shape (src/nn/model.c). */
#ifndef MG_CORE_MEMPLAN_H
#define MG_CORE_MEMPLAN_H

#include <stddef.h>

#include "multigrain/status.h"

typedef struct mg_memplan_buf {
    size_t bytes;    /* requested size; 0 is allowed (gets offset 0, occupies nothing) */
    int first, last; /* inclusive lifetime in steps, first <= last */
    size_t offset;   /* out: MG_ARENA_ALIGN-aligned offset into the arena */
} mg_memplan_buf;

/* Assigns every buffer an offset so that buffers with overlapping lifetimes never overlap in memory,
 * greedily: largest first, each at the lowest aligned offset that fits between the buffers already
 * placed whose lifetimes meet its own. *total receives the arena size needed (a multiple of
 * MG_ARENA_ALIGN). Fails on a malformed range or when out of memory for the bookkeeping. */
mg_status mg_memplan_assign(mg_memplan_buf *bufs, int n, size_t *total);

/* The lower bound no plan can beat: the largest sum of (rounded) sizes alive at one step. */
size_t mg_memplan_peak_live(const mg_memplan_buf *bufs, int n);

#endif
