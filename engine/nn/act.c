/* act.c — PReLU and dropout masks. The per-plane loops are FVL_HOT (engine/hot.h) and written
 * with 8-float vectors: the selects compile to blends. */
#include "nn.h"
#include "rng.h"
#include "hot.h"

typedef fvl_v8f v8f;

FVL_HOT static void prelu_plane_fwd(const float *p, float *q, int64_t S, float ac) {
  const v8f av = fvl_v8_set1(ac);
  int64_t i = 0;
  for (; i + 8 <= S; i += 8) {
    const v8f v = fvl_v8_load(p + i);
    fvl_v8_store(q + i, fvl_v8_select(v > 0.f, v, av * v));
  }
  for (; i < S; i++) q[i] = p[i] > 0.f ? p[i] : ac * p[i];
}

void fvl_prelu_fwd(const float *x, int B, int C, int64_t S, const float *a, int na, float *y) {
  const int64_t planes = (int64_t)B * C;
#pragma omp parallel for schedule(static)
  for (int64_t bc = 0; bc < planes; bc++) prelu_plane_fwd(x + bc * S, y + bc * S, S, a[na == 1 ? 0 : bc % C]);
}

/* dx and da of one plane in one pass; da's partial sum in 8 lanes, added in a fixed order */
FVL_HOT static double prelu_plane_bwd(const float *p, const float *g, int64_t S, float ac, float *q) {
  const v8f av = fvl_v8_set1(ac), zero = fvl_v8_set1(0.f);
  v8f lane = zero;
  int64_t i = 0;
  for (; i + 8 <= S; i += 8) {
    const v8f v = fvl_v8_load(p + i), gv = fvl_v8_load(g + i);
    const fvl_v8i pos = v > 0.f;
    if (q) fvl_v8_store(q + i, fvl_v8_select(pos, gv, av * gv));
    lane += fvl_v8_select(pos, zero, v * gv);
  }
  float tail = 0.f;
  for (; i < S; i++) {
    const float v = p[i], gv = g[i];
    if (q) q[i] = v > 0.f ? gv : ac * gv;
    tail += v > 0.f ? 0.f : v * gv;
  }
  return fvl_v8_hsum(lane) + tail;
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
