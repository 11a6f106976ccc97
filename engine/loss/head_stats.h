/* head_stats.h — per-batch statistics that the heads' state updates and warnings read (B values,
 * computed in double in a fixed order, so a step gives the same bits on any thread count). */
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
#endif
