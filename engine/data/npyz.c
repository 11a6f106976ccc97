/* npyz.c — .npy of every plain NumPy dtype (converted to float32 / int32) and .npz archives
 * (ZIP, stored or deflated, ZIP64 records as numpy writes them), read and write. */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include "facedata.h"
#include "sys.h"

/* ---------------------------------------------------------------- header */
typedef struct npy_hdr {
  char kind;                 /* 'b' 'u' 'i' 'f' */
  int size;                  /* bytes per element */
  int fortran;
  int ndim;
  int64_t shape[FVL_MAXDIM];
} npy_hdr;

/* the header dict is parsed by the one strict parser (fvl_npy_parse_header, tensor.c); this maps
 * its descr onto the dtypes read here */
static int parse_header(const char *h, size_t n, npy_hdr *o, const char *what) {
  fvl_npy_header nh;
  if (fvl_npy_parse_header(h, n, what, &nh) < 0) return -1;
  static const char *const ok[] = {"|b1", "|u1", "|i1", "<i2", "<u2", "<i4", "<u4", "<i8",
                                   "<u8", "<f2", "<f4", "<f8", NULL};
  int found = 0;
  for (int i = 0; ok[i]; i++) found |= !strcmp(ok[i], nh.descr);
  if (!found)
    return fvl_err("%s: .npy dtype '%s' is not supported (expected one of |b1 |u1 |i1 <i2 <u2 "
                   "<i4 <u4 <i8 <u8 <f2 <f4 <f8: plain little-endian numbers)", what, nh.descr);
  o->kind = nh.descr[1];
  o->size = nh.descr[2] - '0';
  o->fortran = nh.fortran_order;
  o->ndim = nh.ndim;
  memcpy(o->shape, nh.shape, sizeof o->shape);
  return 0;
}

static float half_to_float(uint16_t h) {
  int s = h >> 15, ex = (h >> 10) & 31, m = h & 1023;
  float v;
  if (ex == 0) v = ldexpf((float)m, -24);
  else if (ex == 31) v = m ? NAN : INFINITY;
  else v = ldexpf((float)(m | 1024), ex - 25);
  return s ? -v : v;
}

/* the magic and version: the header's length *hl and where it starts, *off */
static int npy_preamble(const uint8_t *buf, size_t len, const char *what, size_t *off, size_t *hl) {
  if (len < 10 || memcmp(buf, "\x93NUMPY", 6)) return fvl_err("%s: not a .npy file (bad magic)", what);
  int major = buf[6];
  if (major == 1) {
    *hl = (size_t)buf[8] | (size_t)buf[9] << 8;
    *off = 10;
  } else if (major == 2 || major == 3) {
    if (len < 12) return fvl_err("%s: truncated .npy header", what);
    *hl = (size_t)buf[8] | (size_t)buf[9] << 8 | (size_t)buf[10] << 16 | (size_t)buf[11] << 24;
    *off = 12;
  } else {
    return fvl_err("%s: .npy format version %d.%d (expected 1, 2 or 3)", what, major, buf[7]);
  }
  if (*hl > len - *off)
    return fvl_err("%s: .npy header of %zu bytes but the file has %zu after the preamble (truncated)", what,
                   *hl, len - *off);
  return 0;
}

/* the element count of the header's shape, which must account for exactly the datalen bytes */
static int npy_numel(const npy_hdr *h, size_t datalen, const char *what, int64_t *numel) {
  int64_t n = 1;
  for (int d = 0; d < h->ndim; d++) {
    if (h->shape[d] && n > INT64_MAX / 8 / h->shape[d]) return fvl_err("%s: .npy shape too large", what);
    n *= h->shape[d];
  }
  uint64_t bytes = (uint64_t)n * (uint64_t)h->size;
  if (bytes != datalen)
    return fvl_err("%s: .npy data of %zu bytes, the header announces %lld × %d = %lld (%s)", what, datalen,
                   (long long)n, h->size, (long long)n * h->size, bytes > datalen ? "truncated" : "trailing bytes");
  *numel = n;
  return 0;
}

/* element i (0-based, for messages) at p: 1 and *iv for the integer kinds, 0 and *fv for floats,
 * -1 with a message when the value does not fit int32 / float32 (or a bool is not 0/1) */
static int npy_element(const npy_hdr *h, const uint8_t *p, int64_t i, const char *what, int32_t *iv, float *fv) {
  uint64_t u = 0;
  switch (h->kind) {
  case 'b':
    if (*p > 1) return fvl_err("%s: .npy bool element %lld (from 0) holds %d", what, (long long)i, *p);
    *iv = *p;
    return 1;
  case 'u':
    for (int b = h->size - 1; b >= 0; b--) u = u << 8 | p[b];
    if (u > INT32_MAX)
      return fvl_err("%s: .npy element %lld (from 0) = %llu does not fit in int32", what, (long long)i,
                     (unsigned long long)u);
    *iv = (int32_t)u;
    return 1;
  case 'i': {
    for (int b = h->size - 1; b >= 0; b--) u = u << 8 | p[b];
    if (h->size < 8 && (u >> (8 * h->size - 1)) & 1) u |= ~(uint64_t)0 << (8 * h->size);
    int64_t v = (int64_t)u;
    if (v > INT32_MAX || v < INT32_MIN)
      return fvl_err("%s: .npy element %lld (from 0) = %lld does not fit in int32", what, (long long)i, (long long)v);
    *iv = (int32_t)v;
    return 1;
  }
  default:
    if (h->size == 2) *fv = half_to_float((uint16_t)(p[0] | p[1] << 8));
    else if (h->size == 4) memcpy(fv, p, 4);
    else {
      double v;
      memcpy(&v, p, 8);
      if (isfinite(v) && fabs(v) > FLT_MAX)
        return fvl_err("%s: .npy element %lld (from 0) = %g does not fit in float32", what, (long long)i, v);
      *fv = (float)v;
    }
    return 0;
  }
}

fvl_tensor *fvl_npy_parse(const uint8_t *buf, size_t len, const char *what) {
  size_t hl = 0, off = 0;
  if (npy_preamble(buf, len, what, &off, &hl)) return NULL;
  npy_hdr h;
  memset(&h, 0, sizeof h);
  if (parse_header((const char *)buf + off, hl, &h, what)) return NULL;
  off += hl;
  int64_t numel = 0;
  if (npy_numel(&h, len - off, what, &numel)) return NULL;
  fvl_tensor *t = fvl_empty(h.kind == 'f' ? FVL_F32 : FVL_I32, h.ndim, h.shape);
  if (!t) return NULL;
  const uint8_t *src = buf + off;
  /* element i of the output (C order) comes from source element fo(i) (Fortran order maps):
   * cnt is the C-order multi-index of i, fstride the Fortran strides */
  int64_t cnt[FVL_MAXDIM] = {0}, fstride[FVL_MAXDIM];
  int64_t acc = 1;
  for (int d = 0; d < h.ndim; d++) { fstride[d] = acc; acc *= h.shape[d]; }
  int64_t fo = 0;
  for (int64_t i = 0; i < numel; i++) {
    int64_t j = h.fortran ? fo : i;
    int32_t iv = 0;
    float fv = 0;
    int kind = npy_element(&h, src + (size_t)j * (size_t)h.size, i, what, &iv, &fv);
    if (kind < 0) { fvl_release(t); return NULL; }
    if (kind) fvl_i32(t)[i] = iv;
    else fvl_f32(t)[i] = fv;
    if (h.fortran) { /* advance the C-order counter, track the Fortran offset */
      for (int d = h.ndim - 1; d >= 0; d--) {
        cnt[d]++;
        fo += fstride[d];
        if (cnt[d] < h.shape[d]) break;
        fo -= cnt[d] * fstride[d];
        cnt[d] = 0;
      }
    }
  }
  return t;
}

fvl_tensor *fvl_npy_read(const char *path) {
  uint8_t *b;
  size_t n;
  if (fvl_read_file(path, &b, &n, "load")) return NULL;
  char what[512];
  snprintf(what, sizeof what, "load: '%s'", path);
  fvl_tensor *t = fvl_npy_parse(b, n, what);
  free(b);
  return t;
}

int fvl_npy_bytes(const fvl_tensor *t, uint8_t **out, size_t *len) {
  char hdr[512], shape[200] = "";
  size_t k = 0;
  for (int d = 0; d < t->ndim; d++)
    k += (size_t)snprintf(shape + k, sizeof shape - k, "%lld,%s", (long long)t->size[d],
                          (t->ndim > 1 && d < t->ndim - 1) ? " " : "");
  if (t->ndim > 1) shape[k - 1] = 0;
  int hl = snprintf(hdr, sizeof hdr, "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }",
                    t->dtype == FVL_F32 ? "<f4" : "<i4", shape);
  int pad = (64 - (10 + hl + 1) % 64) % 64;
  memset(hdr + hl, ' ', (size_t)pad);
  hdr[hl + pad] = '\n';
  size_t hlen = (size_t)hl + (size_t)pad + 1;
  fvl_tensor *c = fvl_contiguous((fvl_tensor *)t);
  if (!c) return -1;
  size_t nb = (size_t)fvl_numel(c) * 4;
  uint8_t *b = malloc(10 + hlen + nb);
  if (!b) { fvl_release(c); return fvl_err("save: out of memory"); }
  memcpy(b, "\x93NUMPY\x01\x00", 8);
  b[8] = (uint8_t)(hlen & 0xff);
  b[9] = (uint8_t)(hlen >> 8);
  memcpy(b + 10, hdr, hlen);
  if (nb) memcpy(b + 10 + hlen, fvl_f32(c), nb);
  fvl_release(c);
  *out = b;
  *len = 10 + hlen + nb;
  return 0;
}

/* ---------------------------------------------------------------- .npz */
static uint64_t le(const uint8_t *p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; i--) v = v << 8 | p[i];
  return v;
}
static void put(uint8_t *p, uint64_t v, int n) { for (int i = 0; i < n; i++) p[i] = (uint8_t)(v >> (8 * i)); }

/* the central directory: its offset and entry count from the end record (ZIP64 when the 32-bit
 * fields overflow). Every offset read from the file is checked without wrapping. */
static int npz_directory(const uint8_t *d, size_t n, const char *path, uint64_t *cd, int64_t *entries) {
  size_t eocd = (size_t)-1;
  for (size_t i = n >= 22 ? n - 22 : 0; n >= 22; i--) {
    if (le(d + i, 4) == 0x06054b50) { eocd = i; break; }
    if (i == 0 || n - i > 65557) break;
  }
  if (eocd == (size_t)-1) return fvl_err("load: '%s' is not a .npz (ZIP) archive: no end-of-directory record", path);
  *entries = (int64_t)le(d + eocd + 10, 2);
  *cd = le(d + eocd + 16, 4);
  if ((*entries == 0xFFFF || *cd == 0xFFFFFFFFu) && eocd >= 20 && le(d + eocd - 20, 4) == 0x07064b50) {
    uint64_t z = le(d + eocd - 20 + 8, 8);
    if (z > n || n - z < 56 || le(d + z, 4) != 0x06064b50) return fvl_err("load: '%s': bad ZIP64 end record", path);
    uint64_t e = le(d + z + 32, 8);
    *entries = e > (uint64_t)INT64_MAX ? -1 : (int64_t)e;
    *cd = le(d + z + 48, 8);
  }
  if (*cd > n || *entries < 0 || *entries > (int64_t)(n / 46 + 1))
    return fvl_err("load: '%s': ZIP directory at byte %llu with %lld entries does not fit the file (%zu bytes)",
                   path, (unsigned long long)*cd, (long long)*entries, n);
  return 0;
}

/* one central-directory entry */
typedef struct {
  int method, flags;
  uint32_t crc;
  uint64_t csize, usize, loff;
  char name[512];
  size_t name_len;            /* strlen(name), the name cut at 511 bytes */
} npz_entry;

/* the entry at *p (advanced past it), ZIP64 sizes and offset from its extra field */
static int npz_read_entry(const uint8_t *d, size_t n, size_t *p, const char *path, int64_t e, npz_entry *en) {
  size_t q = *p;
  if (q > n || n - q < 46 || le(d + q, 4) != 0x02014b50)
    return fvl_err("load: '%s': ZIP directory entry %lld (from 0) is damaged", path, (long long)e);
  en->method = (int)le(d + q + 10, 2);
  en->flags = (int)le(d + q + 8, 2);
  en->crc = (uint32_t)le(d + q + 16, 4);
  en->csize = le(d + q + 20, 4);
  en->usize = le(d + q + 24, 4);
  en->loff = le(d + q + 42, 4);
  size_t nl = (size_t)le(d + q + 28, 2), xl = (size_t)le(d + q + 30, 2), cl = (size_t)le(d + q + 32, 2);
  if (n - q - 46 < nl + xl + cl) return fvl_err("load: '%s': ZIP directory entry %lld (from 0) is truncated", path, (long long)e);
  const uint8_t *x = d + q + 46 + nl, *xe = x + xl;
  while (xe - x >= 4) {  /* ZIP64 extra: the 0xFFFFFFFF fields, in order */
    size_t id = (size_t)le(x, 2), sz = (size_t)le(x + 2, 2);
    const uint8_t *f = x + 4;
    if ((size_t)(xe - f) < sz) break;
    if (id == 1) {
      const uint8_t *fe = f + sz;
      if (en->usize == 0xFFFFFFFFu && fe - f >= 8) { en->usize = le(f, 8); f += 8; }
      if (en->csize == 0xFFFFFFFFu && fe - f >= 8) { en->csize = le(f, 8); f += 8; }
      if (en->loff == 0xFFFFFFFFu && fe - f >= 8) { en->loff = le(f, 8); }
    }
    x += 4 + sz;
  }
  en->name_len = nl < sizeof en->name - 1 ? nl : sizeof en->name - 1;
  memcpy(en->name, d + q + 46, en->name_len);
  en->name[en->name_len] = 0;
  *p = q + 46 + nl + xl + cl;
  return 0;
}

/* the member's bytes, uncompressed and CRC-checked, into *out (malloc'd, en->usize bytes) */
static int npz_member(const uint8_t *d, size_t n, const char *path, const npz_entry *en, uint8_t **out) {
  const char *name = en->name;
  *out = NULL;
  if (en->name_len < 5 || strcmp(name + en->name_len - 4, ".npy"))
    return fvl_err("load: '%s': member '%s' is not a .npy array", path, name);
  if (en->flags & 1) return fvl_err("load: '%s': member '%s' is encrypted", path, name);
  if (en->method != 0 && en->method != 8)
    return fvl_err("load: '%s': member '%s' uses ZIP method %d (expected 0 stored or 8 deflate)", path, name,
                   en->method);
  if (en->loff > n || n - en->loff < 30 || le(d + en->loff, 4) != 0x04034b50)
    return fvl_err("load: '%s': member '%s': damaged local header", path, name);
  uint64_t start = en->loff + 30 + le(d + en->loff + 26, 2) + le(d + en->loff + 28, 2);
  if (start > n || en->csize > n - start || en->usize > ((uint64_t)1 << 40))
    return fvl_err("load: '%s': member '%s' (%llu bytes) runs past the end of the file (truncated)",
                   path, name, (unsigned long long)en->csize);
  uint8_t *u = malloc(en->usize ? (size_t)en->usize : 1);
  if (!u) return fvl_err("load: out of memory (%llu bytes)", (unsigned long long)en->usize);
  if (en->method == 0) {
    if (en->csize != en->usize) {
      free(u);
      return fvl_err("load: '%s': stored member '%s' with different sizes", path, name);
    }
    memcpy(u, d + start, (size_t)en->usize);
  } else {
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, -15) != Z_OK) { free(u); return fvl_err("load: zlib init failed"); }
    zs.next_in = (uint8_t *)d + start;
    zs.avail_in = (uInt)en->csize;
    zs.next_out = u;
    zs.avail_out = (uInt)en->usize;
    int zr = inflate(&zs, Z_FINISH);
    uint64_t outn = zs.total_out;
    inflateEnd(&zs);
    if (zr != Z_STREAM_END || outn != en->usize) {
      free(u);
      return fvl_err("load: '%s': member '%s' is corrupt (zlib: %s)", path, name,
                     zr == Z_STREAM_END ? "size mismatch" : zr == Z_BUF_ERROR ? "truncated data" : "bad deflate data");
    }
  }
  if ((uint32_t)crc32(crc32(0, Z_NULL, 0), u, (uInt)en->usize) != en->crc) {
    free(u);
    return fvl_err("load: '%s': member '%s' fails its CRC check (corrupt)", path, name);
  }
  *out = u;
  return 0;
}

int fvl_npz_read(const char *path, char ***names, fvl_tensor ***ts, int64_t *count) {
  *names = NULL;
  *ts = NULL;
  *count = 0;
  uint8_t *d;
  size_t n;
  if (fvl_read_file(path, &d, &n, "load")) return -1;
  char **nm = NULL;
  fvl_tensor **tv = NULL;
  int64_t k = 0, entries = 0;
  uint64_t cd = 0;
  int rc = -1;
  if (npz_directory(d, n, path, &cd, &entries)) goto done;
  nm = calloc((size_t)(entries ? entries : 1), sizeof *nm);
  tv = calloc((size_t)(entries ? entries : 1), sizeof *tv);
  if (!nm || !tv) { fvl_err("load: out of memory"); goto done; }
  size_t p = (size_t)cd;
  for (int64_t e = 0; e < entries; e++) {
    npz_entry en;
    uint8_t *u;
    if (npz_read_entry(d, n, &p, path, e, &en) || npz_member(d, n, path, &en, &u)) goto done;
    char what[800];
    snprintf(what, sizeof what, "load: '%s' member '%s'", path, en.name);
    tv[k] = fvl_npy_parse(u, (size_t)en.usize, what);
    free(u);
    if (!tv[k]) goto done;
    en.name[en.name_len - 4] = 0;
    nm[k] = strdup(en.name);
    if (!nm[k]) { fvl_release(tv[k]); fvl_err("load: out of memory"); goto done; }
    k++;
  }
  rc = 0;
done:
  free(d);
  if (rc) {
    for (int64_t i = 0; i < k; i++) { free(nm[i]); fvl_release(tv[i]); }
    free(nm);
    free(tv);
    return -1;
  }
  *names = nm;
  *ts = tv;
  *count = k;
  return 0;
}

int fvl_npz_write(const char *path, int64_t n, const char *const *names, fvl_tensor *const *ts) {
  uint8_t **m = calloc((size_t)(n ? n : 1), sizeof *m);
  size_t *ml = calloc((size_t)(n ? n : 1), sizeof *ml);
  uint8_t *out = NULL;
  int rc = -1;
  if (!m || !ml) { fvl_err("save: out of memory"); goto done; }
  size_t total = 22;
  for (int64_t i = 0; i < n; i++) {
    size_t nl = strlen(names[i]) + 4;
    if (nl > 60000 || !names[i][0]) { fvl_err("save: array name %lld is empty or too long", (long long)i + 1); goto done; }
    if (fvl_npy_bytes(ts[i], &m[i], &ml[i])) goto done;
    if (ml[i] >= 0xFFFFFFFFu) { fvl_err("save: array '%s' is 4 GiB or more (not supported in .npz here)", names[i]); goto done; }
    total += 30 + nl + ml[i] + 46 + nl;
  }
  if (total >= 0xFFFFFFFFu) { fvl_err("save: .npz of 4 GiB or more is not supported"); goto done; }
  out = malloc(total);
  if (!out) { fvl_err("save: out of memory"); goto done; }
  size_t p = 0, *off = ml;  /* reuse: offsets after the loop */
  uint32_t *crcs = malloc((size_t)(n ? n : 1) * sizeof *crcs);
  size_t *loffs = malloc((size_t)(n ? n : 1) * sizeof *loffs);
  if (!crcs || !loffs) { free(crcs); free(loffs); fvl_err("save: out of memory"); goto done; }
  for (int64_t i = 0; i < n; i++) {
    size_t nl = strlen(names[i]) + 4;
    crcs[i] = (uint32_t)crc32(crc32(0, Z_NULL, 0), m[i], (uInt)ml[i]);
    loffs[i] = p;
    put(out + p, 0x04034b50, 4); put(out + p + 4, 20, 2); put(out + p + 6, 0, 2);
    put(out + p + 8, 0, 2); put(out + p + 10, 0, 2); put(out + p + 12, 33, 2);
    put(out + p + 14, crcs[i], 4); put(out + p + 18, ml[i], 4); put(out + p + 22, ml[i], 4);
    put(out + p + 26, nl, 2); put(out + p + 28, 0, 2);
    memcpy(out + p + 30, names[i], nl - 4);
    memcpy(out + p + 30 + nl - 4, ".npy", 4);
    memcpy(out + p + 30 + nl, m[i], ml[i]);
    p += 30 + nl + ml[i];
  }
  size_t cd = p;
  for (int64_t i = 0; i < n; i++) {
    size_t nl = strlen(names[i]) + 4;
    memset(out + p, 0, 46);
    put(out + p, 0x02014b50, 4); put(out + p + 4, 20, 2); put(out + p + 6, 20, 2);
    put(out + p + 12, 0, 2); put(out + p + 14, 33, 2);
    put(out + p + 16, crcs[i], 4); put(out + p + 20, off[i], 4); put(out + p + 24, off[i], 4);
    put(out + p + 28, nl, 2); put(out + p + 42, loffs[i], 4);
    memcpy(out + p + 46, names[i], nl - 4);
    memcpy(out + p + 46 + nl - 4, ".npy", 4);
    p += 46 + nl;
  }
  free(crcs);
  free(loffs);
  memset(out + p, 0, 22);
  put(out + p, 0x06054b50, 4);
  put(out + p + 8, (uint64_t)n, 2); put(out + p + 10, (uint64_t)n, 2);
  put(out + p + 12, p - cd, 4); put(out + p + 16, cd, 4);
  p += 22;
  if (n > 0xFFFF) { fvl_err("save: more than 65535 arrays in one .npz"); goto done; }
  rc = fvl_write_atomic(path, out, p, "save");
done:
  if (m) for (int64_t i = 0; i < n; i++) free(m[i]);
  free(m);
  free(ml);
  free(out);
  return rc;
}
