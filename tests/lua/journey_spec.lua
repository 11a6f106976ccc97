-- The face researcher's journey: what broke or was missing on the way from an insightface .rec
-- and .bin packs to a trained, verified model (scripts/train_face.lua's library side).
local data = fvl.data

-- n identities × per images of size×size (pixels 0..255), labels 1..n
local function faces(n, per, size)
  local d = data.synthetic_faces{ image = "rgb", size = size, identities = n, per_identity = per,
                                  test_identities = 2, test_per_identity = 2, seed = 4 }
  return d.train.x, d.train.labels
end

describe("fvl.eval.bin_pack on a pack of more than 64 batches", function()
  it("embeds every image (a real lfw.bin is 188 batches of 64) and draws a progress bar", function()
    local d = tmpdir()
    local x, y = faces(6, 4, 16)
    assert(data.write_pairs_pack(d .. "/p.bin", x, y, { pairs = 40, seed = 2 }))
    local W = fvl.randn({ 3 * 16 * 16, 8 })
    local function net(b) return b:reshape(b:size(1), 3 * 16 * 16):matmul(W) end
    -- 80 images in batches of 1: 80 batches (fvl.cat takes at most 64 pieces)
    local one = fvl.eval.bin_pack(net, d .. "/p.bin", { batch = 1, size = { 16, 16 }, folds = 2 })
    local all = fvl.eval.bin_pack(net, d .. "/p.bin", { batch = 80, size = { 16, 16 }, folds = 2 })
    expect_eq(one.embeddings:size(1), 80)
    expect_tensor_close(one.embeddings, all.embeddings, 1e-5, "batch 1 against one batch")
    expect_eq(one.accuracy, all.accuracy)
    -- progress = true: a bar on stderr (plain lines off a terminal) ending with the image count
    local log = d .. "/err.txt"
    local saved = io.stderr
    local f = assert(io.open(log, "w"))
    io.stderr = f   -- fvl.progress writes to io.stderr by default
    local ok, err = pcall(fvl.eval.bin_pack, net, d .. "/p.bin", { batch = 16, size = { 16, 16 }, folds = 2,
                                                                   progress = true })
    io.stderr = saved
    f:close()
    assert(ok, err)
    local text = read_file(log)
    expect_true(text:find("p (verification)", 1, true) and text:find("80/80", 1, true), text)
    expect_error(function() fvl.eval.bin_pack(net, d .. "/p.bin", { progress = "yes", folds = 2 }) end, "progress")
    rmdir(d)
  end)
end)

describe("resuming an image loader mid-epoch", function()
  it("loader:reset(e, k) starts epoch e at batch k + 1 without decoding the first k, the same batches", function()
    local d = tmpdir()
    local x, y = faces(4, 6, 16)
    for i = 1, x:size(1) do
      local dir = string.format("%s/id%d", d, y:get(i))
      fvl.sys.mkdirs(dir)
      write_file(string.format("%s/%02d.png", dir, i), data.encode_image(x:select(1, i):contiguous()))
    end
    local ds = assert(data.images{ folder = d })
    for _, workers in ipairs({ 0, 2 }) do
      local straight = ds:loader{ batch = 5, flip = true, crop = 2, seed = 7, workers = workers, drop_last = true }
      straight:reset(2)
      local want = {}
      for b in straight do want[#want + 1] = b end
      expect_eq(#want, 4)
      local resumed = ds:loader{ batch = 5, flip = true, crop = 2, seed = 7, workers = workers, drop_last = true }
      resumed:reset(2, 2)
      for k = 3, 4 do
        local b = resumed:next()
        expect_eq(table.concat(b.index:totable(), ","), table.concat(want[k].index:totable(), ","), "batch " .. k)
        expect_eq((b.x - want[k].x):abs():max():item(), 0, "pixels of batch " .. k)
      end
      expect_true(resumed:next() == nil and resumed.epoch == 3, "the epoch ends after its 4 batches")
      resumed:reset(1, 4)   -- skip the whole epoch
      expect_true(resumed:next() == nil, "nothing left after skipping every batch")
      expect_error(function() resumed:reset(1, 5) end, "images:loader:reset: skip = 5 but epoch 1 has 4 batches")
      expect_error(function() resumed:reset(1, -1) end, "skip")
    end
    rmdir(d)
  end)
end)
