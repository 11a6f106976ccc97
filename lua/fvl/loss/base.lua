-- fvl.loss.base — what every classification head shares: the class centres (head.weight),
-- input checks that name the head, the B×C workspaces reused across steps, parameters(),
-- logits()/predict() for evaluation, train()/evaluate() for the state updates.
--
-- A head is an object made by util.class: plain fields (head.s, head.m, head.t, ...) that a
-- script may read and write between steps, and `head(x, labels)` → scalar loss tensor.
local fvl = require "fvl.core"
local util = require "fvl.util"

local fail = util.fail
-- A head is an fvl.nn.Module: net:add_module("head", head) puts its centres (and bias, DiscFace's
-- ξ) into net:parameters(), net:state()/state_dict() (Center's centres as a buffer), train()/
-- eval() reach it. The name lists are class-level: weight, bias, xi when present.
local Head = util.class("fvl.loss.Head", require("fvl.nn").Module)
Head._params = { "weight", "bias", "xi" }
Head._buffers = { "centers" }
Head._children = {}
local M = { Head = Head }

-- head(x, labels [, call]): the call options are the keys the head's forward reads, declared once
-- per class (Head.call_options; Partial FC adds `sample` per head); any other key is an error
-- naming the head, before any work. Subclasses made after this copy the __call (util.class).
Head.call_options = {}
function Head.__call(self, x, labels, call, ...)
  local checks = self._checks   -- fields set on the head since the last call: the constructor's rule
  if checks then
    for i = 1, #checks do
      local c = checks[i]
      local v = self[c.key]
      if v ~= c.last then M.recheck(self, c, v) end
    end
  end
  if call ~= nil then
    local allowed = self.call_options
    if type(call) == "table" and #allowed == 0 then
      local k = next(call)
      if k ~= nil then
        fail(string.format("%s call: unknown option '%s' (this head takes no call options)", self.name, tostring(k)))
      end
    else
      util.check_opts(self.name .. " call", call, allowed)
    end
  end
  return self:forward(x, labels, call, ...)
end

-- fvl.loss.<name>(o) runs its constructor through this: the option checks it makes (util.number,
-- integer, enum, boolean) are kept as head._checks where they hold a field of the head, and
-- Head.__call runs the same check again on a field whose value changed (`h.s = -3` between steps is
-- "arcface: s = -3 is outside 0..inf" at the next call; a tensor for a number is a per-row value,
-- whose shape the spec reader checks). A field the forward moves (AdaCos's s) is checked each step.
-- A constructor may note a rule of its own in util._recording: kind "function" (what = the
-- expected text, optional = nil allowed) or "scale" (a function, a B tensor or a number in a..b).
function M.recorded(ctor, ...)
  local prev, rec = util._recording, {}
  util._recording = rec
  local ok, head = pcall(ctor, ...)
  util._recording = prev
  if not ok then error(head, 0) end
  local checks = {}
  for key, c in pairs(rec) do
    if type(head) == "table" and rawequal(rawget(head, key), c.last) then checks[#checks + 1] = c end
  end
  table.sort(checks, function(a, b) return a.key < b.key end)
  if type(head) == "table" and #checks > 0 then head._checks = checks end
  return head
end

function M.recheck(self, c, v)
  local after = string.format(" (head.%s was set after construction)", c.key)
  if c.kind == "function" or (c.kind == "scale" and type(v) ~= "number" and not util.is_tensor(v)) then
    -- a field that holds a function (fvl.loss.margin's target, negative; its s: or a number, a B tensor)
    if type(v) ~= "function" and not (c.optional and v == nil) then
      fail(string.format("%s: %s must be %s, got %s%s", self.name, c.key, c.what, type(v), after))
    end
  elseif c.kind == "scale" then
    if not util.is_tensor(v) then
      local ok, err = pcall(util.number, self.name, c.key, v, nil, c.a, c.b)
      if not ok then fail(err .. after) end
    end
  elseif not (c.kind == "number" and util.is_tensor(v)) then
    local ok, err
    if c.kind == "enum" then ok, err = pcall(util.enum, self.name, c.key, v, c.a)
    else ok, err = pcall(util[c.kind], self.name, c.key, v, nil, c.a, c.b) end
    if not ok then fail(err .. after) end
  end
  c.last = v
end

-- the loss primitives: fvl.F (fused C kernels), or fvl.loss.reference (tensor-op compositions)
-- after fvl.loss.use_reference(true)
function M.F() return M.active or M.reference or fvl.F end

-- option names every centre-holding head accepts
M.COMMON = { "dim", "classes", "weight", "nonfinite" }

-- concatenate option lists: M.opts(M.COMMON, {"s", "m"})
function M.opts(...)
  local out = {}
  for _, list in ipairs { ... } do
    for _, k in ipairs(list) do out[#out + 1] = k end
  end
  return out
end

-- Xavier-normal centres from the engine's seeded generator, as a leaf that requires grad.
local function init_weight(C, D)
  local w = fvl.randn(C, D) * math.sqrt(2.0 / (C + D))
  w = w:detach()
  w:requires_grad()
  return w
end

-- a private float32 leaf copy of a user tensor (so the head never aliases the caller's data)
function M.leaf_copy(t)
  local c = t:detach():clone():contiguous()
  c = c:detach()
  c:requires_grad()
  return c
end

-- Fills name, dim, classes, weight, nonfinite, training from checked options `o`.
function Head:setup(name, o, need_weight)
  self.name = name
  self.nonfinite = util.enum(name, "nonfinite", o.nonfinite, { "error", "warn" }, "error")
  self.training = true
  if need_weight == false then
    if o.dim ~= nil then self.dim = util.integer(name, "dim", o.dim, nil, 1) end
    return self
  end
  local W = o.weight
  if W ~= nil then
    util.check_tensor(name, "weight", W, "float32")
    if W:dim() ~= 2 then
      fail(string.format("%s: weight must be a C×D tensor (classes × dim), got %s", name, util.shape_str(W)))
    end
    local C, D = W:size(1), W:size(2)
    if o.dim ~= nil and o.dim ~= D then
      fail(string.format("%s: weight is %s but dim = %s (expected %s×%s)", name, util.shape_str(W),
                         tostring(o.dim), tostring(o.classes or C), tostring(o.dim)))
    end
    if o.classes ~= nil and o.classes ~= C then
      fail(string.format("%s: weight is %s but classes = %s (expected %s×%s)", name, util.shape_str(W),
                         tostring(o.classes), tostring(o.classes), tostring(o.dim or D)))
    end
    self.dim, self.classes = D, C
    if M.pending_shard then   -- sharded / partial_fc: this rank's rows (fvl.loss.sharded)
      self.weight = require("fvl.loss.sharded").init_weight(self, M.pending_shard, W, C, D)
    else
      self.weight = M.leaf_copy(W)
    end
  else
    if o.dim == nil then fail(name .. ": option dim (embedding size) is required") end
    if o.classes == nil then fail(name .. ": option classes (number of classes) is required") end
    self.dim = util.integer(name, "dim", o.dim, nil, 1)
    self.classes = util.integer(name, "classes", o.classes, nil, 2)
    if M.pending_shard then
      self.weight = require("fvl.loss.sharded").init_weight(self, M.pending_shard, nil, self.classes, self.dim)
    else
      self.weight = init_weight(self.classes, self.dim)
    end
  end
  return self
end

-- x: B×dim float32; labels: int32 tensor or Lua list of 1-based ids, one per row (or labels
-- a head already checked). Returns B and the checked labels: an fvl.Labels value, read-only,
-- that every fvl.F function takes without checking the ids again (y:tensor() gives them as a
-- 1-based int32 tensor, y:totable() as a list).
function Head:check_input(x, labels)
  local name = self.name
  if not util.is_tensor(x) then
    fail(string.format("%s: x must be a B×D float32 tensor, got %s", name, type(x)))
  end
  if x:dtype() ~= "float32" then
    fail(string.format("%s: x must be a float32 tensor, got %s", name, x:dtype()))
  end
  if x:dim() ~= 2 then
    fail(string.format("%s: x must be 2-D (B×D), got %s", name, util.shape_str(x)))
  end
  local B, D = x:size(1), x:size(2)
  local W = self.weight
  local rows = self.weight_rows or self.classes   -- weight_rows: C·K (Sub-center ArcFace)
  if self.classes and not self.shard and (not util.is_tensor(W) or W:dim() ~= 2 or W:size(1) ~= rows
                       or W:size(2) ~= self.dim) then
    fail(string.format("%s: head.weight is %s but the head has classes = %d, dim = %d (expected %d×%d)",
                       name, util.is_tensor(W) and util.shape_str(W) or type(W), self.classes, self.dim,
                       rows, self.dim))
  end
  if B == 0 then fail(string.format("%s: empty batch (x is %s)", name, util.shape_str(x))) end
  if self.dim and D ~= self.dim then
    fail(string.format("%s: x is %s but the head expects %d×%d (dim = %d)", name, util.shape_str(x),
                       B, self.dim, self.dim))
  end
  -- The kind and the count are checked here; the values once, in C, by the same check every
  -- binding uses (fvl_checklabels, via fvl._check_labels): "arcface: labels[3] = 7 is outside
  -- 1..6". The result is a checked value (fvl.Labels): the fvl.F calls of this step compare its
  -- row count and class bound (O(1)) instead of scanning the ids again.
  if type(labels) == "table" then
    if #labels ~= B then
      fail(string.format("%s: labels has %d entries but x has %d rows", name, #labels, B))
    end
  elseif getmetatable(labels) == "fvl.Labels" then
    -- checked before (by a head): fvl._check_labels compares its row count and classes, O(1)
  elseif not util.is_tensor(labels) then
    fail(string.format("%s: labels must be an int32 tensor or a list of class ids, got %s", name,
                       type(labels)))
  elseif labels:dtype() ~= "int32" then
    fail(string.format("%s: labels must be an int32 tensor or a list of class ids, got a %s tensor " ..
                       "(make one with fvl.tensor({1, 2, ...}, \"int32\") or labels:int(), or pass the " ..
                       "Lua list itself)", name, labels:dtype()))
  elseif labels:numel() ~= B or labels:dim() > 2 then
    fail(string.format("%s: labels is %s but x has %d rows (expected %d labels)", name,
                       util.shape_str(labels), B, B))
  elseif labels:dim() ~= 1 then
    labels = labels:reshape(B)
  end
  local y = fvl._check_labels(labels, name, B, self.classes or -1)
  return B, y
end

-- B×C logits workspace (unless logits = false: heads whose logits come from another op) and
-- B×C gradient workspace (unless grad = false: the fused class blocks write no B×C gradient),
-- reallocated only when B or C change; a buffer that exists is kept (asking for the logits
-- workspace later does not replace the gradient one).
function Head:workspaces(B, logits, grad)
  if self._no_ws then return nil, nil end   -- a sharded head in row chunks (fvl.loss.sharded)
  local C = self._ws_cols or self.weight:size(1)   -- sampled columns (Partial FC)
  if self._ws_B ~= B or self._ws_C ~= C then
    self._ws, self._gws = nil, nil
    self._ws_B, self._ws_C = B, C
  end
  if logits ~= false and not self._ws then self._ws = fvl.empty(B, C) end
  if grad ~= false and not self._gws then self._gws = fvl.empty(B, C) end
  return self._ws, self._gws
end

-- the B×C logits workspace; with fvl.F.fused on, the margin_ce that follows forms its gradient
-- per class block inside the backward of F.cosine / F.linear_logits: no B×C gradient workspace
function Head:_logits_ws(B)
  local fused = not M.reference and fvl.F.fused() ~= false
  if fused then self._gws = nil end
  return (self:workspaces(B, true, not fused))
end

-- normalised cosine matrix of this batch against the centres (tracked), in the workspace
function Head:cosine(x, B)
  return M.F().cosine(x, self.weight, self:_logits_ws(B))
end

-- fused margin softmax-CE: batch mean of CE over the logits described by `spec`
function Head:margin_ce(logits, y, spec)
  spec.gws = self._gws
  spec.nonfinite = self.nonfinite
  return M.F().margin_ce(logits, y, spec, self.name)
end

-- cosine → margin_ce(spec) as one op: with fvl.F (not the reference ops, not a sharded head's
-- primitives) the margin CE's forward runs inside the cosine's class blocks (fvl.F.cosine_margin_ce,
-- the online softmax); the graph, the workspaces and the results are those of the two calls
function Head:cosine_margin_ce(x, B, y, spec)
  if M.F() ~= fvl.F then return self:margin_ce(self:cosine(x, B), y, spec) end
  local ws = self:_logits_ws(B)
  spec.gws = self._gws
  spec.nonfinite = self.nonfinite
  return fvl.F.cosine_margin_ce(x, self.weight, y, spec, ws, self.name)
end

-- head:parameters() -> {tensor, ...}: the head's trainable tensors (weight, and bias or ξ where the
-- head has them), for an optimiser or to join a model's parameters.
function Head:parameters()
  local p = {}
  if self.weight then p[#p + 1] = self.weight end
  if self.bias then p[#p + 1] = self.bias end
  if self.xi then p[#p + 1] = self.xi end
  return p
end

-- head:train([on]) -> head: training mode (on = true, default) or evaluation mode; heads with
-- batch statistics (CurricularFace's t, AdaFace's EMA, AdaCos's dynamic s) update them only in
-- training mode.
function Head:train(on)
  self.training = on == nil and true or not not on
  return self
end
-- head:evaluate() -> head: head:train(false); head:eval() is its PyTorch name.
function Head:evaluate() return self:train(false) end
Head.eval = Head.evaluate
--- @doc fvl.loss.Head:eval() -> head
--- PyTorch's name for head:evaluate().

-- raw evaluation scores: cosines (cosine heads) or x·Wᵀ + b (softmax heads), no margin, untracked
function Head:raw_logits(x)
  return M.F().cosine(x, self.weight)
end

-- head:logits(x) -> B×C tensor: evaluation scores of a B×D batch without margins and without
-- autograd (cosines for the cosine heads, x·Wᵀ + b for Softmax/Center); head:predict takes their
-- argmax. Errors: x not a B×D float32 tensor of the head's dim.
function Head:logits(x)
  local name = self.name
  if not util.is_tensor(x) or x:dim() ~= 2 or x:dtype() ~= "float32" then
    fail(string.format("%s:logits: x must be a B×D float32 tensor, got %s", name,
                       util.is_tensor(x) and (x:dtype() .. " " .. util.shape_str(x)) or type(x)))
  end
  if self.dim and x:size(2) ~= self.dim then
    fail(string.format("%s:logits: x is %s but the head expects B×%d", name, util.shape_str(x), self.dim))
  end
  local out
  fvl.no_grad(function() out = self:raw_logits(x) end)
  return out
end

-- predicted class ids (1-based) of each row of x
function Head:predict(x)
  return self:logits(x):argmax(2)
end

-- short summary for print(head)
function Head:describe()
  local keys = {}
  for k, v in pairs(self) do
    if type(k) == "string" and k:sub(1, 1) ~= "_" and (type(v) == "number" or type(v) == "string"
       or type(v) == "boolean") and k ~= "name" then
      keys[#keys + 1] = k
    end
  end
  table.sort(keys)
  local parts = {}
  for _, k in ipairs(keys) do parts[#parts + 1] = k .. "=" .. tostring(self[k]) end
  return string.format("fvl.loss.%s{%s}", self.name, table.concat(parts, ", "))
end

-- checks shared by constructors -------------------------------------------------------------
function M.num(name, key, v, default, lo, hi) return util.number(name, key, v, default, lo, hi) end
function M.bool(name, key, v, default) return util.boolean(name, key, v, default) end
function M.enum(name, key, v, names, default) return util.enum(name, key, v, names, default) end

return M
