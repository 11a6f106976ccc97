/* bind_util.c — argument checking and conversion shared by every binding file. */
#include <string.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdint.h>
#include "bind.h"
#include "eval.h"   /* fvl_eval_first_nonfinite */

/* The position an error names: the caller's line, as luaL_where(L, 1) gives it, except when the
 * caller is the Lua library (lua/fvl/): then the line of the first caller outside it (the user's
 * script), or none. A check made for the user names the user's call, never a line of the library. */
static int in_library(const char *source) { return strncmp(source, "@lua/fvl/", 9) == 0; }
void fvl_pushwhere(lua_State *L) {
  lua_Debug ar;
  if (lua_getstack(L, 1, &ar) && lua_getinfo(L, "S", &ar) && in_library(ar.source)) {
    for (int level = 2; lua_getstack(L, level, &ar); level++) {
      if (lua_getinfo(L, "Sl", &ar) && !in_library(ar.source) && ar.currentline > 0) {
        luaL_where(L, level);
        return;
      }
    }
    lua_pushliteral(L, "");   /* no script above the library (a REPL line, a C caller) */
    return;
  }
  luaL_where(L, 1);
}

int fvl_error(lua_State *L, const char *fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  fvl_pushwhere(L);
  lua_pushstring(L, buf);
  lua_concat(L, 2);
  return lua_error(L);
}

fvl_tensor *fvl_totensor(lua_State *L, int idx) {
  fvl_tensor **p = luaL_testudata(L, idx, FVL_TENSOR_MT);
  if (p && !*p) luaL_argerror(L, idx, "tensor used after free()");
  return p ? *p : NULL;
}
/* luaL_typeerror's words ("bad argument #2 to 'conv2d' (fvl.Tensor expected, got nil)"), at the
 * position fvl_error names: a tensor argument the Lua library passed on names the user's line */
int fvl_typeerror(lua_State *L, int idx, const char *tname) {
  const char *got = luaL_typename(L, idx);
  if (luaL_getmetafield(L, idx, "__name") == LUA_TSTRING) got = lua_tostring(L, -1);
  lua_Debug ar;
  const char *name = "?";
  if (lua_getstack(L, 0, &ar) && lua_getinfo(L, "n", &ar)) {
    if (ar.namewhat && strcmp(ar.namewhat, "method") == 0 && --idx == 0)
      return fvl_error(L, "calling '%s' on bad self (%s expected, got %s)", ar.name ? ar.name : "?", tname, got);
    if (ar.name) name = ar.name;
  }
  return fvl_error(L, "bad argument #%d to '%s' (%s expected, got %s)", idx, name, tname, got);
}
fvl_tensor *fvl_checktensor(lua_State *L, int idx) {
  fvl_tensor *t = fvl_totensor(L, idx);
  if (!t) fvl_typeerror(L, idx, "fvl.Tensor");
  return t;
}
fvl_tensor *fvl_opttensor(lua_State *L, int idx) {
  if (lua_isnoneornil(L, idx)) return NULL;
  return fvl_checktensor(L, idx);
}

/* Tensor bytes live outside Lua's heap, so the collector cannot see them. When the engine
 * holds much more than after the last full collection, collect: the Lua heap is small, so a
 * full cycle is cheap, and dead temporaries are freed at once. */
static size_t gc_threshold = 128u << 20;
void fvl_gc_charge(lua_State *L) {
  size_t live = fvl_bytes_live();
  if (live > gc_threshold) {
    lua_gc(L, LUA_GCCOLLECT);
    size_t after = fvl_bytes_live();
    size_t grow = after > (128u << 20) ? after : (128u << 20);
    gc_threshold = after + grow;
  }
}

void fvl_pushtensor(lua_State *L, fvl_tensor *t) {
  if (!t) { fvl_raise(L); return; }
  fvl_tensor **p = lua_newuserdatauv(L, sizeof *p, 1);
  *p = t;
  luaL_setmetatable(L, FVL_TENSOR_MT);
  fvl_gc_charge(L);
}

int fvl_raise(lua_State *L) { return fvl_error(L, "%s", fvl_errmsg()); }

/* ---- nested tables → tensor ---- */
static int table_shape(lua_State *L, int idx, int depth, int64_t *size, int *ndim, const char *fn) {
  if (lua_type(L, idx) != LUA_TTABLE) {
    if (depth == 0) return fvl_error(L, "%s: expected a table of numbers", fn);
    *ndim = depth;
    return 0;
  }
  if (depth >= FVL_MAXDIM) return fvl_error(L, "%s: table nested deeper than %d", fn, FVL_MAXDIM);
  lua_Integer n = luaL_len(L, idx);   /* an __len may return anything */
  if (n < 0) return fvl_error(L, "%s: a table at depth %d has length %lld (expected >= 0)", fn, depth + 1, (long long)n);
  size[depth] = n;
  if (n == 0) { *ndim = depth + 1; return 0; }
  lua_geti(L, idx, 1);
  table_shape(L, lua_gettop(L), depth + 1, size, ndim, fn);
  lua_pop(L, 1);
  return 0;
}
static void table_fill(lua_State *L, int idx, int depth, int ndim, const int64_t *size, fvl_tensor *t,
                       int64_t *pos, char *path, size_t plen, const char *fn) {
  lua_Integer n = luaL_len(L, idx);
  if (n != size[depth])
    fvl_error(L, "%s: ragged table: %s has %d entries, expected %d", fn, path[0] ? path : "table",
               (int)n, (int)size[depth]);
  for (lua_Integer i = 1; i <= n; i++) {
    int ty = lua_geti(L, idx, i);
    size_t k = strlen(path);
    snprintf(path + k, plen - k, "[%d]", (int)i);
    if (depth == ndim - 1) {
      if (ty != LUA_TNUMBER && ty != LUA_TBOOLEAN)
        fvl_error(L, "%s: entry %s is a %s, expected a number", fn, path, luaL_typename(L, -1));
      double v = ty == LUA_TBOOLEAN ? lua_toboolean(L, -1) : lua_tonumber(L, -1);
      if (t->dtype == FVL_F32) fvl_f32(t)[*pos] = (float)v;
      else if (!(v >= -2147483648.0 && v <= 2147483647.0))
        fvl_error(L, "%s: entry %s = %g does not fit int32", fn, path, v);
      else fvl_i32(t)[*pos] = (int32_t)v;
      (*pos)++;
    } else {
      if (ty != LUA_TTABLE)
        fvl_error(L, "%s: entry %s is a %s, expected a table", fn, path, luaL_typename(L, -1));
      table_fill(L, lua_gettop(L), depth + 1, ndim, size, t, pos, path, plen, fn);
    }
    path[k] = 0;
    lua_pop(L, 1);
  }
}
static fvl_tensor *from_table(lua_State *L, int idx, fvl_dtype dt, const char *fn) {
  int64_t size[FVL_MAXDIM];
  int ndim = 0;
  idx = lua_absindex(L, idx);
  table_shape(L, idx, 0, size, &ndim, fn);
  fvl_tensor *t = fvl_empty(dt, ndim, size);
  if (!t) fvl_raise(L);
  /* anchor t on the stack so an error while filling does not leak it */
  fvl_pushtensor(L, t);
  int64_t pos = 0;
  char path[128] = "";
  table_fill(L, idx, 0, ndim, size, t, &pos, path, sizeof path, fn);
  fvl_retain(t);
  lua_pop(L, 1);
  return t;
}
fvl_tensor *fvl_astensor(lua_State *L, int idx, fvl_dtype dt) {
  fvl_tensor *t = fvl_totensor(L, idx);
  if (t) return fvl_retain(t);
  if (lua_type(L, idx) == LUA_TNUMBER) {
    fvl_tensor *s = dt == FVL_F32 ? fvl_scalar((float)lua_tonumber(L, idx)) : fvl_full(FVL_I32, 0, NULL, lua_tonumber(L, idx));   /* fvl_full saturates */
    if (!s) fvl_raise(L);
    return s;
  }
  if (lua_type(L, idx) == LUA_TTABLE) return from_table(L, idx, dt, "tensor");
  luaL_typeerror(L, idx, "fvl.Tensor, number or table");
  return NULL;
}

/* 1-based ids (labels or indices) from an int32/float32 tensor or a Lua list → a NEW 0-based
 * int32 tensor. Bounds: 1..hi when hi >= 0 (hi = 0: nothing is valid, e.g. an empty class
 * matrix), 1..INT32_MAX when hi < 0. Table entries are read as Lua numbers (never through
 * float32, which would round 16777217), so every value is checked exactly. */
static fvl_tensor *check_1based(lua_State *L, int idx, const char *fn, const char *arg, int64_t n,
                                int64_t hi, int labels) {
  const char *what = labels ? "an integer class id" : "an integer index";
  int64_t top = hi >= 0 && hi < INT32_MAX ? hi : INT32_MAX;
  idx = lua_absindex(L, idx);
  if (lua_type(L, idx) == LUA_TUSERDATA) {   /* a checked value (bind_labels.c): O(1), a copy */
    fvl_tensor *c = fvl_labels_match(L, idx, fn, arg, n, hi, labels);
    if (c) {
      fvl_tensor *copy = fvl_clone(c);
      if (!copy) fvl_raise(L);
      return copy;
    }
  }
  if (labels) fvl_labels_count_scan();
  fvl_tensor *src = NULL;
  int64_t m;
  if (lua_type(L, idx) == LUA_TTABLE) {
    m = (int64_t)luaL_len(L, idx);
  } else {
    src = fvl_totensor(L, idx);
    if (!src)
      fvl_error(L, "%s: %s must be an int32 tensor or a table of integers, got %s", fn, arg,
                luaL_typename(L, idx));
    if (src->dtype != FVL_I32 && src->dtype != FVL_F32)
      fvl_error(L, "%s: %s must be an int32 tensor, got a %s tensor", fn, arg, fvl_dtype_name(src->dtype));
    if (src->ndim != 1) {
      char b[64];
      fvl_error(L, "%s: %s must be 1-D, got %s", fn, arg, fvl_shape_str(src, b, sizeof b));
    }
    m = src->size[0];
  }
  if (n >= 0 && m != n)
    fvl_error(L, "%s: %s has %lld entries but there are %lld rows (expected one per row)", fn, arg,
              (long long)m, (long long)n);
  fvl_tensor *out = fvl_empty(FVL_I32, 1, &m);
  if (!out) fvl_raise(L);
  fvl_pushtensor(L, out);   /* anchored: an error below frees it */
  int32_t *o = fvl_i32(out);
  for (int64_t i = 0; i < m; i++) {
    lua_Integer v;
    if (src) {
      if (src->dtype == FVL_I32) v = fvl_i32(src)[i * src->stride[0]];
      else {
        double d = fvl_f32(src)[i * src->stride[0]];
        if (!(d == floor(d)) || fabs(d) > 9e15)
          fvl_error(L, "%s: %s[%lld] = %g is not %s", fn, arg, (long long)i + 1, d, what);
        v = (lua_Integer)d;
      }
    } else {
      int ty = lua_geti(L, idx, (lua_Integer)i + 1);
      if (ty != LUA_TNUMBER)
        fvl_error(L, "%s: entry [%lld] is a %s, expected a number", fn, (long long)i + 1, lua_typename(L, ty));
      int isint;
      v = lua_tointegerx(L, -1, &isint);
      if (!isint)
        fvl_error(L, "%s: %s[%lld] = %s is not %s", fn, arg, (long long)i + 1, luaL_tolstring(L, -1, NULL), what);
      lua_pop(L, 1);
    }
    if (v < 1 || v > top)
      fvl_error(L, "%s: %s[%lld] = %lld is outside 1..%lld%s", fn, arg, (long long)i + 1, (long long)v,
                (long long)top, top > 0 ? "" : labels ? " (there are no classes)" : " (the dimension is empty)");
    o[i] = (int32_t)(v - 1);
  }
  fvl_retain(out);
  lua_pop(L, 1);
  return out;
}
fvl_tensor *fvl_checklabels(lua_State *L, int idx, const char *fn, int64_t n, int64_t nclasses) {
  return check_1based(L, idx, fn, "labels", n, nclasses, 1);
}
fvl_tensor *fvl_checkindex(lua_State *L, int idx, const char *fn, const char *arg, int64_t n) {
  return check_1based(L, idx, fn, arg, -1, n, 0);
}

static int read_shape(lua_State *L, int idx, const char *fn, int64_t *size) {
  int nd = 0;
  if (lua_type(L, idx) == LUA_TTABLE) {
    lua_Integer n = luaL_len(L, idx);
    if (n > FVL_MAXDIM) fvl_error(L, "%s: %d dimensions (at most %d)", fn, (int)n, FVL_MAXDIM);
    for (lua_Integer i = 1; i <= n; i++) {
      lua_geti(L, idx, i);
      int isnum;
      lua_Integer v = lua_tointegerx(L, -1, &isnum);
      if (!isnum || v < -1 || (v == -1 && strcmp(fn, "reshape") != 0))
        fvl_error(L, "%s: size %d must be a non-negative integer, got %s", fn, (int)i, luaL_tolstring(L, -1, NULL));
      size[nd++] = v;
      lua_pop(L, 1);
    }
    return nd;
  }
  int top = lua_gettop(L);
  for (int i = idx; i <= top && lua_type(L, i) == LUA_TNUMBER; i++) {
    if (nd >= FVL_MAXDIM) fvl_error(L, "%s: more than %d dimensions", fn, FVL_MAXDIM);
    int isnum;
    lua_Integer v = lua_tointegerx(L, i, &isnum);
    if (!isnum || v < -1 || (v == -1 && strcmp(fn, "reshape") != 0))
      fvl_error(L, "%s: size %d must be a non-negative integer, got %s", fn, nd + 1, lua_tostring(L, i));
    size[nd++] = v;
  }
  return nd;
}

/* every shape from Lua is checked here, once: sizes, element count and strides (reshape's -1
 * is resolved by the engine, which checks the result the same way) */
int fvl_checkshape(lua_State *L, int idx, const char *fn, int64_t *size) {
  int nd = read_shape(L, idx, fn, size);
  if (strcmp(fn, "reshape") != 0) fvl_checkshape_numel(L, fn, nd, size);
  return nd;
}

/* a float32 contiguous tensor of rank `nd` (0 = any) at idx; the converted tensor is pushed
 * (the stack owns it, so a later error cannot leak it) and returned */
fvl_tensor *fvl_checkf32(lua_State *L, int idx, const char *fn, const char *arg, int nd) {
  fvl_tensor *t = fvl_totensor(L, idx);
  if (!t) {
    fvl_error(L, "%s: %s must be a tensor, got %s", fn, arg, luaL_typename(L, idx));
    return NULL;
  }
  if (nd && t->ndim != nd) {
    char b[64];
    fvl_error(L, "%s: %s must be %s, got %s", fn, arg, nd == 1 ? "1-D (N)" : "2-D (N×D)",
               fvl_shape_str(t, b, sizeof b));
  }
  fvl_tensor *c = t->dtype == FVL_F32 ? fvl_contiguous(t) : fvl_to_dtype(t, FVL_F32);
  if (!c) fvl_raise(L);
  if (!fvl_is_contiguous(c)) {
    fvl_tensor *d = fvl_contiguous(c);
    fvl_release(c);
    c = d;
    if (!c) fvl_raise(L);
  }
  fvl_pushtensor(L, c);
  return c;
}

/* ---- 1-based positions and dtypes: the user's wording, checked once here ---- */
int fvl_checkdim(lua_State *L, const char *fn, lua_Integer dim, int ndim) {
  lua_Integer d = dim < 0 ? dim + ndim + 1 : dim;   /* -1 = the last dim */
  if (d < 1 || d > ndim) {
    if (ndim == 0) fvl_error(L, "%s: dim %lld of a 0-D tensor (it has no dims)", fn, (long long)dim);
    fvl_error(L, "%s: dim %lld is outside 1..%d", fn, (long long)dim, ndim);
  }
  return (int)d - 1;
}
int64_t fvl_checkpos(lua_State *L, const char *fn, const char *what, lua_Integer i, int64_t n) {
  if (i < 1 || i > n) fvl_error(L, "%s: %s %lld is outside 1..%lld", fn, what, (long long)i, (long long)n);
  return (int64_t)i - 1;
}
int64_t fvl_checkrows(lua_State *L, const char *fn, const char *what, lua_Integer first, lua_Integer count,
                      int64_t n, const char *where) {
  if (!where) where = "";
  if (count < 0)
    fvl_error(L, "%s: %s from %lld, count %lld%s: the count is negative", fn, what, (long long)first,
              (long long)count, where);
  if (first >= 1 && first - 1 <= n && count <= n - (first - 1)) return (int64_t)first - 1;   /* no overflow */
  int64_t last;
  if (fvl_add_overflow(first, count - 1, &last))
    fvl_error(L, "%s: %s from %lld, count %lld, are outside 1..%lld%s", fn, what, (long long)first,
              (long long)count, (long long)n, where);
  return fvl_error(L, "%s: %s %lld..%lld are outside 1..%lld%s", fn, what, (long long)first, (long long)last,
                   (long long)n, where);
}
void fvl_checkfloat(lua_State *L, const fvl_tensor *t, const char *fn, const char *arg) {
  if (t->dtype != FVL_F32)
    fvl_error(L, "%s: %s is %s, expected float32 (use :float())", fn, arg, fvl_dtype_name(t->dtype));
}
void fvl_checkfloats(lua_State *L, const char *fn, ...) {
  va_list ap;
  va_start(ap, fn);
  for (const char *arg; (arg = va_arg(ap, const char *)) != NULL;) {
    const fvl_tensor *t = va_arg(ap, const fvl_tensor *);
    if (t && t->dtype != FVL_F32) {
      va_end(ap);
      fvl_checkfloat(L, t, fn, arg);
    }
  }
  va_end(ap);
}
void fvl_checkfinite(lua_State *L, const fvl_tensor *t, const char *fn, const char *arg) {
  const float *p = fvl_f32(t);
  int64_t i = fvl_eval_first_nonfinite(p, fvl_numel(t)), D = t->ndim == 2 ? t->size[1] : 1;
  if (i < 0) return;
  double v = isnan(p[i]) ? fabs((double)p[i]) : (double)p[i];   /* "nan", never "-nan" */
  if (t->ndim == 2)
    fvl_error(L, "%s: %s[%lld][%lld] = %g is not a finite number", fn, arg, (long long)(i / D) + 1,
              (long long)(i % D) + 1, v);
  fvl_error(L, "%s: %s[%lld] = %g is not a finite number", fn, arg, (long long)i + 1, v);
}
