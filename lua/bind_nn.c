/* placeholder until the nn binding lands */
#include "bind.h"
int fvl_open_nn(lua_State *L) { (void)L; return 0; }
