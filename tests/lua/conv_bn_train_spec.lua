-- F.conv2d_bn_act_train: a convolution, BatchNorm with the batch's statistics and PReLU (or none)
-- as one tracked op (engine/nn/layers.c; the depthwise kernels in conv_dw.c run the BatchNorm per
-- channel while the channel's planes are in cache, forward and backward). It runs the same loops in
-- the same order as F.conv2d / F.conv2d_grouped followed by F.bn_prelu / F.batch_norm, so the
-- output, every gradient and the running statistics are compared bit for bit with those layers,
-- on the depthwise kernels and on the other convolution paths; then finite differences on small
-- shapes, the same bits with 1, 2 and 3 threads, a MobileFaceNet training step, and the errors.
local fvl = fvl or require "fvl"
local nn, F = fvl.nn, fvl.F
fvl.threads(2)

-- {B, C, H, W, O, k, stride, padding, groups, what}
local SHAPES = {
  { 3, 8, 9, 9, 8, 3, 1, 1, 8, "depthwise 3x3" },
  { 2, 8, 11, 10, 8, 3, 2, 1, 8, "depthwise 3x3, stride 2, odd sizes" },
  { 4, 16, 7, 7, 16, 7, 1, 0, 16, "global depthwise 7x7 (one output per plane)" },
  { 2, 40, 6, 6, 40, 3, 1, 1, 40, "depthwise, several channel blocks" },
  { 2, 32, 6, 6, 48, 1, 1, 0, 1, "1x1 (direct kernels)" },
  { 2, 5, 8, 7, 16, 3, 1, 1, 1, "3x3 (direct kernels)" },
  { 2, 16, 9, 9, 32, 3, 2, 1, 1, "3x3 stride 2" },
  { 2, 8, 7, 7, 12, 3, 1, 1, 4, "grouped" },
}

-- the BatchNorm/PReLU arguments: {what, uses running statistics, affine, prelu = "channel"|"shared"|nil}
local MODES = {
  { "BN + PReLU", true, true, "channel" },
  { "BN + shared PReLU, no affine", true, false, "shared" },
  { "BN only", true, true, nil },
  { "no running statistics", false, true, "channel" },
}

local function inputs(c, m, bias, seed)
  fvl.manual_seed(seed)
  local B, C, H, W, O, k, _, _, g = table.unpack(c, 1, 9)
  local t = {
    x = fvl.randn(B, C, H, W):requires_grad(),
    w = (fvl.randn(O, C // g, k, k) * 0.3):requires_grad(),
    b = bias and fvl.randn(O):requires_grad() or nil,
    ga = m[3] and (fvl.rand(O) + 0.5):requires_grad() or nil,
    be = m[3] and fvl.randn(O):requires_grad() or nil,
    a = m[4] == "channel" and (fvl.rand(O) * 0.5):requires_grad() or m[4] == "shared" and fvl.tensor { 0.2 }:requires_grad()
        or nil,
    rm = m[2] and fvl.randn(O) * 0.1 or nil,
    rv = m[2] and fvl.rand(O) + 0.5 or nil,
  }
  return t
end

-- one forward + backward; returns the output, the gradients and the running statistics
local function step(c, t, fused, r)
  local st, pd, g = c[7], c[8], c[9]
  local y
  if fused then
    y = F.conv2d_bn_act_train(t.x, t.w, t.b, st, pd, g, t.rm, t.rv, t.ga, t.be, 1e-5, t.a, 0.1)
  else
    local z = g > 1 and F.conv2d_grouped(t.x, t.w, t.b, st, pd, g) or F.conv2d(t.x, t.w, t.b, st, pd)
    if t.a then
      y = F.bn_prelu(z, t.rm, t.rv, t.ga, t.be, t.a, true, 0.1, 1e-5)
    else
      y = F.batch_norm(z, t.rm, t.rv, t.ga, t.be, true, 0.1, 1e-5)
    end
  end
  r = r or fvl.randn(table.unpack(y:shape()))
  ;(y * r):sum():backward()
  local out = { y = y:detach(), x = t.x.grad, w = t.w.grad }
  for _, k in ipairs { "b", "ga", "be", "a" } do if t[k] then out[k] = t[k].grad end end
  if t.rm then out.rm, out.rv = t.rm, t.rv end
  return out, r
end

local function same_bits(a, b, what)
  for k, v in pairs(b) do
    expect_true(a[k] ~= nil, what .. ": " .. k .. " missing")
    expect_all_near(a[k], v:totable(), 0, 0, what .. ": " .. k)
  end
end

describe("F.conv2d_bn_act_train equals the separate layers, bit for bit", function()
  for i, c in ipairs(SHAPES) do
    it(c[10], function()
      for j, m in ipairs(MODES) do
        for _, bias in ipairs { false, true } do
          local what = string.format("%s, %s, bias %s", c[10], m[1], tostring(bias))
          local got, r = step(c, inputs(c, m, bias, 100 * i + j), true)
          local want = step(c, inputs(c, m, bias, 100 * i + j), false, r)
          same_bits(got, want, what)
        end
      end
    end)
  end
  it("the direct kernels off (im2col + sgemm) and the AVX2 kernels", function()
    for _, set in ipairs { F.conv2d_direct, F.conv2d_avx512 } do
      local old = set(false)
      for _, i in ipairs { 5, 6, 7 } do
        local c = SHAPES[i]
        local got, r = step(c, inputs(c, MODES[1], true, 7))
        local want = step(c, inputs(c, MODES[1], true, 7), false, r)
        same_bits(got, want, c[10] .. " with a switch off")
      end
      set(old)
    end
  end)
end)

describe("F.conv2d_bn_act_train gradients", function()
  it("finite differences on small shapes (depthwise, stride 2, 1x1, grouped)", function()
    for _, c in ipairs { { 2, 3, 5, 6, 3, 3, 1, 1, 3 }, { 2, 2, 6, 5, 2, 3, 2, 1, 2 }, { 3, 4, 3, 3, 5, 1, 1, 0, 1 },
                         { 2, 4, 4, 4, 4, 3, 1, 1, 2 } } do
      fvl.manual_seed(31)
      local B, C, H, W, O, k, st, pd, g = table.unpack(c)
      local x = fvl.randn(B, C, H, W):requires_grad()
      local w = (fvl.randn(O, C // g, k, k) * 0.5):requires_grad()
      local b = fvl.randn(O):requires_grad()
      local ga, be, a = (fvl.rand(O) + 0.5):requires_grad(), fvl.randn(O):requires_grad(), fvl.rand(O):requires_grad()
      local OH, OW = (H + 2 * pd - k) // st + 1, (W + 2 * pd - k) // st + 1
      local r = fvl.randn(B, O, OH, OW)
      local ok, rep = fvl.gradcheck(function(x, w, b, ga, be, a)
        return (F.conv2d_bn_act_train(x, w, b, st, pd, g, nil, nil, ga, be, 1e-5, a) * r):sum()
      end, { x, w, b, ga, be, a }, { eps = 1e-3, rtol = 3e-2, atol = 3e-3 })
      expect_true(ok, string.format("%dx%dx%dx%d, k %d, stride %d, groups %d: %s", B, C, H, W, k, st, g, tostring(rep)))
    end
  end)
end)

describe("F.conv2d_bn_act_train is deterministic", function()
  it("the same bits with 1, 2 and 3 threads", function()
    local before = fvl.threads()
    for _, i in ipairs { 1, 2, 4, 5, 8 } do
      local c = SHAPES[i]
      local res, r = {}, nil
      for _, n in ipairs { 1, 2, 3 } do
        fvl.threads(n)
        res[n], r = step(c, inputs(c, MODES[1], true, 50 + i), true, r)
      end
      same_bits(res[2], res[1], c[10] .. ": 2 threads")
      same_bits(res[3], res[1], c[10] .. ": 3 threads")
    end
    fvl.threads(before)
  end)
end)

describe("MobileFaceNet trains through it", function()
  it("a training step has the same bits as with the separate layers", function()
    local function run(on)
      fvl.manual_seed(17)
      local net = nn.mobilefacenet { dim = 8, input_size = 32, blocks = { 2, 1, 1, 1 } }
      local x = fvl.randn(4, 3, 32, 32)
      local real, calls = F.conv2d_bn_act_train, 0
      F.conv2d_bn_act_train = function(...)
        calls = calls + 1
        if on then return real(...) end
        return nil   -- the caller falls back to the separate layers
      end
      local ok, err = pcall(function()
        local y = net(x)
        ;(y * y):sum():backward()
      end)
      F.conv2d_bn_act_train = real
      assert(ok, err)
      local out = {}
      for _, p in ipairs(net:named_parameters()) do out[p[1]] = p[2].grad end
      for name, t in pairs(net:state()) do if name:match("running") then out[name] = t end end
      return out, calls
    end
    local got, calls = run(true)
    local want = run(false)
    expect_true(calls > 10, "the fused op ran " .. calls .. " times")
    same_bits(got, want, "mobilefacenet")
  end)
end)

describe("F.conv2d_bn_act_train errors", function()
  it("names the argument, expected and actual", function()
    local x, w = fvl.randn(2, 4, 5, 5), fvl.randn(6, 4, 3, 3)
    local rm, rv = fvl.zeros(6), fvl.ones(6)
    expect_error(function() F.conv2d_bn_act_train(x, w, nil, 1, 1, 1, fvl.zeros(5), fvl.ones(5)) end,
                 "conv2d_bn_act_train: running_mean is 5, expected 6 values (one per output channel)")
    expect_error(function() F.conv2d_bn_act_train(x, w, nil, 1, 1, 1, rm, nil) end, "give both running_mean and running_var")
    expect_error(function() F.conv2d_bn_act_train(x, w, nil, 1, 1, 1, nil, nil, nil, nil, 1e-5, fvl.ones(3)) end,
                 "prelu weight is 3, expected 6 values (one per output channel) or 1")
    expect_error(function() F.conv2d_bn_act_train(x, w, nil, 1, 1, 1, fvl.randn(6, 2):select(2, 1), rv) end,
                 "conv2d_bn_act_train: running_mean must be contiguous")
    expect_error(function() F.conv2d_bn_act_train(x, w, nil, 1, 1, 1, rm, rv, nil, nil, 0) end, "conv2d_bn_act_train: eps = 0 (argument 11), expected a positive finite number")
    expect_error(function() F.conv2d_bn_act_train(x, w, nil, 1, 1, 1, rm, rv, nil, nil, 1e-5, nil, 2) end,
                 "conv2d_bn_act_train: momentum = 2 is outside 0..1 (argument 13)")
    expect_error(function() F.conv2d_bn_act_train(fvl.randn(1, 4, 3, 3), w, nil, 1, 0, 1) end,
                 "training needs more than one value per channel, got output 1x6x1x1")
    expect_error(function() F.conv2d_bn_act_train(fvl.randn(1, 3, 5, 5), w, nil, 1, 1, 1) end,
                 "conv2d: input is 1x3x5x5 but the weight 6x4x3x3 expects 4 input channel(s), got 3")
    expect_error(function() F.conv2d_bn_act_train(x, w, nil, 0) end, "conv2d_bn_act_train: stride = 0")
    expect_true(rm:sum():item() == 0 and rv:sum():item() == 6, "a refused call leaves the running statistics")
  end)
end)
