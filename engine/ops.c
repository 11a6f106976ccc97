/* ops.c — elementwise math with broadcasting, reductions, normalisation, matmul, indexing,
 * each with its backward. Loops are OpenMP-parallel over contiguous blocks. */
#include "tensor.h"
#include "autograd.h"
#include <cblas.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PAR_MIN 32768

static const char *binop_name(fvl_binop op) {
  static const char *n[] = {"add", "sub", "mul", "div", "pow", "maximum", "minimum"};
  return n[op];
}

/* ------------------------------------------------------------------ broadcasting */
static int broadcast_shape(const char *fn, const fvl_tensor *a, const fvl_tensor *b, int *nd, int64_t *sz) {
  int n = a->ndim > b->ndim ? a->ndim : b->ndim;
  for (int d = 0; d < n; d++) {
    int da = d - (n - a->ndim), db = d - (n - b->ndim);
    int64_t sa = da >= 0 ? a->size[da] : 1, sb = db >= 0 ? b->size[db] : 1;
    if (sa != sb && sa != 1 && sb != 1) {
      char x[64], y[64];
      return fvl_err("%s: shapes %s and %s do not broadcast (dim %d: %lld vs %lld)", fn,
                     fvl_shape_str(a, x, sizeof x), fvl_shape_str(b, y, sizeof y), d - n,
                     (long long)sa, (long long)sb);
    }
    sz[d] = sa == 1 ? sb : sa;
  }
  *nd = n;
  return 0;
}
static void bstrides(const fvl_tensor *t, int nd, const int64_t *sz, int64_t *st) {
  for (int d = 0; d < nd; d++) {
    int td = d - (nd - t->ndim);
    st[d] = (td < 0 || t->size[td] == 1) ? 0 : t->stride[td];
    (void)sz;
  }
}
/* offset of linear index i of an nd-shape for strides st */
static inline int64_t lin_off(int64_t i, int nd, const int64_t *sz, const int64_t *st) {
  int64_t o = 0;
  for (int d = nd - 1; d >= 0; d--) {
    int64_t q = i / sz[d];
    o += (i - q * sz[d]) * st[d];
    i = q;
  }
  return o;
}

static inline float apply_bin(fvl_binop op, float x, float y) {
  switch (op) {
    case FVL_ADD: return x + y;
    case FVL_SUB: return x - y;
    case FVL_MUL: return x * y;
    case FVL_DIV: return x / y;
    case FVL_POW: return powf(x, y);
    case FVL_MAX2: return x > y ? x : y;
    case FVL_MIN2: return x < y ? x : y;
  }
  return 0;
}

/* out[i] = a op b over a broadcast shape; rows of the last dim are the inner loop. One loop
 * nest per op (the op is not switched inside the element loop) so the compiler vectorises. */
#define DEF_BIN(NAME, EXPR)                                                                     \
  static void NAME(const float *restrict pa, const float *restrict pb, float *restrict o,        \
                   int64_t n, int same, int nd, const int64_t *size, const int64_t *sa,         \
                   const int64_t *sb) {                                                         \
    if (same) {                                                                                 \
      _Pragma("omp parallel for schedule(static) if (n > PAR_MIN)")                             \
      for (int64_t i = 0; i < n; i++) { float x = pa[i], y = pb[i]; o[i] = (EXPR); }            \
      return;                                                                                   \
    }                                                                                           \
    int64_t inner = size[nd - 1], rows = inner ? n / inner : 0;                                 \
    int64_t ia = sa[nd - 1], ib = sb[nd - 1];                                                   \
    _Pragma("omp parallel for schedule(static) if (n > PAR_MIN)")                               \
    for (int64_t r = 0; r < rows; r++) {                                                        \
      const float *ra = pa + lin_off(r, nd - 1, size, sa), *rb = pb + lin_off(r, nd - 1, size, sb); \
      float *orow = o + r * inner;                                                              \
      if (ia == 1 && ib == 1)                                                                   \
        for (int64_t j = 0; j < inner; j++) { float x = ra[j], y = rb[j]; orow[j] = (EXPR); }   \
      else if (ia == 1 && ib == 0) {                                                            \
        const float y = rb[0];                                                                  \
        for (int64_t j = 0; j < inner; j++) { float x = ra[j]; orow[j] = (EXPR); }              \
      } else if (ia == 0 && ib == 1) {                                                          \
        const float x = ra[0];                                                                  \
        for (int64_t j = 0; j < inner; j++) { float y = rb[j]; orow[j] = (EXPR); }              \
      } else                                                                                    \
        for (int64_t j = 0; j < inner; j++) { float x = ra[j * ia], y = rb[j * ib]; orow[j] = (EXPR); } \
    }                                                                                           \
  }
DEF_BIN(bin_add, x + y)
DEF_BIN(bin_sub, x - y)
DEF_BIN(bin_mul, x * y)
DEF_BIN(bin_div, x / y)
DEF_BIN(bin_pow, powf(x, y))
DEF_BIN(bin_max, x > y ? x : y)
DEF_BIN(bin_min, x < y ? x : y)

static void bin_kernel(fvl_binop op, const fvl_tensor *a, const fvl_tensor *b, fvl_tensor *out) {
  int nd = out->ndim;
  int64_t sa[FVL_MAXDIM], sb[FVL_MAXDIM];
  bstrides(a, nd, out->size, sa);
  bstrides(b, nd, out->size, sb);
  float *o = fvl_f32(out);
  const float *pa = fvl_f32(a), *pb = fvl_f32(b);
  int64_t n = fvl_numel(out);
  if (nd == 0) { o[0] = apply_bin(op, pa[0], pb[0]); return; }
  int same = fvl_is_contiguous(a) && fvl_is_contiguous(b) && fvl_same_shape(a, out) && fvl_same_shape(b, out);
  switch (op) {
    case FVL_ADD: bin_add(pa, pb, o, n, same, nd, out->size, sa, sb); break;
    case FVL_SUB: bin_sub(pa, pb, o, n, same, nd, out->size, sa, sb); break;
    case FVL_MUL: bin_mul(pa, pb, o, n, same, nd, out->size, sa, sb); break;
    case FVL_DIV: bin_div(pa, pb, o, n, same, nd, out->size, sa, sb); break;
    case FVL_POW: bin_pow(pa, pb, o, n, same, nd, out->size, sa, sb); break;
    case FVL_MAX2: bin_max(pa, pb, o, n, same, nd, out->size, sa, sb); break;
    case FVL_MIN2: bin_min(pa, pb, o, n, same, nd, out->size, sa, sb); break;
  }
}

static int need_f32(const char *fn, const fvl_tensor *t, const char *arg) {
  if (t->dtype != FVL_F32) return fvl_err("%s: %s is %s, expected float32", fn, arg, fvl_dtype_name(t->dtype));
  return 0;
}

static int bw_binary(fvl_node *n, fvl_tensor *g);
fvl_tensor *fvl_binary(fvl_binop op, fvl_tensor *a, fvl_tensor *b) {
  const char *fn = binop_name(op);
  int nd;
  int64_t sz[FVL_MAXDIM];
  if (broadcast_shape(fn, a, b, &nd, sz) < 0) return NULL;
  fvl_tensor *ca = NULL, *cb = NULL;
  if (a->dtype != FVL_F32) ca = a = fvl_to_dtype(a, FVL_F32);
  if (b->dtype != FVL_F32) cb = b = fvl_to_dtype(b, FVL_F32);
  fvl_tensor *out = fvl_empty(FVL_F32, nd, sz);
  if (out) {
    bin_kernel(op, a, b, out);
    fvl_tensor *in[2] = {a, b};
    fvl_node *nd_ = fvl_record(fn, bw_binary, out, 2, in);
    if (nd_) {
      nd_->iv[0] = op;
      if (op == FVL_MUL || op == FVL_DIV || op == FVL_POW || op == FVL_MAX2 || op == FVL_MIN2) {
        nd_->saved[0] = fvl_detach(a);
        nd_->saved[1] = fvl_detach(b);
      }
    }
  }
  fvl_release(ca);
  fvl_release(cb);
  return out;
}

static fvl_tensor *nograd_bin(fvl_binop op, fvl_tensor *a, fvl_tensor *b) {
  int prev = fvl_set_grad_enabled(0);
  fvl_tensor *r = fvl_binary(op, a, b);
  fvl_set_grad_enabled(prev);
  return r;
}
static int accum_reduced(fvl_node *n, int i, fvl_tensor *g) {
  fvl_tensor *r = fvl_sum_to(g, n->in[i]);
  if (!r) return -1;
  int rc = fvl_node_accum(n, i, r);
  fvl_release(r);
  return rc;
}
static int bw_binary(fvl_node *n, fvl_tensor *g) {
  fvl_binop op = (fvl_binop)n->iv[0];
  fvl_tensor *a = n->saved[0], *b = n->saved[1], *t1 = NULL, *t2 = NULL;
  int rc = 0;
  for (int i = 0; i < 2 && rc == 0; i++) {
    if (!fvl_node_wants(n, i)) continue;
    fvl_tensor *gi = NULL;
    switch (op) {
      case FVL_ADD: gi = fvl_retain(g); break;
      case FVL_SUB: gi = i == 0 ? fvl_retain(g) : fvl_binary_scalar(FVL_MUL, g, -1, 0); break;
      case FVL_MUL: gi = nograd_bin(FVL_MUL, g, i == 0 ? b : a); break;
      case FVL_DIV:
        if (i == 0) gi = nograd_bin(FVL_DIV, g, b);
        else {  /* -g a / b² */
          t1 = nograd_bin(FVL_MUL, g, a);
          t2 = nograd_bin(FVL_MUL, b, b);
          fvl_tensor *q = t1 && t2 ? nograd_bin(FVL_DIV, t1, t2) : NULL;
          gi = q ? fvl_binary_scalar(FVL_MUL, q, -1, 0) : NULL;
          fvl_release(q);
          fvl_release(t1); fvl_release(t2); t1 = t2 = NULL;
        }
        break;
      case FVL_POW: {
        fvl_tensor *p = nograd_bin(FVL_POW, a, b);
        if (!p) break;
        if (i == 0) {  /* g b a^(b-1), computed directly so a = 0 gives 0, not 0/0 */
          fvl_tensor *bm1 = fvl_binary_scalar(FVL_SUB, b, 1, 0);
          fvl_tensor *pw = bm1 ? nograd_bin(FVL_POW, a, bm1) : NULL;
          t1 = pw ? nograd_bin(FVL_MUL, g, b) : NULL;
          gi = t1 ? nograd_bin(FVL_MUL, t1, pw) : NULL;
          fvl_release(bm1);
          fvl_release(pw);
        } else {       /* g p log a */
          int prev = fvl_set_grad_enabled(0);
          fvl_tensor *la = fvl_unary(FVL_LOG, a);
          fvl_set_grad_enabled(prev);
          t1 = la ? nograd_bin(FVL_MUL, g, p) : NULL;
          gi = t1 ? nograd_bin(FVL_MUL, t1, la) : NULL;
          fvl_release(la);
        }
        fvl_release(p); fvl_release(t1); fvl_release(t2); t1 = t2 = NULL;
        break;
      }
      case FVL_MAX2: case FVL_MIN2: {
        fvl_cmpop c = op == FVL_MAX2 ? (i == 0 ? FVL_GE : FVL_GT) : (i == 0 ? FVL_LE : FVL_LT);
        fvl_tensor *mask = i == 0 ? fvl_compare(c, a, b) : fvl_compare(c, b, a);
        gi = mask ? nograd_bin(FVL_MUL, g, mask) : NULL;
        fvl_release(mask);
        break;
      }
    }
    if (!gi) return -1;
    rc = accum_reduced(n, i, gi);
    fvl_release(gi);
  }
  return rc;
}

/* elementwise backward: a contiguous copy-or-view of the incoming gradient and a fresh buffer of
 * its shape (NULL on failure); grad_end hands the buffer to input 0 and releases both */
static fvl_tensor *grad_begin(fvl_tensor *g, fvl_tensor **gc) {
  *gc = fvl_contiguous(g);
  fvl_tensor *gi = *gc ? fvl_empty(FVL_F32, (*gc)->ndim, (*gc)->size) : NULL;
  if (!gi) { fvl_release(*gc); *gc = NULL; }
  return gi;
}
static int grad_end(fvl_node *n, fvl_tensor *gc, fvl_tensor *gi) {
  fvl_release(gc);
  int rc = fvl_node_accum(n, 0, gi);
  fvl_release(gi);
  return rc;
}

/* ------------------------------------------------------------------ scalar variants */
static int bw_scalar(fvl_node *n, fvl_tensor *g);
fvl_tensor *fvl_binary_scalar(fvl_binop op, fvl_tensor *a, double s, int scalar_first) {
  fvl_tensor *ca = NULL;
  if (a->dtype != FVL_F32) ca = a = fvl_to_dtype(a, FVL_F32);
  fvl_tensor *src = fvl_contiguous(a);
  fvl_tensor *out = src ? fvl_empty(FVL_F32, a->ndim, a->size) : NULL;
  if (out) {
    const float *restrict p = fvl_f32(src);
    float *restrict o = fvl_f32(out);
    const float fs = (float)s;
    int64_t n = fvl_numel(out);
    /* one loop per op so each vectorises */
#define SCALAR_LOOP(EXPR)                                             \
    _Pragma("omp parallel for schedule(static) if (n > PAR_MIN)")    \
    for (int64_t i = 0; i < n; i++) { const float x = p[i]; o[i] = (EXPR); }
    switch (op) {
      case FVL_ADD: SCALAR_LOOP(x + fs) break;
      case FVL_SUB: if (scalar_first) { SCALAR_LOOP(fs - x) } else { SCALAR_LOOP(x - fs) } break;
      case FVL_MUL: SCALAR_LOOP(x * fs) break;
      case FVL_DIV: if (scalar_first) { SCALAR_LOOP(fs / x) } else { SCALAR_LOOP(x / fs) } break;
      default:
        for (int64_t i = 0; i < n; i++) o[i] = scalar_first ? apply_bin(op, fs, p[i]) : apply_bin(op, p[i], fs);
    }
#undef SCALAR_LOOP
    fvl_node *nd = fvl_record(binop_name(op), bw_scalar, out, 1, &a);
    if (nd) {
      nd->iv[0] = op;
      nd->iv[1] = scalar_first;
      nd->sc[0] = s;
      nd->saved[0] = fvl_detach(src);
      nd->saved[1] = fvl_detach(out);
    }
  }
  fvl_release(src);
  fvl_release(ca);
  return out;
}
static int bw_scalar(fvl_node *n, fvl_tensor *g) {
  fvl_binop op = (fvl_binop)n->iv[0];
  int first = (int)n->iv[1];
  float s = (float)n->sc[0];
  fvl_tensor *gc, *gi = grad_begin(g, &gc);
  if (!gi) return -1;
  const float *pg = fvl_f32(gc), *pa = fvl_f32(n->saved[0]), *po = fvl_f32(n->saved[1]);
  float *o = fvl_f32(gi);
  int64_t N = fvl_numel(gi);
#pragma omp parallel for schedule(static) if (N > PAR_MIN)
  for (int64_t i = 0; i < N; i++) {
    float x = pa[i], d = 0;
    switch (op) {
      case FVL_ADD: d = 1; break;
      case FVL_SUB: d = first ? -1 : 1; break;
      case FVL_MUL: d = s; break;
      case FVL_DIV: d = first ? -s / (x * x) : 1 / s; break;
      case FVL_POW: d = first ? po[i] * logf(s) : (s == 0 ? 0 : s * powf(x, s - 1)); break;
      case FVL_MAX2: d = first ? (x > s) : (x >= s); break;
      case FVL_MIN2: d = first ? (x < s) : (x <= s); break;
    }
    o[i] = pg[i] * d;
  }
  return grad_end(n, gc, gi);
}

/* ------------------------------------------------------------------ unary */
static inline float apply_un(fvl_unop op, float x) {
  switch (op) {
    case FVL_NEG: return -x;
    case FVL_EXP: return expf(x);
    case FVL_LOG: return logf(x);
    case FVL_SQRT: return sqrtf(x);
    case FVL_ABS: return fabsf(x);
    case FVL_COS: return cosf(x);
    case FVL_SIN: return sinf(x);
    case FVL_ACOS: return acosf(x);
    case FVL_TANH: return tanhf(x);
    case FVL_SIGMOID: return x >= 0 ? 1 / (1 + expf(-x)) : expf(x) / (1 + expf(x));
    case FVL_RELU: return x > 0 ? x : 0;
    case FVL_SQUARE: return x * x;
    case FVL_LOG1P: return log1pf(x);
    case FVL_SIGN: return (float)((x > 0) - (x < 0));
    case FVL_FLOOR: return floorf(x);
  }
  return 0;
}
static inline float deriv_un(fvl_unop op, float x, float y) {
  switch (op) {
    case FVL_NEG: return -1;
    case FVL_EXP: return y;
    case FVL_LOG: return 1 / x;
    case FVL_SQRT: return 0.5f / y;
    case FVL_ABS: return (float)((x > 0) - (x < 0));
    case FVL_COS: return -sinf(x);
    case FVL_SIN: return cosf(x);
    case FVL_ACOS: return -1 / sqrtf(1 - x * x);
    case FVL_TANH: return 1 - y * y;
    case FVL_SIGMOID: return y * (1 - y);
    case FVL_RELU: return x > 0;
    case FVL_SQUARE: return 2 * x;
    case FVL_LOG1P: return 1 / (1 + x);
    case FVL_SIGN: case FVL_FLOOR: return 0;
  }
  return 0;
}
static const char *unop_name(fvl_unop op) {
  static const char *n[] = {"neg", "exp", "log", "sqrt", "abs", "cos", "sin", "acos", "tanh",
                            "sigmoid", "relu", "square", "log1p", "sign", "floor"};
  return n[op];
}
static int bw_unary(fvl_node *n, fvl_tensor *g) {
  fvl_unop op = (fvl_unop)n->iv[0];
  fvl_tensor *gc, *gi = grad_begin(g, &gc);
  if (!gi) return -1;
  const float *pg = fvl_f32(gc), *pa = fvl_f32(n->saved[0]), *po = fvl_f32(n->saved[1]);
  float *o = fvl_f32(gi);
  int64_t N = fvl_numel(gi);
#pragma omp parallel for schedule(static) if (N > PAR_MIN)
  for (int64_t i = 0; i < N; i++) o[i] = pg[i] * deriv_un(op, pa[i], po[i]);
  return grad_end(n, gc, gi);
}
fvl_tensor *fvl_unary(fvl_unop op, fvl_tensor *a) {
  fvl_tensor *ca = NULL;
  if (a->dtype != FVL_F32) {
    if (op == FVL_NEG || op == FVL_ABS || op == FVL_SIGN) {  /* keep int32 for these */
      fvl_tensor *out = fvl_empty(FVL_I32, a->ndim, a->size);
      if (!out) return NULL;
      fvl_tensor *src = fvl_contiguous(a);
      if (!src) { fvl_release(out); return NULL; }
      const int32_t *p = fvl_i32(src);
      int32_t *o = fvl_i32(out);
      /* two's complement wrap like Torch: -INT32_MIN and abs(INT32_MIN) are INT32_MIN (computed
       * in unsigned arithmetic, never a signed overflow) */
      for (int64_t i = 0, n = fvl_numel(out); i < n; i++) {
        int32_t neg = (int32_t)(0u - (uint32_t)p[i]);
        o[i] = op == FVL_NEG ? neg : op == FVL_ABS ? (p[i] < 0 ? neg : p[i]) : (p[i] > 0) - (p[i] < 0);
      }
      fvl_release(src);
      return out;
    }
    ca = a = fvl_to_dtype(a, FVL_F32);
  }
  fvl_tensor *src = fvl_contiguous(a);
  fvl_tensor *out = src ? fvl_empty(FVL_F32, a->ndim, a->size) : NULL;
  if (out) {
    const float *p = fvl_f32(src);
    float *o = fvl_f32(out);
    int64_t n = fvl_numel(out);
#pragma omp parallel for schedule(static) if (n > PAR_MIN)
    for (int64_t i = 0; i < n; i++) o[i] = apply_un(op, p[i]);
    fvl_node *nd = fvl_record(unop_name(op), bw_unary, out, 1, &a);
    if (nd) {
      nd->iv[0] = op;
      nd->saved[0] = fvl_detach(src);
      nd->saved[1] = fvl_detach(out);
    }
  }
  fvl_release(src);
  fvl_release(ca);
  return out;
}

static int bw_clamp(fvl_node *n, fvl_tensor *g) {
  fvl_tensor *gc, *gi = grad_begin(g, &gc);
  if (!gi) return -1;
  const float *pg = fvl_f32(gc), *pa = fvl_f32(n->saved[0]);
  float lo = (float)n->sc[0], hi = (float)n->sc[1];
  float *o = fvl_f32(gi);
  int64_t N = fvl_numel(gi);
#pragma omp parallel for schedule(static) if (N > PAR_MIN)
  for (int64_t i = 0; i < N; i++) o[i] = (pa[i] >= lo && pa[i] <= hi) ? pg[i] : 0.0f;
  return grad_end(n, gc, gi);
}
fvl_tensor *fvl_clamp(fvl_tensor *a, double lo, double hi) {
  if (lo > hi) { fvl_err("clamp: lo (%g) is greater than hi (%g)", lo, hi); return NULL; }
  fvl_tensor *ca = NULL;
  if (a->dtype != FVL_F32) ca = a = fvl_to_dtype(a, FVL_F32);
  fvl_tensor *src = fvl_contiguous(a);
  fvl_tensor *out = src ? fvl_empty(FVL_F32, a->ndim, a->size) : NULL;
  if (out) {
    const float *p = fvl_f32(src);
    float *o = fvl_f32(out), flo = (float)lo, fhi = (float)hi;
    int64_t n = fvl_numel(out);
#pragma omp parallel for schedule(static) if (n > PAR_MIN)
    for (int64_t i = 0; i < n; i++) o[i] = p[i] < flo ? flo : (p[i] > fhi ? fhi : p[i]);
    fvl_node *nd = fvl_record("clamp", bw_clamp, out, 1, &a);
    if (nd) { nd->sc[0] = lo; nd->sc[1] = hi; nd->saved[0] = fvl_detach(src); }
  }
  fvl_release(src);
  fvl_release(ca);
  return out;
}

/* ------------------------------------------------------------------ comparisons, where */
static inline float apply_cmp(fvl_cmpop op, float x, float y) {
  switch (op) {
    case FVL_GT: return x > y; case FVL_GE: return x >= y; case FVL_LT: return x < y;
    case FVL_LE: return x <= y; case FVL_EQ: return x == y; case FVL_NE: return x != y;
  }
  return 0;
}
fvl_tensor *fvl_compare(fvl_cmpop op, fvl_tensor *a, fvl_tensor *b) {
  int nd;
  int64_t sz[FVL_MAXDIM];
  if (broadcast_shape("compare", a, b, &nd, sz) < 0) return NULL;
  fvl_tensor *fa = fvl_to_dtype(a, FVL_F32), *fb = fvl_to_dtype(b, FVL_F32);
  fvl_tensor *out = fvl_empty(FVL_F32, nd, sz);
  if (out) {
    int64_t sa[FVL_MAXDIM], sb[FVL_MAXDIM];
    bstrides(fa, nd, sz, sa);
    bstrides(fb, nd, sz, sb);
    const float *pa = fvl_f32(fa), *pb = fvl_f32(fb);
    float *o = fvl_f32(out);
    int64_t n = fvl_numel(out);
#pragma omp parallel for schedule(static) if (n > PAR_MIN)
    for (int64_t i = 0; i < n; i++)
      o[i] = apply_cmp(op, pa[lin_off(i, nd, sz, sa)], pb[lin_off(i, nd, sz, sb)]);
  }
  fvl_release(fa);
  fvl_release(fb);
  return out;
}
fvl_tensor *fvl_compare_scalar(fvl_cmpop op, fvl_tensor *a, double s) {
  fvl_tensor *b = fvl_scalar((float)s);
  if (!b) return NULL;
  fvl_tensor *r = fvl_compare(op, a, b);
  fvl_release(b);
  return r;
}
static int bw_where(fvl_node *n, fvl_tensor *g) {
  fvl_tensor *c = n->saved[0];
  int rc = 0;
  for (int i = 0; i < 2 && rc == 0; i++) {
    if (!fvl_node_wants(n, i)) continue;
    fvl_tensor *m = i == 0 ? fvl_retain(c) : fvl_compare_scalar(FVL_EQ, c, 0);
    fvl_tensor *gi = m ? nograd_bin(FVL_MUL, g, m) : NULL;
    fvl_release(m);
    if (!gi) return -1;
    rc = accum_reduced(n, i, gi);
    fvl_release(gi);
  }
  return rc;
}
fvl_tensor *fvl_where(fvl_tensor *cond, fvl_tensor *a, fvl_tensor *b) {
  int nd, nd2;
  int64_t sz[FVL_MAXDIM], sz2[FVL_MAXDIM];
  if (broadcast_shape("where", a, b, &nd, sz) < 0) return NULL;
  fvl_tensor shape_ab = {0};
  shape_ab.ndim = nd;
  memcpy(shape_ab.size, sz, sizeof sz);
  if (broadcast_shape("where", cond, &shape_ab, &nd2, sz2) < 0) return NULL;
  fvl_tensor *c = fvl_compare_scalar(FVL_NE, cond, 0);
  fvl_tensor *fa = fvl_to_dtype(a, FVL_F32), *fb = fvl_to_dtype(b, FVL_F32);
  fvl_tensor *out = c && fa && fb ? fvl_empty(FVL_F32, nd2, sz2) : NULL;
  if (out) {
    int64_t sc[FVL_MAXDIM], sa[FVL_MAXDIM], sb[FVL_MAXDIM];
    bstrides(c, nd2, sz2, sc);
    bstrides(fa, nd2, sz2, sa);
    bstrides(fb, nd2, sz2, sb);
    const float *pc = fvl_f32(c), *pa = fvl_f32(fa), *pb = fvl_f32(fb);
    float *o = fvl_f32(out);
    int64_t n = fvl_numel(out);
#pragma omp parallel for schedule(static) if (n > PAR_MIN)
    for (int64_t i = 0; i < n; i++)
      o[i] = pc[lin_off(i, nd2, sz2, sc)] != 0 ? pa[lin_off(i, nd2, sz2, sa)] : pb[lin_off(i, nd2, sz2, sb)];
    fvl_tensor *in[2] = {a, b};
    fvl_node *nn = fvl_record("where", bw_where, out, 2, in);
    if (nn) nn->saved[0] = fvl_retain(c);
  }
  fvl_release(c);
  fvl_release(fa);
  fvl_release(fb);
  return out;
}

/* ------------------------------------------------------------------ reductions */
/* view contiguous t as [outer, n, inner] around dim */
static void split3(const fvl_tensor *t, int dim, int64_t *outer, int64_t *n, int64_t *inner) {
  *outer = 1; *inner = 1;
  for (int d = 0; d < dim; d++) *outer *= t->size[d];
  *n = t->size[dim];
  for (int d = dim + 1; d < t->ndim; d++) *inner *= t->size[d];
}
static fvl_tensor *reduced_empty(const fvl_tensor *t, int dim, int keepdim, fvl_dtype dt) {
  int64_t sz[FVL_MAXDIM];
  int nd = 0;
  if (dim < 0) return fvl_empty(dt, 0, NULL);
  for (int d = 0; d < t->ndim; d++) {
    if (d == dim) { if (keepdim) sz[nd++] = 1; }
    else sz[nd++] = t->size[d];
  }
  return fvl_empty(dt, nd, sz);
}
enum { R_SUM, R_MEAN, R_MAX, R_MIN, R_NORM, R_LSE };
/* expand g (reduced shape) back to the input's shape as a contiguous tensor */
static fvl_tensor *expand_back(fvl_tensor *g, const fvl_tensor *in, int dim) {
  fvl_tensor *out = fvl_empty(FVL_F32, in->ndim, in->size);
  if (!out) return NULL;
  fvl_tensor *gv = NULL;
  if (dim >= 0 && g->ndim != in->ndim) {
    int prev = fvl_set_grad_enabled(0);
    gv = fvl_unsqueeze(g, dim);
    fvl_set_grad_enabled(prev);
  } else gv = fvl_retain(g);
  int rc = gv ? fvl_copy_(out, gv) : -1;
  fvl_release(gv);
  if (rc < 0) { fvl_release(out); return NULL; }
  return out;
}
static int bw_reduce(fvl_node *n, fvl_tensor *g) {
  int kind = (int)n->iv[0], dim = (int)n->iv[1];
  fvl_tensor *in = n->saved[0], *res = n->saved[1];
  fvl_tensor *ge = expand_back(g, in, dim);
  if (!ge) return -1;
  float *pg = fvl_f32(ge);
  const float *pa = fvl_f32(in);
  int64_t N = fvl_numel(ge);
  if (kind == R_MEAN) {
    float inv = 1.0f / (float)(dim < 0 ? fvl_numel(in) : in->size[dim]);
    for (int64_t i = 0; i < N; i++) pg[i] *= inv;
  } else if (kind != R_SUM) {
    fvl_tensor *re = expand_back(res, in, dim);
    if (!re) { fvl_release(ge); return -1; }
    const float *pr = fvl_f32(re);
    if (kind == R_NORM) {
      for (int64_t i = 0; i < N; i++) pg[i] = pr[i] > 0 ? pg[i] * pa[i] / pr[i] : 0;
    } else if (kind == R_LSE) {
      for (int64_t i = 0; i < N; i++) pg[i] *= expf(pa[i] - pr[i]);
    } else {  /* max/min: gradient to the first arg position only */
      fvl_tensor *idx = n->saved[2];
      int64_t outer, m, inner;
      if (dim < 0) { outer = 1; m = N; inner = 1; } else split3(in, dim, &outer, &m, &inner);
      const int32_t *pi = fvl_i32(idx);
      float *tmp = calloc((size_t)N, sizeof(float));
      if (!tmp) {
        fvl_release(re);
        fvl_release(ge);
        return fvl_err("%s: out of memory for a gradient of %lld values", n->name, (long long)N);
      }
      for (int64_t o = 0; o < outer; o++)
        for (int64_t k = 0; k < inner; k++) {
          int64_t j = pi[o * inner + k];
          int64_t at = (o * m + j) * inner + k;
          tmp[at] = pg[at];
        }
      memcpy(pg, tmp, (size_t)N * sizeof(float));
      free(tmp);
    }
    fvl_release(re);
  }
  int rc = fvl_node_accum(n, 0, ge);
  fvl_release(ge);
  return rc;
}
/* one long reduction (sum, mean, norm) of p[0..n): threads over blocks of 1024, double partial sums */
static float reduce_long(int kind, const float *p, int64_t n) {
  double acc = 0;
#pragma omp parallel for schedule(static) reduction(+ : acc)
  for (int64_t b0 = 0; b0 < n; b0 += 1024) {
    int64_t e = b0 + 1024 < n ? b0 + 1024 : n;
    double part = 0;
    if (kind == R_NORM) for (int64_t j = b0; j < e; j++) part += (double)p[j] * p[j];
    else for (int64_t j = b0; j < e; j++) part += p[j];
    acc += part;
  }
  return (float)(kind == R_NORM ? sqrt(acc) : kind == R_MEAN ? acc / (double)n : acc);
}

/* sum, mean or norm over the middle dim of an outer × n × inner block with inner > 1: whole
 * contiguous rows are added instead of striding down columns; -1 when out of memory */
static int reduce_rows(int kind, const char *fn, const float *p, float *o, int64_t outer, int64_t n, int64_t inner) {
  int oom = 0;
#pragma omp parallel for schedule(static) if (outer * inner * n > PAR_MIN && outer > 1)
  for (int64_t oo = 0; oo < outer; oo++) {
    double *acc = calloc((size_t)inner, sizeof(double));
    const float *q = p + oo * n * inner;
    if (!acc) {
#pragma omp atomic write
      oom = 1;
      continue;
    }
    for (int64_t j = 0; j < n; j++) {
      const float *row = q + j * inner;
      if (kind == R_NORM) for (int64_t k = 0; k < inner; k++) acc[k] += (double)row[k] * row[k];
      else for (int64_t k = 0; k < inner; k++) acc[k] += row[k];
    }
    for (int64_t k = 0; k < inner; k++)
      o[oo * inner + k] = (float)(kind == R_NORM ? sqrt(acc[k]) : kind == R_MEAN ? (n ? acc[k] / (double)n : NAN) : acc[k]);
    free(acc);
  }
  return oom ? fvl_err("%s: out of memory for %lld partial sums", fn, (long long)inner) : 0;
}

/* the general case: output r of total = outer × inner reduces the n values q[j * inner] (any
 * kind; max/min also give their 0-based position in ai, the first one on ties, NaN wins) */
static void reduce_strided(int kind, const float *p, float *o, int32_t *ai, int64_t total, int64_t n, int64_t inner) {
#pragma omp parallel for schedule(static) if (total * n > PAR_MIN && total > 1)
  for (int64_t r = 0; r < total; r++) {
    int64_t oo = r / inner, k = r % inner;
    const float *q = p + oo * n * inner + k;
    double acc = 0;
    if (kind == R_SUM || kind == R_MEAN) {
      for (int64_t j = 0; j < n; j++) acc += q[j * inner];
      if (kind == R_MEAN) acc = n ? acc / (double)n : NAN;
    } else if (kind == R_NORM) {
      for (int64_t j = 0; j < n; j++) acc += (double)q[j * inner] * q[j * inner];
      acc = sqrt(acc);
    } else if (kind == R_LSE) {
      float mx = -INFINITY;
      for (int64_t j = 0; j < n; j++) if (q[j * inner] > mx) mx = q[j * inner];
      if (isinf(mx)) acc = mx;
      else {
        for (int64_t j = 0; j < n; j++) acc += exp((double)q[j * inner] - mx);
        acc = mx + log(acc);
      }
    } else {
      float best = q[0];
      int32_t bi = 0;
      for (int64_t j = 1; j < n; j++) {
        float v = q[j * inner];
        if (kind == R_MAX ? (v > best || (isnan(v) && !isnan(best))) : (v < best || (isnan(v) && !isnan(best)))) {
          best = v; bi = (int32_t)j;
        }
      }
      acc = best;
      ai[r] = bi;
    }
    o[r] = (float)acc;
  }
}

static fvl_tensor *reduce(int kind, const char *fn, fvl_tensor *t, int dim, int keepdim, fvl_tensor **arg_out) {
  if (dim != -1 && fvl_check_dim(fn, dim, t->ndim) < 0) return NULL;   /* -1: every element */
  if (t->ndim == 0) dim = -1;
  fvl_tensor *src = fvl_to_dtype(t, FVL_F32);
  fvl_tensor *c = src ? fvl_contiguous(src) : NULL;
  fvl_release(src);
  if (!c) return NULL;
  int64_t outer, n, inner;
  if (dim < 0) { outer = 1; n = fvl_numel(c); inner = 1; } else split3(c, dim, &outer, &n, &inner);
  int argk = kind == R_MAX || kind == R_MIN;
  if (n == 0 && argk) {
    fvl_err("%s: reduction over an empty dimension", fn);
    fvl_release(c);
    return NULL;
  }
  fvl_tensor *out = reduced_empty(c, dim, keepdim, FVL_F32);
  fvl_tensor *arg = argk ? reduced_empty(c, dim, keepdim, FVL_I32) : NULL;
  if (!out || (argk && !arg)) { fvl_release(out); fvl_release(arg); fvl_release(c); return NULL; }
  const float *p = fvl_f32(c);
  float *o = fvl_f32(out);
  int64_t total = outer * inner;
  int sums = kind == R_SUM || kind == R_MEAN || kind == R_NORM;
  if (total == 1 && n > PAR_MIN && sums) o[0] = reduce_long(kind, p, n);
  else if (inner > 1 && sums) {
    if (reduce_rows(kind, fn, p, o, outer, n, inner) < 0) {
      fvl_release(out); fvl_release(arg); fvl_release(c);
      return NULL;
    }
  } else reduce_strided(kind, p, o, arg ? fvl_i32(arg) : NULL, total, n, inner);
  fvl_node *nd = fvl_record(fn, bw_reduce, out, 1, &t);
  if (nd) {
    nd->iv[0] = kind;
    nd->iv[1] = dim;
    nd->saved[0] = fvl_retain(c);
    nd->saved[1] = fvl_detach(out);
    if (arg) nd->saved[2] = fvl_retain(arg);
  }
  fvl_release(c);
  if (arg_out) *arg_out = arg; else fvl_release(arg);
  return out;
}
fvl_tensor *fvl_sum(fvl_tensor *t, int dim, int keepdim) { return reduce(R_SUM, "sum", t, dim, keepdim, NULL); }
fvl_tensor *fvl_mean(fvl_tensor *t, int dim, int keepdim) { return reduce(R_MEAN, "mean", t, dim, keepdim, NULL); }
fvl_tensor *fvl_max(fvl_tensor *t, int dim, int keepdim, fvl_tensor **a) { return reduce(R_MAX, "max", t, dim, keepdim, a); }
fvl_tensor *fvl_min(fvl_tensor *t, int dim, int keepdim, fvl_tensor **a) { return reduce(R_MIN, "min", t, dim, keepdim, a); }
fvl_tensor *fvl_norm(fvl_tensor *t, int dim, int keepdim) { return reduce(R_NORM, "norm", t, dim, keepdim, NULL); }
fvl_tensor *fvl_logsumexp(fvl_tensor *t, int dim, int keepdim) { return reduce(R_LSE, "logsumexp", t, dim, keepdim, NULL); }
fvl_tensor *fvl_argmax(fvl_tensor *t, int dim, int keepdim) {
  fvl_tensor *a = NULL;
  int prev = fvl_set_grad_enabled(0);
  fvl_tensor *v = fvl_max(t, dim, keepdim, &a);
  fvl_set_grad_enabled(prev);
  fvl_release(v);
  return v ? a : NULL;
}

/* sum a broadcast gradient down to the shape of `shape_of` */
fvl_tensor *fvl_sum_to(fvl_tensor *g, const fvl_tensor *shape_of) {
  if (fvl_same_shape(g, shape_of)) return fvl_retain(g);
  int prev = fvl_set_grad_enabled(0);
  fvl_tensor *cur = fvl_retain(g);
  int lead = g->ndim - shape_of->ndim;
  for (int d = 0; d < lead && cur; d++) {
    fvl_tensor *nx = fvl_sum(cur, 0, 0);
    fvl_release(cur);
    cur = nx;
  }
  for (int d = 0; d < shape_of->ndim && cur; d++) {
    if (shape_of->size[d] == 1 && cur->size[d] != 1) {
      fvl_tensor *nx = fvl_sum(cur, d, 1);
      fvl_release(cur);
      cur = nx;
    }
  }
  fvl_set_grad_enabled(prev);
  return cur;
}

/* ------------------------------------------------------------------ normalize */
static int bw_normalize(fvl_node *n, fvl_tensor *g) {
  fvl_tensor *y = n->saved[0], *nrm = n->saved[1];
  int dim = (int)n->iv[0];
  float eps = (float)n->sc[0];
  fvl_tensor *gc, *gi = grad_begin(g, &gc);
  if (!gi) return -1;
  int64_t outer, m, inner;
  split3(y, dim, &outer, &m, &inner);
  const float *py = fvl_f32(y), *pg = fvl_f32(gc), *pn = fvl_f32(nrm);
  float *o = fvl_f32(gi);
  int64_t total = outer * inner;
#pragma omp parallel for schedule(static) if (total * m > PAR_MIN)
  for (int64_t r = 0; r < total; r++) {
    int64_t oo = r / inner, k = r % inner;
    int64_t base = oo * m * inner + k;
    float nv = pn[r];
    if (nv <= eps) {
      for (int64_t j = 0; j < m; j++) o[base + j * inner] = pg[base + j * inner] / eps;
      continue;
    }
    double dot = 0;
    for (int64_t j = 0; j < m; j++) dot += (double)pg[base + j * inner] * py[base + j * inner];
    float fd = (float)dot;
    for (int64_t j = 0; j < m; j++)
      o[base + j * inner] = (pg[base + j * inner] - fd * py[base + j * inner]) / nv;
  }
  return grad_end(n, gc, gi);
}
fvl_tensor *fvl_normalize(fvl_tensor *t, int dim, double eps) {
  if (fvl_check_dim("normalize", dim, t->ndim) < 0) return NULL;
  if (need_f32("normalize", t, "input") < 0) return NULL;
  fvl_tensor *c = fvl_contiguous(t);
  if (!c) return NULL;
  int64_t outer, m, inner;
  split3(c, dim, &outer, &m, &inner);
  fvl_tensor *out = fvl_empty(FVL_F32, c->ndim, c->size);
  int64_t nsz = outer * inner;
  fvl_tensor *nrm = fvl_empty(FVL_F32, 1, &nsz);
  if (!out || !nrm) { fvl_release(out); fvl_release(nrm); fvl_release(c); return NULL; }
  const float *p = fvl_f32(c);
  float *o = fvl_f32(out), *pn = fvl_f32(nrm);
  float feps = (float)eps;
#pragma omp parallel for schedule(static) if (nsz * m > PAR_MIN)
  for (int64_t r = 0; r < nsz; r++) {
    int64_t oo = r / inner, k = r % inner, base = oo * m * inner + k;
    double s = 0;
    for (int64_t j = 0; j < m; j++) s += (double)p[base + j * inner] * p[base + j * inner];
    float nv = (float)sqrt(s);
    pn[r] = nv;
    float inv = 1.0f / (nv > feps ? nv : feps);
    for (int64_t j = 0; j < m; j++) o[base + j * inner] = p[base + j * inner] * inv;
  }
  fvl_node *nd = fvl_record("normalize", bw_normalize, out, 1, &t);
  if (nd) {
    nd->iv[0] = dim;
    nd->sc[0] = eps;
    nd->saved[0] = fvl_detach(out);
    nd->saved[1] = fvl_retain(nrm);
  }
  fvl_release(nrm);
  fvl_release(c);
  return out;
}

/* ------------------------------------------------------------------ matmul */
/* Outside a parallel region the product runs on a grid of output tiles fixed by the shape alone
 * (rows and columns in blocks of >= 128, a multiple of 16, at most 8 × 8 tiles), each tile one
 * single-threaded sgemm over the whole K, the tiles shared among the OpenMP threads. OpenBLAS's
 * own threading splits the output where the thread count says, and its edge kernels round the
 * rows or columns at a split differently: a 1000×3 product changed with the thread count. With
 * the tiles, every element has the same bits with any thread count. Inside a parallel region
 * OpenBLAS runs single-threaded: one call. */
static int64_t gemm_tile(int64_t n) {
  int64_t parts = n / 128;
  if (parts < 1) parts = 1;
  if (parts > 8) parts = 8;
  int64_t t = (n + parts - 1) / parts;
  return (t + 15) / 16 * 16;
}
void fvl_gemm(int transa, int transb, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc) {
  const enum CBLAS_TRANSPOSE ta = transa ? CblasTrans : CblasNoTrans, tb = transb ? CblasTrans : CblasNoTrans;
#ifdef _OPENMP
  if (omp_in_parallel() || M <= 0 || N <= 0) {
#else
  if (1) {
#endif
    cblas_sgemm(CblasRowMajor, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  const int64_t rs = gemm_tile(M), cs = gemm_tile(N), mt = (M + rs - 1) / rs, nt = (N + cs - 1) / cs;
  const int T = fvl_omp_max_threads(), nb = openblas_get_num_threads();
  if (nb != 1) openblas_set_num_threads(1);   /* in OpenBLAS's OpenMP build: also the OpenMP ICV */
#pragma omp parallel for schedule(dynamic, 1) num_threads(T) if (mt * nt > 1)
  for (int64_t t = 0; t < mt * nt; t++) {
    const int64_t r0 = t / nt * rs, c0 = t % nt * cs;
    const int m = (int)(M - r0 < rs ? M - r0 : rs), n = (int)(N - c0 < cs ? N - c0 : cs);
    const float *a = A + (transa ? r0 : r0 * lda), *b = B + (transb ? c0 * ldb : c0);
    cblas_sgemm(CblasRowMajor, ta, tb, m, n, K, alpha, a, lda, b, ldb, beta, C + r0 * ldc + c0, ldc);
  }
  if (nb != 1) openblas_set_num_threads(nb);
}
/* how to hand a 2-D view to sgemm: 0 = row-major (ld = stride[0]), 1 = transposed, -1 = neither */
static int gemm_layout(const fvl_tensor *t, int *ld) {
  if (t->stride[1] == 1 && t->stride[0] >= (t->size[1] > 1 ? t->size[1] : 1)) {
    *ld = (int)(t->stride[0] > 0 ? t->stride[0] : 1);
    if (t->size[0] == 1) *ld = (int)(t->size[1] > 0 ? t->size[1] : 1);
    return 0;
  }
  if (t->stride[0] == 1 && t->stride[1] >= (t->size[0] > 1 ? t->size[0] : 1)) {
    *ld = (int)t->stride[1];
    return 1;
  }
  return -1;
}
static int bw_matmul(fvl_node *n, fvl_tensor *g) {
  fvl_tensor *a = n->saved[0], *b = n->saved[1];
  int rc = 0;
  int prev = fvl_set_grad_enabled(0);
  if (fvl_node_wants(n, 0)) {   /* dA = g Bᵀ */
    fvl_tensor *bt = fvl_transpose(b, 0, 1);
    fvl_tensor *ga = bt ? fvl_matmul(g, bt) : NULL;
    fvl_release(bt);
    rc = ga ? fvl_node_accum(n, 0, ga) : -1;
    fvl_release(ga);
  }
  if (rc == 0 && fvl_node_wants(n, 1)) {   /* dB = Aᵀ g */
    fvl_tensor *at = fvl_transpose(a, 0, 1);
    fvl_tensor *gb = at ? fvl_matmul(at, g) : NULL;
    fvl_release(at);
    rc = gb ? fvl_node_accum(n, 1, gb) : -1;
    fvl_release(gb);
  }
  fvl_set_grad_enabled(prev);
  return rc;
}
fvl_tensor *fvl_matmul(fvl_tensor *a, fvl_tensor *b) {
  char x[64], y[64];
  if (a->ndim != 2 || b->ndim != 2) {
    fvl_err("matmul: expected 2-D tensors, got x %s and y %s", fvl_shape_str(a, x, sizeof x),
            fvl_shape_str(b, y, sizeof y));
    return NULL;
  }
  if (a->size[1] != b->size[0]) {
    fvl_err("matmul: inner sizes differ: x is %s, y is %s (%lld vs %lld)", fvl_shape_str(a, x, sizeof x),
            fvl_shape_str(b, y, sizeof y), (long long)a->size[1], (long long)b->size[0]);
    return NULL;
  }
  if (need_f32("matmul", a, "x") < 0 || need_f32("matmul", b, "y") < 0) return NULL;
  int64_t M = a->size[0], N = b->size[1], K = a->size[1];
  int64_t sz[2] = {M, N};
  fvl_tensor *out = fvl_empty(FVL_F32, 2, sz);
  if (!out) return NULL;
  fvl_tensor *ca = NULL, *cb = NULL;
  int lda, ldb, ta = gemm_layout(a, &lda), tb = gemm_layout(b, &ldb);
  const fvl_tensor *ua = a, *ub = b;
  if (ta < 0) { ca = fvl_contiguous(a); ua = ca; ta = 0; lda = (int)(K > 0 ? K : 1); }
  if (tb < 0) { cb = fvl_contiguous(b); ub = cb; tb = 0; ldb = (int)(N > 0 ? N : 1); }
  if (M && N) {
    if (K == 0) memset(fvl_f32(out), 0, (size_t)(M * N) * sizeof(float));
    else {
      /* big products go in row blocks so Ctrl-C (the abort flag) can stop them between blocks */
      int64_t blk = (double)M * N * K > 4e9 ? (M + 7) / 8 : M;
      if (blk < 64) blk = 64;
      for (int64_t r0 = 0; r0 < M; r0 += blk) {
        if (fvl_check_abort("matmul") < 0) {
          fvl_release(ca); fvl_release(cb); fvl_release(out);
          return NULL;
        }
        int64_t rows = M - r0 < blk ? M - r0 : blk;
        const float *pa = fvl_f32(ua) + (ta ? r0 : r0 * lda);
        fvl_gemm(ta, tb, (int)rows, (int)N, (int)K, 1.0f, pa, lda, fvl_f32(ub), ldb, 0.0f,
                 fvl_f32(out) + r0 * N, (int)N);
      }
    }
  }
  fvl_release(ca);
  fvl_release(cb);
  fvl_tensor *in[2] = {a, b};
  fvl_node *nd = fvl_record("matmul", bw_matmul, out, 2, in);
  if (nd) { nd->saved[0] = fvl_detach(a); nd->saved[1] = fvl_detach(b); }
  return out;
}

/* ------------------------------------------------------------------ indexing */
int fvl_check_index_range(const char *fn, const char *arg, const fvl_tensor *idx, int64_t n) {
  if (idx->dtype != FVL_I32) return fvl_err("%s: %s must be int32", fn, arg);
  fvl_tensor *c = fvl_contiguous((fvl_tensor *)idx);
  const int32_t *p = fvl_i32(c);
  int64_t m = fvl_numel(c);
  for (int64_t i = 0; i < m; i++)
    if (p[i] < 0 || p[i] >= n) {
      long long v = p[i];
      fvl_release(c);
      return fvl_err("%s: %s[%lld] = %lld is outside 0..%lld (0-based)", fn, arg, (long long)i, v, (long long)n - 1);
    }
  fvl_release(c);
  return 0;
}
static int bw_index_select(fvl_node *n, fvl_tensor *g) {
  fvl_tensor *in = n->in[0];
  fvl_tensor *z = fvl_zeros(FVL_F32, in->ndim, in->size);
  if (!z) return -1;
  int rc = fvl_index_add_(z, (int)n->iv[0], n->saved[0], g);
  if (rc == 0) rc = fvl_node_accum(n, 0, z);
  fvl_release(z);
  return rc;
}
fvl_tensor *fvl_index_select(fvl_tensor *t, int dim, fvl_tensor *idx) {
  if (fvl_check_dim("index", dim, t->ndim) < 0) return NULL;
  if (idx->ndim != 1) { fvl_err("index: indices must be 1-D"); return NULL; }
  if (fvl_check_index_range("index", "indices", idx, t->size[dim]) < 0) return NULL;
  fvl_tensor *c = fvl_contiguous(t), *ci = fvl_contiguous(idx);
  int64_t sz[FVL_MAXDIM];
  for (int d = 0; d < t->ndim; d++) sz[d] = t->size[d];
  sz[dim] = idx->size[0];
  fvl_tensor *out = fvl_empty(t->dtype, t->ndim, sz);
  if (out) {
    int64_t outer, n, inner;
    split3(c, dim, &outer, &n, &inner);
    int64_t m = idx->size[0];
    const int32_t *pi = fvl_i32(ci);
    const float *p = fvl_f32(c);  /* 4-byte elements: same copy for int32 */
    float *o = fvl_f32(out);
#pragma omp parallel for schedule(static) if (outer * m * inner > PAR_MIN)
    for (int64_t r = 0; r < outer * m; r++) {
      int64_t oo = r / m, j = r % m;
      memcpy(o + (oo * m + j) * inner, p + (oo * n + pi[j]) * inner, (size_t)inner * 4);
    }
    fvl_node *nd = fvl_record("index", bw_index_select, out, 1, &t);
    if (nd) { nd->iv[0] = dim; nd->saved[0] = fvl_retain(ci); }
  }
  fvl_release(c);
  fvl_release(ci);
  return out;
}
int fvl_index_add_(fvl_tensor *dst, int dim, fvl_tensor *idx, fvl_tensor *src) {
  if (!fvl_is_contiguous(dst) || dst->dtype != FVL_F32) return fvl_err("index_add: destination must be contiguous float32");
  if (fvl_check_dim("index_add", dim, dst->ndim) < 0) return -1;
  if (idx->ndim != 1 || src->ndim != dst->ndim || src->size[dim] != idx->size[0])
    return fvl_err("index_add: source rows (%lld) differ from the number of indices (%lld)",
                   (long long)(src->ndim > dim ? src->size[dim] : -1), (long long)idx->size[0]);
  for (int d = 0; d < dst->ndim; d++)
    if (d != dim && src->size[d] != dst->size[d]) return fvl_err("index_add: source shape differs from destination");
  if (fvl_check_index_range("index_add", "indices", idx, dst->size[dim]) < 0) return -1;
  fvl_tensor *cs = fvl_to_dtype(src, FVL_F32);
  fvl_tensor *c = cs ? fvl_contiguous(cs) : NULL, *ci = fvl_contiguous(idx);
  fvl_release(cs);
  if (!c || !ci) { fvl_release(c); fvl_release(ci); return -1; }
  int64_t outer, n, inner;
  split3(dst, dim, &outer, &n, &inner);
  int64_t m = idx->size[0];
  const int32_t *pi = fvl_i32(ci);
  const float *p = fvl_f32(c);
  float *o = fvl_f32(dst);
  for (int64_t oo = 0; oo < outer; oo++)
    for (int64_t j = 0; j < m; j++) {
      float *dr = o + (oo * n + pi[j]) * inner;
      const float *sr = p + (oo * m + j) * inner;
      for (int64_t k = 0; k < inner; k++) dr[k] += sr[k];
    }
  fvl_release(c);
  fvl_release(ci);
  return 0;
}
/* gather along dim for 2-D tensors (torch.gather): out[i][j] = t[i][idx[i][j]] (dim 1) */
static int bw_gather(fvl_node *n, fvl_tensor *g) {
  fvl_tensor *in = n->in[0], *idx = n->saved[0];
  int dim = (int)n->iv[0];
  fvl_tensor *z = fvl_zeros(FVL_F32, in->ndim, in->size);
  fvl_tensor *gc = fvl_contiguous(g);
  if (!z || !gc) { fvl_release(z); fvl_release(gc); return -1; }
  const int32_t *pi = fvl_i32(idx);
  const float *pg = fvl_f32(gc);
  float *pz = fvl_f32(z);
  int64_t R = idx->size[0], K = idx->ndim > 1 ? idx->size[1] : 1, C = in->ndim > 1 ? in->size[1] : 1;
  for (int64_t i = 0; i < R; i++)
    for (int64_t j = 0; j < K; j++) {
      int64_t v = pi[i * K + j];
      if (dim == 1) pz[i * C + v] += pg[i * K + j]; else pz[v * C + j] += pg[i * K + j];
    }
  fvl_release(gc);
  int rc = fvl_node_accum(n, 0, z);
  fvl_release(z);
  return rc;
}
fvl_tensor *fvl_gather(fvl_tensor *t, int dim, fvl_tensor *idx) {
  if (t->ndim > 2 || idx->ndim != t->ndim) { fvl_err("gather: expects 1-D or 2-D tensors with indices of the same rank"); return NULL; }
  if (fvl_check_dim("gather", dim, t->ndim) < 0) return NULL;
  if (t->ndim == 2 && idx->size[1 - dim] != t->size[1 - dim]) {
    fvl_err("gather: indices have %lld along dim %d (0-based), input has %lld", (long long)idx->size[1 - dim], 1 - dim,
            (long long)t->size[1 - dim]);
    return NULL;
  }
  if (fvl_check_index_range("gather", "indices", idx, t->size[dim]) < 0) return NULL;
  fvl_tensor *c = fvl_contiguous(t), *ci = fvl_contiguous(idx);
  fvl_tensor *out = fvl_empty(t->dtype, idx->ndim, idx->size);
  if (out) {
    const int32_t *pi = fvl_i32(ci);
    const float *p = fvl_f32(c);
    float *o = fvl_f32(out);
    int64_t R = idx->size[0], K = idx->ndim > 1 ? idx->size[1] : 1, C = t->ndim > 1 ? t->size[1] : 1;
    for (int64_t i = 0; i < R; i++)
      for (int64_t j = 0; j < K; j++) {
        int64_t v = pi[i * K + j];
        o[i * K + j] = t->ndim == 1 ? p[v] : (dim == 1 ? p[i * C + v] : p[v * C + j]);
      }
    fvl_node *nd = fvl_record("gather", bw_gather, out, 1, &t);
    if (nd) { nd->iv[0] = t->ndim == 1 ? 1 : dim; nd->saved[0] = fvl_retain(ci); }
  }
  fvl_release(c);
  fvl_release(ci);
  return out;
}
static int bw_cat(fvl_node *n, fvl_tensor *g) {
  int dim = (int)n->iv[0];
  int64_t start = 0;
  int rc = 0;
  int prev = fvl_set_grad_enabled(0);
  for (int i = 0; i < n->nin && rc == 0; i++) {
    int64_t len = n->iv[1 + i];
    if (fvl_node_wants(n, i)) {
      fvl_tensor *s = fvl_narrow(g, dim, start, len);
      fvl_tensor *sc = s ? fvl_contiguous(s) : NULL;
      rc = sc ? fvl_node_accum(n, i, sc) : -1;
      fvl_release(s);
      fvl_release(sc);
    }
    start += len;
  }
  fvl_set_grad_enabled(prev);
  return rc;
}
fvl_tensor *fvl_cat(int n, fvl_tensor **ts, int dim) {
  if (n < 1) { fvl_err("cat: no tensors"); return NULL; }
  if (fvl_check_dim("cat", dim, ts[0]->ndim) < 0) return NULL;
  int64_t sz[FVL_MAXDIM];
  memcpy(sz, ts[0]->size, sizeof sz);
  sz[dim] = 0;
  for (int i = 0; i < n; i++) {
    if (ts[i]->ndim != ts[0]->ndim || ts[i]->dtype != ts[0]->dtype) { fvl_err("cat: ts[%d] has another rank or dtype than ts[0]", i); return NULL; }
    for (int d = 0; d < ts[0]->ndim; d++)
      if (d != dim && ts[i]->size[d] != ts[0]->size[d]) {
        char a[64], b[64];
        fvl_err("cat: ts[%d] is %s, ts[0] is %s (sizes differ outside dim %d, 0-based)", i,
                fvl_shape_str(ts[i], a, sizeof a), fvl_shape_str(ts[0], b, sizeof b), dim);
        return NULL;
      }
    sz[dim] += ts[i]->size[dim];
  }
  fvl_tensor *out = fvl_empty(ts[0]->dtype, ts[0]->ndim, sz);
  if (!out) return NULL;
  int64_t start = 0;
  int prev = fvl_set_grad_enabled(0);
  for (int i = 0; i < n; i++) {
    fvl_tensor *v = fvl_narrow(out, dim, start, ts[i]->size[dim]);
    if (v) fvl_copy_(v, ts[i]);
    fvl_release(v);
    start += ts[i]->size[dim];
  }
  fvl_set_grad_enabled(prev);
  if (n <= FVL_NODE_MAXIN && n < 8) {
    fvl_node *nd = fvl_record("cat", bw_cat, out, n, ts);
    if (nd) { nd->iv[0] = dim; for (int i = 0; i < n; i++) nd->iv[1 + i] = ts[i]->size[dim]; }
  } else if (fvl_needs_grad(n, ts)) {
    fvl_release(out);
    fvl_err("cat: at most 6 tensors can be concatenated with gradients");
    return NULL;
  }
  return out;
}
