/* conv.c — 2-D convolution by im2col + one sgemm per group of samples.
 *
 * Forward for a group of g samples (P = OH·OW, K = C·KH·KW):
 *   cols (K × g·P) = im2col(x_group)
 *   Y    (O × g·P) = W (O × K) · cols          — one sgemm
 *   y[b][o][p] = Y[o][b·P + p] + bias[o]       — scatter
 * Backward:
 *   dY (O × g·P) gathered from dy;  dW += dY · colsᵀ (partial sums over fixed parts of the batch,
 *   added in part order at the end: the same bits with any thread count)
 *   dx: stride 1 — the forward convolution of dy with the flipped kernel (wide GEMMs);
 *       otherwise dcols = Wᵀ · dY and dx = col2im(dcols)
 * Threads: the groups are shared out among the OpenMP threads, each running im2col, a
 * single-threaded sgemm and the scatter on its own workspace. One thread pool (OpenMP) instead
 * of OpenMP for the data movement plus OpenBLAS's pool for the GEMMs: on the shared 2-core
 * machines the two pools spun against each other and burnt ~4x the CPU time of one thread.
 * Grouping samples keeps the GEMMs wide for the small late feature maps (7×7 → 49 columns per
 * sample would starve the GEMM). */
#include "nn.h"
#include <string.h>
#include <cblas.h>

#define CONV_WORK_FLOATS (2u << 20)   /* ~8 MiB of im2col columns per group (per thread) */
#define CONV_MIN_COLS 1024

/* The sample groups do not depend on the thread count: a GEMM's bits depend on its width
 * (OpenBLAS picks other kernels for narrow products), so the groups are planned for
 * CONV_SPLIT notional threads whatever T is, and T threads take them in turn. */
#define CONV_SPLIT 4

static void plan_group(fvl_conv2d_shape *s, int T) {
  size_t K = (size_t)s->C * s->KH * s->KW, P = (size_t)s->OH * s->OW;
  size_t g = CONV_WORK_FLOATS / (K * P);
  size_t gmin = (CONV_MIN_COLS + P - 1) / P;
  if (g < gmin) g = gmin;
  if (g < 1) g = 1;
  if (g > 4096) g = 4096;
  if (T < 1) T = 1;
  if (s->B > 0) {
    /* a whole number of groups per CONV_SPLIT, of (nearly) equal size, at least gmin wide */
    const size_t S = CONV_SPLIT;
    size_t ng = ((size_t)s->B + g - 1) / g;
    if (ng >= S) ng = ng / S * S;
    while (ng > S && ((size_t)s->B + ng - 1) / ng < gmin) ng -= S;
    g = ((size_t)s->B + ng - 1) / ng;
    if (g < 1) g = 1;
    size_t used = ((size_t)s->B + g - 1) / g;   /* groups that actually exist */
    if ((size_t)T > used) T = (int)used;
  }
  s->G = (int)g;
  s->T = T;
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
  plan_group(s, fvl_omp_max_threads());
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
  plan_group(t, s->T);   /* the thread count the workspace was sized for */
  return t->OH == s->H && t->OW == s->W;
}

/* The weight gradient's grouping does not depend on the thread count: groups of Gd samples
 * (the grouping planned for one thread), in at most 16 parts of consecutive groups (and 64 MB
 * of partial dW); each part sums its groups in order, the parts are added in part order. */
static int dw_group_size(const fvl_conv2d_shape *s) {
  fvl_conv2d_shape one = *s;
  plan_group(&one, 1);
  return one.G;
}
static int dw_parts(const fvl_conv2d_shape *s, int Gd) {
  const size_t wsz = (size_t)s->O * s->C * s->KH * s->KW, cap = ((size_t)16 << 20) / (wsz ? wsz : 1);
  int np = s->B > 0 ? (s->B + Gd - 1) / Gd : 1;
  if (np > 16) np = 16;
  if ((size_t)np > cap) np = cap > 0 ? (int)cap : 1;
  return np > 0 ? np : 1;
}
/* per thread: cols (K × G·P) + gathered output (O × G·P) for the larger of the forward's and the
 * weight gradient's groups; then the partial dW (O × K) of the parts */
static size_t per_thread(const fvl_conv2d_shape *s) {
  size_t K = (size_t)s->C * s->KH * s->KW, P = (size_t)s->OH * s->OW;
  int Gd = dw_group_size(s), G = s->G > Gd ? s->G : Gd;
  return (K + (size_t)s->O) * P * (size_t)G;
}
static size_t own_workspace(const fvl_conv2d_shape *s) {
  size_t K = (size_t)s->C * s->KH * s->KW;
  size_t n = per_thread(s) * (size_t)s->T + (size_t)s->O * K * (size_t)dw_parts(s, dw_group_size(s));
  size_t d = fvl_conv2d_direct_dw_workspace(s);   /* 0 unless the direct kernels apply */
  return d > n ? d : n;
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

/* serial kernels (called by one thread for its group) */
void fvl_im2col(const fvl_conv2d_shape *s, const float *x, int g, float *cols) {
  const int C = s->C, H = s->H, W = s->W, KH = s->KH, KW = s->KW, OH = s->OH, OW = s->OW;
  const size_t P = (size_t)OH * OW, gP = P * (size_t)g, plane = (size_t)H * W;
  const int K = C * KH * KW;
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
  for (int bc = 0; bc < g * C; bc++) {
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

/* the GEMMs run single-threaded inside the OpenMP region; OpenBLAS's own pool is paused */
static int blas_single(void) {
  int n = openblas_get_num_threads();
  if (n != 1) openblas_set_num_threads(1);
  return n;
}
static void blas_restore(int n) {
  if (n != 1) openblas_set_num_threads(n);
}

int fvl_conv2d_fwd(const fvl_conv2d_shape *s, const float *x, const float *w, const float *bias,
                   float *y, float *work) {
  return fvl_conv2d_fwd_epi(s, x, w, bias, NULL, y, work);
}

/* the epilogue runs in the scatter of each group, right after its GEMM */
int fvl_conv2d_fwd_epi(const fvl_conv2d_shape *s, const float *x, const float *w, const float *bias,
                       const fvl_conv_epi *ep, float *y, float *work) {
  if (fvl_conv2d_direct_ok(s)) return fvl_conv2d_direct_fwd_epi(s, x, w, bias, ep, y, work);
  const int O = s->O, K = s->C * s->KH * s->KW, G = s->G;
  const size_t P = (size_t)s->OH * s->OW, in_sz = (size_t)s->C * s->H * s->W, out_sz = (size_t)O * P;
  const size_t per = per_thread(s);
  const int ngroups = s->B > 0 ? (s->B + G - 1) / G : 0;
  const int nb = blas_single();
#pragma omp parallel num_threads(s->T)
  {
    float *cols = work + per * (size_t)fvl_omp_thread(), *ybuf = cols + (size_t)K * P * G;
#pragma omp for schedule(static)
    for (int gi = 0; gi < ngroups; gi++) {
      if (fvl_aborted()) continue;
      const int b0 = gi * G, g = s->B - b0 < G ? s->B - b0 : G;
      const size_t gP = P * (size_t)g;
      fvl_im2col(s, x + (size_t)b0 * in_sz, g, cols);
      float *yg = y + (size_t)b0 * out_sz;
      float *dst0 = g == 1 ? yg : ybuf;
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, O, (int)gP, K, 1.f, w, K, cols, (int)gP,
                  0.f, dst0, (int)gP);
      for (int bo = 0; bo < g * O; bo++) {
        const int b = bo / O, o = bo % O;
        const float bv = bias ? bias[o] : 0.f;
        float *dst = yg + (size_t)bo * P;
        if (ep) {
          fvl_conv_epi_plane(ep, o, dst, g == 1 ? dst : ybuf + (size_t)o * gP + (size_t)b * P, bv, P);
        } else if (g == 1) {
          if (bias)
            for (size_t p = 0; p < P; p++) dst[p] += bv;
        } else {
          const float *src = ybuf + (size_t)o * gP + (size_t)b * P;
          for (size_t p = 0; p < P; p++) dst[p] = src[p] + bv;
        }
      }
    }
  }
  blas_restore(nb);
  return fvl_check_abort("conv2d");
}

/* db[o] = Σ over the batch and positions of dy (8-lane partial sums per plane, added in double) */
static void bwd_bias(const fvl_conv2d_shape *s, const float *dy, float *db) {
  const int O = s->O;
  const size_t P = (size_t)s->OH * s->OW, out_sz = (size_t)O * P;
#pragma omp parallel for schedule(static)
  for (int o = 0; o < O; o++) {
    double acc = 0;
    for (int b = 0; b < s->B; b++) {
      const float *r = dy + (size_t)b * out_sz + (size_t)o * P;
      float lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};   /* 8 partial sums: vectorises */
      size_t p = 0;
      for (; p + 8 <= P; p += 8)
        for (int l = 0; l < 8; l++) lane[l] += r[p + l];
      for (; p < P; p++) lane[0] += r[p];
      for (int l = 0; l < 8; l++) acc += lane[l];
    }
    db[o] = (float)acc;
  }
}

/* the GEMM path of the backward: dW (dw_gemm, NULL = not here) into partial sums over fixed parts
 * of the batch added in part order, and dx (dx_cols, NULL = not here) by Wᵀ·dY and col2im */
static int bwd_gemm(const fvl_conv2d_shape *s, const float *x, const float *w, const float *dy, float *dw_gemm,
                    float *dx_cols, float *work) {
  const int O = s->O, K = s->C * s->KH * s->KW, G = s->G;
  const size_t P = (size_t)s->OH * s->OW, in_sz = (size_t)s->C * s->H * s->W, out_sz = (size_t)O * P;
  const size_t per = per_thread(s), wsz = (size_t)O * K;
  const int Gd = dw_group_size(s), np = dw_parts(s, Gd), ngd = s->B > 0 ? (s->B + Gd - 1) / Gd : 0;
  float *partial = work + per * (size_t)s->T;   /* np partial dW */
  const int nb = blas_single();
#pragma omp parallel num_threads(s->T)
  {
    const int tid = fvl_omp_thread();
    float *cols = work + per * (size_t)tid, *ybuf = cols + (size_t)K * P * (G > Gd ? G : Gd);
#pragma omp for schedule(dynamic, 1)
    for (int part = 0; part < np; part++) {
      float *dwp = partial + wsz * (size_t)part;
      int first = 1;
      for (int gi = ngd * part / np; gi < ngd * (part + 1) / np; gi++) {
        if (fvl_aborted()) break;
        const int b0 = gi * Gd, g = s->B - b0 < Gd ? s->B - b0 : Gd;
        const size_t gP = P * (size_t)g;
        const float *dyg = dy + (size_t)b0 * out_sz;
        const float *dY = dyg;
        if (g > 1) {
          for (int bo = 0; bo < g * O; bo++) {
            const int b = bo / O, o = bo % O;
            memcpy(ybuf + (size_t)o * gP + (size_t)b * P, dyg + (size_t)bo * P, sizeof(float) * P);
          }
          dY = ybuf;
        }
        if (dw_gemm) {
          fvl_im2col(s, x + (size_t)b0 * in_sz, g, cols);
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, O, K, (int)gP, 1.f, dY, (int)gP, cols,
                      (int)gP, first ? 0.f : 1.f, dwp, K);
          first = 0;
        }
        if (dx_cols) {
          cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, (int)gP, O, 1.f, w, K, dY, (int)gP, 0.f,
                      cols, (int)gP);
          float *dxg = dx_cols + (size_t)b0 * in_sz;
          memset(dxg, 0, sizeof(float) * in_sz * (size_t)g);
          fvl_col2im(s, cols, g, dxg);
        }
      }
      if (dw_gemm && first) memset(dwp, 0, sizeof(float) * wsz);   /* a part without groups */
    }
  }
  blas_restore(nb);
  if (fvl_check_abort("conv2d")) return -1;
  if (dw_gemm) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < wsz; i++) {
      float acc = partial[i];
      for (int k = 1; k < np; k++) acc += partial[wsz * (size_t)k + i];
      dw_gemm[i] = acc;
    }
  }
  return 0;
}

/* stride 1: dx = the forward convolution of dy with the flipped kernel (shape t) */
static int bwd_dx_flip(const fvl_conv2d_shape *s, const fvl_conv2d_shape *t, const float *w, const float *dy,
                       float *dx, float *work) {
  const int O = s->O, C = s->C, KK = s->KH * s->KW;
  float *wf = work + own_workspace(t);
#pragma omp parallel for schedule(static)
  for (int c = 0; c < C; c++)
    for (int o = 0; o < O; o++) {
      const float *src = w + ((size_t)o * C + c) * KK;
      float *dst = wf + ((size_t)c * O + o) * KK;
      for (int k = 0; k < KK; k++) dst[k] = src[KK - 1 - k];
    }
  return fvl_conv2d_fwd(t, dy, wf, NULL, dx, work);
}

int fvl_conv2d_bwd(const fvl_conv2d_shape *s, const float *x, const float *w, const float *dy,
                   float *dx, float *dw, float *db, float *work) {
  if (db) bwd_bias(s, dy, db);
  fvl_conv2d_shape t;
  const int flip = dx && transposed_shape(s, &t);
  float *dx_cols = flip ? NULL : dx;   /* dx by col2im only when the flip does not apply */
  const int direct_dw = dw && fvl_conv2d_direct_ok(s);
  float *dw_gemm = direct_dw ? NULL : dw;
  if (direct_dw && fvl_conv2d_direct_dw(s, x, dy, dw, work) < 0) return -1;
  if ((dw_gemm || dx_cols) && bwd_gemm(s, x, w, dy, dw_gemm, dx_cols, work) < 0) return -1;
  return flip ? bwd_dx_flip(s, &t, w, dy, dx, work) : 0;
}
