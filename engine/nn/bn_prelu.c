/* bn_prelu.c — BatchNorm followed by PReLU in one sweep (see backbone.h), OpenMP over channels.
 * Training statistics in one pass over x with a shift (the channel's first value), accumulated
 * in double: Σ(x-k) and Σ(x-k)² give the mean and the biased variance without a second pass. */
#include "backbone.h"
#include "autograd.h"
#include <math.h>
#include <stdlib.h>

static void channel_stats(const float *x, int B, int C, int64_t S, int c, double *mean, double *var) {
  const int64_t cs = (int64_t)C * S, N = (int64_t)B * S;
  const double k = x[(int64_t)c * S];
  double s1 = 0, s2 = 0;
  for (int b = 0; b < B; b++) {
    const float *p = x + b * cs + (int64_t)c * S;
#pragma omp simd reduction(+ : s1, s2)
    for (int64_t i = 0; i < S; i++) {
      const double d = (double)p[i] - k;
      s1 += d;
      s2 += d * d;
    }
  }
  const double m = s1 / (double)N;
  double v = s2 / (double)N - m * m;
  *mean = k + m;
  *var = v > 0 ? v : 0;
}

int fvl_bn_prelu_fwd(const float *x, int B, int C, int64_t S, const float *gamma, const float *beta,
                     const float *a, int na, float *running_mean, float *running_var, int training,
                     double momentum, double eps, float *y, float *save_mean, float *save_invstd) {
  const int64_t N = (int64_t)B * S, cs = (int64_t)C * S;
  if (training && N < 2)
    return fvl_err("bn_prelu: training needs more than one value per channel, got input %dx%dx%lld "
                   "(use evaluate() for single samples)", B, C, (long long)S);
  if (!training && (!running_mean || !running_var))
    return fvl_err("bn_prelu: evaluation mode needs running statistics");
#pragma omp parallel for schedule(static)
  for (int c = 0; c < C; c++) {
    double mean, var;
    if (training) {
      channel_stats(x, B, C, S, c, &mean, &var);
      if (running_mean) running_mean[c] = (float)((1 - momentum) * running_mean[c] + momentum * mean);
      if (running_var)
        running_var[c] = (float)((1 - momentum) * running_var[c] + momentum * var * (double)N / (double)(N - 1));
    } else {
      mean = running_mean[c];
      var = running_var[c];
    }
    const double invstd = 1.0 / sqrt(var + eps);
    if (save_mean) save_mean[c] = (float)mean;
    if (save_invstd) save_invstd[c] = (float)invstd;
    const double g = gamma ? gamma[c] : 1.0, bt = beta ? beta[c] : 0.0;
    const float scale = (float)(g * invstd), shift = (float)(bt - g * invstd * mean);
    const float ac = a[na == 1 ? 0 : c];
    for (int b = 0; b < B; b++) {
      const float *p = x + b * cs + (int64_t)c * S;
      float *q = y + b * cs + (int64_t)c * S;
#pragma omp simd
      for (int64_t i = 0; i < S; i++) {
        const float z = p[i] * scale + shift;
        q[i] = z > 0.f ? z : ac * z;
      }
    }
  }
  return 0;
}

void fvl_bn_prelu_bwd(const float *x, const float *dy, int B, int C, int64_t S, const float *gamma,
                      const float *beta, const float *a, int na, const float *save_mean,
                      const float *save_invstd, int training, float *dx, float *dgamma, float *dbeta,
                      float *da) {
  const int64_t N = (int64_t)B * S, cs = (int64_t)C * S;
  double *da_part = da ? malloc(sizeof(double) * (size_t)(C > 0 ? C : 1)) : NULL;
#pragma omp parallel for schedule(static)
  for (int c = 0; c < C; c++) {
    const float mean = save_mean[c], invstd = save_invstd[c];
    const float g = gamma ? gamma[c] : 1.f, bt = beta ? beta[c] : 0.f, ac = a[na == 1 ? 0 : c];
    const float scale = g * invstd, shift = bt - g * invstd * mean;
    /* pass 1: dz = dy·prelu'(z), Σ dz, Σ dz·x̂, Σ dy·z over z <= 0 */
    double sdz = 0, sdzx = 0, sda = 0;
    for (int b = 0; b < B; b++) {
      const float *p = x + b * cs + (int64_t)c * S, *q = dy + b * cs + (int64_t)c * S;
      float f1 = 0.f, f2 = 0.f, f3 = 0.f;
#pragma omp simd reduction(+ : f1, f2, f3)
      for (int64_t i = 0; i < S; i++) {
        const float xh = (p[i] - mean) * invstd, z = p[i] * scale + shift;
        const float dz = z > 0.f ? q[i] : ac * q[i];
        f1 += dz;
        f2 += dz * xh;
        f3 += z > 0.f ? 0.f : z * q[i];
      }
      sdz += f1;
      sdzx += f2;
      sda += f3;
    }
    if (dgamma) dgamma[c] = (float)sdzx;
    if (dbeta) dbeta[c] = (float)sdz;
    if (da_part) da_part[c] = sda;
    if (!dx) continue;
    /* pass 2: dx = γ·invstd·(dz - mean(dz) - x̂·mean(dz·x̂)) in training, γ·invstd·dz otherwise */
    const float k = g * invstd;
    const float mdz = training ? (float)(sdz / (double)N) : 0.f, mdzx = training ? (float)(sdzx / (double)N) : 0.f;
    for (int b = 0; b < B; b++) {
      const float *p = x + b * cs + (int64_t)c * S, *q = dy + b * cs + (int64_t)c * S;
      float *r = dx + b * cs + (int64_t)c * S;
#pragma omp simd
      for (int64_t i = 0; i < S; i++) {
        const float xh = (p[i] - mean) * invstd, z = p[i] * scale + shift;
        const float dz = z > 0.f ? q[i] : ac * q[i];
        r[i] = k * (dz - mdz - xh * mdzx);
      }
    }
  }
  if (da_part) {
    if (na == 1) {
      double acc = 0;
      for (int c = 0; c < C; c++) acc += da_part[c];
      da[0] = (float)acc;
    } else {
      for (int c = 0; c < C; c++) da[c] = (float)da_part[c];
    }
    free(da_part);
  }
}

/* ------------------------------------------------------------------ autograd wrapper */
static int64_t spatial_of(const fvl_tensor *x) {
  int64_t S = 1;
  for (int d = 2; d < x->ndim; d++) S *= x->size[d];
  return S;
}

/* saved: x, mean, invstd, gamma, beta, a; iv[0] = training */
static int bw_bn_prelu(fvl_node *n, fvl_tensor *gout) {
  fvl_tensor *x = n->saved[0], *mean = n->saved[1], *invstd = n->saved[2], *gamma = n->saved[3],
             *beta = n->saved[4], *a = n->saved[5];
  fvl_tensor *g = fvl_contiguous(gout);
  if (!g) return -1;
  const int B = (int)x->size[0], C = (int)x->size[1], na = (int)fvl_numel(a);
  int64_t c64 = C;
  fvl_tensor *dx = NULL, *dg = NULL, *db = NULL, *da = NULL;
  int rc = 0;
  if (fvl_node_wants(n, 0) && !(dx = fvl_empty_like(x))) rc = -1;
  if (rc == 0 && fvl_node_wants(n, 1) && !(dg = fvl_empty(FVL_F32, 1, &c64))) rc = -1;
  if (rc == 0 && fvl_node_wants(n, 2) && !(db = fvl_empty(FVL_F32, 1, &c64))) rc = -1;
  if (rc == 0 && fvl_node_wants(n, 3) && !(da = fvl_empty_like(a))) rc = -1;
  if (rc == 0) {
    fvl_bn_prelu_bwd(fvl_f32(x), fvl_f32(g), B, C, spatial_of(x), gamma ? fvl_f32(gamma) : NULL,
                     beta ? fvl_f32(beta) : NULL, fvl_f32(a), na, fvl_f32(mean), fvl_f32(invstd),
                     (int)n->iv[0], dx ? fvl_f32(dx) : NULL, dg ? fvl_f32(dg) : NULL,
                     db ? fvl_f32(db) : NULL, da ? fvl_f32(da) : NULL);
    if (dx) rc = fvl_node_accum(n, 0, dx);
    if (rc == 0 && dg) rc = fvl_node_accum(n, 1, dg);
    if (rc == 0 && db) rc = fvl_node_accum(n, 2, db);
    if (rc == 0 && da) rc = fvl_node_accum(n, 3, da);
  }
  fvl_release(g); fvl_release(dx); fvl_release(dg); fvl_release(db); fvl_release(da);
  return rc;
}

static int vec_ok(const char *arg, const fvl_tensor *t, int64_t C, int64_t alt, const fvl_tensor *x) {
  char s1[64], s2[64];
  if (!t) return 0;
  if (t->dtype != FVL_F32) return fvl_err("bn_prelu: %s is int32, expected float32", arg);
  if (t->ndim != 1 || (t->size[0] != C && t->size[0] != alt))
    return fvl_err("bn_prelu: input is %s (%lld channels) but %s is %s", fvl_shape_str(x, s1, sizeof s1),
                   (long long)C, arg, fvl_shape_str(t, s2, sizeof s2));
  if (!fvl_is_contiguous(t)) return fvl_err("bn_prelu: %s must be contiguous", arg);
  return 0;
}

fvl_tensor *fvl_nn_bn_prelu(fvl_tensor *x, fvl_tensor *gamma, fvl_tensor *beta, fvl_tensor *a,
                            fvl_tensor *running_mean, fvl_tensor *running_var, int training,
                            double momentum, double eps) {
  char s1[64];
  if (!x || x->dtype != FVL_F32) { fvl_err("bn_prelu: input must be a float32 tensor"); return NULL; }
  if (!a) { fvl_err("bn_prelu: the PReLU weight is missing"); return NULL; }
  if (x->ndim < 2 || x->size[0] > INT32_MAX || x->size[1] > INT32_MAX) {
    fvl_err("bn_prelu: input must be batch x channels [x ...] with int sizes, got %s",
            fvl_shape_str(x, s1, sizeof s1));
    return NULL;
  }
  const int64_t C = x->size[1];
  if (vec_ok("weight", gamma, C, C, x) < 0 || vec_ok("bias", beta, C, C, x) < 0 ||
      vec_ok("prelu weight", a, C, 1, x) < 0 || vec_ok("running_mean", running_mean, C, C, x) < 0 ||
      vec_ok("running_var", running_var, C, C, x) < 0)
    return NULL;
  if ((running_mean == NULL) != (running_var == NULL)) {
    fvl_err("bn_prelu: give both running_mean and running_var, or neither");
    return NULL;
  }
  if (!(eps > 0)) { fvl_err("bn_prelu: eps must be > 0, got %g", eps); return NULL; }
  if (!(momentum >= 0 && momentum <= 1)) {
    fvl_err("bn_prelu: momentum must be in [0, 1], got %g", momentum);
    return NULL;
  }
  fvl_tensor *xc = fvl_contiguous(x);
  fvl_tensor *y = xc ? fvl_empty_like(xc) : NULL;
  fvl_tensor *mean = fvl_empty(FVL_F32, 1, &C), *invstd = fvl_empty(FVL_F32, 1, &C);
  int rc = (xc && y && mean && invstd) ? 0 : -1;
  if (rc == 0)
    rc = fvl_bn_prelu_fwd(fvl_f32(xc), (int)x->size[0], (int)C, spatial_of(x), gamma ? fvl_f32(gamma) : NULL,
                          beta ? fvl_f32(beta) : NULL, fvl_f32(a), (int)fvl_numel(a),
                          running_mean ? fvl_f32(running_mean) : NULL,
                          running_var ? fvl_f32(running_var) : NULL, training, momentum, eps, fvl_f32(y),
                          fvl_f32(mean), fvl_f32(invstd));
  if (rc == 0) {
    fvl_tensor *in[4] = {x, gamma, beta, a};
    fvl_node *nd = fvl_record("bn_prelu", bw_bn_prelu, y, 4, in);
    if (nd) {
      nd->saved[0] = fvl_detach(xc);
      nd->saved[1] = mean; mean = NULL;
      nd->saved[2] = invstd; invstd = NULL;
      nd->saved[3] = gamma ? fvl_detach(gamma) : NULL;
      nd->saved[4] = beta ? fvl_detach(beta) : NULL;
      nd->saved[5] = fvl_detach(a);
      nd->iv[0] = training ? 1 : 0;
    }
  } else {
    fvl_release(y);
    y = NULL;
  }
  fvl_release(xc); fvl_release(mean); fvl_release(invstd);
  return y;
}
