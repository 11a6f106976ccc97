-- fvl.data: Fashion-MNIST, .npy, synthetic_faces, loader
local data = fvl.data

local write = write_file   -- tmpdir, rmdir: tests/lua/run.lua
local function maxdiff(a, b) return (a:float() - b:float()):abs():max():item() end
local function list(t) return t:totable() end

local FM = data.FASHION_MNIST_DIR
local have_fm = io.open(FM .. "/t10k-labels-idx1-ubyte.gz", "rb")
if have_fm then have_fm:close() end

describe("fashion_mnist", function()
  if not have_fm then
    it("is skipped: dataset-fashion-mnist is not installed", function() end)
    return
  end
  it("loads the test split: shapes, dtypes, ranges, 1-based labels", function()
    local te = assert(data.fashion_mnist{ split = "test" })
    expect_eq(table.concat(te.images:shape(), "x"), "10000x1x28x28")
    expect_eq(te.images:dtype(), "float32")
    expect_eq(te.labels:dtype(), "int32")
    expect_eq(te.labels:numel(), 10000)
    expect_eq(te.labels:min():item(), 1)
    expect_eq(te.labels:max():item(), 10)
    expect_eq(te.images:min():item(), 0)
    expect_eq(te.images:max():item(), 1)
    expect_near(te.images:mean():item(), 0.286, 0, 0.01, "pixel mean")
    -- the first test image is an ankle boot (0-based class 9 on disk)
    expect_eq(te.labels:get(1), 10)
    expect_eq(te.classes[10], "Ankle boot")
    expect_eq(te.classes[1], "T-shirt/top")
    expect_eq(#te.classes, 10)
    local counts = {}
    for _, y in ipairs(list(te.labels)) do counts[y] = (counts[y] or 0) + 1 end
    for c = 1, 10 do expect_eq(counts[c], 1000, "class " .. c) end
    expect_true(te.x == te.images, "x is an alias of images")
  end)
  it("loads the train split (limit= keeps the first rows)", function()
    local tr = assert(data.fashion_mnist{ split = "train" })
    expect_eq(table.concat(tr.images:shape(), "x"), "60000x1x28x28")
    expect_eq(tr.labels:numel(), 60000)
    local few = assert(data.fashion_mnist{ split = "train", limit = 100 })
    expect_eq(few.images:size(1), 100)
    expect_eq(maxdiff(few.images, tr.images:narrow(1, 1, 100)), 0)
    expect_eq(maxdiff(few.labels, tr.labels:narrow(1, 1, 100)), 0)
  end)
end)

describe("fashion_mnist errors", function()
  it("missing files give nil and a message naming the apt package", function()
    local d = tmpdir()
    local ds, msg = data.fashion_mnist{ path = d }
    expect_eq(ds, nil)
    expect_true(msg:find("dataset-fashion-mnist", 1, true), msg)
    expect_true(msg:find("train-images-idx3-ubyte.gz", 1, true), msg)
    rmdir(d)
  end)
  it("a foreign or truncated file gives nil and a message", function()
    local d = tmpdir()
    write(d .. "/t10k-images-idx3-ubyte.gz", "\137PNG\r\n\26\n0000000000000000")
    write(d .. "/t10k-labels-idx1-ubyte.gz", "\0\0\8\1\0\0\0\5\1\2")
    local ds, msg = data.fashion_mnist{ split = "test", path = d }
    expect_eq(ds, nil)
    expect_true(msg:find("is not an IDX file", 1, true), msg)
    -- a valid 2×28×28 image file but labels cut short
    write(d .. "/t10k-images-idx3-ubyte.gz", "\0\0\8\3\0\0\0\2\0\0\0\28\0\0\0\28" .. string.rep("\0", 2 * 784))
    ds, msg = data.fashion_mnist{ split = "test", path = d }
    expect_eq(ds, nil)
    expect_true(msg:find("truncated", 1, true), msg)
    -- images and labels disagree on the count
    write(d .. "/t10k-labels-idx1-ubyte.gz", "\0\0\8\1\0\0\0\3\1\2\3")
    ds, msg = data.fashion_mnist{ split = "test", path = d }
    expect_eq(ds, nil)
    expect_true(msg:find("3 labels for 2 images", 1, true), msg)
    -- labels outside 0..9
    write(d .. "/t10k-labels-idx1-ubyte.gz", "\0\0\8\1\0\0\0\2\1\12")
    ds, msg = data.fashion_mnist{ split = "test", path = d }
    expect_eq(ds, nil)
    expect_true(msg:find("labels 1..12 on disk, expected 0..9", 1, true), msg)
    -- and a good pair of tiny files loads (labels 0-based on disk → 1-based)
    write(d .. "/t10k-labels-idx1-ubyte.gz", "\0\0\8\1\0\0\0\2\0\9")
    ds = assert(data.fashion_mnist{ split = "test", path = d })
    expect_eq(table.concat(list(ds.labels), ","), "1,10")
    rmdir(d)
  end)
  it("data.idx reads any IDX file; mnist uses digit class names", function()
    local d = tmpdir()
    write(d .. "/a.idx", "\0\0\8\2\0\0\0\2\0\0\0\3" .. "\0\1\2\3\4\255")
    local t = assert(data.idx(d .. "/a.idx"))
    expect_eq(table.concat(t:shape(), "x"), "2x3")
    expect_all_near(t, { { 0, 1, 2 }, { 3, 4, 255 } }, 0, 0)
    t = assert(data.idx(d .. "/a.idx", { dtype = "int32", shift = 1 }))
    expect_eq(t:dtype(), "int32")
    expect_eq(t:get(2, 3), 256)
    local none, msg = data.idx(d .. "/none.idx")
    expect_eq(none, nil)
    expect_true(msg:find("cannot open", 1, true), msg)
    none, msg = data.idx(d)
    expect_eq(none, nil)
    expect_true(msg:find("it is a directory", 1, true), msg)
    expect_error(function() data.idx(d .. "/a.idx", { dtype = "int8" }) end, "data.idx: dtype = 'int8'")
    write(d .. "/train-images-idx3-ubyte.gz", "\0\0\8\3\0\0\0\1\0\0\0\28\0\0\0\28" .. string.rep("\7", 784))
    write(d .. "/train-labels-idx1-ubyte.gz", "\0\0\8\1\0\0\0\1\3")
    local m = assert(data.mnist{ path = d })
    expect_eq(m.labels:get(1), 4)
    expect_eq(m.classes[m.labels:get(1)], "3")
    expect_error(function() data.mnist{} end, "mnist: path= must name the directory")
    none, msg = data.mnist{ path = d, split = "test" }
    expect_eq(none, nil)
    expect_true(msg:find("^mnist: "), msg)
    rmdir(d)
  end)
  it("misuse raises errors that name the option", function()
    expect_error(function() data.fashion_mnist{ splt = "test" } end,
                 "fashion_mnist: unknown option 'splt'")
    expect_error(function() data.fashion_mnist{ split = "val" } end,
                 "fashion_mnist: split = 'val' (expected train|test)")
    expect_error(function() data.fashion_mnist{ path = 3 } end, "fashion_mnist: path must be")
  end)
end)

describe("data.npy", function()
  it("loads features and 0-based labels (auto → 1-based)", function()
    local d = tmpdir()
    local x = fvl.tensor({ { 1, 2 }, { 3, 4 }, { 5, 6 } })
    assert(fvl.save(d .. "/f.npy", x))
    assert(fvl.save(d .. "/l.npy", fvl.tensor({ 0, 2, 1 }, "int32")))
    local ds = assert(data.npy{ features = d .. "/f.npy", labels = d .. "/l.npy" })
    expect_eq(maxdiff(ds.x, x), 0)
    expect_eq(table.concat(list(ds.labels), ","), "1,3,2")
    expect_eq(ds.labels:dtype(), "int32")
    expect_eq(ds.classes, 3)
    -- explicit base=1 keeps values; base=1 with a 0 is an error message
    assert(fvl.save(d .. "/l1.npy", fvl.tensor({ 1, 2, 2 }, "int32")))
    ds = assert(data.npy{ features = d .. "/f.npy", labels = d .. "/l1.npy", base = 1 })
    expect_eq(table.concat(list(ds.labels), ","), "1,2,2")
    local bad, msg = data.npy{ features = d .. "/f.npy", labels = d .. "/l.npy", base = 1 }
    expect_eq(bad, nil)
    expect_true(msg:find("below the 1-based range", 1, true), msg)
    -- float labels that are whole numbers are accepted
    assert(fvl.save(d .. "/lf.npy", fvl.tensor({ 0, 1, 1 })))
    ds = assert(data.npy{ features = d .. "/f.npy", labels = d .. "/lf.npy" })
    expect_eq(table.concat(list(ds.labels), ","), "1,2,2")
    -- wrong count, missing file, corrupt file
    assert(fvl.save(d .. "/l2.npy", fvl.tensor({ 0, 1 }, "int32")))
    bad, msg = data.npy{ features = d .. "/f.npy", labels = d .. "/l2.npy" }
    expect_eq(bad, nil)
    expect_true(msg:find("expected 3 values", 1, true), msg)
    bad, msg = data.npy{ features = d .. "/none.npy" }
    expect_eq(bad, nil)
    expect_true(msg:find("none.npy", 1, true), msg)
    write(d .. "/junk.npy", "not a numpy file at all")
    bad, msg = data.npy{ features = d .. "/junk.npy" }
    expect_eq(bad, nil)
    expect_true(type(msg) == "string" and #msg > 0)
    expect_error(function() data.npy{ features = d .. "/f.npy", base = 2 } end, "base = 2")
    expect_error(function() data.npy{ feature = "x" } end, "data.npy: unknown option 'feature'")
    rmdir(d)
  end)
end)

describe("synthetic_faces", function()
  local small = { identities = 60, per_identity = 6, test_identities = 20, out_dim = 32, seed = 3 }
  it("has the documented shapes and labels", function()
    local ds = data.synthetic_faces(small)
    expect_eq(table.concat(ds.train.x:shape(), "x"), "360x32")
    expect_eq(table.concat(ds.test.x:shape(), "x"), "120x32")
    expect_eq(ds.train.labels:dtype(), "int32")
    expect_eq(ds.train.labels:min():item(), 1)
    expect_eq(ds.train.labels:max():item(), 60)
    expect_eq(ds.test.labels:min():item(), 1)
    expect_eq(ds.test.labels:max():item(), 20)
    expect_eq(ds.train.classes, 60)
    expect_eq(ds.test.classes, 20)
    expect_eq(ds.info.identities, 60)
    expect_eq(ds.info.out_dim, 32)
    expect_eq(ds.info.dim, 32)               -- defaults are reported too
    expect_eq(ds.info.spread, 0.6)
    expect_eq(ds.info.seed, 3)
    expect_eq(ds.info.test_per_identity, 6)
    expect_eq(table.concat(ds.info.shape, "x"), "32")
    expect_eq(maxdiff(ds.train.labels, ds.train.true_labels), 0)
    -- finite values of unit scale
    local rms = math.sqrt((ds.train.x * ds.train.x):mean():item())
    expect_true(rms > 0.5 and rms < 2, "rms " .. rms)
  end)
  it("is deterministic in the seed, not in the global generator", function()
    local a = data.synthetic_faces(small)
    fvl.manual_seed(123)
    local b = data.synthetic_faces(small)
    expect_eq(maxdiff(a.train.x, b.train.x), 0)
    expect_eq(maxdiff(a.test.x, b.test.x), 0)
    local o = {}
    for k, v in pairs(small) do o[k] = v end
    o.seed = 4
    local c = data.synthetic_faces(o)
    expect_true(maxdiff(a.train.x, c.train.x) > 0.1, "another seed gives other data")
  end)
  it("makes long-tailed identities and noisy labels on request", function()
    local ds = data.synthetic_faces{ identities = 100, per_identity = 10, test_identities = 0,
                                     out_dim = 8, long_tail = 1.2, label_noise = 0.25, seed = 1 }
    local counts = {}
    for _, y in ipairs(list(ds.train.true_labels)) do counts[y] = (counts[y] or 0) + 1 end
    local mn, mx = math.huge, 0
    for k = 1, 100 do mn = math.min(mn, counts[k]); mx = math.max(mx, counts[k]) end
    expect_true(mn >= 2, "at least 2 samples per identity")
    local ic = ds.info.counts:totable()
    expect_eq(ds.info.counts:dtype(), "int32")
    for k = 1, 100 do expect_eq(ic[k], counts[k], "info.counts[" .. k .. "]") end
    expect_true(mx > 100, "a head identity has many samples: " .. mx)
    local n = ds.train.labels:numel()
    local flipped = (ds.train.labels:float() - ds.train.true_labels:float()):abs():gt(0):sum():item()
    expect_near(flipped / n, 0.25, 0, 0.05, "label noise fraction")
    expect_eq(ds.test.x:size(1), 0)
  end)
  it("renders 1×h×w maps", function()
    local ds = data.synthetic_faces{ identities = 10, per_identity = 3, test_identities = 2,
                                     image = "map", h = 12, w = 10 }
    expect_eq(table.concat(ds.train.x:shape(), "x"), "30x1x12x10")
    expect_eq(table.concat(ds.test.x:shape(), "x"), "6x1x12x10")
    expect_eq(ds.info.h, 12)
    local sq = data.synthetic_faces{ identities = 10, per_identity = 2, test_identities = 0, image = "map" }
    expect_eq(table.concat(sq.train.x:shape(), "x"), "20x1x28x28")
  end)
  it("checks its options", function()
    expect_error(function() data.synthetic_faces{ identites = 5 } end,
                 "synthetic_faces: unknown option 'identites'")
    expect_error(function() data.synthetic_faces{ identities = 1 } end, "identities = 1 is outside 2..")
    expect_error(function() data.synthetic_faces{ label_noise = 1 } end, "label_noise = 1 (expected")
    expect_error(function() data.synthetic_faces{ image = "photo" } end, "image = 'photo' (expected vector|map|rgb)")
    expect_error(function() data.synthetic_faces{ h = 8 } end, "h and w are for image=\"map\"")
    expect_error(function() data.synthetic_faces{ noise = -1 } end, "noise = -1 is outside 0..")
    expect_error(function() data.synthetic_faces{ per_identity = 2.5 } end, "per_identity = 2.5 (expected an integer)")
  end)

  -- The point of the generator: identity is learnable from the train identities, and what is
  -- learned transfers to the unseen test identities. A linear embedding trained with softmax on
  -- the train identities verifies test identities better than the raw input does.
  it("transfers: a linear model trained on train identities verifies unseen identities", function()
    local ds = data.synthetic_faces{ identities = 200, per_identity = 10, test_identities = 60,
                                     test_per_identity = 8, out_dim = 64, seed = 11 }
    local function auc(z, labels)
      local zn = fvl.normalize(z, 2)
      local S = zn:matmul(zn:t()):totable()
      local y = labels:totable()
      local pos, neg = {}, {}
      for i = 1, #y do
        for j = i + 1, #y do
          if y[i] == y[j] then pos[#pos + 1] = S[i][j] else neg[#neg + 1] = S[i][j] end
        end
      end
      table.sort(neg)
      local wins = 0
      for _, p in ipairs(pos) do
        local lo, hi = 1, #neg + 1      -- count negatives below p
        while lo < hi do
          local m = (lo + hi) // 2
          if neg[m] < p then lo = m + 1 else hi = m end
        end
        wins = wins + lo - 1
      end
      return wins / (#pos * #neg)
    end
    fvl.manual_seed(5)
    local D, E, K = 64, 32, 200
    local W = (fvl.randn(D, E) * (1 / math.sqrt(D))):requires_grad()
    local V = (fvl.randn(E, K) * 0.1):requires_grad()
    local x, y = ds.train.x, ds.train.labels
    local loader = data.loader(ds.train, { batch = 100, seed = 2 })
    for _ = 1, 15 do
      for b in loader do
        local logits = b.x:matmul(W):matmul(V)
        local tgt = logits:gather(2, b.y:reshape(b.y:numel(), 1))
        local loss = (logits:logsumexp(2) - tgt:reshape(b.y:numel())):mean()
        W.grad, V.grad = nil, nil
        loss:backward()
        fvl.no_grad(function()
          W:copy(W - W.grad * 0.5)
          V:copy(V - V.grad * 0.5)
        end)
      end
    end
    local raw = auc(ds.test.x, ds.test.labels)
    local learned = auc(fvl.no_grad(function() return ds.test.x:matmul(W) end), ds.test.labels)
    io.write(string.format("\n  synthetic_faces transfer: test-identity AUC raw %.3f, learned %.3f\n", raw, learned))
    expect_true(raw > 0.6, "identity is visible in the raw input: " .. raw)
    expect_true(learned > raw + 0.05, string.format("learned %.3f vs raw %.3f", learned, raw))
  end)
end)

describe("loader", function()
  local function seq_ds(n)
    local rows = {}
    for i = 1, n do rows[i] = { i, -i } end
    local labels = {}
    for i = 1, n do labels[i] = (i - 1) % 3 + 1 end
    return { x = fvl.tensor(rows), labels = fvl.tensor(labels, "int32") }
  end
  it("batches every row once per epoch, x/y/index consistent", function()
    local ds = seq_ds(10)
    local L = data.loader(ds, { batch = 4, seed = 7 })
    expect_eq(#L, 3)
    local sizes, seen = {}, {}
    for b in L do
      sizes[#sizes + 1] = b.x:size(1)
      expect_eq(b.y:dtype(), "int32")
      expect_eq(b.index:dtype(), "int32")
      expect_eq(maxdiff(b.x, ds.x:index(1, b.index)), 0)
      expect_eq(maxdiff(b.y, ds.labels:index(1, b.index)), 0)
      for _, i in ipairs(list(b.index)) do
        expect_true(not seen[i], "row " .. i .. " twice")
        seen[i] = true
      end
    end
    expect_eq(table.concat(sizes, ","), "4,4,2")
    for i = 1, 10 do expect_true(seen[i], "row " .. i .. " missing") end
    expect_eq(L.epoch, 2)
  end)
  it("drop_last drops the short batch; shuffle=false keeps the order", function()
    local ds = seq_ds(10)
    local L = data.loader(ds, { batch = 4, drop_last = true, shuffle = false })
    expect_eq(#L, 2)
    local idx = {}
    for b in L do
      expect_eq(b.x:size(1), 4)
      for _, i in ipairs(list(b.index)) do idx[#idx + 1] = i end
    end
    expect_eq(table.concat(idx, ","), "1,2,3,4,5,6,7,8")
  end)
  it("shuffles deterministically from its own seed; epochs differ", function()
    local ds = seq_ds(50)
    local function order(L)
      local o = {}
      for b in L do for _, i in ipairs(list(b.index)) do o[#o + 1] = i end end
      return table.concat(o, ",")
    end
    fvl.manual_seed(1)
    local a = data.loader(ds, { batch = 8, seed = 3 })
    local a1 = order(a)
    local a2 = order(a)
    fvl.manual_seed(999)
    fvl.randn(10)
    local b = data.loader(ds, { batch = 16, seed = 3 })   -- batch size does not change the order
    expect_eq(order(b), a1)
    expect_eq(order(b), a2)
    expect_true(a1 ~= a2, "epoch 2 is shuffled differently")
    expect_true(order(data.loader(ds, { batch = 8, seed = 4 })) ~= a1, "another seed")
    local c = data.loader(ds, { batch = 8, seed = 3, epoch = 2 })  -- resume at epoch 2
    expect_eq(order(c), a2)
    -- reset after a break restarts the epoch
    local d = data.loader(ds, { batch = 8, seed = 3 })
    d:next()
    d:reset()
    expect_eq(order(d), a1)
  end)
  it("flips and crops images, drawn from the loader seed", function()
    local n, H, W = 64, 5, 6
    local imgs = {}
    for i = 1, n do
      local ch = {}
      for y = 1, H do
        local row = {}
        for x = 1, W do row[x] = i * 100 + y * 10 + x end
        ch[y] = row
      end
      imgs[i] = { ch }
    end
    local ds = { x = fvl.tensor(imgs), labels = fvl.ones({ n }, "int32") }
    local flips = 0
    for b in data.loader(ds, { batch = 16, flip = true, seed = 5 }) do
      local t, src = b.x:totable(), ds.x:index(1, b.index):totable()
      for k = 1, #t do
        local same, mirrored = true, true
        for y = 1, H do
          for x = 1, W do
            if t[k][1][y][x] ~= src[k][1][y][x] then same = false end
            if t[k][1][y][x] ~= src[k][1][y][W + 1 - x] then mirrored = false end
          end
        end
        expect_true(same or mirrored, "each image is itself or its mirror")
        if mirrored then flips = flips + 1 end
      end
    end
    expect_true(flips > 16 and flips < 48, "about half are flipped: " .. flips)
    -- crop: the output is the input shifted by at most `crop` pixels, zero filled
    local shifted = 0
    for b in data.loader(ds, { batch = 64, crop = 2, seed = 5 }) do
      expect_eq(table.concat(b.x:shape(), "x"), "64x1x5x6")
      local t, src = b.x:totable(), ds.x:index(1, b.index):totable()
      for k = 1, #t do
        local found = false
        for dy = -2, 2 do
          for dx = -2, 2 do
            local ok = true
            for y = 1, H do
              for x = 1, W do
                local sy, sx = y + dy, x + dx
                local v = (sy >= 1 and sy <= H and sx >= 1 and sx <= W) and src[k][1][sy][sx] or 0
                if t[k][1][y][x] ~= v then ok = false end
              end
            end
            if ok then found = true; if dy ~= 0 or dx ~= 0 then shifted = shifted + 1 end end
          end
        end
        expect_true(found, "a shifted window of the source")
      end
    end
    expect_true(shifted > 40, "most images are shifted: " .. shifted)
    -- same seed, same augmentation
    local a = data.loader(ds, { batch = 64, flip = true, crop = 1, seed = 9 }):next()
    local b = data.loader(ds, { batch = 64, flip = true, crop = 1, seed = 9 }):next()
    expect_eq(maxdiff(a.x, b.x), 0)
  end)
  it("loads synthetic and Fashion-MNIST sets as they come", function()
    local ds = data.synthetic_faces{ identities = 10, per_identity = 3, test_identities = 0 }
    local b = data.loader(ds.train, { batch = 7 }):next()
    expect_eq(table.concat(b.x:shape(), "x"), "7x128")
    -- the whole result (train + test) serves its train split
    local whole = data.loader(ds, { batch = 7, seed = 1 }):next()
    expect_eq(maxdiff(whole.x, b.x), 0)
    expect_eq(maxdiff(whole.y, ds.train.labels:index(1, whole.index)), 0)
    -- a non-contiguous view is gathered correctly
    local xt = fvl.tensor({ { 1, 2, 3 }, { 4, 5, 6 } }):t()        -- 3×2 view
    local nb = data.loader(xt, { batch = 3, shuffle = false }):next()
    expect_all_near(nb.x, { { 1, 4 }, { 2, 5 }, { 3, 6 } }, 0, 0)
    local t = data.loader(ds.train.x, { batch = 5 }):next()   -- a bare tensor: no labels
    expect_eq(t.y, nil)
    expect_eq(t.x:size(1), 5)
  end)
  it("rejects misuse with clear errors", function()
    local ds = seq_ds(10)
    expect_error(function() data.loader(ds, { batch = 0 }) end, "loader: batch = 0 is outside 1..")
    expect_error(function() data.loader(ds, { batchsize = 4 }) end, "loader: unknown option 'batchsize'")
    expect_error(function() data.loader(ds, { flip = true }) end, "loader: flip and crop need images N×C×H×W, got x 10x2")
    expect_error(function() data.loader({ x = fvl.zeros(4, 1, 3, 3) }, { crop = 3 }) end,
                 "loader: crop = 3 (expected 0..2 for 3x3 images)")
    expect_error(function() data.loader({ x = fvl.zeros(4, 2), labels = fvl.ones({ 3 }, "int32") }) end,
                 "loader: ds.labels must be 4 int32 values")
    expect_error(function() data.loader({ train = {}, test = {} }) end, "loader: ds has no x (or images) tensor")
    expect_error(function() data.loader(42) end, "loader: ds must be")
  end)
end)
