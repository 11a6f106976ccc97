-- fvl.model_io — a whole model (architecture + weights) in one .npz file: fvl.nn.save / fvl.nn.load.
--
--   fvl.nn.save("emb.npz", net, {meta = {input = {3, 112, 112}, embedding = 512}})
--   local net, meta = fvl.nn.load("emb.npz")        -- no need to rebuild the network by hand
--
-- The file is an ordinary .npz (numpy.load reads it): one float32/int32 array per parameter,
-- buffer or tensor field, named by its path ("1.weight", "body.3.running_mean"), plus
-- "__model__": the UTF-8 bytes (as int32) of a JSON description of the module tree — for each
-- module its class name, its plain fields (numbers, strings, booleans, tables of them), the
-- names of its parameters, buffers and tensor fields, and its children in order. Loading makes
-- each module as an empty instance of its class (found by name among the classes made with
-- fvl.nn.class, built-in or the user's), restores the fields, tensors and children, so the
-- constructor never runs again and any architecture built from fvl.nn modules round-trips.
local fvl = require "fvl.core"
local util = require "fvl.util"
local json = require "fvl.json"

local M = {}
local fail = function(msg) error(msg, 0) end
local FORMAT = "fvl.nn model"

local function is_module(nn, v) return type(v) == "table" and util.isinstance(v, nn.Module) end

local function plain(v, path, fn)
  local t = type(v)
  if t == "number" then
    if v ~= v or v == math.huge or v == -math.huge then return { nonfinite = tostring(v) } end
    return v
  end
  if t == "string" or t == "boolean" then return v end
  if t == "table" and getmetatable(v) == nil then
    local out = {}
    for k, x in pairs(v) do
      if type(k) ~= "string" and math.type(k) ~= "integer" then
        fail(string.format("%s: field %s has a key of type %s", fn, path, type(k)))
      end
      out[k] = plain(x, path .. "." .. tostring(k), fn)
    end
    return out
  end
  fail(string.format("%s: field %s is a %s, which a saved model cannot hold (keep numbers, "
                     .. "strings, booleans, tables of them, tensors and child modules in modules)",
                     fn, path, util.is_tensor(v) and "tensor inside a table" or t))
end

local function unplain(v)
  if type(v) == "table" then
    if v.nonfinite then
      return v.nonfinite == "nan" and 0 / 0 or v.nonfinite == "inf" and math.huge or -math.huge
    end
    local out = {}
    for k, x in pairs(v) do out[k] = unplain(x) end
    return out
  end
  return v
end

local function describe(nn, m, prefix, tensors, seen, fn)
  if seen[m] then fail(string.format("%s: module %s appears twice in the tree (shared modules are not supported)", fn, prefix)) end
  seen[m] = true
  local node = { class = m.class_name, params = json.array{}, buffers = json.array{},
                 tensors = json.array{}, frozen = json.array{}, children = json.array{},
                 fields = json.object{} }
  if not nn._classes[m.class_name] then
    fail(string.format("%s: module %s has class '%s', which was not made with fvl.nn.class", fn,
                       prefix ~= "" and prefix or "(root)", tostring(m.class_name)))
  end
  local skip = { _params = true, _buffers = true, _children = true }
  local function key(name) return prefix == "" and name or prefix .. "." .. name end
  for _, name in ipairs(m._params) do
    skip[name] = true
    if m[name] ~= nil then
      node.params[#node.params + 1] = name
      tensors[key(name)] = m[name]
      if not m[name].needs_grad then node.frozen[#node.frozen + 1] = name end
    end
  end
  for _, name in ipairs(m._buffers) do
    skip[name] = true
    if m[name] ~= nil then node.buffers[#node.buffers + 1] = name; tensors[key(name)] = m[name] end
  end
  for _, c in ipairs(m:children()) do
    skip[c[1]] = true
    node.children[#node.children + 1] = { name = c[1], module = describe(nn, c[2], key(c[1]), tensors, seen, fn) }
  end
  for k, v in pairs(m) do
    if not skip[k] then
      if type(k) ~= "string" then fail(string.format("%s: module %s has a field with a %s key", fn, prefix, type(k))) end
      if util.is_tensor(v) then
        node.tensors[#node.tensors + 1] = k
        tensors[key("@" .. k)] = v
      elseif is_module(nn, v) then
        fail(string.format("%s: field %s of module %s holds a module that is not a child (use add_module)", fn, k, prefix))
      elseif type(v) ~= "function" or rawget(getmetatable(m), k) ~= v then
        node.fields[k] = plain(v, (prefix ~= "" and prefix .. "." or "") .. k, fn)
      end
    end
  end
  return node
end

function M.save(nn, path, model, opts)
  local fn = "nn.save"
  if type(path) ~= "string" then fail(fn .. ": path must be a file name, got " .. type(path)) end
  if not is_module(nn, model) then fail(fn .. ": model must be an fvl.nn module, got " .. type(model)) end
  opts = util.check_opts(fn, opts, { "meta" })
  local tensors = {}
  local root = describe(nn, model, "", tensors, {}, fn)
  local doc = json.encode({ format = FORMAT, version = 1, root = root,
                            meta = opts.meta ~= nil and plain(opts.meta, "meta", fn) or json.object{} })
  local bytes = {}
  for i = 1, #doc do bytes[i] = doc:byte(i) end
  local names, ts = { "__model__" }, { fvl.tensor(bytes, "int32") }
  local keys = {}
  for k in pairs(tensors) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do
    names[#names + 1] = k
    ts[#ts + 1] = tensors[k]:detach():contiguous()
  end
  return fvl._npz_write(path, names, ts)
end

local function build(nn, node, prefix, arrays, fn)
  local cls = nn._classes[node.class]
  if not cls then
    fail(string.format("%s: the model uses class '%s' (module %s), which is not defined here; "
                       .. "define it with fvl.nn.class(\"%s\") (load its module) before loading",
                       fn, tostring(node.class), prefix ~= "" and prefix or "(root)", tostring(node.class)))
  end
  local m = nn.Module.new(cls)
  local function key(name) return prefix == "" and name or prefix .. "." .. name end
  local function tensor(name)
    local t = arrays[key(name)]
    if not t then fail(string.format("%s: the file has no array '%s'", fn, key(name))) end
    return t
  end
  for k, v in pairs(node.fields or {}) do m[k] = unplain(v) end
  local frozen = {}
  for _, n in ipairs(node.frozen or {}) do frozen[n] = true end
  for _, n in ipairs(node.params or {}) do
    local t = m:register_parameter(n, tensor(n))
    if frozen[n] then t:requires_grad(false) end
  end
  for _, n in ipairs(node.buffers or {}) do m:register_buffer(n, tensor(n)) end
  for _, n in ipairs(node.tensors or {}) do m[n] = tensor("@" .. n) end
  for _, c in ipairs(node.children or {}) do
    m:add_module(c.name, build(nn, c.module, key(c.name), arrays, fn))
  end
  return m
end

function M.load(nn, path)
  local fn = "nn.load"
  if type(path) ~= "string" then fail(fn .. ": path must be a file name, got " .. type(path)) end
  local arrays, err = fvl._npz_read(path)
  if not arrays then return nil, err end
  local doc = arrays.__model__
  if not doc then return nil, string.format("%s: '%s' is an .npz without '__model__': not a model saved by fvl.nn.save", fn, path) end
  local codes = doc:totable()
  local chars = {}
  for i, c in ipairs(codes) do
    if c < 0 or c > 255 then return nil, string.format("%s: '%s': __model__ is not text", fn, path) end
    chars[i] = string.char(math.tointeger(c) or 0)
  end
  local desc, jerr = json.decode(table.concat(chars))
  if not desc then return nil, string.format("%s: '%s': __model__ is not valid JSON: %s", fn, path, jerr) end
  if desc.format ~= FORMAT or desc.version ~= 1 then
    return nil, string.format("%s: '%s' holds format %s version %s, expected '%s' version 1", fn, path,
                              tostring(desc.format), tostring(desc.version), FORMAT)
  end
  local ok, model = pcall(build, nn, desc.root, "", arrays, fn)
  if not ok then return nil, tostring(model) end
  return model, unplain(desc.meta or {})
end

function M.install(nn)
  nn.save = function(path, model, opts) return M.save(nn, path, model, opts) end
  nn.load = function(path) return M.load(nn, path) end
  return nn
end

return M
