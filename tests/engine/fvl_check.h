/* fvl_check.h — what every Check suite in tests/engine shares. */
#ifndef FVL_CHECK_H
#define FVL_CHECK_H
#include <check.h>

/* runs the suite and returns main's exit status; fork: CK_FORK_GETENV (Check's default: a fork per
 * test unless CK_FORK=no) or CK_NOFORK for a suite whose tests share a fixture made once */
static inline int fvl_check_run_with(Suite *s, enum fork_status fork) {
  SRunner *sr = srunner_create(s);
  if (fork != CK_FORK_GETENV) srunner_set_fork_status(sr, fork);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? 1 : 0;
}

/* runs the suite (forking per test, as Check does by default) and returns main's exit status */
static inline int fvl_check_run(Suite *s) { return fvl_check_run_with(s, CK_FORK_GETENV); }
#endif
