/* warp.c — bilinear affine warp, resize, 5-point similarity estimate, the ArcFace template
 * (conventions in warp.h). Interpolation is written as two lerps, a + f·(b − a), so a constant
 * image stays exactly constant and a linear ramp is reproduced to float rounding. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "warp.h"

int fvl_affine_invert(const double M[6], double inv[6]) {
  double det = M[0] * M[4] - M[1] * M[3];
  for (int k = 0; k < 6; k++)
    if (!isfinite(M[k])) return fvl_err("warp_affine: matrix entry %d = %g is not finite", k, M[k]);
  if (!isfinite(det) || fabs(det) < 1e-300 || !isfinite(1.0 / det))
    return fvl_err("warp_affine: the matrix [%g %g %g; %g %g %g] is singular (determinant %g)",
                   M[0], M[1], M[2], M[3], M[4], M[5], det);
  double a = M[4] / det, b = -M[1] / det, c = -M[3] / det, d = M[0] / det;
  inv[0] = a;
  inv[1] = b;
  inv[2] = -(a * M[2] + b * M[5]);
  inv[3] = c;
  inv[4] = d;
  inv[5] = -(c * M[2] + d * M[5]);
  return 0;
}

static int check_sizes(const char *fn, int64_t C, int64_t H, int64_t W, int64_t OH, int64_t OW) {
  if (C < 1 || H < 1 || W < 1 || OH < 1 || OW < 1 || H > 65535 || W > 65535 || OH > 65535 || OW > 65535)
    return fvl_err("%s: %lld planes of %lldx%lld pixels to %lldx%lld (expected at least one plane, "
                   "sizes 1..65535)", fn, (long long)C, (long long)W, (long long)H, (long long)OW,
                   (long long)OH);
  return 0;
}

/* the sample of plane p at (sx, sy): bilinear, neighbours outside read v (constant border) */
static inline float sample_const(const float *p, int64_t H, int64_t W, int64_t x0, int64_t y0,
                                 float fx, float fy, float v) {
  int inx0 = x0 >= 0, inx1 = x0 + 1 < W, iny0 = y0 >= 0, iny1 = y0 + 1 < H;
  float p00 = iny0 && inx0 ? p[y0 * W + x0] : v, p01 = iny0 && inx1 ? p[y0 * W + x0 + 1] : v;
  float p10 = iny1 && inx0 ? p[(y0 + 1) * W + x0] : v, p11 = iny1 && inx1 ? p[(y0 + 1) * W + x0 + 1] : v;
  float top = p00 + fx * (p01 - p00), bot = p10 + fx * (p11 - p10);
  return top + fy * (bot - top);
}

static inline int64_t clampi(int64_t i, int64_t n) { return i < 0 ? 0 : i >= n ? n - 1 : i; }

int fvl_warp_affine(const float *src, int64_t C, int64_t H, int64_t W, float *dst, int64_t OH,
                    int64_t OW, const double M[6], int border, float value) {
  if (check_sizes("warp_affine", C, H, W, OH, OW)) return -1;
  if (border != FVL_BORDER_CONSTANT && border != FVL_BORDER_REPLICATE)
    return fvl_err("warp_affine: border mode %d (expected 0 constant or 1 replicate)", border);
  double iv[6];
  if (fvl_affine_invert(M, iv)) return -1;
  const int64_t plane = H * W, oplane = OH * OW;
  #pragma omp parallel for schedule(static) if (C * oplane > 65536)
  for (int64_t y = 0; y < OH; y++) {
    for (int64_t x = 0; x < OW; x++) {
      double sx = iv[0] * (double)x + iv[1] * (double)y + iv[2];
      double sy = iv[3] * (double)x + iv[4] * (double)y + iv[5];
      float *o = dst + y * OW + x;
      if (border == FVL_BORDER_CONSTANT && !(sx > -1 && sx < (double)W && sy > -1 && sy < (double)H)) {
        for (int64_t c = 0; c < C; c++) o[c * oplane] = value;   /* NaN coordinates land here too */
        continue;
      }
      if (border == FVL_BORDER_REPLICATE) {   /* clamp far-away coordinates before flooring */
        sx = sx != sx ? 0 : sx < -1 ? -1 : sx > (double)W ? (double)W : sx;
        sy = sy != sy ? 0 : sy < -1 ? -1 : sy > (double)H ? (double)H : sy;
      }
      double fx0 = floor(sx), fy0 = floor(sy);
      int64_t x0 = (int64_t)fx0, y0 = (int64_t)fy0;
      float fx = (float)(sx - fx0), fy = (float)(sy - fy0);
      for (int64_t c = 0; c < C; c++) {
        const float *p = src + c * plane;
        if (border == FVL_BORDER_CONSTANT) {
          o[c * oplane] = sample_const(p, H, W, x0, y0, fx, fy, value);
        } else {
          int64_t xa = clampi(x0, W), xb = clampi(x0 + 1, W), ya = clampi(y0, H), yb = clampi(y0 + 1, H);
          float p00 = p[ya * W + xa], p01 = p[ya * W + xb], p10 = p[yb * W + xa], p11 = p[yb * W + xb];
          float top = p00 + fx * (p01 - p00), bot = p10 + fx * (p11 - p10);
          o[c * oplane] = top + fy * (bot - top);
        }
      }
    }
  }
  return 0;
}

void fvl_resize_matrix(int64_t H, int64_t W, int64_t OH, int64_t OW, double M[6]) {
  double sx = (double)OW / (double)W, sy = (double)OH / (double)H;
  M[0] = sx; M[1] = 0; M[2] = 0.5 * sx - 0.5;
  M[3] = 0; M[4] = sy; M[5] = 0.5 * sy - 0.5;
}

/* per output index: the two source indices (edge-clamped) and the weight of the second */
typedef struct { int64_t a, b; float f; } tap;
static tap *taps(int64_t n, int64_t on) {
  tap *t = malloc((size_t)on * sizeof *t);
  if (!t) { fvl_err("resize: out of memory"); return NULL; }
  double s = (double)n / (double)on;
  for (int64_t i = 0; i < on; i++) {
    double x = ((double)i + 0.5) * s - 0.5, f0 = floor(x);
    int64_t x0 = (int64_t)f0;
    t[i].a = clampi(x0, n);
    t[i].b = clampi(x0 + 1, n);
    t[i].f = (float)(x - f0);
  }
  return t;
}

int fvl_resize(const float *src, int64_t C, int64_t H, int64_t W, float *dst, int64_t OH, int64_t OW) {
  if (check_sizes("resize", C, H, W, OH, OW)) return -1;
  tap *tx = taps(W, OW), *ty = tx ? taps(H, OH) : NULL;
  if (!ty) { free(tx); return -1; }
  #pragma omp parallel for schedule(static) collapse(2) if (C * OH * OW > 65536)
  for (int64_t c = 0; c < C; c++)
    for (int64_t y = 0; y < OH; y++) {
      const float *r0 = src + (c * H + ty[y].a) * W, *r1 = src + (c * H + ty[y].b) * W;
      float fy = ty[y].f, *o = dst + (c * OH + y) * OW;
      for (int64_t x = 0; x < OW; x++) {
        float fx = tx[x].f;
        float top = r0[tx[x].a] + fx * (r0[tx[x].b] - r0[tx[x].a]);
        float bot = r1[tx[x].a] + fx * (r1[tx[x].b] - r1[tx[x].a]);
        o[x] = top + fy * (bot - top);
      }
    }
  free(tx);
  free(ty);
  return 0;
}

int fvl_resize_u8(const uint8_t *src, int C, int H, int W, uint8_t *dst, int OH, int OW) {
  if (check_sizes("resize", C, H, W, OH, OW)) return -1;
  tap *tx = taps(W, OW), *ty = tx ? taps(H, OH) : NULL;
  if (!ty) { free(tx); return -1; }
  for (int64_t y = 0; y < OH; y++) {
    const uint8_t *r0 = src + ty[y].a * W * C, *r1 = src + ty[y].b * W * C;
    float fy = ty[y].f;
    uint8_t *o = dst + y * OW * C;
    for (int64_t x = 0; x < OW; x++) {
      float fx = tx[x].f;
      int64_t a = tx[x].a * C, b = tx[x].b * C;
      for (int c = 0; c < C; c++) {
        float p00 = r0[a + c], p01 = r0[b + c], p10 = r1[a + c], p11 = r1[b + c];
        float top = p00 + fx * (p01 - p00), bot = p10 + fx * (p11 - p10);
        float v = top + fy * (bot - top) + 0.5f;
        o[x * C + c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
      }
    }
  }
  free(tx);
  free(ty);
  return 0;
}

int fvl_similarity_estimate(const double *src, const double *dst, int64_t n, double M[6]) {
  if (n < 2) return fvl_err("similarity_estimate: %lld point pairs (expected at least 2)", (long long)n);
  double mx = 0, my = 0, nx = 0, ny = 0;
  for (int64_t k = 0; k < n; k++) {
    for (int j = 0; j < 2; j++)
      if (!isfinite(src[2 * k + j]) || !isfinite(dst[2 * k + j]))
        return fvl_err("similarity_estimate: point %lld (0-based) has a coordinate that is not finite "
                       "(source %g %g, destination %g %g)", (long long)k, src[2 * k], src[2 * k + 1],
                       dst[2 * k], dst[2 * k + 1]);
    mx += src[2 * k]; my += src[2 * k + 1]; nx += dst[2 * k]; ny += dst[2 * k + 1];
  }
  mx /= (double)n; my /= (double)n; nx /= (double)n; ny /= (double)n;
  /* minimise Σ |d − (s R p + t)|² over s R = [[a, −b], [b, a]]: centred, a = Σ(p·q)/Σ|p|²,
   * b = Σ(p × q)/Σ|p|² — the Umeyama solution with det R = +1 (no reflection) */
  double spp = 0, sdot = 0, scross = 0;
  for (int64_t k = 0; k < n; k++) {
    double px = src[2 * k] - mx, py = src[2 * k + 1] - my, qx = dst[2 * k] - nx, qy = dst[2 * k + 1] - ny;
    spp += px * px + py * py;
    sdot += px * qx + py * qy;
    scross += px * qy - py * qx;
  }
  if (!(spp > 1e-12 * (1 + mx * mx + my * my)))
    return fvl_err("similarity_estimate: the %lld source points coincide (at %g, %g): no transform "
                   "is defined", (long long)n, mx, my);
  double a = sdot / spp, b = scross / spp;
  M[0] = a; M[1] = -b; M[2] = nx - (a * mx - b * my);
  M[3] = b; M[4] = a;  M[5] = ny - (b * mx + a * my);
  return 0;
}

/* insightface's arcface_dst for 112×112 */
static const double ARCFACE_112[10] = {38.2946, 51.6963, 73.5318, 51.5014, 56.0252,
                                       71.7366, 41.5493, 92.3655, 70.7299, 92.2041};

int fvl_face_template(int64_t size, double dst[10]) {
  if (size < 1 || size > 65535) return fvl_err("face_template: size %lld (expected 1..65535)", (long long)size);
  double ratio = (double)size / 112.0, shift = 0;
  if (size % 112 != 0 && size % 128 == 0) {
    ratio = (double)size / 128.0;
    shift = 8.0 * ratio;
  }
  for (int k = 0; k < 5; k++) {
    dst[2 * k] = ARCFACE_112[2 * k] * ratio + shift;
    dst[2 * k + 1] = ARCFACE_112[2 * k + 1] * ratio;
  }
  return 0;
}

/* the planes of img (H×W, C×H×W or N×C×H×W float32) and a new output of the same rank */
static fvl_tensor *planes_out(fvl_tensor *img, const char *fn, int64_t OH, int64_t OW,
                              fvl_tensor **in, int64_t *np, int64_t *H, int64_t *W) {
  if (!img || img->dtype != FVL_F32 || img->ndim < 2 || img->ndim > 4) {
    fvl_err("%s: image must be a float32 H×W, C×H×W or N×C×H×W tensor", fn);
    return NULL;
  }
  int d = img->ndim;
  *H = img->size[d - 2];
  *W = img->size[d - 1];
  *np = 1;
  for (int k = 0; k < d - 2; k++) *np *= img->size[k];
  if (check_sizes(fn, *np ? *np : 1, *H, *W, OH, OW)) return NULL;
  int64_t sz[4];
  for (int k = 0; k < d; k++) sz[k] = img->size[k];
  sz[d - 2] = OH;
  sz[d - 1] = OW;
  fvl_tensor *out = fvl_empty(FVL_F32, d, sz);
  if (!out) return NULL;
  *in = fvl_contiguous(img);
  if (!*in) { fvl_release(out); return NULL; }
  return out;
}

fvl_tensor *fvl_warp_tensor(fvl_tensor *img, int64_t OH, int64_t OW, const double M[6], int border,
                            float value) {
  fvl_tensor *in;
  int64_t np, H, W;
  fvl_tensor *out = planes_out(img, "warp_affine", OH, OW, &in, &np, &H, &W);
  if (!out) return NULL;
  int rc = np ? fvl_warp_affine(fvl_f32(in), np, H, W, fvl_f32(out), OH, OW, M, border, value) : 0;
  fvl_release(in);
  if (rc) { fvl_release(out); return NULL; }
  return out;
}

fvl_tensor *fvl_resize_tensor(fvl_tensor *img, int64_t OH, int64_t OW) {
  fvl_tensor *in;
  int64_t np, H, W;
  fvl_tensor *out = planes_out(img, "resize", OH, OW, &in, &np, &H, &W);
  if (!out) return NULL;
  int rc = np ? fvl_resize(fvl_f32(in), np, H, W, fvl_f32(out), OH, OW) : 0;
  fvl_release(in);
  if (rc) { fvl_release(out); return NULL; }
  return out;
}
