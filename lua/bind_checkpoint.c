/* bind_checkpoint.c — fvl.save_checkpoint / fvl.load_checkpoint on the fvl table itself. */
#include "bind.h"

/* fvl.save_checkpoint / fvl.load_checkpoint: forwarders to the Lua module fvl.checkpoint, so
 * that users find them as fvl.save_checkpoint / fvl.load_checkpoint without touching init.lua */
static int forward_to(lua_State *L, const char *field) {
  int n = lua_gettop(L);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "fvl.checkpoint");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, field);
  lua_remove(L, -2);
  lua_insert(L, 1);
  lua_call(L, n, LUA_MULTRET);
  return lua_gettop(L);
}
/*** fvl.save_checkpoint(path, what) -> path
   fvl.load_checkpoint(path [, into]) -> ck | nil, message
   fvl.checkpoint.save_checkpoint / load_checkpoint under their short names (see there): a
   versioned, code-free, crash-safe training checkpoint directory, and reading it back (restoring
   net, head, optimiser and RNG in place). */
static int l_save_checkpoint(lua_State *L) { return forward_to(L, "save_checkpoint"); }
static int l_load_checkpoint(lua_State *L) { return forward_to(L, "load_checkpoint"); }

int fvl_open_checkpoint(lua_State *L) {
  lua_pushcfunction(L, l_save_checkpoint);
  lua_setfield(L, -2, "save_checkpoint");
  lua_pushcfunction(L, l_load_checkpoint);
  lua_setfield(L, -2, "load_checkpoint");
  return 0;
}
