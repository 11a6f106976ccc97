/* center.c — the centre-loss α-rule (docs/losses.md §1.10): centres move towards the batch means of
 * their classes, damped by 1 + n_j; classes absent from the batch stay. */
#include "margin.h"
#include "core.h"
#include <math.h>
#include <stdlib.h>

static int check_finite(const char *fn, const char *arg, float v) {
  if (!isfinite(v)) return fvl_err("%s: %s = %g (expected a finite number)", fn, arg, (double)v);
  return 0;
}

int fvl_center_update(float *centers, int C, int D, const float *x, const int32_t *y, int B,
                      float alpha) {
  static const char *fn = "fvl_center_update";
  if (B < 1) return fvl_err("%s: empty batch (B = %d, expected >= 1 rows)", fn, B);
  if (C < 1 || D < 1) return fvl_err("%s: centers are %dx%d (expected C, D >= 1)", fn, C, D);
  if (!centers || !x || !y) return fvl_err("%s: centers, x or labels is NULL", fn);
  if (check_finite(fn, "alpha", alpha)) return -1;
  for (int i = 0; i < B; i++)
    if (y[i] < 0 || y[i] >= C)
      return fvl_err("%s: y[%d] = %d is outside 0..%d (0-based labels)", fn, i, (int)y[i], C - 1);
  /* each class present is updated by the thread that owns its first occurrence:
     O(B·D) work plus O(B²) label comparisons */
  int oom = 0;
#pragma omp parallel
  {
    int32_t *rows = malloc(sizeof(int32_t) * (size_t)B);
    double *sx = malloc(sizeof(double) * (size_t)D);
    if (!rows || !sx) {
#pragma omp atomic write
      oom = 1;
    }
#pragma omp for schedule(dynamic, 4)
    for (int i = 0; i < B; i++) {
      if (!rows || !sx) continue;
      int j = y[i], first = 1;
      for (int k = 0; k < i && first; k++) first = y[k] != j;
      if (!first) continue;
      int n = 0;
      for (int k = i; k < B; k++)
        if (y[k] == j) rows[n++] = k;
      for (int d = 0; d < D; d++) sx[d] = 0.0;
      for (int q = 0; q < n; q++) {
        const float *xr = x + (size_t)rows[q] * D;
        for (int d = 0; d < D; d++) sx[d] += xr[d];
      }
      float *c = centers + (size_t)j * D;
      const double w = (double)alpha / (1.0 + n);
      for (int d = 0; d < D; d++) c[d] = (float)(c[d] - w * (n * (double)c[d] - sx[d]));
    }
    free(rows);
    free(sx);
  }
  if (oom) return fvl_err("%s: out of memory", fn);
  return 0;
}
