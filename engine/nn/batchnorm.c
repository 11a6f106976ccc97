/* batchnorm.c — batch normalisation over B×C×S (S = 1 for 1d, H·W for 2d): the BatchNorm + PReLU
 * kernel of bn_prelu.c without the PReLU (statistics, threads and numerics described there). */
#include "backbone.h"

int fvl_batchnorm_fwd(const float *x, int B, int C, int64_t S, const float *gamma, const float *beta,
                      float *running_mean, float *running_var, int training, double momentum,
                      double eps, float *y, float *save_mean, float *save_invstd) {
  return fvl_bn_act_fwd("batchnorm", x, B, C, S, gamma, beta, NULL, 0, running_mean, running_var, training,
                        momentum, eps, y, save_mean, save_invstd);
}

void fvl_batchnorm_bwd(const float *x, const float *dy, int B, int C, int64_t S, const float *gamma,
                       const float *save_mean, const float *save_invstd, int training, float *dx,
                       float *dgamma, float *dbeta) {
  /* without PReLU the backward allocates nothing and cannot fail */
  fvl_bn_act_bwd(x, dy, B, C, S, gamma, NULL, NULL, 0, save_mean, save_invstd, training, dx, dgamma, dbeta, NULL);
}
