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
   caller's buffer. chunk > 0: the fused cosine + CE (fvl_cosine_margin_ce_shard), whose cosines
   are recomputed chunk rows at a time in the backward */
typedef struct {
  fvl_margin_spec sp;
  int B, C, ldc, chunk;
  fvl_tensor *gws;
  unsigned char *capped;
  float thr[];
} shard_ctx;
static void free_ctx(void *p) {
  shard_ctx *c = p;
  fvl_release(c->gws);
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
  if (bad_row) *bad_row = 0;
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

/* ================================================================ fused cosine + margin CE, in row chunks */
/* c_i = clamp(x̂_i·ŵ_{y_i}) of the rows whose target this slice holds (in double), summed over the
   ranks: every rank then has every row's target cosine before the pass over its columns */
static fvl_tensor *dot_targets(const float *x, int ldx, const float *W, int ldw, const int32_t *y, int64_t B,
                               int64_t D) {
  int64_t szb[1] = {B};
  fvl_tensor *t = fvl_empty(FVL_F32, 1, szb);
  if (!t) return NULL;
  float *o = fvl_f32(t);
#pragma omp parallel for schedule(static) if (B * D > 65536)
  for (int64_t i = 0; i < B; i++) {
    o[i] = 0.0f;
    if (y[i] < 0) continue;
    const float *xr = x + i * ldx, *wr = W + (int64_t)y[i] * ldw;
    double sx = 0, sw = 0, dot = 0;
    for (int64_t d = 0; d < D; d++) { sx += (double)xr[d] * xr[d]; sw += (double)wr[d] * wr[d]; dot += (double)xr[d] * wr[d]; }
    double v = dot / (fmax(sqrt(sx), 1e-12) * fmax(sqrt(sw), 1e-12));
    o[i] = (float)(v > 1.0 ? 1.0 : v < -1.0 ? -1.0 : v);
  }
  if (fvl_dist_allreduce_f32(o, (size_t)B, FVL_RED_SUM)) { fvl_release(t); return NULL; }
  return t;
}

/* cosines of rows r0..r0+n−1 of x against W (untracked) */
static fvl_tensor *chunk_cos(fvl_tensor *x, fvl_tensor *W, int64_t r0, int64_t n) {
  fvl_tensor *xr = fvl_narrow(x, 0, r0, n);
  int prev = fvl_set_grad_enabled(0);
  fvl_tensor *c = xr ? fvl_cosine(xr, W, NULL) : NULL;
  fvl_set_grad_enabled(prev);
  fvl_release(xr);
  return c;
}

static int fused_bw(fvl_node *n, fvl_tensor *gout) {
  shard_ctx *c = n->ctx;
  fvl_tensor *x = n->saved[0], *W = n->saved[1], *y = n->saved[2], *lse = n->saved[3], *srow = n->saved[4],
             *mrow = n->saved[5];
  fvl_tensor *ct = c->gws;   /* here: the target cosines */
  int B = c->B, C = c->C, K = c->chunk;
  int64_t D = x->size[1];
  float gscale = (float)(fvl_get(gout, (int64_t[]){0, 0, 0, 0, 0, 0}) / B);
  int want_x = fvl_node_wants(n, 0), want_w = fvl_node_wants(n, 1);
  fvl_tensor *ds = NULL, *dm = NULL, *gx = NULL, *Wl = NULL, *dc = NULL;
  int64_t szx[2] = {B, D}, szc[2] = {K < B ? K : B, C};
  int rc = row_grads(n, 2, 3, B, &ds, &dm);
  if (rc == 0 && ((want_x && !(gx = fvl_empty(FVL_F32, 2, szx))) || !(dc = fvl_empty(FVL_F32, 2, szc)) ||
                  !(Wl = fvl_detach(W))))
    rc = -1;
  /* W's gradient: straight into W->grad for a leaf (the cosine backward adds into it) */
  fvl_tensor *Win = n->in[1];
  int direct = want_w && !Win->grad_fn;
  if (rc == 0 && want_w) {
    Wl->requires_grad = 1;
    if (direct && Win->grad && Win->grad->dtype == FVL_F32 && fvl_same_shape(Win->grad, Win) &&
        fvl_is_contiguous(Win->grad))
      Wl->grad = fvl_retain(Win->grad);
  }
  for (int64_t r0 = 0; rc == 0 && r0 < B; r0 += K) {
    int64_t m = B - r0 < K ? B - r0 : K;
    /* the chunk's cosines again, tracked in a leaf copy of its rows and in W */
    fvl_tensor *xv = fvl_narrow(x, 0, r0, m), *xl = xv ? fvl_clone(xv) : NULL, *cs = NULL, *dcv = NULL;
    fvl_release(xv);
    if (!xl) { rc = -1; break; }
    xl->requires_grad = want_x;
    dcv = fvl_narrow(dc, 0, 0, m);
    int prev = fvl_set_grad_enabled(1);
    cs = dcv ? fvl_cosine(xl, Wl, NULL) : NULL;
    fvl_set_grad_enabled(prev);
    fvl_margin_spec sp = rows_spec(c, srow, mrow, r0);
    if (!cs) rc = -1;
    if (rc == 0)
      rc = fvl_margin_ce_bwd_part(fvl_f32(cs), C, fvl_i32(y) + r0, fvl_f32(ct) + r0, (int)m, C, &sp,
                                  fvl_f32(lse) + r0, gscale, fvl_f32(dcv), C, ds ? fvl_f32(ds) + r0 : NULL,
                                  dm ? fvl_f32(dm) + r0 : NULL);
    if (rc == 0) zero_capped(c, r0, m, fvl_f32(dcv), C, ds ? fvl_f32(ds) : NULL, dm ? fvl_f32(dm) : NULL);
    /* the cosine's own backward on dc (used in place, as in a graph walk: no copy of it) */
    if (rc == 0 && cs->grad_fn) {
      int pg = fvl_set_grad_enabled(0);
      rc = cs->grad_fn->backward(cs->grad_fn, dcv);
      fvl_set_grad_enabled(pg);
    }
    if (rc == 0 && want_x)
      memcpy(fvl_f32(gx) + r0 * D, fvl_f32(xl->grad), sizeof(float) * (size_t)(m * D));
    if (rc == 0) rc = fvl_check_abort("margin_ce backward");
    fvl_release(cs); fvl_release(xl); fvl_release(dcv);
  }
  if (rc == 0 && want_x) rc = fvl_lo_take_or_accum(n, 0, gx);
  if (rc == 0 && want_w && Wl->grad) {
    if (direct && !Win->grad) Win->grad = fvl_retain(Wl->grad);
    else if (!(direct && Win->grad == Wl->grad)) rc = fvl_node_accum(n, 1, Wl->grad);
  }
  if (rc == 0) rc = finish_rows(n, 2, 3, ds, dm, B);
  fvl_release(ds); fvl_release(dm); fvl_release(gx); fvl_release(Wl); fvl_release(dc);
  return rc;
}

fvl_tensor *fvl_cosine_margin_ce_shard(fvl_tensor *x, fvl_tensor *W, fvl_tensor *ycol, const fvl_margin_spec *spec,
                                       fvl_tensor *s_row, fvl_tensor *m_row, int64_t chunk, const char *name,
                                       int nonfinite_ok, int *bad_row, float cap) {
  const char *fn = name && *name ? name : "margin_ce_shard";
  char b1[64], b2[64];
  if (bad_row) *bad_row = 0;
  if (fvl_lo_check_2d(fn, "x", x, "B×D embeddings") || fvl_lo_check_2d(fn, "W", W, "C×D class centres")) return NULL;
  int64_t B = x->size[0], D = x->size[1], C = W->size[0];
  if (B < 1 || C < 1 || W->size[1] != D || B > INT32_MAX || C > INT32_MAX) {
    fvl_err("%s: x is %s and W %s (expected B×D and C×D with B, C >= 1)", fn, fvl_lo_shape(x, b1), fvl_lo_shape(W, b2));
    return NULL;
  }
  if (!spec) { fvl_err("%s: spec is missing", fn); return NULL; }
  if (chunk < 1) { fvl_err("%s: chunk = %lld (expected >= 1 rows)", fn, (long long)chunk); return NULL; }
  if (chunk > B) chunk = B;
  fvl_margin_spec sp;
  fvl_tensor *y = NULL, *xd = NULL, *Wd = NULL, *sr = NULL, *mr = NULL, *lse = NULL, *ct = NULL, *out = NULL;
  row_stats st = {0};
  int ldx, ldw;
  int64_t szb[1] = {B};
  if (!(y = ycol_of(fn, ycol, B, C)) || spec_rows(fn, spec, s_row, m_row, B, &sp, &sr, &mr) ||
      !(xd = fvl_lo_rows_of(x, &ldx)) || !(Wd = fvl_lo_rows_of(W, &ldw)) ||
      !(ct = dot_targets(fvl_f32(xd), ldx, fvl_f32(Wd), ldw, fvl_i32(y), B, D)) || stats_new(fn, &st, B, cap) ||
      !(lse = fvl_empty(FVL_F32, 1, szb)))
    goto done;
  /* one pass over this slice's columns, chunk rows at a time: only the rows' statistics stay */
  for (int64_t r0 = 0; r0 < B; r0 += chunk) {
    int64_t m = B - r0 < chunk ? B - r0 : chunk;
    fvl_tensor *cs = chunk_cos(xd, Wd, r0, m);
    fvl_margin_spec spc = sp;
    spc.s_row = sp.s_row ? sp.s_row + r0 : NULL;
    spc.m_row = sp.m_row ? sp.m_row + r0 : NULL;
    if (spc.hard == FVL_HARD_ROW && spc.thr_row) spc.thr_row += r0;
    int rc = cs ? fvl_margin_ce_fwd_part(fvl_f32(cs), (int)C, fvl_i32(y) + r0, fvl_f32(ct) + r0, (int)m, (int)C,
                                         &spc, st.mx + r0, st.sm + r0) : -1;
    fvl_release(cs);
    if (rc) {
      char msg[512];
      snprintf(msg, sizeof msg, "%s", fvl_errmsg());
      fvl_err("%s: %s", fn, msg);
      goto done;
    }
  }
  fvl_tensor *in[4] = {x, W, s_row, m_row};
  shard_ctx *c;
  if (!(out = finish_loss(fn, &sp, &st, ct, lse, B, cap, nonfinite_ok, bad_row, fused_bw, 4, in, &c))) goto done;
  if (c) {
    fvl_node *nd = out->grad_fn;
    c->C = (int)C;
    c->ldc = (int)C;
    c->chunk = (int)chunk;
    c->gws = ct; ct = NULL;   /* the target cosines */
    fvl_tensor *xs = fvl_detach(xd), *Ws = fvl_detach(Wd);
    move_saved(nd, (fvl_tensor **[]){&xs, &Ws, &y, &lse, &sr, &mr}, 6);
  }
done:
  stats_free(&st);
  fvl_release(y); fvl_release(xd); fvl_release(Wd); fvl_release(sr); fvl_release(mr); fvl_release(lse);
  fvl_release(ct);
  return out;
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
