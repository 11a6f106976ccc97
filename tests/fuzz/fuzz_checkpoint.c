/* fuzz_checkpoint.c — libFuzzer target: the checkpoint header (checkpoint.json) through the real
 * loader, fvl.load_checkpoint in lua/fvl/checkpoint.lua (JSON decode, the header's structure, the
 * blobs it names: .npy of both dtypes, truncated, missing), on a Lua state holding the tensor,
 * runtime, sys and face-data bindings. Lua code is invisible to libFuzzer's compiler coverage, so a
 * line hook feeds (source, line) pairs of the Lua library into libFuzzer's extra counters.
 * Every input is written as checkpoint.json into a copy of the seed checkpoint directory
 * (tests/fuzz/seeds/checkpoint_dir, written by fvl.save_checkpoint in make_seeds.lua); the loader
 * must answer nil, message or a result — a raise is a finding (abort). */
#include <stdint.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>
#include "bind.h"

#ifndef FVL_SRC_DIR
#define FVL_SRC_DIR "."
#endif

/* Lua line coverage: libFuzzer reads this section as extra coverage counters */
#define LUA_COV (1 << 14)
__attribute__((section("__libfuzzer_extra_counters"))) static uint8_t lua_cov[LUA_COV];

static void line_hook(lua_State *L, lua_Debug *ar) {
  if (!lua_getinfo(L, "S", ar)) return;
  uintptr_t h = (uintptr_t)ar->source * 2654435761u ^ (uintptr_t)ar->currentline * 40503u;
  uint8_t *c = &lua_cov[(h ^ (h >> 15)) & (LUA_COV - 1)];
  if (*c < 255) (*c)++;
}

static lua_State *L;
static char dir[256];

static int setup(lua_State *S) {
  luaL_openlibs(S);
  lua_newtable(S);
  int core = lua_gettop(S);
  fvl_open_tensor(S);
  fvl_open_runtime(S);
  fvl_open_sys(S);
  fvl_open_faces(S);
  lua_settop(S, core);
  luaL_getsubtable(S, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_pushvalue(S, core);
  lua_setfield(S, -2, "fvl.core");
  lua_pop(S, 1);
  lua_getglobal(S, "package");
  lua_pushstring(S, FVL_SRC_DIR "/lua/?.lua;" FVL_SRC_DIR "/lua/?/init.lua");
  lua_setfield(S, -2, "path");
  lua_pop(S, 1);
  const char *boot =
      "local dir, seed = ...\n"
      "require('fvl.faces').install_io()\n"
      "assert(os.execute(\"rm -rf '\" .. dir .. \"' && mkdir -p '\" .. dir .. \"' && cp -r '\" .. seed .. \"'/. '\" .. dir .. \"'/\"))\n"
      "local ck = require 'fvl.checkpoint'\n"
      "return function(header)\n"
      "  local f = assert(io.open(dir .. '/checkpoint.json', 'wb'))\n"
      "  f:write(header)\n"
      "  f:close()\n"
      "  local ok, r, msg = pcall(ck.load_checkpoint, dir)\n"
      "  if not ok then return 'load_checkpoint raised: ' .. tostring(r) end\n"
      "  if r == nil and type(msg) ~= 'string' then return 'load_checkpoint: nil without a message' end\n"
      "  ok, r = pcall(ck.info, dir)\n"
      "  if not ok then return 'checkpoint.info raised: ' .. tostring(r) end\n"
      "  return nil\n"
      "end\n";
  if (luaL_loadstring(S, boot) != LUA_OK) return lua_error(S);
  lua_pushstring(S, dir);
  lua_pushstring(S, FVL_SRC_DIR "/tests/fuzz/seeds/checkpoint_dir");
  lua_call(S, 2, 1);
  return 1;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc; (void)argv;
  snprintf(dir, sizeof dir, "/tmp/fvl_fuzz_ck.%d", (int)getpid());
  L = luaL_newstate();
  lua_pushcfunction(L, setup);
  if (lua_pcall(L, 0, 1, 0) != LUA_OK) {
    fprintf(stderr, "fuzz_checkpoint: setup failed: %s\n", lua_tostring(L, -1));
    abort();
  }
  lua_setfield(L, LUA_REGISTRYINDEX, "fvl_fuzz_load");
  lua_sethook(L, line_hook, LUA_MASKLINE, 0);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  lua_getfield(L, LUA_REGISTRYINDEX, "fvl_fuzz_load");
  lua_pushlstring(L, (const char *)data, size);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK || lua_isstring(L, -1)) {
    fprintf(stderr, "fuzz_checkpoint: FINDING: %s\n", lua_tostring(L, -1));
    abort();
  }
  lua_pop(L, 1);
  lua_gc(L, LUA_GCCOLLECT);   /* tensors made by this input go now: leaks show per input */
  return 0;
}
