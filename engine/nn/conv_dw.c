/* conv_dw.c — depthwise convolutions (groups = C = O, any kernel up to 8×8, stride, padding),
 * forward and backward, vectorised along the output rows (see backbone.h).
 *
 * Each input plane is first copied into a zero-padded buffer split into `stride` column phases:
 * phase p holds the padded columns q ≡ p (mod stride), so the input column ow·stride + j of
 * output column ow is element ow + j/stride of phase j mod stride: every tap of a kernel is a
 * contiguous run of 8 outputs, read with one unaligned vector load, and the padding needs no
 * tests. The forward keeps 4 output rows × 8 columns in registers (the taps' sum in a fixed order:
 * bias, then row by row of the kernel), the weights broadcast once per plane.
 * Backward, one thread per channel (the batch in order, so results do not depend on the thread
 * count): dw and db as 8-lane sums per plane added in double; dx for stride 1 as the forward
 * correlation of the zero-padded dy with the flipped kernel, for larger strides by adding each dy
 * run into the phase buffer (the forward's mapping run backwards), then copying the phases out.
 * conv_group.c's loops stay the reference (fvl_conv2d_set_depthwise(0) selects them). */
#include "backbone.h"
#include "hot.h"
#include <stdlib.h>
#include <string.h>

typedef fvl_v8f v8f;
#define LD fvl_v8_load
#define ST fvl_v8_store
#define SET1 fvl_v8_set1
#define MAXK 64   /* taps (KH·KW) the fast path takes */

static int dw_enabled = 1;
int fvl_conv2d_set_depthwise(int on) {
  const int old = dw_enabled;
  dw_enabled = on ? 1 : 0;
  return old;
}

int fvl_conv2d_dw_ok(const fvl_conv2d_shape *s, int groups) {
  return dw_enabled && groups == s->C && groups == s->O && s->KH * s->KW <= MAXK && s->OH > 0 && s->OW > 0 &&
         s->B > 0;
}

/* the phase buffer of one plane: stride sw phases of Hp rows of Wq floats */
typedef struct {
  int sw, Hp, Wq, OWv;
  size_t phase;   /* Hp·Wq */
} geom;

static geom geometry(const fvl_conv2d_shape *s) {
  geom g;
  g.sw = s->sw;
  g.OWv = (s->OW + 7) / 8 * 8;
  g.Wq = g.OWv + (s->KW - 1) / s->sw;
  g.Hp = (s->OH - 1) * s->sh + s->KH;
  g.phase = (size_t)g.Hp * g.Wq;
  return g;
}

/* tap k = i·KW + j reads phase j mod sw, row i, column j / sw of the buffer */
static void tap_offsets(const fvl_conv2d_shape *s, const geom *g, int *off) {
  for (int i = 0; i < s->KH; i++)
    for (int j = 0; j < s->KW; j++)
      off[i * s->KW + j] = (int)((size_t)(j % g->sw) * g->phase + (size_t)i * g->Wq + (size_t)(j / g->sw));
}

/* buf[p][r][t] = x[r − ph][t·sw + p − pw], zero outside the plane */
static void fill_phases(const fvl_conv2d_shape *s, const geom *g, const float *x, float *buf) {
  const int sw = s->sw, W = s->W;
  for (int p = 0; p < sw; p++) {
    /* t in [lo, hi) reads inside the row: 0 <= t·sw + p − pw < W */
    int lo = 0, hi = g->Wq;
    while (lo < g->Wq && lo * sw + p - s->pw < 0) lo++;
    while (hi > lo && (hi - 1) * sw + p - s->pw >= W) hi--;
    for (int r = 0; r < g->Hp; r++) {
      float *row = buf + (size_t)p * g->phase + (size_t)r * g->Wq;
      const int h = r - s->ph;
      if (h < 0 || h >= s->H || hi <= lo) {
        memset(row, 0, sizeof(float) * (size_t)g->Wq);
        continue;
      }
      const float *xr = x + (size_t)h * W + (lo * sw + p - s->pw);
      memset(row, 0, sizeof(float) * (size_t)lo);
      if (sw == 1)
        memcpy(row + lo, xr, sizeof(float) * (size_t)(hi - lo));
      else
        for (int t = 0; t < hi - lo; t++) row[lo + t] = xr[(size_t)t * sw];
      memset(row + hi, 0, sizeof(float) * (size_t)(g->Wq - hi));
    }
  }
}

static inline __attribute__((always_inline)) void store_n(float *y, v8f v, int n) {
  if (n >= 8) {
    ST(y, v);
  } else {
    float t[8];
    ST(t, v);
    memcpy(y, t, sizeof(float) * (size_t)n);
  }
}

/* y[oh][ow] = bias + Σ_k w_k · buf[oh·rs + off_k + ow] for oh < OH, ow < OW (ld = OW):
 * 4 rows × 8 columns at a time, the taps in order k = 0, 1, ... */
static inline __attribute__((always_inline)) void rows_fwd(const float *buf, const int *off, const float *w, int KK,
                                                           size_t rs, int OH, int OW, float bias, float *y) {
  v8f wv[MAXK];
  for (int k = 0; k < KK; k++) wv[k] = SET1(w[k]);
  const v8f bv = SET1(bias);
  for (int t0 = 0; t0 < OW; t0 += 8) {
    const int n = OW - t0;
    int oh = 0;
    for (; oh + 4 <= OH; oh += 4) {
      const float *b0 = buf + (size_t)oh * rs + t0;
      v8f a0 = bv, a1 = bv, a2 = bv, a3 = bv;
      for (int k = 0; k < KK; k++) {
        const float *p = b0 + off[k];
        a0 += wv[k] * LD(p);
        a1 += wv[k] * LD(p + rs);
        a2 += wv[k] * LD(p + 2 * rs);
        a3 += wv[k] * LD(p + 3 * rs);
      }
      float *yr = y + (size_t)oh * OW + t0;
      store_n(yr, a0, n);
      store_n(yr + OW, a1, n);
      store_n(yr + 2 * (size_t)OW, a2, n);
      store_n(yr + 3 * (size_t)OW, a3, n);
    }
    for (; oh < OH; oh++) {
      const float *b0 = buf + (size_t)oh * rs + t0;
      v8f a0 = bv;
      for (int k = 0; k < KK; k++) a0 += wv[k] * LD(b0 + off[k]);
      store_n(y + (size_t)oh * OW + t0, a0, n);
    }
  }
}
FVL_HOT static void rows_fwd9(const float *buf, const int *off, const float *w, size_t rs, int OH, int OW, float bias,
                              float *y) {
  rows_fwd(buf, off, w, 9, rs, OH, OW, bias, y);
}
FVL_HOT static void rows_fwd_any(const float *buf, const int *off, const float *w, int KK, size_t rs, int OH, int OW,
                                 float bias, float *y) {
  rows_fwd(buf, off, w, KK, rs, OH, OW, bias, y);
}
static void rows(const float *buf, const int *off, const float *w, int KK, size_t rs, int OH, int OW, float bias,
                 float *y) {
  if (KK == 9)
    rows_fwd9(buf, off, w, rs, OH, OW, bias, y);
  else
    rows_fwd_any(buf, off, w, KK, rs, OH, OW, bias, y);
}

/* a thread's scratch of n floats; NULL and *failed = 1 when out of memory */
static float *thread_buf(size_t n, int *failed) {
  float *p = malloc(sizeof(float) * n);
  if (!p) {
#pragma omp atomic write
    *failed = 1;
  }
  return p;
}

/* plane bc = b·C + c of the forward: x's plane into the phase buffer, then its output rows */
static void fwd_plane(const fvl_conv2d_shape *s, const geom *g, const int *off, const float *x, const float *w,
                      const float *bias, size_t bc, float *buf, float *y) {
  const int c = (int)(bc % (size_t)s->C), KK = s->KH * s->KW;
  fill_phases(s, g, x + bc * (size_t)s->H * s->W, buf);
  rows(buf, off, w + (size_t)c * KK, KK, (size_t)s->sh * g->Wq, s->OH, s->OW, bias ? bias[c] : 0.f,
       y + bc * (size_t)s->OH * s->OW);
}

int fvl_conv2d_dw_fwd(const fvl_conv2d_shape *s, const float *x, const float *w, const float *bias,
                      const fvl_conv_epi *ep, float *y) {
  const geom g = geometry(s);
  const int C = s->C;
  const size_t pout = (size_t)s->OH * s->OW, nbuf = (size_t)g.sw * g.phase + 8;
  const int64_t planes = (int64_t)s->B * C;
  int off[MAXK], failed = 0;
  tap_offsets(s, &g, off);
#pragma omp parallel
  {
    float *buf = thread_buf(nbuf, &failed);
#pragma omp for schedule(static)
    for (int64_t bc = 0; bc < planes; bc++) {
      if (!buf || fvl_aborted()) continue;
      fwd_plane(s, &g, off, x, w, bias, (size_t)bc, buf, y);
      if (ep) fvl_conv_epi_plane(ep, (int)(bc % C), y + (size_t)bc * pout, y + (size_t)bc * pout, 0.f, pout);
    }
    free(buf);
  }
  if (failed) return fvl_err("conv2d: out of memory (depthwise plane buffers)");
  return fvl_check_abort("conv2d");
}

/* one plane's dw and db: acc[k] = Σ dy[oh][ow]·buf[oh·rs + off_k + ow] (dyb rows of OWv floats,
 * zero past OW), sums[0] = Σ dy; 8-lane float sums, returned in double */
static inline __attribute__((always_inline)) void plane_dw(const float *buf, const int *off, int KK, size_t rs,
                                                           const float *dyb, int OH, int OWv, double *acc,
                                                           double *dbs) {
  v8f a[MAXK], sdy = SET1(0.f);
  for (int k = 0; k < KK; k++) a[k] = SET1(0.f);
  for (int oh = 0; oh < OH; oh++) {
    const float *b0 = buf + (size_t)oh * rs, *gr = dyb + (size_t)oh * OWv;
    for (int t0 = 0; t0 < OWv; t0 += 8) {
      const v8f gv = LD(gr + t0);
      sdy += gv;
      for (int k = 0; k < KK; k++) a[k] += gv * LD(b0 + off[k] + t0);
    }
  }
  for (int k = 0; k < KK; k++) acc[k] += fvl_v8_hsum(a[k]);
  *dbs += fvl_v8_hsum(sdy);
}
FVL_HOT static void plane_dw9(const float *buf, const int *off, size_t rs, const float *dyb, int OH, int OWv,
                              double *acc, double *dbs) {
  plane_dw(buf, off, 9, rs, dyb, OH, OWv, acc, dbs);
}
FVL_HOT static void plane_dw_any(const float *buf, const int *off, int KK, size_t rs, const float *dyb, int OH,
                                 int OWv, double *acc, double *dbs) {
  plane_dw(buf, off, KK, rs, dyb, OH, OWv, acc, dbs);
}

/* strides > 1: buf[oh·rs + off_k + ow] += w_k·dy[oh][ow], oh by oh, k in order (runs may overlap) */
FVL_HOT static void plane_scatter(float *buf, const int *off, const float *w, int KK, size_t rs, const float *dyb,
                                  int OH, int OWv) {
  v8f wv[MAXK];
  for (int k = 0; k < KK; k++) wv[k] = SET1(w[k]);
  for (int oh = 0; oh < OH; oh++) {
    float *b0 = buf + (size_t)oh * rs;
    const float *gr = dyb + (size_t)oh * OWv;
    for (int t0 = 0; t0 < OWv; t0 += 8) {
      const v8f gv = LD(gr + t0);
      for (int k = 0; k < KK; k++) {
        float *p = b0 + off[k] + t0;
        ST(p, LD(p) + wv[k] * gv);
      }
    }
  }
}

/* dy plane into rows of OWv floats, zeros past OW */
static void pad_rows(const float *dy, int OH, int OW, int OWv, float *dyb) {
  for (int oh = 0; oh < OH; oh++) {
    memcpy(dyb + (size_t)oh * OWv, dy + (size_t)oh * OW, sizeof(float) * (size_t)OW);
    memset(dyb + (size_t)oh * OWv + OW, 0, sizeof(float) * (size_t)(OWv - OW));
  }
}

/* what the backward of one channel needs (shared by the threads) */
typedef struct {
  const fvl_conv2d_shape *s;
  geom g;
  int KK, unit, Wd, Hd, mh, mw;
  size_t pin, pout, rs, nx, ndy, ndx;
  int off[MAXK], offd[MAXK];
} bwd_plan;

static void bwd_plan_make(const fvl_conv2d_shape *s, bwd_plan *k) {
  k->s = s;
  k->g = geometry(s);
  k->KK = s->KH * s->KW;
  k->unit = s->sh == 1 && s->sw == 1;
  k->pin = (size_t)s->H * s->W;
  k->pout = (size_t)s->OH * s->OW;
  k->rs = (size_t)s->sh * k->g.Wq;
  /* stride 1: dx[h][w] = Σ flip(w)[i][j]·dyp[h + i][w + j], dyp = dy shifted by (KH−1−ph, KW−1−pw) */
  const int Wv = (s->W + 7) / 8 * 8;
  k->Wd = Wv + s->KW - 1;
  k->Hd = s->H + s->KH - 1;
  k->mh = s->KH - 1 - s->ph;
  k->mw = s->KW - 1 - s->pw;
  tap_offsets(s, &k->g, k->off);
  for (int i = 0; i < s->KH; i++)
    for (int j = 0; j < s->KW; j++) k->offd[i * s->KW + j] = i * k->Wd + j;
  k->nx = (size_t)k->g.sw * k->g.phase + 8;
  k->ndy = (size_t)s->OH * k->g.OWv;
  k->ndx = k->unit ? (size_t)k->Hd * k->Wd + 8 : (size_t)k->g.sw * k->g.phase + 8;
}

/* dx of one plane from its dy plane gp (dy rows of OWv floats in dyb) into xp; db2 is scratch */
static void plane_dx(const bwd_plan *k, const float *gp, const float *dyb, const float *wc, const float *wf,
                     float *db2, float *xp) {
  const fvl_conv2d_shape *s = k->s;
  const geom *g = &k->g;
  const int H = s->H, W = s->W, OH = s->OH, OW = s->OW, Wd = k->Wd, mw = k->mw;
  if (k->unit) {
    const int lo = mw > 0 ? mw : 0, hi = mw + OW < Wd ? mw + OW : Wd;   /* columns holding dy */
    for (int r = 0; r < k->Hd; r++) {
      float *row = db2 + (size_t)r * Wd;
      const int oh = r - k->mh;
      memset(row, 0, sizeof(float) * (size_t)Wd);
      if (oh >= 0 && oh < OH && hi > lo) memcpy(row + lo, gp + (size_t)oh * OW + (lo - mw), sizeof(float) * (size_t)(hi - lo));
    }
    rows(db2, k->offd, wf, k->KK, (size_t)Wd, H, W, 0.f, xp);
    return;
  }
  memset(db2, 0, sizeof(float) * k->ndx);
  plane_scatter(db2, k->off, wc, k->KK, k->rs, dyb, OH, g->OWv);
  /* dx[h][x0] = phase (x0 + pw) mod sw, row h + ph, column (x0 + pw) / sw; zero past the buffer */
  for (int h = 0; h < H; h++) {
    float *xr = xp + (size_t)h * W;
    const int r = h + s->ph;
    if (r >= g->Hp) {
      memset(xr, 0, sizeof(float) * (size_t)W);
      continue;
    }
    for (int p = 0; p < g->sw; p++) {
      const float *src = db2 + (size_t)p * g->phase + (size_t)r * g->Wq;
      int x0 = ((p - s->pw) % g->sw + g->sw) % g->sw, t = (x0 + s->pw) / g->sw;
      for (; x0 < W; x0 += g->sw, t++) xr[x0] = t < g->Wq ? src[t] : 0.f;
    }
  }
}

/* A BatchNorm (+ PReLU) between the convolution and dy: the convolution's dy of each plane is the
 * BN's dx, computed from its input yconv and its dy (dybn) per plane into a scratch plane. */
typedef struct {
  const fvl_bn_par *p;
  const float *yconv, *dybn, *save_mean, *save_invstd;
  float *dgamma, *dbeta, *da;
  double *da_part;
} bn_in_bwd;

/* channel c: dw[c], db[c] and dx of its B planes; xb: nx + ndy + ndx (+ pout with bn) floats */
static void bwd_channel(const bwd_plan *k, int c, const float *x, const float *w, const float *dy, float *dx,
                        float *dw, float *db, const bn_in_bwd *bn, float *xb) {
  const fvl_conv2d_shape *s = k->s;
  const int B = s->B, C = s->C, KK = k->KK;
  float *dyb = xb + k->nx, *db2 = dyb + k->ndy, *gbuf = db2 + k->ndx;
  float wf[MAXK];
  const float *wc = w + (size_t)c * KK;
  for (int q = 0; q < KK; q++) wf[q] = wc[KK - 1 - q];   /* the flipped kernel */
  fvl_bn_chan ch;
  if (bn) {
    double sums[3];
    const size_t co = (size_t)c * k->pout, cs = (size_t)C * k->pout;
    fvl_bn_act_channel_sums(bn->p, c, bn->save_mean, bn->save_invstd, bn->yconv + co, bn->dybn + co, B,
                            (int64_t)cs, (int64_t)k->pout, &ch, sums);
    fvl_bn_act_channel_grads(sums, c, bn->dgamma, bn->dbeta, bn->da, bn->da_part);
  }
  double acc[MAXK], dbs = 0;
  for (int q = 0; q < KK; q++) acc[q] = 0;
  for (int b = 0; b < B; b++) {
    const size_t bc = (size_t)b * C + c;
    const float *gp = dy ? dy + bc * k->pout : gbuf;
    if (bn) fvl_bn_act_channel_dx(&ch, bn->yconv + bc * k->pout, bn->dybn + bc * k->pout, gbuf, 1, 0, (int64_t)k->pout);
    pad_rows(gp, s->OH, s->OW, k->g.OWv, dyb);
    if (dw || db) {
      if (dw) fill_phases(s, &k->g, x + bc * k->pin, xb);
      else memset(xb, 0, sizeof(float) * k->nx);
      if (KK == 9) plane_dw9(xb, k->off, k->rs, dyb, s->OH, k->g.OWv, acc, &dbs);
      else plane_dw_any(xb, k->off, KK, k->rs, dyb, s->OH, k->g.OWv, acc, &dbs);
    }
    if (dx) plane_dx(k, gp, dyb, wc, wf, db2, dx + bc * k->pin);
  }
  if (dw)
    for (int q = 0; q < KK; q++) dw[(size_t)c * KK + q] = (float)acc[q];
  if (db) db[c] = (float)dbs;
}

/* the channels over the threads (dy NULL: from bn) */
static int bwd_channels(const fvl_conv2d_shape *s, const float *x, const float *w, const float *dy, float *dx,
                        float *dw, float *db, const bn_in_bwd *bn) {
  bwd_plan k;
  bwd_plan_make(s, &k);
  const size_t nbuf = k.nx + k.ndy + k.ndx + (bn ? k.pout : 0);
  int failed = 0;
#pragma omp parallel
  {
    float *xb = thread_buf(nbuf, &failed);
#pragma omp for schedule(static)
    for (int c = 0; c < s->C; c++) {
      if (!xb || fvl_aborted()) continue;
      bwd_channel(&k, c, x, w, dy, dx, dw, db, bn, xb);
    }
    free(xb);
  }
  if (failed) return fvl_err("conv2d: out of memory (depthwise plane buffers)");
  return fvl_check_abort("conv2d");
}

int fvl_conv2d_dw_bwd(const fvl_conv2d_shape *s, const float *x, const float *w, const float *dy, float *dx,
                      float *dw, float *db) {
  return bwd_channels(s, x, w, dy, dx, dw, db, NULL);
}

/* ------------------------------------------------------------------ with BatchNorm (+ PReLU), training */
/* channels per block of the fused kernels: the block's B output planes (≈ 384 KiB) stay in L2 while its
 * BatchNorm runs, and there are at least 8 blocks (a function of the shape only) */
static int chan_block(const fvl_conv2d_shape *s) {
  const size_t chan = (size_t)s->B * s->OH * s->OW * sizeof(float);
  int n = (int)((384u << 10) / (chan ? chan : 1));
  if (n > s->C / 8) n = s->C / 8;
  return n < 1 ? 1 : n;
}

int fvl_conv2d_dw_bn_act_fwd(const fvl_conv2d_shape *s, const float *x, const float *w, const float *bias,
                             const fvl_bn_par *p, float *yconv, float *y, float *save_mean, float *save_invstd) {
  const geom g = geometry(s);
  const int B = s->B, C = s->C, nb = chan_block(s), nblk = (C + nb - 1) / nb;
  const size_t pout = (size_t)s->OH * s->OW, nbuf = (size_t)g.sw * g.phase + 8;
  int off[MAXK], failed = 0;
  tap_offsets(s, &g, off);
#pragma omp parallel
  {
    float *buf = thread_buf(nbuf, &failed);
    /* a block of channels: its planes sample by sample (contiguous input), then each channel's
     * BatchNorm while the block's outputs are in cache */
#pragma omp for schedule(dynamic, 1)
    for (int blk = 0; blk < nblk; blk++) {
      if (!buf || fvl_aborted()) continue;
      const int c0 = blk * nb, c1 = c0 + nb < C ? c0 + nb : C;
      for (int b = 0; b < B; b++)
        for (int c = c0; c < c1; c++) fwd_plane(s, &g, off, x, w, bias, (size_t)b * C + c, buf, yconv);
      for (int c = c0; c < c1; c++)
        fvl_bn_act_channel_fwd(p, c, yconv + (size_t)c * pout, y + (size_t)c * pout, B, (int64_t)C * (int64_t)pout,
                               (int64_t)pout, save_mean, save_invstd);
    }
    free(buf);
  }
  if (failed) return fvl_err("conv2d: out of memory (depthwise plane buffers)");
  return fvl_check_abort("conv2d");
}

int fvl_conv2d_dw_bn_act_bwd(const fvl_conv2d_shape *s, const float *x, const float *w, const float *yconv,
                             const float *dy, const fvl_bn_par *p, const float *save_mean, const float *save_invstd,
                             float *dx, float *dw, float *db, float *dgamma, float *dbeta, float *da) {
  int failed;
  double *da_part = fvl_bn_act_da_parts(p->a, da, p->na, s->C, &failed);
  if (failed) return -1;
  const bn_in_bwd bn = {.p = p, .yconv = yconv, .dybn = dy, .save_mean = save_mean, .save_invstd = save_invstd,
                        .dgamma = dgamma, .dbeta = dbeta, .da = p->a ? da : NULL, .da_part = da_part};
  const int rc = bwd_channels(s, x, w, NULL, dx, dw, db, &bn);
  if (rc < 0) {
    free(da_part);
    return -1;
  }
  fvl_bn_act_da_finish(da_part, s->C, da);
  return 0;
}
