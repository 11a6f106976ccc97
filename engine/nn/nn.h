/* nn.h — layer kernels and optimiser steps.
 *
 * Two levels, as for the losses:
 *  1. raw kernels on float* arrays (NCHW, row-major, contiguous), forward and backward side by
 *     side, OpenMP over rows/channels, no allocation except where a workspace is documented;
 *  2. autograd wrappers on fvl_tensor* (fvl_nn_*), which check shapes and name the layer in
 *     their errors: "conv2d: input is 8x3x28x28 but the layer expects 1 input channel(s)".
 * Backward kernels overwrite their outputs (dx, dw, db); NULL outputs are skipped. */
#ifndef FVL_NN_H
#define FVL_NN_H
#include <stddef.h>
#include <stdint.h>
#include "core.h"
#include "tensor.h"

/* ------------------------------------------------------------------ conv2d (im2col + sgemm)
 * x: B×C×H×W, w: O×C×KH×KW, bias: O (or NULL), y: B×O×OH×OW,
 * OH = (H + 2 ph - KH) / sh + 1, OW likewise.
 * Samples are processed in groups of G: one im2col of the group into a (C·KH·KW)×(G·OH·OW)
 * matrix and ONE sgemm per group; the groups are shared among T OpenMP threads (each with its
 * own workspace and a single-threaded sgemm). G is chosen so that a thread's columns stay near
 * 8 MiB, the GEMM has at least ~1024 columns and every thread gets the same number of groups.
 * The backward of the input for stride 1 is the forward convolution of dy with the flipped
 * kernel (the forward's wide GEMMs instead of a K = O GEMM and col2im). */
typedef struct fvl_conv2d_shape {
  int B, C, H, W;      /* input */
  int O, KH, KW;       /* filters */
  int sh, sw, ph, pw;  /* stride, zero padding */
  int OH, OW;          /* output (filled by fvl_conv2d_plan) */
  int G;               /* samples per GEMM group (filled by fvl_conv2d_plan) */
  int T;               /* threads sharing the groups (filled by fvl_conv2d_plan) */
} fvl_conv2d_shape;
/* fills OH, OW, G; -1 with a message naming "conv2d" when the sizes do not make an output */
int fvl_conv2d_plan(fvl_conv2d_shape *s);
/* floats of workspace the forward/backward need */
size_t fvl_conv2d_workspace(const fvl_conv2d_shape *s);
int fvl_conv2d_fwd(const fvl_conv2d_shape *s, const float *x, const float *w, const float *bias,
                   float *y, float *work);
/* An epilogue applied as the forward stores each output (inference: no backward): with v the
 * convolution plus bias, y = act(v·scale[o] + shift[o]); scale and shift both NULL = no affine
 * (a folded BatchNorm is already in w and bias), a = PReLU slopes (a[0] for every channel when
 * na == 1) or NULL = no activation. It saves the separate read + write pass over y that an
 * evaluation-mode BatchNorm and/or PReLU after the convolution would make. */
typedef struct fvl_conv_epi {
  const float *scale, *shift, *a;
  int na;
} fvl_conv_epi;
int fvl_conv2d_fwd_epi(const fvl_conv2d_shape *s, const float *x, const float *w, const float *bias,
                       const fvl_conv_epi *ep, float *y, float *work);
/* dst[p] = epilogue of channel o applied to src[p] + add, p < n (dst may be src) */
/* dst = src·sc + sh over n values, then PReLU with slope *a unless a is NULL; dst may be src
 * (engine/nn/bn_prelu.c: the same vector loop as BatchNorm + PReLU in evaluation, so the
 * epilogue and the separate layers give the same bits) */
void fvl_bn_prelu_plane(const float *src, float *dst, size_t n, float sc, float sh, const float *a);
static inline void fvl_conv_epi_plane(const fvl_conv_epi *ep, int o, float *dst, const float *src, float add,
                                      size_t n) {
  const float sc = ep->scale ? ep->scale[o] : 1.f, sh = ep->scale ? ep->shift[o] + add * sc : add * sc;
  fvl_bn_prelu_plane(src, dst, n, sc, sh, ep->a ? ep->a + (ep->na == 1 ? 0 : o) : NULL);
}
int fvl_conv2d_bwd(const fvl_conv2d_shape *s, const float *x, const float *w, const float *dy,
                   float *dx, float *dw, float *db, float *work);
/* stride-1 convolutions without im2col (engine/nn/conv_direct.c, AVX2 + FMA): fvl_conv2d_fwd and
 * fvl_conv2d_bwd use them whenever fvl_conv2d_direct_ok; the workspace sizes above include them.
 * fvl_conv2d_set_direct(0) turns them off (tests compare both paths); returns the old setting. */
int fvl_conv2d_set_direct(int on);
/* the AVX-512 versions of the direct kernels, used where the CPU has AVX-512F (otherwise AVX2);
 * fvl_conv2d_set_avx512(0) keeps them off (tests run both); returns whether they were in use.
 * fvl_conv2d_avx512(): whether they are in use now. */
int fvl_conv2d_set_avx512(int on);
int fvl_conv2d_avx512(void);
int fvl_conv2d_direct_ok(const fvl_conv2d_shape *s);
size_t fvl_conv2d_direct_workspace(const fvl_conv2d_shape *s);
size_t fvl_conv2d_direct_dw_workspace(const fvl_conv2d_shape *s);
int fvl_conv2d_direct_fwd(const fvl_conv2d_shape *s, const float *x, const float *w, const float *bias,
                          float *y, float *work);
int fvl_conv2d_direct_fwd_epi(const fvl_conv2d_shape *s, const float *x, const float *w, const float *bias,
                              const fvl_conv_epi *ep, float *y, float *work);
int fvl_conv2d_direct_dw(const fvl_conv2d_shape *s, const float *x, const float *dy, float *dw, float *work);
/* im2col of one group of g samples starting at x: cols is (C·KH·KW) × (g·OH·OW) (serial) */
void fvl_im2col(const fvl_conv2d_shape *s, const float *x, int g, float *cols);
/* adds cols back into dx (which must be zeroed by the caller for the group) */
void fvl_col2im(const fvl_conv2d_shape *s, const float *cols, int g, float *dx);

/* ------------------------------------------------------------------ pooling
 * x: B×C×H×W → y: B×C×OH×OW, OH = (H + 2 p - k) / s + 1 (floor).
 * max: padding counts as -inf; argmax (int32, index into the H×W plane, -1 if the window is
 * all padding) is saved for the backward. avg: padding counts as zeros (count_include_pad). */
typedef struct fvl_pool2d_shape {
  int B, C, H, W;
  int kh, kw, sh, sw, ph, pw;
  int OH, OW;
} fvl_pool2d_shape;
int fvl_pool2d_plan(fvl_pool2d_shape *s, const char *fn);
void fvl_maxpool2d_fwd(const fvl_pool2d_shape *s, const float *x, float *y, int32_t *argmax);
void fvl_maxpool2d_bwd(const fvl_pool2d_shape *s, const float *dy, const int32_t *argmax, float *dx);
void fvl_avgpool2d_fwd(const fvl_pool2d_shape *s, const float *x, float *y);
void fvl_avgpool2d_bwd(const fvl_pool2d_shape *s, const float *dy, float *dx);

/* ------------------------------------------------------------------ batch normalisation
 * x viewed as B×C×S (S = H·W for 2d, 1 for 1d); statistics per channel over B·S values.
 * Train: y = gamma (x - mean) / sqrt(var + eps) + beta with the batch's biased variance;
 *   running_mean/var (may be NULL) ← (1 - momentum) running + momentum batch (unbiased var);
 *   saves mean and invstd (C each) for the backward.
 * Eval: uses running_mean/var; invstd of the running variance is written to save_invstd.
 * gamma/beta NULL = no affine part. Backward in train mode includes the statistics' gradient;
 * in eval mode it is the affine map only. */
int fvl_batchnorm_fwd(const float *x, int B, int C, int64_t S, const float *gamma, const float *beta,
                      float *running_mean, float *running_var, int training, double momentum,
                      double eps, float *y, float *save_mean, float *save_invstd);
void fvl_batchnorm_bwd(const float *x, const float *dy, int B, int C, int64_t S, const float *gamma,
                       const float *save_mean, const float *save_invstd, int training, float *dx,
                       float *dgamma, float *dbeta);

/* ------------------------------------------------------------------ activations
 * prelu: x B×C×S, a has C values (or 1 shared value when na == 1). */
void fvl_prelu_fwd(const float *x, int B, int C, int64_t S, const float *a, int na, float *y);
void fvl_prelu_bwd(const float *x, const float *dy, int B, int C, int64_t S, const float *a, int na,
                   float *dx, float *da);
/* dropout: mask[i] = 0 with probability p, else 1/(1-p); drawn from the global generator so
 * that the mask does not depend on the thread count (advances its counter by n). */
void fvl_dropout_mask(float *mask, size_t n, double p);

/* ------------------------------------------------------------------ linear
 * x: B×In, w: O×In, bias: O or NULL → y: B×O = x wᵀ + b */
void fvl_linear_fwd(const float *x, int B, int In, const float *w, int O, const float *bias, float *y);
void fvl_linear_bwd(const float *x, int B, int In, const float *w, int O, const float *dy, float *dx,
                    float *dw, float *db);

/* ------------------------------------------------------------------ optimiser steps (in place)
 * SGD as in PyTorch: g ← g + wd·p; buf ← first ? g : momentum·buf + (1 - dampening)·g;
 * g ← nesterov ? g + momentum·buf : buf (when momentum > 0); p ← p - lr·g.
 * buf may be NULL when momentum == 0. */
void fvl_sgd_step(float *p, const float *g, float *buf, size_t n, double lr, double momentum,
                  double dampening, double weight_decay, int nesterov, int first);
/* AdamW (decoupled decay): p ← p (1 - lr·wd); m ← b1 m + (1-b1) g; v ← b2 v + (1-b2) g²;
 * p ← p - lr · (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps), t = step (1 for the first). */
void fvl_adamw_step(float *p, const float *g, float *m, float *v, size_t n, double lr, double beta1,
                    double beta2, double eps, double weight_decay, int64_t step);
/* sum of squares in double (for clipping by global norm) and in-place scaling */
double fvl_sumsq(const float *x, size_t n);
void fvl_scale_inplace(float *x, size_t n, float s);

/* ------------------------------------------------------------------ autograd wrappers
 * Tensors must be float32; x is made contiguous when needed. Errors name the layer. */
fvl_tensor *fvl_nn_conv2d(fvl_tensor *x, fvl_tensor *w, fvl_tensor *bias, int sh, int sw, int ph,
                          int pw);
fvl_tensor *fvl_nn_maxpool2d(fvl_tensor *x, int kh, int kw, int sh, int sw, int ph, int pw);
fvl_tensor *fvl_nn_avgpool2d(fvl_tensor *x, int kh, int kw, int sh, int sw, int ph, int pw);
/* x: B×C or B×C×H×W; running stats are updated in place in training mode */
fvl_tensor *fvl_nn_batchnorm(fvl_tensor *x, fvl_tensor *gamma, fvl_tensor *beta,
                             fvl_tensor *running_mean, fvl_tensor *running_var, int training,
                             double momentum, double eps);
fvl_tensor *fvl_nn_prelu(fvl_tensor *x, fvl_tensor *a);
/* p = 0 or !training: returns x itself (a new reference) */
fvl_tensor *fvl_nn_dropout(fvl_tensor *x, double p, int training);
fvl_tensor *fvl_nn_linear(fvl_tensor *x, fvl_tensor *w, fvl_tensor *bias);
#endif
