/* head_stats.h — per-batch values the heads read around their loss kernels, computed here so that
 * no head turns labels or B values into Lua tables per step: statistics for state updates and
 * warnings (in double, in a fixed order: the same bits on any thread count) and the sharded
 * heads' target maps (which gathered row's class lies in this rank's slice, and where). */
#ifndef FVL_HEAD_STATS_H
#define FVL_HEAD_STATS_H
#include <stdint.h>

/* AdaCos's dynamic-scale statistics of a batch: from lse_i = log Σ_{j≠y_i} exp(s·c_ij) and the
 * target cosines cy_i (B each), b_avg = (1/B) Σ_i exp(lse_i) (summed in row order) and theta_med =
 * the lower median of acos(min(max(cy_i, −1 + 1e-7), 1 − 1e-7)) (a NaN cy_i counts as 1 − 1e-7).
 * Returns 0, or -1 (B < 1, out of memory) with a message naming fn. */
int fvl_adacos_stats(const char *fn, const float *lse, const float *cy, int64_t B, double *b_avg,
                     double *theta_med);

/* how many of the B rows of y (any ids) have both a positive (another row with the same id) and a
 * negative (a row with another id): the anchors of a pairwise loss. -1 when out of memory. */
int64_t fvl_pair_anchors(const char *fn, const int32_t *y, int64_t B);
/* AdaFace's per-row constants of a batch (all in double, rows in order): n_i = min(max(norm_i, 1e-3),
 * 100) (a NaN norm counts as 100); while training (needs B >= 2) the EMA before use
 * *mean ← alpha·mean(n) + (1 − alpha)·*mean, *std ← alpha·std(n) + (1 − alpha)·*std (unbiased std);
 * z_i = min(max(h·(n_i − *mean)/(*std + eps), −1), 1) (NaN → 1); g_ang_i = −m·z_i, g_add_i = m + m·z_i,
 * rounded to float. Returns 0, or -1 (training with B < 2) with a message naming fn. */
int fvl_adaface_rows(const char *fn, const float *norm, int64_t B, double h, double m, double eps, double alpha,
                     int training, double *mean, double *std, float *g_ang, float *g_add);

/* The targets of B gathered rows in a slice of the classes: y0 (0-based ids) → rows[i] = the
 * 1-based row of y0[i] in the slice [first, first + n) (first 0-based), 0 when another rank holds
 * it. positives (optional, n entries) is set to 1 at every row some label targets, 0 elsewhere. */
void fvl_slice_targets(const int32_t *y0, int64_t B, int64_t first, int64_t n, int32_t *rows, int32_t *positives);

/* Partial FC's columns: sample holds m sorted, distinct 1-based rows of the slice; cols[i] = the
 * 1-based position of rows[i] in it (0 when rows[i] is 0 or not sampled), and idx (m·K entries,
 * optional) the 1-based weight rows of the sampled classes, K consecutive rows per class. */
void fvl_sample_cols(const int32_t *rows, int64_t B, const int32_t *sample, int64_t m, int64_t K, int32_t *cols,
                     int32_t *idx);

/* Partial FC's given sample, checked in one pass: ids holds m class ids, ids[k] − base being the
 * 0-based class (base = 1 for ids numbered from 1), strictly increasing within 0..classes−1, and
 * every label y0[i] (B 0-based ids: the gathered batch, the same on every rank) among them.
 * local_rows (m entries of room) receives, in order, the 1-based slice rows (as fvl_slice_targets
 * numbers them) of the sampled classes in the slice [first, first + n) (first 0-based). Returns how
 * many it wrote, or -1 with a 0-based message naming fn and *fault set: what = FVL_SAMPLE_ORDER
 * (ids[at] is out of order or range) or FVL_SAMPLE_MISSES (the label y0[at] is not sampled), so that
 * a caller can word its own message; 0 for a slice outside 0 <= first, first + n <= classes <= INT32_MAX. */
enum { FVL_SAMPLE_ORDER = 1, FVL_SAMPLE_MISSES = 2 };
typedef struct { int what; int64_t at; } fvl_sample_fault;
int64_t fvl_given_sample(const char *fn, const int32_t *ids, int64_t m, int32_t base, int64_t classes, int64_t first,
                         int64_t n, const int32_t *y0, int64_t B, int32_t *local_rows, fvl_sample_fault *fault);

/* The gathered rows whose target column this rank holds (cols[i] > 0, 1-based; rows: their 1-based
 * rows in the slice), in row order: own[k] = the 1-based row i, oc[k] = cols[i] − 1 and orow[k] =
 * rows[i] − 1 (0-based). None: the one entry own = {1}, oc = orow = {0} (the caller weights it 0).
 * The arrays hold max(1, count) entries; returns the count. */
int64_t fvl_own_targets(const int32_t *cols, const int32_t *rows, int64_t B, int32_t *own, int32_t *oc,
                        int32_t *orow);

/* Each row's target column where this rank holds it: safe0[i] = t[i] − 1 when t[i] > 0, else 0 (any
 * valid column; 0-based), mask[i] = 1 or 0 (t: 1-based columns, 0 = another rank). */
void fvl_target_mask(const int32_t *t, int64_t B, int32_t *safe0, float *mask);
#endif
