/* fvl.c — the fvl program's launcher: loads fvl_app.so (the program itself, the bindings and the
 * engine) and runs its fvl_app_main. libgomp comes into the process with that library and reads
 * OMP_WAIT_POLICY once, then: so the launcher defaults it to passive first, unless the user
 * chose a policy, and removes it again afterwards so that child processes see the user's
 * environment. Why passive: lua/loader/fvl_loader.c. (A variable set from a preinit function
 * or an early constructor does not survive libc's own start-up, hence a launcher rather than
 * one executable.)
 * fvl_app.so is looked up beside the program (build tree), then at FVL_APP_FROM_BINDIR relative
 * to it (installed: <prefix>/bin/fvl and <prefix>/<libdir>/fvl/fvl_app.so). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef FVL_APP_FROM_BINDIR
#define FVL_APP_FROM_BINDIR "../lib/fvl/fvl_app.so"
#endif

static int candidate(char *out, size_t n, const char *dir, const char *rel) {
  int k = snprintf(out, n, "%s/%s", dir, rel);
  return k > 0 && (size_t)k < n && access(out, R_OK) == 0;
}

int main(int argc, char **argv) {
  char exe[PATH_MAX], path[PATH_MAX + 64];
  ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (k <= 0) {
    fprintf(stderr, "fvl: cannot find the program's own path (/proc/self/exe)\n");
    return EXIT_FAILURE;
  }
  exe[k] = 0;
  char *slash = strrchr(exe, '/');
  if (slash) *slash = 0;
  if (!candidate(path, sizeof path, exe, "fvl_app.so") &&
      !candidate(path, sizeof path, exe, FVL_APP_FROM_BINDIR)) {
    fprintf(stderr, "fvl: fvl_app.so not found beside %s nor at %s/%s (reinstall FaceVerLoss)\n", exe,
            exe, FVL_APP_FROM_BINDIR);
    return EXIT_FAILURE;
  }
  int set = 0;
  if (!getenv("OMP_WAIT_POLICY")) {
    setenv("OMP_WAIT_POLICY", "passive", 1);
    set = 1;
  }
  /* GLOBAL: C modules a script requires find the Lua API of the liblua this library brings */
  void *h = dlopen(path, RTLD_NOW | RTLD_GLOBAL);
  if (set) unsetenv("OMP_WAIT_POLICY");
  if (!h) {
    fprintf(stderr, "fvl: cannot load %s: %s\n", path, dlerror());
    return EXIT_FAILURE;
  }
  int (*app_main)(int, char **) = (int (*)(int, char **))dlsym(h, "fvl_app_main");
  if (!app_main) {
    fprintf(stderr, "fvl: %s has no fvl_app_main\n", path);
    return EXIT_FAILURE;
  }
  return app_main(argc, argv);
}
