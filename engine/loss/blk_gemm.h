/* blk_gemm.h — the class blocks' own single-threaded GEMM: packed panels and an AVX-512
 * 12×32 micro-kernel, chosen at run time; where the CPU lacks AVX-512 (or fvl_bg_set(0)) the
 * callers keep OpenBLAS (fvl_gemm). Not public: engine/loss only. */
#ifndef FVL_BLK_GEMM_H
#define FVL_BLK_GEMM_H
#include <stddef.h>
#include <stdint.h>

/* the tiles: MR rows × NR columns of C per micro-kernel call, the contraction cut into chunks of
   KC and N into chunks of NC */
enum { FVL_BG_MR = 12, FVL_BG_NR = 32, FVL_BG_KC = 256, FVL_BG_NC = 512 };

/* 1 when the own kernel is used (AVX-512 present and not switched off) */
int fvl_bg_enabled(void);
/* switches the own kernel on (1) or off (0: OpenBLAS everywhere); returns the previous setting.
   On a CPU without AVX-512 it stays off. */
int fvl_bg_set(int on);

/* A matrix given by strides: element (r, c) at p[r*rs + c*cs] */
typedef struct { const float *p; int64_t rs, cs; } fvl_bg_mat;

/* floats of a packed left operand (M×K) and of a packed right operand (K×N) */
size_t fvl_bg_packa_size(int64_t M, int64_t K);
size_t fvl_bg_packb_size(int64_t K, int64_t N);
/* packs the whole M×K left operand / K×N right operand (to be reused by many products) */
void fvl_bg_packa(int64_t M, int64_t K, fvl_bg_mat a, float *Ap);
void fvl_bg_packb(int64_t K, int64_t N, fvl_bg_mat b, float *Bp);
/* floats of the scratch fvl_bg_gemm needs */
size_t fvl_bg_work_size(void);

/* C (M×N, row stride ldc) = (add ? C : 0) + A·B, single-threaded. Each operand either packed
   (Ap / Bp from fvl_bg_packa / packb with the same M, K / K, N; the matrix is then ignored) or
   given by its strides (Ap / Bp NULL: packed here, in work). The order of the sums depends only
   on M, N, K: the same bits on every call. Call only when fvl_bg_enabled(). */
void fvl_bg_gemm(int64_t M, int64_t N, int64_t K, const float *Ap, fvl_bg_mat a, const float *Bp, fvl_bg_mat b,
                 float *C, int64_t ldc, int add, float *work);
/* kc × nc of a matrix whose rows run along N (b(k, n) at b[k*rs + n]) packed into NR-column
   panels: panel p at dst + p·NR·kc, element (k, n) at [k·NR + n], zero columns beyond nc */
void fvl_bg_pack_rows(int64_t nc, int64_t kc, const float *b, int64_t rs, float *dst);

/* Products with a "one per group" sparse left operand (blk_sel.c: Sub-center ArcFace's backward,
   whose B×(C·K) gradient has one nonzero per row and class). A is M×Kc; its columns fall into
   groups of G, the first starting g0 columns before column 0 (group q: columns q·G − g0 ..
   q·G − g0 + G − 1, clipped to 0..Kc−1; nq = (Kc + g0 + G − 1)/G groups). Row i has in group q at
   most one nonzero, gv[i·lds + q] at column gc[i·lds + q] (−1: none). The sums skip the zeros and
   keep the order of the dense fvl_bg_gemm on the same A with its zeros: the same bits (up to the
   sign of a zero result). Call only when fvl_bg_enabled(). */
/* floats of the scratch fvl_bg_gemm_sel needs (a multiple of 16: for aligned_alloc(64, ·)) */
size_t fvl_bg_sel_work_size(void);
/* C (M×N, row stride ldc) = (add ? C : 0) + A·B, B (Kc×N) given by its strides with cs = 1 */
void fvl_bg_gemm_sel(int64_t M, int64_t N, int64_t Kc, int64_t G, int64_t g0, const float *gv, const int32_t *gc,
                     int64_t lds, fvl_bg_mat b, float *C, int64_t ldc, int add, float *work);
/* bytes of the scratch fvl_bg_gemm_sel_t needs for Kc columns of A and M rows */
size_t fvl_bg_sel_t_work_size(int64_t Kc, int64_t M);
/* C (Kc×N, row stride ldc) += Aᵀ·X, X (M×N) packed whole by fvl_bg_packb(M, N, ·, Xb) */
void fvl_bg_gemm_sel_t(int64_t M, int64_t N, int64_t Kc, int64_t G, int64_t g0, const float *gv, const int32_t *gc,
                       int64_t lds, const float *Xb, float *C, int64_t ldc, void *work);
#endif
