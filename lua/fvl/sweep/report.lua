-- fvl.sweep.report — reading sweep stores: load, merge, leaderboard, CSV, plots.
-- Used through fvl.sweep (fvl.sweep.load, .merge, .leaderboard, .csv, .plot); see docs/sweeps.md.
local fvl = require "fvl.core"
local json = require "fvl.json"

local R = {}
local sys = fvl.sys

-- ---------------------------------------------------------------- helpers (shared with fvl.sweep)
local function check_opts(fn, opts, allowed)
  local set = {}
  for _, k in ipairs(allowed) do set[k] = true end
  for k in pairs(opts) do
    if not set[k] then
      local sorted = { table.unpack(allowed) }
      table.sort(sorted)
      error(string.format("%s: unknown option '%s' (expected one of: %s)", fn, tostring(k),
                          table.concat(sorted, ", ")), 0)
    end
  end
end

local function sorted_keys(t)
  local ks = {}
  for k in pairs(t) do ks[#ks + 1] = k end
  table.sort(ks, function(a, b) return tostring(a) < tostring(b) end)
  return ks
end

local function dec(s)
  if s == nil then return nil end
  local v = json.decode(s)
  return v
end

local function fmt_num(v)
  if type(v) ~= "number" then return tostring(v) end
  if math.type(v) == "integer" then return tostring(v) end
  if v ~= v then return "nan" end
  if v == 0 then return "0" end
  local a = math.abs(v)
  if a >= 1e5 or a < 1e-3 then return string.format("%.3g", v) end
  return (string.format("%.4f", v):gsub("0+$", ""):gsub("%.$", ""))
end

local function config_text(labels)
  if type(labels) ~= "table" then return "" end
  local parts = {}
  for _, k in ipairs(sorted_keys(labels)) do
    local v = labels[k]
    parts[#parts + 1] = k .. "=" .. (type(v) == "number" and fmt_num(v) or tostring(v))
  end
  return table.concat(parts, " ")
end

local function metric_text(metrics, primary)
  if type(metrics) ~= "table" then return "" end
  local parts = {}
  if primary and metrics[primary] ~= nil then parts[1] = primary .. "=" .. fmt_num(metrics[primary]) end
  for _, k in ipairs(sorted_keys(metrics)) do
    if k ~= primary and #parts < 4 then parts[#parts + 1] = k .. "=" .. fmt_num(metrics[k]) end
  end
  return table.concat(parts, " ")
end

local function better(mode) return mode == "min" and function(a, b) return a < b end
                                                 or function(a, b) return a > b end end

-- successive halving: decide every rung whose candidates are all waiting (or out)
-- ---------------------------------------------------------------- store access
-- errors at level 0: the message names the public function, and the readers reach this through
-- different depths (a level would point inside this file for some of them)
local function open_store(store, fn)
  if type(store) == "string" and store:match("^postgres[q]?[l]?://") then
    if not store:find("#", 1, true) then
      error(string.format("%s: %s names no sweep: add #<sweep name> (the sweep's schema)", fn, store), 0)
    end
    return fvl.store.open(store), true
  end
  if type(store) == "string" then
    local f = io.open(store, "rb")
    if not f then error(string.format("%s: no store at %s", fn, store), 0) end
    f:close()
    return fvl.store.open(store), true
  end
  if type(store) == "userdata" and tostring(store):match("^fvl%.Store") then return store, false end
  error(string.format("%s: store must be a path or an open store, got %s", fn, type(store)), 0)
end

local function decode_trial(row)
  return {
    id = row.id, seed = row.seed, status = row.status, attempt = row.attempt,
    config = dec(row.config), metrics = dec(row.metrics), error = row.error,
    started = row.started, ended = row.ended, host = row.host,
    seconds = row.started and row.ended and (row.ended - row.started) or nil,
    rung = row.rung, killed = row.killed or nil,
  }
end

-- fvl.sweep.load(store [, opts]) -> {trial, ...}: every trial of a store (a path, a postgres:// URL
-- or an open store): id, seed, status, attempt, config, metrics, error, started, ended, host,
-- seconds, rung; opts.reports = true adds each trial's reported values (report(step, metrics)).
function R.load(store, opts)
  opts = opts or {}
  check_opts("fvl.sweep.load", opts, { "reports" })
  local st, own = open_store(store, "fvl.sweep.load")
  local out = {}
  for i, row in ipairs(st:trials()) do out[i] = decode_trial(row) end
  if opts.reports then
    local by = {}
    for _, t in ipairs(out) do t.reports = {}; by[t.id] = t.reports end
    for _, r in ipairs(st:reports()) do
      local m = dec(r.metrics) or {}
      m.step = r.step
      if by[r.trial] then table.insert(by[r.trial], m) end
    end
  end
  if own then st:close() end
  return out
end

-- ---------------------------------------------------------------- merge
-- fvl.sweep.merge(out, shards) -> count: copies the trials of several shard stores (a list of
-- paths, or a glob pattern "runs/x.shard*.sqlite") into the SQLite store out; returns the number
-- of merged trials. Errors: out not a path or a PostgreSQL URL; an empty list; a shard of a
-- different sweep (space, strategy or seed differ).
function R.merge(out, shards)
  if type(out) ~= "string" then error("fvl.sweep.merge: out must be a path, got " .. type(out), 2) end
  if out:match("^postgres[q]?[l]?://") then
    error("fvl.sweep.merge: out must be a SQLite file: a PostgreSQL store is shared by every worker and " ..
          "needs no merge", 2)
  end
  if type(shards) == "string" then shards = sys.glob(shards) end
  if type(shards) ~= "table" or #shards == 0 then
    error("fvl.sweep.merge: expected a non-empty list of shard stores (or a glob pattern that matches some)", 2)
  end
  local dir = out:match("^(.*)/[^/]*$")
  if dir and dir ~= "" then sys.mkdirs(dir) end
  local st = fvl.store.open(out)
  local fp = st:meta("fingerprint")
  local taken = 0
  for i, p in ipairs(shards) do
    if type(p) ~= "string" then st:close(); error(string.format("fvl.sweep.merge: shards[%d] must be a path", i), 2) end
    local src = open_store(p, "fvl.sweep.merge")
    local sfp = src:meta("fingerprint")
    src:close()
    if fp and sfp and fp ~= sfp then
      st:close()
      error(string.format("fvl.sweep.merge: %s is a different sweep than %s (space, strategy or seed differ)",
                          p, out), 2)
    end
    fp = fp or sfp
    local ok, n = pcall(st.merge, st, p)
    if not ok then st:close(); error(n, 2) end
    taken = taken + n
  end
  local total = #st:trials()
  st:close()
  return total, taken
end

-- ---------------------------------------------------------------- reporting
local status_rank = { done = 1, pruned = 2, running = 3, pending = 4, failed = 5 }

local function metric_of(store_meta_metric, opts, trials)
  if opts.metric then return opts.metric end
  if store_meta_metric then return store_meta_metric end
  for _, t in ipairs(trials) do
    if type(t.metrics) == "table" then
      for _, k in ipairs(sorted_keys(t.metrics)) do
        if type(t.metrics[k]) == "number" then return k end
      end
    end
  end
end

local function sorted_trials(store, opts, fn)
  local st, own = open_store(store, fn)
  local meta_metric, meta_mode = st:meta("metric"), st:meta("mode")
  local trials = {}
  for i, row in ipairs(st:trials()) do trials[i] = decode_trial(row) end
  if own then st:close() end
  local metric = metric_of(meta_metric, opts, trials)
  local mode = opts.mode or meta_mode or "max"
  local gt = better(mode)
  table.sort(trials, function(a, b)
    local ra, rb = status_rank[a.status] or 9, status_rank[b.status] or 9
    if ra ~= rb then return ra < rb end
    if a.status == "pruned" and a.rung ~= b.rung then return (a.rung or 0) > (b.rung or 0) end
    local va = metric and type(a.metrics) == "table" and a.metrics[metric] or nil
    local vb = metric and type(b.metrics) == "table" and b.metrics[metric] or nil
    if type(va) ~= "number" or va ~= va then va = nil end
    if type(vb) ~= "number" or vb ~= vb then vb = nil end
    if va ~= nil and vb ~= nil and va ~= vb then return gt(va, vb) end
    if (va == nil) ~= (vb == nil) then return va ~= nil end
    return a.id < b.id
  end)
  return trials, metric, mode
end

local function pad(s, w, right)
  s = tostring(s)
  if utf8.len(s) and utf8.len(s) > w then s = s:sub(1, w - 1) .. "~" end
  local n = w - (utf8.len(s) or #s)
  if n <= 0 then return s end
  return right and (string.rep(" ", n) .. s) or (s .. string.rep(" ", n))
end

-- fvl.sweep.leaderboard(store [, opts]) -> rows, text: the finished trials sorted by the metric
-- (opts.metric, default the sweep's; mode "max"|"min"; top N), as rows and a printed table
-- (print = false: not printed).
function R.leaderboard(store, opts)
  opts = opts or {}
  check_opts("fvl.sweep.leaderboard", opts, { "metric", "mode", "top", "print" })
  local trials, metric, mode = sorted_trials(store, opts, "fvl.sweep.leaderboard")
  local keys, mkeys, seenk, seenm = {}, {}, {}, {}
  for _, t in ipairs(trials) do
    for k in pairs(type(t.config) == "table" and t.config or {}) do
      if not seenk[k] then seenk[k] = true; keys[#keys + 1] = k end
    end
    for k, v in pairs(type(t.metrics) == "table" and t.metrics or {}) do
      if not seenm[k] and k ~= metric and type(v) == "number" then seenm[k] = true; mkeys[#mkeys + 1] = k end
    end
  end
  table.sort(keys)
  table.sort(mkeys)
  while #mkeys > 3 do table.remove(mkeys) end
  local function num(v) return v == nil and "-" or (type(v) == "number" and fmt_num(v) or tostring(v)) end
  -- columns: title, right-aligned, cell(trial, rank)
  local cols = {
    { "#", true, function(_, rank) return tostring(rank) end },
    { "id", true, function(t) return tostring(t.id) end },
    { "status", false, function(t) return t.status end },
  }
  local function mget(t, k) return type(t.metrics) == "table" and t.metrics[k] or nil end
  if metric then
    cols[#cols + 1] = { metric .. (mode == "min" and " (min)" or " (max)"), true,
                        function(t) return num(mget(t, metric)) end }
  end
  for _, k in ipairs(mkeys) do cols[#cols + 1] = { k, true, function(t) return num(mget(t, k)) end } end
  for _, k in ipairs(keys) do
    cols[#cols + 1] = { k, false, function(t)
      if type(t.config) ~= "table" then return "-" end
      return num(t.config[k])
    end }
  end
  cols[#cols + 1] = { "time", true, function(t) return t.seconds and string.format("%.1fs", t.seconds) or "-" end }
  local top = math.min(opts.top or #trials, #trials)
  local cells = {}
  local width = {}
  for c, col in ipairs(cols) do width[c] = #col[1] end
  for rank = 1, top do
    local row = {}
    for c, col in ipairs(cols) do
      local v = col[3](trials[rank], rank)
      if #v > 28 then v = v:sub(1, 27) .. "~" end
      row[c] = v
      width[c] = math.max(width[c], #v)
    end
    cells[rank] = row
  end
  local function line(row)
    local parts = {}
    for c, col in ipairs(cols) do parts[c] = pad(row[c], width[c], col[2]) end
    return (table.concat(parts, "  "):gsub("%s+$", ""))
  end
  local head = {}
  for c, col in ipairs(cols) do head[c] = col[1] end
  local lines = { line(head) }
  lines[2] = string.rep("-", #lines[1])
  for rank = 1, top do
    lines[#lines + 1] = line(cells[rank])
    local t = trials[rank]
    if t.status == "failed" and t.error then
      lines[#lines + 1] = "      error: " .. tostring(t.error):match("^[^\n]*")
    end
  end
  if top < #trials then lines[#lines + 1] = string.format("(%d more)", #trials - top) end
  local counts = {}
  for rank, t in ipairs(trials) do t.rank = rank; counts[t.status] = (counts[t.status] or 0) + 1 end
  local summary = {}
  for _, st in ipairs { "done", "pruned", "failed", "running", "pending" } do
    if counts[st] then summary[#summary + 1] = counts[st] .. " " .. st end
  end
  lines[#lines + 1] = string.format("%d trials: %s", #trials, table.concat(summary, ", "))
  local text = table.concat(lines, "\n")
  if opts.print ~= false then print(text) end
  return trials, text
end

-- seed spread: finished trials grouped by their configuration without the `over` key (default
-- "seed": a space with seed = {1, 2, 3} runs each configuration three times); per group the
-- metric's n, mean, sample std, min and max, best mean first.
function R.spread(store, opts)
  opts = opts or {}
  check_opts("fvl.sweep.spread", opts, { "metric", "mode", "over", "top", "print" })
  local over = opts.over or "seed"
  local trials, metric, mode = sorted_trials(store, opts, "fvl.sweep.spread")
  if not metric then error("fvl.sweep.spread: no numeric metric in the store (give metric=)", 2) end
  local groups, order = {}, {}
  for _, t in ipairs(trials) do
    local v = t.status == "done" and type(t.metrics) == "table" and t.metrics[metric] or nil
    if type(v) == "number" and v == v then
      local cfg = {}
      for k, x in pairs(type(t.config) == "table" and t.config or {}) do if k ~= over then cfg[k] = x end end
      local key = config_text(cfg)
      local g = groups[key]
      if not g then
        g = { config = cfg, key = key, values = {}, over = {} }
        groups[key] = g
        order[#order + 1] = g
      end
      g.values[#g.values + 1] = v
      g.over[#g.over + 1] = type(t.config) == "table" and t.config[over] or nil
    end
  end
  for _, g in ipairs(order) do
    local n, sum, lo, hi = #g.values, 0, math.huge, -math.huge
    for _, v in ipairs(g.values) do sum = sum + v; lo = math.min(lo, v); hi = math.max(hi, v) end
    local mean, ss = sum / n, 0
    for _, v in ipairs(g.values) do ss = ss + (v - mean) ^ 2 end
    g.n, g.mean, g.min, g.max = n, mean, lo, hi
    g.std = n > 1 and math.sqrt(ss / (n - 1)) or 0
  end
  local gt = better(mode)
  table.sort(order, function(a, b)
    if a.mean ~= b.mean then return gt(a.mean, b.mean) end
    return a.key < b.key
  end)
  local lines = { string.format("%3s  %-40s %3s  %-24s %s", "#", "configuration (over " .. over .. ")", "n",
                                metric .. " mean ± std", "min – max") }
  for i = 1, math.min(opts.top or #order, #order) do
    local g = order[i]
    lines[#lines + 1] = string.format("%3d  %-40s %3d  %-24s %s – %s", i, g.key, g.n,
                                      fmt_num(g.mean) .. " ± " .. fmt_num(g.std), fmt_num(g.min), fmt_num(g.max))
  end
  local text = table.concat(lines, "\n")
  if opts.print ~= false then print(text) end
  return order, text
end

local function csv_cell(v)
  if v == nil then return "" end
  if type(v) == "number" then
    if math.type(v) == "integer" then return tostring(v) end
    for _, f in ipairs { "%.15g", "%.16g", "%.17g" } do
      local txt = string.format(f, v)
      if tonumber(txt) == v then return txt end
    end
  end
  local s = tostring(v)
  if s:find('[,"\n\r]') then s = '"' .. s:gsub('"', '""') .. '"' end
  return s
end

-- CSV export: one row per trial, best first; written atomically
function R.csv(store, path, opts)
  opts = opts or {}
  check_opts("fvl.sweep.csv", opts, { "metric", "mode" })
  if type(path) ~= "string" then error("fvl.sweep.csv: path must be a string, got " .. type(path), 2) end
  local trials, metric = sorted_trials(store, opts, "fvl.sweep.csv")
  local keys, mkeys, seenk, seenm = {}, {}, {}, {}
  for _, t in ipairs(trials) do
    for k in pairs(type(t.config) == "table" and t.config or {}) do
      if not seenk[k] then seenk[k] = true; keys[#keys + 1] = k end
    end
    for k in pairs(type(t.metrics) == "table" and t.metrics or {}) do
      if not seenm[k] then seenm[k] = true; mkeys[#mkeys + 1] = k end
    end
  end
  table.sort(keys)
  table.sort(mkeys, function(a, b)
    if a == metric or b == metric then return a == metric end
    return a < b
  end)
  local head = { "rank", "id", "status", "seed", "seconds" }
  local taken = { rank = true, id = true, status = true, seed = true, seconds = true, error = true }
  for _, k in ipairs(keys) do head[#head + 1] = csv_cell(k); taken[k] = true end
  for _, k in ipairs(mkeys) do head[#head + 1] = csv_cell(taken[k] and ("metric." .. k) or k) end
  head[#head + 1] = "error"
  local out = { table.concat(head, ",") }
  for rank, t in ipairs(trials) do
    local row = { rank, t.id, t.status, t.seed, t.seconds and string.format("%.3f", t.seconds) or nil }
    local cells = {}
    for i = 1, 5 do cells[i] = csv_cell(row[i]) end
    for _, k in ipairs(keys) do cells[#cells + 1] = csv_cell(type(t.config) == "table" and t.config[k] or nil) end
    for _, k in ipairs(mkeys) do cells[#cells + 1] = csv_cell(type(t.metrics) == "table" and t.metrics[k] or nil) end
    cells[#cells + 1] = csv_cell(t.error and tostring(t.error):match("^[^\n]*"))
    out[#out + 1] = table.concat(cells, ",")
  end
  return sys.write_atomic(path, table.concat(out, "\n") .. "\n")
end

-- the plot of the metric against hyperparameter k: numeric values as two point series (done and
-- pruned trials apart: a pruned trial's value comes from an earlier step), other values as one
-- series per value at x = 1, 2, ... (spread a little so equal values stay visible; the ticks carry
-- the values' names); nil when
-- no trial has both. value(t): the trial's plotted metric or nil.
local function param_spec(trials, k, value, title, ylabel, file)
  local numeric = true
  for _, t in ipairs(trials) do
    local v = t.config and t.config[k]
    if v ~= nil and type(v) ~= "number" then numeric = false end
  end
  local series = {}
  local spec = { title = title, xlabel = k, ylabel = ylabel, file = file }
  if numeric then
    for _, st in ipairs { "done", "pruned" } do
      local xs, ys = {}, {}
      for _, t in ipairs(trials) do
        local v = value(t)
        if t.status == st and v and t.config[k] ~= nil then xs[#xs + 1], ys[#ys + 1] = t.config[k], v end
      end
      if #xs > 0 then series[#series + 1] = { x = xs, y = ys, label = st, points = true, line = false } end
    end
  else
    local cats, order = {}, {}
    for _, t in ipairs(trials) do
      local v = t.config and t.config[k]
      if v ~= nil and value(t) then
        local c = tostring(v)
        if not cats[c] then cats[c] = { x = {}, y = {} }; order[#order + 1] = c end
      end
    end
    table.sort(order)
    for i, c in ipairs(order) do
      local xs, ys = cats[c].x, cats[c].y
      for _, t in ipairs(trials) do
        local v = value(t)
        if v and t.config and tostring(t.config[k]) == c then ys[#ys + 1] = v end
      end
      -- spread over up to 7 columns centred on the tick (one trial sits on it)
      local cols = math.min(#ys, 7)
      for j = 1, #ys do xs[j] = i + ((j - 1) % 7 - (cols - 1) / 2) * 0.04 end
      series[#series + 1] = { x = xs, y = ys, label = c, points = true, line = false }
    end
    spec.xmin, spec.xmax, spec.xnames = 0.5, #order + 0.5, order   -- the ticks named by the values
  end
  if #series == 0 then return nil end
  spec.series = series
  return spec
end

-- the learning curves (reported values of `curve` by step) of the first `best` trials
local function curve_series(store, trials, best, curve)
  local by = {}
  for _, t in ipairs(R.load(store, { reports = true })) do by[t.id] = t end
  local series = {}
  for _, t in ipairs(trials) do
    if #series >= best then break end
    local xs, ys = {}, {}
    for _, rep in ipairs(by[t.id].reports or {}) do
      if type(rep[curve]) == "number" then xs[#xs + 1], ys[#ys + 1] = rep.step, rep[curve] end
    end
    if #xs > 0 then
      series[#series + 1] = { x = xs, y = ys, points = true,
                              label = string.format("#%d %s", t.id, config_text(t.config)) }
    end
  end
  return series
end

-- plots: the metric against each hyperparameter, and the learning curves of the best trials,
-- each a PNG, plus one sheet with all of them (needs fvl.plot)
function R.plot(store, opts)
  opts = opts or {}
  check_opts("fvl.sweep.plot", opts, { "metric", "mode", "prefix", "best", "curve", "sheet" })
  local ok, plot = pcall(function() return fvl.plot end)
  if not ok or type(plot) ~= "table" or type(plot.lines) ~= "function" then
    return nil, "fvl.sweep.plot: fvl.plot.lines is not available in this build"
  end
  local trials, metric, mode = sorted_trials(store, opts, "fvl.sweep.plot")
  if not metric then return nil, "fvl.sweep.plot: the store has no numeric metric to plot" end
  local path = type(store) == "string" and store or store:path()
  local name = path:match("([^/]+)$"):gsub("%.[%w]+$", "")
  -- files next to a SQLite store; runs/<sweep> for a PostgreSQL one
  local prefix = opts.prefix or (path:match("^postgres[q]?[l]?://") and ("runs/" .. (path:match("#(.*)$") or "sweep")))
                 or path:gsub("%.[%w]+$", "")
  local files = {}
  local keys = {}
  for _, t in ipairs(trials) do
    for k in pairs(type(t.config) == "table" and t.config or {}) do keys[k] = true end
  end
  local function value(t)
    local m = type(t.metrics) == "table" and t.metrics[metric]
    if type(m) == "number" and m == m and (t.status == "done" or t.status == "pruned") then return m end
  end
  local function draw(spec)
    local pok, res = pcall(plot.lines, spec)
    if not pok then error("fvl.sweep.plot: " .. tostring(res), 0) end
    files[#files + 1] = spec.file
  end
  local okp, perr = pcall(function()
    for _, k in ipairs(sorted_keys(keys)) do
      local spec = param_spec(trials, k, value, string.format("%s: %s vs %s", name, metric, k),
                              metric .. " (final; pruned: last report)",
                              string.format("%s.%s.png", prefix, k:gsub("[^%w_%-]", "_")))
      if spec then draw(spec) end
    end
    local curve = opts.curve or metric
    local series = curve_series(store, trials, opts.best or 5, curve)
    if #series > 0 then
      draw({ series = series, file = prefix .. ".curves.png", xlabel = "step", ylabel = curve,
             title = string.format("%s: %s of the %d best trials", name, curve, #series) })
    end
    if opts.sheet ~= false and #files > 1 and type(plot.sheet) == "function" then
      local sheet = prefix .. ".sheet.png"
      plot.sheet(files, { file = sheet, cols = math.min(3, #files),
                          title = string.format("sweep %s (%s, %s)", name, metric, mode) })
      files[#files + 1] = sheet
    end
  end)
  if not okp then return nil, tostring(perr) end
  return files
end

R.util = { check_opts = check_opts, sorted_keys = sorted_keys, dec = dec, fmt_num = fmt_num,
           config_text = config_text, metric_text = metric_text, better = better }
return R
