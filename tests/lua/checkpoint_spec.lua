-- checkpoints: round trip, "resume equals uninterrupted", format, atomic generations, errors
local tmpdirs = {}
local function tmpdir()
  local p = os.tmpname()
  os.remove(p)
  tmpdirs[#tmpdirs + 1] = p
  return p
end
local function cleanup()
  for _, d in ipairs(tmpdirs) do os.execute("rm -rf '" .. d .. "'") end
end
local function maxdiff(a, b) return (a - b):abs():max():item() end

-- a small training run: conv + BN + PReLU + Dropout backbone, CenterLoss head with state,
-- SGD with momentum and a schedule, batches drawn with the engine RNG
local function setup(seed)
  fvl.manual_seed(seed)
  local net = fvl.nn.Sequential {
    fvl.nn.Conv2d(1, 4, 3, { padding = 1 }), fvl.nn.BatchNorm2d(4), fvl.nn.PReLU(4), fvl.nn.MaxPool2d(2),
    fvl.nn.Flatten(), fvl.nn.Dropout(0.2), fvl.nn.Linear(4 * 4 * 4, 3) }
  local head = fvl.loss.center { dim = 3, classes = 5 }
  local opt = fvl.optim.sgd({ net, head }, { lr = 0.05, momentum = 0.9, nesterov = true, weight_decay = 1e-3 })
  return net, head, opt
end
local sched = fvl.schedule.cosine { from = 0.05, to = 0.001, steps = 12, warmup = 2 }
local X, Y
local function data()
  fvl.manual_seed(1234)
  X = fvl.randn(40, 1, 8, 8)
  Y = fvl.randint(5, { 40 })
end
local function train(net, head, opt, from, to, losses)
  for k = from, to - 1 do
    local idx = fvl.randint(40, { 8 })          -- batch drawn from the engine RNG
    local x, y = X:index(1, idx), Y:index(1, idx)
    opt.lr = sched(k)
    opt:zero_grad()
    local loss = head(net(x), y)
    loss:backward()
    opt:step()
    losses[#losses + 1] = loss:item()
  end
end

describe("checkpoints", function()
  it("resume equals uninterrupted", function()
    data()
    -- uninterrupted: 12 steps
    local net, head, opt = setup(1)
    local full = {}
    train(net, head, opt, 0, 12, full)
    -- interrupted after 6 steps
    data()
    local net2, head2, opt2 = setup(1)
    local part = {}
    train(net2, head2, opt2, 0, 6, part)
    local dir = tmpdir()
    fvl.save_checkpoint(dir, { net = net2, head = head2, opt = opt2, step = 6, sched = sched })
    -- a fresh process-like start: other seed, other weights, RNG moved on
    local net3, head3, opt3 = setup(99)
    fvl.randn(1000)
    local ck = fvl.load_checkpoint(dir, { net = net3, head = head3, opt = opt3 })
    expect_eq(ck.step, 6)
    train(net3, head3, opt3, ck.step, 12, part)
    for k = 1, 12 do expect_eq(part[k], full[k], "loss at step " .. k) end
    local p1, p3 = net:state(), net3:state()
    for name, t in pairs(p1) do expect_eq(maxdiff(t, p3[name]), 0, name) end
    expect_eq(maxdiff(head.centers, head3.centers), 0, "head.centers")
    expect_eq(maxdiff(head.weight, head3.weight), 0, "head.weight")
    for i, b in pairs(opt.state.momentum_buffer) do
      expect_eq(maxdiff(b, opt3.state.momentum_buffer[i]), 0, "momentum buffer " .. i)
    end
    expect_eq(opt3.state.step, 12)
  end)

  it("round-trips every part and reports what it holds", function()
    fvl.manual_seed(5)
    local net = fvl.nn.mlp { sizes = { 3, 4, 2 }, bn = true }
    local head = fvl.loss.curricularface { dim = 2, classes = 3 }
    local opt = fvl.optim.adamw({ net, head }, { lr = 1e-3 })
    local x, y = fvl.randn(6, 3), fvl.randint(3, { 6 })
    opt:zero_grad()
    head(net(x), y):backward()
    opt:step()
    head.t = 0.37   -- state a training step moved (CurricularFace's EMA)
    local dir = tmpdir()
    local extra = { epoch = 3, tag = "run-a", best = { acc = 0.91, at = { 1, 2 } }, proto = fvl.ones(2, 2) }
    fvl.save_checkpoint(dir, { net = net, head = head, opt = opt, step = 17, extra = extra,
                               sched = fvl.schedule.step { from = 0.1, step_size = 5 } })
    local rng = fvl.rng_state()
    fvl.randn(10)
    local ck = fvl.load_checkpoint(dir)
    expect_eq(ck.version, 1)
    expect_eq(ck.step, 17)
    expect_eq(ck.extra.epoch, 3)
    expect_eq(ck.extra.tag, "run-a")
    expect_eq(ck.extra.best.at[2], 2)
    expect_all_near(ck.extra.proto, { { 1, 1 }, { 1, 1 } })
    expect_eq(ck.sched.kind, "step")
    expect_eq(ck.sched.step_size, 5)
    expect_eq(ck.head.scalars.t, 0.37)
    expect_eq(ck.opt.kind, "adamw")
    expect_eq(ck.opt.state.param_step[1], 1)
    expect_eq(fvl.rng_state().counter, rng.counter, "RNG restored")
    for name, t in pairs(net:state()) do expect_eq(maxdiff(t, ck.net[name]), 0, name) end
    -- restore into fresh objects
    local net2 = fvl.nn.mlp { sizes = { 3, 4, 2 }, bn = true }
    local head2 = fvl.loss.curricularface { dim = 2, classes = 3 }
    local opt2 = fvl.optim.adamw({ net2, head2 }, { lr = 1e-3 })
    fvl.load_checkpoint(dir, { net = net2, head = head2, opt = opt2 })
    expect_eq(head2.t, 0.37)
    expect_eq(maxdiff(head2.weight, head.weight), 0)
    expect_eq(maxdiff(net2["2"].running_var, net["2"].running_var), 0, "BN running_var")
    expect_eq(maxdiff(opt2.state.exp_avg_sq[1], opt.state.exp_avg_sq[1]), 0)
  end)

  it("is code-free JSON + .npy, and saving again replaces the generation atomically", function()
    local net = fvl.nn.Linear(2, 2)
    local dir = tmpdir()
    fvl.save_checkpoint(dir, { net = net, step = 1 })
    local f = io.open(dir .. "/checkpoint.json")
    local h = fvl.json.decode(f:read("a"))
    f:close()
    expect_eq(h.format, "fvl-checkpoint")
    expect_eq(h.version, 1)
    expect_eq(h.gen, 1)
    local w = fvl.load(dir .. "/" .. h.tensors["net.weight"].file)   -- plain .npy
    expect_eq(maxdiff(w, net.weight), 0)
    fvl.no_grad(function() net.weight:fill(3) end)
    fvl.save_checkpoint(dir, { net = net, step = 2 })
    local ck = fvl.load_checkpoint(dir)
    expect_eq(ck.step, 2)
    expect_all_near(ck.net.weight, { { 3, 3 }, { 3, 3 } })
    expect_eq(io.open(dir .. "/g000001/net.weight.npy"), nil, "old generation removed")
    expect_eq(#fvl.sys.glob(dir .. "/*.tmp.*"), 0, "no temporary files left")
  end)

  it("errors: missing, corrupt, newer version, mismatched objects", function()
    local v, err = fvl.load_checkpoint("/nonexistent/ck")
    expect_eq(v, nil)
    expect_true(err:find("load_checkpoint: cannot read /nonexistent/ck/checkpoint.json", 1, true), err)
    local dir = tmpdir()
    local net = fvl.nn.Linear(2, 3)
    fvl.save_checkpoint(dir, { net = net, opt = fvl.optim.sgd(net, { lr = 0.1 }) })
    expect_error(function() fvl.load_checkpoint(dir, { net = fvl.nn.Linear(2, 4) }) end,
                 "load_state: bias is 3 in the state but 4 in Linear")
    expect_error(function() fvl.load_checkpoint(dir, { opt = fvl.optim.adamw(net) }) end,
                 "holds sgd state but the optimiser is adamw")
    expect_error(function() fvl.load_checkpoint(dir, { head = {} }) end, "holds no head")
    expect_error(function() fvl.save_checkpoint(dir, { net = net, stpe = 3 }) end, "save_checkpoint: unknown option 'stpe'")
    expect_error(function() fvl.save_checkpoint(dir, { extra = { f = print } }) end, "extra.f is a function")
    local f = io.open(dir .. "/checkpoint.json", "w")
    f:write('{"format": "fvl-checkpoint", "version": 1, "tens')
    f:close()
    v, err = fvl.load_checkpoint(dir)
    expect_true(v == nil and err:find("checkpoint.json is corrupt", 1, true), tostring(err))
    f = io.open(dir .. "/checkpoint.json", "w")
    f:write('{"format": "fvl-checkpoint", "version": 7}')
    f:close()
    v, err = fvl.load_checkpoint(dir)
    expect_true(v == nil and err:find("format version 7; this fvl reads up to 1", 1, true), tostring(err))
    f = io.open(dir .. "/checkpoint.json", "w")
    f:write('{"format": "fvl-checkpoint", "version": 1, "tensors": {"net.w": {"file": "g1/w.npy", "shape": [2]}}}')
    f:close()
    v, err = fvl.load_checkpoint(dir)
    expect_true(v == nil and err:find("cannot load net.w (g1/w.npy)", 1, true), tostring(err))
  end)
end)
cleanup()
