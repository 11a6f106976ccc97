/* pickle.c — the subset of Python's pickle machine that insightface .bin verification packs use:
 * a 2-tuple (bins, issame) where bins holds encoded images as py2 byte strings, py3 bytes,
 * bytes pickled at protocol 2 as _codecs.encode(str, 'latin1'), or 1-D uint8 numpy arrays
 * (numpy's _reconstruct + BUILD form and protocol 5's _frombuffer form), and issame holds bools
 * (a list or a numpy bool array). Anything else is refused with the opcode and its offset. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "facedata.h"

typedef enum { PV_NONE, PV_BOOL, PV_INT, PV_FLOAT, PV_BYTES, PV_STR, PV_TUPLE, PV_LIST, PV_DICT,
               PV_GLOBAL, PV_OBJ, PV_MARK } pv_type;
static const char *const pv_names[] = {"None", "bool", "int", "float", "bytes", "str", "tuple",
                                       "list", "dict", "global", "object", "mark"};

typedef struct pv {
  pv_type t;
  int64_t i;
  double f;
  const uint8_t *p;          /* bytes / str (UTF-8) */
  size_t len;
  struct pv **items;         /* tuple / list / dict (key, value, key, value...) */
  int64_t n, cap;
  char *mod, *name;          /* global */
  struct pv *fn, *args, *state;  /* object made by REDUCE / NEWOBJ, state set by BUILD */
  uint8_t *own;
  struct pv *next_alloc;
} pv;

typedef struct vm {
  const uint8_t *d;
  size_t len, pos;
  const char *what;
  pv *all;                   /* every value (freed at the end) */
  pv **stack;
  int64_t sp, scap;
  pv **memo;
  int64_t mcap, mcount;
  pv mark;
} vm;

static pv *pv_new(vm *m, pv_type t) {
  pv *v = calloc(1, sizeof *v);
  if (!v) { fvl_err("%s: out of memory", m->what); return NULL; }
  v->t = t;
  v->next_alloc = m->all;
  m->all = v;
  return v;
}
static void vm_free(vm *m) {
  for (pv *v = m->all, *nx; v; v = nx) {
    nx = v->next_alloc;
    free(v->items); free(v->mod); free(v->name); free(v->own);
    free(v);
  }
  free(m->stack);
  free(m->memo);
}
static int push(vm *m, pv *v) {
  if (!v) return -1;
  if (m->sp == m->scap) {
    int64_t c = m->scap ? m->scap * 2 : 64;
    pv **s = realloc(m->stack, (size_t)c * sizeof *s);
    if (!s) return fvl_err("%s: out of memory", m->what);
    m->stack = s;
    m->scap = c;
  }
  m->stack[m->sp++] = v;
  return 0;
}
static int add_item(vm *m, pv *list, pv *v) {
  if (list->n == list->cap) {
    int64_t c = list->cap ? list->cap * 2 : 16;
    pv **s = realloc(list->items, (size_t)c * sizeof *s);
    if (!s) return fvl_err("%s: out of memory", m->what);
    list->items = s;
    list->cap = c;
  }
  list->items[list->n++] = v;
  return 0;
}
static int need(vm *m, size_t n, const char *op) {
  if (m->len - m->pos < n)
    return fvl_err("%s: pickle truncated inside %s at byte %zu (needs %zu more bytes, %zu left)",
                   m->what, op, m->pos, n, m->len - m->pos);
  return 0;
}
static uint64_t le(const uint8_t *p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; i--) v = v << 8 | p[i];
  return v;
}
static pv *pop(vm *m, const char *op) {
  if (m->sp == 0 || m->stack[m->sp - 1] == &m->mark) {
    fvl_err("%s: pickle opcode %s at byte %zu pops an empty stack", m->what, op, m->pos);
    return NULL;
  }
  return m->stack[--m->sp];
}
static int64_t find_mark(vm *m, const char *op) {
  for (int64_t k = m->sp - 1; k >= 0; k--)
    if (m->stack[k] == &m->mark) return k;
  fvl_err("%s: pickle opcode %s at byte %zu without a MARK", m->what, op, m->pos);
  return -1;
}
static int memo_put(vm *m, uint64_t idx) {
  if (m->sp == 0) return fvl_err("%s: pickle memo store at byte %zu with an empty stack", m->what, m->pos);
  if (idx > (1u << 26)) return fvl_err("%s: pickle memo index %llu is too large", m->what, (unsigned long long)idx);
  if ((int64_t)idx >= m->mcap) {
    int64_t c = (int64_t)idx * 2 + 16;
    pv **s = realloc(m->memo, (size_t)c * sizeof *s);
    if (!s) return fvl_err("%s: out of memory", m->what);
    memset(s + m->mcap, 0, (size_t)(c - m->mcap) * sizeof *s);
    m->memo = s;
    m->mcap = c;
  }
  if (!m->memo[idx]) m->mcount++;
  m->memo[idx] = m->stack[m->sp - 1];
  return 0;
}
static int memo_get(vm *m, uint64_t idx) {
  if ((int64_t)idx >= m->mcap || !m->memo[idx])
    return fvl_err("%s: pickle memo index %llu at byte %zu was never stored", m->what,
                   (unsigned long long)idx, m->pos);
  return push(m, m->memo[idx]);
}
static pv *bytes_at(vm *m, pv_type t, size_t n, const char *op) {
  if (need(m, n, op)) return NULL;
  pv *v = pv_new(m, t);
  if (!v) return NULL;
  v->p = m->d + m->pos;
  v->len = n;
  m->pos += n;
  return v;
}
static int is_str(const pv *v, const char *s) {
  return v && v->t == PV_STR && v->len == strlen(s) && memcmp(v->p, s, v->len) == 0;
}
static int global_is(const pv *g, const char *mod1, const char *mod2, const char *name) {
  return g && g->t == PV_GLOBAL && !strcmp(g->name, name) &&
         (!strcmp(g->mod, mod1) || (mod2 && !strcmp(g->mod, mod2)));
}
static pv *make_global(vm *m, const uint8_t *mod, size_t ml, const uint8_t *name, size_t nl) {
  pv *g = pv_new(m, PV_GLOBAL);
  if (!g) return NULL;
  g->mod = strndup((const char *)mod, ml);
  g->name = strndup((const char *)name, nl);
  if (!g->mod || !g->name) { fvl_err("%s: out of memory", m->what); return NULL; }
  /* only the callables numpy arrays and protocol-2 bytes need */
  if (!global_is(g, "numpy.core.multiarray", "numpy._core.multiarray", "_reconstruct") &&
      !global_is(g, "numpy.core.numeric", "numpy._core.numeric", "_frombuffer") &&
      !global_is(g, "numpy", NULL, "ndarray") && !global_is(g, "numpy", NULL, "dtype") &&
      !global_is(g, "_codecs", NULL, "encode")) {
    fvl_err("%s: pickle refers to %s.%s, which a .bin pack does not contain (only numpy arrays "
            "and bytes are read)", m->what, g->mod, g->name);
    return NULL;
  }
  return g;
}

/* _codecs.encode(str, 'latin1') → bytes: UTF-8 code points < 256 to single bytes */
static pv *latin1(vm *m, pv *args) {
  if (args->t != PV_TUPLE || args->n != 2 || args->items[0]->t != PV_STR ||
      !(is_str(args->items[1], "latin1") || is_str(args->items[1], "latin-1"))) {
    fvl_err("%s: _codecs.encode with arguments other than (str, 'latin1')", m->what);
    return NULL;
  }
  pv *s = args->items[0], *b = pv_new(m, PV_BYTES);
  if (!b) return NULL;
  b->own = malloc(s->len ? s->len : 1);
  if (!b->own) { fvl_err("%s: out of memory", m->what); return NULL; }
  size_t k = 0;
  for (size_t i = 0; i < s->len;) {
    uint8_t c = s->p[i];
    if (c < 0x80) { b->own[k++] = c; i++; }
    else if ((c & 0xE0) == 0xC0 && i + 1 < s->len && c <= 0xC3) {
      b->own[k++] = (uint8_t)((c & 0x1F) << 6 | (s->p[i + 1] & 0x3F));
      i += 2;
    } else {
      fvl_err("%s: _codecs.encode: a character outside latin-1", m->what);
      return NULL;
    }
  }
  b->p = b->own;
  b->len = k;
  return b;
}

/* The opcodes, in groups. Each handler returns 0, or -1 with the error set; `at` is the opcode's
 * offset. */

/* constants and empty containers: MARK, EMPTY_LIST/TUPLE/DICT, NONE, NEWTRUE/NEWFALSE */
static int op_const(vm *m, uint8_t op) {
  pv *v;
  switch (op) {
    case '(': return push(m, &m->mark);
    case ']': return push(m, pv_new(m, PV_LIST));
    case ')': return push(m, pv_new(m, PV_TUPLE));
    case '}': return push(m, pv_new(m, PV_DICT));
    case 'N': return push(m, pv_new(m, PV_NONE));
    default:  /* 0x88, 0x89 */
      if (!(v = pv_new(m, PV_BOOL))) return -1;
      v->i = op == 0x88;
      return push(m, v);
  }
}

/* numbers: BININT, BININT1, BININT2, LONG1, BINFLOAT */
static int op_number(vm *m, uint8_t op, size_t at) {
  pv *v;
  if (op == 'G') {
    if (need(m, 8, "BINFLOAT") || !(v = pv_new(m, PV_FLOAT))) return -1;
    uint64_t u = 0;
    for (int i = 0; i < 8; i++) u = u << 8 | m->d[m->pos + i];  /* big-endian */
    memcpy(&v->f, &u, 8);
    m->pos += 8;
    return push(m, v);
  }
  if (op == 0x8a) { /* LONG1 */
    if (need(m, 1, "LONG1")) return -1;
    int n = m->d[m->pos++];
    if (n > 8) return fvl_err("%s: pickle integer of %d bytes at byte %zu", m->what, n, at);
    if (need(m, (size_t)n, "LONG1") || !(v = pv_new(m, PV_INT))) return -1;
    uint64_t u = le(m->d + m->pos, n);
    if (n > 0 && n < 8 && (m->d[m->pos + n - 1] & 0x80)) u |= ~(uint64_t)0 << (8 * n);
    v->i = (int64_t)u;
    m->pos += (size_t)n;
    return push(m, v);
  }
  int n = op == 'J' ? 4 : op == 'K' ? 1 : 2;
  if (need(m, (size_t)n, "BININT") || !(v = pv_new(m, PV_INT))) return -1;
  uint64_t u = le(m->d + m->pos, n);
  v->i = n == 4 ? (int64_t)(int32_t)(uint32_t)u : (int64_t)u;
  m->pos += (size_t)n;
  return push(m, v);
}

/* byte and unicode strings with a 1-, 4- or 8-byte length */
static int op_string(vm *m, uint8_t op) {
  uint64_t k;
  pv_type t = op == 0x8c || op == 'X' || op == 0x8d ? PV_STR : PV_BYTES;
  if (op == 'U' || op == 'C' || op == 0x8c) { /* SHORT_BINSTRING, SHORT_BINBYTES, SHORT_BINUNICODE */
    if (need(m, 1, "a short string")) return -1;
    return push(m, bytes_at(m, t, m->d[m->pos++], "a short string"));
  }
  int w = op == 'T' || op == 'B' || op == 'X' ? 4 : 8;   /* BINSTRING/BINBYTES/BINUNICODE or the *8 */
  if (need(m, (size_t)w, "a string length")) return -1;
  k = le(m->d + m->pos, w);
  m->pos += (size_t)w;
  if (w == 8 && k > m->len) { need(m, m->len + 1, "a string"); return -1; }
  return push(m, bytes_at(m, t, (size_t)k, "a string"));
}

/* the memo: BINPUT, LONG_BINPUT, MEMOIZE, BINGET, LONG_BINGET */
static int op_memo(vm *m, uint8_t op) {
  int rc;
  switch (op) {
    case 'q': return need(m, 1, "BINPUT") || memo_put(m, m->d[m->pos++]) ? -1 : 0;
    case 'r':
      if (need(m, 4, "LONG_BINPUT")) return -1;
      rc = memo_put(m, le(m->d + m->pos, 4));
      m->pos += 4;
      return rc;
    case 0x94: return memo_put(m, (uint64_t)m->mcount);   /* the next index: entries stored so far */
    case 'h': return need(m, 1, "BINGET") || memo_get(m, m->d[m->pos++]) ? -1 : 0;
    default:  /* 'j' */
      if (need(m, 4, "LONG_BINGET")) return -1;
      rc = memo_get(m, le(m->d + m->pos, 4));
      m->pos += 4;
      return rc;
  }
}

/* building lists, tuples and dicts: APPEND, APPENDS, TUPLE, SETITEMS, ADDITEMS, SETITEM, TUPLE1..3 */
static int op_collect(vm *m, uint8_t op, size_t at) {
  pv *v, *a, *b, *c;
  if (op == 'a') {
    if (!(b = pop(m, "APPEND")) || !(a = pop(m, "APPEND"))) return -1;
    if (a->t != PV_LIST) return fvl_err("%s: pickle APPEND at byte %zu to a %s", m->what, at, pv_names[a->t]);
    return add_item(m, a, b) || push(m, a) ? -1 : 0;
  }
  if (op == 's') {
    if (!(c = pop(m, "SETITEM")) || !(b = pop(m, "SETITEM")) || !(a = pop(m, "SETITEM"))) return -1;
    if (a->t != PV_DICT) return fvl_err("%s: pickle SETITEM at byte %zu on a %s", m->what, at, pv_names[a->t]);
    return add_item(m, a, b) || add_item(m, a, c) || push(m, a) ? -1 : 0;
  }
  if (op >= 0x85 && op <= 0x87) {
    int n = op - 0x84;
    pv *it[3];
    if (!(v = pv_new(m, PV_TUPLE))) return -1;
    for (int i = n - 1; i >= 0; i--) if (!(it[i] = pop(m, "TUPLEn"))) return -1;
    for (int i = 0; i < n; i++) if (add_item(m, v, it[i])) return -1;
    return push(m, v);
  }
  /* 'e', 't', 'u', 0x90: the items above the topmost MARK */
  const char *nm = op == 'e' ? "APPENDS" : op == 't' ? "TUPLE" : op == 'u' ? "SETITEMS" : "ADDITEMS";
  int64_t k = find_mark(m, nm);
  if (k < 0) return -1;
  pv *target;
  if (op == 't') {
    if (!(target = pv_new(m, PV_TUPLE))) return -1;
  } else {
    if (k == 0) return fvl_err("%s: pickle %s at byte %zu with nothing to add to", m->what, nm, at);
    target = m->stack[k - 1];
    pv_type want = op == 'e' ? PV_LIST : PV_DICT;
    if (target->t != want || op == 0x90)
      return fvl_err("%s: pickle %s at byte %zu on a %s", m->what, nm, at, pv_names[target->t]);
    if (op == 'u' && (m->sp - k - 1) % 2) return fvl_err("%s: pickle SETITEMS with an odd count", m->what);
  }
  for (int64_t i = k + 1; i < m->sp; i++)
    if (add_item(m, target, m->stack[i])) return -1;
  m->sp = k;
  return op == 't' ? push(m, target) : 0;
}

/* globals and calls: GLOBAL, STACK_GLOBAL, REDUCE, NEWOBJ, BUILD */
static int op_call(vm *m, uint8_t op, size_t at) {
  pv *v = NULL, *a, *b;
  if (op == 'c') { /* GLOBAL "module\nname\n" */
    const uint8_t *p = m->d + m->pos, *e = m->d + m->len;
    const uint8_t *nl1 = memchr(p, '\n', (size_t)(e - p));
    const uint8_t *nl2 = nl1 ? memchr(nl1 + 1, '\n', (size_t)(e - nl1 - 1)) : NULL;
    if (!nl2) return fvl_err("%s: pickle GLOBAL at byte %zu is truncated", m->what, at);
    pv *g = make_global(m, p, (size_t)(nl1 - p), nl1 + 1, (size_t)(nl2 - nl1 - 1));
    m->pos = (size_t)(nl2 + 1 - m->d);
    return push(m, g);
  }
  if (op == 0x93) { /* STACK_GLOBAL */
    if (!(b = pop(m, "STACK_GLOBAL")) || !(a = pop(m, "STACK_GLOBAL"))) return -1;
    if (a->t != PV_STR || b->t != PV_STR)
      return fvl_err("%s: pickle STACK_GLOBAL at byte %zu on non-strings", m->what, at);
    return push(m, make_global(m, a->p, a->len, b->p, b->len));
  }
  if (op == 'b') { /* BUILD */
    if (!(b = pop(m, "BUILD")) || !(a = pop(m, "BUILD"))) return -1;
    if (a->t != PV_OBJ || a->state) return fvl_err("%s: pickle BUILD at byte %zu on a %s", m->what, at, pv_names[a->t]);
    a->state = b;
    return push(m, a);
  }
  /* 'R', 0x81: REDUCE, NEWOBJ */
  if (!(b = pop(m, "REDUCE")) || !(a = pop(m, "REDUCE"))) return -1;
  if (a->t != PV_GLOBAL || b->t != PV_TUPLE)
    return fvl_err("%s: pickle %s at byte %zu calls a %s with a %s", m->what, op == 'R' ? "REDUCE" : "NEWOBJ",
                   at, pv_names[a->t], pv_names[b->t]);
  if (global_is(a, "_codecs", NULL, "encode")) v = latin1(m, b);
  else if ((v = pv_new(m, PV_OBJ))) { v->fn = a; v->args = b; }
  return push(m, v);
}

/* the machine: opcodes until STOP, which must leave exactly one value and end the data */
static pv *run(vm *m) {
  for (;;) {
    if (need(m, 1, "the opcode stream (no STOP)")) return NULL;
    size_t at = m->pos;
    uint8_t op = m->d[m->pos++];
    int rc;
    switch (op) {
      case 0x80: /* PROTO */
        if (need(m, 1, "PROTO")) return NULL;
        if (m->d[m->pos] > 5) { fvl_err("%s: pickle protocol %d (at most 5)", m->what, m->d[m->pos]); return NULL; }
        m->pos++;
        rc = 0;
        break;
      case 0x95: /* FRAME */
        if (need(m, 8, "FRAME")) return NULL;
        m->pos += 8;
        rc = 0;
        break;
      case '(': case ']': case ')': case '}': case 'N': case 0x88: case 0x89: rc = op_const(m, op); break;
      case 'J': case 'K': case 'M': case 0x8a: case 'G': rc = op_number(m, op, at); break;
      case 'U': case 'C': case 0x8c: case 'T': case 'B': case 'X': case 0x8e: case 0x8d: case 0x96:
        rc = op_string(m, op);
        break;
      case 'q': case 'r': case 0x94: case 'h': case 'j': rc = op_memo(m, op); break;
      case 'a': case 'e': case 't': case 'u': case 0x90: case 's': case 0x85: case 0x86: case 0x87:
        rc = op_collect(m, op, at);
        break;
      case 'c': case 0x93: case 'R': case 0x81: case 'b': rc = op_call(m, op, at); break;
      case '.':
        if (m->sp != 1 || m->stack[0] == &m->mark) {
          fvl_err("%s: pickle STOP at byte %zu with %lld values on the stack (expected 1)", m->what, at, (long long)m->sp);
          return NULL;
        }
        if (m->pos != m->len) {
          fvl_err("%s: %zu bytes after the pickle's STOP (a .bin pack is one pickle)", m->what, m->len - m->pos);
          return NULL;
        }
        return m->stack[0];
      default:
        fvl_err("%s: pickle opcode 0x%02X ('%c') at byte %zu is not used by .bin packs (unsupported)",
                m->what, op, op >= 32 && op < 127 ? op : '?', at);
        return NULL;
    }
    if (rc) return NULL;
  }
}

/* numpy dtype object → "<u1"-style code, or NULL */
static int dtype_code(const pv *d, char *code) {
  if (!d || d->t != PV_OBJ || !global_is(d->fn, "numpy", NULL, "dtype") || d->args->n < 1 ||
      d->args->items[0]->t != PV_STR || d->args->items[0]->len > 6)
    return -1;
  char order = '|';
  if (d->state && d->state->t == PV_TUPLE && d->state->n >= 2 && d->state->items[1]->t == PV_STR &&
      d->state->items[1]->len == 1)
    order = (char)d->state->items[1]->p[0];
  code[0] = order;
  memcpy(code + 1, d->args->items[0]->p, d->args->items[0]->len);
  code[1 + d->args->items[0]->len] = 0;
  return 0;
}
static int64_t shape_numel(const pv *s) {
  if (!s || s->t != PV_TUPLE) return -1;
  int64_t n = 1;
  for (int64_t i = 0; i < s->n; i++) {
    if (s->items[i]->t != PV_INT || s->items[i]->i < 0 || s->items[i]->i > (1LL << 40)) return -1;
    if (fvl_mul_overflow(n, s->items[i]->i, &n) || n > (1LL << 40)) return -1;   /* (2^40)^2 wraps */
  }
  return n;
}
/* a numpy array → raw bytes, its dtype code and element count */
static int array_bytes(vm *m, const pv *v, const uint8_t **p, size_t *len, char *code, int64_t *numel,
                       const char *which, int64_t item) {
  const pv *raw = NULL, *dt = NULL, *shape = NULL;
  int fortran = 0;
  if (v->t == PV_OBJ && global_is(v->fn, "numpy.core.multiarray", "numpy._core.multiarray", "_reconstruct")) {
    const pv *s = v->state;
    if (s && s->t == PV_TUPLE && s->n == 5) {
      shape = s->items[1];
      dt = s->items[2];
      fortran = s->items[3]->t == PV_BOOL && s->items[3]->i;
      raw = s->items[4];
    }
  } else if (v->t == PV_OBJ && global_is(v->fn, "numpy.core.numeric", "numpy._core.numeric", "_frombuffer")) {
    const pv *a = v->args;
    if (a->n == 4) {
      raw = a->items[0];
      dt = a->items[1];
      shape = a->items[2];
      fortran = is_str(a->items[3], "F");
    }
  }
  (void)fortran;
  if (!raw || raw->t != PV_BYTES || dtype_code(dt, code) || (*numel = shape_numel(shape)) < 0)
    return fvl_err("%s: %s[%lld] is a %s that is not a numpy array of plain numbers", m->what,
                   which, (long long)item, v->t == PV_OBJ ? v->fn->name : pv_names[v->t]);
  *p = raw->p;
  *len = raw->len;
  return 0;
}

/* the images of `bins` (bytes, or 1-D uint8 numpy arrays) into bp->img / img_len; returns how
 * many are converted bytes that live in the VM's values (see own_images), or -1 */
static int64_t pack_images(vm *m, const pv *bins, fvl_binpack *bp) {
  const char *what = m->what;
  bp->n = bins->n;
  bp->img = calloc((size_t)(bins->n ? bins->n : 1), sizeof *bp->img);
  bp->img_len = calloc((size_t)(bins->n ? bins->n : 1), sizeof *bp->img_len);
  if (!bp->img || !bp->img_len) return fvl_err("%s: out of memory", what);
  int64_t owned = 0;
  for (int64_t i = 0; i < bins->n; i++) {
    pv *it = bins->items[i];
    if (it->t == PV_BYTES) {
      bp->img[i] = it->p;
      bp->img_len[i] = it->len;
      owned += it->own != NULL;
      continue;
    }
    char code[8];
    int64_t ne;
    if (array_bytes(m, it, &bp->img[i], &bp->img_len[i], code, &ne, "bins", i + 1)) return -1;
    if (strcmp(code + 1, "u1") && strcmp(code + 1, "i1"))
      return fvl_err("%s: bins[%lld] is a numpy array of dtype %s, expected uint8 image bytes", what,
                     (long long)i + 1, code);
    if ((size_t)ne != bp->img_len[i])
      return fvl_err("%s: bins[%lld]: a numpy array of %lld elements with %zu data bytes", what,
                     (long long)i + 1, (long long)ne, bp->img_len[i]);
  }
  return owned;
}

/* latin-1 converted bytes live in the VM's values, which go with it: every image is copied into
 * one new buffer that replaces *data (freed) */
static int own_images(const vm *m, fvl_binpack *bp, uint8_t **data, size_t *len) {
  size_t tot = 0;
  for (int64_t i = 0; i < bp->n; i++) tot += bp->img_len[i];
  uint8_t *copy = malloc(tot ? tot : 1);
  if (!copy) return fvl_err("%s: out of memory", m->what);
  size_t o = 0;
  for (int64_t i = 0; i < bp->n; i++) {
    memcpy(copy + o, bp->img[i], bp->img_len[i]);
    bp->img[i] = copy + o;
    o += bp->img_len[i];
  }
  free(*data);
  *data = copy;
  *len = tot;
  return 0;
}

/* the issame flags (a list of bools / 0-1 ints, or a numpy bool array) into bp->issame, npairs */
static int pack_issame(vm *m, const pv *same, fvl_binpack *bp) {
  const char *what = m->what;
  if (same->t == PV_LIST || same->t == PV_TUPLE) {
    bp->npairs = same->n;
    bp->issame = malloc((size_t)(same->n ? same->n : 1));
    if (!bp->issame) return fvl_err("%s: out of memory", what);
    for (int64_t i = 0; i < same->n; i++) {
      pv *b = same->items[i];
      if ((b->t != PV_BOOL && b->t != PV_INT) || b->i < 0 || b->i > 1)
        return fvl_err("%s: issame[%lld] is a %s, expected a bool", what, (long long)i + 1, pv_names[b->t]);
      bp->issame[i] = (uint8_t)b->i;
    }
    return 0;
  }
  const uint8_t *p;
  size_t l;
  char code[8];
  int64_t ne;
  if (array_bytes(m, same, &p, &l, code, &ne, "issame", 1)) return -1;
  if (strcmp(code + 1, "b1") || (size_t)ne != l)
    return fvl_err("%s: issame is a numpy array of dtype %s, expected bool", what, code);
  bp->npairs = ne;
  bp->issame = malloc((size_t)(ne ? ne : 1));
  if (!bp->issame) return fvl_err("%s: out of memory", what);
  for (int64_t i = 0; i < ne; i++) {
    if (p[i] > 1) return fvl_err("%s: issame[%lld] = %d is not a bool", what, (long long)i + 1, p[i]);
    bp->issame[i] = p[i];
  }
  return 0;
}

fvl_binpack *fvl_binpack_parse(uint8_t *data, size_t len, const char *what) {
  vm m;
  memset(&m, 0, sizeof m);
  m.d = data;
  m.len = len;
  m.what = what;
  m.mark.t = PV_MARK;
  fvl_binpack *bp = NULL;
  pv *top = run(&m);
  if (!top) goto fail;
  if ((top->t != PV_TUPLE && top->t != PV_LIST) || top->n != 2) {
    fvl_err("%s: the pickle holds a %s of %lld items, expected the pair (bins, issame)", what,
            pv_names[top->t], (long long)top->n);
    goto fail;
  }
  pv *bins = top->items[0], *same = top->items[1];
  if (bins->t != PV_LIST && bins->t != PV_TUPLE) {
    fvl_err("%s: bins is a %s, expected a list of encoded images", what, pv_names[bins->t]);
    goto fail;
  }
  bp = calloc(1, sizeof *bp);
  if (!bp) { fvl_err("%s: out of memory", what); goto fail; }
  int64_t owned = pack_images(&m, bins, bp);
  if (owned < 0 || (owned > 0 && own_images(&m, bp, &data, &len)) || pack_issame(&m, same, bp)) goto fail;
  if (bp->n != 2 * bp->npairs) {
    fvl_err("%s: %lld images for %lld issame flags (expected 2 images per pair)", what,
            (long long)bp->n, (long long)bp->npairs);
    goto fail;
  }
  bp->data = data;
  bp->data_len = len;
  vm_free(&m);
  return bp;
fail:
  vm_free(&m);
  if (bp) { free(bp->img); free(bp->img_len); free(bp->issame); free(bp); }
  free(data);
  return NULL;
}

fvl_binpack *fvl_binpack_load(const char *path) {
  uint8_t *d;
  size_t n;
  if (fvl_read_file(path, &d, &n, "bin_pack")) return NULL;
  char what[512];
  snprintf(what, sizeof what, "bin_pack: '%s'", path);
  return fvl_binpack_parse(d, n, what);
}

void fvl_binpack_free(fvl_binpack *p) {
  if (!p) return;
  free(p->img);
  free(p->img_len);
  free(p->issame);
  free(p->data);
  free(p);
}
