/* shard.c — loss primitives on a slice of the classes (see shard.h). */
#include "shard.h"
#include "loss_internal.h"
#include "dist.h"
#include "autograd.h"
#include "rng.h"
#include "loss_ops.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* slice columns: int32, NB entries in −1..Cl−1, contiguous (new ref) */
static fvl_tensor *ycol_of(const char *fn, fvl_tensor *y, int64_t B, int64_t C) {
  if (!y || y->dtype != FVL_I32 || fvl_numel(y) != B) {
    fvl_err("%s: slice labels must be an int32 tensor of %lld entries", fn, (long long)B);
    return NULL;
  }
  fvl_tensor *d = fvl_detach(y), *c = d ? fvl_contiguous(d) : NULL;
  fvl_release(d);
  if (!c) return NULL;
  const int32_t *p = fvl_i32(c);
  for (int64_t i = 0; i < B; i++)
    if (p[i] < -1 || p[i] >= C) {
      fvl_err("%s: slice label %lld = %d is outside -1..%lld", fn, (long long)i, (int)p[i], (long long)C - 1);
      fvl_release(c);
      return NULL;
    }
  return c;
}

/* the target cosine of every row, summed over the ranks (only the owner contributes) */
static fvl_tensor *targets(const float *cos, int ldc, const int32_t *y, int64_t B) {
  int64_t szb[1] = {B};
  fvl_tensor *t = fvl_empty(FVL_F32, 1, szb);
  if (!t) return NULL;
  float *o = fvl_f32(t);
  for (int64_t i = 0; i < B; i++) o[i] = y[i] >= 0 ? cos[i * ldc + y[i]] : 0.0f;
  if (fvl_dist_allreduce_f32(o, (size_t)B, FVL_RED_SUM)) { fvl_release(t); return NULL; }
  return t;
}

/* ================================================================ margin softmax-CE */
/* thr: a copy of sp.thr_row (hard = ROW), B floats, so the backward does not depend on the
   caller's buffer. The chunked ops (fvl_chunked_*_shard) keep their scores' source: x and W
   (detached), the bias */
typedef struct {
  fvl_margin_spec sp;
  int B, C, ldc;
  fvl_tensor *gws;
  unsigned char *capped;
  fvl_chunk_scores src;
  fvl_tensor *x, *W;
  float thr[];
} shard_ctx;
static void free_ctx(void *p) {
  shard_ctx *c = p;
  fvl_release(c->gws);
  fvl_release(c->x);
  fvl_release(c->W);
  fvl_release(c->src.bias);
  free(c->capped);
  free(c);
}
static shard_ctx *new_ctx(const char *fn, const fvl_margin_spec *sp, int64_t B) {
  size_t nthr = sp->hard == FVL_HARD_ROW && sp->thr_row ? (size_t)B : 0;
  shard_ctx *c = calloc(1, sizeof *c + nthr * sizeof(float));
  if (!c) return fvl_err("%s: out of memory", fn), NULL;
  c->sp = *sp;
  c->sp.s_row = c->sp.m_row = c->sp.thr_row = NULL;
  if (nthr) memcpy(c->thr, sp->thr_row, nthr * sizeof(float));
  return c;
}
/* the spec of rows r0.. of the batch: per-row vectors offset */
static fvl_margin_spec rows_spec(const shard_ctx *c, fvl_tensor *srow, fvl_tensor *mrow, int64_t r0) {
  fvl_margin_spec sp = c->sp;
  sp.s_row = srow ? fvl_f32(srow) + r0 : NULL;
  sp.m_row = mrow ? fvl_f32(mrow) + r0 : NULL;
  if (sp.hard == FVL_HARD_ROW) sp.thr_row = c->thr + r0;
  return sp;
}

/* rows r0..r0+n−1 whose loss was capped (p_y floored) have no gradient, as torch's clamp_min */
static void zero_capped(const shard_ctx *c, int64_t r0, int64_t n, float *dc, int ldd, float *ds, float *dm) {
  if (!c->capped) return;
  for (int64_t i = 0; i < n; i++)
    if (c->capped[r0 + i]) {
      memset(dc + (size_t)i * ldd, 0, sizeof(float) * (size_t)c->C);
      if (ds) ds[r0 + i] = 0.0f;
      if (dm) dm[r0 + i] = 0.0f;
    }
}
/* the row vectors are replicated: their gradient is the sum of the ranks' parts */
static int finish_rows(fvl_node *n, int is, int im, fvl_tensor *ds, fvl_tensor *dm, int B) {
  int rc = 0;
  if (ds) rc = fvl_dist_allreduce_f32(fvl_f32(ds), (size_t)B, FVL_RED_SUM);
  if (rc == 0 && dm) rc = fvl_dist_allreduce_f32(fvl_f32(dm), (size_t)B, FVL_RED_SUM);
  if (rc == 0 && ds) rc = fvl_lo_accum_vec(n, is, ds);
  if (rc == 0 && dm) rc = fvl_lo_accum_vec(n, im, dm);
  return rc;
}
static int row_grads(fvl_node *n, int is, int im, int B, fvl_tensor **ds, fvl_tensor **dm) {
  int64_t szb[1] = {B};
  *ds = *dm = NULL;
  if (fvl_node_wants(n, is) && !(*ds = fvl_empty(FVL_F32, 1, szb))) return -1;
  if (fvl_node_wants(n, im) && !(*dm = fvl_empty(FVL_F32, 1, szb))) return -1;
  return 0;
}

static int shard_bw(fvl_node *n, fvl_tensor *gout) {
  shard_ctx *c = n->ctx;
  fvl_tensor *cos = n->saved[0], *y = n->saved[1], *lse = n->saved[2], *srow = n->saved[3],
             *mrow = n->saved[4], *ct = n->saved[5];
  fvl_margin_spec sp = rows_spec(c, srow, mrow, 0);
  int B = c->B, C = c->C;
  float gscale = (float)(fvl_get(gout, (int64_t[]){0, 0, 0, 0, 0, 0}) / B);
  int64_t sz[2] = {B, C};
  fvl_tensor *dc = NULL, *ds = NULL, *dm = NULL, *cin = n->in[0];
  /* fused class blocks: the cosine node that made this slice's cos forms the gradient per block
     (capped rows skipped); the row vectors' parts are reduced here as below */
  int deferred = 0;
  if (cin && fvl_loss_fused()) {
    deferred = fvl_lo_defer_margin_rows(cin, &sp, fvl_f32(cos), c->ldc, fvl_i32(y), fvl_f32(ct), fvl_f32(lse),
                                        c->capped, gscale, fvl_node_wants(n, 1) ? &ds : NULL,
                                        fvl_node_wants(n, 2) ? &dm : NULL);
    if (deferred < 0) return -1;
  }
  int rc = 0;
  if (!deferred) {
    /* the gradient goes into the head's workspace when nothing else holds it (as fvl_margin_ce) */
    fvl_tensor *acc = cin && cin->grad_fn ? cin->grad_fn->gacc : NULL;
    if (c->gws && c->gws->st->refs == 1 && c->gws->st != cos->st && !(acc && acc->st == c->gws->st))
      dc = fvl_retain(c->gws);
    else
      dc = fvl_empty(FVL_F32, 2, sz);
    rc = dc ? row_grads(n, 1, 2, B, &ds, &dm) : -1;
    if (rc == 0)
      rc = fvl_margin_ce_bwd_part(fvl_f32(cos), c->ldc, fvl_i32(y), fvl_f32(ct), B, C, &sp, fvl_f32(lse), gscale,
                                  fvl_f32(dc), C, ds ? fvl_f32(ds) : NULL, dm ? fvl_f32(dm) : NULL);
    if (rc == 0) zero_capped(c, 0, B, fvl_f32(dc), C, ds ? fvl_f32(ds) : NULL, dm ? fvl_f32(dm) : NULL);
    if (rc == 0 && fvl_node_wants(n, 0)) rc = fvl_lo_take_or_accum(n, 0, dc);
  }
  if (rc == 0) rc = finish_rows(n, 1, 2, ds, dm, B);
  fvl_release(dc);
  fvl_release(ds);
  fvl_release(dm);
  return rc;
}

/* The rows' LSE over the ranks from this slice's row maxima mx and max-shifted sums sm (global
   max, then the sums rescaled to it), into lse (B); the loss sum Σ_i (LSE_i − z_iy) with rows
   above cap > 0 capped (marked in capped), *bad = the first non-finite row or −1. */
static int combine_rows(const fvl_margin_spec *sp, const float *mx, double *sm, const float *ct, int64_t B,
                        float cap, float *lse, unsigned char *capped, int *ncapped, double *sum, int64_t *bad) {
  memcpy(lse, mx, sizeof *mx * (size_t)B);
  if (fvl_dist_allreduce_f32(lse, (size_t)B, FVL_RED_MAX)) return -1;
  for (int64_t i = 0; i < B; i++)
    sm[i] = mx[i] > -INFINITY && lse[i] > -INFINITY ? sm[i] * exp((double)mx[i] - (double)lse[i]) : 0.0;
  if (fvl_dist_allreduce_f64(sm, (size_t)B, FVL_RED_SUM)) return -1;
  *sum = 0;
  *bad = -1;
  for (int64_t i = 0; i < B; i++) {
    double l = (double)lse[i] + log(sm[i]);
    if (!(lse[i] > -INFINITY)) l = NAN;
    lse[i] = (float)l;   /* the row LSE, kept for the backward */
    double li = (double)(float)l - (double)fvl_margin_target_logit(sp, ct[i], (int)i);
    if (*bad < 0 && !isfinite(li)) *bad = i;
    if (cap > 0 && li > cap) { li = cap; capped[i] = 1; (*ncapped)++; }
    *sum += (float)li;
  }
  return 0;
}

/* per-row statistics of one forward: maxima, sums, capped flags (new, or NULL with a message) */
typedef struct { float *mx; double *sm; unsigned char *capped; } row_stats;
static int stats_new(const char *fn, row_stats *r, int64_t B, float cap) {
  r->mx = malloc(sizeof *r->mx * (size_t)B);
  r->sm = malloc(sizeof *r->sm * (size_t)B);
  r->capped = cap > 0 ? calloc((size_t)B, 1) : NULL;
  if (!r->mx || !r->sm || (cap > 0 && !r->capped)) return fvl_err("%s: out of memory", fn);
  return 0;
}
static void stats_free(row_stats *r) { free(r->mx); free(r->sm); free(r->capped); }

/* after the forward pass over the slice: LSE over the ranks, the loss, and the node (inputs in:
   cos or x and W, then s_row, m_row at is, is+1) */
static fvl_tensor *finish_loss(const char *fn, const fvl_margin_spec *sp, row_stats *st, fvl_tensor *ct,
                               fvl_tensor *lse, int64_t B, float cap, int nonfinite_ok, int *bad_row,
                               fvl_backward_fn bw, int nin, fvl_tensor **in, shard_ctx **ctx_out) {
  double sum;
  int64_t bad;
  int ncapped = 0;
  *ctx_out = NULL;
  if (combine_rows(sp, st->mx, st->sm, fvl_f32(ct), B, cap, fvl_f32(lse), st->capped, &ncapped, &sum, &bad))
    return NULL;
  fvl_tensor *out = fvl_lo_mean_loss(fn, sum, B, bad, nonfinite_ok, bad_row);
  if (!out) return NULL;
  fvl_node *nd = fvl_record("margin_ce_shard", bw, out, nin, in);
  if (!nd) return out;
  shard_ctx *c = new_ctx(fn, sp, B);
  if (!c) { fvl_release(out); return NULL; }
  c->B = (int)B;
  c->capped = ncapped ? st->capped : NULL;
  if (ncapped) st->capped = NULL;
  nd->ctx = c;
  nd->free_ctx = free_ctx;
  *ctx_out = c;
  return out;
}

/* the node keeps the tensors *t[i] as saved[i] (their references move: *t[i] becomes NULL) */
static void move_saved(fvl_node *nd, fvl_tensor **t[], int n) {
  for (int i = 0; i < n; i++) {
    nd->saved[i] = *t[i];
    *t[i] = NULL;
  }
}

/* per-row vectors s, m of a margin spec, checked and contiguous */
static int spec_rows(const char *fn, const fvl_margin_spec *spec, fvl_tensor *s_row, fvl_tensor *m_row, int64_t B,
                     fvl_margin_spec *sp, fvl_tensor **sr, fvl_tensor **mr) {
  *sp = *spec;
  if (s_row && !(*sr = fvl_lo_rowvec_of(fn, "s", s_row, B))) return -1;
  if (m_row && !(*mr = fvl_lo_rowvec_of(fn, "m", m_row, B))) return -1;
  sp->s_row = *sr ? fvl_f32(*sr) : NULL;
  sp->m_row = *mr ? fvl_f32(*mr) : NULL;
  return fvl_margin_spec_check(fn, sp);
}

fvl_tensor *fvl_margin_ce_shard(fvl_tensor *cos, fvl_tensor *ycol, const fvl_margin_spec *spec,
                                fvl_tensor *s_row, fvl_tensor *m_row, fvl_tensor *gws, const char *name,
                                int nonfinite_ok, int *bad_row, float cap) {
  const char *fn = name && *name ? name : "margin_ce_shard";
  char b[64];
  if (bad_row) *bad_row = -1;
  if (fvl_lo_check_2d(fn, "cos", cos, "B×C cosine matrix")) return NULL;
  int64_t B = cos->size[0], C = cos->size[1];
  if (B < 1 || C < 1 || B > INT32_MAX || C > INT32_MAX) {
    fvl_err("%s: cos is %s (expected B×C with B, C >= 1)", fn, fvl_lo_shape(cos, b));
    return NULL;
  }
  if (!spec) { fvl_err("%s: spec is missing", fn); return NULL; }
  if (gws && fvl_lo_ws_ok(fn, "gws", gws, B, C)) return NULL;
  fvl_margin_spec sp;
  fvl_tensor *y = NULL, *cd = NULL, *sr = NULL, *mr = NULL, *lse = NULL, *ct = NULL, *out = NULL;
  row_stats st = {0};
  int ldc;
  int64_t szb[1] = {B};
  if (!(y = ycol_of(fn, ycol, B, C)) || spec_rows(fn, spec, s_row, m_row, B, &sp, &sr, &mr) ||
      !(cd = fvl_lo_rows_of(cos, &ldc)) || !(ct = targets(fvl_f32(cd), ldc, fvl_i32(y), B)) ||
      stats_new(fn, &st, B, cap) || !(lse = fvl_empty(FVL_F32, 1, szb)))
    goto done;
  if (fvl_margin_ce_fwd_part(fvl_f32(cd), ldc, fvl_i32(y), fvl_f32(ct), (int)B, (int)C, &sp, st.mx, st.sm)) {
    char msg[512];
    snprintf(msg, sizeof msg, "%s", fvl_errmsg());
    fvl_err("%s: %s", fn, msg);
    goto done;
  }
  fvl_tensor *in[3] = {cos, s_row, m_row};
  shard_ctx *c;
  if (!(out = finish_loss(fn, &sp, &st, ct, lse, B, cap, nonfinite_ok, bad_row, shard_bw, 3, in, &c))) goto done;
  if (c) {
    fvl_node *nd = out->grad_fn;
    c->C = (int)C;
    c->ldc = ldc;
    c->gws = gws ? fvl_retain(gws) : NULL;
    move_saved(nd, (fvl_tensor **[]){&cd, &y, &lse, &sr, &mr, &ct}, 6);
  }
done:
  stats_free(&st);
  fvl_release(y); fvl_release(cd); fvl_release(sr); fvl_release(mr); fvl_release(lse); fvl_release(ct);
  return out;
}

/* ================================================================ chunked scores */
/* The ops below never hold the NB×C scores of this slice: they compute them `chunk` rows at a
   time (the rows' statistics kept, the chunk dropped) and again in the backward, chunk by chunk,
   each chunk's gradient going straight into x's, W's and b's (one more GEMM per step; the largest
   buffers are chunk×C ones). One mechanism for every kind of scores (fvl_chunk_scores). */

/* classes of the scores: W's rows, or its groups of K rows */
static int64_t src_classes(const fvl_chunk_scores *s, const fvl_tensor *W) {
  return s->linear ? W->size[0] : W->size[0] / s->groups;
}

/* the target score of every row whose target this slice holds (row dot products in double: the
   cosine, the max over the class's K rows, or x·w + b), summed over the ranks: every rank then
   has every row's target score before the pass over its columns */
static fvl_tensor *src_targets(const fvl_chunk_scores *s, const float *x, int ldx, const float *W, int ldw,
                               const float *b, const int32_t *y, int64_t B, int64_t D) {
  int64_t szb[1] = {B}, K = s->linear ? 1 : s->groups;
  fvl_tensor *t = fvl_empty(FVL_F32, 1, szb);
  if (!t) return NULL;
  float *o = fvl_f32(t);
  int linear = s->linear;
#pragma omp parallel for schedule(static) if (B * D * K > 65536)
  for (int64_t i = 0; i < B; i++) {
    o[i] = 0.0f;
    if (y[i] < 0) continue;
    const float *xr = x + i * ldx;
    double best = -INFINITY;
    for (int64_t k = 0; k < K; k++) {
      const float *wr = W + ((int64_t)y[i] * K + k) * ldw;
      double sx = 0, sw = 0, dot = 0;
      for (int64_t d = 0; d < D; d++) { sx += (double)xr[d] * xr[d]; sw += (double)wr[d] * wr[d]; dot += (double)xr[d] * wr[d]; }
      double v = linear ? dot + (b ? (double)b[y[i]] : 0.0) : dot / (fmax(sqrt(sx), 1e-12) * fmax(sqrt(sw), 1e-12));
      if (!linear) v = v > 1.0 ? 1.0 : v < -1.0 ? -1.0 : v;
      if (v > best) best = v;
    }
    o[i] = (float)best;
  }
  if (fvl_dist_allreduce_f32(o, (size_t)B, FVL_RED_SUM)) { fvl_release(t); return NULL; }
  return t;
}

/* the scores of the rows xr against W (and b): tracked in whatever requires grad */
static fvl_tensor *scores_of(const fvl_chunk_scores *s, fvl_tensor *xr, fvl_tensor *W, fvl_tensor *b) {
  if (s->linear) return fvl_linear_logits(xr, W, b, NULL);
  fvl_tensor *c = fvl_cosine(xr, W, NULL);
  if (!c || s->groups == 1) return c;
  fvl_tensor *g = fvl_group_max(c, s->groups, NULL, NULL);
  fvl_release(c);
  return g;
}

/* the forward pass: visit(ud, z, r0, m, C) on the scores z (m×C, contiguous) of rows r0.. */
typedef int (*chunk_visit_fn)(void *ud, const float *z, int64_t r0, int64_t m, int64_t C);
static int chunked_forward(const char *fn, const fvl_chunk_scores *s, fvl_tensor *x, fvl_tensor *W, fvl_tensor *b,
                           chunk_visit_fn visit, void *ud) {
  int64_t B = x->size[0], C = src_classes(s, W);
  int prev = fvl_set_grad_enabled(0), rc = 0;
  for (int64_t r0 = 0; rc == 0 && r0 < B; r0 += s->chunk) {
    int64_t m = B - r0 < s->chunk ? B - r0 : s->chunk;
    fvl_tensor *xr = fvl_narrow(x, 0, r0, m), *z = xr ? scores_of(s, xr, W, b) : NULL, *zc = z ? fvl_contiguous(z) : NULL;
    rc = zc ? visit(ud, fvl_f32(zc), r0, m, C) : -1;
    fvl_release(zc); fvl_release(z); fvl_release(xr);
    if (rc == 0) rc = fvl_check_abort(fn);
  }
  fvl_set_grad_enabled(prev);
  if (rc) {
    char msg[512];
    snprintf(msg, sizeof msg, "%s", fvl_errmsg());
    if (strncmp(msg, fn, strlen(fn)) != 0) fvl_err("%s: %s", fn, msg);
  }
  return rc;
}

/* a leaf standing for input i (saved data t) in the chunks' graphs; its gradient goes straight
   into the input's own when that is a leaf with a contiguous float32 gradient */
static fvl_tensor *leaf_for(fvl_node *n, int i, fvl_tensor *t) {
  fvl_tensor *l = t ? fvl_detach(t) : NULL;
  if (!l || !fvl_node_wants(n, i)) return l;
  fvl_tensor *in = n->in[i];
  l->requires_grad = 1;
  if (!in->grad_fn && in->grad && in->grad->dtype == FVL_F32 && fvl_same_shape(in->grad, in) &&
      fvl_is_contiguous(in->grad))
    l->grad = fvl_retain(in->grad);
  return l;
}
static int leaf_done(fvl_node *n, int i, fvl_tensor *l) {
  if (!l || !l->grad || !fvl_node_wants(n, i)) return 0;
  fvl_tensor *in = n->in[i];
  if (!in->grad_fn && in->grad == l->grad) return 0;
  if (!in->grad_fn && !in->grad) { in->grad = fvl_retain(l->grad); return 0; }
  return fvl_node_accum(n, i, l->grad);
}

/* the backward of a chain of ops on one tracked input each (group max → cosine, or linear) */
static int chain_backward(fvl_tensor *z, fvl_tensor *dz) {
  int pg = fvl_set_grad_enabled(0), rc = 0;
  fvl_node *nd = z->grad_fn;
  fvl_tensor *g = dz;
  while (nd && g && rc == 0) {
    rc = nd->backward(nd, g);
    fvl_tensor *in0 = nd->in[0];
    nd = in0 && in0->grad_fn ? in0->grad_fn : NULL;
    g = nd ? nd->gacc : NULL;
  }
  fvl_set_grad_enabled(pg);
  return rc;
}

/* the backward pass: for each chunk, the scores again (tracked in a leaf copy of its rows, in W
   and b), their gradient from fill(ud, z, r0, m, C, dz), and the scores' own backward (on dz, no
   copy); x's gradient (input 0) gathered by rows, W's (1) and b's (2) added into their leaves' */
typedef int (*chunk_fill_fn)(void *ud, const float *z, int64_t r0, int64_t m, int64_t C, float *dz);
static int chunked_backward(fvl_node *n, const fvl_chunk_scores *s, fvl_tensor *x, fvl_tensor *W, chunk_fill_fn fill,
                            void *ud) {
  int64_t B = x->size[0], D = x->size[1], C = src_classes(s, W), K = s->chunk < B ? s->chunk : B;
  int want_x = fvl_node_wants(n, 0);
  int64_t szx[2] = {B, D}, szc[2] = {K, C};
  fvl_tensor *gx = NULL, *dz = fvl_empty(FVL_F32, 2, szc), *Wl = leaf_for(n, 1, W), *bl = NULL;
  int rc = dz && Wl ? 0 : -1;
  if (rc == 0 && s->bias && !(bl = leaf_for(n, 2, s->bias))) rc = -1;
  if (rc == 0 && want_x && !(gx = fvl_empty(FVL_F32, 2, szx))) rc = -1;
  for (int64_t r0 = 0; rc == 0 && r0 < B; r0 += K) {
    int64_t m = B - r0 < K ? B - r0 : K;
    fvl_tensor *xv = fvl_narrow(x, 0, r0, m), *xl = xv ? fvl_clone(xv) : NULL, *z = NULL, *dzv = NULL;
    fvl_release(xv);
    if (!xl) { rc = -1; break; }
    xl->requires_grad = want_x;
    int prev = fvl_set_grad_enabled(1);
    z = scores_of(s, xl, Wl, bl);
    fvl_set_grad_enabled(prev);
    if (!z || !(dzv = fvl_narrow(dz, 0, 0, m)) || !fvl_is_contiguous(z)) rc = -1;
    if (rc == 0) rc = fill(ud, fvl_f32(z), r0, m, C, fvl_f32(dzv));
    if (rc == 0 && z->grad_fn) rc = chain_backward(z, dzv);
    if (rc == 0 && want_x) {
      float *dst = fvl_f32(gx) + r0 * D;
      if (xl->grad) memcpy(dst, fvl_f32(xl->grad), sizeof(float) * (size_t)(m * D));
      else memset(dst, 0, sizeof(float) * (size_t)(m * D));
    }
    if (rc == 0) rc = fvl_check_abort("chunked backward");
    fvl_release(z); fvl_release(xl); fvl_release(dzv);
  }
  if (rc == 0 && want_x) rc = fvl_lo_take_or_accum(n, 0, gx);
  if (rc == 0) rc = leaf_done(n, 1, Wl);
  if (rc == 0) rc = leaf_done(n, 2, bl);
  fvl_release(gx); fvl_release(dz); fvl_release(Wl); fvl_release(bl);
  return rc;
}

/* x (B×D), W ((C·K)×D or C×D) and the source checked; x's and W's rows (new refs) */
static int chunk_args(const char *fn, fvl_tensor *x, fvl_tensor *W, const fvl_chunk_scores *s, fvl_tensor **xd,
                      fvl_tensor **Wd, fvl_tensor **bd, int *ldx, int *ldw) {
  char b1[64], b2[64];
  *xd = *Wd = *bd = NULL;
  if (fvl_lo_check_2d(fn, "x", x, "B×D embeddings") || fvl_lo_check_2d(fn, "W", W, "C×D class centres")) return -1;
  if (!s) return fvl_err("%s: the scores' description is missing", fn);
  int64_t B = x->size[0], R = W->size[0];
  if (B < 1 || R < 1 || W->size[1] != x->size[1] || B > INT32_MAX || R > INT32_MAX)
    return fvl_err("%s: x is %s and W %s (expected B×D and C×D with B, C >= 1)", fn, fvl_lo_shape(x, b1),
                   fvl_lo_shape(W, b2));
  if (s->chunk < 1) return fvl_err("%s: chunk = %lld (expected >= 1 rows)", fn, (long long)s->chunk);
  if (s->groups < 1 || (s->linear && s->groups != 1) || R % s->groups != 0)
    return fvl_err("%s: groups = %lld for W %s (expected a divisor of W's rows; 1 for linear scores)", fn,
                   (long long)s->groups, fvl_lo_shape(W, b2));
  if (s->bias && (!s->linear || s->bias->dtype != FVL_F32 || fvl_numel(s->bias) != R || s->bias->ndim != 1))
    return fvl_err("%s: bias is %s (expected %lld float32 values, with linear scores)", fn,
                   fvl_lo_shape(s->bias, b1), (long long)R);
  if (!(*xd = fvl_lo_rows_of(x, ldx)) || !(*Wd = fvl_lo_rows_of(W, ldw))) return -1;
  if (s->bias && !(*bd = fvl_lo_data_of(s->bias))) return -1;
  return 0;
}

/* ---------------------------------------------------------------- margin softmax-CE */
typedef struct { const fvl_margin_spec *sp; const int32_t *y; const float *ct; row_stats *st; } ce_fwd_ud;
static int ce_visit(void *ud, const float *z, int64_t r0, int64_t m, int64_t C) {
  ce_fwd_ud *u = ud;
  fvl_margin_spec spc = *u->sp;
  spc.s_row = spc.s_row ? spc.s_row + r0 : NULL;
  spc.m_row = spc.m_row ? spc.m_row + r0 : NULL;
  if (spc.hard == FVL_HARD_ROW && spc.thr_row) spc.thr_row += r0;
  return fvl_margin_ce_fwd_part(z, (int)C, u->y + r0, u->ct + r0, (int)m, (int)C, &spc, u->st->mx + r0,
                                u->st->sm + r0);
}
typedef struct { shard_ctx *c; fvl_tensor *y, *ct, *lse, *srow, *mrow; float gscale; float *ds, *dm; } ce_bwd_ud;
static int ce_fill(void *ud, const float *z, int64_t r0, int64_t m, int64_t C, float *dz) {
  ce_bwd_ud *u = ud;
  fvl_margin_spec sp = rows_spec(u->c, u->srow, u->mrow, r0);
  int rc = fvl_margin_ce_bwd_part(z, (int)C, fvl_i32(u->y) + r0, fvl_f32(u->ct) + r0, (int)m, (int)C, &sp,
                                  fvl_f32(u->lse) + r0, u->gscale, dz, (int)C, u->ds ? u->ds + r0 : NULL,
                                  u->dm ? u->dm + r0 : NULL);
  if (rc == 0) zero_capped(u->c, r0, m, dz, (int)C, u->ds, u->dm);
  return rc;
}
static int chunked_ce_bw(fvl_node *n, fvl_tensor *gout) {
  shard_ctx *c = n->ctx;
  ce_bwd_ud u = {c, n->saved[0], n->saved[1], n->saved[2], n->saved[3], n->saved[4],
                 (float)(fvl_get(gout, (int64_t[]){0, 0, 0, 0, 0, 0}) / c->B), NULL, NULL};
  fvl_tensor *ds = NULL, *dm = NULL;
  int rc = row_grads(n, 3, 4, c->B, &ds, &dm);
  u.ds = ds ? fvl_f32(ds) : NULL;
  u.dm = dm ? fvl_f32(dm) : NULL;
  if (rc == 0) rc = chunked_backward(n, &c->src, c->x, c->W, ce_fill, &u);
  if (rc == 0) rc = finish_rows(n, 3, 4, ds, dm, c->B);
  fvl_release(ds); fvl_release(dm);
  return rc;
}

fvl_tensor *fvl_chunked_margin_ce_shard(fvl_tensor *x, fvl_tensor *W, const fvl_chunk_scores *src, fvl_tensor *ycol,
                                        const fvl_margin_spec *spec, fvl_tensor *s_row, fvl_tensor *m_row,
                                        const char *name, int nonfinite_ok, int *bad_row, float cap) {
  const char *fn = name && *name ? name : "margin_ce_shard";
  if (bad_row) *bad_row = -1;
  fvl_margin_spec sp;
  fvl_tensor *y = NULL, *xd = NULL, *Wd = NULL, *bd = NULL, *sr = NULL, *mr = NULL, *lse = NULL, *ct = NULL, *out = NULL;
  row_stats st = {0};
  int ldx, ldw;
  if (chunk_args(fn, x, W, src, &xd, &Wd, &bd, &ldx, &ldw)) goto done;
  if (!spec) { fvl_err("%s: spec is missing", fn); goto done; }
  int64_t B = x->size[0], D = x->size[1], C = src_classes(src, W), szb[1] = {B};
  fvl_chunk_scores s = *src;
  if (s.chunk > B) s.chunk = B;
  if (!(y = ycol_of(fn, ycol, B, C)) || spec_rows(fn, spec, s_row, m_row, B, &sp, &sr, &mr) ||
      !(ct = src_targets(&s, fvl_f32(xd), ldx, fvl_f32(Wd), ldw, bd ? fvl_f32(bd) : NULL, fvl_i32(y), B, D)) ||
      stats_new(fn, &st, B, cap) || !(lse = fvl_empty(FVL_F32, 1, szb)))
    goto done;
  ce_fwd_ud u = {&sp, fvl_i32(y), fvl_f32(ct), &st};
  if (chunked_forward(fn, &s, xd, Wd, bd, ce_visit, &u)) goto done;
  fvl_tensor *in[5] = {x, W, s.bias, s_row, m_row};
  shard_ctx *c;
  if (!(out = finish_loss(fn, &sp, &st, ct, lse, B, cap, nonfinite_ok, bad_row, chunked_ce_bw, 5, in, &c))) goto done;
  if (c) {
    c->C = (int)C;
    c->ldc = (int)C;
    c->src = s;
    c->src.bias = bd ? fvl_detach(bd) : NULL;
    c->x = fvl_detach(xd);
    c->W = fvl_detach(Wd);
    move_saved(out->grad_fn, (fvl_tensor **[]){&y, &ct, &lse, &sr, &mr}, 5);
  }
done:
  stats_free(&st);
  fvl_release(y); fvl_release(xd); fvl_release(Wd); fvl_release(bd); fvl_release(sr); fvl_release(mr);
  fvl_release(lse); fvl_release(ct);
  return out;
}

/* ---------------------------------------------------------------- hard-negative mean */
typedef struct { const int32_t *y; const float *ct; fvl_hard_kind hard; float hard_m, a, b; int affine; double *sum;
                 float *cnt; const float *gh; } hm_ud;
static int hm_visit(void *ud, const float *z, int64_t r0, int64_t m, int64_t C) {
  hm_ud *u = ud;
  return fvl_hard_mean_part(z, (int)C, u->y + r0, u->ct + r0, (int)m, (int)C, u->hard, u->hard_m, u->affine, u->a,
                            u->b, u->sum + r0, u->cnt + r0);
}
static int hm_fill(void *ud, const float *z, int64_t r0, int64_t m, int64_t C, float *dz) {
  hm_ud *u = ud;
  return fvl_hard_mean_bwd_part(z, (int)C, u->y + r0, u->ct + r0, (int)m, (int)C, u->hard, u->hard_m, u->affine,
                                u->a, u->cnt + r0, u->gh + r0, dz, (int)C, 0);
}
static int chunked_hm_bw(fvl_node *n, fvl_tensor *gout) {
  shard_ctx *c = n->ctx;
  int64_t szb[1] = {c->B};
  fvl_tensor *gh = fvl_empty(FVL_F32, 1, szb);
  int rc = gh && fvl_copy_(gh, gout) == 0 ? 0 : -1;
  hm_ud u = {fvl_i32(n->saved[0]), fvl_f32(n->saved[1]), (fvl_hard_kind)n->iv[0], (float)n->sc[0],
             (float)n->sc[1], 0.0f, (int)n->iv[1], NULL, fvl_f32(n->saved[2]), gh ? fvl_f32(gh) : NULL};
  if (rc == 0) rc = chunked_backward(n, &c->src, c->x, c->W, hm_fill, &u);
  fvl_release(gh);
  return rc;
}

fvl_tensor *fvl_chunked_hard_mean_shard(fvl_tensor *x, fvl_tensor *W, const fvl_chunk_scores *src, fvl_tensor *ycol,
                                        fvl_hard_kind hard, float hard_m, int affine, float a, float b) {
  static const char *fn = "hard_mean";
  fvl_tensor *y = NULL, *xd = NULL, *Wd = NULL, *bd = NULL, *ct = NULL, *h = NULL, *cnt = NULL;
  double *sum = NULL;
  int ldx, ldw;
  if (chunk_args(fn, x, W, src, &xd, &Wd, &bd, &ldx, &ldw)) goto fail;
  int64_t B = x->size[0], D = x->size[1], C = src_classes(src, W), szb[1] = {B};
  fvl_chunk_scores s = *src;
  if (s.chunk > B) s.chunk = B;
  if (!(y = ycol_of(fn, ycol, B, C)) ||
      !(ct = src_targets(&s, fvl_f32(xd), ldx, fvl_f32(Wd), ldw, bd ? fvl_f32(bd) : NULL, fvl_i32(y), B, D)) ||
      !(h = fvl_empty(FVL_F32, 1, szb)) || !(cnt = fvl_empty(FVL_F32, 1, szb)))
    goto fail;
  if (!(sum = malloc(sizeof *sum * (size_t)B))) { fvl_err("%s: out of memory", fn); goto fail; }
  hm_ud u = {fvl_i32(y), fvl_f32(ct), hard, hard_m, a, b, affine, sum, fvl_f32(cnt), NULL};
  if (chunked_forward(fn, &s, xd, Wd, bd, hm_visit, &u) || fvl_dist_allreduce_f64(sum, (size_t)B, FVL_RED_SUM) ||
      fvl_dist_allreduce_f32(fvl_f32(cnt), (size_t)B, FVL_RED_SUM))
    goto fail;
  for (int64_t i = 0; i < B; i++) {
    float k = fvl_f32(cnt)[i];
    fvl_f32(h)[i] = (float)(sum[i] / (k > 1.0f ? k : 1.0f));
  }
  fvl_tensor *in[3] = {x, W, s.bias};
  fvl_node *nd = fvl_record("hard_mean_shard", chunked_hm_bw, h, 3, in);
  if (nd) {
    shard_ctx *c = calloc(1, sizeof *c);
    if (!c) { fvl_err("%s: out of memory", fn); goto fail; }
    c->B = (int)B;
    c->src = s;
    c->src.bias = bd ? fvl_detach(bd) : NULL;
    c->x = fvl_detach(xd);
    c->W = fvl_detach(Wd);
    nd->ctx = c;
    nd->free_ctx = free_ctx;
    move_saved(nd, (fvl_tensor **[]){&y, &ct, &cnt}, 3);
    nd->iv[0] = hard; nd->iv[1] = affine;
    nd->sc[0] = hard_m; nd->sc[1] = a;
  }
  free(sum);
  fvl_release(y); fvl_release(xd); fvl_release(Wd); fvl_release(bd); fvl_release(ct); fvl_release(cnt);
  return h;
fail:
  free(sum);
  fvl_release(y); fvl_release(xd); fvl_release(Wd); fvl_release(bd); fvl_release(ct); fvl_release(h);
  fvl_release(cnt);
  return NULL;
}

/* ================================================================ target cosine */
/* the (replicated, full) gradient of c_i goes to the owner's target column */
static int target_shard_bw(fvl_node *n, fvl_tensor *gout) {
  fvl_tensor *y = n->saved[0];
  int64_t B = n->iv[0], C = n->iv[1];
  int64_t szb[1] = {B}, sz[2] = {B, C};
  fvl_tensor *g = fvl_empty(FVL_F32, 1, szb), *dc = NULL;
  int rc = -1;
  if (g && fvl_copy_(g, gout) == 0 && (dc = fvl_zeros(FVL_F32, 2, sz))) {
    const int32_t *yp = fvl_i32(y);
    float *a = fvl_f32(dc);
    for (int64_t i = 0; i < B; i++)
      if (yp[i] >= 0) a[i * C + yp[i]] = fvl_f32(g)[i];
    rc = fvl_lo_take_or_accum(n, 0, dc);
  }
  fvl_release(dc);
  fvl_release(g);
  return rc;
}

fvl_tensor *fvl_target_cos_shard(fvl_tensor *cos, fvl_tensor *ycol) {
  static const char *fn = "target_cos";
  if (fvl_lo_check_2d(fn, "cos", cos, "B×C cosine matrix")) return NULL;
  int64_t B = cos->size[0], C = cos->size[1];
  fvl_tensor *y = ycol_of(fn, ycol, B, C), *cd = NULL, *out = NULL;
  int ldc;
  if (!y || !(cd = fvl_lo_rows_of(cos, &ldc)) || !(out = targets(fvl_f32(cd), ldc, fvl_i32(y), B))) {
    fvl_release(y);
    fvl_release(cd);
    return NULL;
  }
  fvl_tensor *in[1] = {cos};
  fvl_node *nd = fvl_record("target_cos_shard", target_shard_bw, out, 1, in);
  if (nd) {
    nd->saved[0] = fvl_retain(y);
    nd->iv[0] = B;
    nd->iv[1] = C;
  }
  fvl_release(y);
  fvl_release(cd);
  return out;
}

/* ================================================================ hard-negative mean */
static int hard_shard_bw(fvl_node *n, fvl_tensor *gout) {
  fvl_tensor *cos = n->saved[0], *y = n->saved[1], *cnt = n->saved[2], *ct = n->saved[3];
  int B = (int)n->iv[0], C = (int)n->iv[1], ldc = (int)n->iv[2], hard = (int)n->iv[3], affine = (int)n->iv[4];
  int64_t szb[1] = {B}, sz[2] = {B, C};
  fvl_tensor *gh = fvl_empty(FVL_F32, 1, szb), *dc = NULL;
  int rc = -1;
  if (gh && fvl_copy_(gh, gout) == 0 && (dc = fvl_empty(FVL_F32, 2, sz)) &&
      fvl_hard_mean_bwd_part(fvl_f32(cos), ldc, fvl_i32(y), fvl_f32(ct), B, C, (fvl_hard_kind)hard,
                             (float)n->sc[0], affine, (float)n->sc[1], fvl_f32(cnt), fvl_f32(gh), fvl_f32(dc),
                             C, 0) == 0)
    rc = fvl_lo_take_or_accum(n, 0, dc);
  fvl_release(dc);
  fvl_release(gh);
  return rc;
}

fvl_tensor *fvl_hard_mean_shard(fvl_tensor *cos, fvl_tensor *ycol, fvl_hard_kind hard, float hard_m,
                                int affine, float a, float b) {
  static const char *fn = "hard_mean";
  if (fvl_lo_check_2d(fn, "cos", cos, "B×C cosine matrix")) return NULL;
  int64_t B = cos->size[0], C = cos->size[1];
  int64_t szb[1] = {B};
  fvl_tensor *y = ycol_of(fn, ycol, B, C), *cd = NULL, *ct = NULL, *h = NULL, *cnt = NULL;
  double *sum = NULL;
  int ldc;
  if (!y || !(cd = fvl_lo_rows_of(cos, &ldc)) || !(ct = targets(fvl_f32(cd), ldc, fvl_i32(y), B)) ||
      !(h = fvl_empty(FVL_F32, 1, szb)) || !(cnt = fvl_empty(FVL_F32, 1, szb)))
    goto fail;
  if (!(sum = malloc(sizeof *sum * (size_t)B))) { fvl_err("%s: out of memory", fn); goto fail; }
  if (fvl_hard_mean_part(fvl_f32(cd), ldc, fvl_i32(y), fvl_f32(ct), (int)B, (int)C, hard, hard_m, affine, a, b,
                         sum, fvl_f32(cnt)) ||
      fvl_dist_allreduce_f64(sum, (size_t)B, FVL_RED_SUM) ||
      fvl_dist_allreduce_f32(fvl_f32(cnt), (size_t)B, FVL_RED_SUM))
    goto fail;
  for (int64_t i = 0; i < B; i++) {
    float c = fvl_f32(cnt)[i];
    fvl_f32(h)[i] = (float)(sum[i] / (c > 1.0f ? c : 1.0f));
  }
  fvl_tensor *in[1] = {cos};
  fvl_node *nd = fvl_record("hard_mean_shard", hard_shard_bw, h, 1, in);
  if (nd) {
    nd->saved[0] = fvl_retain(cd);
    nd->saved[1] = fvl_retain(y);
    nd->saved[2] = fvl_retain(cnt);
    nd->saved[3] = fvl_retain(ct);
    nd->iv[0] = B; nd->iv[1] = C; nd->iv[2] = ldc; nd->iv[3] = hard; nd->iv[4] = affine;
    nd->sc[0] = hard_m; nd->sc[1] = a;
  }
  free(sum);
  fvl_release(y); fvl_release(cd); fvl_release(ct); fvl_release(cnt);
  return h;
fail:
  free(sum);
  fvl_release(y); fvl_release(cd); fvl_release(ct); fvl_release(h); fvl_release(cnt);
  return NULL;
}

/* ================================================================ sampled rows */
int fvl_copy_rows_(fvl_tensor *dst, fvl_tensor *rows, fvl_tensor *src) {
  static const char *fn = "copy_rows";
  if (!dst || !rows || !src || dst->dtype != FVL_F32 || src->dtype != FVL_F32 || rows->dtype != FVL_I32 ||
      dst->ndim != 2 || src->ndim != 2 || !fvl_is_contiguous(dst) || !fvl_is_contiguous(src) ||
      !fvl_is_contiguous(rows) || src->size[1] != dst->size[1] || fvl_numel(rows) != src->size[0])
    return fvl_err("%s: expected dst n×D, rows (K int32) and src K×D, float32 contiguous", fn);
  int64_t K = src->size[0], D = src->size[1], n = dst->size[0];
  const int32_t *r = fvl_i32(rows);
  for (int64_t k = 0; k < K; k++)
    if (r[k] < 0 || r[k] >= n) return fvl_err("%s: row %lld = %d is outside 0..%lld", fn, (long long)k, (int)r[k], (long long)n - 1);
  float *d = fvl_f32(dst);
  const float *sp = fvl_f32(src);
#pragma omp parallel for schedule(static) if (K * D > 65536)
  for (int64_t k = 0; k < K; k++) memcpy(d + (size_t)r[k] * D, sp + (size_t)k * D, sizeof(float) * (size_t)D);
  return 0;
}

fvl_tensor *fvl_pfc_sample(fvl_tensor *pos, int64_t num, uint64_t seed, uint64_t counter) {
  static const char *fn = "pfc_sample";
  if (!pos || pos->dtype != FVL_I32 || pos->ndim != 1 || !fvl_is_contiguous(pos) || num < 0)
    return fvl_err("%s: expected an int32 mask of the slice's rows and num >= 0", fn), NULL;
  int64_t n = pos->size[0], npos = 0;
  const int32_t *m = fvl_i32(pos);
  for (int64_t j = 0; j < n; j++) npos += m[j] != 0;
  int64_t want = num > n ? n : num, nneg = want > npos ? want - npos : 0;
  uint8_t *take = calloc((size_t)n + 1, 1);
  int32_t *neg = nneg ? malloc(sizeof *neg * (size_t)(n - npos)) : NULL;
  if (!take || (nneg && !neg)) { free(take); free(neg); return fvl_err("%s: out of memory", fn), NULL; }
  int64_t k = 0;
  for (int64_t j = 0; j < n; j++) {
    if (m[j]) take[j] = 1;
    else if (neg) neg[k++] = (int32_t)j;
  }
  /* partial Fisher–Yates: the first nneg entries of neg become a uniform sample */
  for (int64_t i = 0; i < nneg; i++) {
    uint64_t span = (uint64_t)(k - i);
    int64_t r = i + (int64_t)(((unsigned __int128)fvl_rng_bits(seed, counter + (uint64_t)i) * span) >> 64);
    int32_t t = neg[i]; neg[i] = neg[r]; neg[r] = t;
    take[neg[i]] = 1;
  }
  int64_t K = npos + nneg, szk[1] = {K};
  fvl_tensor *out = fvl_empty(FVL_I32, 1, szk);
  if (out) {
    int32_t *o = fvl_i32(out);
    int64_t w = 0;
    for (int64_t j = 0; j < n; j++)
      if (take[j]) o[w++] = (int32_t)j;
  }
  free(take);
  free(neg);
  return out;
}

/* ================================================================ pairwise Circle, a rank's anchors */
static int circle_shard_bw(fvl_node *n, fvl_tensor *gout) {
  fvl_tensor *S = n->saved[0], *y = n->saved[1], *rz = n->saved[2], *va = n->saved[3];
  int B = (int)n->iv[0], N = (int)n->iv[1], first = (int)n->iv[2], lds = (int)n->iv[3];
  double nv = n->sc[2];
  int64_t sz[2] = {B, N};
  fvl_tensor *dS = fvl_empty(FVL_F32, 2, sz);
  if (!dS) return -1;
  /* the loss is replicated: its gradient is the full one on every rank, this rank's anchors' share */
  float gscale = nv > 0 ? (float)(fvl_get(gout, (int64_t[]){0, 0, 0, 0, 0, 0}) / nv) : 0.0f;
  int rc = fvl_circle_rows_bwd(fvl_f32(S), lds, fvl_i32(y), B, N, first, (float)n->sc[0], (float)n->sc[1],
                               fvl_f32(rz), fvl_f32(va), gscale, fvl_f32(dS), N);
  if (rc == 0) rc = fvl_lo_take_or_accum(n, 0, dS);
  fvl_release(dS);
  return rc;
}

fvl_tensor *fvl_circle_pairwise_shard(fvl_tensor *S, fvl_tensor *y0, int64_t first, float m, float gamma) {
  static const char *fn = "circle_pairwise";
  char bs[64];
  if (fvl_lo_check_2d(fn, "S", S, "B×N similarity rows")) return NULL;
  int64_t B = S->size[0], N = S->size[1];
  if (B < 1 || N > INT32_MAX || first < 0 || B > N || first > N - B) {
    fvl_err("%s: S is %s with anchors from column %lld (expected B×N, the anchors' columns inside 0..N-1)", fn,
            fvl_lo_shape(S, bs), (long long)first);
    return NULL;
  }
  fvl_tensor *y = fvl_lo_labels_of(fn, y0, N, -1), *Sd = NULL, *rl = NULL, *rz = NULL, *va = NULL, *out = NULL;
  int lds, nv = 0;
  int64_t szb[1] = {B};
  if (!y || !(Sd = fvl_lo_rows_of(S, &lds)) || !(rl = fvl_empty(FVL_F32, 1, szb)) ||
      !(rz = fvl_empty(FVL_F32, 1, szb)) || !(va = fvl_empty(FVL_F32, 1, szb)))
    goto done;
  if (fvl_circle_rows_fwd(fvl_f32(Sd), lds, fvl_i32(y), (int)B, (int)N, (int)first, m, gamma, fvl_f32(rl),
                          fvl_f32(rz), fvl_f32(va), &nv))
    goto done;
  /* the loss sum and the valid anchors, over the ranks */
  double tot[2] = {0.0, (double)nv};
  for (int64_t i = 0; i < B; i++) tot[0] += fvl_f32(rl)[i];
  if (fvl_dist_allreduce_f64(tot, 2, FVL_RED_SUM)) goto done;
  if (!(out = fvl_scalar(tot[1] > 0 ? (float)(tot[0] / tot[1]) : 0.0f))) goto done;
  fvl_tensor *in[1] = {S};
  fvl_node *nd = fvl_record("circle_pairwise_shard", circle_shard_bw, out, 1, in);
  if (nd) {
    nd->saved[0] = fvl_retain(Sd);
    nd->saved[1] = fvl_retain(y);
    nd->saved[2] = fvl_retain(rz);
    nd->saved[3] = fvl_retain(va);
    nd->iv[0] = B; nd->iv[1] = N; nd->iv[2] = first; nd->iv[3] = lds;
    nd->sc[0] = m; nd->sc[1] = gamma; nd->sc[2] = tot[1];
  }
done:
  fvl_release(y); fvl_release(Sd); fvl_release(rl); fvl_release(rz); fvl_release(va);
  return out;
}
