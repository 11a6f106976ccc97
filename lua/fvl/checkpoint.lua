-- fvl.checkpoint — versioned, code-free training checkpoints.
--
--   fvl.save_checkpoint(path, {net=, head=, opt=, step=, sched=, extra=}) -> path
--   fvl.load_checkpoint(path [, {net=, head=, opt=, rng=true}]) -> ck | nil, message
--
-- Format (version 1): `path` is a directory holding
--   checkpoint.json       the header: format, version, step, RNG state, and for every tensor
--                         its .npy file, shape and dtype; plain values inline
--   g<gen>/*.npy          the tensors, one NumPy .npy file each (numpy.load reads them)
-- Nothing in it is code (no Lua bytecode). Saving writes a new generation directory (every
-- .npy written atomically with fsync by fvl.save), then replaces checkpoint.json atomically
-- (temporary file, fsync, rename) and only then removes the previous generation: a crash at
-- any moment leaves a complete checkpoint.
--
-- What is saved:
--   net    every parameter and buffer of net:state() (BatchNorm running statistics included)
--   head   its tensors (weight, bias, xi, centers) and its number fields (t, iter, m, s, ...), except
--          the fields of head.transient_fields (a set: diagnostics such as ElasticFace's last_margins)
--   opt    opt.kind, its hyper-parameters and opt.state (momentum buffers, moments, steps)
--   step, the engine RNG state (fvl.rng_state()), extra (any JSON-able table; tensors allowed)
--   sched  a schedule's plain fields (kind, from, to, steps, ...) for the record: schedules are
--          functions of the step, so resuming only needs `step`
-- load_checkpoint returns ck = {step=, rng=, net = {name = tensor}, head = {tensors = {...},
-- scalars = {...}}, opt = {kind=, hyper=, state=}, sched=, extra=, version=, path=}; given
-- objects are restored in place: net:load_state(ck.net), the head's tensors and state numbers
-- (t, iter), opt.state (and the RNG unless rng=false).
local fvl = require "fvl.core"
local util = require "fvl.util"
local json = require "fvl.json"
local fail = util.fail

local M = {}
M.FORMAT = "fvl-checkpoint"
M.VERSION = 1
local HEADER = "checkpoint.json"

-- head fields restored on load (the rest of its numbers are configuration, saved for the record)
local HEAD_STATE = { "t", "iter" }

local function file_exists(p)
  local f = io.open(p, "rb")
  if f then f:close() return true end
  return false
end
local function read_all(p)
  local f, err = io.open(p, "rb")
  if not f then return nil, err end
  local s = f:read("a")
  f:close()
  return s
end
local function safe(name) return (tostring(name):gsub("[^%w%._%-]", "_")) end

-- ------------------------------------------------------------------ generic flattening
-- walks a plain table; tensors become {tensor = key} entries written as .npy, other leaves
-- (numbers, strings, booleans) are kept with their path (keys keep their Lua type)
local function flatten(root, prefix, blobs, what)
  local entries = {}
  local seen = {}
  local function walk(v, path)
    if util.is_tensor(v) then
      local key = prefix .. "." .. table.concat((function()
        local t = {}
        for i, k in ipairs(path) do t[i] = tostring(k) end
        return t
      end)(), ".")
      blobs[#blobs + 1] = { key = key, tensor = v }
      entries[#entries + 1] = { path = path, tensor = key }
    elseif type(v) == "table" then
      if seen[v] then fail(string.format("save_checkpoint: %s contains itself", what)) end
      seen[v] = true
      local keys = {}
      for k in pairs(v) do
        if type(k) ~= "string" and math.type(k) ~= "integer" then
          fail(string.format("save_checkpoint: %s has a key of type %s", what, type(k)))
        end
        keys[#keys + 1] = k
      end
      if #keys == 0 then entries[#entries + 1] = { path = path, empty = true } end
      for _, k in ipairs(keys) do
        local p = { table.unpack(path) }
        p[#p + 1] = k
        walk(v[k], p)
      end
      seen[v] = nil
    elseif type(v) == "number" then
      if v ~= v or v == math.huge or v == -math.huge then
        entries[#entries + 1] = { path = path, nonfinite = tostring(v) }
      else
        entries[#entries + 1] = { path = path, value = v }
      end
    elseif type(v) == "string" or type(v) == "boolean" then
      entries[#entries + 1] = { path = path, value = v }
    elseif v ~= nil then
      fail(string.format("save_checkpoint: %s.%s is a %s (only tensors, numbers, strings, booleans and tables are saved)",
                         what, table.concat((function()
                           local t = {}
                           for i, k in ipairs(path) do t[i] = tostring(k) end
                           return t
                         end)(), "."), type(v)))
    end
  end
  walk(root, {})
  return entries
end

local function unflatten(entries, tensors)
  local root = {}
  for _, e in ipairs(entries) do
    local v
    if e.tensor then v = tensors[e.tensor]
    elseif e.empty then v = {}
    elseif e.nonfinite then v = tonumber(e.nonfinite) or (e.nonfinite:find("-") and -math.huge or
                                                           (e.nonfinite:find("inf") and math.huge or 0 / 0))
    else v = e.value end
    if #e.path == 0 then return v end
    local t = root
    for i = 1, #e.path - 1 do
      local k = e.path[i]
      if t[k] == nil then t[k] = {} end
      t = t[k]
    end
    t[e.path[#e.path]] = v
  end
  return root
end

-- ------------------------------------------------------------------ save
local save_keys = { "net", "head", "opt", "step", "sched", "extra" }

-- the header's parts: each returns its table and adds the tensors to blobs
local function net_part(fn, net, blobs)
  if type(net) ~= "table" or type(net.state) ~= "function" then
    fail(fn .. ": net must be an fvl.nn module (with :state())")
  end
  local names = {}
  for name, t in pairs(net:state()) do
    names[#names + 1] = name
    blobs[#blobs + 1] = { key = "net." .. name, tensor = t }
  end
  table.sort(names)
  return { names = names, describe = net.describe and net:describe() or nil }
end

local function head_part(fn, head, blobs)
  if type(head) ~= "table" then fail(fn .. ": head must be a loss head table, got " .. type(head)) end
  local h = { tensors = {}, scalars = {}, name = head.name }
  local transient = type(head.transient_fields) == "table" and head.transient_fields or {}
  for k, v in pairs(head) do
    if type(k) == "string" and not k:match("^_") and not transient[k] then
      if util.is_tensor(v) and v:dtype() == "float32" then
        h.tensors[#h.tensors + 1] = k
        blobs[#blobs + 1] = { key = "head." .. k, tensor = v }
      elseif type(v) == "number" and v == v and v ~= math.huge and v ~= -math.huge then
        h.scalars[k] = v
      end
    end
  end
  table.sort(h.tensors)
  return h
end

local function opt_part(fn, opt, blobs)
  if type(opt) ~= "table" or type(opt.state) ~= "table" then
    fail(fn .. ": opt must be an fvl.optim optimiser (with .state)")
  end
  return {
    kind = opt.kind, nparams = opt.params and #opt.params or nil,
    hyper = opt.hyper and opt:hyper() or nil,
    state = flatten(opt.state, "opt", blobs, "opt.state"),
  }
end

-- a schedule's plain fields, for the record
local function sched_part(sched)
  local s = {}
  if type(sched) == "table" then
    for k, v in pairs(sched) do
      if type(k) == "string" and (type(v) == "number" or type(v) == "string" or type(v) == "boolean") then
        s[k] = v
      end
    end
  else
    s.kind = type(sched)
  end
  return s
end

-- the blobs as .npy files in the generation directory gdir, listed in header.tensors
local function write_blobs(path, gdir, blobs, header)
  header.tensors = {}
  local used = {}
  for _, b in ipairs(blobs) do
    local file = gdir .. "/" .. safe(b.key) .. ".npy"
    if used[file] then file = gdir .. "/" .. safe(b.key) .. "_" .. #blobs .. "_" .. tostring(#header.tensors) .. ".npy" end
    used[file] = true
    local t = b.tensor
    if not t:is_contiguous() then t = t:contiguous() end
    fvl.save(path .. "/" .. file, t)
    header.tensors[b.key] = { file = file, shape = t:shape(), dtype = t:dtype() }
  end
  for _, e in pairs(header.tensors) do
    if #e.shape == 0 then e.shape = json.array {} end
  end
end

-- removes the previous generation (the files its header listed, then its directory)
local function remove_generation(path, old, gdir)
  if type(old) ~= "table" or type(old.tensors) ~= "table" then return end
  local dirs = {}
  for _, e in pairs(old.tensors) do
    if type(e) == "table" and type(e.file) == "string" and not e.file:find("..", 1, true)
       and e.file:sub(1, #gdir) ~= gdir then
      os.remove(path .. "/" .. e.file)
      dirs[e.file:match("^([^/]+)/") or ""] = true
    end
  end
  for d in pairs(dirs) do if d ~= "" and d ~= gdir then os.remove(path .. "/" .. d) end end
end

-- the one check of a checkpoint path (save, load, info)
local function check_path(fn, path)
  if type(path) ~= "string" or path == "" then fail(fn .. ": path must be a non-empty string, got " .. type(path)) end
end

-- fvl.save_checkpoint(path, what) -> path: a versioned, code-free training checkpoint in the
-- directory path: what = {net=, head=, opt=, step=, sched=, extra=} (all optional): the network's
-- parameters and buffers, the head's tensors and numbers, the optimiser's state, the step, the RNG
-- state and any JSON-able extra (tensors allowed), as .npy files and a checkpoint.json header.
-- Crash-safe: a new generation directory, then the header replaced atomically, then the old
-- generation removed. Errors: values that cannot be stored (functions, cycles).
function M.save_checkpoint(path, what)
  local fn = "save_checkpoint"
  check_path(fn, path)
  what = util.check_opts(fn, what, save_keys)
  local blobs, header = {}, {
    format = M.FORMAT, version = M.VERSION, fvl_version = fvl.version, time = os.time(),
    rng = fvl.rng_state(),
  }
  if what.step ~= nil then header.step = util.integer(fn, "step", what.step, nil, 0) end
  if what.net ~= nil then header.net = net_part(fn, what.net, blobs) end
  if what.head ~= nil then header.head = head_part(fn, what.head, blobs) end
  if what.opt ~= nil then header.opt = opt_part(fn, what.opt, blobs) end
  if what.sched ~= nil then header.sched = sched_part(what.sched) end
  if what.extra ~= nil then header.extra = flatten(what.extra, "extra", blobs, "extra") end

  -- write: new generation of blobs, then the header (commit point), then drop the old generation
  local old = nil
  local oldtext = read_all(path .. "/" .. HEADER)
  if oldtext then old = json.decode(oldtext) end
  fvl.sys.mkdirs(path)
  local gen = ((type(old) == "table" and math.type(old.gen) == "integer") and old.gen or 0) + 1
  local gdir = string.format("g%06d", gen)
  fvl.sys.mkdirs(path .. "/" .. gdir)
  header.gen = gen
  write_blobs(path, gdir, blobs, header)
  local ok, err = fvl.sys.write_atomic(path .. "/" .. HEADER, json.encode(header, { indent = 1 }))
  if not ok then fail(fn .. ": " .. tostring(err)) end
  remove_generation(path, old, gdir)
  return path
end

-- ------------------------------------------------------------------ load
local load_keys = { "net", "head", "opt", "rng", "strict" }

local function read_header(path)
  local text, err = read_all(path .. "/" .. HEADER)
  if not text then
    if file_exists(path) then
      return nil, string.format("load_checkpoint: %s is not a checkpoint directory (no %s)", path, HEADER)
    end
    return nil, string.format("load_checkpoint: cannot read %s/%s: %s", path, HEADER, tostring(err))
  end
  local h, jerr = json.decode(text)
  if type(h) ~= "table" then
    return nil, string.format("load_checkpoint: %s/%s is corrupt: %s", path, HEADER, tostring(jerr))
  end
  if h.format ~= M.FORMAT then
    return nil, string.format("load_checkpoint: %s/%s is not an fvl checkpoint (format = %s)", path, HEADER,
                              tostring(h.format))
  end
  if math.type(h.version) ~= "integer" or h.version < 1 or h.version > M.VERSION then
    return nil, string.format("load_checkpoint: %s has format version %s; this fvl reads up to %d (from 1)", path,
                              tostring(h.version), M.VERSION)
  end
  return h
end

-- the header's structure, checked before anything is read from it: a malformed header is
-- nil, message (never a Lua error from indexing a number)
local function is_list_of(v, kinds)
  if type(v) ~= "table" then return false end
  for i, x in pairs(v) do
    if math.type(i) ~= "integer" or i < 1 or i > #v or not kinds[type(x)] then return false end
  end
  return true
end
local KEY = { string = true, number = true }
local function check_entries(entries, where, tensors)
  if not is_list_of(entries, { table = true }) then return where .. " must be a list of entries" end
  for i, e in ipairs(entries) do
    local w = string.format("%s[%d]", where, i)
    if not is_list_of(e.path, KEY) then return w .. ".path must be a list of keys" end
    if e.tensor ~= nil and (type(e.tensor) ~= "string" or tensors[e.tensor] == nil) then
      return w .. ".tensor names no tensor of the header"
    end
    if e.nonfinite ~= nil and type(e.nonfinite) ~= "string" then return w .. ".nonfinite must be a string" end
  end
end
local function check_header(h)
  if h.tensors ~= nil and type(h.tensors) ~= "table" then return "tensors must be a table" end
  for key, e in pairs(h.tensors or {}) do
    if type(key) ~= "string" or type(e) ~= "table" or type(e.file) ~= "string" or e.file:find("..", 1, true) then
      return "bad entry for " .. tostring(key) .. " in tensors"
    end
    if not is_list_of(e.shape, { number = true }) then return "tensors." .. key .. ".shape must be a list of sizes" end
    if e.dtype ~= nil and e.dtype ~= "float32" and e.dtype ~= "int32" then
      return "tensors." .. key .. ".dtype = " .. tostring(e.dtype) .. " (expected float32 or int32)"
    end
  end
  if h.step ~= nil and math.type(h.step) ~= "integer" then return "step must be an integer" end
  if h.rng ~= nil then   -- fvl.set_rng_state's own check
    local ok, rerr = fvl._check_rng_state(h.rng)
    if not ok then return "rng: " .. rerr end
  end
  if h.net ~= nil and (type(h.net) ~= "table" or not is_list_of(h.net.names or {}, { string = true })) then
    return "net.names must be a list of names"
  end
  if h.head ~= nil and (type(h.head) ~= "table" or not is_list_of(h.head.tensors or {}, { string = true })
                        or (h.head.scalars ~= nil and type(h.head.scalars) ~= "table")) then
    return "head must hold a list of tensor names and a table of scalars"
  end
  if h.opt ~= nil then
    if type(h.opt) ~= "table" then return "opt must be a table" end
    local err = h.opt.state ~= nil and check_entries(h.opt.state, "opt.state", h.tensors or {})
    if err then return err end
  end
  if h.extra ~= nil then
    local err = check_entries(h.extra, "extra", h.tensors or {})
    if err then return err end
  end
end

-- the header's tensors, each checked against its entry: {key = tensor} | nil, message
local function load_tensors(fn, path, h)
  local tensors = {}
  for key, e in pairs(h.tensors or {}) do
    local ok, t, lerr = pcall(fvl.load, path .. "/" .. e.file)
    if not ok or t == nil then   -- keep the reason (truncated, bad header, missing file ...)
      return nil, string.format("%s: %s: cannot load %s (%s): %s", fn, path, key, e.file,
                                tostring(ok and lerr or t))
    end
    if not util.is_tensor(t) then
      return nil, string.format("%s: %s: %s is not a single array", fn, path, e.file)
    end
    if e.dtype ~= nil and t:dtype() ~= e.dtype then
      return nil, string.format("%s: %s: %s holds %s but the header says %s", fn, path, e.file, t:dtype(), e.dtype)
    end
    local want = table.concat(e.shape or {}, "x")
    if table.concat(t:shape(), "x") ~= want then
      return nil, string.format("%s: %s: %s is %s on disk but the header says %s", fn, path, e.file,
                                table.concat(t:shape(), "x"), want)
    end
    tensors[key] = t
  end
  return tensors
end

-- the ck table of load_checkpoint from a checked header and its tensors
local function assemble(path, h, tensors)
  local ck = { path = path, version = h.version, step = h.step, rng = h.rng, sched = h.sched,
               fvl_version = h.fvl_version, time = h.time }
  if h.net then
    ck.net = {}
    for _, name in ipairs(h.net.names or {}) do ck.net[name] = tensors["net." .. name] end
  end
  if h.head then
    ck.head = { name = h.head.name, tensors = {}, scalars = h.head.scalars or {} }
    for _, k in ipairs(h.head.tensors or {}) do ck.head.tensors[k] = tensors["head." .. k] end
  end
  if h.opt then
    ck.opt = { kind = h.opt.kind, hyper = h.opt.hyper, nparams = h.opt.nparams,
               state = unflatten(h.opt.state or {}, tensors) }
  end
  if h.extra then ck.extra = unflatten(h.extra, tensors) end
  return ck
end

-- the head's tensors (same dtype and shape, copied in place) and state numbers from ck
local function restore_head(fn, path, head, ck, strict)
  if not ck.head then fail(fn .. ": " .. path .. " holds no head") end
  for k, t in pairs(ck.head.tensors) do
    local cur = head[k]
    if util.is_tensor(cur) then
      if cur:dtype() ~= t:dtype() then
        fail(string.format("%s: head.%s is %s in %s but %s in the head", fn, k, t:dtype(), path, cur:dtype()))
      end
      if table.concat(cur:shape(), "x") ~= table.concat(t:shape(), "x") then
        fail(string.format("%s: head.%s is %s in %s but %s in the head", fn, k, util.shape_str(t), path,
                           util.shape_str(cur)))
      end
      fvl.no_grad(function() cur:copy(t) end)
    elseif cur == nil and strict == false then
      head[k] = t
    elseif cur == nil then
      fail(string.format("%s: %s has head.%s but the head has no such tensor", fn, path, k))
    end
  end
  local restore = head.state_fields or HEAD_STATE
  for _, k in ipairs(restore) do
    if ck.head.scalars[k] ~= nil then head[k] = ck.head.scalars[k] end
  end
end

local function restore_opt(fn, path, opt, ck)
  if not ck.opt then fail(fn .. ": " .. path .. " holds no optimiser state") end
  if ck.opt.kind ~= opt.kind then
    fail(string.format("%s: %s holds %s state but the optimiser is %s", fn, path, tostring(ck.opt.kind),
                       tostring(opt.kind)))
  end
  if ck.opt.nparams and opt.params and ck.opt.nparams ~= #opt.params then
    fail(string.format("%s: %s holds state for %d parameters but the optimiser has %d", fn, path,
                       ck.opt.nparams, #opt.params))
  end
  opt:load_state(ck.opt.state)
end

-- fvl.load_checkpoint(path [, into]) -> ck | nil, message: reads a checkpoint; into = {net=, head=,
-- opt=, rng = true} restores them in place (net:load_state, the head's tensors and state numbers,
-- opt.state, the RNG unless rng = false). ck = {step=, rng=, net=, head=, opt=, sched=, extra=,
-- version=, path=}. A missing or malformed checkpoint is nil, message; shapes that do not match the
-- given objects are an error naming the tensor.
function M.load_checkpoint(path, into)
  local fn = "load_checkpoint"
  check_path(fn, path)
  into = util.check_opts(fn, into, load_keys)
  local h, err = read_header(path)
  if not h then return nil, err end
  local bad = check_header(h)
  if bad then return nil, string.format("%s: %s/%s is malformed: %s", fn, path, HEADER, bad) end
  local tensors, terr = load_tensors(fn, path, h)
  if not tensors then return nil, terr end
  local ck = assemble(path, h, tensors)
  -- restore into the given objects
  if into.net ~= nil then
    if not ck.net then fail(fn .. ": " .. path .. " holds no net") end
    into.net:load_state(ck.net, { strict = into.strict ~= false })
  end
  if into.head ~= nil then restore_head(fn, path, into.head, ck, into.strict) end
  if into.opt ~= nil then restore_opt(fn, path, into.opt, ck) end
  if into.rng ~= false and ck.rng then fvl.set_rng_state(ck.rng) end
  return ck
end

-- fvl.checkpoint.info(path) -> header | nil, message: the checkpoint's checkpoint.json as a table
-- (format, version, gen, step, time, rng, net names, head, opt kind and hyper-parameters, sched,
-- extra, and the tensors' file, shape and dtype) without reading any tensor. nil, message for a
-- missing or corrupt checkpoint, as fvl.load_checkpoint.
function M.info(path)
  check_path("checkpoint.info", path)
  return read_header(path)
end

return M
