-- face alignment and resizing: fvl.data.align_face / warp_image / resize_image /
-- similarity_transform / face_template (lua/fvl/align.lua, engine/data/warp.c), and resizing
-- where data is read (fvl.data.images{size =}, bin_pack:decode, fvl.eval.bin_pack)
local data = fvl.data
local T112 = { { 38.2946, 51.6963 }, { 73.5318, 51.5014 }, { 56.0252, 71.7366 },
               { 41.5493, 92.3655 }, { 70.7299, 92.2041 } }

local function maxdiff(a, b) return (a:float() - b:float()):abs():max():item() end

-- points p (n×2 table) through the 2×3 matrix m (tensor)
local function apply(m, p)
  local a = m:totable()
  local out = {}
  for i, q in ipairs(p) do
    out[i] = { a[1][1] * q[1] + a[1][2] * q[2] + a[1][3], a[2][1] * q[1] + a[2][2] * q[2] + a[2][3] }
  end
  return out
end

-- a C×H×W image with a Gaussian blob (σ = 2) at each point (1-based x, y)
local function blobs(C, H, W, pts)
  local rows = {}
  for y = 1, H do
    local row = {}
    for x = 1, W do
      local v = 0
      for _, p in ipairs(pts) do v = v + 255 * math.exp(-((x - p[1]) ^ 2 + (y - p[2]) ^ 2) / 8) end
      row[x] = v
    end
    rows[y] = row
  end
  local planes = {}
  for c = 1, C do planes[c] = rows end
  return fvl.tensor(planes)
end

-- the intensity centroid (1-based x, y) of plane img[1] in a 7×7 window around (cx, cy)
local function centroid(img, cx, cy)
  local s, sx, sy = 0, 0, 0
  local p = img:select(1, 1)
  for y = math.floor(cy + 0.5) - 3, math.floor(cy + 0.5) + 3 do
    for x = math.floor(cx + 0.5) - 3, math.floor(cx + 0.5) + 3 do
      local v = p:get(y, x)
      s, sx, sy = s + v, sx + v * x, sy + v * y
    end
  end
  return sx / s, sy / s
end

describe("face_template and similarity_transform", function()
  it("the ArcFace template: 0-based as insightface writes it, 1-based by default, scaled", function()
    expect_all_near(data.face_template(112, { origin = 0 }), T112, 0, 1e-4)
    local one = {}
    for i, p in ipairs(T112) do one[i] = { p[1] + 1, p[2] + 1 } end
    expect_all_near(data.face_template(), one, 0, 1e-4)
    local t224, t128 = {}, {}
    for i, p in ipairs(T112) do t224[i] = { 2 * p[1], 2 * p[2] }; t128[i] = { p[1] + 8, p[2] } end
    expect_all_near(data.face_template(224, { origin = 0 }), t224, 0, 1e-4)
    expect_all_near(data.face_template(128, { origin = 0 }), t128, 0, 1e-4)
    expect_error(function() data.face_template(0) end, "face_template: size = 0 is outside 1..")
    expect_error(function() data.face_template(112, { origin = 2 }) end, "origin = 2 (expected 0 or 1")
  end)

  it("recovers a known similarity from 5 points, in any of the accepted forms", function()
    local s, th, tx, ty = 1.7, 0.4, -20, 13
    local m = fvl.tensor({ { s * math.cos(th), -s * math.sin(th), tx }, { s * math.sin(th), s * math.cos(th), ty } })
    local dst = apply(m, T112)
    expect_tensor_close(data.similarity_transform(T112, dst), m, 1e-5, "pairs")
    local flat = {}
    for _, p in ipairs(dst) do flat[#flat + 1] = p[1]; flat[#flat + 1] = p[2] end
    expect_tensor_close(data.similarity_transform(fvl.tensor(T112), flat), m, 1e-5, "tensor, flat list")
    expect_error(function() data.similarity_transform(T112, { 1, 2, 3, 4 }) end, "src is 5x2 and dst is 2x2")
    expect_error(function() data.similarity_transform({ { 1, 1 }, { 1, 1 } }, { { 0, 0 }, { 1, 2 } }) end,
                 "all lie at one place")
    expect_error(function() data.similarity_transform({ { 0 / 0, 1 }, { 1, 1 } }, { { 0, 0 }, { 1, 2 } }) end,
                 "not a finite number")
  end)
end)

describe("align_face", function()
  it("blobs at the landmarks of a rotated, scaled face land on the template (1-based)", function()
    local th, s = -0.35, 1.4
    local m = fvl.tensor({ { s * math.cos(th), -s * math.sin(th), 30 }, { s * math.sin(th), s * math.cos(th), 45 } })
    local tpl = data.face_template(112):totable()
    local lm = apply(m, tpl)        -- 1-based landmarks in a 230×230 picture
    local img = blobs(3, 230, 230, lm)
    local face, M = data.align_face(img, lm)
    expect_eq(table.concat(face:shape(), "x"), "3x112x112")
    expect_all_near(apply(M, lm), tpl, 0, 1e-3, "matrix maps the landmarks onto the template")
    for _, p in ipairs(tpl) do
      local cx, cy = centroid(face, p[1], p[2])
      expect_near(cx, p[1], 0, 0.1, "blob x")
      expect_near(cy, p[2], 0, 0.1, "blob y")
    end
    -- the same landmarks 0-based with origin = 0 give the same crop
    local lm0 = {}
    for i, p in ipairs(lm) do lm0[i] = { p[1] - 1, p[2] - 1 } end
    local face0 = data.align_face(img, lm0, { origin = 0 })
    expect_true(maxdiff(face, face0) < 1e-3, "origin 0 vs 1")
    -- a 1-pixel error in the convention moves the crop (the option matters)
    expect_true(maxdiff(face, data.align_face(img, lm0)) > 1, "a wrong origin shows")
  end)

  it("an image already aligned comes out unchanged; 224 crops scale the template", function()
    local tpl = data.face_template(112):totable()
    local img = blobs(1, 112, 112, tpl) + 3
    local face = data.align_face(img, tpl)
    expect_true(maxdiff(face, img) < 1e-2, "identity alignment")
    local big, M = data.align_face(img, tpl, { size = 224 })
    expect_eq(big:size(2), 224)
    expect_all_near(apply(M, tpl), data.face_template(224):totable(), 0, 1e-3, "onto the 224 template")
    local four = (img:get(1, 100, 75) + img:get(1, 100, 76) + img:get(1, 101, 75) + img:get(1, 101, 76)) / 4
    expect_near(big:get(1, 200, 150), four, 0, 1e-3, "x' = 2x - 1 (1-based): output (150, 200) reads input (75.5, 100.5)")
  end)

  it("a custom template and size; clear errors", function()
    local img = fvl.ones(3, 50, 40)
    local tpl = { { 10, 10 }, { 30, 10 }, { 20, 30 } }
    local face = data.align_face(img, tpl, { template = tpl, size = { 40, 40 } })
    expect_eq(face:size(2), 40)
    expect_near(face:get(1, 20, 20), 1, 0, 1e-5, "inside")
    expect_error(function() data.align_face(img, { 1, 2, 3 }) end, "landmarks has 3 numbers")
    expect_error(function() data.align_face(img, tpl) end, "3 landmarks for a template of 5 points")
    expect_error(function() data.align_face(img, T112, { sz = 1 }) end, "align_face: unknown option 'sz'")
    expect_error(function() data.align_face(img, T112, { size = { 112, 96 } }) end, "the ArcFace template is square")
    expect_error(function() data.align_face(img, T112, { template = tpl }) end, "a template needs size")
    expect_error(function() data.align_face(fvl.ones(2, 3, 4, 5), T112) end, "C×H×W (or H×W) tensor, got 2×3×4×5")
    expect_error(function() data.align_face(img, fvl.ones(5, 3)) end, "landmarks must be n×2")
    expect_error(function() data.align_face(img:int(), T112) end, "align_face: image is int32, expected float32")
  end)
end)

describe("warp_image and resize_image", function()
  it("pixel centres: a shift by one column moves pixels right, the border reads value", function()
    local img = fvl.tensor({ { { 1, 2, 3, 4 }, { 5, 6, 7, 8 }, { 9, 10, 11, 12 } } })
    local out = data.warp_image(img, { { 1, 0, 1 }, { 0, 1, 0 } }, { value = -1 })
    expect_all_near(out:select(1, 1), { { -1, 1, 2, 3 }, { -1, 5, 6, 7 }, { -1, 9, 10, 11 } }, 0, 1e-6)
    -- the same shift in 0-based coordinates is the same map
    expect_tensor_close(data.warp_image(img, { 1, 0, 1, 0, 1, 0 }, { origin = 0, value = -1 }), out, 1e-6, "origin 0")
    -- a scale about the 1-based origin differs from one about the 0-based origin
    local s1 = data.warp_image(img, { 2, 0, 0, 0, 2, 0 }, { size = { 6, 8 } })
    local s0 = data.warp_image(img, { 2, 0, 0, 0, 2, 0 }, { size = { 6, 8 }, origin = 0 })
    expect_near(s1:get(1, 1, 1), 0.25, 0, 1e-6, "1-based: (1,1) ↦ (2,2), (1,1) of the output is (0.5, 0.5)")
    expect_near(s0:get(1, 1, 1), 1, 0, 1e-6, "0-based: (0,0) is fixed")
    expect_error(function() data.warp_image(img, { 1, 2, 3, 2, 4, 6 }) end, "has no inverse")
    expect_error(function() data.warp_image(img, { 1, 0, 0 / 0, 0, 1, 0 }) end, "matrix entry 3 (row 1, column 3) is not a finite number")
    expect_error(function() data.warp_image(img, { 1, 0, 0, 0, 1 }) end, "matrix must be 2×3 (6 numbers), got 5")
    expect_error(function() data.warp_image(img, fvl.eye(3)) end, "matrix must be 2×3, got 3×3")
    expect_error(function() data.warp_image(img, fvl.eye(2, 3), { border = "wrap" }) end, "border = 'wrap' (expected constant|replicate)")
    expect_error(function() data.warp_image(img, fvl.eye(2, 3), { size = 70000 }) end, "height = 70000 is outside 1..65535")
  end)

  it("resize keeps a constant exactly, halves a ramp exactly, batches, matches the warp", function()
    local c = fvl.ones(3, 30, 20) * 77.7
    for _, sz in ipairs({ { 7, 9 }, { 60, 41 }, { 30, 20 }, { 1, 1 } }) do
      local r = data.resize_image(c, sz)
      expect_eq(r:size(2) * 1000 + r:size(3), sz[1] * 1000 + sz[2])
      expect_eq(r:min():item(), c:get(1, 1, 1), "min")
      expect_eq(r:max():item(), c:get(1, 1, 1), "max")
    end
    local rows = {}
    for y = 1, 8 do rows[y] = {}; for x = 1, 16 do rows[y][x] = 3 * (x - 1) end end
    local ramp = fvl.tensor(rows)
    local half = data.resize_image(ramp, { 4, 8 })
    for x = 1, 8 do expect_near(half:get(2, x), 3 * (2 * (x - 1) + 0.5), 0, 1e-4, "ramp x=" .. x) end
    local batch = fvl.randn(2, 3, 9, 11)
    local rb = data.resize_image(batch, 5)
    expect_eq(table.concat(rb:shape(), "x"), "2x3x5x5")
    expect_tensor_close(rb[2], data.resize_image(batch[2]:contiguous(), { 5, 5 }), 1e-6, "batch row")
    -- resize = the warp with the scale matrix (0-based, half-pixel centres) and edges replicated
    local sx, sy = 5 / 11, 5 / 9
    local w = data.warp_image(batch, { sx, 0, 0.5 * sx - 0.5, 0, sy, 0.5 * sy - 0.5 },
                              { size = 5, origin = 0, border = "replicate" })
    expect_tensor_close(w, rb, 1e-5, "warp vs resize")
    expect_error(function() data.resize_image(batch, { 0, 3 }) end, "size[1] = 0 is outside 1..")
    expect_error(function() data.resize_image(batch, 2.5) end, "size = 2.5 (expected an integer)")
    expect_error(function() data.resize_image("x", 3) end, "resize_image: image must be a tensor")
    expect_error(function() data.resize_image(fvl.ones(5), 3) end, "image must be H×W, C×H×W or N×C×H×W, got 5")
  end)
end)

describe("resizing where images are read", function()
  local dir
  local function png(path, h, w, v)
    write_file(path, data.encode_image(fvl.ones(3, h, w) * v, { format = "png" }))
  end

  it("images{folder, size} resizes images of other sizes; without size they must agree", function()
    dir = tmpdir()
    os.execute("mkdir -p '" .. dir .. "/a' '" .. dir .. "/b'")
    png(dir .. "/a/1.png", 20, 30, 100)
    png(dir .. "/a/2.png", 10, 10, 50)
    png(dir .. "/b/1.png", 16, 16, 200)
    expect_error(function() data.images{ folder = dir }:batch({ 1, 2 }) end,
                 "image is 10x10 pixels, expected 30x20 (all images of a data set must have the same size")
    local ds = data.images{ folder = dir, size = { 8, 12 } }
    local x = ds:batch({ 1, 2, 3 }, { mean = 0, std = 1 })
    expect_eq(table.concat(x:shape(), "x"), "3x3x8x12")
    expect_eq(x[2]:min():item(), 50)
    expect_eq(x[3]:max():item(), 200)
    local n = 0
    for b in ds:loader{ batch = 2, workers = 1, shuffle = false } do n = n + b.x:size(1) end
    expect_eq(n, 3, "loader")
  end)

  it("bin_pack:decode and fvl.eval.bin_pack resize a 112 pack for a smaller model", function()
    local bins = {}
    local imgs = {}
    for i = 1, 4 do
      imgs[i] = fvl.randn(3, 112, 112):mul(40):add(128):clamp(0, 255):add(0.5):floor()
      bins[i] = data.encode_image(imgs[i], { format = "png" })
    end
    local path = dir .. "/p.bin"
    assert(data.write_bin_pack(path, bins, { true, false }))
    local p = data.bin_pack(path)
    expect_error(function() p:decode(1, 2, { size = { 56, 56 }, resize = false }) end, "image is 112x112 pixels, expected 56x56")
    local x = p:decode(1, 4, { size = { 56, 56 }, mean = 0, std = 1 })
    for i = 1, 4 do   -- the 8-bit path rounds to whole pixel values
      expect_true(maxdiff(x[i], data.resize_image(imgs[i], 56)) <= 0.5 + 1e-3, "decode = resize_image " .. i)
    end
    local net = function(b) return b:reshape(b:size(1), b:numel() // b:size(1)):narrow(2, 1, 8) end
    local r = fvl.eval.bin_pack(net, p, { folds = 2, size = { 56, 56 } })
    expect_true(r.note and r.note:find("resizing its 112x112 images to 56x56", 1, true), "note")
    expect_error(function() fvl.eval.bin_pack(net, p, { folds = 2, size = { 56, 56 }, resize = false }) end,
                 "holds 112x112 images but the model takes 56x56")
    local r2 = fvl.eval.bin_pack(net, p, { folds = 2 })
    expect_eq(r2.note, nil, "no note at the pack's own size")
    rmdir(dir)
  end)
end)

describe("against numpy + scipy (tests/golden/align.json, tests/golden/make_align_golden.py)", function()
  local f = assert(io.open(TEST_DIR .. "/golden/align.json", "rb"))
  local g = fvl.json.decode(f:read("a"))
  f:close()
  local img = fvl.tensor(g.image)

  it("Umeyama's SVD estimate and scipy's bilinear map_coordinates give the same crop", function()
    expect_all_near(data.similarity_transform(g.landmarks, g.template56), g.matrix, 0, 1e-5, "matrix")
    expect_all_near(data.face_template(56, { origin = 0 }), g.template56, 0, 1e-4, "56 template")
    local crop, M = data.align_face(img, g.landmarks, { origin = 0, size = 56 })
    expect_all_near(M, g.matrix, 0, 1e-5, "align_face's matrix")
    expect_tensor_close(crop, fvl.tensor(g.crop), 1e-5, "crop", 1)
  end)

  it("scipy's zoom with aligned pixel grids: a shrink and an enlargement", function()
    expect_tensor_close(data.resize_image(img, { 23, 17 }), fvl.tensor(g.small), 1e-5, "shrink", 1)
    local part = img:narrow(2, 1, 20):narrow(3, 1, 16):contiguous()
    expect_tensor_close(data.resize_image(part, { 47, 33 }), fvl.tensor(g.big), 1e-5, "enlarge", 1)
  end)
end)
