-- fvl.loss.elasticface — ElasticFace (Arc and Cos), written from the fvl.F primitives: a
-- per-sample margin m_i ~ N(m, std), drawn from the seeded generator every step, enters the
-- fused CE as a per-row margin vector:
--   kind "arc": T = cos(θ_i + m_i) (no fallback, exact gradient);  kind "cos": T = cos θ_i − m_i
-- plus = true (ElasticFace+): the margins are sorted so that the easiest sample (largest
-- cos θ_y) gets the smallest margin. official_order = true reproduces the official code's
-- indexing (a gather by the sort order, not monotone in cos θ_y).
-- head(x, y, {margins = B tensor}) uses the given margins instead of drawing them.
local fvl = require "fvl.core"
local util = require "fvl.util"
local base = require "fvl.loss.base"

local opts, num, bool, enum = base.opts, base.num, base.bool, base.enum
local fail = util.fail
local Elastic = util.class("fvl.loss.elasticface", base.Head)

-- ElasticFace+ assignment of the sorted margins ms (B) by the target cosines cy (B): the row with
-- the k-th largest cy (ties: the lower row first) gets the k-th smallest margin; official: row k
-- gets the sorted margin at the position of the k-th largest cy. Stable sorts, no arithmetic.
local function assign_plus(cy, ms, official)
  local order = cy:argsort(1, true)
  local sorted = ms:index(1, ms:argsort(1))
  return sorted:index(1, official and order or order:argsort(1))
end

function Elastic:draw(B)
  return fvl.randn(B) * self.std + self.m
end

Elastic.call_options = { "margins" }   -- head(x, labels, {margins = B values}): checked by Head.__call
function Elastic:forward(x, labels, call)
  local n = "elasticface"
  local B, y = self:check_input(x, labels)
  local kind = enum(n, "kind", self.kind, { "arc", "cos" })
  local margins = call and call.margins
  if margins ~= nil then
    util.check_tensor(n, "margins", margins, "float32")
    if margins:numel() ~= B then
      fail(string.format("%s: margins is %s (expected one margin per row: %d values)", n,
                         util.shape_str(margins), B))
    end
    margins = margins:detach():reshape(B)
  else
    margins = self:draw(B)
  end
  local spec = { s = self.s, target = kind, m = margins, fallback = "none" }
  if not bool(n, "plus", self.plus) then   -- the margins do not depend on the cosines: one op
    self.last_margins = margins
    return self:cosine_margin_ce(x, B, y, spec)
  end
  local cos = self:cosine(x, B)   -- ElasticFace+: the margins sorted by the target cosines first
  local cy = base.F().target_cos(cos:detach(), y):reshape(B)
  spec.m = assign_plus(cy, margins, self.official_order)
  self.last_margins = spec.m
  return self:margin_ce(cos, y, spec)
end

local M = {}
-- defaults of the official configs: Arc m 0.5, std 0.05 (ElasticFace-Arc+ 0.0175);
-- Cos m 0.35, std 0.05 (ElasticFace-Cos+ 0.02)
function M.elasticface(o)
  local n = "elasticface"
  o = util.check_opts(n, o, opts(base.COMMON, { "kind", "s", "m", "std", "plus", "official_order" }))
  local self = setmetatable({}, Elastic):setup(n, o)
  self.kind = enum(n, "kind", o.kind, { "arc", "cos" }, "arc")
  self.plus = bool(n, "plus", o.plus, false)
  self.official_order = bool(n, "official_order", o.official_order, false)
  self.s = num(n, "s", o.s, 64, 0)
  local arc = self.kind == "arc"
  self.m = num(n, "m", o.m, arc and 0.5 or 0.35)
  self.std = num(n, "std", o.std, self.plus and (arc and 0.0175 or 0.02) or 0.05, 0)
  self.transient_fields = { last_margins = true }   -- the last batch's draw: not saved in checkpoints
  return self
end
return M
