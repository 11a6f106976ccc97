/* bind_plot.c — raw bindings of engine/plot.c (charts, GIF animations), registered as the
 * sub-table fvl._plot. The user-facing API (fvl.plot) is lua/fvl/plot.lua; these functions only
 * check types and shapes, convert 1-based labels and call the engine. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include "bind.h"
#include "plot.h"

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

/* a string field, anchored: an __index may have made it, so the anchor keeps it alive until
 * the binding returns (see fvl_anchor_new) */
static const char *opt_string(lua_State *L, int idx, const char *key, int anchor) {
  if (lua_getfield(L, idx, key) == LUA_TSTRING) return fvl_anchor_string(L, anchor, NULL);
  lua_pop(L, 1);
  return NULL;
}
static double opt_number(lua_State *L, int idx, const char *key, double def) {
  double v = def;
  if (lua_getfield(L, idx, key) == LUA_TNUMBER) v = lua_tonumber(L, -1);
  lua_pop(L, 1);
  return v;
}
static int opt_bool(lua_State *L, int idx, const char *key, int def) {
  int v = def;
  if (lua_getfield(L, idx, key) != LUA_TNIL) v = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

/* _plot.lines(spec) with spec = {file=, width=, height=, title=, xlabel=, ylabel=, xlog=, ylog=,
 * xmin=.., ymax=, xstep=, ystep=, equal=, diagonal=, legend=0..4|-1,
 * series={{x=, y=, label=, color=, points=, line=, dash=, width=}...}, notes={{x=,y=,text=}}} */
typedef struct { fvl_plot_gif *g; } gif_ud;
static gif_ud *check_gif(lua_State *L, int idx);
/* _plot.lines(spec, gif): with an animation handle as the second argument the chart becomes its
 * next frame (at the animation's size) instead of a file; returns the number of frames */
static int l_lines(lua_State *L) {
  const char *fn = "plot.lines";
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 2);
  gif_ud *gu = lua_isnoneornil(L, 2) ? NULL : check_gif(L, 2);
  int anchor = fvl_anchor_new(L);   /* holds every string, table and array C points into */
  fvl_plot_chart c;
  fvl_plot_chart_init(&c);
  const char *file = opt_string(L, 1, "file", anchor);
  int w = (int)opt_number(L, 1, "width", 800), h = (int)opt_number(L, 1, "height", 600);
  c.title = opt_string(L, 1, "title", anchor);
  c.xlabel = opt_string(L, 1, "xlabel", anchor);
  c.ylabel = opt_string(L, 1, "ylabel", anchor);
  c.xlog = opt_bool(L, 1, "xlog", 0);
  c.ylog = opt_bool(L, 1, "ylog", 0);
  c.xmin = opt_number(L, 1, "xmin", NAN);
  c.xmax = opt_number(L, 1, "xmax", NAN);
  c.ymin = opt_number(L, 1, "ymin", NAN);
  c.ymax = opt_number(L, 1, "ymax", NAN);
  c.xstep = opt_number(L, 1, "xstep", 0);
  c.ystep = opt_number(L, 1, "ystep", 0);
  c.equal = opt_bool(L, 1, "equal", 0);
  c.diagonal = opt_bool(L, 1, "diagonal", 0);
  c.legend = (int)opt_number(L, 1, "legend", 0);
  int top = lua_gettop(L);
  if (lua_getfield(L, 1, "series") != LUA_TTABLE)
    return errorf(L, "%s: series must be a list of {x=, y=, label=} tables", fn);
  int ser = lua_gettop(L);
  int ns = list_len(L, ser, fn, "series");
  fvl_plot_series *s = lua_newuserdatauv(L, (size_t)fvl_checksize_mul(L, fn, ns ? ns : 1, sizeof *s), 0);
  for (int i = 0; i < ns; i++) {
    if (lua_geti(L, ser, i + 1) != LUA_TTABLE)
      return errorf(L, "%s: series[%d] must be a table {x=, y=, label=}", fn, i + 1);
    int si = lua_gettop(L);
    char ax[32], ay[32];
    snprintf(ax, sizeof ax, "series[%d].x", i + 1);
    snprintf(ay, sizeof ay, "series[%d].y", i + 1);
    int64_t nx, ny;
    lua_getfield(L, si, "x");
    double *x = arg_numbers(L, lua_gettop(L), fn, ax, &nx);
    lua_getfield(L, si, "y");
    double *y = arg_numbers(L, lua_gettop(L), fn, ay, &ny);
    if (nx != ny)
      return errorf(L, "%s: series[%d] has %lld x values but %lld y values", fn, i + 1,
                        (long long)nx, (long long)ny);
    lua_pushvalue(L, -3); fvl_anchor_keep(L, anchor);
    lua_pushvalue(L, -1); fvl_anchor_keep(L, anchor);
    s[i].label = opt_string(L, si, "label", anchor);
    s[i].x = x; s[i].y = y; s[i].n = nx;
    s[i].color = (int)opt_number(L, si, "color", 0) - 1;   /* 1-based in Lua, 0 = automatic */
    int pts = opt_bool(L, si, "points", 0), line = opt_bool(L, si, "line", 1);
    s[i].style = (line ? FVL_PLOT_LINE : 0) | (pts ? FVL_PLOT_POINTS : 0);
    if (!s[i].style) s[i].style = FVL_PLOT_POINTS;
    const char *dash = opt_string(L, si, "dash", anchor);
    s[i].dash = !dash || !strcmp(dash, "solid") ? FVL_DASH_SOLID
              : !strcmp(dash, "dashed") ? FVL_DASH_DASHED : FVL_DASH_DOTTED;
    s[i].width = opt_number(L, si, "width", 0);
    lua_settop(L, si - 1);
  }
  int nn = 0;
  fvl_plot_note *notes = NULL;
  if (lua_getfield(L, 1, "notes") == LUA_TTABLE) {
    int ni = lua_gettop(L);
    nn = list_len(L, ni, fn, "notes");
    notes = lua_newuserdatauv(L, (size_t)fvl_checksize_mul(L, fn, nn ? nn : 1, sizeof *notes), 0);
    for (int i = 0; i < nn; i++) {
      lua_geti(L, ni, i + 1);
      notes[i].x = opt_number(L, -1, "x", NAN);
      notes[i].y = opt_number(L, -1, "y", NAN);
      notes[i].text = opt_string(L, -1, "text", anchor);
      lua_pop(L, 1);
    }
  }
  c.series = s; c.nseries = ns; c.notes = notes; c.nnotes = nn;
  if (gu) {
    if (fvl_plot_gif_add_chart(gu->g, &c) < 0) return fvl_raise(L);
    lua_settop(L, top);
    lua_pushinteger(L, fvl_plot_gif_frames(gu->g));
    return 1;
  }
  if (fvl_plot_chart_save(file, w, h, &c) < 0) return fvl_raise(L);
  lua_settop(L, top);
  return 0;
}

/* _plot.features(emb, labels|nil, {file=, width=, height=, centres=, names=, title=,
 *                normalize=, elev=, azim=, point_size=, alpha=, classes=}) */
/* reads (emb, labels|nil, opts) at e, e+1, e+2 into f; the tensors and arrays it makes stay
 * on the stack until the caller returns */
static void features_args(lua_State *L, int e_idx, const char *fn, fvl_plot_features *f) {
  int l_idx = e_idx + 1, o = e_idx + 2;
  fvl_tensor *e = fvl_checkf32(L, e_idx, fn, "emb", 2);
  int64_t N = e->size[0];
  int dim = (int)e->size[1];
  luaL_checktype(L, o, LUA_TTABLE);
  int anchor = fvl_anchor_new(L);   /* stays on the stack until the caller returns */
  double ncl = opt_number(L, o, "classes", 0);
  if (!(ncl >= 0 && ncl <= INT32_MAX)) errorf(L, "%s: classes = %g (expected 0..%d)", fn, ncl, INT32_MAX);
  int nclasses = (int)ncl;
  fvl_tensor *lab = NULL;
  if (!lua_isnoneornil(L, l_idx)) {
    lab = fvl_checklabels(L, l_idx, fn, N, nclasses > 0 ? nclasses : -1);
    fvl_pushtensor(L, lab);
  }
  fvl_tensor *W = NULL;
  if (lua_getfield(L, o, "centres") != LUA_TNIL) {
    W = fvl_checkf32(L, lua_gettop(L), fn, "centres", 2);
    if (W->size[1] != dim)
      errorf(L, "%s: centres are %lld×%lld but the embeddings have %d columns", fn,
             (long long)W->size[0], (long long)W->size[1], dim);
  }
  const char **names = NULL;
  if (lua_getfield(L, o, "names") == LUA_TTABLE) {
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
  fvl_plot_features t = {fvl_f32(e), N, dim, lab ? fvl_i32(lab) : NULL, nclasses,
                         W ? fvl_f32(W) : NULL, W ? W->size[0] : 0, names,
                         opt_string(L, o, "title", anchor), opt_bool(L, o, "normalize", 1),
                         opt_number(L, o, "elev", 20), opt_number(L, o, "azim", 30),
                         opt_number(L, o, "point_size", 0), opt_number(L, o, "alpha", 0)};
  *f = t;
}

static int l_features(lua_State *L) {
  fvl_plot_features f;
  lua_settop(L, 3);
  features_args(L, 1, "plot.features", &f);
  int anchor = fvl_anchor_new(L);
  if (fvl_plot_features_save(opt_string(L, 3, "file", anchor), (int)opt_number(L, 3, "width", 800),
                             (int)opt_number(L, 3, "height", 640), &f) < 0)
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
  int w = (int)luaL_checkinteger(L, 2), h = (int)luaL_checkinteger(L, 3);
  double delay = luaL_checknumber(L, 4);
  int loop = (int)luaL_optinteger(L, 5, 0);
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
  lua_settop(L, 4);
  features_args(L, 2, "plot.animation", &f);
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
  int anchor = fvl_anchor_new(L);
  int n = list_len(L, 2, fn, "panels");
  fvl_plot_panel *p = lua_newuserdatauv(L, (size_t)fvl_checksize_mul(L, fn, n ? n : 1, sizeof *p), 0);
  for (int i = 0; i < n; i++) {
    if (lua_geti(L, 2, i + 1) != LUA_TTABLE)
      return errorf(L, "%s: panels[%d] must be a table {file=, title=}", fn, i + 1);
    p[i].file = opt_string(L, -1, "file", anchor);
    p[i].title = opt_string(L, -1, "title", anchor);
    lua_pop(L, 1);
  }
  if (fvl_plot_sheet(file, p, n, (int)luaL_optinteger(L, 3, 0), luaL_optstring(L, 4, NULL),
                     (int)luaL_optinteger(L, 5, 0), (int)luaL_optinteger(L, 6, 0)) < 0)
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
  luaL_newlib(L, pl);
  lua_setfield(L, -2, "_plot");
  return 0;
}
