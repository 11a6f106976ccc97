-- scripts/bench/heads.lua — time a training step (forward + backward to x and W) of every loss
-- head against the three bare GEMMs of that step, and report peak memory.
--
--   fvl scripts/bench/heads.lua                       -- C = 10000 and 100000, all heads
--   fvl scripts/bench/heads.lua --C 10000 --heads arcface,cosface --steps 5 --B 256 --D 512 --threads 2
--   fvl scripts/bench/heads.lua --pair arcface,margin_arcface --C 100000 --threads 2   -- two heads, alternately
-- A step at C=10,000 takes ~60 ms and the machine's GEMM rate drifts by ±10% from second to
-- second, so the default takes the best of 15 alternating step/GEMM pairs there (5 at C=100,000).
--
-- GEMM-only = X̂·Ŵᵀ (B×D·D×C) + G·Ŵ (B×C·C×D) + Gᵀ·X̂ (C×B·B×D) with fvl.matmul on the same
-- shapes, measured in the same run. ratio = step / GEMM-only (targets: ≤ 1.15 for softmax,
-- normface, cosface, arcface, combined; ≤ 1.3 for the rest). Memory: engine bytes at the peak of
-- a step, minus W, W.grad and Center's centres (C×D state), in units of B×C floats (the head's
-- workspaces, x and x.grad included); and the process's VmHWM.
-- Each head runs in its own child process (so VmHWM is per head) unless one=<head> is given.
-- The timed step is what a user's loop runs: the optimiser's zero_grad (gradients set to nil,
-- x.grad too), the head's forward and the backward — no untimed zeroing. GFLOP/s = the step's
-- GEMM flops (2·B·D·(R + 2·R'), R = rows of W, R' = R, or C for Sub-center ArcFace's sparse
-- backward) / step time; "% peak" divides it by the machine's FMA peak
-- measured here (fvl._bench.fma_peak_all: every thread runs a register-only AVX-512 or AVX2 FMA
-- loop). "torch ms" is scripts/bench/heads_torch.py (Debian python3-torch, /usr/bin/python3,
-- same B, D, C and threads, grads set to None each step) run in this invocation: every head has a
-- peer there, written from docs/losses.md's formulas with plain autograd ops (margin_<name>: the
-- same maths as <name>, the same peer); "×torch" = torch ms / ms/step. `--check 1` compares every
-- peer's loss and gradients with the head's on a small case (PyTorch in float64) and exits.
-- Above --probe_above classes (default 200,000) each head and each peer first runs at probe_C and
-- 2·probe_C classes; its peak RSS, extrapolated linearly to C, decides whether it fits the memory
-- available now (MemAvailable, or --mem_mb): a head that does not fit is skipped with its estimate,
-- never started (a head whose steps fit but not the GEMM baseline runs without the baseline).
-- The output ends with issue #17's targets per head (≥ 80 % of peak, ≥ 3.5× PyTorch, ≤ 1.1×
-- ArcFace by time and per GEMM flop: yes/no from this run's figures), each child's wall time and
-- peak RSS. At C = 1,000,000 (2 GB W, 6 GB for Sub-center ArcFace):
--   fvl scripts/bench/heads.lua --C 1000000 --steps 2 --twopass 0
-- Every step is timed twice in the same process, alternately: with the fused class blocks
-- (fvl.F.fused(true), the default: the first columns) and with the two-pass path
-- (fvl.F.fused(false): "2-pass ms", "gain" = its time / the fused one); --recompute 1 adds the
-- fused path recomputing each block's cosines in the backward ("recomp ms": the cost of dropping
-- the B×C logits buffer). "×arc" = the head's step / ArcFace's step in this run; "×arc/FLOP" the same
-- per GEMM flop performed (Sub-center ArcFace's forward GEMM is K times ArcFace's, its backward's too
-- with FVL_GROUP_SPARSE=0).
local fvl = fvl or require "fvl"

local cli = require "fvl.cli"
local util = require "fvl.util"
local parser = cli.parser("fvl scripts/bench/heads.lua",
  "Time a training step of every loss head against the three bare GEMMs of that step; peak memory.")
parser:option("--C", "classes (default: 10000 and 100000)"):convert(cli.integer("C", 2))
parser:option("--heads", "heads, comma separated (default: all)")
parser:option("--steps", "timed step/GEMM pairs (default 15 at C <= 20,000, 5 above)"):convert(cli.integer("steps", 1))
parser:option("--B", "batch", "256"):convert(cli.integer("B", 1))
parser:option("--D", "embedding dimension", "512"):convert(cli.integer("D", 1))
parser:option("--warmup", "warm-up steps", "1"):convert(cli.integer("warmup", 0))
parser:option("--threads", "threads"):convert(cli.integer("threads", 1))
parser:option("--one", "run one head in this process (used by the driver)")
parser:option("--pair", "A,B: the steps of two heads alternately in one process and their ratio " ..
              "(e.g. arcface,margin_arcface; default C 100000)")
parser:option("--torch", "0: skip the PyTorch peer", "1"):convert(cli.integer("torch", 0, 1))
parser:option("--twopass", "0: skip the two-pass path (fvl.F.fused(false)) timed beside the fused one", "1")
  :convert(cli.integer("twopass", 0, 1))
parser:option("--recompute", "1: also time the fused path recomputing each block's cosines in the backward",
              "0"):convert(cli.integer("recompute", 0, 1))
parser:option("--gemm", "0: skip the bare-GEMM baseline (GEMM ms, ratio); default 1, or 0 for a head whose " ..
              "GEMM phase would not fit in memory"):convert(cli.integer("gemm", 0, 1))
parser:option("--probe_above", "above this C, estimate each head's (and PyTorch peer's) peak memory from two " ..
              "small runs first; skip what would not fit", "200000"):convert(cli.integer("probe_above", 0))
parser:option("--probe_C", "the memory probe's class counts: this and twice it (the B×C buffers above glibc's " ..
              "32 MB mmap threshold, as at large C, so that PyTorch's peak extrapolates)", "40000")
  :convert(cli.integer("probe_C", 2))
parser:option("--mem_mb", "memory (MB) a head may use (default: MemAvailable from /proc/meminfo when it starts)")
  :convert(cli.integer("mem_mb", 1))
parser:option("--check", "1: check every PyTorch peer against the head on a small case (loss and gradients, " ..
              "float64 in PyTorch) and exit", "0"):convert(cli.integer("check", 0, 1))
local args = parser:parse(arg or {})
local ALL = { "softmax", "normface", "cosface", "arcface", "combined", "sphereface", "mv_softmax",
              "curricularface", "circle", "center", "discface", "npcface",
              "adacos", "subcenter_arcface", "magface", "adaface", "elasticface",
              "margin_arcface", "margin_curricularface", "margin_adaface" }
-- margin_<name>: the scripts/examples/margin_<name>.lua head (fvl.loss.margin, the target logit
-- written in Lua); anything else: fvl.loss[name]
local function make_head(name, o)
  local ex = name:match("^margin_(.+)$")
  if ex then
    local dir = (arg and arg[0] or "scripts/bench/heads.lua"):gsub("bench/heads%.lua$", "")
    return dofile(dir .. "examples/margin_" .. ex .. ".lua")(o)
  end
  return fvl.loss[name](o)
end
-- timed step/GEMM pairs per head: given, or 15 at C ≤ 20,000 (a ~60 ms step) and 5 above
local function steps_for(C) return args.steps or (C <= 20000 and 15 or 5) end
local TIGHT = { softmax = true, normface = true, cosface = true, arcface = true, combined = true }
if args.threads then fvl.threads(args.threads) end


local function best(t)
  local b = math.huge
  for _, v in ipairs(t) do b = math.min(b, v) end
  return b
end

-- one head in this process: prints a machine-readable line. The step runs in each mode of the
-- loss primitives (fvl.F.fused: true = the fused class blocks, false = the two-pass path, where
-- margin_ce writes the B×C gradient and the cosine backward reads it; "recompute" = fused, with
-- the backward recomputing each block's cosines), alternating with the GEMMs, best of N each.
local function run_one(name, C)
  local B, D = args.B, args.D
  fvl.manual_seed(1)
  local x = fvl.randn(B, D)
  x:requires_grad()
  local y = fvl.randint(C, { B })
  local head = make_head(name, { dim = D, classes = C })
  local R = head.weight:size(1)   -- rows of W: C, or C·K for Sub-center ArcFace (its K-wide GEMMs)
  local opt = fvl.optim.sgd(head:parameters(), { lr = 0.1 })
  local modes = { true }
  if args.twopass == 1 then modes[#modes + 1] = false end
  if args.recompute == 1 then modes[#modes + 1] = "recompute" end
  -- minor page faults and kernel seconds of this process so far (Linux /proc; 0 elsewhere)
  local tick = 100   -- USER_HZ
  local function faults()
    local f = io.open("/proc/self/stat")
    if not f then return 0, 0 end
    local v = {}
    for w in f:read("a"):gsub("^.*%) ", ""):gmatch("%S+") do v[#v + 1] = w end
    f:close()
    return tonumber(v[8]) or 0, (tonumber(v[13]) or 0) / tick
  end
  local flt, sys = {}, {}   -- per mode: faults and kernel seconds summed over the timed steps
  local function step(mode)
    fvl.F.fused(mode)
    collectgarbage()
    local f0, s0 = faults()
    local t0 = fvl.clock()
    x.grad = nil
    opt:zero_grad()                     -- as users call it: gradients set to nil, timed
    local loss = head(x, y)
    loss:backward()
    local dt = fvl.clock() - t0
    local f1, s1 = faults()
    flt[mode] = (flt[mode] or 0) + f1 - f0
    sys[mode] = (sys[mode] or 0) + s1 - s0
    return dt
  end

  -- phase 1: warm-up, then memory of one step per mode (nothing else allocated)
  local mem = {}
  for k, mode in ipairs(modes) do
    for _ = 1, math.max(args.warmup, 1) do step(mode) end
    -- a workspace the previous mode kept is not this mode's (Sub-center ArcFace's B×C max lives
    -- in its gradient workspace on the 2-pass path: dropped with it, or the old workspace stays
    -- alive beside the new; its fused path drops the 2-pass buffers itself, and they its own)
    head._gws, head._max = nil, nil
    collectgarbage()                    -- the warm-up's garbage is not part of the step's peak
    local m0 = fvl.mem(true)
    step(mode)
    mem[k] = fvl.mem().peak
  end
  local hwm = util.vmhwm_mb() * 1024   -- KB

  -- phase 2: the step in each mode and its three bare GEMMs (same shapes) alternately, best of N
  -- each, so that all see the same machine load
  -- (W itself as the GEMMs' R×D operand: the same shape without a second copy of W)
  local gemm_on = args.gemm ~= 0
  local a, w, g
  if gemm_on then a, w, g = fvl.randn(B, D), head.weight:detach(), fvl.randn(B, R) end
  local function gemm()
    if not gemm_on then return -1 end
    return fvl.no_grad(function()
      local t0 = fvl.clock()
      local z = fvl.matmul(a, w:t())
      local dx = fvl.matmul(g, w)
      local dw = fvl.matmul(g:t(), a)
      local dt = fvl.clock() - t0
      z:free(); dx:free(); dw:free()
      return dt
    end)
  end
  gemm()
  local ts, tg = {}, {}
  for k = 1, #modes do ts[k] = {} end
  flt, sys = {}, {}                     -- the timed steps only
  for i = 1, steps_for(C) do
    tg[i] = gemm()
    for k, mode in ipairs(modes) do ts[k][i] = step(mode) end
  end
  local gms = best(tg) * 1e3
  -- engine bytes at the step's peak, less W and W.grad (and Center's C×D centres: state like W),
  -- in B×C float buffers (target ≤ 2: the logits and one more); x and its gradient (B×D each)
  -- are included
  local bc, wbytes = B * R * 4, R * D * 4
  local state = head.centers and head.centers:numel() * 4 or 0
  local out = {}
  for k = 1, 3 do
    local ms = ts[k] and best(ts[k]) * 1e3 or -1
    local pk = mem[k] or 0
    local bufs = (pk - 2 * wbytes - state) / bc
    out[#out + 1] = string.format("%.3f %.2f %.1f %.1f", ms, bufs,
                                  (pk - 2 * wbytes - state - math.floor(bufs) * bc) / (B * D * 4), pk / 2 ^ 20)
  end
  -- modes in the order fused, two-pass, recompute (-1 when not run)
  local order = { [true] = 1, [false] = 2, recompute = 3 }
  local slot = {}
  for k, mode in ipairs(modes) do slot[order[mode]] = out[k] end
  for k = 1, 3 do slot[k] = slot[k] or "-1 0 0 0" end
  -- last field: the process's peak RSS (MB) over the whole run, the GEMM phase included
  io.write(string.format("RESULT %s %d %.3f %.1f %d %s %s %s %.0f %.1f %.1f\n", name, C, gms < 0 and -1 or gms, hwm / 1024,
                         R, slot[1], slot[2], slot[3], (flt[true] or 0) / steps_for(C),
                         (sys[true] or 0) / steps_for(C) * 1e3, util.vmhwm_mb()))
end

if args.one then
  run_one(args.one, args.C or 10000)
  return
end

-- --pair a,b: the steps of two heads alternately in one process, best of N each, and their ratio
-- (e.g. --pair arcface,margin_arcface --C 100000: a user-written margin against the built-in head)
if args.pair then
  local na, nb = tostring(args.pair):match("^([%w_]+),([%w_]+)$")
  if not na then error("heads.lua: --pair <head>,<head> expected, got " .. tostring(args.pair), 0) end
  local B, D, C = args.B, args.D, args.C or 100000
  fvl.manual_seed(1)
  local x, y = fvl.randn(B, D), nil
  x:requires_grad()
  y = fvl.randint(C, { B })
  local W = fvl.randn(C, D) * 0.05
  local ha, hb = make_head(na, { weight = W }), make_head(nb, { weight = W })
  W = nil
  local function step(h)
    collectgarbage()
    local t0 = fvl.clock()
    x.grad = nil
    h.weight.grad = nil                 -- the optimiser's zero_grad, timed
    h(x, y):backward()
    return fvl.clock() - t0
  end
  for _ = 1, math.max(args.warmup, 1) do step(ha); step(hb) end
  local ta, tb = {}, {}
  for i = 1, steps_for(C) do ta[i] = step(ha); tb[i] = step(hb) end
  local la = require("fvl.util").loadavg()
  print(string.format("pair B=%d D=%d C=%d threads %d: %s %.2f ms, %s %.2f ms per step (best of %d), ratio %.3f (target <= 1.3)%s",
                      B, D, C, fvl.threads(), na, best(ta) * 1e3, nb, best(tb) * 1e3, steps_for(C),
                      best(tb) / best(ta), la and string.format(", load average %s", tostring(la)) or ""))
  return
end

local heads = ALL
if args.heads then
  heads = {}
  for h in tostring(args.heads):gmatch("[^,]+") do heads[#heads + 1] = h end
end
local Cs = args.C and { args.C } or { 10000, 100000 }
-- the per-head child processes run with the interpreter this run was started with
local exe = util.interpreter()
local script = arg and arg[0] or "scripts/bench/heads.lua"
local PY, HERE = "/usr/bin/python3", script:match("^(.*)/[^/]*$") or "."

-- is PyTorch there? nil, or why not (one line)
local function torch_missing()
  local probe = io.popen(PY .. " -c 'import torch' 2>&1")
  local perr = probe:read("a")
  probe:close()
  if perr ~= "" then return (perr:gsub("\n.*", "")) end
end

-- --check 1: every head on a small case (B 16, D 24, C 40, |x| ≈ 20), its loss and gradients written
-- for heads_torch.py --check, which computes the PyTorch peer in float64 on the same inputs and
-- compares (loss to 1e-5, gradients of x and W to 1e-4, relative)
if args.check == 1 then
  local why = torch_missing()
  if why then
    print("heads.lua --check: PyTorch not available (" .. why .. "): apt-get install -y python3-torch")
    os.exit(77)
  end
  local B, D, C = 16, 24, 40
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  local function flat(t, shift)
    local out = {}
    local function rec(v)
      if type(v) == "table" then for _, e in ipairs(v) do rec(e) end
      else out[#out + 1] = string.format("%.9g", v - (shift or 0)) end
    end
    rec(t)
    return table.concat(out, " ")
  end
  for _, name in ipairs(heads) do
    fvl.manual_seed(7)
    local x = (fvl.randn(B, D) * 4):detach()
    x:requires_grad()
    local y = fvl.randint(C, { B })
    local head = make_head(name, { dim = D, classes = C })
    local W0 = head.weight:detach():clone()          -- before the step (the head may not move it, but)
    local call = name == "elasticface" and { margins = fvl.randn(B) * 0.05 + 0.5 } or nil
    local loss = call and head(x, y, call) or head(x, y)
    loss:backward()
    f:write(string.format("case %s %d %d %d %d\n", name, B, D, C, head.weight:size(1)))
    f:write("x ", flat(x:detach():totable()), "\n", "w ", flat(W0:totable()), "\n")
    f:write("y ", flat(y:totable(), 1), "\n")
    if call then f:write("margins ", flat(call.margins:totable()), "\n") end
    f:write(string.format("loss %.9g\n", loss:item()))
    f:write("gx ", flat(x.grad:totable()), "\n", "gw ", flat(head.weight.grad:totable()), "\n", "end\n")
  end
  f:close()
  local p = io.popen(string.format("%s %s/heads_torch.py --check %s --threads 1 2>&1", PY, HERE, path))
  local fails, n = 0, 0
  print(string.format("heads.lua --check: each PyTorch peer (heads_torch.py, float64) against the head on the same "
                      .. "inputs (B %d, D %d, C %d)", B, D, C))
  print(string.format("%-22s %14s %14s %9s %9s %9s", "head", "fvl loss", "torch loss", "Δloss rel", "Δdx rel", "ΔdW rel"))
  for line in p:lines() do
    local nm, rest = line:match("^CHECK (%S+) (.*)$")
    if nm then
      local v = {}
      for w in rest:gmatch("%S+") do v[#v + 1] = w end
      n = n + 1
      if v[6] ~= "ok" then fails = fails + 1 end
      print(string.format("%-22s %14s %14s %9s %9s %9s %s", nm, v[1], v[2], v[3], v[4], v[5], v[6] or rest))
    else
      print("torch: " .. line)
      fails = fails + 1
    end
  end
  p:close()
  os.remove(path)
  print(string.format("heads.lua --check: %d heads, %d failed", n, fails))
  os.exit((fails == 0 and n == #heads) and 0 or 1)
end

-- memory the children may use now (MB): --mem_mb, or MemAvailable (Linux; unlimited elsewhere)
local function mem_available_mb()
  if args.mem_mb then return args.mem_mb end
  local f = io.open("/proc/meminfo")
  if not f then return math.huge end
  local s = f:read("a")
  f:close()
  return (tonumber(s:match("MemAvailable:%s*(%d+)")) or math.huge) / 1024
end

local peak, isa = fvl._bench.fma_peak_all(0.3)
local t_start = fvl.clock()
print(string.format("heads.lua: B=%d D=%d, best of %s steps (alternating with the GEMMs) after %d warm-up, threads %d", args.B,
                    args.D, args.steps or "15 (C ≤ 20,000) / 5", args.warmup, fvl.threads()))
print(string.format("FMA peak %.1f GFLOP/s (%s, %d threads, measured now); load average %s (a loaded machine makes "
                    .. "every figure noisy)", peak, isa, fvl.threads(), util.loadavg()))
-- the class blocks' GEMMs: the engine's own kernel where the CPU has AVX-512 (engine/loss/blk_gemm.c)
print(isa == "avx512" and os.getenv("FVL_BLK_GEMM") ~= "0"
      and "block GEMMs: the engine's AVX-512 kernel (FVL_BLK_GEMM=0 in the environment: OpenBLAS per block)"
      or "block GEMMs: single-threaded OpenBLAS per block")
-- the GEMM flops a step performs: the forward's 2·B·D·R (R = rows of W: C, or C·K for Sub-center
-- ArcFace) and the backward's dX and dW, 2·B·D·R each — or 2·B·D·C each where Sub-center's backward
-- skips the zeros of its gradient (engine/loss/blk_sel.c: the AVX-512 block kernel with
-- fvl.F.group_sparse on, the default), so that GFLOP/s and % peak count only work that is done
local SPARSE = isa == "avx512" and os.getenv("FVL_BLK_GEMM") ~= "0" and fvl.F.group_sparse()
print("Sub-center ArcFace's backward: " .. (SPARSE and "without the zeros of its gradient (FVL_GROUP_SPARSE=0: dense)"
                                          or "dense, K times ArcFace's"))
local function gemm_flops(R, C)
  local back = SPARSE and R > C and C or R
  return 2 * args.B * args.D * (R + 2 * back)
end
-- PyTorch's step for the heads, at class count C: { [head] = {ms =, rss = MB} }, and { [head] = why skipped }
local function torch_times(C)
  if args.torch == 0 then return {}, {} end
  local why = torch_missing()
  if why then
    print("PyTorch not available (" .. why .. "): apt-get install -y python3-torch for the ratio")
    args.torch = 0
    return {}, {}
  end
  local cmd = string.format("OMP_NUM_THREADS=%d %s %s/heads_torch.py --heads %s --C %d --B %d --D %d --threads %d --steps %d "
                            .. "--probe-above %d --probe-C %d%s 2>&1", fvl.threads(), PY, HERE, table.concat(heads, ","), C,
                            args.B, args.D, fvl.threads(), steps_for(C), args.probe_above, args.probe_C,
                            args.mem_mb and (" --mem-mb " .. args.mem_mb) or "")
  local t0 = fvl.clock()
  local p, t, skip = io.popen(cmd), {}, {}
  for line in p:lines() do
    local n, ms, rss = line:match("^RESULT (%S+) %d+ (%S+) (%S+)")
    local sn, why2 = line:match("^SKIP (%S+) %d+ (.*)$")
    if n then t[n] = { ms = tonumber(ms), rss = tonumber(rss) }
    elseif sn then skip[sn] = why2; print(string.format("torch: %s skipped at C=%d: %s", sn, C, why2))
    elseif not line:match("^MEM ") then print("torch: " .. line) end
    io.stdout:flush()
  end
  p:close()
  print(string.format("torch: %d peers timed in %.0f s", #heads, fvl.clock() - t0))
  return t, skip
end

-- one child: RESULT fields (21 numbers and names), its output, wall seconds
local function child(h, C, steps, gemm)
  local cmd = string.format("%s %s --one %s --C %d --B %d --D %d --steps %d --warmup %d --twopass %d --recompute %d --gemm %d%s 2>&1",
                            exe, script, h, C, args.B, args.D, steps, args.warmup, args.twopass,
                            args.recompute, gemm, args.threads and (" --threads " .. args.threads) or "")
  local t0 = fvl.clock()
  local p = io.popen(cmd)
  local out = p:read("a")
  p:close()
  local f = {}
  local line = out:match("RESULT [^\n]*")
  if line then for v in line:gmatch("%S+") do f[#f + 1] = v end end
  return f, out, fvl.clock() - t0
end

-- the gemm mode a head runs in at class count C, or nil and why not: above --probe_above, a probe
-- at probe_C and 2·probe_C (one step each) gives the peak RSS after the steps and after the GEMMs;
-- both extrapolated linearly to C (×1.1 + 256 MB) against the memory available now
local est_mb = {}
local function plan(h, C)
  local want = args.gemm or 1
  if C <= args.probe_above then return want end
  local c1, c2 = args.probe_C, 2 * args.probe_C
  local f1, o1 = child(h, c1, 1, want)
  local f2, o2 = child(h, c2, 1, want)
  if #f1 ~= 21 or #f2 ~= 21 then
    return nil, "memory probe failed: " .. ((#f1 ~= 21 and o1 or o2):gsub("\n", " ")):sub(1, 200)
  end
  local function extra(a, b) return (a + (b - a) / (c2 - c1) * (C - c1)) * 1.1 + 256 end
  local step_mb, all_mb = extra(tonumber(f1[5]), tonumber(f2[5])), extra(tonumber(f1[21]), tonumber(f2[21]))
  local avail = mem_available_mb()
  if want == 1 and all_mb <= avail then est_mb[h] = all_mb; return 1 end
  if step_mb <= avail then
    est_mb[h] = step_mb
    if want == 1 then
      print(string.format("%-15s %7d  GEMM baseline skipped: the steps need ~%.0f MB, with the GEMMs ~%.0f MB; %.0f MB available",
                          h, C, step_mb, all_mb, avail))
    end
    return 0
  end
  return nil, string.format("needs ~%.0f MB (peak RSS at C=%d and %d, extrapolated), %.0f MB available", step_mb, c1, c2, avail)
end

-- arcface runs first, so that every other head's time can be given relative to it (×arc)
for i, h in ipairs(heads) do
  if h == "arcface" and i > 1 then table.remove(heads, i); table.insert(heads, 1, h); break end
end
local rec = args.recompute == 1
print(string.format("%-15s %7s %9s %9s %6s %6s %8s %8s %8s %8s %7s %6s %7s %7s %9s %7s %6s %9s %9s %8s %6s%s", "head", "C",
                    "ms/step", "GEMM ms", "ratio", "target", "B×C bufs", "rest B×D", "peak MB", "VmHWM MB", "faults", "sys ms",
                    "GFLOP/s", "% peak", "torch ms", "×torch", "×arc", "×arc/FLOP", "2-pass ms", "2p bufs", "gain",
                    rec and string.format(" %9s %7s", "recomp ms", "rec/fus") or ""))
local function num(v) return tonumber(v) or -1 end
local summary = {}   -- per C, per head: the figures the targets need
for _, C in ipairs(Cs) do
  local tt, tskip = torch_times(C)
  local arc_ms, arc_flops
  for _, h in ipairs(heads) do
    local gemm, why = plan(h, C)
    local f, out, wall = {}, "", 0
    if gemm then f, out, wall = child(h, C, steps_for(C), gemm) end
    local n, c = out:match("RESULT (%S+) (%d+)")
    local s = { head = h, C = C, wall = wall, torch = tt[h], torch_skip = tskip[h] }
    summary[#summary + 1] = s
    if n and #f == 21 then
      -- RESULT name C gms hwm R, then (ms bufs rest peak) for fused, two-pass, recompute, then
      -- the fused step's page faults and kernel ms per step, then the whole run's peak RSS
      local gms, hwm, R = num(f[4]), num(f[5]), num(f[6])
      local ms, bufs, rest, pk = num(f[7]), num(f[8]), num(f[9]), num(f[10])
      local ms2, bufs2, msr = num(f[11]), num(f[12]), num(f[15])
      local flops = gemm_flops(R, C)
      if h == "arcface" then arc_ms, arc_flops = ms, flops end
      local target = TIGHT[h] and 1.15 or 1.3
      local ratio = gms > 0 and ms / gms or nil
      local gf = flops / (ms * 1e-3) / 1e9
      local tms = tt[h] and tt[h].ms
      s.ms, s.pct = ms, 100 * gf / peak
      s.xtorch = tms and tms / ms
      s.xarc = arc_ms and ms / arc_ms
      s.xarc_flop = arc_ms and (ms / flops) / (arc_ms / arc_flops)
      s.rss, s.est = num(f[21]), est_mb[h]
      print(string.format("%-15s %7d %9.2f %9s %6s %6.2f %8.2f %8.1f %8.1f %8.1f %7.0f %6.0f %7.1f %6.1f%% %9s %7s %6s %9s %9s %8s %6s%s%s",
                          n, tonumber(c), ms, ratio and string.format("%.2f", gms) or "-",
                          ratio and string.format("%.3f", ratio) or "-", target, bufs, rest, pk, hwm, num(f[19]),
                          num(f[20]), gf, 100 * gf / peak,
                          tms and string.format("%.2f", tms) or "-", tms and string.format("%.2f", tms / ms) or "-",
                          arc_ms and string.format("%.3f", ms / arc_ms) or "-",
                          s.xarc_flop and string.format("%.3f", s.xarc_flop) or "-",
                          ms2 > 0 and string.format("%.2f", ms2) or "-", ms2 > 0 and string.format("%.2f", bufs2) or "-",
                          ms2 > 0 and string.format("%.3f", ms2 / ms) or "-",
                          rec and string.format(" %9.2f %7.3f", msr, msr / ms) or "",
                          (not ratio or ratio <= target) and "" or "  (over target)"))
    elseif not gemm then
      s.skip = why
      print(string.format("%-15s %7d  skipped: %s", h, C, why))
    else
      s.skip = "failed"
      print(string.format("%-15s %7d  failed: %s", h, C, (out:gsub("\n", " ")):sub(1, 200)))
    end
    io.stdout:flush()
  end
end
print("ms/step and the columns up to ×torch: the fused class blocks (fvl.F.fused(true), the default);")
print("           2-pass ms, 2p bufs: the same step with fvl.F.fused(false) (margin_ce writes the B×C")
print("           gradient, the cosine backward reads it), timed alternately in the same process;")
print("           gain = 2-pass ms / ms/step; ×arc = ms/step / arcface's ms/step in this run")
print("×arc/FLOP = the head's time per GEMM flop performed / ArcFace's (= ×arc for every head but Sub-center")
print("           ArcFace, whose K sub-centres per class make its forward GEMM K times larger, and its backward")
print("           too where it is dense)")
if rec then
  print("recomp ms = fused, the backward recomputing each block's cosines by a GEMM instead of reading")
  print("           the saved ones (the cost of dropping the B×C logits buffer); rec/fus = its ratio")
end
print("B×C bufs = engine bytes at the step's peak minus W and W.grad (Center: and its C×D centres),")
print("           in B×C float buffers")
print("           (target ≤ 2: the logits and one extra buffer; x, dx and small vectors included)")
print("           (subcenter_arcface: in B×(C·K) buffers, target ≤ 2.2; fused: the cosines and the B×C")
print("           max, 1 + 1/K; 2-pass: the cosines, one gradient workspace that also holds the max, and")
print("           the max's B×C gradient, 2 + 1/K)")
print("rest B×D = what the peak holds beyond W, W.grad and the whole B×C buffers counted in B×C bufs,")
print("           in B×D float buffers")
print("           (x, x.grad, a saved x̂ or difference: no third B×C buffer when this is a few units)")
print("peak MB = engine bytes at the step's peak (W, W.grad included); VmHWM = the process's peak RSS")
print("           over the steps (the GEMM phase after them: RSS MB in the targets table)")
print("faults, sys ms = minor page faults and kernel CPU ms per timed fused step (mean; the allocator keeps freed")
print("           blocks for reuse, so a steady step faults next to nothing)")
print("GFLOP/s = 2·B·D·(R + 2·R') / step time (R = rows of W; R' = R, or C for Sub-center's sparse backward);")
print("           % peak = of the FMA peak above; ×torch = torch ms / ms/step")
print("torch ms = scripts/bench/heads_torch.py's step, the default PyTorch user path (plain autograd ops, grads")
print("           set to None), every head (margin_<name>: the same maths as <name>, the same peer), each in")
print("           its own process; heads.lua --check compares every peer's loss and gradients with the head's")

-- issue #17's targets, per head: step ≥ 80 % of the FMA peak, ≥ 3.5× PyTorch's step (where its peer
-- ran), ≤ 1.1× ArcFace's step by time and per GEMM flop; yes/no from this run's figures
local function yn(v, ok) if v == nil then return "-" end return ok and "yes" or "no" end
print("")
print("targets (issue #17): step ≥ 80 % of FMA peak, ≥ 3.5× PyTorch's step, ≤ 1.1× ArcFace (time; per GEMM flop)")
print(string.format("%-22s %7s %9s %6s %5s %9s %7s %6s %6s %6s %9s %6s %7s %8s %8s %8s  %s", "head", "C", "ms/step",
                    "% peak", "≥80%", "torch ms", "×torch", "≥3.5×", "×arc", "≤1.1×", "×arc/FLOP", "≤1.1×", "wall s",
                    "RSS MB", "est MB", "torch MB", "note"))
for _, s in ipairs(summary) do
  local note = s.skip or ""
  if s.torch_skip then note = (note ~= "" and note .. "; " or "") .. "torch: " .. s.torch_skip
  elseif not s.torch and args.torch == 1 then note = (note ~= "" and note .. "; " or "") .. "torch: no result" end
  print(string.format("%-22s %7d %9s %6s %5s %9s %7s %6s %6s %6s %9s %6s %7.1f %8s %8s %8s  %s", s.head, s.C,
                      s.ms and string.format("%.2f", s.ms) or "-", s.pct and string.format("%.1f", s.pct) or "-",
                      yn(s.pct, s.pct and s.pct >= 80),
                      s.torch and string.format("%.2f", s.torch.ms) or "-",
                      s.xtorch and string.format("%.2f", s.xtorch) or "-", yn(s.xtorch, s.xtorch and s.xtorch >= 3.5),
                      s.xarc and string.format("%.3f", s.xarc) or "-", yn(s.xarc, s.xarc and s.xarc <= 1.1),
                      s.xarc_flop and string.format("%.3f", s.xarc_flop) or "-",
                      yn(s.xarc_flop, s.xarc_flop and s.xarc_flop <= 1.1), s.wall,
                      s.rss and string.format("%.0f", s.rss) or "-", s.est and string.format("%.0f", s.est) or "-",
                      s.torch and string.format("%.0f", s.torch.rss) or "-", note))
end
print("wall s = the head's child process (start, W's init, warm-up, steps, GEMMs); RSS MB = its peak resident memory;")
print("est MB = the estimate it was started on (above --probe_above classes); torch MB = the peer's peak RSS")
print(string.format("heads.lua: %.0f s in all; load average after: %s (figures from a shared machine are noisy)",
                    fvl.clock() - t_start, util.loadavg()))
