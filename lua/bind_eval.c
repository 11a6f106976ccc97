/* bind_eval.c — raw bindings of engine/eval.c and engine/plot.c, registered as the sub-tables
 * fvl._eval and fvl._plot. The user-facing API (fvl.eval, fvl.plot) is lua/fvl/eval.lua and
 * lua/fvl/plot.lua; these functions only check types and shapes, convert 1-based labels and
 * call the engine. Every tensor taken here is released before an error is raised. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "bind.h"
#include "eval.h"
#include "plot.h"

/* ------------------------------------------------------------------ argument helpers */

/* errors: fvl_error (bind.h), printf formats */
#define errorf fvl_error

/* a float32 contiguous tensor of rank `nd` (0 = any) at idx; the converted tensor is pushed
 * (the stack owns it, so a later error cannot leak it) and returned */
static fvl_tensor *arg_f32(lua_State *L, int idx, const char *fn, const char *arg, int nd) {
  fvl_tensor *t = fvl_totensor(L, idx);
  if (!t) {
    errorf(L, "%s: %s must be a tensor, got %s", fn, arg, luaL_typename(L, idx));
    return NULL;
  }
  if (nd && t->ndim != nd) {
    char b[64];
    errorf(L, "%s: %s must be %s, got %s", fn, arg, nd == 1 ? "1-D (N)" : "2-D (N×D)",
               fvl_shape_str(t, b, sizeof b));
  }
  fvl_tensor *c = t->dtype == FVL_F32 ? fvl_contiguous(t) : fvl_to_dtype(t, FVL_F32);
  if (!c) fvl_raise(L);
  if (!fvl_is_contiguous(c)) {
    fvl_tensor *d = fvl_contiguous(c);
    fvl_release(c);
    c = d;
    if (!c) fvl_raise(L);
  }
  fvl_pushtensor(L, c);
  return c;
}

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
      double v = t->dtype == FVL_F32 ? fvl_f32(t)[i * t->stride[0]] : fvl_i32(t)[i * t->stride[0]];
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
  int folds = (int)luaL_optinteger(L, 3, 10);
  int drop = lua_toboolean(L, 4);
  fvl_tensor *s = arg_f32(L, 1, fn, "scores", 1);
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
  fvl_tensor *s = arg_f32(L, 1, fn, "scores", 1);
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
  fvl_tensor *e = arg_f32(L, 1, fn, "emb", 2);
  int64_t N = e->size[0], D = e->size[1];
  fvl_tensor *lab = fvl_checklabels(L, 2, fn, N, 0);
  fvl_pushtensor(L, lab);
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
  fvl_tensor *g = arg_f32(L, 1, fn, "gallery", 2);
  int64_t G = g->size[0], D = g->size[1];
  fvl_tensor *gl = fvl_checklabels(L, 2, fn, G, 0);
  fvl_pushtensor(L, gl);
  fvl_tensor *p = NULL, *pl = NULL;
  int64_t P = G;
  if (!lua_isnoneornil(L, 3)) {
    p = arg_f32(L, 3, fn, "probes", 2);
    P = p->size[0];
    if (p->size[1] != D)
      return errorf(L, "%s: probes are %lld×%lld but the gallery is %lld×%lld (the embedding "
                        "sizes differ: %lld ≠ %lld)", fn, (long long)P, (long long)p->size[1],
                        (long long)G, (long long)D, (long long)p->size[1], (long long)D);
    pl = fvl_checklabels(L, 4, fn, P, 0);
    /* the engine names it probe_labels; the binding's own message says labels */
    fvl_pushtensor(L, pl);
  }
  int ks[16], nk = 0;
  if (lua_istable(L, 5)) {
    lua_Integer m = luaL_len(L, 5);
    if (m > 16) return errorf(L, "%s: k: at most 16 ranks, got %d", fn, (int)m);
    for (lua_Integer i = 1; i <= m; i++) {
      lua_geti(L, 5, i);
      ks[nk++] = (int)luaL_checkinteger(L, -1);
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
  fvl_tensor *a = arg_f32(L, 1, fn, "emb", 2);
  fvl_tensor *b = arg_f32(L, 2, fn, "emb_flipped", 2);
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
  fvl_tensor *a = arg_f32(L, 1, fn, "a", 2);
  fvl_tensor *b = arg_f32(L, 2, fn, "b", 2);
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

/* ------------------------------------------------------------------ plot */

/* numbers from a tensor (any shape, flattened) or a Lua list into a malloc'd double array;
 * the array is anchored on the Lua stack as a userdata so an error frees it */
static double *arg_numbers(lua_State *L, int idx, const char *fn, const char *arg, int64_t *n) {
  fvl_tensor *t = fvl_totensor(L, idx);
  int64_t m;
  if (t) m = fvl_numel(t);
  else if (lua_type(L, idx) == LUA_TTABLE) m = (int64_t)luaL_len(L, idx);
  else {
    errorf(L, "%s: %s must be a tensor or a list of numbers, got %s", fn, arg,
               luaL_typename(L, idx));
    return NULL;
  }
  double *v = lua_newuserdatauv(L, (size_t)(m ? m : 1) * sizeof *v, 0);
  if (t) {
    fvl_tensor *c = fvl_contiguous(t);
    if (!c) fvl_raise(L);
    for (int64_t i = 0; i < m; i++) v[i] = c->dtype == FVL_F32 ? fvl_f32(c)[i] : fvl_i32(c)[i];
    fvl_release(c);
  } else {
    for (int64_t i = 0; i < m; i++) {
      int ty = lua_geti(L, idx, i + 1);
      if (ty != LUA_TNUMBER) {
        errorf(L, "%s: %s[%lld] must be a number, got %s", fn, arg, (long long)i + 1,
                   lua_typename(L, ty));
      }
      v[i] = lua_tonumber(L, -1);
      lua_pop(L, 1);
    }
  }
  *n = m;
  return v;   /* the userdata stays on the stack */
}

static const char *opt_string(lua_State *L, int idx, const char *key) {
  const char *s = NULL;
  if (lua_getfield(L, idx, key) == LUA_TSTRING) s = lua_tostring(L, -1);
  lua_pop(L, 1);  /* the string is still referenced by the table */
  return s;
}
static double opt_number(lua_State *L, int idx, const char *key, double def) {
  double v = def;
  if (lua_getfield(L, idx, key) == LUA_TNUMBER) v = lua_tonumber(L, -1);
  lua_pop(L, 1);
  return v;
}
static int opt_bool(lua_State *L, int idx, const char *key, int def) {
  int v = def;
  if (lua_getfield(L, idx, key) != LUA_TNIL) v = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

/* _plot.lines(spec) with spec = {file=, width=, height=, title=, xlabel=, ylabel=, xlog=, ylog=,
 * xmin=.., ymax=, xstep=, ystep=, equal=, diagonal=, legend=0..4|-1,
 * series={{x=, y=, label=, color=, points=, line=, dash=, width=}...}, notes={{x=,y=,text=}}} */
static int l_lines(lua_State *L) {
  const char *fn = "plot.lines";
  luaL_checktype(L, 1, LUA_TTABLE);
  fvl_plot_chart c;
  fvl_plot_chart_init(&c);
  const char *file = opt_string(L, 1, "file");
  int w = (int)opt_number(L, 1, "width", 800), h = (int)opt_number(L, 1, "height", 600);
  c.title = opt_string(L, 1, "title");
  c.xlabel = opt_string(L, 1, "xlabel");
  c.ylabel = opt_string(L, 1, "ylabel");
  c.xlog = opt_bool(L, 1, "xlog", 0);
  c.ylog = opt_bool(L, 1, "ylog", 0);
  c.xmin = opt_number(L, 1, "xmin", NAN);
  c.xmax = opt_number(L, 1, "xmax", NAN);
  c.ymin = opt_number(L, 1, "ymin", NAN);
  c.ymax = opt_number(L, 1, "ymax", NAN);
  c.xstep = opt_number(L, 1, "xstep", 0);
  c.ystep = opt_number(L, 1, "ystep", 0);
  c.equal = opt_bool(L, 1, "equal", 0);
  c.diagonal = opt_bool(L, 1, "diagonal", 0);
  c.legend = (int)opt_number(L, 1, "legend", 0);
  int top = lua_gettop(L);
  if (lua_getfield(L, 1, "series") != LUA_TTABLE)
    return errorf(L, "%s: series must be a list of {x=, y=, label=} tables", fn);
  int ser = lua_gettop(L);
  int ns = (int)luaL_len(L, ser);
  lua_newtable(L);   /* anchors the converted x/y arrays until the picture is written */
  int anchor = lua_gettop(L);
  fvl_plot_series *s = lua_newuserdatauv(L, (size_t)(ns ? ns : 1) * sizeof *s, 0);
  for (int i = 0; i < ns; i++) {
    if (lua_geti(L, ser, i + 1) != LUA_TTABLE)
      return errorf(L, "%s: series[%d] must be a table {x=, y=, label=}", fn, i + 1);
    int si = lua_gettop(L);
    char ax[32], ay[32];
    snprintf(ax, sizeof ax, "series[%d].x", i + 1);
    snprintf(ay, sizeof ay, "series[%d].y", i + 1);
    int64_t nx, ny;
    lua_getfield(L, si, "x");
    double *x = arg_numbers(L, lua_gettop(L), fn, ax, &nx);
    lua_getfield(L, si, "y");
    double *y = arg_numbers(L, lua_gettop(L), fn, ay, &ny);
    if (nx != ny)
      return errorf(L, "%s: series[%d] has %lld x values but %lld y values", fn, i + 1,
                        (long long)nx, (long long)ny);
    lua_pushvalue(L, -3); lua_rawseti(L, anchor, 2 * i + 1);
    lua_pushvalue(L, -1); lua_rawseti(L, anchor, 2 * i + 2);
    s[i].label = opt_string(L, si, "label");
    s[i].x = x; s[i].y = y; s[i].n = nx;
    s[i].color = (int)opt_number(L, si, "color", 0) - 1;   /* 1-based in Lua, 0 = automatic */
    int pts = opt_bool(L, si, "points", 0), line = opt_bool(L, si, "line", 1);
    s[i].style = (line ? FVL_PLOT_LINE : 0) | (pts ? FVL_PLOT_POINTS : 0);
    if (!s[i].style) s[i].style = FVL_PLOT_POINTS;
    const char *dash = opt_string(L, si, "dash");
    s[i].dash = !dash || !strcmp(dash, "solid") ? FVL_DASH_SOLID
              : !strcmp(dash, "dashed") ? FVL_DASH_DASHED : FVL_DASH_DOTTED;
    s[i].width = opt_number(L, si, "width", 0);
    lua_settop(L, si - 1);
  }
  int nn = 0;
  fvl_plot_note *notes = NULL;
  if (lua_getfield(L, 1, "notes") == LUA_TTABLE) {
    int ni = lua_gettop(L);
    nn = (int)luaL_len(L, ni);
    notes = lua_newuserdatauv(L, (size_t)(nn ? nn : 1) * sizeof *notes, 0);
    for (int i = 0; i < nn; i++) {
      lua_geti(L, ni, i + 1);
      notes[i].x = opt_number(L, -1, "x", NAN);
      notes[i].y = opt_number(L, -1, "y", NAN);
      notes[i].text = opt_string(L, -1, "text");
      lua_pop(L, 1);
    }
  }
  c.series = s; c.nseries = ns; c.notes = notes; c.nnotes = nn;
  if (fvl_plot_chart_save(file, w, h, &c) < 0) return fvl_raise(L);
  lua_settop(L, top);
  return 0;
}

/* _plot.features(emb, labels|nil, {file=, width=, height=, centres=, names=, title=,
 *                normalize=, elev=, azim=, point_size=, alpha=, classes=}) */
/* reads (emb, labels|nil, opts) at e, e+1, e+2 into f; the tensors and arrays it makes stay
 * on the stack until the caller returns */
static void features_args(lua_State *L, int e_idx, const char *fn, fvl_plot_features *f) {
  int l_idx = e_idx + 1, o = e_idx + 2;
  fvl_tensor *e = arg_f32(L, e_idx, fn, "emb", 2);
  int64_t N = e->size[0];
  int dim = (int)e->size[1];
  luaL_checktype(L, o, LUA_TTABLE);
  int nclasses = (int)opt_number(L, o, "classes", 0);
  fvl_tensor *lab = NULL;
  if (!lua_isnoneornil(L, l_idx)) {
    lab = fvl_checklabels(L, l_idx, fn, N, nclasses);
    fvl_pushtensor(L, lab);
  }
  fvl_tensor *W = NULL;
  if (lua_getfield(L, o, "centres") != LUA_TNIL) {
    W = arg_f32(L, lua_gettop(L), fn, "centres", 2);
    if (W->size[1] != dim)
      errorf(L, "%s: centres are %lld×%lld but the embeddings have %d columns", fn,
             (long long)W->size[0], (long long)W->size[1], dim);
  }
  const char **names = NULL;
  if (lua_getfield(L, o, "names") == LUA_TTABLE) {
    int ni = lua_gettop(L);
    int m = (int)luaL_len(L, ni);
    int cap = m > nclasses ? m : nclasses;
    if (lab) for (int64_t i = 0; i < N; i++) if (fvl_i32(lab)[i] + 1 > cap) cap = fvl_i32(lab)[i] + 1;
    if (W && W->size[0] > cap) cap = (int)W->size[0];
    names = lua_newuserdatauv(L, (size_t)(cap ? cap : 1) * sizeof *names, 0);
    for (int i = 0; i < cap; i++) {
      names[i] = NULL;
      if (i < m && lua_geti(L, ni, i + 1) == LUA_TSTRING) names[i] = lua_tostring(L, -1);
      if (i < m) lua_pop(L, 1);   /* kept alive by the names table */
    }
  }
  fvl_plot_features t = {fvl_f32(e), N, dim, lab ? fvl_i32(lab) : NULL, nclasses,
                         W ? fvl_f32(W) : NULL, W ? W->size[0] : 0, names,
                         opt_string(L, o, "title"), opt_bool(L, o, "normalize", 1),
                         opt_number(L, o, "elev", 20), opt_number(L, o, "azim", 30),
                         opt_number(L, o, "point_size", 0), opt_number(L, o, "alpha", 0)};
  *f = t;
}

static int l_features(lua_State *L) {
  fvl_plot_features f;
  features_args(L, 1, "plot.features", &f);
  if (fvl_plot_features_save(opt_string(L, 3, "file"), (int)opt_number(L, 3, "width", 800),
                             (int)opt_number(L, 3, "height", 640), &f) < 0)
    return fvl_raise(L);
  return 0;
}

/* ---- animations: _plot.gif_open(file, w, h, delay_s, loop) -> handle;
 * _plot.gif_features(handle, emb, labels, opts); _plot.gif_close(handle) -> frames */
#define GIF_MT "fvl.plot.gif"
typedef struct { fvl_plot_gif *g; } gif_ud;

static gif_ud *check_gif(lua_State *L, int idx) {
  gif_ud *u = luaL_checkudata(L, idx, GIF_MT);
  if (!u->g) errorf(L, "plot.animation: the animation is closed");
  return u;
}
static int l_gif_gc(lua_State *L) {
  gif_ud *u = luaL_checkudata(L, 1, GIF_MT);
  if (u->g) { fvl_plot_gif_abort(u->g); u->g = NULL; }   /* never closed: no file */
  return 0;
}
static int l_gif_open(lua_State *L) {
  const char *file = luaL_checkstring(L, 1);
  int w = (int)luaL_checkinteger(L, 2), h = (int)luaL_checkinteger(L, 3);
  double delay = luaL_checknumber(L, 4);
  int loop = (int)luaL_optinteger(L, 5, 0);
  gif_ud *u = lua_newuserdatauv(L, sizeof *u, 0);
  u->g = NULL;
  if (luaL_newmetatable(L, GIF_MT)) {
    lua_pushcfunction(L, l_gif_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, l_gif_gc);
    lua_setfield(L, -2, "__close");
  }
  lua_setmetatable(L, -2);
  u->g = fvl_plot_gif_open(file, w, h, delay, loop);
  if (!u->g) return fvl_raise(L);
  return 1;
}
static int l_gif_features(lua_State *L) {
  gif_ud *u = check_gif(L, 1);
  fvl_plot_features f;
  features_args(L, 2, "plot.animation", &f);
  if (fvl_plot_gif_add_features(u->g, &f) < 0) return fvl_raise(L);
  lua_pushinteger(L, fvl_plot_gif_frames(u->g));
  return 1;
}
static int l_gif_close(lua_State *L) {
  gif_ud *u = check_gif(L, 1);
  int n = fvl_plot_gif_frames(u->g);
  fvl_plot_gif *g = u->g;
  u->g = NULL;
  if (fvl_plot_gif_close(g) < 0) return fvl_raise(L);
  lua_pushinteger(L, n);
  return 1;
}

/* _plot.contour(z (ny×nx tensor or flat list), nx, ny, x0, x1, y0, y1, level) -> xs, ys
 * (Lua lists; NaN separates the polylines) */
static int l_contour(lua_State *L) {
  const char *fn = "plot.contour";
  int64_t n;
  double *z = arg_numbers(L, 1, fn, "z", &n);
  int nx = (int)luaL_checkinteger(L, 2), ny = (int)luaL_checkinteger(L, 3);
  double x0 = luaL_checknumber(L, 4), x1 = luaL_checknumber(L, 5);
  double y0 = luaL_checknumber(L, 6), y1 = luaL_checknumber(L, 7);
  double level = luaL_optnumber(L, 8, 0);
  if ((int64_t)nx * ny != n)
    return errorf(L, "%s: z has %lld values, expected nx·ny = %d·%d = %lld", fn,
                      (long long)n, nx, ny, (long long)nx * ny);
  int64_t m = fvl_plot_contour(z, nx, ny, x0, x1, y0, y1, level, NULL, 0);
  if (m < 0) return fvl_raise(L);
  double *xy = lua_newuserdatauv(L, (size_t)(m ? 2 * m : 1) * sizeof *xy, 0);
  if (fvl_plot_contour(z, nx, ny, x0, x1, y0, y1, level, xy, m) < 0) return fvl_raise(L);
  lua_createtable(L, (int)m, 0);
  lua_createtable(L, (int)m, 0);
  for (int64_t i = 0; i < m; i++) {
    lua_pushnumber(L, xy[2 * i]); lua_rawseti(L, -3, i + 1);
    lua_pushnumber(L, xy[2 * i + 1]); lua_rawseti(L, -2, i + 1);
  }
  return 2;
}

/* _plot.sheet(file, {{file=, title=}...}, cols, title, cell_w, cell_h) */
static int l_sheet(lua_State *L) {
  const char *fn = "plot.sheet";
  const char *file = luaL_checkstring(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  int n = (int)luaL_len(L, 2);
  fvl_plot_panel *p = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof *p, 0);
  for (int i = 0; i < n; i++) {
    if (lua_geti(L, 2, i + 1) != LUA_TTABLE)
      return errorf(L, "%s: panels[%d] must be a table {file=, title=}", fn, i + 1);
    p[i].file = opt_string(L, -1, "file");
    p[i].title = opt_string(L, -1, "title");
    lua_pop(L, 1);
  }
  if (fvl_plot_sheet(file, p, n, (int)luaL_optinteger(L, 3, 0), luaL_optstring(L, 4, NULL),
                     (int)luaL_optinteger(L, 5, 0), (int)luaL_optinteger(L, 6, 0)) < 0)
    return fvl_raise(L);
  return 0;
}

/* _plot.color(i) -> r, g, b (palette, 1-based) */
static int l_color(lua_State *L) {
  double c[3];
  fvl_plot_color((int)luaL_checkinteger(L, 1) - 1, c);
  for (int i = 0; i < 3; i++) lua_pushnumber(L, c[i]);
  return 3;
}

int fvl_open_eval(lua_State *L) {
  static const luaL_Reg ev[] = {{"verification", l_verification}, {"roc", l_roc},
                                {"pairs", l_pairs}, {"identification", l_identification},
                                {"flip", l_flip}, {"cosine", l_cosine}, {NULL, NULL}};
  static const luaL_Reg pl[] = {{"lines", l_lines}, {"features", l_features},
                                {"contour", l_contour}, {"sheet", l_sheet},
                                {"color", l_color}, {"gif_open", l_gif_open},
                                {"gif_features", l_gif_features}, {"gif_close", l_gif_close},
                                {NULL, NULL}};
  luaL_newlib(L, ev);
  lua_setfield(L, -2, "_eval");
  luaL_newlib(L, pl);
  lua_setfield(L, -2, "_plot");
  return 0;
}
