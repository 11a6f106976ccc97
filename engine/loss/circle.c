/* circle.c — pairwise Circle loss inside the batch (docs/losses.md §1.9, PML semantics): per anchor,
 * softplus of the positive and negative LSEs, with constant α weights; stable at γ = 256. */
#include "margin.h"
#include "core.h"
#include <math.h>
#include <string.h>

static int check_finite(const char *fn, const char *arg, float v) {
  if (!isfinite(v)) return fvl_err("%s: %s = %g (expected a finite number)", fn, arg, (double)v);
  return 0;
}

static inline double softplus(double z) { return fmax(z, 0.0) + log1p(exp(-fabs(z))); }
static inline double sigmoid(double z) {
  if (z >= 0) return 1.0 / (1.0 + exp(-z));
  double e = exp(z);
  return e / (1.0 + e);
}

/* LSEs of the positive and negative logits of anchor i, which is column `self` of its row of n
   columns (−inf when the set is empty) */
static void circle_row(const float *Srow, const int32_t *y, int n, int self, double m, double gamma,
                       double *lse_p, double *lse_n) {
  double mp = -INFINITY, mn = -INFINITY, sp = 0.0, sn = 0.0;
  for (int j = 0; j < n; j++) {
    if (j == self) continue;
    double S = Srow[j];
    if (y[j] == y[self]) {
      double v = -gamma * fmax(0.0, 1.0 + m - S) * (S - (1.0 - m));
      if (v > mp) { sp = sp * exp(mp - v) + 1.0; mp = v; } else sp += exp(v - mp);
    } else {
      double v = gamma * fmax(0.0, S + m) * (S - m);
      if (v > mn) { sn = sn * exp(mn - v) + 1.0; mn = v; } else sn += exp(v - mn);
    }
  }
  *lse_p = sp > 0 ? mp + log(sp) : -INFINITY;
  *lse_n = sn > 0 ? mn + log(sn) : -INFINITY;
}

static int circle_check(const char *fn, const float *S, int lds, const int32_t *y, int B, int n, int first,
                        float m, float gamma) {
  if (B < 1) return fvl_err("%s: empty batch (B = %d, expected >= 1 rows)", fn, B);
  if (!S || !y) return fvl_err("%s: S or labels is NULL", fn);
  if (first < 0 || n < B || first > n - B)
    return fvl_err("%s: anchors %d..%d are outside the %d columns", fn, first, first + B - 1, n);
  if (lds < n) return fvl_err("%s: row stride %d is smaller than the %d columns", fn, lds, n);
  if (check_finite(fn, "m", m) || check_finite(fn, "gamma", gamma)) return -1;
  return 0;
}

int fvl_circle_pairwise_fwd(const float *S, int lds, const int32_t *y, int B, float m, float gamma,
                            float *row_loss, float *row_z, float *valid, int *nvalid) {
  return fvl_circle_rows_fwd(S, lds, y, B, B, 0, m, gamma, row_loss, row_z, valid, nvalid);
}

int fvl_circle_rows_fwd(const float *S, int lds, const int32_t *y, int B, int n, int first, float m, float gamma,
                        float *row_loss, float *row_z, float *valid, int *nvalid) {
  static const char *fn = "fvl_circle_pairwise_fwd";
  if (circle_check(fn, S, lds, y, B, n, first, m, gamma)) return -1;
  if (!row_loss || !row_z || !valid) return fvl_err("%s: an output is NULL", fn);
  int nv = 0;
#pragma omp parallel for schedule(static) reduction(+:nv)
  for (int i = 0; i < B; i++) {
    double lp, ln;
    circle_row(S + (size_t)i * lds, y, n, first + i, m, gamma, &lp, &ln);
    int ok = lp > -INFINITY && ln > -INFINITY;
    double z = ok ? lp + ln : 0.0;
    valid[i] = (float)ok;
    row_z[i] = (float)z;
    row_loss[i] = ok ? (float)softplus(z) : 0.0f;
    nv += ok;
  }
  if (nvalid) *nvalid = nv;
  return 0;
}

int fvl_circle_pairwise_bwd(const float *S, int lds, const int32_t *y, int B, float m, float gamma,
                            const float *row_z, const float *valid, float gscale, float *dS,
                            int ldds) {
  return fvl_circle_rows_bwd(S, lds, y, B, B, 0, m, gamma, row_z, valid, gscale, dS, ldds);
}

int fvl_circle_rows_bwd(const float *S, int lds, const int32_t *y, int B, int n, int first, float m, float gamma,
                        const float *row_z, const float *valid, float gscale, float *dS, int ldds) {
  static const char *fn = "fvl_circle_pairwise_bwd";
  if (circle_check(fn, S, lds, y, B, n, first, m, gamma)) return -1;
  if (!row_z || !valid || !dS) return fvl_err("%s: row_z, valid or dS is NULL", fn);
  if (ldds < n) return fvl_err("%s: dS row stride %d is smaller than the %d columns", fn, ldds, n);
#pragma omp parallel for schedule(static)
  for (int i = 0; i < B; i++) {
    const float *Srow = S + (size_t)i * lds;
    float *g = dS + (size_t)i * ldds;
    if (!(valid[i] > 0)) { memset(g, 0, sizeof(float) * (size_t)n); continue; }
    double lp, ln;
    int self = first + i;
    circle_row(Srow, y, n, self, m, gamma, &lp, &ln);
    double w = gscale * sigmoid((double)lp + ln);
    for (int j = 0; j < n; j++) {
      double Sv = Srow[j];
      if (j == self) { g[j] = 0.0f; continue; }
      if (y[j] == y[self]) {
        double ap = fmax(0.0, 1.0 + m - Sv);
        double v = -gamma * ap * (Sv - (1.0 - m));
        g[j] = (float)(w * exp(v - lp) * (-gamma * ap));
      } else {
        double an = fmax(0.0, Sv + m);
        double v = gamma * an * (Sv - m);
        g[j] = (float)(w * exp(v - ln) * (gamma * an));
      }
    }
  }
  return 0;
}

