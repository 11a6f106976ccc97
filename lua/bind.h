/* bind.h — helpers shared by the thin Lua bindings (lua/bind_*.c).
 * The binding checks arguments, calls the engine, wraps results; nothing else. */
#ifndef FVL_BIND_H
#define FVL_BIND_H
#include <lua.h>
#include <lauxlib.h>
#include "tensor.h"
#include "autograd.h"

#define FVL_TENSOR_MT "fvl.Tensor"

/* tensor userdata */
fvl_tensor *fvl_totensor(lua_State *L, int idx);            /* NULL when not a tensor */
fvl_tensor *fvl_checktensor(lua_State *L, int idx);         /* raises "bad argument #i to 'fn'" */
fvl_tensor *fvl_opttensor(lua_State *L, int idx);           /* nil/none → NULL */
/* a tensor argument that may also be a number or a nested table (new reference) */
fvl_tensor *fvl_astensor(lua_State *L, int idx, fvl_dtype dt);
/* pushes t and takes over the caller's reference. t == NULL raises fvl_errmsg(). */
void fvl_pushtensor(lua_State *L, fvl_tensor *t);
/* luaL_error with printf formats (%g, %lld, ... which lua_pushfstring does not know) */
int fvl_error(lua_State *L, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* raise the engine's last error as a Lua error (never returns) */
int fvl_raise(lua_State *L);
/* charge the Lua GC for engine bytes allocated since the last call */
void fvl_gc_charge(lua_State *L);

/* labels: an int32 tensor or a Lua list of 1-based class ids. Checks every value is in
 * 1..nclasses (nclasses <= 0: only >= 1) and returns a NEW 0-based int32 tensor of n rows
 * (n < 0: any length). Errors read "fn: labels[17] = 12 is outside 1..10". */
fvl_tensor *fvl_checklabels(lua_State *L, int idx, const char *fn, int64_t n, int64_t nclasses);
/* 1-based index tensor/list → 0-based int32, checked against 1..n */
fvl_tensor *fvl_checkindex(lua_State *L, int idx, const char *fn, const char *arg, int64_t n);

/* option tables: unknown keys are an error ("arcface: unknown option 'margn' (expected one
 * of: s, m, ...)"). `allowed` is NULL-terminated. idx may be absent (none/nil). */
void fvl_checkopts(lua_State *L, int idx, const char *fn, const char *const *allowed);
double fvl_optnum(lua_State *L, int idx, const char *key, double def);
int fvl_optint(lua_State *L, int idx, const char *key, int def);
int fvl_optbool(lua_State *L, int idx, const char *key, int def);
const char *fvl_optstr(lua_State *L, int idx, const char *key, const char *def);
/* a string option restricted to a set: "arcface: fallback = 'foo' (expected mm|easy|none|clamp)" */
int fvl_optenum(lua_State *L, int idx, const char *fn, const char *key, const char *const *names,
                int def);

/* a float32 contiguous tensor of rank nd (0 = any) at idx, converted when needed; the result is
 * pushed (the stack owns it) and returned. Errors "fn: arg must be 2-D (N×D), got 3×4×5". */
fvl_tensor *fvl_checkf32(lua_State *L, int idx, const char *fn, const char *arg, int nd);

/* shape from a table {2,3} or varargs 2,3 starting at idx → ndim, fills size */
int fvl_checkshape(lua_State *L, int idx, const char *fn, int64_t *size);

/* Each binding file registers its functions into the table on top of the stack. */
int fvl_open_tensor(lua_State *L);   /* lua/bind_tensor.c: tensors, autograd, npy */
int fvl_open_runtime(lua_State *L);  /* lua/bind_runtime.c: rng, threads, mem, info, _bench */
int fvl_open_loss(lua_State *L);     /* lua/bind_loss.c: fvl.F.* loss primitives */
int fvl_open_nn(lua_State *L);       /* lua/bind_nn.c: layer kernels */
int fvl_open_optim(lua_State *L);    /* lua/bind_optim.c: optimiser steps */
int fvl_open_checkpoint(lua_State *L); /* lua/bind_checkpoint.c: fvl.save/load_checkpoint */
int fvl_open_data(lua_State *L);     /* lua/bind_data.c: IDX/Fashion-MNIST, synthetic faces */
int fvl_open_eval(lua_State *L);     /* lua/bind_eval.c: verification, ROC, identification */
int fvl_open_plot(lua_State *L);     /* lua/bind_plot.c: charts, scatter, GIF animations */
int fvl_open_store(lua_State *L);    /* lua/bind_store.c: SQLite sweep store */
int fvl_open_sys(lua_State *L);      /* lua/bind_sys.c: fvl.sys processes, time, files */
int fvl_open_dist(lua_State *L);     /* lua/bind_dist.c: fvl.dist collectives (MPI) */
int fvl_open_faces(lua_State *L);    /* lua/bind_data_faces.c: RecordIO, images, .bin packs, .npz */
#endif
