-- MegaFace: the devkit's feature files (byte layout written independently with string.pack),
-- the strict reader, the bulk exporter, and megaface_rank1 against a brute-force Lua reference
-- of the protocol (every probe × every other image of its identity in a gallery with all
-- distractors; verification TAR at FAR over probe × distractor impostors).

local function header(d, cols, esz, ty) return string.pack("<i4i4i4i4", d, cols or 1, esz or 4, ty or 5) end
local function floats(t) local s = {} for i, v in ipairs(t) do s[i] = string.pack("<f", v) end return table.concat(s) end

describe("MegaFace feature files", function()
  it("writes the devkit's layout: (D, 1, 4, 5) little-endian int32, then float32", function()
    local dir = tmpdir()
    local v = { 0.5, -1.25, 3, 0.1 }
    fvl.eval.save_megaface_feature(dir .. "/a.bin", fvl.tensor(v))
    expect_eq(read_file(dir .. "/a.bin"), header(4) .. floats(v), "bytes")
    local names = {}
    for f in io.popen("ls -a '" .. dir .. "'"):lines() do names[#names + 1] = f end
    expect_eq(table.concat(names, " "), ". .. a.bin", "no temporary left behind")
    rmdir(dir)
  end)
  it("reads a file made by another writer, value for value", function()
    local dir = tmpdir()
    local v = { 1e-30, -7.5, 123456.78, 0 }
    write_file(dir .. "/b.bin", header(4) .. floats(v))
    local t = fvl.eval.load_megaface_feature(dir .. "/b.bin")
    expect_eq(t:dim(), 1, "1-D")
    local back = t:totable()
    for i = 1, 4 do expect_eq(back[i], string.unpack("<f", string.pack("<f", v[i])), "value " .. i) end
    rmdir(dir)
  end)
  it("refuses malformed files naming the file and what it found", function()
    local dir = tmpdir()
    local cases = {
      { "short", "\4\0\0\0\1\0", "expected a 16-byte header" },
      { "cols", header(2, 2) .. floats { 1, 2, 3, 4 }, "cols 2" },
      { "esize", header(2, 1, 8) .. floats { 1, 2 }, "element size 8" },
      { "type", header(2, 1, 4, 6) .. floats { 1, 2 }, "type 6" },
      { "rows0", header(0), "rows 0" },
      { "negative", header(-3), "rows -3" },
      { "truncated", header(3) .. floats { 1, 2 }, "expected 28 (16 + 4 × 3 values)" },
      { "trailing", header(2) .. floats { 1, 2 } .. "x", "has 25 bytes, expected 24" },
      { "nan", header(2) .. floats { 1 } .. string.pack("<I4", 0x7fc00000), "value 1 = nan is not a finite number" },
    }
    for _, c in ipairs(cases) do
      local path = dir .. "/" .. c[1] .. ".bin"
      write_file(path, c[2])
      local err = expect_error(function() fvl.eval.load_megaface_feature(path) end, c[3])
      expect_true(err:find(path, 1, true) ~= nil, c[1] .. ": the message names the file")
    end
    expect_error(function() fvl.eval.load_megaface_feature(dir .. "/none.bin") end, "cannot open")
    expect_error(function() fvl.eval.load_megaface_feature(dir) end, "is not a regular file")
    expect_error(function() fvl.eval.save_megaface_feature(dir .. "/x.bin", fvl.tensor { 1, 0 / 0 }) end,
                 "save_megaface_feature: vec[2] = nan is not a finite number")
    expect_error(function() fvl.eval.save_megaface_feature(dir .. "/x.bin", fvl.randn(2, 2)) end,
                 "save_megaface_feature: vec must be 1-D")
    rmdir(dir)
  end)
  it("exports a list of embeddings into the devkit's directory tree and loads it back", function()
    local dir = tmpdir()
    local emb = fvl.randn(5, 3)
    local names = { "Adam/Adam_1.jpg", "Adam/Adam_2.jpg", "Bea/Bea_1.jpg", "Bea/x/y.png", "top.jpg" }
    expect_eq(fvl.eval.export_megaface(dir .. "/feat", emb, names, { suffix = "_m.bin" }), 5, "count")
    expect_eq(read_file(dir .. "/feat/Bea/x/y.png_m.bin"), header(3) .. floats(emb[4]:totable()), "bytes")
    local back = fvl.eval.load_megaface_features(dir .. "/feat", names, { suffix = "_m.bin" })
    expect_eq((back - emb):abs():max():item(), 0, "round trip")
    fvl.eval.export_megaface(dir .. "/feat", emb:narrow(1, 1, 1), { "Adam/Adam_1.jpg" })
    expect_true(file_exists(dir .. "/feat/Adam/Adam_1.jpg_fvl.bin"), "default suffix _fvl.bin")
    expect_error(function() fvl.eval.export_megaface(dir, emb, { "a" }) end,
                 "export_megaface: emb has 5 rows but names has 1 entries")
    for _, bad in ipairs { "../x", "/abs", "a/../../b", "" } do
      expect_error(function() fvl.eval.export_megaface(dir, emb:narrow(1, 1, 1), { bad }) end,
                   "export_megaface: names[1] = '" .. bad .. "' is not a relative path")
    end
    expect_error(function() fvl.eval.export_megaface(dir, emb, names, { sufix = "x" }) end, "sufix")
    local m = fvl.randn(1, 3)
    fvl.eval.export_megaface(dir .. "/feat", m, { "odd.jpg" }, { suffix = "_m.bin" })
    write_file(dir .. "/feat/odd.jpg_m.bin", header(2) .. floats { 1, 2 })
    expect_error(function() fvl.eval.load_megaface_features(dir .. "/feat", { "top.jpg", "odd.jpg" }, { suffix = "_m.bin" }) end,
                 "load_megaface_features: odd.jpg_m.bin has 2 values but the earlier files have 3")
    rmdir(dir)
  end)
end)

-- brute force in double: the protocol of megaface_rank1's doc comment, written out
local function reference(P, pl, Dm, ks, far)
  local function unit(r)
    local s = 0
    for _, v in ipairs(r) do s = s + v * v end
    s = s > 0 and 1 / math.sqrt(s) or 0
    local o = {}
    for i, v in ipairs(r) do o[i] = v * s end
    return o
  end
  local function dot(a, b) local s = 0 for t = 1, #a do s = s + a[t] * b[t] end return s end
  local p, d = {}, {}
  for i, r in ipairs(P) do p[i] = unit(r) end
  for i, r in ipairs(Dm) do d[i] = unit(r) end
  local hits, pairs_, imp, gen = {}, 0, {}, {}
  for _, k in ipairs(ks) do hits[k] = 0 end
  for i = 1, #p do
    local ds = {}
    for j = 1, #d do ds[j] = dot(p[i], d[j]); imp[#imp + 1] = ds[j] end
    for g = 1, #p do
      if g ~= i and pl[g] == pl[i] then
        local s = dot(p[i], p[g])
        local rank = 1
        for j = 1, #d do if ds[j] > s then rank = rank + 1 end end
        for _, k in ipairs(ks) do if rank <= k then hits[k] = hits[k] + 1 end end
        pairs_ = pairs_ + 1
        if g > i then gen[#gen + 1] = s end
      end
    end
  end
  -- TAR@FAR: the best TAR over thresholds at the scores with #impostors >= τ <= far·#impostors
  table.sort(imp, function(a, b) return a > b end)
  local c = math.floor(far * #imp + 1e-9)
  local best = 0
  local cand = {}
  for _, s in ipairs(gen) do cand[#cand + 1] = s end
  for _, s in ipairs(imp) do cand[#cand + 1] = s end
  for _, tau in ipairs(cand) do
    local ni, ng = 0, 0
    for _, s in ipairs(imp) do if s >= tau then ni = ni + 1 end end
    if ni <= c then
      for _, s in ipairs(gen) do if s >= tau then ng = ng + 1 end end
      if ng / #gen > best then best = ng / #gen end
    end
  end
  local out = { n_pairs = pairs_, cmc = {}, tar = best, n_genuine = #gen }
  for _, k in ipairs(ks) do out.cmc[k] = hits[k] / pairs_ end
  return out
end

describe("eval.megaface_rank1", function()
  -- 9 identities of 1..5 images around their centres, distractors from the same distribution
  local function data(seed)
    fvl.manual_seed(seed)
    local D = 6
    local centres = fvl.randn(9, D)
    local pl = {}
    for id = 1, 9 do for _ = 1, (id - 1) % 5 + 1 do pl[#pl + 1] = id end end
    local P = centres:index(1, fvl.tensor(pl, "int32")) + fvl.randn(#pl, D) * 0.6
    local rows = fvl.randn(150, D):totable()
    for t = 1, D do rows[17][t] = 0 end   -- a zero row scores 0
    local Dm = fvl.tensor(rows)
    return P, pl, Dm
  end
  it("equals the brute-force protocol (rank-k and TAR@FAR), at any block size", function()
    for seed = 1, 3 do
      local P, pl, Dm = data(seed)
      local ks = { 1, 2, 5 }
      local ref = reference(P:totable(), pl, Dm:totable(), ks, 1e-3)
      for _, block in ipairs { 0, 7, 150, 1000 } do
        local r = fvl.eval.megaface_rank1(P, pl, Dm, { k = ks, far = 1e-3, block = block })
        local what = "seed " .. seed .. " block " .. block
        expect_eq(r.n_pairs, ref.n_pairs, what .. ": pairs")
        expect_eq(r.n_genuine, ref.n_genuine, what .. ": genuine pairs")
        expect_eq(r.n_impostor, P:size(1) * 150, what .. ": impostor pairs")
        expect_eq(r.n_probes_used, P:size(1) - 2, what .. ": probes with a mate (two singletons)")
        for _, k in ipairs(ks) do expect_near(r.cmc[k], ref.cmc[k], 0, 1e-12, what .. ": rank-" .. k) end
        expect_eq(r.rank1, r.cmc[1], what .. ": rank1")
        expect_near(r.tar_at_far[1e-3], ref.tar, 0, 1e-12, what .. ": TAR@FAR=1e-3")
      end
      local r = fvl.eval.megaface_rank1(P, pl, Dm, { k = ks })
      expect_true(r.rank1 > 0 and r.rank1 < 1, "a case with hits and misses: rank1 = " .. r.rank1)
    end
  end)
  it("gives the same numbers on one thread", function()
    local P, pl, Dm = data(4)
    local a = fvl.eval.megaface_rank1(P, pl, Dm, { k = { 3 }, far = 1e-2, block = 11 })
    local threads = fvl.threads()
    fvl.threads(1)
    local ok, b = pcall(fvl.eval.megaface_rank1, P, pl, Dm, { k = { 3 }, far = 1e-2, block = 11 })
    fvl.threads(threads)
    assert(ok, b)
    expect_eq(b.rank1, a.rank1, "rank1")
    expect_eq(b.rank3, a.rank3, "rank3")
    expect_eq(b.tar_at_far[1e-2], a.tar_at_far[1e-2], "TAR")
    expect_eq(b.threshold, a.threshold, "threshold")
  end)
  it("reports TAR only when the impostor pairs reach the FAR, and refuses bad input", function()
    local P, pl, Dm = data(5)
    local r = fvl.eval.megaface_rank1(P, pl, Dm)   -- 25 × 150 impostors < 10^6
    expect_eq(next(r.tar_at_far), nil, "no TAR@FAR=1e-6 from 3750 impostor pairs")
    expect_eq(r.n_distractors, 150, "n_distractors")
    expect_eq(fvl.eval.megaface_rank1(P, pl, Dm, { far = false }).rank1, r.rank1, "far = false")
    expect_error(function() fvl.eval.megaface_rank1(P, pl, fvl.randn(4, 5)) end,
                 "megaface_rank1: probes are 25×6 but distractors are 4×5")
    local bad = {}
    for i, v in ipairs(pl) do bad[i] = v end
    bad[3] = 0
    expect_error(function() fvl.eval.megaface_rank1(P, bad, Dm) end, "labels[3] = 0")
    expect_error(function() fvl.eval.megaface_rank1(P, { 1, 2 }, Dm) end, "megaface_rank1")
    expect_error(function() fvl.eval.megaface_rank1(P, pl, Dm, { ranks = 1 }) end, "ranks")
    expect_error(function() fvl.eval.megaface_rank1(P, pl, Dm, { k = 1001 }) end, "k = 1001 is outside 1..1000")
    expect_error(function() fvl.eval.megaface_rank1(P, pl, Dm, { far = 2 }) end, "far = 2")
    expect_error(function() fvl.eval.megaface_rank1(P, pl, Dm, { block = -1 }) end, "block")
    local nan = Dm:clone()
    nan[2][3] = 0 / 0
    expect_error(function() fvl.eval.megaface_rank1(P, pl, nan) end, "distractors[2][3] = nan")
  end)
end)
