/* test_nn.c — raw layer kernels and optimiser steps against direct double-precision references
 * and central finite differences of those references. */
#include <check.h>
#include "fvl_check.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include "core.h"
#include "rng.h"
#include "nn/nn.h"

/* ---------------------------------------------------------------- helpers */
static uint64_t lcg = 12345;
static double urand(void) {   /* deterministic test data, independent of the engine RNG */
  lcg = lcg * 6364136223846793005ULL + 1442695040888963407ULL;
  return (double)(lcg >> 11) / 9007199254740992.0;
}
static double *drand_arr(size_t n, double lo, double hi) {
  double *a = malloc(sizeof(double) * (n ? n : 1));
  for (size_t i = 0; i < n; i++) a[i] = lo + (hi - lo) * urand();
  return a;
}
static float *tof(const double *a, size_t n) {
  float *f = malloc(sizeof(float) * (n ? n : 1));
  for (size_t i = 0; i < n; i++) f[i] = (float)a[i];
  return f;
}
static float *fzeros(size_t n) { return calloc(n ? n : 1, sizeof(float)); }
/* max |a - e| / (atol + rtol |e|) must be <= 1 */
static void expect_close(const char *what, const float *a, const double *e, size_t n, double rtol,
                         double atol) {
  for (size_t i = 0; i < n; i++) {
    double d = fabs((double)a[i] - e[i]);
    ck_assert_msg(d <= atol + rtol * fabs(e[i]), "%s[%zu]: got %.9g, expected %.9g", what, i,
                  (double)a[i], e[i]);
  }
}

/* central differences of a double-precision scalar function with respect to p[0..n) */
typedef double (*scalar_fn)(void *ctx);
static double *numgrad(scalar_fn f, void *ctx, double *p, size_t n, double h) {
  double *g = malloc(sizeof(double) * (n ? n : 1));
  for (size_t i = 0; i < n; i++) {
    double keep = p[i];
    p[i] = keep + h;
    double fp = f(ctx);
    p[i] = keep - h;
    double fm = f(ctx);
    p[i] = keep;
    g[i] = (fp - fm) / (2 * h);
  }
  return g;
}

/* ---------------------------------------------------------------- conv2d */
typedef struct {
  fvl_conv2d_shape s;
  double *x, *w, *b, *r;   /* r: weights of the scalar L = Σ r·y */
} conv_ctx;

static void conv_ref(const fvl_conv2d_shape *s, const double *x, const double *w, const double *b,
                     double *y) {
  for (int n = 0; n < s->B; n++)
    for (int o = 0; o < s->O; o++)
      for (int oh = 0; oh < s->OH; oh++)
        for (int ow = 0; ow < s->OW; ow++) {
          double acc = b ? b[o] : 0;
          for (int c = 0; c < s->C; c++)
            for (int i = 0; i < s->KH; i++)
              for (int j = 0; j < s->KW; j++) {
                int h = oh * s->sh - s->ph + i, ww = ow * s->sw - s->pw + j;
                if (h < 0 || h >= s->H || ww < 0 || ww >= s->W) continue;
                acc += x[((size_t)(n * s->C + c) * s->H + h) * s->W + ww] *
                       w[((size_t)(o * s->C + c) * s->KH + i) * s->KW + j];
              }
          y[((size_t)(n * s->O + o) * s->OH + oh) * s->OW + ow] = acc;
        }
}
static double conv_loss(void *p) {
  conv_ctx *c = p;
  size_t ny = (size_t)c->s.B * c->s.O * c->s.OH * c->s.OW;
  double *y = malloc(sizeof(double) * ny);
  conv_ref(&c->s, c->x, c->w, c->b, y);
  double L = 0;
  for (size_t i = 0; i < ny; i++) L += c->r[i] * y[i];
  free(y);
  return L;
}

/* the exact gradients of L = Σ r·y in double by the adjoint loops (L is linear in x, w, b) */
static void conv_ref_grad(const fvl_conv2d_shape *s, const double *x, const double *w, const double *r,
                          double *gx, double *gw, double *gb) {
  memset(gx, 0, sizeof(double) * s->B * s->C * s->H * s->W);
  memset(gw, 0, sizeof(double) * s->O * s->C * s->KH * s->KW);
  memset(gb, 0, sizeof(double) * s->O);
  for (int n = 0; n < s->B; n++)
    for (int o = 0; o < s->O; o++)
      for (int oh = 0; oh < s->OH; oh++)
        for (int ow = 0; ow < s->OW; ow++) {
          const double rv = r[((size_t)(n * s->O + o) * s->OH + oh) * s->OW + ow];
          gb[o] += rv;
          for (int c = 0; c < s->C; c++)
            for (int i = 0; i < s->KH; i++)
              for (int j = 0; j < s->KW; j++) {
                int h = oh * s->sh - s->ph + i, ww = ow * s->sw - s->pw + j;
                if (h < 0 || h >= s->H || ww < 0 || ww >= s->W) continue;
                const size_t xi = ((size_t)(n * s->C + c) * s->H + h) * s->W + ww;
                const size_t wi = ((size_t)(o * s->C + c) * s->KH + i) * s->KW + j;
                gx[xi] += rv * w[wi];
                gw[wi] += rv * x[xi];
              }
        }
}

static int conv_fd = 1;   /* 0: reference gradients by the adjoint loops instead of differences */

static void check_conv(int B, int C, int H, int W, int O, int KH, int KW, int sh, int sw, int ph,
                       int pw, int G) {
  conv_ctx c = {.s = {.B = B, .C = C, .H = H, .W = W, .O = O, .KH = KH, .KW = KW, .sh = sh, .sw = sw,
                      .ph = ph, .pw = pw}};
  ck_assert_int_eq(fvl_conv2d_plan(&c.s), 0);
  if (G > 0) c.s.G = G;   /* force groups (and ragged last group) */
  fvl_conv2d_shape *s = &c.s;
  size_t nx = (size_t)B * C * H * W, nw = (size_t)O * C * KH * KW, ny = (size_t)B * O * s->OH * s->OW;
  c.x = drand_arr(nx, -1, 1);
  c.w = drand_arr(nw, -1, 1);
  c.b = drand_arr(O, -1, 1);
  c.r = drand_arr(ny, -1, 1);
  float *fx = tof(c.x, nx), *fw = tof(c.w, nw), *fb = tof(c.b, O), *fr = tof(c.r, ny);
  float *y = fzeros(ny), *dx = fzeros(nx), *dw = fzeros(nw), *db = fzeros(O);
  float *work = malloc(sizeof(float) * fvl_conv2d_workspace(s));
  ck_assert_int_eq(fvl_conv2d_fwd(s, fx, fw, fb, y, work), 0);
  double *yr = malloc(sizeof(double) * ny);
  conv_ref(s, c.x, c.w, c.b, yr);
  expect_close("conv2d y", y, yr, ny, 1e-4, 1e-4);
  ck_assert_int_eq(fvl_conv2d_bwd(s, fx, fw, fr, dx, dw, db, work), 0);
  /* L is linear in x, w, b: central differences in double are exact up to rounding */
  double *gx, *gw, *gb;
  if (conv_fd) {
    gx = numgrad(conv_loss, &c, c.x, nx, 0.5);
    gw = numgrad(conv_loss, &c, c.w, nw, 0.5);
    gb = numgrad(conv_loss, &c, c.b, O, 0.5);
  } else {
    gx = malloc(sizeof(double) * nx);
    gw = malloc(sizeof(double) * nw);
    gb = malloc(sizeof(double) * O);
    conv_ref_grad(s, c.x, c.w, c.r, gx, gw, gb);
  }
  expect_close("conv2d dx", dx, gx, nx, 1e-4, 1e-4);
  expect_close("conv2d dw", dw, gw, nw, 1e-4, 1e-4);
  expect_close("conv2d db", db, gb, O, 1e-4, 1e-4);
  /* dw only, dx only */
  float *dw2 = fzeros(nw), *dx2 = fzeros(nx);
  ck_assert_int_eq(fvl_conv2d_bwd(s, fx, fw, fr, NULL, dw2, NULL, work), 0);
  ck_assert_int_eq(fvl_conv2d_bwd(s, fx, fw, fr, dx2, NULL, NULL, work), 0);
  ck_assert_mem_eq(dw2, dw, sizeof(float) * nw);
  ck_assert_mem_eq(dx2, dx, sizeof(float) * nx);
  free(c.x); free(c.w); free(c.b); free(c.r); free(fx); free(fw); free(fb); free(fr); free(y);
  free(dx); free(dw); free(db); free(work); free(yr); free(gx); free(gw); free(gb); free(dw2); free(dx2);
}

START_TEST(conv_basic) { check_conv(2, 3, 6, 5, 4, 3, 3, 1, 1, 1, 1, 0); }
END_TEST
START_TEST(conv_stride_pad) {
  check_conv(3, 2, 7, 8, 3, 5, 3, 2, 1, 2, 0, 0);
  check_conv(2, 1, 9, 9, 2, 3, 3, 3, 2, 1, 1, 0);
  check_conv(1, 2, 4, 4, 2, 4, 4, 1, 1, 0, 0, 0);   /* 1x1 output */
}
END_TEST
START_TEST(conv_groups) {
  check_conv(7, 2, 5, 5, 3, 3, 3, 1, 1, 1, 1, 3);   /* groups 3, 3, 1 */
  check_conv(5, 3, 6, 6, 4, 5, 5, 1, 1, 2, 2, 1);   /* one sample per GEMM */
  check_conv(4, 1, 6, 6, 2, 1, 1, 1, 1, 0, 0, 4);   /* 1x1 kernel */
}
END_TEST
START_TEST(conv_threads) {
  /* groups shared among 1, 2 and 3 threads (ragged: 7 samples), per-thread partial dW sums */
  for (int th = 1; th <= 3; th++) {
#ifdef _OPENMP
    omp_set_num_threads(th);
#endif
    check_conv(7, 2, 5, 5, 3, 3, 3, 1, 1, 1, 1, 0);
    check_conv(7, 2, 6, 6, 3, 3, 3, 2, 2, 1, 1, 1);   /* stride 2: col2im path */
  }
#ifdef _OPENMP
  omp_set_num_threads(fvl_cpu_count());
#endif
}
END_TEST

/* the AVX2 direct kernels (stride 1) and the im2col + GEMM path, each against the double
 * reference forward and its adjoint (the tests above check the same kernels by finite
 * differences): ragged channel blocks (O = 5, 3), rows of 10 and 17 outputs
 * (masked lanes), kernels 1×1, 3×7, 7×7 (taps in tiles of 5/3/1), padding wider than the kernel
 * (dx by col2im while the forward and dW stay direct), tiny maps (tiles span samples) */
START_TEST(conv_direct_and_gemm) {
  const int shapes[][11] = {
      {3, 2, 10, 10, 5, 5, 5, 1, 1, 2, 2}, {3, 2, 9, 17, 3, 7, 3, 1, 1, 3, 1},
      {4, 2, 6, 6, 3, 7, 7, 1, 1, 1, 1},   {6, 1, 5, 5, 4, 1, 1, 1, 1, 0, 0},
      {2, 2, 5, 5, 3, 3, 3, 1, 1, 3, 3},   {13, 2, 3, 3, 6, 3, 3, 1, 1, 1, 1},
      /* 16 and 32 output channels: the channel-vector kernels (raster positions in tiles of 6
       * across samples, 27 and 75 taps in tiles of 6 for dW; 1 input channel: few taps) */
      {3, 3, 5, 7, 16, 3, 3, 1, 1, 1, 1},  {1, 3, 5, 5, 16, 5, 5, 1, 1, 2, 2},
      {5, 8, 2, 3, 16, 3, 3, 1, 1, 1, 1},  {2, 4, 5, 5, 32, 3, 3, 1, 1, 3, 3},
      /* 32·k output channels: AVX-512 tiles of 12 positions (ragged), 96 = 3 channel vectors;
       * 24×24 maps with 64 outputs: bands of positions, 100 input channels: channel blocks too */
      {3, 5, 5, 7, 96, 3, 3, 1, 1, 1, 1},  {2, 3, 24, 24, 64, 3, 3, 1, 1, 1, 1},
      {1, 100, 24, 24, 64, 3, 3, 1, 1, 1, 1},
      /* strided, on the channel-vector kernels (forward and dW; dx by col2im): 3×3 stride 2 with
       * 32 and 64 outputs, 1×1 stride 2 (64 taps), strides 2×1 with 48 outputs (AVX2 tiles) */
      {2, 8, 9, 9, 32, 3, 3, 2, 2, 1, 1},  {2, 8, 12, 12, 64, 3, 3, 2, 2, 1, 1},
      {3, 64, 6, 7, 16, 1, 1, 2, 2, 0, 0}, {2, 16, 10, 11, 48, 3, 3, 2, 1, 1, 1},
      /* 1×1 without padding, 64+ input channels: read in place (no padded copy), odd widths */
      {3, 64, 5, 7, 32, 1, 1, 1, 1, 0, 0}, {2, 80, 3, 3, 48, 1, 1, 1, 1, 0, 0},
  };
  const int old = fvl_conv2d_set_direct(1), old512 = fvl_conv2d_set_avx512(1);
  const int have512 = fvl_conv2d_avx512();
  conv_fd = 0;   /* the adjoint in double: exact, and fast enough for this many shapes */
  /* direct with AVX-512 (where the CPU has it), direct with AVX2, im2col + GEMM */
  for (int path = have512 ? 2 : 1; path >= 0; path--) {
    const int direct = path > 0;
    fvl_conv2d_set_direct(direct);
    fvl_conv2d_set_avx512(path == 2);
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
      const int *v = shapes[k];
      check_conv(v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10], 0);
    }
    for (int th = 1; th <= 3; th++) {   /* partial dW per thread, groups shared out */
#ifdef _OPENMP
      omp_set_num_threads(th);
#endif
      check_conv(13, 2, 3, 3, 6, 3, 3, 1, 1, 1, 1, 0);
      check_conv(3, 1, 10, 10, 3, 5, 5, 1, 1, 2, 2, 0);
      check_conv(4, 8, 2, 2, 16, 3, 3, 1, 1, 1, 1, 0);
    }
#ifdef _OPENMP
    omp_set_num_threads(fvl_cpu_count());
#endif
  }
  fvl_conv2d_set_direct(old);
  fvl_conv2d_set_avx512(old512);
  conv_fd = 1;
}
END_TEST

/* the AVX-512 and AVX2 direct kernels sum every output in the same order: the same bits for y
 * (bias, and the BatchNorm + PReLU epilogue), dx and dW, with bands and channel blocks, stride 1
 * and 2 */
START_TEST(conv_direct_avx512_bits) {
  const int old512 = fvl_conv2d_set_avx512(1);
  if (!fvl_conv2d_avx512()) {   /* nothing to compare on this CPU */
    fvl_conv2d_set_avx512(old512);
    return;
  }
  const int shapes[][7] = {{2, 100, 24, 24, 64, 3, 1}, {3, 40, 7, 7, 64, 3, 1}, {2, 32, 9, 9, 32, 5, 1},
                           {2, 64, 14, 14, 64, 3, 2}, {3, 64, 9, 9, 32, 1, 2}};
  for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
    const int *v = shapes[k];
    fvl_conv2d_shape s = {.B = v[0], .C = v[1], .H = v[2], .W = v[3], .O = v[4], .KH = v[5], .KW = v[5],
                          .sh = v[6], .sw = v[6], .ph = v[5] / 2, .pw = v[5] / 2};
    ck_assert_int_eq(fvl_conv2d_plan(&s), 0);
    ck_assert(fvl_conv2d_direct_ok(&s));
    const size_t nx = (size_t)s.B * s.C * s.H * s.W, nw = (size_t)s.O * s.C * s.KH * s.KW;
    const size_t ny = (size_t)s.B * s.O * s.OH * s.OW;
    double *dx_ = drand_arr(nx, -1, 1), *dw_ = drand_arr(nw, -1, 1), *db_ = drand_arr((size_t)s.O, -1, 1);
    double *dr_ = drand_arr(ny, -1, 1), *dsc = drand_arr((size_t)s.O, 0.5, 1.5);
    float *x = tof(dx_, nx), *w = tof(dw_, nw), *b = tof(db_, (size_t)s.O), *r = tof(dr_, ny);
    float *sc = tof(dsc, (size_t)s.O), *a = tof(db_, (size_t)s.O);   /* shift = bias values, slopes */
    const fvl_conv_epi ep = {.scale = sc, .shift = b, .a = a, .na = s.O};
    float *work = malloc(sizeof(float) * fvl_conv2d_workspace(&s));
    float *out[2][4];
    for (int z = 0; z < 2; z++) {
      fvl_conv2d_set_avx512(z);
      out[z][0] = fzeros(ny); out[z][1] = fzeros(ny); out[z][2] = fzeros(nx); out[z][3] = fzeros(nw);
      ck_assert_int_eq(fvl_conv2d_fwd(&s, x, w, b, out[z][0], work), 0);
      ck_assert_int_eq(fvl_conv2d_fwd_epi(&s, x, w, b, &ep, out[z][1], work), 0);
      ck_assert_int_eq(fvl_conv2d_bwd(&s, x, w, r, out[z][2], out[z][3], NULL, work), 0);
    }
    ck_assert_mem_eq(out[0][0], out[1][0], sizeof(float) * ny);
    ck_assert_mem_eq(out[0][1], out[1][1], sizeof(float) * ny);
    ck_assert_mem_eq(out[0][2], out[1][2], sizeof(float) * nx);
    ck_assert_mem_eq(out[0][3], out[1][3], sizeof(float) * nw);
    for (int z = 0; z < 2; z++)
      for (int i = 0; i < 4; i++) free(out[z][i]);
    free(dx_); free(dw_); free(db_); free(dr_); free(dsc); free(x); free(w); free(b); free(r); free(sc);
    free(a); free(work);
  }
  fvl_conv2d_set_avx512(old512);
}
END_TEST

START_TEST(conv_plan_errors) {
  fvl_conv2d_shape s = {.B = 1, .C = 1, .H = 3, .W = 3, .O = 1, .KH = 5, .KW = 5, .sh = 1, .sw = 1};
  ck_assert_int_eq(fvl_conv2d_plan(&s), -1);
  ck_assert_msg(strstr(fvl_errmsg(), "conv2d: input 3x3") != NULL, "%s", fvl_errmsg());
  s.KH = s.KW = 3;
  s.sh = 0;
  ck_assert_int_eq(fvl_conv2d_plan(&s), -1);
  ck_assert_msg(strstr(fvl_errmsg(), "stride") != NULL, "%s", fvl_errmsg());
  /* LeNet++ late layer: the group makes the GEMM at least 1024 columns wide */
  fvl_conv2d_shape t = {.B = 128, .C = 128, .H = 7, .W = 7, .O = 128, .KH = 5, .KW = 5, .sh = 1,
                        .sw = 1, .ph = 2, .pw = 2};
  ck_assert_int_eq(fvl_conv2d_plan(&t), 0);
  ck_assert_int_eq(t.OH, 7);
  ck_assert_int_ge(t.G * 49, 1024);
}
END_TEST

/* ---------------------------------------------------------------- pooling */
typedef struct {
  fvl_pool2d_shape s;
  double *x, *r;
  int max;
} pool_ctx;
static double pool_loss(void *p) {
  pool_ctx *c = p;
  const fvl_pool2d_shape *s = &c->s;
  double L = 0;
  for (int bc = 0; bc < s->B * s->C; bc++)
    for (int oh = 0; oh < s->OH; oh++)
      for (int ow = 0; ow < s->OW; ow++) {
        double acc = c->max ? -INFINITY : 0;
        for (int i = 0; i < s->kh; i++)
          for (int j = 0; j < s->kw; j++) {
            int h = oh * s->sh - s->ph + i, w = ow * s->sw - s->pw + j;
            if (h < 0 || h >= s->H || w < 0 || w >= s->W) continue;
            double v = c->x[((size_t)bc * s->H + h) * s->W + w];
            if (c->max) acc = v > acc ? v : acc;
            else acc += v;
          }
        if (!c->max) acc /= s->kh * s->kw;
        L += c->r[((size_t)bc * s->OH + oh) * s->OW + ow] * acc;
      }
  return L;
}
static void check_pool(int max, int B, int C, int H, int W, int k, int st, int pad) {
  pool_ctx c = {.s = {.B = B, .C = C, .H = H, .W = W, .kh = k, .kw = k, .sh = st, .sw = st, .ph = pad,
                      .pw = pad},
                .max = max};
  ck_assert_int_eq(fvl_pool2d_plan(&c.s, "pool"), 0);
  size_t nx = (size_t)B * C * H * W, ny = (size_t)B * C * c.s.OH * c.s.OW;
  /* distinct values spaced by 0.01 so that the max is never a tie within the FD step */
  c.x = malloc(sizeof(double) * nx);
  for (size_t i = 0; i < nx; i++) c.x[i] = (double)i * 0.01;
  for (size_t i = nx - 1; i > 0; i--) {
    size_t j = (size_t)(urand() * (double)(i + 1));
    double t = c.x[i]; c.x[i] = c.x[j]; c.x[j] = t;
  }
  c.r = drand_arr(ny, -1, 1);
  float *fx = tof(c.x, nx), *fr = tof(c.r, ny), *y = fzeros(ny), *dx = fzeros(nx);
  int32_t *am = calloc(ny, sizeof(int32_t));
  if (max) {
    fvl_maxpool2d_fwd(&c.s, fx, y, am);
    fvl_maxpool2d_bwd(&c.s, fr, am, dx);
  } else {
    fvl_avgpool2d_fwd(&c.s, fx, y);
    fvl_avgpool2d_bwd(&c.s, fr, dx);
  }
  double L = 0;
  for (size_t i = 0; i < ny; i++) L += (double)fr[i] * y[i];
  ck_assert_msg(fabs(L - pool_loss(&c)) < 1e-4 * (1 + fabs(L)), "pool forward %g vs %g", L, pool_loss(&c));
  double *g = numgrad(pool_loss, &c, c.x, nx, 1e-3);
  expect_close(max ? "maxpool dx" : "avgpool dx", dx, g, nx, 1e-5, 1e-5);
  free(c.x); free(c.r); free(fx); free(fr); free(y); free(dx); free(am); free(g);
}
START_TEST(pool_max) {
  check_pool(1, 2, 3, 7, 7, 2, 2, 0);   /* LeNet++: 7 → 3, last row/column dropped */
  check_pool(1, 1, 2, 6, 5, 3, 2, 1);
  check_pool(1, 2, 1, 5, 5, 3, 1, 1);   /* overlapping windows */
  /* ties: the first maximum wins; NaN propagates (2×2 fast path and generic 3×3 path) */
  fvl_pool2d_shape s = {.B = 1, .C = 1, .H = 2, .W = 2, .kh = 2, .kw = 2, .sh = 2, .sw = 2};
  ck_assert_int_eq(fvl_pool2d_plan(&s, "maxpool2d"), 0);
  float tie[4] = {1, 3, 3, 2}, nan_[4] = {1, NAN, 5, 2}, y;
  int32_t am;
  fvl_maxpool2d_fwd(&s, tie, &y, &am);
  ck_assert(y == 3.f && am == 1);
  fvl_maxpool2d_fwd(&s, nan_, &y, &am);
  ck_assert(isnan(y) && am == 1);
  fvl_pool2d_shape g = {.B = 1, .C = 1, .H = 2, .W = 2, .kh = 3, .kw = 3, .sh = 1, .sw = 1, .ph = 1, .pw = 1};
  ck_assert_int_eq(fvl_pool2d_plan(&g, "maxpool2d"), 0);
  float y4[4];
  int32_t a4[4];
  fvl_maxpool2d_fwd(&g, tie, y4, a4);
  ck_assert(y4[0] == 3.f && a4[0] == 1);
  fvl_maxpool2d_fwd(&g, nan_, y4, a4);
  ck_assert(isnan(y4[0]) && a4[0] == 1);
}
END_TEST
START_TEST(pool_avg) {
  check_pool(0, 2, 3, 8, 8, 2, 2, 0);
  check_pool(0, 1, 2, 7, 7, 7, 1, 0);   /* global pooling */
  check_pool(0, 2, 1, 5, 6, 3, 2, 1);
}
END_TEST
START_TEST(pool_errors) {
  fvl_pool2d_shape s = {.B = 1, .C = 1, .H = 1, .W = 1, .kh = 2, .kw = 2, .sh = 2, .sw = 2};
  ck_assert_int_eq(fvl_pool2d_plan(&s, "maxpool2d"), -1);
  ck_assert_msg(strstr(fvl_errmsg(), "maxpool2d: input 1x1") != NULL, "%s", fvl_errmsg());
}
END_TEST

/* ---------------------------------------------------------------- batchnorm */
typedef struct {
  int B, C;
  int64_t S;
  double *x, *g, *b, *r, eps;
} bn_ctx;
static double bn_loss(void *p) {   /* training-mode BN in double */
  bn_ctx *c = p;
  double L = 0;
  int64_t N = c->B * c->S;
  for (int ch = 0; ch < c->C; ch++) {
    double m = 0, v = 0;
    for (int b = 0; b < c->B; b++)
      for (int64_t i = 0; i < c->S; i++) m += c->x[(b * c->C + ch) * c->S + i];
    m /= N;
    for (int b = 0; b < c->B; b++)
      for (int64_t i = 0; i < c->S; i++) {
        double d = c->x[(b * c->C + ch) * c->S + i] - m;
        v += d * d;
      }
    v /= N;
    for (int b = 0; b < c->B; b++)
      for (int64_t i = 0; i < c->S; i++) {
        size_t k = (b * c->C + ch) * c->S + i;
        L += c->r[k] * (c->g[ch] * (c->x[k] - m) / sqrt(v + c->eps) + c->b[ch]);
      }
  }
  return L;
}
static void check_bn(int B, int C, int64_t S) {
  bn_ctx c = {.B = B, .C = C, .S = S, .eps = 1e-5};
  size_t n = (size_t)B * C * S;
  c.x = drand_arr(n, -2, 3);
  c.g = drand_arr(C, 0.5, 1.5);
  c.b = drand_arr(C, -1, 1);
  c.r = drand_arr(n, -1, 1);
  float *fx = tof(c.x, n), *fg = tof(c.g, C), *fb = tof(c.b, C), *fr = tof(c.r, n);
  float *y = fzeros(n), *dx = fzeros(n), *dg = fzeros(C), *db = fzeros(C), *sm = fzeros(C), *si = fzeros(C);
  float *rm = fzeros(C), *rv = fzeros(C);
  for (int i = 0; i < C; i++) { rm[i] = 0.5f; rv[i] = 2.f; }
  ck_assert_int_eq(fvl_batchnorm_fwd(fx, B, C, S, fg, fb, rm, rv, 1, 0.1, c.eps, y, sm, si), 0);
  /* batch statistics and running updates against the closed form */
  int64_t N = B * S;
  for (int ch = 0; ch < C; ch++) {
    double m = 0, ss = 0;
    for (int b = 0; b < B; b++)
      for (int64_t i = 0; i < S; i++) m += c.x[(b * C + ch) * S + i];
    m /= N;
    for (int b = 0; b < B; b++)
      for (int64_t i = 0; i < S; i++) ss += pow(c.x[(b * C + ch) * S + i] - m, 2);
    double e_rm = 0.9 * 0.5 + 0.1 * m, e_rv = 0.9 * 2 + 0.1 * ss / (N - 1);
    expect_close("bn running_mean", rm + ch, &e_rm, 1, 1e-5, 1e-6);
    expect_close("bn running_var", rv + ch, &e_rv, 1, 1e-5, 1e-6);
    double e_is = 1 / sqrt(ss / N + c.eps);
    expect_close("bn invstd", si + ch, &e_is, 1, 1e-5, 0);
    /* normalised output has mean beta and variance gamma^2 */
    double ym = 0, yv = 0;
    for (int b = 0; b < B; b++)
      for (int64_t i = 0; i < S; i++) ym += y[(b * C + ch) * S + i];
    ym /= N;
    for (int b = 0; b < B; b++)
      for (int64_t i = 0; i < S; i++) yv += pow(y[(b * C + ch) * S + i] - ym, 2);
    yv /= N;
    ck_assert_msg(fabs(ym - c.b[ch]) < 1e-5, "bn y mean %g vs beta %g", ym, c.b[ch]);
    ck_assert_msg(fabs(yv - c.g[ch] * c.g[ch] * (ss / N) / (ss / N + c.eps)) < 1e-4, "bn y var");
  }
  fvl_batchnorm_bwd(fx, fr, B, C, S, fg, sm, si, 1, dx, dg, db);
  double *gx = numgrad(bn_loss, &c, c.x, n, 1e-5);
  double *gg = numgrad(bn_loss, &c, c.g, C, 1e-5);
  double *gb = numgrad(bn_loss, &c, c.b, C, 1e-5);
  expect_close("bn train dx", dx, gx, n, 2e-3, 2e-4);
  expect_close("bn train dgamma", dg, gg, C, 2e-3, 2e-4);
  expect_close("bn train dbeta", db, gb, C, 2e-3, 2e-4);
  /* evaluation: the affine map of the running statistics */
  ck_assert_int_eq(fvl_batchnorm_fwd(fx, B, C, S, fg, fb, rm, rv, 0, 0.1, c.eps, y, sm, si), 0);
  for (size_t k = 0; k < n; k++) {
    int ch = (int)((k / S) % C);
    double e = c.g[ch] * ((double)fx[k] - rm[ch]) / sqrt((double)rv[ch] + c.eps) + c.b[ch];
    expect_close("bn eval y", y + k, &e, 1, 1e-5, 1e-5);
  }
  fvl_batchnorm_bwd(fx, fr, B, C, S, fg, sm, si, 0, dx, dg, db);
  for (size_t k = 0; k < n; k++) {
    int ch = (int)((k / S) % C);
    double e = c.r[k] * c.g[ch] / sqrt((double)rv[ch] + c.eps);
    expect_close("bn eval dx", dx + k, &e, 1, 1e-5, 1e-6);
  }
  free(c.x); free(c.g); free(c.b); free(c.r); free(fx); free(fg); free(fb); free(fr); free(y);
  free(dx); free(dg); free(db); free(sm); free(si); free(rm); free(rv); free(gx); free(gg); free(gb);
}
START_TEST(bn_1d) { check_bn(6, 4, 1); }
END_TEST
START_TEST(bn_2d) { check_bn(3, 2, 10); }
END_TEST
START_TEST(bn_errors) {
  float x = 1, y, m, s, rm = 0, rv = 1;
  ck_assert_int_eq(fvl_batchnorm_fwd(&x, 1, 1, 1, NULL, NULL, &rm, &rv, 1, 0.1, 1e-5, &y, &m, &s), -1);
  ck_assert_msg(strstr(fvl_errmsg(), "batchnorm: training needs more than one value") != NULL, "%s",
                fvl_errmsg());
  ck_assert_int_eq(fvl_batchnorm_fwd(&x, 1, 1, 1, NULL, NULL, &rm, &rv, 0, 0.1, 0, &y, &m, &s), 0);
  ck_assert_float_eq_tol(y, 1.f, 1e-6);
}
END_TEST

/* ---------------------------------------------------------------- prelu, dropout, linear */
typedef struct {
  int B, C, na;
  int64_t S;
  double *x, *a, *r;
} prelu_ctx;
static double prelu_loss(void *p) {
  prelu_ctx *c = p;
  double L = 0;
  for (int b = 0; b < c->B; b++)
    for (int ch = 0; ch < c->C; ch++)
      for (int64_t i = 0; i < c->S; i++) {
        size_t k = (b * c->C + ch) * c->S + i;
        double a = c->a[c->na == 1 ? 0 : ch], v = c->x[k];
        L += c->r[k] * (v > 0 ? v : a * v);
      }
  return L;
}
static void check_prelu(int na) {
  prelu_ctx c = {.B = 3, .C = 4, .S = 5, .na = na};
  size_t n = 60;
  c.x = drand_arr(n, -1, 1);
  for (size_t i = 0; i < n; i++)
    if (fabs(c.x[i]) < 0.01) c.x[i] = 0.5;   /* keep away from the kink */
  c.a = drand_arr(na, 0.1, 0.4);
  c.r = drand_arr(n, -1, 1);
  float *fx = tof(c.x, n), *fa = tof(c.a, na), *fr = tof(c.r, n), *y = fzeros(n), *dx = fzeros(n),
        *da = fzeros(na);
  fvl_prelu_fwd(fx, 3, 4, 5, fa, na, y);
  fvl_prelu_bwd(fx, fr, 3, 4, 5, fa, na, dx, da);
  double *gx = numgrad(prelu_loss, &c, c.x, n, 1e-4), *ga = numgrad(prelu_loss, &c, c.a, na, 1e-4);
  expect_close("prelu dx", dx, gx, n, 1e-5, 1e-6);
  expect_close("prelu da", da, ga, na, 1e-5, 1e-5);
  free(c.x); free(c.a); free(c.r); free(fx); free(fa); free(fr); free(y); free(dx); free(da); free(gx);
  free(ga);
}
START_TEST(prelu_grad) {
  check_prelu(4);
  check_prelu(1);
}
END_TEST

START_TEST(dropout_mask) {
  size_t n = 200000;
  float *m1 = fzeros(n), *m2 = fzeros(n);
  fvl_rng_seed(fvl_rng_global(), 7);
#ifdef _OPENMP
  omp_set_num_threads(1);
#endif
  fvl_dropout_mask(m1, n, 0.25);
  ck_assert_uint_eq(fvl_rng_global()->counter, n);
  fvl_rng_seed(fvl_rng_global(), 7);
#ifdef _OPENMP
  omp_set_num_threads(2);
#endif
  fvl_dropout_mask(m2, n, 0.25);
  ck_assert_mem_eq(m1, m2, sizeof(float) * n);   /* independent of the thread count */
  size_t zeros = 0;
  for (size_t i = 0; i < n; i++) {
    ck_assert(m1[i] == 0.f || fabsf(m1[i] - 4.f / 3.f) < 1e-6f);
    zeros += m1[i] == 0.f;
  }
  ck_assert_msg(fabs((double)zeros / n - 0.25) < 0.005, "dropped %zu of %zu", zeros, n);
  fvl_dropout_mask(m2, n, 0.25);   /* the next call gives a different mask */
  ck_assert(memcmp(m1, m2, sizeof(float) * n) != 0);
  free(m1); free(m2);
}
END_TEST

START_TEST(linear_grad) {
  int B = 5, In = 7, O = 3;
  double *x = drand_arr(B * In, -1, 1), *w = drand_arr(O * In, -1, 1), *b = drand_arr(O, -1, 1),
         *r = drand_arr(B * O, -1, 1);
  float *fx = tof(x, B * In), *fw = tof(w, O * In), *fb = tof(b, O), *fr = tof(r, B * O);
  float *y = fzeros(B * O), *dx = fzeros(B * In), *dw = fzeros(O * In), *db = fzeros(O);
  fvl_linear_fwd(fx, B, In, fw, O, fb, y);
  fvl_linear_bwd(fx, B, In, fw, O, fr, dx, dw, db);
  double ey[15], ex[35], ew[21], eb[3];
  for (int i = 0; i < B; i++)
    for (int o = 0; o < O; o++) {
      ey[i * O + o] = b[o];
      for (int k = 0; k < In; k++) ey[i * O + o] += x[i * In + k] * w[o * In + k];
    }
  for (int i = 0; i < B; i++)
    for (int k = 0; k < In; k++) {
      ex[i * In + k] = 0;
      for (int o = 0; o < O; o++) ex[i * In + k] += r[i * O + o] * w[o * In + k];
    }
  for (int o = 0; o < O; o++) {
    eb[o] = 0;
    for (int i = 0; i < B; i++) eb[o] += r[i * O + o];
    for (int k = 0; k < In; k++) {
      ew[o * In + k] = 0;
      for (int i = 0; i < B; i++) ew[o * In + k] += r[i * O + o] * x[i * In + k];
    }
  }
  expect_close("linear y", y, ey, 15, 1e-5, 1e-5);
  expect_close("linear dx", dx, ex, 35, 1e-5, 1e-5);
  expect_close("linear dw", dw, ew, 21, 1e-5, 1e-5);
  expect_close("linear db", db, eb, 3, 1e-5, 1e-5);
  free(x); free(w); free(b); free(r); free(fx); free(fw); free(fb); free(fr); free(y); free(dx);
  free(dw); free(db);
}
END_TEST

/* ---------------------------------------------------------------- optimisers */
START_TEST(sgd_closed_form) {
  /* three steps on p with constant gradient g, momentum 0.9, wd 0.01, plain and Nesterov */
  for (int nest = 0; nest <= 1; nest++) {
    float p[2] = {1.f, -2.f}, g[2] = {0.5f, 0.25f}, buf[2] = {0, 0};
    double ep[2] = {1, -2}, eb[2] = {0, 0};
    for (int t = 0; t < 3; t++) {
      fvl_sgd_step(p, g, buf, 2, 0.1, 0.9, 0, 0.01, nest, t == 0);
      for (int i = 0; i < 2; i++) {
        double d = g[i] + 0.01 * ep[i];
        eb[i] = t == 0 ? d : 0.9 * eb[i] + d;
        ep[i] -= 0.1 * (nest ? d + 0.9 * eb[i] : eb[i]);
      }
    }
    expect_close("sgd p", p, ep, 2, 1e-6, 1e-7);
    expect_close("sgd buf", buf, eb, 2, 1e-6, 1e-7);
  }
  /* plain SGD, one step: p - lr (g + wd p) */
  float p[1] = {2.f}, g[1] = {1.f};
  fvl_sgd_step(p, g, NULL, 1, 0.5, 0, 0, 0.1, 0, 1);
  ck_assert_float_eq_tol(p[0], 2.f - 0.5f * (1.f + 0.2f), 1e-6f);
  /* dampening */
  float q[1] = {0.f}, h[1] = {1.f}, b[1] = {0.f};
  fvl_sgd_step(q, h, b, 1, 1, 0.5, 0.5, 0, 0, 1);
  fvl_sgd_step(q, h, b, 1, 1, 0.5, 0.5, 0, 0, 0);
  ck_assert_float_eq_tol(b[0], 0.5f * 1.f + 0.5f * 1.f, 1e-6f);
  ck_assert_float_eq_tol(q[0], -2.f, 1e-6f);
}
END_TEST

START_TEST(adamw_closed_form) {
  size_t n = 40000;   /* over the parallel threshold */
  float *p = fzeros(n), *g = fzeros(n), *m = fzeros(n), *v = fzeros(n);
  double *ep = malloc(sizeof(double) * n), *em = calloc(n, sizeof(double)), *ev = calloc(n, sizeof(double));
  for (size_t i = 0; i < n; i++) { p[i] = (float)(urand() * 2 - 1); ep[i] = p[i]; }
  double lr = 1e-2, b1 = 0.9, b2 = 0.999, eps = 1e-8, wd = 0.05;
  for (int t = 1; t <= 4; t++) {
    for (size_t i = 0; i < n; i++) g[i] = (float)(sin((double)i + t) * 0.3);
    fvl_adamw_step(p, g, m, v, n, lr, b1, b2, eps, wd, t);
    for (size_t i = 0; i < n; i++) {
      double gi = g[i];
      ep[i] *= 1 - lr * wd;
      em[i] = b1 * em[i] + (1 - b1) * gi;
      ev[i] = b2 * ev[i] + (1 - b2) * gi * gi;
      double mh = em[i] / (1 - pow(b1, t)), vh = ev[i] / (1 - pow(b2, t));
      ep[i] -= lr * mh / (sqrt(vh) + eps);
    }
  }
  expect_close("adamw p", p, ep, n, 1e-5, 2e-6);
  expect_close("adamw m", m, em, n, 1e-5, 1e-7);
  expect_close("adamw v", v, ev, n, 1e-4, 1e-9);
  free(p); free(g); free(m); free(v); free(ep); free(em); free(ev);
}
END_TEST

START_TEST(sumsq_scale) {
  size_t n = 50000;
  float *x = fzeros(n);
  double e = 0;
  for (size_t i = 0; i < n; i++) { x[i] = (float)(i % 7) - 3.f; e += (double)x[i] * x[i]; }
  ck_assert_double_eq_tol(fvl_sumsq(x, n), e, 1e-6);
  fvl_scale_inplace(x, n, 0.5f);
  ck_assert_double_eq_tol(fvl_sumsq(x, n), e / 4, 1e-6);
  free(x);
}
END_TEST

int main(void) {
  Suite *s = suite_create("nn");
  TCase *tc = tcase_create("kernels");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, conv_basic);
  tcase_add_test(tc, conv_stride_pad);
  tcase_add_test(tc, conv_groups);
  tcase_add_test(tc, conv_threads);
  tcase_add_test(tc, conv_direct_and_gemm);
  tcase_add_test(tc, conv_direct_avx512_bits);
  tcase_add_test(tc, conv_plan_errors);
  tcase_add_test(tc, pool_max);
  tcase_add_test(tc, pool_avg);
  tcase_add_test(tc, pool_errors);
  tcase_add_test(tc, bn_1d);
  tcase_add_test(tc, bn_2d);
  tcase_add_test(tc, bn_errors);
  tcase_add_test(tc, prelu_grad);
  tcase_add_test(tc, dropout_mask);
  tcase_add_test(tc, linear_grad);
  tcase_add_test(tc, sgd_closed_form);
  tcase_add_test(tc, adamw_closed_form);
  tcase_add_test(tc, sumsq_scale);
  suite_add_tcase(s, tc);
  return fvl_check_run(s);
}
