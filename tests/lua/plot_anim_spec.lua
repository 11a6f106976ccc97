-- Animated boundaries and training animations (fvl.plot.boundary_animation / boundary_animations /
-- training_animation, Animation:add_chart), boundaries of any head (round-2 heads and
-- fvl.loss.margin heads from their own functions). GIF files are walked block by block here.
local fvl = fvl or require "fvl"
-- every figure's data (CSV) is written beside it: both are removed at the end (tests/lua/run.lua)
local tmp, cleanup = temp_names(function(p) return fvl.plot.csv_path(p) end)

-- frames of a GIF89a file (walks the blocks: extensions, image descriptors, sub-blocks)
local function gif_frames(path)
  local f = assert(io.open(path, "rb"), "file " .. path .. " was not written")
  local b = f:read("a")
  f:close()
  expect_eq(b:sub(1, 6), "GIF89a", path .. " signature")
  local flags = b:byte(11)
  local pos = 14 + ((flags & 0x80) ~= 0 and 3 * (2 << (flags & 7)) or 0)
  local frames = 0
  local function skip_blocks()
    while b:byte(pos) ~= 0 do pos = pos + b:byte(pos) + 1 end
    pos = pos + 1
  end
  while true do
    local c = b:byte(pos)
    if c == 0x3B then break end
    if c == 0x21 then pos = pos + 2; skip_blocks()
    elseif c == 0x2C then
      local lflags = b:byte(pos + 9)
      pos = pos + 10 + ((lflags & 0x80) ~= 0 and 3 * (2 << (lflags & 7)) or 0) + 1   -- + LZW code size
      skip_blocks()
      frames = frames + 1
    else error(string.format("%s: unexpected byte 0x%02x at %d", path, c, pos)) end
  end
  expect_eq(pos, #b, path .. ": the trailer ends the file")
  return frames, string.unpack("<I2I2", b, 7)
end
local function exists(p) local f = io.open(p, "rb"); if f then f:close() end; return f ~= nil end

describe("plot.boundary_animation", function()
  it("grows a preset's margin: frames + held frames, at the given size", function()
    local f = fvl.plot.boundary_animation({ "arcface", m = 0.5 }, { file = tmp("arc.gif"), frames = 5, hold = 2,
                                                                   grid = 41, width = 200, height = 180 })
    expect_eq(f, tmp("arc.gif"))
    local n, w, h = gif_frames(f)
    expect_eq(n, 7); expect_eq(w, 200); expect_eq(h, 180)
  end)
  it("SphereFace along λ, CurricularFace along t, a head, a user head, a function", function()
    local user = dofile((TEST_DIR or "tests") .. "/../scripts/examples/margin_curricularface.lua") { dim = 4, classes = 3 }
    local items = { { "sphereface" }, { "curricularface", m = 0.5 }, fvl.loss.magface { dim = 4, classes = 3 },
                    fvl.loss.adaface { dim = 4, classes = 3 }, user,
                    function(a) return { label = "mine", f = function(t1, t2) return math.cos(t1 + a) - math.cos(t2) end } end }
    for i, it in ipairs(items) do
      local n = gif_frames(fvl.plot.boundary_animation(it, { file = tmp("b" .. i .. ".gif"), frames = 3, hold = 0, grid = 25 }))
      expect_eq(n, 3, "item " .. i)
    end
  end)
  it("the sweeps reach the given values at the last frame", function()
    local o = { "sphereface", lambda_min = 5 }
    fvl.plot.boundary_sweeps.sphereface(o, 1)
    expect_near(o.lambda, 5, 1e-12, 0, "λ at the end")
    local c = { "curricularface", m = 0.5 }
    fvl.plot.boundary_sweeps.curricularface(c, 0.25)
    expect_eq(c.t, 0.25)
    local a = { "arcface", m = 0.5 }
    fvl.plot.boundary_sweeps.arcface(a, 0.5)
    expect_eq(a.m, 0.25)
  end)
  it("boundary_animations writes one file per head into dir", function()
    local dir = tmp("dir")
    os.execute("mkdir -p " .. dir)
    local files = fvl.plot.boundary_animations({ "cosface", { "cosface", m = 0.2 }, fvl.loss.elasticface { dim = 4, classes = 3 } },
                                               { dir = dir, frames = 2, hold = 0, grid = 17 })
    expect_eq(#files, 3)
    expect_eq(files[1], dir .. "/boundary_cosface.gif")
    expect_eq(files[2], dir .. "/boundary_cosface_2.gif")
    expect_eq(files[3], dir .. "/boundary_elasticface.gif")
    for _, f in ipairs(files) do expect_eq(gif_frames(f), 2) end
    for _, f in ipairs(files) do os.remove(f) end
    os.remove(dir)
  end)
  it("errors name the function and leave no file", function()
    expect_error(function() fvl.plot.boundary_animation(3, { file = tmp("x.gif") }) end,
                 "plot.boundary_animation: item must be a name, a table, a head or a function(a), got number")
    expect_error(function() fvl.plot.boundary_animation("arcface", { file = tmp("x.gif"), frames = 1 }) end,
                 "plot.boundary_animation: frames")
    expect_error(function()
      fvl.plot.boundary_animation(function() error("boom", 0) end, { file = tmp("y.gif"), frames = 2 })
    end, "boom")
    collectgarbage()
    expect_true(not exists(tmp("y.gif")), "a failed animation writes nothing")
    expect_true(not exists(fvl.plot.csv_path(tmp("y.gif"))), "nor a CSV")
    expect_error(function() fvl.plot.boundary_animations({ "arcface" }, {}) end, "opts.dir")
  end)
end)

describe("plot.boundaries of any head", function()
  it("round-2 heads and user-defined margins", function()
    local user = fvl.loss.margin { dim = 4, classes = 3, name = "mine", target = function(c) return c - 0.3 end }
    local f = fvl.plot.boundaries({ user, fvl.loss.subcenter_arcface { dim = 4, classes = 3 }, fvl.loss.adacos { dim = 4, classes = 3 } },
                                  { file = tmp("any.png"), grid = 31 })
    expect_true(exists(f), "written")
  end)
end)

describe("plot.training_animation", function()
  it("adds a frame when a step is due, and only then calls the frame function", function()
    local anim = fvl.plot.training_animation { file = tmp("train.gif"), steps = 20, frames = 4, width = 160, height = 128 }
    local calls = 0
    fvl.manual_seed(1)
    for k = 1, 20 do
      anim:step(k, function()
        calls = calls + 1
        return fvl.randn(30, 2), fvl.randint(3, { 30 }), { title = "step " .. k }
      end)
    end
    expect_eq(calls, 4)
    anim:close()
    expect_eq(gif_frames(tmp("train.gif")), 4)
  end)
end)

cleanup()
