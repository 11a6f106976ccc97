/* synthetic.c — the synthetic_faces generator: an open-set identity data set for loss research.
 * The model is described in docs/data.md and data.h. Every random number is addressed by
 * (stream, counter) through engine/rng.h, so the data depend on the seed only, never on the
 * thread count or on the chunking. */
#include "data.h"
#include "rng.h"
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { S_CODE = 1, S_W1, S_B1, S_W2, S_PERM, S_LATENT, S_NOISE, S_LABEL };
static uint64_t stream(uint64_t seed, int k) { return fvl_rng_bits(seed, 0xfa5e0000ULL + (uint64_t)k); }

/* two N(0,1) from one 64-bit draw (Box–Muller on 32-bit halves; tails cut at 6.7 sigma) */
static inline void normal2(uint64_t seed, uint64_t ctr, float *a, float *b) {
  uint64_t r = fvl_rng_bits(seed, ctr);
  double u1 = ((double)(r >> 32) + 0.5) * 0x1.0p-32;
  double u2 = (double)(r & 0xffffffffu) * 0x1.0p-32;
  double rad = sqrt(-2.0 * log(u1));
  *a = (float)(rad * cos(6.283185307179586 * u2));
  *b = (float)(rad * sin(6.283185307179586 * u2));
}
static void fill_normal(uint64_t seed, float *out, int64_t n, float std) {
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t p = 0; p < (n + 1) / 2; p++) {
    float a, b;
    normal2(seed, (uint64_t)p, &a, &b);
    out[2 * p] = a * std;
    if (2 * p + 1 < n) out[2 * p + 1] = b * std;
  }
}

void fvl_synth_defaults(fvl_synth_opts *o) {
  memset(o, 0, sizeof *o);
  o->identities = 1000;
  o->per_identity = 20;
  o->test_identities = 200;
  o->test_per_identity = 20;
  o->dim = 32;
  o->factors = 8;
  o->hidden = 128;
  o->out_dim = 128;
  o->spread = 0.6f;
  o->nuisance = 1.5f;
  o->illumination = 0.2f;
  o->noise = 0.3f;
  o->seed = 1;
}

#define FN "synthetic_faces"
static int check_opts(const fvl_synth_opts *o) {
  if (o->identities < 2 || o->identities > (1 << 24))
    return fvl_err(FN ": identities = %lld (expected 2..16777216)", (long long)o->identities);
  if (o->per_identity < 2 || o->per_identity > (1 << 24))
    return fvl_err(FN ": per_identity = %lld (expected 2..16777216)", (long long)o->per_identity);
  if (o->test_identities < 0 || o->test_identities > (1 << 24))
    return fvl_err(FN ": test_identities = %lld (expected 0..16777216)",
                   (long long)o->test_identities);
  if (o->test_identities > 0 && (o->test_per_identity < 2 || o->test_per_identity > (1 << 24)))
    return fvl_err(FN ": test_per_identity = %lld (expected 2..16777216)",
                   (long long)o->test_per_identity);
  if (o->dim < 2 || o->dim > 65536) return fvl_err(FN ": dim = %d (expected 2..65536)", o->dim);
  if (o->factors < 0 || o->factors > 65536)
    return fvl_err(FN ": factors = %d (expected 0..65536)", o->factors);
  if (o->hidden < 1 || o->hidden > 65536)
    return fvl_err(FN ": hidden = %d (expected 1..65536)", o->hidden);
  if (o->map_h || o->map_w) {
    if (o->map_h < 1 || o->map_w < 1 || o->map_h > 4096 || o->map_w > 4096)
      return fvl_err(FN ": map size %dx%d (expected h and w in 1..4096)", o->map_h, o->map_w);
    if (o->out_dim != o->map_h * o->map_w)
      return fvl_err(FN ": out_dim = %d but the map is %dx%d", o->out_dim, o->map_h, o->map_w);
  }
  if (o->out_dim < 1 || o->out_dim > (1 << 24))
    return fvl_err(FN ": out_dim = %d (expected 1..16777216)", o->out_dim);
#define NONNEG(f)                                                                         \
  if (!(o->f >= 0 && o->f < 1e6)) return fvl_err(FN ": " #f " = %g (expected a number >= 0)", \
                                                 (double)o->f);
  NONNEG(spread) NONNEG(nuisance) NONNEG(illumination) NONNEG(noise) NONNEG(long_tail)
#undef NONNEG
  if (!(o->label_noise >= 0 && o->label_noise < 1))
    return fvl_err(FN ": label_noise = %g (expected 0 <= label_noise < 1)", (double)o->label_noise);
  return 0;
}

int fvl_synth_sizes(const fvl_synth_opts *o, int64_t *counts, int64_t *ntrain, int64_t *ntest) {
  if (!o) return fvl_err(FN ": options are NULL");
  if (check_opts(o)) return -1;
  int64_t K = o->identities;
  int64_t total = 0;
  if (o->long_tail == 0) {
    total = K * o->per_identity;
    if (counts) for (int64_t k = 0; k < K; k++) counts[k] = o->per_identity;
  } else {
    /* Zipf-like: the identity of rank r gets per_identity*K*w_r/sum(w) samples, w_r=(r+1)^-a,
     * at least 2; ranks are dealt to identities by a seeded permutation */
    int32_t *rank = malloc((size_t)K * sizeof *rank);
    if (!rank) return fvl_err(FN ": out of memory");
    fvl_rng r = {stream(o->seed, S_PERM), 0};
    fvl_rng_permutation(&r, rank, (size_t)K);
    double wsum = 0;
    for (int64_t k = 0; k < K; k++) wsum += pow((double)(k + 1), -(double)o->long_tail);
    double scale = (double)o->per_identity * (double)K / wsum;
    for (int64_t k = 0; k < K; k++) {
      double c = floor(scale * pow((double)rank[k] + 1, -(double)o->long_tail) + 0.5);
      int64_t n = c < 2 ? 2 : (int64_t)c;
      if (counts) counts[k] = n;
      total += n;
    }
    free(rank);
  }
  if (total * (int64_t)o->out_dim > ((int64_t)1 << 40))
    return fvl_err(FN ": %lld samples x %d values is too large", (long long)total, o->out_dim);
  if (ntrain) *ntrain = total;
  if (ntest) *ntest = o->test_identities * (o->test_identities ? o->test_per_identity : 0);
  return 0;
}

/* fixed random renderer */
typedef struct {
  int din, H, D;
  float *codes;   /* (K+T) × dim, unit rows */
  float *W1;      /* H × din: identity block N(0,1), nuisance block N(0,1/F) */
  float *b1;      /* H */
  float *W2;      /* D × H */
} model;

static void box_blur_row(float *v, int n, int stride, int r, float *tmp) {
  for (int i = 0; i < n; i++) {
    double s = 0;
    int c = 0;
    for (int k = i - r; k <= i + r; k++)
      if (k >= 0 && k < n) { s += v[(int64_t)k * stride]; c++; }
    tmp[i] = (float)(s / c);
  }
  for (int i = 0; i < n; i++) v[(int64_t)i * stride] = tmp[i];
}

static int build_model(const fvl_synth_opts *o, model *m) {
  int64_t KT = o->identities + o->test_identities;
  m->din = o->dim + o->factors;
  m->H = o->hidden;
  m->D = o->out_dim;
  m->codes = fvl_alloc((size_t)KT * o->dim * sizeof(float));
  m->W1 = fvl_alloc((size_t)m->H * m->din * sizeof(float));
  m->b1 = fvl_alloc((size_t)m->H * sizeof(float));
  m->W2 = fvl_alloc((size_t)m->D * m->H * sizeof(float));
  if (!m->codes || !m->W1 || !m->b1 || !m->W2) return -1;
  fill_normal(stream(o->seed, S_CODE), m->codes, KT * o->dim, 1.0f);
  for (int64_t k = 0; k < KT; k++) {
    float *c = m->codes + k * o->dim;
    double s = 0;
    for (int j = 0; j < o->dim; j++) s += (double)c[j] * c[j];
    float inv = (float)(1.0 / sqrt(s > 1e-30 ? s : 1e-30));
    for (int j = 0; j < o->dim; j++) c[j] *= inv;
  }
  fill_normal(stream(o->seed, S_W1), m->W1, (int64_t)m->H * m->din, 1.0f);
  if (o->factors > 0) {
    float sa = (float)(1.0 / sqrt((double)o->factors));
    for (int h = 0; h < m->H; h++)
      for (int j = o->dim; j < m->din; j++) m->W1[(int64_t)h * m->din + j] *= sa;
  }
  fill_normal(stream(o->seed, S_B1), m->b1, m->H, 0.5f);
  fill_normal(stream(o->seed, S_W2), m->W2, (int64_t)m->D * m->H, 1.0f);
  if (o->map_h > 0) {
    /* each hidden unit paints a smooth, left-right symmetric map */
    int h = o->map_h, w = o->map_w;
    int r = (h < w ? h : w) / 6;
    if (r < 1) r = 1;
    float *col = malloc((size_t)h * w * sizeof(float));
    float *tmp = malloc((size_t)(h > w ? h : w) * sizeof(float));
    if (!col || !tmp) { free(col); free(tmp); return fvl_err(FN ": out of memory"); }
    for (int u = 0; u < m->H; u++) {
      for (int p = 0; p < h * w; p++) col[p] = m->W2[(int64_t)p * m->H + u];
      for (int y = 0; y < h; y++) box_blur_row(col + y * w, w, 1, r, tmp);
      for (int x = 0; x < w; x++) box_blur_row(col + x, h, w, r, tmp);
      for (int y = 0; y < h; y++)
        for (int x = 0; x < w / 2; x++) {
          float a = col[y * w + x], b = col[y * w + w - 1 - x];
          col[y * w + x] = col[y * w + w - 1 - x] = 0.5f * (a + b);
        }
      for (int p = 0; p < h * w; p++) m->W2[(int64_t)p * m->H + u] = col[p];
    }
    free(col);
    free(tmp);
  }
  return 0;
}
static void free_model(model *m, const fvl_synth_opts *o) {
  int64_t KT = o->identities + o->test_identities;
  fvl_dealloc(m->codes, (size_t)KT * o->dim * sizeof(float));
  fvl_dealloc(m->W1, (size_t)m->H * m->din * sizeof(float));
  fvl_dealloc(m->b1, (size_t)m->H * sizeof(float));
  fvl_dealloc(m->W2, (size_t)m->D * m->H * sizeof(float));
}

/* latent draws per sample: dim (jitter) + factors (nuisance) + 3 (gain, offset, pose) */
/* ---- per-sample draws. Latent: dim (jitter) + factors (nuisance) + 3 (gain, offset, pose)
 * normals from stream S_LATENT, pairs at counters g*ceil(L/2)+p. Noise: approximately normal
 * values (Irwin–Hall: sum of four 16-bit uniforms, variance 1), one 64-bit draw each, from
 * stream S_NOISE at counter g*D+j — cheap, and noise needs no exact Gaussian tails. */
static int latent_len(const fvl_synth_opts *o) { return o->dim + o->factors + 3; }
static void latent_draws(uint64_t seed, uint64_t g, int L, float *v) {
  uint64_t pairs = (uint64_t)(L + 1) / 2;
  for (uint64_t p = 0; p < pairs; p++) {
    float a, b;
    normal2(seed, g * pairs + p, &a, &b);
    v[2 * p] = a;
    if ((int)(2 * p + 1) < L) v[2 * p + 1] = b;
  }
}
static inline float noise_at(uint64_t seed, uint64_t ctr) {
  uint64_t r = fvl_rng_bits(seed, ctr);
  uint32_t s = (uint32_t)(r & 0xffff) + (uint32_t)((r >> 16) & 0xffff) +
               (uint32_t)((r >> 32) & 0xffff) + (uint32_t)(r >> 48);
  /* each term uniform on [0,1) (k/65536 + 1/131072): mean 2, variance 4/12 */
  return ((float)s * (1.0f / 65536.0f) + 4.0f / 131072.0f - 2.0f) * 1.7320508f;
}

enum { BLOCK = 256 };   /* rows per GEMM call: fixed, so results do not depend on threads */
typedef struct {
  float *Z, *Hb, *lat, *row;
} scratch;

/* renders rows g0..g0+n-1 (n <= BLOCK; identity code index ident[i]) into out (n × D).
 * post = 0: the clean rendering only (used for calibration) */
static void render_block(const fvl_synth_opts *o, const model *m, int64_t g0, int64_t n,
                         const int32_t *ident, float w2scale, int post, scratch *sc, float *out) {
  int dim = o->dim, din = m->din, L = latent_len(o), D = m->D, H = m->H;
  uint64_t sl = stream(o->seed, S_LATENT), sn = stream(o->seed, S_NOISE);
  float jit = o->spread / sqrtf((float)dim);
  for (int64_t i = 0; i < n; i++) {
    float *z = sc->Z + i * din, *lat = sc->lat + i * L;
    latent_draws(sl, (uint64_t)(g0 + i), L, lat);
    const float *c = m->codes + (int64_t)ident[i] * dim;
    double s = 0;
    for (int j = 0; j < dim; j++) {
      z[j] = c[j] + jit * lat[j];
      s += (double)z[j] * z[j];
    }
    float inv = (float)(1.0 / sqrt(s > 1e-30 ? s : 1e-30));
    for (int j = 0; j < dim; j++) z[j] *= inv;
    for (int j = 0; j < o->factors; j++) z[dim + j] = o->nuisance * lat[dim + j];
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, BLOCK, H, din, 1.0f, sc->Z, din, m->W1, din,
              0.0f, sc->Hb, H);
  for (int64_t i = 0; i < n; i++)
    for (int h = 0; h < H; h++) sc->Hb[i * H + h] = tanhf(sc->Hb[i * H + h] + m->b1[h]);
  if (n == BLOCK) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, BLOCK, D, H, w2scale, sc->Hb, H, m->W2, H,
                0.0f, out, D);
  } else {   /* last partial block: the same GEMM shape, into scratch */
    float *tmp = sc->row + o->map_w;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, BLOCK, D, H, w2scale, sc->Hb, H, m->W2, H,
                0.0f, tmp, D);
    memcpy(out, tmp, (size_t)(n * D) * sizeof(float));
  }
  if (!post) return;
  int base = dim + o->factors, h = o->map_h, w = o->map_w;
  for (int64_t i = 0; i < n; i++) {
    uint64_t g = (uint64_t)(g0 + i);
    const float *lat = sc->lat + i * L;
    float *x = out + i * D;
    if (h > 0 && o->nuisance > 0) {
      /* pose: horizontal shift by nuisance * N(0,1) * w/8 pixels, linear interpolation with
       * edge clamping; the maps are symmetric, so a mirror image is the opposite pose */
      float sh = o->nuisance * lat[base + 2] * (float)w / 8.0f;
      for (int y = 0; y < h; y++) {
        float *r = x + (int64_t)y * w;
        for (int xx = 0; xx < w; xx++) {
          float src = (float)xx - sh;
          float fl = floorf(src);
          int x0 = (int)fl;
          float t = src - fl;
          int a = x0 < 0 ? 0 : (x0 >= w ? w - 1 : x0);
          int b = x0 + 1 < 0 ? 0 : (x0 + 1 >= w ? w - 1 : x0 + 1);
          sc->row[xx] = (1 - t) * r[a] + t * r[b];
        }
        memcpy(r, sc->row, (size_t)w * sizeof(float));
      }
    }
    float gain = expf(o->illumination * lat[base]);
    float off = o->illumination * lat[base + 1];
    if (o->noise > 0)
      for (int j = 0; j < D; j++) x[j] = gain * x[j] + off + o->noise * noise_at(sn, g * (uint64_t)D + (uint64_t)j);
    else
      for (int j = 0; j < D; j++) x[j] = gain * x[j] + off;
  }
}

static int scratch_alloc(scratch *sc, const fvl_synth_opts *o, const model *m) {
  sc->Z = calloc((size_t)BLOCK * m->din, sizeof(float));
  sc->Hb = calloc((size_t)BLOCK * m->H, sizeof(float));
  sc->lat = malloc((size_t)BLOCK * latent_len(o) * sizeof(float));
  sc->row = malloc(((size_t)o->map_w + (size_t)BLOCK * m->D) * sizeof(float));
  return sc->Z && sc->Hb && sc->lat && sc->row ? 0 : -1;
}
static void scratch_free(scratch *sc) {
  free(sc->Z); free(sc->Hb); free(sc->lat); free(sc->row);
}

/* the identity (0-based) of every row: train rows by identity (counts from fvl_synth_sizes),
 * then the test identities K.. */
static int32_t *row_identities(const fvl_synth_opts *o, int64_t ntr, int64_t nte) {
  int64_t K = o->identities;
  int64_t *counts = malloc((size_t)K * sizeof *counts);
  int32_t *ident = malloc((size_t)(ntr + nte) * sizeof *ident);
  if (!counts || !ident) {
    free(counts);
    free(ident);
    fvl_err(FN ": out of memory");
    return NULL;
  }
  fvl_synth_sizes(o, counts, NULL, NULL);
  int64_t g = 0;
  for (int64_t k = 0; k < K; k++)
    for (int64_t c = 0; c < counts[k]; c++) ident[g++] = (int32_t)k;
  for (int64_t k = 0; k < o->test_identities; k++)
    for (int64_t c = 0; c < o->test_per_identity; c++) ident[g++] = (int32_t)(K + k);
  free(counts);
  return ident;
}

/* the scale of W2 that gives clean outputs a mean square of 1 (measured on the first 512 train
 * rows, rendered into xtr) */
static int calibrate(const fvl_synth_opts *o, const model *m, int64_t ntr, const int32_t *ident, float *xtr,
                     float *w2scale) {
  scratch sc;
  if (scratch_alloc(&sc, o, m)) { scratch_free(&sc); return fvl_err(FN ": out of memory"); }
  double ss = 0;
  int64_t nc = ntr < 512 ? ntr : 512;
  for (int64_t g0 = 0; g0 < nc; g0 += BLOCK) {
    int64_t n = nc - g0 < BLOCK ? nc - g0 : BLOCK;
    render_block(o, m, g0, n, ident + g0, 1.0f, 0, &sc, xtr + g0 * m->D);
  }
  for (int64_t i = 0; i < nc * m->D; i++) ss += (double)xtr[i] * xtr[i];
  double ms = ss / (double)(nc * m->D);
  *w2scale = ms > 1e-20 ? (float)(1.0 / sqrt(ms)) : 1.0f;
  scratch_free(&sc);
  return 0;
}

/* every train and test row, BLOCK rows at a time over nth threads; each thread runs its own
 * single-threaded GEMMs (no nested threading, no OpenBLAS threads spinning against ours) */
static int render_all(const fvl_synth_opts *o, const model *m, int64_t ntr, int64_t nte, const int32_t *ident,
                      float w2scale, float *xtr, float *xte, int nth) {
  int failed = 0;
  int64_t nbtr = (ntr + BLOCK - 1) / BLOCK, nbte = xte ? (nte + BLOCK - 1) / BLOCK : 0;
#pragma omp parallel num_threads(nth)
  {
    scratch sc;
    int ok = scratch_alloc(&sc, o, m) == 0;
    if (!ok) {
#pragma omp atomic write
      failed = 1;
    }
#pragma omp for schedule(dynamic, 4)
    for (int64_t bi = 0; bi < nbtr + nbte; bi++) {
      int f;
#pragma omp atomic read
      f = failed;
      if (!ok || f) continue;
      int64_t lo = bi < nbtr ? 0 : ntr, hi = bi < nbtr ? ntr : ntr + nte;
      int64_t g0 = lo + (bi < nbtr ? bi : bi - nbtr) * BLOCK;
      int64_t n = hi - g0 < BLOCK ? hi - g0 : BLOCK;
      float *out = (bi < nbtr ? xtr : xte) + (g0 - lo) * m->D;
      render_block(o, m, g0, n, ident + g0, w2scale, 1, &sc, out);
      if (fvl_aborted()) {
#pragma omp atomic write
        failed = 2;
      }
    }
    scratch_free(&sc);
  }
  if (failed == 1) return fvl_err(FN ": out of memory");
  if (failed == 2) { fvl_check_abort(FN); return -1; }
  return 0;
}

/* the labels: train rows keep their identity unless label noise swaps it for another one
 * (ytrue: the identity), test rows count from 0 again; all shifted by label_base */
static void write_labels(const fvl_synth_opts *o, int64_t ntr, int64_t nte, const int32_t *ident, int32_t label_base,
                         int32_t *ytr, int32_t *ytrue, int32_t *yte) {
  int64_t K = o->identities;
  uint64_t sl = stream(o->seed, S_LABEL);
  for (int64_t i = 0; i < ntr; i++) {
    int32_t k = ident[i], y = k;
    if (o->label_noise > 0 && fvl_rng_uniform_at(sl, 2 * (uint64_t)i) < o->label_noise) {
      int32_t other = (int32_t)(fvl_rng_uniform_at(sl, 2 * (uint64_t)i + 1) * (double)(K - 1));
      if (other >= K - 1) other = (int32_t)K - 2;
      y = other >= k ? other + 1 : other;
    }
    ytr[i] = y + label_base;
    if (ytrue) ytrue[i] = k + label_base;
  }
  if (yte)
    for (int64_t i = 0; i < nte; i++) yte[i] = (int32_t)(ident[ntr + i] - K) + label_base;
}

int fvl_synth_generate(const fvl_synth_opts *o, int32_t label_base, float *xtr, int32_t *ytr,
                       int32_t *ytrue, float *xte, int32_t *yte) {
  int64_t ntr, nte;
  if (fvl_synth_sizes(o, NULL, &ntr, &nte)) return -1;
  if (!xtr || !ytr) return fvl_err(FN ": train outputs are NULL");
  if (nte > 0 && (!xte) != (!yte)) return fvl_err(FN ": give both test outputs or neither");
  int32_t *ident = row_identities(o, ntr, nte);
  if (!ident) return -1;
  model m = {0};
  int rc = -1;
  int nth = fvl_get_threads();
  if (build_model(o, &m)) goto done;
  openblas_set_num_threads(1);
  float w2scale = 1.0f;
  rc = calibrate(o, &m, ntr, ident, xtr, &w2scale);
  if (rc == 0) rc = render_all(o, &m, ntr, nte, ident, w2scale, xtr, xte, nth);
  openblas_set_num_threads(nth);
  if (rc == 0) write_labels(o, ntr, nte, ident, label_base, ytr, ytrue, yte);
done:
  if (m.codes || m.W1 || m.b1 || m.W2) free_model(&m, o);
  free(ident);
  return rc;
}
