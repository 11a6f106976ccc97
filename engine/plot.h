/* plot.h — pictures with cairo: line charts (ROC, training curves, decision boundaries),
 * 2-D/3-D embedding scatters on the unit circle/sphere with class-centre rays, zero-level
 * contours (marching squares) and sheets that tile several panels into one image.
 *
 * Output format follows the file name: .png, .svg or .pdf. Files are written atomically
 * (path.tmp.<pid>, fsync, rename). Every function returns 0 / -1 with the message in
 * fvl_errmsg(). Each picture is also available as a *_draw function that renders into a
 * rectangle of any cairo context, so a sheet can hold vector panels. */
#ifndef FVL_PLOT_H
#define FVL_PLOT_H
#include <stdint.h>
#include <stddef.h>

typedef struct _cairo cairo_t;

/* ---- line charts ---- */
enum { FVL_PLOT_LINE = 1, FVL_PLOT_POINTS = 2 };
enum { FVL_DASH_SOLID = 0, FVL_DASH_DASHED = 1, FVL_DASH_DOTTED = 2 };

typedef struct fvl_plot_series {
  const char *label;      /* legend text; NULL or "" keeps it out of the legend */
  const double *x, *y;    /* n points; a NaN in x or y breaks the line */
  int64_t n;
  int color;              /* palette index; -1: the series' position */
  int style;              /* FVL_PLOT_LINE and/or FVL_PLOT_POINTS (0 = line) */
  int dash;               /* FVL_DASH_* */
  double width;           /* line width in px at 800x600 (0 = 2) */
} fvl_plot_series;

typedef struct fvl_plot_note { double x, y; const char *text; } fvl_plot_note;

typedef struct fvl_plot_chart {
  const char *title, *xlabel, *ylabel;
  int xlog, ylog;                 /* log10 axes; non-positive values are skipped */
  double xmin, xmax, ymin, ymax;  /* NaN: from the data */
  double xstep, ystep;            /* tick spacing on linear axes; 0: automatic */
  int equal;                      /* one unit is as long on both axes */
  int diagonal;                   /* draw y = x as a grey dotted reference */
  int legend;                     /* 0: automatic corner, -1: none, 1..4: TR, TL, BR, BL */
  const fvl_plot_series *series;
  int nseries;
  const fvl_plot_note *notes;     /* text placed at data coordinates (centred) */
  int nnotes;
  /* a categorical x axis: the ticks are x = 1..nxnames, labelled xnames[0..nxnames-1] (NULL entries
   * unlabelled) instead of numbers; 0: numbers */
  const char *const *xnames;
  int nxnames;
} fvl_plot_chart;

/* a chart with every range NaN, steps 0, legend automatic */
void fvl_plot_chart_init(fvl_plot_chart *c);
int fvl_plot_chart_draw(cairo_t *cr, double x, double y, double w, double h,
                        const fvl_plot_chart *c);
int fvl_plot_chart_save(const char *path, int width, int height, const fvl_plot_chart *c);
/* the x tick labels the chart draws at width × height, joined by '|' into out (truncated to n);
 * returns the number of ticks, -1 + message (what the tests read instead of pixels) */
int fvl_plot_chart_xticks(const fvl_plot_chart *c, int width, int height, char *out, size_t n);

/* ---- embedding scatter ---- */
typedef struct fvl_plot_features {
  const float *emb;            /* n × dim (dim 2 or 3), row-major */
  int64_t n;
  int dim;
  const int32_t *labels;       /* n, 0-based; NULL: one class */
  int nclasses;                /* 0: 1 + max label */
  const float *centres;        /* ncentres × dim or NULL: class-centre rays */
  int64_t ncentres;
  const char *const *names;    /* nclasses legend names or NULL ("class 1", ...) */
  const char *title;
  int normalize;               /* 1: points on the unit circle/sphere (default in Lua) */
  double elev, azim;           /* 3-D view in degrees */
  double point_size;           /* radius in px at 800x600 (0 = 2.2) */
  double alpha;                /* point opacity (0 = 0.55) */
} fvl_plot_features;

int fvl_plot_features_draw(cairo_t *cr, double x, double y, double w, double h,
                           const fvl_plot_features *f);
int fvl_plot_features_save(const char *path, int width, int height, const fvl_plot_features *f);

/* ---- zero-level contour of a grid (marching squares, segments joined into polylines) ----
 * z: ny rows × nx columns, z[j*nx + i] at x = x0 + i(x1-x0)/(nx-1), y = y0 + j(y1-y0)/(ny-1).
 * Writes the polylines of {z = level} into xy (pairs x,y), separated by a (NaN, NaN) pair.
 * Returns the number of pairs written, or -1; with xy == NULL returns the number needed.
 * Cells with a NaN corner are skipped. */
int64_t fvl_plot_contour(const double *z, int nx, int ny, double x0, double x1, double y0,
                         double y1, double level, double *xy, int64_t cap);

/* ---- sheets ---- */
typedef struct fvl_plot_panel {
  const char *file;            /* a PNG file */
  const char *title;           /* caption above the panel or NULL */
} fvl_plot_panel;
/* cols <= 0: ceil(sqrt(n)). cell_w/cell_h <= 0: the largest panel. */
int fvl_plot_sheet(const char *path, const fvl_plot_panel *panels, int n, int cols,
                   const char *title, int cell_w, int cell_h);

/* ---- animated GIF (e.g. 2-D features during training) ----
 * open → add frames → close (atomic: the .gif appears at close). abort drops it. */
typedef struct fvl_plot_gif fvl_plot_gif;
fvl_plot_gif *fvl_plot_gif_open(const char *path, int width, int height, double delay_s, int loop);
int fvl_plot_gif_add_features(fvl_plot_gif *g, const fvl_plot_features *f);
int fvl_plot_gif_add_chart(fvl_plot_gif *g, const fvl_plot_chart *c);
int fvl_plot_gif_frames(const fvl_plot_gif *g);
int fvl_plot_gif_close(fvl_plot_gif *g);   /* frees g; -1 if the file could not be written */
void fvl_plot_gif_abort(fvl_plot_gif *g);  /* frees g and removes the temporary file */

/* the palette colour i (any i >= 0) as r, g, b in 0..1 */
void fvl_plot_color(int i, double rgb[3]);
#endif
