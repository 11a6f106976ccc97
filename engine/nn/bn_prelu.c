/* bn_prelu.c — BatchNorm, optionally followed by PReLU, in one sweep (see backbone.h); OpenMP
 * over channels, each channel's work done by one thread in a fixed order, so the results do not
 * depend on the thread count. fvl_batchnorm_fwd/bwd (batchnorm.c) are this kernel without PReLU.
 *
 * Training statistics in one pass over x, shifted by k = the mean of the channel's first plane
 * (so Σ(x−k)² − N·(mean−k)² does not cancel): float partial sums over blocks of BLK values of a
 * plane, added in double. A block's float sum is exact to ~1e-7 of its magnitude; N of the
 * face backbones' layers is up to 32·56·56 = 100,352, which the double sum absorbs.
 * The per-channel loops are FVL_HOT helpers (engine/hot.h: AVX2 / AVX-512 clones chosen at load
 * time); the PReLU selects are written so they compile to blends, not branches. */
#include "backbone.h"
#include "autograd.h"
#include "hot.h"
#include <math.h>
#include <stdlib.h>

#define BLK 512   /* values per float partial sum (a multiple of 16) */
typedef fvl_v8f v8f;
#define LD fvl_v8_load
#define ST fvl_v8_store
#define SET1 fvl_v8_set1

/* prelu(z) = z > 0 ? z : a·z, eight lanes (a NaN stays NaN) */
#define PRELU8(z, a) fvl_v8_select((z) > 0.f, (z), (a) * (z))

/* s[0] += Σ(p−k), s[1] += Σ(p−k)² over B planes p = x + b·cs of S values (in double, block by
 * block: calling it plane by plane in order gives the same bits as once for all the planes) */
FVL_HOT static void chan_sums(const float *x, int B, int64_t cs, int64_t S, float k, double s[2]) {
  double a1 = s[0], a2 = s[1];
  const v8f kv = SET1(k);
  for (int b = 0; b < B; b++) {
    const float *p = x + b * cs;
    for (int64_t i = 0; i < S;) {
      const int64_t end = S - i > BLK ? i + BLK : S;
      v8f u1 = {0}, u2 = {0}, w1 = {0}, w2 = {0};
      for (; i + 16 <= end; i += 16) {
        const v8f d = LD(p + i) - kv, e = LD(p + i + 8) - kv;
        u1 += d;
        u2 += d * d;
        w1 += e;
        w2 += e * e;
      }
      float t1 = 0.f, t2 = 0.f;
      for (; i < end; i++) {
        const float d = p[i] - k;
        t1 += d;
        t2 += d * d;
      }
      a1 += fvl_v8_hsum(u1 + w1) + t1;
      a2 += fvl_v8_hsum(u2 + w2) + t2;
    }
  }
  s[0] = a1;
  s[1] = a2;
}

/* y = x·sc + sh, then PReLU with slope a when act (B planes) */
FVL_HOT static void chan_apply(const float *x, float *y, int B, int64_t cs, int64_t S, float sc, float sh,
                               int act, float a) {
  const v8f scv = SET1(sc), shv = SET1(sh), av = SET1(act ? a : 1.f);
  for (int b = 0; b < B; b++) {
    const float *p = x + b * cs;
    float *q = y + b * cs;
    int64_t i = 0;
    if (act) {
      for (; i + 8 <= S; i += 8) {
        const v8f z = LD(p + i) * scv + shv;
        ST(q + i, PRELU8(z, av));
      }
      for (; i < S; i++) {
        const float z = p[i] * sc + sh;
        q[i] = z > 0.f ? z : a * z;
      }
    } else {
      for (; i + 8 <= S; i += 8) ST(q + i, LD(p + i) * scv + shv);
      for (; i < S; i++) q[i] = p[i] * sc + sh;
    }
  }
}

void fvl_bn_prelu_plane(const float *src, float *dst, size_t n, float sc, float sh, const float *a) {
  chan_apply(src, dst, 1, 0, (int64_t)n, sc, sh, a != NULL, a ? *a : 0.f);
}

/* pass 1 of the backward, dz = dy·prelu'(z) (dz = dy without PReLU), added to s (as chan_sums):
 * s[0] += Σ dz, s[1] += Σ dz·x̂, s[2] += Σ over z <= 0 of z·dy (the slope's gradient) */
FVL_HOT static void chan_bwd_sums(const float *x, const float *dy, int B, int64_t cs, int64_t S, float mean,
                                  float invstd, float sc, float sh, int act, float a, double s[3]) {
  double a1 = s[0], a2 = s[1], a3 = s[2];
  const v8f mv = SET1(mean), iv = SET1(invstd), scv = SET1(sc), shv = SET1(sh), av = SET1(act ? a : 1.f),
            zero = SET1(0.f);
  for (int b = 0; b < B; b++) {
    const float *p = x + b * cs, *g = dy + b * cs;
    for (int64_t i = 0; i < S;) {
      const int64_t end = S - i > BLK ? i + BLK : S;
      v8f u1 = {0}, u2 = {0}, u3 = {0};
      float t1 = 0.f, t2 = 0.f, t3 = 0.f;
      if (act) {
        for (; i + 8 <= end; i += 8) {
          const v8f xv = LD(p + i), gv = LD(g + i), z = xv * scv + shv;
          const fvl_v8i pos = z > 0.f;
          const v8f dz = fvl_v8_select(pos, gv, av * gv);
          u1 += dz;
          u2 += dz * ((xv - mv) * iv);
          u3 += fvl_v8_select(pos, zero, z * gv);
        }
        for (; i < end; i++) {
          const float z = p[i] * sc + sh, dz = z > 0.f ? g[i] : a * g[i];
          t1 += dz;
          t2 += dz * ((p[i] - mean) * invstd);
          t3 += z > 0.f ? 0.f : z * g[i];
        }
      } else {
        for (; i + 8 <= end; i += 8) {
          const v8f gv = LD(g + i);
          u1 += gv;
          u2 += gv * ((LD(p + i) - mv) * iv);
        }
        for (; i < end; i++) {
          t1 += g[i];
          t2 += g[i] * ((p[i] - mean) * invstd);
        }
      }
      a1 += fvl_v8_hsum(u1) + t1;
      a2 += fvl_v8_hsum(u2) + t2;
      a3 += fvl_v8_hsum(u3) + t3;
    }
  }
  s[0] = a1;
  s[1] = a2;
  s[2] = a3;
}

/* pass 2: dx = k·(dz − mdz − x̂·mdzx) (k = γ·invstd; mdz = mdzx = 0 outside training) */
FVL_HOT static void chan_bwd_dx(const float *x, const float *dy, float *dx, int B, int64_t cs, int64_t S,
                                float mean, float invstd, float sc, float sh, int act, float a, float k,
                                float mdz, float mdzx) {
  const v8f mv = SET1(mean), iv = SET1(invstd), scv = SET1(sc), shv = SET1(sh), av = SET1(act ? a : 1.f),
            kv = SET1(k), m1 = SET1(mdz), m2 = SET1(mdzx);
  for (int b = 0; b < B; b++) {
    const float *p = x + b * cs, *g = dy + b * cs;
    float *r = dx + b * cs;
    int64_t i = 0;
    if (act) {
      for (; i + 8 <= S; i += 8) {
        const v8f xv = LD(p + i), gv = LD(g + i), z = xv * scv + shv;
        const v8f dz = fvl_v8_select(z > 0.f, gv, av * gv);
        ST(r + i, kv * (dz - m1 - ((xv - mv) * iv) * m2));
      }
      for (; i < S; i++) {
        const float xh = (p[i] - mean) * invstd, z = p[i] * sc + sh;
        const float dz = z > 0.f ? g[i] : a * g[i];
        r[i] = k * (dz - mdz - xh * mdzx);
      }
    } else {
      for (; i + 8 <= S; i += 8) ST(r + i, kv * (LD(g + i) - m1 - ((LD(p + i) - mv) * iv) * m2));
      for (; i < S; i++) r[i] = k * (g[i] - mdz - ((p[i] - mean) * invstd) * mdzx);
    }
  }
}

/* training: channel c's shift k (its first plane's mean) and s = 0 for chan_sums */
static float chan_shift(const float *xc, int64_t S, double s[2]) {
  s[0] = s[1] = 0;
  chan_sums(xc, 1, 0, S, 0.f, s);
  const float k = (float)(s[0] / (double)S);
  s[0] = s[1] = 0;
  return k;
}

/* channel c's statistics (from the shifted sums s in training, else the running ones), the running
 * averages, save_mean/save_invstd[c], and the affine map y = x·*scale + *shift */
static void chan_moments(const fvl_bn_par *p, int c, int64_t N, float k, const double s[2], float *save_mean,
                         float *save_invstd, float *scale, float *shift) {
  double mean, var;
  if (p->training) {
    const double m = s[0] / (double)N, v = s[1] / (double)N - m * m;
    mean = k + m;
    var = v > 0 ? v : 0;
    if (p->running_mean) p->running_mean[c] = (float)((1 - p->momentum) * p->running_mean[c] + p->momentum * mean);
    if (p->running_var)
      p->running_var[c] =
          (float)((1 - p->momentum) * p->running_var[c] + p->momentum * var * (double)N / (double)(N - 1));
  } else {
    mean = p->running_mean[c];
    var = p->running_var[c];
  }
  const double invstd = 1.0 / sqrt(var + p->eps);
  if (save_mean) save_mean[c] = (float)mean;
  if (save_invstd) save_invstd[c] = (float)invstd;
  const double g = p->gamma ? p->gamma[c] : 1.0, bt = p->beta ? p->beta[c] : 0.0;
  *scale = (float)(g * invstd);
  *shift = (float)(bt - g * invstd * mean);
}

static float chan_slope(const fvl_bn_par *p, int c) { return p->a ? p->a[p->na == 1 ? 0 : c] : 1.f; }

void fvl_bn_act_channel_fwd(const fvl_bn_par *p, int c, const float *xc, float *yc, int B, int64_t cs, int64_t S,
                            float *save_mean, float *save_invstd) {
  double s[2] = {0, 0};
  float k = 0.f, scale, shift;
  if (p->training) {
    k = chan_shift(xc, S, s);
    chan_sums(xc, B, cs, S, k, s);
  }
  chan_moments(p, c, (int64_t)B * S, k, s, save_mean, save_invstd, &scale, &shift);
  chan_apply(xc, yc, B, cs, S, scale, shift, p->a != NULL, chan_slope(p, c));
}

int fvl_bn_act_fwd(const char *fn, const float *x, int B, int C, int64_t S, const float *gamma,
                   const float *beta, const float *a, int na, float *running_mean, float *running_var,
                   int training, double momentum, double eps, float *y, float *save_mean, float *save_invstd) {
  const int64_t N = (int64_t)B * S, cs = (int64_t)C * S;
  if (training && N < 2)
    return fvl_err("%s: training needs more than one value per channel, got input %dx%dx%lld "
                   "(use evaluate() for single samples)", fn, B, C, (long long)S);
  if (!training && (!running_mean || !running_var))
    return fvl_err("%s: evaluation mode needs running statistics", fn);
  const fvl_bn_par p = {.gamma = gamma, .beta = beta, .a = a, .na = na, .running_mean = running_mean,
                        .running_var = running_var, .training = training, .momentum = momentum, .eps = eps};
#pragma omp parallel for schedule(static)
  for (int c = 0; c < C; c++)
    fvl_bn_act_channel_fwd(&p, c, x + (int64_t)c * S, y + (int64_t)c * S, B, cs, S, save_mean, save_invstd);
  return 0;
}

/* the backward's constants of channel c (before pass 1) */
static void chan_consts(const fvl_bn_par *p, int c, const float *save_mean, const float *save_invstd,
                        fvl_bn_chan *ch) {
  const float mean = save_mean[c], invstd = save_invstd[c];
  const float g = p->gamma ? p->gamma[c] : 1.f, bt = p->beta ? p->beta[c] : 0.f;
  ch->act = p->a != NULL;
  ch->a = chan_slope(p, c);
  ch->mean = mean;
  ch->invstd = invstd;
  ch->scale = g * invstd;
  ch->shift = bt - g * invstd * mean;
  ch->k = g * invstd;
  ch->mdz = ch->mdzx = 0.f;
}

/* after pass 1: the means pass 2 subtracts (0 outside training) */
static void chan_means(const fvl_bn_par *p, int64_t N, const double s[3], fvl_bn_chan *ch) {
  ch->mdz = p->training ? (float)(s[0] / (double)N) : 0.f;
  ch->mdzx = p->training ? (float)(s[1] / (double)N) : 0.f;
}

static void chan_pass1(const fvl_bn_chan *ch, const float *xc, const float *dyc, int B, int64_t cs, int64_t S,
                       double s[3]) {
  chan_bwd_sums(xc, dyc, B, cs, S, ch->mean, ch->invstd, ch->scale, ch->shift, ch->act, ch->a, s);
}

void fvl_bn_act_channel_sums(const fvl_bn_par *p, int c, const float *save_mean, const float *save_invstd,
                             const float *xc, const float *dyc, int B, int64_t cs, int64_t S, fvl_bn_chan *ch,
                             double s[3]) {
  chan_consts(p, c, save_mean, save_invstd, ch);
  s[0] = s[1] = s[2] = 0;
  chan_pass1(ch, xc, dyc, B, cs, S, s);
  chan_means(p, (int64_t)B * S, s, ch);
}

void fvl_bn_act_channel_dx(const fvl_bn_chan *ch, const float *xc, const float *dyc, float *dxc, int B, int64_t cs,
                           int64_t S) {
  chan_bwd_dx(xc, dyc, dxc, B, cs, S, ch->mean, ch->invstd, ch->scale, ch->shift, ch->act, ch->a, ch->k, ch->mdz,
              ch->mdzx);
}

void fvl_bn_act_channel_grads(const double s[3], int c, float *dgamma, float *dbeta, float *da, double *da_part) {
  if (dgamma) dgamma[c] = (float)s[1];
  if (dbeta) dbeta[c] = (float)s[0];
  if (da_part) da_part[c] = s[2];
  else if (da) da[c] = (float)s[2];
}

double *fvl_bn_act_da_parts(const float *a, const float *da, int na, int C, int *failed) {
  *failed = 0;
  if (!(a && da && na == 1)) return NULL;
  double *part = malloc(sizeof(double) * (size_t)(C > 0 ? C : 1));
  if (!part) {
    fvl_err("bn_prelu: out of memory (%d doubles)", C);
    *failed = 1;
  }
  return part;
}

void fvl_bn_act_da_finish(double *da_part, int C, float *da) {
  if (!da_part) return;
  double acc = 0;
  for (int c = 0; c < C; c++) acc += da_part[c];
  da[0] = (float)acc;
  free(da_part);
}

int fvl_bn_act_bwd(const float *x, const float *dy, int B, int C, int64_t S, const float *gamma,
                   const float *beta, const float *a, int na, const float *save_mean,
                   const float *save_invstd, int training, float *dx, float *dgamma, float *dbeta, float *da) {
  const int64_t cs = (int64_t)C * S;
  /* one shared slope: its gradient is the sum of the channels' parts, in channel order */
  int failed;
  double *da_part = fvl_bn_act_da_parts(a, da, na, C, &failed);
  if (failed) return -1;
  const fvl_bn_par p = {.gamma = gamma, .beta = beta, .a = a, .na = na, .training = training};
#pragma omp parallel for schedule(static)
  for (int c = 0; c < C; c++) {
    const int64_t off = (int64_t)c * S;
    fvl_bn_chan ch;
    double s[3];
    fvl_bn_act_channel_sums(&p, c, save_mean, save_invstd, x + off, dy + off, B, cs, S, &ch, s);
    fvl_bn_act_channel_grads(s, c, dgamma, dbeta, a ? da : NULL, da_part);
    if (dx) fvl_bn_act_channel_dx(&ch, x + off, dy + off, dx + off, B, cs, S);
  }
  fvl_bn_act_da_finish(da_part, C, da);
  return 0;
}

int fvl_bn_prelu_fwd(const float *x, int B, int C, int64_t S, const float *gamma, const float *beta,
                     const float *a, int na, float *running_mean, float *running_var, int training,
                     double momentum, double eps, float *y, float *save_mean, float *save_invstd) {
  return fvl_bn_act_fwd("bn_prelu", x, B, C, S, gamma, beta, a, na, running_mean, running_var, training, momentum,
                        eps, y, save_mean, save_invstd);
}

int fvl_bn_prelu_bwd(const float *x, const float *dy, int B, int C, int64_t S, const float *gamma,
                     const float *beta, const float *a, int na, const float *save_mean,
                     const float *save_invstd, int training, float *dx, float *dgamma, float *dbeta,
                     float *da) {
  return fvl_bn_act_bwd(x, dy, B, C, S, gamma, beta, a, na, save_mean, save_invstd, training, dx, dgamma, dbeta, da);
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
  if (rc == 0)
    rc = fvl_bn_prelu_bwd(fvl_f32(x), fvl_f32(g), B, C, spatial_of(x), gamma ? fvl_f32(gamma) : NULL,
                          beta ? fvl_f32(beta) : NULL, fvl_f32(a), na, fvl_f32(mean), fvl_f32(invstd),
                          (int)n->iv[0], dx ? fvl_f32(dx) : NULL, dg ? fvl_f32(dg) : NULL,
                          db ? fvl_f32(db) : NULL, da ? fvl_f32(da) : NULL);
  if (rc == 0) {
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
