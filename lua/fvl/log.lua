-- fvl.log — per-run metrics as JSON lines: one JSON object per line, appended and flushed per
-- record (the file is opened, appended and closed each time, so a killed run loses nothing and
-- other tools can read the file while it grows).
--
--   local log = fvl.log.open("runs/arc.jsonl", {run="arc-m0.5", fields={m=0.5}})
--   log:write{step=100, loss=2.31}      -- {"loss":2.31,"m":0.5,"run":"arc-m0.5","step":100,"time":...}
--   fvl.log.append(path, record)         -- one record, no logger
--   fvl.log.read(path [, {run=}])        -- list of records | nil, message
--
-- Records get "time" (Unix seconds, with a fraction) unless they carry one, plus the logger's
-- fixed fields. NaN and infinities are written as NaN / Infinity / -Infinity (Python's json reads
-- them), so a diverged loss stays visible. Tensors with one element are written as numbers.
local fvl = require "fvl.core"
local json = require "fvl.json"
local util = require "fvl.util"

local log = {}

local Logger = {}
Logger.__index = Logger
Logger.__name = "fvl.log"
util.register_class(Logger, "fvl.log.Logger")

local function wall_time() return fvl._walltime() end

local function plain(v)
  if type(v) == "userdata" and v.numel then
    if v:numel() == 1 then return v:item() end
    return v:totable()
  end
  return v
end

local function encode(rec)
  local t = {}
  for k, v in pairs(rec) do
    if type(k) ~= "string" then
      error("log: record keys must be names, got " .. type(k) .. " " .. tostring(k), 3)
    end
    t[k] = plain(v)
  end
  return json.encode(t, { nonfinite = "literal" })
end

local function append_line(path, line)
  local f, err = io.open(path, "a")
  if not f then return nil, "log: cannot open '" .. path .. "' for appending: " .. tostring(err) end
  local ok, werr = f:write(line, "\n")
  if ok then ok, werr = f:flush() end
  f:close()
  if not ok then return nil, "log: cannot write '" .. path .. "': " .. tostring(werr) end
  return true
end

-- the one check of a path argument (an error at the caller's line)
local function check_path(fn, path)
  if type(path) ~= "string" then error(fn .. ": path must be a file name, got " .. type(path), 3) end
end

-- fvl.log.open(path [, opts]) -> logger | nil, message: a JSON-lines metrics log (the file is
-- created now, appended to when it exists); opts: run (a name added to each record), fields (a
-- table of fixed values added to each record), time (true: a "time" field). Errors: a path that
-- is not a string, unknown options, fields not a table.
function log.open(path, opts)
  check_path("log.open", path)
  opts = util.check_opts("log.open", opts, { "run", "fields", "time" })
  if opts.fields ~= nil and type(opts.fields) ~= "table" then
    error("log.open: fields must be a table, got " .. type(opts.fields), 2)
  end
  local f, err = io.open(path, "a")
  if not f then return nil, "log.open: cannot open '" .. path .. "' for appending: " .. tostring(err) end
  f:close()
  local self = setmetatable({ path = path, fields = {}, time = opts.time ~= false, count = 0 }, Logger)
  for k, v in pairs(opts.fields or {}) do self.fields[k] = v end
  if opts.run ~= nil then self.fields.run = opts.run end
  return self
end

-- logger:write(record) -> true | nil, message: appends one record (a table; the logger's fields
-- and the time added) as a JSON line, flushed; logger(record) is the same.
function Logger:write(rec)
  if type(rec) ~= "table" then error("log:write: record must be a table, got " .. type(rec), 2) end
  local t = {}
  for k, v in pairs(self.fields) do t[k] = v end
  for k, v in pairs(rec) do t[k] = v end
  if self.time and t.time == nil then t.time = wall_time() end
  local ok, err = append_line(self.path, encode(t))
  if ok then self.count = self.count + 1 end
  return ok, err
end
Logger.__call = Logger.write
-- logger:close() -> true: nothing to flush (every record is written when logged); for <close>.
function Logger:close() return true end
Logger.__close = Logger.close
function Logger:__tostring() return string.format("fvl.log(%s, %d records)", self.path, self.count) end

-- fvl.log.append(path, record) -> true | nil, message: appends one record (a table) as a JSON line
-- with its "time", without a logger. Errors: a path or record of the wrong type.
function log.append(path, rec)
  check_path("log.append", path)
  if type(rec) ~= "table" then error("log.append: record must be a table, got " .. type(rec), 2) end
  return append_line(path, encode(rec))
end

-- fvl.log.read(path [, opts]) -> {record, ...} | nil, message: the records of a log (opts.run: only
-- that run's). A last line without its newline (a run killed mid-write) is skipped; any other
-- malformed line is an error naming its number.
function log.read(path, opts)
  check_path("log.read", path)
  opts = util.check_opts("log.read", opts, { "run" })
  local f, err = io.open(path, "rb")
  if not f then return nil, "log.read: cannot open '" .. path .. "': " .. tostring(err) end
  local text = f:read("a")
  f:close()
  local out, lineno = {}, 0
  local pos = 1
  while pos <= #text do
    local nl = text:find("\n", pos, true)
    local line = text:sub(pos, (nl or #text + 1) - 1)
    lineno = lineno + 1
    pos = (nl or #text) + 1
    if line:match("%S") then
      local rec, derr = json.decode(line)
      if rec == nil or type(rec) ~= "table" then
        if not nl then break end   -- torn last line
        return nil, string.format("log.read: '%s' line %d is not a JSON object: %s", path, lineno,
                                  tostring(derr or line))
      end
      if opts.run == nil or rec.run == opts.run then out[#out + 1] = rec end
    end
  end
  return out
end

log.Logger = Logger
return log
