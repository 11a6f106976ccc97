/* loss_internal.h — helpers shared by the loss wrappers (loss_ops.c, cosine.c); not public. */
#ifndef FVL_LOSS_INTERNAL_H
#define FVL_LOSS_INTERNAL_H
#include "loss_ops.h"

#include "hot.h"   /* FVL_HOT: hot loops compiled for AVX2+FMA and the baseline, chosen at load time */

/* "256x512" into buf (64 bytes) */
const char *fvl_lo_shape(const fvl_tensor *t, char *buf);
/* t is a float32 2-D tensor, or −1 with "<fn>: <arg> is … (expected <what>)" */
int fvl_lo_check_2d(const char *fn, const char *arg, const fvl_tensor *t, const char *what);
int fvl_lo_group_cols(const char *fn, fvl_tensor *cos, int64_t K, int64_t *C);
/* row-major data of a 2-D tensor (itself when rows are contiguous, ld = stride), new ref */
fvl_tensor *fvl_lo_rows_of(fvl_tensor *t, int *ld);
/* contiguous untracked data (itself when contiguous), new ref */
fvl_tensor *fvl_lo_data_of(fvl_tensor *t);
/* 0-based int32 labels with B entries in 0..C−1 (C <= 0: any ≥ 0), contiguous, new ref */
fvl_tensor *fvl_lo_labels_of(const char *fn, fvl_tensor *y0, int64_t B, int64_t C);
/* float32 per-row vector with B entries, contiguous, new ref */
fvl_tensor *fvl_lo_rowvec_of(const char *fn, const char *arg, fvl_tensor *v, int64_t B);
/* hands g (owned exclusively by the caller) to input i of n: the accumulator of a non-leaf input
   without a copy when it has none yet, else accumulated */
int fvl_lo_take_or_accum(fvl_node *n, int i, fvl_tensor *g);
/* the contiguous gradient accumulator of input i, to add to in place, or NULL */
fvl_tensor *fvl_lo_inplace_acc(fvl_node *n, int i);
/* ws is a contiguous float32 B×C tensor, or −1 with a message */
int fvl_lo_ws_ok(const char *fn, const char *arg, const fvl_tensor *ws, int64_t B, int64_t C);
/* Fused class blocks: hands the margin-CE gradient of cos (B×C) to the cosine node that made it,
   to be formed per block in its backward. sp's row vectors (s_row, m_row, thr_row) are read now;
   y (B, the target's column, −1: another slice), ctgt (B target cosines), lse (B), skip (B or
   NULL: rows without gradient) are copied. 1: deferred (write no dcos), 0: not possible here
   (fused off, cos not fvl_cosine's own output, or already taken), −1: error. */
int fvl_lo_defer_margin(fvl_tensor *cos, const fvl_margin_spec *sp, const int32_t *y, const float *ctgt,
                        const float *lse, const unsigned char *skip, float gscale);
/* Fused class blocks: the gradient g (B) of a gather of the cosines at columns y (B, F.target_cos)
   added by the cosine node's blocks to the margin term a margin CE left there (one gather per
   term; y, g copied). 1: deferred (write no dcos), 0: not possible (no term, fused off, not
   fvl_cosine's own output, a gather already taken), −1: error. */
int fvl_lo_defer_target(fvl_tensor *cos, const int32_t *y, const float *g);
/* fvl_lo_defer_margin for a margin-CE node's backward: cin is its cos input, cos its data (row
   stride ldc), ctgt NULL: the target cosines are cos[i, y_i]. When deferred and ds / dm are
   given, *ds / *dm become new B-vectors with the row vectors' gradients (skip rows 0). */
int fvl_lo_defer_margin_rows(fvl_tensor *cin, const fvl_margin_spec *sp, const float *cos, int ldc, const int32_t *y,
                             const float *ctgt, const float *lse, const unsigned char *skip, float gscale,
                             fvl_tensor **ds, fvl_tensor **dm);
/* Fused class blocks through a max over sub-centres (group_max_ws.c): when t is the B×C output of
   fvl_group_max_ws, the B×(C·K) matrix it was taken of (*K = the group size), else NULL. */
fvl_tensor *fvl_lo_group_max_source(const fvl_tensor *t, int64_t *K);
/* S (B×n, row stride lds) = the gradient on the columns [j0, j0+n) of the B×(C·K) matrix cs (the
   whole matrix, row stride ldc) of a margin CE taken of its max over each group of K columns: each
   class's fvl_margin_ce_bwd_block value (rows, y in class columns, lse, gscale, skip as there) at
   its arg-max column (ties: the first), zeros elsewhere. Serial. −1: out of memory (no message). */
int fvl_group_margin_bwd_block(const fvl_margin_spec *sp, const fvl_margin_row *rows, const float *cs, int64_t ldc,
                               int64_t K, const int32_t *y, int B, int64_t j0, int64_t n, const float *lse,
                               float gscale, const unsigned char *skip, float *S, int64_t lds);
/* The same gradient in compact form, one entry per row and class (Sub-center ArcFace's sparse
   backward, blk_sel.c): for the classes c0 = j0/K .. (j0+n−1)/K of the block, gv[i·lds + c] the
   value and gc[i·lds + c] its column relative to j0 (−1 where it lies outside the block or the row
   is skipped). */
int fvl_group_margin_bwd_sel(const fvl_margin_spec *sp, const fvl_margin_row *rows, const float *cs, int64_t ldc,
                             int64_t K, const int32_t *y, int B, int64_t j0, int64_t n, const float *lse,
                             float gscale, const unsigned char *skip, float *gv, int32_t *gc, int64_t lds);
/* accumulates v (B floats) into input i of n, reshaped to the input's shape (B or B×1) */
int fvl_lo_accum_vec(fvl_node *n, int i, fvl_tensor *v);
/* the loss scalar sum/B (new ref), after the finiteness check: bad is the first row (0-based) whose
   loss is not finite, or −1; an error unless nonfinite_ok, else *bad_row = bad */
fvl_tensor *fvl_lo_mean_loss(const char *fn, double sum, int64_t B, int64_t bad, int nonfinite_ok, int *bad_row);
/* The forward's class blocks with a visitor (the online softmax, fvl_cosine_margin_ce): fvl_cosine,
   and visit(ctx, blk, j0, nj, cos, ldc) called for each block of columns [j0, j0+nj) (block blk of
   fvl_lo_block_cols(B, C) columns; cos: its column 0, row stride ldc) once its cosines are scaled,
   inside the parallel loop (one block per thread at a time). Entries with |c| > 0.9999 are
   recomputed in double after all blocks: redo (B, optional) marks the rows that had any. */
typedef void (*fvl_lo_block_fn)(void *ctx, int64_t blk, int64_t j0, int64_t nj, const float *cos, int64_t ldc);
int64_t fvl_lo_block_cols(int64_t B, int64_t C);
fvl_tensor *fvl_lo_cosine_visit(fvl_tensor *x, fvl_tensor *W, fvl_tensor *ws, fvl_lo_block_fn visit, void *vctx,
                                unsigned char *redo);
#endif
