/* bind_data_faces.c — thin binding of engine/data/facedata.h: RecordIO reader/writer, image
 * decode/encode, image sets and the threaded loader, .bin packs, .npy/.npz. The Lua API
 * (option names, defaults, messages) is lua/fvl/faces.lua; these take checked arguments.
 * Userdata hold engine objects; every C buffer is owned by a userdata or freed before any
 * Lua call that can raise. */
#include <stdlib.h>
#include <string.h>
#include "bind.h"
#include "data/facedata.h"

#define REC_MT "fvl.RecordIO"
#define WRITER_MT "fvl.RecWriter"
#define SET_MT "fvl.ImageSet"
#define LOADER_MT "fvl.ImageLoader"
#define PACK_MT "fvl.BinPack"

/* ------------------------------------------------------------------ reader */
typedef struct { fvl_rec *r; } rec_ud;
static fvl_rec *check_rec(lua_State *L, int i) {
  rec_ud *u = luaL_checkudata(L, i, REC_MT);
  if (!u->r) fvl_error(L, "RecordIO: the file was closed");
  return u->r;
}
/* fvl._rec_open(path, idx_path|nil) -> reader | nil, message */
static int l_rec_open(lua_State *L) {
  const char *path = luaL_checkstring(L, 1), *idx = luaL_optstring(L, 2, NULL);
  rec_ud *u = lua_newuserdatauv(L, sizeof *u, 0);
  u->r = NULL;
  luaL_setmetatable(L, REC_MT);
  u->r = fvl_rec_open(path, idx);
  if (!u->r) { lua_pushnil(L); lua_pushstring(L, fvl_errmsg()); return 2; }
  return 1;
}
static int l_rec_gc(lua_State *L) {
  rec_ud *u = luaL_checkudata(L, 1, REC_MT);
  fvl_rec_close(u->r);
  u->r = NULL;
  return 0;
}
static int l_rec_len(lua_State *L) { lua_pushinteger(L, fvl_rec_count(check_rec(L, 1))); return 1; }
static int64_t check_pos(lua_State *L, fvl_rec *r, int i, const char *fn) {
  return fvl_checkpos(L, fn, "position", luaL_checkinteger(L, i), fvl_rec_count(r));
}
/* r:key(i) -> the key stored for the i-th record */
static int l_rec_key(lua_State *L) {
  fvl_rec *r = check_rec(L, 1);
  lua_pushinteger(L, fvl_rec_key(r, check_pos(L, r, 2, "RecordIO:key")));
  return 1;
}
/* r:find(key) -> position (1-based) | nil */
static int l_rec_find(lua_State *L) {
  fvl_rec *r = check_rec(L, 1);
  int64_t p = fvl_rec_find(r, luaL_checkinteger(L, 2));
  if (p < 0) lua_pushnil(L);
  else lua_pushinteger(L, p + 1);
  return 1;
}
/* r:read(i) -> the raw record bytes (split parts joined) */
static int l_rec_read(lua_State *L) {
  fvl_rec *r = check_rec(L, 1);
  int64_t i = check_pos(L, r, 2, "RecordIO:read");
  uint8_t *b;
  size_t n;
  if (fvl_rec_read(r, i, &b, &n)) return fvl_raise(L);
  lua_pushlstring(L, (const char *)b, n);   /* may raise (memory): b is freed first below */
  free(b);
  return 1;
}
/* fvl._irheader(bytes) -> {flag=, label=, labels={...}|nil, id=, id2=}, image bytes */
static int l_irheader(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  const char *what = luaL_optstring(L, 2, "IRHeader");
  fvl_irheader h;
  if (fvl_irheader_parse((const uint8_t *)s, n, &h, what)) return fvl_raise(L);
  lua_createtable(L, 0, 5);
  lua_pushinteger(L, h.flag);
  lua_setfield(L, -2, "flag");
  lua_pushnumber(L, h.label);
  lua_setfield(L, -2, "label");
  lua_pushinteger(L, (lua_Integer)h.id);
  lua_setfield(L, -2, "id");
  lua_pushinteger(L, (lua_Integer)h.id2);
  lua_setfield(L, -2, "id2");
  if (h.flag) {
    lua_createtable(L, (int)h.flag, 0);
    for (uint32_t k = 0; k < h.flag; k++) {
      lua_pushnumber(L, fvl_irheader_label(&h, k));
      lua_rawseti(L, -2, (lua_Integer)k + 1);
    }
    lua_setfield(L, -2, "labels");
  }
  lua_pushlstring(L, (const char *)h.payload, h.payload_len);
  return 2;
}

/* ------------------------------------------------------------------ writer */
typedef struct { fvl_rec_writer *w; } writer_ud;
static fvl_rec_writer *check_writer(lua_State *L, int i) {
  writer_ud *u = luaL_checkudata(L, i, WRITER_MT);
  if (!u->w) fvl_error(L, "rec_writer: the writer is closed");
  return u->w;
}
/* fvl._rec_writer(path, idx|nil) -> writer | nil, message */
static int l_writer_open(lua_State *L) {
  const char *path = luaL_checkstring(L, 1), *idx = luaL_optstring(L, 2, NULL);
  writer_ud *u = lua_newuserdatauv(L, sizeof *u, 0);
  u->w = NULL;
  luaL_setmetatable(L, WRITER_MT);
  u->w = fvl_rec_writer_open(path, idx);
  if (!u->w) { lua_pushnil(L); lua_pushstring(L, fvl_errmsg()); return 2; }
  return 1;
}
/* w:_put(key, flag, label, labels(table|nil), id, id2, image bytes) — checked in Lua */
static int l_writer_put(lua_State *L) {
  fvl_rec_writer *w = check_writer(L, 1);
  lua_Integer key = luaL_checkinteger(L, 2), flag = luaL_checkinteger(L, 3);
  double label = luaL_checknumber(L, 4);
  lua_Integer id = luaL_checkinteger(L, 6), id2 = luaL_checkinteger(L, 7);
  size_t n;
  const char *img = luaL_checklstring(L, 8, &n);  /* anchored: argument 8 */
  if (key < 0 || flag < 0 || flag > 4096 || id < 0 || id2 < 0)
    return fvl_error(L, "rec_writer:write: key %lld, %lld labels, id %lld, id2 %lld (expected "
                     "non-negative, at most 4096 labels)", (long long)key, (long long)flag,
                     (long long)id, (long long)id2);
  float labels[4096];
  if (flag > 0) luaL_checktype(L, 5, LUA_TTABLE);
  for (lua_Integer k = 0; k < flag; k++) {
    if (lua_geti(L, 5, k + 1) != LUA_TNUMBER)
      return fvl_error(L, "rec_writer:write: label[%lld] is a %s, expected a number", (long long)k + 1, luaL_typename(L, -1));
    labels[k] = (float)lua_tonumber(L, -1);   /* copied */
    lua_pop(L, 1);
  }
  if (fvl_rec_writer_put_image(w, (uint64_t)key, (uint32_t)flag, (float)label, labels,
                               (uint64_t)id, (uint64_t)id2, (const uint8_t *)img, n))
    return fvl_raise(L);
  return 0;
}
/* w:_put_raw(key, bytes) */
static int l_writer_put_raw(lua_State *L) {
  fvl_rec_writer *w = check_writer(L, 1);
  lua_Integer key = luaL_checkinteger(L, 2);
  size_t n;
  const char *b = luaL_checklstring(L, 3, &n);
  if (key < 0) return fvl_error(L, "rec_writer:write_raw: key %lld (expected >= 0)", (long long)key);
  if (fvl_rec_writer_put(w, (uint64_t)key, (const uint8_t *)b, n)) return fvl_raise(L);
  return 0;
}
/* w:_close(commit) -> true | nil, message */
static int l_writer_close(lua_State *L) {
  writer_ud *u = luaL_checkudata(L, 1, WRITER_MT);
  int commit = lua_toboolean(L, 2);
  fvl_rec_writer *w = u->w;
  u->w = NULL;
  if (!w) return fvl_error(L, "rec_writer: the writer is already closed");
  if (fvl_rec_writer_close(w, commit)) { lua_pushnil(L); lua_pushstring(L, fvl_errmsg()); return 2; }
  lua_pushboolean(L, 1);
  return 1;
}
static int l_writer_gc(lua_State *L) {
  writer_ud *u = luaL_checkudata(L, 1, WRITER_MT);
  fvl_rec_writer_close(u->w, 0);   /* never committed by the collector */
  u->w = NULL;
  return 0;
}

/* ------------------------------------------------------------------ images */
/* pixels (h×w×c bytes) → new float tensor c×h×w with values 0..255 */
static fvl_tensor *chw_tensor(const uint8_t *pix, int h, int w, int c) {
  int64_t s[3] = {c, h, w};
  fvl_tensor *t = fvl_empty(FVL_F32, 3, s);
  if (!t) return NULL;
  float *o = fvl_f32(t);
  for (int k = 0; k < c; k++)
    for (int64_t i = 0; i < (int64_t)h * w; i++) o[(int64_t)k * h * w + i] = pix[i * c + k];
  return t;
}
/* fvl._decode_image(bytes, channels, bgr, what) -> C×H×W float32 tensor (0..255) */
static int l_decode_image(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  int c = fvl_checkint32(L, "decode_image", "channels", luaL_checkinteger(L, 2), INT32_MIN, INT32_MAX), bgr = lua_toboolean(L, 3);
  const char *what = luaL_optstring(L, 4, "decode_image");
  uint8_t *pix;
  int h, w;
  if (fvl_image_decode((const uint8_t *)s, n, c, bgr, &pix, &h, &w, what)) return fvl_raise(L);
  fvl_tensor *t = chw_tensor(pix, h, w, c);
  free(pix);
  fvl_pushtensor(L, t);
  return 1;
}
/* fvl._encode_image(tensor C×H×W or H×W (0..255), quality|-1 for PNG) -> string */
static int l_encode_image(lua_State *L) {
  fvl_tensor *t = fvl_checktensor(L, 1);
  int q = fvl_checkint32(L, "encode_image", "quality", luaL_checkinteger(L, 2), INT32_MIN, INT32_MAX);
  char sb[64];
  if (t->dtype != FVL_F32 || (t->ndim != 3 && t->ndim != 2) || (t->ndim == 3 && t->size[0] != 1 && t->size[0] != 3))
    return fvl_error(L, "encode_image: image must be a float32 C×H×W (C = 1 or 3) or H×W tensor, got %s %s",
                     fvl_dtype_name(t->dtype), fvl_shape_str(t, sb, sizeof sb));
  int c = t->ndim == 3 ? (int)t->size[0] : 1;
  int64_t h = t->size[t->ndim - 2], w = t->size[t->ndim - 1];
  if (h < 1 || w < 1 || h > 65535 || w > 65535)
    return fvl_error(L, "encode_image: %lldx%lld pixels (expected 1..65535 each)", (long long)w, (long long)h);
  fvl_tensor *ct = fvl_contiguous(t);
  if (!ct) return fvl_raise(L);
  uint8_t *pix = malloc((size_t)(h * w * c));
  if (!pix) { fvl_release(ct); return fvl_error(L, "encode_image: out of memory"); }
  const float *src = fvl_f32(ct);
  for (int k = 0; k < c; k++)
    for (int64_t i = 0; i < h * w; i++) {
      float v = src[k * h * w + i];
      v = v != v ? 0.f : v < 0 ? 0.f : v > 255 ? 255.f : v;
      pix[i * c + k] = (uint8_t)(v + 0.5f);
    }
  fvl_release(ct);
  uint8_t *out;
  size_t n;
  int rc = fvl_image_encode(pix, (int)h, (int)w, c, q, &out, &n);
  free(pix);
  if (rc) return fvl_raise(L);
  luaL_Buffer b;
  char *dst = luaL_buffinitsize(L, &b, n);   /* may raise: copy first */
  memcpy(dst, out, n);
  free(out);
  luaL_pushresultsize(&b, n);
  return 1;
}

/* ------------------------------------------------------------------ image sets */
typedef struct { fvl_imgset *s; } set_ud;
static fvl_imgset *check_set(lua_State *L, int i) {
  set_ud *u = luaL_checkudata(L, i, SET_MT);
  if (!u->s) fvl_error(L, "images: the data set was closed");
  return u->s;
}
static set_ud *new_set(lua_State *L) {
  set_ud *u = lua_newuserdatauv(L, sizeof *u, 0);
  u->s = NULL;
  luaL_setmetatable(L, SET_MT);
  return u;
}
/* fvl._imgset_rec(path, idx|nil, property|nil) -> set | nil, message */
static int l_imgset_rec(lua_State *L) {
  const char *path = luaL_checkstring(L, 1), *idx = luaL_optstring(L, 2, NULL),
             *prop = luaL_optstring(L, 3, NULL);
  set_ud *u = new_set(L);
  u->s = fvl_imgset_rec(path, idx, prop);
  if (!u->s) { lua_pushnil(L); lua_pushstring(L, fvl_errmsg()); return 2; }
  return 1;
}
/* fvl._imgset_folder(dir) -> set | nil, message */
static int l_imgset_folder(lua_State *L) {
  const char *dir = luaL_checkstring(L, 1);
  set_ud *u = new_set(L);
  u->s = fvl_imgset_folder(dir);
  if (!u->s) { lua_pushnil(L); lua_pushstring(L, fvl_errmsg()); return 2; }
  return 1;
}
/* fvl._imgset_files({paths}, labels int32 0-based tensor | nil) -> set */
static int l_imgset_files(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_Integer n = (lua_Integer)lua_rawlen(L, 1);
  if (n > INT32_MAX) return fvl_error(L, "images: %lld files (at most 2^31 - 1)", (long long)n);
  fvl_tensor *lab = fvl_opttensor(L, 2);
  if (lab && (lab->dtype != FVL_I32 || lab->ndim != 1 || lab->size[0] != n || !fvl_is_contiguous(lab)))
    return fvl_error(L, "images: labels must be %lld contiguous int32 values", (long long)n);
  set_ud *u = new_set(L);
  int set_idx = lua_gettop(L);
  const char **files = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof *files, 0);
  int anchor = fvl_anchor_new(L);   /* the path strings stay valid while C uses them */
  for (lua_Integer i = 1; i <= n; i++) {
    if (lua_geti(L, 1, i) != LUA_TSTRING)
      return fvl_error(L, "images: files[%lld] is a %s, expected a path", (long long)i, luaL_typename(L, -1));
    files[i - 1] = fvl_anchor_string(L, anchor, NULL);
  }
  u->s = fvl_imgset_files(files, lab ? fvl_i32(lab) : NULL, (int64_t)n);
  if (!u->s) return fvl_raise(L);
  lua_settop(L, set_idx);
  return 1;
}
static int l_set_gc(lua_State *L) {
  set_ud *u = luaL_checkudata(L, 1, SET_MT);
  fvl_imgset_free(u->s);
  u->s = NULL;
  return 0;
}
/* set:_info() -> n, classes, H, W, header_first, header_end, kind ("rec"|"files") */
static int l_set_info(lua_State *L) {
  fvl_imgset *s = check_set(L, 1);
  lua_pushinteger(L, s->n);
  lua_pushinteger(L, s->classes);
  lua_pushinteger(L, s->H);
  lua_pushinteger(L, s->W);
  lua_pushinteger(L, s->header_range[0]);
  lua_pushinteger(L, s->header_range[1]);
  lua_pushstring(L, s->rec ? "rec" : "files");
  return 7;
}
/* set:_labels() -> int32 tensor, 1-based */
static int l_set_labels(lua_State *L) {
  fvl_imgset *s = check_set(L, 1);
  int64_t n = s->n;
  fvl_tensor *t = fvl_empty(FVL_I32, 1, &n);
  if (t) for (int64_t i = 0; i < n; i++) fvl_i32(t)[i] = s->labels[i] + 1;
  fvl_pushtensor(L, t);
  return 1;
}
/* set:_names() -> {class directory names} | nil ; set:_file(i) -> path | nil */
static int l_set_names(lua_State *L) {
  fvl_imgset *s = check_set(L, 1);
  if (!s->class_names) return 0;
  lua_createtable(L, (int)s->classes, 0);
  for (int64_t i = 0; i < s->classes; i++) {
    lua_pushstring(L, s->class_names[i]);
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}
static int64_t set_index(lua_State *L, fvl_imgset *s, int i, const char *fn) {
  return fvl_checkpos(L, fn, "sample", luaL_checkinteger(L, i), s->n);
}
static int l_set_file(lua_State *L) {
  fvl_imgset *s = check_set(L, 1);
  int64_t i = set_index(L, s, 2, "images:file");
  if (s->files) lua_pushstring(L, s->files[i]);
  else lua_pushnil(L);
  return 1;
}
/* set:_bytes(i) -> encoded image bytes */
static int l_set_bytes(lua_State *L) {
  fvl_imgset *s = check_set(L, 1);
  int64_t i = set_index(L, s, 2, "images:bytes");
  uint8_t *buf;
  const uint8_t *img;
  size_t n;
  char what[600];
  if (fvl_imgset_bytes(s, i, &buf, &img, &n, what, sizeof what)) return fvl_raise(L);
  luaL_Buffer b;
  char *dst = luaL_buffinitsize(L, &b, n);
  memcpy(dst, img, n);
  free(buf);
  luaL_pushresultsize(&b, n);
  return 1;
}

/* the image options the Lua layer (lua/fvl/faces.lua) passes, declared once */
enum { IO_C, IO_H, IO_W, IO_BGR, IO_FLIP, IO_PAD, IO_MEAN, IO_STD, IO_SKIP, IO_SEED, IO_RESIZE, IO_N };
static const fvl_optdef IMG_OPTS[] = {
  [IO_C] = {"C", FVL_OPT_INTEGER, 3, 1, 3, NULL},
  [IO_H] = {"H", FVL_OPT_INTEGER, 112, 1, 65535, NULL},
  [IO_W] = {"W", FVL_OPT_INTEGER, 112, 1, 65535, NULL},
  [IO_BGR] = {"bgr", FVL_OPT_BOOLEAN, 0, FVL_NORANGE, NULL},
  [IO_FLIP] = {"flip", FVL_OPT_BOOLEAN, 0, FVL_NORANGE, NULL},
  [IO_PAD] = {"pad", FVL_OPT_INTEGER, 0, 0, 65534, NULL},
  [IO_MEAN] = {"mean", FVL_OPT_NUMBER, 127.5, -1e30, 1e30, NULL},
  [IO_STD] = {"std", FVL_OPT_NUMBER, 127.5, -1e30, 1e30, NULL},
  [IO_SKIP] = {"skip", FVL_OPT_BOOLEAN, 0, FVL_NORANGE, NULL},
  [IO_SEED] = {"seed", FVL_OPT_INTEGER, 1, 0, 9007199254740992.0, NULL},
  [IO_RESIZE] = {"resize", FVL_OPT_BOOLEAN, 0, FVL_NORANGE, NULL},
  [IO_N] = FVL_OPT_END};
/* reads the option table at t (pushes fvl_readopts' anchor: one stack slot) */
static void read_img_opts(lua_State *L, int t, fvl_img_opts *o) {
  fvl_optval v[IO_N];
  fvl_readopts(L, t, "images", IMG_OPTS, v);
  o->C = (int)v[IO_C].num;
  o->H = (int)v[IO_H].num;
  o->W = (int)v[IO_W].num;
  o->bgr = v[IO_BGR].num != 0;
  o->flip = v[IO_FLIP].num != 0;
  o->pad = (int)v[IO_PAD].num;
  o->mean = (float)v[IO_MEAN].num;
  o->std = (float)v[IO_STD].num;
  o->skip_bad = v[IO_SKIP].num != 0;
  o->seed = (uint64_t)v[IO_SEED].num;
  o->resize = v[IO_RESIZE].num != 0;
  if (o->C == 2 || o->pad >= o->H || o->pad >= o->W || !(o->std != 0))
    fvl_error(L, "images: C = %d, size %dx%d, crop %d, std %g (expected C 1 or 3, crop < size, "
              "std != 0)", o->C, o->W, o->H, o->pad, (double)o->std);
}
/* B images of C×H×W floats: checked so that B·C·H·W·4 bytes is representable (at most 2^40
 * elements, like every shape from Lua) */
static void check_images_size(lua_State *L, const char *fn, int64_t B, const fvl_img_opts *o) {
  int64_t n = fvl_checksize_mul(L, fn, B, (int64_t)o->C * o->H * o->W);
  if (n > (INT64_C(1) << 40)) fvl_error(L, "%s: %lld images of %dx%dx%d (more than 2^40 values)", fn, (long long)B, o->C, o->H, o->W);
}
/* 0-based int32 sample numbers from a 1-D int32 tensor, checked against 1..n → int64 array
 * kept in a userdata anchored on the stack (returns its stack index) */
static int64_t *order_arg(lua_State *L, int i, int64_t n, const char *fn, int64_t *len) {
  fvl_tensor *t = fvl_checktensor(L, i);
  if (t->dtype != FVL_I32 || t->ndim != 1)
    fvl_error(L, "%s: order must be a 1-D int32 tensor of 0-based sample numbers", fn);
  int64_t m = t->size[0];
  int64_t *o = lua_newuserdatauv(L, (size_t)(m ? m : 1) * sizeof *o, 0);
  const int32_t *p = fvl_i32(t);
  for (int64_t k = 0; k < m; k++) {
    int32_t v = p[k * t->stride[0]];
    if (v < 0 || v >= n) fvl_error(L, "%s: sample %lld is outside 1..%lld", fn, (long long)v + 1, (long long)n);
    o[k] = v;
  }
  *len = m;
  return o;
}
/* set:_batch(order int32 0-based, opts, epoch, pos0) -> x, y (1-based), kept (1-based), bad */
static int l_set_batch(lua_State *L) {
  fvl_imgset *s = check_set(L, 1);
  int64_t B;
  int64_t *idx = order_arg(L, 2, s->n, "images:batch", &B);
  fvl_img_opts o;
  read_img_opts(L, 3, &o);
  int64_t epoch = luaL_optinteger(L, 4, 0), pos0 = luaL_optinteger(L, 5, 0);
  check_images_size(L, "images:batch", B, &o);
  int64_t sz[4] = {B, o.C, o.H, o.W};
  fvl_tensor *x = fvl_empty(FVL_F32, 4, sz);
  fvl_pushtensor(L, x);
  fvl_tensor *y = fvl_empty(FVL_I32, 1, &B);
  fvl_pushtensor(L, y);
  fvl_tensor *k = fvl_empty(FVL_I32, 1, &B);
  fvl_pushtensor(L, k);
  int64_t bad = 0;
  int64_t rows = fvl_img_batch(s, &o, idx, B, epoch, pos0, fvl_f32(x), fvl_i32(y), fvl_i32(k), &bad);
  if (rows < 0) return fvl_raise(L);
  for (int64_t i = 0; i < rows; i++) { fvl_i32(y)[i] += 1; fvl_i32(k)[i] += 1; }
  if (rows < B) {
    int top = lua_gettop(L);
    for (int j = top - 2; j <= top; j++) {
      fvl_pushtensor(L, fvl_narrow(fvl_totensor(L, j), 0, 0, rows));
      lua_replace(L, j);
    }
  }
  lua_pushinteger(L, bad);
  return 4;
}

/* ------------------------------------------------------------------ loader */
typedef struct { fvl_img_loader *l; } loader_ud;
/* set:_loader(order, batch, drop_last, epoch, workers, depth, opts [, first]) -> loader
 * (first: the 0-based batch to start at, default 0)
 * (the loader keeps the set alive through its user value) */
static int l_set_loader(lua_State *L) {
  fvl_imgset *s = check_set(L, 1);
  lua_Integer first = luaL_optinteger(L, 9, 0);   /* before order_arg pushes its anchor */
  int64_t n;
  int64_t *order = order_arg(L, 2, s->n, "images:loader", &n);   /* anchored at top */
  int order_idx = lua_gettop(L);
  lua_Integer B = luaL_checkinteger(L, 3);
  int drop = lua_toboolean(L, 4);
  lua_Integer epoch = luaL_checkinteger(L, 5), workers = luaL_checkinteger(L, 6),
              depth = luaL_checkinteger(L, 7);
  fvl_img_opts o;
  read_img_opts(L, 8, &o);
  if (B < 1 || B > (1 << 24) || workers < 0 || workers > 256 || depth < 1 || depth > 1024)
    return fvl_error(L, "images:loader: batch %lld, workers %lld, prefetch %lld (expected batch "
                     "1..2^24, workers 0..256, prefetch 1..1024)", (long long)B, (long long)workers,
                     (long long)depth);
  check_images_size(L, "images:loader", B, &o);
  loader_ud *u = lua_newuserdatauv(L, sizeof *u, 1);
  u->l = NULL;
  luaL_setmetatable(L, LOADER_MT);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1);
  u->l = fvl_img_loader_start(s, &o, order, n, B, drop, epoch, first, (int)workers, (int)depth);
  if (!u->l) return fvl_raise(L);
  (void)order_idx;
  return 1;
}
static int l_loader_gc(lua_State *L) {
  loader_ud *u = luaL_checkudata(L, 1, LOADER_MT);
  fvl_img_loader_stop(u->l);
  u->l = NULL;
  return 0;
}
/* loader:_next() -> x, y (1-based int32 labels), index (1-based sample numbers) | nil */
static int l_loader_next(lua_State *L) {
  loader_ud *u = luaL_checkudata(L, 1, LOADER_MT);
  if (!u->l) return fvl_error(L, "images: the loader was stopped");
  fvl_tensor *x, *y, *ix;
  int r = fvl_img_loader_next(u->l, &x, &y, &ix);
  if (r < 0) return fvl_raise(L);
  if (r == 0) return 0;
  for (int64_t i = 0; i < y->size[0]; i++) { fvl_i32(y)[i] += 1; fvl_i32(ix)[i] += 1; }
  fvl_pushtensor(L, x);
  fvl_pushtensor(L, y);
  fvl_pushtensor(L, ix);
  return 3;
}
static int l_loader_bad(lua_State *L) {
  loader_ud *u = luaL_checkudata(L, 1, LOADER_MT);
  lua_pushinteger(L, u->l ? fvl_img_loader_bad(u->l) : 0);
  return 1;
}

/* ------------------------------------------------------------------ .bin packs */
typedef struct { fvl_binpack *p; } pack_ud;
/* fvl._binpack(path) -> pack | nil, message */
static int l_binpack(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  pack_ud *u = lua_newuserdatauv(L, sizeof *u, 0);
  u->p = NULL;
  luaL_setmetatable(L, PACK_MT);
  u->p = fvl_binpack_load(path);
  if (!u->p) { lua_pushnil(L); lua_pushstring(L, fvl_errmsg()); return 2; }
  return 1;
}
static int l_pack_gc(lua_State *L) {
  pack_ud *u = luaL_checkudata(L, 1, PACK_MT);
  fvl_binpack_free(u->p);
  u->p = NULL;
  return 0;
}
/* pack:_info() -> images, pairs, issame (int32 tensor of 0/1) */
static int l_pack_info(lua_State *L) {
  pack_ud *u = luaL_checkudata(L, 1, PACK_MT);
  lua_pushinteger(L, u->p->n);
  lua_pushinteger(L, u->p->npairs);
  int64_t m = u->p->npairs;
  fvl_tensor *t = fvl_empty(FVL_I32, 1, &m);
  if (t) for (int64_t i = 0; i < m; i++) fvl_i32(t)[i] = u->p->issame[i];
  fvl_pushtensor(L, t);
  return 3;
}
/* pack:_bytes(i) -> encoded image i (1-based) */
static int l_pack_bytes(lua_State *L) {
  pack_ud *u = luaL_checkudata(L, 1, PACK_MT);
  int64_t i = fvl_checkpos(L, "bin_pack", "image", luaL_checkinteger(L, 2), u->p->n);
  lua_pushlstring(L, (const char *)u->p->img[i], u->p->img_len[i]);
  return 1;
}
/* pack:_images(first, count, flip, opts) -> count×C×H×W normalised float32 (flip: mirrored) */
static int l_pack_images(lua_State *L) {
  pack_ud *u = luaL_checkudata(L, 1, PACK_MT);
  lua_Integer first = luaL_checkinteger(L, 2), cnt = luaL_checkinteger(L, 3);
  int flip = lua_toboolean(L, 4);
  fvl_img_opts o;
  read_img_opts(L, 5, &o);
  fvl_checkrows(L, "bin_pack", "images", first, cnt, u->p->n, NULL);
  check_images_size(L, "bin_pack", cnt, &o);
  int64_t sz[4] = {cnt, o.C, o.H, o.W};
  fvl_tensor *x = fvl_empty(FVL_F32, 4, sz);
  fvl_pushtensor(L, x);
  size_t plane = (size_t)o.C * o.H * o.W;
  int failed = 0;
  char *err = NULL;
  #pragma omp parallel for schedule(dynamic, 8)
  for (int64_t k = 0; k < cnt; k++) {
    if (failed) continue;
    int64_t i = first - 1 + k;
    char what[600];
    snprintf(what, sizeof what, "bin_pack: image %lld", (long long)i + 1);
    uint8_t *pix;
    int h, w;
    int bad = fvl_image_decode(u->p->img[i], u->p->img_len[i], o.C, o.bgr, &pix, &h, &w, what);
    if (!bad && (h != o.H || w != o.W) && fvl_fit_pixels(&pix, h, w, &o, what)) {
      free(pix);
      bad = 1;
    }
    if (bad) {
      #pragma omp critical(fvl_pack_err)
      { if (!failed) { failed = 1; err = strdup(fvl_errmsg()); } }
      continue;
    }
    float *out = fvl_f32(x) + (size_t)k * plane, sd = o.std;
    for (int c = 0; c < o.C; c++)
      for (int yy = 0; yy < o.H; yy++)
        for (int xx = 0; xx < o.W; xx++) {
          int sx = flip ? o.W - 1 - xx : xx;
          out[((size_t)c * o.H + yy) * o.W + xx] = ((float)pix[((size_t)yy * o.W + sx) * o.C + c] - o.mean) / sd;
        }
    free(pix);
  }
  if (failed) {
    lua_pushstring(L, err ? err : "bin_pack: decode failed");
    free(err);
    return fvl_error(L, "%s", lua_tostring(L, -1));
  }
  return 1;
}

/* ------------------------------------------------------------------ .npy / .npz */
/* fvl._npy_read(path) -> tensor | nil, message */
static int l_npy_read(lua_State *L) {
  fvl_tensor *t = fvl_npy_read(luaL_checkstring(L, 1));
  if (!t) { lua_pushnil(L); lua_pushstring(L, fvl_errmsg()); return 2; }
  fvl_pushtensor(L, t);
  return 1;
}
/* fvl._npz_read(path) -> {name = tensor}, {names in order} | nil, message */
static int l_npz_read(lua_State *L) {
  char **names;
  fvl_tensor **ts;
  int64_t n;
  if (fvl_npz_read(luaL_checkstring(L, 1), &names, &ts, &n)) {
    lua_pushnil(L);
    lua_pushstring(L, fvl_errmsg());
    return 2;
  }
  /* hand every tensor to Lua first (no leak if a later push raises) */
  lua_createtable(L, 0, (int)n);
  lua_createtable(L, (int)n, 0);
  for (int64_t i = 0; i < n; i++) {
    fvl_tensor **p = lua_newuserdatauv(L, sizeof *p, 1);
    *p = ts[i];
    ts[i] = NULL;
    luaL_setmetatable(L, FVL_TENSOR_MT);
    lua_setfield(L, -3, names[i]);
  }
  for (int64_t i = 0; i < n; i++) {
    lua_pushstring(L, names[i]);
    lua_rawseti(L, -2, i + 1);
  }
  for (int64_t i = 0; i < n; i++) free(names[i]);
  free(names);
  free(ts);
  fvl_gc_charge(L);
  return 2;
}
/* fvl._npz_write(path, {names}, {tensors}) -> true | nil, message */
static int l_npz_write(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  luaL_checktype(L, 3, LUA_TTABLE);
  lua_Integer n = (lua_Integer)lua_rawlen(L, 2), nt = (lua_Integer)lua_rawlen(L, 3);
  if (n != nt || n > 65535)
    return fvl_error(L, "save: %lld names for %lld tensors (expected equal counts, at most 65535)", (long long)n, (long long)nt);
  const char **names = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof *names, 0);
  fvl_tensor **ts = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof *ts, 0);
  int anchor = fvl_anchor_new(L);   /* names and tensors stay alive while C uses them */
  for (lua_Integer i = 1; i <= n; i++) {
    if (lua_geti(L, 2, i) != LUA_TSTRING) return fvl_error(L, "save: name %lld is not a string", (long long)i);
    names[i - 1] = fvl_anchor_string(L, anchor, NULL);
    lua_geti(L, 3, i);
    ts[i - 1] = fvl_totensor(L, -1);
    if (!ts[i - 1]) return fvl_error(L, "save: value '%s' is a %s, expected a tensor", names[i - 1], luaL_typename(L, -1));
    fvl_anchor_keep(L, anchor);
  }
  if (fvl_npz_write(path, n, names, ts)) { lua_pushnil(L); lua_pushstring(L, fvl_errmsg()); return 2; }
  lua_pushboolean(L, 1);
  return 1;
}

/* fvl._check_labels_list(list|tensor, n, fn) -> 0-based int32 tensor (labels >= 1, n values) */
static int l_check_labels(lua_State *L) {
  const char *fn = luaL_checkstring(L, 3);
  fvl_pushtensor(L, fvl_checklabels(L, 1, fn, luaL_checkinteger(L, 2), -1));
  return 1;
}
/* fvl._check_index_list(list|tensor, n, fn) -> 0-based int32 tensor checked against 1..n */
static int l_check_index(lua_State *L) {
  const char *fn = luaL_checkstring(L, 3);
  fvl_pushtensor(L, fvl_checkindex(L, 1, fn, "indices", luaL_checkinteger(L, 2)));
  return 1;
}

static void meta(lua_State *L, const char *name, const luaL_Reg *m) {
  luaL_newmetatable(L, name);
  luaL_setfuncs(L, m, 0);
  lua_pushvalue(L, -1);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}

int fvl_open_faces(lua_State *L) {
  static const luaL_Reg rec_m[] = {{"__gc", l_rec_gc}, {"__close", l_rec_gc}, {"close", l_rec_gc},
                                   {"__len", l_rec_len}, {"count", l_rec_len}, {"key", l_rec_key},
                                   {"find", l_rec_find}, {"read", l_rec_read}, {NULL, NULL}};
  static const luaL_Reg w_m[] = {{"__gc", l_writer_gc}, {"_put", l_writer_put},
                                 {"_put_raw", l_writer_put_raw}, {"_close", l_writer_close}, {NULL, NULL}};
  static const luaL_Reg set_m[] = {{"__gc", l_set_gc}, {"_info", l_set_info}, {"_labels", l_set_labels},
                                   {"_names", l_set_names}, {"_file", l_set_file}, {"_bytes", l_set_bytes},
                                   {"_batch", l_set_batch}, {"_loader", l_set_loader}, {NULL, NULL}};
  static const luaL_Reg ld_m[] = {{"__gc", l_loader_gc}, {"_stop", l_loader_gc}, {"_next", l_loader_next},
                                  {"_bad", l_loader_bad}, {NULL, NULL}};
  static const luaL_Reg pk_m[] = {{"__gc", l_pack_gc}, {"_info", l_pack_info}, {"_bytes", l_pack_bytes},
                                  {"_images", l_pack_images}, {NULL, NULL}};
  meta(L, REC_MT, rec_m);
  meta(L, WRITER_MT, w_m);
  meta(L, SET_MT, set_m);
  meta(L, LOADER_MT, ld_m);
  meta(L, PACK_MT, pk_m);
  static const luaL_Reg fns[] = {{"_rec_open", l_rec_open}, {"_irheader", l_irheader},
                                 {"_rec_writer", l_writer_open}, {"_decode_image", l_decode_image},
                                 {"_encode_image", l_encode_image}, {"_imgset_rec", l_imgset_rec},
                                 {"_imgset_folder", l_imgset_folder}, {"_imgset_files", l_imgset_files},
                                 {"_binpack", l_binpack}, {"_npy_read", l_npy_read},
                                 {"_npz_read", l_npz_read}, {"_npz_write", l_npz_write},
                                 {"_check_labels_list", l_check_labels},
                                 {"_check_index_list", l_check_index}, {NULL, NULL}};
  luaL_setfuncs(L, fns, 0);
  return 0;
}
