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
/* luaL_typeerror's message at fvl_error's position (the user's line, also under the Lua library) */
int fvl_typeerror(lua_State *L, int idx, const char *tname);
fvl_tensor *fvl_opttensor(lua_State *L, int idx);           /* nil/none → NULL */
/* a tensor argument that may also be a number or a nested table (new reference) */
fvl_tensor *fvl_astensor(lua_State *L, int idx, fvl_dtype dt);
/* pushes t and takes over the caller's reference. t == NULL raises fvl_errmsg(). */
void fvl_pushtensor(lua_State *L, fvl_tensor *t);
/* luaL_error with printf formats (%g, %lld, ... which lua_pushfstring does not know) */
int fvl_error(lua_State *L, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* pushes the position an error names: the caller's "file:line: ", or, when the caller is the Lua
 * library (lua/fvl/), that of the first caller outside it (the user's line), or "" */
void fvl_pushwhere(lua_State *L);
/* raise the engine's last error as a Lua error (never returns) */
int fvl_raise(lua_State *L);
/* charge the Lua GC for engine bytes allocated since the last call */
void fvl_gc_charge(lua_State *L);

/* labels: an int32 tensor or a Lua list of 1-based class ids. Checks every value is in
 * 1..nclasses (nclasses = 0: an empty class matrix, no label is valid; nclasses < 0: any id in
 * 1..INT32_MAX) and returns a NEW 0-based int32 tensor of n rows (n < 0: any length).
 * This is THE label check: callers do not re-check. Errors read
 * "fn: labels[17] = 12 is outside 1..10", "fn: labels[1] = 1.5 is not an integer class id". */
fvl_tensor *fvl_checklabels(lua_State *L, int idx, const char *fn, int64_t n, int64_t nclasses);
/* 1-based index tensor/list → 0-based int32, checked against 1..n */
fvl_tensor *fvl_checkindex(lua_State *L, int idx, const char *fn, const char *arg, int64_t n);

/* Checked labels (lua/bind_labels.c): the fvl.Labels value fvl._check_labels returns (a head's
 * check: Head:check_input). It holds the 0-based ids, the row count and the bound 1..C they were
 * checked against; Lua never sees the ids themselves, so the value cannot change after its check.
 * fvl_checklabels / fvl_checkindex take one in O(1) (a copy; no scan). A binding that only reads
 * the labels uses fvl_labels_match first: for a checked value at idx it compares the row count
 * n (< 0: any) and the bound hi (labels: the same C, or hi < 0; indices: C <= hi) and returns the
 * value's own tensor, BORROWED (valid while idx stays on the stack; never modify it), raising
 * "fn: labels were checked against 1..10 (by arcface) but this call needs 1..12" on a mismatch;
 * for anything else it returns NULL. */
#define FVL_LABELS_MT "fvl.Labels"
fvl_tensor *fvl_labels_match(lua_State *L, int idx, const char *fn, const char *arg, int64_t n, int64_t hi,
                             int labels);
/* pushes a new checked value holding y (a new reference the value takes over: 0-based int32,
 * contiguous, 1-D), checked by `by` against 1..nclasses (< 0: any id) */
void fvl_pushlabels(lua_State *L, fvl_tensor *y, const char *by, int64_t nclasses);
int fvl_islabels(lua_State *L, int idx);
/* the checked value at idx: its ids (BORROWED, as fvl_labels_match's), bound (< 0: any id) and
 * maker (valid while idx stays on the stack); NULL for anything else */
fvl_tensor *fvl_labels_parts(lua_State *L, int idx, int64_t *nclasses, const char **by);
void fvl_labels_count_scan(void);        /* fvl_checklabels's full scans (fvl._label_scans) */
void fvl_open_labels(lua_State *L);      /* the metatable; fvl._label_scans into the table on top */

/* a float32 contiguous tensor of rank nd (0 = any) at idx, converted when needed; the result is
 * pushed (the stack owns it) and returned. Errors "fn: arg must be 2-D (N×D), got 3×4×5". */
fvl_tensor *fvl_checkf32(lua_State *L, int idx, const char *fn, const char *arg, int nd);
/* The binding's one check of a 1-based position (DEVELOPERS.md "The binding boundary"): each
 * raises with the user's 1-based wording and returns the 0-based value the engine takes (whose
 * own check is then only a 0-based invariant).
 * fvl_checkdim: dim 1..ndim, or -ndim..-1 counted from the end ("narrow: dim 3 is outside 1..2");
 * fvl_checkpos: i in 1..n ("select: index 3 is outside 1..2", what = "index");
 * fvl_checkrows: the rows first..first+count-1 within 1..n, count >= 0 (count 0 may start at n+1),
 *   checked without overflow ("loader: batch rows 4..5 are outside 1..4", what = "batch rows";
 *   where = NULL or a tail such as " of dim 2"); returns first - 1;
 * fvl_checkfloat: t is float32 ("normalize: input is int32, expected float32 (use :float())"). */
int fvl_checkdim(lua_State *L, const char *fn, lua_Integer dim, int ndim);
int64_t fvl_checkpos(lua_State *L, const char *fn, const char *what, lua_Integer i, int64_t n);
int64_t fvl_checkrows(lua_State *L, const char *fn, const char *what, lua_Integer first, lua_Integer count,
                      int64_t n, const char *where);
void fvl_checkfloat(lua_State *L, const fvl_tensor *t, const char *fn, const char *arg);
/* fvl_checkfloat for each ("name", tensor) pair up to NULL; a NULL tensor (an absent optional
 * argument) is skipped: fvl_checkfloats(L, "linear", "input", x, "weight", w, "bias", b, NULL) */
void fvl_checkfloats(lua_State *L, const char *fn, ...);
/* every value of a contiguous float32 tensor (1-D or 2-D, as fvl_checkf32 returns) is finite:
 * "pairs: emb[3][2] = nan is not a finite number" (1-based row and column) */
void fvl_checkfinite(lua_State *L, const fvl_tensor *t, const char *fn, const char *arg);

/* ---- The binding boundary (DEVELOPERS.md): declared option tables, anchors, checked sizes ----
 * An option table is read against ONE declared array of fvl_optdef ending in FVL_OPT_END:
 *   static const fvl_optdef SGD_OPTS[] = {
 *     {"lr", FVL_OPT_NUMBER, -1, 0, HUGE_VAL, NULL},          // range 0..inf, default -1 = unset
 *     {"nesterov", FVL_OPT_BOOLEAN, 0, FVL_NORANGE, NULL},
 *     {"fallback", FVL_OPT_ENUM, 0, FVL_NORANGE, "mm|none|clamp|easy"},
 *     FVL_OPT_END};
 *   fvl_optval o[4]; int anchor = fvl_readopts(L, 4, "sgd_step", SGD_OPTS, o);
 * Unknown keys, wrong types, values outside lo..hi and names outside the enum are errors naming
 * fn, the key, what was expected and what came ("sgd_step: lr = -1 is outside 0..inf").
 * Strings and tensors in o[] point into values held by the anchor table fvl_readopts pushed:
 * leave it on the stack while C uses them (it goes when the C function returns).
 * fvl_register_opts publishes the key list as fvl._options[name] for the Lua layer. */
typedef enum {
  FVL_OPT_NUMBER = 1, FVL_OPT_INTEGER, FVL_OPT_BOOLEAN, FVL_OPT_STRING, FVL_OPT_ENUM,
  FVL_OPT_TENSOR, FVL_OPT_NUMBER_OR_TENSOR, FVL_OPT_TABLE,
  FVL_OPT_ANY          /* any value, kept in the anchor (fvl_optpush); the binding checks it */
} fvl_optkind;
typedef struct fvl_optdef {
  const char *key;
  fvl_optkind kind;
  double def;          /* NUMBER/INTEGER/BOOLEAN default; ENUM: index of the default name */
  double lo, hi;       /* NUMBER/INTEGER accepted range, inclusive; lo > hi: any (FVL_NORANGE) */
  const char *names;   /* ENUM: "a|b|c"; STRING: the default (static) or NULL */
} fvl_optdef;
#define FVL_NORANGE 1, 0
#define FVL_OPT_END {NULL, 0, 0, 0, 0, NULL}
typedef struct fvl_optval {
  int set;             /* the key was present (not nil) */
  double num;          /* NUMBER, INTEGER, BOOLEAN (0/1), ENUM index, NUMBER_OR_TENSOR number */
  const char *str;     /* STRING / ENUM: anchored */
  size_t len;
  fvl_tensor *t;       /* TENSOR / NUMBER_OR_TENSOR given as a tensor: anchored (borrowed) */
  int table;           /* TABLE / ANY: slot in the anchor, see fvl_optpush */
} fvl_optval;
int fvl_readopts(lua_State *L, int idx, const char *fn, const fvl_optdef *defs, fvl_optval *out);
int fvl_optpush(lua_State *L, int anchor, const fvl_optval *v);   /* pushes a TABLE option */
void fvl_pushoptdefs(lua_State *L, const fvl_optdef *defs);       /* {"key1", "key2", ...} */
void fvl_register_opts(lua_State *L, int fvl_table, const char *name, const fvl_optdef *defs);
/* Anchors: a value read from a table by lua_getfield/lua_geti may exist only on the stack
 * (an __index can make it fresh), so a pointer into it dies with the pop. Keep it instead:
 *   int a = fvl_anchor_new(L);               // pushes the anchor table
 *   lua_getfield(L, t, "title"); const char *s = fvl_anchor_string(L, a, NULL);  // pops, s stays valid */
int fvl_anchor_new(lua_State *L);
void fvl_anchor_keep(lua_State *L, int anchor);                  /* moves the top value into it */
const char *fvl_anchor_string(lua_State *L, int anchor, size_t *len);
/* checked size arithmetic for sizes from Lua: raise "fn: size a × b overflows" */
int64_t fvl_checksize_mul(lua_State *L, const char *fn, int64_t a, int64_t b);
int64_t fvl_checksize_add(lua_State *L, const char *fn, int64_t a, int64_t b);
/* the element count of a shape after fvl_shape_check (raises "fn: shape ... has more than 2^40 elements") */
int64_t fvl_checkshape_numel(lua_State *L, const char *fn, int ndim, const int64_t *size);
/* a Lua integer into int32 within lo..hi (clipped to int32): "fn: arg = v is outside lo..hi" */
int32_t fvl_checkint32(lua_State *L, const char *fn, const char *arg, lua_Integer v, lua_Integer lo,
                       lua_Integer hi);

/* BatchNorm's optional momentum (default 0.1, in 0..1) and eps (1e-5, positive and finite) at the
 * given argument positions (0: not taken), checked once here for every BatchNorm binding:
 * "batch_norm: eps = -1 (argument 8), expected a positive finite number" */
void fvl_optbn(lua_State *L, const char *fn, int momentum_idx, double *momentum, int eps_idx, double *eps);

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
int fvl_open_warp(lua_State *L);     /* lua/bind_warp.c: affine warp, resize, face alignment */
int fvl_open_backbone(lua_State *L); /* lua/bind_backbone.c: grouped conv, fused BN + PReLU */
int fvl_open_cluster(lua_State *L);  /* lua/bind_cluster.c: k-means, NMI / AMI (fvl._cluster) */
int fvl_open_megaface(lua_State *L); /* lua/bind_megaface.c: MegaFace features, rank-k (fvl._megaface) */
#endif
