/* fuzz_idx.c — libFuzzer target: IDX files (plain or gzip, as Fashion-MNIST ships them) through
 * the reader with int32 (label shift) and float32 output. */
#include <stdint.h>
#include <stddef.h>
#include <stdio.h>
#include <unistd.h>
#include "data/data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char path[64];
  snprintf(path, sizeof path, "/tmp/fvl_fuzz_idx.%d", (int)getpid());
  FILE *f = fopen(path, "wb");
  if (!f) return 0;
  fwrite(data, 1, size, f);
  fclose(f);
  int shift = size ? data[0] % 3 : 0;
  fvl_tensor *t = fvl_idx_load(path, FVL_I32, 1, shift);
  fvl_release(t);
  t = fvl_idx_load(path, FVL_F32, 1.0 / 255, 0);
  fvl_release(t);
  unlink(path);
  return 0;
}
