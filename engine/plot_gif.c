/* plot_gif.c — the animated GIF encoder behind fvl_plot_gif_* (see plot.h): frames drawn by
 * cairo, quantised to one fixed palette, LZW-compressed, written atomically at close. */
#include "plot.h"
#include "plot_gif.h"
#include <cairo.h>
#include <errno.h>
#include <math.h>
#include <strings.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "core.h"

/* GIF89a with one global 256-colour palette: a 6×6×6 colour cube (216) and 40 greys. Frames are
 * rendered by cairo, mapped to the nearest palette entry and LZW-compressed. */
struct fvl_plot_gif {
  FILE *f;
  char path[4096], tmp[4200];
  int w, h, frames, delay_cs;
  uint32_t *argb;       /* w*h frame */
  uint8_t *idx;         /* w*h palette indices */
};

static void gif_palette(uint8_t pal[768]) {
  int k = 0;
  for (int r = 0; r < 6; r++)
    for (int g = 0; g < 6; g++)
      for (int b = 0; b < 6; b++) { pal[k++] = (uint8_t)(51 * r); pal[k++] = (uint8_t)(51 * g); pal[k++] = (uint8_t)(51 * b); }
  for (int i = 0; i < 40; i++) {     /* greys between the cube's levels */
    uint8_t v = (uint8_t)((i + 1) * 255 / 41);
    pal[k++] = v; pal[k++] = v; pal[k++] = v;
  }
}

static inline uint8_t gif_nearest(int r, int g, int b) {
  int cr = (r + 25) / 51, cg = (g + 25) / 51, cb = (b + 25) / 51;
  int dr = r - 51 * cr, dg = g - 51 * cg, db = b - 51 * cb;
  int dc = dr * dr + dg * dg + db * db;
  int m = (r + g + b) / 3;
  int gi = (m * 41 + 127) / 255 - 1;      /* grey i has value (i+1)*255/41 */
  if (gi < 0) gi = 0;
  if (gi > 39) gi = 39;
  int gv = (gi + 1) * 255 / 41;
  int dgy = (r - gv) * (r - gv) + (g - gv) * (g - gv) + (b - gv) * (b - gv);
  return dgy < dc ? (uint8_t)(216 + gi) : (uint8_t)(36 * cr + 6 * cg + cb);
}

typedef struct { FILE *f; uint8_t blk[256]; int nblk; uint32_t acc; int nacc; } gif_bits;

static void gif_put_byte(gif_bits *b, uint8_t v) {
  b->blk[1 + b->nblk++] = v;
  if (b->nblk == 255) { b->blk[0] = 255; fwrite(b->blk, 1, 256, b->f); b->nblk = 0; }
}
static void gif_put_code(gif_bits *b, int code, int size) {
  b->acc |= (uint32_t)code << b->nacc;
  b->nacc += size;
  while (b->nacc >= 8) { gif_put_byte(b, (uint8_t)(b->acc & 0xFF)); b->acc >>= 8; b->nacc -= 8; }
}

/* LZW of n 8-bit indices (min code size 8), written as sub-blocks */
static int gif_lzw(FILE *f, const uint8_t *px, int64_t n) {
  enum { HSIZE = 8191 };
  int32_t *hkey = malloc(HSIZE * sizeof *hkey);
  int16_t *hcode = malloc(HSIZE * sizeof *hcode);
  if (!hkey || !hcode) { free(hkey); free(hcode); return -1; }
  gif_bits b = {f, {0}, 0, 0, 0};
  const int clear = 256, eoi = 257;
  int cs = 9, next = 258;
  for (int i = 0; i < HSIZE; i++) hkey[i] = -1;
  fputc(8, f);
  gif_put_code(&b, clear, cs);
  int prefix = px[0];
  for (int64_t i = 1; i < n; i++) {
    int k = px[i];
    int32_t key = (prefix << 8) | k;
    uint32_t hpos = ((uint32_t)key * 2654435761u) % HSIZE;
    while (hkey[hpos] != -1 && hkey[hpos] != key) hpos = (hpos + 1) % HSIZE;
    if (hkey[hpos] == key) { prefix = hcode[hpos]; continue; }
    gif_put_code(&b, prefix, cs);
    if (next < 4095) {
      hkey[hpos] = key;
      hcode[hpos] = (int16_t)next++;
      if (next > (1 << cs) && cs < 12) cs++;
    } else {                      /* table full: start again */
      gif_put_code(&b, clear, cs);
      for (int j = 0; j < HSIZE; j++) hkey[j] = -1;
      cs = 9;
      next = 258;
    }
    prefix = k;
  }
  gif_put_code(&b, prefix, cs);
  gif_put_code(&b, eoi, cs);
  if (b.nacc > 0) gif_put_byte(&b, (uint8_t)(b.acc & 0xFF));
  if (b.nblk > 0) { b.blk[0] = (uint8_t)b.nblk; fwrite(b.blk, 1, (size_t)b.nblk + 1, f); }
  fputc(0, f);
  free(hkey);
  free(hcode);
  return 0;
}

static void put16(FILE *f, int v) { fputc(v & 0xFF, f); fputc((v >> 8) & 0xFF, f); }

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
  snprintf(g->path, sizeof g->path, "%s", path);
  snprintf(g->tmp, sizeof g->tmp, "%s.tmp.%ld", path, (long)getpid());
  g->w = w; g->h = h;
  g->delay_cs = (int)lround(delay_s * 100);
  g->argb = malloc((size_t)w * h * 4);
  g->idx = malloc((size_t)w * h);
  g->f = g->argb && g->idx ? fopen(g->tmp, "wb") : NULL;
  if (!g->f) {
    fvl_err("%s: cannot write '%s': %s", fn, path, g->argb && g->idx ? strerror(errno) : "out of memory");
    free(g->argb); free(g->idx); free(g);
    return NULL;
  }
  uint8_t pal[768];
  gif_palette(pal);
  fwrite("GIF89a", 1, 6, g->f);
  put16(g->f, w);
  put16(g->f, h);
  fputc(0xF7, g->f);   /* global colour table of 256 entries, 8 bits per primary */
  fputc(215, g->f);    /* background: white (cube corner 5,5,5) */
  fputc(0, g->f);
  fwrite(pal, 1, sizeof pal, g->f);
  if (loop >= 0) {     /* NETSCAPE2.0: repeat count (0 = for ever) */
    fwrite("\x21\xFF\x0BNETSCAPE2.0\x03\x01", 1, 16, g->f);
    put16(g->f, loop);
    fputc(0, g->f);
  }
  return g;
}

int fvl_plot_gif_frames(const fvl_plot_gif *g) { return g ? g->frames : 0; }

int fvl_plot_gif_add_drawn(fvl_plot_gif *g, fvl_plot_draw_fn draw, const void *ud) {
  const char *fn = "plot.animation";
  if (!g || !g->f) return fvl_err("%s: the animation is closed", fn);
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
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++) {
    uint32_t p = g->argb[i];
    g->idx[i] = gif_nearest((p >> 16) & 0xFF, (p >> 8) & 0xFF, p & 0xFF);
  }
  FILE *f = g->f;
  fwrite("\x21\xF9\x04", 1, 3, f);
  fputc(0x04, f);        /* disposal: leave the frame in place */
  put16(f, g->delay_cs);
  fputc(0, f);
  fputc(0, f);
  fputc(0x2C, f);
  put16(f, 0); put16(f, 0); put16(f, g->w); put16(f, g->h);
  fputc(0, f);
  if (gif_lzw(f, g->idx, n) < 0) return fvl_err("%s: out of memory", fn);
  if (ferror(f)) return fvl_err("%s: cannot write '%s': %s", fn, g->path, strerror(errno));
  g->frames++;
  return 0;
}


int fvl_plot_gif_close(fvl_plot_gif *g) {
  const char *fn = "plot.animation";
  if (!g) return 0;
  int rc = 0;
  if (g->f) {
    if (g->frames == 0) rc = fvl_err("%s: '%s' has no frames (add at least one before closing)", fn, g->path);
    fputc(0x3B, g->f);
    if (rc == 0 && (fflush(g->f) != 0 || fsync(fileno(g->f)) != 0 || ferror(g->f)))
      rc = fvl_err("%s: cannot write '%s': %s", fn, g->path, strerror(errno));
    fclose(g->f);
    g->f = NULL;
    if (rc == 0 && rename(g->tmp, g->path) != 0)
      rc = fvl_err("%s: cannot rename to '%s': %s", fn, g->path, strerror(errno));
    if (rc != 0) unlink(g->tmp);
  }
  free(g->argb); free(g->idx); free(g);
  return rc;
}

void fvl_plot_gif_abort(fvl_plot_gif *g) {
  if (!g) return;
  if (g->f) { fclose(g->f); unlink(g->tmp); }
  free(g->argb); free(g->idx); free(g);
}
