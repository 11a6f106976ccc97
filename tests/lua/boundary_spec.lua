-- boundary_spec.lua — the binding boundary (DEVELOPERS.md "The binding boundary"): every
-- reproducer of the hardening issue is a clear error or a correct result, never a crash or a read
-- of freed memory (the ASan pass runs this file too).
local F = fvl.F

local tmp = os.tmpname()
os.remove(tmp)
os.execute("mkdir -p '" .. tmp .. "'")

-- a table whose every read makes a fresh value and runs two full collections: a binding that
-- pops a value and keeps its pointer reads freed memory (ASan) or garbage (the checks below)
local function gc_proxy(make, n)
  return setmetatable({}, {
    __index = function(_, k)
      local v = make(k)
      collectgarbage()
      collectgarbage()
      return v
    end,
    __len = function() return n end,
  })
end

local write = write_file   -- tests/lua/run.lua

-- a .npy file with a given header dict (padded as NumPy does) and raw data bytes
local function npy(path, dict, data)
  local total = 10 + #dict + 1
  local pad = (64 - total % 64) % 64
  local header = dict .. string.rep(" ", pad) .. "\n"
  write(path, "\147NUMPY\1\0" .. string.pack("<I2", #header) .. header .. (data or ""))
end

describe("borrowed pointers", function()
  it("fvl.cat of a table whose __index makes fresh tensors", function()
    local t = gc_proxy(function(k) return fvl.full({1, 2}, k) end, 4)
    local c = fvl.cat(t)
    expect_all_near(c, {{1, 1}, {2, 2}, {3, 3}, {4, 4}}, 0, 0)
  end)
  it("F.margin_ce spec whose s (a per-row tensor) comes from __index", function()
    fvl.manual_seed(3)
    local cos = (fvl.rand(4, 5) * 2 - 1):clamp(-0.99, 0.99)
    local y = {1, 2, 3, 4}
    local plain = F.margin_ce(cos, y, {s = fvl.full({4}, 8), target = "arc", m = 0.3}):item()
    local spec = gc_proxy(function(k)
      if k == "s" then return fvl.full({4}, 8) end
      if k == "target" then return "arc" end
      if k == "m" then return 0.3 end
      return nil
    end, 0)
    expect_near(F.margin_ce(cos, y, spec):item(), plain, 1e-6)
  end)
  it("plot.features options (title, names) from __index", function()
    local emb = fvl.randn(6, 2)
    local names = gc_proxy(function(k) return "class " .. k end, 3)
    local opts = gc_proxy(function(k)
      if k == "title" then return "features " .. string.rep("x", 40) end
      if k == "names" then return names end
      if k == "file" then return tmp .. "/f.png" end
      return nil
    end, 0)
    fvl._plot.features(emb, {1, 2, 3, 1, 2, 3}, opts)
    expect_true(io.open(tmp .. "/f.png", "rb") ~= nil, "the picture was written")
  end)
  it("plot.lines with a list whose __len is huge", function()
    local huge = setmetatable({}, {__len = function() return math.maxinteger end})
    expect_error(function() fvl._plot.lines({file = tmp .. "/l.png", series = huge}) end,
                 "plot.lines: series has 9223372036854775807 entries")
  end)
end)

describe("checked size arithmetic", function()
  it("fvl.zeros(2^32, 2^32) is refused (the product wrapped to 64 bytes)", function()
    expect_error(function() fvl.zeros(2^32, 2^32) end, "zeros: shape 4294967296x4294967296 has more than 2^40 elements")
  end)
  it("reshape to (2^60 + 1) x 16", function()
    expect_error(function() return fvl.zeros(16):reshape((1 << 60) + 1, 16) end,
                 "reshape: shape 1152921504606846977x16 has more than 2^40 elements")
  end)
  it("zeros(0, 2^40, 2^40): strides would overflow", function()
    expect_error(function() fvl.zeros(0, 2^40, 2^40) end, "zeros: shape 0x1099511627776x1099511627776")
    expect_error(function() fvl.randn(0, 2^40, 2^40) end, "randn: shape 0x1099511627776x1099511627776")
    local e = fvl.zeros(0, 3)
    expect_error(function() e:reshape(0, 2^40, 2^40) end, "reshape: shape 0x1099511627776x1099511627776")
  end)
  it("narrow(1, maxinteger, maxinteger) fails its range check before any overflow", function()
    expect_error(function() fvl.zeros(4, 4):narrow(1, math.maxinteger, math.maxinteger) end,
                 "narrow: rows from 9223372036854775807, count 9223372036854775807, are outside 1..4 of dim 1")
    expect_error(function() fvl.zeros(4, 4):narrow(2, 3, math.maxinteger) end,
                 "narrow: rows from 3, count 9223372036854775807, are outside 1..4 of dim 2")
    expect_error(function() fvl.zeros(4, 4):narrow(2, 3, -1) end,
                 "narrow: rows from 3, count -1 of dim 2: the count is negative")
    expect_error(function() fvl.zeros(4, 4):narrow(1, math.mininteger, 0) end,
                 "narrow: rows from -9223372036854775808, count 0, are outside 1..4 of dim 1")
    expect_eq(fvl.zeros(4, 4):narrow(1, 5, 0):size(1), 0)   -- an empty range may start just past the end
  end)
  it("a .npy header with a huge shape", function()
    npy(tmp .. "/big.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 1099511627776, 1099511627776), }")
    local t, msg = fvl.load(tmp .. "/big.npy")
    expect_true(t == nil and msg:find("shape 0x1099511627776x1099511627776", 1, true), msg)
    npy(tmp .. "/big2.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }")
    t, msg = fvl.load(tmp .. "/big2.npy")
    expect_true(t == nil and msg:find("shape entry overflows", 1, true), msg)
  end)
end)

describe("integer conversions", function()
  it("index with maxinteger on an empty dim", function()
    expect_error(function() fvl.randn(5, 0):index(2, {math.maxinteger}) end,
                 "index: indices[1] = 9223372036854775807 is outside 1..0 (the dimension is empty)")
  end)
  it("eval.pairs with a label of 2^62", function()
    expect_error(function() fvl.eval.pairs(fvl.randn(2, 4), {3, 2^62}) end,
                 "pairs: labels[2] = 4611686018427387904 is outside 1..2147483647")
  end)
  it("gather with INT32_MIN", function()
    local ix = fvl.tensor({{-2147483648}, {1}, {1}}, "int32")
    expect_error(function() fvl.randn(3, 3):gather(2, ix) end, "gather: indices[1] = -2147483648 is outside 1..3")
  end)
  it("-INT32_MIN wraps like Torch, without a signed overflow", function()
    local t = fvl.tensor({-2147483648, 5}, "int32")
    expect_eq((-t):totable()[1], -2147483648)
    expect_eq(t:abs():totable()[1], -2147483648)
    expect_eq((-t):totable()[2], -5)
  end)
  it("the loader's batch range cannot overflow (start or count near maxinteger) and crop is an int32", function()
    local x = fvl.zeros(4, 2)
    expect_error(function() fvl._loader_batch(x, nil, nil, math.maxinteger, 1, false, 0, 1, 1) end,
                 "loader: batch rows 9223372036854775807..9223372036854775807 are outside 1..4")
    expect_error(function() fvl._loader_batch(x, nil, nil, 2, math.maxinteger, false, 0, 1, 1) end,
                 "loader: batch rows from 3, count 9223372036854775807, are outside 1..4")
    expect_error(function() fvl._loader_batch(x, nil, nil, 3, 2, false, 0, 1, 1) end,
                 "loader: batch rows 4..5 are outside 1..4")
    expect_error(function() fvl._loader_batch(fvl.zeros(4, 1, 3, 3), nil, nil, 0, 2, false, 2^32 + 1, 1, 1) end,
                 "loader: crop = 4294967297 is outside")
  end)
  it("fvl.dist.randn_rows: the same overflow-safe row range check", function()
    local dist = require "fvl.dist"
    expect_error(function() dist.randn_rows(10, 3, 9, 3) end, "fvl.dist.randn_rows: rows 9..11 are outside 1..10")
    expect_error(function() dist.randn_rows(10, 3, 2, math.maxinteger) end,
                 "fvl.dist.randn_rows: rows from 2, count 9223372036854775807, are outside 1..10")
  end)
  it("integers from Lua are bounded before they become int (no silent truncation of 2^32 + k)", function()
    local huge_len = setmetatable({}, { __len = function() return 2^32 + 1 end,
                                        __index = function() return fvl.ones(2) end })
    expect_error(function() fvl.cat(huge_len) end, "cat: expected a list of 1 or more tensors, got length 4294967297")
    expect_error(function() fvl.cat({}) end, "cat: expected a list of 1 or more tensors, got length 0")
    -- any number of entries (a real lfw.bin is 188 batches; a gather over > 64 ranks), each made by
    -- an __index and anchored while C reads it
    local many = setmetatable({}, { __len = function() return 300 end,
                                    __index = function(_, i) return fvl.full({ 1, 2 }, i) end })
    collectgarbage("generational")
    local c = fvl.cat(many, 1)
    collectgarbage("incremental")
    expect_eq(c:size(1), 300); expect_eq(c[300][2], 300); expect_eq(c[1][1], 1)
    expect_error(function() fvl.cat({ fvl.ones(2), 3 }) end, "cat: entry 2 is a number, expected a tensor")
    local two = setmetatable({}, { __len = function() return 2^32 + 2 end, __index = function() return 1 end })
    expect_error(function() fvl.zeros(2, 2):get(two) end, "get: 4294967298 indices for a 2-D tensor")
    expect_error(function() fvl._eval.verification(fvl.rand(8), fvl.tensor({1, 0, 1, 0, 1, 0, 1, 0}, "int32"), 2^32 + 2) end,
                 "verification: folds = 4294967298 is outside")
    expect_error(function() fvl._decode_image("x", 2^32 + 3, false) end, "decode_image: channels = 4294967299 is outside")
    expect_error(function() fvl.sys.kill(2^32 + 1) end, "sys.kill: pid = 4294967297 is outside")
    expect_error(function() fvl.sys.kill(fvl.sys.getpid(), 2^32 + 9) end, "sys.kill: signal = 4294967305 is outside 0..64")
  end)
  it("int32 tensors from tables refuse values outside int32", function()
    expect_error(function() fvl.tensor({2^40}, "int32") end, "tensor: entry [1] = 1.09951e+12 does not fit int32")
    expect_eq(fvl.tensor({3e10}):int():totable()[1], 2147483647, "float → int32 saturates")
  end)
  it("labels above int32 and labels read exactly (no float32 rounding)", function()
    local cos = fvl.zeros(1, 3)
    expect_error(function() F.target_cos(cos, {2^31}) end, "target_cos: labels[1] = 2147483648 is outside 1..3")
    expect_error(function() F.target_cos(fvl.zeros(1, 16777216), {16777217}) end,
                 "target_cos: labels[1] = 16777217 is outside 1..16777216")
  end)
  it("the IDX reader's label shift on 0x7fffffff", function()
    write(tmp .. "/lab.idx", "\0\0\12\1" .. string.pack(">I4", 2) .. string.pack(">i4>i4", 5, 0x7fffffff))
    local t, msg = fvl._idx_load(tmp .. "/lab.idx", "int32", 1, 1)
    expect_true(t == nil and msg:find("element 1 (from 0) = 2.14748e+09 shifted by 1 is outside int32", 1, true), msg)
    t = fvl._idx_load(tmp .. "/lab.idx", "int32", 1, 0)
    expect_eq(t:totable()[2], 2147483647)
    expect_error(function() assert(fvl._idx_load(tmp .. "/lab.idx", "int32", 1, 2^40)) end,
                 "idx_load: shift = 1.09951e+12 (expected an int32 for int32 output)")
  end)
  it("data.npy 0-based labels {0, 2^31-1} do not become {1, -2^31}", function()
    fvl.save(tmp .. "/x.npy", fvl.zeros(2, 3))
    npy(tmp .. "/y.npy", "{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }", string.pack("<i4<i4", 0, 2147483647))
    local ds, msg = fvl.data.npy { features = tmp .. "/x.npy", labels = tmp .. "/y.npy" }
    expect_true(ds == nil and msg:find("contain 2147483647", 1, true), msg)
  end)
end)

describe("fuzz findings", function()
  it("plot.color(INT32_MIN) (api_fuzz seed 2: signed overflow of i - 1)", function()
    expect_error(function() fvl._plot.color(-2147483648) end, "plot.color: i = -2147483648 is outside 1..2147483647")
    expect_eq(select("#", fvl._plot.color(3)), 3)
  end)
  it("layer inputs with sizes above int (found by reading layers.c: H + 2·padding overflowed int)", function()
    -- a 0-sample batch holds any sizes; the kernels' int sizes and padded extents must not wrap
    expect_error(function() F.conv2d(fvl.zeros(0, 1, 2147483647, 1), fvl.zeros(1, 1, 1, 1), nil, 1, 1) end,
                 "conv2d: input is 0x1x2147483647x1: size 2147483647 of dim 2 is above 2147352577")
    expect_error(function() F.conv2d(fvl.zeros(0, 1, (1 << 32) + 3, 1), fvl.zeros(1, 1, 1, 1)) end,
                 "conv2d: input is 0x1x4294967299x1: size 4294967299 of dim 2 is above")
    expect_error(function() F.max_pool2d(fvl.zeros(0, 1, 2147483647, 2), 2, 1, 1) end,
                 "maxpool2d: input is 0x1x2147483647x2: size 2147483647 of dim 2")
    expect_error(function() F.avg_pool2d(fvl.zeros(0, (1 << 32) + 3, 2, 2), 2) end, "avgpool2d: input is")
    expect_error(function() F.linear(fvl.zeros(0, (1 << 32) + 1), fvl.zeros(0, (1 << 32) + 1)) end,
                 "linear: input is 0x4294967297: size 4294967297 of dim 1")
    expect_error(function() F.prelu(fvl.zeros(0, (1 << 32) + 1), fvl.zeros(1)) end, "prelu: input is")
    -- a padding out of range names the value given (was printed as an int: 2^40 showed as 0)
    expect_error(function() F.conv2d(fvl.zeros(1, 1, 2, 2), fvl.zeros(1, 1, 1, 1), nil, 1, 1 << 40) end,
                 "conv2d: padding = 1099511627776 (expected 0..65535)")
  end)
end)

describe("an empty class matrix still bounds the labels", function()
  it("gather_rows, center_dist, disc_dist, target_cos, margin_ce", function()
    expect_error(function() F.gather_rows(fvl.randn(0, 4), {5, 1}) end,
                 "gather_rows: labels[1] = 5 is outside 1..0 (there are no classes)")
    expect_error(function() F.center_dist(fvl.randn(2, 4), fvl.randn(0, 4), {5, 1}) end,
                 "center_dist: labels[1] = 5 is outside 1..0")
    expect_error(function() F.disc_dist(fvl.randn(2, 4), fvl.randn(0, 4), {5, 1}, fvl.randn(4)) end,
                 "disc_dist: labels[1] = 5 is outside 1..0")
    expect_error(function() F.margin_ce(fvl.zeros(2, 0), {1, 1}, {s = 1}) end, "margin_ce: labels[1] = 1 is outside 1..0")
  end)
end)

describe("leaks and error paths", function()
  it("fvl.where raising on its third argument frees the second (ASan checks)", function()
    expect_error(function() fvl.where(fvl.ones(2), {1, 2}, "x") end)
    expect_error(function() fvl.where(fvl.ones(2), {1, 2}, {{1}, {2, 3}}) end, "ragged table")
  end)
end)

describe("declared option tables", function()
  it("unknown keys, types, ranges and enums name the call", function()
    local p, g = fvl.zeros(3), fvl.ones(3)
    expect_error(function() F.sgd_step(p, g, nil, {lr = 0.1, momentun = 0.9}) end,
                 "sgd_step: unknown option 'momentun' (expected one of: lr, momentum,")
    expect_error(function() F.sgd_step(p, g, nil, {lr = -1}) end, "sgd_step: lr = -1 is outside 0..")
    expect_error(function() F.sgd_step(p, g, nil, {lr = "x"}) end, "sgd_step: lr must be a number, got string")
    expect_error(function() F.sgd_step(p, g, nil, {lr = 0 / 0}) end, "sgd_step: lr = ")
    expect_error(function() F.adamw_step(p, g, fvl.zeros(3), fvl.zeros(3), {lr = 0.1, step = 1.5}) end,
                 "adamw_step: step = 1.5 (expected an integer)")
    local cos = fvl.zeros(2, 3)
    expect_error(function() F.margin_ce(cos, {1, 2}, {s = 1, fallback = "wrap"}) end,
                 "margin_ce: fallback = 'wrap' (expected mm|none|clamp|easy)")
    expect_error(function() F.margin_ce(cos, {1, 2}, {s = 1, sphere_m = 2^40, target = "sphere"}) end,
                 "margin_ce: sphere_m = 1.09951e+12 is outside 1..16")
    expect_error(function() F.margin_ce(cos, {1, 2}, {s = "big"}) end, "margin_ce: s must be a number or a tensor, got string")
  end)
  it("the declared keys are the Lua option lists", function()
    local keys = {}
    for _, k in ipairs(fvl._options.margin_spec) do keys[k] = true end
    expect_true(keys.s and keys.m and keys.fallback and keys.gws and keys.nonfinite, "margin_spec keys")
    expect_eq(fvl._options.sgd_step[1], "lr")
  end)
  it("the plot bindings read declared tables (fvl._options['plot.*'] are fvl.plot's lists)", function()
    local series = { { x = { 1, 2 }, y = { 3, 4 } } }
    local P = fvl._plot
    expect_error(function() P.lines({ file = tmp .. "/d.png", series = series, titel = "x" }) end,
                 "plot.lines: unknown option 'titel' (expected one of: file, width, height, title,")
    expect_error(function() P.lines({ file = tmp .. "/d.png", series = series, xlog = 1 }) end,
                 "plot.lines: xlog must be a boolean, got number")
    expect_error(function() P.lines({ file = tmp .. "/d.png", series = series, legend = 9 }) end,
                 "plot.lines: legend = 9 is outside -1..4")
    expect_error(function() P.lines({ file = tmp .. "/d.png", series = { { x = { 1 }, y = { 2 }, dash = "wavy" } } }) end,
                 "plot.lines: series[1]: dash = 'wavy' (expected solid|dashed|dotted)")
    expect_error(function() P.lines({ file = tmp .. "/d.png", series = series, notes = { { x = 1, y = 2, txt = "a" } } }) end,
                 "plot.lines: notes[1]: unknown option 'txt' (expected one of: x, y, text)")
    expect_error(function() P.sheet(tmp .. "/s.png", { { file = tmp .. "/d.png", caption = "c" } }) end,
                 "plot.sheet: panels[1]: unknown option 'caption'")
    expect_error(function() P.features(fvl.randn(3, 2), nil, { alpha = 2 }) end, "plot.features: alpha = 2 is outside 0..1")
    expect_error(function() fvl.plot.lines({ file = tmp .. "/d.png", series = { { x = { 1 }, y = { 2 }, colour = 1 } } }) end,
                 "plot.lines: series[1]: unknown option 'colour'")
    -- many notes and series with GC-running __index tables: the stack stays bounded, strings live
    local notes = {}
    for i = 1, 300 do notes[i] = gc_proxy(function(k) return k == "text" and ("n" .. i) or (k == "x" and i or k == "y" and i or nil) end, 0) end
    local many = {}
    for i = 1, 300 do many[i] = { x = { i, i + 1 }, y = { 1, 2 }, label = "s" .. i } end
    P.lines({ file = tmp .. "/many.png", series = many, notes = notes, width = 320, height = 240 })
    expect_true(io.open(tmp .. "/many.png", "rb") ~= nil, "the chart was written")
  end)
end)

describe("strict .npy headers", function()
  local data = string.pack("<f<f<f<f", 1, 2, 3, 4)
  local function load_err(dict, bytes)
    npy(tmp .. "/h.npy", dict, bytes or data)
    local t, msg = fvl.load(tmp .. "/h.npy")
    expect_true(t == nil, "refused: " .. dict)
    return msg
  end
  it("a valid header in any key order loads", function()
    npy(tmp .. "/ok.npy", "{'shape': (2, 2), 'fortran_order': False, 'descr': '<f4'}", data)
    expect_all_near(assert(fvl.load(tmp .. "/ok.npy")), {{1, 2}, {3, 4}}, 0, 0)
  end)
  it("fortran_order True without a space is read as Fortran order, not as C order", function()
    npy(tmp .. "/fo.npy", "{'descr': '<f4', 'fortran_order':True, 'shape': (2, 2), }", data)
    expect_all_near(assert(fvl.load(tmp .. "/fo.npy")), {{1, 3}, {2, 4}}, 0, 0)
    -- the engine's own reader (fvl._npy_load_1, float32/int32 only) refuses it
    local t, msg = fvl._npy_load_1(tmp .. "/fo.npy")
    expect_true(t == nil and msg:find("Fortran order is not supported", 1, true), msg)
  end)
  it("a duplicate descr key (a '>f4' hidden behind it) is refused", function()
    local msg = load_err("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), 'descr': '>f4', }")
    expect_true(msg:find("duplicate key 'descr'", 1, true), msg)
  end)
  it("big-endian data is refused", function()
    local msg = load_err("{'descr': '>f4', 'fortran_order': False, 'shape': (2, 2), }")
    expect_true(msg:find("big-endian", 1, true), msg)
  end)
  it("structured dtypes are refused", function()
    local msg = load_err("{'descr': [('a', '<f4'), ('b', '<f4')], 'fortran_order': False, 'shape': (2,), }")
    expect_true(msg:find("structured dtypes are not supported", 1, true), msg)
  end)
  it("unknown keys, missing keys and trailing text are refused", function()
    expect_true(load_err("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), 'x': 1}"):find("unknown key 'x'", 1, true))
    expect_true(load_err("{'descr': '<f4', 'shape': (2, 2)}"):find("missing key 'fortran_order'", 1, true))
    expect_true(load_err("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2)} junk"):find("unexpected text", 1, true))
    expect_true(load_err("{'descr': '<f4', 'fortran_order': False, 'shape': (2, -2)}"):find("non-negative integers", 1, true))
  end)
end)

describe("strict checkpoint loader", function()
  local json = require "fvl.json"
  local function fresh()
    local dir = tmp .. "/ck" .. math.random(1, 1e9)
    local net = fvl.nn.Linear(3, 2)
    fvl.save_checkpoint(dir, {net = net, step = 5})
    local f = assert(io.open(dir .. "/checkpoint.json", "rb"))
    local h = json.decode(f:read("a"))
    f:close()
    return dir, h, net
  end
  local function rewrite(dir, h)
    local f = assert(io.open(dir .. "/checkpoint.json", "wb"))
    f:write(json.encode(h))
    f:close()
  end
  it("keeps the reason for a truncated blob", function()
    local dir, h = fresh()
    local _, e = next(h.tensors)
    local f = assert(io.open(dir .. "/" .. e.file, "rb"))
    local bytes = f:read("a")
    f:close()
    write(dir .. "/" .. e.file, bytes:sub(1, #bytes - 4))
    local ck, msg = fvl.load_checkpoint(dir)
    expect_true(ck == nil and msg:find("truncated", 1, true), msg)
  end)
  it("a malformed header is nil, message (never a raise)", function()
    local dir, h = fresh()
    for _, bad in ipairs {
      {tensors = 5}, {net = {names = 7}}, {step = "x"}, {extra = {{path = 3}}}, {opt = {state = {{path = {"a"}, tensor = "nope"}}}},
    } do
      local h2 = {}
      for k, v in pairs(h) do h2[k] = v end
      for k, v in pairs(bad) do h2[k] = v end
      rewrite(dir, h2)
      local ok, ck, msg = pcall(fvl.load_checkpoint, dir)
      expect_true(ok and ck == nil and msg:find("is malformed", 1, true), tostring(ck) .. " " .. tostring(msg))
    end
  end)
  it("a key given twice (a version hidden behind another) is malformed, not last-wins", function()
    local dir = fresh()
    local f = assert(io.open(dir .. "/checkpoint.json", "rb"))
    local text = f:read("a")
    f:close()
    f = assert(io.open(dir .. "/checkpoint.json", "wb"))
    f:write((text:gsub('^{', '{"version": -7,', 1)))
    f:close()
    local ok, ck, msg = pcall(fvl.load_checkpoint, dir)
    expect_true(ok and ck == nil and msg:find('duplicate key "version"', 1, true), tostring(ck) .. " " .. tostring(msg))
  end)
  it("the RNG state is parsed strictly (decimal strings in 0..2^64-1), by fvl.set_rng_state's check", function()
    for _, rng in ipairs { { seed = "abc", counter = "0" }, { seed = "1", counter = "18446744073709551616" },
                           { seed = "1e5", counter = "0" }, { seed = "1", counter = "0", extra = "0" } } do
      local dir, h = fresh()
      local st = fvl.rng_state()
      h.rng = rng
      rewrite(dir, h)
      local ok, ck, msg = pcall(fvl.load_checkpoint, dir)
      expect_true(ok and ck == nil and msg:find("is malformed: rng: expected {seed=, counter=}", 1, true),
                  tostring(ck) .. " " .. tostring(msg))
      expect_eq(fvl.rng_state().seed, st.seed, "the generator is untouched")
      local okr, err = pcall(fvl.set_rng_state, rng)
      expect_true(not okr and err:find("set_rng_state: expected {seed=, counter=}", 1, true), tostring(err))
    end
    local st = fvl.rng_state()
    fvl.set_rng_state { seed = "18446744073709551615", counter = "7" }
    expect_eq(fvl.rng_state().seed, "18446744073709551615")
    fvl.set_rng_state(st)
  end)
  it("refuses versions outside 1..VERSION", function()
    local dir, h = fresh()
    h.version = -7
    rewrite(dir, h)
    local ck, msg = fvl.load_checkpoint(dir)
    expect_true(ck == nil and msg:find("format version -7", 1, true), msg)
  end)
  it("refuses an int32 blob where the header (or the parameter) is float32", function()
    local dir, h, net = fresh()
    local key, e = next(h.tensors)
    fvl.save(dir .. "/" .. e.file, fvl.zeros(table.unpack(e.shape)):int())
    local ck, msg = fvl.load_checkpoint(dir)
    expect_true(ck == nil and msg:find("holds int32 but the header says float32", 1, true), msg)
    e.dtype = "int32"
    rewrite(dir, h)
    expect_error(function() fvl.load_checkpoint(dir, {net = net}) end, "is int32 in the state but float32")
    expect_true(key ~= nil)
  end)
end)

describe("sweep store", function()
  it("a store truncated to 0 bytes is an error, not a new store", function()
    write(tmp .. "/empty.sqlite", "")
    expect_error(function() fvl.store.open(tmp .. "/empty.sqlite") end,
                 "is empty (0 bytes): a truncated sweep store?")
    local s = fvl.store.open(tmp .. "/new.sqlite")   -- a path that does not exist is a new store
    s:close()
  end)
end)

describe("face data files and options", function()
  it("image sizes, label arrays and option tables are bounded at the binding", function()
    local folder = tmp .. "/faces/a"
    os.execute("mkdir -p '" .. folder .. "'")
    write(folder .. "/1.png", fvl.data.encode_image(fvl.zeros(3, 4, 4), { format = "png" }))
    local ds = assert(fvl.data.images{ folder = tmp .. "/faces" })
    local set = ds._set
    local order = fvl.zeros({ 1 }, "int32")
    expect_error(function() set:_loader(order, 2 ^ 24, false, 1, 1, 1, { C = 3, H = 65535, W = 65535 }) end,
                 "more than 2^40 values")
    expect_error(function() set:_batch(order, { C = 3, H = 4, W = 4, colour = true }) end, "unknown option 'colour'")
    expect_error(function() set:_batch(order, { C = 2, H = 4, W = 4 }) end, "C = 2")
    expect_error(function() set:_batch(order, { C = 3, H = 4, W = 4, pad = 4 }) end, "crop 4")
    expect_error(function() set:_batch(fvl.tensor({ 5 }, "int32"), { C = 3, H = 4, W = 4 }) end, "sample 6 is outside 1..1")
    local w = assert(fvl.data.rec_writer(tmp .. "/b.rec"))
    local many = {}
    for k = 1, 5000 do many[k] = k end
    expect_error(function() w:write{ label = many } end, "at most 4096 labels")
    w:abort()
  end)
  it("hostile headers in images, records, archives and pickles are errors, not crashes", function()
    -- a PNG whose IHDR claims 70000×70000 pixels
    local png = "\x89PNG\r\n\x1a\n" .. string.pack(">I4", 13) .. "IHDR" .. string.pack(">I4I4BBBBB", 70000, 70000, 8, 2, 0, 0, 0) .. "\0\0\0\0"
    expect_error(function() fvl.data.decode_image(png) end, "PNG")
    -- a JPEG cut after its markers
    expect_error(function() fvl.data.decode_image("\xFF\xD8\xFF\xE0\0\16JFIF\0") end, "JPEG")
    -- a RecordIO frame announcing 2^29 - 1 bytes
    write(tmp .. "/huge.rec", string.pack("<I4I4", 0xCED7230A, (1 << 29) - 1) .. "abcd")
    local r, err = fvl.data.rec(tmp .. "/huge.rec", { idx = false })
    expect_true(r == nil and err:find("truncated", 1, true), err)
    -- an .npz whose end record claims 65535 entries at an offset beyond the file
    write(tmp .. "/z.npz", "PK\5\6" .. string.pack("<I2I2I2I2I4I4I2", 0, 0, 65535, 65535, 0, 0x7FFFFFFF, 0))
    local t, e = fvl.load(tmp .. "/z.npz")
    expect_true(t == nil and e:find("does not fit the file", 1, true), e)
    -- pickles: a memo index of 2^32 - 1, a byte string claiming 4 GB
    write(tmp .. "/m.bin", "\x80\x02]r\xff\xff\xff\xff.")
    local p, pe = fvl.data.bin_pack(tmp .. "/m.bin")
    expect_true(p == nil and pe:find("memo index", 1, true), pe)
    write(tmp .. "/s.bin", "\x80\x02T\xff\xff\xff\xffab.")
    p, pe = fvl.data.bin_pack(tmp .. "/s.bin")
    expect_true(p == nil and pe:find("truncated", 1, true), pe)
    -- a deep MARK-less APPENDS
    write(tmp .. "/a.bin", "\x80\x02]e.")
    p, pe = fvl.data.bin_pack(tmp .. "/a.bin")
    expect_true(p == nil and pe:find("without a MARK", 1, true), pe)
  end)
end)

describe("parser fuzz findings (tests/fuzz: fuzz_rec, fuzz_bin, fuzz_image)", function()
  local function rec_pair(name, idx_text)
    local p = tmp .. "/" .. name .. ".rec"
    local w = assert(fvl.data.rec_writer(p))
    w:write_raw("abcd")
    w:write_raw("efgh")
    assert(w:close())
    if idx_text then write(tmp .. "/" .. name .. ".idx", idx_text) end
    return p
  end
  it("an .idx whose last line ends in a digit (no newline) is an error, not a read past the buffer", function()
    local p = rec_pair("noeol", "0\t0\n1\t16")
    local r, err = fvl.data.rec(p)
    expect_true(r == nil and err:find("line 2: expected 'key<TAB>offset<LF>'", 1, true), err)
  end)
  it("an .idx offset of 2^63 - 1 is outside the file (no signed overflow)", function()
    local p = rec_pair("bigoff", "0\t0\n1\t9223372036854775807\n")
    local r, err = fvl.data.rec(p)
    expect_true(r == nil and err:find("offset 9223372036854775807 is outside", 1, true), err)
    p = rec_pair("hugeoff", "0\t0\n1\t99999999999999999999\n")
    r, err = fvl.data.rec(p)
    expect_true(r == nil and err:find("0..2^63-1", 1, true), err)
  end)
  it("an insightface header whose range is huge or beyond the records is refused", function()
    local p = tmp .. "/hdr.rec"
    local w = assert(fvl.data.rec_writer(p))
    w:write { label = { 3, 9.2e19 }, key = 0 }
    w:write { image = "x", label = 0 }
    w:write { image = "y", label = 1 }
    assert(w:close())
    local s, err = fvl.data.images { rec = p }
    expect_true(s == nil and err:find("are not a range of record numbers", 1, true), err)
    w = assert(fvl.data.rec_writer(p))
    w:write { label = { 1000000, 1000001 }, key = 0 }
    w:write { image = "x", label = 0 }
    assert(w:close())
    s, err = fvl.data.images { rec = p }
    expect_true(s == nil and err:find("records 1..999999 but the file holds 2 records", 1, true), err)
  end)
end)

describe("pickle numpy shapes (.bin packs; found by reading pickle.c's shape product)", function()
  it("an array of shape (2^40, 2^40) is refused (the element count overflowed int64)", function()
    local big = "\x8a\x06" .. string.pack("<I6", 1 << 40)
    local arr = "cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85C\x01b\x87R" ..
                "(K\x01" .. big .. big .. "\x86" .. "cnumpy\ndtype\nX\x02\x00\x00\x00u1K\x00K\x01\x87R" ..
                "\x89C\x01xtb"
    write(tmp .. "/shape.bin", "\x80\x02](" .. arr .. "q\x00h\x00e]\x88a\x86.")
    local p, e = fvl.data.bin_pack(tmp .. "/shape.bin")
    expect_true(p == nil and e:find("bins[1] is a _reconstruct that is not a numpy array of plain numbers", 1, true), e)
  end)
end)

describe("ZIP offsets near 2^64 (.npz; found by reading fvl_npz_read while splitting it)", function()
  local function eocd(entries, cd_size, cd_off)
    return "PK\5\6" .. string.pack("<I2I2I2I2I4I4I2", 0, 0, entries, entries, cd_size, cd_off, 0)
  end
  it("a ZIP64 end-record locator at 2^64 - 16 is refused (no wrapped bounds check)", function()
    write(tmp .. "/z64.npz", string.pack("<I4I4I8I4", 0x07064b50, 0, 0xFFFFFFFFFFFFFFF0, 1) ..
                             eocd(0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF))
    local t, e = fvl.load(tmp .. "/z64.npz")
    expect_true(t == nil and e:find("bad ZIP64 end record", 1, true), e)
  end)
  it("a member whose ZIP64 local-header offset is 2^64 - 16 is refused", function()
    local name = "a.npy"
    local extra = string.pack("<I2I2I8", 1, 8, 0xFFFFFFFFFFFFFFF0)
    local entry = string.pack("<I4I2I2I2I2I2I2I4I4I4I2I2I2I2I2I4I4", 0x02014b50, 45, 45, 0, 0, 0, 0, 0, 0, 0,
                              #name, #extra, 0, 0, 0, 0, 0xFFFFFFFF) .. name .. extra
    write(tmp .. "/zloff.npz", entry .. eocd(1, #entry, 0))
    local t, e = fvl.load(tmp .. "/zloff.npz")
    expect_true(t == nil and e:find("damaged local header", 1, true), e)
  end)
end)

describe("error paths release what they took (engine bytes held return to where they were)", function()
  it("index_add with a bad source after a valid index list (found by api_fuzz seed 1)", function()
    local t = fvl.zeros(4, 3)
    collectgarbage(); collectgarbage()
    local before = fvl.mem().live
    for _ = 1, 3 do
      local ok = pcall(function() return t:index_add(1, {1, 2}, "not a tensor") end)
      expect_true(not ok, "index_add accepted a string source")
    end
    collectgarbage(); collectgarbage()
    expect_eq(fvl.mem().live, before, "engine bytes held after three failed index_add calls")
  end)
end)

describe("requests beyond the machine", function()
  it("a tensor larger than RAM + swap is an error at once, not a later kill by the OOM killer", function()
    -- 2^39 floats = 2 TB: within the 2^40-element bound, beyond any machine this runs on
    expect_error(function() fvl.zeros(1 << 39) end, "out of memory: 2199023255552 bytes requested")
  end)
end)

describe("bench probes", function()
  it("fvl._bench.fma_peak_all refuses a duration outside (0, 10] and measures within it", function()
    for _, bad in ipairs({ 0, -1, 11, 0 / 0 }) do
      local ok, err = pcall(fvl._bench.fma_peak_all, bad)
      expect_true(not ok and err:find("fma_peak_all: seconds", 1, true), tostring(err))
    end
    local peak, isa = fvl._bench.fma_peak_all(0.05)
    expect_true(peak > 0 and (isa == "avx512" or isa == "avx2" or isa == "scalar"), tostring(isa))
  end)
end)

describe("integers from Lua, bounded before use", function()
  it("a conv stride past int is named as given, not truncated", function()
    local ok, err = pcall(fvl.F.conv2d_grouped, fvl.randn(1, 2, 4, 4), fvl.randn(2, 1, 3, 3), nil, (1 << 32) + 5, 0, 2)
    expect_true(not ok and err:find("stride = 4294967301 (expected 1..65535)", 1, true), tostring(err))
  end)
  it("process ids are bounded, never truncated: alive(2^32 + 1) is not pid 1, poll(0/-1) never reaps any child", function()
    expect_eq(fvl.sys.alive((1 << 32) + 1), false)
    expect_eq(fvl.sys.alive(0), false)
    for _, pid in ipairs { (1 << 32) + 1, 0, -1 } do
      local ok, err = pcall(fvl.sys.poll, pid)
      expect_true(not ok and err:find("sys.poll: pid = " .. pid .. " is outside 1..2147483647", 1, true), tostring(err))
    end
  end)
end)

describe("unknown option keys are errors (one declared key list per call)", function()
  local function refused(what, f, msg)
    local ok, err = pcall(f)
    expect_true(not ok and tostring(err):find(msg, 1, true), what .. ": " .. tostring(err))
  end
  it("a head's call options: the keys its forward reads, Partial FC's sample", function()
    fvl.manual_seed(11)   -- the losses below are > 0 for these draws, whatever ran before
    local x, y = fvl.randn(2, 4), { 1, 3 }
    refused("arcface", function() return fvl.loss.arcface { dim = 4, classes = 3 }(x, y, { samples = 1 }) end,
            "arcface call: unknown option 'samples' (this head takes no call options)")
    refused("call not a table", function() return fvl.loss.cosface { dim = 4, classes = 3 }(x, y, 5) end,
            "cosface call: options must be a table, got number")
    local e = fvl.loss.elasticface { dim = 4, classes = 3 }
    refused("elasticface", function() return e(x, y, { margin = fvl.rand(2) }) end,
            "elasticface call: unknown option 'margin' (expected one of: margins)")
    expect_true(e(x, y, { margins = fvl.rand(2) }):item() > 0)
    local p = fvl.loss.arcface { dim = 4, classes = 3, partial_fc = 0.5 }
    refused("partial_fc", function() return p(x, y, { sampel = fvl.tensor({ 1, 3 }, "int32") }) end,
            "arcface call: unknown option 'sampel' (expected one of: sample)")
    local pe = fvl.loss.elasticface { dim = 4, classes = 3, partial_fc = 0.5 }
    expect_true(pe(x, y, { sample = fvl.tensor({ 1, 3 }, "int32"), margins = fvl.rand(2) }):item() > 0)
    refused("partial_fc elasticface", function() return pe(x, y, { bogus = 1 }) end,
            "elasticface call: unknown option 'bogus' (expected one of: sample, margins)")
  end)
  it("log.read, nn.ConvBlock, a margin head's boundary, plot.features' panel", function()
    local path = tmp .. "/opts.jsonl"
    fvl.log.append(path, { step = 1 })
    refused("log.read", function() return fvl.log.read(path, { runs = "a" }) end,
            "log.read: unknown option 'runs' (expected one of: run)")
    expect_eq(#fvl.log.read(path, { run = "a" }), 0)
    refused("ConvBlock", function() return fvl.nn.ConvBlock(2, 2, 3, { strides = 2 }) end,
            "ConvBlock: unknown option 'strides' (expected one of: stride, padding, groups, linear)")
    local m = fvl.loss.margin { dim = 2, classes = 2, target = function(c) return c - 0.2 end }
    refused("boundary", function() return m:boundary { nrom = 2 } end,
            "margin:boundary: unknown option 'nrom' (expected one of: norm, label)")
    expect_eq(type(m:boundary { norm = 2, label = "x" }.f), "function")
    -- a panel keeps its embeddings apart from the options: no internal keys in the user's list
    local emb = fvl.randn(4, 2)
    refused("features", function() return fvl.plot.features(emb, { 1, 2, 1, 2 }, { __emb = emb }) end,
            "plot.features: unknown option '__emb' (expected one of: title,")
    local panel = fvl.plot.features(emb, { 1, 2, 1, 2 }, { title = "p" })
    expect_eq(panel:save(tmp .. "/panel.png", 64, 64), tmp .. "/panel.png")
  end)
end)

os.execute("rm -rf '" .. tmp .. "'")

describe("a head's fields set between steps: the constructor's rule at the next call", function()
  local x, y = fvl.randn(4, 3), { 1, 2, 3, 1 }
  it("s, m out of range, NaN or of the wrong type name the head, the field, expected and actual", function()
    local h = fvl.loss.arcface { dim = 3, classes = 3 }
    expect_true(h(x, y):item() > 0, "valid call")
    h.s = -3
    expect_error(function() h(x, y) end, "arcface: s = -3 is outside 0..inf (head.s was set after construction)")
    h.s = 0 / 0
    expect_error(function() h(x, y) end, "arcface: s must be a number, got nan (head.s was set after construction)")
    h.s = 32
    h.m = "x"
    expect_error(function() h(x, y) end, "arcface: m must be a number, got string (head.m was set after construction)")
    h.m = 0.3
    h.fallback = "zz"
    expect_error(function() h(x, y) end, "arcface: fallback = 'zz' (expected mm|easy|none|clamp)")
    h.fallback = "none"
    expect_true(h(x, y):item() > 0, "valid values again")
    h.s = fvl.ones(4) * 16   -- a per-row scale (the spec reader checks its length)
    expect_true(h(x, y):item() > 0, "per-row s")
    local c = fvl.loss.adaface { dim = 3, classes = 3 }
    c.t_alpha = 2
    expect_error(function() c(x, y) end, "adaface: t_alpha = 2 is outside 0..1")
    local sp = fvl.loss.sphereface { dim = 3, classes = 3 }
    sp.m = 2.5
    expect_error(function() sp(x, y) end, "sphereface: m = 2.5 (expected an integer)")
  end)
  it("a field the forward moves (AdaCos's dynamic s) is checked by the same rule", function()
    local a = fvl.loss.adacos { dim = 3, classes = 4 }
    a(x, y)
    a(x, y)
    expect_true(a.s > 0, "dynamic s")
    a.s = -1
    expect_error(function() a(x, y) end, "adacos: s = -1 is outside 0..inf")
    expect_error(function() fvl.loss.adacos { dim = 3, classes = 4, s = -1 } end, "adacos: s = -1 is outside 0..inf")
  end)
  it("an integer option of inf or 1e300 is an error, not nil", function()
    expect_error(function() fvl.loss.arcface { dim = 3, classes = math.huge } end, "arcface: classes = inf (expected an integer)")
    expect_error(function() fvl.loss.arcface { dim = 1e300, classes = 3 } end, "arcface: dim = 1e+300 (expected an integer)")
  end)
end)

describe("found by the API fuzzer's new scenarios", function()
  it("fvl.log: a path or options of the wrong type are named errors", function()
    expect_error(function() fvl.log.read({}) end, "log.read: path must be a file name, got table")
    expect_error(function() fvl.log.open(tmp .. "/l.jsonl", 5) end, "log.open: options must be a table, got number")
  end)
  it("fvl.data.mnist: its own errors, never Fashion-MNIST's", function()
    local ok, msg = fvl.data.mnist { path = tmp .. "/no-such-dir" }
    expect_eq(ok, nil)
    expect_true(msg:find("^mnist: ") and msg:find("MNIST has no Debian package", 1, true)
                and not msg:find("Fashion", 1, true), msg)
    expect_error(function() fvl.data.mnist { path = tmp, split = "x" } end, "mnist: split = 'x'")
  end)
  it("arguments of the wrong type are named, never a Lua error from inside the library", function()
    local cases = {
      { function() fvl.checkpoint.info({}) end, "checkpoint.info: path must be a non-empty string, got table" },
      { function() fvl.dist.checkpoint_info(nil) end, "fvl.dist.checkpoint_info: dir must be a non-empty string, got nil" },
      { function() fvl.dist.load_checkpoint(true) end, "fvl.dist.load_checkpoint: dir must be a non-empty string, got boolean" },
      { function() fvl.dist.shard_indices(nil) end, "fvl.dist.shard_indices: n must be a number, got nil" },
      { function() fvl.dist.shard_indices(10, 1, 1) end, "fvl.dist.shard_indices: rank = 1 is outside 0..0 (size 1)" },
      { function() fvl.dist.part(10, "0", 1) end, "fvl.dist.part: rank must be a number, got string" },
      { function() fvl.save(nil, fvl.ones(2)) end, "save: path must be a file name (string expected, got nil)" },
      { function() fvl.save(tmp .. "/x.npy", "a") end, "save: value must be a tensor or a table of named tensors, got string" },
      { function() fvl.eval.fmt_far("x") end, "fmt_far: far must be a number, got string" },
      { function() fvl.eval.summary(nil) end, "summary: r must be a result table of fvl.eval.verification, got nil" },
      { function() fvl.eval.flip_embed(3, fvl.randn(1, 1, 2, 2)) end, "flip_embed: net_fn must be a function or a module (callable), got number" },
      { function() fvl.nn.init.xavier_normal_(nil) end, "xavier_normal_: t must be a tensor, got nil" },
      { function() fvl.nn.init.apply(5, "kaiming_normal") end, "init.apply: net must be an fvl.nn module, got number" },
      { function() fvl.stack({ fvl.ones(2), 3 }) end, "stack: list[2] is a number, expected a tensor" },
      { function() fvl.schedule.warmup("x", { steps = 2 }) end, "schedule.warmup: inner must be a schedule, a number or a function of the step, got string" },
    }
    for _, c in ipairs(cases) do expect_error(c[1], c[2]) end
    expect_eq(#fvl.dist.shard_indices(5, 0, 1), 5)
    local first, n = fvl.dist.part(10, 1, 3)
    expect_eq(first, 5)
    expect_eq(n, 3)
  end)
end)

describe("evaluation extras at the boundary (k-means, NMI/AMI, MegaFace)", function()
  it("names and labels made fresh by __index (with collections) are copied before use", function()
    local emb = fvl.randn(4, 3)
    local names = gc_proxy(function(i) return string.format("p%d/img_%d.jpg", i % 2, i) end, 4)
    local dir = tmp .. "/mf"
    expect_eq(fvl.eval.export_megaface(dir, emb, names), 4)
    local back = fvl.eval.load_megaface_features(dir, { "p1/img_1.jpg", "p0/img_2.jpg", "p1/img_3.jpg", "p0/img_4.jpg" })
    expect_eq((back - emb):abs():max():item(), 0)
    local lab = gc_proxy(function(i) return (i - 1) % 2 + 1 end, 4)
    expect_near(fvl.eval.nmi(lab, { 1, 2, 1, 2 }), 1, 0, 1e-12)
    local r = fvl.eval.megaface_rank1(emb, lab, fvl.randn(5, 3), { far = false })
    expect_eq(r.n_pairs, 4)
    -- a __len that lies: the entries it promises are checked one by one
    local liar = setmetatable({ "a.jpg" }, { __len = function() return 4 end })
    expect_error(function() fvl.eval.export_megaface(dir, emb, liar) end, "export_megaface: names[2] must be a string")
  end)
  it("sizes and counts at the limits are errors, not allocations", function()
    local x = fvl.randn(3, 2)
    expect_error(function() fvl.eval.kmeans(x, math.maxinteger) end, "kmeans: k = 9223372036854775807 is outside 1..3")
    expect_error(function() fvl.eval.kmeans(x, 2, { max_iter = 2^40 }) end, "kmeans: max_iter")
    expect_error(function() fvl.eval.kmeans(fvl.zeros(0, 2), 1) end, "kmeans: x is 0×2")
    expect_error(function() fvl.eval.megaface_rank1(x, { 1, 1, 1 }, fvl.zeros(0, 2)) end, "megaface_rank1: distractors has no rows")
    expect_error(function() fvl.eval.ami({ 1, 2^31 }, { 1, 2 }) end, "ami: labels_a")
  end)
end)
