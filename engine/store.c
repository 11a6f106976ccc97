/* store.c — the SQLite sweep store (see store.h); the process/OS toolkit is sys.c. */
#define _GNU_SOURCE
#include "store.h"
#include "store_pg.h"
#include "core.h"
#include <sqlite3.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* One interface, two stores: a SQLite file (this file) or a PostgreSQL database (pg set:
 * every function hands over to store_pg.c). */
struct fvl_store {
  sqlite3 *db;
  char *path;
  int in_tx;
  fvl_pgstore *pg;
};

static const char *status_names[] = {"pending", "running", "done", "failed", "pruned"};

const char *fvl_trial_status_name(int st) {
  return (st >= 0 && st <= FVL_TRIAL_PRUNED) ? status_names[st] : "?";
}
int fvl_trial_status_parse(const char *name) {
  for (int i = 0; i <= FVL_TRIAL_PRUNED; i++)
    if (name && strcmp(name, status_names[i]) == 0) return i;
  return fvl_err("store: status '%s' is not one of pending|running|done|failed|pruned",
                 name ? name : "(null)");
}

static int dberr(fvl_store *s, const char *fn) {
  return fvl_err("%s: %s: %s", fn, s->path, sqlite3_errmsg(s->db));
}

static char *dupstr(const char *p) {
  if (!p) return NULL;
  size_t n = strlen(p) + 1;
  char *q = malloc(n);
  if (q) memcpy(q, p, n);
  return q;
}

/* one statement without results */
static int run(fvl_store *s, const char *fn, const char *sql) {
  char *msg = NULL;
  if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
    fvl_err("%s: %s: %s", fn, s->path, msg ? msg : sqlite3_errmsg(s->db));
    sqlite3_free(msg);
    return -1;
  }
  return 0;
}

static const char *schema =
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);"
    "CREATE TABLE IF NOT EXISTS trials("
    " id INTEGER PRIMARY KEY, config TEXT NOT NULL, seed INTEGER NOT NULL,"
    " status TEXT NOT NULL DEFAULT 'pending', attempt INTEGER NOT NULL DEFAULT 0,"
    " pid INTEGER, host TEXT, started REAL, ended REAL, metrics TEXT, error TEXT,"
    " killed INTEGER NOT NULL DEFAULT 0, rung INTEGER NOT NULL DEFAULT 0,"
    " wait_rung INTEGER NOT NULL DEFAULT 0, wait_value REAL, lease REAL);"
    "CREATE TABLE IF NOT EXISTS reports("
    " trial INTEGER NOT NULL, attempt INTEGER NOT NULL, step INTEGER NOT NULL,"
    " time REAL NOT NULL, metrics TEXT NOT NULL);"
    "CREATE INDEX IF NOT EXISTS reports_trial ON reports(trial, step);";

static int empty_file(const char *path) {
  struct stat sb;
  return stat(path, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size == 0;
}
static int store_truncated(const char *path) {
  char wal[4200];
  snprintf(wal, sizeof wal, "%s-wal", path);
  for (int i = 0; i < 20; i++) {   /* up to 1 s for a concurrent creator */
    struct stat sb;
    if (!empty_file(path)) return 0;
    if (stat(wal, &sb) == 0 && sb.st_size > 0) return 0;
    struct timespec ts = {0, 50 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  return 1;
}

static int rollback_failed(fvl_store *s);

fvl_store *fvl_store_open(const char *path) {
  if (!path || !*path) { fvl_err("store.open: path must be a non-empty string"); return NULL; }
  fvl_store *s = calloc(1, sizeof *s);
  if (!s) { fvl_err("store.open: out of memory"); return NULL; }
  s->path = dupstr(path);
  if (fvl_pg_is_url(path)) {
    s->pg = fvl_pg_open(path);
    if (!s->pg) { fvl_store_close(s); return NULL; }
    return s;
  }
  /* SQLite takes an empty file for a new database: a store truncated to 0 bytes would silently
   * start over (every trial run again). A new store is a path that does not exist yet. An empty
   * file with a non-empty write-ahead log is fine (WAL mode, killed before a checkpoint), and a
   * driver that is creating the store right now writes its first page within moments. */
  if (store_truncated(path)) {
    fvl_err("store.open: %s is empty (0 bytes): a truncated sweep store? Remove it to start a new sweep", path);
    fvl_store_close(s);
    return NULL;
  }
  if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK) {
    fvl_err("store.open: cannot open %s: %s", path, s->db ? sqlite3_errmsg(s->db) : "out of memory");
    fvl_store_close(s);
    return NULL;
  }
  sqlite3_busy_timeout(s->db, 60000);
  /* journal_mode returns a row; "file is not a database" shows up here. Switching to WAL needs
   * the file to itself, and SQLite answers BUSY at once (no busy handler) while another driver
   * is creating or converting the same new store, so that answer is retried for up to 60 s. */
  char *msg = NULL;
  int rc;
  for (int tries = 0;; tries++) {
    rc = sqlite3_exec(s->db, "PRAGMA journal_mode=WAL", NULL, NULL, &msg);
    if ((rc != SQLITE_BUSY && rc != SQLITE_LOCKED) || tries >= 1200) break;
    sqlite3_free(msg);
    msg = NULL;
    struct timespec ts = {0, 50 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  if (rc != SQLITE_OK) {
    fvl_err("store.open: %s is not a usable sweep store (%s)", path, msg ? msg : sqlite3_errmsg(s->db));
    sqlite3_free(msg);
    fvl_store_close(s);
    return NULL;
  }
  if (run(s, "store.open", "PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=OFF") ||
      fvl_store_begin(s) || run(s, "store.open", schema) || fvl_store_commit(s)) {
    rollback_failed(s);
    fvl_store_close(s);
    return NULL;
  }
  /* a store written by something else: the trials table must have our columns */
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(s->db, "SELECT id, config, seed, status, attempt, wait_value FROM trials LIMIT 0",
                         -1, &st, NULL) != SQLITE_OK) {
    fvl_err("store.open: %s has a trials table that is not a sweep store's (%s)", path,
            sqlite3_errmsg(s->db));
    sqlite3_finalize(st);
    fvl_store_close(s);
    return NULL;
  }
  sqlite3_finalize(st);
  /* stores written before leases existed get the column */
  if (sqlite3_prepare_v2(s->db, "SELECT lease FROM trials LIMIT 0", -1, &st, NULL) != SQLITE_OK &&
      run(s, "store.open", "ALTER TABLE trials ADD COLUMN lease REAL")) {
    sqlite3_finalize(st);
    fvl_store_close(s);
    return NULL;
  }
  sqlite3_finalize(st);
  return s;
}

const char *fvl_store_kind(const fvl_store *s) { return s->pg ? "postgresql" : "sqlite"; }
double fvl_store_now(fvl_store *s) { return s->pg ? fvl_pg_now(s->pg) : fvl_time_now(); }

void fvl_store_close(fvl_store *s) {
  if (!s) return;
  if (s->db) sqlite3_close_v2(s->db);
  fvl_pg_close(s->pg);
  free(s->path);
  free(s);
}

const char *fvl_store_path(const fvl_store *s) { return s ? s->path : NULL; }

int fvl_store_begin(fvl_store *s) {
  if (s->pg) return fvl_pg_begin(s->pg);
  if (s->in_tx) return fvl_err("store.begin: %s: a transaction is already open", s->path);
  if (run(s, "store.begin", "BEGIN IMMEDIATE")) return -1;
  s->in_tx = 1;
  return 0;
}
int fvl_store_commit(fvl_store *s) {
  if (s->pg) return fvl_pg_commit(s->pg);
  if (!s->in_tx) return fvl_err("store.commit: %s: no transaction is open", s->path);
  if (run(s, "store.commit", "COMMIT")) return -1;
  s->in_tx = 0;
  return 0;
}
int fvl_store_rollback(fvl_store *s) {
  if (s->pg) return fvl_pg_rollback(s->pg);
  if (!s->in_tx) return 0;
  s->in_tx = 0;
  if (sqlite3_get_autocommit(s->db)) return 0;   /* sqlite already rolled back */
  return run(s, "store.rollback", "ROLLBACK");
}
/* rolls back after a failure, keeping the failure's message (a failing ROLLBACK would replace
 * it); returns -1 */
static int rollback_failed(fvl_store *s) {
  char keep[1024];
  snprintf(keep, sizeof keep, "%s", fvl_errmsg());
  fvl_store_rollback(s);
  return fvl_err("%s", keep);
}

/* ---------------------------------------------------------------- statements */
typedef struct { fvl_store *s; sqlite3_stmt *st; const char *fn; } stmt_t;

static int prep(stmt_t *q, fvl_store *s, const char *fn, const char *sql) {
  q->s = s;
  q->fn = fn;
  q->st = NULL;
  if (sqlite3_prepare_v2(s->db, sql, -1, &q->st, NULL) != SQLITE_OK) return dberr(s, fn);
  return 0;
}
static void bind_text(stmt_t *q, int i, const char *v) {
  if (v) sqlite3_bind_text(q->st, i, v, -1, SQLITE_TRANSIENT);
  else sqlite3_bind_null(q->st, i);
}
/* steps a statement that returns no rows; returns changes or -1 */
static int step_done(stmt_t *q) {
  int rc = sqlite3_step(q->st);
  int out = rc == SQLITE_DONE ? sqlite3_changes(q->s->db) : dberr(q->s, q->fn);
  sqlite3_finalize(q->st);
  q->st = NULL;
  return out;
}

int fvl_store_meta_set(fvl_store *s, const char *key, const char *value) {
  if (s->pg) return fvl_pg_meta_set(s->pg, key, value);
  stmt_t q;
  if (!key) return fvl_err("store.meta_set: key must be a string");
  if (prep(&q, s, "store.meta_set", "INSERT OR REPLACE INTO meta(key, value) VALUES(?, ?)")) return -1;
  bind_text(&q, 1, key);
  bind_text(&q, 2, value);
  return step_done(&q) < 0 ? -1 : 0;
}

int fvl_store_meta_get(fvl_store *s, const char *key, char **out) {
  if (s->pg) return fvl_pg_meta_get(s->pg, key, out);
  stmt_t q;
  *out = NULL;
  if (prep(&q, s, "store.meta_get", "SELECT value FROM meta WHERE key = ?")) return -1;
  bind_text(&q, 1, key);
  int rc = sqlite3_step(q.st), found = 0;
  if (rc == SQLITE_ROW) {
    found = 1;
    *out = dupstr((const char *)sqlite3_column_text(q.st, 0));
  } else if (rc != SQLITE_DONE) {
    found = dberr(s, "store.meta_get");
  }
  sqlite3_finalize(q.st);
  return found;
}

int fvl_store_add_trial(fvl_store *s, int64_t id, const char *config, int64_t seed) {
  if (s->pg) return fvl_pg_add_trial(s->pg, id, config, seed);
  stmt_t q;
  if (id < 1) return fvl_err("store.add_trial: id must be >= 1, got %lld", (long long)id);
  if (!config) return fvl_err("store.add_trial: config must be a JSON string, got NULL");
  if (prep(&q, s, "store.add_trial",
           "INSERT OR IGNORE INTO trials(id, config, seed) VALUES(?, ?, ?)")) return -1;
  sqlite3_bind_int64(q.st, 1, id);
  bind_text(&q, 2, config);
  sqlite3_bind_int64(q.st, 3, seed);
  return step_done(&q);
}

#define TRIAL_COLS "id, config, seed, status, attempt, pid, host, started, ended, metrics, error," \
                   " killed, rung, wait_rung, wait_value, lease"

static double col_real(sqlite3_stmt *st, int i) {
  return sqlite3_column_type(st, i) == SQLITE_NULL ? NAN : sqlite3_column_double(st, i);
}
static char *col_text(sqlite3_stmt *st, int i) {
  return sqlite3_column_type(st, i) == SQLITE_NULL ? NULL
                                                    : dupstr((const char *)sqlite3_column_text(st, i));
}
static void read_trial(sqlite3_stmt *st, fvl_trial *t) {
  memset(t, 0, sizeof *t);
  t->id = sqlite3_column_int64(st, 0);
  t->config = col_text(st, 1);
  t->seed = sqlite3_column_int64(st, 2);
  const char *stat = (const char *)sqlite3_column_text(st, 3);
  t->status = FVL_TRIAL_PENDING;
  for (int i = 0; i <= FVL_TRIAL_PRUNED; i++)
    if (stat && strcmp(stat, status_names[i]) == 0) t->status = i;
  t->attempt = sqlite3_column_int(st, 4);
  t->pid = sqlite3_column_int(st, 5);
  t->host = col_text(st, 6);
  t->started = col_real(st, 7);
  t->ended = col_real(st, 8);
  t->metrics = col_text(st, 9);
  t->error = col_text(st, 10);
  t->killed = sqlite3_column_int(st, 11);
  t->rung = sqlite3_column_int(st, 12);
  t->wait_rung = sqlite3_column_int(st, 13);
  t->wait_value = col_real(st, 14);
  t->lease = col_real(st, 15);
}

void fvl_trial_clear(fvl_trial *t) {
  if (!t) return;
  free(t->config);
  free(t->metrics);
  free(t->error);
  free(t->host);
  t->config = t->metrics = t->error = t->host = NULL;
}
void fvl_trials_free(fvl_trial *t, size_t n) {
  if (!t) return;
  for (size_t i = 0; i < n; i++) fvl_trial_clear(&t[i]);
  free(t);
}

int fvl_store_get_trial(fvl_store *s, int64_t id, fvl_trial *t) {
  if (s->pg) return fvl_pg_get_trial(s->pg, id, t);
  stmt_t q;
  memset(t, 0, sizeof *t);
  if (prep(&q, s, "store.get_trial", "SELECT " TRIAL_COLS " FROM trials WHERE id = ?")) return -1;
  sqlite3_bind_int64(q.st, 1, id);
  int rc = sqlite3_step(q.st), found = 0;
  if (rc == SQLITE_ROW) { read_trial(q.st, t); found = 1; }
  else if (rc != SQLITE_DONE) found = dberr(s, "store.get_trial");
  sqlite3_finalize(q.st);
  return found;
}

int fvl_store_list_trials(fvl_store *s, fvl_trial **out, size_t *n) {
  if (s->pg) return fvl_pg_list_trials(s->pg, out, n);
  stmt_t q;
  *out = NULL;
  *n = 0;
  if (prep(&q, s, "store.list_trials", "SELECT " TRIAL_COLS " FROM trials ORDER BY id")) return -1;
  size_t cap = 0;
  int rc;
  while ((rc = sqlite3_step(q.st)) == SQLITE_ROW) {
    if (*n == cap) {
      cap = cap ? 2 * cap : 16;
      fvl_trial *grown = realloc(*out, cap * sizeof **out);
      if (!grown) { rc = SQLITE_NOMEM; break; }
      *out = grown;
    }
    read_trial(q.st, &(*out)[(*n)++]);
  }
  if (rc != SQLITE_DONE) {
    if (rc == SQLITE_NOMEM) fvl_err("store.list_trials: out of memory");
    else dberr(s, "store.list_trials");
    sqlite3_finalize(q.st);
    fvl_trials_free(*out, *n);
    *out = NULL;
    *n = 0;
    return -1;
  }
  sqlite3_finalize(q.st);
  return 0;
}

static char hostname_buf[256];
static const char *hostname(void) {
  if (!hostname_buf[0] && gethostname(hostname_buf, sizeof hostname_buf - 1) != 0)
    snprintf(hostname_buf, sizeof hostname_buf, "?");
  return hostname_buf;
}

/* the columns of a trial whose attempt starts (claim, start_trial); ?1 pid, ?2 host, ?3 now */
#define START_SET "status = 'running', attempt = attempt + 1, pid = ?1, host = ?2, started = ?3," \
  " ended = NULL, metrics = NULL, error = NULL, killed = 0, wait_rung = 0, wait_value = NULL"
static void bind_start(stmt_t *q, int pid, double now) {
  sqlite3_bind_int(q->st, 1, pid);
  bind_text(q, 2, hostname());
  sqlite3_bind_double(q->st, 3, now);
}
/* after the UPDATE that started an attempt of trial id: drops the earlier attempt's reports and
 * returns the new attempt number (>= 1), or -1 */
static int attempt_started(fvl_store *s, const char *fn, int64_t id) {
  stmt_t q;
  if (prep(&q, s, fn, "DELETE FROM reports WHERE trial = ?")) return -1;
  sqlite3_bind_int64(q.st, 1, id);
  if (step_done(&q) < 0) return -1;
  if (prep(&q, s, fn, "SELECT attempt FROM trials WHERE id = ?")) return -1;
  sqlite3_bind_int64(q.st, 1, id);
  int attempt = -1;
  if (sqlite3_step(q.st) == SQLITE_ROW) attempt = sqlite3_column_int(q.st, 0);
  else dberr(s, fn);
  sqlite3_finalize(q.st);
  if (attempt == 0) return fvl_err("%s: trial %lld started but holds attempt 0", fn, (long long)id);
  return attempt;
}

int fvl_store_start_trial(fvl_store *s, int64_t id, int pid, int expect_attempt) {
  if (s->pg) return fvl_pg_start_trial(s->pg, id, pid, expect_attempt);
  const char *fn = "store.start_trial";
  stmt_t q;
  int attempt = -1;
  if (fvl_store_begin(s)) return -1;
  if (prep(&q, s, fn, "UPDATE trials SET " START_SET ", lease = NULL WHERE id = ?4"
                      " AND status NOT IN ('done', 'pruned') AND (?5 < 0 OR attempt = ?5)"))
    goto fail;
  bind_start(&q, pid, fvl_time_now());
  sqlite3_bind_int64(q.st, 4, id);
  sqlite3_bind_int(q.st, 5, expect_attempt);
  int changed = step_done(&q);
  if (changed < 0) goto fail;
  if (changed == 0) {
    fvl_trial t;
    int found = fvl_store_get_trial(s, id, &t);
    fvl_trial_clear(&t);
    if (found < 0) goto fail;
    if (found == 0) {
      fvl_err("%s: %s has no trial %lld", fn, s->path, (long long)id);
      goto fail;
    }
    attempt = 0;
  } else if ((attempt = attempt_started(s, fn, id)) < 0) {
    goto fail;
  }
  if (fvl_store_commit(s)) goto fail;
  return attempt;
fail:
  return rollback_failed(s);
}

/* what a claim may take; ?1 now, ?2 max_attempts, ?3 retry_before (see store.h) */
#define CLAIMABLE "((status = 'pending' AND NOT (wait_rung > 0 AND rung < wait_rung))" \
  " OR (status = 'failed' AND killed = 1 AND attempt < ?2)" \
  " OR (status = 'failed' AND killed = 0 AND ended < ?3)" \
  " OR (status = 'running' AND lease IS NOT NULL AND lease < ?1 AND attempt < ?2))"

int fvl_store_claim(fvl_store *s, int pid, double lease_s, int max_attempts, double retry_before,
                    int sign, int64_t *id) {
  if (s->pg) return fvl_pg_claim(s->pg, pid, lease_s, max_attempts, retry_before, sign, id);
  const char *fn = "store.claim";
  stmt_t q;
  *id = 0;
  if (!(lease_s > 0)) return fvl_err("%s: lease must be > 0 seconds, got %g", fn, lease_s);
  if (fvl_store_begin(s)) return -1;
  double now = fvl_time_now();
  if (prep(&q, s, fn, "SELECT id FROM trials WHERE " CLAIMABLE
                      " ORDER BY CASE WHEN status = 'pending' AND wait_rung > 0 THEN 0 ELSE 1 END,"
                      " CASE WHEN status = 'pending' AND wait_rung > 0 THEN wait_value * ?4 END DESC, id"
                      " LIMIT 1"))
    goto fail;
  sqlite3_bind_double(q.st, 1, now);
  sqlite3_bind_int(q.st, 2, max_attempts);
  sqlite3_bind_double(q.st, 3, retry_before);
  sqlite3_bind_int(q.st, 4, sign < 0 ? -1 : 1);
  int rc = sqlite3_step(q.st);
  if (rc == SQLITE_ROW) *id = sqlite3_column_int64(q.st, 0);
  sqlite3_finalize(q.st);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) { dberr(s, fn); goto fail; }
  if (*id == 0) { if (fvl_store_commit(s)) goto fail; return 0; }
  if (prep(&q, s, fn, "UPDATE trials SET " START_SET ", lease = ?4 WHERE id = ?5")) goto fail;
  bind_start(&q, pid, now);
  sqlite3_bind_double(q.st, 4, now + lease_s);
  sqlite3_bind_int64(q.st, 5, *id);
  if (step_done(&q) != 1) goto fail;
  int attempt = attempt_started(s, fn, *id);
  if (attempt < 1 || fvl_store_commit(s)) goto fail;
  return attempt;
fail:
  *id = 0;
  return rollback_failed(s);
}

int fvl_store_heartbeat(fvl_store *s, int64_t id, int attempt, double lease_s) {
  if (s->pg) return fvl_pg_heartbeat(s->pg, id, attempt, lease_s);
  stmt_t q;
  if (!(lease_s > 0)) return fvl_err("store.heartbeat: lease must be > 0 seconds, got %g", lease_s);
  if (prep(&q, s, "store.heartbeat",
           "UPDATE trials SET lease = ? WHERE id = ? AND attempt = ? AND status = 'running'"))
    return -1;
  sqlite3_bind_double(q.st, 1, fvl_time_now() + lease_s);
  sqlite3_bind_int64(q.st, 2, id);
  sqlite3_bind_int(q.st, 3, attempt);
  return step_done(&q);
}

int fvl_store_park(fvl_store *s, int64_t id, int attempt) {
  if (s->pg) return fvl_pg_park(s->pg, id, attempt);
  stmt_t q;
  if (prep(&q, s, "store.park",
           "UPDATE trials SET status = 'pending', pid = 0, lease = NULL WHERE id = ? AND attempt = ?"
           " AND status = 'running' AND wait_rung > 0 AND rung < wait_rung"))
    return -1;
  sqlite3_bind_int64(q.st, 1, id);
  sqlite3_bind_int(q.st, 2, attempt);
  return step_done(&q);
}

int fvl_store_set_pid(fvl_store *s, int64_t id, int attempt, int pid) {
  if (s->pg) return fvl_pg_set_pid(s->pg, id, attempt, pid);
  stmt_t q;
  if (prep(&q, s, "store.set_pid", "UPDATE trials SET pid = ? WHERE id = ? AND attempt = ?")) return -1;
  sqlite3_bind_int(q.st, 1, pid);
  sqlite3_bind_int64(q.st, 2, id);
  sqlite3_bind_int(q.st, 3, attempt);
  return step_done(&q);
}

int fvl_store_finish_trial(fvl_store *s, int64_t id, int attempt, int status, const char *metrics,
                           const char *error, int killed) {
  if (s->pg) return fvl_pg_finish_trial(s->pg, id, attempt, status, metrics, error, killed);
  stmt_t q;
  if (status != FVL_TRIAL_DONE && status != FVL_TRIAL_FAILED && status != FVL_TRIAL_PRUNED)
    return fvl_err("store.finish_trial: status must be done, failed or pruned, got %s",
                   fvl_trial_status_name(status));
  if (prep(&q, s, "store.finish_trial",
           "UPDATE trials SET status = ?, metrics = ?, error = ?, killed = ?, ended = ?,"
           " wait_rung = 0 WHERE id = ? AND attempt = ? AND status = 'running'"))
    return -1;
  bind_text(&q, 1, status_names[status]);
  bind_text(&q, 2, metrics);
  bind_text(&q, 3, error);
  sqlite3_bind_int(q.st, 4, killed ? 1 : 0);
  sqlite3_bind_double(q.st, 5, fvl_time_now());
  sqlite3_bind_int64(q.st, 6, id);
  sqlite3_bind_int(q.st, 7, attempt);
  return step_done(&q);
}

int fvl_store_add_report(fvl_store *s, int64_t id, int attempt, int64_t step, const char *metrics) {
  if (s->pg) return fvl_pg_add_report(s->pg, id, attempt, step, metrics);
  stmt_t q;
  if (!metrics) return fvl_err("store.add_report: metrics must be a JSON string, got NULL");
  if (prep(&q, s, "store.add_report",
           "INSERT INTO reports(trial, attempt, step, time, metrics) SELECT ?, ?, ?, ?, ?"
           " WHERE EXISTS (SELECT 1 FROM trials WHERE id = ? AND attempt = ? AND status = 'running')"))
    return -1;
  sqlite3_bind_int64(q.st, 1, id);
  sqlite3_bind_int(q.st, 2, attempt);
  sqlite3_bind_int64(q.st, 3, step);
  sqlite3_bind_double(q.st, 4, fvl_time_now());
  bind_text(&q, 5, metrics);
  sqlite3_bind_int64(q.st, 6, id);
  sqlite3_bind_int(q.st, 7, attempt);
  return step_done(&q);
}

int fvl_store_list_reports(fvl_store *s, int64_t id, fvl_report **out, size_t *n) {
  if (s->pg) return fvl_pg_list_reports(s->pg, id, out, n);
  stmt_t q;
  *out = NULL;
  *n = 0;
  if (prep(&q, s, "store.list_reports",
           id >= 1 ? "SELECT trial, attempt, step, time, metrics FROM reports WHERE trial = ?"
                     " ORDER BY trial, step, rowid"
                   : "SELECT trial, attempt, step, time, metrics FROM reports ORDER BY trial, step, rowid"))
    return -1;
  if (id >= 1) sqlite3_bind_int64(q.st, 1, id);
  size_t cap = 0;
  int rc;
  while ((rc = sqlite3_step(q.st)) == SQLITE_ROW) {
    if (*n == cap) {
      cap = cap ? 2 * cap : 64;
      fvl_report *grown = realloc(*out, cap * sizeof **out);
      if (!grown) { rc = SQLITE_NOMEM; break; }
      *out = grown;
    }
    fvl_report *r = &(*out)[(*n)++];
    r->trial = sqlite3_column_int64(q.st, 0);
    r->attempt = sqlite3_column_int(q.st, 1);
    r->step = sqlite3_column_int64(q.st, 2);
    r->time = sqlite3_column_double(q.st, 3);
    r->metrics = col_text(q.st, 4);
  }
  if (rc != SQLITE_DONE) {
    if (rc == SQLITE_NOMEM) fvl_err("store.list_reports: out of memory");
    else dberr(s, "store.list_reports");
    sqlite3_finalize(q.st);
    fvl_reports_free(*out, *n);
    *out = NULL;
    *n = 0;
    return -1;
  }
  sqlite3_finalize(q.st);
  return 0;
}

void fvl_reports_free(fvl_report *r, size_t n) {
  if (!r) return;
  for (size_t i = 0; i < n; i++) free(r[i].metrics);
  free(r);
}

int fvl_store_set_wait(fvl_store *s, int64_t id, int attempt, int rung, double value) {
  if (s->pg) return fvl_pg_set_wait(s->pg, id, attempt, rung, value);
  stmt_t q;
  if (rung < 1) return fvl_err("store.set_wait: rung must be >= 1, got %d", rung);
  if (prep(&q, s, "store.set_wait",
           "UPDATE trials SET wait_rung = ?, wait_value = ? WHERE id = ? AND attempt = ?"
           " AND status = 'running'"))
    return -1;
  sqlite3_bind_int(q.st, 1, rung);
  if (isnan(value)) sqlite3_bind_null(q.st, 2);
  else sqlite3_bind_double(q.st, 2, value);
  sqlite3_bind_int64(q.st, 3, id);
  sqlite3_bind_int(q.st, 4, attempt);
  return step_done(&q);
}

int fvl_store_promote(fvl_store *s, int64_t id, int rung) {
  if (s->pg) return fvl_pg_promote(s->pg, id, rung);
  stmt_t q;
  if (prep(&q, s, "store.promote",
           "UPDATE trials SET rung = max(rung, ?) WHERE id = ?"
           " AND status NOT IN ('done', 'pruned', 'failed')"))
    return -1;
  sqlite3_bind_int(q.st, 1, rung);
  sqlite3_bind_int64(q.st, 2, id);
  return step_done(&q);
}

int fvl_store_release(fvl_store *s, int64_t id) {
  if (s->pg) return fvl_pg_release(s->pg, id);
  stmt_t q;
  if (prep(&q, s, "store.release", "UPDATE trials SET wait_rung = 0 WHERE id = ? AND status = 'running'"))
    return -1;
  sqlite3_bind_int64(q.st, 1, id);
  return step_done(&q);
}

int fvl_store_prune(fvl_store *s, int64_t id, int rung, const char *metrics) {
  if (s->pg) return fvl_pg_prune(s->pg, id, rung, metrics);
  stmt_t q;
  if (prep(&q, s, "store.prune",
           "UPDATE trials SET status = 'pruned', wait_rung = ?, metrics = ?, ended = ?,"
           " error = NULL WHERE id = ? AND status NOT IN ('done', 'pruned', 'failed')"))
    return -1;
  sqlite3_bind_int(q.st, 1, rung);
  bind_text(&q, 2, metrics);
  sqlite3_bind_double(q.st, 3, fvl_time_now());
  sqlite3_bind_int64(q.st, 4, id);
  return step_done(&q);
}

int fvl_store_exec(fvl_store *s, const char *sql, int nparams, const fvl_sql_value *params,
                   fvl_store_row_fn row, void *ud) {
  if (s->pg) return fvl_pg_exec(s->pg, sql, nparams, params, row, ud);
  const char *fn = "store.exec";
  sqlite3_stmt *st = NULL;
  const char *tail = NULL;
  if (!sql) return fvl_err("%s: sql must be a string", fn);
  if (sqlite3_prepare_v2(s->db, sql, -1, &st, &tail) != SQLITE_OK) return dberr(s, fn);
  if (!st) return fvl_err("%s: sql holds no statement", fn);
  while (tail && (*tail == ' ' || *tail == '\n' || *tail == '\t' || *tail == ';')) tail++;
  if (tail && *tail) {
    sqlite3_finalize(st);
    return fvl_err("%s: one statement at a time (extra text: '%.40s')", fn, tail);
  }
  int want = sqlite3_bind_parameter_count(st);
  if (want != nparams) {
    sqlite3_finalize(st);
    return fvl_err("%s: the statement has %d parameters but %d values came", fn, want, nparams);
  }
  for (int i = 0; i < nparams; i++) {
    const fvl_sql_value *v = &params[i];
    switch (v->type) {
      case FVL_SQL_INT: sqlite3_bind_int64(st, i + 1, v->i); break;
      case FVL_SQL_REAL: sqlite3_bind_double(st, i + 1, v->d); break;
      case FVL_SQL_TEXT: sqlite3_bind_text(st, i + 1, v->s, (int)v->len, SQLITE_TRANSIENT); break;
      default: sqlite3_bind_null(st, i + 1);
    }
  }
  int ncol = sqlite3_column_count(st), rows = 0, rc;
  const char *names[64];
  fvl_sql_value vals[64];
  if (ncol > 64) {
    sqlite3_finalize(st);
    return fvl_err("%s: at most 64 result columns, the statement has %d", fn, ncol);
  }
  for (int c = 0; c < ncol; c++) names[c] = sqlite3_column_name(st, c);
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    rows++;
    if (!row) continue;
    for (int c = 0; c < ncol; c++) {
      fvl_sql_value *v = &vals[c];
      memset(v, 0, sizeof *v);
      switch (sqlite3_column_type(st, c)) {
        case SQLITE_INTEGER: v->type = FVL_SQL_INT; v->i = sqlite3_column_int64(st, c); break;
        case SQLITE_FLOAT: v->type = FVL_SQL_REAL; v->d = sqlite3_column_double(st, c); break;
        case SQLITE_NULL: v->type = FVL_SQL_NULL; break;
        default:
          v->type = FVL_SQL_TEXT;
          v->s = (const char *)sqlite3_column_text(st, c);
          v->len = (size_t)sqlite3_column_bytes(st, c);
      }
    }
    if (row(ud, ncol, names, vals)) { rc = SQLITE_DONE; break; }
  }
  int out = rc == SQLITE_DONE ? (ncol > 0 ? rows : sqlite3_changes(s->db)) : dberr(s, fn);
  sqlite3_finalize(st);
  return out;
}

/* ---------------------------------------------------------------- merge */
#define RANK(t) "(CASE " t ".status WHEN 'done' THEN 4 WHEN 'pruned' THEN 3 WHEN 'failed' THEN 2" \
                " WHEN 'running' THEN 1 ELSE 0 END)"
int fvl_store_merge(fvl_store *s, const char *src_path) {
  if (s->pg) return fvl_pg_merge(s->pg, src_path);
  const char *fn = "store.merge";
  if (!src_path) return fvl_err("%s: source path must be a string", fn);
  if (access(src_path, R_OK) != 0)
    return fvl_err("%s: cannot read %s: %s", fn, src_path, strerror(errno));
  char a[PATH_MAX], b[PATH_MAX];
  if (realpath(src_path, a) && realpath(s->path, b) && strcmp(a, b) == 0)
    return fvl_err("%s: %s is the destination store itself", fn, src_path);
  /* check it is a store before attaching */
  fvl_store *src = fvl_store_open(src_path);
  if (!src) return -1;
  fvl_store_close(src);
  stmt_t q;
  if (prep(&q, s, fn, "ATTACH DATABASE ? AS src")) return -1;
  bind_text(&q, 1, src_path);
  if (step_done(&q) < 0) return -1;
  int taken = -1;
  if (fvl_store_begin(s)) goto detach;
  if (run(s, fn, "DROP TABLE IF EXISTS temp.take") ||
      run(s, fn, "CREATE TEMP TABLE take AS SELECT s.id AS id FROM src.trials s"
                 " LEFT JOIN main.trials d ON d.id = s.id WHERE d.id IS NULL OR " RANK("s") " > " RANK("d")
                 " OR (" RANK("s") " = " RANK("d") " AND coalesce(s.ended, 0) > coalesce(d.ended, 0))") ||
      run(s, fn, "DELETE FROM main.reports WHERE trial IN (SELECT id FROM temp.take)") ||
      run(s, fn, "INSERT OR REPLACE INTO main.trials(" TRIAL_COLS ") SELECT " TRIAL_COLS
                 " FROM src.trials WHERE id IN (SELECT id FROM temp.take)") ||
      run(s, fn, "INSERT INTO main.reports(trial, attempt, step, time, metrics)"
                 " SELECT trial, attempt, step, time, metrics FROM src.reports"
                 " WHERE trial IN (SELECT id FROM temp.take) ORDER BY trial, step, rowid") ||
      run(s, fn, "INSERT OR IGNORE INTO main.meta(key, value) SELECT key, value FROM src.meta"))
    goto rollback;
  if (prep(&q, s, fn, "SELECT count(*) FROM temp.take")) goto rollback;
  if (sqlite3_step(q.st) == SQLITE_ROW) taken = sqlite3_column_int(q.st, 0);
  else dberr(s, fn);
  sqlite3_finalize(q.st);
  if (taken < 0) goto rollback;
  if (run(s, fn, "DROP TABLE temp.take") || fvl_store_commit(s)) { taken = -1; goto rollback; }
  goto detach;
rollback:
  rollback_failed(s);
  taken = -1;
detach:
  if (taken < 0) {
    char keep2[1024];
    snprintf(keep2, sizeof keep2, "%s", fvl_errmsg());
    sqlite3_exec(s->db, "DETACH DATABASE src", NULL, NULL, NULL);
    fvl_err("%s", keep2);
  } else if (run(s, fn, "DETACH DATABASE src")) {
    return -1;
  }
  return taken;
}
