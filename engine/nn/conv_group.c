/* conv_group.c — grouped and depthwise 2-D convolutions by direct loops over output rows,
 * forward and backward (see backbone.h); fvl_nn_conv2d_grouped in layers.c records them.
 * Depthwise layers (groups = C = O) go to the vectorised kernels of conv_dw.c; these loops are
 * their reference (fvl_conv2d_set_depthwise(0)). */
#include "backbone.h"
#include <string.h>

int fvl_conv2d_groups_check(const fvl_conv2d_shape *s, int groups) {
  if (groups < 1 || s->C % groups != 0 || s->O % groups != 0)
    return fvl_err("conv2d: groups = %d must divide the %d input and %d output channels", groups, s->C,
                   s->O);
  return 0;
}

/* output columns ow whose input column ow·stride - pad + j lies in [0, n_in): [*lo, *hi] */
static void tap_columns(int n_out, int stride, int pad, int j, int n_in, int *lo, int *hi) {
  int first = 0;
  while (first < n_out && first * stride - pad + j < 0) first++;
  int last = n_out - 1;
  while (last >= first && last * stride - pad + j >= n_in) last--;
  *lo = first;
  *hi = last;
}

int fvl_conv2d_grouped_fwd(const fvl_conv2d_shape *s, int groups, const float *x, const float *w,
                           const float *bias, float *y) {
  return fvl_conv2d_grouped_fwd_epi(s, groups, x, w, bias, NULL, y);
}

/* the epilogue runs on each output plane as soon as it is complete (still in cache) */
int fvl_conv2d_grouped_fwd_epi(const fvl_conv2d_shape *s, int groups, const float *x, const float *w,
                               const float *bias, const fvl_conv_epi *ep, float *y) {
  if (fvl_conv2d_groups_check(s, groups) < 0) return -1;
  if (fvl_conv2d_dw_ok(s, groups)) return fvl_conv2d_dw_fwd(s, x, w, bias, ep, y);
  const int C = s->C, O = s->O, H = s->H, W = s->W, OH = s->OH, OW = s->OW, KH = s->KH, KW = s->KW;
  const int sh = s->sh, sw = s->sw, ph = s->ph, pw = s->pw, cpg = C / groups, opg = O / groups;
  const size_t pin = (size_t)H * W, pout = (size_t)OH * OW, kk = (size_t)KH * KW;
  const int64_t planes = (int64_t)s->B * O;
#pragma omp parallel for schedule(static)
  for (int64_t bo = 0; bo < planes; bo++) {
    if (fvl_aborted()) continue;
    const int b = (int)(bo / O), o = (int)(bo % O), c0 = (o / opg) * cpg;
    float *yp = y + (size_t)bo * pout;
    const float bv = bias ? bias[o] : 0.f;
    for (size_t p = 0; p < pout; p++) yp[p] = bv;
    for (int cl = 0; cl < cpg; cl++) {
      const float *xp = x + ((size_t)b * C + c0 + cl) * pin, *wp = w + ((size_t)o * cpg + cl) * kk;
      for (int j = 0; j < KW; j++) {
        int lo, hi;
        tap_columns(OW, sw, pw, j, W, &lo, &hi);
        if (hi < lo) continue;
        for (int oh = 0; oh < OH; oh++) {
          float *yr = yp + (size_t)oh * OW;
          for (int i = 0; i < KH; i++) {
            const int h = oh * sh - ph + i;
            if (h < 0 || h >= H) continue;
            const float wv = wp[i * KW + j], *xr = xp + (size_t)h * W;
            if (sw == 1) {
              const float *xs = xr + (j - pw);
#pragma omp simd
              for (int ow = lo; ow <= hi; ow++) yr[ow] += wv * xs[ow];
            } else {
#pragma omp simd
              for (int ow = lo; ow <= hi; ow++) yr[ow] += wv * xr[ow * sw - pw + j];
            }
          }
        }
      }
    }
    if (ep) fvl_conv_epi_plane(ep, o, yp, yp, 0.f, pout);
  }
  return fvl_check_abort("conv2d");
}

/* db[o] and the weights of output channel o (NULL = skipped): sums over the batch in order */
static void bwd_out_channel(const fvl_conv2d_shape *s, int groups, int o, const float *x, const float *dy, float *dw,
                            float *db) {
  const int C = s->C, O = s->O, H = s->H, W = s->W, OH = s->OH, OW = s->OW, KH = s->KH, KW = s->KW;
  const int B = s->B, sh = s->sh, sw = s->sw, ph = s->ph, pw = s->pw, cpg = C / groups, opg = O / groups;
  const size_t pin = (size_t)H * W, pout = (size_t)OH * OW, kk = (size_t)KH * KW;
  if (db) {
    double acc = 0;
    for (int b = 0; b < B; b++) {
      const float *r = dy + ((size_t)b * O + o) * pout;
      float part = 0.f;
#pragma omp simd reduction(+ : part)
      for (size_t p = 0; p < pout; p++) part += r[p];
      acc += part;
    }
    db[o] = (float)acc;
  }
  if (!dw) return;
  const int c0 = (o / opg) * cpg;
  for (int cl = 0; cl < cpg; cl++)
    for (int i = 0; i < KH; i++)
      for (int j = 0; j < KW; j++) {
        int lo, hi;
        tap_columns(OW, sw, pw, j, W, &lo, &hi);
        double acc = 0;
        for (int b = 0; b < B && hi >= lo; b++) {
          const float *xp = x + ((size_t)b * C + c0 + cl) * pin, *gp = dy + ((size_t)b * O + o) * pout;
          float part = 0.f;
          for (int oh = 0; oh < OH; oh++) {
            const int h = oh * sh - ph + i;
            if (h < 0 || h >= H) continue;
            const float *xr = xp + (size_t)h * W, *gr = gp + (size_t)oh * OW;
#pragma omp simd reduction(+ : part)
            for (int ow = lo; ow <= hi; ow++) part += gr[ow] * xr[ow * sw - pw + j];
          }
          acc += part;
        }
        dw[((size_t)o * cpg + cl) * kk + (size_t)i * KW + j] = (float)acc;
      }
}

/* dx of plane bc = b·C + c: every output channel of its group, tap by tap */
static void bwd_in_plane(const fvl_conv2d_shape *s, int groups, int64_t bc, const float *w, const float *dy,
                         float *dx) {
  const int C = s->C, O = s->O, H = s->H, W = s->W, OH = s->OH, OW = s->OW, KH = s->KH, KW = s->KW;
  const int sh = s->sh, sw = s->sw, ph = s->ph, pw = s->pw, cpg = C / groups, opg = O / groups;
  const size_t pin = (size_t)H * W, pout = (size_t)OH * OW, kk = (size_t)KH * KW;
  const int b = (int)(bc / C), c = (int)(bc % C), g = c / cpg, cl = c % cpg;
  float *xp = dx + (size_t)bc * pin;
  memset(xp, 0, sizeof(float) * pin);
  for (int ol = 0; ol < opg; ol++) {
    const int o = g * opg + ol;
    const float *gp = dy + ((size_t)b * O + o) * pout, *wp = w + ((size_t)o * cpg + cl) * kk;
    for (int j = 0; j < KW; j++) {
      int lo, hi;
      tap_columns(OW, sw, pw, j, W, &lo, &hi);
      if (hi < lo) continue;
      for (int oh = 0; oh < OH; oh++) {
        const float *gr = gp + (size_t)oh * OW;
        for (int i = 0; i < KH; i++) {
          const int h = oh * sh - ph + i;
          if (h < 0 || h >= H) continue;
          const float wv = wp[i * KW + j];
          float *xr = xp + (size_t)h * W;
          if (sw == 1) {
            float *xs = xr + (j - pw);
#pragma omp simd
            for (int ow = lo; ow <= hi; ow++) xs[ow] += wv * gr[ow];
          } else {
            for (int ow = lo; ow <= hi; ow++) xr[ow * sw - pw + j] += wv * gr[ow];
          }
        }
      }
    }
  }
}

int fvl_conv2d_grouped_bwd(const fvl_conv2d_shape *s, int groups, const float *x, const float *w,
                           const float *dy, float *dx, float *dw, float *db) {
  if (fvl_conv2d_groups_check(s, groups) < 0) return -1;
  if (fvl_conv2d_dw_ok(s, groups)) return fvl_conv2d_dw_bwd(s, x, w, dy, dx, dw, db);
  if (db || dw) {
#pragma omp parallel for schedule(static)
    for (int o = 0; o < s->O; o++) {
      if (fvl_aborted()) continue;
      bwd_out_channel(s, groups, o, x, dy, dw, db);
    }
    if (fvl_check_abort("conv2d")) return -1;
  }
  if (!dx) return 0;
  const int64_t planes = (int64_t)s->B * s->C;
#pragma omp parallel for schedule(static)
  for (int64_t bc = 0; bc < planes; bc++) {
    if (fvl_aborted()) continue;
    bwd_in_plane(s, groups, bc, w, dy, dx);
  }
  return fvl_check_abort("conv2d");
}
