/* bind_optim.c — optimiser kernels as fvl.F.* (sgd_step, adamw_step, sumsq, scale_);
 * fvl.optim (Lua) builds the optimisers on top of these. Thin: check, call, wrap. */
#include <math.h>
#include <stdint.h>
#include "bind.h"
#include "nn/nn.h"

#define T(i) fvl_checktensor(L, i)

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

/*** fvl.F.sgd_step(p, g, buf, opts) -> nothing
   One SGD step in place on the parameter p (and its momentum buffer buf, or nil) from the
   gradient g, PyTorch's rule: opts lr (required, >= 0), momentum (0), dampening (0), weight_decay
   (0), nesterov (false), first (true on the first step: the buffer starts as the gradient).
   fvl.optim.sgd calls it per parameter. Errors: lr missing; momentum > 0 without buf; shapes. */
enum { SGD_LR, SGD_MOM, SGD_DAMP, SGD_WD, SGD_NESTEROV, SGD_FIRST, SGD_N };
static const fvl_optdef SGD_OPTS[SGD_N + 1] = {
  [SGD_LR] = {"lr", FVL_OPT_NUMBER, -1, 0, HUGE_VAL, NULL},
  [SGD_MOM] = {"momentum", FVL_OPT_NUMBER, 0, FVL_NORANGE, NULL},
  [SGD_DAMP] = {"dampening", FVL_OPT_NUMBER, 0, FVL_NORANGE, NULL},
  [SGD_WD] = {"weight_decay", FVL_OPT_NUMBER, 0, FVL_NORANGE, NULL},
  [SGD_NESTEROV] = {"nesterov", FVL_OPT_BOOLEAN, 0, FVL_NORANGE, NULL},
  [SGD_FIRST] = {"first", FVL_OPT_BOOLEAN, 0, FVL_NORANGE, NULL},
  [SGD_N] = FVL_OPT_END};
static int l_sgd_step(lua_State *L) {
  fvl_tensor *p = state_arg(L, 1, "sgd_step", "parameter", NULL);
  fvl_tensor *g = state_arg(L, 2, "sgd_step", "gradient", p);
  fvl_tensor *buf = lua_isnoneornil(L, 3) ? NULL : state_arg(L, 3, "sgd_step", "momentum buffer", p);
  luaL_checktype(L, 4, LUA_TTABLE);
  fvl_optval v[SGD_N];
  fvl_readopts(L, 4, "sgd_step", SGD_OPTS, v);
  double lr = v[SGD_LR].num, mom = v[SGD_MOM].num;
  if (!v[SGD_LR].set) return fvl_error(L, "sgd_step: lr must be given and >= 0");
  if (mom > 0 && !buf) return fvl_error(L, "sgd_step: momentum %g needs a buffer (argument #3)", mom);
  fvl_sgd_step(fvl_f32(p), fvl_f32(g), buf ? fvl_f32(buf) : NULL, (size_t)fvl_numel(p), lr, mom,
               v[SGD_DAMP].num, v[SGD_WD].num, (int)v[SGD_NESTEROV].num, (int)v[SGD_FIRST].num);
  return 0;
}

/*** fvl.F.adamw_step(p, g, m, v, opts) -> nothing
   One AdamW step in place on p and its moments m, v (decoupled weight decay, bias correction as
   PyTorch): opts lr (required), beta1 (0.9), beta2 (0.999), eps (1e-8), weight_decay (0.01), step
   (required, 1 for the first). Errors: lr or step missing; shapes that differ from p's. */
enum { AW_LR, AW_B1, AW_B2, AW_EPS, AW_WD, AW_STEP, AW_N };
static const fvl_optdef ADAMW_OPTS[AW_N + 1] = {
  [AW_LR] = {"lr", FVL_OPT_NUMBER, -1, 0, HUGE_VAL, NULL},
  [AW_B1] = {"beta1", FVL_OPT_NUMBER, 0.9, FVL_NORANGE, NULL},
  [AW_B2] = {"beta2", FVL_OPT_NUMBER, 0.999, FVL_NORANGE, NULL},
  [AW_EPS] = {"eps", FVL_OPT_NUMBER, 1e-8, FVL_NORANGE, NULL},
  [AW_WD] = {"weight_decay", FVL_OPT_NUMBER, 0.01, FVL_NORANGE, NULL},
  [AW_STEP] = {"step", FVL_OPT_INTEGER, 0, 1, INT32_MAX, NULL},
  [AW_N] = FVL_OPT_END};
static int l_adamw_step(lua_State *L) {
  fvl_tensor *p = state_arg(L, 1, "adamw_step", "parameter", NULL);
  fvl_tensor *g = state_arg(L, 2, "adamw_step", "gradient", p);
  fvl_tensor *m = state_arg(L, 3, "adamw_step", "first moment", p);
  fvl_tensor *v = state_arg(L, 4, "adamw_step", "second moment", p);
  luaL_checktype(L, 5, LUA_TTABLE);
  fvl_optval o[AW_N];
  fvl_readopts(L, 5, "adamw_step", ADAMW_OPTS, o);
  if (!o[AW_LR].set) return fvl_error(L, "adamw_step: lr must be given and >= 0");
  if (!o[AW_STEP].set) return fvl_error(L, "adamw_step: step must be >= 1 (1 for the first step), got none");
  fvl_adamw_step(fvl_f32(p), fvl_f32(g), fvl_f32(m), fvl_f32(v), (size_t)fvl_numel(p), o[AW_LR].num,
                 o[AW_B1].num, o[AW_B2].num, o[AW_EPS].num, o[AW_WD].num, (int)o[AW_STEP].num);
  return 0;
}

/*** fvl.F.sumsq(t) -> number
   Σ t² over a float32 tensor, accumulated in double (gradient-norm clipping). */
static int l_sumsq(lua_State *L) {
  fvl_tensor *t = T(1);
  if (t->dtype != FVL_F32) return luaL_error(L, "sumsq: expected a float32 tensor");
  fvl_tensor *c = fvl_contiguous(t);
  if (!c) return fvl_raise(L);
  lua_pushnumber(L, fvl_sumsq(fvl_f32(c), (size_t)fvl_numel(c)));
  fvl_release(c);
  return 1;
}

/*** fvl.F.scale_(t, s) -> t
   t *= s in place (not tracked). */
static int l_scale_(lua_State *L) {
  fvl_tensor *t = state_arg(L, 1, "scale_", "tensor", NULL);
  fvl_scale_inplace(fvl_f32(t), (size_t)fvl_numel(t), (float)luaL_checknumber(L, 2));
  lua_settop(L, 1);
  return 1;
}

int fvl_open_optim(lua_State *L) {
  static const luaL_Reg fns[] = {
    {"sgd_step", l_sgd_step}, {"adamw_step", l_adamw_step}, {"sumsq", l_sumsq}, {"scale_", l_scale_},
    {NULL, NULL}};
  fvl_register_opts(L, -1, "sgd_step", SGD_OPTS);
  fvl_register_opts(L, -1, "adamw_step", ADAMW_OPTS);
  luaL_getsubtable(L, -1, "F");   /* shared with the loss and layer bindings */
  luaL_setfuncs(L, fns, 0);
  lua_pop(L, 1);
  return 0;
}
