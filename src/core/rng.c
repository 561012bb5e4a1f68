/* rng.c: xoshiro256** seeded by splitmix64 (see rng.h). */
#include "core/rng.h"

#include <math.h>

uint64_t mg_hash_u64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

void mg_rng_init(mg_rng *r, uint64_t k0, uint64_t k1, uint64_t k2, uint64_t k3) {
    uint64_t h = mg_hash_u64(k0);
    h = mg_hash_u64(h ^ k1);
    h = mg_hash_u64(h ^ k2);
    h = mg_hash_u64(h ^ k3);
    for (int i = 0; i < 4; i++) {
        h = mg_hash_u64(h + (uint64_t)i);
        r->s[i] = h;
    }
    if (!(r->s[0] | r->s[1] | r->s[2] | r->s[3])) r->s[0] = 1;
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t mg_rng_next_u64(mg_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double mg_rng_uniform(mg_rng *r) { return (double)(mg_rng_next_u64(r) >> 11) * 0x1.0p-53; }
float mg_rng_uniform_f(mg_rng *r) { return (float)(mg_rng_next_u64(r) >> 40) * 0x1.0p-24f; }
double mg_rng_uniform_range(mg_rng *r, double lo, double hi) { return lo + (hi - lo) * mg_rng_uniform(r); }

uint64_t mg_rng_below(mg_rng *r, uint64_t n) {
    /* Lemire's nearly divisionless method with rejection: exactly uniform. */
    __uint128_t m = (__uint128_t)mg_rng_next_u64(r) * n;
    uint64_t low = (uint64_t)m;
    if (low < n) {
        uint64_t threshold = -n % n;
        while (low < threshold) {
            m = (__uint128_t)mg_rng_next_u64(r) * n;
            low = (uint64_t)m;
        }
    }
    return (uint64_t)(m >> 64);
}

double mg_rng_normal(mg_rng *r) {
    double u1 = mg_rng_uniform(r), u2 = mg_rng_uniform(r);
    return sqrt(-2.0 * log1p(-u1)) * cos(2.0 * M_PI * u2);
}

void mg_rng_permutation(mg_rng *r, int64_t *perm, int64_t n) {
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)mg_rng_below(r, (uint64_t)i + 1);
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}
