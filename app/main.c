/* main.c — the fvl program: options, `arg`, scripts, -e/-l/-i/-v/-t, then the REPL.
 * Behaves like Lua 5.4's stand-alone `lua` (written here from its documented behaviour),
 * with the module `fvl` preloaded as a global and engine settings (threads, Ctrl-C abort). */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>
#include "app.h"
#include "core.h"
#include "sys.h"

int luaopen_fvl(lua_State *L);

static const char *progname = FVL_PROGNAME;

/* usage on stderr after a bad option, on stdout (exit 0) for -h / --help */
static void usage(const char *badopt) {
  FILE *to = badopt ? stderr : stdout;
  if (badopt) {
    if (badopt[1] == 'e' || badopt[1] == 'l' || badopt[1] == 't')
      fprintf(stderr, "%s: '%s' needs an argument\n", progname, badopt);
    else
      fprintf(stderr, "%s: unrecognized option '%s'\n", progname, badopt);
  }
  fprintf(to,
          "usage: %s [options] [script [args]]\n"
          "Runs a Lua 5.4 script with the FaceVerLoss module as the global 'fvl', or the REPL.\n"
          "Available options are:\n"
          "  -e stat   execute string 'stat'\n"
          "  -i        enter interactive mode after running 'script'\n"
          "  -l mod    require library 'mod' into global 'mod' (last part of a dotted name)\n"
          "  -l g=mod  require library 'mod' into global 'g'\n"
          "  -t n      use n threads for OpenBLAS and the engine (also: FVL_THREADS=n)\n"
          "  -v        show version information (OpenBLAS, threads, build)\n"
          "  -h, --help     show this help and exit\n"
          "  --version      show the version and exit\n"
          "  -E        ignore environment variables (FVL_THREADS, LUA_INIT, LUA_PATH, LUA_CPATH)\n"
          "  -W        turn warnings on\n"
          "  --        stop handling options\n"
          "  -         stop handling options and execute stdin\n"
          "With no script: the REPL when stdin is a terminal, otherwise stdin runs as a script.\n"
          "Errors show the message and the script's own frames; FVL_TRACEBACK=1 shows every frame\n"
          "(the fvl library's and C functions too). Manual: man fvl; reference: docs/api.md.\n",
          progname);
  fflush(to);
}

/* ------------------------------------------------------------------ Ctrl-C while Lua runs */
static lua_State *running_L = NULL;
static volatile sig_atomic_t presses = 0;
static pthread_t main_thread;

/* A Ctrl-C can land on any thread (OpenMP and OpenBLAS workers included); only the main
 * thread acts on it, so others pass it on. Returns 1 when the caller should return. */
int app_sigint_forward(void) {
  if (pthread_equal(pthread_self(), main_thread)) return 0;
  pthread_kill(main_thread, SIGINT);
  return 1;
}

int app_interrupted(void) { return presses > 0; }

static int msghandler(lua_State *L);

static void stop_hook(lua_State *L, lua_Debug *ar) {
  lua_sethook(L, NULL, 0, 0);
  /* a kernel already raised "<fn>: interrupted" for this press: the script's pcall caught it
   * (e.g. to save a checkpoint), so do not raise another one as that pcall returns */
  if (fvl_abort_reported()) return;
  if (ar->event == LUA_HOOKCALL) {
    /* a kernel that saw the abort flag is already raising "<fn>: interrupted": let the
     * message handler it calls run instead of replacing that error */
    lua_getinfo(L, "f", ar);
    int handler = lua_tocfunction(L, -1) == msghandler;
    lua_pop(L, 1);
    if (handler) return;
  }
  luaL_error(L, "interrupted");
}

static void on_sigint_running(int sig) {
  (void)sig;
  if (app_sigint_forward()) return;
  presses++;
  if (presses <= 2 && fvl_abort_held()) {
    fvl_abort_defer();   /* fvl.sys.hold_interrupts: raised once the held function returns */
  } else if (presses <= 2) {
    /* Lua code stops at its next instruction or call; engine kernels at their next poll.
     * A second press arms the hook again (in case a pcall swallowed the first). */
    fvl_abort_request();
    lua_sethook(running_L, stop_hook,
                LUA_MASKCALL | LUA_MASKRET | LUA_MASKLINE | LUA_MASKCOUNT, 1);
  }
  if (presses == 2) {
    static const char m[] = "\nfvl: interrupting... press Ctrl-C again to quit\n";
    if (write(STDERR_FILENO, m, sizeof m - 1) < 0) { /* nothing to do */ }
  } else if (presses >= 3) {
    signal(SIGINT, SIG_DFL);
    raise(SIGINT);
  }
}

void app_sigint_running(lua_State *L) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  running_L = L;
  presses = 0;
  sa.sa_handler = on_sigint_running;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
}

/* Frames of the fvl library (the embedded lua/fvl/ sources) and C functions are internal: a user's
 * mistake is reported in terms of the user's code. */
static int internal_frame(const lua_Debug *ar) {
  return ar->what[0] == 'C' || strstr(ar->source, "lua/fvl/") != NULL;
}

static int full_traceback(void) {
  const char *e = getenv("FVL_TRACEBACK");
  return e && *e && strcmp(e, "0") != 0;
}

/* The error message, then (unless FVL_TRACEBACK asks for every frame):
 *   - raised inside fvl (a binding or the library, e.g. a bad option): "  at file:line" of the
 *     user's call;
 *   - raised in the user's code: the user's frames when there are two or more (the call
 *     chain); none for one (the message already says where; error(msg, 0) says nothing). */
static int msghandler(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) return 1;
    msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  }
  if (full_traceback()) {
    luaL_traceback(L, L, msg, 1);
    return 1;
  }
  lua_Debug ar;
  int level = 1, by_fvl = 0, nuser = 0;
  /* who raised it: skip the error function itself */
  if (lua_getstack(L, level, &ar) && lua_getinfo(L, "Sn", &ar) && ar.what[0] == 'C' && ar.name &&
      strcmp(ar.name, "error") == 0)
    level++;
  if (lua_getstack(L, level, &ar) && lua_getinfo(L, "S", &ar)) by_fvl = internal_frame(&ar);
  char frames[4096];
  size_t n = 0;
  frames[0] = 0;
  for (int l = level; lua_getstack(L, l, &ar) && n < sizeof frames - 1; l++) {
    if (!lua_getinfo(L, "Sln", &ar) || internal_frame(&ar)) continue;
    nuser++;
    int k;
    if (by_fvl) {
      char pos[300];
      snprintf(pos, sizeof pos, "%s:%d:", ar.short_src, ar.currentline);
      /* luaL_error already put the position in front of the message */
      k = nuser == 1 && strncmp(msg, pos, strlen(pos)) != 0
              ? snprintf(frames + n, sizeof frames - n, "\n  at %s:%d", ar.short_src, ar.currentline) : 0;
    }
    else if (*ar.what == 'm')
      k = snprintf(frames + n, sizeof frames - n, "\n\t%s:%d: in main chunk", ar.short_src, ar.currentline);
    else if (*ar.namewhat && ar.name)
      k = snprintf(frames + n, sizeof frames - n, "\n\t%s:%d: in %s '%s'", ar.short_src, ar.currentline,
                   ar.namewhat, ar.name);
    else
      k = snprintf(frames + n, sizeof frames - n, "\n\t%s:%d: in function <%s:%d>", ar.short_src,
                   ar.currentline, ar.short_src, ar.linedefined);
    if (k > 0) n += (size_t)k < sizeof frames - n ? (size_t)k : sizeof frames - n - 1;
  }
  if (by_fvl)
    lua_pushfstring(L, "%s%s", msg, frames);
  else if (nuser >= 2)
    lua_pushfstring(L, "%s\nstack traceback (your code; FVL_TRACEBACK=1 for every frame):%s", msg, frames);
  else
    lua_pushstring(L, msg);
  return 1;
}

int app_docall(lua_State *L, int narg, int nres) {
  int base = lua_gettop(L) - narg;
  struct sigaction old;
  sigset_t unblock, oldmask;
  lua_pushcfunction(L, msghandler);
  lua_insert(L, base);
  sigaction(SIGINT, NULL, &old);
  app_sigint_running(L);
  sigemptyset(&unblock);
  sigaddset(&unblock, SIGINT);
  sigprocmask(SIG_UNBLOCK, &unblock, &oldmask);
  int status = lua_pcall(L, narg, nres, base);
  sigprocmask(SIG_SETMASK, &oldmask, NULL);
  sigaction(SIGINT, &old, NULL);
  /* a Ctrl-C that came after the code finished must not hit the next command */
  if (lua_gethook(L) == stop_hook) lua_sethook(L, NULL, 0, 0);
  fvl_abort_clear();
  lua_remove(L, base);
  return status;
}

int app_report(lua_State *L, int status) {
  if (status != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    if (msg == NULL) msg = "(error object is not a string)";
    fprintf(stderr, "%s: %s\n", progname, msg);
    fflush(stderr);
    lua_pop(L, 1);
  }
  return status;
}

/* ------------------------------------------------------------------ version */
void app_print_version(int full) {
  printf("FaceVerLoss %s  (%s)\n", FVL_VERSION, LUA_RELEASE);
  if (full) {
    int n = fvl_get_threads();
    printf("OpenBLAS: %s\n", fvl_blas_config());
    printf("BLAS core: %s\n", fvl_blas_core());
    char why[256];
    fvl_cpus_available(why, sizeof why);
    printf("threads: %d (machine cores: %d)\n", n, fvl_cpu_count());
    printf("CPUs for this process: %s (the default thread count; -t or FVL_THREADS override it)\n", why);
    printf("build: %s\n", fvl_build_type());
  }
  fflush(stdout);
}

/* ------------------------------------------------------------------ options */
enum { HAS_ERROR = 1, HAS_I = 2, HAS_V = 4, HAS_E = 8, HAS_BIGE = 16, HAS_HELP = 32, HAS_VERSION = 64 };

/* Scans the options; *first is the index of the script (argc when there is none).
 * Returns a set of HAS_* flags; HAS_ERROR with *first at the bad option. */
static int collectargs(char **argv, int *first, const char **threads_opt) {
  int args = 0;
  int i;
  for (i = 1; argv[i] != NULL; i++) {
    *first = i;
    if (argv[i][0] != '-') return args;   /* not an option: the script */
    switch (argv[i][1]) {
      case '-':                            /* "--", or --help / --version */
        if (strcmp(argv[i], "--help") == 0) return args | HAS_HELP;
        if (strcmp(argv[i], "--version") == 0) return args | HAS_VERSION;
        if (argv[i][2] != '\0') return HAS_ERROR;
        *first = i + 1;
        return args;
      case '\0':                           /* "-": stdin is the script */
        return args;
      case 'E':
        if (argv[i][2] != '\0') return HAS_ERROR;
        args |= HAS_BIGE;
        break;
      case 'W':
        if (argv[i][2] != '\0') return HAS_ERROR;
        break;
      case 'h':
        if (argv[i][2] != '\0') return HAS_ERROR;
        return args | HAS_HELP;
      case 'i':
        if (argv[i][2] != '\0') return HAS_ERROR;
        args |= HAS_I;
        break;
      case 'v':
        if (argv[i][2] != '\0') return HAS_ERROR;
        args |= HAS_V;
        break;
      case 'e':
      case 'l':
      case 't':
        if (argv[i][1] == 'e') args |= HAS_E;
        if (argv[i][2] == '\0') {          /* the argument is the next word */
          i++;
          if (argv[i] == NULL || argv[i][0] == '-') { *first = i - 1; return HAS_ERROR; }
          if (argv[i - 1][1] == 't') *threads_opt = argv[i];
        } else if (argv[i][1] == 't') {
          *threads_opt = argv[i] + 2;
        }
        break;
      default:
        return HAS_ERROR;
    }
  }
  *first = i;
  return args;
}

/* a positive thread count, or -1 */
static int parse_threads(const char *s) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || end == s || *end != '\0' || v < 1 || v > 4096) return -1;
  return (int)v;
}

/* arg[0] = script, arg[1..] = its arguments, arg[-1..] = options and the program */
static void createargtable(lua_State *L, char **argv, int argc, int script) {
  if (script == argc) script = 0;        /* no script: arg[0] is the program */
  lua_createtable(L, argc - script - 1 > 0 ? argc - script - 1 : 0, script + 1);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - script);
  }
  lua_setglobal(L, "arg");
}

static int dochunk(lua_State *L, int status) {
  if (status == LUA_OK) status = app_docall(L, 0, 0);
  return app_report(L, status);
}

static int dostring(lua_State *L, const char *s, const char *name) {
  return dochunk(L, luaL_loadbuffer(L, s, strlen(s), name));
}

/* -l mod / -l g=mod: global g (or mod's last dotted part) = require(mod) */
static int dolibrary(lua_State *L, const char *spec) {
  const char *eq = strchr(spec, '=');
  const char *mod = eq ? eq + 1 : spec;
  char gname[256];
  if (eq) {
    size_t n = (size_t)(eq - spec);
    if (n == 0 || n >= sizeof gname || *mod == '\0') {
      fprintf(stderr, "%s: -l expects 'mod' or 'name=mod', got '%s'\n", progname, spec);
      return LUA_ERRRUN;
    }
    memcpy(gname, spec, n);
    gname[n] = '\0';
  } else {
    const char *dot = strrchr(mod, '.');
    snprintf(gname, sizeof gname, "%s", dot ? dot + 1 : mod);
  }
  lua_getglobal(L, "require");
  lua_pushstring(L, mod);
  int status = app_docall(L, 1, 1);
  if (status == LUA_OK) lua_setglobal(L, gname);
  return app_report(L, status);
}

/* LUA_INIT_5_4 or LUA_INIT, as in lua: code, or @file to run a file (not with -E) */
static int handle_luainit(lua_State *L) {
  const char *name = "=LUA_INIT_5_4";
  const char *init = getenv(name + 1);
  if (init == NULL) {
    name = "=LUA_INIT";
    init = getenv(name + 1);
  }
  if (init == NULL) return LUA_OK;
  if (init[0] == '@') return dochunk(L, luaL_loadfile(L, init + 1));
  return dostring(L, init, name);
}

static int runargs(lua_State *L, char **argv, int n) {
  for (int i = 1; i < n; i++) {
    char opt = argv[i][1];
    if (opt == 'e' || opt == 'l') {
      const char *extra = argv[i] + 2;
      if (*extra == '\0') extra = argv[++i];
      int status = opt == 'e' ? dostring(L, extra, "=(command line)") : dolibrary(L, extra);
      if (status != LUA_OK) return 0;
    } else if (opt == 't') {
      if (argv[i][2] == '\0') i++;
    } else if (opt == 'W') {
      lua_warning(L, "@on", 0);
    }
  }
  return 1;
}

static int pushargs(lua_State *L) {
  if (lua_getglobal(L, "arg") != LUA_TTABLE) luaL_error(L, "'arg' is not a table");
  int n = (int)luaL_len(L, -1);
  luaL_checkstack(L, n + 3, "too many arguments to script");
  for (int i = 1; i <= n; i++) lua_rawgeti(L, -i, i);
  lua_remove(L, -n - 1);
  return n;
}

static int handle_script(lua_State *L, char **argv) {
  const char *fname = argv[0];
  if (strcmp(fname, "-") == 0 && strcmp(argv[-1], "--") != 0) fname = NULL;   /* stdin */
  int status = luaL_loadfile(L, fname);
  if (status == LUA_OK) {
    int n = pushargs(L);
    status = app_docall(L, n, 0);
  }
  return app_report(L, status);
}

static int stdin_is_tty(void) { return isatty(STDIN_FILENO); }

/* everything runs protected, so an error anywhere is reported instead of aborting */
static int pmain(lua_State *L) {
  int argc = (int)lua_tointeger(L, 1);
  char **argv = (char **)lua_touserdata(L, 2);
  int script = (int)lua_tointeger(L, 3);
  int args = (int)lua_tointeger(L, 4);
  luaL_checkversion(L);
  if (args & HAS_BIGE) {                   /* package library reads this flag */
    lua_pushboolean(L, 1);
    lua_setfield(L, LUA_REGISTRYINDEX, "LUA_NOENV");
  }
  luaL_openlibs(L);
  createargtable(L, argv, argc, script);
  lua_gc(L, LUA_GCRESTART);
  lua_gc(L, LUA_GCGEN, 0, 0);
  /* fvl = require "fvl" before anything runs (the module is linked in: package.preload) */
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_fvl);
  lua_setfield(L, -2, "fvl");
  lua_pop(L, 1);
  lua_pushcfunction(L, msghandler);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "fvl");
  if (lua_pcall(L, 1, 1, -3) != LUA_OK) {
    fprintf(stderr, "%s: cannot load the fvl module: %s\n", progname, lua_tostring(L, -1));
    return 0;
  }
  lua_setglobal(L, "fvl");
  lua_pop(L, 1);
  if (args & HAS_V) app_print_version(1);
  if (!(args & HAS_BIGE) && handle_luainit(L) != LUA_OK) return 0;
  if (!runargs(L, argv, script)) return 0;
  if (script < argc && handle_script(L, argv + script) != LUA_OK) return 0;
  if (args & HAS_I) {
    app_repl(L);
  } else if (script == argc && !(args & (HAS_E | HAS_V))) {
    if (stdin_is_tty()) {
      app_print_version(0);
      app_repl(L);
    } else if (dochunk(L, luaL_loadfile(L, NULL)) != LUA_OK) {
      return 0;
    }
  }
  lua_pushboolean(L, 1);
  return 1;
}

__attribute__((visibility("default"))) int fvl_app_main(int argc, char **argv) {
  main_thread = pthread_self();
  int script = argc;
  const char *threads_opt = NULL;
  int args = collectargs(argv, &script, &threads_opt);
  if (args & HAS_ERROR) {
    usage(argv[script]);
    return EXIT_FAILURE;
  }
  if (args & HAS_HELP) {
    usage(NULL);
    return EXIT_SUCCESS;
  }
  if (args & HAS_VERSION) {
    printf("fvl (FaceVerLoss) %s  (%s)\n", FVL_VERSION, LUA_RELEASE);
    return EXIT_SUCCESS;
  }
  /* threads: -t wins over FVL_THREADS; neither: the machine's cores */
  int nthreads = 0;
  if (threads_opt) {
    nthreads = parse_threads(threads_opt);
    if (nthreads < 0) {
      fprintf(stderr, "%s: -t expects a thread count 1..4096, got '%s'\n", progname, threads_opt);
      return EXIT_FAILURE;
    }
  } else if (!(args & HAS_BIGE) && getenv("FVL_THREADS") && *getenv("FVL_THREADS")) {
    nthreads = parse_threads(getenv("FVL_THREADS"));
    if (nthreads < 0) {
      fprintf(stderr, "%s: FVL_THREADS expects a thread count 1..4096, got '%s'\n", progname,
              getenv("FVL_THREADS"));
      return EXIT_FAILURE;
    }
  }
  fvl_set_threads(nthreads);

  lua_State *L = luaL_newstate();
  if (L == NULL) {
    fprintf(stderr, "%s: cannot create state: not enough memory\n", progname);
    return EXIT_FAILURE;
  }
  lua_gc(L, LUA_GCSTOP);   /* no collections while the libraries load */
  lua_pushcfunction(L, pmain);
  lua_pushinteger(L, argc);
  lua_pushlightuserdata(L, argv);
  lua_pushinteger(L, script);
  lua_pushinteger(L, args);
  int status = lua_pcall(L, 4, 1, 0);
  int ok = lua_toboolean(L, -1);
  app_report(L, status);
  lua_close(L);
  return (ok && status == LUA_OK) ? EXIT_SUCCESS : EXIT_FAILURE;
}
