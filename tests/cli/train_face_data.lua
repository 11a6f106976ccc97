-- Writes the data of tests/cli/train_face_data.sh: synthetic RGB faces (fvl.data.synthetic_faces
-- {image = "rgb"}) as an identity folder of PNGs (DIR/faces/id_KK/NN.png), as an insightface-layout
-- .rec written record by record with fvl.data.rec_writer (DIR/rec/train.rec + .idx + property,
-- the same PNG bytes), and the held-out identities as a .bin pack (DIR/val.bin,
-- fvl.data.write_pairs_pack); then reads all three back and checks they hold the same images.
-- usage: fvl tests/cli/train_face_data.lua DIR
local dir = assert(arg[1], "usage: train_face_data.lua DIR")
local data = fvl.data
local function check(cond, msg) if not cond then error(msg, 2) end end
local K, per, S = 8, 5, 32
local d = data.synthetic_faces{ image = "rgb", size = S, identities = K, per_identity = per, test_identities = 4,
                                test_per_identity = 4, seed = 3 }
local x, y = d.train.x, d.train.labels:totable()
local n = #y

-- 1. identity folder and .rec from the same PNG bytes
local pngs = {}
for i = 1, n do pngs[i] = data.encode_image(x:select(1, i):contiguous(), { format = "png" }) end
fvl.sys.mkdirs(dir .. "/rec")
for k = 1, K do fvl.sys.mkdirs(string.format("%s/faces/id_%02d", dir, k)) end
for i = 1, n do
  local f = assert(io.open(string.format("%s/faces/id_%02d/%02d.png", dir, y[i], i), "wb"))
  f:write(pngs[i])
  f:close()
end
local w = assert(data.rec_writer(dir .. "/rec/train.rec", { property = { K, S, S } }))
w:write{ key = 0, label = { n + 1, n + 1 + K } }                    -- header: identity records [n+1, n+1+K)
for i = 1, n do w:write{ key = i, label = y[i] - 1, image = pngs[i] } end   -- 0-based on disk
for k = 1, K do w:write{ key = n + k, label = { (k - 1) * per + 1, k * per + 1 } } end
assert(w:close())

-- 2. read back: same count, classes, labels and pixels (PNG is lossless)
local folder = assert(data.images{ folder = dir .. "/faces" })
local rec = assert(data.images{ rec = dir .. "/rec/train.rec" })
check(folder.n == n and rec.n == n, string.format("image counts %d, %d (expected %d)", folder.n, rec.n, n))
check(folder.classes == K and rec.classes == K, string.format("classes %d, %d (expected %d)", folder.classes, rec.classes, K))
check(rec.size[1] == 3 and rec.size[2] == S and rec.size[3] == S, "rec image size")
check(table.concat(folder.labels:totable(), ",") == table.concat(y, ","), "folder labels")
check(table.concat(rec.labels:totable(), ",") == table.concat(y, ","), "rec labels")
for _, i in ipairs({ 1, 17, n }) do
  local img = data.decode_image(pngs[i])
  check((folder:image(i) - img):abs():max():item() == 0, "folder image " .. i .. " differs from its PNG")
  check((rec:image(i) - img):abs():max():item() == 0, "rec image " .. i .. " differs from its PNG")
  local err = (img - x:select(1, i)):abs():max():item()
  check(err <= 0.5 + 1e-3, string.format("image %d: PNG pixels differ from the source by %g (> rounding)", i, err))
end

-- 3. the verification pack of the held-out identities
assert(data.write_pairs_pack(dir .. "/val.bin", d.test.x, d.test.labels, { pairs = 40, seed = 5 }))
local pack = assert(data.bin_pack(dir .. "/val.bin"))
check(pack.pairs == 40 and pack.images == 80 and pack.issame:sum():item() == 20, tostring(pack))
print(string.format("train_face_data: %d images of %d identities (%dx%d) as folder and .rec, %s", n, K, S, S, tostring(pack)))
