/* blk_gemm.c — the class blocks' own single-threaded GEMM (blk_gemm.h). C = A·B in 12×32 tiles:
 * the left operand packed in panels of 12 rows ([k][12], broadcast), the right one in panels of
 * 32 columns ([k][32], two 16-wide vectors), K cut into chunks of KC and N into NC so that a
 * chunk of the right operand (KC×NC, 512 KB) stays in L2 while a left panel (12 KB) stays in L1.
 * 24 accumulators, one AVX-512 FMA per vector: the micro-kernel runs at the FMA pipes' rate.
 * The last rows of M (mr < 12: 4 of the head's 256) get a kernel of their own rows, not 12 rows
 * of FMAs of which some are thrown away (that was 3 % of the FMAs at M = 256). A right operand
 * whose rows run along N (the dX GEMM's W block) is packed row by row, a sequential stream that
 * the prefetchers follow from memory. Reading such an operand in place (no packing) was measured
 * and not faster: its 2 KB row stride maps a panel onto a few L1 sets, so the kernel reads it
 * from L2 on every pass, and from memory on the first one (with or without software prefetch);
 * packing it inside the first row panel's kernels (loads overlapped with FMAs) was slower too.
 * Chosen at run time (__builtin_cpu_supports); built with GCC's target attribute, so the build
 * flags stay portable. */
#include "blk_gemm.h"
#include <stdlib.h>
#include <string.h>

enum { MR = FVL_BG_MR, NR = FVL_BG_NR, KC = FVL_BG_KC, NC = FVL_BG_NC };

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
/* A/B switches for benches, read once (1 unless the variable is "0"): FVL_BLK_GEMM_TAIL=0 runs
   the last rows of M (mr < 12) through the 12-row kernel as before (the FMAs of the missing rows
   wasted); FVL_BLK_GEMM_ROWS=0 packs a right operand whose rows run along N in 32-column strips;
   FVL_BLK_GEMM_PFC=0 does not prefetch the tiles of C that are added to. None changes a bit of the
   results. Read with FVL_BLK_GEMM by the first fvl_bg_enabled(). */
static int bg_tail = 1, bg_rows = 1, bg_pfc = 1;
static int env_off(const char *name) {
  const char *e = getenv(name);
  return e && strcmp(e, "0") == 0;
}
int fvl_bg_enabled(void) {
  if (bg_on < 0) {
    bg_on = cpu_ok() && !env_off("FVL_BLK_GEMM");
    bg_tail = !env_off("FVL_BLK_GEMM_TAIL");
    bg_rows = !env_off("FVL_BLK_GEMM_ROWS");
    bg_pfc = !env_off("FVL_BLK_GEMM_PFC");
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

#if HAVE_KERNEL
#define TGT __attribute__((target("avx512f")))
/* v[0..15] (rows) ← their transpose (v[k] lane r = old v[r] lane k) */
TGT static inline void transpose16(__m512 v[16]) {
  __m512 t[16];
  for (int i = 0; i < 8; i++) {
    t[2 * i] = _mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]);
  }
  for (int i = 0; i < 4; i++) {
    __m512d a0 = _mm512_castps_pd(t[4 * i]), a1 = _mm512_castps_pd(t[4 * i + 1]);
    __m512d a2 = _mm512_castps_pd(t[4 * i + 2]), a3 = _mm512_castps_pd(t[4 * i + 3]);
    v[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a0, a2));
    v[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a0, a2));
    v[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(a1, a3));
    v[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(a1, a3));
  }
  /* v[4q + p] now holds rows 4q..4q+3 at lanes of column p (+4·lane-group): gather the 128-bit
     groups: first pairs of quads (q, q+1), then of those pairs */
  for (int h = 0; h < 2; h++)
    for (int p = 0; p < 4; p++) {
      t[8 * h + p] = _mm512_shuffle_f32x4(v[8 * h + p], v[8 * h + 4 + p], 0x88);
      t[8 * h + 4 + p] = _mm512_shuffle_f32x4(v[8 * h + p], v[8 * h + 4 + p], 0xDD);
    }
  for (int p = 0; p < 8; p++) {
    v[p] = _mm512_shuffle_f32x4(t[p], t[8 + p], 0x88);
    v[8 + p] = _mm512_shuffle_f32x4(t[p], t[8 + p], 0xDD);
  }
}
/* n (≤ 16) rows of 16 floats at src + r·ld, transposed: column k (n lanes, zeros beyond) to
   dst + k·ldd, masked to `lanes` lanes */
TGT static void tr_block(const float *src, int64_t ld, int n, float *dst, int64_t ldd, __mmask16 lanes) {
  __m512 v[16];
  for (int r = 0; r < 16; r++) v[r] = r < n ? _mm512_loadu_ps(src + r * ld) : _mm512_setzero_ps();
  transpose16(v);
  for (int k = 0; k < 16; k++) _mm512_mask_storeu_ps(dst + k * ldd, lanes, v[k]);
}
/* src[0..n) (n a multiple of 32) in pieces of 32 floats to dst, dst + step, dst + 2·step, ... */
TGT static void split_row(const float *src, int64_t n, float *dst, int64_t step) {
  for (int64_t j = 0; j < n; j += NR, dst += step) {
    _mm512_storeu_ps(dst, _mm512_loadu_ps(src + j));
    _mm512_storeu_ps(dst + 16, _mm512_loadu_ps(src + j + 16));
  }
}
/* kc rows of 32 contiguous floats (stride rs) into dst[k][32] */
TGT static void copy_rows32(int64_t kc, const float *b, int64_t rs, float *dst) {
  for (int64_t k = 0; k < kc; k++) {
    _mm512_storeu_ps(dst + k * NR, _mm512_loadu_ps(b + k * rs));
    _mm512_storeu_ps(dst + k * NR + 16, _mm512_loadu_ps(b + k * rs + 16));
  }
}
/* kc rows of mr (≤ 12) contiguous floats (stride cs) into dst[k][12], zeros beyond mr */
TGT static void copy_rows12(int64_t kc, int64_t mr, const float *a, int64_t cs, float *dst) {
  __mmask16 m = (__mmask16)((1u << mr) - 1);
  for (int64_t k = 0; k < kc; k++) _mm512_mask_storeu_ps(dst + k * MR, 0x0FFF, _mm512_maskz_loadu_ps(m, a + k * cs));
}
/* the transposing packs, 16 k at a time; returns how many k they did (the rest: scalar) */
TGT static int64_t pack_a_tr(int64_t mr, int64_t kc, const float *a, int64_t rs, float *dst) {
  int64_t k0 = 0;
  for (; k0 + 16 <= kc; k0 += 16) tr_block(a + k0, rs, (int)mr, dst + k0 * MR, MR, 0x0FFF);
  return k0;
}
TGT static int64_t pack_b_tr(int64_t nr, int64_t kc, const float *b, int64_t cs, float *dst) {
  int64_t k0 = 0;
  for (; k0 + 16 <= kc; k0 += 16)
    for (int h = 0; h < 2; h++) {
      int n = (int)(nr - 16 * h);
      tr_block(b + 16 * h * cs + k0, cs, n < 0 ? 0 : n > 16 ? 16 : n, dst + k0 * NR + 16 * h, NR, 0xFFFF);
    }
  return k0;
}
#else
static void split_row(const float *src, int64_t n, float *dst, int64_t step) {
  for (int64_t j = 0; j < n; j += NR, dst += step) memcpy(dst, src + j, sizeof(float) * NR);
}
static void copy_rows32(int64_t kc, const float *b, int64_t rs, float *dst) {
  for (int64_t k = 0; k < kc; k++) memcpy(dst + k * NR, b + k * rs, sizeof(float) * NR);
}
static void copy_rows12(int64_t kc, int64_t mr, const float *a, int64_t cs, float *dst) {
  for (int64_t k = 0; k < kc; k++)
    for (int64_t r = 0; r < MR; r++) dst[k * MR + r] = r < mr ? a[k * cs + r] : 0.0f;
}
static int64_t pack_a_tr(int64_t mr, int64_t kc, const float *a, int64_t rs, float *dst) { return 0; }
static int64_t pack_b_tr(int64_t nr, int64_t kc, const float *b, int64_t cs, float *dst) { return 0; }
#endif

/* mr rows (of MR) × kc of a into dst[k][MR], zero rows beyond mr */
static void pack_a_panel(int64_t mr, int64_t kc, const float *a, int64_t rs, int64_t cs, float *dst) {
  if (cs == 1) {   /* rows contiguous along k: a transpose */
    int64_t k0 = pack_a_tr(mr, kc, a, rs, dst);
    for (int64_t r = 0; r < MR; r++)
      for (int64_t k = k0; k < kc; k++) dst[k * MR + r] = r < mr ? a[r * rs + k] : 0.0f;
    return;
  }
  if (rs == 1) {
    copy_rows12(kc, mr, a, cs, dst);
    return;
  }
  for (int64_t k = 0; k < kc; k++)
    for (int64_t r = 0; r < MR; r++) dst[k * MR + r] = r < mr ? a[r * rs + k * cs] : 0.0f;
}
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
  int64_t k0 = rs == 1 ? pack_b_tr(nr, kc, b, cs, dst) : 0;   /* columns contiguous along k */
  for (int64_t c = 0; c < NR; c++)
    for (int64_t k = k0; k < kc; k++) dst[k * NR + c] = c < nr ? b[k * rs + c * cs] : 0.0f;
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
__attribute__((target("avx512f"))) static void kernel12(int64_t kc, const float *A, const float *B,
                                                        float *C, int64_t ldc, int mr, __mmask16 m0, __mmask16 m1,
                                                        int add) {
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
/* the tile's last rows (mr < 12): only those rows' FMAs, each C element's sum in the same order
   as in kernel() (one FMA chain over k from zero, then added to C): the same bits. R rows. */
#define TAIL(R)                                                                                             \
  __attribute__((target("avx512f"))) static void tail##R(int64_t kc, const float *A, const float *B, \
                                                         float *C, int64_t ldc, __mmask16 m0, __mmask16 m1,   \
                                                         int add) {                                           \
    __m512 c[2 * R];                                                                                        \
    _Pragma("GCC unroll 12") for (int r = 0; r < 2 * R; r++) c[r] = _mm512_setzero_ps();                    \
    for (int64_t k = 0; k < kc; k++) {                                                                      \
      __m512 b0 = _mm512_loadu_ps(B), b1 = _mm512_loadu_ps(B + 16);                                         \
      _Pragma("GCC unroll 12") for (int r = 0; r < R; r++) {                                                \
        __m512 av = _mm512_set1_ps(A[r]);                                                                   \
        c[2 * r] = _mm512_fmadd_ps(av, b0, c[2 * r]);                                                       \
        c[2 * r + 1] = _mm512_fmadd_ps(av, b1, c[2 * r + 1]);                                               \
      }                                                                                                     \
      A += MR;                                                                                              \
      B += NR;                                                                                             \
    }                                                                                                       \
    _Pragma("GCC unroll 12") for (int r = 0; r < R; r++) {                                                  \
      float *cr = C + r * ldc;                                                                              \
      __m512 v0 = c[2 * r], v1 = c[2 * r + 1];                                                              \
      if (add) {                                                                                            \
        v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, cr));                                              \
        v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, cr + 16));                                         \
      }                                                                                                     \
      _mm512_mask_storeu_ps(cr, m0, v0);                                                                    \
      _mm512_mask_storeu_ps(cr + 16, m1, v1);                                                               \
    }                                                                                                       \
  }
TAIL(1) TAIL(2) TAIL(3) TAIL(4) TAIL(5) TAIL(6) TAIL(7) TAIL(8) TAIL(9) TAIL(10) TAIL(11)
#undef TAIL
typedef void (*tail_fn)(int64_t, const float *, const float *, float *, int64_t, __mmask16, __mmask16, int);
static const tail_fn tails[MR] = {NULL, tail1, tail2, tail3, tail4, tail5, tail6, tail7, tail8, tail9, tail10, tail11};
static void kernel(int64_t kc, const float *A, const float *B, float *C, int64_t ldc, int mr, int nr,
                   int add) {
  __mmask16 m0 = nr >= 16 ? 0xFFFF : (__mmask16)((1u << nr) - 1);
  __mmask16 m1 = nr >= 32 ? 0xFFFF : nr > 16 ? (__mmask16)((1u << (nr - 16)) - 1) : 0;
  if (add && bg_pfc)   /* the tile of C, added to after the loop: its lines arrive behind the FMAs */
    for (int r = 0; r < mr; r++) {
      __builtin_prefetch(C + r * ldc, 1, 3);
      __builtin_prefetch(C + r * ldc + NR - 1, 1, 3);
    }
  if (mr == MR || !bg_tail) kernel12(kc, A, B, C, ldc, mr, m0, m1, add);
  else tails[mr](kc, A, B, C, ldc, m0, m1, add);
}
#else
static void kernel(int64_t kc, const float *A, const float *B, float *C, int64_t ldc, int mr, int nr,
                   int add) {
  for (int r = 0; r < mr; r++)
    for (int c = 0; c < nr; c++) {
      float s = 0;
      for (int64_t k = 0; k < kc; k++) s += A[k * MR + r] * B[k * NR + c];
      C[r * ldc + c] = add ? C[r * ldc + c] + s : s;
    }
}
#endif

/* kc × nc of a right operand whose rows run along N (b(k, n) at b[k*rs + n]) into its panels
   (dst + jr·kc: [k][NR], zero columns beyond nc), read row by row: one sequential stream per row
   of the operand rather than 32-column strips, which the hardware prefetchers follow from memory */
void fvl_bg_pack_rows(int64_t nc, int64_t kc, const float *b, int64_t rs, float *dst) {
  int64_t full = nc / NR * NR;
  for (int64_t k = 0; k < kc; k++) {
    const float *src = b + k * rs;
    split_row(src, full, dst + k * NR, NR * kc);
    if (full < nc) {
      float *d = dst + full * kc + k * NR;
      for (int64_t c = 0; c < NR; c++) d[c] = full + c < nc ? src[full + c] : 0.0f;
    }
  }
}

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
      else if (b.cs == 1 && bg_rows)
        fvl_bg_pack_rows(nc, kc, b.p + p0 * b.rs + jc, b.rs, wb);
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
