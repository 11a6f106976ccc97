-- fvl.nn: layer gradients through autograd (fvl.gradcheck), BatchNorm modes, module API,
-- initialisation, backbones, and the errors a user meets.
local nn = fvl.nn
local F = fvl.F

-- L = Σ y·r with a fixed random r, so that every output element matters
local function weighted(r) return function(y) return (y * r):sum() end end
local function check(f, inputs, opts)
  local ok, report = fvl.gradcheck(f, inputs, opts)
  expect_true(ok, report)
end
-- distinct values spaced 0.05 apart in random order (no ties inside a pooling window)
local function distinct(...)
  local shape = { ... }
  local n = 1
  for _, s in ipairs(shape) do n = n * s end
  local v = {}
  for i = 1, n do v[i] = (i - n / 2 - 0.5) * 0.05 end
  for i = n, 2, -1 do
    local j = fvl.sys.hash(99, i) % i + 1
    v[i], v[j] = v[j], v[i]
  end
  return fvl.tensor(v):reshape(table.unpack(shape))
end

describe("fvl.F gradients (finite differences through autograd)", function()
  it("conv2d with stride and padding", function()
    fvl.manual_seed(1)
    local x = fvl.randn(2, 3, 6, 5):requires_grad()
    local w = (fvl.randn(4, 3, 3, 3) * 0.5):requires_grad()
    local b = fvl.randn(4):requires_grad()
    local r = fvl.randn(2, 4, 3, 3)
    local L = weighted(r)
    check(function(x, w, b) return L(F.conv2d(x, w, b, 2, 1)) end, { x, w, b })
    local r2 = fvl.randn(2, 4, 4, 3)
    check(function(x, w) return (F.conv2d(x, w, nil, { 1, 1 }, { 0, 0 }) * r2):sum() end, { x, w })
  end)
  it("conv2d with several samples per GEMM group equals one sample at a time", function()
    fvl.manual_seed(2)
    local x, w, b = fvl.randn(5, 2, 7, 7), fvl.randn(3, 2, 5, 5), fvl.randn(3)
    local y = F.conv2d(x, w, b, 1, 2)
    for i = 1, 5 do
      local yi = F.conv2d(x:narrow(1, i, 1), w, b, 1, 2)
      expect_all_near(yi, y:narrow(1, i, 1):totable(), 1e-5, 1e-5)
    end
  end)
  it("conv2d: the direct kernels and im2col + GEMM agree, with gradients (F.conv2d_direct)", function()
    fvl.manual_seed(4)
    local before = F.conv2d_direct()
    expect_eq(type(before), "boolean")
    F.conv2d_direct(true)
    expect_eq(F.conv2d_direct(false), true)   -- returns the previous setting
    expect_eq(F.conv2d_direct(true), false)
    -- 32 output channels (channel-vector kernels) and 5 (row-vector kernels)
    for _, O in ipairs { 32, 5 } do
      local x = fvl.randn(3, 4, 9, 9)
      local w, b = fvl.randn(O, 4, 5, 5) * 0.2, fvl.randn(O)
      local gy = fvl.randn(3, O, 9, 9)
      local out = {}
      for _, direct in ipairs { true, false } do
        F.conv2d_direct(direct)
        local xx, ww, bb = x:detach():requires_grad(), w:detach():requires_grad(), b:detach():requires_grad()
        local y = F.conv2d(xx, ww, bb, 1, 2)
        y:backward(gy)
        out[direct] = { y = y:totable(), dx = xx.grad:totable(), dw = ww.grad:totable(), db = bb.grad:totable() }
      end
      for _, k in ipairs { "y", "dx", "dw", "db" } do
        expect_all_near(fvl.tensor(out[true][k]), out[false][k], 1e-4, 1e-4)
      end
    end
    F.conv2d_direct(before)
    expect_error(function() F.conv2d_direct("yes") end, "boolean expected")
  end)
  it("max and average pooling", function()
    local x = distinct(2, 2, 5, 5):requires_grad()
    local r = fvl.randn(2, 2, 2, 2)
    check(function(x) return (F.max_pool2d(x, 2) * r):sum() end, { x })
    local r3 = fvl.randn(2, 2, 3, 3)
    check(function(x) return (F.max_pool2d(x, 3, 2, 1) * r3):sum() end, { x })
    check(function(x) return (F.avg_pool2d(x, 3, 2, 1) * r3):sum() end, { x })
    -- values
    local t = fvl.tensor({ { { { 1, 2, 3, 4 }, { 5, 6, 7, 8 }, { 9, 10, 11, 12 }, { 13, 14, 15, 16 } } } })
    expect_all_near(F.max_pool2d(t, 2), { { { { 6, 8 }, { 14, 16 } } } })
    expect_all_near(F.avg_pool2d(t, 2), { { { { 3.5, 5.5 }, { 11.5, 13.5 } } } })
  end)
  it("batch_norm in training mode (batch statistics) and evaluation mode (running statistics)", function()
    fvl.manual_seed(3)
    for _, shape in ipairs { { 6, 3 }, { 3, 2, 3, 2 } } do
      local x = fvl.randn(table.unpack(shape)):requires_grad()
      local C = shape[2]
      local g = (fvl.rand(C) + 0.5):requires_grad()
      local b = fvl.randn(C):requires_grad()
      local r = fvl.randn(table.unpack(shape))
      local rm, rv = fvl.zeros(C), fvl.ones(C)
      check(function(x, g, b) return (F.batch_norm(x, rm, rv, g, b, true, 0.1, 1e-5) * r):sum() end,
            { x, g, b }, { atol = 2e-3 })
      local rm2, rv2 = fvl.rand(C), fvl.rand(C) + 0.5
      check(function(x, g, b) return (F.batch_norm(x, rm2, rv2, g, b, false) * r):sum() end, { x, g, b })
    end
  end)
  it("prelu with one weight per channel and one shared weight", function()
    fvl.manual_seed(4)
    local x = distinct(2, 3, 2, 2):requires_grad()
    local a = fvl.tensor { 0.1, 0.2, 0.3 }:requires_grad()
    local a1 = fvl.tensor { 0.25 }:requires_grad()
    local r = fvl.randn(2, 3, 2, 2)
    check(function(x, a) return (F.prelu(x, a) * r):sum() end, { x, a })
    check(function(x, a) return (F.prelu(x, a) * r):sum() end, { x, a1 })
    expect_all_near(F.prelu(fvl.tensor { { -2, 3 } }, fvl.tensor { 0.5 }), { { -1, 3 } })
  end)
  it("linear", function()
    fvl.manual_seed(5)
    local x, w, b = fvl.randn(4, 5):requires_grad(), fvl.randn(3, 5):requires_grad(), fvl.randn(3):requires_grad()
    local r = fvl.randn(4, 3)
    check(function(x, w, b) return (F.linear(x, w, b) * r):sum() end, { x, w, b })
    expect_all_near(F.linear(x, w, b), (x:matmul(w:t()) + b):totable(), 1e-5, 1e-5)
  end)
  it("dropout: mask from the seeded generator, scaled by 1/(1-p), identity when not training", function()
    local x = fvl.ones(200, 50):requires_grad()
    fvl.manual_seed(6)
    local y1 = F.dropout(x, 0.3)
    fvl.manual_seed(6)
    local y2 = F.dropout(x, 0.3)
    expect_eq((y1 - y2):abs():sum():item(), 0)
    local kept = (y1:gt(0)):sum():item()
    expect_near(kept / 10000, 0.7, 0.03)
    expect_near(y1:max():item(), 1 / 0.7, 1e-6)
    y1:sum():backward()
    expect_all_near(x.grad, y1:detach():totable())
    expect_eq((F.dropout(x, 0.3, false) - x):abs():sum():item(), 0)
    local r = fvl.randn(3, 4)
    local z = fvl.randn(3, 4):requires_grad()
    check(function(z) fvl.manual_seed(7); return (F.dropout(z, 0.5) * r):sum() end, { z })
  end)
end)

describe("fvl.nn modules", function()
  it("Linear, Conv2d and friends compute what their functional forms compute", function()
    fvl.manual_seed(8)
    local conv = nn.Conv2d(2, 3, 3, { padding = 1, stride = 2 })
    local x = fvl.randn(2, 2, 5, 5)
    expect_all_near(conv(x), F.conv2d(x, conv.weight, conv.bias, 2, 1):totable(), 1e-6, 1e-6)
    local y = conv(x)
    expect_eq(table.concat(y:shape(), "x"), "2x3x3x3")
    local lin = nn.Linear(4, 2, { bias = false })
    expect_eq(lin.bias, nil)
    expect_eq(#lin:parameters(), 1)
    expect_eq(table.concat(nn.Flatten()(y):shape(), "x"), "2x27")
    expect_all_near(nn.ReLU()(fvl.tensor { -1, 2 }), { 0, 2 })
    expect_eq(tostring(conv), "Conv2d(2, 3, 3, stride=2, padding=1)")
  end)
  it("parameters, named_parameters and state (buffers included)", function()
    local net = nn.Sequential { nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.PReLU(4), nn.Flatten(), nn.Linear(4 * 4 * 4, 2) }
    local names = {}
    for _, p in ipairs(net:named_parameters()) do names[#names + 1] = p[1] end
    expect_eq(table.concat(names, ","), "1.weight,1.bias,2.weight,2.bias,3.weight,5.weight,5.bias")
    expect_eq(#net:parameters(), 7)
    local st = net:state()
    expect_true(st["2.running_mean"] ~= nil and st["2.running_var"] ~= nil, "BN buffers in state()")
    expect_eq(net:num_parameters(), 4 * 9 + 4 + 4 + 4 + 4 + 64 * 2 + 2)
    for _, p in ipairs(net:parameters()) do expect_true(p.is_leaf) end
  end)
  it("train() and evaluate() switch BatchNorm and Dropout in every child", function()
    fvl.manual_seed(9)
    local bn = nn.BatchNorm1d(3, { momentum = 0.5 })
    local net = nn.Sequential { bn, nn.Dropout(0.5) }
    local x = fvl.randn(8, 3) * 2 + 1
    net:train()
    local y = net(x)
    -- running statistics moved half-way to the batch statistics (unbiased variance)
    local m = x:mean(1):totable()
    local xc = x - x:mean(1)
    local var = ((xc * xc):sum(1) / 7):totable()
    expect_all_near(bn.running_mean, { m[1] * 0.5, m[2] * 0.5, m[3] * 0.5 }, 1e-5, 1e-6)
    expect_all_near(bn.running_var, { 0.5 + var[1] * 0.5, 0.5 + var[2] * 0.5, 0.5 + var[3] * 0.5 }, 1e-5, 1e-6)
    expect_true((y:eq(0)):sum():item() > 0, "dropout active while training")
    net:evaluate()
    expect_eq(bn.training, false)
    local ye = net(x)
    -- evaluation: (x - running_mean) / sqrt(running_var + eps), no dropout, no update
    local rm, rv = bn.running_mean:totable(), bn.running_var:totable()
    local xt = x:totable()
    local want = {}
    for i = 1, 8 do
      want[i] = {}
      for c = 1, 3 do want[i][c] = (xt[i][c] - rm[c]) / math.sqrt(rv[c] + 1e-5) end
    end
    expect_all_near(ye, want, 1e-5, 1e-5)
    expect_all_near(bn.running_mean, rm)
    -- a single sample works in evaluation, and is refused in training
    expect_eq(net(x:narrow(1, 1, 1)):size(1), 1)
    net:train()
    expect_error(function() net(x:narrow(1, 1, 1)) end, "BatchNorm1d(3): input is 1×3; training needs more than one value")
  end)
  it("load_state copies values and checks names and shapes", function()
    fvl.manual_seed(10)
    local a, b = nn.mlp { sizes = { 3, 4, 2 }, bn = true }, nn.mlp { sizes = { 3, 4, 2 }, bn = true }
    b:load_state(a:state())
    local x = fvl.randn(5, 3)
    a:evaluate(); b:evaluate()
    expect_all_near(b(x), a(x):totable(), 0, 0)
    local c = nn.mlp { sizes = { 3, 5, 2 }, bn = true }
    expect_error(function() c:load_state(a:state()) end, "load_state: 1.bias is 4 in the state but 5 in mlp")
    expect_error(function() nn.mlp { sizes = { 3, 4, 2 } }:load_state(a:state()) end, "load_state: mlp has 3.bias but the state has no such entry")
    expect_error(function() nn.mlp { sizes = { 3, 4, 2 } }:load_state(a:state(), { strict = true }) end, "no such entry")
    local d = nn.mlp { sizes = { 3, 4, 2 } }
    d:load_state({ ["1.weight"] = a["1"].weight }, { strict = false })
    expect_all_near(d["1"].weight, a["1"].weight:totable(), 0, 0)
  end)
  it("Kaiming and Xavier initialisation have the documented spread", function()
    fvl.manual_seed(11)
    local w = fvl.zeros(256, 128, 3, 3)
    nn.init.kaiming_normal_(w, { nonlinearity = "relu" })
    expect_near(w:square():mean():item(), 2 / (128 * 9), 0.03)
    nn.init.kaiming_uniform_(w, { nonlinearity = "relu", mode = "fan_out" })
    expect_near(w:square():mean():item(), 2 / (256 * 9), 0.03)
    expect_true(w:abs():max():item() <= math.sqrt(6 / (256 * 9)) + 1e-6)
    local v = fvl.zeros(300, 500)
    nn.init.xavier_uniform_(v)
    expect_near(v:square():mean():item(), 2 / 800, 0.03)
    nn.init.xavier_normal_(v, { gain = 2 })
    expect_near(v:square():mean():item(), 4 * 2 / 800, 0.03)
    local lin = nn.Linear(100, 50)
    expect_true(lin.weight:abs():max():item() <= 0.1 + 1e-7, "default U(±1/sqrt(fan_in))")
    nn.init.apply(nn.Sequential { lin }, "xavier_normal")
    expect_eq(lin.bias:abs():sum():item(), 0)
    expect_error(function() nn.Linear(2, 2, { init = "he" }) end, "init = 'he'")
  end)
  it("backbones give embeddings of the asked size", function()
    fvl.manual_seed(12)
    local x = fvl.randn(2, 1, 28, 28)
    local l2 = nn.lenetpp { dim = 2 }
    expect_eq(table.concat(l2(x):shape(), "x"), "2x2")
    expect_eq(table.concat(nn.lenetpp { dim = 3 }(x):shape(), "x"), "2x3")
    expect_eq(#l2:parameters(), 20)
    local r = nn.resnet_small { dim = 8, width = 4 }
    local e = r(x)
    expect_eq(table.concat(e:shape(), "x"), "2x8")
    e:sum():backward()
    for _, p in ipairs(r:parameters()) do expect_true(p.grad ~= nil, "every resnet parameter gets a gradient") end
    expect_eq(table.concat(nn.mlp { sizes = { 6, 5, 4 }, activation = "prelu" }(fvl.randn(3, 6)):shape(), "x"), "3x4")
  end)
  it("a module's gradient through a whole net matches finite differences", function()
    fvl.manual_seed(13)
    local net = nn.Sequential { nn.Conv2d(1, 2, 3, { padding = 1 }), nn.PReLU(2), nn.MaxPool2d(2),
                                nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(8, 3) }
    local x = distinct(3, 1, 4, 4)
    local r = fvl.randn(3, 3)
    check(function() return (net(x) * r):sum() end, net:parameters(), { atol = 2e-3 })
  end)
end)

describe("fvl.nn errors name the layer and both shapes", function()
  it("wrong channel count", function()
    local net = nn.lenetpp { dim = 2 }
    expect_error(function() net(fvl.zeros(4, 3, 28, 28)) end,
                 "Sequential[1]: Conv2d(1, 32, 5, padding=2): input is 4×3×28×28 but the layer expects batch×1×H×W")
    expect_error(function() nn.BatchNorm2d(8)(fvl.zeros(2, 4, 3, 3)) end, "BatchNorm2d(8): input is 2×4×3×3 but the layer expects batch×8×H×W")
    expect_error(function() nn.PReLU(4)(fvl.zeros(2, 3)) end, "PReLU(4): input is 2×3")
  end)
  it("wrong input size", function()
    local net = nn.lenetpp { dim = 2 }
    expect_error(function() net(fvl.zeros(2, 1, 32, 32)) end,
                 "Sequential[17]: Linear(1152, 2): input is 2×2048 but the layer expects batch×1152")
    expect_error(function() nn.Conv2d(1, 1, 5)(fvl.zeros(1, 1, 3, 3)) end, "maps (padded 3×3) are smaller than the 5×5 kernel")
    expect_error(function() nn.MaxPool2d(2)(fvl.zeros(1, 1, 1, 1)) end, "MaxPool2d(2): input is 1×1×1×1")
    expect_error(function() nn.Linear(3, 2)(fvl.zeros(4)) end, "Linear(3, 2): input is 4 but the layer expects batch×3")
  end)
  it("bad constructor arguments and options", function()
    expect_error(function() nn.Conv2d(1, 2, 3, { paddng = 1 }) end, "Conv2d: unknown option 'paddng'")
    expect_error(function() nn.Conv2d(1, 2) end, "Conv2d: kernel size (argument #3) is required")
    expect_error(function() nn.Linear(0, 2) end, "Linear: in_features = 0")
    expect_error(function() nn.Dropout(1) end, "Dropout: p = 1")
    expect_error(function() nn.Sequential { nn.ReLU(), 42 } end, "Sequential: element 2 is a number")
    expect_error(function() nn.mlp { sizes = { 4 } } end, "mlp: sizes must be a list of at least 2")
    expect_error(function() F.conv2d(fvl.zeros(1, 2, 5, 5), fvl.zeros(3, 1, 3, 3)) end,
                 "conv2d: input is 1x2x5x5 but the weight 3x1x3x3 expects 1 input channel(s), got 2")
    expect_error(function() F.max_pool2d(fvl.zeros(1, 1, 4, 4)) end, "max_pool2d: kernel size (argument #2) is required")
    expect_error(function() F.dropout(fvl.zeros(2), 1.5) end, "dropout: p must be in [0, 1), got 1.5")
  end)
end)
