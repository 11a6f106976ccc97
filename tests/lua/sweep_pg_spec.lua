-- fvl.sweep on a shared PostgreSQL store: a throw-away cluster (initdb + pg_ctl in a temporary
-- directory, unix socket only, as 'nobody' when run as root), two drivers and kill -9 of
-- workers (and of a driver) at random moments; every trial exactly once with its metrics, and
-- global successive halving equal to the single-machine sweep.
local fvl = fvl or require "fvl"
local sys = fvl.sys
local json = fvl.json
local U = dofile(TEST_DIR .. "/lua/sweep/util.lua")("sweep_pg_spec")
local path, start, wait, run = U.path, U.start, U.wait, U.run

local cluster = U.tmp .. "/pg"
local p = io.popen(string.format("bash '%s/lua/sweep/pgcluster.sh' start '%s' 2>&1; echo \"rc=$?\"", TEST_DIR, cluster))
local out = p:read("a")
p:close()
local rc = tonumber(out:match("rc=(%d+)%s*$"))
local url = rc == 0 and out:match("(postgresql://%S+)")
if rc == 77 then
  print("SKIP sweep_pg_spec: " .. out:gsub("rc=%d+%s*$", ""):gsub("%s+$", ""))
  U.cleanup()
  return
end
assert(url, "cannot start a PostgreSQL cluster for the test:\n" .. out)

-- kills -9 running workers (never the drivers) at random moments while the drivers run
local function killer(store, drivers, nkills, also_driver)
  local st = fvl.store.open(store)
  local mine = {}
  for _, d in ipairs(drivers) do mine[d] = true end
  local kills, killed_driver, t0 = 0, nil, sys.time()
  math.randomseed(os.time())
  -- sys.poll reaps: keep the exit status of every driver
  local status = {}
  local function running_drivers()
    local n = 0
    for _, d in ipairs(drivers) do
      if status[d] == nil then
        local done, code, sig = sys.poll(d)
        if done then status[d] = { code, sig } else n = n + 1 end
      end
    end
    return n
  end
  -- kills while the drivers run (the driver first, once a trial runs: while any trial is open no
  -- driver exits, so the kill always finds it mid-sweep), for at most 60 s of a very slow machine
  while running_drivers() > 0 and sys.time() - t0 < 60 do
    sys.sleep(0.05 + math.random() * 0.25)
    local victims = {}
    for _, t in ipairs(st:trials()) do
      if t.status == "running" and t.pid > 0 and not mine[t.pid] and sys.alive(t.pid) then victims[#victims + 1] = t end
    end
    if also_driver and not killed_driver and #victims >= 1 then
      killed_driver = drivers[2]
      sys.kill(killed_driver, "KILL")
    elseif kills < nkills and #victims > 0 then
      sys.kill(victims[math.random(#victims)].pid, "KILL")
      kills = kills + 1
    end
  end
  st:close()
  -- then the drivers' ends, whenever they come (every status is read below): a condition, not a time
  while running_drivers() > 0 do sys.sleep(0.05) end
  if os.getenv("FVL_TEST_VERBOSE") then print(string.format("\n%d workers killed, driver %s killed", kills, tostring(killed_driver))) end
  return kills, killed_driver, status
end

describe("fvl.sweep on PostgreSQL", function()
  it("two drivers, workers killed at random moments and a driver killed: every trial once, with its metrics", function()
    local store = url .. "#slow"
    local a = start("slow.lua", { store, "0.06", "1" }, nil, "slow-a")
    local b = start("slow.lua", { store, "0.06", "1" }, nil, "slow-b")
    local kills, dead, status = killer(store, { a, b }, 4, true)
    expect_true(kills >= 1, "some workers were killed")
    expect_eq(status[dead][2], "SIGKILL", "driver " .. tostring(dead) .. " was killed")
    expect_eq(status[a][1], 0, U.log("slow-a"))
    local t = fvl.sweep.load(store, { reports = true })
    expect_eq(#t, 8)
    local reran = 0
    for _, x in ipairs(t) do
      expect_eq(x.status, "done", "trial " .. x.id .. ": " .. tostring(x.error))
      expect_eq(x.metrics.score, x.config.a * x.config.b, "metrics of trial " .. x.id)
      expect_eq(#x.reports, 5, "reports of trial " .. x.id .. " (the final attempt's, once each)")
      for i, r in ipairs(x.reports) do expect_eq(r.step, i) end
      if x.attempt > 1 then reran = reran + 1 end
    end
    expect_true(reran >= 1, "killed trials ran again")
  end)

  it("successive halving decided globally by two drivers equals the single-machine sweep, despite kills", function()
    run("halving.lua", { path("single.sqlite"), "0.01" })
    local store = url .. "#halving"
    local a = start("halving.lua", { store, "0.05", "", "1" }, nil, "halving-a")
    local b = start("halving.lua", { store, "0.05", "", "1" }, nil, "halving-b")
    local kills, _, status = killer(store, { a, b }, 3, false)
    expect_eq(status[a][1], 0, U.log("halving-a"))
    expect_eq(status[b][1], 0, U.log("halving-b"))
    local single, shared = {}, {}
    for _, x in ipairs(fvl.sweep.load(path("single.sqlite"), { reports = true })) do single[x.id] = x end
    for _, x in ipairs(fvl.sweep.load(store, { reports = true })) do shared[x.id] = x end
    for id = 1, 9 do
      local s, g = single[id], shared[id]
      expect_eq(g.status, s.status, "status of trial " .. id .. " (" .. kills .. " kills)")
      expect_eq(json.encode(g.metrics), json.encode(s.metrics), "metrics of trial " .. id)
      expect_eq(#g.reports, #s.reports, "reports of trial " .. id)
    end
    local st = fvl.store.open(store)
    expect_eq(json.decode(st:meta("rung.1")).n, 9, "rung 1 decided over all 9 trials")
    expect_eq(json.decode(st:meta("rung.2")).n, 3)
    st:close()
    local rows = fvl.sweep.leaderboard(store, { print = false })
    expect_eq(rows[1].config.a, 9)
  end)

  it("refuses shards and merges into a shared store, and names no password", function()
    local log = run("shards.lua", { url .. "#shards", "--shards", "2" }, { SLURM_ARRAY_TASK_ID = "1" }, true)
    expect_true(log:find("a PostgreSQL store is shared by every worker on every machine; drop --shards", 1, true), log)
    expect_error(function() fvl.sweep.merge(url .. "#slow", { path("single.sqlite") }) end, "needs no merge")
    expect_error(function() fvl.sweep.load(url) end, "names no sweep")
    expect_error(function() fvl.store.open("postgresql://fvl:hunter2@/postgres?host=/nonexistent#x") end,
                 "postgresql://fvl:***@/postgres")
    -- array tasks without shards simply join the sweep: every trial once
    for _, id in ipairs({ 0, 1 }) do run("shards.lua", { url .. "#shards" }, { SLURM_ARRAY_TASK_ID = tostring(id) }) end
    local t = fvl.sweep.load(url .. "#shards")
    expect_eq(#t, 7)
    for _, x in ipairs(t) do expect_eq(x.attempt, 1, "trial " .. x.id) end
  end)
end)

os.execute(string.format("bash '%s/lua/sweep/pgcluster.sh' stop '%s'", TEST_DIR, cluster))
U.cleanup()
