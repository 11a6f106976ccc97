-- Sub-center ArcFace's fused backward without the zeros (fvl.F.group_sparse, engine/loss/blk_sel.c):
-- only each (row, class)'s arg-max sub-centre takes part in dX and dW. Its gradients are the same
-- bits as the dense GEMMs over the B×(C·K) gradient (fvl.F.group_sparse(false)) on awkward sizes —
-- K = 1, 2, 3, 5, class blocks that straddle a class, C not a multiple of the block, B over the
-- kernel's 256-row chunk and not a multiple of its 12-row tile, D not a multiple of 32 and over
-- 512, targets in the last block, clamped cosines, tied sub-centres (the first one takes the
-- gradient, as torch.argmax) — and the same bits with 1 and 2 threads.
local fvl = fvl or require "fvl"
local F = fvl.F

local function with_sparse(on, fn) return with_setting(F.group_sparse, on, fn) end

-- two steps of Sub-center ArcFace (K sub-centres, C classes) with the sparse backward on and off
local function steps(on, W, K, xs, ys, threads)
  local prev = fvl.threads()
  if threads then fvl.threads(threads) end
  local head = fvl.loss.subcenter_arcface { weight = W:clone(), K = K }
  local out = {}
  local ok, err = pcall(with_sparse, on, function()
    with_setting(F.fused, true, function()
      for k = 1, #xs do out[k] = head_step_grads(head, leaf(xs[k]), ys[k]) end
    end)
  end)
  fvl.threads(prev)
  if not ok then error(err, 0) end
  return out
end

local function max_diff(a, b) return (a - b):abs():max():item() end

-- data for B×D, C classes of K: x a multiple of a target sub-centre on the first rows (clamped and
-- near-one cosines) and the last class among the targets
local function data(B, D, C, K, seed)
  fvl.manual_seed(seed)
  local W = fvl.randn(C * K, D)
  local xs, ys = {}, {}
  for k = 1, 2 do
    xs[k] = fvl.randn(B, D) * 3
    local y = fvl.randint(C, { B })
    y[B] = C
    ys[k] = y
    local yt = y:totable()
    for i = 1, math.min(3, B) do xs[k][i]:copy(W[(yt[i] - 1) * K + 1 + (i % K)] * (i + 1)) end
  end
  return W, xs, ys
end

local function same_bits(B, D, C, K, seed, W0, xs0, ys0)
  local W, xs, ys = data(B, D, C, K, seed)
  W, xs, ys = W0 or W, xs0 or xs, ys0 or ys
  local a, b = steps(false, W, K, xs, ys), steps(true, W, K, xs, ys)
  for k = 1, #xs do
    local what = string.format("K=%d %dx%dx%d step %d", K, B, D, C, k)
    expect_eq(b[k].loss, a[k].loss, what .. " loss")
    expect_eq(max_diff(b[k].x, a[k].x), 0, what .. " x.grad: largest difference sparse vs dense")
    expect_eq(max_diff(b[k][1], a[k][1]), 0, what .. " W.grad: largest difference sparse vs dense")
  end
  return a, b
end

describe("the sparse sub-centre backward", function()
  it("is on by default and F.group_sparse names a bad argument", function()
    expect_eq(F.group_sparse(), true)
    expect_error(function() F.group_sparse(1) end, "F.group_sparse: on must be true or false, got number")
  end)
  for _, K in ipairs { 1, 2, 3, 5 } do
    it("equals the dense path bit for bit, K = " .. K, function()
      same_bits(37, 40, 997, K, 20 + K)      -- many blocks straddling classes, tiles of 12 with a tail
      same_bits(5, 16, 7, K, 30 + K)         -- one block
    end)
  end
  it("equals the dense path bit for bit with B over 256 rows and D over 512", function()
    same_bits(300, 24, 401, 3, 41)
    same_bits(20, 545, 150, 2, 42)
  end)
  it("gives tied sub-centres' gradient to the first one", function()
    local B, D, C, K = 24, 16, 300, 3
    local W, xs, ys = data(B, D, C, K, 51)
    for j = 1, C, 7 do W[(j - 1) * K + 2]:copy(W[(j - 1) * K + 1]) end   -- sub-centres 1 and 2 equal
    local _, b = same_bits(B, D, C, K, 51, W, xs, ys)
    local g = b[1][1]
    for j = 1, C, 7 do
      expect_eq(g[(j - 1) * K + 2]:abs():max():item(), 0, "class " .. j .. ": the second of two tied sub-centres")
    end
    expect_true(g[1]:abs():max():item() > 0, "class 1: the first of two tied sub-centres has a gradient")
  end)
  it("gives the same bits with 1 and 2 threads", function()
    local W, xs, ys = data(45, 32, 3001, 3, 61)
    local a, b = steps(true, W, 3, xs, ys, 1), steps(true, W, 3, xs, ys, 2)
    for k = 1, 2 do
      expect_eq(max_diff(a[k].x, b[k].x), 0, "x.grad: largest difference between 1 and 2 threads")
      expect_eq(max_diff(a[k][1], b[k][1]), 0, "W.grad: largest difference between 1 and 2 threads")
    end
  end)
end)
