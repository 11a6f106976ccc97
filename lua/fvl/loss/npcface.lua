-- fvl.loss.npcface — NPCFace (docs/losses.md §1.12), written from the fvl.F primitives:
--   hard  I_ij = [c_ij > cos(θ_i + m_h)], j ≠ y   (m_h = hard_margin or m0; constant)
--   h_i   = mean of the hard negatives' c_ij (raw) or t·c_ij + α (reweighted)
--   m_i   = m0 + m1·h_i;  target cos(θ_i + m_i) where c_i > 0;  hard negatives t·c + α
-- h_i is a constant (FaceX-Zoo) unless hardness_grad = true (bobo0810: the margin's gradient
-- flows back into the hard negatives' cosines).
local fvl = require "fvl.core"
local util = require "fvl.util"
local base = require "fvl.loss.base"

local opts, num, bool, enum = base.opts, base.num, base.bool, base.enum
local NPCFace = util.class("fvl.loss.npcface", base.Head)

function NPCFace:forward(x, labels)
  local B, y = self:check_input(x, labels)
  enum("npcface", "hardness_from", self.hardness_from, { "raw", "reweighted" })
  bool("npcface", "hardness_grad", self.hardness_grad)
  local cos = self:cosine(x, B)
  local mh = self.hard_margin or self.m0
  local src = self.hardness_grad and cos or cos:detach()
  local h = base.F().hard_mean(src, y, { hard = "arc", hard_m = mh, a = self.t, b = self.alpha,
                                      values = self.hardness_from == "reweighted" and "affine" or "raw" })
  local m_row = h * self.m1 + self.m0                     -- per-row margins (B)
  return self:margin_ce(cos, y, {
    s = self.s, target = "arc", m = m_row, easy_margin = self.easy_margin, fallback = "none",
    negative = "affine", hard = "arc", hard_m = mh, a = self.t, b = self.alpha })
end

local M = {}
function M.npcface(o)
  local n = "npcface"
  o = util.check_opts(n, o, opts(base.COMMON, { "s", "m0", "m1", "t", "alpha", "hard_margin",
                                                "hardness_from", "hardness_grad", "easy_margin" }))
  local self = setmetatable({}, NPCFace):setup(n, o)
  self.s = num(n, "s", o.s, 64, 0)
  self.m0 = num(n, "m0", o.m0, 0.4)
  self.m1 = num(n, "m1", o.m1, 0.2)
  self.t = num(n, "t", o.t, 1.1)
  self.alpha = num(n, "alpha", o.alpha, 0.2)
  if o.hard_margin ~= nil then self.hard_margin = num(n, "hard_margin", o.hard_margin) end
  self.hardness_from = enum(n, "hardness_from", o.hardness_from, { "raw", "reweighted" }, "raw")
  self.hardness_grad = bool(n, "hardness_grad", o.hardness_grad, false)
  self.easy_margin = bool(n, "easy_margin", o.easy_margin, true)
  return self
end
return M
