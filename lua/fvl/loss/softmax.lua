-- fvl.loss.softmax — heads on raw logits z = x·Wᵀ + b (no normalisation):
-- plain Softmax (docs/losses.md §1.1) and Softmax + Center loss with the α-rule (§1.10).
local fvl = require "fvl.core"
local util = require "fvl.util"
local base = require "fvl.loss.base"

local Head, opts, num, bool = base.Head, base.opts, base.num, base.bool
local fail = util.fail
local M = {}

-- bias option: true/false, or a C tensor to start from
local function setup_bias(self, name, v)
  if v == nil or v == true then
    local b = fvl.zeros(self.classes)
    b:requires_grad()
    self.bias = b
  elseif v == false then
    self.bias = nil
  else
    util.check_tensor(name, "bias", v, "float32")
    if v:numel() ~= self.classes then
      fail(string.format("%s: bias is %s, expected %d values (one per class)", name,
                         util.shape_str(v), self.classes))
    end
    self.bias = base.leaf_copy(v:reshape(self.classes))
  end
end

-- x·Wᵀ (+ b): B×C, tracked
-- ws: the head's B×C workspace during training (nil for logits handed to the caller)
local function linear(self, x, ws)
  local F = base.F()
  if F.linear_logits then return F.linear_logits(x, self.weight, self.bias, ws) end
  if F.linear then return F.linear(x, self.weight, self.bias) end
  local z = x:matmul(self.weight:t())
  if self.bias then z = z + self.bias end
  return z
end

local function softmax_ce(self, z, y)
  return self:margin_ce(z, y, { s = 1, target = "none", negative = "none" })
end

-- Softmax --------------------------------------------------------------------------------------
local Softmax = util.class("fvl.loss.softmax", Head)
function M.softmax(o)
  o = util.check_opts("softmax", o, opts(base.COMMON, { "bias" }))
  local self = setmetatable({}, Softmax):setup("softmax", o)
  setup_bias(self, "softmax", o.bias)
  return self
end
function Softmax:forward(x, labels)
  local B, y = self:check_input(x, labels)
  return softmax_ce(self, linear(self, x, self:_logits_ws(B)), y)
end
Softmax.raw_logits = function(self, x) return linear(self, x) end

-- Softmax + Center loss: L = CE + λ·1/(2B)·Σ|x_i - c_{y_i}|²; centres by the α-rule ---------------
local Center = util.class("fvl.loss.center", Head)
function M.center(o)
  local n = "center"
  o = util.check_opts(n, o, opts(base.COMMON, { "bias", "lambda", "alpha", "centers" }))
  local self = setmetatable({}, Center):setup(n, o)
  setup_bias(self, n, o.bias)
  self.lambda = num(n, "lambda", o.lambda, 0.003, 0)
  self.alpha = num(n, "alpha", o.alpha, 0.5, 0, 1)
  if o.centers ~= nil then
    util.check_tensor(n, "centers", o.centers, "float32", { self.classes, self.dim })
    self.centers = o.centers:detach():clone()
  else
    self.centers = fvl.zeros(self.classes, self.dim)   -- Caffe initialises the centres at 0
  end
  return self
end
function Center:forward(x, labels)
  local B, y = self:check_input(x, labels)
  local cen = self.centers
  local rows = self.shard and self.shard.n or self.classes   -- a sharded head: its own rows
  util.check_tensor("center", "head.centers", cen, "float32", { rows, self.dim })
  local ce = softmax_ce(self, linear(self, x, self:_logits_ws(B)), y)
  -- ½Σ|x_i − c_{y_i}|², the centres constants (no grad); fused: one B×D buffer kept for backward
  local F, dist = base.F()
  if F.center_dist then
    dist = F.center_dist(x, cen, y)
  else
    local d = x - cen:index(1, y)
    dist = (d * d):sum() * 0.5
  end
  local loss = ce + dist * (self.lambda / B)
  -- α-rule after the loss used the pre-update centres
  if self.training then base.F().center_update(cen, x:detach(), y, self.alpha) end
  return loss
end
Center.raw_logits = function(self, x) return linear(self, x) end

return M
