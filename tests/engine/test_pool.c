/* test_pool.c — one thread pool: OpenBLAS is its OpenMP build and fvl_set_threads is the one
 * OpenMP setting that both the engine's loops and the GEMMs follow. */
#include <check.h>
#include "fvl_check.h"
#include <math.h>
#include <stdlib.h>
#include <omp.h>
#include <cblas.h>
#include "core.h"
#include "sys.h"

START_TEST(blas_is_openmp_build) {
  /* a pthreads OpenBLAS here would bring back a second pool spinning against libgomp's */
  ck_assert_msg(fvl_blas_openmp(), "OpenBLAS is not its OpenMP build (openblas_get_parallel = %d)",
                openblas_get_parallel());
}
END_TEST

START_TEST(set_threads_is_one_setting) {
  for (int n = 1; n <= 3; n++) {
    fvl_set_threads(n);
    ck_assert_int_eq(fvl_get_threads(), n);
    ck_assert_int_eq(omp_get_max_threads(), n);
    ck_assert_int_eq(openblas_get_num_threads(), n);
  }
  fvl_set_threads(0);
  int all = fvl_cpus_available(NULL, 0);
  ck_assert_int_eq(fvl_get_threads(), all);
  ck_assert_int_eq(omp_get_max_threads(), all);
  ck_assert_int_eq(openblas_get_num_threads(), all);
}
END_TEST

/* GEMMs called on blocks inside an engine parallel loop (single-threaded there) and one GEMM
 * of the whole problem on the pool give the same numbers */
START_TEST(gemm_inside_parallel_loop) {
  enum { M = 96, K = 64, N = 80, BLK = 8 };
  float *a = malloc(sizeof(float) * M * K), *b = malloc(sizeof(float) * K * N);
  float *c1 = calloc(M * N, sizeof(float)), *c2 = calloc(M * N, sizeof(float));
  for (int i = 0; i < M * K; i++) a[i] = (float)((i * 37) % 17) / 17.0f - 0.5f;
  for (int i = 0; i < K * N; i++) b[i] = (float)((i * 11) % 13) / 13.0f - 0.5f;
  fvl_set_threads(2);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, a, K, b, N, 0.0f, c1, N);
#pragma omp parallel for schedule(static)
  for (int r = 0; r < M; r += BLK)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, BLK, N, K, 1.0f, a + (size_t)r * K, K, b, N,
                0.0f, c2 + (size_t)r * N, N);
  for (int i = 0; i < M * N; i++) ck_assert_float_eq_tol(c1[i], c2[i], 1e-5f);
  fvl_set_threads(0);
  free(a); free(b); free(c1); free(c2);
}
END_TEST

int main(void) {
  Suite *s = suite_create("pool");
  TCase *tc = tcase_create("pool");
  tcase_add_test(tc, blas_is_openmp_build);
  tcase_add_test(tc, set_threads_is_one_setting);
  tcase_add_test(tc, gemm_inside_parallel_loop);
  suite_add_tcase(s, tc);
  return fvl_check_run(s);
}
