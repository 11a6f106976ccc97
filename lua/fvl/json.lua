-- fvl.json — JSON encode/decode in plain Lua (no engine dependency).
--
--   fvl.json.encode(v [, {indent=2, sort_keys=true, nonfinite="error"|"null"|"literal"}]) -> string
--   fvl.json.decode(s [, {null=fvl.json.null}])  -> value   | nil, message (malformed text)
--
-- Tables whose keys are exactly 1..n are arrays, tables with string keys are objects, an empty
-- table is an object `{}` unless marked with fvl.json.array{}; decode marks empty arrays so that
-- they round-trip. Integers stay integers (math.type) and floats stay floats: 1.0 is written
-- "1.0", and numbers are written with the fewest digits that read back to the same double.
-- Objects are written with sorted keys, so equal tables give equal text.
-- Values with a :totable() method (tensors) are written as their nested tables.
-- NaN/inf have no JSON form: by default they are an error naming the path; nonfinite="null"
-- writes null and "literal" writes NaN/Infinity/-Infinity (as Python's json does; decode reads them).
-- decode is strict: a key twice in one object, "1." or "01" and trailing text are errors.
local json = {}

local array_mt = { __name = "fvl.json.array" }
local object_mt = { __name = "fvl.json.object" }
json.null = setmetatable({}, { __name = "fvl.json.null", __tostring = function() return "null" end })

local function marked(fn, t, mt)
  if t ~= nil and type(t) ~= "table" then error(string.format("%s: t must be a table or nil, got %s", fn, type(t)), 0) end
  return setmetatable(t or {}, mt)
end
-- fvl.json.array([t]) -> t: marks a table as a JSON array (matters only when it is empty: an
-- empty table is written as an object {} otherwise)
function json.array(t) return marked("json.array", t, array_mt) end
-- fvl.json.object([t]) -> t: marks a table as a JSON object
function json.object(t) return marked("json.object", t, object_mt) end

local escapes = { ['"'] = '\\"', ['\\'] = '\\\\', ['\b'] = '\\b', ['\f'] = '\\f', ['\n'] = '\\n',
                  ['\r'] = '\\r', ['\t'] = '\\t' }
local function quote(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    return escapes[c] or string.format("\\u%04x", c:byte())
  end) .. '"'
end

local function fmt_float(v)
  for _, p in ipairs { "%.15g", "%.16g", "%.17g" } do
    local s = string.format(p, v)
    if tonumber(s) == v then
      if not s:find("[%.eEn]") then s = s .. ".0" end
      return s
    end
  end
end

local encode_opts = { indent = true, sort_keys = true, nonfinite = true }

-- the encoder's state E: out/n (the pieces written), seen (tables being written: cycles),
-- indent, colon, nonfinite, sort_keys (the options)
local function put(E, s) E.n = E.n + 1; E.out[E.n] = s end
local function nl(E, depth)
  if E.indent and E.indent > 0 then put(E, "\n" .. string.rep(" ", E.indent * depth)) end
end

local function enc_number(E, x, path)
  if math.type(x) == "integer" then put(E, string.format("%d", x))
  elseif x ~= x or x == math.huge or x == -math.huge then
    if E.nonfinite == "null" then put(E, "null")
    elseif E.nonfinite == "literal" then put(E, x ~= x and "NaN" or (x > 0 and "Infinity" or "-Infinity"))
    else
      error(string.format("json.encode: value at %s is %s, which JSON cannot hold (use nonfinite=\"null\" or \"literal\")",
                          path, tostring(x)), 0)
    end
  else put(E, fmt_float(x)) end
end

-- whether table x is written as an array, its number of keys and its string keys
local function table_shape(x, path)
  local nkeys, maxint, strkeys = 0, 0, {}
  for k in pairs(x) do
    nkeys = nkeys + 1
    if math.type(k) == "integer" and k >= 1 then
      if k > maxint then maxint = k end
    elseif type(k) == "string" then
      strkeys[#strkeys + 1] = k
    else
      error(string.format("json.encode: table at %s has a key %s of type %s (expected strings or 1..n)",
                          path, tostring(k), type(k)), 0)
    end
  end
  if nkeys == 0 then return getmetatable(x) == array_mt, 0, strkeys end
  if #strkeys == 0 and maxint == nkeys then return true, nkeys, strkeys end
  if #strkeys == nkeys then return false, nkeys, strkeys end
  if #strkeys == 0 then
    error(string.format("json.encode: table at %s is a sparse array (keys up to %d, %d present)",
                        path, maxint, nkeys), 0)
  end
  error(string.format("json.encode: table at %s mixes integer and string keys", path), 0)
end

local enc

local function enc_table(E, x, path, depth)
  if E.seen[x] then error("json.encode: table at " .. path .. " contains itself", 0) end
  E.seen[x] = true
  local is_array, nkeys, strkeys = table_shape(x, path)
  if is_array then
    put(E, "[")
    for i = 1, nkeys do
      if i > 1 then put(E, ",") end
      nl(E, depth + 1)
      enc(E, x[i], path .. "[" .. i .. "]", depth + 1)
    end
    if nkeys > 0 then nl(E, depth) end
    put(E, "]")
  else
    if E.sort_keys then table.sort(strkeys) end
    put(E, "{")
    for i, k in ipairs(strkeys) do
      if i > 1 then put(E, ",") end
      nl(E, depth + 1)
      put(E, quote(k)); put(E, E.colon)
      enc(E, x[k], path .. "." .. k, depth + 1)
    end
    if nkeys > 0 then nl(E, depth) end
    put(E, "}")
  end
  E.seen[x] = nil
end

function enc(E, x, path, depth)
  local t = type(x)
  if x == nil or x == json.null then put(E, "null")
  elseif t == "boolean" then put(E, x and "true" or "false")
  elseif t == "number" then enc_number(E, x, path)
  elseif t == "string" then put(E, quote(x))
  elseif t == "table" or t == "userdata" then
    local mt = getmetatable(x)
    if t == "userdata" or (mt and mt ~= array_mt and mt ~= object_mt and type(x.totable) == "function") then
      local ok, tt = pcall(function() return x:totable() end)
      if not ok or type(tt) ~= "table" and type(tt) ~= "number" then
        error(string.format("json.encode: value at %s is a %s without a usable :totable()", path, t), 0)
      end
      return enc(E, tt, path, depth)
    end
    enc_table(E, x, path, depth)
  else
    error(string.format("json.encode: value at %s is a %s (expected nil, boolean, number, string or table)",
                        path, t), 0)
  end
end

-- the encoder state for the options table of json.encode (errors are raised at its caller)
local function encoder(opts)
  opts = opts or {}
  if type(opts) ~= "table" then
    error("json.encode: opts must be a table, got " .. type(opts), 3)
  end
  for k in pairs(opts) do
    if not encode_opts[k] then
      error(string.format("json.encode: unknown option '%s' (expected one of: indent, sort_keys, nonfinite)",
                          tostring(k)), 3)
    end
  end
  local indent = opts.indent
  if indent ~= nil and (math.type(indent) ~= "integer" or indent < 0) then
    error("json.encode: indent must be a non-negative integer, got " .. tostring(indent), 3)
  end
  local nonfinite = opts.nonfinite or "error"
  if nonfinite ~= "error" and nonfinite ~= "null" and nonfinite ~= "literal" then
    error("json.encode: nonfinite = '" .. tostring(nonfinite) .. "' (expected error|null|literal)", 3)
  end
  return { out = {}, n = 0, seen = {}, indent = indent, nonfinite = nonfinite, sort_keys = opts.sort_keys ~= false,
           colon = (indent and indent > 0) and ": " or ":" }
end

-- fvl.json.encode(v [, opts]) -> string: JSON text of a value (tables, numbers, strings, booleans,
-- fvl.json.null, tensors as nested lists). Integers stay integers and floats are written with the
-- fewest digits that read back exactly; object keys sorted. opts: indent (a number of spaces, or
-- none: one line), sort_keys (true), nonfinite = "error"|"null"|"literal" ("error": NaN/inf are an
-- error naming their path; "literal": NaN/Infinity as Python's json). Errors: functions, cycles,
-- mixed keys.
function json.encode(v, opts)
  local E = encoder(opts)
  local ok, err = pcall(enc, E, v, "$", 0)
  if not ok then error(err, 2) end
  return table.concat(E.out)
end

-- ---------------------------------------------------------------- decode
-- The decoder's state is one table D: s (the text), pos (the next byte), len, nullv (what null
-- becomes inside objects and arrays). Errors are raised as {json_error = message} and returned
-- by json.decode as nil, message.
local function fail(D, msg)
  local s, line, col = D.s, 1, 1
  for i = 1, math.min(D.pos, D.len + 1) - 1 do
    if s:byte(i) == 10 then line, col = line + 1, 1 else col = col + 1 end
  end
  error({ json_error = string.format("json.decode: %s at line %d column %d (byte %d)", msg, line, col, D.pos) })
end
local function skip(D) D.pos = D.s:find("[^ \t\r\n]", D.pos) or D.len + 1 end
local function peek(D) return D.s:sub(D.pos, D.pos) end

local ESCAPES = { ['"'] = '"', ['\\'] = '\\', ['/'] = '/', b = '\b', f = '\f', n = '\n', r = '\r', t = '\t' }

-- \uXXXX at byte a (the backslash), with a UTF-16 surrogate pair when one follows: the UTF-8 text
local function unicode_escape(D, a)
  local s = D.s
  local hex = s:match("^%x%x%x%x", a + 2)
  if not hex then D.pos = a; fail(D, "bad \\u escape") end
  local cp = tonumber(hex, 16)
  D.pos = a + 6
  if cp >= 0xD800 and cp <= 0xDBFF then
    local lo = s:match("^\\u(%x%x%x%x)", D.pos)
    lo = lo and tonumber(lo, 16)
    if lo and lo >= 0xDC00 and lo <= 0xDFFF then
      cp = 0x10000 + (cp - 0xD800) * 0x400 + (lo - 0xDC00)
      D.pos = D.pos + 6
    end
  end
  return utf8.char(cp)
end

local function str(D)
  local s = D.s
  D.pos = D.pos + 1 -- opening quote
  local buf, nb = {}, 0
  while true do
    local a = s:find('["\\%c]', D.pos)
    if not a then fail(D, "unterminated string") end
    if a > D.pos then nb = nb + 1; buf[nb] = s:sub(D.pos, a - 1) end
    local c = s:sub(a, a)
    if c == '"' then D.pos = a + 1; break end
    if c ~= "\\" then D.pos = a; fail(D, "control character in string") end
    local e = s:sub(a + 1, a + 1)
    nb = nb + 1
    if ESCAPES[e] then
      buf[nb] = ESCAPES[e]
      D.pos = a + 2
    elseif e == "u" then
      buf[nb] = unicode_escape(D, a)
    else
      D.pos = a; fail(D, "bad escape '\\" .. e .. "'")
    end
  end
  return table.concat(buf)
end

local function num(D)
  local s = D.s
  local lit = s:match("^-?Infinity", D.pos) or s:match("^NaN", D.pos)
  if lit then
    D.pos = D.pos + #lit
    if lit == "NaN" then return 0 / 0 end
    return lit:sub(1, 1) == "-" and -math.huge or math.huge
  end
  local t = s:match("^-?%d+%.?%d*[eE]?[-+]?%d*", D.pos)
  if not t or t == "" or t == "-" then fail(D, "unexpected character '" .. peek(D) .. "'") end
  if t:match("^-?0%d") then fail(D, "number with a leading zero") end
  -- JSON's grammar: a fraction and an exponent each need a digit ("1." and "1.e5" are not numbers)
  if t:find(".", 1, true) and not t:match("^-?%d+%.%d") then fail(D, "malformed number '" .. t .. "'") end
  D.pos = D.pos + #t
  local v
  if t:find("[%.eE]") then
    v = tonumber(t)
    if v then v = v + 0.0 end
  else
    v = math.tointeger(tonumber(t)) or tonumber(t .. ".0")
  end
  if not v then D.pos = D.pos - #t; fail(D, "malformed number '" .. t .. "'") end
  return v
end

local value

-- the entries of an object or an array after its opening byte, up to `close` ("}" or "]")
local function container(D, depth, close)
  D.pos = D.pos + 1
  local t, n, seen = {}, 0, nil
  skip(D)
  if peek(D) == close then
    D.pos = D.pos + 1
    return close == "}" and json.object(t) or json.array(t)
  end
  while true do
    local k
    if close == "}" then
      skip(D)
      if peek(D) ~= '"' then fail(D, "expected a string key") end
      local at = D.pos
      k = str(D)
      seen = seen or {}
      if seen[k] then   -- strict: a second value must not hide the first (last-wins parsers differ)
        D.pos = at
        fail(D, string.format("duplicate key %q", k))
      end
      seen[k] = true
      skip(D)
      if peek(D) ~= ":" then fail(D, "expected ':'") end
      D.pos = D.pos + 1
    else
      n = n + 1
      k = n
    end
    local v = value(D, depth + 1)
    if v == nil then v = D.nullv end
    t[k] = v
    skip(D)
    local c = peek(D)
    D.pos = D.pos + 1
    if c == close then return t end
    if c ~= "," then D.pos = D.pos - 1; fail(D, "expected ',' or '" .. close .. "'") end
  end
end

function value(D, depth)
  if depth > 200 then fail(D, "nesting deeper than 200") end
  skip(D)
  local c, s, pos = peek(D), D.s, D.pos
  if c == "{" then return container(D, depth, "}")
  elseif c == "[" then return container(D, depth, "]")
  elseif c == '"' then return str(D)
  elseif s:find("^true", pos) then D.pos = pos + 4; return true
  elseif s:find("^false", pos) then D.pos = pos + 5; return false
  elseif s:find("^null", pos) then D.pos = pos + 4; return nil
  elseif c == "" then fail(D, "unexpected end of text")
  else return num(D) end
end

-- fvl.json.decode(s [, opts]) -> value | nil, message: parses JSON text (NaN/Infinity accepted);
-- empty arrays come back marked (fvl.json.array) so they round-trip; opts.null: the value for JSON
-- null (default fvl.json.null). Malformed text is nil, message with the position.
function json.decode(s, opts)
  if type(s) ~= "string" then
    error("json.decode: argument #1 must be a string, got " .. type(s), 0)
  end
  opts = opts or {}
  if type(opts) ~= "table" then error("json.decode: opts must be a table, got " .. type(opts), 0) end
  for k in pairs(opts) do
    if k ~= "null" then error("json.decode: unknown option '" .. tostring(k) .. "' (expected: null)", 2) end
  end
  local D = { s = s, pos = 1, len = #s, nullv = opts.null }
  local ok, res = pcall(function()
    local v = value(D, 0)
    skip(D)
    if D.pos <= D.len then fail(D, "trailing characters") end
    return v
  end)
  if ok then return res end
  if type(res) == "table" and res.json_error then return nil, res.json_error end
  error(res, 0)
end

return json
