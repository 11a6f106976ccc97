/* placeholder until the data binding lands */
#include "bind.h"
int fvl_open_data(lua_State *L) { (void)L; return 0; }
