-- fvl.plot — pictures with cairo (engine/plot.c): PNG, SVG or PDF by the file's extension,
-- written atomically.
--
--   fvl.plot.features(emb2d, labels, {centres=head.weight, file="arcface.png", title="ArcFace"})
--   fvl.plot.boundaries({"softmax", {"cosface", m=0.35}, {"arcface", m=0.5}, head}, {file="b.png"})
--   fvl.plot.lines{series={{x=steps, y=loss, label="train loss"}}, xlabel="step", file="loss.png"}
--   fvl.plot.roc({arcface=r1, softmax=r2}, {file="roc.png"})     -- r = fvl.eval.verification(...)
--   fvl.plot.history(records, {x="step", y={"loss", "acc"}, file="train.png"})
--   fvl.plot.sheet({"a.png", {file="b.png", title="B"}, panel}, {cols=3, file="sheet.png", title=})
--   local anim = fvl.plot.animation{file="train.gif"}; anim:add(emb, labels, {...}); anim:close()
--
-- Without `file`, features/boundaries/lines/roc/history return a panel: panel:save(file) writes
-- it, and fvl.plot.sheet accepts it directly (drawn at the sheet's cell size).
--
-- Every figure written to a file gets its data beside it, same basename with .csv (written
-- atomically), so it can be redrawn elsewhere. One long format for all of them:
--   panel,series,label,x,y,z,class
-- panel: 1 (a sheet: its panel number); series: the line's number (plot.lines, roc, history,
-- boundaries) or "points" / "centres" (plot.features); label: the line's label; x, y (z: 3-D
-- features); class: a point's class id (1-based) or a centre's number. An animation (.gif) gets
-- the rows of every frame, panel = the frame's number (1-based), written when it is closed.
local fvl = require "fvl.core"
local util = require "fvl.util"
local P = fvl._plot
local plot = {}
local fail = util.fail
local lines_args   -- a line chart's binding arguments (defined with plot.lines)

-- ------------------------------------------------------------------------------ CSV beside
local CSV_HEADER = "panel,series,label,x,y,z,class"

-- fvl.plot.csv_path(file) -> path: where a figure's data is written: the same name with .csv.
function plot.csv_path(file)
  if type(file) ~= "string" then fail("plot.csv_path: file must be a string, got " .. util.typename(file)) end
  return (file:gsub("%.[%a]+$", "")) .. ".csv"
end

local function csv_field(v)
  if v == nil then return "" end
  if type(v) == "number" then
    if math.type(v) == "integer" then return tostring(v) end
    if v ~= v then return "nan" end
    return string.format("%.9g", v)
  end
  v = tostring(v)
  if v:find('[,"\n\r]') then v = '"' .. v:gsub('"', '""') .. '"' end
  return v
end

local function csv_row(t, panel, series, label, x, y, z, class)
  t[#t + 1] = table.concat({ csv_field(panel), csv_field(series), csv_field(label), csv_field(x),
                             csv_field(y), csv_field(z), csv_field(class) }, ",")
end

local function write_csv(file, rows)
  local path = plot.csv_path(file)
  local ok, err = fvl.sys.write_atomic(path, CSV_HEADER .. "\n" .. table.concat(rows, "\n") ..
                                       (#rows > 0 and "\n" or ""))
  if not ok then fail("plot: cannot write " .. path .. ": " .. tostring(err)) end
  return path
end

-- a line chart's rows (every series' points) under panel number `panel`, appended to rows
local function lines_rows(rows, panel, args)
  for i, s in ipairs(args.series) do
    for j = 1, #s.x do csv_row(rows, panel, i, s.label, s.x[j], s.y[j], nil, nil) end
  end
  return rows
end

local function lines_csv(args) write_csv(args.file, lines_rows({}, 1, args)) end

-- a features plot's rows (points with their classes, then the centres), appended to rows
local function features_rows(rows, panel, emb, labels, args)
  local e = emb:totable()
  local l = labels ~= nil and (util.is_tensor(labels) and labels:totable() or labels) or nil
  for i, r in ipairs(e) do csv_row(rows, panel, "points", nil, r[1], r[2], r[3], l and l[i] or nil) end
  if args.centres then
    for i, r in ipairs(args.centres:totable()) do csv_row(rows, panel, "centres", nil, r[1], r[2], r[3], i) end
  end
  return rows
end

local function features_csv(emb, labels, args) write_csv(args.file, features_rows({}, 1, emb, labels, args)) end

-- a sheet's CSV: each panel's CSV rows (a file's CSV beside it when there is one) under its number
local function read_csv_rows(path)
  local f = io.open(path, "r")
  if not f then return nil end
  local rows = {}
  local first = true
  for line in f:lines() do
    if first then first = false else rows[#rows + 1] = line end
  end
  f:close()
  return rows
end

local function sheet_csv(file, panels)
  local rows = {}
  for i, p in ipairs(panels) do
    local r = read_csv_rows(plot.csv_path(p.file))
    for _, line in ipairs(r or {}) do
      local rest = line:match("^[^,]*,(.*)$")   -- drop the panel's own panel column
      if rest then rows[#rows + 1] = i .. "," .. rest end
    end
  end
  write_csv(file, rows)
end

local Panel = util.class("fvl.plot.Panel")
plot.Panel = Panel

-- data: the positional arguments before the options (plot.features: emb, labels), kept apart from
-- the options so that the user's option keys stay the binding's declared ones
local function panel(kind, args, title, data)
  return setmetatable({ kind = kind, args = args, title = title, data = data or {} }, Panel)
end

-- panel:save(file [, width [, height]]) -> file: draws a panel (a figure made without file=) into a
-- PNG/SVG/PDF file, with its CSV beside.
function Panel:save(file, width, height)
  local a = {}
  for k, v in pairs(self.args) do a[k] = v end
  a.file, a.width, a.height = file, width or a.width, height or a.height
  local d = self.data
  if self.kind == "features" then return plot.features(d[1], d[2], a) end
  return plot[self.kind](a)
end

function Panel:describe() return "fvl.plot panel (" .. self.kind .. ")" end

local function check_file(fn, file)
  if file == nil then return nil end
  if type(file) ~= "string" then fail(string.format("%s: file must be a string, got %s", fn, type(file))) end
  local ext = file:match("%.([%a]+)$")
  ext = ext and ext:lower()
  if ext ~= "png" and ext ~= "svg" and ext ~= "pdf" then
    fail(string.format("%s: file '%s': expected a name ending in .png, .svg or .pdf", fn, file))
  end
  return file
end

local function size_opts(fn, o, w, h)
  return util.integer(fn, "width", o.width, w, 16), util.integer(fn, "height", o.height, h, 16)
end

-- ------------------------------------------------------------------------------ features

-- the option keys are the binding's declared tables (lua/bind_plot.c), fvl._options["plot.*"]
local OPTIONS = fvl._options

-- checks (emb, labels, opts) of a features picture against the keys `allowed`; returns the
-- arguments for the binding
local function features_args(fn, emb, labels, opts, allowed)
  opts = util.check_opts(fn, opts, allowed)
  if not util.is_tensor(emb) then fail(fn .. ": emb must be an N×2 or N×3 tensor, got " .. type(emb)) end
  if emb:dim() ~= 2 or (emb:size(2) ~= 2 and emb:size(2) ~= 3) then
    fail(string.format("%s: emb must be N×2 or N×3 (project higher dimensions first), got %s", fn,
                       util.shape_str(emb)))
  end
  if labels ~= nil then
    local n = util.is_tensor(labels) and labels:numel() or (type(labels) == "table" and #labels)
    if not n then fail(fn .. ": labels must be a tensor or a list of class ids, got " .. type(labels)) end
    if n ~= emb:size(1) then
      fail(string.format("%s: emb has %d rows but labels has %d entries", fn, emb:size(1), n))
    end
    require("fvl.eval")._check_labels(fn, "labels", labels, opts.classes)
  end
  local c = opts.centres
  if c ~= nil then
    if not util.is_tensor(c) or c:dim() ~= 2 or c:size(2) ~= emb:size(2) then
      fail(string.format("%s: centres must be C×%d (head.weight), got %s", fn, emb:size(2),
                         util.is_tensor(c) and util.shape_str(c) or type(c)))
    end
    c = c:detach()
  end
  return emb:detach(), opts, {
    centres = c, names = opts.names, title = opts.title,
    normalize = util.boolean(fn, "normalize", opts.normalize, true),
    elev = util.number(fn, "elev", opts.elev, 20), azim = util.number(fn, "azim", opts.azim, 30),
    point_size = util.number(fn, "point_size", opts.point_size, 0, 0),
    alpha = util.number(fn, "alpha", opts.alpha, 0, 0, 1),
    classes = opts.classes and util.integer(fn, "classes", opts.classes, nil, 1) }
end

--- Scatter of 2-D (or 3-D) embeddings coloured by class, on the unit circle/sphere by default
--- (normalize=false: raw coordinates), with class-centre rays (centres = head.weight) and a legend.
--- opts: file, title, centres, names (class names), normalize, elev, azim (3-D view, degrees),
--- point_size, alpha, classes, width (800), height (640).
function plot.features(emb, labels, opts)
  local fn = "plot.features"
  local args
  emb, opts, args = features_args(fn, emb, labels, opts, OPTIONS["plot.features"])
  args.width, args.height = size_opts(fn, opts, 800, 640)
  args.file = check_file(fn, opts.file)
  if not args.file then
    return panel("features", args, opts.title, { emb, labels })
  end
  P.features(emb, labels, args)
  features_csv(emb, labels, args)
  return args.file
end

-- ------------------------------------------------------------------------------ animation

local Animation = util.class("fvl.plot.Animation")
plot.Animation = Animation

--- An animated GIF of 2-D/3-D features, one frame per add() (e.g. every k training steps):
---   local anim = fvl.plot.animation{file="train.gif", delay=0.25}
---   anim:add(emb, labels, {centres=head.weight, title="step " .. k})   -- features options
---   anim:close()                                                        -- writes the file
--- opts: file (.gif), width (640), height (512), delay (seconds per frame, 0.2), loop (0 = for
--- ever, -1 = play once). Nothing is written until close(); an animation dropped without
--- close() leaves no file. close() also writes every frame's data beside the GIF (same name,
--- .csv; panel = the frame's number), so the animation can be redrawn elsewhere.
--- Errors: file not ending in .gif, sizes or delay out of range, add() after close().
function plot.animation(opts)
  local fn = "plot.animation"
  opts = util.check_opts(fn, opts, { "file", "width", "height", "delay", "loop" })
  local file = opts.file
  if type(file) ~= "string" or not file:lower():match("%.gif$") then
    fail(string.format("%s: file must be a name ending in .gif, got %s", fn,
                       type(file) == "string" and ("'" .. file .. "'") or type(file)))
  end
  local w, h = size_opts(fn, opts, 640, 512)
  local delay = util.number(fn, "delay", opts.delay, 0.2, 0.01, 600)
  local loop = util.integer(fn, "loop", opts.loop, 0, -1)
  local self = setmetatable({ file = file, n = 0, rows = {} }, Animation)
  self.handle = P.gif_open(file, w, h, delay, loop)
  return self
end

-- anim:add(emb, labels [, opts]) -> frames: adds one frame of 2-D/3-D features (plot.features'
-- arguments and options, without file); returns the number of frames so far.
-- Errors: after close(); the arguments plot.features refuses.
function Animation:add(emb, labels, opts)
  local fn = "plot.animation"
  if not self.handle then fail(fn .. ": the animation is closed") end
  local args
  emb, opts, args = features_args(fn, emb, labels, opts, OPTIONS["plot.animation:add"])
  self.n = P.gif_features(self.handle, emb, labels, args)
  features_rows(self.rows, self.n, emb, labels, args)
  return self.n
end

--- anim:add_chart(spec): the next frame is a line chart (plot.lines options, without file; drawn
--- at the animation's size)
function Animation:add_chart(spec)
  local fn = "plot.animation"
  if not self.handle then fail(fn .. ": the animation is closed") end
  if type(spec) == "table" and spec.file ~= nil then fail(fn .. ": add_chart: a frame has no file option") end
  local args = lines_args(fn, spec)
  self.n = P.lines(args, self.handle)
  lines_rows(self.rows, self.n, args)
  return self.n
end

-- anim:frames() -> integer: the number of frames added so far.
function Animation:frames() return self.n end

-- anim:close() -> file: writes the GIF (atomically) and its frames' data beside it (.csv, panel =
-- the frame number); a second close() returns the file again.
function Animation:close()
  if not self.handle then return self.file end
  local h = self.handle
  self.handle = nil
  P.gif_close(h)
  write_csv(self.file, self.rows)   -- every frame's data beside the GIF (panel = frame)
  self.rows = {}
  return self.file
end

function Animation:describe()
  return string.format("fvl.plot animation '%s' (%d frames%s)", self.file, self.n, self.handle and "" or ", closed")
end

-- ------------------------------------------------------------------------------ lines

local LEGEND = { auto = 0, none = -1, ["top right"] = 1, ["top left"] = 2, ["bottom right"] = 3,
                 ["bottom left"] = 4 }

local function as_list(fn, key, v)
  if util.is_tensor(v) then return v:contiguous():reshape(v:numel()):totable() end
  if type(v) ~= "table" then fail(string.format("%s: %s must be a tensor or a list of numbers, got %s", fn, key, type(v))) end
  return v
end

-- the binding's arguments of a line chart from a plot.lines spec (checked)
function lines_args(fn, spec)
  if type(spec) ~= "table" then fail(fn .. ": expected a table {series=..., file=...}, got " .. type(spec)) end
  util.check_opts(fn, spec, OPTIONS["plot.lines"])
  if type(spec.series) ~= "table" then fail(fn .. ": series must be a list of {x=, y=, label=} tables") end
  local series = {}
  for i, s in ipairs(spec.series) do
    if type(s) ~= "table" then fail(string.format("%s: series[%d] must be a table {x=, y=, label=}", fn, i)) end
    util.check_opts(string.format("%s: series[%d]", fn, i), s, OPTIONS["plot.lines.series"])
    local x = as_list(fn, string.format("series[%d].x", i), s.x)
    local y = as_list(fn, string.format("series[%d].y", i), s.y)
    if #x ~= #y then
      fail(string.format("%s: series[%d] has %d x values but %d y values", fn, i, #x, #y))
    end
    if s.dash ~= nil then util.enum(fn, "dash", s.dash, { "solid", "dashed", "dotted" }) end
    series[i] = { x = x, y = y, label = s.label and tostring(s.label), color = s.color or i,
                  dash = s.dash, points = s.points, line = s.line, width = s.width }
  end
  for _, k in ipairs { "xmin", "xmax", "ymin", "ymax", "xstep", "ystep" } do
    if spec[k] ~= nil then util.number(fn, k, spec[k]) end
  end
  if spec.xmin and spec.xmax and spec.xmin >= spec.xmax then
    fail(string.format("%s: xmin = %g must be below xmax = %g", fn, spec.xmin, spec.xmax))
  end
  if spec.ymin and spec.ymax and spec.ymin >= spec.ymax then
    fail(string.format("%s: ymin = %g must be below ymax = %g", fn, spec.ymin, spec.ymax))
  end
  local legend = spec.legend == nil and 0 or LEGEND[spec.legend]
  if legend == nil then
    fail(string.format("%s: legend = %s (expected auto|none|top right|top left|bottom right|bottom left)",
                       fn, tostring(spec.legend)))
  end
  local w, h = size_opts(fn, spec, 800, 600)
  local args = { series = series, title = spec.title, xlabel = spec.xlabel, ylabel = spec.ylabel,
                 xlog = spec.xlog, ylog = spec.ylog, xmin = spec.xmin, xmax = spec.xmax,
                 ymin = spec.ymin, ymax = spec.ymax, xstep = spec.xstep, ystep = spec.ystep,
                 equal = spec.equal, diagonal = spec.diagonal, legend = legend, notes = spec.notes, xnames = spec.xnames,
                 width = w, height = h, file = check_file(fn, spec.file) }
  return args
end

-- fvl.plot.lines(spec) -> file | panel: a line chart. spec: series = {{x=, y=, label=, color=
-- (1-based palette), dash = "solid"|"dashed"|"dotted", points = bool, line = bool, width =}},
-- title, xlabel, ylabel, xlog, ylog, xmin, xmax, ymin, ymax, xstep, ystep, equal, diagonal, legend
-- ("auto", "none", "top right", ...), notes = {{x=, y=, text=}}, xnames = {"adam", "sgd", ...} (a
-- categorical x axis: the ticks at x = 1, 2, ... carry these names), file (.png/.svg/.pdf; its data
-- written beside as .csv), width (800), height (600). A NaN in x or y breaks a line. Without file,
-- a panel (for fvl.plot.sheet or panel:save). Errors: unknown keys; x and y of different lengths.
function plot.lines(spec)
  local fn = "plot.lines"
  local args = lines_args(fn, spec)
  if not args.file then
    local p = panel("lines", args, spec.title)
    p.args.legend = spec.legend
    return p
  end
  P.lines(args)
  lines_csv(args)
  return args.file
end

-- ------------------------------------------------------------------------------ ROC

local function far_label(f) return (string.format("%.0e", f):gsub("e%-0", "e-")) end

--- ROC curves of several runs on one log-FAR chart. runs: a list of {label=, result=r} or
--- {label=, far=, tar=}, or a table name -> verification result. opts: file, title, at (FAR
--- quoted in the legend, 1e-3), xmin, width, height.
function plot.roc(runs, opts)
  local fn = "plot.roc"
  opts = util.check_opts(fn, opts, { "file", "title", "at", "xmin", "width", "height" })
  if type(runs) ~= "table" then fail(fn .. ": runs must be a list of {label=, result=} or a table name -> result") end
  local list = {}
  if #runs > 0 then
    for i, r in ipairs(runs) do list[i] = r end
  else
    local names = {}
    for k in pairs(runs) do names[#names + 1] = k end
    table.sort(names, function(a, b) return tostring(a) < tostring(b) end)
    for _, k in ipairs(names) do list[#list + 1] = { label = tostring(k), result = runs[k] } end
  end
  if #list == 0 then fail(fn .. ": runs: expected at least one run") end
  local at = util.number(fn, "at", opts.at, 1e-3)
  local series, minfar = {}, 1
  for i, run in ipairs(list) do
    if type(run) ~= "table" then fail(string.format("%s: runs[%d] must be a table", fn, i)) end
    local res = run.result or (run.roc and run) or nil
    if res ~= nil and (type(res) ~= "table" or (res.roc ~= nil and type(res.roc) ~= "table")) then
      fail(string.format("%s: runs[%d].result must be a result of fvl.eval.verification, got %s", fn, i, util.typename(res)))
    end
    local far = run.far or (res and res.roc and res.roc.far)
    local tar = run.tar or (res and res.roc and res.roc.tar)
    if far == nil or tar == nil then
      fail(string.format("%s: runs[%d] has no ROC (give result = fvl.eval.verification(...) or far=, tar=)", fn, i))
    end
    far, tar = as_list(fn, "far", far), as_list(fn, "tar", tar)
    local label = run.label or ("run " .. i)
    if res and res.tar_at_far then
      local bits = {}
      if res.tar_at_far[at] then bits[#bits + 1] = string.format("TAR@%s %.1f%%", far_label(at), 100 * res.tar_at_far[at]) end
      if res.eer then bits[#bits + 1] = string.format("EER %.1f%%", 100 * res.eer) end
      if #bits > 0 then label = label .. "  (" .. table.concat(bits, ", ") .. ")" end
    end
    if res and res.n_impostor then minfar = math.min(minfar, 1 / res.n_impostor) end
    for _, f in ipairs(far) do if f > 0 and f < minfar then minfar = f end end
    series[i] = { x = far, y = tar, label = label, color = i, dash = i > 10 and "dashed" or nil }
  end
  local xmin = opts.xmin or 10 ^ math.floor(math.log(minfar, 10) + 1e-9)
  return plot.lines { series = series, xlog = true, xmin = xmin, xmax = 1, ymin = 0, ymax = 1,
                      ystep = 0.1, legend = "bottom right",
                      title = opts.title or "ROC: true accepts against false accepts",
                      xlabel = "false accept rate (FAR, impostor pairs accepted; log scale)",
                      ylabel = "true accept rate (TAR, genuine pairs accepted)",
                      file = opts.file, width = opts.width, height = opts.height }
end

--- Training curves from a list of records ({step=, loss=, acc=...}). opts: x ("step"), y (a key
--- or list of keys; default every numeric key but x), file, title, xlabel, ylabel, ylog,
--- width, height.
function plot.history(records, opts)
  local fn = "plot.history"
  opts = util.check_opts(fn, opts, { "x", "y", "file", "title", "xlabel", "ylabel", "ylog", "width", "height" })
  if type(records) ~= "table" or #records == 0 then fail(fn .. ": records must be a non-empty list of tables") end
  local xk = opts.x or "step"
  local keys = opts.y
  if type(keys) == "string" then keys = { keys } end
  if keys == nil then
    local set = {}
    keys = {}
    for _, r in ipairs(records) do
      for k, v in pairs(r) do
        if k ~= xk and type(v) == "number" and not set[k] then set[k] = true; keys[#keys + 1] = k end
      end
    end
    table.sort(keys)
  end
  local series = {}
  for i, k in ipairs(keys) do
    local x, y = {}, {}
    for j, r in ipairs(records) do
      x[#x + 1] = r[xk] or j
      y[#y + 1] = type(r[k]) == "number" and r[k] or 0 / 0
    end
    series[i] = { x = x, y = y, label = tostring(k), points = #records <= 40 }
  end
  return plot.lines { series = series, title = opts.title, xlabel = opts.xlabel or xk,
                      ylabel = opts.ylabel, ylog = opts.ylog, file = opts.file,
                      width = opts.width, height = opts.height }
end

-- ------------------------------------------------------------------------------ boundaries

-- Target ("pos", angle θ of the sample to its own centre) and non-target ("neg", angle θo to the
-- other centre; θ is passed too for the losses whose negative logit depends on it) logits of
-- docs/losses.md §3, without the scale s (it does not move the boundary).
local cos, sin, pi, floor = math.cos, math.sin, math.pi, math.floor

local function arc_target(m, fallback, easy)
  return function(th)
    local c = cos(th)
    if easy and c <= 0 then return c end
    if th + m <= pi then return cos(th + m) end
    if fallback == "mm" then return c - m * sin(m)
    elseif fallback == "clamp" then return -1
    else return cos(th + m) end
  end
end

local PRESETS = {}
PRESETS.softmax = function(o)
  return { label = o.label or "Softmax / NormFace (equal |W|, no bias): θ1 = θ2",
           pos = cos, neg = cos }
end
PRESETS.normface = PRESETS.softmax
PRESETS.center = PRESETS.softmax
PRESETS.sphereface = function(o)
  local m, lam = o.m or 4, o.lambda or 0
  local function psi(th)
    local k = floor(m * th / pi)
    if k > m then k = m end
    return ((k % 2 == 0) and 1 or -1) * cos(m * th) - 2 * k
  end
  return { label = o.label or (lam > 0 and string.format("SphereFace m=%g, λ=%g", m, lam)
                               or string.format("SphereFace m=%g", m)),
           pos = function(th) return (lam * cos(th) + psi(th)) / (1 + lam) end, neg = cos }
end
PRESETS.cosface = function(o)
  local m, easy = o.m or 0.35, o.easy_margin
  return { label = o.label or string.format("CosFace m=%g%s", m, easy and " (easy margin)" or ""),
           pos = function(th)
             local c = cos(th)
             if easy and c <= 0 then return c end
             return c - m
           end,
           neg = cos }
end
PRESETS.am_softmax = PRESETS.cosface
PRESETS.arcface = function(o)
  local m = o.m or 0.5
  return { label = o.label or string.format("ArcFace m=%g", m),
           pos = arc_target(m, o.fallback or "mm", o.easy_margin), neg = cos }
end
PRESETS.combined = function(o)
  local m1, m2, m3 = o.m1 or 1, o.m2 or 0.3, o.m3 or 0.2
  return { label = o.label or string.format("Combined (%g, %g, %g)", m1, m2, m3),
           pos = function(th) return cos(m1 * th + m2) - m3 end, neg = cos }
end
PRESETS.mv_softmax = function(o)
  local m, t = o.m or 0.35, o.t or 0.2
  local kind = o.kind or "am"
  local adaptive = o.adaptive ~= false
  local easy = o.easy_margin ~= false
  local raw = kind == "arc" and function(th) return cos(th + m) end or function(th) return cos(th) - m end
  return { label = o.label or string.format("MV-%s-Softmax m=%g, t=%g", kind == "arc" and "Arc" or "AM", m, t),
           pos = function(th)
             local c = cos(th)
             if easy and c <= 0 then return c end
             return raw(th)
           end,
           neg = function(tho, th)
             local c = cos(tho)
             if c > raw(th) then return adaptive and (t + 1) * c + t or c + t end
             return c
           end }
end
PRESETS.curricularface = function(o)
  local m, t = o.m or 0.5, o.t or 0
  local target = arc_target(m, "mm", false)
  return { label = o.label or string.format("CurricularFace m=%g, t=%g", m, t),
           pos = target,
           neg = function(tho, th)
             local c = cos(tho)
             if c > cos(th + m) then return c * (t + c) end
             return c
           end }
end
PRESETS.circle = function(o)
  local m = o.m or 0.25
  return { label = o.label or string.format("Circle m=%g: (cosθ2)² + (cosθ1 - 1)² = 2m²", m),
           f = function(th1, th2)
             local sp, sn = cos(th1), cos(th2)
             local ap, an = math.max(1 + m - sp, 0), math.max(sn + m, 0)
             return ap * (sp - (1 - m)) - an * (sn - m)
           end }
end
PRESETS.discface = function(o)
  local base = o.base or "cos"
  local m = o.m or (base == "arc" and 0.5 or 0.35)
  return PRESETS[base == "arc" and "arcface" or "cosface"] {
    m = m, fallback = o.fallback, easy_margin = o.easy_margin,
    label = o.label or string.format("DiscFace (%s m=%g; the ξ term does not move it)", base, m) }
end
PRESETS.npcface = function(o)
  local m0, m1, t, alpha = o.m0 or 0.4, o.m1 or 0.2, o.t or 1.1, o.alpha or 0.2
  return { label = o.label or string.format("NPCFace m0=%g, m1=%g, t=%g, α=%g", m0, m1, t, alpha),
           f = function(th1, th2)
             local c1, c2 = cos(th1), cos(th2)
             local hard = c2 > cos(th1 + m0)
             local m = m0 + (hard and m1 * c2 or 0)            -- per-sample margin from the hard negative
             local pos = c1 > 0 and cos(th1 + m) or c1
             local neg = hard and t * c2 + alpha or c2
             return pos - neg
           end }
end
-- round-2 heads: AdaCos has no margin; Sub-center ArcFace is ArcFace on the nearest sub-centres;
-- ElasticFace draws m_i around m (the boundary of the mean margin); MagFace's and AdaFace's margins
-- depend on the feature norm (drawn at one norm / one quality z).
PRESETS.adacos = function(o)
  return { label = o.label or "AdaCos (no margin): θ1 = θ2", pos = cos, neg = cos }
end
PRESETS.subcenter_arcface = function(o)
  local m = o.m or 0.5
  return { label = o.label or string.format("Sub-center ArcFace m=%g (nearest sub-centres)", m),
           pos = arc_target(m, o.fallback or "mm", o.easy_margin), neg = cos }
end
PRESETS.elasticface = function(o)
  local kind, m = o.kind or "arc", o.m or (o.kind == "cos" and 0.35 or 0.5)
  local p = kind == "cos" and PRESETS.cosface { m = m } or PRESETS.arcface { m = m, fallback = "none" }
  p.label = o.label or string.format("ElasticFace-%s, mean m=%g", kind == "cos" and "Cos" or "Arc", m)
  return p
end
PRESETS.magface = function(o)
  local l_a, u_a, l_m, u_m = o.l_a or 10, o.u_a or 110, o.l_m or 0.45, o.u_m or 0.8
  local a = math.max(l_a, math.min(u_a, o.norm or (l_a + u_a) / 2))
  local m = (u_m - l_m) / (u_a - l_a) * (a - l_a) + l_m
  return { label = o.label or string.format("MagFace at |x| = %g: m = %.3g", a, m),
           pos = arc_target(m, "mm", o.easy_margin ~= false), neg = cos }
end
PRESETS.adaface = function(o)
  local m, z, eps = o.m or 0.4, o.z or 0, 1e-3
  return { label = o.label or string.format("AdaFace m=%g at quality z=%g", m, z),
           pos = function(th) return cos(math.max(eps, math.min(pi - eps, th - m * z))) - (m + m * z) end,
           neg = cos }
end

-- The values the presets and sweeps read, checked once where a user's table comes in (a loss item of
-- plot.boundaries, an animation's item, a direct call of fvl.plot.boundary_presets.NAME(o)):
-- "plot.boundaries: losses[2].m must be a number, got string".
local PRESET_TYPES = { label = "string", kind = "string", fallback = "string", easy_margin = "boolean",
                       adaptive = "boolean", base = "string|number" }
for _, k in ipairs { "m", "m0", "m1", "m2", "m3", "t", "alpha", "lambda", "lambda_min", "l_a", "u_a", "l_m",
                     "u_m", "norm", "z", "h", "iter", "gamma", "power" } do PRESET_TYPES[k] = "number" end
local function check_preset(fn, where, o)
  if type(o) ~= "table" then fail(string.format("%s: %s must be a table of options, got %s", fn, where, util.typename(o))) end
  for k, kinds in pairs(PRESET_TYPES) do
    local v = o[k]
    if v ~= nil and not kinds:find(type(v), 1, true) then
      fail(string.format("%s: %s.%s must be a %s, got %s", fn, where, k, kinds:gsub("|", " or "), util.typename(v)))
    end
  end
end

-- fvl.plot.boundary_presets / boundary_sweeps: the tables above, whose functions check their
-- arguments when called from outside (a preset or sweep set there is one of the tables')
local function checked_table(src, name, check)
  local made = setmetatable({}, { __mode = "k" })
  local function get(k)
    local f = src[k]
    if type(f) ~= "function" then return f end
    if not made[f] then
      local fn = name .. "." .. tostring(k)
      made[f] = function(o, a) check(fn, o, a) return f(o, a) end
    end
    return made[f]
  end
  return setmetatable({}, {
    __index = function(_, k) return get(k) end,
    __newindex = function(_, k, v) src[k] = v end,
    __pairs = function()
      local k
      return function()
        k = next(src, k)
        if k ~= nil then return k, get(k) end
      end
    end,
  })
end
plot.boundary_presets = checked_table(PRESETS, "fvl.plot.boundary_presets", function(fn, o) check_preset(fn, "o", o) end)

-- how each preset's boundary grows, as a function of a in [0, 1] (a = 1: the given values):
-- margins scale from 0; SphereFace follows its λ annealing (base → lambda_min, log-spaced);
-- CurricularFace's t goes 0 → 1 as in training. Others morph the logits from NormFace's.
-- values on 3 significant digits, so that the frame titles read "t=0.526" (the last frame, a = 1,
-- keeps the given values)
local function r3(v) return tonumber(string.format("%.3g", v)) end
local function lerp(a, from, to) return r3(from + a * (to - from)) end
local SWEEPS = {
  m = function(o, a) o.m = r3(a * (o.m or 0.5)) end,
  cosface = function(o, a) o.m = r3(a * (o.m or 0.35)) end,
  combined = function(o, a) o.m1, o.m2, o.m3 = lerp(a, 1, o.m1 or 1), r3(a * (o.m2 or 0.3)), r3(a * (o.m3 or 0.2)) end,
  sphereface = function(o, a)
    local base, lo = 1000, o.lambda_min or 5
    o.lambda = r3(math.exp(math.log(base) + a * (math.log(lo) - math.log(base))))
  end,
  mv_softmax = function(o, a) o.m, o.t = r3(a * (o.m or 0.35)), r3(a * (o.t or 0.2)) end,
  curricularface = function(o, a) o.t = r3(a) end,
  npcface = function(o, a)
    o.m0, o.m1, o.alpha, o.t = r3(a * (o.m0 or 0.4)), r3(a * (o.m1 or 0.2)), r3(a * (o.alpha or 0.2)), lerp(a, 1, o.t or 1.1)
  end,
  magface = function(o, a) o.l_m, o.u_m = r3(a * (o.l_m or 0.45)), r3(a * (o.u_m or 0.8)) end,
  adaface = function(o, a) o.m = r3(a * (o.m or 0.4)) end,
}
SWEEPS.am_softmax, SWEEPS.arcface, SWEEPS.subcenter_arcface, SWEEPS.discface = SWEEPS.cosface, SWEEPS.m, SWEEPS.m, SWEEPS.m
SWEEPS.elasticface = function(o, a) o.m = r3(a * (o.m or (o.kind == "cos" and 0.35 or 0.5))) end
plot.boundary_sweeps = checked_table(SWEEPS, "fvl.plot.boundary_sweeps", function(fn, o, a)
  check_preset(fn, "o", o)
  util.number(fn, "a", a, nil, 0, 1)
end)

-- the seed heads with their default margins (Center loss trains a softmax boundary)
plot.default_boundaries = {
  "softmax", { "sphereface", m = 4 }, { "cosface", m = 0.35 }, { "arcface", m = 0.5 },
  { "mv_softmax", kind = "arc", m = 0.5, t = 0.2 }, { "curricularface", m = 0.5, t = 0 },
  { "curricularface", m = 0.5, t = 1 }, { "circle", m = 0.25 }, { "discface", base = "cos", m = 0.35 },
  { "npcface" },
}

-- a spec from: "arcface" | {"arcface", m=0.5, label=} | a head object (head.name, head.m, ...) |
-- {label=, f=function(θ1, θ2)} | {label=, pos=function(θ), neg=function(θo, θ)}
local function boundary_spec(fn, i, item)
  if type(item) == "string" then item = { item } end
  if type(item) ~= "table" then fail(string.format("%s: losses[%d] must be a name, a table or a head", fn, i)) end
  if item.f or item.pos then
    if item.f == nil and (type(item.pos) ~= "function" or type(item.neg) ~= "function") then
      fail(string.format("%s: losses[%d] needs f=function(θ1, θ2) or pos= and neg= functions", fn, i))
    end
    return item
  end
  local name, o = item[1], item
  if name == nil and type(item.boundary) == "function" then   -- a head that knows its boundary
    return item:boundary()
  end
  if name == nil and type(item.name) == "string" then   -- a head: read its margins
    name = item.name
    o = { m = item.m, m1 = item.m1, m2 = item.m2, m3 = item.m3, t = item.t, kind = item.kind,
          adaptive = item.adaptive, easy_margin = item.easy_margin, fallback = item.fallback,
          base = type(item.base) == "string" and item.base or nil, m0 = item.m0, alpha = item.alpha,
          lambda = nil, label = nil, l_a = item.l_a, u_a = item.u_a, l_m = item.l_m, u_m = item.u_m,
          h = item.h }
    if o.fallback == "easy" then o.fallback, o.easy_margin = "mm", true end
    if name == "sphereface" then
      local lam = item.lambda
      if lam == nil and item.iter and item.base then
        lam = math.max(item.lambda_min or 5, item.base * (1 + (item.gamma or 0.12) * item.iter) ^ -(item.power or 1))
      end
      o.lambda = lam
    end
  end
  local make = PRESETS[name]
  if make then check_preset(fn, string.format("losses[%d]", i), o) end
  if not make then
    local names = {}
    for k in pairs(PRESETS) do names[#names + 1] = k end
    table.sort(names)
    fail(string.format("%s: losses[%d]: unknown loss '%s' (expected %s, or {label=, f=function(θ1, θ2)})",
                       fn, i, tostring(name), table.concat(names, "|")))
  end
  return make(o)
end

-- zero contour of a spec's f(θ1, θ2) on an n×n grid over [0, π]²: xs, ys in degrees
local function boundary_curve(fn, i, spec, n)
  local f = spec.f or function(a, b) return spec.pos(a) - spec.neg(b, a) end
  local th, z, k = {}, {}, 0
  for q = 1, n do th[q] = pi * (q - 1) / (n - 1) end
  for j = 1, n do          -- rows: θ2
    for q = 1, n do        -- columns: θ1
      k = k + 1
      local ok, v = pcall(f, th[q], th[j])
      if not ok then fail(string.format("%s: losses[%d] (%s): %s", fn, i, spec.label or "?", tostring(v))) end
      z[k] = (type(v) == "number" and v == v) and v or 0 / 0
    end
  end
  return P.contour(z, n, n, 0, 180, 0, 180, 0)
end

-- (name, options) of a boundary item for the animation, or a ready spec (a head's own boundary,
-- {f=} / {pos=, neg=} tables)
local function sweep_spec(fn, item, a)
  if type(item) == "function" then return item(a) end          -- the user's family of boundaries
  if type(item) == "string" then item = { item } end
  local name = type(item) == "table" and (item[1] or (type(item.boundary) ~= "function" and item.name)) or nil
  local sweep = SWEEPS[name]
  local o = {}
  if item[1] then
    for k, v in pairs(item) do o[k] = v end
  else   -- a head: the same fields boundary_spec reads
    for _, k in ipairs { "m", "m1", "m2", "m3", "t", "kind", "adaptive", "easy_margin", "fallback", "m0", "alpha",
                         "l_a", "u_a", "l_m", "u_m", "h", "lambda_min" } do o[k] = item[k] end
    if type(item.base) == "string" then o.base = item.base end
    if o.fallback == "easy" then o.fallback, o.easy_margin = "mm", true end
    o[1] = name
  end
  check_preset(fn, "item", o)
  sweep(o, a)
  return boundary_spec(fn, 1, o)
end

--- An animated GIF of one loss's two-class boundary as its margin grows from 0 to its value (or
--- along SphereFace's λ annealing, or CurricularFace's t from 0 to 1); losses without a named
--- margin (and heads with their own boundary, e.g. fvl.loss.margin) morph from NormFace's
--- boundary θ1 = θ2 to theirs. item: a name, {name, m=...}, a head, or function(a) returning a
--- boundary spec ({label=, f=function(θ1, θ2)} or a preset table) for a in [0, 1].
--- opts: file (.gif, required), frames (24), hold (extra copies of the last frame, 8), delay (0.12 s),
--- grid (121), mirror (true), width, height (560).
function plot.boundary_animation(item, opts)
  local fn = "plot.boundary_animation"
  opts = util.check_opts(fn, opts, { "file", "frames", "hold", "delay", "grid", "mirror", "width", "height", "title" })
  local nf = util.integer(fn, "frames", opts.frames, 24, 2)
  local hold = util.integer(fn, "hold", opts.hold, 8, 0)
  local n = util.integer(fn, "grid", opts.grid, 121, 8)
  local mirror = util.boolean(fn, "mirror", opts.mirror, true)
  local w, h = size_opts(fn, opts, 560, 560)
  if type(item) ~= "function" and type(item) ~= "string" and type(item) ~= "table" then
    fail(string.format("%s: item must be a name, a table, a head or a function(a), got %s", fn, type(item)))
  end
  if type(item) == "string" then item = { item } end
  if type(item) == "table" and not SWEEPS[item[1] or (type(item.boundary) ~= "function" and item.name) or ""] then
    local spec = boundary_spec(fn, 1, item)   -- evaluated once; the frames morph it
    local f = spec.f or function(t1, t2) return spec.pos(t1) - spec.neg(t2, t1) end
    item = function(a)
      return { label = spec.label, f = function(t1, t2) return a * f(t1, t2) + (1 - a) * (cos(t1) - cos(t2)) end }
    end
  end
  local anim = plot.animation { file = opts.file, width = w, height = h,
                                delay = util.number(fn, "delay", opts.delay, 0.12, 0.01, 600) }
  local ok, err = pcall(function()
    local last
    for k = 1, nf do
      local a = (k - 1) / (nf - 1)
      local spec = sweep_spec(fn, item, a)
      local xs, ys = boundary_curve(fn, 1, spec, n)
      local series = { { x = xs, y = ys, label = "class 1 boundary", color = 1, width = 2.4 } }
      if mirror then series[2] = { x = ys, y = xs, label = "class 2 boundary", color = 4, dash = "dashed", width = 2.0 } end
      last = { series = series, title = (opts.title and (opts.title .. ": ") or "") .. (spec.label or "?"),
               legend = "none", equal = true, diagonal = true, xmin = 0, xmax = 180, ymin = 0, ymax = 180,
               xstep = 30, ystep = 30, xlabel = "θ1 (degrees)", ylabel = "θ2 (degrees)",
               notes = { { x = 40, y = 165, text = "x → class 1" }, { x = 145, y = 15, text = "x → class 2" } } }
      anim:add_chart(last)
    end
    for _ = 1, hold do anim:add_chart(last) end
  end)
  if not ok then
    anim.handle = nil   -- dropped: no file
    collectgarbage()
    error(err, 0)
  end
  return anim:close()
end

--- One boundary animation per head into dir: boundary_<name>.gif (a numbered suffix when two heads
--- share a name). heads: a list as plot.boundaries takes. Returns the list of files written.
--- opts: dir (required) and plot.boundary_animation's options.
function plot.boundary_animations(heads, opts)
  local fn = "plot.boundary_animations"
  if type(opts) ~= "table" or type(opts.dir) ~= "string" then fail(fn .. ": opts.dir (a directory) is required") end
  if type(heads) ~= "table" or #heads == 0 then fail(fn .. ": heads must be a non-empty list") end
  local files, seen = {}, {}
  for i, item in ipairs(heads) do
    local name = type(item) == "string" and item or (type(item) == "table" and (item[1] or item.name)) or ("loss" .. i)
    name = tostring(name):gsub("[^%w_%-]", "_")
    seen[name] = (seen[name] or 0) + 1
    local file = string.format("%s/boundary_%s%s.gif", opts.dir, name, seen[name] > 1 and ("_" .. seen[name]) or "")
    local o = {}
    for k, v in pairs(opts) do if k ~= "dir" then o[k] = v end end
    o.file = file
    files[#files + 1] = plot.boundary_animation(item, o)
  end
  return files
end

--- A features animation over training: one frame every `every` steps (or `frames` frames spread
--- over `steps`); anim:step(k, function() return emb, labels, opts end) adds a frame when step k is
--- due (the function runs only then), anim:close() writes the file.
--- opts: file (.gif), steps, frames (24) or every, and plot.animation's width, height, delay, loop.
function plot.training_animation(opts)
  local fn = "plot.training_animation"
  opts = util.check_opts(fn, opts, { "file", "steps", "frames", "every", "width", "height", "delay", "loop" })
  local every = opts.every and util.integer(fn, "every", opts.every, nil, 1)
  if not every then
    local steps = util.integer(fn, "steps", opts.steps, nil, 1)
    every = math.max(1, math.floor(steps / util.integer(fn, "frames", opts.frames, 24, 1)))
  end
  local anim = plot.animation { file = opts.file, width = opts.width, height = opts.height,
                                delay = opts.delay or 0.15, loop = opts.loop }
  anim.every = every
  return anim
end

-- anim:step(k, frame) -> frames: adds a frame at step k when k is a multiple of the animation's
-- `every` (fvl.plot.training_animation); frame() -> emb, labels, opts runs only then.
function Animation:step(k, frame)
  if k % (self.every or 1) ~= 0 then return self.n end
  local emb, labels, o = frame()
  return self:add(emb, labels, o)
end

--- The two-class decision boundaries in the (θ1, θ2) plane, θk = angle between x and W_k, in
--- degrees. For each loss the solid curve is where a sample of class 1 sits exactly on its
--- decision boundary (target logit of class 1 = logit of class 2); above it the sample is
--- classified as class 1. The dashed curve is its mirror for class 2; between them lies the margin.
--- Curves are computed numerically (zero contour of pos(θ1) - neg(θ2, θ1) on a grid).
--- losses: list of names, {name, m=...}, heads, or {label=, f=function(θ1, θ2) (radians)}.
--- losses may be left out (fvl.plot.boundaries{file=...}): the seed heads' defaults.
--- opts: file, title, layout ("grid": one panel per loss in a sheet, the default for 3 or more
--- losses; "overlay": every loss on one chart), cols, grid (241 points a side), mirror (true),
--- width, height (of one panel in a grid, of the chart when overlaid).
--- Without file: the overlay returns a panel, the grid a list of panels.
function plot.boundaries(losses, opts)
  local fn = "plot.boundaries"
  if opts == nil and (losses == nil or (type(losses) == "table" and #losses == 0 and next(losses) ~= nil)) then
    losses, opts = plot.default_boundaries, losses
  end
  opts = util.check_opts(fn, opts, { "file", "title", "layout", "cols", "grid", "mirror", "width", "height" })
  if type(losses) ~= "table" or #losses == 0 then
    fail(fn .. ": losses must be a non-empty list (\"arcface\", {\"cosface\", m=0.35}, a head, ...)")
  end
  local n = util.integer(fn, "grid", opts.grid, 241, 8)
  local mirror = util.boolean(fn, "mirror", opts.mirror, true)
  local layout = util.enum(fn, "layout", opts.layout, { "grid", "overlay" }, #losses >= 3 and "grid" or "overlay")
  local file = check_file(fn, opts.file)
  local curves = {}
  for i, item in ipairs(losses) do
    local spec = boundary_spec(fn, i, item)
    local xs, ys = boundary_curve(fn, i, spec, n)
    curves[i] = { x = xs, y = ys, label = spec.label or ("loss " .. i) }
  end
  local common = { equal = true, diagonal = true, xmin = 0, xmax = 180, ymin = 0, ymax = 180,
                   xstep = 30, ystep = 30,
                   xlabel = "θ1 = angle between x and W1 (degrees)",
                   ylabel = "θ2 = angle between x and W2 (degrees)",
                   notes = { { x = 45, y = 160, text = "x → class 1" },
                             { x = 140, y = 25, text = "x → class 2" } } }
  local function chart(series, title, legend, w, h, f)
    local spec = { series = series, title = title, legend = legend, width = w, height = h, file = f }
    for k, v in pairs(common) do spec[k] = v end
    return plot.lines(spec)
  end
  local title = opts.title or "Two-class decision boundaries (solid: class 1, dashed: class 2)"
  if layout == "overlay" then
    local series = {}
    for i, c in ipairs(curves) do
      series[#series + 1] = { x = c.x, y = c.y, label = c.label, color = i, width = 2.2 }
      if mirror then series[#series + 1] = { x = c.y, y = c.x, color = i, dash = "dashed", width = 1.6 } end
    end
    return chart(series, title, "bottom right", opts.width or 760, opts.height or 720, file)
  end
  local panels = {}
  for i, c in ipairs(curves) do
    local series = { { x = c.x, y = c.y, label = "class 1 boundary", color = 1, width = 2.4 } }
    if mirror then
      series[2] = { x = c.y, y = c.x, label = "class 2 boundary", color = 4, dash = "dashed", width = 2.0 }
    end
    panels[i] = chart(series, c.label, "none", opts.width or 520, opts.height or 520, nil)
  end
  if not file then return panels end
  local cols = opts.cols and util.integer(fn, "cols", opts.cols, nil, 1) or math.min(4, #panels)
  return plot.sheet(panels, { file = file, cols = cols,
                              title = opts.title or "Two-class decision boundaries in the (θ1, θ2) plane: "
                                      .. "blue = class 1, red dashed = class 2, grey dotted θ1 = θ2; between them: the margin" })
end

-- ------------------------------------------------------------------------------ sheets

local tmp_seq = 0
local function tmp_png()
  tmp_seq = tmp_seq + 1
  local base = os.tmpname()
  os.remove(base)
  return string.format("%s_fvl_panel_%d.png", base, tmp_seq)
end

--- Tile panels into one image. items: PNG file names, {file=, title=} tables or panels returned
--- by fvl.plot.* without a file (rendered at the cell size). opts: file (required), cols
--- (ceil(sqrt(n))), title, cell_width, cell_height (default: the largest panel; 800×640 for
--- panels made here).
function plot.sheet(items, opts)
  local fn = "plot.sheet"
  opts = util.check_opts(fn, opts, { "file", "cols", "title", "cell_width", "cell_height" })
  if type(items) ~= "table" or #items == 0 then
    fail(fn .. ": panels must be a non-empty list of PNG files, {file=, title=} tables or panels")
  end
  local file = check_file(fn, opts.file)
  if not file then fail(fn .. ": file is required (a .png, .svg or .pdf name)") end
  local cols = opts.cols and util.integer(fn, "cols", opts.cols, nil, 1) or 0
  local cw = opts.cell_width and util.integer(fn, "cell_width", opts.cell_width, nil, 16) or 0
  local ch = opts.cell_height and util.integer(fn, "cell_height", opts.cell_height, nil, 16) or 0
  local panels, temps = {}, {}
  local ok, err = pcall(function()
    for i, it in ipairs(items) do
      if type(it) == "string" then
        panels[i] = { file = it }
      elseif getmetatable(it) == Panel then
        local t = tmp_png()
        temps[#temps + 1] = t
        it:save(t, cw > 0 and cw or nil, ch > 0 and ch or nil)
        panels[i] = { file = t, title = nil }
      elseif type(it) == "table" and type(it.file) == "string" then
        panels[i] = { file = it.file, title = it.title and tostring(it.title) }
      else
        fail(string.format("%s: panels[%d] must be a PNG file name, {file=, title=} or a panel, got %s",
                           fn, i, type(it)))
      end
    end
    P.sheet(file, panels, cols, opts.title, cw, ch)
    sheet_csv(file, panels)
  end)
  for _, t in ipairs(temps) do os.remove(t); os.remove(plot.csv_path(t)) end
  if not ok then error(err, 0) end
  return file
end

return plot
