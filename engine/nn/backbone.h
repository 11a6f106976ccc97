/* backbone.h — the kernels the face backbones (IResNet, MobileFaceNet) need beyond nn.h:
 * grouped / depthwise convolutions and a fused BatchNorm + PReLU.
 *
 * Grouped convolution: x B×C×H×W, w O×(C/groups)×KH×KW, bias O or NULL, y B×O×OH×OW;
 * output channel o sees input channels [g·C/groups, (g+1)·C/groups) with g = o / (O/groups).
 * groups = C = O is the depthwise convolution. Direct loops over rows of the output (no im2col):
 * a depthwise layer does 9 multiply-adds per output value, so it is bound by memory, not by a
 * GEMM. Threads: forward over (sample, output channel) planes, dx over (sample, input channel)
 * planes, dw and db over output channels (no reductions across threads, results do not depend
 * on the thread count). The shape's OH/OW come from fvl_conv2d_plan (G and T are unused).
 *
 * BatchNorm + PReLU (fvl_bn_prelu_*): y = prelu(bn(x)) in one sweep over x instead of two, and
 * the backward recomputes bn(x) from x and the saved statistics instead of keeping it: one B×C×S
 * tensor less per layer and one pass less over memory in each direction. Same statistics and
 * running-average rules as fvl_batchnorm_fwd (nn.h). */
#ifndef FVL_NN_BACKBONE_H
#define FVL_NN_BACKBONE_H
#include "nn.h"

/* -1 with a message naming "conv2d" when groups does not divide C and O */
int fvl_conv2d_groups_check(const fvl_conv2d_shape *s, int groups);
int fvl_conv2d_grouped_fwd(const fvl_conv2d_shape *s, int groups, const float *x, const float *w,
                           const float *bias, float *y);
/* the same with an epilogue on each output plane (nn.h: fvl_conv_epi; ep NULL = none) */
int fvl_conv2d_grouped_fwd_epi(const fvl_conv2d_shape *s, int groups, const float *x, const float *w,
                               const float *bias, const fvl_conv_epi *ep, float *y);
/* overwrites dx, dw, db; NULL outputs are skipped */
int fvl_conv2d_grouped_bwd(const fvl_conv2d_shape *s, int groups, const float *x, const float *w,
                           const float *dy, float *dx, float *dw, float *db);

/* Depthwise (groups = C = O, KH·KW <= 64; conv_dw.c): the kernels fvl_conv2d_grouped_* run for
 * those shapes, vectorised along the output rows over zero-padded, stride-phase split copies of
 * each plane; dw/db/dx with one thread per channel (results independent of the thread count).
 * fvl_conv2d_set_depthwise(0) makes fvl_conv2d_grouped_* use their generic loops instead (the
 * reference the tests compare with); returns the previous setting. */
int fvl_conv2d_set_depthwise(int on);
int fvl_conv2d_dw_ok(const fvl_conv2d_shape *s, int groups);
int fvl_conv2d_dw_fwd(const fvl_conv2d_shape *s, const float *x, const float *w, const float *bias,
                      const fvl_conv_epi *ep, float *y);
int fvl_conv2d_dw_bwd(const fvl_conv2d_shape *s, const float *x, const float *w, const float *dy, float *dx,
                      float *dw, float *db);

/* a (C values, shared when na == 1) as in fvl_prelu_fwd; other arguments as fvl_batchnorm_fwd */
int fvl_bn_prelu_fwd(const float *x, int B, int C, int64_t S, const float *gamma, const float *beta,
                     const float *a, int na, float *running_mean, float *running_var, int training,
                     double momentum, double eps, float *y, float *save_mean, float *save_invstd);
/* overwrites dx, dgamma, dbeta, da (NULL = skipped); da has na values; -1 only when out of memory */
int fvl_bn_prelu_bwd(const float *x, const float *dy, int B, int C, int64_t S, const float *gamma,
                     const float *beta, const float *a, int na, const float *save_mean,
                     const float *save_invstd, int training, float *dx, float *dgamma, float *dbeta,
                     float *da);
/* the kernel behind fvl_bn_prelu_* and fvl_batchnorm_* (bn_prelu.c): a = NULL is BatchNorm alone
 * (beta, na, da unused then by the backward); fn names the layer in errors */
int fvl_bn_act_fwd(const char *fn, const float *x, int B, int C, int64_t S, const float *gamma,
                   const float *beta, const float *a, int na, float *running_mean, float *running_var,
                   int training, double momentum, double eps, float *y, float *save_mean, float *save_invstd);
int fvl_bn_act_bwd(const float *x, const float *dy, int B, int C, int64_t S, const float *gamma,
                   const float *beta, const float *a, int na, const float *save_mean,
                   const float *save_invstd, int training, float *dx, float *dgamma, float *dbeta, float *da);

/* One channel of that kernel, for kernels that hold a channel's B planes in cache (the fused
 * depthwise conv + BN + PReLU of conv_dw.c): the same loops in the same order as
 * fvl_bn_act_fwd/bwd, so the same bits. Channel c's planes start at xc and lie cs apart. */
typedef struct fvl_bn_par {
  const float *gamma, *beta, *a;   /* gamma/beta NULL = 1/0; a NULL = no PReLU (na slopes: 1 or C) */
  int na;
  float *running_mean, *running_var;
  int training;
  double momentum, eps;
} fvl_bn_par;
/* forward of channel c (statistics, running averages, save_mean/save_invstd[c], y = prelu(bn(x))) */
void fvl_bn_act_channel_fwd(const fvl_bn_par *p, int c, const float *xc, float *yc, int B, int64_t cs, int64_t S,
                            float *save_mean, float *save_invstd);
/* the backward's constants of one channel */
typedef struct fvl_bn_chan {
  float mean, invstd, scale, shift, a, k, mdz, mdzx;
  int act;
} fvl_bn_chan;
/* backward pass 1 of channel c: s = {Σ dz, Σ dz·x̂, Σ_{z<=0} z·dy} and the constants of pass 2 */
void fvl_bn_act_channel_sums(const fvl_bn_par *p, int c, const float *save_mean, const float *save_invstd,
                             const float *xc, const float *dyc, int B, int64_t cs, int64_t S, fvl_bn_chan *ch,
                             double s[3]);
/* backward pass 2: dx of B planes (B = 1: one plane, the same values as in the whole channel) */
void fvl_bn_act_channel_dx(const fvl_bn_chan *ch, const float *xc, const float *dyc, float *dxc, int B, int64_t cs,
                           int64_t S);
/* dgamma[c], dbeta[c], da[c] (or the shared slope's part da_part[c]) from pass 1's sums; NULL = skipped */
void fvl_bn_act_channel_grads(const double s[3], int c, float *dgamma, float *dbeta, float *da, double *da_part);
/* the shared slope's per-channel parts (NULL unless a && da && na == 1; *failed = 1 with a message when
 * out of memory), and their sum in channel order into da[0] (frees the parts) */
double *fvl_bn_act_da_parts(const float *a, const float *da, int na, int C, int *failed);
void fvl_bn_act_da_finish(double *da_part, int C, float *da);

/* autograd wrappers (errors name "conv2d" / "bn_prelu"); fvl_nn_conv2d is groups = 1 */
fvl_tensor *fvl_nn_conv2d_grouped(fvl_tensor *x, fvl_tensor *w, fvl_tensor *bias, int sh, int sw,
                                  int ph, int pw, int groups);
fvl_tensor *fvl_nn_bn_prelu(fvl_tensor *x, fvl_tensor *gamma, fvl_tensor *beta, fvl_tensor *a,
                            fvl_tensor *running_mean, fvl_tensor *running_var, int training,
                            double momentum, double eps);
/* Inference: conv2d (any groups, stride, padding) whose stores apply an evaluation-mode
 * BatchNorm (running statistics; gamma/beta may be NULL) and/or a PReLU (a, 1 or O slopes):
 * y = prelu(bn(conv(x, w) + bias)), the epilogue of fvl_conv_epi, with the BatchNorm's scale
 * γ/√(var + eps) and shift β − scale·mean computed as fvl_bn_prelu_fwd does in evaluation.
 * running_mean = running_var = NULL: no BatchNorm; a = NULL: no PReLU. Records no autograd node:
 * refused (error naming "conv2d_bn_act") while gradients are enabled and an input requires
 * them — the training path is conv2d then bn_prelu. */
fvl_tensor *fvl_nn_conv2d_bn_act(fvl_tensor *x, fvl_tensor *w, fvl_tensor *bias, int sh, int sw, int ph,
                                 int pw, int groups, fvl_tensor *running_mean, fvl_tensor *running_var,
                                 fvl_tensor *gamma, fvl_tensor *beta, double eps, fvl_tensor *a);
/* Training: conv2d, then BatchNorm with the batch's statistics (running statistics updated when
 * given, gamma/beta may be NULL), then PReLU unless a is NULL, recorded as one autograd node with
 * the same values and gradients, bit for bit, as conv2d + bn_prelu (or batch_norm). Depthwise
 * convolutions (fvl_conv2d_dw_ok) run it per channel while the channel's planes are in cache: the
 * forward computes the statistics and y from the planes just written, the backward computes the
 * BatchNorm's dx plane by plane into the depthwise backward instead of a B×C×H×W tensor. Other
 * convolutions run the separate kernels. Errors name "conv2d" (shapes) or "conv2d_bn_act_train". */
fvl_tensor *fvl_nn_conv2d_bn_act_train(fvl_tensor *x, fvl_tensor *w, fvl_tensor *bias, int sh, int sw, int ph,
                                       int pw, int groups, fvl_tensor *running_mean, fvl_tensor *running_var,
                                       fvl_tensor *gamma, fvl_tensor *beta, fvl_tensor *a, double momentum,
                                       double eps);
/* the depthwise kernels of it (conv_dw.c; fvl_conv2d_dw_ok shapes, p->training = 1): yconv the
 * convolution's output, y = prelu(bn(yconv)), save_mean/save_invstd O values each */
int fvl_conv2d_dw_bn_act_fwd(const fvl_conv2d_shape *s, const float *x, const float *w, const float *bias,
                             const fvl_bn_par *p, float *yconv, float *y, float *save_mean, float *save_invstd);
/* dy: the gradient of y; overwrites dx, dw, db (the convolution's) and dgamma, dbeta, da (NULL = skipped) */
int fvl_conv2d_dw_bn_act_bwd(const fvl_conv2d_shape *s, const float *x, const float *w, const float *yconv,
                             const float *dy, const fvl_bn_par *p, const float *save_mean, const float *save_invstd,
                             float *dx, float *dw, float *db, float *dgamma, float *dbeta, float *da);
/* the calling thread's measured FMA peak in GFLOP/s (best of repeated timings within `seconds`
 * of thread CPU time; fma_probe.c) */
double fvl_fma_peak_gflops(double seconds);
/* the machine's measured FMA peak in GFLOP/s: every OpenMP thread at once runs a register-only
 * FMA loop (AVX-512 where the CPU has it, else AVX2 + FMA, chosen at run time) for `seconds` of
 * its CPU time; the sum of the threads' best rates. *isa (if not NULL) names the loop used. */
double fvl_fma_peak_all_gflops(double seconds, const char **isa);
#endif
