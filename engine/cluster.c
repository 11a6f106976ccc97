/* cluster.c — k-means (k-means++ seeding, Lloyd iterations through sgemm, n_init restarts) and
 * the mutual-information scores NMI / AMI with the exact expected mutual information.
 * Definitions in cluster.h. */
#include "cluster.h"
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "core.h"
#include "rng.h"
#include "tensor.h"   /* fvl_gemm */

/* ------------------------------------------------------------------ k-means workspace */

typedef struct {
  const float *x;
  int64_t n, d, k;
  double *xx;       /* |x_i|² */
  double *cc;       /* |c_j|² */
  double *dist;     /* squared distance of row i to its centre, from the last assignment */
  double *sums;     /* k×d */
  int64_t *count;   /* k */
  float *dots;      /* a block of rows × max(k, trials) scores */
  int64_t block;    /* rows per sgemm block */
} kws;

static void kws_free(kws *w) {
  free(w->xx); free(w->cc); free(w->dist); free(w->sums); free(w->count); free(w->dots);
}

static int kws_init(kws *w, const float *x, int64_t n, int64_t d, int64_t k, int trials) {
  memset(w, 0, sizeof *w);
  w->x = x; w->n = n; w->d = d; w->k = k;
  int64_t wide = k > trials ? k : trials;
  int64_t b = ((int64_t)1 << 22) / wide;   /* a block of scores stays near 16 MB */
  w->block = b < 16 ? 16 : b > 2048 ? 2048 : b;
  if (w->block > n) w->block = n;
  w->xx = malloc((size_t)n * sizeof *w->xx);
  w->cc = malloc((size_t)k * sizeof *w->cc);
  w->dist = malloc((size_t)n * sizeof *w->dist);
  w->sums = malloc((size_t)k * (size_t)d * sizeof *w->sums);
  w->count = malloc((size_t)k * sizeof *w->count);
  w->dots = malloc((size_t)w->block * (size_t)wide * sizeof *w->dots);
  if (!w->xx || !w->cc || !w->dist || !w->sums || !w->count || !w->dots) {
    kws_free(w);
    return fvl_err("kmeans: out of memory for %lld rows and %lld clusters", (long long)n, (long long)k);
  }
  for (int64_t i = 0; i < n; i++) {
    double s = 0;
    for (int64_t t = 0; t < d; t++) s += (double)x[i * d + t] * x[i * d + t];
    w->xx[i] = s;
  }
  return 0;
}

/* out[i*m + j] = |x_i - c_j|² (>= 0) for the m rows C (m×d), rows r0..r0+nb-1, cj2 = |c_j|² */
static void block_dist(const kws *w, int64_t r0, int64_t nb, const float *C, const double *cj2,
                       int64_t m, double *out) {
  fvl_gemm(0, 1, (int)nb, (int)m, (int)w->d, 1.0f, w->x + r0 * w->d, (int)w->d, C, (int)w->d, 0.0f,
           w->dots, (int)m);
  for (int64_t i = 0; i < nb; i++)
    for (int64_t j = 0; j < m; j++) {
      double v = w->xx[r0 + i] + cj2[j] - 2.0 * w->dots[i * m + j];
      out[i * m + j] = v > 0 ? v : 0;
    }
}

/* Assignment step: nearest centre of every row (ties: lower index). Returns the rows that
 * changed cluster. */
static int64_t assign_step(kws *w, const float *C, int32_t *assign) {
  const int64_t n = w->n, d = w->d, k = w->k;
  for (int64_t j = 0; j < k; j++) {
    double s = 0;
    for (int64_t t = 0; t < d; t++) s += (double)C[j * d + t] * C[j * d + t];
    w->cc[j] = s;
  }
  int64_t changed = 0;
  for (int64_t r0 = 0; r0 < n; r0 += w->block) {
    int64_t nb = n - r0 < w->block ? n - r0 : w->block;
    fvl_gemm(0, 1, (int)nb, (int)k, (int)d, 1.0f, w->x + r0 * d, (int)d, C, (int)d, 0.0f, w->dots,
             (int)k);
#pragma omp parallel for reduction(+ : changed) schedule(static)
    for (int64_t i = 0; i < nb; i++) {
      const float *row = w->dots + i * k;
      double best = INFINITY;
      int64_t bj = 0;
      for (int64_t j = 0; j < k; j++) {
        double v = w->cc[j] - 2.0 * row[j];
        if (v < best) { best = v; bj = j; }
      }
      double dd = best + w->xx[r0 + i];
      w->dist[r0 + i] = dd > 0 ? dd : 0;
      if (assign[r0 + i] != (int32_t)bj) { changed++; assign[r0 + i] = (int32_t)bj; }
    }
  }
  return changed;
}

/* Update step: empty clusters take the farthest rows (cluster.h), then every centre is the mean
 * of its rows. Returns the total squared movement of the centres. */
static double update_step(kws *w, float *C, int32_t *assign) {
  const int64_t n = w->n, d = w->d, k = w->k;
  const float *x = w->x;
  memset(w->sums, 0, (size_t)k * (size_t)d * sizeof *w->sums);
  memset(w->count, 0, (size_t)k * sizeof *w->count);
  for (int64_t i = 0; i < n; i++) {
    double *s = w->sums + (int64_t)assign[i] * d;
    w->count[assign[i]]++;
    for (int64_t t = 0; t < d; t++) s[t] += x[i * d + t];
  }
  for (int64_t j = 0; j < k; j++) {
    if (w->count[j] > 0) continue;
    int64_t bi = -1;
    double bd = -1;
    for (int64_t i = 0; i < n; i++)
      if (w->count[assign[i]] >= 2 && w->dist[i] > bd) { bd = w->dist[i]; bi = i; }
    if (bi < 0) break;   /* cannot happen for k <= n */
    int64_t o = assign[bi];
    w->count[o]--;
    for (int64_t t = 0; t < d; t++) {
      w->sums[o * d + t] -= x[bi * d + t];
      w->sums[j * d + t] = x[bi * d + t];
    }
    w->count[j] = 1;
    assign[bi] = (int32_t)j;
    w->dist[bi] = 0;
  }
  double shift = 0;
  for (int64_t j = 0; j < k; j++)
    for (int64_t t = 0; t < d; t++) {
      double c = w->count[j] ? w->sums[j * d + t] / (double)w->count[j] : C[j * d + t];
      double dc = c - C[j * d + t];
      shift += dc * dc;
      C[j * d + t] = (float)c;
    }
  return shift;
}

/* ------------------------------------------------------------------ seeding */

static void copy_row(const kws *w, int64_t i, float *dst) {
  memcpy(dst, w->x + i * w->d, (size_t)w->d * sizeof *dst);
}

/* greedy k-means++ (cluster.h) */
static int seed_plusplus(kws *w, fvl_rng *r, float *C) {
  const int64_t n = w->n, d = w->d, k = w->k;
  const int L = 2 + (int)floor(log((double)k));
  double *closest = malloc((size_t)n * sizeof *closest), *cum = malloc((size_t)n * sizeof *cum);
  double *cd = malloc((size_t)n * (size_t)L * sizeof *cd), *pot = malloc((size_t)L * sizeof *pot);
  double cj2[64];
  int64_t cand[64];
  float *crow = malloc((size_t)L * (size_t)d * sizeof *crow);
  if (!closest || !cum || !cd || !pot || !crow) {
    free(closest); free(cum); free(cd); free(pot); free(crow);
    return fvl_err("kmeans: out of memory seeding %lld clusters", (long long)k);
  }
  int64_t first = fvl_rng_int(r, 0, n - 1);
  copy_row(w, first, C);
  cj2[0] = w->xx[first];
  for (int64_t r0 = 0; r0 < n; r0 += w->block) {
    int64_t nb = n - r0 < w->block ? n - r0 : w->block;
    block_dist(w, r0, nb, C, cj2, 1, closest + r0);
  }
  closest[first] = 0;
  int rc = 0;
  for (int64_t c = 1; c < k; c++) {
    if (fvl_check_abort("kmeans") < 0) { rc = -1; break; }
    double acc = 0;
    for (int64_t i = 0; i < n; i++) { acc += closest[i]; cum[i] = acc; }
    for (int t = 0; t < L; t++) {
      double u = fvl_rng_uniform(r);
      int64_t pick;
      if (acc > 0) {   /* smallest i with cum[i] > u·acc */
        double v = u * acc;
        int64_t lo = 0, hi = n - 1;
        while (lo < hi) {
          int64_t mid = lo + (hi - lo) / 2;
          if (cum[mid] > v) hi = mid; else lo = mid + 1;
        }
        pick = lo;
      } else {         /* every row sits on a centre: uniform */
        pick = (int64_t)(u * (double)n);
        if (pick >= n) pick = n - 1;
      }
      cand[t] = pick;
      copy_row(w, pick, crow + (int64_t)t * d);
      cj2[t] = w->xx[pick];
    }
    for (int64_t r0 = 0; r0 < n; r0 += w->block) {
      int64_t nb = n - r0 < w->block ? n - r0 : w->block;
      block_dist(w, r0, nb, crow, cj2, L, cd + r0 * L);
    }
    for (int t = 0; t < L; t++) cd[cand[t] * L + t] = 0;
    int best = 0;
    for (int t = 0; t < L; t++) {
      double s = 0;
      for (int64_t i = 0; i < n; i++) s += fmin(closest[i], cd[i * L + t]);
      pot[t] = s;
      if (s < pot[best]) best = t;
    }
    copy_row(w, cand[best], C + c * d);
    for (int64_t i = 0; i < n; i++) closest[i] = fmin(closest[i], cd[i * L + best]);
  }
  free(closest); free(cum); free(cd); free(pot); free(crow);
  return rc;
}

static int seed_random(kws *w, fvl_rng *r, float *C) {
  int32_t *perm = malloc((size_t)w->n * sizeof *perm);
  if (!perm) return fvl_err("kmeans: out of memory seeding %lld clusters", (long long)w->k);
  fvl_rng_permutation(r, perm, (size_t)w->n);
  for (int64_t j = 0; j < w->k; j++) copy_row(w, perm[j], C + j * w->d);
  free(perm);
  return 0;
}

/* ------------------------------------------------------------------ one run, n_init runs */

static int has_empty(const kws *w, const int32_t *assign) {
  memset(w->count, 0, (size_t)w->k * sizeof *w->count);
  for (int64_t i = 0; i < w->n; i++) w->count[assign[i]]++;
  for (int64_t j = 0; j < w->k; j++)
    if (!w->count[j]) return 1;
  return 0;
}

static int lloyd(kws *w, const fvl_kmeans_opts *o, double tol_abs, float *C, int32_t *assign,
                 int *iters) {
  for (int64_t i = 0; i < w->n; i++) assign[i] = -1;
  int last_update = 0, it = 0;
  for (it = 0; it < o->max_iter;) {
    if (fvl_check_abort("kmeans") < 0) return -1;
    if (assign_step(w, C, assign) == 0) { last_update = 0; break; }
    double shift = update_step(w, C, assign);
    it++;
    last_update = 1;
    if (shift <= tol_abs) break;
  }
  if (last_update) {   /* the assignment of the final centres */
    assign_step(w, C, assign);
    if (has_empty(w, assign)) update_step(w, C, assign);
  }
  *iters = it;
  return 0;
}

static double inertia_of(const kws *w, const float *C, const int32_t *assign) {
  const int64_t n = w->n, d = w->d;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++) {
    const float *xi = w->x + i * d, *c = C + (int64_t)assign[i] * d;
    double s = 0;
    for (int64_t t = 0; t < d; t++) { double v = (double)xi[t] - c[t]; s += v * v; }
    w->dist[i] = s;
  }
  double tot = 0;
  for (int64_t i = 0; i < n; i++) tot += w->dist[i];
  return tot;
}

int fvl_kmeans(const float *x, int64_t n, int64_t d, int64_t k, const fvl_kmeans_opts *o,
               int32_t *assign, float *centres, double *inertia, int *n_iter) {
  const char *fn = "kmeans";
  if (!x || !assign || !centres || !o) return fvl_err("%s: x, assign, centres and opts must not be NULL", fn);
  if (n < 1 || d < 1) return fvl_err("%s: x is %lld×%lld, expected at least one row and one column", fn,
                                     (long long)n, (long long)d);
  if (k < 1 || k > n)
    return fvl_err("%s: k = %lld clusters for %lld rows (expected 1 <= k <= rows)", fn, (long long)k, (long long)n);
  if (n > INT32_MAX || d > INT32_MAX)
    return fvl_err("%s: x is %lld×%lld, expected at most %d rows and columns", fn, (long long)n,
                   (long long)d, INT32_MAX);
  int64_t kd;
  if (fvl_mul_overflow(k, d, &kd) || kd > ((int64_t)1 << 40))
    return fvl_err("%s: %lld centres of %lld values are too many", fn, (long long)k, (long long)d);
  if (o->n_init < 1 || o->max_iter < 1 || !(o->tol >= 0) || (o->init != FVL_KMEANS_PLUSPLUS && o->init != FVL_KMEANS_RANDOM))
    return fvl_err("%s: options n_init = %d, max_iter = %d, tol = %g, init = %d: expected n_init >= 1, "
                   "max_iter >= 1, tol >= 0, init 0 or 1", fn, o->n_init, o->max_iter, o->tol, o->init);
  for (int64_t i = 0; i < n * d; i++)
    if (!isfinite(x[i]))
      return fvl_err("%s: x[%lld][%lld] = %g is not a finite number (0-based)", fn, (long long)(i / d),
                     (long long)(i % d), (double)x[i]);
  kws w;
  if (kws_init(&w, x, n, d, k, 2 + (int)floor(log((double)k))) < 0) return -1;
  /* tolerance: tol × the mean per-dimension variance of x (two passes, double) */
  double var = 0;
  for (int64_t t = 0; t < d; t++) {
    double m = 0, v = 0;
    for (int64_t i = 0; i < n; i++) m += x[i * d + t];
    m /= (double)n;
    for (int64_t i = 0; i < n; i++) { double e = x[i * d + t] - m; v += e * e; }
    var += v / (double)n;
  }
  const double tol_abs = o->tol * var / (double)d;
  float *C = malloc((size_t)kd * sizeof *C);
  int32_t *a = malloc((size_t)n * sizeof *a);
  if (!C || !a) {
    free(C); free(a); kws_free(&w);
    return fvl_err("%s: out of memory for %lld rows and %lld clusters", fn, (long long)n, (long long)k);
  }
  double best = INFINITY;
  int rc = 0;
  for (int run = 0; run < o->n_init; run++) {
    fvl_rng r;
    fvl_rng_seed(&r, fvl_rng_bits(o->seed, (uint64_t)run));
    int iters = 0;
    rc = o->init == FVL_KMEANS_RANDOM ? seed_random(&w, &r, C) : seed_plusplus(&w, &r, C);
    if (rc == 0) rc = lloyd(&w, o, tol_abs, C, a, &iters);
    if (rc < 0) break;
    double in = inertia_of(&w, C, a);
    if (in < best) {
      best = in;
      memcpy(centres, C, (size_t)kd * sizeof *C);
      memcpy(assign, a, (size_t)n * sizeof *a);
      if (n_iter) *n_iter = iters;
    }
  }
  free(C); free(a); kws_free(&w);
  if (rc < 0) return -1;
  if (inertia) *inertia = best;
  return 0;
}

/* ------------------------------------------------------------------ NMI / AMI */

static int cmp_u64(const void *p, const void *q) {
  uint64_t a = *(const uint64_t *)p, b = *(const uint64_t *)q;
  return a < b ? -1 : a > b;
}

/* sizes of the runs of equal values in the sorted keys[n] (shifted right by `shift`) */
static int64_t runs(const uint64_t *keys, int64_t n, int shift, int64_t *out) {
  int64_t m = 0;
  for (int64_t i = 0; i < n;) {
    int64_t j = i + 1;
    while (j < n && keys[j] >> shift == keys[i] >> shift) j++;
    out[m++] = j - i;
    i = j;
  }
  return m;
}

static double entropy_of(const int64_t *c, int64_t m, int64_t n) {
  double h = 0, N = (double)n;
  for (int64_t i = 0; i < m; i++) h -= (double)c[i] / N * (log((double)c[i]) - log(N));
  return h;
}

/* distinct values of v[m] with their multiplicities (v sorted in place) */
static int64_t distinct(int64_t *v, int64_t m, int64_t *mult) {
  qsort(v, (size_t)m, sizeof *v, cmp_u64);   /* positive counts: unsigned order is numeric order */
  int64_t u = 0;
  for (int64_t i = 0; i < m;) {
    int64_t j = i + 1;
    while (j < m && v[j] == v[i]) j++;
    v[u] = v[i];
    mult[u++] = j - i;
    i = j;
  }
  return u;
}

/* E[I] = Σ_ij Σ_nij P(nij | a_i, b_j, N) · nij/N · log(N·nij / (a_i·b_j)), P hypergeometric.
 * The sum only depends on the pair of marginal values, so equal marginals are summed once and
 * weighted by their multiplicities. log P comes from lgamma at the first nij and then the ratio
 * P(nij+1)/P(nij) = (a-nij)(b-nij) / ((nij+1)(N-a-b+nij+1)) in log space (no underflow to 0). */
double fvl_expected_mutual_info(const int64_t *ra, int64_t ka, const int64_t *cb, int64_t kb,
                                int64_t n) {
  int64_t *av = malloc((size_t)ka * sizeof *av), *am = malloc((size_t)ka * sizeof *am);
  int64_t *bv = malloc((size_t)kb * sizeof *bv), *bm = malloc((size_t)kb * sizeof *bm);
  if (!av || !am || !bv || !bm) {
    free(av); free(am); free(bv); free(bm);
    fvl_err("mutual_info: out of memory");
    return NAN;
  }
  memcpy(av, ra, (size_t)ka * sizeof *av);
  memcpy(bv, cb, (size_t)kb * sizeof *bv);
  int64_t na = distinct(av, ka, am), nb = distinct(bv, kb, bm);
  const double N = (double)n, lgN = lgamma(N + 1), logN = log(N);
  double emi = 0;
  for (int64_t i = 0; i < na; i++) {
    const double a = (double)av[i];
    const double fa = lgamma(a + 1) + lgamma(N - a + 1) - lgN, la = log(a);
    for (int64_t j = 0; j < nb; j++) {
      const double b = (double)bv[j];
      const double fab = fa + lgamma(b + 1) + lgamma(N - b + 1), lab = la + log(b);
      double lo = a + b - N > 1 ? a + b - N : 1, hi = a < b ? a : b, s = 0;
      double lp = fab - lgamma(lo + 1) - lgamma(a - lo + 1) - lgamma(b - lo + 1) - lgamma(N - a - b + lo + 1);
      for (double v = lo; v <= hi; v++) {
        s += exp(lp) * v / N * (logN + log(v) - lab);
        lp += log((a - v) * (b - v)) - log((v + 1) * (N - a - b + v + 1));
      }
      emi += s * (double)am[i] * (double)bm[j];
    }
  }
  free(av); free(am); free(bv); free(bm);
  return emi;
}

int fvl_mutual_info(const int32_t *a, const int32_t *b, int64_t n, int want_emi, fvl_mi_result *r) {
  const char *fn = "mutual_info";
  if (!a || !b || !r) return fvl_err("%s: labels and result must not be NULL", fn);
  if (n < 1) return fvl_err("%s: expected at least 1 labelled row, got %lld", fn, (long long)n);
  uint64_t *ab = malloc((size_t)n * sizeof *ab), *bb = malloc((size_t)n * sizeof *bb);
  int64_t *cnt = malloc((size_t)n * sizeof *cnt), *ra = malloc((size_t)n * sizeof *ra);
  int64_t *cb = malloc((size_t)n * sizeof *cb);
  if (!ab || !bb || !cnt || !ra || !cb) {
    free(ab); free(bb); free(cnt); free(ra); free(cb);
    return fvl_err("%s: out of memory for %lld rows", fn, (long long)n);
  }
  /* (a, b) pairs as one sortable key: the runs of a give the row sums, the runs of (a, b) the
   * non-zero cells; b alone gives the column sums */
  for (int64_t i = 0; i < n; i++) {
    uint64_t ua = (uint32_t)a[i] ^ 0x80000000u, ub = (uint32_t)b[i] ^ 0x80000000u;
    ab[i] = ua << 32 | ub;
    bb[i] = ub;
  }
  qsort(ab, (size_t)n, sizeof *ab, cmp_u64);
  qsort(bb, (size_t)n, sizeof *bb, cmp_u64);
  int64_t ka = runs(ab, n, 32, ra), kb = runs(bb, n, 0, cb);
  memset(r, 0, sizeof *r);
  r->n = n; r->ka = ka; r->kb = kb;
  r->h_a = entropy_of(ra, ka, n);
  r->h_b = entropy_of(cb, kb, n);
  /* MI over the non-zero cells: Σ nij/N · log(N·nij / (a_i·b_j)) */
  double mi = 0, N = (double)n;
  int64_t ia = 0, row_end = ra[0];
  /* column sums by b value: bb is sorted, look b up by binary search over the distinct values */
  int64_t *bstart = cnt;   /* reuse: distinct b keys packed into cnt as uint64 */
  {
    int64_t m = 0;
    for (int64_t i = 0; i < n;) {
      int64_t j = i + 1;
      while (j < n && bb[j] == bb[i]) j++;
      bstart[m++] = (int64_t)bb[i];
      i = j;
    }
  }
  for (int64_t i = 0; i < n;) {
    if (i >= row_end) row_end += ra[++ia];
    int64_t j = i + 1;
    while (j < n && ab[j] == ab[i]) j++;
    uint64_t ub = ab[i] & 0xffffffffu;
    int64_t lo = 0, hi = kb - 1;
    while (lo < hi) {
      int64_t mid = lo + (hi - lo) / 2;
      if ((uint64_t)bstart[mid] < ub) lo = mid + 1; else hi = mid;
    }
    double nij = (double)(j - i);
    mi += nij / N * (log(nij) + log(N) - log((double)ra[ia]) - log((double)cb[lo]));
    i = j;
  }
  r->mi = mi > 0 ? mi : 0;
  double mean_h = (r->h_a + r->h_b) / 2;
  if (ka == 1 && kb == 1) {   /* neither labelling splits the data: a perfect match */
    r->nmi = r->ami = 1;
    r->emi = 0;
  } else {
    r->nmi = r->mi == 0 ? 0 : r->mi / mean_h;
    r->emi = r->ami = NAN;
    if (want_emi) {
      r->emi = fvl_expected_mutual_info(ra, ka, cb, kb, n);
      if (isnan(r->emi)) { free(ab); free(bb); free(cnt); free(ra); free(cb); return -1; }
      double den = mean_h - r->emi;
      if (den < 0) den = fmin(den, -DBL_EPSILON); else den = fmax(den, DBL_EPSILON);
      r->ami = (r->mi - r->emi) / den;
    }
  }
  free(ab); free(bb); free(cnt); free(ra); free(cb);
  return 0;
}
