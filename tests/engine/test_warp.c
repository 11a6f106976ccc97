/* test_warp.c — affine warp, resize, the 5-point similarity estimate and the ArcFace template
 * (engine/data/warp.c). */
#include <check.h>
#include "fvl_check.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core.h"
#include "data/warp.h"

static const double T112[10] = {38.2946, 51.6963, 73.5318, 51.5014, 56.0252,
                                71.7366, 41.5493, 92.3655, 70.7299, 92.2041};

static void apply(const double M[6], double x, double y, double *ox, double *oy) {
  *ox = M[0] * x + M[1] * y + M[2];
  *oy = M[3] * x + M[4] * y + M[5];
}

/* a similarity: scale s, angle th, translation (tx, ty) */
static void sim(double s, double th, double tx, double ty, double M[6]) {
  M[0] = s * cos(th); M[1] = -s * sin(th); M[2] = tx;
  M[3] = s * sin(th); M[4] = s * cos(th);  M[5] = ty;
}

static float *ramp(int64_t C, int64_t H, int64_t W, double ax, double ay, double b) {
  float *p = malloc((size_t)(C * H * W) * sizeof *p);
  for (int64_t c = 0; c < C; c++)
    for (int64_t y = 0; y < H; y++)
      for (int64_t x = 0; x < W; x++) p[(c * H + y) * W + x] = (float)(ax * x + ay * y + b + 10 * c);
  return p;
}

START_TEST(identity_reproduces) {
  int64_t C = 3, H = 17, W = 23;
  float *src = malloc((size_t)(C * H * W) * sizeof *src), *dst = malloc((size_t)(C * H * W) * sizeof *dst);
  for (int64_t i = 0; i < C * H * W; i++) src[i] = (float)((i * 7919) % 255);
  double I[6] = {1, 0, 0, 0, 1, 0};
  ck_assert_int_eq(fvl_warp_affine(src, C, H, W, dst, H, W, I, FVL_BORDER_CONSTANT, 0), 0);
  ck_assert_int_eq(memcmp(src, dst, (size_t)(C * H * W) * sizeof *src), 0);
  ck_assert_int_eq(fvl_warp_affine(src, C, H, W, dst, H, W, I, FVL_BORDER_REPLICATE, 0), 0);
  ck_assert_int_eq(memcmp(src, dst, (size_t)(C * H * W) * sizeof *src), 0);
  free(src);
  free(dst);
}
END_TEST

/* pixel centres at integer coordinates: a shift by +1 column moves every pixel one to the right
 * (the first column reads the border value); a shift by 0.5 averages two neighbours */
START_TEST(pixel_centre_convention) {
  int64_t H = 4, W = 6;
  float *src = ramp(1, H, W, 1, 100, 0), dst[24];
  double M[6] = {1, 0, 1, 0, 1, 0};
  ck_assert_int_eq(fvl_warp_affine(src, 1, H, W, dst, H, W, M, FVL_BORDER_CONSTANT, -7), 0);
  for (int64_t y = 0; y < H; y++) {
    ck_assert_float_eq(dst[y * W], -7);
    for (int64_t x = 1; x < W; x++) ck_assert_float_eq(dst[y * W + x], src[y * W + x - 1]);
  }
  double half[6] = {1, 0, 0, 0, 1, 0.5};
  ck_assert_int_eq(fvl_warp_affine(src, 1, H, W, dst, H, W, half, FVL_BORDER_CONSTANT, 0), 0);
  for (int64_t y = 1; y < H; y++)
    for (int64_t x = 0; x < W; x++)
      ck_assert_float_eq_tol(dst[y * W + x], 0.5f * (src[(y - 1) * W + x] + src[y * W + x]), 1e-4);
  for (int64_t x = 0; x < W; x++) ck_assert_float_eq_tol(dst[x], 0.5f * src[x], 1e-4);  /* half border */
  free(src);
}
END_TEST

/* a known similarity is recovered from 5 points to rounding; a mirrored point set gives a
 * rotation (det > 0), never a reflection */
START_TEST(similarity_recovers) {
  double M[6], E[6], dst[10];
  sim(1.37, 0.31, -12.5, 40.25, M);
  for (int k = 0; k < 5; k++) apply(M, T112[2 * k], T112[2 * k + 1], &dst[2 * k], &dst[2 * k + 1]);
  ck_assert_int_eq(fvl_similarity_estimate(T112, dst, 5, E), 0);
  for (int k = 0; k < 6; k++) ck_assert_double_eq_tol(E[k], M[k], 1e-9);
  /* inverse direction: landmarks → template */
  ck_assert_int_eq(fvl_similarity_estimate(dst, T112, 5, E), 0);
  double inv[6];
  ck_assert_int_eq(fvl_affine_invert(M, inv), 0);
  for (int k = 0; k < 6; k++) ck_assert_double_eq_tol(E[k], inv[k], 1e-9);
  /* mirrored source: the best proper similarity, determinant positive */
  double mir[10];
  for (int k = 0; k < 5; k++) { mir[2 * k] = 112 - T112[2 * k]; mir[2 * k + 1] = T112[2 * k + 1]; }
  ck_assert_int_eq(fvl_similarity_estimate(mir, T112, 5, E), 0);
  ck_assert(E[0] * E[4] - E[1] * E[3] > 0);
  ck_assert_double_eq_tol(E[0], E[4], 1e-12);
  ck_assert_double_eq_tol(E[1], -E[3], 1e-12);
  /* errors */
  double same[10] = {3, 4, 3, 4, 3, 4, 3, 4, 3, 4};
  ck_assert_int_eq(fvl_similarity_estimate(same, T112, 5, E), -1);
  ck_assert_ptr_nonnull(strstr(fvl_errmsg(), "coincide"));
  ck_assert_int_eq(fvl_similarity_estimate(T112, dst, 1, E), -1);
  double bad[10];
  memcpy(bad, T112, sizeof bad);
  bad[3] = NAN;
  ck_assert_int_eq(fvl_similarity_estimate(bad, dst, 5, E), -1);
  ck_assert_ptr_nonnull(strstr(fvl_errmsg(), "point 1"));
}
END_TEST

/* blobs drawn at landmarks of a rotated, scaled face land on the template after the warp */
START_TEST(warped_landmarks_on_template) {
  int64_t H = 230, W = 230, C = 3;   /* the blobs lie well inside */
  double toimg[6], lm[10], E[6], tp[10];
  sim(1.45, -0.42, 20, 35, toimg);
  ck_assert_int_eq(fvl_face_template(112, tp), 0);
  for (int k = 0; k < 5; k++) apply(toimg, tp[2 * k], tp[2 * k + 1], &lm[2 * k], &lm[2 * k + 1]);
  float *img = calloc((size_t)(C * H * W), sizeof *img);
  for (int64_t y = 0; y < H; y++)
    for (int64_t x = 0; x < W; x++) {
      double v = 0;
      for (int k = 0; k < 5; k++) {
        double dx = x - lm[2 * k], dy = y - lm[2 * k + 1];
        v += 255 * exp(-(dx * dx + dy * dy) / (2 * 2.0 * 2.0));
      }
      for (int64_t c = 0; c < C; c++) img[(c * H + y) * W + x] = (float)v;
    }
  ck_assert_int_eq(fvl_similarity_estimate(lm, tp, 5, E), 0);
  for (int k = 0; k < 5; k++) {
    double ox, oy;
    apply(E, lm[2 * k], lm[2 * k + 1], &ox, &oy);
    ck_assert_double_eq_tol(ox, tp[2 * k], 1e-9);
    ck_assert_double_eq_tol(oy, tp[2 * k + 1], 1e-9);
  }
  float *out = malloc((size_t)(C * 112 * 112) * sizeof *out);
  ck_assert_int_eq(fvl_warp_affine(img, C, H, W, out, 112, 112, E, FVL_BORDER_CONSTANT, 0), 0);
  for (int k = 0; k < 5; k++) {   /* intensity centroid in a 7×7 window around the template point */
    int cx = (int)lround(tp[2 * k]), cy = (int)lround(tp[2 * k + 1]);
    double s = 0, sx = 0, sy = 0;
    for (int y = cy - 3; y <= cy + 3; y++)
      for (int x = cx - 3; x <= cx + 3; x++) {
        double v = out[(2 * 112 + y) * 112 + x];
        s += v; sx += v * x; sy += v * y;
      }
    ck_assert_double_eq_tol(sx / s, tp[2 * k], 0.1);
    ck_assert_double_eq_tol(sy / s, tp[2 * k + 1], 0.1);
  }
  free(img);
  free(out);
}
END_TEST

START_TEST(template_sizes) {
  double t[10];
  ck_assert_int_eq(fvl_face_template(112, t), 0);
  for (int k = 0; k < 10; k++) ck_assert_double_eq(t[k], T112[k]);
  ck_assert_int_eq(fvl_face_template(224, t), 0);
  for (int k = 0; k < 10; k++) ck_assert_double_eq_tol(t[k], 2 * T112[k], 1e-12);
  ck_assert_int_eq(fvl_face_template(128, t), 0);   /* insightface: x + 8, no scale */
  for (int k = 0; k < 5; k++) {
    ck_assert_double_eq_tol(t[2 * k], T112[2 * k] + 8, 1e-12);
    ck_assert_double_eq_tol(t[2 * k + 1], T112[2 * k + 1], 1e-12);
  }
  ck_assert_int_eq(fvl_face_template(96, t), 0);    /* our extension: scaled by 96/112 */
  for (int k = 0; k < 10; k++) ck_assert_double_eq_tol(t[k], T112[k] * 96 / 112, 1e-12);
  ck_assert_int_eq(fvl_face_template(0, t), -1);
}
END_TEST

START_TEST(resize_constant_and_ramp) {
  int64_t C = 2, H = 12, W = 16;
  float *cst = malloc((size_t)(C * H * W) * sizeof *cst);
  for (int64_t i = 0; i < C * H * W; i++) cst[i] = 0.1f * 37;
  int sizes[4][2] = {{6, 8}, {24, 40}, {7, 5}, {12, 16}};
  for (int s = 0; s < 4; s++) {
    int64_t OH = sizes[s][0], OW = sizes[s][1];
    float *o = malloc((size_t)(C * OH * OW) * sizeof *o);
    ck_assert_int_eq(fvl_resize(cst, C, H, W, o, OH, OW), 0);
    for (int64_t i = 0; i < C * OH * OW; i++) ck_assert_float_eq(o[i], 0.1f * 37);   /* exact */
    free(o);
  }
  /* a linear ramp: halving is exact everywhere (every sample lies inside), doubling inside the
   * border half-pixel (edges are replicated) */
  float *r = ramp(C, H, W, 3, -2, 5), *o = malloc((size_t)(C * 24 * 32) * sizeof *o);
  ck_assert_int_eq(fvl_resize(r, C, H, W, o, 6, 8), 0);
  for (int64_t c = 0; c < C; c++)
    for (int64_t y = 0; y < 6; y++)
      for (int64_t x = 0; x < 8; x++)
        ck_assert_float_eq_tol(o[(c * 6 + y) * 8 + x], 3 * (2 * x + 0.5) - 2 * (2 * y + 0.5) + 5 + 10 * c, 1e-4);
  ck_assert_int_eq(fvl_resize(r, C, H, W, o, 24, 32), 0);
  for (int64_t c = 0; c < C; c++)
    for (int64_t y = 1; y < 23; y++)
      for (int64_t x = 1; x < 31; x++)
        ck_assert_float_eq_tol(o[(c * 24 + y) * 32 + x], 3 * ((x + 0.5) / 2 - 0.5) - 2 * ((y + 0.5) / 2 - 0.5) + 5 + 10 * c, 1e-4);
  /* the separable path gives the warp's numbers with the resize matrix */
  float *w = malloc((size_t)(C * 24 * 32) * sizeof *w);
  double M[6];
  fvl_resize_matrix(H, W, 24, 32, M);
  ck_assert_int_eq(fvl_warp_affine(r, C, H, W, w, 24, 32, M, FVL_BORDER_REPLICATE, 0), 0);
  for (int64_t i = 0; i < C * 24 * 32; i++) ck_assert_float_eq_tol(w[i], o[i], 1e-4);
  /* 8-bit interleaved: constant exact, rounded ramp */
  uint8_t u[12 * 16 * 3], uo[6 * 8 * 3];
  for (int i = 0; i < 12 * 16 * 3; i++) u[i] = 77;
  ck_assert_int_eq(fvl_resize_u8(u, 3, 12, 16, uo, 6, 8), 0);
  for (int i = 0; i < 6 * 8 * 3; i++) ck_assert_int_eq(uo[i], 77);
  for (int y = 0; y < 12; y++)
    for (int x = 0; x < 16; x++)
      for (int c = 0; c < 3; c++) u[(y * 16 + x) * 3 + c] = (uint8_t)(10 * x + c);
  ck_assert_int_eq(fvl_resize_u8(u, 3, 12, 16, uo, 6, 8), 0);
  for (int y = 0; y < 6; y++)
    for (int x = 0; x < 8; x++)
      for (int c = 0; c < 3; c++) ck_assert_int_eq(uo[(y * 8 + x) * 3 + c], 20 * x + 5 + c);
  free(cst); free(r); free(o); free(w);
}
END_TEST

/* far-away and degenerate transforms: every output finite, the border value outside */
START_TEST(borders_finite) {
  int64_t C = 3, H = 9, W = 11;
  float *src = ramp(C, H, W, 1, 1, 0), *dst = malloc((size_t)(C * 64) * sizeof *dst);
  double far[6] = {1, 0, 1e300, 0, 1, -1e300};
  ck_assert_int_eq(fvl_warp_affine(src, C, H, W, dst, 8, 8, far, FVL_BORDER_CONSTANT, 0), 0);
  for (int i = 0; i < C * 64; i++) ck_assert_float_eq(dst[i], 0);
  ck_assert_int_eq(fvl_warp_affine(src, C, H, W, dst, 8, 8, far, FVL_BORDER_REPLICATE, 0), 0);
  for (int i = 0; i < C * 64; i++) ck_assert(isfinite(dst[i]));
  double rot[6];
  sim(0.3, 2.5, 40, -3, rot);
  ck_assert_int_eq(fvl_warp_affine(src, C, H, W, dst, 8, 8, rot, FVL_BORDER_CONSTANT, 0), 0);
  for (int i = 0; i < C * 64; i++) ck_assert(isfinite(dst[i]));
  double sing[6] = {1, 2, 0, 2, 4, 0}, nan6[6] = {1, 0, NAN, 0, 1, 0};
  ck_assert_int_eq(fvl_warp_affine(src, C, H, W, dst, 8, 8, sing, FVL_BORDER_CONSTANT, 0), -1);
  ck_assert_ptr_nonnull(strstr(fvl_errmsg(), "singular"));
  ck_assert_int_eq(fvl_warp_affine(src, C, H, W, dst, 8, 8, nan6, FVL_BORDER_CONSTANT, 0), -1);
  ck_assert_ptr_nonnull(strstr(fvl_errmsg(), "not finite"));
  ck_assert_int_eq(fvl_warp_affine(src, C, H, W, dst, 0, 8, rot, FVL_BORDER_CONSTANT, 0), -1);
  ck_assert_int_eq(fvl_resize(src, C, H, W, dst, 8, 0), -1);
  free(src);
  free(dst);
}
END_TEST

START_TEST(tensor_wrappers) {
  int64_t sz[4] = {2, 3, 10, 12};
  fvl_tensor *t = fvl_empty(FVL_F32, 4, sz);
  for (int64_t i = 0; i < fvl_numel(t); i++) fvl_f32(t)[i] = (float)(i % 97);
  fvl_tensor *r = fvl_resize_tensor(t, 5, 6);
  ck_assert_ptr_nonnull(r);
  ck_assert_int_eq(r->ndim, 4);
  ck_assert_int_eq(r->size[2], 5);
  ck_assert_int_eq(r->size[3], 6);
  float *plane = malloc(30 * sizeof *plane);
  ck_assert_int_eq(fvl_resize(fvl_f32(t) + 5 * 120, 1, 10, 12, plane, 5, 6), 0);
  for (int i = 0; i < 30; i++) ck_assert_float_eq(fvl_f32(r)[5 * 30 + i], plane[i]);
  double I[6] = {1, 0, 0, 0, 1, 0};
  fvl_tensor *w = fvl_warp_tensor(t, 10, 12, I, FVL_BORDER_CONSTANT, 0);
  ck_assert_ptr_nonnull(w);
  ck_assert_int_eq(memcmp(fvl_f32(w), fvl_f32(t), (size_t)fvl_numel(t) * sizeof(float)), 0);
  int64_t isz[2] = {3, 3};
  fvl_tensor *it = fvl_empty(FVL_I32, 2, isz);
  ck_assert_ptr_null(fvl_resize_tensor(it, 2, 2));
  ck_assert_ptr_nonnull(strstr(fvl_errmsg(), "float32"));
  free(plane);
  fvl_release(t); fvl_release(r); fvl_release(w); fvl_release(it);
}
END_TEST

int main(void) {
  Suite *s = suite_create("warp");
  TCase *tc = tcase_create("warp");
  tcase_add_test(tc, identity_reproduces);
  tcase_add_test(tc, pixel_centre_convention);
  tcase_add_test(tc, similarity_recovers);
  tcase_add_test(tc, warped_landmarks_on_template);
  tcase_add_test(tc, template_sizes);
  tcase_add_test(tc, resize_constant_and_ramp);
  tcase_add_test(tc, borders_finite);
  tcase_add_test(tc, tensor_wrappers);
  suite_add_tcase(s, tc);
  return fvl_check_run(s);
}
