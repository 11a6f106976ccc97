/* sys.h — the process/OS toolkit: worker processes (spawn, poll, kill), time, sleep, paths,
 * atomic file writes. Used by the sweep store's callers (lua/bind_sys.c) and the fvl program. */
#ifndef FVL_SYS_H
#define FVL_SYS_H
#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

/* fork + exec of exe (NULL: this program, /proc/self/exe) with argv (argv[0] included,
 * NULL-terminated). env: NULL-terminated "KEY=VALUE" strings added to (replacing) this
 * process's environment. log: NULL keeps stdout/stderr, else both go to that file
 * (appended, created 0644). The child dies with its parent (PR_SET_PDEATHSIG SIGKILL).
 * Returns the pid, -1 + message. */
pid_t fvl_proc_spawn(const char *exe, char *const argv[], char *const env[], const char *log);
/* Non-blocking: 0 still running; 1 exited (*code = exit code or -1, *sig = signal or 0);
 * -1 error (not our child). */
int fvl_proc_poll(pid_t pid, int *code, int *sig);
int fvl_proc_kill(pid_t pid, int sig);
/* 1 when a process with that pid exists and is not a zombie (any owner), else 0 */
int fvl_proc_alive(pid_t pid);
const char *fvl_signal_name(int sig);             /* "SIGKILL"; "signal N" when unknown */
/* Stop requests: a long job (a training loop) that ends cleanly at its next step boundary when a
 * scheduler preempts it (SIGTERM, SIGUSR1) or the user presses Ctrl-C. fvl_stop_catch(sig)
 * installs a handler that records the first such signal and writes one line to stderr (a flag and
 * write(2): async-signal-safe, any thread); a second SIGINT puts back the disposition there was
 * before and delivers it again (a second Ctrl-C acts as one without the catch), while a repeated
 * SIGTERM/SIGUSR1 (a launcher passing on the scheduler's) changes nothing. A signal that was ignored (SIG_IGN) stays ignored. fvl_stop_signal(): the recorded
 * signal, 0 none. fvl_stop_release(): every disposition put back, the request forgotten.
 * fvl_stop_catch returns -1 + message for a signal that cannot be caught (SIGKILL, SIGSTOP). */
int fvl_stop_catch(int sig);
int fvl_stop_signal(void);
void fvl_stop_release(void);
double fvl_time_now(void);                        /* Unix time with microseconds */
/* sleeps, returning early with -1 "where: interrupted" when Ctrl-C is pending */
int fvl_sleep(double seconds, const char *where);
/* path of this program (readlink /proc/self/exe) into buf; -1 + message */
int fvl_self_exe(char *buf, size_t n);
/* mkdir -p; 0 or -1 + message */
int fvl_mkdirs(const char *path);
/* atomic file write of a buffer: path.tmp.<pid>, fsync, rename, fsync of the directory; errors
 * name fn (NULL: "write_atomic") */
int fvl_write_atomic(const char *path, const void *data, size_t n, const char *fn);
/* For writers of many small files: each file still goes through its temporary and a rename
 * (never half-written under its name) but without the fsyncs; one fvl_sync_fs(dir) at the end
 * (syncfs(2) of the file system holding path) makes them all durable. */
int fvl_write_atomic_nosync(const char *path, const void *data, size_t n, const char *fn);
int fvl_sync_fs(const char *path, const char *fn);
/* The one atomic-file mechanism, for writers that stream: fvl_atomic_open creates
 * path.tmp.<pid> (write to a->f); fvl_atomic_commit flushes, fsyncs, closes, renames onto path and
 * fsyncs the directory (the temporary is removed on failure); fvl_atomic_abort drops it.
 * fn names the caller in messages ("plot.lines: cannot rename ..."). */
typedef struct fvl_atomic_file {
  FILE *f;
  char path[4096], tmp[4200];
} fvl_atomic_file;
int fvl_atomic_open(fvl_atomic_file *a, const char *path, const char *fn);
int fvl_atomic_commit(fvl_atomic_file *a, const char *fn);
void fvl_atomic_abort(fvl_atomic_file *a);
/* CPUs this process may use: its sched_getaffinity set, capped by SLURM_CPUS_PER_TASK and
 * OMP_NUM_THREADS when set. why (may be NULL) gets where the number came from, e.g.
 * "2 from affinity 4 CPUs ∩ SLURM_CPUS_PER_TASK=2". */
int fvl_cpus_available(char *why, size_t n);
#endif
