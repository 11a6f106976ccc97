/* test_autograd.c — every backward against central finite differences (fvl_gradcheck), the
 * gradient rules at kinks (clamp equality, maximum ties), and the tape's mechanics: accumulation
 * over paths and calls, no_grad, detach, non-scalar roots, a second backward, custom nodes,
 * long chains, and that every byte is given back. */
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

#define R(x) fvl_release(x)
#define SHAPE(...) (int64_t[]){__VA_ARGS__}
/* integer and real parameters of a gradcheck closure (zero-filled to their full size) */
#define IV(...) (int64_t[8]){__VA_ARGS__}
#define DV(...) (double[4]){__VA_ARGS__}
static size_t live0;
static void setup(void) { live0 = fvl_bytes_live(); fvl_set_grad_enabled(1); }
static void teardown(void) {
  ck_assert_msg(fvl_bytes_live() == live0, "leak: %zu bytes live after the test, %zu before",
                fvl_bytes_live(), live0);
}

/* an input that requires grad, values uniform in [lo, hi) */
static fvl_tensor *leaf(int nd, const int64_t *sz, float lo, float hi) {
  fvl_tensor *t = fvl_rand(nd, sz, lo, hi);
  ck_assert_ptr_nonnull(t);
  t->requires_grad = 1;
  return t;
}
/* values away from 0 (for abs, relu, sign kinks): |x| in [0.2, 1.5], random sign */
static fvl_tensor *leaf_nonzero(int nd, const int64_t *sz) {
  fvl_tensor *t = fvl_rand(nd, sz, 0.2f, 1.5f);
  float *p = fvl_f32(t);
  for (int64_t i = 0; i < fvl_numel(t); i++) if (i % 3 != 1) p[i] = -p[i];
  t->requires_grad = 1;
  return t;
}

/* ---------------------------------------------------------------- gradcheck driver */
typedef fvl_tensor *(*build_fn)(fvl_tensor **in, const int64_t *iv, const double *dv);
typedef struct { build_fn build; int64_t iv[8]; double dv[4]; } closure;

/* y = Σ out ⊙ w with a fixed, non-uniform weight w so every output element matters differently */
static fvl_tensor *weighted_sum(fvl_tensor *out) {
  if (!out) return NULL;
  fvl_tensor *w = fvl_empty(FVL_F32, out->ndim, out->size);
  for (int64_t k = 0; k < fvl_numel(w); k++) fvl_f32(w)[k] = (float)sin(0.7 * (double)k + 0.3) + 0.1f;
  fvl_tensor *p = fvl_binary(FVL_MUL, out, w);
  fvl_tensor *s = p ? fvl_sum(p, -1, 0) : NULL;
  R(w); R(p);
  return s;
}
static fvl_tensor *scalar_fn(void *ud, int n, fvl_tensor **in) {
  closure *c = ud;
  (void)n;
  fvl_tensor *out = c->build(in, c->iv, c->dv);
  fvl_tensor *y = weighted_sum(out);
  R(out);
  return y;
}
static void gradcheck_(const char *what, build_fn b, int n, fvl_tensor **in, const int64_t *iv,
                       const double *dv, double eps, double tol) {
  closure c = {.build = b};
  if (iv) memcpy(c.iv, iv, sizeof c.iv);
  if (dv) memcpy(c.dv, dv, sizeof c.dv);
  char rep[2048];
  int ok = fvl_gradcheck(scalar_fn, &c, n, in, eps, tol, 10 * tol, rep, sizeof rep);
  ck_assert_msg(ok == 1, "%s: gradcheck returned %d: %s%s", what, ok, rep, ok < 0 ? fvl_errmsg() : "");
  /* every input that requires grad received a gradient of its own shape */
  for (int i = 0; i < n; i++)
    if (in[i]->requires_grad) {
      ck_assert_msg(in[i]->grad != NULL, "%s: input %d got no gradient", what, i + 1);
      ck_assert(fvl_same_shape(in[i]->grad, in[i]));
    }
}
#define GC(what, b, n, in, iv, dv) gradcheck_(what, b, n, in, iv, dv, 1e-2, 2e-3)
static void release_all(int n, fvl_tensor **in) { for (int i = 0; i < n; i++) R(in[i]); }

/* ---------------------------------------------------------------- binary */
static fvl_tensor *b_binary(fvl_tensor **in, const int64_t *iv, const double *dv) {
  return fvl_binary((fvl_binop)iv[0], in[0], in[1]);
}
static fvl_tensor *b_scalar(fvl_tensor **in, const int64_t *iv, const double *dv) {
  return fvl_binary_scalar((fvl_binop)iv[0], in[0], dv[0], (int)iv[1]);
}
START_TEST(grad_binary_broadcast) {
  fvl_rng_seed(fvl_rng_global(), 1);
  const char *names[] = {"add", "sub", "mul", "div", "pow", "maximum", "minimum"};
  /* (a shape, b shape) pairs: same, row, column x row, rank difference, scalar */
  const int64_t sh[][2][4] = {
    {{2, 3, 4}, {2, 3, 4}}, {{2, 3, 4}, {1, 4, 0}}, {{2, 3, 1}, {1, 1, 4}}, {{2, 3, 4}, {0, 0, 0}}, {{2, 4, 0}, {2, 3, 2}}};
  const int nd[][2] = {{3, 3}, {3, 2}, {3, 3}, {3, 0}, {2, 3}};
  for (int op = 0; op <= FVL_MIN2; op++)
    for (int s = 0; s < 5; s++) {
      if (s == 4 && op != FVL_ADD && op != FVL_MUL) continue;
      fvl_tensor *in[2];
      float lo = op == FVL_POW || op == FVL_DIV ? 0.5f : -1.5f;
      in[0] = leaf(nd[s][0], sh[s][0], lo, 2.0f);
      in[1] = leaf(nd[s][1], sh[s][1], op == FVL_DIV ? 0.5f : lo, 2.0f);
      char what[64];
      snprintf(what, sizeof what, "%s, shapes #%d", names[op], s);
      if (s == 4) {   /* 2x4 with 2x3x2 does not broadcast */
        ck_assert_ptr_null(fvl_binary((fvl_binop)op, in[0], in[1]));
      } else {
        GC(what, b_binary, 2, in, IV(op), NULL);
      }
      release_all(2, in);
    }
}
END_TEST

START_TEST(grad_binary_scalar) {
  fvl_rng_seed(fvl_rng_global(), 2);
  for (int op = 0; op <= FVL_MIN2; op++)
    for (int first = 0; first < 2; first++) {
      fvl_tensor *in[1] = {leaf(2, SHAPE(3, 4), op == FVL_POW || op == FVL_DIV ? 0.5f : -1.5f, 2.0f)};
      double s = op == FVL_POW ? (first ? 1.7 : 2.5) : 0.3;   /* 0.3 is never equal to an input */
      char what[64];
      snprintf(what, sizeof what, "scalar op %d, scalar first %d", op, first);
      GC(what, b_scalar, 1, in, IV(op, first), (DV(s)));
      release_all(1, in);
    }
}
END_TEST

/* pow's gradient at a base of 0 with an exponent of 2 is 0, not NaN (tensor and scalar forms) */
START_TEST(grad_pow_at_zero) {
  fvl_tensor *a = fvl_from_data(FVL_F32, 1, SHAPE(3), (float[]){0, 1, 2});
  fvl_tensor *e = fvl_full(FVL_F32, 1, SHAPE(3), 2);
  a->requires_grad = 1;
  fvl_tensor *p = fvl_binary_scalar(FVL_POW, a, 2, 0), *s = fvl_sum(p, -1, 0);
  ck_assert_int_eq(fvl_backward(s, NULL), 0);
  ck_assert_float_eq(fvl_f32(a->grad)[0], 0);
  ck_assert_float_eq(fvl_f32(a->grad)[2], 4);
  R(p); R(s); R(a->grad); a->grad = NULL;
  p = fvl_binary(FVL_POW, a, e);
  s = fvl_sum(p, -1, 0);
  ck_assert_int_eq(fvl_backward(s, NULL), 0);
  ck_assert_msg(fvl_f32(a->grad)[0] == 0, "d/da a^2 at a = 0 is %g, expected 0", fvl_f32(a->grad)[0]);
  ck_assert_float_eq(fvl_f32(a->grad)[1], 2);
  ck_assert_float_eq(fvl_f32(a->grad)[2], 4);
  R(p); R(s); R(a); R(e);
}
END_TEST

/* at a tie, maximum/minimum hand the whole gradient to exactly one side */
START_TEST(grad_maximum_ties) {
  for (int op = FVL_MAX2; op <= FVL_MIN2; op++) {
    fvl_tensor *a = fvl_from_data(FVL_F32, 1, SHAPE(3), (float[]){1, 2, 3});
    fvl_tensor *b = fvl_from_data(FVL_F32, 1, SHAPE(3), (float[]){1, 5, 0});
    a->requires_grad = b->requires_grad = 1;
    fvl_tensor *m = fvl_binary((fvl_binop)op, a, b), *s = fvl_sum(m, -1, 0);
    ck_assert_int_eq(fvl_backward(s, NULL), 0);
    float *ga = fvl_f32(a->grad), *gb = fvl_f32(b->grad);
    ck_assert_float_eq(ga[0] + gb[0], 1);     /* tie: total gradient preserved */
    ck_assert(ga[0] == 0 || gb[0] == 0);
    ck_assert_float_eq(ga[1], op == FVL_MAX2 ? 0 : 1);
    ck_assert_float_eq(gb[1], op == FVL_MAX2 ? 1 : 0);
    ck_assert_float_eq(ga[2], op == FVL_MAX2 ? 1 : 0);
    R(a); R(b); R(m); R(s);
  }
}
END_TEST

/* ---------------------------------------------------------------- unary, clamp, where */
static fvl_tensor *b_unary(fvl_tensor **in, const int64_t *iv, const double *dv) {
  return fvl_unary((fvl_unop)iv[0], in[0]);
}
START_TEST(grad_unary) {
  fvl_rng_seed(fvl_rng_global(), 3);
  const struct { fvl_unop op; const char *name; float lo, hi; int nonzero; } tab[] = {
    {FVL_NEG, "neg", -2, 2, 0},       {FVL_EXP, "exp", -2, 2, 0},      {FVL_LOG, "log", 0.3f, 3, 0},
    {FVL_SQRT, "sqrt", 0.3f, 3, 0},   {FVL_ABS, "abs", 0, 0, 1},       {FVL_COS, "cos", -3, 3, 0},
    {FVL_SIN, "sin", -3, 3, 0},       {FVL_ACOS, "acos", -0.8f, 0.8f, 0}, {FVL_TANH, "tanh", -2, 2, 0},
    {FVL_SIGMOID, "sigmoid", -4, 4, 0}, {FVL_RELU, "relu", 0, 0, 1},   {FVL_SQUARE, "square", -2, 2, 0},
    {FVL_LOG1P, "log1p", -0.5f, 3, 0}, {FVL_SIGN, "sign", 0, 0, 1},   {FVL_FLOOR, "floor", 0.1f, 0.9f, 0}};
  for (size_t k = 0; k < sizeof tab / sizeof tab[0]; k++) {
    fvl_tensor *in[1] = {tab[k].nonzero ? leaf_nonzero(2, SHAPE(3, 5)) : leaf(2, SHAPE(3, 5), tab[k].lo, tab[k].hi)};
    GC(tab[k].name, b_unary, 1, in, IV(tab[k].op), NULL);
    release_all(1, in);
  }
}
END_TEST

/* the same on a non-contiguous input: the gradient lands in the base's layout */
static fvl_tensor *b_unary_of_t(fvl_tensor **in, const int64_t *iv, const double *dv) {
  fvl_tensor *t = fvl_transpose(in[0], 0, 1);
  fvl_tensor *r = fvl_unary((fvl_unop)iv[0], t);
  R(t);
  return r;
}
START_TEST(grad_unary_of_view) {
  fvl_rng_seed(fvl_rng_global(), 4);
  fvl_tensor *in[1] = {leaf(2, SHAPE(3, 4), 0.3f, 2)};
  GC("log of transpose", b_unary_of_t, 1, in, IV(FVL_LOG), NULL);
  GC("exp of transpose", b_unary_of_t, 1, in, IV(FVL_EXP), NULL);
  release_all(1, in);
}
END_TEST

static fvl_tensor *b_clamp(fvl_tensor **in, const int64_t *iv, const double *dv) {
  return fvl_clamp(in[0], dv[0], dv[1]);
}
START_TEST(grad_clamp) {
  fvl_rng_seed(fvl_rng_global(), 5);
  /* points away from the bounds (|x| <= 0.95 or >= 1.05 with bounds ±1) */
  fvl_tensor *in[1] = {leaf(2, SHAPE(4, 5), 0, 1)};
  float *p = fvl_f32(in[0]);
  for (int i = 0; i < 20; i++) p[i] = (i % 4 == 0 ? -1.3f : i % 4 == 1 ? 1.4f : 1.8f * (p[i] - 0.5f));
  GC("clamp(-1, 1)", b_clamp, 1, in, NULL, (DV(-1, 1)));
  GC("clamp(-inf, 1.1)", b_clamp, 1, in, NULL, (DV(-INFINITY, 1.1)));
  release_all(1, in);
  /* the equality rule: an input exactly at a bound passes the gradient through */
  fvl_tensor *x = fvl_from_data(FVL_F32, 1, SHAPE(5), (float[]){-2, -1, 0, 1, 2});
  x->requires_grad = 1;
  fvl_tensor *c = fvl_clamp(x, -1, 1), *s = fvl_sum(c, -1, 0);
  ck_assert_int_eq(fvl_backward(s, NULL), 0);
  const float want[5] = {0, 1, 1, 1, 0};
  for (int i = 0; i < 5; i++) ck_assert_msg(fvl_f32(x->grad)[i] == want[i], "clamp grad[%d] = %g, expected %g", i, fvl_f32(x->grad)[i], want[i]);
  R(x); R(c); R(s);
}
END_TEST

static fvl_tensor *b_where(fvl_tensor **in, const int64_t *iv, const double *dv) {
  return fvl_where(in[2], in[0], in[1]);
}
START_TEST(grad_where) {
  fvl_rng_seed(fvl_rng_global(), 6);
  fvl_tensor *in[3] = {leaf(2, SHAPE(3, 4), -1, 1), leaf(1, SHAPE(4), -1, 1),
                       fvl_from_data(FVL_F32, 2, SHAPE(3, 1), (float[]){1, 0, 1})};
  GC("where (broadcast b and cond)", b_where, 3, in, NULL, NULL);
  /* hand value: b is used in row 2 only, so its gradient is that row of the weights */
  release_all(3, in);
}
END_TEST

/* ---------------------------------------------------------------- reductions */
static fvl_tensor *b_reduce(fvl_tensor **in, const int64_t *iv, const double *dv) {
  int dim = (int)iv[1], keep = (int)iv[2];
  switch (iv[0]) {
    case 0: return fvl_sum(in[0], dim, keep);
    case 1: return fvl_mean(in[0], dim, keep);
    case 2: return fvl_max(in[0], dim, keep, NULL);
    case 3: return fvl_min(in[0], dim, keep, NULL);
    case 4: return fvl_norm(in[0], dim, keep);
    default: return fvl_logsumexp(in[0], dim, keep);
  }
}
START_TEST(grad_reductions) {
  fvl_rng_seed(fvl_rng_global(), 7);
  const char *names[] = {"sum", "mean", "max", "min", "norm", "logsumexp"};
  for (int kind = 0; kind < 6; kind++)
    for (int dim = -1; dim < 3; dim++)
      for (int keep = 0; keep < 2; keep++) {
        /* distinct values spaced ≥ 0.05 apart so max/min are not near a tie */
        fvl_tensor *in[1] = {leaf(3, SHAPE(2, 3, 4), 0, 1)};
        float *p = fvl_f32(in[0]);
        for (int i = 0; i < 24; i++) p[i] = (float)(((i * 7) % 24) * 0.1 - 1.1);
        char what[64];
        snprintf(what, sizeof what, "%s dim %d keepdim %d", names[kind], dim + 1, keep);
        GC(what, b_reduce, 1, in, IV(kind, dim, keep), NULL);
        release_all(1, in);
      }
}
END_TEST

/* max along a dim: the gradient goes to the arg-max position of each row only */
START_TEST(grad_max_positions) {
  fvl_tensor *x = fvl_from_data(FVL_F32, 2, SHAPE(2, 3), (float[]){1, 5, 3, 7, 2, 9});
  x->requires_grad = 1;
  fvl_tensor *am = NULL, *m = fvl_max(x, 1, 0, &am), *s = fvl_sum(m, -1, 0);
  ck_assert_int_eq(fvl_i32(am)[0], 1);
  ck_assert_int_eq(fvl_i32(am)[1], 2);
  ck_assert_int_eq(fvl_backward(s, NULL), 0);
  const float want[6] = {0, 1, 0, 0, 0, 1};
  for (int i = 0; i < 6; i++) ck_assert_float_eq(fvl_f32(x->grad)[i], want[i]);
  R(x); R(am); R(m); R(s);
}
END_TEST

static fvl_tensor *b_normalize(fvl_tensor **in, const int64_t *iv, const double *dv) {
  return fvl_normalize(in[0], (int)iv[0], dv[0]);
}
START_TEST(grad_normalize) {
  fvl_rng_seed(fvl_rng_global(), 8);
  fvl_tensor *in[1] = {leaf(2, SHAPE(4, 5), -1, 1)};
  GC("normalize rows", b_normalize, 1, in, IV(1), (DV(1e-12)));
  GC("normalize columns", b_normalize, 1, in, IV(0), (DV(1e-12)));
  /* a zero row: inside the eps ball the function is x / eps, and the check sees it */
  float *p = fvl_f32(in[0]);
  for (int j = 0; j < 5; j++) p[2 * 5 + j] = 0;
  GC("normalize with a zero row, eps 0.1", b_normalize, 1, in, IV(1), (DV(0.1)));
  release_all(1, in);
  /* with the default tiny eps a zero row gives a zero output and finite gradients */
  fvl_tensor *x = fvl_from_data(FVL_F32, 2, SHAPE(2, 2), (float[]){0, 0, 3, 4});
  x->requires_grad = 1;
  fvl_tensor *y = fvl_normalize(x, 1, 1e-12), *s = weighted_sum(y);
  ck_assert_float_eq(fvl_f32(y)[0], 0);
  ck_assert_float_eq(fvl_f32(y)[1], 0);
  ck_assert_int_eq(fvl_backward(s, NULL), 0);
  for (int i = 0; i < 4; i++) ck_assert_msg(isfinite(fvl_f32(x->grad)[i]), "grad[%d] = %g", i, fvl_f32(x->grad)[i]);
  R(x); R(y); R(s);
}
END_TEST

/* ---------------------------------------------------------------- matmul */
static fvl_tensor *b_matmul(fvl_tensor **in, const int64_t *iv, const double *dv) {
  fvl_tensor *a = iv[0] ? fvl_transpose(in[0], 0, 1) : fvl_retain(in[0]);
  fvl_tensor *b = iv[1] ? fvl_transpose(in[1], 0, 1) : fvl_retain(in[1]);
  fvl_tensor *r = fvl_matmul(a, b);
  R(a); R(b);
  return r;
}
START_TEST(grad_matmul) {
  fvl_rng_seed(fvl_rng_global(), 9);
  for (int ta = 0; ta < 2; ta++)
    for (int tb = 0; tb < 2; tb++) {
      /* op(A) is 3x4, op(B) is 4x5 */
      fvl_tensor *in[2] = {leaf(2, ta ? SHAPE(4, 3) : SHAPE(3, 4), -1, 1), leaf(2, tb ? SHAPE(5, 4) : SHAPE(4, 5), -1, 1)};
      char what[64];
      snprintf(what, sizeof what, "matmul ta %d tb %d", ta, tb);
      GC(what, b_matmul, 2, in, IV(ta, tb), NULL);
      release_all(2, in);
    }
  /* only one side requiring grad */
  fvl_tensor *in[2] = {fvl_rand(2, SHAPE(3, 4), -1, 1), leaf(2, SHAPE(5, 4), -1, 1)};
  GC("x:matmul(W:t()) with constant x", b_matmul, 2, in, IV(0, 1), NULL);
  ck_assert_ptr_null(in[0]->grad);
  release_all(2, in);
}
END_TEST

/* ---------------------------------------------------------------- indexing, cat, views */
static fvl_tensor *b_index(fvl_tensor **in, const int64_t *iv, const double *dv) {
  fvl_tensor *idx = fvl_from_data(FVL_I32, 1, SHAPE(5), (int32_t[]){2, 0, 2, 3, 2});
  fvl_tensor *r = fvl_index_select(in[0], (int)iv[0], idx);
  R(idx);
  return r;
}
static fvl_tensor *b_gather(fvl_tensor **in, const int64_t *iv, const double *dv) {
  fvl_tensor *idx = iv[0] == 1 ? fvl_from_data(FVL_I32, 2, SHAPE(4, 2), (int32_t[]){0, 3, 1, 1, 3, 2, 0, 0})
                               : fvl_from_data(FVL_I32, 2, SHAPE(2, 4), (int32_t[]){3, 0, 1, 1, 0, 0, 2, 3});
  fvl_tensor *r = fvl_gather(in[0], (int)iv[0], idx);
  R(idx);
  return r;
}
static fvl_tensor *b_cat(fvl_tensor **in, const int64_t *iv, const double *dv) {
  return fvl_cat(3, in, (int)iv[0]);
}
START_TEST(grad_index_gather_cat) {
  fvl_rng_seed(fvl_rng_global(), 10);
  fvl_tensor *in[3] = {leaf(2, SHAPE(4, 4), -1, 1)};
  GC("index dim 1 (repeated rows)", b_index, 1, in, IV(0), NULL);
  GC("index dim 2 (repeated cols)", b_index, 1, in, IV(1), NULL);
  GC("gather dim 2", b_gather, 1, in, IV(1), NULL);
  GC("gather dim 1", b_gather, 1, in, IV(0), NULL);
  release_all(1, in);
  in[0] = leaf(2, SHAPE(2, 3), -1, 1);
  in[1] = fvl_rand(2, SHAPE(1, 3), -1, 1);   /* a constant in the middle */
  in[2] = leaf(2, SHAPE(3, 3), -1, 1);
  GC("cat dim 1", b_cat, 3, in, IV(0), NULL);
  release_all(3, in);
  in[0] = leaf(2, SHAPE(2, 1), -1, 1);
  in[1] = leaf(2, SHAPE(2, 3), -1, 1);
  in[2] = leaf(2, SHAPE(2, 2), -1, 1);
  GC("cat dim 2", b_cat, 3, in, IV(1), NULL);
  release_all(3, in);
}
END_TEST

static fvl_tensor *b_views(fvl_tensor **in, const int64_t *iv, const double *dv) {
  fvl_tensor *x = in[0], *a = NULL, *b = NULL, *r = NULL;
  switch (iv[0]) {
    case 0: return fvl_narrow(x, 1, 1, 2);
    case 1: return fvl_select(x, 0, 2);
    case 2: return fvl_transpose(x, 0, 2);
    case 3: return fvl_reshape(x, 2, SHAPE(6, -1));
    case 4:  /* reshape of a non-contiguous view (the copying path) */
      a = fvl_transpose(x, 1, 2);
      r = fvl_reshape(a, 2, SHAPE(-1, 3));
      R(a);
      return r;
    case 5: return fvl_unsqueeze(x, 1);
    case 6: return fvl_clone(x);
    case 7:  /* contiguous of a transpose, then narrow of that, then select */
      a = fvl_transpose(x, 0, 1);
      b = fvl_contiguous(a);
      r = fvl_select(b, 2, 3);
      R(a); R(b);
      return r;
    default:  /* the same element reached by two views: gradients add */
      a = fvl_narrow(x, 2, 0, 3);
      b = fvl_narrow(x, 2, 1, 3);
      r = fvl_binary(FVL_MUL, a, b);
      R(a); R(b);
      return r;
  }
}
START_TEST(grad_views) {
  fvl_rng_seed(fvl_rng_global(), 11);
  const char *names[] = {"narrow", "select", "transpose", "reshape", "reshape of transpose",
                         "unsqueeze", "clone", "contiguous+select", "overlapping narrows"};
  for (int k = 0; k < 9; k++) {
    fvl_tensor *in[1] = {leaf(3, SHAPE(3, 4, 4), -1, 1)};
    GC(names[k], b_views, 1, in, IV(k), NULL);
    release_all(1, in);
  }
}
END_TEST

/* a small margin-softmax-like composition through many ops at once */
static fvl_tensor *b_composite(fvl_tensor **in, const int64_t *iv, const double *dv) {
  fvl_tensor *xn = fvl_normalize(in[0], 1, 1e-12), *wn = fvl_normalize(in[1], 1, 1e-12);
  fvl_tensor *wt = fvl_transpose(wn, 0, 1);
  fvl_tensor *cos = fvl_matmul(xn, wt);
  fvl_tensor *cl = fvl_clamp(cos, -0.999, 0.999);
  fvl_tensor *th = fvl_unary(FVL_ACOS, cl);
  fvl_tensor *thm = fvl_binary_scalar(FVL_ADD, th, 0.3, 0);
  fvl_tensor *cm = fvl_unary(FVL_COS, thm);
  fvl_tensor *logits = fvl_binary_scalar(FVL_MUL, cm, 4, 0);
  fvl_tensor *lse = fvl_logsumexp(logits, 1, 0);
  fvl_tensor *r = fvl_mean(lse, -1, 0);
  R(xn); R(wn); R(wt); R(cos); R(cl); R(th); R(thm); R(cm); R(logits); R(lse);
  return r;
}
START_TEST(grad_composite) {
  fvl_rng_seed(fvl_rng_global(), 12);
  fvl_tensor *in[2] = {leaf(2, SHAPE(4, 3), -1, 1), leaf(2, SHAPE(5, 3), -1, 1)};
  gradcheck_("normalize/matmul/clamp/acos/cos/logsumexp/mean", b_composite, 2, in, NULL, NULL, 1e-3, 2e-3);
  release_all(2, in);
}
END_TEST

/* ---------------------------------------------------------------- tape mechanics */
START_TEST(tape_accumulation) {
  /* y = x*x + x (two paths through x) → dy/dx = 2x + 1 */
  fvl_tensor *x = fvl_from_data(FVL_F32, 1, SHAPE(3), (float[]){1, -2, 0.5f});
  x->requires_grad = 1;
  fvl_tensor *xx = fvl_binary(FVL_MUL, x, x), *y = fvl_binary(FVL_ADD, xx, x), *s = fvl_sum(y, -1, 0);
  ck_assert(y->requires_grad && y->grad_fn != NULL);
  ck_assert_str_eq(y->grad_fn->name, "add");
  ck_assert_int_eq(fvl_backward(s, NULL), 0);
  ck_assert_float_eq(fvl_f32(x->grad)[0], 3);
  ck_assert_float_eq(fvl_f32(x->grad)[1], -3);
  ck_assert_float_eq(fvl_f32(x->grad)[2], 2);
  /* a second backward through the same graph is refused with a message */
  ck_assert_int_eq(fvl_backward(s, NULL), -1);
  ck_assert_ptr_nonnull(strstr(fvl_errmsg(), "already used"));
  /* a new graph adds into the existing .grad */
  fvl_tensor *y2 = fvl_binary_scalar(FVL_MUL, x, 10, 0), *s2 = fvl_sum(y2, -1, 0);
  ck_assert_int_eq(fvl_backward(s2, NULL), 0);
  ck_assert_float_eq(fvl_f32(x->grad)[0], 13);
  ck_assert_float_eq(fvl_f32(x->grad)[2], 12);
  R(x); R(xx); R(y); R(s); R(y2); R(s2);
}
END_TEST

START_TEST(tape_roots_and_modes) {
  fvl_tensor *x = fvl_from_data(FVL_F32, 2, SHAPE(2, 2), (float[]){1, 2, 3, 4});
  x->requires_grad = 1;
  fvl_tensor *y = fvl_binary_scalar(FVL_MUL, x, 3, 0);
  /* non-scalar root: refused without a gradient, accepted with one */
  ck_assert_int_eq(fvl_backward(y, NULL), -1);
  ck_assert_ptr_nonnull(strstr(fvl_errmsg(), "backward: the tensor is 2x2"));
  fvl_tensor *g = fvl_from_data(FVL_F32, 2, SHAPE(2, 2), (float[]){1, 0, -1, 2});
  fvl_tensor *gbad = fvl_zeros(FVL_F32, 1, SHAPE(4));
  ck_assert_int_eq(fvl_backward(y, gbad), -1);
  ck_assert_ptr_nonnull(strstr(fvl_errmsg(), "does not match"));
  ck_assert_int_eq(fvl_backward(y, g), 0);
  ck_assert_float_eq(fvl_f32(x->grad)[0], 3);
  ck_assert_float_eq(fvl_f32(x->grad)[2], -3);
  ck_assert_float_eq(fvl_f32(x->grad)[3], 6);
  /* no grad mode: nothing is recorded; backward on such a tensor says why */
  int prev = fvl_set_grad_enabled(0);
  ck_assert_int_eq(prev, 1);
  fvl_tensor *z = fvl_binary_scalar(FVL_MUL, x, 3, 0), *zs = fvl_sum(z, -1, 0);
  ck_assert(!z->requires_grad && z->grad_fn == NULL);
  ck_assert_int_eq(fvl_set_grad_enabled(prev), 0);
  ck_assert_int_eq(fvl_grad_enabled(), 1);
  ck_assert_int_eq(fvl_backward(zs, NULL), -1);
  ck_assert_ptr_nonnull(strstr(fvl_errmsg(), "does not require grad"));
  /* detach cuts the graph but shares storage */
  fvl_tensor *d = fvl_detach(x);
  ck_assert(!d->requires_grad && d->grad_fn == NULL);
  ck_assert_ptr_eq(d->st, x->st);
  fvl_tensor *w = fvl_binary(FVL_MUL, x, d), *ws = fvl_sum(w, -1, 0);   /* d/dx (x * const) = const */
  R(x->grad); x->grad = NULL;
  ck_assert_int_eq(fvl_backward(ws, NULL), 0);
  for (int i = 0; i < 4; i++) ck_assert_float_eq(fvl_f32(x->grad)[i], (float)(i + 1));
  /* backward of a leaf itself */
  fvl_tensor *l = fvl_scalar(2);
  l->requires_grad = 1;
  ck_assert_int_eq(fvl_backward(l, NULL), 0);
  ck_assert_float_eq(fvl_f32(l->grad)[0], 1);
  /* int32 inputs never require grad; comparisons are not tracked */
  fvl_tensor *c = fvl_compare_scalar(FVL_GT, x, 2);
  ck_assert(!c->requires_grad);
  R(x); R(y); R(g); R(gbad); R(z); R(zs); R(d); R(w); R(ws); R(l); R(c);
}
END_TEST

/* sum_to reduces a broadcast gradient to an input's shape */
START_TEST(tape_sum_to) {
  fvl_tensor *g = fvl_full(FVL_F32, 3, SHAPE(2, 3, 4), 1);
  fvl_tensor *s1 = fvl_zeros(FVL_F32, 2, SHAPE(3, 1)), *s2 = fvl_zeros(FVL_F32, 0, NULL), *s3 = fvl_zeros(FVL_F32, 3, SHAPE(2, 1, 4));
  fvl_tensor *r1 = fvl_sum_to(g, s1), *r2 = fvl_sum_to(g, s2), *r3 = fvl_sum_to(g, s3), *r4 = fvl_sum_to(g, g);
  ck_assert(fvl_same_shape(r1, s1));
  ck_assert(fvl_same_shape(r2, s2));
  ck_assert(fvl_same_shape(r3, s3));
  ck_assert_ptr_eq(r4, g);
  ck_assert_float_eq(fvl_f32(r1)[0], 8);
  ck_assert_float_eq(fvl_f32(r2)[0], 24);
  ck_assert_float_eq(fvl_f32(r3)[5], 3);
  R(g); R(s1); R(s2); R(s3); R(r1); R(r2); R(r3); R(r4);
}
END_TEST

/* a custom op through the public node API, with a deliberately wrong backward: gradcheck must
 * say MISMATCH and name the worst element */
static int bw_wrong(fvl_node *n, fvl_tensor *g) {
  fvl_tensor *gi = fvl_binary_scalar(FVL_MUL, g, 3, 0);   /* should be 2 */
  int rc = fvl_node_accum(n, 0, gi);
  R(gi);
  return rc;
}
static fvl_tensor *b_wrong(fvl_tensor **in, const int64_t *iv, const double *dv) {
  int prev = fvl_set_grad_enabled(0);
  fvl_tensor *out = fvl_binary_scalar(FVL_MUL, in[0], 2, 0);
  fvl_set_grad_enabled(prev);
  fvl_record("double_wrong", bw_wrong, out, 1, in);
  return out;
}
static int bw_badshape(fvl_node *n, fvl_tensor *g) {
  fvl_tensor *gi = fvl_zeros(FVL_F32, 1, SHAPE(7));
  int rc = fvl_node_accum(n, 0, gi);
  R(gi);
  return rc;
}
START_TEST(gradcheck_reports_mismatch) {
  fvl_rng_seed(fvl_rng_global(), 13);
  fvl_tensor *in[1] = {leaf(1, SHAPE(4), -1, 1)};
  closure c = {.build = b_wrong};
  char rep[512];
  int ok = fvl_gradcheck(scalar_fn, &c, 1, in, 1e-2, 1e-3, 1e-2, rep, sizeof rep);
  ck_assert_int_eq(ok, 0);
  ck_assert_msg(strstr(rep, "input 1: MISMATCH") != NULL, "report: %s", rep);
  ck_assert_msg(strstr(rep, "analytic") && strstr(rep, "numeric"), "report: %s", rep);
  /* a backward that produces the wrong shape is an error naming the op */
  fvl_tensor *out = fvl_binary_scalar(FVL_MUL, in[0], 1, 0);
  fvl_node *n = out->grad_fn;
  n->backward = bw_badshape;
  n->name = "badshape";
  fvl_tensor *s = fvl_sum(out, -1, 0);
  ck_assert_int_eq(fvl_backward(s, NULL), -1);
  ck_assert_msg(strstr(fvl_errmsg(), "backward of badshape: gradient 7 does not match in[0] of shape 4 (0-based)"), "%s", fvl_errmsg());
  R(out); R(s);
  release_all(1, in);
}
END_TEST

/* long chains: building, backward and freeing 200k nodes must not overflow the C stack */
START_TEST(tape_long_chain) {
  fvl_tensor *x = fvl_scalar(1);
  x->requires_grad = 1;
  fvl_tensor *y = fvl_retain(x);
  for (int i = 0; i < 200000; i++) {
    fvl_tensor *n = fvl_binary_scalar(FVL_ADD, y, 1e-3, 0);
    R(y);
    y = n;
  }
  ck_assert_int_eq(fvl_backward(y, NULL), 0);
  ck_assert_float_eq(fvl_f32(x->grad)[0], 1);
  R(y);   /* frees the whole chain */
  /* and a chain that is never walked by backward */
  y = fvl_retain(x);
  for (int i = 0; i < 200000; i++) {
    fvl_tensor *n = fvl_binary_scalar(FVL_MUL, y, 1, 0);
    R(y);
    y = n;
  }
  R(y);
  R(x);
}
END_TEST

/* ---------------------------------------------------------------- random view chains */
#include "view_oracle.h"

/* random chains of views of a leaf: the gradient of Σ w ⊙ view lands exactly on the leaf
 * elements the view reads (each at most once), zero elsewhere */
START_TEST(grad_view_chains_random) {
  vc_state = 777;
  for (int trial = 0; trial < 200; trial++) {
    fvl_tensor *x = fvl_randn(4, SHAPE(2, 3, 4, 5), 0, 1);
    x->requires_grad = 1;
    fvl_tensor *v = fvl_retain(x);
    refview r = {.nd = 4, .sz = {2, 3, 4, 5}, .n = 120};
    r.ix = malloc(sizeof(int64_t) * 120);
    for (int64_t k = 0; k < 120; k++) r.ix[k] = k;
    char log[1024] = "";
    int steps = 1 + (int)vc_rand(6);
    for (int step = 0; step < steps; step++) v = vc_step(v, &r, log, sizeof log);
    fvl_tensor *w = fvl_empty(FVL_F32, r.nd, r.sz);
    for (int64_t k = 0; k < r.n; k++) fvl_f32(w)[k] = (float)(k + 1);
    fvl_tensor *p = fvl_binary(FVL_MUL, v, w), *s = fvl_sum(p, -1, 0);
    ck_assert_msg(fvl_backward(s, NULL) == 0, "%s: %s", log, fvl_errmsg());
    float want[120] = {0};
    for (int64_t k = 0; k < r.n; k++) {
      ck_assert_msg(want[r.ix[k]] == 0, "%s: element %lld read twice", log, (long long)r.ix[k]);
      want[r.ix[k]] = (float)(k + 1);
    }
    if (r.n == 0) ck_assert(x->grad == NULL || fvl_f32(x->grad)[0] == 0);
    else {
      ck_assert_msg(x->grad != NULL, "%s: no gradient", log);
      for (int k = 0; k < 120; k++)
        ck_assert_msg(fvl_f32(x->grad)[k] == want[k], "%s: grad[%d] = %g, expected %g", log, k, fvl_f32(x->grad)[k], want[k]);
    }
    free(r.ix);
    R(v); R(w); R(p); R(s); R(x);
  }
}
END_TEST


/* ---------------------------------------------------------------- broadcast backward */
/* every pair of shapes of rank 0..3 with sizes 1, 2, 3 that broadcast: the gradients of
 * Σ w ⊙ (a op b) against sums computed here element by element (sum_to over every pattern of
 * size-1 dims and missing leading dims) */
static int bb_n;
static int64_t bb_shape[64][4];
static int bb_rank[64];
static void bb_make(void) {
  bb_n = 0;
  for (int r = 0; r <= 3; r++) {
    int combos = 1;
    for (int d = 0; d < r; d++) combos *= 3;
    for (int c = 0; c < combos; c++) {
      int v = c;
      for (int d = 0; d < r; d++) { bb_shape[bb_n][d] = 1 + v % 3; v /= 3; }
      bb_rank[bb_n++] = r;
    }
  }
}
START_TEST(grad_broadcast_all_shapes) {
  bb_make();
  fvl_rng_seed(fvl_rng_global(), 31);
  int checked = 0;
  for (int sa = 0; sa < bb_n; sa++)
    for (int sb = 0; sb < bb_n; sb++) {
      int ra = bb_rank[sa], rb = bb_rank[sb], rn = ra > rb ? ra : rb, ok = 1;
      int64_t out[4];
      for (int d = 0; d < rn; d++) {
        int da = d - (rn - ra), db = d - (rn - rb);
        int64_t x = da >= 0 ? bb_shape[sa][da] : 1, y = db >= 0 ? bb_shape[sb][db] : 1;
        if (x != y && x != 1 && y != 1) ok = 0;
        out[d] = x == 1 ? y : x;
      }
      if (!ok) continue;
      fvl_binop op = (sa + sb) % 3 == 0 ? FVL_ADD : (sa + sb) % 3 == 1 ? FVL_MUL : FVL_DIV;
      fvl_tensor *a = leaf(ra, bb_shape[sa], 0.5f, 2), *b = leaf(rb, bb_shape[sb], 0.5f, 2);
      fvl_tensor *y = fvl_binary(op, a, b);
      fvl_tensor *w = fvl_empty(FVL_F32, rn, out);
      int64_t n = fvl_numel(w);
      for (int64_t k = 0; k < n; k++) fvl_f32(w)[k] = (float)(0.25 * (double)((k * 5) % 7) - 0.6);
      fvl_tensor *p = fvl_binary(FVL_MUL, y, w), *s = fvl_sum(p, -1, 0);
      ck_assert_int_eq(fvl_backward(s, NULL), 0);
      double ga[27] = {0}, gb[27] = {0};
      for (int64_t k = 0; k < n; k++) {
        int64_t idx[4], q = k, ia = 0, ib = 0;
        for (int d = rn - 1; d >= 0; d--) { idx[d] = q % out[d]; q /= out[d]; }
        for (int d = 0; d < ra; d++) ia = ia * bb_shape[sa][d] + (bb_shape[sa][d] == 1 ? 0 : idx[d + rn - ra]);
        for (int d = 0; d < rb; d++) ib = ib * bb_shape[sb][d] + (bb_shape[sb][d] == 1 ? 0 : idx[d + rn - rb]);
        double x = fvl_f32(a)[ia], z = fvl_f32(b)[ib], wk = fvl_f32(w)[k];
        if (op == FVL_ADD) { ga[ia] += wk; gb[ib] += wk; }
        else if (op == FVL_MUL) { ga[ia] += wk * z; gb[ib] += wk * x; }
        else { ga[ia] += wk / z; gb[ib] -= wk * x / (z * z); }
      }
      for (int64_t i = 0; i < fvl_numel(a); i++)
        ck_assert_msg(fabs(fvl_f32(a->grad)[i] - ga[i]) <= 1e-5 * (1 + fabs(ga[i])), "op %d shapes #%d #%d: grad a[%lld] = %.7g, expected %.7g",
                      op, sa, sb, (long long)i, fvl_f32(a->grad)[i], ga[i]);
      for (int64_t i = 0; i < fvl_numel(b); i++)
        ck_assert_msg(fabs(fvl_f32(b->grad)[i] - gb[i]) <= 1e-5 * (1 + fabs(gb[i])), "op %d shapes #%d #%d: grad b[%lld] = %.7g, expected %.7g",
                      op, sa, sb, (long long)i, fvl_f32(b->grad)[i], gb[i]);
      checked++;
      R(a); R(b); R(y); R(w); R(p); R(s);
    }
  ck_assert_int_gt(checked, 800);
}
END_TEST

/* ---------------------------------------------------------------- hooks */
/* the start hook sees every leaf of the graph once, sorted by address, before any node runs; the
   gradient hook sees each leaf once with its final gradient; an error from either stops the
   backward with that message; a leaf root calls neither */
typedef struct { fvl_tensor *seen[8]; int nseen, nstart, fail_start; size_t nleaves; int sorted, grads_at_start; } hook_log;
static int start_cb(void *ud, fvl_tensor *const *leaves, size_t n) {
  hook_log *h = ud;
  h->nstart++;
  h->nleaves = n;
  h->sorted = 1;
  for (size_t i = 1; i < n; i++) if ((uintptr_t)leaves[i - 1] >= (uintptr_t)leaves[i]) h->sorted = 0;
  for (size_t i = 0; i < n; i++) h->grads_at_start += leaves[i]->grad != NULL;
  return h->fail_start ? fvl_err("start hook: refused") : 0;
}
static int grad_cb(void *ud, fvl_tensor *leaf) {
  hook_log *h = ud;
  ck_assert_ptr_nonnull(leaf->grad);
  if (h->nseen < 8) h->seen[h->nseen++] = leaf;
  return 0;
}
START_TEST(tape_hooks) {
  int64_t sz[1] = {4};
  fvl_tensor *a = leaf(1, sz, 0.5f, 2), *b = leaf(1, sz, 0.5f, 2), *unused = leaf(1, sz, 0.5f, 2);
  hook_log h = {0};
  fvl_set_grad_hook(grad_cb, &h, NULL, NULL);
  fvl_set_grad_start_hook(start_cb, &h, NULL, NULL);
  /* a is used twice (two paths), b once */
  fvl_tensor *p = fvl_binary(FVL_MUL, a, b), *q = fvl_binary(FVL_ADD, p, a), *s = fvl_sum(q, -1, 0);
  ck_assert_int_eq(fvl_backward(s, NULL), 0);
  ck_assert_int_eq(h.nstart, 1);
  ck_assert_int_eq((int)h.nleaves, 2);
  ck_assert(h.sorted);
  ck_assert_int_eq(h.grads_at_start, 0);
  ck_assert_int_eq(h.nseen, 2);
  ck_assert((h.seen[0] == a && h.seen[1] == b) || (h.seen[0] == b && h.seen[1] == a));
  ck_assert_ptr_null(unused->grad);
  R(p); R(q); R(s);
  /* an error from the start hook: no node runs, no gradient moves */
  h.fail_start = 1;
  h.nseen = 0;
  p = fvl_binary(FVL_MUL, a, b);
  s = fvl_sum(p, -1, 0);
  float before = fvl_f32(b->grad)[0];
  ck_assert_int_eq(fvl_backward(s, NULL), -1);
  ck_assert_msg(strstr(fvl_errmsg(), "start hook: refused") != NULL, "%s", fvl_errmsg());
  ck_assert_int_eq(h.nseen, 0);
  ck_assert(fvl_f32(b->grad)[0] == before);
  R(p); R(s);
  /* removed: no calls */
  fvl_set_grad_hook(NULL, NULL, NULL, NULL);
  fvl_set_grad_start_hook(NULL, NULL, NULL, NULL);
  h.nstart = 0;
  p = fvl_binary(FVL_MUL, a, b);
  s = fvl_sum(p, -1, 0);
  ck_assert_int_eq(fvl_backward(s, NULL), 0);
  ck_assert_int_eq(h.nstart, 0);
  R(p); R(s); R(a); R(b); R(unused);
}
END_TEST

int main(void) {
  Suite *s = suite_create("autograd");
  TCase *tc = tcase_create("gradcheck");
  tcase_set_timeout(tc, 120);
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, grad_binary_broadcast);
  tcase_add_test(tc, grad_binary_scalar);
  tcase_add_test(tc, grad_pow_at_zero);
  tcase_add_test(tc, grad_maximum_ties);
  tcase_add_test(tc, grad_unary);
  tcase_add_test(tc, grad_unary_of_view);
  tcase_add_test(tc, grad_clamp);
  tcase_add_test(tc, grad_where);
  tcase_add_test(tc, grad_reductions);
  tcase_add_test(tc, grad_max_positions);
  tcase_add_test(tc, grad_normalize);
  tcase_add_test(tc, grad_matmul);
  tcase_add_test(tc, grad_index_gather_cat);
  tcase_add_test(tc, grad_views);
  tcase_add_test(tc, grad_composite);
  tcase_add_test(tc, grad_view_chains_random);
  tcase_add_test(tc, grad_broadcast_all_shapes);
  suite_add_tcase(s, tc);
  TCase *tp = tcase_create("tape");
  tcase_set_timeout(tp, 120);
  tcase_add_checked_fixture(tp, setup, teardown);
  tcase_add_test(tp, tape_accumulation);
  tcase_add_test(tp, tape_roots_and_modes);
  tcase_add_test(tp, tape_sum_to);
  tcase_add_test(tp, gradcheck_reports_mismatch);
  tcase_add_test(tp, tape_long_chain);
  tcase_add_test(tp, tape_hooks);
  suite_add_tcase(s, tp);
  return fvl_check_run(s);
}
