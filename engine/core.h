/* core.h — engine context: errors, abort flag, threads, memory accounting.
 * The engine never sees Lua. Functions that can fail return NULL or -1 and leave a
 * message in fvl_errmsg() (thread-local). The binding turns that into a Lua error. */
#ifndef FVL_CORE_H
#define FVL_CORE_H
#include <stddef.h>
#include <stdint.h>

#define FVL_VERSION "0.1.0"

/* ---- errors ---- */
const char *fvl_errmsg(void);                    /* last error of this thread */
int fvl_err(const char *fmt, ...)                 /* sets the message, returns -1 */
    __attribute__((format(printf, 1, 2)));
void fvl_err_clear(void);

/* ---- checked size arithmetic: every size, stride, offset and index computed from input
 * (shapes from Lua, file headers, option values) goes through these. They return 1 on
 * overflow (nothing stored that the caller may use), 0 otherwise; the caller names the call in
 * its message, e.g. fvl_err("zeros: 4294967296x4294967296 elements overflow"). */
static inline int fvl_mul_overflow(int64_t a, int64_t b, int64_t *out) { return __builtin_mul_overflow(a, b, out); }
static inline int fvl_add_overflow(int64_t a, int64_t b, int64_t *out) { return __builtin_add_overflow(a, b, out); }
static inline int fvl_size_mul_overflow(size_t a, size_t b, size_t *out) { return __builtin_mul_overflow(a, b, out); }
static inline int fvl_size_add_overflow(size_t a, size_t b, size_t *out) { return __builtin_add_overflow(a, b, out); }

/* ---- abort (Ctrl-C): long kernels poll fvl_aborted() and fail with "interrupted" ---- */
void fvl_abort_request(void);                    /* async-signal-safe */
void fvl_abort_clear(void);
int fvl_aborted(void);
/* returns -1 with the message "<where>: interrupted" when an abort is pending */
int fvl_check_abort(const char *where);

/* ---- threads: one setting for OpenBLAS and the engine's OpenMP loops ---- */
void fvl_set_threads(int n);   /* n <= 0: the CPUs this process may use (sys.h fvl_cpus_available) */
int fvl_get_threads(void);
int fvl_blas_openmp(void);     /* 1 when OpenBLAS shares the OpenMP pool */
/* OpenMP team queries (1 / 0 without OpenMP): threads a parallel region would get, the calling
 * thread's number in its team, the team's actual size (may be fewer than asked, e.g. nested) */
int fvl_omp_max_threads(void);
int fvl_omp_thread(void);
int fvl_omp_team(void);
int fvl_cpu_count(void);

/* ---- memory: every tensor byte goes through here so the binding can charge the GC ---- */
void *fvl_alloc(size_t nbytes);                   /* 64-byte aligned, NULL + message on failure */
void *fvl_calloc(size_t nbytes);
void fvl_dealloc(void *p, size_t nbytes);
size_t fvl_bytes_live(void);                      /* bytes held now */
size_t fvl_bytes_peak(void);
void fvl_bytes_peak_reset(void);
/* Freed blocks of 32 MB and more are kept for the next request of their size (mem.c): the bytes
 * kept now (never counted as live), and giving them all back (with the heap's free memory);
 * returns the cached bytes released. */
size_t fvl_bytes_cached(void);
size_t fvl_mem_release(void);

/* ---- build and library facts for `fvl -v` ---- */
const char *fvl_blas_config(void);                /* OpenBLAS version/config string */
const char *fvl_blas_core(void);                  /* OpenBLAS core name, e.g. Haswell */
const char *fvl_build_type(void);                 /* e.g. "Release (-O2, OpenMP)" */
#endif
