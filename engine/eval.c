/* eval.c — verification (ROC, AUC, EER, TAR@FAR, k-fold accuracy), pair generation,
 * identification/retrieval metrics and the flip-test merge. Definitions in eval.h. */
#include "eval.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include "core.h"
#include "rng.h"
#include "tensor.h"   /* fvl_gemm: the engine's one sgemm entry */

const double fvl_eval_far_targets[FVL_EVAL_NFAR] = {1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6};

int64_t fvl_eval_first_nonfinite(const float *x, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    if (!isfinite(x[i])) return i;
  return -1;
}

/* ------------------------------------------------------------------ input checks */

static int check_scores(const char *fn, const float *scores, const int32_t *same, int64_t n,
                        int64_t *npos, int64_t *nneg) {
  if (!scores || !same) return fvl_err("%s: scores and same must not be NULL", fn);
  if (n < 1) return fvl_err("%s: scores: expected at least 1 pair, got %lld", fn, (long long)n);
  int64_t p = 0;
  for (int64_t i = 0; i < n; i++) {
    if (!isfinite(scores[i]))
      return fvl_err("%s: scores[%lld] = %g is not a finite number (0-based)", fn, (long long)i,
                     isnan(scores[i]) ? fabs((double)scores[i]) : (double)scores[i]);
    if (same[i] != 0 && same[i] != 1)
      return fvl_err("%s: same[%lld] = %d (expected 0 or 1; 0-based)", fn, (long long)i, (int)same[i]);
    p += same[i];
  }
  if (p == 0)
    return fvl_err("%s: same: expected at least one genuine pair (same = 1), got none of %lld",
                   fn, (long long)n);
  if (p == n)
    return fvl_err("%s: same: expected at least one impostor pair (same = 0), got none of %lld",
                   fn, (long long)n);
  *npos = p;
  *nneg = n - p;
  return 0;
}

/* ------------------------------------------------------------------ sorting */

/* Order-preserving key: ascending key <=> descending score (scores are finite). */
static inline uint32_t desc_key(float s) {
  if (s == 0.0f) s = 0.0f; /* -0 and +0 are the same score */
  uint32_t u;
  memcpy(&u, &s, 4);
  u = (u & 0x80000000u) ? ~u : (u ^ 0x80000000u); /* ascending in s */
  return ~u;
}

typedef struct { uint32_t key; int32_t idx; } item_t;

/* Scores sorted descending (ties by index ascending) with their labels and original indices,
 * contiguous so that every sweep below reads memory in order. */
typedef struct { float *s; uint8_t *y; int32_t *idx; int64_t n; } sorted_t;

static void sorted_free(sorted_t *q) { free(q->s); free(q->y); free(q->idx); }

/* Stable LSD radix sort (3 passes of 11 bits). Returns 0 / -1. */
static int sort_desc(const char *fn, const float *scores, const int32_t *same, int64_t n,
                     sorted_t *q) {
  item_t *a = malloc((size_t)n * sizeof *a), *b = malloc((size_t)n * sizeof *b);
  q->s = malloc((size_t)n * sizeof *q->s);
  q->y = malloc((size_t)n);
  q->idx = malloc((size_t)n * sizeof *q->idx);
  q->n = n;
  if (!a || !b || !q->s || !q->y || !q->idx) {
    free(a); free(b); sorted_free(q);
    return fvl_err("%s: out of memory sorting %lld scores", fn, (long long)n);
  }
  for (int64_t i = 0; i < n; i++) { a[i].key = desc_key(scores[i]); a[i].idx = (int32_t)i; }
  static const int shifts[3] = {0, 11, 22};
  for (int p = 0; p < 3; p++) {
    size_t cnt[2048] = {0};
    int sh = shifts[p];
    for (int64_t i = 0; i < n; i++) cnt[(a[i].key >> sh) & 2047]++;
    size_t sum = 0;
    for (int d = 0; d < 2048; d++) { size_t c = cnt[d]; cnt[d] = sum; sum += c; }
    for (int64_t i = 0; i < n; i++) b[cnt[(a[i].key >> sh) & 2047]++] = a[i];
    item_t *t = a; a = b; b = t;
  }
  for (int64_t i = 0; i < n; i++) {
    int32_t k = a[i].idx;
    q->idx[i] = k;
    q->s[i] = scores[k];
    q->y[i] = (uint8_t)same[k];
  }
  free(a);
  free(b);
  return 0;
}

/* ------------------------------------------------------------------ ROC */

/* From a descending order: cumulative counts at the end of each distinct-score group.
 * fps/tps/thr get ng entries (no (0,0) point). Returns ng. */
static int64_t roc_counts(const sorted_t *q, int64_t *fps, int64_t *tps, float *thr) {
  int64_t tp = 0, ng = 0, n = q->n;
  const float *s = q->s;
  for (int64_t i = 0; i < n; i++) {
    tp += q->y[i];
    if (i == n - 1 || s[i + 1] != s[i]) {
      fps[ng] = i + 1 - tp; tps[ng] = tp; thr[ng] = s[i];
      ng++;
    }
  }
  return ng;
}

/* scikit-learn's drop_intermediate: keep the ends and the points where the second difference
 * of fps or tps is non-zero (i.e. drop interior points of straight runs). In place. */
static int64_t drop_collinear(int64_t *fps, int64_t *tps, float *thr, int64_t ng) {
  if (ng <= 2) return ng;
  int64_t m = 0;
  int64_t pf = fps[0], pt = tps[0]; /* original values of the previous point */
  for (int64_t i = 0; i < ng; i++) {
    int keep = (i == 0 || i == ng - 1);
    if (!keep) {
      int64_t d2f = fps[i + 1] - 2 * fps[i] + pf, d2t = tps[i + 1] - 2 * tps[i] + pt;
      keep = d2f != 0 || d2t != 0;
    }
    int64_t cf = fps[i], ct = tps[i];
    if (keep) { fps[m] = cf; tps[m] = ct; thr[m] = thr[i]; m++; }
    pf = cf; pt = ct;
  }
  return m;
}

/* full ROC into caller buffers (far/tar/thr of n+1; any may be NULL) from a descending order */
static int64_t roc_from_order(const char *fn, const sorted_t *q, int64_t npos, int64_t nneg,
                              int drop, double *far, double *tar, float *thr) {
  int64_t n = q->n;
  int64_t *fps = malloc((size_t)n * sizeof *fps), *tps = malloc((size_t)n * sizeof *tps);
  float *th = malloc((size_t)n * sizeof *th);
  if (!fps || !tps || !th) {
    free(fps); free(tps); free(th);
    return fvl_err("%s: out of memory for a ROC of %lld pairs", fn, (long long)n);
  }
  int64_t ng = roc_counts(q, fps, tps, th);
  if (drop) ng = drop_collinear(fps, tps, th, ng);
  if (far) far[0] = 0.0;
  if (tar) tar[0] = 0.0;
  if (thr) thr[0] = INFINITY;
  for (int64_t i = 0; i < ng; i++) {
    if (far) far[i + 1] = (double)fps[i] / (double)nneg;
    if (tar) tar[i + 1] = (double)tps[i] / (double)npos;
    if (thr) thr[i + 1] = th[i];
  }
  free(fps); free(tps); free(th);
  return ng + 1;
}

int64_t fvl_eval_roc(const float *scores, const int32_t *same, int64_t n, int drop_intermediate,
                     double *far, double *tar, float *thr) {
  int64_t npos, nneg;
  if (check_scores("roc", scores, same, n, &npos, &nneg) < 0) return -1;
  sorted_t q;
  if (sort_desc("roc", scores, same, n, &q) < 0) return -1;
  int64_t m = roc_from_order("roc", &q, npos, nneg, drop_intermediate, far, tar, thr);
  sorted_free(&q);
  return m;
}

double fvl_eval_auc(const double *x, const double *y, int64_t n) {
  double a = 0.0;
  for (int64_t i = 1; i < n; i++) a += (x[i] - x[i - 1]) * (y[i] + y[i - 1]) * 0.5;
  return a < 0 ? -a : a;
}

double fvl_eval_eer(const double *far, const double *tar, const float *thr, int64_t npts,
                    double *thr_out) {
  /* g = 1 - far - tar goes from 1 at (0,0) to -1 at (1,1); find the first sign change */
  double gprev = 1.0 - far[0] - tar[0];
  if (gprev <= 0) {
    if (thr_out) *thr_out = thr ? (double)thr[0] : NAN;
    return far[0];
  }
  for (int64_t i = 1; i < npts; i++) {
    double g = 1.0 - far[i] - tar[i];
    if (g <= 0) {
      double t = gprev / (gprev - g);
      if (thr_out) {
        if (!thr) *thr_out = NAN;
        else if (isinf(thr[i - 1])) *thr_out = thr[i];
        else *thr_out = thr[i - 1] + t * ((double)thr[i] - thr[i - 1]);
      }
      return far[i - 1] + t * (far[i] - far[i - 1]);
    }
    gprev = g;
  }
  if (thr_out) *thr_out = NAN;
  return NAN; /* does not reach (1,1): not a full ROC */
}

int fvl_eval_tar_at_far(const double *far, const double *tar, int64_t npts, int64_t n_impostor,
                        double *tar_out) {
  int supported = 0;
  for (int j = 0; j < FVL_EVAL_NFAR; j++) {
    double f = fvl_eval_far_targets[j];
    if ((double)n_impostor * f < 1.0 - 1e-9) { tar_out[j] = NAN; continue; }
    double best = 0.0;
    double lim = f * (1.0 + 1e-12);
    for (int64_t i = 0; i < npts; i++) {
      if (far[i] > lim) break; /* far is non-decreasing */
      if (tar[i] > best) best = tar[i];
    }
    tar_out[j] = best;
    supported++;
  }
  return supported;
}

/* ------------------------------------------------------------------ k-fold */

static void kfold_bounds(int64_t n, int folds, int k, int64_t *lo, int64_t *hi) {
  int64_t base = n / folds, extra = n % folds;
  *lo = k * base + (k < extra ? k : extra);
  *hi = *lo + base + (k < extra ? 1 : 0);
}

static int kfold_from_order(const char *fn, const float *scores, const int32_t *same,
                            const sorted_t *q, int folds, double *mean, double *std,
                            double *mean_thr, double *fold_acc, double *fold_thr) {
  int64_t n = q->n;
  if (folds < 2 || folds > 64)
    return fvl_err("%s: folds: expected 2..64, got %d", fn, folds);
  if (n < folds)
    return fvl_err("%s: folds = %d needs at least %d pairs, got %lld", fn, folds, folds,
                   (long long)n);
  double acc[64], thr[64];
  int64_t lo[64], hi[64], fpos[64] = {0}, fneg[64] = {0};
  int64_t base = n / folds, extra = n % folds, cut = extra * (base + 1);
  for (int k = 0; k < folds; k++) kfold_bounds(n, folds, k, &lo[k], &hi[k]);
  for (int k = 0; k < folds; k++)
    for (int64_t i = lo[k]; i < hi[k]; i++) { fpos[k] += same[i]; fneg[k] += !same[i]; }
  int64_t npos_all = 0;
  for (int k = 0; k < folds; k++) npos_all += fpos[k];
  int64_t nneg_all = n - npos_all;
  /* One pass over the sorted scores serves every fold: the training set of fold k is all
   * minus fold k, so its counts are the running totals minus fold k's running counts.
   * Start: "nothing is same", threshold just above the highest training score. */
  int64_t best[64], tpf[64] = {0}, fpf[64] = {0}, gcf[64] = {0};
  float bthr[64];
  for (int k = 0; k < folds; k++) { best[k] = nneg_all - fneg[k]; bthr[k] = NAN; }
  int64_t tp = 0, fp = 0, gc = 0;
  for (int64_t i = 0; i < n; i++) {
    int32_t id = q->idx[i];
    int k = (int)(id < cut ? id / (base + 1) : extra + (id - cut) / base);
    if (q->y[i]) { tp++; tpf[k]++; } else { fp++; fpf[k]++; }
    gc++;
    gcf[k]++;
    if (i == n - 1 || q->s[i + 1] != q->s[i]) {
      for (int f = 0; f < folds; f++) {
        if (gcf[f] == gc) { gcf[f] = 0; continue; } /* no training score in this group */
        if (isnan(bthr[f])) {                       /* first training group: the top score */
          bthr[f] = nextafterf(q->s[i], INFINITY);
        }
        int64_t correct = (tp - tpf[f]) + (nneg_all - fneg[f]) - (fp - fpf[f]);
        if (correct > best[f]) { best[f] = correct; bthr[f] = q->s[i]; }
        gcf[f] = 0;
      }
      gc = 0;
    }
  }
  for (int k = 0; k < folds; k++) {
    int64_t ok = 0;
    float t = bthr[k];
    for (int64_t i = lo[k]; i < hi[k]; i++) ok += ((scores[i] >= t) == (same[i] != 0));
    acc[k] = (double)ok / (double)(hi[k] - lo[k]);
    thr[k] = t;
  }
  double m = 0, mt = 0, v = 0;
  for (int k = 0; k < folds; k++) { m += acc[k]; mt += thr[k]; }
  m /= folds;
  mt /= folds;
  for (int k = 0; k < folds; k++) v += (acc[k] - m) * (acc[k] - m);
  if (mean) *mean = m;
  if (std) *std = sqrt(v / folds);
  if (mean_thr) *mean_thr = mt;
  if (fold_acc) memcpy(fold_acc, acc, (size_t)folds * sizeof *acc);
  if (fold_thr) memcpy(fold_thr, thr, (size_t)folds * sizeof *thr);
  return 0;
}

/* VAL@FAR per fold (the LFW protocol): on the training folds, the threshold where
 * FAR_train = f by linear interpolation between the two distinct training scores that bracket
 * f; TAR and FAR of the held-out fold at that threshold; mean (and std of TAR) over the folds
 * whose test part holds both kinds of pairs. Needs >= 1/f training impostors in every fold. */
static void kfold_val(const float *scores, const int32_t *same, const sorted_t *q, int folds,
                      double *val, double *val_std, double *val_far) {
  int64_t n = q->n;
  int64_t lo[64], hi[64], fneg[64] = {0};
  int64_t base = n / folds, extra = n % folds, cut = extra * (base + 1);
  for (int k = 0; k < folds; k++) kfold_bounds(n, folds, k, &lo[k], &hi[k]);
  for (int k = 0; k < folds; k++)
    for (int64_t i = lo[k]; i < hi[k]; i++) fneg[k] += !same[i];
  int64_t nneg_all = 0;
  for (int k = 0; k < folds; k++) nneg_all += fneg[k];
  int64_t min_train_neg = INT64_MAX;
  for (int k = 0; k < folds; k++)
    if (nneg_all - fneg[k] < min_train_neg) min_train_neg = nneg_all - fneg[k];
  int active[FVL_EVAL_NFAR], nact = 0;
  for (int j = 0; j < FVL_EVAL_NFAR; j++) {
    val[j] = val_std[j] = val_far[j] = NAN;
    if ((double)min_train_neg * fvl_eval_far_targets[j] >= 1.0 - 1e-9) active[nact++] = j;
  }
  if (nact == 0) return;
  /* per fold and target: the bracket (lo: FAR <= f, hi: first FAR > f) while sweeping down */
  double lthr[64][FVL_EVAL_NFAR], lfar[64][FVL_EVAL_NFAR];
  double hthr[64][FVL_EVAL_NFAR], hfar[64][FVL_EVAL_NFAR];
  int done[64][FVL_EVAL_NFAR];
  for (int k = 0; k < folds; k++)
    for (int j = 0; j < FVL_EVAL_NFAR; j++) {
      lthr[k][j] = INFINITY; lfar[k][j] = 0; done[k][j] = 0; hthr[k][j] = hfar[k][j] = NAN;
    }
  int64_t fpf[64] = {0}, gcf[64] = {0}, fp = 0, gc = 0;
  for (int64_t i = 0; i < n; i++) {
    int32_t id = q->idx[i];
    int k = (int)(id < cut ? id / (base + 1) : extra + (id - cut) / base);
    if (!q->y[i]) { fp++; fpf[k]++; }
    gc++;
    gcf[k]++;
    if (i == n - 1 || q->s[i + 1] != q->s[i]) {
      for (int f = 0; f < folds; f++) {
        if (gcf[f] == gc) { gcf[f] = 0; continue; }   /* no training score here */
        gcf[f] = 0;
        double far = (double)(fp - fpf[f]) / (double)(nneg_all - fneg[f]);
        for (int a = 0; a < nact; a++) {
          int j = active[a];
          if (done[f][j]) continue;
          if (far <= fvl_eval_far_targets[j]) { lthr[f][j] = q->s[i]; lfar[f][j] = far; }
          else { hthr[f][j] = q->s[i]; hfar[f][j] = far; done[f][j] = 1; }
        }
      }
      gc = 0;
    }
  }
  for (int a = 0; a < nact; a++) {
    int j = active[a];
    double target = fvl_eval_far_targets[j], st = 0, st2 = 0, sf = 0;
    int m = 0;
    for (int k = 0; k < folds; k++) {
      double t;
      if (!done[k][j]) t = lthr[k][j];                           /* FAR never exceeds f */
      else if (isinf(lthr[k][j])) t = nextafterf((float)hthr[k][j], INFINITY); /* accept none */
      else t = lthr[k][j] + (target - lfar[k][j]) / (hfar[k][j] - lfar[k][j]) * (hthr[k][j] - lthr[k][j]);
      int64_t tp = 0, np = 0, fa = 0, nn = 0;
      for (int64_t i = lo[k]; i < hi[k]; i++) {
        int acc = (double)scores[i] >= t;
        if (same[i]) { np++; tp += acc; } else { nn++; fa += acc; }
      }
      if (np == 0 || nn == 0) continue;
      double tar = (double)tp / (double)np;
      st += tar; st2 += tar * tar; sf += (double)fa / (double)nn;
      m++;
    }
    if (m == 0) continue;
    val[j] = st / m;
    double var = st2 / m - val[j] * val[j];
    val_std[j] = sqrt(var > 0 ? var : 0);
    val_far[j] = sf / m;
  }
}

int fvl_eval_kfold(const float *scores, const int32_t *same, int64_t n, int folds,
                   double *mean, double *std, double *mean_thr, double *fold_acc,
                   double *fold_thr) {
  int64_t npos, nneg;
  if (check_scores("kfold", scores, same, n, &npos, &nneg) < 0) return -1;
  sorted_t q;
  if (sort_desc("kfold", scores, same, n, &q) < 0) return -1;
  int rc = kfold_from_order("kfold", scores, same, &q, folds, mean, std, mean_thr, fold_acc,
                            fold_thr);
  sorted_free(&q);
  return rc;
}

int fvl_eval_verification(const float *scores, const int32_t *same, int64_t n, int folds,
                          fvl_verif_result *res, int drop_intermediate, double *roc_far,
                          double *roc_tar, float *roc_thr, int64_t *roc_n) {
  const char *fn = "verification";
  int64_t npos, nneg;
  if (!res) return fvl_err("%s: res must not be NULL", fn);
  if (check_scores(fn, scores, same, n, &npos, &nneg) < 0) return -1;
  memset(res, 0, sizeof *res);
  res->n = n; res->n_genuine = npos; res->n_impostor = nneg; res->folds = folds;
  sorted_t q;
  if (sort_desc(fn, scores, same, n, &q) < 0) return -1;
  if (kfold_from_order(fn, scores, same, &q, folds, &res->accuracy, &res->std, &res->threshold,
                       res->fold_acc, res->fold_thr) < 0) {
    sorted_free(&q);
    return -1;
  }
  kfold_val(scores, same, &q, folds, res->val, res->val_std, res->val_far);
  /* the summary uses the full ROC (all thresholds); the caller's copy may be thinned */
  double *far = malloc((size_t)(n + 1) * sizeof *far), *tar = malloc((size_t)(n + 1) * sizeof *tar);
  float *thr = malloc((size_t)(n + 1) * sizeof *thr);
  if (!far || !tar || !thr) {
    free(far); free(tar); free(thr); sorted_free(&q);
    return fvl_err("%s: out of memory for a ROC of %lld pairs", fn, (long long)n);
  }
  int64_t m = roc_from_order(fn, &q, npos, nneg, 0, far, tar, thr);
  int rc = 0;
  if (m < 0) { rc = -1; goto done; }
  res->auc = fvl_eval_auc(far, tar, m);
  res->eer = fvl_eval_eer(far, tar, thr, m, &res->eer_threshold);
  fvl_eval_tar_at_far(far, tar, m, nneg, res->tar_at_far);
  if (roc_far || roc_tar || roc_thr || roc_n) {
    int64_t mm = m;
    if (drop_intermediate)
      mm = roc_from_order(fn, &q, npos, nneg, 1, roc_far, roc_tar, roc_thr);
    else {
      if (roc_far) memcpy(roc_far, far, (size_t)m * sizeof *far);
      if (roc_tar) memcpy(roc_tar, tar, (size_t)m * sizeof *tar);
      if (roc_thr) memcpy(roc_thr, thr, (size_t)m * sizeof *thr);
    }
    if (mm < 0) rc = -1;
    if (roc_n) *roc_n = mm;
  }
done:
  free(far); free(tar); free(thr); sorted_free(&q);
  return rc;
}

/* ------------------------------------------------------------------ pairs */

static int check_rows(const char *fn, const char *arg, const float *x, int64_t N, int64_t D) {
  int64_t bad = fvl_eval_first_nonfinite(x, N * D);
  if (bad >= 0)
    return fvl_err("%s: %s[%lld][%lld] = %g is not a finite number (0-based)", fn, arg,
                   (long long)(bad / D), (long long)(bad % D),
                   isnan(x[bad]) ? fabs((double)x[bad]) : (double)x[bad]);
  return 0;
}

static int check_labels(const char *fn, const char *arg, const int32_t *l, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    if (l[i] < 0)
      return fvl_err("%s: %s[%lld] = %d is not a class id (expected >= 0; 0-based)", fn, arg,
                     (long long)i, (int)l[i]);
  return 0;
}

typedef struct { int32_t label, row; } lab_row;
static int cmp_lab_row(const void *pa, const void *pb) {
  const lab_row *a = pa, *b = pb;
  if (a->label != b->label) return a->label < b->label ? -1 : 1;
  return (a->row > b->row) - (a->row < b->row);
}

static inline double row_inv_norm(const float *x, int64_t D) {
  double s = 0;
  for (int64_t d = 0; d < D; d++) s += (double)x[d] * x[d];
  double nrm = sqrt(s);
  return 1.0 / (nrm > 1e-12 ? nrm : 1e-12);
}

/* the rows grouped by class: sorted (rows by label, in row order), gstart (group g is sorted
 * positions gstart[g]..gstart[g+1]-1), gof (sorted position -> group), elig (the sorted positions
 * in classes of at least 2 rows, ne of them) */
typedef struct {
  int32_t *sorted, *gof, *elig;
  int64_t *gstart;
  int64_t ng, ne;
} class_groups;

static void groups_free(class_groups *g) { free(g->sorted); free(g->gstart); free(g->gof); free(g->elig); }

static int group_rows(const char *fn, const int32_t *labels, int64_t N, class_groups *g) {
  g->sorted = malloc((size_t)N * sizeof *g->sorted);
  g->gstart = malloc((size_t)(N + 1) * sizeof *g->gstart);
  g->gof = malloc((size_t)N * sizeof *g->gof);
  g->elig = malloc((size_t)N * sizeof *g->elig);
  lab_row *lr = malloc((size_t)N * sizeof *lr);
  if (!g->sorted || !g->gstart || !g->gof || !g->elig || !lr) {
    free(lr);
    return fvl_err("%s: out of memory for %lld rows", fn, (long long)N);
  }
  for (int64_t i = 0; i < N; i++) { lr[i].label = labels[i]; lr[i].row = (int32_t)i; }
  qsort(lr, (size_t)N, sizeof *lr, cmp_lab_row);   /* rows grouped by class, in row order */
  for (int64_t i = 0; i < N; i++) g->sorted[i] = lr[i].row;
  free(lr);
  g->ng = 0;
  for (int64_t i = 0; i < N; i++) {
    if (i == 0 || labels[g->sorted[i]] != labels[g->sorted[i - 1]]) g->gstart[g->ng++] = i;
    g->gof[i] = (int32_t)(g->ng - 1);
  }
  g->gstart[g->ng] = N;
  g->ne = 0;
  for (int64_t i = 0; i < N; i++)
    if (g->gstart[g->gof[i] + 1] - g->gstart[g->gof[i]] >= 2) g->elig[g->ne++] = (int32_t)i;
  if (g->ng < 2)
    return fvl_err("%s: labels: expected at least 2 classes for impostor pairs, got one class only "
                   "(%d, 0-based)", fn, (int)labels[0]);
  if (g->ne == 0)
    return fvl_err("%s: labels: expected a class with at least 2 rows for genuine pairs, got %lld "
                   "classes of one row each", fn, (long long)g->ng);
  return 0;
}

/* pair k: even k a genuine pair (a row of a class of >= 2 rows and another row of its class),
 * odd k an impostor pair (any row and a row outside its class) */
static void draw_pair(const class_groups *g, int64_t N, int64_t k, fvl_rng *r, int32_t *a, int32_t *b) {
  if (k % 2 == 0) {
    int32_t pa = g->elig[fvl_rng_int(r, 0, g->ne - 1)];
    int64_t g0 = g->gstart[g->gof[pa]], gs = g->gstart[g->gof[pa] + 1] - g0;
    int64_t j = fvl_rng_int(r, 0, gs - 2);   /* one of the other gs-1 members */
    if (g0 + j >= pa) j++;
    *a = g->sorted[pa];
    *b = g->sorted[g0 + j];
  } else {
    int32_t pa = (int32_t)fvl_rng_int(r, 0, N - 1);
    int64_t g0 = g->gstart[g->gof[pa]], gs = g->gstart[g->gof[pa] + 1] - g0;
    int64_t j = fvl_rng_int(r, 0, N - gs - 1);  /* a position outside pa's group */
    if (j >= g0) j += gs;
    *a = g->sorted[pa];
    *b = g->sorted[j];
  }
}

int fvl_eval_make_pairs(const float *emb, const int32_t *labels, int64_t N, int64_t D,
                        int64_t npairs, uint64_t seed, int32_t *idx_a, int32_t *idx_b,
                        int32_t *same, float *score) {
  const char *fn = "pairs";
  if (!emb || !labels) return fvl_err("%s: emb and labels must not be NULL", fn);
  if (N < 2 || D < 1)
    return fvl_err("%s: emb: expected at least 2 rows and 1 column, got %lldx%lld", fn,
                   (long long)N, (long long)D);
  if (N > INT32_MAX) return fvl_err("%s: emb: at most %d rows, got %lld", fn, INT32_MAX, (long long)N);
  if (npairs < 2)
    return fvl_err("%s: n: expected at least 2 pairs, got %lld", fn, (long long)npairs);
  if (check_labels(fn, "labels", labels, N) < 0) return -1;
  if (check_rows(fn, "emb", emb, N, D) < 0) return -1;
  class_groups g = {0};
  if (group_rows(fn, labels, N, &g) < 0) {
    groups_free(&g);
    return -1;
  }
  fvl_rng r;
  fvl_rng_seed(&r, seed);
  for (int64_t k = 0; k < npairs; k++) {
    int32_t a, b;
    draw_pair(&g, N, k, &r, &a, &b);
    if (idx_a) idx_a[k] = a;
    if (idx_b) idx_b[k] = b;
    if (same) same[k] = (k % 2 == 0);
    if (score) {
      const float *x = emb + (int64_t)a * D, *y = emb + (int64_t)b * D;
      double dot = 0;
      for (int64_t d = 0; d < D; d++) dot += (double)x[d] * y[d];
      score[k] = (float)(dot * row_inv_norm(x, D) * row_inv_norm(y, D));
    }
  }
  groups_free(&g);
  return 0;
}

/* ------------------------------------------------------------------ cosine, flip */

static void normalize_rows(const float *x, int64_t n, int64_t D, float *out) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++) {
    float inv = (float)row_inv_norm(x + i * D, D);
    for (int64_t d = 0; d < D; d++) out[i * D + d] = x[i * D + d] * inv;
  }
}

static int check_gemm_size(const char *fn, int64_t a, int64_t b, int64_t D) {
  if (a > INT32_MAX || b > INT32_MAX || D > INT32_MAX)
    return fvl_err("%s: sizes %lldx%lld·%lld exceed the BLAS int range", fn, (long long)a,
                   (long long)D, (long long)b);
  return 0;
}

int fvl_eval_cosine_matrix(const float *A, int64_t na, const float *B, int64_t nb, int64_t D,
                           float *out) {
  const char *fn = "cosine";
  if (!A || !B || !out) return fvl_err("%s: arguments must not be NULL", fn);
  if (na < 1 || nb < 1 || D < 1)
    return fvl_err("%s: expected non-empty matrices, got %lldx%lld and %lldx%lld", fn,
                   (long long)na, (long long)D, (long long)nb, (long long)D);
  if (check_gemm_size(fn, na, nb, D) < 0) return -1;
  if (check_rows(fn, "a", A, na, D) < 0 || check_rows(fn, "b", B, nb, D) < 0) return -1;
  float *an = malloc((size_t)(na * D) * sizeof *an), *bn = malloc((size_t)(nb * D) * sizeof *bn);
  if (!an || !bn) { free(an); free(bn); return fvl_err("%s: out of memory", fn); }
  normalize_rows(A, na, D, an);
  normalize_rows(B, nb, D, bn);
  fvl_gemm(0, 1, (int)na, (int)nb, (int)D, 1.0f, an, (int)D, bn, (int)D, 0.0f, out, (int)nb);
  free(an);
  free(bn);
  return 0;
}

int fvl_eval_flip_merge(const float *a, const float *b, int64_t N, int64_t D, float *out) {
  const char *fn = "flip";
  if (!a || !b || !out) return fvl_err("%s: arguments must not be NULL", fn);
  if (check_rows(fn, "emb", a, N, D) < 0 || check_rows(fn, "emb_flipped", b, N, D) < 0) return -1;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < N; i++) {
    double s = 0;
    for (int64_t d = 0; d < D; d++) {
      double v = (double)a[i * D + d] + b[i * D + d];
      s += v * v;
    }
    double nrm = sqrt(s);
    float inv = (float)(1.0 / (nrm > 1e-12 ? nrm : 1e-12));
    for (int64_t d = 0; d < D; d++) out[i * D + d] = (a[i * D + d] + b[i * D + d]) * inv;
  }
  return 0;
}

/* ------------------------------------------------------------------ identification */

/* order: similarity descending, gallery index ascending */
static inline int before(const float *s, int32_t i, int32_t j) {
  return s[i] > s[j] || (s[i] == s[j] && i < j);
}

static void isort(const float *s, int32_t *idx, int64_t n) {
  for (int64_t i = 1; i < n; i++) {
    int32_t v = idx[i];
    int64_t j = i;
    while (j > 0 && before(s, v, idx[j - 1])) { idx[j] = idx[j - 1]; j--; }
    idx[j] = v;
  }
}

static int64_t partition(const float *s, int32_t *idx, int64_t lo, int64_t hi) {
  int64_t mid = lo + (hi - lo) / 2;
  /* median of three into idx[hi] as pivot */
  if (before(s, idx[mid], idx[lo])) { int32_t t = idx[mid]; idx[mid] = idx[lo]; idx[lo] = t; }
  if (before(s, idx[hi], idx[lo])) { int32_t t = idx[hi]; idx[hi] = idx[lo]; idx[lo] = t; }
  if (before(s, idx[mid], idx[hi])) { int32_t t = idx[mid]; idx[mid] = idx[hi]; idx[hi] = t; }
  int32_t pv = idx[hi];
  int64_t st = lo;
  for (int64_t i = lo; i < hi; i++)
    if (before(s, idx[i], pv)) { int32_t t = idx[i]; idx[i] = idx[st]; idx[st] = t; st++; }
  int32_t t = idx[st]; idx[st] = idx[hi]; idx[hi] = t;
  return st;
}

static void qsort_idx(const float *s, int32_t *idx, int64_t lo, int64_t hi) {
  while (hi - lo > 16) {
    int64_t p = partition(s, idx, lo, hi);
    if (p - lo < hi - p) { qsort_idx(s, idx, lo, p - 1); lo = p + 1; }
    else { qsort_idx(s, idx, p + 1, hi); hi = p - 1; }
  }
  if (hi > lo) isort(s, idx + lo, hi - lo + 1);
}

/* the k first elements of idx[0..n) in order (the keys are all distinct: ties broken by index) */
static void top_k(const float *s, int32_t *idx, int64_t n, int64_t k) {
  int64_t lo = 0, hi = n - 1;
  if (k < n) {
    while (hi > lo) {
      int64_t p = partition(s, idx, lo, hi);
      if (p == k - 1 || p == k) break;
      if (p < k) lo = p + 1; else hi = p - 1;
    }
  }
  qsort_idx(s, idx, 0, (k < n ? k : n) - 1);
}

static int cmp_i32(const void *a, const void *b) {
  int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
  return (x > y) - (x < y);
}

static int64_t count_label(const int32_t *sorted, int64_t n, int32_t l) {
  int64_t lo = 0, hi = n; /* first >= l */
  while (lo < hi) { int64_t m = (lo + hi) / 2; if (sorted[m] < l) lo = m + 1; else hi = m; }
  int64_t a = lo;
  hi = n; /* first > l */
  while (lo < hi) { int64_t m = (lo + hi) / 2; if (sorted[m] <= l) lo = m + 1; else hi = m; }
  return lo - a;
}

/* the arguments of fvl_eval_identification (probes = gallery, pl = gl when leave-one-out) */
static int ident_check(const char *fn, const float *gallery, const int32_t *gl, int64_t G, const float *probes,
                       const int32_t *pl, int64_t P, int64_t D, const int *ks, int nk, int loo) {
  if (G < 1 || P < 1 || D < 1)
    return fvl_err("%s: expected a non-empty gallery and probes, got %lld and %lld rows of %lld",
                   fn, (long long)G, (long long)P, (long long)D);
  if (loo && G < 2)
    return fvl_err("%s: gallery: leave-one-out needs at least 2 rows, got %lld", fn, (long long)G);
  if (check_gemm_size(fn, P, G, D) < 0) return -1;
  for (int i = 0; i < nk; i++)
    if (ks[i] < 1) return fvl_err("%s: k: expected >= 1, got %d", fn, ks[i]);
  if (check_labels(fn, "gallery_labels", gl, G) < 0) return -1;
  if (!loo && check_labels(fn, "probe_labels", pl, P) < 0) return -1;
  if (check_rows(fn, "gallery", gallery, G, D) < 0) return -1;
  if (!loo && check_rows(fn, "probes", probes, P, D) < 0) return -1;
  return 0;
}

/* one query q with label lab and similarities s to the G gallery rows (itself left out when
 * loo): the 0-based rank of its first match among the top max(R, kmax) (-1: none there; -2: the
 * query is dropped, no other gallery row has its identity), its R-precision and MAP@R; idx is
 * scratch for G indices */
static void ident_query(const float *s, const int32_t *gl, const int32_t *gsorted, int64_t G, int64_t q,
                        int32_t lab, int loo, int kmax, int32_t *idx, int64_t *first, double *rp, double *map) {
  int64_t R = count_label(gsorted, G, lab) - (loo ? 1 : 0);
  *first = -2;                          /* dropped */
  if (R <= 0) return;
  int64_t n = 0;
  for (int64_t g = 0; g < G; g++)
    if (!(loo && g == q)) idx[n++] = (int32_t)g;
  int64_t K = R > kmax ? R : kmax;
  if (K > n) K = n;
  top_k(s, idx, n, K);
  int64_t f = -1, hitsR = 0;
  double ap = 0;
  for (int64_t i = 0; i < K; i++) {
    if (gl[idx[i]] != lab) continue;
    if (f < 0) f = i;
    if (i < R) { hitsR++; ap += (double)hitsR / (double)(i + 1); }
  }
  *first = f;
  *rp = (double)hitsR / (double)R;
  *map = ap / (double)R;
}

int fvl_eval_identification(const float *gallery, const int32_t *gl, int64_t G,
                            const float *probes, const int32_t *pl, int64_t P, int64_t D,
                            const int *ks, int nk, double *rank_k, fvl_ident_result *res) {
  const char *fn = "identification";
  int loo = probes == NULL;
  if (!gallery || !gl || !res) return fvl_err("%s: gallery, labels and res must not be NULL", fn);
  if (loo) { P = G; pl = gl; }
  if (!pl) return fvl_err("%s: probe_labels must not be NULL", fn);
  if (ident_check(fn, gallery, gl, G, probes, pl, P, D, ks, nk, loo) < 0) return -1;

  int kmax = 1;
  for (int i = 0; i < nk; i++) if (ks[i] > kmax) kmax = ks[i];
  int64_t BQ = (int64_t)(16 << 20) / G;   /* similarity block: at most 64 MB */
  if (BQ < 1) BQ = 1;
  if (BQ > 256) BQ = 256;
  if (BQ > P) BQ = P;
  int nth = fvl_get_threads();
  if (nth < 1) nth = 1;
  float *gn = malloc((size_t)(G * D) * sizeof *gn);
  float *pn = loo ? gn : malloc((size_t)(P * D) * sizeof *pn);
  float *sim = malloc((size_t)(BQ * G) * sizeof *sim);
  int32_t *scratch = malloc((size_t)nth * (size_t)G * sizeof *scratch);
  int32_t *gsorted = malloc((size_t)G * sizeof *gsorted);
  int64_t *hits = calloc((size_t)(nk > 0 ? nk : 1), sizeof *hits);
  int64_t *qfirst = malloc((size_t)BQ * sizeof *qfirst);
  double *qrp = malloc((size_t)BQ * sizeof *qrp), *qmap = malloc((size_t)BQ * sizeof *qmap);
  int rc = 0;
  if (!gn || !pn || !sim || !scratch || !gsorted || !hits || !qfirst || !qrp || !qmap) {
    rc = fvl_err("%s: out of memory (gallery %lld, probes %lld)", fn, (long long)G, (long long)P);
    goto done;
  }
  normalize_rows(gallery, G, D, gn);
  if (!loo) normalize_rows(probes, P, D, pn);
  memcpy(gsorted, gl, (size_t)G * sizeof *gsorted);
  qsort(gsorted, (size_t)G, sizeof *gsorted, cmp_i32);

  int64_t nq = 0, ndrop = 0;
  double sum_p1 = 0, sum_rp = 0, sum_map = 0;
  for (int64_t q0 = 0; q0 < P; q0 += BQ) {
    if (fvl_check_abort(fn) < 0) { rc = -1; break; }
    int64_t bq = P - q0 < BQ ? P - q0 : BQ;
    fvl_gemm(0, 1, (int)bq, (int)G, (int)D, 1.0f, pn + q0 * D, (int)D, gn, (int)D, 0.0f, sim, (int)G);
    /* per-query results first, summed in query order after the loop: the totals do not
     * depend on the thread count or the schedule */
#pragma omp parallel for schedule(dynamic, 4) num_threads(nth)
    for (int64_t b = 0; b < bq; b++) {
      int tid = 0;
#ifdef _OPENMP
      tid = omp_get_thread_num();
#endif
      ident_query(sim + b * G, gl, gsorted, G, q0 + b, pl[q0 + b], loo, kmax, scratch + (int64_t)tid * G,
                  &qfirst[b], &qrp[b], &qmap[b]);
    }
    for (int64_t b = 0; b < bq; b++) {
      if (qfirst[b] == -2) { ndrop++; continue; }
      nq++;
      sum_p1 += (qfirst[b] == 0);
      sum_rp += qrp[b];
      sum_map += qmap[b];
      if (qfirst[b] >= 0)
        for (int j = 0; j < nk; j++) hits[j] += qfirst[b] < ks[j];
    }
  }
  if (rc == 0 && nq == 0)
    rc = fvl_err("%s: probe_labels: no probe has a matching gallery identity (%lld dropped)", fn,
                 (long long)ndrop);
  if (rc == 0) {
    res->n_queries = nq;
    res->n_dropped = ndrop;
    res->precision_at_1 = sum_p1 / nq;
    res->r_precision = sum_rp / nq;
    res->map_at_r = sum_map / nq;
    for (int j = 0; j < nk; j++) if (rank_k) rank_k[j] = (double)hits[j] / nq;
  }
done:
  free(gn); if (!loo) free(pn); free(sim); free(scratch); free(gsorted); free(hits);
  free(qfirst); free(qrp); free(qmap);
  return rc;
}
