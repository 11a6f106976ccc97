/* store_pg.c — the sweep store in a PostgreSQL database (libpq), behind store.h's interface.
 *
 * A store is "<libpq URL>#<sweep>": the sweep's tables (meta, trials, reports — the SQLite
 * store's columns) live in the schema named <sweep>, created on first open. Any number of
 * drivers on any machines share one sweep:
 *  - a claim takes one claimable row with SELECT ... FOR UPDATE SKIP LOCKED inside an UPDATE,
 *    so concurrent claimers neither wait for each other nor take the same trial;
 *  - leases are in the server's clock (clock_timestamp()), renewed by heartbeats; a running
 *    trial whose lease expired (its driver died) is claimable again;
 *  - fvl_pg_begin takes a transaction-scoped advisory lock of the sweep, so the transactions the
 *    sweep opens itself (halving verdicts) run one at a time across all machines;
 *  - reports are listed only for the trial's current attempt, so a report that a dying worker
 *    wrote while its trial was re-claimed never shows. */
#define _GNU_SOURCE
#include "store_pg.h"
#include "core.h"
#include <libpq-fe.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct fvl_pgstore {
  PGconn *c;
  char *url;      /* as shown in messages: no password */
  char *schema;
  char lockkey[96];
  int in_tx;
};

#define NOW "extract(epoch from clock_timestamp())::float8"
#define TRIAL_COLS "id, config, seed, status, attempt, pid, host, started, ended, metrics, error," \
                   " killed, rung, wait_rung, wait_value, lease"

int fvl_pg_is_url(const char *path) {
  return path && (strncmp(path, "postgresql://", 13) == 0 || strncmp(path, "postgres://", 11) == 0);
}

static char *dupn(const char *p, size_t n) {
  char *q = malloc(n + 1);
  if (q) { memcpy(q, p, n); q[n] = 0; }
  return q;
}

/* postgresql://user:secret@host/db -> postgresql://user:***@host/db */
static char *masked(const char *url) {
  const char *at = strchr(url, '@'), *start = strstr(url, "://");
  if (!at || !start) return strdup(url);
  const char *colon = memchr(start + 3, ':', (size_t)(at - start - 3));
  if (!colon) return strdup(url);
  size_t n = (size_t)(colon - url) + 1;
  char *out = malloc(strlen(url) + 8);
  if (!out) return NULL;
  memcpy(out, url, n);
  strcpy(out + n, "***");
  strcat(out, at);
  return out;
}

/* ---------------------------------------------------------------- parameters and queries */
typedef struct { const char *v[12]; char buf[12][40]; int n; } args_t;
static void a_int(args_t *a, int64_t x) {
  snprintf(a->buf[a->n], sizeof a->buf[0], "%lld", (long long)x);
  a->v[a->n] = a->buf[a->n];
  a->n++;
}
static void a_real(args_t *a, double x) {
  if (isnan(x)) a->v[a->n] = NULL;
  else {
    if (isinf(x)) snprintf(a->buf[a->n], sizeof a->buf[0], "%sInfinity", x < 0 ? "-" : "");
    else snprintf(a->buf[a->n], sizeof a->buf[0], "%.17g", x);
    a->v[a->n] = a->buf[a->n];
  }
  a->n++;
}
static void a_text(args_t *a, const char *x) { a->v[a->n++] = x; }

static void set_err(fvl_pgstore *p, const char *fn, PGresult *r) {
  const char *m = r ? PQresultErrorMessage(r) : "";
  if (!m || !*m) m = PQerrorMessage(p->c);
  size_t n = strlen(m);
  while (n > 0 && (m[n - 1] == '\n' || m[n - 1] == ' ')) n--;
  fvl_err("%s: %s: %.*s", fn, p->url, (int)n, m);
}

static int set_search_path(fvl_pgstore *p);

/* one statement; NULL + message on failure. A broken connection is reset once (outside a
 * transaction), so a driver survives a server restart. */
static PGresult *q(fvl_pgstore *p, const char *fn, const char *sql, const args_t *a) {
  for (int tries = 0;; tries++) {
    PGresult *r = PQexecParams(p->c, sql, a ? a->n : 0, NULL, a ? a->v : NULL, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) return r;
    if (tries == 0 && !p->in_tx && PQstatus(p->c) == CONNECTION_BAD) {
      PQclear(r);
      PQreset(p->c);
      if (PQstatus(p->c) == CONNECTION_OK && set_search_path(p) == 0) continue;
      set_err(p, fn, NULL);
      return NULL;
    }
    set_err(p, fn, r);
    PQclear(r);
    return NULL;
  }
}
/* a statement without rows: changed rows, or -1 */
static int cmd(fvl_pgstore *p, const char *fn, const char *sql, const args_t *a) {
  PGresult *r = q(p, fn, sql, a);
  if (!r) return -1;
  int n = atoi(PQcmdTuples(r));
  PQclear(r);
  return n;
}

static int64_t g_int(PGresult *r, int i, int c) {
  return PQgetisnull(r, i, c) ? 0 : strtoll(PQgetvalue(r, i, c), NULL, 10);
}
static double g_real(PGresult *r, int i, int c) {
  return PQgetisnull(r, i, c) ? NAN : strtod(PQgetvalue(r, i, c), NULL);
}
static char *g_text(PGresult *r, int i, int c) {
  return PQgetisnull(r, i, c) ? NULL : strdup(PQgetvalue(r, i, c));
}

/* ---------------------------------------------------------------- open / close */
static void quiet_notices(void *arg, const char *msg) { (void)arg; (void)msg; }

static int set_search_path(fvl_pgstore *p) {
  args_t a = {.n = 0};
  a_text(&a, p->schema);
  PGresult *r = PQexecParams(p->c, "SELECT set_config('search_path', quote_ident($1::text), false)", 1,
                             NULL, a.v, NULL, NULL, 0);
  int ok = PQresultStatus(r) == PGRES_TUPLES_OK;
  if (!ok) set_err(p, "store.open", r);
  PQclear(r);
  return ok ? 0 : -1;
}

fvl_pgstore *fvl_pg_open(const char *url) {
  const char *hash = strrchr(url, '#');
  fvl_pgstore *p = calloc(1, sizeof *p);
  if (!p) { fvl_err("store.open: out of memory"); return NULL; }
  char *conninfo = hash ? dupn(url, (size_t)(hash - url)) : strdup(url);
  p->url = masked(url);
  if (!conninfo || !p->url) { free(conninfo); fvl_pg_close(p); fvl_err("store.open: out of memory"); return NULL; }
  if (!hash || !hash[1]) {
    fvl_err("store.open: %s names no sweep: end it with #<sweep name> (the sweep's schema)", p->url);
    free(conninfo);
    fvl_pg_close(p);
    return NULL;
  }
  size_t ns = strlen(hash + 1);
  for (const char *c = hash + 1; *c; c++)
    if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '_' ||
          *c == '-' || *c == '.') || ns > 60) {
      fvl_err("store.open: sweep name '%s' in %s must be 1..60 letters, digits, '_', '-' or '.'", hash + 1,
              p->url);
      free(conninfo);
      fvl_pg_close(p);
      return NULL;
    }
  p->schema = strdup(hash + 1);
  snprintf(p->lockkey, sizeof p->lockkey, "fvl.sweep.%s", p->schema);
  p->c = PQconnectdb(conninfo);
  free(conninfo);
  if (!p->c || PQstatus(p->c) != CONNECTION_OK) {
    set_err(p, "store.open: cannot connect", NULL);
    fvl_pg_close(p);
    return NULL;
  }
  PQsetNoticeProcessor(p->c, quiet_notices, NULL);
  char ddl[2048];
  snprintf(ddl, sizeof ddl,
           "CREATE SCHEMA IF NOT EXISTS \"%s\";"
           "CREATE TABLE IF NOT EXISTS \"%s\".meta(key TEXT PRIMARY KEY, value TEXT);"
           "CREATE TABLE IF NOT EXISTS \"%s\".trials("
           " id BIGINT PRIMARY KEY, config TEXT NOT NULL, seed BIGINT NOT NULL,"
           " status TEXT NOT NULL DEFAULT 'pending', attempt INTEGER NOT NULL DEFAULT 0,"
           " pid INTEGER, host TEXT, started DOUBLE PRECISION, ended DOUBLE PRECISION, metrics TEXT,"
           " error TEXT, killed INTEGER NOT NULL DEFAULT 0, rung INTEGER NOT NULL DEFAULT 0,"
           " wait_rung INTEGER NOT NULL DEFAULT 0, wait_value DOUBLE PRECISION, lease DOUBLE PRECISION);"
           "CREATE TABLE IF NOT EXISTS \"%s\".reports(seq BIGSERIAL PRIMARY KEY, trial BIGINT NOT NULL,"
           " attempt INTEGER NOT NULL, step BIGINT NOT NULL, time DOUBLE PRECISION NOT NULL,"
           " metrics TEXT NOT NULL);"
           "CREATE INDEX IF NOT EXISTS reports_trial ON \"%s\".reports(trial, step);",
           p->schema, p->schema, p->schema, p->schema, p->schema);
  /* concurrent CREATE ... IF NOT EXISTS can collide: one opener at a time */
  if (fvl_pg_begin(p)) { fvl_pg_close(p); return NULL; }
  PGresult *r = PQexec(p->c, ddl);
  if (PQresultStatus(r) != PGRES_COMMAND_OK) {
    set_err(p, "store.open", r);
    PQclear(r);
    char keep[1024];
    snprintf(keep, sizeof keep, "%s", fvl_errmsg());
    fvl_pg_rollback(p);
    fvl_pg_close(p);
    fvl_err("%s", keep);
    return NULL;
  }
  PQclear(r);
  if (fvl_pg_commit(p) || set_search_path(p)) { fvl_pg_close(p); return NULL; }
  return p;
}

void fvl_pg_close(fvl_pgstore *p) {
  if (!p) return;
  if (p->c) PQfinish(p->c);
  free(p->url);
  free(p->schema);
  free(p);
}

double fvl_pg_now(fvl_pgstore *p) {
  PGresult *r = q(p, "store.now", "SELECT " NOW, NULL);
  if (!r) return NAN;
  double t = g_real(r, 0, 0);
  PQclear(r);
  return t;
}

/* ---------------------------------------------------------------- transactions */
int fvl_pg_begin(fvl_pgstore *p) {
  if (p->in_tx) return fvl_err("store.begin: %s: a transaction is already open", p->url);
  if (cmd(p, "store.begin", "BEGIN", NULL) < 0) return -1;
  p->in_tx = 1;
  args_t a = {.n = 0};
  a_text(&a, p->lockkey);
  PGresult *r = q(p, "store.begin", "SELECT pg_advisory_xact_lock(hashtext($1::text))", &a);
  if (!r) { fvl_pg_rollback(p); return -1; }
  PQclear(r);
  return 0;
}
int fvl_pg_commit(fvl_pgstore *p) {
  if (!p->in_tx) return fvl_err("store.commit: %s: no transaction is open", p->url);
  int rc = cmd(p, "store.commit", "COMMIT", NULL);
  p->in_tx = 0;
  return rc < 0 ? -1 : 0;
}
int fvl_pg_rollback(fvl_pgstore *p) {
  if (!p->in_tx) return 0;
  p->in_tx = 0;
  PGresult *r = PQexec(p->c, "ROLLBACK");
  PQclear(r);
  return 0;
}
/* ends a function's own transaction after a failure, keeping the message */
static int fail_tx(fvl_pgstore *p) {
  char keep[1024];
  snprintf(keep, sizeof keep, "%s", fvl_errmsg());
  fvl_pg_rollback(p);
  return fvl_err("%s", keep);
}

/* ---------------------------------------------------------------- meta */
int fvl_pg_meta_set(fvl_pgstore *p, const char *key, const char *value) {
  if (!key) return fvl_err("store.meta_set: key must be a string");
  args_t a = {.n = 0};
  a_text(&a, key);
  a_text(&a, value);
  return cmd(p, "store.meta_set", "INSERT INTO meta(key, value) VALUES($1::text, $2::text)"
                                  " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value", &a) < 0 ? -1 : 0;
}

int fvl_pg_meta_get(fvl_pgstore *p, const char *key, char **out) {
  *out = NULL;
  args_t a = {.n = 0};
  a_text(&a, key);
  PGresult *r = q(p, "store.meta_get", "SELECT value FROM meta WHERE key = $1::text", &a);
  if (!r) return -1;
  int found = PQntuples(r) > 0;
  if (found) *out = g_text(r, 0, 0);
  PQclear(r);
  return found;
}

/* ---------------------------------------------------------------- trials */
int fvl_pg_add_trial(fvl_pgstore *p, int64_t id, const char *config, int64_t seed) {
  if (id < 1) return fvl_err("store.add_trial: id must be >= 1, got %lld", (long long)id);
  if (!config) return fvl_err("store.add_trial: config must be a JSON string, got NULL");
  args_t a = {.n = 0};
  a_int(&a, id);
  a_text(&a, config);
  a_int(&a, seed);
  return cmd(p, "store.add_trial", "INSERT INTO trials(id, config, seed) VALUES($1::bigint, $2::text,"
                                   " $3::bigint) ON CONFLICT (id) DO NOTHING", &a);
}

static void read_trial(PGresult *r, int i, fvl_trial *t) {
  memset(t, 0, sizeof *t);
  t->id = g_int(r, i, 0);
  t->config = g_text(r, i, 1);
  t->seed = g_int(r, i, 2);
  const char *stat = PQgetvalue(r, i, 3);
  t->status = FVL_TRIAL_PENDING;
  for (int k = 0; k <= FVL_TRIAL_PRUNED; k++)
    if (strcmp(stat, fvl_trial_status_name(k)) == 0) t->status = k;
  t->attempt = (int)g_int(r, i, 4);
  t->pid = (int)g_int(r, i, 5);
  t->host = g_text(r, i, 6);
  t->started = g_real(r, i, 7);
  t->ended = g_real(r, i, 8);
  t->metrics = g_text(r, i, 9);
  t->error = g_text(r, i, 10);
  t->killed = (int)g_int(r, i, 11);
  t->rung = (int)g_int(r, i, 12);
  t->wait_rung = (int)g_int(r, i, 13);
  t->wait_value = g_real(r, i, 14);
  t->lease = g_real(r, i, 15);
}

int fvl_pg_get_trial(fvl_pgstore *p, int64_t id, fvl_trial *t) {
  memset(t, 0, sizeof *t);
  args_t a = {.n = 0};
  a_int(&a, id);
  PGresult *r = q(p, "store.get_trial", "SELECT " TRIAL_COLS " FROM trials WHERE id = $1::bigint", &a);
  if (!r) return -1;
  int found = PQntuples(r) > 0;
  if (found) read_trial(r, 0, t);
  PQclear(r);
  return found;
}

int fvl_pg_list_trials(fvl_pgstore *p, fvl_trial **out, size_t *n) {
  *out = NULL;
  *n = 0;
  PGresult *r = q(p, "store.list_trials", "SELECT " TRIAL_COLS " FROM trials ORDER BY id", NULL);
  if (!r) return -1;
  int rows = PQntuples(r);
  if (rows > 0) {
    *out = calloc((size_t)rows, sizeof **out);
    if (!*out) { PQclear(r); return fvl_err("store.list_trials: out of memory"); }
    for (int i = 0; i < rows; i++) read_trial(r, i, &(*out)[i]);
    *n = (size_t)rows;
  }
  PQclear(r);
  return 0;
}

static const char *host_name(char *buf, size_t n) {
  if (gethostname(buf, n - 1) != 0) snprintf(buf, n, "?");
  buf[n - 1] = 0;
  return buf;
}

#define START_SET "status = 'running', attempt = attempt + 1, pid = $1::int, host = $2::text," \
                  " started = " NOW ", ended = NULL, metrics = NULL, error = NULL, killed = 0," \
                  " wait_rung = 0, wait_value = NULL"

/* the new attempt's old reports go in the same transaction */
static int drop_reports(fvl_pgstore *p, const char *fn, int64_t id) {
  args_t a = {.n = 0};
  a_int(&a, id);
  return cmd(p, fn, "DELETE FROM reports WHERE trial = $1::bigint", &a) < 0 ? -1 : 0;
}

int fvl_pg_start_trial(fvl_pgstore *p, int64_t id, int pid, int expect_attempt) {
  const char *fn = "store.start_trial";
  char host[256];
  if (fvl_pg_begin(p)) return -1;
  args_t a = {.n = 0};
  a_int(&a, pid);
  a_text(&a, host_name(host, sizeof host));
  a_int(&a, id);
  a_int(&a, expect_attempt);
  PGresult *r = q(p, fn, "UPDATE trials SET " START_SET ", lease = NULL WHERE id = $3::bigint"
                         " AND status NOT IN ('done', 'pruned') AND ($4::int < 0 OR attempt = $4::int)"
                         " RETURNING attempt", &a);
  if (!r) return fail_tx(p);
  int attempt = PQntuples(r) > 0 ? (int)g_int(r, 0, 0) : 0;
  PQclear(r);
  if (attempt == 0) {
    fvl_trial t;
    int found = fvl_pg_get_trial(p, id, &t);
    fvl_trial_clear(&t);
    if (found < 0) return fail_tx(p);
    if (found == 0) {
      fvl_err("%s: %s has no trial %lld", fn, p->url, (long long)id);
      return fail_tx(p);
    }
  } else if (drop_reports(p, fn, id)) {
    return fail_tx(p);
  }
  if (fvl_pg_commit(p)) return -1;
  return attempt;
}

int fvl_pg_claim(fvl_pgstore *p, int pid, double lease_s, int max_attempts, double retry_before,
                 int sign, int64_t *id) {
  const char *fn = "store.claim";
  char host[256];
  *id = 0;
  if (!(lease_s > 0)) return fvl_err("%s: lease must be > 0 seconds, got %g", fn, lease_s);
  if (p->in_tx) return fvl_err("%s: %s: a transaction is already open", fn, p->url);
  /* one statement (one round trip, atomic on its own): take the row, start the attempt, drop
   * the trial's old reports; no advisory lock: claims only skip rows others hold */
  args_t a = {.n = 0};
  a_int(&a, pid);
  a_text(&a, host_name(host, sizeof host));
  a_real(&a, lease_s);
  a_int(&a, max_attempts);
  a_real(&a, retry_before);
  a_int(&a, sign < 0 ? -1 : 1);
  PGresult *r = q(p, fn,
                  "WITH c AS (UPDATE trials SET " START_SET ", lease = " NOW " + $3::float8 WHERE id = ("
                  " SELECT id FROM trials WHERE"
                  " (status = 'pending' AND NOT (wait_rung > 0 AND rung < wait_rung))"
                  " OR (status = 'failed' AND killed = 1 AND attempt < $4::int)"
                  " OR (status = 'failed' AND killed = 0 AND ended < $5::float8)"
                  " OR (status = 'running' AND lease IS NOT NULL AND lease < " NOW " AND attempt < $4::int)"
                  " ORDER BY CASE WHEN status = 'pending' AND wait_rung > 0 THEN 0 ELSE 1 END,"
                  " CASE WHEN status = 'pending' AND wait_rung > 0 THEN wait_value * $6::int END DESC"
                  " NULLS LAST, id LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING id, attempt),"
                  " d AS (DELETE FROM reports WHERE trial IN (SELECT id FROM c))"
                  " SELECT id, attempt FROM c", &a);
  if (!r) return -1;
  int attempt = 0;
  if (PQntuples(r) > 0) {
    *id = g_int(r, 0, 0);
    attempt = (int)g_int(r, 0, 1);
  }
  PQclear(r);
  return attempt;
}

int fvl_pg_heartbeat(fvl_pgstore *p, int64_t id, int attempt, double lease_s) {
  if (!(lease_s > 0)) return fvl_err("store.heartbeat: lease must be > 0 seconds, got %g", lease_s);
  args_t a = {.n = 0};
  a_real(&a, lease_s);
  a_int(&a, id);
  a_int(&a, attempt);
  return cmd(p, "store.heartbeat", "UPDATE trials SET lease = " NOW " + $1::float8 WHERE id = $2::bigint"
                                   " AND attempt = $3::int AND status = 'running'", &a);
}

int fvl_pg_park(fvl_pgstore *p, int64_t id, int attempt) {
  args_t a = {.n = 0};
  a_int(&a, id);
  a_int(&a, attempt);
  return cmd(p, "store.park", "UPDATE trials SET status = 'pending', pid = 0, lease = NULL"
                              " WHERE id = $1::bigint AND attempt = $2::int AND status = 'running'"
                              " AND wait_rung > 0 AND rung < wait_rung", &a);
}

int fvl_pg_set_pid(fvl_pgstore *p, int64_t id, int attempt, int pid) {
  args_t a = {.n = 0};
  a_int(&a, pid);
  a_int(&a, id);
  a_int(&a, attempt);
  return cmd(p, "store.set_pid", "UPDATE trials SET pid = $1::int WHERE id = $2::bigint AND attempt = $3::int",
             &a);
}

int fvl_pg_finish_trial(fvl_pgstore *p, int64_t id, int attempt, int status, const char *metrics,
                        const char *error, int killed) {
  if (status != FVL_TRIAL_DONE && status != FVL_TRIAL_FAILED && status != FVL_TRIAL_PRUNED)
    return fvl_err("store.finish_trial: status must be done, failed or pruned, got %s",
                   fvl_trial_status_name(status));
  args_t a = {.n = 0};
  a_text(&a, fvl_trial_status_name(status));
  a_text(&a, metrics);
  a_text(&a, error);
  a_int(&a, killed ? 1 : 0);
  a_int(&a, id);
  a_int(&a, attempt);
  return cmd(p, "store.finish_trial",
             "UPDATE trials SET status = $1::text, metrics = $2::text, error = $3::text, killed = $4::int,"
             " ended = " NOW ", wait_rung = 0 WHERE id = $5::bigint AND attempt = $6::int"
             " AND status = 'running'", &a);
}

/* ---------------------------------------------------------------- reports */
int fvl_pg_add_report(fvl_pgstore *p, int64_t id, int attempt, int64_t step, const char *metrics) {
  if (!metrics) return fvl_err("store.add_report: metrics must be a JSON string, got NULL");
  args_t a = {.n = 0};
  a_int(&a, id);
  a_int(&a, attempt);
  a_int(&a, step);
  a_text(&a, metrics);
  return cmd(p, "store.add_report",
             "INSERT INTO reports(trial, attempt, step, time, metrics) SELECT $1::bigint, $2::int,"
             " $3::bigint, " NOW ", $4::text WHERE EXISTS (SELECT 1 FROM trials WHERE id = $1::bigint"
             " AND attempt = $2::int AND status = 'running')", &a);
}

int fvl_pg_list_reports(fvl_pgstore *p, int64_t id, fvl_report **out, size_t *n) {
  *out = NULL;
  *n = 0;
  args_t a = {.n = 0};
  a_int(&a, id);
  PGresult *r = q(p, "store.list_reports",
                  "SELECT r.trial, r.attempt, r.step, r.time, r.metrics FROM reports r JOIN trials t"
                  " ON t.id = r.trial AND t.attempt = r.attempt WHERE $1::bigint < 1 OR r.trial = $1::bigint"
                  " ORDER BY r.trial, r.step, r.seq", &a);
  if (!r) return -1;
  int rows = PQntuples(r);
  if (rows > 0) {
    *out = calloc((size_t)rows, sizeof **out);
    if (!*out) { PQclear(r); return fvl_err("store.list_reports: out of memory"); }
    for (int i = 0; i < rows; i++) {
      fvl_report *x = &(*out)[i];
      x->trial = g_int(r, i, 0);
      x->attempt = (int)g_int(r, i, 1);
      x->step = g_int(r, i, 2);
      x->time = g_real(r, i, 3);
      x->metrics = g_text(r, i, 4);
    }
    *n = (size_t)rows;
  }
  PQclear(r);
  return 0;
}

/* ---------------------------------------------------------------- successive halving */
int fvl_pg_set_wait(fvl_pgstore *p, int64_t id, int attempt, int rung, double value) {
  if (rung < 1) return fvl_err("store.set_wait: rung must be >= 1, got %d", rung);
  args_t a = {.n = 0};
  a_int(&a, rung);
  a_real(&a, value);
  a_int(&a, id);
  a_int(&a, attempt);
  return cmd(p, "store.set_wait", "UPDATE trials SET wait_rung = $1::int, wait_value = $2::float8"
                                  " WHERE id = $3::bigint AND attempt = $4::int AND status = 'running'", &a);
}

int fvl_pg_promote(fvl_pgstore *p, int64_t id, int rung) {
  args_t a = {.n = 0};
  a_int(&a, rung);
  a_int(&a, id);
  return cmd(p, "store.promote", "UPDATE trials SET rung = GREATEST(rung, $1::int) WHERE id = $2::bigint"
                                 " AND status NOT IN ('done', 'pruned', 'failed')", &a);
}

int fvl_pg_release(fvl_pgstore *p, int64_t id) {
  args_t a = {.n = 0};
  a_int(&a, id);
  return cmd(p, "store.release", "UPDATE trials SET wait_rung = 0 WHERE id = $1::bigint AND status = 'running'",
             &a);
}

int fvl_pg_prune(fvl_pgstore *p, int64_t id, int rung, const char *metrics) {
  args_t a = {.n = 0};
  a_int(&a, rung);
  a_text(&a, metrics);
  a_int(&a, id);
  return cmd(p, "store.prune", "UPDATE trials SET status = 'pruned', wait_rung = $1::int, metrics = $2::text,"
                               " ended = " NOW ", error = NULL WHERE id = $3::bigint"
                               " AND status NOT IN ('done', 'pruned', 'failed')", &a);
}

/* ---------------------------------------------------------------- plain SQL */
int fvl_pg_exec(fvl_pgstore *p, const char *sql, int nparams, const fvl_sql_value *params,
                fvl_store_row_fn row, void *ud) {
  const char *fn = "store.exec";
  if (!sql) return fvl_err("%s: sql must be a string", fn);
  if (nparams < 0 || nparams > 64) return fvl_err("%s: at most 64 parameters, got %d", fn, nparams);
  /* "?" placeholders (as for SQLite) become $1, $2...; quoted text is left alone */
  size_t len = strlen(sql);
  char *text = malloc(len * 5 + 1);
  char (*buf)[40] = calloc((size_t)(nparams ? nparams : 1), sizeof *buf);
  char **owned = calloc((size_t)(nparams ? nparams : 1), sizeof *owned);
  const char **vals = calloc((size_t)(nparams ? nparams : 1), sizeof *vals);
  int rc = -1, k = 0;
  if (!text || !buf || !owned || !vals) { fvl_err("%s: out of memory", fn); goto out; }
  char quote = 0;
  size_t o = 0;
  for (size_t i = 0; i < len; i++) {
    char c = sql[i];
    if (quote) { if (c == quote) quote = 0; text[o++] = c; continue; }
    if (c == '\'' || c == '"') { quote = c; text[o++] = c; continue; }
    if (c == '?') {
      if (k >= 999) { fvl_err("%s: too many parameters", fn); goto out; }
      o += (size_t)sprintf(text + o, "$%d", ++k);
      continue;
    }
    text[o++] = c;
  }
  text[o] = 0;
  if (k != nparams) {
    fvl_err("%s: the statement has %d parameters but %d values came", fn, k, nparams);
    goto out;
  }
  for (int i = 0; i < nparams; i++) {
    const fvl_sql_value *v = &params[i];
    switch (v->type) {
      case FVL_SQL_INT: snprintf(buf[i], sizeof buf[i], "%lld", (long long)v->i); vals[i] = buf[i]; break;
      case FVL_SQL_REAL: snprintf(buf[i], sizeof buf[i], "%.17g", v->d); vals[i] = buf[i]; break;
      case FVL_SQL_TEXT:
        owned[i] = dupn(v->s, v->len);
        if (!owned[i]) { fvl_err("%s: out of memory", fn); goto out; }
        vals[i] = owned[i];
        break;
      default: vals[i] = NULL;
    }
  }
  PGresult *r = PQexecParams(p->c, text, nparams, NULL, vals, NULL, NULL, 0);
  ExecStatusType st = PQresultStatus(r);
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) { set_err(p, fn, r); PQclear(r); goto out; }
  if (st == PGRES_COMMAND_OK) { rc = atoi(PQcmdTuples(r)); PQclear(r); goto out; }
  int ncol = PQnfields(r), rows = PQntuples(r);
  if (ncol > 64) { PQclear(r); fvl_err("%s: at most 64 result columns, the statement has %d", fn, ncol); goto out; }
  const char *names[64];
  fvl_sql_value v[64];
  for (int c = 0; c < ncol; c++) names[c] = PQfname(r, c);
  for (int i = 0; i < rows && row; i++) {
    for (int c = 0; c < ncol; c++) {
      memset(&v[c], 0, sizeof v[c]);
      if (PQgetisnull(r, i, c)) continue;
      Oid t = PQftype(r, c);
      const char *s = PQgetvalue(r, i, c);
      if (t == 20 || t == 21 || t == 23) { v[c].type = FVL_SQL_INT; v[c].i = strtoll(s, NULL, 10); }
      else if (t == 700 || t == 701 || t == 1700) { v[c].type = FVL_SQL_REAL; v[c].d = strtod(s, NULL); }
      else { v[c].type = FVL_SQL_TEXT; v[c].s = s; v[c].len = (size_t)PQgetlength(r, i, c); }
    }
    if (row(ud, ncol, names, v)) break;
  }
  rc = rows;
  PQclear(r);
out:
  for (int i = 0; owned && i < nparams; i++) free(owned[i]);
  free(owned);
  free(vals);
  free(buf);
  free(text);
  return rc;
}

int fvl_pg_merge(fvl_pgstore *p, const char *src_path) {
  (void)src_path;
  return fvl_err("store.merge: %s is a PostgreSQL store, shared by every worker: it needs no merge "
                 "(merge SQLite shard files into a SQLite file)", p->url);
}
