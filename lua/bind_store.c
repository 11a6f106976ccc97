/* bind_store.c — fvl.store (the SQLite sweep store) for lua/fvl/sweep.lua; fvl.sys (processes,
 * time, files) is lua/bind_sys.c. Thin: check arguments, call engine/store.c, convert results. */
#define _GNU_SOURCE
#include <errno.h>
#include <glob.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "bind.h"
#include "store.h"
#include "rng.h"

#define STORE_MT "fvl.Store"

typedef struct { fvl_store *s; } store_ud;

static fvl_store *checkstore(lua_State *L, const char *fn) {
  store_ud *u = luaL_checkudata(L, 1, STORE_MT);
  if (!u->s) luaL_error(L, "store:%s: the store is closed", fn);
  return u->s;
}

/*** fvl.store.open(path) -> store
   Opens (creating it if needed) the SQLite sweep store at path, in WAL mode so several drivers and
   workers share it; fvl.sweep uses it (docs/sweeps.md). The store's methods (store:trials(),
   store:exec(sql, ...), store:close(), ...) serve the sweep driver; a user reads a store through
   fvl.sweep.load / leaderboard / csv. Errors: a file that is not a store; SQLite's message. */
static int l_open(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  store_ud *u = lua_newuserdatauv(L, sizeof *u, 0);
  u->s = NULL;
  luaL_setmetatable(L, STORE_MT);
  u->s = fvl_store_open(path);
  if (!u->s) return fvl_raise(L);
  return 1;
}

static int l_close(lua_State *L) {
  store_ud *u = luaL_checkudata(L, 1, STORE_MT);
  fvl_store_close(u->s);
  u->s = NULL;
  return 0;
}

static int l_tostring(lua_State *L) {
  store_ud *u = luaL_checkudata(L, 1, STORE_MT);
  if (u->s) lua_pushfstring(L, "fvl.Store(%s)", fvl_store_path(u->s));
  else lua_pushliteral(L, "fvl.Store(closed)");
  return 1;
}

static int l_path(lua_State *L) {
  lua_pushstring(L, fvl_store_path(checkstore(L, "path")));
  return 1;
}

/* store:meta(key) -> value|nil ; store:meta(key, value) sets */
static int l_meta(lua_State *L) {
  fvl_store *s = checkstore(L, "meta");
  const char *key = luaL_checkstring(L, 2);
  if (lua_gettop(L) >= 3) {
    const char *v = luaL_optstring(L, 3, NULL);
    if (fvl_store_meta_set(s, key, v)) return fvl_raise(L);
    return 0;
  }
  char *v = NULL;
  int r = fvl_store_meta_get(s, key, &v);
  if (r < 0) return fvl_raise(L);
  if (v) lua_pushstring(L, v);
  else lua_pushnil(L);
  free(v);
  return 1;
}

static int l_add_trial(lua_State *L) {
  fvl_store *s = checkstore(L, "add_trial");
  lua_Integer id = luaL_checkinteger(L, 2);
  const char *config = luaL_checkstring(L, 3);
  lua_Integer seed = luaL_checkinteger(L, 4);
  int r = fvl_store_add_trial(s, id, config, seed);
  if (r < 0) return fvl_raise(L);
  lua_pushboolean(L, r);
  return 1;
}

static void setstr(lua_State *L, const char *k, const char *v) {
  if (!v) return;
  lua_pushstring(L, v);
  lua_setfield(L, -2, k);
}
static void setnum(lua_State *L, const char *k, double v) {
  if (isnan(v)) return;
  lua_pushnumber(L, v);
  lua_setfield(L, -2, k);
}
static void setint(lua_State *L, const char *k, lua_Integer v) {
  lua_pushinteger(L, v);
  lua_setfield(L, -2, k);
}
static void push_trial(lua_State *L, const fvl_trial *t) {
  lua_createtable(L, 0, 16);
  setint(L, "id", t->id);
  setstr(L, "config", t->config);
  setint(L, "seed", t->seed);
  setstr(L, "status", fvl_trial_status_name(t->status));
  setint(L, "attempt", t->attempt);
  setint(L, "pid", t->pid);
  setstr(L, "host", t->host);
  setnum(L, "started", t->started);
  setnum(L, "ended", t->ended);
  setstr(L, "metrics", t->metrics);
  setstr(L, "error", t->error);
  lua_pushboolean(L, t->killed);
  lua_setfield(L, -2, "killed");
  setint(L, "rung", t->rung);
  setint(L, "wait_rung", t->wait_rung);
  setnum(L, "wait_value", t->wait_value);
  setnum(L, "lease", t->lease);
}

static int l_trial(lua_State *L) {
  fvl_store *s = checkstore(L, "trial");
  lua_Integer id = luaL_checkinteger(L, 2);
  fvl_trial t;
  int r = fvl_store_get_trial(s, id, &t);
  if (r < 0) return fvl_raise(L);
  if (r == 0) { lua_pushnil(L); return 1; }
  push_trial(L, &t);
  fvl_trial_clear(&t);
  return 1;
}

static int l_trials(lua_State *L) {
  fvl_store *s = checkstore(L, "trials");
  fvl_trial *t;
  size_t n;
  if (fvl_store_list_trials(s, &t, &n)) return fvl_raise(L);
  lua_createtable(L, (int)n, 0);
  for (size_t i = 0; i < n; i++) {
    push_trial(L, &t[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  fvl_trials_free(t, n);
  return 1;
}

static int l_start_trial(lua_State *L) {
  fvl_store *s = checkstore(L, "start_trial");
  lua_Integer id = luaL_checkinteger(L, 2);
  int pid = fvl_checkint32(L, "start_trial", "pid", luaL_optinteger(L, 3, 0), INT32_MIN, INT32_MAX);
  int expect = fvl_checkint32(L, "start_trial", "attempt", luaL_optinteger(L, 4, -1), INT32_MIN, INT32_MAX);
  int a = fvl_store_start_trial(s, id, pid, expect);
  if (a < 0) return fvl_raise(L);
  lua_pushinteger(L, a);
  return 1;
}

/* a lease from Lua: finite seconds > 0 (at most a year) */
static double checklease(lua_State *L, int idx, const char *fn) {
  double v = luaL_checknumber(L, idx);
  if (!(v > 0 && v <= 31536000.0)) return fvl_error(L, "%s: lease = %g is outside (0, 31536000] seconds", fn, v);
  return v;
}

/* store:claim(pid, lease_s, max_attempts [, retry_before [, sign]]) -> id, attempt | nil */
static int l_claim(lua_State *L) {
  const char *fn = "store:claim";
  fvl_store *s = checkstore(L, "claim");
  int pid = fvl_checkint32(L, fn, "pid", luaL_checkinteger(L, 2), 0, INT32_MAX);
  double lease = checklease(L, 3, fn);
  int max_attempts = fvl_checkint32(L, fn, "max_attempts", luaL_checkinteger(L, 4), 1, 1000000);
  double retry_before = luaL_optnumber(L, 5, -1);
  if (isnan(retry_before)) return fvl_error(L, "%s: retry_before is NaN (expected Unix seconds, or -1)", fn);
  int sign = fvl_checkint32(L, fn, "sign", luaL_optinteger(L, 6, 1), -1, 1) < 0 ? -1 : 1;
  int64_t id = 0;
  int a = fvl_store_claim(s, pid, lease, max_attempts, retry_before, sign, &id);
  if (a < 0) return fvl_raise(L);
  if (a == 0) { lua_pushnil(L); return 1; }
  lua_pushinteger(L, id);
  lua_pushinteger(L, a);
  return 2;
}

/* store:heartbeat(id, attempt, lease_s) -> renewed */
static int l_heartbeat(lua_State *L) {
  const char *fn = "store:heartbeat";
  fvl_store *s = checkstore(L, "heartbeat");
  lua_Integer id = luaL_checkinteger(L, 2);
  int attempt = fvl_checkint32(L, fn, "attempt", luaL_checkinteger(L, 3), 1, INT32_MAX);
  int r = fvl_store_heartbeat(s, id, attempt, checklease(L, 4, fn));
  if (r < 0) return fvl_raise(L);
  lua_pushboolean(L, r > 0);
  return 1;
}

/* store:park(id, attempt) -> parked */
static int l_park(lua_State *L) {
  fvl_store *s = checkstore(L, "park");
  lua_Integer id = luaL_checkinteger(L, 2);
  int attempt = fvl_checkint32(L, "store:park", "attempt", luaL_checkinteger(L, 3), 1, INT32_MAX);
  int r = fvl_store_park(s, id, attempt);
  if (r < 0) return fvl_raise(L);
  lua_pushboolean(L, r > 0);
  return 1;
}

static int l_now(lua_State *L) {
  double t = fvl_store_now(checkstore(L, "now"));
  if (isnan(t)) return fvl_raise(L);
  lua_pushnumber(L, t);
  return 1;
}
static int l_kind(lua_State *L) {
  lua_pushstring(L, fvl_store_kind(checkstore(L, "kind")));
  return 1;
}

static int l_set_pid(lua_State *L) {
  fvl_store *s = checkstore(L, "set_pid");
  int r = fvl_store_set_pid(s, luaL_checkinteger(L, 2), fvl_checkint32(L, "set_pid", "attempt", luaL_checkinteger(L, 3), INT32_MIN, INT32_MAX),
                            fvl_checkint32(L, "set_pid", "pid", luaL_checkinteger(L, 4), INT32_MIN, INT32_MAX));
  if (r < 0) return fvl_raise(L);
  lua_pushboolean(L, r > 0);
  return 1;
}

/* store:finish_trial(id, attempt, status, metrics_json|nil, error|nil, killed) -> applied */
static int l_finish_trial(lua_State *L) {
  fvl_store *s = checkstore(L, "finish_trial");
  lua_Integer id = luaL_checkinteger(L, 2);
  int attempt = fvl_checkint32(L, "finish_trial", "attempt", luaL_checkinteger(L, 3), INT32_MIN, INT32_MAX);
  int status = fvl_trial_status_parse(luaL_checkstring(L, 4));
  if (status < 0) return fvl_raise(L);
  const char *metrics = luaL_optstring(L, 5, NULL);
  const char *error = luaL_optstring(L, 6, NULL);
  int killed = lua_toboolean(L, 7);
  int r = fvl_store_finish_trial(s, id, attempt, status, metrics, error, killed);
  if (r < 0) return fvl_raise(L);
  lua_pushboolean(L, r > 0);
  return 1;
}

static int l_report(lua_State *L) {
  fvl_store *s = checkstore(L, "report");
  int r = fvl_store_add_report(s, luaL_checkinteger(L, 2), fvl_checkint32(L, "report", "attempt", luaL_checkinteger(L, 3), INT32_MIN, INT32_MAX),
                               luaL_checkinteger(L, 4), luaL_checkstring(L, 5));
  if (r < 0) return fvl_raise(L);
  lua_pushboolean(L, r > 0);
  return 1;
}

static int l_reports(lua_State *L) {
  fvl_store *s = checkstore(L, "reports");
  lua_Integer id = luaL_optinteger(L, 2, 0);
  fvl_report *r;
  size_t n;
  if (fvl_store_list_reports(s, id, &r, &n)) return fvl_raise(L);
  lua_createtable(L, (int)n, 0);
  for (size_t i = 0; i < n; i++) {
    lua_createtable(L, 0, 5);
    setint(L, "trial", r[i].trial);
    setint(L, "attempt", r[i].attempt);
    setint(L, "step", r[i].step);
    setnum(L, "time", r[i].time);
    setstr(L, "metrics", r[i].metrics);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  fvl_reports_free(r, n);
  return 1;
}

static int l_set_wait(lua_State *L) {
  fvl_store *s = checkstore(L, "set_wait");
  int r = fvl_store_set_wait(s, luaL_checkinteger(L, 2), fvl_checkint32(L, "set_wait", "attempt", luaL_checkinteger(L, 3), INT32_MIN, INT32_MAX),
                             fvl_checkint32(L, "set_wait", "rung", luaL_checkinteger(L, 4), INT32_MIN, INT32_MAX), luaL_checknumber(L, 5));
  if (r < 0) return fvl_raise(L);
  lua_pushboolean(L, r > 0);
  return 1;
}

static int l_promote(lua_State *L) {
  fvl_store *s = checkstore(L, "promote");
  int r = fvl_store_promote(s, luaL_checkinteger(L, 2), fvl_checkint32(L, "promote", "rung", luaL_checkinteger(L, 3), INT32_MIN, INT32_MAX));
  if (r < 0) return fvl_raise(L);
  lua_pushboolean(L, r > 0);
  return 1;
}

static int l_release(lua_State *L) {
  fvl_store *s = checkstore(L, "release");
  int r = fvl_store_release(s, luaL_checkinteger(L, 2));
  if (r < 0) return fvl_raise(L);
  lua_pushboolean(L, r > 0);
  return 1;
}

static int l_prune(lua_State *L) {
  fvl_store *s = checkstore(L, "prune");
  int r = fvl_store_prune(s, luaL_checkinteger(L, 2), fvl_checkint32(L, "prune", "rung", luaL_checkinteger(L, 3), INT32_MIN, INT32_MAX),
                          luaL_optstring(L, 4, NULL));
  if (r < 0) return fvl_raise(L);
  lua_pushboolean(L, r > 0);
  return 1;
}

static int l_begin(lua_State *L) {
  if (fvl_store_begin(checkstore(L, "begin"))) return fvl_raise(L);
  return 0;
}
static int l_commit(lua_State *L) {
  if (fvl_store_commit(checkstore(L, "commit"))) return fvl_raise(L);
  return 0;
}
static int l_rollback(lua_State *L) {
  if (fvl_store_rollback(checkstore(L, "rollback"))) return fvl_raise(L);
  return 0;
}

/* store:exec(sql, ...) -> list of row tables (statements with result columns) or changes */
typedef struct { lua_State *L; int n; } exec_ud;
static int exec_row(void *ud, int ncol, const char *const *names, const fvl_sql_value *v) {
  exec_ud *e = ud;
  lua_State *L = e->L;
  lua_createtable(L, 0, ncol);
  for (int c = 0; c < ncol; c++) {
    switch (v[c].type) {
      case FVL_SQL_INT: lua_pushinteger(L, v[c].i); break;
      case FVL_SQL_REAL: lua_pushnumber(L, v[c].d); break;
      case FVL_SQL_TEXT: lua_pushlstring(L, v[c].s, v[c].len); break;
      default: continue;
    }
    lua_setfield(L, -2, names[c]);
  }
  lua_rawseti(L, -2, ++e->n);
  return 0;
}
static int l_exec(lua_State *L) {
  fvl_store *s = checkstore(L, "exec");
  const char *sql = luaL_checkstring(L, 2);
  int np = lua_gettop(L) - 2;
  if (np > 64) return luaL_error(L, "store:exec: at most 64 parameters, got %d", np);
  fvl_sql_value p[64];
  for (int i = 0; i < np; i++) {
    int idx = i + 3;
    memset(&p[i], 0, sizeof p[i]);
    switch (lua_type(L, idx)) {
      case LUA_TNIL: p[i].type = FVL_SQL_NULL; break;
      case LUA_TBOOLEAN: p[i].type = FVL_SQL_INT; p[i].i = lua_toboolean(L, idx); break;
      case LUA_TNUMBER:
        if (lua_isinteger(L, idx)) { p[i].type = FVL_SQL_INT; p[i].i = lua_tointeger(L, idx); }
        else { p[i].type = FVL_SQL_REAL; p[i].d = lua_tonumber(L, idx); }
        break;
      case LUA_TSTRING: p[i].type = FVL_SQL_TEXT; p[i].s = lua_tolstring(L, idx, &p[i].len); break;
      default:
        return luaL_error(L, "store:exec: parameter %d must be nil, boolean, number or string, got %s",
                          i + 1, luaL_typename(L, idx));
    }
  }
  lua_newtable(L);
  exec_ud e = {L, 0};
  int r = fvl_store_exec(s, sql, np, p, exec_row, &e);
  if (r < 0) return fvl_raise(L);
  if (e.n == 0 && !(strncasecmp(sql, "select", 6) == 0 || strncasecmp(sql, "pragma", 6) == 0 ||
                    strncasecmp(sql, "with", 4) == 0)) {
    lua_pop(L, 1);
    lua_pushinteger(L, r);
  }
  return 1;
}

static int l_merge(lua_State *L) {
  fvl_store *s = checkstore(L, "merge");
  int r = fvl_store_merge(s, luaL_checkstring(L, 2));
  if (r < 0) return fvl_raise(L);
  lua_pushinteger(L, r);
  return 1;
}

int fvl_open_store(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"close", l_close}, {"path", l_path}, {"meta", l_meta}, {"add_trial", l_add_trial},
    {"trial", l_trial}, {"trials", l_trials}, {"start_trial", l_start_trial},
    {"set_pid", l_set_pid}, {"finish_trial", l_finish_trial}, {"report", l_report},
    {"reports", l_reports}, {"set_wait", l_set_wait}, {"promote", l_promote},
    {"prune", l_prune}, {"release", l_release}, {"begin", l_begin}, {"commit", l_commit}, {"rollback", l_rollback},
    {"exec", l_exec}, {"merge", l_merge}, {"claim", l_claim}, {"heartbeat", l_heartbeat},
    {"park", l_park}, {"now", l_now}, {"kind", l_kind}, {NULL, NULL}};
  static const luaL_Reg store_fns[] = {{"open", l_open}, {NULL, NULL}};
  int top = lua_gettop(L);
  if (luaL_newmetatable(L, STORE_MT)) {
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_close);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, l_close);
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, l_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);
  luaL_newlib(L, store_fns);
  lua_setfield(L, top, "store");
  lua_settop(L, top);
  return 0;
}
