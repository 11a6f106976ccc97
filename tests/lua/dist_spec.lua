-- fvl.dist in a plain process (a world of size 1) and the sharded / Partial FC options of the
-- heads: option errors, the oracle's Partial FC cases (a given sample), the sampler's rules.
-- The multi-process checks run under mpirun from tests/cli/dist_*.sh.
local fvl = fvl or require "fvl"
fvl.threads(1)
local util = require "fvl.util"

describe("fvl.dist in one process", function()
  it("is a world of size 1 without MPI", function()
    expect_eq(fvl.dist.rank(), 0)
    expect_eq(fvl.dist.size(), 1)
    expect_eq(fvl.dist.active(), false)
    local t = fvl.tensor({ 1, 2 })
    fvl.dist.allreduce(t, "max")
    expect_eq(t:totable()[2], 2.0)
  end)
  it("splits classes contiguously, the first C mod N parts one larger", function()
    local got = {}
    for r = 0, 2 do
      local first, n = fvl.dist.part(11, r, 3)
      got[#got + 1] = first .. ":" .. n
    end
    expect_eq(table.concat(got, " "), "1:4 5:4 9:3")
  end)
end)

describe("sharded and partial_fc options", function()
  it("reject bad values with the head's name", function()
    local ok, err = pcall(fvl.loss.arcface, { dim = 4, classes = 10, partial_fc = 0 })
    expect_true(not ok and err:find("arcface: partial_fc = 0 %(expected a sampling rate in %(0, 1%]%)"), err)
    ok, err = pcall(fvl.loss.cosface, { dim = 4, classes = 10, partial_fc = 1.5 })
    expect_true(not ok and err:find("cosface: partial_fc = 1.5"), err)
    ok, err = pcall(fvl.loss.arcface, { dim = 4, classes = 10, sharded = "yes" })
    expect_true(not ok and err:find("arcface") and err:find("sharded"), err)
    ok, err = pcall(fvl.loss.arcface, { dim = 4, classes = 10, partial_fc = 0.5, sharde = true })
    expect_true(not ok and err:find("unknown option 'sharde'"), err)
    ok, err = pcall(fvl.loss.circle_pairwise, { dim = 4, partial_fc = 0.5 })
    expect_true(not ok and err:find("has none"), err)
  end)
  it("check shard_chunk", function()
    local ok, err = pcall(fvl.loss.arcface, { dim = 4, classes = 10, shard_chunk = 2 })
    expect_true(not ok and err:find("arcface: shard_chunk is an option of sharded heads"), err)
    ok, err = pcall(fvl.loss.arcface, { dim = 4, classes = 10, sharded = true, shard_chunk = -1 })
    expect_true(not ok and err:find("arcface: shard_chunk = %-1"), err)
    ok, err = pcall(fvl.loss.cosface, { dim = 4, classes = 10, sharded = true, shard_chunk = 1.5 })
    expect_true(not ok and err:find("cosface: shard_chunk = 1.5"), err)
    -- in one process, chunks of 2 rows give the whole batch's loss and gradients
    fvl.manual_seed(3)
    local W = fvl.randn(10, 4)
    local a = fvl.loss.arcface { dim = 4, classes = 10, s = 16, weight = W }
    local b = fvl.loss.arcface { dim = 4, classes = 10, s = 16, weight = W, sharded = true, shard_chunk = 2 }
    local x = fvl.randn(5, 4)
    local xa, xb = x:clone():detach(), x:clone():detach()
    xa:requires_grad(); xb:requires_grad()
    local y = fvl.tensor({ 1, 4, 4, 9, 10 }, "int32")
    local la, lb = a(xa, y), b(xb, y)
    expect_true(b.shard.chunked)
    expect_near(lb:item(), la:item(), 1e-5)
    la:backward(); lb:backward()
    expect_true((xa.grad - xb.grad):abs():max():item() < 1e-5)
    expect_true((a.weight.grad - b.weight.grad):abs():max():item() < 1e-5)
  end)
  it("overlap_grads in a world of one: nothing installed, wait leaves the gradients", function()
    local net = fvl.nn.Linear(3, 2)
    local sync = fvl.dist.overlap_grads(net, { op = "sum", bucket_mb = 1 })
    net(fvl.randn(4, 3)):sum():backward()
    local g = net:parameters()[1].grad:clone()
    sync:wait()
    expect_true((net:parameters()[1].grad - g):abs():max():item() == 0)
    expect_eq(sync:buckets(), 1)
    sync:close()
    local ok, err = pcall(sync.wait, sync)
    expect_true(not ok and err:find("closed"), err)
    ok, err = pcall(fvl.dist.overlap_grads, net, { op = "max" })
    expect_true(not ok and err:find("fvl.dist.overlap_grads") and err:find("op"), err)
    ok, err = pcall(fvl.dist.overlap_grads, net, { bucket = 1 })
    expect_true(not ok and err:find("unknown option 'bucket'"), err)
    ok, err = pcall(fvl.dist.overlap_grads, { net, 3 })
    expect_true(not ok and err:find("overlap_grads"), err)
  end)
  it("checks a given sample", function()
    local h = fvl.loss.arcface { dim = 4, classes = 10, partial_fc = 0.5 }
    local x = fvl.randn(2, 4)
    local ok, err = pcall(h, x, { 3, 7 }, { sample = fvl.tensor({ 1, 3, 5 }, "int32") })
    expect_true(not ok and err:find("the sample misses class 7"), err)
    ok, err = pcall(h, x, { 3, 7 }, { sample = fvl.tensor({ 3, 1, 7 }, "int32") })
    expect_true(not ok and err:find("sorted, distinct class ids"), err)
    -- every error of the one pass in C, worded 1-based and naming the head
    local function fails(sample, y, msg)
      local okc, e = pcall(h, x, y or { 3, 7 }, { sample = sample })
      expect_true(not okc and e:find(msg, 1, true), tostring(e))
    end
    local function s32(t) return fvl.tensor(t, "int32") end
    fails(s32 { 3, 3, 7 }, nil, "arcface: sample[2] = 3 (expected sorted, distinct class ids in 1..10)")
    fails(s32 { 0, 3, 7 }, nil, "arcface: sample[1] = 0 (expected sorted, distinct class ids in 1..10)")
    fails(s32 { 3, 7, 11 }, nil, "arcface: sample[3] = 11 (expected sorted, distinct class ids in 1..10)")
    fails(s32 { -2147483648 }, nil, "arcface: sample[1] = -2147483648 (expected sorted")
    fails(s32 { 3, 2147483647 }, nil, "arcface: sample[2] = 2147483647 (expected sorted")
    fails(s32 { { 3, 5 }, { 4, 7 } }, nil, "arcface: sample[3] = 4 (expected sorted")   -- flattened row-major
    fails(s32 { 3, 5 }, nil, "arcface: the sample misses class 7, the label of gathered row 2 (every positive must be sampled)")
    fails(fvl.zeros({ 0 }, "int32"), { 7, 7 }, "the sample misses class 7, the label of gathered row 1")
    fails(fvl.tensor { 3, 7 }, nil, "arcface: sample must be a int32 tensor, got float32")
    -- what it returns: the sorted 1-based rows of the slice it samples (classes 4..9 here); the
    -- sample's other classes dropped, the labels checked against the whole sample
    local got = fvl.F._given_sample(s32 { { 1, 2 }, { 5, 9 } }, s32 { 5, 1, 9 }, 4, 6, 10, "h")
    expect_eq(table.concat(got:totable(), ","), "2,6")
    expect_eq(fvl.F._given_sample(s32 { 1, 10 }, s32 { 10, 1 }, 4, 6, 10, "h"):numel(), 0)
    local okc, e = pcall(fvl.F._given_sample, s32 { 1, 10 }, s32 { 1, 7 }, 4, 6, 10, "h")
    expect_true(not okc and e:find("h: the sample misses class 7, the label of gathered row 2", 1, true), e)
    okc, e = pcall(fvl.F._given_sample, s32 { 1 }, s32 { 1 }, 8, 6, 10, "h")
    expect_true(not okc and e:find("h: the slice of 6 classes from 8 is outside 1..10", 1, true), e)
    okc, e = pcall(fvl.F._given_sample, s32 { 1 }, s32 { 1 }, 1, 1, 2 ^ 31, "h")
    expect_true(not okc and e:find("is outside 1..2147483648", 1, true), e)
    okc, e = pcall(fvl.F._given_sample, s32 { 1 }, s32 { 11 }, 1, 10, 10, "h")
    expect_true(not okc and e:find("h: labels[1] = 11 is outside 1..10", 1, true), e)
    local yc = fvl._check_labels({ 2, 3 }, "arcface", 2, 9)   -- a checked value of another bound
    okc, e = pcall(fvl.F._given_sample, s32 { 2, 3 }, yc, 1, 10, 10, "h")
    expect_true(not okc and e:find("checked against 1..9", 1, true), e)
  end)
  it("keeps every positive, fills up to floor(rate·C), and draws different negatives per step", function()
    fvl.manual_seed(3)
    local C = 100
    local h = fvl.loss.cosface { dim = 8, classes = C, partial_fc = 0.1 }
    local seen = {}
    for step = 1, 4 do
      local y = fvl.randint(C, { 16 })
      h(fvl.randn(16, 8), y):backward()
      local rows, inS = h._pfc.rows:totable(), {}
      for _, r in ipairs(rows) do inS[r] = true end
      local pos = {}
      for _, c in ipairs(y:totable()) do
        expect_true(inS[c], "positive " .. c .. " sampled")
        pos[c] = true
      end
      local npos = 0
      for _ in pairs(pos) do npos = npos + 1 end
      expect_eq(#rows, math.max(10, npos), "sample size")
      for i = 2, #rows do expect_true(rows[i] > rows[i - 1], "sorted") end
      seen[#seen + 1] = table.concat(rows, ",")
    end
    expect_true(seen[1] ~= seen[2], "a new sample each step")
    -- evaluation mode does not sample
    h:evaluate()
    h(fvl.randn(4, 8), { 1, 2, 3, 4 })
    expect_eq(h._pfc, nil)
  end)
  it("steps only the sampled rows (momentum of the others untouched)", function()
    fvl.manual_seed(4)
    local h = fvl.loss.arcface { dim = 8, classes = 50, partial_fc = 0.2 }
    local opt = fvl.optim.sgd(h, { lr = 0.5, momentum = 0.9, weight_decay = 0.01 })
    local before = h.weight:clone()
    opt:zero_grad()
    h(fvl.randn(4, 8), { 1, 2, 3, 4 }):backward()
    opt:step()
    local rows = {}
    for _, r in ipairs(h._pfc.rows:totable()) do rows[r] = true end
    local d = (h.weight - before):abs():sum(2):totable()
    for r = 1, 50 do
      local v = type(d[r]) == "table" and d[r][1] or d[r]
      if rows[r] then expect_true(v > 0, "sampled row " .. r .. " moved")
      else expect_eq(v, 0.0, "row " .. r .. " not sampled, not moved") end
    end
  end)
end)

describe("Partial FC against the oracle", function()
  local cases = util.json_decode(util.read_file(TEST_DIR .. "/golden/cases_seed1.json")).cases
  for _, case in ipairs(cases) do
    if case.loss == "partial_fc" then
      it(case.name, function()
        local hp, inp, e = case.hparams, case.inputs, case.expected
        local ctor = hp.margin == "arc" and fvl.loss.arcface or fvl.loss.cosface
        local h = ctor { weight = fvl.tensor(inp.W), s = hp.s, m = hp.m, partial_fc = 0.5 }
        local x = fvl.tensor(inp.x)
        x:requires_grad()
        local y, sample = {}, {}
        for i, v in ipairs(inp.y) do y[i] = v + 1 end
        for i, v in ipairs(inp.sample_idx) do sample[i] = v + 1 end
        local loss = h(x, y, { sample = fvl.tensor(sample, "int32") })
        expect_near(loss:item(), e.loss, 1e-5, 0, "loss")
        loss:backward()
        local gx, gw = x.grad:totable(), h:gather_weight_grad():totable()
        for i = 1, #e.grad.x do
          for j = 1, #e.grad.x[i] do expect_near(gx[i][j], e.grad.x[i][j], 1e-3, 1e-5 * hp.s, "dx") end
        end
        for i = 1, #e.grad.W do
          for j = 1, #e.grad.W[i] do expect_near(gw[i][j], e.grad.W[i][j], 1e-3, 1e-5 * hp.s, "dW") end
        end
      end)
    end
  end
end)
