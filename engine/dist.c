/* dist.c — MPI world and collectives (see dist.h). */
#define _GNU_SOURCE
#include "dist.h"
#include "autograd.h"
#include "rng.h"
#include <mpi.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int g_state;          /* 0 not decided, 1 plain process, 2 MPI initialised, 3 finalised (fvl_dist_finalize) */
static int g_rank, g_size = 1;
static char g_term_msg[160];

/* the launcher stops the remaining ranks with SIGTERM when one fails: say so (async-safe) */
static void on_term(int sig) {
  ssize_t w = write(STDERR_FILENO, g_term_msg, strlen(g_term_msg));
  (void)w;
  _exit(128 + sig);
}

/* exit with a non-zero status: abort the job (MPI_Finalize would wait for the other ranks, which
   may be waiting in a collective for this one); a clean exit finalises */
static void on_exit_mpi(int status, void *arg) {
  (void)arg;
  int fin = 0;
  MPI_Finalized(&fin);
  if (fin) return;
  if (status != 0) {
    fprintf(stderr, "fvl.dist: rank %d of %d exits with status %d: aborting the job\n", g_rank, g_size, status);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, status);
  }
  MPI_Finalize();
}

static int launched(void) {
  const char *f = getenv("FVL_DIST");
  if (f && strcmp(f, "off") == 0) return 0;
  if (f && strcmp(f, "mpi") == 0) return 1;
  if (getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_RANK") || getenv("PMI_SIZE")) return 1;
  /* srun without an MPI plugin starts independent copies: say so rather than train N copies */
  const char *st = getenv("SLURM_STEP_NUM_TASKS");
  if (st && atoi(st) > 1)
    fprintf(stderr, "fvl.dist: warning: srun started %d tasks but no MPI process manager is visible (no PMIx/PMI "
                    "variables): each task runs as a world of one; launch with srun --mpi=pmix (or set FVL_DIST=mpi)\n",
            atoi(st));
  return 0;
}

static int mpi_fail(const char *fn, int rc) {
  char msg[MPI_MAX_ERROR_STRING + 1];
  int len = 0;
  if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) len = 0;
  msg[len] = 0;
  return fvl_err("dist.%s: MPI error on rank %d of %d: %s", fn, g_rank, g_size,
                 len ? msg : "unknown error");
}

static int ensure(void) {
  if (g_state == 3) return fvl_err("dist: the MPI world was finalised (dist.finalize): no collective after it");
  if (g_state) return 0;
  g_state = 1;
  if (!launched()) return 0;
  int init = 0, prov = 0;
  MPI_Initialized(&init);
  if (!init) {
    int rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &prov);
    if (rc != MPI_SUCCESS) return mpi_fail("init", rc);
  }
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &g_size);
  g_state = 2;
  snprintf(g_term_msg, sizeof g_term_msg,
           "fvl.dist: rank %d of %d stopped by the launcher (another rank failed, or the job was cancelled)\n",
           g_rank, g_size);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_term;
  sigaction(SIGTERM, &sa, NULL);
  on_exit(on_exit_mpi, NULL);
  return 0;
}

int fvl_dist_rank(void) { ensure(); return g_rank; }
int fvl_dist_size(void) { ensure(); return g_size; }
int fvl_dist_active(void) { ensure(); return g_state == 2; }

int fvl_dist_finalize(void) {
  if (g_state != 2) return 0;
  int rc = MPI_Barrier(MPI_COMM_WORLD);
  if (rc != MPI_SUCCESS) return mpi_fail("finalize", rc);
  rc = MPI_Finalize();
  if (rc != MPI_SUCCESS) return mpi_fail("finalize", rc);
  g_state = 3;
  return 0;
}

int fvl_dist_barrier(void) {
  if (ensure()) return -1;
  if (g_state != 2) return 0;
  int rc = MPI_Barrier(MPI_COMM_WORLD);
  return rc == MPI_SUCCESS ? 0 : mpi_fail("barrier", rc);
}

#define PIECE ((size_t)1 << 28)   /* elements per MPI call (counts are int) */

static MPI_Op op_of(fvl_redop op) { return op == FVL_RED_MAX ? MPI_MAX : op == FVL_RED_MIN ? MPI_MIN : MPI_SUM; }

static int allreduce_raw(void *buf, size_t n, size_t esz, MPI_Datatype dt, fvl_redop op) {
  if (ensure()) return -1;
  if (g_state != 2 || n == 0) return 0;
  char *p = buf;
  for (size_t off = 0; off < n; off += PIECE) {
    size_t k = n - off < PIECE ? n - off : PIECE;
    int rc = MPI_Allreduce(MPI_IN_PLACE, p + off * esz, (int)k, dt, op_of(op), MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS) return mpi_fail("allreduce", rc);
  }
  return 0;
}
int fvl_dist_allreduce_f32(float *buf, size_t n, fvl_redop op) { return allreduce_raw(buf, n, 4, MPI_FLOAT, op); }
int fvl_dist_allreduce_f64(double *buf, size_t n, fvl_redop op) { return allreduce_raw(buf, n, 8, MPI_DOUBLE, op); }
int fvl_dist_allreduce_i32(int32_t *buf, size_t n, fvl_redop op) { return allreduce_raw(buf, n, 4, MPI_INT32_T, op); }

int fvl_dist_allgather(const void *send, void *recv, size_t bytes) {
  if (ensure()) return -1;
  if (g_state != 2) {
    if (bytes && send != recv) memmove(recv, send, bytes);
    return 0;
  }
  if (bytes > INT_MAX) return fvl_err("dist.allgather: %zu bytes per rank (at most %d)", bytes, INT_MAX);
  int rc = MPI_Allgather(send, (int)bytes, MPI_BYTE, recv, (int)bytes, MPI_BYTE, MPI_COMM_WORLD);
  return rc == MPI_SUCCESS ? 0 : mpi_fail("allgather", rc);
}

int fvl_dist_bcast(void *buf, size_t bytes, int root) {
  if (ensure()) return -1;
  if (root < 0 || root >= g_size)
    return fvl_err("dist.broadcast: root = %d is outside 0..%d (0-based rank)", root, g_size - 1);
  if (g_state != 2) return 0;
  char *p = buf;
  for (size_t off = 0; off < bytes; off += PIECE) {
    size_t k = bytes - off < PIECE ? bytes - off : PIECE;
    int rc = MPI_Bcast(p + off, (int)k, MPI_BYTE, root, MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS) return mpi_fail("broadcast", rc);
  }
  return 0;
}

int fvl_dist_reduce_scatter_f32(const float *send, float *recv, size_t n) {
  if (ensure()) return -1;
  if (g_state != 2) {
    if (n && send != recv) memmove(recv, send, n * sizeof(float));
    return 0;
  }
  if (n > INT_MAX) return fvl_err("dist.reduce_scatter: %zu values per rank (at most %d)", n, INT_MAX);
  int rc = MPI_Reduce_scatter_block(send, recv, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
  return rc == MPI_SUCCESS ? 0 : mpi_fail("reduce_scatter", rc);
}

/* ---------------------------------------------------------------- tensors */
static size_t esize(const fvl_tensor *t) { return t->dtype == FVL_I32 ? 4 : 4; }
static void *data_of(const fvl_tensor *t) { return (char *)t->st->data + (size_t)t->offset * esize(t); }

/* a contiguous copy to work on (new ref; t itself when contiguous) */
static fvl_tensor *contig(fvl_tensor *t) {
  if (fvl_is_contiguous(t)) return fvl_retain(t);
  fvl_tensor *d = fvl_detach(t);
  if (!d) return NULL;
  fvl_tensor *c = fvl_contiguous(d);
  fvl_release(d);
  return c;
}

int fvl_dist_allreduce_(fvl_tensor *t, fvl_redop op) {
  if (!t) return fvl_err("dist.allreduce: tensor is NULL");
  fvl_tensor *c = contig(t);
  if (!c) return -1;
  size_t n = (size_t)fvl_numel(c);
  int rc = c->dtype == FVL_I32 ? fvl_dist_allreduce_i32(data_of(c), n, op)
                               : fvl_dist_allreduce_f32(data_of(c), n, op);
  if (rc == 0 && c != t) rc = fvl_copy_(t, c);
  fvl_release(c);
  return rc;
}

int fvl_dist_broadcast_(fvl_tensor *t, int root) {
  if (!t) return fvl_err("dist.broadcast: tensor is NULL");
  fvl_tensor *c = contig(t);
  if (!c) return -1;
  int rc = fvl_dist_bcast(data_of(c), (size_t)fvl_numel(c) * esize(c), root);
  if (rc == 0 && c != t) rc = fvl_copy_(t, c);
  fvl_release(c);
  return rc;
}

/* backward of allgather: Σ over ranks of the gradient's block `rank` */
static int gather_bw(fvl_node *n, fvl_tensor *g) {
  fvl_tensor *gc = contig(g), *out = NULL;
  if (!gc) return -1;
  fvl_tensor *in = n->in[0];
  int rc = -1;
  if ((out = fvl_empty(FVL_F32, in->ndim, in->size)) &&
      fvl_dist_reduce_scatter_f32(fvl_f32(gc), fvl_f32(out), (size_t)fvl_numel(out)) == 0)
    rc = fvl_node_accum(n, 0, out);
  fvl_release(out);
  fvl_release(gc);
  return rc;
}

/* backward when every rank already holds the full gradient of the gathered tensor: its own rows */
static int slice_bw(fvl_node *n, fvl_tensor *g) {
  fvl_tensor *in = n->in[0];
  fvl_tensor *v = fvl_narrow(g, 0, in->size[0] * g_rank, in->size[0]);
  fvl_tensor *c = v ? fvl_contiguous(v) : NULL;
  int rc = c ? fvl_node_accum(n, 0, c) : -1;
  fvl_release(c);
  fvl_release(v);
  return rc;
}

fvl_tensor *fvl_dist_allgather_t(fvl_tensor *t) { return fvl_dist_allgather_ex(t, 1); }

fvl_tensor *fvl_dist_allgather_ex(fvl_tensor *t, int sum_grad) {
  if (!t || t->ndim < 1)
    return fvl_err("dist.allgather: expected a tensor with at least one dimension"), NULL;
  if (ensure()) return NULL;
  /* every rank must hold the same shape: compare it first (a mismatch would corrupt memory) */
  int64_t shp[FVL_MAXDIM + 2] = {t->ndim, t->dtype};
  for (int d = 0; d < t->ndim; d++) shp[2 + d] = t->size[d];
  if (g_state == 2) {
    int64_t *all = malloc(sizeof shp * (size_t)g_size);
    if (!all) return fvl_err("dist.allgather: out of memory"), NULL;
    if (fvl_dist_allgather(shp, all, sizeof shp)) { free(all); return NULL; }
    for (int r = 0; r < g_size; r++)
      if (memcmp(all + r * (FVL_MAXDIM + 2), shp, sizeof shp)) {
        int64_t *o = all + r * (FVL_MAXDIM + 2);
        fvl_err("dist.allgather: rank %d has a %s tensor of %lld dims (first size %lld) but rank %d "
                "a %s one of %lld dims (first size %lld): every rank must pass the same shape",
                g_rank, t->dtype == FVL_I32 ? "int32" : "float32", (long long)t->ndim,
                (long long)t->size[0], r, o[1] == FVL_I32 ? "int32" : "float32", (long long)o[0],
                (long long)o[2]);
        free(all);
        return NULL;
      }
    free(all);
  }
  fvl_tensor *c = contig(t);
  if (!c) return NULL;
  int64_t sz[FVL_MAXDIM];
  memcpy(sz, t->size, sizeof sz);
  sz[0] = t->size[0] * g_size;
  fvl_tensor *out = fvl_empty(t->dtype, t->ndim, sz);
  if (!out || fvl_dist_allgather(data_of(c), data_of(out), (size_t)fvl_numel(c) * esize(c))) {
    fvl_release(out);
    fvl_release(c);
    return NULL;
  }
  fvl_release(c);
  if (t->dtype == FVL_F32) {
    fvl_tensor *in[1] = {t};
    fvl_record("dist.allgather", sum_grad ? gather_bw : slice_bw, out, 1, in);
  }
  return out;
}

static int rs_bw(fvl_node *n, fvl_tensor *g) {
  fvl_tensor *out = fvl_dist_allgather_t(g);   /* untracked during backward */
  if (!out) return -1;
  int rc = fvl_node_accum(n, 0, out);
  fvl_release(out);
  return rc;
}

fvl_tensor *fvl_dist_reduce_scatter_t(fvl_tensor *t) {
  if (ensure()) return NULL;
  if (!t || t->ndim < 1 || t->dtype != FVL_F32 || t->size[0] % g_size)
    return fvl_err("dist.reduce_scatter: expected a float32 tensor whose first size is a multiple of "
                   "the world size %d, got %s of first size %lld", g_size,
                   t && t->dtype == FVL_I32 ? "an int32 tensor" : "a tensor",
                   t && t->ndim ? (long long)t->size[0] : 0LL), NULL;
  fvl_tensor *c = contig(t);
  if (!c) return NULL;
  int64_t sz[FVL_MAXDIM];
  memcpy(sz, t->size, sizeof sz);
  sz[0] = t->size[0] / g_size;
  fvl_tensor *out = fvl_empty(FVL_F32, t->ndim, sz);
  if (!out || fvl_dist_reduce_scatter_f32(fvl_f32(c), fvl_f32(out), (size_t)fvl_numel(out))) {
    fvl_release(out);
    fvl_release(c);
    return NULL;
  }
  fvl_release(c);
  fvl_tensor *in[1] = {t};
  fvl_record("dist.reduce_scatter", rs_bw, out, 1, in);
  return out;
}

static int identity_bw(fvl_node *n, fvl_tensor *g) { return fvl_node_accum(n, 0, g); }
static int summing_bw(fvl_node *n, fvl_tensor *g) {
  fvl_tensor *s = fvl_empty_like(g);
  int rc = -1;
  if (s && fvl_copy_(s, g) == 0 && fvl_dist_allreduce_f32(fvl_f32(s), (size_t)fvl_numel(s), FVL_RED_SUM) == 0)
    rc = fvl_node_accum(n, 0, s);
  fvl_release(s);
  return rc;
}

static fvl_tensor *copy_op(fvl_tensor *t, const char *fn, int sum_now, fvl_backward_fn bw) {
  if (!t || t->dtype != FVL_F32) return fvl_err("dist.%s: expected a float32 tensor", fn), NULL;
  fvl_tensor *out = fvl_empty_like(t);
  if (!out) return NULL;
  fvl_tensor *d = fvl_detach(t);
  int rc = d ? fvl_copy_(out, d) : -1;
  fvl_release(d);
  if (rc == 0 && sum_now) rc = fvl_dist_allreduce_f32(fvl_f32(out), (size_t)fvl_numel(out), FVL_RED_SUM);
  if (rc) { fvl_release(out); return NULL; }
  fvl_tensor *in[1] = {t};
  fvl_record(fn, bw, out, 1, in);
  return out;
}
/* Σ over ranks of the gradient, kept for this rank's block of rows only (reduce-scatter), the
   other rows zero */
static int scatter_bw(fvl_node *n, fvl_tensor *g) {
  fvl_tensor *gc = contig(g), *part = NULL, *out = NULL;
  int rc = -1;
  int64_t k = g->size[0] / g_size, sz[FVL_MAXDIM];
  memcpy(sz, g->size, sizeof sz);
  sz[0] = k;
  if (gc && (part = fvl_empty(FVL_F32, g->ndim, sz)) && (out = fvl_zeros(FVL_F32, g->ndim, g->size)) &&
      fvl_dist_reduce_scatter_f32(fvl_f32(gc), fvl_f32(part), (size_t)fvl_numel(part)) == 0) {
    memcpy(fvl_f32(out) + (size_t)g_rank * (size_t)fvl_numel(part), fvl_f32(part), sizeof(float) * (size_t)fvl_numel(part));
    rc = fvl_node_accum(n, 0, out);
  }
  fvl_release(out);
  fvl_release(part);
  fvl_release(gc);
  return rc;
}

fvl_tensor *fvl_dist_sum_t(fvl_tensor *t) { return copy_op(t, "sum", 1, identity_bw); }
fvl_tensor *fvl_dist_copy_rows_t(fvl_tensor *t) {
  if (ensure()) return NULL;
  if (t && (t->ndim < 1 || t->size[0] % g_size))
    return fvl_err("dist.copy_rows: expected a tensor whose first size is a multiple of the world size %d, got "
                   "first size %lld", g_size, t->ndim ? (long long)t->size[0] : 0LL), NULL;
  return copy_op(t, "copy_rows", 0, scatter_bw);
}
fvl_tensor *fvl_dist_copy_t(fvl_tensor *t) { return copy_op(t, "copy", 0, summing_bw); }

fvl_tensor *fvl_dist_randn_rows(int64_t rows, int64_t cols, int64_t lo, int64_t n, float std) {
  if (rows < 1 || cols < 1 || lo < 0 || n < 0 || lo + n > rows)
    return fvl_err("dist.randn_rows: rows [%lld, %lld) of a %lldx%lld tensor are out of range",
                   (long long)lo, (long long)(lo + n), (long long)rows, (long long)cols), NULL;
  int64_t sz[2] = {n, cols};
  fvl_tensor *t = fvl_empty(FVL_F32, 2, sz);
  if (!t) return NULL;
  fvl_rng *r = fvl_rng_global();
  uint64_t base = fvl_rng_reserve(r, (uint64_t)rows * (uint64_t)cols) + (uint64_t)lo * (uint64_t)cols;
  uint64_t seed = r->seed;
  float *p = fvl_f32(t);
  size_t cnt = (size_t)n * (size_t)cols;
#pragma omp parallel for schedule(static) if (cnt > 65536)
  for (size_t i = 0; i < cnt; i++) p[i] = 0.0f + std * (float)fvl_rng_normal_at(seed, base + i);
  return t;
}
