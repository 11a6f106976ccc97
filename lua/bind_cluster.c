/* bind_cluster.c — raw bindings of engine/cluster.c (k-means, NMI / AMI), registered as
 * fvl._cluster. The public functions are fvl.eval.kmeans / nmi / ami / mutual_info
 * (lua/fvl/cluster.lua); these check every argument once (shapes, finite values, 1-based labels,
 * options) and call the engine. */
#include <math.h>
#include <stdint.h>
#include "bind.h"
#include "cluster.h"
#include "rng.h"

enum { KM_SEED, KM_NINIT, KM_MAXITER, KM_TOL, KM_INIT, KM_N };
static const fvl_optdef KMEANS_OPTS[KM_N + 1] = {
  [KM_SEED] = {"seed", FVL_OPT_INTEGER, 0, 0, 9007199254740992.0, NULL},
  [KM_NINIT] = {"n_init", FVL_OPT_INTEGER, 1, 1, 10000, NULL},
  [KM_MAXITER] = {"max_iter", FVL_OPT_INTEGER, 300, 1, 1000000, NULL},
  [KM_TOL] = {"tol", FVL_OPT_NUMBER, 1e-4, 0, HUGE_VAL, NULL},
  [KM_INIT] = {"init", FVL_OPT_ENUM, 0, FVL_NORANGE, "k-means++|random"},
  [KM_N] = FVL_OPT_END};

/* _cluster.kmeans(x, k, opts) -> assign (int32, 1-based), centres (k×D), inertia, n_iter */
static int l_kmeans(lua_State *L) {
  const char *fn = "kmeans";
  fvl_tensor *x = fvl_checkf32(L, 1, fn, "x", 2);   /* pushed: the stack owns it */
  int64_t n = x->size[0], d = x->size[1];
  lua_Integer k = luaL_checkinteger(L, 2);
  fvl_optval o[KM_N];
  fvl_readopts(L, 3, fn, KMEANS_OPTS, o);
  if (n < 1 || d < 1) return fvl_error(L, "%s: x is %lld×%lld, expected at least one row and one column", fn,
                                       (long long)n, (long long)d);
  if (n > INT32_MAX || d > INT32_MAX)
    return fvl_error(L, "%s: x is %lld×%lld, expected at most %d rows and columns", fn, (long long)n,
                     (long long)d, INT32_MAX);
  if (k < 1 || k > n)
    return fvl_error(L, "%s: k = %lld is outside 1..%lld (the number of rows of x)", fn, (long long)k,
                     (long long)n);
  fvl_checkfinite(L, x, fn, "x");
  fvl_kmeans_opts ko = {(int)o[KM_NINIT].num, (int)o[KM_MAXITER].num, o[KM_TOL].num, 0,
                        (int)o[KM_INIT].num};
  if (o[KM_SEED].set) ko.seed = (uint64_t)o[KM_SEED].num;
  else {   /* the global generator (fvl.manual_seed) picks the seed */
    fvl_rng *g = fvl_rng_global();
    ko.seed = fvl_rng_bits(g->seed, fvl_rng_reserve(g, 1));
  }
  fvl_tensor *assign = fvl_empty(FVL_I32, 1, &n);
  fvl_pushtensor(L, assign);
  fvl_tensor *centres = fvl_empty(FVL_F32, 2, (int64_t[]){k, d});
  fvl_pushtensor(L, centres);
  double inertia = 0;
  int iters = 0;
  if (fvl_kmeans(fvl_f32(x), n, d, k, &ko, fvl_i32(assign), fvl_f32(centres), &inertia, &iters) < 0)
    return fvl_raise(L);
  for (int64_t i = 0; i < n; i++) fvl_i32(assign)[i]++;
  lua_pushnumber(L, inertia);
  lua_pushinteger(L, iters);
  fvl_gc_charge(L);
  return 4;
}

/* _cluster.mutual_info(a, b, want_emi, fn) -> {mi=, h_a=, h_b=, nmi=, emi=, ami=, n=, ka=, kb=}
 * fn: the public function's name for the messages (a fixed stack slot) */
static int l_mutual_info(lua_State *L) {
  lua_settop(L, 4);
  const char *fn = luaL_optstring(L, 4, "mutual_info");
  lua_pushfstring(L, "%s: labels_a", fn);   /* slot 5 */
  lua_pushfstring(L, "%s: labels_b", fn);   /* slot 6 */
  fvl_tensor *a = fvl_checklabels(L, 1, lua_tostring(L, 5), -1, -1);
  fvl_pushtensor(L, a);
  int64_t n = a->size[0];
  if (n < 1) return fvl_error(L, "%s: labels_a: expected at least one label, got none", fn);
  fvl_tensor *b = fvl_checklabels(L, 2, lua_tostring(L, 6), -1, -1);
  fvl_pushtensor(L, b);
  if (b->size[0] != n)
    return fvl_error(L, "%s: labels_a has %lld entries but labels_b has %lld (expected one label each per row)",
                     fn, (long long)n, (long long)b->size[0]);
  fvl_mi_result r;
  if (fvl_mutual_info(fvl_i32(a), fvl_i32(b), n, lua_toboolean(L, 3), &r) < 0) return fvl_raise(L);
  lua_createtable(L, 0, 9);
  const struct { const char *k; double v; } f[] = {{"mi", r.mi}, {"h_a", r.h_a}, {"h_b", r.h_b},
                                                   {"nmi", r.nmi}, {"emi", r.emi}, {"ami", r.ami}};
  for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
    if (isnan(f[i].v)) continue;
    lua_pushnumber(L, f[i].v);
    lua_setfield(L, -2, f[i].k);
  }
  lua_pushinteger(L, r.n); lua_setfield(L, -2, "n");
  lua_pushinteger(L, r.ka); lua_setfield(L, -2, "ka");
  lua_pushinteger(L, r.kb); lua_setfield(L, -2, "kb");
  return 1;
}

int fvl_open_cluster(lua_State *L) {
  static const luaL_Reg fns[] = {{"kmeans", l_kmeans}, {"mutual_info", l_mutual_info}, {NULL, NULL}};
  luaL_newlib(L, fns);
  lua_setfield(L, -2, "_cluster");
  fvl_register_opts(L, -1, "kmeans", KMEANS_OPTS);
  return 0;
}
