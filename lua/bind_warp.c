/* bind_warp.c — thin binding of engine/data/warp.h: affine warp, resize, the similarity
 * estimate and the ArcFace template. The public functions (fvl.data.align_face, warp_image,
 * resize_image, similarity_transform, face_template) are lua/fvl/align.lua; these take their
 * name as the last argument and check every size and value once, here. Coordinates here are the
 * engine's (0-based pixel centres); the Lua layer converts 1-based ones. */
#include <math.h>
#include "bind.h"
#include "data/warp.h"

/* an output size: an integer 1..65535 */
static int64_t check_side(lua_State *L, int idx, const char *fn, const char *what) {
  if (!lua_isinteger(L, idx))
    return fvl_error(L, "%s: %s must be an integer number of pixels, got %s", fn, what,
                     lua_type(L, idx) == LUA_TNUMBER ? "a fraction" : luaL_typename(L, idx));
  lua_Integer v = lua_tointeger(L, idx);
  if (v < 1 || v > 65535) return fvl_error(L, "%s: %s = %lld is outside 1..65535", fn, what, (long long)v);
  return (int64_t)v;
}

/* an image argument: float32 H×W, C×H×W or N×C×H×W with 1..65535 rows and columns */
static fvl_tensor *check_image(lua_State *L, int idx, const char *fn) {
  fvl_tensor *t = fvl_totensor(L, idx);
  if (!t) return (fvl_error(L, "%s: image must be a tensor (C×H×W), got %s", fn, luaL_typename(L, idx)), NULL);
  fvl_checkfloat(L, t, fn, "image");
  char sb[64];
  if (t->ndim < 2 || t->ndim > 4)
    fvl_error(L, "%s: image must be H×W, C×H×W or N×C×H×W, got %s", fn, fvl_shape_str(t, sb, sizeof sb));
  int64_t h = t->size[t->ndim - 2], w = t->size[t->ndim - 1];
  if (h < 1 || w < 1 || h > 65535 || w > 65535)
    fvl_error(L, "%s: image is %s (expected 1..65535 rows and columns)", fn, fvl_shape_str(t, sb, sizeof sb));
  return t;
}

/* the 6 numbers of a 2×3 matrix from a Lua list (copied) */
static void check_matrix(lua_State *L, int idx, const char *fn, double M[6]) {
  luaL_checktype(L, idx, LUA_TTABLE);
  for (int k = 0; k < 6; k++) {
    int ok;
    lua_rawgeti(L, idx, k + 1);
    M[k] = lua_tonumberx(L, -1, &ok);
    lua_pop(L, 1);
    if (!ok || !isfinite(M[k]))
      fvl_error(L, "%s: matrix entry %d (row %d, column %d) is not a finite number", fn, k + 1, k / 3 + 1, k % 3 + 1);
  }
}

/* fvl._warp(image, {6 numbers, 0-based}, out_h, out_w, border ("constant"|"replicate"), value, fn) -> tensor */
static int l_warp(lua_State *L) {
  const char *fn = luaL_optstring(L, 7, "warp_image");
  fvl_tensor *img = check_image(L, 1, fn);
  double M[6];
  check_matrix(L, 2, fn, M);
  int64_t oh = check_side(L, 3, fn, "height"), ow = check_side(L, 4, fn, "width");
  static const char *const modes[] = {"constant", "replicate", NULL};
  int border = luaL_checkoption(L, 5, "constant", modes);
  double v = luaL_optnumber(L, 6, 0);
  if (!isfinite(v)) return fvl_error(L, "%s: value = %g is not a finite number", fn, v);
  double inv[6];
  if (fvl_affine_invert(M, inv))
    return fvl_error(L, "%s: the matrix [%g %g %g; %g %g %g] has no inverse (a warp needs an "
                     "invertible map)", fn, M[0], M[1], M[2], M[3], M[4], M[5]);
  fvl_pushtensor(L, fvl_warp_tensor(img, oh, ow, M, border ? FVL_BORDER_REPLICATE : FVL_BORDER_CONSTANT, (float)v));
  fvl_gc_charge(L);
  return 1;
}

/* fvl._resize(image, out_h, out_w, fn) -> tensor */
static int l_resize(lua_State *L) {
  const char *fn = luaL_optstring(L, 4, "resize_image");
  fvl_tensor *img = check_image(L, 1, fn);
  int64_t oh = check_side(L, 2, fn, "height"), ow = check_side(L, 3, fn, "width");
  fvl_pushtensor(L, fvl_resize_tensor(img, oh, ow));
  fvl_gc_charge(L);
  return 1;
}

/* fvl._similarity(src n×2, dst n×2, fn, src_name, dst_name) -> 6 numbers (0-based or 1-based:
 * a similarity between shifted points is the shifted similarity, no convention needed) */
static int l_similarity(lua_State *L) {
  const char *fn = luaL_optstring(L, 3, "similarity_transform");
  const char *an = luaL_optstring(L, 4, "src"), *bn = luaL_optstring(L, 5, "dst");
  fvl_tensor *a = fvl_checkf32(L, 1, fn, an, 2), *b = fvl_checkf32(L, 2, fn, bn, 2);
  char sa[64], sb[64];
  if (a->size[1] != 2 || b->size[1] != 2 || a->size[0] != b->size[0] || a->size[0] < 2 || a->size[0] > 65536)
    return fvl_error(L, "%s: %s is %s and %s is %s (expected the same number of points, 2..65536, "
                     "each a row x, y: n×2)", fn, an, fvl_shape_str(a, sa, sizeof sa), bn,
                     fvl_shape_str(b, sb, sizeof sb));
  fvl_checkfinite(L, a, fn, an);
  fvl_checkfinite(L, b, fn, bn);
  int64_t n = a->size[0];
  double *p = lua_newuserdatauv(L, (size_t)n * 4 * sizeof *p, 0);
  for (int64_t i = 0; i < 2 * n; i++) { p[i] = fvl_f32(a)[i]; p[2 * n + i] = fvl_f32(b)[i]; }
  double M[6];
  if (fvl_similarity_estimate(p, p + 2 * n, n, M))
    return fvl_error(L, "%s: the %lld points of %s all lie at one place: no transform is defined", fn,
                     (long long)n, an);
  lua_createtable(L, 6, 0);
  for (int k = 0; k < 6; k++) {
    lua_pushnumber(L, M[k]);
    lua_rawseti(L, -2, k + 1);
  }
  return 1;
}

/* fvl._face_template(size, fn) -> {10 numbers, 0-based x1, y1, ..., x5, y5} */
static int l_face_template(lua_State *L) {
  const char *fn = luaL_optstring(L, 2, "face_template");
  int64_t s = check_side(L, 1, fn, "size");
  double t[10];
  if (fvl_face_template(s, t)) return fvl_raise(L);
  lua_createtable(L, 10, 0);
  for (int k = 0; k < 10; k++) {
    lua_pushnumber(L, t[k]);
    lua_rawseti(L, -2, k + 1);
  }
  return 1;
}

int fvl_open_warp(lua_State *L) {
  static const luaL_Reg fns[] = {{"_warp", l_warp}, {"_resize", l_resize}, {"_similarity", l_similarity},
                                 {"_face_template", l_face_template}, {NULL, NULL}};
  luaL_setfuncs(L, fns, 0);
  return 0;
}
