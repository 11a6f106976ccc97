-- fvl.plot: every picture is written as PNG/SVG/PDF (magic bytes, PNG size from the IHDR chunk),
-- panels and sheets, boundary presets computed from the logit functions, and every error path.
local tmp, cleanup = temp_names()   -- tests/lua/run.lua

local function head(path, n)
  local f = io.open(path, "rb")
  if not f then error("file " .. path .. " was not written", 2) end
  local s = f:read(n or 64) or ""
  local size = f:seek("end")
  f:close()
  return s, size
end
local function expect_png(path, w, h)
  local s = head(path, 32)
  expect_eq(s:sub(1, 8), "\137PNG\r\n\26\n", path .. " PNG signature")
  local pw, ph = string.unpack(">I4I4", s, 17)
  if w then expect_eq(pw, w, path .. " width") end
  if h then expect_eq(ph, h, path .. " height") end
  return pw, ph
end
local function expect_svg(path)
  local s, size = head(path, 200)
  expect_true(s:find("<svg", 1, true) or s:find("<?xml", 1, true), path .. " is SVG")
  expect_true(size > 500, path .. " has content")
end
local exists = file_exists

local function blobs2(C, per, dim)
  fvl.manual_seed(3)
  local lab = {}
  for i = 1, C * per do lab[i] = (i - 1) % C + 1 end
  local W = fvl.randn(C, dim)
  local emb = W:index(1, fvl.tensor(lab, "int32")) * 3 + fvl.randn(C * per, dim) * 0.4
  return emb, lab, W
end

describe("plot.features", function()
  it("writes 2-D and 3-D scatters with centre rays as PNG, SVG and PDF", function()
    local emb, lab, W = blobs2(6, 50, 2)
    local f = fvl.plot.features(emb, lab, { centres = W, file = tmp("f2.png"), title = "ArcFace" })
    expect_eq(f, tmp("f2.png"))
    expect_png(f, 800, 640)
    fvl.plot.features(emb, fvl.tensor(lab, "int32"), { centres = W, normalize = false, width = 500, height = 400,
                                                       names = { "a", "b", "c", "d", "e", "f" },
                                                       file = tmp("f2.svg") })
    expect_svg(tmp("f2.svg"))
    local e3, l3, W3 = blobs2(5, 40, 3)
    fvl.plot.features(e3, l3, { centres = W3, elev = 30, azim = -20, file = tmp("f3.png") })
    expect_png(tmp("f3.png"), 800, 640)
    fvl.plot.features(e3, nil, { file = tmp("f3.pdf") })
    expect_eq(head(tmp("f3.pdf"), 5), "%PDF-")
    -- a head's weight that requires grad is fine
    local w = W:clone()
    w:requires_grad()
    fvl.plot.features(emb, lab, { centres = w, file = tmp("f2b.png") })
    expect_png(tmp("f2b.png"))
  end)

  it("returns a panel without file", function()
    local emb, lab, W = blobs2(3, 20, 2)
    local p = fvl.plot.features(emb, lab, { centres = W, title = "panel" })
    expect_eq(tostring(p), "fvl.plot panel (features)")
    p:save(tmp("panel.png"), 300, 240)
    expect_png(tmp("panel.png"), 300, 240)
  end)

  it("gives clear errors", function()
    local emb, lab, W = blobs2(3, 10, 2)
    expect_error(function() fvl.plot.features(fvl.ones(5, 4), nil, { file = tmp("x.png") }) end,
      "plot.features: emb must be N×2 or N×3 (project higher dimensions first), got 5×4")
    expect_error(function() fvl.plot.features(emb, { 1, 2 }, { file = tmp("x.png") }) end,
      "plot.features: emb has 30 rows but labels has 2 entries")
    local bad = {}
    for i = 1, 30 do bad[i] = lab[i] end
    bad[4] = 0
    expect_error(function() fvl.plot.features(emb, bad, { file = tmp("x.png") }) end,
      "plot.features: labels[4] = 0 is not a class id")
    expect_error(function() fvl.plot.features(emb, lab, { classes = 2, file = tmp("x.png") }) end,
      "plot.features: labels[3] = 3 is not a class id (expected an integer in 1..2)")
    expect_error(function() fvl.plot.features(emb, lab, { centres = fvl.ones(3, 3), file = tmp("x.png") }) end,
      "plot.features: centres must be C×2 (head.weight), got 3×3")
    expect_error(function() fvl.plot.features(emb, lab, { file = tmp("x.jpg") }) end,
      "expected a name ending in .png, .svg or .pdf")
    expect_error(function() fvl.plot.features(emb, lab, { file = "/nonexistent-dir/x.png" }) end,
      "plot.features: cannot write '/nonexistent-dir/x.png': No such file or directory")
    expect_error(function() fvl.plot.features(emb, lab, { colour = 1 }) end,
      "plot.features: unknown option 'colour'")
    local nan = emb:clone()
    nan:set(2, 2, 0 / 0)
    expect_error(function() fvl.plot.features(nan, lab, { file = tmp("x.png") }) end,
      "plot.features: emb[2][2] = nan is not a finite number")
    expect_true(not exists(tmp("x.png")), "nothing written on error")
  end)
end)

describe("plot.lines", function()
  it("draws series with labels, log axes, dashes, points and notes", function()
    local x, y1, y2 = {}, {}, {}
    for i = 1, 50 do
      x[i] = 10 ^ (-5 + 5 * (i - 1) / 49)
      y1[i] = 1 - 0.6 * math.exp(-i / 10)
      y2[i] = 0.4 + 0.5 * (i / 50) ^ 2
    end
    y2[20] = 0 / 0   -- a gap
    fvl.plot.lines { series = { { x = x, y = y1, label = "run A" },
                                { x = fvl.tensor(x), y = fvl.tensor(y2), label = "run B", dash = "dashed", points = true } },
                     xlog = true, ymin = 0, ymax = 1, title = "t", xlabel = "FAR", ylabel = "TAR",
                     notes = { { x = 1e-3, y = 0.2, text = "note" } }, legend = "top left",
                     file = tmp("lines.png"), width = 640, height = 480 }
    expect_png(tmp("lines.png"), 640, 480)
    fvl.plot.lines { series = { { x = { 0, 1, 2 }, y = { 2, 1, 3 } } }, equal = true, diagonal = true,
                     file = tmp("lines.svg") }
    expect_svg(tmp("lines.svg"))
    local p = fvl.plot.lines { series = { { x = { 0, 1 }, y = { 0, 1 } } }, legend = "none" }
    expect_eq(p.kind, "lines")
  end)

  it("gives clear errors", function()
    expect_error(function() fvl.plot.lines(3) end, "plot.lines: expected a table {series=..., file=...}, got number")
    expect_error(function() fvl.plot.lines { file = tmp("e.png") } end,
      "plot.lines: series must be a list of {x=, y=, label=} tables")
    expect_error(function() fvl.plot.lines { series = { { x = { 1, 2 }, y = { 1 } } }, file = tmp("e.png") } end,
      "plot.lines: series[1] has 2 x values but 1 y values")
    expect_error(function() fvl.plot.lines { series = { { x = { 1 }, y = { 1 }, dash = "wavy" } } } end,
      "plot.lines: dash = 'wavy' (expected solid|dashed|dotted)")
    expect_error(function() fvl.plot.lines { series = { { x = { 1 }, y = { 1 }, lable = "x" } } } end,
      "plot.lines: series[1]: unknown option 'lable'")
    expect_error(function() fvl.plot.lines { series = {}, xmin = 2, xmax = 1 } end,
      "plot.lines: xmin = 2 must be below xmax = 1")
    expect_error(function() fvl.plot.lines { series = {}, legend = "middle" } end,
      "plot.lines: legend = middle (expected auto|none|top right|top left|bottom right|bottom left)")
    expect_error(function() fvl.plot.lines { series = {}, xlog = true, xmin = 0, file = tmp("e.png") } end,
      "plot.lines: a log axis needs a positive minimum")
    expect_error(function() fvl.plot.lines { series = { { x = { "a" }, y = { 1 } } }, file = tmp("e.png") } end,
      "plot.lines: series[1].x[1] must be a number, got string")
    expect_error(function() fvl.plot.lines { series = {}, width = 4, file = tmp("e.png") } end,
      "plot.lines: width = 4 is outside 16..inf")
  end)
end)

describe("plot.roc and plot.history", function()
  it("draws ROC curves of several runs from verification results", function()
    fvl.manual_seed(1)
    local function run(noise)
      local lab = {}
      for i = 1, 300 do lab[i] = (i - 1) % 15 + 1 end
      local emb = fvl.randn(15, 8):index(1, fvl.tensor(lab, "int32")) + fvl.randn(300, 8) * noise
      return fvl.eval.verification(fvl.eval.pairs(emb, lab, { n = 2000 }))
    end
    local a, b = run(0.5), run(1.0)
    fvl.plot.roc({ clean = a, noisy = b }, { file = tmp("roc.png") })
    expect_png(tmp("roc.png"), 800, 600)
    fvl.plot.roc({ { label = "A", result = a }, { label = "B", far = b.roc.far, tar = b.roc.tar } },
                 { file = tmp("roc.svg"), title = "two runs" })
    expect_svg(tmp("roc.svg"))
    expect_error(function() fvl.plot.roc({ { label = "x" } }, { file = tmp("e.png") }) end,
      "plot.roc: runs[1] has no ROC")
    expect_error(function() fvl.plot.roc({}, { file = tmp("e.png") }) end, "plot.roc: runs: expected at least one run")
  end)

  it("draws training curves from records", function()
    local rec = {}
    for k = 1, 30 do rec[k] = { step = 10 * k, loss = 2 / k, acc = 1 - 1 / k } end
    fvl.plot.history(rec, { file = tmp("hist.png"), title = "training" })
    expect_png(tmp("hist.png"))
    fvl.plot.history(rec, { y = "loss", ylog = true, file = tmp("hist2.png") })
    expect_png(tmp("hist2.png"))
    expect_error(function() fvl.plot.history({}, {}) end, "plot.history: records must be a non-empty list")
  end)
end)

describe("plot.boundaries", function()
  it("draws every preset as a grid sheet and an overlay", function()
    local losses = { "softmax", { "sphereface", m = 4 }, { "sphereface", m = 4, lambda = 5 }, { "cosface", m = 0.35 },
                     { "arcface", m = 0.5 }, { "combined", m1 = 1, m2 = 0.3, m3 = 0.2 },
                     { "mv_softmax", kind = "arc", m = 0.5, t = 0.2 }, { "curricularface", m = 0.5, t = 0.5 },
                     { "circle", m = 0.25 }, { "discface", base = "arc", m = 0.5 } }
    local f = fvl.plot.boundaries(losses, { file = tmp("bound.png"), grid = 121, width = 300, height = 300 })
    expect_eq(f, tmp("bound.png"))
    local w, h = expect_png(f)
    expect_eq(w, 4 * 300)
    expect_true(h > 3 * 300, "three rows of panels")
    fvl.plot.boundaries({ { "cosface", m = 0.35 }, { "arcface", m = 0.5 } }, { file = tmp("bound.svg"), grid = 61 })
    expect_svg(tmp("bound.svg"))
    local panels = fvl.plot.boundaries(losses, { grid = 31 })
    expect_eq(#panels, #losses)
    -- no list: the seed heads' defaults (what scripts/compare_losses.lua draws)
    fvl.plot.boundaries { file = tmp("bdef.png"), grid = 41, width = 200, height = 200, cols = 5 }
    expect_png(tmp("bdef.png"), 5 * 200)
    expect_eq(#fvl.plot.boundaries(nil), #fvl.plot.default_boundaries)
  end)

  it("reads margins from a head-like object and accepts a custom logit function", function()
    -- real heads: margins are read from their fields
    local heads = { fvl.loss.arcface { dim = 2, classes = 2, m = 0.4 }, fvl.loss.npcface { dim = 2, classes = 2 },
                    fvl.loss.discface { dim = 2, classes = 2, base = "arc" }, fvl.loss.sphereface { dim = 2, classes = 2 },
                    fvl.loss.curricularface { dim = 2, classes = 2 }, fvl.loss.mv_softmax { dim = 2, classes = 2 } }
    local hp = fvl.plot.boundaries(heads, { layout = "overlay", grid = 31 })
    expect_eq(hp.args.series[1].label, "ArcFace m=0.4")
    expect_eq(hp.args.series[3].label, "NPCFace m0=0.4, m1=0.2, t=1.1, α=0.2")
    expect_true(hp.args.series[5].label:find("DiscFace (arc m=0.5", 1, true) ~= nil, hp.args.series[5].label)
    local head = { name = "arcface", m = 0.3 }
    local custom = { label = "my loss", f = function(t1, t2) return math.cos(t1) - 0.2 - math.cos(t2) end }
    local p = fvl.plot.boundaries({ head, custom }, { layout = "overlay", grid = 181 })
    expect_eq(p.kind, "lines")
    expect_eq(p.args.series[1].label, "ArcFace m=0.3")
    expect_eq(p.args.series[3].label, "my loss")
    -- the ArcFace boundary is θ2 = θ1 + m (in degrees): check the computed curve
    local xs, ys = p.args.series[1].x, p.args.series[1].y
    local checked = 0
    for i = 1, #xs do
      if xs[i] == xs[i] and ys[i] < 170 then
        expect_near(ys[i] - xs[i], math.deg(0.3), 0, 0.02, "θ2 - θ1 (linear interpolation on a 1° grid)")
        checked = checked + 1
      end
    end
    expect_true(checked > 20, "points on the ArcFace curve")
  end)

  it("gives clear errors", function()
    expect_error(function() fvl.plot.boundaries({}, {}) end, "plot.boundaries: losses must be a non-empty list")
    expect_error(function() fvl.plot.boundaries({ "arcfase" }, { file = tmp("e.png") }) end,
      "plot.boundaries: losses[1]: unknown loss 'arcfase' (expected adacos|adaface|am_softmax|arcface|")
    expect_error(function() fvl.plot.boundaries({ { label = "x", pos = math.cos } }, {}) end,
      "plot.boundaries: losses[1] needs f=function(θ1, θ2) or pos= and neg= functions")
    expect_error(function() fvl.plot.boundaries({ { f = function() error("boom") end } }, { grid = 8 }) end,
      "plot.boundaries: losses[1] (?): ")
    expect_error(function() fvl.plot.boundaries({ "arcface" }, { layout = "stack" }) end,
      "plot.boundaries: layout = 'stack' (expected grid|overlay)")
  end)
end)

describe("plot.sheet", function()
  it("tiles files and panels with titles", function()
    local emb, lab, W = blobs2(4, 20, 2)
    fvl.plot.features(emb, lab, { centres = W, file = tmp("s1.png"), width = 400, height = 320 })
    fvl.plot.features(emb, lab, { centres = W, file = tmp("s2.png"), width = 400, height = 320 })
    local panel = fvl.plot.features(emb, lab, { centres = W, title = "panel" })
    local f = fvl.plot.sheet({ tmp("s1.png"), { file = tmp("s2.png"), title = "second" }, panel },
                             { cols = 2, title = "sheet", file = tmp("sheet.png"), cell_width = 400, cell_height = 320 })
    expect_eq(f, tmp("sheet.png"))
    expect_png(f, 800, 56 + 2 * (320 + 30))
    fvl.plot.sheet({ tmp("s1.png"), tmp("s2.png") }, { file = tmp("sheet.svg") })
    expect_svg(tmp("sheet.svg"))
  end)

  it("gives clear errors", function()
    expect_error(function() fvl.plot.sheet({}, { file = tmp("e.png") }) end,
      "plot.sheet: panels must be a non-empty list")
    expect_error(function() fvl.plot.sheet({ tmp("s1.png") }, {}) end, "plot.sheet: file is required")
    expect_error(function() fvl.plot.sheet({ "/nonexistent/p.png" }, { file = tmp("e.png") }) end,
      "plot.sheet: panels[1] '/nonexistent/p.png': cannot read the PNG (No such file or directory)")
    expect_error(function() fvl.plot.sheet({ 42 }, { file = tmp("e.png") }) end,
      "plot.sheet: panels[1] must be a PNG file name, {file=, title=} or a panel, got number")
    expect_error(function() fvl.plot.sheet({ tmp("s1.png") }, { file = tmp("e.png"), cols = 0 }) end,
      "plot.sheet: cols = 0 is outside 1..inf")
  end)
end)

describe("plot.animation", function()
  it("writes an animated GIF of features, frame by frame, at close", function()
    local emb, lab, W = blobs2(4, 30, 2)
    local anim = fvl.plot.animation { file = tmp("anim.gif"), width = 320, height = 256, delay = 0.1 }
    for k = 1, 3 do expect_eq(anim:add(emb * k, lab, { centres = W, title = "step " .. k }), k) end
    expect_true(not exists(tmp("anim.gif")), "nothing before close")
    expect_eq(anim:frames(), 3)
    expect_eq(anim:close(), tmp("anim.gif"))
    local s, size = head(tmp("anim.gif"), 16)
    expect_eq(s:sub(1, 6), "GIF89a")
    expect_eq(string.unpack("<I2", s, 7), 320)
    expect_eq(string.unpack("<I2", s, 9), 256)
    local f = io.open(tmp("anim.gif"), "rb")
    local all = f:read("a")
    f:close()
    expect_eq(all:sub(-1), ";", "GIF trailer")
    local frames = 0
    for _ in all:gmatch("\33\249\4") do frames = frames + 1 end
    expect_eq(frames, 3, "graphic control blocks")
    expect_true(size > 1000)
    expect_error(function() anim:add(emb, lab) end, "plot.animation: the animation is closed")
    expect_true(tostring(anim):find("3 frames, closed", 1, true) ~= nil)
  end)

  it("leaves no file when dropped or empty, and gives clear errors", function()
    local emb, lab = blobs2(2, 5, 2)
    do
      local a = fvl.plot.animation { file = tmp("drop.gif") }
      a:add(emb, lab)
    end
    collectgarbage(); collectgarbage()
    expect_true(not exists(tmp("drop.gif")), "a dropped animation writes nothing")
    local e = fvl.plot.animation { file = tmp("empty.gif") }
    expect_error(function() e:close() end, "has no frames (add at least one before closing)")
    expect_true(not exists(tmp("empty.gif")))
    expect_error(function() fvl.plot.animation { file = tmp("a.png") } end,
      "plot.animation: file must be a name ending in .gif, got '")
    expect_error(function() fvl.plot.animation { file = tmp("a.gif"), delay = 0 } end,
      "plot.animation: delay = 0 is outside 0.01..600")
    expect_error(function() fvl.plot.animation { file = tmp("a.gif"), fps = 3 } end,
      "plot.animation: unknown option 'fps'")
    local a = fvl.plot.animation { file = tmp("b.gif") }
    expect_error(function() a:add(fvl.ones(3, 5), nil) end,
      "plot.animation: emb must be N×2 or N×3 (project higher dimensions first), got 3×5")
    expect_error(function() a:add(emb, lab, { file = "x.png" }) end, "plot.animation: unknown option 'file'")
  end)
end)

cleanup()
