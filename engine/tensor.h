/* tensor.h — float32/int32 tensors: refcounted storage + strided view (ggml-style fixed rank).
 *
 * Ownership: every function that returns fvl_tensor* returns a NEW reference (refs = 1 for
 * the caller); release it with fvl_release(). NULL return = error, message in fvl_errmsg().
 * Functions whose name ends in _ work in place and return 0 / -1.
 * Dims are 0-based in C (the Lua binding converts from 1-based). */
#ifndef FVL_TENSOR_H
#define FVL_TENSOR_H
#include <stdint.h>
#include <stddef.h>
#include "core.h"

#define FVL_MAXDIM 6
typedef enum { FVL_F32 = 0, FVL_I32 = 1 } fvl_dtype;

typedef struct fvl_storage {
  void *data;
  size_t nbytes;
  int refs;
} fvl_storage;

struct fvl_node;
typedef struct fvl_tensor {
  fvl_storage *st;
  int64_t offset;                 /* in elements */
  int ndim;
  int64_t size[FVL_MAXDIM];
  int64_t stride[FVL_MAXDIM];     /* in elements */
  fvl_dtype dtype;
  int refs;
  /* autograd */
  int requires_grad;              /* leaf flag set by the user, or result of a tracked op */
  struct fvl_tensor *grad;        /* accumulated gradient of a leaf (owned) */
  struct fvl_node *grad_fn;       /* op that produced it (owned ref), NULL for leaves */
} fvl_tensor;

/* at most this many elements in one tensor (4 TiB of float32) */
#define FVL_MAX_NUMEL ((int64_t)1 << 40)

/* Checks a shape before anything is made of it: 0..FVL_MAXDIM dims, sizes >= 0, the element
 * count <= FVL_MAX_NUMEL and every contiguous stride representable (also when a size is 0).
 * 0 and *numel, or -1 + "fn: shape 4294967296x4294967296 has more than 2^40 elements". */
int fvl_shape_check(const char *fn, int ndim, const int64_t *size, int64_t *numel);
/* dim in 0..ndim-1, else -1 and "fn: dim 3 is outside 0..1 (0-based)"; an engine invariant:
 * the bindings check the user's 1-based dim first (lua/bind_util.c fvl_checkdim) */
int fvl_check_dim(const char *fn, int dim, int ndim);

/* ---- lifetime ---- */
fvl_tensor *fvl_retain(fvl_tensor *t);
void fvl_release(fvl_tensor *t);          /* NULL-safe */

/* ---- creation ---- */
fvl_tensor *fvl_empty(fvl_dtype dt, int ndim, const int64_t *size);
fvl_tensor *fvl_zeros(fvl_dtype dt, int ndim, const int64_t *size);
fvl_tensor *fvl_full(fvl_dtype dt, int ndim, const int64_t *size, double v);
fvl_tensor *fvl_empty_like(const fvl_tensor *t);       /* contiguous, same dtype/shape */
fvl_tensor *fvl_zeros_like(const fvl_tensor *t);
fvl_tensor *fvl_arange(fvl_dtype dt, double start, double stop, double step);
fvl_tensor *fvl_from_data(fvl_dtype dt, int ndim, const int64_t *size, const void *src); /* copies */
fvl_tensor *fvl_rand(int ndim, const int64_t *size, float lo, float hi);   /* global RNG */
fvl_tensor *fvl_randn(int ndim, const int64_t *size, float mean, float std);
fvl_tensor *fvl_randint(int ndim, const int64_t *size, int32_t lo, int32_t hi); /* inclusive */
fvl_tensor *fvl_scalar(float v);                                             /* 0-dim f32 */

/* ---- access ---- */
int64_t fvl_numel(const fvl_tensor *t);
int fvl_is_contiguous(const fvl_tensor *t);
static inline float *fvl_f32(const fvl_tensor *t) { return (float *)t->st->data + t->offset; }
static inline int32_t *fvl_i32(const fvl_tensor *t) { return (int32_t *)t->st->data + t->offset; }
double fvl_get(const fvl_tensor *t, const int64_t *idx);       /* no bounds check */
void fvl_set(fvl_tensor *t, const int64_t *idx, double v);
const char *fvl_dtype_name(fvl_dtype dt);
/* "256x512" into buf */
const char *fvl_shape_str(const fvl_tensor *t, char *buf, size_t n);
int fvl_same_shape(const fvl_tensor *a, const fvl_tensor *b);

/* ---- views (share storage; tracked by autograd) ---- */
fvl_tensor *fvl_transpose(fvl_tensor *t, int d0, int d1);
fvl_tensor *fvl_narrow(fvl_tensor *t, int dim, int64_t start, int64_t len);
fvl_tensor *fvl_select(fvl_tensor *t, int dim, int64_t i);      /* drops dim */
fvl_tensor *fvl_reshape(fvl_tensor *t, int ndim, const int64_t *size); /* -1 allowed once; copies if needed */
fvl_tensor *fvl_unsqueeze(fvl_tensor *t, int dim);
fvl_tensor *fvl_contiguous(fvl_tensor *t);   /* retains t itself when already contiguous */
fvl_tensor *fvl_clone(fvl_tensor *t);        /* contiguous copy, tracked */
fvl_tensor *fvl_detach(fvl_tensor *t);       /* shares storage, no grad_fn */
fvl_tensor *fvl_to_dtype(fvl_tensor *t, fvl_dtype dt);

/* ---- in place (not tracked) ---- */
int fvl_copy_(fvl_tensor *dst, const fvl_tensor *src);  /* shapes must broadcast to dst */
int fvl_fill_(fvl_tensor *t, double v);
int fvl_uniform_(fvl_tensor *t, float lo, float hi);
int fvl_normal_(fvl_tensor *t, float mean, float std);

/* ---- elementwise (broadcasting, tracked) ---- */
typedef enum { FVL_ADD, FVL_SUB, FVL_MUL, FVL_DIV, FVL_POW, FVL_MAX2, FVL_MIN2 } fvl_binop;
fvl_tensor *fvl_binary(fvl_binop op, fvl_tensor *a, fvl_tensor *b);
fvl_tensor *fvl_binary_scalar(fvl_binop op, fvl_tensor *a, double s, int scalar_first);
typedef enum {
  FVL_NEG, FVL_EXP, FVL_LOG, FVL_SQRT, FVL_ABS, FVL_COS, FVL_SIN, FVL_ACOS, FVL_TANH,
  FVL_SIGMOID, FVL_RELU, FVL_SQUARE, FVL_LOG1P, FVL_SIGN, FVL_FLOOR
} fvl_unop;
fvl_tensor *fvl_unary(fvl_unop op, fvl_tensor *a);
fvl_tensor *fvl_clamp(fvl_tensor *a, double lo, double hi);   /* grad passes at equality */
/* comparisons → f32 0/1, not tracked */
typedef enum { FVL_GT, FVL_GE, FVL_LT, FVL_LE, FVL_EQ, FVL_NE } fvl_cmpop;
fvl_tensor *fvl_compare(fvl_cmpop op, fvl_tensor *a, fvl_tensor *b);
fvl_tensor *fvl_compare_scalar(fvl_cmpop op, fvl_tensor *a, double s);
fvl_tensor *fvl_where(fvl_tensor *cond, fvl_tensor *a, fvl_tensor *b);  /* tracked in a, b */

/* ---- reductions (dim = -1: all elements → 0-dim; keepdim keeps a size-1 dim) ---- */
fvl_tensor *fvl_sum(fvl_tensor *t, int dim, int keepdim);
fvl_tensor *fvl_mean(fvl_tensor *t, int dim, int keepdim);
fvl_tensor *fvl_max(fvl_tensor *t, int dim, int keepdim, fvl_tensor **argmax_out); /* argmax 0-based i32 */
fvl_tensor *fvl_min(fvl_tensor *t, int dim, int keepdim, fvl_tensor **argmin_out);
fvl_tensor *fvl_argmax(fvl_tensor *t, int dim, int keepdim);   /* 0-based i32 */
fvl_tensor *fvl_norm(fvl_tensor *t, int dim, int keepdim);      /* L2 */
fvl_tensor *fvl_logsumexp(fvl_tensor *t, int dim, int keepdim);
fvl_tensor *fvl_normalize(fvl_tensor *t, int dim, double eps);  /* x / max(|x|, eps) along dim */

/* ---- linear algebra ---- */
/* 2-D only; a transposed view is passed to sgemm as a flag, not copied */
fvl_tensor *fvl_matmul(fvl_tensor *a, fvl_tensor *b);
/* raw: C[MxN] = alpha * op(A)[MxK] op(B)[KxN] + beta * C, row-major leading dims */
void fvl_gemm(int transa, int transb, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc);

/* ---- indexing (indices are 0-based int32 in C) ---- */
fvl_tensor *fvl_index_select(fvl_tensor *t, int dim, fvl_tensor *idx);   /* tracked */
fvl_tensor *fvl_gather(fvl_tensor *t, int dim, fvl_tensor *idx);         /* torch.gather, tracked */
int fvl_index_add_(fvl_tensor *dst, int dim, fvl_tensor *idx, fvl_tensor *src); /* rows add */
fvl_tensor *fvl_cat(int n, fvl_tensor **ts, int dim);                    /* tracked */

/* ---- checking helpers used by every op ---- */
int fvl_check_index_range(const char *fn, const char *arg, const fvl_tensor *idx, int64_t n);

/* ---- .npy (little-endian <f4 / <i4, C order) ---- */
int fvl_npy_save(const char *path, const fvl_tensor *t);  /* atomic: tmp + fsync + rename */
/* The header dict of a .npy file, parsed strictly: exactly the keys 'descr' (a plain dtype
 * string such as '<f4'; structured dtypes are refused), 'fortran_order' (True|False) and
 * 'shape' (a tuple of non-negative integers, checked with fvl_shape_check), each once, in any
 * order, then only spaces up to the final newline. Which descr values load is the caller's. */
typedef struct {
  char descr[16];
  int fortran_order;
  int ndim;
  int64_t shape[FVL_MAXDIM];
  int64_t numel;
} fvl_npy_header;
/* hdr: the hlen header bytes after the length field; where: "load: f.npy" for messages.
 * 0, or -1 + "load: f.npy: header: duplicate key 'descr'" */
int fvl_npy_parse_header(const char *hdr, size_t hlen, const char *where, fvl_npy_header *h);
fvl_tensor *fvl_npy_load(const char *path);
#endif
