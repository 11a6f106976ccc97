/* loader.c — image sets (insightface .rec, identity folders, file lists) and the threaded
 * decode + augment loader with a prefetch queue. Augmentation draws depend on (seed, epoch,
 * position in the epoch) only, so batches are the same whatever the number of workers. */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "facedata.h"
#include "rng.h"
#include "warp.h"

/* ---------------------------------------------------------------- image sets */
void fvl_imgset_free(fvl_imgset *s) {
  if (!s) return;
  fvl_rec_close(s->rec);
  free(s->pos);
  fvl_free_names(s->files, s->files ? s->n : 0);
  fvl_free_names(s->class_names, s->class_names ? s->classes : 0);
  free(s->labels);
  free(s);
}

static fvl_imgset *imgset_new(int64_t n) {
  fvl_imgset *s = calloc(1, sizeof *s);
  if (!s) { fvl_err("images: out of memory"); return NULL; }
  s->header_range[0] = s->header_range[1] = -1;
  s->labels = calloc((size_t)(n ? n : 1), sizeof *s->labels);
  if (!s->labels) { free(s); fvl_err("images: out of memory"); return NULL; }
  s->n = n;
  return s;
}

static int read_property(const char *path, int64_t *classes, int *h, int *w) {
  uint8_t *b;
  size_t n;
  if (fvl_read_file(path, &b, &n, "images")) return -1;
  char txt[128];
  size_t k = n < sizeof txt - 1 ? n : sizeof txt - 1;
  memcpy(txt, b, k);
  txt[k] = 0;
  free(b);
  long long c;
  int hh, ww, used = 0;
  if (n >= sizeof txt - 1 || sscanf(txt, "%lld,%d,%d%n", &c, &hh, &ww, &used) != 3 || c < 1 ||
      c > INT32_MAX || hh < 1 || ww < 1 || hh > 65535 || ww > 65535 ||
      strspn(txt + used, " \t\r\n") != strlen(txt + used))
    return fvl_err("images: property file '%s' holds '%.40s', expected 'num_classes,h,w' with "
                   "positive integers", path, txt);
  *classes = c;
  *h = hh;
  *w = ww;
  return 0;
}

static int label_of(const uint8_t *hd, int64_t got, const char *path, int64_t key, int32_t *out) {
  char what[512];
  snprintf(what, sizeof what, "images: %s record %lld", path, (long long)key);
  if (got < 24) return fvl_err("%s: record of %lld bytes is shorter than the 24-byte IRHeader", what, (long long)got);
  uint32_t flag = (uint32_t)hd[0] | (uint32_t)hd[1] << 8 | (uint32_t)hd[2] << 16 | (uint32_t)hd[3] << 24;
  float v;
  if (flag > 0) {
    if (got < 28) return fvl_err("%s: IRHeader flag = %u but no label array follows", what, flag);
    memcpy(&v, hd + 24, 4);
  } else {
    memcpy(&v, hd + 4, 4);
  }
  if (!(v >= 0) || v != floorf(v) || v > 2147483647.f)
    return fvl_err("%s: label %g is not a class id (a whole number >= 0)", what, (double)v);
  *out = (int32_t)v;
  return 0;
}

/* record 0's insightface header, when there is one: images are records first..end-1's
 * predecessors (*first = the first identity record, *end its end); -1, -1 without a header */
static int insightface_range(fvl_rec *r, const char *path, int64_t *first, int64_t *end) {
  *first = *end = -1;
  int64_t p0 = fvl_rec_find(r, 0);
  if (p0 < 0) return 0;
  uint8_t hd[32];
  int64_t got = fvl_rec_read_head(r, p0, hd, sizeof hd);
  if (got < 0) return -1;
  if (got < 24)
    return fvl_err("images: %s record 0: %lld bytes, shorter than the 24-byte IRHeader", path, (long long)got);
  uint32_t flag = (uint32_t)hd[0] | (uint32_t)hd[1] << 8 | (uint32_t)hd[2] << 16 | (uint32_t)hd[3] << 24;
  if (flag == 0) return 0;
  float a, b;
  if (got < 32 || flag < 2)
    return fvl_err("images: %s record 0: insightface header with flag = %u (expected 2 labels: "
                   "first identity record, end)", path, flag);
  memcpy(&a, hd + 24, 4);
  memcpy(&b, hd + 28, 4);
  if (!(a >= 1) || a != floorf(a) || !(b >= a) || b != floorf(b) || !(b <= 1e12f))
    return fvl_err("images: %s record 0: insightface header labels [%g, %g] are not a range of "
                   "record numbers", path, (double)a, (double)b);
  if ((int64_t)a - 1 > fvl_rec_count(r))
    return fvl_err("images: %s record 0: insightface header says images are records 1..%lld but the "
                   "file holds %lld records", path, (long long)a - 1, (long long)fvl_rec_count(r));
  *first = (int64_t)a;
  *end = (int64_t)b;
  return 0;
}

/* the position and label of each of the n images (records 1..n with a header, else every record) */
static int read_labels(fvl_imgset *s, fvl_rec *r, const char *path, int64_t n, int64_t first, int64_t *maxl) {
  uint8_t hd[32];
  *maxl = -1;
  for (int64_t i = 0; i < n; i++) {
    int64_t key = first >= 0 ? i + 1 : fvl_rec_key(r, i);
    int64_t p = first >= 0 ? fvl_rec_find(r, key) : i;
    if (p < 0)
      return fvl_err("images: %s: record %lld (an image by the insightface header, records 1..%lld) is "
                     "not in the index", path, (long long)key, (long long)first - 1);
    s->pos[i] = p;
    int64_t got = fvl_rec_read_head(r, p, hd, 28);
    if (got < 0 || label_of(hd, got, path, key, &s->labels[i])) return -1;
    if (s->labels[i] > *maxl) *maxl = s->labels[i];
    if ((i & 4095) == 0 && fvl_check_abort("images")) return -1;
  }
  return 0;
}

fvl_imgset *fvl_imgset_rec(const char *path, const char *idx_path, const char *property) {
  fvl_rec *r = fvl_rec_open(path, idx_path);
  if (!r) return NULL;
  int64_t classes = 0, first = -1, end = -1;
  int H = 0, W = 0;
  if ((property && read_property(property, &classes, &H, &W)) || insightface_range(r, path, &first, &end)) {
    fvl_rec_close(r);
    return NULL;
  }
  int64_t n = first >= 0 ? first - 1 : fvl_rec_count(r);
  fvl_imgset *s = imgset_new(n);
  if (!s) { fvl_rec_close(r); return NULL; }
  s->rec = r;
  s->H = H;
  s->W = W;
  s->header_range[0] = first;
  s->header_range[1] = end;
  s->pos = malloc((size_t)(n ? n : 1) * sizeof *s->pos);
  if (!s->pos) { fvl_err("images: out of memory"); goto fail; }
  int64_t maxl = -1;
  if (read_labels(s, r, path, n, first, &maxl)) goto fail;
  if (property) {
    for (int64_t i = 0; i < n; i++)
      if (s->labels[i] >= classes) {
        fvl_err("images: %s record %lld: label %d but the property file says %lld classes",
                path, (long long)fvl_rec_key(r, s->pos[i]), s->labels[i], (long long)classes);
        goto fail;
      }
    s->classes = classes;
  } else {
    s->classes = maxl + 1;
  }
  return s;
fail:
  fvl_imgset_free(s);
  return NULL;
}

static char *join(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  char *p = malloc(la + lb + 2);
  if (!p) return NULL;
  memcpy(p, a, la);
  p[la] = '/';
  memcpy(p + la + 1, b, lb + 1);
  return p;
}

fvl_imgset *fvl_imgset_folder(const char *dir) {
  char **ids = NULL;
  int64_t nid = 0;
  if (fvl_list_dir(dir, 1, &ids, &nid)) return NULL;
  if (nid == 0) {
    fvl_free_names(ids, 0);
    fvl_err("images: folder '%s' has no identity sub-directories (expected one directory per "
            "identity holding .jpg/.png images)", dir);
    return NULL;
  }
  char **files = NULL;
  int32_t *labels = NULL;
  int64_t n = 0, cap = 0;
  fvl_imgset *s = NULL;
  for (int64_t c = 0; c < nid; c++) {
    char *sub = join(dir, ids[c]);
    char **names = NULL;
    int64_t k = 0;
    if (!sub || fvl_list_dir(sub, 0, &names, &k)) { free(sub); goto fail; }
    if (n + k > cap) {
      cap = (n + k) * 2;
      char **f = realloc(files, (size_t)cap * sizeof *f);
      int32_t *l = f ? realloc(labels, (size_t)cap * sizeof *l) : NULL;
      if (f) files = f;
      if (l) labels = l;
      if (!f || !l) { free(sub); fvl_free_names(names, k); fvl_err("images: out of memory"); goto fail; }
    }
    for (int64_t j = 0; j < k; j++) {
      files[n] = join(sub, names[j]);
      if (!files[n]) { free(sub); fvl_free_names(names, k); fvl_err("images: out of memory"); goto fail; }
      labels[n++] = (int32_t)c;
    }
    free(sub);
    fvl_free_names(names, k);
  }
  if (n == 0) {
    fvl_err("images: folder '%s' has %lld identity directories but no .jpg/.jpeg/.png images", dir,
            (long long)nid);
    goto fail;
  }
  s = calloc(1, sizeof *s);
  if (!s) { fvl_err("images: out of memory"); goto fail; }
  s->header_range[0] = s->header_range[1] = -1;
  s->files = files;
  s->labels = labels;
  s->n = n;
  s->classes = nid;
  s->class_names = ids;
  return s;
fail:
  fvl_free_names(files, n);
  free(labels);
  fvl_free_names(ids, nid);
  return NULL;
}

fvl_imgset *fvl_imgset_files(const char *const *files, const int32_t *labels, int64_t n) {
  fvl_imgset *s = imgset_new(n);
  if (!s) return NULL;
  s->files = calloc((size_t)(n ? n : 1), sizeof *s->files);
  if (!s->files) { fvl_imgset_free(s); fvl_err("images: out of memory"); return NULL; }
  int64_t maxl = -1;
  for (int64_t i = 0; i < n; i++) {
    s->files[i] = strdup(files[i]);
    if (!s->files[i]) { fvl_imgset_free(s); fvl_err("images: out of memory"); return NULL; }
    s->labels[i] = labels ? labels[i] : 0;
    if (s->labels[i] > maxl) maxl = s->labels[i];
  }
  s->classes = maxl + 1;
  return s;
}

int fvl_imgset_bytes(const fvl_imgset *s, int64_t i, uint8_t **buf, const uint8_t **img,
                     size_t *len, char *what, size_t what_len) {
  *buf = NULL;
  if (i < 0 || i >= s->n) {
    snprintf(what, what_len, "images");
    return fvl_err("images: sample %lld is outside 0..%lld (0-based)", (long long)i, (long long)s->n - 1);
  }
  if (s->files) {
    snprintf(what, what_len, "images: '%s' (sample %lld)", s->files[i], (long long)i + 1);
    if (fvl_read_file(s->files[i], buf, len, "images")) return -1;
    *img = *buf;
    return 0;
  }
  snprintf(what, what_len, "images: %s record %lld", fvl_rec_path(s->rec),
           (long long)fvl_rec_key(s->rec, s->pos[i]));
  size_t n;
  if (fvl_rec_read(s->rec, s->pos[i], buf, &n)) {
    return fvl_err("%s", fvl_errmsg());
  }
  fvl_irheader h;
  if (fvl_irheader_parse(*buf, n, &h, what)) { free(*buf); *buf = NULL; return -1; }
  *img = h.payload;
  *len = h.payload_len;
  return 0;
}

/* ---------------------------------------------------------------- decode + augment */
int fvl_fit_pixels(uint8_t **pix, int h, int w, const fvl_img_opts *o, const char *what) {
  if (!o->resize)
    return fvl_err("%s: image is %dx%d pixels, expected %dx%d (all images of a data set must have the "
                   "same size; align and resize them first, or ask for a size to resize to)", what, w, h,
                   o->W, o->H);
  uint8_t *r = malloc((size_t)o->H * o->W * o->C);
  if (!r) return fvl_err("%s: out of memory resizing to %dx%d", what, o->W, o->H);
  if (fvl_resize_u8(*pix, o->C, h, w, r, o->H, o->W)) { free(r); return -1; }
  free(*pix);
  *pix = r;
  return 0;
}

static uint64_t aug_seed(uint64_t seed, int64_t epoch) {
  return fvl_rng_bits(seed ^ 0x1a6e5ULL, (uint64_t)epoch) ^ 0x5eed0fa11ULL;
}

/* one sample → out (C×H×W); 0 ok, -1 bad (message set) */
static int one(const fvl_imgset *s, const fvl_img_opts *o, int64_t i, uint64_t r, float *out) {
  char what[600];
  uint8_t *buf = NULL, *pix = NULL;
  const uint8_t *img;
  size_t len;
  int h, w, rc = -1;
  if (fvl_imgset_bytes(s, i, &buf, &img, &len, what, sizeof what)) return -1;
  if (fvl_image_decode(img, len, o->C, o->bgr, &pix, &h, &w, what)) goto done;
  if ((h != o->H || w != o->W) && fvl_fit_pixels(&pix, h, w, o, what)) goto done;
  int C = o->C, H = o->H, W = o->W, pad = o->pad;
  int flip = o->flip ? (int)(r & 1) : 0, dy = 0, dx = 0;
  if (pad) {
    uint64_t span = 2 * (uint64_t)pad + 1;
    dy = (int)(((r >> 8) & 0xffffff) * span >> 24) - pad;
    dx = (int)(((r >> 32) & 0xffffff) * span >> 24) - pad;
  }
  float sd = o->std, fill = (0.f - o->mean) / sd;
  for (int c = 0; c < C; c++) {
    float *oc = out + (size_t)c * H * W;
    for (int y = 0; y < H; y++) {
      int sy = y + dy;
      float *orow = oc + (size_t)y * W;
      if (sy < 0 || sy >= H) { for (int x = 0; x < W; x++) orow[x] = fill; continue; }
      const uint8_t *prow = pix + (size_t)sy * W * C + c;
      for (int x = 0; x < W; x++) {
        int sx = (flip ? W - 1 - x : x) + dx;
        orow[x] = sx < 0 || sx >= W ? fill : ((float)prow[(size_t)sx * C] - o->mean) / sd;
      }
    }
  }
  rc = 0;
done:
  free(buf);
  free(pix);
  return rc;
}

int64_t fvl_img_batch(const fvl_imgset *s, const fvl_img_opts *o, const int64_t *idx, int64_t B,
                      int64_t epoch, int64_t pos0, float *out, int32_t *y, int32_t *kept,
                      int64_t *bad) {
  uint64_t es = aug_seed(o->seed, epoch);
  size_t plane = (size_t)o->C * o->H * o->W;
  int64_t k = 0;
  for (int64_t b = 0; b < B; b++) {
    if (fvl_check_abort("images")) return -1;
    uint64_t r = fvl_rng_bits(es, (uint64_t)(pos0 + b));
    if (one(s, o, idx[b], r, out + (size_t)k * plane)) {
      if (!o->skip_bad) return -1;
      if (bad) (*bad)++;
      continue;
    }
    if (y) y[k] = s->labels[idx[b]];
    if (kept) kept[k] = (int32_t)idx[b];
    k++;
  }
  return k;
}

/* ---------------------------------------------------------------- prefetching loader */
typedef struct slot {
  int state;                 /* 0 free, 1 ready */
  int64_t batch, rows, bad;
  fvl_tensor *x, *y, *index;
  char *err;
} slot;

struct fvl_img_loader {
  const fvl_imgset *set;
  fvl_img_opts o;
  int64_t *order, n, B, nb, epoch;
  int workers, depth, nthreads;
  pthread_t *th;
  pthread_mutex_t mu;
  pthread_cond_t cv_work, cv_done;
  int64_t next_claim, next_out, bad;
  int stop, failed;
  slot *slots;
};

static void produce(fvl_img_loader *l, int64_t b, slot *sl) {
  int64_t start = b * l->B, B = l->B < l->n - start ? l->B : l->n - start;
  int64_t sz[4] = {B, l->o.C, l->o.H, l->o.W};
  fvl_tensor *x = fvl_empty(FVL_F32, 4, sz), *y = fvl_empty(FVL_I32, 1, &B),
             *ix = fvl_empty(FVL_I32, 1, &B);
  int64_t bad = 0, rows = -1;
  if (x && y && ix)
    rows = fvl_img_batch(l->set, &l->o, l->order + start, B, l->epoch, start, fvl_f32(x),
                         fvl_i32(y), fvl_i32(ix), &bad);
  if (rows >= 0 && rows < B) {
    fvl_tensor *a = fvl_narrow(x, 0, 0, rows), *c = fvl_narrow(y, 0, 0, rows),
               *d = fvl_narrow(ix, 0, 0, rows);
    fvl_release(x); fvl_release(y); fvl_release(ix);
    x = a; y = c; ix = d;
    if (!x || !y || !ix) rows = -1;
  }
  sl->err = rows < 0 ? strdup(fvl_errmsg()) : NULL;
  if (rows < 0) { fvl_release(x); fvl_release(y); fvl_release(ix); x = y = ix = NULL; }
  sl->x = x; sl->y = y; sl->index = ix;
  sl->rows = rows;
  sl->bad = bad;
}

static void *worker(void *arg) {
  fvl_img_loader *l = arg;
  pthread_mutex_lock(&l->mu);
  for (;;) {
    while (!l->stop && (l->next_claim >= l->nb || l->next_claim >= l->next_out + l->depth))
      pthread_cond_wait(&l->cv_work, &l->mu);
    if (l->stop) break;
    int64_t b = l->next_claim++;
    slot *sl = &l->slots[b % l->depth];
    pthread_mutex_unlock(&l->mu);
    slot tmp = {0};
    produce(l, b, &tmp);
    pthread_mutex_lock(&l->mu);
    tmp.batch = b;
    tmp.state = 1;
    *sl = tmp;
    pthread_cond_broadcast(&l->cv_done);
  }
  pthread_mutex_unlock(&l->mu);
  return NULL;
}

fvl_img_loader *fvl_img_loader_start(const fvl_imgset *set, const fvl_img_opts *o,
                                     const int64_t *order, int64_t n, int64_t B, int drop_last,
                                     int64_t epoch, int64_t first, int workers, int depth) {
  if (B < 1 || n < 0 || workers < 0 || workers > 256 || depth < 1 || depth > 1024) {
    fvl_err("images: loader with batch %lld, %d workers, prefetch %d (expected batch >= 1, "
            "workers 0..256, prefetch 1..1024)", (long long)B, workers, depth);
    return NULL;
  }
  if (o->C != 1 && o->C != 3) { fvl_err("images: channels = %d (expected 1 or 3)", o->C); return NULL; }
  if (o->H < 1 || o->W < 1 || o->pad < 0 || o->pad >= o->H || o->pad >= o->W || !(o->std != 0)) {
    fvl_err("images: size %dx%d, crop %d, std %g (expected crop < size, std != 0)", o->W, o->H,
            o->pad, (double)o->std);
    return NULL;
  }
  if ((int64_t)o->C * o->H * o->W > (INT64_C(1) << 36) / B) {
    fvl_err("images: batch %lld of %dx%dx%d images is too large", (long long)B, o->C, o->H, o->W);
    return NULL;
  }
  for (int64_t i = 0; i < n; i++)
    if (order[i] < 0 || order[i] >= set->n) {
      fvl_err("images: order[%lld] = %lld is outside 0..%lld (0-based)", (long long)i,
              (long long)order[i], (long long)set->n - 1);
      return NULL;
    }
  fvl_img_loader *l = calloc(1, sizeof *l);
  if (!l) { fvl_err("images: out of memory"); return NULL; }
  l->set = set;
  l->o = *o;
  l->n = n;
  l->B = B;
  l->nb = drop_last ? n / B : (n + B - 1) / B;
  if (first < 0 || first > l->nb) {
    fvl_err("images: first batch %lld is outside 0..%lld (0-based; the epoch has %lld batches)", (long long)first,
            (long long)l->nb, (long long)l->nb);
    free(l);
    return NULL;
  }
  l->next_claim = l->next_out = first;   /* batches before `first` are never decoded (resuming mid-epoch) */
  l->epoch = epoch;
  l->workers = workers;
  l->depth = depth;
  l->order = malloc((size_t)(n ? n : 1) * sizeof *l->order);
  l->slots = calloc((size_t)depth, sizeof *l->slots);
  l->th = calloc((size_t)(workers ? workers : 1), sizeof *l->th);
  if (!l->order || !l->slots || !l->th) {
    free(l->order); free(l->slots); free(l->th); free(l);
    fvl_err("images: out of memory");
    return NULL;
  }
  memcpy(l->order, order, (size_t)n * sizeof *order);
  pthread_mutex_init(&l->mu, NULL);
  pthread_cond_init(&l->cv_work, NULL);
  pthread_cond_init(&l->cv_done, NULL);
  for (int t = 0; t < workers; t++) {
    if (pthread_create(&l->th[t], NULL, worker, l)) {
      fvl_err("images: cannot start loader thread %d (0-based): %s", t, strerror(errno));
      fvl_img_loader_stop(l);
      return NULL;
    }
    l->nthreads++;
  }
  return l;
}

int fvl_img_loader_next(fvl_img_loader *l, fvl_tensor **x, fvl_tensor **y, fvl_tensor **index) {
  *x = *y = *index = NULL;
  if (l->failed) return fvl_err("images: the loader stopped after an error; reset it");
  if (l->next_out >= l->nb) return 0;
  int64_t b = l->next_out;
  slot *sl = &l->slots[b % l->depth];
  slot got;
  if (l->workers == 0) {
    memset(&got, 0, sizeof got);
    produce(l, b, &got);
  } else {
    pthread_mutex_lock(&l->mu);
    while (!(sl->state == 1 && sl->batch == b)) {
      /* wait in short slices so that Ctrl-C (which the workers also see) cannot hang us */
      pthread_cond_wait(&l->cv_done, &l->mu);
    }
    got = *sl;
    memset(sl, 0, sizeof *sl);
    pthread_mutex_unlock(&l->mu);
  }
  pthread_mutex_lock(&l->mu);
  l->next_out++;
  l->bad += got.bad;
  pthread_cond_broadcast(&l->cv_work);
  pthread_mutex_unlock(&l->mu);
  if (got.rows < 0) {
    l->failed = 1;
    fvl_err("%s", got.err ? got.err : "images: loader failed");
    free(got.err);
    return -1;
  }
  *x = got.x;
  *y = got.y;
  *index = got.index;
  return 1;
}

int64_t fvl_img_loader_bad(const fvl_img_loader *l) { return l->bad; }

void fvl_img_loader_stop(fvl_img_loader *l) {
  if (!l) return;
  pthread_mutex_lock(&l->mu);
  l->stop = 1;
  pthread_cond_broadcast(&l->cv_work);
  pthread_mutex_unlock(&l->mu);
  for (int t = 0; t < l->nthreads; t++) pthread_join(l->th[t], NULL);
  for (int i = 0; i < l->depth; i++) {
    fvl_release(l->slots[i].x);
    fvl_release(l->slots[i].y);
    fvl_release(l->slots[i].index);
    free(l->slots[i].err);
  }
  pthread_mutex_destroy(&l->mu);
  pthread_cond_destroy(&l->cv_work);
  pthread_cond_destroy(&l->cv_done);
  free(l->order);
  free(l->slots);
  free(l->th);
  free(l);
}
