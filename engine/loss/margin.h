/* margin.h — fused margin-softmax loss kernels on raw arrays (docs/losses.md §0–§2, §5).
 *
 * One generic cosine-logit kernel: per row i with target y_i,
 *     z_iy = s_i · T(c_i)                     target kernel  (TK)
 *     z_ij = s_i · N(c_ij)   if hard_ij       negative kernel (NK) under a constant hard mask (HM)
 *          = s_i · c_ij      otherwise
 *     CE_i = LSE_j z_ij − z_iy                (max-shifted, one pass over the row)
 * Masks, branch choices and Circle's α weights are constants (zero gradient), as in every
 * public reference. The backward writes dcos = gscale · dCE/dcos in one pass.
 *
 * Shapes: cos B×C row-major with row stride ldc ≥ C; y B labels, 0-based; per-row vectors B.
 * Every kernel returns 0, or −1 with a message in fvl_errmsg() naming the kernel and argument.
 * Loops are OpenMP-parallel over rows; results do not depend on the thread count. */
#ifndef FVL_LOSS_MARGIN_H
#define FVL_LOSS_MARGIN_H
#include <stdint.h>

typedef enum {
  FVL_TK_NONE,      /* T = c                                                             */
  FVL_TK_COS,       /* T = c − m                                         (CosFace / AM)  */
  FVL_TK_ARC,       /* T = cos(θ+m), fallback mm|none|clamp, easy_margin (ArcFace)       */
  FVL_TK_COMBINED,  /* T = cos(m1·θ + m2) − m3, fallback none|clamp|mm(m1 = 1)          */
  FVL_TK_SPHERE,    /* T = (λc + ψ_m(θ))/(1+λ), ψ = (−1)^k T_m(c) − 2k, k const         */
  FVL_TK_CIRCLE,    /* T = α_p (c − Δp), α_p = [1+m−c]+ const, Δp = 1−m  (m = circle_m)  */
  FVL_TK_GIVEN      /* T = m_i: the target value itself comes in m_row (computed outside the
                       kernel, e.g. by a Lua function of c_i); ∂T/∂c = 0, ∂T/∂m_i = 1      */
} fvl_target_kind;
typedef enum {
  FVL_NK_NONE,      /* N = c                                                              */
  FVL_NK_AFFINE,    /* N = a·c + b                                       (MV, NPCFace)    */
  FVL_NK_QUADRATIC, /* N = c·(t + c), t const                            (CurricularFace) */
  FVL_NK_CIRCLE     /* N = α_n (c − Δn), α_n = [c+m]+ const, Δn = m      (Circle)         */
} fvl_neg_kind;
typedef enum {
  FVL_HARD_ALL,     /* every j ≠ y                                 */
  FVL_HARD_ARC,     /* c_ij > cos(θ_i + hard_m)  (raw, no fallback) */
  FVL_HARD_COS,     /* c_ij > c_i − hard_m                          */
  FVL_HARD_ROW      /* c_ij > thr_row[i]  (a given per-row threshold) */
} fvl_hard_kind;
typedef enum {
  FVL_FB_MM,        /* c ≤ cos(π−m): T = c − m·sin m   (T' = 1)  */
  FVL_FB_NONE,      /* cos(θ+m) everywhere                       */
  FVL_FB_CLAMP      /* θ+m ≥ π: T = −1                (T' = 0)  */
} fvl_fallback;

typedef struct fvl_margin_spec {
  float s; const float *s_row;              /* scale, or per-row scale vector (B) if s_row != NULL */
  fvl_target_kind target; float m; const float *m_row;  /* margin or per-row margins (B) */
  float m1, m2, m3; fvl_fallback fallback; int easy_margin; int detached;
  int sphere_m; float sphere_lambda;        /* SphereFace ψ_m blended (λc+ψ)/(1+λ) */
  fvl_neg_kind neg; fvl_hard_kind hard; float hard_m;   /* hard mask c_ij > T_raw(c_i; hard_m), j≠y, strict > */
  float a, b;                               /* affine N = a*c + b on hard negatives */
  float t;                                  /* quadratic N = c*(t + c) on hard negatives */
  float circle_m;                           /* Circle: α_p=[1+m-c]+, α_n=[c+m]+, Δp=1-m, Δn=m; s plays γ */
  const float *thr_row;                     /* hard ROW: per-row thresholds (B), constant */
  float clamp_eps;                          /* > 0: every c_ij is clamped to [−1+ε, 1−ε] first
                                               (gradient 0 outside, passes at equality) */
} fvl_margin_spec;
/* Notes on the fields:
 *  - easy_margin (ARC, COS, COMBINED): the margin applies only where c_i > 0, else T = c;
 *    it takes precedence over `fallback` (as in the oracle's arc_target).
 *  - detached (ARC, COS, COMBINED, SPHERE): straight-through, z = s(c + stopgrad(T − c)):
 *    the value of T, the derivative of c (T' = 1, dT/dm = 0).
 *  - m_row (ARC, COS): per-row margins m_i replacing m; dm_row receives dL/dm_i.
 *    GIVEN: m_row holds the target values T_i themselves and dm_row receives dL/dT_i.
 *    For COMBINED, m1, m2, m3 are used and m_row must be NULL.
 *  - At |c| = 1 the angular derivative sin(θ+m)/sinθ is infinite; the kernels floor sinθ at
 *    FVL_SIN_FLOOR (the sine of fp32's smallest non-zero angle, acos(1 − 2⁻²⁴)), i.e. use the
 *    derivative one float below |c| = 1: finite, and continuous with its neighbours. */
#define FVL_SIN_FLOOR 3.4526698e-4

/* forward: cos B×C (row stride ldc), y 0-based; writes per-row loss (B), per-row LSE (B) for backward */
int fvl_margin_ce_fwd(const float *cos, int ldc, const int32_t *y, int B, int C, const fvl_margin_spec *sp,
                      float *row_loss, float *row_lse);
/* backward: dcos (row stride lddc) = gscale * dCE_i/dcos (gscale = upstream grad / B for the
   mean), may alias nothing; ds_row (B, optional) receives dL/ds_i when sp->s_row is used;
   dm_row (B, optional) dL/dm_i. Both are written (not accumulated) and include gscale. */
int fvl_margin_ce_bwd(const float *cos, int ldc, const int32_t *y, int B, int C, const fvl_margin_spec *sp,
                      const float *row_lse, float gscale, float *dcos, int lddc, float *ds_row, float *dm_row);

/* the logits z (B×C, row stride ldz) the CE sees — for inspection and tests (aux.logits) */
int fvl_margin_logits(const float *cos, int ldc, const int32_t *y, int B, int C, const fvl_margin_spec *sp,
                      float *z, int ldz);

/* mean of the hard negatives' values per row: hard mask as in the spec (hard, hard_m); value = raw c
   (affine=0) or a*c+b (affine=1). h (B), count (B). Rows without hard negatives: h = 0. */
int fvl_hard_mean_fwd(const float *cos, int ldc, const int32_t *y, int B, int C, fvl_hard_kind hard,
                      float hard_m, int affine, float a, float b, float *h, float *count);
/* dcos_ij (+)= gh_i · [hard_ij] · (affine ? a : 1) / max(1, count_i); accumulate = 0 writes
   every entry of dcos (zeros off the mask), 1 adds to it. */
int fvl_hard_mean_bwd(const float *cos, int ldc, const int32_t *y, int B, int C, fvl_hard_kind hard,
                      float hard_m, int affine, float a, const float *count, const float *gh,
                      float *dcos, int lddc, int accumulate);

/* A slice of the classes (sharded heads, Partial FC): cos holds this slice's columns, y[i] is the
   target's column in the slice or −1 when another slice holds it, and ctgt (B) the target cosine
   of every row (whichever slice holds it). fwd_part writes the slice's row maxima of the logits
   (row_max) and Σ_j exp(z_ij − row_max_i) (row_sum); the caller combines the slices into the
   row LSE. bwd_part is fvl_margin_ce_bwd on the slice given the combined row_lse; ds_row / dm_row
   receive this slice's part (summed over the slices they are the full values). */
int fvl_margin_ce_fwd_part(const float *cos, int ldc, const int32_t *y, const float *ctgt, int B, int C,
                           const fvl_margin_spec *sp, float *row_max, double *row_sum);
int fvl_margin_ce_bwd_part(const float *cos, int ldc, const int32_t *y, const float *ctgt, int B, int C,
                           const fvl_margin_spec *sp, const float *row_lse, float gscale, float *dcos,
                           int lddc, float *ds_row, float *dm_row);
/* Class blocks (the fused cosine + margin backward, cosine.c): the row constants once per step,
   then the gradient of any block of columns on its own. rows (B): fvl_margin_rows from the target
   cosines ctgt (the spec's row vectors s_row, m_row, thr_row are read there, not later).
   fvl_margin_ce_bwd_block writes dcos (B×n, row stride lddc) = gscale · dCE/dcos on the columns
   [j0, j0+n) of the B×C matrix whose column j0 is at cos (row stride ldc), y[i] the target's
   column in the whole matrix (or −1: elsewhere); rows with skip[i] != 0 get zeros. The values are
   fvl_margin_ce_bwd's, entry for entry. Serial: it is called per block inside a parallel loop.
   fvl_margin_ce_row_grads gives the row vectors' gradients of the whole matrix (ds_row, dm_row as
   fvl_margin_ce_bwd_part) without writing dcos; skip[i] rows get 0. */
typedef struct { float s, T, dT; double dTdm; float thr; } fvl_margin_row;
void fvl_margin_rows(const fvl_margin_spec *sp, const float *ctgt, int B, fvl_margin_row *rows);
void fvl_margin_ce_bwd_block(const fvl_margin_spec *sp, const fvl_margin_row *rows, const float *cos, int ldc,
                             const int32_t *y, int B, int j0, int n, const float *row_lse, float gscale,
                             const unsigned char *skip, float *dcos, int lddc);
/* row i of fvl_margin_ce_bwd_block, into grow (n floats): for a caller that finishes each row of
   the block while it is in L1 */
void fvl_margin_ce_bwd_block_row(const fvl_margin_spec *sp, const fvl_margin_row *rows, const float *cos, int ldc,
                                 const int32_t *y, int B, int j0, int n, const float *row_lse, float gscale,
                                 const unsigned char *skip, int i, float *grow);
int fvl_margin_ce_row_grads(const float *cos, int ldc, const int32_t *y, int B, int C, const fvl_margin_spec *sp,
                            const fvl_margin_row *rows, const float *row_lse, float gscale,
                            const unsigned char *skip, float *ds_row, float *dm_row);
/* The online softmax of the forward's class blocks (fvl_cosine_margin_ce, loss_ops.h): each block of
   columns [j0, j0+n) (cos: its column 0, row stride ldc) gives every row its block maximum of the
   logits (bmax, B) and Σ exp(z − bmax) (bsum, B), the margin applied where the target lies in the
   block (y: the whole matrix's columns). rows0 (B): fvl_margin_rows of any target cosines — only
   their scale and hard threshold are read, so the spec must pass fvl_margin_online_ok: the
   negatives' logits do not depend on the target's cosine (no hard kind arc/cos). Serial.
   fvl_margin_ce_fwd_combine then takes the blocks in order (the same bits with any thread count)
   into row_lse and row_loss as fvl_margin_ce_fwd's; rows with redo[i] != 0 (their cosines changed
   after the blocks were seen) are taken by a pass over the whole row instead. */
int fvl_margin_online_ok(const fvl_margin_spec *sp);
void fvl_margin_ce_fwd_block(const fvl_margin_spec *sp, const fvl_margin_row *rows0, const float *cos, int ldc,
                             const int32_t *y, int B, int j0, int n, float *bmax, double *bsum);
int fvl_margin_ce_fwd_combine(const fvl_margin_spec *sp, const float *cos, int ldc, const int32_t *y, int B, int C,
                              int64_t nblk, const float *bmax, const double *bsum, const unsigned char *redo,
                              float *row_loss, float *row_lse);
/* s_i·T(c): the target logit of row i at target cosine c */
float fvl_margin_target_logit(const fvl_margin_spec *sp, float c, int i);
/* the slice's hard-negative sums (sum, B) and counts (count, B); h = Σsum / max(1, Σcount) */
int fvl_hard_mean_part(const float *cos, int ldc, const int32_t *y, const float *ctgt, int B, int C,
                       fvl_hard_kind hard, float hard_m, int affine, float a, float b, double *sum,
                       float *count);
/* fvl_hard_mean_bwd on a slice, with the combined counts */
int fvl_hard_mean_bwd_part(const float *cos, int ldc, const int32_t *y, const float *ctgt, int B, int C,
                           fvl_hard_kind hard, float hard_m, int affine, float a, const float *count,
                           const float *gh, float *dcos, int lddc, int accumulate);

/* Pairwise Circle loss (docs/losses.md §1.9, PML semantics). S = X̂X̂ᵀ (B×B, row stride lds, not
   clamped), y B labels. Per anchor i: positives p ≠ i with y_p = y_i, negatives y_n ≠ y_i;
   z_i = LSE_p[−γα_p(S_ip − (1−m))] + LSE_n[γα_n(S_in − m)], α_p = [1+m−S]+, α_n = [S+m]+ const;
   row_loss_i = softplus(z_i) for valid anchors (≥ 1 positive and ≥ 1 negative), 0 otherwise.
   row_z (B) keeps z_i for the backward, valid (B) 1/0; *nvalid the number of valid anchors.
   The loss is Σ row_loss / nvalid (0 when nvalid = 0). */
int fvl_circle_pairwise_fwd(const float *S, int lds, const int32_t *y, int B, float m, float gamma,
                            float *row_loss, float *row_z, float *valid, int *nvalid);
/* dS (B×B, row stride ldds) = gscale · d(Σ_i row_loss_i)/dS (gscale = upstream / nvalid);
   every entry is written. */
int fvl_circle_pairwise_bwd(const float *S, int lds, const int32_t *y, int B, float m, float gamma,
                            const float *row_z, const float *valid, float gscale, float *dS, int ldds);
/* the same for B anchors that are columns first..first+B−1 of n (S is B×n, y n labels): the
   anchors' rows of the n×n problem (a rank's share of a gathered batch) */
int fvl_circle_rows_fwd(const float *S, int lds, const int32_t *y, int B, int n, int first, float m, float gamma,
                        float *row_loss, float *row_z, float *valid, int *nvalid);
int fvl_circle_rows_bwd(const float *S, int lds, const int32_t *y, int B, int n, int first, float m, float gamma,
                        const float *row_z, const float *valid, float gscale, float *dS, int ldds);

/* Center-loss α-rule (docs/losses.md §1.10), in place on centers (C×D):
   Δc_j = Σ_{i:y_i=j} (c_j − x_i)/(1 + n_j),  c_j ← c_j − α·Δc_j;  classes absent stay. x B×D. */
int fvl_center_update(float *centers, int C, int D, const float *x, const int32_t *y, int B, float alpha);

/* per-row log Σ_{j≠y_i} exp(s·c_ij) (B), max-shifted: AdaCos's B_avg = mean_i exp(out_i) */
int fvl_neg_lse_fwd(const float *cos, int ldc, const int32_t *y, int B, int C, float s, float *out);

/* shared helpers */
const char *fvl_target_kind_name(fvl_target_kind k);
const char *fvl_neg_kind_name(fvl_neg_kind k);
/* validates a spec for B rows (name = calling function for messages); 0 or −1 */
int fvl_margin_spec_check(const char *fn, const fvl_margin_spec *sp);
/* a spec with every field at its neutral value: s = 1, target NONE, neg NONE, hard ALL,
   fallback MM, sphere_m = 4, a = 1, circle_m = 0.25 */
fvl_margin_spec fvl_margin_spec_default(void);
#endif
