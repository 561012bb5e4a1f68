/* sampler.c: the repeated-augmentation batch sampler (recipe §2.4): a fresh permutation per epoch,
 * each index emitted m times consecutively, int(N * len_factor) positions cut into batches, and
 * each global batch split across data-parallel ranks at copy-group boundaries. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "data/data_internal.h"
#include "multigrain/data.h"

void mg_sampler_cfg_default(mg_sampler_cfg *c) {
    memset(c, 0, sizeof *c);
    c->batch = 256;
    c->reps = 1;
    c->len_factor = 1.0;
    c->shuffle = true;
    c->world = 1;
}

static int64_t epoch_len(const mg_sampler_cfg *c) { return (int64_t)floor((double)c->n * c->len_factor); }

int64_t mg_sampler_num_batches(const mg_sampler_cfg *c) {
    int64_t len = epoch_len(c);
    if (c->batch <= 0) return 0;
    return c->drop_last ? len / c->batch : (len + c->batch - 1) / c->batch;
}

void mg_sampler_batch_range(const mg_sampler_cfg *c, int64_t b, int64_t *begin, int64_t *end) {
    int64_t len = epoch_len(c);
    int64_t gb = b * c->batch, ge = gb + c->batch;
    if (ge > len) ge = len;
    int world = c->world > 0 ? c->world : 1;
    int64_t nb = ge - gb;
    /* cut points at multiples of m (copy groups start at stream positions that are multiples of m),
     * so that no image has copies on two ranks in one step */
    int64_t m = c->reps > 0 ? c->reps : 1;
    int64_t cut[2];
    for (int k = 0; k < 2; k++) {
        int r = c->rank + k;
        if (r == 0) { cut[k] = gb; continue; }
        if (r >= world) { cut[k] = ge; continue; }
        int64_t p = gb + nb * r / world;
        if (world > 1 && m > 1) {
            int64_t down = p / m * m, up = down + m;
            p = (p - down <= up - p) ? down : up;
            if (p < gb) p = gb;
            if (p > ge) p = ge;
        }
        cut[k] = p;
    }
    *begin = cut[0];
    *end = cut[1];
}

mg_status mg_sampler_epoch(const mg_sampler_cfg *c, uint64_t epoch, int64_t **stream, int64_t *len) {
    if (c->n <= 0 || c->reps <= 0 || c->len_factor <= 0 || c->batch <= 0)
        return MG_FAIL(MG_ERR_INVALID_ARG, "sampler: expected n, reps, batch and len_factor > 0, found n=%lld reps=%d batch=%d len_factor=%g",
                       (long long)c->n, c->reps, c->batch, c->len_factor);
    if (c->world <= 0 || c->rank < 0 || c->rank >= c->world)
        return MG_FAIL(MG_ERR_INVALID_ARG, "sampler: rank %d is outside world size %d", c->rank, c->world);
    int64_t L = epoch_len(c);
    int64_t *s = malloc(sizeof(int64_t) * (size_t)(L > 0 ? L : 1));
    int64_t *perm = malloc(sizeof(int64_t) * (size_t)c->n);
    if (!s || !perm) { free(s); free(perm); return MG_FAIL(MG_ERR_NOMEM, "sampler: cannot allocate an epoch of %lld", (long long)L); }
    int64_t pos = 0;
    for (uint64_t round = 0; pos < L; round++) {
        if (c->shuffle) {
            mg_rng r;
            mg_rng_init(&r, c->seed, epoch, round, MG_RNG_PURPOSE_SAMPLER);
            mg_rng_permutation(&r, perm, c->n);
        } else {
            for (int64_t i = 0; i < c->n; i++) perm[i] = i;
        }
        for (int64_t i = 0; i < c->n && pos < L; i++)
            for (int k = 0; k < c->reps && pos < L; k++) s[pos++] = perm[i];
    }
    free(perm);
    *stream = s;
    *len = L;
    return MG_OK;
}
