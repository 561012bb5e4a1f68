/* rng.h: deterministic random numbers. xoshiro256** streams seeded through splitmix64 from a
 * key of up to four integers, so a stream is a pure function of (seed, epoch, index, purpose):
 * data augmentation and sampling are reproducible regardless of thread count or timing. */
#ifndef MG_CORE_RNG_H
#define MG_CORE_RNG_H

#include <stdint.h>

typedef struct mg_rng {
    uint64_t s[4];
} mg_rng;

/* Seeds a stream from a key (e.g. seed, epoch, sample index, purpose tag). */
void mg_rng_init(mg_rng *r, uint64_t k0, uint64_t k1, uint64_t k2, uint64_t k3);
uint64_t mg_rng_next_u64(mg_rng *r);
/* Uniform in [0, 1) with 53 (double) or 24 (float) random bits. */
double mg_rng_uniform(mg_rng *r);
float mg_rng_uniform_f(mg_rng *r);
/* Uniform in [lo, hi). */
double mg_rng_uniform_range(mg_rng *r, double lo, double hi);
/* Unbiased integer in [0, n) (n > 0). */
uint64_t mg_rng_below(mg_rng *r, uint64_t n);
/* Standard normal (Box-Muller, no cached second value so the stream stays stateless). */
double mg_rng_normal(mg_rng *r);
/* Fisher-Yates permutation of 0..n-1 into perm. */
void mg_rng_permutation(mg_rng *r, int64_t *perm, int64_t n);
/* splitmix64 finaliser, exposed for hashing keys. */
uint64_t mg_hash_u64(uint64_t x);

#endif
