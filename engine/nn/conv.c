/* conv.c — 2-D convolution by im2col + one sgemm per group of samples.
 *
 * Forward for a group of g samples (P = OH·OW, K = C·KH·KW):
 *   cols (K × g·P) = im2col(x_group)
 *   Y    (O × g·P) = W (O × K) · cols          — one sgemm, OpenBLAS threads inside
 *   y[b][o][p] = Y[o][b·P + p] + bias[o]       — scatter, OpenMP over (b, o)
 * Backward:
 *   dY (O × g·P) gathered from dy;  dW += dY · colsᵀ;
 *   dx: stride 1 — the forward convolution of dy with the flipped kernel (wide GEMMs);
 *       otherwise dcols = Wᵀ · dY and dx = col2im(dcols)
 * Grouping samples keeps the GEMMs wide for the small late feature maps (7×7 → 49 columns per
 * sample would starve the GEMM). */
#include "nn.h"
#include <string.h>
#include <cblas.h>

#define CONV_WORK_FLOATS (2u << 20)   /* ~8 MiB of im2col columns per group */
#define CONV_MIN_COLS 1024

static void plan_group(fvl_conv2d_shape *s) {
  size_t K = (size_t)s->C * s->KH * s->KW, P = (size_t)s->OH * s->OW;
  size_t g = CONV_WORK_FLOATS / (K * P);
  size_t gmin = (CONV_MIN_COLS + P - 1) / P;
  if (g < gmin) g = gmin;
  if (g < 1) g = 1;
  if (s->B > 0 && g > (size_t)s->B) g = (size_t)s->B;
  if (g > 4096) g = 4096;
  s->G = (int)g;
}

int fvl_conv2d_plan(fvl_conv2d_shape *s) {
  if (s->B < 0 || s->C <= 0 || s->H <= 0 || s->W <= 0 || s->O <= 0 || s->KH <= 0 || s->KW <= 0)
    return fvl_err("conv2d: sizes must be positive (input %dx%dx%dx%d, filters %dx%dx%dx%d)", s->B,
                   s->C, s->H, s->W, s->O, s->C, s->KH, s->KW);
  if (s->sh <= 0 || s->sw <= 0)
    return fvl_err("conv2d: stride must be >= 1, got %dx%d", s->sh, s->sw);
  if (s->ph < 0 || s->pw < 0)
    return fvl_err("conv2d: padding must be >= 0, got %dx%d", s->ph, s->pw);
  int eh = s->H + 2 * s->ph, ew = s->W + 2 * s->pw;
  if (eh < s->KH || ew < s->KW)
    return fvl_err("conv2d: input %dx%d (padded %dx%d) is smaller than the kernel %dx%d", s->H, s->W,
                   eh, ew, s->KH, s->KW);
  s->OH = (eh - s->KH) / s->sh + 1;
  s->OW = (ew - s->KW) / s->sw + 1;
  plan_group(s);
  return 0;
}

/* stride 1: dx is the forward convolution of dy (B×O×OH×OW) with the flipped kernel
 * wf[c][o][i][j] = w[o][c][KH-1-i][KW-1-j] and padding KH-1-ph — the same wide GEMMs as the
 * forward instead of a K = O GEMM and a scatter (col2im). */
static int transposed_shape(const fvl_conv2d_shape *s, fvl_conv2d_shape *t) {
  if (s->sh != 1 || s->sw != 1 || s->ph > s->KH - 1 || s->pw > s->KW - 1) return 0;
  *t = (fvl_conv2d_shape){.B = s->B, .C = s->O, .H = s->OH, .W = s->OW, .O = s->C, .KH = s->KH,
                          .KW = s->KW, .sh = 1, .sw = 1, .ph = s->KH - 1 - s->ph, .pw = s->KW - 1 - s->pw};
  t->OH = t->H + 2 * t->ph - t->KH + 1;
  t->OW = t->W + 2 * t->pw - t->KW + 1;
  plan_group(t);
  return t->OH == s->H && t->OW == s->W;
}

static size_t own_workspace(const fvl_conv2d_shape *s) {
  size_t K = (size_t)s->C * s->KH * s->KW, P = (size_t)s->OH * s->OW;
  return (K + (size_t)s->O) * P * (size_t)s->G;
}

size_t fvl_conv2d_workspace(const fvl_conv2d_shape *s) {
  size_t n = own_workspace(s);
  fvl_conv2d_shape t;
  if (transposed_shape(s, &t)) {
    size_t m = own_workspace(&t) + (size_t)s->O * s->C * s->KH * s->KW;
    if (m > n) n = m;
  }
  return n;
}

/* valid output columns ow for kernel column j: 0 <= ow·sw - pw + j < W */
static inline void valid_range(int n_out, int stride, int pad, int j, int n_in, int *lo, int *hi) {
  int a = pad - j;                               /* need ow·stride >= a */
  int l = a <= 0 ? 0 : (a + stride - 1) / stride;
  int b = n_in - 1 + pad - j;                    /* need ow·stride <= b */
  int h = b < 0 ? -1 : b / stride;
  if (h > n_out - 1) h = n_out - 1;
  *lo = l;
  *hi = h;                                       /* may be < lo: nothing valid */
}

void fvl_im2col(const fvl_conv2d_shape *s, const float *x, int g, float *cols) {
  const int C = s->C, H = s->H, W = s->W, KH = s->KH, KW = s->KW, OH = s->OH, OW = s->OW;
  const size_t P = (size_t)OH * OW, gP = P * (size_t)g, plane = (size_t)H * W;
  const int K = C * KH * KW;
#pragma omp parallel for schedule(static)
  for (int k = 0; k < K; k++) {
    int c = k / (KH * KW), i = (k / KW) % KH, j = k % KW;
    int lo, hi;
    valid_range(OW, s->sw, s->pw, j, W, &lo, &hi);
    float *row = cols + (size_t)k * gP;
    for (int b = 0; b < g; b++) {
      const float *xp = x + ((size_t)b * C + c) * plane;
      float *out = row + (size_t)b * P;
      for (int oh = 0; oh < OH; oh++) {
        int h = oh * s->sh - s->ph + i;
        float *o = out + (size_t)oh * OW;
        if (h < 0 || h >= H || hi < lo) {
          memset(o, 0, sizeof(float) * OW);
          continue;
        }
        const float *xr = xp + (size_t)h * W;
        for (int ow = 0; ow < lo; ow++) o[ow] = 0.f;
        if (s->sw == 1) {
          memcpy(o + lo, xr + lo - s->pw + j, sizeof(float) * (size_t)(hi - lo + 1));
        } else {
          for (int ow = lo; ow <= hi; ow++) o[ow] = xr[ow * s->sw - s->pw + j];
        }
        for (int ow = hi + 1; ow < OW; ow++) o[ow] = 0.f;
      }
    }
  }
}

void fvl_col2im(const fvl_conv2d_shape *s, const float *cols, int g, float *dx) {
  const int C = s->C, H = s->H, W = s->W, KH = s->KH, KW = s->KW, OH = s->OH, OW = s->OW;
  const size_t P = (size_t)OH * OW, gP = P * (size_t)g, plane = (size_t)H * W;
  const int nbc = g * C;
#pragma omp parallel for schedule(static)
  for (int bc = 0; bc < nbc; bc++) {
    int b = bc / C, c = bc % C;
    float *xp = dx + (size_t)bc * plane;
    for (int i = 0; i < KH; i++)
      for (int j = 0; j < KW; j++) {
        int k = (c * KH + i) * KW + j;
        int lo, hi;
        valid_range(OW, s->sw, s->pw, j, W, &lo, &hi);
        if (hi < lo) continue;
        const float *row = cols + (size_t)k * gP + (size_t)b * P;
        for (int oh = 0; oh < OH; oh++) {
          int h = oh * s->sh - s->ph + i;
          if (h < 0 || h >= H) continue;
          float *xr = xp + (size_t)h * W - s->pw + j;
          const float *o = row + (size_t)oh * OW;
          if (s->sw == 1) {
            for (int ow = lo; ow <= hi; ow++) xr[ow] += o[ow];
          } else {
            for (int ow = lo; ow <= hi; ow++) xr[ow * s->sw] += o[ow];
          }
        }
      }
  }
}

int fvl_conv2d_fwd(const fvl_conv2d_shape *s, const float *x, const float *w, const float *bias,
                   float *y, float *work) {
  const int O = s->O, K = s->C * s->KH * s->KW;
  const size_t P = (size_t)s->OH * s->OW, in_sz = (size_t)s->C * s->H * s->W, out_sz = (size_t)O * P;
  float *cols = work, *ybuf = work + (size_t)K * P * s->G;
  for (int b0 = 0; b0 < s->B; b0 += s->G) {
    if (fvl_check_abort("conv2d")) return -1;
    int g = s->B - b0 < s->G ? s->B - b0 : s->G;
    const size_t gP = P * (size_t)g;
    fvl_im2col(s, x + (size_t)b0 * in_sz, g, cols);
    float *yg = y + (size_t)b0 * out_sz;
    if (g == 1) {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, O, (int)P, K, 1.f, w, K, cols, (int)P, 0.f,
                  yg, (int)P);
      if (bias) {
#pragma omp parallel for schedule(static)
        for (int o = 0; o < O; o++) {
          float bo = bias[o];
          float *r = yg + (size_t)o * P;
          for (size_t p = 0; p < P; p++) r[p] += bo;
        }
      }
    } else {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, O, (int)gP, K, 1.f, w, K, cols, (int)gP,
                  0.f, ybuf, (int)gP);
      const int nbo = g * O;
#pragma omp parallel for schedule(static)
      for (int bo = 0; bo < nbo; bo++) {
        int b = bo / O, o = bo % O;
        float bv = bias ? bias[o] : 0.f;
        const float *src = ybuf + (size_t)o * gP + (size_t)b * P;
        float *dst = yg + (size_t)bo * P;
        for (size_t p = 0; p < P; p++) dst[p] = src[p] + bv;
      }
    }
  }
  return 0;
}

int fvl_conv2d_bwd(const fvl_conv2d_shape *s, const float *x, const float *w, const float *dy,
                   float *dx, float *dw, float *db, float *work) {
  float *const dx_out = dx;
  const int O = s->O, K = s->C * s->KH * s->KW;
  const size_t P = (size_t)s->OH * s->OW, in_sz = (size_t)s->C * s->H * s->W, out_sz = (size_t)O * P;
  float *cols = work, *ybuf = work + (size_t)K * P * s->G;
  if (db) {
#pragma omp parallel for schedule(static)
    for (int o = 0; o < O; o++) {
      double acc = 0;
      for (int b = 0; b < s->B; b++) {
        const float *r = dy + (size_t)b * out_sz + (size_t)o * P;
        float part = 0.f;
        for (size_t p = 0; p < P; p++) part += r[p];
        acc += part;
      }
      db[o] = (float)acc;
    }
  }
  fvl_conv2d_shape t;
  const int flip = dx && transposed_shape(s, &t);
  if (flip) dx = NULL;   /* done below by the transposed convolution */
  if (dw && s->B == 0) memset(dw, 0, sizeof(float) * (size_t)O * K);
  for (int b0 = 0; b0 < s->B && (dw || dx); b0 += s->G) {
    if (fvl_check_abort("conv2d")) return -1;
    int g = s->B - b0 < s->G ? s->B - b0 : s->G;
    const size_t gP = P * (size_t)g;
    const float *dyg = dy + (size_t)b0 * out_sz;
    const float *dY = dyg;
    if (g > 1) {
      const int nbo = g * O;
#pragma omp parallel for schedule(static)
      for (int bo = 0; bo < nbo; bo++) {
        int b = bo / O, o = bo % O;
        memcpy(ybuf + (size_t)o * gP + (size_t)b * P, dyg + (size_t)bo * P, sizeof(float) * P);
      }
      dY = ybuf;
    }
    if (dw) {
      fvl_im2col(s, x + (size_t)b0 * in_sz, g, cols);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, O, K, (int)gP, 1.f, dY, (int)gP, cols,
                  (int)gP, b0 == 0 ? 0.f : 1.f, dw, K);
    }
    if (dx) {
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, (int)gP, O, 1.f, w, K, dY, (int)gP, 0.f,
                  cols, (int)gP);
      float *dxg = dx + (size_t)b0 * in_sz;
      memset(dxg, 0, sizeof(float) * in_sz * (size_t)g);
      fvl_col2im(s, cols, g, dxg);
    }
  }
  if (flip) {
    const int C = s->C, KK = s->KH * s->KW;
    float *wf = work + own_workspace(&t);
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++)
      for (int o = 0; o < O; o++) {
        const float *src = w + ((size_t)o * C + c) * KK;
        float *dst = wf + ((size_t)c * O + o) * KK;
        for (int k = 0; k < KK; k++) dst[k] = src[KK - 1 - k];
      }
    return fvl_conv2d_fwd(&t, dy, wf, NULL, dx_out, work);
  }
  return 0;
}
