/* blk_gemm.c (bench) — the class blocks' own GEMM (engine/loss/blk_gemm.c) on the three shapes
 * of a class block of the fused head, single-threaded, against one core's measured FMA peak.
 *
 *   flock /work/wt/bench.lock build/bench_blk_gemm [reps=40] [classes=32768]
 *
 * The shapes and strides are those engine/loss/cosine.c uses per block of nj = 256 classes
 * (B = 256 rows, D = 512): forward logits X̂·Ŵ_blkᵀ (X̂ packed once), dX += G_blk·Ŵ_blk and
 * dW_blk = G_blkᵀ·X̂ (X̂ packed once). Ŵ is a C×D matrix of `classes` rows and the blocks are
 * taken in turn, so that, as in a training step, each block's rows come from memory rather than
 * from the cache (the last row: the forward with the block's rows read just before, as the head's
 * forward does for the norms). Per shape: GFLOP/s of the call as the head makes it ("call"), of
 * the same product with both operands packed beforehand ("kernel": the micro-kernel and its C
 * loads and stores only) and the share of the call's time that is packing (1 − kernel/call time).
 * Times are the median over the reps of the thread's CPU time per call (a loaded machine lowers
 * them less than wall time or a mean); the load average is printed beside. The last lines: Sub-center
 * ArcFace's sparse dX and dW of the same block (blk_sel.c; K = 2, 3, 5, a random sub-centre per row
 * and class), GFLOP/s of their nonzeros and how much faster than the dense calls above. FVL_BLK_GEMM_TAIL=0 FVL_BLK_GEMM_ROWS=0 in the environment: the
 * kernel as it was before those two changes (blk_gemm.c), for an A/B. */
#include "loss/blk_gemm.h"
#include "nn/backbone.h"
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double cpu_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
static float *fill(size_t n, unsigned seed) {
  float *p = aligned_alloc(64, sizeof(float) * ((n + 15) / 16 * 16));
  if (!p) {
    fprintf(stderr, "bench_blk_gemm: out of memory (%zu floats)\n", n);
    exit(1);
  }
  for (size_t i = 0; i < n; i++) {
    seed = seed * 1664525u + 1013904223u;
    p[i] = (float)((seed >> 8) & 0xFFFF) / 65536.0f - 0.5f;
  }
  return p;
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}
/* the median of n times (sorts them) */
static double median(double *t, int n) {
  qsort(t, (size_t)n, sizeof *t, cmp_d);
  return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

enum { B = 256, D = 512, NJ = 256 };

int main(int argc, char **argv) {
  int reps = argc > 1 ? atoi(argv[1]) : 40;
  long classes = argc > 2 ? atol(argv[2]) : 32768;
  if (reps < 1 || classes < NJ) {
    fprintf(stderr, "usage: bench_blk_gemm [reps >= 1] [classes >= %d]\n", NJ);
    return 2;
  }
  FILE *f = fopen("/proc/loadavg", "r");
  char load[128] = "?";
  if (f) {
    if (!fgets(load, sizeof load, f)) strcpy(load, "?");
    fclose(f);
    load[strcspn(load, "\n")] = 0;
  }
  if (!fvl_bg_enabled()) {
    printf("bench_blk_gemm: no AVX-512 (or FVL_BLK_GEMM=0): the head uses OpenBLAS; nothing to time\n");
    return 0;
  }
  omp_set_num_threads(1);
  double peak = fvl_fma_peak_all_gflops(0.3, NULL);
  long nblk = classes / NJ;
  float *W = fill((size_t)nblk * NJ * D, 1), *X = fill((size_t)B * D, 2), *G = fill((size_t)B * NJ, 3);
  float *out = fill((size_t)B * NJ, 4), *dX = fill((size_t)B * D, 5), *dW = fill((size_t)NJ * D, 6);
  float *work = aligned_alloc(64, sizeof(float) * fvl_bg_work_size());
  float *Xa = aligned_alloc(64, sizeof(float) * fvl_bg_packa_size(B, D));
  float *Xb = aligned_alloc(64, sizeof(float) * fvl_bg_packb_size(B, D));
  size_t np = fvl_bg_packa_size(B, D);
  if (fvl_bg_packb_size(D, NJ) > np) np = fvl_bg_packb_size(D, NJ);
  if (fvl_bg_packb_size(NJ, D) > np) np = fvl_bg_packb_size(NJ, D);
  float *Ap = aligned_alloc(64, sizeof(float) * np), *Bp = aligned_alloc(64, sizeof(float) * np);
  if (!work || !Xa || !Xb || !Ap || !Bp) {
    fprintf(stderr, "bench_blk_gemm: out of memory\n");
    return 1;
  }
  fvl_bg_packa(B, D, (fvl_bg_mat){X, D, 1}, Xa);
  fvl_bg_packb(B, D, (fvl_bg_mat){X, D, 1}, Xb);
  printf("load %s | one thread's FMA peak %.1f GFLOP/s | %d reps over %ld blocks of %d classes\n", load, peak, reps,
         nblk, NJ);
  printf("%-27s %9s %9s %9s %9s %8s\n", "shape (M×N×K)", "call GF/s", "% peak", "kern GF/s", "% peak", "packing");
  const double flop = 2.0 * B * NJ * D;
  static const char *names[4] = {"fwd X^·W_blk^T 256x256x512", "dX  G·W_blk    256x512x256",
                                 "dW  G^T·X^     256x512x256", "fwd, W_blk in cache"};
  volatile float sink = 0;
  double t_dense[2] = {0, 0};
  for (int s4 = 0; s4 < 4; s4++) {
    int shape = s4 == 3 ? 0 : s4;
    double t_call = 0, t_kern = 0, tc[reps], tk[reps];
    for (int r = 0; r <= reps; r++) {   /* r = 0: warm-up, not counted */
      const float *w = W + (size_t)(r % nblk) * NJ * D;
      fvl_bg_mat wt = {w, 1, D}, wr = {w, D, 1}, g = {G, NJ, 1}, gt = {G, 1, NJ}, x = {X, D, 1};
      if (s4 == 3) {   /* the head's forward reads the block's rows for their norms first */
        float acc = 0;
        for (size_t i = 0; i < (size_t)NJ * D; i += 16) acc += w[i];
        sink += acc;
      }
      double t0 = cpu_now();
      if (shape == 0) fvl_bg_gemm(B, NJ, D, Xa, x, NULL, wt, out, NJ, 0, work);
      else if (shape == 1) fvl_bg_gemm(B, D, NJ, NULL, g, NULL, wr, dX, D, 1, work);
      else fvl_bg_gemm(NJ, D, B, NULL, gt, Xb, x, dW, D, 0, work);
      double t1 = cpu_now();
      /* the same product from operands packed beforehand (the packing not timed) */
      if (shape == 0) fvl_bg_packb(D, NJ, wt, Bp);
      else if (shape == 1) {
        fvl_bg_packa(B, NJ, g, Ap);
        fvl_bg_packb(NJ, D, wr, Bp);
      } else fvl_bg_packa(NJ, B, gt, Ap);
      double t2 = cpu_now();
      if (shape == 0) fvl_bg_gemm(B, NJ, D, Xa, x, Bp, wt, out, NJ, 0, work);
      else if (shape == 1) fvl_bg_gemm(B, D, NJ, Ap, g, Bp, wr, dX, D, 1, work);
      else fvl_bg_gemm(NJ, D, B, Ap, gt, Xb, x, dW, D, 0, work);
      double t3 = cpu_now();
      if (r > 0) {
        tc[r - 1] = t1 - t0;
        tk[r - 1] = t3 - t2;
      }
    }
    t_call = median(tc, reps) * reps;
    t_kern = median(tk, reps) * reps;
    double gc = flop * reps / t_call / 1e9, gk = flop * reps / t_kern / 1e9;
    printf("%-26s %9.1f %8.1f%% %9.1f %8.1f%% %7.1f%%\n", names[s4], gc, 100 * gc / peak, gk, 100 * gk / peak,
           100 * (1 - t_kern / t_call));
    if (s4 == 1 || s4 == 2) t_dense[s4 - 1] = t_call / reps;
  }
  /* Sub-center ArcFace's sparse backward (blk_sel.c): the block's NJ columns are classes of K
     sub-centres, one nonzero per row and class (a random sub-centre); GFLOP/s of the nonzeros */
  for (int K = 2; K <= 5; K += (K == 3 ? 2 : 1)) {
    int64_t nc = (NJ + K - 1) / K;
    float *gv = fill((size_t)B * nc, 7);
    int32_t *gc = malloc(sizeof(int32_t) * (size_t)B * nc);
    void *selt = malloc(fvl_bg_sel_t_work_size(NJ, B));
    float *selw = aligned_alloc(64, sizeof(float) * fvl_bg_sel_work_size());
    if (!gc || !selt || !selw) return 1;
    unsigned seed = 9;
    for (int64_t i = 0; i < B * nc; i++) {
      seed = seed * 1664525u + 1013904223u;
      int64_t col = (i % nc) * K + (seed >> 16) % K;
      gc[i] = col < NJ ? (int32_t)col : -1;
    }
    double ts[2][reps];
    for (int r = 0; r <= reps; r++) {
      const float *w = W + (size_t)(r % nblk) * NJ * D;
      double t0 = cpu_now();
      fvl_bg_gemm_sel(B, D, NJ, K, 0, gv, gc, nc, (fvl_bg_mat){w, D, 1}, dX, D, 1, selw);
      double t1 = cpu_now();
      fvl_bg_gemm_sel_t(B, D, NJ, K, 0, gv, gc, nc, Xb, dW, D, selt);
      double t2 = cpu_now();
      if (r > 0) {
        ts[0][r - 1] = t1 - t0;
        ts[1][r - 1] = t2 - t1;
      }
    }
    for (int k = 0; k < 2; k++) {
      double t = median(ts[k], reps), g = 2.0 * B * nc * D / t / 1e9;
      printf("%s sparse K=%d         %9.1f %8.1f%%   %.2fx faster than the dense call above\n", k ? "dW " : "dX ", K, g,
             100 * g / peak, t_dense[k] / t);
    }
    free(gv); free(gc); free(selt); free(selw);
  }
  return 0;
}
