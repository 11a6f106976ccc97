-- scripts/bench/head_ab.lua — A/B timing of two settings of the engine's environment switches
-- (e.g. FVL_BLK_GEMM_TAIL=0, FVL_BLK_GEMM=0, FVL_FWD_NORMS=0) on one head's training step
-- (zero_grad as users call it, forward, backward): child processes with setting A and B run in
-- turn, --rounds times, each timing --steps steps after a warm-up step, so both see the same
-- machine load. Beside the wall time it prints the process's CPU time per step (os.clock, all
-- threads): when other processes share the cores, the step's CPU time moves much less than its
-- wall time, so "cpu % peak" (flops / (CPU s × one thread's share of the peak)) is the steadier
-- A/B figure on a loaded machine; the wall figure is the one to report from an idle machine.
--
--   fvl scripts/bench/head_ab.lua --a "FVL_BLK_GEMM_TAIL=0" --b "" --C 100000 --threads 2
local fvl = fvl or require "fvl"
local cli = require "fvl.cli"
local util = require "fvl.util"
local parser = cli.parser("fvl scripts/bench/head_ab.lua",
  "A/B timing of two settings of environment switches on one head's step, in alternating child processes.")
parser:option("--a", "setting A: space-separated NAME=VALUE assignments (empty: the defaults)", "")
parser:option("--b", "setting B, the same form", "")
parser:option("--C", "classes", "100000"):convert(cli.integer("C", 2))
parser:option("--B", "batch", "256"):convert(cli.integer("B", 1))
parser:option("--D", "embedding dimension", "512"):convert(cli.integer("D", 1))
parser:option("--head", "loss head (fvl.loss.<head>)", "arcface")
parser:option("--steps", "timed steps per child", "4"):convert(cli.integer("steps", 1))
parser:option("--rounds", "A/B child pairs", "3"):convert(cli.integer("rounds", 1))
parser:option("--threads", "threads"):convert(cli.integer("threads", 1))
parser:option("--child", "run the steps in this process (used by the driver)"):convert(cli.integer("child", 0, 1))
local args = parser:parse(arg or {})
if args.threads then fvl.threads(args.threads) end
local B, D, C = args.B, args.D, args.C

if args.child == 1 then
  fvl.manual_seed(1)
  local x = fvl.randn(B, D)
  x:requires_grad()
  local y = fvl.randint(C, { B })
  local head = fvl.loss[args.head]({ dim = D, classes = C })
  local opt = fvl.optim.sgd(head:parameters(), { lr = 0.1 })
  local function step()
    collectgarbage()
    local t0, c0 = fvl.clock(), os.clock()
    x.grad = nil
    opt:zero_grad()
    head(x, y):backward()
    return fvl.clock() - t0, os.clock() - c0
  end
  step()
  for _ = 1, args.steps do print(string.format("STEP %.6f %.6f", step())) end
  print(string.format("ROWS %d", head.weight:size(1)))
  return
end

-- NAME=VALUE words, checked (they go into a shell command line)
local function env_words(s, which)
  local out = {}
  for w in s:gmatch("%S+") do
    if not w:match("^[%a_][%w_]*=[%w_.,:-]*$") then
      error(string.format("head_ab.lua: --%s: expected NAME=VALUE words, got %q", which, w), 0)
    end
    out[#out + 1] = w
  end
  return table.concat(out, " ")
end
local env = { env_words(args.a, "a"), env_words(args.b, "b") }
local base = string.format("%s %q --child 1 --C %d --B %d --D %d --head %s --steps %d%s", util.interpreter(),
                           arg and arg[0] or "scripts/bench/head_ab.lua", C, B, D, args.head, args.steps,
                           args.threads and (" --threads " .. args.threads) or "")
local peak = fvl._bench.fma_peak_all(0.3)
local la0 = util.loadavg()
local wall, cpu, rows = { {}, {} }, { {}, {} }, nil
for _ = 1, args.rounds do
  for k = 1, 2 do
    local p = io.popen((env[k] ~= "" and ("env " .. env[k] .. " ") or "") .. base .. " 2>&1")
    local out = p:read("a")
    p:close()
    local n = 0
    for w, c in out:gmatch("STEP (%S+) (%S+)") do
      wall[k][#wall[k] + 1], cpu[k][#cpu[k] + 1], n = tonumber(w), tonumber(c), n + 1
    end
    rows = tonumber(out:match("ROWS (%d+)")) or rows
    if n == 0 then error("head_ab.lua: the child failed: " .. out:sub(1, 300), 0) end
  end
end
local flop = 6 * B * rows * D
print(string.format("head_ab %s B=%d D=%d C=%d threads %d, %d rounds × %d steps, FMA peak %.1f GFLOP/s, load %s -> %s",
                    args.head, B, D, C, fvl.threads(), args.rounds, args.steps, peak, la0, util.loadavg()))
local tpeak = peak / fvl.threads()   -- one thread's share of the peak
local best = {}
for k = 1, 2 do
  table.sort(wall[k])
  table.sort(cpu[k])
  local b, med, c = wall[k][1], wall[k][(#wall[k] + 1) // 2], cpu[k][1]
  best[k] = { b, c }
  print(string.format("  %s %-28s best %8.2f ms (%5.1f %% peak)  median %8.2f ms  cpu best %8.2f ms (%5.1f %% peak)",
                      k == 1 and "A" or "B", env[k] == "" and "(defaults)" or env[k], b * 1e3,
                      100 * flop / b / 1e9 / peak, med * 1e3, c * 1e3, 100 * flop / c / 1e9 / tpeak))
end
print(string.format("  B/A: best wall %.3f, best cpu %.3f", best[2][1] / best[1][1], best[2][2] / best[1][2]))
