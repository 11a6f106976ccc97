-- Face backbones: forward + backward images/s of IResNet-18, IResNet-50 and MobileFaceNet at
-- 112×112 against PyTorch (scripts/bench/backbones_torch.py, run in the same invocation).
--
--   fvl scripts/bench/backbones.lua [--steps 2] [--batch 32] [--threads 2] [--nets iresnet18,iresnet50,mobilefacenet] [--torch 1] [--eval 1]
--
-- One step = zero grads, forward of a batch×3×112×112 batch, L = Σ y·r (r fixed), backward (no
-- optimiser: the same work on both sides). One warm-up step, then `steps` timed steps; the best
-- step counts. Printed per network: images/s (wall), CPU seconds per image (all threads: on a
-- machine busier than its cores the wall time mostly measures waiting, the CPU time does not),
-- engine peak memory of a step (fvl.mem) and the process's peak RSS, FLOPs per image (2 × the
-- multiply-adds of convolutions and linear layers; a training step ≈ 3 × the forward), the rate
-- reached and its fraction of the FMA peak (threads × one thread's peak, measured here by
-- fvl._bench.fma_peak), then PyTorch's wall and CPU figures and the ratios torch time / fvl time
-- (> 1: fvl is faster). --eval 1 (default) also times the evaluation forward (no tape) with the
-- BatchNorm + PReLU applied in the convolutions' stores (F.conv2d_bn_act) and with the reference
-- path in its place (conv, then a separate BN + PReLU pass), alternating, best of steps + 1 each,
-- and prints the ratio (> 1: the epilogue is faster). The machine is shared: the load average is printed and the figures are
-- noisy; keep the default short. PyTorch: Debian python3-torch (apt-get install -y python3-torch),
-- benchmark-only; without it the fvl side still runs.
local util = require "fvl.util"
local cli = require "fvl.cli"
local parser = cli.parser("fvl scripts/bench/backbones.lua",
  "Face backbones: forward + backward images/s of IResNet-18, IResNet-50 and MobileFaceNet at 112x112 against PyTorch.")
parser:option("--steps", "timed steps", "2"):convert(cli.integer("steps", 1))
parser:option("--batch", "batch size", "32"):convert(cli.integer("batch", 1))
parser:option("--threads", "threads", "2"):convert(cli.integer("threads", 1))
parser:option("--nets", "networks, comma separated", "iresnet18,iresnet50,mobilefacenet")
parser:option("--torch", "0: skip the PyTorch peer", "1"):convert(cli.integer("torch", 0, 1))
parser:option("--eval", "1: also time inference with and without the conv epilogue", "1"):convert(cli.integer("eval", 0, 1))
local opts = parser:parse(arg or {})
fvl.threads(opts.threads)
local T, B = fvl.threads(), opts.batch
local nn = fvl.nn


local builders = {
  iresnet18 = function() return nn.iresnet { depth = 18 } end,
  iresnet34 = function() return nn.iresnet { depth = 34 } end,
  iresnet50 = function() return nn.iresnet { depth = 50 } end,
  iresnet100 = function() return nn.iresnet { depth = 100 } end,
  mobilefacenet = function() return nn.mobilefacenet { dim = 512 } end,
}
local names = {}
for n in tostring(opts.nets):gmatch("[^,]+") do
  if not builders[n] then
    io.stderr:write("backbones.lua: unknown network '" .. n .. "' (expected iresnet18|34|50|100|mobilefacenet)\n")
    os.exit(2)
  end
  names[#names + 1] = n
end

local peak1 = fvl._bench.fma_peak(0.3)
print(string.format("fvl %s, %d threads, batch %d, %d timed steps; FMA peak %.1f GFLOP/s per thread (measured), "
                    .. "load average %s", fvl.info and fvl.info().version or "", T, B, opts.steps, peak1, util.loadavg()))

local ours = {}
for _, name in ipairs(names) do
  fvl.manual_seed(1)
  local net = builders[name]()
  local flops = nn.flops(net, { 3, 112, 112 })
  net:train()
  local x, r = fvl.randn(B, 3, 112, 112), fvl.randn(B, net.dim)
  local function step()
    net:zero_grad()
    local L = (net(x) * r):sum()
    L:backward()
  end
  step()
  collectgarbage()
  fvl.mem(true)
  local wall, cpu = math.huge, math.huge
  for _ = 1, opts.steps do
    local w0, c0 = fvl.clock(), os.clock()
    step()
    wall, cpu = math.min(wall, fvl.clock() - w0), math.min(cpu, os.clock() - c0)
  end
  local peak = fvl.mem().peak / 2 ^ 20
  local rate = 3 * flops * B / wall / 1e9
  ours[name] = { wall = wall, cpu = cpu }
  print(string.format("%-14s %7.2f img/s  %6.3f CPU s/img  peak %7.1f MB (RSS %7.1f MB)  %5.2f GFLOP/img fwd  "
                      .. "%6.1f GFLOP/s = %4.1f%% of FMA peak (%4.1f%% per CPU second)",
                      name, B / wall, cpu / B, peak, util.vmhwm_mb(), flops / 1e9, rate, 100 * rate / (T * peak1),
                      100 * (3 * flops * B / cpu / 1e9) / peak1))
  if opts.eval == 1 then
    -- inference: BN + PReLU in the convolutions' stores (F.conv2d_bn_act) against the same
    -- network with the reference path in its place (conv, then the separate BN+PReLU pass)
    net:evaluate()
    local F = fvl.F
    local fused, reference = F.conv2d_bn_act, F._conv2d_bn_act_reference
    local best = { [true] = { math.huge, math.huge }, [false] = { math.huge, math.huge } }
    for _ = 1, opts.steps + 1 do   -- alternating, so both see the same machine load
      for _, on in ipairs { true, false } do
        F.conv2d_bn_act = on and fused or reference
        collectgarbage()
        local w0, c0 = fvl.clock(), os.clock()
        net(x)
        best[on][1], best[on][2] = math.min(best[on][1], fvl.clock() - w0), math.min(best[on][2], os.clock() - c0)
      end
    end
    F.conv2d_bn_act = fused
    print(string.format("%-14s evaluation %7.2f img/s (%6.4f CPU s/img) with BN+PReLU in the conv epilogue, %7.2f img/s "
                        .. "(%6.4f) without: %.2fx wall, %.2fx CPU", name, B / best[true][1], best[true][2] / B,
                        B / best[false][1], best[false][2] / B, best[false][1] / best[true][1], best[false][2] / best[true][2]))
  end
  net, x, r = nil, nil, nil
  collectgarbage()
end

if opts.torch == 0 then return end
local peer = require "fvl.benchpeer"
local ok, why = peer.available()
if not ok then print(why) return end
peer.run("backbones_torch.py", string.format("--nets %s --batch %d --threads %d --steps %d", table.concat(names, ","), B, T,
                                            opts.steps), T, function(f)
  local name, w, c, rss = f[1], tonumber(f[2]), tonumber(f[3]), tonumber(f[4])
  if ours[name] then
    print(string.format("%-14s torch %7.2f img/s  %6.3f CPU s/img  RSS %7.1f MB   ratio torch/fvl: wall %.2f, CPU %.2f",
                        name, B / w, c / B, rss, w / ours[name].wall, c / ours[name].cpu))
  end
end)
print("load average after: " .. util.loadavg() .. " (figures from a shared machine are noisy)")
