/* image.c — JPEG (libjpeg-turbo's TurboJPEG API) and PNG (libpng's simplified API) decoding
 * and encoding in memory, and the whole-file reader. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <png.h>
#include <turbojpeg.h>
#include "facedata.h"

static int is_jpeg(const uint8_t *d, size_t n) { return n >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF; }
static int is_png(const uint8_t *d, size_t n) {
  static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  return n >= 8 && memcmp(d, sig, 8) == 0;
}

static int unknown(const uint8_t *d, size_t n, const char *what) {
  char hex[40] = "";
  for (size_t i = 0; i < n && i < 8; i++) snprintf(hex + 3 * i, 4, "%02X ", d[i]);
  return fvl_err("%s: not a JPEG or PNG image (%zu bytes, starting %s)", what, n, n ? hex : "<empty>");
}

int fvl_image_info(const uint8_t *data, size_t len, int *h, int *w, const char *what) {
  if (is_jpeg(data, len)) {
    tjhandle tj = tjInitDecompress();
    if (!tj) return fvl_err("%s: cannot start the JPEG decoder", what);
    int ss, cs, rc = tjDecompressHeader3(tj, data, (unsigned long)len, w, h, &ss, &cs);
    if (rc) fvl_err("%s: corrupt JPEG header: %s", what, tjGetErrorStr2(tj));
    tjDestroy(tj);
    return rc ? -1 : 0;
  }
  if (is_png(data, len)) {
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_memory(&img, data, len))
      return fvl_err("%s: corrupt PNG header: %s", what, img.message);
    *h = (int)img.height;
    *w = (int)img.width;
    png_image_free(&img);
    return 0;
  }
  return unknown(data, len, what);
}

int fvl_image_decode(const uint8_t *data, size_t len, int channels, int bgr, uint8_t **out,
                     int *h, int *w, const char *what) {
  *out = NULL;
  if (channels != 1 && channels != 3) return fvl_err("%s: channels = %d (expected 1 or 3)", what, channels);
  if (is_jpeg(data, len)) {
    tjhandle tj = tjInitDecompress();
    if (!tj) return fvl_err("%s: cannot start the JPEG decoder", what);
    int ss, cs;
    int rc = -1;
    if (tjDecompressHeader3(tj, data, (unsigned long)len, w, h, &ss, &cs)) {
      fvl_err("%s: corrupt JPEG: %s", what, tjGetErrorStr2(tj));
      goto jdone;
    }
    if (*w <= 0 || *h <= 0 || *w > 65535 || *h > 65535) {
      fvl_err("%s: JPEG of %dx%d pixels", what, *w, *h);
      goto jdone;
    }
    *out = malloc((size_t)*w * (size_t)*h * (size_t)channels);
    if (!*out) { fvl_err("%s: out of memory", what); goto jdone; }
    int pf = channels == 1 ? TJPF_GRAY : bgr ? TJPF_BGR : TJPF_RGB;
    /* a warning (e.g. "premature end of JPEG file") is an error too: a truncated image
     * decodes to grey rows that would silently enter training */
    if (tjDecompress2(tj, data, (unsigned long)len, *out, *w, 0, *h, pf, TJFLAG_STOPONWARNING)) {
      fvl_err("%s: corrupt or truncated JPEG: %s", what, tjGetErrorStr2(tj));
      free(*out);
      *out = NULL;
      goto jdone;
    }
    rc = 0;
  jdone:
    tjDestroy(tj);
    return rc;
  }
  if (is_png(data, len)) {
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_memory(&img, data, len))
      return fvl_err("%s: corrupt PNG: %s", what, img.message);
    if (img.width > 65535 || img.height > 65535) {
      png_image_free(&img);
      return fvl_err("%s: PNG of %ux%u pixels", what, img.width, img.height);
    }
    img.format = channels == 1 ? PNG_FORMAT_GRAY : bgr ? PNG_FORMAT_BGR : PNG_FORMAT_RGB;
    *w = (int)img.width;
    *h = (int)img.height;
    *out = malloc(PNG_IMAGE_SIZE(img));
    if (!*out) { png_image_free(&img); return fvl_err("%s: out of memory", what); }
    png_color bg = {0, 0, 0};
    if (!png_image_finish_read(&img, &bg, *out, 0, NULL)) {
      fvl_err("%s: corrupt or truncated PNG: %s", what, img.message);
      png_image_free(&img);
      free(*out);
      *out = NULL;
      return -1;
    }
    png_image_free(&img);
    return 0;
  }
  return unknown(data, len, what);
}

int fvl_image_encode(const uint8_t *pix, int h, int w, int channels, int quality, uint8_t **out,
                     size_t *len) {
  *out = NULL;
  *len = 0;
  if ((channels != 1 && channels != 3) || h <= 0 || w <= 0 || h > 65535 || w > 65535)
    return fvl_err("image_encode: %dx%dx%d pixels (expected h, w in 1..65535, 1 or 3 channels)", h,
                   w, channels);
  if (quality >= 0) {
    if (quality < 1 || quality > 100) return fvl_err("image_encode: quality = %d (expected 1..100)", quality);
    tjhandle tj = tjInitCompress();
    if (!tj) return fvl_err("image_encode: cannot start the JPEG encoder");
    unsigned char *jb = NULL;
    unsigned long jl = 0;
    int rc = tjCompress2(tj, pix, w, 0, h, channels == 1 ? TJPF_GRAY : TJPF_RGB, &jb, &jl,
                         channels == 1 ? TJSAMP_GRAY : TJSAMP_420, quality, 0);
    if (rc) fvl_err("image_encode: %s", tjGetErrorStr2(tj));
    else {
      *out = malloc(jl);
      if (*out) { memcpy(*out, jb, jl); *len = jl; }
      else rc = fvl_err("image_encode: out of memory");
    }
    tjFree(jb);
    tjDestroy(tj);
    return rc ? -1 : 0;
  }
  png_image img;
  memset(&img, 0, sizeof img);
  img.version = PNG_IMAGE_VERSION;
  img.width = (png_uint_32)w;
  img.height = (png_uint_32)h;
  img.format = channels == 1 ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;
  png_alloc_size_t n = 0;
  if (!png_image_write_to_memory(&img, NULL, &n, 0, pix, 0, NULL))
    return fvl_err("image_encode: %s", img.message);
  *out = malloc(n);
  if (!*out) return fvl_err("image_encode: out of memory");
  if (!png_image_write_to_memory(&img, *out, &n, 0, pix, 0, NULL)) {
    free(*out);
    *out = NULL;
    return fvl_err("image_encode: %s", img.message);
  }
  *len = n;
  return 0;
}

int fvl_read_file(const char *path, uint8_t **buf, size_t *len, const char *fn) {
  *buf = NULL;
  *len = 0;
  FILE *f = fopen(path, "rb");
  if (!f) return fvl_err("%s: cannot open %s: %s", fn, path, strerror(errno));
  struct stat st;
  if (fstat(fileno(f), &st) || !S_ISREG(st.st_mode)) {
    fclose(f);
    return fvl_err("%s: '%s' is not a regular file", fn, path);
  }
  size_t n = (size_t)st.st_size;
  uint8_t *b = malloc(n ? n : 1);
  if (!b) { fclose(f); return fvl_err("%s: out of memory reading '%s' (%zu bytes)", fn, path, n); }
  if (n && fread(b, 1, n, f) != n) {
    fclose(f);
    free(b);
    return fvl_err("%s: read error on '%s'", fn, path);
  }
  fclose(f);
  *buf = b;
  *len = n;
  return 0;
}
