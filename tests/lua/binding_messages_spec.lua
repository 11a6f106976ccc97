-- binding_messages_spec.lua — the binding boundary's message rule (DEVELOPERS.md): a Lua user's
-- bad dim, index or dtype is refused by the binding, once, in 1-based Lua wording that names the
-- function, the argument, what was expected and what came; the engine's own 0-based invariant
-- messages ("... (0-based)") never reach Lua for these mistakes.

-- expect_error (run.lua) with the one fragment, and never an engine invariant's wording
local function expect_msg(fn, part)
  local err = expect_error(fn, part)
  if err:find("0-based", 1, true) then error(string.format("a 0-based engine message reached Lua: %q", err), 2) end
end

local t = fvl.tensor({{1, 2, 3}, {4, 5, 6}})   -- 2x3
local it32 = fvl.tensor({{1, 2, 3}, {4, 5, 6}}, "int32")

describe("dims are 1-based (negative: from the end)", function()
  it("views", function()
    expect_msg(function() return t:narrow(3, 1, 1) end, "narrow: dim 3 is outside 1..2")
    expect_msg(function() return t:narrow(-3, 1, 1) end, "narrow: dim -3 is outside 1..2")
    expect_msg(function() return t:narrow(0, 1, 1) end, "narrow: dim 0 is outside 1..2")
    expect_msg(function() return t:select(3, 1) end, "select: dim 3 is outside 1..2")
    expect_msg(function() return t:transpose(0, 1) end, "transpose: dim 0 is outside 1..2")
    expect_msg(function() return t:transpose(1, -3) end, "transpose: dim -3 is outside 1..2")
    expect_msg(function() return t:unsqueeze(0) end, "unsqueeze: dim 0 is outside 1..3")
    expect_msg(function() return t:unsqueeze(4) end, "unsqueeze: dim 4 is outside 1..3")
    expect_msg(function() return t:sum():size(1) end, "size: dim 1 of a 0-D tensor")
  end)
  it("index, index_add, gather, cat, normalize, reductions", function()
    expect_msg(function() return t:index(3, {1}) end, "index: dim 3 is outside 1..2")
    expect_msg(function() return t:clone():index_add(0, {1}, fvl.zeros(1, 3)) end, "index_add: dim 0 is outside 1..2")
    expect_msg(function() return t:gather(3, fvl.tensor({{1}, {1}}, "int32")) end, "gather: dim 3 is outside 1..2")
    expect_msg(function() return fvl.cat({t, t}, 3) end, "cat: dim 3 is outside 1..2")
    expect_msg(function() return fvl.normalize(t, -3) end, "normalize: dim -3 is outside 1..2")
    expect_msg(function() return t:sum(-3) end, "sum: dim -3 is outside 1..2")
    expect_msg(function() return t:argsort(3) end, "argsort: dim 3 is outside 1..2")
  end)
  it("shape mismatches name 1-based dims and tensors", function()
    expect_msg(function() return t:gather(2, fvl.tensor({{1}}, "int32")) end,
               "gather: indices have 1 along dim 1, input has 2")
    expect_msg(function() return t:gather(2, fvl.tensor({1, 1}, "int32")) end,
               "gather: expected a 1-D or 2-D tensor and indices of its rank, got 2x3 and indices 2")
    expect_msg(function() return fvl.cat({t, fvl.zeros(2, 2)}, 1) end,
               "cat: tensor 2 is 2x2, tensor 1 is 2x3 (expected the same sizes except along dim 1)")
    expect_msg(function() return fvl.cat({t, t, fvl.zeros(3)}, 2) end, "cat: tensor 3 is 3, tensor 1 is 2x3")
    expect_msg(function() return fvl.cat({t, it32}) end, "cat: tensor 2 is int32, tensor 1 is float32 (expected one dtype)")
    expect_msg(function() return t + fvl.zeros(2) end, "add: shapes 2x3 and 2 do not broadcast (dim -1: 3 vs 2)")
  end)
end)

describe("indices are 1-based", function()
  it("select, index, index_add, gather, get", function()
    expect_msg(function() return t:select(2, 4) end, "select: index 4 is outside 1..3")
    expect_msg(function() return t:select(1, 0) end, "select: index 0 is outside 1..2")
    expect_msg(function() return t:index(2, {1, 4}) end, "index: indices[2] = 4 is outside 1..3")
    expect_msg(function() return t:clone():index_add(2, {4}, fvl.zeros(2, 1)) end, "index_add: indices[1] = 4 is outside 1..3")
    expect_msg(function() return t:gather(1, fvl.tensor({{1, 3, 1}}, "int32")) end, "gather: indices[2] = 3 is outside 1..2")
    expect_msg(function() return t:narrow(1, 2, 2) end, "narrow: rows 2..3 are outside 1..2 of dim 1")
  end)
end)

describe("float32 arguments name the dtype and the fix", function()
  it("tensor ops", function()
    expect_msg(function() return fvl.normalize(it32) end, "normalize: input is int32, expected float32 (use :float())")
    expect_msg(function() return fvl.matmul(t, it32:t()) end, "matmul: y is int32, expected float32 (use :float())")
  end)
  it("layers", function()
    local F = fvl.F
    expect_msg(function() return F.linear(it32, fvl.zeros(4, 3)) end, "linear: input is int32, expected float32 (use :float())")
    expect_msg(function() return F.linear(t, fvl.zeros(4, 3), fvl.zeros(4, "int32")) end, "linear: bias is int32")
    local x = fvl.zeros(1, 2, 4, 4)
    expect_msg(function() return F.conv2d(x, fvl.zeros(3, 2, 3, 3, "int32")) end, "conv2d: weight is int32, expected float32 (use :float())")
    expect_msg(function() return F.max_pool2d(fvl.zeros(1, 2, 4, 4, "int32"), 2) end, "max_pool2d: input is int32")
    expect_msg(function() return F.batch_norm(x, fvl.zeros(2), fvl.zeros(2, "int32")) end, "batch_norm: running_var is int32")
    expect_msg(function() return F.prelu(x, fvl.zeros(2, "int32")) end, "prelu: weight is int32")
    expect_msg(function() return F.dropout(it32, 0.5) end, "dropout: input is int32")
    expect_msg(function() return F.conv2d_grouped(x, fvl.zeros(2, 1, 3, 3, "int32"), nil, 1, 1, 2) end,
               "conv2d_grouped: weight is int32")
    expect_msg(function() return F.bn_prelu(x, nil, nil, nil, nil, fvl.zeros(2, "int32")) end, "bn_prelu: prelu_weight is int32")
  end)
end)

describe("values scanned once by the binding, named 1-based", function()
  local nan2 = fvl.tensor({{1, 0}, {0, 1}, {1, 1}, {0.5, 0.5}})
  nan2:set(3, 2, 0 / 0)
  it("evaluation: non-finite embeddings and scores, one class", function()
    expect_msg(function() return fvl.eval.pairs(nan2, {1, 1, 2, 2}) end, "pairs: emb[3][2] = nan is not a finite number")
    expect_msg(function() return fvl.eval.pairs(fvl.randn(4, 2), {3, 3, 3, 3}) end,
               "pairs: labels: expected at least 2 classes for impostor pairs, got one class only (3)")
    expect_msg(function() return fvl.eval.verification(fvl.tensor({0.1, 0 / 0, 0.3, 0.4}), {1, 0, 1, 0}, { folds = 2 }) end,
               "verification: scores[2] = nan is not a finite number")
    expect_msg(function() return fvl.eval.flip(fvl.randn(4, 2), nan2) end, "flip: emb_flipped[3][2] = nan is not a finite number")
    expect_msg(function() return fvl.eval.identification(nan2, {1, 1, 2, 2}) end,
               "identification: gallery[3][2] = nan is not a finite number")
  end)
  it("plots: labels against the class count, non-finite points", function()
    local tmp, cleanup = temp_names()
    expect_msg(function() fvl.plot.features(fvl.randn(3, 2), {1, 7, 2}, { classes = 5, file = tmp("x.png") }) end,
               "plot.features: labels[2] = 7 is not a class id (expected an integer in 1..5)")
    expect_msg(function() fvl.plot.features(nan2, nil, { file = tmp("x.png") }) end,
               "plot.features: emb[3][2] = nan is not a finite number")
    cleanup()
  end)
  it("data: the loader's batch rows", function()
    expect_msg(function() fvl._loader_batch(fvl.zeros(4, 2), nil, nil, 3, 2, false, 0, 1, 1) end,
               "loader: batch rows 4..5 are outside 1..4")
  end)
  it("dist: a parameter listed twice (fvl.dist.overlap_grads removes repeats; its C binding checks)", function()
    local p = fvl.zeros(3):requires_grad()
    require "fvl.dist"
    expect_msg(function() fvl.dist_core.overlap({p, fvl.zeros(2):requires_grad(), p}, 1, true) end,
               "fvl.dist.overlap_grads: parameter 3 is parameter 1 again (listed twice)")
    local many = {}   -- a long list (checked by address order, not pair by pair): the earliest repeat
    for i = 1, 3000 do many[i] = fvl.zeros(1):requires_grad() end
    many[2900], many[2500] = many[7], many[1200]
    expect_msg(function() fvl.dist_core.overlap(many, 1, true) end,
               "fvl.dist.overlap_grads: parameter 2500 is parameter 1200 again (listed twice)")
  end)
end)

describe("lists: positions 1-based", function()
  it("plot.sheet names the panel", function()
    expect_msg(function() fvl._plot.sheet("x.png", {{file = "a.svg"}}) end, "plot.sheet: panels[1] 'a.svg': expected a .png file")
    expect_msg(function() fvl._plot.sheet("x.png", {{title = "t"}}) end, "plot.sheet: panels[1]: expected a PNG file name")
  end)
end)

describe("tables from Lua", function()
  it("a negative __len is refused by the binding, not by the engine's size check", function()
    local t = setmetatable({}, { __len = function() return -3 end })
    expect_msg(function() return fvl.tensor(t) end, "tensor: a table at depth 1 has length -3 (expected >= 0)")
    expect_msg(function() return fvl.IntTensor(t) end, "tensor: a table at depth 1 has length -3")
  end)
end)

describe("BatchNorm's momentum and eps are checked once, at the binding", function()
  local x = fvl.randn(4, 3)
  it("every BatchNorm binding names itself, the value and the argument", function()
    expect_msg(function() return fvl.F.batch_norm(x, nil, nil, nil, nil, true, 2) end,
               "batch_norm: momentum = 2 is outside 0..1 (argument 7)")
    expect_msg(function() return fvl.F.batch_norm(x, nil, nil, nil, nil, true, 0.1, -1) end,
               "batch_norm: eps = -1 (argument 8), expected a positive finite number")
    expect_msg(function() return fvl.F.batch_norm(x, nil, nil, nil, nil, true, 0 / 0) end,
               "batch_norm: momentum = ")
    expect_msg(function() return fvl.F.bn_prelu(x, nil, nil, nil, nil, fvl.ones(1), true, 0.1, math.huge) end,
               "bn_prelu: eps = inf (argument 9), expected a positive finite number")
  end)
  it("the layers check their options at construction; a field changed later meets the binding's check", function()
    expect_msg(function() return fvl.nn.BatchNorm1d(3, { eps = 0 }) end,
               "BatchNorm1d: eps = 0, expected a positive finite number")
    expect_msg(function() return fvl.nn.BatchNorm1d(3, { momentum = 1.5 }) end, "BatchNorm1d: momentum = 1.5 is outside 0..1")
    local bn = fvl.nn.BatchNorm1d(3)
    bn.eps = -1
    expect_msg(function() return bn(x) end, "batch_norm: eps = -1 (argument 8), expected a positive finite number")
  end)
end)

describe("a check made inside the Lua library names the user's line, never the library's", function()
  local here = debug.getinfo(1, "S").short_src
  it("binding errors raised under library code", function()
    local err = expect_error(function() local v = fvl.FloatTensor(-1) return v end, "zeros: size 1 must be a non-negative integer, got -1")
    expect_eq(err:sub(1, #here + 1), here .. ":", "position")
    expect_true(not err:find("lua/fvl/", 1, true), "no library position in " .. err)
  end)
  it("the library's own checks (fvl._raise)", function()
    local err = expect_error(function() local v = fvl.randn(2, 3):std(3) return v end, "std: dim = 3 (expected 1..2 for a 2-D tensor)")
    expect_eq(err:sub(1, #here + 1), here .. ":", "position")
    expect_error(function() return fvl.randn(2, 3):permute({ 1, {} }) end, "permute: expected a permutation of 1..2, got {1, table")
  end)
end)

describe("the boundary presets and sweeps check the options they read", function()
  it("through fvl.plot.boundaries and called directly", function()
    expect_msg(function() return fvl.plot.boundaries({ { "arcface", m = "0.5" } }, { file = os.tmpname() .. ".png" }) end,
               "plot.boundaries: losses[1].m must be a number, got string")
    expect_msg(function() return fvl.plot.boundary_sweeps.arcface(nil, 1) end,
               "fvl.plot.boundary_sweeps.arcface: o must be a table of options, got nil")
    expect_msg(function() return fvl.plot.boundary_sweeps.arcface({ m = 0.5 }) end,
               "fvl.plot.boundary_sweeps.arcface: a must be a number, got nil")
    expect_msg(function() return fvl.plot.boundary_presets.cosface({ m = fvl.zeros(1) }) end,
               "fvl.plot.boundary_presets.cosface: o.m must be a number, got fvl.Tensor")
    local o = { "arcface", m = 0.5 }
    fvl.plot.boundary_sweeps.arcface(o, 0.5)
    expect_eq(o.m, 0.25)
    local names = 0
    for k, f in pairs(fvl.plot.boundary_presets) do names = names + (type(f) == "function" and 1 or 0) end
    expect_true(names >= 10, "pairs lists the presets")
  end)
end)
