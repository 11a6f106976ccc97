/* module.c — luaopen_fvl: the engine's bindings plus the embedded Lua library.
 * Sets no globals: returns the fvl table (the fvl program stores it as the global `fvl`). */
#include <string.h>
#include "bind.h"

typedef struct { const char *name, *file, *src; size_t len; } fvl_embedded_t;
extern const fvl_embedded_t fvl_embedded[];

static int embedded_loader(lua_State *L) {
  const fvl_embedded_t *e = lua_touserdata(L, lua_upvalueindex(1));
  char chunk[256];
  snprintf(chunk, sizeof chunk, "@%s", e->file);
  if (luaL_loadbuffer(L, e->src, e->len, chunk) != LUA_OK) return lua_error(L);
  lua_pushstring(L, e->name);
  lua_call(L, 1, 1);
  return 1;
}

int luaopen_fvl(lua_State *L) {
  lua_newtable(L);
  int core = lua_gettop(L);
  fvl_open_tensor(L);
  fvl_open_runtime(L);
  fvl_open_loss(L);
  fvl_open_nn(L);
  fvl_open_optim(L);
  fvl_open_checkpoint(L);
  fvl_open_data(L);
  fvl_open_eval(L);
  fvl_open_plot(L);
  fvl_open_store(L);
  fvl_open_sys(L);
  fvl_open_dist(L);
  fvl_open_faces(L);
  fvl_open_warp(L);
  fvl_open_backbone(L);
  fvl_open_cluster(L);
  fvl_open_megaface(L);
  lua_settop(L, core);
  /* package.loaded["fvl.core"] = core table; package.preload[...] = embedded modules */
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_pushvalue(L, core);
  lua_setfield(L, -2, "fvl.core");
  lua_pop(L, 1);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  const fvl_embedded_t *init = NULL;
  for (const fvl_embedded_t *e = fvl_embedded; e->name; e++) {
    if (strcmp(e->name, "fvl") == 0) { init = e; continue; }
    lua_pushlightuserdata(L, (void *)e);
    lua_pushcclosure(L, embedded_loader, 1);
    lua_setfield(L, -2, e->name);
  }
  lua_pop(L, 1);
  if (!init) return 1;
  lua_pushlightuserdata(L, (void *)init);
  lua_pushcclosure(L, embedded_loader, 1);
  lua_call(L, 0, 1);   /* init.lua receives "fvl" and returns the finished module */
  return 1;
}
