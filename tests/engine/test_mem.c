/* test_mem.c — the engine allocator (engine/mem.c): 64-byte alignment on both paths, the byte
 * counters, a freed big block (>= 32 MB) taken back by the next request of its size (and up to
 * 1/8 more), the cache bounded by the highest live bytes, released by fvl_mem_release, zeroed
 * by fvl_calloc when reused, threads allocating at once; and that a heap buffer freed and asked
 * for again with small allocations in between does not grow the heap each time. */
#include <check.h>
#include "fvl_check.h"
#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "core.h"

#define MB ((size_t)1 << 20)

static int aligned(const void *p) { return ((uintptr_t)p & 63) == 0; }

/* first: the bound needs this process's highest live bytes to be what this test makes it */
START_TEST(cache_bounded_by_high_water) {
  size_t live0 = fvl_bytes_live();
  ck_assert_uint_lt(live0, 8 * MB);
  char *a = fvl_alloc(64 * MB);
  ck_assert_ptr_nonnull(a);
  memset(a, 1, 64 * MB);
  fvl_dealloc(a, 64 * MB);
  ck_assert_uint_ge(fvl_bytes_cached(), 64 * MB);
  /* 100 MB does not fit the 64 MB block; keeping it beside would hold 164 MB while the live
   * bytes never passed 100 MB: it goes first */
  char *b = fvl_alloc(100 * MB);
  ck_assert_ptr_nonnull(b);
  ck_assert_uint_eq(fvl_bytes_cached(), 0);
  memset(b, 2, 100 * MB);
  fvl_dealloc(b, 100 * MB);
  size_t c = fvl_bytes_cached();
  ck_assert_uint_ge(c, 100 * MB);
  ck_assert_uint_lt(c, 104 * MB);
  /* 40 MB: the 100 MB block is more than 1/8 larger, and both would pass the high water */
  char *s = fvl_alloc(40 * MB);
  ck_assert_ptr_nonnull(s);
  ck_assert_uint_eq(fvl_bytes_cached(), 0);
  char *t = fvl_alloc(40 * MB);   /* 80 MB live: a second one beside it is within the bound */
  ck_assert_ptr_nonnull(t);
  fvl_dealloc(s, 40 * MB);
  c = fvl_bytes_cached();
  ck_assert_uint_ge(c, 40 * MB);
  char *u = fvl_alloc(30 * MB + 1);   /* below 32 MB... */
  fvl_dealloc(u, 30 * MB + 1);
  ck_assert_uint_eq(fvl_bytes_cached(), c);   /* ...is the heap's, the cache is untouched */
  fvl_dealloc(t, 40 * MB);
  ck_assert_uint_ge(fvl_bytes_cached(), 2 * c);
  ck_assert_uint_ge(fvl_mem_release(), 2 * c);
  ck_assert_uint_eq(fvl_bytes_cached(), 0);
  ck_assert_uint_eq(fvl_bytes_live(), live0);
}
END_TEST

START_TEST(alignment_and_counters) {
  size_t live0 = fvl_bytes_live();
  fvl_bytes_peak_reset();
  static const size_t sizes[] = { 0, 1, 63, 64, 65, 1000, 4096, MB + 3, 31 * MB, 32 * MB, 33 * MB + 5 };
  enum { N = sizeof sizes / sizeof *sizes };
  char *p[N];
  size_t sum = 0;
  for (int i = 0; i < N; i++) {
    p[i] = fvl_alloc(sizes[i]);
    ck_assert_ptr_nonnull(p[i]);
    ck_assert_msg(aligned(p[i]), "%zu bytes at %p", sizes[i], (void *)p[i]);
    memset(p[i], 0x5a, sizes[i]);   /* every byte asked for is writable */
    sum += sizes[i];
    ck_assert_uint_eq(fvl_bytes_live(), live0 + sum);
  }
  ck_assert_uint_eq(fvl_bytes_peak(), live0 + sum);
  for (int i = 0; i < N; i++) {
    for (size_t k = 0; k < sizes[i]; k += 4093) ck_assert_int_eq(p[i][k], 0x5a);
    fvl_dealloc(p[i], sizes[i]);
  }
  ck_assert_uint_eq(fvl_bytes_live(), live0);
  ck_assert_uint_eq(fvl_bytes_peak(), live0 + sum);
  fvl_dealloc(NULL, 123);
  fvl_mem_release();
}
END_TEST

START_TEST(big_block_reused_and_zeroed) {
  size_t live0 = fvl_bytes_live();
  fvl_mem_release();
  float *a = fvl_alloc(50 * MB);
  ck_assert_ptr_nonnull(a);
  memset(a, 0xff, 50 * MB);
  fvl_dealloc(a, 50 * MB);
  size_t c = fvl_bytes_cached();
  ck_assert_uint_ge(c, 50 * MB);
  ck_assert_uint_eq(fvl_bytes_live(), live0);   /* cached bytes are not live */
  float *b = fvl_alloc(50 * MB);                /* the same size: the same block */
  ck_assert_ptr_eq(a, b);
  ck_assert_uint_eq(fvl_bytes_cached(), 0);
  fvl_dealloc(b, 50 * MB);
  float *z = fvl_calloc(47 * MB);               /* the block is up to 1/8 larger: taken, zeroed */
  ck_assert_ptr_eq(a, z);
  for (size_t k = 0; k < 47 * MB / 4; k += 1021) ck_assert(z[k] == 0.0f);
  ck_assert(z[47 * MB / 4 - 1] == 0.0f);
  fvl_dealloc(z, 47 * MB);
  float *d = fvl_alloc(60 * MB);                /* larger than the cached block: one of its own */
  ck_assert_ptr_nonnull(d);
  ck_assert_uint_eq(fvl_bytes_cached(), 0);      /* (keeping the 50 MB beside: past the high water) */
  fvl_dealloc(d, 60 * MB);
  ck_assert_uint_ge(fvl_mem_release(), 60 * MB);
  ck_assert_uint_eq(fvl_bytes_cached(), 0);
  ck_assert_uint_eq(fvl_bytes_live(), live0);
}
END_TEST

/* the reproducer of the old aligned_alloc path: a 20 MB buffer freed and asked for again with a
 * small allocation made in between; the heap must not grow by the buffer on every round */
START_TEST(heap_buffer_reused) {
#if defined(__SANITIZE_ADDRESS__) || defined(FVL_SANITIZE)
  return;   /* ASan's allocator has no glibc heap to measure */
#else
  void *keep[8];
  size_t arena1 = 0;
  for (int i = 0; i < 8; i++) {
    char *p = fvl_alloc(20 * MB);
    ck_assert_ptr_nonnull(p);
    memset(p, i, 20 * MB);
    keep[i] = malloc(200 + 64 * (size_t)i);   /* small chunks placed after the free buffer */
    fvl_dealloc(p, 20 * MB);
    if (i == 1) arena1 = mallinfo2().arena;
  }
  size_t arena = mallinfo2().arena;
  ck_assert_msg(arena < arena1 + 2 * MB, "the heap grew from %zu to %zu bytes", arena1, arena);
  for (int i = 0; i < 8; i++) free(keep[i]);
#endif
}
END_TEST

START_TEST(threads_at_once) {
  size_t live0 = fvl_bytes_live();
  int bad = 0;
#pragma omp parallel for reduction(+ : bad) num_threads(4)
  for (int t = 0; t < 16; t++) {
    size_t n = (t % 3 == 0) ? 33 * MB + (size_t)t * 4096 : 100000 + (size_t)t * 64;
    for (int r = 0; r < 3; r++) {
      unsigned char *p = fvl_alloc(n);
      if (!p || !aligned(p)) { bad++; continue; }
      memset(p, t, n);
      for (size_t k = 0; k < n; k += 999) bad += p[k] != (unsigned char)t;
      fvl_dealloc(p, n);
    }
  }
  ck_assert_int_eq(bad, 0);
  ck_assert_uint_eq(fvl_bytes_live(), live0);
  fvl_mem_release();
  ck_assert_uint_eq(fvl_bytes_cached(), 0);
}
END_TEST

int main(void) {
  Suite *s = suite_create("mem");
  TCase *tc = tcase_create("mem");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, cache_bounded_by_high_water);
  tcase_add_test(tc, alignment_and_counters);
  tcase_add_test(tc, big_block_reused_and_zeroed);
  tcase_add_test(tc, heap_buffer_reused);
  tcase_add_test(tc, threads_at_once);
  suite_add_tcase(s, tc);
  return fvl_check_run(s);
}
