/* bind_backbone.c — the backbone kernels as fvl.F.* (engine/nn/backbone.h): grouped and
 * depthwise convolutions, BatchNorm fused with PReLU. Thin: check, call, wrap. */
#include "bind.h"
#include "nn/backbone.h"

/* a stride/padding argument: integer n → n×n or {h, w}; nil → def */
static void hw_arg(lua_State *L, int idx, const char *fn, const char *what, int def, int minv, int *h, int *w) {
  if (lua_isnoneornil(L, idx)) { *h = *w = def; return; }
  lua_Integer v[2];
  if (lua_type(L, idx) == LUA_TTABLE) {
    if (luaL_len(L, idx) != 2) luaL_error(L, "%s: %s must be an integer or a table {h, w}", fn, what);
    for (int k = 0; k < 2; k++) {
      int ok;
      lua_geti(L, idx, k + 1);
      v[k] = lua_tointegerx(L, -1, &ok);
      lua_pop(L, 1);
      if (!ok) luaL_error(L, "%s: %s[%d] must be an integer", fn, what, k + 1);
    }
  } else {
    int ok;
    v[0] = v[1] = lua_tointegerx(L, idx, &ok);
    if (!ok) luaL_error(L, "%s: %s must be an integer or a table {h, w}, got %s", fn, what, luaL_typename(L, idx));
  }
  for (int k = 0; k < 2; k++)
    if (v[k] < minv || v[k] > 65535)
      luaL_error(L, "%s: %s = %I (expected %d..65535)", fn, what, (lua_Integer)v[k], minv);   /* never truncated */
  *h = (int)v[0];
  *w = (int)v[1];
}

/* arguments 4..6: stride, padding, groups (stride and padding as hw_arg; groups >= 1) */
static int conv_args(lua_State *L, const char *fn, int *sh, int *sw, int *ph, int *pw) {
  hw_arg(L, 4, fn, "stride", 1, 1, sh, sw);
  hw_arg(L, 5, fn, "padding", 0, 0, ph, pw);
  lua_Integer groups = luaL_optinteger(L, 6, 1);
  if (groups < 1 || groups > INT32_MAX) return fvl_error(L, "%s: groups = %lld (expected >= 1)", fn, (long long)groups);
  return (int)groups;
}

/*** fvl.F.conv2d_grouped(x, w [, bias [, stride [, padding [, groups]]]]) -> tensor
   Grouped 2-D convolution (MobileFaceNet's depthwise layers): w is Cout × Cin/groups × kh × kw,
   groups (1) divides both channel counts; stride (1) and padding (0) an integer or {h, w}.
   Tracked. Errors: groups < 1 or not dividing the channels; shapes. */
static int l_conv2d_grouped(lua_State *L) {
  fvl_tensor *x = fvl_checktensor(L, 1), *w = fvl_checktensor(L, 2), *b = fvl_opttensor(L, 3);
  int sh, sw, ph, pw, groups = conv_args(L, "conv2d", &sh, &sw, &ph, &pw);
  fvl_checkfloats(L, "conv2d_grouped", "input", x, "weight", w, "bias", b, NULL);
  fvl_pushtensor(L, fvl_nn_conv2d_grouped(x, w, b, sh, sw, ph, pw, groups));
  return 1;
}

/*** fvl.F.bn_prelu(x, running_mean, running_var, weight, bias, prelu_weight [, training [, momentum [, eps]]]) -> tensor
   fvl.F.batch_norm followed by fvl.F.prelu in one pass over x (the backbones' conv blocks);
   arguments and defaults as those two (training true, momentum 0.1, eps 1e-5). Tracked. */
static int l_bn_prelu(lua_State *L) {
  fvl_tensor *x = fvl_checktensor(L, 1), *rm = fvl_opttensor(L, 2), *rv = fvl_opttensor(L, 3);
  fvl_tensor *g = fvl_opttensor(L, 4), *b = fvl_opttensor(L, 5), *a = fvl_checktensor(L, 6);
  int training = lua_isnoneornil(L, 7) ? 1 : lua_toboolean(L, 7);
  double momentum, eps;
  fvl_optbn(L, "bn_prelu", 8, &momentum, 9, &eps);
  fvl_checkfloats(L, "bn_prelu", "input", x, "running_mean", rm, "running_var", rv, "weight", g, "bias", b,
                  "prelu_weight", a, NULL);
  fvl_pushtensor(L, fvl_nn_bn_prelu(x, g, b, a, rm, rv, training, momentum, eps));
  return 1;
}

/* Arguments 7-12 of conv2d_bn_act and conv2d_bn_act_train: running mean and variance, BatchNorm
 * weight and bias, eps, PReLU weight (tensors stay on the Lua stack, anchored, during the call). */
typedef struct { fvl_tensor *rm, *rv, *g, *bb, *a; double eps; } bn_act_args;
static bn_act_args read_bn_act(lua_State *L, const char *fn) {
  bn_act_args r;   /* one by one: an error names the first bad argument, in order */
  r.rm = fvl_opttensor(L, 7);
  r.rv = fvl_opttensor(L, 8);
  r.g = fvl_opttensor(L, 9);
  r.bb = fvl_opttensor(L, 10);
  fvl_optbn(L, fn, 0, NULL, 11, &r.eps);
  r.a = fvl_opttensor(L, 12);
  fvl_checkfloats(L, fn, "running_mean", r.rm, "running_var", r.rv, "bn_weight", r.g, "bn_bias", r.bb,
                  "prelu_weight", r.a, NULL);
  return r;
}

/*** fvl.F.conv2d_bn_act(x, w, bias, stride, padding, groups, running_mean, running_var, bn_weight, bn_bias, eps, prelu_weight) -> tensor
   Inference only: the convolution with an evaluation-mode BatchNorm (running statistics; nil =
   none) and/or a PReLU (nil = none) applied as each output is stored, instead of two more
   passes over y. Not tracked: refused while gradients are enabled for an input that requires
   them (training uses fvl.F.conv2d + fvl.F.bn_prelu). Errors: as conv2d; vectors that are not
   one value per output channel. */
static int l_conv2d_bn_act(lua_State *L) {
  fvl_tensor *x = fvl_checktensor(L, 1), *w = fvl_checktensor(L, 2), *b = fvl_opttensor(L, 3);
  int sh, sw, ph, pw, groups = conv_args(L, "conv2d_bn_act", &sh, &sw, &ph, &pw);
  fvl_checkfloats(L, "conv2d_bn_act", "input", x, "weight", w, "bias", b, NULL);
  bn_act_args ba = read_bn_act(L, "conv2d_bn_act");
  const fvl_tensor *ins[6] = {x, w, b, ba.g, ba.bb, ba.a};   /* the engine keeps the same check */
  for (int i = 0; i < 6 && fvl_grad_enabled(); i++)
    if (ins[i] && ins[i]->requires_grad)
      return fvl_error(L, "conv2d_bn_act: inference only (no autograd node): call it inside fvl.no_grad or on "
                       "tensors that do not require gradients; training uses fvl.F.conv2d_bn_act_train (or "
                       "fvl.F.conv2d + fvl.F.bn_prelu)");
  fvl_pushtensor(L, fvl_nn_conv2d_bn_act(x, w, b, sh, sw, ph, pw, groups, ba.rm, ba.rv, ba.g, ba.bb, ba.eps, ba.a));
  return 1;
}

/*** fvl.F.conv2d_bn_act_train(x, w, bias, stride, padding, groups, running_mean, running_var, bn_weight, bn_bias, eps, prelu_weight [, momentum]) -> tensor
   Training: the convolution, then BatchNorm with the batch's statistics (the running statistics,
   when given, updated with momentum (0.1) as BatchNorm does), then PReLU (prelu_weight nil =
   none), as one tracked op with the same values and gradients, bit for bit, as fvl.F.conv2d (or
   conv2d_grouped) followed by fvl.F.bn_prelu (or batch_norm). Depthwise convolutions run it per
   channel while the channel's planes are in cache (no separate statistics pass, and no B×C×H×W
   gradient between the BatchNorm and the convolution in the backward). Errors: as conv2d;
   vectors that are not one value per output channel or not contiguous; a batch with one value
   per channel. */
static int l_conv2d_bn_act_train(lua_State *L) {
  fvl_tensor *x = fvl_checktensor(L, 1), *w = fvl_checktensor(L, 2), *b = fvl_opttensor(L, 3);
  int sh, sw, ph, pw, groups = conv_args(L, "conv2d_bn_act_train", &sh, &sw, &ph, &pw);
  fvl_checkfloats(L, "conv2d_bn_act_train", "input", x, "weight", w, "bias", b, NULL);
  bn_act_args ba = read_bn_act(L, "conv2d_bn_act_train");
  double momentum;
  fvl_optbn(L, "conv2d_bn_act_train", 13, &momentum, 0, NULL);
  fvl_pushtensor(L, fvl_nn_conv2d_bn_act_train(x, w, b, sh, sw, ph, pw, groups, ba.rm, ba.rv, ba.g, ba.bb, ba.a, momentum, ba.eps));
  return 1;
}

/* fvl._bench.fma_peak([seconds = 0.2]) -> one thread's measured FMA peak in GFLOP/s */
static int l_fma_peak(lua_State *L) {
  double sec = luaL_optnumber(L, 1, 0.2);
  if (!(sec > 0 && sec <= 10)) return fvl_error(L, "fma_peak: seconds = %g (expected 0 < seconds <= 10)", sec);
  lua_pushnumber(L, fvl_fma_peak_gflops(sec));
  return 1;
}

/* fvl._bench.fma_peak_all([seconds = 0.3]) -> the machine's FMA peak in GFLOP/s (all threads,
   AVX-512 or AVX2 chosen at run time), and the name of the instruction set measured */
static int l_fma_peak_all(lua_State *L) {
  double sec = luaL_optnumber(L, 1, 0.3);
  if (!(sec > 0 && sec <= 10)) return fvl_error(L, "fma_peak_all: seconds = %g (expected 0 < seconds <= 10)", sec);
  const char *isa = NULL;
  lua_pushnumber(L, fvl_fma_peak_all_gflops(sec, &isa));
  lua_pushstring(L, isa);
  return 2;
}

int fvl_open_backbone(lua_State *L) {
  static const luaL_Reg fns[] = {{"conv2d_grouped", l_conv2d_grouped}, {"bn_prelu", l_bn_prelu},
                                 {"conv2d_bn_act", l_conv2d_bn_act}, {"conv2d_bn_act_train", l_conv2d_bn_act_train},
                                 {NULL, NULL}};
  luaL_getsubtable(L, -1, "F");
  luaL_setfuncs(L, fns, 0);
  lua_pop(L, 1);
  luaL_getsubtable(L, -1, "_bench");
  lua_pushcfunction(L, l_fma_peak);
  lua_setfield(L, -2, "fma_peak");
  lua_pushcfunction(L, l_fma_peak_all);
  lua_setfield(L, -2, "fma_peak_all");
  lua_pop(L, 1);
  return 0;
}
