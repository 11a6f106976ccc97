-- api_fuzz.lua — a seeded call-stream fuzzer of the public Lua API. Every call gets random
-- arguments: tensors of odd shapes, dtypes and views with NaN/inf, integers that overflow sizes
-- (2^31, 2^40, 2^62, math.maxinteger, negatives), label lists out of range, option tables with
-- unknown and mistyped keys, and tables whose __index/__len run the garbage collector and make
-- fresh values (the borrowed-pointer class). A quarter of the steps mutate a valid .npy, .npz,
-- IDX or checkpoint.json and load it. Errors are expected; a crash, a sanitizer report or a
-- raise from load_checkpoint (which must return nil, message) is a finding.
--
--   fvl tests/fuzz/api_fuzz.lua [seed [seconds [max_calls]]]
--   FVL_FUZZ_VERBOSE=1 prints every call before making it (to find the one that crashed:
--   rerun with the same seed). Run it under the ASan build (DEVELOPERS.md, "Fuzzing").
local seed = tonumber(arg and arg[1]) or tonumber(os.getenv("FVL_FUZZ_SEED")) or 1
local seconds = tonumber(arg and arg[2]) or tonumber(os.getenv("FVL_FUZZ_SECONDS")) or 10
local max_calls = tonumber(arg and arg[3]) or math.huge
local verbose = os.getenv("FVL_FUZZ_VERBOSE") == "1"

math.randomseed(seed)
fvl.manual_seed(seed)
local R = math.random
local function pick(list) return list[R(1, #list)] end

local tmp = os.tmpname()
os.remove(tmp)
assert(os.execute("mkdir -p '" .. tmp .. "'"))

-- ------------------------------------------------------------------ the functions
local SKIP = {   -- processes, the network, threads, terminals, slow whole-dataset readers
  sys = true, store = true, sweep = true, dist = true, dist_core = true, _bench = true, threads = true,
  clock = true, _walltime = true, _isatty = true, log = true, progress = true, repl = true,
  loader = true, Loader = true, _loader_batch = true, _loader_perm = true, fashion_mnist = true,
  mnist = true, lfw_pairs = true, folder_to_rec = true, images = true, _imgset_folder = true,
  boundaries = true, boundary_animation = true, boundary_animations = true, training_animation = true,
  history = true, use_reference = true, set_rng_state = true,
}
local funcs = {}
local function collect(t, name, depth)
  local names = {}
  for k in pairs(t) do if type(k) == "string" then names[#names + 1] = k end end
  table.sort(names)
  for _, k in ipairs(names) do
    local v = t[k]
    if not SKIP[k] then
      if type(v) == "function" then funcs[#funcs + 1] = { name .. "." .. k, v }
      elseif type(v) == "table" and depth < 2 and k ~= "Tensor" and k ~= "_options" then
        collect(v, name .. "." .. k, depth + 1)
      end
    end
  end
end
collect(fvl, "fvl", 0)
local methods = {}
for k, v in pairs(fvl.Tensor) do
  if type(v) == "function" and k ~= "free" then methods[#methods + 1] = k end
end
table.sort(methods)

-- option keys and enum-like words the API knows, to hit the declared tables
local WORDS = { "s", "m", "t", "a", "b", "lr", "step", "hard", "target", "fallback", "mm", "arc", "cos",
                "none", "clamp", "easy", "file", "title", "names", "classes", "dim", "weight", "float32",
                "int32", "float64", "series", "x", "y", "label", "n", "seed", "k", "folds", "far", "metric",
                "l2", "cosine", "split", "base", "auto", "strict", "net", "head", "opt", "extra", "given",
                "value", "threshold", "row", "gws", "nonfinite", "warn", "error", "momentum", "mode" }
for _, keys in pairs(fvl._options or {}) do for _, k in ipairs(keys) do WORDS[#WORDS + 1] = k end end

-- ------------------------------------------------------------------ values
local pool = {}
local function remember(v)
  if v == nil then return end
  if #pool < 48 then pool[#pool + 1] = v else pool[R(1, #pool)] = v end
end

local SIZES = { 0, 1, 1, 2, 2, 3, 3, 4, 5, 7, 8, 16 }
local HUGE = { -1, -2, 2^31, 2^32, 2^40, 2^62, math.maxinteger, math.mininteger, -2147483648, 2147483647,
               2147483648, (1 << 60) + 1, 1.5, 0 / 0, math.huge, -math.huge, 1e300 }
-- sizes such as 2^31 are valid shapes of 8 GB: only under ASan with max_allocation_size_mb (as
-- .ci/run and tests/fuzz/run.sh set it) do they fail cleanly; elsewhere leave them out
if not (os.getenv("ASAN_OPTIONS") or ""):find("max_allocation_size_mb", 1, true) then
  local keep = {}
  for _, v in ipairs(HUGE) do
    if not (math.abs(v) >= 2^20 and math.abs(v) < 2^41) then keep[#keep + 1] = v end
  end
  HUGE = keep
end
local function size() return R() < 0.93 and pick(SIZES) or pick(HUGE) end
local function number()
  local r = R()
  if r < 0.5 then return pick(SIZES) end
  if r < 0.7 then return R() * 4 - 2 end
  return pick(HUGE)
end

local gen   -- forward

local function tensor()
  local nd = R(0, 4)
  local shape = {}
  for i = 1, nd do shape[i] = pick(SIZES) end
  local ok, t = pcall(fvl.randn, table.unpack(shape))
  if not ok then t = fvl.randn(2, 3) end
  local r = R()
  if r < 0.15 and t:numel() > 0 then t = t:contiguous():reshape(-1); t:set(R(1, t:numel()), pick { 0 / 0, math.huge, -math.huge }) end
  if r > 0.8 then t = t:int() end
  if R() < 0.2 and t:dim() == 2 then t = t:t() end
  if R() < 0.1 and t:dim() >= 1 and t:size(1) > 1 then t = t:narrow(1, 2, t:size(1) - 1) end
  if R() < 0.1 then t = t:float(); t:requires_grad() end
  return t
end

local function list(n)
  local l = {}
  for i = 1, n or R(0, 6) do l[i] = R() < 0.85 and R(0, 6) or number() end
  return l
end

-- a table whose reads make fresh values and run the collector
local function gc_proxy(depth)
  local inner = {}
  for i = 1, R(0, 5) do inner[pick(WORDS)] = gen(depth + 1) end
  for i = 1, R(0, 4) do inner[i] = gen(depth + 1) end
  local n = R() < 0.8 and #inner or pick(HUGE)
  return setmetatable({}, {
    __index = function(_, k)
      collectgarbage()
      local v = inner[k]
      if v == nil and R() < 0.3 then v = gen(depth + 1) end
      if type(v) == "userdata" and R() < 0.5 then local ok, c = pcall(function() return v:clone() end) if ok then v = c end end
      if type(v) == "string" then v = v .. "" .. string.rep("-", R(0, 3)) end
      collectgarbage()
      return v
    end,
    __len = function() return math.type(n) == "integer" and n or 3 end,
  })
end

local function opts(depth)
  local o = {}
  for i = 1, R(0, 5) do o[pick(WORDS)] = gen(depth + 1) end
  return o
end

local function path()
  local ext = pick { ".npy", ".npz", ".png", ".gif", ".svg", ".pdf", ".idx", ".gz", ".rec", ".bin", ".json", "", "/" }
  return tmp .. "/f" .. R(1, 12) .. ext
end

function gen(depth)
  depth = depth or 0
  local r = R(1, depth > 2 and 7 or 12)
  if r == 1 then return number() end
  if r == 2 then return tensor() end
  if r == 3 then return #pool > 0 and pick(pool) or tensor() end
  if r == 4 then return pick(WORDS) end
  if r == 5 then return R() < 0.5 end
  if r == 6 then return nil end
  if r == 7 then return path() end
  if r == 8 then return list() end
  if r == 9 then return opts(depth) end
  if r == 10 then return gc_proxy(depth) end
  if r == 11 then return { list(), list() } end
  return function(...) return gen(3) end
end

-- ------------------------------------------------------------------ hostile files
local function write(p, s)
  local f = io.open(p, "wb")
  if f then f:write(s) f:close() end
end
local function read(p)
  local f = io.open(p, "rb")
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end
local function mutate(s)
  local b = { string.byte(s, 1, -1) }
  for _ = 1, R(1, 8) do
    local r = R()
    if #b == 0 or r < 0.3 then table.insert(b, R(1, #b + 1), R(0, 255))
    elseif r < 0.55 then b[R(1, #b)] = R(0, 255)
    elseif r < 0.75 then table.remove(b, R(1, #b))
    elseif r < 0.9 then for _ = 1, R(1, math.min(64, #b)) do table.remove(b) end   -- truncate
    else b[R(1, #b)] = pick { 40, 41, 44, 58, 39, 48, 57, 123, 125, 91, 93, 34 } end
  end
  local out = {}
  for i = 1, #b, 4096 do out[#out + 1] = string.char(table.unpack(b, i, math.min(#b, i + 4095))) end
  return table.concat(out)
end

local seeds = {}
do
  local t = fvl.randn(3, 4)
  fvl._npy_save_1(tmp .. "/seed.npy", t)
  seeds.npy = read(tmp .. "/seed.npy")
  fvl._npy_save_1(tmp .. "/seedi.npy", fvl.tensor({ 1, 2, 3 }, "int32"))
  seeds.npyi = read(tmp .. "/seedi.npy")
  if fvl._npz_write then
    pcall(fvl._npz_write, tmp .. "/seed.npz", { "a", "b" }, { t, fvl.tensor({ 1, 2 }, "int32") })
    seeds.npz = read(tmp .. "/seed.npz")
  end
  seeds.idx = "\0\0\8\3" .. string.pack(">I4>I4>I4", 2, 2, 3) .. string.rep("\7", 12)
  seeds.idxl = "\0\0\12\1" .. string.pack(">I4", 2) .. string.pack(">i4>i4", 5, 9)
  local ck = tmp .. "/ck"
  fvl.save_checkpoint(ck, { net = fvl.nn.Linear(2, 2), step = 3, extra = { a = { 1, 2 }, t = fvl.ones(2) } })
  seeds.ck = read(ck .. "/checkpoint.json")
end

local function file_step()
  local kind = pick { "npy", "npyi", "npz", "idx", "idxl", "ck", "ck" }
  local s = seeds[kind]
  if not s then return "skip" end
  local m = mutate(s)
  if kind == "ck" then
    write(tmp .. "/ck/checkpoint.json", m)
    local ok, err = pcall(fvl.load_checkpoint, tmp .. "/ck")
    if not ok then
      error(string.format("FINDING: load_checkpoint raised instead of returning nil, message: %s\nheader: %q",
                          tostring(err), m), 0)
    end
    return "load_checkpoint(mutated header)"
  end
  local p = tmp .. "/m." .. (kind:sub(1, 3) == "idx" and "idx" or kind:sub(1, 3))
  write(p, m)
  if kind:sub(1, 3) == "idx" then
    pcall(fvl._idx_load, p, pick { "int32", "float32" }, 1, pick { 0, 1, 2^31 })
    pcall(fvl.data.idx, p)
  else
    pcall(fvl.load, p)
    pcall(fvl._npy_load_1, p)
  end
  return "load(mutated " .. kind .. ")"
end

-- ------------------------------------------------------------------ the run
local function describe(v)
  local t = type(v)
  if t == "userdata" then
    local ok, s = pcall(function() return v:dtype() .. "[" .. table.concat(v:shape(), "x") .. "]" end)
    return ok and s or tostring(v)
  end
  if t == "table" then return getmetatable(v) and "proxy" or "{#" .. #v .. "}" end
  if t == "string" then return string.format("%q", v) end
  return tostring(v)
end

-- Lua-side runaway loops end the call (C work is bounded by the small shapes)
local function guard() debug.sethook(function() error("fuzz: instruction budget", 0) end, "", 2e6) end

local t0 = fvl._walltime and fvl._walltime() or os.time()
local now = function() return fvl._walltime and fvl._walltime() or os.time() end
local calls, errors, files = 0, 0, 0
while calls < max_calls and now() - t0 < seconds do
  calls = calls + 1
  local desc
  if R() < 0.25 then
    files = files + 1
    desc = file_step()
  else
    local f, name, args, self
    if R() < 0.4 and #methods > 0 then
      local obj = R() < 0.6 and #pool > 0 and pick(pool) or tensor()
      local mname = pick(methods)
      name = "Tensor:" .. mname
      f = function(...) return fvl.Tensor[mname](...) end
      self = obj
    else
      local e = pick(funcs)
      name, f = e[1], e[2]
    end
    args = {}
    local n = R(0, 5)
    for i = 1, n do args[i] = gen(0) end
    if self ~= nil then table.insert(args, 1, self); n = n + 1 end
    if verbose then
      local d = {}
      for i = 1, n do d[i] = describe(args[i]) end
      io.stderr:write(string.format("[%d] %s(%s)\n", calls, name, table.concat(d, ", ")))
      io.stderr:flush()
    end
    guard()
    local res = table.pack(pcall(f, table.unpack(args, 1, n)))
    debug.sethook()
    if res[1] then
      for i = 2, math.min(res.n, 3) do if type(res[i]) == "userdata" or type(res[i]) == "table" then remember(res[i]) end end
    else
      errors = errors + 1
      local msg = tostring(res[2])
      if msg:find("FINDING", 1, true) then error(msg, 0) end
    end
    desc = name
  end
  if calls % 500 == 0 then collectgarbage() end
  if verbose then io.stderr:write("  done ", tostring(desc), "\n") end
end
pool = nil
collectgarbage()
collectgarbage()
os.execute("rm -rf '" .. tmp .. "'")
print(string.format("api_fuzz: seed %d, %d calls (%d file mutations), %d raised errors, no crash", seed,
                    calls, files, errors))
