-- fvl.optim: steps against the closed form, state, options, clipping, errors
local optim = fvl.optim

-- one parameter vector with a fixed gradient each step
local function param(vals) return fvl.tensor(vals):requires_grad() end
local function set_grad(p, g) p.grad = fvl.tensor(g) end

describe("optim.sgd", function()
  it("plain SGD with weight decay: p - lr (g + wd p)", function()
    local p = param { 1, -2 }
    local opt = optim.sgd({ p }, { lr = 0.1, weight_decay = 0.5 })
    set_grad(p, { 0.5, 1 })
    opt:step()
    expect_all_near(p, { 1 - 0.1 * (0.5 + 0.5), -2 - 0.1 * (1 - 1) }, 1e-6, 1e-7)
    expect_eq(opt.state.step, 1)
  end)
  it("momentum and Nesterov over three steps", function()
    for _, nest in ipairs { false, true } do
      local p = param { 1, -2, 0.5 }
      local opt = optim.sgd({ p }, { lr = 0.1, momentum = 0.9, nesterov = nest, weight_decay = 0.01 })
      local ep, eb = { 1, -2, 0.5 }, { 0, 0, 0 }
      local grads = { { 0.5, 0.25, -1 }, { 0.1, -0.3, 0.2 }, { -0.4, 0.6, 0.05 } }
      for t = 1, 3 do
        set_grad(p, grads[t])
        opt:step()
        for i = 1, 3 do
          local d = grads[t][i] + 0.01 * ep[i]
          eb[i] = t == 1 and d or 0.9 * eb[i] + d
          ep[i] = ep[i] - 0.1 * (nest and (d + 0.9 * eb[i]) or eb[i])
        end
      end
      expect_all_near(p, ep, 1e-5, 1e-7)
      expect_all_near(opt.state.momentum_buffer[1], eb, 1e-5, 1e-7)
    end
  end)
  it("no_decay_bias_bn leaves 1-D parameters undecayed", function()
    local w, b = fvl.ones(2, 2):requires_grad(), fvl.ones(2):requires_grad()
    local opt = optim.sgd({ w, b }, { lr = 1, weight_decay = 0.1, no_decay_bias_bn = true })
    w.grad = fvl.zeros(2, 2)
    b.grad = fvl.zeros(2)
    opt:step()
    expect_all_near(w, { { 0.9, 0.9 }, { 0.9, 0.9 } }, 1e-6)
    expect_all_near(b, { 1, 1 })
  end)
  it("skips parameters without a gradient; zero_grad clears gradients", function()
    local a, b = param { 1 }, param { 2 }
    local opt = optim.sgd({ a, b }, { lr = 1, momentum = 0.5 })
    set_grad(a, { 1 })
    opt:step()
    expect_all_near(a, { 0 })
    expect_all_near(b, { 2 })
    expect_eq(opt.state.momentum_buffer[2], nil)
    opt:zero_grad()
    expect_eq(a.grad, nil)
  end)
  it("lr is a writable field (driven by a schedule)", function()
    local p = param { 0 }
    local opt = optim.sgd({ p }, { lr = 1 })
    local sched = fvl.schedule.linear { from = 1, to = 0, steps = 4 }
    local expect = 0
    for k = 0, 3 do
      opt.lr = sched(k)
      set_grad(p, { 1 })
      opt:step()
      expect = expect - sched(k)
    end
    expect_all_near(p, { expect }, 1e-6)
  end)
  it("takes modules and lists of modules, each tensor once", function()
    local net = fvl.nn.Linear(3, 2)
    local head = fvl.loss.cosface { dim = 2, classes = 4 }
    local opt = optim.sgd({ net, head, net.weight }, { lr = 0.1 })
    expect_eq(#opt.params, 3)
  end)
  it("rejects bad options", function()
    local p = param { 1 }
    expect_error(function() optim.sgd({ p }, { lr = 0.1, momentun = 0.9 }) end, "optim.sgd: unknown option 'momentun'")
    expect_error(function() optim.sgd({ p }, {}) end, "optim.sgd: option lr is required")
    expect_error(function() optim.sgd({ p }, { lr = 0.1, nesterov = true }) end, "nesterov needs momentum > 0")
    expect_error(function() optim.sgd({}, { lr = 0.1 }) end, "params is empty")
    expect_error(function() optim.sgd({ p * 2 }, { lr = 0.1 }) end, "params[1] is a computed tensor")
    expect_error(function() optim.sgd({ 3 }, { lr = 0.1 }) end, "params[1] is a number")
    local opt = optim.sgd({ p }, { lr = 0.1 })
    opt.lr = "fast"
    set_grad(p, { 1 })
    expect_error(function() opt:step() end, "sgd:step: lr = fast")
  end)
end)

describe("optim.adamw", function()
  it("matches the closed form with decoupled decay and bias correction", function()
    local p = param { 0.5, -1, 2 }
    local opt = optim.adamw({ p }, { lr = 0.01, weight_decay = 0.1, betas = { 0.8, 0.99 }, eps = 1e-6 })
    local ep, m, v = { 0.5, -1, 2 }, { 0, 0, 0 }, { 0, 0, 0 }
    local grads = { { 0.3, -0.2, 1 }, { -0.1, 0.4, 0.5 }, { 0.2, 0.2, -0.3 } }
    for t = 1, 3 do
      set_grad(p, grads[t])
      opt:step()
      for i = 1, 3 do
        local g = grads[t][i]
        ep[i] = ep[i] * (1 - 0.01 * 0.1)
        m[i] = 0.8 * m[i] + 0.2 * g
        v[i] = 0.99 * v[i] + 0.01 * g * g
        local mh, vh = m[i] / (1 - 0.8 ^ t), v[i] / (1 - 0.99 ^ t)
        ep[i] = ep[i] - 0.01 * mh / (math.sqrt(vh) + 1e-6)
      end
    end
    expect_all_near(p, ep, 1e-5, 1e-7)
    expect_all_near(opt.state.exp_avg[1], m, 1e-5, 1e-8)
    expect_all_near(opt.state.exp_avg_sq[1], v, 1e-4, 1e-9)
    expect_eq(opt.state.param_step[1], 3)
    expect_eq(opt.state.step, 3)
  end)
  it("trains a small regression", function()
    fvl.manual_seed(1)
    local net = fvl.nn.mlp { sizes = { 4, 16, 2 } }
    local x = fvl.randn(32, 4)
    local y = x:matmul(fvl.randn(2, 4):t())
    local opt = optim.adamw(net, { lr = 1e-2 })
    local first, last
    for i = 1, 150 do
      opt:zero_grad()
      local d = net(x) - y
      local l = (d * d):mean()
      l:backward()
      opt:step()
      first = first or l:item()
      last = l:item()
    end
    expect_true(last < first * 0.05, string.format("loss %g -> %g", first, last))
  end)
end)

describe("optim.clip_grad_norm", function()
  it("scales gradients to the global norm and returns the norm before", function()
    local a, b = param { 0, 0 }, param { 0 }
    set_grad(a, { 3, 0 })
    set_grad(b, { 4 })
    local n = optim.clip_grad_norm({ a, b }, 1)
    expect_near(n, 5, 1e-7)
    expect_all_near(a.grad, { 0.6, 0 }, 1e-5)
    expect_all_near(b.grad, { 0.8 }, 1e-5)
    expect_near(optim.clip_grad_norm({ a, b }, 10), 1, 1e-5)
    expect_all_near(b.grad, { 0.8 }, 1e-5)
    expect_error(function() optim.clip_grad_norm({ a }, "big") end, "optim.clip_grad_norm: max_norm must be a number")
  end)
end)
