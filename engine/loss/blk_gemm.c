/* blk_gemm.c — the class blocks' own single-threaded GEMM (blk_gemm.h). C = A·B in 12×32 tiles:
 * the left operand packed in panels of 12 rows ([k][12], broadcast), the right one in panels of
 * 32 columns ([k][32], two 16-wide vectors), K cut into chunks of KC and N into NC so that a
 * chunk of the right operand (KC×NC, 512 KB) stays in L2 while a left panel (12 KB) stays in L1.
 * 24 accumulators, one AVX-512 FMA per vector: the micro-kernel runs at the FMA pipes' rate.
 * Chosen at run time (__builtin_cpu_supports); built with GCC's target attribute, so the build
 * flags stay portable. */
#include "blk_gemm.h"
#include <stdlib.h>
#include <string.h>

enum { MR = 12, NR = 32, KC = 256, NC = 512 };

static int64_t rup(int64_t n, int64_t m) { return (n + m - 1) / m * m; }
static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_KERNEL 1
static int cpu_ok(void) { return __builtin_cpu_supports("avx512f") != 0; }
#else
#define HAVE_KERNEL 0
static int cpu_ok(void) { return 0; }
#endif

/* −1: not decided yet: on where the CPU has AVX-512, unless the environment has FVL_BLK_GEMM=0
   (to time OpenBLAS's path in the same build) */
static int bg_on = -1;
int fvl_bg_enabled(void) {
  if (bg_on < 0) {
    const char *e = getenv("FVL_BLK_GEMM");
    bg_on = cpu_ok() && !(e && strcmp(e, "0") == 0);
  }
  return bg_on;
}
int fvl_bg_set(int on) {
  int prev = fvl_bg_enabled();
  bg_on = on && cpu_ok();
  return prev;
}

size_t fvl_bg_packa_size(int64_t M, int64_t K) { return (size_t)(rup(M, MR) * K); }
size_t fvl_bg_packb_size(int64_t K, int64_t N) { return (size_t)(rup(N, NR) * K); }
size_t fvl_bg_work_size(void) { return (size_t)KC * NC + (size_t)KC * MR; }

/* mr rows (of MR) × kc of a into dst[k][MR], zero rows beyond mr */
static void pack_a_panel(int64_t mr, int64_t kc, const float *a, int64_t rs, int64_t cs, float *dst) {
  if (cs == 1) {   /* rows contiguous along k: a transpose */
    for (int64_t r = 0; r < MR; r++)
      if (r < mr)
        for (int64_t k = 0; k < kc; k++) dst[k * MR + r] = a[r * rs + k];
      else
        for (int64_t k = 0; k < kc; k++) dst[k * MR + r] = 0.0f;
    return;
  }
  for (int64_t k = 0; k < kc; k++)
    for (int64_t r = 0; r < MR; r++) dst[k * MR + r] = r < mr ? a[r * rs + k * cs] : 0.0f;
}
#if HAVE_KERNEL
/* kc rows of 32 contiguous floats (stride rs) into dst[k][32] */
__attribute__((target("avx512f"))) static void copy_rows32(int64_t kc, const float *b, int64_t rs, float *dst) {
  for (int64_t k = 0; k < kc; k++) {
    _mm512_storeu_ps(dst + k * NR, _mm512_loadu_ps(b + k * rs));
    _mm512_storeu_ps(dst + k * NR + 16, _mm512_loadu_ps(b + k * rs + 16));
  }
}
#else
static void copy_rows32(int64_t kc, const float *b, int64_t rs, float *dst) {
  for (int64_t k = 0; k < kc; k++) memcpy(dst + k * NR, b + k * rs, sizeof(float) * NR);
}
#endif
/* kc × nr columns (of NR) of b into dst[k][NR], zero columns beyond nr */
static void pack_b_panel(int64_t nr, int64_t kc, const float *b, int64_t rs, int64_t cs, float *dst) {
  if (cs == 1 && nr == NR) {
    copy_rows32(kc, b, rs, dst);
    return;
  }
  if (cs == 1) {
    for (int64_t k = 0; k < kc; k++) {
      memcpy(dst + k * NR, b + k * rs, sizeof(float) * (size_t)nr);
      for (int64_t c = nr; c < NR; c++) dst[k * NR + c] = 0.0f;
    }
    return;
  }
  for (int64_t c = 0; c < NR; c++)   /* columns contiguous along k (a transpose) */
    if (c < nr)
      for (int64_t k = 0; k < kc; k++) dst[k * NR + c] = b[k * rs + c * cs];
    else
      for (int64_t k = 0; k < kc; k++) dst[k * NR + c] = 0.0f;
}

void fvl_bg_packa(int64_t M, int64_t K, fvl_bg_mat a, float *Ap) {
  int64_t Mp = rup(M, MR);
  for (int64_t p0 = 0; p0 < K; p0 += KC) {
    int64_t kc = min64(KC, K - p0);
    for (int64_t i0 = 0; i0 < M; i0 += MR)
      pack_a_panel(min64(MR, M - i0), kc, a.p + i0 * a.rs + p0 * a.cs, a.rs, a.cs, Ap + p0 * Mp + i0 * kc);
  }
}
void fvl_bg_packb(int64_t K, int64_t N, fvl_bg_mat b, float *Bp) {
  int64_t Np = rup(N, NR);
  for (int64_t p0 = 0; p0 < K; p0 += KC) {
    int64_t kc = min64(KC, K - p0);
    for (int64_t j0 = 0; j0 < N; j0 += NR)
      pack_b_panel(min64(NR, N - j0), kc, b.p + p0 * b.rs + j0 * b.cs, b.rs, b.cs, Bp + p0 * Np + j0 * kc);
  }
}

#if HAVE_KERNEL
/* the 12×32 tile of C (mr rows, nr columns of it kept) = (add ? C : 0) + Σ_k A[k][·]ᵀ B[k][·] */
__attribute__((target("avx512f"))) static void kernel(int64_t kc, const float *A, const float *B, float *C,
                                                      int64_t ldc, int mr, int nr, int add) {
  __m512 c0a = _mm512_setzero_ps(), c0b = c0a, c1a = c0a, c1b = c0a, c2a = c0a, c2b = c0a, c3a = c0a, c3b = c0a,
         c4a = c0a, c4b = c0a, c5a = c0a, c5b = c0a, c6a = c0a, c6b = c0a, c7a = c0a, c7b = c0a, c8a = c0a,
         c8b = c0a, c9a = c0a, c9b = c0a, c10a = c0a, c10b = c0a, c11a = c0a, c11b = c0a;
#define ROW(r)                                             \
  do {                                                     \
    __m512 av = _mm512_set1_ps(A[r]);                      \
    c##r##a = _mm512_fmadd_ps(av, b0, c##r##a);            \
    c##r##b = _mm512_fmadd_ps(av, b1, c##r##b);            \
  } while (0)
  for (int64_t k = 0; k < kc; k++) {
    __m512 b0 = _mm512_loadu_ps(B), b1 = _mm512_loadu_ps(B + 16);
    ROW(0); ROW(1); ROW(2); ROW(3); ROW(4); ROW(5);
    ROW(6); ROW(7); ROW(8); ROW(9); ROW(10); ROW(11);
    A += MR;
    B += NR;
  }
#undef ROW
  __m512 t[2 * MR] = {c0a, c0b, c1a, c1b, c2a, c2b, c3a, c3b, c4a, c4b, c5a, c5b,
                      c6a, c6b, c7a, c7b, c8a, c8b, c9a, c9b, c10a, c10b, c11a, c11b};
  __mmask16 m0 = nr >= 16 ? 0xFFFF : (__mmask16)((1u << nr) - 1);
  __mmask16 m1 = nr >= 32 ? 0xFFFF : nr > 16 ? (__mmask16)((1u << (nr - 16)) - 1) : 0;
  for (int r = 0; r < mr; r++) {
    float *cr = C + r * ldc;
    __m512 v0 = t[2 * r], v1 = t[2 * r + 1];
    if (add) {
      v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, cr));
      v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, cr + 16));
    }
    _mm512_mask_storeu_ps(cr, m0, v0);
    _mm512_mask_storeu_ps(cr + 16, m1, v1);
  }
}
#else
static void kernel(int64_t kc, const float *A, const float *B, float *C, int64_t ldc, int mr, int nr, int add) {
  for (int r = 0; r < mr; r++)
    for (int c = 0; c < nr; c++) {
      float s = 0;
      for (int64_t k = 0; k < kc; k++) s += A[k * MR + r] * B[k * NR + c];
      C[r * ldc + c] = add ? C[r * ldc + c] + s : s;
    }
}
#endif

void fvl_bg_gemm(int64_t M, int64_t N, int64_t K, const float *Ap, fvl_bg_mat a, const float *Bp, fvl_bg_mat b,
                 float *C, int64_t ldc, int add, float *work) {
  float *wb = work, *wa = work + (size_t)KC * NC;
  int64_t Mp = rup(M, MR), Np = rup(N, NR);
  for (int64_t jc = 0; jc < N; jc += NC) {
    int64_t nc = min64(NC, N - jc);
    for (int64_t p0 = 0; p0 < K; p0 += KC) {
      int64_t kc = min64(KC, K - p0);
      const float *bp = wb;
      if (Bp)
        bp = Bp + p0 * Np + jc * kc;
      else
        for (int64_t jr = 0; jr < nc; jr += NR)
          pack_b_panel(min64(NR, nc - jr), kc, b.p + p0 * b.rs + (jc + jr) * b.cs, b.rs, b.cs, wb + jr * kc);
      for (int64_t i0 = 0; i0 < M; i0 += MR) {
        int mr = (int)min64(MR, M - i0);
        const float *ap = wa;
        if (Ap)
          ap = Ap + p0 * Mp + i0 * kc;
        else
          pack_a_panel(mr, kc, a.p + i0 * a.rs + p0 * a.cs, a.rs, a.cs, wa);
        for (int64_t jr = 0; jr < nc; jr += NR)
          kernel(kc, ap, bp + jr * kc, C + i0 * ldc + jc + jr, ldc, mr, (int)min64(NR, nc - jr), add || p0 > 0);
      }
    }
  }
}
