/* fvl_loader.c — the Lua module fvl.so that stock `lua5.4` (or any host) loads by `require "fvl"`.
 * It loads the engine module fvl_engine.so from its own directory and hands over to its
 * luaopen_fvl. The one thing it does first: when libgomp is not in the process yet, it loads
 * it with OMP_WAIT_POLICY=passive (unless the user chose a policy; the variable is removed
 * again afterwards, so child processes see the user's environment). libgomp reads the policy
 * once, when it is loaded, and its default (spinning ~300,000 times at every barrier before
 * sleeping) makes the engine's many short parallel loops and GEMMs crawl as soon as the cores are
 * shared with other processes (measured: an example script 1.7 s passive, 10–50 s spinning on
 * a 2-core machine with other jobs). The fvl program does the same (app/launcher/fvl.c). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <lua.h>
#include <lauxlib.h>

int luaopen_fvl(lua_State *L);

int luaopen_fvl(lua_State *L) {
  static lua_CFunction open_engine = NULL;
  if (!open_engine) {
    Dl_info info;
    if (!dladdr((void *)luaopen_fvl, &info) || !info.dli_fname)
      return luaL_error(L, "require \"fvl\": cannot find the directory of fvl.so");
    const char *slash = strrchr(info.dli_fname, '/');
    size_t dirlen = slash ? (size_t)(slash - info.dli_fname) + 1 : 0;
    static const char engine[] = "fvl_engine.so";
    char path[4096];
    if (dirlen + sizeof engine > sizeof path)
      return luaL_error(L, "require \"fvl\": path of fvl.so too long (%d bytes)", (int)dirlen);
    memcpy(path, info.dli_fname, dirlen);
    memcpy(path + dirlen, engine, sizeof engine);
    int set = 0;
    void *gomp = dlopen("libgomp.so.1", RTLD_NOW | RTLD_NOLOAD);
    if (gomp) {
      dlclose(gomp);   /* already loaded by the host: its policy stands */
    } else if (!getenv("OMP_WAIT_POLICY")) {
      setenv("OMP_WAIT_POLICY", "passive", 1);
      set = 1;
    }
    /* NODELETE: lua_close unloads C modules, and libgomp's idle threads must not outlive it */
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
    if (set) unsetenv("OMP_WAIT_POLICY");
    if (!h) return luaL_error(L, "require \"fvl\": cannot load %s: %s", path, dlerror());
    open_engine = (lua_CFunction)(void (*)(void))dlsym(h, "luaopen_fvl");
    if (!open_engine) return luaL_error(L, "require \"fvl\": %s has no luaopen_fvl", path);
  }
  return open_engine(L);
}
