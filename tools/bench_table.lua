-- tools/bench_table.lua — the markdown table of a kept scripts/bench/heads.lua output file
-- (docs/runs/bench/heads_*.txt), so that README's speed tables are written by a script from the
-- run's own output, never by hand.
--
--   fvl tools/bench_table.lua docs/runs/bench/heads_100k_idle.txt                  -- print it
--   fvl tools/bench_table.lua docs/runs/bench/heads_100k_idle.txt --write README.md --section heads_100k
--
-- --write replaces the lines between "<!-- results:SECTION -->" and "<!-- /results:SECTION -->".
-- The parser is strict: the column header is read by name (heads.lua's columns changed over the
-- sessions; every version kept in docs/runs/bench is known), every row must have a value for
-- every column, and a file with no heads.lua table is an error naming the file.
local fvl = fvl or require "fvl"
local cli = require "fvl.cli"

local parser = cli.parser("fvl tools/bench_table.lua",
  "The markdown table of a kept scripts/bench/heads.lua output (docs/runs/bench/heads_*.txt).")
parser:argument("file", "a heads.lua output file")
parser:option("--write", "a markdown file whose results section gets the table (README.md)")
parser:option("--section", "the section's name (<!-- results:NAME -->)")
parser:option("--C", "only the rows of this class count"):convert(cli.integer("C", 2))
local args = parser:parse(arg or {})
local WHO = "bench_table.lua"
local function die(msg)   -- one line on stderr, exit 1 (a bad input file is not a bug of the tool)
  io.stderr:write(WHO .. ": " .. msg .. "\n")
  os.exit(1)
end
local function fail(msg) die(args.file .. ": " .. msg) end

-- every column name heads.lua has printed, longest first where one begins another
local COLUMNS = { "head", "C", "ms/step", "GEMM ms", "ratio", "target", "B×C bufs", "rest B×D", "peak MB",
                  "VmHWM MB", "faults", "sys ms", "GFLOP/s", "% peak", "torch ms", "×torch", "×arc/FLOP", "×arc",
                  "2-pass ms", "2p bufs", "gain", "recomp ms", "rec/fus" }

local function parse_header(line)
  local cols, pos = {}, 1
  while true do
    pos = line:find("%S", pos)
    if not pos then break end
    local hit
    for _, c in ipairs(COLUMNS) do
      local e = pos + #c
      if line:sub(pos, e - 1) == c and (e > #line or line:sub(e, e) == " ") then hit = c; break end
    end
    if not hit then fail("unknown column at '" .. line:sub(pos, pos + 20) .. "' in the header") end
    cols[#cols + 1] = hit
    pos = pos + #hit
  end
  return cols
end

local f, err = io.open(args.file)
if not f then die(tostring(err)) end
local text = f:read("a")
f:close()

local info, cols, rows, skipped = {}, nil, {}, {}
for line in text:gmatch("[^\n]*") do
  if line:match("^heads%.lua: B=") then
    info.B, info.D = line:match("B=(%d+) D=(%d+)")
    info.threads = line:match("threads (%d+)")
    info.best = line:match("best of ([%d]+) steps") or line:match("best of (.-) steps")
  elseif line:match("^FMA peak") then
    info.peak = line:match("^FMA peak ([%d.]+) GFLOP/s")
    info.load0 = line:match("load average (%S+)")
  elseif line:match("^torch: torch ") then
    info.torch = line:match("^torch: torch (%S+),")
  elseif line:match("^load average after: ") or line:match("; load average after: ") then
    info.load1 = line:match("load average after: (%S+)")
  elseif not cols and line:match("^head%s") and line:find("GEMM ms", 1, true) then
    cols = parse_header(line)
  elseif cols and not info.done then
    if line:match("^ms/step and the columns") then
      info.done = true
    elseif line:match("^[%w_]+%s+%d+%s+GEMM baseline skipped:") then
      local h, c, why = line:match("^([%w_]+)%s+(%d+)%s+(.*)$")
      skipped[#skipped + 1] = { head = h, C = tonumber(c), why = why }
    elseif line:match("^[%w_]+%s+%d+%s+skipped:") or line:match("^[%w_]+%s+%d+%s+failed:") then
      local h, c, why = line:match("^([%w_]+)%s+(%d+)%s+(.*)$")
      skipped[#skipped + 1] = { head = h, C = tonumber(c), why = why }
    elseif line:match("^[%w_]+%s+%d+%s") then
      local v = {}
      for w in line:gsub("%s+%(over target%)%s*$", ""):gmatch("%S+") do v[#v + 1] = w end
      if #v ~= #cols then
        fail(string.format("a row has %d values for %d columns: '%s'", #v, #cols, line:sub(1, 80)))
      end
      local r = {}
      for i, c in ipairs(cols) do r[c] = v[i] end
      rows[#rows + 1] = r
    end
  end
end
if not cols then fail("no heads.lua table (no header line with 'head ... GEMM ms')") end
if #rows == 0 then fail("the heads.lua table has no rows") end
if not info.peak then fail("no 'FMA peak' line") end

local Cs, seen = {}, {}
for _, r in ipairs(rows) do
  if not seen[r.C] then seen[r.C] = true; Cs[#Cs + 1] = r.C end
end
if args.C then
  local keep = {}
  for _, r in ipairs(rows) do if tonumber(r.C) == args.C then keep[#keep + 1] = r end end
  if #keep == 0 then fail("no row at C = " .. args.C) end
  rows, Cs = keep, { tostring(args.C) }
end

local function commas(n)
  local s = tostring(math.tointeger(tonumber(n)) or n)
  while true do
    local t = s:gsub("^(%d+)(%d%d%d)", "%1,%2")
    if t == s then return s end
    s = t
  end
end
-- the columns of the table: heading, source column, formatting; a column the file lacks is left out
local function dash(v) return (v == nil or v == "-") and "–" or v end
local SPEC = {
  { "head", "head", function(v) return "`" .. v .. "`" end },
  { "C", "C", commas, many = true },
  { "ms/step", "ms/step" },
  { "GFLOP/s", "GFLOP/s" },
  { "% of FMA peak", "% peak", function(v) return (v:gsub("%%$", "")) end },
  { "PyTorch ms", "torch ms" },
  { "× PyTorch", "×torch" },
  { "× ArcFace", "×arc" },
  { "× ArcFace per FLOP", "×arc/FLOP" },
  { "B×C buffers", "B×C bufs" },
  { "peak MB", "peak MB" },
}
local have = {}
for _, c in ipairs(cols) do have[c] = true end
local use = {}
for _, s in ipairs(SPEC) do
  if have[s[2]] and (not s.many or #Cs > 1) then use[#use + 1] = s end
end
local out = {}
local heads = {}
for _, s in ipairs(use) do heads[#heads + 1] = s[1] end
out[#out + 1] = "| " .. table.concat(heads, " | ") .. " |"
local sep = {}
for i = 1, #use do sep[i] = i == 1 and "---" or "---:" end
out[#out + 1] = "|" .. table.concat(sep, "|") .. "|"
for _, r in ipairs(rows) do
  local cells = {}
  for _, s in ipairs(use) do
    local v = r[s[2]]
    cells[#cells + 1] = (v == nil or v == "-") and dash(v) or (s[3] and s[3](v) or v)
  end
  out[#out + 1] = "| " .. table.concat(cells, " | ") .. " |"
end
for _, s in ipairs(skipped) do
  if not args.C or s.C == args.C then
    out[#out + 1] = string.format("\n`%s` at C = %s: %s", s.head, commas(s.C), s.why)
  end
end
local fname = args.file:match("[^/]*$")
out[#out + 1] = ""
out[#out + 1] = string.format("B = %s, D = %s, C = %s, %s threads, best of %s steps; FMA peak %s GFLOP/s measured "
                              .. "in the run; load average %s at the start, %s after; %s. Written by "
                              .. "`tools/bench_table.lua` from `docs/runs/bench/%s`.",
                              info.B or "?", info.D or "?", table.concat((function()
                                local t = {}
                                for i, c in ipairs(Cs) do t[i] = commas(c) end
                                return t
                              end)(), " and "), info.threads or "?", info.best or "?", info.peak,
                              info.load0 or "?", info.load1 or "?",
                              info.torch and ("PyTorch " .. info.torch .. " in the same run") or "no PyTorch peer",
                              fname)
local table_md = table.concat(out, "\n")
if args.write then
  if not args.section then die("--write needs --section NAME") end
  cli.write_section(args.write, args.section, table_md, WHO)
  print(string.format("%s: wrote %d rows into %s (section %s)", WHO, #rows, args.write, args.section))
else
  print(table_md)
end
