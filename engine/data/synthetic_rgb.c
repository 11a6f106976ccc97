/* synthetic_rgb.c — synthetic_faces as small RGB face images (image = "rgb").
 *
 * Each identity is a fixed random set of facial parameters drawn from the seed (skin tone, face
 * width and height, hair colour and hairline, eye spacing, height, size and iris colour, brow
 * thickness and tilt, nose length and width, mouth position, width and lip colour, an optional
 * beard, and four identity-specific marks: moles, freckle patches, shading). Every image of the
 * identity renders those parameters through per-image nuisances: head yaw (features slide and
 * the face narrows), roll, scale and translation, expression (smile, blink), a directional light
 * with a global gain and a colour cast, a random background, and Gaussian pixel noise. Shapes
 * are drawn with one-pixel soft edges. `nuisance`, `illumination` and `noise` scale the three
 * groups (1 = the defaults of docs/data.md). Output C×S×S floats in 0..255 (RGB); labels and
 * identity counts (long tail, label noise) as for the other synthetic_faces kinds.
 * Deterministic in the seed whatever the threads: every number is addressed by
 * (identity or sample, field) through engine/rng.h. */
#include "data.h"
#include "rng.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { ID_STREAM = 0x51ce0000, IMG_STREAM = 0x1a6e0000, LBL_STREAM = 0x7ab10000 };

typedef struct {
  float skin[3], hair[3], iris[3], lip[3], beardc[3];
  float fw, fh, hairline, hairvol, ex, ey, er, brow, browtilt, nl, nw, my, mw, beard;
  float mark[4][3];   /* x, y, radius */
  float markc[4];     /* darkness (+) or lightness (−) */
} face_id;

static float uni(uint64_t seed, uint64_t ctr, float lo, float hi) {
  return lo + (hi - lo) * (float)fvl_rng_uniform_at(seed, ctr);
}

static void draw_identity(uint64_t seed, int64_t who, face_id *f) {
  const uint64_t s = fvl_rng_bits(seed, ID_STREAM + (uint64_t)who);
  uint64_t c = 0;
  const float tone = uni(s, c++, 0, 1);
  const float light[3] = {236, 200, 172}, dark[3] = {105, 72, 50};
  for (int k = 0; k < 3; k++) f->skin[k] = light[k] + (dark[k] - light[k]) * tone + uni(s, c++, -12, 12);
  static const float hairs[5][3] = {{25, 20, 18}, {90, 60, 35}, {200, 165, 100}, {150, 150, 150}, {120, 40, 20}};
  const int h = (int)uni(s, c++, 0, 4.999f);
  for (int k = 0; k < 3; k++) f->hair[k] = hairs[h][k] + uni(s, c++, -15, 15);
  static const float irises[4][3] = {{70, 45, 25}, {60, 100, 150}, {70, 110, 70}, {35, 25, 20}};
  const int e = (int)uni(s, c++, 0, 3.999f);
  for (int k = 0; k < 3; k++) f->iris[k] = irises[e][k] + uni(s, c++, -10, 10);
  for (int k = 0; k < 3; k++) f->lip[k] = f->skin[k] * (k == 0 ? 0.85f : 0.6f) + uni(s, c++, -10, 10);
  for (int k = 0; k < 3; k++) f->beardc[k] = f->hair[k];
  f->fw = uni(s, c++, 0.50f, 0.66f);
  f->fh = uni(s, c++, 0.66f, 0.84f);
  f->hairline = uni(s, c++, 0.25f, 0.6f);
  f->hairvol = uni(s, c++, 0.04f, 0.2f);
  f->ex = uni(s, c++, 0.2f, 0.3f);
  f->ey = uni(s, c++, -0.2f, -0.05f);
  f->er = uni(s, c++, 0.055f, 0.09f);
  f->brow = uni(s, c++, 0.015f, 0.045f);
  f->browtilt = uni(s, c++, -0.25f, 0.25f);
  f->nl = uni(s, c++, 0.14f, 0.28f);
  f->nw = uni(s, c++, 0.04f, 0.09f);
  f->my = uni(s, c++, 0.3f, 0.48f);
  f->mw = uni(s, c++, 0.14f, 0.28f);
  f->beard = uni(s, c++, 0, 1) < 0.25f ? uni(s, c++, 0.5f, 1.0f) : 0.f;
  for (int m = 0; m < 4; m++) {
    f->mark[m][0] = uni(s, c++, -0.4f, 0.4f);
    f->mark[m][1] = uni(s, c++, -0.3f, 0.5f);
    f->mark[m][2] = uni(s, c++, 0.015f, 0.12f);
    f->markc[m] = uni(s, c++, -0.25f, 0.45f);
  }
}

/* coverage of a soft shape: signed distance d (negative inside) over one pixel of width px */
static inline float cover(float d, float px) {
  float a = 0.5f - d / px;
  return a < 0 ? 0 : a > 1 ? 1 : a;
}
/* approximate signed distance to an axis-aligned ellipse centred at (cx, cy) */
static inline float ellipse(float x, float y, float cx, float cy, float a, float b) {
  const float u = (x - cx) / a, v = (y - cy) / b;
  return (sqrtf(u * u + v * v) - 1.f) * (a < b ? a : b);
}
static inline void blend(float *rgb, const float *col, float a) {
  for (int k = 0; k < 3; k++) rgb[k] += (col[k] - rgb[k]) * a;
}

typedef struct {
  float yaw, roll, scale, tx, ty, smile, blink;
  float bg[3], bg2[3], ldir, lstr, gain, cast[3];
} nuisance_t;

static void draw_nuisance(uint64_t seed, int64_t sample, float nu, float il, nuisance_t *n) {
  const uint64_t s = fvl_rng_bits(seed, IMG_STREAM + (uint64_t)sample);
  uint64_t c = 0;
  float y = (float)fvl_rng_normal_at(s, c++) * 0.35f * nu;
  n->yaw = y > 0.9f ? 0.9f : y < -0.9f ? -0.9f : y;
  n->roll = (float)fvl_rng_normal_at(s, c++) * 0.12f * nu;
  n->scale = 1.f + (float)fvl_rng_normal_at(s, c++) * 0.06f * nu;
  if (n->scale < 0.7f) n->scale = 0.7f;
  n->tx = (float)fvl_rng_normal_at(s, c++) * 0.05f * nu;
  n->ty = (float)fvl_rng_normal_at(s, c++) * 0.05f * nu;
  n->smile = (float)fvl_rng_normal_at(s, c++) * 0.5f * nu;
  n->blink = uni(s, c++, 0, 1) < 0.1f * nu ? 1.f : 0.f;
  for (int k = 0; k < 3; k++) n->bg[k] = uni(s, c++, 30, 225);
  for (int k = 0; k < 3; k++) n->bg2[k] = uni(s, c++, 30, 225);
  n->ldir = uni(s, c++, 0, 6.2831853f);
  n->lstr = uni(s, c++, 0, 1) * 1.5f * il;
  n->gain = 1.f + (float)fvl_rng_normal_at(s, c++) * 0.3f * il;
  if (n->gain < 0.3f) n->gain = 0.3f;
  for (int k = 0; k < 3; k++) n->cast[k] = (float)fvl_rng_normal_at(s, c++) * 0.1f * il;
}

/* one pixel in face coordinates, and the head's turn there */
typedef struct {
  float x, y;     /* face coordinates (translation, roll and scale undone) */
  float e;        /* a pixel in face units */
  float sy, cy;   /* sin and cos of the yaw */
  float fw, fx;   /* the face's half-width and centre after the turn */
  float inface;   /* coverage of the face ellipse */
} pixel_t;

/* hair behind the head, the shaded skin with its marks, the hair above the hairline and the beard;
 * the skin colour (before the marks' blending into rgb) goes to skin for the nose's shadow */
static void draw_head(const face_id *f, const nuisance_t *n, float lx, float ly, pixel_t *p, float *rgb,
                      float *skin) {
  const float x = p->x, y = p->y, e = p->e, fw = p->fw, fx = p->fx;
  /* hair behind and above the head */
  blend(rgb, f->hair, cover(ellipse(x, y, fx, -0.08f, fw + f->hairvol, f->fh + f->hairvol), e) *
                      (y < 0.1f ? 1.f : cover((y - 0.1f) * 0.5f, e)));
  /* face */
  const float dface = ellipse(x, y, fx, 0.05f, fw, f->fh);
  const float inface = cover(dface, e);
  p->inface = inface;
  /* shading: a directional light over the face's sphere-like normal */
  const float nxs = (x - fx) / fw, nys = (y - 0.05f) / f->fh;
  const float shade = 1.f + n->lstr * 0.35f * (lx * nxs + ly * nys);
  for (int k = 0; k < 3; k++) skin[k] = f->skin[k] * shade;
  for (int m = 0; m < 4; m++) {
    const float dm = ellipse(x, y, f->mark[m][0] * fw + fx + 0.3f * p->sy * 0.5f, f->mark[m][1], f->mark[m][2],
                             f->mark[m][2]);
    const float am = cover(dm, f->mark[m][2] * 0.8f + e) * fabsf(f->markc[m]);
    for (int k = 0; k < 3; k++) skin[k] *= 1.f - (f->markc[m] > 0 ? am * 0.6f : -am * 0.3f);
  }
  blend(rgb, skin, inface);
  /* hair above the hairline, inside the head */
  const float hl = -f->fh + f->hairline * 0.8f;
  blend(rgb, f->hair, inface * cover(y - hl - 0.05f * cosf(6.f * (x - fx)), e));
  /* beard below the mouth line */
  if (f->beard > 0) blend(rgb, f->beardc, inface * f->beard * cover(f->my - 0.05f - y, e * 2));
}

/* both brows and eyes (white, iris, pupil; a blink closes an eye to a line) */
static void draw_eyes(const face_id *f, const nuisance_t *n, const pixel_t *p, float *rgb) {
  static const float white[3] = {245, 245, 240}, black[3] = {15, 12, 10};
  const float x = p->x, y = p->y, e = p->e, sy = p->sy, cy = p->cy, inface = p->inface;
  for (int side = -1; side <= 1; side += 2) {
    const float exc = p->fx + sy * 0.25f + (float)side * f->ex * cy;
    /* brow */
    const float byc = f->ey - f->er * 1.9f + f->browtilt * (float)side * (x - exc);
    const float dbrow = fmaxf(fabsf(y - byc) - f->brow, fabsf(x - exc) - f->er * 1.6f * cy);
    blend(rgb, f->hair, inface * cover(dbrow, e));
    /* eye */
    const float eh = n->blink > 0 ? f->er * 0.12f : f->er * 0.6f;
    const float deye = ellipse(x, y, exc, f->ey, f->er * 1.3f * cy, eh);
    blend(rgb, white, inface * cover(deye, e));
    if (n->blink == 0) {
      const float ix = exc + sy * 0.03f;
      blend(rgb, f->iris, inface * cover(fmaxf(ellipse(x, y, ix, f->ey, f->er * 0.55f, f->er * 0.55f), deye), e));
      blend(rgb, black, inface * cover(fmaxf(ellipse(x, y, ix, f->ey, f->er * 0.25f, f->er * 0.25f), deye), e));
    }
  }
}

/* the nose (a shadow on the side away from the light, the tip at depth 1) and the mouth (lips bent
 * by the smile) */
static void draw_nose_mouth(const face_id *f, const nuisance_t *n, const pixel_t *p, const float *skin,
                            float *rgb) {
  const float x = p->x, y = p->y, e = p->e, sy = p->sy, cy = p->cy, inface = p->inface;
  const float nx0 = p->fx + sy * 0.35f;
  const float ny0 = f->ey + 0.05f, ny1 = f->ey + f->nl;
  if (y > ny0 && y < ny1 + f->nw) {
    const float tt = (y - ny0) / (ny1 - ny0);
    const float cx = nx0 + (sy * 0.1f) * (tt > 1 ? 1 : tt);
    const float dn = fabsf(x - cx) - f->nw * (0.3f + 0.7f * (tt > 1 ? 1 : tt));
    float nose[3];
    for (int k = 0; k < 3; k++) nose[k] = skin[k] * 0.72f;
    blend(rgb, nose, 0.6f * inface * cover(dn, e) * cover(y - ny1 - f->nw, e));
  }
  const float mx = p->fx + sy * 0.28f, dxm = (x - mx) / (f->mw * cy + 1e-3f);
  const float curve = f->my - n->smile * 0.05f * (1.f - dxm * dxm);
  const float dm = fmaxf(fabsf(y - curve) - 0.025f - 0.012f * (1.f - fminf(1.f, dxm * dxm)),
                         fabsf(x - mx) - f->mw * cy);
  blend(rgb, f->lip, inface * cover(dm, e));
}

/* one S×S RGB image (planar, 0..255) of identity f under nuisance n: per pixel the background
 * gradient, the head, the eyes, the nose and mouth, then the illumination's gain and colour cast
 * and the pixel noise */
static void render(const face_id *f, const nuisance_t *n, int S, uint64_t noise_seed, float noise, float *out) {
  const float px = 2.f / (float)S;
  const float cr = cosf(n->roll), sr = sinf(n->roll), cy = cosf(n->yaw), sy = sinf(n->yaw);
  const float lx = cosf(n->ldir), ly = sinf(n->ldir);
  const size_t plane = (size_t)S * S;
  for (int py = 0; py < S; py++)
    for (int pxi = 0; pxi < S; pxi++) {
      const float u = ((float)pxi + 0.5f) * px - 1.f, v = ((float)py + 0.5f) * px - 1.f;
      /* image → face coordinates: undo translation, roll and scale */
      const float a = (u - n->tx) / n->scale, b = (v - n->ty) / n->scale;
      /* the head turns: its outline narrows and shifts; features at depth z slide by z·sin(yaw) */
      pixel_t p = {.x = cr * a + sr * b, .y = -sr * a + cr * b, .e = px / n->scale, .sy = sy, .cy = cy,
                   .fw = f->fw * (0.85f + 0.15f * cy), .fx = 0.12f * sy, .inface = 0};
      float rgb[3], skin[3];
      const float t = (u + 1.f) * 0.5f;
      for (int k = 0; k < 3; k++) rgb[k] = n->bg[k] + (n->bg2[k] - n->bg[k]) * t;
      draw_head(f, n, lx, ly, &p, rgb, skin);
      draw_eyes(f, n, &p, rgb);
      draw_nose_mouth(f, n, &p, skin, rgb);
      /* illumination: gain and colour cast; pixel noise */
      const size_t q = (size_t)py * S + pxi;
      for (int k = 0; k < 3; k++) {
        float val = rgb[k] * n->gain * (1.f + n->cast[k]);
        if (noise > 0) val += (float)fvl_rng_normal_at(noise_seed, (uint64_t)(k * plane + q)) * 20.f * noise;
        out[k * plane + q] = val < 0 ? 0 : val > 255 ? 255 : val;
      }
    }
}

int fvl_synth_faces_rgb(const fvl_synth_opts *o, int size, int32_t label_base, float *xtr, int32_t *ytr,
                        int32_t *ytrue, float *xte, int32_t *yte) {
  if (size < 8 || size > 1024) return fvl_err("synthetic_faces: size = %d (expected 8..1024)", size);
  int64_t ntr, nte;
  int64_t *counts = malloc(sizeof(int64_t) * (size_t)o->identities);
  if (!counts) return fvl_err("synthetic_faces: out of memory");
  if (fvl_synth_sizes(o, counts, &ntr, &nte) < 0) { free(counts); return -1; }
  /* sample j → identity (train grouped by identity, test after them with identities K..K+T-1) */
  int64_t *who = malloc(sizeof(int64_t) * (size_t)(ntr + nte + 1));
  if (!who) { free(counts); return fvl_err("synthetic_faces: out of memory"); }
  int64_t j = 0;
  for (int64_t k = 0; k < o->identities; k++)
    for (int64_t i = 0; i < counts[k]; i++) who[j++] = k;
  for (int64_t k = 0; k < o->test_identities; k++)
    for (int64_t i = 0; i < o->test_per_identity; i++) who[j++] = o->identities + k;
  free(counts);
  const size_t isz = (size_t)3 * size * size;
  const uint64_t seed = o->seed, lseed = fvl_rng_bits(seed, LBL_STREAM);
  const int64_t total = ntr + nte;
#pragma omp parallel for schedule(dynamic, 4)
  for (int64_t s = 0; s < total; s++) {
    if (fvl_aborted()) continue;
    face_id f;
    nuisance_t n;
    draw_identity(seed, who[s], &f);
    draw_nuisance(seed, s, o->nuisance, o->illumination, &n);
    float *dst = s < ntr ? xtr + (size_t)s * isz : xte + (size_t)(s - ntr) * isz;
    if (s >= ntr && !xte) continue;
    render(&f, &n, size, fvl_rng_bits(seed, 0xa01e0000ULL + (uint64_t)s), o->noise, dst);
    if (s < ntr) {
      int32_t lab = (int32_t)who[s];
      if (ytrue) ytrue[s] = label_base + lab;
      if (o->label_noise > 0 && fvl_rng_uniform_at(lseed, 2 * (uint64_t)s) < o->label_noise) {
        int64_t other = (int64_t)(fvl_rng_uniform_at(lseed, 2 * (uint64_t)s + 1) * (double)(o->identities - 1));
        lab = (int32_t)(other >= lab ? other + 1 : other);
      }
      ytr[s] = label_base + lab;
    } else if (yte) {
      yte[s - ntr] = label_base + (int32_t)(who[s] - o->identities);
    }
  }
  free(who);
  return fvl_check_abort("synthetic_faces");
}

int fvl_synth_faces_rgb_tensors(const fvl_synth_opts *o, int size, int32_t label_base, fvl_tensor **xtr,
                                fvl_tensor **ytr, fvl_tensor **ytrue, fvl_tensor **xte, fvl_tensor **yte) {
  int64_t ntr, nte;
  *xtr = *ytr = *ytrue = *xte = *yte = NULL;
  if (fvl_synth_sizes(o, NULL, &ntr, &nte) < 0) return -1;
  if (size < 8 || size > 1024) return fvl_err("synthetic_faces: size = %d (expected 8..1024)", size);
  if ((ntr + nte) * 3 * (int64_t)size * size > ((int64_t)1 << 36))
    return fvl_err("synthetic_faces: %lld images of 3x%dx%d is too large", (long long)(ntr + nte), size, size);
  int64_t s1[4] = {ntr, 3, size, size}, s2[4] = {nte, 3, size, size};
  *xtr = fvl_empty(FVL_F32, 4, s1);
  *ytr = fvl_empty(FVL_I32, 1, &ntr);
  *ytrue = fvl_empty(FVL_I32, 1, &ntr);
  *xte = fvl_empty(FVL_F32, 4, s2);
  *yte = fvl_empty(FVL_I32, 1, &nte);
  if (!*xtr || !*ytr || !*ytrue || !*xte || !*yte ||
      fvl_synth_faces_rgb(o, size, label_base, fvl_f32(*xtr), fvl_i32(*ytr), fvl_i32(*ytrue), fvl_f32(*xte),
                          fvl_i32(*yte)) < 0) {
    fvl_release(*xtr); fvl_release(*ytr); fvl_release(*ytrue); fvl_release(*xte); fvl_release(*yte);
    *xtr = *ytr = *ytrue = *xte = *yte = NULL;
    return -1;
  }
  return 0;
}
