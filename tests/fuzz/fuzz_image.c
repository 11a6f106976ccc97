/* fuzz_image.c — libFuzzer target: JPEG (libjpeg-turbo) and PNG (libpng) bytes through the
 * project's decode entry points (header only, then full decode as RGB, BGR and grey). */
#include <stdint.h>
#include <stddef.h>
#include <stdlib.h>
#include "data/facedata.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  int h = 0, w = 0;
  if (fvl_image_info(data, size, &h, &w, "fuzz") != 0) return 0;
  if ((int64_t)h * w > 1 << 22) return 0;   /* a 4-Mpixel cap keeps each run short */
  for (int mode = 0; mode < 3; mode++) {
    uint8_t *px = NULL;
    int hh, ww, ch = mode == 2 ? 1 : 3;
    if (fvl_image_decode(data, size, ch, mode == 1, &px, &hh, &ww, "fuzz") == 0) {
      if (hh != h || ww != w) abort();   /* the header and the pixels agree */
      volatile uint8_t last = px[(size_t)hh * ww * ch - 1];
      (void)last;
    }
    free(px);
  }
  return 0;
}
