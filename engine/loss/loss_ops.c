/* loss_ops.c — autograd wrappers of the loss kernels: fused margin softmax-CE, its logits,
 * hard-negative mean, target gather, row gather, pairwise Circle, centre rule; and the helpers
 * shared with cosine.c (normalise + GEMM + clamp, linear logits).
 * Derivations: docs/losses.md §0 (the shared backward), margin.h for the kernels. */
#include "loss_internal.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- helpers shared with cosine.c (loss_internal.h) */
const char *fvl_lo_shape(const fvl_tensor *t, char *buf) { return fvl_shape_str(t, buf, 64); }

int fvl_lo_check_2d(const char *fn, const char *arg, const fvl_tensor *t, const char *what) {
  char b[64];
  if (!t) return fvl_err("%s: %s is missing (expected %s)", fn, arg, what);
  if (t->dtype != FVL_F32)
    return fvl_err("%s: %s is %s (expected a float32 %s)", fn, arg, fvl_dtype_name(t->dtype), what);
  if (t->ndim != 2) return fvl_err("%s: %s is %s (expected %s)", fn, arg, fvl_lo_shape(t, b), what);
  return 0;
}

/* row-major data of a 2-D tensor: itself when rows are contiguous (ld = stride[0]), otherwise
   an untracked contiguous copy. New reference. */
fvl_tensor *fvl_lo_rows_of(fvl_tensor *t, int *ld) {
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
fvl_tensor *fvl_lo_data_of(fvl_tensor *t) {
  if (fvl_is_contiguous(t)) return fvl_retain(t);
  int prev = fvl_set_grad_enabled(0);
  fvl_tensor *c = fvl_clone(t);
  fvl_set_grad_enabled(prev);
  return c;
}

/* labels: int32, B entries (B or B×1), values in 0..C−1 (C = 0: an empty class matrix accepts
 * none; C < 0: any id >= 0). The binding has checked them already with 1-based messages; this
 * is the engine's cheap 0-based invariant. Returns contiguous data (new ref). */
fvl_tensor *fvl_lo_labels_of(const char *fn, fvl_tensor *y0, int64_t B, int64_t C) {
  char b[64];
  if (!y0) { fvl_err("%s: labels are missing (expected %lld int32 class ids)", fn, (long long)B); return NULL; }
  if (y0->dtype != FVL_I32) {
    fvl_err("%s: labels are %s (expected int32 class ids)", fn, fvl_dtype_name(y0->dtype));
    return NULL;
  }
  if (fvl_numel(y0) != B || y0->ndim > 2) {
    fvl_err("%s: labels are %s but there are %lld rows (expected %lld labels)", fn, fvl_lo_shape(y0, b),
            (long long)B, (long long)B);
    return NULL;
  }
  fvl_tensor *y = fvl_lo_data_of(y0);
  if (!y) return NULL;
  const int32_t *p = fvl_i32(y);
  for (int64_t i = 0; i < B; i++)
    if (p[i] < 0 || (C >= 0 && p[i] >= C)) {
      if (C > 0) fvl_err("%s: labels[%lld] = %d is outside 0..%lld (0-based)", fn, (long long)i, (int)p[i], (long long)C - 1);
      else if (C == 0) fvl_err("%s: labels[%lld] = %d but there are no classes (0 rows)", fn, (long long)i, (int)p[i]);
      else fvl_err("%s: labels[%lld] = %d is negative (0-based)", fn, (long long)i, (int)p[i]);
      fvl_release(y);
      return NULL;
    }
  return y;
}

/* a per-row vector (s or m): float32 with B entries; contiguous data (new ref) */
fvl_tensor *fvl_lo_rowvec_of(const char *fn, const char *arg, fvl_tensor *v, int64_t B) {
  char b[64];
  if (v->dtype != FVL_F32) {
    fvl_err("%s: %s is a %s tensor (expected float32 with %lld entries)", fn, arg, fvl_dtype_name(v->dtype), (long long)B);
    return NULL;
  }
  if (fvl_numel(v) != B || v->ndim > 2) {
    fvl_err("%s: %s is %s (expected one value per row: %lld entries)", fn, arg, fvl_lo_shape(v, b), (long long)B);
    return NULL;
  }
  return fvl_lo_data_of(v);
}

/* hands g (which the caller owns exclusively) to input i of node n: becomes the gradient
   accumulator of a non-leaf input when it has none yet (no copy), else is accumulated */
int fvl_lo_take_or_accum(fvl_node *n, int i, fvl_tensor *g) {
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
fvl_tensor *fvl_lo_inplace_acc(fvl_node *n, int i) {
  if (!fvl_node_wants(n, i)) return NULL;
  fvl_tensor *t = n->in[i];
  fvl_tensor *g = t->grad_fn ? t->grad_fn->gacc : NULL;
  if (g && fvl_same_shape(g, t) && fvl_is_contiguous(g) && g->dtype == FVL_F32) return g;
  return NULL;
}

int fvl_lo_ws_ok(const char *fn, const char *arg, const fvl_tensor *ws, int64_t B, int64_t C) {
  char b[64];
  if (ws->dtype != FVL_F32 || ws->ndim != 2 || ws->size[0] != B || ws->size[1] != C ||
      !fvl_is_contiguous(ws))
    return fvl_err("%s: workspace %s is %s %s%s (expected a contiguous float32 %lldx%lld tensor)", fn, arg,
                   fvl_dtype_name(ws->dtype), fvl_lo_shape(ws, b), fvl_is_contiguous(ws) ? "" : " (not contiguous)",
                   (long long)B, (long long)C);
  return 0;
}

fvl_tensor *fvl_lo_mean_loss(const char *fn, double sum, int64_t B, int64_t bad, int nonfinite_ok, int *bad_row) {
  if (bad >= 0) {
    if (!nonfinite_ok)
      return fvl_err("%s: loss is not finite (first bad row %lld, 0-based)", fn, (long long)bad), NULL;
    if (bad_row) *bad_row = (int)bad;
  }
  return fvl_scalar((float)(sum / B));
}

/* ================================================================ margin softmax-CE */
/* thr: a copy of sp.thr_row (hard = ROW), B floats, so the backward does not depend on the
   caller's buffer */
typedef struct { fvl_margin_spec sp; int B, C, ldc; char name[48]; float thr[]; } margin_ctx;
static void free_plain(void *p) { free(p); }

int fvl_lo_accum_vec(fvl_node *n, int i, fvl_tensor *v) {
  fvl_tensor *r = v;
  if (!fvl_same_shape(v, n->in[i])) r = fvl_reshape(v, n->in[i]->ndim, n->in[i]->size);
  int rc = r ? fvl_node_accum(n, i, r) : -1;
  if (r != v) fvl_release(r);
  return rc;
}

int fvl_lo_defer_margin_rows(fvl_tensor *cin, const fvl_margin_spec *sp, const float *cos, int ldc, const int32_t *y,
                             const float *ctgt, const float *lse, const unsigned char *skip, float gscale,
                             fvl_tensor **ds, fvl_tensor **dm) {
  int64_t B = cin->size[0], C = cin->size[1], szb[1] = {B};
  float *ct = malloc(sizeof(float) * (size_t)B);
  fvl_margin_row *rows = malloc(sizeof *rows * (size_t)B);
  int rc = ct && rows ? 0 : fvl_err("margin_ce backward: out of memory");
  if (rc == 0) {
    for (int64_t i = 0; i < B; i++) ct[i] = ctgt ? ctgt[i] : cos[i * ldc + y[i]];
    rc = fvl_lo_defer_margin(cin, sp, y, ct, lse, skip, gscale);
  }
  if (rc == 1 && ((ds && !(*ds = fvl_empty(FVL_F32, 1, szb))) || (dm && !(*dm = fvl_empty(FVL_F32, 1, szb)))))
    rc = -1;
  if (rc == 1 && (ds || dm)) {
    fvl_margin_rows(sp, ct, (int)B, rows);
    if (fvl_margin_ce_row_grads(cos, ldc, y, (int)B, (int)C, sp, rows, lse, gscale, skip, ds ? fvl_f32(*ds) : NULL,
                                dm ? fvl_f32(*dm) : NULL))
      rc = -1;
  }
  if (rc < 0) {
    if (ds) { fvl_release(*ds); *ds = NULL; }
    if (dm) { fvl_release(*dm); *dm = NULL; }
  }
  free(ct);
  free(rows);
  return rc;
}

static int margin_bw(fvl_node *n, fvl_tensor *gout) {
  margin_ctx *mc = n->ctx;
  fvl_tensor *cos = n->saved[0], *y = n->saved[1], *lse = n->saved[2], *srow = n->saved[3],
             *mrow = n->saved[4], *gws = n->saved[5];
  fvl_margin_spec sp = mc->sp;
  sp.s_row = srow ? fvl_f32(srow) : NULL;
  sp.m_row = mrow ? fvl_f32(mrow) : NULL;
  if (sp.hard == FVL_HARD_ROW) sp.thr_row = mc->thr;
  int B = mc->B, C = mc->C;
  float gscale = (float)(fvl_get(gout, (int64_t[]){0, 0, 0, 0, 0, 0}) / B);
  fvl_tensor *dc = NULL, *ds = NULL, *dm = NULL;
  int rc = 0;
  int64_t szb[1] = {B};
  /* fused class blocks: the cosine node that made cos forms the gradient per block */
  int deferred = 0;
  if (fvl_node_wants(n, 0) && fvl_loss_fused()) {
    deferred = fvl_lo_defer_margin_rows(n->in[0], &sp, fvl_f32(cos), mc->ldc, fvl_i32(y), NULL, fvl_f32(lse), NULL,
                                        gscale, fvl_node_wants(n, 1) ? &ds : NULL, fvl_node_wants(n, 2) ? &dm : NULL);
    if (deferred < 0) return -1;
  }
  if (deferred) {
    if (ds) rc = fvl_lo_accum_vec(n, 1, ds);
    if (rc == 0 && dm) rc = fvl_lo_accum_vec(n, 2, dm);
    fvl_release(ds);
    fvl_release(dm);
    return rc;
  }
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
    rc = fvl_lo_take_or_accum(n, 0, dc);
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

/* the labels (int32, checked against C), the per-row s and m (B floats each, optional) and the spec
   pointing at them, checked; *y, *sr, *mr start NULL and the caller releases them */
static int margin_inputs(const char *fn, fvl_tensor *y0, fvl_tensor *s_row, fvl_tensor *m_row, int64_t B, int64_t C,
                         fvl_margin_spec *sp, fvl_tensor **y, fvl_tensor **sr, fvl_tensor **mr) {
  if (!(*y = fvl_lo_labels_of(fn, y0, B, C))) return -1;
  if (s_row && !(*sr = fvl_lo_rowvec_of(fn, "s", s_row, B))) return -1;
  if (m_row && !(*mr = fvl_lo_rowvec_of(fn, "m", m_row, B))) return -1;
  sp->s_row = *sr ? fvl_f32(*sr) : NULL;
  sp->m_row = *mr ? fvl_f32(*mr) : NULL;
  return fvl_margin_spec_check(fn, sp);
}

/* the forward's class blocks already took each row's (max, Σexp) per block (fvl_cosine_margin_ce) */
typedef struct { int64_t nblk; const float *bmax; const double *bsum; const unsigned char *redo; } online_sums;

static fvl_tensor *margin_ce_impl(fvl_tensor *cos, fvl_tensor *y0, const fvl_margin_spec *spec, fvl_tensor *s_row,
                                  fvl_tensor *m_row, fvl_tensor *gws, const char *name, int nonfinite_ok,
                                  int *bad_row, const online_sums *on) {
  const char *fn = name && *name ? name : "margin_ce";
  char b[64];
  if (bad_row) *bad_row = -1;
  if (fvl_lo_check_2d(fn, "cos", cos, "B×C cosine matrix")) return NULL;
  int64_t B = cos->size[0], C = cos->size[1];
  if (B < 1) { fvl_err("%s: empty batch (cos is %s)", fn, fvl_lo_shape(cos, b)); return NULL; }
  if (C < 1 || B > INT32_MAX || C > INT32_MAX) { fvl_err("%s: cos is %s (expected B×C with C >= 1)", fn, fvl_lo_shape(cos, b)); return NULL; }
  if (!spec) { fvl_err("%s: spec is missing", fn); return NULL; }
  if (gws && fvl_lo_ws_ok(fn, "gws", gws, B, C)) return NULL;
  fvl_margin_spec sp = *spec;
  fvl_tensor *y = NULL, *cd = NULL, *sr = NULL, *mr = NULL, *lse = NULL, *rl = NULL, *out = NULL;
  margin_ctx *mc = NULL;
  int ldc;
  if (margin_inputs(fn, y0, s_row, m_row, B, C, &sp, &y, &sr, &mr)) goto fail;
  if (!(cd = fvl_lo_rows_of(cos, &ldc))) goto fail;
  int64_t szb[1] = {B};
  if (!(lse = fvl_empty(FVL_F32, 1, szb)) || !(rl = fvl_empty(FVL_F32, 1, szb))) goto fail;
  if (on ? fvl_margin_ce_fwd_combine(&sp, fvl_f32(cd), ldc, fvl_i32(y), (int)B, (int)C, on->nblk, on->bmax, on->bsum,
                                     on->redo, fvl_f32(rl), fvl_f32(lse))
         : fvl_margin_ce_fwd(fvl_f32(cd), ldc, fvl_i32(y), (int)B, (int)C, &sp, fvl_f32(rl), fvl_f32(lse))) {
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
  if (!(out = fvl_lo_mean_loss(fn, sum, B, bad, nonfinite_ok, bad_row))) goto fail;
  fvl_tensor *in[3] = {cos, s_row, m_row};
  fvl_node *nd = fvl_record("margin_ce", margin_bw, out, 3, in);
  if (nd) {
    size_t nthr = sp.hard == FVL_HARD_ROW ? (size_t)B : 0;
    if (!(mc = malloc(sizeof *mc + nthr * sizeof(float)))) { fvl_err("%s: out of memory", fn); goto fail; }
    mc->sp = sp;
    mc->sp.s_row = mc->sp.m_row = mc->sp.thr_row = NULL;
    if (nthr) memcpy(mc->thr, sp.thr_row, nthr * sizeof(float));
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

fvl_tensor *fvl_margin_ce_ex(fvl_tensor *cos, fvl_tensor *y0, const fvl_margin_spec *spec,
                             fvl_tensor *s_row, fvl_tensor *m_row, fvl_tensor *gws,
                             const char *name, int nonfinite_ok, int *bad_row) {
  return margin_ce_impl(cos, y0, spec, s_row, m_row, gws, name, nonfinite_ok, bad_row, NULL);
}

/* ---------------------------------------------------------------- the online softmax in the forward's blocks */
/* off by default (two idle A/B runs: 1.005× and 1.002× the separate pass's wall time, docs/training.md);
   FVL_ONLINE=1 in the environment starts with it on (A/B: scripts/bench/head_ab.lua) */
static int online_mode = -1;
int fvl_loss_online(void) {
  if (online_mode < 0) {
    const char *e = getenv("FVL_ONLINE");
    online_mode = e && strcmp(e, "1") == 0;
  }
  return online_mode;
}
int fvl_loss_set_online(int on) {
  int prev = fvl_loss_online();
  online_mode = on != 0;
  return prev;
}

typedef struct {
  const fvl_margin_spec *sp;
  const fvl_margin_row *rows0;
  const int32_t *y;
  int B;
  float *bmax;
  double *bsum;
} online_ctx;
static void online_block(void *p, int64_t blk, int64_t j0, int64_t nj, const float *cos, int64_t ldc) {
  const online_ctx *o = p;
  fvl_margin_ce_fwd_block(o->sp, o->rows0, cos, (int)ldc, o->y, o->B, (int)j0, (int)nj, o->bmax + blk * o->B,
                          o->bsum + blk * o->B);
}

fvl_tensor *fvl_cosine_margin_ce(fvl_tensor *x, fvl_tensor *W, fvl_tensor *y0, const fvl_margin_spec *spec,
                                 fvl_tensor *s_row, fvl_tensor *m_row, fvl_tensor *ws, fvl_tensor *gws,
                                 const char *name, int nonfinite_ok, int *bad_row) {
  const char *fn = name && *name ? name : "cosine_margin_ce";
  if (bad_row) *bad_row = -1;
  if (!spec) return fvl_err("%s: spec is missing", fn), NULL;
  if (!fvl_loss_online() || !fvl_margin_online_ok(spec) || fvl_lo_check_2d(fn, "x", x, "B×D embeddings") ||
      fvl_lo_check_2d(fn, "W", W, "C×D class centres")) {   /* the separate pass (it also words the errors) */
    fvl_tensor *cos = fvl_cosine(x, W, ws);
    if (!cos) return NULL;
    fvl_tensor *loss = fvl_margin_ce_ex(cos, y0, spec, s_row, m_row, gws, fn, nonfinite_ok, bad_row);
    fvl_release(cos);
    return loss;
  }
  int64_t B = x->size[0], C = W->size[0];
  fvl_margin_spec sp = *spec;
  fvl_tensor *y = NULL, *sr = NULL, *mr = NULL, *cos = NULL, *loss = NULL;
  int64_t nblk = 0;
  float *bmax = NULL;
  double *bsum = NULL;
  unsigned char *redo = NULL;
  fvl_margin_row *rows0 = NULL;
  if (B < 1 || C < 1 || B > INT32_MAX || C > INT32_MAX) {   /* fvl_cosine words it */
    if ((cos = fvl_cosine(x, W, ws))) fvl_err("%s: x is %lldx%lld and W has %lld rows (expected B, C >= 1)", fn,
                                              (long long)B, (long long)x->size[1], (long long)C);
    goto done;
  }
  if (margin_inputs(fn, y0, s_row, m_row, B, C, &sp, &y, &sr, &mr)) goto done;
  int64_t nb = fvl_lo_block_cols(B, C);
  nblk = (C + nb - 1) / nb;
  bmax = malloc(sizeof *bmax * (size_t)(nblk * B));
  bsum = malloc(sizeof *bsum * (size_t)(nblk * B));
  redo = malloc((size_t)B);
  rows0 = malloc(sizeof *rows0 * (size_t)B);
  float *zero = calloc((size_t)B, sizeof(float));
  if (!bmax || !bsum || !redo || !rows0 || !zero) {
    free(zero);
    fvl_err("%s: out of memory", fn);
    goto done;
  }
  fvl_margin_rows(&sp, zero, (int)B, rows0);   /* scale and hard threshold: not the target's cosine */
  free(zero);
  online_ctx oc = {&sp, rows0, fvl_i32(y), (int)B, bmax, bsum};
  if (!(cos = fvl_lo_cosine_visit(x, W, ws, online_block, &oc, redo))) goto done;
  online_sums on = {nblk, bmax, bsum, redo};
  loss = margin_ce_impl(cos, y, spec, s_row, m_row, gws, fn, nonfinite_ok, bad_row, &on);
done:
  free(bmax); free(bsum); free(redo); free(rows0);
  fvl_release(y); fvl_release(sr); fvl_release(mr); fvl_release(cos);
  return loss;
}

fvl_tensor *fvl_margin_ce(fvl_tensor *cos, fvl_tensor *y0, const fvl_margin_spec *sp,
                          fvl_tensor *s_row, fvl_tensor *m_row, fvl_tensor *gws) {
  return fvl_margin_ce_ex(cos, y0, sp, s_row, m_row, gws, "margin_ce", 0, NULL);
}

fvl_tensor *fvl_margin_logits_t(fvl_tensor *cos, fvl_tensor *y0, const fvl_margin_spec *spec,
                                fvl_tensor *s_row, fvl_tensor *m_row, const char *name) {
  const char *fn = name && *name ? name : "margin_logits";
  char b[64];
  if (fvl_lo_check_2d(fn, "cos", cos, "B×C cosine matrix")) return NULL;
  int64_t B = cos->size[0], C = cos->size[1];
  if (B < 1 || C < 1) { fvl_err("%s: cos is %s (expected B×C with B, C >= 1)", fn, fvl_lo_shape(cos, b)); return NULL; }
  if (!spec) { fvl_err("%s: spec is missing", fn); return NULL; }
  fvl_margin_spec sp = *spec;
  fvl_tensor *y = NULL, *cd = NULL, *sr = NULL, *mr = NULL, *z = NULL;
  int ldc;
  int64_t sz[2] = {B, C};
  if (margin_inputs(fn, y0, s_row, m_row, B, C, &sp, &y, &sr, &mr) || !(cd = fvl_lo_rows_of(cos, &ldc)) || !(z = fvl_empty(FVL_F32, 2, sz))) goto done;
  if (fvl_margin_logits(fvl_f32(cd), ldc, fvl_i32(y), (int)B, (int)C, &sp, fvl_f32(z), (int)C)) {
    fvl_release(z);
    z = NULL;
  }
done:
  fvl_release(y); fvl_release(cd); fvl_release(sr); fvl_release(mr);
  return z;
}

/* ================================================================ LSE of the negatives (AdaCos) */
fvl_tensor *fvl_neg_lse(fvl_tensor *cos, fvl_tensor *y0, float s) {
  static const char *fn = "neg_lse";
  char bs[64];
  if (fvl_lo_check_2d(fn, "cos", cos, "B×C cosine matrix")) return NULL;
  int64_t B = cos->size[0], C = cos->size[1];
  if (B < 1 || C < 2) { fvl_err("%s: cos is %s (expected B×C with B >= 1, C >= 2)", fn, fvl_lo_shape(cos, bs)); return NULL; }
  fvl_tensor *y = fvl_lo_labels_of(fn, y0, B, C), *cd = NULL, *out = NULL;
  int ldc;
  int64_t szb[1] = {B};
  if (!y || !(cd = fvl_lo_rows_of(cos, &ldc)) || !(out = fvl_empty(FVL_F32, 1, szb))) goto done;
  if (fvl_neg_lse_fwd(fvl_f32(cd), ldc, fvl_i32(y), (int)B, (int)C, s, fvl_f32(out))) {
    fvl_release(out);
    out = NULL;
  }
done:
  fvl_release(y);
  fvl_release(cd);
  return out;
}

/* ================================================================ max over groups of K columns */
static int group_max_bw(fvl_node *n, fvl_tensor *gout) {
  fvl_tensor *arg = n->saved[0], *gws = n->saved[1];
  int64_t B = n->iv[0], C = n->iv[1], K = n->iv[2];
  if (!fvl_node_wants(n, 0)) return 0;
  fvl_tensor *g = fvl_lo_data_of(gout), *dc = NULL;
  if (!g) return -1;
  fvl_tensor *cin = n->in[0], *acc = cin->grad_fn ? cin->grad_fn->gacc : NULL;
  int64_t sz[2] = {B, C * K};
  if (gws && gws->st->refs == 1 && !(acc && acc->st == gws->st)) dc = fvl_retain(gws);
  else dc = fvl_empty(FVL_F32, 2, sz);
  int rc = dc ? 0 : -1;
  if (rc == 0) {
    const float *gp = fvl_f32(g);
    const int32_t *ap = fvl_i32(arg);
    float *d = fvl_f32(dc);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < B; i++) {
      float *row = d + i * C * K;
      memset(row, 0, sizeof(float) * (size_t)(C * K));
      for (int64_t j = 0; j < C; j++) row[j * K + ap[i * C + j]] = gp[i * C + j];
    }
    rc = fvl_lo_take_or_accum(n, 0, dc);
  }
  fvl_release(dc);
  fvl_release(g);
  return rc;
}

/* cos must be a B×(C·K) matrix with K >= 1 dividing its columns; *C = the class count */
int fvl_lo_group_cols(const char *fn, fvl_tensor *cos, int64_t K, int64_t *C) {
  char bs[64];
  if (fvl_lo_check_2d(fn, "cos", cos, "B×(C·K) matrix")) return -1;
  int64_t CK = cos->size[1];
  if (K < 1 || CK < K || CK % K)
    return fvl_err("%s: cos is %s but K = %lld (expected a number of columns divisible by K >= 1)", fn,
                   fvl_lo_shape(cos, bs), (long long)K);
  *C = CK / K;
  return 0;
}

fvl_tensor *fvl_group_max(fvl_tensor *cos, int64_t K, fvl_tensor *ws, fvl_tensor *gws) {
  static const char *fn = "group_max";
  int64_t C;
  if (fvl_lo_group_cols(fn, cos, K, &C)) return NULL;
  int64_t B = cos->size[0], CK = cos->size[1], sz[2] = {B, C};
  if (ws && fvl_lo_ws_ok(fn, "ws", ws, B, C)) return NULL;
  if (gws && fvl_lo_ws_ok(fn, "gws", gws, B, CK)) return NULL;
  int ldc;
  fvl_tensor *cd = fvl_lo_rows_of(cos, &ldc), *out = NULL, *arg = NULL;
  if (!cd) return NULL;
  /* ws is overwritten when nothing else shares it, or its last use as this op's output is
     finished (the backward freed the saved arg-max) */
  int reuse = ws && ws->st != cd->st &&
              (ws->grad_fn ? ws->grad_fn->backward == group_max_bw && ws->grad_fn->saved[0] == NULL
                           : ws->st->refs == 1);
  if (reuse) {
    out = fvl_retain(ws);
    if (out->grad_fn) { fvl_node_release(out->grad_fn); out->grad_fn = NULL; }
    out->requires_grad = 0;
  } else out = fvl_empty(FVL_F32, 2, sz);
  arg = fvl_empty(FVL_I32, 2, sz);
  if (!out || !arg) goto fail;
  const float *cp = fvl_f32(cd);
  float *op = fvl_f32(out);
  int32_t *ap = fvl_i32(arg);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < B; i++)
    for (int64_t j = 0; j < C; j++) {
      const float *v = cp + i * ldc + j * K;
      int32_t best = 0;
      for (int64_t k = 1; k < K; k++)   /* strict >: ties keep the first (torch.argmax) */
        if (v[k] > v[best]) best = (int32_t)k;
      op[i * C + j] = v[best];
      ap[i * C + j] = best;
    }
  fvl_tensor *in[1] = {cos};
  fvl_node *nd = fvl_record("group_max", group_max_bw, out, 1, in);
  if (nd) {
    nd->saved[0] = arg; arg = NULL;
    nd->saved[1] = gws ? fvl_retain(gws) : NULL;
    nd->iv[0] = B; nd->iv[1] = C; nd->iv[2] = K;
  }
  fvl_release(cd);
  fvl_release(arg);
  return out;
fail:
  fvl_release(cd); fvl_release(out); fvl_release(arg);
  return NULL;
}

/* ================================================================ hard-negative mean */
static int hard_mean_bw(fvl_node *n, fvl_tensor *gout) {
  fvl_tensor *cos = n->saved[0], *y = n->saved[1], *cnt = n->saved[2];
  int B = (int)n->iv[0], C = (int)n->iv[1], ldc = (int)n->iv[2], hard = (int)n->iv[3], affine = (int)n->iv[4];
  fvl_tensor *gh = fvl_lo_data_of(gout);
  if (!gh) return -1;
  fvl_tensor *acc = fvl_lo_inplace_acc(n, 0);
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
    if (rc == 0) rc = fvl_lo_take_or_accum(n, 0, dc);
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
  if (fvl_lo_check_2d(fn, "cos", cos, "B×C cosine matrix")) return NULL;
  int64_t B = cos->size[0], C = cos->size[1];
  if (B < 1 || C < 1) { fvl_err("%s: cos is %s (expected B×C with B, C >= 1)", fn, fvl_lo_shape(cos, bs)); return NULL; }
  fvl_tensor *y = fvl_lo_labels_of(fn, y0, B, C), *cd = NULL, *h = NULL, *cnt = NULL;
  int ldc;
  int64_t szb[1] = {B};
  if (!y || !(cd = fvl_lo_rows_of(cos, &ldc)) || !(h = fvl_empty(FVL_F32, 1, szb)) || !(cnt = fvl_empty(FVL_F32, 1, szb)))
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
  fvl_tensor *g = fvl_lo_data_of(gout);
  if (!g) return -1;
  const float *gp = fvl_f32(g);
  const int32_t *yp = fvl_i32(y);
  fvl_tensor *acc = fvl_lo_inplace_acc(n, 0);
  /* fused class blocks: the cosine node adds the B values in its blocks (no B×C gradient) */
  int rc = acc || !fvl_node_wants(n, 0) ? 0 : fvl_lo_defer_target(n->in[0], yp, gp);
  if (rc != 0) {
    fvl_release(g);
    return rc < 0 ? -1 : 0;
  }
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
      rc = fvl_lo_take_or_accum(n, 0, dc);
      fvl_release(dc);
    }
  }
  fvl_release(g);
  return rc;
}

fvl_tensor *fvl_target_cos(fvl_tensor *cos, fvl_tensor *y0) {
  static const char *fn = "target_cos";
  char bs[64];
  if (fvl_lo_check_2d(fn, "cos", cos, "B×C cosine matrix")) return NULL;
  int64_t B = cos->size[0], C = cos->size[1];
  if (B < 1 || C < 1) { fvl_err("%s: cos is %s (expected B×C with B, C >= 1)", fn, fvl_lo_shape(cos, bs)); return NULL; }
  fvl_tensor *y = fvl_lo_labels_of(fn, y0, B, C);
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
/* the C×D gradient of input i (W) to add rows to in place: W->grad of a leaf (made, zero, when
   missing), the node's contiguous accumulator, or a fresh zero tensor (*fresh, which the caller
   hands on with rows_acc_end). NULL on failure. */
static float *rows_acc_begin(fvl_node *n, int i, fvl_tensor **fresh) {
  fvl_tensor *W = n->in[i], *acc = NULL;
  *fresh = NULL;
  if (!W->grad_fn) {  /* a leaf: add the rows straight into W->grad */
    if (!W->grad && !(W->grad = fvl_zeros(FVL_F32, 2, W->size))) return NULL;
    if (W->grad->dtype == FVL_F32 && fvl_is_contiguous(W->grad) && fvl_same_shape(W->grad, W)) acc = W->grad;
  } else {
    acc = fvl_lo_inplace_acc(n, i);
  }
  if (!acc && !(acc = *fresh = fvl_zeros(FVL_F32, 2, W->size))) return NULL;
  return fvl_f32(acc);
}
static int rows_acc_end(fvl_node *n, int i, fvl_tensor *fresh, int rc) {
  if (rc == 0 && fresh) rc = fvl_lo_take_or_accum(n, i, fresh);
  fvl_release(fresh);
  return rc;
}

static int gather_rows_bw(fvl_node *n, fvl_tensor *gout) {
  fvl_tensor *idx = n->saved[0];
  int64_t B = idx->size[0], D = n->iv[1];
  fvl_tensor *g = fvl_lo_data_of(gout), *fresh;
  if (!g) return -1;
  const float *gp = fvl_f32(g);
  const int32_t *ip = fvl_i32(idx);
  float *a = rows_acc_begin(n, 0, &fresh);
  if (a)
    for (int64_t i = 0; i < B; i++) {  /* sequential: labels repeat */
      float *r = a + (int64_t)ip[i] * D;
      const float *q = gp + i * D;
      for (int64_t d = 0; d < D; d++) r[d] += q[d];
    }
  fvl_release(g);
  return rows_acc_end(n, 0, fresh, a ? 0 : -1);
}

fvl_tensor *fvl_gather_rows(fvl_tensor *W, fvl_tensor *idx0) {
  static const char *fn = "gather_rows";
  char b[64];
  if (fvl_lo_check_2d(fn, "W", W, "C×D matrix")) return NULL;
  int64_t C = W->size[0], D = W->size[1];
  if (!idx0 || idx0->dtype != FVL_I32 || idx0->ndim != 1) {
    fvl_err("%s: rows must be a 1-D int32 tensor, got %s", fn, idx0 ? fvl_lo_shape(idx0, b) : "nothing");
    return NULL;
  }
  int64_t B = idx0->size[0];
  fvl_tensor *idx = fvl_lo_labels_of(fn, idx0, B, C);
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

/* ================================================================ DiscFace discrepancy term */
#define DISC_EPS 1e-12f   /* F.normalize's eps */
#define DISC_TINY 1e-30   /* |v| = sqrt(Σv² + 1e-30): subgradient 0 at v = 0 */

/* row norm |r|, and r ← r / max(|r|, eps) */
static float disc_normalize(float *r, const float *src, int64_t D) {
  double s = 0;
  for (int64_t d = 0; d < D; d++) s += (double)src[d] * src[d];
  float nv = (float)sqrt(s), inv = 1.0f / (nv > DISC_EPS ? nv : DISC_EPS);
  for (int64_t d = 0; d < D; d++) r[d] = src[d] * inv;
  return nv;
}
/* dst (+)= sign · ∂(v/max(|v|, eps))ᵀ g  (the normalisation Jacobian, as F.normalize's backward;
   vh = v/max(|v|, eps), nv = |v|) */
static void disc_norm_bw(float *dst, const float *g, const float *vh, float nv, int64_t D, float sign) {
  if (nv <= DISC_EPS) {
    for (int64_t d = 0; d < D; d++) dst[d] += sign * g[d] / DISC_EPS;
    return;
  }
  double dot = 0;
  for (int64_t d = 0; d < D; d++) dot += (double)g[d] * vh[d];
  float fd = (float)dot;
  for (int64_t d = 0; d < D; d++) dst[d] += sign * (g[d] - fd * vh[d]) / nv;
}

static int disc_dist_bw(fvl_node *n, fvl_tensor *gout) {
  fvl_tensor *xc = n->saved[0], *Wc = n->saved[1], *y = n->saved[2], *u = n->saved[3], *nrm = n->saved[4];
  int64_t B = u->size[0], D = u->size[1];
  int ldx = (int)n->iv[0], ldw = (int)n->iv[1], shared = (int)n->iv[2];
  float gv = (float)(fvl_get(gout, (int64_t[]){0, 0, 0, 0, 0, 0}) / (double)B);
  const float *xp = fvl_f32(xc), *wp = fvl_f32(Wc), *up = fvl_f32(u), *np = fvl_f32(nrm);
  const int32_t *yp = fvl_i32(y);
  int want_x = fvl_node_wants(n, 0), want_w = fvl_node_wants(n, 1), want_xi = fvl_node_wants(n, 2);
  int64_t sz[2] = {B, D};
  fvl_tensor *gx = want_x ? fvl_zeros(FVL_F32, 2, sz) : NULL, *fresh = NULL, *gxi = NULL;
  float *wacc = NULL, *row = malloc(sizeof(float) * (size_t)(2 * D));
  int rc = (want_x && !gx) || !row ? -1 : 0;
  if (rc == 0 && want_xi) {
    fvl_tensor *xi = n->in[2];
    if (!(gxi = fvl_zeros(FVL_F32, xi->ndim, xi->size))) rc = -1;
  }
  if (rc == 0 && want_w && !(wacc = rows_acc_begin(n, 1, &fresh))) rc = -1;
  if (rc == 0) {
    float *gu = row, *vh = row + D;
    for (int64_t i = 0; i < B; i++) {  /* sequential: labels repeat (W rows), ξ is shared */
      /* ∂/∂r_i = g·r_i/|r_i|/B, with u_i = r_i/|r_i| saved */
      for (int64_t d = 0; d < D; d++) gu[d] = gv * up[i * D + d];
      if (gx) {
        const float *xr = xp + i * ldx;
        float nx = np[i * 2], inv = 1.0f / (nx > DISC_EPS ? nx : DISC_EPS);
        for (int64_t d = 0; d < D; d++) vh[d] = xr[d] * inv;
        disc_norm_bw(fvl_f32(gx) + i * D, gu, vh, nx, D, 1.0f);
      }
      if (wacc) {
        const float *wr = wp + (int64_t)yp[i] * ldw;
        float nw = np[i * 2 + 1], inv = 1.0f / (nw > DISC_EPS ? nw : DISC_EPS);
        for (int64_t d = 0; d < D; d++) vh[d] = wr[d] * inv;
        disc_norm_bw(wacc + (int64_t)yp[i] * D, gu, vh, nw, D, -1.0f);
      }
      if (gxi) {
        float *q = fvl_f32(gxi) + (shared ? 0 : i * D);
        for (int64_t d = 0; d < D; d++) q[d] -= gu[d];
      }
    }
  }
  if (want_w) rc = rows_acc_end(n, 1, fresh, rc);
  if (rc == 0 && gx) rc = fvl_lo_take_or_accum(n, 0, gx);
  if (rc == 0 && gxi) rc = fvl_node_accum(n, 2, gxi);
  free(row);
  fvl_release(gx);
  fvl_release(gxi);
  return rc;
}

fvl_tensor *fvl_disc_dist(fvl_tensor *x, fvl_tensor *W, fvl_tensor *y0, fvl_tensor *xi) {
  static const char *fn = "disc_dist";
  char b1[64], b2[64];
  if (fvl_lo_check_2d(fn, "x", x, "B×D embeddings") || fvl_lo_check_2d(fn, "W", W, "C×D class centres")) return NULL;
  int64_t B = x->size[0], D = x->size[1], C = W->size[0];
  if (W->size[1] != D || B < 1 || D < 1) {
    fvl_err("%s: x is %s and W is %s (expected a non-empty batch and the same number of columns)", fn,
            fvl_lo_shape(x, b1), fvl_lo_shape(W, b2));
    return NULL;
  }
  int shared = xi && fvl_numel(xi) == D && (xi->ndim == 1 || (xi->ndim == 2 && xi->size[0] == 1));
  if (!xi || xi->dtype != FVL_F32 || !(shared || (xi->ndim == 2 && xi->size[0] == B && xi->size[1] == D))) {
    fvl_err("%s: xi is %s (expected float32 with %lld values, 1×%lld or %lld×%lld)", fn,
            xi ? fvl_lo_shape(xi, b1) : "missing", (long long)D, (long long)D, (long long)B, (long long)D);
    return NULL;
  }
  int ldx, ldw;
  fvl_tensor *y = fvl_lo_labels_of(fn, y0, B, C), *xc = NULL, *Wc = NULL, *xid = NULL, *u = NULL, *nrm = NULL,
             *out = NULL;
  int64_t sz[2] = {B, D}, szn[2] = {B, 2};
  float *vh = malloc(sizeof(float) * (size_t)D);
  if (!vh) fvl_err("%s: out of memory", fn);
  if (!vh || !y || !(xc = fvl_lo_rows_of(x, &ldx)) || !(Wc = fvl_lo_rows_of(W, &ldw)) || !(xid = fvl_lo_data_of(xi)) ||
      !(u = fvl_empty(FVL_F32, 2, sz)) || !(nrm = fvl_empty(FVL_F32, 2, szn)))
    goto done;
  const float *xp = fvl_f32(xc), *wp = fvl_f32(Wc), *xip = fvl_f32(xid);
  const int32_t *yp = fvl_i32(y);
  float *up = fvl_f32(u), *np = fvl_f32(nrm);
  double sum = 0;
  for (int64_t i = 0; i < B; i++) {
    /* r_i = x̂_i − ŵ_{y_i} − ξ_i; u_i = r_i/|r_i| is kept for the backward */
    float *r = up + i * D;
    const float *q = xip + (shared ? 0 : i * D);
    np[i * 2] = disc_normalize(r, xp + i * ldx, D);
    np[i * 2 + 1] = disc_normalize(vh, wp + (int64_t)yp[i] * ldw, D);
    double s = 0;
    for (int64_t d = 0; d < D; d++) {
      r[d] = r[d] - vh[d] - q[d];
      s += (double)r[d] * r[d];
    }
    double len = sqrt(s + DISC_TINY);
    sum += len;
    for (int64_t d = 0; d < D; d++) r[d] = (float)(r[d] / len);
  }
  if (!(out = fvl_scalar((float)(sum / B)))) goto done;
  fvl_tensor *in[3] = {x, W, xi};
  fvl_node *nd = fvl_record("disc_dist", disc_dist_bw, out, 3, in);
  if (nd) {
    nd->saved[0] = fvl_retain(xc);
    nd->saved[1] = fvl_retain(Wc);
    nd->saved[2] = fvl_retain(y);
    nd->saved[3] = fvl_retain(u);
    nd->saved[4] = fvl_retain(nrm);
    nd->iv[0] = ldx; nd->iv[1] = ldw; nd->iv[2] = shared;
  }
done:
  free(vh);
  fvl_release(y); fvl_release(xc); fvl_release(Wc); fvl_release(xid); fvl_release(u); fvl_release(nrm);
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
  if (rc == 0) rc = fvl_lo_take_or_accum(n, 0, dS);
  fvl_release(dS);
  return rc;
}

fvl_tensor *fvl_circle_pairwise(fvl_tensor *S, fvl_tensor *y0, float m, float gamma) {
  static const char *fn = "circle_pairwise";
  char bs[64];
  if (fvl_lo_check_2d(fn, "S", S, "B×B similarity matrix")) return NULL;
  int64_t B = S->size[0];
  if (S->size[1] != B || B < 1) {
    fvl_err("%s: S is %s (expected a square B×B similarity matrix with B >= 1)", fn, fvl_lo_shape(S, bs));
    return NULL;
  }
  fvl_tensor *y = fvl_lo_labels_of(fn, y0, B, -1), *Sd = NULL, *rl = NULL, *rz = NULL, *va = NULL, *out = NULL;
  int lds, nv = 0;
  int64_t szb[1] = {B};
  if (!y || !(Sd = fvl_lo_rows_of(S, &lds)) || !(rl = fvl_empty(FVL_F32, 1, szb)) || !(rz = fvl_empty(FVL_F32, 1, szb)) ||
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

/* ================================================================ centre distance (Center loss term) */
static int center_dist_bw(fvl_node *n, fvl_tensor *gout) {
  fvl_tensor *d = n->saved[0];
  float gv = (float)fvl_get(gout, (int64_t[]){0, 0, 0, 0, 0, 0});
  fvl_tensor *dx = fvl_empty(FVL_F32, d->ndim, d->size);
  if (!dx) return -1;
  const float *dp = fvl_f32(d);
  float *gp = fvl_f32(dx);
  int64_t m = fvl_numel(d);
  for (int64_t k = 0; k < m; k++) gp[k] = gv * dp[k];
  int rc = fvl_lo_take_or_accum(n, 0, dx);
  fvl_release(dx);
  return rc;
}

fvl_tensor *fvl_center_dist(fvl_tensor *x, fvl_tensor *centers, fvl_tensor *y0) {
  static const char *fn = "center_dist";
  char b1[64], b2[64];
  if (fvl_lo_check_2d(fn, "x", x, "B×D features") || fvl_lo_check_2d(fn, "centers", centers, "C×D centres")) return NULL;
  int64_t B = x->size[0], D = x->size[1], C = centers->size[0];
  if (centers->size[1] != D) {
    fvl_err("%s: x is %s but centers are %s (expected x with %lld columns)", fn, fvl_lo_shape(x, b1),
            fvl_lo_shape(centers, b2), (long long)centers->size[1]);
    return NULL;
  }
  if (B < 1) { fvl_err("%s: empty batch (x is %s)", fn, fvl_lo_shape(x, b1)); return NULL; }
  int ldx, ldc;
  fvl_tensor *y = fvl_lo_labels_of(fn, y0, B, C), *xd = NULL, *cd = NULL, *d = NULL, *out = NULL;
  int64_t sz[2] = {B, D};
  if (!y || !(xd = fvl_lo_rows_of(x, &ldx)) || !(cd = fvl_lo_rows_of(centers, &ldc)) || !(d = fvl_empty(FVL_F32, 2, sz)))
    goto done;
  const float *xp = fvl_f32(xd), *cp = fvl_f32(cd);
  const int32_t *yp = fvl_i32(y);
  float *dp = fvl_f32(d);
  double sum = 0;
  for (int64_t i = 0; i < B; i++) {
    const float *xr = xp + i * ldx, *cr = cp + (int64_t)yp[i] * ldc;
    float *dr = dp + i * D;
    double s = 0;
    for (int64_t k = 0; k < D; k++) {
      dr[k] = xr[k] - cr[k];
      s += (double)dr[k] * dr[k];
    }
    sum += s;
  }
  if (!(out = fvl_scalar((float)(0.5 * sum)))) goto done;
  fvl_tensor *in[1] = {x};
  fvl_node *nd = fvl_record("center_dist", center_dist_bw, out, 1, in);
  if (nd) nd->saved[0] = fvl_retain(d);
done:
  fvl_release(y); fvl_release(xd); fvl_release(cd); fvl_release(d);
  return out;
}

/* ================================================================ centre rule */
int fvl_center_update_(fvl_tensor *centers, fvl_tensor *x, fvl_tensor *y0, float alpha) {
  static const char *fn = "center_update";
  char b1[64], b2[64];
  if (fvl_lo_check_2d(fn, "centers", centers, "C×D centres") || fvl_lo_check_2d(fn, "x", x, "B×D features")) return -1;
  if (!fvl_is_contiguous(centers)) return fvl_err("%s: centers must be contiguous (it is updated in place)", fn);
  int64_t C = centers->size[0], D = centers->size[1], B = x->size[0];
  if (x->size[1] != D)
    return fvl_err("%s: x is %s but centers are %s (expected x with %lld columns)", fn, fvl_lo_shape(x, b1),
                   fvl_lo_shape(centers, b2), (long long)D);
  if (B < 1) return fvl_err("%s: empty batch (x is %s)", fn, fvl_lo_shape(x, b1));
  fvl_tensor *y = fvl_lo_labels_of(fn, y0, B, C);
  if (!y) return -1;
  fvl_tensor *xd = fvl_lo_data_of(x);
  int rc = xd ? fvl_center_update(fvl_f32(centers), (int)C, (int)D, fvl_f32(xd), fvl_i32(y), (int)B, alpha) : -1;
  fvl_release(xd);
  fvl_release(y);
  return rc;
}
