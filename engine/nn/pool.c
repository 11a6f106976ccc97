/* pool.c — max and average pooling over NCHW planes, OpenMP over (b, c) planes. */
#include "nn.h"
#include <string.h>
#include <math.h>

int fvl_pool2d_plan(fvl_pool2d_shape *s, const char *fn) {
  if (s->kh <= 0 || s->kw <= 0)
    return fvl_err("%s: kernel size must be >= 1, got %dx%d", fn, s->kh, s->kw);
  if (s->sh <= 0 || s->sw <= 0) return fvl_err("%s: stride must be >= 1, got %dx%d", fn, s->sh, s->sw);
  if (s->ph < 0 || s->pw < 0 || 2 * s->ph > s->kh || 2 * s->pw > s->kw)
    return fvl_err("%s: padding %dx%d must be >= 0 and at most half the kernel %dx%d", fn, s->ph, s->pw,
                   s->kh, s->kw);
  int eh = s->H + 2 * s->ph, ew = s->W + 2 * s->pw;
  if (eh < s->kh || ew < s->kw)
    return fvl_err("%s: input %dx%d (padded %dx%d) is smaller than the kernel %dx%d", fn, s->H, s->W,
                   eh, ew, s->kh, s->kw);
  s->OH = (eh - s->kh) / s->sh + 1;
  s->OW = (ew - s->kw) / s->sw + 1;
  return 0;
}

/* the common 2×2 / stride 2 / no padding case without the generic window bounds */
/* input rows [lo, hi) under output row o's window (padding clipped away) */
static inline void window(int o, int stride, int pad, int k, int n, int *lo, int *hi) {
  const int start = o * stride - pad;
  *lo = start < 0 ? 0 : start;
  *hi = start + k > n ? n : start + k;
}

static void maxpool2x2_fwd(const fvl_pool2d_shape *s, const float *x, float *y, int32_t *argmax) {
  const int H = s->H, W = s->W, OH = s->OH, OW = s->OW;
  const int64_t planes = (int64_t)s->B * s->C;
#pragma omp parallel for schedule(static)
  for (int64_t bc = 0; bc < planes; bc++) {
    const float *xp = x + bc * H * W;
    float *yp = y + bc * OH * OW;
    int32_t *ap = argmax + bc * OH * OW;
    for (int oh = 0; oh < OH; oh++) {
      const float *r0 = xp + (2 * oh) * W, *r1 = r0 + W;
      for (int ow = 0; ow < OW; ow++) {
        const int w = 2 * ow;
        float best = r0[w];
        int32_t bi = 2 * oh * W + w;
        /* same order and NaN rule as the generic loop: first maximum wins, NaN propagates */
        if (best == best) {
          float v = r0[w + 1];
          if (v > best || v != v) { best = v; bi = 2 * oh * W + w + 1; }
          if (best == best) {
            v = r1[w];
            if (v > best || v != v) { best = v; bi = (2 * oh + 1) * W + w; }
            if (best == best) {
              v = r1[w + 1];
              if (v > best || v != v) { best = v; bi = (2 * oh + 1) * W + w + 1; }
            }
          }
        }
        yp[oh * OW + ow] = best;
        ap[oh * OW + ow] = bi;
      }
    }
  }
}

void fvl_maxpool2d_fwd(const fvl_pool2d_shape *s, const float *x, float *y, int32_t *argmax) {
  const int H = s->H, W = s->W, OH = s->OH, OW = s->OW;
  const int64_t planes = (int64_t)s->B * s->C;
  if (s->kh == 2 && s->kw == 2 && s->sh == 2 && s->sw == 2 && s->ph == 0 && s->pw == 0) {
    maxpool2x2_fwd(s, x, y, argmax);
    return;
  }
#pragma omp parallel for schedule(static)
  for (int64_t bc = 0; bc < planes; bc++) {
    const float *xp = x + bc * H * W;
    float *yp = y + bc * OH * OW;
    int32_t *ap = argmax + bc * OH * OW;
    for (int oh = 0; oh < OH; oh++) {
      int hs, he;
      window(oh, s->sh, s->ph, s->kh, H, &hs, &he);
      for (int ow = 0; ow < OW; ow++) {
        int ws, we;
        window(ow, s->sw, s->pw, s->kw, W, &ws, &we);
        float best = -INFINITY;
        int32_t bi = -1;
        for (int h = hs; h < he; h++)
          for (int w = ws; w < we; w++) {
            float v = xp[h * W + w];
            if (bi < 0 || v > best || v != v) {
              best = v;
              bi = h * W + w;
              if (v != v) goto done;   /* NaN propagates */
            }
          }
      done:
        yp[oh * OW + ow] = best;
        ap[oh * OW + ow] = bi;
      }
    }
  }
}

void fvl_maxpool2d_bwd(const fvl_pool2d_shape *s, const float *dy, const int32_t *argmax, float *dx) {
  const int64_t in_plane = (int64_t)s->H * s->W, out_plane = (int64_t)s->OH * s->OW;
  const int64_t planes = (int64_t)s->B * s->C;
#pragma omp parallel for schedule(static)
  for (int64_t bc = 0; bc < planes; bc++) {
    float *dp = dx + bc * in_plane;
    const float *gp = dy + bc * out_plane;
    const int32_t *ap = argmax + bc * out_plane;
    memset(dp, 0, sizeof(float) * (size_t)in_plane);
    for (int64_t i = 0; i < out_plane; i++)
      if (ap[i] >= 0) dp[ap[i]] += gp[i];
  }
}

void fvl_avgpool2d_fwd(const fvl_pool2d_shape *s, const float *x, float *y) {
  const int H = s->H, W = s->W, OH = s->OH, OW = s->OW;
  const int64_t planes = (int64_t)s->B * s->C;
  const float inv = 1.f / (float)(s->kh * s->kw);
#pragma omp parallel for schedule(static)
  for (int64_t bc = 0; bc < planes; bc++) {
    const float *xp = x + bc * H * W;
    float *yp = y + bc * OH * OW;
    for (int oh = 0; oh < OH; oh++) {
      int hs, he;
      window(oh, s->sh, s->ph, s->kh, H, &hs, &he);
      for (int ow = 0; ow < OW; ow++) {
        int ws, we;
        window(ow, s->sw, s->pw, s->kw, W, &ws, &we);
        float acc = 0.f;
        for (int h = hs; h < he; h++)
          for (int w = ws; w < we; w++) acc += xp[h * W + w];
        yp[oh * OW + ow] = acc * inv;
      }
    }
  }
}

void fvl_avgpool2d_bwd(const fvl_pool2d_shape *s, const float *dy, float *dx) {
  const int H = s->H, W = s->W, OH = s->OH, OW = s->OW;
  const int64_t planes = (int64_t)s->B * s->C;
  const float inv = 1.f / (float)(s->kh * s->kw);
#pragma omp parallel for schedule(static)
  for (int64_t bc = 0; bc < planes; bc++) {
    float *dp = dx + bc * H * W;
    const float *gp = dy + bc * OH * OW;
    memset(dp, 0, sizeof(float) * (size_t)H * W);
    for (int oh = 0; oh < OH; oh++) {
      int hs, he;
      window(oh, s->sh, s->ph, s->kh, H, &hs, &he);
      for (int ow = 0; ow < OW; ow++) {
        int ws, we;
        window(ow, s->sw, s->pw, s->kw, W, &ws, &we);
        float g = gp[oh * OW + ow] * inv;
        for (int h = hs; h < he; h++)
          for (int w = ws; w < we; w++) dp[h * W + w] += g;
      }
    }
  }
}
