/* batch.c — gather the rows of a batch (with flip / padded crop for images) in one pass. */
#include "data.h"
#include <string.h>

static int check_idx(const char *fn, const int32_t *idx, int64_t B, int64_t nrows) {
  for (int64_t b = 0; b < B; b++)
    if (idx[b] < 0 || idx[b] >= nrows)
      return fvl_err("%s: index[%lld] = %lld is outside 0..%lld (0-based)", fn, (long long)b,
                     (long long)idx[b], (long long)nrows - 1);
  return 0;
}

int fvl_data_gather_f32(const float *src, int64_t nrows, int64_t rowlen, const int32_t *idx,
                        int64_t B, float *out) {
  if (B < 0 || rowlen < 0) return fvl_err("data_gather: negative batch or row length");
  if (check_idx("data_gather", idx, B, nrows)) return -1;
#pragma omp parallel for schedule(static) if (B * rowlen > 32768)
  for (int64_t b = 0; b < B; b++)
    memcpy(out + b * rowlen, src + (int64_t)idx[b] * rowlen, (size_t)rowlen * sizeof(float));
  return 0;
}

int fvl_data_gather_i32(const int32_t *src, int64_t nrows, int64_t rowlen, const int32_t *idx,
                        int64_t B, int32_t add, int32_t *out) {
  if (B < 0 || rowlen < 0) return fvl_err("data_gather: negative batch or row length");
  if (check_idx("data_gather", idx, B, nrows)) return -1;
  for (int64_t b = 0; b < B; b++)
    for (int64_t j = 0; j < rowlen; j++) out[b * rowlen + j] = src[(int64_t)idx[b] * rowlen + j] + add;
  return 0;
}

int fvl_data_gather_images(const float *src, int64_t n, int C, int H, int W, const int32_t *idx,
                           int64_t B, const uint8_t *flip, const int32_t *dy, const int32_t *dx,
                           int pad, float *out) {
  const char *fn = "data_gather_images";
  if (C < 1 || H < 1 || W < 1 || B < 0) return fvl_err("%s: bad image shape %dx%dx%d", fn, C, H, W);
  if (pad < 0) return fvl_err("%s: crop padding = %d (expected >= 0)", fn, pad);
  if (check_idx(fn, idx, B, n)) return -1;
  for (int64_t b = 0; b < B; b++) {
    int sy = dy ? dy[b] : 0, sx = dx ? dx[b] : 0;
    if (sy < -pad || sy > pad || sx < -pad || sx > pad)
      return fvl_err("%s: crop offset (%d, %d) of row %lld is outside -%d..%d (0-based row)", fn, sy, sx,
                     (long long)b, pad, pad);
  }
  int64_t plane = (int64_t)H * W, img = plane * C;
#pragma omp parallel for schedule(static) if (B * img > 32768)
  for (int64_t b = 0; b < B; b++) {
    const float *s = src + (int64_t)idx[b] * img;
    float *o = out + b * img;
    int sy = dy ? dy[b] : 0, sx = dx ? dx[b] : 0, fl = flip ? flip[b] != 0 : 0;
    if (sy == 0 && sx == 0 && !fl) {
      memcpy(o, s, (size_t)img * sizeof(float));
      continue;
    }
    /* output pixel (y, x) reads the padded image at (y + sy, x + sx); with flip the window
     * is mirrored after cropping, so output x reads window column W-1-x */
    for (int c = 0; c < C; c++)
      for (int y = 0; y < H; y++) {
        float *orow = o + c * plane + (int64_t)y * W;
        int yy = y + sy;
        if (yy < 0 || yy >= H) {
          memset(orow, 0, (size_t)W * sizeof(float));
          continue;
        }
        const float *srow = s + c * plane + (int64_t)yy * W;
        for (int x = 0; x < W; x++) {
          int xx = (fl ? W - 1 - x : x) + sx;
          orow[x] = (xx >= 0 && xx < W) ? srow[xx] : 0.0f;
        }
      }
  }
  return 0;
}
