/* hot.h — FVL_HOT: compile a hot loop several times and let the loader pick one per CPU.
 * GCC's target_clones builds the function for the baseline ISA and for x86-64-v3 (AVX2 + FMA)
 * and resolves the call once at load time (an ifunc), so the build flags stay portable while the
 * loops run 8 wide. There is no x86-64-v4 (AVX-512) clone: the BatchNorm loops auto-vectorised
 * 16 wide in such a clone were no faster than the 8-wide vector code below on our AMD EPYC (its
 * AVX-512 runs on 256-bit units, and these loops wait on memory).
 * Put it on small leaf functions that hold the loops: the body of an OpenMP parallel region is
 * outlined into a function of its own that the clones do not cover, so a parallel loop calls a
 * FVL_HOT helper per row/channel. Off for clang (fuzzing and sanitizer builds use plain code)
 * and with -DFVL_NO_CLONES. */
#ifndef FVL_HOT_H
#define FVL_HOT_H
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(FVL_NO_CLONES)
#define FVL_HOT __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define FVL_HOT
#endif

/* Eight floats as one value (GCC/clang vector extension): +, -, * and comparisons work lane by
 * lane and compile to one AVX instruction in an x86-64-v3 clone, two SSE ones in the baseline.
 * Used where auto-vectorisation gives poor code (reductions with several sums, short rows). */
#include <string.h>
/* GCC warns (-Wpsabi) that a 32-byte vector passed or returned by value has another ABI without
 * AVX; these helpers are static and always inlined, so no call crosses that ABI: the warning is
 * off in every file that includes this header. */
#pragma GCC diagnostic ignored "-Wpsabi"
typedef float fvl_v8f __attribute__((vector_size(32)));
typedef int fvl_v8i __attribute__((vector_size(32)));
static inline __attribute__((always_inline)) fvl_v8f fvl_v8_load(const float *p) {
  fvl_v8f v;
  memcpy(&v, p, sizeof v);
  return v;
}
static inline __attribute__((always_inline)) void fvl_v8_store(float *p, fvl_v8f v) { memcpy(p, &v, sizeof v); }
static inline __attribute__((always_inline)) fvl_v8f fvl_v8_set1(float a) { return (fvl_v8f){a, a, a, a, a, a, a, a}; }
/* m ? a : b lane by lane, m a comparison's result (all bits set or clear) */
static inline __attribute__((always_inline)) fvl_v8f fvl_v8_select(fvl_v8i m, fvl_v8f a, fvl_v8f b) {
  return (fvl_v8f)((m & (fvl_v8i)a) | (~m & (fvl_v8i)b));
}
/* the lanes' sum in double, in a fixed order */
static inline __attribute__((always_inline)) double fvl_v8_hsum(fvl_v8f v) {
  return (((double)v[0] + v[4]) + ((double)v[1] + v[5])) + (((double)v[2] + v[6]) + ((double)v[3] + v[7]));
}
#endif
