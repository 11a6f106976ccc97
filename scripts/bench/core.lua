-- scripts/bench/core.lua — how close the tensor core gets to the machine.
--   fvl scripts/bench/core.lua [--quick] [--threads N] [--cpu]
-- Prints, in one run:
--   1. matmul: x (256x512) :matmul(W:t()) with W 10000x512 against a raw cblas_sgemm of the same
--      problem (fvl._bench.sgemm, transposed B, preallocated C). ratio = sgemm time / matmul
--      time; target >= 0.9 (the transpose must go to sgemm as a flag, not a copy).
--   2. elementwise add, mul, exp and reductions (sum over all, along dim 1 and dim 2) as memory
--      throughput: bytes read + bytes written by one pass / time, against a plain memcpy
--      (fvl._bench.memcpy) of the same tensor size, counted the same way (read + write).
--      ratio near 1 means one pass and no hidden temporaries; results go into fresh tensors,
--      as a user's code does, and are freed at once with <close>.
-- Timings are the best of several trials (the machine may be shared); the median is shown too.
-- On a machine busier than its cores, wall times mostly measure waiting: --cpu --threads 1 times
-- with the process's CPU clock instead (the raw baselines are then timed from here, as the
-- difference of two runs with different repetition counts, which cancels their set-up).
local cli = require "fvl.cli"
local parser = cli.parser("fvl scripts/bench/core.lua", "How close the tensor core gets to the machine (matmul, elementwise, reductions).")
parser:flag("--quick", "fewer trials")
parser:option("--threads", "threads"):convert(cli.integer("threads", 1))
parser:flag("--cpu", "time with the process's CPU clock")
local o = parser:parse(arg or {})
local quick, threads, cpu = o.quick, o.threads, o.cpu
if threads then fvl.threads(threads) end
assert(fvl._bench and fvl._bench.sgemm and fvl._bench.memcpy,
       "core.lua needs fvl._bench.sgemm and fvl._bench.memcpy (lua/bind_tensor.c)")
local clock = cpu and os.clock or fvl._bench.clock or fvl.clock
local TRIALS = quick and 3 or 7
if cpu and fvl.threads() > 1 then
  print("note: --cpu adds up the CPU time of all threads; use it with --threads 1")
end

-- best and median seconds per call of fn over TRIALS trials of `reps` calls each
local function timeit(fn, reps, trials)
  fn()   -- warm up
  local t = {}
  for k = 1, trials or TRIALS do
    local t0 = clock()
    for _ = 1, reps do fn() end
    t[k] = (clock() - t0) / reps
  end
  table.sort(t)
  return t[1], t[(#t + 1) // 2]
end
-- same statistics for a baseline fn(reps) that times itself (returns s/call); with --cpu it is
-- timed here: (cpu(2 reps) - cpu(reps)) / reps cancels the baseline's own set-up
local function raw(fn, reps, trials)
  local t = {}
  for k = 1, trials or TRIALS do
    if cpu then
      local t0 = clock(); fn(reps); local t1 = clock(); fn(2 * reps); local t2 = clock()
      t[k] = ((t2 - t1) - (t1 - t0)) / reps
      if t[k] <= 0 then t[k] = (t2 - t1) / (2 * reps) end   -- noise: fall back to the plain mean
    else
      t[k] = fn(reps)
    end
  end
  table.sort(t)
  if cpu then return t[(#t + 1) // 2], t[(#t + 1) // 2] end   -- differences: the median is the estimate
  return t[1], t[(#t + 1) // 2]
end

local info = fvl.info()
print(string.format("fvl %s, %s, OpenBLAS core %s, %d threads, build %s", info.version, info.lua,
                    info.blas_core, fvl.threads(), info.build))
print(string.format("(best of %d trials; median in brackets; %s time)", TRIALS, cpu and "process CPU" or "wall"))
do
  local load = tonumber(require("fvl.util").loadavg():match("^(%S+)"))
  local cores = (fvl.info().cores) or fvl.threads()
  if load and load > 1.5 * cores and not cpu then
    print(string.format("warning: load average %.1f on this machine; wall times are inflated (try --cpu --threads 1)", load))
  end
end

-- ---------------------------------------------------------------- 1. matmul
do
  local M, K, N = 256, 512, 10000
  fvl.manual_seed(1)
  local x, W = fvl.randn(M, K), fvl.randn(N, K)
  local reps = quick and 3 or 10
  -- paired trials: each trial times the raw sgemm and then fvl's matmul, so a change in the
  -- machine's load hits both; the ratio reported is the median of the per-trial ratios
  local mm = function() local y <close> = x:matmul(W:t()) end
  mm()
  local tr, tf, ratios = {}, {}, {}
  for k = 1, TRIALS do
    local rb = raw(function(r) return fvl._bench.sgemm(M, N, K, r, true) end, reps, 1)
    local fb = timeit(mm, reps, 1)
    tr[k], tf[k], ratios[k] = rb, fb, rb / fb
  end
  table.sort(tr); table.sort(tf); table.sort(ratios)
  local rb, fb, ratio = tr[1], tf[1], ratios[(#ratios + 1) // 2]
  local gflop = 2 * M * N * K / 1e9
  print()
  print(string.format("matmul %dx%d times (%dx%d):t()", M, K, N, K))
  print(string.format("  raw cblas_sgemm  %8.3f ms  (%6.1f GFLOP/s)  [%8.3f ms]", rb * 1e3, gflop / rb, tr[(#tr + 1) // 2] * 1e3))
  print(string.format("  fvl matmul       %8.3f ms  (%6.1f GFLOP/s)  [%8.3f ms]", fb * 1e3, gflop / fb, tf[(#tf + 1) // 2] * 1e3))
  print(string.format("  ratio sgemm/matmul = %.3f (median of %d paired trials; range %.3f..%.3f; target >= 0.9) %s",
                      ratio, #ratios, ratios[1], ratios[#ratios], ratio >= 0.9 and "ok" or "BELOW TARGET"))
  -- the same with W requiring grad (records a node, must not copy)
  local Wg = W:detach():requires_grad()
  local gb = timeit(function() local y <close> = x:matmul(Wg:t()) end, reps)
  print(string.format("  with W:requires_grad()  %8.3f ms (best), ratio to the best sgemm %.3f", gb * 1e3, rb / gb))
end

-- ---------------------------------------------------------------- 2. memory throughput
local function throughput(label, n)
  local bytes = 4 * n
  fvl.manual_seed(2)
  local a, b = fvl.rand(n), fvl.rand(n)
  local reps = quick and 3 or 10
  collectgarbage("collect")
  -- the baseline: a raw memcpy (wall clock, timed in C), or with --cpu dst:copy(src) of two
  -- contiguous float32 tensors, which is a memmove timed by the same clock as the ops
  local cb, cm, what
  if cpu then
    local dst = fvl.empty(n)
    cb, cm = timeit(function() dst:copy(a) end, reps)
    what = "copy (memmove)"
  else
    cb, cm = raw(function(r) return fvl._bench.memcpy(bytes, r) end, reps)
    what = "memcpy"
  end
  local copy_gbs = 2 * bytes / cb / 1e9        -- read + write
  print()
  print(string.format("%s: %d float32 (%.0f MB per tensor)", label, n, bytes / 2 ^ 20))
  print(string.format("  %-18s %8.2f GB/s  %8.3f ms  [%8.3f ms]", what, copy_gbs, cb * 1e3, cm * 1e3))
  local function row(name, traffic, fn)
    local tb, tm = timeit(fn, reps)
    local gbs = traffic / tb / 1e9
    print(string.format("  %-18s %8.2f GB/s  %8.3f ms  [%8.3f ms]  ratio %.2f", name, gbs, tb * 1e3, tm * 1e3, gbs / copy_gbs))
  end
  row("add  a + b", 3 * bytes, function() local y <close> = a + b end)
  row("mul  a * b", 3 * bytes, function() local y <close> = a:mul(b) end)
  row("exp  a:exp()", 2 * bytes, function() local y <close> = a:exp() end)
  row("add scalar a + 1", 2 * bytes, function() local y <close> = a + 1 end)
  local cols = 2048
  local m <close> = a:reshape(n // cols, cols)
  row("sum()", bytes, function() local y <close> = m:sum() end)
  row(string.format("sum(2) %dx%d", n // cols, cols), bytes, function() local y <close> = m:sum(2) end)
  row(string.format("sum(1) %dx%d", n // cols, cols), bytes, function() local y <close> = m:sum(1) end)
  local tall <close> = a:reshape(n // 16, 16)
  row(string.format("sum(2) %dx16", n // 16), bytes, function() local y <close> = tall:sum(2) end)
  row(string.format("sum(1) %dx16", n // 16), bytes, function() local y <close> = tall:sum(1) end)
end
throughput("in cache (L2/L3)", 256 * 1024)
throughput("out of cache", quick and 4 * 1024 * 1024 or 16 * 1024 * 1024)
