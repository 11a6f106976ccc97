-- fvl.cli — how scripts in scripts/ parse their options: lua-argparse (Debian lua-argparse) with
-- typed converters whose errors name the option, so `--seed abc` ends with
-- "seed: expected a number, got 'abc'" (one line after the usage, exit status 1, no traceback).
--
--   local cli = require "fvl.cli"
--   local p = cli.parser("scripts/x.lua", "What x does (first line of the header comment).")
--   p:option("--seed", "random seed", 1):convert(cli.integer("seed"))
--   p:option("--lr", "learning rate", 0.1):convert(cli.number("lr", 0))     -- lower bound 0
--   p:option("--heads", "heads, comma separated"):convert(cli.list("heads"))
--   p:flag("--quick", "a short run")
--   local o = p:parse(arg)     -- --help / -h: usage on stdout, exit 0
-- Works in the fvl program and under stock lua5.4 + require "fvl".
local cli = {}

local ok, argparse = pcall(require, "argparse")

-- fvl.cli.parser(name, description [, epilog]) -> argparse parser (lua-argparse): `--help` prints
-- the usage and exits 0 before any work; parse `arg` of a script run by fvl or lua5.4.
-- Errors: lua-argparse not installed (the message names the Debian package).
function cli.parser(name, description, epilog)
  if not ok then
    error("fvl.cli: lua-argparse is not installed (apt-get install -y lua-argparse)", 0)
  end
  local p = argparse(name, description, epilog)
  return p
end

local function bounded(name, v, s, lo, hi, what)
  if lo and v < lo then return nil, string.format("%s: expected %s >= %s, got '%s'", name, what, lo, s) end
  if hi and v > hi then return nil, string.format("%s: expected %s <= %s, got '%s'", name, what, hi, s) end
  return v
end

-- fvl.cli.number(name [, lo [, hi]]) -> converter for p:option(...):convert(): a number, optionally
-- within [lo, hi]; a bad value gives argparse's one-line error "name: expected a number, got 'x'".
function cli.number(name, lo, hi)
  return function(s)
    local v = tonumber(s)
    if v == nil or v ~= v then return nil, string.format("%s: expected a number, got '%s'", name, s) end
    return bounded(name, v, s, lo, hi, "a number")
  end
end

-- fvl.cli.integer(name [, lo [, hi]]) -> converter: an integer, optionally within [lo, hi] (as
-- cli.number; "2.5" is refused with "expected an integer").
function cli.integer(name, lo, hi)
  return function(s)
    local v = math.tointeger(tonumber(s))
    if v == nil then
      if tonumber(s) == nil then return nil, string.format("%s: expected a number, got '%s'", name, s) end
      return nil, string.format("%s: expected an integer, got '%s'", name, s)
    end
    return bounded(name, v, s, lo, hi, "an integer")
  end
end

-- fvl.cli.list(name [, choices]) -> converter: a comma-separated list of names ("arcface,cosface"
-- -> {"arcface", "cosface"}), no empty items; choices: the allowed names (an error lists them).
function cli.list(name, choices)
  local allowed
  if choices then
    allowed = {}
    for _, c in ipairs(choices) do allowed[c] = true end
  end
  return function(s)
    local out = {}
    for item in (s .. ","):gmatch("([^,]*),") do
      if item == "" then return nil, string.format("%s: empty item in '%s'", name, s) end
      if allowed and not allowed[item] then
        return nil, string.format("%s: '%s' is not one of %s", name, item, table.concat(choices, ", "))
      end
      out[#out + 1] = item
    end
    return out
  end
end

-- replaces the lines between
-- "<!-- results:SECTION -->" and "<!-- /results:SECTION -->" of a document (README.md, docs/*.md)
-- with text, atomically, so documented tables are written by the script that computed them; the
-- markers must each be there once (errors are prefixed with who, the calling script's name)
function cli.write_section(file, section, text, who)
  local f, err = io.open(file, "r")
  if not f then error(who .. ": cannot read " .. tostring(err), 0) end
  local doc = f:read("a")
  f:close()
  local open_tag = "<!-- results:" .. section .. " -->"
  local close_tag = "<!-- /results:" .. section .. " -->"
  local a, b = doc:find(open_tag, 1, true)
  local c = doc:find(close_tag, 1, true)
  if not a or not c or c < b then
    error(string.format("%s: %s has no section %s ... %s", who, file, open_tag, close_tag), 0)
  end
  if doc:find(open_tag, b + 1, true) then
    error(string.format("%s: %s has section %s twice", who, file, open_tag), 0)
  end
  local fvl = require "fvl.core"
  assert(fvl.sys.write_atomic(file, doc:sub(1, b) .. "\n" .. text .. "\n" .. doc:sub(c)))
end

return cli
