-- LeNet++ training speed: images/s and seconds per epoch (60000 images) at batch 128.
--
--   fvl scripts/bench/lenetpp.lua [--steps 30] [--threads 0] [--batch 128] [--head softmax] [--epoch 0] [--torch 1]
--   e.g. fvl scripts/bench/lenetpp.lua --steps 50 --threads 2;  --epoch 1 times one full epoch
--
-- One step = forward of LeNet++ (dim 2) + loss head + backward + SGD (momentum 0.9, wd 5e-4).
-- Data: Fashion-MNIST through fvl.data.loader when the dataset is installed, else random
-- 60000×1×28×28 images. Peer: the same step in PyTorch (scripts/bench/lenetpp_torch.py, Debian
-- python3-torch, the same batch, threads and step count), run in this invocation after ours;
-- the ratios are PyTorch's time per step / ours (> 1: fvl is faster). --torch 0 skips it. The
-- machine is shared: the load average is printed, and the CPU time per step (process CPU
-- seconds) tells how much of the wall time was ours; the figures are noisy.
local cli = require "fvl.cli"
local parser = cli.parser("fvl scripts/bench/lenetpp.lua",
  "LeNet++ training speed: images/s and seconds per epoch (60000 images) at batch 128, beside PyTorch's.")
parser:option("--steps", "steps timed", "30"):convert(cli.integer("steps", 1))
parser:option("--threads", "threads (0: all)", "0"):convert(cli.integer("threads", 0))
parser:option("--batch", "batch size", "128"):convert(cli.integer("batch", 1))
parser:option("--head", "loss head", "softmax")
parser:option("--epoch", "1: time one full epoch", "0"):convert(cli.integer("epoch", 0, 1))
parser:option("--torch", "0: skip the PyTorch peer", "1"):convert(cli.integer("torch", 0, 1))
local opts = parser:parse(arg or {})

if opts.threads > 0 then fvl.threads(opts.threads) end
local nthreads = fvl.threads()
fvl.manual_seed(1)

local loadavg = require("fvl.util").loadavg

-- data
local ds, source = nil, nil
if fvl.data and fvl.data.fashion_mnist then
  local ok, d = pcall(fvl.data.fashion_mnist, { split = "train" })
  if ok and d then ds, source = d, "Fashion-MNIST train" end
end
if not ds then
  ds = { x = fvl.rand(60000, 1, 28, 28), labels = fvl.randint(10, { 60000 }) }
  source = "random 60000x1x28x28"
end
local N = ds.x:size(1)
local loader = fvl.data.loader({ x = ds.x, labels = ds.labels }, { batch = opts.batch, shuffle = true, seed = 1,
                                                                   drop_last = true })

local net = fvl.nn.lenetpp { dim = 2 }
local head = fvl.loss[opts.head] { dim = 2, classes = 10 }
local opt = fvl.optim.sgd({ net, head }, { lr = 0.01, momentum = 0.9, weight_decay = 5e-4 })

local tf, tb, ts = 0, 0, 0
local function step(batch)
  local t0 = fvl.clock()
  opt:zero_grad()
  local loss = head(net(batch.x), batch.y)
  local t1 = fvl.clock()
  loss:backward()
  local t2 = fvl.clock()
  opt:step()
  local t3 = fvl.clock()
  tf, tb, ts = tf + (t1 - t0), tb + (t2 - t1), ts + (t3 - t2)
  return loss:item()
end

local function next_batch()
  local b = loader:next()
  if not b then b = loader:next() end
  return b
end

print(string.format("LeNet++ (%d parameters), batch %d, head %s, %d threads, data: %s",
                    net:num_parameters(), opts.batch, opts.head, nthreads, source))
for _ = 1, 3 do step(next_batch()) end   -- warm-up (workspaces, page faults)
tf, tb, ts = 0, 0, 0

local steps = opts.steps
if opts.epoch ~= 0 then steps = N // opts.batch end
local load0 = loadavg()
local w0, c0 = fvl.clock(), os.clock()
local loss
for i = 1, steps do
  loss = step(next_batch())
  if opts.epoch ~= 0 and i % 50 == 0 then
    io.write(string.format("\r  step %d/%d  loss %.4f  %.1f img/s", i, steps, loss,
                           i * opts.batch / (fvl.clock() - w0)))
    io.flush()
  end
end
if opts.epoch ~= 0 then io.write("\n") end
local wall, cpu = fvl.clock() - w0, os.clock() - c0
local ips = steps * opts.batch / wall
local epoch_s = 60000 / ips
print(string.format("steps %d  wall %.2f s  (%.3f s/step: forward %.3f, backward %.3f, optimiser %.3f)",
                    steps, wall, wall / steps, tf / steps, tb / steps, ts / steps))
print(string.format("cpu %.2f s (%.2f cores busy on average)  load average before %s, after %s",
                    cpu, cpu / wall, load0, loadavg()))
print(string.format("images/s %.1f   s/epoch %.1f", ips, epoch_s))
if opts.torch == 0 then return end
-- the peer, on the same machine now: PyTorch's step at the same batch and threads
local peer = require "fvl.benchpeer"
local ok, why = peer.available()
if not ok then print(why) return end
local tw, tc
peer.run("lenetpp_torch.py", string.format("--batch %d --threads %d --steps %d", opts.batch, nthreads, math.min(steps, 200)),
         nthreads, function(f) tw, tc = tonumber(f[1]), tonumber(f[2]) end)
if not tw then print("PyTorch run failed") return end
local ow, oc = wall / steps, cpu / steps
print(string.format("PyTorch: %.3f s/step wall, %.3f CPU s/step; fvl: %.3f s/step wall, %.3f CPU s/step",
                    tw, tc, ow, oc))
print(string.format("ratio PyTorch/fvl: wall %.2fx, CPU %.2fx (%s; load average now %s)", tw / ow, tc / oc,
                    tw / ow >= 1 and "fvl faster" or "fvl slower", loadavg()))
print(string.format("last loss %.4f", loss))
