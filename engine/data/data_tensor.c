/* data_tensor.c — tensor-level front ends of the data kernels (IDX load, synthetic_faces,
 * loader batches). */
#include "data.h"
#include "rng.h"
#include <stdlib.h>
#include <string.h>

fvl_tensor *fvl_idx_load(const char *path, fvl_dtype dt, double scale, double shift) {
  fvl_idx_info in;
  if (dt == FVL_I32 && !(shift >= -2147483648.0 && shift <= 2147483647.0 && shift == (double)(int64_t)shift)) {
    fvl_err("idx_load: shift = %g (expected an int32 for int32 output)", shift);
    return NULL;
  }
  fvl_idx_file *f = fvl_idx_open(path, &in);
  if (!f) return NULL;
  fvl_tensor *t = fvl_empty(dt, in.ndim, in.dims);
  if (!t) { fvl_idx_close(f); return NULL; }
  int rc = dt == FVL_F32 ? fvl_idx_read_f32(f, fvl_f32(t), (float)scale, (float)shift)
                         : fvl_idx_read_i32(f, fvl_i32(t), (int32_t)shift);
  fvl_idx_close(f);
  if (rc) { fvl_release(t); return NULL; }
  return t;
}

int fvl_synth_faces(const fvl_synth_opts *o, int32_t label_base, fvl_tensor **xtr,
                    fvl_tensor **ytr, fvl_tensor **ytrue, fvl_tensor **xte, fvl_tensor **yte) {
  int64_t ntr, nte;
  *xtr = *ytr = *ytrue = *xte = *yte = NULL;
  if (fvl_synth_sizes(o, NULL, &ntr, &nte)) return -1;
  int64_t s[4];
  int nd = o->map_h > 0 ? 4 : 2;
  if (nd == 4) { s[1] = 1; s[2] = o->map_h; s[3] = o->map_w; } else s[1] = o->out_dim;
  s[0] = ntr;
  *xtr = fvl_empty(FVL_F32, nd, s);
  *ytr = fvl_empty(FVL_I32, 1, s);
  *ytrue = fvl_empty(FVL_I32, 1, s);
  s[0] = nte;
  *xte = fvl_empty(FVL_F32, nd, s);
  *yte = fvl_empty(FVL_I32, 1, s);
  if (!*xtr || !*ytr || !*ytrue || !*xte || !*yte ||
      fvl_synth_generate(o, label_base, fvl_f32(*xtr), fvl_i32(*ytr), fvl_i32(*ytrue),
                         nte ? fvl_f32(*xte) : NULL, nte ? fvl_i32(*yte) : NULL)) {
    fvl_release(*xtr); fvl_release(*ytr); fvl_release(*ytrue); fvl_release(*xte); fvl_release(*yte);
    *xtr = *ytr = *ytrue = *xte = *yte = NULL;
    return -1;
  }
  return 0;
}

/* the loader's random streams: one generator per (seed, epoch); the permutation uses its
 * counters 0..n-1, augmentation draws one 64-bit value per sample position of the epoch */
static uint64_t epoch_seed(uint64_t seed, int64_t epoch) {
  return fvl_rng_bits(seed ^ 0x10ade7ULL, (uint64_t)epoch);
}

fvl_tensor *fvl_loader_perm(int64_t n, uint64_t seed, int64_t epoch) {
  if (n < 0 || n > INT32_MAX) { fvl_err("loader: %lld rows (expected 0..2^31-1)", (long long)n); return NULL; }
  fvl_tensor *p = fvl_empty(FVL_I32, 1, &n);
  if (!p) return NULL;
  fvl_rng r = {epoch_seed(seed, epoch), 0};
  fvl_rng_permutation(&r, fvl_i32(p), (size_t)n);
  return p;
}

/* the arguments of fvl_loader_batch */
static int batch_check(const char *fn, const fvl_tensor *x, const fvl_tensor *y, const fvl_tensor *perm,
                       int64_t start, int64_t B, int flip, int pad) {
  if (!x || x->ndim < 1) return fvl_err("%s: data must be a tensor with rows", fn);
  int64_t n = x->size[0];
  if (x->dtype != FVL_F32 && (flip || pad))
    return fvl_err("%s: flip/crop need float32 images, got %s", fn, fvl_dtype_name(x->dtype));
  if (y && (y->ndim != 1 || y->size[0] != n || y->dtype != FVL_I32)) {
    char a[64], b[64];
    return fvl_err("%s: labels must be %lld int32 values (one per row of data %s), got %s %s", fn,
                   (long long)n, fvl_shape_str(x, a, sizeof a), fvl_dtype_name(y->dtype),
                   fvl_shape_str(y, b, sizeof b));
  }
  if (perm && (perm->ndim != 1 || perm->size[0] != n || perm->dtype != FVL_I32 ||
               !fvl_is_contiguous(perm)))
    return fvl_err("%s: permutation must be %lld contiguous int32 values", fn, (long long)n);
  if (start < 0 || B < 0 || start > n || B > n - start)   /* written so that it cannot overflow */
    return fvl_err("%s: batch of %lld rows from row %lld does not fit %lld rows (0-based)", fn, (long long)B,
                   (long long)start, (long long)n);
  if ((flip || pad) && x->ndim != 4) {
    char a[64];
    return fvl_err("%s: flip and crop need images N×C×H×W, got data %s", fn,
                   fvl_shape_str(x, a, sizeof a));
  }
  if (pad < 0 || (x->ndim == 4 && (pad >= x->size[2] || pad >= x->size[3])))
    return fvl_err("%s: crop = %d (expected 0..%lld for %lldx%lld images)", fn, pad,
                   x->ndim == 4 ? (long long)(x->size[2] < x->size[3] ? x->size[2] : x->size[3]) - 1 : 0LL,
                   x->ndim == 4 ? (long long)x->size[2] : 0LL, x->ndim == 4 ? (long long)x->size[3] : 0LL);
  return 0;
}

/* the random flips and crop offsets of rows start..start+B-1 of this epoch (a function of the
 * row's position, not of the thread or the batch size) */
static void augment_params(int64_t start, int64_t B, int flip, int pad, uint64_t seed, int64_t epoch, uint8_t *fl,
                           int32_t *dy, int32_t *dx) {
  uint64_t es = epoch_seed(seed, epoch) ^ 0xa5a5a5a5a5a5ULL;
  for (int64_t b = 0; b < B; b++) {
    uint64_t r = fvl_rng_bits(es, (uint64_t)(start + b));
    fl[b] = flip ? (uint8_t)(r & 1) : 0;
    if (pad) {
      uint64_t span = 2 * (uint64_t)pad + 1;
      dy[b] = (int32_t)(((r >> 8) & 0xffffff) * span >> 24) - pad;
      dx[b] = (int32_t)(((r >> 32) & 0xffffff) * span >> 24) - pad;
    }
  }
}

int fvl_loader_batch(fvl_tensor *x, fvl_tensor *y, fvl_tensor *perm, int64_t start, int64_t B,
                     int flip, int pad, uint64_t seed, int64_t epoch, fvl_tensor **xb,
                     fvl_tensor **yb, fvl_tensor **index) {
  const char *fn = "loader";
  *xb = *yb = *index = NULL;
  if (batch_check(fn, x, y, perm, start, B, flip, pad) < 0) return -1;
  int64_t n = x->size[0];
  fvl_tensor *xc = fvl_contiguous(x);
  fvl_tensor *yc = y ? fvl_contiguous(y) : NULL;
  int32_t *idx = malloc((size_t)(B ? B : 1) * sizeof *idx);
  uint8_t *fl = NULL;
  int32_t *dy = NULL, *dx = NULL;
  int rc = -1;
  if (!xc || (y && !yc) || !idx) { if (!idx) fvl_err("%s: out of memory", fn); goto done; }
  for (int64_t b = 0; b < B; b++) idx[b] = perm ? fvl_i32(perm)[start + b] : (int32_t)(start + b);
  int64_t s[FVL_MAXDIM];
  memcpy(s, x->size, sizeof s);
  s[0] = B;
  *xb = fvl_empty(x->dtype, x->ndim, s);
  *index = fvl_empty(FVL_I32, 1, &B);
  if (y) *yb = fvl_empty(FVL_I32, 1, &B);
  if (!*xb || !*index || (y && !*yb)) goto done;
  int64_t rowlen = n ? fvl_numel(x) / n : 0;
  if (flip || pad) {
    fl = calloc((size_t)B + 1, 1);
    dy = calloc((size_t)B + 1, sizeof *dy);
    dx = calloc((size_t)B + 1, sizeof *dx);
    if (!fl || !dy || !dx) { fvl_err("%s: out of memory", fn); goto done; }
    augment_params(start, B, flip, pad, seed, epoch, fl, dy, dx);
    if (fvl_data_gather_images(fvl_f32(xc), n, (int)x->size[1], (int)x->size[2], (int)x->size[3],
                               idx, B, fl, dy, dx, pad, fvl_f32(*xb)))
      goto done;
  } else if (x->dtype == FVL_F32) {
    if (fvl_data_gather_f32(fvl_f32(xc), n, rowlen, idx, B, fvl_f32(*xb))) goto done;
  } else {
    if (fvl_data_gather_i32(fvl_i32(xc), n, rowlen, idx, B, 0, fvl_i32(*xb))) goto done;
  }
  if (y && fvl_data_gather_i32(fvl_i32(yc), n, 1, idx, B, 0, fvl_i32(*yb))) goto done;
  for (int64_t b = 0; b < B; b++) fvl_i32(*index)[b] = idx[b] + 1;
  rc = 0;
done:
  if (rc) {
    fvl_release(*xb); fvl_release(*yb); fvl_release(*index);
    *xb = *yb = *index = NULL;
  }
  fvl_release(xc);
  fvl_release(yc);
  free(idx); free(fl); free(dy); free(dx);
  return rc;
}
