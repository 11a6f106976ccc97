/* batchnorm.c — batch normalisation over B×C×S (S = 1 for 1d, H·W for 2d), OpenMP over channels.
 * Statistics are accumulated in double (two passes: mean, then centred sum of squares). */
#include "nn.h"
#include <math.h>

int fvl_batchnorm_fwd(const float *x, int B, int C, int64_t S, const float *gamma, const float *beta,
                      float *running_mean, float *running_var, int training, double momentum,
                      double eps, float *y, float *save_mean, float *save_invstd) {
  const int64_t N = (int64_t)B * S, cs = (int64_t)C * S;
  if (training && N < 2)
    return fvl_err("batchnorm: training needs more than one value per channel, got input %dx%dx%lld "
                   "(use evaluate() for single samples)", B, C, (long long)S);
  if (!training && (!running_mean || !running_var))
    return fvl_err("batchnorm: evaluation mode needs running statistics");
#pragma omp parallel for schedule(static)
  for (int c = 0; c < C; c++) {
    double mean, invstd;
    if (training) {
      double sum = 0;
      for (int b = 0; b < B; b++) {
        const float *p = x + b * cs + c * S;
        for (int64_t i = 0; i < S; i++) sum += p[i];
      }
      mean = sum / (double)N;
      double ss = 0;
      for (int b = 0; b < B; b++) {
        const float *p = x + b * cs + c * S;
        for (int64_t i = 0; i < S; i++) {
          double d = p[i] - mean;
          ss += d * d;
        }
      }
      double var = ss / (double)N;
      invstd = 1.0 / sqrt(var + eps);
      if (running_mean)
        running_mean[c] = (float)((1 - momentum) * running_mean[c] + momentum * mean);
      if (running_var)
        running_var[c] = (float)((1 - momentum) * running_var[c] + momentum * ss / (double)(N - 1));
    } else {
      mean = running_mean[c];
      invstd = 1.0 / sqrt((double)running_var[c] + eps);
    }
    if (save_mean) save_mean[c] = (float)mean;
    if (save_invstd) save_invstd[c] = (float)invstd;
    float g = gamma ? gamma[c] : 1.f, bt = beta ? beta[c] : 0.f;
    float scale = (float)(g * invstd), shift = (float)(bt - g * invstd * mean);
    for (int b = 0; b < B; b++) {
      const float *p = x + b * cs + c * S;
      float *q = y + b * cs + c * S;
      for (int64_t i = 0; i < S; i++) q[i] = p[i] * scale + shift;
    }
  }
  return 0;
}

void fvl_batchnorm_bwd(const float *x, const float *dy, int B, int C, int64_t S, const float *gamma,
                       const float *save_mean, const float *save_invstd, int training, float *dx,
                       float *dgamma, float *dbeta) {
  const int64_t N = (int64_t)B * S, cs = (int64_t)C * S;
#pragma omp parallel for schedule(static)
  for (int c = 0; c < C; c++) {
    const double mean = save_mean[c], invstd = save_invstd[c];
    double sdy = 0, sdyx = 0;   /* Σ dy, Σ dy·x̂ */
    for (int b = 0; b < B; b++) {
      const float *p = x + b * cs + c * S, *g = dy + b * cs + c * S;
      for (int64_t i = 0; i < S; i++) {
        sdy += g[i];
        sdyx += g[i] * ((p[i] - mean) * invstd);
      }
    }
    if (dgamma) dgamma[c] = (float)sdyx;
    if (dbeta) dbeta[c] = (float)sdy;
    if (!dx) continue;
    const double gm = gamma ? gamma[c] : 1.0;
    if (training) {
      /* dx = γ·invstd·(dy - mean(dy) - x̂·mean(dy·x̂)) */
      const double k = gm * invstd, mdy = sdy / (double)N, mdyx = sdyx / (double)N;
      for (int b = 0; b < B; b++) {
        const float *p = x + b * cs + c * S, *g = dy + b * cs + c * S;
        float *q = dx + b * cs + c * S;
        for (int64_t i = 0; i < S; i++) {
          double xh = (p[i] - mean) * invstd;
          q[i] = (float)(k * (g[i] - mdy - xh * mdyx));
        }
      }
    } else {
      const float k = (float)(gm * invstd);
      for (int b = 0; b < B; b++) {
        const float *g = dy + b * cs + c * S;
        float *q = dx + b * cs + c * S;
        for (int64_t i = 0; i < S; i++) q[i] = g[i] * k;
      }
    }
  }
}
