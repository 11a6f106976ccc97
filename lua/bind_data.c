/* bind_data.c — thin binding of engine/data: IDX files, synthetic_faces, loader batches, and
 * the terminal check used by fvl.progress. The Lua API (option names, defaults, messages) is
 * lua/fvl/data.lua; these functions take already-checked positional arguments. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "bind.h"
#include "data/data.h"

/* fvl._idx_load(path, "float32"|"int32", scale, shift) -> tensor | nil, message, kind
 * kind is "missing" when the file cannot be opened, "corrupt" otherwise */
static int l_idx_load(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  static const char *const dts[] = {"float32", "int32", NULL};
  int dt = luaL_checkoption(L, 2, "float32", dts);
  double scale = luaL_optnumber(L, 3, 1), shift = luaL_optnumber(L, 4, 0);
  fvl_tensor *t = fvl_idx_load(path, dt ? FVL_I32 : FVL_F32, scale, shift);
  if (!t) {
    lua_pushnil(L);
    lua_pushstring(L, fvl_errmsg());
    lua_pushstring(L, fvl_idx_last_was_open_error() ? "missing" : "corrupt");
    return 3;
  }
  fvl_pushtensor(L, t);
  return 1;
}

static int64_t intfield(lua_State *L, int idx, const char *k, int64_t def) {
  int t = lua_getfield(L, idx, k);
  int64_t v = def;
  if (t == LUA_TNUMBER) {
    int isint = 0;
    v = (int64_t)lua_tointegerx(L, -1, &isint);
    if (!isint) luaL_error(L, "synthetic_faces: %s = %s (expected an integer)", k, lua_tostring(L, -1));
  } else if (t != LUA_TNIL) {
    luaL_error(L, "synthetic_faces: %s must be a number, got %s", k, luaL_typename(L, -1));
  }
  lua_pop(L, 1);
  return v;
}
static float numfield(lua_State *L, int idx, const char *k, float def) {
  int t = lua_getfield(L, idx, k);
  float v = def;
  if (t == LUA_TNUMBER) v = (float)lua_tonumber(L, -1);
  else if (t != LUA_TNIL)
    luaL_error(L, "synthetic_faces: %s must be a number, got %s", k, luaL_typename(L, -1));
  lua_pop(L, 1);
  return v;
}

static const char *fmt6(char *buf, float v) {
  snprintf(buf, 32, "%.6g", (double)v);
  return buf;
}

/* fvl._synthetic_faces{identities=, per_identity=, test_identities=, test_per_identity=, dim=,
 *   factors=, hidden=, out_dim=, h=, w=, spread=, nuisance=, illumination=, noise=, long_tail=,
 *   label_noise=, seed=} -> xtr, ytr, ytrue, xte, yte (labels 1-based), settings used */
static int l_synthetic_faces(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  fvl_synth_opts o;
  fvl_synth_defaults(&o);
  o.identities = intfield(L, 1, "identities", o.identities);
  o.per_identity = intfield(L, 1, "per_identity", o.per_identity);
  o.test_identities = intfield(L, 1, "test_identities", o.test_identities);
  o.test_per_identity = intfield(L, 1, "test_per_identity", o.per_identity);
  o.dim = (int)intfield(L, 1, "dim", o.dim);
  o.factors = (int)intfield(L, 1, "factors", o.factors);
  o.hidden = (int)intfield(L, 1, "hidden", o.hidden);
  o.map_h = (int)intfield(L, 1, "h", 0);
  o.map_w = (int)intfield(L, 1, "w", 0);
  o.out_dim = (int)intfield(L, 1, "out_dim", o.map_h > 0 ? (int64_t)o.map_h * o.map_w : o.out_dim);
  o.spread = numfield(L, 1, "spread", o.spread);
  o.nuisance = numfield(L, 1, "nuisance", o.nuisance);
  o.illumination = numfield(L, 1, "illumination", o.illumination);
  o.noise = numfield(L, 1, "noise", o.noise);
  o.long_tail = numfield(L, 1, "long_tail", o.long_tail);
  o.label_noise = numfield(L, 1, "label_noise", o.label_noise);
  o.seed = (uint64_t)intfield(L, 1, "seed", (int64_t)o.seed);
  fvl_tensor *t[5];
  const int rgb = (int)intfield(L, 1, "rgb", 0);   /* > 0: RGB face images of rgb×rgb pixels */
  if (rgb > 0 ? fvl_synth_faces_rgb_tensors(&o, rgb, 1, &t[0], &t[1], &t[2], &t[3], &t[4])
              : fvl_synth_faces(&o, 1, &t[0], &t[1], &t[2], &t[3], &t[4]))
    return fvl_raise(L);
  for (int i = 0; i < 5; i++) fvl_pushtensor(L, t[i]);
  /* the settings used, defaults included (floats to 6 digits: they are float32 inside) */
  lua_createtable(L, 0, 17);
#define SETI(k, v) (lua_pushinteger(L, (lua_Integer)(v)), lua_setfield(L, -2, k))
#define SETF(k, v) (lua_pushnumber(L, (double)strtod(fmt6(buf, (v)), NULL)), lua_setfield(L, -2, k))
  char buf[32];
  SETI("identities", o.identities); SETI("per_identity", o.per_identity);
  SETI("test_identities", o.test_identities);
  SETI("test_per_identity", o.test_identities ? o.test_per_identity : 0);
  SETI("dim", o.dim); SETI("factors", o.factors); SETI("hidden", o.hidden);
  SETI("out_dim", o.out_dim); SETI("seed", (int64_t)o.seed);
  SETF("spread", o.spread); SETF("nuisance", o.nuisance); SETF("illumination", o.illumination);
  SETF("noise", o.noise); SETF("long_tail", o.long_tail); SETF("label_noise", o.label_noise);
#undef SETI
#undef SETF
  return 6;
}

/* fvl._loader_perm(n, seed, epoch) -> 0-based int32 permutation */
static int l_loader_perm(lua_State *L) {
  int64_t n = luaL_checkinteger(L, 1);
  uint64_t seed = (uint64_t)luaL_checkinteger(L, 2);
  int64_t epoch = luaL_checkinteger(L, 3);
  fvl_pushtensor(L, fvl_loader_perm(n, seed, epoch));
  return 1;
}

/* fvl._loader_batch(x, y|nil, perm|nil, start0, B, flip, pad, seed, epoch) -> xb, yb|nil, index */
static int l_loader_batch(lua_State *L) {
  fvl_tensor *x = fvl_checktensor(L, 1);
  fvl_tensor *y = fvl_opttensor(L, 2);
  fvl_tensor *perm = fvl_opttensor(L, 3);
  int64_t start = luaL_checkinteger(L, 4), B = luaL_checkinteger(L, 5);
  int flip = lua_toboolean(L, 6);
  int pad = (int)luaL_checkinteger(L, 7);
  uint64_t seed = (uint64_t)luaL_checkinteger(L, 8);
  int64_t epoch = luaL_checkinteger(L, 9);
  fvl_tensor *xb, *yb, *index;
  if (fvl_loader_batch(x, y, perm, start, B, flip, pad, seed, epoch, &xb, &yb, &index))
    return fvl_raise(L);
  fvl_pushtensor(L, xb);
  if (yb) fvl_pushtensor(L, yb); else lua_pushnil(L);
  fvl_pushtensor(L, index);
  return 3;
}

/* fvl._walltime() -> Unix time in seconds with a fraction (for metrics logs) */
static int l_walltime(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  lua_pushnumber(L, (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec);
  return 1;
}

/* fvl._isatty(fd) -> boolean */
static int l_isatty(lua_State *L) {
  lua_pushboolean(L, isatty((int)luaL_checkinteger(L, 1)) == 1);
  return 1;
}

int fvl_open_data(lua_State *L) {
  static const luaL_Reg fns[] = {{"_idx_load", l_idx_load},       {"_synthetic_faces", l_synthetic_faces},
                                 {"_loader_perm", l_loader_perm}, {"_loader_batch", l_loader_batch},
                                 {"_isatty", l_isatty},           {"_walltime", l_walltime},
                                 {NULL, NULL}};
  luaL_setfuncs(L, fns, 0);
  return 0;
}
