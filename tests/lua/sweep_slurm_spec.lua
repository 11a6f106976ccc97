-- fvl.sweep under Slurm, simulated by the variables Slurm sets: the shard count belongs to the
-- sweep, the array task id is the shard (any subset or stride of ids), one id resubmitted alone
-- resumes its shard, halving refuses SQLite shards, and threads follow the CPUs granted.
local fvl = fvl or require "fvl"
local sys = fvl.sys
local json = fvl.json
local U = dofile(TEST_DIR .. "/lua/sweep/util.lua")("sweep_slurm_spec")
local path, run = U.path, U.run

-- the environment of array task `id` of an array whose ids are `ids` (sbatch --array=...)
local function task(id, ids, extra)
  local lo, hi = math.huge, -math.huge
  for _, i in ipairs(ids) do lo, hi = math.min(lo, i), math.max(hi, i) end
  local env = { SLURM_ARRAY_TASK_ID = tostring(id), SLURM_ARRAY_TASK_COUNT = tostring(#ids),
                SLURM_ARRAY_TASK_MIN = tostring(lo), SLURM_ARRAY_TASK_MAX = tostring(hi),
                SLURM_ARRAY_TASK_STEP = tostring(#ids > 1 and (hi - lo) // (#ids - 1) or 1),
                SLURM_ARRAY_JOB_ID = "4242", SLURM_JOB_ID = tostring(4300 + id) }
  for k, v in pairs(extra or {}) do env[k] = v end
  return env
end

local function same_results(a, b)
  expect_eq(#b, #a)
  for i = 1, #a do
    expect_eq(b[i].id, a[i].id)
    expect_eq(b[i].status, "done", "trial " .. b[i].id)
    expect_eq(json.encode(b[i].config), json.encode(a[i].config))
    expect_eq(json.encode(b[i].metrics), json.encode(a[i].metrics), "metrics of trial " .. i)
  end
end

describe("fvl.sweep under Slurm", function()
  local whole = path("whole.sqlite")

  it("a strided array (--array=0-6:2, then 1-7:2) of shards = 8 runs every trial once", function()
    run("shards.lua", { whole })
    -- ids 0,2,4,6: count 4, but the sweep says 8 shards; the odd ids come in a second array
    for _, id in ipairs({ 0, 2, 4, 6 }) do run("shards.lua", { path("s.sqlite"), "--shards", "8" }, task(id, { 0, 2, 4, 6 })) end
    expect_eq(#sys.glob(path("s.shard-*-of-8.sqlite")), 4)
    for _, id in ipairs({ 1, 3, 5, 7 }) do run("shards.lua", { path("s.sqlite"), "--shards=8" }, task(id, { 1, 3, 5, 7 })) end
    local parts = sys.glob(path("s.shard-*-of-8.sqlite"))
    expect_eq(#parts, 8)
    -- 7 trials over 8 shards: shard 0 holds trial 8... none (7 samples), shard i holds trial i
    expect_eq(#fvl.sweep.load(path("s.shard-3-of-8.sqlite")), 1)
    expect_eq(fvl.sweep.load(path("s.shard-3-of-8.sqlite"))[1].id, 3)
    expect_eq(fvl.sweep.merge(path("s.sqlite"), path("s.shard-*-of-8.sqlite")), 7)
    same_results(fvl.sweep.load(whole), fvl.sweep.load(path("s.sqlite")))
  end)

  it("a 1-based array (--array=1-3) of shards = 3 and a resubmitted single id resume their shards", function()
    for _, id in ipairs({ 1, 2, 3 }) do run("shards.lua", { path("b.sqlite"), "--shards", "3" }, task(id, { 1, 2, 3 })) end
    local parts = sys.glob(path("b.shard-*-of-3.sqlite"))
    expect_eq(#parts, 3, "ids 1..3 are shards 1, 2, 0")
    -- trial 4 (shard 1) was killed with its job: scancel, then sbatch --array=1 alone
    local p1 = path("b.shard-1-of-3.sqlite")
    local st = fvl.store.open(p1)
    expect_eq(st:exec("UPDATE trials SET status = 'failed', killed = 1, error = 'worker killed by SIGKILL'" ..
                      " WHERE id = 4"), 1)
    local before = U.by_id(fvl.sweep.load(st))
    st:close()
    run("shards.lua", { path("b.sqlite"), "--shards", "3" }, task(1, { 1 }))
    expect_eq(#sys.glob(path("b.*.sqlite")), 3, "no new store: the resubmitted id is shard 1 of 3")
    local after = U.by_id(fvl.sweep.load(p1))
    expect_eq(after[4].status, "done")
    expect_eq(after[4].attempt, before[4].attempt + 1, "the killed trial ran again")
    expect_eq(after[1].attempt, before[1].attempt, "the finished ones did not")
    expect_eq(after[7].attempt, before[7].attempt)
    expect_eq(fvl.sweep.merge(path("b.sqlite"), path("b.shard-*-of-3.sqlite")), 7)
    same_results(fvl.sweep.load(whole), fvl.sweep.load(path("b.sqlite")))
  end)

  it("refuses an array task without a shard count, an id outside the shards and halving over shards", function()
    local log = run("shards.lua", { path("c.sqlite") }, task(2, { 0, 1, 2 }), true)
    expect_true(log:find("Slurm array task 2, but the sweep does not say how many shards", 1, true), log)
    expect_true(log:find("--shards N", 1, true), log)
    log = run("shards.lua", { path("c.sqlite"), "--shards", "4" }, task(9, { 9 }), true)
    expect_true(log:find("SLURM_ARRAY_TASK_ID = 9 is not a shard of --shards = 4 (expected 0..3, or 1..4", 1, true), log)
    log = run("shards.lua", { path("c.sqlite"), "--shard", "1/3", "--shards", "4" }, nil, true)
    expect_true(log:find("says 3 shards but --shards = 4", 1, true), log)
    log = run("shards.lua", { path("c.sqlite"), "--shards", "4" }, nil, true)
    expect_true(log:find("--shards = 4 but no shard to run: pass --shard i/4", 1, true), log)
    log = run("halving.lua", { path("h.sqlite"), "0.01", "--shards", "3" }, task(0, { 0, 1, 2 }), true)
    expect_true(log:find("successive halving over SQLite shards would prune within each shard", 1, true), log)
    expect_true(log:find("postgresql://", 1, true), log)
    expect_eq(#sys.glob(path("c*.sqlite")), 0, "nothing was written")
  end)

  it("threads follow SLURM_CPUS_PER_TASK, OMP_NUM_THREADS and the CPU affinity, divided among workers", function()
    local n = sys.cpus()
    local function threads_of(store, workers, env)
      local log = run("threads.lua", { store, tostring(workers) }, env)
      local t = fvl.sweep.load(store)
      expect_eq(#t, 2, log)
      expect_eq(t[1].metrics.threads, t[1].metrics.engine, "the worker's engine uses them")
      return t[1].metrics.threads
    end
    expect_eq(threads_of(path("t1.sqlite"), 1, {}), n)
    expect_eq(threads_of(path("t2.sqlite"), 1, { SLURM_CPUS_PER_TASK = "1" }), 1)
    expect_eq(threads_of(path("t3.sqlite"), 2, { OMP_NUM_THREADS = "1" }), 1)
    expect_eq(threads_of(path("t4.sqlite"), 2, {}), math.max(1, n // 2))
    -- where the number came from is in the worker's log
    local f = assert(io.open(path("t2.logs/trial-1.log")))
    local head = f:read("l")
    f:close()
    expect_true(head:find("SLURM_CPUS_PER_TASK=1", 1, true), head)
    -- and in fvl -v
    local p = io.popen("SLURM_CPUS_PER_TASK=1 '" .. U.exe .. "' -v")
    local v = p:read("a")
    p:close()
    expect_true(v:find("threads: 1 ", 1, true), v)
    expect_true(v:find("CPUs for this process: 1 from affinity %d+ CPUs? ∩ SLURM_CPUS_PER_TASK=1"), v)
  end)
end)

U.cleanup()
