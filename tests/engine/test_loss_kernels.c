/* test_loss_kernels.c — the raw loss kernels (engine/loss/margin.c):
 *  1. finite differences of an independent double-precision forward (written here from
 *     docs/losses.md, constants frozen as in the references) against the kernels' backward, for every
 *     target kind, negative kind, hard mask, fallback, easy margin, detached mode, per-row s, m;
 *  2. golden values: every oracle case of tests/golden/cases_seed1.json that the kernels cover
 *     (loss, aux.logits, dL/dx and dL/dW after the normalisation chain, state updates).
 * Inputs of the golden cases: cos is computed naively in double from x and W, then rounded. */
#include <check.h>
#include "fvl_check.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ctype.h>
#include "core.h"
#include "loss/margin.h"

#ifndef FVL_TEST_DIR
#define FVL_TEST_DIR "tests"
#endif

/* ======================================================================= minimal JSON */
typedef enum { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ } jtype;
typedef struct jv {
  jtype t;
  double num;
  char *str;
  int n;
  struct jv **items;  /* arrays and object values */
  char **keys;        /* objects */
} jv;

static const char *jp;
static jv *jnew(jtype t) { jv *v = calloc(1, sizeof *v); v->t = t; return v; }
static void jws(void) { while (*jp && isspace((unsigned char)*jp)) jp++; }
static jv *jparse(void);
static char *jstring(void) {
  const char *s = ++jp;
  while (*jp && *jp != '"') { if (*jp == '\\') jp++; jp++; }
  size_t n = (size_t)(jp - s);
  char *out = malloc(n + 1);
  memcpy(out, s, n);
  out[n] = 0;
  jp++;
  return out;
}
static void jpush(jv *v, jv *it, char *key) {
  v->items = realloc(v->items, sizeof(jv *) * (v->n + 1));
  v->items[v->n] = it;
  if (v->t == J_OBJ) { v->keys = realloc(v->keys, sizeof(char *) * (v->n + 1)); v->keys[v->n] = key; }
  v->n++;
}
static jv *jparse(void) {
  jws();
  if (*jp == '{') {
    jv *v = jnew(J_OBJ);
    jp++; jws();
    if (*jp == '}') { jp++; return v; }
    for (;;) {
      jws();
      char *k = jstring();
      jws(); jp++;  /* : */
      jpush(v, jparse(), k);
      jws();
      if (*jp++ == '}') return v;
    }
  }
  if (*jp == '[') {
    jv *v = jnew(J_ARR);
    jp++; jws();
    if (*jp == ']') { jp++; return v; }
    for (;;) {
      jpush(v, jparse(), NULL);
      jws();
      if (*jp++ == ']') return v;
    }
  }
  if (*jp == '"') { jv *v = jnew(J_STR); v->str = jstring(); return v; }
  if (!strncmp(jp, "true", 4)) { jp += 4; jv *v = jnew(J_BOOL); v->num = 1; return v; }
  if (!strncmp(jp, "false", 5)) { jp += 5; return jnew(J_BOOL); }
  if (!strncmp(jp, "null", 4)) { jp += 4; return jnew(J_NULL); }
  if (!strncmp(jp, "NaN", 3)) { jp += 3; jv *v = jnew(J_NUM); v->num = NAN; return v; }
  if (!strncmp(jp, "Infinity", 8)) { jp += 8; jv *v = jnew(J_NUM); v->num = INFINITY; return v; }
  if (!strncmp(jp, "-Infinity", 9)) { jp += 9; jv *v = jnew(J_NUM); v->num = -INFINITY; return v; }
  jv *v = jnew(J_NUM);
  char *end;
  v->num = strtod(jp, &end);
  jp = end;
  return v;
}
static jv *jget(const jv *o, const char *k) {
  if (!o || o->t != J_OBJ) return NULL;
  for (int i = 0; i < o->n; i++) if (!strcmp(o->keys[i], k)) return o->items[i];
  return NULL;
}
static double jnum(const jv *o, const char *k, double def) {
  jv *v = jget(o, k);
  return v && (v->t == J_NUM || v->t == J_BOOL) ? v->num : def;
}
static const char *jstr(const jv *o, const char *k, const char *def) {
  jv *v = jget(o, k);
  return v && v->t == J_STR ? v->str : def;
}
/* flattens a (nested) numeric array into out (returns count) */
static int jflat(const jv *v, double *out, int cap) {
  if (!v) return 0;
  if (v->t == J_NUM || v->t == J_BOOL) { if (cap > 0) out[0] = v->num; return 1; }
  int n = 0;
  if (v->t == J_ARR) for (int i = 0; i < v->n; i++) n += jflat(v->items[i], out + n, cap - n);
  return n;
}
/* the golden files: the oracle's seed-1 cases (B 8, D 16, C 11) and the larger seed-7 ones
   (B 32, D 24, C 40; seed heads only, aux dropped, 10 significant digits) */
static const char *const gfiles[] = {"cases_seed1.json", "cases_seed7_large.json"};
static jv *gdocs[2];
static int gcur;      /* index of the file being checked */
static int gchecked;  /* cases found and checked in it */
static jv *load_golden(void) {
  if (gdocs[gcur]) return gdocs[gcur];
  char path[512];
  snprintf(path, sizeof path, "%s/golden/%s", FVL_TEST_DIR, gfiles[gcur]);
  FILE *f = fopen(path, "rb");
  ck_assert_msg(f != NULL, "cannot open %s", path);
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = malloc((size_t)n + 1);
  ck_assert_int_eq((long)fread(buf, 1, (size_t)n, f), n);
  buf[n] = 0;
  fclose(f);
  jp = buf;
  gdocs[gcur] = jparse();
  free(buf);  /* the tree holds copies */
  return gdocs[gcur];
}
/* the case, or NULL when this file does not have it (the seed-7 file keeps the seed heads) */
static jv *find_case(const char *name) {
  jv *cases = jget(load_golden(), "cases");
  for (int i = 0; i < cases->n; i++)
    if (!strcmp(jstr(cases->items[i], "name", ""), name)) return cases->items[i];
  return NULL;
}

/* ======================================================================= double reference
 * Independent forward of the generic head, written from docs/losses.md. Constants (branches, hard
 * masks, k, α, detached deltas) come from `cf` (the frozen point), values from `ce`. */
static double ref_sin(double c) { return sqrt(fmax(0.0, 1.0 - c * c)); }
static double ref_target(const fvl_margin_spec *sp, double c, double c0, double m) {
  const double PI = M_PI;
  double T = c, T0 = c0;
  switch (sp->target) {
  case FVL_TK_NONE: return c;
  case FVL_TK_COS: {
    int br = sp->easy_margin ? c0 > 0 : 1;
    return br ? c - m : c;
  }
  case FVL_TK_ARC: {
    int br = sp->easy_margin ? c0 > 0
           : sp->fallback == FVL_FB_MM ? c0 > cos(PI - m)
           : sp->fallback == FVL_FB_CLAMP ? acos(c0) + m < PI : 1;
    double alt_c = sp->easy_margin ? c : sp->fallback == FVL_FB_MM ? c - m * sin(m) : -1.0;
    double alt_0 = sp->easy_margin ? c0 : sp->fallback == FVL_FB_MM ? c0 - m * sin(m) : -1.0;
    T = br ? cos(acos(c) + m) : alt_c;
    T0 = br ? cos(acos(c0) + m) : alt_0;
    break;
  }
  case FVL_TK_COMBINED: {
    double m1 = sp->m1, m2 = sp->m2, m3 = sp->m3;
    int br = sp->easy_margin ? c0 > 0
           : sp->fallback == FVL_FB_MM ? c0 > cos(PI - m2)
           : sp->fallback == FVL_FB_CLAMP ? m1 * acos(c0) + m2 < PI : 1;
    double alt_c = sp->easy_margin ? c : sp->fallback == FVL_FB_MM ? c - m2 * sin(m2) : -1.0 - m3;
    double alt_0 = sp->easy_margin ? c0 : sp->fallback == FVL_FB_MM ? c0 - m2 * sin(m2) : -1.0 - m3;
    T = br ? cos(m1 * acos(c) + m2) - m3 : alt_c;
    T0 = br ? cos(m1 * acos(c0) + m2) - m3 : alt_0;
    break;
  }
  case FVL_TK_SPHERE: {
    int mi = sp->sphere_m;
    double lam = sp->sphere_lambda, k = floor(mi * acos(c0) / PI);
    double sg = ((long)k % 2) ? -1.0 : 1.0;
    T = (lam * c + sg * cos(mi * acos(c)) - 2 * k) / (1 + lam);
    T0 = (lam * c0 + sg * cos(mi * acos(c0)) - 2 * k) / (1 + lam);
    break;
  }
  case FVL_TK_CIRCLE: {
    double ap = fmax(0.0, 1 + sp->circle_m - c0);
    return ap * (c - (1 - sp->circle_m));
  }
  case FVL_TK_GIVEN: return m;   /* the target value itself */
  }
  return sp->detached ? c + (T0 - c0) : T;
}
static double ref_thr(fvl_hard_kind h, double hm, double c0) {
  if (h == FVL_HARD_ARC) return c0 * cos(hm) - ref_sin(c0) * sin(hm);
  if (h == FVL_HARD_COS) return c0 - hm;
  return -INFINITY;
}
static double ref_neg(const fvl_margin_spec *sp, double c, double cf, double thr) {
  if (sp->neg == FVL_NK_NONE || !(cf > thr)) return c;
  switch (sp->neg) {
  case FVL_NK_AFFINE: return sp->a * c + sp->b;
  case FVL_NK_QUADRATIC: return c * (sp->t + c);
  case FVL_NK_CIRCLE: return fmax(0.0, cf + sp->circle_m) * (c - sp->circle_m);
  default: return c;
  }
}
/* mean CE over rows; s_row/m_row in double (may be NULL → spec scalars) */
static double ref_loss(const double *ce, const double *cf, const int32_t *y, int B, int C,
                       const fvl_margin_spec *sp, const double *s_row, const double *m_row,
                       double *z_out) {
  double tot = 0;
  double *z = malloc(sizeof(double) * C);
  for (int i = 0; i < B; i++) {
    double s = s_row ? s_row[i] : sp->s, m = m_row ? m_row[i] : sp->m;
    double c0 = cf[i * C + y[i]], thr = ref_thr(sp->hard, sp->hard_m, c0);
    double mx = -INFINITY;
    for (int j = 0; j < C; j++) {
      z[j] = s * (j == y[i] ? ref_target(sp, ce[i * C + j], c0, m)
                            : ref_neg(sp, ce[i * C + j], cf[i * C + j], thr));
      if (z_out) z_out[i * C + j] = z[j];
      if (z[j] > mx) mx = z[j];
    }
    double sum = 0;
    for (int j = 0; j < C; j++) sum += exp(z[j] - mx);
    tot += mx + log(sum) - z[y[i]];
  }
  free(z);
  return tot / B;
}

/* ======================================================================= FD checks */
typedef struct { const char *name; fvl_margin_spec sp; int use_srow, use_mrow; } fd_case;

static void fd_check(const fd_case *fc, const double *tcos, int nt) {
  enum { B = 6, C = 9 };
  float cosf[B * C], loss[B], lse[B], dcos[B * C], ds[B], dm[B], srow[B], mrow[B];
  double cd[B * C], sd[B], md[B];
  int32_t y[B] = {0, 3, 8, 2, 3, 5};
  uint64_t st = 12345;
  for (int k = 0; k < B * C; k++) {
    st = st * 6364136223846793005ULL + 1442695040888963407ULL;
    cosf[k] = (float)(((st >> 11) * (1.0 / 9007199254740992.0)) * 1.8 - 0.9);
  }
  for (int i = 0; i < B; i++) {
    cosf[i * C + y[i]] = (float)tcos[i % nt];
    srow[i] = (float)(fc->sp.s * (0.5 + 0.2 * i));
    mrow[i] = (float)(fc->sp.m * (0.7 + 0.15 * i));
  }
  fvl_margin_spec sp = fc->sp;
  sp.s_row = fc->use_srow ? srow : NULL;
  sp.m_row = fc->use_mrow ? mrow : NULL;
  for (int k = 0; k < B * C; k++) cd[k] = cosf[k];
  for (int i = 0; i < B; i++) { sd[i] = srow[i]; md[i] = mrow[i]; }
  const double *sr = fc->use_srow ? sd : NULL, *mr = fc->use_mrow ? md : NULL;

  ck_assert_msg(fvl_margin_ce_fwd(cosf, C, y, B, C, &sp, loss, lse) == 0, "%s: %s", fc->name, fvl_errmsg());
  double L = 0;
  for (int i = 0; i < B; i++) L += loss[i];
  L /= B;
  double Lref = ref_loss(cd, cd, y, B, C, &sp, sr, mr, NULL);
  ck_assert_msg(fabs(L - Lref) <= 1e-5 * fabs(Lref) + 1e-6 * (1 + fabs(sp.s)),
                "%s: loss %.9g, reference %.9g", fc->name, L, Lref);
  ck_assert_msg(fvl_margin_ce_bwd(cosf, C, y, B, C, &sp, lse, 1.0f / B, dcos, C, ds, dm) == 0,
                "%s: %s", fc->name, fvl_errmsg());
  const double h = 1e-6;
  double gmax = 0;
  for (int k = 0; k < B * C; k++) gmax = fmax(gmax, fabs(dcos[k]));
  for (int k = 0; k < B * C; k++) {
    double e[B * C];
    memcpy(e, cd, sizeof e);
    e[k] = cd[k] + h;
    double lp = ref_loss(e, cd, y, B, C, &sp, sr, mr, NULL);
    e[k] = cd[k] - h;
    double lm = ref_loss(e, cd, y, B, C, &sp, sr, mr, NULL);
    double fd = (lp - lm) / (2 * h);
    ck_assert_msg(fabs(fd - dcos[k]) <= 1e-4 * fabs(fd) + 2e-5 * gmax + 1e-7,
                  "%s: dcos[%d,%d] = %.9g, finite difference %.9g", fc->name, k / C, k % C,
                  (double)dcos[k], fd);
  }
  for (int i = 0; i < B && (fc->use_srow || fc->use_mrow); i++) {
    double v[B];
    if (fc->use_srow) {
      memcpy(v, sd, sizeof v);
      v[i] = sd[i] + h; double lp = ref_loss(cd, cd, y, B, C, &sp, v, mr, NULL);
      v[i] = sd[i] - h; double lm = ref_loss(cd, cd, y, B, C, &sp, v, mr, NULL);
      double fd = (lp - lm) / (2 * h);
      ck_assert_msg(fabs(fd - ds[i]) <= 1e-4 * fabs(fd) + 1e-6, "%s: ds[%d] = %.9g, fd %.9g",
                    fc->name, i, (double)ds[i], fd);
    }
    if (fc->use_mrow) {
      memcpy(v, md, sizeof v);
      v[i] = md[i] + h; double lp = ref_loss(cd, cd, y, B, C, &sp, sr, v, NULL);
      v[i] = md[i] - h; double lm = ref_loss(cd, cd, y, B, C, &sp, sr, v, NULL);
      double fd = (lp - lm) / (2 * h);
      ck_assert_msg(fabs(fd - dm[i]) <= 1e-4 * fabs(fd) + 1e-6 * (1 + fabs(sp.s)),
                    "%s: dm[%d] = %.9g, fd %.9g", fc->name, i, (double)dm[i], fd);
    }
  }
}

static fvl_margin_spec mk(float s, fvl_target_kind tk, float m) {
  fvl_margin_spec sp = fvl_margin_spec_default();
  sp.s = s; sp.target = tk; sp.m = m;
  return sp;
}

START_TEST(test_fd_all_kinds) {
  /* target cosines per row: inside, near θ+m > π (mm / clamp / none regions), negative, ... */
  const double tc[] = {0.7, -0.95, -0.3, 0.2, 0.93, -0.8};
  fd_case cs[64];
  int n = 0;
#define ADD(nm, spec, sr, mr) do { cs[n].name = nm; cs[n].sp = spec; cs[n].use_srow = sr; cs[n].use_mrow = mr; n++; } while (0)
  fvl_margin_spec sp;
  ADD("softmax", mk(1, FVL_TK_NONE, 0), 0, 0);
  ADD("normface s=30", mk(30, FVL_TK_NONE, 0), 0, 0);
  ADD("normface s_row", mk(20, FVL_TK_NONE, 0), 1, 0);
  ADD("cosface", mk(64, FVL_TK_COS, 0.35f), 0, 0);
  sp = mk(30, FVL_TK_COS, 0.35f); sp.easy_margin = 1; ADD("cosface easy", sp, 0, 0);
  ADD("cosface m_row s_row", mk(30, FVL_TK_COS, 0.35f), 1, 1);
  ADD("arcface mm", mk(64, FVL_TK_ARC, 0.5f), 0, 0);
  sp = mk(16, FVL_TK_ARC, 0.5f); sp.fallback = FVL_FB_NONE; ADD("arcface none", sp, 0, 0);
  sp = mk(16, FVL_TK_ARC, 0.5f); sp.fallback = FVL_FB_CLAMP; ADD("arcface clamp", sp, 0, 0);
  sp = mk(16, FVL_TK_ARC, 0.5f); sp.easy_margin = 1; ADD("arcface easy", sp, 0, 0);
  sp = mk(64, FVL_TK_ARC, 0.5f); sp.fallback = FVL_FB_NONE; sp.detached = 1; ADD("arcface detached none", sp, 0, 0);
  sp = mk(16, FVL_TK_ARC, 0.5f); sp.fallback = FVL_FB_CLAMP; sp.detached = 1; ADD("arcface detached clamp", sp, 0, 0);
  ADD("arcface mm m_row s_row", mk(8, FVL_TK_ARC, 0.5f), 1, 1);
  sp = mk(8, FVL_TK_ARC, 0.5f); sp.easy_margin = 1; ADD("arcface easy m_row", sp, 0, 1);
  sp = mk(8, FVL_TK_ARC, 0.5f); sp.fallback = FVL_FB_NONE; ADD("arcface none m_row", sp, 0, 1);
  sp = mk(64, FVL_TK_COMBINED, 0); sp.m1 = 1; sp.m2 = 0.3f; sp.m3 = 0.2f; sp.fallback = FVL_FB_NONE;
  ADD("combined none", sp, 0, 0);
  sp.fallback = FVL_FB_MM; ADD("combined mm", sp, 0, 0);
  sp = mk(8, FVL_TK_COMBINED, 0); sp.m1 = 0.9f; sp.m2 = 0.4f; sp.m3 = 0.15f; sp.fallback = FVL_FB_NONE;
  ADD("combined 0.9 none", sp, 0, 0);
  sp.fallback = FVL_FB_CLAMP; ADD("combined 0.9 clamp", sp, 0, 0);
  sp.easy_margin = 1; ADD("combined 0.9 easy", sp, 0, 0);
  sp.easy_margin = 0; sp.detached = 1; ADD("combined detached", sp, 0, 0);
  sp = mk(1, FVL_TK_SPHERE, 0); sp.sphere_m = 4; sp.sphere_lambda = 5; ADD("sphere m4 lambda5 |x|", sp, 1, 0);
  sp.sphere_lambda = 0; ADD("sphere m4 lambda0", sp, 1, 0);
  sp = mk(30, FVL_TK_SPHERE, 0); sp.sphere_m = 3; sp.sphere_lambda = 2; ADD("sphere m3 s30", sp, 0, 0);
  sp = mk(30, FVL_TK_SPHERE, 0); sp.sphere_m = 4; sp.sphere_lambda = 5; sp.detached = 1; ADD("sphere detached", sp, 0, 0);
  sp = mk(256, FVL_TK_CIRCLE, 0); sp.neg = FVL_NK_CIRCLE; sp.circle_m = 0.25f; ADD("circle g256", sp, 0, 0);
  sp = mk(32, FVL_TK_CIRCLE, 0); sp.neg = FVL_NK_CIRCLE; sp.circle_m = 0.4f; ADD("circle g32 m0.4", sp, 0, 0);
  sp = mk(32, FVL_TK_COS, 0.35f); sp.easy_margin = 1; sp.neg = FVL_NK_AFFINE; sp.hard = FVL_HARD_COS;
  sp.hard_m = 0.35f; sp.a = 1.2f; sp.b = 0.2f; ADD("mv-am adaptive", sp, 0, 0);
  sp.a = 1; ADD("mv-am fixed", sp, 0, 0);
  sp = mk(32, FVL_TK_ARC, 0.5f); sp.fallback = FVL_FB_NONE; sp.easy_margin = 1; sp.neg = FVL_NK_AFFINE;
  sp.hard = FVL_HARD_ARC; sp.hard_m = 0.5f; sp.a = 1.2f; sp.b = 0.2f; ADD("mv-arc adaptive", sp, 0, 0);
  sp = mk(64, FVL_TK_ARC, 0.5f); sp.neg = FVL_NK_QUADRATIC; sp.hard = FVL_HARD_ARC; sp.hard_m = 0.5f;
  sp.t = 0.3f; ADD("curricular t0.3", sp, 0, 0);
  sp.t = -0.2f; sp.s = 8; ADD("curricular t-0.2", sp, 0, 0);
  sp = mk(64, FVL_TK_ARC, 0.4f); sp.easy_margin = 1; sp.neg = FVL_NK_AFFINE; sp.hard = FVL_HARD_ARC;
  sp.hard_m = 0.4f; sp.a = 1.1f; sp.b = 0.2f; ADD("npcface m_row", sp, 0, 1);
  sp = mk(8, FVL_TK_NONE, 0); sp.neg = FVL_NK_AFFINE; sp.hard = FVL_HARD_ALL; sp.a = 0.5f; sp.b = -0.1f;
  ADD("affine on all negatives", sp, 0, 0);
#undef ADD
  for (int k = 0; k < n; k++) fd_check(&cs[k], tc, 6);
}
END_TEST

/* the kernel's logits equal the reference's (the aux view), and fwd/bwd use the same ones */
START_TEST(test_logits_match_reference) {
  enum { B = 4, C = 6 };
  float c[B * C], z[B * C];
  double cd[B * C], zr[B * C];
  int32_t y[B] = {1, 0, 5, 2};
  for (int k = 0; k < B * C; k++) { c[k] = (float)sin(k * 1.7); cd[k] = c[k]; }
  fvl_margin_spec sp = mk(32, FVL_TK_ARC, 0.5f);
  sp.neg = FVL_NK_QUADRATIC; sp.hard = FVL_HARD_ARC; sp.hard_m = 0.5f; sp.t = 0.4f;
  ck_assert_int_eq(fvl_margin_logits(c, C, y, B, C, &sp, z, C), 0);
  ref_loss(cd, cd, y, B, C, &sp, NULL, NULL, zr);
  for (int k = 0; k < B * C; k++) ck_assert_msg(fabs(z[k] - zr[k]) < 1e-4, "z[%d] %g vs %g", k, z[k], zr[k]);
}
END_TEST

/* s = 64 and Circle γ = 256 at the extremes: finite loss and gradient (LSE, stable softplus) */
START_TEST(test_extreme_scales_finite) {
  enum { B = 2, C = 5 };
  float c[B * C] = {-1, 1, 1, 1, 1, 1, -1, -1, -1, -1};
  int32_t y[B] = {0, 0};
  float loss[B], lse[B], g[B * C];
  fvl_margin_spec sp = mk(256, FVL_TK_CIRCLE, 0);
  sp.neg = FVL_NK_CIRCLE; sp.circle_m = 0.25f;
  ck_assert_int_eq(fvl_margin_ce_fwd(c, C, y, B, C, &sp, loss, lse), 0);
  /* row 0: z_y = 256·2.25·(−1.75) = −1008, z_j = 256·1.25·0.75 = 240 → CE = 1248 + ln 4 */
  ck_assert_msg(fabs(loss[0] - (1248.0 + log(4.0))) < 1e-2, "circle extreme loss %g", loss[0]);
  ck_assert(isfinite(loss[1]) && loss[1] >= 0 && loss[1] < 1e-6);
  ck_assert_int_eq(fvl_margin_ce_bwd(c, C, y, B, C, &sp, lse, 0.5f, g, C, NULL, NULL), 0);
  for (int k = 0; k < B * C; k++) ck_assert(isfinite(g[k]));
  sp = mk(64, FVL_TK_ARC, 0.5f);
  sp.fallback = FVL_FB_NONE;
  ck_assert_int_eq(fvl_margin_ce_fwd(c, C, y, B, C, &sp, loss, lse), 0);
  ck_assert(isfinite(loss[0]) && isfinite(loss[1]));
  ck_assert_int_eq(fvl_margin_ce_bwd(c, C, y, B, C, &sp, lse, 0.5f, g, C, NULL, NULL), 0);
  for (int k = 0; k < B * C; k++) ck_assert_msg(isfinite(g[k]), "arc at |c| = 1: g[%d] = %g", k, g[k]);
}
END_TEST

START_TEST(test_errors) {
  float c[6] = {0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f}, l[2], s[2], h[2], cnt[2];
  int32_t y[2] = {0, 3};
  fvl_margin_spec sp = mk(30, FVL_TK_ARC, 0.5f);
  ck_assert_int_eq(fvl_margin_ce_fwd(c, 3, y, 2, 3, &sp, l, s), -1);
  ck_assert_str_eq(fvl_errmsg(), "fvl_margin_ce_fwd: y[1] = 3 is outside 0..2 (0-based labels)");
  y[1] = 2;
  ck_assert_int_eq(fvl_margin_ce_fwd(c, 3, y, 0, 3, &sp, l, s), -1);
  ck_assert_str_eq(fvl_errmsg(), "fvl_margin_ce_fwd: empty batch (B = 0, expected >= 1 rows)");
  sp.target = FVL_TK_COMBINED; sp.m1 = 0.9f;
  ck_assert_int_eq(fvl_margin_ce_fwd(c, 3, y, 2, 3, &sp, l, s), -1);
  ck_assert_msg(strstr(fvl_errmsg(), "needs m1 = 1") != NULL, "%s", fvl_errmsg());
  sp = mk(NAN, FVL_TK_COS, 0.3f);
  ck_assert_int_eq(fvl_margin_ce_fwd(c, 3, y, 2, 3, &sp, l, s), -1);
  ck_assert_msg(strstr(fvl_errmsg(), "s = nan") != NULL, "%s", fvl_errmsg());
  sp = mk(1, FVL_TK_SPHERE, 0); sp.sphere_m = 0;
  ck_assert_int_eq(fvl_margin_ce_fwd(c, 3, y, 2, 3, &sp, l, s), -1);
  ck_assert_msg(strstr(fvl_errmsg(), "sphere_m = 0") != NULL, "%s", fvl_errmsg());
  sp = mk(1, FVL_TK_COMBINED, 0); sp.m_row = s;
  ck_assert_int_eq(fvl_margin_ce_fwd(c, 3, y, 2, 3, &sp, l, s), -1);
  ck_assert_int_eq(fvl_margin_ce_fwd(c, 2, y, 2, 3, NULL, l, s), -1);
  ck_assert_int_eq(fvl_hard_mean_fwd(c, 3, y, 2, 3, (fvl_hard_kind)7, 0.5f, 0, 1, 0, h, cnt), -1);
  ck_assert_int_eq(fvl_center_update(c, 2, 3, c, y, 2, 0.5f), -1);  /* y[1] = 2 with C = 2 */
  ck_assert_str_eq(fvl_errmsg(), "fvl_center_update: y[1] = 2 is outside 0..1 (0-based labels)");
}
END_TEST

/* hard-negative mean: forward by hand, backward by finite differences of the value part */
START_TEST(test_hard_mean) {
  enum { B = 3, C = 5 };
  float c[B * C] = {0.9f, 0.5f, 0.95f, 0.1f, 0.6f,
                    0.2f, 0.1f, 0.0f, -0.5f, 0.3f,
                    -0.9f, 0.8f, 0.7f, 0.6f, 0.5f};
  int32_t y[B] = {0, 1, 1};
  float h[B], cnt[B], g[B * C], gh[B] = {1, 2, 3};
  /* row 0: c_y = 0.9, cos(θ+0.5) = 0.9·cos .5 − sin θ·sin .5 = 0.5808 → hard: 0.95, 0.6 */
  ck_assert_int_eq(fvl_hard_mean_fwd(c, C, y, B, C, FVL_HARD_ARC, 0.5f, 0, 1, 0, h, cnt), 0);
  ck_assert_float_eq(cnt[0], 2);
  ck_assert(fabs(h[0] - 0.775) < 1e-6);
  /* row 1: c_y = 0.1, thr = 0.1·0.8776 − 0.995·0.4794 = −0.389 → 0.2, 0.0, 0.3 hard */
  ck_assert_float_eq(cnt[1], 3);
  ck_assert(fabs(h[1] - 0.5 / 3) < 1e-6);
  ck_assert_int_eq(fvl_hard_mean_fwd(c, C, y, B, C, FVL_HARD_COS, 0.2f, 1, 1.1f, 0.2f, h, cnt), 0);
  /* row 2: c_y = 0.8, thr 0.6: only 0.7 (0.6 is not > 0.6) */
  ck_assert_float_eq(cnt[2], 1);
  ck_assert(fabs(h[2] - (1.1 * 0.7 + 0.2)) < 1e-6);
  ck_assert_int_eq(fvl_hard_mean_bwd(c, C, y, B, C, FVL_HARD_COS, 0.2f, 1, 1.1f, cnt, gh, g, C, 0), 0);
  ck_assert(fabs(g[2 * C + 2] - 3 * 1.1) < 1e-6);
  ck_assert_float_eq(g[2 * C + 3], 0);
  ck_assert_float_eq(g[2 * C + 1], 0);
  /* row without hard negatives: h = 0, count 0 */
  ck_assert_int_eq(fvl_hard_mean_fwd(c, C, y, B, C, FVL_HARD_COS, -5.0f, 0, 1, 0, h, cnt), 0);
  ck_assert_float_eq(cnt[0], 0);
  ck_assert_float_eq(h[0], 0);
}
END_TEST

/* ======================================================================= golden cases */
enum { GB = 32, GD = 24, GC = 40, GMAX = 3 * GC };
typedef struct {
  int B, D, C;
  double x[GB * GD], W[GMAX * GD], xn[GB], wn[GMAX], xh[GB * GD], wh[GMAX * GD];
  double raw[GB * GMAX];  /* x̂·ŵ before clamping */
  int32_t y[GB];
  jv *cs, *hp, *ex;
} gcase;

static int load_case(gcase *g, const char *name) {
  memset(g, 0, sizeof *g);
  g->cs = find_case(name);
  if (!g->cs) return 0;
  gchecked++;
  g->hp = jget(g->cs, "hparams");
  g->ex = jget(g->cs, "expected");
  jv *in = jget(g->cs, "inputs");
  double yy[GB];
  g->B = jflat(jget(in, "y"), yy, GB);
  for (int i = 0; i < g->B; i++) g->y[i] = (int32_t)yy[i];
  int nx = jflat(jget(in, "x"), g->x, GB * GD);
  g->D = nx / g->B;
  g->C = jflat(jget(in, "W"), g->W, GMAX * GD) / g->D;
  int B = g->B, D = g->D, C = g->C;
  for (int i = 0; i < B; i++) {
    double n = 0; for (int d = 0; d < D; d++) n += g->x[i * D + d] * g->x[i * D + d];
    g->xn[i] = sqrt(n);
    for (int d = 0; d < D; d++) g->xh[i * D + d] = g->x[i * D + d] / fmax(g->xn[i], 1e-12);
  }
  for (int j = 0; j < C; j++) {
    double n = 0; for (int d = 0; d < D; d++) n += g->W[j * D + d] * g->W[j * D + d];
    g->wn[j] = sqrt(n);
    for (int d = 0; d < D; d++) g->wh[j * D + d] = g->W[j * D + d] / fmax(g->wn[j], 1e-12);
  }
  for (int i = 0; i < B; i++)
    for (int j = 0; j < C; j++) {
      double s = 0; for (int d = 0; d < D; d++) s += g->xh[i * D + d] * g->wh[j * D + d];
      g->raw[i * C + j] = s;
    }
  return 1;
}
static void cos_of(const gcase *g, float *c) {
  for (int k = 0; k < g->B * g->C; k++) c[k] = (float)fmin(1.0, fmax(-1.0, g->raw[k]));
}
static void expect_close(const char *what, const char *name, const double *got, const double *want,
                         int n, double rtol, double atol) {
  for (int k = 0; k < n; k++)
    ck_assert_msg(fabs(got[k] - want[k]) <= atol + rtol * fabs(want[k]),
                  "%s %s[%d]: got %.9g, expected %.9g", name, what, k, got[k], want[k]);
}
static double mean_loss(const float *l, int B) { double s = 0; for (int i = 0; i < B; i++) s += l[i]; return s / B; }

/* dL/dx, dL/dW from G = dL/dcos through clamp and the two normalisations (docs/losses.md §0) */
static void chain_grads(const gcase *g, const float *G, double *dx, double *dW) {
  int B = g->B, D = g->D, C = g->C;
  memset(dx, 0, sizeof(double) * B * D);
  memset(dW, 0, sizeof(double) * C * D);
  for (int i = 0; i < B; i++) {
    double gx[GD] = {0};
    for (int j = 0; j < C; j++) {
      double gij = (g->raw[i * C + j] >= -1 && g->raw[i * C + j] <= 1) ? G[i * C + j] : 0;
      for (int d = 0; d < D; d++) { gx[d] += gij * g->wh[j * D + d]; dW[j * D + d] += gij * g->xh[i * D + d]; }
    }
    double dot = 0; for (int d = 0; d < D; d++) dot += gx[d] * g->xh[i * D + d];
    for (int d = 0; d < D; d++) dx[i * D + d] = (gx[d] - dot * g->xh[i * D + d]) / g->xn[i];
  }
  for (int j = 0; j < C; j++) {
    double dot = 0; for (int d = 0; d < D; d++) dot += dW[j * D + d] * g->wh[j * D + d];
    for (int d = 0; d < D; d++) dW[j * D + d] = (dW[j * D + d] - dot * g->wh[j * D + d]) / g->wn[j];
  }
}

/* compares dx, dW with the oracle: rtol 1e-4, atol 1e-6·s; rows touched by sample 0 (θ ≈ 1e-3,
   where fp32 cos is quantised to ~6% in 1−c) only to 5% of their largest entry when loose0 */
static void compare_grads(const gcase *g, const char *name, const double *dx, const double *dW,
                          double s, int loose0) {
  int B = g->B, D = g->D, C = g->C;
  double ex[GB * GD], eW[GMAX * GD];
  jv *gr = jget(g->ex, "grad");
  ck_assert_int_eq(jflat(jget(gr, "x"), ex, GB * GD), B * D);
  ck_assert_int_eq(jflat(jget(gr, "W"), eW, GMAX * GD), C * D);
  for (int r = 0; r < B + C; r++) {
    const double *got = r < B ? dx + r * D : dW + (r - B) * D;
    const double *want = r < B ? ex + r * D : eW + (r - B) * D;
    int loose = loose0 && (r == 0 || r == B + g->y[0]);
    double mx = 0; for (int d = 0; d < D; d++) mx = fmax(mx, fabs(want[d]));
    for (int d = 0; d < D; d++) {
      double tol = loose ? 5e-2 * mx + 1e-6 * s : 1e-4 * fabs(want[d]) + 1e-6 * s + 1e-5 * mx;
      ck_assert_msg(fabs(got[d] - want[d]) <= tol, "%s %s: d%s[%d,%d] got %.9g, expected %.9g", gfiles[gcur], name,
                    r < B ? "x" : "W", r < B ? r : r - B, d, got[d], want[d]);
    }
  }
}

/* runs a spec on the case's cosines: loss (+extra), logits, and, when grads, dx/dW
   (extra_dx: added to dx before the comparison, e.g. radial or centre terms) */
static void run_spec(const gcase *g, const char *name, fvl_margin_spec *sp, double extra_loss,
                     int grads, int loose0, const float *srow_for_radial) {
  int B = g->B, C = g->C;
  float c[GB * GMAX], loss[GB], lse[GB], z[GB * GMAX], G[GB * GMAX], ds[GB];
  cos_of(g, c);
  ck_assert_msg(fvl_margin_ce_fwd(c, C, g->y, B, C, sp, loss, lse) == 0, "%s: %s", name, fvl_errmsg());
  double L = mean_loss(loss, B) + extra_loss, EL = jnum(g->ex, "loss", NAN);
  ck_assert_msg(fabs(L - EL) <= 1e-5 * fabs(EL) + 1e-7, "%s %s: loss %.9g, oracle %.9g", gfiles[gcur], name, L, EL);
  double el[GB * GMAX], zd[GB * GMAX];
  int nl = jflat(jget(jget(g->ex, "aux"), "logits"), el, GB * GMAX);
  if (nl) {  /* the seed-7 file has no aux */
    ck_assert_int_eq(nl, B * C);
    ck_assert_int_eq(fvl_margin_logits(c, C, g->y, B, C, sp, z, C), 0);
    for (int k = 0; k < B * C; k++) zd[k] = z[k];
    expect_close("logits", name, zd, el, B * C, 1e-4, 2e-5 * fmax(1.0, fabs(sp->s)));
  }
  if (!grads) return;
  ck_assert_int_eq(fvl_margin_ce_bwd(c, C, g->y, B, C, sp, lse, 1.0f / B, G, C, ds, NULL), 0);
  double dx[GB * GD], dW[GMAX * GD];
  chain_grads(g, G, dx, dW);
  if (srow_for_radial)  /* s_i = |x_i|: dL/dx_i += (dL/ds_i)·x̂_i */
    for (int i = 0; i < B; i++)
      for (int d = 0; d < g->D; d++) dx[i * g->D + d] += ds[i] * g->xh[i * g->D + d];
  compare_grads(g, name, dx, dW, sp->s_row ? 30 : sp->s, loose0);
}

static void golden_plain_and_scaled(void) {
  gcase g;
  /* softmax with bias: the "cosines" are the raw logits x·Wᵀ + b (target none, s = 1) */
  if (load_case(&g, "softmax_bias")) {
    double b[GC], el[GB * GC];
    jflat(jget(jget(g.cs, "inputs"), "b"), b, GC);
    float z[GB * GC], loss[GB], lse[GB], G[GB * GC];
    for (int i = 0; i < g.B; i++)
      for (int j = 0; j < g.C; j++) {
        double s = b[j]; for (int d = 0; d < g.D; d++) s += g.x[i * g.D + d] * g.W[j * g.D + d];
        z[i * g.C + j] = (float)s;
      }
    fvl_margin_spec sp = fvl_margin_spec_default();
    ck_assert_int_eq(fvl_margin_ce_fwd(z, g.C, g.y, g.B, g.C, &sp, loss, lse), 0);
    double EL = jnum(g.ex, "loss", NAN), L = mean_loss(loss, g.B);
    ck_assert_msg(fabs(L - EL) <= 1e-5 * EL, "softmax_bias loss %.9g vs %.9g", L, EL);
    if (jflat(jget(jget(g.ex, "aux"), "logits"), el, GB * GC))
      for (int k = 0; k < g.B * g.C; k++) ck_assert(fabs(z[k] - el[k]) < 1e-5 * (1 + fabs(el[k])));
    ck_assert_int_eq(fvl_margin_ce_bwd(z, g.C, g.y, g.B, g.C, &sp, lse, 1.0f / g.B, G, g.C, NULL, NULL), 0);
    double eb[GC], db[GC] = {0};
    jflat(jget(jget(g.ex, "grad"), "b"), eb, GC);
    for (int i = 0; i < g.B; i++) for (int j = 0; j < g.C; j++) db[j] += G[i * g.C + j];
    expect_close("db", "softmax_bias", db, eb, g.C, 1e-4, 1e-7);
  }
  fvl_margin_spec sp = mk(30, FVL_TK_NONE, 0);
  if (load_case(&g, "normface_s30")) run_spec(&g, "normface_s30", &sp, 0, 1, 0, NULL);
  static const char *const cf[] = {"cosface_s64_m035", "am_softmax_s30_m035", "cosface_soft_s8"};
  for (int k = 0; k < 3; k++) {
    if (!load_case(&g, cf[k])) continue;
    sp = mk((float)jnum(g.hp, "s", 64), FVL_TK_COS, (float)jnum(g.hp, "m", 0.35));
    run_spec(&g, cf[k], &sp, 0, 1, 0, NULL);
  }
  static const char *const ad[] = {"adacos_fixed", "adacos_dynamic"};
  for (int k = 0; k < 2; k++) {
    if (!load_case(&g, ad[k])) continue;
    sp = mk((float)jnum(jget(g.ex, "aux"), "s", NAN), FVL_TK_NONE, 0);
    run_spec(&g, ad[k], &sp, 0, 1, 0, NULL);
  }
}

START_TEST(test_golden_plain_and_scaled) {
  for (gcur = 0; gcur < 2; gcur++) {
    gchecked = 0;
    golden_plain_and_scaled();
    ck_assert_msg(gchecked > 0, "no golden case of %s found in %s", "golden_plain_and_scaled", gfiles[gcur]);
  }
  gcur = 0;
}
END_TEST

static void golden_sphereface(void) {
  static const char *const nm[] = {"sphereface_orig_iter0", "sphereface_orig_iter5000", "sphereface_norm_s30"};
  for (int k = 0; k < 3; k++) {
    gcase g;
    if (!load_case(&g, nm[k])) continue;
    int it = (int)jnum(jget(g.cs, "state_in"), "iter", 0) + 1;
    double lam = fmax(5.0, 1000.0 * pow(1.0 + 0.12 * it, -1.0));
    ck_assert_int_eq((int)jnum(jget(g.ex, "state_out"), "iter", -1), it);
    if (jget(g.ex, "aux")) ck_assert(fabs(lam - jnum(jget(g.ex, "aux"), "lambda", NAN)) < 1e-9 * lam);
    fvl_margin_spec sp = mk(1, FVL_TK_SPHERE, 0);
    sp.sphere_m = 4;
    sp.sphere_lambda = (float)lam;
    float srow[GB];
    int by_norm = strcmp(jstr(g.hp, "feature_scale", "norm"), "norm") == 0;
    if (by_norm) {
      for (int i = 0; i < g.B; i++) srow[i] = (float)g.xn[i];
      sp.s_row = srow;
    } else {
      sp.s = (float)jnum(g.hp, "s", 30);
    }
    run_spec(&g, nm[k], &sp, 0, 1, 0, by_norm ? srow : NULL);
  }
}

START_TEST(test_golden_sphereface) {
  for (gcur = 0; gcur < 2; gcur++) {
    gchecked = 0;
    golden_sphereface();
    ck_assert_msg(gchecked > 0, "no golden case of %s found in %s", "golden_sphereface", gfiles[gcur]);
  }
  gcur = 0;
}
END_TEST

static void golden_arcface_combined(void) {
  gcase g;
  static const char *const arc[] = {"arcface_mm", "arcface_none", "arcface_clamp", "arcface_easy",
                                    "arcface_detached_none", "arcface_soft_s8_mm"};
  for (int k = 0; k < 6; k++) {
    if (!load_case(&g, arc[k])) continue;
    fvl_margin_spec sp = mk((float)jnum(g.hp, "s", 64), FVL_TK_ARC, (float)jnum(g.hp, "m", 0.5));
    const char *fb = jstr(g.hp, "fallback", "mm");
    sp.fallback = !strcmp(fb, "none") ? FVL_FB_NONE : !strcmp(fb, "clamp") ? FVL_FB_CLAMP : FVL_FB_MM;
    sp.easy_margin = (int)jnum(g.hp, "easy_margin", 0);
    sp.detached = !strcmp(jstr(g.hp, "grad", "exact"), "detached");
    run_spec(&g, arc[k], &sp, 0, 1, !sp.detached, NULL);
  }
  static const char *const cmb[] = {"combined_1_03_02", "combined_mm_cavaface", "combined_09_04_015_soft",
                                    "combined_mm_cavaface_s2shift"};
  for (int k = 0; k < 4; k++) {
    if (!load_case(&g, cmb[k])) continue;
    fvl_margin_spec sp = mk((float)jnum(g.hp, "s", 64), FVL_TK_COMBINED, 0);
    sp.m1 = (float)jnum(g.hp, "m1", 1); sp.m2 = (float)jnum(g.hp, "m2", 0.3); sp.m3 = (float)jnum(g.hp, "m3", 0.2);
    const char *fb = jstr(g.hp, "fallback", "none");
    sp.fallback = !strcmp(fb, "none") ? FVL_FB_NONE : !strcmp(fb, "clamp") ? FVL_FB_CLAMP : FVL_FB_MM;
    run_spec(&g, cmb[k], &sp, 0, 1, 1, NULL);
  }
  /* ElasticFace: per-row margins (the oracle's m_i), arc without fallback and cos */
  static const char *const el[] = {"elastic_arc", "elastic_cos_plus", "elastic_arc_plus_official_order"};
  for (int k = 0; k < 3; k++) {
    if (!load_case(&g, el[k])) continue;
    double mi[GB];
    float mr[GB];
    ck_assert_int_eq(jflat(jget(jget(g.ex, "aux"), "m_i"), mi, GB), g.B);
    for (int i = 0; i < g.B; i++) mr[i] = (float)mi[i];
    int arc_kind = !strcmp(jstr(g.hp, "kind", "arc"), "arc");
    fvl_margin_spec sp = mk(64, arc_kind ? FVL_TK_ARC : FVL_TK_COS, 0);
    sp.fallback = FVL_FB_NONE;
    sp.m_row = mr;
    run_spec(&g, el[k], &sp, 0, 1, arc_kind, NULL);
  }
}

START_TEST(test_golden_arcface_combined) {
  for (gcur = 0; gcur < 2; gcur++) {
    gchecked = 0;
    golden_arcface_combined();
    ck_assert_msg(gchecked > 0, "no golden case of %s found in %s", "golden_arcface_combined", gfiles[gcur]);
  }
  gcur = 0;
}
END_TEST

static void golden_mv_curricular_circle(void) {
  gcase g;
  static const char *const mv[] = {"mv_am_adaptive", "mv_am_fixed", "mv_arc_adaptive", "mv_arc_fixed",
                                   "mv_am_adaptive_noeasy_soft"};
  for (int k = 0; k < 5; k++) {
    if (!load_case(&g, mv[k])) continue;
    int am = !strcmp(jstr(g.hp, "kind", "am"), "am");
    float m = (float)jnum(g.hp, "m", 0.35), t = (float)jnum(g.hp, "t", 0.2);
    fvl_margin_spec sp = mk((float)jnum(g.hp, "s", 32), am ? FVL_TK_COS : FVL_TK_ARC, m);
    sp.fallback = FVL_FB_NONE;
    sp.easy_margin = (int)jnum(g.hp, "easy_margin", 1);
    sp.neg = FVL_NK_AFFINE;
    sp.hard = am ? FVL_HARD_COS : FVL_HARD_ARC;
    sp.hard_m = m;
    int adaptive = (int)jnum(g.hp, "adaptive", 1);
    sp.a = adaptive ? t + 1 : 1;
    sp.b = t;
    run_spec(&g, mv[k], &sp, 0, 1, !am, NULL);
  }
  static const char *const cu[] = {"curricularface_t0", "curricularface_t07_soft"};
  for (int k = 0; k < 2; k++) {
    if (!load_case(&g, cu[k])) continue;
    float c[GB * GC] = {0};
    cos_of(&g, c);
    double mc = 0;
    for (int i = 0; i < g.B; i++) mc += c[i * g.C + g.y[i]];
    double t = 0.01 * mc / g.B + 0.99 * jnum(jget(g.cs, "state_in"), "t", 0);
    ck_assert(fabs(t - jnum(jget(g.ex, "state_out"), "t", NAN)) < 1e-7);
    fvl_margin_spec sp = mk((float)jnum(g.hp, "s", 64), FVL_TK_ARC, 0.5f);
    sp.neg = FVL_NK_QUADRATIC; sp.hard = FVL_HARD_ARC; sp.hard_m = 0.5f; sp.t = (float)t;
    run_spec(&g, cu[k], &sp, 0, 1, 1, NULL);
  }
  static const char *const ci[] = {"circle_class_m025_g256", "circle_class_m025_g32"};
  for (int k = 0; k < 2; k++) {
    if (!load_case(&g, ci[k])) continue;
    fvl_margin_spec sp = mk((float)jnum(g.hp, "gamma", 256), FVL_TK_CIRCLE, 0);
    sp.neg = FVL_NK_CIRCLE; sp.circle_m = (float)jnum(g.hp, "m", 0.25);
    run_spec(&g, ci[k], &sp, 0, 1, 0, NULL);
  }
  /* pairwise circle: S = X̂X̂ᵀ; dL/dX̂ = (dS + dSᵀ)X̂ */
  static const char *const cp[] = {"circle_pairwise_m025_g256", "circle_pairwise_m04_g80"};
  for (int k = 0; k < 2; k++) {
    if (!load_case(&g, cp[k])) continue;
    int B = g.B, D = g.D;
    float S[GB * GB], rl[GB], rz[GB], va[GB], dS[GB * GB];
    for (int i = 0; i < B; i++)
      for (int j = 0; j < B; j++) {
        double s = 0; for (int d = 0; d < D; d++) s += g.xh[i * D + d] * g.xh[j * D + d];
        S[i * B + j] = (float)s;
      }
    float m = (float)jnum(g.hp, "m", 0.25), gam = (float)jnum(g.hp, "gamma", 256);
    int nv = 0;
    ck_assert_int_eq(fvl_circle_pairwise_fwd(S, B, g.y, B, m, gam, rl, rz, va, &nv), 0);
    double ev[GB];
    if (jflat(jget(jget(g.ex, "aux"), "valid"), ev, GB))
      for (int i = 0; i < B; i++) ck_assert_float_eq(va[i], ev[i]);
    double L = 0; for (int i = 0; i < B; i++) L += rl[i];
    L /= nv;
    double EL = jnum(g.ex, "loss", NAN);
    ck_assert_msg(fabs(L - EL) <= 1e-5 * fabs(EL), "%s loss %.9g vs %.9g", cp[k], L, EL);
    ck_assert_int_eq(fvl_circle_pairwise_bwd(S, B, g.y, B, m, gam, rz, va, 1.0f / nv, dS, B), 0);
    double dx[GB * GD], ex[GB * GD];
    for (int i = 0; i < B; i++) {
      double gx[GD] = {0};
      for (int j = 0; j < B; j++)
        for (int d = 0; d < D; d++) gx[d] += ((double)dS[i * B + j] + dS[j * B + i]) * g.xh[j * D + d];
      double dot = 0; for (int d = 0; d < D; d++) dot += gx[d] * g.xh[i * D + d];
      for (int d = 0; d < D; d++) dx[i * D + d] = (gx[d] - dot * g.xh[i * D + d]) / g.xn[i];
    }
    jflat(jget(jget(g.ex, "grad"), "x"), ex, GB * GD);
    double mx = 0; for (int q = 0; q < B * D; q++) mx = fmax(mx, fabs(ex[q]));
    expect_close("dx", cp[k], dx, ex, B * D, 1e-4, 1e-5 * mx + 1e-6 * gam);
  }
}

START_TEST(test_golden_mv_curricular_circle) {
  for (gcur = 0; gcur < 2; gcur++) {
    gchecked = 0;
    golden_mv_curricular_circle();
    ck_assert_msg(gchecked > 0, "no golden case of %s found in %s", "golden_mv_curricular_circle", gfiles[gcur]);
  }
  gcur = 0;
}
END_TEST

/* NPCFace: hard-negative mean, per-row margin m0 + m1·h_i, the bobo variant's gradient through h_i */
static void golden_npcface(void) {
  gcase g;
  static const char *const np[] = {"npcface_raw", "npcface_reweighted_soft", "npcface_bobo_variant_soft"};
  for (int k = 0; k < 3; k++) {
    if (!load_case(&g, np[k])) continue;
    int B = g.B, C = g.C;
    float m0 = (float)jnum(g.hp, "m0", 0.4), m1 = (float)jnum(g.hp, "m1", 0.2);
    float t = (float)jnum(g.hp, "t", 1.1), al = (float)jnum(g.hp, "alpha", 0.2);
    int rew = !strcmp(jstr(g.hp, "hardness_from", "raw"), "reweighted");
    int hgrad = (int)jnum(g.hp, "hardness_grad", 0);
    float c[GB * GC], h[GB], cnt[GB], mr[GB], loss[GB], lse[GB], G[GB * GC], dm[GB], gh[GB];
    cos_of(&g, c);
    ck_assert_int_eq(fvl_hard_mean_fwd(c, C, g.y, B, C, FVL_HARD_ARC, m0, rew, t, al, h, cnt), 0);
    double emi[GB], ehard[GB * GC];
    int has_aux = jflat(jget(jget(g.ex, "aux"), "m_i"), emi, GB) > 0;
    jflat(jget(jget(g.ex, "aux"), "hard"), ehard, GB * GC);
    for (int i = 0; i < B; i++) {
      mr[i] = m0 + m1 * h[i];
      if (!has_aux) continue;
      ck_assert_msg(fabs(mr[i] - emi[i]) < 1e-6, "%s m_i[%d] %g vs %g", np[k], i, mr[i], emi[i]);
      double n = 0; for (int j = 0; j < C; j++) n += ehard[i * C + j];
      ck_assert_float_eq(cnt[i], n);
    }
    fvl_margin_spec sp = mk((float)jnum(g.hp, "s", 64), FVL_TK_ARC, 0);
    sp.m_row = mr; sp.easy_margin = 1;
    sp.neg = FVL_NK_AFFINE; sp.hard = FVL_HARD_ARC; sp.hard_m = m0; sp.a = t; sp.b = al;
    run_spec(&g, np[k], &sp, 0, !hgrad, 1, NULL);
    if (!hgrad) continue;
    /* bobo variant: the margin carries gradient into the hard negatives through h_i */
    ck_assert_int_eq(fvl_margin_ce_fwd(c, C, g.y, B, C, &sp, loss, lse), 0);
    ck_assert_int_eq(fvl_margin_ce_bwd(c, C, g.y, B, C, &sp, lse, 1.0f / B, G, C, NULL, dm), 0);
    for (int i = 0; i < B; i++) gh[i] = dm[i] * m1;
    ck_assert_int_eq(fvl_hard_mean_bwd(c, C, g.y, B, C, FVL_HARD_ARC, m0, rew, t, cnt, gh, G, C, 1), 0);
    double dx[GB * GD], dW[GC * GD];
    chain_grads(&g, G, dx, dW);
    compare_grads(&g, np[k], dx, dW, sp.s, 1);
  }
}

/* MagFace forward: per-row margin m(a) from |x|; loss adds λ_g·mean g(a) */
static void golden_magface(void) {
  gcase g;
  static const char *const mg[] = {"magface", "magface_mm_soft"};
  for (int k = 0; k < 2; k++) {
    if (!load_case(&g, mg[k])) continue;
    float mr[GB];
    double gsum = 0, em[GB];
    jflat(jget(jget(g.ex, "aux"), "margin"), em, GB);
    for (int i = 0; i < g.B; i++) {
      double a = fmin(110.0, fmax(10.0, g.xn[i]));
      mr[i] = (float)((0.8 - 0.45) / 100.0 * (a - 10.0) + 0.45);
      ck_assert(fabs(mr[i] - em[i]) < 1e-6);
      gsum += a / (110.0 * 110.0) + 1.0 / a;
    }
    fvl_margin_spec sp = mk((float)jnum(g.hp, "s", 64), FVL_TK_ARC, 0);
    sp.m_row = mr;
    sp.easy_margin = (int)jnum(g.hp, "easy_margin", 1);
    run_spec(&g, mg[k], &sp, jnum(g.hp, "lambda_g", 35) * gsum / g.B, 0, 1, NULL);
  }
}

/* softmax + centre loss: CE on x·Wᵀ + b, centre term, α-rule update equals state_out */
static void golden_softmax_center(void) {
  gcase g;
  static const char *const ce[] = {"softmax_center", "softmax_center_lam1"};
  for (int k = 0; k < 2; k++) {
    if (!load_case(&g, ce[k])) continue;
    int B = g.B, C = g.C, D = g.D;
    double b[GC] = {0}, cen[GC * GD], cen_out[GC * GD];
    jflat(jget(jget(g.cs, "inputs"), "b"), b, GC);
    ck_assert_int_eq(jflat(jget(jget(g.cs, "state_in"), "centers"), cen, GC * GD), C * D);
    jflat(jget(jget(g.ex, "state_out"), "centers"), cen_out, GC * GD);
    float z[GB * GC], loss[GB], lse[GB], cf[GC * GD], xf[GB * GD];
    for (int i = 0; i < B; i++)
      for (int j = 0; j < C; j++) {
        double s = b[j]; for (int d = 0; d < D; d++) s += g.x[i * D + d] * g.W[j * D + d];
        z[i * C + j] = (float)s;
      }
    double lc = 0, lam = jnum(g.hp, "lam", 0.003);
    for (int i = 0; i < B; i++)
      for (int d = 0; d < D; d++) { double e = g.x[i * D + d] - cen[g.y[i] * D + d]; lc += 0.5 * e * e / B; }
    fvl_margin_spec sp = fvl_margin_spec_default();
    ck_assert_int_eq(fvl_margin_ce_fwd(z, C, g.y, B, C, &sp, loss, lse), 0);
    double L = mean_loss(loss, B) + lam * lc, EL = jnum(g.ex, "loss", NAN);
    ck_assert_msg(fabs(L - EL) <= 1e-5 * fabs(EL), "%s loss %.9g vs %.9g", ce[k], L, EL);
    for (int q = 0; q < C * D; q++) cf[q] = (float)cen[q];
    for (int q = 0; q < B * D; q++) xf[q] = (float)g.x[q];
    ck_assert_int_eq(fvl_center_update(cf, C, D, xf, g.y, B, (float)jnum(g.hp, "alpha", 0.5)), 0);
    for (int q = 0; q < C * D; q++)
      ck_assert_msg(fabs(cf[q] - cen_out[q]) < 1e-5 * (1 + fabs(cen_out[q])), "%s centers[%d] %g vs %g",
                    ce[k], q, cf[q], cen_out[q]);
  }
}

/* DiscFace and sub-centre/partial-FC forwards: the base logits */
static void golden_discface(void) {
  gcase g;
  static const char *const dc[] = {"discface_cos", "discface_arc_xiclamped"};
  for (int k = 0; k < 2; k++) {
    if (!load_case(&g, dc[k])) continue;
    int arc_base = !strcmp(jstr(g.hp, "base", "cos"), "arc");
    fvl_margin_spec sp = mk(64, arc_base ? FVL_TK_ARC : FVL_TK_COS, (float)jnum(g.hp, "m", 0.35));
    float c[GB * GC], z[GB * GC];
    cos_of(&g, c);
    ck_assert_int_eq(fvl_margin_logits(c, g.C, g.y, g.B, g.C, &sp, z, g.C), 0);
    double el[GB * GC], zd[GB * GC];
    if (!jflat(jget(jget(g.ex, "aux"), "logits"), el, GB * GC)) continue;
    for (int q = 0; q < g.B * g.C; q++) zd[q] = z[q];
    expect_close("logits", dc[k], zd, el, g.B * g.C, 1e-4, 2e-5 * 64);
  }
}

static void golden_npcface_magface_center(void) {
  golden_npcface();
  golden_magface();
  golden_softmax_center();
  golden_discface();
}

START_TEST(test_golden_npcface_magface_center) {
  for (gcur = 0; gcur < 2; gcur++) {
    gchecked = 0;
    golden_npcface_magface_center();
    ck_assert_msg(gchecked > 0, "no golden case of %s found in %s", "golden_npcface_magface_center", gfiles[gcur]);
  }
  gcur = 0;
}
END_TEST

START_TEST(test_center_update_rule) {
  /* two samples of class 1, one of class 0, class 2 absent */
  float cen[3 * 2] = {0, 0, 1, 1, 5, 5};
  float x[3 * 2] = {2, 0, 3, 1, 1, 3};
  int32_t y[3] = {1, 0, 1};
  ck_assert_int_eq(fvl_center_update(cen, 3, 2, x, y, 3, 0.5f), 0);
  /* class 0: n = 1, Δ = (0 − 3, 0 − 1)/2 → c = (0.75, 0.25) */
  ck_assert(fabs(cen[0] - 0.75f) < 1e-6 && fabs(cen[1] - 0.25f) < 1e-6);
  /* class 1: n = 2, Δ = ((1−2)+(1−1), (1−0)+(1−3))/3 = (−1/3, −1/3) → c = 1 + 1/6 */
  ck_assert(fabs(cen[2] - (1 + 1.0 / 6)) < 1e-6 && fabs(cen[3] - (1 + 1.0 / 6)) < 1e-6);
  ck_assert(cen[4] == 5 && cen[5] == 5);
}
END_TEST

/* per-row kernels: bit-identical results whatever the thread count */
START_TEST(test_thread_count_independent) {
  enum { B = 37, C = 1500 };
  static float c[B * C], g1[B * C], g2[B * C];
  float l1[B], l2[B], s1[B], s2[B];
  int32_t y[B];
  for (int k = 0; k < B * C; k++) c[k] = (float)sin(k * 0.37);
  for (int i = 0; i < B; i++) y[i] = (i * 97) % C;
  fvl_margin_spec sp = mk(64, FVL_TK_ARC, 0.5f);
  sp.neg = FVL_NK_QUADRATIC; sp.hard = FVL_HARD_ARC; sp.hard_m = 0.5f; sp.t = 0.2f;
  int prev = fvl_get_threads();
  fvl_set_threads(1);
  ck_assert_int_eq(fvl_margin_ce_fwd(c, C, y, B, C, &sp, l1, s1), 0);
  ck_assert_int_eq(fvl_margin_ce_bwd(c, C, y, B, C, &sp, s1, 0.1f, g1, C, NULL, NULL), 0);
  fvl_set_threads(3);
  ck_assert_int_eq(fvl_margin_ce_fwd(c, C, y, B, C, &sp, l2, s2), 0);
  ck_assert_int_eq(fvl_margin_ce_bwd(c, C, y, B, C, &sp, s2, 0.1f, g2, C, NULL, NULL), 0);
  fvl_set_threads(prev);
  ck_assert(memcmp(l1, l2, sizeof l1) == 0 && memcmp(s1, s2, sizeof s1) == 0);
  ck_assert(memcmp(g1, g2, sizeof g1) == 0);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("loss_kernels");
  TCase *tc = tcase_create("kernels");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, test_fd_all_kinds);
  tcase_add_test(tc, test_logits_match_reference);
  tcase_add_test(tc, test_extreme_scales_finite);
  tcase_add_test(tc, test_errors);
  tcase_add_test(tc, test_hard_mean);
  tcase_add_test(tc, test_center_update_rule);
  tcase_add_test(tc, test_thread_count_independent);
  suite_add_tcase(s, tc);
  TCase *tg = tcase_create("golden");
  tcase_set_timeout(tg, 120);
  tcase_add_test(tg, test_golden_plain_and_scaled);
  tcase_add_test(tg, test_golden_sphereface);
  tcase_add_test(tg, test_golden_arcface_combined);
  tcase_add_test(tg, test_golden_mv_curricular_circle);
  tcase_add_test(tg, test_golden_npcface_magface_center);
  suite_add_tcase(s, tg);
  return s;
}

int main(void) {
  return fvl_check_run(suite());
}
