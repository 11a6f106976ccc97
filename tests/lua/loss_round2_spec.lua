-- Round-2 heads (AdaCos, Sub-center ArcFace, MagFace, AdaFace, ElasticFace) and user-defined margins
-- (fvl.loss.margin) as a user sees them: the scripts/examples margins equal the built-in heads,
-- mistakes inside a user's function name the head and what came back, state, ElasticFace's draws
-- and ordering, sub-centre pruning, and the new primitives (F.group_max, F.neg_lse, "given"
-- targets, per-row thresholds, the cosine clamp) against finite differences and the reference.
-- The oracle's numbers are checked in loss_golden_spec.lua.
local fvl = fvl or require "fvl"
fvl.threads(1)
local reference = require "fvl.loss.reference"
local REF = os.getenv("FVL_LOSS_REFERENCE") == "1"
if REF then fvl.loss.use_reference(true) end
local F = REF and reference or fvl.F

local ROOT = (TEST_DIR or "tests") .. "/.."
local function example(name) return dofile(ROOT .. "/scripts/examples/margin_" .. name .. ".lua") end


-- max |a − e| <= tol·(max|e| + 1e-3) (scale-relative: gradients are compared as whole tensors)
local function close(a, e, tol, what) expect_tensor_close(a, e, tol, what, 1e-3) end

-- runs two training steps of head a and head b on the same batches; compares loss and gradients
local function same_heads(make_a, make_b, scale, steps, what)
  fvl.manual_seed(3)
  local W = fvl.randn(40, 12)
  local xs, ys = {}, {}
  for k = 1, steps do xs[k] = fvl.randn(16, 12) * scale; ys[k] = fvl.randint(40, { 16 }) end
  local a, b = make_a { weight = W }, make_b { weight = W }
  for k = 1, steps do
    local xa, xb = leaf(xs[k]), leaf(xs[k])
    local la, lb = a(xa, ys[k]), b(xb, ys[k])
    expect_near(la:item(), lb:item(), 1e-5, 0, what .. " loss, step " .. k)
    la:backward(); lb:backward()
    close(xa.grad, xb.grad, 1e-5, what .. " x.grad, step " .. k)
    close(a.weight.grad, b.weight.grad, 1e-5, what .. " W.grad, step " .. k)
  end
  return a, b
end

describe("fvl.loss.margin: the examples equal the built-in heads", function()
  it("ArcFace", function()
    same_heads(example "arcface", fvl.loss.arcface, 1, 2, "arcface")
  end)
  it("CurricularFace (state t)", function()
    local a, b = same_heads(example "curricularface", fvl.loss.curricularface, 1, 3, "curricularface")
    expect_near(a.state.t, b.t, 1e-5, 1e-7, "t")
  end)
  it("AdaFace (EMA state)", function()
    local a, b = same_heads(example "adaface", fvl.loss.adaface, 4, 3, "adaface")
    expect_near(a.state.mean, b.batch_mean, 1e-6, 0, "batch_mean")
    expect_near(a.state.std, b.batch_std, 1e-6, 0, "batch_std")
  end)
  it("each example is at most 15 lines of head", function()
    for _, n in ipairs { "arcface", "curricularface", "adaface" } do
      local text = assert(io.open(ROOT .. "/scripts/examples/margin_" .. n .. ".lua")):read("a")
      local body = text:match("\nlocal function " .. n .. "%(o%)\n(.-\nend)\n")
      assert(body, n .. ": constructor not found")
      local lines = select(2, body:gsub("\n", "\n")) + 1
      expect_true(lines <= 15, n .. " example has " .. lines .. " lines")
    end
  end)
  it("a user-written MV-AM (affine negatives over a per-row threshold) equals mv_softmax", function()
    local function mv(o)
      return fvl.loss.margin { weight = o.weight, s = 32, name = "my_mv",
        target = function(c, ctx) return fvl.where(c:detach():gt(0), c - 0.35, c) end,
        negative = function(c) return { kind = "affine", a = 1.2, b = 0.2, threshold = fvl.where(c:gt(0), c - 0.35, c) } end }
    end
    same_heads(mv, function(o) return fvl.loss.mv_softmax { weight = o.weight } end, 1, 2, "mv")
  end)
  it("per-row scale from the context (SphereFace-style |x|) reaches x.grad", function()
    fvl.manual_seed(5)
    local h = fvl.loss.margin { dim = 6, classes = 5, s = function(ctx) return ctx.norm end,
                                target = function(c) return c - 0.2 end }
    local ref = fvl.loss.cosface { weight = h.weight, m = 0.2 }
    local x = fvl.randn(8, 6) * 3
    local ok, rep = fvl.gradcheck(function(xx) return h(xx, { 1, 2, 3, 4, 5, 1, 2, 3 }) end, { leaf(x) })
    expect_true(ok, tostring(rep))
    -- s = |x| differs from cosface's constant s: only the x-independent case must agree
    local h1 = fvl.loss.margin { weight = h.weight, s = 64, target = function(c) return c - 0.2 end }
    local l1, l2 = h1(leaf(x), { 1, 2, 3, 4, 5, 1, 2, 3 }), ref(leaf(x), { 1, 2, 3, 4, 5, 1, 2, 3 })
    expect_near(l1:item(), l2:item(), 1e-5, 0, "s = 64")
  end)
end)

describe("fvl.loss.margin: mistakes inside the user's function", function()
  local x, y = nil, { 1, 2, 3, 1 }
  local function head(target, negative)
    fvl.manual_seed(1)
    x = fvl.randn(4, 6)
    return fvl.loss.margin { dim = 6, classes = 3, name = "my_head", target = target, negative = negative }
  end
  it("a non-tensor return", function()
    expect_error(function() head(function() return 3 end)(x, y) end,
                 "my_head: target function returned a number (3) (expected a float32 tensor of the B = 4 target values)")
    expect_error(function() head(function() end)(x, y) end, "my_head: target function returned nothing (nil)")
  end)
  it("a wrong shape", function()
    expect_error(function() head(function(c) return fvl.zeros(3) end)(x, y) end,
                 "my_head: target function returned a float32 3 tensor (expected a float32 tensor of the B = 4 target values)")
    expect_error(function() head(function(c) return fvl.zeros(4, 2) end)(x, y) end,
                 "my_head: target function returned a float32 4×2 tensor")
  end)
  it("NaN and infinity", function()
    expect_error(function() head(function(c) return (c - 2):sqrt() end)(x, y) end,
                 "my_head: target function returned NaN at row 1 (expected finite values)")
    expect_error(function() head(function(c) return c / 0 end)(x, y) end, "my_head: target function returned inf at row")
  end)
  it("an error inside the function keeps its message", function()
    expect_error(function() head(function(c) return c + nil end)(x, y) end, "add: expected tensors or numbers")
  end)
  it("a bad negative rule", function()
    local T = function(c) return c end
    expect_error(function() head(T, function() return 1 end)(x, y) end,
                 "my_head: negative function returned a number (1)")
    expect_error(function() head(T, function() return { kind = "cubic" } end)(x, y) end,
                 "my_head: negative kind = 'cubic'")
    expect_error(function() head(T, function() return { kind = "affine", thresh = 1 } end)(x, y) end,
                 "unknown option 'thresh'")
    expect_error(function() head(T, function() return { kind = "affine", threshold = fvl.zeros(2) } end)(x, y) end,
                 "my_head: negative function's threshold returned a float32 2 tensor")
  end)
  it("bad options", function()
    expect_error(function() fvl.loss.margin { dim = 6, classes = 3 } end, "margin: target must be a function")
    expect_error(function() fvl.loss.margin { dim = 6, classes = 3, target = print, margn = 1 } end,
                 "margin: unknown option 'margn'")
  end)
end)

describe("fvl.loss.margin: boundary from the head's own functions", function()
  it("ArcFace-as-margin gives θ2 − θ1 = m", function()
    local h = example "arcface" { dim = 4, classes = 3 }
    local b = h:boundary()
    expect_near(b.f(1.0, 1.5), 0, 0, 1e-6, "on the boundary")
    expect_true(b.f(1.0, 1.6) > 0, "class 1 side")
    expect_true(b.f(1.0, 1.4) < 0, "class 2 side")
  end)
end)

describe("round-2 heads", function()
  it("defaults and options", function()
    local a = fvl.loss.adacos { dim = 4, classes = 11 }
    expect_near(a.s, math.sqrt(2) * math.log(10), 1e-12, 0, "adacos s_fixed"); expect_eq(a.dynamic, true)
    local s = fvl.loss.subcenter_arcface { dim = 4, classes = 5 }
    expect_eq(s.K, 3); expect_eq(s.weight:size(1), 15); expect_eq(s.classes, 5)
    local m = fvl.loss.magface { dim = 4, classes = 5 }
    expect_eq(m.lambda_g, 35); expect_eq(m.l_a, 10); expect_eq(m.u_a, 110); expect_eq(m.easy_margin, true)
    expect_near(m:lambda_bound(), 22.59, 1e-3, 0, "magface bound")
    local ad = fvl.loss.adaface { dim = 4, classes = 5 }
    expect_eq(ad.m, 0.4); expect_eq(ad.h, 0.333); expect_eq(ad.batch_mean, 20); expect_eq(ad.batch_std, 100)
    local e = fvl.loss.elasticface { dim = 4, classes = 5, plus = true }
    expect_eq(e.m, 0.5); expect_eq(e.std, 0.0175)
    local ec = fvl.loss.elasticface { dim = 4, classes = 5, kind = "cos" }
    expect_eq(ec.m, 0.35); expect_eq(ec.std, 0.05)
    expect_error(function() fvl.loss.elasticface { dim = 4, classes = 5, kind = "sphere" } end,
                 "elasticface: kind = 'sphere'")
    expect_error(function() fvl.loss.subcenter_arcface { weight = fvl.randn(7, 4), K = 3 } end,
                 "subcenter_arcface: weight is 7×4 but K = 3 (expected (classes·K)×dim rows)")
  end)
  it("AdaCos: a negative dynamic scale is its own clear error, s unchanged", function()
    -- C = 3, both samples on centre 1 and the other two centres opposite: B_avg = 2·exp(−s) < 1
    local h = fvl.loss.adacos { dim = 2, classes = 3 }
    h.weight:copy(fvl.tensor({ { 1, 0 }, { -1, 0 }, { -1, 0.01 } }))
    local x, y = fvl.tensor({ { 1, 0 }, { 2, 0 } }), fvl.tensor({ 1, 1 }):int()
    local s0 = h.s
    expect_error(function() h(x, y) end, "adacos: the dynamic scale came out negative (s = -0.287")
    expect_eq(h.s, s0)
    h.dynamic = false
    expect_true(h(x, y):item() >= 0, "the fixed scale still trains")
  end)
  it("AdaCos updates s only while training", function()
    fvl.manual_seed(2)
    local h = fvl.loss.adacos { dim = 6, classes = 9 }
    local x, y = fvl.randn(8, 6), fvl.randint(9, { 8 })
    local s0 = h.s
    h(x, y)
    expect_true(h.s ~= s0, "s moved")
    local s1 = h.s
    h:evaluate(); h(x, y)
    expect_eq(h.s, s1, "s in evaluation")
  end)
  it("ElasticFace: seeded draws, given margins, ElasticFace+ is rank-consistent", function()
    local h = fvl.loss.elasticface { dim = 6, classes = 5, plus = true }
    local x = fvl.randn(8, 6)
    local y = { 1, 2, 3, 4, 5, 1, 2, 3 }
    fvl.manual_seed(7); local l1 = h(x, y):item(); local m1 = h.last_margins:totable()
    fvl.manual_seed(7); local l2 = h(x, y):item()
    expect_eq(l1, l2, "same seed, same loss")
    local c = F.target_cos(F.cosine(x, h.weight), y):totable()
    for i = 1, 8 do for j = 1, 8 do
      if c[i] > c[j] then expect_true(m1[i] <= m1[j], "easier sample gets the smaller margin") end
    end end
    local given = fvl.tensor { 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5 }
    h.plus = false
    local lg = h(x, y, { margins = given }):item()
    local arc = fvl.loss.arcface { weight = h.weight, fallback = "none" }
    expect_near(lg, arc(x, y):item(), 1e-6, 0, "constant margins = ArcFace without fallback")
    expect_error(function() h(x, y, { margins = fvl.zeros(3) }) end, "elasticface: margins is 3 (expected one margin per row: 8 values)")
    expect_error(function() h(x, y, { margin = given }) end, "unknown option 'margin'")
  end)
  it("Sub-center ArcFace with K = 1 is ArcFace; prune keeps the dominant sub-centres", function()
    fvl.manual_seed(4)
    local W = fvl.randn(5, 6)
    local x, y = fvl.randn(8, 6), { 1, 2, 3, 4, 5, 1, 2, 3 }
    local s1 = fvl.loss.subcenter_arcface { weight = W, K = 1 }
    expect_near(s1(x, y):item(), fvl.loss.arcface { weight = W }(x, y):item(), 1e-6, 0, "K = 1")
    -- class j's sub-centre 2 is W_j, sub-centres 1 and 3 point away: every sample picks k = 2
    local rows = {}
    for j = 1, 5 do
      local w = W:select(1, j):totable()
      local neg = {}
      for d = 1, 6 do neg[d] = -w[d] end
      rows[#rows + 1] = neg; rows[#rows + 1] = w; rows[#rows + 1] = neg
    end
    local h = fvl.loss.subcenter_arcface { weight = fvl.tensor(rows), K = 3 }
    -- samples 1..8 lie near their class centre, sample 9 (class 1) opposite it
    local near = W:index(1, fvl.tensor(y, "int32"))
    local feats = fvl.cat({ near + fvl.randn(8, 6) * 0.02, near:narrow(1, 1, 1) * -1 }, 1)
    local labels = { 1, 2, 3, 4, 5, 1, 2, 3, 1 }
    local r = h:prune(feats, labels, { max_angle = 30 })
    for j = 1, 5 do expect_eq(r.dominant[j], 2, "dominant sub-centre of class " .. j) end
    close(r.weight, W, 1e-6, "dominant weight")
    local keep = r.keep:totable()
    expect_eq(#keep, 8, "kept samples")
    for k = 1, 8 do expect_eq(keep[k], k, "kept sample") end
    expect_eq(r.counts[1][2], 2, "class 1 votes for sub-centre 2")
  end)
  it("MagFace: the margin's gradient reaches |x| (finite differences)", function()
    fvl.manual_seed(6)
    local h = fvl.loss.magface { dim = 6, classes = 5, s = 8, l_a = 1, u_a = 10 }
    local x = fvl.randn(8, 6) * 3
    local ok, rep = fvl.gradcheck(function(xx) return h(xx, { 1, 2, 3, 4, 5, 1, 2, 3 }) end, { leaf(x) })
    expect_true(ok, tostring(rep))
  end)
  it("AdaFace and user margins: finite differences", function()
    fvl.manual_seed(8)
    local h = fvl.loss.adaface { dim = 6, classes = 5, s = 8 }
    h:evaluate()
    local x = fvl.randn(8, 6) * 5
    local ok, rep = fvl.gradcheck(function(xx, W) return h(xx, { 1, 2, 3, 4, 5, 1, 2, 3 }) end, { leaf(x) })
    expect_true(ok, tostring(rep))
    local c = example "curricularface" { dim = 6, classes = 5, s = 8, t = 0.4 }
    c:evaluate()
    ok, rep = fvl.gradcheck(function(xx) return c(xx, { 1, 2, 3, 4, 5, 1, 2, 3 }) end, { leaf(x) })
    expect_true(ok, tostring(rep))
  end)
end)

describe("new primitives", function()
  it("F.group_max: values, arg-max gradient, workspaces", function()
    fvl.manual_seed(9)
    local c = fvl.randn(4, 6)
    local g = F.group_max(c, 3):totable()
    local ct = c:totable()
    for i = 1, 4 do for j = 1, 2 do
      expect_eq(g[i][j], math.max(ct[i][3 * j - 2], ct[i][3 * j - 1], ct[i][3 * j]))
    end end
    local w = fvl.randn(4, 2)
    local ok, rep = fvl.gradcheck(function(t) return (F.group_max(t, 3) * w):sum() end, { leaf(c) })
    expect_true(ok, tostring(rep))
    expect_error(function() fvl.F.group_max(c, 4) end, "group_max: cos is 4x6 but K = 4 (expected a number of columns divisible by K >= 1)")
  end)
  it("F.neg_lse against a direct sum", function()
    fvl.manual_seed(10)
    local c = fvl.rand(3, 5)
    local y = { 2, 5, 1 }
    local got = F.neg_lse(c, y, 7):totable()
    local ct = c:totable()
    for i = 1, 3 do
      local s = 0
      for j = 1, 5 do if j ~= y[i] then s = s + math.exp(7 * ct[i][j]) end end
      expect_near(got[i], math.log(s), 1e-6, 0, "row " .. i)
    end
  end)
  it("margin_ce: given target, per-row threshold and clamp agree with the reference", function()
    fvl.manual_seed(11)
    local x, W = fvl.randn(8, 6), fvl.randn(5, 6)
    local y = { 1, 2, 3, 4, 5, 1, 2, 3 }
    local function run(P)
      local xx, WW = leaf(x), leaf(W)
      local cos = P.cosine(xx, WW)
      local c = P.target_cos(cos, y)
      local T = (c * 0.9 - 0.1):reshape(8)
      local thr = (c:detach() - 0.3):reshape(8)
      local L = P.margin_ce(cos, y, { s = 16, target = "given", value = T, negative = "quadratic", t = 0.3,
                                      hard = "row", threshold = thr, clamp = 0.05 }, "t")
      L:backward()
      return L:item(), xx.grad, WW.grad
    end
    local l1, gx1, gw1 = run(fvl.F)
    local l2, gx2, gw2 = run(reference)
    expect_near(l1, l2, 1e-5, 0, "loss")
    close(gx1, gx2, 1e-5, "x.grad"); close(gw1, gw2, 1e-5, "W.grad")
    expect_error(function() fvl.F.margin_ce(fvl.F.cosine(x, W), y, { target = "given" }) end,
                 "target 'given' needs value")
    expect_error(function() fvl.F.margin_ce(fvl.F.cosine(x, W), y, { negative = "affine", hard = "row" }) end,
                 "hard = 'row' needs threshold")
    expect_error(function()
      fvl.F.margin_ce(fvl.F.cosine(x, W), y, { negative = "affine", hard = "row", threshold = fvl.zeros(3) })
    end, "margin_ce: threshold is 3 (expected one value per row: 8 entries)")
  end)
end)
