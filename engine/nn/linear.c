/* linear.c — y = x wᵀ + b with one sgemm each way (fvl_gemm: the same bits with any thread count). */
#include "nn.h"
#include <string.h>

void fvl_linear_fwd(const float *x, int B, int In, const float *w, int O, const float *bias, float *y) {
  if (B == 0) return;
  fvl_gemm(0, 1, B, O, In, 1.f, x, In, w, In, 0.f, y, O);
  if (!bias) return;
#pragma omp parallel for schedule(static) if ((int64_t)B * O > 32768)
  for (int b = 0; b < B; b++) {
    float *r = y + (size_t)b * O;
    for (int o = 0; o < O; o++) r[o] += bias[o];
  }
}

void fvl_linear_bwd(const float *x, int B, int In, const float *w, int O, const float *dy, float *dx,
                    float *dw, float *db) {
  if (dx && B > 0)
    fvl_gemm(0, 0, B, In, O, 1.f, dy, O, w, In, 0.f, dx, In);
  if (dw) {
    if (B > 0)
      fvl_gemm(1, 0, O, In, B, 1.f, dy, O, x, In, 0.f, dw, In);
    else
      memset(dw, 0, sizeof(float) * (size_t)O * In);
  }
  if (db) {
#pragma omp parallel for schedule(static) if ((int64_t)B * O > 32768)
    for (int o = 0; o < O; o++) {
      double acc = 0;
      for (int b = 0; b < B; b++) acc += dy[(size_t)b * O + o];
      db[o] = (float)acc;
    }
  }
}
