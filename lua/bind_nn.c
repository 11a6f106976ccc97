/* bind_nn.c — layer kernels as fvl.F.* (torch.nn.functional style); the optimiser steps are
 * lua/bind_optim.c, the checkpoint forwarders lua/bind_checkpoint.c.
 * fvl.nn (Lua) builds modules on top of these. Thin: check, call, wrap. */
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
      luaL_error(L, "%s: %s = {%I, %I} (expected %d..65535)", fn, what, (lua_Integer)a, (lua_Integer)b, minv);
    *h = (int)a;
    *w = (int)b;
    return;
  }
  int ok;
  lua_Integer a = lua_tointegerx(L, idx, &ok);
  if (!ok) luaL_error(L, "%s: %s must be an integer or a table {h, w}, got %s", fn, what, luaL_typename(L, idx));
  if (a < minv || a > 65535) luaL_error(L, "%s: %s = %I (expected %d..65535)", fn, what, (lua_Integer)a, minv);
  *h = *w = (int)a;
}

/*** fvl.F.conv2d_direct([on]) -> boolean
   Whether the direct convolution kernels are enabled (the previous setting when on, a boolean, is
   given). They run only where they apply (a CPU with AVX2 + FMA; stride 1, or any stride with a
   multiple of 16 output channels and at least 64 taps); off, every convolution takes the im2col +
   sgemm path. For benchmarks and for comparing the two paths. */
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

/*** fvl.F.conv2d_avx512([on]) -> boolean
   Whether the direct convolution kernels use their AVX-512 versions (the previous setting when
   on, a boolean, is given). They do where the CPU has AVX-512F, unless turned off; off (or on a
   CPU without it) the AVX2 versions run. Both give the same bits; for benchmarks and tests. */
static int l_conv2d_avx512(lua_State *L) {
  int old = fvl_conv2d_avx512();
  if (!lua_isnoneornil(L, 1)) {
    luaL_checktype(L, 1, LUA_TBOOLEAN);
    fvl_conv2d_set_avx512(lua_toboolean(L, 1));
  }
  lua_pushboolean(L, old);
  return 1;
}

/*** fvl.F.conv2d(x, w [, bias [, stride [, padding]]]) -> tensor
   2-D convolution of x (N×Cin×H×W) with w (Cout×Cin×kh×kw) and an optional bias (Cout); stride
   (1) and padding (0) are an integer or {h, w}. Tracked in x, w and bias.
   Errors: shapes that do not match; stride < 1 or a size above 65535. */
static int l_conv2d(lua_State *L) {
  fvl_tensor *x = T(1), *w = T(2), *b = fvl_opttensor(L, 3);
  int sh, sw, ph, pw;
  pair_arg(L, 4, "conv2d", "stride", 1, 1, &sh, &sw);
  pair_arg(L, 5, "conv2d", "padding", 0, 0, &ph, &pw);
  fvl_checkfloats(L, "conv2d", "input", x, "weight", w, "bias", b, NULL);
  fvl_pushtensor(L, fvl_nn_conv2d(x, w, b, sh, sw, ph, pw));
  return 1;
}

/*** fvl.F.max_pool2d(x, kernel [, stride [, padding]]) -> tensor
   fvl.F.avg_pool2d(x, kernel [, stride [, padding]]) -> tensor
   Max / average pooling of x (N×C×H×W); kernel, stride (default the kernel) and padding (0) are
   an integer or {h, w}. Tracked. Errors: no kernel; sizes out of range. */
static int pool(lua_State *L, int is_max) {
  const char *fn = is_max ? "max_pool2d" : "avg_pool2d";
  fvl_tensor *x = T(1);
  int kh, kw, sh, sw, ph, pw;
  if (lua_isnoneornil(L, 2)) return luaL_error(L, "%s: kernel size (argument #2) is required", fn);
  pair_arg(L, 2, fn, "kernel", 1, 1, &kh, &kw);
  if (lua_isnoneornil(L, 3)) { sh = kh; sw = kw; }
  else pair_arg(L, 3, fn, "stride", 1, 1, &sh, &sw);
  pair_arg(L, 4, fn, "padding", 0, 0, &ph, &pw);
  fvl_checkfloat(L, x, fn, "input");
  fvl_pushtensor(L, is_max ? fvl_nn_maxpool2d(x, kh, kw, sh, sw, ph, pw)
                           : fvl_nn_avgpool2d(x, kh, kw, sh, sw, ph, pw));
  return 1;
}
static int l_max_pool2d(lua_State *L) { return pool(L, 1); }
static int l_avg_pool2d(lua_State *L) { return pool(L, 0); }

/*** fvl.F.batch_norm(x, running_mean, running_var [, weight [, bias [, training [, momentum [, eps]]]]]) -> tensor
   Batch normalisation of x (N×C or N×C×H×W) per channel: with training (default true) the batch's
   statistics are used and the running ones (if given) updated with momentum (0.1, PyTorch's
   convention); otherwise the running statistics. weight/bias: the affine C vectors (optional);
   eps 1e-5. Tracked in x, weight and bias. Errors: only one of running_mean/running_var given. */
static int l_batch_norm(lua_State *L) {
  fvl_tensor *x = T(1), *rm = fvl_opttensor(L, 2), *rv = fvl_opttensor(L, 3);
  fvl_tensor *g = fvl_opttensor(L, 4), *b = fvl_opttensor(L, 5);
  int training = lua_isnoneornil(L, 6) ? 1 : lua_toboolean(L, 6);
  double momentum, eps;
  fvl_optbn(L, "batch_norm", 7, &momentum, 8, &eps);
  if ((rm == NULL) != (rv == NULL))
    return luaL_error(L, "batch_norm: give both running_mean and running_var, or neither");
  fvl_checkfloats(L, "batch_norm", "input", x, "running_mean", rm, "running_var", rv, "weight", g, "bias", b, NULL);
  fvl_pushtensor(L, fvl_nn_batchnorm(x, g, b, rm, rv, training, momentum, eps));
  return 1;
}

/*** fvl.F.prelu(x, weight) -> tensor
   PReLU: x where x > 0, weight·x elsewhere, weight one value or one per channel (dim 2 of x).
   Tracked in x and weight. */
static int l_prelu(lua_State *L) {
  fvl_tensor *x = T(1), *a = T(2);
  fvl_checkfloats(L, "prelu", "input", x, "weight", a, NULL);
  fvl_pushtensor(L, fvl_nn_prelu(x, a));
  return 1;
}

/*** fvl.F.dropout(x [, p [, training]]) -> tensor
   Inverted dropout: zeroes each element with probability p (0.5) and scales the rest by 1/(1−p),
   drawn from the global generator; the identity when training is false. Tracked. */
static int l_dropout(lua_State *L) {
  fvl_tensor *x = T(1);
  double p = luaL_optnumber(L, 2, 0.5);
  int training = lua_isnoneornil(L, 3) ? 1 : lua_toboolean(L, 3);
  fvl_checkfloat(L, x, "dropout", "input");
  fvl_pushtensor(L, fvl_nn_dropout(x, p, training));
  return 1;
}

/*** fvl.F.linear(x, weight [, bias]) -> tensor
   x·weightᵀ (+ bias): x N×in, weight out×in, bias out. Tracked. */
static int l_linear(lua_State *L) {
  fvl_tensor *x = T(1), *w = T(2), *b = fvl_opttensor(L, 3);
  fvl_checkfloats(L, "linear", "input", x, "weight", w, "bias", b, NULL);
  fvl_pushtensor(L, fvl_nn_linear(x, w, b));
  return 1;
}

int fvl_open_nn(lua_State *L) {
  static const luaL_Reg fns[] = {
    {"conv2d", l_conv2d}, {"conv2d_direct", l_conv2d_direct}, {"conv2d_avx512", l_conv2d_avx512}, {"max_pool2d", l_max_pool2d}, {"avg_pool2d", l_avg_pool2d},
    {"batch_norm", l_batch_norm}, {"prelu", l_prelu}, {"dropout", l_dropout}, {"linear", l_linear},
    {NULL, NULL}};
  luaL_getsubtable(L, -1, "F");   /* shared with the loss binding */
  luaL_setfuncs(L, fns, 0);
  lua_pop(L, 1);
  return 0;
}
