/* megaface.c — MegaFace feature files and rank-k / TAR@FAR with distractors, in sgemm blocks.
 * Definitions in megaface.h. */
#include "megaface.h"
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include "core.h"
#include "sys.h"
#include "tensor.h"   /* fvl_gemm */

/* ------------------------------------------------------------------ feature files */

static void put_i32(uint8_t *p, int32_t v) {
  uint32_t u = (uint32_t)v;
  for (int i = 0; i < 4; i++) p[i] = (uint8_t)(u >> (8 * i));
}
static int32_t get_i32(const uint8_t *p) {
  uint32_t u = 0;
  for (int i = 0; i < 4; i++) u |= (uint32_t)p[i] << (8 * i);
  return (int32_t)u;
}

int fvl_megaface_write_ex(const char *path, const float *v, int64_t d, int sync) {
  const char *fn = "megaface_write";
  if (!path || !v) return fvl_err("%s: path and values must not be NULL", fn);
  if (d < 1 || d > (INT32_MAX - 16) / 4)
    return fvl_err("%s: %lld values, expected at least 1 and at most %d", fn, (long long)d, (INT32_MAX - 16) / 4);
  for (int64_t i = 0; i < d; i++)
    if (!isfinite(v[i]))
      return fvl_err("%s: value %lld = %g is not a finite number (0-based)", fn, (long long)i, (double)v[i]);
  size_t n = 16 + 4 * (size_t)d;
  uint8_t *buf = malloc(n);
  if (!buf) return fvl_err("%s: out of memory", fn);
  put_i32(buf, (int32_t)d);
  put_i32(buf + 4, 1);
  put_i32(buf + 8, 4);
  put_i32(buf + 12, 5);
  for (int64_t i = 0; i < d; i++) {
    uint32_t u;
    memcpy(&u, &v[i], 4);
    put_i32(buf + 16 + 4 * i, (int32_t)u);
  }
  int rc = sync ? fvl_write_atomic(path, buf, n, fn) : fvl_write_atomic_nosync(path, buf, n, fn);
  free(buf);
  return rc;
}
int fvl_megaface_write(const char *path, const float *v, int64_t d) { return fvl_megaface_write_ex(path, v, d, 1); }

int fvl_megaface_read(const char *path, float **out, int64_t *d) {
  const char *fn = "megaface_read";
  *out = NULL;
  FILE *f = fopen(path, "rb");
  if (!f) return fvl_err("%s: cannot open %s: %s", fn, path, strerror(errno));
  struct stat sb;
  if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
    fclose(f);
    return fvl_err("%s: %s is not a regular file", fn, path);
  }
  uint8_t h[16];
  if (sb.st_size < 16 || fread(h, 1, 16, f) != 16) {
    fclose(f);
    return fvl_err("%s: %s has %lld bytes, expected a 16-byte header (rows, cols, 4, 5) and the "
                   "values", fn, path, (long long)sb.st_size);
  }
  int32_t rows = get_i32(h), cols = get_i32(h + 4), esz = get_i32(h + 8), type = get_i32(h + 12);
  if (cols != 1 || esz != 4 || type != 5 || rows < 1) {
    fclose(f);
    return fvl_err("%s: %s: header (rows %d, cols %d, element size %d, type %d), expected "
                   "(D >= 1, 1, 4, 5 = 32-bit float)", fn, path, rows, cols, esz, type);
  }
  int64_t want = 16 + 4 * (int64_t)rows;
  if ((int64_t)sb.st_size != want) {
    fclose(f);
    return fvl_err("%s: %s has %lld bytes, expected %lld (16 + 4 × %d values)", fn, path,
                   (long long)sb.st_size, (long long)want, rows);
  }
  uint8_t *raw = malloc(4 * (size_t)rows);
  float *v = malloc(4 * (size_t)rows);
  if (!raw || !v || fread(raw, 4, (size_t)rows, f) != (size_t)rows) {
    free(raw); free(v); fclose(f);
    return fvl_err("%s: cannot read %d values from %s", fn, rows, path);
  }
  fclose(f);
  for (int32_t i = 0; i < rows; i++) {
    uint32_t u = (uint32_t)get_i32(raw + 4 * i);
    memcpy(&v[i], &u, 4);
    if (!isfinite(v[i])) {
      double bad = v[i];
      free(raw); free(v);
      return fvl_err("%s: %s: value %d = %g is not a finite number (0-based)", fn, path, i, bad);
    }
  }
  free(raw);
  *out = v;
  *d = rows;
  return 0;
}

/* ------------------------------------------------------------------ top scores */

/* a min-heap of the m largest values seen */
typedef struct { float *v; int64_t n, m; } topheap;

static void heap_push(topheap *h, float x) {
  if (h->n < h->m) {
    int64_t i = h->n++;
    while (i > 0 && h->v[(i - 1) / 2] > x) { h->v[i] = h->v[(i - 1) / 2]; i = (i - 1) / 2; }
    h->v[i] = x;
    return;
  }
  if (!(x > h->v[0])) return;
  int64_t i = 0;
  for (;;) {   /* replace the root and sift down */
    int64_t c = 2 * i + 1;
    if (c >= h->n) break;
    if (c + 1 < h->n && h->v[c + 1] < h->v[c]) c++;
    if (h->v[c] >= x) break;
    h->v[i] = h->v[c];
    i = c;
  }
  h->v[i] = x;
}

static int cmp_desc(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return x < y ? 1 : x > y ? -1 : 0;
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/* ------------------------------------------------------------------ the protocol */

typedef struct {
  const float *dis;
  int64_t P, N, D, K;
  float *pn;      /* normalised probes P×D */
  float *dinv;    /* 1 / |distractor| (0 for a zero row) */
  float *top;     /* P×K best distractor scores per probe, descending */
  topheap *heaps; /* per thread (verification) */
  int nheaps;
  float *S;       /* a block of scores */
} mf_ws;

static void mf_free(mf_ws *w) {
  free(w->pn); free(w->dinv); free(w->top); free(w->S);
  if (w->heaps)
    for (int t = 0; t < w->nheaps; t++) free(w->heaps[t].v);
  free(w->heaps);
}

static void normalise_rows(const float *x, int64_t n, int64_t d, float *out, float *inv) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++) {
    double s = 0;
    for (int64_t t = 0; t < d; t++) s += (double)x[i * d + t] * x[i * d + t];
    float r = s > 0 ? (float)(1.0 / sqrt(s)) : 0.0f;
    if (inv) inv[i] = r;
    if (out)
      for (int64_t t = 0; t < d; t++) out[i * d + t] = x[i * d + t] * r;
  }
}

/* one block of probes p0.. (pb rows) against distractors d0.. (nb rows) */
static void score_block(mf_ws *w, int64_t p0, int64_t pb, int64_t d0, int64_t nb) {
  const int64_t K = w->K;
  fvl_gemm(0, 1, (int)pb, (int)nb, (int)w->D, 1.0f, w->pn + p0 * w->D, (int)w->D, w->dis + d0 * w->D,
           (int)w->D, 0.0f, w->S, (int)nb);
#pragma omp parallel num_threads(w->nheaps > 0 ? w->nheaps : fvl_get_threads())
  {
    int tid = 0;
#ifdef _OPENMP
    tid = omp_get_thread_num();
#endif
    topheap *h = w->heaps ? &w->heaps[tid] : NULL;
#pragma omp for schedule(static)
    for (int64_t i = 0; i < pb; i++) {
      const float *row = w->S + i * nb;
      float *tp = w->top + (p0 + i) * K;
      for (int64_t j = 0; j < nb; j++) {
        float v = row[j] * w->dinv[d0 + j];
        if (h) heap_push(h, v);
        if (v > tp[K - 1]) {   /* insert into the descending top-K */
          int64_t q = K - 1;
          while (q > 0 && tp[q - 1] < v) { tp[q] = tp[q - 1]; q--; }
          tp[q] = v;
        }
      }
    }
  }
}

static double dot_d(const float *a, const float *b, int64_t d) {
  double s = 0;
  for (int64_t t = 0; t < d; t++) s += (double)a[t] * b[t];
  return s;
}

static int check_args(const char *fn, const int32_t *pl, int64_t P, int64_t N, int64_t D,
                      const fvl_megaface_opts *o) {
  if (P < 1 || N < 1 || D < 1)
    return fvl_err("%s: %lld probes, %lld distractors of size %lld: expected at least one of each", fn,
                   (long long)P, (long long)N, (long long)D);
  if (P > INT32_MAX || N > INT32_MAX || D > INT32_MAX)
    return fvl_err("%s: at most %d probes, distractors and dimensions", fn, INT32_MAX);
  if (o->nk < 1 || o->nk > FVL_MEGAFACE_MAXK)
    return fvl_err("%s: %d ranks, expected at least 1 and at most %d", fn, o->nk, FVL_MEGAFACE_MAXK);
  for (int i = 0; i < o->nk; i++)
    if (o->ks[i] < 1 || o->ks[i] > 1000) return fvl_err("%s: rank %d, expected 1 <= k <= 1000", fn, o->ks[i]);
  if (!(o->far >= 0 && o->far < 1)) return fvl_err("%s: far = %g, expected 0 <= far < 1", fn, o->far);
  if (o->block < 0) return fvl_err("%s: block = %lld, expected >= 0", fn, (long long)o->block);
  for (int64_t i = 0; i < P; i++)
    if (pl[i] < 0) return fvl_err("%s: probe label %lld = %d is negative (0-based)", fn, (long long)i, (int)pl[i]);
  return 0;
}

/* rank-k of every (probe, other image of its identity) pair, genuine scores above `thr`;
 * order[] holds the probes grouped by label */
static void count_pairs(const mf_ws *w, const int32_t *pl, const int32_t *order, const fvl_megaface_opts *o,
                        double thr, int64_t *hits, int64_t *gen_above, fvl_megaface_result *r) {
  const int64_t P = w->P, D = w->D, K = w->K;
  for (int64_t s = 0; s < P;) {
    int64_t e = s + 1;
    while (e < P && pl[order[e]] == pl[order[s]]) e++;
    if (e - s >= 2) r->n_probes_used += e - s;
    for (int64_t a = s; a < e; a++) {
      const int64_t p = order[a];
      const float *tp = w->top + p * K;
      for (int64_t b = s; b < e; b++) {
        if (b == a) continue;
        const int64_t g = order[b];
        double sc = dot_d(w->pn + p * D, w->pn + g * D, D);
        int64_t above = 0;
        while (above < K && tp[above] > sc) above++;
        for (int i = 0; i < o->nk; i++)
          if (above + 1 <= o->ks[i]) hits[i]++;
        r->n_pairs++;
        if (b > a) {
          r->n_genuine++;
          if (sc > thr) (*gen_above)++;
        }
      }
    }
    s = e;
  }
}

int fvl_megaface_eval(const float *probes, const int32_t *pl, int64_t P, const float *distractors,
                      int64_t N, int64_t D, const fvl_megaface_opts *o, fvl_megaface_result *r) {
  const char *fn = "megaface";
  if (!probes || !pl || !distractors || !o || !r) return fvl_err("%s: arguments must not be NULL", fn);
  if (check_args(fn, pl, P, N, D, o) < 0) return -1;
  memset(r, 0, sizeof *r);
  r->tar = r->threshold = NAN;
  mf_ws w;
  memset(&w, 0, sizeof w);
  w.dis = distractors; w.P = P; w.N = N; w.D = D;
  w.K = 1;
  for (int i = 0; i < o->nk; i++) if (o->ks[i] > w.K) w.K = o->ks[i];
  if (w.K > N) w.K = N;
  const double nimp = (double)P * (double)N;
  r->n_impostor = P * N;
  int64_t keep = 0;   /* impostor scores kept: floor(far·#impostors) + 1 */
  if (o->far > 0 && nimp * o->far >= 1 - 1e-9) {
    keep = (int64_t)floor(o->far * nimp + 1e-9) + 1;
    if (keep > ((int64_t)1 << 24))
      return fvl_err("%s: TAR at FAR = %g over %.0f impostor pairs keeps %lld scores (at most 2^24): "
                     "ask for a smaller far", fn, o->far, nimp, (long long)keep);
  }
  int64_t B = o->block ? o->block : 4096;
  if (B > N) B = N;
  int64_t PB = ((int64_t)1 << 22) / B;
  if (PB < 1) PB = 1;
  if (PB > P) PB = P;
  w.pn = malloc((size_t)P * (size_t)D * sizeof *w.pn);
  w.dinv = malloc((size_t)N * sizeof *w.dinv);
  w.top = malloc((size_t)P * (size_t)w.K * sizeof *w.top);
  w.S = malloc((size_t)PB * (size_t)B * sizeof *w.S);
  int32_t *order = malloc((size_t)P * sizeof *order);
  uint64_t *keys = malloc((size_t)P * sizeof *keys);
  int ok = w.pn && w.dinv && w.top && w.S && order && keys;
  if (ok && keep) {
    w.nheaps = fvl_get_threads();
    w.heaps = calloc((size_t)w.nheaps, sizeof *w.heaps);
    ok = w.heaps != NULL;
    for (int t = 0; ok && t < w.nheaps; t++) {
      w.heaps[t].m = keep;
      ok = (w.heaps[t].v = malloc((size_t)keep * sizeof(float))) != NULL;
    }
  }
  if (!ok) {
    mf_free(&w); free(order); free(keys);
    return fvl_err("%s: out of memory for %lld probes and %lld distractors", fn, (long long)P, (long long)N);
  }
  normalise_rows(probes, P, D, w.pn, NULL);
  normalise_rows(distractors, N, D, NULL, w.dinv);
  for (int64_t i = 0; i < P * w.K; i++) w.top[i] = -INFINITY;
  int rc = 0;
  for (int64_t p0 = 0; p0 < P && rc == 0; p0 += PB) {
    int64_t pb = P - p0 < PB ? P - p0 : PB;
    for (int64_t d0 = 0; d0 < N; d0 += B) {
      if (fvl_check_abort(fn) < 0) { rc = -1; break; }
      score_block(&w, p0, pb, d0, N - d0 < B ? N - d0 : B);
    }
  }
  double thr = INFINITY;
  if (rc == 0 && keep) {   /* the (keep)-th largest impostor score over all threads' heaps */
    int64_t tot = 0;
    for (int t = 0; t < w.nheaps; t++) tot += w.heaps[t].n;
    float *all = malloc((size_t)tot * sizeof *all);
    if (!all) rc = fvl_err("%s: out of memory", fn);
    else {
      int64_t m = 0;
      for (int t = 0; t < w.nheaps; t++) {
        memcpy(all + m, w.heaps[t].v, (size_t)w.heaps[t].n * sizeof *all);
        m += w.heaps[t].n;
      }
      qsort(all, (size_t)tot, sizeof *all, cmp_desc);
      thr = all[keep - 1];
      free(all);
    }
  }
  if (rc == 0) {
    /* probes grouped by label (stable: index order within a label) */
    for (int64_t i = 0; i < P; i++) keys[i] = (uint64_t)(uint32_t)pl[i] << 32 | (uint64_t)i;
    qsort(keys, (size_t)P, sizeof *keys, cmp_u64);
    for (int64_t i = 0; i < P; i++) order[i] = (int32_t)(keys[i] & 0xffffffffu);
    int64_t hits[FVL_MEGAFACE_MAXK] = {0}, gen_above = 0;
    count_pairs(&w, pl, order, o, thr, hits, &gen_above, r);
    for (int i = 0; i < o->nk; i++) r->rank[i] = r->n_pairs ? (double)hits[i] / (double)r->n_pairs : NAN;
    if (keep && r->n_genuine) {
      r->tar = (double)gen_above / (double)r->n_genuine;
      r->threshold = thr;
    }
  }
  mf_free(&w); free(order); free(keys);
  return rc;
}
