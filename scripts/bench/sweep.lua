-- scripts/bench/sweep.lua — trials per minute of one sweep with 1, 2 and 4 driver processes
-- (one worker each) on one store, SQLite and PostgreSQL: the cost of claiming, starting a worker
-- process, reporting and recording a trial, and how it scales with processes sharing a store.
--
--   build/fvl scripts/bench/sweep.lua [--trials 48] [--sleep 0.25] [--procs 1,2,4] [--pg postgresql://...]
--
-- Two kinds of trial: empty (the sweep's own cost per trial: fork + exec of fvl, claim, report,
-- finish) and one that sleeps `sleep` seconds (ideal: procs × 60/sleep per minute, the ratio
-- shows the coordination cost). PostgreSQL: the URL in --pg, else a throw-away cluster started
-- here (initdb + pg_ctl in /tmp, unix socket; skipped when the server binaries are absent).
local fvl = fvl or require "fvl"
local sys = fvl.sys

local cli = require "fvl.cli"
local parser = cli.parser("fvl scripts/bench/sweep.lua",
  "Trials per minute of one sweep with 1, 2 and 4 driver processes on one store, SQLite and PostgreSQL.")
parser:option("--trials", "trials per sweep", "48"):convert(cli.integer("trials", 1))
parser:option("--sleep", "seconds a sleeping trial sleeps", "0.25"):convert(cli.number("sleep", 0))
parser:option("--procs", "driver processes, comma separated", "1,2,4")
parser:option("--pg", "a PostgreSQL URL (default: a throw-away cluster in /tmp)")
local args = parser:parse(arg or {})
local procs = {}
for p in tostring(args.procs):gmatch("%d+") do procs[#procs + 1] = math.tointeger(tonumber(p)) end
local here = (arg[0] or "scripts/bench/sweep.lua"):match("^(.*)/[^/]*$") or "."
local script = here .. "/sweep_trials.lua"
local exe = sys.exe()
local tmp = string.format("/tmp/fvl_bench_sweep.%d", sys.getpid())
sys.mkdirs(tmp)

local pg, cluster = args.pg, nil
if not pg then
  cluster = tmp .. "/pg"
  local p = io.popen(string.format("bash '%s/../../tests/lua/sweep/pgcluster.sh' start '%s' 2>&1", here, cluster))
  local out = p:read("a")
  p:close()
  pg = out:match("(postgresql://%S+)")
  if not pg then print("PostgreSQL skipped: " .. out:gsub("%s+$", "")) end
end

-- seconds for `n` drivers to finish the sweep on `store`
local function time_sweep(store, n, dt)
  local t0, pids = sys.time(), {}
  for i = 1, n do
    pids[i] = sys.spawn(exe, { exe, script, store, tostring(args.trials), tostring(dt) }, nil,
                        string.format("%s/driver-%d.log", tmp, i))
  end
  for _, pid in ipairs(pids) do
    while true do
      local done, code = sys.poll(pid)
      if done then
        if code ~= 0 then error("a driver failed: see " .. tmp .. "/driver-*.log", 0) end
        break
      end
      sys.sleep(0.01)
    end
  end
  local dtime = sys.time() - t0
  local t = fvl.sweep.load(store)
  local once = #t == args.trials
  for _, x in ipairs(t) do once = once and x.status == "done" and x.attempt == 1 end
  if not once then error("not every trial ran exactly once on " .. store, 0) end
  return dtime
end

print(string.format("sweep coordination: %d trials per sweep, one worker per driver process; %d CPUs, load average %s",
                    args.trials, (fvl.sys.cpus()), fvl.util.loadavg()))
print(string.format("%-11s %-8s %5s %10s %12s %7s", "store", "trial", "procs", "seconds", "trials/min", "ideal"))
local run = 0
for _, kind in ipairs({ "sqlite", "postgresql" }) do
  if kind == "sqlite" or pg then
    for _, dt in ipairs({ 0, args.sleep }) do
      for _, n in ipairs(procs) do
        run = run + 1
        local store = kind == "sqlite" and string.format("%s/s%d.sqlite", tmp, run) or string.format("%s#bench_%d_%d", pg, sys.getpid(), run)
        local secs = time_sweep(store, n, dt)
        local rate = args.trials / secs * 60
        print(string.format("%-11s %-8s %5d %10.2f %12.0f %7s", kind, dt > 0 and string.format("%gs", dt) or "empty",
                            n, secs, rate, dt > 0 and string.format("%.0f%%", 100 * rate / (n * 60 / dt)) or "-"))
      end
    end
  end
end
if cluster then os.execute(string.format("bash '%s/../../tests/lua/sweep/pgcluster.sh' stop '%s'", here, cluster)) end
os.execute("rm -rf '" .. tmp .. "'")
