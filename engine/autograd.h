/* autograd.h — eager tape. Each tracked op attaches a node to its output; backward walks the
 * nodes in reverse topological order. A node's backward receives the gradient of its output
 * and calls fvl_node_accum(node, i, grad_i) for each input that needs it.
 * After fvl_backward() the graph's saved tensors are released (like retain_graph=False). */
#ifndef FVL_AUTOGRAD_H
#define FVL_AUTOGRAD_H
#include "tensor.h"

#define FVL_NODE_MAXIN 6
#define FVL_NODE_MAXSAVED 6
typedef struct fvl_node fvl_node;
typedef int (*fvl_backward_fn)(fvl_node *n, fvl_tensor *gout);   /* 0 ok, -1 error */

struct fvl_node {
  const char *name;                       /* op name for error messages */
  fvl_backward_fn backward;
  int nin;
  fvl_tensor *in[FVL_NODE_MAXIN];         /* retained inputs (NULL when not differentiable) */
  fvl_tensor *saved[FVL_NODE_MAXSAVED];   /* retained tensors needed by backward */
  double sc[8];                           /* scalar parameters */
  int64_t iv[8];                          /* integer parameters */
  void *ctx;                              /* op-specific context */
  void (*free_ctx)(void *ctx);
  int refs;
  /* during backward */
  fvl_tensor *gacc;                       /* accumulated gradient of the output */
  int visit;
  int pending;                            /* run backward even without gacc: a consumer left its
                                             gradient in this node's ctx (gout is then NULL) */
  int64_t out_size[FVL_MAXDIM];           /* reshape: its input's shape, for the backward */
};

int fvl_grad_enabled(void);
int fvl_set_grad_enabled(int on);         /* returns the previous setting */

/* 1 when an op with these inputs should be recorded */
int fvl_needs_grad(int n, fvl_tensor **inputs);
/* creates a node for `out` (retains the inputs that require grad; sets out->grad_fn and
 * out->requires_grad). Returns the node so the op can fill saved/sc/iv/ctx, or NULL when
 * nothing needs recording. */
fvl_node *fvl_record(const char *name, fvl_backward_fn bw, fvl_tensor *out, int nin,
                     fvl_tensor **inputs);
/* backward helpers: does input i need a gradient? accumulate one (g is not consumed:
 * the callee retains or copies; shapes must equal the input's shape) */
int fvl_node_wants(const fvl_node *n, int i);
int fvl_node_accum(fvl_node *n, int i, fvl_tensor *g);
/* reduce a broadcast gradient back to `shape_of`'s shape (sums broadcast dims) */
fvl_tensor *fvl_sum_to(fvl_tensor *g, const fvl_tensor *shape_of);

void fvl_node_retain(fvl_node *n);
void fvl_node_release(fvl_node *n);

/* root must be a scalar unless gout is given */
int fvl_backward(fvl_tensor *root, fvl_tensor *gout);

/* A gradient hook: during fvl_backward, called once for every leaf of the graph (a tensor that
 * requires grad and has no grad_fn) as soon as its gradient is final — right after the last node
 * that feeds it ran (or was skipped) — with leaf->grad holding it; nonzero stops the backward
 * with that error. One hook per thread (fvl_set_grad_hook(NULL, NULL) removes it); returns the
 * previous one in *prev_fn / *prev_ud when those are given. (fvl.dist overlaps the data-parallel
 * gradient all-reduce with the rest of the backward this way.) */
typedef int (*fvl_grad_hook)(void *ud, fvl_tensor *leaf);
void fvl_set_grad_hook(fvl_grad_hook fn, void *ud, fvl_grad_hook *prev_fn, void **prev_ud);
/* A start hook: called once at the start of every fvl_backward (before any node runs) with the
 * graph's leaves, each once, sorted by address (bsearch them), so that a caller knows which of its
 * tensors will get no gradient from this backward (DDP's find_unused_parameters); nonzero stops
 * the backward with that error. One per thread, as the gradient hook. */
typedef int (*fvl_grad_start_hook)(void *ud, fvl_tensor *const *leaves, size_t n);
void fvl_set_grad_start_hook(fvl_grad_start_hook fn, void *ud, fvl_grad_start_hook *prev_fn, void **prev_ud);

/* central-difference gradient check of a scalar function f(inputs) in double accumulation.
 * Writes a readable report into report (n bytes). Returns 1 ok, 0 mismatch, -1 error. */
typedef fvl_tensor *(*fvl_scalar_fn)(void *ud, int n, fvl_tensor **inputs);
int fvl_gradcheck(fvl_scalar_fn f, void *ud, int n, fvl_tensor **inputs, double eps, double atol,
                  double rtol, char *report, size_t nreport);
#endif
