-- docs/api.md covers the whole public API: every function reachable from the `fvl` table (its
-- submodules loaded, classes and their methods, fvl.Tensor's methods) and from the modules
-- scripts require directly (fvl.cli) has an entry in fvl.apidoc (the generated text of
-- docs/api.md, which the REPL's `? name` prints), and every entry names such a function, a loss
-- head or a head's method: nothing internal is listed.
local fvl = fvl or require "fvl"
local help = require "fvl.help"

-- modules a user requires by name besides fvl (scripts parse options with fvl.cli)
local REQUIRED = { ["fvl.cli"] = require "fvl.cli" }

-- The exclusions, each with its reason:
--  * a path segment starting with "_": internal by convention (the bindings behind the Lua
--    library: fvl._plot, fvl._eval, fvl._bench, fvl.nn._classes; metamethods __add, __call, ...:
--    the operators are documented under fvl.Tensor and fvl.nn.Module);
--  * fvl.dist_core: the MPI binding that fvl.dist wraps (its public names are fvl.dist.*);
--  * fvl.plot.boundary_presets / boundary_sweeps: per-head data (each head's boundary and how its
--    margin grows in an animation), described by fvl.plot.boundaries and boundary_animation.
local EXCLUDED = { "^fvl%.dist_core%.", "^fvl%.plot%.boundary_presets%.", "^fvl%.plot%.boundary_sweeps%." }
-- a layer's or head's own forward/describe implements the interface documented once on its base
-- class (fvl.nn.Module:forward, fvl.nn.Module:describe)
local INTERFACE = { forward = "fvl.nn.Module:forward", describe = "fvl.nn.Module:describe" }

local function excluded(name)
  if name:find("[%.:]_") then return true end
  for _, p in ipairs(EXCLUDED) do if name:find(p) then return true end end
  return false
end

-- every function reachable from a table, with the names it is reached by
local function public_functions()
  for k in pairs(getmetatable(fvl).__complete) do local _ = fvl[k] end   -- lazy submodules
  local names, open = {}, {}
  local function walk(t, path, depth)   -- every path to each function (a class's methods are
    if open[t] or depth > 5 then return end   -- also reached through its subclasses)
    open[t] = true
    local keys = {}
    for k in pairs(t) do if type(k) == "string" then keys[#keys + 1] = k end end
    table.sort(keys)
    for _, k in ipairs(keys) do
      local v, name = rawget(t, k), path .. "." .. k
      if not excluded(name) then
        if type(v) == "function" then
          names[v] = names[v] or {}
          table.insert(names[v], name)
        elseif type(v) == "table" then
          walk(v, name, depth + 1)
        end
      end
    end
    open[t] = nil
  end
  walk(fvl, "fvl", 0)
  walk(require "fvl.conventions", "fvl.Tensor", 1)   -- tensor methods written in Lua
  for mname, m in pairs(REQUIRED) do walk(m, mname, 1) end
  return names
end

-- entries by their dotted name (fvl.Tensor:abs is reached as fvl.Tensor.abs)
local function dotted(n) return (n:gsub(":", ".")) end
local entry_of = {}
for k in pairs(help.entries) do entry_of[dotted(k)] = k end

local function covered(name)
  if entry_of[name] then return true end
  local cls, meth = name:match("^(.*)%.([%w_]+)$")
  if meth == "create" and entry_of[cls] then return true end            -- fvl.nn.Linear(...) constructs
  if INTERFACE[meth] and help.entries[INTERFACE[meth]] then return true end
  return false
end

describe("docs/api.md covers the public API", function()
  local names = public_functions()
  it("every public function has an entry", function()
    local missing = {}
    for _, ns in pairs(names) do
      local ok = false
      for _, n in ipairs(ns) do if covered(n) then ok = true; break end end
      if not ok then missing[#missing + 1] = ns[1] end
    end
    table.sort(missing)
    expect_true(#missing == 0, #missing .. " public functions without an entry in docs/api.md (write a doc " ..
                "comment, then run build/fvl tools/gen_api.lua):\n  " .. table.concat(missing, "\n  "))
  end)

  it("every entry is public: a public function, a loss head, or a head's method", function()
    local public = {}
    for _, ns in pairs(names) do for _, n in ipairs(ns) do public[n] = true end end
    local heads = {}
    for _, h in ipairs(fvl.loss.names()) do heads["fvl.loss." .. h] = true end
    local stale = {}
    for k in pairs(help.entries) do
      local d = dotted(k)
      local owner = k:match("^(.-):[%w_]+$")
      local ok = public[d] or public[d .. ".create"] or heads[k] or (owner and heads[owner])
      if not ok then stale[#stale + 1] = k end
    end
    table.sort(stale)
    expect_true(#stale == 0, #stale .. " entries name nothing public (internal functions, or a name that " ..
                "is not how users reach it):\n  " .. table.concat(stale, "\n  "))
  end)
end)
