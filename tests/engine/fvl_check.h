/* fvl_check.h — what every Check suite in tests/engine shares. */
#ifndef FVL_CHECK_H
#define FVL_CHECK_H
#include <check.h>

/* runs the suite (forking per test, as Check does by default) and returns main's exit status */
static inline int fvl_check_run(Suite *s) {
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? 1 : 0;
}
#endif
