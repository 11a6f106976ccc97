-- face data: RecordIO, images, folders, the threaded loader, LFW pairs, .bin packs, .npy/.npz
local data = fvl.data
local G = TEST_DIR .. "/golden/faces/"

local write, read, exists = write_file, read_file, file_exists   -- tmpdir, rmdir: tests/lua/run.lua
local function maxdiff(a, b) return (a:float() - b:float()):abs():max():item() end

-- a deterministic 3×h×w image (0..255) whose content depends on k
local function pattern(k, h, w)
  h, w = h or 16, w or 16
  local t = fvl.zeros(3, h, w)
  for c = 1, 3 do
    for y = 1, h do
      for x = 1, w do t:set(c, y, x, (k * 37 + c * 60 + y * 9 + x * 5 + (x * y) % 7) % 256) end
    end
  end
  return t
end

-- a folder of identity folders: ids[i] images of identity i, JPEG and PNG mixed
local function make_folder(dir, ids, h, w)
  local k = 0
  for i, count in ipairs(ids) do
    local sub = string.format("%s/id_%02d", dir, i)
    assert(os.execute("mkdir -p '" .. sub .. "'"))
    for j = 1, count do
      k = k + 1
      local png = (j % 2 == 0)
      write(string.format("%s/%03d.%s", sub, j, png and "png" or "jpg"),
            data.encode_image(pattern(k, h, w), { format = png and "png" or "jpeg", quality = 95 }))
    end
  end
  write(dir .. "/id_01/notes.txt", "not an image")
  return k
end

describe("images", function()
  it("JPEG and PNG round trip; PNG exactly, JPEG closely; RGB with a bgr switch", function()
    local img = pattern(3)
    local png = data.encode_image(img, { format = "png" })
    expect_eq(png:sub(2, 4), "PNG")
    expect_eq(maxdiff(data.decode_image(png), img), 0)
    local smooth = fvl.zeros(3, 16, 16)
    for c = 1, 3 do for y = 1, 16 do for x = 1, 16 do smooth:set(c, y, x, c * 40 + y * 4 + x * 3) end end end
    local jpg = data.encode_image(smooth, { quality = 98 })
    expect_eq(jpg:byte(1), 0xFF)
    local d = data.decode_image(jpg)
    expect_true((d - smooth):abs():max():item() <= 4, "jpeg error")
    local bgr = data.decode_image(png, { bgr = true })
    expect_eq(maxdiff(bgr:narrow(1, 1, 1), img:narrow(1, 3, 1)), 0)
    expect_eq(maxdiff(bgr:narrow(1, 3, 1), img:narrow(1, 1, 1)), 0)
    expect_eq(data.decode_image(png, { gray = true }):size(1), 1)
  end)
  it("bad bytes are errors naming what was found", function()
    expect_error(function() data.decode_image("hello world") end, "not a JPEG or PNG image")
    expect_error(function() data.decode_image("") end, "<empty>")
    local jpg = data.encode_image(pattern(1))
    expect_error(function() data.decode_image(jpg:sub(1, #jpg // 2)) end, "JPEG")
    local png = data.encode_image(pattern(1), { format = "png" })
    expect_error(function() data.decode_image(png:sub(1, #png - 20)) end, "PNG")
    expect_error(function() data.decode_image(png, { colour = 1 }) end, "unknown option 'colour'")
    expect_error(function() data.encode_image(pattern(1), { quality = 101 }) end, "quality = 101")
  end)
end)

describe("RecordIO", function()
  it("writes atomically and reads back by .idx and by scanning; scalar and array labels", function()
    local d = tmpdir()
    local w = assert(data.rec_writer(d .. "/t.rec"))
    w:write{ label = { 5, 9 } }                                  -- key 0: a header-like record
    w:write{ image = "abc", label = 3, id = 7, id2 = 8 }         -- key 1
    w:write{ image = "defgh", label = { 2.5, 4, 6 } }            -- key 2
    w:write_raw("raw bytes", 10)
    expect_true(not exists(d .. "/t.rec") and not exists(d .. "/t.idx"), "nothing before close")
    assert(w:close())
    for _, r in ipairs({ assert(data.rec(d .. "/t.rec")), assert(data.rec(d .. "/t.rec", { idx = false })) }) do
      expect_eq(#r, 4)
      local h, img = r:record(2)
      expect_eq(h.flag, 0); expect_eq(h.label, 3); expect_eq(h.id, 7); expect_eq(h.id2, 8); expect_eq(img, "abc")
      h, img = r:record(3)
      expect_eq(h.flag, 3); expect_eq(h.label, 0); expect_eq(h.labels[1], 2.5); expect_eq(h.labels[3], 6)
      expect_eq(img, "defgh")
      expect_eq(r:read(4), "raw bytes")
    end
    local r = assert(data.rec(d .. "/t.rec"))
    expect_eq(r:key(4), 10)
    expect_eq(r:find(10), 4)
    expect_eq(r:find(11), nil)
    expect_eq(read(d .. "/t.idx"):match("^[^\n]*"), "0\t0")
    expect_error(function() r:read(5) end, "outside 1..4")
    rmdir(d)
  end)

  it("splits records holding the magic at 4-aligned offsets (cflag 1/2/3) and joins them", function()
    local d = tmpdir()
    local M = "\x0A\x23\xD7\xCE"
    local payloads = { M .. "abcd" .. M .. "xy", "ab" .. M .. "cd", "wxyz" .. M, M, "1234" .. M .. M .. "5678" }
    local w = assert(data.rec_writer(d .. "/s.rec"))
    for _, p in ipairs(payloads) do w:write_raw(p) end
    assert(w:close())
    local raw = read(d .. "/s.rec")
    -- frame flags of the first record: start (1), middle (2), end (3)
    local flags, pos = {}, 1
    while pos <= #raw do
      local magic, lrec = string.unpack("<I4I4", raw, pos)
      expect_eq(magic, 0xCED7230A)
      flags[#flags + 1] = lrec >> 29
      pos = pos + 8 + (((lrec & 0x1FFFFFFF) + 3) & ~3)
    end
    expect_eq(table.concat(flags, ","), "1,2,3,0,1,3,1,3,1,2,3")
    for _, r in ipairs({ assert(data.rec(d .. "/s.rec")), assert(data.rec(d .. "/s.rec", { idx = false })) }) do
      expect_eq(#r, #payloads)
      for i, p in ipairs(payloads) do expect_eq(r:read(i), p, "record " .. i) end
    end
    rmdir(d)
  end)

  it("a half-written .rec never appears; abort and the collector discard it", function()
    local d = tmpdir()
    local w = assert(data.rec_writer(d .. "/h.rec"))
    w:write{ image = "x", label = 1 }
    w:abort()
    expect_true(not exists(d .. "/h.rec"), "aborted")
    do
      local w2 = assert(data.rec_writer(d .. "/h.rec"))
      w2:write{ image = "x", label = 1 }
    end
    collectgarbage(); collectgarbage()
    local left = io.popen("ls -A '" .. d .. "'"):read("a")
    expect_eq(left, "")
    expect_error(function() w:write{ image = "y" } end, "closed")
    rmdir(d)
  end)

  it("damaged files are errors naming the file, record and byte", function()
    local d = tmpdir()
    local w = assert(data.rec_writer(d .. "/t.rec"))
    for i = 1, 3 do w:write{ image = string.rep("z", 10 * i), label = i } end
    assert(w:close())
    local raw = read(d .. "/t.rec")
    write(d .. "/cut.rec", raw:sub(1, #raw - 6))
    local r, err = data.rec(d .. "/cut.rec")
    expect_eq(r, nil)
    expect_true(err:find("cut.rec record 2", 1, true) and err:find("truncated", 1, true), err)
    -- with the (now wrong) index the damage shows when the record is read
    os.execute("cp '" .. d .. "/t.idx' '" .. d .. "/cut.idx'")
    r = assert(data.rec(d .. "/cut.rec"))
    expect_error(function() r:read(3) end, "truncated")
    write(d .. "/magic.rec", raw:sub(1, 44) .. "XXXX" .. raw:sub(49))
    r, err = data.rec(d .. "/magic.rec")
    expect_true(r == nil and err:find("bad magic", 1, true), tostring(err))
    write(d .. "/bad.idx", "0\t0\n1\tzz\n")
    r, err = data.rec(d .. "/t.rec", { idx = d .. "/bad.idx" })
    expect_true(r == nil and err:find("bad.idx line 2", 1, true), err)
    write(d .. "/far.idx", "0\t0\n1\t99999\n")
    r, err = data.rec(d .. "/t.rec", { idx = d .. "/far.idx" })
    expect_true(r == nil and err:find("outside the .rec file", 1, true), err)
    write(d .. "/dup.idx", "0\t0\n0\t0\n")
    r, err = data.rec(d .. "/t.rec", { idx = d .. "/dup.idx" })
    expect_true(r == nil and err:find("appears twice", 1, true), err)
    r, err = data.rec(d .. "/missing.rec")
    expect_true(r == nil and err:find("cannot open", 1, true), err)
    expect_error(function() data.unpack_record("short") end, "shorter than the 24-byte IRHeader")
    expect_error(function() data.unpack_record(string.pack("<I4fI8I8", 5, 0, 0, 0)) end, "announces 5 float labels")
    expect_error(function() data.rec(d .. "/t.rec", { index = 1 }) end, "unknown option 'index'")
    rmdir(d)
  end)
end)

describe("image folders and the insightface layout", function()
  it("folder: sorted identity directories → classes 1..C, JPEG and PNG, other files ignored", function()
    local d = tmpdir()
    local n = make_folder(d .. "/faces", { 3, 2, 4 })
    local ds = assert(data.images{ folder = d .. "/faces" })
    expect_eq(ds.n, n); expect_eq(ds.classes, 3)
    expect_eq(table.concat(ds.labels:totable(), ","), "1,1,1,2,2,3,3,3,3")
    expect_eq(ds.class_names[2], "id_02")
    expect_eq(ds.size[2], 16)
    expect_true(ds:file(2):find("id_01/002.png", 1, true), ds:file(2))
    expect_eq(maxdiff(ds:image(2), pattern(2)), 0)   -- PNG: exact
    local r, err = data.images{ folder = d .. "/none" }
    expect_true(r == nil and err:find("cannot open directory", 1, true), err)
    os.execute("mkdir -p '" .. d .. "/empty/a'")
    r, err = data.images{ folder = d .. "/empty" }
    expect_true(r == nil and err:find("no .jpg/.jpeg/.png images", 1, true), err)
    expect_error(function() data.images{ folder = d, rec = "x" } end, "exactly one of")
    rmdir(d)
  end)

  it("folder_to_rec writes the insightface layout that images{rec=} reads back", function()
    local d = tmpdir()
    make_folder(d .. "/faces", { 2, 3 })
    local info = (os.execute("mkdir -p '" .. d .. "/out'") and assert(data.folder_to_rec(d .. "/faces", d .. "/out/train.rec")))
    expect_eq(info.images, 5)
    expect_eq(read(d .. "/out/property"), "2,16,16")
    local r = assert(data.rec(d .. "/out/train.rec"))
    expect_eq(#r, 1 + 5 + 2)
    local h = r:record(1)
    expect_eq(h.flag, 2); expect_eq(h.labels[1], 6); expect_eq(h.labels[2], 8)
    h = r:record(7)                     -- identity 0: images [1, 3)
    expect_eq(h.labels[1], 1); expect_eq(h.labels[2], 3)
    local ds = assert(data.images{ rec = d .. "/out/train.rec" })
    local fo = assert(data.images{ folder = d .. "/faces" })
    expect_eq(ds.n, 5); expect_eq(ds.classes, 2)
    expect_eq(ds.header.first, 6)
    expect_eq(table.concat(ds.labels:totable(), ","), table.concat(fo.labels:totable(), ","))
    for i = 1, 5 do expect_eq(maxdiff(ds:image(i), fo:image(i)), 0) end
    -- a property file that disagrees with the labels, or is malformed
    write(d .. "/out/property", "1,16,16")
    local r2, err = data.images{ rec = d .. "/out/train.rec" }
    expect_true(r2 == nil and err:find("property file says 1 classes", 1, true), err)
    write(d .. "/out/property", "two,16,16")
    r2, err = data.images{ rec = d .. "/out/train.rec" }
    expect_true(r2 == nil and err:find("num_classes,h,w", 1, true), err)
    r2 = assert(data.images{ rec = d .. "/out/train.rec", property = false })
    expect_eq(r2.classes, 2)
    rmdir(d)
  end)

  it("an im2rec-style .rec without header record: every record is an image; array labels take [1]", function()
    local d = tmpdir()
    local w = assert(data.rec_writer(d .. "/p.rec"))
    w:write{ image = data.encode_image(pattern(1), { format = "png" }), label = 1 }
    w:write{ image = data.encode_image(pattern(2), { format = "png" }), label = { 0, 77 } }
    w:write{ image = data.encode_image(pattern(3), { format = "png" }), label = 2.5 }
    assert(w:close())
    local ds, err = data.images{ rec = d .. "/p.rec" }
    expect_true(ds == nil and err:find("p.rec record 2: label 2.5 is not a class id", 1, true), err)
    w = assert(data.rec_writer(d .. "/q.rec"))
    w:write{ image = data.encode_image(pattern(1), { format = "png" }), label = 1 }
    w:write{ image = data.encode_image(pattern(2), { format = "png" }), label = { 0, 77 } }
    assert(w:close())
    ds = assert(data.images{ rec = d .. "/q.rec" })
    expect_eq(table.concat(ds.labels:totable(), ","), "2,1")
    expect_eq(ds.classes, 2)
    rmdir(d)
  end)
end)

describe("images loader", function()
  local d = tmpdir()
  make_folder(d .. "/faces", { 4, 3, 5, 2 })
  local ds = assert(data.images{ folder = d .. "/faces" })
  os.execute("mkdir -p '" .. d .. "/rec'"); assert(data.folder_to_rec(d .. "/faces", d .. "/rec/train.rec"))
  local rs = assert(data.images{ rec = d .. "/rec/train.rec" })

  local function epoch(set, opts)
    local l = set:loader(opts)
    local xs, ys, ix = {}, {}, {}
    for b in l do
      xs[#xs + 1] = b.x; ys[#ys + 1] = table.concat(b.y:totable(), ","); ix[#ix + 1] = table.concat(b.index:totable(), ",")
    end
    return xs, ys, ix, l
  end

  it("gives the same batches for the same seed whatever the number of workers", function()
    local base = { batch = 4, seed = 5, flip = true, crop = 3 }
    local x0, y0, i0 = epoch(ds, { batch = 4, seed = 5, flip = true, crop = 3, workers = 0 })
    for _, wk in ipairs({ 1, 3 }) do
      local o = {}
      for k, v in pairs(base) do o[k] = v end
      o.workers, o.prefetch = wk, 2
      local x, y, i = epoch(ds, o)
      expect_eq(#x, 4)
      for b = 1, #x do
        expect_eq(maxdiff(x[b], x0[b]), 0, "workers " .. wk .. " batch " .. b)
        expect_eq(y[b], y0[b]); expect_eq(i[b], i0[b])
      end
    end
    -- the .rec holds the same images: same batches
    local xr, yr = epoch(rs, { batch = 4, seed = 5, flip = true, crop = 3, workers = 2 })
    for b = 1, #xr do expect_eq(maxdiff(xr[b], x0[b]), 0); expect_eq(yr[b], y0[b]) end
  end)

  it("normalises (x - 127.5)/127.5, shuffles per epoch, flips and crops as documented", function()
    local l = ds:loader{ batch = 14, shuffle = false, workers = 1 }
    local b = l:next()
    expect_eq(b.x:size(1), 14)
    local want = (ds:image(3) - 127.5) / 127.5
    expect_eq(maxdiff(b.x:select(1, 3), want), 0)
    expect_eq(l:next(), nil)
    expect_eq(l.epoch, 2)
    local _, _, i1 = epoch(ds, { batch = 14, seed = 1 })
    local _, _, i2 = epoch(ds, { batch = 14, seed = 1, epoch = 2 })
    expect_true(i1[1] ~= i2[1], "epochs differ")
    -- flip on every image? exactly the mirrored pixels where the draw said so
    local f = ds:loader{ batch = 14, shuffle = false, flip = true, workers = 2 }:next()
    local flips = 0
    for k = 1, 14 do
      local a = f.x:select(1, k)
      local plain = (ds:image(k) - 127.5) / 127.5
      if maxdiff(a, plain) > 0 then
        flips = flips + 1
        local m = fvl.zeros(3, 16, 16)
        for x = 1, 16 do m:narrow(3, x, 1):copy(plain:narrow(3, 17 - x, 1)) end
        expect_eq(maxdiff(a, m), 0, "mirror of image " .. k)
      end
    end
    expect_true(flips > 2 and flips < 12, "about half flipped: " .. flips)
    local c = ds:loader{ batch = 14, shuffle = false, crop = 15, workers = 1 }:next()
    expect_true(c.x:min():item() == -1, "zero (black) padding")
    expect_error(function() ds:loader{ crop = 16 } end, "crop = 16")
    expect_error(function() ds:loader{ on_bad = "ignore" } end, "on_bad")
    expect_error(function() ds:loader{ batchsize = 3 } end, "unknown option 'batchsize'")
    expect_eq(#ds:loader{ batch = 4 }, 4)
    expect_eq(#ds:loader{ batch = 4, drop_last = true }, 3)
  end)

  it("a bad image fails the batch naming file and record; on_bad = 'skip' drops and counts it", function()
    local bd = tmpdir()
    make_folder(bd .. "/f", { 3, 3 })
    local victim = bd .. "/f/id_02/002.png"
    write(victim, read(victim):sub(1, 60))
    local bs = assert(data.images{ folder = bd .. "/f" })
    local ok, err = pcall(epoch, bs, { batch = 2, shuffle = false, workers = 2 })
    expect_true(not ok and err:find("id_02/002.png", 1, true) and err:find("sample 5", 1, true), err)
    local x, _, ix, l = epoch(bs, { batch = 2, shuffle = false, workers = 2, on_bad = "skip", quiet = true })
    local rows = 0
    for _, t in ipairs(x) do rows = rows + t:size(1) end
    expect_eq(rows, 5)
    expect_eq(l.skipped, 1)
    expect_eq(ix[3], "6")
    -- in a .rec: the record is named
    write(bd .. "/f/id_02/002.png", "garbage!")
    os.execute("mkdir -p '" .. bd .. "/r'"); assert(data.folder_to_rec(bd .. "/f", bd .. "/r/t.rec"))
    local rset = assert(data.images{ rec = bd .. "/r/t.rec" })
    ok, err = pcall(epoch, rset, { batch = 3, shuffle = false, workers = 1 })
    expect_true(not ok and err:find("t.rec record 5", 1, true) and err:find("not a JPEG or PNG", 1, true), err)
    -- a wrong-size image
    write(bd .. "/f/id_02/002.png", data.encode_image(pattern(1, 8, 8), { format = "png" }))
    local ws = assert(data.images{ folder = bd .. "/f" })
    ok, err = pcall(epoch, ws, { batch = 3, shuffle = false, workers = 1 })
    expect_true(not ok and err:find("8x8 pixels, expected 16x16", 1, true), err)
    rmdir(bd)
  end)

  it("breaking out and resetting never hangs; the collector stops the workers", function()
    local l = ds:loader{ batch = 2, workers = 3, prefetch = 2 }
    for _ = 1, 3 do
      local b = l:next()
      expect_true(b ~= nil)
    end
    l:reset()
    local n = 0
    for _ in l do n = n + 1 end
    expect_eq(n, 7)
    local l2 = ds:loader{ batch = 1, workers = 2 }
    l2:next()
    l2 = nil
    collectgarbage(); collectgarbage()
  end)
  rmdir(d)
end)

describe("LFW pairs.txt", function()
  it("reads folds of same/different lines into image paths and issame", function()
    local d = tmpdir()
    for _, p in ipairs({ "Ann_A/Ann_A_0001", "Ann_A/Ann_A_0002", "Bob_B/Bob_B_0001", "Cid_C/Cid_C_0003", "Cid_C/Cid_C_0001" }) do
      os.execute("mkdir -p '" .. d .. "/lfw/" .. p:match("^[^/]+") .. "'")
      write(d .. "/lfw/" .. p .. ".jpg", data.encode_image(pattern(1)))
    end
    write(d .. "/pairs.txt", "2\t1\nAnn_A\t1\t2\nAnn_A\t1\tBob_B\t1\nCid_C 3 1\nBob_B 1 Cid_C 1\n")
    local p = assert(data.lfw_pairs(d .. "/pairs.txt", d .. "/lfw"))
    expect_eq(#p.files, 8)
    expect_eq(table.concat(p.issame:totable(), ","), "1,0,1,0")
    expect_true(p.files[4]:find("lfw/Bob_B/Bob_B_0001.jpg", 1, true), p.files[4])
    expect_true(p.files[5]:find("Cid_C_0003.jpg", 1, true), p.files[5])
    local ds = assert(data.images{ files = p.files })
    expect_eq(ds.n, 8)
    -- packed into a .bin for the verification protocol
    local bins = {}
    for i, f in ipairs(p.files) do bins[i] = read(f) end
    assert(data.write_bin_pack(d .. "/lfw.bin", bins, p.issame))
    local pack = assert(data.bin_pack(d .. "/lfw.bin"))
    expect_eq(pack.pairs, 4)
    expect_eq(table.concat(pack.issame:totable(), ","), "1,0,1,0")
    expect_eq(pack:bytes(5), bins[5])
    write(d .. "/bad1.txt", "ten 300\n")
    local r, err = data.lfw_pairs(d .. "/bad1.txt", d .. "/lfw")
    expect_true(r == nil and err:find("header", 1, true), err)
    write(d .. "/bad2.txt", "1 1\nAnn_A 1 Bob_B 1\nAnn_A 1 2\n")
    r, err = data.lfw_pairs(d .. "/bad2.txt", d .. "/lfw")
    expect_true(r == nil and err:find("line 2", 1, true), err)
    write(d .. "/bad3.txt", "1 1\nAnn_A 1 9\nAnn_A 1 Bob_B 1\n")
    r, err = data.lfw_pairs(d .. "/bad3.txt", d .. "/lfw")
    expect_true(r == nil and err:find("Ann_A_0009.jpg", 1, true) and err:find("does not exist", 1, true), err)
    write(d .. "/bad4.txt", "1 2\nAnn_A 1 2\n")
    r, err = data.lfw_pairs(d .. "/bad4.txt", d .. "/lfw")
    expect_true(r == nil and err:find("announces 4", 1, true), err)
    rmdir(d)
  end)
end)

describe(".bin verification packs (golden pickles from Python)", function()
  it("reads py2 byte-string, py3 bytes (protocols 2 and 5) and numpy-array packs alike", function()
    for _, name in ipairs({ "pack_py2", "pack_py3_p2", "pack_py3", "pack_numpy_p4", "pack_numpy_p5" }) do
      local p = assert(data.bin_pack(G .. name .. ".bin"))
      expect_eq(p.pairs, 2, name); expect_eq(p.images, 4, name)
      expect_eq(table.concat(p.issame:totable(), ","), "1,0", name)
      local x = p:decode(1, 4, { size = { 4, 6 }, mean = 0, std = 1 })
      -- image k (0-based), pixel (y, x): R = (40k + 30x) % 256, G = (60y + k) % 256, B = (10xy + 7k) % 256
      for k = 0, 3 do
        for y = 0, 3 do
          for xx = 0, 5 do
            expect_eq(x:get(k + 1, 1, y + 1, xx + 1), (40 * k + 30 * xx) % 256, name)
            expect_eq(x:get(k + 1, 2, y + 1, xx + 1), (60 * y + k) % 256, name)
            expect_eq(x:get(k + 1, 3, y + 1, xx + 1), (10 * xx * y + 7 * k) % 256, name)
          end
        end
      end
      if name == "pack_py2" then   -- the image range: one 1-based check, overflow-safe
        expect_error(function() p:decode(4, 2, { size = { 4, 6 } }) end, "bin_pack: images 4..5 are outside 1..4")
        expect_error(function() p:decode(2, math.maxinteger, { size = { 4, 6 } }) end,
                     "bin_pack: images from 2, count 9223372036854775807, are outside 1..4")
      end
      local f = p:decode(2, 1, { size = { 4, 6 }, mean = 0, std = 1, flip = true })
      expect_eq(f:get(1, 1, 1, 1), x:get(2, 1, 1, 6))
    end
  end)
  it("refuses anything else, naming what it found", function()
    local cases = { bad_pack_3tuple = "tuple of 3 items", bad_pack_odd = "3 images for 2 issame flags",
                    bad_pack_global = "os.system" }
    for name, msg in pairs(cases) do
      local p, err = data.bin_pack(G .. name .. ".bin")
      expect_true(p == nil and err:find(msg, 1, true), name .. ": " .. tostring(err))
    end
    local d = tmpdir()
    local raw = read(G .. "pack_py3.bin")
    write(d .. "/cut.bin", raw:sub(1, #raw - 40))
    local p, err = data.bin_pack(d .. "/cut.bin")
    expect_true(p == nil and err:find("truncated", 1, true), err)
    write(d .. "/trail.bin", raw .. "xx")
    p, err = data.bin_pack(d .. "/trail.bin")
    expect_true(p == nil and err:find("after the pickle's STOP", 1, true), err)
    write(d .. "/op.bin", "\x80\x02I42\n.")
    p, err = data.bin_pack(d .. "/op.bin")
    expect_true(p == nil and err:find("opcode 0x49", 1, true), err)
    write(d .. "/empty.bin", "")
    p, err = data.bin_pack(d .. "/empty.bin")
    expect_true(p == nil and err:find("truncated", 1, true), err)
    p = assert(data.bin_pack(G .. "pack_py2.bin"))
    expect_error(function() p:decode(1, 4) end, "6x4 pixels, expected 112x112")
    expect_error(function() p:decode(4, 2, { size = { 4, 6 } }) end, "outside 1..4")
    rmdir(d)
  end)
end)

describe(".npy of every default NumPy dtype and .npz (golden files from NumPy)", function()
  it("converts |u1 <i8 <f8 |b1 <f4 <i4 <i2 <u2 <f2 and Fortran order to int32 / float32", function()
    local k = { 0, 1, 2, 3, 4, 5 }
    local want = {
      u1 = { "int32", function(i) return i * 50 + 3 end },
      i8 = { "int32", function(i) return i * 1000003 - 2000000 end },
      f8 = { "float32", function(i) return i / 3 - 0.5 end },
      b1 = { "int32", function(i) return i % 2 == 0 and 1 or 0 end },
      f4 = { "float32", function(i) return i * 0.25 - 1 end },
      i4 = { "int32", function(i) return i * 7 - 20 end },
      i2 = { "int32", function(i) return i * 1000 - 3000 end },
      u2 = { "int32", function(i) return i * 10000 end },
      f2 = { "float32", function(i) return i * 0.5 - 1 end },
      f8_fortran = { "float32", function(i) return i / 3 - 0.5 end },
    }
    for name, w in pairs(want) do
      local t = assert(fvl.load(G .. name .. ".npy"))
      expect_eq(t:dtype(), w[1], name)
      expect_eq(table.concat(t:shape(), "x"), "2x3", name)
      local flat = t:reshape(-1)
      for _, i in ipairs(k) do expect_near(flat:get(i + 1), w[2](i), 1e-6, 1e-7, name .. "[" .. i .. "]") end
    end
    local t, err = fvl.load(G .. "i8_big.npy")
    expect_true(t == nil and err:find("element 3 = 3000000000 does not fit in int32", 1, true), err)
  end)
  it("reads np.savez and np.savez_compressed; fvl.save of a table writes an .npz NumPy reads", function()
    for _, name in ipairs({ "arrays", "arrays_z" }) do
      local t, names = assert(fvl.load(G .. name .. ".npz"))
      expect_eq(table.concat(names, ","), "a,b,c")
      expect_eq(t.a:get(2, 3), 0.25)
      expect_eq(t.b:dtype(), "int32")
      expect_eq(t.b:get(2), -2)
      expect_eq(t.c:get(1, 2), 255)
    end
    local d = tmpdir()
    local a, b = fvl.randn(3, 4), fvl.tensor({ 1, 2, 3 }, "int32")
    assert(fvl.save(d .. "/x.npz", { weights = a, labels = b }))
    local t, names = assert(fvl.load(d .. "/x.npz"))
    expect_eq(table.concat(names, ","), "labels,weights")
    expect_eq(maxdiff(t.weights, a), 0)
    expect_eq(maxdiff(t.labels, b), 0)
    -- damage: a flipped data byte fails the CRC; a cut archive is not a ZIP
    local raw = read(d .. "/x.npz")
    local at = raw:find("\x93NUMPY", 1, true) + 100
    write(d .. "/crc.npz", raw:sub(1, at - 1) .. string.char((raw:byte(at) + 1) % 256) .. raw:sub(at + 1))
    local r, e = fvl.load(d .. "/crc.npz")
    expect_true(r == nil and e:find("CRC", 1, true), e)
    write(d .. "/cut.npz", raw:sub(1, 200))
    r, e = fvl.load(d .. "/cut.npz")
    expect_true(r == nil and e:find("not a .npz", 1, true), e)
    local z = read(G .. "arrays_z.npz")
    write(d .. "/z.npz", z:sub(1, 60) .. string.rep("\0", 40) .. z:sub(101))
    r, e = fvl.load(d .. "/z.npz")
    expect_true(r == nil and (e:find("corrupt", 1, true) or e:find("CRC", 1, true)), e)
    expect_error(function() fvl.save(d .. "/y.npz", { w = 3 }) end, "expected a tensor")
    -- NumPy itself reads what fvl.save wrote (when Debian's numpy is installed)
    if os.execute("/usr/bin/python3 -c 'import numpy' 2>/dev/null") then
      local out = io.popen("/usr/bin/python3 " .. G .. "make.py --check " .. d .. "/x.npz"):read("a")
      expect_true(out:find("labels <i4 (3,) [1, 2, 3]", 1, true), out)
    end
    rmdir(d)
  end)
end)

describe("bad arguments", function()
  it("writer, images, packs, models and evaluation name the function, argument and value", function()
    local d = tmpdir()
    local w = assert(data.rec_writer(d .. "/w.rec"))
    expect_error(function() w:write{ image = 5 } end, "image must be encoded bytes or a tensor, got number")
    expect_error(function() w:write{ label = "x" } end, "label must be a number or a list of numbers, got string")
    expect_error(function() w:write{ label = { 1, "b" } } end, "label[2] must be a number")
    expect_error(function() w:write{ key = -1 } end, "key")
    expect_error(function() w:write{ lable = 1 } end, "unknown option 'lable'")
    expect_error(function() data.rec_writer(d .. "/x.rec", { property = { 10, 112 } }) end, "property must be {num_classes, h, w}")
    local r, err = data.rec_writer("/nonexistent-dir/x.rec")
    expect_true(r == nil and err:find("cannot create", 1, true), err)
    w:abort()
    make_folder(d .. "/f", { 2, 2 })
    expect_error(function() data.images{ folder = d .. "/f", channels = 2 } end, "channels = 2")
    expect_error(function() data.images{ folder = d .. "/f", size = { 16 } } end, "size must be {h, w}")
    expect_error(function() data.images{ folder = 5 } end, "folder must be a path")
    expect_error(function() data.images{ files = { "a.jpg", "b.jpg" }, labels = { 1, 0 } } end, "labels[2] = 0")
    local ds = assert(data.images{ folder = d .. "/f" })
    expect_error(function() ds:batch({ 1, 9 }) end, "indices[2] = 9 is outside 1..4")
    expect_error(function() ds:image(0) end, "sample 0 is outside 1..4")
    -- fvl.data.loader hands an image data set to its own loader
    local l = data.loader(ds, { batch = 3, workers = 1 })
    expect_eq(#l, 2)
    expect_eq(l:next().x:size(1), 3)
    expect_error(function() data.write_bin_pack(d .. "/p.bin", { "a", "b", "c" }, { true }) end, "3 images for 1 issame flags")
    expect_error(function() data.write_bin_pack(d .. "/p.bin", { "a", "b" }, { "yes" }) end, "issame[1] = yes")
    -- models
    local net = fvl.nn.Sequential{ fvl.nn.Flatten(), fvl.nn.Linear(3 * 16 * 16, 4) }
    net.hook = function() end
    expect_error(function() fvl.nn.save(d .. "/m.npz", net) end, "field hook is a function")
    net.hook = nil
    expect_error(function() fvl.nn.save(d .. "/m.npz", {}) end, "model must be an fvl.nn module")
    local Custom = fvl.nn.class("FacesSpecCustom")
    function Custom:forward(x) return self.inner:forward(x) * self.scale end
    local c = fvl.nn.Module.new(Custom)
    c.scale = 2
    c:add_module("inner", net)
    c:register_buffer("centre", fvl.ones(4))
    c.inner["2"].bias:requires_grad(false)
    assert(fvl.nn.save(d .. "/c.npz", c))
    local c2 = assert(fvl.nn.load(d .. "/c.npz"))
    local x = ds:batch({ 1, 2 })
    expect_eq(maxdiff(c2:forward(x), c:forward(x)), 0)
    expect_eq(c2.scale, 2)
    expect_eq(c2.inner["2"].bias.needs_grad, false)
    expect_eq(c2.inner["2"].weight.needs_grad, true)
    fvl.nn._classes.FacesSpecCustom = nil
    local m2, e2 = fvl.nn.load(d .. "/c.npz")
    expect_true(m2 == nil and e2:find("class 'FacesSpecCustom'", 1, true), e2)
    fvl.nn._classes.FacesSpecCustom = Custom
    assert(fvl.save(d .. "/plain.npz", { a = fvl.ones(2) }))
    local m3, e3 = fvl.nn.load(d .. "/plain.npz")
    expect_true(m3 == nil and e3:find("without '__model__'", 1, true), e3)
    -- a face backbone round-trips exactly
    if fvl.nn.mobilefacenet then
      local mf = fvl.nn.mobilefacenet{ dim = 16 }
      mf:evaluate()
      assert(fvl.nn.save(d .. "/mf.npz", mf))
      local mf2 = assert(fvl.nn.load(d .. "/mf.npz"))
      mf2:evaluate()
      local xi = fvl.randn(1, 3, 112, 112)
      expect_eq(maxdiff(mf2:forward(xi), mf:forward(xi)), 0)
    end
    -- evaluation
    expect_error(function() fvl.eval.bin_pack(net, G .. "pack_py2.bin", { size = { 4, 6 } }) end, "fewer than folds = 10")
    expect_error(function() fvl.eval.bin_pack(function(x) return x end, G .. "pack_py2.bin", { size = { 4, 6 }, folds = 2 }) end,
                 "must return B×D embeddings")
    expect_error(function() fvl.eval.bin_pack(net, G .. "nope.bin", { folds = 2 }) end, "cannot open")
    expect_error(function() fvl.eval.bin_pack(net, G .. "pack_py2.bin", { flips = true }) end, "unknown option 'flips'")
    rmdir(d)
  end)
end)
