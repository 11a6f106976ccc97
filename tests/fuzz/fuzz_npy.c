/* fuzz_npy.c — libFuzzer target: .npy bytes (header dict and data) through the one strict header
 * parser (fvl_npy_parse_header) and the any-dtype reader (fvl_npy_parse). Build and run:
 * tests/fuzz/run.sh (DEVELOPERS.md, "Fuzzing"). */
#include <stdint.h>
#include <stddef.h>
#include <string.h>
#include "tensor.h"
#include "data/facedata.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fvl_npy_header h;
  fvl_npy_parse_header((const char *)data, size, "fuzz", &h);   /* the dict alone */
  fvl_tensor *t = fvl_npy_parse(data, size, "fuzz");               /* a whole file */
  if (t) {
    /* a tensor that loaded must be consistent with its shape */
    int64_t n = fvl_numel(t);
    volatile float acc = 0;
    for (int64_t i = 0; i < n; i++) acc += fvl_f32(t)[i];
    fvl_release(t);
  }
  return 0;
}
