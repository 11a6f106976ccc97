-- scripts/bench/conv_layers.lua — every distinct convolution of an IResNet one by one: forward,
-- weight gradient and input gradient in ms, GFLOP/s and fraction of the FMA peak, weighted by how
-- often the network uses the shape, so the table says which kernels limit a training step.
--
--   fvl scripts/bench/conv_layers.lua [--depth 18] [--batch 32] [--threads 2] [--reps 2] [--direct 1]
--
-- Shapes as insightface's iresnet.py builds them at 112×112: the 3×3 stem, per block a 3×3
-- stride-1 convolution at the block's input resolution and a 3×3 convolution with the block's
-- stride, and the 1×1 stride-2 downsample of each stage's first block. The FMA peak is the
-- threads × one thread's measured peak (fvl._bench.fma_peak); times are CPU seconds of all
-- threads (os.clock) divided by the threads, which a shared machine disturbs less than the wall
-- time. Best of `reps` timings; the load average is printed beside the figures. --direct 0 forces the
-- im2col + sgemm path for the stride-1 layers too.
local cli = require "fvl.cli"
local parser = cli.parser("fvl scripts/bench/conv_layers.lua",
  "Every distinct convolution of an IResNet one by one: forward, dW and dx against the FMA peak.")
parser:option("--depth", "IResNet depth", "18"):choices { "18", "34", "50", "100" }
parser:option("--batch", "batch size", "32"):convert(cli.integer("batch", 1))
parser:option("--threads", "threads", "2"):convert(cli.integer("threads", 1))
parser:option("--reps", "timings per kernel (best kept)", "2"):convert(cli.integer("reps", 1))
parser:option("--direct", "0: im2col + sgemm for every layer", "1"):convert(cli.integer("direct", 0, 1))
parser:option("--avx512", "0: the AVX2 versions of the direct kernels", "1"):convert(cli.integer("avx512", 0, 1))
local opts = parser:parse(arg or {})
fvl.threads(opts.threads)
local T = fvl.threads()
local F, B, clock = fvl.F, opts.batch, os.clock   -- CPU seconds of all threads
local util = require "fvl.util"
fvl.manual_seed(1)

local blocks = ({ ["18"] = { 2, 2, 2, 2 }, ["34"] = { 3, 4, 6, 3 }, ["50"] = { 3, 4, 14, 3 },
                  ["100"] = { 3, 13, 30, 3 } })[opts.depth]
-- distinct shapes {C, O, input size, kernel, stride} with their counts, in network order
local shapes, index = {}, {}
local function add(C, O, S, k, st)
  local key = table.concat({ C, O, S, k, st }, ",")
  if index[key] then index[key].n = index[key].n + 1 return end
  index[key] = { C = C, O = O, S = S, k = k, st = st, n = 1, stem = C == 3 }
  shapes[#shapes + 1] = index[key]
end
add(3, 64, 112, 3, 1)
local inpl, S = 64, 112
for stage, nb in ipairs(blocks) do
  local planes = 64 * 2 ^ (stage - 1)
  for b = 1, nb do
    local st = b == 1 and 2 or 1
    add(inpl, planes, S, 3, 1)
    add(planes, planes, S, 3, st)
    if b == 1 then add(inpl, planes, S, 1, 2) end
    if st == 2 then S = S // 2 end
    inpl = planes
  end
end

local function best(fn)
  fn()   -- warm-up: workspaces, page faults
  local b = math.huge
  for _ = 1, opts.reps do
    collectgarbage()
    local t0 = clock()
    fn()
    b = math.min(b, (clock() - t0) / T)
  end
  return b
end

local peak = fvl._bench.fma_peak(0.3) * fvl.threads()
F.conv2d_direct(opts.direct == 1)
F.conv2d_avx512(opts.avx512 == 1)
print(string.format("IResNet-%s convolutions, batch %d, %d threads, direct kernels %s, FMA peak %.0f GFLOP/s, load %s",
                    opts.depth, B, fvl.threads(), not F.conv2d_direct() and "off" or F.conv2d_avx512() and "AVX-512" or "AVX2",
                    peak, util.loadavg()))
print(string.format("%-22s %3s %16s %16s %16s %9s", "layer C->O @S k/s", "n", "forward", "dW", "dx",
                    "ms x n"))
local total, tflop = 0, 0
for _, L in ipairs(shapes) do
  local pad = L.k == 3 and 1 or 0
  local OS = (L.S + 2 * pad - L.k) // L.st + 1
  local x = fvl.randn(B, L.C, L.S, L.S)
  local w = fvl.randn(L.O, L.C, L.k, L.k) * 0.05
  local gy = fvl.randn(B, L.O, OS, OS)
  local flops = 2 * B * OS * OS * L.O * L.C * L.k * L.k
  local tf = best(function() local _ <close> = F.conv2d(x, w, nil, L.st, pad) end)
  local function bwt(need_x)   -- the backward alone (best of reps)
    local b = math.huge
    for _ = 0, opts.reps do
      local xx, ww = x:detach(), w:detach()
      if need_x then xx:requires_grad() else ww:requires_grad() end
      local y <close> = F.conv2d(xx, ww, nil, L.st, pad)
      collectgarbage()
      local t0 = clock()
      y:backward(gy)
      b = math.min(b, (clock() - t0) / T)
    end
    return b
  end
  local tw = bwt(false)
  local tx = L.stem and 0 or bwt(true)   -- the image's gradient is never needed
  local t = (tf + tw + tx) * L.n
  total = total + t
  tflop = tflop + flops * (L.stem and 2 or 3) * L.n
  local function f(tt) return tt > 0 and string.format("%6.1f ms %4.0f%%", tt * 1e3, flops / tt / 1e9 / peak * 100)
                               or string.format("%16s", "-") end
  print(string.format("%-22s %3d %s %s %s %9.1f", string.format("%4d->%-4d @%-3d %dx%d/%d", L.C, L.O, L.S, L.k, L.k, L.st),
                      L.n, f(tf), f(tw), f(tx), t * 1e3))
end
print(string.format("all convolutions, forward + backward: %.1f ms per batch, %.1f GFLOP/s = %.0f%% of FMA peak; load %s",
                    total * 1e3, tflop / total / 1e9, tflop / total / 1e9 / peak * 100, util.loadavg()))
