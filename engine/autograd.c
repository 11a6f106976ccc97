/* autograd.c — the eager tape: recording, reverse topological backward, gradcheck. */
#include "autograd.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

static _Thread_local int grad_enabled = 1;
int fvl_grad_enabled(void) { return grad_enabled; }
int fvl_set_grad_enabled(int on) {
  int prev = grad_enabled;
  grad_enabled = on ? 1 : 0;
  return prev;
}

int fvl_needs_grad(int n, fvl_tensor **inputs) {
  if (!grad_enabled) return 0;
  for (int i = 0; i < n; i++)
    if (inputs[i] && inputs[i]->requires_grad) return 1;
  return 0;
}

fvl_node *fvl_record(const char *name, fvl_backward_fn bw, fvl_tensor *out, int nin, fvl_tensor **inputs) {
  if (!out || !fvl_needs_grad(nin, inputs)) return NULL;
  if (nin > FVL_NODE_MAXIN) nin = FVL_NODE_MAXIN;
  fvl_node *n = calloc(1, sizeof *n);
  if (!n) return NULL;
  n->name = name;
  n->backward = bw;
  n->nin = nin;
  n->refs = 1;
  for (int i = 0; i < nin; i++)
    if (inputs[i] && inputs[i]->requires_grad) n->in[i] = fvl_retain(inputs[i]);
  if (out->grad_fn) fvl_node_release(out->grad_fn);
  out->grad_fn = n;
  out->requires_grad = 1;
  return n;
}

int fvl_node_wants(const fvl_node *n, int i) { return i < n->nin && n->in[i] != NULL; }

void fvl_node_retain(fvl_node *n) { if (n) n->refs++; }

static void node_free_saved(fvl_node *n) {
  for (int i = 0; i < FVL_NODE_MAXSAVED; i++) { fvl_release(n->saved[i]); n->saved[i] = NULL; }
  if (n->ctx && n->free_ctx) n->free_ctx(n->ctx);
  n->ctx = NULL;
}
/* Releasing the last tensor of a long graph releases a long chain of nodes: do it with a
 * worklist instead of recursion, so a chain of a million ops cannot overflow the stack. */
static _Thread_local fvl_node **pending;
static _Thread_local size_t npending, cap_pending;
static _Thread_local int draining;
void fvl_node_release(fvl_node *n) {
  if (!n || --n->refs > 0) return;
  if (npending == cap_pending) {
    size_t c = cap_pending ? cap_pending * 2 : 256;
    fvl_node **p = realloc(pending, c * sizeof *p);
    if (!p) {  /* cannot defer: free it right here */
      node_free_saved(n);
      fvl_release(n->gacc);
      for (int i = 0; i < n->nin; i++) fvl_release(n->in[i]);
      free(n);
      return;
    }
    pending = p;
    cap_pending = c;
  }
  pending[npending++] = n;
  if (draining) return;
  draining = 1;
  while (npending) {
    fvl_node *m = pending[--npending];
    node_free_saved(m);
    fvl_release(m->gacc);
    for (int i = 0; i < m->nin; i++) fvl_release(m->in[i]);
    free(m);
  }
  draining = 0;
}

static int accumulate(fvl_tensor **slot, fvl_tensor *g) {
  if (!*slot) {
    /* a contiguous gradient nobody else can see (one tensor ref, one storage ref) is taken
     * as it is; anything else becomes a private copy, so later in-place adds touch no one */
    if (g->refs == 1 && g->st->refs == 1 && g->dtype == FVL_F32 && fvl_is_contiguous(g) &&
        !g->grad_fn && !g->requires_grad) {
      *slot = fvl_retain(g);
      return 0;
    }
    /* own a private contiguous copy so later in-place adds never touch g's storage */
    fvl_tensor *c = fvl_empty(FVL_F32, g->ndim, g->size);
    if (!c || fvl_copy_(c, g) < 0) { fvl_release(c); return -1; }
    *slot = c;
    return 0;
  }
  fvl_tensor *s = *slot;
  fvl_tensor *gc = fvl_contiguous(g);
  if (!gc) return -1;
  float *p = fvl_f32(s);
  const float *q = fvl_f32(gc);
  int64_t n = fvl_numel(s);
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; i++) p[i] += q[i];
  fvl_release(gc);
  return 0;
}

int fvl_node_accum(fvl_node *n, int i, fvl_tensor *g) {
  if (!fvl_node_wants(n, i)) return 0;
  fvl_tensor *t = n->in[i];
  if (!fvl_same_shape(t, g)) {
    char a[64], b[64];
    return fvl_err("backward of %s: gradient %s does not match in[%d] of shape %s (0-based)", n->name,
                   fvl_shape_str(g, a, sizeof a), i, fvl_shape_str(t, b, sizeof b));
  }
  if (t->grad_fn) return accumulate(&t->grad_fn->gacc, g);
  return accumulate(&t->grad, g);
}

/* iterative DFS post-order over the graph below root */
typedef struct { fvl_node **v; size_t n, cap; } nodevec;
static int push(nodevec *a, fvl_node *x) {
  if (a->n == a->cap) {
    size_t c = a->cap ? a->cap * 2 : 64;
    fvl_node **nv = realloc(a->v, c * sizeof *nv);
    if (!nv) return fvl_err("backward: out of memory");
    a->v = nv;
    a->cap = c;
  }
  a->v[a->n++] = x;
  return 0;
}
static int visit_epoch = 0;

static _Thread_local fvl_grad_hook g_hook;
static _Thread_local void *g_hook_ud;
void fvl_set_grad_hook(fvl_grad_hook fn, void *ud, fvl_grad_hook *prev_fn, void **prev_ud) {
  if (prev_fn) *prev_fn = g_hook;
  if (prev_ud) *prev_ud = g_hook_ud;
  g_hook = fn;
  g_hook_ud = ud;
}
static _Thread_local fvl_grad_start_hook g_start;
static _Thread_local void *g_start_ud;
void fvl_set_grad_start_hook(fvl_grad_start_hook fn, void *ud, fvl_grad_start_hook *prev_fn, void **prev_ud) {
  if (prev_fn) *prev_fn = g_start;
  if (prev_ud) *prev_ud = g_start_ud;
  g_start = fn;
  g_start_ud = ud;
}
/* each leaf input of the graph once, with the position in `order` of the last node (in execution
   order: the smallest position) that feeds it; sorted by that position, largest first */
typedef struct { fvl_tensor *leaf; size_t k; } leaf_event;
static int ev_by_leaf(const void *a, const void *b) {
  const leaf_event *x = a, *y = b;
  if (x->leaf != y->leaf) return (uintptr_t)x->leaf < (uintptr_t)y->leaf ? -1 : 1;
  return x->k < y->k ? -1 : x->k > y->k;
}
static int ev_by_k_desc(const void *a, const void *b) {
  const leaf_event *x = a, *y = b;
  return x->k > y->k ? -1 : x->k < y->k;
}
static leaf_event *leaf_events(const nodevec *order, size_t *count) {
  size_t m = 0;
  for (size_t k = 0; k < order->n; k++)
    for (int i = 0; i < order->v[k]->nin; i++)
      if (order->v[k]->in[i] && !order->v[k]->in[i]->grad_fn) m++;
  *count = 0;
  leaf_event *ev = malloc(sizeof *ev * (m ? m : 1));
  if (!ev) return fvl_err("backward: out of memory"), NULL;
  for (size_t k = 0; k < order->n; k++)
    for (int i = 0; i < order->v[k]->nin; i++)
      if (order->v[k]->in[i] && !order->v[k]->in[i]->grad_fn) ev[(*count)++] = (leaf_event){order->v[k]->in[i], k};
  qsort(ev, *count, sizeof *ev, ev_by_leaf);
  size_t w = 0;
  for (size_t r = 0; r < *count; r++)
    if (w == 0 || ev[w - 1].leaf != ev[r].leaf) ev[w++] = ev[r];
  *count = w;
  qsort(ev, w, sizeof *ev, ev_by_k_desc);
  return ev;
}
/* the hook for the leaves whose last feeding node is at a position above k (already done) */
static int fire_hooks(const leaf_event *ev, size_t nev, size_t *next, size_t k_done_above, int all) {
  int rc = 0;
  while (rc == 0 && *next < nev && (all || ev[*next].k > k_done_above)) rc = g_hook(g_hook_ud, ev[(*next)++].leaf);
  return rc;
}

/* the start hook on the graph's leaves, sorted by address */
static int cmp_leaf(const void *a, const void *b) {
  uintptr_t x = (uintptr_t) * (fvl_tensor *const *)a, y = (uintptr_t) * (fvl_tensor *const *)b;
  return x < y ? -1 : x > y;
}
static int start_hook(const leaf_event *ev, size_t nev) {
  fvl_tensor **leaves = malloc(sizeof *leaves * (nev ? nev : 1));
  if (!leaves) return fvl_err("backward: out of memory");
  for (size_t i = 0; i < nev; i++) leaves[i] = ev[i].leaf;
  qsort(leaves, nev, sizeof *leaves, cmp_leaf);
  int rc = g_start(g_start_ud, leaves, nev);
  free(leaves);
  return rc;
}

/* the gradient that starts a backward from root: gout (same shape) or 1 for a scalar root */
static fvl_tensor *root_grad(fvl_tensor *root, fvl_tensor *gout) {
  char a[64], b[64];
  if (gout) {
    if (!fvl_same_shape(gout, root)) {
      fvl_err("backward: gradient %s does not match the tensor %s", fvl_shape_str(gout, a, sizeof a),
              fvl_shape_str(root, b, sizeof b));
      return NULL;
    }
    return fvl_retain(gout);
  }
  if (fvl_numel(root) != 1) {
    fvl_err("backward: the tensor is %s; give a gradient or reduce it to a scalar first",
            fvl_shape_str(root, a, sizeof a));
    return NULL;
  }
  return fvl_full(FVL_F32, root->ndim, root->size, 1.0);
}

/* the graph below top in post-order: a node comes after all nodes it depends on (its inputs'
 * nodes). Marking without a visited set: visit = epoch when discovered, -epoch when emitted. */
static int topo_order(fvl_node *top, nodevec *order) {
  int epoch = ++visit_epoch;
  nodevec stack = {0};
  int rc = push(&stack, top);
  top->visit = epoch;
  while (stack.n && rc == 0) {
    fvl_node *n = stack.v[stack.n - 1];
    int pushed = 0;
    for (int i = 0; i < n->nin; i++) {
      fvl_node *c = n->in[i] ? n->in[i]->grad_fn : NULL;
      if (c && c->visit != epoch && c->visit != -epoch) {
        c->visit = epoch;
        rc = push(&stack, c);
        pushed = 1;
        break;
      }
    }
    if (!pushed) {
      stack.n--;
      n->visit = -epoch;
      if (rc == 0) rc = push(order, n);
    }
  }
  free(stack.v);
  return rc;
}

/* runs the nodes' backward functions from the root down (gradients off), firing the leaves'
 * hooks (events ev) as soon as no node left can feed them */
static int run_nodes(const nodevec *order, const leaf_event *ev, size_t nev) {
  size_t next_ev = 0;
  int rc = 0;
  int prev = fvl_set_grad_enabled(0);
  for (size_t k = order->n; k-- > 0 && rc == 0;) {
    fvl_node *n = order->v[k];
    if (nev && (rc = fire_hooks(ev, nev, &next_ev, k, 0))) break;
    if (!n->gacc && !n->pending) continue;
    if (n->iv[7] == -12345) {
      rc = fvl_err("backward: the graph through %s was already used by a backward; compute the loss again", n->name);
      break;
    }
    rc = n->backward(n, n->gacc);
    if (rc == 0) rc = fvl_check_abort("backward");
  }
  if (rc == 0 && nev) rc = fire_hooks(ev, nev, &next_ev, 0, 1);
  fvl_set_grad_enabled(prev);
  return rc;
}

int fvl_backward(fvl_tensor *root, fvl_tensor *gout) {
  if (!root->requires_grad)
    return fvl_err("backward: the tensor does not require grad (no input had requires_grad, or it was computed under no_grad)");
  fvl_tensor *g = root_grad(root, gout);
  if (!g) return -1;
  if (!root->grad_fn) {  /* a leaf */
    int rc = accumulate(&root->grad, g);
    fvl_release(g);
    return rc;
  }
  nodevec order = {0};
  int rc = topo_order(root->grad_fn, &order);
  if (rc == 0) {
    fvl_node *top = root->grad_fn;
    fvl_release(top->gacc);
    top->gacc = NULL;
    rc = accumulate(&top->gacc, g);
  }
  fvl_release(g);
  leaf_event *ev = NULL;
  size_t nev = 0;
  if ((g_hook || g_start) && rc == 0 && !(ev = leaf_events(&order, &nev))) rc = -1;
  if (g_start && rc == 0) rc = start_hook(ev, nev);
  if (!g_hook) nev = 0;   /* the start hook only: no per-leaf events while the nodes run */
  if (rc == 0) rc = run_nodes(&order, ev, nev);
  free(ev);
  /* free saved tensors and gradients of the walked graph (retain_graph = false) */
  for (size_t k = 0; k < order.n; k++) {
    fvl_node *n = order.v[k];
    fvl_release(n->gacc);
    n->gacc = NULL;
    n->pending = 0;
    if (rc == 0) { node_free_saved(n); n->iv[7] = -12345; }
  }
  free(order.v);
  return rc;
}

/* ------------------------------------------------------------------ gradcheck */
int fvl_gradcheck(fvl_scalar_fn f, void *ud, int n, fvl_tensor **inputs, double eps, double atol,
                  double rtol, char *report, size_t nreport) {
  size_t k = 0;
  report[0] = 0;
  for (int i = 0; i < n; i++) { fvl_release(inputs[i]->grad); inputs[i]->grad = NULL; }
  fvl_tensor *y = f(ud, n, inputs);
  if (!y) return -1;
  int rc = fvl_backward(y, NULL);
  fvl_release(y);
  if (rc < 0) return -1;
  int ok = 1;
  int prev = fvl_set_grad_enabled(0);
  for (int i = 0; i < n && ok >= 0; i++) {
    fvl_tensor *x = inputs[i];
    if (!x->requires_grad || x->dtype != FVL_F32 || !fvl_is_contiguous(x)) continue;
    float *p = fvl_f32(x);
    int64_t m = fvl_numel(x);
    double worst = 0;
    int64_t worst_j = -1;
    double wa = 0, wn = 0;
    for (int64_t j = 0; j < m; j++) {
      float orig = p[j];
      p[j] = (float)(orig + eps);
      fvl_tensor *yp = f(ud, n, inputs);
      p[j] = (float)(orig - eps);
      fvl_tensor *ym = f(ud, n, inputs);
      p[j] = orig;
      if (!yp || !ym) { fvl_release(yp); fvl_release(ym); ok = -1; break; }
      double num = ((double)fvl_f32(yp)[0] - (double)fvl_f32(ym)[0]) / (2 * eps);
      fvl_release(yp);
      fvl_release(ym);
      double ana = x->grad ? fvl_f32(x->grad)[j] : 0.0;
      double err = fabs(num - ana) - (atol + rtol * fabs(num));
      if (err > worst || worst_j < 0) { worst = err; worst_j = j; wa = ana; wn = num; }
    }
    if (ok < 0) break;
    int bad = worst > 0;
    if (bad) ok = 0;
    if (k < nreport)
      k += (size_t)snprintf(report + k, nreport - k, "input %d: %s (worst element %lld: analytic %.6g, numeric %.6g)\n",
                            i + 1, bad ? "MISMATCH" : "ok", (long long)worst_j + 1, wa, wn);
  }
  fvl_set_grad_enabled(prev);
  return ok;
}
