/* data_internal.h: helpers shared between the data pipeline's source files (not public API). */
#ifndef MG_DATA_INTERNAL_H
#define MG_DATA_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "multigrain/data.h"

/* Purpose tags for the (seed, epoch, index, purpose) random streams. */
#define MG_RNG_PURPOSE_SAMPLER 0x5a4d504cULL /* sampler permutations */
#define MG_RNG_PURPOSE_AUGMENT 0x41554721ULL /* per-sample augmentation draws */

/* EXIF Orientation (1..8) of a JPEG buffer, 1 when absent. */
int data_jpeg_exif_orientation(const uint8_t *b, size_t n);

/* The transform pipeline on encoded bytes, or on a decoded image `pre` (borrowed) when non-NULL. */
mg_status data_transform_run(const mg_transform_cfg *c, const void *buf, size_t size, const mg_image *pre, uint64_t seed,
                             uint64_t epoch, uint64_t position, mg_transform_ws *ws, float *out, size_t out_cap, int *pow,
                             int *poh);

#endif
