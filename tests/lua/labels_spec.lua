-- Checked labels (lua/bind_labels.c): a head checks a batch's labels once and every fvl.F call of
-- the step takes the checked value (fvl.Labels) without scanning the ids again; the value cannot
-- be forged or changed from Lua; a checked value used with another class count or row count is a
-- clear error. fvl._label_scans() counts fvl_checklabels's full scans.
local fvl = fvl or require "fvl"
fvl.threads(1)
local F = fvl.F

local B, D, C = 8, 6, 5
local function batch()
  fvl.manual_seed(11)
  local x = fvl.randn(B, D) * 2
  return x, { 1, 2, 3, 5, 5, 4, 1, 2 }
end
local function scans(fn)
  local before = fvl._label_scans()
  fn()
  return fvl._label_scans() - before
end

-- every head built on fvl.F (options beyond dim/classes where the default skips a path)
local HEADS = {
  { "softmax" }, { "normface" }, { "sphereface" }, { "cosface" }, { "arcface" }, { "combined" },
  { "mv_softmax" }, { "curricularface" }, { "circle" }, { "center" }, { "discface", { per_class_xi = true } },
  { "npcface" }, { "adacos" }, { "subcenter_arcface" }, { "magface" }, { "adaface" },
  { "elasticface", { plus = true } }, { "elasticface", { plus = true, official_order = true } },
  { "circle_pairwise" }, { "arcface", { partial_fc = 0.6 } }, { "cosface", { sharded = true } },
  { "margin", { target = function(c, ctx) return (c:acos() + ctx.labels:float() * 0.01):cos() end } },
}
local function make(h)
  local o = h[1] == "circle_pairwise" and { dim = D } or { dim = D, classes = C }
  for k, v in pairs(h[2] or {}) do o[k] = v end
  return fvl.loss[h[1]](o)
end
local function label(h)
  local s = h[1]
  for k, v in pairs(h[2] or {}) do s = s .. " " .. k .. "=" .. tostring(v) end
  return s
end

describe("checked labels: one scan per head call", function()
  for _, h in ipairs(HEADS) do
    it(label(h) .. " scans a Lua list once, a tensor once, a checked value never", function()
      local head = make(h)
      local x, y = batch()
      for _, labels in ipairs { y, fvl.tensor(y, "int32") } do
        x = x:detach()
        x:requires_grad()
        local n = scans(function()
          local loss = head(x, labels)
          loss:backward()
        end)
        expect_eq(n, 1, "full label scans in one training step")
      end
      local checked = fvl._check_labels(y, "test", B, h[1] == "circle_pairwise" and -1 or C)
      expect_eq(scans(function() head(x, checked) end), 0, "scans of a checked value")
    end)
  end
  it("check_input returns a checked value; a direct fvl.F call with a list scans it itself", function()
    local head = fvl.loss.arcface { dim = D, classes = C }
    local x, y = batch()
    local _, yc = head:check_input(x, y)
    expect_eq(getmetatable(yc), "fvl.Labels")
    local cos = F.cosine(x, head.weight)
    expect_eq(scans(function() F.margin_ce(cos, yc, { s = 8, target = "arc", m = 0.5 }) end), 0)
    expect_eq(scans(function() F.margin_ce(cos, y, { s = 8, target = "arc", m = 0.5 }) end), 1)
    -- the same loss either way
    expect_eq(F.margin_ce(cos, yc, { s = 8, target = "arc", m = 0.5 }):item(),
              F.margin_ce(cos, y, { s = 8, target = "arc", m = 0.5 }):item())
  end)
end)

describe("checked labels: errors name the head or the fvl.F function", function()
  it("a bad id is reported by the head for head calls and by the function for direct calls", function()
    local head = fvl.loss.arcface { dim = D, classes = C }
    local x, y = batch()
    y[4] = 9
    expect_error(function() head(x, y) end, "arcface: labels[4] = 9 is outside 1..5")
    expect_error(function() F.target_cos(fvl.randn(B, C), y) end, "target_cos: labels[4] = 9 is outside 1..5")
    expect_error(function() F.neg_lse(fvl.randn(B, C), fvl.tensor(y, "int32"), 2) end,
                 "neg_lse: labels[4] = 9 is outside 1..5")
  end)
  it("a checked value used with another class count is an error naming both", function()
    local _, y = batch()
    local yc = fvl._check_labels(y, "arcface", B, C)
    expect_error(function() F.margin_ce(fvl.randn(B, C + 1), yc, { s = 1 }) end,
                 "margin_ce: labels were checked against 1..5 (by arcface) but this call needs 1..6")
    expect_error(function() F.gather_rows(fvl.randn(C - 1, D), yc) end,
                 "gather_rows: labels were checked against 1..5 (by arcface) but this call needs 1..4")
    local x = batch()
    expect_error(function() fvl.loss.cosface { dim = D, classes = C + 2 }(x, yc) end,
                 "cosface: labels were checked against 1..5 (by arcface) but this call needs 1..7")
    -- checked against any id: not enough for a call with classes
    local any = fvl._check_labels(y, "circle_pairwise", B, -1)
    expect_error(function() F.target_cos(fvl.randn(B, C), any) end,
                 "target_cos: labels were checked against any class id (by circle_pairwise) but this call needs 1..5")
    -- a call that takes any id accepts every checked value
    expect_eq(F._pair_anchors(yc), F._pair_anchors(y))
  end)
  it("a checked value used with another row count is an error", function()
    local _, y = batch()
    local yc = fvl._check_labels(y, "arcface", B, C)
    expect_error(function() F.target_cos(fvl.randn(B + 1, C), yc) end,
                 "target_cos: labels has 8 entries but there are 9 rows (expected one per row)")
    expect_error(function() fvl.loss.arcface { dim = D, classes = C }(fvl.randn(B - 2, D), yc) end,
                 "arcface: labels has 8 entries but there are 6 rows")
  end)
  it("as indices, a checked value is taken where its classes fit the dimension", function()
    local _, y = batch()
    local yc = fvl._check_labels(y, "center", B, C)
    local W = fvl.randn(C, D)
    expect_tensor_close(W:index(1, yc), W:index(1, fvl.tensor(y, "int32")), 0)
    expect_eq(fvl.randn(C + 3, D):index(1, yc):size(1), B, "rows taken from a larger dimension")
    expect_error(function() fvl.randn(C - 1, D):index(1, yc) end,
                 "index: indices were checked against 1..5 (by center) but this call needs 1..4")
  end)
end)

describe("checked labels: cannot be forged or changed from Lua", function()
  local _, y = batch()
  it("is read-only and its metatable is locked", function()
    local yc = fvl._check_labels(y, "arcface", B, C)
    expect_error(function() yc[1] = 3 end, "fvl.Labels is read-only")
    expect_error(function() yc.n = 2 end, "fvl.Labels is read-only")
    expect_eq(getmetatable(yc), "fvl.Labels")
    expect_error(function() setmetatable(yc, {}) end, "table expected")
    expect_eq(#yc, B)
    expect_eq(yc:numel(), B)
    expect_eq(yc:classes(), C)
    expect_eq(fvl._check_labels(y, "circle_pairwise", B, -1):classes(), nil)
    expect_true(tostring(yc):find("fvl.Labels(8 rows, 1..5, checked by arcface)", 1, true), tostring(yc))
  end)
  it("hands out copies: changing them leaves the checked value as it was", function()
    local yc = fvl._check_labels(y, "arcface", B, C)
    local t = yc:tensor()
    expect_eq(t:dtype(), "int32")
    t:set(1, 99)
    local l = yc:totable()
    l[2] = 77
    expect_eq(yc:totable()[1], y[1])
    expect_eq(yc:totable()[2], y[2])
    local cos = fvl.randn(B, C)
    expect_tensor_close(F.target_cos(cos, yc), F.target_cos(cos, y), 0)
    -- fvl_checklabels's other callers get copies too (fvl.data's list check hands its result to Lua)
    local z = fvl._check_labels_list(yc, B, "test")
    z:set(1, 42)
    expect_eq(yc:totable()[1], y[1])
  end)
  it("a table that claims to be one is only a list, and is checked as one", function()
    local fake = setmetatable({ 1, 2, 3, 9, 5, 4, 1, 2 }, { __metatable = "fvl.Labels" })
    local head = fvl.loss.arcface { dim = D, classes = C }
    local x = batch()
    expect_error(function() head(x, fake) end, "arcface: labels[4] = 9 is outside 1..5")
    expect_error(function() F.target_cos(fvl.randn(B, C), fake) end, "target_cos: labels[4] = 9 is outside 1..5")
  end)
  it("a userdata given its metatable by the debug library is refused", function()
    local yc = fvl._check_labels(y, "arcface", B, C)
    local t = fvl.zeros(B):int()
    local mt = debug.getmetatable(t)
    debug.setmetatable(t, debug.getmetatable(yc))
    local ok, err = pcall(F.target_cos, fvl.randn(B, C), t)
    local ok2, err2 = pcall(function() return t:totable() end)
    debug.setmetatable(t, mt)   -- back to a tensor, so that its own __gc frees it
    expect_true(not ok and tostring(err):find("not a checked labels value (forged)", 1, true), tostring(err))
    expect_true(not ok2 and tostring(err2):find("forged", 1, true), tostring(err2))
  end)
end)

describe("checked labels: the heads' per-step statistics computed in C", function()
  -- the Lua code these replaced (AdaCos's B_avg / θ_med, Circle's anchor count, ElasticFace+'s
  -- assignment), kept here as the oracle: the C versions must give the same bits
  local function adacos_lua(lse, cy)
    local b = 0
    for i = 1, #lse do b = b + math.exp(lse[i]) end
    b = b / #lse
    local th = {}
    for i = 1, #cy do th[i] = math.acos(math.max(-1 + 1e-7, math.min(1 - 1e-7, cy[i]))) end
    table.sort(th)
    return b, th[(#th - 1) // 2 + 1]
  end
  local function anchors_lua(list)
    local count, valid = {}, 0
    for i = 1, #list do count[list[i]] = (count[list[i]] or 0) + 1 end
    for i = 1, #list do
      local c = count[list[i]]
      if c >= 2 and c < #list then valid = valid + 1 end
    end
    return valid
  end
  local function plus_lua(cy, ms, official)
    local n, order = #cy, {}
    for i = 1, n do order[i] = i end
    table.sort(order, function(a, b) if cy[a] ~= cy[b] then return cy[a] > cy[b] end return a < b end)
    table.sort(ms)
    local out = {}
    for k = 1, n do
      if official then out[k] = ms[order[k]] else out[order[k]] = ms[k] end
    end
    return out
  end
  it("F._adacos_stats gives the Lua computation's bits (odd and even B, ties, NaN, ±1)", function()
    fvl.manual_seed(5)
    for _, n in ipairs { 1, 2, 7, 64 } do
      local lse = fvl.randn(n) * 3
      local cy = (fvl.rand(n) * 2 - 1)
      if n >= 7 then cy:set(3, 0 / 0); cy:set(4, 1); cy:set(5, -1); cy:set(6, cy:get(2)) end
      local b, th = F._adacos_stats(lse, cy)
      local eb, eth = adacos_lua(lse:totable(), cy:totable())
      expect_eq(string.format("%a", b), string.format("%a", eb), "B_avg, n = " .. n)
      expect_eq(string.format("%a", th), string.format("%a", eth), "θ_med, n = " .. n)
    end
    expect_error(function() F._adacos_stats(fvl.zeros(3), fvl.zeros(4)) end, "adacos: 4 target cosines for 3 rows")
  end)
  it("F._pair_anchors counts the anchors with a positive and a negative", function()
    fvl.manual_seed(6)
    for _, n in ipairs { 1, 2, 3, 16, 100 } do
      for _, k in ipairs { 1, 2, 5, 50 } do
        local l = fvl.randint(1, k + 1, { n }):totable()
        expect_eq(F._pair_anchors(l), anchors_lua(l), string.format("n = %d, k = %d", n, k))
      end
    end
    expect_eq(F._pair_anchors({ 7, 7, 7 }), 0)
    expect_error(function() F._pair_anchors({ 1, 0 }) end, "circle_pairwise: labels[2] = 0 is outside")
  end)
  it("F._adaface_rows gives the Lua computation's bits (EMA while training, clips, NaN)", function()
    local function lua_rows(nrm, h, m, eps, alpha, training, mean, std)
      local n, B = {}, #nrm
      for i = 1, B do n[i] = math.max(1e-3, math.min(100, nrm[i])) end
      if training then
        local s = 0
        for i = 1, B do s = s + n[i] end
        local mu, q = s / B, 0
        for i = 1, B do q = q + (n[i] - mu) ^ 2 end
        mean = alpha * mu + (1 - alpha) * mean
        std = alpha * math.sqrt(q / (B - 1)) + (1 - alpha) * std
      end
      local ga, gd = {}, {}
      for i = 1, B do
        local z = math.max(-1, math.min(1, h * (n[i] - mean) / (std + eps)))
        ga[i], gd[i] = -m * z, m + m * z
      end
      return fvl.tensor(ga), fvl.tensor(gd), mean, std
    end
    fvl.manual_seed(8)
    for _, training in ipairs { true, false } do
      local nrm = fvl.rand(9) * 150
      nrm:set(2, 0 / 0); nrm:set(3, 0); nrm:set(4, 1e9)
      local args = { nrm, 0.333, 0.4, 1e-3, 0.01, training, 20, 100 }
      local a = table.pack(F._adaface_rows(table.unpack(args)))
      local e = table.pack(lua_rows(nrm:totable(), table.unpack(args, 2)))
      for k = 1, 2 do expect_eq(table.concat(a[k]:totable(), ","), table.concat(e[k]:totable(), ",")) end
      expect_eq(string.format("%a %a", a[3], a[4]), string.format("%a %a", e[3], e[4]))
    end
    expect_error(function() F._adaface_rows(fvl.rand(1), 1, 1, 1, 1, true, 0, 0) end, "at least 2 rows")
  end)
  it("F._slice_targets / F._sample_cols map a sharded head's targets (rows, Partial FC columns)", function()
    local rows, pos = F._slice_targets({ 3, 7, 1, 9, 3 }, 3, 5, true)
    expect_eq(table.concat(rows:totable(), ","), "1,5,0,0,1")
    expect_eq(table.concat(pos:totable(), ","), "1,0,0,0,1")
    local only = table.pack(F._slice_targets(fvl._check_labels({ 3, 7 }, "arcface", 2, 9), 3, 5))
    expect_eq(only.n, 1, "no positives unless asked")
    local cols, idx = F._sample_cols(rows, fvl.tensor({ 1, 3, 5 }, "int32"), 2)
    expect_eq(table.concat(cols:totable(), ","), "1,3,0,0,1")
    expect_eq(table.concat(idx:totable(), ","), "1,2,5,6,9,10")
    expect_error(function() F._sample_cols(rows, fvl.tensor({ 1, 5, 3 }, "int32"), 1) end,
                 "sample_cols: sample[3] = 3 (expected sorted, distinct rows >= 1")
    expect_error(function() F._slice_targets({ 1 }, 0, 5) end, "slice_targets: the slice of 5 classes from 0")
    expect_error(function() F._slice_targets({ 0 }, 1, 5) end, "slice_targets: labels[1] = 0 is outside")
  end)
  it("ElasticFace+ assigns the sorted margins as the Lua code did (ties included)", function()
    for _, official in ipairs { false, true } do
      local head = fvl.loss.elasticface { dim = D, classes = C, plus = true, official_order = official }
      fvl.manual_seed(9)
      local x = fvl.randn(B, D)
      local _, y = batch()
      y[8] = y[7]   -- rows 1, 7, 8 share a class: tied target cosines
      x:narrow(1, 7, 1):copy(x:narrow(1, 1, 1))
      x:narrow(1, 8, 1):copy(x:narrow(1, 1, 1))
      local m = fvl.randn(B) * 0.05 + 0.5
      m:set(2, m:get(3))
      head(x, y, { margins = m })
      local cy = F.target_cos(F.cosine(x, head.weight), y):totable()
      local want = plus_lua(cy, m:totable(), official)
      local got = head.last_margins:totable()
      for i = 1, B do expect_eq(string.format("%a", got[i]), string.format("%a", want[i]), "row " .. i) end
    end
  end)
end)
