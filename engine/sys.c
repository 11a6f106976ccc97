/* sys.c — the process/OS toolkit of sweeps and scripts (see sys.h): spawn/poll/kill worker
 * processes, time, sleep, paths, atomic file writes. */
#define _GNU_SOURCE
#include "sys.h"
#include "core.h"
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <sched.h>
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

extern char **environ;

static int env_key_len(const char *kv) {
  const char *eq = strchr(kv, '=');
  return eq ? (int)(eq - kv) : (int)strlen(kv);
}

/* the child's environment: ours minus the keys env replaces, plus env (a malloc'ed list of
 * borrowed strings; NULL with a message when env holds something that is not KEY=VALUE) */
static char **child_env(const char *fn, char *const env[]) {
  size_t nenv = 0, nadd = 0;
  while (environ && environ[nenv]) nenv++;
  while (env && env[nadd]) nadd++;
  for (size_t i = 0; i < nadd; i++)
    if (!strchr(env[i], '=')) {
      fvl_err("%s: env[%zu] = '%s' is not KEY=VALUE (0-based)", fn, i, env[i]);
      return NULL;
    }
  char **envp = malloc((nenv + nadd + 1) * sizeof *envp);
  if (!envp) { fvl_err("%s: out of memory", fn); return NULL; }
  size_t k = 0;
  for (size_t i = 0; i < nenv; i++) {
    int replaced = 0, kl = env_key_len(environ[i]);
    for (size_t j = 0; j < nadd && !replaced; j++)
      replaced = env_key_len(env[j]) == kl && strncmp(env[j], environ[i], (size_t)kl) == 0;
    if (!replaced) envp[k++] = environ[i];
  }
  for (size_t j = 0; j < nadd; j++) envp[k++] = env[j];
  envp[k] = NULL;
  return envp;
}

/* the forked child: only async-signal-safe calls until exec; a failed exec reports its errno
 * through errfd */
_Noreturn static void child_exec(pid_t parent, const char *exe, char *const argv[], char **envp, int logfd, int errfd) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) _exit(127);
  setpgid(0, 0);   /* Ctrl-C in the terminal reaches the driver, which stops its workers */
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  signal(SIGPIPE, SIG_DFL);
  signal(SIGINT, SIG_DFL);
  if (logfd >= 0) {
    dup2(logfd, 1);
    dup2(logfd, 2);
  }
  execve(exe, argv, envp);
  int e = errno;
  ssize_t w = write(errfd, &e, sizeof e);
  (void)w;
  _exit(127);
}

pid_t fvl_proc_spawn(const char *exe, char *const argv[], char *const env[], const char *log) {
  const char *fn = "proc.spawn";
  char self[PATH_MAX];
  if (!argv || !argv[0]) return fvl_err("%s: argv must hold at least the program name", fn);
  if (!exe) {
    if (fvl_self_exe(self, sizeof self)) return -1;
    exe = self;
  }
  if (access(exe, X_OK) != 0) return fvl_err("%s: cannot run %s: %s", fn, exe, strerror(errno));
  char **envp = child_env(fn, env);
  if (!envp) return -1;
  int logfd = -1;
  if (log) {
    logfd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (logfd < 0) {
      free(envp);
      return fvl_err("%s: cannot open log file %s: %s", fn, log, strerror(errno));
    }
  }
  int pfd[2];
  if (pipe2(pfd, O_CLOEXEC) != 0) {
    free(envp);
    if (logfd >= 0) close(logfd);
    return fvl_err("%s: pipe: %s", fn, strerror(errno));
  }
  pid_t parent = getpid();
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) {
    int e = errno;
    free(envp);
    close(pfd[0]);
    close(pfd[1]);
    if (logfd >= 0) close(logfd);
    return fvl_err("%s: fork: %s", fn, strerror(e));
  }
  if (pid == 0) child_exec(parent, exe, argv, envp, logfd, pfd[1]);
  free(envp);
  close(pfd[1]);
  if (logfd >= 0) close(logfd);
  int e = 0;
  ssize_t r;
  do { r = read(pfd[0], &e, sizeof e); } while (r < 0 && errno == EINTR);
  close(pfd[0]);
  if (r == (ssize_t)sizeof e) {
    waitpid(pid, NULL, 0);
    return fvl_err("%s: cannot run %s: %s", fn, exe, strerror(e));
  }
  return pid;
}

int fvl_proc_poll(pid_t pid, int *code, int *sig) {
  int st = 0;
  *code = -1;
  *sig = 0;
  pid_t r;
  if (pid <= 0) return fvl_err("proc.poll: pid must be > 0, got %d (0 and below name process groups)", (int)pid);
  do { r = waitpid(pid, &st, WNOHANG); } while (r < 0 && errno == EINTR);
  if (r < 0) return fvl_err("proc.poll: pid %d is not a child of this process (%s)", (int)pid, strerror(errno));
  if (r == 0) return 0;
  if (WIFEXITED(st)) *code = WEXITSTATUS(st);
  else if (WIFSIGNALED(st)) *sig = WTERMSIG(st);
  return 1;
}

int fvl_proc_kill(pid_t pid, int sig) {
  if (pid <= 0) return fvl_err("proc.kill: pid must be > 0, got %d", (int)pid);
  if (kill(pid, sig) != 0 && errno != ESRCH)
    return fvl_err("proc.kill: cannot signal pid %d: %s", (int)pid, strerror(errno));
  return 0;
}

int fvl_proc_alive(pid_t pid) {
  if (pid <= 0) return 0;
  char path[64], buf[512];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return 0;
    return kill(pid, 0) == 0 || errno == EPERM;   /* no /proc: existence only */
  }
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return 0;
  buf[n] = 0;
  /* "pid (comm) S ...": the state follows the last ')' (comm may hold parentheses) */
  char *rp = strrchr(buf, ')');
  if (!rp || rp[1] != ' ') return 1;
  char state = rp[2];
  return state != 'Z' && state != 'X' && state != 'x';
}

const char *fvl_signal_name(int sig) {
  switch (sig) {
    case SIGHUP: return "SIGHUP";
    case SIGINT: return "SIGINT";
    case SIGQUIT: return "SIGQUIT";
    case SIGILL: return "SIGILL";
    case SIGABRT: return "SIGABRT";
    case SIGBUS: return "SIGBUS";
    case SIGFPE: return "SIGFPE";
    case SIGKILL: return "SIGKILL";
    case SIGSEGV: return "SIGSEGV";
    case SIGPIPE: return "SIGPIPE";
    case SIGALRM: return "SIGALRM";
    case SIGTERM: return "SIGTERM";
    case SIGUSR1: return "SIGUSR1";
    case SIGUSR2: return "SIGUSR2";
    case SIGXCPU: return "SIGXCPU";
    case SIGSTOP: return "SIGSTOP";
    case SIGCONT: return "SIGCONT";
    default: {
      static _Thread_local char buf[32];
      snprintf(buf, sizeof buf, "signal %d", sig);
      return buf;
    }
  }
}

/* ---- stop requests (see sys.h) */
#define STOP_NSIG 65
static volatile sig_atomic_t stop_sig = 0;
static volatile sig_atomic_t stop_caught[STOP_NSIG];
static struct sigaction stop_old[STOP_NSIG];
static char stop_note[STOP_NSIG][160];
static size_t stop_note_len[STOP_NSIG];

static void on_stop(int sig) {
  int saved = errno;
  if (sig <= 0 || sig >= STOP_NSIG) return;
  if (stop_sig == sig && sig == SIGINT) {   /* a second Ctrl-C: as without the catch */
    stop_caught[sig] = 0;
    sigaction(sig, &stop_old[sig], NULL);
    kill(getpid(), sig);
  } else if (stop_sig == 0) {
    stop_sig = sig;
    ssize_t w = write(STDERR_FILENO, stop_note[sig], stop_note_len[sig]);
    (void)w;
  }
  errno = saved;
}

int fvl_stop_catch(int sig) {
  if (sig <= 0 || sig >= STOP_NSIG || sig == SIGKILL || sig == SIGSTOP)
    return fvl_err("stop_catch: %s cannot be caught", fvl_signal_name(sig));
  if (stop_caught[sig]) return 0;
  struct sigaction sa, old;
  if (sigaction(sig, NULL, &old)) return fvl_err("stop_catch: %s: %s", fvl_signal_name(sig), strerror(errno));
  if (old.sa_handler == SIG_IGN && !(old.sa_flags & SA_SIGINFO)) return 0;   /* nohup and the like */
  int n = snprintf(stop_note[sig], sizeof stop_note[sig],
                   "\nfvl: %s received: stopping cleanly at the next step%s\n", fvl_signal_name(sig),
                   sig == SIGINT ? " (press Ctrl-C again to stop at once)" : "");
  stop_note_len[sig] = n > 0 && (size_t)n < sizeof stop_note[sig] ? (size_t)n : 0;
  stop_old[sig] = old;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_stop;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  stop_caught[sig] = 1;
  if (sigaction(sig, &sa, NULL)) {
    stop_caught[sig] = 0;
    return fvl_err("stop_catch: %s: %s", fvl_signal_name(sig), strerror(errno));
  }
  return 0;
}

int fvl_stop_signal(void) { return stop_sig; }

void fvl_stop_release(void) {
  for (int s = 1; s < STOP_NSIG; s++)
    if (stop_caught[s]) {
      stop_caught[s] = 0;
      sigaction(s, &stop_old[s], NULL);
    }
  stop_sig = 0;
}

double fvl_time_now(void) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  return (double)tv.tv_sec + (double)tv.tv_usec * 1e-6;
}

int fvl_sleep(double seconds, const char *where) {
  double until = fvl_time_now() + (seconds > 0 ? seconds : 0);
  for (;;) {
    if (where && fvl_check_abort(where)) return -1;
    double left = until - fvl_time_now();
    if (left <= 0) return 0;
    if (left > 0.05) left = 0.05;
    struct timespec ts = {(time_t)left, (long)((left - (double)(time_t)left) * 1e9)};
    nanosleep(&ts, NULL);
  }
}

int fvl_self_exe(char *buf, size_t n) {
  ssize_t r = readlink("/proc/self/exe", buf, n - 1);
  if (r < 0) return fvl_err("proc.exe: cannot read /proc/self/exe: %s", strerror(errno));
  buf[r] = 0;
  return 0;
}

int fvl_mkdirs(const char *path) {
  char buf[PATH_MAX];
  if (!path || !*path) return fvl_err("mkdirs: path must be a non-empty string");
  if (strlen(path) >= sizeof buf) return fvl_err("mkdirs: path is longer than %d bytes", PATH_MAX);
  strcpy(buf, path);
  for (char *p = buf + 1;; p++) {
    if (*p == '/' || *p == 0) {
      char c = *p;
      *p = 0;
      if (mkdir(buf, 0755) != 0 && errno != EEXIST)
        return fvl_err("mkdirs: cannot create %s: %s", buf, strerror(errno));
      struct stat sb;
      if (stat(buf, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return fvl_err("mkdirs: %s exists and is not a directory", buf);
      *p = c;
      if (!c) break;
    }
  }
  return 0;
}

/* ---------------------------------------------------------------- atomic files: the one way */
/* errno tells why it failed (EINVAL, ENAMETOOLONG or fopen's) */
int fvl_atomic_open(fvl_atomic_file *a, const char *path, const char *fn) {
  a->f = NULL;
  a->tmp[0] = 0;
  if (!path || !*path) { errno = EINVAL; return fvl_err("%s: path must be a non-empty string", fn); }
  if ((size_t)snprintf(a->path, sizeof a->path, "%s", path) >= sizeof a->path ||
      (size_t)snprintf(a->tmp, sizeof a->tmp, "%s.tmp.%d", path, (int)getpid()) >= sizeof a->tmp) {
    errno = ENAMETOOLONG;
    return fvl_err("%s: path too long", fn);
  }
  a->f = fopen(a->tmp, "wb");
  if (!a->f) return fvl_err("%s: cannot create %s: %s", fn, a->tmp, strerror(errno));
  return 0;
}
void fvl_atomic_abort(fvl_atomic_file *a) {
  if (!a->f) return;
  fclose(a->f);
  a->f = NULL;
  unlink(a->tmp);
}
/* flush, close and rename onto the path; sync: fsync the file before and its directory after */
static int atomic_finish(fvl_atomic_file *a, const char *fn, int sync) {
  if (!a->f) return fvl_err("%s: no file open", fn);
  int bad = ferror(a->f) || fflush(a->f) != 0 || (sync && fsync(fileno(a->f)) != 0);
  int e = errno;
  if (fclose(a->f) != 0 && !bad) { bad = 1; e = errno; }
  a->f = NULL;
  if (bad) {
    unlink(a->tmp);
    return fvl_err("%s: cannot write %s: %s", fn, a->tmp, strerror(e ? e : EIO));
  }
  if (rename(a->tmp, a->path) != 0) {
    e = errno;
    unlink(a->tmp);
    return fvl_err("%s: cannot rename %s to %s: %s", fn, a->tmp, a->path, strerror(e));
  }
  if (!sync) return 0;
  /* make the rename itself durable */
  char dir[PATH_MAX];
  snprintf(dir, sizeof dir, "%s", a->path);
  char *slash = strrchr(dir, '/');
  if (slash) { if (slash == dir) slash[1] = 0; else *slash = 0; }
  else snprintf(dir, sizeof dir, ".");
  int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) { fsync(dfd); close(dfd); }
  return 0;
}
int fvl_atomic_commit(fvl_atomic_file *a, const char *fn) { return atomic_finish(a, fn, 1); }

static int write_atomic(const char *path, const void *data, size_t n, const char *fn, int sync) {
  if (!fn) fn = "write_atomic";
  fvl_atomic_file a;
  if (fvl_atomic_open(&a, path, fn) < 0) return -1;
  if (n && fwrite(data, 1, n, a.f) != n) {
    int e = errno;
    fvl_atomic_abort(&a);
    return fvl_err("%s: cannot write %s: %s", fn, path, strerror(e));
  }
  return atomic_finish(&a, fn, sync);
}
int fvl_write_atomic(const char *path, const void *data, size_t n, const char *fn) {
  return write_atomic(path, data, n, fn, 1);
}
/* many small files: the temporary and the rename of fvl_write_atomic without its two fsyncs;
 * the writer calls fvl_sync_fs once at the end */
int fvl_write_atomic_nosync(const char *path, const void *data, size_t n, const char *fn) {
  return write_atomic(path, data, n, fn, 0);
}
int fvl_sync_fs(const char *path, const char *fn) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fvl_err("%s: cannot open %s: %s", fn, path, strerror(errno));
  int rc = syncfs(fd);
  int e = errno;
  close(fd);
  return rc == 0 ? 0 : fvl_err("%s: cannot sync the file system of %s: %s", fn, path, strerror(e));
}

/* ---------------------------------------------------------------- CPUs granted to this process */
static int env_count(const char *name) {
  const char *v = getenv(name);
  if (!v || !*v) return 0;
  char *end;
  long n = strtol(v, &end, 10);
  /* OMP_NUM_THREADS may be a list ("4,2"): its first level counts */
  if (end == v || n < 1 || n > 65536 || (*end && *end != ',')) return -1;
  return (int)n;
}

int fvl_cpus_available(char *why, size_t n) {
  char buf[256];
  size_t used = 0;
  int cpus = 0;
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    cpus = CPU_COUNT(&set);
    used += (size_t)snprintf(buf + used, sizeof buf - used, "affinity %d CPU%s", cpus, cpus == 1 ? "" : "s");
  } else {
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    cpus = online > 0 ? (int)online : 1;
    used += (size_t)snprintf(buf + used, sizeof buf - used, "%d online CPU%s", cpus, cpus == 1 ? "" : "s");
  }
  static const char *const vars[] = {"SLURM_CPUS_PER_TASK", "OMP_NUM_THREADS"};
  for (int i = 0; i < 2; i++) {
    int v = env_count(vars[i]);
    if (v == 0) continue;
    if (v < 0) {
      used += (size_t)snprintf(buf + used, sizeof buf - used, ", %s='%s' ignored (not a count)", vars[i],
                               getenv(vars[i]));
    } else {
      used += (size_t)snprintf(buf + used, sizeof buf - used, " ∩ %s=%d", vars[i], v);
      if (v < cpus) cpus = v;
    }
    if (used >= sizeof buf) used = sizeof buf - 1;
  }
  if (cpus < 1) cpus = 1;
  if (why && n) snprintf(why, n, "%d from %s", cpus, buf);
  return cpus;
}
