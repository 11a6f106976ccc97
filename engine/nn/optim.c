/* optim.c — fused in-place optimiser steps (one pass over the parameter). */
#include "nn.h"
#include <math.h>

#define PAR_MIN 16384

void fvl_sgd_step(float *p, const float *g, float *buf, size_t n, double lr, double momentum,
                  double dampening, double weight_decay, int nesterov, int first) {
  const float flr = (float)lr, mom = (float)momentum, damp = (float)(1.0 - dampening),
              wd = (float)weight_decay;
  if (momentum == 0 || !buf) {
#pragma omp parallel for simd schedule(static) if (n > PAR_MIN)
    for (size_t i = 0; i < n; i++) p[i] -= flr * (g[i] + wd * p[i]);
    return;
  }
#pragma omp parallel for simd schedule(static) if (n > PAR_MIN)
  for (size_t i = 0; i < n; i++) {
    float d = g[i] + wd * p[i];
    float bi = first ? d : mom * buf[i] + damp * d;
    buf[i] = bi;
    p[i] -= flr * (nesterov ? d + mom * bi : bi);
  }
}

void fvl_adamw_step(float *p, const float *g, float *m, float *v, size_t n, double lr, double beta1,
                    double beta2, double eps, double weight_decay, int64_t step) {
  const double bc1 = 1.0 - pow(beta1, (double)step), bc2 = 1.0 - pow(beta2, (double)step);
  const float decay = (float)(1.0 - lr * weight_decay), b1 = (float)beta1, b2 = (float)beta2,
              a1 = (float)(1.0 - beta1), a2 = (float)(1.0 - beta2);
  const float step_size = (float)(lr / bc1), inv_sqrt_bc2 = (float)(1.0 / sqrt(bc2)), feps = (float)eps;
#pragma omp parallel for simd schedule(static) if (n > PAR_MIN)
  for (size_t i = 0; i < n; i++) {
    float gi = g[i];
    float mi = b1 * m[i] + a1 * gi;
    float vi = b2 * v[i] + a2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] = p[i] * decay - step_size * mi / (sqrtf(vi) * inv_sqrt_bc2 + feps);
  }
}

double fvl_sumsq(const float *x, size_t n) {
  double acc = 0;
#pragma omp parallel for simd schedule(static) reduction(+ : acc) if (n > PAR_MIN)
  for (size_t i = 0; i < n; i++) acc += (double)x[i] * x[i];
  return acc;
}

void fvl_scale_inplace(float *x, size_t n, float s) {
#pragma omp parallel for simd schedule(static) if (n > PAR_MIN)
  for (size_t i = 0; i < n; i++) x[i] *= s;
}
