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

/* the raw options of fvl._synthetic_faces (fvl.data.synthetic_faces in lua/fvl/data.lua maps the
 * public ones onto these); the engine (fvl_synth_sizes) checks how they combine */
enum { SF_IDENTITIES, SF_PER_IDENTITY, SF_TEST_IDENTITIES, SF_TEST_PER_IDENTITY, SF_DIM, SF_FACTORS,
       SF_HIDDEN, SF_H, SF_W, SF_OUT_DIM, SF_SPREAD, SF_NUISANCE, SF_ILLUMINATION, SF_NOISE,
       SF_LONG_TAIL, SF_LABEL_NOISE, SF_SEED, SF_RGB, SF_N };
#define SF_COUNT(k) {k, FVL_OPT_INTEGER, 0, 0, 1099511627776.0, NULL}   /* 0..2^40 */
#define SF_INT(k) {k, FVL_OPT_INTEGER, 0, 0, INT32_MAX, NULL}
#define SF_NUM(k) {k, FVL_OPT_NUMBER, 0, 0, 1e30, NULL}
static const fvl_optdef SF_OPTS[] = {
  [SF_IDENTITIES] = SF_COUNT("identities"), [SF_PER_IDENTITY] = SF_COUNT("per_identity"),
  [SF_TEST_IDENTITIES] = SF_COUNT("test_identities"), [SF_TEST_PER_IDENTITY] = SF_COUNT("test_per_identity"),
  [SF_DIM] = SF_INT("dim"), [SF_FACTORS] = SF_INT("factors"), [SF_HIDDEN] = SF_INT("hidden"),
  [SF_H] = SF_INT("h"), [SF_W] = SF_INT("w"), [SF_OUT_DIM] = SF_INT("out_dim"),
  [SF_SPREAD] = SF_NUM("spread"), [SF_NUISANCE] = SF_NUM("nuisance"),
  [SF_ILLUMINATION] = SF_NUM("illumination"), [SF_NOISE] = SF_NUM("noise"),
  [SF_LONG_TAIL] = SF_NUM("long_tail"), [SF_LABEL_NOISE] = SF_NUM("label_noise"),
  [SF_SEED] = {"seed", FVL_OPT_ANY, 0, FVL_NORANGE, NULL},   /* any Lua integer, exact (not via double) */
  [SF_RGB] = {"rgb", FVL_OPT_INTEGER, 0, 0, 4096, NULL},      /* > 0: RGB images of rgb×rgb pixels */
  [SF_N] = FVL_OPT_END};
#undef SF_COUNT
#undef SF_INT
#undef SF_NUM

static const char *fmt6(char *buf, float v) {
  snprintf(buf, 32, "%.6g", (double)v);
  return buf;
}

/* fvl._synthetic_faces{identities=, per_identity=, test_identities=, test_per_identity=, dim=,
 *   factors=, hidden=, out_dim=, h=, w=, spread=, nuisance=, illumination=, noise=, long_tail=,
 *   label_noise=, seed=} -> xtr, ytr, ytrue, xte, yte (labels 1-based), settings used */
static int l_synthetic_faces(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  fvl_optval v[SF_N];
  int anchor = fvl_readopts(L, 1, "synthetic_faces", SF_OPTS, v);
  fvl_synth_opts o;
  fvl_synth_defaults(&o);
#define SET(field, k, type) if (v[k].set) o.field = (type)v[k].num
  SET(identities, SF_IDENTITIES, int64_t);
  SET(per_identity, SF_PER_IDENTITY, int64_t);
  SET(test_identities, SF_TEST_IDENTITIES, int64_t);
  o.test_per_identity = v[SF_TEST_PER_IDENTITY].set ? (int64_t)v[SF_TEST_PER_IDENTITY].num : o.per_identity;
  SET(dim, SF_DIM, int);
  SET(factors, SF_FACTORS, int);
  SET(hidden, SF_HIDDEN, int);
  o.map_h = (int)v[SF_H].num;
  o.map_w = (int)v[SF_W].num;
  if (v[SF_OUT_DIM].set) o.out_dim = (int)v[SF_OUT_DIM].num;
  else if (o.map_h > 0) o.out_dim = fvl_checkint32(L, "synthetic_faces", "h*w", (lua_Integer)o.map_h * o.map_w, 1, INT32_MAX);
  SET(spread, SF_SPREAD, float);
  SET(nuisance, SF_NUISANCE, float);
  SET(illumination, SF_ILLUMINATION, float);
  SET(noise, SF_NOISE, float);
  SET(long_tail, SF_LONG_TAIL, float);
  SET(label_noise, SF_LABEL_NOISE, float);
#undef SET
  if (fvl_optpush(L, anchor, &v[SF_SEED]) != LUA_TNIL) {
    int isint = 0;
    lua_Integer seed = lua_tointegerx(L, -1, &isint);
    if (!isint) return fvl_error(L, "synthetic_faces: seed must be an integer, got %s", luaL_tolstring(L, -1, NULL));
    o.seed = (uint64_t)seed;
  }
  lua_pop(L, 1);
  const int rgb = (int)v[SF_RGB].num;
  fvl_tensor *t[5];
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
  int pad = fvl_checkint32(L, "loader", "crop", luaL_checkinteger(L, 7), INT32_MIN, INT32_MAX);
  uint64_t seed = (uint64_t)luaL_checkinteger(L, 8);
  int64_t epoch = luaL_checkinteger(L, 9);
  int64_t n = x->ndim >= 1 ? x->size[0] : 0;   /* a 0-D x: the engine names it */
  if (x->ndim >= 1) {   /* start is 0-based: the user's rows are start+1.. (saturated at maxinteger) */
    int64_t first;
    if (fvl_add_overflow(start, 1, &first)) first = INT64_MAX;
    fvl_checkrows(L, "loader", "batch rows", first, B, n, NULL);
  }
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
  lua_pushboolean(L, isatty(fvl_checkint32(L, "isatty", "fd", luaL_checkinteger(L, 1), 0, INT32_MAX)) == 1);
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
