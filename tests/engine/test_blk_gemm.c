/* test_blk_gemm.c — the class blocks' own GEMM (engine/loss/blk_gemm.c) against a double
 * reference on shapes with every tail (rows not a multiple of 12, columns of 32, K of 256),
 * each operand given by either stride order, packed once or packed per call, beta 0 and 1; the
 * packed and unpacked forms give the same bits. Skipped where the CPU lacks AVX-512. */
#include "fvl_check.h"
#include "loss/blk_gemm.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

static float frand(unsigned *s) {
  *s = *s * 1664525u + 1013904223u;
  return (float)((*s >> 8) & 0xFFFF) / 65536.0f - 0.5f;
}
static float *fill(size_t n, unsigned seed) {
  float *p = malloc(sizeof(float) * (n ? n : 1));
  for (size_t i = 0; i < n; i++) p[i] = frand(&seed);
  return p;
}

static void check_shape(int64_t M, int64_t N, int64_t K) {
  float *A = fill((size_t)(M * K), 1), *B = fill((size_t)(K * N), 2), *C0 = fill((size_t)(M * N), 3);
  float *work = malloc(sizeof(float) * fvl_bg_work_size());
  float *Ap = malloc(sizeof(float) * fvl_bg_packa_size(M, K)), *Bp = malloc(sizeof(float) * fvl_bg_packb_size(K, N));
  float *C = malloc(sizeof(float) * (size_t)(M * N)), *Cq = malloc(sizeof(float) * (size_t)(M * N));
  for (int ta = 0; ta < 2; ta++)
    for (int tb = 0; tb < 2; tb++)
      for (int add = 0; add < 2; add++) {
        /* the same values stored row-major (t = 0) or column-major (t = 1) */
        float *At = malloc(sizeof(float) * (size_t)(M * K)), *Bt = malloc(sizeof(float) * (size_t)(K * N));
        for (int64_t i = 0; i < M; i++)
          for (int64_t k = 0; k < K; k++) At[ta ? k * M + i : i * K + k] = A[i * K + k];
        for (int64_t k = 0; k < K; k++)
          for (int64_t j = 0; j < N; j++) Bt[tb ? j * K + k : k * N + j] = B[k * N + j];
        fvl_bg_mat a = {At, ta ? 1 : K, ta ? M : 1}, b = {Bt, tb ? 1 : N, tb ? K : 1};
        memcpy(C, C0, sizeof(float) * (size_t)(M * N));
        fvl_bg_gemm(M, N, K, NULL, a, NULL, b, C, N, add, work);
        for (int64_t i = 0; i < M; i++)
          for (int64_t j = 0; j < N; j++) {
            double s = add ? C0[i * N + j] : 0.0, mag = fabs(s);
            for (int64_t k = 0; k < K; k++) {
              s += (double)A[i * K + k] * B[k * N + j];
              mag += fabs((double)A[i * K + k] * B[k * N + j]);
            }
            ck_assert_msg(fabs(C[i * N + j] - s) <= 1e-6 * (mag + 1),
                          "%lldx%lldx%lld ta %d tb %d add %d: C[%lld,%lld] = %g, expected %g", (long long)M,
                          (long long)N, (long long)K, ta, tb, add, (long long)i, (long long)j, C[i * N + j], s);
          }
        /* packed once: the same bits */
        fvl_bg_packa(M, K, a, Ap);
        fvl_bg_packb(K, N, b, Bp);
        for (int form = 1; form < 4; form++) {
          memcpy(Cq, C0, sizeof(float) * (size_t)(M * N));
          fvl_bg_gemm(M, N, K, form & 1 ? Ap : NULL, a, form & 2 ? Bp : NULL, b, Cq, N, add, work);
          ck_assert_msg(memcmp(C, Cq, sizeof(float) * (size_t)(M * N)) == 0, "%lldx%lldx%lld form %d: other bits",
                        (long long)M, (long long)N, (long long)K, form);
        }
        free(At);
        free(Bt);
      }
  free(A); free(B); free(C0); free(work); free(Ap); free(Bp); free(C); free(Cq);
}

START_TEST(own_gemm_matches_reference) {
  if (!fvl_bg_enabled()) return;   /* no AVX-512: the callers use OpenBLAS */
  static const int64_t shapes[][3] = {{1, 1, 1}, {12, 32, 256}, {13, 33, 7}, {25, 70, 300}, {11, 17, 513},
                                      {30, 545, 40}, {3, 1024, 3}};
  for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) check_shape(shapes[s][0], shapes[s][1], shapes[s][2]);
}
END_TEST

/* A row of C does not depend on which other rows are computed with it: the rows of a 12-row
   panel and the same rows in a short last panel (1..11 rows, its own kernel) get the same bits,
   so the sums' order depends on K only, never on M or where a row falls in the tiles. */
START_TEST(rows_independent_of_tiling) {
  if (!fvl_bg_enabled()) return;
  const int64_t M = 24, N = 70, K = 300;
  float *A = fill((size_t)(M * K), 11), *B = fill((size_t)(K * N), 12);
  float *work = malloc(sizeof(float) * fvl_bg_work_size());
  float *C = malloc(sizeof(float) * (size_t)(M * N)), *Cs = malloc(sizeof(float) * (size_t)(M * N));
  fvl_bg_gemm(M, N, K, NULL, (fvl_bg_mat){A, K, 1}, NULL, (fvl_bg_mat){B, N, 1}, C, N, 0, work);
  for (int64_t i0 = 0; i0 < M; i0 += 5)
    for (int64_t m = 1; m <= 11 && i0 + m <= M; m++) {
      fvl_bg_gemm(m, N, K, NULL, (fvl_bg_mat){A + i0 * K, K, 1}, NULL, (fvl_bg_mat){B, N, 1}, Cs, N, 0, work);
      ck_assert_msg(memcmp(Cs, C + i0 * N, sizeof(float) * (size_t)(m * N)) == 0, "rows %lld..%lld: other bits",
                    (long long)i0, (long long)(i0 + m - 1));
    }
  free(A); free(B); free(work); free(C); free(Cs);
}
END_TEST

START_TEST(switch_off_and_on) {
  int was = fvl_bg_enabled();
  ck_assert_int_eq(fvl_bg_set(0), was);
  ck_assert_int_eq(fvl_bg_enabled(), 0);
  ck_assert_int_eq(fvl_bg_set(1), 0);
  ck_assert_int_eq(fvl_bg_enabled(), was);   /* on again only where the CPU has AVX-512 */
}
END_TEST

int main(void) {
  Suite *s = suite_create("blk_gemm");
  TCase *tc = tcase_create("core");
  tcase_add_test(tc, own_gemm_matches_reference);
  tcase_add_test(tc, rows_independent_of_tiling);
  tcase_add_test(tc, switch_off_and_on);
  suite_add_tcase(s, tc);
  return fvl_check_run(s);
}
