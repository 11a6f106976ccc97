-- the IJB-B / IJB-C 1:1 protocol (lua/fvl/ijb.lua): pooling against hand calculation, TAR at
-- FAR read as insightface does on a hand-made case, the meta parsers' errors, and the whole path
-- (loose crops → alignment → model → templates → ROC) on a synthetic IJB directory
local eval = fvl.eval
local make_ijb = dofile(TEST_DIR .. "/lua/ijb_fixture.lua")

local function write_meta(dir, prefix, tid_mid, pts, pairs_)
  os.execute("mkdir -p '" .. dir .. "/meta'")
  local function put(what, lines)
    write_file(string.format("%s/meta/%s_%s.txt", dir, prefix, what), table.concat(lines, "\n") .. "\n")
  end
  put("face_tid_mid", tid_mid)
  put("name_5pts_score", pts)
  put("template_pair_label", pairs_)
end

local function unit(deg) return { math.cos(math.rad(deg)), math.sin(math.rad(deg)) } end

describe("ijb_templates: insightface's pooling", function()
  -- 5 images; templates 7 = {media 10: img1, img2; media 11: img3}, 3 = {media 20: img4; 21: img5}
  local f = fvl.tensor({ { 3, 4 }, { 0, 2 }, { 1, 0 }, { 0, -5 }, { 2, 2 } })
  local tids, mids = { 7, 7, 7, 3, 3 }, { 10, 10, 11, 20, 21 }

  it("normalised image features, media means summed, templates normalised, ids sorted", function()
    local t, ids = eval.ijb_templates(f, tids, mids)
    expect_eq(table.concat(ids, ","), "3,7")
    -- template 3: (0, −1) + (1, 1)/√2 = (0.70711, −0.29289) → (0.92388, −0.38268)
    -- template 7: mean((0.6, 0.8), (0, 1)) + (1, 0) = (1.3, 0.9) → (0.82219, 0.56921)
    expect_all_near(t, { { 0.92388, -0.38268 }, { 0.82219, 0.56921 } }, 0, 1e-5)
  end)

  it("N1 keeps the image features' norms; D1 weights them by the detector score", function()
    -- N1: template 3 = (0, −5) + (2, 2) = (2, −3); template 7 = mean((3, 4), (0, 2)) + (1, 0) = (2.5, 3)
    local n1 = eval.ijb_templates(f, fvl.tensor(tids, "int32"), fvl.tensor(mids, "int32"), { norm_score = true })
    expect_all_near(n1, { { 0.55470, -0.83205 }, { 0.64018, 0.76822 } }, 0, 1e-5)
    -- D1, scores (0.5, 1, 2, 1, 0.1): template 3 = (0, −1) + 0.1 (1, 1)/√2; template 7 =
    -- mean((0.3, 0.4), (0, 1)) + (2, 0) = (2.15, 0.7)
    local d1 = eval.ijb_templates(f, tids, mids, { scores = { 0.5, 1, 2, 1, 0.1 } })
    expect_all_near(d1, { { 0.075872, -0.99712 }, { 0.95087, 0.30959 } }, 0, 1e-5)
    expect_error(function() eval.ijb_templates(f, { 1, 2 }, mids) end, "5 features need 5 template ids and 5 media ids, got 2 and 5")
    expect_error(function() eval.ijb_templates(f, tids, mids, { scores = { 1 } }) end, "scores has 1 values for 5 features")
    expect_error(function() eval.ijb_templates(f, tids, mids, { d1 = true }) end, "unknown option 'd1'")
  end)
end)

describe("ijb: TAR at FAR as insightface reads it", function()
  -- 7 templates of unit features at these angles; template 1 is 3 images in 2 media whose pooled
  -- direction is 0° whatever D1/N1 do (symmetric)
  local angles = { 0, 30, 100, 140, 200, 250, 10 }
  local tid_mid, pts, rows = {}, {}, {}
  local function face(t, m, v, score)
    local k = #rows + 1
    rows[k] = v
    tid_mid[k] = string.format("%d.jpg %d %d", k, t, m)
    pts[k] = string.format("%d.jpg 1 2 3 4 5 6 7 8 9 10 %g", k, score)
  end
  face(1, 1, { 2 * math.cos(math.rad(10)), 2 * math.sin(math.rad(10)) }, 0.5)
  face(1, 1, { 2 * math.cos(math.rad(10)), -2 * math.sin(math.rad(10)) }, 0.5)
  face(1, 2, { 3, 0 }, 0.9)
  for t = 2, 7 do face(t, 10 + t, unit(angles[t]), 0.8) end
  -- genuine: (1,2) cos 30°, (3,4) cos 40°, (5,6) cos 50°; impostor (2,7) cos 20° above them all
  local pair_lines = { "1 2 1", "3 4 1", "5 6 1", "2 7 0", "4 5 0", "2 3 0", "1 3 0", "2 4 0", "3 6 0",
                       "2 6 0", "5 7 0" }
  local dir

  it("reads the nearest ROC corner, the higher TAR on a tie; same result from a tensor, a .npy, halves", function()
    dir = tmpdir()
    write_meta(dir, "ijbc", tid_mid, pts, pair_lines)
    local feats = fvl.tensor(rows)
    local r = eval.ijb(feats, dir)
    -- scores: impostor 0.9397 > genuine 0.866, 0.766, 0.643 > impostors 0.5, 0.342, −0.174,
    -- −0.342, −0.766, −0.866, −0.985 (all distinct). ROC (FAR, TAR) corners, the collinear points
    -- dropped: (0, 0), (1/8, 0), (1/8, 1), (1, 1). FAR 1e-6..1e-2: nearest 0 → TAR 0; 1e-1: nearest
    -- 1/8, where two points lie → the higher TAR, 1 (the lower would give 0).
    for _, f in ipairs({ 1e-6, 1e-5, 1e-4, 1e-3, 1e-2 }) do expect_eq(r.tar_at_far[f], 0, "TAR@" .. f) end
    expect_eq(r.tar_at_far[1e-1], 1, "TAR@1e-1")
    expect_near(r.far_at[1e-1], 0.125, 1e-6, 0, "far used")
    expect_near(r.auc, 0.875, 1e-6, 0, "AUC")
    expect_all_near(r.roc.far, { 0, 0.125, 0.125, 1 }, 0, 1e-6, "ROC corners")
    expect_all_near(r.roc.tar, { 0, 0, 1, 1 }, 0, 1e-6, "ROC corners")
    expect_eq(r.n_genuine * 100 + r.n_impostor, 308)
    expect_eq(r.n_templates, 7)
    expect_near(r.scores:get(4), math.cos(math.rad(20)), 0, 1e-5, "pair 4 score")
    expect_true(r.line:find("IJBC: TAR (%) at FAR 1e-6 0.00", 1, true), r.line)
    local r2 = eval.ijb(feats, dir, { fars = { 0.3, 0.6 } })
    expect_eq(r2.tar_at_far[0.3] + r2.tar_at_far[0.6], 2, "FAR 0.3 → 1/8, 0.6 → 1")
    expect_near(r2.far_at[0.6], 1, 0, 1e-6, "FAR 0.6 is nearer 1 than 1/8")
    -- the same features from a .npy file; as insightface's [e | e_flip] halves
    fvl.save(dir .. "/f.npy", feats)
    expect_eq(eval.ijb(dir .. "/f.npy", dir).tar_at_far[1e-1], 1, ".npy")
    local halves = fvl.cat({ feats * 0.25, feats * 0.75 }, 2)
    local r3 = eval.ijb(halves, dir, { split_flip = true, detector_score = false, norm_score = false })
    expect_tensor_close(r3.scores, r.scores, 1e-5, "split_flip, D0 N0 (symmetric templates)")
    expect_true(r.line:find("D1 N1", 1, true) and r3.line:find("D0 N0", 1, true), "modes in the lines")
  end)

  it("strict parsers: line numbers, order, unknown templates, prefixes", function()
    local feats = fvl.tensor(rows)
    local bad = tmpdir()
    local m, err = eval.ijb_meta(bad)
    expect_eq(m, nil)
    expect_true(err:find("holds no ijbb_/ijbc_face_tid_mid.txt", 1, true), err)
    write_meta(bad, "ijbb", tid_mid, pts, pair_lines)
    write_meta(bad, "ijbc", tid_mid, pts, pair_lines)
    expect_true(select(2, eval.ijb_meta(bad)):find("both ijbb_ and ijbc_ files", 1, true))
    expect_eq(eval.ijb_meta(bad, { prefix = "ijbb" }).n, 9)
    local p2 = { table.unpack(pts) }
    p2[3] = "3.jpg 1 2 3"
    write_meta(bad, "ijbb", tid_mid, p2, pair_lines)
    expect_true(select(2, eval.ijb_meta(bad, { prefix = "ijbb" })):find("name_5pts_score.txt line 3 has 4 fields, expected 12", 1, true))
    p2[3], p2[4] = pts[4], pts[3]
    write_meta(bad, "ijbb", tid_mid, p2, pair_lines)
    expect_true(select(2, eval.ijb_meta(bad, { prefix = "ijbb" })):find("line 3 names '4.jpg' but face 3 of the face_tid_mid file is '3.jpg'", 1, true))
    p2[3], p2[4] = pts[3], pts[4]:gsub(" 0.8$", " nan")
    write_meta(bad, "ijbb", tid_mid, p2, pair_lines)
    expect_true(select(2, eval.ijb_meta(bad, { prefix = "ijbb" })):find("line 4: field 12 = 'nan' is not a finite number", 1, true))
    local t2 = { table.unpack(tid_mid) }
    t2[2] = "2.jpg x 1"
    write_meta(bad, "ijbb", t2, pts, pair_lines)
    expect_true(select(2, eval.ijb_meta(bad, { prefix = "ijbb" })):find("face_tid_mid.txt line 2: template = 'x' is not an integer", 1, true))
    local q = { table.unpack(pair_lines) }
    q[5] = "4 5 2"
    write_meta(bad, "ijbb", tid_mid, pts, q)
    expect_true(select(2, eval.ijb_meta(bad, { prefix = "ijbb" })):find("template_pair_label.txt line 5: label = 2 (expected 1 genuine, 0 impostor)", 1, true))
    q[5] = "4 99 0"
    write_meta(bad, "ijbb", tid_mid, pts, q)
    expect_true(select(2, eval.ijb_meta(bad, { prefix = "ijbb" })):find("template_pair_label.txt line 5: template 99 has no face in " .. bad .. "/meta/ijbb_face_tid_mid.txt", 1, true))
    local m9 = eval.ijb_meta(dir)
    expect_error(function() eval.ijb_scores(fvl.ones(2, 2), { 1, 2 }, m9) end, "2 template features for ids other than meta's 7 templates")
    expect_error(function() eval.ijb(feats:narrow(1, 1, 4), dir) end, "features are 4×2, expected 9×D")
    expect_error(function() eval.ijb(feats, dir, { batch = 4 }) end, "batch is for a model; the features are given")
    expect_error(function() eval.ijb(fvl.ones(9, 3), dir, { split_flip = true }) end, "split_flip needs an even feature size, got 3")
    rmdir(bad)
    rmdir(dir)
  end)
end)

describe("ijb: loose crops through alignment and a model", function()
  it("aligns each crop back onto the template; flip sums raw outputs; templates and scores follow", function()
    local dir = tmpdir()
    local info = make_ijb(dir, "ijbb")
    local meta = assert(eval.ijb_meta(dir))
    expect_eq(meta.prefix, "ijbb")
    local net = function(x) return x:reshape(x:size(1), x:numel() // x:size(1)) end   -- raw pixels, linear
    local plain = eval.ijb_features(net, meta, { flip = false, batch = 3 })
    expect_eq(table.concat(plain:shape(), "x"), "4x37632")
    -- each aligned crop is the original aligned face again (JPEG and two resamplings away)
    local want = net((info.aligned - 127.5) / 127.5)
    local function cos(a, b) return (a * b):sum():item() / (a:norm():item() * b:norm():item()) end
    for i = 1, 4 do
      local c = cos(plain[i], want[i])
      expect_true(c > 0.98, string.format("face %d: cosine with the original %.4f", i, c))
    end
    -- the control: the original face moved by one pixel is further from it than any crop
    local moved = fvl.data.warp_image(info.aligned[1]:contiguous(), { 1, 0, 1, 0, 1, 0 })
    local c1 = cos(net(((moved - 127.5) / 127.5):reshape(1, 3, 112, 112))[1], want[1])
    expect_true(c1 < 0.96, string.format("a one-pixel shift: cosine %.4f", c1))
    -- flip test: the raw outputs of the crop and of its mirror image, summed
    local flipped = eval.ijb_features(net, meta, { batch = 3 })
    local rev = {}
    for c = 112, 1, -1 do rev[#rev + 1] = c end
    local p4 = plain:reshape(4, 3, 112, 112)
    local expect = (p4 + p4:index(4, fvl.tensor(rev, "int32"))):reshape(4, 37632)
    expect_tensor_close(flipped, expect, 1e-5, "flip sum")
    local r = eval.ijb(net, dir, { batch = 2 })
    expect_tensor_close(r.features, flipped, 1e-5, "ijb's features")
    local same = eval.ijb(flipped, meta)
    expect_tensor_close(r.scores, same.scores, 1e-5, "model vs given features")
    -- pair scores are cosines of single-image templates
    local e = flipped:normalize(2)
    expect_near(r.scores:get(1), (e[1] * e[2]):sum():item(), 0, 1e-4, "pair (1, 2)")
    expect_eq(r.n_genuine, 2)
    expect_error(function() eval.ijb_features("net", meta) end, "model must be an fvl.nn module or a function")
    os.remove(dir .. "/loose_crop/3.jpg")
    expect_error(function() eval.ijb_features(net, meta) end, "/loose_crop/3.jpg (face 3 of the face list) cannot be read")
    rmdir(dir)
  end)
end)

describe("ijb against numpy + scikit-learn (tests/golden/ijb.json, tests/golden/make_ijb_golden.py)", function()
  local f = assert(io.open(TEST_DIR .. "/golden/ijb.json", "rb"))
  local g = fvl.json.decode(f:read("a"))
  f:close()

  it("pooling: plain, N1, D1 and both, 200 images in 30 templates of 1..3 media", function()
    local p = g.pool
    local feats = fvl.tensor(p.features)
    for name, o in pairs({ plain = {}, n1 = { norm_score = true }, d1 = { scores = p.detector },
                           d1n1 = { scores = fvl.tensor(p.detector), norm_score = true } }) do
      local t, ids = eval.ijb_templates(feats, p.templates, p.medias, o)
      expect_eq(table.concat(ids, ","), table.concat(p.ids, ","), name .. " ids")
      expect_tensor_close(t, fvl.tensor(p.expected[name]), 2e-6, name)
    end
  end)

  it("TAR at the nearest FAR and the AUC on 2,000 tied scores", function()
    local t = g.tar
    local r = eval.ijb_tar(fvl.tensor(t.scores), fvl.tensor(t.labels, "int32"), t.fars)
    expect_eq(r.roc.far:numel(), t.corners, "ROC corners (drop_intermediate)")
    for i, far in ipairs(t.fars) do
      expect_near(r.far_at[far], t.far_used[i], 1e-6, 0, "FAR used for " .. far)
      expect_near(r.tar_at_far[far], t.tar[i], 1e-6, 0, "TAR at " .. far)
    end
    expect_near(r.auc, t.auc, 1e-6, 0, "AUC")
  end)
end)
