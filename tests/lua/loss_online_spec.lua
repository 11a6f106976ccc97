-- The online softmax in the forward's class blocks (fvl.F.cosine_margin_ce, fvl.F.online): every
-- head that takes it gives, to fp32 rounding, the loss and the gradients (x, W) of the separate
-- pass (F.cosine, then margin_ce's pass over the B×C cosines) — at one block, at many blocks with a
-- partial last block, with targets in the last block, with large scales and cosines near ±1 (where
-- the running max moves late and rows are redone after the double-precision fix) — and the same bits
-- with 1, 2 and 3 threads.
local fvl = fvl or require "fvl"
local F = fvl.F

local close = expect_tensor_close   -- max |a − e| <= tol·(max |e| + 1e-6), tests/lua/run.lua

local function with_online(on, fn) return with_setting(F.online, on, fn) end

-- shapes {B, D, C}: C = 7 is one block; C = 1000 with B = 8 is 16 blocks of 64 columns, the last
-- one 40 wide; the labels of rows 1–2 are the last class, row 3's the first class of the last block
local ONE, MANY = { 6, 5, 7 }, { 8, 16, 1000 }
local function data(shape, tweak)
  local B, D, C = shape[1], shape[2], shape[3]
  fvl.manual_seed(21)
  local W = fvl.randn(C, D)
  local x = fvl.randn(B, D) * 3
  local yt = fvl.randint(C, { B }):totable()
  yt[1], yt[2] = C, C
  if C > 64 then yt[3] = (C - 1) // 64 * 64 + 1 end
  if tweak then tweak(x, yt, W) end
  return x, fvl.tensor(yt, "int32"), W
end

-- two steps of the head with the online softmax off and on; losses and every gradient
local function compare(name, opts, shape, tweak, threads)
  local x0, y, W = data(shape, tweak)
  local function run(on)
    local o = { weight = W }
    for k, v in pairs(opts) do o[k] = v end
    fvl.manual_seed(6)   -- the same draws (ElasticFace's margins) in both runs
    local head = fvl.loss[name](o)
    local out = {}
    with_online(on, function()
      for k = 1, 2 do
        out[k] = head_step_grads(head, leaf(x0 * k), y)
      end
    end)
    return out
  end
  local prev = fvl.threads()
  if threads then fvl.threads(threads) end
  local ok, a, b = pcall(function() return run(false), run(true) end)
  fvl.threads(prev)
  if not ok then error(a, 0) end
  for k = 1, 2 do
    local what = string.format("%s %dx%dx%d step %d", name, shape[1], shape[2], shape[3], k)
    expect_near(b[k].loss, a[k].loss, 2e-6, 1e-6, what .. " loss")
    close(b[k].x, a[k].x, 2e-5, what .. " x.grad")
    for i = 1, #a[k] do close(b[k][i], a[k][i], 2e-5, what .. " parameter " .. i .. " grad") end
  end
  return b
end

-- the heads whose forward is Head:cosine_margin_ce (mv_softmax: its hard negatives depend on the
-- target's cosine, so the op runs the separate pass; it is here to show that it still agrees)
local HEADS = {
  { "normface", {} }, { "cosface", {} }, { "am_softmax", {} }, { "arcface", {} },
  { "arcface", { easy_margin = true } }, { "arcface", { fallback = "clamp" } }, { "arcface", { grad = "detached" } },
  { "combined", {} }, { "sphereface", {} }, { "sphereface", { feature_scale = "s" } }, { "circle", {} },
  { "discface", {} }, { "magface", {} }, { "elasticface", {} }, { "mv_softmax", {} },
}

describe("the online softmax equals the separate pass", function()
  for _, h in ipairs(HEADS) do
    local label = h[1]
    for k, v in pairs(h[2]) do label = label .. " " .. k .. "=" .. tostring(v) end
    it(label .. " (one block)", function() compare(h[1], h[2], ONE) end)
    it(label .. " (many blocks, partial last block)", function() compare(h[1], h[2], MANY) end)
  end
  it("1, 2 and 3 threads: the same bits", function()
    local ref
    for n = 1, 3 do
      local r = compare("arcface", {}, MANY, nil, n)
      if ref then
        expect_eq(r[1].loss, ref[1].loss, n .. " threads: loss")
        expect_eq((r[1].x - ref[1].x):abs():max():item(), 0, n .. " threads: x.grad")
        expect_eq((r[1][1] - ref[1][1]):abs():max():item(), 0, n .. " threads: W.grad")
      end
      ref = ref or r
    end
  end)
  it("large scales with the target's logit the largest, found in the last block", function()
    -- x_i close to its target's centre (cos ≈ 0.99 < 0.9999): the running max of the rows whose
    -- target is in the last block jumps by s·(0.99 − max negative) there, so every earlier
    -- block's Σexp is rescaled by a factor near exp(−s)
    local function tweak(x, yt, W)
      for i = 1, 4 do
        local w = W[yt[i]]
        x[i]:copy(w + fvl.randn(w:numel()) * (0.14 * w:norm():item() / math.sqrt(w:numel())))
      end
    end
    compare("normface", { s = 300 }, MANY, tweak)
    compare("arcface", { s = 200 }, MANY, tweak)
    compare("circle", {}, MANY, tweak)   -- γ = 256
  end)
  it("cosines at ±1 (rows redone after the double-precision fix) and clamped entries", function()
    local function tweak(x, yt, W)
      for i = 1, 3 do x[i]:copy(W[yt[i]] * (i + 1)) end     -- cos = 1 at the target
      x[4]:copy(W[yt[5]] * -2)                              -- cos = −1 at another row's class
    end
    compare("arcface", {}, MANY, tweak)
    compare("cosface", { s = 500 }, MANY, tweak)
    compare("sphereface", {}, ONE, tweak)
  end)
end)

describe("fvl.F.cosine_margin_ce", function()
  -- the op against F.margin_ce(F.cosine(...)) on specs the heads do not all use
  local function both(spec_fn, shape)
    local x0, y, W0 = data(shape or MANY)
    local res = {}
    for k, on in ipairs { false, true } do
      local x, W = leaf(x0), leaf(W0)
      fvl.manual_seed(22)   -- the same row vectors in both runs
      local spec = spec_fn(x0:size(1))
      local loss = with_online(on, function() return F.cosine_margin_ce(x, W, y, spec) end)
      loss:backward()
      res[k] = { loss:item(), x.grad, W.grad, spec }
    end
    expect_near(res[2][1], res[1][1], 2e-6, 1e-6, "loss")
    close(res[2][2], res[1][2], 2e-5, "x.grad")
    close(res[2][3], res[1][3], 2e-5, "W.grad")
    return res
  end
  it("per-row scales and margins with gradients, given targets, clamped cosines, row thresholds", function()
    local r = both(function(B)
      local s = fvl.rand(B) * 20 + 10
      s:requires_grad()
      local m = fvl.rand(B) * 0.3 + 0.2
      m:requires_grad()
      return { s = s, target = "arc", m = m }
    end)
    close(r[2][4].s.grad, r[1][4].s.grad, 2e-5, "s.grad")
    close(r[2][4].m.grad, r[1][4].m.grad, 2e-5, "m.grad")
    r = both(function(B)
      local v = fvl.rand(B) - 0.5
      v:requires_grad()
      return { s = 30, target = "given", value = v, clamp = 1e-3 }
    end)
    close(r[2][4].value.grad, r[1][4].value.grad, 2e-5, "value.grad")
    both(function(B) return { s = 30, target = "cos", m = 0.3, negative = "affine", hard = "row",
                              threshold = fvl.rand(B) * 0.2, a = 1.2, b = 0.1 } end)
    both(function() return { s = 30, target = "arc", m = 0.5, negative = "affine", hard = "arc", a = 1.2, b = 0.2 } end)
  end)
  it("is the same graph: the same workspace, no B×C gradient workspace, errors named", function()
    local x, y, W = data(ONE)
    local ws = fvl.empty(6, 7)
    local l1 = F.cosine_margin_ce(leaf(x), leaf(W), y, { s = 8, target = "arc", m = 0.5 }, ws, "myhead")
    local l2 = F.margin_ce(F.cosine(x, W), y, { s = 8, target = "arc", m = 0.5 })
    expect_near(l1:item(), l2:item(), 2e-6, 1e-6, "loss with a workspace")
    close(ws, F.cosine(x, W), 0, "the cosines in ws")
    expect_error(function() F.cosine_margin_ce(x, W, { 1, 2, 3, 4, 5, 9 }, { s = 8 }, nil, "myhead") end,
                 "myhead: labels[6] = 9 is outside 1..7")
    expect_error(function() F.cosine_margin_ce(x, W:t(), y, { s = 8 }) end, "cosine_margin_ce")
    expect_error(function() F.cosine_margin_ce(x, W, y, { s = 8, bogus = 1 }) end, "bogus")
    expect_error(function() F.online("yes") end, "F.online: on must be true or false, got string")
  end)
end)
