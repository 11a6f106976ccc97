-- fvl.sweep.worker — one trial in a worker process: config, seed, threads, report(), the
-- successive-halving pause, and the recorded outcome. Used by fvl.sweep (docs/sweeps.md).
local fvl = require "fvl.core"
local json = require "fvl.json"
local util = require("fvl.sweep.report").util

local W = {}
local sys = fvl.sys
local WORKER_ENV = "FVL_SWEEP_WORKER"
local sorted_keys = util.sorted_keys
local function isfinite(x) return x == x and x ~= math.huge and x ~= -math.huge end
local function nonfinite_name(x) return x ~= x and "NaN" or (x > 0 and "inf" or "-inf") end
local function enc(v) return json.encode(v, { nonfinite = "literal" }) end

local PRUNED = setmetatable({}, { __tostring = function() return "fvl.sweep: trial pruned" end })

local function check_metrics(m, what)
  if type(m) ~= "table" then return nil, string.format("%s must be a table of metrics, got %s", what, type(m)) end
  for k, v in pairs(m) do
    if type(k) ~= "string" then return nil, string.format("%s has a non-string key %s", what, tostring(k)) end
    local t = type(v)
    if t ~= "number" and t ~= "string" and t ~= "boolean" then
      local ok, n = pcall(function() return v:item() end)
      if ok and type(n) == "number" then
        m[k] = n
      else
        return nil, string.format("%s.%s must be a number, string or boolean, got %s", what, k, t)
      end
    end
  end
  return m
end

-- the step and metrics of one report(m) (nsteps: the reports so far, the default step); errors
-- point at the trial's report() call
local function read_report(m, nsteps)
  if type(m) ~= "table" then error("report: expected a table {step=, metric=...}, got " .. type(m), 3) end
  local step = m.step
  if step == nil then step = nsteps end
  if math.type(step) ~= "integer" then
    if type(step) == "number" and step == math.floor(step) then step = math.tointeger(step)
    else error("report: step must be an integer, got " .. tostring(m.step), 3) end
  end
  local metrics = {}
  for k, v in pairs(m) do
    if k ~= "step" then
      if type(v) == "userdata" then
        local ok, n = pcall(function() return v:item() end)
        if ok then v = n end
      end
      if type(k) ~= "string" or type(v) ~= "number" then
        error(string.format("report: %s must be a number, got %s", tostring(k), type(v)), 3)
      end
      metrics[k] = v
    end
  end
  return step, metrics
end

-- successive halving: the trial waits at rung r until the driver promotes and releases it (or
-- prunes it: PRUNED is raised)
local function wait_at_rung(st, id, attempt, r)
  local delay = 0.02
  while true do
    sys.sleep(delay)
    delay = math.min(delay * 1.5, 0.25)
    local now = st:trial(id)
    if not now or now.attempt ~= attempt or now.status == "pruned" or now.status ~= "running" then
      error(PRUNED)
    end
    if now.rung >= r and now.wait_rung == 0 then return end   -- promoted and released
  end
end

-- records what the trial function returned (res: metrics table, number, tensor or nil = the last
-- report): done, or failed with the reason; returns "done" or "failed"
local function record_result(S, st, id, attempt, res, last)
  local metrics = res
  if type(res) == "userdata" then
    local iok, n = pcall(function() return res:item() end)
    if iok then res = n end
  end
  if type(res) == "number" then
    metrics = { [S.metric or "value"] = res }
  elseif res == nil then
    metrics = last or {}
  end
  local m, err = check_metrics(metrics, "the trial's result")
  if not m then
    st:finish_trial(id, attempt, "failed", nil, err, false)
    return "failed"
  end
  for _, k in ipairs(sorted_keys(m)) do
    local v = m[k]
    if type(v) == "number" and not isfinite(v) then
      st:finish_trial(id, attempt, "failed", enc(m), string.format("the trial returned %s for '%s'",
                      nonfinite_name(v), k), false)
      return "failed"
    end
  end
  if S.metric and S.strategy == "halving" and m[S.metric] == nil then
    st:finish_trial(id, attempt, "failed", enc(m),
                    string.format("the trial's result has no metric '%s'", S.metric), false)
    return "failed"
  end
  st:finish_trial(id, attempt, "done", enc(m), nil, false)
  return "done"
end

-- runs trial `id` (attempt `attempt`) in this process; returns nothing, everything is stored
-- inline: the trial runs in the driver's own process, which renews its lease at each report
local function run_trial(S, st, id, attempt, threads, logpath, inline)
  local row = st:trial(id)
  if not row or row.status ~= "running" or row.attempt ~= attempt then return "stale" end
  local cfg, labels = S.config_of(id)
  if enc(labels) ~= row.config then
    st:finish_trial(id, attempt, "failed", nil, string.format(
      "the script's space no longer gives trial %d's config (stored %s, now %s)", id, row.config,
      enc(labels)), false)
    return "failed"
  end
  if threads then
    if type(rawget(fvl, "set_threads")) == "function" then fvl.set_threads(threads)
    elseif type(rawget(fvl, "threads")) == "function" then fvl.threads(threads) end
  end
  if type(rawget(fvl, "manual_seed")) == "function" then fvl.manual_seed(row.seed) end
  math.randomseed(row.seed)

  local rungs = S.halving and S.halving.rungs
  local passed = row.rung or 0
  local nsteps, last = 0, nil
  local beat = sys.time()
  local function report(m)
    if inline and sys.time() - beat > S.lease / 4 then
      beat = sys.time()
      st:heartbeat(id, attempt, S.lease)
    end
    nsteps = nsteps + 1
    local step, metrics = read_report(m, nsteps)
    if not st:report(id, attempt, step, enc(metrics)) then error(PRUNED) end
    last = metrics
    for k, v in pairs(metrics) do
      if not isfinite(v) then error(string.format("report: %s is %s at step %d", k, nonfinite_name(v), step), 2) end
    end
    while rungs and passed < #rungs and step >= rungs[passed + 1] do
      local r = passed + 1
      local v = metrics[S.metric]
      if v == nil then
        error(string.format("report: successive halving needs metric '%s' in the report at step %d (rung %d)",
                            S.metric, step, r), 2)
      end
      if not st:set_wait(id, attempt, r, v) then error(PRUNED) end
      wait_at_rung(st, id, attempt, r)
      passed = r
    end
  end

  local info = { id = id, seed = row.seed, attempt = attempt, threads = threads, store = st:path(),
                 log = logpath, labels = labels }
  local ok, res = xpcall(S.trial, function(e)
    if e == PRUNED then return e end
    return debug.traceback(tostring(e), 2)
  end, cfg, report, info)
  if not ok then
    if res == PRUNED then return "pruned" end
    local msg = tostring(res)
    local killed = msg:find(": interrupted", 1, true) ~= nil
    st:finish_trial(id, attempt, "failed", last and enc(last) or nil, msg, killed)
    return "failed"
  end
  return record_result(S, st, id, attempt, res, last)
end

local function worker_main(S, spec)
  local id, attempt, path = spec.id, spec.attempt, spec.store
  local st = fvl.store.open(path)
  local threads = tonumber(os.getenv("FVL_SWEEP_THREADS"))
  local ok, err = pcall(run_trial, S, st, id, attempt, threads, os.getenv("FVL_SWEEP_LOG"))
  if not ok then
    pcall(st.finish_trial, st, id, attempt, "failed", nil, "fvl.sweep worker: " .. tostring(err), false)
  end
  st:close()
  io.stdout:flush()
  io.stderr:flush()
  os.exit(0, true)
end

local function parse_worker_env()
  local v = os.getenv(WORKER_ENV)
  if not v then return nil end
  local id, attempt, path = v:match("^(%d+):(%d+):(.+)$")
  if not id then error("fvl.sweep: " .. WORKER_ENV .. " = '" .. v .. "' (expected <trial>:<attempt>:<store>)", 3) end
  return { id = math.tointeger(tonumber(id)), attempt = math.tointeger(tonumber(attempt)), store = path }
end

W.run_trial, W.worker_main, W.parse_worker_env = run_trial, worker_main, parse_worker_env
return W
