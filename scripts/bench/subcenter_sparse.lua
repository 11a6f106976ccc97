-- scripts/bench/subcenter_sparse.lua — A/B of Sub-center ArcFace's sparse backward (fvl.F.group_sparse).
--
--   fvl scripts/bench/subcenter_sparse.lua --C 100000 --K 3 --rounds 5 --threads 2
--
-- Each round times, one after the other in this process, a training step (zero_grad, forward,
-- backward to x and W) of ArcFace (C×D), of Sub-center ArcFace (K·C×D) with the dense backward
-- (fvl.F.group_sparse(false): GEMMs over the B×(C·K) gradient, 2/3 of it zeros at K = 3) and with
-- the sparse one (the default: only each (row, class)'s arg-max sub-centre). Alternating the three
-- keeps a shared machine's load changes out of the ratios. Prints best and median ms of each, the
-- ratios dense/sparse and Sub-center/ArcFace, the FMA rate of the steps and the load average.
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

local function step(head, sparse)
  fvl.F.group_sparse(sparse)
  collectgarbage()
  local t0 = fvl.clock()
  x.grad, head.weight.grad = nil, nil   -- the optimiser's zero_grad, timed
  head(x, y):backward()
  return fvl.clock() - t0
end
local function stats(t)
  local s = {}
  for i, v in ipairs(t) do s[i] = v end
  table.sort(s)
  return s[1], s[(#s + 1) // 2]
end

local prev = fvl.F.group_sparse()
step(arc, true); step(sub, false); step(sub, true)   -- warm-up
local ta, td, ts = {}, {}, {}
for r = 1, args.rounds do
  ta[r] = step(arc, true)
  td[r] = step(sub, false)
  ts[r] = step(sub, true)
end
fvl.F.group_sparse(prev)
local ab, am = stats(ta)
local db, dm = stats(td)
local sb, sm = stats(ts)
local function rate(sec, rows) return 6 * B * rows * D / sec / 1e9 end
print(string.format("B=%d D=%d C=%d K=%d threads %d, %d rounds, FMA peak %.1f GFLOP/s", B, D, C, K, fvl.threads(),
                    args.rounds, peak))
print(string.format("%-28s %9s %9s", "step", "best ms", "median ms"))
print(string.format("%-28s %9.1f %9.1f", "arcface", ab * 1e3, am * 1e3))
print(string.format("%-28s %9.1f %9.1f", "subcenter dense backward", db * 1e3, dm * 1e3))
print(string.format("%-28s %9.1f %9.1f", "subcenter sparse backward", sb * 1e3, sm * 1e3))
print(string.format("dense/sparse %.3f (best) %.3f (median); subcenter/arcface: dense %.3f, sparse %.3f (best), " ..
                    "dense %.3f, sparse %.3f (median)", db / sb, dm / sm, db / ab, sb / ab, dm / am, sm / am))
print(string.format("arcface %.0f GFLOP/s (%.0f %% of peak); sparse sub-center, counting its useful FMAs " ..
                    "(forward K·C rows, backward C): %.0f GFLOP/s", rate(ab, C), 100 * rate(ab, C) / peak,
                    2 * B * D * (K * C + 2 * C) / sb / 1e9))
local la = util.loadavg()
print("load average after: " .. tostring(la))
