/* bind_dist.c — fvl.dist (engine/dist.h): the process world and collectives on tensors.
 * Thin: check, call, wrap. Ranks are 0-based, as in MPI and torch.distributed. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "bind.h"
#include "sort.h"
#include "dist.h"

static fvl_tensor *tensor_arg(lua_State *L, int idx, const char *fn, int float_only) {
  fvl_tensor *t = fvl_totensor(L, idx);
  if (!t) fvl_error(L, "fvl.dist.%s: argument #%d must be a tensor, got %s", fn, idx, luaL_typename(L, idx));
  if (float_only && t->dtype != FVL_F32)
    fvl_error(L, "fvl.dist.%s: argument #%d must be a float32 tensor, got int32", fn, idx);
  return t;
}

/*** fvl.dist.rank() -> integer
   fvl.dist.size() -> integer
   fvl.dist.active() -> boolean
   This process's 0-based rank, the number of processes, and whether it runs under an MPI
   launcher (mpirun; MPI starts lazily on first use). Without a launcher: rank 0, size 1, false,
   and every collective is the identity, so the same script runs with and without mpirun. */
static int l_rank(lua_State *L) { lua_pushinteger(L, fvl_dist_rank()); return 1; }
static int l_size(lua_State *L) { lua_pushinteger(L, fvl_dist_size()); return 1; }
static int l_active(lua_State *L) { lua_pushboolean(L, fvl_dist_active()); return 1; }
/*** fvl.dist.barrier() -> nothing
   Waits until every rank has reached it. */
static int l_barrier(lua_State *L) {
  if (fvl_dist_barrier()) return fvl_raise(L);
  return 0;
}

/*** fvl.dist.finalize() -> nothing
   Ends the MPI world on every rank (a barrier, then MPI_Finalize), so that a rank may then exit
   with a non-zero status (os.exit(143): stopped by a signal) without aborting the job; collectives
   after it are errors. Without a launcher it does nothing. */
static int l_finalize(lua_State *L) {
  if (fvl_dist_finalize()) return fvl_raise(L);
  return 0;
}

/*** fvl.dist.allreduce(t [, op]) -> t
   In place: t becomes the sum (op "sum", the default), "max" or "min" over the ranks; not
   tracked (use fvl.dist.sum for a tracked sum). Errors: an unknown op; a leaf that requires grad. */
static int l_allreduce(lua_State *L) {
  static const char *const ops[] = {"sum", "max", "min", NULL};
  fvl_tensor *t = tensor_arg(L, 1, "allreduce", 0);
  const char *op = luaL_optstring(L, 2, "sum");
  int k = 0;
  while (ops[k] && strcmp(ops[k], op)) k++;
  if (!ops[k]) fvl_error(L, "fvl.dist.allreduce: op = '%s' (expected sum|max|min)", op);
  if (t->requires_grad && !t->grad_fn && fvl_grad_enabled())
    fvl_error(L, "fvl.dist.allreduce: the tensor is a leaf that requires grad (in-place change); use "
                 "fvl.dist.sum(t) for a tracked sum, or t:detach()");
  if (fvl_dist_allreduce_(t, (fvl_redop)k)) return fvl_raise(L);
  lua_settop(L, 1);
  return 1;
}

/*** fvl.dist.broadcast(t [, root]) -> t
   In place: every rank's t becomes rank root's (0-based, default 0). Errors: root outside the ranks. */
static int l_broadcast(lua_State *L) {
  fvl_tensor *t = tensor_arg(L, 1, "broadcast", 0);
  lua_Integer root = luaL_optinteger(L, 2, 0);
  if (root < 0 || root >= fvl_dist_size())
    fvl_error(L, "fvl.dist.broadcast: root = %lld is outside 0..%d (0-based rank)", (long long)root,
              fvl_dist_size() - 1);
  if (fvl_dist_broadcast_(t, (int)root)) return fvl_raise(L);
  lua_settop(L, 1);
  return 1;
}

/* the ranks' checked labels (fvl.Labels) concatenated, a checked value again without a scan: each
 * rank's part was checked against its bound, and the bounds are compared first (every rank sees
 * them all, so every rank raises the same error when they differ; no rank is left waiting) */
static void bound_text(char *b, size_t n, int64_t c) {
  if (c < 0) snprintf(b, n, "any class id");
  else snprintf(b, n, "1..%lld", (long long)c);
}
static int allgather_labels(lua_State *L) {
  int64_t nc;
  const char *by;
  fvl_tensor *y = fvl_labels_parts(L, 1, &nc, &by);
  int size = fvl_dist_size();
  if (size <= 1) {
    lua_settop(L, 1);
    return 1;
  }
  /* the bounds, in a message the size of a tensor's shape exchange (fvl_dist_allgather_ex), marked
   * -1: a rank that passed a tensor instead raises on it too (a shape mismatch), none waits */
  enum { NW = FVL_MAXDIM + 2 };
  int64_t mine[NW] = {-1, nc};
  int64_t *all = lua_newuserdatauv(L, (size_t)size * sizeof mine, 0);   /* the GC frees it on an error */
  if (fvl_dist_allgather(mine, all, sizeof mine)) return fvl_raise(L);
  for (int r = 0; r < size; r++)
    if (all[r * NW] != -1)
      fvl_error(L, "fvl.dist.allgather: this rank passed checked labels but rank %d a tensor (every rank must "
                   "pass the same kind)", r);
  for (int r = 1; r < size; r++)
    if (all[r * NW + 1] != all[1]) {
      char a[48], b[48];
      bound_text(a, sizeof a, all[1]);
      bound_text(b, sizeof b, all[r * NW + 1]);
      fvl_error(L, "fvl.dist.allgather: rank 0's labels were checked against %s but rank %d's against %s "
                   "(every rank must check its labels against the same classes)", a, r, b);
    }
  fvl_tensor *g = fvl_dist_allgather_ex(y, 1);   /* int32: not tracked */
  if (!g) return fvl_raise(L);
  fvl_pushlabels(L, g, by, nc);
  return 1;
}

/*** fvl.dist.allgather(t [, opts]) -> tensor
   The ranks' tensors concatenated along dim 1 (same shapes on every rank), tracked: the backward
   reduce-scatters the gradient (opts.grad = "sum", the default) or, when every rank already holds
   the full gradient of the result, keeps this rank's rows (grad = "slice"). Checked labels
   (fvl.Labels, a head's check) give checked labels of the gathered batch, not scanned again;
   every rank's must have been checked against the same classes. */
enum { AG_GRAD, AG_N };
static const fvl_optdef ALLGATHER_OPTS[AG_N + 1] = {
  [AG_GRAD] = {"grad", FVL_OPT_ENUM, 0, FVL_NORANGE, "sum|slice"},
  [AG_N] = FVL_OPT_END};
static int l_allgather(lua_State *L) {
  lua_settop(L, 2);
  fvl_optval v[AG_N];
  fvl_readopts(L, 2, "fvl.dist.allgather", ALLGATHER_OPTS, v);
  if (fvl_islabels(L, 1)) return allgather_labels(L);
  fvl_tensor *t = tensor_arg(L, 1, "allgather", 0);
  fvl_pushtensor(L, fvl_dist_allgather_ex(t, v[AG_GRAD].num == 0));
  return 1;
}
/*** fvl.dist.reduce_scatter(t) -> tensor
   This rank's block of rows of the sum over the ranks (t's dim 1 is size·k rows; the result k),
   tracked (the backward all-gathers). */
static int l_reduce_scatter(lua_State *L) {
  fvl_pushtensor(L, fvl_dist_reduce_scatter_t(tensor_arg(L, 1, "reduce_scatter", 1)));
  return 1;
}
/*** fvl.dist.sum(t) -> tensor
   The sum of t over the ranks (a new tensor), tracked: every rank's part gets the gradient. */
static int l_sum(lua_State *L) {
  fvl_pushtensor(L, fvl_dist_sum_t(tensor_arg(L, 1, "sum", 1)));
  return 1;
}
/*** fvl.dist.copy(t) -> tensor
   t itself in the forward; the backward sums the gradient over the ranks (a replicated parameter
   used on each rank's part of the batch). */
static int l_copy(lua_State *L) {
  fvl_pushtensor(L, fvl_dist_copy_t(tensor_arg(L, 1, "copy", 1)));
  return 1;
}

/*** fvl.dist.copy_rows(t) -> tensor
   t itself in the forward; the backward reduce-scatters: the gradient summed over the ranks, kept
   for this rank's block of rows, zero elsewhere (the sharded heads' gathered embeddings). */
static int l_copy_rows(lua_State *L) {
  fvl_pushtensor(L, fvl_dist_copy_rows_t(tensor_arg(L, 1, "copy_rows", 1)));
  return 1;
}

/*** fvl.dist.randn_rows(rows, cols, first, n) -> tensor
   Rows first..first+n−1 (1-based) of what fvl.randn(rows, cols) would draw now, without making
   the whole matrix (each rank initialises its slice of a head's weight as one process would).
   Errors: rows outside 1..rows; non-positive sizes. */
static int l_randn_rows(lua_State *L) {
  lua_Integer rows = luaL_checkinteger(L, 1), cols = luaL_checkinteger(L, 2);
  lua_Integer first = luaL_checkinteger(L, 3), n = luaL_checkinteger(L, 4);
  if (rows < 1 || cols < 1)
    fvl_error(L, "fvl.dist.randn_rows: rows = %lld, cols = %lld (expected positive sizes)", (long long)rows,
              (long long)cols);
  int64_t shape[2] = {rows, cols};
  fvl_checkshape_numel(L, "fvl.dist.randn_rows", 2, shape);   /* the whole tensor's count is drawn */
  int64_t first0 = fvl_checkrows(L, "fvl.dist.randn_rows", "rows", first, n, rows, NULL);
  fvl_pushtensor(L, fvl_dist_randn_rows(rows, cols, first0, n, 1.0f));
  return 1;
}

/* ---------------------------------------------------------------- overlapped gradient all-reduce */
#define OVERLAP_MT "fvl.dist.Overlap"
typedef struct { fvl_dist_overlap *o; } overlap_ud;

/* overlap(params, bucket_elems, mean) -> handle (fvl.dist.overlap_grads builds the list) */
static int l_overlap(lua_State *L) {
  static const char *fn = "fvl.dist.overlap_grads";
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_Integer elems = luaL_checkinteger(L, 2);
  int mean = lua_toboolean(L, 3);
  lua_Integer n = (lua_Integer)lua_rawlen(L, 1);
  if (n > 1 << 24) fvl_error(L, "%s: %lld parameters (at most %d)", fn, (long long)n, 1 << 24);
  overlap_ud *u = lua_newuserdatauv(L, sizeof *u, 0);
  u->o = NULL;
  luaL_setmetatable(L, OVERLAP_MT);
  fvl_tensor **ps = n ? calloc((size_t)n, sizeof *ps) : NULL;
  if (n && !ps) fvl_error(L, "%s: out of memory", fn);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, 1, i);
    fvl_tensor *t = fvl_totensor(L, -1);
    if (!t || t->dtype != FVL_F32) {
      for (lua_Integer k = 0; k < i - 1; k++) fvl_release(ps[k]);
      free(ps);
      fvl_error(L, "%s: parameter %lld is not a float32 tensor (got %s)", fn, (long long)i, luaL_typename(L, -1));
    }
    ps[i - 1] = fvl_retain(t);   /* kept while the list is read, whatever the table does */
    lua_pop(L, 1);
    if (fvl_numel(t) > INT_MAX) {
      int64_t m = fvl_numel(t);
      for (lua_Integer k = 0; k < i; k++) fvl_release(ps[k]);
      free(ps);
      fvl_error(L, "%s: parameter %lld has %lld values (at most %d in one all-reduce)", fn, (long long)i,
                (long long)m, INT_MAX);
    }
  }
  /* a parameter listed twice, in the user's 1-based wording (the engine keeps a 0-based invariant);
     sorted by address, O(n log n) */
  int64_t earlier = -1, again = fvl_first_repeat((const void *const *)ps, n, &earlier);
  if (again != -1) {
    for (lua_Integer k = 0; k < n; k++) fvl_release(ps[k]);
    free(ps);
    if (again == -2) return fvl_raise(L);
    return fvl_error(L, "%s: parameter %lld is parameter %lld again (listed twice)", fn, (long long)again + 1,
                     (long long)earlier + 1);
  }
  u->o = fvl_dist_overlap_new(ps, (int)n, (int64_t)elems, mean);
  for (lua_Integer k = 0; k < n; k++) fvl_release(ps[k]);
  free(ps);
  if (!u->o) return fvl_raise(L);
  return 1;
}
static fvl_dist_overlap *check_overlap(lua_State *L) {
  overlap_ud *u = luaL_checkudata(L, 1, OVERLAP_MT);
  if (!u->o) fvl_error(L, "fvl.dist.overlap_grads: the overlap was closed");
  return u->o;
}
static int l_overlap_wait(lua_State *L) {
  if (fvl_dist_overlap_wait(check_overlap(L))) return fvl_raise(L);
  return 0;
}
/* sync:no_sync(fn, ...) -> fn's results: fn runs with the all-reduce off, so its backwards only
   accumulate gradients locally (all but the last backward of a step, as DDP's no_sync) */
static int l_overlap_no_sync(lua_State *L) {
  overlap_ud *u = luaL_checkudata(L, 1, OVERLAP_MT);
  check_overlap(L);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  if (fvl_dist_overlap_no_sync(u->o, 1)) return fvl_raise(L);
  int rc = lua_pcall(L, lua_gettop(L) - 2, LUA_MULTRET, 0);
  if (u->o) fvl_dist_overlap_no_sync(u->o, 0);   /* fn may have closed it */
  if (rc != LUA_OK) return lua_error(L);
  return lua_gettop(L) - 1;
}
/* sync:buckets() -> buckets, how many the last step launched during its backward */
static int l_overlap_buckets(lua_State *L) {
  int early = 0;
  lua_pushinteger(L, fvl_dist_overlap_nbuckets(check_overlap(L), &early));
  lua_pushinteger(L, early);
  return 2;
}
static int l_overlap_close(lua_State *L) {
  overlap_ud *u = luaL_checkudata(L, 1, OVERLAP_MT);
  fvl_dist_overlap_free(u->o);
  u->o = NULL;
  return 0;
}

int fvl_open_dist(lua_State *L) {
  static const luaL_Reg overlap_m[] = {{"__gc", l_overlap_close}, {"__close", l_overlap_close},
                                       {"close", l_overlap_close}, {"wait", l_overlap_wait},
                                       {"buckets", l_overlap_buckets}, {"no_sync", l_overlap_no_sync},
                                       {NULL, NULL}};
  luaL_newmetatable(L, OVERLAP_MT);
  luaL_setfuncs(L, overlap_m, 0);
  lua_pushvalue(L, -1);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  static const luaL_Reg fns[] = {
    {"rank", l_rank}, {"size", l_size}, {"active", l_active}, {"barrier", l_barrier}, {"finalize", l_finalize},
    {"allreduce", l_allreduce}, {"broadcast", l_broadcast}, {"allgather", l_allgather},
    {"reduce_scatter", l_reduce_scatter}, {"sum", l_sum}, {"copy", l_copy}, {"copy_rows", l_copy_rows}, {"randn_rows", l_randn_rows},
    {"overlap", l_overlap},
    {NULL, NULL}};
  luaL_getsubtable(L, -1, "dist_core");
  luaL_setfuncs(L, fns, 0);
  lua_pop(L, 1);
  return 0;
}
