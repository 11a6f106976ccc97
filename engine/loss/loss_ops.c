/* loss_ops.c — autograd wrappers of the loss kernels: cosine (normalise + GEMM + clamp),
 * fused margin softmax-CE, hard-negative mean, target gather, pairwise Circle, centre rule.
 * Derivations: LOSSES.md §0 (the shared backward), margin.h for the kernels. */
#include "loss_ops.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cblas.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define NRM_EPS 1e-12f   /* F.normalize's eps */
#define NEAR_ONE 0.9999f /* |c| above this is recomputed in double */

/* hot loops: compiled for AVX2+FMA and the baseline, chosen at load time (see margin.c) */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(FVL_NO_CLONES)
#define FVL_HOT __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define FVL_HOT
#endif

FVL_HOT static float sumsq(const float *r, int64_t n) {
  float s = 0;
#pragma omp simd reduction(+:s)
  for (int64_t d = 0; d < n; d++) s += r[d] * r[d];
  return s;
}
/* r ← r·inw column-wise (inw = 1/|W_j|); returns how many entries have |r| > NEAR_ONE */
FVL_HOT static int64_t scale_row(float *r, const float *inw, int64_t C) {
  int64_t cnt = 0;
#pragma omp simd reduction(+:cnt)
  for (int64_t j = 0; j < C; j++) {
    float v = r[j] * inw[j];
    cnt += (v > NEAR_ONE) | (v < -NEAR_ONE);
    r[j] = v;
  }
  return cnt;
}
FVL_HOT static void scale_cols(float *g, const float *inw, int64_t n) {
#pragma omp simd
  for (int64_t k = 0; k < n; k++) g[k] *= inw[k];
}
/* dst (+)= h − (h·w)·q·w   (q = 1/|w|², or 0: no projection); bt = 0 writes, 1 adds */
FVL_HOT static void project_row(float *dst, const float *h, const float *w, int64_t n, float q, float bt) {
  float dot = 0.0f;
#pragma omp simd reduction(+:dot)
  for (int64_t d = 0; d < n; d++) dot += h[d] * w[d];
  float beta = dot * q;
  if (bt != 0.0f) {
#pragma omp simd
    for (int64_t d = 0; d < n; d++) dst[d] += h[d] - beta * w[d];
  } else {  /* dst may hold garbage (fresh allocation): never read it */
#pragma omp simd
    for (int64_t d = 0; d < n; d++) dst[d] = h[d] - beta * w[d];
  }
}
static int nthreads(void) {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}
/* columns per block: a B×block slab of the cosine matrix stays under ~2 MB, and there are at
   least 4 blocks per thread to balance them */
static int64_t block_cols(int64_t B, int64_t C) {
  int64_t nb = ((int64_t)1 << 19) / (B > 0 ? B : 1);
  int64_t bal = (C + 4 * nthreads() - 1) / (4 * nthreads());
  if (bal < nb) nb = bal;
  nb = (nb + 63) / 64 * 64;
  return nb < 64 ? 64 : nb > 8192 ? 8192 : nb;
}
/* The column blocks are shared among the OpenMP threads, each calling a single-threaded sgemm
   on its block and doing the block's elementwise work while it is in cache: one thread pool
   (OpenBLAS's own threads would alternate with OpenMP's at every block). */
static int blas_single(void) {
  int n = openblas_get_num_threads();
  if (n != 1) openblas_set_num_threads(1);
  return n;
}
static void blas_restore(int n) {
  if (n != 1) openblas_set_num_threads(n);
}

/* ---------------------------------------------------------------- helpers */
static const char *shape(const fvl_tensor *t, char *buf) { return fvl_shape_str(t, buf, 64); }

static int check_2d(const char *fn, const char *arg, const fvl_tensor *t, const char *what) {
  char b[64];
  if (!t) return fvl_err("%s: %s is missing (expected %s)", fn, arg, what);
  if (t->dtype != FVL_F32)
    return fvl_err("%s: %s is %s (expected a float32 %s)", fn, arg, fvl_dtype_name(t->dtype), what);
  if (t->ndim != 2) return fvl_err("%s: %s is %s (expected %s)", fn, arg, shape(t, b), what);
  return 0;
}

/* row-major data of a 2-D tensor: itself when rows are contiguous (ld = stride[0]), otherwise
   an untracked contiguous copy. New reference. */
static fvl_tensor *rows_of(fvl_tensor *t, int *ld) {
  if (t->stride[1] == 1 && (t->size[0] <= 1 || t->stride[0] >= t->size[1])) {
    *ld = (int)(t->size[0] <= 1 ? (t->size[1] > 0 ? t->size[1] : 1) : t->stride[0]);
    return fvl_retain(t);
  }
  int prev = fvl_set_grad_enabled(0);
  fvl_tensor *c = fvl_clone(t);
  fvl_set_grad_enabled(prev);
  *ld = (int)(t->size[1] > 0 ? t->size[1] : 1);
  return c;
}
/* contiguous untracked data of any tensor (new reference) */
static fvl_tensor *data_of(fvl_tensor *t) {
  if (fvl_is_contiguous(t)) return fvl_retain(t);
  int prev = fvl_set_grad_enabled(0);
  fvl_tensor *c = fvl_clone(t);
  fvl_set_grad_enabled(prev);
  return c;
}

/* labels: int32, B entries (B or B×1), values in 0..C−1. Returns contiguous data (new ref). */
static fvl_tensor *labels_of(const char *fn, fvl_tensor *y0, int64_t B, int64_t C) {
  char b[64];
  if (!y0) { fvl_err("%s: labels are missing (expected %lld int32 class ids)", fn, (long long)B); return NULL; }
  if (y0->dtype != FVL_I32) {
    fvl_err("%s: labels are %s (expected int32 class ids)", fn, fvl_dtype_name(y0->dtype));
    return NULL;
  }
  if (fvl_numel(y0) != B || y0->ndim > 2) {
    fvl_err("%s: labels are %s but there are %lld rows (expected %lld labels)", fn, shape(y0, b),
            (long long)B, (long long)B);
    return NULL;
  }
  fvl_tensor *y = data_of(y0);
  if (!y) return NULL;
  const int32_t *p = fvl_i32(y);
  for (int64_t i = 0; i < B; i++)
    if (p[i] < 0 || (C > 0 && p[i] >= C)) {
      fvl_err("%s: labels[%lld] = %d is outside 1..%lld", fn, (long long)i + 1, (int)p[i] + 1, (long long)C);
      fvl_release(y);
      return NULL;
    }
  return y;
}

/* a per-row vector (s or m): float32 with B entries; contiguous data (new ref) */
static fvl_tensor *rowvec_of(const char *fn, const char *arg, fvl_tensor *v, int64_t B) {
  char b[64];
  if (v->dtype != FVL_F32) {
    fvl_err("%s: %s is a %s tensor (expected float32 with %lld entries)", fn, arg, fvl_dtype_name(v->dtype), (long long)B);
    return NULL;
  }
  if (fvl_numel(v) != B || v->ndim > 2) {
    fvl_err("%s: %s is %s (expected one value per row: %lld entries)", fn, arg, shape(v, b), (long long)B);
    return NULL;
  }
  return data_of(v);
}

/* hands g (which the caller owns exclusively) to input i of node n: becomes the gradient
   accumulator of a non-leaf input when it has none yet (no copy), else is accumulated */
static int take_or_accum(fvl_node *n, int i, fvl_tensor *g) {
  if (!fvl_node_wants(n, i)) return 0;
  fvl_tensor *t = n->in[i];
  if (t->grad_fn && !t->grad_fn->gacc && fvl_same_shape(t, g) && fvl_is_contiguous(g) &&
      g->dtype == FVL_F32) {
    t->grad_fn->gacc = fvl_retain(g);
    return 0;
  }
  return fvl_node_accum(n, i, g);
}

/* the gradient accumulator of input i when it can be added to in place (contiguous B×C), or NULL */
static fvl_tensor *inplace_acc(fvl_node *n, int i) {
  if (!fvl_node_wants(n, i)) return NULL;
  fvl_tensor *t = n->in[i];
  fvl_tensor *g = t->grad_fn ? t->grad_fn->gacc : NULL;
  if (g && fvl_same_shape(g, t) && fvl_is_contiguous(g) && g->dtype == FVL_F32) return g;
  return NULL;
}

static int ws_ok(const char *fn, const char *arg, const fvl_tensor *ws, int64_t B, int64_t C) {
  char b[64];
  if (ws->dtype != FVL_F32 || ws->ndim != 2 || ws->size[0] != B || ws->size[1] != C ||
      !fvl_is_contiguous(ws))
    return fvl_err("%s: workspace %s is %s %s%s (expected a contiguous float32 %lldx%lld tensor)", fn, arg,
                   fvl_dtype_name(ws->dtype), shape(ws, b), fvl_is_contiguous(ws) ? "" : " (not contiguous)",
                   (long long)B, (long long)C);
  return 0;
}

/* ================================================================ cosine */
typedef struct { int64_t *idx; int64_t n; } clamp_list;
static void free_clamp(void *p) {
  clamp_list *c = p;
  free(c->idx);
  free(c);
}
static int cosine_bw(fvl_node *n, fvl_tensor *gout);

/* ws may be overwritten: nothing else shares its storage, or the graph of its last use as an
   output of fvl_cosine / fvl_linear_logits is finished (backward freed the saved tensors) */
static int linear_bw(fvl_node *n, fvl_tensor *gout);
static int ws_reusable_any(const fvl_tensor *ws) {
  if (ws->st->refs == 1) return 1;
  fvl_node *g = ws->grad_fn;
  return g && (g->backward == cosine_bw || g->backward == linear_bw) && g->saved[0] == NULL;
}
#define ws_reusable ws_reusable_any

fvl_tensor *fvl_cosine(fvl_tensor *x, fvl_tensor *W, fvl_tensor *ws) {
  static const char *fn = "cosine";
  char b1[64], b2[64];
  if (check_2d(fn, "x", x, "B×D embeddings") || check_2d(fn, "W", W, "C×D class centres")) return NULL;
  int64_t B = x->size[0], D = x->size[1], C = W->size[0];
  if (W->size[1] != D) {
    fvl_err("%s: x is %s but W is %s (expected W with %lld columns, like x)", fn, shape(x, b1), shape(W, b2),
            (long long)D);
    return NULL;
  }
  if (B < 1) { fvl_err("%s: empty batch (x is %s)", fn, shape(x, b1)); return NULL; }
  if (C < 1 || D < 1) { fvl_err("%s: W is %s (expected at least one class and one column)", fn, shape(W, b1)); return NULL; }
  if (B > INT32_MAX || C > INT32_MAX || D > INT32_MAX) { fvl_err("%s: sizes beyond 2^31", fn); return NULL; }
  if (ws && ws_ok(fn, "ws", ws, B, C)) return NULL;
  int ldx, ldw;
  fvl_tensor *xc = rows_of(x, &ldx), *Wc = rows_of(W, &ldw);
  int64_t sz[2] = {B, D}, szb[1] = {B}, szc[1] = {C};
  fvl_tensor *xh = fvl_empty(FVL_F32, 2, sz), *nx = fvl_empty(FVL_F32, 1, szb), *nw = fvl_empty(FVL_F32, 1, szc);
  fvl_tensor *out = NULL;
  int64_t *rowcnt = NULL;
  clamp_list *cl = calloc(1, sizeof *cl);
  if (!xc || !Wc || !xh || !nx || !nw || !cl) goto fail;
  const float *xp = fvl_f32(xc), *wp = fvl_f32(Wc);
  float *xhp = fvl_f32(xh), *nxp = fvl_f32(nx), *nwp = fvl_f32(nw);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < B; i++) {
    const float *r = xp + i * ldx;
    double s = 0;
    for (int64_t d = 0; d < D; d++) s += (double)r[d] * r[d];
    float nrm = (float)sqrt(s), inv = 1.0f / fmaxf(nrm, NRM_EPS);
    nxp[i] = nrm;
    for (int64_t d = 0; d < D; d++) xhp[i * D + d] = r[d] * inv;
  }
  if (ws && ws_reusable(ws) && ws->st != x->st && ws->st != W->st) {
    out = fvl_retain(ws);
    if (out->grad_fn) { fvl_node_release(out->grad_fn); out->grad_fn = NULL; }
    out->requires_grad = 0;
  } else {
    int64_t so[2] = {B, C};
    out = fvl_empty(FVL_F32, 2, so);
    if (!out) goto fail;
  }
  float *op = fvl_f32(out);
  rowcnt = calloc((size_t)B, sizeof *rowcnt);
  if (!rowcnt) { fvl_err("%s: out of memory", fn); goto fail; }
  int64_t total = 0, nb = block_cols(B, C), nblk = (C + nb - 1) / nb;
  /* column blocks: norms of the block's centres, GEMM, then the block is scaled by 1/|W_j|
     while it is still in cache. Entries with |c| > NEAR_ONE are recomputed in double below:
     there sinθ = sqrt(1 − c²), which the angular margins divide by, is ill-conditioned in
     fp32 (LOSSES.md §5.1), and they are rare. Values whose raw dot product leaves [−1, 1] are
     clamped and get zero gradient (torch's clamp passes it only inside, equality included). */
  int nbl = blas_single();
#pragma omp parallel for schedule(dynamic, 1) reduction(+:total)
  for (int64_t blk = 0; blk < nblk; blk++) {
    if (fvl_aborted()) continue;
    int64_t j0 = blk * nb, nj = C - j0 < nb ? C - j0 : nb;
    float inw[8192];
    for (int64_t j = j0; j < j0 + nj; j++) {
      nwp[j] = sqrtf(sumsq(wp + j * ldw, D));
      inw[j - j0] = 1.0f / (nwp[j] > NRM_EPS ? nwp[j] : NRM_EPS);
    }
    fvl_gemm(0, 1, (int)B, (int)nj, (int)D, 1.0f, xhp, (int)D, wp + j0 * ldw, ldw, 0.0f, op + j0, (int)C);
    for (int64_t i = 0; i < B; i++) {
      int64_t cnt = scale_row(op + i * C + j0, inw, nj);
      if (cnt) {
#pragma omp atomic
        rowcnt[i] += cnt;
        total += cnt;
      }
    }
  }
  blas_restore(nbl);
  if (fvl_check_abort(fn)) goto fail;
  if (total > 0) {
    cl->idx = malloc(sizeof(int64_t) * (size_t)total);
    int64_t *off = malloc(sizeof(int64_t) * (size_t)B);
    if (!cl->idx || !off) { free(off); fvl_err("%s: out of memory", fn); goto fail; }
    for (int64_t i = 0, o = 0; i < B; i++) { off[i] = o; o += rowcnt[i]; }
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t i = 0; i < B; i++) {
      if (!rowcnt[i]) continue;
      float *r = op + i * C;
      const float *xr = xp + i * ldx;
      double sx = 0;
      for (int64_t d = 0; d < D; d++) sx += (double)xr[d] * xr[d];
      double ix = 1.0 / fmax(sqrt(sx), NRM_EPS);
      int64_t k = off[i];
      for (int64_t j = 0; j < C; j++) {
        if (!(r[j] > NEAR_ONE || r[j] < -NEAR_ONE)) continue;
        const float *wr = wp + j * ldw;
        double sw = 0, dot = 0;
        for (int64_t d = 0; d < D; d++) { sw += (double)wr[d] * wr[d]; dot += (double)xr[d] * wr[d]; }
        double v = dot * ix / fmax(sqrt(sw), NRM_EPS);
        if (v > 1.0 || v < -1.0) { r[j] = v > 0 ? 1.0f : -1.0f; cl->idx[k++] = i * C + j; }
        else r[j] = (float)v;
      }
      rowcnt[i] = k - off[i];
    }
    for (int64_t i = 0; i < B; i++)   /* compact the clamped indices */
      for (int64_t k = 0; k < rowcnt[i]; k++) cl->idx[cl->n++] = cl->idx[off[i] + k];
    free(off);
  }
  free(rowcnt);
  rowcnt = NULL;
  fvl_tensor *in[2] = {x, W};
  fvl_node *nd = fvl_record("cosine", cosine_bw, out, 2, in);
  if (nd) {
    nd->saved[0] = xh;
    nd->saved[1] = fvl_detach(out);
    nd->saved[2] = nx;
    nd->saved[3] = nw;
    nd->saved[4] = Wc;
    nd->iv[0] = ldw;
    nd->ctx = cl;
    nd->free_ctx = free_clamp;
    fvl_release(xc);
    return out;
  }
  free_clamp(cl);
  fvl_release(xh); fvl_release(nx); fvl_release(nw); fvl_release(Wc); fvl_release(xc);
  return out;
fail:
  free(rowcnt);
  if (cl) free_clamp(cl);
  fvl_release(out); fvl_release(xh); fvl_release(nx); fvl_release(nw); fvl_release(Wc); fvl_release(xc);
  return NULL;
}

static int cosine_bw(fvl_node *n, fvl_tensor *gout) {
  fvl_tensor *xh = n->saved[0], *nx = n->saved[2], *nw = n->saved[3], *Wc = n->saved[4];
  clamp_list *cl = n->ctx;
  int64_t B = xh->size[0], D = xh->size[1], C = nw->size[0];
  int ldw = (int)n->iv[0];
  int want_x = fvl_node_wants(n, 0), want_w = fvl_node_wants(n, 1);
  /* the incoming gradient is the node's private accumulator (or the loss's workspace): it is
     rescaled in place */
  fvl_tensor *G = fvl_is_contiguous(gout) ? fvl_retain(gout) : data_of(gout);
  if (!G) return -1;
  float *g = fvl_f32(G);
  const float *nwp = fvl_f32(nw), *nxp = fvl_f32(nx), *xhp = fvl_f32(xh), *wp = fvl_f32(Wc);
  for (int64_t k = 0; k < cl->n; k++) g[cl->idx[k]] = 0.0f;
  int64_t nb = block_cols(B, C), nblk = (C + nb - 1) / nb;
  int rc = 0;
  fvl_tensor *gx = NULL, *dst = NULL;
  int direct = 0, oom = 0;
  float bt = 0.0f;
  if (want_x) {
    int64_t sz[2] = {B, D};
    if (!(gx = fvl_empty(FVL_F32, 2, sz))) rc = -1;
  }
  if (rc == 0 && want_w) {
    fvl_tensor *W = n->in[1];
    int64_t sz[2] = {C, D};
    if (!W->grad_fn) {  /* a leaf: accumulate straight into W->grad (no C×D temporary) */
      if (!W->grad) {
        if (!(W->grad = fvl_empty(FVL_F32, 2, sz))) rc = -1;
        direct = 1;
      } else if (W->grad->dtype == FVL_F32 && fvl_same_shape(W->grad, W) && fvl_is_contiguous(W->grad)) {
        direct = 1;
        bt = 1.0f;
      }
      if (direct && rc == 0) dst = fvl_retain(W->grad);
    }
    if (rc == 0 && !dst && !(dst = fvl_empty(FVL_F32, 2, sz))) rc = -1;
  }
  /* column blocks of G, shared among the threads: G ← G·diag(1/|W_j|) in cache, then
       H = G_blkᵀ·X̂,  dL/dW_j (+)= H_j − (H_j·W_j/|W_j|²)·W_j       (sgemm + projection)
     using H_j·W_j = Σ_i G_ij c_ij |W_j|, i.e. the normalisation Jacobian (LOSSES.md §0);
     afterwards dL/dX̂ = G·W in one sgemm over the rescaled G. */
  if (rc == 0) {
    int nbl = blas_single();
#pragma omp parallel
    {
      float *hb = want_w ? malloc(sizeof(float) * (size_t)(nb * D)) : NULL;
      float inw[8192];
      if (want_w && !hb) {
#pragma omp atomic write
        oom = 1;
      }
#pragma omp for schedule(dynamic, 1)
      for (int64_t blk = 0; blk < nblk; blk++) {
        if (oom || fvl_aborted()) continue;
        int64_t j0 = blk * nb, nj = C - j0 < nb ? C - j0 : nb;
        for (int64_t k = 0; k < nj; k++) inw[k] = 1.0f / (nwp[j0 + k] > NRM_EPS ? nwp[j0 + k] : NRM_EPS);
        for (int64_t i = 0; i < B; i++) scale_cols(g + i * C + j0, inw, nj);
        if (!want_w) continue;
        fvl_gemm(1, 0, (int)nj, (int)D, (int)B, 1.0f, g + j0, (int)C, xhp, (int)D, 0.0f, hb, (int)D);
        float *dp = fvl_f32(dst);
        for (int64_t k = 0; k < nj; k++) {
          int64_t j = j0 + k;
          project_row(dp + j * D, hb + k * D, wp + j * ldw, D, nwp[j] < NRM_EPS ? 0.0f : inw[k] * inw[k], bt);
        }
      }
      free(hb);
    }
    blas_restore(nbl);
    if (oom) rc = fvl_err("cosine backward: out of memory");
    else rc = fvl_check_abort("cosine backward");
  }
  if (rc == 0 && want_x)
    fvl_gemm(0, 0, (int)B, (int)D, (int)C, 1.0f, g, (int)C, wp, ldw, 0.0f, fvl_f32(gx), (int)D);
  if (rc == 0 && want_x) {
    /* dL/dx_i = (g_i − (g_i·x̂_i) x̂_i)/|x_i|, or g_i/eps for |x_i| < eps */
    float *dp = fvl_f32(gx);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < B; i++) {
      float *r = dp + i * D;
      const float *xr = xhp + i * D;
      if (nxp[i] < NRM_EPS) {
        for (int64_t d = 0; d < D; d++) r[d] /= NRM_EPS;
      } else {
        double a = 0;
        for (int64_t d = 0; d < D; d++) a += (double)r[d] * xr[d];
        float inv = 1.0f / nxp[i], af = (float)a;
        for (int64_t d = 0; d < D; d++) r[d] = (r[d] - af * xr[d]) * inv;
      }
    }
    rc = take_or_accum(n, 0, gx);
  }
  if (rc == 0 && want_w && !direct) rc = take_or_accum(n, 1, dst);
  fvl_release(gx);
  fvl_release(dst);
  fvl_release(G);
  return rc;
}

/* ================================================================ linear logits (Softmax heads) */
typedef struct { int ldw; } linear_ctx;
static int linear_bw(fvl_node *n, fvl_tensor *gout);

/* per block: dst_blk (+)= G_blkᵀ·x (sgemm), db_blk = column sums of G_blk */
FVL_HOT static void colsum_add(float *acc, const float *g, int64_t n) {
#pragma omp simd
  for (int64_t k = 0; k < n; k++) acc[k] += g[k];
}

fvl_tensor *fvl_linear_logits(fvl_tensor *x, fvl_tensor *W, fvl_tensor *b, fvl_tensor *ws) {
  static const char *fn = "linear_logits";
  char b1[64], b2[64];
  if (check_2d(fn, "x", x, "B×D features") || check_2d(fn, "W", W, "C×D weights")) return NULL;
  int64_t B = x->size[0], D = x->size[1], C = W->size[0];
  if (W->size[1] != D) {
    fvl_err("%s: x is %s but W is %s (expected W with %lld columns, like x)", fn, shape(x, b1), shape(W, b2),
            (long long)D);
    return NULL;
  }
  if (B < 1) { fvl_err("%s: empty batch (x is %s)", fn, shape(x, b1)); return NULL; }
  if (C < 1 || D < 1) { fvl_err("%s: W is %s (expected at least one class and one column)", fn, shape(W, b1)); return NULL; }
  if (B > INT32_MAX || C > INT32_MAX || D > INT32_MAX) { fvl_err("%s: sizes beyond 2^31", fn); return NULL; }
  if (b && (b->dtype != FVL_F32 || fvl_numel(b) != C || b->ndim > 2)) {
    fvl_err("%s: bias is %s %s (expected float32 with %lld values, one per class)", fn, fvl_dtype_name(b->dtype),
            shape(b, b1), (long long)C);
    return NULL;
  }
  if (ws && ws_ok(fn, "ws", ws, B, C)) return NULL;
  int ldx, ldw;
  fvl_tensor *xc = rows_of(x, &ldx), *Wc = rows_of(W, &ldw), *bc = b ? data_of(b) : NULL, *out = NULL;
  if (!xc || !Wc || (b && !bc)) goto fail;
  if (ws && ws_reusable_any(ws) && ws->st != x->st && ws->st != W->st && !(b && ws->st == b->st)) {
    out = fvl_retain(ws);
    if (out->grad_fn) { fvl_node_release(out->grad_fn); out->grad_fn = NULL; }
    out->requires_grad = 0;
  } else {
    int64_t so[2] = {B, C};
    if (!(out = fvl_empty(FVL_F32, 2, so))) goto fail;
  }
  float *op = fvl_f32(out);
  const float *xp = fvl_f32(xc), *wp = fvl_f32(Wc), *bp = bc ? fvl_f32(bc) : NULL;
  int64_t nb = block_cols(B, C), nblk = (C + nb - 1) / nb;
  int nbl = blas_single();
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t blk = 0; blk < nblk; blk++) {
    if (fvl_aborted()) continue;
    int64_t j0 = blk * nb, nj = C - j0 < nb ? C - j0 : nb;
    fvl_gemm(0, 1, (int)B, (int)nj, (int)D, 1.0f, xp, ldx, wp + j0 * ldw, ldw, 0.0f, op + j0, (int)C);
    if (bp)
      for (int64_t i = 0; i < B; i++) colsum_add(op + i * C + j0, bp + j0, nj);
  }
  blas_restore(nbl);
  if (fvl_check_abort(fn)) goto fail;
  fvl_tensor *in[3] = {x, W, b};
  fvl_node *nd = fvl_record("linear_logits", linear_bw, out, 3, in);
  if (nd) {
    nd->saved[0] = xc;
    nd->saved[1] = Wc;
    nd->saved[2] = fvl_detach(out);  /* marks ws busy until the backward */
    nd->iv[0] = ldx;
    nd->iv[1] = ldw;
    fvl_release(bc);
    return out;
  }
  fvl_release(xc); fvl_release(Wc); fvl_release(bc);
  return out;
fail:
  fvl_release(xc); fvl_release(Wc); fvl_release(bc); fvl_release(out);
  return NULL;
}

static int linear_bw(fvl_node *n, fvl_tensor *gout) {
  fvl_tensor *xc = n->saved[0], *Wc = n->saved[1];
  int ldx = (int)n->iv[0], ldw = (int)n->iv[1];
  int64_t B = xc->size[0], D = xc->size[1], C = Wc->size[0];
  int want_x = fvl_node_wants(n, 0), want_w = fvl_node_wants(n, 1), want_b = fvl_node_wants(n, 2);
  fvl_tensor *G = data_of(gout), *gx = NULL, *dst = NULL, *db = NULL;
  if (!G) return -1;
  const float *g = fvl_f32(G), *xp = fvl_f32(xc), *wp = fvl_f32(Wc);
  int rc = 0, direct = 0;
  float bt = 0.0f;
  int64_t szc[1] = {C};
  if (want_b && !(db = fvl_zeros(FVL_F32, 1, szc))) rc = -1;
  if (rc == 0 && want_w) {
    fvl_tensor *W = n->in[1];
    int64_t sz[2] = {C, D};
    if (!W->grad_fn) {  /* a leaf: accumulate straight into W->grad */
      if (!W->grad) {
        if (!(W->grad = fvl_empty(FVL_F32, 2, sz))) rc = -1;
        direct = 1;
      } else if (W->grad->dtype == FVL_F32 && fvl_same_shape(W->grad, W) && fvl_is_contiguous(W->grad)) {
        direct = 1;
        bt = 1.0f;
      }
      if (direct && rc == 0) dst = fvl_retain(W->grad);
    }
    if (rc == 0 && !dst && !(dst = fvl_empty(FVL_F32, 2, sz))) rc = -1;
  }
  if (rc == 0 && (want_w || want_b)) {
    int64_t nb = block_cols(B, C), nblk = (C + nb - 1) / nb;
    int nbl = blas_single();
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t blk = 0; blk < nblk; blk++) {
      if (fvl_aborted()) continue;
      int64_t j0 = blk * nb, nj = C - j0 < nb ? C - j0 : nb;
      if (want_w)
        fvl_gemm(1, 0, (int)nj, (int)D, (int)B, 1.0f, g + j0, (int)C, xp, ldx, bt, fvl_f32(dst) + j0 * D, (int)D);
      if (want_b)
        for (int64_t i = 0; i < B; i++) colsum_add(fvl_f32(db) + j0, g + i * C + j0, nj);
    }
    blas_restore(nbl);
    rc = fvl_check_abort("linear_logits backward");
  }
  if (rc == 0 && want_x) {
    int64_t sz[2] = {B, D};
    if (!(gx = fvl_empty(FVL_F32, 2, sz))) rc = -1;
    else {
      fvl_gemm(0, 0, (int)B, (int)D, (int)C, 1.0f, g, (int)C, wp, ldw, 0.0f, fvl_f32(gx), (int)D);
      rc = take_or_accum(n, 0, gx);
    }
  }
  if (rc == 0 && want_w && !direct) rc = take_or_accum(n, 1, dst);
  if (rc == 0 && want_b) {
    fvl_tensor *v = db;
    if (!fvl_same_shape(v, n->in[2])) v = fvl_reshape(db, n->in[2]->ndim, n->in[2]->size);
    rc = v ? fvl_node_accum(n, 2, v) : -1;
    if (v != db) fvl_release(v);
  }
  fvl_release(G); fvl_release(gx); fvl_release(dst); fvl_release(db);
  return rc;
}

/* ================================================================ margin softmax-CE */
typedef struct { fvl_margin_spec sp; int B, C, ldc; char name[48]; } margin_ctx;
static void free_plain(void *p) { free(p); }

static int margin_bw(fvl_node *n, fvl_tensor *gout) {
  margin_ctx *mc = n->ctx;
  fvl_tensor *cos = n->saved[0], *y = n->saved[1], *lse = n->saved[2], *srow = n->saved[3],
             *mrow = n->saved[4], *gws = n->saved[5];
  fvl_margin_spec sp = mc->sp;
  sp.s_row = srow ? fvl_f32(srow) : NULL;
  sp.m_row = mrow ? fvl_f32(mrow) : NULL;
  int B = mc->B, C = mc->C;
  float gscale = (float)(fvl_get(gout, (int64_t[]){0, 0, 0, 0, 0, 0}) / B);
  fvl_tensor *dc = NULL, *ds = NULL, *dm = NULL;
  int rc = 0;
  int64_t szb[1] = {B};
  if (fvl_node_wants(n, 0)) {
    fvl_tensor *cin = n->in[0];
    fvl_tensor *acc = cin->grad_fn ? cin->grad_fn->gacc : NULL;
    if (gws && gws->st->refs == 1 && gws->st != cos->st && !(acc && acc->st == gws->st)) dc = fvl_retain(gws);
    else {
      int64_t sz[2] = {B, C};
      dc = fvl_empty(FVL_F32, 2, sz);
      if (!dc) return -1;
    }
  }
  if (fvl_node_wants(n, 1) && !(ds = fvl_empty(FVL_F32, 1, szb))) rc = -1;
  if (fvl_node_wants(n, 2) && !(dm = fvl_empty(FVL_F32, 1, szb))) rc = -1;
  if (rc == 0 && (dc || ds || dm)) {
    /* without a dcos destination the kernel still needs one: use a row-sized pass on a scratch */
    fvl_tensor *tmp = NULL;
    float *dp;
    if (dc) dp = fvl_f32(dc);
    else {
      int64_t sz[2] = {B, C};
      tmp = fvl_empty(FVL_F32, 2, sz);
      if (!tmp) rc = -1;
      dp = tmp ? fvl_f32(tmp) : NULL;
    }
    if (rc == 0)
      rc = fvl_margin_ce_bwd(fvl_f32(cos), mc->ldc, fvl_i32(y), B, C, &sp, fvl_f32(lse), gscale, dp, C,
                             ds ? fvl_f32(ds) : NULL, dm ? fvl_f32(dm) : NULL);
    fvl_release(tmp);
  }
  if (rc == 0 && dc) {
    /* the cos input's shape may be a 1×… view etc.: reshape-free, same B×C shape is checked at forward */
    rc = take_or_accum(n, 0, dc);
  }
  if (rc == 0 && ds) {
    fvl_tensor *v = ds;
    if (!fvl_same_shape(v, n->in[1])) v = fvl_reshape(ds, n->in[1]->ndim, n->in[1]->size);
    rc = v ? fvl_node_accum(n, 1, v) : -1;
    if (v != ds) fvl_release(v);
  }
  if (rc == 0 && dm) {
    fvl_tensor *v = dm;
    if (!fvl_same_shape(v, n->in[2])) v = fvl_reshape(dm, n->in[2]->ndim, n->in[2]->size);
    rc = v ? fvl_node_accum(n, 2, v) : -1;
    if (v != dm) fvl_release(v);
  }
  fvl_release(dc);
  fvl_release(ds);
  fvl_release(dm);
  return rc;
}

fvl_tensor *fvl_margin_ce_ex(fvl_tensor *cos, fvl_tensor *y0, const fvl_margin_spec *spec,
                             fvl_tensor *s_row, fvl_tensor *m_row, fvl_tensor *gws,
                             const char *name, int nonfinite_ok, int *bad_row) {
  const char *fn = name && *name ? name : "margin_ce";
  char b[64];
  if (bad_row) *bad_row = 0;
  if (check_2d(fn, "cos", cos, "B×C cosine matrix")) return NULL;
  int64_t B = cos->size[0], C = cos->size[1];
  if (B < 1) { fvl_err("%s: empty batch (cos is %s)", fn, shape(cos, b)); return NULL; }
  if (C < 1 || B > INT32_MAX || C > INT32_MAX) { fvl_err("%s: cos is %s (expected B×C with C >= 1)", fn, shape(cos, b)); return NULL; }
  if (!spec) { fvl_err("%s: spec is missing", fn); return NULL; }
  if (gws && ws_ok(fn, "gws", gws, B, C)) return NULL;
  fvl_margin_spec sp = *spec;
  fvl_tensor *y = NULL, *cd = NULL, *sr = NULL, *mr = NULL, *lse = NULL, *rl = NULL, *out = NULL;
  margin_ctx *mc = NULL;
  int ldc;
  if (!(y = labels_of(fn, y0, B, C))) goto fail;
  if (s_row && !(sr = rowvec_of(fn, "s", s_row, B))) goto fail;
  if (m_row && !(mr = rowvec_of(fn, "m", m_row, B))) goto fail;
  sp.s_row = sr ? fvl_f32(sr) : NULL;
  sp.m_row = mr ? fvl_f32(mr) : NULL;
  if (fvl_margin_spec_check(fn, &sp)) goto fail;
  if (!(cd = rows_of(cos, &ldc))) goto fail;
  int64_t szb[1] = {B};
  if (!(lse = fvl_empty(FVL_F32, 1, szb)) || !(rl = fvl_empty(FVL_F32, 1, szb))) goto fail;
  if (fvl_margin_ce_fwd(fvl_f32(cd), ldc, fvl_i32(y), (int)B, (int)C, &sp, fvl_f32(rl), fvl_f32(lse))) {
    /* the kernel names itself; say which head */
    char msg[512];
    snprintf(msg, sizeof msg, "%s", fvl_errmsg());
    fvl_err("%s: %s", fn, msg);
    goto fail;
  }
  const float *lp = fvl_f32(rl);
  double sum = 0;
  int64_t bad = -1;
  for (int64_t i = 0; i < B; i++) {
    if (bad < 0 && !isfinite(lp[i])) bad = i;
    sum += lp[i];
  }
  if (bad >= 0) {
    if (!nonfinite_ok) {
      fvl_err("%s: loss is not finite (first bad row %lld)", fn, (long long)bad + 1);
      goto fail;
    }
    if (bad_row) *bad_row = (int)(bad + 1);
  }
  if (!(out = fvl_scalar((float)(sum / B)))) goto fail;
  fvl_tensor *in[3] = {cos, s_row, m_row};
  fvl_node *nd = fvl_record("margin_ce", margin_bw, out, 3, in);
  if (nd) {
    if (!(mc = malloc(sizeof *mc))) { fvl_err("%s: out of memory", fn); goto fail; }
    mc->sp = sp;
    mc->sp.s_row = mc->sp.m_row = NULL;
    mc->B = (int)B;
    mc->C = (int)C;
    mc->ldc = ldc;
    snprintf(mc->name, sizeof mc->name, "%s", fn);
    nd->ctx = mc;
    nd->free_ctx = free_plain;
    nd->saved[0] = cd; cd = NULL;
    nd->saved[1] = y; y = NULL;
    nd->saved[2] = lse; lse = NULL;
    nd->saved[3] = sr; sr = NULL;
    nd->saved[4] = mr; mr = NULL;
    nd->saved[5] = gws ? fvl_retain(gws) : NULL;
  }
  fvl_release(y); fvl_release(cd); fvl_release(sr); fvl_release(mr); fvl_release(lse); fvl_release(rl);
  return out;
fail:
  fvl_release(y); fvl_release(cd); fvl_release(sr); fvl_release(mr); fvl_release(lse); fvl_release(rl);
  fvl_release(out);
  return NULL;
}

fvl_tensor *fvl_margin_ce(fvl_tensor *cos, fvl_tensor *y0, const fvl_margin_spec *sp,
                          fvl_tensor *s_row, fvl_tensor *m_row, fvl_tensor *gws) {
  return fvl_margin_ce_ex(cos, y0, sp, s_row, m_row, gws, "margin_ce", 0, NULL);
}

fvl_tensor *fvl_margin_logits_t(fvl_tensor *cos, fvl_tensor *y0, const fvl_margin_spec *spec,
                                fvl_tensor *s_row, fvl_tensor *m_row, const char *name) {
  const char *fn = name && *name ? name : "margin_logits";
  char b[64];
  if (check_2d(fn, "cos", cos, "B×C cosine matrix")) return NULL;
  int64_t B = cos->size[0], C = cos->size[1];
  if (B < 1 || C < 1) { fvl_err("%s: cos is %s (expected B×C with B, C >= 1)", fn, shape(cos, b)); return NULL; }
  if (!spec) { fvl_err("%s: spec is missing", fn); return NULL; }
  fvl_margin_spec sp = *spec;
  fvl_tensor *y = NULL, *cd = NULL, *sr = NULL, *mr = NULL, *z = NULL;
  int ldc;
  int64_t sz[2] = {B, C};
  if (!(y = labels_of(fn, y0, B, C))) goto done;
  if (s_row && !(sr = rowvec_of(fn, "s", s_row, B))) goto done;
  if (m_row && !(mr = rowvec_of(fn, "m", m_row, B))) goto done;
  sp.s_row = sr ? fvl_f32(sr) : NULL;
  sp.m_row = mr ? fvl_f32(mr) : NULL;
  if (fvl_margin_spec_check(fn, &sp) || !(cd = rows_of(cos, &ldc)) || !(z = fvl_empty(FVL_F32, 2, sz))) goto done;
  if (fvl_margin_logits(fvl_f32(cd), ldc, fvl_i32(y), (int)B, (int)C, &sp, fvl_f32(z), (int)C)) {
    fvl_release(z);
    z = NULL;
  }
done:
  fvl_release(y); fvl_release(cd); fvl_release(sr); fvl_release(mr);
  return z;
}

/* ================================================================ hard-negative mean */
static int hard_mean_bw(fvl_node *n, fvl_tensor *gout) {
  fvl_tensor *cos = n->saved[0], *y = n->saved[1], *cnt = n->saved[2];
  int B = (int)n->iv[0], C = (int)n->iv[1], ldc = (int)n->iv[2], hard = (int)n->iv[3], affine = (int)n->iv[4];
  fvl_tensor *gh = data_of(gout);
  if (!gh) return -1;
  fvl_tensor *acc = inplace_acc(n, 0);
  int rc;
  if (acc) {
    rc = fvl_hard_mean_bwd(fvl_f32(cos), ldc, fvl_i32(y), B, C, (fvl_hard_kind)hard, (float)n->sc[0], affine,
                           (float)n->sc[1], fvl_f32(cnt), fvl_f32(gh), fvl_f32(acc), C, 1);
  } else {
    int64_t sz[2] = {B, C};
    fvl_tensor *dc = fvl_empty(FVL_F32, 2, sz);
    rc = dc ? fvl_hard_mean_bwd(fvl_f32(cos), ldc, fvl_i32(y), B, C, (fvl_hard_kind)hard, (float)n->sc[0], affine,
                                (float)n->sc[1], fvl_f32(cnt), fvl_f32(gh), fvl_f32(dc), C, 0)
            : -1;
    if (rc == 0) rc = take_or_accum(n, 0, dc);
    fvl_release(dc);
  }
  fvl_release(gh);
  return rc;
}

fvl_tensor *fvl_hard_mean(fvl_tensor *cos, fvl_tensor *y0, fvl_hard_kind hard, float hard_m, int affine,
                          float a, float b, fvl_tensor **count) {
  static const char *fn = "hard_mean";
  char bs[64];
  if (count) *count = NULL;
  if (check_2d(fn, "cos", cos, "B×C cosine matrix")) return NULL;
  int64_t B = cos->size[0], C = cos->size[1];
  if (B < 1 || C < 1) { fvl_err("%s: cos is %s (expected B×C with B, C >= 1)", fn, shape(cos, bs)); return NULL; }
  fvl_tensor *y = labels_of(fn, y0, B, C), *cd = NULL, *h = NULL, *cnt = NULL;
  int ldc;
  int64_t szb[1] = {B};
  if (!y || !(cd = rows_of(cos, &ldc)) || !(h = fvl_empty(FVL_F32, 1, szb)) || !(cnt = fvl_empty(FVL_F32, 1, szb)))
    goto fail;
  if (fvl_hard_mean_fwd(fvl_f32(cd), ldc, fvl_i32(y), (int)B, (int)C, hard, hard_m, affine, a, b, fvl_f32(h),
                        fvl_f32(cnt)))
    goto fail;
  fvl_tensor *in[1] = {cos};
  fvl_node *nd = fvl_record("hard_mean", hard_mean_bw, h, 1, in);
  if (nd) {
    nd->saved[0] = fvl_retain(cd);
    nd->saved[1] = fvl_retain(y);
    nd->saved[2] = fvl_retain(cnt);
    nd->iv[0] = B; nd->iv[1] = C; nd->iv[2] = ldc; nd->iv[3] = hard; nd->iv[4] = affine;
    nd->sc[0] = hard_m; nd->sc[1] = a;
  }
  fvl_release(y);
  fvl_release(cd);
  if (count) *count = cnt;
  else fvl_release(cnt);
  return h;
fail:
  fvl_release(y); fvl_release(cd); fvl_release(h); fvl_release(cnt);
  return NULL;
}

/* ================================================================ target gather */
static int target_bw(fvl_node *n, fvl_tensor *gout) {
  fvl_tensor *y = n->saved[0];
  int64_t B = n->iv[0], C = n->iv[1];
  fvl_tensor *g = data_of(gout);
  if (!g) return -1;
  const float *gp = fvl_f32(g);
  const int32_t *yp = fvl_i32(y);
  fvl_tensor *acc = inplace_acc(n, 0);
  int rc = 0;
  if (acc) {
    float *a = fvl_f32(acc);
    for (int64_t i = 0; i < B; i++) a[i * C + yp[i]] += gp[i];
  } else {
    int64_t sz[2] = {B, C};
    fvl_tensor *dc = fvl_zeros(FVL_F32, 2, sz);
    if (!dc) rc = -1;
    else {
      float *a = fvl_f32(dc);
      for (int64_t i = 0; i < B; i++) a[i * C + yp[i]] = gp[i];
      rc = take_or_accum(n, 0, dc);
      fvl_release(dc);
    }
  }
  fvl_release(g);
  return rc;
}

fvl_tensor *fvl_target_cos(fvl_tensor *cos, fvl_tensor *y0) {
  static const char *fn = "target_cos";
  char bs[64];
  if (check_2d(fn, "cos", cos, "B×C cosine matrix")) return NULL;
  int64_t B = cos->size[0], C = cos->size[1];
  if (B < 1 || C < 1) { fvl_err("%s: cos is %s (expected B×C with B, C >= 1)", fn, shape(cos, bs)); return NULL; }
  fvl_tensor *y = labels_of(fn, y0, B, C);
  if (!y) return NULL;
  int64_t szb[1] = {B};
  fvl_tensor *out = fvl_empty(FVL_F32, 1, szb);
  if (!out) { fvl_release(y); return NULL; }
  const int32_t *yp = fvl_i32(y);
  float *o = fvl_f32(out);
  for (int64_t i = 0; i < B; i++) o[i] = fvl_f32(cos)[i * cos->stride[0] + yp[i] * cos->stride[1]];
  fvl_tensor *in[1] = {cos};
  fvl_node *nd = fvl_record("target_cos", target_bw, out, 1, in);
  if (nd) {
    nd->saved[0] = fvl_retain(y);
    nd->iv[0] = B;
    nd->iv[1] = C;
  }
  fvl_release(y);
  return out;
}

/* ================================================================ row gather (sparse backward) */
static int gather_rows_bw(fvl_node *n, fvl_tensor *gout) {
  fvl_tensor *idx = n->saved[0];
  int64_t B = idx->size[0], C = n->iv[0], D = n->iv[1];
  fvl_tensor *g = data_of(gout);
  if (!g) return -1;
  const float *gp = fvl_f32(g);
  const int32_t *ip = fvl_i32(idx);
  fvl_tensor *W = n->in[0], *acc = NULL, *fresh = NULL;
  int rc = 0;
  if (!W->grad_fn) {  /* a leaf: add the rows straight into W->grad */
    if (!W->grad) W->grad = fvl_zeros(FVL_F32, 2, W->size);
    if (!W->grad) rc = -1;
    else if (W->grad->dtype == FVL_F32 && fvl_is_contiguous(W->grad) && fvl_same_shape(W->grad, W)) acc = W->grad;
  } else {
    acc = inplace_acc(n, 0);
  }
  if (rc == 0 && !acc) {
    int64_t sz[2] = {C, D};
    if (!(fresh = fvl_zeros(FVL_F32, 2, sz))) rc = -1;
    acc = fresh;
  }
  if (rc == 0) {
    float *a = fvl_f32(acc);
    for (int64_t i = 0; i < B; i++) {  /* sequential: labels repeat */
      float *r = a + (int64_t)ip[i] * D;
      const float *q = gp + i * D;
      for (int64_t d = 0; d < D; d++) r[d] += q[d];
    }
    if (fresh) rc = take_or_accum(n, 0, fresh);
  }
  fvl_release(fresh);
  fvl_release(g);
  return rc;
}

fvl_tensor *fvl_gather_rows(fvl_tensor *W, fvl_tensor *idx0) {
  static const char *fn = "gather_rows";
  char b[64];
  if (check_2d(fn, "W", W, "C×D matrix")) return NULL;
  int64_t C = W->size[0], D = W->size[1];
  if (!idx0 || idx0->dtype != FVL_I32 || idx0->ndim != 1) {
    fvl_err("%s: rows must be a 1-D int32 tensor, got %s", fn, idx0 ? shape(idx0, b) : "nothing");
    return NULL;
  }
  int64_t B = idx0->size[0];
  fvl_tensor *idx = labels_of(fn, idx0, B, C);
  if (!idx) return NULL;
  int64_t sz[2] = {B, D};
  fvl_tensor *out = fvl_empty(FVL_F32, 2, sz);
  if (!out) { fvl_release(idx); return NULL; }
  const int32_t *ip = fvl_i32(idx);
  float *o = fvl_f32(out);
  const float *w = fvl_f32(W);
  for (int64_t i = 0; i < B; i++)
    for (int64_t d = 0; d < D; d++) o[i * D + d] = w[ip[i] * W->stride[0] + d * W->stride[1]];
  fvl_tensor *in[1] = {W};
  fvl_node *nd = fvl_record("gather_rows", gather_rows_bw, out, 1, in);
  if (nd) {
    nd->saved[0] = fvl_retain(idx);
    nd->iv[0] = C;
    nd->iv[1] = D;
  }
  fvl_release(idx);
  return out;
}

/* ================================================================ pairwise Circle */
static int circle_bw(fvl_node *n, fvl_tensor *gout) {
  fvl_tensor *S = n->saved[0], *y = n->saved[1], *rz = n->saved[2], *va = n->saved[3];
  int B = (int)n->iv[0], lds = (int)n->iv[1], nv = (int)n->iv[2];
  if (nv == 0) return 0;
  float gscale = (float)(fvl_get(gout, (int64_t[]){0, 0, 0, 0, 0, 0}) / nv);
  int64_t sz[2] = {B, B};
  fvl_tensor *dS = fvl_empty(FVL_F32, 2, sz);
  if (!dS) return -1;
  int rc = fvl_circle_pairwise_bwd(fvl_f32(S), lds, fvl_i32(y), B, (float)n->sc[0], (float)n->sc[1], fvl_f32(rz),
                                   fvl_f32(va), gscale, fvl_f32(dS), B);
  if (rc == 0) rc = take_or_accum(n, 0, dS);
  fvl_release(dS);
  return rc;
}

fvl_tensor *fvl_circle_pairwise(fvl_tensor *S, fvl_tensor *y0, float m, float gamma) {
  static const char *fn = "circle_pairwise";
  char bs[64];
  if (check_2d(fn, "S", S, "B×B similarity matrix")) return NULL;
  int64_t B = S->size[0];
  if (S->size[1] != B || B < 1) {
    fvl_err("%s: S is %s (expected a square B×B similarity matrix with B >= 1)", fn, shape(S, bs));
    return NULL;
  }
  fvl_tensor *y = labels_of(fn, y0, B, 0), *Sd = NULL, *rl = NULL, *rz = NULL, *va = NULL, *out = NULL;
  int lds, nv = 0;
  int64_t szb[1] = {B};
  if (!y || !(Sd = rows_of(S, &lds)) || !(rl = fvl_empty(FVL_F32, 1, szb)) || !(rz = fvl_empty(FVL_F32, 1, szb)) ||
      !(va = fvl_empty(FVL_F32, 1, szb)))
    goto done;
  if (fvl_circle_pairwise_fwd(fvl_f32(Sd), lds, fvl_i32(y), (int)B, m, gamma, fvl_f32(rl), fvl_f32(rz),
                              fvl_f32(va), &nv))
    goto done;
  double sum = 0;
  for (int64_t i = 0; i < B; i++) sum += fvl_f32(rl)[i];
  if (!(out = fvl_scalar(nv ? (float)(sum / nv) : 0.0f))) goto done;
  fvl_tensor *in[1] = {S};
  fvl_node *nd = fvl_record("circle_pairwise", circle_bw, out, 1, in);
  if (nd) {
    nd->saved[0] = fvl_retain(Sd);
    nd->saved[1] = fvl_retain(y);
    nd->saved[2] = fvl_retain(rz);
    nd->saved[3] = fvl_retain(va);
    nd->iv[0] = B; nd->iv[1] = lds; nd->iv[2] = nv;
    nd->sc[0] = m; nd->sc[1] = gamma;
  }
done:
  fvl_release(y); fvl_release(Sd); fvl_release(rl); fvl_release(rz); fvl_release(va);
  return out;
}

/* ================================================================ centre rule */
int fvl_center_update_(fvl_tensor *centers, fvl_tensor *x, fvl_tensor *y0, float alpha) {
  static const char *fn = "center_update";
  char b1[64], b2[64];
  if (check_2d(fn, "centers", centers, "C×D centres") || check_2d(fn, "x", x, "B×D features")) return -1;
  if (!fvl_is_contiguous(centers)) return fvl_err("%s: centers must be contiguous (it is updated in place)", fn);
  int64_t C = centers->size[0], D = centers->size[1], B = x->size[0];
  if (x->size[1] != D)
    return fvl_err("%s: x is %s but centers are %s (expected x with %lld columns)", fn, shape(x, b1),
                   shape(centers, b2), (long long)D);
  if (B < 1) return fvl_err("%s: empty batch (x is %s)", fn, shape(x, b1));
  fvl_tensor *y = labels_of(fn, y0, B, C);
  if (!y) return -1;
  fvl_tensor *xd = data_of(x);
  int rc = xd ? fvl_center_update(fvl_f32(centers), (int)C, (int)D, fvl_f32(xd), fvl_i32(y), (int)B, alpha) : -1;
  fvl_release(xd);
  fvl_release(y);
  return rc;
}
