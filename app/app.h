/* app.h — pieces of the fvl program shared between main.c (options, scripts) and
 * repl.c (the interactive loop). Only the program uses this header. */
#ifndef FVL_APP_H
#define FVL_APP_H
#include <lua.h>

#define FVL_PROGNAME "fvl"

/* Runs the function on top of the stack with `narg` arguments below it, under the
 * traceback message handler, with Ctrl-C armed (Lua hook + engine abort flag).
 * Leaves the results (LUA_MULTRET) or the error message on the stack. */
int app_docall(lua_State *L, int narg, int nres);

/* Prints "fvl: <msg>" to stderr when status != LUA_OK and pops the message. */
int app_report(lua_State *L, int status);

/* Ctrl-C handling while Lua code runs (installed by app_docall, and by the REPL). */
void app_sigint_running(lua_State *L);
/* in a SIGINT handler: passes the signal on to the main thread when it landed elsewhere
 * (returns 1: the handler should return at once) */
int app_sigint_forward(void);
/* did Ctrl-C interrupt the last app_docall? */
int app_interrupted(void);

/* The program's main (app/main.c); app/launcher/fvl.c loads fvl_app.so and calls it. */
int fvl_app_main(int argc, char **argv);

/* The interactive loop: readline when stdin is a terminal, plain lines otherwise. */
void app_repl(lua_State *L);

/* One-line view of a value for the REPL: strings/numbers/tensors via tostring, plain
 * tables as {1, 2, a = 3, ...}. Pushes the string. May raise (from __tostring). */
void app_pushview(lua_State *L, int idx);

/* "FaceVerLoss x (Lua y)" and the engine facts, for -v and the REPL banner. */
void app_print_version(int full);
#endif
