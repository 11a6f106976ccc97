-- F.group_max_ws (the max over K sub-centres that keeps its B×C output and its B×(C·K) gradient
-- in one workspace) and Sub-center ArcFace's memory: equal to F.group_max in value and gradient,
-- the workspace is reused only when its last graph is finished, and a training step of
-- subcenter_arcface holds the cosines and the B×C max at its peak (the fused class blocks form the
-- gradient through the max), or on the two-pass path the cosines, one gradient workspace and one
-- B×C buffer.
local fvl = fvl or require "fvl"
fvl.threads(1)
local F = fvl.F

local function same(a, e, what) expect_all_near(a, e:totable(), 0, 0, what) end

describe("F.group_max_ws", function()
  it("equals F.group_max in value and gradient, with and without a workspace", function()
    fvl.manual_seed(21)
    local c = fvl.randn(5, 12)
    local w = fvl.randn(5, 4)
    local ct = c:totable()
    -- ties take the first sub-centre, as torch.argmax
    ct[2][5], ct[2][6] = 0.75, 0.75
    ct[2][4] = 0.1
    c = fvl.tensor(ct)
    local function run(f)
      local t = leaf(c)
      local out = f(t)
      local v = out:clone()
      ;(out * w):sum():backward()
      return v, t.grad:clone()
    end
    local v0, g0 = run(function(t) return F.group_max(t, 3) end)
    -- a B×(C·K) workspace (the max in front, the gradient over it) and a B×C one (the max only);
    -- the later steps reuse it through prev
    for _, ws in ipairs { { 12, 3 }, { 4, 2 } } do
      local gws, prev = fvl.empty(5, ws[1]), nil
      for step = 1, ws[2] do
        local v1, g1 = run(function(t)
          prev = F.group_max_ws(t, 3, gws, prev)
          return prev
        end)
        same(v1, v0, string.format("values, 5x%d workspace, step %d", ws[1], step))
        same(g1, g0, string.format("gradient, 5x%d workspace, step %d", ws[1], step))
      end
    end
    local v2, g2 = run(function(t) return F.group_max_ws(t, 3) end)
    same(v2, v0, "values without a workspace")
    same(g2, g0, "gradient without a workspace")
    local g = g0:totable()
    expect_eq(g[2][5], w:get(2, 2), "tie: the first of the tied sub-centres gets the gradient")
    expect_eq(g[2][6], 0)
    expect_eq(g[2][4], 0)
    local ok, rep = fvl.gradcheck(function(t) return (F.group_max_ws(t, 3, fvl.empty(5, 12)) * w):sum() end,
                                  { leaf(fvl.randn(5, 12)) })
    expect_true(ok, tostring(rep))
  end)

  it("lives in the workspace, and leaves it alone while another graph still uses it", function()
    fvl.manual_seed(22)
    local gws = fvl.empty(3, 8)
    local a, b = leaf(fvl.randn(3, 8)), leaf(fvl.randn(3, 8))
    local oa = F.group_max_ws(a, 2, gws)
    expect_eq(oa:shape()[1] * 10 + oa:shape()[2], 34)
    local va = oa:clone()
    -- a's graph is unfinished: the next call must not overwrite its output
    local ob = F.group_max_ws(b, 2, gws, oa)
    same(oa, va, "the unfinished graph's output is intact")
    same(ob, F.group_max(b:detach(), 2), "the second output")
    oa:sum():backward()
    local t = leaf(a)
    F.group_max(t, 2):sum():backward()
    same(a.grad, t.grad, "gradient of the first graph")
    ob:sum():backward()
    -- both graphs finished: the workspace is reused in place (prev comes back as the output)
    local oc = F.group_max_ws(leaf(fvl.randn(3, 8)), 2, gws, oa)
    expect_true(rawequal(oc, oa) or oc:get(1, 1) == oa:get(1, 1), "reused output")
    -- untracked (no graph): reused at once
    fvl.no_grad(function()
      gws = fvl.empty(3, 8)
      local p = F.group_max_ws(fvl.randn(3, 8), 2, gws)
      local q = F.group_max_ws(fvl.randn(3, 8), 2, gws, p)
      expect_eq(q:get(1, 1), p:get(1, 1), "q is written where p was")
    end)
  end)

  it("checks its arguments", function()
    local c = fvl.randn(4, 6)
    expect_error(function() F.group_max_ws(c, 4) end,
                 "group_max_ws: cos is 4x6 but K = 4 (expected a number of columns divisible by K >= 1)")
    expect_error(function() F.group_max_ws(c, 0) end, "group_max_ws: K = 0 (expected 1..6)")
    expect_error(function() F.group_max_ws(c, 3, fvl.empty(4, 5)) end,
                 "group_max_ws: workspace gws is float32 4x5 (expected a contiguous float32 4x6 tensor, or 4x2 for the max only)")
    expect_error(function() F.group_max_ws(c, 3, c) end,
                 "group_max_ws: gws shares its storage with cos (expected a separate B×(C·K) workspace)")
    expect_error(function() F.group_max_ws(c, 3, nil, fvl.empty(4, 2)) end,
                 "group_max_ws: prev given without gws (expected the previous output on gws, or nil)")
    expect_error(function() F.group_max_ws(c, 3, fvl.empty(4, 6), fvl.empty(4, 3)) end,
                 "group_max_ws: workspace prev is float32 4x3 (expected a contiguous float32 4x2 tensor)")
  end)
end)

describe("subcenter_arcface memory", function()
  -- engine bytes at the peak of a training step beyond W and W.grad, in B×(C·K) float buffers;
  -- a separate max output, arg-max index or scattered gradient would each add 1/K to 1
  local function step_buffers(head, B, D)
    fvl.manual_seed(23)
    local x, y = fvl.randn(B, D), fvl.randint(head.classes, { B })
    x:requires_grad()
    local R = head.weight:size(1)
    local function step()
      x.grad, head.weight.grad = nil, nil
      head(x, y):backward()
    end
    step(); step()
    collectgarbage(); collectgarbage()
    local m0 = fvl.mem(true)
    step()
    local m1 = fvl.mem()
    return (m1.peak - 2 * R * D * 4) / (B * R * 4), m0
  end
  it("K = 3: the cosines and the B×C max on the fused path, 2 + 1/K buffers on the two-pass one", function()
    local B, D, C, K = 64, 16, 600, 3
    -- fused class blocks (fvl.F.fused, the default): the margin CE's gradient is formed per block
    -- through the max, so no B×C and no B×(C·K) gradient is written: 1 + 1/K and small vectors
    local fused = step_buffers(fvl.loss.subcenter_arcface { dim = D, classes = C, K = K }, B, D)
    local prev = fvl.F.fused(false)
    -- two-pass: the cosines, one gradient workspace holding the max, and the max's B×C gradient
    local two = step_buffers(fvl.loss.subcenter_arcface { dim = D, classes = C, K = K }, B, D)
    local arc = step_buffers(fvl.loss.arcface { dim = D, classes = C * K }, B, D)
    fvl.F.fused(prev)
    local arcf = step_buffers(fvl.loss.arcface { dim = D, classes = C * K }, B, D)
    if os.getenv("FVL_VERBOSE") then print(fused, two, arcf, arc) end
    expect_true(fused <= 1 + 1 / K + 0.1, string.format("fused subcenter_arcface holds %.2f buffers", fused))
    expect_true(fused <= arcf + 1 / K + 0.02, string.format("fused: subcenter_arcface %.2f vs arcface %.2f buffers", fused, arcf))
    expect_true(two <= 2 + 1 / K + 0.15, string.format("two-pass subcenter_arcface holds %.2f buffers", two))
    expect_true(two <= arc + 1 / K + 0.05, string.format("two-pass: subcenter_arcface %.2f vs arcface %.2f buffers", two, arc))
  end)
end)
