-- fvl.loss.margin — the cosine heads with a target-logit margin: NormFace, SphereFace,
-- CosFace / AM-Softmax, ArcFace, combined margin (docs/losses.md §1.2–1.6).
-- Each step: cosine GEMM into the head's workspace, then one fused margin softmax-CE.
local fvl = require "fvl.core"
local util = require "fvl.util"
local base = require "fvl.loss.base"

local Head, opts, num, bool, enum = base.Head, base.opts, base.num, base.bool, base.enum
local fail = util.fail
local M = {}

-- a cosine head class whose forward is cosine → margin_ce(spec(self, B)), one op (Head:cosine_margin_ce)
local function cosine_head(name)
  if type(name) ~= "string" then fail("fvl.loss.cosine_head: name must be a string, got " .. util.typename(name)) end
  local cls = util.class("fvl.loss." .. name, Head)
  function cls:forward(x, labels)
    local B, y = self:check_input(x, labels)
    return self:cosine_margin_ce(x, B, y, self:spec(x, B))
  end
  return cls
end
M.cosine_head = cosine_head

-- NormFace: z = s·c ------------------------------------------------------------------------
local NormFace = cosine_head("normface")
function M.normface(o)
  o = util.check_opts("normface", o, opts(base.COMMON, { "s" }))
  local self = setmetatable({}, NormFace):setup("normface", o)
  self.s = num("normface", "s", o.s, 64, 0)
  return self
end
function NormFace:spec()
  return { s = self.s, target = "none" }
end

-- SphereFace: f_y = (λc + ψ_m(θ))/(1+λ), z = |x|·f (or s·f) ---------------------------------
local SphereFace = cosine_head("sphereface")
function M.sphereface(o)
  local n = "sphereface"
  o = util.check_opts(n, o, opts(base.COMMON, { "m", "base", "gamma", "power", "lambda_min",
                                                "feature_scale", "s", "iter", "lambda" }))
  local self = setmetatable({}, SphereFace):setup(n, o)
  self.m = util.integer(n, "m", o.m, 4, 1)
  self.base = num(n, "base", o.base, 1000, 0)
  self.gamma = num(n, "gamma", o.gamma, 0.12, 0)
  self.power = num(n, "power", o.power, 1, 0)
  self.lambda_min = num(n, "lambda_min", o.lambda_min, 5, 0)
  self.feature_scale = enum(n, "feature_scale", o.feature_scale, { "norm", "s" }, "norm")
  self.s = num(n, "s", o.s, 30, 0)
  self.iter = util.integer(n, "iter", o.iter, 0, 0)
  if o.lambda ~= nil then self.lambda = num(n, "lambda", o.lambda, nil, 0) end
  return self
end
-- λ of the annealing schedule at iteration `it` (head.lambda, when set, overrides it)
function SphereFace:lambda_at(it)
  if self.lambda ~= nil then return self.lambda end
  return math.max(self.lambda_min, self.base * (1 + self.gamma * it) ^ (-self.power))
end
function SphereFace:spec(x, B)
  if self.m ~= math.floor(self.m) or self.m < 1 then
    fail(string.format("sphereface: m = %s (expected a positive integer)", tostring(self.m)))
  end
  -- state: iter += 1 before use (first forward uses iter = 1)
  if self.training then self.iter = self.iter + 1 end
  local lam = self:lambda_at(self.iter)
  self.current_lambda = lam
  local s = self.s
  if self.feature_scale == "norm" then
    s = x:norm(2, 2)                    -- |x_i|, tracked: its gradient is the radial term
    if s:dim() ~= 1 then s = s:reshape(B) end
  elseif self.feature_scale ~= "s" then
    fail(string.format("sphereface: feature_scale = '%s' (expected norm|s)", tostring(self.feature_scale)))
  end
  return { s = s, target = "sphere", sphere_m = math.tointeger(self.m), lambda = lam }
end

-- CosFace / AM-Softmax: f_y = c - m ----------------------------------------------------------
local CosFace = cosine_head("cosface")
local function make_cosface(name, s_default)
  return function(o)
    o = util.check_opts(name, o, opts(base.COMMON, { "s", "m", "easy_margin" }))
    local self = setmetatable({}, CosFace):setup(name, o)
    self.s = num(name, "s", o.s, s_default, 0)
    self.m = num(name, "m", o.m, 0.35)
    self.easy_margin = bool(name, "easy_margin", o.easy_margin, false)
    return self
  end
end
M.cosface = make_cosface("cosface", 64)
M.am_softmax = make_cosface("am_softmax", 30)   -- AM-Softmax paper: s = 30
function CosFace:spec()
  return { s = self.s, target = "cos", m = self.m, easy_margin = self.easy_margin }
end

-- ArcFace: f_y = cos(θ + m) with an explicit fallback past θ + m > π ---------------------------
local ArcFace = cosine_head("arcface")
local FALLBACKS = { "mm", "easy", "none", "clamp" }
function M.arcface(o)
  local n = "arcface"
  o = util.check_opts(n, o, opts(base.COMMON, { "s", "m", "fallback", "easy_margin", "grad" }))
  local self = setmetatable({}, ArcFace):setup(n, o)
  self.s = num(n, "s", o.s, 64, 0)
  self.m = num(n, "m", o.m, 0.5)
  self.fallback = enum(n, "fallback", o.fallback, FALLBACKS, "mm")
  self.easy_margin = bool(n, "easy_margin", o.easy_margin, false)
  self.grad = enum(n, "grad", o.grad, { "exact", "detached" }, "exact")
  return self
end
-- fallback="easy" is the same as easy_margin=true
function M.arc_fallback(name, fallback, easy)
  enum(name, "fallback", fallback, FALLBACKS)
  if fallback == "easy" then return "mm", true end
  return fallback, easy and true or false
end
function ArcFace:spec()
  local fb, easy = M.arc_fallback("arcface", self.fallback, self.easy_margin)
  return { s = self.s, target = "arc", m = self.m, fallback = fb, easy_margin = easy,
           grad = self.grad }
end

-- combined margin: f_y = cos(m1·θ + m2) - m3 ----------------------------------------------------
local Combined = cosine_head("combined")
function M.combined(o)
  local n = "combined"
  o = util.check_opts(n, o, opts(base.COMMON, { "s", "m1", "m2", "m3", "fallback" }))
  local self = setmetatable({}, Combined):setup(n, o)
  self.s = num(n, "s", o.s, 64, 0)
  self.m1 = num(n, "m1", o.m1, 1.0)
  self.m2 = num(n, "m2", o.m2, 0.3)
  self.m3 = num(n, "m3", o.m3, 0.2)
  self.fallback = enum(n, "fallback", o.fallback, { "none", "mm", "clamp" }, "none")
  self:spec()   -- validates the combination now
  return self
end
function Combined:spec()
  enum("combined", "fallback", self.fallback, { "none", "mm", "clamp" })
  if self.fallback == "mm" and self.m1 ~= 1 then
    fail(string.format("combined: fallback = 'mm' is only defined for m1 = 1 (got m1 = %g)", self.m1))
  end
  return { s = self.s, target = "combined", m1 = self.m1, m2 = self.m2, m3 = self.m3,
           fallback = self.fallback }
end

return M
