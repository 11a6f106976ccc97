-- Finite-difference gradient checks (fvl.gradcheck) of every head and option at small sizes.
-- Stateful heads run in evaluate() mode so their state (iter, t, centres) is frozen between the
-- finite-difference evaluations. Where the reference semantics hold a smooth quantity constant
-- (Circle's α, ArcFace's detached δ, NPCFace's h without hardness_grad), plain finite
-- differences cannot see the "constant": those heads are compared against a composition of
-- ordinary tensor ops with the constants frozen at the base point, and that composition is
-- finite-difference checked itself.
local fvl = fvl or require "fvl"
-- FVL_LOSS_REFERENCE=1: heads and primitives from fvl.loss.reference (tensor-op compositions)
if os.getenv("FVL_LOSS_REFERENCE") == "1" then fvl.loss.use_reference(true) end
local F = os.getenv("FVL_LOSS_REFERENCE") == "1" and require "fvl.loss.reference" or fvl.F

-- tiny problems: one thread (OpenMP regions on a loaded machine cost more than the work)
fvl.threads(1)
local B, D, C = 6, 5, 7
local LABELS = { 1, 2, 3, 1, 5, 7 }

local function data(seed)
  fvl.manual_seed(seed)
  local x = fvl.randn(B, D)
  x:requires_grad()
  return x
end

local function gradcheck(f, inputs, what)
  local ok, report = fvl.gradcheck(f, inputs)
  expect_true(ok, (what or "gradcheck") .. ": " .. tostring(report))
end

-- f(x, W[, extra]) evaluates the head with its parameters replaced by the perturbed inputs
local function check_head(head, seed, extra_name)
  local x = data(seed)
  local inputs = { x, head.weight }
  if extra_name then inputs[3] = head[extra_name] end
  gradcheck(function(xx, W, e)
    head.weight = W
    if extra_name then head[extra_name] = e end
    return head(xx, LABELS)
  end, inputs, head.name)
end

local function case(name, opts, seed, extra, setup)
  it(name .. " " .. (opts._label or ""), function()
    local o = { dim = D, classes = C }
    for k, v in pairs(opts) do if k ~= "_label" then o[k] = v end end
    local head = fvl.loss[name](o)
    if setup then setup(head) end
    check_head(head, seed or 11, extra)
  end)
end

describe("gradcheck plain heads", function()
  case("softmax", { bias = true, _label = "x, W" })
  it("softmax bias", function()
    local head = fvl.loss.softmax { dim = D, classes = C }
    local x = data(12)
    gradcheck(function(b) head.bias = b; return head(x, LABELS) end, { head.bias }, "softmax bias")
  end)
  case("normface", { s = 8 })
  case("cosface", { s = 8, m = 0.35 })
  case("cosface", { s = 8, m = 0.35, easy_margin = true, _label = "easy_margin" })
  case("am_softmax", { s = 6 })
  for _, fb in ipairs { "mm", "none", "clamp", "easy" } do
    case("arcface", { s = 8, m = 0.5, fallback = fb, _label = "fallback=" .. fb })
  end
  case("arcface", { s = 8, m = 0.5, easy_margin = true, _label = "easy_margin" })
  case("combined", { s = 8, m1 = 1, m2 = 0.3, m3 = 0.2, _label = "(1, .3, .2) none" })
  case("combined", { s = 8, m1 = 0.9, m2 = 0.4, m3 = 0.15, _label = "(.9, .4, .15) none" })
  case("combined", { s = 8, m1 = 0.9, m2 = 0.4, m3 = 0.15, fallback = "clamp", _label = "clamp" })
  case("combined", { s = 8, m1 = 1, m2 = 0.3, m3 = 0.2, fallback = "mm", _label = "mm" })
end)

describe("gradcheck stateful heads (frozen state)", function()
  local function frozen(h) h:evaluate() end
  case("sphereface", { iter = 10, _label = "norm scale, λ annealing" }, 13, nil, frozen)
  case("sphereface", { iter = 5000, _label = "norm scale, λ = λ_min" }, 13, nil, frozen)
  case("sphereface", { feature_scale = "s", s = 8, iter = 100, _label = "feature_scale=s" }, 13, nil, frozen)
  case("sphereface", { lambda = 0, feature_scale = "s", s = 4, _label = "pure ψ (λ = 0)" }, 13, nil, frozen)
  case("sphereface", { m = 2, iter = 3, _label = "m = 2" }, 13, nil, frozen)
  case("curricularface", { s = 8, t = 0.3, _label = "t = 0.3" }, 14, nil, frozen)
  case("curricularface", { s = 8, t = 0.9, _label = "t = 0.9" }, 14, nil, frozen)
  case("center", { lambda = 0.5, _label = "x, W" }, 15, nil, function(h)
    fvl.manual_seed(99)
    h.centers = fvl.randn(C, D)
    frozen(h)
  end)
  it("center bias", function()
    local head = fvl.loss.center { dim = D, classes = C, lambda = 0.5 }
    head:evaluate()
    local x = data(16)
    gradcheck(function(b) head.bias = b; return head(x, LABELS) end, { head.bias }, "center bias")
  end)
end)

describe("gradcheck hard-negative heads", function()
  for _, kind in ipairs { "am", "arc" } do
    for _, adaptive in ipairs { true, false } do
      for _, easy in ipairs { true, false } do
        case("mv_softmax", { s = 8, m = kind == "am" and 0.35 or 0.5, t = 0.2, kind = kind,
                             adaptive = adaptive, easy_margin = easy,
                             _label = string.format("%s adaptive=%s easy=%s", kind, adaptive, easy) }, 17)
      end
    end
  end
  -- NPCFace: with hardness_grad the margin's dependence on the hard negatives is part of the
  -- gradient, so plain finite differences apply; without it h is a constant, checked with m1 = 0
  -- here and through the frozen composition below.
  for _, from in ipairs { "raw", "reweighted" } do
    case("npcface", { s = 8, hardness_from = from, hardness_grad = true, _label = from .. " hardness_grad" }, 18)
    case("npcface", { s = 8, m1 = 0, hardness_from = from, _label = from .. " m1 = 0" }, 18)
  end
  case("npcface", { s = 8, hardness_grad = true, easy_margin = false, _label = "no easy margin" }, 18)
  case("npcface", { s = 8, hardness_grad = true, hard_margin = 0.5, _label = "hard_margin 0.5" }, 18)
end)

describe("gradcheck discface", function()
  case("discface", { s = 8, _label = "cos, ξ = 0" }, 19, "xi")
  local function set_xi(scale, per_class)
    return function(h)
      fvl.manual_seed(5)
      local xi = per_class and fvl.randn(C, D) * scale or fvl.randn(D) * scale
      xi = xi:detach()
      xi:requires_grad()
      h.xi = xi
    end
  end
  case("discface", { s = 8, _label = "cos, |ξ| < ξ_max" }, 19, "xi", set_xi(0.01))
  case("discface", { s = 8, _label = "cos, |ξ| > ξ_max (bounded)" }, 19, "xi", set_xi(0.3))
  case("discface", { s = 8, base = "arc", _label = "arc" }, 19, "xi", set_xi(0.3))
  case("discface", { s = 8, per_class_xi = true, _label = "per-class ξ" }, 19, "xi", set_xi(0.1, true))
  case("discface", { s = 8, lambda = 2, xi_max = 0.5, _label = "λ = 2, ξ_max = 0.5" }, 19, "xi", set_xi(0.2))
end)

-- frozen compositions --------------------------------------------------------------------------
local function cosines(x, W)
  return fvl.normalize(x, 2):matmul(fvl.normalize(W, 2):t()):clamp(-1, 1)
end
-- CE of the logits A⊙cos + K with A, K constant B×C tables (plain CE through the fused kernel)
local function affine_ce(A, K)
  local At, Kt = fvl.tensor(A), fvl.tensor(K)
  return function(x, W)
    return F.margin_ce(cosines(x, W) * At + Kt, LABELS, { s = 1, target = "none" })
  end
end
-- compare the head's loss and gradients with f's at the same point; gradcheck f itself
local function compare_with(head, f, x, what)
  local loss = head(x, LABELS)
  loss:backward()
  local gx, gW = x.grad:totable(), head.weight.grad:totable()
  local x2 = x:detach():clone()
  x2:requires_grad()
  local W2 = head.weight:detach():clone()
  W2:requires_grad()
  local ref = f(x2, W2)
  expect_near(loss:item(), ref:item(), 1e-5, 1e-6, what .. " loss")
  ref:backward()
  expect_all_near(gx, x2.grad:totable(), 1e-4, 1e-5, what .. " dx")
  expect_all_near(gW, W2.grad:totable(), 1e-4, 1e-5, what .. " dW")
  local x3 = x:detach():clone()
  x3:requires_grad()
  local W3 = head.weight:detach():clone()
  W3:requires_grad()
  gradcheck(f, { x3, W3 }, what .. " (frozen composition)")
end

describe("gradcheck with frozen constants", function()
  it("circle: α_p, α_n constant", function()
    local m, gamma = 0.25, 16
    local head = fvl.loss.circle { dim = D, classes = C, m = m, gamma = gamma }
    local x = data(21)
    local c0 = cosines(x:detach(), head.weight:detach()):totable()
    local A, K = {}, {}
    for i = 1, B do
      A[i], K[i] = {}, {}
      for j = 1, C do
        local c = c0[i][j]
        local a, delta
        if j == LABELS[i] then a, delta = math.max(1 + m - c, 0), 1 - m
        else a, delta = math.max(c + m, 0), m end
        A[i][j], K[i][j] = gamma * a, -gamma * a * delta
      end
    end
    compare_with(head, affine_ce(A, K), x, "circle")
  end)

  it("arcface grad=detached: straight-through target", function()
    local s, m = 8, 0.5
    local head = fvl.loss.arcface { dim = D, classes = C, s = s, m = m, fallback = "none", grad = "detached" }
    local x = data(22)
    local c0 = cosines(x:detach(), head.weight:detach()):totable()
    local A, K = {}, {}
    for i = 1, B do
      A[i], K[i] = {}, {}
      for j = 1, C do
        A[i][j], K[i][j] = s, 0
        if j == LABELS[i] then
          local c = c0[i][j]
          K[i][j] = s * (math.cos(math.acos(c) + m) - c)      -- δ = T(c) - c, constant
        end
      end
    end
    compare_with(head, affine_ce(A, K), x, "arcface detached")
  end)

  it("npcface: h constant (FaceX)", function()
    local s, m0, m1, t, alpha = 8, 0.4, 0.2, 1.1, 0.2
    local head = fvl.loss.npcface { dim = D, classes = C, s = s, m0 = m0, m1 = m1, t = t, alpha = alpha }
    local x = data(23)
    local c0 = cosines(x:detach(), head.weight:detach()):totable()
    -- target cos(θ+m_i) is not affine in c: linearise nothing, compose it from ops instead
    local hard, mi = {}, {}
    for i = 1, B do
      local cy = c0[i][LABELS[i]]
      local thr = cy * math.cos(m0) - math.sqrt(math.max(1 - cy * cy, 0)) * math.sin(m0)
      local sum, n = 0, 0
      hard[i] = {}
      for j = 1, C do
        hard[i][j] = (j ~= LABELS[i] and c0[i][j] > thr) and 1 or 0
        if hard[i][j] == 1 then sum, n = sum + c0[i][j], n + 1 end
      end
      mi[i] = m0 + m1 * sum / math.max(n, 1)
    end
    local H = fvl.tensor(hard)
    local onehot, cosm, sinm, apply = {}, {}, {}, {}
    for i = 1, B do
      onehot[i] = {}
      for j = 1, C do onehot[i][j] = j == LABELS[i] and 1 or 0 end
      cosm[i], sinm[i] = { math.cos(mi[i]) }, { math.sin(mi[i]) }
      apply[i] = { c0[i][LABELS[i]] > 0 and 1 or 0 }
    end
    local OH, CM, SM, AP = fvl.tensor(onehot), fvl.tensor(cosm), fvl.tensor(sinm), fvl.tensor(apply)
    local f = function(xx, W)
      local c = cosines(xx, W)
      local cy = (c * OH):sum(2):reshape(B, 1)                                  -- B×1
      local sn = ((cy * cy * -1 + 1):clamp(0, math.huge) + 1e-30):sqrt()
      local fy = (cy * CM - sn * SM) * AP + cy * (AP * -1 + 1)                   -- easy margin
      local neg = c + (c * (t - 1) + alpha) * H                                   -- hard: t·c + α
      local z = (neg * (OH * -1 + 1) + fy * OH) * s
      return F.margin_ce(z, LABELS, { s = 1, target = "none" })
    end
    compare_with(head, f, x, "npcface")
  end)

  it("circle_pairwise: α constant, PML anchors", function()
    local m, gamma = 0.25, 4
    local labels = { 1, 1, 2, 2, 3, 3 }
    local head = fvl.loss.circle_pairwise { m = m, gamma = gamma }
    local x = data(24)
    local xn0 = fvl.normalize(x:detach(), 2)
    local S0 = xn0:matmul(xn0:t()):totable()
    local Ap, Kp, An, Kn = {}, {}, {}, {}
    for i = 1, B do
      Ap[i], Kp[i], An[i], Kn[i] = {}, {}, {}, {}
      for j = 1, B do
        local s = S0[i][j]
        local pos, neg = labels[i] == labels[j] and i ~= j, labels[i] ~= labels[j]
        local ap, an = math.max(1 + m - s, 0), math.max(s + m, 0)
        -- masked entries: coefficient 0 and offset -1e4 (exp underflows to 0)
        Ap[i][j], Kp[i][j] = pos and -gamma * ap or 0, pos and gamma * ap * (1 - m) or -1e4
        An[i][j], Kn[i][j] = neg and gamma * an or 0, neg and -gamma * an * m or -1e4
      end
    end
    local tAp, tKp, tAn, tKn = fvl.tensor(Ap), fvl.tensor(Kp), fvl.tensor(An), fvl.tensor(Kn)
    local function lse(z) return z:exp():sum(2):reshape(B, 1):log() end   -- small γ: no shift needed
    local f = function(xx)
      local xn = fvl.normalize(xx, 2)
      local S = xn:matmul(xn:t())
      local zi = lse(S * tAp + tKp) + lse(S * tAn + tKn)
      return (zi:exp() + 1):log():mean()                                    -- softplus, all anchors valid
    end
    local loss = head(x, labels)
    loss:backward()
    local gx = x.grad:totable()
    local x2 = x:detach():clone()
    x2:requires_grad()
    local ref = f(x2)
    expect_near(loss:item(), ref:item(), 1e-5, 1e-6, "circle_pairwise loss")
    ref:backward()
    expect_all_near(gx, x2.grad:totable(), 1e-4, 1e-5, "circle_pairwise dx")
    local x3 = x:detach():clone()
    x3:requires_grad()
    gradcheck(f, { x3 }, "circle_pairwise (frozen composition)")
  end)
end)

describe("gradcheck per-row primitives used by the hybrids", function()
  it("margin_ce with per-row s and m (tracked)", function()
    local x = data(25)
    fvl.manual_seed(26)
    local W = fvl.randn(C, D)
    W:requires_grad()
    local s = fvl.rand(B) * 4 + 4
    s = s:detach()
    s:requires_grad()
    local mr = fvl.rand(B) * 0.3 + 0.2
    mr = mr:detach()
    mr:requires_grad()
    gradcheck(function(xx, WW, ss, mm)
      return F.margin_ce(F.cosine(xx, WW), LABELS, { s = ss, target = "arc", m = mm, easy_margin = true })
    end, { x, W, s, mr }, "margin_ce s_row, m_row")
  end)
  it("center_dist: ½Σ|x_i − c_y|², gradient x − c_y from the centres of the forward", function()
    if not F.center_dist then return end   -- the reference heads compose it from tensor ops
    local x = data(29)
    fvl.manual_seed(30)
    local cen = fvl.randn(C, D)
    gradcheck(function(xx) return F.center_dist(xx, cen, LABELS) end, { x }, "center_dist")
    local d = x:detach() - cen:index(1, fvl.tensor(LABELS, "int32"))
    local want = (d * d):sum():item() * 0.5
    local L = F.center_dist(x, cen, LABELS)
    expect_near(L:item(), want, 1e-5)
    F.center_update(cen, x:detach(), LABELS, 0.5)   -- the α-rule runs before the backward
    x.grad = nil
    L:backward()
    local g, dt = x.grad:totable(), d:totable()
    for i = 1, B do
      for k = 1, D do expect_near(g[i][k], dt[i][k], 1e-5, 1e-6) end
    end
  end)
  it("disc_dist: mean_i |x̂_i − ŵ_y − ξ_i| against its tensor-op composition (shared and per-row ξ)", function()
    if not F.disc_dist then return end
    local y = fvl.tensor(LABELS, "int32")
    for _, per_row in ipairs { false, true } do
      local x = data(31)
      fvl.manual_seed(32)
      local W = fvl.randn(C, D)
      W:requires_grad()
      local xi = (per_row and fvl.randn(B, D) or fvl.randn(D)) * 0.05
      xi = xi:detach()
      xi:requires_grad()
      local what = per_row and "disc_dist per-row ξ" or "disc_dist shared ξ"
      gradcheck(function(xx, WW, q) return F.disc_dist(xx, WW, LABELS, q) end, { x, W, xi }, what)
      local copies = {}
      for k, t in ipairs { x, W, xi } do
        copies[k] = t:detach():clone()
        copies[k]:requires_grad()
      end
      x.grad, W.grad, xi.grad = nil, nil, nil   -- gradcheck leaves its own backward's gradients
      local L = F.disc_dist(x, W, LABELS, xi)
      L:backward()
      local q = per_row and copies[3] or copies[3]:reshape(1, D)
      local v = fvl.normalize(copies[1], 2) - fvl.normalize(copies[2]:index(1, y), 2) - q
      local R = ((v * v):sum(2) + 1e-30):sqrt():mean()
      R:backward()
      expect_near(L:item(), R:item(), 1e-5, 1e-7, what .. " value")
      for k, name in ipairs { "x", "W", "xi" } do
        expect_all_near(({ x, W, xi })[k].grad:totable(), copies[k].grad:totable(), 1e-4, 1e-6, what .. " d" .. name)
      end
    end
  end)
  it("hard_mean (tracked)", function()
    local x = data(27)
    fvl.manual_seed(28)
    local W = fvl.randn(C, D)
    W:requires_grad()
    gradcheck(function(xx, WW)
      local h = F.hard_mean(F.cosine(xx, WW), LABELS, { hard = "arc", hard_m = 0.4, values = "affine",
                                                                 a = 1.1, b = 0.2 })
      return (h * h):sum()
    end, { x, W }, "hard_mean")
  end)
end)
