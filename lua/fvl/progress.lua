-- fvl.progress — progress of a loop: a redrawn bar with ETA, rate and your values when the
-- output is a terminal; plain periodic lines otherwise (logs, CI, pipes).
--
--   local p = fvl.progress{total=60000, title="epoch 1"}
--   p:update(128, {loss=0.42})      -- 128 more samples done; values are shown as given
--   p:close({acc=0.91})             -- final line with totals, elapsed time and mean rate
--
-- Options: total (nil = unknown: no percentage or ETA), title, unit ("samples"), out (a file,
-- default io.stderr), tty (default: whether `out` is stderr/stdout on a terminal), every (plain
-- mode: a line each time this fraction of total is passed, default 0.1; the line for the total
-- itself is close()'s), interval (plain mode: also a line when this many seconds passed since the
-- last one, default 10), width (bar
-- characters, 30), clock (a function returning seconds; for tests).
local fvl = require "fvl.core"
local util = require "fvl.util"

local Progress = {}
Progress.__index = Progress
Progress.__name = "fvl.progress"
util.register_class(Progress, "fvl.progress.Progress")

local function fmt_time(s)
  if s ~= s or s == math.huge then return "?" end
  s = math.floor(s + 0.5)
  if s >= 3600 then return string.format("%d:%02d:%02d", s // 3600, s % 3600 // 60, s % 60) end
  return string.format("%d:%02d", s // 60, s % 60)
end

local function fmt_rate(r)
  if r >= 1e6 then return string.format("%.1fM", r / 1e6) end
  if r >= 1e4 then return string.format("%.1fk", r / 1e3) end
  if r >= 100 then return string.format("%.0f", r) end
  return string.format("%.3g", r)
end

local function fmt_values(v)
  if not v then return "" end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = tostring(k) end
  table.sort(keys)
  local parts = {}
  for _, k in ipairs(keys) do
    local x = v[k]
    if x == nil then x = v[tonumber(k)] end
    if type(x) == "userdata" and x.item then x = x:item() end
    if type(x) == "number" then
      if math.type(x) == "integer" then x = tostring(x) else x = string.format("%.4g", x) end
    else
      x = tostring(x)
    end
    parts[#parts + 1] = k .. "=" .. x
  end
  return table.concat(parts, " ")
end

local function default_tty(out)
  if out == io.stderr then return fvl._isatty(2) end
  if out == io.stdout then return fvl._isatty(1) end
  return false
end

-- fvl.progress.new(opts) (or fvl.progress(opts)) -> progress: a progress display for a loop
-- (options above: total, title, unit, out, tty, every, interval, width, clock); p:update(n,
-- values), p:close(values). Errors: unknown options, a title that is not a string.
function Progress.new(opts)
  local fn = "progress"
  opts = util.check_opts(fn, opts, { "total", "title", "unit", "out", "tty", "every", "interval",
                                     "width", "clock" })
  local self = setmetatable({}, Progress)
  if opts.total ~= nil then self.total = util.number(fn, "total", opts.total, nil, 0) end
  if opts.title ~= nil and type(opts.title) ~= "string" then
    error(fn .. ": title must be a string, got " .. type(opts.title), 2)
  end
  self.title = opts.title or ""
  self.unit = opts.unit or "samples"
  self.out = opts.out or io.stderr
  if io.type(self.out) ~= "file" then
    error(fn .. ": out must be an open file, got " .. tostring(self.out), 2)
  end
  self.tty = opts.tty
  if self.tty == nil then self.tty = default_tty(self.out) end
  self.tty = util.boolean(fn, "tty", self.tty)
  self.every = util.number(fn, "every", opts.every, 0.1, 0, 1)
  self.interval = util.number(fn, "interval", opts.interval, 10, 0)
  self.width = util.integer(fn, "width", opts.width, 30, 1)
  if opts.clock ~= nil and type(opts.clock) ~= "function" then
    error(fn .. ": clock must be a function, got " .. type(opts.clock), 2)
  end
  self.clock = opts.clock or fvl.clock
  self.n, self.steps = 0, 0
  self.t0 = self.clock()
  self.last_print = self.t0
  self.last_draw = -math.huge
  self.next_mark = self.every > 0 and self.total and self.total > 0 and self.every or math.huge
  self.closed = false
  self.values = nil
  return self
end

-- p:stats([now]) -> elapsed, rate, eta: seconds since the start, units per second (the mean since
-- the start) and the seconds left (math.huge without a total or before any progress).
function Progress:stats(now)
  local el = (now or self.clock()) - self.t0
  local rate = el > 0 and self.n / el or 0
  local eta = (self.total and rate > 0) and math.max(self.total - self.n, 0) / rate or math.huge
  return el, rate, eta
end

-- p:line([now [, final]]) -> string: the status line as it would be printed now (title, count,
-- percentage, rate, elapsed time, ETA, values).
function Progress:line(now, final)
  local el, rate, eta = self:stats(now)
  local parts = {}
  if self.title ~= "" then parts[#parts + 1] = self.title .. ":" end
  local count = self.total and string.format("%d/%d", self.n, self.total) or string.format("%d", self.n)
  if self.tty and self.total and self.total > 0 then
    local frac = math.min(self.n / self.total, 1)
    local full = math.floor(frac * self.width + 1e-9)
    parts[#parts + 1] = "[" .. string.rep("#", full) .. string.rep(".", self.width - full) .. "]"
  end
  if self.total and self.total > 0 then
    parts[#parts + 1] = string.format("%3d%%", math.floor(100 * math.min(self.n / self.total, 1) + 1e-9))
  end
  parts[#parts + 1] = count
  parts[#parts + 1] = fmt_rate(rate) .. " " .. self.unit .. "/s"
  if final then
    parts[#parts + 1] = "in " .. fmt_time(el)
  else
    parts[#parts + 1] = "elapsed " .. fmt_time(el)
    if self.total then parts[#parts + 1] = "ETA " .. fmt_time(eta) end
  end
  local v = fmt_values(self.values)
  if v ~= "" then parts[#parts + 1] = v end
  return table.concat(parts, " ")
end

-- p:update([n] [, values]) -> p: n more units done (default 1); values (a table of numbers,
-- strings or one-element tensors) replace the shown values; redraws or prints when due.
-- Errors: after close, n < 0 or not a number, values not a table.
function Progress:update(n, values)
  if self.closed then error("progress: update after close", 2) end
  if type(n) == "table" and values == nil then n, values = 1, n end
  n = n or 1
  if type(n) ~= "number" or n < 0 then
    error("progress: update(n) needs a count >= 0, got " .. tostring(n), 2)
  end
  if values ~= nil and type(values) ~= "table" then
    error("progress: values must be a table, got " .. type(values), 2)
  end
  self.n = self.n + n
  self.steps = self.steps + 1
  if values then self.values = values end
  local now = self.clock()
  if self.tty then
    if now - self.last_draw >= 0.1 or (self.total and self.n >= self.total) then
      self.last_draw = now
      local s = self:line(now)
      local pad = self.drawn and math.max(self.drawn - #s, 0) or 0
      self.out:write("\r", s, string.rep(" ", pad))
      self.out:flush()
      self.drawn = #s
    end
  else
    local mark = false
    if self.total and self.total > 0 and self.n / self.total >= self.next_mark - 1e-12 then
      mark = true
      while self.n / self.total >= self.next_mark - 1e-12 do self.next_mark = self.next_mark + self.every end
    end
    -- the total reached: close() prints the line for it (with the mean rate and the time taken), so
    -- a plain log does not end with two lines of the same count
    local complete = self.total and self.total > 0 and self.n >= self.total
    if not complete and (mark or (self.interval > 0 and now - self.last_print >= self.interval)) then
      self.last_print = now
      self.out:write(self:line(now), "\n")
      self.out:flush()
    end
  end
  return self
end

-- p:close([values]) -> elapsed, rate: prints the final line (values, optional, replace the shown
-- values) and returns the elapsed seconds and the mean rate; a second close does nothing.
function Progress:close(values)
  if self.closed then return end
  self.closed = true
  if values then self.values = values end
  local now = self.clock()
  local s = self:line(now, true)
  if self.tty then
    local pad = self.drawn and math.max(self.drawn - #s, 0) or 0
    self.out:write("\r", s, string.rep(" ", pad), "\n")
  else
    self.out:write(s, "\n")
  end
  self.out:flush()
  local el, rate = self:stats(now)
  return el, rate
end

Progress.__close = function(self) self:close() end
Progress.__tostring = function(self) return "fvl.progress(" .. self:line() .. ")" end
--- @doc fvl.progress.format_time(seconds) -> string
--- A duration as the progress line prints it: "m:ss", "h:mm:ss" from an hour, "?" when unknown.

return setmetatable({ new = Progress.new, Progress = Progress, format_time = fmt_time },
                    { __call = function(_, opts) return Progress.new(opts) end })
