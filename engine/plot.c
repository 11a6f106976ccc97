/* plot.c — charts, embedding scatters, contours and sheets with cairo (see plot.h). */
#include "plot.h"
#include "plot_gif.h"
#include <cairo.h>
#include <cairo-pdf.h>
#include <cairo-svg.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include "core.h"
#include "sys.h"

#define FONT "DejaVu Sans"

#ifdef FVL_SANITIZE
/* fontconfig (under cairo's toy text API) keeps its configuration for the life of the process;
 * LeakSanitizer would report it at exit in every program that draws text. The one definition
 * of this hook in the project lives here, next to the only user of cairo. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libfontconfig\n"; }
#endif

/* ------------------------------------------------------------------ colours */

/* Tableau 10, then golden-angle hues for more classes */
static const double palette[10][3] = {
  {0.122, 0.467, 0.706}, {1.000, 0.498, 0.055}, {0.173, 0.627, 0.173}, {0.839, 0.153, 0.157},
  {0.580, 0.404, 0.741}, {0.549, 0.337, 0.294}, {0.890, 0.467, 0.761}, {0.498, 0.498, 0.498},
  {0.737, 0.741, 0.133}, {0.090, 0.745, 0.812}};

void fvl_plot_color(int i, double rgb[3]) {
  if (i < 0) i = 0;
  if (i < 10) { memcpy(rgb, palette[i], sizeof palette[i]); return; }
  double h = fmod(i * 0.618033988749895, 1.0) * 6.0, s = 0.65, v = 0.85 - 0.15 * ((i / 10) % 2);
  int k = (int)h;
  double f = h - k, p = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f));
  double r[6] = {v, q, p, p, t, v}, g[6] = {t, v, v, q, p, p}, b[6] = {p, p, t, v, v, q};
  rgb[0] = r[k % 6]; rgb[1] = g[k % 6]; rgb[2] = b[k % 6];
}

static void set_color(cairo_t *cr, int i, double alpha) {
  double c[3];
  fvl_plot_color(i, c);
  cairo_set_source_rgba(cr, c[0], c[1], c[2], alpha);
}

/* ------------------------------------------------------------------ text */

enum { AL_LEFT = 0, AL_CENTER = 1, AL_RIGHT = 2 };
enum { AL_TOP = 0, AL_MIDDLE = 1, AL_BOTTOM = 2 };

static void text_at(cairo_t *cr, double x, double y, const char *s, int ha, int va, double size,
                    int bold) {
  cairo_select_font_face(cr, FONT, CAIRO_FONT_SLANT_NORMAL,
                         bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, size);
  cairo_text_extents_t e;
  cairo_text_extents(cr, s, &e);
  double dx = ha == AL_LEFT ? 0 : ha == AL_CENTER ? -e.x_advance / 2 : -e.x_advance;
  /* vertical placement by the font's cap height so that labels line up */
  double cap = size * 0.72;
  double dy = va == AL_TOP ? cap : va == AL_MIDDLE ? cap / 2 : 0;
  cairo_move_to(cr, x + dx, y + dy);
  cairo_show_text(cr, s);
}

static double text_width(cairo_t *cr, const char *s, double size, int bold) {
  cairo_select_font_face(cr, FONT, CAIRO_FONT_SLANT_NORMAL,
                         bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, size);
  cairo_text_extents_t e;
  cairo_text_extents(cr, s, &e);
  return e.x_advance;
}

/* ------------------------------------------------------------------ files */


static cairo_status_t write_cb(void *closure, const unsigned char *data, unsigned int len) {
  return fwrite(data, 1, len, (FILE *)closure) == len ? CAIRO_STATUS_SUCCESS
                                                      : CAIRO_STATUS_WRITE_ERROR;
}

const char *fvl_plot_ext_of(const char *path) {
  const char *dot = strrchr(path, '.');
  const char *slash = strrchr(path, '/');
  return (dot && (!slash || dot > slash)) ? dot + 1 : "";
}

/* render with draw() into path (PNG/SVG/PDF by extension), atomically */
static int render_file(const char *fn, const char *path, int w, int h, fvl_plot_draw_fn draw,
                       const void *ud) {
  if (!path || !*path) return fvl_err("%s: file: expected a file name, got none", fn);
  const char *ext = fvl_plot_ext_of(path);
  int kind = strcasecmp(ext, "png") == 0 ? 0 : strcasecmp(ext, "svg") == 0 ? 1
           : strcasecmp(ext, "pdf") == 0 ? 2 : -1;
  if (kind < 0)
    return fvl_err("%s: file '%s': expected a name ending in .png, .svg or .pdf", fn, path);
  if (w < 16 || h < 16 || w > 16384 || h > 16384)
    return fvl_err("%s: size: expected 16..16384 pixels a side, got %dx%d", fn, w, h);
  fvl_atomic_file a;   /* sys.h: tmp + fsync + rename + fsync of the directory */
  if (fvl_atomic_open(&a, path, fn) < 0) return fvl_err("%s: cannot write '%s': %s", fn, path, strerror(errno));
  FILE *f = a.f;
  cairo_surface_t *sf;
  if (kind == 0) sf = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, w, h);
  else if (kind == 1) sf = cairo_svg_surface_create_for_stream(write_cb, f, w, h);
  else sf = cairo_pdf_surface_create_for_stream(write_cb, f, w, h);
  cairo_t *cr = cairo_create(sf);
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);
  int rc = draw(cr, w, h, ud);
  cairo_status_t st = cairo_status(cr);
  cairo_destroy(cr);
  if (rc == 0 && st == CAIRO_STATUS_SUCCESS) {
    if (kind == 0) st = cairo_surface_write_to_png_stream(sf, write_cb, f);
    cairo_surface_finish(sf);
    if (st == CAIRO_STATUS_SUCCESS) st = cairo_surface_status(sf);
  }
  cairo_surface_destroy(sf);
  if (rc == 0 && st != CAIRO_STATUS_SUCCESS)
    rc = fvl_err("%s: cannot render '%s': %s", fn, path, cairo_status_to_string(st));
  if (rc != 0) { fvl_atomic_abort(&a); return rc; }
  return fvl_atomic_commit(&a, fn);
}

/* ------------------------------------------------------------------ axes */

static double nice_step(double range, int target) {
  if (!(range > 0)) return 1;
  double raw = range / target, p = pow(10, floor(log10(raw))), f = raw / p;
  double m = f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10;
  return m * p;
}

/* "10⁻³" with Unicode superscripts */
static void pow10_label(char *buf, size_t n, int e) {
  static const char *sup[10] = {"\u2070", "\u00b9", "\u00b2", "\u00b3", "\u2074",
                                "\u2075", "\u2076", "\u2077", "\u2078", "\u2079"};
  if (e == 0) { snprintf(buf, n, "1"); return; }
  if (e == 1) { snprintf(buf, n, "10"); return; }
  char digits[16];
  snprintf(digits, sizeof digits, "%d", e < 0 ? -e : e);
  size_t k = (size_t)snprintf(buf, n, "10%s", e < 0 ? "\u207b" : "");
  for (char *d = digits; *d && k < n; d++) k += (size_t)snprintf(buf + k, n - k, "%s", sup[*d - '0']);
}

static void tick_label(char *buf, size_t n, double v, double step) {
  if (fabs(v) < step * 1e-9) v = 0;
  int dec = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
  if (dec > 8) dec = 8;
  snprintf(buf, n, "%.*f", dec, v);
}

typedef struct {
  double lo, hi;   /* data range (log10 units on log axes) */
  int log;
  double p0, p1;   /* pixel range */
} axis_t;

static inline double ax_map(const axis_t *a, double v) {
  if (a->log) { if (!(v > 0)) return NAN; v = log10(v); }
  return a->p0 + (v - a->lo) / (a->hi - a->lo) * (a->p1 - a->p0);
}

static void data_range(const fvl_plot_chart *c, int which, int logax, double *lo, double *hi) {
  double mn = INFINITY, mx = -INFINITY;
  for (int s = 0; s < c->nseries; s++) {
    const double *v = which ? c->series[s].y : c->series[s].x;
    for (int64_t i = 0; i < c->series[s].n; i++) {
      double t = v[i];
      if (!isfinite(t) || (logax && t <= 0)) continue;
      if (t < mn) mn = t;
      if (t > mx) mx = t;
    }
  }
  if (mn > mx) { mn = logax ? 0.1 : 0; mx = 1; }
  *lo = mn;
  *hi = mx;
}

static void setup_axis(axis_t *a, double dmin, double dmax, double umin, double umax, int logax) {
  double lo = isnan(umin) ? dmin : umin, hi = isnan(umax) ? dmax : umax;
  a->log = logax;
  if (logax) {
    if (!(lo > 0)) lo = dmin > 0 ? dmin : 1e-6;
    if (!(hi > 0)) hi = 1;
    lo = log10(lo);
    hi = log10(hi);
    if (isnan(umin)) lo = floor(lo + 1e-9);
    if (isnan(umax)) hi = ceil(hi - 1e-9);
    if (hi <= lo) hi = lo + 1;
  } else {
    if (hi <= lo) { lo -= 0.5; hi += 0.5; }
    double pad = (hi - lo) * 0.04;
    if (isnan(umin)) lo -= pad;
    if (isnan(umax)) hi += pad;
  }
  a->lo = lo;
  a->hi = hi;
}

/* ------------------------------------------------------------------ charts */

void fvl_plot_chart_init(fvl_plot_chart *c) {
  memset(c, 0, sizeof *c);
  c->xmin = c->xmax = c->ymin = c->ymax = NAN;
}

static void set_dash(cairo_t *cr, int dash, double lw) {
  if (dash == FVL_DASH_DASHED) { double d[2] = {6 * lw, 3.5 * lw}; cairo_set_dash(cr, d, 2, 0); }
  else if (dash == FVL_DASH_DOTTED) { double d[2] = {1.2 * lw, 2.5 * lw}; cairo_set_dash(cr, d, 2, 0); }
  else cairo_set_dash(cr, NULL, 0, 0);
}

static void stroke_series(cairo_t *cr, const axis_t *ax, const axis_t *ay,
                          const fvl_plot_series *s, double sc) {
  int style = s->style ? s->style : FVL_PLOT_LINE;
  double lw = (s->width > 0 ? s->width : 2.0) * sc;
  if (style & FVL_PLOT_LINE) {
    cairo_set_line_width(cr, lw);
    cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
    cairo_set_line_cap(cr, s->dash == FVL_DASH_DOTTED ? CAIRO_LINE_CAP_ROUND : CAIRO_LINE_CAP_BUTT);
    set_dash(cr, s->dash, lw);
    int pen = 0;
    for (int64_t i = 0; i < s->n; i++) {
      double px = ax_map(ax, s->x[i]), py = ax_map(ay, s->y[i]);
      if (!isfinite(px) || !isfinite(py)) { pen = 0; continue; }
      if (pen) cairo_line_to(cr, px, py); else cairo_move_to(cr, px, py);
      pen = 1;
    }
    cairo_stroke(cr);
    cairo_set_dash(cr, NULL, 0, 0);
  }
  if (style & FVL_PLOT_POINTS) {
    double r = 2.8 * sc;
    for (int64_t i = 0; i < s->n; i++) {
      double px = ax_map(ax, s->x[i]), py = ax_map(ay, s->y[i]);
      if (!isfinite(px) || !isfinite(py)) continue;
      cairo_new_sub_path(cr);
      cairo_arc(cr, px, py, r, 0, 2 * M_PI);
    }
    cairo_fill(cr);
  }
}

static int check_chart(const char *fn, const fvl_plot_chart *c) {
  if (!c) return fvl_err("%s: chart must not be NULL", fn);
  if (c->nseries < 0 || (c->nseries > 0 && !c->series))
    return fvl_err("%s: series: expected a list of series", fn);
  for (int s = 0; s < c->nseries; s++) {
    const fvl_plot_series *se = &c->series[s];
    if (se->n < 0 || (se->n > 0 && (!se->x || !se->y)))
      return fvl_err("%s: series[%d]: expected x and y of %lld points (0-based)", fn, s, (long long)se->n);
  }
  if (c->nxnames < 0 || (c->nxnames > 0 && !c->xnames))
    return fvl_err("%s: xnames: expected a list of %d names", fn, c->nxnames);
  if (c->nxnames > 0 && c->xlog) return fvl_err("%s: a categorical x axis (xnames) cannot be logarithmic", fn);
  if (!isnan(c->xmin) && !isnan(c->xmax) && c->xmin >= c->xmax)
    return fvl_err("%s: xmin = %g must be below xmax = %g", fn, c->xmin, c->xmax);
  if (!isnan(c->ymin) && !isnan(c->ymax) && c->ymin >= c->ymax)
    return fvl_err("%s: ymin = %g must be below ymax = %g", fn, c->ymin, c->ymax);
  if ((c->xlog && !isnan(c->xmin) && c->xmin <= 0) || (c->ylog && !isnan(c->ymin) && c->ymin <= 0))
    return fvl_err("%s: a log axis needs a positive minimum", fn);
  return 0;
}

/* ticks of one axis: values (data units) into t[], returns count */
static int axis_ticks(const axis_t *a, double ustep, double *t, int cap, double *step_out) {
  int n = 0;
  if (a->log) {
    int e0 = (int)ceil(a->lo - 1e-9), e1 = (int)floor(a->hi + 1e-9);
    int every = (e1 - e0) > 10 ? (e1 - e0 + 9) / 10 : 1;
    for (int e = e0; e <= e1 && n < cap; e += every) t[n++] = pow(10, e);
    *step_out = 1;
    return n;
  }
  double step = ustep > 0 && (a->hi - a->lo) / ustep <= 60 ? ustep : nice_step(a->hi - a->lo, 6);
  double v0 = ceil(a->lo / step - 1e-9) * step;
  for (double v = v0; v <= a->hi + step * 1e-9 && n < cap; v += step) t[n++] = v;
  *step_out = step;
  return n;
}

/* a chart's geometry: its axes mapped to the plot area px0..px1 × py0..py1, the scale of lines and
 * fonts (sc, fs, fts) and the ticks of both axes */
typedef struct {
  axis_t ax, ay;
  double px0, px1, py0, py1, sc, fs, fts;
  double xt[64], yt[64], xs, ys;
  int nxt, nyt;
} chart_frame;

static void chart_layout(const fvl_plot_chart *c, double X, double Y, double W, double H, chart_frame *f) {
  double sc = sqrt(W * H / (800.0 * 600.0));
  if (sc < 0.6) sc = 0.6;
  if (sc > 2.5) sc = 2.5;
  f->sc = sc;
  f->fs = 13 * sc;
  f->fts = 16 * sc;
  /* margins */
  double top = (c->title && *c->title ? 2.4 * f->fts : f->fts), bottom = 3.4 * f->fs + (c->xlabel ? 0 : -f->fs);
  double left = 5.2 * f->fs, right = 1.6 * f->fs;
  double px0 = X + left, px1 = X + W - right, py0 = Y + top, py1 = Y + H - bottom;
  double dx0, dx1, dy0, dy1;
  data_range(c, 0, c->xlog, &dx0, &dx1);
  data_range(c, 1, c->ylog, &dy0, &dy1);
  setup_axis(&f->ax, dx0, dx1, c->xmin, c->xmax, c->xlog);
  setup_axis(&f->ay, dy0, dy1, c->ymin, c->ymax, c->ylog);
  if (c->equal && !c->xlog && !c->ylog) {
    double ux = (px1 - px0) / (f->ax.hi - f->ax.lo), uy = (py1 - py0) / (f->ay.hi - f->ay.lo);
    double u = ux < uy ? ux : uy;
    double cx = (px0 + px1) / 2, cy = (py0 + py1) / 2;
    double hw = u * (f->ax.hi - f->ax.lo) / 2, hh = u * (f->ay.hi - f->ay.lo) / 2;
    px0 = cx - hw; px1 = cx + hw; py0 = cy - hh; py1 = cy + hh;
  }
  f->px0 = px0; f->px1 = px1; f->py0 = py0; f->py1 = py1;
  f->ax.p0 = px0; f->ax.p1 = px1;
  f->ay.p0 = py1; f->ay.p1 = py0;   /* y grows upwards */
  f->nxt = axis_ticks(&f->ax, c->nxnames > 0 ? 1 : c->xstep, f->xt, 64, &f->xs);
  f->nyt = axis_ticks(&f->ay, c->ystep, f->yt, 64, &f->ys);
}

/* the grid at the ticks (and a minor grid at 2..9 × 10^k on a log x axis) */
static void chart_grid(cairo_t *cr, const fvl_plot_chart *c, const chart_frame *f) {
  cairo_set_line_width(cr, 1.0 * f->sc);
  cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
  for (int i = 0; i < f->nxt; i++) {
    double p = ax_map(&f->ax, f->xt[i]);
    cairo_move_to(cr, p, f->py0); cairo_line_to(cr, p, f->py1);
  }
  for (int i = 0; i < f->nyt; i++) {
    double p = ax_map(&f->ay, f->yt[i]);
    cairo_move_to(cr, f->px0, p); cairo_line_to(cr, f->px1, p);
  }
  cairo_stroke(cr);
  if (c->xlog) {
    cairo_set_source_rgb(cr, 0.96, 0.96, 0.96);
    for (int e = (int)floor(f->ax.lo); e < (int)ceil(f->ax.hi); e++)
      for (int m = 2; m <= 9; m++) {
        double p = ax_map(&f->ax, m * pow(10, e));
        if (p > f->px0 && p < f->px1) { cairo_move_to(cr, p, f->py0); cairo_line_to(cr, p, f->py1); }
      }
    cairo_stroke(cr);
  }
}

/* the y = x diagonal and the series, clipped to the plot area */
static void chart_series(cairo_t *cr, const fvl_plot_chart *c, const chart_frame *f) {
  cairo_save(cr);
  cairo_rectangle(cr, f->px0, f->py0, f->px1 - f->px0, f->py1 - f->py0);
  cairo_clip(cr);
  if (c->diagonal) {
    double lo = f->ax.lo > f->ay.lo ? f->ax.lo : f->ay.lo, hi = f->ax.hi < f->ay.hi ? f->ax.hi : f->ay.hi;
    if (c->xlog) { lo = pow(10, lo); hi = pow(10, hi); }
    cairo_set_source_rgb(cr, 0.55, 0.55, 0.55);
    cairo_set_line_width(cr, 1.2 * f->sc);
    set_dash(cr, FVL_DASH_DOTTED, 1.2 * f->sc);
    cairo_move_to(cr, ax_map(&f->ax, lo), ax_map(&f->ay, lo));
    cairo_line_to(cr, ax_map(&f->ax, hi), ax_map(&f->ay, hi));
    cairo_stroke(cr);
    cairo_set_dash(cr, NULL, 0, 0);
  }
  for (int s = 0; s < c->nseries; s++) {
    set_color(cr, c->series[s].color >= 0 ? c->series[s].color : s, 1.0);
    stroke_series(cr, &f->ax, &f->ay, &c->series[s], f->sc);
  }
  cairo_restore(cr);
}

/* the text of x tick i: a category's name (an integer x in 1..nxnames; other ticks none), 10^k on
 * a log axis, else the number */
static void xtick_text(const fvl_plot_chart *c, const chart_frame *f, int i, char *buf, size_t n) {
  double v = f->xt[i];
  if (c->nxnames > 0) {
    double k = round(v);
    const char *name = fabs(v - k) < 1e-9 && k >= 1 && k <= c->nxnames && c->xnames ? c->xnames[(int)k - 1] : NULL;
    snprintf(buf, n, "%s", name ? name : "");
  } else if (c->xlog) {
    pow10_label(buf, n, (int)lround(log10(v)));
  } else {
    tick_label(buf, n, v, f->xs);
  }
}

/* the frame, tick marks and labels, axis labels, title and notes */
static void chart_labels(cairo_t *cr, const fvl_plot_chart *c, const chart_frame *f, double X, double Y,
                         double W) {
  double fs = f->fs;
  cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
  cairo_set_line_width(cr, 1.2 * f->sc);
  cairo_rectangle(cr, f->px0, f->py0, f->px1 - f->px0, f->py1 - f->py0);
  cairo_stroke(cr);
  char buf[64];
  for (int i = 0; i < f->nxt; i++) {
    double p = ax_map(&f->ax, f->xt[i]);
    cairo_move_to(cr, p, f->py1); cairo_line_to(cr, p, f->py1 + 0.4 * fs);
    cairo_stroke(cr);
    xtick_text(c, f, i, buf, sizeof buf);
    if (*buf) text_at(cr, p, f->py1 + 0.6 * fs, buf, AL_CENTER, AL_TOP, fs, 0);
  }
  for (int i = 0; i < f->nyt; i++) {
    double p = ax_map(&f->ay, f->yt[i]);
    cairo_move_to(cr, f->px0 - 0.4 * fs, p); cairo_line_to(cr, f->px0, p);
    cairo_stroke(cr);
    if (c->ylog) pow10_label(buf, sizeof buf, (int)lround(log10(f->yt[i])));
    else tick_label(buf, sizeof buf, f->yt[i], f->ys);
    text_at(cr, f->px0 - 0.6 * fs, p, buf, AL_RIGHT, AL_MIDDLE, fs, 0);
  }
  if (c->xlabel && *c->xlabel)
    text_at(cr, (f->px0 + f->px1) / 2, f->py1 + 2.0 * fs, c->xlabel, AL_CENTER, AL_TOP, fs * 1.05, 0);
  if (c->ylabel && *c->ylabel) {
    cairo_save(cr);
    cairo_translate(cr, X + 1.0 * fs, (f->py0 + f->py1) / 2);
    cairo_rotate(cr, -M_PI / 2);
    text_at(cr, 0, 0, c->ylabel, AL_CENTER, AL_TOP, fs * 1.05, 0);
    cairo_restore(cr);
  }
  if (c->title && *c->title)
    text_at(cr, X + W / 2, Y + 0.7 * f->fts, c->title, AL_CENTER, AL_TOP, f->fts, 1);
  for (int i = 0; i < c->nnotes; i++) {
    double px = ax_map(&f->ax, c->notes[i].x), py = ax_map(&f->ay, c->notes[i].y);
    if (!isfinite(px) || !isfinite(py) || !c->notes[i].text) continue;
    cairo_set_source_rgb(cr, 0.3, 0.3, 0.3);
    text_at(cr, px, py, c->notes[i].text, AL_CENTER, AL_MIDDLE, fs * 0.95, 0);
  }
}

/* the legend box's corner (0..3: top right, top left, bottom right, bottom left) covering the
 * fewest points (a note counts as 1000) for a box of bw × bh at the corners cx, cy */
static int legend_corner(const fvl_plot_chart *c, const chart_frame *f, const double *cx, const double *cy,
                         double bw, double bh) {
  int64_t best = -1;
  int corner = 0;
  for (int k = 0; k < 4; k++) {
    int64_t cnt = 0;
    for (int s = 0; s < c->nseries; s++) {
      const fvl_plot_series *se = &c->series[s];
      int64_t stride = se->n > 4000 ? se->n / 4000 : 1;
      for (int64_t i = 0; i < se->n; i += stride) {
        double px = ax_map(&f->ax, se->x[i]), py = ax_map(&f->ay, se->y[i]);
        if (px >= cx[k] && px <= cx[k] + bw && py >= cy[k] && py <= cy[k] + bh) cnt++;
      }
    }
    for (int i = 0; i < c->nnotes; i++) {
      double px = ax_map(&f->ax, c->notes[i].x), py = ax_map(&f->ay, c->notes[i].y);
      if (px >= cx[k] - bw / 2 && px <= cx[k] + bw * 1.5 && py >= cy[k] && py <= cy[k] + bh)
        cnt += 1000;
    }
    if (best < 0 || cnt < best) { best = cnt; corner = k; }
  }
  return corner;
}

/* the legend of the labelled series (c->legend: 0 the emptiest corner, 1..4 a corner, -1 none) */
static void chart_legend(cairo_t *cr, const fvl_plot_chart *c, const chart_frame *f) {
  double fs = f->fs, sc = f->sc;
  int nleg = 0;
  double lwmax = 0;
  for (int s = 0; s < c->nseries; s++)
    if (c->series[s].label && *c->series[s].label) {
      nleg++;
      double tw = text_width(cr, c->series[s].label, fs, 0);
      if (tw > lwmax) lwmax = tw;
    }
  if (nleg == 0 || c->legend < 0) return;
  double row = 1.45 * fs, sw = 2.4 * fs, pad = 0.6 * fs;
  double bw = pad * 3 + sw + lwmax, bh = pad * 2 + row * nleg;
  double cx[4] = {f->px1 - bw - pad, f->px0 + pad, f->px1 - bw - pad, f->px0 + pad};
  double cy[4] = {f->py0 + pad, f->py0 + pad, f->py1 - bh - pad, f->py1 - bh - pad};
  int corner = c->legend >= 1 && c->legend <= 4 ? c->legend - 1 : legend_corner(c, f, cx, cy, bw, bh);
  double lx = cx[corner], ly = cy[corner];
  cairo_rectangle(cr, lx, ly, bw, bh);
  cairo_set_source_rgba(cr, 1, 1, 1, 0.88);
  cairo_fill_preserve(cr);
  cairo_set_source_rgb(cr, 0.75, 0.75, 0.75);
  cairo_set_line_width(cr, 1.0 * sc);
  cairo_stroke(cr);
  int k = 0;
  for (int s = 0; s < c->nseries; s++) {
    const fvl_plot_series *se = &c->series[s];
    if (!se->label || !*se->label) continue;
    double yy = ly + pad + row * (k + 0.5);
    set_color(cr, se->color >= 0 ? se->color : s, 1.0);
    int style = se->style ? se->style : FVL_PLOT_LINE;
    if (style & FVL_PLOT_LINE) {
      double lw = (se->width > 0 ? se->width : 2.0) * sc;
      cairo_set_line_width(cr, lw);
      set_dash(cr, se->dash, lw);
      cairo_move_to(cr, lx + pad, yy);
      cairo_line_to(cr, lx + pad + sw, yy);
      cairo_stroke(cr);
      cairo_set_dash(cr, NULL, 0, 0);
    }
    if (style & FVL_PLOT_POINTS) {
      cairo_arc(cr, lx + pad + sw / 2, yy, 3.2 * sc, 0, 2 * M_PI);
      cairo_fill(cr);
    }
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
    text_at(cr, lx + 2 * pad + sw, yy, se->label, AL_LEFT, AL_MIDDLE, fs, 0);
    k++;
  }
}

int fvl_plot_chart_draw(cairo_t *cr, double X, double Y, double W, double H,
                        const fvl_plot_chart *c) {
  if (check_chart("plot.lines", c) < 0) return -1;
  chart_frame f;
  chart_layout(c, X, Y, W, H, &f);
  cairo_save(cr);
  chart_grid(cr, c, &f);
  chart_series(cr, c, &f);
  chart_labels(cr, c, &f, X, Y, W);
  chart_legend(cr, c, &f);
  cairo_restore(cr);
  return 0;
}

static int chart_cb(cairo_t *cr, double w, double h, const void *ud) {
  return fvl_plot_chart_draw(cr, 0, 0, w, h, ud);
}

int fvl_plot_chart_save(const char *path, int width, int height, const fvl_plot_chart *c) {
  if (check_chart("plot.lines", c) < 0) return -1;
  return render_file("plot.lines", path, width, height, chart_cb, c);
}

int fvl_plot_chart_xticks(const fvl_plot_chart *c, int width, int height, char *out, size_t n) {
  if (check_chart("plot.lines", c) < 0) return -1;
  if (!out || n == 0) return fvl_err("plot.lines: xticks: no output buffer");
  chart_frame f;
  chart_layout(c, 0, 0, width, height, &f);
  size_t k = 0;
  out[0] = 0;
  for (int i = 0; i < f.nxt; i++) {
    char buf[64];
    xtick_text(c, &f, i, buf, sizeof buf);
    int w = snprintf(out + k, n - k, "%s%s", i ? "|" : "", buf);
    if (w < 0 || (size_t)w >= n - k) { k = n - 1; break; }
    k += (size_t)w;
  }
  return f.nxt;
}

/* ------------------------------------------------------------------ embedding scatter */

typedef struct { double x, y, depth; int32_t cls; } proj_t;

static int cmp_depth(const void *a, const void *b) {
  double da = ((const proj_t *)a)->depth, db = ((const proj_t *)b)->depth;
  return (da > db) - (da < db);
}

/* 3-D view: rotate by azim about z, then tilt by elev about x; screen = (x', z'), depth = y' */
static void view3(const double v[3], double az, double el, double out[3]) {
  double ca = cos(az), sa = sin(az), ce = cos(el), se = sin(el);
  double x = ca * v[0] - sa * v[1], y = sa * v[0] + ca * v[1], z = v[2];
  out[0] = x;
  out[1] = ce * y - se * z;   /* depth: larger = farther from the viewer */
  out[2] = se * y + ce * z;
}

static int check_features(const char *fn, const fvl_plot_features *f) {
  if (!f || !f->emb) return fvl_err("%s: emb must not be NULL", fn);
  if (f->dim != 2 && f->dim != 3)
    return fvl_err("%s: emb: expected N×2 or N×3 embeddings, got N×%d", fn, f->dim);
  if (f->n < 1) return fvl_err("%s: emb: expected at least one row, got 0", fn);
  for (int64_t i = 0; i < f->n * f->dim; i++)
    if (!isfinite(f->emb[i]))
      return fvl_err("%s: emb[%lld][%lld] = %g is not a finite number (0-based)", fn,
                     (long long)(i / f->dim), (long long)(i % f->dim),
                     isnan(f->emb[i]) ? fabs((double)f->emb[i]) : (double)f->emb[i]);
  if (f->labels)
    for (int64_t i = 0; i < f->n; i++)
      if (f->labels[i] < 0 || (f->nclasses > 0 && f->labels[i] >= f->nclasses))
        return fvl_err("%s: labels[%lld] = %d is outside 0..%d (0-based)", fn, (long long)i,
                       (int)f->labels[i], f->nclasses - 1);
  if (f->centres)
    for (int64_t i = 0; i < f->ncentres * f->dim; i++)
      if (!isfinite(f->centres[i]))
        return fvl_err("%s: centres[%lld][%lld] = %g is not a finite number (0-based)", fn,
                       (long long)(i / f->dim), (long long)(i % f->dim),
                       isnan(f->centres[i]) ? fabs((double)f->centres[i]) : (double)f->centres[i]);
  return 0;
}

/* class-centre rays from the origin along W_j, to just outside the circle. In 3-D the rays that
 * point away from the viewer (pass 0) go under the points, faded; the others (pass 1) on top. */
static void draw_rays(cairo_t *cr, const fvl_plot_features *f, double az, double el, double ext,
                      double cx, double cy, double u, double sc, int pass) {
  if (!f->centres) return;
  int D = f->dim;
  for (int64_t j = 0; j < f->ncentres; j++) {
    double v[3] = {f->centres[j * D], f->centres[j * D + 1], D == 3 ? f->centres[j * D + 2] : 0};
    double r = sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]);
    if (!(r > 0)) continue;
    double len = (f->normalize ? 1.12 : ext * 1.05) / r;
    for (int k = 0; k < 3; k++) v[k] *= len;
    double o[3];
    if (D == 3) view3(v, az, el, o); else { o[0] = v[0]; o[2] = v[1]; o[1] = 0; }
    int back = D == 3 && o[1] > 0;
    if (back != (pass == 0)) continue;
    double ex = cx + o[0] * u, ey = cy - o[2] * u, a = back ? 0.45 : 1.0;
    cairo_set_line_cap(cr, CAIRO_LINE_CAP_ROUND);
    cairo_set_source_rgba(cr, 0.1, 0.1, 0.1, a);   /* dark casing: the ray reads on its points */
    cairo_set_line_width(cr, 4.2 * sc);
    cairo_move_to(cr, cx, cy); cairo_line_to(cr, ex, ey);
    cairo_stroke(cr);
    set_color(cr, (int)j, a);
    cairo_set_line_width(cr, 2.4 * sc);
    cairo_move_to(cr, cx, cy); cairo_line_to(cr, ex, ey);
    cairo_stroke(cr);
    cairo_arc(cr, ex, ey, 3.6 * sc, 0, 2 * M_PI);
    cairo_fill(cr);
  }
  if (pass == 1) {
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
    cairo_arc(cr, cx, cy, 2.5 * sc, 0, 2 * M_PI);
    cairo_fill(cr);
  }
}

/* one step of the deterministic hash that jitters and shuffles the points */
static uint64_t mix(uint64_t *h) {
  *h ^= *h >> 31; *h *= 0xBF58476D1CE4E5B9ull; *h ^= *h >> 29;
  return *h;
}

/* the points projected onto the view plane (2-D as is, 3-D turned by az/el); returns the extent
 * that fixes the scale (1: the unit circle when normalised) */
static double project_points(const fvl_plot_features *f, double az, double el, uint64_t *h, proj_t *pts) {
  int D = f->dim;
  double ext = 0;
  for (int64_t i = 0; i < f->n; i++) {
    double v[3] = {f->emb[i * D], f->emb[i * D + 1], D == 3 ? f->emb[i * D + 2] : 0};
    double r = sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]);
    if (f->normalize) {
      double inv = r > 1e-12 ? 1 / r : 0;
      /* a small deterministic radial jitter shows how many points share a direction */
      mix(h);
      double jit = D == 2 ? 1.0 + 0.06 * ((double)(*h >> 11) / 9007199254740992.0 - 0.5) : 1.0;
      for (int k = 0; k < 3; k++) v[k] *= inv * jit;
    }
    double o[3];
    if (D == 3) view3(v, az, el, o); else { o[0] = v[0]; o[1] = 0; o[2] = v[1]; }
    pts[i].x = o[0]; pts[i].y = o[2]; pts[i].depth = D == 3 ? o[1] : 0;
    pts[i].cls = f->labels ? f->labels[i] : 0;
    double e = f->normalize ? 1.0 : (D == 3 ? sqrt(o[0] * o[0] + o[2] * o[2]) : fmax(fabs(o[0]), fabs(o[2])));
    if (e > ext) ext = e;
  }
  return ext > 0 ? ext : 1;
}

/* guides: the axes, the unit circle / sphere outline with its equator */
static void draw_guides(cairo_t *cr, const fvl_plot_features *f, double el, double ext, double R, double cx,
                        double cy, double u, double sc) {
  cairo_set_line_width(cr, 1.0 * sc);
  cairo_set_source_rgb(cr, 0.85, 0.85, 0.85);
  cairo_move_to(cr, cx - R * u, cy); cairo_line_to(cr, cx + R * u, cy);
  cairo_move_to(cr, cx, cy - R * u); cairo_line_to(cr, cx, cy + R * u);
  cairo_stroke(cr);
  if (!f->normalize && f->dim != 3) return;
  double rr = f->normalize ? 1.0 : ext;
  cairo_set_source_rgb(cr, 0.6, 0.6, 0.6);
  cairo_arc(cr, cx, cy, rr * u, 0, 2 * M_PI);
  cairo_stroke(cr);
  if (f->dim == 3) { /* equator as an ellipse */
    cairo_save(cr);
    cairo_translate(cr, cx, cy);
    cairo_scale(cr, 1.0, fabs(sin(el)) + 1e-6);
    cairo_arc(cr, 0, 0, rr * u, 0, 2 * M_PI);
    cairo_restore(cr);
    cairo_set_source_rgb(cr, 0.8, 0.8, 0.8);
    cairo_stroke(cr);
  }
}

/* the points: far side first (3-D), otherwise in a fixed shuffle so no class hides another */
static void draw_points(cairo_t *cr, const fvl_plot_features *f, proj_t *pts, uint64_t *h, double cx, double cy,
                        double u, double sc) {
  int D = f->dim;
  if (D == 3) qsort(pts, (size_t)f->n, sizeof *pts, cmp_depth);
  else
    for (int64_t i = f->n - 1; i > 0; i--) {
      int64_t j = (int64_t)(mix(h) % (uint64_t)(i + 1));
      proj_t t = pts[i]; pts[i] = pts[j]; pts[j] = t;
    }
  double pr = (f->point_size > 0 ? f->point_size : 2.2) * sc;
  double alpha = f->alpha > 0 ? f->alpha : 0.55;
  for (int64_t i = 0; i < f->n; i++) {
    double a = alpha;
    double r = pr;
    if (D == 3 && pts[i].depth > 0) { a *= 0.35; r *= 0.8; }   /* behind the sphere */
    set_color(cr, pts[i].cls, a);
    cairo_arc(cr, cx + pts[i].x * u, cy - pts[i].y * u, r, 0, 2 * M_PI);
    cairo_fill(cr);
  }
}

/* the legend's label of class k (0-based): its name, else "class k+1" written into buf */
static const char *class_name(const fvl_plot_features *f, int k, char *buf, size_t cap) {
  if (f->names && f->names[k]) return f->names[k];
  snprintf(buf, cap, "class %d", k + 1);
  return buf;
}

/* the legend column at (lx, ly): nleg of the nc classes, "… n more", the centre ray, the space */
static void draw_legend(cairo_t *cr, const fvl_plot_features *f, int nc, int nleg, double lx, double ly,
                        double fs, double sc) {
  double row = 1.4 * fs;
  char name[64];
  for (int k = 0; k < nleg; k++) {
    const char *s = class_name(f, k, name, sizeof name);
    set_color(cr, k, 1.0);
    cairo_arc(cr, lx + 0.5 * fs, ly + row * (k + 0.5), 0.38 * fs, 0, 2 * M_PI);
    cairo_fill(cr);
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
    text_at(cr, lx + 1.4 * fs, ly + row * (k + 0.5), s, AL_LEFT, AL_MIDDLE, fs, 0);
  }
  double yy = ly + row * (nleg + 0.5);
  if (nc > nleg) {
    snprintf(name, sizeof name, "… %d more", nc - nleg);
    text_at(cr, lx + 1.4 * fs, yy, name, AL_LEFT, AL_MIDDLE, fs, 0);
    yy += row;
  }
  if (f->centres) {
    yy += 0.4 * row;
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
    cairo_set_line_width(cr, 3.0 * sc);
    cairo_move_to(cr, lx, yy); cairo_line_to(cr, lx + 1.1 * fs, yy);
    cairo_stroke(cr);
    text_at(cr, lx + 1.4 * fs, yy, "class centre W", AL_LEFT, AL_MIDDLE, fs, 0);
    yy += row;
  }
  cairo_set_source_rgb(cr, 0.35, 0.35, 0.35);
  const char *what = f->normalize ? (f->dim == 3 ? "x/|x| on the unit sphere" : "x/|x| on the unit circle")
                                  : "raw features";
  text_at(cr, lx, yy + 0.2 * row, what, AL_LEFT, AL_MIDDLE, fs * 0.85, 0);
}

int fvl_plot_features_draw(cairo_t *cr, double X, double Y, double W, double H,
                           const fvl_plot_features *f) {
  const char *fn = "plot.features";
  if (check_features(fn, f) < 0) return -1;
  int nc = f->nclasses;
  if (nc <= 0) {
    nc = 1;
    if (f->labels) for (int64_t i = 0; i < f->n; i++) if (f->labels[i] + 1 > nc) nc = f->labels[i] + 1;
  }
  if (f->centres && f->ncentres > nc) nc = (int)f->ncentres;
  double sc = sqrt(W * H / (800.0 * 600.0));
  if (sc < 0.6) sc = 0.6;
  if (sc > 2.5) sc = 2.5;
  double fs = 13 * sc, fts = 16 * sc;
  double az = f->azim * M_PI / 180, el = f->elev * M_PI / 180;
  proj_t *pts = malloc((size_t)f->n * sizeof *pts);
  if (!pts) return fvl_err("%s: out of memory for %lld points", fn, (long long)f->n);
  uint64_t h = 0x9E3779B97F4A7C15ull;
  double ext = project_points(f, az, el, &h, pts);
  double R = f->normalize ? 1.22 : ext * 1.12;   /* half-width of the view in data units */
  /* layout: square plot on the left, legend column on the right */
  double top = f->title && *f->title ? 2.4 * fts : 0.8 * fts;
  int nleg = nc > 24 ? 24 : nc;
  double legw = 0;
  char name[64];
  for (int k = 0; k < nleg; k++) {
    double tw = text_width(cr, class_name(f, k, name, sizeof name), fs, 0);
    if (tw > legw) legw = tw;
  }
  double tw2 = text_width(cr, "class centre W", fs, 0);
  if (f->centres && tw2 > legw) legw = tw2;
  legw += 3.2 * fs;
  double side = fmin(W - legw - 1.5 * fs, H - top - 0.8 * fs);
  if (side < 50) side = fmin(W, H - top);
  double cx = X + 0.8 * fs + side / 2, cy = Y + top + side / 2;
  double u = side / (2 * R);
  cairo_save(cr);
  draw_guides(cr, f, el, ext, R, cx, cy, u, sc);
  draw_rays(cr, f, az, el, ext, cx, cy, u, sc, 0);
  draw_points(cr, f, pts, &h, cx, cy, u, sc);
  free(pts);
  draw_rays(cr, f, az, el, ext, cx, cy, u, sc, 1);
  draw_legend(cr, f, nc, nleg, cx + side / 2 + 1.2 * fs, Y + top + 0.5 * fs, fs, sc);
  if (f->title && *f->title) {
    cairo_set_source_rgb(cr, 0, 0, 0);
    text_at(cr, X + W / 2, Y + 0.7 * fts, f->title, AL_CENTER, AL_TOP, fts, 1);
  }
  cairo_restore(cr);
  return 0;
}

static int features_cb(cairo_t *cr, double w, double h, const void *ud) {
  return fvl_plot_features_draw(cr, 0, 0, w, h, ud);
}

int fvl_plot_features_save(const char *path, int width, int height, const fvl_plot_features *f) {
  if (check_features("plot.features", f) < 0) return -1;
  return render_file("plot.features", path, width, height, features_cb, f);
}

/* ------------------------------------------------------------------ animated GIF frames
 * (the encoder is plot_gif.c) */
int fvl_plot_gif_add_features(fvl_plot_gif *g, const fvl_plot_features *f) {
  if (check_features("plot.animation", f) < 0) return -1;
  return fvl_plot_gif_add_drawn(g, features_cb, f);
}

int fvl_plot_gif_add_chart(fvl_plot_gif *g, const fvl_plot_chart *c) {
  if (check_chart("plot.animation", c) < 0) return -1;
  return fvl_plot_gif_add_drawn(g, chart_cb, c);
}

/* ------------------------------------------------------------------ contour */

/* Edges: horizontal h(i,j) between (i,j)-(i+1,j): id = j*(nx-1)+i; vertical v(i,j) between
 * (i,j)-(i,j+1): id = H + j*nx + i. Each edge touches at most two cells, so each contour
 * point has at most two segments: the segments join into chains by walking that graph. */
typedef struct { int64_t a, b; } seg_t;

/* the tracer's state: the grid z (nx × ny, minus level), the edges' crossing points ex/ey, the
 * segments and, per edge, the (at most two) segments that touch it */
typedef struct {
  const double *z;
  int nx, ny;
  double level;
  int64_t H;                 /* the number of horizontal edges (vertical ids start there) */
  double *ex, *ey;
  seg_t *seg;
  int64_t ns, *adj;
  char *used;
} contour_t;

#define Z(c, i, j) ((c)->z[(int64_t)(j) * (c)->nx + (i)] - (c)->level)

/* where the level crosses each edge (linear interpolation between its ends) */
static void crossing_points(contour_t *c, double x0, double x1, double y0, double y1) {
  int nx = c->nx, ny = c->ny;
  double dx = (x1 - x0) / (nx - 1), dy = (y1 - y0) / (ny - 1);
  for (int j = 0; j < ny; j++)
    for (int i = 0; i + 1 < nx; i++) {
      double a = Z(c, i, j), b = Z(c, i + 1, j);
      int64_t e = (int64_t)j * (nx - 1) + i;
      if (isfinite(a) && isfinite(b) && (a >= 0) != (b >= 0)) {
        c->ex[e] = x0 + (i + a / (a - b)) * dx; c->ey[e] = y0 + j * dy;
      }
    }
  for (int j = 0; j + 1 < ny; j++)
    for (int i = 0; i < nx; i++) {
      double a = Z(c, i, j), b = Z(c, i, j + 1);
      int64_t e = c->H + (int64_t)j * nx + i;
      if (isfinite(a) && isfinite(b) && (a >= 0) != (b >= 0)) {
        c->ex[e] = x0 + i * dx; c->ey[e] = y0 + (j + a / (a - b)) * dy;
      }
    }
}

/* the segments of cell (i, j) (marching squares: 0, 1 or 2 joining its crossed edges), added to
 * c->seg and to the adjacency of their edges */
static void cell_segments(contour_t *c, int i, int j) {
  int nx = c->nx;
  double v00 = Z(c, i, j), v10 = Z(c, i + 1, j);
  double v01 = Z(c, i, j + 1), v11 = Z(c, i + 1, j + 1);
  if (!isfinite(v00) || !isfinite(v10) || !isfinite(v01) || !isfinite(v11)) return;
  int code = (v00 >= 0) | (v10 >= 0) << 1 | (v11 >= 0) << 2 | (v01 >= 0) << 3;
  if (code == 0 || code == 15) return;
  int64_t eb = (int64_t)j * (nx - 1) + i, et = (int64_t)(j + 1) * (nx - 1) + i;
  int64_t el = c->H + (int64_t)j * nx + i, er = el + 1;
  int64_t s[4];
  int k = 0;
  switch (code) {
    case 1: case 14: s[0] = el; s[1] = eb; k = 2; break;
    case 2: case 13: s[0] = eb; s[1] = er; k = 2; break;
    case 3: case 12: s[0] = el; s[1] = er; k = 2; break;
    case 4: case 11: s[0] = er; s[1] = et; k = 2; break;
    case 6: case 9:  s[0] = eb; s[1] = et; k = 2; break;
    case 7: case 8:  s[0] = el; s[1] = et; k = 2; break;
    case 5: case 10: { /* saddle: decide by the centre value */
      int centre = (v00 + v10 + v01 + v11) / 4 >= 0;
      if ((code == 5) == centre) { s[0] = el; s[1] = et; s[2] = eb; s[3] = er; }
      else { s[0] = el; s[1] = eb; s[2] = er; s[3] = et; }
      k = 4;
      break;
    }
  }
  for (int q = 0; q < k; q += 2) {
    c->seg[c->ns].a = s[q]; c->seg[c->ns].b = s[q + 1];
    for (int w = 0; w < 2; w++) {
      int64_t e = w ? s[q + 1] : s[q];
      if (c->adj[2 * e] < 0) c->adj[2 * e] = c->ns; else c->adj[2 * e + 1] = c->ns;
    }
    c->ns++;
  }
}
#undef Z

/* walks the segments into chains, open ends first (edges with one segment), then closed loops;
 * writes up to cap points into xy (NaN, NaN between chains) and returns how many there are */
static int64_t walk_chains(contour_t *c, double *xy, int64_t cap) {
  int64_t out = 0;
#define EMIT(px, py) do { if (xy && out < cap) { xy[2 * out] = (px); xy[2 * out + 1] = (py); } out++; } while (0)
  const seg_t *seg = c->seg;
  const int64_t *adj = c->adj;
  for (int pass = 0; pass < 2; pass++)
    for (int64_t s0 = 0; s0 < c->ns; s0++) {
      if (c->used[s0]) continue;
      int64_t start;
      if (pass == 0) {
        int ea = adj[2 * seg[s0].a + 1] < 0, eb2 = adj[2 * seg[s0].b + 1] < 0;
        if (!ea && !eb2) continue;
        start = ea ? seg[s0].a : seg[s0].b;
      } else start = seg[s0].a;
      if (out > 0) EMIT(NAN, NAN);
      EMIT(c->ex[start], c->ey[start]);
      int64_t cur = s0, e = start;
      while (cur >= 0 && !c->used[cur]) {
        c->used[cur] = 1;
        e = seg[cur].a == e ? seg[cur].b : seg[cur].a;
        EMIT(c->ex[e], c->ey[e]);
        int64_t n0 = adj[2 * e], n1 = adj[2 * e + 1];
        cur = n0 == cur ? n1 : n0;
      }
    }
#undef EMIT
  return out;
}

int64_t fvl_plot_contour(const double *z, int nx, int ny, double x0, double x1, double y0,
                         double y1, double level, double *xy, int64_t cap) {
  const char *fn = "contour";
  if (!z) return fvl_err("%s: z must not be NULL", fn);
  if (nx < 2 || ny < 2) return fvl_err("%s: expected a grid of at least 2x2, got %dx%d", fn, nx, ny);
  contour_t c = {.z = z, .nx = nx, .ny = ny, .level = level};
  c.H = (int64_t)(nx - 1) * ny;
  int64_t NE = c.H + (int64_t)nx * (ny - 1);
  int64_t ncell = (int64_t)(nx - 1) * (ny - 1);
  c.seg = malloc((size_t)(2 * ncell + 1) * sizeof *c.seg);
  c.adj = malloc((size_t)NE * 2 * sizeof *c.adj);
  c.ex = malloc((size_t)NE * sizeof *c.ex);
  c.ey = malloc((size_t)NE * sizeof *c.ey);
  c.used = calloc((size_t)(2 * ncell + 1), 1);
  int64_t out = -1;
  if (!c.seg || !c.adj || !c.ex || !c.ey || !c.used) {
    fvl_err("%s: out of memory for a %dx%d grid", fn, nx, ny);
    goto done;
  }
  for (int64_t e = 0; e < 2 * NE; e++) c.adj[e] = -1;
  crossing_points(&c, x0, x1, y0, y1);
  for (int j = 0; j + 1 < ny; j++)
    for (int i = 0; i + 1 < nx; i++) cell_segments(&c, i, j);
  out = walk_chains(&c, xy, cap);
  if (xy && out > cap) out = fvl_err("%s: xy holds %lld points, %lld needed", fn, (long long)cap, (long long)out);
done:
  free(c.seg); free(c.adj); free(c.ex); free(c.ey); free(c.used);
  return out;
}

/* ------------------------------------------------------------------ sheets */

typedef struct {
  const fvl_plot_panel *panels;
  cairo_surface_t **img;
  int n, cols, rows, cw, ch, caption;
  const char *title;
  double title_h;
} sheet_t;

static int sheet_cb(cairo_t *cr, double w, double h, const void *ud) {
  const sheet_t *s = ud;
  (void)h;
  double fs = 18, cap = s->caption ? 30 : 0;
  if (s->title && *s->title) {
    cairo_set_source_rgb(cr, 0, 0, 0);
    text_at(cr, w / 2, 14, s->title, AL_CENTER, AL_TOP, 24, 1);
  }
  for (int i = 0; i < s->n; i++) {
    int r = i / s->cols, c = i % s->cols;
    double x = c * s->cw, y = s->title_h + r * (s->ch + cap);
    if (s->panels[i].title && *s->panels[i].title) {
      cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
      text_at(cr, x + s->cw / 2.0, y + 7, s->panels[i].title, AL_CENTER, AL_TOP, fs, 1);
    }
    int iw = cairo_image_surface_get_width(s->img[i]), ih = cairo_image_surface_get_height(s->img[i]);
    double k = fmin((double)s->cw / iw, (double)s->ch / ih);
    cairo_save(cr);
    cairo_translate(cr, x + (s->cw - iw * k) / 2, y + cap + (s->ch - ih * k) / 2);
    cairo_scale(cr, k, k);
    cairo_set_source_surface(cr, s->img[i], 0, 0);
    cairo_pattern_set_filter(cairo_get_source(cr), CAIRO_FILTER_GOOD);
    cairo_paint(cr);
    cairo_restore(cr);
  }
  return 0;
}

int fvl_plot_sheet(const char *path, const fvl_plot_panel *panels, int n, int cols,
                   const char *title, int cell_w, int cell_h) {
  const char *fn = "plot.sheet";
  if (n < 1 || !panels) return fvl_err("%s: panels: expected at least one panel, got %d", fn, n);
  cairo_surface_t **img = calloc((size_t)n, sizeof *img);
  if (!img) return fvl_err("%s: out of memory", fn);
  int rc = 0, mw = 0, mh = 0, caption = 0;
  for (int i = 0; i < n; i++) {
    if (!panels[i].file) { rc = fvl_err("%s: panels[%d]: expected a PNG file name (0-based)", fn, i); break; }
    if (strcasecmp(fvl_plot_ext_of(panels[i].file), "png") != 0) {
      rc = fvl_err("%s: panels[%d] '%s': expected a .png file (0-based)", fn, i, panels[i].file);
      break;
    }
    img[i] = cairo_image_surface_create_from_png(panels[i].file);
    cairo_status_t st = cairo_surface_status(img[i]);
    if (st != CAIRO_STATUS_SUCCESS) {
      rc = fvl_err("%s: '%s' (panels[%d], 0-based): cannot read the PNG (%s)", fn, panels[i].file, i,
                   access(panels[i].file, R_OK) != 0 ? strerror(errno) : cairo_status_to_string(st));
      break;
    }
    int w = cairo_image_surface_get_width(img[i]), h = cairo_image_surface_get_height(img[i]);
    if (w > mw) mw = w;
    if (h > mh) mh = h;
    if (panels[i].title && *panels[i].title) caption = 1;
  }
  if (rc == 0) {
    if (cols <= 0) cols = (int)ceil(sqrt((double)n));
    if (cols > n) cols = n;
    sheet_t s = {panels, img, n, cols, (n + cols - 1) / cols, cell_w > 0 ? cell_w : mw,
                 cell_h > 0 ? cell_h : mh, caption, title, title && *title ? 56 : 0};
    double W = (double)s.cols * s.cw, Hh = s.title_h + s.rows * (s.ch + (caption ? 30 : 0));
    if (W > 16384 || Hh > 16384)
      rc = fvl_err("%s: the sheet would be %.0fx%.0f pixels (at most 16384 a side): use fewer "
                   "columns or smaller panels", fn, W, Hh);
    else rc = render_file(fn, path, (int)W, (int)Hh, sheet_cb, &s);
  }
  for (int i = 0; i < n; i++) if (img[i]) cairo_surface_destroy(img[i]);
  free(img);
  return rc;
}
