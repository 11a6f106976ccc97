-- fvl.util — small helpers shared by the Lua library: option checking, argument checks with
-- messages that name the function, a tiny class helper, and a JSON decoder front-end.
--
--   util.check_opts(fn, opts, allowed)        unknown keys are an error:
--       "arcface: unknown option 'margn' (expected one of: s, m, ...)"
--   util.enum(fn, key, v, names, default)     "arcface: fallback = 'foo' (expected mm|none|clamp)"
--   util.number(fn, key, v, default, lo, hi)  a number option, optionally range-checked
--   util.boolean(fn, key, v, default)
--   util.is_tensor(v)  util.shape_str(t)  util.class(name, parent)
--   util.json_decode(s)                        (fvl.json.decode, raising on malformed text)
local fvl = require "fvl.core"
local util = {}

local function fail(msg) error(msg, 0) end
util.fail = fail
--- @doc fvl.util.fail(message)
--- Raises message as an error without a position prefix (level 0): the library's user-facing errors
--- ("arcface: m = -1 is outside 0..").

-- option tables -------------------------------------------------------------------------------
-- allowed: a list of names (order is kept in the message) or a set {name=true}
function util.check_opts(fn, opts, allowed)
  if type(allowed) ~= "table" then
    fail(string.format("fvl.util.check_opts: allowed must be a list of option names, got %s", type(allowed)))
  end
  if opts == nil then return {} end
  if type(opts) ~= "table" then
    fail(string.format("%s: options must be a table, got %s", fn, type(opts)))
  end
  local set, list = {}, {}
  if #allowed > 0 then
    for _, k in ipairs(allowed) do set[k] = true; list[#list + 1] = tostring(k) end
  else
    for k in pairs(allowed) do set[k] = true; list[#list + 1] = tostring(k) end
    table.sort(list)
  end
  for k in pairs(opts) do
    if type(k) ~= "string" then
      fail(string.format("%s: option keys must be names, got %s %s", fn, type(k), tostring(k)))
    end
    if not set[k] then
      fail(string.format("%s: unknown option '%s' (expected one of: %s)", fn, k,
                         table.concat(list, ", ")))
    end
  end
  return opts
end

-- While util._recording is a table (fvl.loss.base.recorded: a head's constructor runs), the checks
-- below note their rule by key, so that a value set on the head later is checked by the same rule.
local function record(kind, key, v, a, b)
  local r = util._recording
  if r then r[key] = { kind = kind, key = key, last = v, a = a, b = b } end
  return v
end

-- fvl.util.enum(fn, key, v, names, default) -> v: an option that must be one of names (nil: default).
-- Errors: "arcface: fallback = 'foo' (expected mm|none|clamp)".
function util.enum(fn, key, v, names, default)
  if type(names) ~= "table" then fail("fvl.util.enum: names must be a list of strings, got " .. util.typename(names)) end
  if v == nil then v = default end
  for _, n in ipairs(names) do if v == n then return record("enum", key, v, names) end end
  local shown = {}
  for i, n in ipairs(names) do shown[i] = tostring(n) end
  fail(string.format("%s: %s = %s (expected %s)", fn, key,
                     type(v) == "string" and ("'" .. v .. "'") or tostring(v), table.concat(shown, "|")))
end

-- fvl.util.number(fn, key, v, default [, lo [, hi]]) -> number: a number option (nil: default),
-- checked against lo..hi. Errors: not a number, NaN, out of range (named by fn and key).
function util.number(fn, key, v, default, lo, hi)
  if (lo ~= nil and type(lo) ~= "number") or (hi ~= nil and type(hi) ~= "number") then
    fail(string.format("fvl.util.number: lo and hi must be numbers or nil, got %s and %s", type(lo), type(hi)))
  end
  if v == nil then v = default end
  if type(v) ~= "number" or v ~= v then
    fail(string.format("%s: %s must be a number, got %s", fn, key,
                       type(v) == "number" and "nan" or type(v)))
  end
  if (lo and v < lo) or (hi and v > hi) then
    fail(string.format("%s: %s = %g is outside %s..%s", fn, key, v, lo and string.format("%g", lo) or "-inf",
                       hi and string.format("%g", hi) or "inf"))
  end
  return record("number", key, v, lo, hi)
end

-- fvl.util.integer(fn, key, v, default [, lo]) -> integer: as fvl.util.number, and a whole number.
function util.integer(fn, key, v, default, lo)
  v = util.number(fn, key, v, default, lo)
  local i = math.tointeger(v)   -- nil for a fraction, and for inf or 1e300 (beyond the integers)
  if not i then fail(string.format("%s: %s = %g (expected an integer)", fn, key, v)) end
  return record("integer", key, i, lo)
end

-- fvl.util.boolean(fn, key, v, default) -> boolean: a true/false option (nil: default).
-- Errors: anything else.
function util.boolean(fn, key, v, default)
  if v == nil then v = default end
  if type(v) ~= "boolean" then
    fail(string.format("%s: %s must be true or false, got %s", fn, key, type(v)))
  end
  return record("boolean", key, v)
end

-- tensors -------------------------------------------------------------------------------------

-- fvl.util.is_tensor(v) -> boolean: whether v is an fvl tensor
function util.is_tensor(v)
  if type(v) ~= "userdata" then return false end
  local mt = getmetatable(v)
  return type(mt) == "table" and mt.__name == "fvl.Tensor"
end

-- fvl.util.shape_str(t) -> string: a tensor's shape as messages print it ("256×512", "scalar").
function util.shape_str(t)
  if not util.is_tensor(t) then fail("fvl.util.shape_str: t must be a tensor, got " .. util.typename(t)) end
  local s = t:shape()
  if #s == 0 then return "scalar" end
  local parts = {}
  for i, n in ipairs(s) do parts[i] = tostring(math.tointeger(n) or n) end
  return table.concat(parts, "×")
end

-- a tensor argument of a given rank/dtype/shape (nil entries in `shape` are free)
function util.check_tensor(fn, key, v, dtype, shape)
  if not util.is_tensor(v) then
    fail(string.format("%s: %s must be a tensor, got %s", fn, key, type(v)))
  end
  if dtype and v:dtype() ~= dtype then
    fail(string.format("%s: %s must be a %s tensor, got %s", fn, key, dtype, v:dtype()))
  end
  if shape then
    local s = v:shape()
    local ok = #s == #shape
    for i = 1, #shape do if ok and shape[i] and s[i] ~= shape[i] then ok = false end end
    if not ok then
      local want = {}
      for i = 1, #shape do want[i] = shape[i] and tostring(shape[i]) or "?" end
      fail(string.format("%s: %s is %s, expected %s", fn, key, util.shape_str(v),
                         table.concat(want, "×")))
    end
  end
  return v
end

-- classes -------------------------------------------------------------------------------------
-- fvl.util.class(name [, parent]) -> class: a class table. Instances are plain tables with the
-- class as metatable, so fields (head.m, head.t, ...) are ordinary, readable and writable. Calling an
-- instance calls its :forward(...), or the parent's __call where the parent has one (Lua looks
-- metamethods up with rawget, so the class keeps its own copy; set before the subclass is made).
function util.class(name, parent)
  if type(name) ~= "string" then fail("fvl.util.class: name must be a string, got " .. util.typename(name)) end
  if parent ~= nil and type(parent) ~= "table" then
    fail("fvl.util.class: parent must be a class, got " .. util.typename(parent))
  end
  util._seal_classes()   -- the classes made before this one (a user's class made after the library loaded)
  local cls = {}
  cls.__index = cls
  cls.__name = name
  cls.__call = parent and rawget(parent, "__call") or function(self, ...) return self:forward(...) end
  cls.__tostring = function(self)
    if self.describe then return self:describe() end
    return name
  end
  if parent then
    setmetatable(cls, { __index = parent })
    cls.super = parent
  end
  cls.class_name = name
  return util.register_class(cls, name)
end

-- Methods check their `self` (a Torch7/PyTorch user writes net.size() for net:size()): every
-- method of a registered class (a function whose first parameter is named self, and the
-- __call/__tostring/__len metamethods) is replaced by a wrapper that raises
--   "Linear:forward: self must be a Linear, got fvl.Tensor (call it with ':', as obj:forward(...))"
-- before the method runs, when self is not an instance of the class (or of a subclass; the class
-- table itself is none: Module.parameters(Linear) is refused too). The wrapping is done after each module of the library loads (fvl/init.lua) and
-- when a class is made: util._seal_classes().
local classes = setmetatable({}, { __mode = "k" })   -- class table -> its name
local wrappers = setmetatable({}, { __mode = "k" })  -- the wrappers made (never wrapped again)

-- fvl.util.register_class(cls [, name]) -> cls: makes a class table written by hand (cls.__index =
-- cls; instances setmetatable({...}, cls)) check the self of its methods as util.class's do; name
-- defaults to cls.__name.
function util.register_class(cls, name)
  if type(cls) ~= "table" or rawget(cls, "__index") ~= cls then
    fail("fvl.util.register_class: cls must be a class table (cls.__index == cls), got " .. util.typename(cls))
  end
  name = name or rawget(cls, "__name") or "object"
  if type(name) ~= "string" then fail("fvl.util.register_class: name must be a string, got " .. util.typename(name)) end
  classes[cls] = name
  return cls
end

-- fvl.util.typename(v) -> string: what a value is, for messages: its class or type name
-- ("fvl.Tensor", "Linear", "nil", "number").
function util.typename(v)
  local mt = getmetatable(v)
  if type(mt) == "table" then
    local n = classes[mt] or rawget(mt, "__name")
    if type(n) == "string" then return n end
  end
  if type(v) == "table" and classes[v] then return "class " .. classes[v] end
  return type(v)
end

-- o's class chain: its metatable, then each class's parent — `super` (util.class) or, for
-- inheritance written by hand (Sub = setmetatable({}, {__index = Base}); Sub.__index = Sub, the
-- plain Lua idiom), the __index of the class's own metatable
local function is_a(o, cls)
  if type(o) ~= "table" then return false end
  local c = getmetatable(o)   -- an instance (a class table itself is not one: its methods need fields)
  for _ = 1, 100 do           -- (a chain that loops is not a class chain)
    if type(c) ~= "table" then return false end
    if c == cls then return true end
    local up = rawget(c, "super")
    if up == nil then
      local mt = getmetatable(c)
      up = type(mt) == "table" and rawget(mt, "__index") or nil
    end
    c = up
  end
  return false
end

local getmetatable = getmetatable
local function bad_self(cls, key, self)
  local n = classes[cls]
  fail(string.format("%s:%s: self must be a %s, got %s (call it with ':', as obj:%s(...))",
                     n, key, n, util.typename(self), key))
end

-- (wrappers of a fixed arity where the method has one: a vararg call costs ~10x a plain one)
local function method_wrapper(cls, key, f)
  local info = debug.getinfo(f, "u")
  local np = not info.isvararg and info.nparams or 0
  local w
  if np == 1 then
    w = function(self) if getmetatable(self) ~= cls and not is_a(self, cls) then bad_self(cls, key, self) end return f(self) end
  elseif np == 2 then
    w = function(self, a) if getmetatable(self) ~= cls and not is_a(self, cls) then bad_self(cls, key, self) end return f(self, a) end
  elseif np == 3 then
    w = function(self, a, b) if getmetatable(self) ~= cls and not is_a(self, cls) then bad_self(cls, key, self) end return f(self, a, b) end
  elseif np == 4 then
    w = function(self, a, b, c)
      if getmetatable(self) ~= cls and not is_a(self, cls) then bad_self(cls, key, self) end
      return f(self, a, b, c)
    end
  else
    w = function(self, ...) if getmetatable(self) ~= cls and not is_a(self, cls) then bad_self(cls, key, self) end return f(self, ...) end
  end
  wrappers[w] = true
  return w
end

function util._seal_classes()
  for cls in pairs(classes) do
    for k, f in pairs(cls) do
      if type(f) == "function" and type(k) == "string" and not wrappers[f]
         and (k:sub(1, 2) ~= "__" or k == "__call" or k == "__tostring" or k == "__len")
         and debug.getlocal(f, 1) == "self" then
        rawset(cls, k, method_wrapper(cls, k, f))
      end
    end
  end
end

-- fvl.util.isinstance(o, cls) -> boolean: whether o is an instance of cls or of a subclass
-- (fvl.util.class / fvl.nn.class classes).
function util.isinstance(o, cls)
  local mt = getmetatable(o)
  while mt do
    if mt == cls then return true end
    mt = rawget(mt, "super")
  end
  return false
end

-- JSON ----------------------------------------------------------------------------------------
-- fvl.json is embedded in every build: one decoder
function util.json_decode(s)
  if type(s) ~= "string" then fail("json_decode: s must be a string, got " .. util.typename(s)) end
  local v, msg = require("fvl.json").decode(s)
  if v == nil and msg then fail("json_decode: " .. msg) end
  return v
end

-- the 1-, 5- and 15-minute load averages as one string ("?" where /proc/loadavg is missing);
-- benchmarks print it next to their timings
function util.loadavg()
  local f = io.open("/proc/loadavg")
  if not f then return "?" end
  local s = f:read("l") or ""
  f:close()
  return s:match("^(%S+ %S+ %S+)") or "?"
end

-- the interpreter and its options as this script was started (`fvl`, or `lua5.4 -l fvl`), quoted
-- for a shell, as a string: benchmarks start their child processes with it
function util.interpreter()
  if not arg then return "fvl" end
  local lo = 0
  while arg[lo - 1] do lo = lo - 1 end
  local parts = {}
  for i = lo, -1 do parts[#parts + 1] = string.format("%q", arg[i]) end
  return #parts > 0 and table.concat(parts, " ") or "fvl"
end

-- this process's peak resident memory (VmHWM) in MB, 0 where /proc/self/status is missing;
-- benchmarks print it beside the engine's own peak
function util.vmhwm_mb()
  local f = io.open("/proc/self/status")
  if not f then return 0 end
  local s = f:read("a")
  f:close()
  return (tonumber(s:match("VmHWM:%s*(%d+)")) or 0) / 1024
end

-- fvl.util.read_file(path) -> string | nil, message: the whole file's bytes.
function util.read_file(path)
  if type(path) ~= "string" then fail("fvl.util.read_file: path must be a string, got " .. util.typename(path)) end
  local fh, msg = io.open(path, "rb")
  if not fh then return nil, msg end
  local s = fh:read("a")
  fh:close()
  return s
end

-- row-sparse gradients (Partial FC): row_grads[param] = {rows = int32 1-based rows, param = the
-- sampled rows as their own leaf (its .grad after backward)}; the optimisers step those rows only
util.row_grads = setmetatable({}, { __mode = "k" })

util.fvl = fvl
return util
