/* arena.h: a bump allocator over one aligned block. Used for parameter/gradient/optimizer arenas
 * (one allocation, named tensors point into it) and for per-shape scratch memory that is planned
 * once and reused, so hot paths never call malloc. */
#ifndef MG_CORE_ARENA_H
#define MG_CORE_ARENA_H

#include <stddef.h>

#include "multigrain/status.h"

#define MG_ARENA_ALIGN 64

typedef struct mg_arena {
    unsigned char *base;
    size_t capacity;
    size_t used;
} mg_arena;

/* Allocates `capacity` bytes aligned to MG_ARENA_ALIGN, zero-filled. */
mg_status mg_arena_init(mg_arena *a, size_t capacity);
void mg_arena_free(mg_arena *a);
/* Returns an aligned slice of `size` bytes, or NULL (with an error set) when it does not fit. */
void *mg_arena_alloc(mg_arena *a, size_t size);
/* Rounds a size up to the arena alignment (to pre-compute capacities exactly). */
size_t mg_arena_round(size_t size);
/* Marks and rewinds for scratch use. */
static inline size_t mg_arena_mark(const mg_arena *a) { return a->used; }
static inline void mg_arena_rewind(mg_arena *a, size_t mark) { a->used = mark; }

#endif
