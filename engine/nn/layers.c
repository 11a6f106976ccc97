/* layers.c — autograd wrappers of the layer kernels: check shapes, run the raw kernel, record a
 * node whose backward calls the raw backward kernel. */
#include "nn.h"
#include "backbone.h"
#include "autograd.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

/* ------------------------------------------------------------------ shared helpers */
static int need_f32(const char *fn, const char *arg, const fvl_tensor *t) {
  if (!t) return fvl_err("%s: %s is missing", fn, arg);
  if (t->dtype != FVL_F32) return fvl_err("%s: %s is %s, expected float32", fn, arg, fvl_dtype_name(t->dtype));
  return 0;
}

/* one reusable workspace for the conv kernels (the engine is driven from one Lua thread;
 * a thread-local cache keeps concurrent callers apart) */
static _Thread_local float *ws_ptr;
static _Thread_local size_t ws_floats;
static float *workspace(size_t nfloats) {
  if (nfloats <= ws_floats) return ws_ptr;
  if (ws_ptr) fvl_dealloc(ws_ptr, ws_floats * sizeof(float));
  ws_ptr = fvl_alloc(nfloats * sizeof(float));
  ws_floats = ws_ptr ? nfloats : 0;
  return ws_ptr;
}

/* The layer kernels index with int: every size of a layer's tensor (and a size padded by up to
 * 2·65535, the bindings' largest padding) must fit one. A size beyond that would wrap in the
 * (int) conversion or in H + 2·pad (a tensor with a 0-size dimension can have such sizes). */
#define NN_MAX_SIZE (INT32_MAX - 2 * 0xffff)
static int int_sizes(const char *fn, const char *arg, const fvl_tensor *t) {
  char a[64];
  for (int d = 0; d < t->ndim; d++)
    if (t->size[d] > NN_MAX_SIZE)
      return fvl_err("%s: %s is %s: size %lld of dim %d is above %d (the layer kernels' int sizes)", fn, arg,
                     fvl_shape_str(t, a, sizeof a), (long long)t->size[d], d, NN_MAX_SIZE);
  return 0;
}

static fvl_tensor *new4(int64_t a, int64_t b, int64_t c, int64_t d) {
  int64_t sz[4] = {a, b, c, d};
  return fvl_empty(FVL_F32, 4, sz);
}

/* the gradient a backward receives may be a view: make it contiguous (new reference) */
static fvl_tensor *contig(fvl_tensor *g) { return fvl_contiguous(g); }

/* ------------------------------------------------------------------ conv2d */
static void conv_shape_from(const fvl_node *n, fvl_conv2d_shape *s) {
  const int64_t *v = n->iv;
  s->B = (int)v[0]; s->C = (int)v[1]; s->H = (int)v[2]; s->W = (int)v[3]; s->O = (int)v[4];
  s->KH = (int)(v[5] >> 16); s->KW = (int)(v[5] & 0xffff);
  s->sh = (int)(v[6] >> 16); s->sw = (int)(v[6] & 0xffff);
  s->ph = (int)(n->sc[0]); s->pw = (int)(n->sc[1]);
  fvl_conv2d_plan(s);
}

static void conv_shape_to(fvl_node *n, const fvl_conv2d_shape *s, int groups) {
  n->iv[0] = s->B; n->iv[1] = s->C; n->iv[2] = s->H; n->iv[3] = s->W; n->iv[4] = s->O;
  n->iv[5] = ((int64_t)s->KH << 16) | s->KW;
  n->iv[6] = ((int64_t)s->sh << 16) | s->sw;
  n->iv[7] = groups;
  n->sc[0] = s->ph; n->sc[1] = s->pw;
}

/* the backward kernels into dx, dw, db (NULL = not wanted) */
static int conv_bwd_run(const fvl_conv2d_shape *s, int groups, fvl_tensor *x, fvl_tensor *w, fvl_tensor *g,
                        fvl_tensor *dx, fvl_tensor *dw, fvl_tensor *db) {
  if (groups > 1)
    return fvl_conv2d_grouped_bwd(s, groups, fvl_f32(x), fvl_f32(w), fvl_f32(g), dx ? fvl_f32(dx) : NULL,
                                  dw ? fvl_f32(dw) : NULL, db ? fvl_f32(db) : NULL);
  float *work = NULL;
  if ((dx || dw) && !(work = workspace(fvl_conv2d_workspace(s)))) return -1;
  return fvl_conv2d_bwd(s, fvl_f32(x), fvl_f32(w), fvl_f32(g), dx ? fvl_f32(dx) : NULL, dw ? fvl_f32(dw) : NULL,
                        db ? fvl_f32(db) : NULL, work);
}

/* new dx, dw, db for the wanted inputs 0, 1, 2 of n (x, w, bias); -1 when out of memory */
static int conv_grads_new(const fvl_node *n, const fvl_tensor *x, const fvl_tensor *w, int64_t O, fvl_tensor **dx,
                          fvl_tensor **dw, fvl_tensor **db) {
  *dx = *dw = *db = NULL;
  if (fvl_node_wants(n, 0) && !(*dx = fvl_empty_like(x))) return -1;
  if (fvl_node_wants(n, 1) && !(*dw = fvl_empty_like(w))) return -1;
  if (fvl_node_wants(n, 2) && !(*db = fvl_empty(FVL_F32, 1, &O))) return -1;
  return 0;
}

/* accumulates dx, dw, db into inputs 0, 1, 2 of n and releases them */
static int conv_grads_accum(fvl_node *n, int rc, fvl_tensor *dx, fvl_tensor *dw, fvl_tensor *db) {
  if (rc == 0 && dx) rc = fvl_node_accum(n, 0, dx);
  if (rc == 0 && dw) rc = fvl_node_accum(n, 1, dw);
  if (rc == 0 && db) rc = fvl_node_accum(n, 2, db);
  fvl_release(dx); fvl_release(dw); fvl_release(db);
  return rc;
}

static int bw_conv2d(fvl_node *n, fvl_tensor *gout) {
  fvl_conv2d_shape s;
  conv_shape_from(n, &s);
  fvl_tensor *x = n->saved[0], *w = n->saved[1];
  fvl_tensor *g = contig(gout);
  if (!g) return -1;
  fvl_tensor *dx, *dw, *db;
  int rc = conv_grads_new(n, x, w, s.O, &dx, &dw, &db);
  if (rc == 0) rc = conv_bwd_run(&s, (int)n->iv[7], x, w, g, dx, dw, db);
  fvl_release(g);
  return conv_grads_accum(n, rc, dx, dw, db);
}

fvl_tensor *fvl_nn_conv2d(fvl_tensor *x, fvl_tensor *w, fvl_tensor *bias, int sh, int sw, int ph,
                          int pw) {
  return fvl_nn_conv2d_grouped(x, w, bias, sh, sw, ph, pw, 1);
}

/* checks the arguments and plans the shape s (-1 with conv2d's message) */
static int conv_check(fvl_tensor *x, fvl_tensor *w, fvl_tensor *bias, int sh, int sw, int ph, int pw, int groups,
                      fvl_conv2d_shape *s) {
  char a[64], b[64];
  if (need_f32("conv2d", "input", x) < 0 || need_f32("conv2d", "weight", w) < 0) return -1;
  if (bias && need_f32("conv2d", "bias", bias) < 0) return -1;
  if (int_sizes("conv2d", "input", x) < 0 || int_sizes("conv2d", "weight", w) < 0) return -1;
  if (x->ndim != 4) {
    fvl_err("conv2d: input must be 4-D (batch x channels x height x width), got %s",
            fvl_shape_str(x, a, sizeof a));
    return -1;
  }
  if (w->ndim != 4) {
    fvl_err("conv2d: weight must be 4-D (out x in x kh x kw), got %s", fvl_shape_str(w, a, sizeof a));
    return -1;
  }
  if (groups < 1 || x->size[1] % groups != 0 || w->size[0] % groups != 0) {
    fvl_err("conv2d: groups = %d must divide the input's %lld channels and the weight's %lld outputs",
            groups, (long long)x->size[1], (long long)w->size[0]);
    return -1;
  }
  if (x->size[1] != w->size[1] * groups) {
    char gs[32] = "";
    if (groups > 1) snprintf(gs, sizeof gs, " (groups = %d)", groups);
    fvl_err("conv2d: input is %s but the weight %s%s expects %lld input channel(s), got %lld",
            fvl_shape_str(x, a, sizeof a), fvl_shape_str(w, b, sizeof b), gs,
            (long long)(w->size[1] * groups), (long long)x->size[1]);
    return -1;
  }
  if (bias && (bias->ndim != 1 || bias->size[0] != w->size[0])) {
    fvl_err("conv2d: bias is %s, expected %lld values (one per output channel)",
            fvl_shape_str(bias, a, sizeof a), (long long)w->size[0]);
    return -1;
  }
  if (w->size[2] > 0xffff || w->size[3] > 0xffff || sh > 0xffff || sw > 0xffff || x->size[0] > INT32_MAX) {
    fvl_err("conv2d: sizes too large");
    return -1;
  }
  *s = (fvl_conv2d_shape){.B = (int)x->size[0], .C = (int)x->size[1], .H = (int)x->size[2],
                        .W = (int)x->size[3], .O = (int)w->size[0], .KH = (int)w->size[2],
                        .KW = (int)w->size[3], .sh = sh, .sw = sw, .ph = ph, .pw = pw};
  return fvl_conv2d_plan(s);
}

/* the forward into y (contiguous inputs; ep NULL = none) */
static int conv_fwd_into(const fvl_conv2d_shape *s, int groups, fvl_tensor *xc, fvl_tensor *wc, fvl_tensor *bc,
                         const fvl_conv_epi *ep, fvl_tensor *y) {
  if (groups > 1)
    return fvl_conv2d_grouped_fwd_epi(s, groups, fvl_f32(xc), fvl_f32(wc), bc ? fvl_f32(bc) : NULL, ep, fvl_f32(y));
  float *work = workspace(fvl_conv2d_workspace(s));
  return work ? fvl_conv2d_fwd_epi(s, fvl_f32(xc), fvl_f32(wc), bc ? fvl_f32(bc) : NULL, ep, fvl_f32(y), work) : -1;
}

/* checks, plans and runs the forward (with the epilogue ep, or NULL); records the node when
 * ep is NULL */
static fvl_tensor *conv_run(fvl_tensor *x, fvl_tensor *w, fvl_tensor *bias, int sh, int sw, int ph, int pw,
                            int groups, const fvl_conv_epi *ep) {
  fvl_conv2d_shape s;
  if (conv_check(x, w, bias, sh, sw, ph, pw, groups, &s) < 0) return NULL;
  fvl_tensor *xc = fvl_contiguous(x), *wc = fvl_contiguous(w), *bc = bias ? fvl_contiguous(bias) : NULL;
  fvl_tensor *y = (xc && wc && (bc || !bias)) ? new4(s.B, s.O, s.OH, s.OW) : NULL;
  int rc = y ? conv_fwd_into(&s, groups, xc, wc, bc, ep, y) : -1;
  if (rc < 0 || ep) {
    fvl_release(xc); fvl_release(wc); fvl_release(bc);
    if (rc < 0) fvl_release(y);
    return rc < 0 ? NULL : y;
  }
  fvl_tensor *in[3] = {x, w, bias};
  fvl_node *nd = fvl_record("conv2d", bw_conv2d, y, bias ? 3 : 2, in);
  if (nd) {
    nd->saved[0] = fvl_detach(xc);
    nd->saved[1] = fvl_detach(wc);
    conv_shape_to(nd, &s, groups);
  }
  fvl_release(xc); fvl_release(wc); fvl_release(bc);
  return y;
}

fvl_tensor *fvl_nn_conv2d_grouped(fvl_tensor *x, fvl_tensor *w, fvl_tensor *bias, int sh, int sw,
                                  int ph, int pw, int groups) {
  return conv_run(x, w, bias, sh, sw, ph, pw, groups, NULL);
}

/* inference: the convolution with an evaluation BatchNorm and/or PReLU in its stores */
static int epi_vec_ok(const char *fn, const char *arg, const fvl_tensor *t, int64_t O, int64_t alt) {
  char s1[64];
  if (!t) return 0;
  if (t->dtype != FVL_F32) return fvl_err("%s: %s is int32, expected float32", fn, arg);
  if (t->ndim != 1 || (t->size[0] != O && t->size[0] != alt))
    return fvl_err("%s: %s is %s, expected %lld values (one per output channel)%s", fn, arg,
                   fvl_shape_str(t, s1, sizeof s1), (long long)O, alt == 1 && O != 1 ? " or 1" : "");
  return 0;
}
fvl_tensor *fvl_nn_conv2d_bn_act(fvl_tensor *x, fvl_tensor *w, fvl_tensor *bias, int sh, int sw, int ph,
                                 int pw, int groups, fvl_tensor *running_mean, fvl_tensor *running_var,
                                 fvl_tensor *gamma, fvl_tensor *beta, double eps, fvl_tensor *a) {
  fvl_tensor *ins[6] = {x, w, bias, gamma, beta, a};
  if (fvl_grad_enabled())
    for (int i = 0; i < 6; i++)
      if (ins[i] && ins[i]->requires_grad) {
        fvl_err("conv2d_bn_act: inference only (no autograd node): call it with gradients disabled "
                "or on tensors that do not require them; training uses conv2d + bn_prelu");
        return NULL;
      }
  if (need_f32("conv2d_bn_act", "weight", w) < 0) return NULL;
  if (w->ndim != 4 || w->size[0] < 1) return conv_run(x, w, bias, sh, sw, ph, pw, groups, NULL);   /* its message */
  const int64_t O = w->size[0];
  if ((running_mean == NULL) != (running_var == NULL)) {
    fvl_err("conv2d_bn_act: give both running_mean and running_var, or neither");
    return NULL;
  }
  if (!running_mean && (gamma || beta)) {
    fvl_err("conv2d_bn_act: BatchNorm weight/bias given without running statistics");
    return NULL;
  }
  if (epi_vec_ok("conv2d_bn_act", "running_mean", running_mean, O, O) < 0 || epi_vec_ok("conv2d_bn_act", "running_var", running_var, O, O) < 0 ||
      epi_vec_ok("conv2d_bn_act", "BatchNorm weight", gamma, O, O) < 0 || epi_vec_ok("conv2d_bn_act", "BatchNorm bias", beta, O, O) < 0 ||
      epi_vec_ok("conv2d_bn_act", "prelu weight", a, O, 1) < 0)
    return NULL;
  if (running_mean && !(eps > 0)) { fvl_err("conv2d_bn_act: eps must be > 0, got %g", eps); return NULL; }
  fvl_tensor *rm = running_mean ? fvl_contiguous(running_mean) : NULL, *rv = running_var ? fvl_contiguous(running_var) : NULL;
  fvl_tensor *gc = gamma ? fvl_contiguous(gamma) : NULL, *bc = beta ? fvl_contiguous(beta) : NULL;
  fvl_tensor *ac = a ? fvl_contiguous(a) : NULL;
  float *aff = running_mean ? fvl_alloc(sizeof(float) * 2 * (size_t)O) : NULL;
  fvl_tensor *y = NULL;
  if ((running_mean && (!rm || !rv || !aff)) || (gamma && !gc) || (beta && !bc) || (a && !ac)) goto done;
  if (aff) {   /* the evaluation-mode scale and shift exactly as fvl_bn_prelu_fwd computes them */
    const float *m = fvl_f32(rm), *v = fvl_f32(rv), *g = gc ? fvl_f32(gc) : NULL, *b = bc ? fvl_f32(bc) : NULL;
    for (int64_t o = 0; o < O; o++) {
      const double invstd = 1.0 / sqrt((double)v[o] + eps), gg = g ? g[o] : 1.0, bt = b ? b[o] : 0.0;
      aff[o] = (float)(gg * invstd);
      aff[O + o] = (float)(bt - gg * invstd * m[o]);
    }
  }
  const fvl_conv_epi ep = {.scale = aff, .shift = aff ? aff + O : NULL, .a = ac ? fvl_f32(ac) : NULL,
                           .na = ac ? (int)fvl_numel(ac) : 0};
  y = conv_run(x, w, bias, sh, sw, ph, pw, groups, &ep);
done:
  if (aff) fvl_dealloc(aff, sizeof(float) * 2 * (size_t)O);
  fvl_release(rm); fvl_release(rv); fvl_release(gc); fvl_release(bc); fvl_release(ac);
  return y;
}

/* ------------------------------------------------------------------ conv + BatchNorm (+ PReLU), training */
static void release_ctx_tensor(void *t) { fvl_release(t); }

/* saved: x, w, the convolution's output yconv, stats (mean | invstd, 2·O), gamma, beta; ctx: the
 * PReLU weight a (or NULL); iv/sc[0..1]: the convolution's shape; sc[2]: a's length */
static int bw_conv_bn_act(fvl_node *n, fvl_tensor *gout) {
  fvl_conv2d_shape s;
  conv_shape_from(n, &s);
  const int groups = (int)n->iv[7], na = (int)n->sc[2];
  fvl_tensor *x = n->saved[0], *w = n->saved[1], *yc = n->saved[2], *st = n->saved[3], *gamma = n->saved[4],
             *beta = n->saved[5], *a = n->ctx;
  fvl_tensor *g = contig(gout);
  if (!g) return -1;
  fvl_tensor *dx, *dw, *db, *dg = NULL, *dbt = NULL, *da = NULL, *dbn = NULL;
  int64_t O = s.O;
  int rc = conv_grads_new(n, x, w, O, &dx, &dw, &db);
  if (rc == 0 && fvl_node_wants(n, 3) && !(dg = fvl_empty(FVL_F32, 1, &O))) rc = -1;
  if (rc == 0 && fvl_node_wants(n, 4) && !(dbt = fvl_empty(FVL_F32, 1, &O))) rc = -1;
  if (rc == 0 && fvl_node_wants(n, 5) && !(da = fvl_empty_like(a))) rc = -1;
  const fvl_bn_par p = {.gamma = gamma ? fvl_f32(gamma) : NULL, .beta = beta ? fvl_f32(beta) : NULL,
                        .a = a ? fvl_f32(a) : NULL, .na = na, .training = 1};
  const float *mean = fvl_f32(st), *invstd = mean + O;
  float *pdg = dg ? fvl_f32(dg) : NULL, *pdb = dbt ? fvl_f32(dbt) : NULL, *pda = da ? fvl_f32(da) : NULL;
  if (rc == 0 && fvl_conv2d_dw_ok(&s, groups)) {
    rc = fvl_conv2d_dw_bn_act_bwd(&s, fvl_f32(x), fvl_f32(w), fvl_f32(yc), fvl_f32(g), &p, mean, invstd,
                                  dx ? fvl_f32(dx) : NULL, dw ? fvl_f32(dw) : NULL, db ? fvl_f32(db) : NULL, pdg,
                                  pdb, pda);
  } else if (rc == 0) {
    const int conv_grads = dx || dw || db;
    if (conv_grads && !(dbn = fvl_empty_like(yc))) rc = -1;
    if (rc == 0)
      rc = fvl_bn_act_bwd(fvl_f32(yc), fvl_f32(g), s.B, s.O, (int64_t)s.OH * s.OW, p.gamma, p.beta, p.a, na, mean,
                          invstd, 1, dbn ? fvl_f32(dbn) : NULL, pdg, pdb, pda);
    if (rc == 0 && conv_grads) rc = conv_bwd_run(&s, groups, x, w, dbn, dx, dw, db);
  }
  fvl_release(g);
  fvl_release(dbn);
  rc = conv_grads_accum(n, rc, dx, dw, db);
  if (rc == 0 && dg) rc = fvl_node_accum(n, 3, dg);
  if (rc == 0 && dbt) rc = fvl_node_accum(n, 4, dbt);
  if (rc == 0 && da) rc = fvl_node_accum(n, 5, da);
  fvl_release(dg); fvl_release(dbt); fvl_release(da);
  return rc;
}

static int train_vec_ok(const char *arg, const fvl_tensor *t, int64_t O, int64_t alt) {
  if (epi_vec_ok("conv2d_bn_act_train", arg, t, O, alt) < 0) return -1;
  if (t && !fvl_is_contiguous(t)) return fvl_err("conv2d_bn_act_train: %s must be contiguous", arg);
  return 0;
}

fvl_tensor *fvl_nn_conv2d_bn_act_train(fvl_tensor *x, fvl_tensor *w, fvl_tensor *bias, int sh, int sw, int ph,
                                       int pw, int groups, fvl_tensor *running_mean, fvl_tensor *running_var,
                                       fvl_tensor *gamma, fvl_tensor *beta, fvl_tensor *a, double momentum,
                                       double eps) {
  fvl_conv2d_shape s;
  if (conv_check(x, w, bias, sh, sw, ph, pw, groups, &s) < 0) return NULL;
  const int64_t O = s.O, S = (int64_t)s.OH * s.OW;
  if ((running_mean == NULL) != (running_var == NULL)) {
    fvl_err("conv2d_bn_act_train: give both running_mean and running_var, or neither");
    return NULL;
  }
  if (train_vec_ok("running_mean", running_mean, O, O) < 0 || train_vec_ok("running_var", running_var, O, O) < 0 ||
      train_vec_ok("BatchNorm weight", gamma, O, O) < 0 || train_vec_ok("BatchNorm bias", beta, O, O) < 0 ||
      train_vec_ok("prelu weight", a, O, 1) < 0)
    return NULL;
  if (!(eps > 0)) { fvl_err("conv2d_bn_act_train: eps must be > 0, got %g", eps); return NULL; }
  if (!(momentum >= 0 && momentum <= 1)) {
    fvl_err("conv2d_bn_act_train: momentum must be in [0, 1], got %g", momentum);
    return NULL;
  }
  if ((int64_t)s.B * S < 2) {
    fvl_err("conv2d_bn_act_train: training needs more than one value per channel, got output %dx%dx%dx%d "
            "(use evaluate() for single samples)", s.B, s.O, s.OH, s.OW);
    return NULL;
  }
  const fvl_bn_par p = {.gamma = gamma ? fvl_f32(gamma) : NULL, .beta = beta ? fvl_f32(beta) : NULL,
                        .a = a ? fvl_f32(a) : NULL, .na = a ? (int)fvl_numel(a) : 0,
                        .running_mean = running_mean ? fvl_f32(running_mean) : NULL,
                        .running_var = running_var ? fvl_f32(running_var) : NULL, .training = 1,
                        .momentum = momentum, .eps = eps};
  int64_t two = 2 * O;
  fvl_tensor *xc = fvl_contiguous(x), *wc = fvl_contiguous(w), *bc = bias ? fvl_contiguous(bias) : NULL;
  fvl_tensor *yc = new4(s.B, s.O, s.OH, s.OW), *y = new4(s.B, s.O, s.OH, s.OW), *st = fvl_empty(FVL_F32, 1, &two);
  int rc = xc && wc && (bc || !bias) && yc && y && st ? 0 : -1;
  float *mean = st ? fvl_f32(st) : NULL;
  if (rc == 0 && fvl_conv2d_dw_ok(&s, groups)) {
    rc = fvl_conv2d_dw_bn_act_fwd(&s, fvl_f32(xc), fvl_f32(wc), bc ? fvl_f32(bc) : NULL, &p, fvl_f32(yc), fvl_f32(y),
                                  mean, mean + O);
  } else if (rc == 0) {
    rc = conv_fwd_into(&s, groups, xc, wc, bc, NULL, yc);
    if (rc == 0)
      rc = fvl_bn_act_fwd("conv2d_bn_act_train", fvl_f32(yc), s.B, s.O, S, p.gamma, p.beta, p.a, p.na,
                          p.running_mean, p.running_var, 1, momentum, eps, fvl_f32(y), mean, mean + O);
  }
  if (rc == 0) {
    fvl_tensor *in[6] = {x, w, bias, gamma, beta, a};
    fvl_node *nd = fvl_record("conv2d_bn_act_train", bw_conv_bn_act, y, 6, in);
    if (nd) {
      nd->saved[0] = fvl_detach(xc);
      nd->saved[1] = fvl_detach(wc);
      nd->saved[2] = yc; yc = NULL;
      nd->saved[3] = st; st = NULL;
      nd->saved[4] = gamma ? fvl_detach(gamma) : NULL;
      nd->saved[5] = beta ? fvl_detach(beta) : NULL;
      conv_shape_to(nd, &s, groups);
      nd->sc[2] = p.na;
      if (a) {
        nd->ctx = fvl_detach(a);
        nd->free_ctx = release_ctx_tensor;
      }
    }
  } else {
    fvl_release(y);
    y = NULL;
  }
  fvl_release(xc); fvl_release(wc); fvl_release(bc); fvl_release(yc); fvl_release(st);
  return y;
}

/* ------------------------------------------------------------------ pooling */
static void pool_shape_from(const fvl_node *n, fvl_pool2d_shape *s) {
  const int64_t *v = n->iv;
  s->B = (int)v[0]; s->C = (int)v[1]; s->H = (int)v[2]; s->W = (int)v[3];
  s->kh = (int)(v[4] >> 16); s->kw = (int)(v[4] & 0xffff);
  s->sh = (int)(v[5] >> 16); s->sw = (int)(v[5] & 0xffff);
  s->ph = (int)(v[6] >> 16); s->pw = (int)(v[6] & 0xffff);
  s->OH = (int)n->sc[0]; s->OW = (int)n->sc[1];
}
static void pool_shape_to(fvl_node *n, const fvl_pool2d_shape *s) {
  n->iv[0] = s->B; n->iv[1] = s->C; n->iv[2] = s->H; n->iv[3] = s->W;
  n->iv[4] = ((int64_t)s->kh << 16) | s->kw;
  n->iv[5] = ((int64_t)s->sh << 16) | s->sw;
  n->iv[6] = ((int64_t)s->ph << 16) | s->pw;
  n->sc[0] = s->OH; n->sc[1] = s->OW;
}

static int bw_pool(fvl_node *n, fvl_tensor *gout) {
  fvl_pool2d_shape s;
  pool_shape_from(n, &s);
  fvl_tensor *g = contig(gout);
  fvl_tensor *dx = g ? new4(s.B, s.C, s.H, s.W) : NULL;
  int rc = -1;
  if (dx) {
    if (n->saved[0]) fvl_maxpool2d_bwd(&s, fvl_f32(g), fvl_i32(n->saved[0]), fvl_f32(dx));
    else fvl_avgpool2d_bwd(&s, fvl_f32(g), fvl_f32(dx));
    rc = fvl_node_accum(n, 0, dx);
  }
  fvl_release(g);
  fvl_release(dx);
  return rc;
}

static fvl_tensor *pool2d(const char *fn, int is_max, fvl_tensor *x, int kh, int kw, int sh, int sw,
                          int ph, int pw) {
  char a[64];
  if (need_f32(fn, "input", x) < 0 || int_sizes(fn, "input", x) < 0) return NULL;
  if (x->ndim != 4) {
    fvl_err("%s: input must be 4-D (batch x channels x height x width), got %s", fn,
            fvl_shape_str(x, a, sizeof a));
    return NULL;
  }
  if (kh > 0xffff || kw > 0xffff || sh > 0xffff || sw > 0xffff || ph > 0xffff || pw > 0xffff) {
    fvl_err("%s: kernel, stride or padding too large", fn);
    return NULL;
  }
  fvl_pool2d_shape s = {.B = (int)x->size[0], .C = (int)x->size[1], .H = (int)x->size[2],
                        .W = (int)x->size[3], .kh = kh, .kw = kw, .sh = sh, .sw = sw, .ph = ph, .pw = pw};
  if (fvl_pool2d_plan(&s, fn) < 0) return NULL;
  fvl_tensor *xc = fvl_contiguous(x);
  fvl_tensor *y = xc ? new4(s.B, s.C, s.OH, s.OW) : NULL;
  fvl_tensor *am = NULL;
  if (y && is_max) {
    int64_t sz[4] = {s.B, s.C, s.OH, s.OW};
    am = fvl_empty(FVL_I32, 4, sz);
    if (!am) { fvl_release(y); y = NULL; }
  }
  if (!y) { fvl_release(xc); return NULL; }
  if (is_max) fvl_maxpool2d_fwd(&s, fvl_f32(xc), fvl_f32(y), fvl_i32(am));
  else fvl_avgpool2d_fwd(&s, fvl_f32(xc), fvl_f32(y));
  fvl_release(xc);
  fvl_node *nd = fvl_record(fn, bw_pool, y, 1, &x);
  if (nd) {
    pool_shape_to(nd, &s);
    nd->saved[0] = am;   /* NULL for average pooling */
    am = NULL;
  }
  fvl_release(am);
  return y;
}

fvl_tensor *fvl_nn_maxpool2d(fvl_tensor *x, int kh, int kw, int sh, int sw, int ph, int pw) {
  return pool2d("maxpool2d", 1, x, kh, kw, sh, sw, ph, pw);
}
fvl_tensor *fvl_nn_avgpool2d(fvl_tensor *x, int kh, int kw, int sh, int sw, int ph, int pw) {
  return pool2d("avgpool2d", 0, x, kh, kw, sh, sw, ph, pw);
}

/* ------------------------------------------------------------------ batchnorm */
static int64_t spatial(const fvl_tensor *x) {
  int64_t S = 1;
  for (int d = 2; d < x->ndim; d++) S *= x->size[d];
  return S;
}

static int bw_batchnorm(fvl_node *n, fvl_tensor *gout) {
  fvl_tensor *x = n->saved[0], *mean = n->saved[1], *invstd = n->saved[2], *gamma = n->saved[3];
  fvl_tensor *g = contig(gout);
  if (!g) return -1;
  int B = (int)x->size[0], C = (int)x->size[1];
  int64_t S = spatial(x), c64 = C;
  fvl_tensor *dx = NULL, *dg = NULL, *db = NULL;
  int rc = 0;
  if (fvl_node_wants(n, 0) && !(dx = fvl_empty_like(x))) rc = -1;
  if (rc == 0 && fvl_node_wants(n, 1) && !(dg = fvl_empty(FVL_F32, 1, &c64))) rc = -1;
  if (rc == 0 && fvl_node_wants(n, 2) && !(db = fvl_empty(FVL_F32, 1, &c64))) rc = -1;
  if (rc == 0) {
    fvl_batchnorm_bwd(fvl_f32(x), fvl_f32(g), B, C, S, gamma ? fvl_f32(gamma) : NULL, fvl_f32(mean),
                      fvl_f32(invstd), (int)n->iv[0], dx ? fvl_f32(dx) : NULL, dg ? fvl_f32(dg) : NULL,
                      db ? fvl_f32(db) : NULL);
    if (dx) rc = fvl_node_accum(n, 0, dx);
    if (rc == 0 && dg) rc = fvl_node_accum(n, 1, dg);
    if (rc == 0 && db) rc = fvl_node_accum(n, 2, db);
  }
  fvl_release(g); fvl_release(dx); fvl_release(dg); fvl_release(db);
  return rc;
}

static int check_vec(const char *fn, const char *arg, const fvl_tensor *t, int64_t C, const fvl_tensor *x,
                     int need_contig) {
  char a[64], b[64];
  if (!t) return 0;
  if (need_f32(fn, arg, t) < 0) return -1;
  if (t->ndim != 1 || t->size[0] != C)
    return fvl_err("%s: input is %s (%lld channels) but %s is %s", fn, fvl_shape_str(x, a, sizeof a),
                   (long long)C, arg, fvl_shape_str(t, b, sizeof b));
  if (need_contig && !fvl_is_contiguous(t)) return fvl_err("%s: %s must be contiguous", fn, arg);
  return 0;
}

fvl_tensor *fvl_nn_batchnorm(fvl_tensor *x, fvl_tensor *gamma, fvl_tensor *beta,
                             fvl_tensor *running_mean, fvl_tensor *running_var, int training,
                             double momentum, double eps) {
  char a[64];
  const char *fn = "batchnorm";
  if (need_f32(fn, "input", x) < 0 || int_sizes(fn, "input", x) < 0) return NULL;
  if (x->ndim < 2) {
    fvl_err("%s: input must be at least 2-D (batch x channels [x ...]), got %s", fn,
            fvl_shape_str(x, a, sizeof a));
    return NULL;
  }
  int64_t C = x->size[1];
  if (check_vec(fn, "weight", gamma, C, x, 0) < 0 || check_vec(fn, "bias", beta, C, x, 0) < 0 ||
      check_vec(fn, "running_mean", running_mean, C, x, 1) < 0 ||
      check_vec(fn, "running_var", running_var, C, x, 1) < 0)
    return NULL;
  if (!(eps > 0)) { fvl_err("%s: eps must be > 0, got %g", fn, eps); return NULL; }
  if (!(momentum >= 0 && momentum <= 1)) { fvl_err("%s: momentum must be in [0, 1], got %g", fn, momentum); return NULL; }
  fvl_tensor *xc = fvl_contiguous(x);
  fvl_tensor *gc = gamma ? fvl_contiguous(gamma) : NULL, *bc = beta ? fvl_contiguous(beta) : NULL;
  fvl_tensor *y = xc ? fvl_empty_like(xc) : NULL;
  fvl_tensor *mean = fvl_empty(FVL_F32, 1, &C), *invstd = fvl_empty(FVL_F32, 1, &C);
  int rc = (xc && y && mean && invstd && (gc || !gamma) && (bc || !beta)) ? 0 : -1;
  if (rc == 0)
    rc = fvl_batchnorm_fwd(fvl_f32(xc), (int)x->size[0], (int)C, spatial(x), gc ? fvl_f32(gc) : NULL,
                           bc ? fvl_f32(bc) : NULL, running_mean ? fvl_f32(running_mean) : NULL,
                           running_var ? fvl_f32(running_var) : NULL, training, momentum, eps,
                           fvl_f32(y), fvl_f32(mean), fvl_f32(invstd));
  if (rc == 0) {
    fvl_tensor *in[3] = {x, gamma, beta};
    fvl_node *nd = fvl_record(fn, bw_batchnorm, y, 3, in);
    if (nd) {
      nd->saved[0] = fvl_detach(xc);
      nd->saved[1] = mean; mean = NULL;
      nd->saved[2] = invstd; invstd = NULL;
      nd->saved[3] = gc ? fvl_detach(gc) : NULL;
      nd->iv[0] = training ? 1 : 0;
    }
  } else {
    fvl_release(y);
    y = NULL;
  }
  fvl_release(xc); fvl_release(gc); fvl_release(bc); fvl_release(mean); fvl_release(invstd);
  return y;
}

/* ------------------------------------------------------------------ prelu */
static int bw_prelu(fvl_node *n, fvl_tensor *gout) {
  fvl_tensor *x = n->saved[0], *a = n->saved[1];
  fvl_tensor *g = contig(gout);
  if (!g) return -1;
  int B = (int)x->size[0], C = x->ndim > 1 ? (int)x->size[1] : 1, na = (int)fvl_numel(a);
  fvl_tensor *dx = NULL, *da = NULL;
  int rc = 0;
  if (fvl_node_wants(n, 0) && !(dx = fvl_empty_like(x))) rc = -1;
  if (rc == 0 && fvl_node_wants(n, 1) && !(da = fvl_empty_like(a))) rc = -1;
  if (rc == 0) {
    fvl_prelu_bwd(fvl_f32(x), fvl_f32(g), B, C, spatial(x), fvl_f32(a), na, dx ? fvl_f32(dx) : NULL,
                  da ? fvl_f32(da) : NULL);
    if (dx) rc = fvl_node_accum(n, 0, dx);
    if (rc == 0 && da) rc = fvl_node_accum(n, 1, da);
  }
  fvl_release(g); fvl_release(dx); fvl_release(da);
  return rc;
}

fvl_tensor *fvl_nn_prelu(fvl_tensor *x, fvl_tensor *a) {
  char s1[64];
  if (need_f32("prelu", "input", x) < 0 || need_f32("prelu", "weight", a) < 0) return NULL;
  if (int_sizes("prelu", "input", x) < 0 || int_sizes("prelu", "weight", a) < 0) return NULL;
  if (x->ndim < 1) { fvl_err("prelu: input must have a batch dimension"); return NULL; }
  int64_t C = x->ndim > 1 ? x->size[1] : 1, na = fvl_numel(a);
  if (na != 1 && na != C) {
    fvl_err("prelu: input is %s (%lld channels) but the weight has %lld values (expected 1 or %lld)",
            fvl_shape_str(x, s1, sizeof s1), (long long)C, (long long)na, (long long)C);
    return NULL;
  }
  fvl_tensor *xc = fvl_contiguous(x), *ac = fvl_contiguous(a);
  fvl_tensor *y = (xc && ac) ? fvl_empty_like(xc) : NULL;
  if (!y) { fvl_release(xc); fvl_release(ac); return NULL; }
  fvl_prelu_fwd(fvl_f32(xc), (int)x->size[0], (int)C, spatial(x), fvl_f32(ac), (int)na, fvl_f32(y));
  fvl_tensor *in[2] = {x, a};
  fvl_node *nd = fvl_record("prelu", bw_prelu, y, 2, in);
  if (nd) {
    nd->saved[0] = fvl_detach(xc);
    nd->saved[1] = fvl_detach(ac);
  }
  fvl_release(xc); fvl_release(ac);
  return y;
}

/* ------------------------------------------------------------------ dropout */
fvl_tensor *fvl_nn_dropout(fvl_tensor *x, double p, int training) {
  if (need_f32("dropout", "input", x) < 0) return NULL;
  if (!(p >= 0 && p < 1)) { fvl_err("dropout: p must be in [0, 1), got %g", p); return NULL; }
  if (!training || p == 0) return fvl_retain(x);
  fvl_tensor *mask = fvl_empty(FVL_F32, x->ndim, x->size);
  if (!mask) return NULL;
  fvl_dropout_mask(fvl_f32(mask), (size_t)fvl_numel(mask), p);
  fvl_tensor *y = fvl_binary(FVL_MUL, x, mask);   /* backward: dy · mask */
  fvl_release(mask);
  return y;
}

/* ------------------------------------------------------------------ linear */
static int bw_linear(fvl_node *n, fvl_tensor *gout) {
  fvl_tensor *x = n->saved[0], *w = n->saved[1];
  fvl_tensor *g = contig(gout);
  if (!g) return -1;
  int B = (int)x->size[0], In = (int)x->size[1], O = (int)w->size[0];
  int64_t o64 = O;
  fvl_tensor *dx = NULL, *dw = NULL, *db = NULL;
  int rc = 0;
  if (fvl_node_wants(n, 0) && !(dx = fvl_empty_like(x))) rc = -1;
  if (rc == 0 && fvl_node_wants(n, 1) && !(dw = fvl_empty_like(w))) rc = -1;
  if (rc == 0 && fvl_node_wants(n, 2) && !(db = fvl_empty(FVL_F32, 1, &o64))) rc = -1;
  if (rc == 0) {
    fvl_linear_bwd(fvl_f32(x), B, In, fvl_f32(w), O, fvl_f32(g), dx ? fvl_f32(dx) : NULL,
                   dw ? fvl_f32(dw) : NULL, db ? fvl_f32(db) : NULL);
    if (dx) rc = fvl_node_accum(n, 0, dx);
    if (rc == 0 && dw) rc = fvl_node_accum(n, 1, dw);
    if (rc == 0 && db) rc = fvl_node_accum(n, 2, db);
  }
  fvl_release(g); fvl_release(dx); fvl_release(dw); fvl_release(db);
  return rc;
}

fvl_tensor *fvl_nn_linear(fvl_tensor *x, fvl_tensor *w, fvl_tensor *bias) {
  char a[64], b[64];
  if (need_f32("linear", "input", x) < 0 || need_f32("linear", "weight", w) < 0) return NULL;
  if (bias && need_f32("linear", "bias", bias) < 0) return NULL;
  if (int_sizes("linear", "input", x) < 0 || int_sizes("linear", "weight", w) < 0) return NULL;
  if (x->ndim != 2 || w->ndim != 2 || x->size[1] != w->size[1]) {
    fvl_err("linear: input is %s but the weight %s expects batch x %lld", fvl_shape_str(x, a, sizeof a),
            fvl_shape_str(w, b, sizeof b), (long long)(w->ndim == 2 ? w->size[1] : -1));
    return NULL;
  }
  if (bias && (bias->ndim != 1 || bias->size[0] != w->size[0])) {
    fvl_err("linear: bias is %s, expected %lld values", fvl_shape_str(bias, a, sizeof a),
            (long long)w->size[0]);
    return NULL;
  }
  fvl_tensor *xc = fvl_contiguous(x), *wc = fvl_contiguous(w), *bc = bias ? fvl_contiguous(bias) : NULL;
  int64_t sz[2] = {x->size[0], w->size[0]};
  fvl_tensor *y = (xc && wc && (bc || !bias)) ? fvl_empty(FVL_F32, 2, sz) : NULL;
  if (!y) { fvl_release(xc); fvl_release(wc); fvl_release(bc); return NULL; }
  fvl_linear_fwd(fvl_f32(xc), (int)sz[0], (int)x->size[1], fvl_f32(wc), (int)sz[1],
                 bc ? fvl_f32(bc) : NULL, fvl_f32(y));
  fvl_tensor *in[3] = {x, w, bias};
  fvl_node *nd = fvl_record("linear", bw_linear, y, bias ? 3 : 2, in);
  if (nd) {
    nd->saved[0] = fvl_detach(xc);
    nd->saved[1] = fvl_detach(wc);
  }
  fvl_release(xc); fvl_release(wc); fvl_release(bc);
  return y;
}
