-- F.conv2d_bn_act: the convolution with an evaluation-mode BatchNorm and/or PReLU applied as each
-- output is stored (inference; engine/nn fvl_conv_epi). Checked against the reference path
-- (F.conv2d / F.conv2d_grouped, then F.bn_prelu / F.batch_norm / F.prelu in evaluation mode) on
-- every kernel that stores outputs: the direct AVX2 kernels (16-channel vectors and the 4-channel
-- tiles, one and several input-channel blocks), im2col + sgemm (stride 2, and with the direct
-- kernels off), grouped and depthwise convolutions; the same bits with 1, 2 and 3 threads; whole
-- backbones in evaluation, folded or not, against fvl.nn.fused(false); and its errors. It has no
-- backward (it records no autograd node and refuses inputs that need gradients), so there is no
-- finite-difference check: training keeps F.conv2d + F.bn_prelu, checked by backbones_spec.
local fvl = fvl or require "fvl"
local nn, F = fvl.nn, fvl.F
fvl.threads(2)

local reference = F._conv2d_bn_act_reference   -- the separate layers, same arguments

-- {B, C, H, W, O, k, stride, padding, groups}: one shape per code path that stores outputs
local SHAPES = {
  { 2, 3, 9, 9, 16, 3, 1, 1, 1, "direct, 16-channel vectors, one channel block" },
  { 2, 96, 12, 12, 32, 3, 1, 1, 1, "direct, 16-channel vectors, several channel blocks" },
  { 2, 5, 8, 7, 20, 3, 1, 1, 1, "direct, 4-channel tiles, ragged rows" },
  { 2, 32, 6, 6, 48, 1, 1, 0, 1, "direct 1x1" },
  { 2, 16, 9, 9, 32, 3, 2, 1, 1, "im2col + sgemm, stride 2" },
  { 3, 8, 9, 9, 8, 3, 1, 1, 8, "depthwise" },
  { 2, 8, 9, 9, 8, 3, 2, 1, 8, "depthwise, stride 2" },
  { 2, 8, 7, 7, 12, 3, 1, 0, 4, "grouped" },
  { 2, 16, 7, 7, 16, 7, 1, 0, 16, "global depthwise 7x7" },
}

local function case(c, seed)
  fvl.manual_seed(seed)
  local B, C, H, W, O, k, st, pd, g = table.unpack(c, 1, 9)
  return { x = fvl.randn(B, C, H, W), w = fvl.randn(O, C // g, k, k) * 0.3, b = fvl.randn(O), st = st, pd = pd, g = g,
           rm = fvl.randn(O) * 0.2, rv = fvl.rand(O) + 0.5, ga = fvl.randn(O), be = fvl.randn(O), a = fvl.rand(O) * 0.5 }
end
local MODES = {
  { "BN + PReLU", function(t) return t.rm, t.rv, t.ga, t.be, 1e-5, t.a end },
  { "BN without affine + shared PReLU", function(t) return t.rm, t.rv, nil, nil, 1e-3, fvl.tensor { 0.2 } end },
  { "BN only", function(t) return t.rm, t.rv, t.ga, t.be, 1e-5, nil end },
  { "PReLU only (a folded BN)", function(t) return nil, nil, nil, nil, 1e-5, t.a end },
  { "nothing", function() return nil, nil, nil, nil, 1e-5, nil end },
}

describe("F.conv2d_bn_act equals the reference path", function()
  for i, c in ipairs(SHAPES) do
    it(c[10], function()
      local t = case(c, 10 + i)
      for _, direct in ipairs { true, false } do
        local old = F.conv2d_direct(direct)
        for _, m in ipairs(MODES) do
          for _, bias in ipairs { true, false } do
            local b = bias and t.b or nil
            local rm, rv, ga, be, eps, a = m[2](t)
            local y = F.conv2d_bn_act(t.x, t.w, b, t.st, t.pd, t.g, rm, rv, ga, be, eps, a)
            local r = reference(t.x, t.w, b, t.st, t.pd, t.g, rm, rv, ga, be, eps, a)
            local scale = r:abs():max():item()
            expect_all_near(y, r:totable(), 1e-5, 1e-6 * scale,
                            string.format("%s, %s, bias %s, direct %s", c[10], m[1], tostring(bias), tostring(direct)))
          end
        end
        F.conv2d_direct(old)
      end
    end)
  end
end)

describe("F.conv2d_bn_act is deterministic", function()
  -- The epilogue is elementwise, so it adds no dependence on the thread count, and the
  -- im2col + sgemm path plans its sample groups without the thread count (engine/nn/conv.c).
  it("the same bits with 1, 2 and 3 threads", function()
    local before = fvl.threads()
    for i, c in ipairs(SHAPES) do
      local t = case(c, 40 + i)
      local out = {}
      for _, n in ipairs { 1, 2, 3 } do
        fvl.threads(n)
        out[n] = F.conv2d_bn_act(t.x, t.w, t.b, t.st, t.pd, t.g, t.rm, t.rv, t.ga, t.be, 1e-5, t.a)
      end
      expect_all_near(out[2], out[1]:totable(), 0, 0, c[10] .. ": 2 threads")
      expect_all_near(out[3], out[1]:totable(), 0, 0, c[10] .. ": 3 threads")
    end
    fvl.threads(before)
  end)
end)

describe("backbones in evaluation use it", function()
  it("IResNet and MobileFaceNet, folded or not, match the separate layers", function()
    for _, make in ipairs { function() return nn.iresnet { depth = 18, input_size = 32, dim = 8 } end,
                            function() return nn.mobilefacenet { dim = 8, input_size = 32, blocks = { 2, 1, 1, 1 } } end } do
      fvl.manual_seed(21)
      local net = make()
      local x = fvl.randn(5, 3, 32, 32)
      for _ = 1, 3 do net(x) end   -- running statistics away from their initial values
      net:evaluate()
      local calls, real = 0, F.conv2d_bn_act
      F.conv2d_bn_act = function(...) calls = calls + 1; return real(...) end
      local y1 = net(x)
      F.conv2d_bn_act = real
      expect_true(calls > 10, net.name .. ": the fused kernel ran " .. calls .. " times")
      local old = nn.fused(false)
      local y0 = net(x)
      nn.fused(old)
      local scale = y0:abs():max():item()
      expect_all_near(y1, y0:totable(), 1e-4, 1e-5 * scale, net.name)
      nn.fold_batchnorm(net)
      expect_all_near(net(x), y0:totable(), 1e-3, 1e-4 * scale, net.name .. " folded")
      expect_true(nn.flops(net, { 3, 32, 32 }) > 0, "flops still counted")
      net:train()
      local yt = net(fvl.randn(2, 3, 32, 32))
      expect_true(yt.needs_grad, net.name .. ": training takes the autograd path")
    end
  end)
end)

describe("F.conv2d_bn_act errors", function()
  it("refuses gradients and bad shapes, naming the argument", function()
    local x, w = fvl.randn(1, 4, 5, 5), fvl.randn(6, 4, 3, 3)
    local rm, rv = fvl.zeros(6), fvl.ones(6)
    expect_error(function() F.conv2d_bn_act(x, w:clone():requires_grad(), nil, 1, 1, 1, rm, rv) end,
                 "conv2d_bn_act: inference only")
    fvl.no_grad(function()
      expect_true(F.conv2d_bn_act(x, w:clone():requires_grad(), nil, 1, 1, 1, rm, rv) ~= nil, "no_grad lets it run")
    end)
    expect_error(function() F.conv2d_bn_act(x, w, nil, 1, 1, 1, fvl.zeros(5), fvl.ones(5)) end,
                 "conv2d_bn_act: running_mean is 5, expected 6 values (one per output channel)")
    expect_error(function() F.conv2d_bn_act(x, w, nil, 1, 1, 1, rm, nil) end, "give both running_mean and running_var")
    expect_error(function() F.conv2d_bn_act(x, w, nil, 1, 1, 1, nil, nil, fvl.ones(6)) end, "without running statistics")
    expect_error(function() F.conv2d_bn_act(x, w, nil, 1, 1, 1, nil, nil, nil, nil, 1e-5, fvl.ones(3)) end,
                 "prelu weight is 3, expected 6 values (one per output channel) or 1")
    expect_error(function() F.conv2d_bn_act(x, w, nil, 1, 1, 1, rm, rv, nil, nil, 0) end, "conv2d_bn_act: eps = 0 (argument 11), expected a positive finite number")
    expect_error(function() F.conv2d_bn_act(fvl.randn(1, 3, 5, 5), w, nil, 1, 1, 1) end,
                 "conv2d: input is 1x3x5x5 but the weight 6x4x3x3 expects 4 input channel(s), got 3")
    expect_error(function() F.conv2d_bn_act(x, w, nil, 0) end, "conv2d_bn_act: stride = 0")
  end)
end)
