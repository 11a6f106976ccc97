/* facedata.h — face-recognition data formats: MXNet RecordIO (.rec/.idx, insightface layout),
 * JPEG/PNG decoding, image folders, the pickle subset of insightface .bin verification packs,
 * .npy of any default NumPy dtype and .npz archives, and the threaded image loader.
 *
 * Every function returns 0 / a pointer on success and -1 / NULL with a message in fvl_errmsg()
 * naming the function, the file, the record and what was wrong. Nothing here exits or aborts on
 * bad input. Byte formats are described in docs/data.md. */
#ifndef FVL_FACEDATA_H
#define FVL_FACEDATA_H
#include <stdint.h>
#include <stddef.h>
#include "core.h"
#include "tensor.h"

/* ================================================================ RecordIO (recordio.c)
 * A frame: uint32 magic 0xCED7230A, uint32 lrec = cflag<<29 | length, payload, zero padding to
 * 4 bytes. cflag 0 = a whole record; 1/2/3 = first/middle/last part of a record whose payload
 * held the magic at a 4-aligned offset (the magic is re-inserted between parts). */
#define FVL_REC_MAGIC 0xCED7230Au
typedef struct fvl_rec fvl_rec;

/* opens `path`; idx_path names a `key\toffset` index (NULL: scan the file once, keys are the
 * record numbers 0..n-1). The whole frame structure is verified when scanning; with an index
 * every offset must lie inside the file. A truncated last frame is an error. */
fvl_rec *fvl_rec_open(const char *path, const char *idx_path);
void fvl_rec_close(fvl_rec *r);                         /* NULL-safe */
int64_t fvl_rec_count(const fvl_rec *r);
int64_t fvl_rec_key(const fvl_rec *r, int64_t i);       /* key of the i-th record (0-based) */
int64_t fvl_rec_find(const fvl_rec *r, int64_t key);    /* position of key, -1 if absent */
const char *fvl_rec_path(const fvl_rec *r);
/* reads record i (0-based position) into *buf (malloc'd, caller frees), split parts joined.
 * Thread-safe (pread). */
int fvl_rec_read(const fvl_rec *r, int64_t i, uint8_t **buf, size_t *len);

/* the first up to `cap` bytes of record i (cheap: one read unless the record is split early);
 * returns the bytes copied (<= cap) or -1 */
int64_t fvl_rec_read_head(const fvl_rec *r, int64_t i, uint8_t *buf, size_t cap);

/* IRHeader: uint32 flag, float32 label, uint64 id, uint64 id2; flag > 0: flag float32 labels
 * follow (the scalar label is then 0). */
typedef struct fvl_irheader {
  uint32_t flag;
  float label;
  uint64_t id, id2;
  const float *labels;       /* flag values (unaligned-safe copy inside the record), or NULL */
  const uint8_t *payload;    /* bytes after the header (the image) */
  size_t payload_len;
} fvl_irheader;
/* parses a record; `labels` points into a private copy only when aligned, so read it with
 * fvl_irheader_label(h, k). Errors name `what` (e.g. "file.rec record 12"). */
int fvl_irheader_parse(const uint8_t *rec, size_t len, fvl_irheader *h, const char *what);
float fvl_irheader_label(const fvl_irheader *h, uint32_t k);

typedef struct fvl_rec_writer fvl_rec_writer;
/* writes `path` and `path minus .rec plus .idx` (or idx_path) atomically, on the one atomic-file
 * mechanism (fvl_atomic_open/commit/abort, engine/sys.h): open creates both *.tmp.<pid> files and
 * every put streams into them; only fvl_rec_writer_close(w, 1) commits: it removes the old index,
 * commits the .rec (fsync, rename, directory fsync), then the new index, so a crash leaves at
 * worst a whole .rec without an index (read by scanning), never a stale index. close(w, 0) or an
 * earlier failed put aborts both temporaries: a half-written .rec never appears. */
fvl_rec_writer *fvl_rec_writer_open(const char *path, const char *idx_path);
int fvl_rec_writer_put(fvl_rec_writer *w, uint64_t key, const uint8_t *data, size_t len);
/* header + labels + image bytes as one record */
int fvl_rec_writer_put_image(fvl_rec_writer *w, uint64_t key, uint32_t flag, float label,
                             const float *labels, uint64_t id, uint64_t id2, const uint8_t *img,
                             size_t img_len);
int fvl_rec_writer_close(fvl_rec_writer *w, int commit); /* NULL-safe; returns -1 on failure */

/* ================================================================ images (image.c)
 * decode JPEG (libjpeg-turbo) or PNG (libpng), recognised by their magic bytes, into 8-bit
 * interleaved pixels: channels 3 = RGB (bgr: BGR), 1 = grey. *out is malloc'd (h*w*channels). */
int fvl_image_decode(const uint8_t *data, size_t len, int channels, int bgr, uint8_t **out,
                     int *h, int *w, const char *what);
/* size only (cheap header parse) */
int fvl_image_info(const uint8_t *data, size_t len, int *h, int *w, const char *what);
/* encode h×w×channels (1 or 3, RGB) pixels: JPEG at `quality` or PNG (quality < 0).
 * *out is malloc'd. */
int fvl_image_encode(const uint8_t *pix, int h, int w, int channels, int quality, uint8_t **out,
                     size_t *len);
/* whole file into memory (malloc'd) */
int fvl_read_file(const char *path, uint8_t **buf, size_t *len, const char *fn);

/* ================================================================ folders (folder.c)
 * sorted entries of a directory: dirs = 1 keeps sub-directories only, 0 keeps regular files
 * whose extension is .jpg/.jpeg/.png (any case). Hidden entries are skipped. *names is an
 * array of malloc'd strings; free with fvl_free_names. */
int fvl_list_dir(const char *dir, int dirs, char ***names, int64_t *n);
void fvl_free_names(char **names, int64_t n);

/* ================================================================ pickle (pickle.c)
 * insightface .bin packs: a pickled 2-tuple (bins, issame). bins = 2N encoded images
 * (py2 byte strings, py3 bytes, or 1-D uint8 numpy arrays); issame = N bools (a list or a
 * numpy bool array). The parser is a strict subset of the pickle machine. */
typedef struct fvl_binpack {
  int64_t n;                 /* images (2 × pairs) */
  const uint8_t **img;       /* n pointers into `data` */
  size_t *img_len;
  int64_t npairs;
  uint8_t *issame;           /* npairs bytes 0/1 */
  uint8_t *data;             /* the file */
  size_t data_len;
} fvl_binpack;
fvl_binpack *fvl_binpack_load(const char *path);
fvl_binpack *fvl_binpack_parse(uint8_t *data, size_t len, const char *what); /* takes data */
void fvl_binpack_free(fvl_binpack *p);

/* ================================================================ .npy / .npz (npyz.c)
 * .npy of dtypes |b1 |u1 |i1 <i2 <u2 <i4 <u4 <i8 <u8 <f2 <f4 <f8 (C or Fortran order) →
 * float32 (floats) or int32 (integers, bools; error if a value does not fit in int32). */
fvl_tensor *fvl_npy_parse(const uint8_t *buf, size_t len, const char *what);
fvl_tensor *fvl_npy_read(const char *path);
/* .npz: member names (without .npy) and tensors, in archive order; deflate or stored */
int fvl_npz_read(const char *path, char ***names, fvl_tensor ***ts, int64_t *n);
/* .npz write (stored members, CRC-checked by numpy), atomically */
int fvl_npz_write(const char *path, int64_t n, const char *const *names, fvl_tensor *const *ts);
/* .npy bytes of t in memory (header v1, <f4 or <i4, C order); *out malloc'd */
int fvl_npy_bytes(const fvl_tensor *t, uint8_t **out, size_t *len);

/* ================================================================ image sets (loader.c)
 * n samples, each a record of a RecordIO file or an image file, with 0-based labels. */
typedef struct fvl_imgset {
  fvl_rec *rec;              /* records at positions pos[i] ... */
  int64_t *pos;
  char **files;              /* ... or image files (full paths) */
  int64_t n;
  int32_t *labels;           /* 0-based, n values */
  int64_t classes;           /* labels are in 0..classes-1 */
  int H, W;                  /* from the `property` file (0 when unknown) */
  int64_t header_range[2];   /* insightface record 0: identity records [first, end), or -1 */
  char **class_names;        /* folders: the identity directory names (classes of them) */
} fvl_imgset;
/* an insightface / im2rec .rec: record 0 with flag > 0 is the insightface header (images are
 * records 1..label[0]-1); otherwise every record is an image. The class of an image is its
 * scalar label or its first array label (a whole number >= 0). `property` (may be NULL or a
 * missing file when optional = 1) holds "num_classes,h,w". idx_path NULL: scan. */
fvl_imgset *fvl_imgset_rec(const char *path, const char *idx_path, const char *property);
/* a folder of identity folders: sorted directory names → classes 0..C-1, sorted images */
fvl_imgset *fvl_imgset_folder(const char *dir);
/* a list of files with labels (copied) */
fvl_imgset *fvl_imgset_files(const char *const *files, const int32_t *labels, int64_t n);
void fvl_imgset_free(fvl_imgset *s);
/* raw encoded bytes of sample i (the payload after the IRHeader for records); *buf is
 * malloc'd and *img points inside it */
int fvl_imgset_bytes(const fvl_imgset *s, int64_t i, uint8_t **buf, const uint8_t **img,
                     size_t *len, char *what, size_t what_len);

typedef struct fvl_img_opts {
  int C, H, W;               /* output image size (decoded images must have H×W pixels ...) */
  int resize;                /* ... or, when set, are resized to H×W (bilinear, data/warp.h) */
  int bgr;                   /* channel order BGR instead of RGB */
  int flip;                  /* random horizontal flip */
  int pad;                   /* random crop after zero padding by pad pixels */
  float mean, std;           /* out = (pixel - mean) / std */
  int skip_bad;              /* 0: a bad sample fails the batch; 1: it is dropped and counted */
  uint64_t seed;
} fvl_img_opts;

/* decoded pixels (h×w×C) of another size than o's H×W: with o->resize, *pix is replaced by its
 * bilinear resize to H×W; without, an error naming `what` and both sizes */
int fvl_fit_pixels(uint8_t **pix, int h, int w, const fvl_img_opts *o, const char *what);

/* decodes + augments samples idx[0..B-1] into out (B×C×H×W float32) with draws from
 * (seed, epoch, position pos0+b); labels into y and sample numbers into kept (may be NULL).
 * Returns the rows written: B, or fewer when skip_bad dropped bad samples (kept rows are packed
 * to the front; *bad is increased by the number dropped); -1 on error (first bad sample when
 * skip_bad = 0: the message names the file and record). */
int64_t fvl_img_batch(const fvl_imgset *src, const fvl_img_opts *o, const int64_t *idx,
                      int64_t B, int64_t epoch, int64_t pos0, float *out, int32_t *y,
                      int32_t *kept, int64_t *bad);

typedef struct fvl_img_loader fvl_img_loader;
/* a prefetching loader over one epoch order: `order` (n 0-based sample numbers, copied),
 * batches of B (last one short unless drop_last), starting at batch `first` (0-based; the
 * batches before it are skipped without decoding, each batch's augmentation draws unchanged),
 * `workers` threads producing up to `depth` batches ahead. The source must outlive the loader. */
fvl_img_loader *fvl_img_loader_start(const fvl_imgset *src, const fvl_img_opts *o,
                                     const int64_t *order, int64_t n, int64_t B, int drop_last,
                                     int64_t epoch, int64_t first, int workers, int depth);
/* next batch: returns 1 and new tensors x (b×C×H×W), y (b int32 0-based, NULL without labels),
 * index (b int32, 0-based sample numbers); 0 at the end; -1 on error (the loader stays usable
 * only for _stop) */
int fvl_img_loader_next(fvl_img_loader *l, fvl_tensor **x, fvl_tensor **y, fvl_tensor **index);
int64_t fvl_img_loader_bad(const fvl_img_loader *l);   /* samples skipped so far */
void fvl_img_loader_stop(fvl_img_loader *l);           /* joins the threads; NULL-safe */
#endif
