/* store.h — the sweep store (one SQLite database per sweep); the process helpers that run
 * sweep trials in worker processes are sys.h (included here).
 *
 * Store schema (created on first open, WAL journal, every write one transaction):
 *   meta(key TEXT PRIMARY KEY, value TEXT)            sweep name, strategy, space fingerprint...
 *   trials(id INTEGER PRIMARY KEY, config TEXT, seed INTEGER, status TEXT, attempt INTEGER,
 *          pid INTEGER, host TEXT, started REAL, ended REAL, metrics TEXT, error TEXT,
 *          killed INTEGER, rung INTEGER, wait_rung INTEGER, wait_value REAL)
 *   reports(trial INTEGER, attempt INTEGER, step INTEGER, time REAL, metrics TEXT)
 * config/metrics are JSON text written by the caller; times are Unix seconds.
 * status is one of pending|running|done|failed|pruned.
 *
 * Attempts make late writers harmless: fvl_store_start_trial() bumps trials.attempt and a
 * worker passes the attempt it was started with to every later write; a write from an older
 * attempt (a worker orphaned by a killed driver) changes nothing.
 *
 * Durability: WAL with synchronous=NORMAL — a committed trial survives kill -9 of any process
 * (not a power cut). Concurrent writers wait up to 60 s for the lock (busy timeout). */
#ifndef FVL_STORE_H
#define FVL_STORE_H
#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>
#include "sys.h"

typedef struct fvl_store fvl_store;

typedef enum {
  FVL_TRIAL_PENDING = 0, FVL_TRIAL_RUNNING, FVL_TRIAL_DONE, FVL_TRIAL_FAILED, FVL_TRIAL_PRUNED
} fvl_trial_status;
const char *fvl_trial_status_name(int status);   /* "pending"... ; "?" when out of range */
int fvl_trial_status_parse(const char *name);    /* -1 + message when unknown */

typedef struct fvl_trial {
  int64_t id, seed;
  int status, attempt, pid, killed, rung, wait_rung;
  double started, ended, wait_value;               /* NAN when unset */
  double lease;                                    /* running: claimable by others after this time */
  char *config, *metrics, *error, *host;           /* malloc'd, NULL when SQL NULL */
} fvl_trial;

typedef struct fvl_report {
  int64_t trial, step;
  int attempt;
  double time;
  char *metrics;                                   /* malloc'd JSON */
} fvl_report;

/* ---- open / close ---- */
/* path: a SQLite file, or "postgresql://[user@]host[:port]/db[?params]#sweep" (any libpq URL
 * with the sweep's name after '#': the sweep lives in the database schema of that name; see
 * store_pg.c). Both kinds answer every function below the same way. */
fvl_store *fvl_store_open(const char *path);      /* creates file and schema when missing */
const char *fvl_store_kind(const fvl_store *s);   /* "sqlite" | "postgresql" */
/* the store's clock in Unix seconds (the server's for PostgreSQL: leases need one clock) */
double fvl_store_now(fvl_store *s);
void fvl_store_close(fvl_store *s);               /* NULL-safe */
const char *fvl_store_path(const fvl_store *s);

/* ---- meta ---- */
int fvl_store_meta_set(fvl_store *s, const char *key, const char *value);
/* 1 found (*out malloc'd), 0 absent (*out NULL), -1 error */
int fvl_store_meta_get(fvl_store *s, const char *key, char **out);

/* ---- trials ---- */
/* 1 inserted as pending, 0 already there (unchanged), -1 error */
int fvl_store_add_trial(fvl_store *s, int64_t id, const char *config, int64_t seed);
/* 1 found, 0 no such trial, -1 error; free the strings with fvl_trial_clear(t) */
int fvl_store_get_trial(fvl_store *s, int64_t id, fvl_trial *t);
/* all trials ordered by id; *out malloc'd array of *n (free with fvl_trials_free) */
int fvl_store_list_trials(fvl_store *s, fvl_trial **out, size_t *n);
void fvl_trials_free(fvl_trial *t, size_t n);     /* strings of n trials and the array */
void fvl_trial_clear(fvl_trial *t);               /* strings of one trial */

/* Marks a trial running for a new attempt: status=running, attempt+1, started=now, pid, host,
 * ended/metrics/error/killed/wait cleared, old reports deleted. expect_attempt >= 0 claims it
 * only if its attempt is still that one (so drivers sharing a store never take the same
 * trial twice); < 0 takes it whatever its attempt. Returns the new attempt (>= 1), 0 when the
 * trial is done or pruned or was claimed meanwhile (nothing changed), -1 error. */
int fvl_store_start_trial(fvl_store *s, int64_t id, int pid, int expect_attempt);
/* Claims the next trial to run, for a new attempt (as start_trial does), in one transaction:
 * pending trials (a trial parked at a rung only once promoted), failed trials that were killed
 * (while attempt < max_attempts), failed ones that ended before retry_before (< 0: none), and
 * running ones whose lease expired (their driver died). Promoted parked trials come first, the
 * best wait_value first (sign +1: larger is better, -1: smaller), then by id. The claim holds a
 * lease of lease_s seconds, renewed by fvl_store_heartbeat. PostgreSQL takes the row with
 * SELECT ... FOR UPDATE SKIP LOCKED, so concurrent claimers never wait for each other.
 * Returns the attempt (>= 1) and *id, 0 when nothing is claimable, -1 error. */
int fvl_store_claim(fvl_store *s, int pid, double lease_s, int max_attempts, double retry_before,
                    int sign, int64_t *id);
/* Renews the lease of a running attempt: lease = now + lease_s. 1 renewed, 0 not running with
 * that attempt (finished, or claimed by another after the lease expired), -1 error. */
int fvl_store_heartbeat(fvl_store *s, int64_t id, int attempt, double lease_s);
/* Parks an attempt paused at a rung it has not passed: status pending, no process. 1 / 0 / -1 */
int fvl_store_park(fvl_store *s, int64_t id, int attempt);
/* Records the worker pid of the current attempt (the driver forks after start_trial). */
int fvl_store_set_pid(fvl_store *s, int64_t id, int attempt, int pid);
/* Final state of an attempt: status done|failed|pruned, metrics/error may be NULL.
 * Applies only while the trial is running with that attempt: 1 applied, 0 stale, -1 error. */
int fvl_store_finish_trial(fvl_store *s, int64_t id, int attempt, int status,
                           const char *metrics, const char *error, int killed);

/* ---- intermediate reports ---- */
/* 1 stored, 0 stale attempt (trial not running with that attempt), -1 error */
int fvl_store_add_report(fvl_store *s, int64_t id, int attempt, int64_t step, const char *metrics);
/* reports of one trial (id >= 1) or of all (id <= 0), ordered by trial, step */
int fvl_store_list_reports(fvl_store *s, int64_t id, fvl_report **out, size_t *n);
void fvl_reports_free(fvl_report *r, size_t n);

/* ---- successive halving ---- */
/* the running attempt waits at rung r (1-based) with its metric value: 1 set, 0 stale */
int fvl_store_set_wait(fvl_store *s, int64_t id, int attempt, int rung, double value);
/* verdict at rung r: promote (rung = r; the trial keeps waiting until released, so that the
 * driver can resume promoted trials no faster than its worker slots free up) or prune (status
 * pruned, metrics set, ended = now). Apply to any non-final trial: 1 applied, 0 final/absent. */
int fvl_store_promote(fvl_store *s, int64_t id, int rung);
int fvl_store_prune(fvl_store *s, int64_t id, int rung, const char *metrics);
/* lets a promoted, waiting trial go on (wait_rung = 0): 1 applied, 0 not running */
int fvl_store_release(fvl_store *s, int64_t id);

/* ---- transactions and plain SQL (for the Lua layer) ---- */
int fvl_store_begin(fvl_store *s);                /* BEGIN IMMEDIATE (waits for the lock) */
int fvl_store_commit(fvl_store *s);
int fvl_store_rollback(fvl_store *s);             /* no-op when no transaction is open */
/* Runs one SQL statement with "?" parameters. For each result row calls
 * row(ud, ncol, names, values); a non-zero return stops the statement. Returns the number of
 * rows changed (writes) or seen (reads), -1 on error. */
typedef enum { FVL_SQL_NULL = 0, FVL_SQL_INT, FVL_SQL_REAL, FVL_SQL_TEXT } fvl_sql_type;
typedef struct fvl_sql_value {
  fvl_sql_type type;
  int64_t i;
  double d;
  const char *s;   /* TEXT: valid during the call only */
  size_t len;
} fvl_sql_value;
typedef int (*fvl_store_row_fn)(void *ud, int ncol, const char *const *names,
                                const fvl_sql_value *values);
int fvl_store_exec(fvl_store *s, const char *sql, int nparams, const fvl_sql_value *params,
                   fvl_store_row_fn row, void *ud);

/* Copies every trial of the store at src_path (and its reports) into s. For an id present in
 * both, the row with the more final status wins (done > pruned > failed > running > pending;
 * on a tie the later end time). Meta keys missing in s are copied. Returns the number of
 * trials taken from src, -1 on error. */
int fvl_store_merge(fvl_store *s, const char *src_path);

#endif
