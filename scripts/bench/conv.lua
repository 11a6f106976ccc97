-- scripts/bench/conv.lua — the six LeNet++ convolutions (batch 128, 5×5, padding 2) one by one:
-- forward, weight gradient and input gradient in ms and GFLOP/s, on the direct AVX2 kernels
-- and on im2col + sgemm, against a raw single-GEMM rate of this machine.
--
--   fvl scripts/bench/conv.lua [--reps 3] [--threads 0] [--batch 128]
--
-- ratio = conv GFLOP/s / sgemm GFLOP/s (a 1024³ cblas_sgemm on the same threads); a
-- convolution at ratio 1 runs as fast as the best GEMM this BLAS does. The machine may be
-- shared: the best of `reps` timings is kept and the load average is printed.
local cli = require "fvl.cli"
local parser = cli.parser("fvl scripts/bench/conv.lua",
  "The six LeNet++ convolutions one by one (direct kernels and im2col + sgemm) against sgemm's rate.")
parser:option("--reps", "timings per kernel (best kept)", "3"):convert(cli.integer("reps", 1))
parser:option("--threads", "threads (0: all)", "0"):convert(cli.integer("threads", 0))
parser:option("--batch", "batch size", "128"):convert(cli.integer("batch", 1))
local opts = parser:parse(arg or {})
if opts.threads > 0 then fvl.threads(opts.threads) end
local F, B, clock = fvl.F, opts.batch, fvl.clock
fvl.manual_seed(1)

local loadavg = require("fvl.util").loadavg

local function best(fn)
  fn()   -- warm-up: workspaces, page faults
  local b = math.huge
  for _ = 1, opts.reps do
    collectgarbage()   -- last call's tensors go back to the heap: no fresh pages inside the timing
    local t0 = clock()
    fn()
    b = math.min(b, clock() - t0)
  end
  return b
end

local sgemm_s = math.huge
for _ = 1, opts.reps + 1 do sgemm_s = math.min(sgemm_s, fvl._bench.sgemm(1024, 1024, 1024, 3)) end
local sgemm_gf = 2 * 1024 ^ 3 / sgemm_s / 1e9
print(string.format("LeNet++ convolutions, batch %d, %d threads, load %s; sgemm 1024³: %.1f GFLOP/s",
                    B, fvl.threads(), loadavg(), sgemm_gf))

local layers = { { 1, 32, 28 }, { 32, 32, 28 }, { 32, 64, 14 }, { 64, 64, 14 }, { 64, 128, 7 }, { 128, 128, 7 } }
local direct0 = F.conv2d_direct()
local total = { [true] = 0, [false] = 0 }
print(string.format("%-14s %-7s %18s %18s %18s %7s", "layer", "path", "forward", "dW", "dx", "ratio"))
for li, L in ipairs(layers) do
  local C, O, S = L[1], L[2], L[3]
  local x = fvl.randn(B, C, S, S)
  local w = fvl.randn(O, C, 5, 5) * 0.05
  local b = fvl.zeros(O)
  local gy = fvl.randn(B, O, S, S)
  local flops = 2 * B * S * S * O * C * 25
  for _, direct in ipairs { true, false } do
    F.conv2d_direct(direct)
    local tf = best(function() local _ <close> = F.conv2d(x, w, b, 1, 2) end)
    -- backward of w only, then of x only
    local function bw(need_x)
      local xx, ww = x:detach(), w:detach()
      if need_x then xx:requires_grad() else ww:requires_grad() end
      local y <close> = F.conv2d(xx, ww, nil, 1, 2)
      collectgarbage()
      local t0 = clock()
      y:backward(gy)
      return clock() - t0
    end
    local tw, tx = math.huge, math.huge
    bw(false); bw(true)
    for _ = 1, opts.reps do
      tw = math.min(tw, bw(false))
      if li > 1 then tx = math.min(tx, bw(true)) end   -- LeNet++ never needs the image's gradient
    end
    if li == 1 then tx = 0 end
    local work = flops * (li > 1 and 3 or 2)
    local t = tf + tw + tx
    total[direct] = total[direct] + t
    print(string.format("%-14s %-7s %8.1f ms %5.1f GF %8.1f ms %5.1f GF %8.1f ms %5.1f GF %7.2f",
                        string.format("%d %3d->%3d %2dx%-2d", li, C, O, S, S), direct and "direct" or "im2col",
                        tf * 1e3, flops / tf / 1e9, tw * 1e3, flops / tw / 1e9, tx * 1e3,
                        tx > 0 and flops / tx / 1e9 or 0, work / t / 1e9 / sgemm_gf))
  end
end
F.conv2d_direct(direct0)
print(string.format("all six layers, forward + backward: direct %.1f ms, im2col %.1f ms (%.2fx)",
                    total[true] * 1e3, total[false] * 1e3, total[false] / total[true]))
