/* blk_gemm.h — the class blocks' own single-threaded GEMM: packed panels and an AVX-512
 * 12×32 micro-kernel, chosen at run time; where the CPU lacks AVX-512 (or fvl_bg_set(0)) the
 * callers keep OpenBLAS (fvl_gemm). Not public: engine/loss only. */
#ifndef FVL_BLK_GEMM_H
#define FVL_BLK_GEMM_H
#include <stddef.h>
#include <stdint.h>

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
#endif
