/* bind_check.c — the binding boundary (DEVELOPERS.md "The binding boundary"):
 *  - option tables read from ONE declared table of keys (fvl_optdef): unknown keys, types,
 *    ranges and enum names are checked there, the messages are made there, and the same table
 *    gives the Lua layer its option list (fvl._options);
 *  - every string or tensor taken out of a Lua table stays anchored while C uses it;
 *  - checked size arithmetic for sizes that come from Lua (fvl_checksize_mul / _add). */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "bind.h"

/* ---------------------------------------------------------------- anchors */
int fvl_anchor_new(lua_State *L) {
  lua_newtable(L);
  return lua_gettop(L);
}
void fvl_anchor_keep(lua_State *L, int anchor) {
  lua_rawseti(L, anchor, (lua_Integer)lua_rawlen(L, anchor) + 1);
}
const char *fvl_anchor_string(lua_State *L, int anchor, size_t *len) {
  const char *s = lua_tolstring(L, -1, len);
  fvl_anchor_keep(L, anchor);   /* the anchor table now owns the string s points into */
  return s;
}

/* ---------------------------------------------------------------- declared option tables */
static const char *kind_name(fvl_optkind k) {
  switch (k) {
    case FVL_OPT_NUMBER: return "a number";
    case FVL_OPT_INTEGER: return "an integer";
    case FVL_OPT_BOOLEAN: return "a boolean";
    case FVL_OPT_STRING: return "a string";
    case FVL_OPT_ENUM: return "a string";
    case FVL_OPT_TENSOR: return "a tensor";
    case FVL_OPT_NUMBER_OR_TENSOR: return "a number or a tensor";
    case FVL_OPT_TABLE: return "a table";
    case FVL_OPT_ANY: return "a value";
  }
  return "?";
}

/* index of s in the '|'-separated names, -1 when absent */
static int enum_index(const char *names, const char *s) {
  size_t n = strlen(s);
  int i = 0;
  for (const char *p = names; *p; i++) {
    const char *e = strchr(p, '|');
    size_t len = e ? (size_t)(e - p) : strlen(p);
    if (len == n && memcmp(p, s, n) == 0) return i;
    if (!e) break;
    p = e + 1;
  }
  return -1;
}

static void unknown_key(lua_State *L, const char *fn, const fvl_optdef *defs, const char *k) {
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (const fvl_optdef *d = defs; d->key; d++) {
    if (d != defs) luaL_addstring(&b, ", ");
    luaL_addstring(&b, d->key);
  }
  luaL_pushresult(&b);
  fvl_error(L, "%s: unknown option '%s' (expected one of: %s)", fn, k, lua_tostring(L, -1));
}

static void range_text(char *buf, size_t n, const fvl_optdef *d) {
  if (d->lo <= -HUGE_VAL) snprintf(buf, n, "..%g", d->hi);
  else if (d->hi >= HUGE_VAL) snprintf(buf, n, "%g..", d->lo);
  else snprintf(buf, n, "%g..%g", d->lo, d->hi);
}

/* reads the value on top of the stack for d into v; leaves the stack as it was (the value is
 * moved into the anchor when C keeps a pointer into it) */
static void read_one(lua_State *L, const char *fn, const fvl_optdef *d, fvl_optval *v, int anchor) {
  int ty = lua_type(L, -1);
  if (ty == LUA_TNIL) {
    lua_pop(L, 1);
    return;
  }
  v->set = 1;
  switch (d->kind) {
    case FVL_OPT_NUMBER:
    case FVL_OPT_INTEGER:
    case FVL_OPT_NUMBER_OR_TENSOR: {
      if (d->kind == FVL_OPT_NUMBER_OR_TENSOR && ty != LUA_TNUMBER) {
        v->t = fvl_totensor(L, -1);
        if (!v->t)
          fvl_error(L, "%s: %s must be a number or a tensor, got %s", fn, d->key, luaL_typename(L, -1));
        fvl_anchor_keep(L, anchor);
        return;
      }
      if (ty != LUA_TNUMBER) fvl_error(L, "%s: %s must be %s, got %s", fn, d->key, kind_name(d->kind), luaL_typename(L, -1));
      double x = lua_tonumber(L, -1);
      if (d->kind == FVL_OPT_INTEGER && !(x == floor(x)))
        fvl_error(L, "%s: %s = %g (expected an integer)", fn, d->key, x);
      if (d->lo <= d->hi && !(x >= d->lo && x <= d->hi)) {
        char r[64];
        range_text(r, sizeof r, d);
        fvl_error(L, "%s: %s = %g is outside %s", fn, d->key, x, r);
      }
      v->num = x;
      lua_pop(L, 1);
      return;
    }
    case FVL_OPT_BOOLEAN:
      if (ty != LUA_TBOOLEAN) fvl_error(L, "%s: %s must be a boolean, got %s", fn, d->key, luaL_typename(L, -1));
      v->num = lua_toboolean(L, -1);
      lua_pop(L, 1);
      return;
    case FVL_OPT_STRING:
    case FVL_OPT_ENUM:
      if (ty != LUA_TSTRING) fvl_error(L, "%s: %s must be a string, got %s", fn, d->key, luaL_typename(L, -1));
      v->str = fvl_anchor_string(L, anchor, &v->len);
      if (d->kind == FVL_OPT_ENUM) {
        int i = enum_index(d->names, v->str);
        if (i < 0) fvl_error(L, "%s: %s = '%s' (expected %s)", fn, d->key, v->str, d->names);
        v->num = i;
      }
      return;
    case FVL_OPT_TENSOR:
      v->t = fvl_totensor(L, -1);
      if (!v->t) fvl_error(L, "%s: %s must be a tensor, got %s", fn, d->key, luaL_typename(L, -1));
      fvl_anchor_keep(L, anchor);
      return;
    case FVL_OPT_TABLE:
    case FVL_OPT_ANY:
      if (d->kind == FVL_OPT_TABLE && ty != LUA_TTABLE)
        fvl_error(L, "%s: %s must be a table, got %s", fn, d->key, luaL_typename(L, -1));
      v->table = (int)lua_rawlen(L, anchor) + 1;
      fvl_anchor_keep(L, anchor);
      return;
  }
}

int fvl_readopts(lua_State *L, int idx, const char *fn, const fvl_optdef *defs, fvl_optval *out) {
  idx = lua_absindex(L, idx);
  int have = !lua_isnoneornil(L, idx);
  if (have && lua_type(L, idx) != LUA_TTABLE)
    fvl_error(L, "%s: options must be a table, got %s", fn, luaL_typename(L, idx));
  int n = 0;
  for (const fvl_optdef *d = defs; d->key; d++, n++) {
    fvl_optval *v = &out[n];
    memset(v, 0, sizeof *v);
    v->num = d->def;
    if (d->kind == FVL_OPT_STRING) v->str = d->names;   /* the default string (static) */
  }
  luaL_checkstack(L, 4, fn);
  int anchor = fvl_anchor_new(L);
  if (!have) return anchor;
  /* unknown keys: a raw walk, so no metamethod runs and nothing is allocated per key */
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TSTRING) continue;
    const char *k = lua_tostring(L, -1);   /* the key stays on the stack during the check */
    const fvl_optdef *d = defs;
    while (d->key && strcmp(d->key, k) != 0) d++;
    if (!d->key) unknown_key(L, fn, defs, k);
  }
  /* the declared keys, through lua_getfield (an __index may supply them) */
  for (int i = 0; i < n; i++) {
    lua_getfield(L, idx, defs[i].key);
    read_one(L, fn, &defs[i], &out[i], anchor);
  }
  return anchor;
}

int fvl_optpush(lua_State *L, int anchor, const fvl_optval *v) {
  if (!v->table) { lua_pushnil(L); return LUA_TNIL; }
  return lua_rawgeti(L, anchor, v->table);
}

void fvl_pushoptdefs(lua_State *L, const fvl_optdef *defs) {
  lua_newtable(L);
  int i = 1;
  for (const fvl_optdef *d = defs; d->key; d++, i++) {
    lua_pushstring(L, d->key);
    lua_rawseti(L, -2, i);
  }
}
void fvl_register_opts(lua_State *L, int fvl_table, const char *name, const fvl_optdef *defs) {
  fvl_table = lua_absindex(L, fvl_table);
  luaL_getsubtable(L, fvl_table, "_options");
  fvl_pushoptdefs(L, defs);
  lua_setfield(L, -2, name);
  lua_pop(L, 1);
}

/* ---------------------------------------------------------------- checked size arithmetic */
int64_t fvl_checksize_mul(lua_State *L, const char *fn, int64_t a, int64_t b) {
  int64_t r = 0;
  if (a < 0 || b < 0 || fvl_mul_overflow(a, b, &r))
    fvl_error(L, "%s: size %lld × %lld overflows", fn, (long long)a, (long long)b);
  return r;
}
int64_t fvl_checksize_add(lua_State *L, const char *fn, int64_t a, int64_t b) {
  int64_t r = 0;
  if (fvl_add_overflow(a, b, &r)) fvl_error(L, "%s: %lld + %lld overflows", fn, (long long)a, (long long)b);
  return r;
}
int64_t fvl_checkshape_numel(lua_State *L, const char *fn, int ndim, const int64_t *size) {
  int64_t n;
  if (fvl_shape_check(fn, ndim, size, &n) < 0) fvl_raise(L);
  return n;
}
void fvl_optbn(lua_State *L, const char *fn, int momentum_idx, double *momentum, int eps_idx, double *eps) {
  if (momentum_idx > 0) {
    *momentum = luaL_optnumber(L, momentum_idx, 0.1);
    if (!(*momentum >= 0 && *momentum <= 1))
      fvl_error(L, "%s: momentum = %g is outside 0..1 (argument %d)", fn, *momentum, momentum_idx);
  }
  if (eps_idx > 0) {
    *eps = luaL_optnumber(L, eps_idx, 1e-5);
    if (!(*eps > 0 && isfinite(*eps)))
      fvl_error(L, "%s: eps = %g (argument %d), expected a positive finite number", fn, *eps, eps_idx);
  }
}
int32_t fvl_checkint32(lua_State *L, const char *fn, const char *arg, lua_Integer v, lua_Integer lo,
                       lua_Integer hi) {
  if (lo < INT32_MIN) lo = INT32_MIN;
  if (hi > INT32_MAX) hi = INT32_MAX;
  if (v < lo || v > hi) fvl_error(L, "%s: %s = %lld is outside %lld..%lld", fn, arg, (long long)v, (long long)lo, (long long)hi);
  return (int32_t)v;
}
