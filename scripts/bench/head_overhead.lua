-- scripts/bench/head_overhead.lua — the fixed per-step cost of the loss heads: a training step
-- (forward + backward) at shapes so small that the GEMMs cost almost nothing, so what is timed is
-- the Lua/binding work around them (label checks, per-step statistics, option tables).
--
--   fvl scripts/bench/head_overhead.lua                                  -- B 256, C 16, D 4
--   fvl scripts/bench/head_overhead.lua --heads arcface,adacos --B 512 --reps 2000
-- Prints, per head, the median and the best of --rounds rounds of --reps steps (µs per step), one
-- thread, with labels given as a Lua list (a head's usual input) and as an int32 tensor.
local fvl = fvl or require "fvl"
local cli = require "fvl.cli"
local parser = cli.parser("fvl scripts/bench/head_overhead.lua",
  "The fixed per-step cost of the loss heads (tiny shapes: the work around the GEMMs).")
parser:option("--heads", "heads, comma separated",
              "arcface,adacos,circle,circle_pairwise,adaface,elasticface_plus,margin,center")
parser:option("--B", "batch", "256"):convert(cli.integer("B", 1))
parser:option("--C", "classes", "16"):convert(cli.integer("C", 2))
parser:option("--D", "embedding dimension", "4"):convert(cli.integer("D", 1))
parser:option("--reps", "steps per round", "400"):convert(cli.integer("reps", 1))
parser:option("--rounds", "rounds (the median and the best are printed)", "7"):convert(cli.integer("rounds", 1))
local args = parser:parse(arg or {})

fvl.threads(1)
local B, C, D = args.B, args.C, args.D
local function make(name)
  if name == "elasticface_plus" then return fvl.loss.elasticface { dim = D, classes = C, plus = true } end
  if name == "circle_pairwise" then return fvl.loss.circle_pairwise { dim = D } end
  if name == "margin" then   -- a user-written target (ArcFace's, without the fallback)
    return fvl.loss.margin { dim = D, classes = C, target = function(c) return (c:acos() + 0.5):cos() end }
  end
  return fvl.loss[name] { dim = D, classes = C }
end

print(string.format("B = %d, C = %d, D = %d, %d steps per round, %d rounds, 1 thread", B, C, D, args.reps,
                    args.rounds))
print(string.format("%-18s %14s %14s %14s %14s", "head", "list med µs", "list best µs", "int32 med µs",
                    "int32 best µs"))
for name in args.heads:gmatch("[^,]+") do
  fvl.manual_seed(1)
  local head = make(name)
  local x = fvl.randn(B, D):detach()
  x:requires_grad()
  local list = {}
  for i = 1, B do list[i] = (i * 7) % C + 1 end
  local cols = {}
  for _, labels in ipairs { list, fvl.tensor(list, "int32") } do
    local t = {}
    for r = 1, args.rounds + 1 do
      local t0 = fvl.clock()
      for _ = 1, args.reps do
        x.grad = nil
        if head.weight then head.weight.grad = nil end
        if head.s_fixed then head.s = head.s_fixed end   -- AdaCos: the dynamic scale from the same start
        head(x, labels):backward()
      end
      if r > 1 then t[#t + 1] = (fvl.clock() - t0) / args.reps * 1e6 end   -- round 1: warm-up
    end
    table.sort(t)
    cols[#cols + 1] = string.format("%14.1f %14.1f", t[(#t + 1) // 2], t[1])
  end
  print(string.format("%-18s %s %s", name, cols[1], cols[2]))
end
local f = io.open("/proc/loadavg")
print(string.format("load average: %s (a loaded machine makes these figures noisy)", f and f:read("l") or "?"))
if f then f:close() end
