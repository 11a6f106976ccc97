/* test_loss_ops.c — the autograd wrappers of the loss kernels (engine/loss/loss_ops.c):
 *  - the full pipeline x, W → fvl_cosine → fvl_margin_ce → backward against the oracle's
 *    dL/dx and dL/dW (tests/golden/cases_seed1.json, read with a tiny scanner);
 *  - fvl_gradcheck through the pipeline for every kind, per-row s with gradient (SphereFace's
 *    radial term), per-row m with gradient through fvl_hard_mean (NPCFace "bobo" variant),
 *    target_cos, circle_pairwise;
 *  - buffer reuse: after the first step no B×C allocation; ws is not overwritten while a graph
 *    still needs it;
 *  - errors: non-finite loss (error and warning modes), shapes, labels, empty batch. */
#include <check.h>
#include "fvl_check.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core.h"
#include "tensor.h"
#include "autograd.h"
#include "loss/loss_ops.h"

#ifndef FVL_TEST_DIR
#define FVL_TEST_DIR "tests"
#endif

static fvl_tensor *leaf(int64_t r, int64_t c, const float *v) {
  int64_t sz[2] = {r, c};
  fvl_tensor *t = fvl_from_data(FVL_F32, 2, sz, v);
  t->requires_grad = 1;
  return t;
}
static fvl_tensor *labels(int64_t n, const int32_t *v) {
  int64_t sz[1] = {n};
  return fvl_from_data(FVL_I32, 1, sz, v);
}
static void fill(float *p, int n, uint64_t seed, float lo, float hi) {
  for (int i = 0; i < n; i++) {
    seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    p[i] = lo + (hi - lo) * (float)((seed >> 40) * (1.0 / 16777216.0));
  }
}
static fvl_margin_spec mk(float s, fvl_target_kind tk, float m) {
  fvl_margin_spec sp = fvl_margin_spec_default();
  sp.s = s; sp.target = tk; sp.m = m;
  return sp;
}

/* ------------------------------------------------------------- golden: read one case's arrays */
static char *golden;
static const char *case_at(const char *name) {
  if (!golden) {
    FILE *f = fopen(FVL_TEST_DIR "/golden/cases_seed1.json", "rb");
    ck_assert_msg(f != NULL, "cannot open the golden cases");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    golden = malloc((size_t)n + 1);
    ck_assert_int_eq((long)fread(golden, 1, (size_t)n, f), n);
    golden[n] = 0;
    fclose(f);
  }
  char key[128];
  snprintf(key, sizeof key, "\"name\": \"%s\"", name);
  const char *p = strstr(golden, key);
  ck_assert_msg(p != NULL, "case %s not found", name);
  return p;
}
/* numbers of the array that follows "key": after position p (flattened, up to cap) */
static int read_array(const char *p, const char *key, double *out, int cap) {
  char k[64];
  snprintf(k, sizeof k, "\"%s\": ", key);
  const char *q = strstr(p, k);
  ck_assert_msg(q != NULL, "key %s not found", key);
  q += strlen(k);
  int depth = 0, n = 0;
  do {
    if (*q == '[') { depth++; q++; }
    else if (*q == ']') { depth--; q++; }
    else if (*q == ',' || *q == ' ') q++;
    else {
      char *e;
      double v = strtod(q, &e);
      ck_assert_msg(e != q, "bad number in %s", key);
      if (n < cap) out[n] = v;
      n++;
      q = e;
    }
  } while (depth > 0);
  return n;
}
static double read_num(const char *p, const char *key) {
  char k[64];
  snprintf(k, sizeof k, "\"%s\": ", key);
  const char *q = strstr(p, k);
  ck_assert_msg(q != NULL, "key %s not found", key);
  return strtod(q + strlen(k), NULL);
}

/* the whole pipeline on a golden case: loss, dL/dx, dL/dW (rows of sample 0 loosely when
   the target derivative is angular, see tests/golden/README.md) */
static void golden_pipeline(const char *name, const fvl_margin_spec *sp, int loose0) {
  const char *c = case_at(name);
  const char *inp = strstr(c, "\"inputs\": ");
  const char *exp = strstr(c, "\"expected\": ");
  double xd[8 * 16], Wd[11 * 16], yd[8], gx[8 * 16], gW[11 * 16];
  ck_assert_int_eq(read_array(inp, "x", xd, 128), 128);
  ck_assert_int_eq(read_array(inp, "W", Wd, 176), 176);
  ck_assert_int_eq(read_array(inp, "y", yd, 8), 8);
  const char *grad = strstr(exp, "\"grad\": ");
  ck_assert_int_eq(read_array(grad, "x", gx, 128), 128);
  ck_assert_int_eq(read_array(grad, "W", gW, 176), 176);
  double eloss = read_num(exp, "loss");
  float xf[128], Wf[176];
  int32_t yi[8];
  for (int k = 0; k < 128; k++) xf[k] = (float)xd[k];
  for (int k = 0; k < 176; k++) Wf[k] = (float)Wd[k];
  for (int k = 0; k < 8; k++) yi[k] = (int32_t)yd[k];
  fvl_tensor *x = leaf(8, 16, xf), *W = leaf(11, 16, Wf), *y = labels(8, yi);
  fvl_tensor *cs = fvl_cosine(x, W, NULL);
  ck_assert_msg(cs != NULL, "%s", fvl_errmsg());
  int bad = 7;  /* asked to return a non-finite loss: every row is finite, so -1 */
  fvl_tensor *L = fvl_margin_ce_ex(cs, y, sp, NULL, NULL, NULL, name, 1, &bad);
  ck_assert_msg(L != NULL, "%s", fvl_errmsg());
  ck_assert_int_eq(bad, -1);
  double lv = fvl_f32(L)[0];
  ck_assert_msg(fabs(lv - eloss) <= 1e-5 * fabs(eloss) + 1e-6, "%s: loss %.9g vs oracle %.9g", name, lv, eloss);
  ck_assert_int_eq(fvl_backward(L, NULL), 0);
  for (int r = 0; r < 8 + 11; r++) {
    const float *got = r < 8 ? fvl_f32(x->grad) + r * 16 : fvl_f32(W->grad) + (r - 8) * 16;
    const double *want = r < 8 ? gx + r * 16 : gW + (r - 8) * 16;
    int loose = loose0 && (r == 0 || r == 8 + yi[0]);
    double mx = 0;
    for (int d = 0; d < 16; d++) mx = fmax(mx, fabs(want[d]));
    for (int d = 0; d < 16; d++) {
      double tol = loose ? 5e-2 * mx + 1e-6 * sp->s : 1e-4 * fabs(want[d]) + 1e-6 * sp->s + 2e-5 * mx;
      ck_assert_msg(fabs(got[d] - want[d]) <= tol, "%s: d%s[%d,%d] = %.9g, oracle %.9g", name, r < 8 ? "x" : "W",
                    r < 8 ? r + 1 : r - 7, d + 1, (double)got[d], want[d]);
    }
  }
  fvl_release(L); fvl_release(cs); fvl_release(x); fvl_release(W); fvl_release(y);
}

START_TEST(test_golden_pipeline) {
  fvl_margin_spec sp = mk(30, FVL_TK_NONE, 0);
  golden_pipeline("normface_s30", &sp, 0);
  sp = mk(64, FVL_TK_COS, 0.35f);
  golden_pipeline("cosface_s64_m035", &sp, 0);
  sp = mk(64, FVL_TK_ARC, 0.5f);
  golden_pipeline("arcface_mm", &sp, 1);
  sp.fallback = FVL_FB_NONE; sp.detached = 1;
  golden_pipeline("arcface_detached_none", &sp, 0);
  sp = mk(64, FVL_TK_COMBINED, 0); sp.m1 = 1; sp.m2 = 0.3f; sp.m3 = 0.2f; sp.fallback = FVL_FB_NONE;
  golden_pipeline("combined_1_03_02", &sp, 1);
  sp = mk(32, FVL_TK_ARC, 0.5f); sp.fallback = FVL_FB_NONE; sp.easy_margin = 1; sp.neg = FVL_NK_AFFINE;
  sp.hard = FVL_HARD_ARC; sp.hard_m = 0.5f; sp.a = 1.2f; sp.b = 0.2f;
  golden_pipeline("mv_arc_adaptive", &sp, 1);
  sp = mk(256, FVL_TK_CIRCLE, 0); sp.neg = FVL_NK_CIRCLE; sp.circle_m = 0.25f;
  golden_pipeline("circle_class_m025_g256", &sp, 0);
}
END_TEST


/* ------------------------------------------------------------- gradcheck through the pipeline */
typedef struct { fvl_margin_spec sp; fvl_tensor *y; int mode; } pipe_ud;
enum { PLAIN = 0, SROW_NORM = 1, MROW_HARD = 2, TARGET_SUM = 3, CIRCLE_PAIR = 4, LINEAR = 5, GIVEN_ROW = 6,
       GROUP_MAX = 7 };

static fvl_tensor *pipe_fn(void *ud_, int n, fvl_tensor **in) {
  pipe_ud *ud = ud_;
  fvl_tensor *x = in[0], *W = in[1];
  if (ud->mode == CIRCLE_PAIR) {
    fvl_tensor *xh = fvl_normalize(x, 1, 1e-12);
    fvl_tensor *xt = fvl_transpose(xh, 0, 1);
    fvl_tensor *S = fvl_matmul(xh, xt);
    fvl_tensor *L = fvl_circle_pairwise(S, ud->y, 0.25f, 256.0f);
    fvl_release(xh); fvl_release(xt); fvl_release(S);
    return L;
  }
  fvl_tensor *cs = ud->mode == LINEAR ? fvl_linear_logits(x, W, n > 2 ? in[2] : NULL, NULL)
                                      : fvl_cosine(x, W, NULL);
  if (!cs) return NULL;
  fvl_tensor *L = NULL;
  if (ud->mode == PLAIN || ud->mode == LINEAR) {
    L = fvl_margin_ce(cs, ud->y, &ud->sp, NULL, NULL, NULL);
  } else if (ud->mode == SROW_NORM) {  /* SphereFace: s_i = |x_i| with gradient */
    fvl_tensor *nr = fvl_norm(x, 1, 0);
    L = fvl_margin_ce(cs, ud->y, &ud->sp, nr, NULL, NULL);
    fvl_release(nr);
  } else if (ud->mode == MROW_HARD) {  /* NPCFace bobo: m_i = 0.4 + 0.2·mean(1.1c + 0.25) with grad */
    fvl_tensor *h = fvl_hard_mean(cs, ud->y, FVL_HARD_ARC, 0.4f, 1, 1.1f, 0.25f, NULL);
    fvl_tensor *h2 = fvl_binary_scalar(FVL_MUL, h, 0.2, 0);
    fvl_tensor *mi = fvl_binary_scalar(FVL_ADD, h2, 0.4, 0);
    L = fvl_margin_ce(cs, ud->y, &ud->sp, NULL, mi, NULL);
    fvl_release(h); fvl_release(h2); fvl_release(mi);
  } else if (ud->mode == GIVEN_ROW) {  /* target given from c_i (tracked), per-row thresholds, clamp */
    fvl_tensor *tc = fvl_target_cos(cs, ud->y);
    fvl_tensor *t1 = fvl_binary_scalar(FVL_MUL, tc, 0.9, 0), *T = fvl_binary_scalar(FVL_SUB, t1, 0.1, 0);
    fvl_tensor *thr = fvl_contiguous(tc);   /* constant: c_i − 0.3 */
    float thv[16];
    for (int64_t i = 0; i < fvl_numel(thr); i++) thv[i] = fvl_f32(thr)[i] - 0.3f;
    fvl_margin_spec sp = ud->sp;
    sp.thr_row = thv;
    L = fvl_margin_ce(cs, ud->y, &sp, NULL, T, NULL);
    fvl_release(tc); fvl_release(t1); fvl_release(T); fvl_release(thr);
  } else if (ud->mode == GROUP_MAX) {  /* Sub-center: K = 3 sub-centres per class, max, ArcFace */
    fvl_tensor *mx = fvl_group_max(cs, 3, NULL, NULL);
    L = fvl_margin_ce(mx, ud->y, &ud->sp, NULL, NULL, NULL);
    fvl_release(mx);
  } else if (ud->mode == TARGET_SUM) {  /* loss + mean target cosine */
    fvl_tensor *L0 = fvl_margin_ce(cs, ud->y, &ud->sp, NULL, NULL, NULL);
    fvl_tensor *tc = fvl_target_cos(cs, ud->y);
    fvl_tensor *tm = fvl_mean(tc, -1, 0);
    L = fvl_binary(FVL_ADD, L0, tm);
    fvl_release(L0); fvl_release(tc); fvl_release(tm);
  }
  fvl_release(cs);
  (void)n;
  return L;
}

static void gradcheck_pipe(const char *what, fvl_margin_spec sp, int mode) {
  enum { B = 5, D = 6, C = 7 };
  float xv[B * D], wv[C * D];
  fill(xv, B * D, 7, -1, 1);
  fill(wv, C * D, 11, -1, 1);
  int32_t yv[B] = {0, 3, 6, 3, 1};
  pipe_ud ud = {sp, labels(B, yv), mode};
  fvl_tensor *in[2] = {leaf(B, D, xv), leaf(C, D, wv)};
  char rep[1024];
  int ok = fvl_gradcheck(pipe_fn, &ud, 2, in, 1e-3, 2e-3, 2e-2, rep, sizeof rep);
  ck_assert_msg(ok == 1, "%s: gradcheck %d: %s %s", what, ok, rep, ok < 0 ? fvl_errmsg() : "");
  fvl_release(in[0]); fvl_release(in[1]); fvl_release(ud.y);
}

START_TEST(test_gradcheck_pipeline) {
  fvl_margin_spec sp;
  gradcheck_pipe("normface", mk(4, FVL_TK_NONE, 0), PLAIN);
  gradcheck_pipe("cosface", mk(4, FVL_TK_COS, 0.35f), PLAIN);
  gradcheck_pipe("arcface mm", mk(4, FVL_TK_ARC, 0.5f), PLAIN);
  /* (detached mode is straight-through, not the derivative of its forward: checked against the
     oracle in test_golden_pipeline and with frozen constants in test_loss_kernels) */
  sp = mk(4, FVL_TK_ARC, 0.5f); sp.easy_margin = 1;
  gradcheck_pipe("arcface easy", sp, PLAIN);
  sp = mk(4, FVL_TK_COMBINED, 0); sp.m1 = 0.9f; sp.m2 = 0.4f; sp.m3 = 0.15f; sp.fallback = FVL_FB_NONE;
  gradcheck_pipe("combined", sp, PLAIN);
  sp = mk(1, FVL_TK_SPHERE, 0); sp.sphere_m = 4; sp.sphere_lambda = 5;
  gradcheck_pipe("sphereface |x| radial", sp, SROW_NORM);
  sp = mk(4, FVL_TK_COS, 0.35f); sp.easy_margin = 1; sp.neg = FVL_NK_AFFINE; sp.hard = FVL_HARD_COS;
  sp.hard_m = 0.35f; sp.a = 1.2f; sp.b = 0.2f;
  gradcheck_pipe("mv-am", sp, PLAIN);
  sp = mk(4, FVL_TK_ARC, 0.5f); sp.neg = FVL_NK_QUADRATIC; sp.hard = FVL_HARD_ARC; sp.hard_m = 0.5f; sp.t = 0.3f;
  gradcheck_pipe("curricular", sp, PLAIN);
  sp = mk(4, FVL_TK_ARC, 0); sp.easy_margin = 1; sp.neg = FVL_NK_AFFINE; sp.hard = FVL_HARD_ARC;
  sp.hard_m = 0.4f; sp.a = 1.1f; sp.b = 0.25f;
  gradcheck_pipe("npcface bobo (m_i with gradient)", sp, MROW_HARD);
  gradcheck_pipe("target_cos", mk(4, FVL_TK_COS, 0.2f), TARGET_SUM);
  gradcheck_pipe("linear_logits (softmax)", mk(1, FVL_TK_NONE, 0), LINEAR);
  sp = mk(4, FVL_TK_GIVEN, 0); sp.neg = FVL_NK_QUADRATIC; sp.t = 0.3f; sp.hard = FVL_HARD_ROW; sp.clamp_eps = 0.05f;
  gradcheck_pipe("given target, row thresholds, clamp", sp, GIVEN_ROW);
  {  /* group_max: W has C·K = 21 rows, labels in 0..6 */
    enum { B = 5, D = 6, CK = 21 };
    float xv[B * D], wv[CK * D];
    fill(xv, B * D, 7, -1, 1);
    fill(wv, CK * D, 17, -1, 1);
    int32_t yv[B] = {0, 3, 6, 3, 1};
    pipe_ud ud = {mk(4, FVL_TK_ARC, 0.5f), labels(B, yv), GROUP_MAX};
    fvl_tensor *in[2] = {leaf(B, D, xv), leaf(CK, D, wv)};
    char rep[1024];
    int ok = fvl_gradcheck(pipe_fn, &ud, 2, in, 1e-3, 2e-3, 2e-2, rep, sizeof rep);
    ck_assert_msg(ok == 1, "group_max + arcface: %s", rep);
    fvl_release(in[0]); fvl_release(in[1]); fvl_release(ud.y);
  }
  {  /* with a bias */
    enum { B = 5, D = 6, C = 7 };
    float xv[B * D], wv[C * D], bv[C];
    fill(xv, B * D, 7, -1, 1);
    fill(wv, C * D, 11, -1, 1);
    fill(bv, C, 13, -0.5f, 0.5f);
    int32_t yv[B] = {0, 3, 6, 3, 1};
    int64_t sb[1] = {C};
    pipe_ud ud = {mk(1, FVL_TK_NONE, 0), labels(B, yv), LINEAR};
    fvl_tensor *in[3] = {leaf(B, D, xv), leaf(C, D, wv), fvl_from_data(FVL_F32, 1, sb, bv)};
    in[2]->requires_grad = 1;
    char rep[1024];
    int ok = fvl_gradcheck(pipe_fn, &ud, 3, in, 1e-3, 2e-3, 2e-2, rep, sizeof rep);
    ck_assert_msg(ok == 1, "linear_logits with bias: %s", rep);
    for (int k = 0; k < 3; k++) fvl_release(in[k]);
    fvl_release(ud.y);
  }
}
END_TEST

/* Softmax with bias: x, W, b → linear_logits → margin_ce (target none, s = 1) against the oracle */
START_TEST(test_golden_linear_softmax) {
  const char *c = case_at("softmax_bias");
  const char *inp = strstr(c, "\"inputs\": ");
  const char *exp = strstr(c, "\"expected\": ");
  const char *grad = strstr(exp, "\"grad\": ");
  double xd[128], Wd[176], bd[11], yd[8], gx[128], gW[176], gb[11];
  ck_assert_int_eq(read_array(inp, "x", xd, 128), 128);
  ck_assert_int_eq(read_array(inp, "W", Wd, 176), 176);
  ck_assert_int_eq(read_array(inp, "b", bd, 11), 11);
  ck_assert_int_eq(read_array(inp, "y", yd, 8), 8);
  ck_assert_int_eq(read_array(grad, "x", gx, 128), 128);
  ck_assert_int_eq(read_array(grad, "W", gW, 176), 176);
  ck_assert_int_eq(read_array(grad, "b", gb, 11), 11);
  float xf[128], Wf[176], bf[11];
  int32_t yi[8];
  for (int k = 0; k < 128; k++) xf[k] = (float)xd[k];
  for (int k = 0; k < 176; k++) Wf[k] = (float)Wd[k];
  for (int k = 0; k < 11; k++) bf[k] = (float)bd[k];
  for (int k = 0; k < 8; k++) yi[k] = (int32_t)yd[k];
  int64_t sb[1] = {11}, sz[2] = {8, 11};
  fvl_tensor *x = leaf(8, 16, xf), *W = leaf(11, 16, Wf), *b = fvl_from_data(FVL_F32, 1, sb, bf), *y = labels(8, yi);
  b->requires_grad = 1;
  fvl_tensor *ws = fvl_zeros(FVL_F32, 2, sz), *gws = fvl_zeros(FVL_F32, 2, sz);
  fvl_margin_spec sp = fvl_margin_spec_default();
  for (int step = 0; step < 2; step++) {  /* the second step reuses ws and gws */
    fvl_release(x->grad); fvl_release(W->grad); fvl_release(b->grad);
    x->grad = W->grad = b->grad = NULL;
    fvl_tensor *z = fvl_linear_logits(x, W, b, ws);
    ck_assert_msg(z != NULL, "%s", fvl_errmsg());
    ck_assert_ptr_eq(z, ws);
    fvl_tensor *L = fvl_margin_ce_ex(z, y, &sp, NULL, NULL, gws, "softmax", 0, NULL);
    double el = read_num(exp, "loss");
    ck_assert_msg(fabs(fvl_f32(L)[0] - el) <= 1e-5 * fabs(el), "loss %.9g vs %.9g", fvl_f32(L)[0], el);
    ck_assert_int_eq(fvl_backward(L, NULL), 0);
    for (int k = 0; k < 128; k++) ck_assert(fabs(fvl_f32(x->grad)[k] - gx[k]) <= 1e-4 * fabs(gx[k]) + 1e-6);
    for (int k = 0; k < 176; k++) ck_assert(fabs(fvl_f32(W->grad)[k] - gW[k]) <= 1e-4 * fabs(gW[k]) + 1e-6);
    for (int k = 0; k < 11; k++) ck_assert(fabs(fvl_f32(b->grad)[k] - gb[k]) <= 1e-4 * fabs(gb[k]) + 1e-6);
    fvl_release(L);
    fvl_release(z);
  }
  fvl_tensor *all[] = {x, W, b, y, ws, gws};
  for (size_t k = 0; k < sizeof all / sizeof *all; k++) fvl_release(all[k]);
}
END_TEST

/* Circle's α weights are constants (detached), so its gradient is not the derivative of the
   forward: it is checked against the oracle, here through normalize → matmul → circle_pairwise */
START_TEST(test_golden_circle_pairwise) {
  const char *c = case_at("circle_pairwise_m025_g256");
  const char *inp = strstr(c, "\"inputs\": ");
  const char *exp = strstr(c, "\"expected\": ");
  double xd[128], yd[8], gx[128];
  ck_assert_int_eq(read_array(inp, "x", xd, 128), 128);
  ck_assert_int_eq(read_array(inp, "y", yd, 8), 8);
  ck_assert_int_eq(read_array(strstr(exp, "\"grad\": "), "x", gx, 128), 128);
  float xf[128];
  int32_t yi[8];
  for (int k = 0; k < 128; k++) xf[k] = (float)xd[k];
  for (int k = 0; k < 8; k++) yi[k] = (int32_t)yd[k];
  fvl_tensor *x = leaf(8, 16, xf), *y = labels(8, yi);
  pipe_ud ud = {fvl_margin_spec_default(), y, CIRCLE_PAIR};
  fvl_tensor *in[2] = {x, NULL};
  fvl_tensor *L = pipe_fn(&ud, 1, in);
  ck_assert_msg(L != NULL, "%s", fvl_errmsg());
  double el = read_num(exp, "loss");
  ck_assert_msg(fabs(fvl_f32(L)[0] - el) <= 1e-5 * fabs(el), "loss %.9g vs %.9g", fvl_f32(L)[0], el);
  ck_assert_int_eq(fvl_backward(L, NULL), 0);
  double mx = 0;
  for (int k = 0; k < 128; k++) mx = fmax(mx, fabs(gx[k]));
  for (int k = 0; k < 128; k++)
    ck_assert_msg(fabs(fvl_f32(x->grad)[k] - gx[k]) <= 1e-4 * fabs(gx[k]) + 2e-5 * mx, "dx[%d] %.9g vs %.9g", k,
                  fvl_f32(x->grad)[k], gx[k]);
  fvl_release(L); fvl_release(x); fvl_release(y);
}
END_TEST

/* ------------------------------------------------------------- buffers */
START_TEST(test_no_bxc_allocation_after_first_step) {
  enum { B = 64, D = 32, C = 4096 };
  float *xv = malloc(sizeof(float) * B * D), *wv = malloc(sizeof(float) * C * D);
  fill(xv, B * D, 3, -1, 1);
  fill(wv, C * D, 5, -1, 1);
  int32_t yv[B];
  for (int i = 0; i < B; i++) yv[i] = (i * 37) % C;
  fvl_tensor *W = leaf(C, D, wv), *y = labels(B, yv);
  int64_t sz[2] = {B, C};
  fvl_tensor *ws = fvl_zeros(FVL_F32, 2, sz), *gws = fvl_zeros(FVL_F32, 2, sz);
  fvl_margin_spec sp = mk(64, FVL_TK_ARC, 0.5f);
  size_t bxc = sizeof(float) * B * C;
  for (int step = 0; step < 3; step++) {
    fvl_tensor *x = leaf(B, D, xv);
    if (W->grad) fvl_fill_(W->grad, 0);
    size_t live0 = fvl_bytes_live();
    fvl_bytes_peak_reset();
    fvl_tensor *cs = fvl_cosine(x, W, ws);
    ck_assert_msg(cs != NULL, "%s", fvl_errmsg());
    ck_assert_ptr_eq(cs, ws);  /* the workspace is the output */
    fvl_tensor *L = fvl_margin_ce(cs, y, &sp, NULL, NULL, gws);
    ck_assert_int_eq(fvl_backward(L, NULL), 0);
    size_t extra = fvl_bytes_peak() - live0;
    if (step > 0) ck_assert_msg(extra < bxc / 2, "step %d allocated %zu bytes (B×C is %zu)", step + 1, extra, bxc);
    fvl_release(L);
    fvl_release(cs);
    fvl_release(x);
  }
  fvl_release(W); fvl_release(y); fvl_release(ws); fvl_release(gws);
  free(xv); free(wv);
}
END_TEST

START_TEST(test_ws_not_overwritten_while_needed) {
  enum { B = 4, D = 5, C = 6 };
  float xv[B * D], x2[B * D], wv[C * D];
  fill(xv, B * D, 1, -1, 1);
  fill(x2, B * D, 2, -1, 1);
  fill(wv, C * D, 3, -1, 1);
  int32_t yv[B] = {0, 1, 2, 5};
  fvl_margin_spec sp = mk(8, FVL_TK_ARC, 0.5f);
  /* reference gradient without workspaces */
  fvl_tensor *W0 = leaf(C, D, wv), *x0 = leaf(B, D, xv), *y = labels(B, yv);
  fvl_tensor *c0 = fvl_cosine(x0, W0, NULL), *L0 = fvl_margin_ce(c0, y, &sp, NULL, NULL, NULL);
  ck_assert_int_eq(fvl_backward(L0, NULL), 0);
  /* two forwards sharing ws before the first backward: the second must not clobber the first */
  int64_t sz[2] = {B, C};
  fvl_tensor *ws = fvl_zeros(FVL_F32, 2, sz), *gws = fvl_zeros(FVL_F32, 2, sz);
  fvl_tensor *W = leaf(C, D, wv), *xa = leaf(B, D, xv), *xb = leaf(B, D, x2);
  fvl_tensor *ca = fvl_cosine(xa, W, ws), *La = fvl_margin_ce(ca, y, &sp, NULL, NULL, gws);
  fvl_tensor *cb = fvl_cosine(xb, W, ws), *Lb = fvl_margin_ce(cb, y, &sp, NULL, NULL, gws);
  ck_assert_ptr_eq(ca, ws);
  ck_assert_ptr_ne(cb, ws);
  ck_assert_int_eq(fvl_backward(La, NULL), 0);
  for (int k = 0; k < B * D; k++) ck_assert(fabsf(fvl_f32(xa->grad)[k] - fvl_f32(x0->grad)[k]) < 1e-6f);
  ck_assert_int_eq(fvl_backward(Lb, NULL), 0);
  fvl_tensor *all[] = {W0, x0, y, c0, L0, ws, gws, W, xa, xb, ca, La, cb, Lb};
  for (size_t k = 0; k < sizeof all / sizeof *all; k++) fvl_release(all[k]);
}
END_TEST

/* gather_rows: values, gradient added row by row (labels repeat), no C×D temporary */
START_TEST(test_gather_rows) {
  enum { C = 300, D = 40, B = 4 };
  static float wv[C * D];
  fill(wv, C * D, 21, -1, 1);
  int32_t yv[B] = {7, 299, 7, 0};
  fvl_tensor *W = leaf(C, D, wv), *y = labels(B, yv);
  for (int step = 0; step < 2; step++) {
    size_t live0 = fvl_bytes_live();
    fvl_bytes_peak_reset();
    fvl_tensor *R = fvl_gather_rows(W, y);
    ck_assert_msg(R != NULL, "%s", fvl_errmsg());
    for (int i = 0; i < B; i++) ck_assert_float_eq(fvl_f32(R)[i * D + 3], wv[yv[i] * D + 3]);
    fvl_tensor *sq = fvl_unary(FVL_SQUARE, R), *L = fvl_sum(sq, -1, 0);
    ck_assert_int_eq(fvl_backward(L, NULL), 0);
    /* d/dW_j Σ W_{y_i}² = 2·n_j·W_j: class 7 twice, 299 and 0 once, others 0 */
    const float *g = fvl_f32(W->grad);
    float f = step + 1.0f;  /* the gradient accumulates over the two steps */
    ck_assert(fabsf(g[7 * D + 5] - f * 4 * wv[7 * D + 5]) < 1e-5f);
    ck_assert(fabsf(g[299 * D] - f * 2 * wv[299 * D]) < 1e-5f);
    ck_assert_float_eq(g[8 * D + 1], 0.0f);
    if (step == 1) ck_assert_msg(fvl_bytes_peak() - live0 < sizeof(float) * C * D / 2, "C×D temporary");
    fvl_release(L); fvl_release(sq); fvl_release(R);
  }
  int32_t bad[1] = {300};
  fvl_tensor *yb = labels(1, bad);
  ck_assert_ptr_null(fvl_gather_rows(W, yb));
  ck_assert_str_eq(fvl_errmsg(), "gather_rows: labels[0] = 300 is outside 0..299 (0-based)");
  fvl_release(yb); fvl_release(W); fvl_release(y);
}
END_TEST

/* ------------------------------------------------------------- errors */
START_TEST(test_errors) {
  float xv[3 * 4], wv[5 * 4];
  fill(xv, 12, 1, -1, 1);
  fill(wv, 20, 2, -1, 1);
  xv[4] = NAN;  /* row 2 */
  int32_t yv[3] = {0, 1, 4};
  fvl_tensor *x = leaf(3, 4, xv), *W = leaf(5, 4, wv), *y = labels(3, yv);
  fvl_margin_spec sp = mk(64, FVL_TK_ARC, 0.5f);
  fvl_tensor *cs = fvl_cosine(x, W, NULL);
  ck_assert(cs != NULL);
  ck_assert_ptr_null(fvl_margin_ce_ex(cs, y, &sp, NULL, NULL, NULL, "arcface", 0, NULL));
  ck_assert_str_eq(fvl_errmsg(), "arcface: loss is not finite (first bad row 1, 0-based)");
  int bad = 0;
  fvl_tensor *L = fvl_margin_ce_ex(cs, y, &sp, NULL, NULL, NULL, "arcface", 1, &bad);
  ck_assert(L != NULL && bad == 1 && !isfinite(fvl_f32(L)[0]));
  fvl_release(L);
  /* wrong width */
  fvl_tensor *W3 = leaf(5, 3, wv);
  ck_assert_ptr_null(fvl_cosine(x, W3, NULL));
  ck_assert_str_eq(fvl_errmsg(), "cosine: x is 3x4 but W is 5x3 (expected W with 4 columns, like x)");
  /* labels */
  int32_t yb[3] = {0, 5, 1};
  fvl_tensor *ybad = labels(3, yb);
  ck_assert_ptr_null(fvl_margin_ce_ex(cs, ybad, &sp, NULL, NULL, NULL, "arcface", 0, NULL));
  ck_assert_str_eq(fvl_errmsg(), "arcface: labels[1] = 5 is outside 0..4 (0-based)");
  fvl_tensor *y2 = labels(2, yv);
  ck_assert_ptr_null(fvl_margin_ce(cs, y2, &sp, NULL, NULL, NULL));
  ck_assert_msg(strstr(fvl_errmsg(), "there are 3 rows") != NULL, "%s", fvl_errmsg());
  /* empty batch */
  fvl_tensor *x0 = leaf(0, 4, xv);
  ck_assert_ptr_null(fvl_cosine(x0, W, NULL));
  ck_assert_msg(strstr(fvl_errmsg(), "empty batch") != NULL, "%s", fvl_errmsg());
  /* workspace of the wrong shape */
  int64_t sz[2] = {3, 4};
  fvl_tensor *ws = fvl_zeros(FVL_F32, 2, sz);
  ck_assert_ptr_null(fvl_cosine(x, W, ws));
  ck_assert_msg(strstr(fvl_errmsg(), "expected a contiguous float32 3x5 tensor") != NULL, "%s", fvl_errmsg());
  fvl_tensor *all[] = {x, W, y, cs, W3, ybad, y2, x0, ws};
  for (size_t k = 0; k < sizeof all / sizeof *all; k++) fvl_release(all[k]);
}
END_TEST

/* zero rows of x and W: gradient g/eps with no projection, finite everywhere */
START_TEST(test_zero_rows_and_clamp) {
  float xv[2 * 3] = {0, 0, 0, 1, 2, 3}, wv[2 * 3] = {1, 2, 3, 0, 0, 0};
  int32_t yv[2] = {0, 0};
  fvl_tensor *x = leaf(2, 3, xv), *W = leaf(2, 3, wv), *y = labels(2, yv);
  fvl_tensor *cs = fvl_cosine(x, W, NULL);
  /* x row 2 equals W row 1: the cosine rounds to 1 (possibly above before the clamp) */
  ck_assert(fvl_f32(cs)[2] <= 1.0f && fvl_f32(cs)[2] > 0.99999f);
  ck_assert_float_eq(fvl_f32(cs)[0], 0.0f);
  fvl_margin_spec sp = mk(4, FVL_TK_COS, 0.2f);
  fvl_tensor *L = fvl_margin_ce(cs, y, &sp, NULL, NULL, NULL);
  ck_assert_int_eq(fvl_backward(L, NULL), 0);
  for (int k = 0; k < 6; k++) ck_assert(isfinite(fvl_f32(x->grad)[k]) && isfinite(fvl_f32(W->grad)[k]));
  fvl_release(L); fvl_release(cs); fvl_release(x); fvl_release(W); fvl_release(y);
}
END_TEST

/* F.neg_lse against a double-precision sum; group_max values and tie rule */
START_TEST(test_neg_lse_group_max) {
  enum { B = 3, C = 700 };   /* more than one 512-column chunk */
  float cv[B * C];
  fill(cv, B * C, 23, -1, 1);
  int32_t yv[B] = {0, 600, 699};
  fvl_tensor *cs = leaf(B, C, cv), *y = labels(B, yv);
  fvl_tensor *o = fvl_neg_lse(cs, y, 13.0f);
  ck_assert_ptr_nonnull(o);
  for (int i = 0; i < B; i++) {
    double sum = 0;
    for (int j = 0; j < C; j++) if (j != yv[i]) sum += exp(13.0 * cv[i * C + j]);
    ck_assert_msg(fabs(fvl_f32(o)[i] - log(sum)) < 1e-5 * fabs(log(sum)), "row %d: %g vs %g", i,
                  (double)fvl_f32(o)[i], log(sum));
  }
  fvl_release(o);
  float tv[2 * 6] = {0.1f, 0.5f, 0.5f, -1, -2, -3, 0.2f, 0.2f, 0.2f, 0.9f, 0.8f, 0.95f};
  fvl_tensor *t = leaf(2, 6, tv), *g = fvl_group_max(t, 3, NULL, NULL);
  ck_assert_ptr_nonnull(g);
  float want[4] = {0.5f, -1, 0.2f, 0.95f};
  for (int k = 0; k < 4; k++) ck_assert_float_eq(fvl_f32(g)[k], want[k]);
  fvl_tensor *sm = fvl_sum(g, -1, 0);
  ck_assert_int_eq(fvl_backward(sm, NULL), 0);
  float gwant[12] = {0, 1, 0, 1, 0, 0, 1, 0, 0, 0, 0, 1};   /* ties: the first of the group */
  for (int k = 0; k < 12; k++) ck_assert_float_eq(fvl_f32(t->grad)[k], gwant[k]);
  ck_assert_ptr_null(fvl_group_max(t, 4, NULL, NULL));
  ck_assert_msg(strstr(fvl_errmsg(), "divisible by K"), "%s", fvl_errmsg());
  fvl_release(sm); fvl_release(g); fvl_release(t); fvl_release(cs); fvl_release(y);
}
END_TEST

START_TEST(test_center_update_tensor) {
  float cv[2 * 2] = {0, 0, 1, 1}, xv[2 * 2] = {2, 2, 4, 0};
  int32_t yv[2] = {1, 1};
  int64_t sz[2] = {2, 2};
  fvl_tensor *c = fvl_from_data(FVL_F32, 2, sz, cv), *x = fvl_from_data(FVL_F32, 2, sz, xv), *y = labels(2, yv);
  ck_assert_int_eq(fvl_center_update_(c, x, y, 0.5f), 0);
  /* class 2 (0-based 1): n = 2, Δ = ((1−2)+(1−4), (1−2)+(1−0))/3 = (−4/3, 0) → c = (1 + 2/3, 1) */
  ck_assert(fabsf(fvl_f32(c)[2] - (1 + 2.0f / 3)) < 1e-6f && fabsf(fvl_f32(c)[3] - 1) < 1e-6f);
  ck_assert(fvl_f32(c)[0] == 0 && fvl_f32(c)[1] == 0);
  fvl_release(c); fvl_release(x); fvl_release(y);
}
END_TEST

int main(void) {
  Suite *s = suite_create("loss_ops");
  TCase *tc = tcase_create("ops");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, test_golden_pipeline);
  tcase_add_test(tc, test_golden_circle_pairwise);
  tcase_add_test(tc, test_golden_linear_softmax);
  tcase_add_test(tc, test_gradcheck_pipeline);
  tcase_add_test(tc, test_no_bxc_allocation_after_first_step);
  tcase_add_test(tc, test_ws_not_overwritten_while_needed);
  tcase_add_test(tc, test_errors);
  tcase_add_test(tc, test_gather_rows);
  tcase_add_test(tc, test_zero_rows_and_clamp);
  tcase_add_test(tc, test_center_update_tensor);
  tcase_add_test(tc, test_neg_lse_group_max);
  suite_add_tcase(s, tc);
  return fvl_check_run(s);
}
