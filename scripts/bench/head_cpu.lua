-- scripts/bench/head_cpu.lua — CPU seconds of a fused head's training step (forward + backward
-- to x and W, both threads together), for A/Bs of the engine's kernels on a machine that others
-- load: wall time then mostly measures the scheduler, the process's CPU time much less so.
--
--   fvl scripts/bench/head_cpu.lua --C 100000 --threads 2 --steps 10 --head arcface
--   FVL_BLK_GEMM_TAIL=0 FVL_BLK_GEMM_ROWS=0 fvl scripts/bench/head_cpu.lua ...   -- the A/B switches
--
-- Prints the CPU seconds per step (user + system, /proc/self/stat, 10 ms ticks summed over the
-- timed steps), the GEMM rate per CPU second (6·B·C·D flops / CPU time) and its fraction of one
-- thread's FMA peak (fvl._bench.fma_peak_all with 1 thread): 100 % would be every CPU cycle of
-- the step spent at the FMA pipes' rate. Also the best wall time, and the load average.
local fvl = fvl or require "fvl"

local cli = require "fvl.cli"
local parser = cli.parser("fvl scripts/bench/head_cpu.lua",
  "CPU seconds of a fused head's training step (A/B of kernels on a loaded machine).")
parser:option("--C", "classes", "100000"):convert(cli.integer("C", 2))
parser:option("--B", "batch", "256"):convert(cli.integer("B", 1))
parser:option("--D", "embedding dimension", "512"):convert(cli.integer("D", 1))
parser:option("--steps", "timed steps", "10"):convert(cli.integer("steps", 1))
parser:option("--threads", "threads", "2"):convert(cli.integer("threads", 1))
parser:option("--head", "fvl.loss head", "arcface")
local args = parser:parse()

local function cpu_seconds()   -- utime + stime of the process
  local f = assert(io.open("/proc/self/stat"))
  local v = {}
  for w in f:read("a"):gsub("^.*%) ", ""):gmatch("%S+") do v[#v + 1] = w end
  f:close()
  return (tonumber(v[12]) + tonumber(v[13])) / 100
end
local function loadavg()
  local f = io.open("/proc/loadavg")
  if not f then return "?" end
  local s = f:read("l")
  f:close()
  return s:match("^(%S+ %S+ %S+)")
end

assert(fvl.loss[args.head], "head_cpu.lua: --head " .. args.head .. " is not an fvl.loss head")
fvl.threads(1)
local peak1 = fvl._bench.fma_peak_all(0.3)
fvl.threads(args.threads)
local B, C, D = args.B, args.C, args.D
fvl.manual_seed(1)
local x = fvl.randn(B, D)
x:requires_grad()
local y = fvl.randint(C, { B })
local head = fvl.loss[args.head]({ dim = D, classes = C })
local opt = fvl.optim.sgd(head:parameters(), { lr = 0.1 })
local function step()
  x.grad = nil
  opt:zero_grad()
  local loss = head(x, y)
  loss:backward()
end
local load0 = loadavg()
step()   -- warm-up
collectgarbage()
local c0, best = cpu_seconds(), math.huge
for _ = 1, args.steps do
  local t0 = fvl.clock()
  step()
  best = math.min(best, fvl.clock() - t0)
end
local cpu = (cpu_seconds() - c0) / args.steps
local flop = 6.0 * B * C * D
print(string.format("%s C=%d B=%d D=%d threads %d: %.1f CPU ms/step, %.1f GFLOP per CPU second = %.1f %% of one " ..
  "thread's FMA peak (%.1f GFLOP/s); best wall %.1f ms; load %s -> %s",
  args.head, C, B, D, args.threads, cpu * 1e3, flop / cpu / 1e9, 100 * flop / cpu / 1e9 / peak1, peak1,
  best * 1e3, load0, loadavg()))
