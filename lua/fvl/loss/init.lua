-- fvl.loss — classification heads for face recognition (docs/losses.md).
--
--   local head = fvl.loss.arcface{dim = 512, classes = 10000}
--   local loss = head(x, labels)       -- x: B×512 float32, labels: 1..10000; batch-mean scalar
--   loss:backward()                    -- x.grad (if tracked), head.weight.grad
--
-- Every head: head.weight (C×D leaf), head:parameters(), `weight = tensor` to start from given
-- centres, head:logits(x) / head:predict(x) for evaluation (no margin), head:train() /
-- head:evaluate() (state updates happen only while training), nonfinite = "error"|"warn".
-- Margins and scales are plain fields: `head.m = 0.3` between steps.
-- Families: margin.lua (NormFace, SphereFace, CosFace, ArcFace, combined), hardneg.lua
-- (MV-Softmax, CurricularFace), softmax.lua (Softmax, Center), circle.lua, and the hybrids
-- written in Lua from fvl.F: discface.lua, npcface.lua. See docs/losses.md.
local fvl = require "fvl.core"
local loss = {}
local head_names = {}

for _, family in ipairs { "margin", "hardneg", "softmax", "circle", "discface", "npcface",
                          "adacos", "subcenter", "magface", "adaface", "elasticface", "custom" } do
  local m = require("fvl.loss." .. family)
  for k, v in pairs(m) do
    if type(v) == "function" and k:match("^[a-z_]+$") and k ~= "cosine_head" and k ~= "arc_fallback" then
      loss[k] = function(o) return require("fvl.loss.base").recorded(require("fvl.loss.sharded").construct, k, v, o) end
      head_names[#head_names + 1] = k
    end
  end
end

local base = require "fvl.loss.base"

-- fvl.loss.use_reference(true): every head computes with fvl.loss.reference (the primitives
-- composed from tensor ops) instead of the fused kernels; false switches back.
function loss.use_reference(on)
  base.reference = on and require "fvl.loss.reference" or nil
end
loss.Head = base.Head                                  -- base class, for user-written heads
loss.cosine_head = require("fvl.loss.margin").cosine_head
--- @doc fvl.loss.cosine_head(name) -> class
--- A new head class named fvl.loss.<name> (a subclass of fvl.loss.Head) whose forward is
--- cosine → margin_ce(self:spec(x, B)): write its constructor (setmetatable({}, cls):setup(name, o))
--- and a spec method returning fvl.F.margin_ce's spec, and the head has the fused kernels, sharding
--- and Partial FC of the built-in heads.

-- names of the heads, sorted (for help and the REPL)
function loss.names()
  local out = table.move(head_names, 1, #head_names, 1, {})
  table.sort(out)
  return out
end

return loss
