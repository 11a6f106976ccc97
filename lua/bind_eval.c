/* placeholder until the eval binding lands */
#include "bind.h"
int fvl_open_eval(lua_State *L) { (void)L; return 0; }
