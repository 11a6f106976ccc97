/* plot_gif.c — animated GIFs behind fvl_plot_gif_* (see plot.h): frames drawn by cairo, mapped
 * to one palette that keeps the plots' colours, encoded by giflib, written atomically at close. */
#include "plot.h"
#include "plot_gif.h"
#include <cairo.h>
#include <errno.h>
#include <math.h>
#include <strings.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core.h"
#include "sys.h"

/* GIF89a through giflib (Debian libgif-dev). One global 256-colour palette that keeps the plots'
 * own colours: the class/series colours of fvl_plot_color (exact, and blended with white at the
 * alphas the scatter and band fills use), 32 greys (text, axes, grid), then a 5×5×5 colour cube
 * for everything else (anti-aliased edges). Frames are rendered by cairo, each pixel mapped to its
 * nearest palette entry through a lazily filled 2^18-entry table (6 bits per primary), and
 * written with giflib's LZW encoder into the one atomic-file mechanism of sys.h (path.tmp.<pid>,
 * fsync, rename and directory fsync at close; abort or an error removes the temporary). */
#include <gif_lib.h>

#define GIF_SERIES 20              /* fvl_plot_color(0..19) */
#define GIF_TINTS 4                /* each series colour: exact + 3 blends with white */
#define GIF_GREYS 32
#define GIF_LUT (1 << 18)

struct fvl_plot_gif {
  fvl_atomic_file out;  /* out.f is open from open until close/abort */
  GifFileType *gif;
  int w, h, frames, delay_cs;
  uint32_t *argb;       /* w*h frame */
  GifPixelType *idx;    /* w*h palette indices */
  GifPixelType *prev;   /* the previous frame's indices: later frames store the changed box only */
  GifColorType pal[256];
  int npal;
  uint8_t *lut;         /* 6-bit RGB → palette index + 1 (0: not computed yet) */
};

static void pal_add(fvl_plot_gif *g, double r, double gr, double b) {
  if (g->npal >= 256) return;
  GifColorType *c = &g->pal[g->npal++];
  c->Red = (GifByteType)lround(fmin(fmax(r, 0), 1) * 255);
  c->Green = (GifByteType)lround(fmin(fmax(gr, 0), 1) * 255);
  c->Blue = (GifByteType)lround(fmin(fmax(b, 0), 1) * 255);
}

static void gif_palette(fvl_plot_gif *g) {
  static const double tint[GIF_TINTS] = {1.0, 0.7, 0.45, 0.2};   /* share of the colour over white */
  g->npal = 0;
  pal_add(g, 1, 1, 1);                                  /* 0: white, the background */
  pal_add(g, 0, 0, 0);                                  /* 1: black */
  for (int i = 0; i < GIF_SERIES; i++) {
    double c[3];
    fvl_plot_color(i, c);
    for (int t = 0; t < GIF_TINTS; t++)
      pal_add(g, 1 - tint[t] * (1 - c[0]), 1 - tint[t] * (1 - c[1]), 1 - tint[t] * (1 - c[2]));
  }
  for (int i = 1; i <= GIF_GREYS; i++) {
    double v = (double)i / (GIF_GREYS + 1);
    pal_add(g, v, v, v);
  }
  for (int r = 0; r < 5 && g->npal < 256; r++)
    for (int gg = 0; gg < 5 && g->npal < 256; gg++)
      for (int b = 0; b < 5 && g->npal < 256; b++) pal_add(g, r / 4.0, gg / 4.0, b / 4.0);
  while (g->npal < 256) pal_add(g, 1, 1, 1);            /* unused entries */
}

/* nearest palette entry (squared RGB distance, weighted toward green as the eye is) */
static GifPixelType gif_nearest(const fvl_plot_gif *g, int r, int gr, int b) {
  int best = 0;
  long bd = -1;
  for (int k = 0; k < g->npal; k++) {
    long dr = r - g->pal[k].Red, dg = gr - g->pal[k].Green, db = b - g->pal[k].Blue;
    long d = 2 * dr * dr + 4 * dg * dg + 3 * db * db;
    if (bd < 0 || d < bd) { bd = d; best = k; }
  }
  return (GifPixelType)best;
}

static GifPixelType gif_map(fvl_plot_gif *g, uint32_t p) {
  int r = (p >> 16) & 0xFF, gr = (p >> 8) & 0xFF, b = p & 0xFF;
  int key = (r >> 2) << 12 | (gr >> 2) << 6 | (b >> 2);
  uint8_t v = g->lut[key];
  if (v) return (GifPixelType)(v - 1);
  /* the bucket's colour: exact palette colours map to themselves (their bucket holds them) */
  GifPixelType k = gif_nearest(g, r, gr, b);
  g->lut[key] = (uint8_t)(k + 1);
  return k;
}

static int gif_write(GifFileType *gif, const GifByteType *buf, int n) {
  FILE *f = gif->UserData;
  return (int)fwrite(buf, 1, (size_t)n, f);
}

static void gif_free(fvl_plot_gif *g) {
  free(g->argb); free(g->idx); free(g->prev); free(g->lut); free(g);
}

fvl_plot_gif *fvl_plot_gif_open(const char *path, int w, int h, double delay_s, int loop) {
  const char *fn = "plot.animation";
  if (!path || strcasecmp(fvl_plot_ext_of(path), "gif") != 0) {
    fvl_err("%s: file '%s': expected a name ending in .gif", fn, path ? path : "(none)");
    return NULL;
  }
  if (w < 16 || h < 16 || w > 4096 || h > 4096) {
    fvl_err("%s: size: expected 16..4096 pixels a side, got %dx%d", fn, w, h);
    return NULL;
  }
  if (!(delay_s >= 0.01 && delay_s <= 600)) {
    fvl_err("%s: delay: expected 0.01..600 seconds per frame, got %g", fn, delay_s);
    return NULL;
  }
  fvl_plot_gif *g = calloc(1, sizeof *g);
  if (!g) { fvl_err("%s: out of memory", fn); return NULL; }
  g->w = w; g->h = h;
  g->delay_cs = (int)lround(delay_s * 100);
  g->argb = malloc((size_t)w * h * 4);
  g->idx = malloc((size_t)w * h);
  g->prev = malloc((size_t)w * h);
  g->lut = calloc(GIF_LUT, 1);
  if (!g->argb || !g->idx || !g->prev || !g->lut) {
    fvl_err("%s: out of memory", fn);
    gif_free(g);
    return NULL;
  }
  if (fvl_atomic_open(&g->out, path, fn) < 0) {   /* errno tells why (as plot.c's files) */
    fvl_err("%s: cannot write '%s': %s", fn, path, strerror(errno));
    gif_free(g);
    return NULL;
  }
  gif_palette(g);
  int err = 0;
  g->gif = EGifOpen(g->out.f, gif_write, &err);
  ColorMapObject *cmap = g->gif ? GifMakeMapObject(256, g->pal) : NULL;
  int ok = g->gif && cmap;
  if (ok) {
    EGifSetGifVersion(g->gif, true);
    ok = EGifPutScreenDesc(g->gif, w, h, 8, 0, cmap) == GIF_OK;
  }
  if (ok && loop >= 0) {   /* NETSCAPE2.0: repeat count (0 = for ever) */
    GifByteType sub[3] = {1, (GifByteType)(loop & 0xFF), (GifByteType)((loop >> 8) & 0xFF)};
    ok = EGifPutExtensionLeader(g->gif, APPLICATION_EXT_FUNC_CODE) == GIF_OK &&
         EGifPutExtensionBlock(g->gif, 11, "NETSCAPE2.0") == GIF_OK &&
         EGifPutExtensionBlock(g->gif, 3, sub) == GIF_OK && EGifPutExtensionTrailer(g->gif) == GIF_OK;
  }
  GifFreeMapObject(cmap);
  if (!ok) {
    int e = g->gif ? g->gif->Error : err;
    fvl_err("%s: cannot write '%s': %s", fn, path, GifErrorString(e) ? GifErrorString(e) : "giflib error");
    if (g->gif) EGifCloseFile(g->gif, &err);
    fvl_atomic_abort(&g->out);
    gif_free(g);
    return NULL;
  }
  return g;
}

int fvl_plot_gif_frames(const fvl_plot_gif *g) { return g ? g->frames : 0; }

int fvl_plot_gif_add_drawn(fvl_plot_gif *g, fvl_plot_draw_fn draw, const void *ud) {
  const char *fn = "plot.animation";
  if (!g || !g->out.f) return fvl_err("%s: the animation is closed", fn);
  cairo_surface_t *sf = cairo_image_surface_create_for_data((unsigned char *)g->argb, CAIRO_FORMAT_RGB24,
                                                            g->w, g->h, g->w * 4);
  cairo_t *cr = cairo_create(sf);
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);
  int rc = draw(cr, g->w, g->h, ud);
  cairo_status_t st = cairo_status(cr);
  cairo_destroy(cr);
  cairo_surface_flush(sf);
  cairo_surface_destroy(sf);
  if (rc < 0) return -1;
  if (st != CAIRO_STATUS_SUCCESS) return fvl_err("%s: cannot render: %s", fn, cairo_status_to_string(st));
  int64_t n = (int64_t)g->w * g->h;
  for (int64_t i = 0; i < n; i++) g->idx[i] = gif_map(g, g->argb[i]);   /* the table fills once */
  /* the box of pixels that differ from the previous frame (the whole frame first): frames are
     left in place (disposal "do not dispose"), so the axes and labels are stored once */
  int x0 = 0, y0 = 0, x1 = g->w - 1, y1 = g->h - 1;
  if (g->frames > 0) {
    x0 = g->w; y0 = g->h; x1 = -1; y1 = -1;
    for (int r = 0; r < g->h; r++)
      for (int c = 0; c < g->w; c++)
        if (g->idx[(size_t)r * g->w + c] != g->prev[(size_t)r * g->w + c]) {
          if (c < x0) x0 = c;
          if (c > x1) x1 = c;
          if (r < y0) y0 = r;
          y1 = r;
        }
    if (x1 < 0) x0 = y0 = x1 = y1 = 0;   /* unchanged: one pixel, the frame only holds the time */
  }
  GraphicsControlBlock gcb = {DISPOSE_DO_NOT, false, g->delay_cs, NO_TRANSPARENT_COLOR};
  GifByteType ext[4];
  size_t len = EGifGCBToExtension(&gcb, ext);
  int bw = x1 - x0 + 1, bh = y1 - y0 + 1;
  int ok = EGifPutExtension(g->gif, GRAPHICS_EXT_FUNC_CODE, (int)len, ext) == GIF_OK &&
           EGifPutImageDesc(g->gif, x0, y0, bw, bh, false, NULL) == GIF_OK;
  for (int r = y0; ok && r <= y1; r++) ok = EGifPutLine(g->gif, g->idx + (size_t)r * g->w + x0, bw) == GIF_OK;
  memcpy(g->prev, g->idx, (size_t)g->w * g->h);
  if (!ok || ferror(g->out.f)) {
    const char *why = !ok && GifErrorString(g->gif->Error) ? GifErrorString(g->gif->Error) : strerror(errno);
    return fvl_err("%s: cannot write '%s': %s", fn, g->out.path, why);
  }
  g->frames++;
  return 0;
}


int fvl_plot_gif_close(fvl_plot_gif *g) {
  const char *fn = "plot.animation";
  if (!g) return 0;
  int rc = 0, err = 0;
  if (g->out.f) {
    if (g->frames == 0) rc = fvl_err("%s: '%s' has no frames (add at least one before closing)", fn, g->out.path);
    if (EGifCloseFile(g->gif, &err) != GIF_OK && rc == 0)   /* writes the trailer; frees gif */
      rc = fvl_err("%s: cannot write '%s': %s", fn, g->out.path, GifErrorString(err) ? GifErrorString(err) : "giflib error");
    g->gif = NULL;
    if (rc == 0) rc = fvl_atomic_commit(&g->out, fn);   /* flush, fsync, rename, directory fsync */
    else fvl_atomic_abort(&g->out);
  }
  gif_free(g);
  return rc;
}

void fvl_plot_gif_abort(fvl_plot_gif *g) {
  if (!g) return;
  int err;
  if (g->gif) EGifCloseFile(g->gif, &err);
  fvl_atomic_abort(&g->out);
  gif_free(g);
}
