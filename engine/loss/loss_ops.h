/* loss_ops.h — autograd wrappers of the loss kernels (margin.h) on fvl_tensor.
 *
 * Labels here are 0-based int32 tensors of B entries (the Lua binding converts). Every function
 * returns a new reference, or NULL with a message naming the function (or the head given as
 * `name`), the argument, what was expected and what came.
 *
 * Buffers: fvl_cosine writes into `ws` and fvl_margin_ce's backward into `gws` whenever no
 * unfinished graph still uses them, and gradients are handed to the autograd tape without
 * copies; W's gradient is accumulated in place into W->grad. So a training step (cosine →
 * margin_ce → backward) allocates nothing of size B×C after the first step, and the only C×D
 * buffer besides W is W->grad. */
#ifndef FVL_LOSS_OPS_H
#define FVL_LOSS_OPS_H
#include "tensor.h"
#include "autograd.h"
#include "margin.h"

/* cos = clamp(x̂ ŵᵀ, −1, 1) with x̂ = x/max(|x|, 1e-12) row-wise (x B×D) and ŵ likewise (W C×D).
 * Backward: two sgemm calls on G/|W_j| and the normalisation Jacobians applied in place
 * (docs/losses.md §0); entries whose raw dot product left [−1, 1] get zero gradient.
 * ws (optional, B×C float32 contiguous) is reused as the output when no unfinished graph holds it. */
fvl_tensor *fvl_cosine(fvl_tensor *x, fvl_tensor *W, fvl_tensor *ws);

/* Fused class blocks (docs/training.md, "Loss heads at large C"): when on, a margin softmax-CE
 * (fvl_margin_ce, fvl_margin_ce_shard) taken of fvl_cosine's output writes no B×C gradient: it
 * leaves the row constants with the cosine node, whose backward forms each block of the gradient
 * from the saved cosines while the block is in cache and runs dX += G_blk·Ŵ_blk and
 * dW_blk = G_blkᵀ·X̂ on it. Any other gradient reaching the cosines (a hard-negative mean, a
 * Lua function of ctx.cos) is added to the block first. Returns the previous setting. */
int fvl_loss_set_fused(int on);
int fvl_loss_fused(void);

/* z = x·Wᵀ (+ b) for the heads on raw logits (Softmax, Center): x B×D, W C×D, b C (optional).
 * ws as in fvl_cosine; the backward accumulates W's gradient straight into W->grad (two sgemm
 * calls over column blocks, no C×D temporary). */
fvl_tensor *fvl_linear_logits(fvl_tensor *x, fvl_tensor *W, fvl_tensor *b, fvl_tensor *ws);

/* batch mean of the fused margin softmax-CE over cos (B×C, e.g. fvl_cosine's output).
 * s_row / m_row (optional, B floats) replace sp->s / sp->m per row and receive gradients when
 * they require grad (e.g. SphereFace's s_i = |x_i| gives the radial term). With target GIVEN,
 * m_row holds the target values themselves. sp->thr_row (hard ROW) is copied (B floats). gws (optional, B×C)
 * is the gradient workspace. */
fvl_tensor *fvl_margin_ce(fvl_tensor *cos, fvl_tensor *y0, const fvl_margin_spec *sp,
                          fvl_tensor *s_row, fvl_tensor *m_row, fvl_tensor *gws);
/* the same, with `name` for messages ("arcface: loss is not finite (first bad row 2, 0-based)") and
 * nonfinite_ok: 0 = a non-finite loss is an error; 1 = it is returned and the first bad row
 * (0-based) is stored in *bad_row (-1 when every row is finite; bad_row may be NULL). */
fvl_tensor *fvl_margin_ce_ex(fvl_tensor *cos, fvl_tensor *y0, const fvl_margin_spec *sp,
                             fvl_tensor *s_row, fvl_tensor *m_row, fvl_tensor *gws,
                             const char *name, int nonfinite_ok, int *bad_row);

/* fvl_margin_ce_ex(fvl_cosine(x, W, ws), ...) with the margin CE's forward inside the cosine's class
 * blocks (docs/training.md, "the online softmax"): while a block of columns is in cache, the margin
 * on the rows whose target lies in it and each row's running max and Σexp, combined over the blocks
 * in block order (the same bits with any thread count); the LSE pass over the B×C cosines is gone.
 * The cosines are still written to ws (the backward's fused blocks read them) and the graph is the
 * same as the two calls'. Specs whose negatives depend on the target's cosine (hard = arc|cos with
 * a negative kind), and everything while fvl_loss_online() is 0, take the two calls. Values equal
 * the two calls' up to the order of the Σexp sums (fp32 rounding). */
fvl_tensor *fvl_cosine_margin_ce(fvl_tensor *x, fvl_tensor *W, fvl_tensor *y0, const fvl_margin_spec *sp,
                                 fvl_tensor *s_row, fvl_tensor *m_row, fvl_tensor *ws, fvl_tensor *gws,
                                 const char *name, int nonfinite_ok, int *bad_row);
/* the online softmax on (1, the default) or off (0; FVL_ONLINE=0 in the environment starts it off);
 * returns the previous setting */
int fvl_loss_set_online(int on);
int fvl_loss_online(void);
/* Sub-center ArcFace's fused backward (a margin CE of fvl_group_max_ws's max) without the zeros of
 * its B×(C·K) gradient: on (1, the default; FVL_GROUP_SPARSE=0 in the environment starts it off) or
 * the dense GEMMs (0). The same bits either way; it needs the own AVX-512 kernel. Returns the
 * previous setting. */
int fvl_loss_set_group_sparse(int on);
int fvl_loss_group_sparse(void);

/* the B×C logits z the CE of fvl_margin_ce sees (the golden files' aux.logits), untracked */
fvl_tensor *fvl_margin_logits_t(fvl_tensor *cos, fvl_tensor *y0, const fvl_margin_spec *sp,
                                fvl_tensor *s_row, fvl_tensor *m_row, const char *name);

/* h_i = mean over the hard negatives of c_ij (affine = 0) or a·c_ij + b (affine = 1); mask as in
 * margin.h (hard kind, hard_m), constant. h (B) is tracked (gradient to the hard entries of cos);
 * call it on cos:detach() or under no_grad for the constant version. *count (optional) receives
 * the number of hard negatives per row (B, untracked). */
fvl_tensor *fvl_hard_mean(fvl_tensor *cos, fvl_tensor *y0, fvl_hard_kind hard, float hard_m,
                          int affine, float a, float b, fvl_tensor **count);

/* per-row log Σ_{j≠y_i} exp(s·c_ij) (B), untracked: the batch statistic of AdaCos's dynamic
 * scale (B_avg = mean_i exp(out_i)). C >= 2. */
fvl_tensor *fvl_neg_lse(fvl_tensor *cos, fvl_tensor *y0, float s);

/* out_ij = max_k cos[i, j·K + k] (B×C from B×(C·K)), tracked: the gradient goes to the arg-max
 * column only (ties: the first, as torch.argmax) — Sub-center ArcFace's max over sub-centres.
 * ws (optional, B×C) is reused as the output and gws (optional, B×(C·K)) as the backward's
 * destination when nothing else holds them. */
fvl_tensor *fvl_group_max(fvl_tensor *cos, int64_t K, fvl_tensor *ws, fvl_tensor *gws);

/* c_i = cos[i, y_i] (B), tracked */
fvl_tensor *fvl_target_cos(fvl_tensor *cos, fvl_tensor *y0);

/* rows W[idx_i] (B×D), tracked; the backward adds the B rows straight into W's gradient (no
 * C×D temporary when W is a leaf or its gradient already exists) — e.g. ŵ_{y_i} for DiscFace */
fvl_tensor *fvl_gather_rows(fvl_tensor *W, fvl_tensor *idx0);

/* DiscFace's discrepancy term: mean_i |x̂_i − ŵ_{y_i} − ξ_i| (x B×D, W C×D, ξ one D-vector
   (D or 1×D) shared by the rows or B×D), row norms as sqrt(Σ·² + 1e-30) (subgradient 0 at 0),
   normalisation as F.normalize (eps 1e-12). Tracked in x, W (rows added straight into W's
   gradient, as fvl_gather_rows) and ξ; keeps one B×D buffer for the backward. */
fvl_tensor *fvl_disc_dist(fvl_tensor *x, fvl_tensor *W, fvl_tensor *y0, fvl_tensor *xi);

/* pairwise Circle loss over S = x̂x̂ᵀ (B×B): mean over valid anchors (0 when none), tracked in S */
fvl_tensor *fvl_circle_pairwise(fvl_tensor *S, fvl_tensor *y0, float m, float gamma);

/* ½ Σ_i |x_i − c_{y_i}|² (scalar), tracked in x only (the centres are constants); the B×D
   differences are saved, so the centres may be updated in place before the backward */
fvl_tensor *fvl_center_dist(fvl_tensor *x, fvl_tensor *centers, fvl_tensor *y0);

/* centre-loss α-rule in place on centers (C×D float32 contiguous) from x (B×D), not tracked */
int fvl_center_update_(fvl_tensor *centers, fvl_tensor *x, fvl_tensor *y0, float alpha);
#endif
