/* repl.c — the interactive loop of the fvl program.
 * Each input is first tried as `return <line>` (so expressions print), then as a statement;
 * a syntax error ending at <eof> means "incomplete": read another line with ">> ".
 * On a terminal, input comes from GNU readline's callback interface driven by pselect(), so
 * that Ctrl-C at the prompt only abandons the line; while code runs, Ctrl-C is armed by
 * app_docall (Lua hook + the engine's abort flag). Off a terminal, plain lines are read. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <time.h>
#include <unistd.h>
#include <readline/readline.h>
#include <readline/history.h>
#include <lua.h>
#include <lauxlib.h>
#include "app.h"
#include "core.h"

#define PROMPT1 "fvl> "
#define PROMPT2 ">> "
#define HISTORY_MAX 1000
#define TIMING_MIN_S 1.0

static int use_readline = 0;
static char history_path[4096];

/* ================================================================== reading lines */

static volatile sig_atomic_t prompt_sigint = 0;
static char *got_line = NULL;
static int got_any = 0;

static void on_sigint_prompt(int sig) {
  (void)sig;
  if (app_sigint_forward()) return;
  prompt_sigint = 1;
}

static void line_handler(char *line) {
  got_line = line;
  got_any = 1;
  rl_callback_handler_remove();   /* terminal back to normal while the command runs */
}

/* Returns a malloc'd line, or NULL at end of input (*interrupted = 0) or when Ctrl-C
 * abandoned the line (*interrupted = 1). */
static char *tty_readline(const char *prompt, int *interrupted) {
  sigset_t block, orig, waitmask;
  struct sigaction sa, old;
  sigemptyset(&block);
  sigaddset(&block, SIGINT);
  sigprocmask(SIG_BLOCK, &block, &orig);   /* SIGINT only arrives inside pselect */
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sigint_prompt;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, &old);
  waitmask = orig;
  sigdelset(&waitmask, SIGINT);

  prompt_sigint = 0;
  got_line = NULL;
  got_any = 0;
  *interrupted = 0;
  rl_callback_handler_install(prompt, line_handler);
  while (!got_any) {
    fd_set fds;
    FD_ZERO(&fds);
    FD_SET(STDIN_FILENO, &fds);
    int r = pselect(STDIN_FILENO + 1, &fds, NULL, NULL, NULL, &waitmask);
    if (prompt_sigint) {                 /* Ctrl-C: drop the line, fresh prompt */
      prompt_sigint = 0;
      rl_free_line_state();
      rl_callback_sigcleanup();
      rl_replace_line("", 0);
      rl_callback_handler_remove();
      fputs("^C\n", stdout);
      fflush(stdout);
      *interrupted = 1;
      break;
    }
    if (r < 0) {
      if (errno == EINTR) continue;      /* e.g. SIGWINCH */
      rl_callback_handler_remove();
      break;
    }
    if (r > 0) rl_callback_read_char();
  }
  sigaction(SIGINT, &old, NULL);
  sigprocmask(SIG_SETMASK, &orig, NULL);
  return got_line;
}

static char *plain_readline(const char *prompt, int *interrupted) {
  char *line = NULL;
  size_t cap = 0;
  *interrupted = 0;
  fputs(prompt, stdout);
  fflush(stdout);
  ssize_t n = getline(&line, &cap, stdin);
  if (n < 0) {
    free(line);
    return NULL;
  }
  if (n > 0 && line[n - 1] == '\n') line[--n] = '\0';
  if (n > 0 && line[n - 1] == '\r') line[--n] = '\0';
  return line;
}

static char *read_input(lua_State *L, int first, int *interrupted) {
  /* _PROMPT / _PROMPT2 globals override the prompts, as in lua */
  const char *prompt = first ? PROMPT1 : PROMPT2;
  char *line;
  lua_pushglobaltable(L);                /* raw read: a strict-mode _G must not raise here */
  lua_pushstring(L, first ? "_PROMPT" : "_PROMPT2");
  int t = lua_rawget(L, -2);
  lua_remove(L, -2);
  if (t == LUA_TSTRING) {
    char *p = strdup(lua_tostring(L, -1));
    lua_pop(L, 1);
    line = use_readline ? tty_readline(p, interrupted) : plain_readline(p, interrupted);
    free(p);
    return line;
  }
  lua_pop(L, 1);
  return use_readline ? tty_readline(prompt, interrupted) : plain_readline(prompt, interrupted);
}

/* ================================================================== history */

static void history_open(void) {
  const char *env = getenv("FVL_HISTORY");
  history_path[0] = '\0';
  if (env) {
    if (!*env) return;                   /* FVL_HISTORY= : no history file */
    snprintf(history_path, sizeof history_path, "%s", env);
  } else {
    const char *home = getenv("HOME");
    if (!home || !*home) return;
    snprintf(history_path, sizeof history_path, "%s/.fvl_history", home);
  }
  using_history();
  stifle_history(HISTORY_MAX);
  if (read_history(history_path) != 0) {
    if (write_history(history_path) != 0) history_path[0] = '\0';   /* not writable */
  }
  history_truncate_file(history_path, HISTORY_MAX);
}

static void history_add(const char *entry) {
  if (!use_readline || !*entry) return;
  HIST_ENTRY *last = history_length > 0 ? history_get(history_base + history_length - 1) : NULL;
  if (last && strcmp(last->line, entry) == 0) return;   /* no immediate repeats */
  add_history(entry);
  if (history_path[0]) append_history(1, history_path);
}

static void history_close(void) {
  if (use_readline && history_path[0]) history_truncate_file(history_path, HISTORY_MAX);
}

/* ================================================================== completion */

static lua_State *comp_L = NULL;
static char **comp_items = NULL;
static size_t comp_n = 0, comp_cap = 0, comp_next = 0;

static void comp_reset(void) {
  for (size_t i = 0; i < comp_n; i++) free(comp_items[i]);
  comp_n = comp_next = 0;
}

static void comp_add(const char *head, size_t headlen, const char *name, const char *suffix) {
  if (comp_n == comp_cap) {
    size_t cap = comp_cap ? comp_cap * 2 : 64;
    char **p = realloc(comp_items, cap * sizeof *p);
    if (!p) return;
    comp_items = p;
    comp_cap = cap;
  }
  size_t nl = strlen(name), sl = strlen(suffix);
  char *s = malloc(headlen + nl + sl + 1);
  if (!s) return;
  memcpy(s, head, headlen);
  memcpy(s + headlen, name, nl);
  memcpy(s + headlen + nl, suffix, sl + 1);
  comp_items[comp_n++] = s;
}

static int is_ident(const char *s, size_t n) {
  if (n == 0 || !(s[0] == '_' || ((s[0] | 32) >= 'a' && (s[0] | 32) <= 'z'))) return 0;
  for (size_t i = 1; i < n; i++) {
    char c = s[i];
    if (!(c == '_' || (c >= '0' && c <= '9') || ((c | 32) >= 'a' && (c | 32) <= 'z'))) return 0;
  }
  return 1;
}

static const char *const keywords[] = {
  "and", "break", "do", "else", "elseif", "end", "false", "for", "function", "goto", "if",
  "in", "local", "nil", "not", "or", "repeat", "return", "then", "true", "until", "while", NULL
};

static void rawget_str(lua_State *L, int idx, const char *k) {
  idx = lua_absindex(L, idx);
  lua_pushstring(L, k);
  lua_rawget(L, idx);
}

/* Adds the string keys of the value at the top of the stack that start with `part`, then
 * those of getmetatable(v).__index while that is a table (how methods of userdata and
 * objects are found). methods: only functions (after ':'). Pops the value. */
static void comp_collect(lua_State *L, const char *head, size_t headlen, const char *part,
                         int methods) {
  size_t plen = strlen(part);
  int show_meta = plen >= 2 && part[0] == '_' && part[1] == '_';
  int show_private = plen >= 1 && part[0] == '_';   /* _internal names once '_' is typed */
  for (int depth = 0; depth < 8; depth++) {
    if (lua_type(L, -1) == LUA_TTABLE) {
      lua_pushnil(L);
      while (lua_next(L, -2)) {
        if (lua_type(L, -2) == LUA_TSTRING) {
          size_t kl;
          const char *k = lua_tolstring(L, -2, &kl);
          int isfn = lua_type(L, -1) == LUA_TFUNCTION;
          if (kl >= plen && strncmp(k, part, plen) == 0 && is_ident(k, kl) &&
              (show_meta || !(kl >= 2 && k[0] == '_' && k[1] == '_')) &&
              (show_private || k[0] != '_') && (!methods || isfn))
            comp_add(head, headlen, k, isfn ? "(" : "");
        }
        lua_pop(L, 1);
      }
    }
    if (!lua_getmetatable(L, -1)) break;
    /* mt.__complete: names reached through an __index function (e.g. lazily loaded
     * submodules), as a list {"a", "b"} or a set {a = true} */
    rawget_str(L, -1, "__complete");
    if (lua_type(L, -1) == LUA_TTABLE) {
      lua_pushnil(L);
      while (lua_next(L, -2)) {
        int vi = lua_gettop(L), ki = vi - 1;
        int name = lua_type(L, vi) == LUA_TSTRING ? vi : lua_type(L, ki) == LUA_TSTRING ? ki : 0;
        if (name && !methods) {
          size_t kl;
          const char *k = lua_tolstring(L, name, &kl);
          if (kl >= plen && strncmp(k, part, plen) == 0 && is_ident(k, kl))
            comp_add(head, headlen, k, "");
        }
        lua_pop(L, 1);
      }
    }
    lua_pop(L, 1);
    rawget_str(L, -1, "__index");    /* a raw field read: no code runs */
    if (lua_type(L, -1) == LUA_TFUNCTION) {
      /* an __index function (properties such as tensor.grad): its methods are in
       * mt.methods when there is one, else in a table held as a C closure's first upvalue */
      lua_pop(L, 1);
      rawget_str(L, -1, "methods");
      if (lua_type(L, -1) != LUA_TTABLE) {
        lua_pop(L, 1);
        rawget_str(L, -1, "__index");
        if (!lua_iscfunction(L, -1) || !lua_getupvalue(L, -1, 1)) lua_pushnil(L);
        lua_remove(L, -2);
      }
    }
    lua_remove(L, -2);
    lua_remove(L, -2);
    if (lua_type(L, -1) != LUA_TTABLE) break;
  }
  lua_pop(L, 1);
}

/* protected: arg 1 = the word being completed */
static int comp_build(lua_State *L) {
  size_t tl;
  const char *text = luaL_checklstring(L, 1, &tl);
  const char *sep = NULL;
  for (const char *p = text; *p; p++)
    if (*p == '.' || *p == ':') sep = p;
  if (!sep) {
    size_t n = strlen(text);
    for (int i = 0; keywords[i]; i++)
      if (strncmp(keywords[i], text, n) == 0) comp_add("", 0, keywords[i], "");
    lua_pushglobaltable(L);
    comp_collect(L, "", 0, text, 0);
    return 0;
  }
  /* walk the path a.b.c (field reads may run __index, e.g. fvl's lazy submodules) */
  lua_pushglobaltable(L);
  const char *p = text;
  while (p < sep) {
    const char *dot = memchr(p, '.', (size_t)(sep - p));
    const char *end = dot ? dot : sep;
    if (!is_ident(p, (size_t)(end - p))) return 0;
    if (*end == ':' && end != sep) return 0;
    lua_pushlstring(L, p, (size_t)(end - p));
    lua_gettable(L, -2);
    lua_remove(L, -2);
    if (lua_isnil(L, -1)) return 0;
    p = end + 1;
  }
  comp_collect(L, text, (size_t)(sep - text) + 1, sep + 1, *sep == ':');
  return 0;
}

static char *comp_generator(const char *text, int state) {
  (void)text;
  if (state == 0) comp_next = 0;
  if (comp_next < comp_n) return strdup(comp_items[comp_next++]);
  return NULL;
}

/* inside an unfinished string literal? then complete file names */
static int in_string(const char *line, int upto) {
  char q = 0;
  for (int i = 0; i < upto && line[i]; i++) {
    char c = line[i];
    if (q) {
      if (c == '\\') i++;
      else if (c == q) q = 0;
    } else if (c == '"' || c == '\'') {
      q = c;
    } else if (c == '-' && line[i + 1] == '-') {
      return 0;                          /* a comment: nothing to complete */
    }
  }
  return q != 0;
}

/* Inside a string the word to complete is the whole path typed so far (so /abs/dir/fi and
 * ~/dir/fi complete, readline expanding the ~): only the quotes break words there. */
static char *word_breaks(void) {
  static char quotes[] = "\"'";
  return in_string(rl_line_buffer, rl_point) ? quotes : NULL;
}

static char **fvl_completion(const char *text, int start, int end) {
  (void)end;
  if (in_string(rl_line_buffer, start)) {
    rl_attempted_completion_over = 0;    /* readline's file name completion */
    rl_completion_append_character = '\0';
    return NULL;
  }
  rl_attempted_completion_over = 1;
  rl_completion_append_character = '\0';
  comp_reset();
  lua_State *L = comp_L;
  int top = lua_gettop(L);
  lua_pushcfunction(L, comp_build);
  lua_pushstring(L, text);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) lua_pop(L, 1);   /* a failing __index: no matches */
  lua_settop(L, top);
  if (comp_n == 0) return NULL;
  return rl_completion_matches(text, comp_generator);
}

/* the match list shows names without their a.b. prefix */
static void show_matches(char **matches, int n, int maxlen) {
  if (rl_filename_completion_desired) {  /* file names: readline's own display */
    rl_display_match_list(matches, n, maxlen);
    rl_forced_update_display();
    return;
  }
  char **short_ = calloc((size_t)n + 2, sizeof *short_);
  if (!short_) return;
  int longest = 0;
  for (int i = 0; i <= n; i++) {
    const char *m = matches[i];
    const char *s = m;
    for (const char *p = m; *p; p++)
      if (*p == '.' || *p == ':') s = p + 1;
    short_[i] = (char *)s;
    if (i > 0 && (int)strlen(s) > longest) longest = (int)strlen(s);
  }
  rl_display_match_list(short_, n, longest);
  rl_forced_update_display();
  free(short_);
}

static void completion_setup(lua_State *L) {
  comp_L = L;
  rl_readline_name = "fvl";
  rl_catch_signals = 0;                  /* Ctrl-C is ours, see tty_readline */
  rl_attempted_completion_function = fvl_completion;
  rl_completion_word_break_hook = word_breaks;
  rl_completion_display_matches_hook = show_matches;
  rl_basic_word_break_characters = " \t\n\"\\'`@$><=;|&{}()[],+-*/%^#~";
  rl_completer_quote_characters = "\"'";
}

/* ================================================================== values */

typedef struct {
  char *p;
  size_t n, cap;
} sbuf;

#define VIEW_MAX_CHARS 240
#define VIEW_MAX_ITEMS 16   /* at the top level */
#define VIEW_MAX_NESTED 5   /* inside another table */

static void sb_put(sbuf *b, const char *s, size_t n) {
  if (b->n + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + n + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) return;
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = '\0';
}
static void sb_puts(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_quoted(sbuf *b, const char *s, size_t n) {
  size_t lim = n > 40 ? 40 : n;
  sb_put(b, "\"", 1);
  for (size_t i = 0; i < lim; i++) {
    unsigned char c = (unsigned char)s[i];
    char esc[8];
    if (c == '"' || c == '\\') { esc[0] = '\\'; esc[1] = (char)c; sb_put(b, esc, 2); }
    else if (c == '\n') sb_put(b, "\\n", 2);
    else if (c == '\t') sb_put(b, "\\t", 2);
    else if (c < 32 || c == 127) { snprintf(esc, sizeof esc, "\\%d", c); sb_puts(b, esc); }
    else sb_put(b, (const char *)&c, 1);
  }
  if (lim < n) sb_puts(b, "...");
  sb_put(b, "\"", 1);
}

static int plain_table(lua_State *L, int idx) {
  if (lua_type(L, idx) != LUA_TTABLE) return 0;
  if (luaL_getmetafield(L, idx, "__tostring") != LUA_TNIL) { lua_pop(L, 1); return 0; }
  if (luaL_getmetafield(L, idx, "__name") != LUA_TNIL) { lua_pop(L, 1); return 0; }
  return 1;
}

static void view(lua_State *L, int idx, sbuf *b, int depth, int quote);

static void view_key(lua_State *L, int kidx, sbuf *b) {
  size_t kl;
  if (lua_type(L, kidx) == LUA_TSTRING) {
    const char *k = lua_tolstring(L, kidx, &kl);
    int word = is_ident(k, kl);
    for (int i = 0; word && keywords[i]; i++)
      if (strcmp(k, keywords[i]) == 0) word = 0;   /* {["end"] = 1} */
    if (word) {
      sb_put(b, k, kl);
    } else {
      sb_put(b, "[", 1);
      sb_quoted(b, k, kl);
      sb_put(b, "]", 1);
    }
  } else {
    sb_put(b, "[", 1);
    view(L, kidx, b, 2, 1);
    sb_put(b, "]", 1);
  }
  sb_puts(b, " = ");
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void view_table(lua_State *L, int t, sbuf *b, int depth) {
  lua_Unsigned n = lua_rawlen(L, t);
  lua_pushnil(L);
  if (!lua_next(L, t)) { sb_puts(b, "{}"); return; }
  lua_pop(L, 2);
  if (depth >= 2) { sb_puts(b, "{...}"); return; }
  luaL_checkstack(L, 8, "table view");
  sb_put(b, "{", 1);
  size_t shown = 0, total = 0, maxitems = depth ? VIEW_MAX_NESTED : VIEW_MAX_ITEMS;
  int cut = 0;
  for (lua_Unsigned i = 1; i <= n; i++) {
    total++;
    if (cut || shown >= maxitems || b->n > VIEW_MAX_CHARS) { cut = 1; continue; }
    if (shown) sb_puts(b, ", ");
    lua_rawgeti(L, t, (lua_Integer)i);
    view(L, lua_gettop(L), b, depth + 1, 1);
    lua_pop(L, 1);
    shown++;
  }
  /* other keys: sorted by name when they are few strings, else in table order */
  enum { NSORT = 64 };
  const char *names[NSORT];
  size_t nnames = 0, nother = 0, nstr = 0;
  lua_pushnil(L);
  while (lua_next(L, t)) {
    lua_pop(L, 1);
    if (lua_isinteger(L, -1)) {
      lua_Integer k = lua_tointeger(L, -1);
      if (k >= 1 && (lua_Unsigned)k <= n) continue;
    }
    nother++;
    if (lua_type(L, -1) == LUA_TSTRING && nstr++ < NSORT) names[nnames++] = lua_tostring(L, -1);
  }
  total += nother;
  /* the key strings stay alive: the table holds them and is not modified meanwhile */
  int sorted = nstr <= NSORT;
  if (sorted) {
    qsort(names, nnames, sizeof *names, cmp_str);
    for (size_t i = 0; i < nnames; i++) {
      if (cut || shown >= maxitems || b->n > VIEW_MAX_CHARS) { cut = 1; break; }
      if (shown) sb_puts(b, ", ");
      lua_pushstring(L, names[i]);
      view_key(L, lua_gettop(L), b);
      lua_rawget(L, t);
      view(L, lua_gettop(L), b, depth + 1, 1);
      lua_pop(L, 1);
      shown++;
    }
  }
  if (!cut && nother > (sorted ? nnames : 0)) {
    lua_pushnil(L);
    while (lua_next(L, t)) {
      int skip = sorted && lua_type(L, -2) == LUA_TSTRING;
      if (lua_isinteger(L, -2)) {
        lua_Integer k = lua_tointeger(L, -2);
        skip = k >= 1 && (lua_Unsigned)k <= n;
      }
      if (!skip) {
        if (shown >= maxitems || b->n > VIEW_MAX_CHARS) { cut = 1; lua_pop(L, 2); break; }
        if (shown) sb_puts(b, ", ");
        view_key(L, lua_gettop(L) - 1, b);
        view(L, lua_gettop(L), b, depth + 1, 1);
        shown++;
      }
      lua_pop(L, 1);
    }
  }
  if (cut) {
    char more[64];
    snprintf(more, sizeof more, "%s... (%zu entries)", shown ? ", " : "", total);
    sb_puts(b, more);
  }
  sb_put(b, "}", 1);
}

static void view(lua_State *L, int idx, sbuf *b, int depth, int quote) {
  if (plain_table(L, idx)) {
    view_table(L, idx, b, depth);
  } else if (quote && lua_type(L, idx) == LUA_TSTRING) {
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    sb_quoted(b, s, n);
  } else {
    size_t n;
    const char *s = luaL_tolstring(L, idx, &n);   /* __tostring: tensors print a summary */
    if (depth > 0) {                              /* inside a table: its first line only */
      const char *nl = memchr(s, '\n', n);
      if (nl) n = (size_t)(nl - s);
    }
    sb_put(b, s, n);
    lua_pop(L, 1);
  }
}

static int view_free(lua_State *L) {
  sbuf *b = lua_touserdata(L, 1);
  free(b->p);
  b->p = NULL;
  return 0;
}

void app_pushview(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  /* the buffer is freed by a to-be-closed value even when __tostring raises */
  sbuf *b = lua_newuserdatauv(L, sizeof *b, 0);
  memset(b, 0, sizeof *b);
  lua_newtable(L);
  lua_pushcfunction(L, view_free);
  lua_setfield(L, -2, "__close");
  lua_setmetatable(L, -2);
  lua_toclose(L, -1);
  int ud = lua_gettop(L);
  view(L, idx, b, 0, 0);
  lua_pushlstring(L, b->p ? b->p : "", b->n);
  lua_closeslot(L, ud);                    /* frees the buffer; then drop its slot */
  lua_remove(L, ud);
}

/* protected: prints every value on the stack, tab separated */
static int print_values(lua_State *L) {
  int n = lua_gettop(L);
  int multiline = 0;
  luaL_checkstack(L, n + 8, "too many results to print");
  for (int i = 1; i <= n; i++) {
    app_pushview(L, i);
    multiline |= strchr(lua_tostring(L, -1), '\n') != NULL;
  }
  /* values side by side (tab separated) unless one of them spans several lines */
  for (int i = 1; i <= n; i++) {
    size_t len;
    const char *s = lua_tolstring(L, n + i, &len);
    if (i > 1) fputc(multiline ? '\n' : '\t', stdout);
    fwrite(s, 1, len, stdout);
  }
  fputc('\n', stdout);
  fflush(stdout);
  return 0;
}

/* ================================================================== ? help */

static const char repl_help[] =
  "fvl REPL: type Lua; expressions print their value (a trailing ; prints nothing).\n"
  "  ? expr      describe a value: a function's parameters and source, a table's fields,\n"
  "              an object's methods          (e.g. ? fvl.matmul, ? fvl, ? t)\n"
  "  Tab         complete globals, fields (a.b.c), methods (t:ma), file names in strings\n"
  "  Ctrl-C      interrupt running code (Lua loops and engine kernels); at the prompt,\n"
  "              drop the line\n"
  "  Ctrl-D      leave            Up/Down/Ctrl-R  history (~/.fvl_history)\n"
  "Commands taking over 1 s print their time. See docs/repl.md.\n";

/* lists the string keys of the table on top (and of its __index tables), sorted; pops it */
static void describe_fields(lua_State *L, const char *what, int methods) {
  comp_reset();
  comp_collect(L, "", 0, "", methods);
  if (comp_n == 0) return;
  qsort(comp_items, comp_n, sizeof *comp_items, cmp_str);
  printf("%s:\n", what);
  size_t col = 0;
  for (size_t i = 0; i < comp_n; i++) {
    if (i > 0 && strcmp(comp_items[i], comp_items[i - 1]) == 0) continue;
    size_t w = strlen(comp_items[i]) + 2;
    if (col > 0 && col + w > 96) { fputc('\n', stdout); col = 0; }
    printf("%s%s", col ? "  " : "  ", comp_items[i]);
    col += w;
  }
  fputc('\n', stdout);
  comp_reset();
}

/* prints the API reference entry (fvl.help over fvl.apidoc, generated from the doc comments) for the
   expression text at 2 or the value at 1; returns whether there was one */
static int describe_apidoc(lua_State *L) {
  int top = lua_gettop(L);
  lua_getglobal(L, "require");
  lua_pushstring(L, "fvl.help");
  if (lua_pcall(L, 1, 1, 0) != LUA_OK || !lua_istable(L, -1)) { lua_settop(L, top); return 0; }
  lua_getfield(L, -1, "lookup");
  lua_pushvalue(L, 2);
  lua_pushvalue(L, 1);
  int found = lua_pcall(L, 2, 1, 0) == LUA_OK && lua_type(L, -1) == LUA_TSTRING;
  if (found) printf("%s\n", lua_tostring(L, -1));
  lua_settop(L, top);
  return found;
}

/* protected: describes the value at 1 (2: the expression's text) */
static int describe_value(lua_State *L) {
  lua_Debug ar;
  int documented = describe_apidoc(L);
  lua_settop(L, 1);                      /* lua_getlocal below reads the function at the top */
  switch (lua_type(L, 1)) {
    case LUA_TFUNCTION: {
      if (documented) break;
      lua_pushvalue(L, 1);
      lua_getinfo(L, ">Su", &ar);
      if (ar.what[0] == 'C') {
        printf("C function (its parameters are not known to Lua)\n");
        break;
      }
      printf("function(");
      for (int i = 1; i <= ar.nparams; i++) {
        const char *name = lua_getlocal(L, NULL, i);   /* reads the function at the top (arg 1) */
        printf("%s%s", i > 1 ? ", " : "", name ? name : "?");
      }
      printf("%s)  -- defined at %s:%d\n", ar.isvararg ? (ar.nparams ? ", ..." : "...") : "",
             ar.short_src, ar.linedefined);
      break;
    }
    case LUA_TTABLE:
    case LUA_TUSERDATA: {
      app_pushview(L, 1);
      size_t n;
      const char *v = lua_tolstring(L, -1, &n);
      const char *nl = memchr(v, '\n', n);
      printf("%s %.*s\n", luaL_typename(L, 1), (int)(nl ? nl - v : (ptrdiff_t)(n > 120 ? 120 : n)), v);
      lua_pop(L, 1);
      lua_pushvalue(L, 1);
      describe_fields(L, lua_type(L, 1) == LUA_TTABLE ? "fields" : "methods",
                      lua_type(L, 1) == LUA_TUSERDATA);
      break;
    }
    default: {
      if (documented && lua_isnil(L, 1)) break;   /* a documented name not loaded yet */
      app_pushview(L, 1);
      printf("%s: %s\n", luaL_typename(L, 1), lua_tostring(L, -1));
      lua_pop(L, 1);
      if (lua_type(L, 1) == LUA_TSTRING) {
        lua_pushvalue(L, 1);
        describe_fields(L, "methods", 1);
      }
    }
  }
  fflush(stdout);
  return 0;
}

/* ================================================================== the loop */

static int incomplete(lua_State *L, int status) {
  if (status == LUA_ERRSYNTAX) {
    size_t len;
    const char *msg = lua_tolstring(L, -1, &len);
    if (len >= 5 && strcmp(msg + len - 5, "<eof>") == 0) {
      lua_pop(L, 1);
      return 1;
    }
  }
  return 0;
}

static int blank(const char *s) {
  for (; *s; s++)
    if (*s != ' ' && *s != '\t' && *s != '\r' && *s != '\n') return 0;
  return 1;
}

static int ends_with_semicolon(const char *s) {
  size_t n = strlen(s);
  while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
    n--;
  return n > 0 && s[n - 1] == ';';
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* "? expr" (expr after the '?'): leaves `return expr` compiled on the stack, or the syntax error;
 * "? t:sum" (a method, as it is called) that does not compile as is looks up t.sum. */
static int load_help(lua_State *L, const char *expr) {
  lua_pushfstring(L, "return %s", expr);
  size_t hl;
  const char *h = lua_tolstring(L, -1, &hl);
  int st = luaL_loadbuffer(L, h, hl, "=stdin");
  lua_remove(L, -2);
  const char *colon = strrchr(expr, ':');
  if (st == LUA_ERRSYNTAX && colon) {
    char *dot = strdup(expr);
    if (dot) {
      dot[colon - expr] = '.';
      lua_pushfstring(L, "return %s", dot);
      free(dot);
      h = lua_tolstring(L, -1, &hl);
      if (luaL_loadbuffer(L, h, hl, "=stdin") == LUA_OK) {
        lua_remove(L, -2);                 /* the retry's source */
        lua_remove(L, -2);                 /* the first syntax error */
        return LUA_OK;
      }
      lua_pop(L, 2);                       /* the retry's error and source: keep the first error */
    }
  }
  return st;
}

/* A statement that starts with *line, possibly over several lines: reads more lines while the
 * parser says the chunk is incomplete (*line grows; it stays the caller's to free) and leaves the
 * compiled chunk or the syntax error on the stack. -2: Ctrl-C abandoned the input. */
static int load_statement(lua_State *L, char **line) {
  size_t len = strlen(*line);
  for (;;) {
    int status = luaL_loadbuffer(L, *line, len, "=stdin");
    if (!incomplete(L, status)) return status;
    int intr;
    char *more = read_input(L, 0, &intr);
    if (!more) {
      if (intr) return -2;
      /* end of input inside a statement: report what the parser says */
      return luaL_loadbuffer(L, *line, len, "=stdin");
    }
    size_t ml = strlen(more);
    char *joined = realloc(*line, len + ml + 2);
    if (!joined) {                         /* out of memory: the parser's message for what came */
      free(more);
      return luaL_loadbuffer(L, *line, len, "=stdin");
    }
    *line = joined;
    joined[len] = '\n';
    memcpy(joined + len + 1, more, ml + 1);
    len += ml + 1;
    free(more);
  }
}

/* Reads one complete chunk and leaves it compiled on the stack; returns its status and the
 * source in *src (malloc'd). -1: end of input; -2: Ctrl-C abandoned the input; -3: a blank line;
 * -4: a bare "?" (*help set, as for every "?" line). */
static int read_chunk(lua_State *L, char **src, int *help) {
  int intr;
  char *line = read_input(L, 1, &intr);
  *src = NULL;
  *help = 0;
  if (!line) return intr ? -2 : -1;
  if (blank(line)) {
    free(line);
    return -3;
  }
  const char *expr = line;
  while (*expr == ' ' || *expr == '\t') expr++;
  if (*expr == '?') {                    /* "?" help, "? expr" describes a value */
    *help = 1;
    *src = line;
    if (blank(expr + 1)) return -4;
    return load_help(L, expr + 1);
  }
  /* an expression? */
  lua_pushfstring(L, "return %s", line);
  size_t rl;
  const char *ret = lua_tolstring(L, -1, &rl);
  int status = luaL_loadbuffer(L, ret, rl, "=stdin");
  lua_remove(L, -2);
  if (status == LUA_OK) {
    *src = line;
    return status;
  }
  lua_pop(L, 1);
  status = load_statement(L, &line);
  if (status == -2) {
    free(line);
    return -2;
  }
  *src = line;
  return status;
}

void app_repl(lua_State *L) {
  use_readline = isatty(STDIN_FILENO);
  if (use_readline) {
    completion_setup(L);
    history_open();
  }
  for (;;) {
    char *src = NULL;
    int base = lua_gettop(L);
    int help;
    int status = read_chunk(L, &src, &help);
    if (status == -1) break;             /* Ctrl-D / end of input */
    if (status == -2 || status == -3) {  /* Ctrl-C at the prompt, or an empty line */
      fvl_abort_clear();
      continue;
    }
    history_add(src);
    int quiet = ends_with_semicolon(src);
    char *help_expr = NULL;               /* "? expr": the text after '?', for fvl.apidoc */
    if (help && status != -4) {
      const char *q = strchr(src, '?');
      help_expr = strdup(q ? q + 1 : "");
    }
    free(src);
    if (status == -4) {
      fputs(repl_help, stdout);
      fflush(stdout);
      continue;
    }
    if (status == LUA_OK) {
      double t0 = now_s();
      status = app_docall(L, 0, LUA_MULTRET);
      double dt = now_s() - t0;
      if (status == LUA_OK) {
        int n = lua_gettop(L) - base;
        if (help) {
          lua_settop(L, base + 1);       /* "? expr": describe the first value */
          lua_pushcfunction(L, describe_value);
          lua_insert(L, base + 1);
          lua_pushstring(L, help_expr ? help_expr : "");
          if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
            fprintf(stderr, "error describing the value: %s\n", lua_tostring(L, -1));
            fflush(stderr);
          }
        } else if (n > 0 && !quiet) {
          lua_pushcfunction(L, print_values);
          lua_insert(L, base + 1);
          if (lua_pcall(L, n, 0, 0) != LUA_OK) {
            fprintf(stderr, "error printing the result: %s\n", lua_tostring(L, -1));
            fflush(stderr);
          }
        }
      }
      if (dt > TIMING_MIN_S) {
        fflush(stdout);
        fprintf(stderr, "(%.2f s)\n", dt);
        fflush(stderr);
      }
    }
    if (status != LUA_OK) {
      const char *msg = lua_tostring(L, -1);
      if (use_readline && app_interrupted()) fputc('\n', stderr);   /* after the echoed ^C */
      fprintf(stderr, "%s\n", msg ? msg : "(error object is not a string)");
      fflush(stderr);
    }
    free(help_expr);
    lua_settop(L, base);
    fvl_abort_clear();
  }
  fputc('\n', stdout);
  fflush(stdout);
  history_close();
}
