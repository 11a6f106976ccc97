/* placeholder until the loss binding lands */
#include "bind.h"
int fvl_open_loss(lua_State *L) { (void)L; return 0; }
