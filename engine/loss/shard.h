/* shard.h — loss primitives on a slice of the classes (model-parallel heads, Partial FC).
 *
 * Every rank holds the same gathered batch (NB rows) and its own columns: cos is NB×Cl, and ycol
 * (int32, NB) is each row's target column in this slice, or −1 when another rank holds it. Row
 * statistics are combined with all-reduces over fvl.dist's world (a plain process: the slice is
 * the whole row, the results equal the unsharded primitives).
 *
 * Gradient convention (as Megatron-LM's tensor parallelism): replicated values (the gathered
 * embeddings, row vectors such as s_row, m_row, the returned loss, h or c) carry their full
 * gradient on every rank; this rank's columns carry their own. So the backward sums the ranks'
 * parts of the row vectors' gradients (margin_ce_shard's s_row / m_row), and the gathered
 * embeddings enter the column work through fvl_dist_copy_rows_t (its backward reduce-scatters the
 * ranks' parts of dX: each rank receives the sum of its own rows). Any replicated computation of a head (a
 * norm, a regulariser) then needs nothing special. */
#ifndef FVL_LOSS_SHARD_H
#define FVL_LOSS_SHARD_H
#include "tensor.h"
#include "margin.h"

/* the batch mean over the NB rows of the margin softmax-CE, with the row max, Σexp and target
   cosine combined over the ranks (three all-reduces of NB values); replicated scalar, tracked
   in cos (this slice's columns), s_row and m_row. Arguments as fvl_margin_ce_ex; cap > 0 caps
   every row's loss at cap with no gradient for the capped rows (Partial FC: −log max(p_y, 1e-30),
   cap = 69.0776, as torch's clamp_min). */
fvl_tensor *fvl_margin_ce_shard(fvl_tensor *cos, fvl_tensor *ycol, const fvl_margin_spec *sp,
                                fvl_tensor *s_row, fvl_tensor *m_row, fvl_tensor *gws, const char *name,
                                int nonfinite_ok, int *bad_row, float cap);
/* Row chunks: the NB×C scores of this slice, described by fvl_chunk_scores, are never held whole.
   They are this slice's centres W against the rows of x, either the cosines clamp(x̂ŵᵀ) (groups =
   K > 1: the max over each class's K consecutive rows of W, Sub-center ArcFace's (C·K)×D centres)
   or, with linear set, the logits x·Wᵀ + bias (bias optional, one per row of W). The chunked ops
   compute them `chunk` rows at a time (the rows' statistics kept, the chunk dropped) and again in
   the backward, chunk by chunk, each chunk's gradient going straight into x's, W's and the bias's
   (one more GEMM per step; the largest buffers are chunk×C ones). The target scores come from row
   dot products (in double). Tracked in x, W, the bias (and s_row, m_row). */
typedef struct {
  int linear;          /* 0: cosines (max over groups); 1: x·Wᵀ + bias */
  int64_t groups;      /* K rows of W per class (cosines); 1 for linear */
  fvl_tensor *bias;    /* linear: NULL or one float32 per row of W (borrowed) */
  int64_t chunk;       /* rows per chunk, >= 1 */
} fvl_chunk_scores;
/* fvl_margin_ce_shard on the chunked scores */
fvl_tensor *fvl_chunked_margin_ce_shard(fvl_tensor *x, fvl_tensor *W, const fvl_chunk_scores *src, fvl_tensor *ycol,
                                        const fvl_margin_spec *sp, fvl_tensor *s_row, fvl_tensor *m_row,
                                        const char *name, int nonfinite_ok, int *bad_row, float cap);
/* fvl_hard_mean_shard on the chunked scores */
fvl_tensor *fvl_chunked_hard_mean_shard(fvl_tensor *x, fvl_tensor *W, const fvl_chunk_scores *src, fvl_tensor *ycol,
                                        fvl_hard_kind hard, float hard_m, int affine, float a, float b);
/* c_i = cos[i, y_i] from whichever rank holds it (NB, replicated), tracked */
fvl_tensor *fvl_target_cos_shard(fvl_tensor *cos, fvl_tensor *ycol);
/* fvl_hard_mean over the whole row: sums and counts combined over the ranks; tracked */
fvl_tensor *fvl_hard_mean_shard(fvl_tensor *cos, fvl_tensor *ycol, fvl_hard_kind hard, float hard_m,
                                int affine, float a, float b);
/* dst[rows[k]] = src[k] for k < K (rows 0-based int32, dst n×D and src K×D float32
   contiguous); not tracked (optimiser write-back of sampled rows) */
int fvl_copy_rows_(fvl_tensor *dst, fvl_tensor *rows, fvl_tensor *src);
/* Partial FC sample of a slice of n classes: every row marked in pos (int32 n, 1 = positive)
   plus uniformly random other rows (without replacement) up to `num` rows in all (only the
   positives when they are more); sorted 0-based int32 rows. The negatives come from the
   counter-based generator at (seed, counter), counter advanced by the caller. */
fvl_tensor *fvl_pfc_sample(fvl_tensor *pos, int64_t num, uint64_t seed, uint64_t counter);
/* pairwise Circle loss of a rank's B anchors, the columns first..first+B−1 (0-based) of the N
   gathered rows: S is B×N (the anchors' similarities to every gathered row), y the N gathered
   0-based labels. Replicated: Σ over the ranks' valid anchors' losses / their count (0 when there
   is none), the same as fvl_circle_pairwise on the whole N×N; tracked in S. */
fvl_tensor *fvl_circle_pairwise_shard(fvl_tensor *S, fvl_tensor *y, int64_t first, float m, float gamma);
#endif
