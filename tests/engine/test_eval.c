/* test_eval.c — engine/eval.c: ROC/AUC/EER/TAR@FAR and k-fold accuracy against hand-worked
 * cases and scikit-learn golden values (tests/golden/sklearn_*.json, made by
 * make_sklearn_golden.py), pair generation, identification metrics (pytorch-metric-learning
 * definitions, brute-force numpy golden values), the flip merge and every error path. */
#include <check.h>
#include "fvl_check.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "core.h"
#include "eval.h"

#ifndef FVL_TEST_DIR
#define FVL_TEST_DIR "tests"
#endif
#define GOLDEN FVL_TEST_DIR "/golden/"

/* ------------------------------------------------------------------ tiny JSON reader
 * The golden files are flat: {"cases":[{"name":"x","key":[numbers or null],...},...]}. */
static char *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  ck_assert_msg(f != NULL, "cannot open %s", path);
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = malloc((size_t)n + 1);
  ck_assert_int_eq(fread(buf, 1, (size_t)n, f), n);
  buf[n] = 0;
  fclose(f);
  return buf;
}
static const char *find_case(const char *buf, const char *name) {
  char key[128];
  snprintf(key, sizeof key, "\"name\":\"%s\"", name);
  const char *p = strstr(buf, key);
  ck_assert_msg(p != NULL, "case %s not in golden file", name);
  return p;
}
static const char *find_key(const char *from, const char *key) {
  char k[128];
  snprintf(k, sizeof k, "\"%s\":", key);
  const char *p = strstr(from, k);
  ck_assert_msg(p != NULL, "key %s missing", key);
  return p + strlen(k);
}
static double num(const char *from, const char *key) {
  const char *p = find_key(from, key);
  if (strncmp(p, "null", 4) == 0) return NAN;
  return strtod(p, NULL);
}
static double *arr(const char *from, const char *key, int64_t *n) {
  const char *p = find_key(from, key);
  ck_assert(*p == '[');
  p++;
  int64_t cap = 1024, m = 0;
  double *v = malloc((size_t)cap * sizeof *v);
  while (*p && *p != ']') {
    if (m == cap) { cap *= 2; v = realloc(v, (size_t)cap * sizeof *v); }
    if (strncmp(p, "null", 4) == 0) { v[m++] = NAN; p += 4; }
    else { char *e; v[m++] = strtod(p, &e); ck_assert(e != p); p = e; }
    if (*p == ',') p++;
  }
  *n = m;
  return v;
}
static float *arr_f(const char *from, const char *key, int64_t *n) {
  double *d = arr(from, key, n);
  float *f = malloc((size_t)*n * sizeof *f + 1);
  for (int64_t i = 0; i < *n; i++) f[i] = (float)d[i];
  free(d);
  return f;
}
static int32_t *arr_i(const char *from, const char *key, int64_t *n) {
  double *d = arr(from, key, n);
  int32_t *v = malloc((size_t)*n * sizeof *v + 1);
  for (int64_t i = 0; i < *n; i++) v[i] = (int32_t)d[i];
  free(d);
  return v;
}

#define HAS(msg, s) ck_assert_msg(strstr((msg), (s)) != NULL, "message '%s' lacks '%s'", (msg), (s))

/* ------------------------------------------------------------------ hand-worked ROC */
static const float hand_s[10] = {0.9f, 0.8f, 0.7f, 0.6f, 0.55f, 0.5f, 0.4f, 0.3f, 0.2f, 0.1f};
static const int32_t hand_y[10] = {1, 1, 0, 1, 1, 0, 0, 1, 0, 0};

START_TEST(roc_hand) {
  /* 5 genuine, 5 impostor; each score is its own threshold */
  static const double efar[11] = {0, 0, 0, .2, .2, .2, .4, .6, .6, .8, 1};
  static const double etar[11] = {0, .2, .4, .4, .6, .8, .8, .8, 1, 1, 1};
  double far[11], tar[11];
  float thr[11];
  ck_assert_int_eq(fvl_eval_roc(hand_s, hand_y, 10, 0, far, tar, thr), 11);
  ck_assert(isinf(thr[0]) && thr[0] > 0);
  for (int i = 0; i < 11; i++) {
    ck_assert_double_eq_tol(far[i], efar[i], 1e-15);
    ck_assert_double_eq_tol(tar[i], etar[i], 1e-15);
    if (i) ck_assert_float_eq(thr[i], hand_s[i - 1]);
  }
  /* AUC: .2*.4 + .2*.8 + .2*.8 + .2*1 + .2*1 = .8 ; EER: (0.2, 0.8) lies on 1-far = tar */
  ck_assert_double_eq_tol(fvl_eval_auc(far, tar, 11), 0.8, 1e-15);
  double et;
  ck_assert_double_eq_tol(fvl_eval_eer(far, tar, thr, 11, &et), 0.2, 1e-15);
  ck_assert_double_eq_tol(et, 0.55, 1e-7); /* reached at threshold 0.55 */
  /* drop_intermediate keeps the corners only: (0,0) (0,.4) (.2,.4) (.2,.8) (.6,.8) (.6,1) (1,1)
   * plus sklearn's always-kept first distinct threshold (0,.2) */
  ck_assert_int_eq(fvl_eval_roc(hand_s, hand_y, 10, 1, far, tar, thr), 8);
  ck_assert_double_eq_tol(tar[1], .2, 1e-15);
  ck_assert_double_eq_tol(far[3], .2, 1e-15);
  ck_assert_double_eq_tol(tar[3], .4, 1e-15);
  ck_assert_double_eq_tol(fvl_eval_auc(far, tar, 8), 0.8, 1e-15);
}
END_TEST

START_TEST(roc_ties_and_eer_interpolated) {
  /* all scores tied: one threshold, the ROC is the diagonal (0,0)-(1,1), AUC 1/2, EER 1/2 */
  float s[4] = {0.3f, 0.3f, 0.3f, 0.3f};
  int32_t y[4] = {1, 0, 1, 0};
  double far[5], tar[5];
  float thr[5];
  ck_assert_int_eq(fvl_eval_roc(s, y, 4, 0, far, tar, thr), 2);
  ck_assert_double_eq(far[1], 1.0);
  ck_assert_double_eq(tar[1], 1.0);
  ck_assert_double_eq_tol(fvl_eval_auc(far, tar, 2), 0.5, 1e-15);
  ck_assert_double_eq_tol(fvl_eval_eer(far, tar, thr, 2, NULL), 0.5, 1e-15);
  /* -0 and +0 are one threshold */
  float z[2] = {-0.0f, 0.0f};
  int32_t zy[2] = {1, 0};
  ck_assert_int_eq(fvl_eval_roc(z, zy, 2, 0, far, tar, thr), 2);
  /* perfect separation: AUC 1, EER 0, TAR@FAR 1 */
  float p[4] = {0.9f, 0.8f, 0.1f, 0.2f};
  int32_t py[4] = {1, 1, 0, 0};
  int64_t m = fvl_eval_roc(p, py, 4, 0, far, tar, thr);
  ck_assert_int_eq(m, 5);
  ck_assert_double_eq(fvl_eval_auc(far, tar, m), 1.0);
  ck_assert_double_eq(fvl_eval_eer(far, tar, thr, m, NULL), 0.0);
}
END_TEST

START_TEST(tar_at_far_support) {
  /* 10 impostors: only FAR 1e-1 is supported; the others are absent (NaN), never made up */
  float s[20];
  int32_t y[20];
  for (int i = 0; i < 20; i++) { s[i] = (float)(20 - i) / 20.0f; y[i] = i < 10 ? (i % 3 != 2) : (i == 12); }
  double far[21], tar[21], t[FVL_EVAL_NFAR];
  int64_t m = fvl_eval_roc(s, y, 20, 0, far, tar, NULL);
  int64_t nimp = 0;
  for (int i = 0; i < 20; i++) nimp += !y[i];
  ck_assert_int_eq(fvl_eval_tar_at_far(far, tar, m, nimp, t), nimp >= 10 ? 1 : 0);
  ck_assert(!isnan(t[0]) || nimp < 10);
  for (int j = 1; j < FVL_EVAL_NFAR; j++) ck_assert(isnan(t[j]));
  /* exactly 1000 impostors supports 1e-3 but not 1e-4 */
  ck_assert_int_eq(fvl_eval_tar_at_far(far, tar, m, 1000, t), 3);
  ck_assert(!isnan(t[2]) && isnan(t[3]));
}
END_TEST

/* ------------------------------------------------------------------ sklearn golden */
static void check_roc_case(const char *buf, const char *name, int full) {
  const char *c = find_case(buf, name);
  int64_t n, ny;
  float *s = arr_f(c, "scores", &n);
  int32_t *y = arr_i(c, "same", &ny);
  ck_assert_int_eq(n, ny);
  double *far = malloc((size_t)(n + 1) * sizeof *far), *tar = malloc((size_t)(n + 1) * sizeof *tar);
  float *thr = malloc((size_t)(n + 1) * sizeof *thr);
  for (int drop = 0; drop <= 1; drop++) {
    if (!drop && !full) continue;
    int64_t ne, nt, nth;
    double *efar = arr(c, drop ? "fpr_drop" : "fpr", &ne);
    double *etar = arr(c, drop ? "tpr_drop" : "tpr", &nt);
    double *ethr = arr(c, drop ? "thresholds_drop" : "thresholds", &nth);
    int64_t m = fvl_eval_roc(s, y, n, drop, far, tar, thr);
    ck_assert_msg(m == ne, "%s drop=%d: %lld ROC points, sklearn has %lld", name, drop,
                  (long long)m, (long long)ne);
    for (int64_t i = 0; i < m; i++) {
      /* identical integer counts divided by the same totals: bit-equal */
      ck_assert_msg(far[i] == efar[i] && tar[i] == etar[i], "%s drop=%d point %lld: (%.17g,%.17g) vs "
                    "sklearn (%.17g,%.17g)", name, drop, (long long)i, far[i], tar[i], efar[i], etar[i]);
      if (i) ck_assert_float_eq(thr[i], (float)ethr[i - 1]);
    }
    ck_assert_double_eq_tol(fvl_eval_auc(far, tar, m), num(c, drop ? "auc_drop" : "auc"), 1e-12);
    free(efar); free(etar); free(ethr);
  }
  ck_assert_int_eq(fvl_eval_roc(s, y, n, 0, NULL, NULL, NULL), (int64_t)num(c, "n_roc"));
  /* the full summary */
  fvl_verif_result r;
  int64_t rn;
  int has_kfold = strstr(c, "\"kfold_acc\"") != NULL && n >= 10;
  int rc = fvl_eval_verification(s, y, n, 10, &r, 0, far, tar, thr, &rn);
  ck_assert_msg(rc == 0, "%s", fvl_errmsg());
  ck_assert_int_eq(rn, (int64_t)num(c, "n_roc"));
  ck_assert_int_eq(r.n_genuine, (int64_t)num(c, "n_genuine"));
  ck_assert_int_eq(r.n_impostor, (int64_t)num(c, "n_impostor"));
  ck_assert_double_eq_tol(r.auc, num(c, "auc"), 1e-12);
  ck_assert_double_eq_tol(r.eer, num(c, "eer"), 1e-12);
  int64_t nf;
  double *etaf = arr(c, "tar_at_far", &nf);
  ck_assert_int_eq(nf, FVL_EVAL_NFAR);
  for (int j = 0; j < FVL_EVAL_NFAR; j++) {
    if (isnan(etaf[j])) ck_assert_msg(isnan(r.tar_at_far[j]), "%s: FAR %g should be absent", name,
                                      fvl_eval_far_targets[j]);
    else ck_assert_double_eq(r.tar_at_far[j], etaf[j]);
  }
  free(etaf);
  if (has_kfold) {
    ck_assert_double_eq_tol(r.accuracy, num(c, "kfold_acc"), 1e-12);
    ck_assert_double_eq_tol(r.std, num(c, "kfold_std"), 1e-12);
    ck_assert_double_eq_tol(r.threshold, num(c, "kfold_thr"), 1e-7);
    int64_t k1, k2;
    double *fa = arr(c, "kfold_fold_acc", &k1), *ft = arr(c, "kfold_fold_thr", &k2);
    ck_assert_int_eq(k1, 10);
    for (int k = 0; k < 10; k++) {
      ck_assert_double_eq_tol(r.fold_acc[k], fa[k], 1e-12);
      ck_assert_float_eq((float)r.fold_thr[k], (float)ft[k]);
    }
    free(fa); free(ft);
    /* VAL@FAR per fold */
    int64_t nv;
    double *ev = arr(c, "val", &nv), *evs = arr(c, "val_std", &nv), *evf = arr(c, "val_far", &nv);
    ck_assert_int_eq(nv, FVL_EVAL_NFAR);
    for (int j = 0; j < FVL_EVAL_NFAR; j++) {
      if (isnan(ev[j])) {
        ck_assert_msg(isnan(r.val[j]), "%s: VAL@%g should be absent", name, fvl_eval_far_targets[j]);
        continue;
      }
      ck_assert_msg(fabs(r.val[j] - ev[j]) < 1e-12, "%s VAL@%g: %.17g vs %.17g", name,
                    fvl_eval_far_targets[j], r.val[j], ev[j]);
      ck_assert_double_eq_tol(r.val_std[j], evs[j], 1e-9);
      ck_assert_double_eq_tol(r.val_far[j], evf[j], 1e-12);
    }
    free(ev); free(evs); free(evf);
  }
  free(s); free(y); free(far); free(tar); free(thr);
}

START_TEST(sklearn_roc_golden) {
  char *buf = slurp(GOLDEN "sklearn_roc.json");
  check_roc_case(buf, "hand", 1);
  check_roc_case(buf, "ties", 1);
  check_roc_case(buf, "large", 1);
  free(buf);
  buf = slurp(GOLDEN "sklearn_lfw.json");
  check_roc_case(buf, "lfw", 0);
  free(buf);
}
END_TEST

START_TEST(kfold_contiguous_folds) {
  /* fold k of 10 is rows [600k, 600k+600): make fold 3 inverted so its held-out accuracy is 0
   * while the others are perfect: mean 0.9, population std 0.3 */
  int n = 6000;
  float *s = malloc(n * sizeof *s);
  int32_t *y = malloc(n * sizeof *y);
  for (int i = 0; i < n; i++) {
    y[i] = i % 2 == 0;
    int inv = i >= 1800 && i < 2400;
    s[i] = (float)((y[i] ^ inv) ? 0.8 : 0.2) + (float)(i % 7) * 1e-3f;
  }
  double mean, sd, thr, acc[10], th[10];
  ck_assert_int_eq(fvl_eval_kfold(s, y, n, 10, &mean, &sd, &thr, acc, th), 0);
  for (int k = 0; k < 10; k++) ck_assert_double_eq(acc[k], k == 3 ? 0.0 : 1.0);
  ck_assert_double_eq_tol(mean, 0.9, 1e-12);
  ck_assert_double_eq_tol(sd, 0.3, 1e-12);
  /* the threshold is the lowest genuine-side training score, not a grid point */
  ck_assert_float_eq((float)th[0], 0.8f);
  /* uneven n: sklearn KFold sizes (first n%K folds one longer) — 13 pairs in 10 folds */
  float s2[13];
  int32_t y2[13];
  for (int i = 0; i < 13; i++) { y2[i] = i % 2; s2[i] = y2[i] ? 1.0f : 0.0f; }
  ck_assert_int_eq(fvl_eval_kfold(s2, y2, 13, 10, &mean, &sd, &thr, acc, th), 0);
  ck_assert_double_eq(mean, 1.0);
  free(s); free(y);
}
END_TEST

/* ------------------------------------------------------------------ errors */
START_TEST(errors_verification) {
  float s[4] = {0.1f, 0.2f, 0.3f, 0.4f};
  int32_t all1[4] = {1, 1, 1, 1}, all0[4] = {0, 0, 0, 0}, bad[4] = {1, 0, 2, 0}, ok[4] = {1, 0, 1, 0};
  double far[5], tar[5];
  ck_assert_int_eq(fvl_eval_roc(s, all1, 4, 0, far, tar, NULL), -1);
  HAS(fvl_errmsg(), "roc: same: expected at least one impostor pair");
  ck_assert_int_eq(fvl_eval_roc(s, all0, 4, 0, far, tar, NULL), -1);
  HAS(fvl_errmsg(), "at least one genuine pair");
  ck_assert_int_eq(fvl_eval_roc(s, bad, 4, 0, far, tar, NULL), -1);
  HAS(fvl_errmsg(), "same[2] = 2 (expected 0 or 1; 0-based)");
  float sn[4] = {0.1f, NAN, 0.3f, 0.4f};
  ck_assert_int_eq(fvl_eval_roc(sn, ok, 4, 0, far, tar, NULL), -1);
  HAS(fvl_errmsg(), "scores[1] = nan is not a finite number (0-based)");
  ck_assert_int_eq(fvl_eval_roc(s, ok, 0, 0, far, tar, NULL), -1);
  HAS(fvl_errmsg(), "expected at least 1 pair, got 0");
  fvl_verif_result r;
  ck_assert_int_eq(fvl_eval_verification(s, ok, 4, 10, &r, 0, NULL, NULL, NULL, NULL), -1);
  HAS(fvl_errmsg(), "verification: folds = 10 needs at least 10 pairs, got 4");
  ck_assert_int_eq(fvl_eval_kfold(s, ok, 4, 1, NULL, NULL, NULL, NULL, NULL), -1);
  HAS(fvl_errmsg(), "folds: expected 2..64, got 1");
}
END_TEST

/* ------------------------------------------------------------------ pairs */
START_TEST(pairs_balanced_seeded) {
  int N = 300, D = 5, np_ = 1000;
  float *e = malloc(N * D * sizeof *e);
  int32_t *l = malloc(N * sizeof *l);
  for (int i = 0; i < N; i++) {
    l[i] = (i * 7) % 13;
    for (int d = 0; d < D; d++) e[i * D + d] = (float)sin(i * 1.3 + d * 0.7) + (d == l[i] % D);
  }
  int32_t *a = malloc(np_ * 4), *b = malloc(np_ * 4), *y = malloc(np_ * 4);
  int32_t *a2 = malloc(np_ * 4), *b2 = malloc(np_ * 4);
  float *sc = malloc(np_ * 4), *sc2 = malloc(np_ * 4);
  ck_assert_int_eq(fvl_eval_make_pairs(e, l, N, D, np_, 7, a, b, y, sc), 0);
  int ngen = 0;
  for (int k = 0; k < np_; k++) {
    ck_assert(a[k] >= 0 && a[k] < N && b[k] >= 0 && b[k] < N);
    ck_assert_int_eq(y[k], k % 2 == 0);
    ngen += y[k];
    if (y[k]) { ck_assert_int_eq(l[a[k]], l[b[k]]); ck_assert_int_ne(a[k], b[k]); }
    else ck_assert_int_ne(l[a[k]], l[b[k]]);
    double dot = 0, na = 0, nb = 0;
    for (int d = 0; d < D; d++) {
      dot += (double)e[a[k] * D + d] * e[b[k] * D + d];
      na += (double)e[a[k] * D + d] * e[a[k] * D + d];
      nb += (double)e[b[k] * D + d] * e[b[k] * D + d];
    }
    ck_assert_double_eq_tol(sc[k], dot / sqrt(na * nb), 1e-6);
  }
  ck_assert_int_eq(ngen, np_ / 2);
  /* same seed: same pairs, whatever the thread count; another seed: other pairs */
  fvl_set_threads(1);
  ck_assert_int_eq(fvl_eval_make_pairs(e, l, N, D, np_, 7, a2, b2, NULL, sc2), 0);
  fvl_set_threads(0);
  ck_assert_int_eq(memcmp(a, a2, np_ * 4), 0);
  ck_assert_int_eq(memcmp(b, b2, np_ * 4), 0);
  ck_assert_int_eq(memcmp(sc, sc2, np_ * 4), 0);
  ck_assert_int_eq(fvl_eval_make_pairs(e, l, N, D, np_, 8, a2, b2, NULL, NULL), 0);
  ck_assert_int_ne(memcmp(a, a2, np_ * 4), 0);
  /* uses every eligible row: each of the 300 rows appears somewhere in 1000 pairs (w.h.p.) */
  int seen[300] = {0};
  for (int k = 0; k < np_; k++) seen[a[k]] = seen[b[k]] = 1;
  int nseen = 0;
  for (int i = 0; i < N; i++) nseen += seen[i];
  ck_assert_int_gt(nseen, 280);
  free(e); free(l); free(a); free(b); free(y); free(a2); free(b2); free(sc); free(sc2);
}
END_TEST

START_TEST(pairs_errors) {
  float e[8] = {1, 0, 0, 1, 1, 1, 0.5f, 0.5f};
  int32_t one[4] = {2, 2, 2, 2}, single[4] = {0, 1, 2, 3}, neg[4] = {0, -1, 0, 1}, ok[4] = {0, 0, 1, 1};
  ck_assert_int_eq(fvl_eval_make_pairs(e, one, 4, 2, 10, 1, NULL, NULL, NULL, NULL), -1);
  HAS(fvl_errmsg(), "pairs: labels: expected at least 2 classes for impostor pairs, got one class only (2, 0-based)");
  ck_assert_int_eq(fvl_eval_make_pairs(e, single, 4, 2, 10, 1, NULL, NULL, NULL, NULL), -1);
  HAS(fvl_errmsg(), "expected a class with at least 2 rows for genuine pairs");
  ck_assert_int_eq(fvl_eval_make_pairs(e, neg, 4, 2, 10, 1, NULL, NULL, NULL, NULL), -1);
  HAS(fvl_errmsg(), "labels[1] = -1 is not a class id (expected >= 0; 0-based)");
  e[5] = NAN;
  ck_assert_int_eq(fvl_eval_make_pairs(e, ok, 4, 2, 10, 1, NULL, NULL, NULL, NULL), -1);
  HAS(fvl_errmsg(), "pairs: emb[2][1] = nan is not a finite number (0-based)");
  e[5] = 1;
  ck_assert_int_eq(fvl_eval_make_pairs(e, ok, 4, 2, 1, 1, NULL, NULL, NULL, NULL), -1);
  HAS(fvl_errmsg(), "n: expected at least 2 pairs, got 1");
}
END_TEST

/* ------------------------------------------------------------------ identification */
static void check_ident_case(const char *buf, const char *name) {
  const char *c = find_case(buf, name);
  int64_t ng, ngl, np_, npl, nk, nr;
  int G = (int)num(c, "G"), P = (int)num(c, "P"), D = (int)num(c, "D");
  int loo = strncmp(find_key(c, "loo"), "true", 4) == 0;
  float *g = arr_f(c, "gallery", &ng), *p = arr_f(c, "probes", &np_);
  int32_t *gl = arr_i(c, "gallery_labels", &ngl), *pl = arr_i(c, "probe_labels", &npl);
  double *eks = arr(c, "ks", &nk), *erk = arr(c, "rank_k", &nr);
  ck_assert_int_eq(ng, (int64_t)G * D);
  int ks[8];
  for (int i = 0; i < nk; i++) ks[i] = (int)eks[i];
  double rk[8];
  fvl_ident_result r;
  int rc = fvl_eval_identification(g, gl, G, loo ? NULL : p, loo ? NULL : pl, P, D, ks, (int)nk, rk, &r);
  ck_assert_msg(rc == 0, "%s", fvl_errmsg());
  ck_assert_int_eq(r.n_queries, (int64_t)num(c, "n_queries"));
  ck_assert_int_eq(r.n_dropped, (int64_t)num(c, "n_dropped"));
  ck_assert_double_eq_tol(r.precision_at_1, num(c, "precision_at_1"), 1e-12);
  ck_assert_double_eq_tol(r.r_precision, num(c, "r_precision"), 1e-12);
  ck_assert_double_eq_tol(r.map_at_r, num(c, "map_at_r"), 1e-12);
  for (int i = 0; i < nk; i++) ck_assert_double_eq_tol(rk[i], erk[i], 1e-12);
  /* one thread gives the same numbers */
  fvl_ident_result r1;
  fvl_set_threads(1);
  ck_assert_int_eq(fvl_eval_identification(g, gl, G, loo ? NULL : p, loo ? NULL : pl, P, D, ks,
                                           (int)nk, rk, &r1), 0);
  fvl_set_threads(0);
  ck_assert_double_eq(r1.map_at_r, r.map_at_r);
  free(g); free(p); free(gl); free(pl); free(eks); free(erk);
}

START_TEST(identification_golden) {
  char *buf = slurp(GOLDEN "sklearn_ident.json");
  check_ident_case(buf, "probes");
  check_ident_case(buf, "loo");
  free(buf);
}
END_TEST

START_TEST(identification_hand) {
  /* gallery: class 0 at angle 0 and 10°, class 1 at 90°; probe of class 0 at 80°:
   * ranking 1(90°, wrong) then 10°, 0° → P@1 = 0, R = 2, top-2 has 1 relevant at rank 2:
   * R-precision 1/2, MAP@R = (1/2)(0 + 1/2) = 1/4, rank-2 hit, rank-1 miss */
  float g[6] = {1, 0, (float)cos(10 * M_PI / 180), (float)sin(10 * M_PI / 180), 0, 1};
  int32_t gl[3] = {0, 0, 1};
  float p[2] = {(float)cos(80 * M_PI / 180), (float)sin(80 * M_PI / 180)};
  int32_t pl[1] = {0};
  int ks[2] = {1, 2};
  double rk[2];
  fvl_ident_result r;
  ck_assert_int_eq(fvl_eval_identification(g, gl, 3, p, pl, 1, 2, ks, 2, rk, &r), 0);
  ck_assert_double_eq(r.precision_at_1, 0);
  ck_assert_double_eq(r.r_precision, 0.5);
  ck_assert_double_eq(r.map_at_r, 0.25);
  ck_assert_double_eq(rk[0], 0);
  ck_assert_double_eq(rk[1], 1);
  /* errors */
  int32_t pl9[1] = {9};
  ck_assert_int_eq(fvl_eval_identification(g, gl, 3, p, pl9, 1, 2, ks, 2, rk, &r), -1);
  HAS(fvl_errmsg(), "identification: probe_labels: no probe has a matching gallery identity");
  p[1] = INFINITY;
  ck_assert_int_eq(fvl_eval_identification(g, gl, 3, p, pl, 1, 2, ks, 2, rk, &r), -1);
  HAS(fvl_errmsg(), "identification: probes[0][1] = inf is not a finite number (0-based)");
  int k0 = 0;
  ck_assert_int_eq(fvl_eval_identification(g, gl, 3, NULL, NULL, 0, 2, &k0, 1, rk, &r), -1);
  HAS(fvl_errmsg(), "k: expected >= 1, got 0");
}
END_TEST

START_TEST(cosine_and_flip) {
  float a[6] = {3, 4, 0, 0, 0, 2}, b[4] = {1, 0, 0, -1};
  float out[6];
  ck_assert_int_eq(fvl_eval_cosine_matrix(a, 3, b, 2, 2, out), 0);
  ck_assert_float_eq_tol(out[0], 0.6f, 1e-6f);
  ck_assert_float_eq_tol(out[1], -0.8f, 1e-6f);
  ck_assert_float_eq_tol(out[2], 0.0f, 1e-6f); /* zero row scores 0 */
  ck_assert_float_eq_tol(out[5], -1.0f, 1e-6f);
  float x[4] = {1, 2, 3, 4}, y[4] = {1, 0, -3, 0}, m[4];
  ck_assert_int_eq(fvl_eval_flip_merge(x, y, 2, 2, m), 0);
  ck_assert_float_eq_tol(m[0], 2 / sqrtf(8), 1e-6f);
  ck_assert_float_eq_tol(m[1], 2 / sqrtf(8), 1e-6f);
  ck_assert_float_eq_tol(m[2], 0, 1e-6f);
  ck_assert_float_eq_tol(m[3], 1, 1e-6f);
  y[1] = NAN;
  ck_assert_int_eq(fvl_eval_flip_merge(x, y, 2, 2, m), -1);
  HAS(fvl_errmsg(), "flip: emb_flipped[0][1] = nan is not a finite number (0-based)");
}
END_TEST

START_TEST(speed_million_pairs) {
  /* one sort serves ROC, EER, TAR@FAR and 10 folds: a million pairs well under a second */
  int64_t n = 1000000;
  float *s = malloc(n * sizeof *s);
  int32_t *y = malloc(n * sizeof *y);
  uint64_t st = 12345;
  for (int64_t i = 0; i < n; i++) {
    st = st * 6364136223846793005ULL + 1442695040888963407ULL;
    y[i] = (st >> 60) < 2;
    s[i] = (float)((st >> 11) & 0xFFFFF) / (float)0xFFFFF + (y[i] ? 0.3f : 0.0f);
  }
  fvl_verif_result r;
  /* CPU time: the bound must hold on a loaded machine (the work is single-threaded) */
  clock_t t0 = clock();
  ck_assert_int_eq(fvl_eval_verification(s, y, n, 10, &r, 0, NULL, NULL, NULL, NULL), 0);
  double dt = (double)(clock() - t0) / CLOCKS_PER_SEC;
  printf("verification of %lld pairs: %.3f s CPU (acc %.4f, auc %.4f, eer %.4f, TAR@1e-5 %.4f)\n",
         (long long)n, dt, r.accuracy, r.auc, r.eer, r.tar_at_far[4]);
  ck_assert(!isnan(r.tar_at_far[4]) && isnan(r.tar_at_far[5]));
#ifndef FVL_SANITIZE
  ck_assert_msg(dt < 1.5, "verification of 1e6 pairs took %.2f s", dt);
#endif
  free(s); free(y);
}
END_TEST

int main(void) {
  Suite *s = suite_create("eval");
  TCase *roc = tcase_create("roc");
  tcase_set_timeout(roc, 60);
  tcase_add_test(roc, roc_hand);
  tcase_add_test(roc, roc_ties_and_eer_interpolated);
  tcase_add_test(roc, tar_at_far_support);
  tcase_add_test(roc, sklearn_roc_golden);
  tcase_add_test(roc, kfold_contiguous_folds);
  tcase_add_test(roc, errors_verification);
  tcase_add_test(roc, speed_million_pairs);
  suite_add_tcase(s, roc);
  TCase *pairs = tcase_create("pairs");
  tcase_add_test(pairs, pairs_balanced_seeded);
  tcase_add_test(pairs, pairs_errors);
  suite_add_tcase(s, pairs);
  TCase *id = tcase_create("identification");
  tcase_set_timeout(id, 60);
  tcase_add_test(id, identification_golden);
  tcase_add_test(id, identification_hand);
  tcase_add_test(id, cosine_and_flip);
  suite_add_tcase(s, id);
  return fvl_check_run(s);
}
