/* fuzz_bin.c — libFuzzer target: insightface .bin verification packs through the strict pickle
 * subset (fvl_binpack_parse), and the images it finds through the header readers. */
#include <stdint.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include "data/facedata.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  uint8_t *copy = malloc(size ? size : 1);   /* the parser takes ownership of its buffer */
  if (!copy) return 0;
  if (size) memcpy(copy, data, size);
  fvl_binpack *p = fvl_binpack_parse(copy, size, "fuzz");
  if (!p) return 0;
  if (p->n != 2 * p->npairs) abort();
  for (int64_t i = 0; i < p->npairs; i++)
    if (p->issame[i] > 1) abort();
  for (int64_t i = 0; i < p->n && i < 16; i++) {
    int h, w;
    fvl_image_info(p->img[i], p->img_len[i], &h, &w, "fuzz");   /* every image byte is readable */
  }
  fvl_binpack_free(p);
  return 0;
}
