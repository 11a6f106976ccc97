/* dist.h — the process world over MPI (OpenMPI), and the collective operations on tensors.
 *
 * A process started by a launcher (mpirun, srun: OMPI_COMM_WORLD_SIZE, PMIX_RANK or PMI_RANK in
 * the environment) joins the launcher's world on first use (MPI_Init_thread, lazily). A plain
 * process is a world of size 1 and never initialises MPI: every collective is then the identity,
 * so scripts run unchanged either way. FVL_DIST=mpi forces MPI initialisation (a singleton), and
 * FVL_DIST=off never initialises it.
 *
 * Failure: MPI errors are returned (MPI_ERRORS_RETURN) as engine errors naming the function. A
 * rank that exits with a non-zero status calls MPI_Abort, so the launcher stops every other rank
 * instead of leaving them waiting in a collective; a rank that the launcher stops (SIGTERM)
 * prints one line saying so. */
#ifndef FVL_DIST_H
#define FVL_DIST_H
#include <stddef.h>
#include <stdint.h>
#include "tensor.h"

typedef enum { FVL_RED_SUM, FVL_RED_MAX, FVL_RED_MIN } fvl_redop;

int fvl_dist_rank(void);        /* 0 in a plain process */
int fvl_dist_size(void);        /* 1 in a plain process */
int fvl_dist_active(void);      /* 1 when MPI is initialised (world of size >= 1 under a launcher) */
int fvl_dist_barrier(void);     /* 0 or −1 with fvl_errmsg() */
/* every rank: a barrier, then MPI_Finalize; the process may then exit with any status without
 * aborting the job (a non-zero exit before it aborts every rank); collectives after it are errors */
int fvl_dist_finalize(void);

/* raw buffers; n counts elements (any size: long buffers are sent in pieces) */
int fvl_dist_allreduce_f32(float *buf, size_t n, fvl_redop op);
int fvl_dist_allreduce_f64(double *buf, size_t n, fvl_redop op);
int fvl_dist_allreduce_i32(int32_t *buf, size_t n, fvl_redop op);
/* recv = the ranks' `bytes` each, in rank order (recv holds size·bytes) */
int fvl_dist_allgather(const void *send, void *recv, size_t bytes);
int fvl_dist_bcast(void *buf, size_t bytes, int root);
/* recv (n floats) = Σ over ranks of send[rank·n .. rank·n + n) */
int fvl_dist_reduce_scatter_f32(const float *send, float *recv, size_t n);

/* tensors: float32 or int32, any contiguity (non-contiguous ones go through a copy) */
int fvl_dist_allreduce_(fvl_tensor *t, fvl_redop op);       /* in place */
int fvl_dist_broadcast_(fvl_tensor *t, int root);           /* in place */
/* the ranks' tensors (same shape everywhere) stacked along dim 0: N·d0 × …; tracked: the
   backward sums the gradient over the ranks and keeps this rank's rows (reduce-scatter) */
fvl_tensor *fvl_dist_allgather_t(fvl_tensor *t);
/* sum_grad = 0: the backward keeps this rank's rows of the gradient without communication (for
   a gathered tensor whose every use already yields the full gradient on every rank) */
fvl_tensor *fvl_dist_allgather_ex(fvl_tensor *t, int sum_grad);
/* dim 0 = N·k: the sum over ranks of block `rank` (k × …), float32; tracked: the backward
   gathers the blocks' gradients (each rank's block gradient to every rank's slice) */
fvl_tensor *fvl_dist_reduce_scatter_t(fvl_tensor *t);
/* out = Σ over ranks of t (float32), tracked with the identity backward: for a value each
   rank holds a part of (sharded loss terms); its gradient reaches every part unchanged */
fvl_tensor *fvl_dist_sum_t(fvl_tensor *t);
/* out = t, tracked with a summing backward: for a replicated value (a shared parameter) that
   each rank uses on its own part of the work; its gradient is the sum of the ranks' parts */
fvl_tensor *fvl_dist_copy_t(fvl_tensor *t);
/* out = t (first size N·k), tracked with a reduce-scattering backward: the gradient summed over the
   ranks in this rank's block of k rows only (one reduce-scatter, each rank receives k rows), zero
   in the others. For a gathered tensor (allgather's own rows) whose users on each rank hold a
   part of the gradient: the sharded heads' column work on the gathered embeddings. */
fvl_tensor *fvl_dist_copy_rows_t(fvl_tensor *t);

/* Data-parallel gradients all-reduced while the backward runs. fvl_dist_overlap_new takes the
   parameters (float32, in the network's order) and splits them, in reverse order (a network's
   last layers' gradients are final first), into buckets of about bucket_elems values; it installs
   an autograd gradient hook (fvl_set_grad_hook): during a backward, as each parameter's gradient
   becomes final it is copied into its bucket, and a complete bucket is launched with
   MPI_Iallreduce — in bucket order, so the ranks' collectives pair up whatever order the
   gradients arrive in. fvl_dist_overlap_wait (after the backward, before the optimiser step)
   fills and launches what is left (parameters without a gradient count as zeros), waits for every
   bucket and writes the sums (÷ N when mean) into the parameters' .grad; the next backward starts
   afresh. At the start of each backward the parameters that are not leaves of its graph are taken
   at once (their gradient is final: DDP's find_unused_parameters), so an unused parameter does not
   hold its bucket back until the wait. One synced backward per wait: a second one is an error
   (fvl_err, before it runs any node); gradient accumulation runs all but the last backward of a
   step with fvl_dist_overlap_no_sync(o, 1) (the hook then lets the gradients accumulate locally,
   as DDP's no_sync; turning it on after a synced backward of the step is an error). One overlap
   is installed at a time; in a world of one nothing is installed and wait does nothing. */
typedef struct fvl_dist_overlap fvl_dist_overlap;
fvl_dist_overlap *fvl_dist_overlap_new(fvl_tensor **params, int n, int64_t bucket_elems, int mean);
int fvl_dist_overlap_wait(fvl_dist_overlap *o);
int fvl_dist_overlap_no_sync(fvl_dist_overlap *o, int on);
/* the buckets; *early: how many of them the last step launched during its backward */
int fvl_dist_overlap_nbuckets(const fvl_dist_overlap *o, int *early);
void fvl_dist_overlap_free(fvl_dist_overlap *o);   /* waits for requests in flight, removes the hook */

/* rows [lo, lo+n) of what fvl_randn of a rows×cols tensor would draw from the global generator
   (which advances by rows·cols, as fvl_randn does): a rank's slice of a seeded initialisation */
fvl_tensor *fvl_dist_randn_rows(int64_t rows, int64_t cols, int64_t lo, int64_t n, float std);
#endif
