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
-- fvl.sweep.uniform(lo, hi) -> range: a value drawn uniformly from [lo, hi] (strategy "random" /
-- "halving"; seeded by the sweep's seed). Errors: lo > hi or non-finite bounds.
function sweep.uniform(lo, hi)
  check_bounds("uniform", lo, hi)
  return setmetatable({ kind = "uniform", lo = lo, hi = hi }, Range)
end
-- fvl.sweep.loguniform(lo, hi) -> range: log-uniform in [lo, hi] (learning rates, weight decays).
-- Errors: lo <= 0, lo > hi.
function sweep.loguniform(lo, hi)
  check_bounds("loguniform", lo, hi)
  if lo <= 0 then error("fvl.sweep.loguniform: lo must be > 0, got " .. tostring(lo), 2) end
  return setmetatable({ kind = "loguniform", lo = lo, hi = hi }, Range)
end
-- fvl.sweep.int(lo, hi) -> range: a uniform integer in lo..hi (in a grid: every integer).
-- Errors: bounds that are not integers, lo > hi.
function sweep.int(lo, hi)
  check_bounds("int", lo, hi)
  if math.type(lo) ~= "integer" or math.type(hi) ~= "integer" then
    error(string.format("fvl.sweep.int: expected integers, got %s, %s", tostring(lo), tostring(hi)), 2)
  end
  return setmetatable({ kind = "int", lo = lo, hi = hi }, Range)
end
-- fvl.sweep.choice{v1, v2, ...} -> choice: an explicit list of choices for a space key (needed when
-- the values are themselves lists: space = {sizes = fvl.sweep.choice{{256, 64}, {512, 128}}}).
-- Errors: an empty list or not a table.
function sweep.choice(values)
  if type(values) ~= "table" or #values == 0 then
    error("fvl.sweep.choice: expected a non-empty list of values, got " .. type(values), 2)
  end
  return setmetatable({ values = values }, Choice)
end
-- fvl.sweep.named(label, value) -> named value: a value (a schedule, a function, a table) stored
-- and printed as `label`, e.g. fvl.sweep.named("cosine", fvl.schedule.cosine{...}); the trial
-- gets the value itself. Errors: label not a string.
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
-- The number of shards is a property of the sweep (shards = N, --shards N, or the N of
-- shard = "i/N" / --shard i/N); the shard itself is i, or the Slurm array task id. Never inferred
-- from the size of the array: any subset or stride of ids works, and one id resubmitted alone
-- resumes exactly its shard.
local function is_url(store) return type(store) == "string" and store:match("^postgres[q]?[l]?://") ~= nil end
sweep.is_shared_store = is_url
--- @doc fvl.sweep.is_shared_store(store) -> boolean
--- Whether store names a shared (PostgreSQL, postgres://...) store rather than an SQLite file.

local function parse_shard(s, where)
  local i, n = tostring(s):match("^%s*(%d+)%s*/%s*(%d+)%s*$")
  i, n = tonumber(i), tonumber(n)
  if not i or n < 1 or i > n then
    fail("%s = '%s' (expected i/N with 0 <= i <= N, e.g. 0/4 or 4/4)", where, tostring(s))
  end
  return math.tointeger(i % n), math.tointeger(n)
end

local function parse_count(v, where)
  local n = math.tointeger(tonumber(v))
  if not n or n < 1 then fail("%s = '%s' (expected a positive integer number of shards)", where, tostring(v)) end
  return n
end

-- -> shard index (0..N-1), shard count, where they came from; nil when not sharded
local function find_shard(o, shared)
  local shard, shard_from, count, count_from = o.shard, o.shard ~= nil and "shard" or nil, nil, nil
  if o.shards ~= nil then count, count_from = parse_count(o.shards, "shards"), "shards" end
  local a = rawget(_G, "arg")
  if type(a) == "table" then
    for i = 1, #a do
      local v = a[i]
      if v == "--shard" then shard, shard_from = a[i + 1], "--shard"
      elseif type(v) == "string" and v:match("^%-%-shard=") then shard, shard_from = v:match("^%-%-shard=(.*)$"), "--shard"
      elseif v == "--shards" then count, count_from = parse_count(a[i + 1], "--shards"), "--shards"
      elseif type(v) == "string" and v:match("^%-%-shards=") then
        count, count_from = parse_count(v:match("^%-%-shards=(.*)$"), "--shards"), "--shards"
      end
    end
  end
  local task = os.getenv("SLURM_ARRAY_TASK_ID")
  if shared then
    if shard or count then
      fail("%s: a PostgreSQL store is shared by every worker on every machine; drop %s (no shards, " ..
           "no merge: every array task joins the one sweep)", shared, shard_from or count_from)
    end
    return nil
  end
  if shard then
    local i, n = parse_shard(shard, shard_from)
    if count and count ~= n then
      fail("%s = '%s' says %d shards but %s = %d", shard_from, tostring(shard), n, count_from, count)
    end
    return i, n, shard_from
  end
  if count then
    if not task then
      fail("%s = %d but no shard to run: pass --shard i/%d (0 <= i < %d) or run it as a Slurm array task " ..
           "(sbatch --array=0-%d)", count_from, count, count, count, count - 1)
    end
    local id = math.tointeger(tonumber(task))
    if not id or id < 0 or id > count then
      fail("SLURM_ARRAY_TASK_ID = %s is not a shard of %s = %d (expected 0..%d, or 1..%d; " ..
           "submit with --array=0-%d)", task, count_from, count, count - 1, count, count - 1)
    end
    return id % count, count, "SLURM_ARRAY_TASK_ID=" .. task
  end
  if task then
    fail("this is Slurm array task %s, but the sweep does not say how many shards it has: give " ..
         "shards = N in fvl.sweep{} or --shards N on the command line (the array's ids are then the " ..
         "shards 0..N-1), or use a shared PostgreSQL store (store = 'postgresql://...') that every " ..
         "task joins", task)
  end
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
sweep.spread = report.spread   -- mean ± std over seeds of each configuration

-- fvl.sweep.is_worker() -> boolean: whether this process is a sweep worker running one trial (a
-- script can skip its printing or plotting there).
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

-- a trial that is not final: it will run (again), or it is running or waiting somewhere
local function live(S, t, retry_before)
  if t.status == "pending" or t.status == "running" then return true end
  if t.status == "failed" then
    if t.killed and t.attempt < S.max_attempts then return true end
    if retry_before and t.ended and t.ended < retry_before then return true end
  end
  return false
end

-- rung r's candidates: trials in the race at rung r-1; nil when some of them have not arrived
local function rung_waiting(S, rows, r, retry_before)
  local waiting = {}
  for _, t in ipairs(rows) do
    if live(S, t, retry_before) and t.rung == r - 1 then
      -- waiting: paused in its worker (running) or parked without a process (pending)
      if (t.status == "running" or t.status == "pending") and t.wait_rung == r then
        waiting[#waiting + 1] = t
      else
        return nil, true
      end
    end
  end
  return waiting, false
end

-- successive halving: decide every rung whose candidates are all waiting (or out). The decision
-- is taken in one transaction on rows read inside it, so drivers sharing a store (on any number
-- of machines) decide each rung once, over all its trials.
local function decide_rungs(S, st, rows, retry_before, say)
  local R = #S.halving.rungs
  local gt = better(S.mode)
  for r = 1, R do
    local decided = st:meta("rung." .. r)
    local waiting, blocked = rung_waiting(S, rows, r, retry_before)
    if decided then
      local d = dec(decided)
      for _, t in ipairs(waiting or {}) do
        local v = t.wait_value
        if v ~= nil and (v == d.cutoff or gt(v, d.cutoff)) then st:promote(t.id, r)
        else
          local last = st:reports(t.id)
          st:prune(t.id, r, #last > 0 and last[#last].metrics or nil)
          say(string.format("rung %d: trial %d pruned late (%s %s vs cutoff %s)", r, t.id, S.metric,
                            fmt_num(v), fmt_num(d.cutoff)))
        end
      end
    elseif waiting and #waiting > 0 then
      st:begin()
      local ok, err, keep, n, cutoff = pcall(function()
        if st:meta("rung." .. r) then return "decided" end   -- another driver, a moment ago
        local w = rung_waiting(S, st:trials(), r, retry_before)
        if not w or #w == 0 then return "not yet" end
        table.sort(w, function(a, b)
          local va, vb = a.wait_value, b.wait_value
          if va == nil or vb == nil then
            if va == vb then return a.id < b.id end
            return va ~= nil
          end
          if va == vb then return a.id < b.id end
          return gt(va, vb)
        end)
        local keep = math.max(1, math.floor(#w / S.halving.eta))
        for i, t in ipairs(w) do
          if i <= keep then st:promote(t.id, r)
          else
            local last = st:reports(t.id)
            st:prune(t.id, r, #last > 0 and last[#last].metrics or nil)
          end
        end
        st:meta("rung." .. r, enc({ cutoff = w[keep].wait_value, n = #w, keep = keep }))
        return "ok", keep, #w, w[keep].wait_value
      end)
      if not ok then st:rollback(); error(err, 0) end
      if err ~= "ok" then st:rollback(); break end
      st:commit()
      say(string.format("rung %d (step %d): %d of %d trials go on (%s %s %s)", r, S.halving.rungs[r], keep, n,
                        S.metric, S.mode == "min" and "<=" or ">=", fmt_num(cutoff)))
      return decide_rungs(S, st, st:trials(), retry_before, say)
    end
    if not decided and (blocked or (waiting and #waiting > 0)) then break end
  end
end

-- the store as workers are told it: the URL, or the file's absolute path (once its directory exists)
local function store_identity(S)
  if S.shared then return S.store end
  local dir, file = S.store:match("^(.*)/([^/]*)$")
  if not dir then dir, file = ".", S.store end
  local real = sys.realpath(dir == "" and "/" or dir)
  return real and (real:gsub("/$", "") .. "/" .. file) or S.store
end

-- opens the store, checks that it holds this sweep, records the sweep and its trials
local function open_sweep(S)
  if not is_url(S.store) then
    local dir = S.store:match("^(.*)/[^/]*$")
    if dir and dir ~= "" then sys.mkdirs(dir) end
  end
  local st = fvl.store.open(S.store)
  local fp = fingerprint(S)
  st:begin()
  local ok, err = pcall(function()
    local old = st:meta("fingerprint")
    if old and old ~= fp then
      fail("%s holds a different sweep (name %s): its space, strategy, seed or halving differ from " ..
           "this call's — use another store or delete it\n  stored: %s\n  now:    %s", S.store_text,
           S.name, old, fp)
    end
    if not old then
      st:meta("fingerprint", fp)
      st:meta("name", S.name)
      st:meta("strategy", S.strategy)
      if S.metric then st:meta("metric", S.metric) end
      st:meta("mode", S.mode)
      st:meta("total", tostring(S.total))
    end
    for id = 1, S.total do
      if not S.shard_n or (id - S.shard_i) % S.shard_n == 0 then
        local _, labels = S.config_of(id)
        local text = enc(labels)
        if not st:add_trial(id, text, trial_seed(S.seed, id)) then
          local row = st:trial(id)
          if row.config ~= text then
            error(string.format("fvl.sweep: %s: trial %d's stored config %s differs from %s", S.store_text, id,
                                row.config, text), 0)
          end
        end
      end
    end
  end)
  if ok then st:commit() else st:rollback(); st:close(); error(err, 0) end
  return st
end

-- ------------------------------------------------------------------ the driver
-- One driver's state D: S (the sweep), st (its store), active (pid -> worker {id, attempt, t0,
-- log, timed_out, parked, lost, interrupted}), nactive, rows (the trials last read), say, host,
-- me (our pid), retry_before. The functions below are the steps of its polling loop.

-- trials whose worker died with its driver on this host run again right away; elsewhere (another
-- machine) they run again when their lease expires. Returns the rows, the finished count and
-- the count running under other drivers.
local function recover_orphans(D)
  local S, st = D.S, D.st
  local rows = st:trials()
  local nfinal, nrunning = 0, 0
  for _, row in ipairs(rows) do
    if row.status == "running" and row.host == D.host and row.pid ~= D.me and not (row.pid > 0 and sys.alive(row.pid)) then
      st:finish_trial(row.id, row.attempt, "failed", nil, "worker gone (its driver was killed)", true)
    elseif row.status == "running" then
      nrunning = nrunning + 1
    elseif not live(S, row, D.retry_before) then
      nfinal = nfinal + 1
    end
  end
  return rows, nfinal, nrunning
end

-- starts a worker process for (id, attempt): the user's script again, with WORKER_ENV set
local function launch(D, id, attempt)
  local S, st = D.S, D.st
  local logpath = S.logdir and string.format("%s/trial-%d.log", S.logdir, id) or nil
  if logpath then
    local f = io.open(logpath, "a")
    if f then
      f:write(string.format("=== trial %d attempt %d, %s on %s, %d thread%s (%s) ===\n", id, attempt,
                            os.date("!%Y-%m-%d %H:%M:%SZ"), D.host, S.threads, S.threads == 1 and "" or "s",
                            S.threads_from))
      f:close()
    end
  end
  local argv = { S.exe, S.script }
  for _, a in ipairs(S.args) do argv[#argv + 1] = a end
  local env = {
    [WORKER_ENV] = string.format("%d:%d:%s", id, attempt, S.store_id),
    FVL_SWEEP_THREADS = tostring(S.threads),
    FVL_SWEEP_LOG = logpath or "",
    OMP_NUM_THREADS = tostring(S.threads),
    OPENBLAS_NUM_THREADS = tostring(S.threads),
  }
  local ok, pid = pcall(sys.spawn, S.exe, argv, env, logpath)
  if not ok then
    st:finish_trial(id, attempt, "failed", nil, tostring(pid), false)
    error(pid, 0)
  end
  st:set_pid(id, attempt, pid)
  D.active[pid] = { id = id, attempt = attempt, t0 = sys.time(), log = logpath }
  D.nactive = D.nactive + 1
end

-- a worker process ended: a trial it left running failed (why, from its exit); says the result
local function on_exit(D, w, code, sig)
  local S, st = D.S, D.st
  local row = st:trial(w.id)
  -- a worker that left a rung's queue (parked) or an attempt that is no longer current
  if row.attempt ~= w.attempt or (row.status == "pending" and row.wait_rung > 0) then return end
  if row.status == "running" then
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
            S.store_text .. " when run again?)"
    end
    st:finish_trial(w.id, w.attempt, "failed", nil, msg .. (killed and "" or log_tail(w.log)), killed)
    row = st:trial(w.id)
  end
  local what
  if row.status == "failed" then what = "FAILED: " .. tostring(row.error):match("^[^\n]*")
  else what = row.status .. "  " .. metric_text(dec(row.metrics), S.metric) end
  D.say(string.format("[trial %d of %d] %s  %s  (%.1f s)", w.id, #D.rows, what,
                      config_text(dec(row.config)), sys.time() - w.t0))
end

-- our workers that ended, and those past their timeout
local function reap(D)
  for pid, w in pairs(D.active) do
    local done, code, sig = sys.poll(pid)
    if done then
      D.active[pid] = nil
      D.nactive = D.nactive - 1
      on_exit(D, w, code, sig)
    elseif D.S.timeout and sys.time() - w.t0 > D.S.timeout and not w.timed_out then
      w.timed_out = true
      sys.kill(pid, "KILL")
    end
  end
end

-- heartbeats (every lease/4): our trials' leases; a trial taken from us (this driver stalled past
-- its lease and another driver re-ran it) stops here
local function heartbeats(D)
  if sys.time() - D.last_beat < D.S.lease / 4 then return end
  D.last_beat = sys.time()
  for pid, w in pairs(D.active) do
    if not w.parked and not w.lost and not D.st:heartbeat(w.id, w.attempt, D.S.lease) then
      local r = D.st:trial(w.id)
      if r and r.attempt ~= w.attempt then
        w.lost = true
        sys.kill(pid, "KILL")
      end
    end
  end
end

-- halving: at most halving.paused trials wait at a rung with their process (memory); the worst of
-- the others are parked: the worker exits, the trial waits as 'pending' with its rung value, and
-- runs again from step 0 if promoted (claimed first, best first)
local function park_extra(D, byid)
  local S = D.S
  local alive = {}
  for _, w in pairs(D.active) do
    local r = byid[w.id]
    if not w.parked and r and r.attempt == w.attempt and r.status == "running" and r.wait_rung > 0
       and r.rung < r.wait_rung then
      alive[#alive + 1] = { w = w, v = r.wait_value, rung = r.wait_rung }
    end
  end
  if #alive <= S.halving.paused then return end
  local gt = better(S.mode)
  table.sort(alive, function(a, b)
    if a.rung ~= b.rung then return a.rung > b.rung end
    if a.v ~= nil and b.v ~= nil and a.v ~= b.v then return gt(a.v, b.v) end
    return a.w.id < b.w.id
  end)
  for i = S.halving.paused + 1, #alive do
    local w = alive[i].w
    if D.st:park(w.id, w.attempt) then w.parked = true end
  end
end

-- fills the free worker slots: promoted trials waiting at a rung go on first (best first), then
-- claims (promoted parked ones first, then by id; a claim is one row taken under a lock, so any
-- number of drivers on this store never take the same trial twice). Returns whether it claimed.
local function fill_slots(D)
  local S, st = D.S, D.st
  D.rows = st:trials()
  local byid = {}
  for _, r in ipairs(D.rows) do byid[r.id] = r end
  -- waiting (paused at a rung) workers do not count against `workers`
  local busy, ready = 0, {}
  for _, w in pairs(D.active) do
    local r = byid[w.id]
    if w.parked then
      -- its process is on its way out
    elseif not (r and r.status == "running" and r.attempt == w.attempt and r.wait_rung > 0) then busy = busy + 1
    elseif r.rung >= r.wait_rung then ready[#ready + 1] = r.id end   -- promoted, not yet released
  end
  if S.halving then park_extra(D, byid) end
  table.sort(ready, function(a, b)
    local va, vb = byid[a].wait_value, byid[b].wait_value
    if va ~= nil and vb ~= nil and va ~= vb then return better(S.mode)(va, vb) end
    return a < b
  end)
  for _, id in ipairs(ready) do
    if busy >= S.workers then break end
    if st:release(id) then busy = busy + 1 end
  end
  local claimed = false
  while busy < S.workers do
    local id, attempt = st:claim(D.me, S.lease, S.max_attempts, D.retry_before or -1, S.mode == "min" and -1 or 1)
    if not id then break end
    claimed = true
    launch(D, id, attempt)
    busy = busy + 1
  end
  return claimed
end

-- the polling loop: returns when every trial is final
local function drive(D)
  local S, st = D.S, D.st
  while true do
    reap(D)
    heartbeats(D)
    local claimed = fill_slots(D)
    if S.halving then decide_rungs(S, st, claimed and st:trials() or D.rows, D.retry_before, D.say) end
    if D.nactive == 0 and not claimed then
      -- done when every trial is final; otherwise others run or will run some: wait for them
      -- (a trial whose driver died is claimed when its lease expires)
      local open = 0
      for _, r in ipairs(st:trials()) do if live(S, r, D.retry_before) then open = open + 1 end end
      if open == 0 then return end
    end
    -- through pcall, so that the fvl program's Ctrl-C hook fires in here (it raises
    -- "interrupted" at the next Lua instruction) and not in the clean-up of stop_workers
    local ok, e = pcall(sys.sleep, D.nactive > 0 and S.poll or math.max(S.poll, math.min(0.25, S.lease / 8)))
    if not ok then error(e, 0) end
  end
end

-- the loop raised (Ctrl-C, a store error): stop our workers; their trials run again on the next call
local function stop_workers(D, err)
  sys.abort_clear()
  for pid, w in pairs(D.active) do
    w.interrupted = true
    pcall(sys.kill, pid, "KILL")
  end
  for pid, w in pairs(D.active) do
    for _ = 1, 200 do
      local ok2, done = pcall(sys.poll, pid)
      if not ok2 or done then break end
      sys.abort_clear()
      pcall(sys.sleep, 0.01)
    end
    pcall(D.st.finish_trial, D.st, w.id, w.attempt, "failed", nil, "interrupted (the driver stopped)", true)
  end
  D.st:close()
  if tostring(err):find("interrupted", 1, true) then
    error(string.format("fvl.sweep: interrupted; %d running trial(s) stopped — run the sweep again to resume",
                        D.nactive), 0)
  end
  error(err, 0)
end

local function driver(S)
  local st = open_sweep(S)
  S.store_id = store_identity(S)
  local D = { S = S, st = st, active = {}, nactive = 0, host = sys.hostname(), me = sys.getpid(),
              say = S.quiet and function() end or function(s) io.write(s, "\n"); io.flush() end }
  D.retry_before = S.retry_failed and st:now() or nil
  local rows, nfinal, nrunning = recover_orphans(D)
  D.rows = rows
  D.say(string.format("sweep %s: %d trials (%s%s), %d finished%s; %d worker%s x %d thread%s (%s); store %s",
                      S.name, #rows, S.strategy, S.shard_n and string.format(", shard %d of %d (%s) of %d trials",
                      S.shard_i, S.shard_n, S.shard_from, S.total) or "", nfinal,
                      nrunning > 0 and string.format(", %d running elsewhere", nrunning) or "", S.workers,
                      S.workers == 1 and "" or "s", S.threads, S.threads == 1 and "" or "s", S.threads_from,
                      S.store_text))
  if S.logdir then sys.mkdirs(S.logdir) end
  local t0 = sys.time()
  D.last_beat = t0
  local ok, err = pcall(drive, D)
  if not ok then stop_workers(D, err) end
  st:close()
  D.say(string.format("sweep %s: finished in %.1f s", S.name, sys.time() - t0))
end

-- inline: trials run one after the other in this process (REPL, debugging)
local function inline(S)
  local st = open_sweep(S)
  local me = sys.getpid()
  for _, row in ipairs(st:trials()) do
    local id = row.id
    if row.status == "pending" or (row.status == "running" and not (row.pid > 0 and row.pid ~= me and
        row.host == sys.hostname() and sys.alive(row.pid))) or
       (row.status == "failed" and (row.killed or S.retry_failed)) then
      local attempt = st:start_trial(id, me, row.attempt)
      if attempt > 0 then st:heartbeat(id, attempt, S.lease) end   -- renewed at each report
      local res = attempt > 0 and run_trial(S, st, id, attempt, nil, nil, true) or "claimed elsewhere"
      if not S.quiet then
        local r = st:trial(id)
        print(string.format("trial %d %s  %s  %s", id, res, metric_text(dec(r.metrics), S.metric),
                            config_text(dec(r.config))))
      end
    end
  end
  st:close()
end

-- ---------------------------------------------------------------- fvl.sweep{...}
local sweep_opts = { "name", "space", "trial", "workers", "store", "strategy", "samples", "seed", "metric",
                     "mode", "halving", "shard", "shards", "threads", "timeout", "retry_failed", "quiet",
                     "script", "exe", "args", "logs", "poll", "leaderboard", "lease" }

-- normalize(o) -> S, the checked sweep, in four parts: the store, the strategy, the workers and
-- the way a worker starts

-- name, store (SQLite path or postgresql:// URL with the sweep's schema); returns whether it is a URL
local function normalize_store(S, o)
  if o.name ~= nil and type(o.name) ~= "string" then fail("name must be a string, got %s", type(o.name)) end
  if o.store ~= nil and type(o.store) ~= "string" then
    fail("store must be a path or a postgresql:// URL, got %s", type(o.store))
  end
  if not o.name and not o.store then fail("give name= or store=") end
  local url = is_url(o.store)
  if url and not o.name and not o.store:find("#", 1, true) then
    fail("a PostgreSQL store needs the sweep's name= (it names the sweep's schema in the database)")
  end
  S.name = o.name or (url and o.store:match("#(.*)$")) or o.store:match("([^/]+)$"):gsub("%.[%w]+$", "")
  S.store = o.store or ("runs/" .. S.name .. ".sqlite")
  -- a PostgreSQL store keeps each sweep in its own schema: <url>#<name>
  if url and not S.store:find("#", 1, true) then S.store = S.store .. "#" .. S.name end
  S.shared = url
  return url
end

-- strategy (grid, random with samples, halving with its rungs), seed, mode, metric
local function normalize_strategy(S, o)
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
end

-- workers, threads per worker, lease, timeout, retries, logs, polling
local function normalize_workers(S, o)
  S.workers = o.workers == nil and 1 or o.workers
  if math.type(S.workers) ~= "integer" or S.workers < 0 then
    fail("workers must be an integer >= 0, got %s", tostring(o.workers))
  end
  if S.workers == 0 and S.halving then fail("successive halving needs workers >= 1 (trials pause at rungs)") end
  if o.threads ~= nil then
    S.threads, S.threads_from = o.threads, "threads = " .. tostring(o.threads)
  else
    -- the CPUs this process may use (affinity ∩ SLURM_CPUS_PER_TASK ∩ OMP_NUM_THREADS), divided
    local n, from = sys.cpus()
    local w = math.max(1, S.workers)
    S.threads = math.max(1, n // w)
    S.threads_from = w > 1 and string.format("%s, / %d workers", from, w) or from
  end
  if math.type(S.threads) ~= "integer" or S.threads < 1 then
    fail("threads must be a positive integer, got %s", tostring(o.threads))
  end
  if o.lease ~= nil and (type(o.lease) ~= "number" or o.lease < 0.2) then
    fail("lease must be a number of seconds >= 0.2 (a dead driver's trials run again after it), got %s",
         tostring(o.lease))
  end
  S.lease = o.lease or 30
  if o.timeout ~= nil and (type(o.timeout) ~= "number" or o.timeout <= 0) then
    fail("timeout must be a number of seconds > 0, got %s", tostring(o.timeout))
  end
  S.timeout = o.timeout
  S.retry_failed = o.retry_failed and true or false
  S.quiet = o.quiet and true or false
  if o.logs ~= nil and type(o.logs) ~= "boolean" and type(o.logs) ~= "string" then
    fail("logs must be true, false or a directory, got %s", type(o.logs))
  end
  S.logs = o.logs ~= false
  if o.poll ~= nil and (type(o.poll) ~= "number" or o.poll <= 0 or o.poll > 10) then
    fail("poll must be a number of seconds in (0, 10], got %s", tostring(o.poll))
  end
  S.poll = o.poll or 0.02
end

-- how to start a worker (this program, this script, these arguments), the shard of the trials
-- this task runs, and how the store is shown and where the logs go
local function normalize_launch(S, o, url)
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
  S.shard_i, S.shard_n, S.shard_from = find_shard(o, url and S.store)
  if S.shard_n then
    S.store = shard_path(S.store, S.shard_i, S.shard_n)
    if S.halving then
      fail("successive halving over SQLite shards would prune within each shard (a different experiment " ..
           "from the whole sweep, with other finalists); run every task on one shared store instead: " ..
           "a PostgreSQL store (store = 'postgresql://host/db', no shards) for several machines, or one " ..
           "SQLite file without shards on one machine")
    end
  end
  S.max_attempts = 10 + (S.halving and #S.halving.rungs or 0)
  -- how the store is shown (no password) and named to workers (an absolute path)
  S.store_text = url and S.store:gsub("(//[^/:@]*:)[^@/]*@", "%1***@") or S.store
  if S.logs then
    S.logdir = type(o.logs) == "string" and o.logs or url and ("runs/" .. S.name .. ".logs")
               or (S.store:gsub("%.[%w]+$", "") .. ".logs")
  end
end

local function normalize(o)
  if type(o) ~= "table" then fail("expected an option table, got %s", type(o)) end
  check_opts("fvl.sweep", o, sweep_opts)
  local S = {}
  local url = normalize_store(S, o)
  if type(o.trial) ~= "function" then fail("trial must be a function(cfg, report, info), got %s", type(o.trial)) end
  S.trial = o.trial
  normalize_strategy(S, o)
  normalize_workers(S, o)
  S.leaderboard = o.leaderboard
  S.dims = normalize_space(o.space)
  make_configs(S)
  normalize_launch(S, o, url)
  return S
end

-- fvl.sweep.run(opts) (or fvl.sweep(opts)) -> trials: runs a sweep (see the module header: name,
-- space, trial = function(cfg, report, info) returning a metrics table, workers, store, strategy
-- = "grid"|"random"|"halving", samples, seed, metric, mode, halving, shard, threads, timeout,
-- retry_failed, quiet): every trial in its own worker process (this script re-run with
-- FVL_SWEEP_WORKER set), results in the store, finished trials never re-run; returns the list of
-- trials as fvl.sweep.load. Errors: unknown options, an empty space, a store of another sweep.
function sweep.run(o)
  local S = normalize(o)
  local w = worker.parse_worker_env()
  if w then
    if store_identity(S) == w.store then worker.worker_main(S, w) end
    -- another sweep of the same script: do not run anything here
    if not S.shared then
      local f = io.open(S.store, "rb")
      if not f then return {} end
      f:close()
    end
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
