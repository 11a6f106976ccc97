-- fvl.loss.magface — MagFace, written from the fvl.F primitives:
--   a_i = clamp(|x_i|, l_a, u_a)                  (tracked: zero gradient outside the range)
--   m_i = (u_m − l_m)/(u_a − l_a)·(a_i − l_a) + l_m  (a per-row margin vector, tracked)
--   T   = cos(θ_i + m_i) where cos θ_i > 0, else cos θ_i  (easy_margin = true, official default)
--         or the mm fallback with the row's own margin (easy_margin = false)
--   L   = CE(s·…) + λ_g·mean_i g(a_i),   g(a) = a/u_a² + 1/a
-- The fused CE returns dL/dm_i, and autograd carries it through m_i → a_i → |x_i| into x.grad
-- (the radial term), next to the cosine's tangential gradient.
local fvl = require "fvl.core"
local util = require "fvl.util"
local base = require "fvl.loss.base"

local opts, num, bool = base.opts, base.num, base.bool
local fail = util.fail
local MagFace = util.class("fvl.loss.magface", base.Head)

-- a_i (clamped norms, tracked) and m_i (margins, tracked) of a batch
function MagFace:margins(x, B)
  local a = x:norm(2, 2)
  if a:dim() ~= 1 then a = a:reshape(B) end
  a = a:clamp(self.l_a, self.u_a)
  local k = (self.u_m - self.l_m) / (self.u_a - self.l_a)
  return a, (a - self.l_a) * k + self.l_m
end

function MagFace:forward(x, labels)
  local n = "magface"
  local B, y = self:check_input(x, labels)
  if not (self.u_a > self.l_a and self.l_a > 0) then
    fail(string.format("%s: expected 0 < l_a < u_a, got l_a = %g, u_a = %g", n, self.l_a, self.u_a))
  end
  local easy = bool(n, "easy_margin", self.easy_margin)
  local a, m = self:margins(x, B)
  local ce = self:cosine_margin_ce(x, B, y, { s = self.s, target = "arc", m = m, easy_margin = easy,
                                               fallback = "mm" })
  local g = a / (self.u_a * self.u_a) + a:pow(-1)
  self.last_g = g:detach():mean():item()
  return ce + g:mean() * self.lambda_g
end

-- the feasibility bound of the MagFace paper's convexity argument (λ_g must be at least this)
function MagFace:lambda_bound()
  local k = (self.u_m - self.l_m) / (self.u_a - self.l_a)
  return self.s * k * self.u_a ^ 2 * self.l_a ^ 2 / (self.u_a ^ 2 - self.l_a ^ 2)
end

local M = {}
function M.magface(o)
  local n = "magface"
  o = util.check_opts(n, o, opts(base.COMMON, { "s", "l_a", "u_a", "l_m", "u_m", "lambda_g", "easy_margin" }))
  local self = setmetatable({}, MagFace):setup(n, o)
  self.s = num(n, "s", o.s, 64, 0)
  self.l_a = num(n, "l_a", o.l_a, 10, 0)
  self.u_a = num(n, "u_a", o.u_a, 110, 0)
  self.l_m = num(n, "l_m", o.l_m, 0.45)
  self.u_m = num(n, "u_m", o.u_m, 0.8)
  self.lambda_g = num(n, "lambda_g", o.lambda_g, 35, 0)
  self.easy_margin = bool(n, "easy_margin", o.easy_margin, true)
  if not (self.u_a > self.l_a) then
    fail(string.format("%s: expected l_a < u_a, got l_a = %g, u_a = %g", n, self.l_a, self.u_a))
  end
  return self
end
return M
