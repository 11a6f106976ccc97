-- fvl.loss.adaface — AdaFace, written from the fvl.F primitives: the target logit is a function
-- of the B target cosines computed with tensor ops (autograd on B values), handed to the fused
-- CE as a "given" target; every cosine (targets and negatives) is clamped to [−1+ε, 1−ε] first.
--   n_i = clip(|x_i|, 1e-3, 100)  (constant)
--   EMA before use (training): μ ← α·mean(n) + (1−α)·μ;  σ ← α·std(n) + (1−α)·σ  (unbiased std)
--   z_i = clip(h·(n_i − μ)/(σ + ε), −1, 1);  g_ang = −m·z_i;  g_add = m + m·z_i  (constants)
--   T   = cos(clip(θ_i + g_ang, ε, π − ε)) − g_add
-- State head.batch_mean (μ, start 20) and head.batch_std (σ, start 100).
local fvl = require "fvl.core"
local util = require "fvl.util"
local base = require "fvl.loss.base"

local opts, num = base.opts, base.num
local fail = util.fail
local AdaFace = util.class("fvl.loss.adaface", base.Head)

-- the per-row constants (g_ang, g_add: B tensors) of a batch; updates the EMA while training.
-- In C (fvl.F._adaface_rows, in double): the B norms never become a Lua table.
function AdaFace:row_margins(x, B)
  if self.training and B < 2 then
    fail(string.format("adaface: the batch statistics need at least 2 rows (got B = %d)", B))
  end
  local nrm
  fvl.no_grad(function() nrm = x:detach():norm(2, 2):reshape(B) end)
  local ga, gd, mu, sd = fvl.F._adaface_rows(nrm, self.h, self.m, self.eps, self.t_alpha, self.training,
                                             self.batch_mean, self.batch_std)
  self.batch_mean, self.batch_std = mu, sd
  return ga, gd
end

-- T(c) for target cosines c (B, tracked) and the row constants
function AdaFace:target_logit(c, ga, gd)
  local eps = self.eps
  local th = c:clamp(-1 + eps, 1 - eps):acos() + ga
  local thd = th:detach()
  local inside = thd:gt(eps) * thd:lt(math.pi - eps)
  th = fvl.where(inside, th, thd:clamp(eps, math.pi - eps))
  return th:cos() - gd
end

function AdaFace:forward(x, labels)
  local B, y = self:check_input(x, labels)
  local ga, gd = self:row_margins(x, B)
  local cos = self:cosine(x, B)
  local T = self:target_logit(base.F().target_cos(cos, y), ga, gd)
  return self:margin_ce(cos, y, { s = self.s, target = "given", value = T, clamp = self.eps })
end

local M = {}
-- defaults: the official training scripts (m 0.4, h 0.333); the argparse defaults (m 0.5, h 0)
-- make the head CosFace with m = 0.5
function M.adaface(o)
  local n = "adaface"
  o = util.check_opts(n, o, opts(base.COMMON, { "s", "m", "h", "t_alpha", "eps", "batch_mean", "batch_std" }))
  local self = setmetatable({}, AdaFace):setup(n, o)
  self.s = num(n, "s", o.s, 64, 0)
  self.m = num(n, "m", o.m, 0.4)
  self.h = num(n, "h", o.h, 0.333)
  self.t_alpha = num(n, "t_alpha", o.t_alpha, 0.01, 0, 1)
  self.eps = num(n, "eps", o.eps, 1e-3, 0, 0.5)
  self.batch_mean = num(n, "batch_mean", o.batch_mean, 20)
  self.batch_std = num(n, "batch_std", o.batch_std, 100, 0)
  return self
end
return M
