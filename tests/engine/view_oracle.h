/* view_oracle.h — the view-chain oracle shared by test_tensor.c and test_autograd.c: a reference
 * for views that shares no logic with the engine, and one random view step on (view, reference).
 * Include after <check.h>, tensor.h and a `R(x)` release macro. */
#ifndef FVL_VIEW_ORACLE_H
#define FVL_VIEW_ORACLE_H
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
/* A reference for views that shares no logic with the engine: the base-storage index of every
 * element of the current view, listed in row-major order of the view's shape. transpose,
 * narrow and select permute or subset that list; reshape and unsqueeze keep it as it is. */
typedef struct { int nd; int64_t sz[FVL_MAXDIM]; int64_t n; int64_t *ix; } refview;
static int64_t ref_lin(const refview *r, const int64_t *idx) {
  int64_t k = 0;
  for (int d = 0; d < r->nd; d++) k = k * r->sz[d] + idx[d];
  return k;
}
static void ref_unlin(const refview *r, int64_t k, int64_t *idx) {
  for (int d = r->nd - 1; d >= 0; d--) { idx[d] = k % r->sz[d]; k /= r->sz[d]; }
}
/* new = f(old): for each element of the new shape, the old linear index it reads */
static void ref_apply(refview *r, int nd, const int64_t *sz, int kind, int a, int b, int64_t c) {
  refview nr = {.nd = nd};
  memcpy(nr.sz, sz, sizeof nr.sz);
  nr.n = 1;
  for (int d = 0; d < nd; d++) nr.n *= sz[d];
  nr.ix = malloc(sizeof(int64_t) * (size_t)(nr.n ? nr.n : 1));
  for (int64_t k = 0; k < nr.n; k++) {
    int64_t ni[FVL_MAXDIM], oi[FVL_MAXDIM];
    ref_unlin(&nr, k, ni);
    if (kind == 0) {            /* transpose a, b */
      memcpy(oi, ni, sizeof oi);
      oi[a] = ni[b]; oi[b] = ni[a];
    } else if (kind == 1) {     /* narrow dim a from c */
      memcpy(oi, ni, sizeof oi);
      oi[a] = ni[a] + c;
    } else if (kind == 2) {     /* select dim a at c */
      for (int d = 0, e = 0; d < r->nd; d++) oi[d] = d == a ? c : ni[e++];
    } else {                    /* reshape/unsqueeze: same order */
      nr.ix[k] = r->ix[k];
      continue;
    }
    nr.ix[k] = r->ix[ref_lin(r, oi)];
  }
  free(r->ix);
  *r = nr;
}
static uint64_t vc_state;
static int64_t vc_rand(int64_t n) {
  vc_state = vc_state * 6364136223846793005ULL + 1442695040888963407ULL;
  return n > 0 ? (int64_t)((vc_state >> 33) % (uint64_t)n) : 0;
}
/* one random step on (view v, reference r); returns the new view (v is released) */
static fvl_tensor *vc_step(fvl_tensor *v, refview *r, char *log, size_t nlog) {
  fvl_tensor *nv = NULL;
  int64_t sz[FVL_MAXDIM];
  memcpy(sz, v->size, sizeof sz);
  int kind = (int)vc_rand(v->ndim >= 2 ? 5 : 4);
  if (v->ndim == 0) kind = 3;
  size_t k = strlen(log);
  if (kind == 4) kind = 0;
  if (kind == 0 && v->ndim >= 2) {
    int a = (int)vc_rand(v->ndim), b = (int)vc_rand(v->ndim);
    nv = fvl_transpose(v, a, b);
    int64_t t = sz[a]; sz[a] = sz[b]; sz[b] = t;
    ref_apply(r, v->ndim, sz, 0, a, b, 0);
    snprintf(log + k, nlog - k, " transpose(%d,%d)", a, b);
  } else if (kind == 1 || (kind == 0 && v->ndim == 1)) {
    int a = (int)vc_rand(v->ndim);
    int64_t len = v->size[a] ? 1 + vc_rand(v->size[a]) : 0, st = vc_rand(v->size[a] - len + 1);
    nv = fvl_narrow(v, a, st, len);
    sz[a] = len;
    ref_apply(r, v->ndim, sz, 1, a, 0, st);
    snprintf(log + k, nlog - k, " narrow(%d,%lld,%lld)", a, (long long)st, (long long)len);
  } else if (kind == 2 && v->ndim > 1 && fvl_numel(v) > 0) {
    int a = (int)vc_rand(v->ndim);
    int64_t i = vc_rand(v->size[a]);
    nv = fvl_select(v, a, i);
    for (int d = a; d < v->ndim - 1; d++) sz[d] = sz[d + 1];
    ref_apply(r, v->ndim - 1, sz, 2, a, 0, i);
    snprintf(log + k, nlog - k, " select(%d,%lld)", a, (long long)i);
  } else if (v->ndim < FVL_MAXDIM && vc_rand(2)) {
    int a = (int)vc_rand(v->ndim + 1);
    nv = fvl_unsqueeze(v, a);
    int64_t s2[FVL_MAXDIM];
    for (int d = 0, e = 0; d <= v->ndim; d++) s2[d] = d == a ? 1 : sz[e++];
    ref_apply(r, v->ndim + 1, s2, 3, 0, 0, 0);
    snprintf(log + k, nlog - k, " unsqueeze(%d)", a);
  } else {
    /* reshape: merge two neighbouring dims, or flatten */
    int64_t s2[FVL_MAXDIM];
    int nd;
    if (v->ndim >= 2 && vc_rand(2)) {
      int a = (int)vc_rand(v->ndim - 1);
      nd = 0;
      for (int d = 0; d < v->ndim; d++) {
        if (d == a) { s2[nd++] = sz[d] * sz[d + 1]; d++; }
        else s2[nd++] = sz[d];
      }
    } else {
      nd = 1;
      s2[0] = fvl_numel(v);
    }
    nv = fvl_reshape(v, nd, s2);
    ref_apply(r, nd, s2, 3, 0, 0, 0);
    snprintf(log + k, nlog - k, " reshape(%dd)", nd);
  }
  ck_assert_msg(nv != NULL, "%s: %s", log, fvl_errmsg());
  R(v);
  return nv;
}
#endif
