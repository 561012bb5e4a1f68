/* arena.c: aligned bump allocator (see arena.h). */
#include "core/arena.h"

#include <stdlib.h>
#include <string.h>

size_t mg_arena_round(size_t size) { return (size + MG_ARENA_ALIGN - 1) & ~(size_t)(MG_ARENA_ALIGN - 1); }

mg_status mg_arena_init(mg_arena *a, size_t capacity) {
    memset(a, 0, sizeof *a);
    capacity = mg_arena_round(capacity ? capacity : MG_ARENA_ALIGN);
    void *p = NULL;
    if (posix_memalign(&p, MG_ARENA_ALIGN, capacity) != 0)
        return MG_FAIL(MG_ERR_NOMEM, "arena: cannot allocate %zu bytes (%.1f MiB)", capacity,
                       capacity / 1048576.0);
    memset(p, 0, capacity);
    a->base = p;
    a->capacity = capacity;
    return MG_OK;
}

void mg_arena_free(mg_arena *a) {
    if (!a) return;
    free(a->base);
    memset(a, 0, sizeof *a);
}

void *mg_arena_alloc(mg_arena *a, size_t size) {
    size_t need = mg_arena_round(size);
    if (a->used + need > a->capacity) {
        MG_FAIL(MG_ERR_NOMEM, "arena: request of %zu bytes exceeds the remaining %zu of %zu", size,
                a->capacity - a->used, a->capacity);
        return NULL;
    }
    void *p = a->base + a->used;
    a->used += need;
    return p;
}
