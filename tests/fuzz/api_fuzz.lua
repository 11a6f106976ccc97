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
  sys = true, store = true, sweep = true, _bench = true, threads = true,
  clock = true, _walltime = true, _isatty = true, log = true, progress = true, repl = true,
  loader = true, Loader = true, fashion_mnist = true,
  mnist = true, lfw_pairs = true, folder_to_rec = true, images = true, _imgset_folder = true,
  boundaries = true, boundary_animation = true, boundary_animations = true, training_animation = true,
  history = true, use_reference = true, set_rng_state = true,
  fvl = true,            -- fvl.util.fvl: the fvl table again
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
-- the Lua library's submodules load on first use (fvl.loss, fvl.nn, fvl.data, fvl.eval, ...): load
-- them all, so that their functions and their classes' methods are in the call table too
for k in pairs(getmetatable(fvl).__complete or {}) do local _ = fvl[k] end
collect(fvl, "fvl", 0)
local methods = {}
for k, v in pairs(fvl.Tensor) do
  if type(v) == "function" and k ~= "free" then methods[#methods + 1] = k end
end
for _, k in ipairs { "softmax", "log_softmax", "var", "std", "permute", "cumsum", "sort", "topk", "norm", "argsort" } do
  if not fvl.Tensor[k] then methods[#methods + 1] = k end   -- written in Lua (fvl.conventions): via the tensor
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
local capped = (os.getenv("ASAN_OPTIONS") or ""):find("max_allocation_size_mb", 1, true) ~= nil
if not capped then
  local keep = {}
  for _, v in ipairs(HUGE) do
    if not (math.abs(v) >= 2^20 and math.abs(v) < 2^41) then keep[#keep + 1] = v end
  end
  HUGE = keep
end
-- a size argument far past memory where allocations are capped (ASan), a negative one elsewhere
local B31, B40 = capped and 2^31 or -2^31, capped and 2^40 or -2^40
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
  -- a 0-size dimension beside sizes above int (numel 0: valid anywhere, and int casts or padded
  -- extents of the other sizes wrap)
  if capped and nd >= 2 and R() < 0.04 then   -- (a sum over the 0 makes 2^35 elements)
    shape[R(1, nd)] = pick { 2147483647, 2147483648, (1 << 32) + 3, 1 << 35 }
    shape[R(1, nd)] = 0
  end
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

-- ------------------------------------------------------------------ scenarios
-- Random calls rarely get past a constructor's checks; these build valid objects of the newest
-- public functions (every loss head and fvl.loss.margin, F.conv2d_bn_act, tiny IResNet and
-- MobileFaceNet, fvl.dist in a world of one with its sharded checkpoint and gather, the data
-- readers) and then feed them hostile inputs.
-- (2^31 only where allocations are capped: dim = 2^31 is a valid 16 GB head elsewhere)
local function small() return R() < 0.9 and R(1, 6) or pick { 0, -1, B31, 1.5, 0 / 0 } end
local function labels(B, C)
  if R() < 0.2 then return gen(0) end
  local y = {}
  for i = 1, (R() < 0.9 and B or R(0, B + 2)) do
    y[i] = R() < 0.9 and R(1, math.max(1, C)) or pick { 0, -1, C + 1, 2^31, 2^62, math.mininteger, 1.5, 0 / 0, "1" }
  end
  if R() < 0.2 then y = fvl.tensor(y, R() < 0.5 and "int32" or "float32") end
  if R() < 0.25 and fvl._check_labels then   -- a checked value (fvl.Labels), for the same or another shape
    local ok, v = pcall(fvl._check_labels, y, "fz", R() < 0.8 and B or R(0, B + 2), R() < 0.8 and C or pick { C + 1, -1, 0 })
    if ok then y = v end
  end
  return y
end
local function embeddings(B, D)
  local x = fvl.randn(B, D)
  if R() < 0.15 and B * D > 0 then x:view(-1):set(R(1, B * D), pick { 0 / 0, math.huge, 0 }) end
  if R() < 0.1 then x = fvl.zeros(B, D) end
  if R() < 0.1 then x = tensor() end
  if R() < 0.5 then x = x:float():requires_grad() end
  return x
end
local function margin_fn()   -- a user's target/negative rule: right, wrong or hostile
  local r = R()
  if r < 0.5 then return function(c) return c - 0.2 end end
  if r < 0.7 then return function(c) return gen(2) end end
  if r < 0.85 then return function(c) collectgarbage() return c * 0.5 end end
  return function() return { kind = pick { "affine", "cubic", 1 }, a = number(), b = number(), threshold = gen(2) } end
end
local HEADS = fvl.loss.names and fvl.loss.names() or {}
local passed = {}   -- calls of the scenarios that returned without error, by kind (printed at the end)
local function pass(kind, ok) if ok then passed[kind] = (passed[kind] or 0) + 1 end return ok end
local heads, nets = {}, {}
local function head_step()
  local name = pick(HEADS)
  local h = heads[name]
  if not h or R() < 0.3 then
    local o = { dim = small(), classes = small() }
    if R() < 0.3 then for _ = 1, R(1, 3) do o[pick(WORDS)] = gen(1) end end
    if name == "margin" or R() < 0.05 then o.target, o.negative = margin_fn(), R() < 0.5 and margin_fn() or nil end
    if R() < 0.1 then o.weight = tensor() end
    if R() < 0.15 then o.partial_fc = pick { 0.5, 1, 0, 2 } end
    local ok, hh = pcall(fvl.loss[name], R() < 0.05 and gc_proxy(1) or o)
    if not ok then return "loss." .. name .. "(bad options)" end
    h = hh
    heads[name] = h
  end
  local B = R(0, 5)
  local x, y = embeddings(B, R() < 0.85 and (h.dim or 4) or small()), labels(B, h.classes or 4)
  local call   -- Partial FC: a given sample, mostly sorted and covering the labels
  if h.shard and R() < 0.5 then
    local ids = {}
    for c = 1, h.classes or 4 do if R() < 0.8 then ids[#ids + 1] = c end end
    if R() < 0.3 and #ids > 0 then ids[R(1, #ids)] = pick { 0, -1, (h.classes or 4) + 1, 2^31 - 1 } end
    call = { sample = R() < 0.9 and fvl.tensor(ids, "int32") or gen(1) }
  end
  local ok, l = pcall(h, x, y, call)
  pass("head forward", ok)
  if ok and type(l) == "userdata" and R() < 0.7 then pass("head backward", pcall(function() l:backward() end)) end
  if R() < 0.2 then pcall(h.logits, h, x) end
  if R() < 0.1 then pcall(h.predict, h, x) end
  if R() < 0.1 then pcall(h.train, h, R() < 0.5) end
  return "loss." .. name
end
local function conv_bn_act_step()
  local N, Ci, H, W, Co = R(0, 2), R(1, 4), R(1, 6), R(1, 6), R(1, 4)
  local k = R(1, 3)
  local hostile = R() < 0.4   -- else only valid arguments (the epilogues' own paths)
  local function bad(good, ...) return (hostile and R() < 0.2) and pick { ... } or good end
  local g = bad(pick { 1, 1, Ci }, R(1, 4), 0, -1, 2^31)
  if g == Ci then Co = Ci * R(1, 2) end
  local x = bad(fvl.randn(N, Ci, H + k, W + k), tensor(), fvl.randn(N, Ci, 1, 1))
  local w = bad(fvl.randn(Co, math.max(1, Ci // math.max(1, math.type(g) == "integer" and g or 1)), k, k), tensor())
  local function vec()
    if R() < 0.3 then return nil end
    return bad(fvl.rand(Co) + 0.1, fvl.rand(R(0, 5)), gen(1), fvl.rand(Co):int())
  end
  local st, pd = bad(pick { 1, 1, 2, { 1, 2 } }, 0, 2^31, { 1 }), bad(pick { 0, 1, { 0, 1 } }, -1, B40, capped and 70000 or -70000)
  if R() < 0.2 then x = x:t() end
  if R() < 0.5 then
    pass("conv2d_bn_act", pcall(fvl.F.conv2d_bn_act, x, w, vec(), st, pd, g, vec(), vec(), vec(), vec(), bad(1e-5, 0, -1, 0 / 0), vec()))
    return "F.conv2d_bn_act"
  end
  -- training: batch statistics (running ones updated), tracked; then a backward through it
  local function tracked(t) return pcall(function() t:requires_grad() end) and t or t end
  if R() < 0.7 and type(x) == "userdata" and x:dtype() == "float32" then x = tracked(x:contiguous():detach()) end
  if R() < 0.5 and type(w) == "userdata" and w:dtype() == "float32" then w = tracked(w:contiguous():detach()) end
  local ok, y = pcall(fvl.F.conv2d_bn_act_train, x, w, vec(), st, pd, g, vec(), vec(), vec(), vec(),
                      bad(1e-5, 0, -1, 0 / 0), vec(), bad(0.1, -1, 2, 0 / 0))
  pass("conv2d_bn_act_train", ok)
  if ok and type(y) == "userdata" and R() < 0.7 then
    pass("conv2d_bn_act_train backward", pcall(function() (y * fvl.randn(table.unpack(y:shape()))):sum():backward() end))
  end
  return "F.conv2d_bn_act_train"
end
local function backbone_step()
  local kind = pick { "iresnet", "mobilefacenet" }
  local net = nets[kind]
  if not net then
    local ok, n
    if kind == "iresnet" then ok, n = pcall(fvl.nn.iresnet, { depth = 18, dim = 4, input_size = 16 })
    else ok, n = pcall(fvl.nn.mobilefacenet, { dim = 4, blocks = { 1, 1, 1, 1 }, input_size = 16 }) end
    if not ok then error("FINDING: " .. kind .. " with tiny shapes failed: " .. tostring(n), 0) end
    net = n
    nets[kind] = net
  end
  if R() < 0.3 then pcall(net.train, net, R() < 0.5) end
  local sz = R() < 0.7 and 16 or pick { 0, 1, 8, 15, 17, 32 }
  local x = R() < 0.9 and fvl.randn(R(0, 2), R() < 0.9 and 3 or R(1, 4), sz, sz) or tensor()
  if R() < 0.1 and x:numel() > 0 then x:view(-1):set(1, 0 / 0) end
  local ok, e = pcall(net, x)
  pass(kind, ok)
  if ok and type(e) == "userdata" and R() < 0.3 then pcall(function() e:sum():backward() end) end
  if R() < 0.1 then pcall(fvl.nn.fold_batchnorm, net) end
  return "nn." .. kind
end
local function dist_step()
  local d = tmp .. "/dist" .. R(1, 3)
  local name = pick(HEADS)
  local ok, h = pcall(fvl.loss[name], { dim = 3, classes = R(1, 5), sharded = R() < 0.7,
                                        target = name == "margin" and margin_fn() or nil })
  if not ok then h = nil end
  local net = fvl.nn.Linear(2, 3)
  local r = R()
  if r < 0.4 then
    pass("dist save", pcall(fvl.dist.save_checkpoint, d, { net = net, head = h, step = R(0, 9), extra = R() < 0.3 and gen(1) or nil }))
  elseif r < 0.55 then
    local hj = read(d .. "/dist.json")
    if hj ~= "" then write(d .. "/dist.json", mutate(hj)) end
  elseif r < 0.65 then
    local p = d .. "/rank00000/checkpoint.json"
    local cj = read(p)
    if cj ~= "" then write(p, mutate(cj)) end
  elseif r < 0.8 then
    pass("dist gather", pcall(fvl.dist.gather_checkpoint, d, tmp .. "/gathered"))
    local ok2, err = pcall(fvl.load_checkpoint, tmp .. "/gathered")
    if not ok2 then error("FINDING: load_checkpoint of a gathered checkpoint raised: " .. tostring(err), 0) end
  elseif r < 0.9 then
    pass("dist load", pcall(fvl.dist.load_checkpoint, d, { net = R() < 0.5 and net or nil, head = h }))
  else
    pass("dist info", pcall(fvl.dist.checkpoint_info, d))
  end
  return "dist checkpoint"
end
local function reader_step()
  local kind = pick { "rec", "bin", "png", "jpeg", "npyds" }
  local s = seeds[kind]
  if not s then return "skip" end
  local p = tmp .. "/r." .. kind
  if kind == "rec" then
    write(p, R() < 0.5 and mutate(s) or s)
    write(tmp .. "/r.idx", R() < 0.5 and mutate(seeds.recidx or "") or seeds.recidx or "")
    local ok, rd = pcall(fvl.data.rec, p, { idx = R() < 0.5 and tmp .. "/r.idx" or false })
    if ok and rd then
      for _ = 1, R(1, 4) do
        local i = R() < 0.8 and R(1, 4) or pick { 0, -1, 2^31, math.maxinteger }
        pass("rec record", pcall(function() return rd:record(i) end))
        pcall(function() return rd:key(i) end)
      end
      pcall(function() rd:close() end)
    end
  elseif kind == "bin" then
    write(p, mutate(s))
    local ok, pk = pcall(fvl.data.bin_pack, p)
    pass("bin_pack", ok)
    if ok and type(pk) == "table" and pk.decode then pcall(pk.decode, pk, R(1, 4), R() < 0.5 and { size = { 8, 8 } } or gen(1)) end
  elseif kind == "npyds" then
    write(tmp .. "/f.npy", mutate(seeds.npy))
    write(tmp .. "/l.npy", R() < 0.5 and mutate(seeds.npyi) or seeds.npyi)
    pass("data.npy", pcall(fvl.data.npy, { features = tmp .. "/f.npy", labels = tmp .. "/l.npy", base = pick { "auto", 0, 1, 2 } }))
  else
    local ok, img = pcall(fvl.data.decode_image, R() < 0.7 and mutate(s) or s, R() < 0.5 and { gray = R() < 0.5, bgr = R() < 0.5 } or gen(1))
    pass("decode_image", ok)
    if ok and R() < 0.5 then   -- alignment and resizing of the decoded image, hostile landmarks and sizes
      local lm = {}
      for k = 1, 10 do lm[k] = R() < 0.9 and R() * 8 - 2 or pick { 0 / 0, math.huge, -1e300 } end
      pass("align_face", pcall(fvl.data.align_face, img, R() < 0.9 and lm or gen(1),
                               { size = pick { 8, 16, 16, 0, 70000, 2.5 }, origin = pick { 0, 1, 1, 2 } }))
      pass("resize_image", pcall(fvl.data.resize_image, img, pick { 3, { 1, 9 }, { 0, 2 }, 65536, -1 }))
    end
  end
  return "data." .. kind
end
do   -- seed files for the readers, written by the project's own writers
  local img = (fvl.rand(3, 5, 4) * 255):floor()
  pcall(function() seeds.png = fvl.data.encode_image(img, { format = "png" }) end)
  pcall(function() seeds.jpeg = fvl.data.encode_image(img, { format = "jpeg" }) end)
  pcall(function()
    local w = assert(fvl.data.rec_writer(tmp .. "/seed.rec"))
    for i = 1, 3 do w:write { image = img, label = i } end
    w:close()
    seeds.rec, seeds.recidx = read(tmp .. "/seed.rec"), read(tmp .. "/seed.idx")
  end)
  pcall(function()
    fvl.data.write_bin_pack(tmp .. "/seed.bin", { seeds.png, seeds.jpeg, seeds.png, seeds.jpeg }, { 1, 0 })
    seeds.bin = read(tmp .. "/seed.bin")
  end)
  seeds.npyds = seeds.npy
end
-- the loss primitives (fvl.F) on compatible shapes: cos from F.cosine (C may be 0: an empty
-- class matrix), labels in and out of range, margin specs from the declared keys with values of
-- every kind, the shard variants' column tensors; then a backward through what they return
local ENUMS = { "none", "cos", "arc", "combined", "sphere", "circle", "given", "mm", "clamp", "easy", "exact",
                "detached", "affine", "quadratic", "all", "row", "error", "warn", "raw" }
local function spec(B)
  local o = {}
  for _ = 1, R(0, 5) do
    local k = pick((fvl._options or {}).margin_spec or WORDS)
    local r = R()
    o[k] = r < 0.35 and pick(ENUMS) or r < 0.7 and (R() * 3 - 0.5) or r < 0.85 and fvl.rand(R() < 0.8 and B or R(0, 4)) or gen(1)
  end
  if R() < 0.5 then o.target = pick { "cos", "arc", "combined", "sphere", "circle" } end
  return o
end
local function loss_F_step()
  local F = fvl.F
  local B, C, D = R(1, 5), R() < 0.85 and R(1, 6) or 0, R(1, 5)
  local x, W = embeddings(B, D), fvl.randn(C, D)
  if R() < 0.5 then W = W:float():requires_grad() end
  local ok, cos = pcall(F.cosine, x, W)
  if not ok then cos = fvl.rand(B, math.max(C, 1)) * 2 - 1 end
  local y = labels(B, C)
  local cols = {}
  for i = 1, B do cols[i] = R() < 0.9 and R(0, C) or pick { -1, C + 1, 2^31 } end
  cols = fvl.tensor(cols, R() < 0.9 and "int32" or "float32")
  local S = fvl.rand(B, B) * 2 - 1
  local calls = {
    function() return F.margin_ce(cos, y, spec(B), R() < 0.5 and "fz" or nil) end,
    function() return F.margin_logits(cos, y, spec(B)) end,
    function() return F.hard_mean(cos, y, { hard = pick { "all", "arc", "cos", "row" }, hard_m = R(), values = pick { "raw", "affine" }, a = R(), b = R() }) end,
    function() return F.target_cos(cos, y) end,
    function() return F.neg_lse(cos, y, pick { 1, 64, 0, -1, 0 / 0, fvl.rand(B) }) end,
    function() return F.group_max(cos, pick { 1, 2, 3, 0, -1, C }) end,
    function() local K = pick { 1, 2, 3 } return F.group_max_ws(fvl.rand(B, math.max(C, 1) * K), K, fvl.zeros(B, math.max(C, 1)):int()) end,
    function() return F.gather_rows(W, y) end,
    function() return F.circle_pairwise(S, y, R(), pick { 1, 64, 256 }) end,
    function() return F.center_dist(x, W, y) end,
    function() return F.disc_dist(x, W, y, R() < 0.8 and fvl.rand(math.max(C, 1)) or gen(1)) end,
    function() return F.center_update(W:detach():clone(), x, y, pick { 0.5, 0, 1, -1, 2 }) end,
    function() return F.margin_ce_shard(cos, cols, spec(B), "fz", R() < 0.5 and R(0, 8) or nil) end,
    function() return F.cosine_margin_ce_shard(x, W, cols, spec(B), pick { 1, 2, 3, 0, -1 }, "fz") end,
    function() return F.target_cos_shard(cos, cols) end,
    function() return F.hard_mean_shard(cos, cols, { hard = pick { "all", "arc", "cos" } }) end,
    function() return F.circle_pairwise_shard(S, y, pick { 1, 2, B, B + 1, 0 }, R(), 64) end,
    function() return F.copy_rows(fvl.zeros(B + 2, D), pick { 1, 2, 3, 0, B + 3 }, fvl.randn(R(0, 3), D)) end,
    function() return F._pair_anchors(y) end,
    function() return F._adacos_stats(fvl.rand(B), R() < 0.8 and fvl.rand(B) or gen(1)) end,
    function() return F.pfc_sample(fvl.tensor(cols:int():totable(), "int32"), pick { 1, C, C + 1, 0 }, R(1, 9), R(0, 9)) end,
    function()   -- Partial FC's given sample: ids in and out of order/range, any slice, labels of any kind
      local ids = {}
      for k = 1, R(0, C + 1) do ids[k] = R() < 0.9 and k or pick { 0, -1, C + 1, 2^31 - 1, -2^31 } end
      return F._given_sample(R() < 0.9 and fvl.tensor(ids, "int32") or gen(1), y, pick { 1, 2, C, C + 1, 0, 2^31 },
                             pick { 0, 1, C, C + 1, -1, 2^31 }, pick { C, C + 1, 0, -1, 2^31 }, "fz")
    end,
  }
  local i = R(1, #calls)
  local okc, out = pcall(calls[i])
  pass("F loss primitive", okc)
  if okc and type(out) == "userdata" and R() < 0.7 then
    pass("F backward", pcall(function()
      local l = out:dim() == 0 and out or out:float():sum()
      l:backward()
    end))
  end
  return "F primitive " .. i
end

-- evaluation on valid-looking inputs: embeddings with NaN/inf/zero rows, labels in and out of
-- range, pair scores and same-flags of odd lengths, fold counts, FAR lists and ranks at the edges
local function eval_step()
  local E = fvl.eval
  local N, D, C = R(0, 12), R(1, 4), R(1, 4)
  local emb, lab = embeddings(N, D), labels(N, C)
  local function flags(n)
    local f = {}
    for i = 1, n do f[i] = R() < 0.95 and R(0, 1) or pick { 2, -1, 0.5, 0 / 0 } end
    return R() < 0.5 and fvl.tensor(f, "int32") or f
  end
  local scores = fvl.rand(N) * 2 - 1
  if N > 0 and R() < 0.2 then scores:set(R(1, N), pick { 0 / 0, math.huge, -math.huge }) end
  local same = flags(R() < 0.9 and N or R(0, N + 2))
  local vopts = R() < 0.8 and { folds = pick { 2, 3, 10, 1, 0, -1, B31 }, far = pick { nil, { 1e-1 }, { 1e-3, 1e-1 }, { 0 }, { 2 }, { 0 / 0 } },
                               drop_intermediate = R() < 0.5, distance = R() < 0.3 } or gen(1)
  local r = R()
  if r < 0.2 then
    pass("eval.verify", pcall(E.verify, emb, lab, R() < 0.8 and { n = pick { 4, 8, 20, 0, -1, B40 }, seed = R(1, 9),
      folds = pick { 2, 3 }, metric = pick { "cosine", "l2", "x" } } or gen(1)))
  elseif r < 0.35 then
    pass("eval.pairs", pcall(E.pairs, emb, lab, { n = pick { 2, 6, 0, 1, B31 }, indices = R() < 0.5, metric = pick { "cosine", "l2" } }))
  elseif r < 0.55 then
    pass("eval.verification", pcall(E.verification, scores, same, vopts))
  elseif r < 0.65 then
    pass("eval.roc", pcall(E.roc, scores, same, R() < 0.8 and { drop_intermediate = R() < 0.5 } or gen(1)))
  elseif r < 0.85 then
    local probes = R() < 0.5 and embeddings(R(0, 6), R() < 0.9 and D or D + 1) or nil
    pass("eval.identification", pcall(E.identification, emb, lab, probes, probes and labels(probes:size(1), C) or nil,
      { k = pick { 1, 5, { 1, 5 }, 0, -1, 2^31, { 1, 0 } } }))
  elseif r < 0.92 then   -- k-means, NMI / AMI, MegaFace rank-k (lua/fvl/cluster.lua, megaface.lua)
    local which = R(1, 4)
    local kopts = R() < 0.8 and { seed = R(0, 9), n_init = pick { 1, 2, 0 }, max_iter = pick { 1, 5, 300, 0 },
                                  init = pick { "k-means++", "random", "x" }, tol = pick { 0, 1e-4, -1 } } or gen(1)
    if which == 1 then pass("eval.kmeans", pcall(E.kmeans, emb, pick { 1, 2, N, N + 1, 0, -1, 2.5, B31 }, kopts))
    elseif which == 2 then
      local other = R() < 0.9 and labels(N, C) or labels(R(0, N + 2), C)
      pass("eval.ami", pcall(pick { E.nmi, E.ami, E.mutual_info }, lab, other))
    elseif which == 3 then pass("eval.clustering", pcall(E.clustering, emb, lab, kopts))
    else
      local dis = embeddings(R(0, 8), R() < 0.9 and D or D + 1)
      pass("eval.megaface_rank1", pcall(E.megaface_rank1, emb, lab, dis, R() < 0.8 and
        { k = pick { nil, 2, { 1, 3 }, 0, 1001 }, far = pick { nil, false, 1e-1, 0.5, 2, 0 / 0 }, block = pick { 0, 1, 3, -1 } } or gen(1)))
    end
  else
    local centres = fvl.randn(C, D)
    local which = R(1, 4)
    if which == 1 then pass("eval.embedding_stats", pcall(E.embedding_stats, emb))
    elseif which == 2 then pass("eval.centre_stats", pcall(E.centre_stats, R() < 0.9 and centres or tensor(), { angle = pick { 10, 0, -1, 0 / 0 } }))
    elseif which == 3 then pass("eval.class_recall", pcall(E.class_recall, labels(N, C), lab, pick { C, 0, -1, 2^31 }, { recall = R() }))
    else pass("eval.diagnose", pcall(E.diagnose, { emb = emb, centres = centres, labels = lab, classes = C })) end
  end
  return "eval"
end
-- optimisers on a small net: hostile options, NaN/inf gradients, missing gradients, clip norms,
-- state saved and loaded back (with mutations)
local optims = {}
local function util_clone(t) if type(t) == "userdata" then return t:clone() end return t end
local function optim_step()
  local kind = pick { "sgd", "adamw" }
  local o = optims[kind]
  if not o or R() < 0.2 then
    local net = fvl.nn.Linear(3, 2)
    local opts = kind == "sgd" and { lr = pick { 0.1, 0, -1, 0 / 0 }, momentum = pick { 0, 0.9, -1, 2 }, nesterov = R() < 0.3,
                                     dampening = pick { 0, 0.5, 2 }, weight_decay = pick { 0, 1e-4, -1 }, no_decay_bias_bn = R() < 0.5 }
                                or { lr = pick { 1e-3, 0, -1 }, betas = pick { nil, { 0.9, 0.999 }, { 1, 0.5 }, { -1 } }, eps = pick { 1e-8, 0, -1 },
                                     weight_decay = pick { 0.01, 0, -1 }, no_decay_bias_bn = R() < 0.5 }
    if R() < 0.2 then opts[pick(WORDS)] = gen(1) end
    local ok, opt = pcall(fvl.optim[kind], R() < 0.9 and { net } or gen(1), opts)
    if not ok then return "optim." .. kind .. "(bad options)" end
    o = { net = net, opt = opt }
    optims[kind] = o
  end
  o.opt:zero_grad()
  local x = fvl.randn(R(1, 4), 3)
  if R() < 0.2 then x:view(-1):set(1, pick { 0 / 0, math.huge }) end
  if R() < 0.9 then pcall(function() o.net(x):sum():backward() end) end
  if R() < 0.3 then pass("clip_grad_norm", pcall(fvl.optim.clip_grad_norm, { o.net }, pick { 1, 0, -1, 0 / 0, math.huge })) end
  pass("optim step", pcall(o.opt.step, o.opt))
  if R() < 0.2 then
    -- the state (momentum / moments per parameter) copied, perhaps damaged, and loaded back
    local st = {}
    for k, v in pairs(o.opt.state or {}) do
      if type(v) == "table" then
        st[k] = {}
        for i, t in pairs(v) do st[k][i] = (R() < 0.9 and util_clone(t)) or gen(1) end
      else st[k] = v end
    end
    if R() < 0.3 then st[pick(WORDS)] = gen(1) end
    pass("optim load_state", pcall(o.opt.load_state, o.opt, st))
  end
  return "optim." .. kind
end
-- the chart and scatter bindings through fvl.plot, with hostile data and options
local function plot_step()
  local P = fvl.plot
  local f = tmp .. "/p" .. R(1, 3) .. pick { ".png", ".svg", ".pdf", ".gif", "" }
  local r = R()
  if r < 0.4 then
    local N = R(0, 10)
    pass("plot.features", pcall(P.features, embeddings(N, R() < 0.9 and 2 or R(1, 4)), labels(N, 4),
      R() < 0.8 and { file = f, title = R() < 0.5 and "t" or gen(1), names = R() < 0.5 and { "a", "b" } or nil } or gen(1)))
  elseif r < 0.8 then
    local n = R(0, 8)
    local xs, ys = {}, {}
    for i = 1, n do xs[i], ys[i] = R() < 0.9 and i or number(), R() < 0.9 and R() or number() end
    pass("plot.lines", pcall(P.lines, { file = f, title = "t", series = { { x = xs, y = R() < 0.9 and ys or list(), label = "s" } },
      xlabel = R() < 0.5 and "x" or gen(1), xlog = R() < 0.2, ylog = R() < 0.2 }))
  else
    local n = R(2, 12)
    local same = {}
    for i = 1, n do same[i] = i % 2 end
    local ok, res = pcall(fvl.eval.verification, fvl.rand(n) * 2 - 1, fvl.tensor(same, "int32"), { folds = 2 })
    if R() < 0.2 then res = gen(1) end
    if ok then pass("plot.roc", pcall(P.roc, { { label = R() < 0.9 and "a" or gen(1), result = res } }, { file = f })) end
  end
  return "plot"
end

-- nn layers and small nets of odd sizes and options, fed inputs of odd shapes; their state saved
-- (fvl.nn.save, state_dict) and loaded back, perhaps damaged
local function layer()
  local nn = fvl.nn
  local a, b, k = small(), small(), R() < 0.9 and R(1, 3) or small()
  local function o(list) if R() < 0.3 then return gen(1) end local t = {} for key, v in pairs(list) do if R() < 0.5 then t[key] = v() end end return t end
  local kinds = {
    function() return nn.Linear(a, b, o { bias = function() return R() < 0.5 end,
      init = function() return pick { "default", "kaiming_uniform", "kaiming_normal", "xavier_uniform", "xavier_normal", "zz" } end }) end,
    function() return nn.Conv2d(a, b, R() < 0.8 and k or { k, small() }, o { stride = small, padding = function() return R(0, 2) end,
      groups = function() return pick { 1, a, 2, 0 } end, bias = function() return R() < 0.5 end }) end,
    function() return nn.BatchNorm1d(a, o { eps = function() return pick { 1e-5, 0, -1 } end, momentum = function() return pick { 0.1, 0, 1, 2 } end }) end,
    function() return nn.BatchNorm2d(a, o { eps = function() return pick { 1e-5, 0, 0 / 0 } end }) end,
    function() return nn.MaxPool2d(k, o { stride = small, padding = function() return R(0, 2) end }) end,
    function() return nn.AvgPool2d(k, o { stride = small, padding = function() return R(0, 2) end }) end,
    function() return nn.PReLU(R() < 0.5 and a or nil, o { init = function() return number() end }) end,
    function() return nn.Dropout(pick { nil, 0, 0.5, 0.99, 1, -1 }) end,
    function() return nn.Flatten() end,
    function() return nn.Identity() end,
    function() return nn.ReLU() end,
    function() return nn.ConvBlock(a, b, k, o { stride = small, padding = function() return R(0, 1) end, linear = function() return R() < 0.5 end }) end,
    function() return nn.DepthWise(a, b, pick { 1, 2 }, pick { a, 1, b }, R() < 0.5) end,
    function() return nn.IBasicBlock(a, b, pick { 1, 2, 0 }) end,
    function() return nn.BasicBlock(a, b, pick { 1, 2, 0 }) end,
    function() return nn.mlp { sizes = R() < 0.8 and { a, b, small() } or list(), bn = R() < 0.5, dropout = pick { nil, 0.1, 2 },
      activation = pick { nil, "relu", "prelu", "zz" } } end,
  }
  return kinds[R(1, #kinds)](), a
end
local layers = {}
local function nn_step()
  local nn = fvl.nn
  local net, a = layers[R(1, 4)], nil
  if not net or R() < 0.5 then
    local ok, l, aa = pcall(layer)
    if not ok then return "nn layer(bad arguments)" end
    net, a = l, aa
    if R() < 0.3 then local ok2, s = pcall(nn.Sequential, net, pick { nn.Flatten(), nn.ReLU(), nn.Identity() }) if ok2 then net = s end end
    layers[R(1, 4)] = net
  end
  a = a or R(1, 4)
  local shapes = { { R(0, 3), a }, { R(0, 3), a, R(1, 7), R(1, 7) }, { R(0, 2), a, R(1, 3) }, { a } }
  local x = R() < 0.85 and fvl.randn(table.unpack(pick(shapes))) or tensor()
  if R() < 0.3 then x = x:float():requires_grad() end
  if R() < 0.3 then pcall(net.train, net, R() < 0.5) end
  local ok, y = pcall(net, x)
  pass("nn forward", ok)
  if ok and type(y) == "userdata" and R() < 0.5 then pass("nn backward", pcall(function() y:float():sum():backward() end)) end
  local r = R()
  if r < 0.15 then
    local f = tmp .. "/net" .. R(1, 2) .. ".npz"
    pass("nn.save", pcall(nn.save, f, net, R() < 0.7 and { meta = { input = a } } or gen(1)))
    if R() < 0.4 then local s = read(f) if s ~= "" then write(f, mutate(s)) end end
    pass("nn.load", pcall(nn.load, f))
  elseif r < 0.3 then
    local ok2, st = pcall(net.state_dict, net)
    if ok2 and type(st) == "table" then
      for key in pairs(st) do if R() < 0.2 then st[key] = R() < 0.5 and gen(1) or nil end end
      if R() < 0.2 then st[pick(WORDS)] = tensor() end
      pass("load_state_dict", pcall(net.load_state_dict, net, st, R() < 0.5 and { strict = R() < 0.5 } or nil))
    end
  elseif r < 0.4 then pass("nn.flops", pcall(nn.flops, net, R() < 0.8 and { a, R(1, 8), R(1, 8) } or gen(1)))
  elseif r < 0.5 then pass("nn.init.apply", pcall(nn.init.apply, net, pick { "kaiming_normal", "kaiming_uniform", "xavier_normal", "xavier_uniform", "zz" }))
  elseif r < 0.55 then pass("fold_batchnorm", pcall(nn.fold_batchnorm, net))
  elseif r < 0.6 then pcall(net.zero_grad, net) pcall(net.num_parameters, net) pcall(net.describe, net)
  end
  return "nn"
end

-- data readers over a directory of hostile files: IDX sets (fvl.data.mnist / fashion_mnist), an image
-- folder (fvl.data.images, folder_to_rec), an LFW pairs list, then a loader over what loaded
local function data_dir_step()
  local D = fvl.data
  local d = tmp .. "/dd" .. R(1, 2)
  os.execute("mkdir -p '" .. d .. "/a' '" .. d .. "/b'")
  local r = R()
  local ds
  if r < 0.3 then
    local n = R(0, 3)
    local img = "\0\0\8\3" .. string.pack(">I4>I4>I4", n, 28, 28) .. string.rep("\9", n * 784)
    local lab = "\0\0\8\1" .. string.pack(">I4", n) .. string.rep("\3", n)
    for _, split in ipairs { "train", "t10k" } do
      -- (plain bytes under the .gz names: zlib reads them as they are)
      write(d .. "/" .. split .. "-images-idx3-ubyte.gz", R() < 0.5 and mutate(img) or img)
      write(d .. "/" .. split .. "-labels-idx1-ubyte.gz", R() < 0.5 and mutate(lab) or lab)
    end
    local ok
    ok, ds = pcall(pick { D.mnist, D.fashion_mnist }, R() < 0.9 and { path = d, split = pick { "train", "test", "x" }, limit = pick { nil, 1, 0, -1 } } or gen(1))
    pass("data.mnist", ok)
  elseif r < 0.7 then
    for i = 1, R(0, 3) do write(d .. "/" .. pick { "a", "b" } .. "/" .. i .. pick { ".png", ".jpg" }, R() < 0.7 and (seeds.png or "") or mutate(seeds.jpeg or "x")) end
    if R() < 0.5 then
      pass("folder_to_rec", pcall(D.folder_to_rec, d, tmp .. "/fr" .. R(1, 2) .. ".rec", R() < 0.8 and { property = R() < 0.5 } or gen(1)))
    end
    local ok
    ok, ds = pcall(D.images, R() < 0.9 and { folder = d, size = pick { nil, { 4, 5 }, { 0, 1 }, { B31, 2 } }, channels = pick { nil, 1, 3, 2 }, bgr = R() < 0.5 } or gen(1))
    pass("data.images", ok)
    if ok and type(ds) == "table" then
      pcall(function() return ds:image(R(0, 3)) end)
      pcall(function() return ds:batch(R() < 0.8 and { 1, 2 } or gen(1)) end)
    end
  else
    local lines = { "1 1", "a 1 2", "a 1 b 1" }
    write(d .. "/pairs.txt", R() < 0.6 and mutate(table.concat(lines, "\n") .. "\n") or table.concat(lines, "\n"))
    pass("lfw_pairs", pcall(D.lfw_pairs, d .. "/pairs.txt", d))
  end
  if type(ds) == "table" and R() < 0.7 then
    local lo = { batch = R(1, 3), shuffle = R() < 0.5, seed = R(1, 9), drop_last = R() < 0.5, flip = R() < 0.5, crop = R(0, 2) }
    if R() < 0.3 then lo[pick { "batch", "seed", "crop", "epoch", "shard" }] = pick { 0, -1, B31, 1.5, 0 / 0, "x", { 1, 2 } } end
    local ok, ld = pcall(D.loader, ds, R() < 0.9 and lo or gen(1))
    if ok and ld then
      pass("loader", pcall(function() local n = 0 for _ in ld do n = n + 1 if n > 3 then break end end end))
    end
  end
  return "data dir"
end

-- the Lua library's option-taking pieces: schedules, the JSON-lines log, JSON text, sweep spaces and an
-- inline sweep (workers = 0: no processes) with its reports, the dist helpers in a world of one
local function lib_step()
  local r = R()
  if r < 0.2 then
    local S = fvl.schedule
    local kinds = { { S.cosine, { from = 1, to = 0, steps = 10 } }, { S.linear, { from = 1, to = 0, steps = 10 } },
                    { S.polynomial, { from = 1, to = 0, steps = 10, power = 2 } }, { S.exponential, { from = 1, gamma = 0.9 } },
                    { S.multistep, { from = 1, gamma = 0.1, milestones = { 2, 5 } } }, { S.constant, { value = 1 } } }
    local k = pick(kinds)
    local function opt(base)
      local t = {}
      for key, v in pairs(base or {}) do t[key] = v end
      for _ = 1, R(0, 2) do t[pick { "from", "to", "steps", "warmup", "warmup_from", "gamma", "milestones", "power", "value" }] = R() < 0.7 and pick { 0, 1, 10, 0.5, -1, 0 / 0, 2^53, { 3, 1 }, {} } or gen(1) end
      return t
    end
    local ok, sc = pcall(k[1], R() < 0.9 and opt(k[2]) or gen(1))
    if ok and R() < 0.3 then ok, sc = pcall(S.warmup, sc, opt()) end
    pass("schedule", ok)
    if ok then pass("schedule values", pcall(function() return sc:values(pick { 0, 3, -1, B31 }, pick { nil, 0, 5 }) end)) pcall(sc, number()) end
  elseif r < 0.35 then
    local f = tmp .. "/log" .. R(1, 2) .. ".jsonl"
    local ok, lg = pcall(fvl.log.open, f, R() < 0.8 and { run = pick { "a", 1 }, fields = R() < 0.5 and { k = 1 } or gen(1), time = R() < 0.5 } or gen(1))
    if ok and lg then pcall(lg.write, lg, R() < 0.8 and { step = R(1, 9), loss = number() } or gen(1)) pcall(lg.close, lg) end
    pcall(fvl.log.append, f, gen(1))
    if R() < 0.4 then local s = read(f) if s ~= "" then write(f, mutate(s)) end end
    pass("log.read", pcall(fvl.log.read, f, R() < 0.5 and { run = "a" } or nil))
  elseif r < 0.45 then
    pass("json_decode", pcall(fvl.util.json_decode, mutate(R() < 0.5 and seeds.ck or '{"a":[1,2.5e3,"x\\u00e9",true,null,{"b":{}}]}')))
  elseif r < 0.75 then
    local W = fvl.sweep
    local function range()
      return pick { function() return W.uniform(number(), number()) end, function() return W.loguniform(number(), number()) end,
                    function() return W.int(number(), number()) end, function() return W.choice(R() < 0.8 and list() or gen(1)) end,
                    function() return W.named(pick { "a", 1 }, number()) end, function() return list(R(0, 3)) end }()
    end
    local space = {}
    for _ = 1, R(0, 3) do local ok, v = pcall(range) space[pick { "lr", "m", "s", "seed" }] = ok and v or gen(1) end
    local store = tmp .. "/sw" .. R(1, 2) .. ".sqlite"
    local o = { name = pick { "a", "b" }, space = space, store = store, workers = 0, quiet = true,
                strategy = pick { "grid", "random", "halving", "zz" }, samples = pick { nil, 1, 2, 0, -1 }, seed = R(1, 3),
                metric = pick { nil, "acc", "loss" }, mode = pick { nil, "max", "min", "x" },
                trial = function(cfg, report) if R() < 0.3 then report(R(1, 3), { acc = number() }) end
                  return R() < 0.8 and { acc = number(), loss = R() } or gen(2) end }
    if R() < 0.2 then o[pick(WORDS)] = gen(1) end
    pass("sweep.run (inline)", pcall(W.run, o))
    local rr = R()
    if rr < 0.25 then pass("sweep.leaderboard", pcall(W.leaderboard, store, { print = false, top = pick { 1, 0, -1, 2^31 }, mode = pick { "max", "min", "z" } }))
    elseif rr < 0.45 then pass("sweep.csv", pcall(W.csv, store, tmp .. "/sw.csv", R() < 0.5 and {} or gen(1)))
    elseif rr < 0.6 then pass("sweep.spread", pcall(W.spread, store, { over = pick { "seed", "lr", "x" }, print = false }))
    elseif rr < 0.7 then pass("sweep.load", pcall(W.load, store, { reports = R() < 0.5 }))
    elseif rr < 0.8 then pass("sweep.plot", pcall(W.plot, store, { dir = tmp .. "/swp", top = pick { 1, 3 } }))
    elseif rr < 0.9 then pass("sweep.merge", pcall(W.merge, tmp .. "/merged.sqlite", R() < 0.8 and { store } or gen(1)))
    else local s = read(store) if s ~= "" then write(store, mutate(s)) end pcall(W.load, store) end
  else
    local dist = fvl.dist
    local net = fvl.nn.Linear(3, 2)
    pcall(function() net(fvl.randn(2, 3)):sum():backward() end)
    local which = R(1, 6)
    if which == 1 then pass("dist.broadcast", pcall(dist.broadcast, tensor(), pick { nil, 0, 1, -1, 2^31 }))
    elseif which == 2 then pass("dist.allreduce_grads", pcall(dist.allreduce_grads, R() < 0.8 and net:parameters() or gen(1),
      R() < 0.8 and { op = pick { "sum", "mean", "max" }, bucket_mb = pick { nil, 1, 0, -1, 1e300 } } or gen(1)))
    elseif which == 3 then pass("dist.broadcast_parameters", pcall(dist.broadcast_parameters, R() < 0.8 and net:parameters() or gen(1), pick { 0, 1, -1 }, R() < 0.5 and { tensor() } or nil))
    elseif which == 4 then pass("dist.shard_indices", pcall(dist.shard_indices, size(), pick { 0, 1, -1 }, pick { 1, 2, 0, -1 }))
    elseif which == 5 then
      local x = embeddings(R(0, 3), 2)
      pass("dist.copy_rows", pcall(function() local y = dist.copy_rows(x) if x.requires_grad then y:sum():backward() end end))
    else
      local ok, sync = pcall(dist.overlap_grads, R() < 0.8 and net or gen(1), R() < 0.8 and { op = pick { "sum", "mean" }, bucket_mb = pick { 25, 0, -1 } } or gen(1))
      if ok and sync then pcall(function() net(fvl.randn(2, 3)):sum():backward() sync:wait() end) end
      pass("dist.overlap_grads", ok)
    end
  end
  return "library"
end

-- eval helpers and the remaining plots (history, boundaries, animations, sheets)
local function eval_plot_step()
  local E, P = fvl.eval, fvl.plot
  local f = tmp .. "/q" .. R(1, 3) .. pick { ".png", ".gif", ".svg", "" }
  local N, D = R(0, 5), R(1, 4)
  local which = R(1, 10)
  if which == 1 then pass("eval.cosine", pcall(E.cosine, embeddings(N, D), embeddings(R(0, 4), R() < 0.9 and D or D + 1)))
  elseif which == 2 then pass("eval.flip", pcall(E.flip, embeddings(N, D), embeddings(R() < 0.9 and N or N + 1, D)))
  elseif which == 3 then
    local net = fvl.nn.Flatten()
    pass("eval.flip_embed", pcall(E.flip_embed, R() < 0.8 and net or gen(1), R() < 0.8 and fvl.randn(N, R(1, 3), R(1, 4), R(1, 4)) or tensor()))
  elseif which == 4 then
    local same = {}
    for i = 1, 6 do same[i] = i % 2 end
    local ok, res = pcall(E.verification, fvl.rand(6), fvl.tensor(same, "int32"), { folds = 2 })
    if ok then pass("eval.summary", pcall(E.summary, R() < 0.8 and res or gen(1))) end
    pass("eval.fmt_far", pcall(E.fmt_far, number()))
  elseif which == 5 then
    local recs = {}
    for i = 1, R(0, 6) do recs[i] = R() < 0.9 and { step = i, loss = number(), acc = R() } or gen(1) end
    pass("plot.history", pcall(P.history, recs, R() < 0.9 and { file = f, y = pick { nil, "loss", { "loss", "acc" }, "zz" }, ylog = R() < 0.3, title = "h" } or gen(1)))
  elseif which == 6 then
    local items = {}
    for i = 1, R(0, 3) do items[i] = R() < 0.7 and pick { "arcface", "cosface", "sphereface", "normface" } or R() < 0.5 and { pick { "arcface", "cosface" }, m = number() } or gen(1) end
    pass("plot.boundaries", pcall(P.boundaries, items, { file = f, grid = pick { 11, 21, 2, 0, -1 }, layout = pick { "grid", "overlay", "z" } }))
  elseif which == 7 then
    pass("plot.boundary_animation", pcall(P.boundary_animation, pick { "arcface", "cosface", { "arcface", m = number() }, gen(1) },
      { file = tmp .. "/ba.gif", frames = R() < 0.8 and 2 or pick { 1, 0, -1 }, grid = R() < 0.8 and 11 or pick { 2, 0 },
        width = R() < 0.8 and 40 or pick { 0, B31 }, height = 40 }))
  elseif which == 8 then
    local ok, an = pcall(P.training_animation, { file = tmp .. "/ta.gif", steps = pick { 4, 0, -1 }, frames = pick { 2, 0, 5 }, width = 40, height = 40 })
    if ok and an then
      pass("training_animation", pcall(function()
        for k = 1, 4 do an:step(k, function() local n = R(0, 6) return embeddings(n, 2), labels(n, 3), R() < 0.5 and { title = "t" } or gen(1) end) end
        an:close()
      end))
    end
  elseif which == 9 then
    local ok, an = pcall(P.animation, { file = tmp .. "/an.gif", delay = pick { 0.1, 0, -1 }, width = pick { 40, 0 }, height = 40, loop = pick { 0, 1, -1 } })
    if ok and an then
      pass("plot.animation", pcall(function()
        for _ = 1, R(0, 3) do local n = R(0, 6) an:add(embeddings(n, pick { 2, 3, 1 }), labels(n, 3), R() < 0.7 and { title = "s" } or gen(1)) end
        an:close()
      end))
    end
  else
    local items = {}
    for i = 1, R(0, 3) do items[i] = pick { tmp .. "/q1.png", { file = tmp .. "/q2.png", title = "t" }, gen(1) } end
    pass("plot.sheet", pcall(P.sheet, items, { file = tmp .. "/sheet.png", cols = pick { nil, 1, 0, -1 }, cell_width = pick { nil, 30, 0, B31 }, cell_height = 30 }))
  end
  return "eval/plot"
end

local SCENARIOS = { head_step, head_step, head_step, conv_bn_act_step, backbone_step, dist_step, dist_step,
                    reader_step, reader_step, loss_F_step, loss_F_step, loss_F_step, eval_step, eval_step,
                    optim_step, plot_step, nn_step, nn_step, data_dir_step, lib_step, lib_step, eval_plot_step }

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

-- raised errors that are not the API's own words: Lua's runtime messages from inside the library
-- (a nil indexed, a bad argument to a builtin) or a position inside lua/fvl/. Counted, and the
-- distinct ones printed at the end with FVL_FUZZ_UNCLEAR=1 (a review list, not a failure).
local unclear, unclear_seen = 0, {}
local LUA_BUILTINS = {}   -- "bad argument #1 to 'open'": the library passed the user's value on unchecked
for _, lib in ipairs { _G, string, table, math, io, os } do for k in pairs(lib) do LUA_BUILTINS[k] = true end end
local function judge(name, msg)
  msg = tostring(msg)
  local builtin = msg:match("bad argument #%d+ to '([%w_]+)'")
  if msg:find("attempt to ", 1, true) or msg:find("fvl/[%w_/]+%.lua:%d+:") or msg:find("stack overflow", 1, true)
     or (builtin and LUA_BUILTINS[builtin]) then
    unclear = unclear + 1
    local key = name .. ": " .. msg:gsub("0x%x+", "0x"):gsub("%d+", "N"):sub(1, 160)
    unclear_seen[key] = (unclear_seen[key] or 0) + 1
  end
end

local t0 = fvl._walltime and fvl._walltime() or os.time()
local now = function() return fvl._walltime and fvl._walltime() or os.time() end
local calls, errors, files, scen = 0, 0, 0, 0
while calls < max_calls and now() - t0 < seconds do
  calls = calls + 1
  local desc
  local r = R()
  if r < 0.2 then
    files = files + 1
    desc = file_step()
  elseif r < 0.35 then
    scen = scen + 1
    local si = R(1, #SCENARIOS)
    local step = SCENARIOS[si]
    if verbose then io.stderr:write(string.format("[%d] scenario %d\n", calls, si)) io.stderr:flush() end
    guard()
    local ok, d = pcall(step)
    debug.sethook()
    if not ok then
      if tostring(d):find("FINDING", 1, true) then error(d, 0) end
      errors = errors + 1
      judge("scenario", d)
    end
    desc = ok and d or "scenario raised: " .. tostring(d)
  else
    local f, name, args, self
    if R() < 0.4 and #methods > 0 then
      local obj = R() < 0.6 and #pool > 0 and pick(pool) or tensor()
      local mname = pick(methods)
      name = "Tensor:" .. mname
      f = function(o, ...)
        local m = fvl.Tensor[mname] or (type(o) == "userdata" and o[mname])
        if type(m) ~= "function" then return end   -- (a pool value that is no tensor: nothing to call)
        return m(o, ...)
      end
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
      judge(name, msg)
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
print(string.format("api_fuzz: seed %d, %d calls (%d file mutations, %d scenarios), %d raised errors, no crash",
                    seed, calls, files, scen, errors))
local kinds = {}
for k, n in pairs(passed) do kinds[#kinds + 1] = k .. " " .. n end
table.sort(kinds)
print("api_fuzz: scenario calls that passed: " .. table.concat(kinds, ", "))
if os.getenv("FVL_FUZZ_UNCLEAR") == "1" then
  local list = {}
  for k, n in pairs(unclear_seen) do list[#list + 1] = string.format("%6d  %s", n, k) end
  table.sort(list)
  print(string.format("api_fuzz: %d raised errors not in the API's own words:\n%s", unclear, table.concat(list, "\n")))
end
