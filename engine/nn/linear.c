/* linear.c — y = x wᵀ + b with one sgemm each way. */
#include "nn.h"
#include <string.h>
#include <cblas.h>

void fvl_linear_fwd(const float *x, int B, int In, const float *w, int O, const float *bias, float *y) {
  if (B == 0) return;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, O, In, 1.f, x, In, w, In, 0.f, y, O);
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
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, In, O, 1.f, dy, O, w, In, 0.f, dx, In);
  if (dw) {
    if (B > 0)
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, O, In, B, 1.f, dy, O, x, In, 0.f, dw, In);
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
