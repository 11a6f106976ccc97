/* tensor.c — storage, views, creation, copies, .npy. Elementwise math lives in ops.c. */
#include "tensor.h"
#include "autograd.h"
#include "rng.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <errno.h>
#include <unistd.h>
#include <fcntl.h>

/* ------------------------------------------------------------------ lifetime */
static fvl_storage *storage_new(size_t nbytes) {
  fvl_storage *s = malloc(sizeof *s);
  if (!s) { fvl_err("out of memory"); return NULL; }
  s->data = fvl_alloc(nbytes);
  if (!s->data) { free(s); return NULL; }
  s->nbytes = nbytes;
  s->refs = 1;
  return s;
}
static void storage_release(fvl_storage *s) {
  if (s && --s->refs == 0) {
    fvl_dealloc(s->data, s->nbytes);
    free(s);
  }
}

fvl_tensor *fvl_retain(fvl_tensor *t) {
  if (t) t->refs++;
  return t;
}
void fvl_release(fvl_tensor *t) {
  if (!t || --t->refs > 0) return;
  storage_release(t->st);
  fvl_release(t->grad);
  if (t->grad_fn) fvl_node_release(t->grad_fn);
  free(t);
}

static size_t dtype_size(fvl_dtype dt) { (void)dt; return 4; }
const char *fvl_dtype_name(fvl_dtype dt) { return dt == FVL_I32 ? "int32" : "float32"; }

static fvl_tensor *view_of(fvl_tensor *base) {
  fvl_tensor *t = calloc(1, sizeof *t);
  if (!t) { fvl_err("out of memory"); return NULL; }
  *t = *base;
  t->st->refs++;
  t->refs = 1;
  t->grad = NULL;
  t->grad_fn = NULL;
  t->requires_grad = 0;
  return t;
}

static void set_contig_strides(fvl_tensor *t) {
  int64_t s = 1;
  for (int d = t->ndim - 1; d >= 0; d--) { t->stride[d] = s; s *= t->size[d]; }
}

/* ------------------------------------------------------------------ creation */
fvl_tensor *fvl_empty(fvl_dtype dt, int ndim, const int64_t *size) {
  if (ndim < 0 || ndim > FVL_MAXDIM) { fvl_err("tensor: %d dimensions (at most %d)", ndim, FVL_MAXDIM); return NULL; }
  int64_t n = 1;
  for (int d = 0; d < ndim; d++) {
    if (size[d] < 0) { fvl_err("tensor: size[%d] = %lld is negative", d + 1, (long long)size[d]); return NULL; }
    n *= size[d];
    if (n > ((int64_t)1 << 40)) { fvl_err("tensor: too many elements"); return NULL; }
  }
  fvl_tensor *t = calloc(1, sizeof *t);
  if (!t) { fvl_err("out of memory"); return NULL; }
  t->st = storage_new((size_t)n * dtype_size(dt));
  if (!t->st) { free(t); return NULL; }
  t->ndim = ndim;
  for (int d = 0; d < ndim; d++) t->size[d] = size[d];
  set_contig_strides(t);
  t->dtype = dt;
  t->refs = 1;
  return t;
}
fvl_tensor *fvl_zeros(fvl_dtype dt, int ndim, const int64_t *size) {
  fvl_tensor *t = fvl_empty(dt, ndim, size);
  if (t) memset(t->st->data, 0, t->st->nbytes);
  return t;
}
fvl_tensor *fvl_full(fvl_dtype dt, int ndim, const int64_t *size, double v) {
  fvl_tensor *t = fvl_empty(dt, ndim, size);
  if (t) fvl_fill_(t, v);
  return t;
}
fvl_tensor *fvl_empty_like(const fvl_tensor *t) { return fvl_empty(t->dtype, t->ndim, t->size); }
fvl_tensor *fvl_zeros_like(const fvl_tensor *t) { return fvl_zeros(t->dtype, t->ndim, t->size); }
fvl_tensor *fvl_scalar(float v) {
  fvl_tensor *t = fvl_empty(FVL_F32, 0, NULL);
  if (t) fvl_f32(t)[0] = v;
  return t;
}
fvl_tensor *fvl_arange(fvl_dtype dt, double start, double stop, double step) {
  if (step == 0 || !isfinite(start) || !isfinite(stop) || !isfinite(step)) {
    fvl_err("arange: step must be non-zero and bounds finite");
    return NULL;
  }
  double nd = floor((stop - start) / step + 1e-9) + 1;
  int64_t n = nd > 0 ? (int64_t)nd : 0;
  fvl_tensor *t = fvl_empty(dt, 1, &n);
  if (!t) return NULL;
  for (int64_t i = 0; i < n; i++) {
    double v = start + step * (double)i;
    if (dt == FVL_F32) fvl_f32(t)[i] = (float)v; else fvl_i32(t)[i] = (int32_t)v;
  }
  return t;
}
fvl_tensor *fvl_from_data(fvl_dtype dt, int ndim, const int64_t *size, const void *src) {
  fvl_tensor *t = fvl_empty(dt, ndim, size);
  if (t && src) memcpy(t->st->data, src, t->st->nbytes);
  return t;
}
fvl_tensor *fvl_rand(int ndim, const int64_t *size, float lo, float hi) {
  fvl_tensor *t = fvl_empty(FVL_F32, ndim, size);
  if (t) fvl_rng_fill_uniform(fvl_rng_global(), fvl_f32(t), (size_t)fvl_numel(t), lo, hi);
  return t;
}
fvl_tensor *fvl_randn(int ndim, const int64_t *size, float mean, float std) {
  fvl_tensor *t = fvl_empty(FVL_F32, ndim, size);
  if (t) fvl_rng_fill_normal(fvl_rng_global(), fvl_f32(t), (size_t)fvl_numel(t), mean, std);
  return t;
}
fvl_tensor *fvl_randint(int ndim, const int64_t *size, int32_t lo, int32_t hi) {
  if (hi < lo) { fvl_err("randint: empty range %d..%d", lo, hi); return NULL; }
  fvl_tensor *t = fvl_empty(FVL_I32, ndim, size);
  if (t) fvl_rng_fill_int(fvl_rng_global(), fvl_i32(t), (size_t)fvl_numel(t), lo, hi);
  return t;
}

/* ------------------------------------------------------------------ access */
int64_t fvl_numel(const fvl_tensor *t) {
  int64_t n = 1;
  for (int d = 0; d < t->ndim; d++) n *= t->size[d];
  return n;
}
int fvl_is_contiguous(const fvl_tensor *t) {
  int64_t s = 1;
  for (int d = t->ndim - 1; d >= 0; d--) {
    if (t->size[d] != 1 && t->stride[d] != s) return 0;
    s *= t->size[d];
  }
  return 1;
}
static int64_t offset_of(const fvl_tensor *t, const int64_t *idx) {
  int64_t o = t->offset;
  for (int d = 0; d < t->ndim; d++) o += idx[d] * t->stride[d];
  return o;
}
double fvl_get(const fvl_tensor *t, const int64_t *idx) {
  int64_t o = offset_of(t, idx);
  return t->dtype == FVL_F32 ? ((float *)t->st->data)[o] : ((int32_t *)t->st->data)[o];
}
void fvl_set(fvl_tensor *t, const int64_t *idx, double v) {
  int64_t o = offset_of(t, idx);
  if (t->dtype == FVL_F32) ((float *)t->st->data)[o] = (float)v;
  else ((int32_t *)t->st->data)[o] = (int32_t)v;
}
const char *fvl_shape_str(const fvl_tensor *t, char *buf, size_t n) {
  size_t k = 0;
  buf[0] = 0;
  if (t->ndim == 0) { snprintf(buf, n, "scalar"); return buf; }
  for (int d = 0; d < t->ndim && k < n; d++)
    k += (size_t)snprintf(buf + k, n - k, d ? "x%lld" : "%lld", (long long)t->size[d]);
  return buf;
}
int fvl_same_shape(const fvl_tensor *a, const fvl_tensor *b) {
  if (a->ndim != b->ndim) return 0;
  for (int d = 0; d < a->ndim; d++) if (a->size[d] != b->size[d]) return 0;
  return 1;
}

/* ------------------------------------------------------------------ strided iteration */
/* Visits every element of `t` in row-major order, calling body with the element offset.
 * Used by copies; elementwise math has its own broadcasting loops in ops.c. */
#define FOR_EACH_OFFSET(t, off, body)                                              \
  do {                                                                             \
    int64_t _idx[FVL_MAXDIM] = {0};                                                \
    int64_t _n = fvl_numel(t);                                                     \
    int64_t off = (t)->offset;                                                     \
    for (int64_t _i = 0; _i < _n; _i++) {                                          \
      body;                                                                        \
      for (int _d = (t)->ndim - 1; _d >= 0; _d--) {                                \
        if (++_idx[_d] < (t)->size[_d]) { off += (t)->stride[_d]; break; }         \
        off -= (t)->stride[_d] * (_idx[_d] - 1);                                   \
        _idx[_d] = 0;                                                              \
      }                                                                            \
    }                                                                              \
  } while (0)

int fvl_fill_(fvl_tensor *t, double v) {
  if (t->dtype == FVL_F32) {
    float *p = t->st->data, fv = (float)v;
    if (fvl_is_contiguous(t)) {
      float *q = fvl_f32(t);
      int64_t n = fvl_numel(t);
      for (int64_t i = 0; i < n; i++) q[i] = fv;
    } else FOR_EACH_OFFSET(t, o, p[o] = fv);
  } else {
    int32_t *p = t->st->data, iv = (int32_t)v;
    FOR_EACH_OFFSET(t, o, p[o] = iv);
  }
  return 0;
}

/* broadcast src's shape onto dst's shape: strides of src aligned right, 0 on broadcast dims */
static int broadcast_strides(const fvl_tensor *src, const fvl_tensor *dst, int64_t *st, const char *fn) {
  int off = dst->ndim - src->ndim;
  if (off < 0) goto bad;
  for (int d = 0; d < dst->ndim; d++) {
    int sd = d - off;
    if (sd < 0) { st[d] = 0; continue; }
    if (src->size[sd] == dst->size[d]) st[d] = src->stride[sd];
    else if (src->size[sd] == 1) st[d] = 0;
    else goto bad;
  }
  return 0;
bad:;
  char a[64], b[64];
  return fvl_err("%s: cannot broadcast %s to %s", fn, fvl_shape_str(src, a, sizeof a),
                 fvl_shape_str(dst, b, sizeof b));
}

int fvl_copy_(fvl_tensor *dst, const fvl_tensor *src) {
  int64_t sst[FVL_MAXDIM];
  if (broadcast_strides(src, dst, sst, "copy") < 0) return -1;
  if (fvl_is_contiguous(dst) && fvl_is_contiguous(src) && fvl_same_shape(dst, src) &&
      dst->dtype == src->dtype) {
    memmove(fvl_f32(dst), fvl_f32(src), (size_t)fvl_numel(dst) * 4);
    return 0;
  }
  int64_t idx[FVL_MAXDIM] = {0};
  int64_t n = fvl_numel(dst);
  int64_t od = dst->offset, os = src->offset;
  for (int64_t i = 0; i < n; i++) {
    double v = src->dtype == FVL_F32 ? ((float *)src->st->data)[os] : ((int32_t *)src->st->data)[os];
    if (dst->dtype == FVL_F32) ((float *)dst->st->data)[od] = (float)v;
    else ((int32_t *)dst->st->data)[od] = (int32_t)v;
    for (int d = dst->ndim - 1; d >= 0; d--) {
      if (++idx[d] < dst->size[d]) { od += dst->stride[d]; os += sst[d]; break; }
      od -= dst->stride[d] * (idx[d] - 1);
      os -= sst[d] * (idx[d] - 1);
      idx[d] = 0;
    }
  }
  return 0;
}
int fvl_uniform_(fvl_tensor *t, float lo, float hi) {
  if (t->dtype != FVL_F32 || !fvl_is_contiguous(t)) return fvl_err("uniform_: needs a contiguous float32 tensor");
  fvl_rng_fill_uniform(fvl_rng_global(), fvl_f32(t), (size_t)fvl_numel(t), lo, hi);
  return 0;
}
int fvl_normal_(fvl_tensor *t, float mean, float std) {
  if (t->dtype != FVL_F32 || !fvl_is_contiguous(t)) return fvl_err("normal_: needs a contiguous float32 tensor");
  fvl_rng_fill_normal(fvl_rng_global(), fvl_f32(t), (size_t)fvl_numel(t), mean, std);
  return 0;
}

/* ------------------------------------------------------------------ views + their backward */
static int bw_view_reshape(fvl_node *n, fvl_tensor *g) {
  fvl_tensor *gc = fvl_contiguous(g);
  if (!gc) return -1;
  fvl_tensor *r = fvl_reshape(gc, (int)n->iv[0], n->out_size); /* out_size reused as input shape */
  fvl_release(gc);
  if (!r) return -1;
  int rc = fvl_node_accum(n, 0, r);
  fvl_release(r);
  return rc;
}
static fvl_node *record_reshape_like(const char *name, fvl_tensor *out, fvl_tensor *in) {
  fvl_node *n = fvl_record(name, bw_view_reshape, out, 1, &in);
  if (n) {
    n->iv[0] = in->ndim;
    for (int d = 0; d < in->ndim; d++) n->out_size[d] = in->size[d];
  }
  return n;
}
static int bw_transpose(fvl_node *n, fvl_tensor *g) {
  fvl_tensor *r = fvl_transpose(g, (int)n->iv[0], (int)n->iv[1]);
  if (!r) return -1;
  int rc = fvl_node_accum(n, 0, r);
  fvl_release(r);
  return rc;
}
/* narrow/select: scatter g into zeros of the input's shape */
static int bw_slice(fvl_node *n, fvl_tensor *g) {
  fvl_tensor *in = n->in[0];
  fvl_tensor *z = fvl_zeros(FVL_F32, in->ndim, in->size);
  if (!z) return -1;
  fvl_tensor *v = n->iv[2] ? fvl_select(z, (int)n->iv[0], n->iv[1])
                           : fvl_narrow(z, (int)n->iv[0], n->iv[1], n->iv[3]);
  int rc = v ? fvl_copy_(v, g) : -1;
  fvl_release(v);
  if (rc == 0) rc = fvl_node_accum(n, 0, z);
  fvl_release(z);
  return rc;
}

static int check_dim(const char *fn, const fvl_tensor *t, int dim) {
  if (dim < 0 || dim >= t->ndim)
    return fvl_err("%s: dim %d is outside 1..%d", fn, dim + 1, t->ndim);
  return 0;
}

fvl_tensor *fvl_transpose(fvl_tensor *t, int d0, int d1) {
  if (check_dim("transpose", t, d0) < 0 || check_dim("transpose", t, d1) < 0) return NULL;
  fvl_tensor *v = view_of(t);
  if (!v) return NULL;
  int64_t s = v->size[d0]; v->size[d0] = v->size[d1]; v->size[d1] = s;
  s = v->stride[d0]; v->stride[d0] = v->stride[d1]; v->stride[d1] = s;
  fvl_node *n = fvl_record("transpose", bw_transpose, v, 1, &t);
  if (n) { n->iv[0] = d0; n->iv[1] = d1; }
  return v;
}
fvl_tensor *fvl_narrow(fvl_tensor *t, int dim, int64_t start, int64_t len) {
  if (check_dim("narrow", t, dim) < 0) return NULL;
  if (start < 0 || len < 0 || start + len > t->size[dim]) {
    fvl_err("narrow: rows %lld..%lld are outside 1..%lld of dim %d", (long long)start + 1,
            (long long)(start + len), (long long)t->size[dim], dim + 1);
    return NULL;
  }
  fvl_tensor *v = view_of(t);
  if (!v) return NULL;
  v->offset += start * v->stride[dim];
  v->size[dim] = len;
  fvl_node *n = fvl_record("narrow", bw_slice, v, 1, &t);
  if (n) { n->iv[0] = dim; n->iv[1] = start; n->iv[2] = 0; n->iv[3] = len; }
  return v;
}
fvl_tensor *fvl_select(fvl_tensor *t, int dim, int64_t i) {
  if (check_dim("select", t, dim) < 0) return NULL;
  if (i < 0 || i >= t->size[dim]) {
    fvl_err("select: index %lld is outside 1..%lld", (long long)i + 1, (long long)t->size[dim]);
    return NULL;
  }
  fvl_tensor *v = view_of(t);
  if (!v) return NULL;
  v->offset += i * v->stride[dim];
  for (int d = dim; d < v->ndim - 1; d++) { v->size[d] = v->size[d + 1]; v->stride[d] = v->stride[d + 1]; }
  v->ndim--;
  fvl_node *n = fvl_record("select", bw_slice, v, 1, &t);
  if (n) { n->iv[0] = dim; n->iv[1] = i; n->iv[2] = 1; }
  return v;
}
fvl_tensor *fvl_contiguous(fvl_tensor *t) {
  if (fvl_is_contiguous(t)) return fvl_retain(t);
  return fvl_clone(t);
}
static int bw_identity(fvl_node *n, fvl_tensor *g) { return fvl_node_accum(n, 0, g); }
fvl_tensor *fvl_clone(fvl_tensor *t) {
  fvl_tensor *c = fvl_empty(t->dtype, t->ndim, t->size);
  if (!c) return NULL;
  fvl_copy_(c, t);
  fvl_record("clone", bw_identity, c, 1, &t);
  return c;
}
fvl_tensor *fvl_detach(fvl_tensor *t) { return view_of(t); }
fvl_tensor *fvl_to_dtype(fvl_tensor *t, fvl_dtype dt) {
  if (t->dtype == dt) return fvl_retain(t);
  fvl_tensor *c = fvl_empty(dt, t->ndim, t->size);
  if (c) fvl_copy_(c, t);
  return c;
}
fvl_tensor *fvl_reshape(fvl_tensor *t, int ndim, const int64_t *size) {
  if (ndim < 0 || ndim > FVL_MAXDIM) { fvl_err("reshape: %d dimensions (at most %d)", ndim, FVL_MAXDIM); return NULL; }
  int64_t sz[FVL_MAXDIM], n = 1;
  int infer = -1;
  for (int d = 0; d < ndim; d++) {
    sz[d] = size[d];
    if (sz[d] == -1) {
      if (infer >= 0) { fvl_err("reshape: only one size may be -1"); return NULL; }
      infer = d;
    } else if (sz[d] < 0) {
      fvl_err("reshape: size %lld is negative", (long long)sz[d]);
      return NULL;
    } else n *= sz[d];
  }
  int64_t total = fvl_numel(t);
  if (infer >= 0) {
    if (n == 0 || total % n) goto bad;
    sz[infer] = total / n;
    n = total;
  }
  if (n != total) goto bad;
  fvl_tensor *src = fvl_contiguous(t);
  if (!src) return NULL;
  fvl_tensor *v = view_of(src);
  fvl_release(src);
  if (!v) return NULL;
  v->ndim = ndim;
  for (int d = 0; d < ndim; d++) v->size[d] = sz[d];
  set_contig_strides(v);
  record_reshape_like("reshape", v, t);
  return v;
bad:;
  char a[64];
  fvl_err("reshape: cannot view %s (%lld elements) as %lld elements", fvl_shape_str(t, a, sizeof a),
          (long long)total, (long long)n);
  return NULL;
}
fvl_tensor *fvl_unsqueeze(fvl_tensor *t, int dim) {
  if (dim < 0 || dim > t->ndim || t->ndim >= FVL_MAXDIM) {
    fvl_err("unsqueeze: dim %d is outside 1..%d", dim + 1, t->ndim + 1);
    return NULL;
  }
  int64_t sz[FVL_MAXDIM];
  for (int d = 0, k = 0; d <= t->ndim; d++) sz[d] = d == dim ? 1 : t->size[k++];
  return fvl_reshape(t, t->ndim + 1, sz);
}

/* ------------------------------------------------------------------ .npy */
int fvl_npy_save(const char *path, const fvl_tensor *t) {
  char hdr[256], shape[160] = "";
  size_t k = 0;
  for (int d = 0; d < t->ndim; d++)
    k += (size_t)snprintf(shape + k, sizeof shape - k, "%lld,%s", (long long)t->size[d],
                          (t->ndim > 1 && d < t->ndim - 1) ? " " : "");
  if (t->ndim > 1) shape[k - 1] = 0;  /* "(2, 3)" not "(2, 3,)" */
  int hl = snprintf(hdr, sizeof hdr, "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }",
                    t->dtype == FVL_F32 ? "<f4" : "<i4", shape);
  int total = 10 + hl + 1;
  int pad = (64 - total % 64) % 64;
  memset(hdr + hl, ' ', (size_t)pad);
  hdr[hl + pad] = '\n';
  uint16_t hlen = (uint16_t)(hl + pad + 1);
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
  FILE *f = fopen(tmp, "wb");
  if (!f) return fvl_err("save: cannot open %s: %s", tmp, strerror(errno));
  unsigned char magic[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(hlen & 0xff),
                             (unsigned char)(hlen >> 8)};
  int ok = fwrite(magic, 1, 10, f) == 10 && fwrite(hdr, 1, hlen, f) == hlen;
  fvl_tensor *c = fvl_contiguous((fvl_tensor *)t);
  if (!c) { fclose(f); remove(tmp); return -1; }
  size_t n = (size_t)fvl_numel(c);
  if (ok && n) ok = fwrite(fvl_f32(c), 4, n, f) == n;
  fvl_release(c);
  if (ok) ok = fflush(f) == 0 && fsync(fileno(f)) == 0;
  if (fclose(f) != 0) ok = 0;
  if (!ok || rename(tmp, path) != 0) {
    int e = errno;
    remove(tmp);
    return fvl_err("save: writing %s failed: %s", path, strerror(e));
  }
  return 0;
}

fvl_tensor *fvl_npy_load(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) { fvl_err("load: cannot open %s: %s", path, strerror(errno)); return NULL; }
  unsigned char m[12];
  char *hdr = NULL;
  fvl_tensor *t = NULL;
  if (fread(m, 1, 8, f) != 8 || memcmp(m, "\x93NUMPY", 6) != 0) {
    fvl_err("load: %s is not a .npy file (bad magic)", path);
    goto done;
  }
  uint32_t hlen;
  if (m[6] == 1) {
    if (fread(m + 8, 1, 2, f) != 2) goto trunc;
    hlen = m[8] | (m[9] << 8);
  } else if (m[6] == 2 || m[6] == 3) {
    if (fread(m + 8, 1, 4, f) != 4) goto trunc;
    hlen = m[8] | (m[9] << 8) | ((uint32_t)m[10] << 16) | ((uint32_t)m[11] << 24);
  } else {
    fvl_err("load: %s: unsupported .npy version %d", path, m[6]);
    goto done;
  }
  if (hlen > 65536) { fvl_err("load: %s: header too long", path); goto done; }
  hdr = malloc(hlen + 1);
  if (!hdr || fread(hdr, 1, hlen, f) != hlen) goto trunc;
  hdr[hlen] = 0;
  fvl_dtype dt;
  char *dp = strstr(hdr, "'descr'");
  if (!dp) { fvl_err("load: %s: header has no descr", path); goto done; }
  if (strstr(dp, "'<f4'")) dt = FVL_F32;
  else if (strstr(dp, "'<i4'")) dt = FVL_I32;
  else {
    char d[32] = "?";
    sscanf(dp, "'descr': '%31[^']", d);
    fvl_err("load: %s: dtype '%s' is not supported (expected <f4 or <i4)", path, d);
    goto done;
  }
  if (strstr(hdr, "'fortran_order': True")) { fvl_err("load: %s: Fortran order is not supported", path); goto done; }
  char *sp = strstr(hdr, "'shape'");
  sp = sp ? strchr(sp, '(') : NULL;
  if (!sp) { fvl_err("load: %s: header has no shape", path); goto done; }
  int64_t size[FVL_MAXDIM];
  int nd = 0;
  sp++;
  while (*sp && *sp != ')') {
    while (*sp == ' ' || *sp == ',') sp++;
    if (*sp == ')') break;
    char *e;
    long long v = strtoll(sp, &e, 10);
    if (e == sp || v < 0 || nd >= FVL_MAXDIM) { fvl_err("load: %s: bad shape in header", path); goto done; }
    size[nd++] = v;
    sp = e;
  }
  /* the data must be there before anything is allocated for it */
  long here = ftell(f);
  if (here < 0 || fseek(f, 0, SEEK_END) != 0) { fvl_err("load: %s: cannot seek", path); goto done; }
  long end = ftell(f);
  fseek(f, here, SEEK_SET);
  double want = 4;
  for (int d = 0; d < nd; d++) want *= (double)size[d];
  if ((double)(end - here) < want) goto trunc;
  t = fvl_empty(dt, nd, size);
  if (!t) goto done;
  size_t n = (size_t)fvl_numel(t);
  if (n && fread(t->st->data, 4, n, f) != n) { fvl_release(t); t = NULL; goto trunc; }
  goto done;
trunc:
  fvl_err("load: %s is truncated", path);
done:
  free(hdr);
  fclose(f);
  return t;
}
