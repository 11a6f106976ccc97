-- fvl.sweep: worker processes, the SQLite store, resume after kill -9, shards, halving, reports.
-- Drivers run as separate processes (`fvl tests/lua/sweep/<script>.lua ...`), as a user runs them.
local fvl = fvl or require "fvl"
local sys = fvl.sys
local U = dofile(TEST_DIR .. "/lua/sweep/util.lua")("sweep_spec")
local tmp, path, start, wait, run, by_id = U.tmp, U.path, U.start, U.wait, U.run, U.by_id

describe("fvl.sweep", function()
  it("records a raising, a NaN, a crashing, a bad and a hanging trial while the others finish", function()
    local store = path("mixed.sqlite")
    run("mixed.lua", { store })
    local t = by_id(fvl.sweep.load(store))
    -- grid order: kind as listed → ids 1..7 = ok raise nan abort bad fine hang (abort, not a segfault: ASan builds catch SIGSEGV)
    expect_eq(t[1].status, "done")
    expect_near(t[1].metrics.acc, 0.1, 1e-12)
    expect_eq(t[6].status, "done")
    expect_near(t[6].metrics.acc, 0.6, 1e-12)
    expect_eq(t[2].status, "failed")
    expect_true(t[2].error:find("lr too high for this batch", 1, true), "raise recorded: " .. tostring(t[2].error))
    expect_eq(t[2].metrics.acc, 0.5, "last report kept with the failure")
    expect_eq(t[3].status, "failed")
    expect_eq(t[3].error, "the trial returned NaN for 'acc'")
    expect_eq(t[4].status, "failed")
    expect_true(t[4].error:find("worker crashed: SIGABRT", 1, true), "crash recorded: " .. tostring(t[4].error))
    expect_eq(t[4].killed, nil, "a crash is not a kill: it is not re-run")
    expect_eq(t[5].status, "failed")
    expect_true(t[5].error:find("acc must be a number, string or boolean", 1, true), tostring(t[5].error))
    expect_eq(t[7].status, "failed")
    expect_true(t[7].error:find("timed out after 2 s", 1, true), tostring(t[7].error))
    expect_eq(t[7].killed, nil, "a timeout is not re-run")
    -- seeds: derived from the sweep seed and the trial id, each different
    expect_eq(t[1].metrics.seed, t[1].seed)
    expect_true(t[1].seed ~= t[6].seed)
    -- rerunning does not run failed trials again
    run("mixed.lua", { store })
    local again = by_id(fvl.sweep.load(store))
    for id = 1, 7 do expect_eq(again[id].attempt, t[id].attempt, "attempt of trial " .. id) end
  end)

  it("survives kill -9 of a worker and of the driver: the rerun finds every trial once", function()
    local store = path("slow.sqlite")
    local driver = start("slow.lua", { store, "0.08" })
    -- wait until some trials are done and two are running
    local st
    local t0 = sys.time()
    local victim
    while sys.time() - t0 < 20 do
      sys.sleep(0.05)
      local f = io.open(store)
      if f then
        f:close()
        st = st or fvl.store.open(store)
        local done, running = 0, {}
        for _, r in ipairs(st:trials()) do
          if r.status == "done" then done = done + 1 end
          if r.status == "running" and r.pid > 0 then running[#running + 1] = r end
        end
        if done >= 2 and #running >= 1 then victim = running[1]; break end
      end
    end
    expect_true(victim, "the sweep got going")
    sys.kill(victim.pid, "KILL")
    sys.sleep(0.15)
    sys.kill(driver, "KILL")
    local _, sig = wait(driver)
    expect_eq(sig, "SIGKILL")
    sys.sleep(0.2)   -- its workers die with it (PR_SET_PDEATHSIG)
    local before = by_id(fvl.sweep.load(store, { reports = true }))
    local finished_before = {}
    for id, t in pairs(before) do
      if t.status == "done" then finished_before[id] = t end
    end
    expect_true(next(finished_before) ~= nil, "some trials finished before the kill")
    expect_true(#st:trials() == 8, "the store is readable after kill -9")
    st:close()
    run("slow.lua", { store, "0.01" })
    local after = fvl.sweep.load(store, { reports = true })
    expect_eq(#after, 8)
    for _, t in ipairs(after) do
      expect_eq(t.status, "done", "trial " .. t.id)
      expect_eq(t.metrics.score, t.config.a * t.config.b, "metrics of trial " .. t.id)
      expect_eq(#t.reports, 5, "reports of trial " .. t.id .. " (once each)")
      for i, r in ipairs(t.reports) do expect_eq(r.step, i) end
      local b = finished_before[t.id]
      if b then
        expect_eq(t.attempt, b.attempt, "finished trial " .. t.id .. " not run again")
        expect_eq(t.ended, b.ended)
      end
    end
    expect_eq(by_id(after)[victim.id].attempt > victim.attempt, true, "the killed trial ran again")
  end)

  it("Ctrl-C of the driver stops its workers and marks their trials to run again", function()
    local store = path("sigint.sqlite")
    local driver = start("slow.lua", { store, "0.2" })
    local t0, pids = sys.time(), nil
    while sys.time() - t0 < 20 and not pids do
      sys.sleep(0.05)
      local f = io.open(store)
      if f then
        f:close()
        local st = fvl.store.open(store)
        local running = {}
        for _, r in ipairs(st:trials()) do
          if r.status == "running" and r.pid > 0 and r.pid ~= driver then running[#running + 1] = r.pid end
        end
        st:close()
        if #running == 2 then pids = running end
      end
    end
    expect_true(pids, "two workers running")
    sys.kill(driver, "INT")
    local code = wait(driver)
    expect_true(code ~= 0, "the driver reports the interruption")
    local f = io.open(path("slow.lua.log"))
    local log = f:read("a")
    f:close()
    expect_true(log:find("interrupted; 2 running trial(s) stopped", 1, true), log)
    for _, p in ipairs(pids) do expect_eq(sys.alive(p), false, "worker " .. p .. " stopped") end
    local killed = 0
    for _, t in ipairs(fvl.sweep.load(store)) do
      if t.status == "failed" then
        expect_eq(t.killed, true)
        expect_eq(t.error, "interrupted (the driver stopped)")
        killed = killed + 1
      end
    end
    expect_eq(killed, 2)
    run("slow.lua", { store, "0.01" })
    for _, t in ipairs(fvl.sweep.load(store)) do expect_eq(t.status, "done", "trial " .. t.id) end
  end)

  it("two drivers on one store share the trials without running any twice", function()
    local store = path("shared.sqlite")
    local a = start("slow.lua", { store, "0.02" }, nil, "shared_a")
    local b = start("slow.lua", { store, "0.02" }, nil, "shared_b")
    expect_eq(wait(a), 0, "driver a: " .. U.log("shared_a"))
    expect_eq(wait(b), 0, "driver b: " .. U.log("shared_b"))
    local t = fvl.sweep.load(store, { reports = true })
    expect_eq(#t, 8)
    local hosts = {}
    for _, x in ipairs(t) do
      expect_eq(x.status, "done", "trial " .. x.id)
      expect_eq(x.attempt, 1, "trial " .. x.id .. " ran once")
      expect_eq(#x.reports, 5)
    end
  end)

  it("the union of shards equals the unsharded sweep", function()
    local whole = path("whole.sqlite")
    run("shards.lua", { whole })
    run("shards.lua", { path("part.sqlite"), "--shard", "0/3" })
    run("shards.lua", { path("part.sqlite"), "--shard=1/3" })
    -- Slurm: the task id is the shard, the count comes from the sweep (here --shards), never the array
    run("shards.lua", { path("part.sqlite"), "--shards", "3" }, { SLURM_ARRAY_TASK_ID = "2", SLURM_ARRAY_TASK_COUNT = "1" })
    local parts = sys.glob(path("part.shard-*-of-3.sqlite"))
    expect_eq(#parts, 3)
    local ids = {}
    for _, t in ipairs(fvl.sweep.load(path("part.shard-1-of-3.sqlite"))) do ids[#ids + 1] = t.id end
    expect_eq(table.concat(ids, ","), "1,4,7", "shard 1/3 holds the ids = 1 mod 3")
    local n = fvl.sweep.merge(path("merged.sqlite"), path("part.shard-*-of-3.sqlite"))
    expect_eq(n, 7)
    local a, b = fvl.sweep.load(whole), fvl.sweep.load(path("merged.sqlite"))
    expect_eq(#a, 7)
    expect_eq(#b, #a)
    local json = fvl.json
    for i = 1, #a do
      expect_eq(b[i].id, a[i].id)
      expect_eq(b[i].status, "done")
      expect_eq(b[i].seed, a[i].seed)
      expect_eq(json.encode(b[i].config), json.encode(a[i].config))
      expect_eq(json.encode(b[i].metrics), json.encode(a[i].metrics), "metrics of trial " .. i)
    end
    -- random draws are inside their ranges; labels of functions are their names
    for _, t in ipairs(a) do
      expect_true(t.config.lr >= 1e-4 and t.config.lr <= 1e-1)
      expect_true(math.type(t.config.depth) == "integer" and t.config.depth >= 2 and t.config.depth <= 5)
      expect_true(t.config.schedule == "const" or t.config.schedule == "cosine")
    end
    expect_error(function() fvl.sweep.merge(path("merged.sqlite"), { path("mixed.sqlite") }) end,
                 "is a different sweep")
  end)

  local function check_halving(store)
    local status = {}
    for _, x in ipairs(fvl.sweep.load(store, { reports = true })) do status[x.config.a] = x end
    expect_eq(status[9].status, "done")
    expect_eq(status[9].metrics.acc, 900)
    expect_eq(#status[9].reports, 6)
    for a = 1, 8 do
      expect_eq(status[a].status, "pruned", "a=" .. a)
      expect_eq(#status[a].reports, a >= 7 and 4 or 2, "reports of a=" .. a)
      expect_eq(status[a].metrics.acc, (a >= 7 and 4 or 2) * a)
    end
  end

  it("successive halving with no trial kept paused in memory gives the same verdicts", function()
    local store = path("parked.sqlite")
    run("halving.lua", { store, "0.01", "0" })
    check_halving(store)
    local t = fvl.sweep.load(store)
    local reruns = 0
    for _, x in ipairs(t) do if x.attempt > 1 then reruns = reruns + 1 end end
    expect_eq(reruns, 3, "the 3 trials promoted at rung 1 ran again")
    for _, x in ipairs(t) do
      if x.config.a == 9 then expect_eq(x.attempt, 3, "the winner ran again after each rung") end
    end
  end)

  it("successive halving keeps the top 1/eta at each rung and prunes the rest", function()
    local store = path("halving.sqlite")
    run("halving.lua", { store })
    local t = fvl.sweep.load(store, { reports = true })
    local status = {}
    for _, x in ipairs(t) do status[x.config.a] = x end
    expect_eq(status[9].status, "done")
    check_halving(store)
    for _, x in ipairs(t) do expect_eq(x.attempt, 1, "paused in memory, no trial ran twice") end
    local rows = fvl.sweep.leaderboard(store, { print = false })
    expect_eq(rows[1].config.a, 9)
    expect_eq(rows[2].config.a, 8, "pruned at a later rung ranks higher")
    expect_eq(rows[4].config.a, 6)
  end)

  it("successive halving resumes after kill -9 of the driver with the same verdicts", function()
    local store = path("halving2.sqlite")
    local driver = start("halving.lua", { store, "0.1" })
    local t0 = sys.time()
    local decided
    while sys.time() - t0 < 20 and not decided do
      sys.sleep(0.05)
      local f = io.open(store)
      if f then
        f:close()
        local st = fvl.store.open(store)
        decided = st:meta("rung.1")
        st:close()
      end
    end
    expect_true(decided, "rung 1 decided")
    sys.kill(driver, "KILL")
    wait(driver)
    sys.sleep(0.2)
    run("halving.lua", { store, "0.01" })
    local status = {}
    for _, x in ipairs(fvl.sweep.load(store, { reports = true })) do status[x.config.a] = x end
    expect_eq(status[9].status, "done")
    expect_eq(status[9].metrics.acc, 900)
    expect_eq(#status[9].reports, 6)
    for a = 1, 8 do
      expect_eq(status[a].status, "pruned", "a=" .. a)
      expect_eq(#status[a].reports, a >= 7 and 4 or 2, "reports of a=" .. a)
    end
  end)

  it("leaderboard, CSV and load give the stored results", function()
    local store = path("mixed.sqlite")
    local rows, text = fvl.sweep.leaderboard(store, { print = false })
    expect_eq(rows[1].id, 6, "best acc first")
    expect_eq(rows[2].id, 1)
    expect_true(text:find("7 trials: 2 done, 5 failed", 1, true), text)
    expect_true(text:find("error: worker crashed: SIGABRT", 1, true), text)
    local csv = path("mixed.csv")
    expect_eq(fvl.sweep.csv(store, csv), true)
    local lines = {}
    for l in io.lines(csv) do lines[#lines + 1] = l end
    expect_eq(#lines, 8)
    expect_eq(lines[1], "rank,id,status,seed,seconds,kind,acc,metric.seed,error")
    expect_true(lines[2]:match("^1,6,done,%d+,[%d.]+,fine,0%.6"), lines[2])
    expect_eq(#sys.glob(csv .. ".tmp.*"), 0, "no temporary file left")
    local files, msg = fvl.sweep.plot(store, { best = 3 })
    expect_true(files, "plot: " .. tostring(msg))
    expect_eq(#files, 3, "kind, curves and sheet")
    expect_eq(files[1], path("mixed.kind.png"))
    for _, f in ipairs(files) do
      local fh = assert(io.open(f, "rb"))
      expect_eq(fh:read(4), "\x89PNG", f)
      fh:close()
    end
    -- a categorical axis (kind) is drawn at x = 1, 2, ... with its ticks named by the values
    local lines_fn, specs = fvl.plot.lines, {}
    fvl.plot.lines = function(spec) specs[#specs + 1] = spec; return lines_fn(spec) end
    local ok, err = pcall(fvl.sweep.plot, store, { best = 3, sheet = false })
    fvl.plot.lines = lines_fn
    expect_true(ok, tostring(err))
    local kind = specs[1]
    expect_eq(kind.xlabel, "kind")
    expect_true(type(kind.xnames) == "table" and #kind.xnames >= 1, "xnames of the kind plot")
    expect_eq(kind.xmax, #kind.xnames + 0.5)
    for i, name in ipairs(kind.xnames) do
      expect_eq(kind.series[i].label, name, "series " .. i .. " sits at x = " .. i)
      local xs, sum = kind.series[i].x, 0
      for _, x in ipairs(xs) do expect_true(math.abs(x - i) < 0.5, "x near " .. i); sum = sum + x end
      if #xs <= 7 then expect_near(sum / #xs, i, 0, 1e-12, "the points of " .. name .. " centred on its tick") end
    end
    expect_eq(specs[2].xnames, nil, "the curves keep numeric ticks")
    expect_error(function() fvl.plot.lines { series = {}, xnames = { "a", 2 }, file = path("bad.png") } end,
                 "plot.lines: xnames[2] must be a string, got number")
    expect_error(function() fvl.plot.lines { series = {}, xnames = { "a" }, xlog = true, file = path("bad.png") } end,
                 "a categorical x axis (xnames) cannot be logarithmic")
    expect_error(function() fvl.sweep.load(path("nothing.sqlite")) end, "fvl.sweep.load: no store at")
    -- every reader's message starts with its own name, never a position inside the library
    for _, name in ipairs({ "load", "leaderboard", "csv", "plot", "spread" }) do
      local ok, err = pcall(fvl.sweep[name], path("nothing.sqlite"), name == "csv" and path("x.csv") or nil)
      expect_true(not ok and tostring(err):find("^fvl%.sweep%." .. name .. ": no store at"),
                  name .. ": " .. tostring(err))
    end
    expect_error(function() fvl.sweep.leaderboard(store, { metrc = "acc" }) end, "unknown option 'metrc'")
  end)

  it("workers of one sweep do not run another sweep of the same script", function()
    run("two.lua", { tmp })
    local calls = {}
    for l in io.lines(path("calls.txt")) do calls[#calls + 1] = l end
    table.sort(calls)
    expect_eq(table.concat(calls, ","), "first 1,first 2,second 3,second 4")
    expect_eq(#fvl.sweep.load(path("second.sqlite")), 2)
  end)

  it("runs inline with workers = 0 and resumes", function()
    local store = path("inline.sqlite")
    local calls = 0
    local function go()
      return fvl.sweep{ name = "inline", store = store, workers = 0, quiet = true, metric = "v",
                        space = { x = { 1, 2, 3 }, f = { fvl.sweep.named("sq", function(v) return v * v end) } },
                        trial = function(cfg, report, info)
                          calls = calls + 1
                          report{ step = 1, v = cfg.x }
                          return { v = cfg.f(cfg.x), id = info.id }
                        end }
    end
    local res = go()
    expect_eq(#res, 3)
    expect_eq(res[3].metrics.v, 9)
    expect_eq(res[3].config.f, "sq")
    expect_eq(calls, 3)
    go()
    expect_eq(calls, 3, "done trials are not run again")
    -- the same store with another space is refused
    expect_error(function()
      fvl.sweep{ name = "inline", store = store, workers = 0, quiet = true, space = { x = { 1, 2 } },
                 trial = function() return {} end }
    end, "holds a different sweep")
  end)

  it("labels schedules, named values and small tables readably", function()
    local res = fvl.sweep{ name = "labels", store = path("labels.sqlite"), workers = 0, quiet = true,
                           space = { s = { fvl.schedule.linear{ from = 0, to = 1, steps = 10 },
                                           fvl.schedule.linear{ from = 0, to = 0.5, steps = 10 } },
                                     f = { fvl.sweep.named("double", function(x) return 2 * x end), function(x) return x end },
                                     t = fvl.sweep.choice{ { 1, 2 } } },
                           trial = function(cfg) return { v = cfg.f(cfg.s(5)) + cfg.t[2] } end }
    expect_eq(#res, 4)
    expect_eq(res[1].config.s, "linear(from=0,steps=10,to=1)")
    expect_eq(res[2].config.s, "linear(from=0,steps=10,to=0.5)")
    expect_eq(res[1].config.f, "double")
    expect_eq(res[3].config.f, "f#2")
    expect_eq(res[1].config.t, "[1,2]")
    expect_near(res[1].metrics.v, 2 * 0.5 + 2, 1e-12)
    expect_near(res[4].metrics.v, 0.25 + 2, 1e-12)
  end)

  it("rejects bad options with a message naming them", function()
    local trial = function() return {} end
    local base = function(extra)
      local o = { name = "x", store = path("opts.sqlite"), space = { a = { 1 } }, trial = trial, workers = 0,
                  quiet = true }
      for k, v in pairs(extra) do o[k] = v end
      return function() fvl.sweep(o) end
    end
    expect_error(base { wrkers = 2 }, "fvl.sweep: unknown option 'wrkers'")
    expect_error(base { strategy = "bayes" }, "strategy = 'bayes' (expected grid|random|halving)")
    expect_error(base { strategy = "random" }, "needs samples")
    expect_error(base { space = { lr = fvl.sweep.uniform(0, 1) } }, "space.lr is a range")
    expect_error(base { strategy = "halving", halving = { rungs = { 2 } } }, "needs metric")
    expect_error(base { strategy = "halving", metric = "a", halving = { rungs = { 4, 2 } }, workers = 1 },
                 "halving.rungs[2] = 2")
    expect_error(base { shard = "3/2" }, "shard = '3/2' (expected i/N")
    expect_error(base { space = { a = {} } }, "space.a is an empty table")
    expect_error(base { workers = -1 }, "workers must be an integer >= 0")
    expect_error(base { trial = 3 }, "trial must be a function")
    expect_error(function() fvl.sweep.uniform(2, 1) end, "fvl.sweep.uniform: expected finite numbers lo <= hi")
    expect_error(function() fvl.sweep.merge(path("m.sqlite"), {}) end, "non-empty list of shard stores")
  end)

  it("fvl.store and fvl.sys give clear errors", function()
    local junk = path("junk.sqlite")
    local f = assert(io.open(junk, "w"))
    f:write(string.rep("not a database ", 20))
    f:close()
    expect_error(function() fvl.store.open(junk) end, "store.open: " .. junk .. " is not a usable sweep store")
    local st = fvl.store.open(path("lowlevel.sqlite"))
    expect_eq(st:add_trial(1, "{}", 5), true)
    expect_eq(st:add_trial(1, "{}", 5), false)
    expect_eq(st:exec("SELECT seed FROM trials WHERE id = ?", 1)[1].seed, 5)
    expect_eq(st:exec("UPDATE trials SET seed = ? WHERE id = ?", 6, 1), 1)
    expect_error(function() st:exec("SELECT nope FROM trials") end, "no such column: nope")
    expect_error(function() st:exec("SELECT ?", {}) end, "parameter 1 must be nil, boolean, number or string")
    expect_error(function() st:finish_trial(1, 1, "finished") end, "status 'finished' is not one of")
    expect_error(function() st:claim(1, 0, 5) end, "store:claim: lease = 0 is outside (0, 31536000] seconds")
    expect_error(function() st:claim(1, 5, 0) end, "store:claim: max_attempts = 0 is outside 1..1000000")
    expect_error(function() st:heartbeat(1, 1 << 40, 5) end, "store:heartbeat: attempt = 1099511627776 is outside")
    expect_eq(select(2, st:claim(7, 5, 3)), 1, "the pending trial 1 is claimed for attempt 1")
    expect_eq(st:claim(7, 5, 3), nil, "nothing else to claim")
    expect_eq(st:heartbeat(1, 1, 5), true)
    expect_eq(st:heartbeat(1, 2, 5), false, "not the running attempt")
    st:close()
    expect_error(function() st:trials() end, "store:trials: the store is closed")
    expect_error(function() sys.kill(1, "NOPE") end, "signal 'NOPE' is not one of")
    expect_error(function() sys.spawn("/no/such/fvl", { "x" }) end, "cannot run /no/such/fvl")
    expect_error(function() sys.poll(1) end, "not a child of this process")
    local ok, msg = sys.write_atomic(path("no/dir/file.csv"), "x")
    expect_eq(ok, nil)
    expect_true(msg:find("cannot create", 1, true), msg)
  end)
end)

U.cleanup()
