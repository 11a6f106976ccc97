-- fvl.loss.subcenter_arcface — Sub-center ArcFace, written from the fvl.F primitives:
-- head.weight holds K sub-centres per class, (C·K)×D, sub-centre k of class j (1-based) in row
-- (j−1)·K + k. Each step: cosine GEMM against all C·K rows → F.group_max_ws (max over each
-- class's K sub-centres; the gradient goes to the arg-max one only) → ArcFace's fused CE, whose
-- gradient the fused class blocks form per block through the max (no B×C or B×(C·K) gradient).
-- head:prune(x, labels) is the data-cleaning step of the recipe: the dominant sub-centre of each
-- class (the one most of its samples are closest to) and the samples within max_angle of it.
local fvl = require "fvl.core"
local util = require "fvl.util"
local base = require "fvl.loss.base"
local margin = require "fvl.loss.margin"

local opts, num, bool, enum = base.opts, base.num, base.bool, base.enum
local fail = util.fail
local Sub = util.class("fvl.loss.subcenter_arcface", base.Head)

-- the classes in use: all, this rank's slice, or the sampled ones (sharded / Partial FC)
local function classes_in_use(self) return self._ws_cols and self._ws_cols // self.K or self.classes end

-- Two-pass path (fvl.F.fused(false)): the B×C buffer margin_ce writes the gradient of the
-- max-cosines into, kept while B and C stay the same. The max-cosines themselves live in the
-- B×(C·K) gradient workspace (F.group_max_ws), so a step keeps the B×(C·K) cosines, that one
-- gradient workspace and this B×C buffer.
function Sub:_max_workspaces(B)
  if self._no_ws then return nil end   -- row chunks (fvl.loss.sharded): no B×C buffer
  local C = classes_in_use(self)
  if self._mgws_B ~= B or self._mgws_C ~= C then
    self._mgws, self._mgws_B, self._mgws_C, self._max = fvl.empty(B, C), B, C, nil
  end
  return self._mgws
end

-- B×C cosines to the nearest sub-centre of each class (tracked). With the fused class blocks
-- (fvl.F.fused, the default) margin_ce leaves its gradient to the cosine's backward, which forms
-- each block's B×(C·K) gradient from the saved cosines through the max (arg-max recomputed per
-- block): the step keeps the B×(C·K) cosines and the B×C max, in a buffer of its own (_fmws).
function Sub:_class_cosine(x, B)
  local F = base.F()
  if self.K == 1 then return self:cosine(x, B) end
  if not base.reference and fvl.F.fused() ~= false then
    self._gws, self._mgws, self._mgws_B, self._max = nil, nil, nil, nil   -- the two-pass path's
    local ws = self:workspaces(B, true, false)
    local C = classes_in_use(self)
    if self._no_ws then
      self._fmws, self._fmax = nil, nil                                      -- row chunks (sharded)
    elseif self._fmws_B ~= B or self._fmws_C ~= C then
      self._fmws, self._fmws_B, self._fmws_C, self._fmax = fvl.empty(B, C), B, C, nil
    end
    self._fmax = F.group_max_ws(F.cosine(x, self.weight, ws), self.K, self._fmws, self._fmax)
    return self._fmax
  end
  self._fmws, self._fmws_B, self._fmax = nil, nil, nil                       -- the fused path's
  local ws, gws = self:workspaces(B)           -- B×(C·K)
  local cos = F.cosine(x, self.weight, ws)
  self:_max_workspaces(B)
  self._max = F.group_max_ws(cos, self.K, gws, self._max)
  return self._max
end

function Sub:forward(x, labels)
  local B, y = self:check_input(x, labels)
  local cos = self:_class_cosine(x, B)
  local fb, easy = margin.arc_fallback("subcenter_arcface", self.fallback, self.easy_margin)
  local spec = { s = self.s, target = "arc", m = self.m, fallback = fb, easy_margin = easy }
  spec.gws = self.K == 1 and self._gws or self._mgws   -- nil on the fused path: no B×C gradient
  spec.nonfinite = self.nonfinite
  return base.F().margin_ce(cos, y, spec, self.name)
end

function Sub:raw_logits(x)
  local F = base.F()
  local cos = F.cosine(x, self.weight)
  return self.K == 1 and cos or F.group_max(cos, self.K)
end

-- head:prune(x, labels [, {max_angle = 75, batch = 4096}]) →
--   { weight = C×D dominant sub-centres (a copy), dominant = {k per class, 1-based},
--     keep = int32 tensor of the 1-based rows of x within max_angle (degrees) of their class's
--     dominant sub-centre, counts = C×K table of how many samples chose each sub-centre }
-- Retrain a plain fvl.loss.arcface{weight = r.weight} on the kept samples.
function Sub:prune(x, labels, o)
  local n = "subcenter_arcface:prune"
  o = util.check_opts(n, o, { "max_angle", "batch" })
  local max_angle = num(n, "max_angle", o.max_angle, 75, 0, 180)
  local bs = util.integer(n, "batch", o.batch, 4096, 1)
  if self.shard then
    fail(string.format("%s: prune works on the whole head; gather it first (fvl.dist.gather_checkpoint, or " ..
                       "subcenter_arcface{weight = head:gather_weight(), K = %d} in one process)", n, self.K))
  end
  local N, y = self:check_input(x, labels)
  local K, C, D = self.K, self.classes, self.dim
  local ylist = y:totable()
  local counts, own, cls = {}, {}, {}   -- own[i]: cosines of sample i to its class's K sub-centres
  for j = 1, C do counts[j] = {}; for k = 1, K do counts[j][k] = 0 end end
  fvl.no_grad(function()
    for r0 = 1, N, bs do
      local nb = math.min(bs, N - r0 + 1)
      local cos = base.F().cosine(x:narrow(1, r0, nb), self.weight):totable()
      for i = 1, nb do
        local row, j = cos[i], ylist[r0 + i - 1]
        local mine = {}
        local kb = 1
        for k = 1, K do
          mine[k] = row[(j - 1) * K + k]
          if mine[k] > mine[kb] then kb = k end
        end
        counts[j][kb] = counts[j][kb] + 1
        own[r0 + i - 1], cls[r0 + i - 1] = mine, j
      end
    end
  end)
  local dominant, rows = {}, {}
  for j = 1, C do
    local kb = 1
    for k = 2, K do if counts[j][k] > counts[j][kb] then kb = k end end
    dominant[j] = kb
    rows[j] = (j - 1) * K + kb
  end
  local W = self.weight:detach():index(1, fvl.tensor(rows, "int32")):clone()
  local thr = math.cos(max_angle * math.pi / 180)
  local keep = {}
  for i = 1, N do
    if own[i][dominant[cls[i]]] >= thr then keep[#keep + 1] = i end
  end
  if #keep == 0 then fail(string.format("%s: no sample lies within %g° of its dominant sub-centre", n, max_angle)) end
  return { weight = W, dominant = dominant, keep = fvl.tensor(keep, "int32"), counts = counts }
end

local M = {}
function M.subcenter_arcface(o)
  local n = "subcenter_arcface"
  o = util.check_opts(n, o, opts(base.COMMON, { "K", "s", "m", "fallback", "easy_margin" }))
  local K = util.integer(n, "K", o.K, 3, 1)
  local so = { dim = o.dim, weight = o.weight, nonfinite = o.nonfinite }
  if o.classes ~= nil then so.classes = util.integer(n, "classes", o.classes, nil, 2) * K end
  if o.weight ~= nil and util.is_tensor(o.weight) and o.weight:dim() == 2 and o.weight:size(1) % K ~= 0 then
    fail(string.format("%s: weight is %s but K = %d (expected (classes·K)×dim rows)", n,
                       util.shape_str(o.weight), K))
  end
  -- sharded / Partial FC keep each class's K rows together
  if base.pending_shard then base.pending_shard.group = K end
  local self = setmetatable({}, Sub):setup(n, so)
  self.K = K
  self.weight_rows = self.classes
  self.classes = self.weight_rows // K
  self.s = num(n, "s", o.s, 64, 0)
  self.m = num(n, "m", o.m, 0.5)
  self.fallback = enum(n, "fallback", o.fallback, { "mm", "easy", "none", "clamp" }, "mm")
  self.easy_margin = bool(n, "easy_margin", o.easy_margin, false)
  return self
end
return M
