/* fma_probe.c — the calling thread's fused multiply-add peak, measured: 12 independent chains of
 * 8-wide FMAs (enough to cover the FMA latency on two pipes), timed with the thread's CPU clock
 * so that a loaded machine does not lower the figure. For benches that state the fraction of the
 * machine's FMA peak a kernel reaches. */
#include "backbone.h"
#include <time.h>

#if defined(__x86_64__)
#include <immintrin.h>
__attribute__((target("avx2,fma"))) static float fma_loop(long iters, float seed) {
  __m256 acc[12];
  const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
  for (int k = 0; k < 12; k++) acc[k] = _mm256_set1_ps(seed + (float)k);
  for (long i = 0; i < iters; i++)
    for (int k = 0; k < 12; k++) acc[k] = _mm256_fmadd_ps(acc[k], a, b);
  __m256 s = acc[0];
  for (int k = 1; k < 12; k++) s = _mm256_add_ps(s, acc[k]);
  float out[8];
  _mm256_storeu_ps(out, s);
  return out[0] + out[7];
}
#define FLOPS_PER_ITER (12.0 * 8 * 2)
/* the same with 16-wide AVX-512 FMAs (the machine's peak where OpenBLAS uses them) */
__attribute__((target("avx512f"))) static float fma_loop512(long iters, float seed) {
  __m512 acc[12];
  const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
  for (int k = 0; k < 12; k++) acc[k] = _mm512_set1_ps(seed + (float)k);
  for (long i = 0; i < iters; i++)
    for (int k = 0; k < 12; k++) acc[k] = _mm512_fmadd_ps(acc[k], a, b);
  __m512 s = acc[0];
  for (int k = 1; k < 12; k++) s = _mm512_add_ps(s, acc[k]);
  return _mm512_reduce_add_ps(s);
}
static int have_avx512(void) { return __builtin_cpu_supports("avx512f"); }
static int have_avx2(void) { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }
#else
static float fma_loop512(long iters, float seed) { return fma_loop(iters, seed); }
static int have_avx512(void) { return 0; }
static int have_avx2(void) { return 0; }
static float fma_loop(long iters, float seed) {
  float acc[8];
  for (int k = 0; k < 8; k++) acc[k] = seed + (float)k;
  for (long i = 0; i < iters; i++)
    for (int k = 0; k < 8; k++) acc[k] = acc[k] * 0.999999f + 1e-7f;
  return acc[0] + acc[7];
}
#define FLOPS_PER_ITER (8.0 * 2)
#endif

static double thread_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* One thread's best rate over `seconds` of its own CPU time with the given loop (16 or 8 lanes) */
static double probe(double seconds, int wide) {
  long iters = 1 << 18;
  double best = 0;
  volatile float sink = 0;
  const double t_end = thread_seconds() + seconds;
  while (thread_seconds() < t_end) {
    const double t0 = thread_seconds();
    sink += wide ? fma_loop512(iters, (float)t0) : fma_loop(iters, (float)t0);
    const double dt = thread_seconds() - t0;
    if (dt < 0.02) { iters *= 2; continue; }
    const double r = FLOPS_PER_ITER * (wide ? 2.0 : 1.0) * (double)iters / dt / 1e9;
    if (r > best) best = r;
  }
  (void)sink;
  return best;
}

double fvl_fma_peak_all_gflops(double seconds, const char **isa) {
  int wide = have_avx512();
  if (isa) *isa = wide ? "avx512" : have_avx2() ? "avx2" : "scalar";
  if (!(seconds > 0)) seconds = 0.2;
  int nt = fvl_omp_max_threads();
  double total = 0;
  /* every thread runs the loop at the same time (hyperthreads of one core then share its FMA
     units, as the kernels' threads do); each rate is per CPU second of that thread, so time
     the threads spend descheduled on a loaded machine does not lower the sum */
#pragma omp parallel num_threads(nt) reduction(+:total)
  total += probe(seconds, wide);
  return total;
}

double fvl_fma_peak_gflops(double seconds) { return probe(seconds > 0 ? seconds : 0.2, 0); }
