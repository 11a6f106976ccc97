-- The fused class-block backward (fvl.F.fused): every head gives the same loss and, to fp32
-- rounding, the same gradients with it on and off — at one block and at many blocks, with clamped
-- cosines, with a second consumer of the cosines (NPCFace's hard mean, a Lua margin reading
-- ctx.cos), with per-row scales and margins (SphereFace, MagFace, AdaFace), on Partial FC — and it
-- passes finite differences itself; its results are the same bits with 1 and 2 threads.
local fvl = fvl or require "fvl"
local F = fvl.F
local ROOT = (TEST_DIR or "tests") .. "/.."
local function example(name) return dofile(ROOT .. "/scripts/examples/margin_" .. name .. ".lua") end

local close = expect_tensor_close   -- max |a − e| <= tol·(max |e| + 1e-6), tests/lua/run.lua

local function with_fused(on, fn) return with_setting(F.fused, on, fn) end

-- heads built from the same options (a fresh copy of W each); "margin_x": scripts/examples
local function make(name, o)
  local ex = name:match("^margin_(.+)$")
  if ex then return example(ex)(o) end
  return fvl.loss[name](o)
end

-- two steps of the head with fused off and on, same data; compares losses and every gradient
local function compare(name, opts, shape, tweak)
  local B, D, C = shape[1], shape[2], shape[3]
  fvl.manual_seed(5)
  local W = fvl.randn(C * (opts._rows or 1), D)
  local xs, ys = {}, {}
  for k = 1, 2 do
    xs[k] = fvl.randn(B, D) * 3
    ys[k] = fvl.randint(C, { B })
    if tweak then tweak(xs[k], ys[k], W) end
  end
  local function run(on)
    local o = { weight = W }
    for k, v in pairs(opts) do if k ~= "_rows" then o[k] = v end end
    fvl.manual_seed(6)   -- the same draws (ElasticFace's margins, Partial FC's samples) in both runs
    local head = make(name, o)
    local out = {}
    with_fused(on, function()
      for k = 1, 2 do
        out[k] = head_step_grads(head, leaf(xs[k]), ys[k])
      end
    end)
    return out
  end
  local a, b = run(false), run(true)
  for k = 1, 2 do
    local what = string.format("%s %dx%dx%d step %d", name, B, D, C, k)
    expect_near(b[k].loss, a[k].loss, 1e-6, 0, what .. " loss")
    close(b[k].x, a[k].x, 2e-5, what .. " x.grad")
    for i = 1, #a[k] do close(b[k][i], a[k][i], 2e-5, what .. " parameter " .. i .. " grad") end
  end
end

local HEADS = {
  { "normface", {} }, { "cosface", {} }, { "am_softmax", {} }, { "arcface", {} },
  { "arcface", { easy_margin = true } }, { "arcface", { fallback = "clamp" } }, { "arcface", { grad = "detached" } },
  { "combined", {} }, { "sphereface", {} }, { "sphereface", { feature_scale = "s" } },
  { "mv_softmax", {} }, { "curricularface", {} }, { "circle", {} }, { "discface", {} }, { "npcface", {} },
  { "adacos", {} }, { "subcenter_arcface", { K = 3, _rows = 3 } }, { "magface", {} }, { "adaface", {} },
  { "elasticface", {} }, { "margin_arcface", {} }, { "margin_curricularface", {} }, { "margin_adaface", {} },
  { "softmax", {} },
}

describe("fused class blocks equal the two-pass path", function()
  for _, h in ipairs(HEADS) do
    local label = h[1]
    for k, v in pairs(h[2]) do if k ~= "_rows" then label = label .. " " .. k .. "=" .. tostring(v) end end
    it(label .. " (one block)", function() compare(h[1], h[2], { 6, 5, 7 }) end)
    it(label .. " (many blocks)", function() compare(h[1], h[2], { 9, 16, 5000 }) end)
  end
  it("clamped and near-one cosines (x a multiple of its target's centre)", function()
    local function tweak(x, y, W)
      local yt = y:totable()
      for i = 1, 3 do x[i]:copy(W[yt[i]] * (i + 1)) end
    end
    compare("arcface", {}, { 9, 16, 5000 }, tweak)
    compare("cosface", {}, { 6, 5, 7 }, tweak)
    compare("subcenter_arcface", { K = 3, _rows = 3 }, { 9, 16, 2000 }, tweak)
  end)
  it("a second consumer of the cosines adds its gradient to the blocks", function()
    -- a Lua margin that also reads ctx.cos (tracked): its gradient reaches the cosine node
    local function mk(o)
      o.target = function(c, ctx) return c - 0.2 + 0.01 * ctx.cos:sum(2):reshape(c:numel()) end
      o.s = 16
      return fvl.loss.margin(o)
    end
    fvl.loss.cos_sum_margin = mk
    compare("cos_sum_margin", {}, { 9, 16, 5000 })
    fvl.loss.cos_sum_margin = nil
  end)
  it("Partial FC", function()
    compare("arcface", { partial_fc = 0.5 }, { 9, 16, 3000 })
    compare("cosface", { partial_fc = 0.3 }, { 6, 5, 40 })
  end)
end)

describe("fused class blocks", function()
  it("pass finite differences", function()
    fvl.threads(1)
    local LABELS = { 1, 2, 3, 1, 5, 7 }
    for _, h in ipairs { { "arcface", { s = 8 } }, { "cosface", { s = 8 } }, { "sphereface", { s = 8 } },
                         { "mv_softmax", { s = 8 } }, { "magface", { s = 8 } }, { "adaface", { s = 8 } },
                         { "subcenter_arcface", { s = 8, K = 3 } } } do
      local o = { dim = 5, classes = 7 }
      for k, v in pairs(h[2]) do o[k] = v end
      local head = fvl.loss[h[1]](o)
      head:evaluate()
      fvl.manual_seed(11)
      local x = fvl.randn(6, 5)
      x:requires_grad()
      with_fused(true, function()
        local ok, report = fvl.gradcheck(function(xx, W) head.weight = W; return head(xx, LABELS) end,
                                         { x, head.weight })
        expect_true(ok, h[1] .. ": " .. tostring(report))
      end)
    end
  end)
  it("give the same bits with 1 and 2 threads", function()
    fvl.manual_seed(9)
    local W, x, y = fvl.randn(5000, 32), fvl.randn(33, 32), fvl.randint(5000, { 33 })
    local function grads(n)
      local prev = fvl.threads()
      fvl.threads(n)
      local head = fvl.loss.arcface { weight = W }
      local xx = leaf(x)
      with_fused(true, function() head(xx, y):backward() end)
      fvl.threads(prev)
      return xx.grad, head.weight.grad
    end
    local x1, w1 = grads(1)
    local x2, w2 = grads(2)
    expect_eq((x1 - x2):abs():max():item(), 0, "x.grad: largest difference between 1 and 2 threads")
    expect_eq((w1 - w2):abs():max():item(), 0, "W.grad: largest difference between 1 and 2 threads")
  end)
  it("keeps no B×C gradient workspace", function()
    local head = fvl.loss.arcface { dim = 8, classes = 50 }
    local x = leaf(fvl.randn(4, 8))
    with_fused(true, function() head(x, { 1, 2, 3, 4 }):backward() end)
    expect_true(head._gws == nil, "the fused path allocated the gradient workspace")
    with_fused(false, function() head(x, { 1, 2, 3, 4 }):backward() end)
    expect_true(head._gws ~= nil, "the two-pass path has its gradient workspace")
  end)
  it("a target gather (AdaFace, fvl.loss.margin heads) writes no B×C gradient either", function()
    -- engine bytes at a step's peak beyond W and W.grad, in B×C buffers: the cosines and small
    -- vectors, as ArcFace (F.target_cos's B values are added in the cosine's blocks)
    local function bufs(name)
      local B, D, C = 32, 16, 2000
      fvl.manual_seed(12)
      local head = make(name, { dim = D, classes = C })
      local x, y = fvl.randn(B, D), fvl.randint(C, { B })
      x:requires_grad()
      local function step() x.grad, head.weight.grad = nil, nil; head(x, y):backward() end
      step(); step()
      collectgarbage(); collectgarbage()
      fvl.mem(true)
      step()
      return (fvl.mem().peak - 2 * C * D * 4) / (B * C * 4)
    end
    with_fused(true, function()
      local arc = bufs("arcface")
      for _, h in ipairs { "adaface", "margin_arcface", "margin_adaface" } do
        local b = bufs(h)
        expect_true(b <= arc + 0.05, string.format("%s holds %.2f B×C buffers, arcface %.2f", h, b, arc))
      end
    end)
  end)
  it("F.fused names a bad argument", function()
    expect_error(function() F.fused("yes") end, "F.fused: on must be true, false or 'recompute', got 'yes'")
    expect_error(function() F.fused(1) end, "F.fused: on must be true, false or 'recompute', got number")
    local prev = F.fused("recompute")
    expect_eq(F.fused(prev), "recompute")
  end)
end)
