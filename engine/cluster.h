/* cluster.h — k-means and the clustering agreement scores NMI / AMI (raw arrays, no Lua).
 *
 * k-means (Lloyd) on n rows of d floats into k clusters:
 *  - seeding: greedy k-means++ (each new centre is the best, by total squared distance, of
 *    2 + floor(ln k) candidates drawn with probability proportional to the squared distance to
 *    the nearest centre chosen so far) or `random` (k distinct rows, uniformly);
 *  - iterations: assign every row to its nearest centre (squared L2 through sgemm in row blocks:
 *    |x|² - 2 x·c + |c|², ties to the lower centre index), then move every centre to the mean
 *    of its rows; stop when no assignment changes, when the centres moved by at most
 *    tol · (mean per-dimension variance of x) in total squared distance (the assignment is then
 *    redone for the final centres), or after max_iter updates;
 *  - empty clusters: after an assignment, each empty cluster (in index order) takes the row
 *    farthest from its own centre among rows whose cluster keeps at least one other row;
 *  - n_init runs, each seeded from fvl_rng_bits(seed, run); the lowest inertia wins (ties: the
 *    earlier run). The result depends only on the input and the seed.
 *  - inertia: the sum of squared distances of the rows to their centres, in double.
 */
#ifndef FVL_CLUSTER_H
#define FVL_CLUSTER_H
#include <stdint.h>

enum { FVL_KMEANS_PLUSPLUS = 0, FVL_KMEANS_RANDOM = 1 };

typedef struct fvl_kmeans_opts {
  int n_init;      /* >= 1 */
  int max_iter;    /* >= 1 */
  double tol;      /* >= 0, relative to the mean variance of x */
  uint64_t seed;
  int init;        /* FVL_KMEANS_PLUSPLUS or FVL_KMEANS_RANDOM */
} fvl_kmeans_opts;

/* x: n×d row-major, finite; 1 <= k <= n. assign[n] gets 0-based cluster ids, centres[k×d] the
 * centres; inertia and n_iter (updates of the winning run) may be NULL. Returns 0 / -1. */
int fvl_kmeans(const float *x, int64_t n, int64_t d, int64_t k, const fvl_kmeans_opts *o,
               int32_t *assign, float *centres, double *inertia, int *n_iter);

/* Agreement of two labellings a[n], b[n] (any int32 ids; n >= 1), natural logarithms:
 *  mi = I(A;B) from the contingency table (clipped at 0), h_a, h_b the entropies,
 *  nmi = mi / ((h_a + h_b) / 2), emi = E[I] over all labellings with the same cluster sizes
 *  (hypergeometric model), ami = (mi - emi) / ((h_a + h_b) / 2 - emi).
 *  As scikit-learn: both labellings a single cluster -> nmi = ami = 1; mi = 0 otherwise -> nmi 0;
 *  the AMI denominator keeps its sign and is at least DBL_EPSILON in size.
 *  want_emi = 0 skips the expectation (emi, ami NaN). */
typedef struct fvl_mi_result {
  int64_t n, ka, kb;           /* rows, distinct ids in a and in b */
  double mi, h_a, h_b, nmi, emi, ami;
} fvl_mi_result;
int fvl_mutual_info(const int32_t *a, const int32_t *b, int64_t n, int want_emi, fvl_mi_result *r);

/* E[I] alone, from the marginals: row sums ra[ka], column sums cb[kb] (each summing to n). */
double fvl_expected_mutual_info(const int64_t *ra, int64_t ka, const int64_t *cb, int64_t kb,
                                int64_t n);
#endif
