-- Every figure fvl.plot writes gets its data beside it (same basename, .csv): lines, roc,
-- history, features (2-D, 3-D, centres), boundaries and sheets; the values read back are the
-- plotted ones.
-- every figure's data (CSV) is written beside it: both are removed at the end (tests/lua/run.lua)
local tmp, cleanup = temp_names(function(p) return fvl.plot.csv_path(p) end)

local function read_csv(path)
  local f = io.open(path, "r")
  if not f then error("no CSV " .. path, 2) end
  local header = f:read("l")
  local rows = {}
  for line in f:lines() do
    local r = {}
    for field in (line .. ","):gmatch("([^,]*),") do r[#r + 1] = field end
    rows[#rows + 1] = r
  end
  f:close()
  return header, rows
end
local HEADER = "panel,series,label,x,y,z,class"

describe("CSV beside every figure", function()
  it("plot.lines: one row per point, series and label", function()
    local f = fvl.plot.lines { series = { { x = { 1, 2, 3 }, y = { 0.5, 0.25, 0.125 }, label = "train" },
                                          { x = { 1, 2 }, y = { 1, 2 }, label = "val" } },
                               file = tmp("l.png") }
    expect_eq(fvl.plot.csv_path(f), (f:gsub("%.png$", ".csv")))
    local h, rows = read_csv(fvl.plot.csv_path(f))
    expect_eq(h, HEADER)
    expect_eq(#rows, 5)
    expect_eq(rows[1][2], "1"); expect_eq(rows[1][3], "train")
    expect_eq(tonumber(rows[3][4]), 3); expect_eq(tonumber(rows[3][5]), 0.125)
    expect_eq(rows[5][2], "2"); expect_eq(rows[5][3], "val"); expect_eq(tonumber(rows[5][5]), 2)
  end)

  it("plot.features: points with their 1-based classes, and the centres", function()
    fvl.manual_seed(3)
    local emb = fvl.randn(7, 2)
    local labels = { 1, 2, 3, 1, 2, 3, 1 }
    local W = fvl.randn(3, 2)
    local f = fvl.plot.features(emb, labels, { centres = W, file = tmp("f.png") })
    local _, rows = read_csv(fvl.plot.csv_path(f))
    expect_eq(#rows, 10)
    local e = emb:totable()
    for i = 1, 7 do
      expect_eq(rows[i][2], "points")
      expect_near(tonumber(rows[i][4]), e[i][1], 1e-6, 1e-7, "x")
      expect_near(tonumber(rows[i][5]), e[i][2], 1e-6, 1e-7, "y")
      expect_eq(rows[i][6], "")
      expect_eq(tonumber(rows[i][7]), labels[i])
    end
    expect_eq(rows[8][2], "centres"); expect_eq(tonumber(rows[10][7]), 3)
  end)

  it("plot.features in 3-D: z filled; svg gets its CSV too", function()
    local emb = fvl.randn(4, 3)
    local f = fvl.plot.features(emb, fvl.tensor({ 1, 2, 1, 2 }, "int32"), { file = tmp("f3.svg") })
    local _, rows = read_csv(fvl.plot.csv_path(f))
    expect_eq(#rows, 4)
    expect_near(tonumber(rows[4][6]), emb:totable()[4][3], 1e-6, 1e-7, "z")
    expect_eq(tonumber(rows[2][7]), 2)
  end)

  it("plot.roc and plot.history go through the same CSV", function()
    local f = fvl.plot.history({ { step = 1, loss = 2 }, { step = 2, loss = 1 } }, { file = tmp("h.png") })
    local _, rows = read_csv(fvl.plot.csv_path(f))
    expect_eq(#rows, 2)
    expect_eq(rows[2][3], "loss")
    local r = fvl.plot.roc({ { label = "a", far = { 1e-3, 1e-2, 1 }, tar = { 0.5, 0.8, 1 } } }, { file = tmp("r.png") })
    _, rows = read_csv(fvl.plot.csv_path(r))
    expect_true(#rows >= 3, "roc rows")
  end)

  it("a sheet: each panel's rows under its panel number; no temporary CSV left", function()
    local a = fvl.plot.lines { series = { { x = { 1, 2 }, y = { 3, 4 }, label = "a" } } }
    local b = fvl.plot.lines { series = { { x = { 5 }, y = { 6 }, label = "b" } } }
    local filed = fvl.plot.lines { series = { { x = { 7 }, y = { 8 }, label = "c" } }, file = tmp("c.png") }
    local f = fvl.plot.sheet({ a, b, filed }, { file = tmp("s.png"), cols = 3 })
    local _, rows = read_csv(fvl.plot.csv_path(f))
    expect_eq(#rows, 4)
    expect_eq(rows[1][1], "1"); expect_eq(rows[3][1], "2"); expect_eq(rows[3][3], "b")
    expect_eq(rows[4][1], "3"); expect_eq(tonumber(rows[4][5]), 8)
  end)

  it("boundaries (a grid of panels on a sheet) write a CSV with every panel", function()
    local f = fvl.plot.boundaries({ "softmax", { "cosface", m = 0.35 }, { "arcface", m = 0.5 } },
                                  { file = tmp("b.png"), grid = 16 })
    local _, rows = read_csv(fvl.plot.csv_path(f))
    local panels = {}
    for _, r in ipairs(rows) do panels[r[1]] = true end
    expect_true(panels["1"] and panels["2"] and panels["3"], "three panels")
  end)
end)

describe("CSV beside every animation (panel = frame)", function()
  it("plot.animation of features: each frame's points and centres under its number", function()
    fvl.manual_seed(4)
    local anim = fvl.plot.animation { file = tmp("a.gif"), width = 96, height = 80 }
    local e1, e2, W = fvl.randn(5, 2), fvl.randn(5, 2), fvl.randn(2, 2)
    local labels = { 1, 2, 1, 2, 2 }
    anim:add(e1, labels, { centres = W })
    anim:add(e2, fvl.tensor(labels, "int32"))
    anim:add_chart { series = { { x = { 1, 2 }, y = { 0.5, 0.25 }, label = "loss" } } }
    local f = io.open(fvl.plot.csv_path(tmp("a.gif")))
    expect_true(f == nil, "nothing is written before close()")
    if f then f:close() end
    local gif = anim:close()
    local h, rows = read_csv(fvl.plot.csv_path(gif))
    expect_eq(h, HEADER)
    expect_eq(#rows, 5 + 2 + 5 + 2)
    local t1, t2 = e1:totable(), e2:totable()
    for i = 1, 5 do
      expect_eq(rows[i][1], "1"); expect_eq(rows[i][2], "points")
      expect_near(tonumber(rows[i][4]), t1[i][1], 1e-6, 1e-7, "frame 1 x")
      expect_eq(tonumber(rows[i][7]), labels[i])
      expect_eq(rows[7 + i][1], "2")
      expect_near(tonumber(rows[7 + i][5]), t2[i][2], 1e-6, 1e-7, "frame 2 y")
      expect_eq(tonumber(rows[7 + i][7]), labels[i])
    end
    expect_eq(rows[6][2], "centres"); expect_eq(tonumber(rows[7][7]), 2)
    expect_near(tonumber(rows[7][4]), W:totable()[2][1], 1e-6, 1e-7, "centre 2 x")
    expect_eq(rows[13][1], "3"); expect_eq(rows[13][3], "loss"); expect_eq(tonumber(rows[14][5]), 0.25)
  end)

  it("boundary_animation: every frame's curves (held frames too); a failed one leaves no CSV", function()
    local f = fvl.plot.boundary_animation({ "arcface", m = 0.5 }, { file = tmp("b.gif"), frames = 3, hold = 1,
                                                                   grid = 16, width = 96, height = 96 })
    local _, rows = read_csv(fvl.plot.csv_path(f))
    local per = {}
    for _, r in ipairs(rows) do
      local k = tonumber(r[1])
      per[k] = per[k] or {}
      per[k][#per[k] + 1] = table.concat(r, ",", 2)
      expect_true(r[2] == "1" or r[2] == "2", "series 1 (class 1) and 2 (its mirror)")
    end
    expect_eq(#per, 4, "3 frames + 1 held")
    expect_eq(table.concat(per[4], ";"), table.concat(per[3], ";"), "the held frame repeats the last")
    expect_true(table.concat(per[1], ";") ~= table.concat(per[3], ";"), "the margin grows between frames")
    expect_error(function()
      fvl.plot.boundary_animation(function() error("boom", 0) end, { file = tmp("failed.gif"), frames = 2 })
    end, "boom")
    collectgarbage()
    local g = io.open(fvl.plot.csv_path(tmp("failed.gif")))
    expect_true(g == nil, "no CSV for a failed animation")
    if g then g:close() end
  end)
end)

cleanup()
