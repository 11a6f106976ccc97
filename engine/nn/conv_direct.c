/* conv_direct.c — convolution without im2col, for x86-64 with AVX2 + FMA (and AVX-512 tiles).
 *
 * Every kernel keeps its micro-tile's 12 ymm accumulators in registers over the whole
 * reduction, so each output (y or dW) is written once and nothing of size K × OH·OW
 * (K = C·KH·KW) is ever materialised. Each sample's input is copied once into zero-padded
 * planes with rows Wr = NV·8 + KW - 1 floats wide (NV = ⌈OW/8⌉); the input of output (oh, ow)
 * for tap (c, i, j) then sits at c·plane + i·Wr + j from the output's base oh·Wr + ow.
 *
 * O a multiple of 16 (LeNet++, most CNNs): vectors run over output channels.
 *   forward  tile = 16 output channels (2 ymm) × 6 output positions in raster order over a
 *            group of samples: per tap 2 weight loads + 6 broadcast inputs, 12 FMAs; the
 *            16 × 6 tile is transposed into y (with the bias) through a small buffer.
 *   dW       tile = 16 output channels × 6 taps, summed over the group's positions: per
 *            position 2 loads of dy transposed (dt[p][o], 8×8 AVX transposes) + 6 broadcast
 *            inputs, 12 FMAs.
 * Other O: vectors run over 8 output columns of a row.
 *   forward  tile = 4 output channels × 3 vector positions: per tap 3 unaligned input loads +
 *            4 broadcast weights, 12 FMAs; lanes past OW compute on padding and are not stored.
 *   dW       tile = 2 output channels × KW taps of one kernel row, dy in rows of NV·8 floats
 *            (zeros past OW), 8-lane partial sums reduced horizontally once per group.
 * Small maps: samples are grouped so a tile's positions span samples (7×7 maps fill tiles).
 * dx is the forward convolution of dy with the flipped kernel (conv.c), so it runs here too.
 * Threads: each gets an equal share of the batch and (dW) its own partial sum, added in a fixed
 * order at the end: the same numbers for the same thread count.
 *
 * AVX-512 (where the CPU has it, fvl_conv2d_set_avx512): the channel-vector tiles widen to 32
 * channels (forward 32 × 12 positions, dW 32 × 8 taps) with the same per-output sums (same bits).
 * Strided convolutions (16·k outputs, ≥ 64 taps) run forward and dW on the channel-vector
 * kernels, whose positions carry their own input offsets; their dx is im2col's adjoint (conv.c).
 *
 * The dispatcher in conv.c uses these when the CPU has AVX2 and FMA, fvl_conv2d_direct_ok accepts
 * the shape and fvl_conv2d_set_direct has not turned them off (the tests run every path against
 * a double reference). */
#include "nn.h"
#include <string.h>

#define MR 4
#define NP 3

static int direct_enabled = 1;
static int avx512_enabled = 1;   /* use the AVX-512 kernels where the CPU has them */

int fvl_conv2d_set_direct(int on) {
  int old = direct_enabled;
  direct_enabled = on ? 1 : 0;
  return old;
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_DIRECT 1
static int cpu_ok(void) {
  static int ok = -1;
  if (ok < 0) {
    __builtin_cpu_init();
    ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }
  return ok;
}
static int cpu_avx512(void) {
  static int ok = -1;
  if (ok < 0) {
    __builtin_cpu_init();
    ok = __builtin_cpu_supports("avx512f");
  }
  return ok;
}
#else
#define HAVE_DIRECT 0
static int cpu_ok(void) { return 0; }
static int cpu_avx512(void) { return 0; }
#endif

int fvl_conv2d_set_avx512(int on) {
  int old = avx512_enabled && cpu_avx512();
  avx512_enabled = on ? 1 : 0;
  return old;
}
int fvl_conv2d_avx512(void) { return HAVE_DIRECT && avx512_enabled && cpu_avx512(); }



typedef struct {
  int NV, Wr, Hp;   /* vectors per output row, padded row width, padded rows */
  size_t plane;     /* Hp·Wr */
  int K, O4;        /* taps C·KH·KW, O rounded up to MR */
  int GS, GSdw;     /* samples per group in the forward / weight gradient (tiles span samples) */
  size_t xs, ds;    /* floats of one padded sample, of one row-padded dy sample */
  int npos;         /* positions of one sample (OH·OW) */
  int ovec;         /* O is a multiple of 16: kernels with vectors over output channels */
  int ovec_dw;      /* ... for the weight gradient too */
  /* where the channel-vector kernels read the input: the padded copy (xs, plane, Wr), or, for a
   * 1×1 kernel without padding (inplace), x itself — no copy at all */
  int inplace;
  size_t xs_rd, plane_rd;
  int Wr_rd;
} geom;

static geom geometry(const fvl_conv2d_shape *s) {
  geom g;
  g.NV = (s->OW + 7) / 8;
  /* stride 1: rows wide enough for the column-vector kernels' whole vectors; strided (channel-vector
   * kernels only): the columns the taps reach */
  g.Wr = s->sw == 1 ? g.NV * 8 + s->KW - 1 : (s->OW - 1) * s->sw + s->KW;
  g.Hp = (s->OH - 1) * s->sh + s->KH;
  g.plane = (size_t)g.Hp * g.Wr;
  g.K = s->C * s->KH * s->KW;
  g.O4 = (s->O + MR - 1) / MR * MR;
  const int npos = s->OH * g.NV;
  g.npos = s->OH * s->OW;   /* ≥ OH·NV: sizes the position tables */
  g.GS = (48 + npos - 1) / npos;
  g.ovec = s->O % 16 == 0;   /* = OV: the channel-vector kernels */
  g.ovec_dw = g.ovec && g.K >= 64;   /* a few taps: the dy transposition would dominate */
  const int P = s->OH * s->OW;
  g.GSdw = g.ovec_dw ? (256 + P - 1) / P : (64 + npos - 1) / npos;
  if (s->B > 0 && g.GS > s->B) g.GS = s->B;
  if (s->B > 0 && g.GSdw > s->B) g.GSdw = s->B;
  if (g.GS < 1) g.GS = 1;
  if (g.GSdw < 1) g.GSdw = 1;
  g.xs = (size_t)s->C * g.plane;
  g.ds = (size_t)s->O * s->OH * g.NV * 8;
  /* every position reads its own offset, so the channel-vector kernels (forward and dW) read a
   * 1×1 convolution's unpadded input where it lies; the blocking above keeps the padded sizes, so
   * the sums run in the same order (the same bits) either way */
  g.inplace = g.ovec && g.ovec_dw && s->KH == 1 && s->KW == 1 && s->ph == 0 && s->pw == 0;
  g.xs_rd = g.inplace ? (size_t)s->C * s->H * s->W : g.xs;
  g.plane_rd = g.inplace ? (size_t)s->H * s->W : g.plane;
  g.Wr_rd = g.inplace ? s->W : g.Wr;
  return g;
}

static size_t per_thread(const geom *g) {
  size_t f = g->xs * (size_t)g->GS, d = (g->xs + g->ds + (size_t)g->npos) * (size_t)g->GSdw;
  return (f > d ? f : d) + 16;
}

int fvl_conv2d_direct_ok(const fvl_conv2d_shape *s) {
  if (!(HAVE_DIRECT && direct_enabled && cpu_ok() && s->sh >= 1 && s->sw >= 1 &&
        s->OH == (s->H + 2 * s->ph - s->KH) / s->sh + 1 && s->OW == (s->W + 2 * s->pw - s->KW) / s->sw + 1))
    return 0;
  const geom g = geometry(s);   /* offsets into a padded group are ints */
  /* strided: only the channel-vector kernels (forward and dW) take any position offsets; dx
   * then runs on the GEMM path (col2im) */
  if ((s->sh > 1 || s->sw > 1) && !g.ovec_dw) return 0;
  const int gs = g.GS > g.GSdw ? g.GS : g.GSdw;
  return (double)g.xs * gs + (double)g.ds * gs < 2147483647.0;
}

static int nthreads(const fvl_conv2d_shape *s) {
  int T = s->T > 0 ? s->T : 1;
  return s->B > 0 && T > s->B ? s->B : T;
}

/* floats: packed weights (K × O4) + tap offsets (K ints) + per thread one padded sample
 * (C planes) + one row-padded dy sample (O × OH × NV·8) */
size_t fvl_conv2d_direct_workspace(const fvl_conv2d_shape *s) {
  if (!fvl_conv2d_direct_ok(s)) return 0;
  geom g = geometry(s);
  size_t per = per_thread(&g);
  return (size_t)g.K * g.O4 + (size_t)g.K + 16 + per * (size_t)nthreads(s);
}

/* zero-padded copy of one sample: xp[c][r][q] = x[c][r - ph][q - pw] (zeros outside) */
static void pad_sample(const fvl_conv2d_shape *s, const geom *g, const float *x, float *xp) {
  for (int c = 0; c < s->C; c++) {
    float *pc = xp + (size_t)c * g->plane;
    const float *xc = x + (size_t)c * s->H * s->W;
    for (int r = 0; r < g->Hp; r++) {
      float *row = pc + (size_t)r * g->Wr;
      int h = r - s->ph;
      if (h < 0 || h >= s->H) {
        memset(row, 0, sizeof(float) * g->Wr);
        continue;
      }
      int lo = s->pw, hi = s->pw + s->W;   /* [lo, hi) holds data (strided: rows may end early) */
      if (lo > g->Wr) lo = g->Wr;
      if (hi > g->Wr) hi = g->Wr;
      memset(row, 0, sizeof(float) * lo);
      memcpy(row + lo, xc + (size_t)h * s->W, sizeof(float) * (size_t)(hi - lo));
      if (hi < g->Wr) memset(row + hi, 0, sizeof(float) * (size_t)(g->Wr - hi));
    }
  }
}

/* offsets of the kernel rows (c, i) in the padded sample */
static void row_offsets(const fvl_conv2d_shape *s, const geom *g, int *roff) {
  int k = 0;
  for (int c = 0; c < s->C; c++)
    for (int i = 0; i < s->KH; i++) roff[k++] = (int)((size_t)c * g->plane_rd + (size_t)i * g->Wr_rd);
}

#if HAVE_DIRECT
#define TGT __attribute__((target("avx2,fma")))

/* lanes valid in output vector v of a row */
static inline int lanes(int OW, int v) {
  int n = OW - 8 * v;
  return n > 8 ? 8 : n;
}

TGT static inline __m256i lane_mask(int n) {
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), idx);
}

/* one micro-tile: MR output channels (packed panel wp, K × MR) × NP positions with bases e[] in
 * the padded samples. The taps run as nrow kernel rows (c, i) at offsets roff[] of KW taps each;
 * FWD_TILE(5) and FWD_TILE(3) fix KW at compile time (no per-tap offset loads), FWD_TILE(0)
 * takes it at run time. */
#define FMA_STEP(w, x0, x1, x2)                                                                   \
  do {                                                                                            \
    __m256 w0 = _mm256_broadcast_ss(w);                                                           \
    a00 = _mm256_fmadd_ps(w0, x0, a00); a01 = _mm256_fmadd_ps(w0, x1, a01);                       \
    a02 = _mm256_fmadd_ps(w0, x2, a02);                                                           \
    __m256 w1 = _mm256_broadcast_ss((w) + 1);                                                     \
    a10 = _mm256_fmadd_ps(w1, x0, a10); a11 = _mm256_fmadd_ps(w1, x1, a11);                       \
    a12 = _mm256_fmadd_ps(w1, x2, a12);                                                           \
    __m256 w2 = _mm256_broadcast_ss((w) + 2);                                                     \
    a20 = _mm256_fmadd_ps(w2, x0, a20); a21 = _mm256_fmadd_ps(w2, x1, a21);                       \
    a22 = _mm256_fmadd_ps(w2, x2, a22);                                                           \
    __m256 w3 = _mm256_broadcast_ss((w) + 3);                                                     \
    a30 = _mm256_fmadd_ps(w3, x0, a30); a31 = _mm256_fmadd_ps(w3, x1, a31);                       \
    a32 = _mm256_fmadd_ps(w3, x2, a32);                                                           \
  } while (0)
#define FWD_TILE(KWC)                                                                              \
  TGT static void fwd_tile_##KWC(const float *xp, const int *roff, int nrow, int kw, const float *wp, \
                                 const int e[NP], __m256 acc[MR][NP]) {                            \
    __m256 a00 = _mm256_setzero_ps(), a01 = a00, a02 = a00, a10 = a00, a11 = a00, a12 = a00;       \
    __m256 a20 = a00, a21 = a00, a22 = a00, a30 = a00, a31 = a00, a32 = a00;                       \
    const float *p0 = xp + e[0], *p1 = xp + e[1], *p2 = xp + e[2];                                 \
    const int KWn = KWC > 0 ? KWC : kw;                                                            \
    for (int r = 0; r < nrow; r++) {                                                               \
      const int off = roff[r];                                                                     \
      const float *q0 = p0 + off, *q1 = p1 + off, *q2 = p2 + off;                                  \
      const float *w = wp + (size_t)r * KWn * MR;                                                  \
      _Pragma("GCC unroll 8") for (int j = 0; j < KWn; j++) {                                      \
        __m256 x0 = _mm256_loadu_ps(q0 + j), x1 = _mm256_loadu_ps(q1 + j);                         \
        __m256 x2 = _mm256_loadu_ps(q2 + j);                                                       \
        FMA_STEP(w + j * MR, x0, x1, x2);                                                          \
      }                                                                                            \
    }                                                                                              \
    acc[0][0] = a00; acc[0][1] = a01; acc[0][2] = a02;                                             \
    acc[1][0] = a10; acc[1][1] = a11; acc[1][2] = a12;                                             \
    acc[2][0] = a20; acc[2][1] = a21; acc[2][2] = a22;                                             \
    acc[3][0] = a30; acc[3][1] = a31; acc[3][2] = a32;                                             \
  }
FWD_TILE(0)
FWD_TILE(3)
FWD_TILE(5)

/* a group of gs padded samples (stride g->xs) → y of those samples */
/* the epilogue on vectors over 16 consecutive output channels o0.. (half h: channels o0 + 8h..) */
typedef struct {
  __m256 sc[2], sh[2], a[2];
  int aff, act;
} epi16;
TGT static inline void epi16_load(epi16 *e, const fvl_conv_epi *ep, int o0) {
  e->aff = ep->scale != NULL;
  e->act = ep->a != NULL;
  for (int h = 0; h < 2; h++) {
    e->sc[h] = e->aff ? _mm256_loadu_ps(ep->scale + o0 + 8 * h) : _mm256_set1_ps(1.f);
    e->sh[h] = e->aff ? _mm256_loadu_ps(ep->shift + o0 + 8 * h) : _mm256_setzero_ps();
    e->a[h] = !e->act ? _mm256_setzero_ps()
              : ep->na == 1 ? _mm256_set1_ps(ep->a[0]) : _mm256_loadu_ps(ep->a + o0 + 8 * h);
  }
}
TGT static inline __m256 epi_vec16(const epi16 *e, int h, __m256 v) {
  if (e->aff) v = _mm256_fmadd_ps(v, e->sc[h], e->sh[h]);
  if (e->act) v = _mm256_blendv_ps(_mm256_mul_ps(v, e->a[h]), v, _mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_GT_OQ));
  return v;
}

/* the epilogue on one vector of channel o (see fvl_conv_epi) */
TGT static inline __m256 epi_vec(const fvl_conv_epi *ep, int o, __m256 v) {
  if (ep->scale) v = _mm256_fmadd_ps(v, _mm256_set1_ps(ep->scale[o]), _mm256_set1_ps(ep->shift[o]));
  if (ep->a) {
    const __m256 neg = _mm256_mul_ps(v, _mm256_set1_ps(ep->a[ep->na == 1 ? 0 : o]));
    v = _mm256_blendv_ps(neg, v, _mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_GT_OQ));
  }
  return v;
}

TGT static void fwd_group(const fvl_conv2d_shape *s, const geom *g, int gs, const float *xp,
                          const int *roff, const float *wp, const float *bias, const fvl_conv_epi *ep,
                          float *y) {
  const int pps = s->OH * g->NV, npos = gs * pps;
  const size_t P = (size_t)s->OH * s->OW, out_sz = (size_t)s->O * P;
  for (int o0 = 0; o0 < s->O; o0 += MR) {
    if (fvl_aborted()) return;   /* Ctrl-C: the driver reports it */
    for (int t0 = 0; t0 < npos; t0 += NP) {
      int e[NP], pos[NP], n = npos - t0 < NP ? npos - t0 : NP;
      for (int q = 0; q < NP; q++) {
        pos[q] = t0 + (q < n ? q : n - 1);   /* repeat the last position in a ragged tile */
        const int b = pos[q] / pps, r = pos[q] % pps;
        e[q] = (int)((size_t)b * g->xs + (size_t)(r / g->NV) * g->Wr + (size_t)(r % g->NV) * 8);
      }
      __m256 acc[MR][NP];
      const float *panel = wp + (size_t)o0 * g->K;
      const int nrow = s->C * s->KH;
      if (s->KW == 5) fwd_tile_5(xp, roff, nrow, 5, panel, e, acc);
      else if (s->KW == 3) fwd_tile_3(xp, roff, nrow, 3, panel, e, acc);
      else fwd_tile_0(xp, roff, nrow, s->KW, panel, e, acc);
      for (int r = 0; r < MR && o0 + r < s->O; r++) {
        const __m256 bv = _mm256_set1_ps(bias ? bias[o0 + r] : 0.f);
        for (int q = 0; q < n; q++) {
          const int b = pos[q] / pps, rr = pos[q] % pps, oh = rr / g->NV, v = rr % g->NV;
          const int m = lanes(s->OW, v);
          float *dst = y + (size_t)b * out_sz + (size_t)(o0 + r) * P + (size_t)oh * s->OW + 8 * v;
          __m256 val = _mm256_add_ps(acc[r][q], bv);
          if (ep) val = epi_vec(ep, o0 + r, val);
          if (m == 8) _mm256_storeu_ps(dst, val);
          else _mm256_maskstore_ps(dst, lane_mask(m), val);
        }
      }
    }
  }
}

/* Output channels a multiple of 16: vectors run over 16 output channels (two ymm) instead of
 * 8 output columns, broadcasting one input per position, PN = 6 positions per micro-tile —
 * 12 accumulators, 2 weight loads + 6 broadcasts per 12 FMAs, and no lanes lost to rows
 * that are not a multiple of 8 wide. Positions run in raster order over the group (any
 * (b, oh, ow)); the 16 × 6 results are transposed into y through a small buffer. */
#define OV 16
#define PN 6
/* one macro for both instruction sets: NAME_KWC, target ATTR, vector type VT of VL lanes, NP
 * positions, tile width 2·VL channels; LD/ST/SET1/FMA/ZERO the set's intrinsics. The positions'
 * input offsets are 64-bit (no sign extensions in the loop); NAME_KWC_run is the variant for NP
 * consecutive positions of one row (e[q] = e[0] + q: constant displacements, no offset loads). */
/* The broadcasts are volatile asm: in a run, row[q + j] of tap j is row[q' + j'] of another tap,
 * and GCC would keep such inputs in registers across taps (and spill accumulators for them). */
TGT static inline __m256 bcast8(const float *p) {
  __m256 v;
  __asm__ volatile("vbroadcastss %1, %0" : "=x"(v) : "m"(*p));
  return v;
}
__attribute__((target("avx512f,avx2,fma"))) static inline __m512 bcast16(const float *p) {
  __m512 v;
  __asm__ volatile("vbroadcastss %1, %0" : "=v"(v) : "m"(*p));
  return v;
}
#define CV_TILE_BODY(VT, VL, NP_, LD, ST, SET1, FMA, ZERO, KWC, ADDR)                             \
    VT a0[NP_], a1[NP_];                                                                           \
    _Pragma("GCC unroll 16") for (int q = 0; q < NP_; q++) a0[q] = a1[q] = ZERO();                 \
    const int KWn = KWC > 0 ? KWC : kw;                                                            \
    for (int r = 0; r < nrow; r++) {                                                               \
      const float *row = xp + roff[r];                                                             \
      const float *w = wp + (size_t)r * KWn * 2 * VL;                                              \
      _Pragma("GCC unroll 8") for (int j = 0; j < KWn; j++) {                                      \
        const VT w0 = LD(w + j * 2 * VL), w1 = LD(w + j * 2 * VL + VL);                            \
        _Pragma("GCC unroll 16") for (int q = 0; q < NP_; q++) {                                   \
          const VT xb = SET1(row + ADDR + j);                                                      \
          a0[q] = FMA(w0, xb, a0[q]);                                                              \
          a1[q] = FMA(w1, xb, a1[q]);                                                              \
        }                                                                                          \
      }                                                                                            \
    }                                                                                              \
    _Pragma("GCC unroll 16") for (int q = 0; q < NP_; q++) {                                       \
      ST(out + q * 2 * VL, a0[q]);                                                                 \
      ST(out + q * 2 * VL + VL, a1[q]);                                                            \
    }
#define CV_TILE(NAME, ATTR, VT, VL, NP_, LD, ST, SET1, FMA, ZERO, KWC)                             \
  ATTR static void NAME##_##KWC(const float *xp, const int *roff, int nrow, int kw, const float *wp, \
                                const int *e, float *out) {                                        \
    ptrdiff_t eo[NP_];                                                                             \
    for (int q = 0; q < NP_; q++) eo[q] = e[q];                                                    \
    CV_TILE_BODY(VT, VL, NP_, LD, ST, SET1, FMA, ZERO, KWC, eo[q])                                 \
  }                                                                                                \
  ATTR static void NAME##_##KWC##_run(const float *xp, const int *roff, int nrow, int kw,          \
                                      const float *wp, const int *e, float *out) {                 \
    xp += e[0];   /* the positions of a run: e[0] + q (every step 1: n == NP, no repeats) */       \
    CV_TILE_BODY(VT, VL, NP_, LD, ST, SET1, FMA, ZERO, KWC, q)                                  \
  }
#define FWDO_TILE(KWC) \
  CV_TILE(fwdo_tile, TGT, __m256, 8, PN, _mm256_loadu_ps, _mm256_storeu_ps, bcast8, _mm256_fmadd_ps, _mm256_setzero_ps, KWC)
FWDO_TILE(0)
FWDO_TILE(3)
FWDO_TILE(5)

/* The same with AVX-512 (32 zmm registers): 32 output channels (two zmm) × PZ = 12 positions per
 * micro-tile — 24 accumulators, 2 weight loads + 12 broadcasts per 24 FMAs of 16 lanes (the AVX2
 * tile: 8 loads per 12 FMAs of 8 lanes). Each output's sum runs over the same taps in the same
 * order as in the AVX2 tile, so both give the same bits. */
#define OZ 32
#define PZ 12
#define TGTZ __attribute__((target("avx512f,avx2,fma")))
#define FWDZ_TILE(KWC) \
  CV_TILE(fwdz_tile, TGTZ, __m512, 16, PZ, _mm512_loadu_ps, _mm512_storeu_ps, bcast16, _mm512_fmadd_ps, _mm512_setzero_ps, KWC)
FWDZ_TILE(0)
FWDZ_TILE(3)
FWDZ_TILE(5)

/* the forward's channel-vector kernel: tile width in channels and positions, and its tiles */
typedef void (*fwdo_tile_fn)(const float *, const int *, int, int, const float *, const int *, float *);
typedef struct {
  int ov, pn;
  fwdo_tile_fn t[3], run[3];   /* KW any, 3, 5; for any positions, for a run of one row */
} fwdo_kernel;
static const fwdo_kernel FWDO_AVX2 = {OV, PN, {fwdo_tile_0, fwdo_tile_3, fwdo_tile_5},
                                      {fwdo_tile_0_run, fwdo_tile_3_run, fwdo_tile_5_run}};
static const fwdo_kernel FWDO_AVX512 = {OZ, PZ, {fwdz_tile_0, fwdz_tile_3, fwdz_tile_5},
                                        {fwdz_tile_0_run, fwdz_tile_3_run, fwdz_tile_5_run}};

/* the kernel the forward uses for s (NULL: O is not a multiple of 16, the column-vector kernel) */
static const fwdo_kernel *fwdo_pick(const fvl_conv2d_shape *s) {
  if (s->O % OZ == 0 && fvl_conv2d_avx512()) return &FWDO_AVX512;
  return s->O % OV == 0 ? &FWDO_AVX2 : NULL;
}

/* Positions per band of fwdo_group: the group's positions run in bands whose outputs (O × band)
 * stay in L2 while the channel blocks add into them (a 64-channel 112×112 map is 3.2 MB per
 * sample: passing over it once per channel block went to memory). A whole group when it is small. */
static int fwdo_band(const fvl_conv2d_shape *s, const geom *g) {
  const int npos = g->GS * s->OH * s->OW;
  const int band = (int)((32u << 10) / (unsigned)s->O);   /* ≈ 128 KiB of outputs */
  if (band >= npos) return npos;
  return band < PZ ? PZ : band / PZ * PZ;   /* whole tiles of either kernel */
}

/* input channels per pass of fwdo_group: the pass's weight panel (CB·KH·KW × 16) and the band's
 * padded inputs of those channels stay in L2 while every tile and channel block reuses them.
 * Computed from the geometry alone (a full group, whatever kernel width runs), so each output
 * sums its taps in the same order whatever the thread count or instruction set. */
static int fwdo_channel_block(const fvl_conv2d_shape *s, const geom *g) {
  const int npos = g->GS * s->OH * s->OW, band = fwdo_band(s, g);
  size_t xrow = (size_t)g->GS * g->plane;   /* floats of one channel the band reads */
  if (band < npos) {
    const size_t rows = ((size_t)(band + s->OW - 1) / s->OW + 1) * s->sh + (size_t)s->KH - 1;
    if (rows * g->Wr < xrow) xrow = rows * g->Wr;
  }
  const size_t wrow = (size_t)s->KH * s->KW * OV;   /* floats per channel */
  size_t cb = (64u << 10) / (wrow + xrow);   /* ≈ 256 KiB per pass */
  if (cb < 4) cb = 4;
  if (cb >= (size_t)s->C) return s->C;
  const size_t nb = ((size_t)s->C + cb - 1) / cb;   /* blocks of (nearly) equal size */
  return (int)(((size_t)s->C + nb - 1) / nb);
}

#define OMAX OZ
#define PMAX PZ
TGT static void fwdo_group(const fvl_conv2d_shape *s, const geom *g, int gs, const fwdo_kernel *kn,
                           const float *xp, const int *roff, const float *wp, const float *bias,
                           const fvl_conv_epi *ep, float *y) {
  const int OW = s->OW, OH = s->OH, KH = s->KH, KW = s->KW, ov = kn->ov, pn = kn->pn;
  const size_t P = (size_t)OH * OW, out_sz = (size_t)s->O * P;
  /* the channel blocks fix the order of each output's sum (fwdo_channel_block); the bands only
   * the order in which outputs are computed */
  const int npos = gs * (int)P, CB = fwdo_channel_block(s, g), band = fwdo_band(s, g);
  const int kt = KW == 5 ? 2 : KW == 3 ? 1 : 0;
  float out[OMAX * PMAX];
  for (int p0 = 0; p0 < npos; p0 += band) {   /* bands of positions: their outputs stay in L2 */
    const int p1 = npos - p0 < band ? npos : p0 + band;
    for (int c0 = 0; c0 < s->C; c0 += CB) {   /* channel blocks: y holds the partial sums */
      const int nrow = (s->C - c0 < CB ? s->C - c0 : CB) * KH, first = c0 == 0, last = c0 + CB >= s->C;
      const int *ro = roff + (size_t)c0 * KH;
      for (int o0 = 0; o0 < s->O; o0 += ov) {
        if (fvl_aborted()) return;   /* Ctrl-C: the driver reports it */
        const float *panel = wp + (size_t)o0 * g->K + (size_t)c0 * KH * KW * ov;
        epi16 eb[OMAX / 16];
        if (ep && last)
          for (int h = 0; h < ov / 16; h++) epi16_load(&eb[h], ep, o0 + 16 * h);
        int b = p0 / (int)P, oh = p0 % (int)P / OW, ow = p0 % OW;   /* cursor of the first position of the tile */
        for (int t0 = p0; t0 < p1; t0 += pn) {
          const int n = p1 - t0 < pn ? p1 - t0 : pn;
          int e[PMAX];
          size_t yo[PMAX];
          for (int q = 0, cb = b, ch = oh, cw = ow; q < pn; q++) {
            e[q] = (int)((size_t)cb * g->xs_rd + (size_t)ch * s->sh * g->Wr_rd + (size_t)cw * s->sw);
            yo[q] = (size_t)cb * out_sz + (size_t)ch * OW + (size_t)cw;
            if (q < n - 1) {   /* advance; a ragged tile repeats its last position */
              if (++cw == OW) { cw = 0; if (++ch == OH) { ch = 0; cb++; } }
            }
            if (q == n - 1) { b = cb; oh = ch; ow = cw; }
          }
          if (++ow == OW) { ow = 0; if (++oh == OH) { oh = 0; b++; } }   /* next tile's first */
          (n == pn && s->sw == 1 && e[pn - 1] - e[0] == pn - 1 ? kn->run[kt] : kn->t[kt])(xp, ro, nrow, KW, panel, e, out);
          if (ep && last) {   /* the final sums: the epilogue on the tile's 16-channel vectors */
            for (int l = 0; l < ov; l++) {
              const float *yl = y + (size_t)(o0 + l) * P;
              const float bv = first && bias ? bias[o0 + l] : 0.f;
              for (int q = 0; q < n; q++) out[q * ov + l] += first ? bv : yl[yo[q]];
            }
            for (int q = 0; q < n; q++)
              for (int h = 0; h < ov / 16; h++) {
                float *v = out + q * ov + 16 * h;
                _mm256_storeu_ps(v, epi_vec16(&eb[h], 0, _mm256_loadu_ps(v)));
                _mm256_storeu_ps(v + 8, epi_vec16(&eb[h], 1, _mm256_loadu_ps(v + 8)));
              }
            for (int l = 0; l < ov; l++) {
              float *yl = y + (size_t)(o0 + l) * P;
              for (int q = 0; q < n; q++) yl[yo[q]] = out[q * ov + l];
            }
            continue;
          }
          for (int l = 0; l < ov; l++) {
            float *yl = y + (size_t)(o0 + l) * P;
            if (first) {
              const float bv = bias ? bias[o0 + l] : 0.f;
              for (int q = 0; q < n; q++) yl[yo[q]] = out[q * ov + l] + bv;
            } else {
              for (int q = 0; q < n; q++) yl[yo[q]] += out[q * ov + l];
            }
          }
        }
      }
    }
  }
}


/* dy of sample b of a group of gs into the o-major group layout dp[o][b][oh][NV·8] (zeros past
 * OW): for one output channel the group's vector positions are contiguous */
static void pad_dy(const fvl_conv2d_shape *s, const geom *g, int gs, int b, const float *dy, float *dp) {
  const int rw = g->NV * 8;
  const size_t splane = (size_t)s->OH * rw;
  for (int o = 0; o < s->O; o++)
    for (int oh = 0; oh < s->OH; oh++) {
      float *row = dp + ((size_t)o * gs + b) * splane + (size_t)oh * rw;
      memcpy(row, dy + ((size_t)o * s->OH + oh) * s->OW, sizeof(float) * s->OW);
      memset(row + s->OW, 0, sizeof(float) * (size_t)(rw - s->OW));
    }
}

TGT static inline float hsum(__m256 v) {
  __m128 a = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  a = _mm_add_ps(a, _mm_movehl_ps(a, a));
  a = _mm_add_ss(a, _mm_movehdup_ps(a));
  return _mm_cvtss_f32(a);
}

/* one dW micro-tile: output channels o0, o0+1 (d0, d1: their group dy, vector position p at
 * 8p) × NJ taps of one kernel row (xb: padded input at that row and first tap; position p's
 * inputs at xoff[p]), over the npos vector positions of the group. NJ is a compile-time
 * constant, so the 2·NJ accumulators stay in registers. */
#define DW_TILE(NJ)                                                                               \
  TGT static void dw_tile_##NJ(int npos, const int *xoff, const float *xb, const float *d0,       \
                               const float *d1, float *acc0, float *acc1) {                       \
    __m256 a0[NJ], a1[NJ];                                                                        \
    _Pragma("GCC unroll 8") for (int q = 0; q < NJ; q++) a0[q] = a1[q] = _mm256_setzero_ps();     \
    for (int p = 0; p < npos; p++) {                                                              \
      const __m256 y0 = _mm256_loadu_ps(d0 + 8 * (size_t)p), y1 = _mm256_loadu_ps(d1 + 8 * (size_t)p); \
      const float *xv = xb + xoff[p];                                                             \
      _Pragma("GCC unroll 8") for (int q = 0; q < NJ; q++) {                                      \
        __m256 xx = _mm256_loadu_ps(xv + q);                                                      \
        __asm__("" : "+x"(xx)); /* one load feeds both FMAs (GCC would load it twice) */          \
        a0[q] = _mm256_fmadd_ps(y0, xx, a0[q]);                                                   \
        a1[q] = _mm256_fmadd_ps(y1, xx, a1[q]);                                                   \
      }                                                                                           \
    }                                                                                             \
    _Pragma("GCC unroll 8") for (int q = 0; q < NJ; q++) {                                        \
      acc0[q] += hsum(a0[q]);                                                                     \
      acc1[q] += hsum(a1[q]);                                                                     \
    }                                                                                             \
  }
DW_TILE(1)
DW_TILE(3)
DW_TILE(5)

/* dW contributions of a group of gs samples (padded inputs xp, o-major dy dp) added into dw
 * (O×C×KH×KW). Blocks of DW_OB output channels outer, then the kernel rows (c, i): the block's
 * dy and the rows of x[c] stay in L1 while the channel pairs of the block pass over them. */
#define DW_OB 8
TGT static void dw_group(const fvl_conv2d_shape *s, const geom *g, int gs, const float *xp,
                         const float *dp, const int *xoff, float *dw) {
  const int KH = s->KH, KW = s->KW, K = s->C * KH * KW;
  const int npos = gs * s->OH * g->NV;
  const size_t oplane = (size_t)npos * 8;
  float scratch[8];
  for (int ob = 0; ob < s->O; ob += DW_OB) {
    if (fvl_aborted()) return;   /* Ctrl-C: the driver reports it */
    const int oe = ob + DW_OB < s->O ? ob + DW_OB : s->O;
    for (int c = 0; c < s->C; c++)
      for (int i = 0; i < KH; i++) {
        const float *xb = xp + (size_t)c * g->plane + (size_t)i * g->Wr;
        for (int o0 = ob; o0 < oe; o0 += 2) {
          const int two = o0 + 1 < s->O;
          const float *d0 = dp + (size_t)o0 * oplane, *d1 = two ? d0 + oplane : d0;
          float *w0 = dw + ((size_t)o0 * s->C + c) * KH * KW + (size_t)i * KW;
          float *w1 = two ? w0 + K : scratch;
          int j = 0;
          if (KW == 5) {
            dw_tile_5(npos, xoff, xb, d0, d1, w0, w1);
            j = 5;
          }
          for (; j + 3 <= KW; j += 3) dw_tile_3(npos, xoff, xb + j, d0, d1, w0 + j, w1 + j);
          for (; j < KW; j++) dw_tile_1(npos, xoff, xb + j, d0, d1, w0 + j, w1 + j);
        }
      }
  }
}
/* Output channels a multiple of 16: dW tiles of 16 output channels (two ymm) × DWT = 6 taps,
 * summed over the group's positions p in raster order: per position two loads of dy
 * transposed (dt[p][o]) and 6 broadcast inputs for 12 FMAs; no lanes lost to row widths and no
 * horizontal sums. */
#define DWT 6
/* 8×8 block transpose: rows src[r·ss …] → dst[c·ds + r] */
TGT static inline void transpose8(const float *src, size_t ss, float *dst, size_t ds) {
  __m256 r0 = _mm256_loadu_ps(src), r1 = _mm256_loadu_ps(src + ss), r2 = _mm256_loadu_ps(src + 2 * ss);
  __m256 r3 = _mm256_loadu_ps(src + 3 * ss), r4 = _mm256_loadu_ps(src + 4 * ss);
  __m256 r5 = _mm256_loadu_ps(src + 5 * ss), r6 = _mm256_loadu_ps(src + 6 * ss);
  __m256 r7 = _mm256_loadu_ps(src + 7 * ss);
  __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
  __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
  __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
  __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
  __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  _mm256_storeu_ps(dst, _mm256_permute2f128_ps(u0, u4, 0x20));
  _mm256_storeu_ps(dst + ds, _mm256_permute2f128_ps(u1, u5, 0x20));
  _mm256_storeu_ps(dst + 2 * ds, _mm256_permute2f128_ps(u2, u6, 0x20));
  _mm256_storeu_ps(dst + 3 * ds, _mm256_permute2f128_ps(u3, u7, 0x20));
  _mm256_storeu_ps(dst + 4 * ds, _mm256_permute2f128_ps(u0, u4, 0x31));
  _mm256_storeu_ps(dst + 5 * ds, _mm256_permute2f128_ps(u1, u5, 0x31));
  _mm256_storeu_ps(dst + 6 * ds, _mm256_permute2f128_ps(u2, u6, 0x31));
  _mm256_storeu_ps(dst + 7 * ds, _mm256_permute2f128_ps(u3, u7, 0x31));
}

/* dy of sample b into the transposed, channel-blocked group layout dt[ob][p][16]
 * (p = b·P + oh·OW + ow, blocks bstride floats apart; O is a multiple of 16 here). Blocked, a
 * tile's dy is one contiguous run of 64-byte lines; with rows of O floats (a power of two) the
 * lines of a run fell into a few L1 sets and evicted each other. */
TGT static void transpose_dy(const fvl_conv2d_shape *s, int b, const float *dy, float *dt, size_t bstride) {
  const size_t P = (size_t)s->OH * s->OW, O = (size_t)s->O;
  float *base = dt + (size_t)b * P * OV;
  size_t p0 = 0;
  for (; p0 + 8 <= P; p0 += 8)
    for (size_t o = 0; o < O; o += 8)
      transpose8(dy + o * P + p0, P, base + (o / OV) * bstride + p0 * OV + o % OV, OV);
  for (; p0 < P; p0++)
    for (size_t o = 0; o < O; o++) base[(o / OV) * bstride + p0 * OV + o % OV] = dy[o * P + p0];
}

/* one dW micro-tile: 2·VL output channels (dy transposed: dt0, dt1 the blocks of 16 channels
 * the halves read, position p at 16p; AVX2 reads both halves from dt0) × NT taps (xt), summed over
 * the npos positions in order — each lane's sum the same in both instruction sets */
#define DW_CV_TILE(NAME, ATTR, VT, VL, NT, LD, ST, SET1, FMA, ZERO, D1)                            \
  ATTR static void NAME(int npos, const int *xoff, const float *const *xt, const float *dt0,       \
                        const float *dt1, float *out) {                                            \
    VT a0[NT], a1[NT];                                                                             \
    (void)dt1;                                                                                     \
    _Pragma("GCC unroll 8") for (int t = 0; t < NT; t++) a0[t] = a1[t] = ZERO();                   \
    for (int p = 0; p < npos; p++) {                                                               \
      const VT d0 = LD(dt0 + (size_t)p * OV), d1 = LD(D1 + (size_t)p * OV);                        \
      const ptrdiff_t e = xoff[p];                                                                 \
      _Pragma("GCC unroll 8") for (int t = 0; t < NT; t++) {                                       \
        const VT xb = SET1(xt[t][e]);                                                              \
        a0[t] = FMA(d0, xb, a0[t]);                                                                \
        a1[t] = FMA(d1, xb, a1[t]);                                                                \
      }                                                                                            \
    }                                                                                              \
    _Pragma("GCC unroll 8") for (int t = 0; t < NT; t++) {                                         \
      ST(out + t * 2 * VL, a0[t]);                                                                 \
      ST(out + t * 2 * VL + VL, a1[t]);                                                            \
    }                                                                                              \
  }
#define DWZT 8
DW_CV_TILE(dwo_tile, TGT, __m256, 8, DWT, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_set1_ps, _mm256_fmadd_ps,
           _mm256_setzero_ps, dt0 + 8)
/* AVX-512: 32 channels × 8 taps, 16 accumulators; per position 2 loads + 8 broadcasts per 16 FMAs
 * of 16 lanes (AVX2: 8 per 12 of 8 lanes) */
DW_CV_TILE(dwz_tile, TGTZ, __m512, 16, DWZT, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_set1_ps, _mm512_fmadd_ps,
           _mm512_setzero_ps, dt1)

/* dW contributions of a group (padded inputs xp, transposed dy dt, position offsets xoff, tap
 * offsets koff) added into the transposed partial dwt (K × O); AVX-512 tiles where O is a multiple
 * of 32 and the CPU has it */
TGT static void dwo_group(const fvl_conv2d_shape *s, const geom *g, int gs, const float *xp,
                          const float *dt, const int *xoff, const int *koff, float *dwt) {
  const int K = g->K, npos = gs * s->OH * s->OW;
  const size_t bstride = (size_t)g->GSdw * g->npos * OV;   /* floats between channel blocks */
  const int z = s->O % OZ == 0 && fvl_conv2d_avx512();
  const int ov = z ? OZ : OV, tk = z ? DWZT : DWT;
  float out[OZ * DWZT];
  for (int o0 = 0; o0 < s->O; o0 += ov)   /* the block's dt run stays in L1 */
    for (int k0 = 0; k0 < K; k0 += tk) {
      if (k0 % (16 * tk) == 0 && fvl_aborted()) return;   /* Ctrl-C: the driver reports it */
      const int nt = K - k0 < tk ? K - k0 : tk;
      const float *xt[DWZT];
      for (int t = 0; t < tk; t++) xt[t] = xp + koff[k0 + (t < nt ? t : nt - 1)];
      const float *d0 = dt + (size_t)(o0 / OV) * bstride;
      (z ? dwz_tile : dwo_tile)(npos, xoff, xt, d0, z ? d0 + bstride : d0, out);
      for (int t = 0; t < nt; t++) {   /* dwt is transposed (K × O): vector adds per tap */
        float *row = dwt + (size_t)(k0 + t) * s->O + o0;
        for (int h = 0; h < ov; h += 8)
          _mm256_storeu_ps(row + h, _mm256_add_ps(_mm256_loadu_ps(row + h), _mm256_loadu_ps(out + t * ov + h)));
      }
    }
}

/* dw = the sum of the np partials, added in part order (the same bits with any thread count):
 * first summed in place into partial 0 (contiguous streams), then, for the channel-vector
 * partials (K × O), transposed into dw (O × K) by 8 × 8 blocks. Element by element through the
 * transposition, the reads of each row went to np different lines per element. */
TGT static void dw_reduce(const fvl_conv2d_shape *s, const geom *g, int np, float *partial, float *dw) {
  const size_t wsz = (size_t)s->O * g->K, chunk = 4096;
  float *dst = g->ovec_dw ? partial : dw;
#pragma omp parallel for schedule(static)
  for (size_t i0 = 0; i0 < wsz; i0 += chunk) {
    const size_t n = wsz - i0 < chunk ? wsz - i0 : chunk;
    if (dst != partial) memcpy(dst + i0, partial + i0, sizeof(float) * n);
    for (int k = 1; k < np; k++) {
      const float *src = partial + wsz * (size_t)k + i0;
      for (size_t i = 0; i < n; i++) dst[i0 + i] += src[i];
    }
  }
  if (!g->ovec_dw) return;
  const size_t K = (size_t)g->K, O = (size_t)s->O, K8 = K / 8 * 8;   /* O is a multiple of 16 */
#pragma omp parallel for schedule(static)
  for (size_t k0 = 0; k0 < K8; k0 += 8)
    for (size_t o0 = 0; o0 < O; o0 += 8) transpose8(partial + k0 * O + o0, O, dw + o0 * K + k0, K);
  for (size_t k = K8; k < K; k++)
    for (size_t o = 0; o < O; o++) dw[o * K + k] = partial[k * O + o];
}

#endif


/* layout of the workspace: packed weights, tap offsets, then per thread gs padded samples and
 * gs row-padded dy samples; the dW partials follow (fvl_conv2d_direct_dw_workspace) */
typedef struct {
  float *wp;
  int *roff;
  float *thr;
  size_t per;
} layout;
static layout lay_out(const fvl_conv2d_shape *s, const geom *g, float *work) {
  layout l;
  l.wp = work;
  l.roff = (int *)(work + (size_t)g->K * g->O4);
  l.thr = (float *)(l.roff + g->K) + 16;
  l.per = per_thread(g);
  return l;
}

int fvl_conv2d_direct_fwd(const fvl_conv2d_shape *s, const float *x, const float *w, const float *bias,
                          float *y, float *work) {
  return fvl_conv2d_direct_fwd_epi(s, x, w, bias, NULL, y, work);
}

int fvl_conv2d_direct_fwd_epi(const fvl_conv2d_shape *s, const float *x, const float *w, const float *bias,
                              const fvl_conv_epi *ep, float *y, float *work) {
#if HAVE_DIRECT
  const geom g = geometry(s);
  const int T = nthreads(s);
  const layout l = lay_out(s, &g, work);
  /* wp[ob][k][r] = w[ob·V + r][k] with V = 16 (channel vectors) or MR: each micro-tile streams
   * one contiguous panel (zeros for the padding channels of the last block) */
  const fwdo_kernel *kn = fwdo_pick(s);
  const int V = kn ? kn->ov : MR;
  for (int ob = 0; ob < g.O4 / V; ob++)
    for (int k = 0; k < g.K; k++)
      for (int r = 0; r < V; r++) {
        const int o = ob * V + r;
        l.wp[((size_t)ob * g.K + k) * V + r] = o < s->O ? w[(size_t)o * g.K + k] : 0.f;
      }
  row_offsets(s, &g, l.roff);
  const size_t in_sz = (size_t)s->C * s->H * s->W, out_sz = (size_t)s->O * s->OH * s->OW;
#pragma omp parallel num_threads(T)
  {
    float *xp = l.thr + l.per * (size_t)fvl_omp_thread();
    const int nt = fvl_omp_team(), tid = fvl_omp_thread();
    const int lo = (int)((long long)s->B * tid / nt), hi = (int)((long long)s->B * (tid + 1) / nt);
    for (int b0 = lo; b0 < hi; b0 += g.GS) {   /* each thread its equal share of the batch */
      if (fvl_aborted()) break;
      const int gs = hi - b0 < g.GS ? hi - b0 : g.GS;
      if (!g.inplace)
        for (int b = 0; b < gs; b++) pad_sample(s, &g, x + (size_t)(b0 + b) * in_sz, xp + (size_t)b * g.xs);
      if (kn) fwdo_group(s, &g, gs, kn, g.inplace ? x + (size_t)b0 * in_sz : xp, l.roff, l.wp, bias, ep, y + (size_t)b0 * out_sz);
      else fwd_group(s, &g, gs, xp, l.roff, l.wp, bias, ep, y + (size_t)b0 * out_sz);
    }
  }
  return fvl_check_abort("conv2d");
#else
  (void)s; (void)x; (void)w; (void)bias; (void)ep; (void)y; (void)work;
  return fvl_err("conv2d: the direct kernels are not built for this CPU");
#endif
}

/* dW partial sums over fixed parts of the batch (not one per thread): each part sums its sample
 * groups in order, and the parts are added in part order, so dW has the same bits with any
 * thread count. At most 16 parts (load balance) and 64 MB of partials. */
static int dw_parts(const fvl_conv2d_shape *s, const geom *g) {
  const size_t wsz = (size_t)s->O * g->K, cap = ((size_t)16 << 20) / (wsz ? wsz : 1);
  int np = s->B > 0 ? (s->B + g->GSdw - 1) / g->GSdw : 1;
  if (np > 16) np = 16;
  if ((size_t)np > cap) np = cap > 0 ? (int)cap : 1;
  return np > 0 ? np : 1;
}

/* dw (O×C×KH×KW) = Σ over the batch; work as for the forward plus the partial dW (after it) */
size_t fvl_conv2d_direct_dw_workspace(const fvl_conv2d_shape *s) {
  if (!fvl_conv2d_direct_ok(s)) return 0;
  const geom g = geometry(s);
  return fvl_conv2d_direct_workspace(s) + (size_t)s->O * g.K * (size_t)dw_parts(s, &g);
}

int fvl_conv2d_direct_dw(const fvl_conv2d_shape *s, const float *x, const float *dy, float *dw, float *work) {
#if HAVE_DIRECT
  const geom g = geometry(s);
  const int T = nthreads(s);
  const layout l = lay_out(s, &g, work);
  float *partial = work + fvl_conv2d_direct_workspace(s);
  for (int c = 0, k = 0; c < s->C; c++)   /* tap offsets (the K-int table the forward uses for rows) */
    for (int i = 0; i < s->KH; i++)
      for (int j = 0; j < s->KW; j++) l.roff[k++] = (int)((size_t)c * g.plane_rd + (size_t)i * g.Wr_rd + j);
  const size_t wsz = (size_t)s->O * g.K;
  const size_t in_sz = (size_t)s->C * s->H * s->W, out_sz = (size_t)s->O * s->OH * s->OW;
  const int np = dw_parts(s, &g);
#pragma omp parallel num_threads(T)
  {
    const int tid = fvl_omp_thread();
    float *xp = l.thr + l.per * (size_t)tid, *dp = xp + g.xs * (size_t)g.GSdw;
    int *xoff = (int *)(dp + g.ds * (size_t)g.GSdw);
    for (int b = 0, p = 0; b < g.GSdw; b++)   /* (vector) position → offset in the padded group */
      for (int oh = 0; oh < s->OH; oh++) {
        if (g.ovec_dw)
          for (int ow = 0; ow < s->OW; ow++)
            xoff[p++] = (int)((size_t)b * g.xs_rd + (size_t)oh * s->sh * g.Wr_rd + (size_t)ow * s->sw);
        else
          for (int v = 0; v < g.NV; v++) xoff[p++] = (int)((size_t)b * g.xs + (size_t)oh * g.Wr + 8 * (size_t)v);
      }
#pragma omp for schedule(dynamic, 1)
    for (int part = 0; part < np; part++) {
      float *dwp = partial + wsz * (size_t)part;
      memset(dwp, 0, sizeof(float) * wsz);
      const int lo = (int)((long long)s->B * part / np), hi = (int)((long long)s->B * (part + 1) / np);
      for (int b0 = lo; b0 < hi; b0 += g.GSdw) {   /* the part's sample groups, in order */
        if (fvl_aborted()) break;
        const int gs = hi - b0 < g.GSdw ? hi - b0 : g.GSdw;
        for (int b = 0; b < gs; b++) {
          if (!g.inplace) pad_sample(s, &g, x + (size_t)(b0 + b) * in_sz, xp + (size_t)b * g.xs);
          if (g.ovec_dw) transpose_dy(s, b, dy + (size_t)(b0 + b) * out_sz, dp, (size_t)g.GSdw * g.npos * OV);
          else pad_dy(s, &g, gs, b, dy + (size_t)(b0 + b) * out_sz, dp);
        }
        if (g.ovec_dw) dwo_group(s, &g, gs, g.inplace ? x + (size_t)b0 * in_sz : xp, dp, xoff, l.roff, dwp);
        else dw_group(s, &g, gs, xp, dp, xoff, dwp);
      }
    }
  }
  if (fvl_check_abort("conv2d")) return -1;
  dw_reduce(s, &g, np, partial, dw);
  return 0;
#else
  (void)s; (void)x; (void)dy; (void)dw; (void)work;
  return fvl_err("conv2d: the direct kernels are not built for this CPU");
#endif
}
