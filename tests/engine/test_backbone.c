/* test_backbone.c — grouped/depthwise convolutions and the fused BatchNorm + PReLU against
 * double-precision references, central finite differences of those references, and the
 * unfused kernels (conv2d with groups = 1, batchnorm then prelu). */
#include <check.h>
#include "fvl_check.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include "core.h"
#include "nn/backbone.h"

static uint64_t state = 977;
static double unif(void) {
  state = state * 6364136223846793005ULL + 1442695040888963407ULL;
  return (double)(state >> 11) / 9007199254740992.0 * 2 - 1;   /* [-1, 1) */
}
static double *dvec(size_t n) {
  double *a = malloc(sizeof(double) * (n ? n : 1));
  for (size_t i = 0; i < n; i++) a[i] = unif();
  return a;
}
static float *fvec(const double *a, size_t n) {
  float *f = malloc(sizeof(float) * (n ? n : 1));
  for (size_t i = 0; i < n; i++) f[i] = (float)a[i];
  return f;
}
static void near(const char *what, const float *a, const double *e, size_t n, double tol) {
  for (size_t i = 0; i < n; i++)
    ck_assert_msg(fabs(a[i] - e[i]) <= tol * (1 + fabs(e[i])), "%s[%zu] = %.9g, expected %.9g", what, i,
                  (double)a[i], e[i]);
}
typedef double (*objective)(void *);
/* central differences of f with respect to p[0..n) */
static double *fd(objective f, void *ctx, double *p, size_t n, double h) {
  double *g = malloc(sizeof(double) * (n ? n : 1));
  for (size_t i = 0; i < n; i++) {
    const double v = p[i];
    p[i] = v + h;
    const double up = f(ctx);
    p[i] = v - h;
    const double dn = f(ctx);
    p[i] = v;
    g[i] = (up - dn) / (2 * h);
  }
  return g;
}

/* ---------------------------------------------------------------- grouped convolution */
typedef struct {
  fvl_conv2d_shape s;
  int groups;
  double *x, *w, *b, *r;
} gconv;

static double gconv_objective(void *p) {   /* L = Σ r · conv(x, w) + b, in double */
  const gconv *c = p;
  const fvl_conv2d_shape *s = &c->s;
  const int cpg = s->C / c->groups, opg = s->O / c->groups;
  double L = 0;
  for (int n = 0; n < s->B; n++)
    for (int o = 0; o < s->O; o++)
      for (int oh = 0; oh < s->OH; oh++)
        for (int ow = 0; ow < s->OW; ow++) {
          double acc = c->b[o];
          for (int cl = 0; cl < cpg; cl++)
            for (int i = 0; i < s->KH; i++)
              for (int j = 0; j < s->KW; j++) {
                const int h = oh * s->sh - s->ph + i, ww = ow * s->sw - s->pw + j;
                if (h < 0 || h >= s->H || ww < 0 || ww >= s->W) continue;
                const int ci = (o / opg) * cpg + cl;
                acc += c->x[((size_t)(n * s->C + ci) * s->H + h) * s->W + ww] *
                       c->w[((size_t)(o * cpg + cl) * s->KH + i) * s->KW + j];
              }
          L += acc * c->r[((size_t)(n * s->O + o) * s->OH + oh) * s->OW + ow];
        }
  return L;
}

static void check_grouped(int B, int C, int H, int W, int O, int K, int stride, int pad, int groups) {
  gconv c = {.s = {.B = B, .C = C, .H = H, .W = W, .O = O, .KH = K, .KW = K, .sh = stride, .sw = stride,
                   .ph = pad, .pw = pad}, .groups = groups};
  ck_assert_int_eq(fvl_conv2d_plan(&c.s), 0);
  const fvl_conv2d_shape *s = &c.s;
  const size_t nx = (size_t)B * C * H * W, nw = (size_t)O * (C / groups) * K * K,
               ny = (size_t)B * O * s->OH * s->OW;
  c.x = dvec(nx); c.w = dvec(nw); c.b = dvec(O); c.r = dvec(ny);
  float *x = fvec(c.x, nx), *w = fvec(c.w, nw), *b = fvec(c.b, O), *r = fvec(c.r, ny);
  float *y = malloc(sizeof(float) * ny), *dx = malloc(sizeof(float) * nx), *dw = malloc(sizeof(float) * nw),
        *db = malloc(sizeof(float) * O);
  ck_assert_int_eq(fvl_conv2d_grouped_fwd(s, groups, x, w, b, y), 0);
  /* forward: y·r against the reference objective, and every value through a one-hot r */
  double *ey = malloc(sizeof(double) * ny), *keep = c.r;
  c.r = calloc(ny, sizeof(double));
  for (size_t i = 0; i < ny; i++) {
    c.r[i] = 1;
    ey[i] = gconv_objective(&c);
    c.r[i] = 0;
  }
  free(c.r);
  c.r = keep;
  near("grouped y", y, ey, ny, 1e-5);
  ck_assert_int_eq(fvl_conv2d_grouped_bwd(s, groups, x, w, r, dx, dw, db), 0);
  /* L is linear in x, w, b: central differences with a large step are exact up to rounding */
  double *gx = fd(gconv_objective, &c, c.x, nx, 0.5), *gw = fd(gconv_objective, &c, c.w, nw, 0.5),
         *gb = fd(gconv_objective, &c, c.b, O, 0.5);
  near("grouped dx", dx, gx, nx, 1e-5);
  near("grouped dw", dw, gw, nw, 1e-5);
  near("grouped db", db, gb, O, 1e-5);
  /* groups = 1: the same numbers as the im2col/direct path */
  if (groups == 1) {
    float *y2 = malloc(sizeof(float) * ny), *work = malloc(sizeof(float) * fvl_conv2d_workspace(s));
    ck_assert_int_eq(fvl_conv2d_fwd(s, x, w, b, y2, work), 0);
    for (size_t i = 0; i < ny; i++) ck_assert_float_eq_tol(y[i], y2[i], 1e-4f * (1 + fabsf(y2[i])));
    free(y2); free(work);
  }
  free(c.x); free(c.w); free(c.b); free(c.r); free(x); free(w); free(b); free(r); free(y); free(dx);
  free(dw); free(db); free(ey); free(gx); free(gw); free(gb);
}

START_TEST(depthwise) {
  check_grouped(2, 4, 7, 6, 4, 3, 1, 1, 4);   /* depthwise 3×3, stride 1 */
  check_grouped(2, 3, 8, 9, 3, 3, 2, 1, 3);   /* depthwise 3×3, stride 2 (odd width) */
  check_grouped(3, 5, 7, 7, 5, 7, 1, 0, 5);   /* the global depthwise conv: 7×7 → 1×1 */
}
END_TEST
/* the vectorised depthwise kernels (conv_dw.c): rows past one vector with tails, more rows than
 * one 4-row block, even and odd widths at stride 2, no padding, a 5×5 kernel (the generic tap
 * loop), stride 3 */
START_TEST(depthwise_vector_shapes) {
  check_grouped(2, 3, 19, 13, 3, 3, 1, 1, 3);
  check_grouped(1, 2, 12, 20, 2, 3, 2, 1, 2);
  check_grouped(2, 2, 9, 11, 2, 3, 1, 0, 2);
  check_grouped(1, 2, 10, 17, 2, 5, 1, 2, 2);
  check_grouped(1, 2, 11, 10, 2, 3, 2, 0, 2);
  check_grouped(1, 2, 10, 11, 2, 5, 3, 2, 2);
}
END_TEST

/* the vectorised kernels against the generic grouped loops (the reference path), and the same
 * bits for any thread count */
static void dw_run(const fvl_conv2d_shape *s, const float *x, const float *w, const float *b, const float *r,
                   float *out) {
  const size_t nx = (size_t)s->B * s->C * s->H * s->W, ny = (size_t)s->B * s->O * s->OH * s->OW;
  const size_t nw = (size_t)s->O * s->KH * s->KW;
  ck_assert_int_eq(fvl_conv2d_grouped_fwd(s, s->C, x, w, b, out), 0);
  ck_assert_int_eq(fvl_conv2d_grouped_bwd(s, s->C, x, w, r, out + ny, out + ny + nx, out + ny + nx + nw), 0);
}
START_TEST(depthwise_reference) {
  const int shapes[][5] = {{28, 28, 3, 1, 1}, {28, 28, 3, 2, 1}, {14, 14, 3, 1, 1}, {7, 7, 7, 1, 0}, {9, 23, 3, 2, 1}};
  for (size_t t = 0; t < sizeof shapes / sizeof shapes[0]; t++) {
    fvl_conv2d_shape s = {.B = 3, .C = 5, .H = shapes[t][0], .W = shapes[t][1], .O = 5, .KH = shapes[t][2],
                          .KW = shapes[t][2], .sh = shapes[t][3], .sw = shapes[t][3], .ph = shapes[t][4],
                          .pw = shapes[t][4]};
    ck_assert_int_eq(fvl_conv2d_plan(&s), 0);
    const size_t nx = (size_t)s.B * s.C * s.H * s.W, ny = (size_t)s.B * s.O * s.OH * s.OW,
                 nw = (size_t)s.O * s.KH * s.KW, n = ny + nx + nw + s.O;
    double *dx0 = dvec(nx), *dw0 = dvec(nw), *db0 = dvec(s.O), *dr = dvec(ny);
    float *x = fvec(dx0, nx), *w = fvec(dw0, nw), *b = fvec(db0, s.O), *r = fvec(dr, ny);
    float *fast = malloc(sizeof(float) * n), *ref = malloc(sizeof(float) * n), *other = malloc(sizeof(float) * n);
    dw_run(&s, x, w, b, r, fast);
    const int old = fvl_conv2d_set_depthwise(0);
    dw_run(&s, x, w, b, r, ref);
    fvl_conv2d_set_depthwise(old);
    for (size_t i = 0; i < n; i++)
      ck_assert_msg(fabsf(fast[i] - ref[i]) <= 1e-5f * (1 + fabsf(ref[i])), "shape %zu: [%zu] = %.9g, reference %.9g",
                    t, i, fast[i], ref[i]);
#ifdef _OPENMP
    const int threads = omp_get_max_threads();
    omp_set_num_threads(threads == 1 ? 2 : 1);
    dw_run(&s, x, w, b, r, other);
    omp_set_num_threads(threads);
    ck_assert_int_eq(memcmp(fast, other, sizeof(float) * n), 0);
#endif
    free(dx0); free(dw0); free(db0); free(dr); free(x); free(w); free(b); free(r); free(fast); free(ref); free(other);
  }
}
END_TEST
START_TEST(grouped) {
  check_grouped(2, 4, 6, 6, 4, 3, 1, 1, 2);   /* two channels per group (MobileFaceNet scale 2) */
  check_grouped(2, 6, 5, 5, 9, 3, 2, 1, 3);   /* 2 in, 3 out per group, stride 2 */
  check_grouped(2, 3, 5, 6, 4, 3, 2, 1, 1);   /* groups = 1: against the GEMM path */
  check_grouped(2, 3, 6, 5, 2, 1, 2, 0, 1);   /* 1×1 stride 2 */
}
END_TEST
START_TEST(grouped_threads) {
  for (int t = 1; t <= 3; t++) {
#ifdef _OPENMP
    omp_set_num_threads(t);
#endif
    check_grouped(3, 6, 5, 5, 6, 3, 2, 1, 6);
  }
#ifdef _OPENMP
  omp_set_num_threads(fvl_cpu_count());
#endif
}
END_TEST
START_TEST(grouped_errors) {
  fvl_conv2d_shape s = {.B = 1, .C = 4, .H = 3, .W = 3, .O = 6, .KH = 3, .KW = 3, .sh = 1, .sw = 1, .ph = 1, .pw = 1};
  ck_assert_int_eq(fvl_conv2d_plan(&s), 0);
  float buf[64] = {0};
  ck_assert_int_eq(fvl_conv2d_grouped_fwd(&s, 4, buf, buf, NULL, buf), -1);
  ck_assert_msg(strstr(fvl_errmsg(), "groups = 4 must divide the 4 input and 6 output") != NULL, "%s", fvl_errmsg());
}
END_TEST

/* ---------------------------------------------------------------- fused BatchNorm + PReLU */
typedef struct {
  int B, C, S, training, na;
  double *x, *g, *bt, *a, *r, *rm, *rv;
} bnp;

/* y = prelu(bn(x)) in double (y may be NULL), the statistics used (mean/invstd may be NULL);
 * returns L = Σ r·y */
static double bnp_forward(const bnp *c, double *y, double *mean_out, double *inv_out) {
  double L = 0;
  const double N = (double)c->B * c->S;
  for (int ch = 0; ch < c->C; ch++) {
    double mean = 0, var = 0;
    if (c->training) {
      for (int b = 0; b < c->B; b++)
        for (int i = 0; i < c->S; i++) mean += c->x[((size_t)b * c->C + ch) * c->S + i];
      mean /= N;
      for (int b = 0; b < c->B; b++)
        for (int i = 0; i < c->S; i++) {
          const double d = c->x[((size_t)b * c->C + ch) * c->S + i] - mean;
          var += d * d;
        }
      var /= N;
    } else {
      mean = c->rm[ch];
      var = c->rv[ch];
    }
    const double inv = 1 / sqrt(var + 1e-5), a = c->a[c->na == 1 ? 0 : ch];
    if (mean_out) mean_out[ch] = mean;
    if (inv_out) inv_out[ch] = inv;
    for (int b = 0; b < c->B; b++)
      for (int i = 0; i < c->S; i++) {
        const size_t k = ((size_t)b * c->C + ch) * c->S + i;
        const double z = (c->x[k] - mean) * inv * c->g[ch] + c->bt[ch], v = z > 0 ? z : a * z;
        if (y) y[k] = v;
        L += c->r[k] * v;
      }
  }
  return L;
}
static double bnp_objective(void *p) { return bnp_forward(p, NULL, NULL, NULL); }

static void check_bn_prelu(int B, int C, int S, int training, int na) {
  bnp c = {.B = B, .C = C, .S = S, .training = training, .na = na};
  const size_t n = (size_t)B * C * S;
  c.x = dvec(n); c.g = dvec(C); c.bt = dvec(C); c.a = dvec(na); c.r = dvec(n);
  c.rm = dvec(C); c.rv = dvec(C);
  for (int i = 0; i < C; i++) c.rv[i] = 0.5 + fabs(c.rv[i]);
  float *x = fvec(c.x, n), *g = fvec(c.g, C), *bt = fvec(c.bt, C), *a = fvec(c.a, na), *r = fvec(c.r, n);
  float *rm = fvec(c.rm, C), *rv = fvec(c.rv, C), *rm2 = fvec(c.rm, C), *rv2 = fvec(c.rv, C);
  float *y = malloc(sizeof(float) * n), *mean = malloc(sizeof(float) * C), *inv = malloc(sizeof(float) * C);
  float *dx = malloc(sizeof(float) * n), *dg = malloc(sizeof(float) * C), *db = malloc(sizeof(float) * C),
        *da = malloc(sizeof(float) * na);
  ck_assert_int_eq(fvl_bn_prelu_fwd(x, B, C, S, g, bt, a, na, rm, rv, training, 0.1, 1e-5, y, mean, inv), 0);
  fvl_bn_prelu_bwd(x, r, B, C, S, g, bt, a, na, mean, inv, training, dx, dg, db, da);
  /* the unfused kernels: batchnorm then prelu (forward, running statistics and backward) */
  float *z = malloc(sizeof(float) * n), *y2 = malloc(sizeof(float) * n), *m2 = malloc(sizeof(float) * C),
        *i2 = malloc(sizeof(float) * C), *dz = malloc(sizeof(float) * n), *dx2 = malloc(sizeof(float) * n),
        *dg2 = malloc(sizeof(float) * C), *db2 = malloc(sizeof(float) * C), *da2 = malloc(sizeof(float) * na);
  ck_assert_int_eq(fvl_batchnorm_fwd(x, B, C, S, g, bt, rm2, rv2, training, 0.1, 1e-5, z, m2, i2), 0);
  fvl_prelu_fwd(z, B, C, S, a, na, y2);
  fvl_prelu_bwd(z, r, B, C, S, a, na, dz, da2);
  fvl_batchnorm_bwd(x, dz, B, C, S, g, m2, i2, training, dx2, dg2, db2);
  /* the forward and the batch statistics against the double reference */
  double *ey = malloc(sizeof(double) * n);
  bnp_forward(&c, ey, NULL, NULL);
  near("bn_prelu y", y, ey, n, 1e-5);
  if (training) {
    double *em = malloc(sizeof(double) * C), *ei = malloc(sizeof(double) * C);
    bnp_forward(&c, NULL, em, ei);
    near("bn_prelu mean", mean, em, C, 1e-6);
    near("bn_prelu invstd", inv, ei, C, 1e-5);
    free(em); free(ei);
  }
  free(ey);
  const float tol = 2e-4f;
  for (size_t i = 0; i < n; i++) {
    ck_assert_float_eq_tol(y[i], y2[i], tol * (1 + fabsf(y2[i])));
    ck_assert_float_eq_tol(dx[i], dx2[i], tol * (1 + fabsf(dx2[i])));
  }
  for (int i = 0; i < C; i++) {
    ck_assert_float_eq_tol(rm[i], rm2[i], 1e-5f);
    ck_assert_float_eq_tol(rv[i], rv2[i], 1e-5f * (1 + rv2[i]));
    ck_assert_float_eq_tol(dg[i], dg2[i], tol * (1 + fabsf(dg2[i])));
    ck_assert_float_eq_tol(db[i], db2[i], tol * (1 + fabsf(db2[i])));
  }
  for (int i = 0; i < na; i++) ck_assert_float_eq_tol(da[i], da2[i], tol * (1 + fabsf(da2[i])));
  /* finite differences of the double reference (h small: L has kinks at z = 0) */
  double *ex = fd(bnp_objective, &c, c.x, n, 1e-6), *eg = fd(bnp_objective, &c, c.g, C, 1e-6),
         *eb = fd(bnp_objective, &c, c.bt, C, 1e-6), *ea = fd(bnp_objective, &c, c.a, na, 1e-6);
  near("bn_prelu dx", dx, ex, n, 1e-3);
  near("bn_prelu dgamma", dg, eg, C, 1e-3);
  near("bn_prelu dbeta", db, eb, C, 1e-3);
  near("bn_prelu da", da, ea, na, 1e-3);
  double *vals[] = {c.x, c.g, c.bt, c.a, c.r, c.rm, c.rv, ex, eg, eb, ea};
  for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) free(vals[i]);
  float *fl[] = {x, g, bt, a, r, rm, rv, rm2, rv2, y, mean, inv, dx, dg, db, da, z, y2, m2, i2, dz, dx2, dg2, db2, da2};
  for (size_t i = 0; i < sizeof fl / sizeof fl[0]; i++) free(fl[i]);
}

START_TEST(bn_prelu_train) {
  check_bn_prelu(3, 4, 10, 1, 4);
  check_bn_prelu(5, 3, 1, 1, 1);   /* 1-d, one shared PReLU weight */
}
END_TEST
START_TEST(bn_prelu_eval) {
  check_bn_prelu(2, 3, 7, 0, 3);
}
END_TEST
/* the vector loops: 8- and 16-wide bodies with scalar tails, planes longer than one partial-sum
 * block (512 values), one shared slope */
START_TEST(bn_prelu_vector_shapes) {
  check_bn_prelu(2, 3, 37, 1, 3);
  check_bn_prelu(2, 2, 531, 1, 1);
  check_bn_prelu(3, 2, 49, 0, 2);
}
END_TEST

/* statistics of values far from zero (mean 1000, spread 1): the shifted sums keep the variance */
START_TEST(bn_prelu_offset_stats) {
  const int B = 4, C = 3, S = 300;
  const size_t n = (size_t)B * C * S;
  float *x = malloc(sizeof(float) * n), *y = malloc(sizeof(float) * n), a[1] = {0.25f}, m[3], v[3];
  for (size_t i = 0; i < n; i++) x[i] = (float)(1000 + unif() * (1 + (double)((i / S) % C)));
  ck_assert_int_eq(fvl_bn_prelu_fwd(x, B, C, S, NULL, NULL, a, 1, NULL, NULL, 1, 0.1, 1e-5, y, m, v), 0);
  for (int ch = 0; ch < C; ch++) {
    double mean = 0, var = 0;
    for (int b = 0; b < B; b++)
      for (int i = 0; i < S; i++) mean += x[((size_t)b * C + ch) * S + i];
    mean /= B * S;
    for (int b = 0; b < B; b++)
      for (int i = 0; i < S; i++) var += pow(x[((size_t)b * C + ch) * S + i] - mean, 2);
    var /= B * S;
    ck_assert_msg(fabs(m[ch] - mean) <= 1e-7 * mean, "mean %.9g, expected %.9g", m[ch], mean);
    ck_assert_msg(fabs(v[ch] * sqrt(var + 1e-5) - 1) <= 1e-5, "invstd %.9g, expected %.9g", v[ch],
                  1 / sqrt(var + 1e-5));
  }
  free(x); free(y);
}
END_TEST

/* one thread per channel, fixed order: the same bits for any thread count */
START_TEST(bn_prelu_threads) {
#ifdef _OPENMP
  const int B = 3, C = 5, S = 77;
  const size_t n = (size_t)B * C * S;
  double *dx0 = dvec(n), *dr = dvec(n), *dg0 = dvec(C), *da0 = dvec(C);
  float *x = fvec(dx0, n), *r = fvec(dr, n), *g = fvec(dg0, C), *a = fvec(da0, C);
  float *out[2][5];
  const int threads[2] = {1, 3}, old = omp_get_max_threads();
  for (int t = 0; t < 2; t++) {
    omp_set_num_threads(threads[t]);
    float *y = malloc(sizeof(float) * n), *dx = malloc(sizeof(float) * n), *m = malloc(sizeof(float) * C),
          *v = malloc(sizeof(float) * C), *dgv = malloc(sizeof(float) * 3 * C);
    ck_assert_int_eq(fvl_bn_prelu_fwd(x, B, C, S, g, NULL, a, C, NULL, NULL, 1, 0.1, 1e-5, y, m, v), 0);
    ck_assert_int_eq(fvl_bn_prelu_bwd(x, r, B, C, S, g, NULL, a, C, m, v, 1, dx, dgv, dgv + C, dgv + 2 * C), 0);
    out[t][0] = y; out[t][1] = dx; out[t][2] = m; out[t][3] = v; out[t][4] = dgv;
  }
  omp_set_num_threads(old);
  const size_t len[5] = {n, n, C, C, 3 * (size_t)C};
  for (int k = 0; k < 5; k++) {
    ck_assert_int_eq(memcmp(out[0][k], out[1][k], sizeof(float) * len[k]), 0);
    free(out[0][k]); free(out[1][k]);
  }
  free(dx0); free(dr); free(dg0); free(da0); free(x); free(r); free(g); free(a);
#endif
}
END_TEST
START_TEST(bn_prelu_errors) {
  float x[4] = {1, 2, 3, 4}, a[1] = {0.25f}, y[4], m[4], v[4];
  ck_assert_int_eq(fvl_bn_prelu_fwd(x, 1, 4, 1, NULL, NULL, a, 1, NULL, NULL, 1, 0.1, 1e-5, y, m, v), -1);
  ck_assert_msg(strstr(fvl_errmsg(), "bn_prelu: training needs more than one value") != NULL, "%s", fvl_errmsg());
  ck_assert_int_eq(fvl_bn_prelu_fwd(x, 1, 4, 1, NULL, NULL, a, 1, NULL, NULL, 0, 0.1, 1e-5, y, m, v), -1);
  ck_assert_msg(strstr(fvl_errmsg(), "running statistics") != NULL, "%s", fvl_errmsg());
}
END_TEST

int main(void) {
  Suite *s = suite_create("backbone");
  TCase *tc = tcase_create("kernels");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, depthwise);
  tcase_add_test(tc, grouped);
  tcase_add_test(tc, depthwise_vector_shapes);
  tcase_add_test(tc, depthwise_reference);
  tcase_add_test(tc, grouped_threads);
  tcase_add_test(tc, grouped_errors);
  tcase_add_test(tc, bn_prelu_train);
  tcase_add_test(tc, bn_prelu_eval);
  tcase_add_test(tc, bn_prelu_errors);
  tcase_add_test(tc, bn_prelu_vector_shapes);
  tcase_add_test(tc, bn_prelu_offset_stats);
  tcase_add_test(tc, bn_prelu_threads);
  suite_add_tcase(s, tc);
  return fvl_check_run(s);
}
