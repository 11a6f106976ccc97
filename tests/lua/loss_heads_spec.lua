-- Behaviour of the loss heads as a user sees it: construction, parameters, state, options that
-- change between steps, evaluation helpers, workspace reuse, the documented hybrid example, and
-- fused kernels against the tensor-op reference (fvl.loss.reference) on random batches.
local fvl = fvl or require "fvl"
fvl.threads(1)   -- small problems: OpenMP regions cost more than the work on a loaded machine
local base = require "fvl.loss.base"
local reference = require "fvl.loss.reference"
if os.getenv("FVL_LOSS_REFERENCE") == "1" then fvl.loss.use_reference(true) end
local F = os.getenv("FVL_LOSS_REFERENCE") == "1" and reference or fvl.F

local B, D, C = 8, 6, 5
local LABELS = { 1, 2, 3, 4, 5, 1, 2, 3 }
local function batch(seed)
  fvl.manual_seed(seed or 1)
  local x = fvl.randn(B, D)
  x:requires_grad()
  return x
end
local function fresh(x)
  local c = x:detach():clone()
  c:requires_grad()
  return c
end

describe("loss heads: construction", function()
  it("every head exists and has the documented defaults", function()
    local h = fvl.loss.arcface { dim = D, classes = C }
    expect_eq(h.s, 64); expect_eq(h.m, 0.5); expect_eq(h.fallback, "mm"); expect_eq(h.grad, "exact")
    expect_eq(h.easy_margin, false)
    local mv = fvl.loss.mv_softmax { dim = D, classes = C }
    expect_eq(mv.s, 32); expect_eq(mv.m, 0.35); expect_eq(mv.t, 0.2); expect_eq(mv.kind, "am")
    expect_eq(mv.adaptive, true); expect_eq(mv.easy_margin, true)
    local sp = fvl.loss.sphereface { dim = D, classes = C }
    expect_eq(sp.m, 4); expect_eq(sp.base, 1000); expect_eq(sp.gamma, 0.12); expect_eq(sp.power, 1)
    expect_eq(sp.lambda_min, 5); expect_eq(sp.feature_scale, "norm"); expect_eq(sp.iter, 0)
    local np = fvl.loss.npcface { dim = D, classes = C }
    expect_eq(np.m0, 0.4); expect_eq(np.m1, 0.2); expect_eq(np.t, 1.1); expect_eq(np.alpha, 0.2)
    expect_eq(np.s, 64); expect_eq(np.hardness_from, "raw"); expect_eq(np.hardness_grad, false)
    local dc = fvl.loss.discface { dim = D, classes = C }
    expect_eq(dc.m, 0.35); expect_eq(dc.lambda, 0.4); expect_eq(dc.xi_max, 0.05)
    expect_eq(fvl.loss.discface { dim = D, classes = C, base = "arc" }.m, 0.5)
    expect_eq(fvl.loss.am_softmax { dim = D, classes = C }.s, 30)
    expect_eq(fvl.loss.cosface { dim = D, classes = C }.s, 64)
    local ce = fvl.loss.center { dim = D, classes = C }
    expect_eq(ce.lambda, 0.003); expect_eq(ce.alpha, 0.5)
    local ci = fvl.loss.circle { dim = D, classes = C }
    expect_eq(ci.m, 0.25); expect_eq(ci.gamma, 256)
    local cu = fvl.loss.curricularface { dim = D, classes = C }
    expect_eq(cu.t, 0); expect_eq(cu.s, 64); expect_eq(cu.m, 0.5)
    local co = fvl.loss.combined { dim = D, classes = C }
    expect_eq(co.m1, 1); expect_eq(co.m2, 0.3); expect_eq(co.m3, 0.2); expect_eq(co.fallback, "none")
    expect_eq(#fvl.loss.names(), 20)   -- 14 seed heads, 5 round-2 heads, fvl.loss.margin
  end)
  it("weight= starts from given centres (a private copy) and infers dim/classes", function()
    local W = fvl.randn(C, D)
    local h = fvl.loss.cosface { weight = W }
    expect_eq(h.dim, D); expect_eq(h.classes, C)
    expect_all_near(h.weight, W:totable(), 0, 0)
    expect_true(h.weight.is_leaf, "weight is a leaf")
    h.weight:fill(0)
    expect_true(W:abs():sum():item() > 0, "the caller's tensor is untouched")
  end)
  it("parameters() lists the trainable tensors", function()
    expect_eq(#fvl.loss.arcface { dim = D, classes = C }:parameters(), 1)
    expect_eq(#fvl.loss.softmax { dim = D, classes = C }:parameters(), 2)
    expect_eq(#fvl.loss.softmax { dim = D, classes = C, bias = false }:parameters(), 1)
    expect_eq(#fvl.loss.center { dim = D, classes = C }:parameters(), 2)
    local d = fvl.loss.discface { dim = D, classes = C }
    local p = d:parameters()
    expect_eq(#p, 2)
    expect_eq(p[2]:numel(), D)
    expect_eq(fvl.loss.discface { dim = D, classes = C, per_class_xi = true }.xi:numel(), C * D)
    expect_eq(#fvl.loss.circle_pairwise {}:parameters(), 0)
  end)
  it("the seeded generator makes the initial centres reproducible", function()
    fvl.manual_seed(42)
    local a = fvl.loss.arcface { dim = D, classes = C }.weight:totable()
    fvl.manual_seed(42)
    local b = fvl.loss.arcface { dim = D, classes = C }.weight:totable()
    expect_all_near(a, b, 0, 0)
  end)
  it("gradients reach x and every parameter", function()
    for _, name in ipairs(fvl.loss.names()) do
      if name ~= "circle_pairwise" then
        local o = { dim = D, classes = C }
        if name == "margin" then o.target = function(c) return c - 0.2 end end
        local h = fvl.loss[name](o)
        local x = batch(2)
        h(x, LABELS):backward()
        expect_true(x.grad ~= nil and x.grad:abs():sum():item() > 0, name .. ": x.grad")
        for i, p in ipairs(h:parameters()) do
          expect_true(p.grad ~= nil, name .. ": parameter " .. i .. " has a gradient")
        end
      end
    end
  end)
end)

describe("loss heads: options between steps", function()
  it("changing head.m equals a head built with that m", function()
    local x = batch(3)
    local h = fvl.loss.arcface { dim = D, classes = C }
    local l1 = h(x, LABELS):item()
    h.m = 0.3
    local l2 = h(x, LABELS):item()
    local g = fvl.loss.arcface { weight = h.weight, m = 0.3 }
    expect_near(l2, g(x, LABELS):item(), 1e-6)
    expect_true(math.abs(l1 - l2) > 1e-3, "the margin changed the loss")
    h.s = 16
    local k = fvl.loss.arcface { weight = h.weight, m = 0.3, s = 16 }
    expect_near(h(x, LABELS):item(), k(x, LABELS):item(), 1e-6)
  end)
  it("fallback='easy' is easy_margin=true", function()
    local x = batch(4)
    local a = fvl.loss.arcface { dim = D, classes = C, fallback = "easy" }
    local b = fvl.loss.arcface { weight = a.weight, easy_margin = true }
    expect_near(a(x, LABELS):item(), b(x, LABELS):item(), 1e-6)
  end)
  it("am_softmax is cosface with s = 30", function()
    local x = batch(5)
    local a = fvl.loss.am_softmax { dim = D, classes = C }
    local b = fvl.loss.cosface { weight = a.weight, s = 30 }
    expect_near(a(x, LABELS):item(), b(x, LABELS):item(), 1e-6)
  end)
  it("combined (1, m, 0) is ArcFace and (1, 0, m) is CosFace", function()
    local x = batch(6)
    local arc = fvl.loss.arcface { dim = D, classes = C, m = 0.4, fallback = "none", s = 16 }
    local cb = fvl.loss.combined { weight = arc.weight, m1 = 1, m2 = 0.4, m3 = 0, s = 16 }
    expect_near(cb(x, LABELS):item(), arc(x, LABELS):item(), 1e-5)
    local cos = fvl.loss.cosface { weight = arc.weight, m = 0.25, s = 16 }
    cb.m2, cb.m3 = 0, 0.25
    expect_near(cb(x, LABELS):item(), cos(x, LABELS):item(), 1e-5)
  end)
end)

describe("loss heads: state", function()
  it("sphereface: iter += 1 before use, λ from the schedule, frozen in evaluate()", function()
    local h = fvl.loss.sphereface { dim = D, classes = C }
    local x = batch(7)
    h(x, LABELS)
    expect_eq(h.iter, 1)
    expect_near(h.current_lambda, 1000 / 1.12, 1e-12)
    h.iter = 5000
    h(x, LABELS)
    expect_eq(h.iter, 5001)
    expect_eq(h.current_lambda, 5)
    h:evaluate()
    h(x, LABELS)
    expect_eq(h.iter, 5001)
    h:train()
    h.lambda = 0                       -- fixed λ overrides the schedule
    h(x, LABELS)
    expect_eq(h.current_lambda, 0)
  end)
  it("curricularface: t is the EMA of the batch's target cosines, before use", function()
    local h = fvl.loss.curricularface { dim = D, classes = C, t = 0.5 }
    local x = batch(8)
    local ct = F.target_cos(F.cosine(x:detach(), h.weight:detach()), LABELS):mean():item()
    h(x, LABELS)
    expect_near(h.t, 0.01 * ct + 0.99 * 0.5, 1e-6)
    h.t = 0.2
    h:evaluate()
    h(x, LABELS)
    expect_eq(h.t, 0.2)
  end)
  it("center: the α-rule moves only the classes in the batch, after the loss", function()
    local h = fvl.loss.center { dim = D, classes = 7, lambda = 1 }
    fvl.manual_seed(9)
    h.centers = fvl.randn(7, D)
    local c0 = h.centers:totable()
    local x = batch(10)
    local xs = x:detach():totable()
    h(x, LABELS)
    local c1 = h.centers:totable()
    for j = 1, 7 do
      local n, sum = 0, {}
      for i = 1, B do
        if LABELS[i] == j then
          n = n + 1
          for d = 1, D do sum[d] = (sum[d] or 0) + xs[i][d] end
        end
      end
      for d = 1, D do
        local want = n == 0 and c0[j][d] or c0[j][d] - 0.5 * (n * c0[j][d] - sum[d]) / (1 + n)
        expect_near(c1[j][d], want, 1e-5, 1e-6, "centre " .. j)
      end
    end
  end)
  it("discface: |ξ_eff| is bounded by ξ_max", function()
    local h = fvl.loss.discface { dim = D, classes = C, lambda = 1, s = 8 }
    local x = batch(11)
    local l0 = h(x, LABELS):item()
    local xi = fvl.ones(D) * 10
    xi = xi:detach(); xi:requires_grad()
    h.xi = xi
    local l_big = h(x, LABELS):item()
    local xi2 = fvl.ones(D) * (0.05 / math.sqrt(D))   -- the same direction, at the bound
    xi2 = xi2:detach(); xi2:requires_grad()
    h.xi = xi2
    expect_near(h(x, LABELS):item(), l_big, 1e-5)
    expect_true(math.abs(l0 - l_big) > 1e-6, "ξ changes the loss")
  end)
end)

describe("loss heads: checkpoints", function()
  it("a head's tensors and state survive save_checkpoint / load_checkpoint", function()
    for _, name in ipairs { "curricularface", "center", "discface", "sphereface", "softmax" } do
      local h = fvl.loss[name] { dim = D, classes = C }
      local x = batch(17)
      for _ = 1, 3 do h(x, LABELS):backward() end      -- move t / iter / centres
      if h.xi then fvl.no_grad(function() h.xi:copy(fvl.ones(D) * 0.01) end) end
      local path = os.tmpname()
      os.remove(path)
      fvl.save_checkpoint(path, { head = h, step = 3 })
      local g = fvl.loss[name] { dim = D, classes = C }
      fvl.load_checkpoint(path, { head = g })
      os.execute("rm -rf '" .. path .. "'")
      h:evaluate(); g:evaluate()
      expect_near(g(x, LABELS):item(), h(x, LABELS):item(), 1e-6, 0, name .. " loss after reload")
      if h.t then expect_eq(g.t, h.t, name .. " t") end
      if h.iter then expect_eq(g.iter, h.iter, name .. " iter") end
      if h.centers then expect_all_near(g.centers, h.centers:totable(), 0, 0, name .. " centres") end
    end
  end)
end)

describe("loss heads: evaluation helpers", function()
  it("logits are the cosines (no margin) and predict is their arg-max", function()
    local h = fvl.loss.arcface { dim = D, classes = C }
    local x = batch(12)
    local z = h:logits(x)
    expect_eq(z:size(1), B); expect_eq(z:size(2), C)
    expect_all_near(z, F.cosine(x:detach(), h.weight:detach()):totable(), 1e-6, 1e-7)
    local p = h:predict(x):totable()
    local zt = z:totable()
    for i = 1, B do
      local best = 1
      for j = 2, C do if zt[i][j] > zt[i][best] then best = j end end
      expect_eq(p[i], best, "predict row " .. i)
    end
  end)
  it("softmax logits are x·Wᵀ + b", function()
    local h = fvl.loss.softmax { dim = D, classes = C }
    h.bias:fill(0.5)
    local x = batch(13)
    local want = (x:detach():matmul(h.weight:detach():t()) + 0.5):totable()
    expect_all_near(h:logits(x), want, 1e-5, 1e-6)
  end)
end)

describe("loss heads: workspaces", function()
  it("the B×C workspaces are reused while B stays the same", function()
    local h = fvl.loss.arcface { dim = D, classes = C }
    local x = batch(14)
    h(x, LABELS):backward()
    local ws, gws = h._ws, h._gws
    for _ = 1, 3 do h(x, LABELS):backward() end
    expect_true(rawequal(ws, h._ws) and rawequal(gws, h._gws), "same workspace tensors")
    fvl.manual_seed(1)
    h(fvl.randn(3, D), { 1, 2, 3 })
    expect_eq(h._ws:size(1), 3)
  end)
  it("a step allocates no new B×C buffer once warm", function()
    if os.getenv("FVL_LOSS_REFERENCE") == "1" then return end   -- the reference allocates freely
    local Bb, Cc = 64, 2000
    local h = fvl.loss.cosface { dim = 32, classes = Cc }
    fvl.manual_seed(15)
    local x = fvl.randn(Bb, 32)
    x:requires_grad()
    local y = fvl.randint(Cc, { Bb })
    for _ = 1, 2 do h(x, y):backward(); x.grad = nil; h.weight.grad = nil end
    collectgarbage()
    local m0 = fvl.mem(true)
    h(x, y):backward()
    local m1 = fvl.mem()
    -- dW (C×D) and dx (B×D) are new each step; anything past them is a B×C allocation
    local extra = m1.peak - m0.live - (Cc * 32 + Bb * 32) * 4
    expect_true(extra < Bb * Cc * 4 / 2, string.format("extra %d bytes (B×C = %d bytes)", extra, Bb * Cc * 4))
  end)
end)

describe("loss heads: the documented hybrid (docs/losses.md)", function()
  it("ArcFace positive + CurricularFace negatives in a few lines of Lua", function()
    local H = fvl.loss.cosine_head("arc_curricular")
    local function make(o)
      local self = setmetatable({}, H):setup("arc_curricular", o)
      self.s, self.m, self.t = o.s or 64, o.m or 0.5, 0
      return self
    end
    function H:forward(x, labels)
      local Bn, y = self:check_input(x, labels)
      local cos = self:cosine(x, Bn)
      if self.training then
        self.t = 0.01 * base.F().target_cos(cos:detach(), y):mean():item() + 0.99 * self.t
      end
      return self:margin_ce(cos, y, { s = self.s, target = "arc", m = self.m, fallback = "mm",
                                      negative = "quadratic", hard = "arc", hard_m = self.m, t = self.t })
    end
    local hy = make { dim = D, classes = C, s = 16 }
    local cf = fvl.loss.curricularface { weight = hy.weight, s = 16 }
    local x = batch(16)
    local x2 = fresh(x)
    local a, b = hy(x, LABELS), cf(x2, LABELS)
    expect_near(a:item(), b:item(), 1e-6)
    expect_near(hy.t, cf.t, 1e-7)
    a:backward(); b:backward()
    expect_all_near(x.grad, x2.grad:totable(), 1e-5, 1e-7)
    expect_error(function() hy(x, { 1, 2, 3, 4, 5, 1, 2, 9 }) end, "arc_curricular: labels[8] = 9 is outside 1..5")
  end)
end)

-- the fused kernels (fvl.F) against the tensor-op compositions, on random batches
if os.getenv("FVL_LOSS_REFERENCE") ~= "1" then
  describe("loss heads: fused kernels = tensor-op reference", function()
    local Bb, Db, Cb = 24, 12, 37
    local CONFIGS = {
      { "softmax", {} }, { "normface", { s = 16 } }, { "sphereface", { iter = 3 } },
      { "sphereface", { feature_scale = "s", s = 16, m = 3 } }, { "cosface", { s = 16 } },
      { "cosface", { s = 16, easy_margin = true } }, { "arcface", { s = 16 } },
      { "arcface", { s = 16, fallback = "none" } }, { "arcface", { s = 16, fallback = "clamp" } },
      { "arcface", { s = 16, easy_margin = true } }, { "arcface", { s = 16, fallback = "none", grad = "detached" } },
      { "combined", { s = 16 } }, { "combined", { s = 16, m1 = 0.9, fallback = "clamp" } },
      { "combined", { s = 16, fallback = "mm" } },
      { "mv_softmax", { s = 16 } }, { "mv_softmax", { s = 16, kind = "arc", m = 0.5, adaptive = false } },
      { "mv_softmax", { s = 16, easy_margin = false } },
      { "curricularface", { s = 16, t = 0.4 } }, { "circle", { gamma = 32 } }, { "circle", {} },
      { "center", { lambda = 0.1 } }, { "discface", { s = 16 } },
      { "discface", { s = 16, base = "arc", per_class_xi = true } },
      { "npcface", { s = 16 } }, { "npcface", { s = 16, hardness_from = "reweighted", hardness_grad = true } },
      { "circle_pairwise", { gamma = 32 } },
    }
    for k, cfg in ipairs(CONFIGS) do
      local name, o = cfg[1], cfg[2]
      local label = name
      for key, v in pairs(o) do label = label .. " " .. key .. "=" .. tostring(v) end
      it(label, function()
        fvl.manual_seed(100 + k)
        local opts = { dim = Db, classes = Cb }
        for key, v in pairs(o) do opts[key] = v end
        if name == "circle_pairwise" then opts.classes = nil end
        local h = fvl.loss[name](opts)
        if h.xi then
          local xi = fvl.randn(h.xi:shape()) * 0.05
          xi = xi:detach(); xi:requires_grad(); h.xi = xi
        end
        local x = fvl.randn(Bb, Db)
        x:requires_grad()
        local y = {}
        for i = 1, Bb do y[i] = (i * 7) % (name == "circle_pairwise" and 5 or Cb) + 1 end
        local state = { iter = h.iter, t = h.t, centers = h.centers and h.centers:clone() }
        local l1 = h(x, y)
        l1:backward()
        local g1 = { x = x.grad:totable() }
        for i, p in ipairs(h:parameters()) do g1[i] = p.grad:totable(); p.grad = nil end
        local after = { iter = h.iter, t = h.t, centers = h.centers and h.centers:totable() }
        -- the same step on the reference primitives
        h.iter, h.t = state.iter, state.t
        if state.centers then h.centers = state.centers end
        local x2 = fresh(x)
        fvl.loss.use_reference(true)
        local ok, l2 = pcall(h, x2, y)
        fvl.loss.use_reference(false)
        assert(ok, l2)
        expect_near(l1:item(), l2:item(), 2e-5, 1e-6, "loss")
        l2:backward()
        local sc = o.s or o.gamma or 64
        expect_all_near(g1.x, x2.grad:totable(), 1e-3, 1e-5 * sc, "dx")
        for i, p in ipairs(h:parameters()) do expect_all_near(g1[i], p.grad:totable(), 1e-3, 1e-5 * sc, "param " .. i) end
        if after.iter then expect_eq(h.iter, after.iter) end
        if after.t then expect_near(h.t, after.t, 1e-6, 1e-7) end
        if after.centers then expect_all_near(h.centers, after.centers, 1e-5, 1e-6, "centres") end
      end)
    end
  end)
end

-- The tensor-op reference near θ = 0 (both modes: it calls fvl.loss.reference itself). Row 1 sits
-- at θ = 2e-4 from its class centre, where the fp32 cosine rounds to 1: the reference forms
-- 1 − cos θ as ‖x̂ − ŵ_y‖²/2, so its gradients equal the derivative computed here in double from
-- the same fp32 inputs (Lua numbers are doubles).
describe("loss reference: exact near θ = 0", function()
  local Bn, Dn, Cn, K, S = 3, 8, 5, 2, 8
  local Y = { 2, 4, 1 }
  local function unit(v)
    local n = 0
    for _, a in ipairs(v) do n = n + a * a end
    n = math.sqrt(n)
    local u = {}
    for k, a in ipairs(v) do u[k] = a / n end
    return u, n
  end
  local function dot(a, b) local s = 0; for k = 1, #a do s = s + a[k] * b[k] end; return s end
  -- inputs: W (Cn·K rows: K sub-centres per class, K = 1 for the plain heads); x row 1 at angle θ0
  -- from row `near` of W, the other rows random
  local function inputs(kk, near, th0)
    fvl.manual_seed(31)
    local W = fvl.randn(Cn * kk, Dn)
    local Wt = W:totable()
    local e = unit(Wt[near])
    local f = fvl.randn(Dn):totable()
    local p = dot(f, e)
    for k = 1, Dn do f[k] = f[k] - p * e[k] end
    f = unit(f)
    local xt = fvl.randn(Bn, Dn):totable()
    for k = 1, Dn do xt[1][k] = 2.5 * (math.cos(th0) * e[k] + math.sin(th0) * f[k]) end
    local x = fvl.tensor(xt)
    x:requires_grad()
    W = W:detach()
    W:requires_grad()
    return x, W
  end
  -- loss and gradients in double; T(c, θ, sinθ) → target value and dT/dc
  local function exact(x, W, kk, T)
    local xt, Wt = x:detach():totable(), W:detach():totable()
    local gx, gW = {}, {}
    for r = 1, #Wt do gW[r] = {}; for k = 1, Dn do gW[r][k] = 0 end end
    local loss = 0
    for i = 1, Bn do
      local xh, xn = unit(xt[i])
      gx[i] = {}
      for k = 1, Dn do gx[i][k] = 0 end
      local cols, c, z = {}, {}, {}
      for j = 1, Cn do                          -- the best of the class's kk sub-centres
        local best, bc
        for q = 1, kk do
          local r = (j - 1) * kk + q
          local cr = dot(xh, (unit(Wt[r])))
          if not bc or cr > bc then best, bc = r, cr end
        end
        cols[j], c[j], z[j] = best, bc, S * bc
      end
      local wy = unit(Wt[cols[Y[i]]])
      local u = 0
      for k = 1, Dn do u = u + (xh[k] - wy[k]) ^ 2 end
      u = u / 2
      local sn = math.sqrt(u * (2 - u))
      local tv, dT = T(1 - u, 2 * math.asin(math.sqrt(u / 2)), sn)
      z[Y[i]] = S * tv
      local mx = -math.huge
      for j = 1, Cn do mx = math.max(mx, z[j]) end
      local se = 0
      for j = 1, Cn do se = se + math.exp(z[j] - mx) end
      loss = loss + (mx + math.log(se) - z[Y[i]]) / Bn
      for j = 1, Cn do
        local dz = (math.exp(z[j] - mx) / se - (j == Y[i] and 1 or 0)) / Bn
        local dc = S * dz * (j == Y[i] and dT or 1)
        local wh, wn = unit(Wt[cols[j]])
        for k = 1, Dn do
          gx[i][k] = gx[i][k] + dc * (wh[k] - c[j] * xh[k]) / xn
          gW[cols[j]][k] = gW[cols[j]][k] + dc * (xh[k] - c[j] * wh[k]) / wn
        end
      end
    end
    return loss, gx, gW
  end
  local function check(kk, spec, T)
    local R = require "fvl.loss.reference"
    local x, W = inputs(kk, (Y[1] - 1) * kk + kk, 2e-4)
    local cos = R.cosine(x, W)
    if kk > 1 then cos = R.group_max(cos, kk) end
    local l = R.margin_ce(cos, Y, spec)
    l:backward()
    local el, egx, egW = exact(x, W, kk, T)
    expect_near(l:item(), el, 1e-5, 0, "loss")
    local ax, aW = x.grad:totable(), W.grad:totable()
    -- rows compared as rows (fp32 x̂ − ŵ at ‖·‖ ≈ 2e-4 carries ~1e-4 relative error)
    local function rows(a, e, what)
      for r = 1, #e do
        local d2, e2 = 0, 0
        for k = 1, #e[r] do d2 = d2 + (a[r][k] - e[r][k]) ^ 2; e2 = e2 + e[r][k] ^ 2 end
        if not (math.sqrt(d2) <= 2e-3 * math.sqrt(e2) + 1e-7) then
          error(string.format("%s row %d: |diff| %.3g, |expected| %.3g", what, r, math.sqrt(d2), math.sqrt(e2)), 0)
        end
      end
    end
    rows(ax, egx, "grad x")
    rows(aW, egW, "grad W")
  end
  local m = 0.5
  local function arc(c, th, sn) return math.cos(th + m), math.cos(m) + c * math.sin(m) / sn end
  it("ArcFace (cos(θ + m))", function() check(1, { s = S, target = "arc", m = m, fallback = "none" }, arc) end)
  it("ArcFace after group_max (Sub-center)", function()
    check(K, { s = S, target = "arc", m = m, fallback = "none" }, arc)
  end)
  it("per-row margins (MagFace, ElasticFace, NPCFace)", function()
    check(1, { s = S, target = "arc", m = fvl.tensor { m, m, m }, fallback = "none" }, arc)
  end)
  it("Combined (cos(m1·θ + m2) − m3)", function()
    local m1, m2, m3 = 0.9, 0.4, 0.15
    check(1, { s = S, target = "combined", m1 = m1, m2 = m2, m3 = m3, fallback = "none" }, function(_, th, sn)
      return math.cos(m1 * th + m2) - m3, m1 * math.sin(m1 * th + m2) / sn
    end)
  end)
end)
