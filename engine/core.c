#include "core.h"
#include "sys.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <cblas.h>

static _Thread_local char errbuf[1024];

const char *fvl_errmsg(void) { return errbuf[0] ? errbuf : "unknown error"; }
void fvl_err_clear(void) { errbuf[0] = 0; }
int fvl_err(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(errbuf, sizeof errbuf, fmt, ap);
  va_end(ap);
  return -1;
}

static volatile sig_atomic_t abort_flag = 0;
void fvl_abort_request(void) { abort_flag = 1; }
void fvl_abort_clear(void) { abort_flag = 0; }
int fvl_aborted(void) { return abort_flag != 0; }
int fvl_check_abort(const char *where) {
  if (!abort_flag) return 0;
  return fvl_err("%s: interrupted", where);
}

/* One pool: OpenBLAS is its OpenMP build, so its GEMMs run on libgomp's threads, take their
 * count from omp_get_max_threads() and run single-threaded inside an engine parallel loop.
 * The thread count is therefore one OpenMP setting, the same whether the fvl program or any Lua
 * interpreter loaded the module; until someone sets it, the CPUs this process may use. */
static int nthreads = 0;
int fvl_cpu_count(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int)n : 1;
}
void fvl_set_threads(int n) {
  if (n <= 0) n = fvl_cpus_available(NULL, 0);   /* sys.h: affinity ∩ Slurm ∩ OMP_NUM_THREADS */
  nthreads = n;
#ifdef _OPENMP
  omp_set_num_threads(n);
#endif
  openblas_set_num_threads(n);   /* the same ICV in OpenBLAS's OpenMP build; its own count too */
}
int fvl_get_threads(void) {
  if (nthreads <= 0) fvl_set_threads(0);
  return nthreads;
}
int fvl_blas_openmp(void) { return openblas_get_parallel() == 2; }
#ifdef _OPENMP
int fvl_omp_max_threads(void) { return omp_get_max_threads(); }
int fvl_omp_thread(void) { return omp_get_thread_num(); }
int fvl_omp_team(void) { return omp_get_num_threads(); }
#else
int fvl_omp_max_threads(void) { return 1; }
int fvl_omp_thread(void) { return 0; }
int fvl_omp_team(void) { return 1; }
#endif

/* the allocator (fvl_alloc, fvl_dealloc, the byte counters): mem.c */

const char *fvl_blas_config(void) { return openblas_get_config(); }
const char *fvl_blas_core(void) { return openblas_get_corename(); }
const char *fvl_build_type(void) {
#ifdef FVL_BUILD_TYPE
  return FVL_BUILD_TYPE
#ifdef _OPENMP
      " +OpenMP"
#endif
#ifdef FVL_SANITIZE
      " +ASan/UBSan"
#endif
      ;
#else
  return "unknown";
#endif
}
