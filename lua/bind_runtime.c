/* bind_runtime.c — the process-wide state behind fvl: the seeded generator (manual_seed,
 * rng_state), threads, memory accounting, build info, and the raw baselines of fvl._bench. */
#include <string.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <cblas.h>
#include "bind.h"
#include "rng.h"

/*** fvl.manual_seed(seed)
   Seeds the one global generator (fvl.rand, fvl.randn, dropout, shuffles...). Results do not
   depend on the thread count. */
static int l_manual_seed(lua_State *L) {
  lua_Integer s = luaL_checkinteger(L, 1);
  fvl_rng_seed(fvl_rng_global(), (uint64_t)s);
  return 0;
}
/*** fvl.rng_state() -> {seed =, counter =}
   The global generator's state (decimal strings), for checkpoints; see fvl.set_rng_state. */
static int l_rng_state(lua_State *L) {
  fvl_rng *r = fvl_rng_global();
  lua_createtable(L, 0, 2);
  char buf[32];
  snprintf(buf, sizeof buf, "%llu", (unsigned long long)r->seed);
  lua_pushstring(L, buf);
  lua_setfield(L, -2, "seed");
  snprintf(buf, sizeof buf, "%llu", (unsigned long long)r->counter);
  lua_pushstring(L, buf);
  lua_setfield(L, -2, "counter");
  return 1;
}
/* a decimal string (as fvl.rng_state writes them: digits only) that fits 64 bits → 1 and *v */
static int parse_u64(const char *s, uint64_t *v) {
  uint64_t x = 0;
  if (!s || !*s) return 0;
  for (; *s; s++) {
    if (*s < '0' || *s > '9' || x > (UINT64_MAX - (uint64_t)(*s - '0')) / 10) return 0;
    x = x * 10 + (uint64_t)(*s - '0');
  }
  *v = x;
  return 1;
}
#define WANT_RNG "expected {seed=, counter=} as from fvl.rng_state() (decimal strings in 0..2^64-1)"
/* reads {seed =, counter =} at idx strictly (the two keys only, decimal strings in 0..2^64−1): 0, or -1
 * with the message in msg */
static int read_rng_state(lua_State *L, int idx, uint64_t *seed, uint64_t *counter, char *msg, size_t n) {
  static const char *keys[2] = {"seed", "counter"};
  uint64_t *out[2] = {seed, counter};
  if (!lua_istable(L, idx)) {
    snprintf(msg, n, "%s, got %s", WANT_RNG, luaL_typename(L, idx));
    return -1;
  }
  lua_pushnil(L);
  while (lua_next(L, idx)) {   /* raw keys: nothing but seed and counter */
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TSTRING || (strcmp(lua_tostring(L, -1), "seed") && strcmp(lua_tostring(L, -1), "counter"))) {
      snprintf(msg, n, "%s, got the key %s", WANT_RNG, luaL_tolstring(L, -1, NULL));
      lua_pop(L, 2);
      return -1;
    }
  }
  for (int k = 0; k < 2; k++) {
    lua_getfield(L, idx, keys[k]);   /* stays on the stack while its text is read */
    int ok = lua_type(L, -1) == LUA_TSTRING && parse_u64(lua_tostring(L, -1), out[k]);
    if (!ok) {
      snprintf(msg, n, "%s, got %s = %s%s%s", WANT_RNG, keys[k], lua_type(L, -1) == LUA_TSTRING ? "'" : "",
               lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : luaL_typename(L, -1),
               lua_type(L, -1) == LUA_TSTRING ? "'" : "");
      lua_pop(L, 1);
      return -1;
    }
    lua_pop(L, 1);
  }
  return 0;
}
/*** fvl.set_rng_state(state)
   Restores a state from fvl.rng_state(). Errors: anything but {seed=, counter=} decimal strings that
   fit 64 bits. */
static int l_set_rng_state(lua_State *L) {
  uint64_t seed, counter;
  char msg[256];
  lua_settop(L, 1);
  if (read_rng_state(L, 1, &seed, &counter, msg, sizeof msg)) return fvl_error(L, "set_rng_state: %s", msg);
  fvl_rng *r = fvl_rng_global();
  r->seed = seed;
  r->counter = counter;
  return 0;
}
/* fvl._check_rng_state(state) -> true | nil, message: set_rng_state's check alone (checkpoint headers) */
static int l_check_rng_state(lua_State *L) {
  uint64_t seed, counter;
  char msg[256];
  lua_settop(L, 1);
  if (read_rng_state(L, 1, &seed, &counter, msg, sizeof msg)) { lua_pushnil(L); lua_pushstring(L, msg); return 2; }
  lua_pushboolean(L, 1);
  return 1;
}
/*** fvl.threads([n]) -> n
   The OpenMP threads of the engine and OpenBLAS; with n, sets it first (0: all cores,
   1..1024). Errors: n outside 0..1024. */
static int l_threads(lua_State *L) {
  if (!lua_isnoneornil(L, 1)) {
    lua_Integer n = luaL_checkinteger(L, 1);
    if (n < 0 || n > 1024) return fvl_error(L, "threads: n = %d (expected 0 for all cores, or 1..1024)", (int)n);
    fvl_set_threads((int)n);
  }
  lua_pushinteger(L, fvl_get_threads());
  return 1;
}
/*** fvl.mem([reset]) -> {live =, peak =, cached =}
   Bytes of tensor storage held now and at most since the start (or the last reset; reset = true
   resets the peak after reading it); cached = freed blocks of 32 MB and more kept for the next
   tensor of their size (not counted in live or peak; fvl.mem_release() gives them back). */
static int l_mem(lua_State *L) {
  lua_createtable(L, 0, 3);
  lua_pushinteger(L, (lua_Integer)fvl_bytes_cached());
  lua_setfield(L, -2, "cached");
  lua_pushinteger(L, (lua_Integer)fvl_bytes_live());
  lua_setfield(L, -2, "live");
  lua_pushinteger(L, (lua_Integer)fvl_bytes_peak());
  lua_setfield(L, -2, "peak");
  if (lua_toboolean(L, 1)) fvl_bytes_peak_reset();
  return 1;
}
/*** fvl.mem_release() -> bytes
   Gives the freed blocks the engine keeps for reuse (fvl.mem().cached) back to the system, and
   trims the heap; returns the cached bytes released. */
static int l_mem_release(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)fvl_mem_release());
  return 1;
}
/*** fvl.info() -> {version =, lua =, blas =, blas_core =, threads =, ...}
   Versions and the build: FaceVerLoss, Lua, the OpenBLAS build and core, threads. */
static int l_info(lua_State *L) {
  lua_createtable(L, 0, 6);
  lua_pushstring(L, FVL_VERSION); lua_setfield(L, -2, "version");
  lua_pushstring(L, LUA_RELEASE); lua_setfield(L, -2, "lua");
  lua_pushstring(L, fvl_blas_config()); lua_setfield(L, -2, "blas");
  lua_pushstring(L, fvl_blas_core()); lua_setfield(L, -2, "blas_core");
  lua_pushinteger(L, fvl_get_threads()); lua_setfield(L, -2, "threads");
  lua_pushstring(L, fvl_build_type()); lua_setfield(L, -2, "build");
  return 1;
}

/* ------------------------------------------------------------------ benchmark baselines */
static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}
/* fvl._bench.sgemm(M, N, K, reps [, transb]) -> seconds per call of a raw cblas_sgemm */
static int l_bench_sgemm(lua_State *L) {
  /* sizes up to 2^20: the products below stay far from overflowing */
  int M = fvl_checkint32(L, "bench.sgemm", "M", luaL_checkinteger(L, 1), 1, 1 << 20);
  int N = fvl_checkint32(L, "bench.sgemm", "N", luaL_checkinteger(L, 2), 1, 1 << 20);
  int K = fvl_checkint32(L, "bench.sgemm", "K", luaL_checkinteger(L, 3), 1, 1 << 20);
  int reps = fvl_checkint32(L, "bench.sgemm", "reps", luaL_optinteger(L, 4, 10), 1, INT32_MAX), tb = lua_toboolean(L, 5);
  if (M <= 0 || N <= 0 || K <= 0 || reps <= 0) return fvl_error(L, "bench.sgemm: sizes and reps must be positive");
  float *A = fvl_alloc((size_t)M * K * 4), *B = fvl_alloc((size_t)K * N * 4), *C = fvl_alloc((size_t)M * N * 4);
  if (!A || !B || !C) { fvl_dealloc(A, (size_t)M * K * 4); fvl_dealloc(B, (size_t)K * N * 4); fvl_dealloc(C, (size_t)M * N * 4); return fvl_raise(L); }
  for (size_t i = 0; i < (size_t)M * K; i++) A[i] = (float)(i % 7) * 0.1f;
  for (size_t i = 0; i < (size_t)K * N; i++) B[i] = (float)(i % 5) * 0.1f;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, 1, A, K, B, tb ? K : N, 0, C, N);
  double t0 = now_s();
  for (int r = 0; r < reps; r++)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, 1, A, K, B, tb ? K : N, 0, C, N);
  double dt = (now_s() - t0) / reps;
  fvl_dealloc(A, (size_t)M * K * 4); fvl_dealloc(B, (size_t)K * N * 4); fvl_dealloc(C, (size_t)M * N * 4);
  lua_pushnumber(L, dt);
  return 1;
}
/* fvl._bench.memcpy(bytes, reps) -> seconds per memcpy of `bytes` */
static int l_bench_memcpy(lua_State *L) {
  lua_Integer nb = luaL_checkinteger(L, 1);
  if (nb < 0 || nb > ((lua_Integer)1 << 40)) return fvl_error(L, "bench.memcpy: bytes = %lld is outside 0..2^40", (long long)nb);
  size_t n = (size_t)nb;
  int reps = fvl_checkint32(L, "bench.memcpy", "reps", luaL_optinteger(L, 2, 10), 1, INT32_MAX);
  char *a = fvl_alloc(n), *b = fvl_alloc(n);
  if (!a || !b) { fvl_dealloc(a, n); fvl_dealloc(b, n); return fvl_raise(L); }
  memset(a, 1, n);
  memcpy(b, a, n);
  double t0 = now_s();
  for (int r = 0; r < reps; r++) { a[r % n] = (char)r; memcpy(b, a, n); }
  double dt = (now_s() - t0) / reps;
  lua_pushnumber(L, dt + 0.0 * b[n / 2]);
  fvl_dealloc(a, n); fvl_dealloc(b, n);
  return 1;
}
/*** fvl.clock() -> number
   Monotonic wall-clock seconds (for timing: fvl.clock() - t0); also fvl._bench.clock. */
static int l_bench_clock(lua_State *L) { lua_pushnumber(L, now_s()); return 1; }

/* fvl._raise(message): raises message at the position fvl_error names (the first caller outside
 * the Lua library): the Lua library's checks name the user's line, however deep they are. */
static int l_raise(lua_State *L) {
  const char *msg = luaL_checkstring(L, 1);
  fvl_pushwhere(L);
  lua_pushstring(L, msg);
  lua_concat(L, 2);
  return lua_error(L);
}

int fvl_open_runtime(lua_State *L) {
  int top = lua_gettop(L);
  static const luaL_Reg fns[] = {
    {"manual_seed", l_manual_seed}, {"rng_state", l_rng_state}, {"set_rng_state", l_set_rng_state},
    {"_check_rng_state", l_check_rng_state}, {"_raise", l_raise},
    {"threads", l_threads}, {"mem", l_mem}, {"mem_release", l_mem_release}, {"info", l_info}, {NULL, NULL}};
  luaL_setfuncs(L, fns, 0);
  static const luaL_Reg bench[] = {{"sgemm", l_bench_sgemm}, {"memcpy", l_bench_memcpy}, {"clock", l_bench_clock}, {NULL, NULL}};
  luaL_newlib(L, bench);
  lua_setfield(L, top, "_bench");
  lua_pushcfunction(L, l_bench_clock);
  lua_setfield(L, top, "clock");
  fvl_get_threads();
  lua_settop(L, top);
  return 0;
}
