/* test_plot.c — engine/plot.c: marching-squares contours (closed, open, several pieces, saddles),
 * charts/scatters/sheets written as PNG, SVG and PDF (magic bytes, PNG size, atomic write: no
 * temporary left behind) and every error path. FVL_PLOT_KEEP=dir keeps the pictures there. */
#include "fvl_check.h"
#include <gif_lib.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "core.h"
#include "plot.h"

#define HAS(msg, s) ck_assert_msg(strstr((msg), (s)) != NULL, "message '%s' lacks '%s'", (msg), (s))

static char dir[256];
static void setup(void) {
  const char *keep = getenv("FVL_PLOT_KEEP");
  if (keep && *keep) snprintf(dir, sizeof dir, "%s", keep);
  else {
    snprintf(dir, sizeof dir, "/tmp/fvl_plot_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
  }
}
static void teardown(void) {
  const char *keep = getenv("FVL_PLOT_KEEP");
  if (keep && *keep) return;
  DIR *d = opendir(dir);
  if (d) {
    struct dirent *e;
    char p[600];
    while ((e = readdir(d))) {
      if (e->d_name[0] == '.') continue;
      snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
      remove(p);
    }
    closedir(d);
  }
  rmdir(dir);
}
static const char *path(const char *name) {
  static char p[4][600];
  static int k;
  k = (k + 1) % 4;
  snprintf(p[k], sizeof p[k], "%s/%s", dir, name);
  return p[k];
}
/* no "*.tmp.*" file is left in the directory */
static void no_tmp_left(void) {
  DIR *d = opendir(dir);
  struct dirent *e;
  while ((e = readdir(d))) ck_assert_msg(strstr(e->d_name, ".tmp.") == NULL, "left %s", e->d_name);
  closedir(d);
}
static long file_head(const char *p, unsigned char *buf, size_t n) {
  FILE *f = fopen(p, "rb");
  ck_assert_msg(f != NULL, "%s was not written", p);
  memset(buf, 0, n);
  size_t got = fread(buf, 1, n, f);
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  fclose(f);
  ck_assert_int_gt((long)got, 8);
  return size;
}
static void expect_png(const char *p, int w, int h) {
  unsigned char b[32];
  file_head(p, b, sizeof b);
  ck_assert_int_eq(memcmp(b, "\x89PNG\r\n\x1a\n", 8), 0);
  int pw = b[16] << 24 | b[17] << 16 | b[18] << 8 | b[19];
  int ph = b[20] << 24 | b[21] << 16 | b[22] << 8 | b[23];
  ck_assert_int_eq(pw, w);
  ck_assert_int_eq(ph, h);
}
static void expect_svg(const char *p) {
  unsigned char b[64];
  long size = file_head(p, b, sizeof b - 1);
  ck_assert_msg(strstr((char *)b, "<?xml") || strstr((char *)b, "<svg"), "%s is not SVG", p);
  ck_assert_int_gt(size, 1000);
}
static void expect_pdf(const char *p) {
  unsigned char b[16];
  file_head(p, b, sizeof b);
  ck_assert_int_eq(memcmp(b, "%PDF-", 5), 0);
}

/* ------------------------------------------------------------------ contour */
static double *grid(int n, double lo, double hi, double (*f)(double, double)) {
  double *z = malloc((size_t)n * n * sizeof *z);
  for (int j = 0; j < n; j++)
    for (int i = 0; i < n; i++) {
      double x = lo + (hi - lo) * i / (n - 1), y = lo + (hi - lo) * j / (n - 1);
      z[j * n + i] = f(x, y);
    }
  return z;
}
static double circle(double x, double y) { return x * x + y * y - 1; }
static double line(double x, double y) { return y - x - 0.4871; }
static double two(double x, double y) {
  return fmin((x - 1) * (x - 1) + y * y, (x + 1) * (x + 1) + y * y) - 0.25;
}
static int pieces(const double *xy, int64_t n) {
  int k = n > 0;
  for (int64_t i = 0; i < n; i++) k += isnan(xy[2 * i]);
  return k;
}

START_TEST(contour_shapes) {
  int n = 81;
  double *z = grid(n, -2, 2, circle);
  int64_t need = fvl_plot_contour(z, n, n, -2, 2, -2, 2, 0, NULL, 0);
  ck_assert_int_gt(need, 50);
  double *xy = malloc((size_t)need * 2 * sizeof *xy);
  ck_assert_int_eq(fvl_plot_contour(z, n, n, -2, 2, -2, 2, 0, xy, need), need);
  ck_assert_int_eq(pieces(xy, need), 1);
  for (int64_t i = 0; i < need; i++)
    ck_assert_double_eq_tol(hypot(xy[2 * i], xy[2 * i + 1]), 1.0, 2e-3);
  /* closed: ends where it starts */
  ck_assert_double_eq_tol(xy[0], xy[2 * need - 2], 1e-12);
  ck_assert_double_eq_tol(xy[1], xy[2 * need - 1], 1e-12);
  /* a level other than 0: radius sqrt(2) */
  int64_t m = fvl_plot_contour(z, n, n, -2, 2, -2, 2, 1.0, NULL, 0);
  ck_assert_int_gt(m, need);
  xy = realloc(xy, (size_t)m * 2 * sizeof *xy);
  ck_assert_int_eq(fvl_plot_contour(z, n, n, -2, 2, -2, 2, 1.0, xy, m), m);
  for (int64_t i = 0; i < m; i++) ck_assert_double_eq_tol(hypot(xy[2 * i], xy[2 * i + 1]), sqrt(2), 3e-3);
  free(z); free(xy);
  /* open line, exact for a linear function */
  z = grid(n, -2, 2, line);
  need = fvl_plot_contour(z, n, n, -2, 2, -2, 2, 0, NULL, 0);
  xy = malloc((size_t)need * 2 * sizeof *xy);
  fvl_plot_contour(z, n, n, -2, 2, -2, 2, 0, xy, need);
  ck_assert_int_eq(pieces(xy, need), 1);
  for (int64_t i = 0; i < need; i++) ck_assert_double_eq_tol(xy[2 * i + 1], xy[2 * i] + 0.4871, 1e-9);
  /* ordered along the line: x is monotone */
  int up = xy[2] > xy[0];
  for (int64_t i = 1; i < need; i++) ck_assert_int_eq(xy[2 * i] > xy[2 * i - 2], up);
  free(z); free(xy);
  /* two circles: two pieces */
  z = grid(n, -2, 2, two);
  need = fvl_plot_contour(z, n, n, -2, 2, -2, 2, 0, NULL, 0);
  xy = malloc((size_t)need * 2 * sizeof *xy);
  fvl_plot_contour(z, n, n, -2, 2, -2, 2, 0, xy, need);
  ck_assert_int_eq(pieces(xy, need), 2);
  free(z); free(xy);
  /* saddle 2x2 grid and NaN cells */
  double s[4] = {1, -1, -1, 1};
  ck_assert_int_eq(fvl_plot_contour(s, 2, 2, 0, 1, 0, 1, 0, NULL, 0), 5); /* 2 + NaN + 2 */
  double nanz[4] = {1, NAN, -1, 1};
  ck_assert_int_eq(fvl_plot_contour(nanz, 2, 2, 0, 1, 0, 1, 0, NULL, 0), 0);
  /* errors */
  ck_assert_int_eq(fvl_plot_contour(s, 1, 4, 0, 1, 0, 1, 0, NULL, 0), -1);
  HAS(fvl_errmsg(), "contour: expected a grid of at least 2x2, got 1x4");
  double small[4];
  ck_assert_int_eq(fvl_plot_contour(s, 2, 2, 0, 1, 0, 1, 0, small, 2), -1);
  HAS(fvl_errmsg(), "xy holds 2 points, 5 needed");
}
END_TEST

/* ------------------------------------------------------------------ charts */
START_TEST(chart_files) {
  double far[200], tar1[200], tar2[200];
  for (int i = 0; i < 200; i++) {
    far[i] = pow(10, -6 + 6.0 * i / 199);
    tar1[i] = 1 - 0.5 * exp(-3 * (log10(far[i]) + 6) / 6 * 2);
    tar2[i] = pow(far[i], 0.08);
  }
  fvl_plot_series s[2] = {{"ArcFace (m=0.5)  TAR@1e-3 = 0.931", far, tar1, 200, -1, 0, 0, 0},
                          {"Softmax  TAR@1e-3 = 0.575", far, tar2, 200, -1, 0, FVL_DASH_DASHED, 0}};
  fvl_plot_chart c;
  fvl_plot_chart_init(&c);
  c.title = "ROC on unseen identities";
  c.xlabel = "false accept rate (FAR)";
  c.ylabel = "true accept rate (TAR)";
  c.xlog = 1;
  c.ymin = 0; c.ymax = 1;
  c.series = s; c.nseries = 2;
  ck_assert_msg(fvl_plot_chart_save(path("roc.png"), 800, 600, &c) == 0, "%s", fvl_errmsg());
  expect_png(path("roc.png"), 800, 600);
  ck_assert_int_eq(fvl_plot_chart_save(path("roc.svg"), 640, 480, &c), 0);
  expect_svg(path("roc.svg"));
  ck_assert_int_eq(fvl_plot_chart_save(path("roc.PDF"), 640, 480, &c), 0);
  expect_pdf(path("roc.PDF"));
  /* training curves with points, NaN gap, equal axes, notes */
  double x[30], y[30], y2[30];
  for (int i = 0; i < 30; i++) { x[i] = i * 100; y[i] = 2.3 * exp(-i / 8.0) + 0.1; y2[i] = 0.1 + 0.88 * (1 - exp(-i / 6.0)); }
  y[12] = NAN;
  fvl_plot_series t[2] = {{"train loss", x, y, 30, 3, FVL_PLOT_LINE | FVL_PLOT_POINTS, 0, 1.5},
                          {"test accuracy", x, y2, 30, 2, 0, FVL_DASH_DOTTED, 0}};
  fvl_plot_note note = {1500, 1.9, "a gap is a NaN"};
  fvl_plot_chart_init(&c);
  c.title = "Training"; c.xlabel = "step"; c.series = t; c.nseries = 2; c.notes = &note; c.nnotes = 1;
  ck_assert_int_eq(fvl_plot_chart_save(path("train.png"), 700, 450, &c), 0);
  expect_png(path("train.png"), 700, 450);
  c.equal = 1; c.diagonal = 1; c.legend = -1; c.title = NULL;
  ck_assert_int_eq(fvl_plot_chart_save(path("equal.png"), 500, 500, &c), 0);
  /* empty chart still draws axes */
  fvl_plot_chart_init(&c);
  ck_assert_int_eq(fvl_plot_chart_save(path("empty.png"), 300, 200, &c), 0);
  no_tmp_left();
}
END_TEST

START_TEST(chart_errors) {
  fvl_plot_chart c;
  fvl_plot_chart_init(&c);
  ck_assert_int_eq(fvl_plot_chart_save(path("x.jpg"), 800, 600, &c), -1);
  HAS(fvl_errmsg(), "plot.lines: file '");
  HAS(fvl_errmsg(), "x.jpg': expected a name ending in .png, .svg or .pdf");
  ck_assert_int_eq(fvl_plot_chart_save("/nonexistent-dir/x.png", 800, 600, &c), -1);
  HAS(fvl_errmsg(), "cannot write '/nonexistent-dir/x.png': No such file or directory");
  ck_assert_int_eq(fvl_plot_chart_save(path("x.png"), 8, 600, &c), -1);
  HAS(fvl_errmsg(), "size: expected 16..16384 pixels a side, got 8x600");
  c.xmin = 1; c.xmax = 0;
  ck_assert_int_eq(fvl_plot_chart_save(path("x.png"), 800, 600, &c), -1);
  HAS(fvl_errmsg(), "xmin = 1 must be below xmax = 0");
  fvl_plot_chart_init(&c);
  c.xlog = 1; c.xmin = 0;
  ck_assert_int_eq(fvl_plot_chart_save(path("x.png"), 800, 600, &c), -1);
  HAS(fvl_errmsg(), "a log axis needs a positive minimum");
  fvl_plot_series s = {"bad", NULL, NULL, 3, -1, 0, 0, 0};
  fvl_plot_chart_init(&c);
  c.series = &s; c.nseries = 1;
  ck_assert_int_eq(fvl_plot_chart_save(path("x.png"), 800, 600, &c), -1);
  HAS(fvl_errmsg(), "series[0]: expected x and y of 3 points (0-based)");
  ck_assert_int_eq(access(path("x.png"), F_OK), -1);
  no_tmp_left();
}
END_TEST

/* a categorical x axis: the ticks at 1..n carry the names, nothing else; numbers otherwise */
START_TEST(chart_categories) {
  double x[4] = {1, 2.04, 2.96, 3}, y[4] = {0.5, 0.7, 0.6, 0.9};
  fvl_plot_series s = {"done", x, y, 4, -1, FVL_PLOT_POINTS, 0, 0};
  const char *names[3] = {"adam", "sgd", "sgd+nesterov"};
  fvl_plot_chart c;
  fvl_plot_chart_init(&c);
  c.series = &s; c.nseries = 1;
  c.xmin = 0.5; c.xmax = 3.5;
  char out[256];
  ck_assert_int_eq(fvl_plot_chart_xticks(&c, 800, 600, out, sizeof out), 7);
  ck_assert_str_eq(out, "0.5|1.0|1.5|2.0|2.5|3.0|3.5");   /* numbers without names */
  c.xnames = names; c.nxnames = 3;
  ck_assert_int_eq(fvl_plot_chart_xticks(&c, 800, 600, out, sizeof out), 3);
  ck_assert_str_eq(out, "adam|sgd|sgd+nesterov");
  ck_assert_int_eq(fvl_plot_chart_save(path("cat.png"), 800, 600, &c), 0);
  expect_png(path("cat.png"), 800, 600);
  c.xmin = 0; c.xmax = 5;   /* ticks beyond the categories stay unlabelled */
  ck_assert_int_eq(fvl_plot_chart_xticks(&c, 800, 600, out, sizeof out), 6);
  ck_assert_str_eq(out, "|adam|sgd|sgd+nesterov||");
  ck_assert_int_eq(fvl_plot_chart_xticks(&c, 800, 600, out, 8), 6);   /* truncated, terminated */
  ck_assert_str_eq(out, "|adam|s");
  c.xlog = 1; c.xmin = 0.5;
  ck_assert_int_eq(fvl_plot_chart_xticks(&c, 800, 600, out, sizeof out), -1);
  HAS(fvl_errmsg(), "a categorical x axis (xnames) cannot be logarithmic");
  c.xlog = 0; c.xnames = NULL;
  ck_assert_int_eq(fvl_plot_chart_save(path("cat2.png"), 800, 600, &c), -1);
  HAS(fvl_errmsg(), "xnames: expected a list of 3 names");
  no_tmp_left();
}
END_TEST

/* ------------------------------------------------------------------ features */
static void make_features(int n, int dim, int C, float *e, int32_t *l, float *W) {
  uint64_t h = 1;
  for (int j = 0; j < C; j++) {
    double a = 2 * M_PI * j / C, b = dim == 3 ? 0.9 * sin(3.0 * j) : 0;
    W[j * dim] = (float)(cos(a) * cos(b)); W[j * dim + 1] = (float)(sin(a) * cos(b));
    if (dim == 3) W[j * dim + 2] = (float)sin(b);
  }
  for (int i = 0; i < n; i++) {
    l[i] = i % C;
    for (int d = 0; d < dim; d++) {
      h = h * 6364136223846793005ULL + 1442695040888963407ULL;
      double u = (double)(h >> 11) / 9007199254740992.0 - 0.5;
      e[i * dim + d] = (float)((3 + i % 7) * (W[l[i] * dim + d] + 0.35 * u));
    }
  }
}

START_TEST(features_files) {
  int n = 3000, C = 10;
  float *e = malloc(n * 3 * sizeof *e), W[30];
  int32_t *l = malloc(n * sizeof *l);
  make_features(n, 2, C, e, l, W);
  fvl_plot_features f = {e, n, 2, l, 0, W, C, NULL, "ArcFace m=0.5, Fashion-MNIST test", 1, 20, 30, 0, 0};
  ck_assert_msg(fvl_plot_features_save(path("feat2.png"), 800, 640, &f) == 0, "%s", fvl_errmsg());
  expect_png(path("feat2.png"), 800, 640);
  const char *names[10] = {"T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                           "Sneaker", "Bag", "Ankle boot"};
  f.names = names;
  f.normalize = 0;
  f.title = "raw features";
  ck_assert_int_eq(fvl_plot_features_save(path("feat2raw.svg"), 800, 640, &f), 0);
  expect_svg(path("feat2raw.svg"));
  make_features(n, 3, C, e, l, W);
  fvl_plot_features g = {e, n, 3, l, 0, W, C, NULL, "3-D embedding on the sphere", 1, 20, 30, 0, 0};
  ck_assert_int_eq(fvl_plot_features_save(path("feat3.png"), 800, 640, &g), 0);
  expect_png(path("feat3.png"), 800, 640);
  /* many classes: the legend is cut with "… N more" and colours keep coming */
  int32_t *l40 = malloc(n * sizeof *l40);
  for (int i = 0; i < n; i++) l40[i] = i % 40;
  fvl_plot_features h = {e, n, 3, l40, 0, NULL, 0, NULL, NULL, 1, 60, -40, 0, 0};
  ck_assert_int_eq(fvl_plot_features_save(path("feat40.png"), 500, 400, &h), 0);
  /* errors */
  fvl_plot_features bad = f;
  bad.dim = 4;
  ck_assert_int_eq(fvl_plot_features_save(path("bad.png"), 800, 640, &bad), -1);
  HAS(fvl_errmsg(), "plot.features: emb: expected N×2 or N×3 embeddings, got N×4");
  bad = f;
  bad.nclasses = 5;
  ck_assert_int_eq(fvl_plot_features_save(path("bad.png"), 800, 640, &bad), -1);
  HAS(fvl_errmsg(), "plot.features: labels[5] = 5 is outside 0..4 (0-based)");
  make_features(n, 2, C, e, l, W);
  e[7] = NAN;
  ck_assert_int_eq(fvl_plot_features_save(path("bad.png"), 800, 640, &f), -1);
  HAS(fvl_errmsg(), "plot.features: emb[3][1] = nan is not a finite number (0-based)");
  ck_assert_int_eq(access(path("bad.png"), F_OK), -1);
  free(e); free(l); free(l40);
}
END_TEST

/* ------------------------------------------------------------------ sheets */
START_TEST(sheet_files) {
  int n = 600, C = 4;
  float e[1200], W[8];
  int32_t l[600];
  make_features(n, 2, C, e, l, W);
  const char *names[5] = {"p1.png", "p2.png", "p3.png", "p4.png", "p5.png"};
  char files[5][600];
  fvl_plot_panel panels[5];
  static const char *titles[5] = {"Softmax", "CosFace", "ArcFace", "SphereFace", NULL};
  for (int i = 0; i < 5; i++) {
    snprintf(files[i], sizeof files[i], "%s", path(names[i]));
    fvl_plot_features f = {e, n, 2, l, 0, W, C, NULL, titles[i], 1, 0, 0, 0, 0};
    ck_assert_int_eq(fvl_plot_features_save(files[i], 400 - 20 * (i == 4), 320, &f), 0);
    panels[i].file = files[i];
    panels[i].title = titles[i];
  }
  ck_assert_msg(fvl_plot_sheet(path("sheet.png"), panels, 5, 3, "Five heads", 0, 0) == 0, "%s",
                fvl_errmsg());
  expect_png(path("sheet.png"), 3 * 400, 56 + 2 * (320 + 30));
  ck_assert_int_eq(fvl_plot_sheet(path("sheet.svg"), panels, 5, 0, NULL, 200, 160), 0);
  expect_svg(path("sheet.svg"));
  /* errors */
  fvl_plot_panel bad[2] = {{files[0], NULL}, {"/nonexistent/p.png", NULL}};
  ck_assert_int_eq(fvl_plot_sheet(path("s2.png"), bad, 2, 0, NULL, 0, 0), -1);
  HAS(fvl_errmsg(), "plot.sheet: '/nonexistent/p.png' (panels[1], 0-based): cannot read the PNG (No such file or directory)");
  bad[1].file = path("roc.svg");
  ck_assert_int_eq(fvl_plot_sheet(path("s2.png"), bad, 2, 0, NULL, 0, 0), -1);
  HAS(fvl_errmsg(), "expected a .png file");
  ck_assert_int_eq(fvl_plot_sheet(path("s2.png"), bad, 0, 0, NULL, 0, 0), -1);
  HAS(fvl_errmsg(), "panels: expected at least one panel, got 0");
  ck_assert_int_eq(fvl_plot_sheet(path("s2.png"), panels, 1, 1, NULL, 17000, 300), -1);
  HAS(fvl_errmsg(), "at most 16384 a side");
  no_tmp_left();
}
END_TEST

/* ------------------------------------------------------------------ animated GIF */
/* Reads the file back with giflib's decoder: returns the number of frames (each w×h), *corner =
   the first pixel's colour as 0xRRGGBB, *has_c0 = whether plot colour 0 appears exactly. */
static int gif_read(const char *p, int *w, int *h, int *corner, int *has_c0) {
  int err = 0;
  GifFileType *gf = DGifOpenFileName(p, &err);
  ck_assert_msg(gf != NULL, "giflib cannot open %s: %d", p, err);
  ck_assert_int_eq(DGifSlurp(gf), GIF_OK);
  char hdr[7] = {0};
  FILE *hf = fopen(p, "rb");
  ck_assert_int_eq(fread(hdr, 1, 6, hf), 6);
  fclose(hf);
  ck_assert_str_eq(hdr, "GIF89a");
  *w = gf->SWidth;
  *h = gf->SHeight;
  ColorMapObject *cm = gf->SColorMap;
  ck_assert_ptr_nonnull(cm);
  double c0[3];
  fvl_plot_color(0, c0);
  int r0 = (int)lround(c0[0] * 255), g0 = (int)lround(c0[1] * 255), b0 = (int)lround(c0[2] * 255);
  *has_c0 = 0;
  /* frames after the first store the box that changed: composite them onto the canvas */
  GifByteType *canvas = calloc((size_t)*w * *h, 1);
  for (int f = 0; f < gf->ImageCount; f++) {
    SavedImage *im = &gf->SavedImages[f];
    GifImageDesc *d = &im->ImageDesc;
    if (f == 0) {
      ck_assert_int_eq(d->Width, *w);
      ck_assert_int_eq(d->Height, *h);
    }
    ck_assert(d->Left >= 0 && d->Top >= 0 && d->Left + d->Width <= *w && d->Top + d->Height <= *h);
    for (int r = 0; r < d->Height; r++)
      memcpy(canvas + (size_t)(d->Top + r) * *w + d->Left, im->RasterBits + (size_t)r * d->Width, (size_t)d->Width);
    for (int64_t i = 0; i < (int64_t)*w * *h; i++) {
      GifColorType c = cm->Colors[canvas[i]];
      if (c.Red == r0 && c.Green == g0 && c.Blue == b0) *has_c0 = 1;
    }
    if (f == 0) {
      GifColorType c = cm->Colors[canvas[0]];
      *corner = c.Red << 16 | c.Green << 8 | c.Blue;
    }
  }
  free(canvas);
  int n = gf->ImageCount;
  DGifCloseFile(gf, &err);
  return n;
}

START_TEST(gif_animation) {
  int n = 400, C = 5;
  float e[800], W[10];
  int32_t l[400];
  fvl_plot_gif *g = fvl_plot_gif_open(path("anim.gif"), 320, 256, 0.25, 0);
  ck_assert_msg(g != NULL, "%s", fvl_errmsg());
  for (int k = 0; k < 4; k++) {
    make_features(n, 2, C, e, l, W);
    for (int i = 0; i < 2 * n; i++) e[i] *= 0.5f + k;
    fvl_plot_features f = {e, n, 2, l, 0, W, C, NULL, "frame", 1, 0, 0, 0, 0};
    ck_assert_int_eq(fvl_plot_gif_add_features(g, &f), 0);
  }
  double x[3] = {0, 1, 2}, y[3] = {1, 0, 2};
  fvl_plot_series s = {"line", x, y, 3, -1, 0, 0, 0};
  fvl_plot_chart c;
  fvl_plot_chart_init(&c);
  c.series = &s; c.nseries = 1;
  ck_assert_int_eq(fvl_plot_gif_add_chart(g, &c), 0);
  ck_assert_int_eq(fvl_plot_gif_frames(g), 5);
  ck_assert_int_eq(access(path("anim.gif"), F_OK), -1);   /* nothing until close */
  ck_assert_int_eq(fvl_plot_gif_close(g), 0);
  int w, h, corner, has_c0;
  ck_assert_int_eq(gif_read(path("anim.gif"), &w, &h, &corner, &has_c0), 5);
  ck_assert_int_eq(w, 320);
  ck_assert_int_eq(h, 256);
  ck_assert_int_eq(corner, 0xFFFFFF);   /* white background */
  ck_assert_msg(has_c0, "the plots' first colour is kept exactly in the palette");
  /* a big noisy frame fills the LZW table several times (clear codes) */
  g = fvl_plot_gif_open(path("big.gif"), 1200, 900, 0.1, -1);
  float *e2 = malloc(20000 * 2 * sizeof *e2);
  int32_t *l2 = malloc(20000 * sizeof *l2);
  float W2[80];
  make_features(20000, 2, 40, e2, l2, W2);
  fvl_plot_features f2 = {e2, 20000, 2, l2, 0, W2, 40, NULL, NULL, 0, 0, 0, 1.5, 0.9};
  ck_assert_int_eq(fvl_plot_gif_add_features(g, &f2), 0);
  ck_assert_int_eq(fvl_plot_gif_close(g), 0);
  ck_assert_int_eq(gif_read(path("big.gif"), &w, &h, &corner, &has_c0), 1);
  free(e2); free(l2);
  /* errors */
  ck_assert_ptr_null(fvl_plot_gif_open(path("a.png"), 320, 256, 0.2, 0));
  HAS(fvl_errmsg(), "plot.animation: file '");
  HAS(fvl_errmsg(), "a.png': expected a name ending in .gif");
  ck_assert_ptr_null(fvl_plot_gif_open(path("a.gif"), 320, 256, 0, 0));
  HAS(fvl_errmsg(), "delay: expected 0.01..600 seconds per frame, got 0");
  ck_assert_ptr_null(fvl_plot_gif_open("/nonexistent-dir/a.gif", 320, 256, 0.2, 0));
  HAS(fvl_errmsg(), "cannot write '/nonexistent-dir/a.gif'");
  g = fvl_plot_gif_open(path("empty.gif"), 64, 64, 0.2, 0);
  ck_assert_int_eq(fvl_plot_gif_close(g), -1);
  HAS(fvl_errmsg(), "has no frames");
  ck_assert_int_eq(access(path("empty.gif"), F_OK), -1);
  g = fvl_plot_gif_open(path("dropped.gif"), 64, 64, 0.2, 0);
  fvl_plot_features bad = {e, n, 4, l, 0, NULL, 0, NULL, NULL, 1, 0, 0, 0, 0};
  ck_assert_int_eq(fvl_plot_gif_add_features(g, &bad), -1);
  HAS(fvl_errmsg(), "plot.animation: emb: expected N×2 or N×3 embeddings, got N×4");
  fvl_plot_gif_abort(g);
  ck_assert_int_eq(access(path("dropped.gif"), F_OK), -1);
  no_tmp_left();
}
END_TEST

int main(void) {
  Suite *s = suite_create("plot");
  TCase *tc = tcase_create("plot");
  tcase_set_timeout(tc, 60);
  tcase_add_unchecked_fixture(tc, setup, teardown);
  tcase_add_test(tc, contour_shapes);
  tcase_add_test(tc, chart_files);
  tcase_add_test(tc, chart_errors);
  tcase_add_test(tc, chart_categories);
  tcase_add_test(tc, features_files);
  tcase_add_test(tc, sheet_files);
  tcase_add_test(tc, gif_animation);
  suite_add_tcase(s, tc);
  return fvl_check_run_with(s, CK_NOFORK);   /* one scratch directory for every test */
}
