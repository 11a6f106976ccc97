-- fvl.loss.hardneg — heads that re-weight the hard negatives (docs/losses.md §1.7, §1.8):
-- MV-Softmax (MV-AM / MV-Arc, fixed / adaptive) and CurricularFace (EMA state t).
-- Hard mask I_ij = [c_ij > T_raw(c_i)], j ≠ y, constant; both are one fused margin_ce call.
local fvl = require "fvl.core"
local util = require "fvl.util"
local base = require "fvl.loss.base"
local margin = require "fvl.loss.margin"

local opts, num, bool, enum = base.opts, base.num, base.bool, base.enum
local M = {}

-- MV-Softmax: hard negatives get (t+1)c + t (adaptive) or c + t (fixed) ------------------------
local MV = margin.cosine_head("mv_softmax")
function M.mv_softmax(o)
  local n = "mv_softmax"
  o = util.check_opts(n, o, opts(base.COMMON, { "s", "m", "t", "kind", "adaptive", "easy_margin" }))
  local self = setmetatable({}, MV):setup(n, o)
  self.s = num(n, "s", o.s, 32, 0)
  self.m = num(n, "m", o.m, 0.35)
  self.t = num(n, "t", o.t, 0.2)
  self.kind = enum(n, "kind", o.kind, { "am", "arc" }, "am")
  self.adaptive = bool(n, "adaptive", o.adaptive, true)
  self.easy_margin = bool(n, "easy_margin", o.easy_margin, true)
  return self
end
function MV:spec()
  local k = enum("mv_softmax", "kind", self.kind, { "am", "arc" })
  bool("mv_softmax", "adaptive", self.adaptive)
  local tk = k == "arc" and "arc" or "cos"
  return { s = self.s, target = tk, m = self.m, easy_margin = self.easy_margin,
           fallback = "none",                  -- MV-Arc without easy margin: raw cos(θ+m)
           negative = "affine", hard = tk, hard_m = self.m,
           a = self.adaptive and self.t + 1 or 1, b = self.t }
end

-- CurricularFace: hard negatives get c(t + c); t ← μ·mean c_i + (1-μ)·t before use ------------
local Curricular = margin.cosine_head("curricularface")
function M.curricularface(o)
  local n = "curricularface"
  o = util.check_opts(n, o, opts(base.COMMON, { "s", "m", "t", "momentum" }))
  local self = setmetatable({}, Curricular):setup(n, o)
  self.s = num(n, "s", o.s, 64, 0)
  self.m = num(n, "m", o.m, 0.5)
  self.t = num(n, "t", o.t, 0.0)
  self.momentum = num(n, "momentum", o.momentum, 0.01, 0, 1)
  return self
end
function Curricular:forward(x, labels)
  local B, y = self:check_input(x, labels)
  local cos = self:cosine(x, B)
  if self.training then   -- EMA of the batch's target cosines, no gradient
    local mean_c = base.F().target_cos(cos:detach(), y):mean():item()
    self.t = self.momentum * mean_c + (1 - self.momentum) * self.t
  end
  return self:margin_ce(cos, y, {
    s = self.s, target = "arc", m = self.m, fallback = "mm",
    negative = "quadratic", hard = "arc", hard_m = self.m, t = self.t })
end

return M
