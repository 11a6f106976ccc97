/* bind_eval.c — raw bindings of engine/eval.c, registered as the sub-table fvl._eval (the plots
 * are lua/bind_plot.c). The user-facing API (fvl.eval) is lua/fvl/eval.lua; these functions only
 * check types and shapes, convert 1-based labels and call the engine. Every tensor taken here is
 * released before an error is raised. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "bind.h"
#include "eval.h"

/* ------------------------------------------------------------------ argument helpers */

/* errors: fvl_error (bind.h), printf formats */
#define errorf fvl_error

/* same/issame: a tensor or a table of 0/1 or booleans, n entries → new int32 tensor */
static fvl_tensor *arg_same(lua_State *L, int idx, const char *fn, int64_t n) {
  int64_t sz = n;
  fvl_tensor *out;
  fvl_tensor *t = fvl_totensor(L, idx);
  if (t) {
    if (t->ndim != 1 || t->size[0] != n) {
      char b[64];
      errorf(L, "%s: same is %s, expected %lld entries (one per score)", fn,
                 fvl_shape_str(t, b, sizeof b), (long long)n);
    }
    out = fvl_empty(FVL_I32, 1, &sz);
    if (!out) fvl_raise(L);
    for (int64_t i = 0; i < n; i++) {
      double v = t->dtype == FVL_F32 ? (double)fvl_f32(t)[i * t->stride[0]] : (double)fvl_i32(t)[i * t->stride[0]];
      if (v != 0 && v != 1) {
        fvl_release(out);
        errorf(L, "%s: same[%lld] = %g (expected 1 for a genuine pair or 0 for an impostor)",
                   fn, (long long)i + 1, v);
      }
      fvl_i32(out)[i] = (int32_t)v;
    }
    return out;
  }
  if (lua_type(L, idx) != LUA_TTABLE)
    errorf(L, "%s: same must be a tensor or a table of 1/0 (or true/false), got %s", fn,
               luaL_typename(L, idx));
  int64_t m = (int64_t)luaL_len(L, idx);
  if (m != n)
    errorf(L, "%s: same has %lld entries, expected %lld (one per score)", fn, (long long)m,
               (long long)n);
  out = fvl_empty(FVL_I32, 1, &sz);
  if (!out) fvl_raise(L);
  for (int64_t i = 0; i < n; i++) {
    int ty = lua_geti(L, idx, i + 1);
    int v = -1;
    if (ty == LUA_TBOOLEAN) v = lua_toboolean(L, -1);
    else if (ty == LUA_TNUMBER) {
      double d = lua_tonumber(L, -1);
      v = d == 1 ? 1 : d == 0 ? 0 : -1;
    }
    lua_pop(L, 1);
    if (v < 0) {
      fvl_release(out);
      errorf(L, "%s: same[%lld] is not 1/0 or true/false", fn, (long long)i + 1);
    }
    fvl_i32(out)[i] = v;
  }
  return out;
}

static void set_num(lua_State *L, const char *k, double v) {
  lua_pushnumber(L, v);
  lua_setfield(L, -2, k);
}

static void push_far_table(lua_State *L, const double *tar) {
  lua_newtable(L);
  for (int j = 0; j < FVL_EVAL_NFAR; j++) {
    if (isnan(tar[j])) continue;   /* unsupported FARs are absent, never made up */
    lua_pushnumber(L, fvl_eval_far_targets[j]);
    lua_pushnumber(L, tar[j]);
    lua_settable(L, -3);
  }
}

/* ------------------------------------------------------------------ eval */

/* _eval.verification(scores, same, folds, drop_intermediate) -> table */
static int l_verification(lua_State *L) {
  const char *fn = "verification";
  int folds = fvl_checkint32(L, fn, "folds", luaL_optinteger(L, 3, 10), INT32_MIN, INT32_MAX);
  int drop = lua_toboolean(L, 4);
  fvl_tensor *s = fvl_checkf32(L, 1, fn, "scores", 1);
  fvl_checkfinite(L, s, fn, "scores");
  int64_t n = s->size[0];
  fvl_tensor *y = arg_same(L, 2, fn, n);
  fvl_pushtensor(L, y);
  fvl_tensor *far = fvl_empty(FVL_F32, 1, &(int64_t){n + 1});
  fvl_tensor *tar = fvl_empty(FVL_F32, 1, &(int64_t){n + 1});
  fvl_tensor *thr = fvl_empty(FVL_F32, 1, &(int64_t){n + 1});
  double *dfar = malloc((size_t)(n + 1) * sizeof *dfar), *dtar = malloc((size_t)(n + 1) * sizeof *dtar);
  fvl_verif_result r;
  int64_t m = 0;
  int rc = (!far || !tar || !thr || !dfar || !dtar) ? fvl_err("%s: out of memory", fn)
           : fvl_eval_verification(fvl_f32(s), fvl_i32(y), n, folds, &r, drop, dfar, dtar,
                                   fvl_f32(thr), &m);
  if (rc < 0) {
    fvl_release(far); fvl_release(tar); fvl_release(thr); free(dfar); free(dtar);
    return fvl_raise(L);
  }
  for (int64_t i = 0; i < m; i++) { fvl_f32(far)[i] = (float)dfar[i]; fvl_f32(tar)[i] = (float)dtar[i]; }
  free(dfar); free(dtar);
  fvl_tensor *full[3] = {far, tar, thr};
  for (int i = 0; i < 3; i++) {   /* the first m entries */
    fvl_tensor *v = fvl_narrow(full[i], 0, 0, m);
    fvl_release(full[i]);
    full[i] = v;
  }
  far = full[0]; tar = full[1]; thr = full[2];
  lua_newtable(L);
  set_num(L, "accuracy", r.accuracy);
  set_num(L, "std", r.std);
  set_num(L, "threshold", r.threshold);
  set_num(L, "auc", r.auc);
  set_num(L, "eer", r.eer);
  set_num(L, "eer_threshold", r.eer_threshold);
  lua_pushinteger(L, r.n); lua_setfield(L, -2, "n");
  lua_pushinteger(L, r.n_genuine); lua_setfield(L, -2, "n_genuine");
  lua_pushinteger(L, r.n_impostor); lua_setfield(L, -2, "n_impostor");
  lua_pushinteger(L, r.folds); lua_setfield(L, -2, "folds");
  lua_createtable(L, r.folds, 0);
  for (int k = 0; k < r.folds; k++) { lua_pushnumber(L, r.fold_acc[k]); lua_rawseti(L, -2, k + 1); }
  lua_setfield(L, -2, "fold_accuracy");
  lua_createtable(L, r.folds, 0);
  for (int k = 0; k < r.folds; k++) { lua_pushnumber(L, r.fold_thr[k]); lua_rawseti(L, -2, k + 1); }
  lua_setfield(L, -2, "fold_threshold");
  push_far_table(L, r.tar_at_far);
  lua_setfield(L, -2, "tar_at_far");
  lua_newtable(L);   /* val = {[f] = {tar=, std=, far=}} (LFW VAL@FAR over the folds) */
  for (int j = 0; j < FVL_EVAL_NFAR; j++) {
    if (isnan(r.val[j])) continue;
    lua_pushnumber(L, fvl_eval_far_targets[j]);
    lua_createtable(L, 0, 3);
    set_num(L, "tar", r.val[j]);
    set_num(L, "std", r.val_std[j]);
    set_num(L, "far", r.val_far[j]);
    lua_settable(L, -3);
  }
  lua_setfield(L, -2, "val");
  lua_newtable(L);
  fvl_pushtensor(L, far); lua_setfield(L, -2, "far");
  fvl_pushtensor(L, tar); lua_setfield(L, -2, "tar");
  fvl_pushtensor(L, thr); lua_setfield(L, -2, "threshold");
  lua_setfield(L, -2, "roc");
  fvl_gc_charge(L);
  return 1;
}

/* _eval.roc(scores, same, drop_intermediate) -> far, tar, thresholds (float32, first = +inf) */
static int l_roc(lua_State *L) {
  const char *fn = "roc";
  fvl_tensor *s = fvl_checkf32(L, 1, fn, "scores", 1);
  fvl_checkfinite(L, s, fn, "scores");
  int64_t n = s->size[0];
  fvl_tensor *y = arg_same(L, 2, fn, n);
  fvl_pushtensor(L, y);
  double *dfar = malloc((size_t)(n + 1) * sizeof *dfar), *dtar = malloc((size_t)(n + 1) * sizeof *dtar);
  fvl_tensor *thr = fvl_empty(FVL_F32, 1, &(int64_t){n + 1});
  int64_t m = (!dfar || !dtar || !thr) ? fvl_err("%s: out of memory", fn)
              : fvl_eval_roc(fvl_f32(s), fvl_i32(y), n, lua_toboolean(L, 3), dfar, dtar, fvl_f32(thr));
  if (m < 0) { free(dfar); free(dtar); fvl_release(thr); return fvl_raise(L); }
  fvl_tensor *far = fvl_empty(FVL_F32, 1, &m), *tar = fvl_empty(FVL_F32, 1, &m);
  if (far && tar)
    for (int64_t i = 0; i < m; i++) { fvl_f32(far)[i] = (float)dfar[i]; fvl_f32(tar)[i] = (float)dtar[i]; }
  free(dfar); free(dtar);
  fvl_tensor *thr_m = fvl_narrow(thr, 0, 0, m);
  fvl_release(thr);
  thr = thr_m;
  fvl_pushtensor(L, far);
  fvl_pushtensor(L, tar);
  fvl_pushtensor(L, thr);
  return 3;
}

/* _eval.pairs(emb, labels, n, seed) -> scores (f32), same (i32 1/0), a, b (1-based i32) */
static int l_pairs(lua_State *L) {
  const char *fn = "pairs";
  fvl_tensor *e = fvl_checkf32(L, 1, fn, "emb", 2);
  int64_t N = e->size[0], D = e->size[1];
  fvl_tensor *lab = fvl_checklabels(L, 2, fn, N, -1);
  fvl_pushtensor(L, lab);
  const int32_t *l = fvl_i32(lab);
  int64_t other = 1;
  while (other < N && l[other] == l[0]) other++;
  if (N >= 2 && other == N)
    return errorf(L, "%s: labels: expected at least 2 classes for impostor pairs, got one class only (%d)", fn,
                  (int)l[0] + 1);
  fvl_checkfinite(L, e, fn, "emb");
  lua_Integer np = luaL_checkinteger(L, 3);
  lua_Integer seed = luaL_optinteger(L, 4, 1);
  if (np < 2) return errorf(L, "%s: n: expected at least 2 pairs, got %lld", fn, (long long)np);
  int64_t n = np;
  fvl_tensor *sc = fvl_empty(FVL_F32, 1, &n), *same = fvl_empty(FVL_I32, 1, &n);
  fvl_tensor *a = fvl_empty(FVL_I32, 1, &n), *b = fvl_empty(FVL_I32, 1, &n);
  int rc = (!sc || !same || !a || !b) ? -1
           : fvl_eval_make_pairs(fvl_f32(e), fvl_i32(lab), N, D, n, (uint64_t)seed, fvl_i32(a),
                                 fvl_i32(b), fvl_i32(same), fvl_f32(sc));
  if (rc < 0) {
    fvl_release(sc); fvl_release(same); fvl_release(a); fvl_release(b);
    return fvl_raise(L);
  }
  for (int64_t i = 0; i < n; i++) { fvl_i32(a)[i]++; fvl_i32(b)[i]++; }
  fvl_pushtensor(L, sc);
  fvl_pushtensor(L, same);
  fvl_pushtensor(L, a);
  fvl_pushtensor(L, b);
  return 4;
}

/* _eval.identification(gallery, gallery_labels, probes|nil, probe_labels|nil, {k...}) -> table */
static int l_identification(lua_State *L) {
  const char *fn = "identification";
  fvl_tensor *g = fvl_checkf32(L, 1, fn, "gallery", 2);
  int64_t G = g->size[0], D = g->size[1];
  fvl_checkfinite(L, g, fn, "gallery");
  fvl_tensor *gl = fvl_checklabels(L, 2, fn, G, -1);
  fvl_pushtensor(L, gl);
  fvl_tensor *p = NULL, *pl = NULL;
  int64_t P = G;
  if (!lua_isnoneornil(L, 3)) {
    p = fvl_checkf32(L, 3, fn, "probes", 2);
    P = p->size[0];
    fvl_checkfinite(L, p, fn, "probes");
    if (p->size[1] != D)
      return errorf(L, "%s: probes are %lld×%lld but the gallery is %lld×%lld (the embedding "
                        "sizes differ: %lld ≠ %lld)", fn, (long long)P, (long long)p->size[1],
                        (long long)G, (long long)D, (long long)p->size[1], (long long)D);
    pl = fvl_checklabels(L, 4, fn, P, -1);
    /* the engine names it probe_labels; the binding's own message says labels */
    fvl_pushtensor(L, pl);
  }
  int ks[16], nk = 0;
  if (lua_istable(L, 5)) {
    lua_Integer m = luaL_len(L, 5);
    if (m > 16) return errorf(L, "%s: k: at most 16 ranks, got %d", fn, (int)m);
    for (lua_Integer i = 1; i <= m; i++) {
      lua_geti(L, 5, i);
      ks[nk++] = fvl_checkint32(L, fn, "k", luaL_checkinteger(L, -1), INT32_MIN, INT32_MAX);
      lua_pop(L, 1);
    }
  }
  double rk[16];
  fvl_ident_result r;
  if (fvl_eval_identification(fvl_f32(g), fvl_i32(gl), G, p ? fvl_f32(p) : NULL,
                              pl ? fvl_i32(pl) : NULL, P, D, ks, nk, rk, &r) < 0)
    return fvl_raise(L);
  lua_newtable(L);
  set_num(L, "precision_at_1", r.precision_at_1);
  set_num(L, "r_precision", r.r_precision);
  set_num(L, "map_at_r", r.map_at_r);
  lua_pushinteger(L, r.n_queries); lua_setfield(L, -2, "n_queries");
  lua_pushinteger(L, r.n_dropped); lua_setfield(L, -2, "n_dropped");
  lua_newtable(L);
  for (int i = 0; i < nk; i++) { lua_pushnumber(L, rk[i]); lua_rawseti(L, -2, ks[i]); }
  lua_setfield(L, -2, "rank");
  return 1;
}

/* _eval.flip(emb, emb_flipped) -> normalize(emb + emb_flipped) */
static int l_flip(lua_State *L) {
  const char *fn = "flip";
  fvl_tensor *a = fvl_checkf32(L, 1, fn, "emb", 2);
  fvl_tensor *b = fvl_checkf32(L, 2, fn, "emb_flipped", 2);
  fvl_checkfinite(L, a, fn, "emb");
  fvl_checkfinite(L, b, fn, "emb_flipped");
  if (!fvl_same_shape(a, b)) {
    char sa[64], sb[64];
    return errorf(L, "%s: emb is %s but emb_flipped is %s (expected the same shape)", fn,
                      fvl_shape_str(a, sa, sizeof sa), fvl_shape_str(b, sb, sizeof sb));
  }
  fvl_tensor *out = fvl_empty_like(a);
  if (!out) return fvl_raise(L);
  if (fvl_eval_flip_merge(fvl_f32(a), fvl_f32(b), a->size[0], a->size[1], fvl_f32(out)) < 0) {
    fvl_release(out);
    return fvl_raise(L);
  }
  fvl_pushtensor(L, out);
  return 1;
}

/* _eval.cosine(a, b) -> a_n · b_nᵀ */
static int l_cosine(lua_State *L) {
  const char *fn = "cosine";
  fvl_tensor *a = fvl_checkf32(L, 1, fn, "a", 2);
  fvl_tensor *b = fvl_checkf32(L, 2, fn, "b", 2);
  fvl_checkfinite(L, a, fn, "a");
  fvl_checkfinite(L, b, fn, "b");
  if (a->size[1] != b->size[1])
    return errorf(L, "%s: a is %lld×%lld but b is %lld×%lld (inner sizes %lld ≠ %lld)", fn,
                      (long long)a->size[0], (long long)a->size[1], (long long)b->size[0],
                      (long long)b->size[1], (long long)a->size[1], (long long)b->size[1]);
  int64_t sz[2] = {a->size[0], b->size[0]};
  fvl_tensor *out = fvl_empty(FVL_F32, 2, sz);
  if (!out) return fvl_raise(L);
  if (fvl_eval_cosine_matrix(fvl_f32(a), sz[0], fvl_f32(b), sz[1], a->size[1], fvl_f32(out)) < 0) {
    fvl_release(out);
    return fvl_raise(L);
  }
  fvl_pushtensor(L, out);
  return 1;
}


int fvl_open_eval(lua_State *L) {
  static const luaL_Reg ev[] = {{"verification", l_verification}, {"roc", l_roc},
                                {"pairs", l_pairs}, {"identification", l_identification},
                                {"flip", l_flip}, {"cosine", l_cosine}, {NULL, NULL}};
  luaL_newlib(L, ev);
  lua_setfield(L, -2, "_eval");
  return 0;
}
