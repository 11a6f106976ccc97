/* shard.c — loss primitives on a slice of the classes (see shard.h). */
#include "shard.h"
#include "loss_internal.h"
#include "dist.h"
#include "autograd.h"
#include "rng.h"
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
typedef struct { fvl_margin_spec sp; int B, C, ldc; fvl_tensor *gws; unsigned char *capped; } shard_ctx;
static void free_ctx(void *p) {
  shard_ctx *c = p;
  fvl_release(c->gws);
  free(c->capped);
  free(c);
}

static int accum_row(fvl_node *n, int i, fvl_tensor *v) {
  fvl_tensor *r = v;
  if (!fvl_same_shape(v, n->in[i])) r = fvl_reshape(v, n->in[i]->ndim, n->in[i]->size);
  int rc = r ? fvl_node_accum(n, i, r) : -1;
  if (r != v) fvl_release(r);
  return rc;
}

static int shard_bw(fvl_node *n, fvl_tensor *gout) {
  shard_ctx *c = n->ctx;
  fvl_tensor *cos = n->saved[0], *y = n->saved[1], *lse = n->saved[2], *srow = n->saved[3],
             *mrow = n->saved[4], *ct = n->saved[5];
  fvl_margin_spec sp = c->sp;
  sp.s_row = srow ? fvl_f32(srow) : NULL;
  sp.m_row = mrow ? fvl_f32(mrow) : NULL;
  int B = c->B, C = c->C;
  float gscale = (float)(fvl_get(gout, (int64_t[]){0, 0, 0, 0, 0, 0}) / B);
  int64_t szb[1] = {B}, sz[2] = {B, C};
  /* the gradient goes into the head's workspace when nothing else holds it (as fvl_margin_ce) */
  fvl_tensor *dc = NULL, *ds = NULL, *dm = NULL, *cin = n->in[0];
  fvl_tensor *acc = cin && cin->grad_fn ? cin->grad_fn->gacc : NULL;
  if (c->gws && c->gws->st->refs == 1 && c->gws->st != cos->st && !(acc && acc->st == c->gws->st))
    dc = fvl_retain(c->gws);
  else
    dc = fvl_empty(FVL_F32, 2, sz);
  int rc = dc ? 0 : -1;
  if (rc == 0 && fvl_node_wants(n, 1) && !(ds = fvl_empty(FVL_F32, 1, szb))) rc = -1;
  if (rc == 0 && fvl_node_wants(n, 2) && !(dm = fvl_empty(FVL_F32, 1, szb))) rc = -1;
  if (rc == 0)
    rc = fvl_margin_ce_bwd_part(fvl_f32(cos), c->ldc, fvl_i32(y), fvl_f32(ct), B, C, &sp, fvl_f32(lse), gscale,
                                fvl_f32(dc), C, ds ? fvl_f32(ds) : NULL, dm ? fvl_f32(dm) : NULL);
  /* rows whose loss was capped (p_y floored) have no gradient, as torch's clamp_min */
  if (rc == 0 && c->capped)
    for (int i = 0; i < B; i++)
      if (c->capped[i]) {
        memset(fvl_f32(dc) + (size_t)i * C, 0, sizeof(float) * (size_t)C);
        if (ds) fvl_f32(ds)[i] = 0.0f;
        if (dm) fvl_f32(dm)[i] = 0.0f;
      }
  /* the row vectors are replicated: their gradient is the sum of the ranks' parts */
  if (rc == 0 && ds) rc = fvl_dist_allreduce_f32(fvl_f32(ds), (size_t)B, FVL_RED_SUM);
  if (rc == 0 && dm) rc = fvl_dist_allreduce_f32(fvl_f32(dm), (size_t)B, FVL_RED_SUM);
  if (rc == 0 && fvl_node_wants(n, 0)) rc = fvl_lo_take_or_accum(n, 0, dc);
  if (rc == 0 && ds) rc = accum_row(n, 1, ds);
  if (rc == 0 && dm) rc = accum_row(n, 2, dm);
  fvl_release(dc);
  fvl_release(ds);
  fvl_release(dm);
  return rc;
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
  fvl_margin_spec sp = *spec;
  fvl_tensor *y = NULL, *cd = NULL, *sr = NULL, *mr = NULL, *lse = NULL, *ct = NULL, *out = NULL;
  float *mx = NULL;
  double *sm = NULL;
  unsigned char *capped = NULL;
  int ldc, ncapped = 0;
  if (!(y = ycol_of(fn, ycol, B, C))) goto fail;
  if (s_row && !(sr = fvl_lo_rowvec_of(fn, "s", s_row, B))) goto fail;
  if (m_row && !(mr = fvl_lo_rowvec_of(fn, "m", m_row, B))) goto fail;
  sp.s_row = sr ? fvl_f32(sr) : NULL;
  sp.m_row = mr ? fvl_f32(mr) : NULL;
  if (fvl_margin_spec_check(fn, &sp)) goto fail;
  if (!(cd = fvl_lo_rows_of(cos, &ldc))) goto fail;
  if (!(ct = targets(fvl_f32(cd), ldc, fvl_i32(y), B))) goto fail;
  int64_t szb[1] = {B};
  mx = malloc(sizeof *mx * (size_t)B);
  sm = malloc(sizeof *sm * (size_t)B);
  if (!mx || !sm || !(lse = fvl_empty(FVL_F32, 1, szb)) || (cap > 0 && !(capped = calloc((size_t)B, 1)))) {
    fvl_err("%s: out of memory", fn);
    goto fail;
  }
  if (fvl_margin_ce_fwd_part(fvl_f32(cd), ldc, fvl_i32(y), fvl_f32(ct), (int)B, (int)C, &sp, mx, sm)) {
    char msg[512];
    snprintf(msg, sizeof msg, "%s", fvl_errmsg());
    fvl_err("%s: %s", fn, msg);
    goto fail;
  }
  /* LSE over the ranks: global max, then the sums rescaled to it */
  float *gm = fvl_f32(lse);
  memcpy(gm, mx, sizeof *mx * (size_t)B);
  if (fvl_dist_allreduce_f32(gm, (size_t)B, FVL_RED_MAX)) goto fail;
  for (int64_t i = 0; i < B; i++)
    sm[i] = mx[i] > -INFINITY && gm[i] > -INFINITY ? sm[i] * exp((double)mx[i] - (double)gm[i]) : 0.0;
  if (fvl_dist_allreduce_f64(sm, (size_t)B, FVL_RED_SUM)) goto fail;
  double sum = 0;
  int64_t bad = -1;
  const float *ctp = fvl_f32(ct);
  for (int64_t i = 0; i < B; i++) {
    double l = (double)gm[i] + log(sm[i]);
    if (!(gm[i] > -INFINITY)) l = NAN;
    gm[i] = (float)l;   /* the row LSE, kept for the backward */
    double li = (double)(float)l - (double)fvl_margin_target_logit(&sp, ctp[i], (int)i);
    if (bad < 0 && !isfinite(li)) bad = i;
    if (cap > 0 && li > cap) { li = cap; capped[i] = 1; ncapped++; }
    sum += (float)li;
  }
  if (!(out = fvl_lo_mean_loss(fn, sum, B, bad, nonfinite_ok, bad_row))) goto fail;
  fvl_tensor *in[3] = {cos, s_row, m_row};
  fvl_node *nd = fvl_record("margin_ce_shard", shard_bw, out, 3, in);
  if (nd) {
    shard_ctx *c = malloc(sizeof *c);
    if (!c) { fvl_err("%s: out of memory", fn); goto fail; }
    c->sp = sp;
    c->sp.s_row = c->sp.m_row = NULL;
    c->B = (int)B;
    c->C = (int)C;
    c->ldc = ldc;
    c->gws = gws ? fvl_retain(gws) : NULL;
    c->capped = ncapped ? capped : NULL;
    if (ncapped) capped = NULL;
    nd->ctx = c;
    nd->free_ctx = free_ctx;
    nd->saved[0] = cd; cd = NULL;
    nd->saved[1] = y; y = NULL;
    nd->saved[2] = lse; lse = NULL;
    nd->saved[3] = sr; sr = NULL;
    nd->saved[4] = mr; mr = NULL;
    nd->saved[5] = ct; ct = NULL;
  }
  free(mx); free(sm); free(capped);
  fvl_release(y); fvl_release(cd); fvl_release(sr); fvl_release(mr); fvl_release(lse); fvl_release(ct);
  return out;
fail:
  free(mx); free(sm); free(capped);
  fvl_release(y); fvl_release(cd); fvl_release(sr); fvl_release(mr); fvl_release(lse); fvl_release(ct);
  fvl_release(out);
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
