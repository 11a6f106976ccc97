/* placeholder until the store binding lands */
#include "bind.h"
int fvl_open_store(lua_State *L) { (void)L; return 0; }
