/* eval.h — face-verification and retrieval metrics on raw arrays (no tensors, no Lua).
 *
 * Conventions
 *  - scores: higher = more alike (cosine similarity; pass -d² for squared distances).
 *  - same:   int32 0/1 per pair (1 = genuine / same identity, 0 = impostor).
 *  - labels: 0-based int32 class ids.
 *  - Every function checks its input and returns -1 (or a negative count) with a message in
 *    fvl_errmsg() naming the function, the argument, what was expected and what came.
 *  - Caller-provided output buffers; no allocation is hidden in a hot loop. Functions that
 *    need scratch memory allocate it once per call and free it before returning.
 *
 * Definitions (the verification protocol)
 *  - ROC: one point per distinct score τ (descending), predicting "same" when s >= τ:
 *    TAR(τ) = #genuine with s >= τ / #genuine, FAR(τ) = #impostor with s >= τ / #impostor,
 *    preceded by the point (0, 0) at τ = +inf. This is scikit-learn's
 *    roc_curve(drop_intermediate=False); with drop_intermediate the collinear interior points
 *    are dropped exactly as scikit-learn does.
 *  - AUC: trapezoid rule over the ROC points (scikit-learn auc(fpr, tpr)).
 *  - EER: the point of the piecewise-linear ROC where FAR = 1 - TAR (linear interpolation
 *    on the segment that crosses the anti-diagonal).
 *  - TAR@FAR=f: max TAR(τ) over thresholds with FAR(τ) <= f. Reported only when the number of
 *    impostor pairs is at least 1/f (f*n_impostor >= 1); otherwise absent (NaN here).
 *  - k-fold verification: folds are contiguous blocks as scikit-learn's KFold(K, shuffle=False)
 *    makes them (the first n%K folds hold one pair more). For each fold the
 *    threshold maximises accuracy on the other K-1 folds over every distinct training score
 *    (plus "nothing is same"); ties keep the highest threshold. Accuracy is measured on the
 *    held-out fold; mean and population std (numpy's np.std) over folds are reported.
 */
#ifndef FVL_EVAL_H
#define FVL_EVAL_H
#include <stdint.h>
#include <stddef.h>

/* FAR targets for which TAR is reported: 1e-1 .. 1e-6 */
#define FVL_EVAL_NFAR 6
extern const double fvl_eval_far_targets[FVL_EVAL_NFAR];

/* ROC over all distinct thresholds.
 * scores[n], same[n] (0/1). far, tar: n+1 doubles; thr: n+1 floats (thr[0] = +inf), any of
 * the three may be NULL. Returns the number of points written (>= 2), or -1.
 * n_genuine and n_impostor must both be >= 1. */
int64_t fvl_eval_roc(const float *scores, const int32_t *same, int64_t n, int drop_intermediate,
                     double *far, double *tar, float *thr);

/* Area under a curve by the trapezoid rule (x must be monotone; like sklearn.metrics.auc). */
double fvl_eval_auc(const double *x, const double *y, int64_t n);

/* Equal error rate of ROC points (far, tar) running from (0,0) to (1,1); the threshold of the
 * crossing (interpolated between the two bracketing thresholds) goes to *thr_out if not NULL. */
double fvl_eval_eer(const double *far, const double *tar, const float *thr, int64_t npts,
                    double *thr_out);

/* TAR at the FAR targets fvl_eval_far_targets[] from ROC points. tar_out[FVL_EVAL_NFAR] gets
 * NaN where n_impostor < 1/f. Returns how many targets were supported. */
int fvl_eval_tar_at_far(const double *far, const double *tar, int64_t npts, int64_t n_impostor,
                        double *tar_out);

/* Everything at once (one sort). */
typedef struct fvl_verif_result {
  int64_t n, n_genuine, n_impostor;
  int folds;
  double accuracy, std;           /* k-fold mean and population std of held-out accuracy */
  double threshold;               /* mean of the per-fold thresholds */
  double fold_acc[64], fold_thr[64];
  double auc, eer, eer_threshold;
  double tar_at_far[FVL_EVAL_NFAR]; /* NaN where unsupported */
  /* VAL@FAR (LFW protocol): per fold, the threshold where the training folds' FAR equals f
   * (linear interpolation between the two bracketing distinct training scores), TAR and FAR
   * on the held-out fold; mean and population std over folds. NaN unless every fold has
   * at least 1/f training impostors. */
  double val[FVL_EVAL_NFAR], val_std[FVL_EVAL_NFAR], val_far[FVL_EVAL_NFAR];
} fvl_verif_result;

/* k-fold accuracy only (2 <= folds <= 64, each fold non-empty). fold_acc/fold_thr may be
 * NULL (else folds entries). Returns 0 / -1. */
int fvl_eval_kfold(const float *scores, const int32_t *same, int64_t n, int folds,
                   double *mean, double *std, double *mean_thr, double *fold_acc,
                   double *fold_thr);

/* verification: k-fold accuracy + ROC summary. roc_far/roc_tar/roc_thr: optional buffers of
 * n+1 entries receiving the full ROC (drop_intermediate as asked); *roc_n gets its length. */
int fvl_eval_verification(const float *scores, const int32_t *same, int64_t n, int folds,
                          fvl_verif_result *res, int drop_intermediate, double *roc_far,
                          double *roc_tar, float *roc_thr, int64_t *roc_n);

/* Seeded balanced pairs from labelled embeddings.
 * emb: N×D row-major, labels[N] 0-based. Writes npairs pairs alternately genuine (even k) and
 * impostor (odd k), so every contiguous fold is balanced: idx_a[k], idx_b[k] (0-based rows),
 * same[k] and the cosine score[k]; every output may be NULL.
 * Genuine: a uniform sample among rows whose class has >= 2 rows, b another row of its class.
 * Impostor: a uniform row, b a uniform row of another class. Pairs may repeat.
 * Needs >= 2 classes and one class with >= 2 rows; rows must be finite (a zero row scores 0).
 * Uses its own counter-based generator seeded with `seed` (engine/rng.h), not the global one. */
int fvl_eval_make_pairs(const float *emb, const int32_t *labels, int64_t N, int64_t D,
                        int64_t npairs, uint64_t seed, int32_t *idx_a, int32_t *idx_b,
                        int32_t *same, float *score);

/* Cosine similarity matrix out[na×nb] = norm(A)·norm(B)ᵀ through sgemm (A: na×D, B: nb×D). */
int fvl_eval_cosine_matrix(const float *A, int64_t na, const float *B, int64_t nb, int64_t D,
                           float *out);

/* Identification / retrieval (pytorch-metric-learning AccuracyCalculator definitions).
 * gallery G×D with labels gl; probes P×D with labels pl. probes == NULL: leave-one-out on the
 * gallery (every gallery row is a query, itself excluded). Similarity: cosine.
 * Probes whose label has no (other) gallery item are dropped (counted in n_dropped).
 * Ranking: similarity descending, ties by gallery index ascending.
 * rank_k[i] for i < nk gets the rank-ks[i] hit rate (CMC). */
typedef struct fvl_ident_result {
  int64_t n_queries, n_dropped;
  double precision_at_1, r_precision, map_at_r;
} fvl_ident_result;
int fvl_eval_identification(const float *gallery, const int32_t *gl, int64_t G,
                            const float *probes, const int32_t *pl, int64_t P, int64_t D,
                            const int *ks, int nk, double *rank_k, fvl_ident_result *res);

/* Flip test: out[N×D] = normalize(a + b) row-wise (raw embeddings of image and mirror). out may
 * alias a or b. */
int fvl_eval_flip_merge(const float *a, const float *b, int64_t N, int64_t D, float *out);

/* checks shared with the binding: first non-finite element of x[n] (-1 if none) */
int64_t fvl_eval_first_nonfinite(const float *x, int64_t n);
#endif
