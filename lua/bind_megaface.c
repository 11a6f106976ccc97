/* bind_megaface.c — raw bindings of engine/megaface.c, registered as fvl._megaface. The public
 * functions are fvl.eval.save_megaface_feature / load_megaface_feature / export_megaface /
 * megaface (lua/fvl/megaface.lua); every argument is checked here once. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "bind.h"
#include "megaface.h"
#include "sys.h"

/* _megaface.save(path, vec) */
static int l_save(lua_State *L) {
  const char *fn = "save_megaface_feature";
  const char *path = luaL_checkstring(L, 1);
  fvl_tensor *v = fvl_checkf32(L, 2, fn, "vec", 1);
  fvl_checkfinite(L, v, fn, "vec");
  if (v->size[0] < 1) return fvl_error(L, "%s: vec is empty, expected at least one value", fn);
  if (fvl_megaface_write(path, fvl_f32(v), v->size[0]) < 0) return fvl_raise(L);
  return 0;
}

/* _megaface.load(path) -> 1-D float32 tensor */
static int l_load(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  float *v;
  int64_t d;
  if (fvl_megaface_read(path, &v, &d) < 0) return fvl_raise(L);
  fvl_tensor *t = fvl_empty(FVL_F32, 1, &d);
  if (t) memcpy(fvl_f32(t), v, (size_t)d * sizeof *v);
  free(v);
  fvl_pushtensor(L, t);
  return 1;
}

/* name i of the list at idx, checked as a relative path without ".." into buf */
static void name_at(lua_State *L, int idx, const char *fn, lua_Integer i, char *buf, size_t n) {
  lua_geti(L, idx, i);
  if (lua_type(L, -1) != LUA_TSTRING)
    fvl_error(L, "%s: names[%lld] must be a string (a relative path such as 'Adam_Brody/Adam_Brody_1.jpg'), got %s",
              fn, (long long)i, luaL_typename(L, -1));
  size_t len;
  const char *s = lua_tolstring(L, -1, &len);
  int bad = len == 0 || s[0] == '/' || strlen(s) != len || len >= n;
  for (const char *p = s; !bad && *p; p++)   /* no ".." component */
    if (p[0] == '.' && p[1] == '.' && (p == s || p[-1] == '/') && (p[2] == '/' || p[2] == 0)) bad = 1;
  if (bad)
    fvl_error(L, "%s: names[%lld] = '%s' is not a relative path inside the directory (empty, absolute, "
              "'..', a NUL byte or too long)", fn, (long long)i, s);
  memcpy(buf, s, len + 1);
  lua_pop(L, 1);
}

/* _megaface.export(dir, emb, names, suffix) -> number of files */
static int l_export(lua_State *L) {
  const char *fn = "export_megaface";
  const char *dir = luaL_checkstring(L, 1);
  fvl_tensor *e = fvl_checkf32(L, 2, fn, "emb", 2);   /* slot 5 */
  luaL_checktype(L, 3, LUA_TTABLE);
  const char *suffix = luaL_checkstring(L, 4);
  if (strchr(suffix, '/')) return fvl_error(L, "%s: suffix '%s' must not contain '/'", fn, suffix);
  int64_t N = e->size[0], D = e->size[1];
  lua_Integer nn = luaL_len(L, 3);
  if (nn != N)
    return fvl_error(L, "%s: emb has %lld rows but names has %lld entries (one file name per row)", fn,
                     (long long)N, (long long)nn);
  if (D < 1) return fvl_error(L, "%s: emb has no columns", fn);
  fvl_checkfinite(L, e, fn, "emb");
  char name[PATH_MAX], path[PATH_MAX], parent[PATH_MAX] = "";
  for (int64_t i = 0; i < N; i++) {
    name_at(L, 3, fn, i + 1, name, sizeof name);
    int w = snprintf(path, sizeof path, "%s/%s%s", dir, name, suffix);
    if (w < 0 || (size_t)w >= sizeof path)
      return fvl_error(L, "%s: names[%lld]: the path is longer than %d bytes", fn, (long long)i + 1, PATH_MAX);
    char *slash = strrchr(path, '/');
    *slash = 0;
    if (strcmp(path, parent) != 0) {   /* a new directory (names usually come grouped) */
      if (fvl_mkdirs(path) < 0) return fvl_raise(L);
      strcpy(parent, path);
    }
    *slash = '/';
    if (fvl_megaface_write_ex(path, fvl_f32(e) + i * D, D, 0) < 0) return fvl_raise(L);
    if (i % 256 == 0 && fvl_check_abort(fn) < 0) return fvl_raise(L);
  }
  if (N > 0 && fvl_sync_fs(dir, fn) < 0) return fvl_raise(L);   /* every file on disk before returning */
  lua_pushinteger(L, N);
  return 1;
}

/* _megaface.eval(probes, probe_labels, distractors, {k...}, far, block) -> table */
static int l_eval(lua_State *L) {
  const char *fn = "megaface_rank1";
  fvl_tensor *p = fvl_checkf32(L, 1, fn, "probes", 2);
  fvl_tensor *d = fvl_checkf32(L, 3, fn, "distractors", 2);
  int64_t P = p->size[0], N = d->size[0], D = p->size[1];
  if (P < 1) return fvl_error(L, "%s: probes has no rows", fn);
  if (N < 1) return fvl_error(L, "%s: distractors has no rows", fn);
  if (d->size[1] != D)
    return fvl_error(L, "%s: probes are %lld×%lld but distractors are %lld×%lld (the feature sizes differ)", fn,
                     (long long)P, (long long)D, (long long)N, (long long)d->size[1]);
  if (P > INT32_MAX || N > INT32_MAX || D > INT32_MAX)
    return fvl_error(L, "%s: at most %d probes, distractors and feature values", fn, INT32_MAX);
  fvl_tensor *pl = fvl_checklabels(L, 2, fn, P, -1);
  fvl_pushtensor(L, pl);
  fvl_checkfinite(L, p, fn, "probes");
  fvl_checkfinite(L, d, fn, "distractors");
  fvl_megaface_opts o = {0};
  luaL_checktype(L, 4, LUA_TTABLE);
  lua_Integer nk = luaL_len(L, 4);
  if (nk < 1 || nk > FVL_MEGAFACE_MAXK)
    return fvl_error(L, "%s: k: %lld ranks, expected 1..%d", fn, (long long)nk, FVL_MEGAFACE_MAXK);
  o.nk = (int)nk;
  for (int i = 0; i < o.nk; i++) {
    lua_geti(L, 4, i + 1);
    o.ks[i] = fvl_checkint32(L, fn, "k", luaL_checkinteger(L, -1), 1, 1000);
    lua_pop(L, 1);
  }
  o.far = luaL_checknumber(L, 5);
  if (!(o.far >= 0 && o.far < 1)) return fvl_error(L, "%s: far = %g, expected 0 (none) or a rate in (0, 1)", fn, o.far);
  lua_Integer b = luaL_checkinteger(L, 6);
  if (b < 0 || b > INT32_MAX) return fvl_error(L, "%s: block = %lld, expected 0 (automatic) or a row count", fn, (long long)b);
  o.block = b;
  fvl_megaface_result r;
  if (fvl_megaface_eval(fvl_f32(p), fvl_i32(pl), P, fvl_f32(d), N, D, &o, &r) < 0) return fvl_raise(L);
  lua_newtable(L);
  lua_newtable(L);
  for (int i = 0; i < o.nk; i++) {
    if (isnan(r.rank[i])) continue;
    lua_pushnumber(L, r.rank[i]);
    lua_rawseti(L, -2, o.ks[i]);
  }
  lua_setfield(L, -2, "cmc");
  if (!isnan(r.tar)) {
    lua_pushnumber(L, r.tar); lua_setfield(L, -2, "tar");
    lua_pushnumber(L, r.threshold); lua_setfield(L, -2, "threshold");
  }
  lua_pushinteger(L, r.n_pairs); lua_setfield(L, -2, "n_pairs");
  lua_pushinteger(L, r.n_probes_used); lua_setfield(L, -2, "n_probes_used");
  lua_pushinteger(L, r.n_genuine); lua_setfield(L, -2, "n_genuine");
  lua_pushinteger(L, r.n_impostor); lua_setfield(L, -2, "n_impostor");
  return 1;
}

int fvl_open_megaface(lua_State *L) {
  static const luaL_Reg fns[] = {{"save", l_save}, {"load", l_load}, {"export", l_export}, {"eval", l_eval},
                                 {NULL, NULL}};
  luaL_newlib(L, fns);
  lua_setfield(L, -2, "_megaface");
  return 0;
}
