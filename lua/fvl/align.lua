-- fvl.align — face alignment and image resizing (engine/data/warp.c), installed into fvl.data
-- (docs/data.md, "Face alignment and resizing"):
--
--   local face, M = fvl.data.align_face(img, landmarks, {size = 112})   -- 3×112×112, 2×3
--   fvl.data.resize_image(img, {96, 96})                                -- bilinear
--   fvl.data.warp_image(img, M, {size = {112, 112}})
--   fvl.data.similarity_transform(src_points, dst_points) -> 2×3
--   fvl.data.face_template(112) -> 5×2 (insightface's ArcFace landmarks)
--
-- Coordinates: x is the column, y the row, measured at pixel centres. By default (origin = 1, the
-- Lua/Torch convention) the centre of the top-left pixel is (1, 1), so img[{c, y, x}] is the pixel
-- at (x, y). Landmark files written by OpenCV-based tools (insightface, RetinaFace, the IJB
-- *_name_5pts_score.txt files) use 0-based coordinates, top-left pixel centre (0, 0): pass
-- origin = 0 for those. Matrices map points of the input image to points of the output image
-- (what cv2.warpAffine takes), in the same convention as the landmarks.
local fvl = require "fvl.core"
local util = require "fvl.util"

local M = {}
local fail = util.fail

-- an output size: a number n (n×n) or {h, w}
local function size_arg(fn, v)
  if type(v) == "number" then
    local n = util.integer(fn, "size", v, nil, 1)
    return n, n
  end
  if type(v) ~= "table" or #v ~= 2 then
    fail(string.format("%s: size must be a number n (n×n) or {h, w}, got %s", fn,
                       type(v) == "table" and ("a list of " .. #v) or type(v)))
  end
  return util.integer(fn, "size[1]", v[1], nil, 1), util.integer(fn, "size[2]", v[2], nil, 1)
end

local function origin_arg(fn, v)
  local o = util.integer(fn, "origin", v, 1, 0)
  if o > 1 then fail(string.format("%s: origin = %d (expected 0 or 1: the coordinate of the top-left pixel's centre)", fn, o)) end
  return o
end

-- points as an n×2 float32 tensor: an n×2 tensor, a flat list {x1, y1, ..., xn, yn} or a list
-- of pairs {{x1, y1}, ...}
local function points(fn, key, v)
  if util.is_tensor(v) then
    if v:dim() == 1 and v:numel() % 2 == 0 then v = v:reshape(v:numel() // 2, 2) end
    if v:dim() ~= 2 or v:size(2) ~= 2 then
      fail(string.format("%s: %s must be n×2 (one row x, y per point), got %s", fn, key, util.shape_str(v)))
    end
    return v:float()
  end
  if type(v) ~= "table" then
    fail(string.format("%s: %s must be an n×2 tensor or a list of coordinates, got %s", fn, key, type(v)))
  end
  local rows = {}
  if type(v[1]) == "table" then
    for i = 1, #v do
      local p = v[i]
      if type(p) ~= "table" or #p ~= 2 or type(p[1]) ~= "number" or type(p[2]) ~= "number" then
        fail(string.format("%s: %s[%d] must be a pair {x, y} of numbers", fn, key, i))
      end
      rows[i] = { p[1], p[2] }
    end
  else
    if #v % 2 ~= 0 then
      fail(string.format("%s: %s has %d numbers (expected x, y pairs: an even count)", fn, key, #v))
    end
    for i = 1, #v do
      if type(v[i]) ~= "number" then
        fail(string.format("%s: %s[%d] must be a number, got %s", fn, key, i, type(v[i])))
      end
    end
    for i = 1, #v // 2 do rows[i] = { v[2 * i - 1], v[2 * i] } end
  end
  if #rows == 0 then fail(string.format("%s: %s holds no points", fn, key)) end
  return fvl.tensor(rows)
end

-- a 2×3 matrix (tensor or {{a, b, c}, {d, e, f}} or 6 numbers) → 6 numbers
local function matrix6(fn, v)
  local t
  if util.is_tensor(v) then
    if v:numel() ~= 6 or (v:dim() == 2 and v:size(1) ~= 2) then
      fail(string.format("%s: matrix must be 2×3, got %s", fn, util.shape_str(v)))
    end
    t = v:float():reshape(6):totable()
  elseif type(v) == "table" then
    t = {}
    if type(v[1]) == "table" then
      if #v ~= 2 or #v[1] ~= 3 or type(v[2]) ~= "table" or #v[2] ~= 3 then fail(fn .. ": matrix must be 2×3 {{a, b, c}, {d, e, f}}") end
      t = { v[1][1], v[1][2], v[1][3], v[2][1], v[2][2], v[2][3] }
    else
      if #v ~= 6 then fail(string.format("%s: matrix must be 2×3 (6 numbers), got %d", fn, #v)) end
      for i = 1, 6 do t[i] = v[i] end
    end
  else
    fail(string.format("%s: matrix must be a 2×3 tensor or table, got %s", fn, type(v)))
  end
  return t
end

-- the matrix between 0-based coordinates from one between origin-based ones:
-- x0 = x1 − 1, so t0 = t1 + A·(1, 1) − 1
local function to0(m, origin)
  if origin == 0 then return m end
  return { m[1], m[2], m[3] + m[1] + m[2] - 1, m[4], m[5], m[6] + m[4] + m[5] - 1 }
end
local function as_tensor(m) return fvl.tensor({ { m[1], m[2], m[3] }, { m[4], m[5], m[6] } }) end

--- fvl.data.face_template([size [, opts]]) -> 5×2 tensor: insightface's ArcFace landmarks (left eye,
--- right eye, nose tip, left and right mouth corner; rows x, y) for a size×size crop (112). The
--- 112 template is used as is and scaled by size/112 for multiples of 112; a multiple of 128 is
--- size/128 times the template shifted 8 pixels right (insightface's rule for 128-pixel crops);
--- any other size scales by size/112. opts: origin (1; 0 gives OpenCV's coordinates, as
--- insightface writes the template).
function M.face_template(size, opts)
  local fn = "face_template"
  opts = util.check_opts(fn, opts, { "origin" })
  local origin = origin_arg(fn, opts.origin)
  local t = fvl._face_template(util.integer(fn, "size", size, 112, 1), fn)
  local rows = {}
  for k = 1, 5 do rows[k] = { t[2 * k - 1] + origin, t[2 * k] + origin } end
  return fvl.tensor(rows)
end

--- fvl.data.similarity_transform(src, dst) -> 2×3 tensor: the rotation + uniform scale +
--- translation that takes the points src onto dst with the least squared error (Umeyama's
--- estimate; never a reflection). src, dst: n×2 tensors (rows x, y), flat lists {x1, y1, ...} or
--- lists of pairs, n >= 2, in one coordinate convention (the matrix is then in it too).
--- Errors: counts that differ, non-finite values, source points that all coincide.
function M.similarity_transform(src, dst)
  local fn = "similarity_transform"
  local m = fvl._similarity(points(fn, "src", src), points(fn, "dst", dst), fn, "src", "dst")
  return as_tensor(m)
end

--- fvl.data.warp_image(img, matrix [, opts]) -> tensor: img (H×W, C×H×W or N×C×H×W float32)
--- resampled bilinearly through the affine map matrix (2×3: input coordinates → output
--- coordinates, as cv2.warpAffine). opts: size (n or {h, w}; default the input's), origin (1; 0 when
--- the matrix is in OpenCV's 0-based coordinates), border ("constant": pixels beyond the edge read
--- value; "replicate": the nearest edge pixel), value (0). Errors: a singular or non-finite matrix.
function M.warp_image(img, matrix, opts)
  local fn = "warp_image"
  opts = util.check_opts(fn, opts, { "size", "origin", "border", "value" })
  if not util.is_tensor(img) then fail(string.format("%s: image must be a tensor (C×H×W), got %s", fn, type(img))) end
  local h, w
  if opts.size ~= nil then h, w = size_arg(fn, opts.size)
  elseif img:dim() >= 2 then h, w = img:size(img:dim() - 1), img:size(img:dim()) end
  local border = util.enum(fn, "border", opts.border, { "constant", "replicate" }, "constant")
  local m = to0(matrix6(fn, matrix), origin_arg(fn, opts.origin))
  return fvl._warp(img, m, h, w, border, util.number(fn, "value", opts.value, 0), fn)
end

--- fvl.data.resize_image(img, size) -> tensor: img (H×W, C×H×W or N×C×H×W float32) resized to
--- size (n or {h, w}) bilinearly with pixel centres aligned and edge pixels replicated (the
--- numbers of cv2.resize's INTER_LINEAR and of PyTorch's interpolate(mode = "bilinear",
--- align_corners = false) without antialiasing). A constant image stays exactly constant.
function M.resize_image(img, size)
  local fn = "resize_image"
  if not util.is_tensor(img) then fail(string.format("%s: image must be a tensor (C×H×W), got %s", fn, type(img))) end
  local h, w = size_arg(fn, size)
  return fvl._resize(img, h, w, fn)
end

--- fvl.data.align_face(img, landmarks [, opts]) -> aligned, matrix: the face of img (C×H×W, pixel
--- values as given) warped so that its 5 landmarks (left eye, right eye, nose tip, left and right
--- mouth corner, as detectors give them: a 5×2 tensor, a list of 10 numbers or of 5 pairs) land
--- on the ArcFace template in the least-squares sense (a similarity, as insightface's norm_crop),
--- bilinear, black beyond the image edge. matrix (2×3) maps img's coordinates to the crop's.
--- opts: size (112: a size×size crop with fvl.data.face_template(size)), origin (1: landmarks
--- with the top-left pixel's centre at (1, 1); 0 for OpenCV/insightface files), template (an n×2
--- tensor of output positions for n landmarks, in the same origin, instead of the ArcFace one;
--- then size may be {h, w}), value (0: the border). Errors: landmarks that are not n×2, all at one
--- point, or not finite.
function M.align_face(img, landmarks, opts)
  local fn = "align_face"
  opts = util.check_opts(fn, opts, { "size", "origin", "template", "value" })
  if not util.is_tensor(img) or img:dim() < 2 or img:dim() > 3 then
    fail(string.format("%s: image must be a C×H×W (or H×W) tensor, got %s", fn,
                       util.is_tensor(img) and util.shape_str(img) or type(img)))
  end
  local origin = origin_arg(fn, opts.origin)
  local lm = points(fn, "landmarks", landmarks)
  local h, w, tpl
  if opts.template ~= nil then
    tpl = points(fn, "template", opts.template)
    if opts.size == nil then fail(fn .. ": a template needs size (n or {h, w}) for the crop") end
    h, w = size_arg(fn, opts.size)
  else
    h, w = size_arg(fn, opts.size == nil and 112 or opts.size)
    if h ~= w then fail(string.format("%s: size = {%d, %d}: the ArcFace template is square (give template = for another shape)", fn, h, w)) end
    tpl = M.face_template(h, { origin = origin })
  end
  if lm:size(1) ~= tpl:size(1) then
    fail(string.format("%s: %d landmarks for a template of %d points", fn, lm:size(1), tpl:size(1)))
  end
  local m = fvl._similarity(lm, tpl, fn, "landmarks", "template")
  local out = fvl._warp(img, to0(m, origin), h, w, "constant", util.number(fn, "value", opts.value, 0), fn)
  return out, as_tensor(m)
end

-- a growing int32/float32 column, turned into tensors every 2^20 values (a 15-million-line
-- file never sits in one Lua table); c.push(v), c.tensor()
function M._column(dtype)
  local c = { parts = {}, buf = {}, n = 0 }
  function c.push(v)
    local b = c.buf
    b[#b + 1] = v
    c.n = c.n + 1
    if #b == 1048576 then c.parts[#c.parts + 1] = fvl.tensor(b, dtype); c.buf = {} end
  end
  function c.tensor()
    if #c.buf > 0 then c.parts[#c.parts + 1] = fvl.tensor(c.buf, dtype); c.buf = {} end
    if #c.parts == 0 then return fvl.zeros({ 0 }, dtype) end
    return #c.parts == 1 and c.parts[1] or fvl.cat(c.parts)
  end
  return c
end

-- calls fn(line, line_number) for every non-blank line of path; a file that cannot be opened is
-- an error "what: cannot open path (reason)"
function M._each_line(path, fn, what)
  local f, err = io.open(path, "rb")
  if not f then fail((what or "ijb") .. ": cannot open " .. path .. " (" .. tostring(err) .. ")") end
  local n = 0
  for line in f:lines() do
    n = n + 1
    if line:find("%S") then fn(line, n) end
  end
  f:close()
end

--- fvl.data.read_landmarks(path [, opts]) -> r | nil, message: a five-point landmark file as face
--- detectors and insightface's tools write it, one face a line: "image x1 y1 x2 y2 ... x5 y5
--- [score]" (left eye, right eye, nose tip, left and right mouth corner; coordinates as written:
--- OpenCV's are 0-based, pass origin = 0 to align_face). Blank lines are skipped. Returns
--- r.names (image paths as written), r.landmarks (N×10 float32), r.scores (N, or nil without the
--- column), r.lines (each face's line number). opts: score (nil: optional but the same on every
--- line; true: required; false: refused). A malformed line or value is nil, message naming the
--- file and line.
function M.read_landmarks(path, opts)
  local fn = "read_landmarks"
  if type(path) ~= "string" then fail(fn .. ": path must be a file name, got " .. type(path)) end
  opts = util.check_opts(fn, opts, { "score" })
  if opts.score ~= nil then util.boolean(fn, "score", opts.score) end
  local want = opts.score == true and 12 or opts.score == false and 11 or nil
  local names, lines, lm, sc = {}, {}, M._column("float32"), M._column("float32")
  local ok, err = pcall(M._each_line, path, function(line, n)
    local f = {}
    for w in line:gmatch("%S+") do f[#f + 1] = w end
    if #f ~= (want or 12) and #f ~= (want or 11) then
      fail(string.format("%s: %s line %d has %d fields, expected %s: 'image x1 y1 ... x5 y5%s'", fn, path, n, #f,
                         want or "11 or 12", want == 12 and " score" or want == 11 and "" or " [score]"))
    end
    want = #f
    names[#names + 1], lines[#lines + 1] = f[1], n
    for k = 2, #f do
      local v = tonumber(f[k])
      if not v or v ~= v or v == math.huge or v == -math.huge then
        fail(string.format("%s: %s line %d: field %d = '%s' is not a finite number", fn, path, n, k, f[k]))
      end
      if k < 12 then lm.push(v) else sc.push(v) end
    end
  end, fn)
  if not ok then return nil, err end
  local N = #names
  return { names = names, lines = lines, landmarks = lm.tensor():reshape(N, 10),
           scores = want == 12 and sc.tensor() or nil }
end


function M.install(data)
  for _, k in ipairs({ "face_template", "similarity_transform", "warp_image", "resize_image", "align_face",
                       "read_landmarks" }) do
    data[k] = M[k]
  end
  return data
end

return M
