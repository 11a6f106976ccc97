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

/* dx and da of one plane in one pass; da's partial sum in 8 lanes so that it vectorises */
static double prelu_plane_bwd(const float *p, const float *g, int64_t S, float ac, float *q) {
  float lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= S; i += 8)
    for (int l = 0; l < 8; l++) {
      const float v = p[i + l], gv = g[i + l];
      if (q) q[i + l] = v > 0.f ? gv : ac * gv;
      lane[l] += v > 0.f ? 0.f : v * gv;
    }
  for (; i < S; i++) {
    const float v = p[i], gv = g[i];
    if (q) q[i] = v > 0.f ? gv : ac * gv;
    lane[0] += v > 0.f ? 0.f : v * gv;
  }
  double acc = 0;
  for (int l = 0; l < 8; l++) acc += lane[l];
  return acc;
}

void fvl_prelu_bwd(const float *x, const float *dy, int B, int C, int64_t S, const float *a, int na,
                   float *dx, float *da) {
  const int64_t planes = (int64_t)B * C;
  if (da && na != 1) {   /* per channel: dx and da together, one pass over x and dy */
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
      double acc = 0;
      for (int b = 0; b < B; b++) {
        const int64_t bc = (int64_t)b * C + c;
        acc += prelu_plane_bwd(x + bc * S, dy + bc * S, S, a[c], dx ? dx + bc * S : NULL);
      }
      da[c] = (float)acc;
    }
    return;
  }
  double acc = 0;
#pragma omp parallel for schedule(static) reduction(+ : acc)
  for (int64_t bc = 0; bc < planes; bc++)
    acc += prelu_plane_bwd(x + bc * S, dy + bc * S, S, a[na == 1 ? 0 : bc % C], dx ? dx + bc * S : NULL);
  if (da) da[0] = (float)acc;
}

void fvl_dropout_mask(float *mask, size_t n, double p) {
  fvl_rng *r = fvl_rng_global();
  const uint64_t seed = r->seed, base = fvl_rng_reserve(r, n);
  const float keep = p < 1 ? (float)(1.0 / (1.0 - p)) : 0.f;
#pragma omp parallel for schedule(static) if (n > 65536)
  for (size_t i = 0; i < n; i++) mask[i] = fvl_rng_uniform_at(seed, base + i) < p ? 0.f : keep;
}
