/* bind_loss.c — the loss primitives as fvl.F.* (engine/loss/loss_ops.h). Thin: check, call, wrap.
 * Labels are 1-based here and converted with fvl_checklabels, or come checked from a head (an
 * fvl.Labels value, bind_labels.c: compared in O(1), not scanned again). Every engine tensor made
 * before a possible error is pushed on the stack first, so the GC owns it. */
#include <stdio.h>
#include <stdint.h>
#include <string.h>
#include "bind.h"
#include "loss/loss_ops.h"
#include "loss/shard.h"
#include "loss/group_max_ws.h"
#include "loss/head_stats.h"

#define T(i) fvl_checktensor(L, i)

/* labels → 0-based int32 tensor, kept on the stack (a value is pushed); checked once, here,
 * against 1..nclasses (nclasses < 0: any class id; 0: an empty class matrix accepts none).
 * A checked value (fvl.Labels, from a head's check) is not scanned again: its row count and
 * bound are compared with the call's and its own tensor is used (read-only). */
static fvl_tensor *labels_arg(lua_State *L, int idx, const char *fn, int64_t n, int64_t nclasses) {
  fvl_tensor *y = fvl_labels_match(L, idx, fn, "labels", n, nclasses, 1);
  if (y) {
    lua_pushvalue(L, idx);
    return y;
  }
  y = fvl_checklabels(L, idx, fn, n, nclasses);
  fvl_pushtensor(L, y);
  return y;
}

/*** fvl.F.cosine(x, W [, ws]) -> B×C tensor
   cos_ij = clamp(x̂_i·ŵ_j, −1, 1), x̂ and ŵ the rows of x (B×D) and W (C×D) divided by
   max(‖·‖, 1e-12); tracked in x and W (W's gradient accumulated straight into W.grad). Entries
   near ±1 are recomputed in double; clamped entries get zero gradient. ws: a contiguous float32
   B×C workspace written in place when no unfinished graph uses it (a head keeps one per batch size).
   Errors: x and W with different column counts, empty shapes, a ws of another shape. */
static int l_cosine(lua_State *L) {
  fvl_tensor *x = T(1), *W = T(2), *ws = fvl_opttensor(L, 3);
  fvl_pushtensor(L, fvl_cosine(x, W, ws));
  return 1;
}

/* the margin spec (fvl.F.margin_ce / margin_logits; docs/losses.md names): one declared table of keys. The enum
 * names are in the order of the engine's enums (loss_ops.h). */
enum { SP_S, SP_TARGET, SP_M, SP_M1, SP_M2, SP_M3, SP_FALLBACK, SP_EASY, SP_GRAD, SP_SPHERE_M, SP_LAMBDA,
       SP_NEG, SP_HARD, SP_HARD_M, SP_A, SP_B, SP_T, SP_CIRCLE_M, SP_GWS, SP_NONFINITE, SP_VALUE,
       SP_THRESHOLD, SP_CLAMP, SP_N };
static const fvl_optdef SPEC_OPTS[SP_N + 1] = {
  [SP_S] = {"s", FVL_OPT_NUMBER_OR_TENSOR, 1.0, FVL_NORANGE, NULL},
  [SP_TARGET] = {"target", FVL_OPT_ENUM, FVL_TK_NONE, FVL_NORANGE, "none|cos|arc|combined|sphere|circle|given"},
  [SP_M] = {"m", FVL_OPT_NUMBER_OR_TENSOR, 0.0, FVL_NORANGE, NULL},
  [SP_M1] = {"m1", FVL_OPT_NUMBER, 1.0, FVL_NORANGE, NULL},
  [SP_M2] = {"m2", FVL_OPT_NUMBER, 0.0, FVL_NORANGE, NULL},
  [SP_M3] = {"m3", FVL_OPT_NUMBER, 0.0, FVL_NORANGE, NULL},
  [SP_FALLBACK] = {"fallback", FVL_OPT_ENUM, 0, FVL_NORANGE, "mm|none|clamp|easy"},
  [SP_EASY] = {"easy_margin", FVL_OPT_BOOLEAN, 0, FVL_NORANGE, NULL},
  [SP_GRAD] = {"grad", FVL_OPT_ENUM, 0, FVL_NORANGE, "exact|detached"},
  [SP_SPHERE_M] = {"sphere_m", FVL_OPT_INTEGER, 4, 1, 16, NULL},
  [SP_LAMBDA] = {"lambda", FVL_OPT_NUMBER, 0.0, FVL_NORANGE, NULL},
  [SP_NEG] = {"negative", FVL_OPT_ENUM, FVL_NK_NONE, FVL_NORANGE, "none|affine|quadratic|circle"},
  [SP_HARD] = {"hard", FVL_OPT_ENUM, FVL_HARD_ALL, FVL_NORANGE, "all|arc|cos|row"},
  [SP_HARD_M] = {"hard_m", FVL_OPT_NUMBER, 0.0, FVL_NORANGE, NULL},   /* default: m */
  [SP_A] = {"a", FVL_OPT_NUMBER, 1.0, FVL_NORANGE, NULL},
  [SP_B] = {"b", FVL_OPT_NUMBER, 0.0, FVL_NORANGE, NULL},
  [SP_T] = {"t", FVL_OPT_NUMBER, 0.0, FVL_NORANGE, NULL},
  [SP_CIRCLE_M] = {"circle_m", FVL_OPT_NUMBER, 0.25, FVL_NORANGE, NULL},
  [SP_GWS] = {"gws", FVL_OPT_TENSOR, 0, FVL_NORANGE, NULL},
  [SP_NONFINITE] = {"nonfinite", FVL_OPT_ENUM, 0, FVL_NORANGE, "error|warn"},
  [SP_VALUE] = {"value", FVL_OPT_TENSOR, 0, FVL_NORANGE, NULL},       /* target "given": T_i */
  [SP_THRESHOLD] = {"threshold", FVL_OPT_TENSOR, 0, FVL_NORANGE, NULL},  /* hard "row" */
  [SP_CLAMP] = {"clamp", FVL_OPT_NUMBER, 0.0, FVL_NORANGE, NULL},
  [SP_N] = FVL_OPT_END};

/* the spec table at idx into o; its tensors (s, m per row, gws) are anchored by the table
 * fvl_readopts pushes, which stays on the stack until the binding returns */
typedef struct { fvl_margin_spec sp; fvl_tensor *s_row, *m_row, *gws, *thr; int warn; } spec_args;
static void parse_spec(lua_State *L, int idx, const char *name, spec_args *o) {
  if (lua_type(L, idx) != LUA_TTABLE)
    fvl_error(L, "%s: spec (argument #%d) must be a table, got %s", name, idx, luaL_typename(L, idx));
  fvl_optval v[SP_N];
  fvl_readopts(L, idx, name, SPEC_OPTS, v);
  fvl_margin_spec *sp = &o->sp;
  *sp = fvl_margin_spec_default();
  o->s_row = v[SP_S].t;
  sp->s = (float)v[SP_S].num;
  o->m_row = v[SP_M].t;
  sp->m = (float)v[SP_M].num;
  sp->target = (fvl_target_kind)v[SP_TARGET].num;
  sp->m1 = (float)v[SP_M1].num;
  sp->m2 = (float)v[SP_M2].num;
  sp->m3 = (float)v[SP_M3].num;
  int fb = (int)v[SP_FALLBACK].num;
  sp->easy_margin = v[SP_EASY].num != 0 || fb == 3;
  sp->fallback = fb == 3 ? FVL_FB_MM : (fvl_fallback)fb;
  sp->detached = v[SP_GRAD].num == 1;
  sp->sphere_m = (int)v[SP_SPHERE_M].num;
  sp->sphere_lambda = (float)v[SP_LAMBDA].num;
  sp->neg = (fvl_neg_kind)v[SP_NEG].num;
  sp->hard = (fvl_hard_kind)v[SP_HARD].num;
  sp->hard_m = v[SP_HARD_M].set ? (float)v[SP_HARD_M].num : sp->m;
  sp->a = (float)v[SP_A].num;
  sp->b = (float)v[SP_B].num;
  sp->t = (float)v[SP_T].num;
  sp->circle_m = (float)v[SP_CIRCLE_M].num;
  o->warn = v[SP_NONFINITE].num == 1;
  o->gws = v[SP_GWS].t;
  sp->clamp_eps = (float)v[SP_CLAMP].num;
  /* target "given": the B target values T_i (tracked) travel in the m_row channel */
  fvl_tensor *value = v[SP_VALUE].t;
  if (sp->target == FVL_TK_GIVEN) {
    if (!value) fvl_error(L, "%s: target 'given' needs value = a tensor of the B target values", name);
    if (o->m_row) fvl_error(L, "%s: target 'given' takes its values from 'value', not 'm'", name);
    o->m_row = value;
  } else if (value) {
    fvl_error(L, "%s: 'value' is only used with target = 'given'", name);
  }
  /* hard "row": constant per-row thresholds; a contiguous float32 copy, kept on the stack */
  o->thr = NULL;
  fvl_tensor *thr = v[SP_THRESHOLD].t;
  if (sp->hard == FVL_HARD_ROW) {
    if (!thr || thr->dtype != FVL_F32)
      fvl_error(L, "%s: hard = 'row' needs threshold = a float32 tensor with one value per row", name);
    fvl_tensor *c = fvl_contiguous(thr);
    fvl_pushtensor(L, c);   /* GC-owned: stays on the stack while the kernel runs */
    o->thr = c;
    sp->thr_row = fvl_f32(c);
  } else if (thr) {
    fvl_error(L, "%s: 'threshold' is only used with hard = 'row'", name);
  }
}

/* the per-row thresholds have one value per row */
static void check_thr(lua_State *L, const char *name, const spec_args *o, int64_t B) {
  if (o->thr && fvl_numel(o->thr) != B) {
    char b[64];
    fvl_error(L, "%s: threshold is %s (expected one value per row: %lld entries)", name,
              fvl_shape_str(o->thr, b, sizeof b), (long long)B);
  }
}

static fvl_tensor *cos_arg(lua_State *L, const char *name) {
  fvl_tensor *cos = T(1);
  if (cos->ndim != 2) {
    char b[64];
    luaL_error(L, "%s: cos is %s (expected a B×C cosine matrix)", name, fvl_shape_str(cos, b, sizeof b));
  }
  return cos;
}

/*** fvl.F.linear_logits(x, W [, b [, ws]]) -> B×C tensor
   z = x·Wᵀ (+ b, a C vector): the logits of the heads on raw features (Softmax, Center); tracked,
   W's gradient accumulated straight into W.grad. ws as in fvl.F.cosine. */
static int l_linear_logits(lua_State *L) {
  fvl_tensor *x = T(1), *W = T(2), *b = fvl_opttensor(L, 3), *ws = fvl_opttensor(L, 4);
  fvl_pushtensor(L, fvl_linear_logits(x, W, b, ws));
  return 1;
}

/* a margin-CE loss from the engine (asked with nonfinite_ok = 1, so bad = the first non-finite
 * row, 0-based, or -1 when all are finite): the user's 1-based message is made here, "error"
 * raises and "warn" warns */
static int push_loss(lua_State *L, fvl_tensor *loss, const char *name, int warn, int bad) {
  if (!loss) return fvl_raise(L);
  if (bad >= 0 && !warn) {
    fvl_release(loss);
    return fvl_error(L, "%s: loss is not finite (first bad row %d)", name, bad + 1);
  }
  if (bad >= 0) fprintf(stderr, "%s: warning: loss is not finite (first bad row %d)\n", name, bad + 1);
  fvl_pushtensor(L, loss);
  return 1;
}

/*** fvl.F.margin_ce(cos, labels, spec [, name]) -> scalar tensor
   The fused margin softmax cross-entropy, batch mean over the rows of cos (B×C): the target logit
   z_iy = s·T(c_iy), hard negatives s·N(c_ij), the other negatives s·c_ij, max-shifted; tracked in
   cos and in s / m when they are tensors that require grad. name: the head named in messages.
   spec (unknown keys are an error): s (number or B tensor, 1), target = "none"|"cos"|"arc"|
   "combined"|"sphere"|"circle"|"given" ("none"), m (number or B tensor, 0), m1 (1), m2, m3 (0),
   fallback = "mm"|"none"|"clamp"|"easy" ("mm", ArcFace past π − m), easy_margin (false),
   grad = "exact"|"detached", sphere_m (4, 1..16), lambda (0), negative = "none"|"affine"|
   "quadratic"|"circle", hard = "all"|"arc"|"cos"|"row" with hard_m (default m) or threshold (a B
   tensor, hard = "row"), value (a B tensor of target values, target = "given", tracked), a (1),
   b (0), t (0), circle_m (0.25), clamp (ε: every cosine first clamped to [−1+ε, 1−ε]), gws (a B×C
   gradient workspace), nonfinite = "error"|"warn" ("error": a non-finite loss raises, naming the
   first bad row). docs/losses.md gives each target's formula.
   labels: 1-based class ids (an int32 tensor or a Lua list) of the B rows; checked once here
   against 1..C ("margin_ce: labels[17] = 12 is outside 1..10"); the checked labels of a head
   (Head:check_input) are taken as they are when their rows and classes match the call. */
static int l_margin_ce(lua_State *L) {
  const char *name = luaL_optstring(L, 4, "margin_ce");
  fvl_tensor *cos = cos_arg(L, name);
  spec_args o;
  parse_spec(L, 3, name, &o);
  fvl_tensor *y = labels_arg(L, 2, name, cos->size[0], cos->size[1]);
  check_thr(L, name, &o, cos->size[0]);
  int bad = -1;  /* the engine returns the loss and the 0-based bad row; the message is made here */
  fvl_tensor *loss = fvl_margin_ce_ex(cos, y, &o.sp, o.s_row, o.m_row, o.gws, name, 1, &bad);
  return push_loss(L, loss, name, o.warn, bad);
}

/*** fvl.F.cosine_margin_ce(x, W, labels, spec [, ws [, name]]) -> scalar tensor
   In one op, what fvl.F.margin_ce(fvl.F.cosine(x, W, ws), labels, spec, name) does: the margin CE's forward
   runs inside the cosine's class blocks (the margin on the rows whose target lies in a block, each
   row's running max and Σexp, combined over the blocks in a fixed order), so no pass over the B×C
   cosines follows the GEMM; the cosines are still written to ws for the backward, and the graph
   and gradients are those of the two calls. Specs whose hard negatives depend on the target's
   cosine (hard = "arc"|"cos" with a negative kind), and every spec while fvl.F.online() is false,
   run the two calls. x: B×D, W: C×D (float32), labels and spec as fvl.F.margin_ce. */
static int l_cosine_margin_ce(lua_State *L) {
  const char *name = luaL_optstring(L, 6, "cosine_margin_ce");
  fvl_tensor *x = T(1), *W = T(2), *ws = fvl_opttensor(L, 5);
  if (x->ndim != 2 || W->ndim != 2) {
    char b1[64], b2[64];
    fvl_error(L, "%s: x is %s and W is %s (expected B×D embeddings and C×D class centres)", name,
              fvl_shape_str(x, b1, sizeof b1), fvl_shape_str(W, b2, sizeof b2));
  }
  spec_args o;
  parse_spec(L, 4, name, &o);
  fvl_tensor *y = labels_arg(L, 3, name, x->size[0], W->size[0]);
  check_thr(L, name, &o, x->size[0]);
  int bad = -1;
  fvl_tensor *loss = fvl_cosine_margin_ce(x, W, y, &o.sp, o.s_row, o.m_row, ws, o.gws, name, 1, &bad);
  return push_loss(L, loss, name, o.warn, bad);
}

/*** fvl.F.online([on]) -> the previous setting
 * The online softmax in the forward's class blocks of fvl.F.cosine_margin_ce (off by default: no
 * faster on the idle machine; FVL_ONLINE=1 in the environment starts it on): false runs the cosine
 * and then margin_ce's own pass over the B×C cosines. The results are the same up to fp32 rounding. */
static int l_online(lua_State *L) {
  int prev = fvl_loss_online();
  if (!lua_isnoneornil(L, 1)) {
    if (!lua_isboolean(L, 1)) return luaL_error(L, "F.online: on must be true or false, got %s", luaL_typename(L, 1));
    fvl_loss_set_online(lua_toboolean(L, 1));
  }
  lua_pushboolean(L, prev);
  return 1;
}

/*** fvl.F.group_sparse([on]) -> the previous setting
 * Sub-center ArcFace's fused backward through fvl.F.group_max_ws without the zeros of its
 * B×(C·K) gradient (on by default; FVL_GROUP_SPARSE=0 in the environment starts it off): only
 * each (row, class)'s arg-max sub-centre takes part in dX and dW, so they cost ArcFace's FMAs
 * instead of K times as many. false runs the dense GEMMs over the B×(C·K) gradient. The results
 * are the same bits either way; on a CPU without AVX-512 the dense path runs. */
static int l_group_sparse(lua_State *L) {
  int prev = fvl_loss_group_sparse();
  if (!lua_isnoneornil(L, 1)) {
    if (!lua_isboolean(L, 1))
      return luaL_error(L, "F.group_sparse: on must be true or false, got %s", luaL_typename(L, 1));
    fvl_loss_set_group_sparse(lua_toboolean(L, 1));
  }
  lua_pushboolean(L, prev);
  return 1;
}

/*** fvl.F.margin_logits(cos, labels, spec [, name]) -> B×C tensor
   The logits fvl.F.margin_ce's softmax sees for the same arguments (untracked): to inspect or
   plot a head's margins. spec as fvl.F.margin_ce. */
static int l_margin_logits(lua_State *L) {
  const char *name = luaL_optstring(L, 4, "margin_logits");
  fvl_tensor *cos = cos_arg(L, name);
  spec_args o;
  parse_spec(L, 3, name, &o);
  fvl_tensor *y = labels_arg(L, 2, name, cos->size[0], cos->size[1]);
  check_thr(L, name, &o, cos->size[0]);
  fvl_pushtensor(L, fvl_margin_logits_t(cos, y, &o.sp, o.s_row, o.m_row, name));
  return 1;
}

/*** fvl.F.hard_mean(cos, labels [, opts]) -> h, count
   Per row, the mean of its hard negatives (h, B values, tracked: the gradient reaches the hard
   entries of cos) and how many there are (count, B, untracked). opts: hard = "all"|"arc"|"cos"
   ("arc": c_ij > cos(θ_iy + hard_m)), hard_m (0.5), values = "raw"|"affine" ("affine": a·c + b),
   a (1), b (0). Call it on cos:detach() for a constant statistic (CurricularFace's t). */
enum { HM_HARD, HM_HARD_M, HM_VALUES, HM_A, HM_B, HM_N };
static const fvl_optdef HARD_MEAN_OPTS[HM_N + 1] = {
  [HM_HARD] = {"hard", FVL_OPT_ENUM, FVL_HARD_ARC, FVL_NORANGE, "all|arc|cos"},
  [HM_HARD_M] = {"hard_m", FVL_OPT_NUMBER, 0.5, FVL_NORANGE, NULL},
  [HM_VALUES] = {"values", FVL_OPT_ENUM, 0, FVL_NORANGE, "raw|affine"},
  [HM_A] = {"a", FVL_OPT_NUMBER, 1.0, FVL_NORANGE, NULL},
  [HM_B] = {"b", FVL_OPT_NUMBER, 0.0, FVL_NORANGE, NULL},
  [HM_N] = FVL_OPT_END};
static int l_hard_mean(lua_State *L) {
  const char *fn = "hard_mean";
  fvl_tensor *cos = T(1);
  if (cos->ndim != 2) return fvl_error(L, "%s: cos must be a B×C cosine matrix", fn);
  lua_settop(L, 3);
  fvl_optval v[HM_N];
  fvl_readopts(L, 3, fn, HARD_MEAN_OPTS, v);
  fvl_tensor *y = labels_arg(L, 2, fn, cos->size[0], cos->size[1]);
  fvl_tensor *count = NULL;
  fvl_tensor *h = fvl_hard_mean(cos, y, (fvl_hard_kind)v[HM_HARD].num, (float)v[HM_HARD_M].num,
                                (int)v[HM_VALUES].num, (float)v[HM_A].num, (float)v[HM_B].num, &count);
  fvl_pushtensor(L, h);
  fvl_pushtensor(L, count);
  return 2;
}

/*** fvl.F.target_cos(cos, labels) -> B tensor
   c_i = cos[i][labels[i]], tracked (the gradient is added into cos's B×C gradient in place). */
static int l_target_cos(lua_State *L) {
  fvl_tensor *cos = T(1);
  if (cos->ndim != 2) return luaL_error(L, "target_cos: cos must be a B×C cosine matrix");
  fvl_tensor *y = labels_arg(L, 2, "target_cos", cos->size[0], cos->size[1]);
  fvl_pushtensor(L, fvl_target_cos(cos, y));
  return 1;
}

/*** fvl.F.neg_lse(cos, labels, s) -> B tensor
   log Σ_{j≠y_i} exp(s·c_ij) per row, max-shifted, untracked (AdaCos's dynamic-scale statistic).
   Errors: fewer than 2 columns. */
static int l_neg_lse(lua_State *L) {
  fvl_tensor *cos = T(1);
  if (cos->ndim != 2) return luaL_error(L, "neg_lse: cos must be a B×C cosine matrix");
  double s = luaL_checknumber(L, 3);
  fvl_tensor *y = labels_arg(L, 2, "neg_lse", cos->size[0], cos->size[1]);
  fvl_pushtensor(L, fvl_neg_lse(cos, y, (float)s));
  return 1;
}

/* cos (argument 1, B×(C·K)) and K (argument 2) of F.group_max / F.group_max_ws, checked */
static fvl_tensor *group_max_args(lua_State *L, const char *fn, int64_t *K) {
  fvl_tensor *cos = T(1);
  lua_Integer k = luaL_checkinteger(L, 2);
  if (cos->ndim != 2) fvl_error(L, "%s: cos must be a B×(C·K) matrix", fn);
  if (k < 1 || k > cos->size[1]) fvl_error(L, "%s: K = %lld (expected 1..%lld)", fn, (long long)k, (long long)cos->size[1]);
  *K = (int64_t)k;
  return cos;
}

/*** fvl.F.group_max(cos, K [, ws [, gws]]) -> B×C tensor
   out[i][j] = max_k cos[i][(j−1)·K + k] from a B×(C·K) matrix, tracked (gradient to the arg-max
   column, ties the first). ws (B×C) is reused as the output and gws (B×(C·K)) as the backward's
   destination when nothing else holds them; fvl.F.group_max_ws keeps less memory in a training
   step. Errors: K < 1 or not dividing cos's columns; workspaces of other shapes. */
static int l_group_max(lua_State *L) {
  int64_t K;
  fvl_tensor *cos = group_max_args(L, "group_max", &K);
  fvl_pushtensor(L, fvl_group_max(cos, K, fvl_opttensor(L, 3), fvl_opttensor(L, 4)));
  return 1;
}

/*** fvl.F.group_max_ws(cos, K, gws [, prev]) -> B×C tensor
 * Max over each group of K columns of cos (B×(C·K), e.g. F.cosine against C·K sub-centres):
 * out[i][j] = max_k cos[i][(j−1)·K + k], tracked; the gradient goes to the arg-max column only
 * (ties: the first). gws (a contiguous float32 B×(C·K) tensor, or nil) is the one workspace: while
 * no unfinished graph uses it, out is a view of its first B·C floats and the backward writes the
 * B×(C·K) gradient into it, so the step keeps no B×C buffer of its own (the arg-max is recomputed
 * from cos). prev: this function's previous output on gws (lets it reuse gws once that graph is
 * finished). The values of out are overwritten by its backward and by the next call on gws.
 * gws may instead be B×C: it then holds the max only (with fvl.F.fused on, a margin_ce taken of
 * out forms its gradient in the cosine's class blocks through the max, so no gradient buffer is
 * needed). Errors: K must divide cos's columns; gws and prev must have the shapes above, and gws
 * must not share cos's storage. */
static int l_group_max_ws(lua_State *L) {
  int64_t K;
  fvl_tensor *cos = group_max_args(L, "group_max_ws", &K);
  if (lua_isnoneornil(L, 3) && !lua_isnoneornil(L, 4))   /* the engine keeps it as an invariant */
    return fvl_error(L, "group_max_ws: prev given without gws (expected the previous output on gws, or nil)");
  fvl_pushtensor(L, fvl_group_max_ws(cos, K, fvl_opttensor(L, 3), fvl_opttensor(L, 4)));
  return 1;
}

/*** fvl.F.gather_rows(W, labels) -> B×D tensor
   The rows W[labels[i]] (labels 1-based, checked against W's rows), tracked: the backward adds
   the B rows straight into W.grad (no C×D temporary). */
static int l_gather_rows(lua_State *L) {
  fvl_tensor *W = T(1);
  if (W->ndim != 2) return luaL_error(L, "gather_rows: W must be a C×D tensor");
  fvl_tensor *y = labels_arg(L, 2, "gather_rows", -1, W->size[0]);
  fvl_pushtensor(L, fvl_gather_rows(W, y));
  return 1;
}

/*** fvl.F.circle_pairwise(S, labels, m, gamma) -> scalar tensor
   The pairwise Circle loss over a B×B similarity matrix S (e.g. x̂·x̂ᵀ), mean over the anchors
   that have a positive and a negative (0 when none); tracked in S. */
static int l_circle_pairwise(lua_State *L) {
  fvl_tensor *S = T(1);
  if (S->ndim != 2) return luaL_error(L, "circle_pairwise: S must be a B×B similarity matrix");
  float m = (float)luaL_checknumber(L, 3), gamma = (float)luaL_checknumber(L, 4);
  fvl_tensor *y = labels_arg(L, 2, "circle_pairwise", S->size[0], -1);
  fvl_pushtensor(L, fvl_circle_pairwise(S, y, m, gamma));
  return 1;
}

/*** fvl.F.center_dist(x, centers, labels) -> scalar tensor
   ½ Σ_i ‖x_i − centers[y_i]‖², tracked in x only (the centres are constants; the differences are
   saved, so the centres may be updated in place before the backward). */
static int l_center_dist(lua_State *L) {
  fvl_tensor *x = T(1), *cen = T(2);
  if (cen->ndim != 2) return luaL_error(L, "center_dist: centers must be a C×D tensor");
  if (x->ndim != 2) return luaL_error(L, "center_dist: x must be a B×D tensor");
  fvl_tensor *y = labels_arg(L, 3, "center_dist", x->size[0], cen->size[0]);
  fvl_pushtensor(L, fvl_center_dist(x, cen, y));
  return 1;
}

/*** fvl.F.disc_dist(x, W, labels, xi) -> scalar tensor
   DiscFace's discrepancy term mean_i ‖x̂_i − ŵ_{y_i} − ξ_i‖ (ξ one D-vector or B×D rows), tracked
   in x, W (rows added straight into W.grad) and xi. */
static int l_disc_dist(lua_State *L) {
  fvl_tensor *x = T(1), *W = T(2), *xi = T(4);
  if (x->ndim != 2) return luaL_error(L, "disc_dist: x must be a B×D tensor");
  if (W->ndim != 2) return luaL_error(L, "disc_dist: W must be a C×D tensor");
  fvl_tensor *y = labels_arg(L, 3, "disc_dist", x->size[0], W->size[0]);
  fvl_pushtensor(L, fvl_disc_dist(x, W, y, xi));
  return 1;
}

/*** fvl.F.center_update(centers, x, labels, alpha) -> centers
   Center loss's α-rule in place on centers (C×D float32 contiguous): for each class j in the
   batch, c_j −= α·Σ_{y_i=j}(c_j − x_i)/(1 + n_j); not tracked. */
static int l_center_update(lua_State *L) {
  fvl_tensor *cen = T(1), *x = T(2);
  float alpha = (float)luaL_checknumber(L, 4);
  if (cen->ndim != 2) return luaL_error(L, "center_update: centers must be a C×D tensor");
  if (x->ndim != 2) return luaL_error(L, "center_update: x must be a B×D tensor");
  fvl_tensor *y = labels_arg(L, 3, "center_update", x->size[0], cen->size[0]);
  if (fvl_center_update_(cen, x, y, alpha) < 0) return fvl_raise(L);
  lua_pushvalue(L, 1);
  return 1;
}

/* fvl._check_labels(labels, fn, n, nclasses) -> checked labels (fvl.Labels): the one label check
 * (fvl_checklabels, messages naming fn) for the Lua layer: Head:check_input (errors name the head)
 * and the reference losses. Every fvl.F function takes the result without scanning it again
 * (bind_labels.c); a checked value given here comes back as it is after the O(1) comparison. */
static int l_check_labels(lua_State *L) {
  const char *fn = luaL_checkstring(L, 2);
  lua_Integer n = luaL_checkinteger(L, 3), C = luaL_checkinteger(L, 4);
  if (fvl_labels_match(L, 1, fn, "labels", n, C, 1)) {
    lua_pushvalue(L, 1);
    return 1;
  }
  fvl_pushlabels(L, fvl_checklabels(L, 1, fn, n, C), fn, C);
  return 1;
}

/* fvl.F._pair_anchors(labels) -> count: the rows with both a positive (another row with the same
 * label) and a negative; Circle's pairwise form warns when there is none. Labels as any binding. */
static int l_pair_anchors(lua_State *L) {
  fvl_tensor *y = labels_arg(L, 1, "circle_pairwise", -1, -1);
  int64_t v = fvl_pair_anchors("circle_pairwise", fvl_i32(y), y->size[0]);
  if (v < 0) return fvl_raise(L);
  lua_pushinteger(L, (lua_Integer)v);
  return 1;
}

/* fvl.F._adacos_stats(lse, cy) -> B_avg, theta_med: AdaCos's dynamic-scale statistics of a batch
 * (engine/loss/head_stats.h) from F.neg_lse's and F.target_cos's B values, in double */
static int l_adacos_stats(lua_State *L) {
  fvl_tensor *lse = fvl_checkf32(L, 1, "adacos", "lse", 0), *cy = fvl_checkf32(L, 2, "adacos", "target cosines", 0);
  int64_t B = fvl_numel(lse);
  if (fvl_numel(cy) != B)
    fvl_error(L, "adacos: %lld target cosines for %lld rows (expected one per row)", (long long)fvl_numel(cy),
              (long long)B);
  double b_avg, th;
  if (fvl_adacos_stats("adacos", fvl_f32(lse), fvl_f32(cy), B, &b_avg, &th) < 0) return fvl_raise(L);
  lua_pushnumber(L, b_avg);
  lua_pushnumber(L, th);
  return 2;
}

/* fvl.F._adaface_rows(norms, h, m, eps, alpha, training, mean, std) -> g_ang, g_add, mean, std:
 * AdaFace's per-row constants (B float32 each) and its EMA state after this batch
 * (engine/loss/head_stats.h), from the B feature norms */
static int l_adaface_rows(lua_State *L) {
  double h = luaL_checknumber(L, 2), m = luaL_checknumber(L, 3), eps = luaL_checknumber(L, 4);
  double alpha = luaL_checknumber(L, 5), mean = luaL_checknumber(L, 7), sd = luaL_checknumber(L, 8);
  int training = lua_toboolean(L, 6);
  fvl_tensor *nrm = fvl_checkf32(L, 1, "adaface", "norms", 0);
  int64_t B = fvl_numel(nrm);
  fvl_tensor *ga = fvl_empty(FVL_F32, 1, &B);
  fvl_pushtensor(L, ga);
  fvl_tensor *gd = fvl_empty(FVL_F32, 1, &B);
  fvl_pushtensor(L, gd);
  if (fvl_adaface_rows("adaface", fvl_f32(nrm), B, h, m, eps, alpha, training, &mean, &sd, fvl_f32(ga), fvl_f32(gd)) < 0)
    return fvl_raise(L);
  lua_pushnumber(L, mean);
  lua_pushnumber(L, sd);
  return 4;
}

/* a 1-D int32 tensor argument as contiguous data (pushed: the stack owns it) */
static fvl_tensor *i32_vector_arg(lua_State *L, int idx, const char *fn, const char *arg) {
  fvl_tensor *t = T(idx);
  char b[64];
  if (t->dtype != FVL_I32 || t->ndim != 1)
    fvl_error(L, "%s: %s must be a 1-D int32 tensor, got %s %s", fn, arg, fvl_dtype_name(t->dtype),
              fvl_shape_str(t, b, sizeof b));
  fvl_tensor *c = fvl_contiguous(t);
  fvl_pushtensor(L, c);
  return c;
}

/* fvl.F._slice_targets(labels, first, n [, positives]) -> rows [, positives]: a sharded head's
 * target rows in its slice of classes first..first+n−1 (engine/loss/head_stats.h): rows[i] the
 * 1-based row of labels[i] in the slice or 0; positives (n entries, when asked) 1 at every row a
 * label targets. labels: the gathered batch's checked labels (or ids, checked as any id). */
static int l_slice_targets(lua_State *L) {
  const char *fn = "slice_targets";
  lua_Integer first = luaL_checkinteger(L, 2), n = luaL_checkinteger(L, 3);
  int want = lua_toboolean(L, 4);
  lua_settop(L, 3);
  fvl_tensor *y = labels_arg(L, 1, fn, -1, -1);
  if (first < 1 || n < 0 || first - 1 > (lua_Integer)INT32_MAX - n)
    fvl_error(L, "%s: the slice of %lld classes from %lld is outside 1..%d", fn, (long long)n, (long long)first,
              (int)INT32_MAX);
  int64_t B = y->size[0], nn = (int64_t)n;
  fvl_tensor *rows = fvl_empty(FVL_I32, 1, &B);
  fvl_pushtensor(L, rows);
  fvl_tensor *pos = NULL;
  if (want) {
    pos = fvl_empty(FVL_I32, 1, &nn);
    fvl_pushtensor(L, pos);
  }
  fvl_slice_targets(fvl_i32(y), B, (int64_t)first - 1, nn, fvl_i32(rows), pos ? fvl_i32(pos) : NULL);
  return want ? 2 : 1;
}

/* fvl.F._sample_cols(rows, sample, K) -> cols, idx: Partial FC's target columns (the position of each
 * row in the sorted sample of 1-based slice rows, 0 when not there) and the sampled classes' K
 * weight rows each (engine/loss/head_stats.h). Errors: a sample that is not sorted and distinct
 * in 1.., K < 1, weight rows past int32. */
static int l_sample_cols(lua_State *L) {
  const char *fn = "sample_cols";
  lua_Integer K = luaL_checkinteger(L, 3);
  if (K < 1 || K > INT32_MAX) fvl_error(L, "%s: K = %lld (expected 1..%d)", fn, (long long)K, (int)INT32_MAX);
  fvl_tensor *rows = i32_vector_arg(L, 1, fn, "rows"), *sample = i32_vector_arg(L, 2, fn, "sample");
  int64_t B = rows->size[0], m = sample->size[0];
  const int32_t *sp = fvl_i32(sample);
  for (int64_t k = 0; k < m; k++)
    if (sp[k] < 1 || (k > 0 && sp[k] <= sp[k - 1]) || ((int64_t)sp[k] - 1) * K + K > INT32_MAX)
      fvl_error(L, "%s: sample[%lld] = %d (expected sorted, distinct rows >= 1 whose %lld weight rows fit int32)", fn,
                (long long)k + 1, (int)sp[k], (long long)K);
  int64_t mk = fvl_checksize_mul(L, fn, m, (int64_t)K);
  fvl_tensor *cols = fvl_empty(FVL_I32, 1, &B);
  fvl_pushtensor(L, cols);
  fvl_tensor *idx = fvl_empty(FVL_I32, 1, &mk);
  fvl_pushtensor(L, idx);
  fvl_sample_cols(fvl_i32(rows), B, sp, m, (int64_t)K, fvl_i32(cols), fvl_i32(idx));
  return 2;
}

/* fvl.F._given_sample(sample, labels, first, n, classes, name) -> rows: Partial FC's given sample
 * (int32 class ids of any shape, sorted, distinct, in 1..classes) checked in one pass
 * (engine/loss/head_stats.h), as the sorted 1-based rows of the slice first..first+n−1 that it
 * samples. labels: the gathered batch's checked labels (against 1..classes), every one must be
 * sampled: the same check, and so the same error, on every rank. Errors name the head (name) with
 * 1-based positions and ids. */
static int l_given_sample(lua_State *L) {
  const char *name = luaL_checkstring(L, 6);   /* a fixed slot: stays valid */
  lua_Integer first = luaL_checkinteger(L, 3), n = luaL_checkinteger(L, 4), classes = luaL_checkinteger(L, 5);
  fvl_tensor *given = T(1);
  if (given->dtype != FVL_I32)
    fvl_error(L, "%s: sample must be an int32 tensor, got %s", name, fvl_dtype_name(given->dtype));
  if (classes < 0 || classes > INT32_MAX || first < 1 || n < 0 || first - 1 > classes || n > classes - (first - 1))
    fvl_error(L, "%s: the slice of %lld classes from %lld is outside 1..%lld (classes at most %d)", name, (long long)n,
              (long long)first, (long long)classes, (int)INT32_MAX);
  lua_settop(L, 6);
  fvl_tensor *y = labels_arg(L, 2, name, -1, (int64_t)classes);
  fvl_tensor *ids = fvl_contiguous(given);
  fvl_pushtensor(L, ids);
  int64_t m = fvl_numel(ids), B = y->size[0];
  fvl_tensor *buf = fvl_empty(FVL_I32, 1, &m);
  fvl_pushtensor(L, buf);
  fvl_sample_fault f;
  int64_t k = fvl_given_sample(name, fvl_i32(ids), m, 1, (int64_t)classes, (int64_t)first - 1, (int64_t)n,
                               fvl_i32(y), B, fvl_i32(buf), &f);
  if (k < 0 && f.what == FVL_SAMPLE_ORDER)
    fvl_error(L, "%s: sample[%lld] = %d (expected sorted, distinct class ids in 1..%lld)", name, (long long)f.at + 1,
              (int)fvl_i32(ids)[f.at], (long long)classes);
  if (k < 0 && f.what == FVL_SAMPLE_MISSES)
    fvl_error(L, "%s: the sample misses class %lld, the label of gathered row %lld (every positive must be sampled)",
              name, (long long)fvl_i32(y)[f.at] + 1, (long long)f.at + 1);
  if (k < 0) return fvl_raise(L);
  fvl_tensor *out = fvl_empty(FVL_I32, 1, &k);
  fvl_pushtensor(L, out);
  if (k > 0) memcpy(fvl_i32(out), fvl_i32(buf), (size_t)k * sizeof(int32_t));
  return 1;
}

/* fvl.F._own_rows(cols, rows, ncols, nrows, by) -> own, oc, orow, w: the gathered rows whose target
 * column this rank holds (cols[i] > 0; rows[i]: its row in the slice), for the sharded primitives
 * that read per-class rows at the targets (engine/loss/head_stats.h). own: their 1-based row numbers
 * (an int32 index tensor); oc, orow: their columns and slice rows as checked labels (fvl.Labels
 * against 1..ncols and 1..nrows, made by `by`: the calls taking them compare, never scan); w = 1.
 * None: the one row {1} and w = 0 (every rank builds the same graph). Errors: entries outside
 * 0..ncols / 0..nrows, a column without a row, bounds outside 1..2^31−1. */
static int l_own_rows(lua_State *L) {
  const char *fn = "own_rows";
  lua_Integer ncols = luaL_checkinteger(L, 3), nrows = luaL_checkinteger(L, 4);
  const char *by = luaL_checkstring(L, 5);
  if (ncols < 1 || ncols > INT32_MAX || nrows < 1 || nrows > INT32_MAX)
    fvl_error(L, "%s: %lld columns and %lld slice rows (expected 1..%d each)", fn, (long long)ncols,
              (long long)nrows, (int)INT32_MAX);
  fvl_tensor *cols = i32_vector_arg(L, 1, fn, "cols"), *rows = i32_vector_arg(L, 2, fn, "rows");
  int64_t B = cols->size[0], k = 0;
  if (rows->size[0] != B || B > INT32_MAX)
    fvl_error(L, "%s: %lld cols and %lld rows (expected one of each per gathered row, at most %d)", fn,
              (long long)B, (long long)rows->size[0], (int)INT32_MAX);
  const int32_t *c = fvl_i32(cols), *r = fvl_i32(rows);
  for (int64_t i = 0; i < B; i++) {
    if (c[i] < 0 || c[i] > ncols || r[i] < 0 || r[i] > nrows || (c[i] > 0 && r[i] == 0))
      fvl_error(L, "%s: cols[%lld] = %d, rows[%lld] = %d (expected 0..%lld and 0..%lld, a row for every column)", fn,
                (long long)i + 1, (int)c[i], (long long)i + 1, (int)r[i], (long long)ncols, (long long)nrows);
    k += c[i] > 0;
  }
  int64_t m = k > 0 ? k : 1;
  fvl_tensor *own = fvl_empty(FVL_I32, 1, &m);
  fvl_pushtensor(L, own);
  fvl_tensor *oc = fvl_empty(FVL_I32, 1, &m);
  fvl_pushtensor(L, oc);
  fvl_tensor *orow = fvl_empty(FVL_I32, 1, &m);
  fvl_pushtensor(L, orow);
  fvl_own_targets(c, r, B, fvl_i32(own), fvl_i32(oc), fvl_i32(orow));
  fvl_pushlabels(L, fvl_retain(oc), by, ncols);
  fvl_pushlabels(L, fvl_retain(orow), by, nrows);
  lua_pushinteger(L, k > 0);
  lua_pushvalue(L, -6);   /* own */
  lua_replace(L, -5);     /* over the orow tensor: own, oc, orow, w on top */
  return 4;
}

/* fvl.F._target_mask(t, ncols, by) -> safe, mask: each gathered row's target column where this rank
 * holds it (t: 1-based columns, 0 = another rank) as checked labels (fvl.Labels against 1..ncols,
 * made by `by`; column 1 where another rank holds the target) and a float32 mask of 1 / 0 (those
 * rows), for the sharded primitives that gather at the targets. Errors: entries outside 0..ncols. */
static int l_target_mask(lua_State *L) {
  const char *fn = "target_mask";
  lua_Integer ncols = luaL_checkinteger(L, 2);
  const char *by = luaL_checkstring(L, 3);
  if (ncols < 1 || ncols > INT32_MAX)
    fvl_error(L, "%s: %lld columns (expected 1..%d)", fn, (long long)ncols, (int)INT32_MAX);
  fvl_tensor *t = i32_vector_arg(L, 1, fn, "cols");
  int64_t B = t->size[0];
  const int32_t *c = fvl_i32(t);
  for (int64_t i = 0; i < B; i++)
    if (c[i] < 0 || c[i] > ncols)
      fvl_error(L, "%s: cols[%lld] = %d (expected 0..%lld)", fn, (long long)i + 1, (int)c[i], (long long)ncols);
  fvl_tensor *safe = fvl_empty(FVL_I32, 1, &B);
  fvl_pushtensor(L, safe);
  fvl_tensor *mask = fvl_empty(FVL_F32, 1, &B);
  fvl_pushtensor(L, mask);
  fvl_target_mask(c, B, fvl_i32(safe), fvl_f32(mask));
  fvl_pushlabels(L, fvl_retain(safe), by, ncols);
  lua_insert(L, -2);   /* safe, mask on top */
  return 2;
}

/* ---------------------------------------------------------------- slices of the classes
 * (sharded heads, Partial FC; engine/loss/shard.h). `cols` is an int32 tensor with each row's
 * target column in this rank's slice, 1-based, or 0 when another rank holds the target. */
static fvl_tensor *slice_cols_arg(lua_State *L, int idx, const char *fn, int64_t n, int64_t ncols) {
  fvl_tensor *t = fvl_totensor(L, idx);
  char b[64];
  if (!t || t->dtype != FVL_I32 || fvl_numel(t) != n)
    luaL_error(L, "%s: cols (argument #%d) must be an int32 tensor of %I slice columns (0 = another rank), got %s",
               fn, idx, (lua_Integer)n, t ? fvl_shape_str(t, b, sizeof b) : luaL_typename(L, idx));
  fvl_tensor *d = fvl_detach(t);
  fvl_tensor *c = d ? fvl_contiguous(d) : NULL;
  fvl_release(d);
  fvl_tensor *o = c ? fvl_empty(FVL_I32, 1, (int64_t[]){n}) : NULL;
  if (!o) { fvl_release(c); fvl_raise(L); }
  for (int64_t i = 0; i < n; i++) {
    int32_t v = fvl_i32(c)[i];
    if (v < 0 || v > ncols) {
      fvl_release(c);
      fvl_release(o);
      fvl_error(L, "%s: cols[%lld] = %d is outside 0..%lld (slice column, 0 = another rank)", fn,
                (long long)i + 1, (int)v, (long long)ncols);
    }
    fvl_i32(o)[i] = v - 1;
  }
  fvl_release(c);
  fvl_pushtensor(L, o);
  return o;
}


/*** fvl.F.margin_ce_shard(cos, cols, spec [, name [, cap]]) -> scalar tensor
   fvl.F.margin_ce of a class-sharded head (fvl.dist): cos holds this rank's columns and cols the
   per-row target column on this rank (0 when another rank holds it); the softmax's max and sum
   are all-reduced over the ranks; the same loss on every rank (tracked). cap > 0: each row's loss
   at most cap, capped rows without gradient. Called by the sharded heads (sharded = true). */
static int l_margin_ce_shard(lua_State *L) {
  const char *name = luaL_optstring(L, 4, "margin_ce");
  double cap = luaL_optnumber(L, 5, 0);
  if (!(cap >= 0)) fvl_error(L, "%s: cap = %g (expected >= 0, 0 = none)", name, cap);
  fvl_tensor *cos = cos_arg(L, name);
  spec_args o;
  parse_spec(L, 3, name, &o);
  check_thr(L, name, &o, cos->size[0]);
  fvl_tensor *y = slice_cols_arg(L, 2, name, cos->size[0], cos->size[1]);
  int bad = -1;
  fvl_tensor *loss = fvl_margin_ce_shard(cos, y, &o.sp, o.s_row, o.m_row, o.gws, name, 1, &bad, (float)cap);
  return push_loss(L, loss, name, o.warn, bad);
}

/* the scores of a chunked op (fvl_chunk_scores): {chunk = rows, scores = "cosine"|"linear",
   groups = K, bias = tensor}; the bias stays anchored on the stack */
enum { CS_CHUNK, CS_SCORES, CS_GROUPS, CS_BIAS, CS_N };
static const fvl_optdef CHUNK_OPTS[CS_N + 1] = {
  [CS_CHUNK] = {"chunk", FVL_OPT_INTEGER, 0, 1, INT32_MAX, NULL},
  [CS_SCORES] = {"scores", FVL_OPT_ENUM, 0, FVL_NORANGE, "cosine|linear"},
  [CS_GROUPS] = {"groups", FVL_OPT_INTEGER, 1, 1, INT32_MAX, NULL},
  [CS_BIAS] = {"bias", FVL_OPT_TENSOR, 0, FVL_NORANGE, NULL},
  [CS_N] = FVL_OPT_END};
static int64_t chunk_src_arg(lua_State *L, int idx, const char *fn, fvl_tensor *x, fvl_tensor *W, fvl_chunk_scores *s) {
  char b1[64], b2[64];
  if (x->ndim != 2 || W->ndim != 2 || x->size[1] != W->size[1])
    fvl_error(L, "%s: x is %s and W %s (expected B×D embeddings and C×D centres)", fn,
              fvl_shape_str(x, b1, sizeof b1), fvl_shape_str(W, b2, sizeof b2));
  luaL_checktype(L, idx, LUA_TTABLE);
  fvl_optval v[CS_N];
  fvl_readopts(L, idx, fn, CHUNK_OPTS, v);
  if (!v[CS_CHUNK].set) fvl_error(L, "%s: scores.chunk is missing (expected the rows per chunk, >= 1)", fn);
  s->chunk = (int64_t)v[CS_CHUNK].num;
  s->linear = (int)v[CS_SCORES].num;
  s->groups = (int64_t)v[CS_GROUPS].num;
  s->bias = v[CS_BIAS].t;
  if (s->linear && s->groups != 1) fvl_error(L, "%s: scores.groups = %lld (linear scores have one row per class)", fn,
                                             (long long)s->groups);
  if (W->size[0] % s->groups)
    fvl_error(L, "%s: W is %s but scores.groups = %lld (expected (classes·groups)×D)", fn,
              fvl_shape_str(W, b2, sizeof b2), (long long)s->groups);
  if (s->bias && (!s->linear || s->bias->dtype != FVL_F32 || s->bias->ndim != 1 || s->bias->size[0] != W->size[0]))
    fvl_error(L, "%s: scores.bias is %s %s (expected %lld float32 values, with scores = \"linear\")", fn,
              fvl_dtype_name(s->bias->dtype), fvl_shape_str(s->bias, b1, sizeof b1), (long long)W->size[0]);
  return W->size[0] / s->groups;
}

/*** fvl.F.chunked_margin_ce_shard(x, W, cols, spec, scores [, name [, cap]]) -> scalar tensor
   fvl.F.margin_ce_shard on the scores of x against this rank's centres W without their B×C
   matrix: scores = {chunk = rows, scores = "cosine" (default) or "linear", groups = K (cosines: the
   max over each class's K rows of W), bias = tensor (linear)} are computed `chunk` rows at a time
   and again in the backward (tracked in x, W, the bias and the spec's per-row s, m). The sharded
   heads use it (shard_chunk). Errors: x and W of mismatched shapes, chunk < 1, groups not
   dividing W's rows, a bias that does not fit, cap < 0. */
static int l_chunked_margin_ce_shard(lua_State *L) {
  const char *name = luaL_optstring(L, 6, "margin_ce");
  double cap = luaL_optnumber(L, 7, 0);
  if (!(cap >= 0)) fvl_error(L, "%s: cap = %g (expected >= 0, 0 = none)", name, cap);
  fvl_tensor *x = T(1), *W = T(2);
  fvl_chunk_scores src;
  int64_t C = chunk_src_arg(L, 5, name, x, W, &src);
  spec_args o;
  parse_spec(L, 4, name, &o);
  check_thr(L, name, &o, x->size[0]);
  fvl_tensor *y = slice_cols_arg(L, 3, name, x->size[0], C);
  int bad = -1;
  fvl_tensor *loss = fvl_chunked_margin_ce_shard(x, W, &src, y, &o.sp, o.s_row, o.m_row, name, 1, &bad, (float)cap);
  return push_loss(L, loss, name, o.warn, bad);
}

/*** fvl.F.chunked_hard_mean_shard(x, W, cols, opts, scores) -> B tensor
   fvl.F.hard_mean_shard on the chunked scores of x against W (scores as
   fvl.F.chunked_margin_ce_shard, opts as fvl.F.hard_mean); tracked in x, W and the bias. */
static int l_chunked_hard_mean_shard(lua_State *L) {
  fvl_tensor *x = T(1), *W = T(2);
  fvl_chunk_scores src;
  int64_t C = chunk_src_arg(L, 5, "hard_mean", x, W, &src);
  fvl_tensor *y = slice_cols_arg(L, 3, "hard_mean", x->size[0], C);
  luaL_checktype(L, 4, LUA_TTABLE);
  fvl_optval v[HM_N];
  fvl_readopts(L, 4, "hard_mean", HARD_MEAN_OPTS, v);
  fvl_tensor *h = fvl_chunked_hard_mean_shard(x, W, &src, y, (fvl_hard_kind)v[HM_HARD].num, (float)v[HM_HARD_M].num,
                                              (int)v[HM_VALUES].num, (float)v[HM_A].num, (float)v[HM_B].num);
  if (!h) return fvl_raise(L);
  fvl_pushtensor(L, h);
  return 1;
}

/*** fvl.F.target_cos_shard(cos, cols) -> B tensor
   fvl.F.target_cos of a sharded head: each row's target cosine from whichever rank holds its
   column (all-reduced; tracked). */
static int l_target_cos_shard(lua_State *L) {
  fvl_tensor *cos = cos_arg(L, "target_cos");
  fvl_tensor *y = slice_cols_arg(L, 2, "target_cos", cos->size[0], cos->size[1]);
  fvl_pushtensor(L, fvl_target_cos_shard(cos, y));
  return 1;
}

/*** fvl.F.hard_mean_shard(cos, cols [, opts]) -> B tensor
   fvl.F.hard_mean of a sharded head: the hard negatives' mean over every rank's columns (opts as
   fvl.F.hard_mean; tracked). */
static int l_hard_mean_shard(lua_State *L) {
  fvl_tensor *cos = cos_arg(L, "hard_mean");
  fvl_tensor *y = slice_cols_arg(L, 2, "hard_mean", cos->size[0], cos->size[1]);
  luaL_checktype(L, 3, LUA_TTABLE);
  fvl_optval v[HM_N];
  fvl_readopts(L, 3, "hard_mean", HARD_MEAN_OPTS, v);
  fvl_pushtensor(L, fvl_hard_mean_shard(cos, y, (fvl_hard_kind)v[HM_HARD].num, (float)v[HM_HARD_M].num,
                                        (int)v[HM_VALUES].num, (float)v[HM_A].num, (float)v[HM_B].num));
  return 1;
}

/*** fvl.F.circle_pairwise_shard(S, labels, first, m, gamma) -> scalar tensor
   The pairwise Circle loss of the whole gathered batch (the same on every rank) from this rank's
   anchors: S is B×N, labels the N gathered labels, first the 1-based gathered row of the first
   anchor; tracked in S. Errors: first outside the rows that fit B anchors. */
static int l_circle_pairwise_shard(lua_State *L) {
  fvl_tensor *S = T(1);
  if (S->ndim != 2) fvl_error(L, "circle_pairwise: S must be a B×N similarity matrix, got %d dims", (int)S->ndim);
  fvl_tensor *y = labels_arg(L, 2, "circle_pairwise", S->size[1], -1);
  lua_Integer first = luaL_checkinteger(L, 3);
  if (first < 1 || first > S->size[1] - S->size[0] + 1)
    fvl_error(L, "circle_pairwise: first = %lld (expected 1..%lld for %lld anchors of %lld rows)", (long long)first,
              (long long)(S->size[1] - S->size[0] + 1), (long long)S->size[0], (long long)S->size[1]);
  float m = (float)luaL_checknumber(L, 4), gamma = (float)luaL_checknumber(L, 5);
  fvl_pushtensor(L, fvl_circle_pairwise_shard(S, y, first - 1, m, gamma));
  return 1;
}

/*** fvl.F.copy_rows(dst, rows, src) -> dst
   In place: dst[rows[k]] = src[k] for each k (rows 1-based, checked against dst's rows); not
   tracked (Partial FC writes the sampled centres back). */
static int l_copy_rows(lua_State *L) {
  fvl_tensor *dst = T(1), *src = T(3);
  fvl_tensor *rows = fvl_checkindex(L, 2, "copy_rows", "rows", dst->ndim >= 1 ? dst->size[0] : 0);
  int rc = fvl_copy_rows_(dst, rows, src);
  fvl_release(rows);
  if (rc) return fvl_raise(L);
  lua_settop(L, 1);
  return 1;
}

/*** fvl.F.pfc_sample(pos_mask, num, seed, counter) -> int32 tensor
   Partial FC's class sample over a slice of classes: every row marked 1 in pos_mask (int32, the
   batch's classes) plus uniformly random other rows, without replacement, up to num rows in all
   (only the positives when they are more), drawn from the counter-based generator at (seed,
   counter); sorted 1-based rows. Errors: num < 0. */
static int l_pfc_sample(lua_State *L) {
  fvl_tensor *pos = T(1);
  lua_Integer num = luaL_checkinteger(L, 2), seed = luaL_checkinteger(L, 3), ctr = luaL_checkinteger(L, 4);
  if (num < 0) fvl_error(L, "pfc_sample: num = %lld (expected >= 0)", (long long)num);
  fvl_tensor *r = fvl_pfc_sample(pos, num, (uint64_t)seed, (uint64_t)ctr);
  if (!r) return fvl_raise(L);
  int32_t *p = fvl_i32(r);
  for (int64_t k = 0; k < r->size[0]; k++) p[k] += 1;
  fvl_pushtensor(L, r);
  return 1;
}

/*** fvl.F.fused([on]) -> the previous setting
 * The fused class-block backward of the normalised heads (on by default): a margin softmax-CE
 * taken of F.cosine's output writes no B×C gradient; the cosine's backward forms each block of
 * it from the saved cosines in cache and runs both GEMMs of the block on it. false: the two-pass
 * path (margin_ce writes the B×C gradient, the cosine backward reads it), for comparisons.
 * "recompute": fused, and the backward recomputes each block's cosines by a GEMM instead of
 * reading them (a measurement, see scripts/bench/heads.lua). */
static int l_fused(lua_State *L) {
  int prev = fvl_loss_fused();
  if (!lua_isnoneornil(L, 1)) {
    int mode;
    if (lua_isboolean(L, 1)) mode = lua_toboolean(L, 1);
    else if (lua_type(L, 1) == LUA_TSTRING && strcmp(lua_tostring(L, 1), "recompute") == 0) mode = 2;
    else
      return lua_type(L, 1) == LUA_TSTRING
                 ? luaL_error(L, "F.fused: on must be true, false or 'recompute', got '%s'", lua_tostring(L, 1))
                 : luaL_error(L, "F.fused: on must be true, false or 'recompute', got %s", luaL_typename(L, 1));
    fvl_loss_set_fused(mode);
  }
  if (prev == 2) lua_pushliteral(L, "recompute");
  else lua_pushboolean(L, prev);
  return 1;
}

int fvl_open_loss(lua_State *L) {
  static const luaL_Reg fns[] = {
    {"cosine", l_cosine}, {"linear_logits", l_linear_logits}, {"margin_ce", l_margin_ce}, {"margin_logits", l_margin_logits}, {"hard_mean", l_hard_mean},
    {"target_cos", l_target_cos}, {"neg_lse", l_neg_lse}, {"group_max", l_group_max}, {"gather_rows", l_gather_rows}, {"circle_pairwise", l_circle_pairwise},
    {"center_dist", l_center_dist}, {"disc_dist", l_disc_dist}, {"center_update", l_center_update},
    {"margin_ce_shard", l_margin_ce_shard}, {"chunked_margin_ce_shard", l_chunked_margin_ce_shard},
    {"chunked_hard_mean_shard", l_chunked_hard_mean_shard}, {"target_cos_shard", l_target_cos_shard},
    {"hard_mean_shard", l_hard_mean_shard}, {"copy_rows", l_copy_rows}, {"circle_pairwise_shard", l_circle_pairwise_shard}, {"pfc_sample", l_pfc_sample},
    {"group_max_ws", l_group_max_ws},
    {"fused", l_fused}, {"cosine_margin_ce", l_cosine_margin_ce}, {"online", l_online}, {"group_sparse", l_group_sparse}, {"_pair_anchors", l_pair_anchors}, {"_adacos_stats", l_adacos_stats},
    {"_slice_targets", l_slice_targets}, {"_sample_cols", l_sample_cols}, {"_own_rows", l_own_rows},
    {"_given_sample", l_given_sample},
    {"_target_mask", l_target_mask}, {"_adaface_rows", l_adaface_rows},
    {NULL, NULL}};
  lua_pushcfunction(L, l_check_labels);
  lua_setfield(L, -2, "_check_labels");
  fvl_open_labels(L);
  fvl_register_opts(L, -1, "margin_spec", SPEC_OPTS);
  fvl_register_opts(L, -1, "hard_mean", HARD_MEAN_OPTS);
  luaL_getsubtable(L, -1, "F");   /* shared with the nn binding */
  luaL_setfuncs(L, fns, 0);
  lua_pop(L, 1);
  return 0;
}
