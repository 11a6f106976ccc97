-- fvl.loss.circle — Circle loss (docs/losses.md §1.9).
-- Class-level ("face") form: exactly CE over z_iy = γα_p(c_i - Δ_p), z_ij = γα_n(c_ij - Δ_n),
-- α_p = [1+m-c]_+, α_n = [c+m]_+ constant, Δ_p = 1-m, Δ_n = m: one fused margin_ce call.
-- Pairwise form: S = x̂x̂ᵀ within the batch, no centres, PML semantics.
local fvl = require "fvl.core"
local util = require "fvl.util"
local base = require "fvl.loss.base"
local margin = require "fvl.loss.margin"

local Head, opts, num = base.Head, base.opts, base.num
local fail = util.fail
local M = {}

local Circle = margin.cosine_head("circle")
function M.circle(o)
  o = util.check_opts("circle", o, opts(base.COMMON, { "m", "gamma" }))
  local self = setmetatable({}, Circle):setup("circle", o)
  self.m = num("circle", "m", o.m, 0.25)
  self.gamma = num("circle", "gamma", o.gamma, 256, 0)
  return self
end
function Circle:spec()
  return { s = self.gamma, target = "circle", negative = "circle", circle_m = self.m }
end

local Pairwise = util.class("fvl.loss.circle_pairwise", Head)
function M.circle_pairwise(o)
  local n = "circle_pairwise"
  o = util.check_opts(n, o, { "dim", "m", "gamma", "nonfinite" })
  local self = setmetatable({}, Pairwise):setup(n, o, false)
  self.m = num(n, "m", o.m, 0.25)
  self.gamma = num(n, "gamma", o.gamma, 256, 0)
  return self
end
function Pairwise:forward(x, labels)
  local B, y = self:check_input(x, labels)
  self:warn_no_pairs(y, B)
  return self:pairs_loss(x, y, 1, B)
end
function Pairwise:warn_no_pairs(y, B)
  if self._warned then return end
  -- an anchor counts when it has a positive (same label, other row) and a negative (counted in C)
  if fvl.F._pair_anchors(y) == 0 then   -- PML: the loss is 0; say so once per head
    self._warned = true
    io.stderr:write(string.format("circle_pairwise: warning: no anchor in this batch of %d has both a " ..
      "positive (same label) and a negative; the loss is 0 (sample several images per class)\n", B))
  end
end
-- the loss of anchors first..first+n−1 of the batch x (labels y) against every row; sharded = true
-- (fvl.loss.sharded) gives each rank its own rows of the gathered batch, whose loss is the whole one
Pairwise.pairwise = true
function Pairwise:pairs_loss(x, y, first, n)
  local xn = fvl.normalize(x, 2)
  if n == x:size(1) then
    return base.F().circle_pairwise(xn:matmul(xn:t()), y, self.m, self.gamma)
  end
  local S = xn:narrow(1, first, n):matmul(xn:t())
  return fvl.F.circle_pairwise_shard(S, y, first, self.m, self.gamma)
end
function Pairwise:parameters() return {} end
function Pairwise:raw_logits(x)
  local xn = fvl.normalize(x, 2)
  return xn:matmul(xn:t())          -- pairwise cosine similarities (B×B)
end
function Pairwise:predict()
  fail("circle_pairwise: predict needs class centres; this head has none (use logits for similarities)")
end

return M
