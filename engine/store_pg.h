/* store_pg.h — the PostgreSQL implementation of the sweep store (engine/store.h's interface;
 * store.c hands every call over when the store is a postgresql:// URL). Not for direct use. */
#ifndef FVL_STORE_PG_H
#define FVL_STORE_PG_H
#include "store.h"

typedef struct fvl_pgstore fvl_pgstore;

int fvl_pg_is_url(const char *path);             /* postgresql:// or postgres:// */
fvl_pgstore *fvl_pg_open(const char *url);       /* "<libpq URL>#<sweep>"; NULL + message */
void fvl_pg_close(fvl_pgstore *p);               /* NULL-safe */
double fvl_pg_now(fvl_pgstore *p);               /* the server's clock; NAN on error */
int fvl_pg_begin(fvl_pgstore *p);
int fvl_pg_commit(fvl_pgstore *p);
int fvl_pg_rollback(fvl_pgstore *p);
int fvl_pg_meta_set(fvl_pgstore *p, const char *key, const char *value);
int fvl_pg_meta_get(fvl_pgstore *p, const char *key, char **out);
int fvl_pg_add_trial(fvl_pgstore *p, int64_t id, const char *config, int64_t seed);
int fvl_pg_get_trial(fvl_pgstore *p, int64_t id, fvl_trial *t);
int fvl_pg_list_trials(fvl_pgstore *p, fvl_trial **out, size_t *n);
int fvl_pg_start_trial(fvl_pgstore *p, int64_t id, int pid, int expect_attempt);
int fvl_pg_claim(fvl_pgstore *p, int pid, double lease_s, int max_attempts, double retry_before,
                 int sign, int64_t *id);
int fvl_pg_heartbeat(fvl_pgstore *p, int64_t id, int attempt, double lease_s);
int fvl_pg_park(fvl_pgstore *p, int64_t id, int attempt);
int fvl_pg_set_pid(fvl_pgstore *p, int64_t id, int attempt, int pid);
int fvl_pg_finish_trial(fvl_pgstore *p, int64_t id, int attempt, int status, const char *metrics,
                        const char *error, int killed);
int fvl_pg_add_report(fvl_pgstore *p, int64_t id, int attempt, int64_t step, const char *metrics);
int fvl_pg_list_reports(fvl_pgstore *p, int64_t id, fvl_report **out, size_t *n);
int fvl_pg_set_wait(fvl_pgstore *p, int64_t id, int attempt, int rung, double value);
int fvl_pg_promote(fvl_pgstore *p, int64_t id, int rung);
int fvl_pg_release(fvl_pgstore *p, int64_t id);
int fvl_pg_prune(fvl_pgstore *p, int64_t id, int rung, const char *metrics);
int fvl_pg_exec(fvl_pgstore *p, const char *sql, int nparams, const fvl_sql_value *params,
                fvl_store_row_fn row, void *ud);
int fvl_pg_merge(fvl_pgstore *p, const char *src_path);
#endif
