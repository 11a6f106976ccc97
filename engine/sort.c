/* sort.c — stable argsort along one dimension (see sort.h). */
#include "sort.h"
#include <stdlib.h>
#include <math.h>

typedef struct { float v; int32_t i; } sort_key;

/* NaN is the largest value; ties keep the original order (index ascending) */
static int cmp_val(float a, float b) {
  int na = isnan(a), nb = isnan(b);
  if (na || nb) return na - nb;
  return (a > b) - (a < b);
}
static int cmp_asc(const void *pa, const void *pb) {
  const sort_key *a = pa, *b = pb;
  int c = cmp_val(a->v, b->v);
  return c ? c : (a->i > b->i) - (a->i < b->i);
}
static int cmp_i64(const void *pa, const void *pb) {
  int64_t a = *(const int64_t *)pa, b = *(const int64_t *)pb;
  return (a > b) - (a < b);
}
static int cmp_desc(const void *pa, const void *pb) {
  const sort_key *a = pa, *b = pb;
  int c = cmp_val(b->v, a->v);
  return c ? c : (a->i > b->i) - (a->i < b->i);
}

fvl_tensor *fvl_argsort(fvl_tensor *t, int dim, int descending) {
  if (!t) return NULL;
  if (t->ndim == 0) return fvl_zeros(FVL_I32, 0, NULL);
  if (dim < 0 || dim >= t->ndim) { fvl_err("argsort: dim %d is outside 0..%d (0-based)", dim, t->ndim - 1); return NULL; }
  if (t->dtype != FVL_F32 && t->dtype != FVL_I32) { fvl_err("argsort: unsupported dtype"); return NULL; }
  int64_t n = t->size[dim];
  if (n > INT32_MAX) { fvl_err("argsort: size %lld along dim %d exceeds int32 indices", (long long)n, dim); return NULL; }
  fvl_tensor *out = fvl_empty(FVL_I32, t->ndim, t->size);
  if (!out) return NULL;
  int64_t numel = fvl_numel(t);
  if (numel == 0) return out;
  sort_key *keys = NULL;
  int64_t *ikeys = NULL;
  if (t->dtype == FVL_F32) keys = malloc((size_t)n * sizeof *keys);
  else ikeys = malloc((size_t)n * sizeof *ikeys);
  if (!keys && !ikeys) { fvl_release(out); fvl_err("argsort: out of memory (%lld keys)", (long long)n); return NULL; }
  int64_t ostride[FVL_MAXDIM], pos[FVL_MAXDIM] = {0};
  ostride[t->ndim - 1] = 1;
  for (int d = t->ndim - 2; d >= 0; d--) ostride[d] = ostride[d + 1] * t->size[d + 1];
  const float *pf = t->dtype == FVL_F32 ? fvl_f32(t) : NULL;
  const int32_t *pi = t->dtype == FVL_I32 ? fvl_i32(t) : NULL;
  int32_t *po = fvl_i32(out);
  int64_t rows = numel / n;
  for (int64_t r = 0; r < rows; r++) {
    if ((r & 1023) == 0 && fvl_check_abort("argsort")) { free(keys); free(ikeys); fvl_release(out); return NULL; }
    int64_t in_off = 0, out_off = 0;
    for (int d = 0; d < t->ndim; d++) { in_off += pos[d] * t->stride[d]; out_off += pos[d] * ostride[d]; }
    if (pf) {
      for (int64_t k = 0; k < n; k++) { keys[k].v = pf[in_off + k * t->stride[dim]]; keys[k].i = (int32_t)k; }
      qsort(keys, (size_t)n, sizeof *keys, descending ? cmp_desc : cmp_asc);
      for (int64_t k = 0; k < n; k++) po[out_off + k * ostride[dim]] = keys[k].i;
    } else {
      /* int32 values exactly: one int64 key = value * 2^32 + index (value reversed when
       * descending, in int64 so INT32_MIN cannot overflow) sorts stably as plain integers */
      for (int64_t k = 0; k < n; k++) {
        int64_t v = pi[in_off + k * t->stride[dim]];
        if (descending) v = -v - 1;
        ikeys[k] = v * ((int64_t)1 << 32) + k;
      }
      qsort(ikeys, (size_t)n, sizeof *ikeys, cmp_i64);
      for (int64_t k = 0; k < n; k++) po[out_off + k * ostride[dim]] = (int32_t)(ikeys[k] & 0xffffffff);
    }
    for (int d = t->ndim - 1; d >= 0; d--) {
      if (d == dim) continue;
      if (++pos[d] < t->size[d]) break;
      pos[d] = 0;
    }
  }
  free(keys);
  free(ikeys);
  return out;
}

static int cmp_ptr_pos(const void *pa, const void *pb) {
  const fvl_ptr_pos *a = pa, *b = pb;
  uintptr_t x = (uintptr_t)a->p, y = (uintptr_t)b->p;
  if (x != y) return x < y ? -1 : 1;
  return (a->idx > b->idx) - (a->idx < b->idx);
}
void fvl_sort_ptrs(const void *const *ptrs, int64_t n, fvl_ptr_pos *out) {
  for (int64_t i = 0; i < n; i++) out[i] = (fvl_ptr_pos){ptrs[i], i};
  if (n > 1) qsort(out, (size_t)n, sizeof *out, cmp_ptr_pos);
}
int64_t fvl_first_repeat(const void *const *ptrs, int64_t n, int64_t *earlier) {
  if (n < 2) return -1;
  fvl_ptr_pos *s = malloc(sizeof *s * (size_t)n);
  if (!s) return fvl_err("first_repeat: out of memory (%lld pointers)", (long long)n), -2;
  fvl_sort_ptrs(ptrs, n, s);
  int64_t best = -1, first = -1, run = 0;   /* run: the first entry of equal pointers (its first position) */
  for (int64_t k = 1; k < n; k++) {
    if (s[k].p != s[run].p) { run = k; continue; }
    if (best < 0 || s[k].idx < best) { best = s[k].idx; first = s[run].idx; }
  }
  free(s);
  if (best >= 0 && earlier) *earlier = first;
  return best;
}
