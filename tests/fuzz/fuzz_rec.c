/* fuzz_rec.c — libFuzzer target: MXNet RecordIO .rec files with and without their .idx, through
 * the reader (frame scan, index parse, split records), the IRHeader parser and the insightface
 * image-set reader (header record, labels, the decode/augment path of a batch).
 * Input layout (tests/fuzz/make_seeds.lua writes seeds in it): uint32 little-endian length L of
 * the .idx text, L bytes of .idx, then the .rec bytes; L = 0xFFFFFFFF: no index (scan). */
#include <stdint.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "data/facedata.h"

static int put(const char *path, const uint8_t *d, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f) return -1;
  if (n) fwrite(d, 1, n, f);
  return fclose(f);
}

static void records(const fvl_rec *r) {
  int64_t n = fvl_rec_count(r);
  for (int64_t i = 0; i < n && i < 64; i++) {
    uint8_t *b;
    size_t len;
    uint8_t head[32];
    fvl_rec_read_head(r, i, head, sizeof head);
    if (fvl_rec_find(r, fvl_rec_key(r, i)) < 0) abort();   /* every key is found again */
    if (fvl_rec_read(r, i, &b, &len) == 0) {
      fvl_irheader h;
      if (fvl_irheader_parse(b, len, &h, "fuzz") == 0) {
        volatile float acc = 0;
        for (uint32_t k = 0; k < h.flag && k < 4096; k++) acc += fvl_irheader_label(&h, k);
        volatile uint8_t x = h.payload_len ? h.payload[h.payload_len - 1] : 0;
        (void)x;
      }
      free(b);
    }
  }
}

static void imageset(const char *rec, const char *idx) {
  fvl_imgset *s = fvl_imgset_rec(rec, idx, NULL);
  if (!s) return;
  for (int64_t i = 0; i < s->n; i++)
    if (s->labels[i] < 0 || s->labels[i] >= s->classes) abort();   /* labels are in 0..classes-1 */
  int64_t B = s->n < 4 ? s->n : 4, ix[4] = {0, 1, 2, 3}, bad = 0;
  if (B > 0) {
    fvl_img_opts o = {.C = 3, .H = 8, .W = 8, .flip = 1, .pad = 1, .mean = 127.5f, .std = 127.5f,
                      .skip_bad = 1, .seed = 1};
    float out[4 * 3 * 8 * 8];
    int32_t y[4], kept[4];
    fvl_img_batch(s, &o, ix, B, 0, 0, out, y, kept, &bad);
  }
  fvl_imgset_free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 4) return 0;
  uint32_t L = (uint32_t)data[0] | (uint32_t)data[1] << 8 | (uint32_t)data[2] << 16 | (uint32_t)data[3] << 24;
  int with_idx = L != 0xFFFFFFFFu;
  if (with_idx && L > size - 4) L = (uint32_t)(size - 4);
  size_t off = 4 + (with_idx ? L : 0);
  char rec[64], idx[64];
  snprintf(rec, sizeof rec, "/tmp/fvl_fuzz_rec.%d.rec", (int)getpid());
  snprintf(idx, sizeof idx, "/tmp/fvl_fuzz_rec.%d.idx", (int)getpid());
  if (put(rec, data + off, size - off) || (with_idx && put(idx, data + 4, L))) return 0;
  fvl_rec *r = fvl_rec_open(rec, with_idx ? idx : NULL);
  if (r) {
    records(r);
    fvl_rec_close(r);
  }
  imageset(rec, with_idx ? idx : NULL);
  unlink(rec);
  unlink(idx);
  return 0;
}
