/* act.c — PReLU and dropout masks. */
#include "nn.h"
#include "rng.h"

void fvl_prelu_fwd(const float *x, int B, int C, int64_t S, const float *a, int na, float *y) {
  const int64_t planes = (int64_t)B * C;
#pragma omp parallel for schedule(static)
  for (int64_t bc = 0; bc < planes; bc++) {
    const float ac = a[na == 1 ? 0 : bc % C];
    const float *p = x + bc * S;
    float *q = y + bc * S;
    for (int64_t i = 0; i < S; i++) q[i] = p[i] > 0.f ? p[i] : ac * p[i];
  }
}

void fvl_prelu_bwd(const float *x, const float *dy, int B, int C, int64_t S, const float *a, int na,
                   float *dx, float *da) {
  const int64_t planes = (int64_t)B * C;
  if (dx) {
#pragma omp parallel for schedule(static)
    for (int64_t bc = 0; bc < planes; bc++) {
      const float ac = a[na == 1 ? 0 : bc % C];
      const float *p = x + bc * S, *g = dy + bc * S;
      float *q = dx + bc * S;
      for (int64_t i = 0; i < S; i++) q[i] = p[i] > 0.f ? g[i] : ac * g[i];
    }
  }
  if (!da) return;
  if (na == 1) {
    double acc = 0;
#pragma omp parallel for schedule(static) reduction(+ : acc)
    for (int64_t bc = 0; bc < planes; bc++) {
      const float *p = x + bc * S, *g = dy + bc * S;
      float part = 0.f;
      for (int64_t i = 0; i < S; i++) part += p[i] > 0.f ? 0.f : p[i] * g[i];
      acc += part;
    }
    da[0] = (float)acc;
    return;
  }
#pragma omp parallel for schedule(static)
  for (int c = 0; c < C; c++) {
    double acc = 0;
    for (int b = 0; b < B; b++) {
      const float *p = x + ((int64_t)b * C + c) * S, *g = dy + ((int64_t)b * C + c) * S;
      float part = 0.f;
      for (int64_t i = 0; i < S; i++) part += p[i] > 0.f ? 0.f : p[i] * g[i];
      acc += part;
    }
    da[c] = (float)acc;
  }
}

void fvl_dropout_mask(float *mask, size_t n, double p) {
  fvl_rng *r = fvl_rng_global();
  const uint64_t seed = r->seed, base = fvl_rng_reserve(r, n);
  const float keep = p < 1 ? (float)(1.0 / (1.0 - p)) : 0.f;
#pragma omp parallel for schedule(static) if (n > 65536)
  for (size_t i = 0; i < n; i++) mask[i] = fvl_rng_uniform_at(seed, base + i) < p ? 0.f : keep;
}
