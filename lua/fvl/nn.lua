-- fvl.nn — layers as modules, containers, initialisation and ready backbones.
--
--   local net = fvl.nn.Sequential{ fvl.nn.Conv2d(1, 32, 5, {padding=2}), fvl.nn.PReLU(32), ...,
--                                  fvl.nn.Flatten(), fvl.nn.Linear(1152, 2) }
--   local y = net(x)           -- forward; modules are callable
--   net:parameters()           -- list of leaf tensors (requires_grad), in a stable order
--   net:named_parameters()     -- list of {name, tensor}: "1.weight", "3.bias", ...
--   net:state()                -- name -> tensor for parameters AND buffers (BN running stats)
--   net:load_state(st)         -- copies values in place (shapes checked; strict by default)
--   net:train() / net:evaluate()  -- BatchNorm uses batch statistics / running statistics,
--                                    Dropout is active / the identity
-- Layers: Linear, Conv2d, MaxPool2d, AvgPool2d, BatchNorm1d, BatchNorm2d, PReLU, ReLU, Dropout,
-- Flatten, Identity, Sequential. fvl.nn.Module is the base class for user-written modules.
-- Initialisation: fvl.nn.init.kaiming_uniform_/kaiming_normal_/xavier_uniform_/xavier_normal_(t, opts)
-- and init= on Linear/Conv2d; the default is PyTorch's (uniform ±1/sqrt(fan_in) for weight and bias).
-- Backbones: fvl.nn.lenetpp{dim=2}, fvl.nn.resnet_small{dim=}, fvl.nn.mlp{sizes={...}}.
local fvl = require "fvl.core"
local util = require "fvl.util"
local F = fvl.F
local fail = util.fail

local nn = {}

-- ------------------------------------------------------------------ Module
local Module = util.class("Module")
nn.Module = Module

-- fvl.nn.Module.new(cls) -> module: a fresh instance of a class made with fvl.nn.class, in
-- training mode with no parameters, buffers or children yet (a constructor then registers them).
function Module.new(cls)
  local c = type(cls) == "table" and cls
  while c and c ~= Module do c = rawget(c, "super") end   -- a class whose parents reach Module
  if not c then
    fail(string.format("fvl.nn.Module.new: cls must be a class made by fvl.nn.class, got %s (call it as MyNet:new())",
                       util.typename(cls)))
  end
  return setmetatable({ training = true, _params = {}, _buffers = {}, _children = {} }, cls)
end

-- module:register_parameter(name, tensor) -> tensor: makes tensor (a leaf copy of a computed
-- one; float32 ones then require grad) the parameter self[name], listed by parameters(), state()
-- and the optimisers. Errors: a value that is not a tensor.
function Module:register_parameter(name, t)
  if t ~= nil and not util.is_tensor(t) then
    fail(string.format("%s: parameter %s must be a tensor, got %s", self:describe(), name, type(t)))
  end
  if not self:_has(self._params, name) then table.insert(self._params, name) end
  if t ~= nil and not t.is_leaf then t = t:detach() end
  if t ~= nil and t:dtype() == "float32" then t:requires_grad() end
  self[name] = t
  return t
end
-- module:register_buffer(name, tensor) -> tensor: state that is saved and loaded but not trained
-- (BatchNorm's running statistics) as self[name].
function Module:register_buffer(name, t)
  if not self:_has(self._buffers, name) then table.insert(self._buffers, name) end
  self[name] = t
  return t
end
-- module:add_module(name, child) -> child: registers a submodule as self[name] (its parameters
-- and buffers then belong to this module, named "name.weight"). Errors: a child that is not a module.
function Module:add_module(name, m)
  name = tostring(name)
  if not util.isinstance(m, Module) then
    fail(string.format("%s: child %s is a %s, expected an fvl.nn module", self:describe(), name, type(m)))
  end
  if not self:_has(self._children, name) then table.insert(self._children, name) end
  self[name] = m
  return m
end
function Module:_has(list, name)
  for _, n in ipairs(list) do if n == name then return true end end
  return false
end

-- module:children() -> {{name, module}, ...}: the direct submodules in registration order.
function Module:children()
  local out = {}
  for _, n in ipairs(self._children) do
    if self[n] ~= nil then out[#out + 1] = { n, self[n] } end
  end
  return out
end

local function walk(self, prefix, kind, out, seen)
  for _, n in ipairs(self[kind]) do
    local t = self[n]
    if t ~= nil and not seen[t] then
      seen[t] = true
      out[#out + 1] = { prefix .. n, t }
    end
  end
  for _, c in ipairs(self:children()) do walk(c[2], prefix .. c[1] .. ".", kind, out, seen) end
  return out
end

-- module:named_parameters() -> {{name, tensor}, ...}: every parameter of the module and its
-- children in registration order, named by path ("1.weight"); a shared tensor is listed once.
function Module:named_parameters() return walk(self, "", "_params", {}, {}) end
-- module:named_buffers() -> {{name, tensor}, ...}: the buffers, named as named_parameters.
function Module:named_buffers() return walk(self, "", "_buffers", {}, {}) end
-- module:parameters() -> {tensor, ...}: the parameters (for an optimiser), in a stable order.
function Module:parameters()
  local out = {}
  for i, p in ipairs(self:named_parameters()) do out[i] = p[2] end
  return out
end
-- module:num_parameters() -> integer: the number of trainable elements.
function Module:num_parameters()
  local n = 0
  for _, p in ipairs(self:parameters()) do n = n + p:numel() end
  return n
end

-- module:state() -> {name = tensor}: every parameter and buffer of the module and its children,
-- named by path ("1.weight", "3.running_mean"); the tensors themselves, not copies (clone them to
-- keep a snapshot). What fvl.save_checkpoint and fvl.nn.save store.
function Module:state()
  local st = {}
  for _, p in ipairs(self:named_parameters()) do st[p[1]] = p[2] end
  for _, b in ipairs(self:named_buffers()) do st[b[1]] = b[2] end
  return st
end

-- module:load_state(st [, {strict = true}]) -> module: copies every tensor of `st` (as from
-- module:state()) into the module's tensor of the same name, in place. strict (default): every
-- name must match both ways; strict = false skips names missing on either side. Errors: a missing
-- or extra name (strict), a value that is not a tensor, another shape or dtype.
function Module:load_state(st, opts)
  opts = util.check_opts("load_state", opts, { "strict" })
  local strict = opts.strict ~= false
  local mine = self:state()
  local who = self.name or self.class_name or "module"
  local names = {}
  for name in pairs(mine) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do
    local t, src = mine[name], st[name]
    if src == nil then
      if strict then fail(string.format("load_state: %s has %s but the state has no such entry", who, name)) end
    else
      if not util.is_tensor(src) then
        fail(string.format("load_state: %s is a %s, expected a tensor", name, type(src)))
      end
      if util.shape_str(src) ~= util.shape_str(t) then
        fail(string.format("load_state: %s is %s in the state but %s in %s", name, util.shape_str(src),
                           util.shape_str(t), who))
      end
      if src:dtype() ~= t:dtype() then   -- never convert an int32 blob into a float parameter
        fail(string.format("load_state: %s is %s in the state but %s in %s", name, src:dtype(), t:dtype(), who))
      end
      fvl.no_grad(function() t:copy(src) end)
    end
  end
  if strict then
    local extra = {}
    for name in pairs(st) do extra[#extra + 1] = name end
    table.sort(extra)
    for _, name in ipairs(extra) do
      if mine[name] == nil then
        fail(string.format("load_state: the state has %s but %s has no such tensor", name, who))
      end
    end
  end
  return self
end

-- module:train([on]) -> module: training mode (on = true, the default) or evaluation mode for
-- the module and its children (BatchNorm uses batch statistics / running statistics, Dropout is
-- active / the identity).
function Module:train(on)
  on = on == nil and true or not not on
  self.training = on
  for _, c in ipairs(self:children()) do c[2]:train(on) end
  return self
end
-- module:evaluate() -> module: module:train(false); module:eval() is its PyTorch name.
function Module:evaluate() return self:train(false) end
-- PyTorch's names for the same things
Module.eval = Module.evaluate
--- @doc fvl.nn.Module:eval() -> module
--- PyTorch's name for module:evaluate() (evaluation mode).
-- module:state_dict() -> table: PyTorch's name for module:state().
function Module:state_dict() return self:state() end
-- module:load_state_dict(state [, opts]) -> module: PyTorch's name for module:load_state.
function Module:load_state_dict(st, opts) return self:load_state(st, opts) end

-- module:zero_grad() -> module: sets every parameter's gradient to nil (the next backward starts
-- from zero without a pass over the memory).
function Module:zero_grad()
  for _, p in ipairs(self:parameters()) do p.grad = nil end
  return self
end

-- module:apply(fn) -> module: calls fn(m, name) for this module (name "") and every descendant,
-- depth first, with its path ("2.1.conv1"): e.g. to re-initialise every Linear.
function Module:apply(fn, name)
  fn(self, name or "")
  for _, c in ipairs(self:children()) do
    c[2]:apply(fn, (name and name ~= "" and (name .. ".") or "") .. c[1])
  end
  return self
end

-- module:forward(...) -> output: the computation of a module; module(x) calls it. Every layer and
-- backbone implements it; a user's module (fvl.nn.class) writes its own. The base raises
-- "<module>: forward is not implemented".
function Module:forward()
  fail(self:describe() .. ": forward is not implemented")
end

-- module:describe() -> string: a one-line description of a layer ("Linear(512 -> 10)"), or the
-- tree of children for a container; tostring(module) and the REPL print it.
function Module:describe()
  local kids = self:children()
  local head = self.class_name or "Module"
  if #kids == 0 then return head end
  local lines = { head .. "(" }
  for _, c in ipairs(kids) do
    lines[#lines + 1] = "  (" .. c[1] .. "): " .. c[2]:describe():gsub("\n", "\n  ")
  end
  lines[#lines + 1] = ")"
  return table.concat(lines, "\n")
end

nn._classes = nn._classes or {}
-- fvl.nn.class(name [, parent]) -> class: a new module class (parent default fvl.nn.Module):
--   local MyNet = fvl.nn.class("MyNet"); function MyNet:forward(x) ... end
--   local net = MyNet:new(); net:add_module("fc", fvl.nn.Linear(4, 2))
-- Every class made here is registered by name, so that fvl.nn.load can rebuild saved models.
function nn.class(name, parent)
  local cls = util.class(name, parent or Module)
  nn._classes[name] = cls
  return cls
end

-- ------------------------------------------------------------------ initialisation
local init = {}
nn.init = init

local function fans(t)
  local s = t:shape()
  if #s < 2 then fail("init: fan in/out needs a tensor with at least 2 dims, got " .. util.shape_str(t)) end
  local field = 1
  for i = 3, #s do field = field * s[i] end
  return s[2] * field, s[1] * field
end

local function gain_of(fn, nonlinearity, a)
  if nonlinearity == "relu" then return math.sqrt(2) end
  if nonlinearity == "leaky_relu" or nonlinearity == "prelu" then return math.sqrt(2 / (1 + a * a)) end
  if nonlinearity == "linear" or nonlinearity == "sigmoid" then return 1 end
  if nonlinearity == "tanh" then return 5 / 3 end
  fail(string.format("%s: nonlinearity = '%s' (expected relu|leaky_relu|prelu|linear|sigmoid|tanh)", fn,
                     tostring(nonlinearity)))
end

local function kaiming(fn, t, opts, dist)
  util.check_tensor(fn, "t", t, "float32")
  opts = util.check_opts(fn, opts, { "a", "mode", "nonlinearity" })
  local a = util.number(fn, "a", opts.a, 0)
  local mode = util.enum(fn, "mode", opts.mode, { "fan_in", "fan_out" }, "fan_in")
  local fin, fout = fans(t)
  local std = gain_of(fn, opts.nonlinearity or "leaky_relu", a) / math.sqrt(mode == "fan_in" and fin or fout)
  fvl.no_grad(function()
    if dist == "uniform" then t:uniform_(-math.sqrt(3) * std, math.sqrt(3) * std) else t:normal_(0, std) end
  end)
  return t
end
-- He et al. 2015: std = gain / sqrt(fan); gain = sqrt(2 / (1 + a²)) (a = 0: ReLU)
function init.kaiming_uniform_(t, opts) return kaiming("kaiming_uniform_", t, opts, "uniform") end
-- fvl.nn.init.kaiming_normal_(t [, opts]) -> t: in place, N(0, std²) with He et al.'s std (opts
-- as kaiming_uniform_: a (0), mode = "fan_in"|"fan_out", nonlinearity (default "leaky_relu")).
function init.kaiming_normal_(t, opts) return kaiming("kaiming_normal_", t, opts, "normal") end

local function xavier(fn, t, opts, dist)
  util.check_tensor(fn, "t", t, "float32")
  opts = util.check_opts(fn, opts, { "gain" })
  local gain = util.number(fn, "gain", opts.gain, 1)
  local fin, fout = fans(t)
  local std = gain * math.sqrt(2 / (fin + fout))
  fvl.no_grad(function()
    if dist == "uniform" then t:uniform_(-math.sqrt(3) * std, math.sqrt(3) * std) else t:normal_(0, std) end
  end)
  return t
end
-- Glorot & Bengio 2010: std = gain · sqrt(2 / (fan_in + fan_out))
function init.xavier_uniform_(t, opts) return xavier("xavier_uniform_", t, opts, "uniform") end
-- fvl.nn.init.xavier_normal_(t [, opts]) -> t: in place, N(0, std²) with Glorot's std (opts.gain, 1).
function init.xavier_normal_(t, opts) return xavier("xavier_normal_", t, opts, "normal") end

local init_kinds = { "default", "kaiming_uniform", "kaiming_normal", "xavier_uniform", "xavier_normal" }
-- (re)initialises a Linear/Conv2d weight and bias in place
local function init_layer(m, kind)
  if type(kind) == "function" then
    fvl.no_grad(function() kind(m.weight, m.bias) end)
    return
  end
  util.enum(m.class_name, "init", kind, init_kinds, "default")
  if kind == "default" then
    -- PyTorch's reset_parameters: kaiming_uniform(a = sqrt 5) → U(±1/sqrt(fan_in)), bias likewise
    local fin = fans(m.weight)
    local bound = 1 / math.sqrt(fin)
    fvl.no_grad(function()
      m.weight:uniform_(-bound, bound)
      if m.bias then m.bias:uniform_(-bound, bound) end
    end)
    return
  end
  if kind:match("^kaiming") then
    init[kind .. "_"](m.weight, { nonlinearity = "relu" })
  else
    init[kind .. "_"](m.weight)
  end
  if m.bias then fvl.no_grad(function() m.bias:fill(0) end) end
end

-- re-initialise every Linear and Conv2d of a network: fvl.nn.init.apply(net, "kaiming_normal")
function init.apply(net, kind)
  if type(net) ~= "table" or type(net.apply) ~= "function" then
    fail("init.apply: net must be an fvl.nn module, got " .. type(net))
  end
  net:apply(function(m)
    if m.class_name == "Linear" or m.class_name == "Conv2d" then init_layer(m, kind) end
  end)
  return net
end

-- ------------------------------------------------------------------ helpers for layers
local function pos_int(fn, what, v, lo)
  if math.type(v) ~= "integer" then
    local i = type(v) == "number" and math.tointeger(v) or nil   -- (a whole float; nil beyond the integers)
    if not i then fail(string.format("%s: %s must be an integer, got %s", fn, what, tostring(v))) end
    v = i
  end
  if v < (lo or 1) then fail(string.format("%s: %s = %d (expected >= %d)", fn, what, v, lo or 1)) end
  return v
end

-- a size given as n or {h, w} → h, w
local function pair(fn, what, v, def, lo)
  if v == nil then v = def end
  if type(v) == "table" then
    if #v ~= 2 then fail(string.format("%s: %s must be a number or {h, w}", fn, what)) end
    return pos_int(fn, what, v[1], lo), pos_int(fn, what, v[2], lo)
  end
  local n = pos_int(fn, what, v, lo)
  return n, n
end

local function need_tensor(self, x)
  if not util.is_tensor(x) then
    fail(string.format("%s: input must be a tensor, got %s", self:describe(), type(x)))
  end
end

-- ------------------------------------------------------------------ Linear
local Linear = nn.class("Linear")
nn.Linear = Linear
setmetatable(Linear, { __index = Module, __call = function(_, ...) return Linear.create(...) end })
-- fvl.nn.Linear(in_features, out_features [, opts]) -> module: y = x·Wᵀ + b for x batch×in.
-- opts: bias (true), init ("default": PyTorch's U(±1/sqrt(in)); "kaiming_uniform", "kaiming_normal",
-- "xavier_uniform", "xavier_normal", or a function(weight, bias)). Parameters weight (out×in), bias.
-- Errors: sizes that are not positive integers; an input that is not batch×in.
function Linear.create(din, dout, opts)
  local fn = "Linear"
  din, dout = pos_int(fn, "in_features", din), pos_int(fn, "out_features", dout)
  opts = util.check_opts(fn, opts, { "bias", "init" })
  local self = Module.new(Linear)
  self.in_features, self.out_features = din, dout
  self:register_parameter("weight", fvl.zeros(dout, din))
  if util.boolean(fn, "bias", opts.bias, true) then self:register_parameter("bias", fvl.zeros(dout)) end
  init_layer(self, opts.init or "default")
  return self
end
function Linear:describe()
  return string.format("Linear(%d, %d%s)", self.in_features, self.out_features, self.bias and "" or ", bias=false")
end
function Linear:forward(x)
  need_tensor(self, x)
  if x:dim() ~= 2 or x:size(2) ~= self.in_features then
    fail(string.format("%s: input is %s but the layer expects batch×%d", self:describe(), util.shape_str(x),
                       self.in_features))
  end
  return F.linear(x, self.weight, self.bias)
end

-- ------------------------------------------------------------------ Conv2d
local Conv2d = nn.class("Conv2d")
nn.Conv2d = Conv2d
setmetatable(Conv2d, { __index = Module, __call = function(_, ...) return Conv2d.create(...) end })
-- fvl.nn.Conv2d(in_channels, out_channels, kernel [, opts]) -> module: 2-D convolution of
-- batch×C×H×W inputs; kernel an integer or {h, w}. opts: stride (1), padding (0), groups (1, dividing
-- both channel counts), bias (true), init (as fvl.nn.Linear). Errors: no kernel; groups that do not
-- divide the channels; inputs with another channel count or smaller than the kernel.
function Conv2d.create(cin, cout, k, opts)
  local fn = "Conv2d"
  cin, cout = pos_int(fn, "in_channels", cin), pos_int(fn, "out_channels", cout)
  if k == nil then fail("Conv2d: kernel size (argument #3) is required") end
  opts = util.check_opts(fn, opts, { "stride", "padding", "bias", "init", "groups" })
  local self = Module.new(Conv2d)
  self.in_channels, self.out_channels = cin, cout
  self.kh, self.kw = pair(fn, "kernel size", k, nil, 1)
  self.sh, self.sw = pair(fn, "stride", opts.stride, 1, 1)
  self.ph, self.pw = pair(fn, "padding", opts.padding, 0, 0)
  -- groups > 1: grouped convolution (groups = in = out channels: depthwise), weight out×in/groups×kh×kw
  self.groups = pos_int(fn, "groups", opts.groups or 1)
  if cin % self.groups ~= 0 or cout % self.groups ~= 0 then
    fail(string.format("Conv2d: groups = %d must divide in_channels = %d and out_channels = %d", self.groups, cin, cout))
  end
  self:register_parameter("weight", fvl.zeros(cout, cin // self.groups, self.kh, self.kw))
  if util.boolean(fn, "bias", opts.bias, true) then self:register_parameter("bias", fvl.zeros(cout)) end
  init_layer(self, opts.init or "default")
  return self
end
local function hw(h, w) return h == w and tostring(h) or string.format("{%d, %d}", h, w) end
function Conv2d:describe()
  local extra = ""
  if self.sh ~= 1 or self.sw ~= 1 then extra = extra .. ", stride=" .. hw(self.sh, self.sw) end
  if self.ph ~= 0 or self.pw ~= 0 then extra = extra .. ", padding=" .. hw(self.ph, self.pw) end
  if self.groups ~= 1 then extra = extra .. ", groups=" .. self.groups end
  if not self.bias then extra = extra .. ", bias=false" end
  return string.format("Conv2d(%d, %d, %s%s)", self.in_channels, self.out_channels, hw(self.kh, self.kw), extra)
end
function Conv2d:forward(x)
  need_tensor(self, x)
  if x:dim() ~= 4 or x:size(2) ~= self.in_channels then
    fail(string.format("%s: input is %s but the layer expects batch×%d×H×W (%d input channel%s)",
                       self:describe(), util.shape_str(x), self.in_channels, self.in_channels,
                       self.in_channels == 1 and "" or "s"))
  end
  local H, W = x:size(3), x:size(4)
  if H + 2 * self.ph < self.kh or W + 2 * self.pw < self.kw then
    fail(string.format("%s: input is %s; its %d×%d maps (padded %d×%d) are smaller than the %d×%d kernel",
                       self:describe(), util.shape_str(x), H, W, H + 2 * self.ph, W + 2 * self.pw, self.kh, self.kw))
  end
  self.out_hw = { (H + 2 * self.ph - self.kh) // self.sh + 1, (W + 2 * self.pw - self.kw) // self.sw + 1 }
  if self.groups ~= 1 then
    return F.conv2d_grouped(x, self.weight, self.bias, { self.sh, self.sw }, { self.ph, self.pw }, self.groups)
  end
  return F.conv2d(x, self.weight, self.bias, { self.sh, self.sw }, { self.ph, self.pw })
end

-- ------------------------------------------------------------------ pooling
local function pool_class(name, fname)
  local P = nn.class(name)
  setmetatable(P, { __index = Module, __call = function(_, ...) return P.create(...) end })
  function P.create(k, opts)
    if k == nil then fail(name .. ": kernel size (argument #1) is required") end
    if type(opts) == "number" then opts = { stride = opts } end
    opts = util.check_opts(name, opts, { "stride", "padding" })
    local self = Module.new(P)
    self.kh, self.kw = pair(name, "kernel size", k, nil, 1)
    self.sh, self.sw = pair(name, "stride", opts.stride, k, 1)
    self.ph, self.pw = pair(name, "padding", opts.padding, 0, 0)
    return self
  end
  function P:describe()
    local extra = ""
    if self.sh ~= self.kh or self.sw ~= self.kw then extra = extra .. ", stride=" .. hw(self.sh, self.sw) end
    if self.ph ~= 0 or self.pw ~= 0 then extra = extra .. ", padding=" .. hw(self.ph, self.pw) end
    return string.format("%s(%s%s)", name, hw(self.kh, self.kw), extra)
  end
  function P:forward(x)
    need_tensor(self, x)
    if x:dim() ~= 4 then
      fail(string.format("%s: input is %s but the layer expects batch×C×H×W", self:describe(), util.shape_str(x)))
    end
    local H, W = x:size(3), x:size(4)
    if H + 2 * self.ph < self.kh or W + 2 * self.pw < self.kw then
      fail(string.format("%s: input is %s; its %d×%d maps are smaller than the %d×%d window", self:describe(),
                         util.shape_str(x), H, W, self.kh, self.kw))
    end
    return F[fname](x, { self.kh, self.kw }, { self.sh, self.sw }, { self.ph, self.pw })
  end
  return P
end
nn.MaxPool2d = pool_class("MaxPool2d", "max_pool2d")
nn.AvgPool2d = pool_class("AvgPool2d", "avg_pool2d")
--- @doc fvl.nn.AvgPool2d(kernel [, opts]) -> module
--- Average pooling, arguments as fvl.nn.MaxPool2d.
--- @doc fvl.nn.MaxPool2d(kernel [, opts]) -> module
--- Max pooling over batch×C×H×W inputs; kernel an integer or {h, w}; opts stride (default the
--- kernel), padding (0). Errors: no kernel; inputs smaller than the window.

-- ------------------------------------------------------------------ BatchNorm
local function bn_class(name, ndims)
  local BN = nn.class(name)
  setmetatable(BN, { __index = Module, __call = function(_, ...) return BN.create(...) end })
  function BN.create(C, opts)
    C = pos_int(name, "num_features", C)
    opts = util.check_opts(name, opts, { "eps", "momentum", "affine", "track_running_stats" })
    local self = Module.new(BN)
    self.num_features = C
    self.eps = util.number(name, "eps", opts.eps, 1e-5)
    if not (self.eps > 0 and self.eps < math.huge) then
      fail(string.format("%s: eps = %g, expected a positive finite number", name, self.eps))
    end
    self.momentum = util.number(name, "momentum", opts.momentum, 0.1, 0, 1)
    if util.boolean(name, "affine", opts.affine, true) then
      self:register_parameter("weight", fvl.ones(C))
      self:register_parameter("bias", fvl.zeros(C))
    end
    if util.boolean(name, "track_running_stats", opts.track_running_stats, true) then
      self:register_buffer("running_mean", fvl.zeros(C))
      self:register_buffer("running_var", fvl.ones(C))
    end
    return self
  end
  function BN:describe()
    return string.format("%s(%d%s)", name, self.num_features, self.weight and "" or ", affine=false")
  end
  function BN:forward(x)
    need_tensor(self, x)
    local ok = (x:dim() == ndims[1] or x:dim() == ndims[2]) and x:size(2) == self.num_features
    if not ok then
      fail(string.format("%s: input is %s but the layer expects %s", self:describe(), util.shape_str(x),
                         ndims[1] == 2 and ("batch×" .. self.num_features .. " (or batch×" .. self.num_features .. "×L)")
                         or ("batch×" .. self.num_features .. "×H×W")))
    end
    local training = self.training or not self.running_mean
    if training and x:numel() / self.num_features < 2 then
      fail(string.format("%s: input is %s; training needs more than one value per channel (use evaluate() for single samples)",
                         self:describe(), util.shape_str(x)))
    end
    return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, training,
                        self.momentum, self.eps)
  end
  return BN
end
nn.BatchNorm1d = bn_class("BatchNorm1d", { 2, 3 })
nn.BatchNorm2d = bn_class("BatchNorm2d", { 4, 4 })
--- @doc fvl.nn.BatchNorm2d(num_channels [, opts]) -> module
--- Batch normalisation of batch×C×H×W inputs per channel; opts as fvl.nn.BatchNorm1d.
--- @doc fvl.nn.BatchNorm1d(num_features [, opts]) -> module
--- Batch normalisation of batch×C (or batch×C×L) inputs per feature: batch statistics in training
--- mode, running statistics in evaluation mode. opts: eps (1e-5), momentum (0.1, PyTorch's
--- convention), affine (true: learned weight and bias), track_running_stats (true: buffers
--- running_mean, running_var). Errors: another feature count; training on one value per channel.

-- ------------------------------------------------------------------ activations and shape
local PReLU = nn.class("PReLU")
nn.PReLU = PReLU
setmetatable(PReLU, { __index = Module, __call = function(_, ...) return PReLU.create(...) end })
-- fvl.nn.PReLU([num_parameters [, opts]]) -> module: x where x > 0, a·x elsewhere, a learned per
-- channel (num_parameters channels, default 1: one shared a). opts.init: the starting a (0.25).
function PReLU.create(n, opts)
  n = pos_int("PReLU", "num_parameters", n or 1)
  opts = util.check_opts("PReLU", opts, { "init" })
  local self = Module.new(PReLU)
  self.num_parameters = n
  self:register_parameter("weight", fvl.full({ n }, util.number("PReLU", "init", opts.init, 0.25)))
  return self
end
function PReLU:describe() return string.format("PReLU(%d)", self.num_parameters) end
function PReLU:forward(x)
  need_tensor(self, x)
  if self.num_parameters ~= 1 and (x:dim() < 2 or x:size(2) ~= self.num_parameters) then
    fail(string.format("%s: input is %s but the layer has %d channel weights (expected batch×%d×...)",
                       self:describe(), util.shape_str(x), self.num_parameters, self.num_parameters))
  end
  return F.prelu(x, self.weight)
end

local function simple(name, fwd, describe)
  local C = nn.class(name)
  setmetatable(C, { __index = Module, __call = function(_, ...) return C.create(...) end })
  C.forward = fwd
  if describe then C.describe = describe end
  return C
end

nn.ReLU = simple("ReLU", function(self, x) need_tensor(self, x); return x:relu() end)
function nn.ReLU.create() return Module.new(nn.ReLU) end
--- @doc fvl.nn.ReLU() -> module
--- max(x, 0) elementwise.

nn.Identity = simple("Identity", function(_, x) return x end)
function nn.Identity.create() return Module.new(nn.Identity) end
--- @doc fvl.nn.Identity() -> module
--- Returns its input (a placeholder, e.g. for a removed layer).

nn.Flatten = simple("Flatten", function(self, x)
  need_tensor(self, x)
  if x:dim() < 1 then fail("Flatten: input must have a batch dimension") end
  local B = x:size(1)
  return x:reshape(B, B > 0 and x:numel() // B or 0)
end)
function nn.Flatten.create() return Module.new(nn.Flatten) end
--- @doc fvl.nn.Flatten() -> module
--- Reshapes batch×... to batch×(the rest).

nn.Dropout = simple("Dropout", function(self, x)
--- @doc fvl.nn.Dropout([p]) -> module
--- Inverted dropout with probability p (0.5, 0 <= p < 1) in training mode; the identity in
--- evaluation mode. Errors: p out of range.
  need_tensor(self, x)
  return F.dropout(x, self.p, self.training)
end, function(self) return string.format("Dropout(%g)", self.p) end)
function nn.Dropout.create(p)
  local self = Module.new(nn.Dropout)
  self.p = util.number("Dropout", "p", p, 0.5, 0)
  if self.p >= 1 then fail(string.format("Dropout: p = %g (expected 0 <= p < 1)", self.p)) end
  return self
end

-- ------------------------------------------------------------------ Sequential
local Sequential = nn.class("Sequential")
nn.Sequential = Sequential
setmetatable(Sequential, { __index = Module, __call = function(_, ...) return Sequential.create(...) end })
-- fvl.nn.Sequential{m1, m2, ...} (or Sequential(m1, m2, ...)) -> module: applies the modules in
-- order; children are named "1", "2", ... (state "1.weight"). Errors: an element that is not a module.
function Sequential.create(list, ...)
  if util.isinstance(list, Module) then list = { list, ... } end
  if list ~= nil and type(list) ~= "table" then
    fail("Sequential: expected a list of modules, got " .. type(list))
  end
  local self = Module.new(Sequential)
  for i, m in ipairs(list or {}) do
    if not util.isinstance(m, Module) then
      fail(string.format("Sequential: element %d is a %s, expected an fvl.nn module", i, type(m)))
    end
    self:add_module(i, m)
  end
  return self
end
-- seq:add(module) -> seq: appends a module (named by its position).
function Sequential:add(m)
  return self:add_module(#self._children + 1, m) and self
end
-- seq:size() -> integer: the number of modules.
function Sequential:size() return #self._children end
-- seq:get(i) -> module: the i-th module (1-based), or nil.
function Sequential:get(i) return self[tostring(i)] end
function Sequential:forward(x)
  for i, name in ipairs(self._children) do
    local m = self[name]
    local ok, y = pcall(m, x)
    if not ok then error(string.format("Sequential[%d]: %s", i, tostring(y)), 0) end
    x = y
  end
  return x
end

-- ------------------------------------------------------------------ residual block
local BasicBlock = nn.class("BasicBlock")
nn.BasicBlock = BasicBlock
setmetatable(BasicBlock, { __index = Module, __call = function(_, ...) return BasicBlock.create(...) end })
-- conv3x3-BN-ReLU-conv3x3-BN + shortcut (1x1 conv + BN when the shape changes), then ReLU
function BasicBlock.create(cin, cout, stride)
  stride = stride or 1
  local self = Module.new(BasicBlock)
  self.in_channels, self.out_channels, self.stride = cin, cout, stride
  local kn = "kaiming_normal"
  self:add_module("conv1", nn.Conv2d(cin, cout, 3, { stride = stride, padding = 1, bias = false, init = kn }))
  self:add_module("bn1", nn.BatchNorm2d(cout))
  self:add_module("conv2", nn.Conv2d(cout, cout, 3, { padding = 1, bias = false, init = kn }))
  self:add_module("bn2", nn.BatchNorm2d(cout))
  if stride ~= 1 or cin ~= cout then
    self:add_module("shortcut", nn.Sequential {
      nn.Conv2d(cin, cout, 1, { stride = stride, bias = false, init = kn }), nn.BatchNorm2d(cout) })
  end
  return self
end
function BasicBlock:forward(x)
  local out = self.bn1(self.conv1(x)):relu()
  out = self.bn2(self.conv2(out))
  local sc = self.shortcut and self.shortcut(x) or x
  return (out + sc):relu()
end

-- ------------------------------------------------------------------ backbones
-- LeNet++ (Wen et al., "A Discriminative Feature Learning Approach for Deep Face Recognition",
-- ECCV 2016, MNIST network): three stages of two 5×5 convolutions (32, 64, 128 channels,
-- padding 2) with PReLU, each followed by 2×2 max-pooling (28 → 14 → 7 → 3), then a linear
-- layer 1152 → dim (2 or 3 for plotting). Weights start Xavier-uniform (biases 0) as in the
-- paper's Caffe model; init= picks another (see init_kinds).
function nn.lenetpp(opts)
  opts = util.check_opts("lenetpp", opts, { "dim", "in_channels", "init" })
  local dim = util.integer("lenetpp", "dim", opts.dim, 2, 1)
  local cin = util.integer("lenetpp", "in_channels", opts.in_channels, 1, 1)
  -- the paper's Caffe model uses "xavier" fillers; PyTorch's default init stalls SGD here
  local ini = opts.init or "xavier_uniform"
  local function conv(a, b) return nn.Conv2d(a, b, 5, { padding = 2, init = ini }) end
  local net = nn.Sequential {
    conv(cin, 32), nn.PReLU(32), conv(32, 32), nn.PReLU(32), nn.MaxPool2d(2),
    conv(32, 64), nn.PReLU(64), conv(64, 64), nn.PReLU(64), nn.MaxPool2d(2),
    conv(64, 128), nn.PReLU(128), conv(128, 128), nn.PReLU(128), nn.MaxPool2d(2),
    nn.Flatten(), nn.Linear(128 * 3 * 3, dim, { init = ini }),
  }
  net.name = "lenetpp"
  return net
end

-- a small residual CNN for 28×28 inputs: conv3×3(w)-BN-ReLU, stages of BasicBlocks at 28×28 (w),
-- 14×14 (2w), 7×7 (4w), global average pooling, Linear(4w → dim), BatchNorm1d(dim) (the
-- BN-after-embedding of ArcFace's output layer; bn_out=false drops it).
function nn.resnet_small(opts)
  opts = util.check_opts("resnet_small", opts, { "dim", "width", "blocks", "in_channels", "bn_out" })
  local dim = util.integer("resnet_small", "dim", opts.dim, 128, 1)
  local w = util.integer("resnet_small", "width", opts.width, 16, 1)
  local cin = util.integer("resnet_small", "in_channels", opts.in_channels, 1, 1)
  local blocks = opts.blocks or { 2, 2, 2 }
  if type(blocks) ~= "table" or #blocks ~= 3 then
    fail("resnet_small: blocks must be a list of 3 block counts, e.g. {2, 2, 2}")
  end
  local net = nn.Sequential {
    nn.Conv2d(cin, w, 3, { padding = 1, bias = false, init = "kaiming_normal" }), nn.BatchNorm2d(w), nn.ReLU() }
  local c = w
  for s, n in ipairs(blocks) do
    local cout = w * (1 << (s - 1))
    for b = 1, util.integer("resnet_small", "blocks[" .. s .. "]", n, nil, 1) do
      net:add(nn.BasicBlock(c, cout, (b == 1 and s > 1) and 2 or 1))
      c = cout
    end
  end
  net:add(nn.AvgPool2d(7))
  net:add(nn.Flatten())
  net:add(nn.Linear(c, dim))
  if util.boolean("resnet_small", "bn_out", opts.bn_out, true) then net:add(nn.BatchNorm1d(dim)) end
  net.name = "resnet_small"
  return net
end

-- an MLP for feature vectors: sizes = {in, hidden..., out}; activation between layers
-- (not after the last), optional BatchNorm1d and Dropout after each hidden activation.
function nn.mlp(opts)
  opts = util.check_opts("mlp", opts, { "sizes", "activation", "bn", "dropout", "init" })
  local sizes = opts.sizes
  if type(sizes) ~= "table" or #sizes < 2 then
    fail("mlp: sizes must be a list of at least 2 layer sizes, e.g. {64, 128, 2}")
  end
  local act = util.enum("mlp", "activation", opts.activation, { "relu", "prelu", "none" }, "relu")
  local bn = util.boolean("mlp", "bn", opts.bn, false)
  local p = util.number("mlp", "dropout", opts.dropout, 0, 0, 0.999)
  local net = nn.Sequential {}
  for i = 1, #sizes - 1 do
    local a = util.integer("mlp", "sizes[" .. i .. "]", sizes[i], nil, 1)
    local b = util.integer("mlp", "sizes[" .. (i + 1) .. "]", sizes[i + 1], nil, 1)
    net:add(nn.Linear(a, b, { init = opts.init }))
    if i < #sizes - 1 then
      if bn then net:add(nn.BatchNorm1d(b)) end
      if act == "relu" then net:add(nn.ReLU()) elseif act == "prelu" then net:add(nn.PReLU(b)) end
      if p > 0 then net:add(nn.Dropout(p)) end
    end
  end
  net.name = "mlp"
  return net
end

-- fvl.nn.save(path, model, {meta=}) / fvl.nn.load(path): architecture + weights in one .npz
require("fvl.model_io").install(nn)
--- @doc fvl.nn.load(path) -> model, meta
--- Rebuilds a model saved by fvl.nn.save without running its constructors: each module is made as an
--- instance of its class (built-in or the user's, found by name among the fvl.nn.class classes, so
--- the user's module must be loaded first), with its fields, tensors and children. Errors: a file
--- that is not an fvl.nn model; an unknown class; a missing array.
--- @doc fvl.nn.save(path, model [, opts]) -> true | nil, message
--- A whole model, architecture and weights, in one .npz file (numpy.load reads it): every parameter,
--- buffer and tensor field under its path ("1.weight"), plus the module tree with each module's class
--- and plain fields as JSON. opts.meta: a table of plain values stored beside it (input size,
--- embedding size, ...). Written atomically. Errors: a model that is not a module; fields holding
--- functions or modules that are not children.

require("fvl.backbones")(nn)   -- fvl.nn.iresnet, fvl.nn.mobilefacenet, fold_batchnorm, flops
return nn
