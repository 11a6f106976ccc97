-- scripts/bench/subcenter_sparse.lua — A/B of Sub-center ArcFace's sparse backward (fvl.F.group_sparse).
--
--   fvl scripts/bench/subcenter_sparse.lua --C 100000 --K 3 --rounds 5 --threads 2
--
-- Each round times, one after the other in this process, a training step (zero_grad, forward,
-- backward to x and W) of ArcFace (C×D), of Sub-center ArcFace (K·C×D) with the dense backward
-- (fvl.F.group_sparse(false): GEMMs over the B×(C·K) gradient, 2/3 of it zeros at K = 3) and with
-- the sparse one (the default: only each (row, class)'s arg-max sub-centre). Alternating the three
-- keeps a shared machine's load changes out of the ratios. Prints best and median wall ms of each
-- and the median CPU ms (user + system of the process, all threads: on a loaded machine the work
-- done, where wall time is mostly waiting for a core), the ratios dense/sparse and
-- Sub-center/ArcFace, the FMA rate of the steps and the load average.
local fvl = fvl or require "fvl"
local cli = require "fvl.cli"
local util = require "fvl.util"
local parser = cli.parser("fvl scripts/bench/subcenter_sparse.lua",
  "A/B of Sub-center ArcFace's sparse backward (fvl.F.group_sparse).")
parser:option("--C", "classes", "100000"):convert(cli.integer("C", 2))
parser:option("--K", "sub-centres per class", "3"):convert(cli.integer("K", 2))
parser:option("--B", "batch", "256"):convert(cli.integer("B", 1))
parser:option("--D", "embedding dimension", "512"):convert(cli.integer("D", 1))
parser:option("--rounds", "timed rounds (each: ArcFace, dense, sparse)", "5"):convert(cli.integer("rounds", 1))
parser:option("--threads", "threads (default: all this process may use)"):convert(cli.integer("threads", 1))
local args = parser:parse(arg)

if args.threads then fvl.threads(args.threads) end
local B, D, C, K = args.B, args.D, args.C, args.K
local peak = fvl._bench.fma_peak_all(0.3)
fvl.manual_seed(1)
local x, y = fvl.randn(B, D), fvl.randint(C, { B })
x:requires_grad()
local arc = fvl.loss.arcface { weight = fvl.randn(C, D) * 0.05 }
local sub = fvl.loss.subcenter_arcface { weight = fvl.randn(C * K, D) * 0.05, K = K }

-- CPU seconds of this process so far (user + system, Linux /proc; 0 elsewhere)
local function cpu()
  local f = io.open("/proc/self/stat")
  if not f then return 0 end
  local v = {}
  for w in f:read("a"):gsub("^.*%) ", ""):gmatch("%S+") do v[#v + 1] = w end
  f:close()
  return ((tonumber(v[12]) or 0) + (tonumber(v[13]) or 0)) / 100   -- utime, stime in USER_HZ ticks
end
local function step(head, sparse)
  fvl.F.group_sparse(sparse)
  collectgarbage()
  local c0, t0 = cpu(), fvl.clock()
  x.grad, head.weight.grad = nil, nil   -- the optimiser's zero_grad, timed
  head(x, y):backward()
  return fvl.clock() - t0, cpu() - c0
end
local function stats(t)
  local s = {}
  for i, v in ipairs(t) do s[i] = v end
  table.sort(s)
  return s[1], s[(#s + 1) // 2]
end

local prev = fvl.F.group_sparse()
step(arc, true); step(sub, false); step(sub, true)   -- warm-up
local ta, td, ts, ca, cd, cs = {}, {}, {}, {}, {}, {}
for r = 1, args.rounds do
  ta[r], ca[r] = step(arc, true)
  td[r], cd[r] = step(sub, false)
  ts[r], cs[r] = step(sub, true)
end
fvl.F.group_sparse(prev)
local ab, am = stats(ta)
local db, dm = stats(td)
local sb, sm = stats(ts)
local function rate(sec, rows) return 6 * B * rows * D / sec / 1e9 end
print(string.format("B=%d D=%d C=%d K=%d threads %d, %d rounds, FMA peak %.1f GFLOP/s", B, D, C, K, fvl.threads(),
                    args.rounds, peak))
local _, ac = stats(ca)
local _, dc = stats(cd)
local _, sc = stats(cs)
print(string.format("%-28s %9s %9s %9s", "step", "best ms", "median ms", "CPU ms"))
print(string.format("%-28s %9.1f %9.1f %9.0f", "arcface", ab * 1e3, am * 1e3, ac * 1e3))
print(string.format("%-28s %9.1f %9.1f %9.0f", "subcenter dense backward", db * 1e3, dm * 1e3, dc * 1e3))
print(string.format("%-28s %9.1f %9.1f %9.0f", "subcenter sparse backward", sb * 1e3, sm * 1e3, sc * 1e3))
print(string.format("dense/sparse %.3f (best) %.3f (median) %.3f (CPU); subcenter/arcface: dense %.3f, sparse %.3f " ..
                    "(best), dense %.3f, sparse %.3f (median), dense %.3f, sparse %.3f (CPU)", db / sb, dm / sm,
                    dc / sc, db / ab, sb / ab, dm / am, sm / am, dc / ac, sc / ac))
print(string.format("arcface %.0f GFLOP/s (%.0f %% of peak); sparse sub-center, counting its useful FMAs " ..
                    "(forward K·C rows, backward C): %.0f GFLOP/s", rate(ab, C), 100 * rate(ab, C) / peak,
                    2 * B * D * (K * C + 2 * C) / sb / 1e9))
print("load average after: " .. tostring(util.loadavg()))
