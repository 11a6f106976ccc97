/* margin.c — the generic cosine-logit kernel with fused max-shifted softmax-CE (forward and
 * backward) and the hard-negative mean (pairwise Circle: circle.c, centre rule: center.c).
 * Formulas: docs/losses.md §0 (pipeline, derivative table), §1 (kernels), §5 (numerics). */
#include "margin.h"
#include "core.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK 512              /* columns per block: f and df live on the stack (4 KiB) */
/* CHUNK_LOOP: the row loops find the target's chunk by j0 == jt (jt = y − y mod CHUNK), never
   by a range test on j0: GCC (-O3, -fsplit-loops) splits a column loop at a range test, and the
   split-off copy loses the `omp simd` reductions of its inner loops, i.e. runs scalar (~4x
   slower on the chunks past the target). */

/* The per-row loops are compiled twice, for AVX2+FMA and for the baseline ISA, and the loader
   picks one (FVL_HOT, engine/hot.h): the build flags stay portable, the hot loops run 8 wide. */
#include "hot.h"

/* ---------------------------------------------------------------- vectorisable exp
 * exp(x) = 2^n · e^r, n = round(x/ln 2), |r| ≤ ln2/2, e^r by its degree-7 Taylor polynomial
 * (truncation < 6e-9 relative). Inputs are clamped to [−87, 88]: below, the result (1.6e-38) is
 * negligible against the LSE sums it enters (which are ≥ 1). Relative error ≈ 2 ulp.
 * The bounds are passed in as run-time values (EXP_LO/EXP_HI, read once per row): with literal
 * bounds GCC turns the clamps into branches to constant results and the loops stop vectorising. */
static volatile float exp_lo_v = -87.0f, exp_hi_v = 88.0f, one_v = 1.0f, zero_v = 0.0f;
static inline float fast_expf(float x, float lo, float hi) {
  x = x < lo ? lo : x;
  x = x > hi ? hi : x;
  float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  /* round to nearest */
  float r = x - n * 0.693145751953125f;                              /* ln 2, high part */
  r = r - n * 1.428606765330187e-06f;                                /* ln 2, low part  */
  float p = 1.98412698e-4f;
  p = p * r + 1.38888889e-3f;
  p = p * r + 8.33333333e-3f;
  p = p * r + 4.16666667e-2f;
  p = p * r + 1.66666667e-1f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  uint32_t e = (uint32_t)((int32_t)n + 127) << 23;   /* NaN: garbage scale, p is NaN anyway */
  float sc;
  memcpy(&sc, &e, sizeof sc);
  return p * sc;
}

/* ---------------------------------------------------------------- names and checks */
const char *fvl_target_kind_name(fvl_target_kind k) {
  static const char *const n[] = {"none", "cos", "arc", "combined", "sphere", "circle", "given"};
  return (unsigned)k < 7 ? n[k] : "?";
}
const char *fvl_neg_kind_name(fvl_neg_kind k) {
  static const char *const n[] = {"none", "affine", "quadratic", "circle"};
  return (unsigned)k < 4 ? n[k] : "?";
}

fvl_margin_spec fvl_margin_spec_default(void) {
  fvl_margin_spec sp;
  memset(&sp, 0, sizeof sp);
  sp.s = 1.0f;
  sp.target = FVL_TK_NONE;
  sp.m1 = 1.0f;
  sp.fallback = FVL_FB_MM;
  sp.sphere_m = 4;
  sp.neg = FVL_NK_NONE;
  sp.hard = FVL_HARD_ALL;
  sp.a = 1.0f;
  sp.circle_m = 0.25f;
  return sp;
}

static int check_finite(const char *fn, const char *arg, float v) {
  if (!isfinite(v)) return fvl_err("%s: %s = %g (expected a finite number)", fn, arg, (double)v);
  return 0;
}

int fvl_margin_spec_check(const char *fn, const fvl_margin_spec *sp) {
  if (!sp) return fvl_err("%s: spec is NULL (expected a margin spec)", fn);
  if ((unsigned)sp->target > FVL_TK_GIVEN)
    return fvl_err("%s: target kind %d (expected 0..%d)", fn, (int)sp->target, (int)FVL_TK_GIVEN);
  if ((unsigned)sp->neg > FVL_NK_CIRCLE)
    return fvl_err("%s: negative kind %d (expected 0..%d)", fn, (int)sp->neg, (int)FVL_NK_CIRCLE);
  if ((unsigned)sp->hard > FVL_HARD_ROW)
    return fvl_err("%s: hard kind %d (expected all|arc|cos|row)", fn, (int)sp->hard);
  if (sp->hard == FVL_HARD_ROW && !sp->thr_row)
    return fvl_err("%s: hard = 'row' needs the per-row thresholds (thr_row is NULL)", fn);
  if (!(sp->clamp_eps >= 0.0f && sp->clamp_eps < 1.0f))
    return fvl_err("%s: clamp = %g (expected 0 <= clamp < 1)", fn, (double)sp->clamp_eps);
  if (sp->target == FVL_TK_GIVEN && !sp->m_row)
    return fvl_err("%s: target 'given' needs the B target values (m_row is NULL)", fn);
  if ((unsigned)sp->fallback > FVL_FB_CLAMP)
    return fvl_err("%s: fallback %d (expected mm|none|clamp)", fn, (int)sp->fallback);
  if (!sp->s_row && check_finite(fn, "s", sp->s)) return -1;
  if (!sp->m_row && check_finite(fn, "m", sp->m)) return -1;
  if (check_finite(fn, "m1", sp->m1) || check_finite(fn, "m2", sp->m2) ||
      check_finite(fn, "m3", sp->m3) || check_finite(fn, "hard_m", sp->hard_m) ||
      check_finite(fn, "a", sp->a) || check_finite(fn, "b", sp->b) ||
      check_finite(fn, "t", sp->t) || check_finite(fn, "circle_m", sp->circle_m) ||
      check_finite(fn, "lambda", sp->sphere_lambda))
    return -1;
  if (sp->m_row && sp->target != FVL_TK_ARC && sp->target != FVL_TK_COS && sp->target != FVL_TK_GIVEN)
    return fvl_err("%s: a per-row margin vector m needs target 'arc', 'cos' or 'given' (got '%s')", fn,
                   fvl_target_kind_name(sp->target));
  if (sp->target == FVL_TK_COMBINED && sp->fallback == FVL_FB_MM && !sp->easy_margin &&
      sp->m1 != 1.0f)
    return fvl_err("%s: fallback 'mm' of the combined margin needs m1 = 1 (got m1 = %g)", fn,
                   (double)sp->m1);
  if (sp->target == FVL_TK_SPHERE) {
    if (sp->sphere_m < 1 || sp->sphere_m > 16)
      return fvl_err("%s: sphere_m = %d (expected an integer in 1..16)", fn, sp->sphere_m);
    if (sp->sphere_lambda < 0)
      return fvl_err("%s: lambda = %g (expected >= 0)", fn, (double)sp->sphere_lambda);
  }
  return 0;
}

static int check_args(const char *fn, const float *cos, int ldc, const int32_t *y, int B, int C,
                      const fvl_margin_spec *sp) {
  if (B < 1) return fvl_err("%s: empty batch (B = %d, expected >= 1 rows)", fn, B);
  if (C < 1) return fvl_err("%s: C = %d classes (expected >= 1)", fn, C);
  if (ldc < C) return fvl_err("%s: row stride %d is smaller than C = %d", fn, ldc, C);
  if (!cos || !y) return fvl_err("%s: cos or labels is NULL", fn);
  for (int i = 0; i < B; i++)
    if (y[i] < 0 || y[i] >= C)
      return fvl_err("%s: y[%d] = %d is outside 0..%d (0-based labels)", fn, i, (int)y[i], C - 1);
  return sp ? fvl_margin_spec_check(fn, sp) : 0;
}

/* a slice of the classes: y in −1..C−1 (−1: the target is in another slice), ctgt given */
static int check_part(const char *fn, const float *cos, int ldc, const int32_t *y, const float *ctgt, int B,
                      int C, const fvl_margin_spec *sp) {
  if (B < 1) return fvl_err("%s: empty batch (B = %d, expected >= 1 rows)", fn, B);
  if (C < 1) return fvl_err("%s: C = %d classes (expected >= 1)", fn, C);
  if (ldc < C) return fvl_err("%s: row stride %d is smaller than C = %d", fn, ldc, C);
  if (!cos || !y || !ctgt) return fvl_err("%s: cos, labels or target cosines is NULL", fn);
  for (int i = 0; i < B; i++)
    if (y[i] < -1 || y[i] >= C)
      return fvl_err("%s: y[%d] = %d is outside -1..%d (0-based slice column, -1 = elsewhere)", fn, i,
                     (int)y[i], C - 1);
  return sp ? fvl_margin_spec_check(fn, sp) : 0;
}

/* ---------------------------------------------------------------- per-row target kernel */
/* s: scale of the row; T, dT: target value and ∂T/∂c (before the scale); dTdm: ∂T/∂m_i;
   thr: hard threshold (j ≠ y is hard when c_ij > thr) — fvl_margin_row (margin.h) */
typedef fvl_margin_row rowp;

static inline double sin_of(double c) { return sqrt(fmax(0.0, 1.0 - c * c)); }

/* cos(θ+m) and its derivatives for c = cos θ, with sinθ floored in the derivative only */
static void arc_raw(double c, double m, double *T, double *dT, double *dTdm) {
  double sn = sin_of(c), cm = cos(m), sm = sin(m);
  *T = c * cm - sn * sm;
  *dT = cm + c * sm / fmax(sn, FVL_SIN_FLOOR);
  *dTdm = -(sn * cm + c * sm);
}

static void target_eval(const fvl_margin_spec *sp, double c, double m, double *T, double *dT,
                        double *dTdm) {
  *T = c; *dT = 1.0; *dTdm = 0.0;
  switch (sp->target) {
  case FVL_TK_NONE:
    *T = c; *dT = 1.0;
    return;
  case FVL_TK_COS:
    if (sp->easy_margin && !(c > 0)) { *T = c; *dT = 1.0; return; }
    *T = c - m; *dT = 1.0; *dTdm = -1.0;
    return;
  case FVL_TK_ARC: {
    int apply;
    if (sp->easy_margin) apply = c > 0;
    else if (sp->fallback == FVL_FB_MM) apply = c > cos(M_PI - m);
    else if (sp->fallback == FVL_FB_CLAMP) apply = acos(c) + m < M_PI;
    else apply = 1;
    if (apply) { arc_raw(c, m, T, dT, dTdm); break; }
    if (sp->easy_margin) { *T = c; *dT = 1.0; }
    else if (sp->fallback == FVL_FB_MM) { *T = c - m * sin(m); *dT = 1.0; *dTdm = -(sin(m) + m * cos(m)); }
    else { *T = -1.0; *dT = 0.0; }  /* clamp: cos(min(θ+m, π)) */
    break;
  }
  case FVL_TK_COMBINED: {
    double th = acos(c), arg = sp->m1 * th + sp->m2;
    int apply;
    if (sp->easy_margin) apply = c > 0;
    else if (sp->fallback == FVL_FB_MM) apply = c > cos(M_PI - sp->m2);
    else if (sp->fallback == FVL_FB_CLAMP) apply = arg < M_PI;
    else apply = 1;
    if (apply) {
      *T = cos(arg) - sp->m3;
      *dT = sp->m1 * sin(arg) / fmax(sin_of(c), FVL_SIN_FLOOR);
    } else if (sp->easy_margin) { *T = c; *dT = 1.0; }
    else if (sp->fallback == FVL_FB_MM) { *T = c - sp->m2 * sin(sp->m2); *dT = 1.0; }  /* no −m3 (cavaface) */
    else { *T = -1.0 - sp->m3; *dT = 0.0; }
    break;
  }
  case FVL_TK_SPHERE: {
    int mi = sp->sphere_m;
    double lam = sp->sphere_lambda;
    double k = floor(mi * acos(c) / M_PI);
    /* T_m(c) (first kind) and U_{m−1}(c) (second kind): T_m' = m·U_{m−1} */
    double t0 = 1.0, t1 = c, u0 = 1.0, u1 = 2.0 * c;
    for (int n = 1; n < mi; n++) {
      double t2 = 2.0 * c * t1 - t0, u2 = 2.0 * c * u1 - u0;
      t0 = t1; t1 = t2; u0 = u1; u1 = u2;
    }
    double sign = fmod(k, 2.0) != 0.0 ? -1.0 : 1.0;
    double psi = sign * t1 - 2.0 * k;
    *T = (lam * c + psi) / (1.0 + lam);
    *dT = (lam + sign * mi * u0) / (1.0 + lam);
    break;
  }
  case FVL_TK_CIRCLE: {
    double mc = sp->circle_m, ap = fmax(0.0, 1.0 + mc - c);
    *T = ap * (c - (1.0 - mc)); *dT = ap;
    return;
  }
  case FVL_TK_GIVEN:
    *T = m; *dT = 0.0; *dTdm = 1.0;
    return;
  }
  if (sp->detached) { *dT = 1.0; *dTdm = 0.0; }
}

static inline float hard_threshold(fvl_hard_kind hard, double hm, double c) {
  if (hard == FVL_HARD_ARC) return (float)(c * cos(hm) - sin_of(c) * sin(hm));
  if (hard == FVL_HARD_COS) return (float)(c - hm);
  return -INFINITY;
}

/* craw: the row's raw target cosine (crow[y] in one process; given by the caller for a slice) */
static rowp row_params(const fvl_margin_spec *sp, float craw, int i) {
  rowp r;
  double c = craw, T, dT, dTdm;
  double m = sp->m_row ? sp->m_row[i] : sp->m;
  int inside = 1;
  if (sp->clamp_eps > 0.0f) {   /* torch clamp: the gradient passes at equality */
    const float lo = -1.0f + sp->clamp_eps, hi = 1.0f - sp->clamp_eps;
    inside = craw >= lo && craw <= hi;
    c = craw < lo ? lo : (craw > hi ? hi : craw);
  }
  target_eval(sp, c, m, &T, &dT, &dTdm);
  r.s = sp->s_row ? sp->s_row[i] : sp->s;
  r.T = (float)T;
  r.dT = inside ? (float)dT : 0.0f;
  r.dTdm = dTdm;
  if (sp->neg == FVL_NK_NONE) r.thr = INFINITY;
  else if (sp->hard == FVL_HARD_ROW) r.thr = sp->thr_row[i];
  else r.thr = hard_threshold(sp->hard, sp->hard_m, c);
  return r;
}

/* the clamped copy of n cosines (clamp_eps > 0) */
static inline void clamp_chunk(const fvl_margin_spec *sp, const float *c, int n, float *out) {
  const float lo = -1.0f + sp->clamp_eps, hi = 1.0f - sp->clamp_eps;
#pragma omp simd
  for (int k = 0; k < n; k++) out[k] = c[k] < lo ? lo : (c[k] > hi ? hi : c[k]);
}
/* df ← 0 where the raw cosine was outside the clamp range */
static inline void clamp_grad(const fvl_margin_spec *sp, const float *c, int n, float *df) {
  const float lo = -1.0f + sp->clamp_eps, hi = 1.0f - sp->clamp_eps, zero = zero_v;
#pragma omp simd
  for (int k = 0; k < n; k++) df[k] = (c[k] >= lo && c[k] <= hi) ? df[k] : zero;
}

/* pre-scale values f = N(c) and derivatives df = N'(c) of n columns (target not special-cased) */
static inline __attribute__((always_inline)) void neg_chunk(const fvl_margin_spec *sp, const float *c,
                                                            int n, float thr, float *f, float *df) {
  /* branch-free forms (h = 1 on hard negatives, 0 elsewhere) so that every kind vectorises;
     df == NULL (the forward, a literal after inlining): values only. one/zero are run-time
     values for the same reason as fast_expf's bounds. */
  const float one = one_v, zero = zero_v;
  if (!df) {
    switch (sp->neg) {
    case FVL_NK_NONE:
      memcpy(f, c, sizeof(float) * (size_t)n);
      return;
    case FVL_NK_AFFINE: {
      const float a1 = sp->a - 1.0f, b = sp->b;
#pragma omp simd
      for (int k = 0; k < n; k++) f[k] = c[k] + (c[k] > thr ? one : zero) * (a1 * c[k] + b);
      return;
    }
    case FVL_NK_QUADRATIC: {
      const float t1 = sp->t - 1.0f;
#pragma omp simd
      for (int k = 0; k < n; k++) f[k] = c[k] + (c[k] > thr ? one : zero) * c[k] * (t1 + c[k]);
      return;
    }
    case FVL_NK_CIRCLE: {
      const float mc = sp->circle_m;
#pragma omp simd
      for (int k = 0; k < n; k++) {
        float an = (c[k] + mc > zero ? c[k] + mc : zero);
        f[k] = c[k] + (c[k] > thr ? one : zero) * (an * (c[k] - mc) - c[k]);
      }
      return;
    }
    }
    return;
  }
  switch (sp->neg) {
  case FVL_NK_NONE:
#pragma omp simd
    for (int k = 0; k < n; k++) { f[k] = c[k]; df[k] = 1.0f; }
    break;
  case FVL_NK_AFFINE: {
    const float a1 = sp->a - 1.0f, b = sp->b;
#pragma omp simd
    for (int k = 0; k < n; k++) {
      float h = c[k] > thr ? one : zero;
      f[k] = c[k] + h * (a1 * c[k] + b);
      df[k] = 1.0f + h * a1;
    }
    break;
  }
  case FVL_NK_QUADRATIC: {
    const float t1 = sp->t - 1.0f;
#pragma omp simd
    for (int k = 0; k < n; k++) {
      float h = c[k] > thr ? one : zero;
      f[k] = c[k] + h * c[k] * (t1 + c[k]);          /* c(t + c) on hard entries */
      df[k] = 1.0f + h * (t1 + 2.0f * c[k]);
    }
    break;
  }
  case FVL_NK_CIRCLE: {
    const float mc = sp->circle_m;
#pragma omp simd
    for (int k = 0; k < n; k++) {
      float h = c[k] > thr ? one : zero;
      float an = (c[k] + mc > zero ? c[k] + mc : zero);
      f[k] = c[k] + h * (an * (c[k] - mc) - c[k]);
      df[k] = 1.0f + h * (an - 1.0f);
    }
    break;
  }
  }
}

/* one row of the forward: online max-shifted LSE over blocks of CHUNK columns */
/* yi < 0: the target column is not in this slice (sharded heads) */
FVL_HOT static void fwd_row(const fvl_margin_spec *sp, const float *crow, int C, int yi, const rowp *r,
                            float *mx_out, double *sum_out) {
  float f[CHUNK], cc[CHUNK];
  const float s = r->s, elo = exp_lo_v, ehi = exp_hi_v;
  const int clampv = sp->clamp_eps > 0.0f;
  float mx = -INFINITY;
  double sum = 0.0;
  const int jt = yi < 0 ? -1 : yi - yi % CHUNK;   /* the target's chunk (CHUNK_LOOP) */
  for (int j0 = 0; j0 < C; j0 += CHUNK) {
    int n = C - j0 < CHUNK ? C - j0 : CHUNK;
    const float *src = crow + j0;
    if (clampv) { clamp_chunk(sp, src, n, cc); src = cc; }
    const float *v = f;                /* the chunk's pre-scale values */
    if (sp->neg == FVL_NK_NONE && j0 != jt) v = src;   /* N = c: read in place */
    else {
      neg_chunk(sp, src, n, r->thr, f, NULL);
      if (j0 == jt) f[yi - j0] = r->T;
    }
    float cmx = -INFINITY;
#pragma omp simd reduction(max:cmx)
    for (int k = 0; k < n; k++) {
      float z = s * v[k];
      cmx = z > cmx ? z : cmx;
    }
    if (cmx > mx) {
      if (sum > 0.0) sum *= exp((double)mx - (double)cmx);
      mx = cmx;
    }
    float part = 0.0f;
#pragma omp simd reduction(+:part)
    for (int k = 0; k < n; k++) part += fast_expf(s * v[k] - mx, elo, ehi);
    sum += part;
  }
  *mx_out = mx;
  *sum_out = sum;
}

/* ---------------------------------------------------------------- forward */
int fvl_margin_ce_fwd(const float *cos, int ldc, const int32_t *y, int B, int C,
                      const fvl_margin_spec *sp, float *row_loss, float *row_lse) {
  static const char *fn = "fvl_margin_ce_fwd";
  if (check_args(fn, cos, ldc, y, B, C, sp)) return -1;
  if (!row_loss || !row_lse) return fvl_err("%s: row_loss or row_lse is NULL", fn);
#pragma omp parallel for schedule(static)
  for (int i = 0; i < B; i++) {
    if (fvl_aborted()) continue;
    const float *crow = cos + (size_t)i * ldc;
    rowp r = row_params(sp, crow[y[i]], i);
    float mx;
    double sum;
    fwd_row(sp, crow, C, y[i], &r, &mx, &sum);
    double lse = (double)mx + log(sum);
    if (!(mx > -INFINITY)) lse = NAN;  /* every logit NaN or −inf */
    row_lse[i] = (float)lse;
    row_loss[i] = (float)(lse - (double)(r.s * r.T));
  }
  return fvl_check_abort(fn);
}

int fvl_margin_ce_fwd_part(const float *cos, int ldc, const int32_t *y, const float *ctgt, int B, int C,
                           const fvl_margin_spec *sp, float *row_max, double *row_sum) {
  static const char *fn = "fvl_margin_ce_fwd_part";
  if (check_part(fn, cos, ldc, y, ctgt, B, C, sp)) return -1;
  if (!row_max || !row_sum) return fvl_err("%s: row_max or row_sum is NULL", fn);
#pragma omp parallel for schedule(static)
  for (int i = 0; i < B; i++) {
    if (fvl_aborted()) continue;
    rowp r = row_params(sp, ctgt[i], i);
    fwd_row(sp, cos + (size_t)i * ldc, C, y[i], &r, row_max + i, row_sum + i);
  }
  return fvl_check_abort(fn);
}

/* ---------------------------------------------------------------- online softmax over class blocks */
int fvl_margin_online_ok(const fvl_margin_spec *sp) {
  return sp->neg == FVL_NK_NONE || sp->hard == FVL_HARD_ALL || sp->hard == FVL_HARD_ROW;
}

void fvl_margin_ce_fwd_block(const fvl_margin_spec *sp, const fvl_margin_row *rows0, const float *cos, int ldc,
                             const int32_t *y, int B, int j0, int n, float *bmax, double *bsum) {
  for (int i = 0; i < B; i++) {
    const float *crow = cos + (size_t)i * ldc;
    int yi = y[i] >= j0 && y[i] < j0 + n ? y[i] - j0 : -1;
    rowp r = yi >= 0 ? row_params(sp, crow[yi], i) : rows0[i];
    fwd_row(sp, crow, n, yi, &r, bmax + i, bsum + i);
  }
}

int fvl_margin_ce_fwd_combine(const fvl_margin_spec *sp, const float *cos, int ldc, const int32_t *y, int B, int C,
                              int64_t nblk, const float *bmax, const double *bsum, const unsigned char *redo,
                              float *row_loss, float *row_lse) {
  static const char *fn = "fvl_margin_ce_fwd_combine";
  if (check_args(fn, cos, ldc, y, B, C, sp)) return -1;
  if (!row_loss || !row_lse || !bmax || !bsum || nblk < 1) return fvl_err("%s: missing block sums", fn);
#pragma omp parallel for schedule(static)
  for (int i = 0; i < B; i++) {
    const float *crow = cos + (size_t)i * ldc;
    rowp r = row_params(sp, crow[y[i]], i);
    float mx = -INFINITY;
    double sum = 0.0;
    if (redo && redo[i]) {
      fwd_row(sp, crow, C, y[i], &r, &mx, &sum);
    } else {   /* the blocks in order: the largest maximum first, then each block's sum rescaled to it */
      for (int64_t b = 0; b < nblk; b++) {
        float m = bmax[b * B + i];
        mx = m > mx ? m : mx;
      }
      for (int64_t b = 0; b < nblk; b++) {
        float m = bmax[b * B + i];
        sum += bsum[b * B + i] * (m == mx ? 1.0 : exp((double)m - (double)mx));
      }
    }
    double lse = (double)mx + log(sum);
    if (!(mx > -INFINITY)) lse = NAN;
    row_lse[i] = (float)lse;
    row_loss[i] = (float)(lse - (double)(r.s * r.T));
  }
  return 0;
}

float fvl_margin_target_logit(const fvl_margin_spec *sp, float c, int i) {
  rowp r = row_params(sp, c, i);
  return r.s * r.T;
}

/* one row of the backward: dcos = gscale·s·(p − onehot)·∂f/∂c, plus dL/ds_i and dL/dm_i */
FVL_HOT static void bwd_row(const fvl_margin_spec *sp, const float *crow, int C, int yi, const rowp *r,
                            float lse, float gscale, float *grow, float *ds_out, float *dm_out) {
  float f[CHUNK], df[CHUNK], cc[CHUNK];
  const float s = r->s, gs = gscale * r->s, elo = exp_lo_v, ehi = exp_hi_v;
  const int clampv = sp->clamp_eps > 0.0f;
  double ds = 0.0;
  float py = 0.0f;
  const int jt = yi < 0 ? -1 : yi - yi % CHUNK;
  int ones = 0;                        /* df holds N' = 1 in every column */
  for (int j0 = 0; j0 < C; j0 += CHUNK) {
    int n = C - j0 < CHUNK ? C - j0 : CHUNK;
    const float *v = f;
    if (clampv) {                      /* AdaFace: every cosine clamped first */
      clamp_chunk(sp, crow + j0, n, cc);
      neg_chunk(sp, cc, n, r->thr, f, df);
      clamp_grad(sp, crow + j0, n, df);
      ones = 0;
      if (j0 == jt) { f[yi - j0] = r->T; df[yi - j0] = r->dT; }
    } else if (sp->neg == FVL_NK_NONE && j0 != jt) {   /* N = c, N' = 1: read the row in place */
      v = crow + j0;
      if (!ones) {   /* n: no later chunk of the row is longer (class blocks call with short rows) */
        for (int k = 0; k < n; k++) df[k] = 1.0f;
        ones = 1;
      }
    } else {
      neg_chunk(sp, crow + j0, n, r->thr, f, df);
      ones = 0;
      if (j0 == jt) { f[yi - j0] = r->T; df[yi - j0] = r->dT; }
    }
    float *go = grow + j0;
    float dsp = 0.0f;
    if (ds_out) {
#pragma omp simd reduction(+:dsp)
      for (int k = 0; k < n; k++) {
        float p = fast_expf(s * v[k] - lse, elo, ehi);
        go[k] = gs * p * df[k];
        dsp += p * v[k];
      }
    } else {   /* the class blocks: no dL/ds_i here, so no sum for it */
#pragma omp simd
      for (int k = 0; k < n; k++) go[k] = gs * fast_expf(s * v[k] - lse, elo, ehi) * df[k];
    }
    ds += dsp;
    if (j0 == jt) py = fast_expf(s * r->T - lse, elo, ehi);
  }
  if (yi < 0) {                                  /* another slice holds the target */
    if (ds_out) *ds_out = (float)(gscale * ds);
    if (dm_out) *dm_out = 0.0f;
    return;
  }
  grow[yi] = gs * (py - 1.0f) * r->dT;           /* dCE/dz_y = p_y − 1 */
  if (ds_out) *ds_out = (float)(gscale * (ds - (double)r->T));
  if (dm_out) *dm_out = (float)((double)gs * (py - 1.0) * r->dTdm);
}

/* ---------------------------------------------------------------- backward */
int fvl_margin_ce_bwd(const float *cos, int ldc, const int32_t *y, int B, int C,
                      const fvl_margin_spec *sp, const float *row_lse, float gscale, float *dcos,
                      int lddc, float *ds_row, float *dm_row) {
  static const char *fn = "fvl_margin_ce_bwd";
  if (check_args(fn, cos, ldc, y, B, C, sp)) return -1;
  if (!row_lse || !dcos) return fvl_err("%s: row_lse or dcos is NULL", fn);
  if (lddc < C) return fvl_err("%s: dcos row stride %d is smaller than C = %d", fn, lddc, C);
#pragma omp parallel for schedule(static)
  for (int i = 0; i < B; i++) {
    if (fvl_aborted()) continue;
    const float *crow = cos + (size_t)i * ldc;
    rowp r = row_params(sp, crow[y[i]], i);
    bwd_row(sp, crow, C, y[i], &r, row_lse[i], gscale, dcos + (size_t)i * lddc, ds_row ? ds_row + i : NULL,
            dm_row ? dm_row + i : NULL);
  }
  return fvl_check_abort(fn);
}

int fvl_margin_ce_bwd_part(const float *cos, int ldc, const int32_t *y, const float *ctgt, int B, int C,
                           const fvl_margin_spec *sp, const float *row_lse, float gscale, float *dcos,
                           int lddc, float *ds_row, float *dm_row) {
  static const char *fn = "fvl_margin_ce_bwd_part";
  if (check_part(fn, cos, ldc, y, ctgt, B, C, sp)) return -1;
  if (!row_lse || !dcos) return fvl_err("%s: row_lse or dcos is NULL", fn);
  if (lddc < C) return fvl_err("%s: dcos row stride %d is smaller than C = %d", fn, lddc, C);
#pragma omp parallel for schedule(static)
  for (int i = 0; i < B; i++) {
    if (fvl_aborted()) continue;
    rowp r = row_params(sp, ctgt[i], i);
    bwd_row(sp, cos + (size_t)i * ldc, C, y[i], &r, row_lse[i], gscale, dcos + (size_t)i * lddc,
            ds_row ? ds_row + i : NULL, dm_row ? dm_row + i : NULL);
  }
  return fvl_check_abort(fn);
}

int fvl_margin_logits(const float *cos, int ldc, const int32_t *y, int B, int C,
                      const fvl_margin_spec *sp, float *z, int ldz) {
  static const char *fn = "fvl_margin_logits";
  if (check_args(fn, cos, ldc, y, B, C, sp)) return -1;
  if (!z || ldz < C) return fvl_err("%s: z is NULL or its row stride %d < C = %d", fn, ldz, C);
#pragma omp parallel for schedule(static)
  for (int i = 0; i < B; i++) {
    float f[CHUNK], df[CHUNK], cc[CHUNK];
    const float *crow = cos + (size_t)i * ldc;
    rowp r = row_params(sp, crow[y[i]], i);
    for (int j0 = 0; j0 < C; j0 += CHUNK) {
      int n = C - j0 < CHUNK ? C - j0 : CHUNK;
      const float *src = crow + j0;
      if (sp->clamp_eps > 0.0f) { clamp_chunk(sp, src, n, cc); src = cc; }
      neg_chunk(sp, src, n, r.thr, f, df);
      for (int k = 0; k < n; k++) z[(size_t)i * ldz + j0 + k] = r.s * f[k];
    }
    z[(size_t)i * ldz + y[i]] = r.s * r.T;
  }
  return 0;
}

/* ---------------------------------------------------------------- LSE of the negatives */
/* one row: log Σ_{j≠y} exp(s·c_j), two vectorised passes over chunks (the target's chunk is
   copied with its entry set to −inf) */
FVL_HOT static float neg_lse_row(const float *crow, int C, int yi, float s) {
  float f[CHUNK];
  const float elo = exp_lo_v, ehi = exp_hi_v;
  const int jt = yi - yi % CHUNK;
  float mx = -INFINITY;
  for (int j0 = 0; j0 < C; j0 += CHUNK) {
    int n = C - j0 < CHUNK ? C - j0 : CHUNK;
    const float *v = crow + j0;
    if (j0 == jt) { memcpy(f, v, sizeof(float) * (size_t)n); f[yi - j0] = -INFINITY; v = f; }
    float cmx = -INFINITY;
#pragma omp simd reduction(max:cmx)
    for (int k = 0; k < n; k++) cmx = s * v[k] > cmx ? s * v[k] : cmx;
    mx = cmx > mx ? cmx : mx;
  }
  double sum = 0.0;
  for (int j0 = 0; j0 < C; j0 += CHUNK) {
    int n = C - j0 < CHUNK ? C - j0 : CHUNK;
    const float *v = crow + j0;
    if (j0 == jt) { memcpy(f, v, sizeof(float) * (size_t)n); f[yi - j0] = -INFINITY; v = f; }
    float part = 0.0f;
#pragma omp simd reduction(+:part)
    for (int k = 0; k < n; k++) part += fast_expf(s * v[k] - mx, elo, ehi);
    sum += part;
  }
  return (float)((double)mx + log(sum));
}

int fvl_neg_lse_fwd(const float *cos, int ldc, const int32_t *y, int B, int C, float s, float *out) {
  static const char *fn = "fvl_neg_lse_fwd";
  if (check_args(fn, cos, ldc, y, B, C, NULL)) return -1;
  if (!isfinite(s)) return fvl_err("%s: s = %g (expected a finite scale)", fn, (double)s);
  if (!out) return fvl_err("%s: out is NULL", fn);
#pragma omp parallel for schedule(static)
  for (int i = 0; i < B; i++) {
    if (fvl_aborted()) continue;
    out[i] = C > 1 ? neg_lse_row(cos + (size_t)i * ldc, C, y[i], s) : -INFINITY;
  }
  return fvl_check_abort(fn);
}

/* ---------------------------------------------------------------- hard-negative mean */
/* per row: the hard negatives' count and sum of values; ctgt NULL: the target cosine is crow[y]
   (y in 0..C−1), else ctgt[i] (y in −1..C−1, a slice). h = sum / max(1, count) unless sums. */
static void hard_rows(const float *cos, int ldc, const int32_t *y, const float *ctgt, int B, int C,
                      fvl_hard_kind hard, float hard_m, int affine, float a, float b, float *h,
                      double *sums, float *count) {
  const float va = affine ? a : 1.0f, vb = affine ? b : 0.0f;
#pragma omp parallel for schedule(static)
  for (int i = 0; i < B; i++) {
    const float *crow = cos + (size_t)i * ldc;
    int yi = y[i];
    float thr = hard_threshold(hard, hard_m, ctgt ? ctgt[i] : crow[yi]);
    int cnt = 0;
    double sum = 0.0;
    float part = 0.0f;
    int pc = 0;
    for (int j = 0; j < C; j++) {
      int hj = crow[j] > thr && j != yi;
      pc += hj;
      part += hj ? va * crow[j] + vb : 0.0f;
      if ((j & 1023) == 1023) { sum += part; cnt += pc; part = 0.0f; pc = 0; }
    }
    sum += part;
    cnt += pc;
    count[i] = (float)cnt;
    if (sums) sums[i] = sum;
    else h[i] = (float)(sum / (cnt > 1 ? cnt : 1));
  }
}

static int hard_check(const char *fn, fvl_hard_kind hard, float hard_m, float a, float b) {
  if ((unsigned)hard > FVL_HARD_COS) return fvl_err("%s: hard kind %d (expected all|arc|cos)", fn, (int)hard);
  if (check_finite(fn, "hard_m", hard_m) || check_finite(fn, "a", a) || check_finite(fn, "b", b))
    return -1;
  return 0;
}

int fvl_hard_mean_fwd(const float *cos, int ldc, const int32_t *y, int B, int C, fvl_hard_kind hard,
                      float hard_m, int affine, float a, float b, float *h, float *count) {
  static const char *fn = "fvl_hard_mean_fwd";
  if (check_args(fn, cos, ldc, y, B, C, NULL) || hard_check(fn, hard, hard_m, a, b)) return -1;
  if (!h || !count) return fvl_err("%s: h or count is NULL", fn);
  hard_rows(cos, ldc, y, NULL, B, C, hard, hard_m, affine, a, b, h, NULL, count);
  return 0;
}

int fvl_hard_mean_part(const float *cos, int ldc, const int32_t *y, const float *ctgt, int B, int C,
                       fvl_hard_kind hard, float hard_m, int affine, float a, float b, double *sum,
                       float *count) {
  static const char *fn = "fvl_hard_mean_part";
  if (check_part(fn, cos, ldc, y, ctgt, B, C, NULL) || hard_check(fn, hard, hard_m, a, b)) return -1;
  if (!sum || !count) return fvl_err("%s: sum or count is NULL", fn);
  hard_rows(cos, ldc, y, ctgt, B, C, hard, hard_m, affine, a, b, NULL, sum, count);
  return 0;
}

static void hard_bw_rows(const float *cos, int ldc, const int32_t *y, const float *ctgt, int B, int C,
                         fvl_hard_kind hard, float hard_m, int affine, float a, const float *count,
                         const float *gh, float *dcos, int lddc, int accumulate) {
#pragma omp parallel for schedule(static)
  for (int i = 0; i < B; i++) {
    const float *crow = cos + (size_t)i * ldc;
    float *grow = dcos + (size_t)i * lddc;
    int yi = y[i];
    float thr = hard_threshold(hard, hard_m, ctgt ? ctgt[i] : crow[yi]);
    float w = gh[i] * (affine ? a : 1.0f) / (count[i] > 1.0f ? count[i] : 1.0f);
    if (accumulate) {
      for (int j = 0; j < C; j++) grow[j] += (crow[j] > thr && j != yi) ? w : 0.0f;
    } else {
      for (int j = 0; j < C; j++) grow[j] = (crow[j] > thr && j != yi) ? w : 0.0f;
    }
  }
}

int fvl_hard_mean_bwd(const float *cos, int ldc, const int32_t *y, int B, int C, fvl_hard_kind hard,
                      float hard_m, int affine, float a, const float *count, const float *gh,
                      float *dcos, int lddc, int accumulate) {
  static const char *fn = "fvl_hard_mean_bwd";
  if (check_args(fn, cos, ldc, y, B, C, NULL)) return -1;
  if ((unsigned)hard > FVL_HARD_COS) return fvl_err("%s: hard kind %d (expected all|arc|cos)", fn, (int)hard);
  if (!count || !gh || !dcos) return fvl_err("%s: count, gh or dcos is NULL", fn);
  if (lddc < C) return fvl_err("%s: dcos row stride %d is smaller than C = %d", fn, lddc, C);
  hard_bw_rows(cos, ldc, y, NULL, B, C, hard, hard_m, affine, a, count, gh, dcos, lddc, accumulate);
  return 0;
}

int fvl_hard_mean_bwd_part(const float *cos, int ldc, const int32_t *y, const float *ctgt, int B, int C,
                           fvl_hard_kind hard, float hard_m, int affine, float a, const float *count,
                           const float *gh, float *dcos, int lddc, int accumulate) {
  static const char *fn = "fvl_hard_mean_bwd_part";
  if (check_part(fn, cos, ldc, y, ctgt, B, C, NULL)) return -1;
  if ((unsigned)hard > FVL_HARD_COS) return fvl_err("%s: hard kind %d (expected all|arc|cos)", fn, (int)hard);
  if (!count || !gh || !dcos) return fvl_err("%s: count, gh or dcos is NULL", fn);
  if (lddc < C) return fvl_err("%s: dcos row stride %d is smaller than C = %d", fn, lddc, C);
  hard_bw_rows(cos, ldc, y, ctgt, B, C, hard, hard_m, affine, a, count, gh, dcos, lddc, accumulate);
  return 0;
}

/* ---------------------------------------------------------------- class blocks (cosine.c) */
void fvl_margin_rows(const fvl_margin_spec *sp, const float *ctgt, int B, fvl_margin_row *rows) {
  for (int i = 0; i < B; i++) rows[i] = row_params(sp, ctgt[i], i);
}

void fvl_margin_ce_bwd_block_row(const fvl_margin_spec *sp, const fvl_margin_row *rows, const float *cos, int ldc,
                                 const int32_t *y, int B, int j0, int n, const float *row_lse, float gscale,
                                 const unsigned char *skip, int i, float *grow) {
  if (i + 2 < B)   /* the rows are short pieces of long rows: the hardware prefetcher sees too little */
    for (int k = 0; k < n; k += 16) __builtin_prefetch(cos + (size_t)(i + 2) * ldc + k);
  if (skip && skip[i]) { memset(grow, 0, sizeof(float) * (size_t)n); return; }
  int yi = y[i] >= j0 && y[i] < j0 + n ? y[i] - j0 : -1;
  bwd_row(sp, cos + (size_t)i * ldc, n, yi, &rows[i], row_lse[i], gscale, grow, NULL, NULL);
}
void fvl_margin_ce_bwd_block(const fvl_margin_spec *sp, const fvl_margin_row *rows, const float *cos, int ldc,
                             const int32_t *y, int B, int j0, int n, const float *row_lse, float gscale,
                             const unsigned char *skip, float *dcos, int lddc) {
  for (int i = 0; i < B; i++)
    fvl_margin_ce_bwd_block_row(sp, rows, cos, ldc, y, B, j0, n, row_lse, gscale, skip, i, dcos + (size_t)i * lddc);
}

int fvl_margin_ce_row_grads(const float *cos, int ldc, const int32_t *y, int B, int C, const fvl_margin_spec *sp,
                            const fvl_margin_row *rows, const float *row_lse, float gscale,
                            const unsigned char *skip, float *ds_row, float *dm_row) {
  static const char *fn = "fvl_margin_ce_row_grads";
  if (!ds_row && !dm_row) return 0;
  if (!ds_row) {   /* dL/dm_i needs the target's probability only */
    for (int i = 0; i < B; i++) {
      const rowp *r = &rows[i];
      float py = fast_expf(r->s * r->T - row_lse[i], exp_lo_v, exp_hi_v);
      dm_row[i] = (skip && skip[i]) || y[i] < 0 ? 0.0f : (float)((double)(gscale * r->s) * (py - 1.0) * r->dTdm);
    }
    return 0;
  }
  int err = 0;
#pragma omp parallel
  {
    float *scratch = malloc(sizeof(float) * (size_t)C);
    if (!scratch) {
#pragma omp atomic write
      err = 1;
    }
#pragma omp for schedule(static)
    for (int i = 0; i < B; i++) {
      if (!scratch || fvl_aborted()) continue;
      float ds = 0.0f, dm = 0.0f;
      if (!(skip && skip[i]))
        bwd_row(sp, cos + (size_t)i * ldc, C, y[i], &rows[i], row_lse[i], gscale, scratch, &ds, dm_row ? &dm : NULL);
      ds_row[i] = ds;
      if (dm_row) dm_row[i] = dm;
    }
    free(scratch);
  }
  if (err) return fvl_err("%s: out of memory", fn);
  return fvl_check_abort(fn);
}
