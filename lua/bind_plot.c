/* bind_plot.c — raw bindings of engine/plot.c (charts, GIF animations), registered as the
 * sub-table fvl._plot. The user-facing API (fvl.plot) is lua/fvl/plot.lua; these functions only
 * check types and shapes, convert 1-based labels and call the engine. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>
#include <errno.h>
#include <unistd.h>
#include "bind.h"
#include "plot.h"
#include "plot_gif.h"

/* errors: fvl_error (bind.h), printf formats */
#define errorf fvl_error

/* ------------------------------------------------------------------ plot */

/* a list length from luaL_len (which an __len may make anything) as a count 0..INT32_MAX */
static int list_len(lua_State *L, int idx, const char *fn, const char *what) {
  lua_Integer n = luaL_len(L, idx);
  if (n < 0 || n > INT32_MAX) errorf(L, "%s: %s has %lld entries", fn, what, (long long)n);
  return (int)n;
}

/* numbers from a tensor (any shape, flattened) or a Lua list into a malloc'd double array;
 * the array is anchored on the Lua stack as a userdata so an error frees it */
static double *arg_numbers(lua_State *L, int idx, const char *fn, const char *arg, int64_t *n) {
  fvl_tensor *t = fvl_totensor(L, idx);
  int64_t m;
  if (t) m = fvl_numel(t);
  else if (lua_type(L, idx) == LUA_TTABLE) m = list_len(L, idx, fn, arg);
  else {
    errorf(L, "%s: %s must be a tensor or a list of numbers, got %s", fn, arg,
               luaL_typename(L, idx));
    return NULL;
  }
  double *v = lua_newuserdatauv(L, (size_t)fvl_checksize_mul(L, fn, m ? m : 1, sizeof *v), 0);
  if (t) {
    fvl_tensor *c = fvl_contiguous(t);
    if (!c) fvl_raise(L);
    for (int64_t i = 0; i < m; i++) v[i] = c->dtype == FVL_F32 ? (double)fvl_f32(c)[i] : (double)fvl_i32(c)[i];
    fvl_release(c);
  } else {
    for (int64_t i = 0; i < m; i++) {
      int ty = lua_geti(L, idx, i + 1);
      if (ty != LUA_TNUMBER) {
        errorf(L, "%s: %s[%lld] must be a number, got %s", fn, arg, (long long)i + 1,
                   lua_typename(L, ty));
      }
      v[i] = lua_tonumber(L, -1);
      lua_pop(L, 1);
    }
  }
  *n = m;
  return v;   /* the userdata stays on the stack */
}

/* ---- the declared option tables (DEVELOPERS.md "The binding boundary"): fvl.plot (plot.lua)
 * builds these tables; their key lists are fvl._options["plot.*"], which plot.lua checks users'
 * tables against, so the keys live here only */
enum { LO_FILE, LO_WIDTH, LO_HEIGHT, LO_TITLE, LO_XLABEL, LO_YLABEL, LO_XLOG, LO_YLOG, LO_XMIN,
       LO_XMAX, LO_YMIN, LO_YMAX, LO_XSTEP, LO_YSTEP, LO_EQUAL, LO_DIAGONAL, LO_LEGEND, LO_SERIES,
       LO_NOTES, LO_XNAMES, LO_N };
static const fvl_optdef LINES_OPTS[] = {
  [LO_FILE] = {"file", FVL_OPT_STRING, 0, FVL_NORANGE, NULL},
  [LO_WIDTH] = {"width", FVL_OPT_INTEGER, 800, 16, 16384, NULL},
  [LO_HEIGHT] = {"height", FVL_OPT_INTEGER, 600, 16, 16384, NULL},
  [LO_TITLE] = {"title", FVL_OPT_STRING, 0, FVL_NORANGE, NULL},
  [LO_XLABEL] = {"xlabel", FVL_OPT_STRING, 0, FVL_NORANGE, NULL},
  [LO_YLABEL] = {"ylabel", FVL_OPT_STRING, 0, FVL_NORANGE, NULL},
  [LO_XLOG] = {"xlog", FVL_OPT_BOOLEAN, 0, FVL_NORANGE, NULL},
  [LO_YLOG] = {"ylog", FVL_OPT_BOOLEAN, 0, FVL_NORANGE, NULL},
  [LO_XMIN] = {"xmin", FVL_OPT_NUMBER, NAN, FVL_NORANGE, NULL},
  [LO_XMAX] = {"xmax", FVL_OPT_NUMBER, NAN, FVL_NORANGE, NULL},
  [LO_YMIN] = {"ymin", FVL_OPT_NUMBER, NAN, FVL_NORANGE, NULL},
  [LO_YMAX] = {"ymax", FVL_OPT_NUMBER, NAN, FVL_NORANGE, NULL},
  [LO_XSTEP] = {"xstep", FVL_OPT_NUMBER, 0, 0, HUGE_VAL, NULL},
  [LO_YSTEP] = {"ystep", FVL_OPT_NUMBER, 0, 0, HUGE_VAL, NULL},
  [LO_EQUAL] = {"equal", FVL_OPT_BOOLEAN, 0, FVL_NORANGE, NULL},
  [LO_DIAGONAL] = {"diagonal", FVL_OPT_BOOLEAN, 0, FVL_NORANGE, NULL},
  [LO_LEGEND] = {"legend", FVL_OPT_INTEGER, 0, -1, 4, NULL},   /* plot.lua maps the names */
  [LO_SERIES] = {"series", FVL_OPT_TABLE, 0, FVL_NORANGE, NULL},
  [LO_NOTES] = {"notes", FVL_OPT_TABLE, 0, FVL_NORANGE, NULL},
  [LO_XNAMES] = {"xnames", FVL_OPT_TABLE, 0, FVL_NORANGE, NULL},   /* a categorical x axis: names of x = 1..n */
  [LO_N] = FVL_OPT_END};
enum { SO_X, SO_Y, SO_LABEL, SO_COLOR, SO_DASH, SO_POINTS, SO_LINE, SO_WIDTH, SO_N };
static const fvl_optdef SERIES_OPTS[] = {
  [SO_X] = {"x", FVL_OPT_ANY, 0, FVL_NORANGE, NULL},        /* a tensor or a list of numbers */
  [SO_Y] = {"y", FVL_OPT_ANY, 0, FVL_NORANGE, NULL},
  [SO_LABEL] = {"label", FVL_OPT_STRING, 0, FVL_NORANGE, NULL},
  [SO_COLOR] = {"color", FVL_OPT_INTEGER, 0, 0, INT32_MAX, NULL},   /* 1-based palette, 0 = automatic */
  [SO_DASH] = {"dash", FVL_OPT_ENUM, 0, FVL_NORANGE, "solid|dashed|dotted"},
  [SO_POINTS] = {"points", FVL_OPT_BOOLEAN, 0, FVL_NORANGE, NULL},
  [SO_LINE] = {"line", FVL_OPT_BOOLEAN, 1, FVL_NORANGE, NULL},
  [SO_WIDTH] = {"width", FVL_OPT_NUMBER, 0, 0, 1000, NULL},
  [SO_N] = FVL_OPT_END};
enum { NO_X, NO_Y, NO_TEXT, NO_N };
static const fvl_optdef NOTE_OPTS[] = {
  [NO_X] = {"x", FVL_OPT_NUMBER, NAN, FVL_NORANGE, NULL},
  [NO_Y] = {"y", FVL_OPT_NUMBER, NAN, FVL_NORANGE, NULL},
  [NO_TEXT] = {"text", FVL_OPT_STRING, 0, FVL_NORANGE, NULL},
  [NO_N] = FVL_OPT_END};
/* features pictures: the frame options, then (a file, not an animation frame) file and size */
enum { FO_TITLE, FO_CENTRES, FO_NAMES, FO_NORMALIZE, FO_ELEV, FO_AZIM, FO_POINT_SIZE, FO_ALPHA,
       FO_CLASSES, FO_FILE, FO_WIDTH, FO_HEIGHT, FO_N };
#define FEATURE_FRAME_OPTS                                                                   \
  [FO_TITLE] = {"title", FVL_OPT_STRING, 0, FVL_NORANGE, NULL},                               \
  [FO_CENTRES] = {"centres", FVL_OPT_TENSOR, 0, FVL_NORANGE, NULL},                           \
  [FO_NAMES] = {"names", FVL_OPT_TABLE, 0, FVL_NORANGE, NULL},                                \
  [FO_NORMALIZE] = {"normalize", FVL_OPT_BOOLEAN, 1, FVL_NORANGE, NULL},                      \
  [FO_ELEV] = {"elev", FVL_OPT_NUMBER, 20, -1e6, 1e6, NULL},                                  \
  [FO_AZIM] = {"azim", FVL_OPT_NUMBER, 30, -1e6, 1e6, NULL},                                  \
  [FO_POINT_SIZE] = {"point_size", FVL_OPT_NUMBER, 0, 0, 1000, NULL},                         \
  [FO_ALPHA] = {"alpha", FVL_OPT_NUMBER, 0, 0, 1, NULL},                                      \
  [FO_CLASSES] = {"classes", FVL_OPT_INTEGER, 0, 0, INT32_MAX, NULL}
static const fvl_optdef FEATURE_OPTS[] = {FEATURE_FRAME_OPTS, [FO_FILE] = FVL_OPT_END};
static const fvl_optdef FEATURE_FILE_OPTS[] = {
  FEATURE_FRAME_OPTS,
  [FO_FILE] = {"file", FVL_OPT_STRING, 0, FVL_NORANGE, NULL},
  [FO_WIDTH] = {"width", FVL_OPT_INTEGER, 800, 16, 16384, NULL},
  [FO_HEIGHT] = {"height", FVL_OPT_INTEGER, 640, 16, 16384, NULL},
  [FO_N] = FVL_OPT_END};
enum { PO_FILE, PO_TITLE, PO_N };
static const fvl_optdef PANEL_OPTS[] = {
  [PO_FILE] = {"file", FVL_OPT_STRING, 0, FVL_NORANGE, NULL},
  [PO_TITLE] = {"title", FVL_OPT_STRING, 0, FVL_NORANGE, NULL},
  [PO_N] = FVL_OPT_END};

/* moves every value above `base` into the anchor `keep` (the stack stays bounded in loops over
 * list entries; what C points into lives as long as the anchor) */
static void keep_above(lua_State *L, int keep, int base) {
  while (lua_gettop(L) > base) fvl_anchor_keep(L, keep);
}

/* the series of a chart from the list at `ser` into s[0..ns-1]; the arrays and strings C points
 * into are kept in the anchor `keep` */
static void read_series(lua_State *L, int ser, const char *fn, fvl_plot_series *s, int ns, int keep) {
  for (int i = 0; i < ns; i++) {
    int base = lua_gettop(L);
    luaL_checkstack(L, 8, fn);
    if (lua_geti(L, ser, i + 1) != LUA_TTABLE)
      errorf(L, "%s: series[%d] must be a table {x=, y=, label=}", fn, i + 1);
    char what[48], ax[32], ay[32];
    snprintf(what, sizeof what, "%s: series[%d]", fn, i + 1);
    snprintf(ax, sizeof ax, "series[%d].x", i + 1);
    snprintf(ay, sizeof ay, "series[%d].y", i + 1);
    fvl_optval o[SO_N];
    int anchor = fvl_readopts(L, -1, what, SERIES_OPTS, o);   /* stays on the stack */
    int64_t nx, ny;
    fvl_optpush(L, anchor, &o[SO_X]);
    double *x = arg_numbers(L, lua_gettop(L), fn, ax, &nx);   /* both stay on the stack */
    fvl_optpush(L, anchor, &o[SO_Y]);
    double *y = arg_numbers(L, lua_gettop(L), fn, ay, &ny);
    if (nx != ny)
      errorf(L, "%s: series[%d] has %lld x values but %lld y values", fn, i + 1, (long long)nx,
             (long long)ny);
    s[i].label = o[SO_LABEL].str;
    s[i].x = x; s[i].y = y; s[i].n = nx;
    s[i].color = (int)o[SO_COLOR].num - 1;   /* 1-based in Lua, 0 = automatic (-1 in C) */
    s[i].style = (o[SO_LINE].num ? FVL_PLOT_LINE : 0) | (o[SO_POINTS].num ? FVL_PLOT_POINTS : 0);
    if (!s[i].style) s[i].style = FVL_PLOT_POINTS;
    static const int dash[] = {FVL_DASH_SOLID, FVL_DASH_DASHED, FVL_DASH_DOTTED};
    s[i].dash = dash[(int)o[SO_DASH].num];
    s[i].width = o[SO_WIDTH].num;
    keep_above(L, keep, base);
  }
}

/* _plot.lines(spec, gif|nil): spec holds LINES_OPTS (series = {SERIES_OPTS...}, notes =
 * {NOTE_OPTS...}); with an animation handle as the second argument the chart becomes its next
 * frame (at the animation's size) instead of a file; returns the number of frames */
typedef struct { fvl_plot_gif *g; } gif_ud;
static gif_ud *check_gif(lua_State *L, int idx);
static int l_lines(lua_State *L) {
  const char *fn = "plot.lines";
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 2);
  gif_ud *gu = lua_isnoneornil(L, 2) ? NULL : check_gif(L, 2);
  fvl_optval o[LO_N];
  int anchor = fvl_readopts(L, 1, fn, LINES_OPTS, o);   /* holds every string and table C uses */
  fvl_plot_chart c;
  fvl_plot_chart_init(&c);
  c.title = o[LO_TITLE].str;
  c.xlabel = o[LO_XLABEL].str;
  c.ylabel = o[LO_YLABEL].str;
  c.xlog = (int)o[LO_XLOG].num;
  c.ylog = (int)o[LO_YLOG].num;
  c.xmin = o[LO_XMIN].num;
  c.xmax = o[LO_XMAX].num;
  c.ymin = o[LO_YMIN].num;
  c.ymax = o[LO_YMAX].num;
  c.xstep = o[LO_XSTEP].num;
  c.ystep = o[LO_YSTEP].num;
  c.equal = (int)o[LO_EQUAL].num;
  c.diagonal = (int)o[LO_DIAGONAL].num;
  c.legend = (int)o[LO_LEGEND].num;
  int top = lua_gettop(L);
  if (fvl_optpush(L, anchor, &o[LO_SERIES]) != LUA_TTABLE)
    return errorf(L, "%s: series must be a list of {x=, y=, label=} tables", fn);
  int ser = lua_gettop(L);
  int ns = list_len(L, ser, fn, "series");
  fvl_plot_series *s = lua_newuserdatauv(L, (size_t)fvl_checksize_mul(L, fn, ns ? ns : 1, sizeof *s), 0);
  read_series(L, ser, fn, s, ns, anchor);
  int nn = 0;
  fvl_plot_note *notes = NULL;
  if (fvl_optpush(L, anchor, &o[LO_NOTES]) == LUA_TTABLE) {
    int ni = lua_gettop(L);
    nn = list_len(L, ni, fn, "notes");
    notes = lua_newuserdatauv(L, (size_t)fvl_checksize_mul(L, fn, nn ? nn : 1, sizeof *notes), 0);
    for (int i = 0; i < nn; i++) {
      int base = lua_gettop(L);
      if (lua_geti(L, ni, i + 1) != LUA_TTABLE)
        return errorf(L, "%s: notes[%d] must be a table {x=, y=, text=}", fn, i + 1);
      char what[48];
      snprintf(what, sizeof what, "%s: notes[%d]", fn, i + 1);
      fvl_optval no[NO_N];
      fvl_readopts(L, -1, what, NOTE_OPTS, no);   /* its anchor keeps text alive */
      notes[i].x = no[NO_X].num;
      notes[i].y = no[NO_Y].num;
      notes[i].text = no[NO_TEXT].str;
      keep_above(L, anchor, base);
    }
  }
  c.series = s; c.nseries = ns; c.notes = notes; c.nnotes = nn;
  if (fvl_optpush(L, anchor, &o[LO_XNAMES]) == LUA_TTABLE) {
    int xi = lua_gettop(L);
    int nx = list_len(L, xi, fn, "xnames");
    const char **xn = lua_newuserdatauv(L, (size_t)fvl_checksize_mul(L, fn, nx ? nx : 1, sizeof *xn), 0);
    for (int i = 0; i < nx; i++) {
      if (lua_geti(L, xi, i + 1) != LUA_TSTRING)
        return errorf(L, "%s: xnames[%d] must be a string, got %s", fn, i + 1, luaL_typename(L, -1));
      xn[i] = fvl_anchor_string(L, anchor, NULL);   /* pops; the anchor keeps it */
    }
    c.xnames = xn; c.nxnames = nx;
  }
  if (gu) {
    if (fvl_plot_gif_add_chart(gu->g, &c) < 0) return fvl_raise(L);
    lua_settop(L, top);
    lua_pushinteger(L, fvl_plot_gif_frames(gu->g));
    return 1;
  }
  if (fvl_plot_chart_save(o[LO_FILE].str, (int)o[LO_WIDTH].num, (int)o[LO_HEIGHT].num, &c) < 0)
    return fvl_raise(L);
  lua_settop(L, top);
  return 0;
}

/* _plot.features(emb, labels|nil, FEATURE_FILE_OPTS) */
/* reads (emb, labels|nil, opts) at e, e+1, e+2 against defs into f and o; the tensors, arrays
 * and the options' anchor it makes stay on the stack until the caller returns */
static void features_args(lua_State *L, int e_idx, const char *fn, const fvl_optdef *defs,
                          fvl_optval *o, fvl_plot_features *f) {
  int l_idx = e_idx + 1;
  fvl_tensor *e = fvl_checkf32(L, e_idx, fn, "emb", 2);
  fvl_checkfinite(L, e, fn, "emb");
  int64_t N = e->size[0];
  int dim = (int)e->size[1];
  luaL_checktype(L, e_idx + 2, LUA_TTABLE);
  int anchor = fvl_readopts(L, e_idx + 2, fn, defs, o);
  int nclasses = (int)o[FO_CLASSES].num;
  fvl_tensor *lab = NULL;
  if (!lua_isnoneornil(L, l_idx)) {
    lab = fvl_checklabels(L, l_idx, fn, N, nclasses > 0 ? nclasses : -1);
    fvl_pushtensor(L, lab);
  }
  fvl_tensor *W = NULL;
  if (o[FO_CENTRES].t) {
    fvl_pushtensor(L, fvl_retain(o[FO_CENTRES].t));   /* checkf32 reads a stack slot */
    W = fvl_checkf32(L, lua_gettop(L), fn, "centres", 2);   /* pushed: the stack owns it */
    fvl_checkfinite(L, W, fn, "centres");
    if (W->size[1] != dim)
      errorf(L, "%s: centres are %lld×%lld but the embeddings have %d columns", fn,
             (long long)W->size[0], (long long)W->size[1], dim);
  }
  const char **names = NULL;
  if (fvl_optpush(L, anchor, &o[FO_NAMES]) == LUA_TTABLE) {
    int ni = lua_gettop(L);
    int m = list_len(L, ni, fn, "names");
    int cap = m > nclasses ? m : nclasses;
    if (lab) for (int64_t i = 0; i < N; i++) if (fvl_i32(lab)[i] + 1 > cap) cap = fvl_i32(lab)[i] + 1;
    if (W && W->size[0] > cap) cap = (int)W->size[0];
    names = lua_newuserdatauv(L, (size_t)fvl_checksize_mul(L, fn, cap ? cap : 1, sizeof *names), 0);
    for (int i = 0; i < cap; i++) {
      names[i] = NULL;
      if (i >= m) continue;
      if (lua_geti(L, ni, i + 1) == LUA_TSTRING) names[i] = fvl_anchor_string(L, anchor, NULL);
      else lua_pop(L, 1);
    }
  }
  *f = (fvl_plot_features){fvl_f32(e), N, dim, lab ? fvl_i32(lab) : NULL, nclasses,
                           W ? fvl_f32(W) : NULL, W ? W->size[0] : 0, names,
                           o[FO_TITLE].str, (int)o[FO_NORMALIZE].num, o[FO_ELEV].num, o[FO_AZIM].num,
                           o[FO_POINT_SIZE].num, o[FO_ALPHA].num};
}

static int l_features(lua_State *L) {
  fvl_plot_features f;
  fvl_optval o[FO_N];
  lua_settop(L, 3);
  features_args(L, 1, "plot.features", FEATURE_FILE_OPTS, o, &f);
  if (fvl_plot_features_save(o[FO_FILE].str, (int)o[FO_WIDTH].num, (int)o[FO_HEIGHT].num, &f) < 0)
    return fvl_raise(L);
  return 0;
}

/* ---- animations: _plot.gif_open(file, w, h, delay_s, loop) -> handle;
 * _plot.gif_features(handle, emb, labels, opts); _plot.gif_close(handle) -> frames */
#define GIF_MT "fvl.plot.gif"

static gif_ud *check_gif(lua_State *L, int idx) {
  gif_ud *u = luaL_checkudata(L, idx, GIF_MT);
  if (!u->g) errorf(L, "plot.animation: the animation is closed");
  return u;
}
static int l_gif_gc(lua_State *L) {
  gif_ud *u = luaL_checkudata(L, 1, GIF_MT);
  if (u->g) { fvl_plot_gif_abort(u->g); u->g = NULL; }   /* never closed: no file */
  return 0;
}
static int l_gif_open(lua_State *L) {
  const char *file = luaL_checkstring(L, 1);
  int w = fvl_checkint32(L, "plot.animation", "width", luaL_checkinteger(L, 2), INT32_MIN, INT32_MAX);
  int h = fvl_checkint32(L, "plot.animation", "height", luaL_checkinteger(L, 3), INT32_MIN, INT32_MAX);
  double delay = luaL_checknumber(L, 4);
  int loop = fvl_checkint32(L, "plot.animation", "loop", luaL_optinteger(L, 5, 0), INT32_MIN, INT32_MAX);
  gif_ud *u = lua_newuserdatauv(L, sizeof *u, 0);
  u->g = NULL;
  if (luaL_newmetatable(L, GIF_MT)) {
    lua_pushcfunction(L, l_gif_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, l_gif_gc);
    lua_setfield(L, -2, "__close");
  }
  lua_setmetatable(L, -2);
  u->g = fvl_plot_gif_open(file, w, h, delay, loop);
  if (!u->g) return fvl_raise(L);
  return 1;
}
static int l_gif_features(lua_State *L) {
  gif_ud *u = check_gif(L, 1);
  fvl_plot_features f;
  fvl_optval o[FO_N];
  lua_settop(L, 4);
  features_args(L, 2, "plot.animation", FEATURE_OPTS, o, &f);
  if (fvl_plot_gif_add_features(u->g, &f) < 0) return fvl_raise(L);
  lua_pushinteger(L, fvl_plot_gif_frames(u->g));
  return 1;
}
static int l_gif_close(lua_State *L) {
  gif_ud *u = check_gif(L, 1);
  int n = fvl_plot_gif_frames(u->g);
  fvl_plot_gif *g = u->g;
  u->g = NULL;
  if (fvl_plot_gif_close(g) < 0) return fvl_raise(L);
  lua_pushinteger(L, n);
  return 1;
}

/* _plot.contour(z (ny×nx tensor or flat list), nx, ny, x0, x1, y0, y1, level) -> xs, ys
 * (Lua lists; NaN separates the polylines) */
static int l_contour(lua_State *L) {
  const char *fn = "plot.contour";
  int64_t n;
  double *z = arg_numbers(L, 1, fn, "z", &n);
  int nx = fvl_checkint32(L, fn, "nx", luaL_checkinteger(L, 2), 1, INT32_MAX);
  int ny = fvl_checkint32(L, fn, "ny", luaL_checkinteger(L, 3), 1, INT32_MAX);
  double x0 = luaL_checknumber(L, 4), x1 = luaL_checknumber(L, 5);
  double y0 = luaL_checknumber(L, 6), y1 = luaL_checknumber(L, 7);
  double level = luaL_optnumber(L, 8, 0);
  if ((int64_t)nx * ny != n)
    return errorf(L, "%s: z has %lld values, expected nx·ny = %d·%d = %lld", fn,
                      (long long)n, nx, ny, (long long)nx * ny);
  int64_t m = fvl_plot_contour(z, nx, ny, x0, x1, y0, y1, level, NULL, 0);
  if (m < 0) return fvl_raise(L);
  double *xy = lua_newuserdatauv(L, (size_t)fvl_checksize_mul(L, fn, m ? 2 * m : 1, sizeof *xy), 0);
  if (fvl_plot_contour(z, nx, ny, x0, x1, y0, y1, level, xy, m) < 0) return fvl_raise(L);
  lua_createtable(L, (int)m, 0);
  lua_createtable(L, (int)m, 0);
  for (int64_t i = 0; i < m; i++) {
    lua_pushnumber(L, xy[2 * i]); lua_rawseti(L, -3, i + 1);
    lua_pushnumber(L, xy[2 * i + 1]); lua_rawseti(L, -2, i + 1);
  }
  return 2;
}

/* _plot.sheet(file, {{file=, title=}...}, cols, title, cell_w, cell_h) */
static int l_sheet(lua_State *L) {
  const char *fn = "plot.sheet";
  const char *file = luaL_checkstring(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 6);
  int keep = fvl_anchor_new(L);
  int n = list_len(L, 2, fn, "panels");
  fvl_plot_panel *p = lua_newuserdatauv(L, (size_t)fvl_checksize_mul(L, fn, n ? n : 1, sizeof *p), 0);
  for (int i = 0; i < n; i++) {
    int base = lua_gettop(L);
    if (lua_geti(L, 2, i + 1) != LUA_TTABLE)
      return errorf(L, "%s: panels[%d] must be a table {file=, title=}", fn, i + 1);
    char what[48];
    snprintf(what, sizeof what, "%s: panels[%d]", fn, i + 1);
    fvl_optval o[PO_N];
    fvl_readopts(L, -1, what, PANEL_OPTS, o);   /* the anchor stays on the stack */
    p[i].file = o[PO_FILE].str;
    p[i].title = o[PO_TITLE].str;
    /* the user's 1-based wording; the engine keeps these checks as 0-based invariants */
    if (!p[i].file) return errorf(L, "%s: panels[%d]: expected a PNG file name", fn, i + 1);
    if (strcasecmp(fvl_plot_ext_of(p[i].file), "png") != 0)
      return errorf(L, "%s: panels[%d] '%s': expected a .png file", fn, i + 1, p[i].file);
    if (access(p[i].file, R_OK) != 0)
      return errorf(L, "%s: panels[%d] '%s': cannot read the PNG (%s)", fn, i + 1, p[i].file, strerror(errno));
    keep_above(L, keep, base);
  }
  int cols = fvl_checkint32(L, fn, "cols", luaL_optinteger(L, 3, 0), INT32_MIN, INT32_MAX);
  int width = fvl_checkint32(L, fn, "width", luaL_optinteger(L, 5, 0), INT32_MIN, INT32_MAX);
  int height = fvl_checkint32(L, fn, "height", luaL_optinteger(L, 6, 0), INT32_MIN, INT32_MAX);
  if (fvl_plot_sheet(file, p, n, cols, luaL_optstring(L, 4, NULL), width, height) < 0)
    return fvl_raise(L);
  return 0;
}

/* _plot.color(i) -> r, g, b (palette, 1-based) */
static int l_color(lua_State *L) {
  double c[3];
  fvl_plot_color(fvl_checkint32(L, "plot.color", "i", luaL_checkinteger(L, 1), 1, INT32_MAX) - 1, c);
  for (int i = 0; i < 3; i++) lua_pushnumber(L, c[i]);
  return 3;
}

int fvl_open_plot(lua_State *L) {
  static const luaL_Reg pl[] = {{"lines", l_lines}, {"features", l_features},
                                {"contour", l_contour}, {"sheet", l_sheet},
                                {"color", l_color}, {"gif_open", l_gif_open},
                                {"gif_features", l_gif_features}, {"gif_close", l_gif_close},
                                {NULL, NULL}};
  fvl_register_opts(L, -1, "plot.lines", LINES_OPTS);
  fvl_register_opts(L, -1, "plot.lines.series", SERIES_OPTS);
  fvl_register_opts(L, -1, "plot.lines.notes", NOTE_OPTS);
  fvl_register_opts(L, -1, "plot.features", FEATURE_FILE_OPTS);
  fvl_register_opts(L, -1, "plot.animation:add", FEATURE_OPTS);
  luaL_newlib(L, pl);
  lua_setfield(L, -2, "_plot");
  return 0;
}
