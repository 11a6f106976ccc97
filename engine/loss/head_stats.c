/* head_stats.c — per-batch statistics of the heads (see head_stats.h). */
#include "head_stats.h"
#include <math.h>
#include <stdlib.h>
#include "core.h"

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
