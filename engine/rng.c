#include "rng.h"
#include <math.h>

static fvl_rng global_rng = {0x5eed, 0};
fvl_rng *fvl_rng_global(void) { return &global_rng; }
void fvl_rng_seed(fvl_rng *r, uint64_t seed) { r->seed = seed; r->counter = 0; }
uint64_t fvl_rng_reserve(fvl_rng *r, uint64_t n) {
  uint64_t base = r->counter;
  r->counter += n;
  return base;
}

static inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}
uint64_t fvl_rng_bits(uint64_t seed, uint64_t ctr) {
  return mix64(mix64(seed * 0x9e3779b97f4a7c15ULL + 0x632be59bd9b4e019ULL) ^
               (ctr * 0xd1b54a32d192ed03ULL + 0x8cb92ba72f3d8dd7ULL));
}
double fvl_rng_uniform_at(uint64_t seed, uint64_t ctr) {
  return (double)(fvl_rng_bits(seed, ctr) >> 11) * 0x1.0p-53;
}
double fvl_rng_normal_at(uint64_t seed, uint64_t ctr) {
  /* two independent sub-streams derived from the same counter */
  double u1 = ((double)(fvl_rng_bits(seed, 2 * ctr) >> 11) + 0.5) * 0x1.0p-53;
  double u2 = (double)(fvl_rng_bits(seed, 2 * ctr + 1) >> 11) * 0x1.0p-53;
  return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

void fvl_rng_fill_uniform(fvl_rng *r, float *out, size_t n, float lo, float hi) {
  uint64_t base = fvl_rng_reserve(r, n);
  uint64_t seed = r->seed;
#pragma omp parallel for schedule(static) if (n > 65536)
  for (size_t i = 0; i < n; i++) out[i] = lo + (hi - lo) * (float)fvl_rng_uniform_at(seed, base + i);
}
void fvl_rng_fill_normal(fvl_rng *r, float *out, size_t n, float mean, float std) {
  uint64_t base = fvl_rng_reserve(r, n);
  uint64_t seed = r->seed;
#pragma omp parallel for schedule(static) if (n > 65536)
  for (size_t i = 0; i < n; i++) out[i] = mean + std * (float)fvl_rng_normal_at(seed, base + i);
}
static int64_t int_at(uint64_t seed, uint64_t ctr, int64_t lo, int64_t hi) {
  uint64_t span = (uint64_t)(hi - lo) + 1;
  /* 64-bit multiply-shift; bias is below 2^-32 for any span we use */
  unsigned __int128 p = (unsigned __int128)fvl_rng_bits(seed, ctr) * span;
  return lo + (int64_t)(p >> 64);
}
void fvl_rng_fill_int(fvl_rng *r, int32_t *out, size_t n, int32_t lo, int32_t hi) {
  uint64_t base = fvl_rng_reserve(r, n);
  uint64_t seed = r->seed;
#pragma omp parallel for schedule(static) if (n > 65536)
  for (size_t i = 0; i < n; i++) out[i] = (int32_t)int_at(seed, base + i, lo, hi);
}
double fvl_rng_uniform(fvl_rng *r) { return fvl_rng_uniform_at(r->seed, fvl_rng_reserve(r, 1)); }
double fvl_rng_normal(fvl_rng *r) { return fvl_rng_normal_at(r->seed, fvl_rng_reserve(r, 1)); }
int64_t fvl_rng_int(fvl_rng *r, int64_t lo, int64_t hi) {
  return int_at(r->seed, fvl_rng_reserve(r, 1), lo, hi);
}
void fvl_rng_permutation(fvl_rng *r, int32_t *out, size_t n) {
  for (size_t i = 0; i < n; i++) out[i] = (int32_t)i;
  if (n < 2) return;
  uint64_t base = fvl_rng_reserve(r, n);
  for (size_t i = n - 1; i > 0; i--) {
    size_t j = (size_t)int_at(r->seed, base + i, 0, (int64_t)i);
    int32_t t = out[i]; out[i] = out[j]; out[j] = t;
  }
}
