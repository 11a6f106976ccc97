/* bind_labels.c — checked labels: the value a head's label check leaves (fvl.Labels).
 *
 * Head:check_input checks a batch's labels once (fvl._check_labels → fvl_checklabels, errors
 * naming the head) and gets back an fvl.Labels userdata: the 0-based int32 ids, the row count
 * and the class bound 1..C they were checked against. Every fvl.F binding takes that value
 * without scanning it again: it only compares the row count and the bound with the call's
 * (O(1)). The ids themselves are never handed to Lua (y:tensor() and y:totable() give copies),
 * so a checked value cannot change after its check; the metatable is locked (__metatable), the
 * value takes no fields, and the block carries its own address, so a userdata re-labelled with
 * debug.setmetatable is refused. */
#include <stdio.h>
#include <string.h>
#include <stdint.h>
#include "bind.h"

typedef struct fvl_labels {
  const void *self;        /* the block's own address: anything else is not a checked value */
  fvl_tensor *y;           /* 0-based int32, contiguous, n entries; private (never in Lua) */
  int64_t n;               /* rows */
  int64_t nclasses;        /* checked against 1..nclasses (0: no class; < 0: any id) */
  char by[40];             /* the function whose check made it (messages) */
} fvl_labels;

/* full scans of 1-based labels by fvl_checklabels (fvl._label_scans: a test counts them) */
static lua_Integer label_scans;
void fvl_labels_count_scan(void) { label_scans++; }

/* the checked value at idx, or NULL when idx holds something else (a forged one raises) */
static fvl_labels *to_labels(lua_State *L, int idx) {
  fvl_labels *p = luaL_testudata(L, idx, FVL_LABELS_MT);
  if (!p) return NULL;
  if (lua_rawlen(L, idx) != sizeof *p || p->self != p)
    luaL_error(L, "fvl.Labels: argument #%d is not a checked labels value (forged)", idx);
  if (!p->y) luaL_error(L, "fvl.Labels: argument #%d was used after it was collected", idx);
  return p;
}
int fvl_islabels(lua_State *L, int idx) { return to_labels(L, idx) != NULL; }
fvl_tensor *fvl_labels_parts(lua_State *L, int idx, int64_t *nclasses, const char **by) {
  fvl_labels *p = to_labels(L, idx);
  if (!p) return NULL;
  *nclasses = p->nclasses;
  *by = p->by;
  return p->y;
}

static void bound_str(char *b, size_t len, int64_t hi) {
  if (hi < 0) snprintf(b, len, "any class id");
  else snprintf(b, len, "1..%lld", (long long)hi);
}

/* the O(1) check of a checked value against a call: n rows (n < 0: any count) and the bound
 * 1..hi of the call (hi < 0: any id; indices: a bound of at least the value's own). */
fvl_tensor *fvl_labels_match(lua_State *L, int idx, const char *fn, const char *arg, int64_t n, int64_t hi,
                             int labels) {
  fvl_labels *p = to_labels(L, idx);
  if (!p) return NULL;
  if (n >= 0 && p->n != n)
    fvl_error(L, "%s: %s has %lld entries but there are %lld rows (expected one per row)", fn, arg,
              (long long)p->n, (long long)n);
  int ok = hi < 0 || p->nclasses == hi || (!labels && p->nclasses >= 0 && p->nclasses <= hi);
  if (!ok) {
    char was[48], want[48];
    bound_str(was, sizeof was, p->nclasses);
    bound_str(want, sizeof want, hi);
    fvl_error(L, "%s: %s were checked against %s (by %s) but this call needs %s (pass the ids themselves "
              "to check them for it)", fn, arg, was, p->by, want);
  }
  return p->y;
}

/* pushes a new checked value that takes over y (0-based int32, contiguous, 1-D) */
void fvl_pushlabels(lua_State *L, fvl_tensor *y, const char *by, int64_t nclasses) {
  fvl_pushtensor(L, y);   /* the GC owns y until the value holds it: an allocation error frees it */
  fvl_labels *p = lua_newuserdatauv(L, sizeof *p, 0);
  memset(p, 0, sizeof *p);
  p->self = p;
  p->y = fvl_retain(y);
  p->n = y->size[0];
  p->nclasses = nclasses < 0 ? -1 : nclasses;
  snprintf(p->by, sizeof p->by, "%s", by);
  luaL_setmetatable(L, FVL_LABELS_MT);
  lua_remove(L, -2);
}

static const fvl_labels *check_self(lua_State *L) {
  const fvl_labels *p = to_labels(L, 1);
  if (!p) luaL_typeerror(L, 1, "fvl.Labels");
  return p;
}

/* y:numel() / #y -> rows */
static int l_numel(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)check_self(L)->n);
  return 1;
}
/* y:classes() -> C of the check (nil: any id) */
static int l_classes(lua_State *L) {
  const fvl_labels *p = check_self(L);
  if (p->nclasses < 0) lua_pushnil(L);
  else lua_pushinteger(L, (lua_Integer)p->nclasses);
  return 1;
}
/* y:tensor() -> a new 1-D int32 tensor of the 1-based ids (a copy) */
static int l_tensor(lua_State *L) {
  const fvl_labels *p = check_self(L);
  fvl_tensor *t = fvl_empty(FVL_I32, 1, &p->n);
  if (!t) return fvl_raise(L);
  const int32_t *s = fvl_i32(p->y);
  int32_t *o = fvl_i32(t);
  for (int64_t i = 0; i < p->n; i++) o[i] = s[i] + 1;
  fvl_pushtensor(L, t);
  return 1;
}
/* y:totable() -> Lua list of the 1-based ids */
static int l_totable(lua_State *L) {
  const fvl_labels *p = check_self(L);
  if (p->n > INT32_MAX) return luaL_error(L, "totable: %I rows do not fit a Lua list", (lua_Integer)p->n);
  lua_createtable(L, (int)p->n, 0);
  const int32_t *s = fvl_i32(p->y);
  for (int64_t i = 0; i < p->n; i++) {
    lua_pushinteger(L, (lua_Integer)s[i] + 1);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  return 1;
}
static int l_tostring(lua_State *L) {
  const fvl_labels *p = check_self(L);
  char b[48];
  bound_str(b, sizeof b, p->nclasses);
  lua_pushfstring(L, "fvl.Labels(%I rows, %s, checked by %s)", (lua_Integer)p->n, b, p->by);
  return 1;
}
static int l_newindex(lua_State *L) {
  return luaL_error(L, "fvl.Labels is read-only (a checked value cannot change; y:tensor() gives a copy)");
}
static int l_gc(lua_State *L) {
  fvl_labels *p = luaL_testudata(L, 1, FVL_LABELS_MT);
  if (p && lua_rawlen(L, 1) == sizeof *p && p->self == p && p->y) {
    fvl_release(p->y);
    p->y = NULL;
  }
  return 0;
}
/* fvl._label_scans() -> how many label lists/tensors fvl_checklabels has scanned (tests) */
static int l_label_scans(lua_State *L) {
  lua_pushinteger(L, label_scans);
  return 1;
}

/* registers the fvl.Labels metatable and fvl._label_scans into the table on top of the stack */
void fvl_open_labels(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"numel", l_numel}, {"classes", l_classes}, {"tensor", l_tensor}, {"totable", l_totable}, {NULL, NULL}};
  static const luaL_Reg meta[] = {
    {"__newindex", l_newindex}, {"__len", l_numel}, {"__tostring", l_tostring}, {"__gc", l_gc}, {NULL, NULL}};
  if (luaL_newmetatable(L, FVL_LABELS_MT)) {
    luaL_setfuncs(L, meta, 0);
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pushliteral(L, FVL_LABELS_MT);
    lua_setfield(L, -2, "__metatable");
  }
  lua_pop(L, 1);
  lua_pushcfunction(L, l_label_scans);
  lua_setfield(L, -2, "_label_scans");
}
