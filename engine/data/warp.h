/* warp.h — geometric transforms of float images: bilinear affine warp, resize, the 5-point
 * similarity estimate and insightface's ArcFace landmark template (docs/data.md, "Face alignment").
 *
 * Coordinates (the OpenCV / insightface convention): x is the column, y the row, and the centre
 * of pixel (row i, column j), both 0-based, is the point (x = j, y = i). A pixel covers
 * [j - 0.5, j + 0.5] × [i - 0.5, i + 0.5]. An affine matrix M (2×3, row-major) maps a point of the
 * SOURCE image to the DESTINATION image: x' = M[0] x + M[1] y + M[2], y' = M[3] x + M[4] y + M[5]
 * (what cv2.warpAffine takes); the warp inverts it and samples the source bilinearly at the
 * pre-image of each output pixel centre.
 *
 * Images are planes of H×W floats, C planes per image (C×H×W, row-major). Every function returns
 * 0 / a pointer, or -1 / NULL with a message in fvl_errmsg(). */
#ifndef FVL_WARP_H
#define FVL_WARP_H
#include <stdint.h>
#include "core.h"
#include "tensor.h"

enum {
  FVL_BORDER_CONSTANT = 0,  /* a neighbour outside the image reads `value` (cv2.BORDER_CONSTANT) */
  FVL_BORDER_REPLICATE = 1  /* a neighbour outside reads the nearest edge pixel */
};

/* inverse of an affine map; -1 when it is singular or not finite */
int fvl_affine_invert(const double M[6], double inv[6]);

/* dst (C×OH×OW) = src (C×H×W) warped by M (source → destination), bilinear. H, W, OH, OW >= 1. */
int fvl_warp_affine(const float *src, int64_t C, int64_t H, int64_t W, float *dst, int64_t OH,
                    int64_t OW, const double M[6], int border, float value);

/* the matrix of a resize H×W → OH×OW with pixel centres aligned (as cv2.resize's INTER_LINEAR,
 * PyTorch's align_corners = false): x' = (x + 0.5)·OW/W − 0.5, y' likewise */
void fvl_resize_matrix(int64_t H, int64_t W, int64_t OH, int64_t OW, double M[6]);
/* bilinear resize, edge pixels replicated: the numbers of fvl_warp_affine with
 * fvl_resize_matrix and FVL_BORDER_REPLICATE, on a separable path */
int fvl_resize(const float *src, int64_t C, int64_t H, int64_t W, float *dst, int64_t OH, int64_t OW);
/* the same on 8-bit interleaved pixels (H×W×C, as decoders give them), rounded to nearest */
int fvl_resize_u8(const uint8_t *src, int C, int H, int W, uint8_t *dst, int OH, int OW);

/* least-squares similarity (rotation, uniform scale, translation; never a reflection) taking the
 * n points src[2k], src[2k+1] onto dst: Umeyama's estimate, closed form in 2-D. n >= 2; -1 when
 * the source points all coincide or a coordinate is not finite. */
int fvl_similarity_estimate(const double *src, const double *dst, int64_t n, double M[6]);

/* insightface's ArcFace 5-point template (left eye, right eye, nose, left and right mouth
 * corner; 0-based pixel coordinates) for a size×size crop: size a multiple of 112 scales the
 * 112 template by size/112; else a multiple of 128 scales it by size/128 and shifts x by
 * 8·size/128 (insightface's rule); any other size scales by size/112 (our extension). */
int fvl_face_template(int64_t size, double dst[10]);

/* a new tensor: img (H×W, C×H×W or N×C×H×W float32) warped to OH×OW (each plane alike) */
fvl_tensor *fvl_warp_tensor(fvl_tensor *img, int64_t OH, int64_t OW, const double M[6], int border,
                            float value);
/* a new tensor: img resized to OH×OW (fvl_resize on each plane) */
fvl_tensor *fvl_resize_tensor(fvl_tensor *img, int64_t OH, int64_t OW);
#endif
