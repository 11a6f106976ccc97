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
local json = {}

local array_mt = { __name = "fvl.json.array" }
local object_mt = { __name = "fvl.json.object" }
json.null = setmetatable({}, { __name = "fvl.json.null", __tostring = function() return "null" end })

-- fvl.json.array([t]) -> t: marks a table as a JSON array (matters only when it is empty: an
-- empty table is written as an object {} otherwise)
function json.array(t) return setmetatable(t or {}, array_mt) end
-- fvl.json.object([t]) -> t: marks a table as a JSON object
function json.object(t) return setmetatable(t or {}, object_mt) end

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

-- fvl.json.encode(v [, opts]) -> string: JSON text of a value (tables, numbers, strings, booleans,
-- fvl.json.null, tensors as nested lists). Integers stay integers and floats are written with the
-- fewest digits that read back exactly; object keys sorted. opts: indent (a number of spaces, or
-- none: one line), sort_keys (true), nonfinite = "error"|"null"|"literal" ("error": NaN/inf are an
-- error naming their path; "literal": NaN/Infinity as Python's json). Errors: functions, cycles,
-- mixed keys.
function json.encode(v, opts)
  opts = opts or {}
  if type(opts) ~= "table" then
    error("json.encode: opts must be a table, got " .. type(opts), 2)
  end
  for k in pairs(opts) do
    if not encode_opts[k] then
      error(string.format("json.encode: unknown option '%s' (expected one of: indent, sort_keys, nonfinite)",
                          tostring(k)), 2)
    end
  end
  local indent = opts.indent
  if indent ~= nil and (math.type(indent) ~= "integer" or indent < 0) then
    error("json.encode: indent must be a non-negative integer, got " .. tostring(indent), 2)
  end
  local nonfinite = opts.nonfinite or "error"
  if nonfinite ~= "error" and nonfinite ~= "null" and nonfinite ~= "literal" then
    error("json.encode: nonfinite = '" .. tostring(nonfinite) .. "' (expected error|null|literal)", 2)
  end
  local sort_keys = opts.sort_keys ~= false
  local out, n = {}, 0
  local seen = {}
  local function put(s) n = n + 1; out[n] = s end
  local function nl(depth)
    if indent and indent > 0 then put("\n" .. string.rep(" ", indent * depth)) end
  end
  local colon = (indent and indent > 0) and ": " or ":"

  local function enc(x, path, depth)
    local t = type(x)
    if x == nil or x == json.null then put("null")
    elseif t == "boolean" then put(x and "true" or "false")
    elseif t == "number" then
      if math.type(x) == "integer" then put(string.format("%d", x))
      elseif x ~= x or x == math.huge or x == -math.huge then
        if nonfinite == "null" then put("null")
        elseif nonfinite == "literal" then put(x ~= x and "NaN" or (x > 0 and "Infinity" or "-Infinity"))
        else
          error(string.format("json.encode: value at %s is %s, which JSON cannot hold (use nonfinite=\"null\" or \"literal\")",
                              path, tostring(x)), 0)
        end
      else put(fmt_float(x)) end
    elseif t == "string" then put(quote(x))
    elseif t == "table" or t == "userdata" then
      if t == "userdata" or (getmetatable(x) and getmetatable(x) ~= array_mt and getmetatable(x) ~= object_mt
                             and type(x.totable) == "function") then
        local ok, tt = pcall(function() return x:totable() end)
        if not ok or type(tt) ~= "table" and type(tt) ~= "number" then
          error(string.format("json.encode: value at %s is a %s without a usable :totable()", path, t), 0)
        end
        return enc(tt, path, depth)
      end
      if seen[x] then error("json.encode: table at " .. path .. " contains itself", 0) end
      seen[x] = true
      local mt = getmetatable(x)
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
      local is_array
      if nkeys == 0 then is_array = (mt == array_mt)
      elseif #strkeys == 0 and maxint == nkeys then is_array = true
      elseif #strkeys == nkeys then is_array = false
      elseif #strkeys == 0 then
        error(string.format("json.encode: table at %s is a sparse array (keys up to %d, %d present)",
                            path, maxint, nkeys), 0)
      else
        error(string.format("json.encode: table at %s mixes integer and string keys", path), 0)
      end
      if is_array then
        put("[")
        for i = 1, nkeys do
          if i > 1 then put(",") end
          nl(depth + 1)
          enc(x[i], path .. "[" .. i .. "]", depth + 1)
        end
        if nkeys > 0 then nl(depth) end
        put("]")
      else
        if sort_keys then table.sort(strkeys) end
        put("{")
        for i, k in ipairs(strkeys) do
          if i > 1 then put(",") end
          nl(depth + 1)
          put(quote(k)); put(colon)
          enc(x[k], path .. "." .. k, depth + 1)
        end
        if nkeys > 0 then nl(depth) end
        put("}")
      end
      seen[x] = nil
    else
      error(string.format("json.encode: value at %s is a %s (expected nil, boolean, number, string or table)",
                          path, t), 0)
    end
  end
  local ok, err = pcall(enc, v, "$", 0)
  if not ok then error(err, 2) end
  return table.concat(out)
end

-- ---------------------------------------------------------------- decode
local function utf8_of(cp) return utf8.char(cp) end

-- fvl.json.decode(s [, opts]) -> value | nil, message: parses JSON text (NaN/Infinity accepted);
-- empty arrays come back marked (fvl.json.array) so they round-trip; opts.null: the value for JSON
-- null (default fvl.json.null). Malformed text is nil, message with the position.
function json.decode(s, opts)
  if type(s) ~= "string" then
    error("json.decode: argument #1 must be a string, got " .. type(s), 2)
  end
  opts = opts or {}
  for k in pairs(opts) do
    if k ~= "null" then error("json.decode: unknown option '" .. tostring(k) .. "' (expected: null)", 2) end
  end
  local nullv = opts.null
  local pos = 1
  local len = #s

  local function fail(msg)
    local line, col = 1, 1
    for i = 1, math.min(pos, len + 1) - 1 do
      if s:byte(i) == 10 then line, col = line + 1, 1 else col = col + 1 end
    end
    error({ json_error = string.format("json.decode: %s at line %d column %d (byte %d)", msg, line, col, pos) })
  end
  local function skip()
    pos = s:find("[^ \t\r\n]", pos) or len + 1
  end
  local function peek() return s:sub(pos, pos) end

  local value
  local function str()
    pos = pos + 1 -- opening quote
    local buf, nb = {}, 0
    while true do
      local a, b = s:find('["\\%c]', pos)
      if not a then fail("unterminated string") end
      if a > pos then nb = nb + 1; buf[nb] = s:sub(pos, a - 1) end
      local c = s:sub(a, a)
      if c == '"' then pos = a + 1; break end
      if c ~= "\\" then pos = a; fail("control character in string") end
      local e = s:sub(a + 1, a + 1)
      local simple = ({ ['"'] = '"', ['\\'] = '\\', ['/'] = '/', b = '\b', f = '\f', n = '\n',
                        r = '\r', t = '\t' })[e]
      if simple then
        nb = nb + 1; buf[nb] = simple; pos = a + 2
      elseif e == "u" then
        local hex = s:match("^%x%x%x%x", a + 2)
        if not hex then pos = a; fail("bad \\u escape") end
        local cp = tonumber(hex, 16)
        pos = a + 6
        if cp >= 0xD800 and cp <= 0xDBFF then
          local lo = s:match("^\\u(%x%x%x%x)", pos)
          lo = lo and tonumber(lo, 16)
          if lo and lo >= 0xDC00 and lo <= 0xDFFF then
            cp = 0x10000 + (cp - 0xD800) * 0x400 + (lo - 0xDC00)
            pos = pos + 6
          end
        end
        nb = nb + 1; buf[nb] = utf8_of(cp)
      else
        pos = a; fail("bad escape '\\" .. e .. "'")
      end
    end
    return table.concat(buf)
  end

  local function num()
    local lit = s:match("^-?Infinity", pos) or s:match("^NaN", pos)
    if lit then
      pos = pos + #lit
      if lit == "NaN" then return 0 / 0 end
      return lit:sub(1, 1) == "-" and -math.huge or math.huge
    end
    local t = s:match("^-?%d+%.?%d*[eE]?[-+]?%d*", pos)
    if not t or t == "" or t == "-" then fail("unexpected character '" .. peek() .. "'") end
    if t:match("^-?0%d") then fail("number with a leading zero") end
    pos = pos + #t
    local v
    if t:find("[%.eE]") then
      v = tonumber(t)
      if v then v = v + 0.0 end
    else
      v = math.tointeger(tonumber(t)) or tonumber(t .. ".0")
    end
    if not v then pos = pos - #t; fail("malformed number '" .. t .. "'") end
    return v
  end

  function value(depth)
    if depth > 200 then fail("nesting deeper than 200") end
    skip()
    local c = peek()
    if c == "{" then
      pos = pos + 1
      local t = {}
      skip()
      if peek() == "}" then pos = pos + 1; return json.object(t) end
      while true do
        skip()
        if peek() ~= '"' then fail("expected a string key") end
        local k = str()
        skip()
        if peek() ~= ":" then fail("expected ':'") end
        pos = pos + 1
        local v = value(depth + 1)
        if v == nil then v = nullv end
        t[k] = v
        skip()
        c = peek()
        pos = pos + 1
        if c == "}" then return t end
        if c ~= "," then pos = pos - 1; fail("expected ',' or '}'") end
      end
    elseif c == "[" then
      pos = pos + 1
      local t, n = {}, 0
      skip()
      if peek() == "]" then pos = pos + 1; return json.array(t) end
      while true do
        local v = value(depth + 1)
        if v == nil then v = nullv end
        n = n + 1
        t[n] = v
        skip()
        c = peek()
        pos = pos + 1
        if c == "]" then return t end
        if c ~= "," then pos = pos - 1; fail("expected ',' or ']'") end
      end
    elseif c == '"' then return str()
    elseif s:find("^true", pos) then pos = pos + 4; return true
    elseif s:find("^false", pos) then pos = pos + 5; return false
    elseif s:find("^null", pos) then pos = pos + 4; return nil
    elseif c == "" then fail("unexpected end of text")
    else return num() end
  end

  local ok, res = pcall(function()
    local v = value(0)
    skip()
    if pos <= len then fail("trailing characters") end
    return v
  end)
  if ok then return res end
  if type(res) == "table" and res.json_error then return nil, res.json_error end
  error(res, 0)
end

return json
