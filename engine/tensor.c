/* tensor.c — storage, views, creation, copies, .npy. Elementwise math lives in ops.c. */
#include "tensor.h"
#include "autograd.h"
#include "rng.h"
#include "sys.h"
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

/* float → int32 as a defined conversion: truncation toward 0, saturating at the int32 range,
 * NaN → 0 (a plain cast of an out-of-range float is undefined behaviour) */
static inline int32_t to_i32(double v) {
  if (!(v == v)) return 0;
  if (v >= 2147483647.0) return INT32_MAX;
  if (v <= -2147483648.0) return INT32_MIN;
  return (int32_t)v;
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
static void shape_text(int ndim, const int64_t *size, char *buf, size_t n) {
  size_t k = 0;
  buf[0] = 0;
  if (ndim == 0) snprintf(buf, n, "scalar");
  for (int d = 0; d < ndim && k < n; d++)
    k += (size_t)snprintf(buf + k, n - k, d ? "x%lld" : "%lld", (long long)size[d]);
}
int fvl_shape_check(const char *fn, int ndim, const int64_t *size, int64_t *numel) {
  if (ndim < 0 || ndim > FVL_MAXDIM) return fvl_err("%s: %d dimensions (at most %d)", fn, ndim, FVL_MAXDIM);
  int64_t span = 1;   /* product of the non-zero sizes: bounds every contiguous stride */
  int zero = 0, over = 0;
  for (int d = 0; d < ndim; d++) {
    if (size[d] < 0) return fvl_err("%s: size[%d] = %lld is negative (0-based dim)", fn, d, (long long)size[d]);
    if (size[d] == 0) zero = 1;
    else if (fvl_mul_overflow(span, size[d], &span) || span > FVL_MAX_NUMEL) over = 1;
    if (over) break;
  }
  if (over) {
    char b[160];
    shape_text(ndim, size, b, sizeof b);
    if (!zero) return fvl_err("%s: shape %s has more than 2^40 elements", fn, b);
    return fvl_err("%s: shape %s: its non-zero sizes multiply past 2^40 (the strides would overflow)", fn, b);
  }
  int64_t n = zero ? 0 : span;
  if (numel) *numel = n;
  return 0;
}

fvl_tensor *fvl_empty(fvl_dtype dt, int ndim, const int64_t *size) {
  int64_t n;
  if (fvl_shape_check("tensor", ndim, size, &n) < 0) return NULL;
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
    if (dt == FVL_F32) fvl_f32(t)[i] = (float)v; else fvl_i32(t)[i] = to_i32(v);
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
  return t->dtype == FVL_F32 ? (double)((float *)t->st->data)[o] : (double)((int32_t *)t->st->data)[o];
}
void fvl_set(fvl_tensor *t, const int64_t *idx, double v) {
  int64_t o = offset_of(t, idx);
  if (t->dtype == FVL_F32) ((float *)t->st->data)[o] = (float)v;
  else ((int32_t *)t->st->data)[o] = to_i32(v);
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
    int32_t *p = t->st->data, iv = to_i32(v);
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
    double v = src->dtype == FVL_F32 ? (double)((float *)src->st->data)[os] : (double)((int32_t *)src->st->data)[os];
    if (dst->dtype == FVL_F32) ((float *)dst->st->data)[od] = (float)v;
    else ((int32_t *)dst->st->data)[od] = to_i32(v);
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
  fvl_tensor *r = fvl_reshape(gc, (int)n->iv[0], n->out_size); /* the input shape */
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

/* the engine's dim invariant (0-based; the bindings have checked the user's 1-based dim) */
int fvl_check_dim(const char *fn, int dim, int ndim) {
  if (dim >= 0 && dim < ndim) return 0;
  if (ndim == 0) return fvl_err("%s: dim %d of a 0-D tensor (0-based)", fn, dim);
  return fvl_err("%s: dim %d is outside 0..%d (0-based)", fn, dim, ndim - 1);
}
static int check_dim(const char *fn, const fvl_tensor *t, int dim) { return fvl_check_dim(fn, dim, t->ndim); }

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
  if (start < 0 || len < 0 || start > t->size[dim] || len > t->size[dim] - start) {
    fvl_err("narrow: start %lld, length %lld do not fit the %lld rows of dim %d (0-based)", (long long)start,
            (long long)len, (long long)t->size[dim], dim);
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
    fvl_err("select: index %lld is outside 0..%lld of dim %d (0-based)", (long long)i, (long long)t->size[dim] - 1, dim);
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
    }
  }
  /* the asked shape itself (the inferred size as 1) must be a valid shape: bounded product */
  int64_t asked[FVL_MAXDIM] = {0};
  for (int d = 0; d < ndim; d++) asked[d] = d == infer ? 1 : sz[d];
  if (fvl_shape_check("reshape", ndim, asked, &n) < 0) return NULL;
  int64_t total = fvl_numel(t);
  if (infer >= 0) {
    if (n == 0 || total % n) goto bad;
    sz[infer] = total / n;
    n = total;
  }
  if (n != total) goto bad;
  if (fvl_shape_check("reshape", ndim, sz, NULL) < 0) return NULL;   /* strides of 0-size shapes */
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
  if (t->ndim >= FVL_MAXDIM) {
    fvl_err("unsqueeze: a %d-D tensor cannot take another dim (at most %d)", t->ndim, FVL_MAXDIM);
    return NULL;
  }
  if (fvl_check_dim("unsqueeze", dim, t->ndim + 1) < 0) return NULL;
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
  fvl_atomic_file a;   /* sys.h: tmp + fsync + rename + fsync of the directory */
  if (fvl_atomic_open(&a, path, "save") < 0) return fvl_err("save: cannot open %s: %s", a.tmp, strerror(errno));
  FILE *f = a.f;
  unsigned char magic[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(hlen & 0xff),
                             (unsigned char)(hlen >> 8)};
  int ok = fwrite(magic, 1, 10, f) == 10 && fwrite(hdr, 1, hlen, f) == hlen;
  fvl_tensor *c = fvl_contiguous((fvl_tensor *)t);
  if (!c) { fvl_atomic_abort(&a); return -1; }
  size_t n = (size_t)fvl_numel(c);
  if (ok && n) ok = fwrite(fvl_f32(c), 4, n, f) == n;
  fvl_release(c);
  if (!ok) {
    int e = errno;
    fvl_atomic_abort(&a);
    return fvl_err("save: writing %s failed: %s", path, strerror(e));
  }
  return fvl_atomic_commit(&a, "save");
}

/* ---- strict .npy header parser (see tensor.h) ---- */
typedef struct { const char *p, *end, *where; } npy_cur;
static void npy_ws(npy_cur *c) { while (c->p < c->end && (*c->p == ' ' || *c->p == '\t')) c->p++; }
static int npy_expect(npy_cur *c, char ch) {
  npy_ws(c);
  if (c->p >= c->end || *c->p != ch) {
    char m[32];
    snprintf(m, sizeof m, "expected '%c'", ch);
    return fvl_err("%s: header: %s", c->where, m);
  }
  c->p++;
  return 0;
}
/* a Python string literal '...' or "..." without escapes into out */
static int npy_string(npy_cur *c, char *out, size_t n) {
  npy_ws(c);
  if (c->p >= c->end || (*c->p != '\'' && *c->p != '"')) return fvl_err("%s: header: expected a quoted string", c->where);
  char q = *c->p++;
  size_t k = 0;
  while (c->p < c->end && *c->p != q) {
    if (*c->p == '\\' || k + 1 >= n) return fvl_err("%s: header: string too long or escaped", c->where);
    out[k++] = *c->p++;
  }
  if (c->p >= c->end) return fvl_err("%s: header: unterminated string", c->where);
  c->p++;
  out[k] = 0;
  return 0;
}
static int npy_word(npy_cur *c, const char *w) {
  size_t n = strlen(w);
  if ((size_t)(c->end - c->p) >= n && memcmp(c->p, w, n) == 0) { c->p += n; return 1; }
  return 0;
}
static int npy_shape(npy_cur *c, fvl_npy_header *h) {
  if (npy_expect(c, '(') < 0) return -1;
  h->ndim = 0;
  for (;;) {
    npy_ws(c);
    if (c->p < c->end && *c->p == ')') { c->p++; break; }
    if (c->p >= c->end || *c->p < '0' || *c->p > '9') return fvl_err("%s: header: shape must be a tuple of non-negative integers", c->where);
    int64_t v = 0;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
      if (fvl_mul_overflow(v, 10, &v) || fvl_add_overflow(v, *c->p - '0', &v))
        return fvl_err("%s: header: shape entry overflows", c->where);
      c->p++;
    }
    if (h->ndim >= FVL_MAXDIM) return fvl_err("%s: header: shape has more than %d dimensions", c->where, FVL_MAXDIM);
    h->shape[h->ndim++] = v;
    npy_ws(c);
    if (c->p < c->end && *c->p == ',') { c->p++; continue; }
    if (c->p < c->end && *c->p == ')') { c->p++; break; }
    return fvl_err("%s: header: shape must be a tuple of non-negative integers", c->where);
  }
  return 0;
}
int fvl_npy_parse_header(const char *hdr, size_t hlen, const char *where, fvl_npy_header *h) {
  npy_cur c = {hdr, hdr + hlen, where};
  int seen_d = 0, seen_f = 0, seen_s = 0;
  memset(h, 0, sizeof *h);
  if (npy_expect(&c, '{') < 0) return -1;
  for (;;) {
    npy_ws(&c);
    if (c.p < c.end && *c.p == '}') { c.p++; break; }
    char key[32];
    if (npy_string(&c, key, sizeof key) < 0 || npy_expect(&c, ':') < 0) return -1;
    npy_ws(&c);
    if (strcmp(key, "descr") == 0) {
      if (seen_d++) return fvl_err("%s: header: duplicate key 'descr'", where);
      if (c.p < c.end && *c.p == '[') return fvl_err("%s: structured dtypes are not supported", where);
      if (npy_string(&c, h->descr, sizeof h->descr) < 0) return -1;
    } else if (strcmp(key, "fortran_order") == 0) {
      if (seen_f++) return fvl_err("%s: header: duplicate key 'fortran_order'", where);
      if (npy_word(&c, "True")) h->fortran_order = 1;
      else if (npy_word(&c, "False")) h->fortran_order = 0;
      else return fvl_err("%s: header: fortran_order must be True or False", where);
    } else if (strcmp(key, "shape") == 0) {
      if (seen_s++) return fvl_err("%s: header: duplicate key 'shape'", where);
      if (npy_shape(&c, h) < 0) return -1;
    } else {
      return fvl_err("%s: header: unknown key '%s' (expected descr, fortran_order, shape)", where, key);
    }
    npy_ws(&c);
    if (c.p < c.end && *c.p == ',') { c.p++; continue; }
    if (c.p < c.end && *c.p == '}') { c.p++; break; }
    return fvl_err("%s: header: expected ',' or '}' after '%s'", where, key);
  }
  while (c.p < c.end && (*c.p == ' ' || *c.p == '\n')) c.p++;
  if (c.p != c.end) return fvl_err("%s: header: unexpected text after the dict", where);
  if (!seen_d || !seen_f || !seen_s)
    return fvl_err("%s: header: missing key '%s'", where, !seen_d ? "descr" : !seen_f ? "fortran_order" : "shape");
  if (h->descr[0] == '>') return fvl_err("%s: dtype '%s' is big-endian (only little-endian is supported)", where, h->descr);
  if (fvl_shape_check(where, h->ndim, h->shape, &h->numel) < 0) return -1;
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
  char where[4200];
  snprintf(where, sizeof where, "load: %s", path);
  fvl_npy_header nh;
  if (fvl_npy_parse_header(hdr, hlen, where, &nh) < 0) goto done;
  fvl_dtype dt;
  if (strcmp(nh.descr, "<f4") == 0) dt = FVL_F32;
  else if (strcmp(nh.descr, "<i4") == 0) dt = FVL_I32;
  else {
    fvl_err("load: %s: dtype '%s' is not supported (expected <f4 or <i4)", path, nh.descr);
    goto done;
  }
  if (nh.fortran_order) { fvl_err("load: %s: Fortran order is not supported", path); goto done; }
  int nd = nh.ndim;
  int64_t *size = nh.shape;
  /* the data must be there before anything is allocated for it */
  long here = ftell(f);
  if (here < 0 || fseek(f, 0, SEEK_END) != 0) { fvl_err("load: %s: cannot seek", path); goto done; }
  long end = ftell(f);
  fseek(f, here, SEEK_SET);
  if ((end - here) / 4 < nh.numel) goto trunc;
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
