-- Error paths of the loss heads: every misuse gives a message that names the head, the
-- argument, what was expected and what came — and the head still works afterwards.
local fvl = fvl or require "fvl"
fvl.threads(1)   -- small problems: OpenMP regions cost more than the work on a loaded machine
-- FVL_LOSS_REFERENCE=1: heads and primitives from fvl.loss.reference (tensor-op compositions)
if os.getenv("FVL_LOSS_REFERENCE") == "1" then fvl.loss.use_reference(true) end
local F = os.getenv("FVL_LOSS_REFERENCE") == "1" and require "fvl.loss.reference" or fvl.F

local B, D, C = 4, 6, 5
local function batch()
  fvl.manual_seed(3)
  return fvl.randn(B, D), { 1, 2, 3, 5 }
end

local CENTRE_HEADS = { "softmax", "normface", "sphereface", "cosface", "am_softmax", "arcface",
                       "combined", "mv_softmax", "curricularface", "circle", "center", "discface",
                       "npcface" }

describe("loss heads: options", function()
  for _, name in ipairs(CENTRE_HEADS) do
    it(name .. " rejects an unknown option", function()
      local err = expect_error(function() fvl.loss[name] { dim = D, classes = C, margn = 0.3 } end,
                               name .. ": unknown option 'margn' (expected one of:")
      expect_true(err:find("dim", 1, true), "the message lists the allowed names")
    end)
    it(name .. " requires dim and classes without weight=", function()
      expect_error(function() fvl.loss[name] { classes = C } end, name .. ": option dim")
      expect_error(function() fvl.loss[name] { dim = D } end, name .. ": option classes")
    end)
    it(name .. " rejects a weight of the wrong shape", function()
      expect_error(function() fvl.loss[name] { dim = D + 1, classes = C, weight = fvl.randn(C, D) } end,
                   name .. ": weight is 5×6 but dim = 7")
      expect_error(function() fvl.loss[name] { weight = fvl.randn(C) } end,
                   name .. ": weight must be a C×D tensor")
    end)
    it(name .. " rejects a bad nonfinite option", function()
      expect_error(function() fvl.loss[name] { dim = D, classes = C, nonfinite = "ignore" } end,
                   name .. ": nonfinite = 'ignore' (expected error|warn)")
    end)
  end
  it("circle_pairwise rejects an unknown option", function()
    expect_error(function() fvl.loss.circle_pairwise { gama = 80 } end,
                 "circle_pairwise: unknown option 'gama'")
  end)
  it("enumerated options list their values", function()
    expect_error(function() fvl.loss.arcface { dim = D, classes = C, fallback = "wrap" } end,
                 "arcface: fallback = 'wrap' (expected mm|easy|none|clamp)")
    expect_error(function() fvl.loss.arcface { dim = D, classes = C, grad = "st" } end,
                 "arcface: grad = 'st' (expected exact|detached)")
    expect_error(function() fvl.loss.sphereface { dim = D, classes = C, feature_scale = "x" } end,
                 "sphereface: feature_scale = 'x' (expected norm|s)")
    expect_error(function() fvl.loss.mv_softmax { dim = D, classes = C, kind = "sphere" } end,
                 "mv_softmax: kind = 'sphere' (expected am|arc)")
    expect_error(function() fvl.loss.npcface { dim = D, classes = C, hardness_from = "x" } end,
                 "npcface: hardness_from = 'x' (expected raw|reweighted)")
    expect_error(function() fvl.loss.discface { dim = D, classes = C, base = "sphere" } end,
                 "discface: base = 'sphere' (expected cos|arc)")
  end)
  it("type errors name the option", function()
    expect_error(function() fvl.loss.arcface { dim = D, classes = C, m = "0.5" } end,
                 "arcface: m must be a number, got string")
    expect_error(function() fvl.loss.arcface { dim = D, classes = C, easy_margin = 1 } end,
                 "arcface: easy_margin must be true or false, got number")
    expect_error(function() fvl.loss.sphereface { dim = D, classes = C, m = 1.5 } end,
                 "sphereface: m = 1.5 (expected an integer)")
    expect_error(function() fvl.loss.arcface { dim = 0, classes = C } end, "arcface: dim = 0 is outside 1..")
    expect_error(function() fvl.loss.arcface("s=64") end, "arcface: options must be a table, got string")
  end)
  it("combined fallback mm needs m1 = 1", function()
    expect_error(function() fvl.loss.combined { dim = D, classes = C, m1 = 0.9, fallback = "mm" } end,
                 "combined: fallback = 'mm' is only defined for m1 = 1 (got m1 = 0.9)")
    local h = fvl.loss.combined { dim = D, classes = C, fallback = "mm" }
    h.m1 = 0.9
    local x, y = batch()
    expect_error(function() h(x, y) end, "combined: fallback = 'mm' is only defined for m1 = 1")
  end)
end)

describe("loss heads: inputs", function()
  for _, name in ipairs(CENTRE_HEADS) do
    it(name .. " checks labels, widths and the batch", function()
      local h = fvl.loss[name] { dim = D, classes = C }
      local x = batch()
      expect_error(function() h(x, { 1, 2, 6, 1 }) end, name .. ": labels[3] = 6 is outside 1..5")
      expect_error(function() h(x, { 0, 2, 3, 1 }) end, name .. ": labels[1] = 0 is outside 1..5")
      expect_error(function() h(x, fvl.tensor({ 1, 2, 3, 9 }, "int32")) end,
                   name .. ": labels[4] = 9 is outside 1..5")
      expect_error(function() h(x, { 1, 2, 3 }) end, name .. ": labels has 3 entries but x has 4 rows")
      expect_error(function() h(x, fvl.tensor({ 1, 2, 3, 4 })) end,
                   name .. ": labels must be an int32 tensor or a list of class ids, got a float32 tensor")
      expect_error(function() h(fvl.randn(B, D + 1), { 1, 2, 3, 4 }) end,
                   name .. ": x is 4×7 but the head expects 4×6 (dim = 6)")
      expect_error(function() h(fvl.randn(D), { 1 }) end, name .. ": x must be 2-D (B×D), got 6")
      expect_error(function() h("x", { 1 }) end, name .. ": x must be a B×D float32 tensor, got string")
      expect_error(function() h(x, "labels") end, name .. ": labels must be an int32 tensor or a list")
      expect_error(function() h(fvl.randn(B, D), { 1.5, 2, 3, 4 }) end,
                   name .. ": labels[1] = 1.5 is not an integer class id")
      -- the head still works after all of that
      local loss = h(x, { 1, 2, 3, 4 })
      expect_true(loss:item() == loss:item(), "finite loss after errors")
    end)
  end
  it("a replaced weight of the wrong shape is reported", function()
    local h = fvl.loss.arcface { dim = D, classes = C }
    h.weight = fvl.randn(C + 1, D)
    local x = batch()
    expect_error(function() h(x, { 1, 2, 3, 4 }) end,
                 "arcface: head.weight is 6×6 but the head has classes = 5, dim = 6 (expected 5×6)")
  end)
  it("an empty batch is an error naming the head", function()
    local h = fvl.loss.arcface { dim = D, classes = C }
    local ok, x0 = pcall(fvl.zeros, 0, D)
    if ok and x0 then
      expect_error(function() h(x0, {}) end, "arcface: empty batch")
    else
      expect_error(function() h(fvl.randn(B, D), {}) end, "arcface: labels has 0 entries but x has 4 rows")
    end
  end)
  it("circle_pairwise without valid anchors gives 0 (PML)", function()
    local h = fvl.loss.circle_pairwise { dim = D }
    local x = batch()
    expect_eq(h(x, { 1, 2, 3, 4 }):item(), 0, "no positives: loss 0 (PML)")
    expect_eq(h(x, { 2, 2, 2, 2 }):item(), 0, "no negatives: loss 0 (PML)")
    expect_error(function() h(x, { 0, 1, 1, 2 }) end, "circle_pairwise: labels[1] = 0 is outside 1..")
    local loss = h(x, { 1, 1, 2, 2 })
    expect_true(loss:item() > 0, "positive loss")
  end)
  it("discface checks the xi shape", function()
    expect_error(function() fvl.loss.discface { dim = D, classes = C, xi = fvl.zeros(D + 1) } end,
                 "discface: xi is 7, expected 6 or 5×6")
  end)
  it("center checks the centres", function()
    expect_error(function() fvl.loss.center { dim = D, classes = C, centers = fvl.zeros(C, D + 1) } end,
                 "center: centers is 5×7, expected 5×6")
  end)
end)

describe("loss heads: non-finite losses", function()
  it("raise an error naming the head and the first bad row", function()
    local h = fvl.loss.softmax { dim = D, classes = C }
    local x = batch()
    x:set(3, 2, 0 / 0)
    expect_error(function() h(x, { 1, 2, 3, 4 }) end, "softmax: loss is not finite (first bad row 3)")
    local a = fvl.loss.arcface { dim = D, classes = C }
    local x2 = batch()
    x2:set(2, 1, math.huge)
    expect_error(function() a(x2, { 1, 2, 3, 4 }) end, "arcface: loss is not finite (first bad row 2)")
    -- the sharded CE (one rank): the engine's 0-based row becomes the user's 1-based one
    local c = fvl.randn(4, 5):mul(0.1)
    c:set(2, 3, 0 / 0)
    expect_error(function() fvl.F.margin_ce_shard(c, fvl.tensor { 1, 2, 3, 0 }:int(), { s = 8 }, "arcface") end,
                 "arcface: loss is not finite (first bad row 2)")
  end)
  it("nonfinite = 'warn' returns the loss instead", function()
    local h = fvl.loss.softmax { dim = D, classes = C, nonfinite = "warn" }
    local x = batch()
    x:set(3, 2, 0 / 0)
    local loss = h(x, { 1, 2, 3, 4 })
    local v = loss:item()
    expect_true(v ~= v or v == math.huge, "the loss is not finite")
  end)
  it("large scales do not overflow", function()
    local x = batch()
    for _, h in ipairs { fvl.loss.arcface { dim = D, classes = C, s = 64 },
                         fvl.loss.normface { dim = D, classes = C, s = 64 },
                         fvl.loss.circle { dim = D, classes = C, gamma = 256 } } do
      local v = h(x, { 1, 2, 3, 4 }):item()
      expect_true(v == v and v < math.huge and v >= 0, h.name .. " finite: " .. tostring(v))
    end
    local p = fvl.loss.circle_pairwise { gamma = 256 }
    local xs = fvl.randn(B, D)
    local v = p(xs, { 1, 1, 2, 2 }):item()
    expect_true(v == v and v < math.huge, "circle_pairwise finite: " .. tostring(v))
  end)
end)

describe("loss heads: fields changed between steps are checked", function()
  local x = fvl.randn(B, D)
  local y = { 1, 2, 3, 4 }
  it("enumerations and flags", function()
    local n = fvl.loss.npcface { dim = D, classes = C }
    n.hardness_from = "zz"
    expect_error(function() n(x, y) end, "npcface: hardness_from = 'zz' (expected raw|reweighted)")
    local mv = fvl.loss.mv_softmax { dim = D, classes = C }
    mv.adaptive = nil
    expect_error(function() mv(x, y) end, "mv_softmax: adaptive must be true or false, got nil")
    local a = fvl.loss.arcface { dim = D, classes = C }
    a.fallback = "bogus"
    expect_error(function() a(x, y) end, "arcface: fallback = 'bogus' (expected mm|easy|none|clamp)")
    local d = fvl.loss.discface { dim = D, classes = C }
    d.base = "sphere"
    expect_error(function() d(x, y) end, "discface: base = 'sphere' (expected cos|arc)")
  end)
  it("margins and scales: numbers, or one value per row", function()
    local a = fvl.loss.arcface { dim = D, classes = C }
    a.m = "abc"
    expect_error(function() a(x, y) end, "arcface: m must be a number")
    a.m = 0.5
    a.s = fvl.ones(B + 1)
    expect_error(function() a(x, y) end, "arcface: s is 5 (expected one value per row: 4 entries)")
    a.s = fvl.ones(B) * 16                 -- a per-row scale is allowed
    expect_true(a(x, y):item() > 0, "per-row s")
  end)
end)
