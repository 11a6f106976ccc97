/* fuzz_npz.c — libFuzzer target: .npz (ZIP of .npy, stored or deflated, ZIP64) read back. */
#include <stdint.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include "tensor.h"
#include "data/facedata.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char path[64];
  snprintf(path, sizeof path, "/tmp/fvl_fuzz_npz.%d.npz", (int)getpid());
  FILE *f = fopen(path, "wb");
  if (!f) return 0;
  fwrite(data, 1, size, f);
  fclose(f);
  char **names = NULL;
  fvl_tensor **ts = NULL;
  int64_t n = 0;
  if (fvl_npz_read(path, &names, &ts, &n) == 0) {
    for (int64_t i = 0; i < n; i++) { free(names[i]); fvl_release(ts[i]); }
    free(names);
    free(ts);
  }
  unlink(path);
  return 0;
}
