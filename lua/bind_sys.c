/* bind_sys.c — fvl.sys: processes, time, files and the generator's hash for lua/fvl/sweep.lua
 * and the scripts. Thin: check arguments, call engine/sys.c, convert results. */
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
#include "sys.h"
#include "rng.h"

/*** fvl.sys.spawn(exe, argv [, env [, logpath]]) -> pid
   Starts a process: exe the program (nil: argv[1] looked up on PATH), argv {name, args...}, env a
   table of KEY = VALUE added to this process's environment (or nil), logpath a file receiving its
   stdout and stderr (or nil: inherited). Returns at once; fvl.sys.poll waits. (The sweep driver's
   workers.) Errors: an empty argv; a program that cannot be started. */
static int l_spawn(lua_State *L) {
  const char *exe = luaL_optstring(L, 1, NULL);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_Integer nal = luaL_len(L, 2);
  if (nal < 1 || nal > 65536)
    return fvl_error(L, "sys.spawn: argv must hold the program name and at most 65535 arguments, got %lld", (long long)nal);
  int na = (int)nal;
  if (!lua_isnoneornil(L, 3)) luaL_checktype(L, 3, LUA_TTABLE);
  const char *log = luaL_optstring(L, 4, NULL);
  lua_settop(L, 4);
  /* strings stay alive on the Lua stack in a table while we spawn */
  lua_newtable(L);
  int keep = lua_gettop(L);
  char **argv = lua_newuserdatauv(L, (size_t)(na + 1) * sizeof(char *), 0);
  lua_rawseti(L, keep, 1);
  for (int i = 1; i <= na; i++) {
    lua_geti(L, 2, i);
    if (!lua_isstring(L, -1))
      return luaL_error(L, "sys.spawn: argv[%d] must be a string, got %s", i, luaL_typename(L, -1));
    argv[i - 1] = (char *)lua_tostring(L, -1);
    lua_rawseti(L, keep, i + 1);
  }
  argv[na] = NULL;
  int ne = 0;
  if (lua_istable(L, 3)) {
    lua_pushnil(L);
    while (lua_next(L, 3)) { ne++; lua_pop(L, 1); }
  }
  char **env = lua_newuserdatauv(L, (size_t)(ne + 1) * sizeof(char *), 0);
  lua_rawseti(L, keep, na + 2);
  int k = 0;
  if (ne) {
    lua_pushnil(L);
    while (lua_next(L, 3)) {
      if (lua_type(L, -2) != LUA_TSTRING || !lua_isstring(L, -1))
        return luaL_error(L, "sys.spawn: env must map names to strings");
      if (k >= ne) return luaL_error(L, "sys.spawn: env changed while it was read");
      lua_pushfstring(L, "%s=%s", lua_tostring(L, -2), lua_tostring(L, -1));
      env[k++] = (char *)lua_tostring(L, -1);
      lua_rawseti(L, keep, na + 3 + k);
      lua_pop(L, 1);
    }
  }
  env[k] = NULL;
  pid_t pid = fvl_proc_spawn(exe, argv, env, log);
  if (pid < 0) return fvl_raise(L);
  lua_pushinteger(L, pid);
  return 1;
}

/*** fvl.sys.poll(pid) -> false | true, exit_code, signal
   false while the child runs; once it ended, true with its exit code (nil when killed) and the
   signal's name (nil when it exited). Errors: pid outside 1..2^31-1, not a child of this process. */
static int l_poll(lua_State *L) {
  int code, sig;
  /* bounded: no truncation of 2^32 + k, and 0 or -1 would reap any child of this process */
  pid_t pid = fvl_checkint32(L, "sys.poll", "pid", luaL_checkinteger(L, 1), 1, INT32_MAX);
  int r = fvl_proc_poll(pid, &code, &sig);
  if (r < 0) return fvl_raise(L);
  lua_pushboolean(L, r);
  if (!r) return 1;
  if (sig) { lua_pushnil(L); lua_pushstring(L, fvl_signal_name(sig)); }
  else { lua_pushinteger(L, code); lua_pushnil(L); }
  return 3;
}

static const struct { const char *name; int sig; } sigs[] = {
  {"HUP", SIGHUP}, {"INT", SIGINT}, {"QUIT", SIGQUIT}, {"KILL", SIGKILL}, {"SEGV", SIGSEGV},
  {"TERM", SIGTERM}, {"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"STOP", SIGSTOP}, {"CONT", SIGCONT},
  {"ABRT", SIGABRT}, {NULL, 0}};

/* a signal argument: a name ("TERM", "SIGTERM") from the list above, or a number 0..64 */
static int check_signal(lua_State *L, int idx, const char *fn) {
  if (lua_type(L, idx) == LUA_TNUMBER) return fvl_checkint32(L, fn, "signal", luaL_checkinteger(L, idx), 0, 64);
  const char *n = luaL_checkstring(L, idx);
  if (strncmp(n, "SIG", 3) == 0) n += 3;
  for (int i = 0; sigs[i].name; i++)
    if (strcmp(n, sigs[i].name) == 0) return sigs[i].sig;
  return fvl_error(L, "%s: signal '%s' is not one of HUP|INT|QUIT|KILL|SEGV|TERM|USR1|USR2|STOP|CONT|ABRT", fn,
                   lua_tostring(L, idx));
}

/*** fvl.sys.kill(pid [, signal]) -> nothing
   Sends signal ("TERM", the default, "KILL", "INT", "HUP", ... or a number) to pid.
   Errors: an unknown signal name. */
static int l_kill(lua_State *L) {
  pid_t pid = fvl_checkint32(L, "sys.kill", "pid", luaL_checkinteger(L, 1), INT32_MIN, INT32_MAX);
  int sig = lua_isnoneornil(L, 2) ? SIGTERM : check_signal(L, 2, "sys.kill");
  if (fvl_proc_kill(pid, sig)) return fvl_raise(L);
  return 0;
}

/*** fvl.sys.catch_stop(signals) -> nothing
   fvl.sys.stop_signal() -> name, number | nil
   fvl.sys.release_stop() -> nothing
   Stop requests for a long loop that should end cleanly at its next step (a checkpoint, then
   exit) when a scheduler preempts it: catch_stop{"TERM", "USR1"} (names as fvl.sys.kill, or
   numbers) makes those signals set a flag and print one line on stderr instead of ending the
   process; a second Ctrl-C (INT) acts as it did before the catch (stops at once), a repeated
   TERM or USR1 changes nothing. A signal the process ignores (nohup) stays ignored. stop_signal() is the first
   one caught ("SIGTERM", 15), nil when none; release_stop() puts every disposition back and
   forgets the request. scripts/train_face.lua polls it at each step (docs/training.md).
   Errors: an unknown name, KILL or STOP (which cannot be caught), signals not a table. */
static int l_catch_stop(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_Integer n = luaL_len(L, 1);
  if (n < 0 || n > 64) return fvl_error(L, "sys.catch_stop: signals has %lld entries, expected 0..64", (long long)n);
  int list[64];
  for (lua_Integer i = 1; i <= n; i++) {
    lua_geti(L, 1, i);
    int sig = check_signal(L, -1, "sys.catch_stop");
    if (sig == 0 || sig == SIGKILL || sig == SIGSTOP)
      return fvl_error(L, "sys.catch_stop: signals[%lld] = %s cannot be caught", (long long)i, fvl_signal_name(sig));
    list[i - 1] = sig;
    lua_pop(L, 1);
  }
  for (lua_Integer i = 0; i < n; i++)
    if (fvl_stop_catch(list[i])) return fvl_raise(L);
  return 0;
}
static int l_stop_signal(lua_State *L) {
  int sig = fvl_stop_signal();
  if (!sig) { lua_pushnil(L); return 1; }
  lua_pushstring(L, fvl_signal_name(sig));
  lua_pushinteger(L, sig);
  return 2;
}
static int l_release_stop(lua_State *L) { (void)L; fvl_stop_release(); return 0; }
/*** fvl.sys.signal_name(number) -> string
   The conventional name of a signal number: "SIGTERM" for 15, "signal 40" when it has none here. */
static int l_signal_name(lua_State *L) {
  lua_pushstring(L, fvl_signal_name(fvl_checkint32(L, "sys.signal_name", "number", luaL_checkinteger(L, 1), 0, 64)));
  return 1;
}

/*** fvl.sys.sleep(seconds) -> nothing
   Sleeps; a pending Ctrl-C ends it early with an error naming sleep. */
static int l_sleep(lua_State *L) {
  if (fvl_sleep(luaL_checknumber(L, 1), "sleep")) return fvl_raise(L);
  return 0;
}
/*** fvl.sys.time() -> number
   fvl.sys.getpid() -> integer
   fvl.sys.hostname() -> string
   fvl.sys.exe() -> path
   Unix time in seconds with a fraction; this process's id; the host's name; the absolute path of
   the running program (to re-run a script as a worker). */
static int l_time(lua_State *L) { lua_pushnumber(L, fvl_time_now()); return 1; }
static int l_getpid(lua_State *L) { lua_pushinteger(L, getpid()); return 1; }
static int l_exe(lua_State *L) {
  char buf[PATH_MAX];
  if (fvl_self_exe(buf, sizeof buf)) return fvl_raise(L);
  lua_pushstring(L, buf);
  return 1;
}
/*** fvl.sys.mkdirs(path) -> nothing
   Creates the directory and its missing parents (mkdir -p). Errors: a path that cannot be made. */
static int l_mkdirs(lua_State *L) {
  if (fvl_mkdirs(luaL_checkstring(L, 1))) return fvl_raise(L);
  return 0;
}
/*** fvl.sys.write_atomic(path, data) -> true | nil, message
   Writes the string data to path atomically (a temporary file beside it, fsync, rename): readers
   see the old file or the whole new one, never a part. */
static int l_write_atomic(lua_State *L) {
  size_t n;
  const char *path = luaL_checkstring(L, 1);
  const char *data = luaL_checklstring(L, 2, &n);
  if (fvl_write_atomic(path, data, n, NULL)) {
    lua_pushnil(L);
    lua_pushstring(L, fvl_errmsg());
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}
/*** fvl.sys.realpath(path) -> absolute path | nil, message
   The canonical absolute path (links resolved) of an existing file. */
static int l_realpath(lua_State *L) {
  char buf[PATH_MAX];
  const char *p = luaL_checkstring(L, 1);
  if (!realpath(p, buf)) {
    lua_pushnil(L);
    lua_pushfstring(L, "realpath: %s: %s", p, strerror(errno));
    return 2;
  }
  lua_pushstring(L, buf);
  return 1;
}
/*** fvl.sys.glob(pattern) -> {paths}
   The paths matching a shell pattern ("runs/seed_*.json"), sorted; {} when none match. */
static int l_glob(lua_State *L) {
  const char *pat = luaL_checkstring(L, 1);
  glob_t g;
  int r = glob(pat, 0, NULL, &g);
  lua_newtable(L);
  if (r == 0)
    for (size_t i = 0; i < g.gl_pathc; i++) {
      lua_pushstring(L, g.gl_pathv[i]);
      lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
  if (r == 0 || r == GLOB_NOMATCH) { if (r == 0) globfree(&g); return 1; }
  return luaL_error(L, "sys.glob: cannot expand '%s'", pat);
}
/*** fvl.sys.alive(pid) -> boolean
   Whether a process with that pid exists and is not a zombie. */
static int l_alive(lua_State *L) {
  lua_Integer pid = luaL_checkinteger(L, 1);   /* past int: no such process (never a truncated pid) */
  lua_pushboolean(L, pid > 0 && pid <= INT32_MAX && fvl_proc_alive((pid_t)pid));
  return 1;
}
static int l_hostname(lua_State *L) {
  char buf[256] = {0};
  if (gethostname(buf, sizeof buf - 1) != 0) snprintf(buf, sizeof buf, "?");
  lua_pushstring(L, buf);
  return 1;
}
/*** fvl.sys.cpu_count() -> integer
   The machine's online CPUs (see fvl.sys.cpus for those this process may use). */
static int l_cpu_count(lua_State *L) { lua_pushinteger(L, fvl_cpu_count()); return 1; }
/*** fvl.sys.cpus() -> n, why
   The CPUs this process may use (its affinity mask, capped by SLURM_CPUS_PER_TASK and
   OMP_NUM_THREADS when set) and a phrase saying where the number came from. */
static int l_cpus(lua_State *L) {
  char why[256];
  lua_pushinteger(L, fvl_cpus_available(why, sizeof why));
  lua_pushstring(L, why);
  return 2;
}
/*** fvl.sys.hash(seed, counter) -> integer
   fvl.sys.uniform(seed, counter) -> number
   The engine's counter-based generator at (seed, counter), without touching the global state:
   62 random bits as a non-negative integer, or a uniform number in [0, 1) (the sweeps' seeded
   samplers: the same draw on every machine). */
static int l_hash(lua_State *L) {
  uint64_t b = fvl_rng_bits((uint64_t)luaL_checkinteger(L, 1), (uint64_t)luaL_checkinteger(L, 2));
  lua_pushinteger(L, (lua_Integer)(b >> 2));
  return 1;
}
/* fvl.sys.uniform(seed, counter) -> [0, 1) */
static int l_uniform(lua_State *L) {
  lua_pushnumber(L, fvl_rng_uniform_at((uint64_t)luaL_checkinteger(L, 1),
                                       (uint64_t)luaL_checkinteger(L, 2)));
  return 1;
}
/*** fvl.sys.aborted() -> boolean
   fvl.sys.abort_clear() -> nothing
   Whether Ctrl-C (SIGINT) is pending (long Lua loops poll it to stop cleanly); abort_clear()
   forgets it. */
static int l_aborted(lua_State *L) { lua_pushboolean(L, fvl_aborted()); return 1; }
static int l_abort_clear(lua_State *L) { fvl_abort_clear(); return 0; }
/*** fvl.sys.hold_interrupts(fn, ...) -> fn's results
   Calls fn(...) with Ctrl-C held: in the fvl program a SIGINT during fn (a third press still
   quits) is raised as the error "interrupted" once fn has returned, so a step that must not stop
   half-way (an optimiser update) completes first. An error of fn is passed on. Under another Lua
   interpreter its own SIGINT handling applies. Errors: fn not a function. */
static int l_hold_interrupts(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  fvl_abort_hold();
  int st = lua_pcall(L, lua_gettop(L) - 1, LUA_MULTRET, 0);
  int pressed = fvl_abort_release();
  if (st != LUA_OK) return lua_error(L);
  if (pressed) {
    fvl_abort_request();
    lua_pushstring(L, "interrupted");
    return lua_error(L);
  }
  return lua_gettop(L);
}

int fvl_open_sys(lua_State *L) {
  static const luaL_Reg sys_fns[] = {
    {"spawn", l_spawn}, {"poll", l_poll}, {"kill", l_kill}, {"sleep", l_sleep},
    {"time", l_time}, {"getpid", l_getpid}, {"exe", l_exe}, {"mkdirs", l_mkdirs},
    {"write_atomic", l_write_atomic}, {"realpath", l_realpath}, {"glob", l_glob},
    {"hostname", l_hostname}, {"alive", l_alive}, {"cpu_count", l_cpu_count}, {"cpus", l_cpus}, {"hash", l_hash},
    {"uniform", l_uniform}, {"aborted", l_aborted}, {"abort_clear", l_abort_clear},
    {"hold_interrupts", l_hold_interrupts}, {"catch_stop", l_catch_stop}, {"stop_signal", l_stop_signal},
    {"release_stop", l_release_stop}, {"signal_name", l_signal_name}, {NULL, NULL}};
  luaL_newlib(L, sys_fns);
  lua_setfield(L, -2, "sys");
  return 0;
}
