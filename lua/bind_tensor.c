/* bind_tensor.c — fvl.Tensor: creation, views, math, autograd, .npy (RNG, threads, memory and
 * the bench baselines are lua/bind_runtime.c).
 * Thin: check arguments (1-based dims/indices), call the engine, wrap results. */
#include <limits.h>
#include <string.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include "bind.h"
#include "sort.h"

#define T(i) fvl_checktensor(L, i)

static int dim_arg(lua_State *L, int idx, const fvl_tensor *t, const char *fn) {
  return fvl_checkdim(L, fn, luaL_checkinteger(L, idx), t->ndim);
}
static int optdim(lua_State *L, int idx, const fvl_tensor *t, const char *fn) {
  return lua_isnoneornil(L, idx) ? -1 : dim_arg(L, idx, t, fn);
}

/* ------------------------------------------------------------------ creation */
/*** fvl.tensor(data [, dtype]) -> tensor
   A new tensor from nested Lua tables of numbers (or a copy of a tensor converted to dtype).
   dtype: "float32" (default) or "int32" (use "int32" for labels: fvl.tensor({1, 2}, "int32")).
   Errors: a dtype other than float32/int32; ragged or non-numeric tables. */
static int l_tensor(lua_State *L) {
  fvl_dtype dt = FVL_F32;
  const char *s = luaL_optstring(L, 2, "float32");
  if (strcmp(s, "int32") == 0) dt = FVL_I32;
  else if (strcmp(s, "float32") != 0) return fvl_error(L, "tensor: dtype '%s' (expected float32 or int32)", s);
  if (fvl_totensor(L, 1)) { fvl_pushtensor(L, fvl_to_dtype(fvl_totensor(L, 1), dt)); return 1; }
  luaL_checktype(L, 1, LUA_TTABLE);
  fvl_pushtensor(L, fvl_astensor(L, 1, dt));
  return 1;
}
static fvl_dtype opt_dtype_fn(lua_State *L, int idx, const char *fn) {
  if (lua_type(L, idx) != LUA_TSTRING) return FVL_F32;
  const char *s = lua_tostring(L, idx);
  if (strcmp(s, "int32") == 0) return FVL_I32;
  if (strcmp(s, "float32") == 0) return FVL_F32;
  fvl_error(L, "%s: dtype '%s' (expected float32 or int32)", fn, s);
  return FVL_F32;
}
static int shape_and_dtype(lua_State *L, const char *fn, int64_t *size, fvl_dtype *dt) {
  int nd = fvl_checkshape(L, 1, fn, size);
  int top = lua_gettop(L);
  *dt = opt_dtype_fn(L, top, fn);
  return nd;
}
/* creators: an allocation failure names the function */
static void push_created(lua_State *L, fvl_tensor *t, const char *fn) {
  if (!t) fvl_error(L, "%s: %s", fn, fvl_errmsg());
  fvl_pushtensor(L, t);
}
/*** fvl.zeros(shape [, dtype]) -> tensor
   A tensor of zeros; shape is a table of sizes ({B, D}). dtype "float32" (default) or "int32".
   Errors: negative sizes, more than 2^40 elements, an unknown dtype. */
static int l_zeros(lua_State *L) {
  int64_t sz[FVL_MAXDIM]; fvl_dtype dt;
  int nd = shape_and_dtype(L, "zeros", sz, &dt);
  push_created(L, fvl_zeros(dt, nd, sz), "zeros");
  return 1;
}
/*** fvl.ones(shape [, dtype]) -> tensor
   A tensor of ones; shape and dtype as fvl.zeros. */
static int l_ones(lua_State *L) {
  int64_t sz[FVL_MAXDIM]; fvl_dtype dt;
  int nd = shape_and_dtype(L, "ones", sz, &dt);
  push_created(L, fvl_full(dt, nd, sz, 1), "ones");
  return 1;
}
/*** fvl.empty(shape [, dtype]) -> tensor
   A new tensor of the given shape (zero-filled); shape and dtype as fvl.zeros. */
static int l_empty(lua_State *L) { return l_zeros(L); }
/*** fvl.full(shape, value [, dtype]) -> tensor
   A tensor filled with value; shape and dtype as fvl.zeros. */
static int l_full(lua_State *L) {
  int64_t sz[FVL_MAXDIM];
  luaL_checktype(L, 1, LUA_TTABLE);
  int nd = fvl_checkshape(L, 1, "full", sz);
  double v = luaL_checknumber(L, 2);
  push_created(L, fvl_full(opt_dtype_fn(L, 3, "full"), nd, sz, v), "full");
  return 1;
}
/*** fvl.arange(n) | fvl.arange(a, b [, step]) [, dtype] -> tensor
   1..n, or a, a+step, ... up to b inclusive (as Lua's numeric for). dtype "float32" (default) or "int32". */
static int l_arange(lua_State *L) {
  /* arange(n) = 1..n; arange(a, b[, step]) = a, a+step, ... up to b inclusive (Lua's for) */
  double a = 1, b, step = 1;
  int top = lua_gettop(L);
  fvl_dtype dt = opt_dtype_fn(L, top, "arange");
  if (lua_type(L, top) == LUA_TSTRING) top--;
  if (top <= 1) b = luaL_checknumber(L, 1);
  else { a = luaL_checknumber(L, 1); b = luaL_checknumber(L, 2); if (top >= 3) step = luaL_checknumber(L, 3); }
  fvl_pushtensor(L, fvl_arange(dt, a, b, step));
  return 1;
}
/*** fvl.rand(shape) -> tensor
   Uniform [0, 1) float32 samples from the global generator (seed with fvl.manual_seed). */
static int l_rand(lua_State *L) {
  int64_t sz[FVL_MAXDIM];
  int nd = fvl_checkshape(L, 1, "rand", sz);
  push_created(L, fvl_rand(nd, sz, 0, 1), "rand");
  return 1;
}
/*** fvl.randn(shape) -> tensor
   Standard normal float32 samples from the global generator (seed with fvl.manual_seed). */
static int l_randn(lua_State *L) {
  int64_t sz[FVL_MAXDIM];
  int nd = fvl_checkshape(L, 1, "randn", sz);
  push_created(L, fvl_randn(nd, sz, 0, 1), "randn");
  return 1;
}
/*** fvl.randint(hi, shape) | fvl.randint(lo, hi, shape) -> int32 tensor
   Uniform integers in 1..hi (or lo..hi), e.g. labels. */
static int l_randint(lua_State *L) {
  /* randint(hi, shape) → 1..hi ; randint(lo, hi, shape) → lo..hi */
  lua_Integer lo = 1, hi;
  int si = 2;
  if (lua_type(L, 2) == LUA_TNUMBER && lua_type(L, 3) == LUA_TTABLE) { lo = luaL_checkinteger(L, 1); hi = luaL_checkinteger(L, 2); si = 3; }
  else hi = luaL_checkinteger(L, 1);
  int64_t sz[FVL_MAXDIM];
  if (lua_type(L, si) != LUA_TTABLE && lua_type(L, si) != LUA_TNUMBER)
    return fvl_error(L, "randint: expected a shape table as argument %d, got %s", si, luaL_typename(L, si));
  int nd = fvl_checkshape(L, si, "randint", sz);
  int32_t lo32 = fvl_checkint32(L, "randint", "low", lo, INT32_MIN, INT32_MAX);
  int32_t hi32 = fvl_checkint32(L, "randint", "high", hi, INT32_MIN, INT32_MAX);
  push_created(L, fvl_randint(nd, sz, lo32, hi32), "randint");
  return 1;
}
/* ------------------------------------------------------------------ inspection */
static int l_shape(lua_State *L) {
  fvl_tensor *t = T(1);
  lua_createtable(L, t->ndim, 0);
  for (int d = 0; d < t->ndim; d++) { lua_pushinteger(L, t->size[d]); lua_rawseti(L, -2, d + 1); }
  return 1;
}
static int l_stride(lua_State *L) {
  fvl_tensor *t = T(1);
  lua_createtable(L, t->ndim, 0);
  for (int d = 0; d < t->ndim; d++) { lua_pushinteger(L, t->stride[d]); lua_rawseti(L, -2, d + 1); }
  return 1;
}
static int l_dim(lua_State *L) { lua_pushinteger(L, T(1)->ndim); return 1; }
static int l_numel(lua_State *L) { lua_pushinteger(L, fvl_numel(T(1))); return 1; }
static int l_size(lua_State *L) {
  fvl_tensor *t = T(1);
  if (lua_isnoneornil(L, 2)) return l_shape(L);
  lua_pushinteger(L, t->size[dim_arg(L, 2, t, "size")]);
  return 1;
}
static int l_dtype(lua_State *L) { lua_pushstring(L, fvl_dtype_name(T(1)->dtype)); return 1; }
static int l_is_contiguous(lua_State *L) { lua_pushboolean(L, fvl_is_contiguous(T(1))); return 1; }

static void index_args(lua_State *L, fvl_tensor *t, int first, int64_t *idx, const char *fn) {
  int n = lua_gettop(L) - first + 1;
  if (lua_type(L, first) == LUA_TTABLE) {
    lua_Integer len = luaL_len(L, first);   /* an __len may return anything: compared before the cast */
    if (len != t->ndim) fvl_error(L, "%s: %lld indices for a %d-D tensor", fn, (long long)len, t->ndim);
    n = (int)len;
    for (int d = 0; d < n; d++) {
      lua_geti(L, first, d + 1);
      lua_Integer i = luaL_checkinteger(L, -1);
      lua_pop(L, 1);
      if (i < 1 || i > t->size[d])
        fvl_error(L, "%s: index %d = %lld is outside 1..%lld", fn, d + 1, (long long)i, (long long)t->size[d]);
      idx[d] = i - 1;
    }
    return;
  }
  if (n != t->ndim) fvl_error(L, "%s: %d indices for a %d-D tensor", fn, n, t->ndim);
  for (int d = 0; d < t->ndim; d++) {
    lua_Integer i = luaL_checkinteger(L, first + d);
    if (i < 1 || i > t->size[d])
      fvl_error(L, "%s: index %d = %lld is outside 1..%lld", fn, d + 1, (long long)i, (long long)t->size[d]);
    idx[d] = i - 1;
  }
}
static void push_elem(lua_State *L, const fvl_tensor *t, const int64_t *idx) {
  double v = fvl_get(t, idx);
  if (t->dtype == FVL_I32) lua_pushinteger(L, (lua_Integer)v); else lua_pushnumber(L, v);
}
static int l_get(lua_State *L) {
  fvl_tensor *t = T(1);
  int64_t idx[FVL_MAXDIM];
  index_args(L, t, 2, idx, "get");
  push_elem(L, t, idx);
  return 1;
}
static int l_set(lua_State *L) {
  fvl_tensor *t = T(1);
  int64_t idx[FVL_MAXDIM];
  int top = lua_gettop(L);
  if (top < 2) return fvl_error(L, "set: expected indices and a value, e.g. t:set(1, 2, 5)");
  double v = luaL_checknumber(L, top);
  lua_settop(L, top - 1);
  index_args(L, t, 2, idx, "set");
  fvl_set(t, idx, v);
  lua_settop(L, 1);
  return 1;
}
static void totable_rec(lua_State *L, const fvl_tensor *t, int d, int64_t *idx) {
  lua_createtable(L, (int)t->size[d], 0);
  for (int64_t i = 0; i < t->size[d]; i++) {
    idx[d] = i;
    if (d == t->ndim - 1) push_elem(L, t, idx);
    else totable_rec(L, t, d + 1, idx);
    lua_rawseti(L, -2, i + 1);
  }
}
static int l_totable(lua_State *L) {
  fvl_tensor *t = T(1);
  int64_t idx[FVL_MAXDIM] = {0};
  if (t->ndim == 0) { push_elem(L, t, idx); return 1; }
  totable_rec(L, t, 0, idx);
  return 1;
}
static int l_item(lua_State *L) {
  fvl_tensor *t = T(1);
  if (fvl_numel(t) != 1) {
    char b[64];
    return fvl_error(L, "item: tensor has %d elements (%s), expected 1", (int)fvl_numel(t), fvl_shape_str(t, b, sizeof b));
  }
  int64_t idx[FVL_MAXDIM] = {0};
  push_elem(L, t, idx);
  return 1;
}

/* tostring: type, shape, and a corner of the values */
static void fmt_val(luaL_Buffer *b, const fvl_tensor *t, const int64_t *idx) {
  char s[32];
  double v = fvl_get(t, idx);
  if (t->dtype == FVL_I32) snprintf(s, sizeof s, "%8d", (int)v);
  else snprintf(s, sizeof s, "%10.4g", v);
  luaL_addstring(b, s);
}
static int l_tostring(lua_State *L) {
  fvl_tensor *t = T(1);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  char shp[96], line[160];
  snprintf(line, sizeof line, "fvl.Tensor %s %s%s", fvl_dtype_name(t->dtype), fvl_shape_str(t, shp, sizeof shp),
           t->grad_fn ? " (grad_fn " : (t->requires_grad ? " (requires_grad)" : ""));
  luaL_addstring(&b, line);
  if (t->grad_fn) { luaL_addstring(&b, t->grad_fn->name); luaL_addstring(&b, ")"); }
  int64_t idx[FVL_MAXDIM] = {0};
  if (t->ndim == 0) { luaL_addstring(&b, "\n"); fmt_val(&b, t, idx); }
  else if (t->ndim == 1) {
    luaL_addstring(&b, "\n");
    int64_t n = t->size[0], show = n > 8 ? 6 : n;
    for (int64_t i = 0; i < show; i++) { idx[0] = i; fmt_val(&b, t, idx); }
    if (n > show) { luaL_addstring(&b, "  ..."); idx[0] = n - 1; fmt_val(&b, t, idx); }
  } else {
    /* last two dims of the first leading index */
    int r = t->ndim - 2, c = t->ndim - 1;
    int64_t rows = t->size[r] > 6 ? 6 : t->size[r], cols = t->size[c] > 6 ? 6 : t->size[c];
    if (fvl_numel(t) == 0) rows = 0;
    for (int64_t i = 0; i < rows; i++) {
      luaL_addstring(&b, "\n");
      idx[r] = i;
      for (int64_t j = 0; j < cols; j++) { idx[c] = j; fmt_val(&b, t, idx); }
      if (t->size[c] > cols) luaL_addstring(&b, "  ...");
    }
    if (t->size[r] > rows) luaL_addstring(&b, "\n  ...");
  }
  luaL_pushresult(&b);
  return 1;
}

/* ------------------------------------------------------------------ views */
static int l_t(lua_State *L) {
  fvl_tensor *t = T(1);
  if (t->ndim != 2) { char b[64]; return fvl_error(L, "t: expected a 2-D tensor, got %s", fvl_shape_str(t, b, sizeof b)); }
  fvl_pushtensor(L, fvl_transpose(t, 0, 1));
  return 1;
}
static int l_transpose(lua_State *L) {
  fvl_tensor *t = T(1);
  int a = dim_arg(L, 2, t, "transpose"), b = dim_arg(L, 3, t, "transpose");
  fvl_pushtensor(L, fvl_transpose(t, a, b));
  return 1;
}
static int l_reshape(lua_State *L) {
  fvl_tensor *t = T(1);
  int64_t sz[FVL_MAXDIM];
  int nd = fvl_checkshape(L, 2, "reshape", sz);
  fvl_pushtensor(L, fvl_reshape(t, nd, sz));
  return 1;
}
static int l_narrow(lua_State *L) {
  fvl_tensor *t = T(1);
  int d = dim_arg(L, 2, t, "narrow");
  lua_Integer s = luaL_checkinteger(L, 3), n = luaL_checkinteger(L, 4);
  char where[32];
  snprintf(where, sizeof where, " of dim %d", d + 1);
  int64_t s0 = fvl_checkrows(L, "narrow", "rows", s, n, t->size[d], where);
  fvl_pushtensor(L, fvl_narrow(t, d, s0, n));
  return 1;
}
static int l_select(lua_State *L) {
  fvl_tensor *t = T(1);
  int d = dim_arg(L, 2, t, "select");
  int64_t i = fvl_checkpos(L, "select", "index", luaL_checkinteger(L, 3), t->size[d]);
  fvl_pushtensor(L, fvl_select(t, d, i));
  return 1;
}
static int l_unsqueeze(lua_State *L) {
  fvl_tensor *t = T(1);
  lua_Integer d = luaL_checkinteger(L, 2);
  if (t->ndim >= FVL_MAXDIM)
    return fvl_error(L, "unsqueeze: a %d-D tensor cannot take another dim (at most %d)", t->ndim, FVL_MAXDIM);
  if (d < 1 || d > t->ndim + 1) return fvl_error(L, "unsqueeze: dim %lld is outside 1..%d", (long long)d, t->ndim + 1);
  fvl_pushtensor(L, fvl_unsqueeze(t, (int)d - 1));
  return 1;
}
static int l_index(lua_State *L) {
  fvl_tensor *t = T(1);
  int d = dim_arg(L, 2, t, "index");
  fvl_tensor *idx = fvl_checkindex(L, 3, "index", "indices", t->size[d]);
  fvl_tensor *r = fvl_index_select(t, d, idx);
  fvl_release(idx);
  fvl_pushtensor(L, r);
  return 1;
}
static int l_gather(lua_State *L) {
  fvl_tensor *t = T(1);
  int d = dim_arg(L, 2, t, "gather");
  fvl_tensor *ix = T(3);
  /* 1-based → 0-based copy, each index checked against 1..size (before any arithmetic) */
  if (ix->dtype != FVL_I32) return fvl_error(L, "gather: indices must be an int32 tensor, got %s", fvl_dtype_name(ix->dtype));
  if (t->ndim > 2 || ix->ndim != t->ndim) {
    char a[64], b[64];
    return fvl_error(L, "gather: expected a 1-D or 2-D tensor and indices of its rank, got %s and indices %s",
                     fvl_shape_str(t, a, sizeof a), fvl_shape_str(ix, b, sizeof b));
  }
  if (t->ndim == 2 && ix->size[1 - d] != t->size[1 - d])
    return fvl_error(L, "gather: indices have %lld along dim %d, input has %lld", (long long)ix->size[1 - d],
                     2 - d, (long long)t->size[1 - d]);
  fvl_tensor *z = fvl_clone(ix);
  if (!z) return fvl_raise(L);
  fvl_pushtensor(L, z);   /* anchored: freed by the GC if an error follows */
  int32_t *p = fvl_i32(z);
  int64_t hi = t->size[d];
  for (int64_t i = 0, n = fvl_numel(z); i < n; i++) {
    if (p[i] < 1 || p[i] > hi)
      return fvl_error(L, "gather: indices[%lld] = %d is outside 1..%lld", (long long)i + 1, (int)p[i], (long long)hi);
    p[i] -= 1;
  }
  fvl_pushtensor(L, fvl_gather(t, d, z));
  return 1;
}
static int l_index_add(lua_State *L) {
  fvl_tensor *t = T(1);
  int d = dim_arg(L, 2, t, "index_add");
  fvl_tensor *src = T(4);   /* before the index list: nothing may raise while idx is unanchored */
  fvl_tensor *idx = fvl_checkindex(L, 3, "index_add", "indices", t->size[d]);
  int rc = fvl_index_add_(t, d, idx, src);
  fvl_release(idx);
  if (rc < 0) return fvl_raise(L);
  lua_settop(L, 1);
  return 1;
}
static int l_contiguous(lua_State *L) { fvl_pushtensor(L, fvl_contiguous(T(1))); return 1; }
static int l_clone(lua_State *L) { fvl_pushtensor(L, fvl_clone(T(1))); return 1; }
static int l_detach(lua_State *L) { fvl_pushtensor(L, fvl_detach(T(1))); return 1; }
static int l_float(lua_State *L) { fvl_pushtensor(L, fvl_to_dtype(T(1), FVL_F32)); return 1; }
static int l_int(lua_State *L) { fvl_pushtensor(L, fvl_to_dtype(T(1), FVL_I32)); return 1; }
static int l_copy(lua_State *L) {
  fvl_tensor *t = T(1);
  fvl_tensor *s = fvl_astensor(L, 2, t->dtype);
  int rc = fvl_copy_(t, s);
  fvl_release(s);
  if (rc < 0) return fvl_raise(L);
  lua_settop(L, 1);
  return 1;
}
static int l_fill(lua_State *L) {
  fvl_fill_(T(1), luaL_checknumber(L, 2));
  lua_settop(L, 1);
  return 1;
}
static int l_uniform_(lua_State *L) {
  if (fvl_uniform_(T(1), (float)luaL_optnumber(L, 2, 0), (float)luaL_optnumber(L, 3, 1)) < 0) return fvl_raise(L);
  lua_settop(L, 1);
  return 1;
}
static int l_normal_(lua_State *L) {
  if (fvl_normal_(T(1), (float)luaL_optnumber(L, 2, 0), (float)luaL_optnumber(L, 3, 1)) < 0) return fvl_raise(L);
  lua_settop(L, 1);
  return 1;
}

/* ------------------------------------------------------------------ math */
static int binop(lua_State *L, fvl_binop op) {
  fvl_tensor *a = fvl_totensor(L, 1), *b = fvl_totensor(L, 2);
  if (a && b) { fvl_pushtensor(L, fvl_binary(op, a, b)); return 1; }
  if (a && lua_type(L, 2) == LUA_TNUMBER) { fvl_pushtensor(L, fvl_binary_scalar(op, a, lua_tonumber(L, 2), 0)); return 1; }
  if (b && lua_type(L, 1) == LUA_TNUMBER) { fvl_pushtensor(L, fvl_binary_scalar(op, b, lua_tonumber(L, 1), 1)); return 1; }
  if (a && lua_type(L, 2) == LUA_TTABLE) {
    fvl_tensor *bt = fvl_astensor(L, 2, FVL_F32);
    fvl_tensor *r = fvl_binary(op, a, bt);
    fvl_release(bt);
    fvl_pushtensor(L, r);
    return 1;
  }
  static const char *names[] = {"add", "sub", "mul", "div", "pow", "maximum", "minimum"};
  return fvl_error(L, "%s: expected tensors or numbers, got %s and %s", names[op], luaL_typename(L, 1), luaL_typename(L, 2));
}
static int l_add(lua_State *L) { return binop(L, FVL_ADD); }
static int l_sub(lua_State *L) { return binop(L, FVL_SUB); }
static int l_mul(lua_State *L) { return binop(L, FVL_MUL); }
static int l_div(lua_State *L) { return binop(L, FVL_DIV); }
static int l_pow(lua_State *L) { return binop(L, FVL_POW); }
/*** fvl.maximum(a, b) -> tensor
   Elementwise maximum of two tensors (broadcast) or a tensor and a number. */
static int l_maximum(lua_State *L) { return binop(L, FVL_MAX2); }
/*** fvl.minimum(a, b) -> tensor
   Elementwise minimum of two tensors (broadcast) or a tensor and a number. */
static int l_minimum(lua_State *L) { return binop(L, FVL_MIN2); }
#define UN(name, op) static int l_##name(lua_State *L) { fvl_pushtensor(L, fvl_unary(op, T(1))); return 1; }
UN(neg, FVL_NEG) UN(exp, FVL_EXP) UN(log, FVL_LOG) UN(sqrt, FVL_SQRT) UN(abs, FVL_ABS) UN(cos, FVL_COS)
UN(sin, FVL_SIN) UN(acos, FVL_ACOS) UN(tanh, FVL_TANH) UN(sigmoid, FVL_SIGMOID) UN(relu, FVL_RELU)
UN(square, FVL_SQUARE) UN(log1p, FVL_LOG1P) UN(sign, FVL_SIGN)
static int l_floorf(lua_State *L) { fvl_pushtensor(L, fvl_unary(FVL_FLOOR, T(1))); return 1; }
static int l_unm(lua_State *L) { return l_neg(L); }
static int l_clamp(lua_State *L) {
  fvl_tensor *t = T(1);
  double lo = luaL_optnumber(L, 2, -HUGE_VAL), hi = luaL_optnumber(L, 3, HUGE_VAL);
  fvl_pushtensor(L, fvl_clamp(t, lo, hi));
  return 1;
}
static int cmp(lua_State *L, fvl_cmpop op) {
  fvl_tensor *a = T(1), *b = fvl_totensor(L, 2);
  if (b) fvl_pushtensor(L, fvl_compare(op, a, b));
  else fvl_pushtensor(L, fvl_compare_scalar(op, a, luaL_checknumber(L, 2)));
  return 1;
}
static int l_gt(lua_State *L) { return cmp(L, FVL_GT); }
static int l_ge(lua_State *L) { return cmp(L, FVL_GE); }
static int l_lt(lua_State *L) { return cmp(L, FVL_LT); }
static int l_le(lua_State *L) { return cmp(L, FVL_LE); }
static int l_eq(lua_State *L) { return cmp(L, FVL_EQ); }
static int l_ne(lua_State *L) { return cmp(L, FVL_NE); }
/*** fvl.where(cond, a, b) -> tensor
   Elementwise cond ~= 0 and a or b; a and b may be tensors or numbers. */
static int l_where(lua_State *L) {
  fvl_tensor *c = T(1);
  /* each converted argument is pushed (GC-owned) before the next conversion may raise */
  fvl_tensor *a = fvl_astensor(L, 2, FVL_F32);
  fvl_pushtensor(L, a);
  fvl_tensor *b = fvl_astensor(L, 3, FVL_F32);
  fvl_pushtensor(L, b);
  fvl_pushtensor(L, fvl_where(c, a, b));
  return 1;
}

static int keepdim_arg(lua_State *L, int idx) { return lua_toboolean(L, idx); }
static int l_sum(lua_State *L) { fvl_tensor *t = T(1); fvl_pushtensor(L, fvl_sum(t, optdim(L, 2, t, "sum"), keepdim_arg(L, 3))); return 1; }
static int l_mean(lua_State *L) { fvl_tensor *t = T(1); fvl_pushtensor(L, fvl_mean(t, optdim(L, 2, t, "mean"), keepdim_arg(L, 3))); return 1; }
/* the engine's L2 norm (dim, keepdim); fvl.conventions wraps it as t:norm(p, dim, keepdim) */
static int l_norm(lua_State *L) { fvl_tensor *t = T(1); fvl_pushtensor(L, fvl_norm(t, optdim(L, 2, t, "norm"), keepdim_arg(L, 3))); return 1; }
static int l_logsumexp(lua_State *L) { fvl_tensor *t = T(1); fvl_pushtensor(L, fvl_logsumexp(t, optdim(L, 2, t, "logsumexp"), keepdim_arg(L, 3))); return 1; }
/* 0-based engine indices → a new 1-based tensor (the engine's may be saved by autograd) */
static int plus_one(lua_State *L, fvl_tensor *idx) {
  if (!idx) return fvl_raise(L);
  fvl_tensor *out = fvl_empty(FVL_I32, idx->ndim, idx->size);
  if (!out) { fvl_release(idx); return fvl_raise(L); }
  const int32_t *p = fvl_i32(idx);
  int32_t *o = fvl_i32(out);
  for (int64_t i = 0, n = fvl_numel(idx); i < n; i++) o[i] = p[i] + 1;
  fvl_release(idx);
  fvl_pushtensor(L, out);
  return 1;
}
static int minmax(lua_State *L, int ismax) {
  fvl_tensor *t = T(1);
  int d = optdim(L, 2, t, ismax ? "max" : "min");
  fvl_tensor *arg = NULL;
  fvl_tensor *v = ismax ? fvl_max(t, d, keepdim_arg(L, 3), &arg) : fvl_min(t, d, keepdim_arg(L, 3), &arg);
  if (!v) return fvl_raise(L);
  fvl_pushtensor(L, v);
  if (d < 0) { fvl_release(arg); return 1; }
  plus_one(L, arg);   /* indices are 1-based */
  return 2;
}
static int l_max(lua_State *L) { return minmax(L, 1); }
static int l_min(lua_State *L) { return minmax(L, 0); }
static int l_argmax(lua_State *L) {
  fvl_tensor *t = T(1);
  int d = optdim(L, 2, t, "argmax");
  return plus_one(L, fvl_argmax(t, d, keepdim_arg(L, 3)));
}
/* t:argsort([dim=last [, descending=false]]) -> 1-based int32 positions (stable; NaN largest) */
static int l_argsort(lua_State *L) {
  fvl_tensor *t = T(1);
  int d = t->ndim == 0 ? 0 : (lua_isnoneornil(L, 2) ? t->ndim - 1 : dim_arg(L, 2, t, "argsort"));
  if (!lua_isnoneornil(L, 3) && !lua_isboolean(L, 3))
    return fvl_error(L, "argsort: descending (argument 2) expected a boolean, got %s", luaL_typename(L, 3));
  return plus_one(L, fvl_argsort(t, d, lua_toboolean(L, 3)));
}
/*** fvl.normalize(t [, dim [, eps]]) -> tensor
   t / max(‖t‖₂, eps) along dim (default: the last dimension; eps 1e-12), tracked by autograd.
   Errors: a 0-D tensor, dim outside 1..t:dim(). */
static int l_normalize(lua_State *L) {
  fvl_tensor *t = T(1);
  int d = lua_isnoneornil(L, 2) ? t->ndim - 1 : dim_arg(L, 2, t, "normalize");
  if (t->ndim == 0) return fvl_error(L, "normalize: expected at least 1-D tensor");
  fvl_checkfloat(L, t, "normalize", "input");
  fvl_pushtensor(L, fvl_normalize(t, d, luaL_optnumber(L, 3, 1e-12)));
  return 1;
}
/*** fvl.matmul(a, b) -> tensor
   Matrix product of float32 tensors: (N×K)·(K×M) → N×M (OpenBLAS sgemm), tracked by autograd.
   Errors: inner sizes that differ, a dtype other than float32, not 2-D. */
static int l_matmul(lua_State *L) {
  fvl_tensor *a = T(1), *b = T(2);
  fvl_checkfloat(L, a, "matmul", "x");
  fvl_checkfloat(L, b, "matmul", "y");
  fvl_pushtensor(L, fvl_matmul(a, b));
  return 1;
}
/*** fvl.cat(tensors [, dim]) -> tensor
   Concatenates the tensors of a list (one or more) along dim (default 1); other sizes must agree.
   Gradients flow through at most 6 of them. */
static int l_cat(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 2);
  lua_Integer len = luaL_len(L, 1);   /* an __len may return anything: bounded before the cast */
  if (len < 1 || len > INT_MAX / (lua_Integer)sizeof(fvl_tensor *))
    return fvl_error(L, "cat: expected a list of 1 or more tensors, got length %lld", (long long)len);
  int n = (int)len;
  /* the pointers live in a userdata (freed by the GC if an entry raises) and the entries in a
     table at index 4 (an __index may have made the tensor: it stays anchored while C uses it) */
  fvl_tensor **ts = lua_newuserdatauv(L, (size_t)n * sizeof *ts, 0);
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    lua_geti(L, 1, i + 1);
    ts[i] = fvl_totensor(L, -1);
    if (!ts[i]) return fvl_error(L, "cat: entry %d is a %s, expected a tensor", i + 1, luaL_typename(L, -1));
    lua_rawseti(L, 4, i + 1);
  }
  int d = lua_isnoneornil(L, 2) ? 0 : dim_arg(L, 2, ts[0], "cat");
  for (int i = 1; i < n; i++) {   /* the user's 1-based wording; the engine keeps a 0-based invariant */
    char a[64], b[64];
    if (ts[i]->dtype != ts[0]->dtype)
      return fvl_error(L, "cat: tensor %d is %s, tensor 1 is %s (expected one dtype)", i + 1,
                       fvl_dtype_name(ts[i]->dtype), fvl_dtype_name(ts[0]->dtype));
    int same = ts[i]->ndim == ts[0]->ndim;
    for (int k = 0; same && k < ts[0]->ndim; k++) same = k == d || ts[i]->size[k] == ts[0]->size[k];
    if (!same)
      return fvl_error(L, "cat: tensor %d is %s, tensor 1 is %s (expected the same sizes except along dim %d)",
                       i + 1, fvl_shape_str(ts[i], a, sizeof a), fvl_shape_str(ts[0], b, sizeof b), d + 1);
  }
  fvl_pushtensor(L, fvl_cat(n, ts, d));
  return 1;
}

/* ------------------------------------------------------------------ autograd */
static int l_requires_grad(lua_State *L) {
  fvl_tensor *t = T(1);
  int on = lua_isnone(L, 2) ? 1 : lua_toboolean(L, 2);
  if (on && t->dtype != FVL_F32) return fvl_error(L, "requires_grad: only float32 tensors can require grad");
  if (t->grad_fn && !on) return fvl_error(L, "requires_grad: cannot turn off on a computed tensor; use :detach()");
  t->requires_grad = on;
  lua_settop(L, 1);
  return 1;
}
static int l_backward(lua_State *L) {
  fvl_tensor *t = T(1), *g = fvl_opttensor(L, 2);
  fvl_abort_clear();
  if (fvl_backward(t, g) < 0) return fvl_raise(L);
  fvl_gc_charge(L);
  return 0;
}
static int l_zero_grad(lua_State *L) {
  fvl_tensor *t = T(1);
  if (t->grad) fvl_fill_(t->grad, 0);
  return 0;
}
/*** fvl.no_grad(fn, ...) -> the results of fn(...)
   Runs fn with autograd recording off (evaluation, weight updates); restores it afterwards,
   also when fn raises. */
static int l_no_grad(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  int prev = fvl_set_grad_enabled(0);
  int top = lua_gettop(L);
  int rc = lua_pcall(L, top - 1, LUA_MULTRET, 0);
  fvl_set_grad_enabled(prev);
  if (rc != LUA_OK) return lua_error(L);
  return lua_gettop(L);
}
/*** fvl.grad_enabled([on]) -> boolean
   Whether autograd records operations; with an argument, switches it first. */
static int l_grad_enabled(lua_State *L) {
  if (!lua_isnone(L, 1)) fvl_set_grad_enabled(lua_toboolean(L, 1));
  lua_pushboolean(L, fvl_grad_enabled());
  return 1;
}

/* ------------------------------------------------------------------ files */
/*** fvl.save(path, tensor | {name = tensor, ...}) -> true | nil, message
   A tensor is written as .npy (float32 <f4, int32 <i4); a table of named tensors as an .npz
   archive. Files are written atomically. */
static int l_save(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  fvl_tensor *t = T(2);
  if (fvl_npy_save(path, t) < 0) { lua_pushnil(L); lua_pushstring(L, fvl_errmsg()); return 2; }
  lua_pushboolean(L, 1);
  return 1;
}
/*** fvl.load(path) -> tensor | {name = tensor, ...} | nil, message
   Reads .npy of any plain NumPy dtype (a float32 or int32 result) or an
   .npz archive (a table of tensors). Malformed headers are an error naming the file. */
static int l_load(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  fvl_tensor *t = fvl_npy_load(path);
  if (!t) { lua_pushnil(L); lua_pushstring(L, fvl_errmsg()); return 2; }
  fvl_pushtensor(L, t);
  return 1;
}

/* ------------------------------------------------------------------ metatable */
static int l_gc(lua_State *L) {
  fvl_tensor **p = luaL_checkudata(L, 1, FVL_TENSOR_MT);
  fvl_release(*p);
  *p = NULL;
  return 0;
}
static int l_free(lua_State *L) { return l_gc(L); }

/* ------------------------------------------------------------------ method reference
   The doc comments of the tensor methods registered below (docs/api.md, the REPL's `? name`).
   Dimensions are 1-based; a negative dim counts from the end (-1 = the last). Indices given or
   returned are 1-based (int32 tensors for index lists). Errors name the method, the argument,
   what was expected and what came. */

/*** fvl.Tensor:shape() -> {sizes}
   fvl.Tensor:size([dim]) -> {sizes} | integer
   The sizes as a Lua list ({} for a 0-dimensional tensor); t:size(dim) the size of one dimension.
   Errors: dim outside 1..t:dim() (or -t:dim()..-1). */

/*** fvl.Tensor:stride() -> {strides}
   The strides in elements, one per dimension (a view's strides differ from the sizes' products). */

/*** fvl.Tensor:dim() -> integer
   fvl.Tensor:numel() -> integer
   The number of dimensions (0 for a scalar tensor); the number of elements. */

/*** fvl.Tensor:dtype() -> "float32" | "int32"
   The element type. int32 tensors hold labels and indices; most math is float32 only. */

/*** fvl.Tensor:is_contiguous() -> boolean
   fvl.Tensor:contiguous() -> tensor
   Whether the elements lie in row-major order without gaps; contiguous() returns the tensor
   itself when it is, else a row-major copy (tracked by autograd). */

/*** fvl.Tensor:get(i1, i2, ...) -> number
   fvl.Tensor:set(i1, i2, ..., value) -> tensor
   One element by its 1-based indices (also as a table: t:get{2, 3}); set writes it in place and
   returns t (not tracked). int32 tensors give integers.
   Errors: not one index per dimension; an index outside 1..size. */

/*** fvl.Tensor:totable() -> table
   fvl.Tensor:item() -> number
   The values as nested Lua tables (a number for a 0-dimensional tensor); item() the value of a
   one-element tensor. Errors: item() of a tensor with more than one element. */

/*** fvl.Tensor:t() -> tensor
   fvl.Tensor:transpose(dim1, dim2) -> tensor
   Views (sharing storage, tracked) with two dimensions swapped; t() is transpose(1, 2) of a
   2-D tensor. Errors: t() of a tensor that is not 2-D; dims out of range. */

/*** fvl.Tensor:reshape(shape) -> tensor
   fvl.Tensor:view(shape) -> tensor
   The same elements with another shape ({B, -1}: one size may be -1, inferred); a view when the
   layout allows, else a copy (tracked either way). view is reshape's alias.
   Errors: a size product that differs from numel(); more than one -1. */

/*** fvl.Tensor:narrow(dim, start, length) -> tensor
   A view of rows start..start+length-1 along dim (1-based, tracked).
   Errors: rows outside 1..size of dim, a negative length. */

/*** fvl.Tensor:select(dim, i) -> tensor
   The slice i along dim, that dimension dropped (a view, tracked); x[i] is select(1, i).
   Errors: i outside 1..size of dim. */

/*** fvl.Tensor:unsqueeze(dim) -> tensor
   A view with a new dimension of size 1 at position dim (1..t:dim()+1). */

/*** fvl.Tensor:index(dim, indices) -> tensor
   The slices at the 1-based indices along dim, in their order (a copy; gradients flow back to the
   chosen slices, added where an index repeats). indices: an int32 tensor or a Lua list.
   Errors: an index outside 1..size of dim. */

/*** fvl.Tensor:gather(dim, indices) -> tensor
   torch.gather: out[i][j] = t[i][indices[i][j]] for dim 2 (likewise for other dims); indices an
   int32 tensor of 1-based positions with t's shape except along dim. Tracked.
   Errors: indices not int32; a position outside 1..size of dim. */

/*** fvl.Tensor:index_add(dim, indices, source) -> tensor
   In place: adds source's slices into t's slices at the 1-based indices along dim (repeats add
   up); returns t. Not tracked. Errors: an index outside 1..size; source's shape. */

/*** fvl.Tensor:clone() -> tensor
   fvl.Tensor:detach() -> tensor
   clone(): a contiguous copy (tracked: gradients flow back to t). detach(): the same storage
   without autograd history (a constant). */

/*** fvl.Tensor:float() -> tensor
   fvl.Tensor:int() -> tensor
   A copy converted to float32 / int32 (float to int truncates toward zero and saturates at the
   int32 range). */

/*** fvl.Tensor:copy(source) -> tensor
   fvl.Tensor:fill(value) -> tensor
   In place (not tracked), returning t: copy() writes source (a tensor broadcasting to t's shape,
   or a number) into t; fill() sets every element to value.
   Errors: shapes that do not broadcast. */

/*** fvl.Tensor:uniform_([lo [, hi]]) -> tensor
   fvl.Tensor:normal_([mean [, std]]) -> tensor
   In place: samples from U[lo, hi) (default [0, 1)) or N(mean, std²) (default 0, 1) drawn from the
   global generator (fvl.manual_seed); returns t. Errors: an int32 tensor. */

/*** fvl.Tensor:add(other) -> tensor
   fvl.Tensor:sub(other) -> tensor
   fvl.Tensor:mul(other) -> tensor
   fvl.Tensor:div(other) -> tensor
   fvl.Tensor:pow(other) -> tensor
   fvl.Tensor:maximum(other) -> tensor
   fvl.Tensor:minimum(other) -> tensor
   Elementwise binary ops with NumPy broadcasting; other is a tensor or a number (a - b, a * 2,
   2 / a, a ^ 2 work as operators too, and -a is neg()). Tracked by autograd; maximum/minimum pass
   the gradient to the larger/smaller input (the first on ties).
   Errors: shapes that do not broadcast; an argument that is neither a tensor nor a number. */

/*** fvl.Tensor:neg() -> tensor
   fvl.Tensor:exp() -> tensor
   fvl.Tensor:log() -> tensor
   fvl.Tensor:log1p() -> tensor
   fvl.Tensor:sqrt() -> tensor
   fvl.Tensor:square() -> tensor
   fvl.Tensor:abs() -> tensor
   fvl.Tensor:sign() -> tensor
   fvl.Tensor:floor() -> tensor
   fvl.Tensor:cos() -> tensor
   fvl.Tensor:sin() -> tensor
   fvl.Tensor:acos() -> tensor
   fvl.Tensor:tanh() -> tensor
   fvl.Tensor:sigmoid() -> tensor
   fvl.Tensor:relu() -> tensor
   Elementwise float32 functions, tracked by autograd (sign and floor have zero gradient; acos's
   gradient is −1/sqrt(1 − x²), infinite at ±1: clamp first, as the margin heads do). */

/*** fvl.Tensor:clamp([lo [, hi]]) -> tensor
   Elementwise min(max(t, lo), hi) (lo default −inf, hi +inf); tracked, the gradient passes where
   lo <= t <= hi (equality included, as torch.clamp). */

/*** fvl.Tensor:gt(other) -> tensor
   fvl.Tensor:ge(other) -> tensor
   fvl.Tensor:lt(other) -> tensor
   fvl.Tensor:le(other) -> tensor
   fvl.Tensor:eq(other) -> tensor
   fvl.Tensor:ne(other) -> tensor
   Elementwise comparisons with a tensor (broadcasting) or a number: float32 1 where true, 0
   elsewhere; not tracked (masks for fvl.where or a product). */

/*** fvl.Tensor:sum([dim [, keepdim]]) -> tensor
   fvl.Tensor:mean([dim [, keepdim]]) -> tensor
   fvl.Tensor:logsumexp([dim [, keepdim]]) -> tensor
   Reductions over dim, or over every element (a 0-dimensional tensor) without dim; keepdim = true
   keeps dim with size 1 (x:sum(2) of a B×C tensor has shape {B}, with keepdim {B, 1}). Tracked;
   logsumexp is max-shifted (stable). The result is float32, also for an int32 tensor (whose
   values are exact up to 2^24; PyTorch keeps the integer type). Errors: dim out of range. */

/*** fvl.Tensor:max([dim [, keepdim]]) -> tensor [, indices]
   fvl.Tensor:min([dim [, keepdim]]) -> tensor [, indices]
   fvl.Tensor:argmax([dim [, keepdim]]) -> int32 tensor
   The largest (smallest) values along dim with their 1-based int32 positions, or the value over
   all elements (no positions) without dim; argmax the positions alone (ties: the first). The
   values are tracked (gradient to the chosen element). The values are float32, also for an
   int32 tensor (labels:max() is a float32 scalar: use :item() for the number). */

/*** fvl.Tensor:argsort([dim [, descending]]) -> int32 tensor
   The 1-based positions that sort t along dim (default the last), ascending unless descending =
   true; stable (equal values keep their order), NaN sorts as the largest. See t:sort and t:topk.
   Errors: descending not a boolean; dim out of range. */

/*** fvl.Tensor:normalize([dim [, eps]]) -> tensor
   fvl.Tensor:matmul(other) -> tensor
   Method forms of fvl.normalize(t, dim, eps) and fvl.matmul(t, other). */

/*** fvl.Tensor:requires_grad([on]) -> tensor
   Marks a float32 leaf tensor as a parameter (on default true): operations on it are recorded
   and backward() fills t.grad. Returns t. Errors: an int32 tensor; turning it off on a computed
   tensor (use detach()). */

/*** fvl.Tensor:backward([gradient]) -> nothing
   Back-propagates from t (a one-element tensor, or any tensor with gradient of its shape) through
   the recorded graph, accumulating into the .grad of every leaf that requires grad; the graph's
   saved buffers are freed, so a second backward through it is an error. Ctrl-C stops it cleanly.
   Errors: a gradient of another shape; a graph already back-propagated. */

/*** fvl.Tensor:zero_grad() -> nothing
   Sets t.grad to zeros in place when t has one (optimisers' zero_grad sets gradients to nil
   instead, which saves a pass; t.grad = nil does that by hand). */

/*** fvl.Tensor:free() -> nothing
   Releases the tensor's memory now instead of at the next garbage collection (also what a
   `<close>` variable does); any later use of t is an error ("tensor used after free()"). */

static const luaL_Reg methods[] = {
  {"shape", l_shape}, {"stride", l_stride}, {"dim", l_dim}, {"numel", l_numel}, {"size", l_size},
  {"dtype", l_dtype}, {"is_contiguous", l_is_contiguous}, {"get", l_get}, {"set", l_set},
  {"totable", l_totable}, {"item", l_item}, {"t", l_t}, {"transpose", l_transpose},
  {"reshape", l_reshape}, {"view", l_reshape}, {"narrow", l_narrow}, {"select", l_select},
  {"unsqueeze", l_unsqueeze}, {"index", l_index}, {"gather", l_gather}, {"index_add", l_index_add},
  {"contiguous", l_contiguous}, {"clone", l_clone}, {"detach", l_detach}, {"float", l_float},
  {"int", l_int}, {"copy", l_copy}, {"fill", l_fill}, {"uniform_", l_uniform_}, {"normal_", l_normal_},
  {"add", l_add}, {"sub", l_sub}, {"mul", l_mul}, {"div", l_div}, {"pow", l_pow},
  {"maximum", l_maximum}, {"minimum", l_minimum},
  {"neg", l_neg}, {"exp", l_exp}, {"log", l_log}, {"sqrt", l_sqrt}, {"abs", l_abs}, {"cos", l_cos},
  {"sin", l_sin}, {"acos", l_acos}, {"tanh", l_tanh}, {"sigmoid", l_sigmoid}, {"relu", l_relu},
  {"square", l_square}, {"log1p", l_log1p}, {"sign", l_sign}, {"floor", l_floorf}, {"clamp", l_clamp},
  {"gt", l_gt}, {"ge", l_ge}, {"lt", l_lt}, {"le", l_le}, {"eq", l_eq}, {"ne", l_ne},
  {"sum", l_sum}, {"mean", l_mean}, {"max", l_max}, {"min", l_min}, {"argmax", l_argmax}, {"argsort", l_argsort},
  {"norm", l_norm}, {"logsumexp", l_logsumexp}, {"normalize", l_normalize}, {"matmul", l_matmul},
  {"requires_grad", l_requires_grad}, {"backward", l_backward}, {"zero_grad", l_zero_grad},
  {"free", l_free}, {NULL, NULL}};

static int l_index_mm(lua_State *L) {
  fvl_tensor **p = luaL_checkudata(L, 1, FVL_TENSOR_MT);
  if (lua_type(L, 2) == LUA_TSTRING) {
    const char *k = lua_tostring(L, 2);
    if (!*p && (strcmp(k, "grad") == 0 || strcmp(k, "needs_grad") == 0 || strcmp(k, "is_leaf") == 0 ||
                strcmp(k, "grad_fn") == 0))
      return fvl_error(L, "tensor.%s: tensor used after free()", k);
    if (strcmp(k, "grad") == 0) {
      if ((*p)->grad) fvl_pushtensor(L, fvl_retain((*p)->grad)); else lua_pushnil(L);
      return 1;
    }
    if (strcmp(k, "needs_grad") == 0) { lua_pushboolean(L, (*p)->requires_grad); return 1; }
    if (strcmp(k, "is_leaf") == 0) { lua_pushboolean(L, (*p)->grad_fn == NULL); return 1; }
    if (strcmp(k, "grad_fn") == 0) {
      if ((*p)->grad_fn) lua_pushstring(L, (*p)->grad_fn->name); else lua_pushnil(L);
      return 1;
    }
  }
  lua_pushvalue(L, 2);
  lua_rawget(L, lua_upvalueindex(1));
  return 1;
}
static int l_newindex_mm(lua_State *L) {
  fvl_tensor *t = T(1);
  const char *k = luaL_checkstring(L, 2);
  if (strcmp(k, "grad") == 0) {
    fvl_tensor *g = fvl_opttensor(L, 3);
    if (g && !fvl_same_shape(g, t)) return fvl_error(L, "tensor.grad: gradient shape differs from the tensor's");
    fvl_release(t->grad);
    t->grad = g ? fvl_clone(g) : NULL;
    return 0;
  }
  return fvl_error(L, "tensor: cannot set field '%s' (tensors have only .grad)", k);
}
static int l_len(lua_State *L) {
  fvl_tensor *t = T(1);
  lua_pushinteger(L, t->ndim ? t->size[0] : 1);
  return 1;
}
static int l_unm_mm(lua_State *L) { lua_settop(L, 1); return l_unm(L); }



int fvl_open_tensor(lua_State *L) {
  int top = lua_gettop(L);
  if (luaL_newmetatable(L, FVL_TENSOR_MT)) {
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "methods");
    lua_pushcclosure(L, l_index_mm, 1);
    lua_setfield(L, -2, "__index");
    static const luaL_Reg mm[] = {{"__gc", l_gc}, {"__close", l_gc}, {"__tostring", l_tostring},
                                  {"__newindex", l_newindex_mm}, {"__add", l_add}, {"__sub", l_sub},
                                  {"__mul", l_mul}, {"__div", l_div}, {"__pow", l_pow},
                                  {"__unm", l_unm_mm}, {"__len", l_len}, {NULL, NULL}};
    luaL_setfuncs(L, mm, 0);
    lua_pushstring(L, "fvl.Tensor");
    lua_setfield(L, -2, "__name");
  }
  lua_pop(L, 1);
  static const luaL_Reg fns[] = {
    {"tensor", l_tensor}, {"zeros", l_zeros}, {"ones", l_ones}, {"empty", l_empty}, {"full", l_full},
    {"arange", l_arange}, {"rand", l_rand}, {"randn", l_randn}, {"randint", l_randint},
    {"normalize", l_normalize},
    {"matmul", l_matmul}, {"cat", l_cat}, {"where", l_where}, {"no_grad", l_no_grad},
    {"grad_enabled", l_grad_enabled}, {"save", l_save}, {"load", l_load},
    {"maximum", l_maximum}, {"minimum", l_minimum}, {NULL, NULL}};
  luaL_setfuncs(L, fns, 0);
  /* fvl.Tensor = the method table, so Lua code can add methods */
  luaL_getmetatable(L, FVL_TENSOR_MT);
  lua_getfield(L, -1, "methods");
  lua_setfield(L, top, "Tensor");
  lua_pop(L, 1);
  lua_settop(L, top);
  return 0;
}
