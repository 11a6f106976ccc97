-- fvl.loss.reference — the fvl.F loss primitives composed from ordinary tensor ops (slow, but
-- every step is visible). Same signatures and semantics as fvl.F.cosine, margin_ce, hard_mean,
-- target_cos, circle_pairwise, center_update, neg_lse, group_max (and group_max_ws); constants (masks, branches, k, α, δ) are computed
-- from detached values, as in the references. Used to cross-check the fused kernels and to
-- debug a head: fvl.loss.use_reference(true) makes every head call these instead.
--
-- Near θ = 0 (a sample on its class centre) the angular margins need sin θ = √(1 − c²) and θ,
-- and 1 − c of an fp32 cosine keeps only a few significant bits there. So R.cosine remembers the
-- normalised rows x̂, Ŵ it multiplied (SOURCE, weak keys: as long as its result lives), and
-- margin_ce forms the target's complement from them, 1 − cos θ = ‖x̂ − ŵ_y‖²/2, then
-- sin²θ = (1 − c)(1 + c) and θ = 2·asin(‖x̂ − ŵ_y‖/2): the same maths, well conditioned, and
-- autograd differentiates these ops like any others.
local fvl = require "fvl.core"
local util = require "fvl.util"
local R = {}

local PI = math.pi
-- labels → a Lua list of 1-based ids, checked by the same binding check as fvl.F (one owner:
-- fvl._check_labels is fvl_checklabels; a head's checked value is not scanned again); C = nil:
-- any class id
local function label_list(labels, fn, B, C)
  return fvl._check_labels(labels, fn, B or -1, C or -1):totable()
end
local function onehot(y, B, C)
  local t = {}
  for i = 1, B do
    local r = {}
    for j = 1, C do r[j] = 0 end
    r[y[i]] = 1
    t[i] = r
  end
  return fvl.tensor(t)
end
-- a spec field that is a number or a tensor with one value per row (the binding's messages)
local function check_row(name, key, v, B)
  if type(v) == "number" or v == nil then return end
  if not util.is_tensor(v) then
    error(string.format("%s: %s must be a number or a tensor with one value per row, got %s", name, key,
                        type(v)), 0)
  end
  if v:numel() ~= B then
    error(string.format("%s: %s is %s (expected one value per row: %d entries)", name, key,
                        util.shape_str(v), B), 0)
  end
end
local function col(v, B) -- number or B tensor → B×1 tensor (tracked) or number
  if type(v) == "number" then return v end
  return v:reshape(B, 1)
end
local function rowvals(v, B) -- number or B tensor → Lua list of B numbers
  if type(v) == "number" then
    local t = {}
    for i = 1, B do t[i] = v end
    return t
  end
  return v:detach():reshape(B):totable()
end
local function ctm_raw(c, m) return c * math.cos(m) - math.sqrt(math.max(1 - c * c, 0)) * math.sin(m) end

-- hard mask table (B×C, 0/1) from detached cosines
local function hard_mask(cd, y, B, C, hard, hard_m)
  local H = {}
  for i = 1, B do
    local cy, thr = cd[i][y[i]], nil
    if hard == "arc" then thr = ctm_raw(cy, hard_m) elseif hard == "cos" then thr = cy - hard_m end
    local r = {}
    for j = 1, C do r[j] = (j ~= y[i] and (thr == nil or cd[i][j] > thr)) and 1 or 0 end
    H[i] = r
  end
  return H
end

-- score matrix → { xn = x̂ (B×D), Wn = Ŵ (R×D), rows = nil (column j is row j of Ŵ) or a
-- B×C Lua table of the Ŵ row behind each column (after group_max) }
local SOURCE = setmetatable({}, { __mode = "k" })

function R.cosine(x, W)
  local xn, Wn = fvl.normalize(x, 2), fvl.normalize(W, 2)
  local cos = xn:matmul(Wn:t()):clamp(-1, 1)
  SOURCE[cos] = { xn = xn, Wn = Wn }
  return cos
end

-- The target cosine and its complement, both B×1 and tracked: c = 1 − u and u = ‖x̂_i − ŵ_{y_i}‖²/2
-- (Ŵ's target rows gathered) where cos came from R.cosine (or R.group_max of it) and c_y > 0;
-- elsewhere (a matrix from anything else, zero rows, c_y <= 0: no cancellation) c = c_y, u = 1 − c_y.
local function target_pair(cos, y, cy, cyd, B)
  local src, u = SOURCE[cos], cy * -1 + 1
  if not src then return cy, u end
  local rows, near = {}, {}
  for i = 1, B do
    rows[i] = src.rows and src.rows[i][y[i]] or y[i]
    near[i] = { cyd[i] > 0 and 1 or 0 }
  end
  local d = src.xn - src.Wn:index(1, rows)
  local us = (d * d):sum(2):reshape(B, 1) * 0.5
  local br = fvl.tensor(near)
  local far = br * -1 + 1
  return (us * -1 + 1) * br + cy * far, us * br + u * far
end

function R.target_cos(cos, labels)
  local B, C = cos:size(1), cos:size(2)
  return (cos * onehot(label_list(labels, "target_cos", B, C), B, C)):sum(2)
end

-- the target kernel T(c_y) (B×1) for a spec; pair() → the well-conditioned c, 1 − c (target_pair)
local function target(sp, cy, cyd, B, pair)
  local kind = sp.target or "none"
  local m = col(sp.m or 0, B)
  local mv = rowvals(sp.m or 0, B)
  local function mask(f) local t = {}; for i = 1, B do t[i] = { f(i) and 1 or 0 } end; return fvl.tensor(t) end
  local function blend(br, a, b) return a * br + b * (br * -1 + 1) end
  local c, u, sin, theta
  if kind == "arc" or kind == "combined" then
    c, u = pair()
    -- sin θ = √((1 − c)(1 + c)); θ = 2·asin(h), h = sin(θ/2) = √(u/2) = ‖x̂ − ŵ‖/2, written
    -- π − 2·acos(h) (the tensor ops have acos; its argument h is far from ±1 near θ = 0). The
    -- floor 1e-30 only keeps √ differentiable at θ = 0 exactly (there: gradient 0 through it).
    sin = (u * (u * -1 + 2)):clamp(1e-30, math.huge):sqrt()
    if kind == "combined" then theta = (u * 0.5):clamp(1e-30, 1):sqrt():acos() * -2 + PI end
  end
  local T
  if kind == "none" then
    T = cy
  elseif kind == "cos" then
    T = cy - m
    if sp.easy_margin then T = blend(mask(function(i) return cyd[i] > 0 end), T, cy) end
  elseif kind == "arc" then
    local cm = type(m) == "number" and math.cos(m) or m:cos()
    local sm = type(m) == "number" and math.sin(m) or m:sin()
    local ctm = c * cm - sin * sm
    local fb = sp.fallback or "mm"
    if sp.easy_margin then
      T = blend(mask(function(i) return cyd[i] > 0 end), ctm, cy)
    elseif fb == "mm" then
      T = blend(mask(function(i) return cyd[i] > math.cos(PI - mv[i]) end), ctm, cy - m * sm)
    elseif fb == "clamp" then
      T = blend(mask(function(i) return math.acos(cyd[i]) + mv[i] < PI end), ctm, cy * 0 - 1)
    else
      T = ctm
    end
  elseif kind == "combined" then
    local m1, m2, m3 = sp.m1 or 1, sp.m2 or 0, sp.m3 or 0
    local th = theta * m1 + m2
    local fb = sp.fallback or "mm"
    if fb == "mm" then
      T = blend(mask(function(i) return cyd[i] > math.cos(PI - m2) end), th:cos() - m3, cy - m2 * math.sin(m2))
    elseif fb == "clamp" then
      T = blend(mask(function(i) return m1 * math.acos(cyd[i]) + m2 < PI end), th:cos(), cy * 0 - 1) - m3
    else
      T = th:cos() - m3
    end
  elseif kind == "sphere" then
    local mi, lam = sp.sphere_m or 4, sp.lambda or 0
    local k, sg = {}, {}
    for i = 1, B do
      local kk = math.floor(mi * math.acos(cyd[i]) / PI)
      k[i], sg[i] = { kk }, { kk % 2 == 0 and 1 or -1 }
    end
    local tp, tc = cy * 0 + 1, cy                        -- Chebyshev T_0, T_1
    for _ = 2, mi do tp, tc = tc, cy * tc * 2 - tp end
    local psi = tc * fvl.tensor(sg) - fvl.tensor(k) * 2
    T = (cy * lam + psi) / (1 + lam)
  elseif kind == "given" then
    T = sp.value:reshape(B, 1)
  elseif kind == "circle" then
    local cm = sp.circle_m or 0.25
    local ap = {}
    for i = 1, B do ap[i] = { math.max(1 + cm - cyd[i], 0) } end
    T = (cy - (1 - cm)) * fvl.tensor(ap)
  else
    error("reference.margin_ce: target = " .. tostring(kind), 0)
  end
  if sp.grad == "detached" and kind ~= "none" and kind ~= "circle" then
    T = cy + (T - cy):detach()
  end
  return T
end

function R.margin_ce(cos, labels, sp, name)
  local B, C = cos:size(1), cos:size(2)
  check_row(name or "margin_ce", "s", sp.s, B)
  check_row(name or "margin_ce", "m", sp.m, B)
  local y = label_list(labels, name or "margin_ce", B, C)
  local OH = onehot(y, B, C)
  if sp.clamp and sp.clamp > 0 then cos = cos:clamp(-1 + sp.clamp, 1 - sp.clamp) end
  local cd = cos:detach():totable()
  local cyd = {}
  for i = 1, B do cyd[i] = cd[i][y[i]] end
  local cy = (cos * OH):sum(2):reshape(B, 1)
  -- (a clamped matrix is a new tensor, without SOURCE: its c_y is used as it is)
  local T = target(sp, cy, cyd, B, function() return target_pair(cos, y, cy, cyd, B) end)
  local N = cos
  local neg = sp.negative or "none"
  if neg ~= "none" then
    local H
    if sp.hard == "row" then   -- given per-row thresholds
      local thr, Ht = sp.threshold:detach():reshape(B):totable(), {}
      for i = 1, B do
        Ht[i] = {}
        for j = 1, C do Ht[i][j] = (j ~= y[i] and cd[i][j] > thr[i]) and 1 or 0 end
      end
      H = fvl.tensor(Ht)
    else
      H = fvl.tensor(hard_mask(cd, y, B, C, neg == "circle" and "all" or (sp.hard or "all"), sp.hard_m or 0))
    end
    if neg == "affine" then
      N = cos + (cos * ((sp.a or 1) - 1) + (sp.b or 0)) * H
    elseif neg == "quadratic" then
      N = cos + (cos * (sp.t or 0) + cos * cos - cos) * H
    elseif neg == "circle" then
      local cm, an = sp.circle_m or 0.25, {}
      for i = 1, B do
        an[i] = {}
        for j = 1, C do an[i][j] = math.max(cd[i][j] + cm, 0) end
      end
      N = (cos - cm) * fvl.tensor(an)
    end
  end
  local z = (N * (OH * -1 + 1) + T * OH) * col(sp.s or 1, B)
  local ce = z:logsumexp(2):reshape(B, 1) - (z * OH):sum(2):reshape(B, 1)
  local loss = ce:mean()
  local v = loss:item()
  if v ~= v or v == math.huge or v == -math.huge then
    local rows = ce:detach():reshape(B):totable()
    local bad = 1
    for i = 1, B do if rows[i] ~= rows[i] or math.abs(rows[i]) == math.huge then bad = i; break end end
    local msg = string.format("%s: loss is not finite (first bad row %d)", name or "margin_ce", bad)
    if sp.nonfinite == "warn" then io.stderr:write("warning: " .. msg .. "\n") else error(msg, 0) end
  end
  return loss
end

-- log Σ_{j≠y_i} exp(s·c_ij) per row (B), untracked
function R.neg_lse(cos, labels, s)
  local B, C = cos:size(1), cos:size(2)
  local y = label_list(labels, "neg_lse", B, C)
  local z = (cos:detach() * s + onehot(y, B, C) * -1e30)
  return z:logsumexp(2):reshape(B)
end

-- max over groups of K consecutive columns (B×C from B×(C·K)); gradient to the arg-max
function R.group_max(cos, K)
  local B, CK = cos:size(1), cos:size(2)
  local C = CK // K
  local cd = cos:detach():totable()
  local idx = {}
  for i = 1, B do
    idx[i] = {}
    for j = 1, C do
      local best = 1
      for k = 2, K do if cd[i][(j - 1) * K + k] > cd[i][(j - 1) * K + best] then best = k end end
      idx[i][j] = (j - 1) * K + best
    end
  end
  local g = cos:gather(2, fvl.tensor(idx, "int32"))
  local src = SOURCE[cos]
  if src and not src.rows then SOURCE[g] = { xn = src.xn, Wn = src.Wn, rows = idx } end
  return g
end

-- F.group_max_ws's reference: the same max (the workspaces only change where it is stored)
function R.group_max_ws(cos, K) return R.group_max(cos, K) end

function R.hard_mean(cos, labels, o)
  local B, C = cos:size(1), cos:size(2)
  local y = label_list(labels, "hard_mean", B, C)
  local H = hard_mask(cos:detach():totable(), y, B, C, o.hard or "all", o.hard_m or 0)
  local cnt = {}
  for i = 1, B do
    local n = 0
    for j = 1, C do n = n + H[i][j] end
    cnt[i] = n
  end
  local vals = o.values == "affine" and (cos * (o.a or 1) + (o.b or 0)) or cos
  local den = {}
  for i = 1, B do den[i] = math.max(cnt[i], 1) end
  return (vals * fvl.tensor(H)):sum(2) / fvl.tensor(den), fvl.tensor(cnt)
end

function R.circle_pairwise(S, labels, m, gamma)
  local B = S:size(1)
  local y = label_list(labels, "circle_pairwise", B)
  local Sd = S:detach():totable()
  local Ap, Kp, An, Kn, valid, nvalid = {}, {}, {}, {}, {}, 0
  for i = 1, B do
    Ap[i], Kp[i], An[i], Kn[i] = {}, {}, {}, {}
    local np, nn = 0, 0
    for j = 1, B do
      local s, pos, neg = Sd[i][j], y[i] == y[j] and i ~= j, y[i] ~= y[j]
      local ap, an = math.max(1 + m - s, 0), math.max(s + m, 0)
      Ap[i][j], Kp[i][j] = pos and -gamma * ap or 0, pos and gamma * ap * (1 - m) or -1e30
      An[i][j], Kn[i][j] = neg and gamma * an or 0, neg and -gamma * an * m or -1e30
      if pos then np = np + 1 end
      if neg then nn = nn + 1 end
    end
    valid[i] = { (np > 0 and nn > 0) and 1 or 0 }
    nvalid = nvalid + valid[i][1]
  end
  if nvalid == 0 then return (S * 0):sum() end
  local z = (S * fvl.tensor(Ap) + fvl.tensor(Kp)):logsumexp(2):reshape(B, 1)
          + (S * fvl.tensor(An) + fvl.tensor(Kn)):logsumexp(2):reshape(B, 1)
  local V = fvl.tensor(valid)
  z = z * V                                             -- invalid anchors: z = -inf·0 avoided below
  local sp = z:relu() + ((z:abs() * -1):exp()):log1p()  -- stable softplus
  return (sp * V):sum() / nvalid
end

function R.center_update(centers, x, labels, alpha)
  local y = label_list(labels, "center_update", x:size(1), centers:size(1))
  local C = centers:size(1)
  local xs, cs = x:detach():totable(), centers:totable()
  local n, sum = {}, {}
  for i, j in ipairs(y) do
    n[j] = (n[j] or 0) + 1
    sum[j] = sum[j] or {}
    for d = 1, #xs[i] do sum[j][d] = (sum[j][d] or 0) + xs[i][d] end
  end
  for j = 1, C do
    if n[j] then
      for d = 1, #cs[j] do
        local delta = (n[j] * cs[j][d] - sum[j][d]) / (1 + n[j])
        centers:set(j, d, cs[j][d] - alpha * delta)
      end
    end
  end
end

return R
