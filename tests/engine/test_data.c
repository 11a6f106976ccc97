/* test_data.c — IDX reader, synthetic_faces generator, batch gather. */
#include <check.h>
#include "fvl_check.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>
#include "core.h"
#include "rng.h"
#include "data/data.h"

#define FMNIST "/usr/share/datasets/fashion-mnist"

static char tmpdir[256];
static void make_tmpdir(void) {
  snprintf(tmpdir, sizeof tmpdir, "/tmp/fvl_test_data_XXXXXX");
  ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}
static void remove_tmpdir(void) {
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  if (system(cmd)) {}
}
static const char *tpath(const char *name) {
  static char p[320];
  snprintf(p, sizeof p, "%s/%s", tmpdir, name);
  return p;
}
static void write_gz(const char *path, const void *buf, size_t n) {
  gzFile g = gzopen(path, "wb");
  ck_assert_ptr_nonnull(g);
  ck_assert_int_eq(gzwrite(g, buf, (unsigned)n), (int)n);
  gzclose(g);
}
static void write_plain(const char *path, const void *buf, size_t n) {
  FILE *f = fopen(path, "wb");
  ck_assert_ptr_nonnull(f);
  ck_assert_uint_eq(fwrite(buf, 1, n, f), n);
  fclose(f);
}
static size_t read_plain(const char *path, unsigned char *buf, size_t cap) {
  FILE *f = fopen(path, "rb");
  ck_assert_ptr_nonnull(f);
  size_t n = fread(buf, 1, cap, f);
  fclose(f);
  return n;
}
/* a 2x3x4 ubyte IDX image file with values 0..23 (+ extra trailing bytes) */
static size_t ubyte_idx(unsigned char *b, int extra) {
  unsigned char h[] = {0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4};
  memcpy(b, h, sizeof h);
  for (int i = 0; i < 24; i++) b[16 + i] = (unsigned char)(i * 10);
  for (int i = 0; i < extra; i++) b[40 + i] = 7;
  return 40 + (size_t)extra;
}

START_TEST(idx_ubyte_gz_and_plain) {
  make_tmpdir();
  unsigned char b[64];
  size_t n = ubyte_idx(b, 0);
  write_gz(tpath("a.gz"), b, n);
  write_plain(tpath("a.idx"), b, n);
  const char *paths[2] = {"a.gz", "a.idx"};
  for (int k = 0; k < 2; k++) {
    fvl_idx_info in;
    fvl_idx_file *f = fvl_idx_open(tpath(paths[k]), &in);
    ck_assert_msg(f != NULL, "%s", fvl_errmsg());
    ck_assert_int_eq(in.type, 8);
    ck_assert_int_eq(in.ndim, 3);
    ck_assert_int_eq(in.dims[0], 2);
    ck_assert_int_eq(in.dims[1], 3);
    ck_assert_int_eq(in.dims[2], 4);
    ck_assert_int_eq(in.count, 24);
    float out[24];
    ck_assert_int_eq(fvl_idx_read_f32(f, out, 1.0f / 255, 0.5f), 0);
    for (int i = 0; i < 24; i++) ck_assert_float_eq_tol(out[i], i * 10 / 255.0f + 0.5f, 1e-6);
    fvl_idx_close(f);
  }
  remove_tmpdir();
}
END_TEST

START_TEST(idx_int_types) {
  make_tmpdir();
  /* int32 labels (big-endian) → int32 with shift 1 */
  unsigned char b[64] = {0, 0, 0x0C, 1, 0, 0, 0, 3};
  int32_t vals[3] = {-2, 70000, 9};
  for (int i = 0; i < 3; i++) {
    uint32_t u = (uint32_t)vals[i];
    b[8 + 4 * i] = (unsigned char)(u >> 24);
    b[9 + 4 * i] = (unsigned char)(u >> 16);
    b[10 + 4 * i] = (unsigned char)(u >> 8);
    b[11 + 4 * i] = (unsigned char)u;
  }
  write_gz(tpath("i.gz"), b, 20);
  fvl_idx_info in;
  fvl_idx_file *f = fvl_idx_open(tpath("i.gz"), &in);
  ck_assert_ptr_nonnull(f);
  int32_t out[3];
  ck_assert_int_eq(fvl_idx_read_i32(f, out, 1), 0);
  ck_assert_int_eq(out[0], -1);
  ck_assert_int_eq(out[1], 70001);
  ck_assert_int_eq(out[2], 10);
  fvl_idx_close(f);
  /* float32 big-endian 1.5, -0.25; int32 output refused */
  unsigned char c[16] = {0, 0, 0x0D, 1, 0, 0, 0, 2, 0x3f, 0xc0, 0, 0, 0xbe, 0x80, 0, 0};
  write_gz(tpath("f.gz"), c, 16);
  f = fvl_idx_open(tpath("f.gz"), &in);
  ck_assert_ptr_nonnull(f);
  float fo[2];
  ck_assert_int_eq(fvl_idx_read_i32(f, out, 0), -1);
  ck_assert_ptr_nonnull(strstr(fvl_errmsg(), "float32"));
  fvl_idx_close(f);
  f = fvl_idx_open(tpath("f.gz"), &in);
  ck_assert_int_eq(fvl_idx_read_f32(f, fo, 1, 0), 0);
  ck_assert_float_eq(fo[0], 1.5f);
  ck_assert_float_eq(fo[1], -0.25f);
  fvl_idx_close(f);
  remove_tmpdir();
}
END_TEST

START_TEST(idx_errors) {
  make_tmpdir();
  fvl_idx_info in;
  /* missing */
  ck_assert_ptr_null(fvl_idx_open(tpath("nope.gz"), &in));
  ck_assert_ptr_nonnull(strstr(fvl_errmsg(), "cannot open"));
  ck_assert_ptr_nonnull(strstr(fvl_errmsg(), "nope.gz"));
  ck_assert_int_eq(fvl_idx_last_was_open_error(), 1);
  ck_assert_ptr_null(fvl_idx_open(tmpdir, &in));
  ck_assert_ptr_nonnull(strstr(fvl_errmsg(), "it is a directory"));
  ck_assert_int_eq(fvl_idx_last_was_open_error(), 1);
  /* foreign: a PNG signature */
  unsigned char png[16] = {0x89, 'P', 'N', 'G', 13, 10, 26, 10, 0, 0, 0, 13, 'I', 'H', 'D', 'R'};
  write_plain(tpath("x.png"), png, 16);
  ck_assert_ptr_null(fvl_idx_open(tpath("x.png"), &in));
  ck_assert_ptr_nonnull(strstr(fvl_errmsg(), "is not an IDX file"));
  ck_assert_ptr_nonnull(strstr(fvl_errmsg(), "89 50 4e 47"));
  ck_assert_int_eq(fvl_idx_last_was_open_error(), 0);
  /* unknown type code */
  unsigned char bad[8] = {0, 0, 0x07, 1, 0, 0, 0, 1};
  write_gz(tpath("t.gz"), bad, 8);
  ck_assert_ptr_null(fvl_idx_open(tpath("t.gz"), &in));
  ck_assert_ptr_nonnull(strstr(fvl_errmsg(), "is not an IDX file"));
  /* empty file and a cut header */
  write_plain(tpath("e"), png, 0);
  ck_assert_ptr_null(fvl_idx_open(tpath("e"), &in));
  ck_assert_ptr_nonnull(strstr(fvl_errmsg(), "is not an IDX file"));
  unsigned char b[64];
  ubyte_idx(b, 0);
  write_gz(tpath("h.gz"), b, 10);
  ck_assert_ptr_null(fvl_idx_open(tpath("h.gz"), &in));
  ck_assert_ptr_nonnull(strstr(fvl_errmsg(), "truncated"));
  /* data shorter than the header says */
  write_gz(tpath("s.gz"), b, 30);
  fvl_idx_file *f = fvl_idx_open(tpath("s.gz"), &in);
  ck_assert_ptr_nonnull(f);
  float out[24];
  ck_assert_int_eq(fvl_idx_read_f32(f, out, 1, 0), -1);
  ck_assert_ptr_nonnull(strstr(fvl_errmsg(), "truncated"));
  ck_assert_ptr_nonnull(strstr(fvl_errmsg(), "2x3x4 ubyte"));
  ck_assert_ptr_nonnull(strstr(fvl_errmsg(), "only 14"));
  fvl_idx_close(f);
  /* trailing bytes: not the shape it claims */
  size_t n = ubyte_idx(b, 5);
  write_gz(tpath("l.gz"), b, n);
  f = fvl_idx_open(tpath("l.gz"), &in);
  ck_assert_int_eq(fvl_idx_read_f32(f, out, 1, 0), -1);
  ck_assert_ptr_nonnull(strstr(fvl_errmsg(), "5 bytes after"));
  fvl_idx_close(f);
  remove_tmpdir();
}
END_TEST

/* a real gzip stream damaged in the middle or cut short must fail, never crash */
START_TEST(idx_corrupt_gzip) {
  make_tmpdir();
  enum { N = 20000 };
  unsigned char *b = malloc(16 + N), *z = malloc(2 * N + 1024);
  unsigned char h[] = {0, 0, 8, 3, 0, 0, 0, 5, 0, 0, 0, 40, 0, 0, 0, 100};
  memcpy(b, h, 16);
  fvl_rng r = {42, 0};
  for (int i = 0; i < N; i++) b[16 + i] = (unsigned char)fvl_rng_int(&r, 0, 40); /* compressible */
  write_gz(tpath("ok.gz"), b, 16 + N);
  size_t zn = read_plain(tpath("ok.gz"), z, 2 * N + 1024);
  ck_assert_uint_gt(zn, 200);
  fvl_idx_info in;
  float *out = malloc(N * sizeof(float));
  /* sanity: intact file reads */
  fvl_idx_file *f = fvl_idx_open(tpath("ok.gz"), &in);
  ck_assert_int_eq(fvl_idx_read_f32(f, out, 1, 0), 0);
  fvl_idx_close(f);
  /* cut short */
  write_plain(tpath("cut.gz"), z, zn / 2);
  f = fvl_idx_open(tpath("cut.gz"), &in);
  ck_assert_ptr_nonnull(f);
  ck_assert_int_eq(fvl_idx_read_f32(f, out, 1, 0), -1);
  ck_assert_msg(strstr(fvl_errmsg(), "truncated") || strstr(fvl_errmsg(), "corrupt"), "%s",
                fvl_errmsg());
  fvl_idx_close(f);
  /* bytes flipped in the middle of the deflate stream */
  for (size_t i = zn / 2; i < zn / 2 + 8; i++) z[i] ^= 0x5a;
  write_plain(tpath("bad.gz"), z, zn);
  f = fvl_idx_open(tpath("bad.gz"), &in);
  if (f) {
    ck_assert_int_eq(fvl_idx_read_f32(f, out, 1, 0), -1);
    ck_assert_msg(strstr(fvl_errmsg(), "corrupt") || strstr(fvl_errmsg(), "truncated"), "%s",
                  fvl_errmsg());
    fvl_idx_close(f);
  }
  /* damaged CRC in the gzip trailer */
  for (size_t i = zn / 2; i < zn / 2 + 8; i++) z[i] ^= 0x5a;
  z[zn - 6] ^= 0xff;
  write_plain(tpath("crc.gz"), z, zn);
  f = fvl_idx_open(tpath("crc.gz"), &in);   /* zlib may notice while reading the header */
  if (f) ck_assert_int_eq(fvl_idx_read_f32(f, out, 1, 0), -1);
  ck_assert_msg(strstr(fvl_errmsg(), "corrupt") != NULL, "%s", fvl_errmsg());
  fvl_idx_close(f);
  free(out);
  free(b);
  free(z);
  remove_tmpdir();
}
END_TEST

START_TEST(fashion_mnist_files) {
  if (access(FMNIST "/t10k-labels-idx1-ubyte.gz", R_OK) != 0) {
    fprintf(stderr, "SKIP: dataset-fashion-mnist is not installed\n");
    return;
  }
  const char *sets[2][2] = {{FMNIST "/train-images-idx3-ubyte.gz", FMNIST "/train-labels-idx1-ubyte.gz"},
                            {FMNIST "/t10k-images-idx3-ubyte.gz", FMNIST "/t10k-labels-idx1-ubyte.gz"}};
  const int64_t ns[2] = {60000, 10000};
  for (int s = 0; s < 2; s++) {
    fvl_idx_info in;
    fvl_idx_file *f = fvl_idx_open(sets[s][1], &in);
    ck_assert_msg(f != NULL, "%s", fvl_errmsg());
    ck_assert_int_eq(in.ndim, 1);
    ck_assert_int_eq(in.dims[0], ns[s]);
    int32_t *y = malloc((size_t)ns[s] * 4);
    ck_assert_int_eq(fvl_idx_read_i32(f, y, 1), 0);
    fvl_idx_close(f);
    int64_t cnt[11] = {0};
    for (int64_t i = 0; i < ns[s]; i++) {
      ck_assert(y[i] >= 1 && y[i] <= 10);
      cnt[y[i]]++;
    }
    for (int c = 1; c <= 10; c++) ck_assert_int_eq(cnt[c], ns[s] / 10);   /* balanced */
    free(y);
    f = fvl_idx_open(sets[s][0], &in);
    ck_assert_msg(f != NULL, "%s", fvl_errmsg());
    ck_assert_int_eq(in.ndim, 3);
    ck_assert_int_eq(in.dims[0], ns[s]);
    ck_assert_int_eq(in.dims[1], 28);
    ck_assert_int_eq(in.dims[2], 28);
    if (s == 1) {
      float *x = malloc((size_t)in.count * 4);
      ck_assert_int_eq(fvl_idx_read_f32(f, x, 1.0f / 255, 0), 0);
      double sum = 0, mn = 1, mx = 0;
      for (int64_t i = 0; i < in.count; i++) {
        sum += x[i];
        if (x[i] < mn) mn = x[i];
        if (x[i] > mx) mx = x[i];
      }
      ck_assert_double_eq(mn, 0);
      ck_assert_double_eq(mx, 1);
      /* Fashion-MNIST pixel mean is about 0.286 */
      ck_assert_double_eq_tol(sum / (double)in.count, 0.286, 0.01);
      free(x);
    }
    fvl_idx_close(f);
  }
}
END_TEST

/* ---------------------------------------------------------------- synthetic faces */
typedef struct {
  fvl_synth_opts o;
  int64_t ntr, nte;
  float *xtr, *xte;
  int32_t *ytr, *ytrue, *yte;
} synth;
static void synth_make(synth *s, const fvl_synth_opts *o) {
  s->o = *o;
  ck_assert_msg(fvl_synth_sizes(o, NULL, &s->ntr, &s->nte) == 0, "%s", fvl_errmsg());
  s->xtr = malloc((size_t)(s->ntr * o->out_dim) * 4);
  s->xte = malloc((size_t)(s->nte * o->out_dim + 1) * 4);
  s->ytr = malloc((size_t)s->ntr * 4);
  s->ytrue = malloc((size_t)s->ntr * 4);
  s->yte = malloc((size_t)s->nte * 4 + 4);
  ck_assert_msg(fvl_synth_generate(o, 0, s->xtr, s->ytr, s->ytrue, s->xte, s->yte) == 0, "%s",
                fvl_errmsg());
}
static void synth_free(synth *s) {
  free(s->xtr); free(s->xte); free(s->ytr); free(s->ytrue); free(s->yte);
}
static fvl_synth_opts small_opts(void) {
  fvl_synth_opts o;
  fvl_synth_defaults(&o);
  o.identities = 300;
  o.per_identity = 10;
  o.test_identities = 100;
  o.test_per_identity = 10;
  o.out_dim = 64;
  o.hidden = 128;
  o.seed = 7;
  return o;
}

START_TEST(synth_deterministic) {
  fvl_synth_opts o = small_opts();
  o.long_tail = 1.0f;
  o.label_noise = 0.1f;
  synth a, b, c;
  fvl_set_threads(1);
  synth_make(&a, &o);
  fvl_set_threads(2);
  synth_make(&b, &o);
  ck_assert_int_eq(a.ntr, b.ntr);
  ck_assert_int_eq(memcmp(a.xtr, b.xtr, (size_t)(a.ntr * o.out_dim) * 4), 0);
  ck_assert_int_eq(memcmp(a.xte, b.xte, (size_t)(a.nte * o.out_dim) * 4), 0);
  ck_assert_int_eq(memcmp(a.ytr, b.ytr, (size_t)a.ntr * 4), 0);
  o.seed = 8;
  synth_make(&c, &o);
  int64_t n = a.ntr < c.ntr ? a.ntr : c.ntr, same = 0;
  for (int64_t i = 0; i < n * o.out_dim; i++) same += a.xtr[i] == c.xtr[i];
  ck_assert_int_lt(same, n * o.out_dim / 100);
  /* values are finite and of unit scale */
  double ss = 0;
  for (int64_t i = 0; i < a.ntr * o.out_dim; i++) {
    ck_assert(isfinite(a.xtr[i]));
    ss += (double)a.xtr[i] * a.xtr[i];
  }
  double rms = sqrt(ss / (double)(a.ntr * o.out_dim));
  ck_assert_double_gt(rms, 0.5);
  ck_assert_double_lt(rms, 2.0);
  synth_free(&a);
  synth_free(&b);
  synth_free(&c);
  fvl_set_threads(0);
}
END_TEST

START_TEST(synth_counts_labels) {
  fvl_synth_opts o = small_opts();
  o.long_tail = 1.0f;
  o.label_noise = 0.2f;
  int64_t counts[300], ntr, nte;
  ck_assert_int_eq(fvl_synth_sizes(&o, counts, &ntr, &nte), 0);
  int64_t sum = 0, mn = 1 << 30, mx = 0;
  for (int k = 0; k < 300; k++) {
    sum += counts[k];
    if (counts[k] < mn) mn = counts[k];
    if (counts[k] > mx) mx = counts[k];
  }
  ck_assert_int_eq(sum, ntr);
  ck_assert_int_eq(nte, 1000);
  ck_assert_int_ge(mn, 2);
  /* Zipf with exponent 1 over 300 identities: the head gets ~ 3000/H(300) ≈ 477 */
  ck_assert_int_gt(mx, 300);
  ck_assert(llabs(ntr - 3000) < 300);
  synth s;
  synth_make(&s, &o);
  int64_t flipped = 0, pos = 0;
  for (int k = 0; k < 300; k++)
    for (int64_t c = 0; c < counts[k]; c++, pos++) {
      ck_assert_int_eq(s.ytrue[pos], k);       /* grouped by identity, in order */
      ck_assert(s.ytr[pos] >= 0 && s.ytr[pos] < 300);
      flipped += s.ytr[pos] != k;
    }
  double frac = (double)flipped / (double)ntr;
  ck_assert_double_gt(frac, 0.16);
  ck_assert_double_lt(frac, 0.24);
  for (int64_t i = 0; i < nte; i++) ck_assert_int_eq(s.yte[i], i / 10);
  synth_free(&s);
  /* balanced without long_tail; errors name the option */
  o.long_tail = 0;
  ck_assert_int_eq(fvl_synth_sizes(&o, counts, &ntr, &nte), 0);
  ck_assert_int_eq(ntr, 3000);
  o.label_noise = 1.5f;
  ck_assert_int_eq(fvl_synth_sizes(&o, NULL, &ntr, &nte), -1);
  ck_assert_str_eq(fvl_errmsg(), "synthetic_faces: label_noise = 1.5 (expected 0 <= label_noise < 1)");
  o.label_noise = 0;
  o.identities = 1;
  ck_assert_int_eq(fvl_synth_sizes(&o, NULL, &ntr, &nte), -1);
  ck_assert_ptr_nonnull(strstr(fvl_errmsg(), "identities = 1"));
}
END_TEST

/* verification AUC of cosine scores over all test pairs (Mann–Whitney) */
static int cmpf(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return (x > y) - (x < y);
}
static double pair_auc(const float *z, const int32_t *y, int64_t n, int d) {
  float *nrm = malloc((size_t)n * 4);
  for (int64_t i = 0; i < n; i++) {
    double s = 0;
    for (int j = 0; j < d; j++) s += (double)z[i * d + j] * z[i * d + j];
    nrm[i] = (float)sqrt(s);
  }
  int64_t np = 0, nn = 0, cap = n * (n - 1) / 2;
  float *pos = malloc((size_t)cap * 4), *neg = malloc((size_t)cap * 4);
  for (int64_t i = 0; i < n; i++)
    for (int64_t k = i + 1; k < n; k++) {
      double s = 0;
      for (int j = 0; j < d; j++) s += (double)z[i * d + j] * z[k * d + j];
      float c = (float)(s / (nrm[i] * nrm[k]));
      if (y[i] == y[k]) pos[np++] = c; else neg[nn++] = c;
    }
  qsort(neg, (size_t)nn, 4, cmpf);
  double wins = 0;
  for (int64_t p = 0; p < np; p++) {
    int64_t lo = 0, hi = nn;   /* count of neg < pos[p] */
    while (lo < hi) { int64_t m = (lo + hi) / 2; if (neg[m] < pos[p]) lo = m + 1; else hi = m; }
    wins += (double)lo;
  }
  free(nrm); free(pos); free(neg);
  return wins / ((double)np * (double)nn);
}
/* in-place Cholesky of a d×d SPD matrix (lower) */
static void cholesky(double *A, int d) {
  for (int j = 0; j < d; j++) {
    double s = A[j * d + j];
    for (int k = 0; k < j; k++) s -= A[j * d + k] * A[j * d + k];
    ck_assert(s > 0);
    A[j * d + j] = sqrt(s);
    for (int i = j + 1; i < d; i++) {
      double t = A[i * d + j];
      for (int k = 0; k < j; k++) t -= A[i * d + k] * A[j * d + k];
      A[i * d + j] = t / A[j * d + j];
    }
  }
}

/* The transfer property: a linear model fitted on train identities only (within-class
 * whitening, i.e. LDA-like metric learning) verifies unseen test identities better than the
 * raw input, and both are far from chance while not trivially perfect. */
START_TEST(synth_transfer) {
  fvl_synth_opts o = small_opts();
  synth s;
  synth_make(&s, &o);
  int d = o.out_dim;
  int64_t K = o.identities;
  /* class means and within-class scatter on the train split */
  double *mu = calloc((size_t)(K * d), 8), *Sw = calloc((size_t)(d * d), 8), *gm = calloc(d, 8);
  int64_t *cnt = calloc((size_t)K, 8);
  for (int64_t i = 0; i < s.ntr; i++) {
    cnt[s.ytr[i]]++;
    for (int j = 0; j < d; j++) { mu[s.ytr[i] * d + j] += s.xtr[i * d + j]; gm[j] += s.xtr[i * d + j]; }
  }
  for (int64_t k = 0; k < K; k++) for (int j = 0; j < d; j++) mu[k * d + j] /= (double)cnt[k];
  for (int j = 0; j < d; j++) gm[j] /= (double)s.ntr;
  double *r = malloc((size_t)d * 8);
  for (int64_t i = 0; i < s.ntr; i++) {
    for (int j = 0; j < d; j++) r[j] = s.xtr[i * d + j] - mu[s.ytr[i] * d + j];
    for (int a = 0; a < d; a++) for (int b = 0; b <= a; b++) Sw[a * d + b] += r[a] * r[b];
  }
  double tr = 0;
  for (int a = 0; a < d; a++) { for (int b = 0; b <= a; b++) Sw[a * d + b] /= (double)s.ntr; tr += Sw[a * d + a]; }
  for (int a = 0; a < d; a++) Sw[a * d + a] += 1e-3 * tr / d;
  cholesky(Sw, d);
  /* z = L^{-1} (x - mean) for the test identities */
  float *z = malloc((size_t)(s.nte * d) * 4);
  for (int64_t i = 0; i < s.nte; i++) {
    for (int a = 0; a < d; a++) {
      double t = s.xte[i * d + a] - gm[a];
      for (int k = 0; k < a; k++) t -= Sw[a * d + k] * r[k];
      r[a] = t / Sw[a * d + a];
      z[i * d + a] = (float)r[a];
    }
  }
  double auc_raw = pair_auc(s.xte, s.yte, s.nte, d);
  double auc_fit = pair_auc(z, s.yte, s.nte, d);
  fprintf(stderr, "synthetic_faces transfer: test-identity verification AUC raw %.4f, "
          "train-fitted whitening %.4f (chance 0.5)\n", auc_raw, auc_fit);
  ck_assert_double_gt(auc_raw, 0.6);      /* identity is present in the input */
  ck_assert_double_lt(auc_raw, 0.97);     /* but not trivially separable */
  ck_assert_double_gt(auc_fit, auc_raw + 0.05);  /* learning on train ids transfers */
  free(mu); free(Sw); free(gm); free(cnt); free(r); free(z);
  synth_free(&s);
}
END_TEST

START_TEST(synth_maps_and_speed) {
  fvl_synth_opts o;
  fvl_synth_defaults(&o);
  o.identities = 50;
  o.per_identity = 4;
  o.test_identities = 0;
  o.map_h = 16;
  o.map_w = 12;
  o.out_dim = 16 * 12;
  o.noise = 0;
  o.nuisance = 0;
  o.illumination = 0;
  synth s;
  synth_make(&s, &o);
  ck_assert_int_eq(s.nte, 0);
  /* without pose shift the maps are left-right symmetric (so a flip keeps the identity) */
  for (int64_t i = 0; i < s.ntr; i++)
    for (int y = 0; y < 16; y++)
      for (int x = 0; x < 6; x++)
        ck_assert_float_eq_tol(s.xtr[i * 192 + y * 12 + x], s.xtr[i * 192 + y * 12 + 11 - x], 1e-4);
  synth_free(&s);
  o.map_w = 13;
  ck_assert_int_eq(fvl_synth_sizes(&o, NULL, NULL, NULL), -1);
  ck_assert_ptr_nonnull(strstr(fvl_errmsg(), "out_dim = 192 but the map is 16x13"));

  /* speed: 100k samples × 512 */
  fvl_synth_defaults(&o);
  o.identities = 5000;
  o.test_identities = 0;
  o.out_dim = 512;
  int64_t ntr;
  ck_assert_int_eq(fvl_synth_sizes(&o, NULL, &ntr, NULL), 0);
  ck_assert_int_eq(ntr, 100000);
  float *x = malloc((size_t)ntr * 512 * 4);
  int32_t *y = malloc((size_t)ntr * 4);
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  clock_t c0 = clock();
  ck_assert_int_eq(fvl_synth_generate(&o, 1, x, y, NULL, NULL, NULL), 0);
  double cpu = (double)(clock() - c0) / CLOCKS_PER_SEC;
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double sec = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
  fprintf(stderr, "synthetic_faces: 100000 x 512 in %.3f s wall, %.3f CPU-s (%d threads)\n", sec,
          cpu, fvl_get_threads());
  ck_assert_int_eq(y[0], 1);
  ck_assert_int_eq(y[ntr - 1], 5000);
#ifndef FVL_SANITIZE
  /* CPU time, not wall time: the build machines are shared. Typical: about 1 CPU-second. */
  ck_assert_double_lt(cpu, 5.0);
#endif
  free(x);
  free(y);
}
END_TEST

/* ---------------------------------------------------------------- gather */
START_TEST(gather_rows_and_images) {
  float src[3 * 4];
  for (int i = 0; i < 12; i++) src[i] = (float)i;
  int32_t idx[2] = {2, 0};
  float out[8];
  ck_assert_int_eq(fvl_data_gather_f32(src, 3, 4, idx, 2, out), 0);
  for (int j = 0; j < 4; j++) {
    ck_assert_float_eq(out[j], 8 + j);
    ck_assert_float_eq(out[4 + j], j);
  }
  int32_t lab[3] = {0, 1, 2}, lo[2];
  ck_assert_int_eq(fvl_data_gather_i32(lab, 3, 1, idx, 2, 1, lo), 0);
  ck_assert_int_eq(lo[0], 3);
  ck_assert_int_eq(lo[1], 1);
  int32_t bad[2] = {0, 3};
  ck_assert_int_eq(fvl_data_gather_f32(src, 3, 4, bad, 2, out), -1);
  ck_assert_str_eq(fvl_errmsg(), "data_gather: index[1] = 3 is outside 0..2 (0-based)");

  /* one 1×3×3 image 1..9 */
  float img[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, o[9];
  int32_t i0 = 0, dy = 1, dx = -1, zero = 0;
  uint8_t fl = 1, nf = 0;
  ck_assert_int_eq(fvl_data_gather_images(img, 1, 1, 3, 3, &i0, 1, &fl, NULL, NULL, 0, o), 0);
  float flipped[9] = {3, 2, 1, 6, 5, 4, 9, 8, 7};
  for (int i = 0; i < 9; i++) ck_assert_float_eq(o[i], flipped[i]);
  /* window moved down 1, left 1 in the zero-padded image */
  ck_assert_int_eq(fvl_data_gather_images(img, 1, 1, 3, 3, &i0, 1, &nf, &dy, &dx, 1, o), 0);
  float shifted[9] = {0, 4, 5, 0, 7, 8, 0, 0, 0};
  for (int i = 0; i < 9; i++) ck_assert_float_eq(o[i], shifted[i]);
  /* crop then mirror */
  ck_assert_int_eq(fvl_data_gather_images(img, 1, 1, 3, 3, &i0, 1, &fl, &dy, &dx, 1, o), 0);
  float both[9] = {5, 4, 0, 8, 7, 0, 0, 0, 0};
  for (int i = 0; i < 9; i++) ck_assert_float_eq(o[i], both[i]);
  ck_assert_int_eq(fvl_data_gather_images(img, 1, 1, 3, 3, &i0, 1, NULL, &dy, &zero, 0, o), -1);
  ck_assert_ptr_nonnull(strstr(fvl_errmsg(), "outside -0..0"));
}
END_TEST

int main(void) {
  Suite *s = suite_create("data");
  TCase *tc = tcase_create("data");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, idx_ubyte_gz_and_plain);
  tcase_add_test(tc, idx_int_types);
  tcase_add_test(tc, idx_errors);
  tcase_add_test(tc, idx_corrupt_gzip);
  tcase_add_test(tc, fashion_mnist_files);
  tcase_add_test(tc, synth_deterministic);
  tcase_add_test(tc, synth_counts_labels);
  tcase_add_test(tc, synth_transfer);
  tcase_add_test(tc, synth_maps_and_speed);
  tcase_add_test(tc, gather_rows_and_images);
  suite_add_tcase(s, tc);
  return fvl_check_run(s);
}
