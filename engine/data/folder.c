/* folder.c — sorted directory listings for image-folder datasets (one directory per identity). */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include "facedata.h"

static int by_name(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static int image_ext(const char *name) {
  const char *dot = strrchr(name, '.');
  return dot && (!strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg") || !strcasecmp(dot, ".png"));
}

void fvl_free_names(char **names, int64_t n) {
  if (!names) return;
  for (int64_t i = 0; i < n; i++) free(names[i]);
  free(names);
}

int fvl_list_dir(const char *dir, int dirs, char ***names, int64_t *n) {
  *names = NULL;
  *n = 0;
  DIR *d = opendir(dir);
  if (!d) return fvl_err("list_dir: cannot open directory '%s': %s", dir, strerror(errno));
  int64_t cap = 0, k = 0;
  char **out = NULL;
  struct dirent *e;
  size_t dl = strlen(dir);
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    size_t nl = strlen(e->d_name);
    char *full = malloc(dl + nl + 2);
    if (!full) goto oom;
    memcpy(full, dir, dl);
    full[dl] = '/';
    memcpy(full + dl + 1, e->d_name, nl + 1);
    struct stat st;
    int ok = stat(full, &st) == 0 && (dirs ? S_ISDIR(st.st_mode) : S_ISREG(st.st_mode) && image_ext(e->d_name));
    free(full);
    if (!ok) continue;
    if (k == cap) {
      cap = cap ? cap * 2 : 64;
      char **o = realloc(out, (size_t)cap * sizeof *o);
      if (!o) goto oom;
      out = o;
    }
    out[k] = strdup(e->d_name);
    if (!out[k]) goto oom;
    k++;
  }
  closedir(d);
  if (k) qsort(out, (size_t)k, sizeof *out, by_name);
  *names = out;
  *n = k;
  return 0;
oom:
  closedir(d);
  fvl_free_names(out, k);
  return fvl_err("list_dir: out of memory listing '%s'", dir);
}
