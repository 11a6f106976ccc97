/* data.h — datasets: IDX files (Fashion-MNIST), the synthetic_faces generator, and the batch
 * gather/augment kernel used by the loader.
 *
 * Raw-array functions work on plain float / int32 buffers and never allocate tensors; the
 * tensor-level wrappers at the end (data_tensor.c) build fvl_tensor results on top of them.
 * All functions return 0 (or a pointer) on success and -1 (or NULL) with a message in
 * fvl_errmsg() that names the function, the argument, what was expected and what came. */
#ifndef FVL_DATA_H
#define FVL_DATA_H
#include <stdint.h>
#include <stddef.h>
#include "core.h"
#include "tensor.h"

/* ================================================================ IDX files
 * Format (yann.lecun.com/exdb/mnist): bytes 0,0,<type>,<ndim>, then ndim big-endian uint32
 * sizes, then the elements in big-endian C order. Types: 0x08 ubyte, 0x09 sbyte, 0x0B int16,
 * 0x0C int32, 0x0D float32, 0x0E float64. Files may be gzipped or plain (zlib reads both). */
#define FVL_IDX_MAXDIM 4
typedef struct fvl_idx_info {
  int type;                        /* IDX type code, e.g. 0x08 */
  int ndim;                        /* 1..FVL_IDX_MAXDIM */
  int64_t dims[FVL_IDX_MAXDIM];
  int64_t count;                   /* product of dims */
} fvl_idx_info;
typedef struct fvl_idx_file fvl_idx_file;

/* opens `path` and validates the header; fails with "cannot open" (errno text) when the file
 * is missing, "is not an IDX file" for a foreign header */
fvl_idx_file *fvl_idx_open(const char *path, fvl_idx_info *info);
/* read every element, converted: out[i] = v * scale + shift (f32) or v + shift (i32).
 * Fails on truncated or corrupt data and on trailing bytes after the last element. */
int fvl_idx_read_f32(fvl_idx_file *f, float *out, float scale, float shift);
int fvl_idx_read_i32(fvl_idx_file *f, int32_t *out, int32_t shift);
void fvl_idx_close(fvl_idx_file *f);                   /* NULL-safe */
const char *fvl_idx_type_name(int type);               /* "ubyte", ..., "unknown" */
/* 1 when the message of the last failure was "cannot open" (missing file / no permission) */
int fvl_idx_last_was_open_error(void);

/* ================================================================ synthetic faces
 * The generative model is documented in docs/data.md. In short: identity codes c_k uniform on
 * the unit sphere S^{dim-1}; a sample of identity k has latent code u = normalize(c_k + spread*e)
 * (e ~ N(0, I/dim)) and nuisance factors a ~ N(0, I_factors); it is rendered through a fixed
 * random 2-layer MLP x = W2 tanh(W1u u + nuisance * W1a a + b1), then an illumination-like gain
 * and offset, additive noise, and (maps) a pose-like horizontal shift. */
typedef struct fvl_synth_opts {
  int64_t identities;        /* train identities (>= 2) */
  int64_t per_identity;      /* mean samples per train identity (>= 2) */
  int64_t test_identities;   /* disjoint unseen identities (>= 0; 0 = no test split) */
  int64_t test_per_identity; /* samples per test identity (>= 2 when test_identities > 0) */
  int dim;                   /* identity latent dimension (>= 2) */
  int factors;               /* nuisance factors shared by all identities (>= 0) */
  int hidden;                /* hidden width of the rendering MLP (>= 1) */
  int out_dim;               /* vector length; for maps h*w */
  int map_h, map_w;          /* 0,0 for vectors; > 0 for 1×h×w maps */
  float spread;              /* identity jitter on the sphere (>= 0) */
  float nuisance;            /* strength of the nuisance factors (>= 0) */
  float illumination;        /* strength of the per-sample gain/offset (>= 0) */
  float noise;               /* std of the additive output noise (>= 0) */
  float long_tail;           /* Zipf exponent of train samples per identity (0 = balanced) */
  float label_noise;         /* fraction of train labels replaced by another identity, [0,1) */
  uint64_t seed;
} fvl_synth_opts;

/* fills defaults: 1000 identities × 20, 200 test identities × 20, dim 32, 8 factors, hidden
 * 128, vectors of 128, spread 0.6, nuisance 1.5, illumination 0.2, noise 0.3, no long tail,
 * no label noise, seed 1 */
void fvl_synth_defaults(fvl_synth_opts *o);
/* validates o; writes per-identity train counts (o->identities entries, may be NULL) and the
 * train/test sample totals */
int fvl_synth_sizes(const fvl_synth_opts *o, int64_t *counts, int64_t *ntrain, int64_t *ntest);
/* generates into caller buffers: xtr ntrain×out_dim, ytr/ytrue ntrain labels (noisy / true),
 * xte ntest×out_dim, yte ntest. Labels are label_base + 0-based identity (train 0..K-1, test
 * 0..T-1: test identities have their own numbering). Samples are grouped by identity.
 * ytrue and the test buffers may be NULL. Deterministic in the seed, whatever the threads. */
int fvl_synth_generate(const fvl_synth_opts *o, int32_t label_base, float *xtr, int32_t *ytr,
                       int32_t *ytrue, float *xte, int32_t *yte);

/* ================================================================ batches
 * out[b] = src row idx[b] (rowlen elements each). idx is 0-based, checked against nrows. */
int fvl_data_gather_f32(const float *src, int64_t nrows, int64_t rowlen, const int32_t *idx,
                        int64_t B, float *out);
int fvl_data_gather_i32(const int32_t *src, int64_t nrows, int64_t rowlen, const int32_t *idx,
                        int64_t B, int32_t add, int32_t *out);
/* images src N×C×H×W: out[b] = crop/flip of image idx[b]. The image is padded by `pad` zeros
 * on each side and an H×W window at offset (pad+dy[b], pad+dx[b]) is taken, dy/dx in
 * [-pad, pad]; then mirrored left-right when flip[b]. dy/dx/flip may be NULL (no shift /
 * no flip). */
int fvl_data_gather_images(const float *src, int64_t n, int C, int H, int W, const int32_t *idx,
                           int64_t B, const uint8_t *flip, const int32_t *dy, const int32_t *dx,
                           int pad, float *out);

/* ================================================================ tensor level
 * (data_tensor.c) new references, NULL + message on failure */
/* IDX file → tensor of the file's shape: f32 (v*scale+shift) or i32 (v+shift) */
fvl_tensor *fvl_idx_load(const char *path, fvl_dtype dt, double scale, double shift);
/* synthetic_faces into new tensors: x N×out_dim (vectors) or N×1×h×w (maps), labels int32
 * (label_base + identity), ytrue the labels before label noise. The test tensors have 0 rows
 * when test_identities = 0. */
int fvl_synth_faces(const fvl_synth_opts *o, int32_t label_base, fvl_tensor **xtr,
                    fvl_tensor **ytr, fvl_tensor **ytrue, fvl_tensor **xte, fvl_tensor **yte);
/* synthetic_faces as RGB face images (engine/data/synthetic_rgb.c): x N×3×size×size in 0..255,
 * identities drawn as facial parameters, images through pose/expression/illumination/noise
 * nuisances (o->nuisance, o->illumination, o->noise scale them); dim/factors/hidden/out_dim unused.
 * The raw form fills caller buffers (xte/yte may be NULL). */
int fvl_synth_faces_rgb(const fvl_synth_opts *o, int size, int32_t label_base, float *xtr, int32_t *ytr,
                        int32_t *ytrue, float *xte, int32_t *yte);
int fvl_synth_faces_rgb_tensors(const fvl_synth_opts *o, int size, int32_t label_base, fvl_tensor **xtr,
                                fvl_tensor **ytr, fvl_tensor **ytrue, fvl_tensor **xte, fvl_tensor **yte);
/* loader: the shuffling permutation of epoch `epoch` (0-based int32, n values), a pure
 * function of (seed, epoch), independent of the global generator */
fvl_tensor *fvl_loader_perm(int64_t n, uint64_t seed, int64_t epoch);
/* loader: batch rows start..start+B-1 of the epoch order (perm, or 0..n-1 when NULL).
 * x: N×... (f32 or i32), y: N int32 or NULL. flip / pad (images N×C×H×W only): random
 * horizontal flip and random crop after zero padding, drawn from (seed, epoch, position).
 * Outputs: xb B×..., yb (NULL when y is) and index = the 1-based row numbers (for Lua). */
int fvl_loader_batch(fvl_tensor *x, fvl_tensor *y, fvl_tensor *perm, int64_t start, int64_t B,
                     int flip, int pad, uint64_t seed, int64_t epoch, fvl_tensor **xb,
                     fvl_tensor **yb, fvl_tensor **index);
#endif
