-- helpers of the determinism specs: train a few steps with a given thread count and compare
-- every parameter's bytes. local D = dofile(TEST_DIR .. "/lua/determinism/util.lua")
local fvl = fvl or require "fvl"
local sys = fvl.sys
local tmp = string.format("/tmp/fvl_determinism.%d", sys.getpid())
sys.mkdirs(tmp)

local function bytes(t)
  local path = tmp .. "/t.npy"
  assert(fvl.save(path, t))
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

-- trains `steps` steps with `threads` threads; returns the bytes of every parameter and the losses
local function train(threads, make, steps)
  local before = fvl.threads()
  fvl.threads(threads)
  fvl.manual_seed(11)
  local data, net, head, batch = make()
  local optim = fvl.optim.sgd({ net, head }, { lr = 0.05, momentum = 0.9, weight_decay = 5e-4 })
  local out, step = { losses = {} }, 0
  for b in fvl.data.loader(data, { batch = batch, shuffle = true, seed = 3, drop_last = true }) do
    optim:zero_grad()
    local loss = head(net(b.x), b.y)
    loss:backward()
    optim:step()
    step = step + 1
    out.losses[step] = loss:item()
    if step == steps then break end
  end
  for _, m in ipairs({ net, head }) do
    for _, p in ipairs(m:parameters()) do out[#out + 1] = bytes(p) end
  end
  fvl.threads(before)
  return out
end

local function same_bits(make, steps, what)
  local one = train(1, make, steps)
  for _, t in ipairs({ 2 }) do
    local other = train(t, make, steps)
    for i = 1, steps do
      expect_eq(string.format("%a", other.losses[i]), string.format("%a", one.losses[i]),
                string.format("%s: loss at step %d with %d threads", what, i, t))
    end
    expect_eq(#other, #one)
    for i = 1, #one do
      expect_true(other[i] == one[i], string.format("%s: parameter %d after %d steps with %d threads differs from 1 thread",
                                                    what, i, steps, t))
    end
  end
end

local faces = fvl.data.synthetic_faces{ identities = 300, per_identity = 8, test_identities = 10,
                                        test_per_identity = 2, seed = 7 }
local function mlp(headname)
  return function()
    local net = fvl.nn.mlp{ sizes = { faces.train.x:size(2), 128, 32 } }
    return { x = faces.train.x, labels = faces.train.labels }, net, fvl.loss[headname]{ dim = 32, classes = 300 }, 100
  end
end
local function images(make_net, n, size)
  return function()
    local x = fvl.randn{ n, 1, size, size }
    local labels = {}
    for i = 1, n do labels[i] = (i * 7) % 10 + 1 end
    return { x = x, labels = fvl.tensor(labels, "int32") }, make_net(), fvl.loss.arcface{ dim = 8, classes = 10 }, n // 2
  end
end

return { same_bits = same_bits, mlp = mlp, images = images, bytes = bytes,
         cleanup = function() os.execute("rm -rf '" .. tmp .. "'") end }
