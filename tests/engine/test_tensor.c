/* test_tensor.c — tensors without autograd: creation, views and their shared storage,
 * elementwise ops against hand-computed values, broadcasting over every shape combination,
 * reductions, normalisation, GEMM against a naive loop (transposed views passed as flags),
 * indexing, cat, and that every byte is given back. */
#include <check.h>
#include "fvl_check.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core.h"
#include "rng.h"
#include "tensor.h"
#include "autograd.h"

/* ---------------------------------------------------------------- helpers */
static size_t live0;
static void setup(void) { live0 = fvl_bytes_live(); }
static void teardown(void) {
  ck_assert_msg(fvl_bytes_live() == live0, "leak: %zu bytes live after the test, %zu before",
                fvl_bytes_live(), live0);
}

static fvl_tensor *mk(int nd, const int64_t *sz, const float *v) {
  fvl_tensor *t = fvl_from_data(FVL_F32, nd, sz, v);
  ck_assert_ptr_nonnull(t);
  return t;
}
#define MK1(n, ...) mk(1, (int64_t[]){n}, (float[]){__VA_ARGS__})
#define MK2(r, c, ...) mk(2, (int64_t[]){r, c}, (float[]){__VA_ARGS__})
#define SHAPE(...) (int64_t[]){__VA_ARGS__}

/* element k (row-major over the logical shape) of any view */
static double at(const fvl_tensor *t, int64_t k) {
  int64_t idx[FVL_MAXDIM];
  for (int d = t->ndim - 1; d >= 0; d--) { idx[d] = k % t->size[d]; k /= t->size[d]; }
  return fvl_get(t, idx);
}
static void expect_shape(const fvl_tensor *t, int nd, const int64_t *sz) {
  ck_assert_ptr_nonnull(t);
  ck_assert_msg(t->ndim == nd, "ndim %d, expected %d", t->ndim, nd);
  for (int d = 0; d < nd; d++)
    ck_assert_msg(t->size[d] == sz[d], "size[%d] = %lld, expected %lld", d, (long long)t->size[d], (long long)sz[d]);
}
static void expect_vals(const char *what, const fvl_tensor *t, const double *e, int64_t n, double tol) {
  ck_assert_ptr_nonnull(t);
  ck_assert_msg(fvl_numel(t) == n, "%s: %lld elements, expected %lld", what, (long long)fvl_numel(t), (long long)n);
  for (int64_t k = 0; k < n; k++) {
    double a = at(t, k);
    int ok = (isnan(e[k]) && isnan(a)) || a == e[k] || fabs(a - e[k]) <= tol * (1 + fabs(e[k]));
    ck_assert_msg(ok, "%s[%lld] = %.9g, expected %.9g", what, (long long)k, a, e[k]);
  }
}
#define EXPECT(what, t, tol, ...) do { double _e[] = {__VA_ARGS__}; \
  expect_vals(what, t, _e, (int64_t)(sizeof _e / sizeof _e[0]), tol); } while (0)
static void expect_err(const void *r, const char *part) {
  ck_assert_msg(r == NULL, "expected an error containing '%s'", part);
  ck_assert_msg(strstr(fvl_errmsg(), part) != NULL, "expected '%s' in: %s", part, fvl_errmsg());
}
#define R(x) fvl_release(x)

/* ---------------------------------------------------------------- creation */
START_TEST(creation) {
  fvl_tensor *z = fvl_zeros(FVL_F32, 2, SHAPE(2, 3));
  expect_shape(z, 2, SHAPE(2, 3));
  ck_assert(fvl_is_contiguous(z));
  ck_assert_int_eq(z->stride[0], 3);
  ck_assert_int_eq(z->stride[1], 1);
  EXPECT("zeros", z, 0, 0, 0, 0, 0, 0, 0);
  fvl_tensor *f = fvl_full(FVL_I32, 1, SHAPE(3), 7.9);
  ck_assert_int_eq(f->dtype, FVL_I32);
  EXPECT("full int32 truncates", f, 0, 7, 7, 7);
  fvl_tensor *s = fvl_scalar(2.5f);
  ck_assert_int_eq(s->ndim, 0);
  ck_assert_int_eq(fvl_numel(s), 1);
  EXPECT("scalar", s, 0, 2.5);
  fvl_tensor *a = fvl_arange(FVL_F32, 1, 5, 1);
  EXPECT("arange 1..5 inclusive", a, 0, 1, 2, 3, 4, 5);
  fvl_tensor *b = fvl_arange(FVL_F32, 0, 1, 0.25);
  EXPECT("arange step 0.25", b, 0, 0, 0.25, 0.5, 0.75, 1);
  fvl_tensor *c = fvl_arange(FVL_I32, 5, 1, -2);
  EXPECT("arange down", c, 0, 5, 3, 1);
  fvl_tensor *e = fvl_arange(FVL_F32, 3, 1, 1);
  ck_assert_int_eq(fvl_numel(e), 0);
  expect_err(fvl_arange(FVL_F32, 0, 1, 0), "arange");
  expect_err(fvl_empty(FVL_F32, 2, SHAPE(2, -1)), "negative");
  expect_err(fvl_empty(FVL_F32, FVL_MAXDIM + 1, SHAPE(1, 1, 1, 1, 1, 1, 1)), "dimensions");
  fvl_tensor *emp = fvl_zeros(FVL_F32, 2, SHAPE(0, 4));
  ck_assert_int_eq(fvl_numel(emp), 0);
  fvl_tensor *zl = fvl_zeros_like(f);
  ck_assert_int_eq(zl->dtype, FVL_I32);
  EXPECT("zeros_like", zl, 0, 0, 0, 0);
  char buf[64];
  ck_assert_str_eq(fvl_shape_str(z, buf, sizeof buf), "2x3");
  ck_assert_str_eq(fvl_dtype_name(FVL_I32), "int32");
  ck_assert_str_eq(fvl_dtype_name(FVL_F32), "float32");
  R(z); R(f); R(s); R(a); R(b); R(c); R(e); R(emp); R(zl);
}
END_TEST

/* ---------------------------------------------------------------- views */
START_TEST(views_transpose_narrow_select) {
  fvl_tensor *a = fvl_arange(FVL_F32, 0, 23, 1);
  fvl_tensor *m = fvl_reshape(a, 3, SHAPE(2, 3, 4));
  ck_assert_ptr_eq(m->st, a->st);                    /* reshape of contiguous: a view */
  fvl_tensor *t = fvl_transpose(m, 0, 2);            /* 4x3x2 */
  expect_shape(t, 3, SHAPE(4, 3, 2));
  ck_assert_ptr_eq(t->st, a->st);
  ck_assert_int_eq(t->stride[0], 1);
  ck_assert_int_eq(t->stride[1], 4);
  ck_assert_int_eq(t->stride[2], 12);
  ck_assert(!fvl_is_contiguous(t));
  ck_assert_double_eq(fvl_get(t, SHAPE(3, 2, 1)), 1 * 12 + 2 * 4 + 3);
  /* narrow: rows 2..3 of dim 2 (0-based start 1, len 2) */
  fvl_tensor *n = fvl_narrow(m, 1, 1, 2);
  expect_shape(n, 3, SHAPE(2, 2, 4));
  ck_assert_int_eq(n->offset, 4);
  ck_assert_ptr_eq(n->st, a->st);
  EXPECT("narrow", n, 0, 4, 5, 6, 7, 8, 9, 10, 11, 16, 17, 18, 19, 20, 21, 22, 23);
  /* select drops the dim */
  fvl_tensor *s = fvl_select(m, 2, 3);
  expect_shape(s, 2, SHAPE(2, 3));
  EXPECT("select", s, 0, 3, 7, 11, 15, 19, 23);
  ck_assert_int_eq(s->stride[0], 12);
  ck_assert_int_eq(s->stride[1], 4);
  /* writes through any view land in the shared storage */
  fvl_set(s, SHAPE(1, 2), -1);
  ck_assert_float_eq(fvl_f32(a)[23], -1);
  ck_assert_double_eq(fvl_get(t, SHAPE(3, 2, 1)), -1);
  ck_assert_int_eq(fvl_fill_(n, 9), 0);          /* fill only the narrowed part */
  ck_assert_float_eq(fvl_f32(a)[3], 3);
  ck_assert_float_eq(fvl_f32(a)[4], 9);
  ck_assert_float_eq(fvl_f32(a)[12], 12);
  ck_assert_float_eq(fvl_f32(a)[16], 9);
  /* a view keeps the storage alive after the base is released */
  R(a); R(m);
  ck_assert_double_eq(fvl_get(t, SHAPE(0, 0, 0)), 0);
  ck_assert_int_eq(t->st->refs, 3);
  /* narrow of a transpose, select of a narrow */
  fvl_tensor *tn = fvl_narrow(t, 0, 2, 2);     /* last dim 3..4 of m */
  fvl_tensor *sn = fvl_select(tn, 1, 0);       /* m[:, 0, 2:4] transposed: 2x2 */
  EXPECT("select of narrow of transpose", sn, 0, 2, 14, 3, 15);
  /* bad arguments */
  expect_err(fvl_narrow(t, 0, 3, 2), "narrow");
  expect_err(fvl_narrow(t, 5, 0, 1), "narrow: dim 5 is outside 0..2 (0-based)");
  expect_err(fvl_select(t, 1, 3), "select: index 3 is outside 0..2 of dim 1 (0-based)");
  expect_err(fvl_transpose(t, 0, 3), "transpose");
  R(t); R(n); R(s); R(tn); R(sn);
}
END_TEST

START_TEST(views_reshape_contiguous_clone) {
  fvl_tensor *a = MK2(2, 3, 1, 2, 3, 4, 5, 6);
  fvl_tensor *r = fvl_reshape(a, 2, SHAPE(3, -1));
  expect_shape(r, 2, SHAPE(3, 2));
  ck_assert_ptr_eq(r->st, a->st);
  EXPECT("reshape", r, 0, 1, 2, 3, 4, 5, 6);
  fvl_tensor *nr = fvl_narrow(r, 0, 0, 1);
  ck_assert_ptr_null(fvl_reshape(nr, 0, NULL));  /* 2 elements cannot be a scalar */
  R(nr);
  ck_assert_ptr_nonnull(strstr(fvl_errmsg(), "reshape"));
  expect_err(fvl_reshape(a, 2, SHAPE(4, -1)), "reshape: cannot view 2x3");
  expect_err(fvl_reshape(a, 2, SHAPE(-1, -1)), "only one");
  /* reshape of a non-contiguous view copies and keeps the logical order */
  fvl_tensor *t = fvl_transpose(a, 0, 1);      /* 3x2: 1 4 / 2 5 / 3 6 */
  fvl_tensor *rt = fvl_reshape(t, 1, SHAPE(6));
  ck_assert_ptr_ne(rt->st, a->st);
  EXPECT("reshape of transpose", rt, 0, 1, 4, 2, 5, 3, 6);
  /* contiguous: same tensor when already contiguous, a copy otherwise */
  fvl_tensor *c1 = fvl_contiguous(a);
  ck_assert_ptr_eq(c1, a);
  fvl_tensor *c2 = fvl_contiguous(t);
  ck_assert_ptr_ne(c2->st, a->st);
  ck_assert(fvl_is_contiguous(c2));
  EXPECT("contiguous of transpose", c2, 0, 1, 4, 2, 5, 3, 6);
  /* clone is independent, detach shares */
  fvl_tensor *cl = fvl_clone(a), *dt = fvl_detach(a);
  fvl_set(cl, SHAPE(0, 0), 100);
  fvl_set(dt, SHAPE(0, 1), 200);
  ck_assert_float_eq(fvl_f32(a)[0], 1);
  ck_assert_float_eq(fvl_f32(a)[1], 200);
  /* unsqueeze */
  fvl_tensor *u = fvl_unsqueeze(a, 1);
  expect_shape(u, 3, SHAPE(2, 1, 3));
  fvl_tensor *u2 = fvl_unsqueeze(a, 2);
  expect_shape(u2, 3, SHAPE(2, 3, 1));
  expect_err(fvl_unsqueeze(a, 4), "unsqueeze");
  /* size-1 dims do not break contiguity */
  fvl_tensor *one = fvl_zeros(FVL_F32, 3, SHAPE(1, 4, 1));
  one->stride[0] = 99; one->stride[2] = 7;
  ck_assert(fvl_is_contiguous(one));
  /* dtype conversion */
  fvl_tensor *fx = MK1(4, -1.5f, -0.5f, 0.5f, 2.7f);
  fvl_tensor *ix = fvl_to_dtype(fx, FVL_I32);
  ck_assert_int_eq(ix->dtype, FVL_I32);
  EXPECT("float → int truncates toward zero", ix, 0, -1, 0, 0, 2);
  fvl_tensor *same = fvl_to_dtype(fx, FVL_F32);
  ck_assert_ptr_eq(same, fx);
  R(a); R(r); R(t); R(rt); R(c1); R(c2); R(cl); R(dt); R(u); R(u2); R(one); R(fx); R(ix); R(same);
}
END_TEST

START_TEST(copy_and_fill) {
  fvl_tensor *d = fvl_zeros(FVL_F32, 2, SHAPE(2, 3));
  fvl_tensor *row = MK1(3, 1, 2, 3);
  ck_assert_int_eq(fvl_copy_(d, row), 0);           /* broadcast a row */
  EXPECT("copy broadcast row", d, 0, 1, 2, 3, 1, 2, 3);
  fvl_tensor *col = MK2(2, 1, 10, 20);
  ck_assert_int_eq(fvl_copy_(d, col), 0);
  EXPECT("copy broadcast column", d, 0, 10, 10, 10, 20, 20, 20);
  fvl_tensor *bad = MK1(2, 1, 2);
  ck_assert_int_eq(fvl_copy_(d, bad), -1);
  ck_assert_ptr_nonnull(strstr(fvl_errmsg(), "copy: cannot broadcast 2 to 2x3"));
  /* copy into a transposed view, from an int32 tensor */
  fvl_tensor *dt = fvl_transpose(d, 0, 1);
  fvl_tensor *src = fvl_arange(FVL_I32, 1, 6, 1);
  fvl_tensor *src2 = fvl_reshape(src, 2, SHAPE(3, 2));
  ck_assert_int_eq(fvl_copy_(dt, src2), 0);
  EXPECT("copy into transpose", d, 0, 1, 3, 5, 2, 4, 6);
  /* fill int32 and a strided view */
  fvl_tensor *i = fvl_zeros(FVL_I32, 2, SHAPE(2, 2));
  fvl_tensor *ic = fvl_select(i, 1, 1);
  ck_assert_int_eq(fvl_fill_(ic, -3), 0);
  EXPECT("fill column", i, 0, 0, -3, 0, -3);
  R(d); R(row); R(col); R(bad); R(dt); R(src); R(src2); R(i); R(ic);
}
END_TEST

/* ---------------------------------------------------------------- elementwise */
START_TEST(binary_hand_values) {
  fvl_tensor *a = MK2(2, 2, 1, -2, 3, 0.5f), *b = MK2(2, 2, 4, 2, -1, 0.25f);
  fvl_tensor *r;
  r = fvl_binary(FVL_ADD, a, b); EXPECT("add", r, 0, 5, 0, 2, 0.75); R(r);
  r = fvl_binary(FVL_SUB, a, b); EXPECT("sub", r, 0, -3, -4, 4, 0.25); R(r);
  r = fvl_binary(FVL_MUL, a, b); EXPECT("mul", r, 0, 4, -4, -3, 0.125); R(r);
  r = fvl_binary(FVL_DIV, a, b); EXPECT("div", r, 0, 0.25, -1, -3, 2); R(r);
  r = fvl_binary(FVL_POW, b, a); EXPECT("pow", r, 1e-6, 4, 0.25, -1, 0.5); R(r);
  r = fvl_binary(FVL_MAX2, a, b); EXPECT("maximum", r, 0, 4, 2, 3, 0.5); R(r);
  r = fvl_binary(FVL_MIN2, a, b); EXPECT("minimum", r, 0, 1, -2, -1, 0.25); R(r);
  /* scalar forms, both orders */
  r = fvl_binary_scalar(FVL_SUB, a, 1, 0); EXPECT("a - 1", r, 0, 0, -3, 2, -0.5); R(r);
  r = fvl_binary_scalar(FVL_SUB, a, 1, 1); EXPECT("1 - a", r, 0, 0, 3, -2, 0.5); R(r);
  r = fvl_binary_scalar(FVL_DIV, a, 2, 0); EXPECT("a / 2", r, 0, 0.5, -1, 1.5, 0.25); R(r);
  r = fvl_binary_scalar(FVL_DIV, a, 2, 1); EXPECT("2 / a", r, 1e-7, 2, -1, 2.0 / 3, 4); R(r);
  r = fvl_binary_scalar(FVL_POW, a, 2, 0); EXPECT("a ^ 2", r, 0, 1, 4, 9, 0.25); R(r);
  r = fvl_binary_scalar(FVL_POW, a, 2, 1); EXPECT("2 ^ a", r, 1e-6, 2, 0.25, 8, sqrt(2)); R(r);
  r = fvl_binary_scalar(FVL_MAX2, a, 0.75, 0); EXPECT("max(a, .75)", r, 0, 1, 0.75, 3, 0.75); R(r);
  r = fvl_binary_scalar(FVL_MIN2, a, 0.75, 1); EXPECT("min(.75, a)", r, 0, 0.75, -2, 0.75, 0.5); R(r);
  r = fvl_binary_scalar(FVL_MUL, a, -2, 0); EXPECT("a * -2", r, 0, -2, 4, -6, -1); R(r);
  /* division by zero follows IEEE, no trap */
  fvl_tensor *z = MK1(3, 1, -1, 0), *zz = MK1(3, 0, 0, 0);
  r = fvl_binary(FVL_DIV, z, zz);
  ck_assert(isinf(at(r, 0)) && at(r, 0) > 0 && isinf(at(r, 1)) && at(r, 1) < 0 && isnan(at(r, 2)));
  R(r);
  /* int32 operands are promoted to float32 */
  fvl_tensor *i = fvl_arange(FVL_I32, 1, 4, 1);
  fvl_tensor *h = MK1(4, 0.5f, 0.5f, 0.5f, 0.5f);
  r = fvl_binary(FVL_MUL, i, h);
  ck_assert_int_eq(r->dtype, FVL_F32);
  EXPECT("int32 * float32", r, 0, 0.5, 1, 1.5, 2);
  R(r);
  r = fvl_binary_scalar(FVL_DIV, i, 2, 0);
  ck_assert_int_eq(r->dtype, FVL_F32);
  EXPECT("int32 / 2 is a float division", r, 0, 0.5, 1, 1.5, 2);
  R(r);
  R(a); R(b); R(z); R(zz); R(i); R(h);
}
END_TEST

START_TEST(unary_hand_values) {
  const float xs[] = {0.25f, 0.5f, 0.9f, 2.0f};
  fvl_tensor *x = MK1(4, xs[0], xs[1], xs[2], xs[3]);
  fvl_tensor *neg = MK1(5, -2, -0.5f, 0, 0.5f, 2);
  struct { fvl_unop op; double (*f)(double); } tab[] = {
    {FVL_EXP, exp}, {FVL_LOG, log}, {FVL_SQRT, sqrt}, {FVL_COS, cos}, {FVL_SIN, sin},
    {FVL_ACOS, NULL}, {FVL_TANH, tanh}, {FVL_LOG1P, log1p}};
  for (size_t k = 0; k < sizeof tab / sizeof tab[0]; k++) {
    fvl_tensor *src = tab[k].op == FVL_ACOS ? fvl_binary_scalar(FVL_MUL, x, 0.5, 0) : fvl_retain(x);
    fvl_tensor *r = fvl_unary(tab[k].op, src);
    for (int i = 0; i < 4; i++) {
      double e = tab[k].op == FVL_ACOS ? acos((double)fvl_f32(src)[i]) : tab[k].f((double)xs[i]);
      ck_assert_msg(fabs(at(r, i) - e) <= 1e-6 * (1 + fabs(e)), "unary %d at %g: %.9g vs %.9g", tab[k].op, xs[i], at(r, i), e);
    }
    R(r); R(src);
  }
  fvl_tensor *r;
  r = fvl_unary(FVL_NEG, neg); EXPECT("neg", r, 0, 2, 0.5, 0, -0.5, -2); R(r);
  r = fvl_unary(FVL_ABS, neg); EXPECT("abs", r, 0, 2, 0.5, 0, 0.5, 2); R(r);
  r = fvl_unary(FVL_SIGN, neg); EXPECT("sign", r, 0, -1, -1, 0, 1, 1); R(r);
  r = fvl_unary(FVL_RELU, neg); EXPECT("relu", r, 0, 0, 0, 0, 0.5, 2); R(r);
  r = fvl_unary(FVL_SQUARE, neg); EXPECT("square", r, 0, 4, 0.25, 0, 0.25, 4); R(r);
  r = fvl_unary(FVL_FLOOR, neg); EXPECT("floor", r, 0, -2, -1, 0, 0, 2); R(r);
  r = fvl_unary(FVL_SIGMOID, neg);
  EXPECT("sigmoid", r, 1e-6, 1 / (1 + exp(2)), 1 / (1 + exp(0.5)), 0.5, 1 / (1 + exp(-0.5)), 1 / (1 + exp(-2)));
  R(r);
  /* sigmoid must not overflow at large |x| */
  fvl_tensor *big = MK1(2, -200, 200);
  r = fvl_unary(FVL_SIGMOID, big); EXPECT("sigmoid extremes", r, 0, 0, 1); R(r);
  /* out-of-domain inputs give NaN, not a crash */
  fvl_tensor *dom = MK1(2, -1, 1.5f);
  r = fvl_unary(FVL_LOG, dom); ck_assert(isnan(at(r, 0))); R(r);
  r = fvl_unary(FVL_ACOS, dom); ck_assert(isnan(at(r, 1))); R(r);
  /* unary on a transposed view reads the logical order */
  fvl_tensor *m = MK2(2, 2, 1, 2, 3, 4), *mt = fvl_transpose(m, 0, 1);
  r = fvl_unary(FVL_SQUARE, mt); EXPECT("square of transpose", r, 0, 1, 9, 4, 16); R(r);
  /* int32: neg/abs/sign stay int32, the rest promote */
  fvl_tensor *i = fvl_arange(FVL_I32, -2, 2, 1);
  r = fvl_unary(FVL_ABS, i); ck_assert_int_eq(r->dtype, FVL_I32); EXPECT("abs int32", r, 0, 2, 1, 0, 1, 2); R(r);
  r = fvl_unary(FVL_NEG, i); ck_assert_int_eq(r->dtype, FVL_I32); EXPECT("neg int32", r, 0, 2, 1, 0, -1, -2); R(r);
  r = fvl_unary(FVL_EXP, i); ck_assert_int_eq(r->dtype, FVL_F32); R(r);
  R(x); R(neg); R(big); R(dom); R(m); R(mt); R(i);
}
END_TEST

START_TEST(clamp_compare_where) {
  fvl_tensor *x = MK1(5, -2, -1, 0, 1, 2);
  fvl_tensor *r = fvl_clamp(x, -1, 1);
  EXPECT("clamp", r, 0, -1, -1, 0, 1, 1);
  R(r);
  r = fvl_clamp(x, -INFINITY, 0.5);
  EXPECT("clamp hi only", r, 0, -2, -1, 0, 0.5, 0.5);
  R(r);
  expect_err(fvl_clamp(x, 1, -1), "clamp: lo (1) is greater than hi (-1)");
  fvl_tensor *y = MK1(5, 0, -1, 1, 1, 3);
  r = fvl_compare(FVL_GT, x, y); EXPECT("gt", r, 0, 0, 0, 0, 0, 0); R(r);
  r = fvl_compare(FVL_GE, x, y); EXPECT("ge", r, 0, 0, 1, 0, 1, 0); R(r);
  r = fvl_compare(FVL_LT, x, y); EXPECT("lt", r, 0, 1, 0, 1, 0, 1); R(r);
  r = fvl_compare(FVL_LE, x, y); EXPECT("le", r, 0, 1, 1, 1, 1, 1); R(r);
  r = fvl_compare(FVL_EQ, x, y); EXPECT("eq", r, 0, 0, 1, 0, 1, 0); R(r);
  r = fvl_compare(FVL_NE, x, y); EXPECT("ne", r, 0, 1, 0, 1, 0, 1); R(r);
  r = fvl_compare_scalar(FVL_GT, x, 0); EXPECT("gt 0", r, 0, 0, 0, 0, 1, 1); R(r);
  /* compare broadcasts: column vs row */
  fvl_tensor *col = MK2(2, 1, 0, 1), *row = MK1(3, -1, 0, 1);
  r = fvl_compare(FVL_LE, col, row);
  expect_shape(r, 2, SHAPE(2, 3));
  EXPECT("le broadcast", r, 0, 0, 1, 1, 0, 0, 1);
  R(r);
  /* where with broadcasting of all three */
  fvl_tensor *c = MK2(2, 1, 1, 0);
  fvl_tensor *a = MK1(3, 1, 2, 3), *b = fvl_scalar(-5);
  r = fvl_where(c, a, b);
  expect_shape(r, 2, SHAPE(2, 3));
  EXPECT("where", r, 0, 1, 2, 3, -5, -5, -5);
  R(r);
  fvl_tensor *bad = MK1(2, 1, 2);
  expect_err(fvl_where(bad, a, b), "where");
  expect_err(fvl_compare(FVL_EQ, bad, a), "compare");
  R(x); R(y); R(col); R(row); R(c); R(a); R(b); R(bad);
}
END_TEST

/* ---------------------------------------------------------------- broadcasting */
/* every pair of shapes of rank 0..3 with sizes 1, 2, 3; the result is compared with a
 * reference computed from the broadcast rule directly. Non-broadcastable pairs must fail
 * with a message naming both shapes. */
static int nshapes;
static int64_t shapes[64][4];
static int ranks[64];
static void make_shapes(void) {
  nshapes = 0;
  for (int r = 0; r <= 3; r++) {
    int combos = 1;
    for (int d = 0; d < r; d++) combos *= 3;
    for (int c = 0; c < combos; c++) {
      int v = c;
      for (int d = 0; d < r; d++) { shapes[nshapes][d] = 1 + v % 3; v /= 3; }
      ranks[nshapes++] = r;
    }
  }
}
static fvl_tensor *make_operand(int s, int as_view, double scale) {
  int r = ranks[s];
  fvl_tensor *t;
  if (as_view && r >= 2) {   /* a transposed view of a contiguous tensor with the last two dims swapped */
    int64_t sw[4];
    memcpy(sw, shapes[s], sizeof sw);
    sw[r - 1] = shapes[s][r - 2];
    sw[r - 2] = shapes[s][r - 1];
    fvl_tensor *base = fvl_rand(r, sw, 0.5f, 2.0f);
    t = fvl_transpose(base, r - 2, r - 1);
    R(base);
  } else {
    t = fvl_rand(r, shapes[s], 0.5f, 2.0f);
  }
  (void)scale;
  return t;
}
START_TEST(broadcast_all_shapes) {
  make_shapes();
  fvl_rng_seed(fvl_rng_global(), 3);
  const fvl_binop ops[] = {FVL_ADD, FVL_SUB, FVL_MUL, FVL_DIV, FVL_POW, FVL_MAX2, FVL_MIN2};
  int checked = 0, refused = 0;
  for (int sa = 0; sa < nshapes; sa++)
    for (int sb = 0; sb < nshapes; sb++) {
      int ra = ranks[sa], rb = ranks[sb], rn = ra > rb ? ra : rb;
      int64_t out[4];
      int ok = 1;
      for (int d = 0; d < rn; d++) {
        int da = d - (rn - ra), db = d - (rn - rb);
        int64_t x = da >= 0 ? shapes[sa][da] : 1, y = db >= 0 ? shapes[sb][db] : 1;
        if (x != y && x != 1 && y != 1) ok = 0;
        out[d] = x == 1 ? y : x;
      }
      int view = (sa + sb) % 2;
      fvl_tensor *a = make_operand(sa, view, 1), *b = make_operand(sb, !view, 1);
      fvl_binop op = ops[(sa * 7 + sb) % 7];
      fvl_tensor *r = fvl_binary(op, a, b);
      if (!ok) {
        char x[64], y[64], want[160];
        snprintf(want, sizeof want, "shapes %s and %s do not broadcast", fvl_shape_str(a, x, sizeof x), fvl_shape_str(b, y, sizeof y));
        expect_err(r, want);
        refused++;
      } else {
        expect_shape(r, rn, out);
        int64_t n = fvl_numel(r);
        for (int64_t k = 0; k < n; k++) {
          int64_t idx[4], ia[4], ib[4], q = k;
          for (int d = rn - 1; d >= 0; d--) { idx[d] = q % out[d]; q /= out[d]; }
          for (int d = 0; d < ra; d++) { int od = d + rn - ra; ia[d] = shapes[sa][d] == 1 ? 0 : idx[od]; }
          for (int d = 0; d < rb; d++) { int od = d + rn - rb; ib[d] = shapes[sb][d] == 1 ? 0 : idx[od]; }
          float x = (float)fvl_get(a, ia), y = (float)fvl_get(b, ib), e;
          switch (op) {
            case FVL_ADD: e = x + y; break;
            case FVL_SUB: e = x - y; break;
            case FVL_MUL: e = x * y; break;
            case FVL_DIV: e = x / y; break;
            case FVL_POW: e = powf(x, y); break;
            case FVL_MAX2: e = x > y ? x : y; break;
            default: e = x < y ? x : y; break;
          }
          ck_assert_msg(fabs(fvl_get(r, idx) - e) <= 1e-6 * fabs(e), "op %d, shapes #%d and #%d, element %lld: %.9g vs %.9g",
                        op, sa, sb, (long long)k, fvl_get(r, idx), (double)e);
        }
        checked++;
      }
      R(r); R(a); R(b);
    }
  ck_assert_int_gt(checked, 800);
  ck_assert_int_gt(refused, 100);
}
END_TEST

/* a broadcast result of a large tensor matches the small reference (parallel paths) */
START_TEST(broadcast_large_parallel) {
  fvl_rng_seed(fvl_rng_global(), 8);
  fvl_tensor *a = fvl_randn(2, SHAPE(300, 257), 0, 1), *b = fvl_randn(1, SHAPE(257), 0, 1);
  fvl_tensor *c = fvl_randn(2, SHAPE(300, 1), 0, 1);
  fvl_tensor *r1 = fvl_binary(FVL_SUB, a, b), *r2 = fvl_binary(FVL_MUL, c, a);
  for (int i = 0; i < 300; i++)
    for (int j = 0; j < 257; j++) {
      float x = fvl_f32(a)[i * 257 + j];
      ck_assert_float_eq(fvl_f32(r1)[i * 257 + j], x - fvl_f32(b)[j]);
      ck_assert_float_eq(fvl_f32(r2)[i * 257 + j], fvl_f32(c)[i] * x);
    }
  R(a); R(b); R(c); R(r1); R(r2);
}
END_TEST

/* ---------------------------------------------------------------- reductions */
static double ref_reduce(int kind, const float *p, int64_t n, int64_t stride, int *arg) {
  double acc = kind == 2 ? -INFINITY : kind == 3 ? INFINITY : 0;
  *arg = 0;
  double mx = -INFINITY;
  for (int64_t j = 0; j < n; j++) mx = fmax(mx, p[j * stride]);
  for (int64_t j = 0; j < n; j++) {
    double v = p[j * stride];
    switch (kind) {
      case 0: case 1: acc += v; break;
      case 2: if (v > acc) { acc = v; *arg = (int)j; } break;
      case 3: if (v < acc) { acc = v; *arg = (int)j; } break;
      case 4: acc += v * v; break;
      case 5: acc += exp(v - mx); break;
    }
  }
  if (kind == 1) acc /= (double)n;
  if (kind == 4) acc = sqrt(acc);
  if (kind == 5) acc = mx + log(acc);
  return acc;
}
START_TEST(reductions_along_dims) {
  fvl_rng_seed(fvl_rng_global(), 21);
  int64_t sz[3] = {3, 4, 5};
  fvl_tensor *x = fvl_randn(3, sz, 0, 1);
  const float *p = fvl_f32(x);
  for (int kind = 0; kind < 6; kind++)
    for (int dim = 0; dim < 3; dim++)
      for (int keep = 0; keep < 2; keep++) {
        fvl_tensor *arg = NULL, *r;
        switch (kind) {
          case 0: r = fvl_sum(x, dim, keep); break;
          case 1: r = fvl_mean(x, dim, keep); break;
          case 2: r = fvl_max(x, dim, keep, &arg); break;
          case 3: r = fvl_min(x, dim, keep, &arg); break;
          case 4: r = fvl_norm(x, dim, keep); break;
          default: r = fvl_logsumexp(x, dim, keep); break;
        }
        ck_assert_ptr_nonnull(r);
        ck_assert_int_eq(r->ndim, keep ? 3 : 2);
        if (keep) ck_assert_int_eq(r->size[dim], 1);
        int64_t st[3] = {20, 5, 1};
        for (int i0 = 0; i0 < 3; i0++)
          for (int i1 = 0; i1 < 4; i1++)
            for (int i2 = 0; i2 < 5; i2++) {
              int64_t full[3] = {i0, i1, i2};
              if (full[dim] != 0) continue;
              int a;
              double e = ref_reduce(kind, p + i0 * 20 + i1 * 5 + i2, sz[dim], st[dim], &a);
              int64_t ri[3], k = 0;
              for (int d = 0; d < 3; d++) if (d != dim || keep) ri[k++] = d == dim ? 0 : full[d];
              double got = fvl_get(r, ri);
              ck_assert_msg(fabs(got - e) <= 1e-5 * (1 + fabs(e)), "kind %d dim %d: %.9g vs %.9g", kind, dim, got, e);
              if (arg) ck_assert_int_eq((int)fvl_get(arg, ri), a);
            }
        if (arg) { ck_assert_int_eq(arg->dtype, FVL_I32); R(arg); }
        R(r);
      }
  /* over all elements: 0-dim results */
  fvl_tensor *s = fvl_sum(x, -1, 0), *m = fvl_mean(x, -1, 0), *n = fvl_norm(x, -1, 0), *l = fvl_logsumexp(x, -1, 0);
  fvl_tensor *am = NULL, *mx = fvl_max(x, -1, 0, &am);
  int a;
  ck_assert_int_eq(s->ndim, 0);
  ck_assert_double_eq_tol(at(s, 0), ref_reduce(0, p, 60, 1, &a), 1e-4);
  ck_assert_double_eq_tol(at(m, 0), ref_reduce(1, p, 60, 1, &a), 1e-5);
  ck_assert_double_eq_tol(at(n, 0), ref_reduce(4, p, 60, 1, &a), 1e-4);
  ck_assert_double_eq_tol(at(l, 0), ref_reduce(5, p, 60, 1, &a), 1e-4);
  ck_assert_double_eq(at(mx, 0), ref_reduce(2, p, 60, 1, &a));
  ck_assert_int_eq((int)at(am, 0), a);
  R(s); R(m); R(n); R(l); R(mx); R(am);
  ck_assert_ptr_null(fvl_sum(x, 3, 0));
  ck_assert_ptr_nonnull(strstr(fvl_errmsg(), "sum: dim 3 is outside 0..2 (0-based)"));
  R(x);
}
END_TEST

START_TEST(reductions_hand_values) {
  fvl_tensor *x = MK2(2, 3, 1, 5, 5, -2, -7, 0);
  fvl_tensor *am = fvl_argmax(x, 1, 0);
  EXPECT("argmax ties take the first", am, 0, 1, 2);
  fvl_tensor *am0 = fvl_argmax(x, 0, 1);
  expect_shape(am0, 2, SHAPE(1, 3));
  EXPECT("argmax dim 1", am0, 0, 0, 0, 0);
  fvl_tensor *s = fvl_sum(x, 1, 0); EXPECT("sum rows", s, 0, 11, -9);
  fvl_tensor *mn = fvl_mean(x, 0, 0); EXPECT("mean cols", mn, 0, -0.5, -1, 2.5);
  fvl_tensor *nm = fvl_norm(x, 1, 1); EXPECT("norm rows", nm, 1e-7, sqrt(51), sqrt(53));
  fvl_tensor *lse = fvl_logsumexp(x, 1, 0);
  EXPECT("logsumexp", lse, 1e-6, log(exp(1) + 2 * exp(5)), log(exp(-2) + exp(-7) + 1));
  /* logsumexp is stable for large inputs and handles a row of -inf */
  fvl_tensor *big = MK2(2, 2, 1000, 1000, -INFINITY, -INFINITY);
  fvl_tensor *lb = fvl_logsumexp(big, 1, 0);
  ck_assert_double_eq_tol(at(lb, 0), 1000 + log(2), 1e-3);
  ck_assert(isinf(at(lb, 1)) && at(lb, 1) < 0);
  /* sum of an int32 tensor is a float32 tensor */
  fvl_tensor *i = fvl_arange(FVL_I32, 1, 100, 1);
  fvl_tensor *si = fvl_sum(i, -1, 0);
  ck_assert_int_eq(si->dtype, FVL_F32);
  EXPECT("sum int32", si, 0, 5050);
  /* a reduction over a size-0 dim: sum 0, max an error */
  fvl_tensor *e = fvl_zeros(FVL_F32, 2, SHAPE(2, 0));
  fvl_tensor *se = fvl_sum(e, 1, 0);
  EXPECT("sum of empty rows", se, 0, 0, 0);
  expect_err(fvl_max(e, 1, 0, NULL), "max: reduction over an empty dimension");
  /* a reduction of a transposed view */
  fvl_tensor *xt = fvl_transpose(x, 0, 1);
  fvl_tensor *st = fvl_sum(xt, 1, 0);
  EXPECT("sum of transpose", st, 0, -1, -2, 5);
  /* a large reduction accumulates in double: 1e6 ones plus 1e6 copies of 1e-3 */
  fvl_tensor *ones = fvl_full(FVL_F32, 1, SHAPE(1000000), 1.001);
  fvl_tensor *so = fvl_sum(ones, -1, 0);
  ck_assert_double_eq_tol(at(so, 0), 1001000, 1.0);
  R(x); R(am); R(am0); R(s); R(mn); R(nm); R(lse); R(big); R(lb); R(i); R(si); R(e); R(se);
  R(xt); R(st); R(ones); R(so);
}
END_TEST

START_TEST(normalize_values) {
  fvl_tensor *x = MK2(3, 2, 3, 4, 0, 0, -1e-20f, 0);
  fvl_tensor *r = fvl_normalize(x, 1, 1e-12);
  EXPECT("normalize rows incl. a zero row and a tiny row", r, 1e-7, 0.6, 0.8, 0, 0, -1e-8, 0);
  R(r);
  r = fvl_normalize(x, 0, 1e-12);   /* columns */
  EXPECT("normalize columns", r, 1e-7, 1, 1, 0, 0, -1e-20 / 3, 0);
  R(r);
  /* 3-D, middle dim */
  fvl_rng_seed(fvl_rng_global(), 4);
  fvl_tensor *y = fvl_randn(3, SHAPE(2, 5, 3), 0, 1);
  r = fvl_normalize(y, 1, 1e-12);
  for (int a = 0; a < 2; a++)
    for (int c = 0; c < 3; c++) {
      double s = 0;
      for (int b = 0; b < 5; b++) s += pow(fvl_get(r, SHAPE(a, b, c)), 2);
      ck_assert_double_eq_tol(s, 1, 1e-5);
    }
  R(r);
  expect_err(fvl_normalize(y, 3, 1e-12), "normalize: dim 3 is outside 0..2 (0-based)");
  R(x); R(y);
}
END_TEST

/* ---------------------------------------------------------------- GEMM */
/* op(A) is MxK: stored as MxK (trans=0) or as KxM and transposed (trans=1); `pad` extra columns
 * in the storage make the leading dimension larger than the logical width (a narrowed view). */
static fvl_tensor *gemm_operand(int64_t rows, int64_t cols, int trans, int pad, fvl_tensor **base) {
  int64_t r = trans ? cols : rows, c = trans ? rows : cols;
  *base = fvl_randn(2, SHAPE(r, c + pad), 0, 1);
  fvl_tensor *v = fvl_narrow(*base, 1, pad ? 1 : 0, c);
  if (!trans) return v;
  fvl_tensor *t = fvl_transpose(v, 0, 1);
  R(v);
  return t;
}
START_TEST(gemm_against_naive) {
  fvl_rng_seed(fvl_rng_global(), 5);
  const int64_t dims[][3] = {{1, 1, 1}, {1, 7, 5}, {6, 1, 3}, {4, 5, 1}, {17, 13, 11}, {33, 64, 70}, {2, 3, 0}};
  int cases = 0;
  for (size_t s = 0; s < sizeof dims / sizeof dims[0]; s++)
    for (int ta = 0; ta < 2; ta++)
      for (int tb = 0; tb < 2; tb++)
        for (int pad = 0; pad < 2; pad++) {
          int64_t M = dims[s][0], N = dims[s][1], K = dims[s][2];
          fvl_tensor *ba, *bb;
          fvl_tensor *a = gemm_operand(M, K, ta, pad, &ba), *b = gemm_operand(K, N, tb, pad, &bb);
          size_t before = fvl_bytes_live();
          fvl_bytes_peak_reset();
          fvl_tensor *c = fvl_matmul(a, b);
          ck_assert_msg(c != NULL, "%s", fvl_errmsg());
          /* transposed and narrowed views go to sgemm as flags and leading dims: the only
           * allocation is the result */
          ck_assert_msg(fvl_bytes_peak() == before + (size_t)(M * N * 4),
                        "M=%lld N=%lld K=%lld ta=%d tb=%d pad=%d: peak %zu bytes above the result, a copy was made",
                        (long long)M, (long long)N, (long long)K, ta, tb, pad, fvl_bytes_peak() - before - (size_t)(M * N * 4));
          expect_shape(c, 2, SHAPE(M, N));
          for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) {
              double e = 0;
              for (int64_t k = 0; k < K; k++) e += fvl_get(a, SHAPE(i, k)) * fvl_get(b, SHAPE(k, j));
              double g = fvl_get(c, SHAPE(i, j));
              ck_assert_msg(fabs(g - e) <= 1e-4 * (1 + fabs(e)), "M=%lld N=%lld K=%lld ta=%d tb=%d: C[%lld][%lld] = %.7g, expected %.7g",
                            (long long)M, (long long)N, (long long)K, ta, tb, (long long)i, (long long)j, g, e);
            }
          cases++;
          R(a); R(b); R(ba); R(bb); R(c);
        }
  ck_assert_int_eq(cases, 56);
}
END_TEST

/* a product big enough to be split into row blocks (Ctrl-C polling between blocks), with both
 * operands transposed views and M not a multiple of the block: sampled entries against dot
 * products, and still no copies */
START_TEST(gemm_blocked_large) {
  fvl_rng_seed(fvl_rng_global(), 17);
  const int64_t M = 1001, N = 2048, K = 2000;   /* M*N*K > 4e9 */
  fvl_tensor *ba, *bb;
  fvl_tensor *a = gemm_operand(M, K, 1, 1, &ba), *b = gemm_operand(K, N, 1, 0, &bb);
  size_t before = fvl_bytes_live();
  fvl_bytes_peak_reset();
  fvl_tensor *c = fvl_matmul(a, b);
  ck_assert_msg(c != NULL, "%s", fvl_errmsg());
  ck_assert_msg(fvl_bytes_peak() == before + (size_t)(M * N * 4), "a copy was made");
  uint64_t s = 99;
  for (int k = 0; k < 300; k++) {
    s = s * 6364136223846793005ULL + 1442695040888963407ULL;
    int64_t i = k < 4 ? (k % 2 ? M - 1 : 0) : (int64_t)((s >> 20) % (uint64_t)M);
    int64_t j = k < 4 ? (k / 2 ? N - 1 : 0) : (int64_t)((s >> 40) % (uint64_t)N);
    double e = 0;
    for (int64_t q = 0; q < K; q++) e += fvl_get(a, SHAPE(i, q)) * fvl_get(b, SHAPE(q, j));
    double g = fvl_get(c, SHAPE(i, j));
    ck_assert_msg(fabs(g - e) <= 1e-3 * (1 + fabs(e)), "C[%lld][%lld] = %.7g, expected %.7g", (long long)i, (long long)j, g, e);
  }
  R(a); R(b); R(ba); R(bb); R(c);
}
END_TEST

START_TEST(gemm_odd_views_and_errors) {
  /* a view that is neither row- nor column-major (a select across a 3-D tensor) is still right */
  fvl_rng_seed(fvl_rng_global(), 6);
  fvl_tensor *x = fvl_randn(3, SHAPE(4, 3, 5), 0, 1);
  fvl_tensor *s = fvl_select(x, 2, 1);    /* 4x3 with strides 15, 5 */
  fvl_tensor *w = fvl_randn(2, SHAPE(3, 2), 0, 1);
  fvl_tensor *c = fvl_matmul(s, w);
  for (int i = 0; i < 4; i++)
    for (int j = 0; j < 2; j++) {
      double e = 0;
      for (int k = 0; k < 3; k++) e += fvl_get(s, SHAPE(i, k)) * fvl_get(w, SHAPE(k, j));
      ck_assert_double_eq_tol(fvl_get(c, SHAPE(i, j)), e, 1e-5);
    }
  /* the raw gemm honours alpha, beta and leading dimensions */
  float A[6] = {1, 2, 3, 4, 5, 6}, B[6] = {1, 0, 0, 1, 1, 1}, C[4] = {1, 1, 1, 1};
  fvl_gemm(0, 0, 2, 2, 3, 2.0f, A, 3, B, 2, 0.5f, C, 2);   /* 2 * A(2x3) B(3x2) + 0.5 C */
  ck_assert_float_eq(C[0], 2 * (1 + 3) + 0.5f);
  ck_assert_float_eq(C[1], 2 * (2 + 3) + 0.5f);
  ck_assert_float_eq(C[2], 2 * (4 + 6) + 0.5f);
  ck_assert_float_eq(C[3], 2 * (5 + 6) + 0.5f);
  /* errors */
  fvl_tensor *p = fvl_zeros(FVL_F32, 2, SHAPE(256, 512)), *q = fvl_zeros(FVL_F32, 2, SHAPE(128, 10));
  expect_err(fvl_matmul(p, q), "matmul: inner sizes differ: x is 256x512, y is 128x10");
  fvl_tensor *v = fvl_zeros(FVL_F32, 1, SHAPE(512));
  expect_err(fvl_matmul(p, v), "matmul: expected 2-D tensors, got x 256x512 and y 512");
  fvl_tensor *ii = fvl_zeros(FVL_I32, 2, SHAPE(512, 2));
  expect_err(fvl_matmul(p, ii), "matmul: y is int32, expected float32");
  R(x); R(s); R(w); R(c); R(p); R(q); R(v); R(ii);
}
END_TEST

/* ---------------------------------------------------------------- indexing */
static fvl_tensor *idx1(int n, const int32_t *v) {
  return fvl_from_data(FVL_I32, 1, SHAPE(n), v);
}
START_TEST(index_gather_cat) {
  fvl_tensor *x = MK2(3, 2, 1, 2, 3, 4, 5, 6);
  fvl_tensor *i = idx1(4, (int32_t[]){2, 0, 2, 1});
  fvl_tensor *r = fvl_index_select(x, 0, i);
  expect_shape(r, 2, SHAPE(4, 2));
  EXPECT("index rows", r, 0, 5, 6, 1, 2, 5, 6, 3, 4);
  R(r);
  fvl_tensor *j = idx1(3, (int32_t[]){1, 1, 0});
  r = fvl_index_select(x, 1, j);
  EXPECT("index cols", r, 0, 2, 2, 1, 4, 4, 3, 6, 6, 5);
  R(r);
  fvl_tensor *xt = fvl_transpose(x, 0, 1);
  r = fvl_index_select(xt, 1, j);
  EXPECT("index cols of a transpose", r, 0, 3, 3, 1, 4, 4, 2);
  R(r);
  fvl_tensor *bad = idx1(2, (int32_t[]){0, 3});
  expect_err(fvl_index_select(x, 0, bad), "index: indices[1] = 3 is outside 0..2 (0-based)");
  fvl_tensor *ix2 = fvl_zeros(FVL_I32, 2, SHAPE(1, 1));
  expect_err(fvl_index_select(x, 0, ix2), "1-D");
  fvl_tensor *fi = fvl_zeros(FVL_F32, 1, SHAPE(1));
  expect_err(fvl_index_select(x, 0, fi), "int32");
  /* int32 tensors can be indexed too */
  fvl_tensor *xi = fvl_arange(FVL_I32, 10, 15, 1);
  r = fvl_index_select(xi, 0, j);
  ck_assert_int_eq(r->dtype, FVL_I32);
  EXPECT("index int32", r, 0, 11, 11, 10);
  R(r);
  /* gather along dim 2 (per row) and dim 1 (per column) */
  fvl_tensor *g = fvl_from_data(FVL_I32, 2, SHAPE(3, 1), (int32_t[]){1, 0, 1});
  r = fvl_gather(x, 1, g);
  expect_shape(r, 2, SHAPE(3, 1));
  EXPECT("gather dim 2", r, 0, 2, 3, 6);
  R(r);
  fvl_tensor *g0 = fvl_from_data(FVL_I32, 2, SHAPE(2, 2), (int32_t[]){2, 0, 1, 1});
  r = fvl_gather(x, 0, g0);
  EXPECT("gather dim 1", r, 0, 5, 2, 3, 4);
  R(r);
  fvl_tensor *gbad = fvl_from_data(FVL_I32, 2, SHAPE(3, 1), (int32_t[]){1, 2, 1});
  expect_err(fvl_gather(x, 1, gbad), "gather: indices[1] = 2 is outside 0..1 (0-based)");
  /* index_add: rows accumulate, repeated indices add twice */
  fvl_tensor *d = fvl_zeros(FVL_F32, 2, SHAPE(3, 2));
  fvl_tensor *src = MK2(4, 2, 1, 1, 2, 2, 3, 3, 4, 4);
  ck_assert_int_eq(fvl_index_add_(d, 0, i, src), 0);
  EXPECT("index_add", d, 0, 2, 2, 4, 4, 4, 4);
  ck_assert_int_eq(fvl_index_add_(d, 0, j, src), -1);
  ck_assert_ptr_nonnull(strstr(fvl_errmsg(), "index_add"));
  /* cat along both dims, and its errors */
  fvl_tensor *y = MK2(1, 2, 7, 8);
  fvl_tensor *ts[2] = {x, y};
  r = fvl_cat(2, ts, 0);
  expect_shape(r, 2, SHAPE(4, 2));
  EXPECT("cat rows", r, 0, 1, 2, 3, 4, 5, 6, 7, 8);
  R(r);
  fvl_tensor *z = MK2(3, 1, -1, -2, -3);
  fvl_tensor *ts2[3] = {z, x, z};
  r = fvl_cat(3, ts2, 1);
  EXPECT("cat cols", r, 0, -1, 1, 2, -1, -2, 3, 4, -2, -3, 5, 6, -3);
  R(r);
  expect_err(fvl_cat(2, ts, 1), "cat: ts[1] is 1x2, ts[0] is 3x2 (sizes differ outside dim 1, 0-based)");
  expect_err(fvl_cat(0, ts, 0), "cat");
  R(x); R(i); R(j); R(xt); R(bad); R(ix2); R(fi); R(xi); R(g); R(g0); R(gbad); R(d); R(src); R(y); R(z);
}
END_TEST

START_TEST(check_index_range) {
  fvl_tensor *i = idx1(3, (int32_t[]){0, 4, -1});
  ck_assert_int_eq(fvl_check_index_range("f", "labels", i, 5), -1);
  ck_assert_str_eq(fvl_errmsg(), "f: labels[2] = -1 is outside 0..4 (0-based)");
  ck_assert_int_eq(fvl_check_index_range("f", "labels", i, 4), -1);
  ck_assert_str_eq(fvl_errmsg(), "f: labels[1] = 4 is outside 0..3 (0-based)");
  R(i);
}
END_TEST

/* ---------------------------------------------------------------- random view chains */
#include "view_oracle.h"

START_TEST(view_chains_random) {
  vc_state = 12345;
  int shared_checked = 0;
  for (int trial = 0; trial < 300; trial++) {
    fvl_tensor *flat = fvl_arange(FVL_F32, 0, 119, 1);
    fvl_tensor *v = fvl_reshape(flat, 4, SHAPE(2, 3, 4, 5));
    refview r = {.nd = 4, .sz = {2, 3, 4, 5}, .n = 120};
    r.ix = malloc(sizeof(int64_t) * 120);
    for (int64_t k = 0; k < 120; k++) r.ix[k] = k;
    char log[1024] = "";
    for (int step = 0; step < 8; step++) {
      v = vc_step(v, &r, log, sizeof log);
      ck_assert_msg(v->ndim == r.nd, "%s: ndim %d, expected %d", log, v->ndim, r.nd);
      for (int d = 0; d < r.nd; d++) ck_assert_msg(v->size[d] == r.sz[d], "%s: size[%d]", log, d);
      ck_assert_int_eq(fvl_numel(v), r.n);
      int shares = v->st == flat->st;
      double sum = 0;
      for (int64_t k = 0; k < r.n; k++) {
        int64_t idx[FVL_MAXDIM], off = v->offset;
        ref_unlin(&r, k, idx);
        ck_assert_msg(fvl_get(v, idx) == (double)r.ix[k], "%s: element %lld is %g, expected %lld", log,
                      (long long)k, fvl_get(v, idx), (long long)r.ix[k]);
        for (int d = 0; d < v->ndim; d++) off += idx[d] * v->stride[d];
        if (shares) ck_assert_msg(off == r.ix[k], "%s: element %lld sits at storage offset %lld, expected %lld",
                                  log, (long long)k, (long long)off, (long long)r.ix[k]);
        sum += (double)r.ix[k];
      }
      shared_checked += shares;
      /* operations on the view read it in logical order */
      fvl_tensor *c = fvl_contiguous(v), *s = fvl_sum(v, -1, 0), *p = fvl_binary_scalar(FVL_ADD, v, 1, 0);
      ck_assert(fvl_is_contiguous(c));
      for (int64_t k = 0; k < r.n; k++) {
        ck_assert_msg(fvl_f32(c)[k] == (float)r.ix[k], "%s: contiguous[%lld]", log, (long long)k);
        ck_assert_msg(fvl_f32(p)[k] == (float)r.ix[k] + 1, "%s: v + 1 [%lld]", log, (long long)k);
      }
      ck_assert_msg(fvl_f32(s)[0] == (float)sum, "%s: sum %g, expected %g", log, fvl_f32(s)[0], sum);
      R(c); R(s); R(p);
    }
    free(r.ix);
    R(v); R(flat);
  }
  ck_assert_int_gt(shared_checked, 500);
}
END_TEST

int main(void) {
  Suite *s = suite_create("tensor");
  TCase *tc = tcase_create("tensor");
  tcase_set_timeout(tc, 120);
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, creation);
  tcase_add_test(tc, views_transpose_narrow_select);
  tcase_add_test(tc, views_reshape_contiguous_clone);
  tcase_add_test(tc, copy_and_fill);
  tcase_add_test(tc, binary_hand_values);
  tcase_add_test(tc, unary_hand_values);
  tcase_add_test(tc, clamp_compare_where);
  tcase_add_test(tc, broadcast_all_shapes);
  tcase_add_test(tc, broadcast_large_parallel);
  tcase_add_test(tc, reductions_along_dims);
  tcase_add_test(tc, reductions_hand_values);
  tcase_add_test(tc, normalize_values);
  tcase_add_test(tc, gemm_against_naive);
  tcase_add_test(tc, gemm_blocked_large);
  tcase_add_test(tc, gemm_odd_views_and_errors);
  tcase_add_test(tc, index_gather_cat);
  tcase_add_test(tc, check_index_range);
  tcase_add_test(tc, view_chains_random);
  suite_add_tcase(s, tc);
  return fvl_check_run(s);
}
