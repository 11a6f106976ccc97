/* test_store.c — the sweep store (SQLite) and the worker-process helpers. */
#define _GNU_SOURCE
#include <check.h>
#include "fvl_check.h"
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "core.h"
#include "store.h"

static char dir[256];

static void mkdir_tmp(void) {
  snprintf(dir, sizeof dir, "/tmp/fvl_test_store.%d.XXXXXX", (int)getpid());
  ck_assert_ptr_nonnull(mkdtemp(dir));
}
static void rm_tmp(void) {
  char cmd[400];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  ck_assert_int_eq(system(cmd), 0);
}
static const char *tpath(const char *name) {
  static char buf[4][512];
  static int k;
  k = (k + 1) % 4;
  snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
  return buf[k];
}

static int count_rows(void *ud, int ncol, const char *const *names, const fvl_sql_value *v) {
  (void)ncol; (void)names;
  *(int64_t *)ud = v[0].i;
  return 0;
}
static int64_t scalar(fvl_store *s, const char *sql) {
  int64_t out = -12345;
  ck_assert_int_ge(fvl_store_exec(s, sql, 0, NULL, count_rows, &out), 0);
  return out;
}

static int text_of(void *ud, int ncol, const char *const *names, const fvl_sql_value *v) {
  (void)ncol; (void)names;
  snprintf(ud, 16, "%s", v[0].s);
  return 0;
}

START_TEST(open_creates_schema_and_meta) {
  fvl_store *s = fvl_store_open(tpath("a.sqlite"));
  ck_assert_msg(s != NULL, "%s", fvl_errmsg());
  ck_assert_int_eq(fvl_store_meta_set(s, "name", "arc"), 0);
  ck_assert_int_eq(fvl_store_meta_set(s, "name", "arc-margins"), 0);
  char *v = NULL;
  ck_assert_int_eq(fvl_store_meta_get(s, "name", &v), 1);
  ck_assert_str_eq(v, "arc-margins");
  free(v);
  ck_assert_int_eq(fvl_store_meta_get(s, "absent", &v), 0);
  ck_assert_ptr_null(v);
  /* WAL journal */
  char mode[16] = {0};
  ck_assert_int_eq(fvl_store_exec(s, "PRAGMA journal_mode", 0, NULL, text_of, mode), 1);
  ck_assert_str_eq(mode, "wal");
  fvl_store_close(s);
  /* reopening keeps the data */
  s = fvl_store_open(tpath("a.sqlite"));
  ck_assert_int_eq(fvl_store_meta_get(s, "name", &v), 1);
  ck_assert_str_eq(v, "arc-margins");
  free(v);
  fvl_store_close(s);
  struct stat sb;
  ck_assert_int_eq(stat(tpath("a.sqlite"), &sb), 0);
}
END_TEST

START_TEST(open_rejects_non_store) {
  FILE *f = fopen(tpath("junk.sqlite"), "w");
  fputs("this is not a database, just some text that is long enough to have a header....\n", f);
  fclose(f);
  fvl_store *s = fvl_store_open(tpath("junk.sqlite"));
  ck_assert_ptr_null(s);
  ck_assert_msg(strstr(fvl_errmsg(), "store.open") && strstr(fvl_errmsg(), "junk.sqlite"), "%s",
                fvl_errmsg());
  s = fvl_store_open(tpath("no/such/dir/x.sqlite"));
  ck_assert_ptr_null(s);
  ck_assert_msg(strstr(fvl_errmsg(), "cannot open"), "%s", fvl_errmsg());
  ck_assert_ptr_null(fvl_store_open(""));
}
END_TEST

/* the store trial_lifecycle_and_stale_attempts leaves: trial 1 done with the reports of its second
   attempt, trial 2 running under pid 333 */
static void assert_two_trials_listed(fvl_store *s) {
  fvl_trial *all;
  size_t n;
  ck_assert_int_eq(fvl_store_list_trials(s, &all, &n), 0);
  ck_assert_int_eq(n, 2);
  ck_assert_int_eq(all[0].id, 1);
  ck_assert_int_eq(all[0].status, FVL_TRIAL_DONE);
  ck_assert_str_eq(all[0].metrics, "{\"acc\":0.7}");
  ck_assert_int_eq(all[1].status, FVL_TRIAL_RUNNING);
  ck_assert_int_eq(all[1].pid, 333);
  fvl_trials_free(all, n);

  fvl_report *r;
  ck_assert_int_eq(fvl_store_list_reports(s, 1, &r, &n), 0);
  ck_assert_int_eq(n, 2);
  ck_assert_int_eq(r[0].step, 10);
  ck_assert_int_eq(r[1].step, 20);
  ck_assert_int_eq(r[1].attempt, 2);
  ck_assert_str_eq(r[1].metrics, "{\"acc\":0.7}");
  fvl_reports_free(r, n);
}

START_TEST(trial_lifecycle_and_stale_attempts) {
  fvl_store *s = fvl_store_open(tpath("t.sqlite"));
  ck_assert_int_eq(fvl_store_add_trial(s, 2, "{\"m\":0.4}", 22), 1);
  ck_assert_int_eq(fvl_store_add_trial(s, 1, "{\"m\":0.3}", 11), 1);
  ck_assert_int_eq(fvl_store_add_trial(s, 1, "{\"m\":9}", 99), 0);   /* resume: unchanged */
  ck_assert_int_eq(fvl_store_add_trial(s, 0, "{}", 1), -1);
  ck_assert_msg(strstr(fvl_errmsg(), "id must be >= 1"), "%s", fvl_errmsg());

  fvl_trial t;
  ck_assert_int_eq(fvl_store_get_trial(s, 1, &t), 1);
  ck_assert_str_eq(t.config, "{\"m\":0.3}");
  ck_assert_int_eq(t.seed, 11);
  ck_assert_int_eq(t.status, FVL_TRIAL_PENDING);
  ck_assert_int_eq(t.attempt, 0);
  ck_assert(isnan(t.started));
  fvl_trial_clear(&t);
  ck_assert_int_eq(fvl_store_get_trial(s, 7, &t), 0);

  int a1 = fvl_store_start_trial(s, 1, 100, -1);
  ck_assert_int_eq(a1, 1);
  ck_assert_int_eq(fvl_store_add_report(s, 1, a1, 10, "{\"acc\":0.5}"), 1);
  /* the driver died; the trial is started again: old reports go, attempt 2 */
  int a2 = fvl_store_start_trial(s, 1, 101, -1);
  ck_assert_int_eq(a2, 2);
  ck_assert_int_eq(scalar(s, "SELECT count(*) FROM reports"), 0);
  /* the orphan of attempt 1 writes late: ignored */
  ck_assert_int_eq(fvl_store_add_report(s, 1, a1, 20, "{\"acc\":0.6}"), 0);
  ck_assert_int_eq(fvl_store_finish_trial(s, 1, a1, FVL_TRIAL_DONE, "{\"acc\":0.6}", NULL, 0), 0);
  ck_assert_int_eq(fvl_store_add_report(s, 1, a2, 10, "{\"acc\":0.55}"), 1);
  ck_assert_int_eq(fvl_store_add_report(s, 1, a2, 20, "{\"acc\":0.7}"), 1);
  ck_assert_int_eq(fvl_store_finish_trial(s, 1, a2, FVL_TRIAL_DONE, "{\"acc\":0.7}", NULL, 0), 1);
  /* a finished trial is final: no second finish, no restart */
  ck_assert_int_eq(fvl_store_finish_trial(s, 1, a2, FVL_TRIAL_FAILED, NULL, "late", 0), 0);
  ck_assert_int_eq(fvl_store_start_trial(s, 1, 102, -1), 0);
  ck_assert_int_eq(fvl_store_finish_trial(s, 1, a2, FVL_TRIAL_RUNNING, NULL, NULL, 0), -1);
  ck_assert_msg(strstr(fvl_errmsg(), "done, failed or pruned"), "%s", fvl_errmsg());
  ck_assert_int_eq(fvl_store_start_trial(s, 5, 1, -1), -1);
  ck_assert_msg(strstr(fvl_errmsg(), "no trial 5"), "%s", fvl_errmsg());

  /* a failed, killed trial can start again */
  int b = fvl_store_start_trial(s, 2, 200, -1);
  ck_assert_int_eq(b, 1);
  ck_assert_int_eq(fvl_store_finish_trial(s, 2, b, FVL_TRIAL_FAILED, NULL,
                                          "worker killed by signal 9 (SIGKILL)", 1), 1);
  ck_assert_int_eq(fvl_store_get_trial(s, 2, &t), 1);
  ck_assert_int_eq(t.status, FVL_TRIAL_FAILED);
  ck_assert_int_eq(t.killed, 1);
  ck_assert_str_eq(t.error, "worker killed by signal 9 (SIGKILL)");
  ck_assert(t.ended >= t.started);
  fvl_trial_clear(&t);
  /* a second driver that saw attempt 1 cannot take it once the first one has */
  ck_assert_int_eq(fvl_store_start_trial(s, 2, 201, 1), 2);
  ck_assert_int_eq(fvl_store_start_trial(s, 2, 202, 1), 0);
  ck_assert_int_eq(fvl_store_get_trial(s, 2, &t), 1);
  ck_assert_int_eq(t.killed, 0);
  ck_assert_ptr_null(t.error);
  ck_assert_int_eq(t.pid, 201);
  fvl_trial_clear(&t);
  ck_assert_int_eq(fvl_store_set_pid(s, 2, 2, 333), 1);

  assert_two_trials_listed(s);
  fvl_store_close(s);
}
END_TEST

START_TEST(halving_wait_promote_prune) {
  fvl_store *s = fvl_store_open(tpath("h.sqlite"));
  for (int i = 1; i <= 3; i++) ck_assert_int_eq(fvl_store_add_trial(s, i, "{}", i), 1);
  for (int i = 1; i <= 3; i++) ck_assert_int_eq(fvl_store_start_trial(s, i, 0, -1), 1);
  ck_assert_int_eq(fvl_store_set_wait(s, 1, 1, 1, 0.9), 1);
  ck_assert_int_eq(fvl_store_set_wait(s, 2, 1, 1, 0.1), 1);
  ck_assert_int_eq(fvl_store_set_wait(s, 3, 7, 1, 0.5), 0);     /* stale attempt */
  ck_assert_int_eq(fvl_store_set_wait(s, 3, 1, 0, 0.5), -1);
  ck_assert_int_eq(fvl_store_promote(s, 1, 1), 1);
  ck_assert_int_eq(fvl_store_prune(s, 2, 1, "{\"acc\":0.1}"), 1);
  fvl_trial t;
  fvl_store_get_trial(s, 1, &t);
  ck_assert_int_eq(t.rung, 1);
  ck_assert_int_eq(t.wait_rung, 1);          /* promoted, still waiting for a free slot */
  ck_assert_int_eq(t.status, FVL_TRIAL_RUNNING);
  fvl_trial_clear(&t);
  ck_assert_int_eq(fvl_store_release(s, 1), 1);
  fvl_store_get_trial(s, 1, &t);
  ck_assert_int_eq(t.wait_rung, 0);
  fvl_trial_clear(&t);
  ck_assert_int_eq(fvl_store_release(s, 2), 0);   /* pruned: nothing to release */
  fvl_store_get_trial(s, 2, &t);
  ck_assert_int_eq(t.status, FVL_TRIAL_PRUNED);
  ck_assert_int_eq(t.wait_rung, 1);
  ck_assert_double_eq_tol(t.wait_value, 0.1, 1e-12);
  ck_assert_str_eq(t.metrics, "{\"acc\":0.1}");
  fvl_trial_clear(&t);
  /* the pruned worker's late finish and reports change nothing */
  ck_assert_int_eq(fvl_store_finish_trial(s, 2, 1, FVL_TRIAL_DONE, "{}", NULL, 0), 0);
  ck_assert_int_eq(fvl_store_add_report(s, 2, 1, 5, "{}"), 0);
  ck_assert_int_eq(fvl_store_prune(s, 2, 2, "{}"), 0);
  fvl_store_close(s);
}
END_TEST

typedef struct { int n; char seen[8][64]; } rows_t;
static int collect(void *ud, int ncol, const char *const *names, const fvl_sql_value *v) {
  rows_t *r = ud;
  ck_assert_int_eq(ncol, 3);
  ck_assert_str_eq(names[0], "id");
  ck_assert_int_eq(v[0].type, FVL_SQL_INT);
  ck_assert_int_eq(v[1].type, FVL_SQL_TEXT);
  ck_assert_int_eq(v[2].type, FVL_SQL_NULL);
  snprintf(r->seen[r->n++], 64, "%lld:%s", (long long)v[0].i, v[1].s);
  return 0;
}

START_TEST(exec_with_parameters) {
  fvl_store *s = fvl_store_open(tpath("e.sqlite"));
  for (int i = 1; i <= 4; i++) fvl_store_add_trial(s, i, i % 2 ? "{\"odd\":true}" : "{}", i);
  fvl_sql_value p[2] = {{.type = FVL_SQL_INT, .i = 2}, {.type = FVL_SQL_TEXT, .s = "{}", .len = 2}};
  rows_t r = {0};
  int n = fvl_store_exec(s, "SELECT id, config, metrics FROM trials WHERE id >= ? AND config = ? ORDER BY id",
                         2, p, collect, &r);
  ck_assert_int_eq(n, 2);
  ck_assert_str_eq(r.seen[0], "2:{}");
  ck_assert_str_eq(r.seen[1], "4:{}");
  fvl_sql_value q = {.type = FVL_SQL_REAL, .d = 0.25};
  ck_assert_int_eq(fvl_store_exec(s, "UPDATE trials SET wait_value = ? WHERE id > 2", 1, &q, NULL, NULL), 2);
  ck_assert_int_eq(fvl_store_exec(s, "SELECT * FROM nowhere", 0, NULL, NULL, NULL), -1);
  ck_assert_msg(strstr(fvl_errmsg(), "no such table"), "%s", fvl_errmsg());
  ck_assert_int_eq(fvl_store_exec(s, "SELECT ?", 0, NULL, NULL, NULL), -1);
  ck_assert_msg(strstr(fvl_errmsg(), "1 parameters but 0 values"), "%s", fvl_errmsg());
  ck_assert_int_eq(fvl_store_exec(s, "SELECT 1; SELECT 2", 0, NULL, NULL, NULL), -1);
  ck_assert_msg(strstr(fvl_errmsg(), "one statement"), "%s", fvl_errmsg());
  /* transactions */
  ck_assert_int_eq(fvl_store_begin(s), 0);
  ck_assert_int_eq(fvl_store_begin(s), -1);
  fvl_store_exec(s, "DELETE FROM trials", 0, NULL, NULL, NULL);
  ck_assert_int_eq(fvl_store_rollback(s), 0);
  ck_assert_int_eq(scalar(s, "SELECT count(*) FROM trials"), 4);
  ck_assert_int_eq(fvl_store_commit(s), -1);
  fvl_store_close(s);
}
END_TEST

static void finish(fvl_store *s, int64_t id, int status, const char *metrics) {
  int a = fvl_store_start_trial(s, id, 0, -1);
  ck_assert_int_ge(a, 1);
  char buf[64];
  snprintf(buf, sizeof buf, "{\"step\":%lld}", (long long)id);
  ck_assert_int_eq(fvl_store_add_report(s, id, a, id, buf), 1);
  if (status != FVL_TRIAL_RUNNING)
    ck_assert_int_eq(fvl_store_finish_trial(s, id, a, status, metrics, NULL, 0), 1);
}

START_TEST(merge_unions_shards) {
  fvl_store *a = fvl_store_open(tpath("shard0.sqlite"));
  fvl_store *b = fvl_store_open(tpath("shard1.sqlite"));
  fvl_store *out = fvl_store_open(tpath("merged.sqlite"));
  fvl_store_meta_set(a, "name", "sweep");
  for (int i = 1; i <= 6; i++) {
    fvl_store_add_trial(a, i, "{}", i);
    fvl_store_add_trial(b, i, "{}", i);
  }
  /* shard 0 ran the even ids, shard 1 the odd ones; id 3 was still running on shard 1 but
   * finished in shard 0 after a re-run */
  finish(a, 2, FVL_TRIAL_DONE, "{\"acc\":2}");
  finish(a, 4, FVL_TRIAL_DONE, "{\"acc\":4}");
  finish(a, 6, FVL_TRIAL_FAILED, NULL);
  finish(a, 3, FVL_TRIAL_DONE, "{\"acc\":3}");
  finish(b, 1, FVL_TRIAL_DONE, "{\"acc\":1}");
  finish(b, 3, FVL_TRIAL_RUNNING, NULL);
  finish(b, 5, FVL_TRIAL_DONE, "{\"acc\":5}");
  ck_assert_int_eq(fvl_store_merge(out, tpath("shard0.sqlite")), 6);
  ck_assert_int_eq(fvl_store_merge(out, tpath("shard1.sqlite")), 2);   /* 1 and 5 */
  ck_assert_int_eq(fvl_store_merge(out, tpath("shard1.sqlite")), 0);   /* idempotent */
  fvl_trial *t;
  size_t n;
  ck_assert_int_eq(fvl_store_list_trials(out, &t, &n), 0);
  ck_assert_int_eq(n, 6);
  const char *want[] = {"{\"acc\":1}", "{\"acc\":2}", "{\"acc\":3}", "{\"acc\":4}", "{\"acc\":5}"};
  for (int i = 0; i < 5; i++) {
    ck_assert_int_eq(t[i].status, FVL_TRIAL_DONE);
    ck_assert_str_eq(t[i].metrics, want[i]);
  }
  ck_assert_int_eq(t[5].status, FVL_TRIAL_FAILED);
  fvl_trials_free(t, n);
  /* reports follow their trial, once each */
  ck_assert_int_eq(scalar(out, "SELECT count(*) FROM reports"), 6);
  ck_assert_int_eq(scalar(out, "SELECT count(*) FROM reports WHERE trial = 3"), 1);
  char *v;
  ck_assert_int_eq(fvl_store_meta_get(out, "name", &v), 1);
  free(v);
  ck_assert_int_eq(fvl_store_merge(out, tpath("merged.sqlite")), -1);
  ck_assert_msg(strstr(fvl_errmsg(), "destination store itself"), "%s", fvl_errmsg());
  ck_assert_int_eq(fvl_store_merge(out, tpath("missing.sqlite")), -1);
  ck_assert_msg(strstr(fvl_errmsg(), "cannot read"), "%s", fvl_errmsg());
  fvl_store_close(a);
  fvl_store_close(b);
  fvl_store_close(out);
}
END_TEST

/* several processes write reports and finish trials in the same store at once */
START_TEST(concurrent_writers) {
  const char *p = tpath("c.sqlite");
  fvl_store *s = fvl_store_open(p);
  for (int i = 1; i <= 4; i++) fvl_store_add_trial(s, i, "{}", i);
  fvl_store_close(s);
  pid_t kids[4];
  for (int k = 0; k < 4; k++) {
    kids[k] = fork();
    if (kids[k] == 0) {
      fvl_store *c = fvl_store_open(p);
      if (!c) _exit(2);
      int a = fvl_store_start_trial(c, k + 1, getpid(), -1);
      if (a != 1) _exit(3);
      for (int st = 1; st <= 50; st++)
        if (fvl_store_add_report(c, k + 1, a, st, "{\"x\":1}") != 1) _exit(4);
      if (fvl_store_finish_trial(c, k + 1, a, FVL_TRIAL_DONE, "{\"x\":1}", NULL, 0) != 1) _exit(5);
      fvl_store_close(c);
      _exit(0);
    }
  }
  for (int k = 0; k < 4; k++) {
    int st;
    waitpid(kids[k], &st, 0);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "writer %d exited with %d", k, WEXITSTATUS(st));
  }
  s = fvl_store_open(p);
  ck_assert_int_eq(scalar(s, "SELECT count(*) FROM reports"), 200);
  ck_assert_int_eq(scalar(s, "SELECT count(*) FROM trials WHERE status = 'done'"), 4);
  fvl_store_close(s);
}
END_TEST

static int wait_exit(pid_t pid, int *code, int *sig) {
  for (int i = 0; i < 1000; i++) {
    int r = fvl_proc_poll(pid, code, sig);
    if (r != 0) return r;
    usleep(10000);
  }
  return 0;
}

START_TEST(spawn_poll_kill) {
  int code, sig;
  char *ok[] = {"sh", "-c", "test \"$FVL_X\" = hello && echo out && echo err >&2 && exit 3", NULL};
  char *env[] = {"FVL_X=hello", NULL};
  pid_t pid = fvl_proc_spawn("/bin/sh", ok, env, tpath("log.txt"));
  ck_assert_msg(pid > 0, "%s", fvl_errmsg());
  ck_assert_int_eq(wait_exit(pid, &code, &sig), 1);
  ck_assert_int_eq(code, 3);
  ck_assert_int_eq(sig, 0);
  FILE *f = fopen(tpath("log.txt"), "r");
  char buf[64] = {0};
  size_t got = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  ck_assert_int_eq(got, 8);
  ck_assert_str_eq(buf, "out\nerr\n");

  char *segv[] = {"sh", "-c", "kill -SEGV $$", NULL};
  pid = fvl_proc_spawn("/bin/sh", segv, NULL, NULL);
  ck_assert_int_eq(wait_exit(pid, &code, &sig), 1);
  ck_assert_int_eq(sig, SIGSEGV);
  ck_assert_str_eq(fvl_signal_name(sig), "SIGSEGV");

  char *slow[] = {"sleep", "30", NULL};
  pid = fvl_proc_spawn("/bin/sleep", slow, NULL, NULL);
  ck_assert_int_eq(fvl_proc_poll(pid, &code, &sig), 0);
  ck_assert_int_eq(fvl_proc_alive(pid), 1);
  ck_assert_int_eq(fvl_proc_kill(pid, SIGKILL), 0);
  for (int i = 0; i < 200 && fvl_proc_alive(pid); i++) usleep(5000);
  ck_assert_int_eq(fvl_proc_alive(pid), 0);   /* a zombie until reaped: not alive */
  ck_assert_int_eq(wait_exit(pid, &code, &sig), 1);
  ck_assert_int_eq(sig, SIGKILL);
  ck_assert_int_eq(fvl_proc_poll(pid, &code, &sig), -1);   /* reaped */
  ck_assert_msg(strstr(fvl_errmsg(), "not a child"), "%s", fvl_errmsg());

  ck_assert_int_eq(fvl_proc_spawn("/no/such/program", slow, NULL, NULL), -1);
  ck_assert_msg(strstr(fvl_errmsg(), "cannot run /no/such/program"), "%s", fvl_errmsg());
  char *bad_env[] = {"NOEQUALS", NULL};
  ck_assert_int_eq(fvl_proc_spawn("/bin/sh", ok, bad_env, NULL), -1);
  ck_assert_msg(strstr(fvl_errmsg(), "KEY=VALUE"), "%s", fvl_errmsg());
  char exe[4096];
  ck_assert_int_eq(fvl_self_exe(exe, sizeof exe), 0);
  ck_assert_msg(strstr(exe, "test_store") != NULL, "%s", exe);
}
END_TEST

START_TEST(files_and_time) {
  char p[600];
  snprintf(p, sizeof p, "%s/x/y/z", dir);
  ck_assert_int_eq(fvl_mkdirs(p), 0);
  ck_assert_int_eq(fvl_mkdirs(p), 0);
  snprintf(p, sizeof p, "%s/x/y/z/out.csv", dir);
  ck_assert_int_eq(fvl_write_atomic(p, "a,b\n1,2\n", 8, NULL), 0);
  ck_assert_int_eq(fvl_write_atomic(p, "a\n", 2, NULL), 0);
  FILE *f = fopen(p, "r");
  char buf[16] = {0};
  ck_assert_int_eq(fread(buf, 1, sizeof buf, f), 2);
  fclose(f);
  ck_assert_str_eq(buf, "a\n");
  ck_assert_int_eq(fvl_mkdirs(p), -1);   /* a file is in the way */
  ck_assert_msg(strstr(fvl_errmsg(), "not a directory"), "%s", fvl_errmsg());
  double t0 = fvl_time_now();
  ck_assert_int_eq(fvl_sleep(0.12, "sleep"), 0);
  double dt = fvl_time_now() - t0;
  ck_assert(dt >= 0.119 && dt < 1.0);
  fvl_abort_request();
  ck_assert_int_eq(fvl_sleep(5, "sweep"), -1);
  ck_assert_str_eq(fvl_errmsg(), "sweep: interrupted");
  fvl_abort_clear();
  ck_assert_int_eq(fvl_trial_status_parse("pruned"), FVL_TRIAL_PRUNED);
  ck_assert_int_eq(fvl_trial_status_parse("finished"), -1);
  ck_assert_str_eq(fvl_trial_status_name(FVL_TRIAL_DONE), "done");
}
END_TEST

int main(void) {
  Suite *s = suite_create("store");
  TCase *tc = tcase_create("store");
  tcase_add_checked_fixture(tc, mkdir_tmp, rm_tmp);
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, open_creates_schema_and_meta);
  tcase_add_test(tc, open_rejects_non_store);
  tcase_add_test(tc, trial_lifecycle_and_stale_attempts);
  tcase_add_test(tc, halving_wait_promote_prune);
  tcase_add_test(tc, exec_with_parameters);
  tcase_add_test(tc, merge_unions_shards);
  tcase_add_test(tc, concurrent_writers);
  tcase_add_test(tc, spawn_poll_kill);
  tcase_add_test(tc, files_and_time);
  suite_add_tcase(s, tc);
  return fvl_check_run(s);
}
