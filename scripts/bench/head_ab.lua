-- scripts/bench/head_ab.lua — A/B timing of the class blocks' optional steps in one process: the
-- training step of one head (zero_grad as users call it, forward, backward) with the optional-step
-- mask A and mask B (fvl._bench.blk_opts, bits in engine/loss/loss_ops.h), alternately, so both
-- see the same machine load. Beside the wall time it prints the process's CPU time per step
-- (os.clock, all threads): when other processes share the cores, the CPU time of the step moves
-- much less than its wall time, so "cpu % peak" (flops / (CPU s × the per-thread peak)) is the
-- steadier A/B figure on a loaded machine; the wall figure is the one to report from an idle one.
--
--   fvl scripts/bench/head_ab.lua --C 100000 --mask-a 0 --mask-b 65535 --steps 8 --threads 2
local fvl = fvl or require "fvl"
local cli = require "fvl.cli"
local util = require "fvl.util"
local parser = cli.parser("fvl scripts/bench/head_ab.lua",
  "A/B timing of the class blocks' optional steps (fvl._bench.blk_opts), alternating in one process.")
parser:option("--C", "classes", "100000"):convert(cli.integer("C", 2))
parser:option("--B", "batch", "256"):convert(cli.integer("B", 1))
parser:option("--D", "embedding dimension", "512"):convert(cli.integer("D", 1))
parser:option("--head", "loss head", "arcface")
parser:option("--mask-a", "mask A (0: every optional step off)", "0"):convert(cli.integer("mask-a", 0, 65535))
parser:option("--mask-b", "mask B (65535: all on, the default setting)", "65535"):convert(cli.integer("mask-b", 0, 65535))
parser:option("--steps", "timed steps per mask", "6"):convert(cli.integer("steps", 1))
parser:option("--threads", "threads"):convert(cli.integer("threads", 1))
local args = parser:parse(arg or {})
if args.threads then fvl.threads(args.threads) end

local B, D, C = args.B, args.D, args.C
fvl.manual_seed(1)
local x = fvl.randn(B, D)
x:requires_grad()
local y = fvl.randint(C, { B })
local head = fvl.loss[args.head]({ dim = D, classes = C })
local R = head.weight:size(1)
local opt = fvl.optim.sgd(head:parameters(), { lr = 0.1 })
local function step(mask)
  fvl._bench.blk_opts(mask)
  collectgarbage()
  local t0, c0 = fvl.clock(), os.clock()
  x.grad = nil
  opt:zero_grad()
  head(x, y):backward()
  return fvl.clock() - t0, os.clock() - c0
end
local peak = fvl._bench.fma_peak_all(0.3)
local la0 = util.loadavg()
local masks = { args.mask_a, args.mask_b }
for _, m in ipairs(masks) do step(m) end
local t, cpu = { {}, {} }, { {}, {} }
for i = 1, args.steps do
  for k, m in ipairs(masks) do t[k][i], cpu[k][i] = step(m) end
end
local flop = 6 * B * R * D
print(string.format("head_ab %s B=%d D=%d C=%d threads %d, FMA peak %.1f GFLOP/s, load %s -> %s",
                    args.head, B, D, C, fvl.threads(), peak, la0, util.loadavg()))
local best, bcpu = {}, {}
local tpeak = peak / fvl.threads()   -- one thread's share of the peak
for k, m in ipairs(masks) do
  table.sort(t[k])
  table.sort(cpu[k])
  local b, med, c = t[k][1], t[k][(#t[k] + 1) // 2], cpu[k][1]
  best[k], bcpu[k] = b, c
  print(string.format("  mask %5d: best %8.2f ms (%5.1f %% peak)  median %8.2f ms (%5.1f %%)  cpu best %8.2f ms (%5.1f %% peak)",
                      m, b * 1e3, 100 * flop / b / 1e9 / peak, med * 1e3, 100 * flop / med / 1e9 / peak, c * 1e3,
                      100 * flop / c / 1e9 / tpeak))
end
print(string.format("  B/A: best wall %.3f, best cpu %.3f", best[2] / best[1], bcpu[2] / bcpu[1]))
