-- scripts/align_faces.lua — align the faces of a landmark file onto insightface's ArcFace template.
--
--   fvl scripts/align_faces.lua LANDMARKS SRC_DIR OUT_DIR [--size 112] [--origin 0]
--                               [--format png|jpeg] [--quality 95]
--
-- LANDMARKS has one face a line, "image x1 y1 ... x5 y5 [score]" (left eye, right eye, nose tip,
-- left and right mouth corner), as detectors and insightface's tools write it (an IJB
-- *_name_5pts_score.txt file is one); image is a path under SRC_DIR. Coordinates are OpenCV's
-- 0-based pixel centres unless --origin 1. Each face is warped (fvl.data.align_face: a
-- least-squares similarity, bilinear, black beyond the edge) into a size×size crop written to
-- OUT_DIR under the same relative path (sub-directories kept, so identity folders stay identity
-- folders for fvl.data.images{folder =}), with the extension of --format. Files are written
-- atomically; a progress bar with ETA runs on stderr. A bad argument, line or image: one line on
-- stderr naming it, exit status 1.
fvl = fvl or require "fvl"   -- also from a stock lua5.4 (LUA_CPATH reaching fvl.so)
local cli = require "fvl.cli"
local parser = cli.parser("fvl scripts/align_faces.lua",
                          "align the faces of a landmark file onto insightface's ArcFace template.")
parser:argument("landmarks", "landmark file: 'image x1 y1 ... x5 y5 [score]' per line")
parser:argument("src", "directory the image paths are relative to")
parser:argument("out", "directory for the aligned crops (made when missing)")
parser:option("--size", "crop size (pixels; 112 is insightface's)", "112"):convert(cli.integer("size", 16, 4096))
parser:option("--origin", "coordinate of the top-left pixel's centre in the file", "0"):convert(cli.integer("origin", 0, 1))
parser:option("--format", "image format of the crops", "png"):choices({ "png", "jpeg" })
parser:option("--quality", "JPEG quality", "95"):convert(cli.integer("quality", 1, 100))
local a = parser:parse(arg or {})
local function die(msg) io.stderr:write("align_faces.lua: " .. tostring(msg) .. "\n") os.exit(1) end

local r, err = fvl.data.read_landmarks(a.landmarks)
if not r then die(err) end
local ext = a.format == "png" and ".png" or ".jpg"
local bar = fvl.progress.new { total = #r.names, title = "align_faces", unit = "img" }
local made = {}
for i, name in ipairs(r.names) do
  if name:match("^/") or name:match("%.%.") then
    die(string.format("%s line %d: image path '%s' must stay inside %s", a.landmarks, r.lines[i], name, a.src))
  end
  local path = a.src .. "/" .. name
  local f = io.open(path, "rb")
  if not f then die(string.format("%s line %d: image %s cannot be read", a.landmarks, r.lines[i], path)) end
  local bytes = f:read("a")
  f:close()
  local ok, face = pcall(function()
    local img = fvl.data.decode_image(bytes)
    return (fvl.data.align_face(img, r.landmarks[i], { size = a.size, origin = a.origin }))
  end)
  if not ok then die(string.format("%s line %d: %s: %s", a.landmarks, r.lines[i], path, face)) end
  local dst = a.out .. "/" .. name:gsub("%.[%w]+$", "") .. ext
  local dir = dst:match("^(.*)/[^/]*$")
  if not made[dir] then fvl.sys.mkdirs(dir); made[dir] = true end
  local okw, werr = fvl.sys.write_atomic(dst, fvl.data.encode_image(face, { format = a.format, quality = a.quality }))
  if not okw then die(werr) end
  bar:update(1)
end
bar:close()
print(string.format("%d faces aligned to %dx%d in %s", #r.names, a.size, a.size, a.out))
