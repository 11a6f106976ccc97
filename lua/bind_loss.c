/* bind_loss.c — the loss primitives as fvl.F.* (engine/loss/loss_ops.h). Thin: check, call, wrap.
 * Labels are 1-based here and converted with fvl_checklabels. Every engine tensor made before a
 * possible error is pushed on the stack first, so the GC owns it. */
#include <stdio.h>
#include <string.h>
#include "bind.h"
#include "loss/loss_ops.h"
#include "loss/shard.h"

#define T(i) fvl_checktensor(L, i)

/* a number option with the function's name in the message */
static float opt_number(lua_State *L, int idx, const char *fn, const char *key, double def) {
  int t = lua_getfield(L, idx, key);
  double v = def;
  if (t == LUA_TNUMBER) v = lua_tonumber(L, -1);
  else if (t != LUA_TNIL) luaL_error(L, "%s: %s must be a number, got %s", fn, key, luaL_typename(L, -1));
  lua_pop(L, 1);
  return (float)v;
}
static int opt_boolean(lua_State *L, int idx, const char *fn, const char *key, int def) {
  int t = lua_getfield(L, idx, key);
  int v = def;
  if (t == LUA_TBOOLEAN) v = lua_toboolean(L, -1);
  else if (t != LUA_TNIL) luaL_error(L, "%s: %s must be a boolean, got %s", fn, key, luaL_typename(L, -1));
  lua_pop(L, 1);
  return v;
}
/* number or tensor option: returns the tensor (borrowed, kept alive by the table) or NULL */
static fvl_tensor *opt_number_or_tensor(lua_State *L, int idx, const char *fn, const char *key, float *num,
                                        double def) {
  int t = lua_getfield(L, idx, key);
  fvl_tensor *ten = NULL;
  *num = (float)def;
  if (t == LUA_TNUMBER) *num = (float)lua_tonumber(L, -1);
  else if (t != LUA_TNIL) {
    ten = fvl_totensor(L, -1);
    if (!ten) luaL_error(L, "%s: %s must be a number or a tensor with one value per row, got %s", fn, key,
                         luaL_typename(L, -1));
  }
  lua_pop(L, 1);
  return ten;
}

/* labels → 0-based int32 tensor, pushed on the stack (GC-owned). The values are checked here
   first so the messages read "arcface: labels[3] = 7 is outside 1..6" (fvl_checklabels then
   converts; its own range messages use formats lua_pushfstring lacks). */
static fvl_tensor *labels_arg(lua_State *L, int idx, const char *fn, int64_t n, int64_t nclasses) {
  char range[48];
  if (nclasses > 0) snprintf(range, sizeof range, "outside 1..%lld", (long long)nclasses);
  else snprintf(range, sizeof range, "not a positive class id");
  if (lua_type(L, idx) == LUA_TTABLE) {
    lua_Integer len = luaL_len(L, idx);
    if (n >= 0 && len != n)
      luaL_error(L, "%s: labels has %I entries but there are %I rows (expected one label per row)", fn, len,
                 (lua_Integer)n);
    for (lua_Integer i = 1; i <= len; i++) {
      lua_geti(L, idx, i);
      int isint;
      lua_Integer v = lua_tointegerx(L, -1, &isint);
      if (!isint)
        luaL_error(L, "%s: labels[%I] = %s is not an integer class id", fn, i, luaL_tolstring(L, -1, NULL));
      if (v < 1 || (nclasses > 0 && v > nclasses)) luaL_error(L, "%s: labels[%I] = %I is %s", fn, i, v, range);
      lua_pop(L, 1);
    }
  } else {
    fvl_tensor *t = fvl_totensor(L, idx);
    if (t && t->ndim == 1 && n >= 0 && t->size[0] != n)
      luaL_error(L, "%s: labels has %I entries but there are %I rows (expected one label per row)", fn,
                 (lua_Integer)t->size[0], (lua_Integer)n);
    if (t && t->ndim == 1 && (t->dtype == FVL_I32 || t->dtype == FVL_F32)) {
      for (int64_t i = 0; i < t->size[0]; i++) {
        double v = t->dtype == FVL_I32 ? fvl_i32(t)[i * t->stride[0]] : fvl_f32(t)[i * t->stride[0]];
        if (v < 1 || (nclasses > 0 && v > nclasses) || v != (double)(lua_Integer)v) {
          char num[32];
          snprintf(num, sizeof num, "%g", v);
          luaL_error(L, "%s: labels[%I] = %s is %s", fn, (lua_Integer)i + 1, num, range);
        }
      }
    }
  }
  fvl_tensor *y = fvl_checklabels(L, idx, fn, n, nclasses);
  fvl_pushtensor(L, y);
  return y;
}

/* F.cosine(x, W [, ws]) -> B×C tensor (tracked) */
static int l_cosine(lua_State *L) {
  fvl_tensor *x = T(1), *W = T(2), *ws = fvl_opttensor(L, 3);
  fvl_pushtensor(L, fvl_cosine(x, W, ws));
  return 1;
}

/* the spec table at idx (LOSSES.md names; see loss_ops.h). Tensors stay owned by the table. */
typedef struct { fvl_margin_spec sp; fvl_tensor *s_row, *m_row, *gws, *thr; int warn; } spec_args;
static void parse_spec(lua_State *L, int idx, const char *name, spec_args *o) {
  static const char *const keys[] = {"s", "target", "m", "m1", "m2", "m3", "fallback", "easy_margin", "grad",
                                     "sphere_m", "lambda", "negative", "hard", "hard_m", "a", "b", "t",
                                     "circle_m", "gws", "nonfinite", "value", "threshold", "clamp", NULL};
  static const char *const targets[] = {"none", "cos", "arc", "combined", "sphere", "circle", "given", NULL};
  static const char *const fallbacks[] = {"mm", "none", "clamp", "easy", NULL};
  static const char *const negs[] = {"none", "affine", "quadratic", "circle", NULL};
  static const char *const hards[] = {"all", "arc", "cos", "row", NULL};
  static const char *const grads[] = {"exact", "detached", NULL};
  static const char *const nonfin[] = {"error", "warn", NULL};
  if (lua_type(L, idx) != LUA_TTABLE)
    luaL_error(L, "%s: spec (argument #%d) must be a table, got %s", name, idx, luaL_typename(L, idx));
  fvl_checkopts(L, idx, name, keys);
  fvl_margin_spec *sp = &o->sp;
  *sp = fvl_margin_spec_default();
  o->s_row = opt_number_or_tensor(L, idx, name, "s", &sp->s, 1.0);
  sp->target = (fvl_target_kind)fvl_optenum(L, idx, name, "target", targets, FVL_TK_NONE);
  o->m_row = opt_number_or_tensor(L, idx, name, "m", &sp->m, 0.0);
  sp->m1 = opt_number(L, idx, name, "m1", 1.0);
  sp->m2 = opt_number(L, idx, name, "m2", 0.0);
  sp->m3 = opt_number(L, idx, name, "m3", 0.0);
  int fb = fvl_optenum(L, idx, name, "fallback", fallbacks, 0);
  sp->easy_margin = opt_boolean(L, idx, name, "easy_margin", 0) || fb == 3;
  sp->fallback = fb == 3 ? FVL_FB_MM : (fvl_fallback)fb;
  sp->detached = fvl_optenum(L, idx, name, "grad", grads, 0) == 1;
  float smv = opt_number(L, idx, name, "sphere_m", 4);
  if (smv != (float)(int)smv) luaL_error(L, "%s: sphere_m = %f (expected an integer)", name, (double)smv);
  sp->sphere_m = (int)smv;
  sp->sphere_lambda = opt_number(L, idx, name, "lambda", 0.0);
  sp->neg = (fvl_neg_kind)fvl_optenum(L, idx, name, "negative", negs, FVL_NK_NONE);
  sp->hard = (fvl_hard_kind)fvl_optenum(L, idx, name, "hard", hards, FVL_HARD_ALL);
  sp->hard_m = opt_number(L, idx, name, "hard_m", sp->m);
  sp->a = opt_number(L, idx, name, "a", 1.0);
  sp->b = opt_number(L, idx, name, "b", 0.0);
  sp->t = opt_number(L, idx, name, "t", 0.0);
  sp->circle_m = opt_number(L, idx, name, "circle_m", 0.25);
  o->warn = fvl_optenum(L, idx, name, "nonfinite", nonfin, 0) == 1;
  sp->clamp_eps = opt_number(L, idx, name, "clamp", 0.0);
  /* target "given": the B target values T_i (tracked) travel in the m_row channel */
  int has_value = lua_getfield(L, idx, "value") != LUA_TNIL;
  fvl_tensor *value = has_value ? fvl_totensor(L, -1) : NULL;
  lua_pop(L, 1);
  if (sp->target == FVL_TK_GIVEN) {
    if (!value) luaL_error(L, "%s: target 'given' needs value = a tensor of the B target values", name);
    if (o->m_row) luaL_error(L, "%s: target 'given' takes its values from 'value', not 'm'", name);
    o->m_row = value;
  } else if (has_value) {
    luaL_error(L, "%s: 'value' is only used with target = 'given'", name);
  }
  /* hard "row": constant per-row thresholds; a contiguous float32 copy, kept on the stack */
  o->thr = NULL;
  int has_thr = lua_getfield(L, idx, "threshold") != LUA_TNIL;
  fvl_tensor *thr = has_thr ? fvl_totensor(L, -1) : NULL;
  lua_pop(L, 1);
  if (sp->hard == FVL_HARD_ROW) {
    if (!thr || thr->dtype != FVL_F32)
      luaL_error(L, "%s: hard = 'row' needs threshold = a float32 tensor with one value per row", name);
    fvl_tensor *c = fvl_contiguous(thr);
    fvl_pushtensor(L, c);   /* GC-owned: stays on the stack while the kernel runs */
    o->thr = c;
    sp->thr_row = fvl_f32(c);
  } else if (has_thr) {
    luaL_error(L, "%s: 'threshold' is only used with hard = 'row'", name);
  }
  o->gws = NULL;
  if (lua_getfield(L, idx, "gws") != LUA_TNIL) {
    o->gws = fvl_totensor(L, -1);
    if (!o->gws) luaL_error(L, "%s: gws must be a B×C tensor, got %s", name, luaL_typename(L, -1));
  }
  lua_pop(L, 1);
}

/* the per-row thresholds have one value per row */
static void check_thr(lua_State *L, const char *name, const spec_args *o, int64_t B) {
  if (o->thr && fvl_numel(o->thr) != B) {
    char b[64];
    fvl_error(L, "%s: threshold is %s (expected one value per row: %lld entries)", name,
              fvl_shape_str(o->thr, b, sizeof b), (long long)B);
  }
}

static fvl_tensor *cos_arg(lua_State *L, const char *name) {
  fvl_tensor *cos = T(1);
  if (cos->ndim != 2) {
    char b[64];
    luaL_error(L, "%s: cos is %s (expected a B×C cosine matrix)", name, fvl_shape_str(cos, b, sizeof b));
  }
  return cos;
}

/* F.linear_logits(x, W [, b [, ws]]) -> B×C logits x·Wᵀ + b (tracked) */
static int l_linear_logits(lua_State *L) {
  fvl_tensor *x = T(1), *W = T(2), *b = fvl_opttensor(L, 3), *ws = fvl_opttensor(L, 4);
  fvl_pushtensor(L, fvl_linear_logits(x, W, b, ws));
  return 1;
}

/* F.margin_ce(cos, labels, spec [, name]) -> scalar loss (tracked) */
static int l_margin_ce(lua_State *L) {
  const char *name = luaL_optstring(L, 4, "margin_ce");
  fvl_tensor *cos = cos_arg(L, name);
  spec_args o;
  parse_spec(L, 3, name, &o);
  fvl_tensor *y = labels_arg(L, 2, name, cos->size[0], cos->size[1]);
  check_thr(L, name, &o, cos->size[0]);
  int bad = 0;
  fvl_tensor *loss = fvl_margin_ce_ex(cos, y, &o.sp, o.s_row, o.m_row, o.gws, name, o.warn, &bad);
  if (!loss) return fvl_raise(L);
  if (bad) fprintf(stderr, "%s: warning: loss is not finite (first bad row %d)\n", name, bad);
  fvl_pushtensor(L, loss);
  return 1;
}

/* F.margin_logits(cos, labels, spec [, name]) -> B×C logits the CE sees (untracked, for inspection) */
static int l_margin_logits(lua_State *L) {
  const char *name = luaL_optstring(L, 4, "margin_logits");
  fvl_tensor *cos = cos_arg(L, name);
  spec_args o;
  parse_spec(L, 3, name, &o);
  fvl_tensor *y = labels_arg(L, 2, name, cos->size[0], cos->size[1]);
  check_thr(L, name, &o, cos->size[0]);
  fvl_pushtensor(L, fvl_margin_logits_t(cos, y, &o.sp, o.s_row, o.m_row, name));
  return 1;
}

/* F.hard_mean(cos, labels, {hard=, hard_m=, values="raw"|"affine", a=, b=}) -> h (B), count (B) */
static int l_hard_mean(lua_State *L) {
  static const char *const keys[] = {"hard", "hard_m", "values", "a", "b", NULL};
  static const char *const hards[] = {"all", "arc", "cos", NULL};
  static const char *const vals[] = {"raw", "affine", NULL};
  const char *fn = "hard_mean";
  fvl_tensor *cos = T(1);
  if (cos->ndim != 2) return luaL_error(L, "%s: cos must be a B×C cosine matrix", fn);
  fvl_checkopts(L, 3, fn, keys);
  lua_settop(L, 3);
  if (lua_isnil(L, 3)) { lua_newtable(L); lua_replace(L, 3); }
  fvl_tensor *y = labels_arg(L, 2, fn, cos->size[0], cos->size[1]);
  int hard = fvl_optenum(L, 3, fn, "hard", hards, FVL_HARD_ARC);
  float hm = opt_number(L, 3, fn, "hard_m", 0.5);
  int affine = fvl_optenum(L, 3, fn, "values", vals, 0);
  float a = opt_number(L, 3, fn, "a", 1.0), b = opt_number(L, 3, fn, "b", 0.0);
  fvl_tensor *count = NULL;
  fvl_tensor *h = fvl_hard_mean(cos, y, (fvl_hard_kind)hard, hm, affine, a, b, &count);
  fvl_pushtensor(L, h);
  fvl_pushtensor(L, count);
  return 2;
}

/* F.target_cos(cos, labels) -> B tensor c_i (tracked) */
static int l_target_cos(lua_State *L) {
  fvl_tensor *cos = T(1);
  if (cos->ndim != 2) return luaL_error(L, "target_cos: cos must be a B×C cosine matrix");
  fvl_tensor *y = labels_arg(L, 2, "target_cos", cos->size[0], cos->size[1]);
  fvl_pushtensor(L, fvl_target_cos(cos, y));
  return 1;
}

/* F.neg_lse(cos, labels, s) -> B tensor log Σ_{j≠y_i} exp(s·c_ij) (untracked) */
static int l_neg_lse(lua_State *L) {
  fvl_tensor *cos = T(1);
  if (cos->ndim != 2) return luaL_error(L, "neg_lse: cos must be a B×C cosine matrix");
  double s = luaL_checknumber(L, 3);
  fvl_tensor *y = labels_arg(L, 2, "neg_lse", cos->size[0], cos->size[1]);
  fvl_pushtensor(L, fvl_neg_lse(cos, y, (float)s));
  return 1;
}

/* F.group_max(cos, K [, ws [, gws]]) -> B×C max over each group of K columns (tracked) */
static int l_group_max(lua_State *L) {
  fvl_tensor *cos = T(1);
  lua_Integer K = luaL_checkinteger(L, 2);
  fvl_tensor *ws = fvl_opttensor(L, 3), *gws = fvl_opttensor(L, 4);
  if (cos->ndim != 2) return luaL_error(L, "group_max: cos must be a B×(C·K) matrix");
  if (K < 1 || K > cos->size[1])
    return fvl_error(L, "group_max: K = %lld (expected 1..%lld)", (long long)K, (long long)cos->size[1]);
  fvl_pushtensor(L, fvl_group_max(cos, (int64_t)K, ws, gws));
  return 1;
}

/* F.gather_rows(W, labels) -> B×D rows W[labels] (tracked, sparse backward into W.grad) */
static int l_gather_rows(lua_State *L) {
  fvl_tensor *W = T(1);
  if (W->ndim != 2) return luaL_error(L, "gather_rows: W must be a C×D tensor");
  fvl_tensor *y = labels_arg(L, 2, "gather_rows", -1, W->size[0]);
  fvl_pushtensor(L, fvl_gather_rows(W, y));
  return 1;
}

/* F.circle_pairwise(S, labels, m, gamma) -> scalar loss (tracked in S) */
static int l_circle_pairwise(lua_State *L) {
  fvl_tensor *S = T(1);
  if (S->ndim != 2) return luaL_error(L, "circle_pairwise: S must be a B×B similarity matrix");
  float m = (float)luaL_checknumber(L, 3), gamma = (float)luaL_checknumber(L, 4);
  fvl_tensor *y = labels_arg(L, 2, "circle_pairwise", S->size[0], 0);
  fvl_pushtensor(L, fvl_circle_pairwise(S, y, m, gamma));
  return 1;
}

/* F.center_dist(x, centers, labels) -> ½ Σ_i |x_i − centers[y_i]|² (scalar, tracked in x) */
static int l_center_dist(lua_State *L) {
  fvl_tensor *x = T(1), *cen = T(2);
  if (cen->ndim != 2) return luaL_error(L, "center_dist: centers must be a C×D tensor");
  if (x->ndim != 2) return luaL_error(L, "center_dist: x must be a B×D tensor");
  fvl_tensor *y = labels_arg(L, 3, "center_dist", x->size[0], cen->size[0]);
  fvl_pushtensor(L, fvl_center_dist(x, cen, y));
  return 1;
}

/* F.disc_dist(x, W, labels, xi) -> mean_i |x̂_i − ŵ_{y_i} − ξ_i| (scalar, tracked in x, W, xi) */
static int l_disc_dist(lua_State *L) {
  fvl_tensor *x = T(1), *W = T(2), *xi = T(4);
  if (x->ndim != 2) return luaL_error(L, "disc_dist: x must be a B×D tensor");
  if (W->ndim != 2) return luaL_error(L, "disc_dist: W must be a C×D tensor");
  fvl_tensor *y = labels_arg(L, 3, "disc_dist", x->size[0], W->size[0]);
  fvl_pushtensor(L, fvl_disc_dist(x, W, y, xi));
  return 1;
}

/* F.center_update(centers, x, labels, alpha) -- in place, not tracked; returns centers */
static int l_center_update(lua_State *L) {
  fvl_tensor *cen = T(1), *x = T(2);
  float alpha = (float)luaL_checknumber(L, 4);
  if (cen->ndim != 2) return luaL_error(L, "center_update: centers must be a C×D tensor");
  if (x->ndim != 2) return luaL_error(L, "center_update: x must be a B×D tensor");
  fvl_tensor *y = labels_arg(L, 3, "center_update", x->size[0], cen->size[0]);
  if (fvl_center_update_(cen, x, y, alpha) < 0) return fvl_raise(L);
  lua_pushvalue(L, 1);
  return 1;
}

/* ---------------------------------------------------------------- slices of the classes
 * (sharded heads, Partial FC; engine/loss/shard.h). `cols` is an int32 tensor with each row's
 * target column in this rank's slice, 1-based, or 0 when another rank holds the target. */
static fvl_tensor *slice_cols_arg(lua_State *L, int idx, const char *fn, int64_t n, int64_t ncols) {
  fvl_tensor *t = fvl_totensor(L, idx);
  char b[64];
  if (!t || t->dtype != FVL_I32 || fvl_numel(t) != n)
    luaL_error(L, "%s: cols (argument #%d) must be an int32 tensor of %I slice columns (0 = another rank), got %s",
               fn, idx, (lua_Integer)n, t ? fvl_shape_str(t, b, sizeof b) : luaL_typename(L, idx));
  fvl_tensor *d = fvl_detach(t);
  fvl_tensor *c = d ? fvl_contiguous(d) : NULL;
  fvl_release(d);
  fvl_tensor *o = c ? fvl_empty(FVL_I32, 1, (int64_t[]){n}) : NULL;
  if (!o) { fvl_release(c); fvl_raise(L); }
  for (int64_t i = 0; i < n; i++) {
    int32_t v = fvl_i32(c)[i];
    if (v < 0 || v > ncols) {
      fvl_release(c);
      fvl_release(o);
      fvl_error(L, "%s: cols[%lld] = %d is outside 0..%lld (slice column, 0 = another rank)", fn,
                (long long)i + 1, (int)v, (long long)ncols);
    }
    fvl_i32(o)[i] = v - 1;
  }
  fvl_release(c);
  fvl_pushtensor(L, o);
  return o;
}

/* F.margin_ce_shard(cos, cols, spec [, name]) -> scalar loss over the ranks (tracked) */
static int l_margin_ce_shard(lua_State *L) {
  const char *name = luaL_optstring(L, 4, "margin_ce");
  fvl_tensor *cos = cos_arg(L, name);
  spec_args o;
  parse_spec(L, 3, name, &o);
  fvl_tensor *y = slice_cols_arg(L, 2, name, cos->size[0], cos->size[1]);
  int bad = 0;
  fvl_tensor *loss = fvl_margin_ce_shard(cos, y, &o.sp, o.s_row, o.m_row, o.gws, name, o.warn, &bad);
  if (!loss) return fvl_raise(L);
  if (bad) fprintf(stderr, "%s: warning: loss is not finite (first bad row %d)\n", name, bad);
  fvl_pushtensor(L, loss);
  return 1;
}

/* F.target_cos_shard(cos, cols) -> B target cosines from whichever rank holds them (tracked) */
static int l_target_cos_shard(lua_State *L) {
  fvl_tensor *cos = cos_arg(L, "target_cos");
  fvl_tensor *y = slice_cols_arg(L, 2, "target_cos", cos->size[0], cos->size[1]);
  fvl_pushtensor(L, fvl_target_cos_shard(cos, y));
  return 1;
}

/* F.hard_mean_shard(cos, cols, {hard=, hard_m=, values=, a=, b=}) -> B (tracked) */
static int l_hard_mean_shard(lua_State *L) {
  static const char *const keys[] = {"hard", "hard_m", "values", "a", "b", NULL};
  static const char *const hards[] = {"all", "arc", "cos", NULL};
  static const char *const vals[] = {"raw", "affine", NULL};
  fvl_tensor *cos = cos_arg(L, "hard_mean");
  fvl_tensor *y = slice_cols_arg(L, 2, "hard_mean", cos->size[0], cos->size[1]);
  luaL_checktype(L, 3, LUA_TTABLE);
  fvl_checkopts(L, 3, "hard_mean", keys);
  int hard = fvl_optenum(L, 3, "hard_mean", "hard", hards, FVL_HARD_ARC);
  float hm = opt_number(L, 3, "hard_mean", "hard_m", 0.5);
  int affine = fvl_optenum(L, 3, "hard_mean", "values", vals, 0);
  float a = opt_number(L, 3, "hard_mean", "a", 1.0), b = opt_number(L, 3, "hard_mean", "b", 0.0);
  fvl_pushtensor(L, fvl_hard_mean_shard(cos, y, (fvl_hard_kind)hard, hm, affine, a, b));
  return 1;
}

/* F.copy_rows(dst, rows, src) -- dst[rows[k]] = src[k] in place (rows 1-based), returns dst */
static int l_copy_rows(lua_State *L) {
  fvl_tensor *dst = T(1), *src = T(3);
  fvl_tensor *rows = fvl_checkindex(L, 2, "copy_rows", "rows", dst->ndim >= 1 ? dst->size[0] : 0);
  int rc = fvl_copy_rows_(dst, rows, src);
  fvl_release(rows);
  if (rc) return fvl_raise(L);
  lua_settop(L, 1);
  return 1;
}

/* F.pfc_sample(pos_mask, num, seed, counter) -> sorted 1-based rows (int32) */
static int l_pfc_sample(lua_State *L) {
  fvl_tensor *pos = T(1);
  lua_Integer num = luaL_checkinteger(L, 2), seed = luaL_checkinteger(L, 3), ctr = luaL_checkinteger(L, 4);
  if (num < 0) fvl_error(L, "pfc_sample: num = %lld (expected >= 0)", (long long)num);
  fvl_tensor *r = fvl_pfc_sample(pos, num, (uint64_t)seed, (uint64_t)ctr);
  if (!r) return fvl_raise(L);
  int32_t *p = fvl_i32(r);
  for (int64_t k = 0; k < r->size[0]; k++) p[k] += 1;
  fvl_pushtensor(L, r);
  return 1;
}

int fvl_open_loss(lua_State *L) {
  static const luaL_Reg fns[] = {
    {"cosine", l_cosine}, {"linear_logits", l_linear_logits}, {"margin_ce", l_margin_ce}, {"margin_logits", l_margin_logits}, {"hard_mean", l_hard_mean},
    {"target_cos", l_target_cos}, {"neg_lse", l_neg_lse}, {"group_max", l_group_max}, {"gather_rows", l_gather_rows}, {"circle_pairwise", l_circle_pairwise},
    {"center_dist", l_center_dist}, {"disc_dist", l_disc_dist}, {"center_update", l_center_update},
    {"margin_ce_shard", l_margin_ce_shard}, {"target_cos_shard", l_target_cos_shard},
    {"hard_mean_shard", l_hard_mean_shard}, {"copy_rows", l_copy_rows}, {"pfc_sample", l_pfc_sample},
    {NULL, NULL}};
  luaL_getsubtable(L, -1, "F");   /* shared with the nn binding */
  luaL_setfuncs(L, fns, 0);
  lua_pop(L, 1);
  return 0;
}
