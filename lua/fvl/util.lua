-- fvl.util — small helpers shared by the Lua library: option checking, argument checks with
-- messages that name the function, a tiny class helper, and a JSON decoder front-end.
--
--   util.check_opts(fn, opts, allowed)        unknown keys are an error:
--       "arcface: unknown option 'margn' (expected one of: s, m, ...)"
--   util.enum(fn, key, v, names, default)     "arcface: fallback = 'foo' (expected mm|none|clamp)"
--   util.number(fn, key, v, default, lo, hi)  a number option, optionally range-checked
--   util.boolean(fn, key, v, default)
--   util.is_tensor(v)  util.shape_str(t)  util.class(name, parent)
--   util.json_decode(s)                        (fvl.json when present, else a small decoder)
local fvl = require "fvl.core"
local util = {}

local function fail(msg) error(msg, 0) end
util.fail = fail

-- option tables -------------------------------------------------------------------------------
-- allowed: a list of names (order is kept in the message) or a set {name=true}
function util.check_opts(fn, opts, allowed)
  if opts == nil then return {} end
  if type(opts) ~= "table" then
    fail(string.format("%s: options must be a table, got %s", fn, type(opts)))
  end
  local set, list = {}, {}
  if #allowed > 0 then
    for _, k in ipairs(allowed) do set[k] = true; list[#list + 1] = k end
  else
    for k in pairs(allowed) do set[k] = true; list[#list + 1] = k end
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

function util.enum(fn, key, v, names, default)
  if v == nil then v = default end
  for _, n in ipairs(names) do if v == n then return v end end
  fail(string.format("%s: %s = %s (expected %s)", fn, key,
                     type(v) == "string" and ("'" .. v .. "'") or tostring(v), table.concat(names, "|")))
end

function util.number(fn, key, v, default, lo, hi)
  if v == nil then v = default end
  if type(v) ~= "number" or v ~= v then
    fail(string.format("%s: %s must be a number, got %s", fn, key,
                       type(v) == "number" and "nan" or type(v)))
  end
  if (lo and v < lo) or (hi and v > hi) then
    fail(string.format("%s: %s = %g is outside %s..%s", fn, key, v, lo and string.format("%g", lo) or "-inf",
                       hi and string.format("%g", hi) or "inf"))
  end
  return v
end

function util.integer(fn, key, v, default, lo)
  v = util.number(fn, key, v, default, lo)
  if math.type(v) ~= "integer" and v ~= math.floor(v) then
    fail(string.format("%s: %s = %g (expected an integer)", fn, key, v))
  end
  return math.tointeger(v)
end

function util.boolean(fn, key, v, default)
  if v == nil then v = default end
  if type(v) ~= "boolean" then
    fail(string.format("%s: %s must be true or false, got %s", fn, key, type(v)))
  end
  return v
end

-- tensors -------------------------------------------------------------------------------------
function util.is_tensor(v)
  if type(v) ~= "userdata" then return false end
  local mt = getmetatable(v)
  return type(mt) == "table" and mt.__name == "fvl.Tensor"
end

function util.shape_str(t)
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
-- util.class(name [, parent]) -> class table. Instances are plain tables with the class as
-- metatable, so fields (head.m, head.t, ...) are ordinary, readable and writable. Calling an
-- instance calls its :forward(...). Metamethods are copied from the parent (Lua looks them up
-- with rawget).
function util.class(name, parent)
  local cls = {}
  cls.__index = cls
  cls.__name = name
  cls.__call = function(self, ...) return self:forward(...) end
  cls.__tostring = function(self)
    if self.describe then return self:describe() end
    return name
  end
  if parent then
    setmetatable(cls, { __index = parent })
    cls.super = parent
  end
  cls.class_name = name
  return cls
end

function util.isinstance(o, cls)
  local mt = getmetatable(o)
  while mt do
    if mt == cls then return true end
    mt = rawget(mt, "super")
  end
  return false
end

-- JSON ----------------------------------------------------------------------------------------
-- Prefer fvl.json (full encoder/decoder); keep a minimal decoder for environments without it.
local function mini_decode(s)
  local pos = 1
  local function ws() pos = s:find("[^ \t\r\n]", pos) or #s + 1 end
  local function err(what) fail(string.format("json_decode: %s at byte %d", what, pos)) end
  local value
  local function str()
    local out, i = {}, pos + 1
    while true do
      local j = s:find('["\\]', i)
      if not j then err("unterminated string") end
      out[#out + 1] = s:sub(i, j - 1)
      if s:sub(j, j) == '"' then pos = j + 1; break end
      local e = s:sub(j + 1, j + 1)
      local map = { b = "\b", f = "\f", n = "\n", r = "\r", t = "\t", ['"'] = '"', ["\\"] = "\\", ["/"] = "/" }
      if e == "u" then
        out[#out + 1] = utf8.char(tonumber(s:sub(j + 2, j + 5), 16)); i = j + 6
      elseif map[e] then
        out[#out + 1] = map[e]; i = j + 2
      else
        err("bad escape")
      end
    end
    return table.concat(out)
  end
  function value()
    ws()
    local ch = s:sub(pos, pos)
    if ch == "{" then
      local t = {}
      pos = pos + 1; ws()
      if s:sub(pos, pos) == "}" then pos = pos + 1; return t end
      while true do
        ws()
        if s:sub(pos, pos) ~= '"' then err("expected a key") end
        local k = str(); ws()
        if s:sub(pos, pos) ~= ":" then err("expected ':'") end
        pos = pos + 1
        t[k] = value(); ws()
        local c = s:sub(pos, pos); pos = pos + 1
        if c == "}" then return t elseif c ~= "," then err("expected ',' or '}'") end
      end
    elseif ch == "[" then
      local t, n = {}, 0
      pos = pos + 1; ws()
      if s:sub(pos, pos) == "]" then pos = pos + 1; return t end
      while true do
        n = n + 1; t[n] = value(); ws()
        local c = s:sub(pos, pos); pos = pos + 1
        if c == "]" then return t elseif c ~= "," then err("expected ',' or ']'") end
      end
    elseif ch == '"' then
      return str()
    elseif s:find("^true", pos) then pos = pos + 4; return true
    elseif s:find("^false", pos) then pos = pos + 5; return false
    elseif s:find("^null", pos) then pos = pos + 4; return nil
    elseif s:find("^NaN", pos) then pos = pos + 3; return 0 / 0
    elseif s:find("^Infinity", pos) then pos = pos + 8; return math.huge
    elseif s:find("^%-Infinity", pos) then pos = pos + 9; return -math.huge
    else
      local a, b = s:find("^-?%d+%.?%d*[eE]?[-+]?%d*", pos)
      if not a then err("unexpected character '" .. ch .. "'") end
      pos = b + 1
      return tonumber(s:sub(a, b))
    end
  end
  local v = value(); ws()
  if pos <= #s then err("trailing text") end
  return v
end

function util.json_decode(s)
  local ok, json = pcall(require, "fvl.json")
  if ok and type(json) == "table" and json.decode then
    local v, msg = json.decode(s)
    if v == nil and msg then fail("json_decode: " .. msg) end
    return v
  end
  return mini_decode(s)
end
util._mini_json_decode = mini_decode

-- the 1-, 5- and 15-minute load averages as one string ("?" where /proc/loadavg is missing);
-- benchmarks print it next to their timings
function util.loadavg()
  local f = io.open("/proc/loadavg")
  if not f then return "?" end
  local s = f:read("l") or ""
  f:close()
  return s:match("^(%S+ %S+ %S+)") or "?"
end

function util.read_file(path)
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
