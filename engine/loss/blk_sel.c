/* blk_sel.c — products with a "one per group" sparse left operand on the own AVX-512 kernel
 * (blk_gemm.h): Sub-center ArcFace's backward, whose B×(C·K) gradient has one nonzero per row and
 * class (at the arg-max sub-centre), so dX = G·W and dW = Gᵀ·X̂ need ArcFace's FMAs, not K times.
 *
 * Both run one gather micro-kernel: a tile of 6 rows × 64 columns of C in 24 accumulators, and per
 * step p each row r adds A[p][r] · B[O[p][r] .. +64), the row of the packed right operand that row
 * r needs (a runtime offset: FMAs with a memory operand, no runtime choice of register).
 *   dX (fvl_bg_gemm_sel): rows of C = rows of G, steps = the groups (classes) of the chunk: every
 *     row takes its selected sub-centre's row of the packed W panels (the K rows of a class lie
 *     together, so a step reads a few lines that the tile's rows share).
 *   dW (fvl_bg_gemm_sel_t): rows of C = the columns of G (one sub-centre of one class each), steps
 *     = the rows i of G that selected it, ascending (a list per column, a counting sort of the
 *     block's entries), gathering rows of the packed X̂. Columns sorted by list length (longest
 *     first) so that a tile's lists pad little.
 * Each element's sum is the dense kernel's FMA chain with the zero terms left out (the same
 * chunks of KC, the same order, added to C the same way): the same bits as fvl_bg_gemm on the
 * dense matrix, up to the sign of a zero. */
#include "blk_gemm.h"
#include <stdlib.h>
#include <string.h>

enum { NR = FVL_BG_NR, KC = FVL_BG_KC, NC = FVL_BG_NC };

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* The sparse tiles: SR rows × 64 columns (two of the packed NR-column panels, hs floats apart);
   the last columns of N (≤ 32) take one panel. 6 × 64 rather than the dense kernel's 12 × 32: a
   step is then 24 FMAs with 24 vector loads, 6 broadcasts and 6 offsets (36 loads, not 48); the
   loads are what limits this kernel (measured on the AMD EPYC: 85 GFLOP/s a core against 75 for
   12 × 32 and 67 for 4 × 96, with the panels of a 256-column chunk; 117 is the FMA peak). */
enum { SR = 6 };
typedef void (*gk_fn)(int64_t np, const float *A, const int32_t *O, const float *B, int64_t hs, float *const *crow,
                      int64_t coff, int nr, int add);

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
/* R rows, P panels: crow[r][coff + 32h ..] (+)= Σ_p A[p·SR + r] · B[h·hs + O[p·SR + r] .. +32), nr columns kept */
#define GK(R, P)                                                                                                 \
  __attribute__((target("avx512f"))) static void gk##R##_##P(int64_t np, const float *A, const int32_t *O,       \
                                                             const float *B, int64_t hs, float *const *crow,     \
                                                             int64_t coff, int nr, int add) {                    \
    __m512 c[2 * R * P];                                                                                         \
    _Pragma("GCC unroll 24") for (int r = 0; r < 2 * R * P; r++) c[r] = _mm512_setzero_ps();                     \
    for (int64_t p = 0; p < np; p++) {                                                                           \
      _Pragma("GCC unroll 6") for (int r = 0; r < R; r++) {                                                      \
        __m512 av = _mm512_set1_ps(A[r]);                                                                        \
        const float *b = B + O[r];                                                                               \
        _Pragma("GCC unroll 2") for (int h = 0; h < P; h++) {                                                    \
          c[2 * (r * P + h)] = _mm512_fmadd_ps(av, _mm512_loadu_ps(b + h * hs), c[2 * (r * P + h)]);             \
          c[2 * (r * P + h) + 1] = _mm512_fmadd_ps(av, _mm512_loadu_ps(b + h * hs + 16), c[2 * (r * P + h) + 1]); \
        }                                                                                                        \
      }                                                                                                          \
      A += SR;                                                                                                   \
      O += SR;                                                                                                   \
    }                                                                                                            \
    _Pragma("GCC unroll 4") for (int q = 0; q < 2 * P; q++) {                                                    \
      int left = nr - 16 * q;                                                                                    \
      __mmask16 m = left >= 16 ? 0xFFFF : left > 0 ? (__mmask16)((1u << left) - 1) : 0;                          \
      _Pragma("GCC unroll 6") for (int r = 0; r < R; r++) {                                                      \
        float *cr = crow[r] + coff + 16 * q;                                                                     \
        __m512 v = c[2 * r * P + q];                                                                             \
        if (add) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, cr));                                             \
        _mm512_mask_storeu_ps(cr, m, v);                                                                         \
      }                                                                                                          \
    }                                                                                                            \
  }
GK(1, 1) GK(2, 1) GK(3, 1) GK(4, 1) GK(5, 1) GK(6, 1)
GK(1, 2) GK(2, 2) GK(3, 2) GK(4, 2) GK(5, 2) GK(6, 2)
#undef GK
static const gk_fn gks[2][SR + 1] = {{NULL, gk1_1, gk2_1, gk3_1, gk4_1, gk5_1, gk6_1},
                                     {NULL, gk1_2, gk2_2, gk3_2, gk4_2, gk5_2, gk6_2}};
#else
static void gk_plain(int64_t np, const float *A, const int32_t *O, const float *B, int64_t hs, float *const *crow,
                     int64_t coff, int nr, int add, int mr) {
  for (int r = 0; r < mr; r++)
    for (int n = 0; n < nr; n++) {
      float s = 0;
      for (int64_t p = 0; p < np; p++) s += A[p * SR + r] * B[(n / NR) * hs + O[p * SR + r] + n % NR];
      crow[r][coff + n] = add ? crow[r][coff + n] + s : s;
    }
}
#endif

/* the micro-kernel for mr rows and nr (≤ 64) columns: the C tile's rows at crow[r] + coff (prefetched
   when added to); the second panel (columns 32..63) hs floats after the first */
static void gkernel(int64_t np, const float *A, const int32_t *O, const float *B, int64_t hs, float *const *crow,
                    int64_t coff, int mr, int nr, int add) {
  if (add)
    for (int r = 0; r < mr; r++)
      for (int q = 0; q < nr; q += 16) __builtin_prefetch(crow[r] + coff + q, 1, 3);
#if defined(__x86_64__) && defined(__GNUC__)
  gks[nr > NR][mr](np, A, O, B, hs, crow, coff, nr, add);
#else
  gk_plain(np, A, O, B, hs, crow, coff, nr, add, mr);
#endif
}

/* ---------------------------------------------------------------- dX: C = A·B */
/* a multiple of 16 floats (64 bytes: aligned_alloc wants a multiple of its alignment) */
size_t fvl_bg_sel_work_size(void) { return ((size_t)KC * NC + (size_t)2 * (KC + 2) * SR + 31) / 16 * 16; }

void fvl_bg_gemm_sel(int64_t M, int64_t N, int64_t Kc, int64_t G, int64_t g0, const float *gv, const int32_t *gc,
                     int64_t lds, fvl_bg_mat b, float *C, int64_t ldc, int add, float *work) {
  float *wb = work, *wa = work + (size_t)KC * NC;
  int32_t *wo = (int32_t *)(wa + (size_t)(KC + 2) * SR);
  float *crow[SR];
  for (int64_t jc = 0; jc < N; jc += NC) {
    int64_t nc = min64(NC, N - jc);
    for (int64_t p0 = 0; p0 < Kc; p0 += KC) {
      int64_t kc = min64(KC, Kc - p0), qa = (p0 + g0) / G, ns = (p0 + kc - 1 + g0) / G - qa + 1;
      fvl_bg_pack_rows(nc, kc, b.p + p0 * b.rs + jc, b.rs, wb);
      for (int64_t i0 = 0; i0 < M; i0 += SR) {
        int mr = (int)min64(SR, M - i0);
        /* the tile's A: per group of the chunk, each row's nonzero if it falls in the chunk */
        for (int r = 0; r < mr; r++) {
          const float *v = gv + (i0 + r) * lds + qa;
          const int32_t *k = gc + (i0 + r) * lds + qa;
          for (int64_t s = 0; s < ns; s++) {
            int in = k[s] >= p0 && k[s] < p0 + kc;
            wa[s * SR + r] = in ? v[s] : 0.0f;
            wo[s * SR + r] = in ? (int32_t)((k[s] - p0) * NR) : 0;
          }
          crow[r] = C + (i0 + r) * ldc + jc;
        }
        for (int64_t jr = 0; jr < nc; jr += 2 * NR)
          gkernel(ns, wa, wo, wb + jr * kc, NR * kc, crow, jr, mr, (int)min64(2 * NR, nc - jr), add || p0 > 0);
      }
    }
  }
}

/* ---------------------------------------------------------------- dW: C += Aᵀ·X */
/* the scratch: per tile its first step's index, per column its next entry's index; the tiles' A
   and O (≤ kc steps each); per column its count and rank, the columns by rank, the count buckets */
typedef struct { int64_t *tbase, *pos; float *A; int32_t *O, *cnt, *rank, *perm, *bucket; } sel_t_work;
static int64_t ntiles(int64_t Kc) { return (Kc + SR - 1) / SR; }
size_t fvl_bg_sel_t_work_size(int64_t Kc, int64_t M) {
  int64_t kc = min64(M, KC), nt = ntiles(Kc);
  return sizeof(int64_t) * (size_t)(nt + 1 + Kc) + 2 * sizeof(float) * (size_t)(nt * SR * kc) +
         sizeof(int32_t) * (size_t)(3 * Kc + kc + 2) + 64;
}
static sel_t_work sel_t_split(void *work, int64_t Kc, int64_t M) {
  int64_t kc = min64(M, KC), nt = ntiles(Kc);
  sel_t_work w;
  w.tbase = work;
  w.pos = w.tbase + nt + 1;
  w.A = (float *)(w.pos + Kc);
  w.O = (int32_t *)(w.A + nt * SR * kc);
  w.cnt = w.O + nt * SR * kc;
  w.rank = w.cnt + Kc;
  w.perm = w.rank + Kc;
  w.bucket = w.perm + Kc;
  return w;
}

/* the lists of rows [p0, p0+kc) into the tiles of w (columns ranked by count, longest first);
   returns the number of tiles with entries. Two passes over the entries (count, fill), each a
   load and an increment per entry: at B = 256, 85 classes a block, they cost a fifth of the
   kernel's time (they were a third with a column's rank and fill looked up per entry). */
static int64_t sel_t_lists(int64_t p0, int64_t kc, int64_t Kc, int64_t nq, const float *gv, const int32_t *gc,
                           int64_t lds, sel_t_work *w) {
  memset(w->cnt, 0, sizeof(int32_t) * (size_t)Kc);
  for (int64_t i = p0; i < p0 + kc; i++) {
    const int32_t *k = gc + i * lds;
    for (int64_t q = 0; q < nq; q++)
      if ((uint32_t)k[q] < (uint32_t)Kc) w->cnt[k[q]]++;
  }
  /* ranks: by count descending, ties by column (a counting sort) */
  memset(w->bucket, 0, sizeof(int32_t) * (size_t)(kc + 2));
  for (int64_t k = 0; k < Kc; k++) w->bucket[kc - w->cnt[k]]++;
  for (int64_t v = 0, s = 0; v <= kc; v++) {
    int32_t n = w->bucket[v];
    w->bucket[v] = (int32_t)s;
    s += n;
  }
  for (int64_t k = 0; k < Kc; k++) {
    w->rank[k] = w->bucket[kc - w->cnt[k]]++;
    w->perm[w->rank[k]] = (int32_t)k;
  }
  int64_t nt = 0;
  w->tbase[0] = 0;
  for (int64_t t = 0; t < ntiles(Kc) && w->cnt[w->perm[t * SR]] > 0; t++, nt++)
    w->tbase[t + 1] = w->tbase[t] + (int64_t)w->cnt[w->perm[t * SR]] * SR;
  for (int64_t k = 0; k < Kc; k++) w->pos[k] = w->rank[k] / SR < nt ? w->tbase[w->rank[k] / SR] + w->rank[k] % SR : 0;
  /* the entries, rows ascending: column k's next step is at pos[k] */
  for (int64_t i = p0; i < p0 + kc; i++) {
    const int32_t *k = gc + i * lds;
    const float *v = gv + i * lds;
    int32_t off = (int32_t)((i - p0) * NR);
    for (int64_t q = 0; q < nq; q++)
      if ((uint32_t)k[q] < (uint32_t)Kc) {
        int64_t at = w->pos[k[q]];
        w->pos[k[q]] = at + SR;
        w->A[at] = v[q];
        w->O[at] = off;
      }
  }
  /* the shorter lists of a tile padded with zero terms */
  for (int64_t t = 0; t < nt; t++) {
    int64_t plen = w->cnt[w->perm[t * SR]];
    for (int64_t r = 0; r < SR; r++) {
      int64_t len = t * SR + r < Kc ? w->cnt[w->perm[t * SR + r]] : 0;
      for (int64_t s = len; s < plen; s++) {
        w->A[w->tbase[t] + s * SR + r] = 0.0f;
        w->O[w->tbase[t] + s * SR + r] = 0;
      }
    }
  }
  return nt;
}

void fvl_bg_gemm_sel_t(int64_t M, int64_t N, int64_t Kc, int64_t G, int64_t g0, const float *gv, const int32_t *gc,
                       int64_t lds, const float *Xb, float *C, int64_t ldc, void *work) {
  sel_t_work w = sel_t_split(work, Kc, M);
  int64_t nq = (Kc + g0 + G - 1) / G, Np = (N + NR - 1) / NR * NR;
  float *crow[SR];
  for (int64_t p0 = 0; p0 < M; p0 += KC) {
    int64_t kc = min64(KC, M - p0), nt = sel_t_lists(p0, kc, Kc, nq, gv, gc, lds, &w);
    const float *xb = Xb + p0 * Np;
    for (int64_t jr = 0; jr < N; jr += 2 * NR)   /* two panels of X̂ (64 KB) for all tiles */
      for (int64_t t = 0; t < nt; t++) {
        int mr = (int)min64(SR, Kc - t * SR);
        for (int r = 0; r < mr; r++) crow[r] = C + (int64_t)w.perm[t * SR + r] * ldc;
        gkernel(w.cnt[w.perm[t * SR]], w.A + w.tbase[t], w.O + w.tbase[t], xb + jr * kc, NR * kc, crow, jr, mr,
                (int)min64(2 * NR, N - jr), 1);
      }
  }
}
