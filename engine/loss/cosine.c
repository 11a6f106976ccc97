/* cosine.c — the GEMM ends of the heads: cos = clamp(x̂·ŵᵀ) (fvl_cosine) and z = x·Wᵀ + b
 * (fvl_linear_logits), forward and backward over column blocks shared among the OpenMP threads,
 * the normalisation Jacobians applied in place (docs/losses.md §0). */
#include "loss_internal.h"
#include "blk_gemm.h"
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NRM_EPS 1e-12f   /* F.normalize's eps */
#define NEAR_ONE 0.9999f /* |c| above this is recomputed in double */

/* acc += g (n floats) */
FVL_HOT static void colsum_add(float *acc, const float *g, int64_t n) {
#pragma omp simd
  for (int64_t k = 0; k < n; k++) acc[k] += g[k];
}
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
/* g ← g·inw column-wise, and acc += (g·inw)·c (the column sums Σ_i G_ij c_ij of the projection) */
FVL_HOT static void scale_cols_dot(float *g, const float *c, const float *inw, float *acc, int64_t n) {
#pragma omp simd
  for (int64_t k = 0; k < n; k++) {
    float v = g[k] * inw[k];
    g[k] = v;
    acc[k] += v * c[k];
  }
}
/* dst (+)= −γ·w   (bt = 0 writes: dst may hold garbage from a fresh allocation; 1 adds) */
FVL_HOT static void axpy_row(float *dst, const float *w, int64_t n, float gamma, float bt) {
  if (bt != 0.0f) {
#pragma omp simd
    for (int64_t d = 0; d < n; d++) dst[d] -= gamma * w[d];
  } else {
#pragma omp simd
    for (int64_t d = 0; d < n; d++) dst[d] = -gamma * w[d];
  }
}
/* 1: where only the margin CE reaches a block's cosines, the backward scales each row of G_blk
   right after forming it; 0 (FVL_ROW_FUSED=0 in the environment, for A/B): all rows formed, then
   scaled in a pass of their own. The same bits either way. */
static int row_fused(void) {
  static int on = -1;
  if (on < 0) {
    const char *e = getenv("FVL_ROW_FUSED");
    on = !(e && strcmp(e, "0") == 0);
  }
  return on;
}
/* columns per block: a B×block slab of the cosine matrix stays under ~256 KB with the own
   kernel (the block's cosines, its gradient and its rows of W stay in L2 through the block's
   passes: 3 % less CPU per step than 2 MB slabs at C = 100,000, measured under load), ~2 MB with
   OpenBLAS, and there are at least 64 blocks to balance them among threads. Not the thread
   count: the blocks fix the order of the backward's sums (see partials), so results are the same
   with any threads. */
static int64_t block_cols(int64_t B, int64_t C) {
  int64_t nb = ((int64_t)1 << (fvl_bg_enabled() ? 16 : 19)) / (B > 0 ? B : 1);
  int64_t bal = (C + 63) / 64;
  if (bal < nb) nb = bal;
  nb = (nb + 63) / 64 * 64;
  return nb < 64 ? 64 : nb > 8192 ? 8192 : nb;
}
/* The column blocks are shared among the OpenMP threads, each calling a single-threaded sgemm
   on its block and doing the block's elementwise work while it is in cache: one thread pool
   (OpenBLAS's own threads would alternate with OpenMP's at every block). */
/* In OpenBLAS's OpenMP build openblas_set_num_threads(1) also sets the OpenMP thread count to 1:
   take the team size before (fvl_omp_max_threads) and name it in each region (num_threads). */
static int blas_single(void) {
  int n = openblas_get_num_threads();
  if (n != 1) openblas_set_num_threads(1);
  return n;
}
static void blas_restore(int n) {
  if (n != 1) openblas_set_num_threads(n);
}

/* The block GEMMs: the own AVX-512 kernel (blk_gemm.c) when the thread has its scratch
   (work != NULL: fvl_bg_enabled()), else OpenBLAS. Either way one thread per block and an order
   of sums fixed by the shapes: the same bits with any thread count. */
static float *bg_work(void) {
  return fvl_bg_enabled() ? aligned_alloc(64, sizeof(float) * fvl_bg_work_size()) : NULL;
}
/* the whole B×D left operand of the forward GEMMs, packed once (NULL: OpenBLAS, or no memory) */
static float *bg_pack_x(const float *x, int64_t B, int64_t D, int64_t ldx, int as_right) {
  if (!fvl_bg_enabled()) return NULL;
  size_t n = as_right ? fvl_bg_packb_size(B, D) : fvl_bg_packa_size(B, D);
  float *p = aligned_alloc(64, sizeof(float) * ((n + 15) / 16 * 16));
  if (!p) return NULL;
  fvl_bg_mat m = {x, ldx, 1};
  if (as_right) fvl_bg_packb(B, D, m, p);
  else fvl_bg_packa(B, D, m, p);
  return p;
}
/* out (B×nj, row stride ldo) = X·W_blkᵀ; Xa: X packed by bg_pack_x(…, 0) */
static void gemm_fwd(float *work, const float *Xa, int64_t B, int64_t nj, int64_t D, const float *x, int64_t ldx,
                     const float *w, int64_t ldw, float *out, int64_t ldo) {
  if (work && Xa)
    fvl_bg_gemm(B, nj, D, Xa, (fvl_bg_mat){x, ldx, 1}, NULL, (fvl_bg_mat){w, 1, ldw}, out, ldo, 0, work);
  else
    fvl_gemm(0, 1, (int)B, (int)nj, (int)D, 1.0f, x, (int)ldx, w, (int)ldw, 0.0f, out, (int)ldo);
}
/* dst (B×D) = (beta ? dst : 0) + G_blk·W_blk (G_blk: B×nj, row stride ldg) */
static void gemm_dx(float *work, int64_t B, int64_t D, int64_t nj, const float *g, int64_t ldg, const float *w,
                    int64_t ldw, float beta, float *dst) {
  if (work)
    fvl_bg_gemm(B, D, nj, NULL, (fvl_bg_mat){g, ldg, 1}, NULL, (fvl_bg_mat){w, ldw, 1}, dst, D, beta != 0.0f, work);
  else
    fvl_gemm(0, 0, (int)B, (int)D, (int)nj, 1.0f, g, (int)ldg, w, (int)ldw, beta, dst, (int)D);
}
/* dst (nj×D) = (beta ? dst : 0) + G_blkᵀ·X; Xb: X packed by bg_pack_x(…, 1) */
static void gemm_dw(float *work, const float *Xb, int64_t nj, int64_t D, int64_t B, const float *g, int64_t ldg,
                    const float *x, int64_t ldx, float beta, float *dst) {
  if (work && Xb)
    fvl_bg_gemm(nj, D, B, NULL, (fvl_bg_mat){g, 1, ldg}, Xb, (fvl_bg_mat){x, ldx, 1}, dst, D, beta != 0.0f, work);
  else
    fvl_gemm(1, 0, (int)nj, (int)D, (int)B, 1.0f, g, (int)ldg, x, (int)ldx, beta, dst, (int)D);
}

/* The C×D destination of the gradient of input i (W), or NULL: W->grad itself for a leaf
   (*direct = 1; *bt = 1 when it already holds a gradient to add to, else 0 and it may hold
   garbage), otherwise a fresh tensor (*direct = 0) that the caller hands on with
   fvl_lo_take_or_accum. No C×D temporary besides W->grad for a leaf. */
static fvl_tensor *wgrad_dst(fvl_node *n, int i, int *direct, float *bt) {
  fvl_tensor *W = n->in[i];
  *direct = 0;
  *bt = 0.0f;
  if (!W->grad_fn) {
    if (!W->grad) {
      if (!(W->grad = fvl_empty(FVL_F32, 2, W->size))) return NULL;
      *direct = 1;
    } else if (W->grad->dtype == FVL_F32 && fvl_same_shape(W->grad, W) && fvl_is_contiguous(W->grad)) {
      *direct = 1;
      *bt = 1.0f;
    }
    if (*direct) return fvl_retain(W->grad);
  }
  return fvl_empty(FVL_F32, 2, W->size);
}

/* Partial sums of an n-float result over the column blocks, in an order that does not depend
   on the thread count: the nblk blocks fall into ng contiguous groups (at most 32, and their
   buffers at most 64 MB); a thread takes whole groups and accumulates a group's blocks in block
   order (sgemm with beta 0, then 1) into the group's buffer (group 0's is the result itself);
   partials_sum adds the groups in group order, each element the same way. So the numbers are
   the same bits with 1 or 64 threads, for a given B, C, D. */
typedef struct { float **part; int ng; int64_t n, nblk; } partials;
static int partials_groups(int64_t nblk, int64_t n) {
  int64_t ng = nblk < 32 ? nblk : 32, cap = ((int64_t)16 << 20) / (n > 0 ? n : 1);
  if (ng > cap + 1) ng = cap + 1;
  return ng < 1 ? 1 : (int)ng;
}
static int partials_init(partials *p, float *dst, int64_t n, int64_t nblk, const char *fn) {
  p->ng = partials_groups(nblk, n);
  p->n = n;
  p->nblk = nblk;
  p->part = calloc((size_t)p->ng, sizeof *p->part);
  if (!p->part) return fvl_err("%s: out of memory", fn);
  p->part[0] = dst;
  for (int g = 1; g < p->ng; g++)
    if (!(p->part[g] = malloc(sizeof(float) * (size_t)n))) return fvl_err("%s: out of memory", fn);
  return 0;
}
/* first block of group g (g = ng: nblk) */
static int64_t group_first(int64_t nblk, int ng, int64_t g) { return g * nblk / ng; }
static void partials_sum(partials *p) {
  if (p->ng <= 1) return;
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < p->n; c += 4096) {
    int64_t m = p->n - c < 4096 ? p->n - c : 4096;
    for (int g = 1; g < p->ng; g++) colsum_add(p->part[0] + c, p->part[g] + c, m);
  }
}
static void partials_free(partials *p) {
  if (p->part)
    for (int g = 1; g < p->ng; g++) free(p->part[g]);
  free(p->part);
  p->part = NULL;
}

/* ================================================================ cosine */
/* the margin-CE gradient a consumer left with the cosine node (fvl_lo_defer_margin) */
typedef struct {
  fvl_margin_spec sp;       /* row vectors NULL: rows holds what they gave */
  float gscale;
  int32_t *y;               /* B: the target's column, −1 elsewhere */
  float *lse;               /* B */
  unsigned char *skip;      /* B or NULL */
  fvl_margin_row *rows;     /* B */
  int64_t K;                /* > 1: taken of the max over groups of K cosines (group_max_ws.c) */
  int32_t *ty;              /* B or NULL: a target gather's gradient tg[i] at column ty[i] (fvl_lo_defer_target) */
  float *tg;
} margin_term;
typedef struct { int64_t *idx; int64_t n; margin_term *term; } clamp_list;
static void free_term(margin_term *t) {
  if (!t) return;
  free(t->y); free(t->lse); free(t->skip); free(t->rows); free(t->ty); free(t->tg);
  free(t);
}
static void free_clamp(void *p) {
  clamp_list *c = p;
  free(c->idx);
  free_term(c->term);
  free(c);
}
static void free_term_ctx(void *p) { free_term(p); }
static int cosine_bw(fvl_node *n, fvl_tensor *gout);
static int linear_bw(fvl_node *n, fvl_tensor *gout);

/* 0: off; 1: on; 2: on, and the backward recomputes each block's cosines by a GEMM instead of
   reading the saved ones (a measurement of the cost of dropping the B×C buffer, heads.lua) */
static int fused_mode = 1;
int fvl_loss_set_fused(int on) {
  int prev = fused_mode;
  fused_mode = on < 0 ? 0 : on > 2 ? 2 : on;
  return prev;
}
int fvl_loss_fused(void) { return fused_mode; }

/* Sub-center ArcFace's backward through the max over sub-centres without the zeros (blk_sel.c):
   1 unless FVL_GROUP_SPARSE=0 in the environment (the dense GEMMs over the B×(C·K) gradient, for
   the A/B); needs the own AVX-512 kernel, else the dense path runs. */
static int sparse_mode = -1;
int fvl_loss_group_sparse(void) {
  if (sparse_mode < 0) {
    const char *e = getenv("FVL_GROUP_SPARSE");
    sparse_mode = !(e && strcmp(e, "0") == 0);
  }
  return sparse_mode;
}
int fvl_loss_set_group_sparse(int on) {
  int prev = fvl_loss_group_sparse();
  sparse_mode = on != 0;
  return prev;
}

int fvl_lo_defer_margin(fvl_tensor *cos, const fvl_margin_spec *sp, const int32_t *y, const float *ctgt,
                        const float *lse, const unsigned char *skip, float gscale) {
  int64_t K = 1;
  fvl_tensor *src = fvl_lo_group_max_source(cos, &K);   /* cos = the max over sub-centres of src */
  if (src) cos = src;
  if (!fused_mode || !cos || !cos->grad_fn) return 0;
  fvl_node *n = cos->grad_fn;
  /* the cosines (saved[1], the clamp list in ctx) or a softmax head's logits (saved[2], ctx = the term) */
  int linear = n->backward == linear_bw;
  if (!linear && n->backward != cosine_bw) return 0;
  fvl_tensor *cs = n->saved[linear ? 2 : 1];
  clamp_list *cl = linear ? NULL : n->ctx;
  if (!cs || (linear ? (n->ctx != NULL || K != 1) : (!cl || cl->term)) || cs->st != cos->st ||
      cs->offset != cos->offset || !fvl_same_shape(cs, cos) || !fvl_is_contiguous(cos))
    return 0;
  size_t B = (size_t)cos->size[0];
  margin_term *t = calloc(1, sizeof *t);
  if (t) {
    t->y = malloc(sizeof *t->y * B);
    t->lse = malloc(sizeof *t->lse * B);
    t->rows = malloc(sizeof *t->rows * B);
    t->skip = skip ? malloc(B) : NULL;
  }
  if (!t || !t->y || !t->lse || !t->rows || (skip && !t->skip)) {
    free_term(t);
    return fvl_err("margin_ce backward: out of memory");
  }
  memcpy(t->y, y, sizeof *t->y * B);
  memcpy(t->lse, lse, sizeof *t->lse * B);
  if (skip) memcpy(t->skip, skip, B);
  fvl_margin_rows(sp, ctgt, (int)B, t->rows);
  t->sp = *sp;
  t->sp.s_row = t->sp.m_row = t->sp.thr_row = NULL;
  t->gscale = gscale;
  t->K = K;
  if (linear) {
    n->ctx = t;
    n->free_ctx = free_term_ctx;
  } else {
    cl->term = t;
  }
  n->pending = 1;
  return 1;
}

int fvl_lo_defer_target(fvl_tensor *cos, const int32_t *y, const float *g) {
  if (!fused_mode || !cos || !cos->grad_fn || cos->grad_fn->backward != cosine_bw) return 0;
  fvl_tensor *cs = cos->grad_fn->saved[1];
  clamp_list *cl = cos->grad_fn->ctx;
  margin_term *t = cl ? cl->term : NULL;
  if (!cs || !t || t->K != 1 || t->ty || cs->st != cos->st || cs->offset != cos->offset || !fvl_same_shape(cs, cos) ||
      !fvl_is_contiguous(cos))
    return 0;
  size_t B = (size_t)cos->size[0];
  int32_t *ty = malloc(sizeof *ty * B);
  float *tg = malloc(sizeof *tg * B);
  if (!ty || !tg) {
    free(ty); free(tg);
    return fvl_err("target_cos backward: out of memory");
  }
  memcpy(ty, y, sizeof *ty * B);
  memcpy(tg, g, sizeof *tg * B);
  t->ty = ty;
  t->tg = tg;
  return 1;
}

/* ws may be overwritten: nothing else shares its storage, or the graph of its last use as an
   output of fvl_cosine / fvl_linear_logits is finished (backward freed the saved tensors) */
static int ws_reusable(const fvl_tensor *ws) {
  if (ws->st->refs == 1) return 1;
  fvl_node *g = ws->grad_fn;
  return g && (g->backward == cosine_bw || g->backward == linear_bw) && g->saved[0] == NULL;
}

/* shared argument checks of x (B×D) · Wᵀ (W: C×D); 0 or -1 with the message set */
static int check_xw(const char *fn, const fvl_tensor *x, const char *xwhat, const fvl_tensor *W, const char *wwhat) {
  char b1[64], b2[64];
  if (fvl_lo_check_2d(fn, "x", x, xwhat) || fvl_lo_check_2d(fn, "W", W, wwhat)) return -1;
  int64_t B = x->size[0], D = x->size[1], C = W->size[0];
  if (W->size[1] != D)
    return fvl_err("%s: x is %s but W is %s (expected W with %lld columns, like x)", fn, fvl_lo_shape(x, b1),
                   fvl_lo_shape(W, b2), (long long)D);
  if (B < 1) return fvl_err("%s: empty batch (x is %s)", fn, fvl_lo_shape(x, b1));
  if (C < 1 || D < 1) return fvl_err("%s: W is %s (expected at least one class and one column)", fn, fvl_lo_shape(W, b1));
  if (B > INT32_MAX || C > INT32_MAX || D > INT32_MAX) return fvl_err("%s: sizes beyond 2^31", fn);
  return 0;
}

/* x̂ = x/max(|x|, eps) row by row (xh: B×D), nx = |x| */
static void normalize_rows(const float *xp, int64_t ldx, int64_t B, int64_t D, float *xhp, float *nxp) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < B; i++) {
    const float *r = xp + i * ldx;
    double s = 0;
    for (int64_t d = 0; d < D; d++) s += (double)r[d] * r[d];
    float nrm = (float)sqrt(s), inv = 1.0f / fmaxf(nrm, NRM_EPS);
    nxp[i] = nrm;
    for (int64_t d = 0; d < D; d++) xhp[i * D + d] = r[d] * inv;
  }
}

/* the B×C output: the workspace ws when it may be overwritten and shares no storage with the
   inputs in[0..nin), else a fresh tensor */
static fvl_tensor *logits_out(fvl_tensor *ws, fvl_tensor *const *in, int nin, int64_t B, int64_t C) {
  int ok = ws && ws_reusable(ws);
  for (int k = 0; ok && k < nin; k++) ok = !in[k] || ws->st != in[k]->st;
  if (!ok) {
    int64_t so[2] = {B, C};
    return fvl_empty(FVL_F32, 2, so);
  }
  fvl_tensor *out = fvl_retain(ws);
  if (out->grad_fn) { fvl_node_release(out->grad_fn); out->grad_fn = NULL; }
  out->requires_grad = 0;
  return out;
}

/* The forward's column blocks, shared among the threads: norms of the block's centres (nwp),
   GEMM, then the block is scaled by 1/|W_j| while it is still in cache. rowcnt[i] counts the
   entries of row i with |c| > NEAR_ONE; returns their total. */
static int64_t cosine_blocks(const float *xhp, const float *wp, int64_t ldw, int64_t B, int64_t C, int64_t D,
                             float *op, float *nwp, int64_t *rowcnt, fvl_lo_block_fn visit, void *vctx) {
  int64_t total = 0, nb = block_cols(B, C), nblk = (C + nb - 1) / nb;
  float *Xa = bg_pack_x(xhp, B, D, D, 0);
  const int T = fvl_omp_max_threads(), nbl = blas_single();
#pragma omp parallel num_threads(T) reduction(+:total)
  {
    float inw[8192];
    float *work = Xa ? bg_work() : NULL;
#pragma omp for schedule(dynamic, 1)
    for (int64_t blk = 0; blk < nblk; blk++) {
      if (fvl_aborted()) continue;
      int64_t j0 = blk * nb, nj = C - j0 < nb ? C - j0 : nb;
      for (int64_t j = j0; j < j0 + nj; j++) {
        nwp[j] = sqrtf(sumsq(wp + j * ldw, D));
        inw[j - j0] = 1.0f / (nwp[j] > NRM_EPS ? nwp[j] : NRM_EPS);
      }
      gemm_fwd(work, Xa, B, nj, D, xhp, D, wp + j0 * ldw, ldw, op + j0, C);
      for (int64_t i = 0; i < B; i++) {
        int64_t cnt = scale_row(op + i * C + j0, inw, nj);
        if (cnt) {
#pragma omp atomic
          rowcnt[i] += cnt;
          total += cnt;
        }
      }
      if (visit) visit(vctx, blk, j0, nj, op + j0, C);   /* the block's cosines while they are in cache */
    }
    free(work);
  }
  blas_restore(nbl);
  free(Xa);
  return total;
}

/* The entries with |c| > NEAR_ONE, recomputed in double: there sinθ = sqrt(1 − c²), which the
   angular margins divide by, is ill-conditioned in fp32 (docs/losses.md §5.1), and they are rare.
   Values whose raw dot product leaves [−1, 1] are clamped and listed in cl (row-major order):
   they get zero gradient (torch's clamp passes it only inside, equality included). */
static int fix_near_one(const float *xp, int64_t ldx, const float *wp, int64_t ldw, int64_t B, int64_t C, int64_t D,
                        float *op, int64_t *rowcnt, int64_t total, clamp_list *cl) {
  cl->idx = malloc(sizeof(int64_t) * (size_t)total);
  int64_t *off = malloc(sizeof(int64_t) * (size_t)B);
  if (!cl->idx || !off) { free(off); return fvl_err("cosine: out of memory"); }
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
  return 0;
}

int64_t fvl_lo_block_cols(int64_t B, int64_t C) { return block_cols(B, C); }

fvl_tensor *fvl_cosine(fvl_tensor *x, fvl_tensor *W, fvl_tensor *ws) {
  return fvl_lo_cosine_visit(x, W, ws, NULL, NULL, NULL);
}

fvl_tensor *fvl_lo_cosine_visit(fvl_tensor *x, fvl_tensor *W, fvl_tensor *ws, fvl_lo_block_fn visit, void *vctx,
                                unsigned char *redo) {
  static const char *fn = "cosine";
  if (check_xw(fn, x, "B×D embeddings", W, "C×D class centres")) return NULL;
  int64_t B = x->size[0], D = x->size[1], C = W->size[0];
  if (ws && fvl_lo_ws_ok(fn, "ws", ws, B, C)) return NULL;
  int ldx, ldw;
  fvl_tensor *xc = fvl_lo_rows_of(x, &ldx), *Wc = fvl_lo_rows_of(W, &ldw);
  int64_t sz[2] = {B, D}, szb[1] = {B}, szc[1] = {C};
  fvl_tensor *xh = fvl_empty(FVL_F32, 2, sz), *nx = fvl_empty(FVL_F32, 1, szb), *nw = fvl_empty(FVL_F32, 1, szc);
  fvl_tensor *out = NULL, *in[2] = {x, W};
  int64_t *rowcnt = calloc((size_t)B, sizeof *rowcnt);
  clamp_list *cl = calloc(1, sizeof *cl);
  if (!xc || !Wc || !xh || !nx || !nw || !cl || !rowcnt) {
    if (xc && Wc && xh && nx && nw) fvl_err("%s: out of memory", fn);
    goto fail;
  }
  const float *xp = fvl_f32(xc), *wp = fvl_f32(Wc);
  normalize_rows(xp, ldx, B, D, fvl_f32(xh), fvl_f32(nx));
  if (!(out = logits_out(ws, in, 2, B, C))) goto fail;
  int64_t total = cosine_blocks(fvl_f32(xh), wp, ldw, B, C, D, fvl_f32(out), fvl_f32(nw), rowcnt, visit, vctx);
  if (fvl_check_abort(fn)) goto fail;
  if (redo)   /* the rows whose near-one entries fix_near_one changes after the blocks were seen */
    for (int64_t i = 0; i < B; i++) redo[i] = rowcnt[i] != 0;
  if (total > 0 && fix_near_one(xp, ldx, wp, ldw, B, C, D, fvl_f32(out), rowcnt, total, cl)) goto fail;
  free(rowcnt);
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

/* With a margin term, the clamped entries sorted by column block (cl->idx is in row-major order;
   a stable counting sort keeps it so within a block): *boff (nblk + 1) gives block b the entries
   idx[boff[b] .. boff[b+1]). */
static int sort_clamped(clamp_list *cl, int64_t C, int64_t nb, int64_t nblk, int64_t **boff) {
  int64_t *tmp = malloc(sizeof(int64_t) * (size_t)cl->n), *fill = calloc((size_t)nblk, sizeof *fill);
  int64_t *off = calloc((size_t)nblk + 1, sizeof *off);
  if (!tmp || !fill || !off) {
    free(tmp); free(fill); free(off);
    return fvl_err("cosine backward: out of memory");
  }
  for (int64_t k = 0; k < cl->n; k++) off[(cl->idx[k] % C) / nb + 1]++;
  for (int64_t b = 0; b < nblk; b++) off[b + 1] += off[b];
  for (int64_t k = 0; k < cl->n; k++) {
    int64_t b = (cl->idx[k] % C) / nb;
    tmp[off[b] + fill[b]++] = cl->idx[k];
  }
  memcpy(cl->idx, tmp, sizeof(int64_t) * (size_t)cl->n);
  free(fill);
  free(tmp);
  *boff = off;
  return 0;
}

/* what the backward's blocks read (shared, read-only in the blocks) */
typedef struct {
  int64_t B, D, C, nb, nblk, ldw;
  int ng, want_x, want_w, recompute, row_fused;
  int sparse;                /* the margin term's max over sub-centres without the zeros (blk_sel.c) */
  const float *xhp, *wp, *cp, *nwp;
  float *g;                  /* the incoming B×C gradient or NULL */
  const margin_term *mt;     /* the deferred margin-CE gradient or NULL */
  const clamp_list *cl;
  const int64_t *boff;       /* with mt: the clamped entries per block (sort_clamped) */
  const float *Xa, *Xb;      /* X̂ packed for the own kernel: left (recompute) / right (dW) operand */
  float *dwp, bt;            /* dL/dW's destination; bt 1: add to it */
  partials *pt;
} cos_bw;
/* a thread's scratch */
typedef struct { float inw[8192], gam[8192]; float *S, *R, *work; int32_t *gc; void *selt; } cos_bw_scratch;

/* the sparse gradient (gv, gc: B×nc, blk_sel.c) ← its values scaled by 1/|W_j| of their column, and
   gam[k] += Σ_i G_ik c_ik in the dense path's order and rounding: row by row, and the same
   expression compiled the same way as scale_cols_dot's (FVL_HOT), so that the compiler fuses the
   multiply-add in both or in neither (at -O2 in the x86-64-v3 clone it does; at -O1 it does not) */
FVL_HOT
static void sel_scale(float *gv, const int32_t *gc, int64_t B, int64_t nc, const float *cb, int64_t ldc,
                      const float *inw, float *gam) {
  for (int64_t i = 0; i < B; i++)
    for (int64_t q = 0; q < nc; q++) {
      int32_t k = gc[i * nc + q];
      if (k < 0) continue;
      float v = gv[i * nc + q] * inw[k];
      gv[i * nc + q] = v;
      gam[k] += v * cb[i * ldc + k];
    }
}
/* the block [j0, j0+nj) of cosine_bw_block through a max over groups of K sub-centres, without the
   zeros: G in compact form (one value and column per row and class), then dX and dW with ArcFace's
   FMAs (fvl_bg_gemm_sel / _sel_t). The same values as the dense path's, bit for bit. */
static int cosine_bw_block_sparse(const cos_bw *c, cos_bw_scratch *s, int64_t grp, int64_t blk, int64_t j0,
                                  int64_t nj) {
  const margin_term *mt = c->mt;
  int64_t B = c->B, D = c->D, C = c->C, K = mt->K, c0 = j0 / K, nc = (j0 + nj - 1) / K - c0 + 1, g0 = j0 - c0 * K;
  float *gv = s->S;
  int32_t *gc = s->gc;
  if (fvl_group_margin_bwd_sel(&mt->sp, mt->rows, c->cp, C, K, mt->y, (int)B, j0, nj, mt->lse, mt->gscale, mt->skip,
                               gv, gc, nc))
    return -1;
  if (c->boff)   /* clamped cosines pass no gradient */
    for (int64_t k = c->boff[blk]; k < c->boff[blk + 1]; k++) {
      int64_t i = c->cl->idx[k] / C, jl = c->cl->idx[k] % C - j0, q = (jl + g0) / K;
      if (gc[i * nc + q] == jl) gv[i * nc + q] = 0.0f;
    }
  sel_scale(gv, gc, B, nc, c->cp + j0, C, s->inw, s->gam);
  if (c->want_x) {
    int add = blk != group_first(c->nblk, c->ng, grp);
    fvl_bg_gemm_sel(B, D, nj, K, g0, gv, gc, nc, (fvl_bg_mat){c->wp + j0 * c->ldw, c->ldw, 1}, c->pt->part[grp], D,
                    add, s->work);
  }
  if (!c->want_w) return 0;
  for (int64_t k = 0; k < nj; k++) {
    int64_t j = j0 + k;
    axpy_row(c->dwp + j * D, c->wp + j * c->ldw, D, c->nwp[j] < NRM_EPS ? 0.0f : s->gam[k] * s->inw[k], c->bt);
  }
  fvl_bg_gemm_sel_t(B, D, nj, K, g0, gv, gc, nc, c->Xb, c->dwp + j0 * D, D, s->selt);
  return 0;
}

/* one column block [j0, j0+nj) of the backward (see cosine_bw); −1: out of memory */
static int cosine_bw_block(const cos_bw *c, cos_bw_scratch *s, int64_t grp, int64_t blk) {
  int64_t B = c->B, D = c->D, C = c->C, j0 = blk * c->nb, nj = C - j0 < c->nb ? C - j0 : c->nb;
  for (int64_t k = 0; k < nj; k++) {
    s->inw[k] = 1.0f / (c->nwp[j0 + k] > NRM_EPS ? c->nwp[j0 + k] : NRM_EPS);
    s->gam[k] = 0.0f;
  }
  if (c->sparse) return cosine_bw_block_sparse(c, s, grp, blk, j0, nj);
  float *gb = c->g ? c->g + j0 : NULL;
  const float *cb = c->cp + j0;
  int64_t ldg = C, ldcb = C;
  if (c->recompute) {   /* the forward's block again: same GEMM, same scaling, same rare fixes */
    float *R = s->R;
    gemm_fwd(s->work, c->Xa, B, nj, D, c->xhp, D, c->wp + j0 * c->ldw, c->ldw, R, nj);
    for (int64_t i = 0; i < B; i++)
      if (scale_row(R + i * nj, s->inw, nj))
        for (int64_t k = 0; k < nj; k++)
          if (R[i * nj + k] > NEAR_ONE || R[i * nj + k] < -NEAR_ONE) R[i * nj + k] = c->cp[i * C + j0 + k];
    cb = R;
    ldcb = nj;
  }
  int scaled = 0;   /* G_blk already scaled by 1/|W_j| and its column sums taken */
  if (c->mt) {   /* G_blk from the block's cosines, plus what reached them from elsewhere */
    const margin_term *mt = c->mt;
    float *S = s->S;
    if (mt->K > 1) {   /* through the max over groups of K sub-centres */
      if (fvl_group_margin_bwd_block(&mt->sp, mt->rows, c->cp, C, mt->K, mt->y, (int)B, j0, nj, mt->lse, mt->gscale,
                                     mt->skip, S, nj))
        return -1;
    } else if (!c->g && !mt->ty && !(c->boff && c->boff[blk] < c->boff[blk + 1]) && c->row_fused) {
      /* nothing else reaches this block's cosines: each row of G scaled (scale_cols_dot below)
         right after it is formed, while it is in L1 */
      for (int64_t i = 0; i < B; i++) {
        fvl_margin_ce_bwd_block_row(&mt->sp, mt->rows, cb, (int)ldcb, mt->y, (int)B, (int)j0, (int)nj, mt->lse,
                                    mt->gscale, mt->skip, (int)i, S + i * nj);
        scale_cols_dot(S + i * nj, cb + i * ldcb, s->inw, s->gam, nj);
      }
      scaled = 1;
    } else {
      fvl_margin_ce_bwd_block(&mt->sp, mt->rows, cb, (int)ldcb, mt->y, (int)B, (int)j0, (int)nj, mt->lse,
                              mt->gscale, mt->skip, S, (int)nj);
    }
    if (c->g)
      for (int64_t i = 0; i < B; i++) colsum_add(S + i * nj, c->g + i * C + j0, nj);
    if (mt->ty)   /* a target gather's B values (fvl_lo_defer_target) */
      for (int64_t i = 0; i < B; i++)
        if (mt->ty[i] >= j0 && mt->ty[i] < j0 + nj) S[i * nj + mt->ty[i] - j0] += mt->tg[i];
    if (c->boff)
      for (int64_t k = c->boff[blk]; k < c->boff[blk + 1]; k++)
        S[(c->cl->idx[k] / C) * nj + c->cl->idx[k] % C - j0] = 0.0f;
    gb = S;
    ldg = nj;
  }
  if (!scaled)
    for (int64_t i = 0; i < B; i++) scale_cols_dot(gb + i * ldg, cb + i * ldcb, s->inw, s->gam, nj);
  if (c->want_x) {
    float beta = blk == group_first(c->nblk, c->ng, grp) ? 0.0f : 1.0f;
    gemm_dx(s->work, B, D, nj, gb, ldg, c->wp + j0 * c->ldw, c->ldw, beta, c->pt->part[grp]);
  }
  if (!c->want_w) return 0;
  for (int64_t k = 0; k < nj; k++) {   /* |W_j| < eps: W/eps, no projection */
    int64_t j = j0 + k;
    axpy_row(c->dwp + j * D, c->wp + j * c->ldw, D, c->nwp[j] < NRM_EPS ? 0.0f : s->gam[k] * s->inw[k], c->bt);
  }
  gemm_dw(s->work, c->Xb, nj, D, B, gb, ldg, c->xhp, D, 1.0f, c->dwp + j0 * D);
  return 0;
}

/* the column blocks shared among the threads (groups of blocks in order: partials) */
static int cosine_bw_blocks(const cos_bw *c) {
  const int T = fvl_omp_max_threads(), nbl = blas_single();
  int oom = 0;
#pragma omp parallel num_threads(T)
  {
    cos_bw_scratch s;
    size_t slab = sizeof(float) * (size_t)(c->B * c->nb);
    s.S = c->mt ? malloc(slab) : NULL;
    s.R = c->recompute ? malloc(slab) : NULL;
    s.work = c->sparse ? aligned_alloc(64, sizeof(float) * fvl_bg_sel_work_size()) : bg_work();
    s.gc = c->sparse ? malloc(sizeof(int32_t) * (size_t)(c->B * c->nb)) : NULL;
    s.selt = c->sparse && c->want_w ? malloc(fvl_bg_sel_t_work_size(c->nb, c->B)) : NULL;
    if ((c->mt && !s.S) || (c->recompute && !s.R) || (fvl_bg_enabled() && !s.work) || (c->sparse && !s.gc) ||
        (c->sparse && c->want_w && !s.selt)) {
#pragma omp atomic write
      oom = 1;
    }
#pragma omp for schedule(dynamic, 1)
    for (int64_t grp = 0; grp < c->ng; grp++)
      for (int64_t blk = group_first(c->nblk, c->ng, grp); blk < group_first(c->nblk, c->ng, grp + 1); blk++)
        if (!fvl_aborted() && !oom && cosine_bw_block(c, &s, grp, blk)) {
#pragma omp atomic write
          oom = 1;
        }
    free(s.S);
    free(s.R);
    free(s.work);
    free(s.gc);
    free(s.selt);
  }
  blas_restore(nbl);
  if (oom) return fvl_err("cosine backward: out of memory");
  return fvl_check_abort("cosine backward");
}

/* dL/dx_i = (g_i − (g_i·x̂_i) x̂_i)/|x_i|, or g_i/eps for |x_i| < eps (in place, gx: B×D) */
static void unnormalize_rows(float *dp, const float *xhp, const float *nxp, int64_t B, int64_t D) {
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
}

/* Column blocks of G, shared among the threads: G ← G·diag(1/|W_j|) in cache, then
     dL/dX̂ += G_blk·W_blk                    (GEMM into the block group's partial sum)
     dL/dW_j (+)= H_j − (H_j·W_j/|W_j|²)·W_j,  H = G_blkᵀ·X̂
   (the normalisation Jacobian, docs/losses.md §0), with H_j·W_j = |W_j| Σ_i G_ij c_ij: the
   projection term γ_j = Σ_i G_ij c_ij / |W_j| comes from the column sums taken while G is
   scaled, is written (or subtracted) first, and the GEMM adds H onto it: no C×D temporary and no
   second pass over H. The partial sums of dL/dX̂ are per group of blocks, added in group order
   (partials: the same bits with any thread count).
   With a margin term (fused class blocks) G_blk is formed in a B×block scratch of the thread,
   from the block's saved cosines (plus any gradient that reached the cosines from elsewhere):
   the B×C gradient is never written. The incoming gradient, when there is one, is the node's
   private accumulator (or the loss's workspace): it is rescaled in place. */
static int cosine_bw(fvl_node *n, fvl_tensor *gout) {
  fvl_tensor *xh = n->saved[0], *nw = n->saved[3];
  clamp_list *cl = n->ctx;
  cos_bw c = {.B = xh->size[0], .D = xh->size[1], .C = nw->size[0], .ldw = n->iv[0], .cl = cl, .mt = cl->term,
              .want_x = fvl_node_wants(n, 0), .want_w = fvl_node_wants(n, 1)};
  if (!gout && !c.mt) return 0;
  fvl_tensor *G = NULL, *gx = NULL, *dst = NULL;
  if (gout) {
    if (!(G = fvl_is_contiguous(gout) ? fvl_retain(gout) : fvl_lo_data_of(gout))) return -1;
    c.g = fvl_f32(G);
    for (int64_t k = 0; k < cl->n; k++) c.g[cl->idx[k]] = 0.0f;
  }
  c.xhp = fvl_f32(xh); c.cp = fvl_f32(n->saved[1]); c.nwp = fvl_f32(nw); c.wp = fvl_f32(n->saved[4]);
  c.nb = block_cols(c.B, c.C);
  c.nblk = (c.C + c.nb - 1) / c.nb;
  c.ng = partials_groups(c.nblk, c.B * c.D);
  c.recompute = c.mt && fused_mode == 2;
  c.row_fused = row_fused();
  int rc = 0, direct = 0;
  int64_t *boff = NULL, sz[2] = {c.B, c.D};
  float *Xa = NULL, *Xb = NULL;
  partials pt = {0};
  c.pt = &pt;
  if (c.want_x && !(gx = fvl_empty(FVL_F32, 2, sz))) rc = -1;
  if (rc == 0 && c.want_w && !(dst = wgrad_dst(n, 1, &direct, &c.bt))) rc = -1;
  if (rc == 0 && c.mt && cl->n) rc = sort_clamped(cl, c.C, c.nb, c.nblk, &boff);
  if (rc == 0 && c.want_x) rc = partials_init(&pt, fvl_f32(gx), c.B * c.D, c.nblk, "cosine backward");
  if (rc == 0 && c.want_w) c.Xb = Xb = bg_pack_x(c.xhp, c.B, c.D, c.D, 1);
  if (rc == 0 && c.recompute) c.Xa = Xa = bg_pack_x(c.xhp, c.B, c.D, c.D, 0);
  c.sparse = c.mt && c.mt->K > 1 && !c.g && !c.recompute && fvl_bg_enabled() && fvl_loss_group_sparse() &&
             (!c.want_w || c.Xb);
  c.boff = boff;
  c.dwp = dst ? fvl_f32(dst) : NULL;
  if (rc == 0 && (c.want_x || c.want_w)) rc = cosine_bw_blocks(&c);
  free(boff); free(Xa); free(Xb);
  if (rc == 0 && c.want_x) partials_sum(&pt);   /* gx = Σ_g partial_g, in group order */
  partials_free(&pt);
  if (rc == 0 && c.want_x) {
    unnormalize_rows(fvl_f32(gx), c.xhp, fvl_f32(n->saved[2]), c.B, c.D);
    rc = fvl_lo_take_or_accum(n, 0, gx);
  }
  if (rc == 0 && c.want_w && !direct) rc = fvl_lo_take_or_accum(n, 1, dst);
  fvl_release(gx);
  fvl_release(dst);
  fvl_release(G);
  return rc;
}

/* ================================================================ linear logits (Softmax heads) */

fvl_tensor *fvl_linear_logits(fvl_tensor *x, fvl_tensor *W, fvl_tensor *b, fvl_tensor *ws) {
  static const char *fn = "linear_logits";
  char b1[64];
  if (check_xw(fn, x, "B×D features", W, "C×D weights")) return NULL;
  int64_t B = x->size[0], D = x->size[1], C = W->size[0];
  if (b && (b->dtype != FVL_F32 || fvl_numel(b) != C || b->ndim > 2)) {
    fvl_err("%s: bias is %s %s (expected float32 with %lld values, one per class)", fn, fvl_dtype_name(b->dtype),
            fvl_lo_shape(b, b1), (long long)C);
    return NULL;
  }
  if (ws && fvl_lo_ws_ok(fn, "ws", ws, B, C)) return NULL;
  int ldx, ldw;
  fvl_tensor *xc = fvl_lo_rows_of(x, &ldx), *Wc = fvl_lo_rows_of(W, &ldw), *bc = b ? fvl_lo_data_of(b) : NULL, *out = NULL;
  if (!xc || !Wc || (b && !bc)) goto fail;
  fvl_tensor *in[3] = {x, W, b};
  if (!(out = logits_out(ws, in, 3, B, C))) goto fail;
  float *op = fvl_f32(out);
  const float *xp = fvl_f32(xc), *wp = fvl_f32(Wc), *bp = bc ? fvl_f32(bc) : NULL;
  int64_t nb = block_cols(B, C), nblk = (C + nb - 1) / nb;
  float *Xa = bg_pack_x(xp, B, D, ldx, 0);
  const int T = fvl_omp_max_threads(), nbl = blas_single();
#pragma omp parallel num_threads(T)
  {
    float *work = Xa ? bg_work() : NULL;
#pragma omp for schedule(dynamic, 1)
    for (int64_t blk = 0; blk < nblk; blk++) {
      if (fvl_aborted()) continue;
      int64_t j0 = blk * nb, nj = C - j0 < nb ? C - j0 : nb;
      gemm_fwd(work, Xa, B, nj, D, xp, ldx, wp + j0 * ldw, ldw, op + j0, C);
      if (bp)
        for (int64_t i = 0; i < B; i++) colsum_add(op + i * C + j0, bp + j0, nj);
    }
    free(work);
  }
  blas_restore(nbl);
  free(Xa);
  if (fvl_check_abort(fn)) goto fail;
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
  const margin_term *mt = n->ctx;   /* a margin CE's gradient left here (fvl_lo_defer_margin) */
  if (!gout && !mt) return 0;
  fvl_tensor *G = gout ? fvl_lo_data_of(gout) : NULL, *gx = NULL, *dst = NULL, *db = NULL;
  if (gout && !G) return -1;
  const float *g = G ? fvl_f32(G) : NULL, *xp = fvl_f32(xc), *wp = fvl_f32(Wc), *zp = fvl_f32(n->saved[2]);
  int rc = 0, direct = 0;
  float bt = 0.0f;
  int64_t szc[1] = {C}, sz[2] = {B, D};
  partials pt = {0};
  if (want_b && !(db = fvl_zeros(FVL_F32, 1, szc))) rc = -1;
  if (rc == 0 && want_w && !(dst = wgrad_dst(n, 1, &direct, &bt))) rc = -1;
  if (rc == 0 && want_x && !(gx = fvl_empty(FVL_F32, 2, sz))) rc = -1;
  int64_t nb = block_cols(B, C), nblk = (C + nb - 1) / nb;
  int ng = partials_groups(nblk, B * D);
  if (rc == 0 && want_x) rc = partials_init(&pt, fvl_f32(gx), B * D, nblk, "linear_logits backward");
  /* column blocks of G shared among the threads, one thread pool (no OpenBLAS threads):
     dW_blk (+)= G_blkᵀ·X, db_blk = column sums of G_blk, dX += G_blk·W_blk into its group's
     partial sum (partials: the same bits with any thread count). With a margin term, G_blk is
     formed from the block's saved logits in a B×block scratch of the thread (plus the incoming
     gradient, if any): the B×C gradient is never written. */
  float *Xb = rc == 0 && want_w ? bg_pack_x(xp, B, D, ldx, 1) : NULL;
  if (rc == 0) {
    const int T = fvl_omp_max_threads(), nbl = blas_single();
    int oom = 0;
#pragma omp parallel num_threads(T)
    {
      float *work = bg_work(), *S = mt ? malloc(sizeof(float) * (size_t)(B * nb)) : NULL;
      if ((fvl_bg_enabled() && !work) || (mt && !S)) {
#pragma omp atomic write
        oom = 1;
      }
#pragma omp for schedule(dynamic, 1)
      for (int64_t grp = 0; grp < ng; grp++)
      for (int64_t blk = group_first(nblk, ng, grp); blk < group_first(nblk, ng, grp + 1); blk++) {
        if (fvl_aborted() || oom) continue;
        int64_t j0 = blk * nb, nj = C - j0 < nb ? C - j0 : nb, ldg = C;
        const float *gb = g ? g + j0 : NULL;
        if (mt) {
          fvl_margin_ce_bwd_block(&mt->sp, mt->rows, zp + j0, (int)C, mt->y, (int)B, (int)j0, (int)nj, mt->lse,
                                  mt->gscale, mt->skip, S, (int)nj);
          if (g)
            for (int64_t i = 0; i < B; i++) colsum_add(S + i * nj, g + i * C + j0, nj);
          gb = S;
          ldg = nj;
        }
        if (want_w) gemm_dw(work, Xb, nj, D, B, gb, ldg, xp, ldx, bt, fvl_f32(dst) + j0 * D);
        if (want_b)
          for (int64_t i = 0; i < B; i++) colsum_add(fvl_f32(db) + j0, gb + i * ldg, nj);
        if (want_x) {
          float beta = blk == group_first(nblk, ng, grp) ? 0.0f : 1.0f;
          gemm_dx(work, B, D, nj, gb, ldg, wp + j0 * ldw, ldw, beta, pt.part[grp]);
        }
      }
      free(work);
      free(S);
    }
    blas_restore(nbl);
    rc = oom ? fvl_err("linear_logits backward: out of memory") : fvl_check_abort("linear_logits backward");
  }
  free(Xb);
  if (rc == 0 && want_x) {
    partials_sum(&pt);
    rc = fvl_lo_take_or_accum(n, 0, gx);
  }
  partials_free(&pt);
  if (rc == 0 && want_w && !direct) rc = fvl_lo_take_or_accum(n, 1, dst);
  if (rc == 0 && want_b) {
    fvl_tensor *v = db;
    if (!fvl_same_shape(v, n->in[2])) v = fvl_reshape(db, n->in[2]->ndim, n->in[2]->size);
    rc = v ? fvl_node_accum(n, 2, v) : -1;
    if (v != db) fvl_release(v);
  }
  fvl_release(G); fvl_release(gx); fvl_release(dst); fvl_release(db);
  return rc;
}

