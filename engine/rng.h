/* rng.h — one counter-based generator (splitmix64 hash of seed and counter).
 * Element i of a fill uses counter base+i, so the numbers do not depend on threads. */
#ifndef FVL_RNG_H
#define FVL_RNG_H
#include <stdint.h>
#include <stddef.h>

typedef struct fvl_rng { uint64_t seed, counter; } fvl_rng;

fvl_rng *fvl_rng_global(void);                      /* the engine's generator */
void fvl_rng_seed(fvl_rng *r, uint64_t seed);      /* counter back to 0 */
uint64_t fvl_rng_reserve(fvl_rng *r, uint64_t n);   /* returns base counter, advances by n */

uint64_t fvl_rng_bits(uint64_t seed, uint64_t ctr); /* 64 random bits */
double fvl_rng_uniform_at(uint64_t seed, uint64_t ctr);   /* [0,1) with 53 bits */
double fvl_rng_normal_at(uint64_t seed, uint64_t ctr);    /* N(0,1), Box–Muller on two draws */

/* fills; each advances r->counter by n (normal: by n too, it uses two sub-streams) */
void fvl_rng_fill_uniform(fvl_rng *r, float *out, size_t n, float lo, float hi);
void fvl_rng_fill_normal(fvl_rng *r, float *out, size_t n, float mean, float std);
void fvl_rng_fill_int(fvl_rng *r, int32_t *out, size_t n, int32_t lo, int32_t hi); /* lo..hi inclusive */
/* one draw each, advancing the counter by 1 */
double fvl_rng_uniform(fvl_rng *r);
double fvl_rng_normal(fvl_rng *r);
int64_t fvl_rng_int(fvl_rng *r, int64_t lo, int64_t hi);  /* inclusive */
/* Fisher–Yates permutation of 0..n-1 */
void fvl_rng_permutation(fvl_rng *r, int32_t *out, size_t n);
#endif
