-- fvl.loss.discface — DiscFace (docs/losses.md §1.11), written from the fvl.F primitives:
--   L = CE(CosFace | ArcFace) + λ·mean_i |x̂_i - ŵ_{y_i} - ξ_eff|,  ξ_eff = ξ·min(1, ξ_max/|ξ|)
-- ξ is a learnable parameter (head.xi): one D-vector (paper) or C×D, one per class (bobo).
local fvl = require "fvl.core"
local util = require "fvl.util"
local base = require "fvl.loss.base"
local margin = require "fvl.loss.margin"

local opts, num, bool, enum = base.opts, base.num, base.bool, base.enum
local fail = util.fail
local DiscFace = util.class("fvl.loss.discface", base.Head)

-- |rows of v| with a zero-safe gradient (subgradient 0 at v = 0): sqrt(Σv² + 1e-30), n×1
local function row_norm(v, n) return ((v * v):sum(2):reshape(n, 1) + 1e-30):sqrt() end

-- W[y] as B×D rows: the fused gather adds its backward straight into W.grad (no C×D temporary)
local function rows_of(W, y)
  local F = base.F()
  if F.gather_rows then return F.gather_rows(W, y) end
  return W:index(1, y)
end

function DiscFace:forward(x, labels)
  local B, y = self:check_input(x, labels)
  enum("discface", "base", self.base, { "cos", "arc" })
  local fb, easy = margin.arc_fallback("discface", self.fallback, self.easy_margin)
  local ce = self:cosine_margin_ce(x, B, y, { s = self.s, target = self.base == "arc" and "arc" or "cos",
                                               m = self.m, fallback = fb, easy_margin = easy })
  local xi = self.xi
  local rows = xi:dim() == 2 and xi:size(1) or 1
  local xi2 = rows > 1 and rows_of(xi, y) or xi:reshape(1, self.dim)  -- B×D or 1×D
  local n2 = rows > 1 and B or 1
  local xi_eff = xi2 / (row_norm(xi2, n2) / self.xi_max):clamp(1, math.huge)   -- |ξ_eff| ≤ ξ_max
  local F = base.F()
  if F.disc_dist then   -- fused: one B×D buffer kept for the backward
    return ce + F.disc_dist(x, self.weight, y, xi_eff) * self.lambda
  end
  local eps = fvl.normalize(x, 2) - fvl.normalize(rows_of(self.weight, y), 2)   -- B×D variation
  return ce + row_norm(eps - xi_eff, B):mean() * self.lambda
end

local M = {}
function M.discface(o)
  local n = "discface"
  o = util.check_opts(n, o, opts(base.COMMON, { "base", "s", "m", "lambda", "xi_max", "per_class_xi",
                                                "xi", "fallback", "easy_margin" }))
  local self = setmetatable({}, DiscFace):setup(n, o)
  self.base = enum(n, "base", o.base, { "cos", "arc" }, "cos")
  self.s = num(n, "s", o.s, 64, 0)
  self.m = num(n, "m", o.m, self.base == "arc" and 0.5 or 0.35)
  self.lambda = num(n, "lambda", o.lambda, 0.4, 0)
  self.xi_max = num(n, "xi_max", o.xi_max, 0.05, 0)
  self.fallback = enum(n, "fallback", o.fallback, { "mm", "easy", "none", "clamp" }, "mm")
  self.easy_margin = bool(n, "easy_margin", o.easy_margin, false)
  local C, D = self.classes, self.dim
  if o.xi ~= nil then
    util.check_tensor(n, "xi", o.xi, "float32")
    local ok = o.xi:numel() == D or (o.xi:dim() == 2 and o.xi:size(1) == C and o.xi:size(2) == D)
    if not ok then fail(n .. ": xi is " .. util.shape_str(o.xi) .. ", expected " .. D .. " or " .. C .. "×" .. D) end
    if o.per_class_xi == false and o.xi:dim() == 2 and C ~= 1 then
      fail(n .. ": xi is " .. util.shape_str(o.xi) .. " but per_class_xi = false (expected " .. D .. ")")
    end
    self.per_class_xi = o.xi:dim() == 2 and o.xi:size(1) == C and C > 1
    self.xi = base.leaf_copy(self.per_class_xi and o.xi or o.xi:reshape(D))
  else
    self.per_class_xi = bool(n, "per_class_xi", o.per_class_xi, false)
    local xi = self.per_class_xi and fvl.zeros(C, D) or fvl.zeros(D)   -- ξ starts at 0
    xi:requires_grad()
    self.xi = xi
  end
  return self
end

return M
