-- fvl.loss.adacos — AdaCos (no margin, z = s·cos θ), written from the fvl.F primitives:
--   fixed:   s = √2·ln(C − 1)
--   dynamic: before use, from the previous s (no gradient):
--            B_avg = (1/B) Σ_i Σ_{j≠y_i} exp(s_prev·c_ij)       (F.neg_lse per row)
--            θ_med = lower median of the target angles (acos of c clamped to ±(1 − 1e-7))
--            s     = ln(B_avg) / cos(min(π/4, θ_med))
-- State head.s (readable and writable); updated only while training.
local fvl = require "fvl.core"
local util = require "fvl.util"
local base = require "fvl.loss.base"

local opts, num, bool = base.opts, base.num, base.bool
local AdaCos = util.class("fvl.loss.adacos", base.Head)

-- the dynamic scale from this batch's cosines (detached) and the previous scale; B_avg and θ_med
-- in double, in C (fvl.F._adacos_stats: the B values never become a Lua table)
function AdaCos:next_scale(cos, y)
  local F = base.F()
  local b_avg, th_med = fvl.F._adacos_stats(F.neg_lse(cos, y, self.s), F.target_cos(cos, y))
  self.B_avg, self.theta_med = b_avg, th_med
  return math.log(b_avg) / math.cos(math.min(math.pi / 4, th_med))
end

function AdaCos:forward(x, labels)
  local B, y = self:check_input(x, labels)
  bool("adacos", "dynamic", self.dynamic)
  local cos = self:cosine(x, B)
  if self.dynamic and self.training then
    local s
    fvl.no_grad(function() s = self:next_scale(cos:detach(), y) end)
    if s ~= s or s == math.huge or s == -math.huge then
      util.fail(string.format("adacos: the dynamic scale is not finite (B_avg = %g, θ_med = %g)",
                              self.B_avg, self.theta_med))
    end
    if s < 0 then   -- log(B_avg) < 0: the scale would turn the softmax upside down
      util.fail(string.format("adacos: the dynamic scale came out negative (s = %g from B_avg = %g < 1, " ..
                              "θ_med = %g): the non-target classes' mean Σexp(s·cos) is below 1, as with very " ..
                              "few classes or centres opposite every sample; use dynamic = false or more classes",
                              s, self.B_avg, self.theta_med))
    end
    self.s = s
  end
  num("adacos", "s", self.s)
  return self:margin_ce(cos, y, { s = self.s, target = "none" })
end

local M = {}
function M.adacos(o)
  local n = "adacos"
  o = util.check_opts(n, o, opts(base.COMMON, { "dynamic", "s" }))
  local self = setmetatable({}, AdaCos):setup(n, o)
  self.dynamic = bool(n, "dynamic", o.dynamic, true)
  self.s_fixed = math.sqrt(2) * math.log(self.classes - 1)
  self.s = num(n, "s", o.s, self.s_fixed, 0)
  self.state_fields = { "s" }   -- the dynamic scale is state: checkpoints restore it
  return self
end
return M
