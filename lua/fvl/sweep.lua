-- fvl.sweep — hyperparameter and margin-schedule sweeps: grid, seeded random and successive
-- halving; every trial in its own worker process; results in one SQLite store per sweep.
--
--   fvl.sweep{name=, space=, trial=function(cfg, report, info) ... return metrics end,
--             workers=1, store="runs/<name>.sqlite", strategy="grid"|"random"|"halving",
--             samples=, seed=1, metric=, mode="max", halving={rungs={...}, eta=3},
--             shard="i/N", threads=, timeout=, retry_failed=false, quiet=false}
--   fvl.sweep.load(store [, {reports=true}])     -> list of trials
--   fvl.sweep.merge(out, {shard stores} | "glob*") -> merged trial count
--   fvl.sweep.leaderboard(store [, opts])       -> sorted rows, text (printed unless print=false)
--   fvl.sweep.csv(store, path [, opts])         -> true | nil, message   (atomic write)
--   fvl.sweep.plot(store, opts)                 -> files written | nil, message
--   fvl.sweep.uniform(lo, hi)  loguniform(lo, hi)  int(lo, hi)  choice{...}  named(label, v)
--
-- How workers run (see docs/sweeps.md): the driver starts `fvl <script> <args>` again for each
-- trial (fork + exec of this very program) with FVL_SWEEP_WORKER=<trial>:<attempt>:<store>.
-- When fvl.sweep{} sees that variable and its own store, it runs just that trial and exits;
-- any other fvl.sweep{} in the script returns the stored results without running anything.
local fvl = require "fvl.core"
local json = require "fvl.json"

local sweep = {}
local sys = fvl.sys
local WORKER_ENV = "FVL_SWEEP_WORKER"

-- ---------------------------------------------------------------- small helpers
local function fail(fmt, ...) error("fvl.sweep: " .. string.format(fmt, ...), 0) end

local function isfinite(x) return x == x and x ~= math.huge and x ~= -math.huge end
local function enc(v) return json.encode(v, { nonfinite = "literal" }) end

-- this file: the space, strategies, shards and the driver; fvl/sweep/worker.lua runs one trial,
-- fvl/sweep/report.lua reads stores (load, merge, leaderboard, CSV, plots)
local report = require "fvl.sweep.report"
local worker = require "fvl.sweep.worker"
local check_opts, sorted_keys, dec, fmt_num = report.util.check_opts, report.util.sorted_keys,
                                              report.util.dec, report.util.fmt_num
local config_text, metric_text, better = report.util.config_text, report.util.metric_text, report.util.better
local run_trial = worker.run_trial

-- ---------------------------------------------------------------- space values
local Range = { __name = "fvl.sweep.range" }
Range.__index = Range
local Choice = { __name = "fvl.sweep.choice" }
local Named = { __name = "fvl.sweep.named" }

local function check_bounds(fn, lo, hi)
  if type(lo) ~= "number" or type(hi) ~= "number" or not isfinite(lo) or not isfinite(hi) or lo > hi then
    error(string.format("fvl.sweep.%s: expected finite numbers lo <= hi, got %s, %s", fn,
                        tostring(lo), tostring(hi)), 3)
  end
end
function sweep.uniform(lo, hi)
  check_bounds("uniform", lo, hi)
  return setmetatable({ kind = "uniform", lo = lo, hi = hi }, Range)
end
function sweep.loguniform(lo, hi)
  check_bounds("loguniform", lo, hi)
  if lo <= 0 then error("fvl.sweep.loguniform: lo must be > 0, got " .. tostring(lo), 2) end
  return setmetatable({ kind = "loguniform", lo = lo, hi = hi }, Range)
end
function sweep.int(lo, hi)
  check_bounds("int", lo, hi)
  if math.type(lo) ~= "integer" or math.type(hi) ~= "integer" then
    error(string.format("fvl.sweep.int: expected integers, got %s, %s", tostring(lo), tostring(hi)), 2)
  end
  return setmetatable({ kind = "int", lo = lo, hi = hi }, Range)
end
-- an explicit list of choices (needed when the values are themselves lists)
function sweep.choice(values)
  if type(values) ~= "table" or #values == 0 then
    error("fvl.sweep.choice: expected a non-empty list of values, got " .. type(values), 2)
  end
  return setmetatable({ values = values }, Choice)
end
-- a value with a readable label: fvl.sweep.named("cosine", fvl.schedule.cosine{...})
function sweep.named(label, value)
  if type(label) ~= "string" then
    error("fvl.sweep.named: label must be a string, got " .. type(label), 2)
  end
  return setmetatable({ label = label, value = value }, Named)
end

-- label of one value for the stored config (JSON-able, readable)
local function label_of(key, v, i)
  local t = type(v)
  if t == "number" then
    if not isfinite(v) then return tostring(v) end
    return v
  end
  if t == "string" or t == "boolean" then return v end
  local mt = getmetatable(v)
  if mt == Named then return v.label end
  if t == "table" or t == "userdata" then
    local ok, name = pcall(function() return v.name end)
    if ok and type(name) == "string" then return name end
    -- objects that keep their options as fields (fvl.schedule.*): kind(option=value, ...)
    local okk, kind = pcall(function() return v.kind end)
    if okk and type(kind) == "string" and t == "table" then
      local parts = {}
      for _, f in ipairs(sorted_keys(v)) do
        local x = rawget(v, f)
        if f ~= "kind" and type(f) == "string" and (type(x) == "number" or type(x) == "string" or type(x) == "boolean") then
          parts[#parts + 1] = f .. "=" .. (type(x) == "number" and fmt_num(x) or tostring(x))
        end
      end
      return kind .. "(" .. table.concat(parts, ",") .. ")"
    end
    if mt and mt.__tostring then
      local s = tostring(v)
      if not s:match("^table: ") and not s:match("^userdata: ") then return s end
    end
    if t == "table" and not mt then
      local ok2, s = pcall(json.encode, v)
      if ok2 and #s <= 80 then return s end
    end
  end
  return string.format("%s#%d", key, i)
end

-- space → list of {key=, kind="list"|range kind, values=, labels=} sorted by key
local function normalize_space(space)
  if type(space) ~= "table" then fail("space must be a table of hyperparameters, got %s", type(space)) end
  local dims = {}
  for _, k in ipairs(sorted_keys(space)) do
    if type(k) ~= "string" then fail("space keys must be strings, got %s", tostring(k)) end
    local spec = space[k]
    local mt = getmetatable(spec)
    local d = { key = k }
    local values
    if mt == Range then
      d.kind, d.lo, d.hi = spec.kind, spec.lo, spec.hi
    elseif mt == Choice then
      values = spec.values
    elseif type(spec) == "table" and mt == nil then
      local n = #spec
      local count = 0
      for _ in pairs(spec) do count = count + 1 end
      if count == 0 then fail("space.%s is an empty table (expected a list of values)", k) end
      if n == count then
        values = spec
      else
        -- {label = value, ...}: choices labelled by their keys
        values = {}
        for _, lk in ipairs(sorted_keys(spec)) do
          if type(lk) ~= "string" then
            fail("space.%s mixes list entries and named entries (use fvl.sweep.choice{...})", k)
          end
          values[#values + 1] = sweep.named(lk, spec[lk])
        end
      end
    else
      values = { spec }   -- a fixed value: number, string, function, schedule object...
    end
    if values then
      d.kind = "list"
      d.values, d.labels = {}, {}
      local seen = {}
      for i, v in ipairs(values) do
        local lab = label_of(k, v, i)
        local lk = enc(lab)
        if seen[lk] then
          fail("space.%s: values %d and %d have the same label %s (wrap them in fvl.sweep.named)",
               k, seen[lk], i, lk)
        end
        seen[lk] = i
        d.labels[i] = lab
        d.values[i] = getmetatable(v) == Named and v.value or v
      end
    end
    dims[#dims + 1] = d
  end
  if #dims == 0 then fail("space is empty") end
  return dims
end

local function trial_seed(seed, id) return sys.hash(seed, id) % 2147483647 + 1 end

-- config of trial `id`: cfg (values for the trial) and labels (stored JSON)
local function make_configs(S)
  local dims = S.dims
  if S.from == "grid" then
    local total = 1
    for _, d in ipairs(dims) do
      if d.kind ~= "list" then
        fail("space.%s is a range (%s); strategy '%s' enumerates a grid of lists — use samples= " ..
             "(random draws) or list the values", d.key, d.kind, S.strategy)
      end
      total = total * #d.values
    end
    S.total = total
    S.config_of = function(id)
      local cfg, labels, rest = {}, {}, id - 1
      for j = #dims, 1, -1 do
        local d = dims[j]
        local i = rest % #d.values + 1
        rest = rest // #d.values
        cfg[d.key], labels[d.key] = d.values[i], d.labels[i]
      end
      return cfg, labels
    end
  else
    S.total = S.samples
    S.config_of = function(id)
      local cfg, labels = {}, {}
      for j, d in ipairs(dims) do
        local u = sys.uniform(S.seed, id * 4096 + j)
        local v, lab
        if d.kind == "list" then
          local i = math.floor(u * #d.values) + 1
          v, lab = d.values[i], d.labels[i]
        elseif d.kind == "uniform" then
          v = d.lo + (d.hi - d.lo) * u
        elseif d.kind == "loguniform" then
          v = math.exp(math.log(d.lo) + (math.log(d.hi) - math.log(d.lo)) * u)
        else
          v = d.lo + math.floor(u * (d.hi - d.lo + 1))
        end
        cfg[d.key], labels[d.key] = v, lab == nil and v or lab
      end
      return cfg, labels
    end
  end
end

-- what must match when a store is reused
local function fingerprint(S)
  local dims = {}
  for _, d in ipairs(S.dims) do
    dims[#dims + 1] = { key = d.key, kind = d.kind, labels = d.labels, lo = d.lo, hi = d.hi }
  end
  -- metric/mode matter only to halving (they decide who is pruned); elsewhere they only rank
  return enc({ strategy = S.strategy, seed = S.seed, samples = S.samples, space = dims,
               halving = S.halving and { rungs = S.halving.rungs, eta = S.halving.eta,
                                         metric = S.metric, mode = S.mode } or nil })
end

-- ---------------------------------------------------------------- shards
local function parse_shard(s, where)
  local i, n = tostring(s):match("^%s*(%d+)%s*/%s*(%d+)%s*$")
  i, n = tonumber(i), tonumber(n)
  if not i or n < 1 or i > n then
    fail("%s = '%s' (expected i/N with 0 <= i <= N, e.g. 0/4 or 4/4)", where, tostring(s))
  end
  return i % n, n
end

local function find_shard(opt)
  if opt ~= nil then return parse_shard(opt, "shard") end
  local a = rawget(_G, "arg")
  if type(a) == "table" then
    for i = 1, #a do
      local v = a[i]
      if v == "--shard" then return parse_shard(a[i + 1], "--shard") end
      local s = type(v) == "string" and v:match("^%-%-shard=(.*)$")
      if s then return parse_shard(s, "--shard") end
    end
  end
  local id, count = os.getenv("SLURM_ARRAY_TASK_ID"), os.getenv("SLURM_ARRAY_TASK_COUNT")
  if id and count then return parse_shard(id .. "/" .. count, "SLURM_ARRAY_TASK_ID/COUNT") end
  return nil
end

local function shard_path(path, i, n)
  local base, ext = path:match("^(.*)(%.[%w]+)$")
  if not base or base == "" or base:sub(-1) == "/" then base, ext = path, "" end
  return string.format("%s.shard-%d-of-%d%s", base, i, n, ext)
end

-- ---------------------------------------------------------------- reading stores (fvl.sweep.report)
sweep.load, sweep.merge = report.load, report.merge
sweep.leaderboard, sweep.csv, sweep.plot = report.leaderboard, report.csv, report.plot

function sweep.is_worker() return os.getenv(WORKER_ENV) ~= nil end

-- ---------------------------------------------------------------- the driver
local function log_tail(path, n)
  if not path then return "" end
  local f = io.open(path, "rb")
  if not f then return "" end
  local size = f:seek("end")
  f:seek("set", math.max(0, size - 2000))
  local s = f:read("a") or ""
  f:close()
  local lines = {}
  for line in s:gmatch("[^\n]+") do lines[#lines + 1] = line end
  local from = math.max(1, #lines - (n or 8) + 1)
  local out = table.concat(lines, "\n", from)
  if out == "" then return "" end
  return "\n--- last lines of " .. path .. " ---\n" .. out
end

local function decide_rungs(S, st, rows, queued, say)
  local R = #S.halving.rungs
  local gt = better(S.mode)
  for r = 1, R do
    local decided = st:meta("rung." .. r)
    local waiting, blocked = {}, false
    for _, t in ipairs(rows) do
      local live = t.status == "running" or t.status == "pending" or queued[t.id]
      if live and t.rung == r - 1 then
        -- waiting: paused in its worker (running) or parked without a process (pending)
        if (t.status == "running" or t.status == "pending") and t.wait_rung == r then
          waiting[#waiting + 1] = t
        else
          blocked = true
        end
      end
    end
    if decided then
      local d = dec(decided)
      for _, t in ipairs(waiting) do
        local v = t.wait_value
        if v ~= nil and (v == d.cutoff or gt(v, d.cutoff)) then st:promote(t.id, r)
        else
          local last = st:reports(t.id)
          st:prune(t.id, r, #last > 0 and last[#last].metrics or nil)
          say(string.format("rung %d: trial %d pruned late (%s %s vs cutoff %s)", r, t.id, S.metric,
                            fmt_num(v), fmt_num(d.cutoff)))
        end
      end
    elseif #waiting > 0 and not blocked then
      table.sort(waiting, function(a, b)
        local va, vb = a.wait_value, b.wait_value
        if va == nil or vb == nil then
          if va == vb then return a.id < b.id end
          return va ~= nil
        end
        if va == vb then return a.id < b.id end
        return gt(va, vb)
      end)
      local keep = math.max(1, math.floor(#waiting / S.halving.eta))
      st:begin()
      local ok, err = pcall(function()
        -- another driver sharing this store may have decided this rung a moment ago
        if st:meta("rung." .. r) then error("decided", 0) end
        for i, t in ipairs(waiting) do
          if i <= keep then st:promote(t.id, r)
          else
            local last = st:reports(t.id)
            st:prune(t.id, r, #last > 0 and last[#last].metrics or nil)
          end
        end
        st:meta("rung." .. r, enc({ cutoff = waiting[keep].wait_value, n = #waiting, keep = keep }))
      end)
      if ok then st:commit() else st:rollback() end
      if not ok and err == "decided" then break end
      if not ok then error(err, 0) end
      say(string.format("rung %d (step %d): %d of %d trials go on (%s %s %s)", r, S.halving.rungs[r],
                        keep, #waiting, S.metric, S.mode == "min" and "<=" or ">=",
                        fmt_num(waiting[keep].wait_value)))
    end
    if not decided and (blocked or #waiting > 0) then break end
  end
end

local function driver(S)
  local say = S.quiet and function() end or function(s) io.write(s, "\n"); io.flush() end
  local dir = S.store:match("^(.*)/[^/]*$")
  if dir and dir ~= "" then sys.mkdirs(dir) end
  local st = fvl.store.open(S.store)
  local fp = fingerprint(S)
  local old = st:meta("fingerprint")
  if old and old ~= fp then
    st:close()
    fail("%s holds a different sweep (name %s): its space, strategy, seed or halving differ from " ..
         "this call's — use another store or delete it\n  stored: %s\n  now:    %s", S.store,
         S.name, old, fp)
  end
  st:begin()
  st:meta("fingerprint", fp)
  st:meta("name", S.name)
  st:meta("strategy", S.strategy)
  if S.metric then st:meta("metric", S.metric) end
  st:meta("mode", S.mode)
  st:meta("total", tostring(S.total))
  st:commit()
  -- this shard's trials
  local ids = {}
  for id = 1, S.total do
    if not S.shard_n or (id - S.shard_i) % S.shard_n == 0 then ids[#ids + 1] = id end
  end
  st:begin()
  local ok, err = pcall(function()
    for _, id in ipairs(ids) do
      local _, labels = S.config_of(id)
      local text = enc(labels)
      if not st:add_trial(id, text, trial_seed(S.seed, id)) then
        local row = st:trial(id)
        if row.config ~= text then
          error(string.format("fvl.sweep: %s: trial %d's stored config %s differs from %s", S.store, id,
                              row.config, text), 0)
        end
      end
    end
  end)
  if ok then st:commit() else st:rollback(); st:close(); error(err, 0) end

  local queue, queued, seen, ndone, elsewhere = {}, {}, {}, 0, {}
  local host = sys.hostname()
  for _, id in ipairs(ids) do
    local row = st:trial(id)
    local s = row.status
    if s == "running" and row.host == host and row.pid > 0 and row.pid ~= sys.getpid() and sys.alive(row.pid) then
      -- a worker of another driver on this store is on it (ours die with their driver)
      elsewhere[#elsewhere + 1] = id
    elseif s == "pending" and row.wait_rung > 0 and row.rung < row.wait_rung then
      -- parked at a rung without a process: it runs again only if promoted (see the loop)
    elseif s == "pending" or s == "running" or (s == "failed" and (row.killed or S.retry_failed)) then
      queue[#queue + 1] = id
      queued[id] = true
      seen[id] = row.attempt
    else
      ndone = ndone + 1
    end
  end
  local workers, threads = S.workers, S.threads
  say(string.format("sweep %s: %d trials (%s%s), %d finished, %d to run; %d worker%s x %d thread%s; store %s",
                    S.name, #ids, S.strategy, S.shard_n and string.format(", shard %d/%d of %d", S.shard_i,
                    S.shard_n, S.total) or "", ndone, #queue, workers, workers == 1 and "" or "s", threads,
                    threads == 1 and "" or "s", S.store))

  local logdir = S.logs and (S.store:gsub("%.[%w]+$", "") .. ".logs") or nil
  if logdir then sys.mkdirs(logdir) end
  local abs = sys.realpath(S.store)
  local active, nactive = {}, 0
  local finished = ndone
  local t0 = sys.time()

  if #elsewhere > 0 then
    say(string.format("sweep %s: trial%s %s running in another process on this store; not run here",
                      S.name, #elsewhere == 1 and "" or "s", table.concat(elsewhere, ", ")))
  end

  local function launch(id)
    -- claimed only if nobody (another driver on this store) took it since we looked
    local attempt = st:start_trial(id, sys.getpid(), seen[id])   -- pid: ours until the worker's
    if attempt == 0 then return false end
    local logpath = logdir and string.format("%s/trial-%d.log", logdir, id) or nil
    if logpath then
      local f = io.open(logpath, "a")
      if f then
        f:write(string.format("=== trial %d attempt %d, %s ===\n", id, attempt, os.date("!%Y-%m-%d %H:%M:%SZ")))
        f:close()
      end
    end
    local argv = { S.exe, S.script }
    for _, a in ipairs(S.args) do argv[#argv + 1] = a end
    local env = {
      [WORKER_ENV] = string.format("%d:%d:%s", id, attempt, abs),
      FVL_SWEEP_THREADS = tostring(threads),
      FVL_SWEEP_LOG = logpath or "",
      OMP_NUM_THREADS = tostring(threads),
      OPENBLAS_NUM_THREADS = tostring(threads),
    }
    local pid = sys.spawn(S.exe, argv, env, logpath)
    st:set_pid(id, attempt, pid)
    active[pid] = { id = id, attempt = attempt, t0 = sys.time(), log = logpath }
    nactive = nactive + 1
    return true
  end

  local function on_exit(w, code, sig)
    local row = st:trial(w.id)
    -- a worker that left a rung's queue (parked) or an attempt that is no longer current
    if row.attempt ~= w.attempt or (row.status == "pending" and row.wait_rung > 0) then return end
    if row.status == "running" and row.attempt == w.attempt then
      local msg, killed
      if sig then
        killed = sig == "SIGKILL" or sig == "SIGTERM" or sig == "SIGINT" or sig == "SIGHUP"
        msg = killed and ("worker killed by " .. sig) or ("worker crashed: " .. sig)
        if w.timed_out then msg, killed = string.format("timed out after %g s", S.timeout), false end
        if w.interrupted then msg, killed = "interrupted (the driver stopped)", true end
      elseif code ~= 0 then
        msg = string.format("worker exited with code %d before recording a result", code)
      else
        msg = "worker exited without running the trial (does the script reach fvl.sweep{} with store " ..
              S.store .. " when run again?)"
      end
      st:finish_trial(w.id, w.attempt, "failed", nil, msg .. (killed and "" or log_tail(w.log)), killed)
      row = st:trial(w.id)
    end
    finished = finished + 1
    local what
    if row.status == "failed" then what = "FAILED: " .. tostring(row.error):match("^[^\n]*")
    else what = row.status .. "  " .. metric_text(dec(row.metrics), S.metric) end
    say(string.format("[%d/%d] trial %d %s  %s  (%.1f s)", finished, #ids, w.id, what,
                      config_text(dec(row.config)), sys.time() - w.t0))
  end

  local function loop()
    while #queue > 0 or nactive > 0 do
      -- waiting (paused at a rung) workers do not count against `workers`
      local rows = (S.halving or S.timeout) and st:trials() or nil
      local byid = {}
      if rows then for _, r in ipairs(rows) do byid[r.id] = r end end
      local busy, ready = 0, {}
      for _, w in pairs(active) do
        local r = byid[w.id]
        if not (r and r.status == "running" and r.wait_rung > 0) then busy = busy + 1
        elseif r.rung >= r.wait_rung then ready[#ready + 1] = r.id end   -- promoted, not yet released
      end
      if S.halving then
        -- at most halving.paused trials wait at a rung with their process (memory); the worst
        -- of the others are parked: the worker exits, the trial waits as 'pending' with its
        -- rung value, and runs again from step 0 if promoted
        local alive = {}
        for _, w in pairs(active) do
          local r = byid[w.id]
          if not w.parked and r and r.attempt == w.attempt and r.status == "running" and r.wait_rung > 0
             and r.rung < r.wait_rung then
            alive[#alive + 1] = { w = w, v = r.wait_value, rung = r.wait_rung }
          end
        end
        if #alive > S.halving.paused then
          local gt = better(S.mode)
          table.sort(alive, function(a, b)
            if a.rung ~= b.rung then return a.rung > b.rung end
            if a.v ~= nil and b.v ~= nil and a.v ~= b.v then return gt(a.v, b.v) end
            return a.w.id < b.w.id
          end)
          for i = S.halving.paused + 1, #alive do
            local w = alive[i].w
            if st:exec("UPDATE trials SET status = 'pending', pid = 0 WHERE id = ? AND attempt = ? AND" ..
                       " status = 'running' AND wait_rung > 0 AND rung < wait_rung", w.id, w.attempt) == 1 then
              w.parked = true
            end
          end
        end
        -- parked trials that were promoted go back to the front of the queue
        for _, r in ipairs(rows) do
          if r.status == "pending" and r.wait_rung > 0 and r.rung >= r.wait_rung and not queued[r.id] then
            table.insert(queue, 1, r.id)
            queued[r.id], seen[r.id] = true, r.attempt
          end
        end
      end
      -- promoted trials go on as slots free up (best first), before new trials start
      table.sort(ready, function(a, b)
        local va, vb = byid[a].wait_value, byid[b].wait_value
        if va ~= nil and vb ~= nil and va ~= vb then return better(S.mode)(va, vb) end
        return a < b
      end)
      for _, id in ipairs(ready) do
        if busy >= workers then break end
        if st:release(id) then busy = busy + 1 end
      end
      while busy < workers and #queue > 0 do
        local id = table.remove(queue, 1)
        queued[id] = nil
        if launch(id) then busy = busy + 1 end
      end
      for pid, w in pairs(active) do
        local done, code, sig = sys.poll(pid)
        if done then
          active[pid] = nil
          nactive = nactive - 1
          on_exit(w, code, sig)
        elseif S.timeout and sys.time() - w.t0 > S.timeout and not w.timed_out then
          w.timed_out = true
          sys.kill(pid, "KILL")
        end
      end
      if S.halving then decide_rungs(S, st, st:trials(), queued, say) end
      -- through pcall, so that the fvl program's Ctrl-C hook fires in here (it raises
      -- "interrupted" at the next Lua instruction) and not in the clean-up below
      local ok, e = pcall(sys.sleep, S.poll)
      if not ok then error(e, 0) end
    end
  end
  local lok, lerr = pcall(loop)
  if not lok then
    -- stop our workers; their trials run again on the next call
    sys.abort_clear()
    for pid, w in pairs(active) do
      w.interrupted = true
      pcall(sys.kill, pid, "KILL")
    end
    for pid, w in pairs(active) do
      for _ = 1, 200 do
        local ok2, done = pcall(sys.poll, pid)
        if not ok2 or done then break end
        sys.abort_clear()
        pcall(sys.sleep, 0.01)
      end
      pcall(st.finish_trial, st, w.id, w.attempt, "failed", nil, "interrupted (the driver stopped)", true)
    end
    st:close()
    if tostring(lerr):find("interrupted", 1, true) then
      error(string.format("fvl.sweep: interrupted; %d running trial(s) stopped — run the sweep again to resume",
                          nactive), 0)
    end
    error(lerr, 0)
  end
  st:close()
  say(string.format("sweep %s: finished in %.1f s", S.name, sys.time() - t0))
end

-- inline: trials run one after the other in this process (REPL, debugging)
local function inline(S)
  local dir = S.store:match("^(.*)/[^/]*$")
  if dir and dir ~= "" then sys.mkdirs(dir) end
  local st = fvl.store.open(S.store)
  local fp = fingerprint(S)
  local old = st:meta("fingerprint")
  if old and old ~= fp then st:close(); fail("%s holds a different sweep — use another store", S.store) end
  st:meta("fingerprint", fp)
  st:meta("name", S.name)
  st:meta("mode", S.mode)
  if S.metric then st:meta("metric", S.metric) end
  for id = 1, S.total do
    if not S.shard_n or (id - S.shard_i) % S.shard_n == 0 then
      local _, labels = S.config_of(id)
      st:add_trial(id, enc(labels), trial_seed(S.seed, id))
      local row = st:trial(id)
      if row.status == "pending" or row.status == "running" or (row.status == "failed" and (row.killed or S.retry_failed)) then
        local attempt = st:start_trial(id, sys.getpid(), row.attempt)
        local res = attempt > 0 and run_trial(S, st, id, attempt, nil, nil) or "claimed elsewhere"
        if not S.quiet then
          local r = st:trial(id)
          print(string.format("trial %d %s  %s  %s", id, res, metric_text(dec(r.metrics), S.metric),
                              config_text(labels)))
        end
      end
    end
  end
  st:close()
end

-- ---------------------------------------------------------------- fvl.sweep{...}
local sweep_opts = { "name", "space", "trial", "workers", "store", "strategy", "samples", "seed", "metric",
                     "mode", "halving", "shard", "threads", "timeout", "retry_failed", "quiet", "script",
                     "exe", "args", "logs", "poll", "leaderboard" }

local function normalize(o)
  if type(o) ~= "table" then fail("expected an option table, got %s", type(o)) end
  check_opts("fvl.sweep", o, sweep_opts)
  local S = {}
  if o.name ~= nil and type(o.name) ~= "string" then fail("name must be a string, got %s", type(o.name)) end
  if o.store ~= nil and type(o.store) ~= "string" then fail("store must be a path, got %s", type(o.store)) end
  if not o.name and not o.store then fail("give name= or store=") end
  S.name = o.name or o.store:match("([^/]+)$"):gsub("%.[%w]+$", "")
  S.store = o.store or ("runs/" .. S.name .. ".sqlite")
  if type(o.trial) ~= "function" then fail("trial must be a function(cfg, report, info), got %s", type(o.trial)) end
  S.trial = o.trial
  S.strategy = o.strategy or "grid"
  if S.strategy ~= "grid" and S.strategy ~= "random" and S.strategy ~= "halving" then
    fail("strategy = '%s' (expected grid|random|halving)", tostring(S.strategy))
  end
  S.seed = o.seed == nil and 1 or o.seed
  if math.type(S.seed) ~= "integer" then fail("seed must be an integer, got %s", tostring(o.seed)) end
  if o.samples ~= nil and (math.type(o.samples) ~= "integer" or o.samples < 1) then
    fail("samples must be a positive integer, got %s", tostring(o.samples))
  end
  if S.strategy == "random" and not o.samples then fail("strategy 'random' needs samples = <number of trials>") end
  if S.strategy == "grid" and o.samples then fail("samples is for strategy 'random' or 'halving', not 'grid'") end
  S.samples = o.samples
  S.from = o.samples and "random" or "grid"
  S.mode = o.mode or "max"
  if S.mode ~= "max" and S.mode ~= "min" then fail("mode = '%s' (expected max|min)", tostring(S.mode)) end
  if o.metric ~= nil and type(o.metric) ~= "string" then fail("metric must be a string, got %s", type(o.metric)) end
  S.metric = o.metric
  if S.strategy == "halving" then
    if not S.metric then fail("strategy 'halving' needs metric = <name of a reported metric>") end
    local h = o.halving
    if type(h) ~= "table" then fail("strategy 'halving' needs halving = {rungs = {steps...}, eta = 3}") end
    check_opts("fvl.sweep: halving", h, { "rungs", "eta", "paused" })
    if type(h.rungs) ~= "table" or #h.rungs == 0 then fail("halving.rungs must be a list of steps, e.g. {100, 300}") end
    local prev = -math.huge
    for i, s in ipairs(h.rungs) do
      if math.type(s) ~= "integer" or s <= prev or s < 1 then
        fail("halving.rungs[%d] = %s (expected increasing positive integers)", i, tostring(s))
      end
      prev = s
    end
    local eta = h.eta == nil and 3 or h.eta
    if type(eta) ~= "number" or eta <= 1 then fail("halving.eta must be a number > 1, got %s", tostring(h.eta)) end
    local paused = h.paused == nil and 4 * math.max(1, math.type(o.workers) == "integer" and o.workers or 1) or h.paused
    if math.type(paused) ~= "integer" or paused < 0 then
      fail("halving.paused must be an integer >= 0 (trials kept waiting in memory), got %s", tostring(h.paused))
    end
    S.halving = { rungs = h.rungs, eta = eta, paused = paused }
  elseif o.halving ~= nil then
    fail("halving = {...} needs strategy = 'halving'")
  end
  S.workers = o.workers == nil and 1 or o.workers
  if math.type(S.workers) ~= "integer" or S.workers < 0 then
    fail("workers must be an integer >= 0, got %s", tostring(o.workers))
  end
  if S.workers == 0 and S.halving then fail("successive halving needs workers >= 1 (trials pause at rungs)") end
  S.threads = o.threads or math.max(1, sys.cpu_count() // math.max(1, S.workers))
  if math.type(S.threads) ~= "integer" or S.threads < 1 then
    fail("threads must be a positive integer, got %s", tostring(o.threads))
  end
  if o.timeout ~= nil and (type(o.timeout) ~= "number" or o.timeout <= 0) then
    fail("timeout must be a number of seconds > 0, got %s", tostring(o.timeout))
  end
  S.timeout = o.timeout
  S.retry_failed = o.retry_failed and true or false
  S.quiet = o.quiet and true or false
  S.logs = o.logs ~= false
  if o.poll ~= nil and (type(o.poll) ~= "number" or o.poll <= 0 or o.poll > 10) then
    fail("poll must be a number of seconds in (0, 10], got %s", tostring(o.poll))
  end
  S.poll = o.poll or 0.02
  S.leaderboard = o.leaderboard
  S.dims = normalize_space(o.space)
  make_configs(S)
  -- how to start a worker: this program, this script, these arguments
  local a = rawget(_G, "arg")
  S.exe = o.exe or sys.exe()
  S.script = o.script
  if S.script == nil and type(a) == "table" and type(a[0]) == "string" then
    -- no script (REPL, -e, stdin): the fvl program puts itself or "-" in arg[0]
    local real = sys.realpath(a[0])
    if real and real ~= sys.realpath(S.exe) and a[0] ~= "-" then S.script = a[0] end
  end
  S.args = o.args or {}
  if not o.args and S.script and type(a) == "table" then for i = 1, #a do S.args[i] = a[i] end end
  S.shard_i, S.shard_n = find_shard(o.shard)
  if S.shard_n then S.store = shard_path(S.store, S.shard_i, S.shard_n) end
  return S
end

function sweep.run(o)
  local S = normalize(o)
  local w = worker.parse_worker_env()
  if w then
    local mine = sys.realpath(S.store)
    if mine == w.store then worker.worker_main(S, w) end
    -- another sweep of the same script: do not run anything here
    local f = io.open(S.store, "rb")
    if not f then return {} end
    f:close()
    return sweep.load(S.store)
  end
  if S.workers == 0 then
    inline(S)
  else
    if not S.script then
      fail("workers re-run the script, but this call has no script file (REPL, -e or stdin); " ..
           "pass script = 'file.lua', or workers = 0 to run the trials in this process")
    end
    driver(S)
  end
  if not S.quiet and S.leaderboard ~= false then sweep.leaderboard(S.store, { top = 10 }) end
  local out = sweep.load(S.store)
  out.store = S.store   -- the store actually written (a shard's own file when sharded)
  return out
end

return setmetatable(sweep, { __call = function(_, o) return sweep.run(o) end })
