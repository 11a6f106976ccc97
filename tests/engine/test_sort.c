/* test_sort.c — fvl_argsort: a permutation along dim, ordered, stable, NaN largest, exact int32. */
#include <check.h>
#include "fvl_check.h"
#include <math.h>
#include <stdlib.h>
#include "tensor.h"
#include "sort.h"

static float at3(const fvl_tensor *t, int64_t i, int64_t j, int64_t k) {
  return fvl_f32(t)[i * t->stride[0] + j * t->stride[1] + k * t->stride[2]];
}

/* every (dim, direction) of a 3-D tensor with many ties: a permutation, ordered, ties stable */
START_TEST(argsort_3d_every_dim) {
  int64_t sz[3] = {3, 5, 7};
  fvl_tensor *t = fvl_empty(FVL_F32, 3, sz);
  for (int64_t e = 0; e < 105; e++) fvl_f32(t)[e] = (float)((e * 37) % 11) - 5.0f;
  for (int dim = 0; dim < 3; dim++)
    for (int desc = 0; desc <= 1; desc++) {
      fvl_tensor *ix = fvl_argsort(t, dim, desc);
      ck_assert_ptr_nonnull(ix);
      ck_assert_int_eq(ix->dtype, FVL_I32);
      const int32_t *p = fvl_i32(ix);
      for (int64_t i = 0; i < 3; i++) for (int64_t j = 0; j < 5; j++) for (int64_t k = 0; k < 7; k++) {
        int64_t c[3] = {i, j, k};
        if (c[dim] != 0) continue;
        int seen[7] = {0};
        float prev = 0; int32_t prev_ix = -1;
        for (int64_t r = 0; r < sz[dim]; r++) {
          c[dim] = r;
          int32_t q = p[c[0] * 35 + c[1] * 7 + c[2]];
          ck_assert(q >= 0 && q < sz[dim] && !seen[q]);
          seen[q] = 1;
          int64_t s[3] = {c[0], c[1], c[2]};
          s[dim] = q;
          float v = at3(t, s[0], s[1], s[2]);
          if (r > 0) {
            ck_assert_msg(desc ? v <= prev : v >= prev, "dim %d desc %d not ordered", dim, desc);
            if (v == prev) ck_assert_msg(q > prev_ix, "dim %d desc %d not stable", dim, desc);
          }
          prev = v; prev_ix = q;
        }
      }
      fvl_release(ix);
    }
  /* a transposed (non-contiguous) view sorts the same as its contiguous copy */
  fvl_tensor *tt = fvl_transpose(t, 0, 2), *tc = fvl_contiguous(tt);
  fvl_tensor *a = fvl_argsort(tt, 1, 0), *b = fvl_argsort(tc, 1, 0);
  for (int64_t e = 0; e < 105; e++) ck_assert_int_eq(fvl_i32(a)[e], fvl_i32(b)[e]);
  fvl_release(a); fvl_release(b); fvl_release(tc); fvl_release(tt); fvl_release(t);
}
END_TEST

START_TEST(argsort_nan_int32_edges) {
  float v[5] = {1.0f, NAN, -INFINITY, 1.0f, INFINITY};
  int64_t n = 5;
  fvl_tensor *t = fvl_from_data(FVL_F32, 1, &n, v);
  fvl_tensor *up = fvl_argsort(t, 0, 0), *down = fvl_argsort(t, 0, 1);
  int32_t eu[5] = {2, 0, 3, 4, 1}, ed[5] = {1, 4, 0, 3, 2};
  for (int i = 0; i < 5; i++) {
    ck_assert_int_eq(fvl_i32(up)[i], eu[i]);
    ck_assert_int_eq(fvl_i32(down)[i], ed[i]);
  }
  fvl_release(up); fvl_release(down); fvl_release(t);
  /* int32 extremes compare exactly (16777217 and 16777216 are one float) */
  int32_t w[5] = {16777217, INT32_MIN, INT32_MAX, 16777216, -1};
  fvl_tensor *u = fvl_from_data(FVL_I32, 1, &n, w);
  fvl_tensor *iu = fvl_argsort(u, 0, 0), *id = fvl_argsort(u, 0, 1);
  int32_t fu[5] = {1, 4, 3, 0, 2}, fd[5] = {2, 0, 3, 4, 1};
  for (int i = 0; i < 5; i++) {
    ck_assert_int_eq(fvl_i32(iu)[i], fu[i]);
    ck_assert_int_eq(fvl_i32(id)[i], fd[i]);
  }
  fvl_release(iu); fvl_release(id);
  ck_assert_ptr_null(fvl_argsort(u, 1, 0));
  ck_assert_str_eq(fvl_errmsg(), "argsort: dim 1 is outside 0..0 (0-based)");
  fvl_release(u);
  int64_t z[2] = {3, 0};
  fvl_tensor *e = fvl_zeros(FVL_F32, 2, z), *ie = fvl_argsort(e, 1, 0);
  ck_assert_ptr_nonnull(ie);
  ck_assert_int_eq(ie->size[0], 3);
  ck_assert_int_eq(ie->size[1], 0);
  fvl_release(ie); fvl_release(e);
}
END_TEST

/* fvl_first_repeat: the earliest repeated position (and the first position of its pointer), in
 * O(n log n); fvl_sort_ptrs: address order, ties by position */
START_TEST(first_repeat_and_sort_ptrs) {
  enum { N = 100000 };
  static int cells[N];
  static const void *p[N];
  for (int i = 0; i < N; i++) p[i] = &cells[(i * 7919) % N];   /* 7919 is prime: a permutation */
  int64_t earlier = -5;
  ck_assert_int_eq(fvl_first_repeat(p, N, &earlier), -1);
  ck_assert_int_eq(earlier, -5);
  p[90000] = p[10];          /* two repeats: the earlier one (position 60000) is reported */
  p[60000] = p[40000];
  p[70000] = p[40000];
  ck_assert_int_eq(fvl_first_repeat(p, N, &earlier), 60000);
  ck_assert_int_eq(earlier, 40000);
  ck_assert_int_eq(fvl_first_repeat(p, 1, &earlier), -1);
  ck_assert_int_eq(fvl_first_repeat(p, 0, NULL), -1);
  const void *q[4] = {&cells[3], &cells[1], &cells[3], &cells[0]};
  fvl_ptr_pos s[4];
  fvl_sort_ptrs(q, 4, s);
  int64_t want[4] = {3, 1, 0, 2};
  for (int i = 0; i < 4; i++) ck_assert_int_eq(s[i].idx, want[i]);
}
END_TEST

int main(void) {
  Suite *s = suite_create("sort");
  TCase *tc = tcase_create("sort");
  tcase_add_test(tc, argsort_3d_every_dim);
  tcase_add_test(tc, argsort_nan_int32_edges);
  tcase_add_test(tc, first_repeat_and_sort_ptrs);
  suite_add_tcase(s, tc);
  return fvl_check_run(s);
}
