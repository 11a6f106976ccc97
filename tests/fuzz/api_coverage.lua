-- api_coverage.lua — which public functions (the headings of docs/api.md) the API fuzzer calls, and
-- how many of those calls returned without error. Every documented function is wrapped by a
-- counter before tests/fuzz/api_fuzz.lua runs; at the end the never-called and never-passed ones
-- are listed (a function the fuzzer only ever calls with arguments it rejects at the first check is
-- "called, 0 passed").
--
--   build/fvl tests/fuzz/api_coverage.lua [seeds (comma list) [seconds per seed]]
--   e.g. build/fvl tests/fuzz/api_coverage.lua 1,2,3 60
local seeds = arg and arg[1] or "1"
local seconds = arg and arg[2] or "30"
local root = (debug.getinfo(1, "S").source:match("^@(.*)/tests/fuzz/[^/]*$")) or "."

local f = assert(io.open(root .. "/docs/api.md"))
local names = {}
for line in f:lines() do
  local n = line:match("^### `(fvl[%w_.:]+)")
  if n then names[#names + 1] = n end
end
f:close()

for k in pairs(getmetatable(fvl).__complete or {}) do local _ = fvl[k] end
local calls, passed, missing = {}, {}, {}
local wrapped = setmetatable({}, { __mode = "k" })
for _, n in ipairs(names) do
  local path, method = n:match("^(.-):([%w_]+)$")
  path = path or n:match("^(.*)%.[%w_]+$")
  local key = method or n:match("([%w_]+)$")
  local owner = _G
  for part in path:gmatch("[%w_]+") do owner = type(owner) == "table" and owner[part] or nil end
  if owner == fvl.Tensor or path == "fvl.Tensor" then owner = fvl.Tensor end
  local fn = type(owner) == "table" and rawget(owner, key)
  if type(fn) == "function" and not wrapped[fn] then
    calls[n], passed[n] = 0, 0
    local w = function(...)
      calls[n] = calls[n] + 1
      local r = table.pack(fn(...))   -- an error propagates unchanged; only returns count as passed
      passed[n] = passed[n] + 1
      return table.unpack(r, 1, r.n)
    end
    wrapped[w] = true
    owner[key] = w
  else
    missing[#missing + 1] = n
  end
end

local fuzz = loadfile(root .. "/tests/fuzz/api_fuzz.lua")
for seed in seeds:gmatch("[^,]+") do
  arg = { seed, seconds }
  assert(pcall(fuzz))
end

local never, failed = {}, {}
for _, n in ipairs(names) do
  if calls[n] == 0 then never[#never + 1] = n
  elseif calls[n] and passed[n] == 0 then failed[#failed + 1] = n .. " (" .. calls[n] .. ")" end
end
print(string.format("api_coverage: %d documented functions, %d wrapped, %d never called, %d called but never passed",
                    #names, #names - #missing, #never, #failed))
print("never called: " .. table.concat(never, " "))
print("called, never passed: " .. table.concat(failed, " "))
print("not wrapped (fields, classes, or looked up elsewhere): " .. table.concat(missing, " "))
