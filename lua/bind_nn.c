/* bind_nn.c — layer kernels and optimiser steps as fvl.F.* (torch.nn.functional style).
 * fvl.nn / fvl.optim (Lua) build modules and optimisers on top of these. Thin: check, call, wrap. */
#include <string.h>
#include "bind.h"
#include "nn/nn.h"

#define T(i) fvl_checktensor(L, i)

/* a size argument: number n → n×n, table {h, w}; nil → def */
static void pair_arg(lua_State *L, int idx, const char *fn, const char *what, int def, int minv, int *h,
                     int *w) {
  if (lua_isnoneornil(L, idx)) { *h = *w = def; return; }
  if (lua_type(L, idx) == LUA_TTABLE) {
    lua_geti(L, idx, 1);
    lua_geti(L, idx, 2);
    int ok1, ok2;
    lua_Integer a = lua_tointegerx(L, -2, &ok1), b = lua_tointegerx(L, -1, &ok2);
    lua_pop(L, 2);
    if (!ok1 || !ok2 || luaL_len(L, idx) != 2)
      luaL_error(L, "%s: %s must be an integer or a table {h, w} of integers", fn, what);
    if (a < minv || b < minv || a > 65535 || b > 65535)
      luaL_error(L, "%s: %s = {%d, %d} (expected %d..65535)", fn, what, (int)a, (int)b, minv);
    *h = (int)a;
    *w = (int)b;
    return;
  }
  int ok;
  lua_Integer a = lua_tointegerx(L, idx, &ok);
  if (!ok) luaL_error(L, "%s: %s must be an integer or a table {h, w}, got %s", fn, what, luaL_typename(L, idx));
  if (a < minv || a > 65535) luaL_error(L, "%s: %s = %d (expected %d..65535)", fn, what, (int)a, minv);
  *h = *w = (int)a;
}

/* F.conv2d_direct([on]) -> whether the direct AVX2 kernels were enabled; sets it when given.
 * They still run only where they apply (stride 1, a CPU with AVX2 + FMA). For benchmarks and
 * for comparing the two paths. */
static int l_conv2d_direct(lua_State *L) {
  int old;
  if (lua_isnoneornil(L, 1)) {
    old = fvl_conv2d_set_direct(1);
    fvl_conv2d_set_direct(old);
  } else {
    luaL_checktype(L, 1, LUA_TBOOLEAN);
    old = fvl_conv2d_set_direct(lua_toboolean(L, 1));
  }
  lua_pushboolean(L, old);
  return 1;
}

/* F.conv2d(x, w [, bias [, stride [, padding]]]) */
static int l_conv2d(lua_State *L) {
  fvl_tensor *x = T(1), *w = T(2), *b = fvl_opttensor(L, 3);
  int sh, sw, ph, pw;
  pair_arg(L, 4, "conv2d", "stride", 1, 1, &sh, &sw);
  pair_arg(L, 5, "conv2d", "padding", 0, 0, &ph, &pw);
  fvl_pushtensor(L, fvl_nn_conv2d(x, w, b, sh, sw, ph, pw));
  return 1;
}

/* F.max_pool2d(x, kernel [, stride = kernel [, padding = 0]]), F.avg_pool2d likewise */
static int pool(lua_State *L, int is_max) {
  const char *fn = is_max ? "max_pool2d" : "avg_pool2d";
  fvl_tensor *x = T(1);
  int kh, kw, sh, sw, ph, pw;
  if (lua_isnoneornil(L, 2)) return luaL_error(L, "%s: kernel size (argument #2) is required", fn);
  pair_arg(L, 2, fn, "kernel", 1, 1, &kh, &kw);
  if (lua_isnoneornil(L, 3)) { sh = kh; sw = kw; }
  else pair_arg(L, 3, fn, "stride", 1, 1, &sh, &sw);
  pair_arg(L, 4, fn, "padding", 0, 0, &ph, &pw);
  fvl_pushtensor(L, is_max ? fvl_nn_maxpool2d(x, kh, kw, sh, sw, ph, pw)
                           : fvl_nn_avgpool2d(x, kh, kw, sh, sw, ph, pw));
  return 1;
}
static int l_max_pool2d(lua_State *L) { return pool(L, 1); }
static int l_avg_pool2d(lua_State *L) { return pool(L, 0); }

/* F.batch_norm(x, running_mean, running_var [, weight [, bias [, training [, momentum [, eps]]]]]) */
static int l_batch_norm(lua_State *L) {
  fvl_tensor *x = T(1), *rm = fvl_opttensor(L, 2), *rv = fvl_opttensor(L, 3);
  fvl_tensor *g = fvl_opttensor(L, 4), *b = fvl_opttensor(L, 5);
  int training = lua_isnoneornil(L, 6) ? 1 : lua_toboolean(L, 6);
  double momentum = luaL_optnumber(L, 7, 0.1), eps = luaL_optnumber(L, 8, 1e-5);
  if ((rm == NULL) != (rv == NULL))
    return luaL_error(L, "batch_norm: give both running_mean and running_var, or neither");
  fvl_pushtensor(L, fvl_nn_batchnorm(x, g, b, rm, rv, training, momentum, eps));
  return 1;
}

static int l_prelu(lua_State *L) {
  fvl_pushtensor(L, fvl_nn_prelu(T(1), T(2)));
  return 1;
}

/* F.dropout(x [, p = 0.5 [, training = true]]) */
static int l_dropout(lua_State *L) {
  fvl_tensor *x = T(1);
  double p = luaL_optnumber(L, 2, 0.5);
  int training = lua_isnoneornil(L, 3) ? 1 : lua_toboolean(L, 3);
  fvl_pushtensor(L, fvl_nn_dropout(x, p, training));
  return 1;
}

static int l_linear(lua_State *L) {
  fvl_pushtensor(L, fvl_nn_linear(T(1), T(2), fvl_opttensor(L, 3)));
  return 1;
}

/* ------------------------------------------------------------------ optimiser kernels */
static fvl_tensor *state_arg(lua_State *L, int idx, const char *fn, const char *what, fvl_tensor *p) {
  fvl_tensor *t = T(idx);
  char a[64], b[64];
  if (t->dtype != FVL_F32 || !fvl_is_contiguous(t))
    luaL_error(L, "%s: %s must be a contiguous float32 tensor", fn, what);
  if (p && !fvl_same_shape(t, p))
    luaL_error(L, "%s: %s is %s but the parameter is %s", fn, what, fvl_shape_str(t, a, sizeof a),
               fvl_shape_str(p, b, sizeof b));
  return t;
}

/* F.sgd_step(p, g, buf|nil, {lr=, momentum=0, dampening=0, weight_decay=0, nesterov=false,
 *                            first=false}) — in place on p (and buf) */
static int l_sgd_step(lua_State *L) {
  static const char *const opts[] = {"lr", "momentum", "dampening", "weight_decay", "nesterov", "first", NULL};
  fvl_tensor *p = state_arg(L, 1, "sgd_step", "parameter", NULL);
  fvl_tensor *g = state_arg(L, 2, "sgd_step", "gradient", p);
  fvl_tensor *buf = lua_isnoneornil(L, 3) ? NULL : state_arg(L, 3, "sgd_step", "momentum buffer", p);
  luaL_checktype(L, 4, LUA_TTABLE);
  fvl_checkopts(L, 4, "sgd_step", opts);
  double lr = fvl_optnum(L, 4, "lr", -1), mom = fvl_optnum(L, 4, "momentum", 0);
  if (lr < 0) return luaL_error(L, "sgd_step: lr must be given and >= 0");
  if (mom > 0 && !buf) return luaL_error(L, "sgd_step: momentum %g needs a buffer (argument #3)", mom);
  fvl_sgd_step(fvl_f32(p), fvl_f32(g), buf ? fvl_f32(buf) : NULL, (size_t)fvl_numel(p), lr, mom,
               fvl_optnum(L, 4, "dampening", 0), fvl_optnum(L, 4, "weight_decay", 0),
               fvl_optbool(L, 4, "nesterov", 0), fvl_optbool(L, 4, "first", 0));
  return 0;
}

/* F.adamw_step(p, g, m, v, {lr=, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01, step=}) */
static int l_adamw_step(lua_State *L) {
  static const char *const opts[] = {"lr", "beta1", "beta2", "eps", "weight_decay", "step", NULL};
  fvl_tensor *p = state_arg(L, 1, "adamw_step", "parameter", NULL);
  fvl_tensor *g = state_arg(L, 2, "adamw_step", "gradient", p);
  fvl_tensor *m = state_arg(L, 3, "adamw_step", "first moment", p);
  fvl_tensor *v = state_arg(L, 4, "adamw_step", "second moment", p);
  luaL_checktype(L, 5, LUA_TTABLE);
  fvl_checkopts(L, 5, "adamw_step", opts);
  double lr = fvl_optnum(L, 5, "lr", -1);
  int step = fvl_optint(L, 5, "step", 0);
  if (lr < 0) return luaL_error(L, "adamw_step: lr must be given and >= 0");
  if (step < 1) return luaL_error(L, "adamw_step: step must be >= 1 (1 for the first step), got %d", step);
  fvl_adamw_step(fvl_f32(p), fvl_f32(g), fvl_f32(m), fvl_f32(v), (size_t)fvl_numel(p), lr,
                 fvl_optnum(L, 5, "beta1", 0.9), fvl_optnum(L, 5, "beta2", 0.999), fvl_optnum(L, 5, "eps", 1e-8),
                 fvl_optnum(L, 5, "weight_decay", 0.01), step);
  return 0;
}

/* F.sumsq(t) → Σ t² (double accumulation) */
static int l_sumsq(lua_State *L) {
  fvl_tensor *t = T(1);
  if (t->dtype != FVL_F32) return luaL_error(L, "sumsq: expected a float32 tensor");
  fvl_tensor *c = fvl_contiguous(t);
  if (!c) return fvl_raise(L);
  lua_pushnumber(L, fvl_sumsq(fvl_f32(c), (size_t)fvl_numel(c)));
  fvl_release(c);
  return 1;
}

/* F.scale_(t, s): t *= s in place */
static int l_scale_(lua_State *L) {
  fvl_tensor *t = state_arg(L, 1, "scale_", "tensor", NULL);
  fvl_scale_inplace(fvl_f32(t), (size_t)fvl_numel(t), (float)luaL_checknumber(L, 2));
  lua_settop(L, 1);
  return 1;
}

/* fvl.save_checkpoint / fvl.load_checkpoint: forwarders to the Lua module fvl.checkpoint, so
 * that the names exist on the fvl table itself (API.md) without touching init.lua */
static int forward_to(lua_State *L, const char *field) {
  int n = lua_gettop(L);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "fvl.checkpoint");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, field);
  lua_remove(L, -2);
  lua_insert(L, 1);
  lua_call(L, n, LUA_MULTRET);
  return lua_gettop(L);
}
static int l_save_checkpoint(lua_State *L) { return forward_to(L, "save_checkpoint"); }
static int l_load_checkpoint(lua_State *L) { return forward_to(L, "load_checkpoint"); }

int fvl_open_nn(lua_State *L) {
  static const luaL_Reg fns[] = {
    {"conv2d", l_conv2d}, {"conv2d_direct", l_conv2d_direct}, {"max_pool2d", l_max_pool2d}, {"avg_pool2d", l_avg_pool2d},
    {"batch_norm", l_batch_norm}, {"prelu", l_prelu}, {"dropout", l_dropout}, {"linear", l_linear},
    {"sgd_step", l_sgd_step}, {"adamw_step", l_adamw_step}, {"sumsq", l_sumsq}, {"scale_", l_scale_},
    {NULL, NULL}};
  lua_pushcfunction(L, l_save_checkpoint);
  lua_setfield(L, -2, "save_checkpoint");
  lua_pushcfunction(L, l_load_checkpoint);
  lua_setfield(L, -2, "load_checkpoint");
  luaL_getsubtable(L, -1, "F");   /* shared with the loss binding */
  luaL_setfuncs(L, fns, 0);
  lua_pop(L, 1);
  return 0;
}
