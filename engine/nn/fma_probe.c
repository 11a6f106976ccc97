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
#else
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

double fvl_fma_peak_gflops(double seconds) {
  long iters = 1 << 20;
  double best = 0;
  volatile float sink = 0;
  const double t_end = thread_seconds() + (seconds > 0 ? seconds : 0.2);
  while (thread_seconds() < t_end) {
    const double t0 = thread_seconds();
    sink += fma_loop(iters, (float)t0);
    const double dt = thread_seconds() - t0;
    if (dt < 0.02) { iters *= 2; continue; }
    const double r = FLOPS_PER_ITER * (double)iters / dt / 1e9;
    if (r > best) best = r;
  }
  (void)sink;
  return best;
}
