-- tools/gen_api.lua — writes docs/api.md and lua/fvl/apidoc.lua from the doc comments in the
-- sources, so the reference has one source.
--
--   build/fvl tools/gen_api.lua [--root DIR] [--out DIR]
--   (or stock Lua with the module: LUA_CPATH='build/?.so;;' lua5.4 tools/gen_api.lua ...)
--
-- Doc comments:
--  * Lua (lua/fvl/**.lua): the comment block (`---` or `--` lines) directly above a public
--    `function mod.name(...)` / `function Class:name(...)`; the signature is the function line.
--  * C bindings (lua/bind_*.c): `/*** fvl.name(args) -> result` then the text, ending `*/`,
--    above the function; the first line is the signature.
--  * Loss heads (lua/fvl/loss/*.lua): each `function M.<head>(o)` constructor; its options and
--    their defaults are read from the `num/enum/bool/util.integer(n, "key", o.key, default...)`
--    calls in its body, plus the options every head takes (base.COMMON).
-- The test tests/cli/api_docs.sh fails when the committed files differ from a fresh run.
local fvl = fvl or require "fvl"   -- fvl.sys.write_atomic: the one atomic writer
local argparse = require "argparse"
local parser = argparse("gen_api.lua",
  "Writes docs/api.md and lua/fvl/apidoc.lua from the doc comments in the sources.")
parser:option("--root", "repository root to read", ".")
parser:option("--out", "directory to write docs/api.md and lua/fvl/apidoc.lua under (default: root)")
local args = parser:parse(arg)
local root, out = args.root, args.out or args.root

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local function lines(s)
  local t = {}
  for l in (s .. "\n"):gmatch("(.-)\r?\n") do t[#t + 1] = l end
  return t
end

local function list(cmd)
  local p = assert(io.popen(cmd))
  local t = {}
  for l in p:lines() do t[#t + 1] = l end
  p:close()
  table.sort(t)
  return t
end

local entries = {}            -- {name=, module=, sig=, text=}
local function add(module, name, sig, text, group)
  entries[#entries + 1] = { module = module, name = name, sig = sig, text = text, group = group }
end

-- ------------------------------------------------------------------ Lua sources
local lua_files = list("cd '" .. root .. "' && find lua/fvl -name '*.lua'")

-- module name of a file, and the name its public functions get (faces.lua installs into fvl.data)
local function module_of(path)
  local m = path:gsub("^lua/", ""):gsub("%.lua$", ""):gsub("/init$", ""):gsub("/", ".")
  if m == "fvl.faces" then return "fvl.data" end
  return m
end

local SEPARATOR = "^%-%-%s+[%-=][%-=][%-=]"   -- "-- ------- title" lines are section separators

local function comment_above(ls, i)
  local block = {}
  local j = i - 1
  while j >= 1 and ls[j]:match("^%s*%-%-") and not ls[j]:match(SEPARATOR) and not ls[j]:match("%-%-%-%-%-%s*$")
        and not ls[j]:match("^%s*%-%-%-%s*@doc") do   -- "-- JSON ------": a section title, not a doc
    table.insert(block, 1, (ls[j]:gsub("^%s*%-%-%-? ?", "")))
    j = j - 1
  end
  return block
end

-- loss heads: options and defaults from the constructor body
local function head_options(ls, i, src)
  local opts, seen, keys = {}, {}, {}
  local last = #ls
  for j = i + 1, #ls do
    if ls[j]:match("^end") or ls[j]:match("^function") then last = j - 1; break end
  end
  for j = i + 1, last do
    for key, rest in ls[j]:gmatch('"([%w_]+)", o%.[%w_]+,%s*(.-)%)') do
      if not seen[key] then
        local choices, def = rest:match("^(%b{}),%s*([^,]+)")
        if not choices then
          local var
          var, def = rest:match("^(%u[%u_]*),%s*([^,]+)")
          choices = var and src:match(var .. "%s*=%s*(%b{})")
        end
        if not choices then def = rest:match("^([^,]+)") end
        if def == "nil" then def = nil end
        seen[key] = { default = def, choices = choices }
      end
    end
    local list_ = ls[j]:match("opts%(base%.COMMON,%s*(%b{})") or ls[j]:match("opts%(COMMON,%s*(%b{})")
    if list_ then
      for key in list_:gmatch('"([%w_]+)"') do keys[#keys + 1] = key end
    end
  end
  for _, key in ipairs(keys) do
    local d = seen[key] or {}
    opts[#opts + 1] = { key = key, default = d.default, choices = d.choices }
  end
  return opts
end

local COMMON_TEXT = "dim (feature size), classes (number of identities), weight (a C×D tensor to "
  .. "start from), nonfinite (\"error\" | \"warn\"), sharded (false: classes split over the "
  .. "fvl.dist ranks), partial_fc (a sampling rate in (0, 1]: Partial FC)"

local function add_head(name, block, o)
  block[#block + 1] = "Options (a table; unknown keys are an error): " .. COMMON_TEXT .. ";"
  for _, op in ipairs(o) do
    local s = "  " .. op.key
    if op.choices then s = s .. " " .. op.choices:gsub('"', "") end
    if op.default then s = s .. " = " .. op.default end
    block[#block + 1] = s
  end
  add("fvl.loss", name, name .. "{dim = D, classes = C, ...} -> head", table.concat(block, "\n"))
end

-- modules whose functions users reach under another module's name (installed there)
local INSTALLED_AS = { ["fvl.faces"] = "fvl.data", ["fvl.diagnostics"] = "fvl.eval", ["fvl.cluster"] = "fvl.eval", ["fvl.megaface"] = "fvl.eval", ["fvl.sweep.report"] = "fvl.sweep",
                       ["fvl.conventions"] = "fvl", ["fvl.backbones"] = "fvl.nn" }
INSTALLED_AS["fvl.align"] = "fvl.data"   -- face alignment and resizing (lua/fvl/align.lua)
INSTALLED_AS["fvl.ijb"] = "fvl.eval"     -- the IJB-B / IJB-C 1:1 protocol (lua/fvl/ijb.lua)
-- files with no public functions of their own: the generated reference itself; the sharded and
-- reference versions of the fvl.F primitives (reached through the heads' options); the model and
-- pack writers that fvl.nn.save/load and fvl.eval.bin_pack wrap (documented there); the sweep worker
local INTERNAL_FILES = { ["lua/fvl/apidoc.lua"] = true, ["lua/fvl/loss/sharded.lua"] = true,
                         ["lua/fvl/loss/reference.lua"] = true, ["lua/fvl/model_io.lua"] = true,
                         ["lua/fvl/verify_pack.lua"] = true, ["lua/fvl/sweep/worker.lua"] = true }

-- `--- @doc fvl.name(args) -> result` then `---` lines: an entry for a function the source makes
-- at run time (a layer class built by a helper, a wrapper installed into another module)
local function doc_blocks(module, ls)
  for i, l in ipairs(ls) do
    local sig = l:match("^%-%-%-%s*@doc%s+(.-)%s*$")
    if sig then
      local text, j = {}, i + 1
      while ls[j] and ls[j]:match("^%-%-%-") and not ls[j]:match("^%-%-%-%s*@doc") do
        text[#text + 1] = (ls[j]:gsub("^%-%-%- ?", ""))
        j = j + 1
      end
      local name = sig:match("^([%w_%.:]+)")
      add(name:match("^(.*)[%.:]") or module, name, sig, table.concat(text, "\n"))
    end
  end
end

for _, path in ipairs(lua_files) do
  if INTERNAL_FILES[path] then goto continue end
  local module = module_of(path)
  local pubmod = INSTALLED_AS[module] or module
  local src = read(root .. "/" .. path)
  local ls = lines(src)
  doc_blocks(pubmod, ls)
  local is_head_file = path:match("^lua/fvl/loss/") and not path:match("init%.lua$")
  local modtbl = src:match("\nreturn ([%w_]+)%s*$")
  -- classes: `local X = util.class("fvl.plot.Panel")` (or nn.class / class): X's methods are
  -- documented under that name; a name without "fvl." is relative to the module (fvl.nn for layers)
  local classes = {}
  for var, cname in src:gmatch("local ([%w_]+) = [%w_%.]*class%(\"([%w_%.]+)\"") do
    classes[var] = cname:match("^fvl%.") and cname or (pubmod .. "." .. cname)
  end
  -- a class written by hand and registered under its name (util.register_class(Loader,
  -- "fvl.data.ImageLoader")): two files' `Loader` tables are two classes
  for var, cname in src:gmatch("register_class%(([%w_]+),%s*\"([%w_%.]+)\"%)") do
    classes[var] = classes[var] or (cname:match("^fvl%.") and cname or (pubmod .. "." .. cname))
  end
  for var, hname in src:gmatch("local ([%w_]+) = cosine_head%(\"([%w_]+)\"%)") do   -- margin heads' classes
    classes[var] = "fvl.loss." .. hname
  end
  -- sub-tables of the module: `nn.init = init`
  local subs = {}
  if modtbl then
    for sub, var in src:gmatch("\n" .. modtbl .. "%.([%w_]+) = ([%w_]+)%s") do subs[var] = pubmod .. "." .. sub end
  end
  for i, l in ipairs(ls) do
    -- top-level functions, and those a module defines inside its installer (fvl.backbones)
    local indent, tbl, sep, fname, params = l:match("^(%s*)function ([%w_]+)([%.:])([%w_]+)(%b())")
    if tbl and not fname:match("^_") then
      local block = comment_above(ls, i)
      local is_head = is_head_file and tbl == "M" and sep == "." and params == "(o)"
      local name, sig
      if classes[tbl] then
        if sep == "." and fname == "create" then      -- fvl.nn.Linear(...) calls Linear.create
          name = classes[tbl]
          sig = name .. params
        else
          name = classes[tbl] .. sep .. fname
        end
      elseif tbl == "fvl" then
        name = "fvl." .. fname
      elseif subs[tbl] then
        name = subs[tbl] .. sep .. fname
      elseif is_head_file or path == "lua/fvl/loss/base.lua" then
        name = is_head and ("fvl.loss." .. fname) or nil   -- the heads' helpers are internal
      elseif indent ~= "" and tbl ~= pubmod:match("([%w_]+)$") then
        name = nil                            -- a local helper's function
      elseif tbl:match("^%u%w") then          -- a class table (fvl.conventions' Tensor), not M/D/R
        name = pubmod .. "." .. tbl .. sep .. fname
      elseif tbl == "M" or tbl == modtbl or tbl == module:match("([%w_]+)$") or module:match("%." .. tbl .. "$")
             or tbl == pubmod:match("([%w_]+)$") then
        name = pubmod .. sep .. fname
      end
      if is_head and name then
        if #block == 0 then   -- the family's section header: "-- NormFace: z = s·c -----"
          for j = i - 1, math.max(1, i - 4), -1 do
            local h = ls[j]:match("^%-%- (.-)%s*%-%-%-+%s*$")
            if h then block = { h }; break end
          end
        end
        add_head(name, block, head_options(ls, i, src))
      elseif name and #block > 0 then
        -- a block that starts with its own usage line, "t:softmax([dim]) -> tensor: text", gives
        -- the signature (optional arguments in brackets) instead of the function line
        local usage, rest = block[1]:match("^([%w_%.:]+%b()[^:]- %-> [^:]-): (.*)$")
        if not usage then usage = block[1]:match("^([%w_%.:]+%b()[^:]- %-> [^:]-)$"); rest = usage and "" end
        if usage and not sig then
          sig = usage
          -- function Tensor.softmax(t, dim) used as t:softmax(dim): documented as a method
          if sep == "." and usage:match("^[%w_]+:") then name = name:gsub("%.([%w_]+)$", ":%1") end
          block[1] = rest
          if block[1] == "" then table.remove(block, 1) end
        end
        add(name:match("^(.*)[%.:]") or pubmod, name, sig or (name .. params), table.concat(block, "\n"))
      end
    end
    -- a head made by a factory: M.cosface = make_cosface("cosface", 64)   -- comment
    local hname, factory, cargs = l:match("^M%.([%w_]+) = ([%w_]+)%((.-)%)")
    if is_head_file and hname then
      for fi, fl in ipairs(ls) do
        local fparams = fl:match("^local function " .. factory .. "%((.-)%)")
        if fparams then
          local subst, pn, an = {}, {}, {}
          for p in fparams:gmatch("[%w_]+") do pn[#pn + 1] = p end
          for a in cargs:gmatch("[^,]+") do an[#an + 1] = a:match("^%s*(.-)%s*$") end
          for k, p in ipairs(pn) do subst[p] = an[k] end
          local o = head_options(ls, fi, src)
          for _, op in ipairs(o) do
            if op.default and subst[op.default] then op.default = subst[op.default] end
          end
          local block = {}
          for j = fi - 1, math.max(1, fi - 4), -1 do
            local h = ls[j]:match("^%-%- (.-)%s*%-%-%-+%s*$")
            if h then block = { h }; break end
          end
          local note = l:match("%)%s*%-%-%s*(.-)%s*$")
          if note then block[#block + 1] = note end
          add_head("fvl.loss." .. hname, block, o)
          break
        end
      end
    end
  end
  ::continue::
end

-- ------------------------------------------------------------------ C bindings
-- A block may start with several signatures (one per line, each `fvl.name(...)`, `*** ` or ` * `
-- before the later ones): functions that share one description (e.g. the elementwise ops) get
-- one entry each, with every signature and the shared text.
for _, path in ipairs(list("cd '" .. root .. "' && ls lua/bind_*.c")) do
  local s = read(root .. "/" .. path)
  for body in s:gmatch("/%*%*%*%s(.-)%*/") do
    local ls = lines(body)
    local sigs, k = { (ls[1]:gsub("%s+$", "")) }, 2
    while ls[k] do
      local more = ls[k]:match("^%s*%**%s*(fvl[%w_]*[%.:][%w_%.:]+%b().-)%s*$")
      if not more then break end
      sigs[#sigs + 1] = more
      k = k + 1
    end
    local text = {}
    for j = k, #ls do
      local t = ls[j]:gsub("^%s*%*?%s?%s?", ""):gsub("%s+$", "")
      if t ~= "" or #text > 0 then text[#text + 1] = t end
    end
    while #text > 0 and text[#text] == "" do text[#text] = nil end
    local group = #sigs > 1 and sigs[1] or nil   -- one text for several functions
    for _, sig in ipairs(sigs) do
      local name = sig:match("^([%w_%.:]+)")
      add(name:match("^(.*)[%.:]") or "fvl", name, table.concat(sigs, "\n"), table.concat(text, "\n"), group)
    end
  end
end

for i, e in ipairs(entries) do e.seq = i end   -- (table.sort is not stable: ties keep the source order)
table.sort(entries, function(a, b)
  if a.module ~= b.module then return a.module < b.module end
  if a.name ~= b.name then return a.name < b.name end
  return a.seq < b.seq
end)

-- ------------------------------------------------------------------ outputs
local function write(path, s)
  local ok, msg = fvl.sys.write_atomic(path, s)
  if not ok then error("gen_api.lua: " .. msg, 0) end
end

local md = { "# The fvl API\n",
  "Generated by `tools/gen_api.lua` from the doc comments in lua/fvl/ and lua/bind_*.c; do not",
  "edit by hand (`build/fvl tools/gen_api.lua` rewrites it; ctest's api_docs test fails when it is",
  "out of date). In the REPL, `? fvl.name` prints the same text.\n" }
-- the functions sharing one text are written once, under the place of the first (in name order)
local members, first_of = {}, {}
for _, e in ipairs(entries) do
  if e.group then
    members[e.group] = members[e.group] or {}
    table.insert(members[e.group], e.name)
    first_of[e.group] = first_of[e.group] or e.name
  end
end
local module
for _, e in ipairs(entries) do
  if not e.group or first_of[e.group] == e.name then
    if e.module ~= module then
      module = e.module
      md[#md + 1] = "## " .. module .. "\n"
    end
    for _, n in ipairs(e.group and members[e.group] or { e.name }) do md[#md + 1] = "### `" .. n .. "`\n" end
    md[#md + 1] = "```\n" .. e.sig .. "\n```\n"
    if e.text ~= "" then md[#md + 1] = e.text .. "\n" end
  end
end
write(out .. "/docs/api.md", table.concat(md, "\n"))

local lt = { "-- fvl.apidoc — generated by tools/gen_api.lua (do not edit): name -> help text, the",
  "-- entries of docs/api.md ({same = name}: the text of another function, shared); fvl.help.lookup",
  "-- finds one for the REPL's `? expr`.", "return {" }
for _, e in ipairs(entries) do
  if e.group and first_of[e.group] ~= e.name then
    lt[#lt + 1] = string.format("  [%q] = { same = %q },", e.name, first_of[e.group])   -- the shared text
  else
    local txt = e.sig .. (e.text ~= "" and "\n" .. e.text or "")
    lt[#lt + 1] = string.format("  [%q] = %q,", e.name, txt)
  end
end
lt[#lt + 1] = "}\n"
write(out .. "/lua/fvl/apidoc.lua", table.concat(lt, "\n"))
print(string.format("gen_api: %d entries", #entries))
