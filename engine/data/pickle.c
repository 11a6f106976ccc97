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

static pv *run(vm *m) {
  for (;;) {
    if (need(m, 1, "the opcode stream (no STOP)")) return NULL;
    size_t at = m->pos;
    uint8_t op = m->d[m->pos++];
    pv *v = NULL, *a, *b, *c;
    int64_t k;
    switch (op) {
    case 0x80: /* PROTO */
      if (need(m, 1, "PROTO")) return NULL;
      if (m->d[m->pos] > 5) { fvl_err("%s: pickle protocol %d (at most 5)", m->what, m->d[m->pos]); return NULL; }
      m->pos++;
      break;
    case 0x95: /* FRAME */
      if (need(m, 8, "FRAME")) return NULL;
      m->pos += 8;
      break;
    case '(': if (push(m, &m->mark)) return NULL; break;
    case ']': if (push(m, pv_new(m, PV_LIST))) return NULL; break;
    case ')': if (push(m, pv_new(m, PV_TUPLE))) return NULL; break;
    case '}': if (push(m, pv_new(m, PV_DICT))) return NULL; break;
    case 'N': if (push(m, pv_new(m, PV_NONE))) return NULL; break;
    case 0x88: case 0x89:
      if (!(v = pv_new(m, PV_BOOL))) return NULL;
      v->i = op == 0x88;
      if (push(m, v)) return NULL;
      break;
    case 'J': case 'K': case 'M': {
      int n = op == 'J' ? 4 : op == 'K' ? 1 : 2;
      if (need(m, (size_t)n, "BININT") || !(v = pv_new(m, PV_INT))) return NULL;
      uint64_t u = le(m->d + m->pos, n);
      v->i = n == 4 ? (int64_t)(int32_t)(uint32_t)u : (int64_t)u;
      m->pos += (size_t)n;
      if (push(m, v)) return NULL;
      break;
    }
    case 0x8a: { /* LONG1 */
      if (need(m, 1, "LONG1")) return NULL;
      int n = m->d[m->pos++];
      if (n > 8 || need(m, (size_t)n, "LONG1")) {
        if (n > 8) fvl_err("%s: pickle integer of %d bytes at byte %zu", m->what, n, at);
        return NULL;
      }
      if (!(v = pv_new(m, PV_INT))) return NULL;
      uint64_t u = le(m->d + m->pos, n);
      if (n > 0 && n < 8 && (m->d[m->pos + n - 1] & 0x80)) u |= ~(uint64_t)0 << (8 * n);
      v->i = (int64_t)u;
      m->pos += (size_t)n;
      if (push(m, v)) return NULL;
      break;
    }
    case 'G': {
      if (need(m, 8, "BINFLOAT") || !(v = pv_new(m, PV_FLOAT))) return NULL;
      uint64_t u = 0;
      for (int i = 0; i < 8; i++) u = u << 8 | m->d[m->pos + i];  /* big-endian */
      memcpy(&v->f, &u, 8);
      m->pos += 8;
      if (push(m, v)) return NULL;
      break;
    }
    case 'U': case 'C': case 0x8c: /* SHORT_BINSTRING, SHORT_BINBYTES, SHORT_BINUNICODE */
      if (need(m, 1, "a short string")) return NULL;
      k = m->d[m->pos++];
      if (push(m, bytes_at(m, op == 0x8c ? PV_STR : PV_BYTES, (size_t)k, "a short string"))) return NULL;
      break;
    case 'T': case 'B': case 'X': /* BINSTRING, BINBYTES, BINUNICODE */
      if (need(m, 4, "a string length")) return NULL;
      k = (int64_t)le(m->d + m->pos, 4);
      m->pos += 4;
      if (push(m, bytes_at(m, op == 'X' ? PV_STR : PV_BYTES, (size_t)k, "a string"))) return NULL;
      break;
    case 0x8e: case 0x8d: case 0x96: { /* BINBYTES8, BINUNICODE8, BYTEARRAY8 */
      if (need(m, 8, "a string length")) return NULL;
      uint64_t u = le(m->d + m->pos, 8);
      m->pos += 8;
      if (u > m->len) { need(m, m->len + 1, "a string"); return NULL; }
      if (push(m, bytes_at(m, op == 0x8d ? PV_STR : PV_BYTES, (size_t)u, "a string"))) return NULL;
      break;
    }
    case 'q': if (need(m, 1, "BINPUT") || memo_put(m, m->d[m->pos++])) return NULL; break;
    case 'r':
      if (need(m, 4, "LONG_BINPUT") || memo_put(m, le(m->d + m->pos, 4))) return NULL;
      m->pos += 4;
      break;
    case 0x94: /* MEMOIZE: the next index is the number of entries stored so far */
      if (memo_put(m, (uint64_t)m->mcount)) return NULL;
      break;
    case 'h': if (need(m, 1, "BINGET") || memo_get(m, m->d[m->pos++])) return NULL; break;
    case 'j':
      if (need(m, 4, "LONG_BINGET") || memo_get(m, le(m->d + m->pos, 4))) return NULL;
      m->pos += 4;
      break;
    case 'a':
      if (!(b = pop(m, "APPEND")) || !(a = pop(m, "APPEND"))) return NULL;
      if (a->t != PV_LIST) { fvl_err("%s: pickle APPEND at byte %zu to a %s", m->what, at, pv_names[a->t]); return NULL; }
      if (add_item(m, a, b) || push(m, a)) return NULL;
      break;
    case 'e': case 't': case 'u': case 0x90: {
      const char *nm = op == 'e' ? "APPENDS" : op == 't' ? "TUPLE" : op == 'u' ? "SETITEMS" : "ADDITEMS";
      if ((k = find_mark(m, nm)) < 0) return NULL;
      pv *target;
      if (op == 't') {
        if (!(target = pv_new(m, PV_TUPLE))) return NULL;
      } else {
        if (k == 0) { fvl_err("%s: pickle %s at byte %zu with nothing to add to", m->what, nm, at); return NULL; }
        target = m->stack[k - 1];
        pv_type want = op == 'e' ? PV_LIST : PV_DICT;
        if (target->t != want || op == 0x90) {
          fvl_err("%s: pickle %s at byte %zu on a %s", m->what, nm, at, pv_names[target->t]);
          return NULL;
        }
        if (op == 'u' && (m->sp - k - 1) % 2) { fvl_err("%s: pickle SETITEMS with an odd count", m->what); return NULL; }
      }
      for (int64_t i = k + 1; i < m->sp; i++)
        if (add_item(m, target, m->stack[i])) return NULL;
      m->sp = k;
      if (op == 't' && push(m, target)) return NULL;
      break;
    }
    case 's':
      if (!(c = pop(m, "SETITEM")) || !(b = pop(m, "SETITEM")) || !(a = pop(m, "SETITEM"))) return NULL;
      if (a->t != PV_DICT) { fvl_err("%s: pickle SETITEM at byte %zu on a %s", m->what, at, pv_names[a->t]); return NULL; }
      if (add_item(m, a, b) || add_item(m, a, c) || push(m, a)) return NULL;
      break;
    case 0x85: case 0x86: case 0x87: {
      int n = op - 0x84;
      if (!(v = pv_new(m, PV_TUPLE))) return NULL;
      pv *it[3];
      for (int i = n - 1; i >= 0; i--) if (!(it[i] = pop(m, "TUPLEn"))) return NULL;
      for (int i = 0; i < n; i++) if (add_item(m, v, it[i])) return NULL;
      if (push(m, v)) return NULL;
      break;
    }
    case 'c': { /* GLOBAL "module\nname\n" */
      const uint8_t *p = m->d + m->pos, *e = m->d + m->len;
      const uint8_t *nl1 = memchr(p, '\n', (size_t)(e - p));
      const uint8_t *nl2 = nl1 ? memchr(nl1 + 1, '\n', (size_t)(e - nl1 - 1)) : NULL;
      if (!nl2) { fvl_err("%s: pickle GLOBAL at byte %zu is truncated", m->what, at); return NULL; }
      pv *g = make_global(m, p, (size_t)(nl1 - p), nl1 + 1, (size_t)(nl2 - nl1 - 1));
      m->pos = (size_t)(nl2 + 1 - m->d);
      if (push(m, g)) return NULL;
      break;
    }
    case 0x93: /* STACK_GLOBAL */
      if (!(b = pop(m, "STACK_GLOBAL")) || !(a = pop(m, "STACK_GLOBAL"))) return NULL;
      if (a->t != PV_STR || b->t != PV_STR) { fvl_err("%s: pickle STACK_GLOBAL at byte %zu on non-strings", m->what, at); return NULL; }
      if (push(m, make_global(m, a->p, a->len, b->p, b->len))) return NULL;
      break;
    case 'R': case 0x81: /* REDUCE, NEWOBJ */
      if (!(b = pop(m, "REDUCE")) || !(a = pop(m, "REDUCE"))) return NULL;
      if (a->t != PV_GLOBAL || b->t != PV_TUPLE) {
        fvl_err("%s: pickle %s at byte %zu calls a %s with a %s", m->what, op == 'R' ? "REDUCE" : "NEWOBJ",
                at, pv_names[a->t], pv_names[b->t]);
        return NULL;
      }
      if (global_is(a, "_codecs", NULL, "encode")) v = latin1(m, b);
      else if ((v = pv_new(m, PV_OBJ))) { v->fn = a; v->args = b; }
      if (push(m, v)) return NULL;
      break;
    case 'b': /* BUILD */
      if (!(b = pop(m, "BUILD")) || !(a = pop(m, "BUILD"))) return NULL;
      if (a->t != PV_OBJ || a->state) { fvl_err("%s: pickle BUILD at byte %zu on a %s", m->what, at, pv_names[a->t]); return NULL; }
      a->state = b;
      if (push(m, a)) return NULL;
      break;
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
  bp->n = bins->n;
  bp->img = calloc((size_t)(bins->n ? bins->n : 1), sizeof *bp->img);
  bp->img_len = calloc((size_t)(bins->n ? bins->n : 1), sizeof *bp->img_len);
  if (!bp->img || !bp->img_len) { fvl_err("%s: out of memory", what); goto fail; }
  int64_t owned = 0;
  for (int64_t i = 0; i < bins->n; i++) {
    pv *it = bins->items[i];
    if (it->t == PV_BYTES) {
      bp->img[i] = it->p;
      bp->img_len[i] = it->len;
      owned += it->own != NULL;
    } else {
      char code[8];
      int64_t ne;
      if (array_bytes(&m, it, &bp->img[i], &bp->img_len[i], code, &ne, "bins", i + 1)) goto fail;
      if (strcmp(code + 1, "u1") && strcmp(code + 1, "i1")) {
        fvl_err("%s: bins[%lld] is a numpy array of dtype %s, expected uint8 image bytes", what,
                (long long)i + 1, code);
        goto fail;
      }
      if ((size_t)ne != bp->img_len[i]) {
        fvl_err("%s: bins[%lld]: a numpy array of %lld elements with %zu data bytes", what,
                (long long)i + 1, (long long)ne, bp->img_len[i]);
        goto fail;
      }
    }
  }
  if (owned) {
    /* latin-1 converted bytes live in the VM's values: copy them out */
    size_t tot = 0;
    for (int64_t i = 0; i < bins->n; i++) tot += bp->img_len[i];
    uint8_t *copy = malloc(tot ? tot : 1);
    if (!copy) { fvl_err("%s: out of memory", what); goto fail; }
    size_t o = 0;
    for (int64_t i = 0; i < bins->n; i++) {
      memcpy(copy + o, bp->img[i], bp->img_len[i]);
      bp->img[i] = copy + o;
      o += bp->img_len[i];
    }
    free(data);
    data = copy;
    len = tot;
  }
  if (same->t == PV_LIST || same->t == PV_TUPLE) {
    bp->npairs = same->n;
    bp->issame = malloc((size_t)(same->n ? same->n : 1));
    if (!bp->issame) { fvl_err("%s: out of memory", what); goto fail; }
    for (int64_t i = 0; i < same->n; i++) {
      pv *b = same->items[i];
      if ((b->t != PV_BOOL && b->t != PV_INT) || b->i < 0 || b->i > 1) {
        fvl_err("%s: issame[%lld] is a %s, expected a bool", what, (long long)i + 1, pv_names[b->t]);
        goto fail;
      }
      bp->issame[i] = (uint8_t)b->i;
    }
  } else {
    const uint8_t *p;
    size_t l;
    char code[8];
    int64_t ne;
    if (array_bytes(&m, same, &p, &l, code, &ne, "issame", 1)) goto fail;
    if (strcmp(code + 1, "b1") || (size_t)ne != l) {
      fvl_err("%s: issame is a numpy array of dtype %s, expected bool", what, code);
      goto fail;
    }
    bp->npairs = ne;
    bp->issame = malloc((size_t)(ne ? ne : 1));
    if (!bp->issame) { fvl_err("%s: out of memory", what); goto fail; }
    for (int64_t i = 0; i < ne; i++) {
      if (p[i] > 1) { fvl_err("%s: issame[%lld] = %d is not a bool", what, (long long)i + 1, p[i]); goto fail; }
      bp->issame[i] = p[i];
    }
  }
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
