-- fvl.schedule — values that change with the training step: learning rates, margins, scales.
--
-- A schedule is a callable object: sched(step) -> number, where `step` counts completed steps
-- (sched(0) is the first value). It is a pure function of the step, so a checkpoint only needs
-- the step. Constructors (all take one option table; unknown keys are an error):
--
--   constant{value=}                                   value
--   step{from=, gamma=0.1, step_size=}                 from * gamma^floor(step / step_size)
--   multistep{from=, gamma=0.1, milestones={...}}      from * gamma^(#milestones <= step)
--   exponential{from=, gamma=}                         from * gamma^step
--   linear{from=, to=, steps=}                         from -> to linearly, then to
--   cosine{from=, to=0, steps=}                        to + (from - to) (1 + cos(pi p)) / 2
--   polynomial{from=, to=0, steps=, power=1}           to + (from - to) (1 - p)^power
--   sphereface{base=1000, gamma=0.12, power=1, lambda_min=5}
--                                                      max(lambda_min, base (1 + gamma step)^-power)
--   fn(f [, {warmup=, warmup_from=}])                  any Lua function of the step
--   warmup(inner, {steps=, from=0})                    linear ramp in front of any schedule
--
-- Every constructor also takes warmup=W (and warmup_from=, default 0): for step < W the value
-- goes linearly from warmup_from to the schedule's value at W. For the schedules with a span
-- (linear, cosine, polynomial) `steps` is the step at which `to` is reached, warm-up included:
-- with warmup=W the decay runs from step W (value `from`) to step `steps` (value `to`), as in
-- fvl.schedule.cosine{from=0.1, to=0, steps=N, warmup=W}. Other schedules keep absolute steps
-- (milestones are absolute).
local schedule = {}

local Schedule = {}
schedule.Schedule = Schedule   -- the class of every schedule (fvl.schedule.is_schedule)
Schedule.__index = Schedule
Schedule.__name = "fvl.Schedule"
require("fvl.util").register_class(Schedule, "fvl.schedule.Schedule")
function Schedule.__call(self, step)
  if type(step) ~= "number" or step ~= step then
    error(string.format("schedule.%s: step must be a number, got %s", self.kind, tostring(step)), 2)
  end
  if step < 0 then
    error(string.format("schedule.%s: step must be >= 0, got %s", self.kind, tostring(step)), 2)
  end
  return self.f(step)
end
function Schedule.__tostring(self)
  return string.format("fvl.schedule.%s", self.kind)
end
-- the first n+1 values sched(0..n), e.g. for plotting
function Schedule:values(n, from)
  local out = {}
  for k = from or 0, n do out[#out + 1] = self(k) end
  return out
end

local function new(kind, f) return setmetatable({ kind = kind, f = f }, Schedule) end

local function check_opts(fn, opts, allowed, level)
  if opts == nil then opts = {} end
  if type(opts) ~= "table" then
    error(string.format("schedule.%s: expected an option table, got %s", fn, type(opts)), level or 3)
  end
  local set = {}
  for _, k in ipairs(allowed) do set[k] = true end
  for k in pairs(opts) do
    if not set[k] then
      local names = {}
      for _, n in ipairs(allowed) do names[#names + 1] = n end
      error(string.format("schedule.%s: unknown option '%s' (expected one of: %s)", fn, tostring(k),
                          table.concat(names, ", ")), level or 3)
    end
  end
  return opts
end

local function num(fn, opts, key, def, cond, what)
  local v = opts[key]
  if v == nil then
    if def == nil then
      error(string.format("schedule.%s: option '%s' is required (%s)", fn, key, what or "a number"), 4)
    end
    return def
  end
  if type(v) ~= "number" or v ~= v or (cond and not cond(v)) then
    error(string.format("schedule.%s: %s = %s (expected %s)", fn, key, tostring(v), what or "a number"), 4)
  end
  return v
end
local function positive(v) return v > 0 end
local function nonneg(v) return v >= 0 end

-- wrap `inner` with a linear warm-up over the first W steps
local function with_warmup(kind, inner, W, from)
  if not W or W == 0 then return inner end
  local target = inner(W)
  local s = new(kind, function(step)
    if step < W then return from + (target - from) * step / W end
    return inner.f(step)
  end)
  s.warmup, s.inner = W, inner
  return s
end

local warm_keys = { "warmup", "warmup_from" }
local function keys(list)
  local t = {}
  for _, k in ipairs(list) do t[#t + 1] = k end
  for _, k in ipairs(warm_keys) do t[#t + 1] = k end
  return t
end

local function finish(kind, opts, s)
  local W = num(kind, opts, "warmup", 0, nonneg, "a number of steps >= 0")
  local wf = num(kind, opts, "warmup_from", 0)
  local r = with_warmup(kind, s, W, wf)
  for k, v in pairs(opts) do if r[k] == nil then r[k] = v end end
  return r
end

-- fvl.schedule.constant{value=} -> schedule: always value. Every constructor also takes warmup (and warmup_from, 0). Errors: unknown keys, missing values.
function schedule.constant(opts)
  if type(opts) == "number" then opts = { value = opts } end
  opts = check_opts("constant", opts, keys { "value" })
  local v = num("constant", opts, "value")
  return finish("constant", opts, new("constant", function() return v end))
end

-- fvl.schedule.step{from=, gamma=0.1, step_size=} -> schedule: from·gamma^floor(step / step_size).
-- Every constructor also takes warmup (and warmup_from, 0). Errors: unknown keys, missing values.
function schedule.step(opts)
  opts = check_opts("step", opts, keys { "from", "gamma", "step_size" })
  local from = num("step", opts, "from")
  local gamma = num("step", opts, "gamma", 0.1)
  local size = num("step", opts, "step_size", nil, positive, "a positive number of steps")
  return finish("step", opts, new("step", function(k) return from * gamma ^ math.floor(k / size) end))
end

-- fvl.schedule.multistep{from=, gamma=0.1, milestones={...}} -> schedule: from·gamma^k, k the
-- number of milestones <= step (absolute steps, increasing). Every constructor also takes warmup (and warmup_from, 0). Errors: unknown keys, missing values.
function schedule.multistep(opts)
  opts = check_opts("multistep", opts, keys { "from", "gamma", "milestones" })
  local from = num("multistep", opts, "from")
  local gamma = num("multistep", opts, "gamma", 0.1)
  local ms = opts.milestones
  if type(ms) ~= "table" or #ms == 0 then
    error("schedule.multistep: option 'milestones' is required (a non-empty list of increasing steps)", 2)
  end
  for i, m in ipairs(ms) do
    if type(m) ~= "number" or m < 0 or (i > 1 and m <= ms[i - 1]) then
      error(string.format("schedule.multistep: milestones[%d] = %s (expected increasing steps >= 0)", i,
                          tostring(m)), 2)
    end
  end
  local list = { table.unpack(ms) }
  return finish("multistep", opts, new("multistep", function(k)
    local n = 0
    for _, m in ipairs(list) do if k >= m then n = n + 1 end end
    return from * gamma ^ n
  end))
end

-- fvl.schedule.exponential{from=, gamma=} -> schedule: from·gamma^step. Every constructor also takes warmup (and warmup_from, 0). Errors: unknown keys, missing values.
function schedule.exponential(opts)
  opts = check_opts("exponential", opts, keys { "from", "gamma" })
  local from = num("exponential", opts, "from")
  local gamma = num("exponential", opts, "gamma", nil, positive, "a positive factor per step")
  return finish("exponential", opts, new("exponential", function(k) return from * gamma ^ k end))
end

-- schedules that go from `from` to `to` over [warmup, steps]
local function span(kind, opts, extra, shape)
  opts = check_opts(kind, opts, keys(extra))
  local from = num(kind, opts, "from")
  local to = num(kind, opts, "to", kind ~= "linear" and 0 or nil)
  local N = num(kind, opts, "steps", nil, positive, "a positive number of steps")
  local W = num(kind, opts, "warmup", 0, nonneg, "a number of steps >= 0")
  if W >= N then
    error(string.format("schedule.%s: warmup = %s must be smaller than steps = %s", kind, tostring(W),
                        tostring(N)), 3)
  end
  local power = num(kind, opts, "power", 1, positive, "a positive exponent")
  local s = new(kind, function(k)
    local p = (k - W) / (N - W)
    if p <= 0 then return from end
    if p >= 1 then return to end
    return shape(from, to, p, power)
  end)
  return finish(kind, opts, s)
end

-- fvl.schedule.linear{from=, to=, steps=} -> schedule: from → to linearly, reaching to at step
-- `steps` (after a warm-up: from step warmup), then to. Every constructor also takes warmup (and warmup_from, 0). Errors: unknown keys, missing values.
function schedule.linear(opts)
  return span("linear", opts, { "from", "to", "steps" }, function(a, b, p) return a + (b - a) * p end)
end

-- fvl.schedule.cosine{from=, to=0, steps=} -> schedule: to + (from − to)(1 + cos(π·p))/2, p the
-- fraction of [warmup, steps] done, then to. Every constructor also takes warmup (and warmup_from, 0). Errors: unknown keys, missing values.
function schedule.cosine(opts)
  return span("cosine", opts, { "from", "to", "steps" }, function(a, b, p)
    return b + (a - b) * (1 + math.cos(math.pi * p)) / 2
  end)
end

-- fvl.schedule.polynomial{from=, to=0, steps=, power=1} -> schedule: to + (from − to)(1 − p)^power,
-- p as in cosine. Every constructor also takes warmup (and warmup_from, 0). Errors: unknown keys, missing values.
function schedule.polynomial(opts)
  return span("polynomial", opts, { "from", "to", "steps", "power" }, function(a, b, p, pw)
    return b + (a - b) * (1 - p) ^ pw
  end)
end

-- fvl.schedule.sphereface{base=1000, gamma=0.12, power=1, lambda_min=5} -> schedule: SphereFace's
-- annealed λ, max(lambda_min, base·(1 + gamma·step)^−power): the weight of the plain softmax
-- logit in the original A-Softmax code (docs/losses.md, SphereFace). Every constructor
-- also takes warmup (and warmup_from, 0). Errors: unknown keys, gamma < 0, non-numbers.
function schedule.sphereface(opts)
  opts = check_opts("sphereface", opts, keys { "base", "gamma", "power", "lambda_min" })
  local base = num("sphereface", opts, "base", 1000)
  local gamma = num("sphereface", opts, "gamma", 0.12, nonneg, "a number >= 0")
  local power = num("sphereface", opts, "power", 1)
  local lmin = num("sphereface", opts, "lambda_min", 5)
  return finish("sphereface", opts, new("sphereface", function(k)
    return math.max(lmin, base * (1 + gamma * k) ^ (-power))
  end))
end

-- a function, or a table with __call (a module)
local function callable(f) return type(f) == "function" or (type(f) == "table" and getmetatable(f) and getmetatable(f).__call) end

-- fvl.schedule.fn(f [, {warmup=, warmup_from=}]) -> schedule: any Lua function of the step
-- (f(0) is the first value) as a schedule, e.g. fvl.schedule.fn(function(k) return k < 100 and
-- 0 or 0.5 end). Errors: f not callable; at a call, f returning something other than a number.
function schedule.fn(f, opts)
  if not callable(f) then
    error("schedule.fn: argument #1 must be a function of the step, got " .. type(f), 2)
  end
  opts = check_opts("fn", opts, keys {})
  local s = new("fn", function(k)
    local v = f(k)
    if type(v) ~= "number" then
      error(string.format("schedule.fn: the function returned %s for step %s (expected a number)",
                          type(v), tostring(k)), 0)
    end
    return v
  end)
  return finish("fn", opts, s)
end

-- fvl.schedule.warmup(inner, {steps=, from=0}) -> schedule: a linear ramp from `from` at step 0
-- to inner(steps) at step `steps`, then inner itself (absolute steps: inner is not shifted).
-- inner is a schedule, a number or a function of the step. Errors: steps missing or <= 0.
function schedule.warmup(inner, opts)
  if not (getmetatable(inner) == Schedule or type(inner) == "number" or callable(inner)) then
    error("schedule.warmup: inner must be a schedule, a number or a function of the step, got " .. type(inner), 2)
  end
  inner = schedule.wrap(inner)
  opts = check_opts("warmup", opts, { "steps", "from" })
  local W = num("warmup", opts, "steps", nil, positive, "a positive number of steps")
  local from = num("warmup", opts, "from", 0)
  return with_warmup("warmup", inner, W, from)
end

-- fvl.schedule.wrap(x) -> schedule: a schedule as is, a number as constant{value = x}, a
-- function of the step as fn(x). Errors: anything else (as fn).
function schedule.wrap(x)
  if getmetatable(x) == Schedule then return x end
  if type(x) == "number" then return schedule.constant { value = x } end
  return schedule.fn(x)
end

-- fvl.schedule.is_schedule(x) -> boolean: whether x is a schedule made by fvl.schedule.
function schedule.is_schedule(x) return getmetatable(x) == Schedule end

return setmetatable(schedule, {
  -- fvl.schedule(f) is fvl.schedule.fn(f)
  __call = function(_, f, opts) return schedule.fn(f, opts) end,
})
