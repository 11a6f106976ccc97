-- fvl.loss.margin — a user-defined margin head. The user writes the target logit as a Lua
-- function of the B target cosines with ordinary tensor ops (autograd on B values), and
-- optionally the rule for the negatives; the B×C work (cosine GEMM, masks, max-shifted softmax-CE
-- forward and backward) stays in the fused kernels:
--
--   local head = fvl.loss.margin{dim = 512, classes = 10000, s = 64,
--     target = function(c, ctx) return (c:acos() + 0.5):cos() end}        -- ArcFace, no fallback
--
-- target(c, ctx) → B target values T(c_i) (before the scale s); c is tracked.
-- negative(c, ctx) (optional) → nil (plain s·c_ij) or a table
--     {kind = "affine", a =, b =} | {kind = "quadratic", t =} | {kind = "none"},
--     threshold = B tensor (optional): the kind applies to the negatives with c_ij > threshold_i
--     (constant; without it, to every negative). c here is detached.
-- ctx: x (B×D, as given), labels (int32, 1-based), B, head, state (the head's state table),
-- training, norm (|x_i|, tracked, computed on first use), cos (the B×C cosines, tracked).
-- Options: dim, classes, weight, s (number, or a function(ctx) returning a number or B tensor),
-- target, negative, state (a table kept as head.state), clamp (ε: every cosine clamped to
-- [−1+ε, 1−ε]), name (used in messages, "margin" by default), nonfinite.
local fvl = require "fvl.core"
local util = require "fvl.util"
local base = require "fvl.loss.base"

local opts, num = base.opts, base.num
local fail = util.fail
local Margin = util.class("fvl.loss.margin", base.Head)

local function describe(v)
  if util.is_tensor(v) then return string.format("a %s %s tensor", v:dtype(), util.shape_str(v)) end
  if v == nil then return "nothing (nil)" end
  return string.format("a %s (%s)", type(v), tostring(v))
end

-- v must be a float32 tensor of B finite values (B or B×1); returns it as a B tensor
local function check_rows(name, what, v, B)
  if not util.is_tensor(v) or v:dtype() ~= "float32" or v:numel() ~= B or v:dim() > 2
     or (v:dim() == 2 and v:size(2) ~= 1) then
    fail(string.format("%s: %s returned %s (expected a float32 tensor of the B = %d target values)",
                       name, what, describe(v), B))
  end
  if v:dim() ~= 1 then v = v:reshape(B) end
  local d = v:detach()
  if (d - d):ne(0):max():item() == 0 then return v end   -- all finite (x − x is NaN for NaN, ±inf)
  local vals = d:totable()   -- only to name the first bad row
  for i = 1, B do
    local x = vals[i]
    if x ~= x or x == math.huge or x == -math.huge then
      fail(string.format("%s: %s returned %s at row %d (expected finite values)", name, what,
                         x ~= x and "NaN" or (x > 0 and "inf" or "-inf"), i))
    end
  end
  return v
end

local ctx_mt = {
  __index = function(ctx, k)
    if k == "labels" then   -- the checked labels as an int32 tensor, made on first use
      local t = rawget(ctx, "_labels"):tensor()
      rawset(ctx, "labels", t)
      return t
    end
    if k == "norm" then
      local n = ctx.x:norm(2, 2)
      if n:dim() ~= 1 then n = n:reshape(ctx.B) end
      rawset(ctx, "norm", n)
      return n
    end
  end,
}

function Margin:context(x, y, B, cos)
  return setmetatable({ x = x, _labels = y, B = B, head = self, state = self.state,
                        training = self.training, cos = cos }, ctx_mt)
end

local NEG_KEYS = { "kind", "a", "b", "t", "threshold" }
-- the spec fields of a negative rule (a table from the user's negative function)
function Margin:negative_spec(r, B)
  local name = self.name
  if r == nil then return {} end
  if type(r) ~= "table" or util.is_tensor(r) then
    fail(string.format("%s: negative function returned %s (expected nil or a table {kind =, a =, b =, t =, threshold =})",
                       name, describe(r)))
  end
  util.check_opts(name .. ": negative function's result", r, NEG_KEYS)
  local kind = util.enum(name, "negative kind", r.kind, { "none", "affine", "quadratic" }, "none")
  local sp = { negative = kind }
  if kind == "affine" then
    sp.a = num(name, "negative a", r.a, 1)
    sp.b = num(name, "negative b", r.b, 0)
  elseif kind == "quadratic" then
    sp.t = num(name, "negative t", r.t, 0)
  end
  if r.threshold ~= nil then
    sp.hard, sp.threshold = "row", check_rows(name, "negative function's threshold", r.threshold, B):detach()
  end
  return sp
end

-- the scale: a number, or a function(ctx) returning a number or a B tensor
function Margin:scale(ctx, B)
  local s = self.s
  if type(s) == "function" then s = s(ctx) end
  if type(s) == "number" then return s end
  return check_rows(self.name, "s", s, B)
end

function Margin:forward(x, labels)
  local B, y = self:check_input(x, labels)
  local name = self.name
  local cos = self:cosine(x, B)
  local ctx = self:context(x, y, B, cos)
  local c = base.F().target_cos(cos, y)
  local T = check_rows(name, "target function", self.target(c, ctx), B)
  local sp = { target = "given", value = T, clamp = self.clamp, s = self:scale(ctx, B) }
  if self.negative then
    for k, v in pairs(self:negative_spec(self.negative(c:detach(), ctx), B)) do sp[k] = v end
  end
  return self:margin_ce(cos, y, sp)
end

-- the head's two-class boundary, from its own functions: f(θ1, θ2) = T(cos θ1) − N(cos θ2)
-- (positive: class 1 wins). T and N are evaluated on a batch of one, without gradients, with a
-- context whose norm is `norm` (default: 1) and state a copy of head.state.
function Margin:boundary(o)
  o = util.check_opts(self.name .. ":boundary", o, { "norm", "label" })
  local norm = o.norm or 1
  local state = {}
  for k, v in pairs(self.state or {}) do state[k] = v end
  local name = self.name
  local function ctx1(c)
    local ctx = { B = 1, head = self, state = state, training = false, norm = fvl.tensor({ norm }),
                  labels = fvl.tensor({ 1 }, "int32") }
    return ctx, fvl.tensor({ c })
  end
  local cache = {}   -- θ1 → {T, negative rule}: the plot's grid repeats each θ1 for every θ2
  return { label = o.label or self.label or name, f = function(th1, th2)
    local c1, c2 = math.cos(th1), math.cos(th2)
    local e = cache[th1]
    if not e then
      e = {}
      fvl.no_grad(function()
        local ctx, ct = ctx1(c1)
        e.T = check_rows(name, "target function", self.target(ct, ctx), 1):item()
        if self.negative then e.neg = self:negative_spec(self.negative(ct, ctx), 1) end
        if e.neg and e.neg.threshold then e.thr = e.neg.threshold:item() end
      end)
      cache[th1] = e
    end
    local T, neg = e.T, e.neg
    local n = c2
    if neg and neg.negative ~= "none" and (e.thr == nil or c2 > e.thr) then
      if neg.negative == "affine" then n = neg.a * c2 + neg.b else n = c2 * (neg.t + c2) end
    end
    return T - n
  end }
end

local M = {}
function M.margin(o)
  o = util.check_opts("margin", o, opts(base.COMMON, { "s", "target", "negative", "state", "clamp", "name", "label" }))
  local name = o.name or "margin"
  if type(name) ~= "string" then fail("margin: name must be a string, got " .. type(name)) end
  local self = setmetatable({}, Margin):setup(name, o)
  if type(o.target) ~= "function" then
    fail(string.format("%s: target must be a function(c, ctx) returning the B target values, got %s", name,
                       type(o.target)))
  end
  if o.negative ~= nil and type(o.negative) ~= "function" then
    fail(string.format("%s: negative must be a function(c, ctx) or nil, got %s", name, type(o.negative)))
  end
  if o.state ~= nil and type(o.state) ~= "table" then
    fail(string.format("%s: state must be a table, got %s", name, type(o.state)))
  end
  self.target, self.negative, self.state, self.label = o.target, o.negative, o.state or {}, o.label
  if type(o.s) == "function" then self.s = o.s else self.s = num(name, "s", o.s, 64, 0) end
  if o.clamp ~= nil then self.clamp = num(name, "clamp", o.clamp, nil, 0, 0.5) end
  -- the same rules for a field set between steps (h.s = function(ctx) ... end after a number, or
  -- the reverse; h.target = ...), checked at the next call (fvl.loss.base.recheck)
  local rec = util._recording
  if rec then
    rec.s = { kind = "scale", key = "s", last = self.s, a = 0, what = "a number, a B tensor or a function(ctx)" }
    rec.target = { kind = "function", key = "target", last = self.target,
                   what = "a function(c, ctx) returning the B target values" }
    rec.negative = { kind = "function", key = "negative", last = self.negative, optional = true,
                     what = "a function(c, ctx) or nil" }
  end
  return self
end
return M
