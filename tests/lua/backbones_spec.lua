-- fvl.nn.iresnet / fvl.nn.mobilefacenet against tests/golden/backbones.json (made by PyTorch from
-- insightface's definitions by tests/golden/make_backbones.py): parameter counts and shapes, stage
-- output shapes, FLOPs per image. Also: grouped convolution and fused BN+PReLU gradients through
-- autograd, fused and separate layers giving the same network, BatchNorm folding, evaluation
-- without a tape, and the errors a user meets. IResNet-34/50/100/200: backbones_slow_spec.lua.
local fvl = fvl or require "fvl"
local util = require "fvl.util"
local nn, F = fvl.nn, fvl.F
fvl.threads(2)

local golden = util.json_decode(assert(util.read_file(TEST_DIR .. "/golden/backbones.json"),
                                       "missing tests/golden/backbones.json"))

-- the structure of a built network in the golden file's terms
local function structure(net)
  local shapes, total = {}, net:num_parameters()
  for _, p in ipairs(net:parameters()) do shapes[#shapes + 1] = table.concat(p:shape(), "x") end
  local stats = 0
  for _, b in ipairs(net:named_buffers()) do
    if b[1]:match("running_") then stats = stats + b[2]:numel()
    elseif b[1]:match("weight$") then   -- the IResNet feature BN's fixed weight
      shapes[#shapes + 1] = table.concat(b[2]:shape(), "x")
      total = total + b[2]:numel()
    end
  end
  table.sort(shapes)
  return shapes, total, stats
end

local function stage_shapes(net, x)
  local out = {}
  net:evaluate()
  fvl.no_grad(function()
    if net.class_name == "IResNet" then
      x = net.prelu(net.bn1(net.conv1(x)))
      for s = 1, 4 do x = net["layer" .. s](x); out[#out + 1] = x:shape() end
    else
      for _, c in ipairs(net.layers:children()) do x = c[2](x); out[#out + 1] = x:shape() end
    end
  end)
  out[#out + 1] = net(fvl.zeros(1, 3, 112, 112)):shape()
  return out
end

function check_against_golden(key, net)
  local g = golden.models[key]
  assert(g, "no golden entry " .. key)
  local shapes, total, stats = structure(net)
  expect_eq(net:num_parameters(), g.params_trainable, key .. " trainable parameters")
  expect_eq(total, g.params_total, key .. " all parameters")
  expect_eq(stats, g.running_stats, key .. " running statistics")
  expect_eq(table.concat(shapes, " "), table.concat(g.param_shapes, " "), key .. " parameter shapes")
  local st = stage_shapes(net, fvl.zeros(1, 3, 112, 112))
  expect_eq(#st, #g.stage_shapes, key .. " stages")
  for i, s in ipairs(st) do
    expect_eq(table.concat(s, "x"), table.concat(g.stage_shapes[i], "x"), key .. " stage " .. i)
  end
  expect_eq(nn.flops(net, { 3, 112, 112 }), g.flops, key .. " FLOPs")
end
BACKBONE_GOLDEN = check_against_golden

describe("backbones match PyTorch's build of insightface's definitions", function()
  for _, d in ipairs { 18 } do   -- 34, 50, 100, 200: backbones_slow_spec.lua (skipped by the sanitizer pass)
    it("iresnet" .. d, function() check_against_golden("iresnet" .. d, nn.iresnet { depth = d }) end)
  end
  it("mobilefacenet dim 512, dim 128, scale 2", function()
    check_against_golden("mobilefacenet_dim512", nn.mobilefacenet { dim = 512 })
    check_against_golden("mobilefacenet_dim128", nn.mobilefacenet { dim = 128 })
    check_against_golden("mobilefacenet_dim512_scale2", nn.mobilefacenet { dim = 512, scale = 2 })
  end)
end)

describe("backbone kernels through autograd", function()
  it("grouped and depthwise conv2d gradients (finite differences)", function()
    fvl.manual_seed(3)
    local x = fvl.randn(2, 4, 5, 6):requires_grad()
    local w = fvl.randn(6, 2, 3, 3):requires_grad()
    local b = fvl.randn(6):requires_grad()
    local r = fvl.randn(2, 6, 3, 3)
    local ok, rep = fvl.gradcheck(function(x, w, b) return (F.conv2d_grouped(x, w, b, 2, 1, 2) * r):sum() end,
                                  { x, w, b }, { eps = 1e-2 })
    expect_true(ok, rep)
    local wd = fvl.randn(4, 1, 3, 3):requires_grad()
    local r2 = fvl.randn(2, 4, 5, 6)
    ok, rep = fvl.gradcheck(function(x, w) return (F.conv2d_grouped(x, w, nil, 1, 1, 4) * r2):sum() end, { x, wd }, { eps = 1e-2 })
    expect_true(ok, rep)
  end)
  it("groups = 1 equals conv2d", function()
    fvl.manual_seed(4)
    local x, w = fvl.randn(3, 3, 9, 8), fvl.randn(5, 3, 3, 3)
    expect_all_near(F.conv2d_grouped(x, w, nil, 2, 1, 1), F.conv2d(x, w, nil, 2, 1):totable(), 1e-4, 1e-4)
  end)
  it("bn_prelu gradients (finite differences) and the separate layers", function()
    fvl.manual_seed(5)
    local x = fvl.randn(3, 4, 3, 3):requires_grad()
    local g, b, a = (fvl.rand(4) + 0.5):requires_grad(), fvl.randn(4):requires_grad(), fvl.rand(4):requires_grad()
    local r = fvl.randn(3, 4, 3, 3)
    local ok, rep = fvl.gradcheck(function(x, g, b, a)
      return (F.bn_prelu(x, nil, nil, g, b, a, true) * r):sum()
    end, { x, g, b, a }, { eps = 1e-3, rtol = 2e-2, atol = 2e-3 })
    expect_true(ok, rep)
    local y1 = F.bn_prelu(x, nil, nil, g, b, a, true)
    local y2 = F.prelu(F.batch_norm(x, nil, nil, g, b, true), a)
    expect_all_near(y1, y2:totable(), 1e-5, 1e-5)
  end)
  it("a MobileFaceNet step is the same fused and unfused", function()
    local function run(fused)
      local old = nn.fused(fused)
      fvl.manual_seed(7)
      local net = nn.mobilefacenet { dim = 16, blocks = { 1, 1, 1, 1 }, input_size = 32 }
      local x = fvl.randn(4, 3, 32, 32)
      local y = net(x)
      local L = (y * y):sum()
      L:backward()
      nn.fused(old)
      return y, net.layers["1"].conv.weight.grad, net.features["4"].running_mean
    end
    local y1, g1, m1 = run(true)
    local y2, g2, m2 = run(false)
    expect_all_near(y1, y2:totable(), 1e-4, 1e-4)
    expect_all_near(g1, g2:totable(), 1e-3, 1e-3)
    expect_all_near(m1, m2:totable(), 1e-5, 1e-5)
  end)
end)

describe("evaluation", function()
  it("evaluate() runs without a tape and fold_batchnorm keeps the outputs", function()
    fvl.manual_seed(8)
    for _, net in ipairs { nn.iresnet { depth = 18, input_size = 32, dim = 8 },
                           nn.mobilefacenet { dim = 8, input_size = 32, blocks = { 2, 1, 1, 1 } } } do
      local x = fvl.randn(6, 3, 32, 32)
      for _ = 1, 3 do net(x) end   -- running statistics away from their initial values
      net:evaluate()
      local y1 = net(x)
      expect_true(y1.is_leaf and not y1.needs_grad, "evaluation output carries no graph")
      nn.fold_batchnorm(net)
      local y2 = net(x)
      local scale = y1:abs():max():item()
      expect_all_near(y2, y1:totable(), 1e-3, 1e-4 * scale, net.name .. " folded")
      local nbn = 0
      net:apply(function(m) if m.class_name == "BatchNorm1d" then nbn = nbn + 1 end end)
      expect_eq(nbn, 0, net.name .. " BatchNorm1d left after folding")
    end
  end)
  it("fvl.nn.save / fvl.nn.load round-trips a backbone", function()
    fvl.manual_seed(9)
    local net = nn.mobilefacenet { dim = 8, input_size = 32, blocks = { 1, 1, 1, 1 } }
    net(fvl.randn(4, 3, 32, 32))
    net:evaluate()
    local x = fvl.randn(2, 3, 32, 32)
    local path = os.tmpname() .. ".npz"
    nn.save(path, net)
    local back = nn.load(path)
    os.remove(path)
    back:evaluate()
    expect_all_near(back(x), net(x):totable(), 0, 0, "loaded model")
  end)
  it("training mode records the tape", function()
    local net = nn.mobilefacenet { dim = 8, input_size = 32, blocks = { 1, 1, 1, 1 } }
    local y = net(fvl.randn(2, 3, 32, 32))
    expect_true(y.needs_grad, "training output has a graph")
  end)
end)

describe("backbone errors", function()
  it("names the function, argument, expected and actual", function()
    expect_error(function() nn.iresnet { depth = 19 } end, "iresnet: depth = 19 (expected 18|34|50|100|200)")
    expect_error(function() nn.iresnet { depth = 18, fp16 = true } end, "fp16")
    expect_error(function() nn.iresnet { depth = 18, dimm = 3 } end, "dimm")
    expect_error(function() nn.mobilefacenet { blocks = { 1, 2 } } end, "blocks must be a list of 4")
    local net = nn.mobilefacenet { dim = 8 }
    expect_error(function() net(fvl.zeros(1, 3, 64, 64)) end, "mobilefacenet: input is 1×3×64×64, expected batch×3×112×112")
    expect_error(function() nn.Conv2d(4, 6, 3, { groups = 4 }) end, "groups = 4 must divide")
    expect_error(function() F.conv2d_grouped(fvl.zeros(1, 4, 5, 5), fvl.zeros(4, 1, 3, 3), nil, 1, 1, 2) end,
                 "conv2d: input is 1x4x5x5 but the weight 4x1x3x3 (groups = 2) expects 2 input channel(s), got 4")
    expect_error(function() nn.fold_batchnorm(nn.mobilefacenet { dim = 8 }) end, "evaluate() first")
  end)
end)
