/* idx.c — IDX reader (gzipped or plain) with errors that say what is wrong with the file. */
#include <stdint.h>
#include "data.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

struct fvl_idx_file {
  gzFile gz;
  char *path;
  fvl_idx_info info;
};

static _Thread_local int last_open_error;
int fvl_idx_last_was_open_error(void) { return last_open_error; }

const char *fvl_idx_type_name(int type) {
  switch (type) {
  case 0x08: return "ubyte";
  case 0x09: return "sbyte";
  case 0x0B: return "int16";
  case 0x0C: return "int32";
  case 0x0D: return "float32";
  case 0x0E: return "float64";
  default: return "unknown";
  }
}
static int type_size(int type) {
  switch (type) {
  case 0x08: case 0x09: return 1;
  case 0x0B: return 2;
  case 0x0C: case 0x0D: return 4;
  case 0x0E: return 8;
  default: return 0;
  }
}

/* reads up to n bytes; returns bytes read, or -1 with the zlib error in msg */
static long gz_read_all(gzFile gz, void *buf, size_t n, const char **msg) {
  size_t got = 0;
  while (got < n) {
    unsigned chunk = (n - got) > (1u << 30) ? (1u << 30) : (unsigned)(n - got);
    int r = gzread(gz, (char *)buf + got, chunk);
    if (r < 0) {
      int errnum;
      *msg = gzerror(gz, &errnum);
      return -1;
    }
    if (r == 0) break;
    got += (size_t)r;
  }
  return (long)got;
}

static void dims_str(const fvl_idx_info *in, char *buf, size_t n) {
  size_t k = 0;
  buf[0] = 0;
  for (int d = 0; d < in->ndim && k < n; d++)
    k += (size_t)snprintf(buf + k, n - k, d ? "x%lld" : "%lld", (long long)in->dims[d]);
}

/* the magic (00 00 type ndim) and the big-endian dimension sizes at the start of gz */
static int read_header(gzFile gz, const char *path, fvl_idx_info *out) {
  unsigned char hdr[4];
  const char *zmsg = NULL;
  long r = gz_read_all(gz, hdr, 4, &zmsg);
  if (r < 0) return fvl_err("idx_open: '%s' is corrupt (zlib: %s)", path, zmsg);
  if (r < 4) return fvl_err("idx_open: '%s' is not an IDX file (only %ld bytes, expected a 4-byte header)", path, r);
  if (hdr[0] != 0 || hdr[1] != 0 || type_size(hdr[2]) == 0 || hdr[3] < 1 || hdr[3] > FVL_IDX_MAXDIM)
    return fvl_err("idx_open: '%s' is not an IDX file (header bytes %02x %02x %02x %02x, expected 00 00 "
                   "<type 08|09|0b|0c|0d|0e> <ndim 1..%d>)",
                   path, hdr[0], hdr[1], hdr[2], hdr[3], FVL_IDX_MAXDIM);
  fvl_idx_info in = {.type = hdr[2], .ndim = hdr[3], .count = 1};
  unsigned char db[4 * FVL_IDX_MAXDIM];
  r = gz_read_all(gz, db, (size_t)(4 * in.ndim), &zmsg);
  if (r < 0) return fvl_err("idx_open: '%s' is corrupt (zlib: %s)", path, zmsg);
  if (r < 4 * in.ndim)
    return fvl_err("idx_open: '%s' is truncated: header announces %d dimensions but the file ends after "
                   "%ld of their %d size bytes", path, in.ndim, r, 4 * in.ndim);
  for (int d = 0; d < in.ndim; d++) {
    uint32_t v = ((uint32_t)db[4 * d] << 24) | ((uint32_t)db[4 * d + 1] << 16) |
                 ((uint32_t)db[4 * d + 2] << 8) | db[4 * d + 3];
    if (v > (1u << 31) - 1) return fvl_err("idx_open: '%s' is corrupt: dimension %d has size %u", path, d + 1, v);
    in.dims[d] = v;
    if (v && in.count > ((int64_t)1 << 40) / (int64_t)v)
      return fvl_err("idx_open: '%s' is corrupt: sizes multiply to more than 2^40 elements", path);
    in.count *= v;
  }
  *out = in;
  return 0;
}

fvl_idx_file *fvl_idx_open(const char *path, fvl_idx_info *info) {
  last_open_error = 0;
  if (!path) { fvl_err("idx_open: path is NULL"); return NULL; }
  struct stat sb;
  if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
    last_open_error = 1;
    fvl_err("idx_open: cannot open '%s': it is a directory, expected an IDX file", path);
    return NULL;
  }
  errno = 0;
  gzFile gz = gzopen(path, "rb");
  if (!gz) {
    last_open_error = 1;
    fvl_err("idx_open: cannot open '%s': %s", path, errno ? strerror(errno) : "out of memory");
    return NULL;
  }
  gzbuffer(gz, 1 << 17);
  fvl_idx_info in;
  if (read_header(gz, path, &in) < 0) {
    gzclose(gz);
    return NULL;
  }
  fvl_idx_file *f = calloc(1, sizeof *f);
  char *p = f ? strdup(path) : NULL;
  if (!p) {
    free(f);
    gzclose(gz);
    fvl_err("idx_open: out of memory");
    return NULL;
  }
  f->gz = gz;
  f->path = p;
  f->info = in;
  if (info) *info = in;
  return f;
}

void fvl_idx_close(fvl_idx_file *f) {
  if (!f) return;
  gzclose(f->gz);
  free(f->path);
  free(f);
}

static inline double decode(const unsigned char *p, int type) {
  switch (type) {
  case 0x08: return p[0];
  case 0x09: return (int8_t)p[0];
  case 0x0B: return (int16_t)(uint16_t)((p[0] << 8) | p[1]);
  case 0x0C: return (int32_t)(((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
                              ((uint32_t)p[2] << 8) | p[3]);
  case 0x0D: {
    uint32_t u = ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
    float v;
    memcpy(&v, &u, 4);
    return v;
  }
  default: {
    uint64_t u = 0;
    for (int i = 0; i < 8; i++) u = (u << 8) | p[i];
    double v;
    memcpy(&v, &u, 8);
    return v;
  }
  }
}

/* streams the data in 64 KiB chunks, converting each into out (f32: v*scale+shift; i32: v+ishift) */
static int read_data(fvl_idx_file *f, void *out, int is_f32, float scale, float shift,
                     int32_t ishift, const char *fn) {
  const fvl_idx_info *in = &f->info;
  int es = type_size(in->type);
  size_t total = (size_t)in->count * (size_t)es;
  enum { CH = 1 << 16 };
  unsigned char *buf = malloc(CH);
  if (!buf) return fvl_err("%s: out of memory", fn);
  size_t done = 0;
  int64_t i = 0;
  const char *zmsg = NULL;
  char ds[96];
  while (done < total) {
    size_t want = total - done < CH ? total - done : (size_t)CH;
    want -= want % (size_t)es;
    if (want == 0) want = (size_t)es;
    long r = gz_read_all(f->gz, buf, want, &zmsg);
    if (r < 0) {
      free(buf);
      return fvl_err("%s: '%s' is corrupt (zlib: %s)", fn, f->path, zmsg);
    }
    if ((size_t)r < want) {
      free(buf);
      dims_str(in, ds, sizeof ds);
      return fvl_err("%s: '%s' is truncated: the header announces %s %s (%zu data bytes) but "
                     "only %zu are there", fn, f->path, ds, fvl_idx_type_name(in->type), total,
                     done + (size_t)r);
    }
    int64_t n = (int64_t)(want / (size_t)es);
    if (is_f32) {
      float *o = (float *)out + i;
      if (in->type == 0x08)
        for (int64_t k = 0; k < n; k++) o[k] = (float)buf[k] * scale + shift;
      else
        for (int64_t k = 0; k < n; k++) o[k] = (float)decode(buf + k * es, in->type) * scale + shift;
    } else {
      int32_t *o = (int32_t *)out + i;
      for (int64_t k = 0; k < n; k++) {
        double v = decode(buf + k * es, in->type);
        if (!(v >= -2147483648.0 && v <= 2147483647.0) || v != (double)(int64_t)v) {
          free(buf);
          return fvl_err("%s: '%s' element %lld (from 0) = %g is not an int32", fn, f->path,
                         (long long)(i + k), v);
        }
        int64_t s = (int64_t)v + ishift;   /* the shift may push a valid int32 out of range */
        if (s < INT32_MIN || s > INT32_MAX) {
          free(buf);
          return fvl_err("%s: '%s' element %lld (from 0) = %g shifted by %d is outside int32", fn, f->path,
                         (long long)(i + k), v, (int)ishift);
        }
        o[k] = (int32_t)s;
      }
    }
    i += n;
    done += want;
    if (fvl_check_abort(fn)) { free(buf); return -1; }
  }
  /* nothing may follow the data; reading on also makes zlib check the gzip trailer (CRC) */
  long r = gz_read_all(f->gz, buf, CH, &zmsg);
  free(buf);
  if (r < 0) return fvl_err("%s: '%s' is corrupt (zlib: %s)", fn, f->path, zmsg);
  if (r > 0) {
    dims_str(in, ds, sizeof ds);
    return fvl_err("%s: '%s' has %s%ld bytes after the %s %s data it announces (not an IDX file "
                   "of that shape)", fn, f->path, r == CH ? "more than " : "", r, ds,
                   fvl_idx_type_name(in->type));
  }
  return 0;
}

int fvl_idx_read_f32(fvl_idx_file *f, float *out, float scale, float shift) {
  if (!f || !out) return fvl_err("idx_read: file or output is NULL");
  return read_data(f, out, 1, scale, shift, 0, "idx_read");
}
int fvl_idx_read_i32(fvl_idx_file *f, int32_t *out, int32_t shift) {
  if (!f || !out) return fvl_err("idx_read: file or output is NULL");
  if (f->info.type == 0x0D || f->info.type == 0x0E)
    return fvl_err("idx_read: '%s' holds %s values, expected integers for int32 output", f->path,
                   fvl_idx_type_name(f->info.type));
  return read_data(f, out, 0, 1, 0, shift, "idx_read");
}
