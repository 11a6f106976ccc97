/* recordio.c — MXNet/dmlc RecordIO: reader (.idx random access or one sequential scan),
 * split records, IRHeader, and an atomic writer. Format in facedata.h and docs/data.md. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "facedata.h"
#include "sys.h"

#define LEN_MASK ((1u << 29) - 1u)

struct fvl_rec {
  int fd;
  char *path;
  int64_t size;              /* file bytes */
  int64_t n;
  int64_t *key, *off;        /* per record, in index / file order */
  int64_t *sorted;           /* positions sorted by key (for fvl_rec_find) */
};

static uint32_t rd32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static void wr32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}

static int pread_all(int fd, void *buf, size_t n, int64_t off) {
  size_t got = 0;
  while (got < n) {
    ssize_t k = pread(fd, (char *)buf + got, n - got, (off_t)(off + (int64_t)got));
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return -1;
    got += (size_t)k;
  }
  return 0;
}

static int push(int64_t **key, int64_t **off, int64_t *n, int64_t *cap, int64_t k, int64_t o) {
  if (*n == *cap) {
    int64_t c = *cap ? *cap * 2 : 1024;
    int64_t *a = realloc(*key, (size_t)c * sizeof *a);
    if (!a) return -1;
    *key = a;
    int64_t *b = realloc(*off, (size_t)c * sizeof *b);
    if (!b) return -1;
    *off = b;
    *cap = c;
  }
  (*key)[*n] = k;
  (*off)[*n] = o;
  (*n)++;
  return 0;
}

/* frame header at `pos`: fills cflag and length; checks magic and that the frame fits */
static int frame_at(const fvl_rec *r, int64_t pos, uint32_t *cflag, uint32_t *len, const char *fn,
                    int64_t recno) {
  uint8_t h[8];
  if (pos + 8 > r->size || pread_all(r->fd, h, 8, pos))
    return fvl_err("%s: %s record %lld: truncated frame header at byte %lld (file has %lld bytes)",
                   fn, r->path, (long long)recno, (long long)pos, (long long)r->size);
  if (rd32(h) != FVL_REC_MAGIC)
    return fvl_err("%s: %s record %lld: bad magic 0x%08X at byte %lld (expected 0x%08X): not a "
                   "RecordIO frame", fn, r->path, (long long)recno, rd32(h), (long long)pos,
                   FVL_REC_MAGIC);
  uint32_t lrec = rd32(h + 4);
  *cflag = lrec >> 29;
  *len = lrec & LEN_MASK;
  if (pos + 8 + (int64_t)*len > r->size)
    return fvl_err("%s: %s record %lld: frame at byte %lld announces %u bytes but the file ends "
                   "after %lld (truncated)", fn, r->path, (long long)recno, (long long)pos, *len,
                   (long long)(r->size - pos - 8));
  return 0;
}

static int by_key(const void *a, const void *b, void *keys) {
  const int64_t *k = keys;
  int64_t x = k[*(const int64_t *)a], y = k[*(const int64_t *)b];
  return x < y ? -1 : x > y;
}

static int scan(fvl_rec *r, int64_t *cap) {
  int64_t pos = 0, recno = 0, start = -1;
  uint32_t prev = 0;
  while (pos < r->size) {
    uint32_t cf, len;
    if (frame_at(r, pos, &cf, &len, "rec_open", recno)) return -1;
    if (cf > 3)
      return fvl_err("rec_open: %s record %lld: cflag %u at byte %lld (expected 0..3)", r->path,
                     (long long)recno, cf, (long long)pos);
    int inside = start >= 0;
    if ((cf == 0 || cf == 1) && inside)
      return fvl_err("rec_open: %s record %lld: split record started at byte %lld has no end "
                     "part (cflag %u follows cflag %u)", r->path, (long long)recno,
                     (long long)start, cf, prev);
    if ((cf == 2 || cf == 3) && !inside)
      return fvl_err("rec_open: %s record %lld: continuation part (cflag %u) at byte %lld "
                     "without a start part", r->path, (long long)recno, cf, (long long)pos);
    if (cf == 1) start = pos;
    int64_t next = pos + 8 + (((int64_t)len + 3) & ~(int64_t)3);
    if (next > r->size)
      return fvl_err("rec_open: %s record %lld: padding of the frame at byte %lld is cut off "
                     "(truncated)", r->path, (long long)recno, (long long)pos);
    if (cf == 0 || cf == 3) {
      if (push(&r->key, &r->off, &r->n, cap, recno, cf == 0 ? pos : start))
        return fvl_err("rec_open: out of memory");
      recno++;
      start = -1;
    }
    prev = cf;
    pos = next;
  }
  if (start >= 0)
    return fvl_err("rec_open: %s record %lld: split record started at byte %lld is cut off "
                   "(truncated file)", r->path, (long long)recno, (long long)start);
  return 0;
}

/* a decimal number 0..INT64_MAX at b[*i], ending before len: bounded (the buffer is not
 * NUL-terminated) and overflow-free; -1 when there is no digit or the value is too large */
static int read_dec(const uint8_t *b, size_t len, size_t *i, int64_t *out) {
  int64_t v = 0;
  size_t k = *i;
  for (; k < len && b[k] >= '0' && b[k] <= '9'; k++) {
    int d = b[k] - '0';
    if (v > (INT64_MAX - d) / 10) return -1;
    v = v * 10 + d;
  }
  if (k == *i) return -1;
  *i = k;
  *out = v;
  return 0;
}

static int read_idx(fvl_rec *r, const char *idx_path, int64_t *cap) {
  uint8_t *buf;
  size_t len;
  if (fvl_read_file(idx_path, &buf, &len, "rec_open")) return -1;
  int rc = -1;
  size_t i = 0;
  int64_t line = 1;
  while (i < len) {
    int64_t k, o;
    if (read_dec(buf, len, &i, &k) || i >= len || buf[i++] != '\t' || read_dec(buf, len, &i, &o) ||
        i >= len || buf[i++] != '\n')
      goto bad;
    if (r->size < 8 || o > r->size - 8) {
      fvl_err("rec_open: %s line %lld: offset %lld is outside the .rec file '%s' (%lld bytes): "
              "index and record file do not match", idx_path, (long long)line, (long long)o, r->path,
              (long long)r->size);
      goto done;
    }
    if (push(&r->key, &r->off, &r->n, cap, k, o)) {
      fvl_err("rec_open: out of memory");
      goto done;
    }
    line++;
  }
  rc = 0;
  goto done;
bad:
  fvl_err("rec_open: %s line %lld: expected 'key<TAB>offset<LF>' with decimal numbers "
          "0..2^63-1", idx_path, (long long)line);
done:
  free(buf);
  return rc;
}

fvl_rec *fvl_rec_open(const char *path, const char *idx_path) {
  fvl_rec *r = calloc(1, sizeof *r);
  if (!r) { fvl_err("rec_open: out of memory"); return NULL; }
  r->fd = open(path, O_RDONLY | O_CLOEXEC);
  r->path = strdup(path);
  if (r->fd < 0) {
    fvl_err("rec_open: cannot open '%s': %s", path, strerror(errno));
    goto fail;
  }
  struct stat st;
  if (fstat(r->fd, &st) || !S_ISREG(st.st_mode)) {
    fvl_err("rec_open: '%s' is not a regular file", path);
    goto fail;
  }
  r->size = st.st_size;
  int64_t cap = 0;
  if (idx_path ? read_idx(r, idx_path, &cap) : scan(r, &cap)) goto fail;
  r->sorted = malloc((size_t)(r->n ? r->n : 1) * sizeof *r->sorted);
  if (!r->sorted) { fvl_err("rec_open: out of memory"); goto fail; }
  for (int64_t i = 0; i < r->n; i++) r->sorted[i] = i;
  qsort_r(r->sorted, (size_t)r->n, sizeof *r->sorted, by_key, r->key);
  for (int64_t i = 1; i < r->n; i++)
    if (r->key[r->sorted[i]] == r->key[r->sorted[i - 1]]) {
      fvl_err("rec_open: %s: key %lld appears twice", idx_path ? idx_path : path,
              (long long)r->key[r->sorted[i]]);
      goto fail;
    }
  return r;
fail:
  fvl_rec_close(r);
  return NULL;
}

void fvl_rec_close(fvl_rec *r) {
  if (!r) return;
  if (r->fd >= 0) close(r->fd);
  free(r->path);
  free(r->key);
  free(r->off);
  free(r->sorted);
  free(r);
}
int64_t fvl_rec_count(const fvl_rec *r) { return r->n; }
int64_t fvl_rec_key(const fvl_rec *r, int64_t i) { return i >= 0 && i < r->n ? r->key[i] : -1; }
const char *fvl_rec_path(const fvl_rec *r) { return r->path; }
int64_t fvl_rec_find(const fvl_rec *r, int64_t key) {
  int64_t lo = 0, hi = r->n - 1;
  while (lo <= hi) {
    int64_t mid = lo + (hi - lo) / 2, k = r->key[r->sorted[mid]];
    if (k == key) return r->sorted[mid];
    if (k < key) lo = mid + 1;
    else hi = mid - 1;
  }
  return -1;
}

int fvl_rec_read(const fvl_rec *r, int64_t i, uint8_t **buf, size_t *len) {
  *buf = NULL;
  *len = 0;
  if (i < 0 || i >= r->n)
    return fvl_err("rec_read: %s: record position %lld is outside 0..%lld", r->path, (long long)i,
                   (long long)r->n - 1);
  int64_t pos = r->off[i];
  size_t cap = 0, n = 0;
  uint8_t *out = NULL;
  for (int part = 0;; part++) {
    uint32_t cf, flen;
    if (frame_at(r, pos, &cf, &flen, "rec_read", r->key[i])) goto fail;
    if (cf > 3 || (part == 0 && cf != 0 && cf != 1) || (part > 0 && cf != 2 && cf != 3)) {
      fvl_err("rec_read: %s record %lld: cflag %u in part %d of the record at byte %lld (a split "
              "record is cflag 1, 2..., 3)", r->path, (long long)r->key[i], cf, part + 1,
              (long long)r->off[i]);
      goto fail;
    }
    size_t need = n + (part ? 4 : 0) + flen;
    if (need > cap) {
      size_t c = need + need / 2 + 16;
      uint8_t *b = realloc(out, c);
      if (!b) { fvl_err("rec_read: out of memory (%zu bytes)", c); goto fail; }
      out = b;
      cap = c;
    }
    if (part) { wr32(out + n, FVL_REC_MAGIC); n += 4; }
    if (flen && pread_all(r->fd, out + n, flen, pos + 8)) {
      fvl_err("rec_read: %s record %lld: read error at byte %lld", r->path, (long long)r->key[i],
              (long long)pos);
      goto fail;
    }
    n += flen;
    pos += 8 + (((int64_t)flen + 3) & ~(int64_t)3);
    if (cf == 0 || cf == 3) break;
  }
  if (!out) out = malloc(1);
  *buf = out;
  *len = n;
  return 0;
fail:
  free(out);
  return -1;
}

int64_t fvl_rec_read_head(const fvl_rec *r, int64_t i, uint8_t *buf, size_t cap) {
  if (i < 0 || i >= r->n)
    return fvl_err("rec_read: %s: record position %lld is outside 0..%lld", r->path, (long long)i,
                   (long long)r->n - 1);
  uint32_t cf, flen;
  if (frame_at(r, r->off[i], &cf, &flen, "rec_read", r->key[i])) return -1;
  if (cf == 0 || flen >= cap) {
    if (cf != 0 && cf != 1)
      return fvl_err("rec_read: %s record %lld: cflag %u at byte %lld where a record starts",
                     r->path, (long long)r->key[i], cf, (long long)r->off[i]);
    size_t n = flen < cap ? flen : cap;
    if (n && pread_all(r->fd, buf, n, r->off[i] + 8))
      return fvl_err("rec_read: %s record %lld: read error", r->path, (long long)r->key[i]);
    return (int64_t)n;
  }
  uint8_t *all;
  size_t len;
  if (fvl_rec_read(r, i, &all, &len)) return -1;
  size_t n = len < cap ? len : cap;
  memcpy(buf, all, n);
  free(all);
  return (int64_t)n;
}

/* ---------------------------------------------------------------- IRHeader */
int fvl_irheader_parse(const uint8_t *rec, size_t len, fvl_irheader *h, const char *what) {
  memset(h, 0, sizeof *h);
  if (len < 24)
    return fvl_err("%s: record of %zu bytes is shorter than the 24-byte IRHeader", what, len);
  h->flag = rd32(rec);
  memcpy(&h->label, rec + 4, 4);
  memcpy(&h->id, rec + 8, 8);
  memcpy(&h->id2, rec + 16, 8);
  size_t need = 24 + (size_t)h->flag * 4;
  if (h->flag > (1u << 24) || need > len)
    return fvl_err("%s: IRHeader flag = %u announces %u float labels but the record has %zu "
                   "bytes after the header", what, h->flag, h->flag, len - 24);
  h->labels = h->flag ? (const float *)(const void *)(rec + 24) : NULL;
  h->payload = rec + need;
  h->payload_len = len - need;
  return 0;
}
float fvl_irheader_label(const fvl_irheader *h, uint32_t k) {
  if (!h->labels) return k == 0 ? h->label : 0.f;
  float v;
  memcpy(&v, (const uint8_t *)h->labels + 4 * (size_t)k, 4);
  return v;
}

/* ---------------------------------------------------------------- writer */
struct fvl_rec_writer {
  fvl_atomic_file rec, idx;  /* path.tmp.<pid> files until the commit (engine/sys.h) */
  int64_t pos;
  int failed;
};

fvl_rec_writer *fvl_rec_writer_open(const char *path, const char *idx_path) {
  fvl_rec_writer *w = calloc(1, sizeof *w);
  if (!w) { fvl_err("rec_writer: out of memory"); return NULL; }
  char ip[4096];
  size_t n = strlen(path);
  if (n >= sizeof w->rec.path - 32 || (idx_path && strlen(idx_path) >= sizeof ip - 32)) {
    free(w);
    fvl_err("rec_writer: path '%.80s...' is too long", path);
    return NULL;
  }
  if (idx_path) snprintf(ip, sizeof ip, "%s", idx_path);
  else if (n > 4 && strcmp(path + n - 4, ".rec") == 0) snprintf(ip, sizeof ip, "%.*s.idx", (int)(n - 4), path);
  else snprintf(ip, sizeof ip, "%s.idx", path);
  if (fvl_atomic_open(&w->rec, path, "rec_writer") < 0) { free(w); return NULL; }
  if (fvl_atomic_open(&w->idx, ip, "rec_writer") < 0) {
    fvl_atomic_abort(&w->rec);
    free(w);
    return NULL;
  }
  return w;
}

static int put_frame(fvl_rec_writer *w, uint32_t cflag, const uint8_t *p, uint32_t n) {
  uint8_t h[8], zero[4] = {0, 0, 0, 0};
  wr32(h, FVL_REC_MAGIC);
  wr32(h + 4, cflag << 29 | n);
  uint32_t padn = (4 - (n & 3)) & 3;
  if (fwrite(h, 1, 8, w->rec.f) != 8 || (n && fwrite(p, 1, n, w->rec.f) != n) ||
      (padn && fwrite(zero, 1, padn, w->rec.f) != padn))
    return fvl_err("rec_writer: writing '%s': %s", w->rec.tmp, strerror(errno));
  w->pos += 8 + n + padn;
  return 0;
}

int fvl_rec_writer_put(fvl_rec_writer *w, uint64_t key, const uint8_t *data, size_t len) {
  if (!w || w->failed) return fvl_err("rec_writer: the writer is closed or failed earlier");
  if (len > LEN_MASK) {
    w->failed = 1;
    return fvl_err("rec_writer: record of %zu bytes (at most %u)", len, LEN_MASK);
  }
  if (key > (uint64_t)INT64_MAX) return fvl_err("rec_writer: key %llu is too large", (unsigned long long)key);
  int64_t start = w->pos;
  /* split where the payload holds the magic at a 4-aligned offset (dmlc's rule) */
  size_t dptr = 0, lower = len & ~(size_t)3;
  for (size_t i = 0; i < lower; i += 4) {
    if (rd32(data + i) == FVL_REC_MAGIC) {
      if (put_frame(w, dptr == 0 ? 1u : 2u, data + dptr, (uint32_t)(i - dptr))) goto fail;
      dptr = i + 4;
    }
  }
  if (put_frame(w, dptr ? 3u : 0u, data + dptr, (uint32_t)(len - dptr))) goto fail;
  if (fprintf(w->idx.f, "%llu\t%lld\n", (unsigned long long)key, (long long)start) < 0) {
    fvl_err("rec_writer: writing '%s': %s", w->idx.tmp, strerror(errno));
    goto fail;
  }
  return 0;
fail:
  w->failed = 1;
  return -1;
}

int fvl_rec_writer_put_image(fvl_rec_writer *w, uint64_t key, uint32_t flag, float label,
                             const float *labels, uint64_t id, uint64_t id2, const uint8_t *img,
                             size_t img_len) {
  if (flag > (1u << 24)) return fvl_err("rec_writer: %u labels (at most 2^24)", flag);
  size_t n = 24 + (size_t)flag * 4 + img_len;
  uint8_t *b = malloc(n ? n : 1);
  if (!b) return fvl_err("rec_writer: out of memory (%zu bytes)", n);
  wr32(b, flag);
  float l = flag ? 0.f : label;
  memcpy(b + 4, &l, 4);
  memcpy(b + 8, &id, 8);
  memcpy(b + 16, &id2, 8);
  if (flag) memcpy(b + 24, labels, (size_t)flag * 4);
  if (img_len) memcpy(b + 24 + (size_t)flag * 4, img, img_len);
  int rc = fvl_rec_writer_put(w, key, b, n);
  free(b);
  return rc;
}

int fvl_rec_writer_close(fvl_rec_writer *w, int commit) {
  if (!w) return 0;
  int rc = 0;
  if (commit && w->failed) rc = fvl_err("rec_writer: '%s' not written: an earlier write failed", w->rec.path);
  if (!commit || w->failed) {
    fvl_atomic_abort(&w->rec);
    fvl_atomic_abort(&w->idx);
    free(w);
    return rc;
  }
  /* the old index goes first and the .rec before the new index: a crash in between leaves a
   * whole .rec without an index (read by scanning), never a .rec with a stale index */
  if (unlink(w->idx.path) && errno != ENOENT) {
    rc = fvl_err("rec_writer: removing the old index '%s': %s", w->idx.path, strerror(errno));
    fvl_atomic_abort(&w->rec);
    fvl_atomic_abort(&w->idx);
  } else if (fvl_atomic_commit(&w->rec, "rec_writer")) {
    rc = -1;
    fvl_atomic_abort(&w->idx);
  } else if (fvl_atomic_commit(&w->idx, "rec_writer")) {
    rc = -1;
  }
  free(w);
  return rc;
}
