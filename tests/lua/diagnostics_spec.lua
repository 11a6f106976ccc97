-- fvl.eval collapse diagnostics: exact values on constructed embeddings and centres, and the
-- verdict on a deliberately collapsing training run (raw [0, 1] inputs, no normalisation layer,
-- ArcFace at LR 0.1 on a 2-D embedding) against a healthy one (standardised inputs, BatchNorm on
-- a 4-D embedding, Softmax), and the merged-pair rule on constructed predictions.

local function unit(deg) return { math.cos(math.rad(deg)), math.sin(math.rad(deg)) } end

describe("eval.embedding_stats", function()
  it("gives norm statistics and the mean resultant length of x/|x|", function()
    local e = fvl.tensor({ { 3, 0 }, { 0, 4 }, { -2, 0 }, { 0, -1 } })
    local s = fvl.eval.embedding_stats(e)
    expect_eq(s.n, 4, "n")
    expect_near(s.norm_mean, 2.5, 1e-6, 0, "norm_mean")
    expect_near(s.norm_std, math.sqrt(1.25), 1e-6, 0, "norm_std (population)")
    expect_near(s.norm_min, 1, 1e-6, 0, "norm_min")
    expect_near(s.norm_max, 4, 1e-6, 0, "norm_max")
    expect_near(s.mrl, 0, 0, 1e-6, "four opposite directions: mrl 0")
    local same = fvl.tensor({ { 1, 1 }, { 5, 5 }, { 0.1, 0.1 } })
    expect_near(fvl.eval.embedding_stats(same).mrl, 1, 1e-6, 0, "one direction: mrl 1")
    local half = fvl.tensor({ unit(0), unit(90) })
    expect_near(fvl.eval.embedding_stats(half).mrl, math.sqrt(0.5), 1e-6, 0, "two orthogonal: mrl 1/sqrt(2)")
  end)
  it("rejects what is not a matrix and unknown options", function()
    expect_error(function() fvl.eval.embedding_stats(fvl.zeros(3)) end, "embedding_stats: emb must be a 2-D tensor")
    expect_error(function() fvl.eval.embedding_stats(fvl.zeros(3, 2), { bogus = 1 }) end, "bogus")
  end)
end)

describe("eval.centre_stats", function()
  it("finds the smallest centre angle, close pairs and the largest cluster", function()
    local w = fvl.tensor({ unit(0), unit(2), unit(4), unit(90), unit(200) })
    local c = fvl.eval.centre_stats(w)
    expect_eq(c.classes, 5, "classes")
    expect_near(c.min_angle, 2, 1e-3, 0, "min_angle")
    expect_eq(c.close_pairs, 3, "pairs within 5°: (0,2) (0,4) (2,4)")
    expect_eq(c.largest_cluster, 3, "largest cluster")
    local c2 = fvl.eval.centre_stats(w, { angle = 3 })
    expect_eq(c2.close_pairs, 2, "pairs within 3°")
    expect_eq(c2.largest_cluster, 3, "the centre at 2° has both others within 3°")
    -- evenly spread centres: mrl 0, no cluster; the norm of a centre does not matter
    local even = {}
    for k = 0, 9 do
      local u = unit(36 * k)
      even[k + 1] = { u[1] * (k + 1), u[2] * (k + 1) }
    end
    local e = fvl.eval.centre_stats(fvl.tensor(even))
    expect_near(e.mrl, 0, 0, 1e-6, "mrl of evenly spread centres")
    expect_near(e.min_angle, 36, 1e-4, 0, "min angle of 10 evenly spread centres")
    expect_eq(e.largest_cluster, 1, "no cluster")
  end)
end)

describe("eval.class_recall and eval.diagnose", function()
  it("computes per-class recall and flags abandoned classes", function()
    local r = fvl.eval.class_recall({ 1, 1, 2, 1, 3, 3 }, { 1, 2, 2, 2, 3, 3 }, 4)
    expect_near(r.recall[1], 1, 0, 0, "class 1")
    expect_near(r.recall[2], 1 / 3, 1e-12, 0, "class 2")
    expect_near(r.recall[3], 1, 0, 0, "class 3")
    expect_eq(r.recall[4], false, "class 4 has no sample")
    expect_near(r.min, 1 / 3, 1e-12, 0, "min")
    expect_eq(#r.low, 0, "no class below 2%")
    local z = fvl.eval.class_recall(fvl.tensor({ 1, 1, 1 }, "int32"), fvl.tensor({ 1, 2, 2 }, "int32"), 2)
    expect_eq(z.min, 0, "class 2 never predicted")
    expect_eq(z.low[1], 2, "class 2 is low")
    expect_error(function() fvl.eval.class_recall({ 1 }, { 3 }, 2) end, "class_recall: labels[1] = 3 is outside 1..2")
    expect_error(function() fvl.eval.class_recall({ 1, 2 }, { 1 }, 2) end, "pred has 2 values but labels has 1")
  end)
  it("combines everything into one verdict with reasons", function()
    local w = fvl.tensor({ unit(0), unit(1), unit(2), unit(120), unit(240) })
    local d = fvl.eval.diagnose { emb = fvl.tensor({ unit(0), unit(120) }), centres = w,
                                  pred = { 1, 4 }, labels = { 1, 4 }, classes = 5 }
    expect_true(d.collapsed, "3 centres within 5°")
    expect_eq(d.largest_centre_cluster, 3, "cluster")
    expect_eq(d.low_recall_classes, 0, "classes 2, 3 and 5 have no samples: not low")
    expect_true(fvl.eval.collapse_text(d):match("^collapsed: 3 centres within 5° of one centre"), "text")
    local ok = fvl.eval.diagnose { centres = fvl.tensor({ unit(0), unit(120), unit(240) }) }
    expect_eq(ok.collapsed, false, "three evenly spread centres")
    expect_eq(fvl.eval.collapse_text(ok), "healthy", "text")
    expect_error(function() fvl.eval.diagnose { pred = { 1 } } end, "diagnose: pred needs labels= and classes=")
    expect_error(function() fvl.eval.diagnose { emb = fvl.zeros(2, 2), confusion = 2 } end, "confusion")
    expect_error(function() fvl.eval.diagnose { emb = fvl.zeros(2, 2), angel = 3 } end, "angel")
  end)
end)

describe("eval.diagnose: merged pairs", function()
  -- four classes; the centres of classes 2 and 3 are 1° apart
  local w = fvl.tensor({ unit(0), unit(90), unit(91), unit(200) })
  local labels = { 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4 }
  it("flags two close centres whose classes are confused with each other", function()
    -- 3 of the 8 samples of classes 2 and 3 predicted as the other one: 37.5%
    local pred = { 1, 1, 2, 3, 2, 2, 3, 2, 2, 3, 4, 4 }
    local d = fvl.eval.diagnose { centres = w, pred = pred, labels = labels, classes = 4 }
    expect_true(d.collapsed, "a merged pair is a collapse")
    expect_eq(d.merged_pairs, 1, "one merged pair")
    expect_eq(d.merged[1].a, 2, "pair a")
    expect_eq(d.merged[1].b, 3, "pair b")
    expect_near(d.merged[1].angle, 1, 1e-3, 0, "pair angle")
    expect_near(d.merged[1].confusion, 3 / 8, 1e-12, 0, "mutual confusion")
    expect_eq(d.largest_centre_cluster, 2, "a pair is not a cluster of 3")
    expect_true(fvl.eval.collapse_text(d):match("classes 2 and 3 merged %(centres 1%.0° apart, 38%% of their samples"),
                fvl.eval.collapse_text(d))
    -- the threshold: 37.5% is below a 40% confusion threshold
    local d40 = fvl.eval.diagnose { centres = w, pred = pred, labels = labels, classes = 4, confusion = 0.4 }
    expect_eq(d40.collapsed, false, "below the confusion threshold")
    expect_eq(d40.merged_pairs, 0, "no merged pair at 40%")
  end)
  it("does not flag close centres whose classes are still told apart, nor far centres that are confused", function()
    local d = fvl.eval.diagnose { centres = w, pred = labels, labels = labels, classes = 4 }
    expect_eq(d.collapsed, false, "close centres, no confusion: " .. fvl.eval.collapse_text(d))
    expect_eq(d.merged_pairs, 0, "merged_pairs")
    expect_eq(d.close_centre_pairs, 1, "the close pair is still counted")
    -- classes 1 and 4 (160° apart) confused half the time: hard data, not a merge
    local pred = { 4, 1, 2, 2, 2, 2, 3, 3, 3, 3, 1, 4 }
    local d2 = fvl.eval.diagnose { centres = w, pred = pred, labels = labels, classes = 4 }
    expect_eq(d2.collapsed, false, "far centres: " .. fvl.eval.collapse_text(d2))
    -- without predictions a close pair is not confirmed: not flagged
    expect_eq(fvl.eval.diagnose { centres = w }.collapsed, false, "no predictions")
    expect_eq(fvl.eval.diagnose { centres = w }.merged_pairs, nil, "no merged_pairs without predictions")
  end)
  it("lists the close pairs in centre_stats", function()
    local c = fvl.eval.centre_stats(w)
    expect_eq(#c.pairs, 1, "one close pair")
    expect_eq(c.pairs[1].a, 2, "a")
    expect_eq(c.pairs[1].b, 3, "b")
    expect_eq(fvl.eval.centre_stats(fvl.tensor({ unit(0), unit(90) })).pairs, nil, "no close pair: nil")
  end)
end)

-- a short Fashion-MNIST run (4096 images, MLP 784-64-dim, 300 SGD steps, cosine LR with warm-up)
local function train_run(head_name, inputs, bn, dim)
  local saved = fvl.threads()
  fvl.threads(1)
  local tr = assert(fvl.data.fashion_mnist { split = "train", limit = 4096 })
  local x, y = tr.images:reshape(4096, 784), tr.labels
  if inputs == "standard" then
    local m = x:mean():item()
    x = ((x - m) / math.sqrt((x * x):mean():item() - m * m)):contiguous()
  end
  fvl.manual_seed(1)
  local net = fvl.nn.mlp { sizes = { 784, 64, dim } }
  if bn then net:add(fvl.nn.BatchNorm1d(dim, { affine = false })) end
  local head = head_name == "softmax" and fvl.loss.softmax { dim = dim, classes = 10 }
      or fvl.loss[head_name] { dim = dim, classes = 10, s = 32 }
  local params = net:parameters()
  for _, p in ipairs(head:parameters()) do params[#params + 1] = p end
  local opt = fvl.optim.sgd(params, { lr = 0.1, momentum = 0.9, weight_decay = 5e-4 })
  local steps = 300
  local sched = fvl.schedule.cosine { from = 0.1, to = 0, steps = steps, warmup = 15 }
  local loader = fvl.data.loader({ x = x, labels = y }, { batch = 128, shuffle = true, seed = 1, drop_last = true })
  local step = 0
  while step < steps do
    for b in loader do
      step = step + 1
      opt.lr = sched(step)
      opt:zero_grad()
      head(net(b.x), b.y):backward()
      opt:step()
      if step >= steps then break end
    end
  end
  net:evaluate()
  local emb = fvl.no_grad(function() return net(x) end)
  local pred = fvl.no_grad(function() return head:predict(emb) end)
  fvl.threads(saved)
  return fvl.eval.diagnose { emb = emb, centres = head.weight, pred = pred, labels = y, classes = 10 }
end

describe("collapse diagnostics on training runs", function()
  it("flag a deliberately collapsing run (raw inputs, no BatchNorm, ArcFace)", function()
    local d = train_run("arcface", "raw", false, 2)
    expect_true(d.collapsed, "collapsed")
    expect_true(d.mrl_x > 0.95, "x/|x| all one way: mrl " .. d.mrl_x)
    expect_true(d.norm_mean > 100, "|x| blown up: " .. d.norm_mean)
    expect_true(d.largest_centre_cluster >= 5, "centres on one direction: " .. d.largest_centre_cluster)
    expect_true(d.min_centre_angle < 1, "min centre angle " .. d.min_centre_angle)
    expect_true(d.merged_pairs >= 1, "merged pairs confirmed by the predictions: " .. tostring(d.merged_pairs))
  end)
  -- the recipe's 4-D embedding: in 2-D this short run merges pullover and coat (centres 1.8°
  -- apart, 31% of their samples predicted as the other), which the merged-pair rule flags
  it("pass a healthy run (standardised inputs, BatchNorm on a 4-D embedding, Softmax)", function()
    local d = train_run("softmax", "standard", true, 4)
    expect_eq(d.collapsed, false, "collapsed: " .. fvl.eval.collapse_text(d))
    expect_true(d.mrl_x < 0.3, "x/|x| spread: mrl " .. d.mrl_x)
    expect_true(d.min_recall > 0.1, "every class recognised: min recall " .. d.min_recall)
    expect_true(d.norm_mean < 10, "|x| bounded: " .. d.norm_mean)
    expect_eq(d.merged_pairs, 0, "no merged pair")
  end)
end)
