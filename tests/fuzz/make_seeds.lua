-- make_seeds.lua — writes the seed corpora of the libFuzzer targets with the project's own
-- writers (fvl.data.rec_writer, fvl.data.write_bin_pack, fvl.data.encode_image,
-- fvl.save_checkpoint), so the fuzzers
-- start from files this project really produces. The outputs are small and committed in
-- tests/fuzz/seeds/<target>/; re-run after a writer changes:
--
--   build/fvl tests/fuzz/make_seeds.lua [out dir (default tests/fuzz/seeds)]
--
-- A rec seed is one fuzz input holding both files: uint32 (little-endian) length of the .idx
-- text, the .idx text, then the .rec bytes; length 0xFFFFFFFF means "no index, scan the .rec"
-- (the layout fuzz_rec.c splits).
local out = arg and arg[1] or "tests/fuzz/seeds"
local D = fvl.data
fvl.manual_seed(1)

local function mkdir(p) assert(os.execute("mkdir -p '" .. p .. "'")) end
local util = require "fvl.util"
local function read(p) return assert(util.read_file(p)) end
local function write(p, s) assert(fvl.sys.write_atomic(p, s)) end
for _, t in ipairs { "rec", "bin", "image" } do mkdir(out .. "/" .. t) end
local tmp = os.tmpname()
os.remove(tmp)
mkdir(tmp)

-- small images: an 8×8 RGB face-ish gradient as JPEG and PNG, a 6×5 grey PNG
local rgb = (fvl.arange(1, 3 * 8 * 8):reshape(3, 8, 8) * 2.5):clamp(0, 255)
local grey = (fvl.arange(1, 30):reshape(1, 6, 5) * 8):clamp(0, 255)
local jpg = D.encode_image(rgb, { quality = 80 })
local png = D.encode_image(rgb, { format = "png" })
local gpng = D.encode_image(grey, { format = "png" })
local gjpg = D.encode_image(grey, { quality = 50 })
write(out .. "/image/rgb8.jpg", jpg)
write(out .. "/image/rgb8.png", png)
write(out .. "/image/grey6x5.png", gpng)
write(out .. "/image/grey6x5.jpg", gjpg)

-- RecordIO: an insightface layout (record 0 = header with the identity range, then images
-- with scalar and array labels), and a record whose payload holds the magic (split frames)
local function rec_seed(name, fill, with_idx)
  local p = tmp .. "/" .. name .. ".rec"
  local w = assert(D.rec_writer(p))
  fill(w)
  assert(w:close())
  local idx = with_idx and read(tmp .. "/" .. name .. ".idx") or nil
  local hdr = idx and string.pack("<I4", #idx) .. idx or string.pack("<I4", 0xFFFFFFFF)
  write(out .. "/rec/" .. name .. (with_idx and "_idx" or "_scan") .. ".seed", hdr .. read(p))
end
local function insightface(w)
  w:write { label = { 3, 5 }, key = 0 }            -- header: images are records 1..2
  w:write { image = jpg, label = 0 }
  w:write { image = png, label = { 1, 7, 9 } }
  w:write { image = gpng, label = 1 }               -- identity records start at 3
  w:write { label = { 1, 3 } }
  w:write { label = { 3, 4 } }
end
local function split(w)
  w:write { image = string.pack("<I4", 0xCED7230A) .. "abcd" .. string.pack("<I4", 0xCED7230A) .. "xy", label = 2 }
  w:write_raw("")
  w:write_raw("raw record")
  w:write { image = gjpg, label = 0, id = 7, id2 = 9 }
end
rec_seed("insightface", insightface, true)
rec_seed("insightface", insightface, false)
rec_seed("split", split, true)
rec_seed("split", split, false)

-- .bin verification packs: two pairs of encoded images
D.write_bin_pack(out .. "/bin/pack_small.bin", { jpg, png, gpng, jpg }, { true, false })
D.write_bin_pack(out .. "/bin/pack_empty.bin", {}, {})

-- a checkpoint: the directory fuzz_checkpoint loads (its header replaced by each input) and the
-- header as the seed; float32 and int32 blobs, nested extra tables
mkdir(out .. "/checkpoint")
local ckdir = out .. "/checkpoint_dir"
os.execute("rm -rf '" .. ckdir .. "'")
fvl.save_checkpoint(ckdir, { net = fvl.nn.Linear(2, 2), step = 3,
                             extra = { a = { 1, 2 }, t = fvl.ones(2), i = fvl.tensor({ 1, 2 }, "int32") } })
local header = read(ckdir .. "/checkpoint.json")
write(out .. "/checkpoint/header.json", header)
-- a blob cut short, and a header that names it
write(ckdir .. "/g000001/cut.npy", read(ckdir .. "/g000001/net.weight.npy"):sub(1, 100))
write(out .. "/checkpoint/header_cut.json", (header:gsub("g000001/net%.weight%.npy", "g000001/cut.npy")))

os.execute("rm -rf '" .. tmp .. "'")
print("seeds written under " .. out)
