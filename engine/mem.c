/* mem.c — the engine's allocator: every tensor byte goes through fvl_alloc / fvl_dealloc.
 *
 * Two paths, chosen by the request size alone (so fvl_dealloc, which gets the same size, takes
 * the same path):
 *
 * - Below FVL_BIG_BYTES: glibc's heap, with trimming off (a training step frees more than any
 *   fixed threshold at its end — 1.7 GB for MobileFaceNet at batch 32 — and the next step
 *   faulted all of it back in, page by page). The 64-byte alignment is made by hand from
 *   malloc(n + 64), the original pointer kept in the 8 bytes before the aligned one:
 *   aligned_alloc(64, n) asks glibc's memalign for n + 64 + a header, so a freed chunk of
 *   exactly n could never serve the next identical request, the heap grew by the whole buffer
 *   and it was faulted in again, every time (a 205 MB buffer: 50,000 faults per request).
 *
 * - From FVL_BIG_BYTES up (the heads' B×C logits and W.grad, a backbone's largest activations):
 *   an own anonymous mmap, 2 MB aligned and advised for transparent huge pages, and on free kept
 *   in a small cache of big blocks that the next request of the same size (up to 1/8 more)
 *   takes back already faulted in. Without it, a block above glibc's mmap threshold was a fresh
 *   mmap on every request: at C = 1,000,000 the 2 GB W.grad and the 1 GB logits cost ~500,000
 *   page faults and ~1.2 s of kernel time per training step. The cache never makes the process
 *   hold more than the highest number of live bytes it has had: a request that would exceed it
 *   releases least recently used blocks first. fvl_mem_release() gives all of them back (and
 *   trims the heap); fvl_bytes_cached() says how much is held. Live-byte counters (fvl.mem)
 *   count what tensors hold, never the cache.
 *   FVL_MEM_CACHE=0 in the environment turns the cache off and FVL_THP=0 the huge-page advice
 *   (for measurements). Under AddressSanitizer the big blocks come from malloc (so overflows and
 *   leaks are seen) and a cached block is poisoned until it is taken again. */
#include "core.h"
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <malloc.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/sysinfo.h>
#include <stdio.h>

#if defined(__SANITIZE_ADDRESS__)
#define FVL_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FVL_ASAN 1
#endif
#endif
#ifdef FVL_ASAN
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#define FVL_BIG_BYTES ((size_t)32 << 20)   /* from here: own mmap + cache */
#define HUGE_PAGE ((size_t)2 << 20)
#define HEAD 64                            /* a big block's header: its mapped length */
#define SLOTS 256                          /* cached big blocks at most */

static atomic_size_t live_bytes, peak_bytes, high_bytes, cached_bytes;
static void note_alloc(size_t n) {
  size_t now = atomic_fetch_add(&live_bytes, n) + n;
  size_t pk = atomic_load(&peak_bytes);
  while (now > pk && !atomic_compare_exchange_weak(&peak_bytes, &pk, now)) {}
  size_t hi = atomic_load(&high_bytes);
  while (now > hi && !atomic_compare_exchange_weak(&high_bytes, &hi, now)) {}
}

static int use_cache = 1, use_thp = 1;
static size_t mem_limit = SIZE_MAX;

/* What the process could ever hold: RAM + swap, or the cgroup's memory.max if lower. Linux
 * overcommits, so a request beyond it (fvl.eval.pairs with n = 2^31: four 8.6 GB tensors on a
 * 24 GB machine) would succeed here and be killed later, page by page, by the OOM killer. */
static size_t machine_bytes(void) {
  struct sysinfo si;
  size_t lim = SIZE_MAX;
  if (sysinfo(&si) == 0) {
    unsigned long long t = ((unsigned long long)si.totalram + si.totalswap) * si.mem_unit;
    if (t > 0 && t < SIZE_MAX) lim = (size_t)t;
  }
  FILE *f = fopen("/sys/fs/cgroup/memory.max", "r");
  if (f) {
    unsigned long long m;
    if (fscanf(f, "%llu", &m) == 1 && m > 0 && m < lim) lim = (size_t)m;
    fclose(f);
  }
  return lim;
}

static void tune_once(void) {
  mem_limit = machine_bytes();
  mallopt(M_MMAP_THRESHOLD, 256 << 20);
  mallopt(M_TRIM_THRESHOLD, -1);
  const char *c = getenv("FVL_MEM_CACHE"), *h = getenv("FVL_THP");
  if (c && !strcmp(c, "0")) use_cache = 0;
  if (h && !strcmp(h, "0")) use_thp = 0;
}
static void tune(void) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, tune_once);
}

/* ---- big blocks ---- */
typedef struct { char *base; size_t len; unsigned long long used; } slot;
static slot cache[SLOTS];
static int ncache;
static unsigned long long tick;
static pthread_mutex_t big_lock = PTHREAD_MUTEX_INITIALIZER;

static char *map_block(size_t len) {
#ifdef FVL_ASAN
  return malloc(len);
#else
  /* 2 MB aligned: map one huge page more and cut the ends off */
  char *m = mmap(NULL, len + HUGE_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) return NULL;
  char *b = (char *)(((uintptr_t)m + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
  if (b > m) munmap(m, (size_t)(b - m));
  if (m + HUGE_PAGE > b) munmap(b + len, (size_t)(m + HUGE_PAGE - b));
  if (use_thp) madvise(b, len, MADV_HUGEPAGE);
  return b;
#endif
}
static void unmap_block(char *b, size_t len) {
#ifdef FVL_ASAN
  (void)len;
  UNPOISON(b, len);
  free(b);
#else
  munmap(b, len);
#endif
}
/* drop cache slot i (big_lock held) */
static void evict(int i) {
  unmap_block(cache[i].base, cache[i].len);
  atomic_fetch_sub(&cached_bytes, cache[i].len);
  cache[i] = cache[--ncache];
}
static int lru(void) {
  int k = 0;
  for (int i = 1; i < ncache; i++)
    if (cache[i].used < cache[k].used) k = i;
  return k;
}

static void *big_alloc(size_t nbytes) {
  size_t len = (nbytes + HEAD + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
  char *b = NULL;
  pthread_mutex_lock(&big_lock);
  int best = -1;
  for (int i = 0; i < ncache; i++)   /* the smallest cached block that fits, up to 1/8 more */
    if (cache[i].len >= len && cache[i].len - len <= len / 8 && (best < 0 || cache[i].len < cache[best].len))
      best = i;
  if (best >= 0) {
    b = cache[best].base;
    len = cache[best].len;
    atomic_fetch_sub(&cached_bytes, len);
    cache[best] = cache[--ncache];
    UNPOISON(b, len);
  } else {
    /* keep live + cached within the highest live bytes so far (or what this request makes it) */
    size_t live = atomic_load(&live_bytes), hi = atomic_load(&high_bytes);
    size_t want = live + len > hi ? live + len : hi;
    while (ncache > 0 && live + len + atomic_load(&cached_bytes) > want) evict(lru());
    b = map_block(len);
    if (!b && ncache > 0) {   /* out of memory: give the cache back and try once more */
      while (ncache > 0) evict(0);
      b = map_block(len);
    }
  }
  pthread_mutex_unlock(&big_lock);
  if (!b) return NULL;
  memcpy(b, &len, sizeof len);
  return b + HEAD;
}
static void big_free(char *p) {
  char *b = p - HEAD;
  size_t len;
  memcpy(&len, b, sizeof len);
  if (!use_cache) { unmap_block(b, len); return; }
  pthread_mutex_lock(&big_lock);
  if (ncache == SLOTS) evict(lru());
  cache[ncache++] = (slot){ b, len, ++tick };
  atomic_fetch_add(&cached_bytes, len);
  POISON(b, len);
  pthread_mutex_unlock(&big_lock);
}

size_t fvl_mem_release(void) {
  pthread_mutex_lock(&big_lock);
  size_t n = atomic_load(&cached_bytes);
  while (ncache > 0) evict(0);
  pthread_mutex_unlock(&big_lock);
  malloc_trim(0);
  return n;
}

/* ---- the interface ---- */
void *fvl_alloc(size_t nbytes) {
  tune();
  size_t live = atomic_load(&live_bytes);
  if (nbytes > mem_limit || live > mem_limit - nbytes)
    return fvl_err("out of memory: %zu bytes requested while tensors hold %zu; this machine "
                   "has %zu (RAM + swap)", nbytes, live, mem_limit), NULL;
  void *p;
  if (nbytes >= FVL_BIG_BYTES) {
    p = big_alloc(nbytes);
  } else {
    /* the same malloc size for the same request: a freed chunk serves the next one */
    size_t n = nbytes ? (nbytes + 63) / 64 * 64 : 64;
    char *raw = malloc(n + 64);
    p = raw ? (void *)(((uintptr_t)raw + 64) & ~(uintptr_t)63) : NULL;
    if (p) {
      memcpy((char *)p - sizeof raw, &raw, sizeof raw);
      POISON((char *)p + n, (size_t)(raw + n + 64 - ((char *)p + n)));   /* the slack after it */
    }
  }
  if (!p) { fvl_err("out of memory allocating %zu bytes", nbytes); return NULL; }
  note_alloc(nbytes);
  return p;
}
void *fvl_calloc(size_t nbytes) {
  void *p = fvl_alloc(nbytes);
  if (p) memset(p, 0, nbytes);
  return p;
}
void fvl_dealloc(void *p, size_t nbytes) {
  if (!p) return;
  if (nbytes >= FVL_BIG_BYTES) {
    big_free(p);
  } else {
    char *raw;
    memcpy(&raw, (char *)p - sizeof raw, sizeof raw);
    free(raw);
  }
  atomic_fetch_sub(&live_bytes, nbytes);
}
size_t fvl_bytes_live(void) { return atomic_load(&live_bytes); }
size_t fvl_bytes_peak(void) { return atomic_load(&peak_bytes); }
void fvl_bytes_peak_reset(void) { atomic_store(&peak_bytes, atomic_load(&live_bytes)); }
size_t fvl_bytes_cached(void) { return atomic_load(&cached_bytes); }
