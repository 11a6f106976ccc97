/* test_cluster.c — engine/cluster.c and engine/megaface.c from C: the expected mutual
 * information against hand-worked values, NMI/AMI limits, k-means invariants and every engine
 * check (the Lua specs cover the scikit-learn golden values and the protocol). */
#include <check.h>
#include "fvl_check.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cluster.h"
#include "core.h"
#include "megaface.h"

/* E[I] by hand: N = 4, rows (2, 2), columns (2, 2). For one cell with a = b = 2, n_ij is 0, 1 or 2
 * with hypergeometric probabilities 1/6, 4/6, 1/6; the n = 1 term is (1/4)·log(4·1/4) = 0 and the
 * n = 2 term (2/4)·log(4·2/4) = log(2)/2, so each cell gives (1/6)·log(2)/2 and the four cells
 * log(2)/3 — scikit-learn's 0.231049060186648 (tests/golden/sklearn_cluster.json). */
START_TEST(emi_by_hand) {
  int64_t r[2] = {2, 2}, c[2] = {2, 2};
  ck_assert_double_eq_tol(fvl_expected_mutual_info(r, 2, c, 2, 4), log(2.0) / 3, 1e-15);
  /* one row holding everything: every term has n_ij = b_j and log(N·b / (N·b)) = 0 */
  int64_t one[1] = {6}, cols[3] = {1, 2, 3};
  ck_assert_double_eq_tol(fvl_expected_mutual_info(one, 1, cols, 3, 6), 0, 1e-15);
  /* large N: finite, non-negative and the same for the transposed marginals */
  int64_t big_r[3] = {300000, 300000, 400000}, big_c[2] = {500000, 500000};
  double e1 = fvl_expected_mutual_info(big_r, 3, big_c, 2, 1000000);
  double e2 = fvl_expected_mutual_info(big_c, 2, big_r, 3, 1000000);
  ck_assert(isfinite(e1) && e1 >= 0 && e1 < 1e-5);
  ck_assert_double_eq_tol(e1, e2, 1e-18);
}
END_TEST

START_TEST(nmi_ami_limits) {
  fvl_mi_result r;
  int32_t a[4] = {0, 0, 1, 1}, b[4] = {5, 5, 9, 9}, c[4] = {3, 3, 3, 3}, d[4] = {0, 1, 0, 1};
  ck_assert_int_eq(fvl_mutual_info(a, b, 4, 1, &r), 0);
  ck_assert_double_eq_tol(r.nmi, 1, 1e-15);
  ck_assert_double_eq_tol(r.ami, 1, 1e-15);
  ck_assert_int_eq(r.ka, 2);
  ck_assert_int_eq(fvl_mutual_info(c, c, 4, 1, &r), 0);   /* one cluster each: 1 */
  ck_assert(r.nmi == 1 && r.ami == 1);
  ck_assert_int_eq(fvl_mutual_info(a, d, 4, 1, &r), 0);   /* independent: I = 0 */
  ck_assert(r.mi == 0 && r.nmi == 0);
  ck_assert_double_eq_tol(r.ami, -0.5, 1e-12);           /* (0 - log2/3) / (log2 - log2/3) */
  ck_assert_int_eq(fvl_mutual_info(a, d, 4, 0, &r), 0);   /* no expectation asked */
  ck_assert(isnan(r.emi) && isnan(r.ami));
  ck_assert_int_eq(fvl_mutual_info(a, d, 0, 1, &r), -1);
  ck_assert(strstr(fvl_errmsg(), "mutual_info: expected at least 1") != NULL);
}
END_TEST

START_TEST(kmeans_invariants_and_checks) {
  /* two groups on a line: {0, 1, 2} and {10, 11, 12} */
  float x[6] = {0, 1, 2, 10, 11, 12};
  int32_t assign[6];
  float centres[2];
  double inertia;
  int it;
  fvl_kmeans_opts o = {3, 300, 1e-4, 7, FVL_KMEANS_PLUSPLUS};
  ck_assert_int_eq(fvl_kmeans(x, 6, 1, 2, &o, assign, centres, &inertia, &it), 0);
  ck_assert_int_eq(assign[0], assign[2]);
  ck_assert_int_eq(assign[3], assign[5]);
  ck_assert_int_ne(assign[0], assign[3]);
  ck_assert_float_eq_tol(centres[assign[0]], 1.0f, 1e-6f);
  ck_assert_float_eq_tol(centres[assign[3]], 11.0f, 1e-6f);
  ck_assert_double_eq_tol(inertia, 4.0, 1e-9);
  o.init = FVL_KMEANS_RANDOM;
  ck_assert_int_eq(fvl_kmeans(x, 6, 1, 2, &o, assign, centres, &inertia, NULL), 0);
  ck_assert_double_eq_tol(inertia, 4.0, 1e-9);
  /* checks: k outside 1..n, bad options, non-finite values */
  ck_assert_int_eq(fvl_kmeans(x, 6, 1, 7, &o, assign, centres, NULL, NULL), -1);
  ck_assert(strstr(fvl_errmsg(), "kmeans: k = 7 clusters for 6 rows") != NULL);
  fvl_kmeans_opts bad = {0, 300, 1e-4, 1, 0};
  ck_assert_int_eq(fvl_kmeans(x, 6, 1, 2, &bad, assign, centres, NULL, NULL), -1);
  x[4] = NAN;
  ck_assert_int_eq(fvl_kmeans(x, 6, 1, 2, &o, assign, centres, NULL, NULL), -1);
  ck_assert(strstr(fvl_errmsg(), "x[4][0] = nan") != NULL);
}
END_TEST

START_TEST(megaface_file_and_checks) {
  char path[64];
  snprintf(path, sizeof path, "/tmp/fvl_test_cluster_%d.bin", (int)getpid());
  float v[3] = {1.5f, -2.0f, 0.25f}, *back = NULL;
  int64_t d = 0;
  ck_assert_int_eq(fvl_megaface_write(path, v, 3), 0);
  ck_assert_int_eq(fvl_megaface_read(path, &back, &d), 0);
  ck_assert_int_eq(d, 3);
  ck_assert(memcmp(back, v, sizeof v) == 0);
  free(back);
  unlink(path);
  ck_assert_int_eq(fvl_megaface_read(path, &back, &d), -1);
  ck_assert(strstr(fvl_errmsg(), "cannot open") != NULL);
  /* probes {0, 0} vs one distractor: the mate at cosine 1 is the nearest */
  float p[4] = {1, 0, 1, 0}, dis[2] = {0, 1};
  int32_t pl[2] = {0, 0};
  fvl_megaface_opts o = {1, {1}, 0, 0};
  fvl_megaface_result r;
  ck_assert_int_eq(fvl_megaface_eval(p, pl, 2, dis, 1, 2, &o, &r), 0);
  ck_assert_int_eq(r.n_pairs, 2);
  ck_assert_double_eq(r.rank[0], 1.0);
  ck_assert(isnan(r.tar));
  o.ks[0] = 0;
  ck_assert_int_eq(fvl_megaface_eval(p, pl, 2, dis, 1, 2, &o, &r), -1);
  pl[1] = -1;
  o.ks[0] = 1;
  ck_assert_int_eq(fvl_megaface_eval(p, pl, 2, dis, 1, 2, &o, &r), -1);
  ck_assert(strstr(fvl_errmsg(), "probe label 1 = -1 is negative (0-based)") != NULL);
}
END_TEST

int main(void) {
  Suite *s = suite_create("cluster");
  TCase *tc = tcase_create("core");
  tcase_add_test(tc, emi_by_hand);
  tcase_add_test(tc, nmi_ami_limits);
  tcase_add_test(tc, kmeans_invariants_and_checks);
  tcase_add_test(tc, megaface_file_and_checks);
  suite_add_tcase(s, tc);
  return fvl_check_run(s);
}
