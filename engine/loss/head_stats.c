/* head_stats.c — per-batch statistics of the heads (see head_stats.h). */
#include "head_stats.h"
#include <math.h>
#include <stdlib.h>
#include "core.h"

/* AdaFace's clipped norm: min(max(v, 1e-3), 100) with Lua's math.min/max order (NaN → 100) */
static double clip_norm(float v) {
  double n = v;
  n = n < 100 ? n : 100;
  return 1e-3 < n ? n : 1e-3;
}

static int cmp_double(const void *pa, const void *pb) {
  double a = *(const double *)pa, b = *(const double *)pb;
  return (a > b) - (a < b);
}
static int cmp_i32(const void *pa, const void *pb) {
  int32_t a = *(const int32_t *)pa, b = *(const int32_t *)pb;
  return (a > b) - (a < b);
}

int fvl_adacos_stats(const char *fn, const float *lse, const float *cy, int64_t B, double *b_avg,
                     double *theta_med) {
  if (B < 1) { fvl_err("%s: no rows (expected B >= 1 values)", fn); return -1; }
  double *th = malloc((size_t)B * sizeof *th);
  if (!th) { fvl_err("%s: out of memory (%lld rows)", fn, (long long)B); return -1; }
  double sum = 0;
  const double lo = -1 + 1e-7, hi = 1 - 1e-7;
  for (int64_t i = 0; i < B; i++) {
    sum += exp((double)lse[i]);
    double c = cy[i];
    c = c < hi ? c : hi;          /* NaN → hi */
    c = lo < c ? c : lo;
    th[i] = acos(c);
  }
  qsort(th, (size_t)B, sizeof *th, cmp_double);   /* no NaN left: a total order */
  *b_avg = sum / (double)B;
  *theta_med = th[(B - 1) / 2];
  free(th);
  return 0;
}

int64_t fvl_pair_anchors(const char *fn, const int32_t *y, int64_t B) {
  if (B < 1) return 0;
  int32_t *s = malloc((size_t)B * sizeof *s);
  if (!s) { fvl_err("%s: out of memory (%lld rows)", fn, (long long)B); return -1; }
  for (int64_t i = 0; i < B; i++) s[i] = y[i];
  qsort(s, (size_t)B, sizeof *s, cmp_i32);
  int64_t valid = 0;
  for (int64_t i = 0; i < B;) {
    int64_t j = i;
    while (j < B && s[j] == s[i]) j++;
    if (j - i >= 2 && j - i < B) valid += j - i;   /* a positive and a negative */
    i = j;
  }
  free(s);
  return valid;
}

void fvl_slice_targets(const int32_t *y0, int64_t B, int64_t first, int64_t n, int32_t *rows, int32_t *positives) {
  if (positives)
    for (int64_t r = 0; r < n; r++) positives[r] = 0;
  for (int64_t i = 0; i < B; i++) {
    int64_t r = (int64_t)y0[i] - first;   /* 0-based row in the slice */
    rows[i] = r >= 0 && r < n ? (int32_t)(r + 1) : 0;
    if (positives && rows[i]) positives[r] = 1;
  }
}

/* the first position of a[0..m) (sorted ascending) holding a value >= v; m when there is none */
static int64_t lower_bound(const int32_t *a, int64_t m, int64_t v) {
  int64_t lo = 0, hi = m;
  while (lo < hi) {
    int64_t mid = lo + (hi - lo) / 2;
    if (a[mid] < v) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

void fvl_sample_cols(const int32_t *rows, int64_t B, const int32_t *sample, int64_t m, int64_t K, int32_t *cols,
                     int32_t *idx) {
  for (int64_t i = 0; i < B; i++) {
    int32_t r = rows[i];
    int64_t lo = r > 0 ? lower_bound(sample, m, r) : m;
    cols[i] = lo < m && sample[lo] == r ? (int32_t)(lo + 1) : 0;
  }
  if (idx)
    for (int64_t k = 0; k < m; k++)
      for (int64_t j = 0; j < K; j++) idx[k * K + j] = (int32_t)(((int64_t)sample[k] - 1) * K + j + 1);
}

int64_t fvl_given_sample(const char *fn, const int32_t *ids, int64_t m, int32_t base, int64_t classes, int64_t first,
                         int64_t n, const int32_t *y0, int64_t B, int32_t *local_rows, fvl_sample_fault *fault) {
  fault->what = 0, fault->at = -1;
  if (first < 0 || n < 0 || classes < 0 || classes > INT32_MAX || first > classes || n > classes - first) {
    fvl_err("%s: the slice [%lld, %lld + %lld) of %lld classes is not inside 0..%d (0-based)", fn, (long long)first,
            (long long)first, (long long)n, (long long)classes, (int)INT32_MAX);
    return -1;
  }
  int64_t count = 0, prev = -1;
  for (int64_t k = 0; k < m; k++) {
    int64_t c = (int64_t)ids[k] - base;   /* int64: no int32 overflow for any id and base */
    if (c <= prev || c >= classes) {
      fvl_err("%s: sample[%lld] is class %lld (0-based; expected strictly increasing classes in 0..%lld)", fn,
              (long long)k, (long long)c, (long long)classes - 1);
      fault->what = FVL_SAMPLE_ORDER, fault->at = k;
      return -1;
    }
    prev = c;
    if (c >= first && c - first < n) local_rows[count++] = (int32_t)(c - first + 1);
  }
  for (int64_t i = 0; i < B; i++) {
    int64_t want = (int64_t)y0[i] + base, lo = lower_bound(ids, m, want);
    if (lo == m || ids[lo] != want) {
      fvl_err("%s: the sample misses class %lld, the label of row %lld (0-based; every label must be sampled)", fn,
              (long long)y0[i], (long long)i);
      fault->what = FVL_SAMPLE_MISSES, fault->at = i;
      return -1;
    }
  }
  return count;
}

int64_t fvl_own_targets(const int32_t *cols, const int32_t *rows, int64_t B, int32_t *own, int32_t *oc,
                        int32_t *orow) {
  int64_t k = 0;
  for (int64_t i = 0; i < B; i++)
    if (cols[i] > 0) {
      own[k] = (int32_t)(i + 1);
      oc[k] = cols[i] - 1;
      orow[k] = rows[i] - 1;
      k++;
    }
  if (k == 0) own[0] = 1, oc[0] = 0, orow[0] = 0;
  return k;
}

void fvl_target_mask(const int32_t *t, int64_t B, int32_t *safe0, float *mask) {
  for (int64_t i = 0; i < B; i++) {
    safe0[i] = t[i] > 0 ? t[i] - 1 : 0;
    mask[i] = t[i] > 0 ? 1.0f : 0.0f;
  }
}

int fvl_adaface_rows(const char *fn, const float *norm, int64_t B, double h, double m, double eps, double alpha,
                     int training, double *mean, double *std, float *g_ang, float *g_add) {
  if (training && B < 2) {
    fvl_err("%s: the batch statistics need at least 2 rows (got B = %lld)", fn, (long long)B);
    return -1;
  }
  if (training) {
    double s = 0, q = 0;
    for (int64_t i = 0; i < B; i++) s += clip_norm(norm[i]);
    double mu = s / (double)B;
    for (int64_t i = 0; i < B; i++) {
      double d = clip_norm(norm[i]) - mu;
      q += d * d;
    }
    double sd = sqrt(q / (double)(B - 1));
    *mean = alpha * mu + (1 - alpha) * *mean;
    *std = alpha * sd + (1 - alpha) * *std;
  }
  for (int64_t i = 0; i < B; i++) {
    double z = h * (clip_norm(norm[i]) - *mean) / (*std + eps);
    z = z < 1 ? z : 1;          /* NaN → 1 */
    z = -1 < z ? z : -1;
    g_ang[i] = (float)(-m * z);
    g_add[i] = (float)(m + m * z);
  }
  return 0;
}
