/* group_max_ws.c — max over groups of K columns with one B×(C·K) workspace (group_max_ws.h).
 *
 * Sub-center ArcFace's step is cosine (B×(C·K)) → max over each class's K sub-centres (B×C) →
 * margin CE. With a separate max output, arg-max index and scattered gradient it kept three
 * B×(C·K)-sized buffers at its peak instead of the two of a single-centre head (the logits and
 * one gradient buffer). Here the B×C max lives in the first B·C floats of the gradient
 * workspace, which is idle until the backward, and the backward recomputes the arg-max from
 * the cosines (which the cosine's graph keeps until its own backward) and scatters the B×C
 * gradient over that same workspace.
 *
 * With the fused class blocks (fvl.F.fused, cosine.c) a margin CE taken of this op's output hands
 * its gradient to the cosine node below, like a single-centre head's: fvl_lo_group_max_source
 * tells fvl_lo_defer_margin that the B×C matrix is a max over groups of K cosines, and
 * fvl_group_margin_bwd_block forms each column block's B×(C·K) gradient from the saved cosines
 * (the arg-max recomputed per block). Then neither the B×C gradient of the max nor a B×(C·K)
 * gradient is ever written, and the step keeps the cosines plus the B×C max (gws of B×C). */
#include <stdlib.h>
#include <string.h>
#include "group_max_ws.h"
#include "loss_internal.h"

static int group_max_ws_bw(fvl_node *n, fvl_tensor *gout);

/* index of the first maximum of v[0..K) (strict >: ties keep the first, as torch.argmax) */
static inline int64_t first_max(const float *v, int64_t K) {
  int64_t b = 0;
  for (int64_t k = 1; k < K; k++)
    if (v[k] > v[b]) b = k;
  return b;
}

/* gws may be written now: nothing else shares its storage, or only prev (this op's previous
   output on gws) does and prev's graph is finished or was never recorded */
static int gws_free(const fvl_tensor *gws, const fvl_tensor *prev) {
  if (gws->st->refs == 1) return 1;
  if (!prev || prev == gws || prev->st != gws->st || prev->offset != 0 || gws->st->refs != 2) return 0;
  if (!prev->grad_fn) return 1;
  return prev->grad_fn->backward == group_max_ws_bw && prev->grad_fn->saved[0] == NULL;
}

/* the contiguous B×C view of the first B·C floats of gws (new reference, untracked) */
static fvl_tensor *front_view(fvl_tensor *gws, int64_t B, int64_t C) {
  int64_t all[1] = {-1}, sz[2] = {B, C};
  int was = fvl_set_grad_enabled(0);
  fvl_tensor *flat = fvl_reshape(gws, 1, all);
  fvl_tensor *part = flat ? fvl_narrow(flat, 0, 0, B * C) : NULL;
  fvl_tensor *v = part ? fvl_reshape(part, 2, sz) : NULL;
  fvl_set_grad_enabled(was);
  fvl_release(flat);
  fvl_release(part);
  return v;
}

fvl_tensor *fvl_group_max_ws(fvl_tensor *cos, int64_t K, fvl_tensor *gws, fvl_tensor *prev) {
  static const char *fn = "group_max_ws";
  int64_t C;
  if (fvl_lo_group_cols(fn, cos, K, &C)) return NULL;
  int64_t B = cos->size[0], CK = cos->size[1], sz[2] = {B, C};
  /* gws: B×(C·K) (the max in front, the gradient over it) or B×C (the max only) */
  if (gws && !(gws->dtype == FVL_F32 && gws->ndim == 2 && gws->size[0] == B && (gws->size[1] == CK || gws->size[1] == C) &&
               fvl_is_contiguous(gws))) {
    char b1[64];
    fvl_err("%s: workspace gws is %s %s%s (expected a contiguous float32 %lldx%lld tensor, or %lldx%lld for the max only)",
            fn, fvl_dtype_name(gws->dtype), fvl_lo_shape(gws, b1), fvl_is_contiguous(gws) ? "" : " (not contiguous)",
            (long long)B, (long long)CK, (long long)B, (long long)C);
    return NULL;
  }
  if (gws && gws->st == cos->st) {
    fvl_err("%s: gws shares its storage with cos (expected a separate B×(C·K) workspace)", fn);
    return NULL;
  }
  if (prev && !gws) { fvl_err("%s: prev given without gws (expected the previous output on gws, or NULL)", fn); return NULL; }
  if (prev && fvl_lo_ws_ok(fn, "prev", prev, B, C)) return NULL;
  int ldc;
  fvl_tensor *cd = fvl_lo_rows_of(cos, &ldc), *out = NULL;
  if (!cd) return NULL;
  int inplace = gws && gws_free(gws, prev);
  if (inplace && prev && prev->st == gws->st) {
    out = fvl_retain(prev);
    if (out->grad_fn) { fvl_node_release(out->grad_fn); out->grad_fn = NULL; }
    out->requires_grad = 0;
  } else if (inplace) {
    out = front_view(gws, B, C);
  } else {
    out = fvl_empty(FVL_F32, 2, sz);
  }
  if (!out) { fvl_release(cd); return NULL; }
  const float *cp = fvl_f32(cd);
  float *op = fvl_f32(out);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < B; i++)
    for (int64_t j = 0; j < C; j++) {
      const float *v = cp + i * ldc + j * K;
      op[i * C + j] = v[first_max(v, K)];
    }
  fvl_release(cd);
  fvl_tensor *in[1] = {cos};
  fvl_node *nd = fvl_record("group_max_ws", group_max_ws_bw, out, 1, in);
  if (nd) {
    /* saved[0]: the workspace the backward writes into (set only when out lives in it; freed
       after the backward, which is what tells gws_free that the graph is finished) */
    nd->saved[0] = inplace ? fvl_retain(gws) : NULL;
    nd->iv[0] = B; nd->iv[1] = C; nd->iv[2] = K;
  }
  return out;
}

static int group_max_ws_bw(fvl_node *n, fvl_tensor *gout) {
  fvl_tensor *gws = n->saved[0];
  int64_t B = n->iv[0], C = n->iv[1], K = n->iv[2];
  if (!fvl_node_wants(n, 0)) return 0;
  fvl_tensor *cin = n->in[0];
  fvl_tensor *g = fvl_lo_data_of(gout), *dc = NULL, *cd = NULL;
  if (!g) return -1;
  /* the max output in gws is dead now (every consumer's backward ran before this one) */
  fvl_tensor *acc = cin->grad_fn ? cin->grad_fn->gacc : NULL;
  int64_t sz[2] = {B, C * K};
  if (gws && fvl_numel(gws) == B * C * K && g->st != gws->st && gws->st != cin->st && !(acc && acc->st == gws->st))
    dc = fvl_retain(gws);
  else dc = fvl_empty(FVL_F32, 2, sz);
  int ldc, rc = -1;
  if (dc && (cd = fvl_lo_rows_of(cin, &ldc))) {
    const float *gp = fvl_f32(g), *cp = fvl_f32(cd);
    float *d = fvl_f32(dc);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < B; i++) {
      float *row = d + i * C * K;
      const float *crow = cp + i * ldc;
      memset(row, 0, sizeof(float) * (size_t)(C * K));
      for (int64_t j = 0; j < C; j++) row[j * K + first_max(crow + j * K, K)] = gp[i * C + j];
    }
    rc = fvl_lo_take_or_accum(n, 0, dc);
  }
  fvl_release(cd);
  fvl_release(dc);
  fvl_release(g);
  return rc;
}

fvl_tensor *fvl_lo_group_max_source(const fvl_tensor *t, int64_t *K) {
  fvl_node *n = t ? t->grad_fn : NULL;
  if (!n || n->backward != group_max_ws_bw || t->ndim != 2 || t->size[0] != n->iv[0] || t->size[1] != n->iv[1])
    return NULL;
  *K = n->iv[2];
  return n->in[0];
}

/* row i of the block's classes c0 .. c0+nc−1: the margin CE's gradient at each class's arg-max (gm,
   nc) and the arg-max's column relative to j0 (col, nc; may lie outside the block) */
static void group_row(const fvl_margin_spec *sp, const fvl_margin_row *rows, const float *crow, int64_t K,
                      const int32_t *y, int i, int64_t j0, int64_t c0, int64_t nc, const float *lse, float gscale,
                      float *mx, float *gm, int64_t *col) {
  for (int64_t c = 0; c < nc; c++) {   /* the forward's max and arg-max, from the same cosines */
    const float *v = crow + (c0 + c) * K;
    int64_t a = first_max(v, K);
    mx[c] = v[a];
    col[c] = (c0 + c) * K + a - j0;
  }
  /* the margin CE's gradient of this row's classes (y in class columns), at their arg-max */
  fvl_margin_ce_bwd_block(sp, rows + i, mx, (int)nc, y + i, 1, (int)c0, (int)nc, lse + i, gscale, NULL, gm, (int)nc);
}

int fvl_group_margin_bwd_block(const fvl_margin_spec *sp, const fvl_margin_row *rows, const float *cs, int64_t ldc,
                               int64_t K, const int32_t *y, int B, int64_t j0, int64_t n, const float *lse,
                               float gscale, const unsigned char *skip, float *S, int64_t lds) {
  /* the classes the block's columns belong to (the first and last may straddle its edges) */
  int64_t c0 = j0 / K, nc = (j0 + n - 1) / K - c0 + 1;
  float *mx = malloc(sizeof(float) * (size_t)nc), *gm = malloc(sizeof(float) * (size_t)nc);
  int64_t *col = malloc(sizeof(int64_t) * (size_t)nc);
  if (!mx || !gm || !col) {
    free(mx); free(gm); free(col);
    return -1;
  }
  for (int i = 0; i < B; i++) {
    float *srow = S + (size_t)i * (size_t)lds;
    memset(srow, 0, sizeof(float) * (size_t)n);
    if (skip && skip[i]) continue;
    group_row(sp, rows, cs + (size_t)i * (size_t)ldc, K, y, i, j0, c0, nc, lse, gscale, mx, gm, col);
    for (int64_t c = 0; c < nc; c++)
      if (col[c] >= 0 && col[c] < n) srow[col[c]] = gm[c];
  }
  free(mx); free(gm); free(col);
  return 0;
}

int fvl_group_margin_bwd_sel(const fvl_margin_spec *sp, const fvl_margin_row *rows, const float *cs, int64_t ldc,
                             int64_t K, const int32_t *y, int B, int64_t j0, int64_t n, const float *lse,
                             float gscale, const unsigned char *skip, float *gv, int32_t *gc, int64_t lds) {
  int64_t c0 = j0 / K, nc = (j0 + n - 1) / K - c0 + 1;
  float *mx = malloc(sizeof(float) * (size_t)nc);
  int64_t *col = malloc(sizeof(int64_t) * (size_t)nc);
  if (!mx || !col) {
    free(mx); free(col);
    return -1;
  }
  for (int i = 0; i < B; i++) {
    float *g = gv + (size_t)i * (size_t)lds;
    int32_t *k = gc + (size_t)i * (size_t)lds;
    if (skip && skip[i]) {
      for (int64_t c = 0; c < nc; c++) { g[c] = 0.0f; k[c] = -1; }
      continue;
    }
    group_row(sp, rows, cs + (size_t)i * (size_t)ldc, K, y, i, j0, c0, nc, lse, gscale, mx, g, col);
    for (int64_t c = 0; c < nc; c++) k[c] = col[c] >= 0 && col[c] < n ? (int32_t)col[c] : -1;
  }
  free(mx); free(col);
  return 0;
}
