/* dist_overlap.c — data-parallel gradients all-reduced in buckets while the backward runs (see
 * dist.h, fvl_dist_overlap_new). */
#include "dist.h"
#include "sort.h"
#include "autograd.h"
#include <mpi.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

struct fvl_dist_overlap {
  int n, nb, mean, nlaunched, active, early, skip;
  fvl_tensor **p;            /* the parameters (retained), in bucket order */
  int64_t *off;              /* each one's offset in its bucket */
  int *bucket;               /* each one's bucket */
  unsigned char *ready;      /* its gradient is in the bucket (this step) */
  int64_t *bsize;            /* values per bucket */
  float **buf;               /* the buckets */
  int *left;                 /* parameters of the bucket still to come */
  MPI_Request *req;          /* per bucket; MPI_REQUEST_NULL when not launched or done */
  fvl_tensor **sorted;       /* the parameters sorted by address, for the hook's look-up */
  int *sorted_idx;
  fvl_grad_hook prev_fn;     /* the hook installed before this one (called for other leaves) */
  void *prev_ud;
  fvl_grad_start_hook prev_start;
  void *prev_start_ud;
};

static fvl_dist_overlap *g_active;   /* the one installed (its hook is the engine's) */

static int cmp_ptr(const void *a, const void *b) {
  uintptr_t x = (uintptr_t) * (fvl_tensor *const *)a, y = (uintptr_t) * (fvl_tensor *const *)b;
  return x < y ? -1 : x > y;
}
static int find(const fvl_dist_overlap *o, const fvl_tensor *t) {
  int lo = 0, hi = o->n - 1;
  while (lo <= hi) {
    int mid = (lo + hi) / 2;
    if (o->sorted[mid] == t) return o->sorted_idx[mid];
    if ((uintptr_t)o->sorted[mid] < (uintptr_t)t) lo = mid + 1;
    else hi = mid - 1;
  }
  return -1;
}

static int mpi_err(const char *what, int rc) {
  char msg[MPI_MAX_ERROR_STRING + 1];
  int len = 0;
  if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) len = 0;
  msg[len] = 0;
  return fvl_err("dist.overlap_grads: %s failed on rank %d of %d: %s", what, fvl_dist_rank(), fvl_dist_size(),
                 len ? msg : "unknown error");
}

/* parameter i's gradient (zeros without one) into its bucket */
static int take(fvl_dist_overlap *o, int i) {
  fvl_tensor *g = o->p[i]->grad;
  float *dst = o->buf[o->bucket[i]] + o->off[i];
  int64_t m = fvl_numel(o->p[i]);
  if (!g) {
    memset(dst, 0, sizeof(float) * (size_t)m);
  } else {
    if (g->dtype != FVL_F32 || fvl_numel(g) != m)
      return fvl_err("dist.overlap_grads: params[%d]'s gradient has %lld values, expected %lld (0-based)", i,
                     (long long)fvl_numel(g), (long long)m);
    fvl_tensor *gc = fvl_contiguous(g);
    if (!gc) return -1;
    memcpy(dst, fvl_f32(gc), sizeof(float) * (size_t)m);
    fvl_release(gc);
  }
  o->ready[i] = 1;
  o->left[o->bucket[i]]--;
  return 0;
}

/* launch the complete buckets in bucket order (the same order on every rank, whatever order the
   gradients arrived in), then let MPI progress the ones in flight */
static int launch(fvl_dist_overlap *o) {
  while (o->nlaunched < o->nb && o->left[o->nlaunched] == 0) {
    int b = o->nlaunched;
    int rc = MPI_Iallreduce(MPI_IN_PLACE, o->buf[b], (int)o->bsize[b], MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &o->req[b]);
    if (rc != MPI_SUCCESS) return mpi_err("MPI_Iallreduce", rc);
    o->nlaunched++;
  }
  int flag = 0;
  if (o->nlaunched) {
    int rc = MPI_Testall(o->nlaunched, o->req, &flag, MPI_STATUSES_IGNORE);
    if (rc != MPI_SUCCESS) return mpi_err("MPI_Testall", rc);
  }
  return 0;
}

static int hook(void *ud, fvl_tensor *leaf) {
  fvl_dist_overlap *o = ud;
  int i = find(o, leaf);
  if (i < 0) return o->prev_fn ? o->prev_fn(o->prev_ud, leaf) : 0;
  if (o->skip || o->ready[i]) return 0;   /* no_sync: the gradients accumulate locally */
  o->active = 1;
  if (take(o, i)) return -1;
  return launch(o);
}

static int cmp_leaf(const void *a, const void *b) { return cmp_ptr(a, b); }

/* the start of a backward through some of the parameters: the others get no gradient from it, so their gradient (zeros, or what earlier no_sync backwards accumulated) is final now and
   their buckets need not wait for sync:wait() (PyTorch DDP's find_unused_parameters) */
static int start(void *ud, fvl_tensor *const *leaves, size_t nleaves) {
  fvl_dist_overlap *o = ud;
  int rc = o->prev_start ? o->prev_start(o->prev_start_ud, leaves, nleaves) : 0;
  if (rc || o->skip) return rc;
  /* a backward through none of the parameters (another model's) is not this overlap's */
  int mine = 0;
  for (int i = 0; i < o->n && !mine; i++) mine = bsearch(&o->p[i], leaves, nleaves, sizeof *leaves, cmp_leaf) != NULL;
  if (!mine) return 0;
  if (o->active)
    return fvl_err("dist.overlap_grads: a second backward before the overlap's wait (the first one's gradients are "
                   "already being all-reduced, this one's would be lost); to accumulate gradients over several "
                   "backwards, run all but the last inside no_sync");
  o->active = 1;
  for (int i = 0; i < o->n && rc == 0; i++)
    if (!o->ready[i] && !bsearch(&o->p[i], leaves, nleaves, sizeof *leaves, cmp_leaf)) rc = take(o, i);
  return rc ? rc : launch(o);
}

int fvl_dist_overlap_no_sync(fvl_dist_overlap *o, int on) {
  if (!o) return fvl_err("dist.overlap_grads: no_sync on a closed overlap");
  if (on && o->active)
    return fvl_err("dist.overlap_grads: no_sync after a backward that started this step's all-reduce (run all "
                   "but the last backward of a step inside no_sync, then wait)");
  o->skip = on;
  return 0;
}

fvl_dist_overlap *fvl_dist_overlap_new(fvl_tensor **params, int n, int64_t bucket_elems, int mean) {
  static const char *fn = "dist.overlap_grads";
  if (n < 0 || (n > 0 && !params)) return fvl_err("%s: expected a list of parameters", fn), NULL;
  if (g_active) return fvl_err("%s: another overlap is installed (close it first)", fn), NULL;
  if (bucket_elems < 1) bucket_elems = 1;
  if (bucket_elems > INT_MAX) bucket_elems = INT_MAX;
  for (int i = 0; i < n; i++) {
    if (!params[i] || params[i]->dtype != FVL_F32)
      return fvl_err("%s: params[%d] is not a float32 tensor (0-based)", fn, i), NULL;
    if (fvl_numel(params[i]) > INT_MAX)
      return fvl_err("%s: params[%d] has %lld values (at most %d in one all-reduce; 0-based)", fn, i,
                     (long long)fvl_numel(params[i]), INT_MAX), NULL;
  }
  int64_t earlier, again = fvl_first_repeat((const void *const *)params, n, &earlier);
  if (again == -2) return NULL;
  if (again >= 0) return fvl_err("%s: params[%lld] is params[%lld] (0-based)", fn, (long long)again, (long long)earlier), NULL;
  fvl_dist_overlap *o = calloc(1, sizeof *o);
  if (!o) return fvl_err("%s: out of memory", fn), NULL;
  o->n = n;
  o->mean = mean;
  size_t nn = (size_t)(n ? n : 1);
  o->p = calloc(nn, sizeof *o->p);
  o->off = calloc(nn, sizeof *o->off);
  o->bucket = calloc(nn, sizeof *o->bucket);
  o->ready = calloc(nn, 1);
  o->bsize = calloc(nn, sizeof *o->bsize);
  o->buf = calloc(nn, sizeof *o->buf);
  o->left = calloc(nn, sizeof *o->left);
  o->req = calloc(nn, sizeof *o->req);
  o->sorted = calloc(nn, sizeof *o->sorted);
  o->sorted_idx = calloc(nn, sizeof *o->sorted_idx);
  if (!o->p || !o->off || !o->bucket || !o->ready || !o->bsize || !o->buf || !o->left || !o->req || !o->sorted ||
      !o->sorted_idx) {
    fvl_dist_overlap_free(o);
    return fvl_err("%s: out of memory", fn), NULL;
  }
  /* buckets over the parameters in reverse order: a network's last layers' gradients are final
     first, so the first bucket is launched early in the backward (as PyTorch's DDP) */
  for (int k = 0; k < n; k++) {
    fvl_tensor *t = params[n - 1 - k];
    int64_t m = fvl_numel(t);
    if (k == 0 || (o->bsize[o->nb - 1] > 0 && o->bsize[o->nb - 1] + m > bucket_elems)) o->nb++;
    o->p[k] = fvl_retain(t);
    o->bucket[k] = o->nb - 1;
    o->off[k] = o->bsize[o->nb - 1];
    o->bsize[o->nb - 1] += m;
    o->left[o->nb - 1]++;
  }
  for (int b = 0; b < o->nb; b++) {
    o->req[b] = MPI_REQUEST_NULL;
    if (!(o->buf[b] = malloc(sizeof(float) * (size_t)(o->bsize[b] ? o->bsize[b] : 1)))) {
      fvl_dist_overlap_free(o);
      return fvl_err("%s: out of memory", fn), NULL;
    }
  }
  fvl_ptr_pos *by_address = malloc(sizeof *by_address * nn);   /* O(n log n) for any parameter count */
  if (!by_address) {
    fvl_dist_overlap_free(o);
    return fvl_err("%s: out of memory", fn), NULL;
  }
  fvl_sort_ptrs((const void *const *)o->p, n, by_address);
  for (int i = 0; i < n; i++) {
    o->sorted[i] = (fvl_tensor *)by_address[i].p;
    o->sorted_idx[i] = (int)by_address[i].idx;
  }
  free(by_address);
  /* a world of one: nothing to reduce, no hook (as fvl.dist.allreduce_grads) */
  if (fvl_dist_size() > 1) {
    fvl_set_grad_hook(hook, o, &o->prev_fn, &o->prev_ud);
    fvl_set_grad_start_hook(start, o, &o->prev_start, &o->prev_start_ud);
    g_active = o;
  }
  return o;
}

int fvl_dist_overlap_nbuckets(const fvl_dist_overlap *o, int *early) {
  if (early) *early = o ? o->early : 0;
  return o ? o->nb : 0;
}

/* after the backward: the buckets not launched yet (parameters without a gradient this step, or
   no backward at all) are filled and launched in order, every request is waited for, and the
   reduced gradients (÷ N for the mean) become the parameters' .grad */
int fvl_dist_overlap_wait(fvl_dist_overlap *o) {
  if (!o) return fvl_err("dist.overlap_grads: wait on a closed overlap");
  if (fvl_dist_size() == 1) return 0;
  o->early = o->nlaunched;   /* launched during the backward */
  int rc = 0;
  for (int i = 0; i < o->n && rc == 0; i++)
    if (!o->ready[i]) rc = take(o, i);
  if (rc == 0) rc = launch(o);
  if (rc == 0 && o->nlaunched) {
    int e = MPI_Waitall(o->nlaunched, o->req, MPI_STATUSES_IGNORE);
    if (e != MPI_SUCCESS) rc = mpi_err("MPI_Waitall", e);
  }
  float scale = o->mean ? 1.0f / (float)fvl_dist_size() : 1.0f;
  for (int i = 0; i < o->n && rc == 0; i++) {
    fvl_tensor *p = o->p[i];
    float *src = o->buf[o->bucket[i]] + o->off[i];
    int64_t m = fvl_numel(p);
    fvl_tensor *g = p->grad;
    if (!(g && g->dtype == FVL_F32 && fvl_same_shape(g, p) && fvl_is_contiguous(g) && g->st->refs == 1)) {
      fvl_tensor *ng = fvl_empty(FVL_F32, p->ndim, p->size);
      if (!ng) { rc = -1; break; }
      fvl_release(p->grad);
      p->grad = g = ng;
    }
    float *d = fvl_f32(g);
    for (int64_t k = 0; k < m; k++) d[k] = src[k] * scale;
  }
  /* the next step starts empty */
  memset(o->ready, 0, (size_t)o->n);
  for (int i = 0; i < o->n; i++) o->left[o->bucket[i]] = 0;
  for (int i = 0; i < o->n; i++) o->left[o->bucket[i]]++;
  for (int b = 0; b < o->nb; b++) o->req[b] = MPI_REQUEST_NULL;
  o->nlaunched = 0;
  o->active = 0;
  return rc;
}

void fvl_dist_overlap_free(fvl_dist_overlap *o) {
  if (!o) return;
  if (g_active == o) {
    /* requests still in flight are completed first (their buffers are about to go) */
    if (o->nlaunched) MPI_Waitall(o->nlaunched, o->req, MPI_STATUSES_IGNORE);
    fvl_set_grad_hook(o->prev_fn, o->prev_ud, NULL, NULL);
    fvl_set_grad_start_hook(o->prev_start, o->prev_start_ud, NULL, NULL);
    g_active = NULL;
  }
  for (int i = 0; i < o->n; i++) fvl_release(o->p ? o->p[i] : NULL);
  for (int b = 0; o->buf && b < o->nb; b++) free(o->buf[b]);
  free(o->p); free(o->off); free(o->bucket); free(o->ready); free(o->bsize); free(o->buf); free(o->left);
  free(o->req); free(o->sorted); free(o->sorted_idx);
  free(o);
}
