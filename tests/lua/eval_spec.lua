-- fvl.eval: verification against scikit-learn golden values (tests/golden/sklearn_*.json),
-- seeded pairs, identification against brute-force golden values, flip test, and every error path.
local json = fvl.json

local function golden(name)
  local f = assert(io.open(TEST_DIR .. "/golden/sklearn_" .. name .. ".json", "rb"))
  local d = json.decode(f:read("a"))
  f:close()
  return d.cases
end
local function isnull(v) return v == nil or v == json.null end

-- a small labelled embedding set: C classes around random centres
local function blobs(C, per, D, noise, seed)
  fvl.manual_seed(seed or 1)
  local lab = {}
  for i = 1, C * per do lab[i] = (i - 1) % C + 1 end
  local centres = fvl.randn(C, D)
  local emb = centres:index(1, fvl.tensor(lab, "int32")) + fvl.randn(C * per, D) * (noise or 0.8)
  return emb, lab
end

describe("eval.verification", function()
  for _, file in ipairs { "roc", "lfw" } do
    for _, c in ipairs(golden(file)) do
      it("equals scikit-learn on case '" .. c.name .. "'", function()
        local r = fvl.eval.verification(fvl.tensor(c.scores), c.same, { drop_intermediate = false })
        expect_eq(r.n, c.n, "n")
        expect_eq(r.n_genuine, c.n_genuine, "n_genuine")
        expect_eq(r.n_impostor, c.n_impostor, "n_impostor")
        expect_near(r.auc, c.auc, 1e-12, 0, "auc")
        expect_near(r.eer, c.eer, 1e-12, 0, "eer")
        for i, f in ipairs(fvl.eval.fars) do
          if isnull(c.tar_at_far[i]) then
            expect_eq(r.tar_at_far[f], nil, "TAR@" .. f .. " must be absent")
          else
            expect_near(r.tar_at_far[f], c.tar_at_far[i], 0, 1e-15, "TAR@" .. f)
          end
        end
        expect_eq(r.roc.far:numel(), c.n_roc, "ROC points")
        if c.fpr then
          expect_all_near(r.roc.far, c.fpr, 0, 1e-7, "fpr")
          expect_all_near(r.roc.tar, c.tpr, 0, 1e-7, "tpr")
        end
        if c.kfold_acc then
          expect_near(r.accuracy, c.kfold_acc, 1e-12, 0, "10-fold accuracy")
          expect_near(r.std, c.kfold_std, 1e-9, 1e-12, "10-fold std")
          expect_near(r.threshold, c.kfold_thr, 1e-6, 1e-7, "mean threshold")
          expect_all_near(r.fold_accuracy, c.kfold_fold_acc, 1e-12, 0, "fold accuracies")
          for i, f in ipairs(fvl.eval.fars) do
            if isnull(c.val[i]) then
              expect_eq(r.val[f], nil, "VAL@" .. f .. " must be absent")
            else
              expect_near(r.val[f].tar, c.val[i], 1e-12, 0, "VAL@" .. f)
              expect_near(r.val[f].std, c.val_std[i], 1e-9, 1e-12, "VAL std @" .. f)
              expect_near(r.val[f].far, c.val_far[i], 1e-12, 0, "FAR at VAL@" .. f)
            end
          end
        end
        -- the default thinned ROC equals sklearn's drop_intermediate=True
        local t = fvl.eval.verification(fvl.tensor(c.scores), c.same)
        expect_all_near(t.roc.far, c.fpr_drop, 0, 1e-7, "fpr (drop_intermediate)")
        expect_all_near(t.roc.tar, c.tpr_drop, 0, 1e-7, "tpr (drop_intermediate)")
        expect_near(t.auc, c.auc, 1e-12, 0, "auc is from the full ROC")
      end)
    end
  end

  it("works the hand example", function()
    local s = { 0.9, 0.8, 0.7, 0.6, 0.55, 0.5, 0.4, 0.3, 0.2, 0.1 }
    local y = { 1, 1, 0, 1, 1, 0, 0, 1, 0, 0 }
    local r = fvl.eval.verification(s, y, { folds = 5, drop_intermediate = false })
    expect_near(r.auc, 0.8, 1e-12)
    expect_near(r.eer, 0.2, 1e-12)
    expect_near(r.eer_threshold, 0.55, 1e-6)
    expect_eq(next(r.tar_at_far), nil, "10 pairs support no FAR")
    expect_eq(#r.fold_accuracy, 5)
    expect_all_near(r.roc.far, { 0, 0, 0, .2, .2, .2, .4, .6, .6, .8, 1 }, 0, 1e-7)
    local thr = r.roc.threshold:totable()
    expect_true(thr[1] == math.huge, "first threshold is +inf")
    expect_near(thr[2], 0.9, 1e-7)
    -- booleans work for same, and a float tensor of 0/1
    local rb = fvl.eval.verification(s, { true, true, false, true, true, false, false, true, false, false },
                                     { folds = 5 })
    expect_eq(rb.auc, r.auc)
    local rf = fvl.eval.verification(fvl.tensor(s), fvl.tensor(y), { folds = 5 })
    expect_eq(rf.accuracy, r.accuracy)
  end)

  it("takes distances with distance=true (squared L2 of normalised embeddings)", function()
    local emb, lab = blobs(10, 20, 8)
    local s, same = fvl.eval.pairs(emb, lab, { n = 1000, seed = 3 })
    local d2 = (s * -2) + 2        -- d² = 2 - 2cos
    local a = fvl.eval.verification(s, same)
    local b = fvl.eval.verification(d2, same, { distance = true })
    expect_near(b.accuracy, a.accuracy, 1e-12)
    expect_near(b.auc, a.auc, 1e-12)
    expect_near(b.eer, a.eer, 1e-12)
    expect_near(b.threshold, 2 - 2 * a.threshold, 1e-5, 1e-6, "threshold on the d² scale")
    expect_true(b.roc.threshold:totable()[1] == -math.huge, "first distance threshold is -inf")
  end)

  it("reports a FAR asked for when supported and explains when not", function()
    local emb, lab = blobs(10, 20, 8)
    local s, same = fvl.eval.pairs(emb, lab, { n = 600, seed = 2 })
    local r = fvl.eval.verification(s, same, { far = { 1e-2, 0.05 } })
    expect_true(r.tar_at_far[1e-2] ~= nil)
    expect_true(r.tar_at_far[0.05] >= r.tar_at_far[1e-2])
    expect_true(r.tar_at_far[0.05] <= r.tar_at_far[1e-1])
    expect_error(function() fvl.eval.verification(s, same, { far = 1e-3 }) end,
      "verification: TAR at FAR = 1e-3 needs at least 1000 impostor pairs, got 300")
    expect_error(function() fvl.eval.verification(s, same, { far = 2 }) end, "expected FARs in (0, 1)")
  end)

  it("gives clear errors", function()
    local s = fvl.tensor { 0.1, 0.2, 0.3, 0.4 }
    expect_error(function() fvl.eval.verification(s, { 1, 0, 1 }, { folds = 2 }) end,
      "verification: scores has 4 entries but same has 3 (expected one flag per pair)")
    expect_error(function() fvl.eval.verification(s, { 1, 1, 1, 1 }, { folds = 2 }) end,
      "verification: same: expected at least one impostor pair (same = 0), got none of 4")
    expect_error(function() fvl.eval.verification(s, { 0, 0, 0, 0 }, { folds = 2 }) end,
      "at least one genuine pair")
    expect_error(function() fvl.eval.verification(s, { 1, 0, 2, 0 }, { folds = 2 }) end,
      "verification: same[3] is not 1/0 or true/false")
    expect_error(function() fvl.eval.verification(s, fvl.tensor { 1, 0, 2, 0 }, { folds = 2 }) end,
      "verification: same[3] = 2 (expected 1 for a genuine pair or 0 for an impostor)")
    expect_error(function() fvl.eval.verification(fvl.tensor { 0.1, 0 / 0, 0.3, 0.4 }, { 1, 0, 1, 0 }, { folds = 2 }) end,
      "verification: scores[2] = nan is not a finite number")
    expect_error(function() fvl.eval.verification(s, { 1, 0, 1, 0 }) end,
      "verification: folds = 10 needs at least 10 pairs, got 4")
    expect_error(function() fvl.eval.verification(s, { 1, 0, 1, 0 }, { folds = 1 }) end,
      "verification: folds = 1 is outside 2..inf")
    expect_error(function() fvl.eval.verification(s, { 1, 0, 1, 0 }, { fold = 2 }) end,
      "verification: unknown option 'fold'")
    expect_error(function() fvl.eval.verification(fvl.ones(2, 2), { 1, 0 }) end,
      "verification: scores must be 1-D (N), got 2×2")
    expect_error(function() fvl.eval.verification("x", { 1, 0 }) end,
      "verification: scores must be a tensor or a list of numbers, got string")
    expect_error(function() fvl.eval.verification({}, {}) end, "expected at least 1 pair, got 0")
  end)
end)

describe("eval.roc", function()
  it("returns far, tar and thresholds", function()
    local far, tar, thr = fvl.eval.roc({ 0.9, 0.8, 0.1, 0.2 }, { 1, 1, 0, 0 }, { drop_intermediate = false })
    expect_all_near(far, { 0, 0, 0, 0.5, 1 })
    expect_all_near(tar, { 0, 0.5, 1, 1, 1 })
    expect_eq(thr:totable()[1], math.huge)
    expect_error(function() fvl.eval.roc({ 1, 2 }, { 1 }) end, "roc: scores has 2 entries but same has 1")
  end)
end)

describe("eval.pairs", function()
  it("makes seeded, balanced pairs with cosine scores", function()
    local emb, lab = blobs(12, 15, 6)
    local s, same, a, b = fvl.eval.pairs(emb, lab, { n = 400, seed = 5, indices = true })
    expect_eq(s:numel(), 400)
    expect_eq(same:dtype(), "int32")
    local st, at, bt = same:totable(), a:totable(), b:totable()
    local e = emb:totable()
    local ngen = 0
    for k = 1, 400 do
      expect_eq(st[k], k % 2 == 1 and 1 or 0, "alternating genuine/impostor")
      ngen = ngen + st[k]
      if st[k] == 1 then
        expect_eq(lab[at[k]], lab[bt[k]]); expect_true(at[k] ~= bt[k])
      else
        expect_true(lab[at[k]] ~= lab[bt[k]])
      end
    end
    expect_eq(ngen, 200)
    -- score = cosine of the two rows
    local k = 7
    local x, y = e[at[k]], e[bt[k]]
    local dot, nx, ny = 0, 0, 0
    for d = 1, 6 do dot = dot + x[d] * y[d]; nx = nx + x[d] ^ 2; ny = ny + y[d] ^ 2 end
    expect_near(s:get(k), dot / math.sqrt(nx * ny), 1e-5, 1e-6)
    -- same seed: same pairs whatever the global RNG and the thread count; other seed: others
    fvl.manual_seed(99)
    local s2 = fvl.eval.pairs(emb, lab, { n = 400, seed = 5 })
    expect_all_near(s2, s:totable(), 0, 0)
    local s3 = fvl.eval.pairs(emb, fvl.tensor(lab, "int32"), { n = 400, seed = 6 })
    local differ = false
    for i = 1, 400 do if s3:get(i) ~= s:get(i) then differ = true break end end
    expect_true(differ, "another seed gives other pairs")
  end)

  it("feeds verification directly and through eval.verify", function()
    local emb, lab = blobs(20, 30, 16, 0.9)
    local r = fvl.eval.verification(fvl.eval.pairs(emb, lab, { n = 6000, seed = 1 }))
    expect_true(r.accuracy > 0.7 and r.accuracy <= 1, "accuracy " .. r.accuracy)
    expect_eq(r.n, 6000)
    expect_eq(r.n_genuine, 3000)
    expect_true(r.tar_at_far[1e-3] ~= nil and r.tar_at_far[1e-4] == nil, "3000 impostors: down to 1e-3 only")
    expect_near(r.min_far, 1 / 3000, 1e-12)
    local v = fvl.eval.verify(emb, lab, { n = 6000, seed = 1 })
    expect_eq(v.accuracy, r.accuracy)
    local l2 = fvl.eval.verify(emb, lab, { n = 6000, seed = 1, metric = "l2" })
    expect_near(l2.auc, r.auc, 1e-4, 0, "the same ranking on the d² scale")
    expect_true(l2.distance and l2.threshold > 0 and l2.threshold < 4, "a d² threshold")
    local d2 = fvl.eval.pairs(emb, lab, { n = 10, seed = 1, metric = "l2" })
    local c = fvl.eval.pairs(emb, lab, { n = 10, seed = 1 })
    expect_near(d2:get(3), 2 - 2 * c:get(3), 1e-6, 1e-6)
    expect_error(function() fvl.eval.pairs(emb, lab, { metric = "l1" }) end,
      "pairs: metric = 'l1' (expected cosine|l2)")
    expect_eq(v.pairs.a:numel(), 6000)
    expect_true(fvl.eval.summary(r):find("acc ", 1, true) ~= nil)
    expect_true(fvl.eval.summary(r):find("TAR@FAR=1e-3", 1, true) ~= nil)
    expect_eq(tostring(r), fvl.eval.summary(r), "a result prints as its summary")
    expect_eq(fvl.json.decode(fvl.json.encode { acc = r.accuracy }).acc, r.accuracy)
  end)

  it("gives clear errors", function()
    local emb, lab = blobs(3, 4, 2)
    expect_error(function() fvl.eval.pairs(emb, { 1, 2, 3 }) end,
      "pairs: emb has 12 rows but labels has 3 entries (expected one label per row)")
    local one = {}
    for i = 1, 12 do one[i] = 4 end
    expect_error(function() fvl.eval.pairs(emb, one) end,
      "pairs: labels: expected at least 2 classes for impostor pairs, got one class only (4)")
    local single = {}
    for i = 1, 12 do single[i] = i end
    expect_error(function() fvl.eval.pairs(emb, single) end,
      "pairs: labels: expected a class with at least 2 rows for genuine pairs")
    local bad = {}
    for i = 1, 12 do bad[i] = lab[i] end
    bad[5] = 0
    expect_error(function() fvl.eval.pairs(emb, bad) end, "pairs: labels[5] = 0 is not a class id (expected an integer in 1..∞)")
    local nan = emb:clone()
    nan:set(3, 2, 0 / 0)
    expect_error(function() fvl.eval.pairs(nan, lab) end, "pairs: emb[3][2] = nan is not a finite number")
    expect_error(function() fvl.eval.pairs(emb, lab, { n = 1 }) end, "pairs: n = 1 is outside 2..inf")
    expect_error(function() fvl.eval.pairs(emb, lab, { N = 10 }) end, "pairs: unknown option 'N'")
    expect_error(function() fvl.eval.pairs(fvl.ones(12), lab) end,
      "pairs: emb must be N×D (one embedding per row), got 12")
  end)
end)

describe("eval.identification", function()
  for _, c in ipairs(golden("ident")) do
    it("equals the brute-force golden values on case '" .. c.name .. "'", function()
      local g = fvl.tensor(c.gallery):reshape(c.G, c.D)
      local gl = {}
      for i, v in ipairs(c.gallery_labels) do gl[i] = v + 1 end
      local p, pl
      if not c.loo then
        p = fvl.tensor(c.probes):reshape(c.P, c.D)
        pl = {}
        for i, v in ipairs(c.probe_labels) do pl[i] = v + 1 end
      end
      local r = fvl.eval.identification(g, gl, p, pl, { k = c.ks })
      expect_eq(r.n_queries, c.n_queries, "queries")
      expect_eq(r.n_dropped, c.n_dropped, "dropped")
      expect_near(r.precision_at_1, c.precision_at_1, 1e-12)
      expect_near(r.r_precision, c.r_precision, 1e-12)
      expect_near(r.map_at_r, c.map_at_r, 1e-12)
      for i, k in ipairs(c.ks) do expect_near(r["rank" .. k], c.rank_k[i], 1e-12, 0, "rank" .. k) end
      expect_eq(r.rank1, r.precision_at_1)
    end)
  end

  it("defaults to rank-1 and rank-5 and accepts one k", function()
    local emb, lab = blobs(8, 10, 8)
    local r = fvl.eval.identification(emb, lab)
    expect_true(r.rank1 ~= nil and r.rank5 ~= nil and r.rank5 >= r.rank1)
    local r3 = fvl.eval.identification(emb, lab, nil, nil, { k = 3 })
    expect_true(r3.rank3 >= r3.rank1 and r3.rank3 <= r.rank5)
    expect_eq(r3.n_queries, 80)
  end)

  it("gives clear errors", function()
    local emb, lab = blobs(4, 5, 3)
    expect_error(function() fvl.eval.identification(emb, { 1, 2 }) end,
      "identification: gallery has 20 rows but gallery_labels has 2 entries")
    expect_error(function() fvl.eval.identification(emb, lab, emb, { 1, 2, 3 }) end,
      "identification: probes has 20 rows but probe_labels has 3 entries")
    expect_error(function() fvl.eval.identification(emb, lab, fvl.ones(2, 5), { 1, 2 }) end,
      "identification: probes are 2×5 but the gallery is 20×3")
    local far = {}
    for i = 1, 20 do far[i] = 9 end
    expect_error(function() fvl.eval.identification(emb, lab, emb, far) end,
      "identification: probe_labels: no probe has a matching gallery identity (20 dropped)")
    expect_error(function() fvl.eval.identification(emb, lab, nil, lab) end, "probe_labels given without probes")
    expect_error(function() fvl.eval.identification(emb, lab, nil, nil, { k = 0 }) end,
      "identification: k = 0 is outside 1..inf")
    local nan = emb:clone()
    nan:set(2, 1, 0 / 0)
    expect_error(function() fvl.eval.identification(nan, lab) end,
      "identification: gallery[2][1] = nan is not a finite number")
  end)
end)

describe("eval.flip", function()
  it("sums raw embeddings, then normalises", function()
    local a = fvl.tensor { { 1, 2 }, { 3, 4 } }
    local b = fvl.tensor { { 1, 0 }, { -3, 0 } }
    expect_all_near(fvl.eval.flip(a, b), { { 2 / math.sqrt(8), 2 / math.sqrt(8) }, { 0, 1 } }, 1e-6, 1e-7)
    expect_error(function() fvl.eval.flip(a, fvl.ones(3, 2)) end,
      "flip: emb is 2x2 but emb_flipped is 3x2 (expected the same shape)")
    b:set(1, 2, 0 / 0)
    expect_error(function() fvl.eval.flip(a, b) end, "flip: emb_flipped[1][2] = nan is not a finite number")
  end)

  it("flip_embed runs the network on images and their mirror", function()
    -- 2 images 1×2×3; the "network" flattens them: the mirror reverses each row
    local imgs = fvl.tensor { { { { 1, 2, 3 }, { 4, 5, 6 } } }, { { { 0, 0, 1 }, { 0, 0, 0 } } } }
    local out = fvl.eval.flip_embed(function(x) return x:reshape(2, 6) end, imgs)
    local s1 = { 4, 4, 4, 10, 10, 10 }
    local n1 = math.sqrt(3 * 16 + 3 * 100)
    local want1 = {}
    for i = 1, 6 do want1[i] = s1[i] / n1 end
    expect_all_near(out, { want1, { 1 / math.sqrt(2), 0, 1 / math.sqrt(2), 0, 0, 0 } }, 1e-6, 1e-7)
    expect_error(function() fvl.eval.flip_embed(function(x) return x end, 3) end,
      "flip_embed: images must be a tensor N×C×H×W, got number")
  end)
end)

describe("eval.cosine", function()
  it("is normalised A times normalised B transposed", function()
    local c = fvl.eval.cosine(fvl.tensor { { 3, 4 }, { 0, 2 } }, fvl.tensor { { 1, 0 }, { 0, -1 } })
    expect_all_near(c, { { 0.6, -0.8 }, { 0, -1 } }, 1e-6, 1e-7)
    expect_error(function() fvl.eval.cosine(fvl.ones(2, 3), fvl.ones(2, 4)) end,
      "cosine: a is 2×3 but b is 2×4 (inner sizes 3 ≠ 4)")
  end)
end)
