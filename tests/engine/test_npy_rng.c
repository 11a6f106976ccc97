/* test_npy_rng.c — .npy load/save against files written by numpy (tests/golden/npy, made by
 * make.py), damaged and foreign files, and the counter-based RNG (seeds, thread independence,
 * state round trip, distributions). */
#include <check.h>
#include "fvl_check.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <dirent.h>
#include "core.h"
#include "rng.h"
#include "tensor.h"

#ifndef FVL_TEST_DIR
#define FVL_TEST_DIR "tests"
#endif
#define GOLDEN FVL_TEST_DIR "/golden/npy/"

static char tmpdir[256];
static void make_tmpdir(void) {
  snprintf(tmpdir, sizeof tmpdir, "/tmp/fvl_npy_XXXXXX");
  ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}
static void remove_tmpdir(void) {
  DIR *d = opendir(tmpdir);
  if (d) {
    struct dirent *e;
    char p[512];
    while ((e = readdir(d))) {
      if (e->d_name[0] == '.') continue;
      snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name);
      remove(p);
    }
    closedir(d);
  }
  rmdir(tmpdir);
}
static char *tmppath(const char *name) {
  static char p[512];
  snprintf(p, sizeof p, "%s/%s", tmpdir, name);
  return p;
}
static unsigned char *read_all(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  ck_assert_msg(f != NULL, "cannot open %s", path);
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *b = malloc((size_t)len + 1);
  ck_assert_int_eq(fread(b, 1, (size_t)len, f), (size_t)len);
  fclose(f);
  *n = (size_t)len;
  return b;
}
/* the values make.py wrote: element k of a float file, of an int file */
static float fval(int64_t k) { return (float)((double)(k - 3) / 4 + 1.0 / 3); }
static int32_t ival(int64_t k) { return (int32_t)(k * 7 - 20); }

static void check_golden_tensor(const fvl_tensor *t, fvl_dtype dt, int ndim, const int64_t *size) {
  ck_assert_ptr_nonnull(t);
  ck_assert_int_eq(t->dtype, dt);
  ck_assert_int_eq(t->ndim, ndim);
  for (int d = 0; d < ndim; d++) ck_assert_int_eq(t->size[d], size[d]);
  ck_assert(fvl_is_contiguous(t));
  int64_t n = fvl_numel(t);
  for (int64_t k = 0; k < n; k++) {
    if (dt == FVL_F32) ck_assert_msg(fvl_f32(t)[k] == fval(k), "element %lld: %.9g vs %.9g", (long long)k, fvl_f32(t)[k], fval(k));
    else ck_assert_int_eq(fvl_i32(t)[k], ival(k));
  }
}

/* loads a golden file, checks its values, saves it again and compares the bytes with numpy's
 * file: byte equality means numpy reads what we write exactly as it reads its own files */
static void golden_roundtrip(const char *name, fvl_dtype dt, int ndim, const int64_t *size) {
  char src[512];
  snprintf(src, sizeof src, GOLDEN "%s.npy", name);
  fvl_tensor *t = fvl_npy_load(src);
  ck_assert_msg(t != NULL, "load %s: %s", src, fvl_errmsg());
  check_golden_tensor(t, dt, ndim, size);
  char dst[512];
  snprintf(dst, sizeof dst, "%s/ours_%s.npy", tmpdir, name);
  ck_assert_msg(fvl_npy_save(dst, t) == 0, "save: %s", fvl_errmsg());
  size_t na, nb;
  unsigned char *a = read_all(src, &na), *b = read_all(dst, &nb);
  ck_assert_msg(na == nb, "%s: numpy wrote %zu bytes, we wrote %zu", name, na, nb);
  ck_assert_msg(memcmp(a, b, na) == 0, "%s: our bytes differ from numpy's", name);
  free(a);
  free(b);
  /* and we read our own file back */
  fvl_tensor *u = fvl_npy_load(dst);
  check_golden_tensor(u, dt, ndim, size);
  fvl_release(u);
  fvl_release(t);
}

START_TEST(npy_golden_f4) {
  make_tmpdir();
  golden_roundtrip("f4_0d", FVL_F32, 0, NULL);
  golden_roundtrip("f4_1d", FVL_F32, 1, (int64_t[]){5});
  golden_roundtrip("f4_2d", FVL_F32, 2, (int64_t[]){2, 3});
  golden_roundtrip("f4_3d", FVL_F32, 3, (int64_t[]){2, 3, 4});
  golden_roundtrip("f4_empty", FVL_F32, 2, (int64_t[]){0, 3});
  remove_tmpdir();
}
END_TEST

START_TEST(npy_golden_i4) {
  make_tmpdir();
  golden_roundtrip("i4_0d", FVL_I32, 0, NULL);
  golden_roundtrip("i4_1d", FVL_I32, 1, (int64_t[]){7});
  golden_roundtrip("i4_2d", FVL_I32, 2, (int64_t[]){3, 2});
  golden_roundtrip("i4_3d", FVL_I32, 3, (int64_t[]){2, 2, 3});
  remove_tmpdir();
}
END_TEST

/* a view (transposed, narrowed) is written in C order of its logical shape */
START_TEST(npy_save_view) {
  make_tmpdir();
  int64_t sz[2] = {3, 4};
  fvl_tensor *a = fvl_arange(FVL_F32, 0, 11, 1);
  fvl_tensor *m = fvl_reshape(a, 2, sz);
  fvl_tensor *t = fvl_transpose(m, 0, 1);          /* 4x3, not contiguous */
  fvl_tensor *v = fvl_narrow(t, 0, 1, 2);           /* rows 2..3 of the transpose: 2x3 */
  ck_assert(!fvl_is_contiguous(v));
  ck_assert_int_eq(fvl_npy_save(tmppath("v.npy"), v), 0);
  fvl_tensor *r = fvl_npy_load(tmppath("v.npy"));
  ck_assert_ptr_nonnull(r);
  ck_assert_int_eq(r->ndim, 2);
  ck_assert_int_eq(r->size[0], 2);
  ck_assert_int_eq(r->size[1], 3);
  /* v[i][j] = m[j][i+1] = 4j + i + 1 */
  for (int i = 0; i < 2; i++)
    for (int j = 0; j < 3; j++) ck_assert_float_eq(fvl_f32(r)[i * 3 + j], (float)(4 * j + i + 1));
  fvl_release(r); fvl_release(v); fvl_release(t); fvl_release(m); fvl_release(a);
  remove_tmpdir();
}
END_TEST

/* random tensors of every rank survive a round trip bit for bit */
START_TEST(npy_roundtrip_random) {
  make_tmpdir();
  fvl_rng_seed(fvl_rng_global(), 99);
  for (int nd = 0; nd <= FVL_MAXDIM; nd++) {
    int64_t sz[FVL_MAXDIM];
    for (int d = 0; d < nd; d++) sz[d] = 1 + (d % 3);
    fvl_tensor *f = fvl_randn(nd, sz, 0, 3);
    fvl_tensor *i = fvl_randint(nd, sz, -1000000, 1000000);
    ck_assert_int_eq(fvl_npy_save(tmppath("f.npy"), f), 0);
    ck_assert_int_eq(fvl_npy_save(tmppath("i.npy"), i), 0);
    fvl_tensor *f2 = fvl_npy_load(tmppath("f.npy")), *i2 = fvl_npy_load(tmppath("i.npy"));
    ck_assert_ptr_nonnull(f2);
    ck_assert_ptr_nonnull(i2);
    ck_assert_int_eq(f2->dtype, FVL_F32);
    ck_assert_int_eq(i2->dtype, FVL_I32);
    ck_assert(fvl_same_shape(f, f2));
    ck_assert(fvl_same_shape(i, i2));
    ck_assert_int_eq(memcmp(fvl_f32(f), fvl_f32(f2), (size_t)fvl_numel(f) * 4), 0);
    ck_assert_int_eq(memcmp(fvl_i32(i), fvl_i32(i2), (size_t)fvl_numel(i) * 4), 0);
    fvl_release(f); fvl_release(i); fvl_release(f2); fvl_release(i2);
  }
  /* overwriting an existing file, and no temporary file is left behind */
  fvl_tensor *z = fvl_scalar(2.5f);
  ck_assert_int_eq(fvl_npy_save(tmppath("f.npy"), z), 0);
  fvl_tensor *z2 = fvl_npy_load(tmppath("f.npy"));
  ck_assert_int_eq(z2->ndim, 0);
  ck_assert_float_eq(fvl_f32(z2)[0], 2.5f);
  DIR *d = opendir(tmpdir);
  struct dirent *e;
  while ((e = readdir(d))) ck_assert_msg(strstr(e->d_name, ".tmp") == NULL, "left behind: %s", e->d_name);
  closedir(d);
  fvl_release(z); fvl_release(z2);
  remove_tmpdir();
}
END_TEST

static void expect_load_error(const char *name, const char *part) {
  char p[512];
  snprintf(p, sizeof p, GOLDEN "%s", name);
  fvl_err_clear();
  fvl_tensor *t = fvl_npy_load(p);
  ck_assert_msg(t == NULL, "%s loaded, expected an error", name);
  const char *m = fvl_errmsg();
  ck_assert_msg(strncmp(m, "load: ", 6) == 0, "%s: message does not name load: %s", name, m);
  ck_assert_msg(strstr(m, name) != NULL, "%s: message does not name the file: %s", name, m);
  ck_assert_msg(strstr(m, part) != NULL, "%s: expected '%s' in: %s", name, part, m);
}
START_TEST(npy_bad_files) {
  expect_load_error("bad_f8.npy", "'<f8'");
  expect_load_error("bad_bigendian.npy", "'>f4'");
  expect_load_error("bad_u1.npy", "'|u1'");
  expect_load_error("bad_fortran.npy", "Fortran");
  expect_load_error("bad_truncated_data.npy", "truncated");
  expect_load_error("bad_truncated_header.npy", "truncated");
  expect_load_error("bad_magic.npy", "magic");
  expect_load_error("bad_tiny.npy", "magic");
  expect_load_error("bad_shape.npy", "shape");
  expect_load_error("no_such_file.npy", "cannot open");
  /* a header promising 4 GB over a 24-byte body: an error, and nothing stays allocated */
  size_t live = fvl_bytes_live();
  expect_load_error("bad_huge_shape.npy", "truncated");
  ck_assert_int_eq(fvl_bytes_live(), live);
  /* format version 2 (4-byte header length) */
  fvl_tensor *v2 = fvl_npy_load(GOLDEN "f4_v2.npy");
  ck_assert_msg(v2 != NULL, "%s", fvl_errmsg());
  check_golden_tensor(v2, FVL_F32, 2, (int64_t[]){3, 2});
  fvl_release(v2);
  /* saving into a missing directory fails with a message, never crashes */
  fvl_tensor *t = fvl_scalar(1);
  ck_assert_int_eq(fvl_npy_save("/nonexistent-dir/x.npy", t), -1);
  ck_assert_msg(strstr(fvl_errmsg(), "save") != NULL, "%s", fvl_errmsg());
  fvl_release(t);
}
END_TEST

/* garbage headers written here: every prefix of a valid file, and random bytes after the magic */
START_TEST(npy_fuzz_prefixes) {
  make_tmpdir();
  size_t n;
  unsigned char *whole = read_all(GOLDEN "f4_3d.npy", &n);
  for (size_t k = 0; k < n; k++) {
    FILE *f = fopen(tmppath("p.npy"), "wb");
    fwrite(whole, 1, k, f);
    fclose(f);
    fvl_tensor *t = fvl_npy_load(tmppath("p.npy"));
    ck_assert_msg(t == NULL, "a %zu-byte prefix of a %zu-byte file loaded", k, n);
  }
  uint64_t s = 7;
  for (int trial = 0; trial < 200; trial++) {
    unsigned char buf[160];
    memcpy(buf, whole, 10);
    for (size_t k = 10; k < sizeof buf; k++) {
      s = s * 6364136223846793005ULL + 1442695040888963407ULL;
      buf[k] = (unsigned char)(s >> 56);
    }
    if (trial % 2) memcpy(buf + 10, "{'descr': '<f4', 'fortran_order': False, 'shape': (", 51);
    FILE *f = fopen(tmppath("g.npy"), "wb");
    fwrite(buf, 1, sizeof buf, f);
    fclose(f);
    fvl_tensor *t = fvl_npy_load(tmppath("g.npy"));   /* must not crash; may fail */
    fvl_release(t);
  }
  free(whole);
  remove_tmpdir();
}
END_TEST

/* ---------------------------------------------------------------- RNG */
#define BIG 200003   /* above the engine's parallel threshold */

START_TEST(rng_same_seed_same_numbers) {
  fvl_rng_seed(fvl_rng_global(), 42);
  fvl_tensor *a = fvl_rand(1, (int64_t[]){1000}, 0, 1);
  fvl_tensor *b = fvl_randn(1, (int64_t[]){1000}, 0, 1);
  fvl_tensor *c = fvl_randint(1, (int64_t[]){1000}, 1, 10);
  fvl_rng_seed(fvl_rng_global(), 42);
  fvl_tensor *a2 = fvl_rand(1, (int64_t[]){1000}, 0, 1);
  fvl_tensor *b2 = fvl_randn(1, (int64_t[]){1000}, 0, 1);
  fvl_tensor *c2 = fvl_randint(1, (int64_t[]){1000}, 1, 10);
  ck_assert_int_eq(memcmp(fvl_f32(a), fvl_f32(a2), 4000), 0);
  ck_assert_int_eq(memcmp(fvl_f32(b), fvl_f32(b2), 4000), 0);
  ck_assert_int_eq(memcmp(fvl_i32(c), fvl_i32(c2), 4000), 0);
  /* another seed gives other numbers */
  fvl_rng_seed(fvl_rng_global(), 43);
  fvl_tensor *a3 = fvl_rand(1, (int64_t[]){1000}, 0, 1);
  int same = 0;
  for (int i = 0; i < 1000; i++) same += fvl_f32(a)[i] == fvl_f32(a3)[i];
  ck_assert_int_lt(same, 5);
  /* a fill continues where the last one stopped: rand(300) + rand(700) == rand(1000) */
  fvl_rng_seed(fvl_rng_global(), 42);
  fvl_tensor *p1 = fvl_rand(1, (int64_t[]){300}, 0, 1), *p2 = fvl_rand(1, (int64_t[]){700}, 0, 1);
  ck_assert_int_eq(memcmp(fvl_f32(p1), fvl_f32(a), 1200), 0);
  ck_assert_int_eq(memcmp(fvl_f32(p2), fvl_f32(a) + 300, 2800), 0);
  /* and consecutive draws differ */
  ck_assert(memcmp(fvl_f32(p1), fvl_f32(p1) + 100, 400) != 0);
  fvl_release(a); fvl_release(b); fvl_release(c); fvl_release(a2); fvl_release(b2); fvl_release(c2);
  fvl_release(a3); fvl_release(p1); fvl_release(p2);
}
END_TEST

START_TEST(rng_thread_independent) {
  float *u[2], *g[2];
  int32_t *k[2];
  int32_t *perm[2];
  for (int r = 0; r < 2; r++) {
    fvl_set_threads(r + 1);
    ck_assert_int_eq(fvl_get_threads(), r + 1);
    fvl_rng_seed(fvl_rng_global(), 2024);
    fvl_tensor *a = fvl_rand(2, (int64_t[]){BIG, 1}, -2, 3);
    fvl_tensor *b = fvl_randn(1, (int64_t[]){BIG}, 1, 2);
    fvl_tensor *c = fvl_randint(1, (int64_t[]){BIG}, -5, 5);
    u[r] = malloc(BIG * 4); g[r] = malloc(BIG * 4); k[r] = malloc(BIG * 4); perm[r] = malloc(1000 * 4);
    memcpy(u[r], fvl_f32(a), BIG * 4);
    memcpy(g[r], fvl_f32(b), BIG * 4);
    memcpy(k[r], fvl_i32(c), BIG * 4);
    fvl_rng_permutation(fvl_rng_global(), perm[r], 1000);
    fvl_release(a); fvl_release(b); fvl_release(c);
  }
  fvl_set_threads(0);
  ck_assert_int_eq(memcmp(u[0], u[1], BIG * 4), 0);
  ck_assert_int_eq(memcmp(g[0], g[1], BIG * 4), 0);
  ck_assert_int_eq(memcmp(k[0], k[1], BIG * 4), 0);
  ck_assert_int_eq(memcmp(perm[0], perm[1], 4000), 0);
  /* the fill equals the serial definition: element i uses counter base + i */
  for (int64_t i = 0; i < BIG; i += 997)
    ck_assert_float_eq(u[0][i], -2 + 5 * (float)fvl_rng_uniform_at(2024, (uint64_t)i));
  for (int64_t i = 0; i < BIG; i += 997)
    ck_assert_float_eq(g[0][i], 1 + 2 * (float)fvl_rng_normal_at(2024, (uint64_t)(BIG + i)));
  for (int r = 0; r < 2; r++) { free(u[r]); free(g[r]); free(k[r]); free(perm[r]); }
}
END_TEST

START_TEST(rng_state_roundtrip) {
  fvl_rng_seed(fvl_rng_global(), 5);
  fvl_tensor *warm = fvl_rand(1, (int64_t[]){17}, 0, 1);
  fvl_rng saved = *fvl_rng_global();
  ck_assert_int_eq(saved.counter, 17);
  fvl_tensor *a = fvl_randn(1, (int64_t[]){50}, 0, 1);
  double x = fvl_rng_uniform(fvl_rng_global());
  int64_t j = fvl_rng_int(fvl_rng_global(), 1, 1000);
  *fvl_rng_global() = saved;
  fvl_tensor *b = fvl_randn(1, (int64_t[]){50}, 0, 1);
  ck_assert_int_eq(memcmp(fvl_f32(a), fvl_f32(b), 200), 0);
  ck_assert(x == fvl_rng_uniform(fvl_rng_global()));
  ck_assert_int_eq(j, fvl_rng_int(fvl_rng_global(), 1, 1000));
  ck_assert_int_eq(fvl_rng_global()->counter, 17 + 50 + 2);
  /* fvl_rng_reserve hands out disjoint ranges */
  uint64_t b0 = fvl_rng_reserve(fvl_rng_global(), 10), b1 = fvl_rng_reserve(fvl_rng_global(), 3);
  ck_assert(b1 == b0 + 10);
  fvl_release(warm); fvl_release(a); fvl_release(b);
}
END_TEST

START_TEST(rng_distributions) {
  fvl_rng_seed(fvl_rng_global(), 11);
  int64_t n = BIG;
  fvl_tensor *u = fvl_rand(1, &n, 2, 4), *g = fvl_randn(1, &n, -1, 0.5f), *k = fvl_randint(1, &n, -3, 4);
  double su = 0, sg = 0, sg2 = 0;
  int64_t hist[8] = {0};
  for (int64_t i = 0; i < n; i++) {
    float x = fvl_f32(u)[i];
    ck_assert(x >= 2 && x < 4);
    su += x;
    double y = fvl_f32(g)[i];
    ck_assert(isfinite(y));
    sg += y;
    sg2 += y * y;
    int32_t v = fvl_i32(k)[i];
    ck_assert(v >= -3 && v <= 4);
    hist[v + 3]++;
  }
  double mg = sg / n, vg = sg2 / n - mg * mg;
  ck_assert_double_eq_tol(su / n, 3.0, 0.01);
  ck_assert_double_eq_tol(mg, -1.0, 0.01);
  ck_assert_double_eq_tol(sqrt(vg), 0.5, 0.01);
  for (int b = 0; b < 8; b++) ck_assert_msg(fabs(hist[b] - n / 8.0) < 0.03 * n / 8.0, "randint bin %d: %lld", b - 3, (long long)hist[b]);
  /* the degenerate range lo == hi, and a permutation is a permutation */
  fvl_tensor *one = fvl_randint(1, (int64_t[]){10}, 7, 7);
  for (int i = 0; i < 10; i++) ck_assert_int_eq(fvl_i32(one)[i], 7);
  ck_assert_ptr_null(fvl_randint(1, (int64_t[]){10}, 8, 7));
  ck_assert_ptr_nonnull(strstr(fvl_errmsg(), "randint"));
  int32_t perm[500];
  char seen[500] = {0};
  fvl_rng_permutation(fvl_rng_global(), perm, 500);
  int fixed = 0;
  for (int i = 0; i < 500; i++) {
    ck_assert(perm[i] >= 0 && perm[i] < 500 && !seen[perm[i]]);
    seen[perm[i]] = 1;
    fixed += perm[i] == i;
  }
  ck_assert_int_lt(fixed, 10);
  fvl_release(u); fvl_release(g); fvl_release(k); fvl_release(one);
}
END_TEST

/* the in-place fills draw from the same stream as the creators */
START_TEST(rng_inplace_fills) {
  int64_t sz[2] = {4, 5};
  fvl_rng_seed(fvl_rng_global(), 77);
  fvl_tensor *a = fvl_rand(2, sz, -1, 1), *b = fvl_randn(2, sz, 0, 2);
  fvl_rng_seed(fvl_rng_global(), 77);
  fvl_tensor *c = fvl_zeros(FVL_F32, 2, sz), *d = fvl_zeros(FVL_F32, 2, sz);
  ck_assert_int_eq(fvl_uniform_(c, -1, 1), 0);
  ck_assert_int_eq(fvl_normal_(d, 0, 2), 0);
  ck_assert_int_eq(memcmp(fvl_f32(a), fvl_f32(c), 80), 0);
  ck_assert_int_eq(memcmp(fvl_f32(b), fvl_f32(d), 80), 0);
  /* int32 or non-contiguous targets are refused with a message */
  fvl_tensor *i = fvl_zeros(FVL_I32, 2, sz);
  ck_assert_int_eq(fvl_uniform_(i, 0, 1), -1);
  ck_assert_ptr_nonnull(strstr(fvl_errmsg(), "uniform_"));
  fvl_tensor *t = fvl_transpose(c, 0, 1);
  ck_assert_int_eq(fvl_normal_(t, 0, 1), -1);
  ck_assert_ptr_nonnull(strstr(fvl_errmsg(), "normal_"));
  fvl_release(a); fvl_release(b); fvl_release(c); fvl_release(d); fvl_release(i); fvl_release(t);
}
END_TEST

int main(void) {
  Suite *s = suite_create("npy_rng");
  TCase *npy = tcase_create("npy");
  tcase_add_test(npy, npy_golden_f4);
  tcase_add_test(npy, npy_golden_i4);
  tcase_add_test(npy, npy_save_view);
  tcase_add_test(npy, npy_roundtrip_random);
  tcase_add_test(npy, npy_bad_files);
  tcase_add_test(npy, npy_fuzz_prefixes);
  suite_add_tcase(s, npy);
  TCase *rng = tcase_create("rng");
  tcase_set_timeout(rng, 60);
  tcase_add_test(rng, rng_same_seed_same_numbers);
  tcase_add_test(rng, rng_thread_independent);
  tcase_add_test(rng, rng_state_roundtrip);
  tcase_add_test(rng, rng_distributions);
  tcase_add_test(rng, rng_inplace_fills);
  suite_add_tcase(s, rng);
  return fvl_check_run(s);
}
