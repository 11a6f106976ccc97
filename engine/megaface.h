/* megaface.h — the MegaFace challenge's feature files and its identification protocol with
 * distractors (raw arrays, no Lua).
 *
 * Feature file (the devkit's matrix file for one image): a 16-byte header of four little-endian
 * int32 — rows = the feature size D, cols = 1, the element size 4, the type 5 (OpenCV's CV_32F)
 * — then D float32. The reader is strict: exact header values, D >= 1, a file of exactly
 * 16 + 4·D bytes, finite values.
 *
 * Identification with distractors (MegaFace challenge 1, "rank-1 at 10⁶ distractors"): for
 * every probe image p and every other image g of the same identity, the gallery is g plus all
 * the distractors; rank(p, g) = 1 + #{distractors d : s(p, d) > s(p, g)} (ties count for the
 * true match), and rank-k = the fraction of (p, g) pairs with rank <= k. s is the cosine
 * similarity (features are L2-normalised; a zero row scores 0). Identities with one probe image
 * give no pair. The other images of p's identity are not in that gallery.
 * Verification: genuine pairs = unordered probe pairs of one identity, impostor pairs = every
 * (probe, distractor); TAR@FAR=f = max TAR(τ) with FAR(τ) <= f over thresholds τ ("same" when
 * s >= τ), reported only when #impostors >= 1/f. Only the top floor(f·#impostors) + 1 impostor
 * scores are kept, so no probes × distractors matrix exists at any time: scores come in sgemm
 * blocks of probes × distractors.
 */
#ifndef FVL_MEGAFACE_H
#define FVL_MEGAFACE_H
#include <stdint.h>

/* write v[d] as a feature file, atomically. Returns 0 / -1. */
int fvl_megaface_write(const char *path, const float *v, int64_t d);
/* sync = 0: temporary + rename without fsyncs (fvl_write_atomic_nosync), for the bulk export
 * that calls fvl_sync_fs once at the end */
int fvl_megaface_write_ex(const char *path, const float *v, int64_t d, int sync);
/* read a feature file: *out = malloc'ed float[*d] (free it). Returns 0 / -1 naming the file. */
int fvl_megaface_read(const char *path, float **out, int64_t *d);

#define FVL_MEGAFACE_MAXK 16
typedef struct fvl_megaface_opts {
  int nk;                            /* ranks asked for (1..FVL_MEGAFACE_MAXK) */
  int ks[FVL_MEGAFACE_MAXK];         /* each 1..1000 */
  double far;                        /* TAR@FAR target in (0, 1); 0: no verification */
  int64_t block;                     /* distractor rows per sgemm block (0: automatic) */
} fvl_megaface_opts;
typedef struct fvl_megaface_result {
  int64_t n_pairs, n_probes_used, n_genuine, n_impostor;
  double rank[FVL_MEGAFACE_MAXK];    /* rank-ks[i] identification rate */
  double tar, threshold;             /* NaN when far = 0 or #impostors < 1/far */
} fvl_megaface_result;
/* probes P×D with 0-based labels pl[P]; distractors N×D (N >= 1). */
int fvl_megaface_eval(const float *probes, const int32_t *pl, int64_t P, const float *distractors,
                      int64_t N, int64_t D, const fvl_megaface_opts *o, fvl_megaface_result *r);
#endif
